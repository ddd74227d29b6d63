"""The record form: broken records as raw text, conversations as turns, JSON mode."""

from __future__ import annotations

import json

import pytest
from PySide6.QtCore import Qt

from engine.data import load_dataset_file


def test_broken_record_is_shown_as_raw_text_and_fixed_in_place(make_editor, broken_file, qtbot):
    ed = make_editor(broken_file)
    assert ed.banner.isVisibleTo(ed) and "line 3" in ed.banner.label.text()
    assert ed.model.data(ed.model.index(2, 0)) == "✖"
    ed.select_record(2)
    form = ed.form
    assert form.pages.currentIndex() == 3  # raw page
    assert "Not valid JSON at file line 3, column" in form.raw_error.text() and "Expecting" in form.raw_error.text()
    assert form.raw.toPlainText().startswith('{"instruction": "Count to three"')

    form.raw.setPlainText(form.raw.toPlainText() + " oops")  # still broken: stays raw
    form.flush()
    rec = ed.dataset().records[2]
    assert rec.broken and rec.raw.endswith(" oops")
    assert form.pages.currentIndex() == 3
    form.raw.setPlainText('{"instruction": "Count to three",\n "output": }')  # retyped over two lines
    form.flush()
    # The error's line is now the text box's, and the form says so.
    assert "at line 2, column 12 of the text below (the record from file line 3)" in form.raw_error.text()

    form.raw.setPlainText('{"instruction": "Count to three", "input": "",\n "output": "1, 2, 3"}')
    form.flush()
    rec = ed.dataset().records[2]
    assert not rec.broken and rec.peek()["output"] == "1, 2, 3"
    assert form.pages.currentIndex() == 1  # the structured form now
    assert ed.save()
    lines = broken_file.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 4 and json.loads(lines[2])["output"] == "1, 2, 3"  # one line again
    ed.act_undo.trigger()
    ed.act_undo.trigger()
    assert ed.dataset().records[2].broken


def test_broken_record_kept_on_save(make_editor, broken_file):
    raw_line = broken_file.read_text(encoding="utf-8").splitlines()[2]
    ed = make_editor(broken_file)
    ed.proxy.setData(ed.proxy.index(0, ed.model.column_of("output")), "Hello!")
    assert ed.save()
    assert broken_file.read_text(encoding="utf-8").splitlines()[2] == raw_line


def test_conversation_turns_edit(make_editor, messages_file, qtbot):
    ed = make_editor(messages_file)
    ed.select_record(0)
    form = ed.form
    assert form.pages.currentIndex() == 2
    assert [t.role.currentText() for t in form.turns] == ["system", "user", "assistant"]
    form.turns[2].content.setPlainText("Hello there!")
    form.flush()
    msgs = ed.dataset().records[0].peek()["messages"]
    assert msgs[2] == {"role": "assistant", "content": "Hello there!"}
    form._on_add_turn()
    assert form.turns[-1].role.currentText() == "user"
    form.turns[-1].content.setPlainText("And you?")
    form.flush()
    assert ed.dataset().records[0].peek()["messages"][-1] == {"role": "user", "content": "And you?"}
    assert ed.dataset().records[0].peek()["id"] == 1  # extra fields kept
    form._on_remove_turn(form.turns[0])
    assert [m["role"] for m in ed.dataset().records[0].peek()["messages"]] == ["user", "assistant", "user"]
    assert ed.save()
    again = load_dataset_file(messages_file)
    assert again.records[0].peek()["messages"][0]["content"] == "Hi"


def test_extra_fields_and_json_mode(make_editor, small_dataset):
    ed = make_editor(small_dataset)
    ed.select_record(0)
    form = ed.form
    form._extra_edits["task"].setText("qa-checked")
    form.flush()
    assert ed.dataset().records[0].peek()["task"] == "qa-checked"
    form.json_button.setChecked(True)
    assert form.pages.currentIndex() == 3
    data = json.loads(form.raw.toPlainText())
    data["reviewer"] = "ann"
    form.raw.setPlainText(json.dumps(data))
    form.flush()
    assert ed.dataset().records[0].peek()["reviewer"] == "ann"
    form.raw.setPlainText("{ not json")
    form.flush()
    assert not ed.dataset().records[0].broken  # typing JSON that doesn't parse yet leaves the record as it was
    assert "Not valid JSON yet" in form.raw_error.text()
    form.raw.setPlainText(json.dumps(data))
    form.json_button.setChecked(False)
    assert form.pages.currentIndex() == 1


