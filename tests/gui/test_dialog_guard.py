"""The GUI tests' guard against modal dialogs nobody answers (tests/gui/conftest.py)."""

import pytest
from PySide6.QtWidgets import QFileDialog, QMessageBox, QWidget

from tests.gui.conftest import UnansweredDialog


def test_an_unanswered_modal_dialog_fails_the_test_naming_it_instead_of_blocking(qtbot):
    parent = QWidget()
    qtbot.addWidget(parent)
    with pytest.raises(UnansweredDialog, match="QMessageBox.question.*Kill the worker"):
        QMessageBox.question(parent, "Kill the worker?", "The run was asked to stop")
    box = QMessageBox(parent)
    box.setWindowTitle("Close Finetune Studio?")
    box.setText("A run is training")
    with pytest.raises(UnansweredDialog, match=r"Close Finetune Studio\? \| A run is training"):
        box.exec()
    with pytest.raises(UnansweredDialog, match="getOpenFileName"):
        QFileDialog.getOpenFileName(parent, "Open a dataset")


def test_a_test_that_answers_the_dialog_itself_still_can(qtbot, monkeypatch):
    monkeypatch.setattr(QMessageBox, "question", staticmethod(lambda *a, **k: QMessageBox.StandardButton.Yes))
    assert QMessageBox.question(None, "Sure?", "…") == QMessageBox.StandardButton.Yes
