"""A thin Qt adapter over an engine :class:`DatasetFile`: one row per record, lazily.

Nothing is copied or formatted up front, so a 100,000-record file opens as fast as the
engine reads it: ``rowCount`` is the length of the record list and ``data`` formats only
the cells the view asks for, truncated for display. Records loaded lazily by the engine
(JSONL lines kept as bytes) are parsed for display through a small LRU cache instead of
being materialised, so scrolling through a big file doesn't grow memory.

Edits never mutate a record in place: the model swaps in a new :class:`Record` (and undo
swaps the original object back). That keeps a snapshot of the record list (taken by the
lint and autosave threads) consistent, lets lint findings follow their record by identity
through inserts, deletes and moves, and makes "undo everything" return the very objects
the engine loaded, so a save after it is byte-identical.

Row numbers: the model may show records in a sorted order (see :meth:`sort`), so model
rows and *record indices* (positions in ``ds.records``) differ while a sort is active. The
mutation methods take record indices; :meth:`record_index` and :meth:`row_of_index` convert.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, Qt, Signal
from PySide6.QtGui import QBrush, QColor

from engine.data import json_text
from engine.data.records import CONVERSATION_KEY, SHAREGPT_ROLES, DatasetFile, Record
from gui.dataset.severity import MARKS, spoken, worst
from gui.scheme import app_palette, ink_color, tint_color

RecordRole = Qt.ItemDataRole.UserRole + 1
"""data() role returning the row's engine :class:`Record`."""

DISPLAY_CHARS = 160  # a cell shows at most this much; the form shows the rest
_CACHE_SIZE = 1024  # parsed dicts kept for display: a few screens of rows
_STANDARD_ALPACA = ("instruction", "input", "output", "system")
_BROKEN_BG = QColor(255, 228, 225)
_ERROR_FG = QColor(190, 30, 30)
_WARN_FG = QColor(170, 110, 0)
_MUTED_FG = QColor(130, 130, 130)
_brushes_by_palette: dict[int, tuple[QBrush, QBrush, QBrush, QBrush]] = {}


def _brushes() -> tuple[QBrush, QBrush, QBrush, QBrush]:
    """The broken-row tint and the error, warning and muted text, for the palette in use: data()
    asks for them per cell, so they are made once per palette (a light/dark switch makes new ones)."""
    palette = app_palette()
    key = palette.cacheKey()
    if key not in _brushes_by_palette:
        broken = tint_color(_BROKEN_BG, palette)
        _brushes_by_palette.clear()
        _brushes_by_palette[key] = (QBrush(broken), QBrush(ink_color(_ERROR_FG, palette, on=broken)),
                                    QBrush(ink_color(_WARN_FG, palette)), QBrush(ink_color(_MUTED_FG, palette)))
    return _brushes_by_palette[key]

_DISPLAY, _EDIT, _TOOLTIP = Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.EditRole, Qt.ItemDataRole.ToolTipRole
_BACKGROUND, _FOREGROUND = Qt.ItemDataRole.BackgroundRole, Qt.ItemDataRole.ForegroundRole
_ALIGN = Qt.ItemDataRole.TextAlignmentRole
_SPOKEN = Qt.ItemDataRole.AccessibleTextRole
_HANDLED_ROLES = frozenset({_DISPLAY, _EDIT, _TOOLTIP, _BACKGROUND, _FOREGROUND, _ALIGN, RecordRole, _SPOKEN})
_CENTER = int(Qt.AlignmentFlag.AlignCenter)
_SELECTABLE = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
_EDITABLE = _SELECTABLE | Qt.ItemFlag.ItemIsEditable
_NO_FLAGS = Qt.ItemFlag.NoItemFlags


@dataclass(frozen=True)
class Column:
    """One table column.

    Attributes:
        key: The data key, or ``#status`` (broken/findings marker), ``#turns`` (number of turns)
            or ``@role`` (first turn of that role in a conversation).
        title: Header text.
        editable: Whether the cell can be edited in place (text fields only).
    """

    key: str
    title: str
    editable: bool = False
    standard: str = ""  # the standard field a mapped key stands for (``instruction`` for ``prompt``)


