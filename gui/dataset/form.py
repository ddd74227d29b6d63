"""The form editor for the selected record: one multi-line box per field, a list of turns for
conversations, and a raw JSON editor for broken records (and for any record, on request).

The form never edits a record itself. It asks for an edit with :attr:`RecordForm.sig_edited`
(a new record object), the editor pushes an undo command, and the model change comes back
through :meth:`RecordForm.set_record`. Typing is committed after a short pause, and the
commits of one typing burst in one field merge into one undo step. Typing not committed yet (the
pause hasn't come, or JSON text doesn't parse) is what :meth:`RecordForm.pending_typing` gives the
autosave, and :meth:`RecordForm.restore_typing` puts back after a crash.
"""

from __future__ import annotations

import copy
import html
import json
import re
from collections.abc import Callable
from typing import NamedTuple

from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QColor, QFontDatabase, QKeySequence, QTextCursor
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QStackedWidget,
    QTextEdit,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from engine.data import json_text
from engine.data.records import (
    CONVERSATION_KEY,
    ERROR_PLACE,
    MESSAGE_ROLES,
    SHAREGPT_ROLES,
    Record,
    RecordFormat,
    opens_with_system,
    turn_content,
)
from engine.errors import DataError
from gui.dataset.plain_text import plain_text
from gui.dataset.search import copy_data
from gui.dataset.severity import COLORS, MARKS, WORDS, by_severity, severity
from gui.dataset.table_model import fixed_record, with_data
from gui.fonts import set_relative_font
from gui.scheme import hint_style, ink, keep_styled, tint_color

COMMIT_MS = 400  # pause in typing after which the edit becomes an undo step
_PLACES = 200  # records edited in this session whose cursor place the form keeps
_SHAREGPT_TAGS = ("human", "gpt", "system", "function_call", "observation")
_ALPACA_FIELDS = (("instruction", 3), ("input", 2), ("output", 4), ("system", 2))
# A conversation's turns from the keyboard, in the box of a turn. Each is the record key's shift
# variant where there is one (Ctrl+N adds a record, Ctrl+Delete deletes records in the table,
# Alt+Shift+Up/Down move records): none of them is a key of the editor or of a text box.
TURN_KEYS = {"add": "Ctrl+Shift+N", "remove": "Ctrl+Shift+Delete", "up": "Ctrl+Shift+Up", "down": "Ctrl+Shift+Down"}


def _key_text(name: str) -> str:
    return QKeySequence(TURN_KEYS[name]).toString(QKeySequence.SequenceFormat.NativeText)


def _error_style() -> str:
    return f"color: {ink('#b71c1c')};"


def _finding_style() -> str:
    return f"color: {ink('#8a5a00')};"


def _caption_style() -> str:
    return f"color: {ink('#555555')}; font-weight: 600; margin-top: 6px;"


class FieldEdit(QPlainTextEdit):
    """A multi-line field that grows with its text and leaves Ctrl+Z to the editor's undo stack.

    The editor's stack holds every edit, so the box's own undo is off; Tab moves to the next
    field so an annotator can work without the mouse.
    """

    def __init__(self, min_lines: int = 2, max_lines: int = 14, parent=None):
        super().__init__(parent)
        self._min_lines, self._max_lines = min_lines, max_lines
        self.setUndoRedoEnabled(False)
        self.setTabChangesFocus(True)
        self.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.document().contentsChanged.connect(self._fit)
        self._fit()

    def event(self, e) -> bool:
        if e.type() == QEvent.Type.ShortcutOverride:
            # Let Undo/Redo reach the editor's shortcuts instead of this box.
            if e.matches(QKeySequence.StandardKey.Undo) or e.matches(QKeySequence.StandardKey.Redo):
                e.ignore()
                return False
            # Deleting a word is the box's: Ctrl+Delete is also the editor's "Delete records", and in
            # a box it deleted the record being typed in instead of the next word.
            if e.matches(QKeySequence.StandardKey.DeleteEndOfWord) or e.matches(QKeySequence.StandardKey.DeleteStartOfWord):
                e.accept()
                return True
        return super().event(e)

    def resizeEvent(self, e) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(e)
        self._fit()

    def set_text_quietly(self, text: str) -> None:
        """Replace the text without emitting an edit, keeping the cursor where it was if possible."""
        if plain_text(self, text) == text:
            return
        pos = self.textCursor().position()
        self.blockSignals(True)
        self.setPlainText(text)
        self.blockSignals(False)
        cursor = self.textCursor()
        cursor.setPosition(min(pos, len(text)))
        self.setTextCursor(cursor)
        self._fit()

    def _fit(self) -> None:
        # Visual lines after wrapping: the plain-text layout counts them per block.
        doc = self.document()
        lines = 0
        block = doc.begin()
        while block.isValid() and lines <= self._max_lines:
            layout = block.layout()
            lines += max(1, layout.lineCount() if layout is not None else 1)
            block = block.next()
        lines = max(self._min_lines, min(self._max_lines, lines))
        margins = self.contentsMargins()
        height = lines * self.fontMetrics().lineSpacing() + 2 * doc.documentMargin() + \
            margins.top() + margins.bottom() + 2
        if self.height() != int(height):
            self.setFixedHeight(int(height))


class _UndoToStack(QObject):
    """Sends Undo/Redo typed in a one-line box of the form (a turn's role, an other field) to the
    editor's undo stack, as :class:`FieldEdit` does: the box's own undo took them, so Ctrl+Z in a
    role box after "Remove turn" (where the focus goes next) did not bring the turn back."""

    def eventFilter(self, watched, e) -> bool:  # noqa: N802 - Qt's name
        if e.type() == QEvent.Type.ShortcutOverride and (
                e.matches(QKeySequence.StandardKey.Undo) or e.matches(QKeySequence.StandardKey.Redo)):
            e.ignore()
            return True  # not overridden: the shortcut fires
        return False


def _undo_to_stack(box: QWidget) -> None:
    keys = _UndoToStack(box)
    box.installEventFilter(keys)
    if isinstance(box, QComboBox) and box.lineEdit() is not None:
        box.lineEdit().installEventFilter(keys)


def _caption(text: str) -> QLabel:
    label = QLabel(text)
    keep_styled(label, _caption_style)
    return label


