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
    for plot, note in ((panel.balance_plot, panel.balance_note), (panel.length_plot, panel.length_note)):
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