def columns_for(ds: DatasetFile, sample: int = 200) -> list[Column]:
    """The columns for a file: a status marker, the format's fields, then extra fields seen.

    Only the first ``sample`` records are looked at, so this is O(1) in the file size.
    """
    cols = [Column("#status", "")]
    fmt = ds.format
    seen: dict[str, None] = {}
    for r in ds.records[:sample]:
        if not r.broken:
            for k in r.peek():
                seen.setdefault(k, None)
    if fmt in CONVERSATION_KEY:
        cols += [Column("@system", "system"), Column("@user", "user"), Column("@assistant", "assistant"),
                 Column("#turns", "turns")]
        skip = {CONVERSATION_KEY[fmt], "system"}
    else:
        # A file read through a mapping shows its own key in the standard field's place (the
        # prompt column as instruction), so an edit changes that key rather than adding another.
        own = ds.schema.own_names()
        present = [k for k in _STANDARD_ALPACA if own.get(k, k) in seen or k in ("instruction", "input", "output")]
        cols += [Column(own.get(k, k), k if own.get(k, k) == k else f"{k} ({own[k]})", editable=True, standard=k)
                 for k in present]
        skip = {own.get(k, k) for k in _STANDARD_ALPACA} | {"history"}
        if "history" in seen:
            cols.append(Column("history", "history"))
    for k in seen:
        if k not in skip:
            cols.append(Column(k, k, editable=True))
    return cols


def _as_text(value: Any) -> str:
    """A value that isn't text as a cell shows it: JSON for numbers, lists and objects; a value
    JSON lacks (a Parquet date or decimal) as its own text, ``2024-01-02 03:04:00``, unquoted."""
    if value is None or isinstance(value, (bool, int, float, list, dict)):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def cell_text(value: Any, limit: int = DISPLAY_CHARS) -> str:
    """A value as one line of at most ``limit`` characters (newlines shown as ⏎)."""
    if value is None:
        return ""
    if not isinstance(value, str):
        value = _as_text(value)
    # Slice before replacing so a 1 MB field costs the same as a short one.
    short = value[:limit + 1]
    short = short.replace("\r\n", "\n").replace("\n", " ⏎ ").replace("\t", " ")
    if len(value) > limit:
        short = short[:limit] + "…"
    return short


def _first_turn(turns: Any, role: str) -> str | None:
    if not isinstance(turns, list):
        return None
    for t in turns:
        if not isinstance(t, dict):
            continue
        tag = t.get("role", t.get("from"))
        if isinstance(tag, str) and SHAREGPT_ROLES.get(tag, tag) == role:
            return t.get("content", t.get("value"))
    return None


def _last_turn(turns: Any, role: str) -> str | None:
    if not isinstance(turns, list):
        return None
    return _first_turn(list(reversed(turns)), role)


