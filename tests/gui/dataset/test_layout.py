"""The Dataset area at the main window's smallest size: nothing drawn over anything else."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QPoint, QRect

from gui.main_window import MainWindow


def _rect_in(widget, ancestor) -> QRect:
    return QRect(widget.mapTo(ancestor, QPoint(0, 0)), widget.size())


@pytest.mark.parametrize("size", [(960, 640), (1366, 768)])
def test_the_filter_row_the_checks_and_the_preview_fit_the_smallest_window(qtbot, demo_copy, size):
    win = MainWindow(load_demo=False, restore_geometry=False)
    qtbot.addWidget(win)
    win.resize(*size)
    win.show_area("dataset")
    win.show()
    qtbot.waitExposed(win)
    ed = win.areas["dataset"]
    with qtbot.waitSignal(ed.sig_lint_finished, timeout=30000):
        ed.open_file(demo_copy)
    ed.tabs.setCurrentWidget(ed.lint_panel)
    qtbot.wait(100)
    # The filter's widgets (was: the Regex box drawn over the filter text, the combos cut).
    widgets = [ed.filter_edit, ed.filter_regex, ed.count_label, ed.filter_field, ed.filter_rule]
    rects = [_rect_in(w, ed) for w in widgets]
    for i, r in enumerate(rects):
        assert widgets[i].width() >= widgets[i].minimumSizeHint().width(), widgets[i]
        assert not any(r.intersects(o) for o in rects[:i]), widgets[i]
    # The findings list keeps room for several rows beside the charts (was three rows).
    assert ed.lint_panel.tree.height() >= 150
    assert ed.lint_panel.balance_plot.height() >= 120
    # The preview's source line is one line wide, not a word per line beside the buttons.
    ed.tabs.setCurrentWidget(ed.preview)
    qtbot.wait(50)
    src = ed.preview.source
    assert src.width() >= ed.preview.width() - 30


def test_the_text_columns_fill_a_wider_table_and_a_dragged_one_keeps_its_width(make_editor, demo_copy, qtbot):
    """A maximised window left a blank band right of the columns (fixed widths), and the record
    form took as much width as the table; now the table keeps 60% until the user drags the
    splitter, and the instruction, input and output columns share its width. A column the user
    drags keeps its width; the others go on filling."""
    ed = make_editor(demo_copy, wait_lint=False)
    ed.show()
    qtbot.waitExposed(ed)
    hh = ed.table.horizontalHeader()
    keys = [c.key for c in ed.model.columns()]

    def widths() -> dict[str, int]:
        return {k: hh.sectionSize(i) for i, k in enumerate(keys)}

    def filled() -> int:
        return ed.table.viewport().width() - sum(widths().values())

    small = widths()
    ed.resize(2400, 900)
    qtbot.waitUntil(lambda: widths()["instruction"] > small["instruction"])
    table, form = ed.splitter.sizes()
    assert abs(table / (table + form) - 0.6) < 0.02
    wide = widths()
    assert 0 <= filled() < len(keys)  # no blank band, no horizontal scroll
    assert wide["output"] > small["output"] and wide["input"] > small["input"]
    assert (wide["task"], wide["#status"]) == (small["task"], small["#status"])  # short columns stay
    assert ed.table.horizontalScrollBar().maximum() == 0

    hh.resizeSection(keys.index("input"), 200)  # the user's drag
    assert widths()["input"] == 200 and 0 <= filled() < len(keys)  # the others take up the rest
    assert widths()["output"] > wide["output"]
    ed.resize(1600, 800)
    qtbot.waitUntil(lambda: widths()["output"] < wide["output"])
    assert widths()["input"] == 200 and widths()["instruction"] >= small["instruction"]  # never below its base
    ed.splitter.moveSplitter(500, 1)  # the user's split stands from then on
    qtbot.wait(50)
    split = ed.splitter.sizes()
    ed.resize(1700, 800)
    qtbot.wait(50)
    assert ed.splitter.sizes()[0] <= split[0] + 100

    other = demo_copy.with_name("other.jsonl")
    other.write_bytes(demo_copy.read_bytes())
    ed.resize(1200, 760)
    ed.open_file(other)  # another file: every column fitted again
    qtbot.waitUntil(lambda: widths()["input"] != 200)
