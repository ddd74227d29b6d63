"""An annotator's day from the keyboard: the keys pressed as a user presses them (QTest key
clicks through the window's shortcuts), not the actions triggered from code."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

CTRL = Qt.KeyboardModifier.ControlModifier
SHIFT = Qt.KeyboardModifier.ShiftModifier
ALT = Qt.KeyboardModifier.AltModifier


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


@pytest.mark.parametrize("jump", ["shift-f8", "shift-f3"])
def test_shift_arrow_after_a_jump_selects_from_the_record_jumped_to(shown_editor, small_dataset, qtbot, jump):
    """Shift+Down after a jump made while Shift was held (Shift+F8, Shift+F3) selects the record
    jumped to and the next one: it used to select from the row the keyboard had left before, 30
    records without the one jumped to, which Delete then removed."""
    ed = shown_editor(small_dataset)
    table = ed.table
    ed.select_record(40)
    table.setFocus()
    qtbot.keyClick(table, Qt.Key.Key_Down)  # the keyboard leaves the table at record 41
    target = 10
    if jump == "shift-f8":
        ed.model.set_findings({id(ed.dataset().records[target]): (ed.dataset().records[target], ["a finding"])})
        qtbot.keyClick(table, Qt.Key.Key_F8, SHIFT)
    else:
        ed.find_bar.find.setText(ed.dataset().records[target].peek()["instruction"])
        qtbot.keyClick(table, Qt.Key.Key_F3, SHIFT)
    assert ed.current_record_index() == target
    table.setFocus()
    qtbot.keyClick(table, Qt.Key.Key_Down, SHIFT)
    assert ed.selected_record_indices() == [target, target + 1]
    qtbot.keyClick(table, Qt.Key.Key_Delete)
    assert len(ed.dataset().records) == 62  # the two records selected, no more


def test_enter_in_the_table_edits_the_current_cell_in_the_form_and_escape_comes_back(shown_editor, small_dataset,
                                                                                     qtbot):
    """Enter in the table puts the cursor at the end of the form's box for the current column;
    Esc in the form puts the keyboard back in the table, on the same record, the typing kept.
    Neither key did anything: the only way between them was the mouse."""
    from PySide6.QtWidgets import QApplication

    ed = shown_editor(small_dataset)
    ed.tabs.setCurrentWidget(ed.lint_panel)  # the form is shown by Enter, whatever tab was up
    ed.select_record(3, ed.model.column_of("output"))
    ed.table.setFocus()
    qtbot.keyClick(ed.table, Qt.Key.Key_Return)
    box = ed.form.field_edit("output")
    assert ed.tabs.currentWidget() is ed.form
    assert QApplication.focusWidget() is box
    assert box.textCursor().atEnd()
    before = ed.dataset().records[3].peek()["output"]
    qtbot.keyClicks(box, " Checked.")
    qtbot.keyClick(box, Qt.Key.Key_Escape)
    assert QApplication.focusWidget() is ed.table
    assert ed.current_record_index() == 3
    assert ed.dataset().records[3].peek()["output"] == before + " Checked."
    qtbot.keyClick(ed.table, Qt.Key.Key_Down)  # the keyboard goes on in the table
    assert ed.current_record_index() == 4
    ed.select_record(4, ed.model.column_of("instruction"))
    qtbot.keyClick(ed.table, Qt.Key.Key_Enter)
    assert QApplication.focusWidget() is ed.form.field_edit("instruction")


def test_enter_on_a_conversations_assistant_column_edits_the_turn_it_shows(shown_editor, messages_file, qtbot):
    from PySide6.QtWidgets import QApplication

    ed = shown_editor(messages_file)
    ed.select_record(0, ed.model.column_of("@assistant"))
    ed.table.setFocus()
    qtbot.keyClick(ed.table, Qt.Key.Key_Return)
    assert QApplication.focusWidget() is ed.form.turns[2].content  # "Hello!", the assistant's turn
    qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_Escape)
    assert QApplication.focusWidget() is ed.table


def test_undo_and_redo_show_the_record_they_change(shown_editor, small_dataset, qtbot):
    """Undoing edits of several records one by one shows each record as its edit is undone (it
    went on showing the record last selected, the change out of sight); an undone delete selects
    the records it puts back."""
    ed = shown_editor(small_dataset)
    for i in (2, 5, 9):
        _type_in_output(ed, qtbot, i, f" edit {i}")
        ed.form.seal()
    ed.select_record(20)
    ed.table.setFocus()
    outputs = lambda: [ed.dataset().records[i].peek()["output"] for i in (2, 5, 9)]  # noqa: E731
    qtbot.keyClick(ed.table, Qt.Key.Key_Z, CTRL)
    assert ed.current_record_index() == 9 and not outputs()[2].endswith(" edit 9")
    assert ed.form.field_edit("output").toPlainText() == outputs()[2]  # the form shows the undone text
    qtbot.keyClick(ed.table, Qt.Key.Key_Z, CTRL)
    assert ed.current_record_index() == 5 and not outputs()[1].endswith(" edit 5")
    qtbot.keyClick(ed.table, Qt.Key.Key_Y, CTRL)
    assert ed.current_record_index() == 5 and outputs()[1].endswith(" edit 5")
    qtbot.keyClick(ed.table, Qt.Key.Key_Y, CTRL)
    assert ed.current_record_index() == 9 and outputs()[2].endswith(" edit 9")

    ed.select_record(30)
    for _ in range(2):
        qtbot.keyClick(ed.table, Qt.Key.Key_Down, SHIFT)
    kept = [ed.dataset().records[i] for i in (30, 31, 32)]
    qtbot.keyClick(ed.table, Qt.Key.Key_Delete)
    ed.select_record(50)
    qtbot.keyClick(ed.table, Qt.Key.Key_Z, CTRL)
    assert ed.selected_record_indices() == [30, 31, 32]
    assert [ed.dataset().records[i] for i in (30, 31, 32)] == kept


def test_ctrl_delete_in_a_form_box_deletes_a_word_not_the_record(shown_editor, small_dataset, qtbot):
    ed = shown_editor(small_dataset)
    ed.select_record(3)
    box = ed.form.field_edit("output")
    box.setPlainText("first second third")
    ed.form.flush()
    box.setFocus()
    box.moveCursor(box.textCursor().MoveOperation.Start)
    qtbot.keyClick(box, Qt.Key.Key_Delete, CTRL)
    ed.form.flush()
    assert len(ed.dataset().records) == 64  # it was "Delete records": record 4 went
    assert ed.current_record_index() == 3
    assert ed.dataset().records[3].peek()["output"].split() == ["second", "third"]
    ed.table.setFocus()
    qtbot.keyClick(ed.table, Qt.Key.Key_Delete, CTRL)  # in the table it still deletes the record
    assert len(ed.dataset().records) == 63


def test_ctrl_z_in_a_role_box_undoes_the_removed_turn(shown_editor, messages_file, qtbot):
    """After ✕ on a turn the focus goes to a role box; Ctrl+Z there went to that box's own undo
    and the turn stayed removed. A one-line box of the form sends Undo/Redo to the editor."""
    from PySide6.QtWidgets import QToolButton

    ed = shown_editor(messages_file)
    ed.select_record(0)
    before = ed.dataset().records[0].peek()["messages"]
    remove = next(b for b in ed.form.turns[1].findChildren(QToolButton) if b.text() == "✕")
    remove.setFocus()
    qtbot.keyClick(remove, Qt.Key.Key_Space)
    assert len(ed.dataset().records[0].peek()["messages"]) == 2
    role = ed.form.turns[1].role
    role.setFocus()
    qtbot.keyClick(role, Qt.Key.Key_Z, CTRL)
    assert ed.dataset().records[0].peek()["messages"] == before
    role = ed.form.turns[1].role
    role.setFocus()
    qtbot.keyClick(role, Qt.Key.Key_Y, CTRL)
    assert len(ed.dataset().records[0].peek()["messages"]) == 2


def _in(widget, focus) -> bool:
    return focus is widget or widget.isAncestorOf(focus)


def test_tab_goes_role_then_text_then_the_next_turn(shown_editor, messages_file, qtbot):
    """Each turn took five Tab stops (role, text, ↑, ↓, ✕); an added turn came after the other fields."""
    from PySide6.QtWidgets import QApplication

    ed = shown_editor(messages_file)
    ed.select_record(0)
    form = ed.form
    form.turns[0].role.setFocus()
    expected = [form.turns[0].content] + [w for t in form.turns[1:] for w in (t.role, t.content)] + \
        [form.add_turn_button]
    for want in expected:
        qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_Tab)
        assert _in(want, QApplication.focusWidget())
    qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_Tab)  # then the other fields ("id"), not turn 1 again
    assert QApplication.focusWidget() is form._extra_json
    qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_Backtab, SHIFT)
    assert QApplication.focusWidget() is form.add_turn_button
    # An added turn (Ctrl+Shift+N in the first turn) is reached in its place too.
    form.turns[0].content.setFocus()
    qtbot.keyClick(form.turns[0].content, Qt.Key.Key_N, CTRL | SHIFT)
    new = form.turns[1]
    assert QApplication.focusWidget() is new.content
    qtbot.keyClick(new.content, Qt.Key.Key_Tab)
    assert _in(form.turns[2].role, QApplication.focusWidget())
    qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_Backtab, SHIFT)
    assert QApplication.focusWidget() is new.content
    qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_Backtab, SHIFT)
    assert _in(new.role, QApplication.focusWidget())


def test_turn_keys_add_remove_and_move_the_turn_the_cursor_is_in_as_undo_steps(shown_editor, messages_file, qtbot):
    from PySide6.QtWidgets import QApplication

    ed = shown_editor(messages_file)
    ed.select_record(0)
    form = ed.form
    turns = lambda: [(t["role"], t["content"]) for t in ed.dataset().records[0].peek()["messages"]]  # noqa: E731
    start = turns()
    assert start == [("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello!")]

    # Add after the user's turn: an assistant turn, the cursor in its text, one undo step.
    form.turns[1].content.setFocus()
    qtbot.keyClick(form.turns[1].content, Qt.Key.Key_N, CTRL | SHIFT)
    assert turns() == start[:2] + [("assistant", "")] + start[2:]
    assert QApplication.focusWidget() is form.turns[2].content
    qtbot.keyClicks(form.turns[2].content, "Hey")
    form.flush()
    assert turns()[2] == ("assistant", "Hey")
    qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_Z, CTRL)  # the typing
    assert turns()[2] == ("assistant", "")
    assert QApplication.focusWidget() is form.turns[2].content  # the keyboard stays in the turn: Ctrl+Z again works
    qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_Z, CTRL)  # the added turn
    assert turns() == start

    # Move the assistant's turn up and back down: the cursor stays in it.
    box = form.turns[2].content
    box.setFocus()
    qtbot.keyClick(box, Qt.Key.Key_Up, CTRL | SHIFT)
    assert turns() == [start[0], start[2], start[1]]
    assert QApplication.focusWidget() is box and form.turns[1].content is box
    qtbot.keyClick(box, Qt.Key.Key_Down, CTRL | SHIFT)
    assert turns() == start and QApplication.focusWidget() is box
    assert ed.undo_stack.undoText() == "Move turn down"

    # Remove the user's turn from its role box: the cursor goes to the next turn's text; Ctrl+Z puts it back.
    form.turns[1].role.setFocus()
    qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_Delete, CTRL | SHIFT)
    assert turns() == [start[0], start[2]]
    assert QApplication.focusWidget() is form.turns[1].content
    assert len(ed.dataset().records) == 2  # the record itself stays
    assert ed.undo_stack.undoText() == "Remove turn"
    qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_Z, CTRL)
    assert turns() == start


def test_the_turn_buttons_name_their_keys(make_editor, messages_file):
    from PySide6.QtWidgets import QToolButton

    ed = make_editor(messages_file)
    ed.select_record(0)
    tips = {b.text(): b.toolTip() for b in ed.form.turns[0].findChildren(QToolButton)}
    assert tips == {"↑": "Move turn up (Ctrl+Shift+Up)", "↓": "Move turn down (Ctrl+Shift+Down)",
                    "✕": "Remove turn (Ctrl+Shift+Del)"}
    assert "Ctrl+Shift+N" in ed.form.add_turn_button.toolTip()


def _cursor(box) -> int:
    return box.textCursor().position()


def test_each_record_opens_at_the_start_and_an_edited_one_where_its_editing_was_left(shown_editor, small_dataset,
                                                                                      qtbot):
    """The cursor's offset went from record to record: after typing at character 42 of one record's
    output, the next record's output opened with the cursor at 42."""
    from PySide6.QtWidgets import QApplication

    ed = shown_editor(small_dataset)
    ed.select_record(0)
    box = ed.form.field_edit("output")
    box.setFocus()
    cursor = box.textCursor()
    cursor.setPosition(40)
    box.setTextCursor(cursor)
    qtbot.keyClicks(box, "XY")
    assert _cursor(box) == 42
    qtbot.keyClick(box, Qt.Key.Key_Down, ALT)  # the next record
    assert ed.current_record_index() == 1 and QApplication.focusWidget() is box
    assert _cursor(box) == 0 and _cursor(ed.form.field_edit("instruction")) == 0
    cursor.setPosition(30)  # only looked at, not edited
    box.setTextCursor(cursor)
    qtbot.keyClick(box, Qt.Key.Key_Down, ALT)
    assert ed.current_record_index() == 2 and _cursor(box) == 0
    qtbot.keyClick(box, Qt.Key.Key_Up, ALT)
    assert ed.current_record_index() == 1 and _cursor(box) == 0
    qtbot.keyClick(box, Qt.Key.Key_Up, ALT)  # back to the record edited: where the typing stopped
    assert ed.current_record_index() == 0 and QApplication.focusWidget() is box and _cursor(box) == 42
    assert ed.dataset().records[0].peek()["output"][40:42] == "XY"
    # From the table, Enter goes to that place too (to the end of the box in a record not edited).
    ed.select_record(0, ed.model.column_of("output"))
    ed.table.setFocus()
    qtbot.keyClick(ed.table, Qt.Key.Key_Return)
    assert QApplication.focusWidget() is box and _cursor(box) == 42
    qtbot.keyClick(box, Qt.Key.Key_Down, ALT)
    ed.table.setFocus()
    qtbot.keyClick(ed.table, Qt.Key.Key_Return)
    assert ed.current_record_index() == 1 and _cursor(box) == len(box.toPlainText())


