"""A filterable, copyable log of everything a run said.

Lines are kept as (level, text) in a bounded list; the view shows those that pass the
level and text filters. Appends arrive in batches from the 10 Hz drain, so the view
appends once per batch instead of once per line.
"""

from __future__ import annotations

import time
from collections import deque

from PySide6.QtGui import QFont, QFontDatabase
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QHBoxLayout,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

LEVELS = ("info", "warning", "error")
MAX_LINES = 50_000


class LogConsole(QWidget):
    """Run log with a level filter, a text filter, Copy and Clear."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.lines: deque[tuple[str, str]] = deque(maxlen=MAX_LINES)
        self.view = QPlainTextEdit()
        self.view.setReadOnly(True)
        self.view.setMaximumBlockCount(MAX_LINES)
        self.view.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        font = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        font.setStyleHint(QFont.StyleHint.Monospace)
        self.view.setFont(font)
        self.view.setPlaceholderText("The run's log appears here: steps, checkpoints, warnings and errors.")
        # Three lines at least, not QPlainTextEdit's default: on a short window the plots need the room.
        self.view.setMinimumHeight(3 * self.view.fontMetrics().lineSpacing() + 8)
        self.level = QComboBox()
        self.level.addItems(["All", "Warnings and errors", "Errors"])
        self.level.setToolTip("Show only lines at this level or above")
        # Whole when there is room; in the Train area's narrowest pane it may elide rather
        # than widen the pane past the window.
        self.level.setMinimumWidth(90)
        self.filter = QLineEdit()
        self.filter.setPlaceholderText("Filter…")
        self.filter.setClearButtonEnabled(True)
        self.copy_button = QPushButton("Copy")
        self.copy_button.setToolTip("Copy the shown lines (or the selection) to the clipboard")
        self.clear_button = QPushButton("Clear")
        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        top.addWidget(self.filter, 1)
        top.addWidget(self.level)
        top.addWidget(self.copy_button)
        top.addWidget(self.clear_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        layout.addLayout(top)
        layout.addWidget(self.view, 1)
        self.filter.textChanged.connect(self._rebuild)
        self.level.currentIndexChanged.connect(self._rebuild)
        self.copy_button.clicked.connect(self.copy)
        self.clear_button.clicked.connect(self.clear)

    # ---- Public API
    def append(self, text: str, level: str = "info") -> None:
        self.append_many([(level, text)])

    def append_many(self, entries: list[tuple[str, str]]) -> None:
        """Add ``(level, text)`` lines; multi-line texts are split and keep their level."""
        stamp = time.strftime("%H:%M:%S")
        shown: list[str] = []
        for level, text in entries:
            for line in str(text).splitlines() or [""]:
                entry = (level, f"{stamp}  {line}")
                self.lines.append(entry)
                if self._passes(entry):
                    shown.append(entry[1])
        if shown:
            self.view.appendPlainText("\n".join(shown))

    def visible_text(self) -> str:
        return "\n".join(text for level, text in self.lines if self._passes((level, text)))

    def copy(self) -> None:
        cursor = self.view.textCursor()
        text = cursor.selectedText().replace("\u2029", "\n") if cursor.hasSelection() else self.visible_text()
        QApplication.clipboard().setText(text)

    def clear(self) -> None:
        self.lines.clear()
        self.view.clear()

    # ---- Internals
    def _passes(self, entry: tuple[str, str]) -> bool:
        level, text = entry
        minimum = self.level.currentIndex()
        if LEVELS.index(level) < minimum:
            return False
        needle = self.filter.text().strip().lower()
        return not needle or needle in text.lower()

    def _rebuild(self) -> None:
        self.view.setPlainText(self.visible_text())
        self.view.moveCursor(self.view.textCursor().MoveOperation.End)
