"""A dialog that grows to show what it says, and never shrinks back (so it doesn't jump)."""

from __future__ import annotations

from PySide6.QtWidgets import QWidget


def grow_to_fit(dialog: QWidget) -> None:
    """Make ``dialog`` taller when its layout needs it at its width (a wrapped label got longer).

    Qt sizes a window from its layout's minimum size, which ignores height-for-width: a word-wrapped
    label that needs another line at the window's width would be cut, so the height is asked for here.
    """
    lay = dialog.layout()
    if lay is None:
        return
    lay.activate()
    wanted = lay.heightForWidth(dialog.width()) if lay.hasHeightForWidth() else lay.sizeHint().height()
    if wanted > dialog.height():
        dialog.resize(dialog.width(), wanted)


def text_width(widget: QWidget, chars: int) -> int:
    """The width of ``chars`` average characters in ``widget``'s font.

    A dialog's minimum width in pixels stayed put when the font was raised: at 16 pt the Merge
    dialog's 560 px cut its combination box to "cat (exa" and its Browse… button to "rowse". In
    characters it grows with the font, and its wrapped texts keep their lines.
    """
    return widget.fontMetrics().averageCharWidth() * chars
