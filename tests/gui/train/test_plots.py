"""Live plots: growing arrays, rewinds on resume, TensorBoard's EMA, throttled redraws."""

from __future__ import annotations

import numpy as np
import pytest

from gui.train.plots import Series, TrainPlots, debiased_ema


def naive_ema(y, w):
    last, k, out = 0.0, 0, []
    for v in y:
        if np.isfinite(v):
            last = w * last + (1 - w) * v
            k += 1
        out.append(last / (1 - w**k) if k else np.nan)
    return np.array(out)


@pytest.mark.parametrize("w", [0.0, 0.05, 0.5, 0.6, 0.9, 0.99, 0.999])
def test_debiased_ema_matches_tensorboard(w):
    rng = np.random.default_rng(0)
    y = rng.random(5000) * 3 + 1
    y[[0, 7, 100]] = np.nan
    got = debiased_ema(y, w)
    want = naive_ema(y, w) if w else np.where(np.isfinite(y), y, np.nan)
    if not w:
        want = np.array([want[i] if np.isfinite(want[i]) else (want[i - 1] if i else np.nan) for i in range(len(y))])
    np.testing.assert_allclose(got[1:], want[1:], rtol=1e-10)
    assert np.isnan(got[0])


def test_series_grows_and_rewinds_on_resume():
    s = Series(capacity=4)
    for step in range(1, 11):
        s.append(step, step * 10)
    assert len(s) == 10 and len(s.x) >= 10
    s.append(6, -1.0)  # a run resumed from checkpoint-5 reports step 6 again
    assert list(s.xs) == [1, 2, 3, 4, 5, 6] and s.ys[-1] == -1.0


def test_plots_hold_100k_steps_and_draw_them_downsampled(qtbot):
    plots = TrainPlots()
    qtbot.addWidget(plots)
    plots.resize(900, 600)
    plots.show()
    rows = [{"step": i, "loss": 3.0 / (1 + i / 1000) + 0.01 * (i % 7), "lr": 1e-4, "grad_norm": 1.0,
             "tokens_per_s": 5000.0} for i in range(1, 100_001)]
    for start in range(0, len(rows), 1000):
        plots.add_steps(rows[start:start + 1000])
    assert plots.point_count() == 100_000
    plots.redraw()
    qtbot.wait(1)  # let the scene paint once
    plots.add_steps([{"step": 100_001, "loss": 0.5}])
    plots.redraw()
    x, y = plots.curve_data("loss", "smoothed")
    assert len(x) > 0
    np.testing.assert_allclose(plots.loss.series["smoothed"].ys[:-1],
                               debiased_ema(plots.loss.series["loss"].ys[:-1], 0.9), rtol=1e-9)
    # What keeps a redraw fast (how fast is a benchmark's question, not a test's): the curves draw a
    # peak-downsampled view of the 100k points, clipped to the view, not every point.
    for curve in ("loss", "smoothed"):
        item = plots.loss.curves[curve]
        assert item.opts["autoDownsample"] and item.opts["downsampleMethod"] == "peak" and item.opts["clipToView"]
        assert 0 < len(plots.curve_data("loss", curve)[0]) < 100_000 // 4


def test_smoothing_slider_and_log_scale(qtbot):
    plots = TrainPlots()
    qtbot.addWidget(plots)
    plots.add_steps([{"step": i, "loss": float(10 - i % 3)} for i in range(1, 50)])
    plots.slider.setValue(0)
    plots.redraw()
    np.testing.assert_allclose(plots.loss.series["smoothed"].ys, plots.loss.series["loss"].ys)
    plots.slider.setValue(95)
    plots.redraw()
    np.testing.assert_allclose(plots.loss.series["smoothed"].ys, debiased_ema(plots.loss.series["loss"].ys, 0.95))
    plots.log_y.setChecked(True)
    assert plots.loss.widget.getPlotItem().ctrl.logYCheck.isChecked()


