"""GUI tests run headless; the data home is a tmp dir (the autouse ``studio_home`` in tests/conftest.py).

A modal dialog that a test doesn't answer blocks offscreen forever, in Qt's own event loop, where
pytest-timeout's alarm never gets to run: two runs of the main-window tests on a loaded machine sat
for 8 and 33 minutes at no CPU. ``no_unanswered_dialogs`` makes such a dialog fail the test at once,
naming it. A test that means a dialog to be answered patches the asking method (``_ask_*``) or the
dialog's ``exec``/static call itself; its own monkeypatch wins over this one.
"""

import os

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


class UnansweredDialog(AssertionError):
    pass


@pytest.fixture(autouse=True)
def no_unanswered_dialogs(monkeypatch):
    from PySide6.QtWidgets import QDialog, QFileDialog, QInputDialog, QMessageBox

    def refuse(what):
        def call(*args, **_kw):
            shown = [a for a in args if isinstance(a, str)]
            if args and isinstance(args[0], QDialog):  # exec() on a dialog: name it by its title and text
                box = args[0]
                shown = [box.windowTitle()] + ([box.text()] if isinstance(box, QMessageBox) else [])
            raise UnansweredDialog(f"a modal {what} would block the test (offscreen, nobody answers it): "
                                   f"{' | '.join(s for s in shown if s)[:300]}")
        return call

    for name in ("question", "warning", "information", "critical"):
        monkeypatch.setattr(QMessageBox, name, staticmethod(refuse(f"QMessageBox.{name}")))
    for name in ("getOpenFileName", "getOpenFileNames", "getSaveFileName", "getExistingDirectory"):
        monkeypatch.setattr(QFileDialog, name, staticmethod(refuse(f"QFileDialog.{name}")))
    for name in ("getText", "getInt", "getDouble", "getItem", "getMultiLineText"):
        monkeypatch.setattr(QInputDialog, name, staticmethod(refuse(f"QInputDialog.{name}")))
    for cls in (QDialog, QMessageBox, QFileDialog, QInputDialog):  # each may bind its own exec()
        monkeypatch.setattr(cls, "exec", refuse(f"{cls.__name__}.exec()"))


@pytest.fixture
def app_font_pt(qapp):
    """Raise the application font as a low-vision user does (``app_font_pt(16)``); restored after.

    Widgets created after the call take the font, as they do when the desktop's font is raised
    before the app starts.
    """
    from PySide6.QtGui import QFont

    before = QFont(qapp.font())

    def _set(points: float) -> QFont:
        font = QFont(before)
        font.setPointSizeF(points)
        qapp.setFont(font)
        return font

    yield _set
    qapp.setFont(before)


@pytest.fixture
def dark_palette(qapp):
    """The application under a dark palette (``gui.scheme.dark_palette``, what ``--color-scheme dark``
    sets where the platform has none of its own, as offscreen); the previous one is put back after."""
    from gui.scheme import dark_palette as palette

    old = qapp.palette()
    qapp.setPalette(palette())
    yield qapp.palette()
    qapp.setPalette(old)


@pytest.fixture
def painted_contrast():
    """``painted_contrast(widget, background=None)``: see ``_painted_contrast``."""
    return _painted_contrast


def _painted_contrast(widget, background=None) -> float:
    """The WCAG contrast of what ``widget`` paints, as rendered: its most contrasting pixel against
    ``background`` (by default the colour at its top-left corner, where no text reaches)."""
    from PySide6.QtGui import QColor

    from gui.scheme import contrast

    image = widget.grab().toImage()
    bg = QColor(background) if background is not None else image.pixelColor(0, 0)
    return max(contrast(image.pixelColor(x, y), bg) for x in range(image.width()) for y in range(image.height()))
