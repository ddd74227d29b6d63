"""The Dataset area under a dark palette: what it paints reads on what it paints it on."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QPalette

from gui.scheme import TEXT_CONTRAST, contrast


def test_the_forms_captions_errors_and_findings_read_on_dark(make_editor, broken_file, dark_palette,
                                                            painted_contrast):
    ed = make_editor(broken_file)
    ed.resize(1200, 800)
    ed.show()
    window = dark_palette.color(QPalette.ColorRole.Window)
    ed.select_record(2)  # the broken line: its parse error above the JSON text
    assert ed.form.raw_error.isVisible()
    assert painted_contrast(ed.form.raw_error, window) >= TEXT_CONTRAST
    ed.select_record(0)
    captions = [label for label in ed.form.findChildren(type(ed.form.raw_error))
                if label.isVisible() and label.text() in ("instruction", "output")]
    assert captions
    for label in captions:
        assert painted_contrast(label, window) >= TEXT_CONTRAST, label.text()
    assert painted_contrast(ed.count_label, window) >= TEXT_CONTRAST


def test_a_broken_rows_tint_and_the_status_marks_read_on_dark(make_editor, broken_file, dark_palette):
    ed = make_editor(broken_file)
    model = ed.model
    text = dark_palette.color(QPalette.ColorRole.Text)
    index = model.index(2, model.column_of("#status"))
    background = model.data(index, Qt.ItemDataRole.BackgroundRole).color()
    assert background.lightnessF() < 0.5  # a dark red, not the light-palette's pale pink
    assert contrast(text, background) >= TEXT_CONTRAST
    assert contrast(model.data(index, Qt.ItemDataRole.ForegroundRole).color(), background) >= TEXT_CONTRAST


def test_the_checks_trees_severity_colours_read_on_dark(make_editor, broken_file, dark_palette):
    ed = make_editor(broken_file)
    base = dark_palette.color(QPalette.ColorRole.Base)
    items = ed.lint_panel.rule_items()
    assert "broken-record" in items
    for rule, item in items.items():
        assert contrast(item.foreground(0).color(), base) >= TEXT_CONTRAST, rule


def test_the_banner_is_a_dark_tint_under_a_dark_palette(make_editor, broken_file, dark_palette, painted_contrast):
    ed = make_editor(broken_file)
    ed.resize(1200, 800)
    ed.show()
    banner = ed.banner
    banner.show_message("error", "Could not save: the disk is full.")
    assert banner.isVisible()
    image = banner.grab().toImage()
    background = image.pixelColor(image.width() // 2, 3)
    assert background.lightnessF() < 0.5  # before: the light palette's pale rose, a glaring box
    assert painted_contrast(banner.label, background) >= TEXT_CONTRAST
