"""Reading and writing dataset files: JSON, JSONL, CSV and Parquet; Alpaca, ShareGPT, messages.

Round trips are byte-identical where the format allows: an unedited JSONL line, JSON array
element or CSV row is written back as its original text, and edited ones in the file's own
style (separators, ``ensure_ascii``, indent, line ending, BOM). Broken records are written
back as their raw text. Parquet keeps the data, not the bytes. Saves are atomic
(:mod:`engine.files`).

Malformed input never stops the good records from loading: a line that is not JSON becomes
a broken :class:`~engine.data.records.Record` with its line, column and the parser's reason.
Only a file that can't be read at all (missing, not UTF-8 CSV, not Parquet, a JSON document
that is not a list of records) raises :class:`~engine.errors.DataError`.
"""

from __future__ import annotations

import bisect
import csv
import io
import json
import re
from pathlib import Path
from typing import Any

from engine.data import json_text
from engine.data.records import (
    ALPACA_FIELDS,
    CONVERSATION_KEY,
    ERROR_PLACE,
    DatasetFile,
    Record,
    RecordFormat,
    Schema,
    _json_type,
    format_fields,
    guess_format,
    messages_to_format,
    turn_trains,
)
from engine.errors import DataError, json_problem
from engine.files import atomic_write_bytes, foreign_encoding

BOM = b"\xef\xbb\xbf"
FMT_CHOICES = ("auto", "alpaca", "sharegpt", "messages", "json", "jsonl", "csv", "parquet")
FORMAT_NAMES = {"alpaca": "Alpaca", "sharegpt": "ShareGPT", "messages": "Messages"}
# Fields whose CSV cells hold JSON (lists of turns or pairs).
JSON_COLUMNS = ("history", "conversations", "messages")
# Common column names of "odd" files, tried when no standard key is present, in order.
ALIASES = {
    "instruction": ("prompt", "question", "query", "instruction"),
    "input": ("context", "input"),
    "output": ("completion", "response", "answer", "output"),
}
_DEFAULT_STYLE = {"separators": (", ", ": "), "ensure_ascii": False, "indent": None}


# ---- Public API


def open_dataset(name: str | Path, fmt: str = "auto") -> DatasetFile:
    """A run config's ``dataset``: ``demo``, a local file, or a dataset in the Hugging Face cache
    (``org/name`` or ``org/name:split``; see :mod:`engine.data.hub`).

    A hub dataset's ``path`` is None: it is read, never written back (the cache's files are links
    to shared blobs). A split stored as several files is read file by file into one dataset
    (each record's line is in its own file).

    Raises:
        DataError: as :func:`load_dataset_file`; for a hub id, not cached or no such split.
    """
    from engine.data import hub
    from engine.paths import demo_dataset_path

    if str(name) == "demo":
        return load_dataset_file(demo_dataset_path(), fmt)
    ref = hub.parse_ref(str(name))
    if ref is None:
        return load_dataset_file(name, fmt)
    files = hub.split_files(*ref)
    parts = [load_dataset_file(f, fmt) for f in files]
    ds = parts[0]
    ds.path = None
    if len(parts) > 1:
        kinds = {(p.format, p.container) for p in parts}
        if len(kinds) > 1:
            raise DataError(f"the files of '{hub.describe(*ref, files)}' hold different formats "
                            f"({', '.join(sorted(f'{f} {c}' for f, c in kinds))})", path=str(files[0].parent))
        ds = DatasetFile(path=None, format=ds.format, container=ds.container, mapping=ds.mapping,
                         records=[r for p in parts for r in p.records], errors=[e for p in parts for e in p.errors],
                         file_errors=[e for p in parts for e in p.file_errors])
    ds.detected = f"{describe(ds)}, from the Hugging Face cache: {hub.describe(*ref, files)}"
    return ds


def load_dataset_file(path: str | Path, fmt: str = "auto", mapping: dict[str, str] | None = None
                      ) -> DatasetFile:
    """Read a dataset file, detecting its container and record format.

    Args:
        path: A ``.json``, ``.jsonl``, ``.csv``/``.tsv`` or ``.parquet`` file.
        fmt: ``auto``, a record format (``alpaca``, ``sharegpt``, ``messages``) or a container
            (``json``, ``jsonl``, ``csv``, ``parquet``); the run config's ``dataset_format``.
        mapping: Renames the file's column, key or role names to the standard ones, e.g.
            ``{"prompt": "instruction", "response": "output"}``.

    Returns:
        The records (broken ones included), with ``detected`` saying what was found.

    Raises:
        DataError: the file is missing or can't be read at all (names the file, and the line
            and column where known).
    """
    path = Path(path)
    if fmt not in FMT_CHOICES:
        raise DataError(f"unknown dataset format {fmt!r}; allowed: {', '.join(FMT_CHOICES)}",
                        path=str(path))
    if not path.is_file():
        raise DataError("no such file" if not path.exists() else "not a file", path=str(path))
    mapping = dict(mapping or {})
    container = fmt if fmt in RecordFormat.CONTAINERS else None
    ds = DatasetFile(path=path, mapping=mapping)
    try:
        _read_records(path, ds, container)
    except OSError as e:  # no read permission, a file on a drive that went away: said, never a traceback
        raise DataError(f"can't read the file: {e.strerror or e}", path=str(path),
                        hint="Check that you may read it (its permissions, or the drive it is on).") from None
    _settle_format(ds, fmt if fmt in RecordFormat.FORMATS else "auto")
    ds._loaded = tuple(ds.records)
    ds.detected = describe(ds)
    return ds


def _read_records(path: Path, ds: DatasetFile, container: str | None) -> None:
    """Fill ``ds`` from ``path`` in the given container, or the one its name or first bytes say."""
    if container == RecordFormat.PARQUET or (container is None and path.suffix.lower() == ".parquet"):
        ds.container = RecordFormat.PARQUET
        _read_parquet(path, ds)
    elif container == RecordFormat.CSV or (container is None and path.suffix.lower() in (".csv", ".tsv")):
        ds.container = RecordFormat.CSV
        _refuse_utf16(path)
        _read_csv(path, ds)
    else:
        _refuse_utf16(path)
        ds.container = container or _sniff_json_container(path)
        if ds.container == RecordFormat.JSONL:
            _read_jsonl(path, ds)
        else:
            _read_json(path, ds)


def save_dataset_file(ds: DatasetFile, path: str | Path | None = None, container: str | None = None,
                      fmt: str | None = None) -> Path:
    """Write ``ds`` atomically, unedited records as their original text.

    With the file's own container and format (the usual Save, or Save As elsewhere), ``ds``
    then mirrors the written file: ``ds.path`` is updated and later saves compare against it.
    A different ``container`` or ``fmt`` converts through :func:`export` and leaves ``ds`` as is.

    Args:
        ds: The dataset.
        path: Where to write; defaults to ``ds.path``.
        container: json, jsonl, csv or parquet; defaults to ``ds.container``.
        fmt: alpaca, sharegpt or messages; defaults to ``ds.format``.

    Returns:
        The path written.

    Raises:
        DataError: no path, or the data can't be written in that container.
    """
    if path is None and ds.path is None:
        raise DataError("the dataset has no file yet; give a path to save it to")
    path = Path(path if path is not None else ds.path)
    container = container or ds.container
    fmt = fmt or ds.format
    if container != ds.container or fmt != ds.format:
        return export(ds, path, container, fmt)
    starts: list[int] = []  # where each element starts in a JSON array's text
    data, sources, lines = _json_bytes(ds, starts) if container == RecordFormat.JSON else _serialize(ds, container)
    atomic_write_bytes(path, data)
    written = _WrittenJson(data, starts) if container == RecordFormat.JSON else None
    # The file on disk is now what we wrote: make it the new baseline.
    for i, r in enumerate(ds.records):
        if sources is not None:
            if r.broken:
                r._source = sources[i]
                if lines is not None:
                    _replace_error(r, sources[i], lines[i], ds, written, i)
            elif record_changed(r, ds) or (container == RecordFormat.JSONL and sources[i] != r._source):
                # (JSONL: a record read over several lines was written on one, as the file now holds it)
                r._source = sources[i] if container != RecordFormat.PARQUET else _dumps(r.peek())
        r._edited = False
        if lines is not None:
            r.line = lines[i]
    ds.path = path
    ds._loaded = tuple(ds.records)
    # Gaps are keyed by id(); drop those of deleted records before their ids can be reused.
    alive = {id(r) for r in ds.records}
    ds._gaps = {k: v for k, v in ds._gaps.items() if k in alive}
    ds.errors = []
    # A JSON array's text around its records (a stray comma, text after its ']') is written back as it
    # was, never dropped: the written file still has the problem, so the Checks still name it.
    ds.file_errors = _written_file_errors(written, path) if written is not None and ds.file_errors else []
    _collect_errors(ds)
    ds.errors.extend(ds.file_errors)
    ds.detected = describe(ds)
    return path