def test_undo_shortcut_is_not_eaten_by_the_text_box(make_editor, small_dataset):
    from PySide6.QtCore import QEvent, Qt
    from PySide6.QtGui import QKeyEvent

    ed = make_editor(small_dataset)
    ed.select_record(0)
    box = ed.form.field_edit("output")
    ev = QKeyEvent(QEvent.Type.ShortcutOverride, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    box.event(ev)
    assert not ev.isAccepted()
    ev = QKeyEvent(QEvent.Type.ShortcutOverride, Qt.Key.Key_C, Qt.KeyboardModifier.ControlModifier)
    box.event(ev)
    assert ev.isAccepted()  # copy still belongs to the box


def test_sharegpt_turns_keep_their_tags(make_editor, tmp_path):
    path = tmp_path / "sg.json"
    path.write_text(json.dumps([{"conversations": [{"from": "human", "value": "Hi"},
                                                   {"from": "gpt", "value": "Hello"}], "system": "Be kind."}]),
                    encoding="utf-8")
    ed = make_editor(path)
    form = ed.form
    assert ed.dataset().format == "sharegpt"
    assert form.chat_system.isVisibleTo(form) and form.chat_system.toPlainText() == "Be kind."
    assert [t.role.currentText() for t in form.turns] == ["human", "gpt"]
    form._on_add_turn()
    form.turns[-1].content.setPlainText("More?")
    form.flush()
    assert ed.dataset().records[0].peek()["conversations"][-1] == {"from": "human", "value": "More?"}
    assert ed.save()
    assert json.loads(path.read_text(encoding="utf-8"))[0]["conversations"][-1]["value"] == "More?"


def test_a_broken_csv_row_is_called_a_csv_row_and_fixed_as_json(make_editor, tmp_path):
    """A CSV row with an unclosed quote is not "not valid JSON"; the form says how to fix it."""
    path = tmp_path / "bad.csv"
    path.write_text('instruction,output\n"a,b\nc,d\n', encoding="utf-8")
    ed = make_editor(path)
    text = ed.banner.label.text()
    assert "1 record in bad.csv is not a valid CSV row" in text and "JSON" not in text
    assert ed.count_label.text() == "1 record"
    ed.select_record(0)
    assert "Not a valid CSV row at file line 2, column" in ed.form.raw_error.text()
    assert ed.form.raw_error.text().count("line 2") == 1  # said once
    assert "JSON object" in ed.form.raw_error.text()
    ed.form.raw.setPlainText('{"instruction": "a,b", "output": "c,d"}')
    ed.form.flush()
    assert not ed.dataset().records[0].broken
    assert ed.save()
    assert path.read_text(encoding="utf-8").splitlines()[1] == '"a,b","c,d"'


def test_unreadable_files_show_a_message(make_editor, tmp_path, small_dataset):
    ed = make_editor(small_dataset)
    ed.open_file(tmp_path / "missing.jsonl")
    assert "Can't open missing.jsonl" in ed.banner.label.text() and "no such file" in ed.banner.label.text()
    assert ed.path() == small_dataset  # the open file stays
    wrong = tmp_path / "wrong.json"
    wrong.write_text('"just a string"', encoding="utf-8")
    ed.open_file(wrong)
    assert "Can't open wrong.json" in ed.banner.label.text()
    assert "A JSON dataset is a list of records" in ed.banner.label.text()  # the hint: what a dataset file holds
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    ed.open_file(empty)
    assert ed.path() == empty and ed.visible_count() == 0
    assert "empty" in ed.banner.label.text()
    assert ed.form.record() is None


def test_broken_record_can_be_fixed_in_its_cell(make_editor, broken_file):
    ed = make_editor(broken_file)
    cell = ed.proxy.index(2, 1)
    assert "Count to three" in cell.data()
    ed.proxy.setData(cell, '{"instruction": "Count to three", "input": "", "output": "1, 2, 3"}')
    assert ed.dataset().records[2].peek()["output"] == "1, 2, 3"
    assert ed.model.data(ed.model.index(2, 0)) != "✖"


def test_untouched_fields_keep_their_type(make_editor, tmp_path):
    path = tmp_path / "typed.jsonl"
    path.write_text(json.dumps({"instruction": "a", "input": "", "output": ["x", "y"], "score": 3}) + "\n",
                    encoding="utf-8")
    ed = make_editor(path)
    ed.select_record(0)
    assert ed.form.field_edit("output").toPlainText() == '["x", "y"]'
    ed.form.field_edit("instruction").setPlainText("b")
    ed.form.flush()
    assert ed.dataset().records[0].peek() == {"instruction": "b", "input": "", "output": ["x", "y"], "score": 3}


def test_findings_above_the_record_read_as_their_severity(make_editor, tmp_path):
    """An error ('output' is empty) is marked ✖ in red as in the Checks tab, not ⚠ like a warning."""
    path = tmp_path / "mixed.jsonl"
    records = [{"instruction": "Classify this review", "input": "Great mug", "output": ""},
               {"instruction": "Name a colour", "input": "", "output": "Blue"},
               {"instruction": "Name a colour", "input": "", "output": "Blue"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    ed = make_editor(path)
    ed.select_record(0)
    text = ed.form.findings.text()
    assert ed.form.findings.isVisibleTo(ed.form)
    assert "✖ empty-field: &#x27;output&#x27; is empty" in text and "color:#be1e1e" in text
    assert "⚠" not in text
    ed.select_record(2)
    text = ed.form.findings.text()
    assert "⚠ duplicate: duplicates record 2" in text and "color:#8a5a00" in text and "✖" not in text


def test_editing_one_turn_keeps_the_others_as_they_were(make_editor, tmp_path):
    """Content parts, a tool call's null content and a turn that isn't an object are kept, value
    and type, when another turn of the conversation is edited."""
    rows = [
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "What is 2+2?"}]},
                      {"role": "assistant", "content": None, "tool_calls": [
                          {"id": "c1", "type": "function", "function": {"name": "calc", "arguments": "{}"}}]},
                      {"role": "tool", "tool_call_id": "c1", "content": "4"},
                      {"role": "assistant", "content": "It is 4."}]},
        {"messages": [{"role": "user", "content": "Hi"}, "stray string turn", {"role": "assistant", "content": "Hello"}]},
    ]
    path = tmp_path / "tools.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    ed = make_editor(path)
    form = ed.form
    for i in range(2):
        ed.select_record(i)
        assert len(form.turns) == len(rows[i]["messages"])  # every turn is shown, the odd one too
        form.turns[-1].content.setPlainText(form.turns[-1].content.toPlainText() + " (edited)")
        form.flush()
    assert form.turns[1].content.toPlainText() == json.dumps("stray string turn")
    assert not form.turns[1].role.isEnabled()
    ed.select_record(0)
    assert form.turns[0].content.isReadOnly() and "Edit as JSON" in form.turns[0].content.toolTip()
    # The tool call is shown as the text it trains as, not as an empty turn.
    call = form.turns[1].content
    assert call.isReadOnly() and call.toPlainText() == '{"name": "calc", "arguments": {}}'
    assert ed.save()
    saved = [r.peek()["messages"] for r in load_dataset_file(path).records]
    assert saved[0][:3] == rows[0]["messages"][:3]
    assert saved[0][3] == {"role": "assistant", "content": "It is 4. (edited)"}
    assert saved[1] == [{"role": "user", "content": "Hi"}, "stray string turn",
                        {"role": "assistant", "content": "Hello (edited)"}]


