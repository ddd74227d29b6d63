"""The Adapters area's dialogs as a user sees them: on a laptop screen, with long names, with bad input."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QRect, QSize
from PySide6.QtGui import QScreen

from gui.adapters.compare_dialog import CompareDialog, WholeModel

TITLE_BAR = 40  # what a window manager adds above a dialog's contents, at most


@pytest.mark.parametrize("screen", [(1366, 728), (1024, 660)])  # 768 and 700 px tall, less a panel
def test_the_compare_dialog_fits_a_small_screen(qtbot, monkeypatch, screen):
    width, height = screen
    monkeypatch.setattr(QScreen, "availableGeometry", lambda _self: QRect(0, 0, width, height))
    dialog = CompareDialog("demo", [WholeModel("full-run", "/runs/full-run/final")])
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    assert dialog.height() + TITLE_BAR <= height and dialog.width() <= width
    # Its buttons are inside it, not cut off by a layout that can't shrink that far.
    assert dialog.minimumSizeHint().height() <= dialog.height()
    assert dialog.buttons.geometry().bottom() < dialog.height()


def test_the_compare_dialog_keeps_its_size_on_a_large_screen(qtbot, monkeypatch):
    monkeypatch.setattr(QScreen, "availableGeometry", lambda _self: QRect(0, 0, 1920, 1040))
    dialog = CompareDialog("demo", [WholeModel("full-run", "/runs/full-run/final")])
    qtbot.addWidget(dialog)
    assert dialog.size() == QSize(980, 720)  # the table and the answers need the room


def test_the_merge_dialogs_weights_stay_small_and_its_output_folder_grows(qtbot):
    """Stretched to the dialog's width, each weight's "1.00" sat at the left of a 400 px box."""
    from engine.adapters import AdapterCard
    from gui.adapters.merge_dialog import MergeDialog

    cards = [AdapterCard(name=name, path=f"/runs/{name}/final", source="run") for name in ("medical", "legal")]
    dialog = MergeDialog("demo", cards)
    qtbot.addWidget(dialog)
    dialog.resize(760, dialog.height())
    dialog.show()
    qtbot.waitExposed(dialog)
    for spin in (*dialog.weights, dialog.density):
        assert spin.width() <= spin.sizeHint().width() + 8, spin.toolTip()
    assert dialog.out_edit.width() > 2 * dialog.weights[0].width()