class _WrittenJson:
    """A JSON array file as just written, decoded once when a broken element needs its error."""

    def __init__(self, data: bytes, starts: list[int]):
        self._data, self.starts = data, starts
        self._text: str | None = None
        self._index: _LineIndex | None = None

    def text(self) -> tuple[str, _LineIndex]:
        if self._text is None:
            data = self._data[len(BOM):] if self._data.startswith(BOM) else self._data
            self._text = data.decode("utf-8")
            self._index = _LineIndex(self._text)
        return self._text, self._index


def _written_file_errors(written: _WrittenJson, path: Path) -> list[DataError]:
    """The file-structure errors of a JSON array file as just written, as reopening it gives them."""
    again = DatasetFile(path=path)
    _parse_json(written.text()[0], path, again)
    return again.file_errors


def _replace_error(r: Record, written: bytes | str, line: int, ds: DatasetFile,
                   json_file: _WrittenJson | None = None, i: int = -1) -> None:
    """A broken record's error as reopening the file would give it: a save that added or removed
    records above it moved it, and its text may be new (retyped in the editor), so the line and
    column its old error named no longer point at it. JSONL lines and CSV rows are read alone; a
    JSON array's element is read where it now starts in the written file, as the reader reads it,
    so the same words come back with the new position."""
    if ds.container == RecordFormat.JSON and json_file is not None:
        text, index = json_file.text()
        problem = _json_element_problem(text, json_file.starts[i], index)
        # Where its first line starts may have moved too (a gap or preamble of another width).
        r.start_column = index.at(json_file.starts[i])[1]
    elif ds.container == RecordFormat.JSONL:
        chunk = written if isinstance(written, bytes) else written.encode("utf-8")
        problem = _jsonl_problem(chunk, line)
    elif ds.container == RecordFormat.CSV:
        problem = _csv_row_problem(written if isinstance(written, str) else written.decode("utf-8"), line, ds)
    else:
        return
    if problem is not None:
        r.error, r.column = problem


def export(ds: DatasetFile, path: str | Path, container: str | None = None, fmt: str | None = None, *,
           per_answer: bool = False) -> Path:
    """Write ``ds`` converted to another container and/or record format.

    Extra fields (anything that isn't part of the record format, e.g. ``task``, ``lang``)
    are kept, and so are a chat turn's own keys besides its role and content (``weight``,
    ``name``) where the target has turns. Parquet is written with pyarrow.

    Args:
        ds: The dataset.
        path: The new file.
        container: json, jsonl, csv or parquet; defaults to the path's extension.
        fmt: alpaca, sharegpt or messages; defaults to ``ds.format``.
        per_answer: write a conversation with several answers as one record per answer, each the
            conversation up to and including that answer (for chat templates that render an answer
            differently once the conversation goes on, such as Qwen3's, so that every answer trains).

    Raises:
        DataError: broken records (fix or delete them first), a conversation the target
            format can't hold, or a column with mixed types for Parquet.
    """
    path = Path(path)
    container = container or container_from_suffix(path) or ds.container
    fmt = fmt or ds.format
    if container not in RecordFormat.CONTAINERS:
        raise DataError(f"unknown container {container!r}; allowed: {', '.join(RecordFormat.CONTAINERS)}")
    if fmt not in RecordFormat.FORMATS:
        raise DataError(f"unknown record format {fmt!r}; allowed: {', '.join(RecordFormat.FORMATS)}")
    broken = ds.broken_indices()
    if broken:
        first = ds.records[broken[0]]
        at = f"at line {first.line}" if first.line else f"record {broken[0] + 1}, not saved yet"
        raise DataError(f"{len(broken)} broken record(s) can't be exported; the first is {at}: "
                        f"{first.error_words()}", path=str(ds.path) if ds.path else None, line=first.line,
                        column=first.column if first.error_in_file else None, hint="Fix or delete them first.")
    schema = ds.schema
    # A lone CR line ending (classic Mac OS) is kept in JSON Lines; JSON and CSV are written with LF.
    newline = "\n" if ds.newline == "\r" and container != RecordFormat.JSONL else ds.newline
    out = DatasetFile(path=path, format=fmt, container=container, newline=newline,
                      bom=ds.bom and container in (RecordFormat.JSON, RecordFormat.JSONL, RecordFormat.CSV),
                      style=dict(_DEFAULT_STYLE))
    if container == RecordFormat.JSON:
        out.style["indent"] = 2
    elif container == RecordFormat.CSV:
        # _read_csv reads a .tsv tab-separated whatever its content, so write it that way.
        out.style["delimiter"] = "\t" if path.suffix.lower() == ".tsv" else ","
    standard = set(format_fields(ds.format)) | set(ds.mapping)
    for i, r in enumerate(ds.records):
        data = r.peek()
        msgs = r.messages(schema, turn_keys=True) if per_answer else []
        answers = _answer_ends(msgs)
        if len(answers) > 1:
            extras = {k: v for k, v in data.items() if k not in standard}
            for j in answers:
                out.records.append(Record(messages_to_format(msgs[: j + 1], fmt, extras,
                                                             where=f"record {i + 1} (line {r.line})"), r.line))
            continue
        if fmt == ds.format and not ds.mapping:
            new = dict(data)
        else:
            extras = {k: v for k, v in data.items() if k not in standard}
            new = messages_to_format(r.messages(schema, turn_keys=True), fmt, extras,
                                     where=f"record {i + 1} (line {r.line})")
        out.records.append(Record(new, r.line))
    data, _, _ = _serialize(out, container)
    return atomic_write_bytes(path, data)


def _answer_ends(msgs: list[dict]) -> list[int]:
    """The indices of a conversation's trained answers: where ``export(per_answer=True)`` cuts it.
    A weight-0 or empty answer is context: a record cut after it would have nothing to train on. (A
    weight that is not 0 or 1 counts as trained here; training and the Checks name it.)"""
    def trains(m: dict) -> bool:
        if not str(m.get("content") or "").strip():
            return False
        try:
            return turn_trains(m.get("weight"), "")
        except DataError:
            return True
    return [j for j, m in enumerate(msgs) if m["role"] == "assistant" and trains(m)]


def per_answer_count(ds: DatasetFile) -> int:
    """How many records ``export(ds, ..., per_answer=True)`` writes."""
    return sum(max(1, len(_answer_ends(r.messages(ds.schema, turn_keys=True)))) for r in ds.records)


def record_changed(r: Record, ds: DatasetFile) -> bool:
    """Whether a save must re-serialise ``r`` (it was added, fixed or edited since the read)."""
    src = r._source
    if src is None or r._edited:
        return True
    if r.broken:
        return r.raw != _raw_text(src)
    if r._data is None:
        return False  # never parsed, so never edited
    if ds.container == RecordFormat.CSV:
        return _dumps(r._data) != _dumps(_parse_csv_row(src, ds))
    style = ds.style or _DEFAULT_STYLE
    if ds.container == RecordFormat.JSONL and _dumps(r._data, style) == _raw_text(src):
        return False
    try:
        return _dumps(r._data) != _dumps(json.loads(src))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return True


def describe(ds: DatasetFile) -> str:
    """The human sentence for what was detected, e.g. "Alpaca JSONL, 320 records, UTF-8 with BOM, CRLF"."""
    n = len(ds.records)
    parts = [f"{FORMAT_NAMES.get(ds.format, ds.format)} {ds.container.upper()}",
             f"{n} record{'s' if n != 1 else ''}"]
    broken = sum(1 for r in ds.records if r.broken)
    if broken:
        parts[-1] += f" ({broken} broken)"
    if ds.container != RecordFormat.PARQUET:
        parts.append("UTF-8 with BOM" if ds.bom else "UTF-8")
        parts.append({"\r\n": "CRLF", "\r": "CR"}.get(ds.newline, "LF"))
    if ds.mapping:
        # A name with spaces around it (a CSV header's ' instruction ') quoted, so they show.
        parts.append("mapped " + ", ".join(f"{k if k == k.strip() else repr(k)}→{v}" for k, v in ds.mapping.items()))
    return ", ".join(parts)


# ---- Detection


def container_from_suffix(path: Path) -> str | None:
    """The container a file name's extension stands for (``.ndjson`` is JSONL, ``.tsv`` CSV), or None."""
    return {".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "csv",
            ".parquet": "parquet"}.get(path.suffix.lower())