def test_editing_the_other_fields_of_a_conversation_keeps_its_system_prompt(make_editor, tmp_path):
    path = tmp_path / "chat.jsonl"
    row = {"system": "Be brief.", "messages": [{"role": "user", "content": "Hi"},
                                               {"role": "assistant", "content": "Hello"}], "meta": {"src": "a"}}
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    ed = make_editor(path)
    ed.select_record(0)
    ed.form._extra_json.setPlainText(json.dumps({"meta": {"src": "b"}}))
    ed.form.flush()
    assert ed.dataset().records[0].peek() == {**row, "meta": {"src": "b"}}


def test_json_typed_too_deep_to_parse_is_kept_as_text_with_its_place(make_editor, small_dataset, qtbot):
    """Brackets nested deeper than Python's parser recurses: a RecursionError, which used to escape
    the form (a traceback, the typing lost); now JSON that doesn't parse, placed at the bracket."""
    ed = make_editor(small_dataset)
    form = ed.form
    ed.select_record(0)
    form.json_button.setChecked(True)
    typed = '{"instruction": "a", "x": ' + "[" * 5000 + "]" * 5000 + "}"
    form.raw.setPlainText(typed)
    form.flush()
    ed.select_record(1)
    rec = ed.dataset().records[0]
    assert rec.broken and rec.raw == typed
    assert rec.error == ("line 1, column 126: nested more than 100 levels deep (brackets inside brackets), "
                         "too deep to read")


def test_json_that_does_not_parse_is_kept_as_text_when_the_record_is_left(make_editor, small_dataset, qtbot):
    """While typing, the record keeps its last valid version; leaving it (another record, undo,
    closing) keeps the typed text as a broken record, which undo turns back."""
    ed = make_editor(small_dataset)
    form = ed.form
    before = ed.dataset().records[0].peek()
    ed.select_record(0)
    form.json_button.setChecked(True)
    typed = form.raw.toPlainText().replace('",', '"', 1)  # a comma left out
    form.raw.setPlainText(typed)
    form.flush()
    assert not ed.dataset().records[0].broken
    with qtbot.waitSignal(ed.sig_status) as said:
        ed.select_record(1)
    rec = ed.dataset().records[0]
    assert rec.broken and rec.raw == typed and "Expecting ','" in rec.error
    assert "Record 1 is kept as text: its JSON doesn't parse" in said.args[0]
    assert ed.undo_stack.undoText() == "Keep record as text (its JSON doesn't parse)"
    ed.select_record(0)
    assert form.pages.currentIndex() == 3 and form.raw.toPlainText() == typed
    ed._on_undo()
    assert ed.dataset().records[0].peek() == before
    # The "other fields (JSON)" box: its text goes into the kept record's text, with the other fields.
    path = small_dataset.with_name("scored.jsonl")
    path.write_text(json.dumps({"instruction": "Add", "input": "", "output": "4", "score": 1}) + "\n"
                    + json.dumps({"instruction": "Sub", "input": "", "output": "0", "score": 2}) + "\n")
    ed = make_editor(path)
    ed.select_record(0)
    ed.form._extra_json.setPlainText('{"score": 3, "tags": ["a"],}')
    ed.form.flush()
    assert not ed.dataset().records[0].broken
    ed.select_record(1)
    rec = ed.dataset().records[0]
    assert rec.broken and rec.raw == ('{\n  "instruction": "Add",\n  "input": "",\n  "output": "4",\n  "score": 3, '
                                      '"tags": ["a"],\n}')


ODD = "Prix\u00a0: 10\u00a0€\r\nligne 2\u2028fin"  # no-break spaces, CRLF, a line separator


def _cell_editor(ed, field: str):
    """Open the table's cell editor on record 1's ``field``, as a double-click does: (delegate, box, cell)."""
    from PySide6.QtWidgets import QStyleOptionViewItem

    cell = ed.proxy.index(0, ed.model.column_of(field))
    delegate = ed.table.itemDelegate()
    box = delegate.createEditor(ed.table.viewport(), QStyleOptionViewItem(), cell)
    delegate.setEditorData(box, cell)
    return delegate, box, cell


def test_a_cell_editor_closed_untouched_changes_nothing(make_editor, tmp_path):
    path = tmp_path / "odd.jsonl"
    path.write_text(json.dumps({"instruction": "a", "output": ODD}) + "\n", encoding="utf-8")
    ed = make_editor(path)
    delegate, box, cell = _cell_editor(ed, "output")
    delegate.setModelData(box, ed.proxy, cell)
    assert not ed.is_dirty() and ed.dataset().records[0].peek()["output"] == ODD
    box.insertPlainText("!")  # typed at the end
    delegate.setModelData(box, ed.proxy, cell)
    assert ed.dataset().records[0].peek()["output"] == ODD + "!"


def test_typing_in_a_field_keeps_its_no_break_spaces_and_line_endings(make_editor, tmp_path):
    path = tmp_path / "odd.jsonl"
    path.write_text(json.dumps({"instruction": ODD, "output": "x"}) + "\n", encoding="utf-8")
    ed = make_editor(path)
    ed.select_record(0)
    box = ed.form.field_edit("instruction")
    box.moveCursor(box.textCursor().MoveOperation.End)
    box.insertPlainText(" ok\nnext")
    ed.form.flush()
    # The typed line break takes the field's own CRLF.
    assert ed.dataset().records[0].peek()["instruction"] == ODD + " ok\r\nnext"
    ed.save()
    assert load_dataset_file(path).records[0].peek()["instruction"] == ODD + " ok\r\nnext"