class RecordTableModel(QAbstractTableModel):
    """Rows are the records of one :class:`DatasetFile`; columns from :func:`columns_for`."""

    sig_records_changed = Signal()
    """Records were edited, inserted, removed or moved."""

    sig_replaced = Signal(object)
    """Record objects are about to be swapped (a list of (old, new)); sent before dataChanged."""

    sig_sort_reset = Signal()
    """A structural edit dropped the view sort (the header should clear its indicator)."""

    # ---- Public API
    def __init__(self, parent=None):
        super().__init__(parent)
        self._ds: DatasetFile | None = None
        self._records: list[Record] = []
        self._columns: list[Column] = []
        self._order: list[int] | None = None  # model row -> record index while sorted
        self._pos: list[int] | None = None  # record index -> model row while sorted
        self._findings: dict[int, tuple[Record, list]] = {}
        self._cache: OrderedDict[int, tuple[Record, dict]] = OrderedDict()
        self.edit_handler = None
        """Called as ``edit_handler(record_index, new_record)`` for in-place cell edits (the
        editor pushes an undo command); None applies the edit directly."""

    def set_dataset(self, ds: DatasetFile | None) -> None:
        self.beginResetModel()
        self._ds = ds
        self._records = ds.records if ds is not None else []
        self._columns = columns_for(ds) if ds is not None else []
        self._order = self._pos = None
        self._findings = {}
        self._cache.clear()
        self.endResetModel()

    def dataset(self) -> DatasetFile | None:
        return self._ds

    def columns(self) -> list[Column]:
        return list(self._columns)

    def column_of(self, key: str) -> int:
        """The column of a data key, or of the standard field a mapped key stands for; -1 if none."""
        return next((i for i, c in enumerate(self._columns) if c.key == key),
                    next((i for i, c in enumerate(self._columns) if c.standard == key), -1))

    def record(self, row: int) -> Record:
        """The record shown at model row ``row``."""
        return self._records[self.record_index(row)]

    def record_index(self, row: int) -> int:
        """Position in ``ds.records`` of the record at model row ``row``."""
        return self._order[row] if self._order is not None else row

    def row_of_index(self, index: int) -> int:
        """Model row of the record at ``ds.records[index]``."""
        return self._pos[index] if self._pos is not None else index

    def index_of_record(self, record: Record, hint: int | None = None) -> int:
        """Position of a record object in ``ds.records`` (by identity), or -1."""
        recs = self._records
        if hint is not None and 0 <= hint < len(recs) and recs[hint] is record:
            return hint
        for i, r in enumerate(recs):
            if r is record:
                return i
        return -1

    def set_findings(self, findings: dict[int, tuple[Record, list]]) -> None:
        """Lint findings by ``id(record)`` as ``{id: (record, [Finding, ...])}``."""
        self._findings = findings
        if self._records and self._columns:
            self.dataChanged.emit(self.index(0, 0), self.index(len(self._records) - 1, 0))

    def findings_for(self, record: Record) -> list:
        entry = self._findings.get(id(record))
        return entry[1] if entry is not None and entry[0] is record else []

    def has_findings(self) -> bool:
        return bool(self._findings)

    def is_sorted(self) -> bool:
        return self._order is not None

    # ---- Mutations (record indices; the undo commands call these)
    def replace_records(self, changes: list[tuple[int, Record]]) -> list[Record]:
        """Put new record objects at the given record indices; returns the old ones."""
        old = []
        for idx, rec in changes:
            old.append(self._records[idx])
            if self._ds is not None:
                self._ds.succeed(old[-1], rec)
            self._records[idx] = rec
        self.sig_replaced.emit(list(zip(old, (r for _, r in changes), strict=True)))
        rows = [self.row_of_index(i) for i, _ in changes]
        if rows:
            last = len(self._columns) - 1
            if len(rows) == 1:
                self.dataChanged.emit(self.index(rows[0], 0), self.index(rows[0], last))
            else:
                self.dataChanged.emit(self.index(min(rows), 0), self.index(max(rows), last))
        self.sig_records_changed.emit()
        return old

    def insert_records(self, index: int, records: list[Record]) -> None:
        self._drop_sort()
        self.beginInsertRows(QModelIndex(), index, index + len(records) - 1)
        self._records[index:index] = records
        self.endInsertRows()
        self.sig_records_changed.emit()

    def remove_records(self, indices: list[int]) -> list[tuple[int, Record]]:
        """Remove records; returns ``(index, record)`` pairs in ascending order for undo."""
        self._drop_sort()
        removed = []
        # Remove from the bottom up, in contiguous runs, so indices stay valid.
        for start, end in reversed(_runs(sorted(set(indices)))):
            self.beginRemoveRows(QModelIndex(), start, end)
            chunk = self._records[start:end + 1]
            del self._records[start:end + 1]
            self.endRemoveRows()
            removed[0:0] = list(zip(range(start, end + 1), chunk, strict=True))
        self.sig_records_changed.emit()
        return removed

    def restore_records(self, removed: list[tuple[int, Record]]) -> None:
        """Undo :meth:`remove_records`."""
        self._drop_sort()
        indices = [i for i, _ in removed]
        by_index = dict(removed)
        for start, end in _runs(indices):
            self.beginInsertRows(QModelIndex(), start, end)
            self._records[start:start] = [by_index[i] for i in range(start, end + 1)]
            self.endInsertRows()
        self.sig_records_changed.emit()

    def move_record(self, src: int, dst: int) -> None:
        """Move the record at index ``src`` so that it ends up at index ``dst``."""
        if src == dst:
            return
        self._drop_sort()
        # Qt's destination is the row *before which* it goes, counted before the move.
        qt_dst = dst + 1 if dst > src else dst
        self.beginMoveRows(QModelIndex(), src, src, QModelIndex(), qt_dst)
        rec = self._records.pop(src)
        self._records.insert(dst, rec)
        self.endMoveRows()
        self.sig_records_changed.emit()

    # ---- Qt model interface
    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: N802 - Qt's name
        return 0 if parent.isValid() else len(self._records)

    def columnCount(self, parent=QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(self._columns)

    def data(self, index, role=_DISPLAY):
        # The hot path: a painted cell asks for ~7 roles. Unhandled roles leave at the first test.
        if role not in _HANDLED_ROLES:
            return None
        row, col = index.row(), index.column()
        if row < 0 or row >= len(self._records) or col >= len(self._columns):
            return None
        rec = self._records[self._order[row] if self._order is not None else row]
        column = self._columns[col]
        if role == _DISPLAY:
            if column.key == "#status":
                return self._status_text(rec)
            return cell_text(self._value(rec, column, col))
        if role == _BACKGROUND:
            return _brushes()[0] if rec.broken else None
        if role == _FOREGROUND:
            _, error, warn, muted = _brushes()
            if column.key == "#status":
                sev = worst(self.findings_for(rec))
                if rec.broken or sev == "error":
                    return error
                return warn if sev == "warning" else muted
            return muted if column.key == "#turns" else None
        if role == _ALIGN:
            return _CENTER if column.key in ("#status", "#turns") else None
        if role == _EDIT:
            value = self._value(rec, column, col)
            if value is None or isinstance(value, str):
                return value or ""
            return _as_text(value)
        if role == RecordRole:
            return rec
        if role == _TOOLTIP:
            return self._tooltip(rec, column, col)
        if role == _SPOKEN and column.key == "#status":  # the mark and its colour, in words
            return "broken record: not valid JSON" if rec.broken else (spoken(self.findings_for(rec)) or "no findings")
        return None

    def setData(self, index, value, role=Qt.ItemDataRole.EditRole) -> bool:  # noqa: N802
        if role != Qt.ItemDataRole.EditRole or not index.isValid():
            return False
        if not (self.flags(index) & Qt.ItemFlag.ItemIsEditable):
            return False
        idx = self.record_index(index.row())
        new = self.edited(self._records[idx], index.column(), "" if value is None else str(value))
        if new is None:
            return False
        title = self._columns[index.column()].title
        if self.edit_handler is not None:
            self.edit_handler(idx, new, f"Edit {title}")
        else:
            self.replace_records([(idx, new)])
        return True

    def edited(self, old: Record, col: int, text: str) -> Record | None:
        """The record that committing ``text`` in column ``col``'s cell of ``old`` makes (what
        :meth:`setData` puts in its place), without committing it; None when it changes nothing.
        The autosave uses it for a cell editor that is still open."""
        if not 0 <= col < len(self._columns):
            return None
        column = self._columns[col]
        shown = self._value(old, column, col)
        shown = "" if shown is None else shown if isinstance(shown, str) else _as_text(shown)
        if text == shown:
            return None  # the editor closed on what it opened with (a null or missing field shows "")
        if old.broken:
            return fixed_record(old, text)
        current = old.peek().get(column.key)
        if current is not None and not isinstance(current, str):
            # A number, list or object was edited as JSON text; keep its type when it parses.
            try:
                parsed: Any = json_text.loads(text)
            except ValueError:
                parsed = text
        else:
            parsed = text
        if parsed == current:
            return None
        return with_field(old, column.key, parsed)

    def flags(self, index):
        row, col = index.row(), index.column()
        if row < 0 or row >= len(self._records) or col >= len(self._columns):
            return _NO_FLAGS
        if self.record(row).broken:
            # A broken record's raw text sits in the first text column, and can be fixed there.
            return _EDITABLE if col == 1 else _SELECTABLE
        return _EDITABLE if self._columns[col].editable else _SELECTABLE

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):  # noqa: N802
        if orientation == Qt.Orientation.Horizontal:
            if not 0 <= section < len(self._columns):
                return None
            column = self._columns[section]
            if role == Qt.ItemDataRole.DisplayRole:
                return column.title
            if role == Qt.ItemDataRole.ToolTipRole:
                if column.key == "#status":
                    return ("✖ broken record (not valid JSON) or lint errors, ⚠ lint warnings, ℹ lint notes; "
                            "the number counts the record's findings")
                return f"field '{column.key}'" if not column.key.startswith(("#", "@")) else None
            return None
        if not 0 <= section < len(self._records):
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return str(self.record_index(section) + 1)
        if role == Qt.ItemDataRole.ToolTipRole:
            rec = self.record(section)
            return f"record {self.record_index(section) + 1}" + (
                f", file line {rec.line}" if rec.line else " (new)")
        return None

    def sort(self, column: int, order=Qt.SortOrder.AscendingOrder) -> None:
        """Sort the *view* by a column (the file order is unchanged; -1 restores it).

        Done here in one Python ``sorted`` rather than by QSortFilterProxyModel, whose
        comparisons call back into Python ``data()`` O(n log n) times: 16-60 s for 100k rows
        on a 2-core CPU, against well under a second this way. Big files use
        :meth:`sort_job` instead, which computes the keys in slices.
        """
        if self._ds is None:
            return
        if column < 0 or column >= len(self._columns):
            self.apply_order(None)
            return
        job = self.sort_job(column, order)
        while not job.step(float("inf")):
            pass
        job.apply()

    def sort_job(self, column: int, order=Qt.SortOrder.AscendingOrder) -> SortJob:
        """A sort whose per-record keys are computed a slice at a time (see :class:`SortJob`)."""
        return SortJob(self, column, order)

    def apply_order(self, view_order: list[int] | None) -> None:
        """Show the records in this order of record indices (None: file order)."""
        persistent = self.persistentIndexList()
        old_ids = [self.record_index(p.row()) for p in persistent]
        self.layoutAboutToBeChanged.emit()
        if view_order is None:
            self._order = self._pos = None
        else:
            self._order = view_order
            pos = [0] * len(view_order)
            for row, i in enumerate(view_order):
                pos[i] = row
            self._pos = pos
        self.changePersistentIndexList(
            persistent, [self.index(self.row_of_index(i), p.column()) for p, i in zip(persistent, old_ids, strict=True)])
        self.layoutChanged.emit()

    # ---- Internals
    def _drop_sort(self) -> None:
        if self._order is not None:
            self.sort(-1)
            self.sig_sort_reset.emit()

    def _peek(self, rec: Record) -> dict:
        if rec.materialized:
            return rec.peek()
        key = id(rec)
        hit = self._cache.get(key)
        if hit is not None and hit[0] is rec:
            self._cache.move_to_end(key)
            return hit[1]
        data = rec.peek()
        self._cache[key] = (rec, data)
        if len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)
        return data

    def _value(self, rec: Record, column: Column, col: int) -> Any:
        if rec.broken:
            return rec.raw if col == 1 else None
        key = column.key
        if key.startswith("#"):
            if key == "#turns":
                turns = self._peek(rec).get(CONVERSATION_KEY.get(self._ds.format, ""))
                return len(turns) if isinstance(turns, list) else None
            return None
        data = self._peek(rec)
        if key.startswith("@"):
            turns = data.get(CONVERSATION_KEY.get(self._ds.format, ""))
            role = key[1:]
            if role == "system" and isinstance(data.get("system"), str):
                return data["system"]
            return _last_turn(turns, role) if role == "assistant" else _first_turn(turns, role)
        return data.get(key)

    def _status_text(self, rec: Record) -> str:
        if rec.broken:
            return "✖"
        findings = self.findings_for(rec)
        if not findings:
            return ""
        # The mark of the worst finding, as in the Checks tab: an error is ✖ (it is drawn red), not ⚠.
        return f"{MARKS[worst(findings)]} {len(findings)}"

    def _tooltip(self, rec: Record, column: Column, col: int) -> str | None:
        if column.key == "#status":
            lines = []
            if rec.broken:
                lines.append(f"Not valid JSON: {rec.error_words()}")
            lines += [f"{getattr(f, 'rule', '?')}: {getattr(f, 'message', f)}" for f in self.findings_for(rec)]
            return "\n".join(lines) or None
        if rec.broken and col == 1:
            return f"{rec.error_words()}\n\n{cell_text(rec.raw, 600)}"
        value = self._value(rec, column, col)
        if isinstance(value, str) and len(value) > 60:
            return value[:1500] + ("…" if len(value) > 1500 else "")
        return None

    def _sort_key(self, column: Column, col: int):
        if column.key == "#status":
            return lambda r: (not r.broken, -len(self.findings_for(r)))

        # Keys hold the first 64 characters: enough to order by, and 100k of them stay ~15 MB.
        def key(r: Record):
            if r.broken:
                return (0, 0.0, "")
            value = self._value(r, column, col) if r.materialized else _value_unsafe(r, column, self._ds.format)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return (1, float(value), "")
            return (2, 0.0, cell_text(value, 64).casefold())
        return key