class TurnEdit(QFrame):
    """One conversation turn: its role and its content."""

    sig_changed = Signal()
    """The role or the content changed."""

    sig_move = Signal(object, int)
    """Move this turn up (-1) or down (+1)."""

    sig_remove = Signal(object)
    """Remove this turn."""

    def __init__(self, roles: tuple[str, ...], turn, tag_key: str, text_key: str, parent=None):
        super().__init__(parent)
        self.turn = turn
        self.tag_key, self.text_key = tag_key, text_key
        self._touched: set[str] = set()  # "role", "content": what the user changed; the rest keeps its value
        is_turn = isinstance(turn, dict)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.role = QComboBox()
        self.role.setEditable(True)
        self.role.addItems(list(roles))
        tag = turn.get(tag_key) if is_turn else None
        self.role.setCurrentText(tag if isinstance(tag, str) else "")
        self.role.setMinimumContentsLength(9)
        self.role.setToolTip("Who speaks this turn")
        self.role.setAccessibleName("Role")
        _undo_to_stack(self.role)
        self.content = FieldEdit(2, 12)
        text = turn.get(text_key) if is_turn else turn
        if is_turn and turn.get("tool_calls"):  # an OpenAI tool call: shown as the text it trains as
            try:
                shown = turn_content(turn, text, "turn")
            except DataError as e:
                shown = e.message
            self.content.setPlainText(shown)
            self.content.setReadOnly(True)
            self.content.setToolTip("A tool call (tool_calls): it trains as this JSON. Click Edit as JSON to change "
                                    "it. Kept as it is when other turns are edited.")
        elif isinstance(text, str) and is_turn:
            self.content.setPlainText(text)
        elif text is None:
            self.content.setPlaceholderText("(no content)" if is_turn and text_key in turn else "(not set)")
        else:  # content parts, a number...: shown as JSON, changed only in "Edit as JSON"
            self.content.setPlainText(json.dumps(text, ensure_ascii=False, indent=1, default=str))
            self.content.setReadOnly(True)
            self.content.setToolTip("Not text: click Edit as JSON to change it. Kept as it is when other turns "
                                    "are edited.")
        if not is_turn:
            self.role.setEnabled(False)
            self.role.setToolTip("Not a turn object {...}: click Edit as JSON to fix it. Kept as it is when "
                                 "other turns are edited.")
        up, down, remove = QToolButton(), QToolButton(), QToolButton()
        for b, t, tip, key in ((up, "↑", "Move turn up", "up"), (down, "↓", "Move turn down", "down"),
                               (remove, "✕", "Remove turn", "remove")):
            b.setText(t)
            b.setAccessibleName(tip)  # a screen reader would say "upwards arrow", "multiplication x"
            b.setToolTip(f"{tip} ({_key_text(key)})")
            b.setAutoRaise(True)
            # Tab goes role -> text -> the next turn's role; the buttons' keys act from the boxes.
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        up.clicked.connect(lambda: self.sig_move.emit(self, -1))
        down.clicked.connect(lambda: self.sig_move.emit(self, 1))
        remove.clicked.connect(lambda: self.sig_remove.emit(self))
        head = QHBoxLayout()
        head.setContentsMargins(0, 0, 0, 0)
        head.addWidget(self.role)
        if not is_turn:
            head.addWidget(QLabel(f"not a turn object ({type(turn).__name__}): Edit as JSON to fix"))
        head.addStretch(1)
        head.addWidget(up)
        head.addWidget(down)
        head.addWidget(remove)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 4, 6, 6)
        lay.setSpacing(3)
        lay.addLayout(head)
        lay.addWidget(self.content)
        self.committed = self.value()
        """The turn as the record holds it: what this turn is when another turn's typing is committed."""
        self._name_content()
        self.role.currentTextChanged.connect(self._name_content)
        self.role.currentTextChanged.connect(lambda: self._touch("role"))
        self.content.textChanged.connect(lambda: self._touch("content"))

    def _name_content(self) -> None:
        """The text box's name for a screen reader, after its role ("assistant turn")."""
        role = self.role.currentText().strip()
        self.content.setAccessibleName(f"{role} turn" if role else "turn")

    def _touch(self, part: str) -> None:
        self._touched.add(part)
        self.sig_changed.emit()

    def value(self):
        """The turn with what the user changed; untouched parts keep their value and type (a null
        content of a tool call, a list of content parts, a turn that isn't an object)."""
        if not isinstance(self.turn, dict):
            return copy.deepcopy(self.turn)
        out = copy.deepcopy(self.turn)
        if "role" in self._touched:
            out[self.tag_key] = self.role.currentText()
        if "content" in self._touched:
            out[self.text_key] = plain_text(self.content, self.turn.get(self.text_key))
        return out


class PendingTyping(NamedTuple):
    """The form's typing that isn't committed yet, as the autosave keeps it."""

    record: Record | None
    """The record with the typing that builds one (None: there is none, or it changes nothing)."""
    box: str | None
    """A box whose JSON text doesn't parse yet, held back from ``record``: ``"other fields"`` or ``"raw"``."""
    text: str
    """That box's text, as typed."""