# Each line keeps its own ending: CRLF (the commonest), LF, a lone CR, a literal paragraph separator.
MIXED = "one\r\ntwo\r\nthree words\nfour\rfive\u2029six"


def _replace_word(box, word: str, typed: str) -> None:
    """Select ``word`` in ``box`` and type over it, as an annotator would."""
    cursor = box.document().find(word)
    assert cursor.hasSelection()
    box.setTextCursor(cursor)
    box.insertPlainText(typed)


def _saved_lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_bytes().decode("utf-8").splitlines()]


def test_editing_one_word_keeps_every_other_line_ending_in_the_form(make_editor, tmp_path):
    path = tmp_path / "mixed.jsonl"
    untouched = json.dumps({"instruction": "b", "output": MIXED})
    path.write_text(json.dumps({"instruction": "a", "output": MIXED}) + "\n" + untouched + "\n", encoding="utf-8")
    ed = make_editor(path)
    ed.select_record(0)
    box = ed.form.field_edit("output")
    _replace_word(box, "words", "WORDS")
    box.moveCursor(box.textCursor().MoveOperation.End)
    box.insertPlainText("\nseven")  # a line typed at the end takes the field's commonest ending, CRLF
    ed.form.flush()
    assert ed.save()
    assert _saved_lines(path)[0]["output"] == MIXED.replace("words", "WORDS") + "\r\nseven"
    assert path.read_bytes().decode("utf-8").splitlines()[1] == untouched


def test_editing_one_word_keeps_every_other_line_ending_in_a_cell(make_editor, tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_text(json.dumps({"instruction": "a", "output": MIXED}) + "\n", encoding="utf-8")
    ed = make_editor(path)
    delegate, box, cell = _cell_editor(ed, "output")
    _replace_word(box, "four", "4")  # the line ended by a lone CR
    box.moveCursor(box.textCursor().MoveOperation.Start)
    box.insertPlainText("zero\n")  # a new first line
    delegate.setModelData(box, ed.proxy, cell)
    assert ed.save()
    assert _saved_lines(path)[0]["output"] == "zero\r\n" + MIXED.replace("four", "4")


def test_a_parquet_date_column_shows_as_text_and_saves_as_a_date(make_editor, tmp_path):
    import datetime

    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "dated.parquet"
    pq.write_table(pa.table({"instruction": ["a", "b"], "output": ["x", "y"],
                             "ts": [datetime.datetime(2024, 1, 1), datetime.datetime(2024, 1, 2, 9, 30)]}), path)
    ed = make_editor(path)
    ed.select_record(0)
    assert '"ts": "2024-01-01 00:00:00"' in ed.form._extra_json.toPlainText()
    assert ed.proxy.index(0, ed.model.column_of("ts")).data() == "2024-01-01 00:00:00"
    ed.form._extra_json.setPlainText('{"ts": "2024-03-04 05:06:07"}')  # edited as text
    ed.form.flush()
    ed.proxy.setData(ed.proxy.index(1, ed.model.column_of("ts")), "2024-01-02 09:31:00", Qt.ItemDataRole.EditRole)
    ed.form.field_edit("output").setPlainText("x2")
    ed.form.flush()
    assert ed.save()
    table = pq.read_table(path)
    assert table.schema.field("ts").type == pa.timestamp("us")
    assert table.column("ts").to_pylist() == [datetime.datetime(2024, 3, 4, 5, 6, 7), datetime.datetime(2024, 1, 2, 9, 31)]


def test_a_file_with_its_own_field_names_is_edited_through_them(make_editor, tmp_path):
    """prompt/response read as instruction/output: the form and the table edit prompt and response,
    never add an instruction or output key beside them."""
    path = tmp_path / "aliased.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"q{i}", "response": f"a{i}"}) + "\n" for i in range(3)),
                    encoding="utf-8")
    ed = make_editor(path)
    headers = [ed.model.headerData(c, Qt.Orientation.Horizontal) for c in range(ed.model.columnCount())]
    assert "instruction (prompt)" in headers and "output (response)" in headers and "prompt" not in headers
    ed.select_record(0)
    assert ed.form.field_edit("instruction").toPlainText() == "q0"
    assert ed.form._captions["output"].text() == "output  (the file's response)"
    ed.form.field_edit("output").setPlainText("typed")
    ed.form.flush()
    ed.proxy.setData(ed.proxy.index(1, ed.model.column_of("instruction")), "cell", Qt.ItemDataRole.EditRole)
    assert [r.peek() for r in ed.dataset().records[:2]] == [{"prompt": "q0", "response": "typed"},
                                                             {"prompt": "cell", "response": "a1"}]


def test_a_record_added_to_a_file_with_its_own_names_uses_them(make_editor, tmp_path):
    path = tmp_path / "aliased.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"q{i}", "response": f"a{i}"}) + "\n" for i in range(3)),
                    encoding="utf-8")
    ed = make_editor(path)
    ed.select_record(2)
    ed.act_add.trigger()
    ed.form.field_edit("instruction").setPlainText("new q")
    ed.form.field_edit("output").setPlainText("new a")
    ed.form.flush()
    assert ed.dataset().records[3].peek() == {"prompt": "new q", "response": "new a"}
    assert ed.save()
    again = load_dataset_file(path)
    assert again.mapping == {"prompt": "instruction", "response": "output"} and len(again.records) == 4


