"""Crash recovery: autosave the editor's records as edits settle, offer them back on start.

A recovery file lives in :func:`engine.paths.recovery_dir`, one per source file, and is
written atomically with :mod:`engine.files`. It is JSON lines: a header, then one line per
record. A record still identical to the file as last opened or saved is written as a
reference ``{"k": index}`` into that file, so autosaving a 100 MB file after a few edits
writes about a megabyte, not 100 MB; edited records are written in full. Small files also
carry every record's data, so they can be restored even if the file changed on disk since.

Restoring resolves references only when the source still has the fingerprint the header
recorded (size and SHA-1); otherwise it refuses with a message that says why, and keeps
the recovery file.

Typing in the form that isn't committed yet is in the snapshot too: typing waiting for its
pause is in its record, and JSON text that doesn't parse yet (which the record doesn't take
until it does) is in the header's ``typing``, with the record and the box it was typed in,
so that a restore puts it back in that box as it was. So is the text of a table cell's editor
that is still open: in its record, as closing the editor would commit it, and in ``typing``
with the box ``"cell"`` and the column's key, so that a restore goes back to that cell.

When: :class:`Autosaver` writes about a second after the last change (typing included), at
the latest a few seconds after the first one while changes keep coming, and at once when the
editor asks (the window loses activation, the app quits, the session ends).

The writing runs on a Python thread (the GUI must not stall for a big file); a lock and
an epoch counter make sure a write that finishes after the user saved or discarded can't
bring back a stale recovery file.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import hashlib
import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from PySide6.QtCore import QObject, QTimer, Signal

from engine.data import DatasetFile, Record, load_dataset_file
from engine.errors import DataError
from engine.files import atomic_write_bytes
from engine.paths import recovery_dir

MAGIC = "finetune-studio-recovery"
SUFFIX = ".recovery.jsonl"
FULL_COPY_BYTES = 8 << 20  # below this source size, unchanged records are also copied in full
SETTLE_MS = 1000  # an autosave follows the last change by this much: a pause in typing
AUTOSAVE_MS = 5000  # and the first change by at most this much, however long the typing goes on


@dataclass
class RecoveryInfo:
    """The header of a recovery file."""

    path: Path
    source: Path
    saved_at: float
    records: int
    edited: int
    format: str
    container: str
    pid: int | None = None
    typing: tuple[dict, ...] = ()
    """Typing not committed yet: ``{"record": index, "box": ..., "text": ...}``, the box being the form's
    ``"other fields"`` or ``"raw"`` (JSON that didn't parse yet), or ``"cell"`` (an open cell editor's
    text, which the record holds; with ``"column"``, the column's key)."""
    mapping: dict[str, str] = field(default_factory=dict)
    """The file's own names for the standard fields, which a restore reads the file with again."""
    source_fingerprint: dict | None = None
    """The source's size and SHA-1 when the recovery was written (:func:`source_fingerprint`)."""

    def live_elsewhere(self) -> bool:
        """Another running window writes it: its edits are not a crash's to offer."""
        from engine.runs import pid_alive

        return self.pid is not None and self.pid != os.getpid() and pid_alive(self.pid)


def recovery_path(source: str | Path, pid: int | None = None) -> Path:
    """The recovery file of a source file written by this process (or process ``pid``): one per
    absolute path and window, so that two windows on one file, or a window opened after a crash,
    never write over each other's unsaved edits."""
    source = Path(source).resolve()
    digest = hashlib.sha1(str(source).encode("utf-8")).hexdigest()[:12]
    return recovery_dir() / f"{source.stem}-{digest}-{os.getpid() if pid is None else pid}{SUFFIX}"


_fingerprints: dict[tuple[str, int, int], str] = {}


def source_fingerprint(path: Path) -> dict | None:
    """Size, mtime and SHA-1 of a file (the hash cached per size and mtime)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    key = (str(path), st.st_size, st.st_mtime_ns)
    digest = _fingerprints.get(key)
    if digest is None:
        h = hashlib.sha1()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        digest = _fingerprints[key] = h.hexdigest()
    return {"size": st.st_size, "sha1": digest}


def write_recovery(source: Path, ds_format: str, container: str, records: list[Record],
                   baseline: tuple[Record, ...], mapping: dict[str, str] | None = None,
                   typing: list[dict] | None = None) -> Path:
    """Write the recovery file for ``source`` from a snapshot of the records.

    Args:
        source: The file being edited.
        ds_format: Its record format.
        container: Its container.
        records: The records now (a snapshot list; the records themselves are never mutated).
        baseline: The records as the file on disk holds them (as last opened or saved).
        mapping: The file's own names for the standard fields (``{"prompt": "instruction"}``), which
            a restore must read the file with again.
        typing: Typing not committed yet: JSON text typed in the form that doesn't parse yet, so
            no record holds it, ``{"record": index in records, "box": "other fields" or "raw",
            "text": ...}``; and an open cell editor's text, which ``records`` already holds as its
            commit would make it, ``{"record": ..., "box": "cell", "column": key, "text": ...}``.
    """
    fp = source_fingerprint(source)
    full = fp is None or fp["size"] <= FULL_COPY_BYTES
    where = {id(r): k for k, r in enumerate(baseline)}
    typing = list(typing or ())
    lines = []
    edited = {t["record"] for t in typing}  # a record with typing held back is an edited one
    for n, r in enumerate(records):
        k = where.get(id(r))
        if k is not None and baseline[k] is r:
            if not full:
                # Most lines of a big file's recovery, and json.dumps's own output: formatted
                # directly, the write takes a fifth of the CPU (and of the GIL the GUI waits for).
                lines.append(f'{{"k": {k}}}')
                continue
            entry: dict = {"k": k}
            entry.update(_full(r))
        else:
            edited.add(n)
            entry = _full(r)
        lines.append(json.dumps(entry, ensure_ascii=False, default=_encode))
    header = {"magic": MAGIC, "version": 1, "pid": os.getpid(), "source": str(Path(source).resolve()),
              "format": ds_format, "container": container, "mapping": dict(mapping or {}), "saved_at": time.time(),
              "records": len(records), "edited": len(edited), "typing": typing,
              "source_fingerprint": fp}
    text = json.dumps(header, ensure_ascii=False) + "\n" + "\n".join(lines) + "\n"
    return atomic_write_bytes(recovery_path(source), text.encode("utf-8"))


_TAG = "$finetune-studio"


def _encode(value):
    """Values JSON lacks, which a Parquet file gives (dates, times, decimals, bytes), as tagged
    objects that :func:`_decode` turns back into the same value: a recovered record is the record."""
    for kind, cls, text in (("datetime", dt.datetime, dt.datetime.isoformat), ("date", dt.date, dt.date.isoformat),
                            ("time", dt.time, dt.time.isoformat), ("decimal", decimal.Decimal, str)):
        if isinstance(value, cls):
            return {_TAG: kind, "v": text(value)}
    if isinstance(value, dt.timedelta):
        return {_TAG: "timedelta", "v": [value.days, value.seconds, value.microseconds]}
    if isinstance(value, (bytes, bytearray)):
        return {_TAG: "bytes", "v": base64.b64encode(value).decode("ascii")}
    raise TypeError(f"a {type(value).__name__} can't be kept in a recovery file")


_DECODE = {"datetime": dt.datetime.fromisoformat, "date": dt.date.fromisoformat, "time": dt.time.fromisoformat,
           "decimal": decimal.Decimal, "timedelta": lambda v: dt.timedelta(*v), "bytes": base64.b64decode}


def _decode(obj: dict):
    if len(obj) == 2 and obj.get(_TAG) in _DECODE and "v" in obj:
        return _DECODE[obj[_TAG]](obj["v"])
    return obj


def _full(r: Record) -> dict:
    if r.broken:
        # Restored, the record has no text as read (the file may have changed, too): its error is
        # placed in its own text, and it keeps its line.
        error, column = r.error_in_text()
        return {"raw": r.raw, "error": error, "column": column, "line": r.line}
    return {"d": r.peek(), "line": r.line}


def read_header(path: Path) -> RecoveryInfo | None:
    """The header of a recovery file, or None if it isn't one."""
    try:
        with open(path, encoding="utf-8") as fh:
            return _header(path, fh.readline())
    except (OSError, ValueError):
        return None


def _header(path: Path, line: str) -> RecoveryInfo | None:
    """The header read from the first ``line`` of the recovery file ``path``; None if it isn't one.

    Raises:
        ValueError: the line isn't JSON.
    """
    head = json.loads(line)
    if not isinstance(head, dict) or head.get("magic") != MAGIC:
        return None
    pid = head.get("pid")
    held = head.get("typing")
    typing = tuple(t for t in held if isinstance(t, dict) and isinstance(t.get("record"), int)
                   and isinstance(t.get("box"), str) and isinstance(t.get("text"), str)) \
        if isinstance(held, list) else ()
    return RecoveryInfo(Path(path), Path(head["source"]), float(head["saved_at"]), int(head["records"]),
                        int(head.get("edited", 0)), head["format"], head["container"],
                        pid if isinstance(pid, int) else None, typing, dict(head.get("mapping") or {}),
                        head.get("source_fingerprint"))


def list_recoveries() -> list[RecoveryInfo]:
    """Every recovery file in the recovery folder, newest first (those of windows still open too:
    see :meth:`RecoveryInfo.live_elsewhere`)."""
    folder = recovery_dir()
    if not folder.is_dir():
        return []
    infos = [read_header(p) for p in folder.glob(f"*{SUFFIX}")]
    return sorted((i for i in infos if i is not None), key=lambda i: i.saved_at, reverse=True)


class Restored(NamedTuple):
    """What :func:`restore` rebuilt from a recovery file."""

    ds: DatasetFile
    """The dataset with the recovered records (its ``path`` is the source)."""
    baseline: tuple[Record, ...]
    """The records of the file on disk (to tell later which ones changed)."""
    changed: bool
    """The file was written (or deleted) after the recovery was: saving the restored records would
    then replace what another program wrote."""
    info: RecoveryInfo
    """The recovery file's header (the typing not committed yet is in it)."""


def restore(path: Path) -> Restored:
    """Rebuild the edited dataset from a recovery file, reading it once.

    Raises:
        DataError: the recovery file can't be read, or it refers to records of a source file
            that has changed or gone since.
    """
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as fh:
            info = _header(path, fh.readline())
            entries = [json.loads(line, object_hook=_decode) for line in fh if line.strip()] if info else []
    except (OSError, ValueError) as e:
        raise DataError(f"can't read the recovery file: {e}", path=str(path)) from None
    if info is None:
        raise DataError("not a recovery file of this app", path=str(path))
    source = info.source
    ds: DatasetFile | None = None
    baseline: tuple[Record, ...] = ()
    fp_then = info.source_fingerprint
    same_source = False
    if source.is_file():
        fp_now = source_fingerprint(source)
        same_source = bool(fp_then) and fp_now == fp_then
        try:
            ds = load_dataset_file(source, info.format, mapping=info.mapping)
            baseline = tuple(ds.records)
        except DataError:
            ds = None
    if ds is None:
        ds = DatasetFile(path=source, format=info.format, container=info.container, mapping=dict(info.mapping))
    schema = ds.schema
    records: list[Record] = []
    for n, e in enumerate(entries):
        if "k" in e and same_source and e["k"] < len(baseline):
            records.append(baseline[e["k"]])
        elif "d" in e:
            records.append(Record(e["d"], e.get("line"), schema=schema))
        elif "raw" in e:
            records.append(Record(None, e.get("line"), raw=e["raw"], error=e.get("error") or "not valid JSON",
                                  column=e.get("column"), schema=schema))
        else:
            raise DataError(f"record {n + 1} of the recovery refers to the file as it was at "
                            f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(info.saved_at))}, "
                            "and the file has changed or gone since", path=str(source),
                            hint=f"The recovery file is kept at {path}.")
    ds.records = records
    return Restored(ds, baseline, bool(fp_then) and not same_source, info)