def _sniff_json_container(path: Path) -> str:
    """JSON array or JSON lines, from the first bytes (not the extension alone: many .json are JSONL,
    and a .jsonl file that starts with a '[' line is a JSON array, as no JSON line is)."""
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    if head.startswith(BOM):
        head = head[3:]
    stripped = head.lstrip()
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        first = _first_line(stripped)
        if not stripped.startswith(b"[") or (stripped[len(first):].strip() and _whole_value(first)):
            return RecordFormat.JSONL  # a whole array on a line with more lines after it: a broken JSON line
        return RecordFormat.JSON
    if stripped.startswith(b"["):
        return RecordFormat.JSON
    if not stripped.startswith(b"{"):
        return RecordFormat.JSON if path.suffix.lower() == ".json" else RecordFormat.JSONL
    # Starts with "{": JSON lines if the first line is a whole object by itself and more follows.
    first = _first_line(stripped)
    try:
        json_text.loads(first)
    except (json.JSONDecodeError, UnicodeDecodeError):
        # A pretty-printed object (.json: _read_json names the top-level problem) or a broken line.
        return RecordFormat.JSON if path.suffix.lower() == ".json" else RecordFormat.JSONL
    if path.suffix.lower() != ".json":
        return RecordFormat.JSONL
    return RecordFormat.JSONL if stripped[len(first):].strip() else RecordFormat.JSON


def _first_line(head: bytes) -> bytes:
    """The first line of ``head``, without its line ending (LF, CRLF or a lone CR)."""
    m = _LINE.match(head)
    return m.group().rstrip(b"\r\n") if m else b""


def _whole_value(line: bytes) -> bool:
    try:
        json_text.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False
    return True


def _settle_format(ds: DatasetFile, fmt: str) -> None:
    """Pick the record format (given, or from the first records' keys) and any alias mapping."""
    good = [r for r in ds.records[:200] if not r.broken]
    if fmt != "auto":
        ds.format = fmt
    else:
        votes: dict[str, int] = {}
        for r in good:
            g = guess_format(r.peek(), ds.mapping)
            if g:
                votes[g] = votes.get(g, 0) + 1
        if votes:
            ds.format = max(votes, key=votes.get)
        elif good:
            alias = _alias_mapping({ds.mapping.get(k, k): k for k in good[0].peek()})
            if alias is None and ds.container == RecordFormat.CSV:
                raise _unknown_header(ds)
            if alias is None:
                keys = ", ".join(list(good[0].peek())[:12]) or "(none)"
                raise DataError(
                    f"can't tell the record format: the first record has the keys {keys}; expected "
                    "instruction/input/output (Alpaca), conversations (ShareGPT) or messages",
                    path=str(ds.path), line=good[0].line,
                    hint="Give a mapping from your names to the standard ones, e.g. "
                         '{"prompt": "instruction", "response": "output"}.')
            ds.mapping.update(alias)
            ds.format = RecordFormat.ALPACA
        else:
            ds.format = RecordFormat.ALPACA
    ds._schema = None
    _ = ds.schema  # attaches the shared schema to every record


def _alias_mapping(names: dict[str, str]) -> dict[str, str] | None:
    """The mapping from a record's alias names (prompt, response...) to the standard ones, or None
    when they don't give an instruction and an output. ``names``: each key's name as read (a CSV
    column spelled ``Prompt`` reads as ``prompt``) -> the key in the record."""
    mapping = {}
    for standard, aliases in ALIASES.items():
        for name in aliases:
            if name in names and names[name] not in mapping:
                mapping[names[name]] = standard
                break
    if "instruction" in mapping.values() and "output" in mapping.values():
        return {k: v for k, v in mapping.items() if k != v}
    return None


def _unknown_header(ds: DatasetFile) -> DataError:
    """A CSV file whose header names no record format: its columns as found (quoted, so that spaces
    show), the names taken, and a .tsv file that is comma-separated said so."""
    columns = ds.style.get("columns") or []
    found = ", ".join(repr(c) for c in columns[:12]) + (f" and {len(columns) - 12} more" if len(columns) > 12 else "")
    said = (f"can't tell the record format: the header has the columns {found}; expected instruction and output "
            "(Alpaca; input and system optional), conversations (ShareGPT) or messages, or "
            f"{'/'.join(ALIASES['instruction'][:-1])} with {'/'.join(ALIASES['output'][:-1])} (any case, "
            "spaces around a name ignored)")
    hint = ("Rename the columns, or give a mapping from your names to the standard ones, e.g. "
            '{"prompt": "instruction", "response": "output"}.')
    if ds.style.get("delimiter") == "\t" and len(columns) == 1 and "," in columns[0]:
        said += "; the header has no tab but has commas: this .tsv file is comma-separated"
        hint = "Rename it to .csv: a .tsv file is read tab-separated."
    return DataError(said, path=str(ds.path), line=1, hint=hint)


# ---- JSONL


class _JsonlLines:
    """A JSONL file's lines, with the readers' line endings: LF, CRLF, and a lone CR (classic Mac OS).

    Lines come as the file object splits them (at LF, so a CRLF line keeps its CR). A line that holds
    a lone CR before its end is split there on request (:meth:`split`), as ``str.splitlines`` would:
    only a line that doesn't read as it is, since a CR between a record's tokens is JSON whitespace.
    Iterating is a generator over the file's own iteration (the reader's hot loop: 200k lines).
    """

    def __init__(self, fh: Any):
        self._back: list[bytes] = []  # lines split off or looked at, read before the file's next
        self._it = self._lines(fh)

    def _lines(self, fh: Any):
        back = self._back
        for chunk in fh:
            yield chunk
            while back:
                yield back.pop()

    def __iter__(self):
        return self._it

    def put_back(self, *chunks: bytes) -> None:
        """Have the next reads give ``chunks``, in order."""
        self._back.extend(reversed(chunks))

    @staticmethod
    def has_lone_cr(chunk: bytes) -> bool:
        """Whether ``chunk`` holds a CR that ends a line before its own line ending (not in UTF-16 text,
        where a CR is followed by a zero byte: that line is said as a whole)."""
        return _LONE_CR.search(chunk, 0, len(chunk.rstrip(b"\r\n"))) is not None and b"\x00" not in chunk

    def split(self, chunk: bytes) -> bytes:
        """The first line of ``chunk`` (split at lone CRs); the rest are read next."""
        first, *rest = _LINE.findall(chunk)
        self.put_back(*rest)
        return first


_LONE_CR = re.compile(rb"\r(?!\n)")
_LINE = re.compile(rb"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")
_BRACKET_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"?|[\[{\]}]')


def _read_jsonl(path: Path, ds: DatasetFile) -> None:
    """One record per line, validated now, parsed again lazily on access (see records.py).

    A record written over several lines, as a pretty-printer writes it (``json.dumps(obj, indent=2)``
    pasted in: a '{' alone on its line), is read as one record from its '{' to its '}', as jq reads it;
    the ``multi-line-record`` check says the file isn't JSON Lines, and a save writes it on one line.
    """
    records: list[Record] = []
    gaps: dict[int, bytes] = {}
    preamble = b""
    endings = {b"\r\n": 0, b"\n": 0, b"\r": 0}
    loads = json.loads
    style_candidates = [
        {"separators": (", ", ": "), "ensure_ascii": False, "indent": None},
        {"separators": (",", ":"), "ensure_ascii": False, "indent": None},
        {"separators": (", ", ": "), "ensure_ascii": True, "indent": None},
        {"separators": (",", ":"), "ensure_ascii": True, "indent": None},
    ]
    styled = 0
    lineno = 0
    with open(path, "rb") as fh:
        lines = _JsonlLines(fh)
        for chunk in lines:
            lineno += 1
            if lineno == 1 and chunk.startswith(BOM):
                ds.bom = True
                chunk = chunk[3:]
            if chunk.isspace() or not chunk:
                if _JsonlLines.has_lone_cr(chunk):
                    chunk = lines.split(chunk)
                _count_ending(chunk, endings)
                if records:
                    key = id(records[-1])
                    gaps[key] = gaps.get(key, b"") + chunk
                else:
                    preamble += chunk
                continue
            try:
                value = loads(chunk)
                if b"\\ud" in chunk or b"\\uD" in chunk:  # the rare line that may hold half an emoji
                    json_text.refuse_lone_surrogate(chunk)
                if b"\x00" in chunk:  # json.loads took it as UTF-16: not this file's UTF-8 (json_text says so)
                    value = None
            except (ValueError, RecursionError):  # not JSON, not UTF-8, too deep, a too-long integer, not text
                value = None
            if type(value) is not dict and _JsonlLines.has_lone_cr(chunk):
                lines.put_back(lines.split(chunk))  # lines that end in a CR alone: read one by one
                lineno -= 1
                continue
            if type(value) is not dict and chunk.strip() == b"{" and chunk.endswith((b"\n", b"\r")):
                parts = _spread_record(chunk, lines)
                for part in parts:
                    _count_ending(part, endings)
                whole = b"".join(parts)
                problem = _jsonl_problem(whole, lineno)
                records.append(Record(None, lineno, source=whole) if problem is None else _broken(whole, lineno, *problem))
                lineno += len(parts) - 1
                continue
            if chunk.endswith(b"\n"):  # (inline: the hot loop)
                endings[b"\r\n" if chunk.endswith(b"\r\n") else b"\n"] += 1
            elif chunk.endswith(b"\r"):
                endings[b"\r"] += 1
            if type(value) is not dict:
                records.append(_broken(chunk, lineno, *_jsonl_problem(chunk, lineno)))
                continue
            if styled < 20:
                styled += 1
                text = _raw_text(chunk)
                kept = [s for s in style_candidates if _dumps(value, s) == text]
                if kept:
                    style_candidates = kept
            records.append(Record(None, lineno, source=chunk))
    ds.records = records
    ds._gaps = gaps
    ds._preamble = preamble
    ds.newline = max(("\n", "\r\n", "\r"), key=lambda nl: endings[nl.encode()])  # a tie: LF
    ds.style = dict(style_candidates[0])
    _collect_errors(ds)
    if not records:
        ds.errors.insert(0, DataError("the file is empty: no records", path=str(path)))


