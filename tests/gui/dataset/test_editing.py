"""Editing records: in a cell and in the form, add/duplicate/delete/move, undo and redo."""

from __future__ import annotations

import json

import pytest
from PySide6.QtCore import Qt


def records_data(ed) -> list[dict]:
    return [dict(r.peek()) for r in ed.dataset().records]


def _cell(ed, row: int, key: str):
    return ed.proxy.index(row, ed.model.column_of(key))


def test_edit_cell_then_undo_redo(make_editor, small_dataset, qtbot):
    ed = make_editor(small_dataset)
    original = ed.dataset().records[2]
    before = original.peek()["output"]
    assert ed.proxy.setData(_cell(ed, 2, "output"), "A better answer.", Qt.ItemDataRole.EditRole)
    assert ed.dataset().records[2].peek()["output"] == "A better answer."
    assert ed.is_dirty() and ed.title().endswith("*")
    ed.act_undo.trigger()
    assert ed.dataset().records[2] is original  # the very object the engine loaded
    assert ed.dataset().records[2].peek()["output"] == before
    assert not ed.is_dirty()
    ed.act_redo.trigger()
    assert ed.dataset().records[2].peek()["output"] == "A better answer."


def test_cell_edit_keeps_non_text_types(make_editor, tmp_path):
    path = tmp_path / "typed.jsonl"
    path.write_text('{"instruction": "a", "input": "", "output": "b", "score": 3}\n', encoding="utf-8")
    ed = make_editor(path)
    ed.proxy.setData(_cell(ed, 0, "score"), "4", Qt.ItemDataRole.EditRole)
    assert ed.dataset().records[0].peek()["score"] == 4


def test_form_typing_is_one_undo_step(make_editor, small_dataset, qtbot):
    ed = make_editor(small_dataset)
    ed.select_record(5)
    box = ed.form.field_edit("output")
    old = box.toPlainText()
    with qtbot.waitSignal(ed.sig_title_changed, check_params_cb=lambda t: t.endswith("*"), timeout=3000):
        box.moveCursor(box.textCursor().MoveOperation.End)
        qtbot.keyClicks(box, " Extra")
        ed.form.flush()
    qtbot.keyClicks(box, " words")
    ed.form.flush()
    assert ed.dataset().records[5].peek()["output"] == old + " Extra words"
    assert ed.undo_stack.count() == 1  # both commits merged: one typing burst
    ed.act_undo.trigger()
    assert ed.dataset().records[5].peek()["output"] == old
    assert box.toPlainText() == old  # the form follows the undo


@pytest.mark.parametrize("pause", [True, False], ids=["commit-between", "one-burst"])
def test_typing_in_two_turns_is_two_undo_steps(make_editor, messages_file, qtbot, pause):
    """Edits of two turns in quick succession are two undo steps: Undo takes back the second
    turn's typing only, then the first's (typing in one box stays one step)."""
    ed = make_editor(messages_file)
    ed.select_record(0)

    def contents() -> list[str]:
        return [m["content"] for m in ed.dataset().records[0].peek()["messages"]]

    before = contents()
    for i, text in ((1, " there"), (2, " How can I help?")):
        box = ed.form.turns[i].content
        box.moveCursor(box.textCursor().MoveOperation.End)
        qtbot.keyClicks(box, text[:3])
        if pause:
            ed.form.flush()  # the pause after typing commits it
        qtbot.keyClicks(box, text[3:])
        if pause:
            ed.form.flush()
    ed.form.flush()
    assert contents() == [before[0], "Hi there", "Hello! How can I help?"]
    assert ed.undo_stack.count() == 2
    ed.act_undo.trigger()
    assert contents() == [before[0], "Hi there", "Hello!"]
    assert ed.form.turns[2].content.toPlainText() == "Hello!"  # the form follows
    assert ed.form.turns[1].content.toPlainText() == "Hi there"
    assert ed.save()
    saved = json.loads(messages_file.read_text(encoding="utf-8").splitlines()[0])
    assert [m["content"] for m in saved["messages"]] == [before[0], "Hi there", "Hello!"]
    ed.act_undo.trigger()
    assert contents() == before and not ed.undo_stack.canUndo()


