"""The Train area at the main window's smallest sizes: nothing cut, squeezed or off-screen."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QPoint, QRect

from engine.precision import Environment
from gui.main_window import MainWindow
from gui.train.advisor import Advice
from gui.train.area import TABS_MIN_HEIGHT

GiB = 2**30
FAILED = ("Run failed: the gradient norm became non-finite at step 5 (loss=13.8232, grad_norm=nan); it happened "
          "again after 2 rollbacks. Its batch held the records at lines 304, 356, 220, 210, 66, 55, 1, 40 of the "
          "dataset file")


def _rect_in(widget, ancestor) -> QRect:
    return QRect(widget.mapTo(ancestor, QPoint(0, 0)), widget.size())


def _train_window_after_a_run(qtbot, monkeypatch, size):
    """A main window of ``size`` on a CPU-only machine, showing the Train area as after a run."""
    from gui.train import area as area_module

    monkeypatch.setattr(area_module, "detect_environment_isolated", Environment.cpu_only)
    win = MainWindow(load_demo=False, restore_geometry=False)
    qtbot.addWidget(win)
    win.resize(*size)
    win.show_area("train")
    win.show()
    qtbot.waitExposed(win)
    area = win.areas["train"]
    area._show_after_run(True)
    return win, area


@pytest.mark.parametrize("size", [(960, 640), (1024, 700), (1366, 768), (1920, 1080)])
def test_plots_buttons_and_advice_stay_readable_at_every_window_size(qtbot, monkeypatch, size):
    win, area = _train_window_after_a_run(qtbot, monkeypatch, size)
    area.progress_label.setText(FAILED)
    area.advisor_panel.add(Advice("error", "The loss became NaN or infinite", "Lower the learning rate. " * 6,
                                  fix={"learning_rate": 1e-4}))
    area.tabs.setCurrentWidget(area.advisor_panel)
    qtbot.wait(100)  # layout passes
    right = area.right_scroll.widget()
    # The form keeps its room: the splitter gives it at least its minimum.
    assert area.right_scroll.parentWidget().sizes()[0] >= 380
    # The pane scrolls up and down, never sideways, so nothing in it is cut at the right.
    assert area.right_scroll.horizontalScrollBar().maximum() == 0
    assert right.width() <= area.right_scroll.viewport().width()
    plots = area.plots
    assert plots.loss.widget.height() >= 150
    for p in plots.panels[1:]:
        # Tall enough for tick labels that don't overlap, wide enough for the title ("Learnin").
        assert p.widget.height() >= 110 and p.widget.width() >= 140, (p.widget.size(), plots.diag_columns)
    # After-run buttons: whole labels, inside the pane, not overlapping each other.
    rects = []
    for b in area.after_run_buttons:
        assert b.isVisible() and b.width() >= b.sizeHint().width(), b.text()
        r = _rect_in(b, right)
        assert r.left() >= 0 and r.right() <= right.width(), b.text()
        assert not any(r.intersects(o) for o in rects), b.text()
        rects.append(r)
    # The wrapped status line and the gauge above it get their full height.
    label = area.progress_label
    assert label.height() >= label.heightForWidth(label.width())
    assert area.gauge.height() >= area.gauge.minimumSizeHint().height()
    # The advice card, Apply button included, can be scrolled into view.
    card = next(iter(area.advisor_panel.cards.values()))
    area.right_scroll.ensureWidgetVisible(area.tabs)
    qtbot.wait(50)
    assert area.tabs.height() >= TABS_MIN_HEIGHT
    button = card.fix_button
    top = _rect_in(button, area.right_scroll.viewport())
    assert area.right_scroll.viewport().rect().contains(top), (top, area.right_scroll.viewport().rect())
    assert not button.visibleRegion().isEmpty()
    # The preset's name reads whole from 1024 px; narrower, it ends in "…" and the tooltip has it.
    combo = area.preset_combo
    assert combo.currentText() == "Demo (tiny, CPU)"
    if size[0] >= 1024:
        assert combo.width() >= combo.sizeHint().width() and combo.shown_text() == combo.currentText()
    else:
        shown = combo.shown_text()
        assert shown.endswith("…") and combo.currentText().startswith(shown[:-1])
        assert combo.toolTip().startswith(combo.currentText())


def _train_area_after_a_run(qtbot, monkeypatch, size):
    """The Train area of a main window of ``size`` after a run, with three answers to read."""
    win, area = _train_window_after_a_run(qtbot, monkeypatch, size)
    area.progress_label.setText("Run completed in 33 s; final loss 2.1059 (mean of the last 10 steps). Folder: "
                                "/home/someone/.local/share/finetune-studio/runs/20261204-160611-lora")
    area.samples.add({"step": 120, "source": "eval", "time_s": 0.4, "samples": [
        {"line": n, "prompt": f"Question {n}?", "answer": "An answer. " * 30, "reference": "The answer."}
        for n in (35, 54, 77)]})
    qtbot.wait(100)
    return win, area


# The tab's heights measured offscreen in the demo window (DejaVu Sans): 1360x860 444, 1366x768 352, 1024x700 260,
# 960x640 232; before the gauge folded and the loss plot gave way, 298, 206, 180 and 180 in a pane that
# scrolled at the two small sizes.
@pytest.mark.parametrize("size, answers_height", [((1360, 860), 420), ((1366, 768), 330), ((1024, 700), 250),
                                                  ((960, 640), 225)])
def test_the_answers_tab_takes_the_small_plots_room_and_gives_it_back(qtbot, monkeypatch, size, answers_height):
    """The Answers tab kept its 180 px minimum under plots at their minimum heights, in a pane that
    scrolled (docs/img/train-answers.png: a record and a half; at 960x640 and 1024x700, none until
    scrolled to). While it is open the gauge folds to its header line, the plots keep the loss only
    and the tabs take the rest; on a short window the loss plot gives way to the small plots' height
    for it. Advice and Log get the gauge, the small plots and the split back."""
    from gui.train import area as area_module
    from gui.train.plots import LOSS_MIN_SIZE, SMALL_MIN_SIZE

    win, area = _train_area_after_a_run(qtbot, monkeypatch, size)
    split, plots, scroll = area.tabs.parentWidget(), area.plots, area.right_scroll
    before = split.sizes()
    assert area.tabs.height() < answers_height  # the plots' minimum heights leave the tabs theirs

    area.tabs.setCurrentWidget(area.samples)
    qtbot.waitUntil(lambda: scroll.verticalScrollBar().maximum() == 0)  # the whole pane fits: no scrolling
    qtbot.wait(50)
    assert area.tabs.height() >= answers_height and area.samples.view.height() >= answers_height - 70
    assert scroll.viewport().rect().contains(_rect_in(area.tabs, scroll.viewport()))
    loss = plots.loss.widget.height()
    assert SMALL_MIN_SIZE[1] <= loss <= LOSS_MIN_SIZE[1]  # its readable height at most, the small plots' at least
    if loss < LOSS_MIN_SIZE[1]:  # it gave way only as far as the answers needed
        assert area.tabs.height() <= area_module.ANSWERS_ROOM + 2 or loss == SMALL_MIN_SIZE[1]
    if size[1] >= 768:
        assert loss == LOSS_MIN_SIZE[1]
    assert not any(p.widget.isVisible() for p in plots.panels[1:])
    # Says where they went, where the row has room for it (not beside the smoothing slider at 1024 px).
    assert plots.status.text() in plots.status.wordings + (("",) if size[0] <= 1024 else ())
    assert plots.status.toolTip() == plots.status.wordings[0]
    gauge = area.gauge
    assert gauge.is_folded() and not gauge.bar.isVisible() and not gauge.fit_button.isVisible()
    assert gauge.summary.isVisible() and gauge.summary.text()  # the peak, or "estimating…" until it comes
    if area.estimate is not None:
        assert "GiB" in gauge.summary.text()
    assert gauge.parentWidget().height() < 80  # the Memory box: one line under its title

    area.tabs.setCurrentWidget(area.log)
    qtbot.wait(100)
    assert split.sizes() == before and plots.status.text() == ""
    for p in plots.panels[1:]:
        assert p.widget.isVisible() and p.widget.height() >= 110
    assert plots.loss.widget.height() >= LOSS_MIN_SIZE[1] and plots.loss.widget.getAxis("bottom").label.isVisible()
    assert not gauge.is_folded() and gauge.bar.isVisible() and gauge.details.isVisible()


def test_the_answers_tab_keeps_its_room_when_the_window_is_resized_while_it_is_open(qtbot, monkeypatch):
    from gui.train import area as area_module
    from gui.train.plots import LOSS_MIN_SIZE, SMALL_MIN_SIZE

    win, area = _train_area_after_a_run(qtbot, monkeypatch, (1366, 768))
    scroll = area.right_scroll
    area.tabs.setCurrentWidget(area.samples)
    qtbot.waitUntil(lambda: area.plots.loss.widget.height() == LOSS_MIN_SIZE[1])
    win.resize(960, 640)
    qtbot.waitUntil(lambda: area.plots.loss.widget.height() == SMALL_MIN_SIZE[1])
    qtbot.wait(50)
    assert scroll.verticalScrollBar().maximum() == 0 and area.tabs.height() >= 225
    win.resize(1366, 768)
    qtbot.waitUntil(lambda: area.plots.loss.widget.height() == LOSS_MIN_SIZE[1])
    assert area.tabs.height() >= area_module.ANSWERS_ROOM and scroll.verticalScrollBar().maximum() == 0


def test_the_pane_does_not_scroll_at_the_default_window_size_after_a_cpu_run(qtbot, monkeypatch):
    """docs/img/train-after.png at the default 1360x860: the pane scrolled (34 px under the Advice
    tab), and the gauge's first line, narrowed by the scroll bar, wrapped its "(13%)" onto a line of
    its own. Now, with the demo's estimate in, nothing scrolls: without a GPU to plan for, and
    planning for a 24 GiB one (the trainable share then wraps under the peak, whole)."""
    win, area = _train_area_after_a_run(qtbot, monkeypatch, (1360, 860))
    area.gauge.set_measured(None, "The last run trained on the CPU: no GPU peak to compare.")  # as _on_finished
    assert area.wait_ready(180_000)
    details, scroll = area.gauge.details, area.right_scroll
    qtbot.waitUntil(lambda: scroll.verticalScrollBar().maximum() == 0)
    assert area.tabs.currentWidget() is area.advisor_panel
    # Five lines, none wrapped: with this dataset (the trainable share at its end), at the full seq_len,
    # the CPU run, disk, no GPU to compare with.
    assert "(13%)" in details.text() and details.text().count("<br>") == 4
    assert details.heightForWidth(details.width()) <= 5 * details.fontMetrics().lineSpacing() + 2

    assert area.gauge.select_target(24 * GiB)
    assert area.wait_ready(180_000)
    qtbot.wait(100)
    assert "of 24.00 GiB" in details.text() and "trained on the CPU" in details.text()
    assert scroll.verticalScrollBar().maximum() == 0