def test_eval_and_placeholder(qtbot):
    plots = TrainPlots()
    qtbot.addWidget(plots)
    assert plots._placeholder.isVisible()
    plots.add_steps([{"step": 1, "loss": 2.0}, {"step": 2, "eval_loss": 1.5}])
    plots.redraw()
    assert not plots._placeholder.isVisible()
    assert plots.point_count("loss", "eval") == 1


def test_y_ranges_follow_the_data_one_axis_per_frame(qtbot):
    plots = TrainPlots()
    qtbot.addWidget(plots)
    plots.resize(900, 600)
    plots.show()
    plots.add_steps([{"step": i, "loss": 5.0 - i / 10, "lr": 1e-4 * i, "grad_norm": 2.0 + i,
                      "tokens_per_s": 4000.0 + i} for i in range(1, 21)])
    panels = [plots.loss, plots.lr, plots.grad, plots.speed]

    def fitted():  # the panel's y range holds its data and is not more than 4x too tall
        return [plots._wanted_y(p) is None for p in panels]

    plots.redraw()
    assert sum(fitted()) == 1  # the first frame regenerates one axis, the loss plot's
    assert fitted()[0]
    for _ in range(3):
        plots.redraw()
    assert all(fitted())
    # Data leaving the range refits that panel on the next frame.
    plots.add_steps([{"step": 21, "loss": 50.0}])
    plots.redraw()
    assert all(fitted())


def test_grid_lines_follow_the_axes_ticks(qtbot):
    plots = TrainPlots()
    qtbot.addWidget(plots)
    plots.resize(900, 600)
    plots.show()
    plots.set_step_range(100)
    plots.add_steps([{"step": i, "loss": 2.0 + i / 50} for i in range(1, 51)])
    for _ in range(3):
        plots.redraw()
    qtbot.waitUntil(lambda: bool(plots.loss.grid._lines[0]), timeout=2000)
    major, _minor = plots.loss.grid._lines
    ys = sorted({round(line.y1(), 6) for line in major if line.y1() == line.y2()})
    xs = sorted({round(line.x1(), 6) for line in major if line.x1() == line.x2()})
    lo, hi = plots.loss.widget.getViewBox().viewRange()[1]
    ticks = [v for _s, values in plots.loss.widget.getAxis("left").tickValues(
        lo, hi, plots.loss.widget.getViewBox().sceneBoundingRect().height())[:1] for v in values]
    assert ys and all(lo <= y <= hi for y in ys) and set(ys) <= {round(t, 6) for t in ticks}
    assert 0.0 in xs and 100.0 in xs
    # A new range moves the lines on the next paint.
    plots.loss.widget.setYRange(10, 20, padding=0)
    qtbot.waitUntil(lambda: min(line.y1() for line in plots.loss.grid._lines[0] if line.y1() == line.y2()) >= 10,
                    timeout=2000)


def test_gpu_memory_plot_shows_allocated_and_reserved_in_gib(qtbot):
    plots = TrainPlots()
    qtbot.addWidget(plots)
    plots.set_gpu_available(True)
    gib = 2**30
    plots.add_steps([{"step": i, "loss": 1.0, "gpu_mem_allocated": (3 + i / 10) * gib,
                      "gpu_mem_reserved": 5 * gib} for i in range(1, 11)])
    for _ in range(5):
        plots.redraw()
    x, y = plots.curve_data("memory", "allocated")
    np.testing.assert_allclose(y, [3 + i / 10 for i in range(1, 11)])
    assert list(plots.curve_data("memory", "reserved")[1]) == [5.0] * 10
    lo, hi = plots.memory.widget.getViewBox().viewRange()[1]
    assert lo <= 3.1 and hi >= 5.0
    assert not plots._no_gpu_text.isVisible()
    plots.set_gpu_available(False)
    assert plots._no_gpu_text.isVisible()