def _count_ending(chunk: bytes, endings: dict[bytes, int]) -> None:
    if chunk.endswith(b"\r\n"):
        endings[b"\r\n"] += 1
    elif chunk.endswith((b"\n", b"\r")):
        endings[chunk[-1:]] += 1


def _spread_record(first: bytes, lines: _JsonlLines) -> list[bytes]:
    """The lines of a record written over several, from ``first`` (its '{' alone on a line) to the line
    that closes it, counting brackets outside strings. It ends sooner at a line that starts another
    record, a '{' no further indented than this one's (a record after one left unclosed), or at the end."""
    indent = len(first) - len(first.lstrip(b" \t"))
    parts, depth = [first], 1
    for chunk in lines:
        if _JsonlLines.has_lone_cr(chunk):
            chunk = lines.split(chunk)
        body = chunk.lstrip(b" \t")
        if body.startswith(b"{") and len(chunk) - len(body) <= indent:
            lines.put_back(chunk)
            break
        parts.append(chunk)
        for m in _BRACKET_TOKENS.finditer(chunk):
            tok = m.group()
            if tok in (b"{", b"["):
                depth += 1
            elif tok in (b"}", b"]"):
                depth -= 1
        if depth <= 0:
            break
    while len(parts) > 1 and parts[-1].isspace():  # blank lines after one left unclosed: a gap, not the record
        lines.put_back(parts.pop())
    return parts


def _jsonl_problem(chunk: bytes, lineno: int) -> tuple[str, int] | None:
    """Why a JSONL line at ``lineno`` is not a record, with the 1-based column (None if it is one):
    the reader's words, and a save's for a broken record it wrote (whose line may have moved). A
    record written over several lines (see :func:`_spread_record`) is placed at the line in it that
    fails, and said to be spread over its lines."""
    spread = _line_count(chunk)
    try:
        value = json_text.loads(chunk)
    except json.JSONDecodeError:
        e = _decode_error(chunk)
        said = _not_a_line_record(chunk, e) if spread == 1 else None
        if said is not None:
            return f"line {lineno}, column {said[1]}: {said[0]}", said[1]
        below, column = _place(e.doc, e.pos)
        why = _line_problem(e)
        if spread > 1:
            last = lineno + spread - 1
            why = ("the record's '{' on line " + str(lineno) + " is never closed: '}' is missing"
                   if e.pos >= len(e.doc.rstrip()) and e.msg != "Extra data" else why)
            why += (f" (in the record written over lines {lineno}–{last}: JSON Lines holds one record per "
                    "line, not pretty-printed JSON)")
        return f"line {lineno + below}, column {column}: {why}", column
    except UnicodeDecodeError as e:
        below, column = _place(chunk[:e.start].decode("latin-1"), e.start)  # a byte's column, as a byte is the fault
        return (f"line {lineno + below}, column {column}: invalid UTF-8 byte 0x{chunk[e.start]:02x}",
                column)
    if type(value) is dict:
        return None
    return f"line {lineno}, column 1: expected a record object {{...}}, got {_json_type(value)}", 1


_NEWLINE = re.compile(r"\r\n|\r|\n")


def _place(text: str, pos: int) -> tuple[int, int]:
    """(lines below the first, 1-based column) of offset ``pos`` in ``text``, a line ending being LF,
    CRLF or a lone CR (``JSONDecodeError.lineno`` counts LF only)."""
    ends = list(_NEWLINE.finditer(text, 0, pos))
    return len(ends), pos - (ends[-1].end() if ends else 0) + 1


def _ending_count(chunk: bytes) -> int:
    """How many line endings (LF, CRLF or a lone CR) ``chunk`` holds."""
    if b"\r" not in chunk or b"\x00" in chunk:  # (UTF-16 text's CR is followed by a zero byte: no line end)
        return chunk.count(b"\n")
    return chunk.count(b"\n") + len(_LONE_CR.findall(chunk))


def _line_count(chunk: bytes) -> int:
    """How many lines ``chunk`` (a record's text, with its line ending) is written over."""
    return _ending_count(chunk.rstrip(b"\r\n")) + 1


def _not_a_line_record(chunk: bytes, e: json.JSONDecodeError) -> tuple[str, int] | None:
    """What a JSONL line that fails is, where the parser's words ("Expecting property name enclosed
    in double quotes", "Expecting value") miss it, with the 1-based column: a comment, or the first
    line of a pretty-printed object (a '{' alone on a line, with a line ending)."""
    text = e.doc
    body = text.lstrip(" \t")
    column = len(text) - len(body) + 1
    if body.startswith(("#", "//")):
        return "a comment line: JSON Lines has no comments", column
    # Pretty-printers (json.dumps with an indent, jq, JSON.stringify) put the '{' alone on its line; a
    # line with a key after it that ends early is a record cut short or missing its '}', said as such.
    if body.rstrip() == "{" and chunk.endswith(b"\n"):
        return ("the line starts a JSON object spread over several lines: JSON Lines needs one record per "
                "line (or save it as .json)"), column
    return None


def _line_problem(e: json.JSONDecodeError) -> str:
    """The parser's words for a JSONL line, where its "Extra data" says nothing a person can act on:
    more follows the line's record. (Lines that end in a lone CR are split before they get here.)"""
    if e.msg != "Extra data":
        return json_problem(e)
    return "more text after the record ends; JSON Lines holds one record per line"


def _decode_error(chunk: bytes) -> json.JSONDecodeError:
    """The parser's error for one JSONL line, positioned within the line (not past its line ending)."""
    try:
        json_text.loads(chunk.rstrip(b"\r\n"))
    except json.JSONDecodeError as e:
        return e
    return json.JSONDecodeError("Extra data", chunk.decode("utf-8", "replace"), 0)


def _broken(source: bytes | str, line: int, error: str, column: int | None, start_column: int | None = None
            ) -> Record:
    return Record(None, line, _raw_text(source), error, source=source, column=column, start_column=start_column)


def _raw_text(source: bytes | str) -> str:
    if isinstance(source, bytes):
        source = source.decode("utf-8", errors="replace")
    return source.rstrip("\r\n")


def _collect_errors(ds: DatasetFile) -> None:
    for r in ds.records:
        if r.broken:
            # The error's own position (inside a multi-line JSON element) beats the record's start.
            m = ERROR_PLACE.match(r.error)
            line, column = (int(m.group(1)), int(m.group(2)) if m.group(2) else None) if m else (r.line, r.column)
            ds.errors.append(DataError(r.error[m.end():] if m else r.error, path=str(ds.path),
                                       line=line, column=column))


def _dumps(value: Any, style: dict | None = None) -> str:
    # default=str: Parquet can hold dates and bytes, which JSON can't; they become text.
    if style is None:
        return json.dumps(value, ensure_ascii=False, default=str)
    return json.dumps(value, ensure_ascii=style["ensure_ascii"], separators=tuple(style["separators"]),
                      default=str)


