"""The Dataset area: a table and a form over one dataset file, find/replace, filters, undo,
the lint panel, a prompt preview, and the machinery that never loses an edit (dirty marker,
autosave and crash recovery, a warning before closing, a notice when the file changes on disk).

Data flow: the engine's :class:`DatasetFile` is the only store. The table model is a thin
adapter over its record list; every change is an undo command on :attr:`DatasetEditor.undo_stack`
that swaps record objects in that list; save hands the same object back to the engine.
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
from contextlib import contextmanager
from pathlib import Path

from PySide6.QtCore import (
    QEvent,
    QFileSystemWatcher,
    QItemSelection,
    QItemSelectionModel,
    QModelIndex,
    QPersistentModelIndex,
    QRect,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QAction, QGuiApplication, QKeySequence, QShortcut, QUndoStack
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMenu,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QStyledItemDelegate,
    QTableView,
    QTabWidget,
    QToolBar,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from engine.data import load_dataset_file, save_dataset_file
from engine.data.records import CONVERSATION_KEY, DatasetFile, Record, RecordFormat, system_in_turns
from engine.errors import StudioError
from engine.paths import data_home, demo_dataset_path, resources_dir
from gui.dataset import recovery
from gui.dataset.commands import (
    InsertRecordsCommand,
    MoveRecordsCommand,
    RemoveRecordsCommand,
    ReplaceRecordsCommand,
)
from gui.dataset.filter_proxy import ANY_FINDING, BROKEN, FilterScan, RecordFilterProxy, TextMatches
from gui.dataset.form import RecordForm
from gui.dataset.lint_child import file_signature
from gui.dataset.lint_panel import LintPanel
from gui.dataset.lint_runner import LintRunner
from gui.dataset.plain_text import plain_text
from gui.dataset.preview import PreviewPane
from gui.dataset.search import (
    TextQuery,
    all_matches,
    copy_data,
    field_labels,
    record_texts,
    replace_in_record,
    replace_one,
)
from gui.dataset.split_dialog import SplitDialog
from gui.dataset.table_model import RecordTableModel, fixed_record, with_data
from gui.scheme import MARK_CONTRAST, hint_style, ink, keep_styled, tint
from gui.settings import RECENT_FILES_KEY, forget, recent_files, remember_file

SAVE_FILTERS = {"JSON lines (*.jsonl)": "jsonl", "JSON (*.json)": "json", "CSV (*.csv)": "csv",
                "Parquet (*.parquet)": "parquet"}
"""The file dialog's filters for writing a dataset, and the container each one writes."""

RELINT_MS = 1500  # after the last edit, small files are checked again
# Big files (above LintRunner.in_process_max) are checked again in a child process after a longer
# pause: a child costs ~1 s to start and ~0.12 ms of CPU per record (docs/dataset-bench.md), and a
# newer check cancels a running one, so a short pause would keep a core busy through an editing
# session and seldom finish. The editor's own share is small (measured in docs/dataset-bench.md).
RELINT_BIG_MS = 10_000
FILTER_MS = 250  # typing pause before the filter applies
ASYNC_FILTER_MIN = 20_000  # from this many records a text filter is matched in slices between frames
# From this many records a pass over every record (replace all, a find that wraps, a filter) shows
# the wait cursor: replacing a common word in 2,000 records took 0.1 s here, the delay a user
# notices, and 20,000 records 1.8 s (docs/dataset-bench.md). It was 20,000, so a 0.3-1.8 s
# replace-all on a 20k-record file showed nothing.
BUSY_MIN = 2_000
SCAN_SLICE_S = 0.012  # time per slice: the window repaints and takes input between slices
WATCH_MS = 300  # file-change notifications come in bursts (write, rename, chmod)
_BANNER_COLORS = {"info": ("#e8f1fb", "#b6d0ee"), "warning": ("#fff4d6", "#e9cf85"), "error": ("#fde7e6", "#eeb3ae")}


def _banner_style(kind: str) -> str:
    """The banner's tint and border for ``kind`` (a dark shade of the same hue under a dark palette)."""
    if kind not in _BANNER_COLORS:
        return ""
    background, border = _BANNER_COLORS[kind]
    return (f"background: {tint(background)}; border: 1px solid {ink(border, target=MARK_CONTRAST)}; "
            "border-radius: 4px;")


def _error_border() -> str:
    return f"QLineEdit {{ border: 1px solid {ink('#c62828', target=MARK_CONTRAST)}; }}"