class RecordForm(QWidget):
    """Shows one record and turns typing into edit requests."""

    sig_edited = Signal(int, object, str, object)
    """An edit: (record index, new Record, undo text, merge key or None)."""

    sig_message = Signal(str)
    """A short status message for the user."""

    sig_typed = Signal()
    """The text of a box changed by typing (committed after a pause, or held back while it doesn't parse)."""

    # ---- Public API
    def __init__(self, parent=None):
        super().__init__(parent)
        self._record: Record | None = None
        self._index = -1
        self._fmt = RecordFormat.ALPACA
        self.container = RecordFormat.JSON  # the file container; the editor sets it (CSV rows are fixed as JSON)
        self._expected: Record | None = None  # the record our last commit created
        self._burst = 0
        self._label: str | None = None  # the undo text of a commit that isn't typing ("Remove turn")
        self._dirty_fields: set[str] = set()
        self._dirty_turns: set[TurnEdit] = set()  # the turns whose typing isn't committed yet
        self._target: object = None  # what the pending typing edits: a field's key, or a TurnEdit
        self._json_mode = False
        self._building = False
        self._edited_here = False  # a commit was made since the record was shown
        self._typed_box: QWidget | None = None  # the box last typed in, while the record is shown
        self._restored_box: QWidget | None = None  # the box whose cursor a return to an edited record put back
        # Where editing was left in records edited in this session, newest last: (record, box, cursor).
        # A record is matched by identity, so one changed since (an undo) opens at the start again.
        self._places: list[tuple[Record, tuple, tuple[int, int]]] = []
        # Where the keyboard was when the form was last hidden (another tab came up): (record index,
        # box, cursor), put back by :meth:`restore_focus`.
        self._left: tuple[int, tuple, tuple[int, int]] | None = None
        self._header: tuple[list | None, int | None] = (None, None)  # the findings and record count shown
        self.system_in_turns: Callable[[], bool] = lambda: self._fmt == RecordFormat.MESSAGES
        """Whether the file holds a conversation's system prompt as a first turn rather than a
        ``system`` key: where "+ Add system prompt" puts it. The editor sets it from the file."""
        self._system_other = False  # the record's "system" is neither text nor null: only Edit as JSON changes it
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(COMMIT_MS)
        self._timer.timeout.connect(self.flush)

        mono = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        self.title = QLabel()
        self.title.setStyleSheet("font-weight: 600;")
        set_relative_font(self.title, 0.75)  # 13 px at the default font, and follows a raised one
        self.json_button = QPushButton("Edit as JSON")
        self.json_button.setCheckable(True)
        self.json_button.setToolTip("Edit the whole record as JSON (add or rename fields)")
        self.json_button.toggled.connect(self._on_json_toggled)
        self.findings = QLabel()
        self.findings.setWordWrap(True)
        self.findings.setTextFormat(Qt.TextFormat.RichText)
        keep_styled(self.findings, _finding_style)
        self.findings.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        head = QHBoxLayout()
        head.addWidget(self.title, 1)
        head.addWidget(self.json_button)

        # Page 0: nothing selected.
        empty = QLabel("Select a record to edit it.\n\nEnter in the table: edit the record here\n"
                       "Esc: back to the table\nAlt+Down / Alt+Up: next / previous record")
        empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        empty.setStyleSheet("color: palette(mid);")

        # Page 1: Alpaca fields.
        self.fields: dict[str, FieldEdit] = {}
        self._captions: dict[str, QLabel] = {}
        # The file's own key for each standard field (a file read through a mapping, e.g. prompt
        # for instruction): the form shows and edits that key, never adds the standard one.
        self._own: dict[str, str] = {}
        alpaca = QWidget()
        al = QVBoxLayout(alpaca)
        al.setContentsMargins(0, 0, 0, 0)
        al.setSpacing(2)
        for key, lines in _ALPACA_FIELDS:
            edit = FieldEdit(lines, 16 if key == "output" else 12)
            edit.setObjectName(f"field_{key}")
            edit.textChanged.connect(lambda k=key: self._on_field_changed(k))
            self.fields[key] = edit
            self._captions[key] = _caption(key)
            self._captions[key].setBuddy(edit)  # the box's name for a screen reader, as its caption reads
            al.addWidget(self._captions[key])
            al.addWidget(edit)
        self.alpaca_extras = QWidget()
        self.alpaca_extras_layout = QVBoxLayout(self.alpaca_extras)
        self.alpaca_extras_layout.setContentsMargins(0, 0, 0, 0)
        al.addWidget(self.alpaca_extras)
        al.addStretch(1)

        # Page 2: a conversation.
        chat = QWidget()
        cl = QVBoxLayout(chat)
        cl.setContentsMargins(0, 0, 0, 0)
        cl.setSpacing(4)
        # The system prompt held as a "system" key: a caption with its ✕, and its box; a record without
        # a system prompt has "+ Add system prompt" in their place.
        self.chat_system_caption = _caption("system")
        self.remove_system_button = QToolButton()
        self.remove_system_button.setText("✕")
        self.remove_system_button.setAccessibleName("Remove the system prompt")
        self.remove_system_button.setToolTip(f"Remove the system prompt ({_key_text('remove')})")
        self.remove_system_button.setAutoRaise(True)
        self.remove_system_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # its key acts from the box
        self.remove_system_button.clicked.connect(self._on_remove_system)
        self.system_head = QWidget()
        sh = QHBoxLayout(self.system_head)
        sh.setContentsMargins(0, 0, 7, 0)  # its ✕ under the turns' ✕
        sh.addWidget(self.chat_system_caption)
        sh.addStretch(1)
        sh.addWidget(self.remove_system_button)
        self.chat_system = FieldEdit(2, 8)
        self.chat_system.setAccessibleName("system prompt")
        self.chat_system.textChanged.connect(lambda: self._on_field_changed("system"))
        self.add_system_button = QPushButton("+ Add system prompt")
        self.add_system_button.setToolTip("Give this conversation a system prompt, held as the file holds them "
                                          "(a 'system' key, or a first system turn)")
        self.add_system_button.clicked.connect(self._on_add_system)
        self.add_system_row = QWidget()
        ar = QHBoxLayout(self.add_system_row)
        ar.setContentsMargins(0, 4, 0, 0)
        ar.addWidget(self.add_system_button)
        ar.addStretch(1)
        cl.addWidget(self.add_system_row)
        cl.addWidget(self.system_head)
        cl.addWidget(self.chat_system)
        cl.addWidget(_caption("turns"))
        self.turns_box = QWidget()
        self.turns_layout = QVBoxLayout(self.turns_box)
        self.turns_layout.setContentsMargins(0, 0, 0, 0)
        self.turns_layout.setSpacing(6)
        cl.addWidget(self.turns_box)
        self.add_turn_button = QPushButton("+ Add turn")
        self.add_turn_button.setToolTip(f"Add a turn at the end ({_key_text('add')} in a turn adds one after it, in the "
                                        "system prompt a first turn)")
        self.add_turn_button.clicked.connect(lambda: self._on_add_turn())
        row = QHBoxLayout()
        row.addWidget(self.add_turn_button)
        row.addStretch(1)
        cl.addLayout(row)
        self.chat_extras = QWidget()
        self.chat_extras_layout = QVBoxLayout(self.chat_extras)
        self.chat_extras_layout.setContentsMargins(0, 0, 0, 0)
        cl.addWidget(self.chat_extras)
        cl.addStretch(1)
        self.turns: list[TurnEdit] = []
        # Keys for the turn the keyboard is in, through the same undo steps as the buttons.
        self.act_add_turn = self._turn_action(chat, "Add a turn after this one", "add", self._on_add_turn_key)
        self.act_remove_turn = self._turn_action(chat, "Remove this turn", "remove", self._on_remove_key)
        self.act_turn_up = self._turn_action(chat, "Move this turn up", "up",
                                             lambda: self._on_turn_key(lambda t: self._on_move_turn(t, -1)))
        self.act_turn_down = self._turn_action(chat, "Move this turn down", "down",
                                               lambda: self._on_turn_key(lambda t: self._on_move_turn(t, 1)))

        # Page 3: raw JSON (broken records, or "Edit as JSON").
        raw = QWidget()
        rl = QVBoxLayout(raw)
        rl.setContentsMargins(0, 0, 0, 0)
        self.raw_error = QLabel()
        self.raw_error.setWordWrap(True)
        self.raw_error.setStyleSheet(_error_style())
        self.raw_error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.raw = FieldEdit(6, 40)
        self.raw.setFont(mono)
        self.raw.setObjectName("field_raw")
        self.raw.setAccessibleName("record as JSON")
        self.raw.setTabChangesFocus(False)
        self.raw.textChanged.connect(lambda: self._on_field_changed("raw"))
        rl.addWidget(self.raw_error)
        rl.addWidget(self.raw)
        rl.addStretch(1)

        self.pages = QStackedWidget()
        for page in (empty, alpaca, chat, raw):
            self.pages.addWidget(page)
        inner = QWidget()
        il = QVBoxLayout(inner)
        il.setContentsMargins(10, 8, 10, 8)
        il.addLayout(head)
        il.addWidget(self.findings)
        il.addWidget(self.pages, 1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(inner)
        self.scroll = scroll
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(scroll)
        self._extra_edits: dict[str, QLineEdit] = {}
        self._extra_json: FieldEdit | None = None
        self._extra_json_error: QLabel | None = None
        self.set_record(-1, None)

    def set_record(self, index: int, record: Record | None, fmt: str | None = None,
                   findings: list | None = None, total: int | None = None) -> None:
        """Show ``record`` (at record index ``index``), or nothing when None."""
        if fmt is not None:
            self._fmt = fmt
        if record is not None and record.schema is not None:
            self._own = record.schema.own_names()
        same_kind = (record is not None and self._record is not None
                     and record.broken == self._record.broken)
        if record is not None and same_kind and (record is self._expected or record is self._record):
            # Our own commit coming back, or the same record again: the widgets already show it.
            self._record, self._index = record, index
            self._show_header(index, record, findings, total)
            if record.broken and record is not self._expected and not self._dirty_fields \
                    and self.raw.toPlainText() == (record.raw or ""):
                # A save may have moved it in the file: its error names where it is now.
                self._set_raw_error(record.error)
                self._mark_error_column()
            return
        # The same record changed under the form (an undo, a redo, a replace): the keyboard stays in
        # the box it was in, at its place. Another record: its boxes open at their start, unless it
        # is a record edited in this session, which opens where its editing was left.
        focus = QApplication.focusWidget()
        focus_slot = self._slot_of(focus) if focus is not None and self.isAncestorOf(focus) else None
        same = record is not None and self._record is not None and index == self._index
        if same:
            kept = _cursor_of(focus) if focus_slot is not None else None
        else:
            left = focus if focus_slot is not None else self._typed_box
            left_slot = self._slot_of(left) if left is not None else None
            left_cursor = _cursor_of(left) if left_slot is not None else None
        if self._dirty_fields and record is not self._record:
            self.flush(leaving=True)
        if not same and self._record is not None and left_slot is not None \
                and (self._edited_here or self._place_of(self._record) is not None):
            self._remember(self._record, left_slot, left_cursor)
        if not same:
            self._edited_here = False
        self._typed_box = None
        self._burst += 1
        self._record, self._index, self._expected = record, index, None
        self._dirty_fields.clear()
        self._dirty_turns.clear()
        self._target = None
        self._show_header(index, record, findings, total)
        self._building = True
        try:
            if record is None:
                self.pages.setCurrentIndex(0)
            elif record.broken:
                self._show_raw(record.raw or "", record.error)
            elif self._json_mode:
                self._show_raw(json.dumps(record.peek(), ensure_ascii=False, indent=2, default=str), None)
            elif self._fmt in CONVERSATION_KEY:
                self._show_chat(record.peek())
            else:
                self._show_alpaca(record.peek())
        finally:
            self._building = False
        self.json_button.setEnabled(record is not None and not record.broken)
        self._restored_box = None
        if record is None:
            return
        if same:
            box = (self._box_at(focus_slot) or self._first_box()) if focus_slot is not None else None
            if box is not None:
                box.setFocus(Qt.FocusReason.OtherFocusReason)
                _put_cursor(box, *kept)
            return
        # These boxes stay from record to record (a broken record's cursor is on its error already).
        for box in (*self.fields.values(), self.chat_system, *(() if record.broken else (self.raw,))):
            box.moveCursor(QTextCursor.MoveOperation.Start)
        place = self._place_of(record)
        box = self._box_at(place[0]) if place is not None else None
        if box is not None:
            _put_cursor(box, *place[1])
            self._restored_box = box
        elif focus_slot is not None:
            box = self._box_at(focus_slot) or self._first_box()
        if box is not None and focus_slot is not None:
            box.setFocus(Qt.FocusReason.OtherFocusReason)
            if isinstance(box, QPlainTextEdit):
                box.ensureCursorVisible()
            self.scroll.ensureWidgetVisible(box)

    def record(self) -> Record | None:
        return self._record

    def record_index(self) -> int:
        return self._index

    def flush(self, leaving: bool = False) -> None:
        """Commit pending typing now (before undo, save, navigation).

        JSON text that doesn't parse yet leaves the record as it was while the user types; when
        they leave the record (``leaving``: another record, undo, closing) it is committed as a
        broken record that keeps the text, as a broken line of a file is kept, so no typing is lost.
        The "other fields (JSON)" box's text that doesn't parse stays in the box with its error
        under it, and is never committed together with other typing: what is typed in the other
        boxes meanwhile is an undo step of its own, and the box's text becomes one when it parses
        (or when the record is left).
        """
        self._timer.stop()
        if self._record is None or not self._dirty_fields:
            return
        fields = set(self._dirty_fields)
        if "other fields" in fields and len(fields) > 1 and self._other_fields() is None:
            self._commit(fields - {"other fields"}, leaving=False)
            fields = {"other fields"}
        self._commit(fields, leaving)

    def _commit(self, fields: set[str], leaving: bool) -> None:
        """Ask for the record with the typing in ``fields`` as an undo step; nothing while its
        JSON doesn't parse (unless ``leaving``) or it changes nothing, and ``fields`` stay pending."""
        rec = self._record
        new = self._build_record(fields, leaving)
        if new is None:
            return
        self._dirty_fields -= fields
        if "turns" in fields:
            for turn in self._dirty_turns:
                turn.committed = turn.value()
            self._dirty_turns.clear()
        fields = sorted(fields)
        label = self._label or "Edit " + (fields[0] if len(fields) == 1 else "record")
        if fields == ["raw"] and self._record.broken:
            label = "Fix broken record" if not new.broken else "Edit broken record"
        elif new.broken:
            label = "Keep record as text (its JSON doesn't parse)"
            self.sig_message.emit(f"Record {self._index + 1} is kept as text: its JSON doesn't parse "
                                  f"({new.error}). Fix it in the form, or undo.")
        self._expected = new
        self._edited_here = True
        target = self._target
        if isinstance(target, TurnEdit):  # a key that outlives the widget: the turn's place
            target = ("turn", self.turns.index(target) if target in self.turns else -1)
        self.sig_edited.emit(self._index, new, label, (self._index, tuple(fields), target, self._burst))
        if self._record is rec:
            # The change didn't come back through set_record: the editor shows another record now
            # (this is the commit on leaving this one). Held-back "other fields" text committed
            # next must build on ``new``, which replaced ``rec``, and the editor finds it by it.
            self._record = new

    def seal(self) -> None:
        """End the current typing burst: the next commit starts a new undo step."""
        self.flush()
        self._burst += 1
        self._target = None

    def pending_typing(self) -> PendingTyping | None:
        """The typing not committed yet, for the autosave; None when there is none.

        A commit waits for a pause in typing, and JSON text that doesn't parse waits until it does
        (or the record is left): a crash meanwhile would lose that typing. This builds what the
        commit would, but commits nothing and shows nothing, so an autosave makes no undo step,
        doesn't mark the file changed, and leaves the error messages to the commits.
        """
        rec = self._record
        if rec is None or not self._dirty_fields:
            return None
        if self.pages.currentIndex() == 3:
            text = plain_text(self.raw)
            if rec.broken and text == rec.raw:  # a broken record is text already: nothing typed over it
                return None
            new, error = _json_text_record(rec, text)
            if new is None:  # JSON that doesn't parse (yet): no record holds it
                return PendingTyping(None, "raw", text) if error is not None else None
            return PendingTyping(new, None, "")
        fields = set(self._dirty_fields)
        box, text = None, ""
        if "other fields" in fields and self._extra_json is not None and self._other_fields(show=False) is None:
            fields.discard("other fields")  # held back, as flush holds it back: the other boxes build without it
            box, text = "other fields", plain_text(self._extra_json)
        new = self._build_record(fields, show=False) if fields else None
        if new is None and box is None:
            return None
        return PendingTyping(new, box, text)

    def restore_typing(self, box: str, text: str) -> None:
        """Put back typing that an autosave kept (:attr:`PendingTyping.box` and its text) after a
        crash: in the box it was typed in, pending as it was, its error said under it, the record
        keeping its last valid version until the text parses or the record is left.

        If the "other fields (JSON)" box isn't there (the recovery doesn't match the record), the
        typing goes into the record's JSON text in "Edit as JSON", pending there: never dropped.
        """
        rec = self._record
        if rec is None:
            return
        if box == "other fields" and self._extra_json is not None and self.pages.currentIndex() != 3:
            edit = self._extra_json
        else:
            if box != "raw":
                text = (f"{rec.raw or ''}\n{text}" if rec.broken
                        else _spliced(copy_data(rec.peek()), self._standard_keys(), text))
            if not rec.broken:
                self.json_button.setChecked(True)
            edit = self.raw
        edit.setPlainText(text)
        edit.moveCursor(QTextCursor.MoveOperation.End)
        edit.setFocus()
        self.flush()  # says why it doesn't parse; commits nothing while it doesn't

    def highlight(self, path: tuple, start: int, end: int) -> None:
        """Select characters ``start:end`` of the text at ``path`` (a find match)."""
        edit = self._edit_for(path)
        if edit is None:
            return
        cursor = edit.textCursor()
        cursor.setPosition(start)
        cursor.setPosition(end, QTextCursor.MoveMode.KeepAnchor)
        edit.setTextCursor(cursor)
        edit.ensureCursorVisible()
        self.scroll.ensureWidgetVisible(edit)

    def focus_box(self, key: str | None = None) -> QWidget | None:
        """Put the cursor at the end of the box that edits the table column ``key`` (a field, or
        ``@user``/``@assistant``/``@system`` of a conversation: the turn that column shows), else in
        the record's first box. Returns the box, or None when no record is shown."""
        page = self.pages.currentIndex()
        box: QWidget | None = None
        if page == 3:
            box = self.raw
        elif page == 1:
            std = next((k for k, own in self._own.items() if own == key), key)
            box = self.fields.get(std) or self._extra_edits.get(key) or self.fields["instruction"]
        elif page == 2:
            box = self._extra_edits.get(key)
            role = key[1:] if key and key.startswith("@") else None
            if role == "system" and self.chat_system.isVisible():
                box = self.chat_system
            elif role is not None:
                said = [t for t in self.turns if SHAREGPT_ROLES.get(t.role.currentText(), t.role.currentText()) == role]
                if said:  # the table shows the first user turn and the last assistant turn
                    box = (said[-1] if role == "assistant" else said[0]).content
            if box is None and role == "system" and self.add_system_button.isVisibleTo(self):
                box = self.add_system_button  # none yet: where it would be
            if box is None and self.turns:
                box = self.turns[0].content
            if box is None:
                box = self.chat_system if self.chat_system.isVisible() else self.add_turn_button
        if box is None:
            return None
        box.setFocus(Qt.FocusReason.ShortcutFocusReason)
        if box is self._restored_box:  # a record edited in this session: where its editing was left
            pass
        elif isinstance(box, QPlainTextEdit):
            box.moveCursor(QTextCursor.MoveOperation.End)
        elif isinstance(box, QLineEdit):
            box.end(False)
        self.scroll.ensureWidgetVisible(box)
        return box

    def restore_focus(self) -> None:
        """Put the keyboard back in the box, and at the cursor, that it left for another tab, when
        the form comes up again with the keyboard in it: Qt gave it to the first box that takes
        Tab (a turn's role). Nothing moves when the keyboard is elsewhere (the table)."""
        focus = QApplication.focusWidget()
        if self._left is None or focus is None or not self.isAncestorOf(focus):
            return
        index, slot, cursor = self._left
        box = self._box_at(slot) if index == self._index else None
        if box is None or box is focus:
            return
        box.setFocus(Qt.FocusReason.OtherFocusReason)
        _put_cursor(box, *cursor)
        if isinstance(box, QPlainTextEdit):
            box.ensureCursorVisible()
        self.scroll.ensureWidgetVisible(box)

    def field_edit(self, key: str) -> QPlainTextEdit | None:
        """The box of an Alpaca field (``instruction``...), ``raw``, or ``system`` of a chat."""
        if key == "raw":
            return self.raw
        if self._fmt in CONVERSATION_KEY and key == "system":
            return self.chat_system
        return self.fields.get(key)

    # ---- Qt overrides
    def hideEvent(self, e) -> None:  # noqa: N802 - Qt's name
        # Qt moves the keyboard out of a hidden widget after this event: where it is now is where the user left it.
        focus = QApplication.focusWidget()
        slot = self._slot_of(focus) if focus is not None and self.isAncestorOf(focus) else None
        if slot is None and focus in (self.add_turn_button, self.json_button):
            slot = ("widget", focus)
        self._left = (self._index, slot, _cursor_of(focus)) if slot is not None else None
        super().hideEvent(e)

    def focusNextPrevChild(self, forward: bool) -> bool:  # noqa: N802 - Qt's name
        if self.pages.currentIndex() == 2:
            chain = self._chat_chain()
            focus = QApplication.focusWidget()
            at = next((i for i, w in enumerate(chain) if focus is w or w.isAncestorOf(focus)), None)
            to = None if at is None else at + (1 if forward else -1)
            if to is not None and 0 <= to < len(chain):
                chain[to].setFocus(Qt.FocusReason.TabFocusReason if forward else Qt.FocusReason.BacktabFocusReason)
                return True
        return super().focusNextPrevChild(forward)

    @staticmethod
    def _turn_action(page: QWidget, text: str, key: str, slot) -> QAction:
        action = QAction(f"{text}", page)
        action.setShortcut(QKeySequence(TURN_KEYS[key]))
        action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        action.setToolTip(f"{text} ({_key_text(key)})")
        action.triggered.connect(slot)
        page.addAction(action)
        return action

    def current_turn(self) -> TurnEdit | None:
        """The turn whose box has the keyboard focus, if any."""
        w = QApplication.focusWidget()
        while w is not None and not isinstance(w, TurnEdit):
            w = w.parentWidget()
        return w if w in self.turns else None

    # ---- Where the keyboard is
    def _slot_of(self, w: QWidget) -> tuple | None:
        """Which box of the record ``w`` is, as a place that outlives the widgets: ("field", key),
        ("system",), ("raw",), ("turn", i, "role" | "content"), ("extra", key), ("other",)."""
        for key, edit in self.fields.items():
            if w is edit:
                return ("field", key)
        if w is self.chat_system or w is self.add_system_button:  # the prompt, or where it would be
            return ("system",)
        if w is self.raw:
            return ("raw",)
        for i, t in enumerate(self.turns):
            if w is t.content:
                return ("turn", i, "content")
            if w is t.role or t.role.isAncestorOf(w):
                return ("turn", i, "role")
        for key, edit in self._extra_edits.items():
            if w is edit:
                return ("extra", key)
        if self._extra_json is not None and w is self._extra_json:
            return ("other",)
        return None

    def _box_at(self, slot: tuple) -> QWidget | None:
        """The box at ``slot`` in the record shown (the last turn for a turn past its end), if any."""
        page, kind = self.pages.currentIndex(), slot[0]
        if kind == "field" and page == 1:
            return self.fields.get(slot[1])
        if kind == "system" and page == 2:
            return self.chat_system if self.chat_system.isVisibleTo(self) else \
                self.add_system_button if self.add_system_button.isVisibleTo(self) else None
        if kind == "raw" and page == 3:
            return self.raw
        if kind == "turn" and page == 2 and self.turns:
            turn = self.turns[min(slot[1], len(self.turns) - 1)]
            return turn.content if slot[2] == "content" else turn.role
        if kind == "extra" and page in (1, 2):
            return self._extra_edits.get(slot[1])
        if kind == "other" and page in (1, 2):
            return self._extra_json
        if kind == "widget":  # a button of the form that stays from record to record
            return slot[1] if slot[1].isVisibleTo(self) else None
        return None

    def _first_box(self) -> QWidget | None:
        page = self.pages.currentIndex()
        if page == 1:
            return self.fields["instruction"]
        if page == 2:
            return self.turns[0].content if self.turns else \
                self.chat_system if self.chat_system.isVisibleTo(self) else self.add_turn_button
        return self.raw if page == 3 else None

    def _remember(self, record: Record, slot: tuple, cursor: tuple[int, int]) -> None:
        self._places = [p for p in self._places if p[0] is not record][-(_PLACES - 1):]
        self._places.append((record, slot, cursor))

    def _place_of(self, record: Record | None) -> tuple[tuple, tuple[int, int]] | None:
        return next(((slot, cursor) for rec, slot, cursor in reversed(self._places) if rec is record), None)

    # ---- Pages
    def _show_header(self, index: int, record: Record | None, findings: list | None, total: int | None) -> None:
        self._header = (findings, total)
        if record is None:
            self.title.setText("No record selected")
            self.findings.hide()
            return
        where = f"line {record.line}" if record.line else "new, not saved yet"
        of = f" of {total:,}" if total is not None else ""
        state = " · broken" if record.broken else ""
        self.title.setText(f"Record {index + 1:,}{of} · {where}{state}")
        # A broken record's parse error is shown above its text already.
        shown = by_severity(f for f in (findings or [])
                            if not (record.broken and getattr(f, "rule", "") == "broken-record"))
        lines = []
        for f in shown[:8]:
            sev = severity(f)
            text = html.escape(f"{MARKS[sev]} {getattr(f, 'rule', '?')}: {getattr(f, 'message', f)}")
            lines.append(f"<span style='color:{ink(COLORS[sev])}'>{text}</span>")
        if len(shown) > 8:
            lines.append(f"… {len(shown) - 8} more (Checks tab)")
        self.findings.setText("<br>".join(lines))
        # The marks and colours in words for a screen reader ("Error: empty-output: ...").
        self.findings.setAccessibleName("; ".join(
            f"{WORDS[severity(f)].capitalize()}: {getattr(f, 'rule', '?')}: {getattr(f, 'message', f)}"
            for f in shown))
        self.findings.setVisible(bool(lines))

    def _show_raw(self, text: str, error: str | None) -> None:
        self.pages.setCurrentIndex(3)
        self.raw.set_text_quietly(text)
        self._set_raw_error(error)
        self._mark_error_column()

    def _mark_error_column(self) -> None:
        """Put the cursor on the parser's error position and tint that character."""
        rec = self._record
        selections = []
        pos = error_offset(rec, self.raw.toPlainText()) if rec is not None and rec.broken else None
        if pos is not None:
            cursor = self.raw.textCursor()
            cursor.setPosition(pos)
            self.raw.setTextCursor(cursor)
            mark = QTextEdit.ExtraSelection()
            mark.cursor = self.raw.textCursor()
            mark.cursor.movePosition(QTextCursor.MoveOperation.Right, QTextCursor.MoveMode.KeepAnchor)
            mark.format.setBackground(tint_color(QColor(255, 170, 160)))
            selections.append(mark)
        self.raw.setExtraSelections(selections)

    def _set_raw_error(self, error: str | None, owner: Record | None = None) -> None:
        """Say ``error`` above the text box; ``owner``: the record it is of (retyped text's), when it
        isn't the record shown."""
        rec = self._record
        where_of = owner or rec
        if error and rec is not None and not rec.broken:
            self.raw_error.setText(f"Not valid JSON yet: {error}. The record keeps its last valid "
                                   "version until the text parses.")
        elif error and self.container == RecordFormat.CSV:
            # A broken row is fixed by typing the record as JSON (Record.fix); saving writes it as a row.
            where, error = _where_broken(where_of, error)
            self.raw_error.setText(f"Not a valid CSV row{where}: {error}. Replace the text below with the "
                                   'record as a JSON object, e.g. {"instruction": "…", "output": "…"}; it is '
                                   "saved as a CSV row. Until then the row is kept as it is, and is never dropped.")
        elif error:
            where, error = _where_broken(where_of, error)
            self.raw_error.setText(f"Not valid JSON{where}: {error}. Fix the text below; the record "
                                   "is kept as it is until it parses, and is never dropped.")
        else:
            self.raw_error.setText("Editing the record as JSON; changes apply when the text parses.")
        self.raw_error.setStyleSheet(_error_style() if error else hint_style())

    def _show_alpaca(self, data: dict) -> None:
        self.pages.setCurrentIndex(1)
        for key, edit in self.fields.items():
            own = self._own.get(key, key)
            value = data.get(own)
            edit.set_text_quietly(value if isinstance(value, str) else
                                  "" if value is None else json.dumps(value, ensure_ascii=False, default=str))
            edit.setPlaceholderText("(empty)" if own in data else "(not set)")
            self._captions[key].setText(key if own == key else f"{key}  (the file's {own})")
        self._build_extras(data, {self._own.get(k, k) for k, _ in _ALPACA_FIELDS}, self.alpaca_extras_layout)

    def _show_chat(self, data: dict) -> None:
        self.pages.setCurrentIndex(2)
        key = CONVERSATION_KEY[self._fmt]
        system = data.get("system")
        has_system = isinstance(system, str)
        self.chat_system.set_text_quietly(system if has_system else "")
        self._show_system_box(has_system)
        self._system_other = not has_system and system is not None
        self._clear_turns()
        turns = data.get(key)
        for t in turns if isinstance(turns, list) else []:
            self._add_turn_widget(t)  # one that isn't an object is shown, and kept as it is
        self._sync_add_system()
        self._build_extras(data, {key, "system"}, self.chat_extras_layout)

    def _chat_chain(self) -> list[QWidget]:
        """The boxes Tab goes through in a conversation, in reading order: the system prompt, each
        turn's role then text, "Add turn", then the other fields. Qt's focus chain follows the
        order widgets are made in (and a turn's ↑ ↓ ✕ were in it), so an added or moved turn was
        reached out of place, and Tab on "Add turn" went back to the first turn."""
        chain: list[QWidget] = [w for w in (self.add_system_button, self.chat_system) if w.isVisibleTo(self)]
        for t in self.turns:
            chain += [w for w in (t.role, t.content) if w.isEnabled()]
        chain += [self.add_turn_button, *self._extra_edits.values()]
        return chain + ([self._extra_json] if self._extra_json is not None else [])

    def _show_system_box(self, on: bool) -> None:
        self.system_head.setVisible(on)
        self.chat_system.setVisible(on)

    def _sync_add_system(self) -> None:
        """Offer "+ Add system prompt" while the conversation has none: no "system" key (or a null one)
        and no first system turn."""
        first = self.turns[0].value() if self.turns else None
        has = not self.chat_system.isHidden() or self._system_other or opens_with_system([first])
        self.add_system_row.setVisible(not has)

    def _clear_turns(self) -> None:
        for t in self.turns:
            t.setParent(None)
            t.deleteLater()
        self.turns = []

    def _tag_keys(self) -> tuple[str, str, tuple[str, ...]]:
        if self._fmt == RecordFormat.SHAREGPT:
            return "from", "value", _SHAREGPT_TAGS
        return "role", "content", MESSAGE_ROLES

    def _add_turn_widget(self, turn, at: int | None = None) -> TurnEdit:
        tag_key, text_key, roles = self._tag_keys()
        keys = turn if isinstance(turn, dict) else {}
        if tag_key not in keys and ("role" in keys or "from" in keys):
            tag_key = "role" if "role" in keys else "from"
        if text_key not in keys and ("content" in keys or "value" in keys):
            text_key = "content" if "content" in keys else "value"
        w = TurnEdit(roles, turn, tag_key, text_key)
        w.sig_changed.connect(lambda: self._on_field_changed("turns", w))
        w.sig_move.connect(self._on_move_turn)
        w.sig_remove.connect(self._on_remove_turn)
        at = len(self.turns) if at is None else at
        self.turns_layout.insertWidget(at, w)
        self.turns.insert(at, w)
        return w

    def _build_extras(self, data: dict, standard: set[str], layout: QVBoxLayout) -> None:
        while layout.count():
            w = layout.takeAt(0).widget()
            if w is not None:
                w.setParent(None)
                w.deleteLater()
        self._extra_edits = {}
        self._extra_json = self._extra_json_error = None
        extras = {k: v for k, v in data.items() if k not in standard}
        text_extras = {k: v for k, v in extras.items() if isinstance(v, str)}
        other = {k: v for k, v in extras.items() if not isinstance(v, str)}
        if text_extras:
            box = QWidget()
            form = QFormLayout(box)
            form.setContentsMargins(0, 4, 0, 0)
            form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
            for k, v in text_extras.items():
                edit = QLineEdit(v)
                edit.setObjectName(f"extra_{k}")
                _undo_to_stack(edit)
                edit.textChanged.connect(lambda _t, k=k: self._on_field_changed(k))
                self._extra_edits[k] = edit
                form.addRow(k, edit)
            layout.addWidget(_caption("other fields"))
            layout.addWidget(box)
        if other:
            layout.addWidget(_caption("other fields (JSON)"))
            self._extra_json = FieldEdit(2, 10)
            self._extra_json.setAccessibleName("other fields (JSON)")
            self._extra_json.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
            self._extra_json.setPlainText(json.dumps(other, ensure_ascii=False, indent=1, default=str))
            self._extra_json.textChanged.connect(lambda: self._on_field_changed("other fields"))
            self._extra_json_error = QLabel()
            self._extra_json_error.setWordWrap(True)
            self._extra_json_error.setStyleSheet(_error_style())
            self._extra_json_error.hide()
            layout.addWidget(self._extra_json)
            layout.addWidget(self._extra_json_error)

    # ---- Building the edited record
    def _build_record(self, dirty: set[str], leaving: bool = False, show: bool = True) -> Record | None:
        """The record with the typing in the ``dirty`` fields; None when unchanged, or when JSON
        text doesn't parse (unless ``leaving``: then a broken record holding the text). ``show``:
        say under the "other fields (JSON)" box whether its text parses."""
        rec = self._record
        if rec is None:
            return None
        if self.pages.currentIndex() == 3:
            text = plain_text(self.raw)
            new, error = _json_text_record(rec, text)
            self._set_raw_error(error, new)
            if new is None and error is not None and leaving:
                return fixed_record(rec, text)
            return new
        # Only touched fields are written back: a field of the wrong type (a number, a list)
        # shown as text must not silently turn into a string because another field was edited.
        data = copy_data(rec.peek())
        if self.pages.currentIndex() == 1:
            for key, edit in self.fields.items():
                if key in dirty:
                    own = self._own.get(key, key)
                    data[own] = plain_text(edit, rec.peek().get(own))
        elif self.pages.currentIndex() == 2:
            if "turns" in dirty:
                # Only the turns typed in since the last commit take their text from the boxes: a
                # turn the user moved on to is already changed, and is its own undo step.
                data[CONVERSATION_KEY[self._fmt]] = [t.value() if t in self._dirty_turns else copy.deepcopy(t.committed)
                                                     for t in self.turns]
            if "system" in dirty:
                if self.chat_system.isHidden():  # removed
                    data.pop("system", None)
                elif "system" in data:
                    data["system"] = plain_text(self.chat_system, rec.peek().get("system"))
                else:  # added: after the conversation, where LLaMA-Factory's ShareGPT has it
                    items = list(data.items())
                    at = next((i + 1 for i, (k, _) in enumerate(items) if k == CONVERSATION_KEY[self._fmt]),
                              len(items))
                    data = dict([*items[:at], ("system", plain_text(self.chat_system)), *items[at:]])
        for k, edit in self._extra_edits.items():
            if k in dirty:
                data[k] = edit.text()
        if self._extra_json is not None and "other fields" in dirty:
            other = self._other_fields(show)
            if other is None:
                return fixed_record(rec, _spliced(data, self._standard_keys(), plain_text(self._extra_json))) \
                    if leaving else None
            standard = self._standard_keys()
            for k in [k for k in data if k not in standard and k not in other]:
                del data[k]  # removed from the JSON box
            # A value the box shows as text (a Parquet date, bytes) stays what it was unless its text
            # was edited: only the fields the user changed are written back.
            shown = json.loads(json.dumps({k: data[k] for k in other if k in data}, default=str))
            data.update({k: v for k, v in other.items() if k not in shown or shown[k] != v})
        if data == rec.peek():
            return None
        return with_data(rec, data)

    def _other_fields(self, show: bool = True) -> dict | None:
        """The "other fields (JSON)" box's object; None, with the error shown under the box (if
        ``show``), when its text doesn't parse to one."""
        try:
            other = json_text.loads(plain_text(self._extra_json) or "{}")
            if not isinstance(other, dict):
                raise ValueError("expected a JSON object {...}")
        except ValueError as e:
            if show:
                self._extra_json_error.setText(f"other fields: not valid JSON yet — {e}. They keep their last "
                                               "valid values until this text parses.")
                self._extra_json_error.show()
            return None
        if show:
            self._extra_json_error.hide()
        return other

    def _standard_keys(self) -> set[str]:
        """The keys the form shows in their own boxes (not in "other fields (JSON)")."""
        if self._fmt in CONVERSATION_KEY:
            return set(self._extra_edits) | {CONVERSATION_KEY[self._fmt], "system"}
        return set(self._extra_edits) | {self._own.get(k, k) for k, _ in _ALPACA_FIELDS}

    def _edit_for(self, path: tuple) -> QPlainTextEdit | None:
        if not path:
            return self.raw
        key = path[0]
        if self.pages.currentIndex() == 2:
            if key == CONVERSATION_KEY.get(self._fmt) and len(path) == 3 and path[1] < len(self.turns):
                return self.turns[path[1]].content
            if key == "system":
                return self.chat_system
            return None
        return self.fields.get(next((std for std, own in self._own.items() if own == key), key))

    # ---- Slots
    def _on_field_changed(self, key: str, turn: TurnEdit | None = None) -> None:
        if self._building or self._record is None:
            return
        target = key if turn is None else turn
        if target is not self._target and not (isinstance(target, str) and target == self._target):
            # Typing moved to another field or turn: what was typed before is an undo step of its own.
            if self._target is not None:
                self.seal()
            self._target = target
        if turn is not None:
            self._dirty_turns.add(turn)
            self._sync_add_system()  # the first turn's role made "system", or made another
        if key == "raw":
            self.raw.setExtraSelections([])  # the error position may have moved
        focus = QApplication.focusWidget()
        if focus is not None and self._slot_of(focus) is not None:
            self._typed_box = focus
        self._dirty_fields.add(key)
        self._timer.start()
        self.sig_typed.emit()

    def _on_json_toggled(self, on: bool) -> None:
        self.flush(leaving=True)
        self._json_mode = on
        rec, self._record = self._record, None  # force a rebuild
        # The same header: "Edit as JSON" dropped the record's findings and the "of N" of its title.
        self.set_record(self._index, rec, findings=self._header[0], total=self._header[1])

    def _on_add_turn(self, after: TurnEdit | None = None, first: bool = False) -> None:
        """Add a turn after ``after`` (at the end when None; ``first``: before every turn), answering
        it: an assistant turn after a user's, else a user's. The cursor goes into its text."""
        self.seal()  # typing before it is an undo step of its own
        tag_key, text_key, _ = self._tag_keys()
        at = 0 if first else self.turns.index(after) + 1 if after in self.turns else len(self.turns)
        before = self.turns[at - 1].role.currentText() if at else ""
        user, assistant = ("human", "gpt") if self._fmt == RecordFormat.SHAREGPT else ("user", "assistant")
        role = assistant if before in ("human", "user") else user
        w = self._add_turn_widget({tag_key: role, text_key: ""}, at)
        w.content.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.scroll.ensureWidgetVisible(w)
        self._commit_step("Add turn")

    def _on_add_system(self) -> None:
        """Give the conversation a system prompt, held as its file holds them (:attr:`system_in_turns`),
        as one undo step; the cursor goes into it."""
        self.seal()  # typing before it is an undo step of its own
        if self.system_in_turns():
            tag_key, text_key, _ = self._tag_keys()
            box, field = self._add_turn_widget({tag_key: "system", text_key: ""}, 0).content, "turns"
        else:
            self.chat_system.set_text_quietly("")
            self._show_system_box(True)
            box, field = self.chat_system, "system"
        box.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self._sync_add_system()
        self.scroll.ensureWidgetVisible(box)
        self._commit_step("Add system prompt", field)

    def _on_remove_system(self) -> None:
        """Remove the conversation's "system" key, as one undo step ("+ Add system prompt" takes its place)."""
        self.seal()  # its typing first, as an undo step of its own
        had_focus = self.chat_system.hasFocus()
        self.add_system_row.show()
        if had_focus:  # the keyboard stays where the prompt was
            self.add_system_button.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self._show_system_box(False)
        self._commit_step("Remove system prompt", "system")

    def _on_remove_key(self) -> None:
        if self.pages.currentIndex() == 2 and QApplication.focusWidget() is self.chat_system:
            self._on_remove_system()
        else:
            self._on_turn_key(self._on_remove_turn)

    def _on_add_turn_key(self) -> None:
        if self.pages.currentIndex() != 2:
            return
        # In the system prompt the turn after it is the first one: the end of the conversation was
        # far from where the cursor was.
        self._on_add_turn(self.current_turn(), first=QApplication.focusWidget() is self.chat_system)

    def _on_turn_key(self, slot) -> None:
        turn = self.current_turn()
        if turn is None:
            self.sig_message.emit("Put the cursor in a turn first: the key acts on the turn it is in.")
            return
        slot(turn)

    def _on_move_turn(self, turn: TurnEdit, delta: int) -> None:
        i = self.turns.index(turn)
        j = i + delta
        if not 0 <= j < len(self.turns):
            return
        self.seal()
        self.turns[i], self.turns[j] = self.turns[j], self.turns[i]
        self.turns_layout.removeWidget(turn)
        self.turns_layout.insertWidget(j, turn)
        self.scroll.ensureWidgetVisible(turn)
        self._commit_step("Move turn up" if delta < 0 else "Move turn down")

    def _on_remove_turn(self, turn: TurnEdit) -> None:
        self.seal()
        i = self.turns.index(turn)
        had_focus = turn.isAncestorOf(QApplication.focusWidget())
        self.turns.remove(turn)
        turn.setParent(None)
        turn.deleteLater()
        if had_focus:  # the keyboard stays in the conversation: the next turn's text, or the one before
            nxt = self.turns[min(i, len(self.turns) - 1)].content if self.turns else self.add_turn_button
            nxt.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self._commit_step("Remove turn")

    def _commit_step(self, label: str, field: str = "turns") -> None:
        """Commit a change to the list of turns (or to ``field``: the system prompt added or removed)
        as one undo step of its own, named ``label``: it never merges with the typing before or after
        it, so Undo takes back just the add, move or remove."""
        if self._building or self._record is None:
            return
        self._sync_add_system()
        self._dirty_fields.add(field)
        self._label = label
        try:
            self.flush()
        finally:
            self._label = None
        self._burst += 1


def _cursor_of(box: QWidget) -> tuple[int, int]:
    """(position, anchor) of the text cursor in a box of the form."""
    if isinstance(box, QPlainTextEdit):
        cursor = box.textCursor()
        return cursor.position(), cursor.anchor()
    line = box.lineEdit() if isinstance(box, QComboBox) else box
    if isinstance(line, QLineEdit):
        return line.cursorPosition(), line.cursorPosition()
    return 0, 0


def _put_cursor(box: QWidget, position: int, anchor: int) -> None:
    """Put the text cursor of ``box`` at ``position`` (selecting from ``anchor``), within its text."""
    if isinstance(box, QPlainTextEdit):
        end = box.document().characterCount() - 1
        cursor = box.textCursor()
        cursor.setPosition(min(anchor, end))
        cursor.setPosition(min(position, end), QTextCursor.MoveMode.KeepAnchor)
        box.setTextCursor(cursor)
        return
    line = box.lineEdit() if isinstance(box, QComboBox) else box
    if isinstance(line, QLineEdit):
        line.setCursorPosition(min(position, len(line.text())))


def _spliced(data: dict, standard: set[str], other_text: str) -> str:
    """A record's JSON text with the "other fields" box's text (which doesn't parse) put in place
    of its other fields: what a broken record keeps so that none of the typing is lost."""
    head = json.dumps({k: v for k, v in data.items() if k in standard}, ensure_ascii=False, indent=2,
                      default=str)
    inner = other_text.strip()
    if inner.startswith("{") and inner.endswith("}"):
        inner = inner[1:-1].strip()
    if not inner:
        return head
    return head[:-1].rstrip() + (",\n  " if head != "{}" else "\n  ") + inner + "\n}"


def _json_text_record(rec: Record, text: str) -> tuple[Record | None, str | None]:
    """What the record's JSON text typed in "Edit as JSON" makes of ``rec``, as its commit makes it.

    A broken record takes the text as it is: fixed when it parses to an object, else still broken,
    with the reason. A good record takes the object the text parses to, and keeps its last valid
    version while the text doesn't parse to one.

    Returns:
        ``(record, error)``: the new record (None when the text is the record's own, or doesn't parse
        to an object for a good record) and what is wrong with the text (None when nothing is).
    """
    if rec.broken:
        new = fixed_record(rec, text)
        return new, new.error
    try:
        value = json_text.loads(text)
    except ValueError as e:
        return None, str(e)
    if not isinstance(value, dict):
        return None, "the record must be a JSON object {...}"
    return (with_data(rec, value) if value != rec.peek() else None), None


class _ErrorPlace(NamedTuple):
    """Where a broken record's ``"line N, column C: ..."`` error is, in its text box and in its file."""

    box_line: int
    box_column: int
    file_line: int | None  # None: the error is of text retyped in the form, placed in the box only
    file_column: int | None
    words: str


def _error_at(rec: Record | None, error: str) -> _ErrorPlace | None:
    """Where ``error`` of ``rec`` is. A record as read or saved (it has a ``source``) is named by
    file lines and columns, the reader's and a save's; the box holds its text from its first
    character, so on its first line the columns before it in the file (a JSON array's indent) are
    not in the box. Text retyped in the form (:func:`fixed_record`), a copy and a record restored
    after a crash are named by lines of the box (:meth:`Record.error_in_file`)."""
    m = re.match(r"line (\d+), column (\d+): (.*)", error, re.S)
    if not m:
        return None
    line, column = int(m.group(1)), int(m.group(2))
    if rec is not None and rec.error_in_file:
        box = line - rec.line + 1
        box_column = column - (rec.start_column or 1) + 1 if box == 1 else column
        return _ErrorPlace(box, box_column, line, column, m.group(3))
    return _ErrorPlace(line, column, None, None, m.group(3))


def _where_broken(rec: Record | None, error: str) -> tuple[str, str]:
    """Where a broken record's error is, said once: as the file line and column (and, where they
    differ, the line or column of the text box) for a record as read or saved; as a line of the box
    for text retyped in the form, a record restored after a crash (with the file line it had) and a
    copy not saved yet (which has none: the line its error named when copied was the original's)."""
    if rec is None:
        return "", error
    if not rec.line:
        m = ERROR_PLACE.match(error)
        if m is None:
            return "", error
        column = f", column {m.group(2)}" if m.group(2) else ""
        return f" at line {m.group(1)}{column} of the text below", error[m.end():]
    at = _error_at(rec, error)
    if at is None:
        return f" (the record from file line {rec.line})", error
    if at.file_line is not None:
        inside = ""
        if at.box_line > 1:
            inside = f" (line {at.box_line} of the text below)"
        elif at.box_column != at.file_column:  # the element's first line, indented in the file
            inside = f" (column {at.box_column} of the text below)"
        return f" at file line {at.file_line}, column {at.file_column}{inside}", at.words
    return (f" at line {at.box_line}, column {at.box_column} of the text below (the record from file line "
            f"{rec.line})", at.words)


def error_offset(rec: Record | None, text: str) -> int | None:
    """Where a broken record's error is in its text box (``text``); None when it names no place."""
    if rec is None or not rec.error:
        return None
    at = _error_at(rec, rec.error)
    if at is None:
        return max(rec.column - 1, 0) if rec.column else None
    lines = text.split("\n")
    box = min(max(at.box_line, 1), len(lines))
    start = sum(len(line) + 1 for line in lines[:box - 1])
    return start + min(max(at.box_column - 1, 0), len(lines[box - 1]))