def _jsonl_bytes(ds: DatasetFile) -> tuple[list[bytes], list, list[int]]:
    """The file as a list of chunks (mostly the records' own source bytes, shared, not
    copied); ``atomic_write_bytes`` writes them one by one."""
    nl = ds.newline.encode()
    style = ds.style or _DEFAULT_STYLE
    out: list[bytes] = [BOM] if ds.bom else []
    if isinstance(ds._preamble, bytes):
        out.append(ds._preamble)
    sources: list[bytes | None] = []
    lines: list[int] = []
    line = 1 + _ending_count(ds._preamble or b"")
    last = len(ds.records) - 1
    for i, r in enumerate(ds.records):
        src = r._source
        if isinstance(src, str):
            src = src.encode("utf-8")
        if r.broken:
            chunk = src if src is not None and r.raw == _raw_text(src) else r.raw.encode("utf-8") + nl
        elif src is not None and not record_changed(r, ds) and _line_count(src) == 1:
            chunk = src  # (a record read over several lines is written on one: JSON Lines)
        else:
            chunk = _dumps(r.data, style).encode("utf-8") + nl
        if i < last and not chunk.endswith((b"\n", b"\r")):
            chunk += nl  # the old last line had no line ending and now has records after it
        out.append(chunk)
        sources.append(chunk)
        lines.append(line)
        line += _ending_count(chunk)
        gap = ds._gaps.get(id(r))
        if gap:
            out.append(gap)
            line += _ending_count(gap)
    return out, sources, lines


# ---- JSON array


_WS = re.compile(r"[ \t\r\n]*")


def _refuse_utf16(path: Path) -> None:
    """A text file in UTF-16 or UTF-32 (what Windows PowerShell's ``>`` writes) named as such, not as
    a file whose every line has an invalid UTF-8 byte. Without a byte-order mark (.NET's and Java's
    UTF-16 writers leave it out) its zero bytes tell: text that is UTF-8 has none."""
    with open(path, "rb") as fh:
        head = fh.read(8)
    name = foreign_encoding(head)
    how = "its byte-order mark says so"
    if name is None:
        name = _unmarked_encoding(head)
        how = "no byte-order mark, but a zero byte beside each of its first characters"
    if name:
        raise DataError(f"the file is {name} text ({how}), not UTF-8", path=str(path),
                        hint="Save it as UTF-8, e.g. in an editor's Save As / Encoding, or with "
                        f"iconv -f {name} -t UTF-8 IN > OUT.")


def _unmarked_encoding(head: bytes) -> str | None:
    """UTF-16 or UTF-32 (LE or BE) without a byte-order mark, from a file's first two characters:
    each an ASCII byte (the ``{``, ``[``, quotes, letters and spaces files start with) padded with
    zero bytes. (JSON's own encoding detection, RFC 4627 section 3, reads the same pattern.)"""
    def ascii_(b: int) -> bool:
        return b in (9, 10, 13) or 32 <= b < 127

    for size in (4, 2):
        units = (head[:size], head[size:2 * size])
        if len(units[1]) < size:
            continue
        for order, char, pad in (("LE", 0, slice(1, None)), ("BE", size - 1, slice(0, -1))):
            if all(ascii_(u[char]) and not any(u[pad]) for u in units):
                return f"UTF-{size * 8}{order}"
    return None


def _read_text(path: Path, ds: DatasetFile) -> str:
    """A whole-file format's text (JSON array, CSV), its BOM noted in ``ds``; a byte that isn't
    UTF-8 is refused with its line and column."""
    raw = path.read_bytes()
    if raw.startswith(BOM):
        ds.bom = True
        raw = raw[3:]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise DataError(f"not UTF-8 text: byte 0x{raw[e.start]:02x}", path=str(path), line=line,
                        column=e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1,
                        hint="Save the file as UTF-8 (with or without BOM).") from None


def _read_json(path: Path, ds: DatasetFile) -> None:
    _parse_json(_read_text(path, ds), path, ds)


def _parse_json(text: str, path: Path, ds: DatasetFile) -> None:
    """Fill ``ds`` from a JSON array file's ``text`` (after its BOM)."""
    ds.newline = "\r\n" if "\r\n" in text[: 1 << 16] else "\n"
    pos = _WS.match(text, 0).end()
    if pos == len(text):
        ds.errors.append(DataError("the file is empty: no records", path=str(path)))
        ds._preamble, ds._trailer = text, ""
        ds.style = dict(_DEFAULT_STYLE, indent=2)
        return
    if text[pos] != "[":
        _top_level_error(path, text)
    lines = _LineIndex(text)
    decoder = json.JSONDecoder()
    i = _WS.match(text, pos + 1).end()
    records: list[Record] = []
    seps: list[str] = []
    first_start = i
    end = i
    close = None
    while i < len(text):
        if text[i] == "]" and not records:
            close = i
            break
        start = i
        line, start_column = lines.at(start)
        try:
            value, end = json_text.raw_decode(decoder, text, start)
        except json.JSONDecodeError:
            end = _element_end(text, start)
            value = None
        if type(value) is dict:
            records.append(Record(value, line, source=text[start:end]))
        else:
            records.append(_broken(text[start:end], line, *_json_element_problem(text, start, lines),
                                   start_column=start_column))
        j = _WS.match(text, end).end()
        if j >= len(text):
            ds.errors.append(DataError("the list of records is not closed: ']' is missing at the end",
                                       path=str(path), line=lines.at(end)[0]))
            break
        if text[j] == "]":
            close = j
            break
        if text[j] == ",":
            k = _WS.match(text, j + 1).end()
            if k >= len(text):  # a file cut short after a record: more records may be missing
                ln, cl = lines.at(j)
                ds.errors.append(DataError("the file ends after a comma, without the list's closing ']': it may be "
                                           "cut short, and records after this one missing", path=str(path),
                                           line=ln, column=cl))
                end = j  # the comma stays in the trailer, so an unedited save is identical
                break
            if text[k] == "]":
                ds.errors.append(DataError("a comma after the last record", path=str(path),
                                           line=lines.at(j)[0], column=lines.at(j)[1]))
                close = k
                end = j  # keep the stray comma in the trailer, so an unedited save is identical
                break
            seps.append(text[end:k])
            i = k
            continue
        ln, cl = lines.at(j)
        ds.errors.append(DataError(f"expected ',' or ']' after the record that starts at line {line}",
                                   path=str(path), line=ln, column=cl))
        seps.append(text[end:j])
        i = j
    after = _WS.match(text, close + 1).end() if close is not None else len(text)
    if after < len(text):  # kept in the trailer, so a save writes it back, but never read as records
        ln, cl = lines.at(after)
        said = ("zero bytes after the list's closing ']', as a write cut short leaves; they are not read"
                if text[after] == "\x00" else "text after the list's closing ']' is not read; records there belong "
                "inside the list")
        ds.errors.append(DataError(said, path=str(path), line=ln, column=cl))
    ds.records = records
    ds._preamble = text[:first_start] if records else text[: (close if close is not None else len(text))]
    ds._trailer = text[end:] if records else text[close:] if close is not None else "]"
    ds._gaps = {id(r): s for r, s in zip(records, seps, strict=False)}
    ds.style = _json_style(records, text[pos + 1:first_start], ds.newline)
    ds.file_errors = ds.errors
    ds.errors = []
    _collect_errors(ds)
    ds.errors.extend(ds.file_errors)
    if not records:
        ds.errors.insert(0, DataError("the file has no records: the list is empty", path=str(path)))


def _json_element_problem(text: str, start: int, lines: _LineIndex) -> tuple[str, int] | None:
    """Why the JSON array element at offset ``start`` of ``text`` (the whole file) is not a record,
    with the 1-based column (None if it is one): the reader's words, and a save's for a broken
    element it wrote (whose place in the file may have moved)."""
    try:
        value, _ = json_text.raw_decode(json.JSONDecoder(), text, start)
    except json.JSONDecodeError as e:
        return f"line {e.lineno}, column {e.colno}: {json_problem(e)}", e.colno
    if type(value) is dict:
        return None
    line, col = lines.at(start)
    return f"line {line}, column {col}: expected a record object {{...}}, got {_json_type(value)}", col


def _top_level_error(path: Path, text: str) -> None:
    try:
        value = json_text.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"not valid JSON: {json_problem(e)}", path=str(path), line=e.lineno, column=e.colno,
                        hint="A JSON dataset is a list of records [{...}, ...]; JSON Lines has one "
                             "record per line.") from None
    hint = "A JSON dataset is a list of records: [{...}, {...}]."
    if isinstance(value, dict):
        inner = [k for k, v in value.items() if isinstance(v, list) and v and isinstance(v[0], dict)]
        if inner:
            hint = (f"The records seem to be in the list under '{inner[0]}'; save that list on its "
                    "own, or as JSON Lines.")
    raise DataError(f"the top-level JSON value is {_json_type(value)}, expected a list of records",
                    path=str(path), line=1, column=1, hint=hint)


def _element_end(text: str, start: int) -> int:
    """Best guess at where a broken array element ends, so the records after it still load."""
    for string_aware in (True, False):
        depth, k, in_str = 0, start, False
        while k < len(text):
            c = text[k]
            if in_str:
                if c == "\\":
                    k += 1
                elif c == '"':
                    in_str = False
            elif c == '"' and string_aware:
                in_str = True
            elif c in "{[":
                depth += 1
            elif c in "}]":
                depth -= 1
                if depth == 0:
                    k += 1
                    nxt = _WS.match(text, k).end()
                    if nxt >= len(text) or text[nxt] in ",]":
                        return k
                    break
                if depth < 0:
                    return k
            elif c == "," and depth == 0:
                return k
            k += 1
    # No structure to go by: the rest up to the closing bracket.
    last = text.rstrip().rfind("]")
    return last if last > start else len(text)