def test_the_keyboard_stays_in_a_conversation_from_record_to_record(shown_editor, tmp_path, qtbot):
    """A conversation's turn boxes are made anew for each record: Alt+Down from a turn left the
    keyboard nowhere, and so did Ctrl+Z after typing in a turn."""
    import json

    from PySide6.QtWidgets import QApplication

    path = tmp_path / "chats.jsonl"
    rows = [{"conversations": [{"from": "human", "value": f"Question {i} " * 5}, {"from": "gpt", "value": f"Answer {i} " * 8},
                               {"from": "human", "value": "Thanks"}], "system": "Be kind."} for i in range(3)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    ed = shown_editor(path)
    ed.select_record(0)
    form = ed.form
    box = form.turns[1].content
    box.setFocus()
    box.moveCursor(box.textCursor().MoveOperation.End)
    qtbot.keyClicks(box, " more")
    form.flush()
    qtbot.keyClick(box, Qt.Key.Key_Z, CTRL)
    assert QApplication.focusWidget() is form.turns[1].content  # the same turn of the record put back
    assert _cursor(form.turns[1].content) == len(rows[0]["conversations"][1]["value"])
    qtbot.keyClicks(QApplication.focusWidget(), " again")
    qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_Down, ALT)
    assert ed.current_record_index() == 1
    assert QApplication.focusWidget() is form.turns[1].content and _cursor(form.turns[1].content) == 0
    qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_Up, ALT)  # the record edited: where the typing stopped
    assert QApplication.focusWidget() is form.turns[1].content
    assert form.turns[1].content.toPlainText().endswith(" again")
    assert _cursor(form.turns[1].content) == len(rows[0]["conversations"][1]["value"] + " again")


