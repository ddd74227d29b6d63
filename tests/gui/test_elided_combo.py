"""A squeezed combo box ends its text in "…" and says the whole of it in its tooltip."""

from gui.elided_combo import ElidedComboBox


def test_a_squeezed_combo_elides_and_a_wide_one_shows_the_whole_text(qtbot):
    combo = ElidedComboBox()
    qtbot.addWidget(combo)
    combo.addItems(["Full fine-tuning", "LoRA"])
    combo.setToolTip("A starting recipe")
    combo.resize(combo.sizeHint())
    combo.show()
    assert combo.shown_text() == "Full fine-tuning" and combo.toolTip() == "A starting recipe"
    combo.resize(combo.minimumSizeHint().width(), combo.height())
    assert combo.minimumSizeHint().width() < combo.sizeHint().width()
    shown = combo.shown_text()
    assert shown.endswith("…") and "Full fine-tuning".startswith(shown[:-1])
    assert combo.toolTip() == "Full fine-tuning: A starting recipe"
    combo.setCurrentIndex(1)  # a short item fits again
    assert combo.shown_text() == "LoRA" and combo.toolTip() == "A starting recipe"