def test_typing_in_two_fields_is_two_undo_steps(make_editor, small_dataset, qtbot):
    ed = make_editor(small_dataset)
    ed.select_record(3)
    old = dict(ed.dataset().records[3].peek())
    for key in ("instruction", "output"):
        box = ed.form.field_edit(key)
        box.moveCursor(box.textCursor().MoveOperation.End)
        qtbot.keyClicks(box, " X")  # no pause: both boxes typed in before the form commits
    ed.form.flush()
    assert ed.undo_stack.count() == 2
    ed.act_undo.trigger()
    data = ed.dataset().records[3].peek()
    assert (data["instruction"], data["output"]) == (old["instruction"] + " X", old["output"])
    ed.act_undo.trigger()
    assert ed.dataset().records[3].peek() == old


def test_form_commits_after_a_pause(make_editor, small_dataset, qtbot):
    ed = make_editor(small_dataset)
    ed.select_record(0)
    box = ed.form.field_edit("instruction")
    box.setPlainText("Rewrite: typed in the form")
    qtbot.waitUntil(lambda: ed.dataset().records[0].peek()["instruction"] == "Rewrite: typed in the form",
                    timeout=3000)


def test_add_duplicate_delete_move(make_editor, small_dataset):
    ed = make_editor(small_dataset)
    recs = ed.dataset().records
    n = len(recs)
    first, second = recs[0], recs[1]

    ed.select_record(0)
    ed.act_add.trigger()
    assert len(recs) == n + 1 and ed.current_record_index() == 1
    assert recs[1].peek() == {"instruction": "", "input": "", "output": ""}

    ed._select_indices([0, 2])
    assert ed.selected_record_indices() == [0, 2]
    ed.act_duplicate.trigger()
    assert len(recs) == n + 3
    assert recs[3].peek() == first.peek() and recs[3] is not first
    assert recs[4].peek() == second.peek()

    ed._select_indices([3, 4])
    ed.act_delete.trigger()
    assert len(recs) == n + 1

    ed.select_record(2)  # `second`
    ed.act_up.trigger()
    assert recs[1] is second and ed.current_record_index() == 1
    ed.act_down.trigger()
    ed.act_down.trigger()
    assert recs[3] is second

    while ed.undo_stack.canUndo():
        ed.act_undo.trigger()
    assert len(recs) == n and recs[0] is first and recs[1] is second
    assert not ed.is_dirty()


def test_move_multi_selection_keeps_order(make_editor, small_dataset):
    ed = make_editor(small_dataset)
    recs = ed.dataset().records
    a, b, c = recs[2], recs[3], recs[5]
    ed._select_indices([2, 3, 5])
    ed.move_records(-1)
    assert (recs[1], recs[2], recs[4]) == (a, b, c)
    assert ed.selected_record_indices() == [1, 2, 4]
    ed.act_undo.trigger()
    assert (recs[2], recs[3], recs[5]) == (a, b, c)


def test_undo_restores_after_structural_edits_in_between(make_editor, small_dataset):
    ed = make_editor(small_dataset)
    ed.proxy.setData(_cell(ed, 10, "output"), "edited", Qt.ItemDataRole.EditRole)
    ed.select_record(0)
    ed.act_add.trigger()  # shifts the edited record to index 11
    ed.act_undo.trigger()
    ed.act_undo.trigger()
    assert "edited" not in [d.get("output") for d in records_data(ed)]


