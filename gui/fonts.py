"""Fonts sized from the application font, so a raised desktop font raises them too.

A style sheet's ``font-size: 14px`` stays 14 px when a low-vision user sets the system font to
16 pt: titles ended smaller than the text under them. Qt style sheets have no relative unit, so
such fonts are set here, in points added to the widget's own font (at the default 9 pt, 96 dpi,
+1.5 pt is the 14 px the style sheets had).
"""

from __future__ import annotations

from PySide6.QtGui import QFont
from PySide6.QtWidgets import QWidget


def relative_font(font: QFont, points: float = 0.0, *, bold: bool | None = None) -> QFont:
    """``font`` made ``points`` larger (negative: smaller, never under 6 pt), bold if asked."""
    out = QFont(font)
    out.setPointSizeF(max(font.pointSizeF() + points, 6.0))
    if bold is not None:
        out.setBold(bold)
    return out


def set_relative_font(widget: QWidget, points: float = 0.0, *, bold: bool | None = None) -> None:
    """Give ``widget`` its own font ``points`` larger than the one it has now."""
    widget.setFont(relative_font(widget.font(), points, bold=bold))