def test_editing_one_of_the_other_fields_keeps_the_rest_as_they_were(make_editor, tmp_path):
    import datetime

    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "typed.parquet"
    pq.write_table(pa.table({"instruction": ["a"], "output": ["x"], "n": pa.array([1], type=pa.int32()),
                             "blob": [b"\x00\x01"], "ts": [datetime.datetime(2024, 1, 2, 3, 4)]}), path)
    ed = make_editor(path)
    ed.select_record(0)
    box = ed.form._extra_json
    box.setPlainText(box.toPlainText().replace('"n": 1', '"n": 7'))
    ed.form.flush()
    assert ed.dataset().records[0].peek() == {"instruction": "a", "output": "x", "n": 7, "blob": b"\x00\x01",
                                              "ts": datetime.datetime(2024, 1, 2, 3, 4)}
    assert ed.save()
    assert pq.read_table(path).to_pylist()[0]["blob"] == b"\x00\x01"


def test_adding_moving_or_removing_a_turn_is_an_undo_step_of_its_own(make_editor, messages_file):
    ed = make_editor(messages_file)
    ed.select_record(0)
    form = ed.form

    def turns() -> list[tuple[str, str]]:
        return [(m["role"], m["content"]) for m in ed.dataset().records[0].peek()["messages"]]

    form.turns[2].content.setPlainText("Hello there!")
    form.flush()  # the pause after typing commits it
    typed = turns()
    form._on_remove_turn(form.turns[0])
    assert turns() == typed[1:]
    form._on_move_turn(form.turns[1], -1)
    assert turns() == [typed[2], typed[1]]
    form._on_add_turn()
    assert turns() == [typed[2], typed[1], ("assistant", "")]
    assert [ed.undo_stack.text(i) for i in range(ed.undo_stack.count())] == [
        "Edit turns", "Remove turn", "Move turn up", "Add turn"]
    ed.act_undo.trigger()
    assert turns() == [typed[2], typed[1]]
    ed.act_undo.trigger()
    assert turns() == typed[1:]
    ed.act_undo.trigger()  # the removed turn comes back, and the typing before it stays
    assert turns() == typed and typed[2] == ("assistant", "Hello there!")
    ed.act_undo.trigger()
    assert turns()[2] == ("assistant", "Hello!")


def test_the_broken_records_banner_follows_the_fixes(make_editor, tmp_path):
    path = tmp_path / "two-broken.jsonl"
    path.write_text('{"instruction": "a", "output": "A"}\n{"instruction": "b", "output": "B"\n'
                    '{"instruction": "c" "output": "C"}\n', encoding="utf-8")
    ed = make_editor(path)
    assert ed.banner.isVisibleTo(ed) and ed.banner.label.text().startswith("2 records in two-broken.jsonl")
    ed.select_record(1)
    ed.form.raw.setPlainText('{"instruction": "b", "output": "B"}')
    ed.form.flush()
    text = ed.banner.label.text()
    assert ed.banner.isVisibleTo(ed) and text.startswith("1 record in") and "first: line 3" in text
    ed.select_record(2)
    ed.act_delete.trigger()
    assert not ed.banner.isVisibleTo(ed)  # no record is broken now: nothing left to say
    assert ed.save() and not ed.banner.isVisibleTo(ed)
    ed.act_undo.trigger()  # the broken record is back
    assert ed.banner.isVisibleTo(ed) and "1 record in" in ed.banner.label.text()


def test_a_broken_json_array_element_is_named_where_it_is_after_a_save(make_editor, tmp_path):
    """A record added above a broken element of a .json array moves it down the file: after the
    save, the banner and the form name the line it is on in the saved file."""
    path = tmp_path / "array.json"
    path.write_text('[\n  {"instruction": "a", "output": "A"},\n  {"instruction": "b", "output": "B"},\n'
                    '  {"instruction": "c",\n   "output": "C" "x"},\n  {"instruction": "d", "output": "D"}\n]\n',
                    encoding="utf-8")
    ed = make_editor(path)
    assert "first: line 5, column 18: Expecting ',' delimiter" in ed.banner.label.text()
    ed.select_record(0)
    ed.act_add.trigger()  # an empty record after the first: written over several lines
    ed.form.field_edit("instruction").setPlainText("new")
    ed.form.flush()
    assert ed.save()
    saved = path.read_text(encoding="utf-8").splitlines()
    line = next(n for n, text in enumerate(saved, 1) if '"output": "C" "x"' in text)
    assert line > 5
    assert ed.banner.isVisibleTo(ed)
    assert f"first: line {line}, column 18: Expecting ',' delimiter" in ed.banner.label.text()
    ed.select_record(3)
    assert ed.form.record().broken
    assert ed.form.title.text().endswith(f"· line {line - 1} · broken")  # the element starts a line above
    # The element spans two lines: the error is on its second, named as the file's and the box's line,
    # and the cursor and the tint are on it (they were on line 1, at the file column as an offset).
    assert f"at file line {line}, column 18 (line 2 of the text below)" in ed.form.raw_error.text()
    cursor = ed.form.raw.textCursor()
    assert (cursor.blockNumber(), cursor.positionInBlock()) == (1, 17)
    reopened = make_editor(path)  # what opening the saved file says
    assert reopened.banner.label.text() == ed.banner.label.text()


def _tint(edit) -> tuple[int, str]:
    """Where the tinted character of a text box is, and what it is."""
    selections = edit.extraSelections()  # held: each cursor lives as long as its list
    assert len(selections) == 1
    return selections[0].cursor.selectionStart(), selections[0].cursor.selectedText()


