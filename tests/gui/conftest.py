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