def _json_style(records: list[Record], lead: str, nl: str) -> dict[str, Any]:
    indent: Any = None
    if "\n" in lead:
        indent_text = lead.rsplit("\n", 1)[1]
        indent = "\t" if indent_text.startswith("\t") else len(indent_text) or None
    candidates = [dict(_DEFAULT_STYLE, indent=indent, ensure_ascii=ea, separators=sep)
                  for ea in (False, True) for sep in ((", ", ": "), (",", ":"))]
    for r in [r for r in records if not r.broken][:20]:
        kept = [s for s in candidates if _json_elem(r.peek(), s, nl) == r._source]
        if kept:
            candidates = kept
    return candidates[0]


def _json_elem(data: dict, style: dict, nl: str) -> str:
    indent = style.get("indent")
    if indent is None:
        return _dumps(data, style)
    key_sep = style["separators"][1]
    text = json.dumps([data], ensure_ascii=style["ensure_ascii"], indent=indent, separators=(",", key_sep))
    body = text.split("\n")[1:-1]
    pad = indent if isinstance(indent, str) else " " * indent
    body[0] = body[0][len(pad):]
    return nl.join(body)


def _json_bytes(ds: DatasetFile, starts: list[int] | None = None) -> tuple[bytes, list, list[int]]:
    """The file's bytes, each record's written text and start line; ``starts``, when given, gets
    each record's character offset in the text (after the BOM)."""
    style = ds.style or dict(_DEFAULT_STYLE, indent=2)
    nl = ds.newline
    indent = style.get("indent")
    pad = "" if indent is None else (indent if isinstance(indent, str) else " " * indent)
    same_order = len(ds.records) == len(ds._loaded) and all(
        a is b for a, b in zip(ds.records, ds._loaded, strict=True))
    # Between records the file's own separator where it has one ("," in a compact file), else the
    # indent's: an edited or moved record must not bring ", " into a file written as [{...},{...}].
    seps = [g for g in ds._gaps.values() if "," in g]
    default_sep = max(set(seps), key=seps.count) if seps else "," + (nl + pad if indent is not None else " ")
    if ds._preamble is not None and ds.records and ds._loaded:
        preamble = ds._preamble
        trailer = ds._trailer
    elif ds._preamble is not None and ds.file_errors:
        # Text after the ']' (or the file cut short) is kept even with no record now, or none read: a
        # save never drops text it didn't read. A comma after a last record that is gone is no text.
        preamble = ds._preamble
        trailer = ds._trailer if ds.records else re.sub(r"^[ \t\r\n]*,", "", ds._trailer)
    elif indent is None:
        preamble, trailer = "[", "]" + nl
    else:
        preamble, trailer = "[" + nl + pad, nl + "]" + nl
    if not ds.records and not ds.file_errors:
        preamble, trailer = "[", "]" + nl
    parts = [preamble]
    sources: list = []
    lines: list[int] = []
    line = 1 + preamble.count("\n")
    offset = len(preamble)
    last = len(ds.records) - 1
    for i, r in enumerate(ds.records):
        if r.broken:
            elem = r.raw
        elif r._source is not None and not record_changed(r, ds):
            elem = r._source if isinstance(r._source, str) else r._source.decode("utf-8")
        else:
            elem = _json_elem(r.data, style, nl)
        parts.append(elem)
        sources.append(elem)
        lines.append(line)
        if starts is not None:
            starts.append(offset)
        line += elem.count("\n")
        offset += len(elem)
        if i < last:
            gap = ds._gaps.get(id(r)) if same_order else None
            gap = gap if gap is not None and "," in gap else default_sep
            parts.append(gap)
            line += gap.count("\n")
            offset += len(gap)
    parts.append(trailer)
    body = "".join(parts).encode("utf-8")
    return (BOM + body if ds.bom else body), sources, lines


class _LineIndex:
    """1-based (line, column) of a character offset, by bisecting the newline offsets."""

    def __init__(self, text: str):
        self.starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def at(self, offset: int) -> tuple[int, int]:
        k = bisect.bisect_right(self.starts, offset) - 1
        return k + 1, offset - self.starts[k] + 1


# ---- CSV


# csv's default limit on a field, 128 KiB, guards a server against hostile input; a dataset's answer
# (a long document, a whole file of code) is often longer, and every row over it was refused as broken.
# The largest a C long holds everywhere (it is 32 bits on Windows).
_CSV_FIELD_LIMIT = 2**31 - 1


def _csv_reader(lines: Any, delimiter: str, strict: bool = False) -> Any:
    """``csv.reader`` over ``lines`` that takes a field of any length a dataset holds."""
    if csv.field_size_limit() < _CSV_FIELD_LIMIT:
        csv.field_size_limit(_CSV_FIELD_LIMIT)  # process-wide: csv has no per-reader limit
    return csv.reader(lines, delimiter=delimiter, strict=strict)


class _LineTap:
    """Feeds lines to csv.reader and remembers them, so each row keeps its original text."""

    def __init__(self, lines):
        self.lines = iter(lines)
        self.taken: list[str] = []

    def __iter__(self):
        return self

    def __next__(self) -> str:
        line = next(self.lines)
        self.taken.append(line)
        return line


def _read_csv(path: Path, ds: DatasetFile) -> None:
    text = _read_text(path, ds)
    first_line = text.split("\n", 1)[0]
    ds.newline = "\r\n" if first_line.endswith("\r") else "\n"
    # The header's most frequent separator: a comma, a tab (a .tsv always), or the semicolon that
    # spreadsheets write where the comma is the decimal mark.
    delimiter = "\t" if path.suffix.lower() == ".tsv" else max((",", "\t", ";"), key=first_line.count)
    tap = _LineTap(io.StringIO(text, newline=""))
    # strict: a quote never closed, or text after a closing quote, is an error on that row rather
    # than a silently changed value (a stray quote would swallow the rest of the file into one field).
    reader = _csv_reader(tap, delimiter, strict=True)
    ds.style = {"delimiter": delimiter, "columns": [], "json_columns": []}
    try:
        header = next(reader)
    except StopIteration:
        ds.errors.append(DataError("the file is empty: no header and no records", path=str(path)))
        ds._preamble = ""
        return
    except csv.Error as e:
        raise DataError(f"unreadable CSV header: {e}", path=str(path), line=1) from None
    ds._preamble = "".join(tap.taken)
    tap.taken = []
    dupes = sorted({c for c in header if header.count(c) > 1})
    if dupes:
        raise DataError(f"the header has the column(s) {', '.join(map(repr, dupes))} more than once",
                        path=str(path), line=1)
    ds.style["columns"] = header
    ds.mapping.update(_header_spellings(header, ds.mapping))
    ds.style["json_columns"] = [c for c in header if ds.mapping.get(c, c) in JSON_COLUMNS]
    line = 2
    records: list[Record] = []
    gaps: dict[int, str] = {}
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            chunk = "".join(tap.taken)
            tap.taken = []
            records.append(_broken(chunk, line, *_csv_error(chunk, line, delimiter, e)))
            line += chunk.count("\n") or 1
            continue
        chunk = "".join(tap.taken)
        tap.taken = []
        if not row:
            if records:
                gaps[id(records[-1])] = gaps.get(id(records[-1]), "") + chunk
            else:
                ds._preamble += chunk
            line += 1
            continue
        if len(row) != len(header):
            records.append(_broken(chunk, line, *_csv_count_error(row, line, len(header))))
        else:
            records.append(Record(_row_dict(row, ds), line, source=chunk))
        line += max(chunk.count("\n"), 1)
    ds.records = records
    ds._gaps = gaps
    _collect_errors(ds)
    if not records:
        ds.errors.insert(0, DataError("the file has a header but no records", path=str(path)))


def _standard_name(column: str) -> str:
    """A CSV column's name as the record formats spell theirs: spreadsheets write ``Instruction``, or
    `` instruction `` when cells are padded."""
    return column.strip().lower()


def _header_spellings(header: list[str], mapping: dict[str, str]) -> dict[str, str]:
    """A mapping to the standard field names (and the alias names, see :data:`ALIASES`) from the
    header's columns that spell them in another case or with spaces around them. Only the reading
    goes through it: the file keeps its header as written. A column the user mapped, or a name
    that two columns spell, is left as it is."""
    known = {*ALPACA_FIELDS, *JSON_COLUMNS, *(n for names in ALIASES.values() for n in names)}
    spelled: dict[str, list[str]] = {}
    for c in header:
        spelled.setdefault(_standard_name(c), []).append(c)
    return {c: name for name, cols in spelled.items() for c in cols
            if name in known and len(cols) == 1 and c != name and c not in mapping}


