"""Find and replace, and filtering by text, regex, field and lint finding."""

from __future__ import annotations

import re

from gui.dataset.filter_proxy import ANY_FINDING, BROKEN


def records_data(ed) -> list[dict]:
    return [dict(r.peek()) for r in ed.dataset().records]


def _count(ed, pred) -> int:
    return sum(1 for d in records_data(ed) if pred(d))


def test_filter_by_text_field_and_regex(make_editor, demo_copy):
    ed = make_editor(demo_copy)
    total = len(ed.dataset().records)
    target = next(i for i, d in enumerate(records_data(ed)) if "capital" in d["output"].lower() and i > 20)
    ed.select_record(target)
    ed.set_filter("capital")
    assert ed.current_record_index() == target  # still shown, so still current
    expect = _count(ed, lambda d: any("capital" in v.lower() for v in d.values() if isinstance(v, str)))
    assert 0 < ed.visible_count() == expect < total
    ed.set_filter("capital", field="output")
    assert ed.visible_count() == _count(ed, lambda d: "capital" in d["output"].lower())
    ed.set_filter(r"^\{", regex=True, field="output")
    assert ed.visible_count() == _count(ed, lambda d: d["output"].startswith("{"))
    assert "of" in ed.count_label.text()
    ed.clear_filter()
    assert ed.visible_count() == total


def test_bad_regex_keeps_the_filter_and_says_why(make_editor, small_dataset):
    ed = make_editor(small_dataset)
    ed.set_filter("the")
    shown = ed.visible_count()
    ed.set_filter("(unclosed", regex=True)
    assert ed.visible_count() == shown
    assert "regular expression" in ed.filter_edit.toolTip()
    total = len(ed.dataset().records)
    assert ed.count_label.text() == f"bad regex · {shown:,} of {total:,}"  # beside the count, not only in a tooltip
    assert ed.count_label.toolTip().startswith("Not a valid regular expression: missing ), unterminated subpattern")
    ed._update_count()  # as after any change to the records: still said
    assert ed.count_label.text().startswith("bad regex")
    ed.set_filter("(closed)", regex=True)
    assert "bad regex" not in ed.count_label.text() and ed.filter_edit.toolTip() == ""


def test_filter_by_lint_finding(make_editor, demo_copy, broken_file):
    ed = make_editor(demo_copy)
    report = ed.lint_report()
    dup_rows = {f.index for f in report.findings if f.rule == "near-duplicate"}
    assert dup_rows, "the demo data has near-duplicates for this test"
    ed.set_filter(rule="near-duplicate")
    assert ed.visible_count() == len(dup_rows)
    shown = {ed.model.record_index(ed.proxy.mapToSource(ed.proxy.index(r, 0)).row())
             for r in range(ed.visible_count())}
    assert shown == dup_rows
    ed.set_filter(rule=ANY_FINDING)
    assert ed.visible_count() >= len(dup_rows)

    ed2 = make_editor(broken_file)
    ed2.set_filter(rule=BROKEN)
    assert ed2.visible_count() == 1


def test_record_being_edited_stays_visible_until_you_move_on(make_editor, small_dataset, qtbot):
    ed = make_editor(small_dataset)
    ed.set_filter("capital", field="output")
    n = ed.visible_count()
    ed.goto_record(0)
    idx = ed.current_record_index()
    box = ed.form.field_edit("output")
    box.setPlainText("no longer matching")
    ed.form.flush()
    assert ed.current_record_index() == idx  # pinned: still shown and current
    assert ed.visible_count() == n
    ed.goto_record(1)
    qtbot.waitUntil(lambda: ed.visible_count() == n - 1, timeout=2000)


def test_find_next_and_previous(make_editor, small_dataset):
    ed = make_editor(small_dataset)
    ed.act_find.trigger()
    ed.find_bar.find.setText("capital")
    hits = [i for i, d in enumerate(records_data(ed))
            for _ in re.finditer("capital", " ".join(v for v in d.values() if isinstance(v, str)), re.I)]
    assert hits
    ed.select_record(0)
    seen = []
    for _ in range(len(hits)):
        assert ed.find_next()
        seen.append(ed.current_record_index())
    assert seen == hits
    assert ed.find_next()  # wraps around
    assert ed.current_record_index() == hits[0]
    ed.find_next(backward=True)
    assert ed.current_record_index() == hits[-1]
    box = ed.form.field_edit(ed._last_match[1][0])
    assert box.textCursor().selectedText().lower() == "capital"


def test_replace_one_and_replace_all_are_undoable(make_editor, small_dataset):
    ed = make_editor(small_dataset)
    before = records_data(ed)
    ed.act_replace.trigger()
    fb = ed.find_bar
    fb.find.setText("capital")
    fb.replace.setText("CAPITAL")
    ed.select_record(0)
    ed.find_next()
    first = ed.current_record_index()
    ed.replace_current()
    assert "CAPITAL" in " ".join(v for v in records_data(ed)[first].values() if isinstance(v, str))
    ed.act_undo.trigger()
    assert records_data(ed) == before

    fb.case.setChecked(True)
    n = ed.replace_all()
    assert n > 0
    after = records_data(ed)
    assert sum(" ".join(str(v) for v in d.values()).count("CAPITAL") for d in after) >= n
    assert ed.undo_stack.count() == 1
    ed.act_undo.trigger()
    assert records_data(ed) == before