def test_structural_edit_drops_the_view_sort(make_editor, small_dataset):
    ed = make_editor(small_dataset)
    ed.table.sortByColumn(ed.model.column_of("output"), Qt.SortOrder.AscendingOrder)
    assert ed.model.is_sorted()
    ed.select_record(3)
    ed.act_add.trigger()
    assert not ed.model.is_sorted()
    assert ed.table.horizontalHeader().sortIndicatorSection() in (-1, ed.model.columnCount())
    assert ed.current_record_index() == 4


def test_keyboard_navigation(make_editor, small_dataset):
    ed = make_editor(small_dataset)
    ed.select_record(0)
    ed.act_next.trigger()
    ed.act_next.trigger()
    assert ed.current_record_index() == 2
    ed.act_prev.trigger()
    assert ed.current_record_index() == 1
    # The shortcuts an annotator uses without the mouse.
    keys = {a.text(): [k.toString() for k in a.shortcuts()] for a in ed.actions()}
    assert "Alt+Down" in keys["Next record"] and "Ctrl+J" in keys["Next record"]
    # A standard key brings every key the platform binds to it (a keyboard's own Save key too).
    assert keys["Next finding"] == ["F8"] and "Ctrl+S" in keys["Save"] and "Ctrl+F" in keys["Find"]
    assert "Ctrl+Z" in keys["Undo"]


def test_next_finding_goes_to_records_with_findings(make_editor, broken_file):
    ed = make_editor(broken_file)
    ed.select_record(0)
    assert ed.goto_finding()
    assert ed.dataset().records[ed.current_record_index()].broken


def test_a_big_file_sorts_in_slices_and_a_stale_sort_is_dropped(make_editor, demo_copy, monkeypatch, qtbot):
    from gui.dataset import filter_proxy

    monkeypatch.setattr(filter_proxy, "ASYNC_SORT_MIN", 1)  # the demo file counts as big
    monkeypatch.setattr(filter_proxy, "SLICE_S", 0.0005)  # many slices even on 366 records
    ed = make_editor(demo_copy)
    col = ed.model.column_of("output")
    ticks = []
    ed.proxy._sort_timer.timeout.connect(lambda: ticks.append(1))
    with qtbot.waitSignal(ed.proxy.sig_sorted, timeout=20_000):
        ed.table.sortByColumn(col, Qt.SortOrder.AscendingOrder)
        assert ed.proxy.sorting() and not ed.model.is_sorted()  # returns at once; keys come in slices
    assert len(ticks) > 1 and not ed.proxy.sorting()
    shown = [ed.model.data(ed.model.index(r, col), Qt.ItemDataRole.EditRole).casefold()[:64]
             for r in range(ed.model.rowCount())]
    assert shown == sorted(shown)

    # Records added while the keys are computed: the job is stale and the view is not reordered.
    ed.table.sortByColumn(col, Qt.SortOrder.DescendingOrder)
    assert ed.proxy.sorting()
    ed.select_record(0)
    ed.act_add.trigger()
    qtbot.waitUntil(lambda: not ed.proxy.sorting(), timeout=20_000)
    assert not ed.model.is_sorted()


def test_leaving_a_cell_editor_without_typing_changes_nothing(make_editor, tmp_path):
    """A null or missing field opens as an empty editor: closing it unchanged is no edit."""
    path = tmp_path / "nulls.jsonl"
    path.write_text('{"instruction": "a", "input": null, "output": "b"}\n{"instruction": "c", "output": "d"}\n',
                    encoding="utf-8")
    ed = make_editor(path)
    for row in (0, 1):
        assert not ed.proxy.setData(_cell(ed, row, "input"), "", Qt.ItemDataRole.EditRole)
    assert not ed.is_dirty() and ed.undo_stack.count() == 0
    assert [r.peek() for r in ed.dataset().records] == [{"instruction": "a", "input": None, "output": "b"},
                                                       {"instruction": "c", "output": "d"}]
    assert ed.proxy.setData(_cell(ed, 1, "input"), "typed", Qt.ItemDataRole.EditRole)
    assert ed.dataset().records[1].peek()["input"] == "typed"