def _csv_error(chunk: str, line: int, delimiter: str, e: csv.Error) -> tuple[str, int | None]:
    """csv's error for the row ``chunk`` that starts at ``line``, placed, with its column."""
    at = _quote_problem_at(chunk, delimiter)
    where = f"line {line + at[0]}, column {at[1]}" if at else f"line {line}"
    return f"{where}: {_csv_problem(e, delimiter)}", at[1] if at else None


def _csv_count_error(row: list[str], line: int, fields: int) -> tuple[str, int]:
    return f"line {line}, column 1: the row has {len(row)} fields, the header has {fields}", 1


def _csv_row_problem(chunk: str, line: int, ds: DatasetFile) -> tuple[str, int | None] | None:
    """Why the CSV row ``chunk`` at ``line`` is broken, as the reader would say it; None if it reads."""
    delimiter = ds.style.get("delimiter", ",")
    try:
        row = next(_csv_reader(io.StringIO(chunk, newline=""), delimiter, strict=True), [])
    except csv.Error as e:
        return _csv_error(chunk, line, delimiter, e)
    fields = len(ds.style.get("columns") or [])
    return _csv_count_error(row, line, fields) if row and len(row) != fields else None


def _quote_problem_at(chunk: str, delimiter: str) -> tuple[int, int] | None:
    """(lines after the row's first, 1-based column) of what makes ``chunk`` a bad CSV row: the
    quote that opens a field never closed, or the first character after a closing quote that is
    neither the delimiter nor the end of the line. csv.Error says neither."""
    quoted, opened, after_close = False, None, False
    at_field_start = True
    i = 0
    while i < len(chunk):
        ch = chunk[i]
        if quoted:
            if ch == '"':
                if chunk[i + 1:i + 2] == '"':
                    i += 2
                    continue
                quoted, after_close = False, True
        elif after_close and ch not in (delimiter, "\r", "\n"):
            return _line_col(chunk, i)
        elif ch == '"' and at_field_start:
            quoted, opened = True, i
        at_field_start = ch in (delimiter, "\n") and not quoted
        if ch in (delimiter, "\n") and not quoted:
            after_close = False
        i += 1
    return _line_col(chunk, opened) if quoted and opened is not None else None


def _line_col(text: str, i: int) -> tuple[int, int]:
    return text.count("\n", 0, i), i - (text.rfind("\n", 0, i) + 1) + 1


def _csv_problem(e: csv.Error, delimiter: str) -> str:
    """csv's error in words a person editing the file can act on."""
    text = str(e)
    if "unexpected end of data" in text:
        return ("a quoted field in this row never gets its closing quote, so the rest of the file "
                "would be read into it. Close the quote, or write a quote inside a field as \"\"")
    if "expected after" in text:
        sep = "a tab" if delimiter == "\t" else f"'{delimiter}'"
        return (f"text follows a quoted field's closing quote ({sep} or the end of the line must "
                f"come next). Inside a quoted field, write a quote as \"\"")
    return text


def _row_dict(row: list[str], ds: DatasetFile) -> dict:
    data = dict(zip(ds.style["columns"], row, strict=False))
    for c in ds.style["json_columns"]:
        v = data.get(c)
        if isinstance(v, str) and v.lstrip().startswith(("[", "{")):
            try:
                data[c] = json_text.loads(v)
            except json.JSONDecodeError:
                pass  # left as text; lint reports the wrong type with the reason
    return data


def _parse_csv_row(source: str, ds: DatasetFile) -> dict:
    row = next(_csv_reader(io.StringIO(source, newline=""), ds.style.get("delimiter", ",")), [])
    return _row_dict(row, ds)


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _csv_bytes(ds: DatasetFile) -> tuple[bytes, list, list[int]]:
    style = ds.style or {}
    columns: list[str] = list(style.get("columns") or [])
    seen = set(columns)
    for r in ds.records:
        if not r.broken:
            for k, v in r.peek().items():
                # A new key gets a column; one that is empty in every record (an added record's
                # blank "input") would only be a column of empty cells, which reads back the same.
                if k not in seen and v not in ("", None):
                    seen.add(k)
                    columns.append(k)
    same_columns = columns == list(style.get("columns") or [])
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=style.get("delimiter", ","), lineterminator=ds.newline)
    parts: list[str] = []
    if same_columns and ds._preamble:
        parts.append(ds._preamble)
    else:
        writer.writerow(columns)
        parts.append(buf.getvalue())
    if not same_columns:
        ds.style = dict(style, columns=columns,
                        json_columns=[c for c in columns if ds.mapping.get(c, c) in JSON_COLUMNS])
    sources: list = []
    lines: list[int] = []
    line = 1 + "".join(parts).count("\n")
    last = len(ds.records) - 1
    for i, r in enumerate(ds.records):
        if r.broken:
            chunk = r._source if r._source is not None and r.raw == _raw_text(r._source) else r.raw + ds.newline
        elif same_columns and r._source is not None and not record_changed(r, ds):
            chunk = r._source
        else:
            buf.seek(0)
            buf.truncate()
            data = r.peek()
            cells = [_csv_cell(data.get(c)) for c in columns]
            if same_columns and isinstance(r._source, str):
                # The cells the edit didn't touch keep their text: a JSON cell its own spacing.
                was = next(_csv_reader(io.StringIO(r._source, newline=""), style.get("delimiter", ",")), [])
                old = _row_dict(was, ds)
                cells = [was[i] if i < len(was) and c in old and old[c] == data.get(c) else cell
                         for i, (c, cell) in enumerate(zip(columns, cells, strict=True))]
            writer.writerow(cells)
            chunk = buf.getvalue()
        if isinstance(chunk, bytes):
            chunk = chunk.decode("utf-8")
        if i < last and not chunk.endswith(("\n", "\r")):
            chunk += ds.newline
        parts.append(chunk)
        sources.append(chunk)
        lines.append(line)
        line += chunk.count("\n")
        gap = ds._gaps.get(id(r))
        if gap:
            parts.append(gap)
            line += gap.count("\n")
    body = "".join(parts).encode("utf-8")
    return (BOM + body if ds.bom else body), sources, lines


# ---- Parquet


def parquet_problem(path: Path) -> str | None:
    """Why a .parquet file can't be read, from its first and last 4 bytes (a Parquet file starts and
    ends with ``PAR1``), in words a person can act on: pyarrow says "Parquet magic bytes not found in
    footer" for both. ``train`` asks it before it makes a run folder (it read the file only after)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
            size = fh.seek(0, 2)  # the end
            fh.seek(max(size - 4, 0))
            tail = fh.read(4)
    except OSError as e:
        return f"can't be read: {e.strerror}"
    if head != b"PAR1":
        return "not a Parquet file (it doesn't start with PAR1)"
    if size < 12 or tail != b"PAR1":
        return f"not a readable Parquet file: it ends without its footer ({size:,} bytes): cut short"
    return None


def _read_parquet(path: Path, ds: DatasetFile) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as e:
        raise DataError(parquet_problem(path) or f"not a readable Parquet file: {e}", path=str(path)) from None
    # The columns' Arrow types, so that a save writes each column as it was: int32 stays int32, a
    # timestamp a timestamp, a column that is null in every row stays (a read drops nulls).
    ds.style = {"columns": table.column_names, "arrow_schema": table.schema}
    # The source is the row as canonical JSON: enough to tell an edited record from an unedited one.
    ds.records = [Record(row, i + 1, source=_dumps(row))
                  for i, row in enumerate(_drop_nulls(table.to_pylist()))]
    if not ds.records:
        ds.errors.append(DataError("the file has no records", path=str(path)))


def _drop_nulls(value: Any) -> Any:
    # Arrow fills keys missing from some rows (or some turns) with null; a null means "absent".
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


def _parquet_bytes(ds: DatasetFile) -> tuple[bytes, None, None]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    # A Parquet row can't hold text that isn't a record (JSON typed in the editor that doesn't parse
    # yet), as a JSONL line or a CSV row can: refuse rather than write the file without it.
    broken = next(((n, r) for n, r in enumerate(ds.records, 1) if r.broken), None)
    if broken is not None:
        n, r = broken
        count = sum(1 for r in ds.records if r.broken)
        more = f" ({count} records are)" if count > 1 else ""
        raise DataError(f"record {n} is not valid JSON{more} ({r.error}), and a Parquet file can't keep a record "
                        "as text", path=str(ds.path) if ds.path else None,
                        hint="Fix or delete it first: the form shows its text.")
    good = list(ds.records)
    rows = [r.peek() for r in good]
    columns: list[str] = list((ds.style or {}).get("columns") or [])
    seen = set(columns)
    for row in rows:
        for k in row:
            if k not in seen:
                seen.add(k)
                columns.append(k)
    schema = (ds.style or {}).get("arrow_schema")
    kept = set(schema.names) if schema is not None else set()
    columns = [c for c in columns if c in kept or any(c in row for row in rows)]
    fields = []
    arrays = []
    for c in columns:
        values = [row.get(c) for row in rows]
        was = schema.field(c) if c in kept else None
        array = _typed_array(values, was.type) if was is not None else None
        if array is None:  # a new column, or values its old type can't hold: Arrow infers one
            try:
                array = pa.array(values)
            except (pa.ArrowException, OverflowError) as e:
                raise _parquet_column_error(ds, c, values, good, e) from None
        arrays.append(array)
        fields.append(was if was is not None and was.type == array.type else pa.field(c, array.type))
    # The file's own metadata, except pandas' (its index and dtypes describe the rows as they were).
    meta = {k: v for k, v in (schema.metadata or {}).items() if k != b"pandas"} if schema is not None else {}
    table = pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=meta or None))
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue(), None, None


def _typed_array(values: list, type_: Any) -> Any:
    """``values`` as an Arrow array of ``type_`` (text the type reads, such as an ISO date typed into
    a timestamp column, is cast), or None when they don't fit it."""
    import pyarrow as pa

    try:
        return pa.array(values, type=type_)
    except (pa.ArrowException, OverflowError, TypeError, ValueError):
        pass
    try:  # the text among the values (what the editor's JSON gives for a date) read as the type
        return pa.array([pa.array([v]).cast(type_)[0].as_py() if isinstance(v, str) else v for v in values],
                        type=type_)
    except (pa.ArrowException, OverflowError, TypeError, ValueError):
        return None