def test_ctrl_shift_n_in_the_system_prompt_adds_the_first_turn(shown_editor, tmp_path, qtbot):
    """Ctrl+Shift+N in the system prompt's box added the turn at the end of the conversation, far
    from the box the cursor was in; it goes first, after the system prompt, the cursor in it."""
    import json

    from PySide6.QtWidgets import QApplication

    path = tmp_path / "chats.jsonl"
    row = {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello!"}], "system": "Be kind."}
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    ed = shown_editor(path)
    ed.select_record(0)
    form = ed.form
    form.chat_system.setFocus()
    qtbot.keyClick(form.chat_system, Qt.Key.Key_N, CTRL | SHIFT)
    turns = ed.dataset().records[0].peek()["conversations"]
    assert turns == [{"from": "human", "value": ""}, *row["conversations"]]
    assert ed.dataset().records[0].peek()["system"] == "Be kind."
    assert QApplication.focusWidget() is form.turns[0].content
    qtbot.keyClicks(form.turns[0].content, "First")
    form.flush()
    assert ed.dataset().records[0].peek()["conversations"][0] == {"from": "human", "value": "First"}
    assert ed.undo_stack.undoText() == "Edit turns"
    ed.undo_stack.undo()
    ed.undo_stack.undo()
    assert ed.dataset().records[0].peek() == row


@pytest.mark.parametrize("tab", ["Checks", "Prompt preview"])
def test_back_on_the_record_tab_the_keyboard_is_where_it_was_left(shown_editor, messages_file, qtbot, tab):
    """Back from the Checks tab (or the Prompt preview) to the Record tab, the keyboard landed on a
    turn's role box: the box and the cursor the user left are put back."""
    from PySide6.QtWidgets import QApplication

    ed = shown_editor(messages_file)
    ed.select_record(0)
    form = ed.form
    box = form.turns[2].content
    box.setFocus()
    cursor = box.textCursor()
    cursor.setPosition(2)
    cursor.setPosition(4, cursor.MoveMode.KeepAnchor)
    box.setTextCursor(cursor)
    bar = ed.tabs.tabBar()
    names = [ed.tabs.tabText(i) for i in range(ed.tabs.count())]
    qtbot.mouseClick(bar, Qt.MouseButton.LeftButton, pos=bar.tabRect(names.index(tab)).center())
    assert ed.tabs.currentIndex() == names.index(tab)
    assert not form.isAncestorOf(QApplication.focusWidget())
    qtbot.mouseClick(bar, Qt.MouseButton.LeftButton, pos=bar.tabRect(names.index("Record")).center())
    assert ed.tabs.currentWidget() is form
    assert QApplication.focusWidget() is box
    assert (box.textCursor().anchor(), box.textCursor().position()) == (2, 4)
    # Left in the system prompt of record 2 this time, after going to another record and back.
    ed.select_record(1)
    ed.select_record(0)
    form.turns[0].content.setFocus()  # the system turn
    form.turns[0].content.moveCursor(cursor.MoveOperation.End)
    qtbot.mouseClick(bar, Qt.MouseButton.LeftButton, pos=bar.tabRect(names.index(tab)).center())
    qtbot.mouseClick(bar, Qt.MouseButton.LeftButton, pos=bar.tabRect(names.index("Record")).center())
    assert QApplication.focusWidget() is form.turns[0].content
    assert _cursor(form.turns[0].content) == len("Be brief.")


def test_tab_leaves_the_table_and_visits_every_control_of_the_area_in_reading_order(shown_editor, small_dataset):
    """Tab in the records table went from cell to cell (Qt's tabKeyNavigation) and never left it:
    the form, the filter and its options were out of the keyboard's reach."""
    from tests.gui.keyboard_audit import describe, tab_chain, tab_stops

    ed = shown_editor(small_dataset)
    chain = [w for w in tab_chain(ed.table) if ed.isAncestorOf(w)]
    assert all(w.isVisible() and w.isEnabled() for w in chain)
    missed = [describe(w) for w in tab_stops(ed) if w not in chain]
    assert not missed
    # Reading order: the filter row above the table, the table, then the record's form beside it.
    order = [ed.filter_edit, ed.table, ed.form.field_edit("instruction"), ed.form.field_edit("output")]
    where = [chain.index(w) for w in order]
    rotated = where[where.index(min(where)):] + where[:where.index(min(where))]
    assert rotated == sorted(rotated), [describe(w) for w in chain]