def _value_unsafe(rec: Record, column: Column, fmt: str) -> Any:
    """Like ``_value`` without the display cache (sorting visits every record once)."""
    data = rec.peek()
    key = column.key
    if key == "#turns":
        turns = data.get(CONVERSATION_KEY.get(fmt, ""))
        return len(turns) if isinstance(turns, list) else None
    if key.startswith("@"):
        turns = data.get(CONVERSATION_KEY.get(fmt, ""))
        role = key[1:]
        if role == "system" and isinstance(data.get("system"), str):
            return data["system"]
        return _last_turn(turns, role) if role == "assistant" else _first_turn(turns, role)
    return data.get(key)


def _runs(indices: list[int]) -> list[tuple[int, int]]:
    """Contiguous ``(start, end)`` runs of sorted indices."""
    runs: list[tuple[int, int]] = []
    for i in indices:
        if runs and runs[-1][1] == i - 1:
            runs[-1] = (runs[-1][0], i)
        else:
            runs.append((i, i))
    return runs


def with_data(old: Record, data: dict) -> Record:
    """A new good record with ``data``, keeping the old one's file line and schema, and its text in
    the file: a save writes back what the edit didn't change as it was (a CSV row's other cells),
    and a record edited back to what the file holds as the file holds it."""
    return Record(data, old.line, schema=old.schema, source=None if old.broken else old._source)