def _parquet_column_error(ds: DatasetFile, column: str, values: list, records: list, error: Exception) -> DataError:
    """Why ``column`` can't be one Parquet column, naming the first record that breaks it.

    Arrow reads a column's type from its values: the first prefix of the values it can't type
    ends at the culprit (found by bisection: a few conversions, not one per record)."""
    import pyarrow as pa

    def fails(n: int) -> bool:
        try:
            pa.array(values[:n])
            return False
        except (pa.ArrowException, OverflowError):
            return True

    lo, hi = 1, len(values)  # fails(hi) is True; find the smallest n with fails(n)
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if fails(mid) else (mid + 1, hi)
    culprit, record = values[lo - 1], records[lo - 1]
    earlier = sorted({_json_type(v) for v in values[:lo - 1] if v is not None})
    big = isinstance(culprit, int) and not isinstance(culprit, bool) and not -2**63 <= culprit < 2**63
    if big:
        why = f"{culprit} is beyond Parquet's 64-bit integers"
    elif earlier and _json_type(culprit) not in earlier:
        why = (f"it is {_json_type(culprit)}, but the records before it hold {' and '.join(earlier)} there, and a "
               "Parquet column has one type")
    else:
        why = f"it is {_json_type(culprit)} shaped unlike the records before it ({error})"
    number = next(i for i, r in enumerate(ds.records, 1) if r is record)
    return DataError(f"record {number}: '{column}' can't be written as a Parquet column: {why}",
                     path=str(ds.path) if ds.path else None, hint="Write it as a string, or export to JSONL." if big else
                     "Make the field the same type and shape in every record, or export to JSONL.")


def _serialize(ds: DatasetFile, container: str) -> tuple[bytes | list[bytes], list | None, list[int] | None]:
    """The file's bytes, plus each record's written text and start line (None for Parquet)."""
    if container == RecordFormat.JSONL:
        return _jsonl_bytes(ds)
    if container == RecordFormat.JSON:
        return _json_bytes(ds)
    if container == RecordFormat.CSV:
        return _csv_bytes(ds)
    if container == RecordFormat.PARQUET:
        return _parquet_bytes(ds)
    raise DataError(f"unknown container {container!r}; allowed: {', '.join(RecordFormat.CONTAINERS)}")


# ---- CLI


def check_output_path(path: str | Path, *, source: str | Path, force: bool = False) -> Path:
    """Refuse a write target that is the input file, a folder, or (without ``force``) an existing file.

    Args:
        path: Where the command is about to write.
        source: The file the command reads; never overwritten, even with ``force``.
        force: Replace an existing file other than ``source``.

    Returns:
        ``path`` as a Path.

    Raises:
        DataError: naming the target and what to do instead.
    """
    path, source = Path(path), Path(source)
    blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise DataError(f"can't make a folder there: '{blocker}' is a file", path=str(path),
                        hint="Choose a folder that exists or can be made.")
    if not path.exists():
        return path
    if path.is_dir():
        raise DataError("the output is a folder; give a file name", path=str(path))
    if source.exists() and path.samefile(source):
        raise DataError("refusing to overwrite the input file; give another output name", path=str(path),
                        hint="Write to a new file, check it, then replace the original yourself.")
    if not force:
        raise DataError("the output file already exists", path=str(path), hint="Give --force to replace it.")
    return path


def cli_convert(args: Any) -> int:
    """``finetune-studio data convert IN OUT [--format F ...] [--input-format F] [--per-answer] [--force]``.

    The GUI's Export: the records of ``IN`` written to ``OUT`` in another container and/or
    record format, through :func:`export` (extra fields kept, atomic write). Broken records
    are refused as :func:`export` refuses them, never dropped.

    Args:
        args: ``input`` and ``output`` (str); ``format`` (list[str] | None): a record format
            (alpaca, sharegpt, messages), a container (json, jsonl, csv, parquet) or one of
            each; without a container, ``OUT``'s extension decides, and without a record
            format the input's is kept. ``input_format`` (str, default auto): how to read
            ``IN``, as ``data check --format``. ``per_answer`` (bool): one record per answer of a
            multi-turn conversation (see :func:`export`). ``force`` (bool): replace an existing
            ``OUT`` (never ``IN``).

    Returns:
        0; errors are raised as StudioError (the CLI prints them, exit 2).
    """
    src, out = Path(args.input), Path(args.output)
    fmt, container = _convert_target(list(getattr(args, "format", None) or []), out)
    check_output_path(out, source=src, force=getattr(args, "force", False))
    ds = open_dataset(args.input, getattr(args, "input_format", None) or "auto")  # a file or a cached hub dataset
    if not ds.records:
        raise DataError("the file has no records; nothing to convert", path=str(src))
    fmt = fmt or ds.format
    per_answer = getattr(args, "per_answer", False)
    export(ds, out, container, fmt, per_answer=per_answer)
    n = len(ds.records)
    written = per_answer_count(ds) if per_answer else n
    more = f" from {n}, one per answer" if written != n else ""
    print(f"{src} ({ds.detected}) -> {out} ({FORMAT_NAMES[fmt]} {container.upper()}, "
          f"{written} record{'s' if written != 1 else ''}{more})")
    return 0


def _convert_target(values: list[str], out: Path) -> tuple[str | None, str]:
    """``--format`` values and the output's extension -> (record format or None, container)."""
    fmt = container = None
    allowed = ", ".join((*RecordFormat.FORMATS, *RecordFormat.CONTAINERS))
    for v in values:
        name = v.lower()
        if name in RecordFormat.FORMATS and fmt in (None, name):
            fmt = name
        elif name in RecordFormat.CONTAINERS and container in (None, name):
            container = name
        elif name in RecordFormat.FORMATS or name in RecordFormat.CONTAINERS:
            kind, first = ("record format", fmt) if name in RecordFormat.FORMATS else ("container", container)
            raise DataError(f"--format names two {kind}s ({first} and {name}); give at most one record "
                            "format and one container")
        else:
            raise DataError(f"unknown --format {v!r}; allowed: {allowed}")
    by_suffix = container_from_suffix(out)
    if container is None:
        if by_suffix is None:
            raise DataError(f"can't tell the output container from the name '{out.name}'", path=str(out),
                            hint="Name it .json, .jsonl, .csv, .tsv or .parquet, or give --format "
                            "json|jsonl|csv|parquet.")
        return fmt, by_suffix
    # JSON lines in a .json file read back fine (the reader sniffs); every other mismatch doesn't.
    if by_suffix not in (None, container) and not (container == "jsonl" and by_suffix == "json"):
        raise DataError(f"--format {container} doesn't match the extension '{out.suffix}' (read back as "
                        f"{by_suffix})", path=str(out), hint=f"Name the output .{container}.")
    return fmt, container


__all__ = ["load_dataset_file", "save_dataset_file", "export", "describe", "record_changed",
           "check_output_path", "cli_convert", "ALPACA_FIELDS", "CONVERSATION_KEY", "Schema"]
