"""Where the keyboard is as an annotator opens a file, filters, finds and undoes: keys pressed as a
user presses them, in a shown, active editor."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

CTRL = Qt.KeyboardModifier.ControlModifier


def test_an_opened_file_has_the_keyboard_on_its_records(shown_editor, small_dataset, messages_file, qtbot):
    """The first key after opening acts on the records: the focus was in the filter box (first in
    the tab order), so Down did nothing and Enter did nothing."""
    ed = shown_editor(small_dataset)
    assert QApplication.focusWidget() is ed.table
    qtbot.keyClick(ed.table, Qt.Key.Key_Down)
    assert ed.current_record_index() == 1
    ed.filter_edit.setFocus()
    with qtbot.waitSignal(ed.sig_lint_finished, timeout=20000):
        ed.open_file(messages_file)  # another file, opened while the keyboard was elsewhere
    assert QApplication.focusWidget() is ed.table and ed.current_record_index() == 0


def test_enter_or_down_in_the_filter_goes_to_the_first_record_it_shows(shown_editor, small_dataset, qtbot):
    ed = shown_editor(small_dataset)
    word = "Netherlands"  # in a few of the 64 records
    ed.select_record(40)
    ed.filter_edit.setFocus()
    qtbot.keyClicks(ed.filter_edit, word)
    qtbot.keyClick(ed.filter_edit, Qt.Key.Key_Return)  # at once, not after the typing pause
    assert ed.proxy.is_filtering() and ed.visible_count() < 64
    assert QApplication.focusWidget() is ed.table
    first = ed.model.record_index(ed.proxy.mapToSource(ed.proxy.index(0, 0)).row())
    assert ed.current_record_index() == first
    assert word in str(ed.dataset().records[first].peek())
    ed.filter_edit.setFocus()
    ed.select_record(first)
    qtbot.keyClick(ed.filter_edit, Qt.Key.Key_Down)
    assert QApplication.focusWidget() is ed.table and ed.current_record_index() == first


def test_escape_in_the_filter_clears_it_then_goes_back_to_the_table(shown_editor, small_dataset, qtbot):
    ed = shown_editor(small_dataset)
    ed.select_record(5)
    ed.filter_edit.setFocus()
    qtbot.keyClicks(ed.filter_edit, "zzz-no-such-text")
    qtbot.keyClick(ed.filter_edit, Qt.Key.Key_Escape)
    assert ed.filter_edit.text() == "" and ed.visible_count() == 64  # applied now, no pause
    assert QApplication.focusWidget() is ed.filter_edit
    qtbot.keyClick(ed.filter_edit, Qt.Key.Key_Escape)
    assert QApplication.focusWidget() is ed.table and ed.current_record_index() == 5


def test_escape_in_the_find_bar_goes_back_where_the_keyboard_was(shown_editor, small_dataset, qtbot):
    """It went to the filter box, the next widget in the tab order."""
    ed = shown_editor(small_dataset)
    ed.select_record(3)
    ed.table.setFocus()
    qtbot.keyClick(ed.table, Qt.Key.Key_F, CTRL)
    assert QApplication.focusWidget() is ed.find_bar.find
    qtbot.keyClick(ed.find_bar.find, Qt.Key.Key_Escape)
    assert ed.find_bar.isHidden() and QApplication.focusWidget() is ed.table

    box = ed.form.field_edit("output")
    box.setFocus()
    qtbot.keyClick(box, Qt.Key.Key_F, CTRL)
    qtbot.keyClicks(ed.find_bar.find, "the")
    qtbot.keyClick(ed.find_bar.find, Qt.Key.Key_Return)
    qtbot.keyClick(ed.find_bar.find, Qt.Key.Key_Escape)
    assert QApplication.focusWidget() is box


def test_undoing_a_replace_all_says_so_in_the_find_bar(shown_editor, small_dataset, qtbot):
    """The bar went on saying "Replaced N in M records" after Ctrl+Z had put them all back."""
    ed = shown_editor(small_dataset)
    ed.table.setFocus()
    qtbot.keyClick(ed.table, Qt.Key.Key_H, CTRL)
    ed.find_bar.find.setText("the")
    ed.find_bar.replace.setText("THE")
    n = ed.replace_all()
    assert n > 0 and ed.find_bar.status.text().startswith("Replaced")
    ed.table.setFocus()
    qtbot.keyClick(ed.table, Qt.Key.Key_Z, CTRL)
    assert not any("THE" in r.peek()["output"] for r in ed.dataset().records)
    assert not ed.find_bar.status.text().startswith("Replaced")
    assert "undone" in ed.find_bar.status.text().lower()
    qtbot.keyClick(ed.table, Qt.Key.Key_Y, CTRL)
    assert ed.find_bar.status.text().startswith("Replaced")


def _finding_item(panel, rule: str):
    top = next(panel.tree.topLevelItem(i) for i in range(panel.tree.topLevelItemCount())
               if panel.tree.topLevelItem(i).text(0).split()[1] == rule)
    return top.child(0)


def test_enter_on_a_finding_edits_the_field_it_names_and_the_fix_clears_it(shown_editor, small_dataset, qtbot):
    """A click on a finding shows its record and keeps the list up; Enter (or a double-click) brings
    up the Record tab with the cursor in the field the finding names: the Checks tab stayed up, the
    keyboard left in the list. Once fixed, the finding leaves the list by itself."""
    import json

    lines = small_dataset.read_text(encoding="utf-8").splitlines()
    row = json.loads(lines[6])
    row["output"] = ""
    lines[6] = json.dumps(row, ensure_ascii=False)
    small_dataset.write_text("\n".join(lines) + "\n", encoding="utf-8")
    ed = shown_editor(small_dataset)
    ed.tabs.setCurrentWidget(ed.lint_panel)
    tree = ed.lint_panel.tree
    item = _finding_item(ed.lint_panel, "empty-field")
    tree.scrollToItem(item)
    qtbot.mouseClick(tree.viewport(), Qt.MouseButton.LeftButton, pos=tree.visualItemRect(item).center())
    assert ed.current_record_index() == 6 and ed.tabs.currentWidget() is ed.lint_panel

    ed.select_record(30)
    tree.setFocus()
    tree.setCurrentItem(item)
    qtbot.keyClick(tree, Qt.Key.Key_Return)
    assert ed.current_record_index() == 6
    assert ed.tabs.currentWidget() is ed.form
    assert QApplication.focusWidget() is ed.form.field_edit("output")
    with qtbot.waitSignal(ed.sig_lint_finished, timeout=20000):
        qtbot.keyClicks(QApplication.focusWidget(), "Fixed.")
        qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_Escape)
    assert ed.dataset().records[6].peek()["output"] == "Fixed."
    assert not any(f.rule == "empty-field" for f in ed.lint_report().findings)
    assert not any(tree.topLevelItem(i).text(0).split()[1] == "empty-field" for i in range(tree.topLevelItemCount()))