@pytest.mark.parametrize("size, columns", [((500, 600), 2), ((500, 300), 2), ((900, 600), 4)])
def test_small_plots_go_two_by_two_when_narrow_keeping_readable_heights(qtbot, size, columns):
    plots = TrainPlots()
    qtbot.addWidget(plots)
    plots.resize(*size)
    plots.show()
    qtbot.waitExposed(plots)
    assert plots.diag_columns == columns
    positions = [plots.grid.getItemPosition(plots.grid.indexOf(p.widget))[:2] for p in plots.panels[1:]]
    assert positions == ([(1, 0), (1, 1), (2, 0), (2, 1)] if columns == 2 else [(1, 0), (1, 1), (1, 2), (1, 3)])
    assert plots.grid.getItemPosition(plots.grid.indexOf(plots.loss.widget)) == (0, 0, 1, columns)
    # Short: the panel asks for the room (its pane scrolls) instead of squeezing the plots.
    plots.layout().activate()
    assert plots.minimumSizeHint().height() >= 170 + (2 if columns == 2 else 1) * 120
    plots.resize(900, 600)  # widened again: one row of four
    qtbot.waitUntil(lambda: plots.diag_columns == 4)


def test_hidden_small_plots_leave_the_loss_its_height_and_stay_hidden_when_rearranged(qtbot):
    """While the Answers tab is open the small plots are hidden: the panel then asks for the loss
    plot's height only, says so when the row has room for it, and a resize across NARROW (which
    lays them out again) doesn't bring them back."""
    plots = TrainPlots()
    qtbot.addWidget(plots)
    plots.resize(900, 600)
    plots.show()
    qtbot.waitExposed(plots)
    full = plots.minimumSizeHint().height()
    plots.show_diagnostics(False, ("Small plots hidden while Answers is open", "Small plots hidden"))
    assert plots.minimumSizeHint().height() <= full - 120
    assert plots.minimumSizeHint().height() >= 170
    assert plots.status.text() == "Small plots hidden while Answers is open"
    plots.resize(500, 400)  # two by two, if they were shown
    qtbot.waitUntil(lambda: plots.diag_columns == 2)
    assert not any(p.widget.isVisible() for p in plots.panels[1:])
    qtbot.waitUntil(lambda: plots.loss.widget.height() >= 300)  # the loss takes the room
    # Too narrow for the note (the controls row keeps its slider): the short one, or none; never cut.
    plots.resize(330, 400)
    qtbot.waitUntil(lambda: plots.status.width() < plots.fontMetrics().horizontalAdvance(plots.status.wordings[0]))
    assert plots.status.text() in ("Small plots hidden", "")
    assert plots.fontMetrics().horizontalAdvance(plots.status.text()) <= plots.status.width()
    plots.show_diagnostics(True)
    plots.resize(500, 600)
    qtbot.wait(50)
    assert plots.status.text() == "" and all(p.widget.isVisible() for p in plots.panels[1:])
    plots.layout().activate()
    assert plots.minimumSizeHint().height() >= 170 + 2 * 120


def test_the_curves_key_sits_in_the_title_row_not_over_the_data(qtbot):
    import pyqtgraph as pg

    plots = TrainPlots()
    qtbot.addWidget(plots)
    plots.resize(740, 420)
    plots.show()
    qtbot.waitExposed(plots)
    assert plots.loss.key_text == "Loss"  # no curves yet: nothing to key
    # A loss that climbs back at the end, to the top right where a legend in the view sat.
    plots.add_steps([{"step": s, "loss": 4 - s / 30 + max(0, s - 80) / 10, "gpu_mem_allocated": 2**30,
                      "gpu_mem_reserved": 2 * 2**30} for s in range(1, 121)])
    plots.add_eval({"step": 60, "eval_loss": 2.5})
    for _ in range(2 * 3):
        plots.redraw()
    for panel, labels in ((plots.loss, ("raw", "smoothed", "eval")), (plots.memory, ("allocated", "reserved"))):
        item = panel.widget.getPlotItem()
        assert all(label in panel.key_text for label in labels), panel.key_text
        assert item.legend is None
        assert not [i for i in item.vb.allChildItems() if isinstance(i, pg.LegendItem)]
        assert not item.titleLabel.sceneBoundingRect().intersects(item.vb.sceneBoundingRect())
    assert "<br>" not in plots.loss.key_text  # wide: the key beside the title
    plots.resize(300, 520)
    qtbot.waitUntil(lambda: "<br>" in plots.loss.key_text)  # narrow: under it, not cut off
    plots.clear()
    assert plots.loss.key_text == "Loss"