def test_replace_all_with_regex_groups_in_one_field(make_editor, small_dataset):
    ed = make_editor(small_dataset)
    fb = ed.find_bar
    fb.find.setText(r"The capital of (\w+)")
    fb.regex.setChecked(True)
    fb.replace.setText(r"\1's capital")
    fb.field.setCurrentIndex(fb.field.findData("output"))
    before = [d["output"] for d in records_data(ed)]
    instructions = [d["instruction"] for d in records_data(ed)]
    n = ed.replace_all()
    expect = sum(len(re.findall(r"The capital of (\w+)", o, re.I)) for o in before)
    assert n == expect > 0
    assert any("'s capital" in d["output"] for d in records_data(ed))
    assert [d["instruction"] for d in records_data(ed)] == instructions  # other fields untouched


def test_replace_steps_through_matches_in_one_record(make_editor, tmp_path):
    path = tmp_path / "rep.jsonl"
    path.write_text('{"instruction": "cat cat", "input": "", "output": "a cat"}\n'
                    '{"instruction": "dog", "input": "", "output": "no"}\n', encoding="utf-8")
    ed = make_editor(path)
    fb = ed.find_bar
    fb.find.setText("cat")
    fb.replace.setText("big cat")
    ed.select_record(0)
    ed.find_next()
    for _ in range(3):
        ed.replace_current()
    assert ed.dataset().records[0].peek() == {"instruction": "big cat big cat", "input": "",
                                              "output": "a big cat"}
    assert ed.undo_stack.count() == 3


def test_a_big_file_is_filtered_on_a_thread_and_only_the_last_filter_applies(make_editor, demo_copy, monkeypatch,
                                                                               qtbot):
    from gui.dataset import editor as editor_module

    monkeypatch.setattr(editor_module, "ASYNC_FILTER_MIN", 1)  # the demo file counts as big
    ed = make_editor(demo_copy)
    total = len(ed.dataset().records)
    started = []
    real_start = ed._start_filter_scan
    monkeypatch.setattr(ed, "_start_filter_scan", lambda q, r: (started.append(q.text), real_start(q, r)))
    ed.set_filter("zzz-no-such-text")
    ed.set_filter("capital")  # typed on before the first scan came back
    assert started and started[-1] == "capital"
    assert ed.count_label.text().startswith("filtering")
    expect = _count(ed, lambda d: any("capital" in v.lower() for v in d.values() if isinstance(v, str)))
    qtbot.waitUntil(lambda: not ed.count_label.text().startswith("filtering"), timeout=20_000)
    qtbot.wait(200)  # a stale scan arriving late must not replace the newest filter
    assert 0 < ed.visible_count() == expect < total
    # A record edited after the scan is a new object: it is matched on its new text.
    first_other = next(i for i, d in enumerate(records_data(ed)) if "capital" not in str(d).lower())
    col = ed.model.column_of("output")
    assert ed.model.setData(ed.model.index(ed.model.row_of_index(first_other), col), "The capital is Paris.")
    qtbot.waitUntil(lambda: ed.visible_count() == expect + 1, timeout=5000)
    ed.clear_filter()
    assert ed.visible_count() == total


def test_a_replacement_regex_can_not_use_says_why_and_replaces_nothing(make_editor, small_dataset):
    ed = make_editor(small_dataset)
    fb = ed.find_bar
    fb.find.setText(r"The capital of (\w+)")
    fb.regex.setChecked(True)
    before = records_data(ed)
    for bad, why in ((r"\2 is it", "invalid group reference 2"), (r"C:\path", "bad escape \\p")):
        fb.replace.setText(bad)
        assert ed.replace_all() == 0
        assert why in fb.status.text() and "nothing replaced" in fb.status.text()
        assert "c62828" in fb.replace.styleSheet()
        ed.find_next()
        assert not ed.replace_current()
        assert records_data(ed) == before and ed.undo_stack.count() == 0
    fb.replace.setText(r"\1")
    assert ed.replace_all() > 0 and fb.replace.styleSheet() == ""


def test_replace_all_on_a_few_thousand_records_shows_the_wait_cursor(make_editor, tmp_path, monkeypatch):
    """Replacing a common word in 2,000 records takes ~0.1 s, in 20,000 ~1.8 s
    (docs/dataset-bench.md); the wait cursor came only above 20,000 records, so it showed nothing."""
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QApplication

    import gui.dataset.editor as editor_module
    from engine.paths import demo_dataset_path

    lines = demo_dataset_path().read_text(encoding="utf-8").splitlines()
    path = tmp_path / "mid.jsonl"
    copies = -(-editor_module.BUSY_MIN // len(lines))
    path.write_text("\n".join(lines * copies) + "\n", encoding="utf-8")
    ed = make_editor(path)
    assert editor_module.BUSY_MIN <= len(ed.dataset().records) < 5_000
    cursors = []
    real = editor_module.replace_in_record

    def watched(*args):
        cursor = QApplication.overrideCursor()
        cursors.append(cursor.shape() if cursor is not None else None)
        return real(*args)

    monkeypatch.setattr(editor_module, "replace_in_record", watched)
    ed.find_bar.find.setText("the")
    ed.find_bar.replace.setText("THE")
    assert ed.replace_all() > 0
    assert cursors and set(cursors) == {Qt.CursorShape.WaitCursor}
    assert QApplication.overrideCursor() is None  # and it is restored
