"""The lint panel: findings by rule, clicking one selects its record, charts; lint off the GUI thread."""

from __future__ import annotations

from gui.dataset.lint_panel import FindingRole, balance_note_text


def test_findings_grouped_by_rule_and_clickable(make_editor, demo_copy, qtbot):
    ed = make_editor(demo_copy)
    report = ed.lint_report()
    groups = ed.lint_panel.rule_items()
    assert set(groups) == set(report.by_rule())
    top = groups["near-duplicate"]
    assert top.childCount() == len(report.by_rule()["near-duplicate"])
    child = top.child(1)
    finding = child.data(0, FindingRole)
    ed.select_record(0)
    ed.lint_panel.tree.itemClicked.emit(child, 0)
    assert ed.current_record_index() == finding.index
    assert ed.model.data(ed.model.index(finding.index, 0)).startswith("⚠")


def test_click_follows_the_record_after_inserts(make_editor, demo_copy):
    ed = make_editor(demo_copy)
    finding = ed.lint_report().by_rule()["near-duplicate"][0]
    target = ed.dataset().records[finding.index]
    ed.select_record(0)
    ed.act_add.trigger()  # everything below shifts by one
    ed.lint_runner.stop()  # keep the old report: the click must still find the record
    ed._on_finding_activated(finding)
    assert ed.dataset().records[ed.current_record_index()] is target


def test_charts_show_balance_and_lengths(make_editor, demo_copy, qtbot):
    ed = make_editor(demo_copy)
    panel = ed.lint_panel
    stats = ed.lint_report().stats
    shares = stats["task_types"]["shares"]
    ticks = [name for _, name in panel.balance_plot.getAxis("left")._tickLevels[0]]
    assert sorted(ticks) == sorted(shares)
    assert panel.seq_line.value() == 512
    with qtbot.waitSignal(ed.sig_lint_finished, timeout=20000):
        panel.seq_len.setValue(64)
    report = ed.lint_report()
    assert report.stats["length"]["seq_len"] == 64 and report.stats["length"]["truncated"] > 0
    assert panel.seq_line.value() == 64
    assert "over seq_len" in panel.length_note.text()
    ed.set_filter(rule="truncated")
    assert ed.visible_count() == report.stats["length"]["truncated"]


def test_a_wrapped_chart_note_is_not_drawn_over_its_chart(make_editor, demo_copy, qtbot):
    """The length note wraps to two lines in a narrow panel: it must sit below the chart, not
    over its "tokens" axis title."""
    ed = make_editor(demo_copy)
    ed.resize(1360, 800)
    ed.show()
    panel = ed.lint_panel
    tabs = panel.parentWidget().parentWidget()
    tabs.setCurrentWidget(panel)
    qtbot.waitExposed(panel)
    for k, (plot, note) in enumerate(((panel.balance_plot, panel.balance_note),
                                      (panel.length_plot, panel.length_note))):
        panel.charts.setCurrentIndex(k)  # the two charts share a tabbed area
        qtbot.waitUntil(lambda note=note: note.isVisible() and note.width() > 1)
        assert note.height() >= note.heightForWidth(note.width())
        assert note.geometry().top() >= plot.geometry().bottom(), (note.geometry(), plot.geometry())
    note = panel.length_note
    assert note.heightForWidth(note.width()) > note.fontMetrics().lineSpacing()  # it does wrap here


def test_edits_trigger_a_fresh_check(make_editor, small_dataset, qtbot):
    ed = make_editor(small_dataset)
    with qtbot.waitSignal(ed.sig_lint_finished, timeout=20000) as sig:
        ed.select_record(0)
        ed.form.field_edit("output").setPlainText("")
        ed.form.flush()
    empty = [f for f in sig.args[0].findings if f.index == 0 and f.rule in ("empty-field", "missing-field")]
    assert empty
    # An empty field is an error: marked ✖ (and drawn red) as in the Checks tab, not ⚠ like a warning.
    assert any(f.severity == "error" for f in empty)
    assert ed.model.data(ed.model.index(0, 0)).startswith("✖")


