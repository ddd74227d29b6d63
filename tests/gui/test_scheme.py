"""Light and dark: colours derived from the palette read on it, and follow a switch at run time."""

from __future__ import annotations

import pytest
from PySide6.QtGui import QColor, QPalette

from gui.scheme import MARK_CONTRAST, TEXT_CONTRAST, PlotColors, contrast, ink, ink_color, is_dark, tint_color

# Colours the GUI paints text with, chosen for a light palette.
TEXT_COLOURS = ["#be1e1e", "#8a5a00", "#3c6eaa", "#d0342c", "#d98e04", "#1f5fa8", "#2e8540", "#b71c1c", "#555555",
                "#666666", "#1b5e20", "#b3261e", "#8a1c14", "#b26b00", "#5f6368"]


def test_contrast_is_wcags():
    assert contrast(QColor("black"), QColor("white")) == pytest.approx(21)
    assert contrast(QColor("#777777"), QColor("white")) == pytest.approx(4.48, abs=0.01)  # WCAG's borderline grey


def test_ink_leaves_light_colours_alone_and_lightens_them_to_read_on_dark(qapp, dark_palette):
    light = QPalette(qapp.style().standardPalette())
    assert not is_dark(light) and is_dark(dark_palette)
    for colour in TEXT_COLOURS:
        assert ink(colour, light) == colour  # light mode paints exactly what it did
        lifted = ink_color(colour, dark_palette)
        for role in (QPalette.ColorRole.Window, QPalette.ColorRole.Base):
            assert contrast(lifted, dark_palette.color(role)) >= TEXT_CONTRAST, colour
        assert abs(lifted.hslHueF() - QColor(colour).hslHueF()) < 0.02 or QColor(colour).hslSaturationF() == 0
        # On a tint behind it (a broken row, a banner) it reads too.
        tint = tint_color("#fde7e6", dark_palette)
        assert contrast(ink_color(colour, dark_palette, on=tint), tint) >= TEXT_CONTRAST


def test_the_train_plots_follow_a_switch_to_dark_and_back(qtbot, qapp):
    from gui.scheme import dark_palette
    from gui.train.plots import TrainPlots

    plots = TrainPlots()
    qtbot.addWidget(plots)
    plots.resize(900, 500)
    plots.show()
    plots.load_metrics([{"step": s, "loss": 3 - s / 10, "learning_rate": 1e-4} for s in range(1, 20)]
                       + [{"step": 19, "eval_loss": 1.5}])
    plots.redraw()
    view = plots.loss.widget

    def background() -> QColor:
        return view.grab().toImage().pixelColor(view.width() - 3, view.height() // 2)

    assert background() == QColor("white")  # light: as before
    old = qapp.palette()
    try:
        qapp.setPalette(dark_palette())
        base = qapp.palette().color(QPalette.ColorRole.Base)
        qtbot.waitUntil(lambda: background() == base)
        colors = PlotColors()
        for panel in plots.panels:
            for name, curve in panel.curves.items():
                assert contrast(curve.opts["pen"].color(), base) >= MARK_CONTRAST or name == "loss", (panel.title, name)
            for axis in ("left", "bottom"):
                assert contrast(panel.widget.getAxis(axis).textPen().color(), base) >= TEXT_CONTRAST
                assert contrast(QColor(panel.widget.getAxis(axis).labelStyle['color']), base) >= TEXT_CONTRAST
        assert colors.dark and contrast(colors.hint, base) >= TEXT_CONTRAST
        assert f"color:{plots.loss._curve_color('smoothed').name()}" in plots.loss.key_text
    finally:
        qapp.setPalette(old)
    qtbot.waitUntil(lambda: background() == QColor("white"))


def test_the_runs_plot_is_dark_under_a_dark_palette(qtbot, dark_palette):
    from gui.runs.area import RunsArea

    area = RunsArea()
    qtbot.addWidget(area)
    area.resize(1200, 800)
    area.show()
    image = area.plot.grab().toImage()
    base = dark_palette.color(QPalette.ColorRole.Base)
    assert image.pixelColor(image.width() // 2, image.height() // 3) == base
    axis = area.plot.getAxis("left")
    assert contrast(axis.textPen().color(), base) >= TEXT_CONTRAST
    assert contrast(area.plot_hint.color, base) >= TEXT_CONTRAST


def test_the_gauges_gpu_line_and_marks_show_on_a_dark_bar(qtbot, qapp):
    from gui.scheme import dark_palette
    from gui.train.vram_gauge import COLORS, VramBar

    bar = VramBar()
    qtbot.addWidget(bar)
    bar.resize(400, 38)
    gib = 2**30
    bar.set_data([("weights", 2 * gib, QColor(COLORS["weights"]))], 6 * gib, None)
    bar.show()

    def gpu_line_colour() -> QColor:
        image = bar.grab().toImage()
        # The dashed GPU line reaches past the bar, 5 px above it: nothing else is painted there.
        x = next(x for x in range(image.width()) if image.pixelColor(x, 2) != image.pixelColor(0, 2))
        return image.pixelColor(x, 2)

    assert gpu_line_colour().lightnessF() < 0.25  # near-black on light
    old = qapp.palette()
    try:
        qapp.setPalette(dark_palette())
        bar.update()
        qtbot.waitUntil(lambda: gpu_line_colour().lightnessF() > 0.5)
        window = qapp.palette().color(QPalette.ColorRole.Window)
        assert contrast(gpu_line_colour(), window) >= MARK_CONTRAST
        image = bar.grab().toImage()
        weights = image.pixelColor(10, bar.height() // 2)  # the first segment
        assert contrast(weights, qapp.palette().color(QPalette.ColorRole.Base)) >= MARK_CONTRAST
    finally:
        qapp.setPalette(old)


def test_apply_color_scheme_falls_back_to_a_palette_of_our_own(qapp):
    from gui.scheme import apply_color_scheme

    old = qapp.palette()
    try:
        apply_color_scheme("dark")  # offscreen ignores Qt's request: our palette is set instead
        assert is_dark(qapp.palette())
        apply_color_scheme("light")
        assert not is_dark(qapp.palette())
        apply_color_scheme("system")
        assert qapp.palette().color(QPalette.ColorRole.Window) == old.color(QPalette.ColorRole.Window)
        with pytest.raises(ValueError, match="choose one of system, light, dark"):
            apply_color_scheme("dim")
    finally:
        qapp.setPalette(old)


def test_the_appearance_setting_is_read_back_and_a_bad_value_means_system():
    from gui.scheme import SCHEME_KEY, saved_scheme
    from gui.settings import studio_settings

    assert saved_scheme() == "system"
    studio_settings().setValue(SCHEME_KEY, "dark")
    assert saved_scheme() == "dark"
    studio_settings().setValue(SCHEME_KEY, "purple")
    assert saved_scheme() == "system"
