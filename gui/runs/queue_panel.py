"""The Runs area's "Queue" tab: runs lined up to train one after another on the one GPU.

The queue is the engine's (:mod:`engine.runqueue`): ``queue/queue.json`` in the data folder,
shared with ``finetune-studio queue`` in a terminal. "Start" launches ``finetune-studio queue
run`` as a process of its own, so the queue goes on when the window closes, and the Train
area follows each run it starts. This panel only reads the file (when it changed) and asks
the engine to change it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from engine.errors import StudioError
from engine.runqueue import ENDED, PENDING, RUNNING, Entry, RunQueue, progress
from engine.runs import pid_alive
from gui.dataset.severity import COLORS
from gui.flow_layout import FlowLayout
from gui.scheme import ink, ink_color

COLUMNS = ("State", "Run", "Changes", "Result")
STATE_COLORS = {"failed": COLORS["error"], "interrupted": COLORS["warning"], RUNNING: "#1565c0",
                "completed": "#2e7d32"}
POLL_MS = 1500
RETRYABLE = ("stopped", "interrupted", "failed")


def _ago(t: float | None) -> str:
    return time.strftime("%H:%M", time.localtime(t)) if t else ""


class QueueTableModel(QAbstractTableModel):
    def __init__(self, parent: Any = None):
        super().__init__(parent)
        self.entries: list[Entry] = []

    def set_entries(self, entries: list[Entry]) -> None:
        self.beginResetModel()
        self.entries = entries
        self.endResetModel()

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(self.entries)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation,  # noqa: N802
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return COLUMNS[section]
        return None

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        e = self.entries[index.row()]
        col = COLUMNS[index.column()]
        if role == Qt.ItemDataRole.DisplayRole:
            if col == "State":
                return e.state + (f" {_ago(e.started)}" if e.state == RUNNING else "")
            if col == "Run":
                return e.name + (" (resumed)" if e.resume else "")
            if col == "Changes":
                return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in e.changes.items())
            if col == "Result":
                return e.message or progress(e)
        if role == Qt.ItemDataRole.ForegroundRole and col == "State" and e.state in STATE_COLORS:
            return ink_color(STATE_COLORS[e.state])
        if role == Qt.ItemDataRole.ToolTipRole:
            lines = [f"{e.id}: {e.state}", f"config: {e.config}"]
            if e.source:
                lines.append(f"queued from {e.source}")
            if e.run_dir:
                lines.append(f"run folder: {e.run_dir}")
            if e.message:
                lines.append(e.message)
            return "\n".join(lines)
        return None


class QueuePanel(QWidget):
    """The queue, with Start / Stop and the edits a pending entry allows."""

    sig_changed = Signal(int)
    """The queue was re-read (the number of pending entries)."""

    sig_show_run = Signal(str)
    """Show this run folder in the history (an entry was double-clicked)."""

    sig_compare = Signal(list)
    """Compare these run folders' curves and configs (the Compare button)."""

    def __init__(self, parent: QWidget | None = None, queue: RunQueue | None = None):
        super().__init__(parent)
        self.queue = queue or RunQueue()
        self._stamp: tuple | None = None
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.model = QueueTableModel(self)
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setAlternatingRowColors(True)
        self.table.verticalHeader().hide()
        self.table.setWordWrap(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(COLUMNS.index("Result"), QHeaderView.ResizeMode.Stretch)
        self.empty = QLabel("Nothing is queued. In the Train area, Queue adds the form's run, or a sweep of it "
                            "(one run per value), to train one after another, also overnight with the window "
                            "closed. From a terminal: finetune-studio queue add RUN.yaml --grid "
                            "learning_rate=1e-4,3e-4")
        self.empty.setWordWrap(True)
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty.setStyleSheet("color: palette(mid); padding: 24px;")

        self.start_button = QPushButton("Start queue")
        self.start_button.setToolTip("Train the pending runs in order, one at a time, in a process of their own: "
                                     "closing the window doesn't stop them. A run already training elsewhere is "
                                     "waited for.")
        self.stop_button = QPushButton("Stop after this run")
        self.stop_button.setToolTip("Let the current run finish, then start nothing more (the rest stay queued)")
        self.stop_now_button = QPushButton("Stop now")
        self.stop_now_button.setToolTip("Stop the current run after its current step, with a checkpoint (it can "
                                         "be resumed), and start nothing more")
        self.up_button = QPushButton("Up")
        self.down_button = QPushButton("Down")
        self.remove_button = QPushButton("Remove")
        self.remove_button.setToolTip("Take the selected pending or ended runs out of the queue (an ended run's "
                                      "folder stays in the history)")
        self.retry_button = QPushButton("Retry")
        self.retry_button.setToolTip("Queue the selected stopped, interrupted or failed runs again: a stopped or "
                                     "interrupted run continues from its last checkpoint, a failed one starts over")
        self.clear_button = QPushButton("Clear ended")
        self.compare_button = QPushButton("Compare")
        self.compare_button.setToolTip("Overlay the curves of the selected queued runs (or of every ended one) in "
                                       "Curves, with the settings that differ between them")
        buttons = QWidget()
        row = FlowLayout(buttons)  # wraps in a narrow window: every label whole ("Stop after this run" was cut)
        for b in (self.start_button, self.stop_button, self.stop_now_button, self.up_button, self.down_button,
                  self.retry_button, self.remove_button, self.clear_button, self.compare_button):
            row.addWidget(b)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 4, 0, 0)
        lay.addWidget(buttons)
        lay.addWidget(self.status)
        lay.addWidget(self.empty)
        lay.addWidget(self.table, 1)

        self.start_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(lambda: self.stop(now=False))
        self.stop_now_button.clicked.connect(lambda: self.stop(now=True))
        self.up_button.clicked.connect(lambda: self._move(-1))
        self.down_button.clicked.connect(lambda: self._move(1))
        self.remove_button.clicked.connect(self.remove_selected)
        self.clear_button.clicked.connect(self._clear_ended)
        self.retry_button.clicked.connect(self.retry_selected)
        self.compare_button.clicked.connect(self._compare)
        self.table.selectionModel().selectionChanged.connect(lambda *_: self._update_buttons())
        self.table.doubleClicked.connect(self._on_double_click)
        self._timer = QTimer(self, interval=POLL_MS)
        self._timer.timeout.connect(self.reload)
        self._timer.start()
        self._runner: int | None = None
        self._started: int | None = None  # the runner this panel started
        self._message = ""
        self.reload(force=True)

    # ---- Public API
    def reload(self, force: bool = False) -> bool:
        """Re-read the queue if its file changed (or a runner came or went). True if it did."""
        path = self.queue.root / "queue.json"
        try:
            st = path.stat()
            stamp: tuple = (st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = ()
        if not force and stamp == self._stamp and (self._runner is None or pid_alive(self._runner)):
            self._show_progress()
            return False  # the file is as read, and its runner (if any) lives: nothing to re-read
        try:
            runner = self.queue.runner_pid()
            if runner is None and self._started is not None and pid_alive(self._started):
                runner = self._started  # started, and not yet written into the queue
            if not force and stamp == self._stamp and runner == self._runner:
                return False
            entries = self.queue.entries()
        except StudioError as e:
            self._show_status(f"<span style='color:{ink(COLORS['error'])}'>{e}</span>")
            return False
        self._stamp, self._runner = stamp, runner
        keep = {e.id for e in self.selected()}
        self.model.set_entries(entries)
        sel = self.table.selectionModel()
        for r, e in enumerate(entries):
            if e.id in keep:
                sel.select(self.model.index(r, 0), sel.SelectionFlag.Select | sel.SelectionFlag.Rows)
        self.table.setVisible(bool(entries))
        self.empty.setVisible(not entries)
        self._show_status()
        self._update_buttons()
        self.sig_changed.emit(sum(1 for e in entries if e.state == PENDING))
        return True

    def current_entry(self) -> Entry | None:
        """The entry training now (as of the last reload)."""
        return next((e for e in self.model.entries if e.state == RUNNING), None)

    def is_running(self) -> bool:
        """A queue runner is training (as of the last reload)."""
        return self._runner is not None

    def selected(self) -> list[Entry]:
        rows = sorted({i.row() for i in self.table.selectionModel().selectedRows()})
        return [self.model.entries[r] for r in rows if r < len(self.model.entries)]

    def start(self) -> bool:
        """Start a runner for the pending entries (False if one runs, or nothing is pending)."""
        if self._runner is not None or not any(e.state == PENDING for e in self.model.entries):
            return False
        try:
            pid = self.queue.start_runner()
        except (OSError, StudioError) as e:
            self._message = f"<span style='color:{ink(COLORS['error'])}'>Could not start the queue: {e}</span>"
            self._show_status()
            return False
        self._message = f"Started the queue (process {pid}); the Train area follows each run it starts."
        self._runner = self._started = pid
        self._show_status()
        self._update_buttons()
        return True

    def stop(self, now: bool = False) -> None:
        current = self.queue.request_stop(now=now)
        if current is None:
            self._message = "The queue will start nothing more."
        elif now:
            self._message = f"Stopping {current.name} after its current step, with a checkpoint."
        else:
            self._message = f"The queue ends after {current.name}."
        self.reload(force=True)

    def remove_selected(self) -> None:
        ids = [e.id for e in self.selected() if e.state != RUNNING]
        if not ids:
            return
        try:
            self.queue.remove(ids)
        except StudioError as e:
            self._message = f"<span style='color:{ink(COLORS['error'])}'>{e}</span>"
        self.reload(force=True)

    def retry_selected(self) -> int:
        """Queue the selected stopped, interrupted or failed entries again; how many."""
        again = []
        for e in self.selected():
            if e.state in RETRYABLE:
                try:
                    again.append(self.queue.retry(e.id))
                except StudioError as err:
                    self._message = f"<span style='color:{ink(COLORS['error'])}'>{err}</span>"
        if again:
            resumed = sum(1 for e in again if e.resume)
            cont = "1 continues from its checkpoint" if resumed == 1 else f"{resumed} continue from their checkpoints"
            self._message = f"Queued {len(again)} again" + (f" ({cont})" if resumed else "") + "."
        self.reload(force=True)
        return len(again)

    def shutdown(self) -> None:
        self._timer.stop()

    # ---- Internals
    def _show_progress(self) -> None:
        """Repaint the training entry's Result ("step 5 of 8"): its run moves on while queue.json
        stays as it is."""
        for row, e in enumerate(self.model.entries):
            if e.state == RUNNING:
                cell = self.model.index(row, COLUMNS.index("Result"))
                self.model.dataChanged.emit(cell, cell, [Qt.ItemDataRole.DisplayRole])

    def _show_status(self, override: str | None = None) -> None:
        entries = self.model.entries
        pending = sum(1 for e in entries if e.state == PENDING)
        current = self.current_entry()
        if override is not None:
            text = override
        elif self._runner is not None:
            text = (f"<b>Training {current.name}</b>" if current else "<b>Starting…</b>") + \
                   f" · {pending} pending · queue process {self._runner}"
            if self.queue.stop_requested():
                text += " · ends after this run"
        elif current is not None:
            text = (f"<b>{current.name}</b> was left training by a queue process that ended; Start follows it, "
                    f"then goes on · {pending} pending")
        else:
            ended = sum(1 for e in entries if e.state in ENDED)
            text = f"{pending} pending · {ended} ended · not running" if entries else ""
        if self._message:
            text += f"<br><span style='color: palette(mid)'>{self._message}</span>"
        self.status.setText(text)
        self.status.setVisible(bool(text))

    def _update_buttons(self) -> None:
        entries = self.model.entries
        running = self._runner is not None
        pending = any(e.state == PENDING for e in entries)
        left = any(e.state == RUNNING for e in entries)
        sel = self.selected()
        self.start_button.setEnabled(not running and (pending or left))
        self.stop_button.setEnabled(running and not self.queue.stop_requested())
        self.stop_now_button.setEnabled(running and left)
        movable = len(sel) == 1 and sel[0].state == PENDING
        self.up_button.setEnabled(movable)
        self.down_button.setEnabled(movable)
        self.remove_button.setEnabled(any(e.state != RUNNING for e in sel))
        self.clear_button.setEnabled(any(e.state in ENDED for e in entries))
        self.retry_button.setEnabled(any(e.state in RETRYABLE for e in sel))
        self.compare_button.setEnabled(len(self._comparable()) >= 2)

    def _move(self, delta: int) -> None:
        sel = self.selected()
        if len(sel) == 1:
            self.queue.move(sel[0].id, delta)
            self.reload(force=True)
            row = next((r for r, e in enumerate(self.model.entries) if e.id == sel[0].id), -1)
            self.table.selectRow(row)

    def _clear_ended(self) -> None:
        n = self.queue.clear_ended()
        self._message = f"Forgot {n} ended run(s); their folders stay in the history."
        self.reload(force=True)

    def _comparable(self) -> list[str]:
        """Run folders to compare: the selected entries', or every entry's that trained."""
        chosen = self.selected()
        if len(chosen) < 2:
            chosen = self.model.entries
        return [e.run_dir for e in chosen if e.run_dir and e.state != PENDING and Path(e.run_dir).exists()]

    def _compare(self) -> None:
        paths = self._comparable()
        if len(paths) >= 2:
            self.sig_compare.emit(paths)

    def _on_double_click(self, index: QModelIndex) -> None:
        e = self.model.entries[index.row()]
        if e.run_dir and Path(e.run_dir).exists():
            self.sig_show_run.emit(e.run_dir)