def test_big_files_are_checked_in_a_child_process(make_editor, small_dataset, qtbot):
    ed = make_editor(small_dataset)
    in_thread = ed.lint_report()
    ed.lint_runner.in_process_max = 10  # treat this file as big
    ed.proxy.setData(ed.proxy.index(0, ed.model.column_of("output")), "")
    with qtbot.waitSignal(ed.lint_runner.sig_started, timeout=5000) as started:
        ed.run_lint()
    assert started.args == [True]
    with qtbot.waitSignal(ed.sig_lint_finished, timeout=60000) as sig:
        pass
    child = sig.args[0]
    rules = {(f.index, f.rule) for f in child.findings}
    assert (0, "empty-field") in rules or (0, "missing-field") in rules
    assert child.counts["records"] == in_thread.counts["records"]
    assert {f.rule for f in in_thread.findings} <= {f.rule for f in child.findings}


def test_the_task_type_note_says_where_the_types_come_from(make_editor, demo_copy):
    """The demo's records carry a ``task`` tag: the note said "Types tag field.", which read as a typo."""
    ed = make_editor(demo_copy)
    note = ed.lint_panel.balance_note.text()
    assert note.startswith("Task types come from each record's tag field (task, category, type or task_type).")
    assert "Languages: en " in note
    assert balance_note_text("inferred from the instruction (keyword table)") == \
        "Task types are inferred from the instruction (keyword table)."
    assert balance_note_text("", "en 100%") == "Languages: en 100%."


def test_a_run_audits_flagged_records_show_as_findings(make_editor, demo_copy, qtbot, studio_home):
    """The newest `runs audit` of the open file flags its records in the editor; an edited record
    drops its flag (its score was for the old text), undo brings it back, the box hides them."""
    from PySide6.QtCore import Qt

    from engine.audit import HARD_RULE
    from engine.paths import runs_dir
    from tests.engine.test_audit import _flagged_audit

    ed = make_editor(demo_copy)
    assert not ed.refresh_audit() and not ed.lint_panel.audit_row.isVisibleTo(ed.lint_panel)  # none yet
    run = runs_dir() / "20261202-100000-lora"
    run.mkdir(parents=True)
    _flagged_audit(demo_copy, run, {5: 6.0, 40: 5.0}).save()
    other = runs_dir() / "20261202-110000-lora"  # another file's audit: not this one's
    other.mkdir()
    elsewhere = demo_copy.with_name("else.jsonl")
    elsewhere.write_bytes(demo_copy.read_bytes())
    _flagged_audit(elsewhere, other, {7: 9.0}).save()

    ed.on_shown()  # the Dataset area is shown again after an audit in the Runs area
    assert ed.lint_panel.audit_row.isVisibleTo(ed.lint_panel)
    assert "Audit of run '20261202-100000-lora'" in ed.lint_panel.audit_note.text()
    assert "2 records the model still finds hard" in ed.lint_panel.audit_note.text()
    hard = ed.lint_report().by_rule()[HARD_RULE]
    assert [f.index for f in hard] == [4, 39] and ed.lint_report().counts["by_rule"][HARD_RULE] == 2
    assert ed.model.data(ed.model.index(4, 0)).startswith("⚠")
    ed.set_filter(rule=HARD_RULE)
    assert ed.visible_count() == 2
    ed.clear_filter()
    ed.lint_panel.tree.itemClicked.emit(ed.lint_panel.rule_items()[HARD_RULE].child(1), 0)
    assert ed.current_record_index() == 39
    assert not ed.refresh_audit()  # the same audit: nothing re-read into the findings

    # Editing record 5 drops its flag; undo brings the record, and the flag, back.
    with qtbot.waitSignal(ed.sig_lint_finished, timeout=20000):
        ed.proxy.setData(ed.proxy.index(4, ed.model.column_of("output")), "A corrected answer.",
                         Qt.ItemDataRole.EditRole)
    assert [f.index for f in ed.lint_report().by_rule()[HARD_RULE]] == [39]
    with qtbot.waitSignal(ed.sig_lint_finished, timeout=20000):
        ed.act_undo.trigger()
    assert [f.index for f in ed.lint_report().by_rule()[HARD_RULE]] == [4, 39]

    ed.lint_panel.audit_box.setChecked(False)
    assert HARD_RULE not in ed.lint_report().by_rule()
    ed.lint_panel.audit_box.setChecked(True)
    assert len(ed.lint_report().by_rule()[HARD_RULE]) == 2

    # Saved and opened again, the edited record stays unflagged: the audit scored the old answer.
    ed.proxy.setData(ed.proxy.index(4, ed.model.column_of("output")), "A corrected answer.", Qt.ItemDataRole.EditRole)
    assert ed.save()
    with qtbot.waitSignal(ed.sig_lint_finished, timeout=20000):
        ed.open_file(demo_copy)
    assert [f.index for f in ed.lint_report().by_rule()[HARD_RULE]] == [39]
    assert "1 more was edited or deleted since" in ed.lint_panel.audit_note.text()