class CellDelegate(QStyledItemDelegate):
    """Edits cells in a multi-line box taller than the row, so newlines survive an edit.

    Enter adds a line (as in the form); Tab or a click elsewhere commits, Escape cancels.
    """

    sig_typed = Signal()
    """An open cell editor's text changed, or the editor closed (its text committed or dropped)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._open: tuple[QPlainTextEdit, QPersistentModelIndex] | None = None

    # ---- Public API
    def open_editor(self) -> tuple[QPlainTextEdit, QModelIndex] | None:
        """The cell editor that is open and the cell it edits (the view's index), or None."""
        if self._open is None or not self._open[1].isValid():
            return None
        return self._open[0], QModelIndex(self._open[1])

    # ---- Qt's API
    def createEditor(self, parent, option, index):  # noqa: N802 - Qt's name
        edit = QPlainTextEdit(parent)
        edit.setTabChangesFocus(True)
        edit.setFrameShape(QFrame.Shape.Box)
        # The view keeps one editor open at a time; a persistent index follows its cell through
        # rows inserted, removed or sorted while it is open.
        self._open = (edit, QPersistentModelIndex(index))
        edit.textChanged.connect(self.sig_typed)
        return edit

    def destroyEditor(self, editor, index) -> None:  # noqa: N802
        if self._open is not None and self._open[0] is editor:
            self._open = None
            self.sig_typed.emit()
        super().destroyEditor(editor, index)

    def setEditorData(self, editor, index) -> None:  # noqa: N802
        editor.setPlainText(index.data(Qt.ItemDataRole.EditRole) or "")
        editor.moveCursor(editor.textCursor().MoveOperation.End)

    def setModelData(self, editor, model, index) -> None:  # noqa: N802
        model.setData(index, plain_text(editor, index.data(Qt.ItemDataRole.EditRole)), Qt.ItemDataRole.EditRole)

    def updateEditorGeometry(self, editor, option, index) -> None:  # noqa: N802
        rect = QRect(option.rect)
        rect.setHeight(max(rect.height(), 120))
        rect.setWidth(max(rect.width(), 320))
        viewport = editor.parentWidget().rect()
        if rect.bottom() > viewport.bottom():
            rect.moveBottom(viewport.bottom())
        if rect.right() > viewport.right():
            rect.moveRight(viewport.right())
        editor.setGeometry(rect)


class RecordTable(QTableView):
    """The records table, with :meth:`jump_to` for the editor's jumps to a record.

    Qt's setCurrentIndex decides from the keys held down whether it extends the selection, and
    leaves the start of a Shift+arrow selection where the keyboard last left it: after Shift+F8
    back to record 5, Shift+Down selected from a row left long before to record 6, a thousand
    records that Delete then removed, record 5 not among them.
    """

    def __init__(self, parent=None):
        super().__init__(parent)
        self._jumping = False
        # Tab leaves the table for the next control (the form, the filter...): with Qt's default
        # it went from cell to cell and the keyboard never got out. The arrows move between cells.
        self.setTabKeyNavigation(False)

    def jump_to(self, index: QModelIndex) -> None:
        """Make ``index`` current and select its row alone, starting a new Shift+arrow selection
        there, even while Shift is held (Shift+F8, Shift+F3, Alt+Shift+Up)."""
        self._jumping = True
        try:
            self.setCurrentIndex(index)
        finally:
            self._jumping = False

    def selectionCommand(self, index, event=None):  # noqa: N802 - Qt's name
        if self._jumping:
            return QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows
        return super().selectionCommand(index, event)


class Banner(QFrame):
    """A one-line notice above the table with up to two action buttons and a close button."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.buttons = [QPushButton(), QPushButton()]
        close = QToolButton()
        close.setText("✕")
        close.setAutoRaise(True)
        close.setToolTip("Dismiss")
        close.setAccessibleName("Dismiss")  # not "multiplication x"
        close.clicked.connect(self.hide)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(10, 6, 6, 6)
        lay.addWidget(self.label, 1)
        for b in self.buttons:
            lay.addWidget(b)
        lay.addWidget(close)
        self._handlers: list = [None, None]
        for i, b in enumerate(self.buttons):
            b.clicked.connect(lambda _c=False, i=i: self._on_button(i))
        self.kind = ""
        self.topic = ""
        keep_styled(self, lambda: f"Banner {{ {_banner_style(self.kind)} }}" if self.kind else "")
        self.hide()

    def clear_topic(self, *topics: str) -> None:
        """Hide the banner if it is about one of ``topics`` (a save answered it)."""
        if not self.isHidden() and self.topic in topics:
            self.hide()

    def show_failure(self, what: str, e: BaseException, path: Path | None = None,
                     actions: list[tuple[str, object]] | None = None) -> None:
        """An error banner: ``what`` failed, and why (a StudioError's message, else the exception);
        ``path``: the file it was written to, named when the error doesn't (a full disk)."""
        if isinstance(e, StudioError):
            msg = e.message + (f"\n{e.hint}" if e.hint else "")  # what to do, too
        elif isinstance(e, OSError) and e.strerror:
            msg = f"{e.strerror}: {e.filename or path}" if e.filename or path else e.strerror
        else:
            msg = f"{type(e).__name__}: {e}"
        self.show_message("error", f"{what}: {msg}", actions, topic="write")

    def show_message(self, kind: str, text: str, actions: list[tuple[str, object]] | None = None,
                     topic: str = "") -> None:
        """Show ``text``; ``actions`` are ``(label, callable)`` pairs for the buttons. ``topic``:
        "disk" (the file changed on disk) or "write" (a save failed): a successful save hides them."""
        self.kind = kind
        self.topic = topic
        self.setStyleSheet(f"Banner {{ {_banner_style(kind)} }}")
        self.label.setText(text)
        actions = actions or []
        for i, b in enumerate(self.buttons):
            if i < len(actions):
                b.setText(actions[i][0])
                self._handlers[i] = actions[i][1]
                b.show()
            else:
                self._handlers[i] = None
                b.hide()
        self.show()

    def _on_button(self, i: int) -> None:
        handler = self._handlers[i]
        self.hide()
        if handler is not None:
            handler()


class FindBar(QFrame):
    """Find and replace: text or regex, case, in one field or all; Enter finds the next match."""

    sig_closed = Signal()
    """The user closed the bar (Escape or ✕)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.find = QLineEdit()
        self.find.setPlaceholderText("Find")
        self.find.setAccessibleName("Find")  # (a placeholder is no name to a screen reader)
        self.find.setClearButtonEnabled(True)
        self.replace = QLineEdit()
        self.replace.setPlaceholderText("Replace with (regex: \\1 for groups)")
        self.replace.setAccessibleName("Replace with")
        self.regex = QCheckBox("Regex")
        self.case = QCheckBox("Aa")
        self.case.setToolTip("Match case")
        self.case.setAccessibleName("Match case")  # its text "Aa" says nothing read aloud
        self.field = QComboBox()
        self.field.setToolTip("Look in this field only")
        self.prev_button = QPushButton("◀")
        self.prev_button.setToolTip("Previous match (Shift+F3)")
        self.next_button = QPushButton("Next ▶")
        self.next_button.setToolTip("Next match (Enter, F3)")
        self.replace_button = QPushButton("Replace")
        self.replace_button.setToolTip("Replace this match and find the next")
        self.replace_all_button = QPushButton("Replace all")
        self.replace_all_button.setToolTip("Replace every match in the records shown (one undo step)")
        self.status = QLabel()
        self.status.setStyleSheet("color: palette(mid);")
        self.close_button = QToolButton()
        self.close_button.setText("✕")
        self.close_button.setAccessibleName("Close the find bar")
        self.close_button.setAutoRaise(True)
        self.close_button.setToolTip("Close (Escape)")
        top = QHBoxLayout()
        top.addWidget(self.find, 1)
        top.addWidget(self.regex)
        top.addWidget(self.case)
        top.addWidget(QLabel("in"))
        top.addWidget(self.field)
        top.addWidget(self.prev_button)
        top.addWidget(self.next_button)
        top.addWidget(self.close_button)
        bottom = QHBoxLayout()
        bottom.addWidget(self.replace, 1)
        bottom.addWidget(self.replace_button)
        bottom.addWidget(self.replace_all_button)
        bottom.addWidget(self.status)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 6, 8, 6)
        lay.setSpacing(4)
        lay.addLayout(top)
        lay.addLayout(bottom)
        self.close_button.clicked.connect(self.close_bar)
        QShortcut(QKeySequence(Qt.Key.Key_Escape), self, activated=self.close_bar,
                  context=Qt.ShortcutContext.WidgetWithChildrenShortcut)

    def close_bar(self) -> None:
        self.hide()
        self.sig_closed.emit()

    def query(self) -> TextQuery:
        field = self.field.currentData()
        return TextQuery(self.find.text(), self.regex.isChecked(), self.case.isChecked(), field)


def _short_dir(folder: Path) -> str:
    """A folder as a menu shows it: ``~`` for the home folder."""
    try:
        inside = folder.relative_to(Path.home()).as_posix()
    except ValueError:
        return str(folder)
    return "~" if inside == "." else f"~/{inside}"


class DatasetEditor(QWidget):
    """The Dataset area of the main window."""

    sig_title_changed = Signal(str)
    """The window title part for this area changed, e.g. ``"Dataset — data.jsonl*"``."""

    sig_dirty_changed = Signal(bool)
    """Unsaved edits appeared (True) or were saved or discarded (False)."""

    sig_file_opened = Signal(str)
    """A file was opened (its path)."""

    sig_saved = Signal(str)
    """The dataset was saved (the path)."""

    sig_file_changed_on_disk = Signal(str)
    """The open file was changed by another program (its path)."""

    sig_lint_finished = Signal(object)
    """A lint report for the current records arrived (the LintReport)."""

    sig_train_on = Signal(str, str)
    """The Split… dialog's "Train on these": (train file, eval file)."""

    sig_status = Signal(str)
    """A short status message."""

    # ---- Public API
    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("DatasetEditor")
        self._ds: DatasetFile | None = None
        self._baseline: tuple[Record, ...] = ()
        self._signature: tuple[int, int] | None = None  # the file as last seen on disk
        self._known_signature: tuple[int, int] | None = None  # as we last read or wrote it ("Keep mine" too)
        self._report = None
        self._report_records: list[Record] = []
        self._lint: tuple | None = None  # (the lint's own report, its records, seconds)
        self._lint_stale = False
        self._audit_flags: list[tuple[Record, object]] = []  # a run audit's findings, by record object
        self._audit_key: tuple | None = None  # (run folder, audit file's mtime) of the audit shown
        self._last_match: tuple[Record, tuple, int, int] | None = None
        self._restoring = False
        self._broken_banner_parked = False  # the broken-records banner, hidden while no record is broken
        self._focus_before_find: QWidget | None = None  # the table or form box the find bar was opened from
        self._replaced: tuple | None = None  # (the last replace-all's undo command, what the find bar said)

        self.undo_stack = QUndoStack(self)
        self.model = RecordTableModel(self)
        self.model.edit_handler = self._push_replace
        self.proxy = RecordFilterProxy(self)
        self.proxy.setSourceModel(self.model)

        self._build_widgets()
        self._build_actions()
        self._wire()

        self.autosaver = recovery.Autosaver(self._autosave_snapshot, parent=self)
        self.autosaver.sig_autosaved.connect(self._on_autosaved)
        self.autosaver.sig_failed.connect(self._on_autosave_failed)
        self.form.sig_typed.connect(self.autosaver.touch)  # typing not committed yet is autosaved too
        self.cell_delegate.sig_typed.connect(self.autosaver.touch)
        # About to go (quit, log out): no time for a pause in the typing. The session manager may
        # end the process right after commitDataRequest, so the write is waited for.
        app = QGuiApplication.instance()
        app.aboutToQuit.connect(self._on_app_leaving)
        app.commitDataRequest.connect(self._on_app_leaving)
        # Another window took the keyboard (another app, a dialog): the user may not come back soon.
        # (Qt sends ActivationChange to the top-level window only, not to this page of it.)
        app.focusWindowChanged.connect(self._on_focus_window_changed)
        self._leaving_watched = True
        self._autosaved_typing_only = False  # the recovery file holds typing of a file with no unsaved edits
        self.lint_runner = LintRunner(self)
        self.lint_runner.sig_finished.connect(self._on_lint_finished)
        self.lint_runner.sig_failed.connect(self._on_lint_failed)
        self.lint_runner.sig_started.connect(self._on_lint_started)
        self.watcher = QFileSystemWatcher(self)
        self.watcher.fileChanged.connect(self._on_path_changed)
        self.watcher.directoryChanged.connect(self._on_path_changed)
        self._watch_timer = QTimer(self, singleShot=True, interval=WATCH_MS)
        self._watch_timer.timeout.connect(self._check_disk)
        self._relint_timer = QTimer(self, singleShot=True, interval=RELINT_MS)
        self._relint_timer.timeout.connect(self.run_lint)
        self._filter_generation = 0
        self._filter_error = ""  # an invalid filter regex, said beside the count until it is fixed
        self._scan: FilterScan | None = None
        self._scan_timer = QTimer(self, interval=0)  # one slice of the filter's scan per event-loop turn
        self._scan_timer.timeout.connect(self._on_scan_tick)
        self._filter_timer = QTimer(self, singleShot=True, interval=FILTER_MS)
        self._filter_timer.timeout.connect(self._apply_filter)
        self._update_title()
        self._update_actions()

    def open_file(self, path) -> None:
        """Open a dataset file (unsaved edits to the current one are dropped: call
        :meth:`maybe_close` first when they matter)."""
        path = Path(path)
        self.form.flush(leaving=True)
        t0 = time.perf_counter()
        QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
        try:
            ds = load_dataset_file(path)
        except StudioError as e:
            self.banner.show_message("error", f"Can't open {path.name}: {e.message}" + (f"\n{e.hint}" if e.hint else ""))
            return
        finally:
            QApplication.restoreOverrideCursor()
        self._set_dataset(ds, baseline=tuple(ds.records))
        took = time.perf_counter() - t0
        self._show_load_problems(ds)
        remember_file(path, recent=not self.is_shipped())
        self.sig_status.emit(f"Opened {path.name}: {ds.detected} ({took:.1f} s)")
        self.sig_file_opened.emit(str(path))

    def open_hub(self, ref: str, copy_to) -> bool:
        """Open a dataset of the Hugging Face cache (``org/name`` or ``org/name:split``) by writing a
        local copy to ``copy_to`` (its suffix picks the container) and opening that: the editor edits
        real files, autosaved, never the cache's shared blobs."""
        from engine.data.formats import container_from_suffix, open_dataset

        copy_to = Path(copy_to)
        QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
        try:
            ds = open_dataset(ref)
            written = save_dataset_file(ds, copy_to, container=container_from_suffix(copy_to) or "jsonl")
        except (StudioError, OSError) as e:
            self.banner.show_failure(f"Can't open {ref}", e)
            return False
        finally:
            QApplication.restoreOverrideCursor()
        self.open_file(written)
        self.sig_status.emit(f"Opened {ref} ({ds.detected}) as a copy in {written}")
        return True

    def dataset(self) -> DatasetFile | None:
        return self._ds

    def path(self) -> Path | None:
        return Path(self._ds.path) if self._ds is not None and self._ds.path else None

    def is_dirty(self) -> bool:
        return self._ds is not None and not self.undo_stack.isClean()

    def title(self) -> str:
        if self._ds is None:
            return "Dataset"
        name = Path(self._ds.path).name if self._ds.path else "untitled"
        return f"Dataset — {name}{'*' if self.is_dirty() else ''}"

    def save(self) -> bool:
        """Save to the file (atomically). Returns False, with a message shown, if it failed."""
        if self._ds is None:
            return False
        self.form.flush()
        if self.is_shipped():
            return self._save_shipped_copy()
        ds = self._ds
        if not self._may_overwrite(Path(ds.path)):
            return False  # asked first: a cancel leaves the records as they were
        if ds.container == RecordFormat.JSONL:
            # A broken record is written back as its raw text, one line per record: keep it one line
            # (one read over several lines, as pretty-printed JSON, too; a lone CR ends a line as well).
            for r in ds.records:
                if r.broken and r.raw and ("\n" in r.raw or "\r" in r.raw):
                    r.raw = re.sub(r"\r\n|\r|\n", " ", r.raw)
        t0 = time.perf_counter()
        QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
        try:
            path = save_dataset_file(ds)
        except Exception as e:  # noqa: BLE001 - whatever failed, the edits stay and the user is told
            self.banner.show_failure("Not saved", e, Path(ds.path), [("Save as…", self._on_save_as)])
            return False
        finally:
            QApplication.restoreOverrideCursor()
        self._after_write(path)
        self.sig_status.emit(f"Saved {len(ds.records):,} record{'' if len(ds.records) == 1 else 's'} to {path} ({time.perf_counter() - t0:.1f} s)"
                             + self._kept_words())
        self.sig_saved.emit(str(path))
        return True

    def save_as(self, path, container: str | None = None, fmt: str | None = None) -> bool:
        """Write to another file, in another container or record format if given.

        In the same container and format the editor then edits the new file; a conversion is an
        export, and the editor stays on the current file.
        """
        if self._ds is None:
            return False
        self.form.flush()
        ds = self._ds
        converting = (container or ds.container) != ds.container or (fmt or ds.format) != ds.format
        old = self.path()  # before the write: save_dataset_file moves ds.path to the new file
        try:
            written = save_dataset_file(ds, path, container=container, fmt=fmt)
        except Exception as e:  # noqa: BLE001 - whatever failed, the edits stay and the user is told
            self.banner.show_failure("Not written", e)
            return False
        self.banner.clear_topic("write")
        if converting:
            self.sig_status.emit(f"Exported {len(ds.records):,} records to {written}")
            return True
        if old is not None and old != Path(written):
            self.autosaver.discard(old)
            self.watcher.removePaths(self.watcher.files() + self.watcher.directories())
        self._after_write(Path(written))
        remember_file(Path(written))
        self.sig_status.emit(f"Saved {len(ds.records):,} record{'' if len(ds.records) == 1 else 's'} to {written}" + self._kept_words())
        self.sig_saved.emit(str(written))
        return True

    def is_shipped(self) -> bool:
        """The open file ships with the app (the demo dataset): it is never written; Save writes a copy."""
        path = self.path()
        return path is not None and self.is_shipped_path(path)

    def _save_shipped_copy(self) -> bool:
        ds = self._ds
        start = data_home() / "datasets" / Path(ds.path).name
        start.parent.mkdir(parents=True, exist_ok=True)
        chosen_filter = next(f for f, c in SAVE_FILTERS.items() if c == ds.container)
        path, chosen = QFileDialog.getSaveFileName(
            self, f"{Path(ds.path).name} ships with the app: save your copy as", str(start),
            ";;".join(SAVE_FILTERS), chosen_filter)
        if not path:
            return False
        if self.is_shipped_path(Path(path)):
            self.banner.show_message("error", "Not saved: pick a folder outside the app's resources, e.g. "
                                     f"{start.parent}", topic="write")
            return False
        container = SAVE_FILTERS.get(chosen) or ds.container
        if container == ds.container:
            return self.save_as(path)  # the editor then edits the copy
        # Another container is an export, after which the editor would stay on the shipped file:
        # open the copy (it holds every edit) and edit that.
        shipped = self.path()
        if not self.save_as(path, container=container):
            return False
        self.autosaver.discard(shipped)
        self.open_file(path)
        return self.path() == Path(path)

    @staticmethod
    def is_shipped_path(path: Path) -> bool:
        return path.resolve().is_relative_to(resources_dir().resolve())

    def maybe_close(self) -> bool:
        """Ask to save, discard or cancel when there are unsaved edits. True: go ahead and close."""
        self.form.flush(leaving=True)
        if not self.is_dirty():
            # Typing that was autosaved while the file had no unsaved edits, and was then typed back to
            # what the record holds: nothing is left to recover, and a later start mustn't offer it.
            if self.path() is not None:
                self.autosaver.discard(self.path())
            return True
        answer = self._ask_save_changes()
        if answer == QMessageBox.StandardButton.Save:
            return self.save()
        if answer == QMessageBox.StandardButton.Discard:
            self.autosaver.discard(self.path())
            self.undo_stack.setClean()
            return True
        return False

    def check_recovery(self) -> bool:
        """Offer to restore unsaved edits left by a crash. Returns True if some were restored.

        The main window calls this once after it is shown. It offers the open file's recovery if
        there is one, else the newest; "Discard" deletes the one offered, "Later" keeps it.
        """
        infos = [i for i in recovery.list_recoveries() if not i.live_elsewhere()]
        if not infos:
            return False
        current = self.path().resolve() if self.path() else None
        info = next((i for i in infos if current is not None and i.source == current), infos[0])
        answer = self._ask_restore(info)
        if answer == QMessageBox.StandardButton.Discard:
            recovery.discard(info.path)
            return False
        if answer != QMessageBox.StandardButton.Yes:
            return False
        return self.restore_recovery(info.path)

    def restore_recovery(self, path) -> bool:
        """Load the edits of a recovery file (they stay unsaved until the user saves), and put JSON
        text that was typed but didn't parse yet back in its box of the form."""
        try:
            ds, baseline, changed, info = recovery.restore(Path(path))
        except StudioError as e:
            self.banner.show_message("error", f"Can't restore: {e}")
            return False
        typing = [t for t in info.typing if 0 <= t["record"] < len(ds.records)]
        mine = recovery.recovery_path(ds.path)
        if Path(path) != mine:
            try:  # this window's now: its autosave replaces it and its save deletes it
                os.replace(path, mine)
                path = mine
            except OSError:
                pass
        self._set_dataset(ds, baseline=baseline)
        self.undo_stack.resetClean()  # unsaved from the start; Ctrl+S writes the file
        typed = ""
        for t in typing:  # the record selected, its typing pending in its box as when the window went
            if t["box"] == "cell":
                # The record holds the cell editor's text, as closing the editor would have left it
                # (one undo step would have been all of it; a restore has none): show that cell.
                column = self.model.column_of(str(t.get("column")))
                self.select_record(t["record"], column if column >= 0 else None)
                title = self.model.columns()[column].title if column >= 0 else t.get("column")
                typed += f" What you were typing in record {t['record'] + 1}'s {title} cell is in it."
            elif self.select_record(t["record"]):
                self.form.restore_typing(t["box"], t["text"])
                typed += f" The JSON you were typing in record {t['record'] + 1} is back in the form."
        self.autosaver.touch()
        self._update_title()
        name = Path(ds.path).name
        when = time.strftime('%Y-%m-%d %H:%M', time.localtime(os.path.getmtime(path)))
        if not changed:
            self.banner.show_message("info", f"Restored unsaved edits to {name} from {when}.{typed} Save to keep them.")
            return True
        # Another program wrote the file after these edits were autosaved: the restored records
        # are the file as it was then, with the edits. Saving must not quietly undo that program.
        self._known_signature = ("changed after the autosave",)  # so Save asks before replacing it
        self.banner.show_message(
            "warning", f"Restored unsaved edits to {name} from {when}, but {name} changed on disk after "
            "that (another program wrote it, or it was moved): these records are the file as it was then, with "
            "your edits. Save asks before replacing the file; Save as… keeps both.",
            [("Save as…", self._on_save_as)], topic="disk")
        return True

    def select_record(self, index: int, column: int | None = None) -> bool:
        """Make the record at ``ds.records[index]`` current (clearing filters that hide it)."""
        if self._ds is None or not 0 <= index < len(self._ds.records):
            return False
        pidx = self._proxy_index_of(index, column)
        if not pidx.isValid() and self.proxy.is_filtering():
            self.clear_filter()
            pidx = self._proxy_index_of(index, column)
        if not pidx.isValid():
            return False
        self.table.jump_to(pidx)
        self.table.scrollTo(pidx)
        return True

    def show_record(self, path: str | Path, index: int, expect: str | None = None) -> bool:
        """Open ``path`` if it is not the open file (asking about unsaved edits first) and make
        record ``index`` (from 0) current. False when the user kept the open file, or the file
        has no such record.

        ``expect``: the record's first user turn as a run audit saw it; if the record shown
        differs (the file changed since the audit), a banner says so.

        A dataset of the Hugging Face cache (``org/name:split``) opens as its local copy in
        ``<data home>/hub-copies/`` (made the first time, in the dataset's record order).
        """
        path = self._open_to_show(path)
        if path is None:
            return False
        if not self.select_record(index):
            self.banner.show_message("warning", f"{path.name} has no record {index + 1} now (it has "
                                     f"{len(self._ds.records) if self._ds else 0}); it changed since the audit.")
            return False
        self.table.setFocus()
        if expect is not None:
            from engine.audit import still_the_audited_record

            if not still_the_audited_record(self._ds.records[index], expect):
                self.banner.show_message("warning", f"Record {index + 1} is not the one the audit scored (“{expect}”): "
                                         f"{path.name} changed since the audit. Audit the run again for current "
                                         "record numbers.")
        return True

    def show_line(self, path: str | Path, line: int) -> bool:
        """Open ``path`` (as :meth:`show_record`) and make the record that starts at ``line`` current:
        what a run names when it leaves a record out. False when the file has no record there now."""
        path = self._open_to_show(path)
        if path is None:
            return False
        index = next((i for i, r in enumerate(self._ds.records) if r.line == line), None)
        if index is None or not self.select_record(index):
            self.banner.show_message("warning", f"{path.name} has no record at line {line} now; it changed "
                                     "since the run read it.")
            return False
        self.table.setFocus()
        return True

    def _open_to_show(self, path: str | Path) -> Path | None:
        """The file to show a record of, opened (or its local copy, for a Hugging Face cache
        dataset); None when the user kept the open file or it did not open."""
        from engine.data import hub

        ref = hub.parse_ref(str(path))
        if ref is not None:
            from engine.paths import data_home

            copy = data_home() / "hub-copies" / f"{ref[0].replace('/', '__')}-{ref[1]}.jsonl"
            current = self.path()
            if not copy.exists() or current is None or current.resolve() != copy.resolve():
                if not self.maybe_close():
                    return None
                if not copy.exists():
                    copy.parent.mkdir(parents=True, exist_ok=True)
                    if not self.open_hub(str(path), copy):
                        return None
            path = copy
        path = Path(path)
        current = self.path()
        if current is None or current.resolve() != path.resolve():
            if not self.maybe_close():
                return None
            self.open_file(path)
            if self.path() is None or self.path().resolve() != path.resolve():
                return None  # it did not open: the banner says why
        return path

    def current_record_index(self) -> int:
        """Index in ``ds.records`` of the current record, or -1."""
        cur = self.table.currentIndex()
        if not cur.isValid():
            return -1
        return self.model.record_index(self.proxy.mapToSource(cur).row())

    def selected_record_indices(self) -> list[int]:
        rows = self.table.selectionModel().selectedRows()
        idx = sorted({self.model.record_index(self.proxy.mapToSource(r).row()) for r in rows})
        if not idx and self.current_record_index() >= 0:
            idx = [self.current_record_index()]
        return idx

    def set_filter(self, text: str = "", *, regex: bool = False, field: str | None = None,
                   rule: str | None = None) -> None:
        """Show only matching records (what the filter bar does)."""
        self.filter_edit.blockSignals(True)
        self.filter_edit.setText(text)
        self.filter_edit.blockSignals(False)
        self.filter_regex.setChecked(regex)
        self._select_combo_data(self.filter_field, field)
        self._select_combo_data(self.filter_rule, rule)
        self._apply_filter()

    def clear_filter(self) -> None:
        self.set_filter("")

    def visible_count(self) -> int:
        return self.proxy.rowCount()

    def run_lint(self) -> None:
        """Check the records as they are now (in the background)."""
        if self._ds is None:
            return
        # Exact token lengths, counted in the tokenizer's process (with the Train area's template and
        # add_tokens) once the preview has loaded the tokenizer; estimated otherwise, and for big files.
        counting = self.preview.lint_request()
        use_tok = counting is not None and len(self._ds.records) <= self.lint_runner.in_process_max
        self.lint_runner.request(self._ds, baseline=self._baseline, signature=self._signature,
                                 tokens=(self.preview.service, counting) if use_tok else None,
                                 seq_len=self.lint_panel.seq_len.value())
        self._lint_stale = False

    def lint_report(self):
        """The findings shown: the lint's, plus a run audit's flagged records when shown."""
        return self._report

    def refresh_audit(self) -> bool:
        """Show the flagged records of the newest run audit (``runs audit``) of the open file as
        findings (rules ``hard-for-model`` and ``not-learned``). Cheap when nothing changed:
        called whenever the editor is shown. True when a different audit was taken up."""
        from engine.audit import audit_findings, newest_audit_of, read_audit

        path = self.path()
        key = newest_audit_of(path) if self._ds is not None and path is not None and path.exists() else None
        if key == self._audit_key:
            return False
        self._audit_key = key
        audit = read_audit(key[0]) if key else None
        found = audit_findings(audit, self._ds.records) if audit is not None else None
        self._audit_flags = [(self._ds.records[f.index], f) for f in found.findings] if found else []
        self.lint_panel.set_audit(found.summary() if found else None, len(self._audit_flags))
        if self._lint is not None:
            self._show_findings()
        return True

    def find_next(self, backward: bool = False) -> bool:
        """Go to the next (or previous) match of the find bar's query. False if there is none."""
        query = self._find_query()
        if query is None:
            return False
        pattern = query.pattern()
        fmt = self._ds.format
        cur = self.current_record_index()
        # Further matches inside the current record come first.
        if cur >= 0:
            rec = self._ds.records[cur]
            matches = all_matches(rec, fmt, query, pattern)
            last = self._last_match if self._last_match and self._last_match[0] is rec else None
            if matches and last is None and not backward:
                self._goto_match(cur, rec, matches[0])
                return True
            if matches and last is not None:
                here = self._match_key(rec, ("", last[1], last[2], 0))
                keyed = [(self._match_key(rec, m), m) for m in matches]
                later = [m for k, m in keyed if (k < here if backward else k > here)]
                if later:
                    self._goto_match(cur, rec, later[-1] if backward else later[0])
                    return True
        with self._busy():
            hit = next(((idx, m) for idx in self._view_record_indices(cur, backward)
                        for m in [all_matches(self._ds.records[idx], fmt, query, pattern)] if m), None)
        if hit is not None:
            idx, matches = hit
            self._goto_match(idx, self._ds.records[idx], matches[-1] if backward else matches[0])
            return True
        if cur >= 0:  # the only matches are in this record: wrap around inside it
            matches = all_matches(self._ds.records[cur], fmt, query, pattern)
            if matches:
                self._goto_match(cur, self._ds.records[cur], matches[-1] if backward else matches[0])
                return True
        self.find_bar.status.setText("No match")
        return False

    def replace_current(self) -> bool:
        """Replace the current match and go to the next one."""
        query = self._find_query()
        if query is None:
            return False
        cur = self.current_record_index()
        rec = self._ds.records[cur] if cur >= 0 else None
        last = self._last_match
        if rec is None or last is None or last[0] is not rec:
            return self.find_next()
        try:
            new = replace_one(rec, self._ds.format, query, self.find_bar.replace.text(), last[1], last[2])
        except re.error as e:
            return self._bad_replacement(e)
        if new is None:
            return self.find_next()
        new_rec = fixed_record(rec, new) if rec.broken else with_data(rec, new)
        grown = len(self._leaf(new_rec, last[1])) - len(self._leaf(rec, last[1]))
        self.undo_stack.push(ReplaceRecordsCommand(self.model, [(cur, new_rec)], "Replace"))
        # Continue after the replacement (its end moved by what the replacement added).
        self._last_match = (new_rec, last[1], last[3] + grown - 1, last[3] + grown)
        self.find_next()
        return True

    @contextmanager
    def _busy(self, wanted: bool = True):
        """A wait cursor around work that visits every record of a big file."""
        big = wanted and self._ds is not None and len(self._ds.records) >= BUSY_MIN
        if big:
            QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
        try:
            yield
        finally:
            if big:
                QApplication.restoreOverrideCursor()

    def _leaf(self, rec: Record, path: tuple) -> str:
        return next((t for _l, p, t in record_texts(rec, self._ds.format) if p == path), "")

    def replace_all(self) -> int:
        """Replace every match in the records shown; one undo step. Returns the number replaced."""
        query = self._find_query()
        if query is None:
            return 0
        pattern = query.pattern()
        fmt = self._ds.format
        changes: list[tuple[int, Record]] = []
        total = 0
        with self._busy():
            for idx in self._view_record_indices(-1, False, wrap=False):
                rec = self._ds.records[idx]
                try:
                    new, n = replace_in_record(rec, fmt, query, self.find_bar.replace.text(), pattern)
                except re.error as e:  # nothing is replaced: the changes go in one step, at the end
                    return self._bad_replacement(e)
                if new is None:
                    continue
                changes.append((idx, fixed_record(rec, new) if rec.broken else with_data(rec, new)))
                total += n
            said = f"Replaced {total:,} in {len(changes):,} records"
            if changes:  # applying them is part of the wait: every changed row is updated
                cmd = ReplaceRecordsCommand(self.model, changes,
                                            f"Replace all '{query.text}' ({total} in {len(changes)} records)")
                self.undo_stack.push(cmd)
                self._replaced = (cmd, said)
        self.find_bar.status.setText(said if total else "No match")
        return total

    def add_record(self) -> None:
        """Insert an empty record after the current one (at the end if none) and edit it."""
        if self._ds is None:
            return
        self.form.flush(leaving=True)
        at = self.current_record_index() + 1 if self.current_record_index() >= 0 else len(self._ds.records)
        rec = self._ds.new_record(self._empty_data())
        self.undo_stack.push(InsertRecordsCommand(self.model, at, [rec], "Add record"))
        self.select_record(at, self._first_text_column())
        self._focus_form()

    def duplicate_records(self) -> None:
        """Copy the selected records and insert the copies after the last of them."""
        sel = self.selected_record_indices()
        if not sel:
            return
        self.form.flush(leaving=True)
        copies = []
        for i in sel:
            r = self._ds.records[i]
            if r.broken:  # its error placed in its own text: the file line it names is the original's
                error, column = r.error_in_text()
                copies.append(Record(None, None, raw=r.raw, error=error, column=column, schema=r.schema))
            else:
                copies.append(Record(copy_data(r.peek()), None, schema=r.schema))
        at = sel[-1] + 1
        n = len(copies)
        self.undo_stack.push(InsertRecordsCommand(self.model, at, copies,
                                                  f"Duplicate {n} record{'s' if n > 1 else ''}"))
        self._select_indices(list(range(at, at + n)))

    def delete_records(self) -> None:
        sel = self.selected_record_indices()
        if not sel:
            return
        self.form.flush(leaving=True)
        n = len(sel)
        self.undo_stack.push(RemoveRecordsCommand(self.model, sel, f"Delete {n} record{'s' if n > 1 else ''}"))
        remaining = len(self._ds.records)
        if remaining:
            self.select_record(min(sel[0], remaining - 1))

    def move_records(self, delta: int) -> None:
        """Move the selected records up (-1) or down (+1) in the file."""
        sel = self.selected_record_indices()
        if not sel:
            return
        self.form.flush(leaving=True)
        cmd = MoveRecordsCommand(self.model, sel, delta, "Move up" if delta < 0 else "Move down")
        if not cmd.new_indices:
            return
        new = sorted(set(sel) - {i for i, _ in cmd._moves} | set(cmd.new_indices))
        self.undo_stack.push(cmd)
        self._select_indices(new)

    def goto_record(self, delta: int) -> None:
        """Go to the next (+1) or previous (-1) record shown."""
        cur = self.table.currentIndex()
        n = self.proxy.rowCount()
        if n == 0:
            return
        self.form.seal()
        row = 0 if not cur.isValid() else max(0, min(n - 1, cur.row() + delta))
        col = cur.column() if cur.isValid() else self._first_text_column()
        pidx = self.proxy.index(row, col)
        self.table.jump_to(pidx)
        self.table.scrollTo(pidx)

    def edit_in_form(self) -> bool:
        """Show the form and put the cursor in the box of the current cell's column (Enter in the
        table). False when no record is current."""
        if self.current_record_index() < 0:
            return False
        self.tabs.setCurrentWidget(self.form)
        col = self.table.currentIndex().column()
        key = self.model.columns()[col].key if 0 <= col < self.model.columnCount() else None
        return self.form.focus_box(key) is not None

    def back_to_table(self) -> None:
        """Put the keyboard back in the table, on the current record (Esc in the form). The typing
        in the form is committed as an undo step of its own."""
        self.form.seal()
        self.table.setFocus(Qt.FocusReason.ShortcutFocusReason)
        if self.table.currentIndex().isValid():
            self.table.scrollTo(self.table.currentIndex())

    def goto_finding(self, delta: int = 1) -> bool:
        """Go to the next (or previous) record with a lint finding or broken JSON."""
        if self._ds is None:
            return False
        cur = self.current_record_index()
        for idx in self._view_record_indices(cur, delta < 0):
            rec = self._ds.records[idx]
            if rec.broken or self.model.findings_for(rec):
                self.select_record(idx)
                return True
        self.sig_status.emit("No records with findings" + (" (checks are out of date)" if self._lint_stale else ""))
        return False

    def shutdown(self) -> None:
        """Stop background work (the main window calls this when closing, after :meth:`maybe_close`
        had the edits saved or discarded)."""
        if self._leaving_watched:
            self._leaving_watched = False
            app = QGuiApplication.instance()
            app.aboutToQuit.disconnect(self._on_app_leaving)
            app.commitDataRequest.disconnect(self._on_app_leaving)
            app.focusWindowChanged.disconnect(self._on_focus_window_changed)
        self.autosaver.stop()
        self.lint_runner.stop()
        self.preview.stop()

    def resizeEvent(self, e) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(e)
        if not self._split_done and self.width() > 600:
            # Size hints would give the form half; the table is where annotators scan. Kept at
            # every size (a maximised window gave the form as much as the table) until the user
            # drags the splitter.
            w = self.splitter.width() or self.width()
            self._splitting = True
            self.splitter.setSizes([int(w * 0.6), w - int(w * 0.6)])
            self._splitting = False

    def _on_splitter_moved(self, *_: object) -> None:
        if not self._splitting:
            self._split_done = True  # the user's split stands

    def on_shown(self) -> None:
        self._update_title()
        self.refresh_audit()

    def _count_style(self) -> str:
        """The record count's colour: red while the filter's regex is bad, else a hint's grey."""
        return f"color: {ink('#c62828')};" if getattr(self, "_filter_error", "") else hint_style()

    def prepare_screenshot(self) -> None:
        if self._ds is not None and self.current_record_index() < 0 and self._ds.records:
            self.select_record(0, self._first_text_column())

    # ---- Building
    def _build_widgets(self) -> None:
        self.toolbar = QToolBar()
        self.toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.toolbar.setMovable(False)
        self.banner = Banner()
        self.find_bar = FindBar()
        self.find_bar.hide()

        self.filter_edit = QLineEdit()
        self.filter_edit.setPlaceholderText("Filter records (Ctrl+Shift+F)")
        self.filter_edit.setAccessibleName("Filter records")
        self.filter_edit.setClearButtonEnabled(True)
        self.filter_edit.setMinimumWidth(120)
        self.filter_regex = QCheckBox("Regex")
        self.filter_field = QComboBox()
        self.filter_field.setToolTip("Filter on this field only")
        self.filter_rule = QComboBox()
        self.filter_rule.setToolTip("Show only records with this lint finding")
        self.filter_rule.setMinimumContentsLength(14)
        self.count_label = QLabel()
        keep_styled(self.count_label, self._count_style)
        # Two rows: in one, at the window's minimum width the widgets were drawn over each other.
        filter_top = QHBoxLayout()
        filter_top.setContentsMargins(0, 0, 0, 0)
        filter_top.addWidget(self.filter_edit, 1)
        filter_top.addWidget(self.filter_regex)
        filter_top.addWidget(self.count_label)
        filter_bottom = QHBoxLayout()
        filter_bottom.setContentsMargins(0, 0, 0, 0)
        filter_bottom.addWidget(QLabel("in"))
        filter_bottom.addWidget(self.filter_field, 1)
        filter_bottom.addWidget(QLabel("with"))
        filter_bottom.addWidget(self.filter_rule, 2)
        filter_row = QVBoxLayout()
        filter_row.setContentsMargins(0, 0, 0, 0)
        filter_row.setSpacing(3)
        filter_row.addLayout(filter_top)
        filter_row.addLayout(filter_bottom)

        self.table = RecordTable()
        self.table.setObjectName("records")
        self.table.setAccessibleName("Records")
        self.table.setModel(self.proxy)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.DoubleClicked
                                   | QAbstractItemView.EditTrigger.EditKeyPressed)
        self.cell_delegate = CellDelegate(self.table)
        self.table.setItemDelegate(self.cell_delegate)
        self.table.setWordWrap(False)
        self.table.setAlternatingRowColors(True)
        self.table.setHorizontalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        vh = self.table.verticalHeader()
        vh.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)  # never measures 100k rows
        vh.setDefaultSectionSize(self.fontMetrics().height() + 8)
        vh.setDefaultAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        hh = self.table.horizontalHeader()
        hh.setSortIndicator(-1, Qt.SortOrder.AscendingOrder)
        hh.setSortIndicatorShown(True)
        hh.setHighlightSections(False)
        self._splitting = self._fitting = False  # the editor itself is resizing (not the user)
        self._user_widths: dict[int, int] | None = None  # column -> width the user dragged; None: no file yet
        hh.sectionResized.connect(self._on_section_resized)
        self.table.viewport().installEventFilter(self)
        self.table.setSortingEnabled(True)

        self.form = RecordForm()
        self.lint_panel = LintPanel()
        self.preview = PreviewPane()
        self.tabs = QTabWidget()
        self.tabs.addTab(self.form, "Record")
        self.tabs.addTab(self.lint_panel, "Checks")
        self.tabs.addTab(self.preview, "Prompt preview")
        self.tabs.setDocumentMode(True)

        left = QWidget()
        ll = QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 0, 0)
        ll.setSpacing(4)
        ll.addLayout(filter_row)
        ll.addWidget(self.table, 1)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(left)
        self.splitter.addWidget(self.tabs)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.splitterMoved.connect(self._on_splitter_moved)
        self._split_done = False  # the user dragged the splitter: their split stands
        self.status = QLabel()
        keep_styled(self.status, hint_style)
        self.autosave_label = QLabel()
        keep_styled(self.autosave_label, hint_style)
        status_row = QHBoxLayout()
        status_row.addWidget(self.status, 1)
        status_row.addWidget(self.autosave_label)

        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 4, 8, 6)
        lay.setSpacing(4)
        lay.addWidget(self.toolbar)
        lay.addWidget(self.banner)
        lay.addWidget(self.find_bar)
        lay.addWidget(self.splitter, 1)
        lay.addLayout(status_row)

    def _action(self, text: str, slot, shortcuts=(), tip: str = "", toolbar: bool = True,
                context=Qt.ShortcutContext.WidgetWithChildrenShortcut) -> QAction:
        act = QAction(text, self)
        # A standard key is every key the platform binds to it (Redo: Ctrl+Y and Ctrl+Shift+Z), not
        # just its first: QKeySequence(Redo) alone is Ctrl+Y where that comes first, and the same key
        # twice on one action is an "ambiguous shortcut" that does nothing.
        keys: list[QKeySequence] = []
        for s in shortcuts:
            for k in QKeySequence.keyBindings(s) if isinstance(s, QKeySequence.StandardKey) else [QKeySequence(s)]:
                if not k.isEmpty() and k not in keys:
                    keys.append(k)
        if keys:
            act.setShortcuts(keys)
        act.setShortcutContext(context)
        # The tooltip names each key asked for once (a standard key by its first binding).
        named = []
        for s in shortcuts:
            k = QKeySequence(s).toString(QKeySequence.SequenceFormat.NativeText)
            if k and k not in named:
                named.append(k)
        self._shown_keys[act] = shown = ", ".join(named)
        act.setToolTip(f"{tip or text}" + (f" ({shown})" if shown else ""))
        act.triggered.connect(slot)
        self.addAction(act)
        if toolbar:
            self.toolbar.addAction(act)
        return act

    def _build_actions(self) -> None:
        K = QKeySequence.StandardKey  # noqa: N806 - Qt's naming
        self._shown_keys: dict[QAction, str] = {}  # an action's keys as its tooltip names them
        self.act_open = self._action("Open…", self._on_open, [K.Open], "Open a dataset file")
        self.act_open_hub = self._action("Open from the Hugging Face cache…", self._on_open_hub, [],
                                         "Copy a dataset you downloaded with huggingface_hub or datasets into a "
                                         "local file and open it (nothing is downloaded)", toolbar=False)
        self.open_menu = menu = QMenu(self)
        menu.aboutToShow.connect(self._fill_open_menu)
        self._fill_open_menu()
        self.act_open.setMenu(menu)
        button = self.toolbar.widgetForAction(self.act_open)
        if isinstance(button, QToolButton):
            button.setPopupMode(QToolButton.ToolButtonPopupMode.MenuButtonPopup)
        self.act_save = self._action("Save", self.save, [K.Save], "Save the file (atomic)")
        self.act_save_as = self._action("Save as / Export…", self._on_save_as, [K.SaveAs],
                                        "Write to another file, container (JSON, JSONL, CSV, Parquet) or format")
        self.act_split = self._action("Split…", self.open_split_dialog, [],
                                      "Write a train file and a held-out eval file, split as a run with that "
                                      "eval_split and seed would split them")
        self.toolbar.addSeparator()
        self.act_undo = self._action("Undo", self._on_undo, [K.Undo])
        self.act_redo = self._action("Redo", self._on_redo, [K.Redo, "Ctrl+Shift+Z", "Ctrl+Y"])
        self.toolbar.addSeparator()
        self.act_add = self._action("Add", self.add_record, ["Ctrl+N"], "Add a record after the current one")
        self.act_duplicate = self._action("Duplicate", self.duplicate_records, ["Ctrl+D"],
                                          "Duplicate the selected records")
        self.act_delete = self._action("Delete", self.delete_records, ["Ctrl+Delete"],
                                       "Delete the selected records (Delete in the table)")
        self.act_up = self._action("Move up", lambda: self.move_records(-1), ["Alt+Shift+Up"],
                                   "Move the selected records up")
        self.act_down = self._action("Move down", lambda: self.move_records(1), ["Alt+Shift+Down"],
                                     "Move the selected records down")
        self.toolbar.addSeparator()
        self.act_find = self._action("Find", self._on_find, [K.Find], "Find and replace")
        self.act_replace = self._action("Replace", self._on_replace, ["Ctrl+H"], toolbar=False)
        self.act_find_next = self._action("Find next", lambda: self.find_next(), [K.FindNext], toolbar=False)
        self.act_find_prev = self._action("Find previous", lambda: self.find_next(True), [K.FindPrevious],
                                          toolbar=False)
        self.act_next_finding = self._action("Next finding", lambda: self.goto_finding(1), ["F8"],
                                             "Go to the next record with a lint finding")
        self.act_prev_finding = self._action("Previous finding", lambda: self.goto_finding(-1), ["Shift+F8"],
                                             toolbar=False)
        self.act_file_order = self._action("File order", self._on_file_order, [],
                                           "Undo the column sort: show records in file order")
        self.act_next = self._action("Next record", lambda: self.goto_record(1), ["Alt+Down", "Ctrl+J"],
                                     toolbar=False)
        self.act_prev = self._action("Previous record", lambda: self.goto_record(-1), ["Alt+Up", "Ctrl+K"],
                                     toolbar=False)
        self.act_filter = self._action("Filter", self._on_focus_filter, ["Ctrl+Shift+F"], toolbar=False)
        self.act_check = self._action("Check", self.run_lint, ["Ctrl+Shift+L"], "Run the checks again",
                                      toolbar=False)
        # Delete alone must stay a text key in the form: only the table maps it to "delete records".
        QShortcut(QKeySequence(Qt.Key.Key_Delete), self.table, activated=self.delete_records,
                  context=Qt.ShortcutContext.WidgetShortcut)
        # Table and form without the mouse: Enter in the table (not in an open cell editor, which
        # has the focus then) goes to the form's box for the current column; Esc in the form comes back.
        widget_only, with_children = Qt.ShortcutContext.WidgetShortcut, Qt.ShortcutContext.WidgetWithChildrenShortcut
        self.act_edit_in_form = self._local_action(self.table, "Edit in the form", [Qt.Key.Key_Return, Qt.Key.Key_Enter],
                                                   widget_only, self.edit_in_form)
        self.act_back_to_table = self._local_action(self.form, "Back to the table", [Qt.Key.Key_Escape],
                                                    with_children, self.back_to_table)
        # The filter box from the keyboard: Esc clears it, and when it is empty goes back to the
        # table; Down (and Enter, below) goes to the records it shows. Each key did nothing.
        self.act_clear_filter = self._local_action(self.filter_edit, "Clear the filter", [Qt.Key.Key_Escape],
                                                   widget_only, self._on_filter_escape)
        self.act_filter_to_table = self._local_action(self.filter_edit, "Go to the records shown", [Qt.Key.Key_Down],
                                                      widget_only, self._on_filter_to_table)
        self.filter_edit.setToolTip("Enter or Down: go to the first record shown; Esc: clear the filter")
        self.tabs.setTabToolTip(0, "The selected record. Enter in the table: edit it here; Esc: back to the table")

    @staticmethod
    def _local_action(widget: QWidget, text: str, keys: list, context: Qt.ShortcutContext, slot) -> QAction:
        """An action on ``widget`` alone (``context``), triggered by ``keys``: keys that mean something
        else elsewhere (Enter, Esc, Down) act here only where the keyboard is."""
        action = QAction(text, widget)
        action.setShortcuts([QKeySequence(k) for k in keys])
        action.setShortcutContext(context)
        action.triggered.connect(slot)
        widget.addAction(action)
        return action

    def _wire(self) -> None:
        self.undo_stack.cleanChanged.connect(self._on_clean_changed)
        self.undo_stack.indexChanged.connect(self._on_stack_index_changed)
        self.undo_stack.canUndoChanged.connect(self._on_can_undo_changed)
        self.undo_stack.canRedoChanged.connect(self._on_can_undo_changed)
        self.table.selectionModel().currentRowChanged.connect(self._on_current_changed)
        self.table.selectionModel().selectionChanged.connect(self._on_selection_changed)
        self.model.dataChanged.connect(self._on_model_data_changed)
        self.model.rowsInserted.connect(self._on_rows_changed)
        self.model.rowsRemoved.connect(self._on_rows_changed)
        self.model.rowsMoved.connect(self._on_rows_changed)
        self.model.layoutChanged.connect(self._on_rows_changed)
        self.model.sig_records_changed.connect(self._on_records_changed)
        self.model.sig_sort_reset.connect(self._on_sort_reset)
        self.proxy.rowsInserted.connect(self._update_count)
        self.proxy.rowsRemoved.connect(self._update_count)
        self.proxy.modelReset.connect(self._update_count)
        self.proxy.layoutChanged.connect(self._update_count)
        self.form.sig_edited.connect(self._on_form_edited)
        self.form.sig_message.connect(self.sig_status)
        self.lint_panel.sig_finding_activated.connect(self._on_finding_activated)
        self.lint_panel.sig_finding_opened.connect(self._on_finding_opened)
        self.lint_panel.sig_filter_rule.connect(lambda rule: self.set_filter(rule=rule))
        self.lint_panel.sig_recheck.connect(self.run_lint)
        self.lint_panel.sig_per_answer.connect(self._on_export_per_answer)
        self.lint_panel.sig_audit_toggled.connect(lambda _on: self._lint is not None and self._show_findings())
        self.lint_panel.sig_seq_len_changed.connect(lambda _n: self._relint_later())
        self.preview.sig_tokenizer_loaded.connect(self._on_tokenizer_loaded)
        # Token lengths follow the format the run will use (the preview follows the Train area).
        self.preview.template.currentTextChanged.connect(lambda _t: self._relint_later())
        self.preview.sig_add_tokens_changed.connect(lambda: self._relint_later())
        self.tabs.currentChanged.connect(self._on_tab_changed)
        self.filter_edit.textChanged.connect(lambda _t: self._filter_timer.start())
        self.filter_edit.returnPressed.connect(self._on_filter_to_table)
        self.filter_regex.toggled.connect(lambda _b: self._apply_filter())
        self.filter_field.currentIndexChanged.connect(lambda _i: self._apply_filter())
        self.filter_rule.currentIndexChanged.connect(lambda _i: self._apply_filter())
        fb = self.find_bar
        fb.find.returnPressed.connect(lambda: self.find_next())
        fb.find.textChanged.connect(lambda _t: self._on_find_text_changed())
        fb.next_button.clicked.connect(lambda: self.find_next())
        fb.prev_button.clicked.connect(lambda: self.find_next(True))
        fb.replace.returnPressed.connect(self.replace_current)
        fb.replace_button.clicked.connect(self.replace_current)
        fb.replace_all_button.clicked.connect(self.replace_all)
        fb.sig_closed.connect(self._on_find_closed)

    # ---- Dataset lifecycle
    def _set_dataset(self, ds: DatasetFile, baseline: tuple[Record, ...]) -> None:
        self._restoring = True
        self.form.container = ds.container
        self.form.system_in_turns = lambda: system_in_turns(ds.format, ds.records)
        self.form.set_record(-1, None, ds.format)
        self.undo_stack.clear()
        self.proxy.pin(None)
        self._ds = ds
        self._baseline = baseline
        self._report = None
        self._report_records = []
        self._lint = None
        self._audit_key = None
        self._last_match = None
        self.model.set_dataset(ds)
        self.table.horizontalHeader().blockSignals(True)
        self.table.horizontalHeader().setSortIndicator(-1, Qt.SortOrder.AscendingOrder)
        self.table.horizontalHeader().blockSignals(False)
        self._size_columns()
        self._fill_field_combos()
        self._fill_rule_combo(None)
        self._apply_filter()
        self._watch(ds.path)
        self._restoring = False
        self._broken_banner_parked = False
        self.banner.hide()
        self._update_title()
        self._update_status()
        self._update_actions()
        self._update_count()
        if ds.records:
            self.select_record(0, self._first_text_column())
        # The keyboard starts on the records (Down, Enter), not in the filter box, which comes
        # first in the tab order and took the focus when the window was shown. Set while hidden,
        # it is the focus the window gives when shown.
        self.table.setFocus(Qt.FocusReason.OtherFocusReason)
        self.lint_panel.set_running(True)
        self.refresh_audit()
        self.run_lint()

    def _may_overwrite(self, path: Path) -> bool:
        """Before Save: if another program wrote the file since we read or wrote it, ask first."""
        now = file_signature(path)
        if now is None or self._known_signature is None or now == self._known_signature:
            return True
        return self._ask_overwrite_changed(path) == QMessageBox.StandardButton.Save

    def _kept_words(self) -> str:
        """Said after "Saved ..." when the save wrote back text it didn't read (a JSON array's text after its
        ']', the comma it ends on): nothing was dropped, and the file still has the problem."""
        errors = self._ds.file_errors if self._ds is not None else []
        return (f"; its text outside the records is kept as it was: {len(errors)} file-structure "
                f"error{'s' if len(errors) > 1 else ''} left (Checks)" if errors else "")

    def _after_write(self, path: Path) -> None:
        self.banner.clear_topic("disk", "write")
        self.undo_stack.setClean()
        self._baseline = tuple(self._ds.records)
        self.autosaver.discard(path)
        # The recovery copy went with the save: the note and its tooltip would name a deleted file.
        self.autosave_label.clear()
        self.autosave_label.setToolTip("")
        self._watch(path)
        self._update_title()
        self._update_status()
        self._refresh_broken_banner()  # a save that moved a broken record gave it a new line
        self.model.headerDataChanged.emit(Qt.Orientation.Vertical, 0, max(0, self.model.rowCount() - 1))
        self._show_current()
        # A save writes a record read over several lines on one line, and keeps the text a JSON array has
        # around its records: where the checks named either, check the saved file again.
        rules = {f.rule for f in self._lint[0].findings} if self._lint is not None else set()
        if rules & {"multi-line-record", "file-structure"}:
            self.run_lint()
        if not self.banner.isHidden() and self.banner.topic == "load":  # its lines as the saved file has them
            self._show_load_problems(self._ds)
            if not self._ds.errors and self.banner.topic == "load":
                self.banner.hide()

    def _show_load_problems(self, ds: DatasetFile) -> None:
        self._broken_banner_parked = False
        if not self._show_broken_banner(ds) and ds.errors:
            self.banner.show_message("warning", "; ".join(e.message for e in ds.errors[:3]), topic="load")

    def _show_broken_banner(self, ds: DatasetFile) -> bool:
        """Say how many records are kept as text and where the first is; False when none is."""
        broken = sum(1 for r in ds.records if r.broken)
        if not broken:
            return False
        at, first = next((i, r) for i, r in enumerate(ds.records) if r.broken)
        if not first.error_in_file:  # a copy, retyped text, a restored record: its error is placed in its text
            where = f"record {at + 1}{f' (file line {first.line})' if first.line else ', not saved yet'}: " \
                    f"{first.error_words()}"
        else:
            where = first.error if first.error.startswith("line ") else f"line {first.line}: {first.error}"
        what = ("not a valid CSV row" if broken == 1 else "not valid CSV rows") \
            if ds.container == RecordFormat.CSV else "not valid JSON"
        self.banner.show_message(
            "warning", f"{broken} record{'s' if broken > 1 else ''} in {Path(ds.path).name} "
            f"{'are' if broken > 1 else 'is'} {what} (first: {where}). "
            "They are kept as text; fix them in the form. The other records loaded normally.",
            [("Show broken", lambda: self.set_filter(rule=BROKEN))], topic="broken")
        return True

    def _refresh_broken_banner(self) -> None:
        """Keep the broken-records banner true as records are fixed, deleted or brought back: a
        banner about records that are no longer broken misleads (the user closing it stands)."""
        showing = not self.banner.isHidden() and self.banner.topic == "broken"
        if self._ds is None or not (showing or self._broken_banner_parked):
            return
        self._broken_banner_parked = not self._show_broken_banner(self._ds)
        if self._broken_banner_parked and showing:
            self.banner.hide()

    # ---- Undo plumbing
    def _push_replace(self, index: int, new: Record, text: str, merge_key=None) -> None:
        self.undo_stack.push(ReplaceRecordsCommand(self.model, [(index, new)], text, merge_key=merge_key))

    def _on_form_edited(self, index: int, new: Record, text: str, merge_key) -> None:
        # The form's index may be stale (records inserted above since); its record object is not.
        idx = self.model.index_of_record(self.form.record(), hint=index) if self.form.record() else -1
        if idx >= 0:
            self._push_replace(idx, new, text, merge_key)

    def _on_undo(self) -> None:
        self.form.flush(leaving=True)
        self._seal_top()
        cmd = self.undo_stack.command(self.undo_stack.index() - 1) if self.undo_stack.canUndo() else None
        self.undo_stack.undo()
        self._show_touched(cmd, undone=True)

    def _on_redo(self) -> None:
        self.form.flush(leaving=True)
        cmd = self.undo_stack.command(self.undo_stack.index()) if self.undo_stack.canRedo() else None
        self.undo_stack.redo()
        self._show_touched(cmd, undone=False)

    def _show_touched(self, cmd, undone: bool) -> None:
        """Show the records an undo or redo changed, as a text editor scrolls to the text it changed:
        undoing edits to several records one by one went on showing the record last selected, and
        nothing said which record each step changed. The current record stays when it is one of
        them; records a filter hides are not shown (the filter stays), the status line names them."""
        touched = getattr(cmd, "touched", None)
        if self._ds is None or touched is None:
            return
        n = len(self._ds.records)
        indices = sorted({min(i, n - 1) for i in touched(undone) if i >= 0}) if n else []
        if not indices:
            return
        what = f"{'Undone' if undone else 'Redone'}: {cmd.text()}"
        shown = [i for i in indices if self._proxy_index_of(i, None).isValid()]
        if not shown:
            self.sig_status.emit(f"{what} (record {indices[0] + 1:,}, hidden by the filter)")
            return
        self.sig_status.emit(f"{what} (record {shown[0] + 1:,})")
        if isinstance(cmd, ReplaceRecordsCommand):
            if self.current_record_index() not in shown:  # else the change is in view already
                self.select_record(shown[0])
            return
        self._select_indices(shown)

    def _seal_top(self) -> None:
        top = self.undo_stack.command(self.undo_stack.index() - 1) if self.undo_stack.index() else None
        if isinstance(top, ReplaceRecordsCommand):
            top.seal()

    # ---- Slots
    def _on_clean_changed(self, clean: bool) -> None:
        if clean and self._ds is not None and not self._restoring:
            self.autosaver.discard(self.path())  # undone back to the file as saved: nothing to recover
        self._update_title()
        self.sig_dirty_changed.emit(self.is_dirty())

    def _on_selection_changed(self, *_args) -> None:
        self._update_actions()

    def _on_can_undo_changed(self, _can: bool) -> None:
        self._update_actions()

    def _on_stack_index_changed(self, _i: int) -> None:
        self._update_title()
        self._update_actions()
        self._update_replaced_status()

    def _update_replaced_status(self) -> None:
        """Keep the find bar's "Replaced N in M records" true when that replace-all is undone or
        redone (it went on saying so after Ctrl+Z had put every record back)."""
        if self._replaced is None:
            return
        cmd, said = self._replaced
        undone = f"Undone: {said[0].lower()}{said[1:]}"
        if self.find_bar.status.text() not in (said, undone):  # the bar says something newer (a find)
            self._replaced = None
            return
        stack = self.undo_stack
        at = next((i for i in range(stack.count()) if stack.command(i) is cmd), None)
        if at is None:  # gone from the stack (another file, or a new edit after undoing it)
            self._replaced = None
            self.find_bar.status.clear()
            return
        self.find_bar.status.setText(said if at < stack.index() else undone)

    def _on_records_changed(self) -> None:
        self.autosaver.touch()
        self._refresh_broken_banner()
        self._lint_stale = True
        self.lint_panel.set_stale(True)
        self._relint_later()
        self._update_status()

    def _relint_later(self) -> None:
        """Check the records again after a pause in the edits: big files too (they waited for
        Ctrl+Shift+L, so a fixed finding stayed in the Checks tab), after a longer pause."""
        if self._ds is None:
            return
        big = len(self._ds.records) > self.lint_runner.in_process_max
        self._relint_timer.start(RELINT_BIG_MS if big else RELINT_MS)

    def _on_current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        self.form.seal()
        self._show_current()
        self._update_actions()

    def _on_model_data_changed(self, top_left: QModelIndex, bottom_right: QModelIndex, _roles=()) -> None:
        cur = self.current_record_index()
        if cur < 0:
            return
        row = self.model.row_of_index(cur)
        if top_left.row() <= row <= bottom_right.row():
            self._show_current()

    def _on_rows_changed(self, *_args) -> None:
        self._show_current()

    def _show_current(self) -> None:
        if self._ds is None:
            return
        idx = self.current_record_index()
        rec = self._ds.records[idx] if idx >= 0 else None
        self.proxy.pin(rec)
        self.form.set_record(idx, rec, self._ds.format, self.model.findings_for(rec) if rec else None,
                             len(self._ds.records))
        self.preview.set_record(rec)

    def _on_sort_reset(self) -> None:
        hh = self.table.horizontalHeader()
        hh.blockSignals(True)
        hh.setSortIndicator(-1, Qt.SortOrder.AscendingOrder)
        hh.blockSignals(False)
        hh.viewport().update()

    def _on_file_order(self) -> None:
        self.table.sortByColumn(-1, Qt.SortOrder.AscendingOrder)
        self._on_sort_reset()

    def _on_open(self) -> None:
        if not self.maybe_close():
            return
        start = str(self.path().parent) if self.path() else ""
        path, _ = QFileDialog.getOpenFileName(self, "Open dataset", start,
                                              "Datasets (*.jsonl *.json *.ndjson *.csv *.tsv *.parquet);;All files (*)")
        if path:
            self.open_file(path)

    def _fill_open_menu(self) -> None:
        """Open ▾: a file, the Hugging Face cache, the demo, and the files opened lately (newest first)."""
        menu = self.open_menu
        menu.clear()
        menu.addAction("Open a file…", self._on_open)
        menu.addAction(self.act_open_hub)
        demo = menu.addAction("Open the demo dataset", lambda: self.open_recent(demo_dataset_path()))
        demo.setToolTip("The sample dataset that ships with the app (Save writes your own copy)")
        recent = recent_files()
        if recent:
            menu.addSection("Recent files")
            for i, path in enumerate(recent):
                label = f"{path.name}  —  {_short_dir(path.parent)}"
                act = menu.addAction(f"&{i + 1}  {label}" if i < 9 else label,
                                     lambda p=path: self.open_recent(p))
                act.setToolTip(str(path))
                if path == self.path():
                    act.setEnabled(False)
            menu.addSeparator()
            menu.addAction("Clear the list", lambda: forget(RECENT_FILES_KEY))
        menu.setToolTipsVisible(True)

    def open_recent(self, path: Path) -> None:
        """Open a file from Open ▾ (asking about unsaved edits first); a file that was moved or
        deleted is said so and taken off the list."""
        if not self.maybe_close():
            return
        if not path.is_file():
            forget(RECENT_FILES_KEY, str(path))
            self.banner.show_message("error", f"Can't open {path.name}: it is no longer at {path.parent} "
                                     "(moved or deleted); it is off the recent list now.")
            return
        self.open_file(path)

    def _on_open_hub(self) -> None:
        from PySide6.QtWidgets import QInputDialog

        from engine.data import hub

        if not self.maybe_close():
            return
        cached = hub.cached_datasets()
        ref, ok = QInputDialog.getItem(
            self, "Open from the Hugging Face cache",
            ("Dataset id (add :split for another split than train):" if cached else
             "No dataset is in the Hugging Face cache yet (huggingface-cli download --repo-type dataset ID).\n"
             "Dataset id:"), cached or [""], 0, True)
        ref = ref.strip() if ok else ""
        if not ref:
            return
        parsed = hub.parse_ref(ref)
        if parsed is None:
            self.banner.show_message("error", f"'{ref}' is not a dataset id: give org/name or org/name:split")
            return
        repo, split = parsed
        start = (self.path().parent if self.path() else Path.home()) / f"{repo.replace('/', '_')}-{split}.jsonl"
        path, _ = QFileDialog.getSaveFileName(self, "Save a local copy to edit", str(start),
                                              "JSON lines (*.jsonl);;JSON (*.json);;CSV (*.csv);;Parquet (*.parquet)")
        if path:
            self.open_hub(ref, path)

    def _on_save_as(self) -> None:
        if self._ds is None:
            return
        path, chosen = QFileDialog.getSaveFileName(self, "Save as / export", str(self.path() or ""),
                                                   ";;".join(SAVE_FILTERS))
        if path:
            self.save_as(path, container=SAVE_FILTERS.get(chosen))

    def _on_export_per_answer(self) -> None:
        if self._ds is None or self.path() is None:
            return
        src = self.path()
        suggested = src.with_name(f"{src.stem}-per-answer{src.suffix}")
        path, _ = QFileDialog.getSaveFileName(self, "One record per answer", str(suggested),
                                              "Datasets (*.jsonl *.json *.csv *.parquet)")
        if path:
            self.export_per_answer(path)

    def export_per_answer(self, path: str | Path) -> bool:
        """Write the records to ``path`` with each multi-turn conversation as one record per answer
        (``data convert --per-answer``); the editor stays on its file."""
        from engine.data.formats import export

        if self._ds is None:
            return False
        self.form.flush()
        try:
            written = export(self._ds, path, per_answer=True)
        except (StudioError, OSError) as e:
            self.banner.show_failure("Not written", e)
            return False
        self.sig_status.emit(f"Wrote {written} with one record per answer; train on it to train every answer")
        return True

    def _on_find(self) -> None:
        was = QApplication.focusWidget()
        if was is not None and not self.find_bar.isAncestorOf(was):
            self._focus_before_find = was  # where Esc in the bar goes back to
        self.find_bar.show()
        text = self._selected_text()
        if text:
            self.find_bar.find.setText(text)
        self.find_bar.find.setFocus()
        self.find_bar.find.selectAll()

    def _on_replace(self) -> None:
        self._on_find()
        self.find_bar.replace.setFocus()

    def _on_find_text_changed(self) -> None:
        self._last_match = None
        self.find_bar.status.clear()
        self.find_bar.find.setStyleSheet("")

    def _on_find_closed(self) -> None:
        """Esc or ✕ in the find bar: the keyboard goes back to the table or form box it came from
        (Qt gave it to the next widget in the tab order, the filter box)."""
        back, self._focus_before_find = self._focus_before_find, None
        try:
            usable = back is not None and back.isVisible() and back.isEnabled() and self.isAncestorOf(back)
        except RuntimeError:  # deleted since (a conversation's turn boxes are rebuilt per record)
            usable = False
        (back if usable else self.table).setFocus(Qt.FocusReason.ShortcutFocusReason)

    def _on_focus_filter(self) -> None:
        self.filter_edit.setFocus()
        self.filter_edit.selectAll()

    def _on_filter_escape(self) -> None:
        if self.filter_edit.text():
            self.filter_edit.clear()
            self._filter_timer.stop()
            self._apply_filter()
        else:
            self.back_to_table()

    def _on_filter_to_table(self) -> None:
        """Enter or Down in the filter box: the filter applies now (not after the typing pause)
        and the keyboard goes to the first record it shows; with no filter text, to the current record."""
        if self._filter_timer.isActive():
            self._filter_timer.stop()
            self._apply_filter()
        if self.filter_edit.text() and self.proxy.rowCount():
            cur = self.table.currentIndex()
            first = self.proxy.index(0, cur.column() if cur.isValid() else self._first_text_column())
            self.table.jump_to(first)
        self.back_to_table()

    def _on_finding_activated(self, finding) -> bool:
        """A click on a finding: its record is selected, the Checks tab stays up to click the next."""
        if finding.index is None or finding.index >= len(self._report_records):
            self.sig_status.emit(finding.message)
            return False
        rec = self._report_records[finding.index]
        idx = self.model.index_of_record(rec, hint=finding.index)
        if idx < 0:
            self.sig_status.emit("That record was edited or deleted since the check; re-check to refresh")
            return False
        col = self.model.column_of(finding.key) if getattr(finding, "key", None) else -1
        self.select_record(idx, col if col >= 0 else self._first_text_column())
        self.tabs.setCurrentWidget(self.lint_panel)
        return True

    def _on_finding_opened(self, finding) -> None:
        """Enter or a double-click on a finding: fix it. The Record tab comes up with the cursor in
        the box of the field the finding names (the record's first box when it names none); the
        Checks tab used to stay up, the record out of reach of the keyboard."""
        if not self._on_finding_activated(finding):
            return
        self.tabs.setCurrentWidget(self.form)
        self.form.focus_box(getattr(finding, "key", None))

    def _on_lint_started(self, in_child: bool) -> None:
        self.lint_panel.set_running(True)
        if in_child:
            self.sig_status.emit(f"Checking {len(self._ds.records):,} records in the background…")

    def _on_lint_finished(self, report, records: list[Record], seconds: float) -> None:
        self._lint = (report, records, seconds)
        self._show_findings()

    def _show_findings(self) -> None:
        """Show the last lint's findings, with the audit's flagged records that are still in it."""
        report, records, seconds = self._lint
        if self._audit_flags and self.lint_panel.audit_shown():
            at = {id(r): i for i, r in enumerate(records)}
            report = report.extended([dataclasses.replace(f, index=at[id(rec)], line=rec.line)
                                      for rec, f in self._audit_flags if id(rec) in at])
        self._report = report
        self._report_records = records
        findings: dict[int, tuple[Record, list]] = {}
        for f in report.findings:
            if f.index is not None and f.index < len(records):
                rec = records[f.index]
                findings.setdefault(id(rec), (rec, []))[1].append(f)
        self.model.set_findings(findings)
        self.lint_panel.set_running(False)
        self.lint_panel.show_report(report, seconds, stale=self._lint_stale)
        self._fill_rule_combo(report)
        if self.proxy.is_filtering():
            self.proxy.refilter()
        self._show_current()
        self._update_count()
        self.sig_lint_finished.emit(report)

    def _on_lint_failed(self, message: str) -> None:
        self.lint_panel.set_running(False)
        if message != "cancelled":
            self.lint_panel.show_error(message)

    def _on_tab_changed(self, _i: int) -> None:
        if self.tabs.currentWidget() is self.preview:
            self.preview.activate()
        elif self.tabs.currentWidget() is self.form:
            self.form.restore_focus()

    def _on_tokenizer_loaded(self, _tok) -> None:
        if self._ds is not None and len(self._ds.records) <= self.lint_runner.in_process_max:
            self.run_lint()  # exact token lengths now

    def _on_autosaved(self, path: str) -> None:
        self.autosave_label.setText(f"Autosaved {time.strftime('%H:%M:%S')}")
        self.autosave_label.setToolTip(f"Unsaved edits are kept in {path} until you save")

    def _on_app_leaving(self, *_session) -> None:
        self.autosaver.save_now(wait=True)

    def _on_focus_window_changed(self, _window) -> None:
        if not self.isActiveWindow():
            self.autosaver.save_now()  # written now, not after the pause; on its thread as usual

    def _on_autosave_failed(self, message: str) -> None:
        self.autosave_label.setText("Autosave failed")
        self.autosave_label.setToolTip(message)

    # ---- File watching
    def _watch(self, path) -> None:
        old = self.watcher.files() + self.watcher.directories()
        if old:
            self.watcher.removePaths(old)
        if path is None:
            self._signature = self._known_signature = None
            return
        path = Path(path)
        self._signature = self._known_signature = file_signature(path)
        if path.exists():
            self.watcher.addPath(str(path))
        # Editors and our own saves replace the file by renaming; watch the folder to see that.
        self.watcher.addPath(str(path.parent))

    def _on_path_changed(self, _path: str) -> None:
        self._watch_timer.start()

    def _check_disk(self) -> None:
        path = self.path()
        if path is None:
            return
        if str(path) not in self.watcher.files() and path.exists():
            self.watcher.addPath(str(path))  # a rename replaced the inode we watched
        now = file_signature(path)
        if now == self._signature:
            return
        self._signature = now
        if now is None:
            self.banner.show_message("warning", f"{path.name} was deleted or moved on disk. Save to write it again.",
                                     topic="disk")
            self.sig_file_changed_on_disk.emit(str(path))
            return
        edits = " Reloading discards your unsaved edits." if self.is_dirty() else ""
        self.banner.show_message("warning", f"{path.name} changed on disk (another program wrote it).{edits}",
                                 [("Reload", lambda: self._reload(path)),
                                  ("Keep mine", lambda: setattr(self, "_known_signature", now))], topic="disk")
        self.sig_file_changed_on_disk.emit(str(path))

    def _reload(self, path: Path) -> None:
        """Read the file again as another program wrote it; the unsaved edits, and their recovery
        copy, are dropped (the banner said so)."""
        self.autosaver.discard(path)
        self.open_file(path)

    # ---- Autosave
    def _autosave_snapshot(self):
        """What the autosave writes (:func:`recovery.write_recovery`'s arguments): the records, with the
        typing the form or a cell editor hasn't committed yet.

        Typing waits for a pause before it is committed, JSON text that doesn't parse waits until it
        does (or the record is left), and a cell editor's text until the editor closes; a crash
        meanwhile must not lose it, even in a file with no unsaved edits otherwise. It is built as its
        commit would build it, and nothing is committed: an autosave makes no undo step and doesn't
        mark the file changed. This runs on the GUI thread after every pause in typing, so it does no
        more than copy the list of records and build the one record typed in (about 1 ms for 100k
        records: docs/dataset-bench.md).
        """
        if self._ds is None or self._ds.path is None:
            return None
        typing = self.form.pending_typing()
        at = self.model.index_of_record(self.form.record(), hint=self.form.record_index()) if typing else -1
        cell = self._cell_typing()
        if at < 0 and cell is None and not self.is_dirty():
            if self._autosaved_typing_only:  # typed back to what the record holds: nothing to recover
                self._autosaved_typing_only = False
                self.autosaver.discard(self._ds.path)
            return None
        records = list(self._ds.records)
        held = []
        if at >= 0:
            if typing.record is not None:
                records[at] = typing.record
            if typing.box is not None:
                held.append({"record": at, "box": typing.box, "text": typing.text})
        if cell is not None:
            index, col, text = cell
            new = self.model.edited(records[index], col, text)  # on top of the form's typing, if in one record
            if new is not None:
                records[index] = new
            held.append({"record": index, "box": "cell", "column": self.model.columns()[col].key, "text": text})
        self._autosaved_typing_only = not self.is_dirty()
        return (Path(self._ds.path), self._ds.format, self._ds.container, records, self._baseline,
                dict(self._ds.mapping), held)

    def _cell_typing(self) -> tuple[int, int, str] | None:
        """An open cell editor whose text isn't what its cell holds: (record index, column, text)."""
        opened = self.cell_delegate.open_editor()
        if opened is None:
            return None
        editor, index = opened
        src = self.proxy.mapToSource(index)
        if not src.isValid():
            return None
        rec_index = self.model.record_index(src.row())
        text = plain_text(editor, src.data(Qt.ItemDataRole.EditRole))
        if self.model.edited(self._ds.records[rec_index], src.column(), text) is None:
            return None
        return rec_index, src.column(), text

    def open_split_dialog(self) -> SplitDialog | None:
        """The Split… dialog for the file as saved; unsaved edits are saved first, if the user agrees."""
        if self._ds is None or self.path() is None:
            return None
        if self.is_dirty():
            if self._ask_save_before_split() != QMessageBox.StandardButton.Save or not self.save():
                return None
        # Beside the file, except for one that ships with the app: its parts go with the user's data.
        dialog = SplitDialog(self.path(), self, out_dir=data_home() / "datasets" if self.is_shipped() else None)
        dialog.sig_train_on.connect(self.sig_train_on)
        dialog.open()
        return dialog

    # ---- Questions (tests replace these)
    def _ask_save_before_split(self) -> QMessageBox.StandardButton:
        return QMessageBox.question(
            self, "Unsaved edits", f"The split reads the file as saved. Save your edits to {self.path().name} first?",
            QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Cancel, QMessageBox.StandardButton.Save)

    def _ask_overwrite_changed(self, path: Path) -> QMessageBox.StandardButton:
        box = QMessageBox(QMessageBox.Icon.Warning, "File changed on disk",
                          f"{path.name} changed on disk since you opened or saved it (another program wrote "
                          "it). Saving replaces that version with yours.",
                          QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Cancel, self)
        box.button(QMessageBox.StandardButton.Save).setText("Replace it with mine")
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        return QMessageBox.StandardButton(box.exec())

    def _ask_save_changes(self) -> QMessageBox.StandardButton:
        name = self.path().name if self.path() else "the dataset"
        return QMessageBox.question(
            self, "Unsaved edits", f"Save your edits to {name} before closing?",
            QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard
            | QMessageBox.StandardButton.Cancel, QMessageBox.StandardButton.Save)

    def _ask_restore(self, info: recovery.RecoveryInfo) -> QMessageBox.StandardButton:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(info.saved_at))
        box = QMessageBox(QMessageBox.Icon.Question, "Restore unsaved edits?",
                          f"Finetune Studio closed with unsaved edits to {info.source.name} "
                          f"({info.edited:,} edited of {info.records:,} records, autosaved {when}).\n\n"
                          "Restore them? Discard deletes the recovery copy.",
                          QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Discard
                          | QMessageBox.StandardButton.Cancel, self)
        box.button(QMessageBox.StandardButton.Yes).setText("Restore")
        box.button(QMessageBox.StandardButton.Cancel).setText("Later")
        return QMessageBox.StandardButton(box.exec())

    # ---- Helpers
    def _update_title(self) -> None:
        self.sig_title_changed.emit(self.title())

    def _update_status(self) -> None:
        ds = self._ds
        if ds is None:
            self.status.setText("No file open.")
            return
        broken = sum(1 for r in ds.records if r.broken) if len(ds.records) <= 200_000 else 0
        parts = [str(ds.path) if ds.path else "untitled", ds.detected.split(",")[0] if ds.detected else
                 f"{ds.format} {ds.container}", _records(len(ds.records))]
        if broken:
            parts.append(f"{broken} broken")
        self.status.setText(" · ".join(parts))
        self.status.setToolTip(ds.detected)

    def _update_count(self, *_args) -> None:
        total = len(self._ds.records) if self._ds is not None else 0
        shown = self.proxy.rowCount()
        text = f"{shown:,} of {total:,}" if shown != total else _records(total)
        error = self._filter_error
        self.count_label.setText(f"bad regex · {text}" if error else text)
        self.count_label.setStyleSheet(self._count_style())
        self.count_label.setToolTip(error)

    def _update_actions(self) -> None:
        has = self._ds is not None
        sel = has and self.table.currentIndex().isValid()
        self.act_undo.setEnabled(self.undo_stack.canUndo())
        self.act_redo.setEnabled(self.undo_stack.canRedo())
        self.act_undo.setToolTip(f"Undo {self.undo_stack.undoText()} ({self._shown_keys[self.act_undo]})"
                                 if self.undo_stack.canUndo() else "Nothing to undo")
        self.act_redo.setToolTip(f"Redo {self.undo_stack.redoText()} ({self._shown_keys[self.act_redo]})"
                                 if self.undo_stack.canRedo() else "Nothing to redo")
        for act in (self.act_save, self.act_save_as, self.act_add, self.act_find, self.act_next_finding):
            act.setEnabled(has)
        self.act_split.setEnabled(has and self.path() is not None)
        for act in (self.act_duplicate, self.act_delete, self.act_up, self.act_down):
            act.setEnabled(bool(sel))

    # A column's width at its least; the text columns share what a wider table has beyond the sum.
    BASE_WIDTHS = {"#status": 44, "#turns": 50, "instruction": 260, "input": 180, "output": 260, "system": 120,
                   "@system": 120, "@user": 260, "@assistant": 260}
    TEXT_COLUMNS = ("instruction", "input", "output", "system", "@system", "@user", "@assistant")

    def _size_columns(self) -> None:
        """Each column at its base width, the text columns widened to fill the table; a column the
        user has resized keeps its width from then on (until another file is opened), the others
        go on filling."""
        self._user_widths = {}
        self.table.horizontalHeader().setStretchLastSection(False)
        self._fit_columns()

    def _fit_columns(self) -> None:
        if self._user_widths is None:
            return  # no file yet
        hh = self.table.horizontalHeader()
        keys = [col.standard or col.key for col in self.model.columns()]  # a mapped prompt sized as instruction
        base = [self._user_widths.get(i, self.BASE_WIDTHS.get(k, 90)) for i, k in enumerate(keys)]
        text = [i for i, k in enumerate(keys) if k in self.TEXT_COLUMNS and i not in self._user_widths]
        spare = self.table.viewport().width() - sum(base)
        text_total = sum(base[i] for i in text)
        widths = list(base)
        if spare > 0 and text_total:
            for i in text:
                widths[i] += spare * base[i] // text_total
        self._fitting = True
        try:
            for i, w in enumerate(widths):
                hh.resizeSection(i, w)
        finally:
            self._fitting = False

    def _on_section_resized(self, index: int, _old: int, new: int) -> None:
        if not self._fitting and self._user_widths is not None:
            self._user_widths[index] = new  # a drag of a column edge: the user's width stands
            self._fit_columns()

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 - Qt's name
        if watched is self.table.viewport() and event.type() == QEvent.Type.Resize:
            self._fit_columns()
        return super().eventFilter(watched, event)

    def _fill_field_combos(self) -> None:
        labels = field_labels(self._ds.records, self._ds.format) if self._ds is not None else []
        for combo in (self.filter_field, self.find_bar.field):
            combo.blockSignals(True)
            combo.clear()
            combo.addItem("all fields", None)
            for label in labels:
                combo.addItem(label, label)
            combo.blockSignals(False)

    def _fill_rule_combo(self, report) -> None:
        combo = self.filter_rule
        current = combo.currentData()
        combo.blockSignals(True)
        combo.clear()
        combo.addItem("any or no finding", None)
        combo.addItem("any finding", ANY_FINDING)
        combo.addItem("broken JSON", BROKEN)
        if report is not None:
            for rule, n in sorted(report.counts.get("by_rule", {}).items()):
                if any(f.rule == rule and f.index is not None for f in report.findings):
                    combo.addItem(f"{rule} ({n:,})", rule)
        i = combo.findData(current)
        if i < 0 and current is not None:
            combo.addItem(str(current), current)  # keep a filter chosen before the check finished
            i = combo.count() - 1
        combo.setCurrentIndex(max(i, 0))
        combo.blockSignals(False)

    @staticmethod
    def _select_combo_data(combo: QComboBox, data) -> None:
        i = combo.findData(data)
        if i < 0 and data is not None:
            combo.addItem(str(data), data)
            i = combo.count() - 1
        combo.blockSignals(True)
        combo.setCurrentIndex(max(i, 0))
        combo.blockSignals(False)

    def _apply_filter(self) -> None:
        """Apply the filter bar. A text filter over a big file is matched in slices first.

        Matching 100k records takes seconds of Python (parsing lines, running the regex);
        in one go that froze the editor. From :data:`ASYNC_FILTER_MIN` records the match runs
        over a snapshot of the records in 12 ms slices between event-loop turns, so the table
        repaints and takes input meanwhile; a newer filter cancels an older scan. (A thread
        was measured first: every Python call Qt makes while painting then waited for the
        GIL, and the window stalled for up to 0.9 s.)
        """
        if self._ds is None:
            return
        text = self.filter_edit.text()
        query = TextQuery(text, self.filter_regex.isChecked(), False, self.filter_field.currentData())
        rule = self.filter_rule.currentData()
        self._filter_generation += 1
        try:
            if text:
                query.pattern()
        except re.error as e:
            self.filter_edit.setStyleSheet(_error_border())
            self.filter_edit.setToolTip(f"Not a valid regular expression: {e.msg} at position {e.pos}")
            # Said where the eye is, beside the count: the table still shows the last filter's records.
            self._filter_error = f"Not a valid regular expression: {e.msg} at position {e.pos}. The table " \
                                 "still shows the records of the last valid filter."
            self._update_count()
            return
        self.filter_edit.setStyleSheet("")
        self.filter_edit.setToolTip("")
        self._filter_error = ""
        if text and len(self._ds.records) >= ASYNC_FILTER_MIN:
            self._start_filter_scan(query, rule)
            return
        self._set_filter(query if text else None, rule, None)

    def _start_filter_scan(self, query: TextQuery, rule: str | None) -> None:
        records = list(self._ds.records)  # a snapshot: edits during the scan make new record objects
        self._scan = FilterScan(self._filter_generation, records, self._ds.format, query)
        self.count_label.setText(f"filtering {len(records):,} records…")
        self.sig_status.emit(f"Filtering {len(records):,} records for “{query.text}”…")
        self._scan_timer.start()

    def _on_scan_tick(self) -> None:
        scan = self._scan
        if scan is None or scan.generation != self._filter_generation or self._ds is None:
            self._scan_timer.stop()  # a newer filter (or another file) replaced this one
            self._scan = None
            return
        if not scan.step(SCAN_SLICE_S):
            self.count_label.setText(f"filtering… {100 * scan.done // max(1, len(scan.records))}%")
            return
        self._scan_timer.stop()
        self._scan = None
        matches = scan.result()
        self._set_filter(matches.query, self.filter_rule.currentData(), matches)
        self.sig_status.emit(f"{self.proxy.rowCount():,} records match “{matches.query.text}”")

    def _set_filter(self, query: TextQuery | None, rule: str | None, matches: TextMatches | None) -> None:
        current = self.current_record_index()
        rec = self._ds.records[current] if current >= 0 else None
        with self._busy(matches is None):
            self.proxy.set_filter(query, rule, matches)
        self._update_count()
        # The proxy was reset: stay on the same record if it is still shown, else go to the first.
        idx = self.model.index_of_record(rec, hint=current) if rec is not None else -1
        pidx = self._proxy_index_of(idx, None) if idx >= 0 else QModelIndex()
        if pidx.isValid():
            self.table.jump_to(pidx)
            self.table.scrollTo(pidx, QAbstractItemView.ScrollHint.PositionAtCenter)
        elif self.proxy.rowCount():
            self.goto_record(0)
        else:
            self._show_current()

    def _find_query(self) -> TextQuery | None:
        if self._ds is None:
            return None
        q = self.find_bar.query()
        if not q.text:
            return None
        try:
            q.pattern()
        except re.error as e:
            self.find_bar.find.setStyleSheet(_error_border())
            self.find_bar.status.setText(f"Bad regex: {e.msg}")
            return None
        self.find_bar.find.setStyleSheet("")
        self.find_bar.replace.setStyleSheet("")
        return q

    def _bad_replacement(self, e: re.error) -> int:
        """A regex replacement text that can't be used (``\\2`` with one group, a bad escape)."""
        self.find_bar.replace.setStyleSheet(_error_border())
        where = f" at position {e.pos + 1}" if e.pos is not None else ""
        self.find_bar.status.setText(f"Bad replacement{where}: {e.msg} (nothing replaced; a literal \\ is "
                                     "written \\\\)")
        return 0

    def _match_key(self, rec: Record, match) -> tuple:
        order = {p: i for i, (_l, p, _t) in enumerate(record_texts(rec, self._ds.format))}
        return (order.get(match[1], -1), match[2])

    def _goto_match(self, idx: int, rec: Record, match) -> None:
        label, path, start, end = match
        self._last_match = (rec, path, start, end)
        col = self.model.column_of(path[0]) if path and isinstance(path[0], str) else -1
        if idx != self.current_record_index():
            self.select_record(idx, col if col >= 0 else None)
        self.tabs.setCurrentWidget(self.form)
        self.form.highlight(path, start, end)
        self.find_bar.status.setText(f"Record {idx + 1:,}, {label}")

    def _view_record_indices(self, start: int, backward: bool, wrap: bool = True):
        """Record indices in view order after (or before) ``start``, wrapping around once."""
        model, proxy = self.model, self.proxy
        if not proxy.is_filtering() and not model.is_sorted():
            n = len(self._ds.records)
            order = range(n)
            pos = start
        else:
            n = proxy.rowCount()
            order = [model.record_index(proxy.mapToSource(proxy.index(r, 0)).row()) for r in range(n)]
            pos = order.index(start) if start in order else -1
        if n == 0:
            return
        if not wrap:
            yield from order
            return
        step = -1 if backward else 1
        p = pos if pos >= 0 else (n if backward else -1)
        for _ in range(n):
            p = (p + step) % n
            if order[p] == start:
                return
            yield order[p]

    def _proxy_index_of(self, index: int, column: int | None) -> QModelIndex:
        col = column if column is not None and column >= 0 else max(self.table.currentIndex().column(),
                                                                  self._first_text_column())
        src = self.model.index(self.model.row_of_index(index), col)
        return self.proxy.mapFromSource(src)

    def _select_indices(self, indices: list[int]) -> None:
        if not indices:
            return
        self.select_record(indices[0])
        # One selection of runs of rows: a row at a time took seconds for an undone delete of 20k records.
        rows = sorted(p.row() for p in (self._proxy_index_of(i, 0) for i in indices[1:]) if p.isValid())
        selection = QItemSelection()
        start = prev = None
        for row in rows + [None]:
            if start is not None and (row is None or row != prev + 1):
                selection.select(self.proxy.index(start, 0), self.proxy.index(prev, 0))
                start = None
            if row is not None:
                start = row if start is None else start
                prev = row
        if not selection.isEmpty():
            self.table.selectionModel().select(
                selection, QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows)

    def _first_text_column(self) -> int:
        return 1 if self.model.columnCount() > 1 else 0

    def _empty_data(self) -> dict | None:
        fmt = self._ds.format
        key = self._ds.schema.own_names().get(CONVERSATION_KEY.get(fmt, ""), CONVERSATION_KEY.get(fmt, ""))
        if fmt == RecordFormat.MESSAGES:
            return {key: [{"role": "user", "content": ""}, {"role": "assistant", "content": ""}]}
        if fmt == RecordFormat.SHAREGPT:
            return {key: [{"from": "human", "value": ""}, {"from": "gpt", "value": ""}]}
        return None  # Alpaca: DatasetFile.new_record, in the file's own names

    def _focus_form(self) -> None:
        self.tabs.setCurrentWidget(self.form)
        self.form.focus_box()

    def _selected_text(self) -> str:
        w = QApplication.focusWidget()
        if isinstance(w, QPlainTextEdit):
            text = w.textCursor().selectedText()
            return text if "\u2029" not in text else ""
        if isinstance(w, QLineEdit) and w is not self.find_bar.find:
            return w.selectedText()
        return ""


def _records(n: int) -> str:
    return f"{n:,} record{'' if n == 1 else 's'}"