@pytest.mark.parametrize("pad", ["  ", "    ", "\t"], ids=["indent-2", "indent-4", "tab"])
def test_a_broken_json_array_elements_error_is_tinted_on_its_character(make_editor, tmp_path, pad):
    """The message names the file's line and column; the cursor and the tint sit on the character
    itself in the box, which holds the element from its '{' (not the indent before it)."""
    text = (f'[\n{pad}{{"instruction": "a", "output": "A"}},\n{pad}{{"instruction": "b" "output": "B"}},\n'
            f'{pad}{{"instruction": "c",\n{pad} "output": "C" "x"}}\n]\n')
    path = tmp_path / "indented.json"
    path.write_text(text, encoding="utf-8")
    file_lines = text.split("\n")
    ed = make_editor(path)
    form = ed.form

    ed.select_record(1)  # the error is on the element's first line (file line 3)
    column = file_lines[2].index('"output"') + 1
    box = form.raw.toPlainText()
    at = box.index('"output"')
    assert at == column - 1 - len(pad)
    assert form.raw.textCursor().position() == at
    assert _tint(form.raw) == (at, '"')
    assert (f"Not valid JSON at file line 3, column {column} (column {at + 1} of the text below): "
            "Expecting ',' delimiter") in form.raw_error.text()

    ed.select_record(2)  # on the element's second line (file line 5): the box keeps the file's indent there
    column = file_lines[4].index('"x"') + 1
    box = form.raw.toPlainText()
    at = box.index('"x"')
    assert box.split("\n")[1].index('"x"') == column - 1
    cursor = form.raw.textCursor()
    assert (cursor.blockNumber(), cursor.positionInBlock()) == (1, column - 1)
    assert _tint(form.raw) == (at, '"')
    assert f"at file line 5, column {column} (line 2 of the text below)" in form.raw_error.text()


def test_a_broken_element_of_a_compact_json_array_is_tinted_where_it_is_after_a_save(make_editor, tmp_path):
    """An element that starts far along its line (one-line file) is tinted on its character, and
    again after a save that moves it along that line (the record before it deleted)."""
    path = tmp_path / "compact.json"
    text = ('[{"instruction": "a", "output": "A"}, {"instruction": "b" "output": "B"}, '
            '{"instruction": "c", "output": "C"}]\n')
    path.write_text(text, encoding="utf-8")
    ed = make_editor(path)
    form = ed.form
    ed.select_record(1)
    at = form.raw.toPlainText().index('"output"')
    assert at == 20 and text.index('"output": "B"') + 1 == 59
    assert _tint(form.raw) == (at, '"')
    assert "at file line 1, column 59 (column 21 of the text below)" in form.raw_error.text()
    ed.select_record(0)
    ed.act_delete.trigger()
    assert form.record().broken  # the broken element is the one shown now, still where it was in the file
    assert "at file line 1, column 59 (column 21 of the text below)" in form.raw_error.text()
    assert ed.save()
    # The save moved it along the line: the form says so without being reselected.
    assert form.record().broken
    assert _tint(form.raw) == (at, '"')
    assert "at file line 1, column 22 (column 21 of the text below)" in form.raw_error.text()
    ed.select_record(1)
    ed.select_record(0)
    assert _tint(form.raw) == (at, '"')
    assert "at file line 1, column 22 (column 21 of the text below)" in form.raw_error.text()


@pytest.mark.parametrize(("text", "at", "place"), [
    # A compact array: the original's error is at file column 59, its text's column 21.
    ('[{"instruction": "a", "output": "A"}, {"instruction": "b" "output": "B"}]\n', 1, "line 1, column 21"),
    # The element's second line: file line 4, its text's line 2.
    ('[\n  {"instruction": "a", "output": "A"},\n  {"instruction": "b",\n   "output": "B" "x"}\n]\n', 1,
     "line 2, column 18"),
], ids=["first-line", "second-line"])
def test_a_duplicated_broken_record_names_its_error_in_its_own_text(make_editor, tmp_path, qtbot, text, at, place):
    """A copy of a broken record is in no file line yet: the form, the Checks and the banner place
    its error in its text, never at the original's file line, and the cursor and tint are on it."""
    path = tmp_path / "array.json"
    path.write_text(text, encoding="utf-8")
    ed = make_editor(path)
    form = ed.form
    ed.select_record(at)
    original = form.raw_error.text()
    assert "at file line" in original
    ed.act_duplicate.trigger()
    copy = ed.dataset().records[at + 1]
    assert ed.current_record_index() == at + 1 and copy.broken and copy.line is None
    assert form.title.text() == f"Record {at + 2} of {at + 2} · new, not saved yet · broken"
    assert f"Not valid JSON at {place} of the text below: Expecting ',' delimiter" in form.raw_error.text()
    assert "file line" not in form.raw_error.text()
    box = form.raw.toPlainText()
    mark = box.index('"output"') if place.startswith("line 1") else box.index('"x"')
    assert _tint(form.raw) == (mark, '"') and form.raw.textCursor().position() == mark
    tip = Qt.ItemDataRole.ToolTipRole
    assert ed.model.data(ed.model.index(at + 1, 0), tip).startswith(f"Not valid JSON: {place} of its text: ")
    assert ed.model.data(ed.model.index(at + 1, 1), tip).startswith(f"{place} of its text: ")
    assert ed.model.headerData(at + 1, Qt.Orientation.Vertical, tip) == f"record {at + 2} (new)"

    with qtbot.waitSignal(ed.sig_lint_finished, timeout=20000):
        ed.run_lint()
    broken = {f.index: f for f in ed.lint_report().by_rule()["broken-record"]}
    assert broken[at + 1].line is None
    assert broken[at + 1].message == f"not a valid record: {place} of its text: Expecting ',' delimiter"
    assert broken[at].message.startswith("not a valid record: line ") and "of its text" not in broken[at].message

    # The original fixed, the copy is the first broken record: the banner names it, not a file line.
    ed.select_record(at)
    form.raw.setPlainText('{"instruction": "b", "output": "B"}')
    form.flush()
    banner = ed.banner.label.text()
    assert f"first: record {at + 2}, not saved yet: {place} of its text: Expecting ',' delimiter" in banner

    # Saved, the copy has a file line, and its error is named there (as reopening the file names it).
    assert ed.save()
    ed.select_record(at + 1)
    reopened = load_dataset_file(path).records[at + 1]
    assert copy.line == reopened.line and copy.error == reopened.error
    assert f"at file line {reopened.error.split(',')[0].split()[1]}" in form.raw_error.text()


