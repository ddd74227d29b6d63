"""An annotator's day from the keyboard: the keys pressed as a user presses them (QTest key
clicks through the window's shortcuts), not the actions triggered from code."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

CTRL = Qt.KeyboardModifier.ControlModifier
SHIFT = Qt.KeyboardModifier.ShiftModifier
ALT = Qt.KeyboardModifier.AltModifier


@pytest.fixture
def shown_editor(make_editor, qtbot):
    """An editor on a file, shown in an active window: shortcuts only fire in one."""

    def _make(path):
        ed = make_editor(path)
        ed.show()
        ed.activateWindow()
        qtbot.waitUntil(ed.isActiveWindow)
        return ed

    return _make


def _type_in_output(ed, qtbot, index: int, text: str) -> None:
    ed.select_record(index)
    box = ed.form.field_edit("output")
    box.setFocus()
    box.moveCursor(box.textCursor().MoveOperation.End)
    qtbot.keyClicks(box, text)
    ed.form.flush()


@pytest.mark.parametrize("keys", [(Qt.Key.Key_Y, CTRL), (Qt.Key.Key_Z, CTRL | SHIFT)],
                         ids=["ctrl-y", "ctrl-shift-z"])
@pytest.mark.parametrize("where", ["table", "form"])
def test_redo_keys_redo(shown_editor, small_dataset, qtbot, keys, where):
    """Both redo keys work, wherever the focus is. Ctrl+Y was given twice (the platform's Redo is
    Ctrl+Y here, and "Ctrl+Y" again): an ambiguous shortcut that did nothing; Ctrl+Shift+Z, which
    the tooltip named, was not bound at all."""
    ed = shown_editor(small_dataset)
    _type_in_output(ed, qtbot, 2, " more")
    edited = ed.dataset().records[2].peek()["output"]
    focus = ed.table if where == "table" else ed.form.field_edit("output")
    focus.setFocus()
    qtbot.keyClick(focus, Qt.Key.Key_Z, CTRL)
    assert ed.dataset().records[2].peek()["output"] == edited.removesuffix(" more")
    qtbot.keyClick(focus, *keys)
    assert ed.dataset().records[2].peek()["output"] == edited
    ed.act_undo.trigger()
    # The tooltip names keys that are bound.
    tip = ed.act_redo.toolTip()
    assert "Ctrl+Shift+Z" in tip and "Ctrl+Y" in tip
    bound = [k.toString() for k in ed.act_redo.shortcuts()]
    assert "Ctrl+Shift+Z" in bound and bound.count("Ctrl+Y") == 1