def with_field(old: Record, key: str, value: Any) -> Record:
    data = dict(old.peek())
    data[key] = value
    return with_data(old, data)


def fixed_record(old: Record, text: str) -> Record:
    """A record from raw JSON text: good if it parses to an object, else broken with the reason."""
    probe = Record(None, old.line, schema=old.schema)
    if probe.fix(text):
        # Serialised by the engine in the file's style: raw text typed over several lines
        # must not be written verbatim into a one-record-per-line JSONL file.
        return Record(probe.data, old.line, schema=old.schema)
    return Record(None, old.line, raw=text, error=probe.error, column=probe.column, schema=old.schema)


class SortJob:
    """Sorting the view of a big file: keys a slice at a time, then one C-level ``sorted``.

    Computing a key parses a record (about 20 µs for 1 KB); for 100k records that is 2 s,
    which in one piece freezes the editor. The editor calls :meth:`step` from a
    zero-interval timer, so the window repaints between slices, then :meth:`apply`. A job
    whose records changed in number meanwhile (added or deleted) is stale and not applied.
    """

    def __init__(self, model: RecordTableModel, column: int, order: Qt.SortOrder):
        self.model = model
        self.column = column
        self.order = order
        self.source = model._records  # the dataset's list: another file means another list
        self.records = list(self.source)
        self._key = model._sort_key(model._columns[column], column)
        self.keys: list = []

    @property
    def done(self) -> int:
        return len(self.keys)

    def step(self, budget_s: float) -> bool:
        """Compute keys for about ``budget_s`` seconds; True when every key is there."""
        deadline = time.perf_counter() + budget_s
        key, recs, keys = self._key, self.records, self.keys
        n = len(recs)
        while len(keys) < n:
            end = min(n, len(keys) + 256)
            keys.extend(key(recs[i]) for i in range(len(keys), end))
            if time.perf_counter() > deadline:
                break
        return len(keys) >= n

    def stale(self) -> bool:
        """Records were added or deleted, or another file was opened, since the job began."""
        return self.model._records is not self.source or len(self.source) != len(self.records)

    def apply(self) -> bool:
        """Sort by the keys and show that order; False (nothing changed) if the job is stale."""
        if self.stale():
            return False
        keys = self.keys
        self.model.apply_order(sorted(range(len(keys)), key=keys.__getitem__,
                                      reverse=self.order == Qt.SortOrder.DescendingOrder))
        return True