def test_other_fields_json_that_does_not_parse_is_held_back_as_an_undo_step_of_its_own(make_editor, tmp_path):
    """The "other fields (JSON)" box's text that doesn't parse stays in the box with its error and
    the record keeps those fields as they were; typing in another box meanwhile is an undo step of
    its own; the box's text is one when it parses, or when the record is left (kept as text)."""
    path = tmp_path / "scored.jsonl"
    path.write_text(json.dumps({"instruction": "Add", "input": "", "output": "4", "score": 1}) + "\n"
                    + json.dumps({"instruction": "Sub", "input": "", "output": "0", "score": 2}) + "\n",
                    encoding="utf-8")
    ed = make_editor(path)
    form = ed.form

    def steps() -> list[str]:
        return [ed.undo_stack.text(i) for i in range(ed.undo_stack.count())]

    def first() -> dict:
        return ed.dataset().records[0].peek()

    ed.select_record(0)
    form._extra_json.setPlainText('{"score": 3,}')
    form.flush()
    assert steps() == [] and first()["score"] == 1
    assert form._extra_json_error.isVisibleTo(form) and "not valid JSON" in form._extra_json_error.text()
    form.field_edit("instruction").setPlainText("Add two")
    form.flush()
    assert steps() == ["Edit instruction"]
    assert (first()["instruction"], first()["score"]) == ("Add two", 1)
    assert form._extra_json.toPlainText() == '{"score": 3,}' and form._extra_json_error.isVisibleTo(form)
    form._extra_json.setPlainText('{"score": 3}')
    form.flush()
    assert steps() == ["Edit instruction", "Edit other fields"] and not form._extra_json_error.isVisibleTo(form)
    assert (first()["instruction"], first()["score"]) == ("Add two", 3)
    ed.act_undo.trigger()  # the score only
    assert (first()["instruction"], first()["score"]) == ("Add two", 1)
    ed.act_redo.trigger()
    assert ed.save()
    assert json.loads(path.read_text(encoding="utf-8").splitlines()[0]) == {
        "instruction": "Add two", "input": "", "output": "4", "score": 3}

    # Left with the text still not parsing (the typing in another box not yet committed either):
    # two steps, the typing and the text kept as the record's text.
    form._extra_json.setPlainText('{"score": 4,}')
    form.flush()
    form.field_edit("instruction").setPlainText("Add three")
    ed.select_record(1)
    assert steps()[2:] == ["Edit instruction", "Keep record as text (its JSON doesn't parse)"]
    kept = ed.dataset().records[0]
    assert kept.broken and '"instruction": "Add three"' in kept.raw and '"score": 4,' in kept.raw
    ed.act_undo.trigger()
    assert (first()["instruction"], first()["score"]) == ("Add three", 3)
    ed.act_undo.trigger()
    assert (first()["instruction"], first()["score"]) == ("Add two", 3)
    ed.act_redo.trigger()
    assert ed.save()
    assert json.loads(path.read_text(encoding="utf-8").splitlines()[0])["instruction"] == "Add three"


def test_a_turn_typed_while_the_other_fields_json_does_not_parse_is_its_own_undo_step(make_editor, tmp_path):
    path = tmp_path / "chat.jsonl"
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "Hi"},
                                             {"role": "assistant", "content": "Hello!"}],
                                "meta": {"src": "a"}}) + "\n", encoding="utf-8")
    ed = make_editor(path)
    form = ed.form
    ed.select_record(0)
    form._extra_json.setPlainText('{"meta": {"src": "b"}')  # a brace left out
    form.flush()
    form.turns[1].content.setPlainText("Hello there!")
    form.flush()
    record = ed.dataset().records[0].peek()
    assert [ed.undo_stack.text(i) for i in range(ed.undo_stack.count())] == ["Edit turns"]
    assert record["messages"][1]["content"] == "Hello there!" and record["meta"] == {"src": "a"}
    assert form._extra_json.toPlainText() == '{"meta": {"src": "b"}' and form._extra_json_error.isVisibleTo(form)
    form._extra_json.setPlainText('{"meta": {"src": "b"}}')
    form.flush()
    assert [ed.undo_stack.text(i) for i in range(ed.undo_stack.count())] == ["Edit turns", "Edit other fields"]
    assert ed.save()
    assert json.loads(path.read_text(encoding="utf-8")) == {
        "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello there!"}],
        "meta": {"src": "b"}}


def test_edit_as_json_keeps_the_records_findings_and_count(make_editor, tmp_path):
    """Toggling "Edit as JSON" dropped the record's findings and the "of N" of its title, on and off."""
    import json

    path = tmp_path / "chats.jsonl"
    row = {"system": "Be kind.", "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": ""}]}
    path.write_text(json.dumps(row) + "\n" + json.dumps(row) + "\n", encoding="utf-8")
    ed = make_editor(path)
    ed.select_record(1)
    form = ed.form
    title, findings = form.title.text(), form.findings.text()
    assert "of 2" in title and findings  # the empty answer, the duplicate
    form.json_button.setChecked(True)
    assert form.title.text() == title and form.findings.text() == findings and not form.findings.isHidden()
    form.json_button.setChecked(False)
    assert form.title.text() == title and form.findings.text() == findings and not form.findings.isHidden()


_HI = [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello!"}]
_HI_MESSAGES = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]