def _major_ticks(axis, lo: float, hi: float, length: float) -> tuple[float, list[str]]:
    """The pixels between an axis's major ticks and their texts, as pyqtgraph draws them."""
    spacing, values = axis.tickValues(lo, hi, length)[0]
    return spacing * length / (hi - lo), axis.tickStrings(values, axis.scale, spacing)


@pytest.mark.parametrize("points", [9, 13, 16])
def test_tick_texts_fit_their_axes_at_a_raised_font(qtbot, app_font_pt, points):
    """At 16 pt the learning-rate axis, 46 px wide, showed only "0" of "0.003 0.002 0.001 0", and
    the empty memory plot's "0.2 0.4 0.6 0.8" ran together on its bottom axis."""
    app_font_pt(points)
    plots = TrainPlots()
    qtbot.addWidget(plots)
    plots.resize(1360 - 150 - 610, 600)  # the Train area's plot pane at 1360 px: four small plots in a row
    plots.show()
    qtbot.waitExposed(plots)
    plots.add_steps([{"step": i, "loss": 4.0 - i / 10, "lr": 0.003 * (1 - i / 12), "grad_norm": 1.5}
                     for i in range(1, 13)])
    plots.redraw()
    qtbot.wait(50)
    fm = plots.lr.widget.fontMetrics()
    left = plots.lr.widget.getAxis("left")
    (y0, y1) = plots.lr.widget.getViewBox().viewRange()[1]
    _, texts = _major_ticks(left, y0, y1, left.height())
    assert max(fm.horizontalAdvance(t) for t in texts) + left.style["tickTextOffset"][0] <= left.width(), texts
    bottom = plots.memory.widget.getAxis("bottom")
    (x0, x1), (y0, y1) = plots.memory.widget.getViewBox().viewRange()
    gap, texts = _major_ticks(bottom, x0, x1, bottom.width())
    assert max(fm.horizontalAdvance(t) for t in texts) < gap, (gap, texts)
    left = plots.memory.widget.getAxis("left")
    gap, texts = _major_ticks(left, y0, y1, left.height())
    assert gap >= fm.height(), (gap, texts)
    assert plots.loss.title_size == f"{points + 1:g}pt"


def test_a_screen_reader_reads_each_plots_name_and_last_points_as_they_come(qtbot):
    """The plots are painted: a screen reader found five nameless "graphics view"s."""
    from tests.gui.keyboard_audit import spoken_description, spoken_name

    plots = TrainPlots()
    qtbot.addWidget(plots)
    plots.show()
    assert [spoken_name(p.widget) for p in plots.panels] == [
        "Loss plot", "Learning rate plot", "Gradient norm plot", "Tokens / s plot", "VRAM (GiB) plot"]
    assert spoken_description(plots.loss.widget) == "No data yet."
    assert spoken_name(plots.slider) == "Smoothing"
    plots.add_steps([{"step": 1, "loss": 2.5, "lr": 3e-4}, {"step": 2, "loss": 2.0, "lr": 2e-4}])
    plots.add_eval({"step": 2, "eval_loss": 2.25})
    plots.redraw()
    assert spoken_description(plots.loss.widget) == "raw 2 at step 2; smoothed 2.237 at step 2; eval 2.25 at step 2."
    plots.add_steps([{"step": 3, "loss": 1.5}])
    plots.redraw()  # the 10 Hz timer's redraw says the new end
    assert spoken_description(plots.loss.widget).startswith("raw 1.5 at step 3; smoothed ")
    for _ in range(3):  # the small plots redraw at a third of the rate
        plots.redraw()
    assert spoken_description(plots.lr.widget) == "0.0002 at step 2."