def discard(path: Path) -> None:
    try:
        Path(path).unlink()
    except FileNotFoundError:
        pass


class Autosaver(QObject):
    """Writes the editor's recovery file shortly after each change (typing the form or a cell
    editor hasn't committed yet included).

    :meth:`touch` (re)starts a single-shot ``settle`` timer, so the write comes once the typing
    pauses, and starts a ``deadline`` timer unless it runs, so typing without a pause is still
    written every ``max_wait_ms``. A change during a write is written after it.

    Args:
        snapshot: Called on the GUI thread; returns the arguments of :func:`write_recovery`, or
            None when there is nothing to save. It must stay cheap (a list copy): it runs after
            every pause in typing.
        settle_ms: How long after the last change to write.
        max_wait_ms: How long after the first change not yet written to write at the latest.
    """

    sig_autosaved = Signal(str)
    """A recovery file was written (its path)."""

    sig_failed = Signal(str)
    """An autosave failed (the reason)."""

    _sig_write_done = Signal()
    """The writing thread finished (queued to the GUI thread)."""

    # ---- Public API
    def __init__(self, snapshot, settle_ms: int = SETTLE_MS, max_wait_ms: int = AUTOSAVE_MS, parent=None):
        super().__init__(parent)
        self._snapshot = snapshot
        self._lock = threading.Lock()
        self._epoch = 0
        self._generation = 0
        self._written_generation = -1
        self._busy = False
        self._again = False  # a change came due while a write was running: write again after it
        self._thread: threading.Thread | None = None
        self.settle = QTimer(self, singleShot=True, interval=settle_ms)
        self.settle.timeout.connect(self._on_due)
        self.deadline = QTimer(self, singleShot=True, interval=max_wait_ms)
        self.deadline.timeout.connect(self._on_due)
        self._sig_write_done.connect(self._on_write_done)

    def touch(self) -> None:
        """Note that the records, or the typing not committed yet, changed since the last autosave."""
        self._generation += 1
        self.settle.start()
        if not self.deadline.isActive():
            self.deadline.start()

    def save_now(self, wait: bool = False) -> bool:
        """Start an autosave now if anything changed; with ``wait``, block until written (a write
        already running is finished first, so the one that counts has the latest changes)."""
        if wait and self._thread is not None:
            self._thread.join()
        started = self._start()
        if wait and self._thread is not None:
            self._thread.join()
        return started

    def discard(self, source: Path | None) -> None:
        """Delete the recovery file of ``source`` (saved or discarded); cancel pending writes."""
        with self._lock:
            self._epoch += 1
            self._written_generation = -1
            if source is not None:
                discard(recovery_path(source))

    def stop(self) -> None:
        self.settle.stop()
        self.deadline.stop()
        self._again = False
        if self._thread is not None:
            self._thread.join()

    # ---- Internals
    def _on_due(self) -> None:
        if self._busy:
            self._again = True
            return
        self._start()

    def _on_write_done(self) -> None:
        if self._again:
            self._again = False
            self._start()

    def _start(self) -> bool:
        if self._busy or self._generation == self._written_generation:
            if self._busy:
                self._again = True
            return False
        self.settle.stop()
        self.deadline.stop()
        snap = self._snapshot()
        if snap is None:
            return False
        self._busy = True
        generation, epoch = self._generation, self._epoch
        self._thread = threading.Thread(target=self._write, args=(snap, generation, epoch),
                                        name="dataset-autosave", daemon=True)
        self._thread.start()
        return True

    def _write(self, snap, generation: int, epoch: int) -> None:
        try:
            with self._lock:
                if epoch != self._epoch:
                    return
                path = write_recovery(*snap)
                self._written_generation = generation
            self.sig_autosaved.emit(str(path))
        except Exception as e:  # noqa: BLE001 - autosave must never take the editor down
            self.sig_failed.emit(f"{type(e).__name__}: {e}")
        finally:
            self._busy = False
            self._sig_write_done.emit()
