"""A combo box that ends its shown text in "…" when squeezed, instead of cutting it mid-letter.

Qt's combo box paints its current text clipped to the box: a toolbar too narrow for it showed
"Demo (tiny mo". This one elides what it paints and gives the whole text as its tooltip.
"""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtWidgets import QComboBox, QStyle, QStyleOptionComboBox, QStylePainter, QWidget

MIN_CHARS = 6
"""The fewest characters the box keeps room for when squeezed."""


class ElidedComboBox(QComboBox):
    """A non-editable ``QComboBox`` whose current text is elided to the room it has."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._tip = ""
        self.currentTextChanged.connect(self._update_tip)

    # ---- Public API
    def shown_text(self) -> str:
        """The current text as painted: whole when it fits, else cut short with "…"."""
        opt = QStyleOptionComboBox()
        self.initStyleOption(opt)
        field = self.style().subControlRect(QStyle.ComplexControl.CC_ComboBox, opt,
                                            QStyle.SubControl.SC_ComboBoxEditField, self)
        return self.fontMetrics().elidedText(opt.currentText, Qt.TextElideMode.ElideRight, field.width())

    def setToolTip(self, text: str) -> None:  # noqa: N802 (Qt's name)
        self._tip = text
        self._update_tip()

    # ---- Qt
    def minimumSizeHint(self) -> QSize:  # noqa: N802 (Qt's name)
        # Room for a few letters and the "…" (not the longest item's width): a narrow bar
        # squeezes this box, which elides, rather than its neighbours, which would be cut.
        hint = super().minimumSizeHint()
        frame = self.sizeHint().width() - max((self.fontMetrics().horizontalAdvance(self.itemText(i))
                                               for i in range(self.count())), default=0)
        return QSize(min(hint.width(), frame + self.fontMetrics().averageCharWidth() * MIN_CHARS), hint.height())

    def paintEvent(self, _event) -> None:  # noqa: N802 (Qt's name)
        painter = QStylePainter(self)
        opt = QStyleOptionComboBox()
        self.initStyleOption(opt)
        painter.drawComplexControl(QStyle.ComplexControl.CC_ComboBox, opt)
        opt.currentText = self.shown_text()
        painter.drawControl(QStyle.ControlElement.CE_ComboBoxLabel, opt)

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        super().resizeEvent(event)
        self._update_tip()

    # ---- Internals
    def _update_tip(self, *_) -> None:
        # Cut short, the whole text leads the tooltip.
        whole = self.currentText()
        cut = self.shown_text() != whole
        super().setToolTip(f"{whole}: {self._tip}" if cut and self._tip else whole if cut else self._tip)
