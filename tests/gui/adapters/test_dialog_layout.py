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


def test_a_dialogs_command_line_wraps_between_arguments_and_copies_exactly(qtbot):
    """Qt wraps a label after any hyphen: the merge command read "--" at one line's end and
    "out /home/…" on the next, and "medical-" / "assistant". Lines now break at spaces (or at a
    long path's "/"), and what is copied is the command, without the marks that hold hyphens."""
    from PySide6.QtGui import QGuiApplication

    from engine.adapters import AdapterCard
    from gui.adapters.merge_dialog import MergeDialog

    cards = [AdapterCard(name=n, path=f"/home/user/finetune/runs/{n}-2026-12-05/final", source="run")
             for n in ("medical-assistant", "legal")]
    dialog = MergeDialog("demo", cards)
    qtbot.addWidget(dialog)
    dialog.out_edit.setText("/home/user/finetune/merged/medical-assistant-plus-legal-out")
    dialog.out_edit.textEdited.emit(dialog.out_edit.text())
    view = dialog.command_label
    command = view.text()
    assert " --out /home/user/finetune/merged/medical-assistant-plus-legal-out" in command
    dialog.show()
    qtbot.waitExposed(dialog)
    wrapped = 0
    for width in range(dialog.minimumWidth(), 800, 6):  # at 560 px a line ended in "--"
        dialog.resize(width, dialog.height())
        qtbot.waitUntil(lambda w=width: dialog.width() == w)
        lines = view.shown_lines()
        assert "".join(lines) == command
        wrapped += len(lines) > 1
        for line in lines[:-1]:
            last = line.split(" ")[-1]  # "" when the line ends at a space
            # Only a path wider than the rest of the line breaks inside, and then after a "/".
            assert last == "" or last.endswith("/"), (width, lines)
        assert view.height() >= len(lines) * view.fontMetrics().lineSpacing()  # every line shows
    assert wrapped
    view.selectAll()
    view.copy()
    assert QGuiApplication.clipboard().text() == command