def test_big_files_are_checked_again_after_a_pause_in_the_edits(make_editor, small_dataset, qtbot):
    """Above in_process_max an edit left the findings as they were until Ctrl+Shift+L: a fixed
    finding stayed in the Checks tab. The child-process check now runs after a longer pause."""
    import gui.dataset.editor as editor_module

    ed = make_editor(small_dataset)
    ed.lint_runner.in_process_max = 10  # treat this file as big
    ed.proxy.setData(ed.proxy.index(0, ed.model.column_of("output")), "")
    assert ed._relint_timer.isActive() and ed._relint_timer.interval() == editor_module.RELINT_BIG_MS
    ed._relint_timer.setInterval(50)  # not 10 s in a test
    with qtbot.waitSignal(ed.lint_runner.sig_started, timeout=5000) as started:
        pass
    assert started.args == [True]  # in the child process
    with qtbot.waitSignal(ed.sig_lint_finished, timeout=60000) as sig:
        pass
    assert (0, "empty-field") in {(f.index, f.rule) for f in sig.args[0].findings}
    assert ed.lint_report() is sig.args[0]  # shown in the Checks tab


def test_at_13_pt_the_task_type_names_have_a_line_each_and_the_notes_follow_the_font(
        make_editor, demo_copy, qtbot, app_font_pt):
    """At 13 pt on a 1280x720 screen the six task-type names were drawn over each other in the
    chart's 130 px, and the 11-px notes under the charts stayed smaller than the 9-pt default."""
    app_font_pt(13)
    ed = make_editor(demo_copy)
    ed.resize(1280 - 150, 640)
    ed.show()
    panel = ed.lint_panel
    ed.tabs.setCurrentWidget(panel)
    qtbot.waitExposed(panel)
    qtbot.waitUntil(lambda: len(panel.balance_labels) >= 2)
    qtbot.wait(50)  # the layout takes the new minimum
    view = panel.balance_plot.getViewBox()
    (_, _), (y0, y1) = view.viewRange()
    row_px = view.height() / (y1 - y0)
    assert row_px >= panel.balance_plot.fontMetrics().height(), (row_px, len(panel.balance_labels))
    assert panel.balance_note.fontInfo().pointSizeF() > 9
    assert panel.balance_plot.getPlotItem().titleLabel.opts["size"] == "13pt"


def test_at_16_pt_the_summary_wraps_rather_than_being_cut(qtbot, app_font_pt):
    """In a 1280-px window at 16 pt the Checks pane is ~680 px: beside seq_len and Re-check,
    "0 errors · 8 warnings · 1 info" was cut to "… · 1 inf" under the seq_len label."""
    from PySide6.QtGui import QFont, QFontMetrics, QTextDocumentFragment

    from gui.dataset.lint_panel import LintPanel

    app_font_pt(16)
    panel = LintPanel()
    qtbot.addWidget(panel)
    panel.summary.setText("<b>0 errors · 8 warnings · 1 info</b>")
    # Its one-line summary made the panel 695 px at least: the window squeezed it below that, and
    # the label was drawn under the seq_len label.
    assert panel.minimumSizeHint().width() <= 680
    panel.resize(680, 600)
    panel.show()
    qtbot.waitExposed(panel)
    label = panel.summary
    bold = QFont(label.font())
    bold.setBold(True)
    shown = QTextDocumentFragment.fromHtml(label.text()).toPlainText()
    one_line = QFontMetrics(bold).horizontalAdvance(shown) <= label.contentsRect().width()
    assert one_line or (label.wordWrap() and label.heightForWidth(label.width()) <= label.height()), shown
