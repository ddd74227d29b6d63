"""The table's filter: text or regex in one field or all, and/or a lint rule.

Filtering stays in QSortFilterProxyModel (C++ keeps the row mapping; only the predicate
runs in Python, ~0.1 s per 100k rows with no filter). Sorting does *not*: the proxy hands
it to :meth:`RecordTableModel.sort`, which sorts the view in one Python ``sorted``.

The record open in the form is *pinned*: it stays visible even when an edit makes it stop
matching, so fixing a record found by "show only records with finding X" doesn't yank it
out from under the annotator's cursor. It drops out when they move on.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from PySide6.QtCore import QModelIndex, QSortFilterProxyModel, Qt, QTimer, Signal
from PySide6.QtGui import QGuiApplication

from engine.data.records import Record
from gui.dataset.search import TextQuery, record_matches

ANY_FINDING = "*any*"
BROKEN = "*broken*"
ASYNC_SORT_MIN = 20_000  # from this many records a sort's keys are computed in slices between frames
SLICE_S = 0.012


@dataclass
class TextMatches:
    """Which records of a snapshot match a text query (computed by :class:`FilterScan`).

    ``records`` keeps the scanned objects alive, so their ``id`` can't be reused by a new
    record while these sets are in use.
    """

    query: TextQuery
    records: list[Record]
    scanned: set[int]
    accepted: set[int]


class FilterScan:
    """Matches a snapshot of records against a text query a slice at a time.

    The editor calls :meth:`step` from a zero-interval timer, so the window repaints between
    slices; :meth:`result` gives the :class:`TextMatches` once every record was seen.
    """

    def __init__(self, generation: int, records: list[Record], fmt: str, query: TextQuery):
        self.generation = generation
        self.records = records
        self.fmt = fmt
        self.query = query
        self.pattern = query.pattern()
        self.done = 0
        self.accepted: set[int] = set()

    def step(self, budget_s: float) -> bool:
        """Match records for about ``budget_s`` seconds; True when every record is done."""
        deadline = time.perf_counter() + budget_s
        records, fmt, query, pattern, accepted = self.records, self.fmt, self.query, self.pattern, self.accepted
        i, n = self.done, len(records)
        while i < n:
            rec = records[i]
            if record_matches(rec, fmt, query, pattern):
                accepted.add(id(rec))
            i += 1
            if not i % 64 and time.perf_counter() > deadline:
                break
        self.done = i
        return i >= n

    def result(self) -> TextMatches:
        return TextMatches(self.query, self.records, {id(r) for r in self.records}, self.accepted)


class RecordFilterProxy(QSortFilterProxyModel):
    """Filters a :class:`~gui.dataset.table_model.RecordTableModel` by text and lint rule."""

    sig_sorted = Signal()
    """The view shows the order a :meth:`sort` asked for."""

    # ---- Public API
    def __init__(self, parent=None):
        super().__init__(parent)
        self._query: TextQuery | None = None
        self._pattern: re.Pattern[str] | None = None
        self._rule: str | None = None
        self._pinned: Record | None = None
        self._matches: TextMatches | None = None
        self._sort_job = None
        self._sort_timer = QTimer(self, interval=0)  # one slice of a big sort's keys per event-loop turn
        self._sort_timer.timeout.connect(self._on_sort_tick)
        self.setDynamicSortFilter(True)

    def set_filter(self, query: TextQuery | None, rule: str | None, matches: TextMatches | None = None) -> None:
        """Show only records matching ``query`` (None/empty: all) and having ``rule`` findings.

        Args:
            query: The text filter.
            rule: A lint rule, :data:`ANY_FINDING` or :data:`BROKEN`.
            matches: ``query``'s result computed beforehand (on a thread, by :func:`scan_matches`).
                Records it scanned are decided from it; records created since (edits) are
                matched directly.

        Raises:
            re.error: an invalid regular expression (nothing is changed then).
        """
        pattern = query.pattern() if query is not None and query.text else None
        # A reset, not a filter change: Qt then maps rows lazily instead of announcing every
        # removed or re-added range to the view (0.15 s instead of 0.7 s to clear a filter over
        # 100k records, 1.5 s instead of 4 s to apply one). Views lose their current row; the
        # editor restores it.
        self.beginResetModel()
        self._query = query if pattern is not None else None
        self._pattern = pattern
        self._rule = rule or None
        self._pinned = None  # new criteria: the current record must match them like any other
        self._matches = matches if pattern is not None else None
        self.endResetModel()

    def refilter(self) -> None:
        """Evaluate the filter again (after lint findings changed, say)."""
        if hasattr(self, "beginFilterChange"):  # Qt >= 6.10; invalidateFilter is deprecated there
            self.beginFilterChange()
            self.endFilterChange(QSortFilterProxyModel.Direction.Rows)
        else:
            self.invalidateFilter()

    def is_filtering(self) -> bool:
        return self._query is not None or self._rule is not None

    def pin(self, record: Record | None) -> None:
        """Keep ``record`` visible whatever the filter says (the one open in the form)."""
        previous, self._pinned = self._pinned, record
        if previous is not None and previous is not record and self.is_filtering():
            src = self.sourceModel()
            idx = src.index_of_record(previous)
            if idx >= 0:
                row = src.row_of_index(idx)
                # Re-evaluating one row: dynamic filtering reacts to dataChanged.
                src.dataChanged.emit(src.index(row, 0), src.index(row, 0))

    def setSourceModel(self, model) -> None:  # noqa: N802 - Qt's name
        super().setSourceModel(model)
        model.sig_replaced.connect(self.follow_replacements)

    def follow_replacements(self, pairs) -> None:
        """Keep the pin on a record that an edit just replaced by a new object."""
        for old, new in pairs:
            if old is self._pinned:
                self._pinned = new

    def sort(self, column: int, order=Qt.SortOrder.AscendingOrder) -> None:
        """Sort the view (the source model sorts; see :meth:`RecordTableModel.sort`).

        A big file's keys take seconds to compute, so from :data:`ASYNC_SORT_MIN` records they
        are computed in 12 ms slices between frames (a busy cursor meanwhile, the window
        still responsive); :attr:`sig_sorted` says when the order is shown.
        """
        model = self.sourceModel()
        self._cancel_sort()
        if column < 0 or model.rowCount() < ASYNC_SORT_MIN:
            model.sort(column, order)
            self.sig_sorted.emit()
            return
        self._sort_job = model.sort_job(column, order)
        QGuiApplication.setOverrideCursor(Qt.CursorShape.BusyCursor)
        self._sort_timer.start()

    def sorting(self) -> bool:
        """A sort's keys are being computed."""
        return self._sort_job is not None

    def _on_sort_tick(self) -> None:
        job = self._sort_job
        if job is None or job.stale():
            self._cancel_sort()
            return
        if not job.step(SLICE_S):
            return
        self._cancel_sort()
        job.apply()
        self.sig_sorted.emit()

    def _cancel_sort(self) -> None:
        if self._sort_job is not None:
            self._sort_job = None
            self._sort_timer.stop()
            QGuiApplication.restoreOverrideCursor()

    # ---- Qt interface
    def filterAcceptsRow(self, source_row: int, source_parent: QModelIndex) -> bool:  # noqa: N802
        if self._query is None and self._rule is None:
            return True
        model = self.sourceModel()
        rec = model.record(source_row)
        if rec is self._pinned:
            return True
        if self._rule is not None:
            if self._rule == BROKEN:
                if not rec.broken:
                    return False
            else:
                findings = model.findings_for(rec)
                if self._rule == ANY_FINDING:
                    if not findings and not rec.broken:
                        return False
                elif not any(getattr(f, "rule", None) == self._rule for f in findings):
                    return False
        if self._query is not None:
            m = self._matches
            if m is not None and id(rec) in m.scanned:
                return id(rec) in m.accepted
            return record_matches(rec, model.dataset().format, self._query, self._pattern)
        return True