@pytest.mark.parametrize(("fmt", "first", "added"), [
    # ShareGPT holds it as the file does: a top-level key, or a first {"from": "system"} turn.
    ("sharegpt", {"conversations": _HI, "system": "Be kind.", "id": 0}, "key"),
    ("sharegpt", {"conversations": [{"from": "system", "value": "Be kind."}, *_HI], "id": 0}, "turn"),
    ("sharegpt", {"conversations": _HI, "id": 0}, "key"),  # none has one: LLaMA-Factory's key
    ("messages", {"messages": [{"role": "system", "content": "Be kind."}, *_HI_MESSAGES], "id": 0}, "turn"),
    ("messages", {"messages": _HI_MESSAGES, "id": 0}, "turn"),
    ("messages", {"messages": _HI_MESSAGES, "system": "Be kind.", "id": 0}, "key"),
], ids=["sharegpt-key", "sharegpt-turn", "sharegpt-none", "messages-turn", "messages-none", "messages-key"])
def test_a_conversation_without_a_system_prompt_gets_one_as_its_file_holds_them(make_editor, tmp_path, qtbot, fmt,
                                                                               first, added):
    """A conversation with no system prompt could only get one through "Edit as JSON"."""
    from PySide6.QtWidgets import QApplication

    key = "conversations" if fmt == "sharegpt" else "messages"
    bare = {key: _HI if fmt == "sharegpt" else _HI_MESSAGES, "id": 1}
    path = tmp_path / "chats.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in (first, bare)), encoding="utf-8")
    ed = make_editor(path)
    ed.show()
    ed.activateWindow()
    qtbot.waitUntil(ed.isActiveWindow)
    ed.select_record(1)
    form = ed.form
    assert form.add_system_button.isVisibleTo(form) and not form.chat_system.isVisibleTo(form)
    qtbot.mouseClick(form.add_system_button, Qt.MouseButton.LeftButton)
    data = ed.dataset().records[1].peek()
    tag, text = ("from", "value") if fmt == "sharegpt" else ("role", "content")
    if added == "key":  # after the conversation, before the other fields
        assert list(data.items()) == [(key, bare[key]), ("system", ""), ("id", 1)]
        box = form.chat_system
    else:
        assert data == {key: [{tag: "system", text: ""}, *bare[key]], "id": 1}
        box = form.turns[0].content
    assert QApplication.focusWidget() is box
    qtbot.waitUntil(lambda: box.isVisibleTo(form))  # a turn's widgets are shown by the event loop
    assert not form.add_system_button.isVisibleTo(form)
    assert ed.undo_stack.undoText() == "Add system prompt"
    qtbot.keyClicks(box, "Answer in French.")
    form.flush()
    data = ed.dataset().records[1].peek()
    said = data["system"] if added == "key" else data[key][0][text]
    assert said == "Answer in French."
    assert ed.model.data(ed.model.index(1, ed.model.column_of("@system"))) == "Answer in French."
    ed.undo_stack.undo()
    ed.undo_stack.undo()
    assert ed.dataset().records[1].peek() == bare
    assert form.add_system_button.isVisibleTo(form)


def test_the_system_prompt_is_removed_with_its_cross_or_its_key_and_the_checks_follow(make_editor, tmp_path, qtbot):
    """The same question with two answers is a conflict; a system prompt that sets the second
    answer apart ends it, and removing the prompt brings it back."""
    from PySide6.QtWidgets import QApplication

    path = tmp_path / "chats.jsonl"
    rows = [{"conversations": _HI}, {"conversations": [_HI[0], {"from": "gpt", "value": "Bonjour !"}]}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    ed = make_editor(path)
    ed.show()
    ed.activateWindow()
    qtbot.waitUntil(ed.isActiveWindow)
    rules = lambda: {f.rule for f in ed.model.findings_for(ed.dataset().records[1])}  # noqa: E731
    assert "conflicting-output" in rules()
    ed.select_record(1)
    form = ed.form
    with qtbot.waitSignal(ed.sig_lint_finished, timeout=20000):
        qtbot.mouseClick(form.add_system_button, Qt.MouseButton.LeftButton)
        qtbot.keyClicks(form.chat_system, "Answer in French.")
        form.flush()
    qtbot.waitUntil(lambda: "conflicting-output" not in rules(), timeout=20000)
    assert ed.dataset().records[1].peek()["system"] == "Answer in French."
    assert form.remove_system_button.toolTip() == "Remove the system prompt (Ctrl+Shift+Del)"

    with qtbot.waitSignal(ed.sig_lint_finished, timeout=20000):
        qtbot.mouseClick(form.remove_system_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "conflicting-output" in rules(), timeout=20000)
    assert ed.dataset().records[1].peek() == rows[1]
    assert ed.undo_stack.undoText() == "Remove system prompt"
    assert form.add_system_button.isVisibleTo(form) and not form.chat_system.isVisibleTo(form)
    assert not ed.model.data(ed.model.index(1, ed.model.column_of("@system")))
    ed.undo_stack.undo()
    assert ed.dataset().records[1].peek()["system"] == "Answer in French."
    assert form.chat_system.isVisibleTo(form) and form.chat_system.toPlainText() == "Answer in French."

    # From the keyboard: Ctrl+Shift+Delete in the box removes it; the keyboard stays where it was.
    form.chat_system.setFocus()
    qtbot.keyClick(form.chat_system, Qt.Key.Key_Delete, Qt.KeyboardModifier.ControlModifier
                   | Qt.KeyboardModifier.ShiftModifier)
    assert "system" not in ed.dataset().records[1].peek()
    assert QApplication.focusWidget() is form.add_system_button
    qtbot.keyClick(form.add_system_button, Qt.Key.Key_Space)
    assert ed.dataset().records[1].peek()["system"] == ""
    assert QApplication.focusWidget() is form.chat_system


@pytest.mark.parametrize("points", [13, 16])
def test_the_record_title_follows_a_raised_font(qtbot, app_font_pt, points):
    """"Record 1 of 366 · line 1" was 13 px: at a raised font, smaller than the fields under it."""
    from gui.dataset.form import RecordForm

    app_font_pt(points)
    form = RecordForm()
    qtbot.addWidget(form)
    assert form.title.fontInfo().pointSizeF() > points
