"""The lint of a big dataset, run in a child process (no Qt here: the child imports only this).

Why a process: on a 100,000-record file :func:`engine.data.lint.lint` takes ~12 s of CPU and
peaks at ~300 MB (docs/dataset-bench.md). On a thread it would hold the GIL that long, making
every table repaint wait on it, and its memory would count against the editor's. In a child
it costs neither, and the memory is returned when it exits.

The records are not pickled across. The child re-reads the source file, and the parent sends
the current order as references into it (an int per unchanged record) plus the edited
records in full; see :func:`encode_records`.
"""

from __future__ import annotations

import os
from typing import Any


def encode_records(records: list, baseline: tuple) -> list:
    """Records as ``int`` (index into ``baseline``, unchanged) or a small tuple (edited)."""
    where = {id(r): k for k, r in enumerate(baseline)}
    out: list = []
    for r in records:
        k = where.get(id(r))
        if k is not None and baseline[k] is r:
            out.append(k)
        elif r.broken:  # rebuilt without its text as read: its error placed in its text, as it then is
            out.append(("b", r.raw, *r.error_in_text(), r.line))
        else:
            out.append(("d", r.peek(), r.line))
    return out


def file_signature(path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except (OSError, TypeError):
        return None
    return st.st_size, st.st_mtime_ns


def run_job(job: dict[str, Any]):
    """Rebuild the dataset from ``job`` and lint it; returns the LintReport."""
    from engine.data import DatasetFile, Record, load_dataset_file
    from engine.data.lint import lint

    source = job.get("source")
    base: list = []
    ds = None
    if source and job.get("signature") and file_signature(source) == tuple(job["signature"]):
        ds = load_dataset_file(source, job["format"])
        base = ds.records
    if ds is None:
        ds = DatasetFile(path=source, format=job["format"], container=job["container"])
    schema = ds.schema
    records = []
    for e in job["entries"]:
        if isinstance(e, int):
            if e >= len(base):
                raise RuntimeError("the source file changed while linting")
            records.append(base[e])
        elif e[0] == "b":
            records.append(Record(None, e[4], raw=e[1], error=e[2], column=e[3], schema=schema))
        else:
            records.append(Record(e[1], e[2], schema=schema))
    ds.records = records
    # Token lengths are estimated here: exact ones (a tokenizer) are for files small enough to be
    # linted in the tokenizer's process (gui/dataset/token_service.py).
    return lint(ds, seq_len=job.get("seq_len") or None)


def main(conn, job_conn) -> None:
    """Child process entry: read the job from ``job_conn``, lint, send ``(report, None)`` or
    ``(None, message)`` on ``conn``, exit."""
    try:
        job = job_conn.recv()
        job_conn.close()
        report = run_job(job)
    except BaseException as e:  # noqa: BLE001 - the parent shows the message
        conn.send((None, f"{type(e).__name__}: {e}"))
    else:
        conn.send((report, None))
    conn.close()
