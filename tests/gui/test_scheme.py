"""Light and dark: colours derived from the palette read on it, and follow a switch at run time."""

from __future__ import annotations

import pytest
from PySide6.QtGui import QColor, QPalette

from gui.scheme import TEXT_CONTRAST, contrast, ink, ink_color, is_dark, tint_color

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
