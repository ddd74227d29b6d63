"""What a screen reader (Orca, NVDA: they read Qt's QAccessible) says in the Dataset area: symbol
buttons and boxes by name, and a finding's severity in words where the editor shows a mark and a colour."""

from __future__ import annotations

import json

from PySide6.QtCore import Qt
from PySide6.QtGui import QAccessible

from tests.gui.keyboard_audit import spoken_name


def _mixed(tmp_path):
    path = tmp_path / "mixed.jsonl"
    records = [{"instruction": "Classify this review", "input": "Great mug", "output": ""},
               {"instruction": "Name a colour", "input": "", "output": "Blue"},
               {"instruction": "Name a colour", "input": "", "output": "Blue"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_the_boxes_and_the_symbol_buttons_have_names(make_editor, small_dataset, messages_file):
    """The form's boxes, the filter, the find bar and the records table had no name; ✕ ↑ ↓ read as
    "multiplication x", "upwards arrow"; "Aa" as "A a"."""
    ed = make_editor(small_dataset)
    ed.show()
    ed.find_bar.show()
    assert [spoken_name(w) for w in (ed.table, ed.filter_edit, ed.find_bar.find, ed.find_bar.replace,
                                     ed.find_bar.case, ed.find_bar.close_button)] == [
        "Records", "Filter records", "Find", "Replace with", "Match case", "Close the find bar"]
    assert [spoken_name(ed.form.field_edit(k)) for k in ("instruction", "input", "output")] == [
        "instruction", "input", "output"]
    chat = make_editor(messages_file)
    chat.show()
    chat.select_record(0)
    form = chat.form
    assert spoken_name(form.chat_system) == "system prompt"
    assert spoken_name(form.remove_system_button) == "Remove the system prompt"
    turn = form.turns[-1]
    assert spoken_name(turn.content) == "assistant turn"
    names = sorted(spoken_name(b) for b in turn.findChildren(type(form.remove_system_button)))
    assert names == ["Move turn down", "Move turn up", "Remove turn"]
    turn.role.setCurrentText("user")
    assert spoken_name(turn.content) == "user turn"


def test_a_findings_severity_is_said_in_words_not_by_its_mark_and_colour(make_editor, tmp_path):
    """The status column's "✖ 1", the Checks tab's marks and colours (a warning under an error's rule
    differs by its colour alone) and the form's findings read as symbols, or not at all."""
    ed = make_editor(_mixed(tmp_path))
    ed.show()
    table = QAccessible.queryAccessibleInterface(ed.table)
    cells = [table.child(i) for i in range(table.childCount())]
    said = {(c.tableCellInterface().rowIndex()): c.text(QAccessible.Text.Name) for c in cells
            if c.role() == QAccessible.Role.Cell and c.tableCellInterface().columnIndex() == 0}  # the status column
    said = [said[row] for row in range(3)]
    assert said == ["1 finding, an error", "no findings", "1 finding, a warning"]
    ed.select_record(0)
    assert QAccessible.queryAccessibleInterface(ed.form.findings).text(QAccessible.Text.Name) == \
        "Error: empty-field: 'output' is empty"
    items = ed.lint_panel.rule_items()
    assert items["empty-field"].data(0, Qt.ItemDataRole.AccessibleTextRole) == \
        "empty-field: 1 finding, the worst an error"
    assert items["empty-field"].child(0).data(0, Qt.ItemDataRole.AccessibleTextRole) == "Error: 'output' is empty"
