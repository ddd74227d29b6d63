"""The Adapters area's dialogs as a user sees them: on a laptop screen, with long names, with bad input."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QRect, QSize, Qt
from PySide6.QtGui import QScreen

from gui.adapters.compare_dialog import CompareDialog, WholeModel

TITLE_BAR = 40  # what a window manager adds above a dialog's contents, at most


@pytest.mark.parametrize("screen", [(1366, 728), (1024, 660)])  # 768 and 700 px tall, less a panel
def test_the_compare_dialog_fits_a_small_screen(qtbot, monkeypatch, screen):
    width, height = screen
    monkeypatch.setattr(QScreen, "availableGeometry", lambda _self: QRect(0, 0, width, height))
    dialog = CompareDialog("demo", [WholeModel("full-run", "/runs/full-run/final")])
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    assert dialog.height() + TITLE_BAR <= height and dialog.width() <= width
    # Its buttons are inside it, not cut off by a layout that can't shrink that far.
    assert dialog.minimumSizeHint().height() <= dialog.height()
    assert dialog.buttons.geometry().bottom() < dialog.height()


def test_the_compare_dialog_keeps_its_size_on_a_large_screen(qtbot, monkeypatch):
    monkeypatch.setattr(QScreen, "availableGeometry", lambda _self: QRect(0, 0, 1920, 1040))
    dialog = CompareDialog("demo", [WholeModel("full-run", "/runs/full-run/final")])
    qtbot.addWidget(dialog)
    assert dialog.size() == QSize(980, 720)  # the table and the answers need the room


def test_the_merge_dialogs_weights_stay_small_and_its_output_folder_grows(qtbot):
    """Stretched to the dialog's width, each weight's "1.00" sat at the left of a 400 px box."""
    from engine.adapters import AdapterCard
    from gui.adapters.merge_dialog import MergeDialog

    cards = [AdapterCard(name=name, path=f"/runs/{name}/final", source="run") for name in ("medical", "legal")]
    dialog = MergeDialog("demo", cards)
    qtbot.addWidget(dialog)
    dialog.resize(760, dialog.height())
    dialog.show()
    qtbot.waitExposed(dialog)
    for spin in (*dialog.weights, dialog.density):
        assert spin.width() <= spin.sizeHint().width() + 8, spin.toolTip()
    assert dialog.out_edit.width() > 2 * dialog.weights[0].width()


def test_a_dialogs_command_line_wraps_between_arguments_and_copies_exactly(qtbot):
    """Qt wraps a label after any hyphen: the merge command read "--" at one line's end and
    "out /home/…" on the next, and "medical-" / "assistant". Lines now break at spaces (or at a
    long path's "/"), and what is copied is the command, without the marks that hold hyphens."""
    from PySide6.QtGui import QGuiApplication

    from engine.adapters import AdapterCard
    from gui.adapters.merge_dialog import MergeDialog

    cards = [AdapterCard(name=n, path=f"/home/user/finetune/runs/{n}-2026-12-05/final", source="run")
             for n in ("medical-assistant", "legal")]
    dialog = MergeDialog("demo", cards)
    qtbot.addWidget(dialog)
    dialog.out_edit.setText("/home/user/finetune/merged/medical-assistant-plus-legal-out")
    dialog.out_edit.textEdited.emit(dialog.out_edit.text())
    view = dialog.command_label
    command = view.text()
    assert " --out /home/user/finetune/merged/medical-assistant-plus-legal-out" in command
    dialog.show()
    qtbot.waitExposed(dialog)
    wrapped = 0
    for width in range(dialog.minimumWidth(), 800, 6):  # at 560 px a line ended in "--"
        dialog.resize(width, dialog.height())
        qtbot.waitUntil(lambda w=width: dialog.width() == w)
        lines = view.shown_lines()
        assert "".join(lines) == command
        wrapped += len(lines) > 1
        for line in lines[:-1]:
            last = line.split(" ")[-1]  # "" when the line ends at a space
            # Only a path wider than the rest of the line breaks inside, and then after a "/".
            assert last == "" or last.endswith("/"), (width, lines)
        assert view.height() >= len(lines) * view.fontMetrics().lineSpacing()  # every line shows
    assert wrapped
    view.selectAll()
    view.copy()
    assert QGuiApplication.clipboard().text() == command


def small_comparison(losses: dict[str, float], *, sampled_from: int = 0) -> object:
    """A comparison of these answer losses (the first is the base's), with scored answers and three
    answers to read, as ``adapters compare --answer`` writes it; no model is loaded."""
    from engine.compare import Comparison, ModelScore, RecordScores, Sample

    models = [ModelScore(name, f"/runs/{name}/final", loss, 2.0, loss, 2.0, best_on=1, answered=20, exact=0.5,
                         f1=0.5) for name, loss in losses.items()]
    answer = "A long answer that wraps over two lines of the answers pane in a dialog on a laptop. " * 2
    samples = [Sample(record=n, prompt=f"Question {n}: what does this record ask of the model, in a sentence?",
                      reference="The record's own answer.", answers=dict.fromkeys(losses, answer),
                      losses=dict(losses)) for n in (1, 2, 3)]
    records = [RecordScores(record=n, line=n, instruction="q", tokens=3, losses=dict(losses)) for n in (1, 2, 3)]
    return Comparison(base="demo", dataset="data.jsonl", device="cpu", load_in="fp32", template="auto", seq_len=512,
                      seconds=1.0, models=models, records=records, samples=samples, sampled_from=sampled_from,
                      notes=["medical: its run's dataset 'medical.jsonl' is gone, so which records it trained on "
                             "is unknown", "scored a random 3 of the 366 usable records (seed 0)"])


@pytest.mark.parametrize("screen", [(1024, 660), (1280, 680)])  # 700 and 720 px tall, less a panel
def test_the_answers_have_room_on_a_laptop_screen_once_compared(qtbot, monkeypatch, tmp_path, screen):
    """The settings above the results left the answers ~100 px of a 600 px dialog; they fold under
    one line that says what Compare runs, and open again from it."""
    width, height = screen
    monkeypatch.setattr(QScreen, "availableGeometry", lambda _self: QRect(0, 0, width, height))
    dialog = CompareDialog("demo", [WholeModel("medical", "/runs/medical/final"),
                                    WholeModel("legal", "/runs/legal/final")])
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    assert dialog.dataset_edit.isVisible()
    dialog.activateWindow()
    dialog.dataset_edit.setFocus()
    qtbot.waitUntil(dialog.dataset_edit.hasFocus)
    dialog.show_result(small_comparison({"(base)": 2.0, "medical": 1.5, "legal": 1.9}))
    # The keyboard leaves the folded settings for the answers (Qt gave it to the table's first cell).
    assert dialog.answers.hasFocus()
    # Before: 94 px of a 594 px dialog (1024x700), 112 of 612 (1280x720).
    qtbot.waitUntil(lambda: dialog.answers.isVisible() and dialog.answers.height() >= 0.45 * dialog.height())
    rows = sum(dialog.table.rowHeight(r) for r in range(dialog.table_model.rowCount()))
    assert dialog.table.viewport().height() >= rows  # every model's row, no scrolling
    assert not dialog.dataset_edit.isVisible()
    assert dialog.setup_toggle.isVisible() and "Dataset: demo · Records: 500 · Answers to read: 3" in dialog.setup_toggle.text()
    dialog.samples.setValue(5)  # what the line says follows the settings
    assert "Answers to read: 5" in dialog.setup_toggle.text()
    dialog.setup_toggle.click()
    assert dialog.dataset_edit.isVisible() and dialog.answers.isVisible()
    # A kept one shown from "Earlier" folds them too, so its note can't point "above" at the models.
    dialog.show_result(small_comparison({"(base)": 2.0, "legal": 1.9}), kept=True)
    assert not dialog.dataset_edit.isVisible() and "above" not in dialog.status.text()
    assert "A kept comparison</b>, made earlier" in dialog.status.text()
    dialog.setup_toggle.click()
    assert dialog.buttons.geometry().bottom() < dialog.height()
    dialog.grab().save(str(tmp_path / f"compare-{width}.png"))


def test_the_vs_base_column_shows_a_small_change_and_the_notes_say_records(qtbot):
    """A 0.5% lower loss read "-0%"; the sample's note told the GUI user to "give limit 0"."""
    from engine.compare import format_comparison

    dialog = CompareDialog("demo", [WholeModel("legal", "/runs/legal/final")])
    qtbot.addWidget(dialog)
    comparison = small_comparison({"(base)": 2.0, "legal": 1.99, "same": 2.0}, sampled_from=366)
    dialog.show_result(comparison)
    cells = [dialog.table_model.item(r, 3).text() for r in range(3)]
    assert cells == ["–", "-0.5%", "±0.0%"]
    assert "-0.5%" in format_comparison(comparison)  # the CLI says the same
    status = dialog.status.text()
    assert "Set Records: to all to score all 366 usable records" in status and "limit" not in status.lower()


def test_a_dataset_that_is_not_there_says_where_it_was_looked_for(qtbot, tmp_path, monkeypatch):
    """The message "nowhere.jsonl is not a file." left the user guessing which folder a relative name meant."""
    monkeypatch.chdir(tmp_path)
    dialog = CompareDialog("demo", [WholeModel("full-run", "/runs/full-run/final")])
    qtbot.addWidget(dialog)
    dialog.dataset_edit.setText("nowhere.jsonl")
    assert not dialog.start() and dialog.proc is None
    assert dialog.status.text() == f"Dataset: nowhere.jsonl is not a file ({tmp_path / 'nowhere.jsonl'})."
    dialog.dataset_edit.setText(str(tmp_path / "gone.jsonl"))
    assert not dialog.start() and dialog.status.text() == f"Dataset: {tmp_path / 'gone.jsonl'} is not a file."


def test_the_merge_dialogs_combination_text_is_shown_whole_across_the_form(qtbot):
    """In the field column (~240 px) the text took up to 6 lines and was cut at 3; a fixed 4-line
    room left a gap under the short ones. Now it spans the form, as tall as its lines, never cut."""
    from engine.adapters import COMBINATIONS, AdapterCard
    from gui.adapters.merge_dialog import MergeDialog

    cards = [AdapterCard(name=n, path=f"/home/user/finetune/runs/{n}/final", source="run")
             for n in ("medical-assistant", "legal-qa", "support-tone")]
    dialog = MergeDialog("Qwen/Qwen2.5-0.5B-Instruct", cards)
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    text = dialog.combination_help
    line = text.fontMetrics().lineSpacing()
    for name in COMBINATIONS:
        dialog.combination.setCurrentIndex(dialog.combination.findData(name))
        qtbot.wait(0)  # the layout settles on the next event-loop pass
        # The text's own lines at the label's width (QLabel.heightForWidth would count a minimum height in).
        needed = text.fontMetrics().boundingRect(QRect(0, 0, text.contentsRect().width(), 10_000),
                                                 Qt.TextFlag.TextWordWrap, text.text()).height()
        assert needed <= text.height() < needed + line, name  # every line shown, no empty line below
        assert text.geometry().bottom() < dialog.density.geometry().top(), name  # not under the next row
        assert text.x() < dialog.combination.x() and text.width() > 2 * dialog.combination.width(), name  # across the form

    # The outcome under the command line, with a long folder: shown whole too, above the buttons.
    dialog.out_edit.setText("/home/user/finetune/merged/" + "medical-assistant+legal-qa+support-tone-" * 3)
    dialog.output = "wrote /home/user/finetune/merged/a-very-long-name-q8_0.gguf (512 MiB)\n"
    dialog._on_succeeded(dialog.output)
    qtbot.wait(0)
    result = dialog.result
    needed = result.fontMetrics().boundingRect(QRect(0, 0, result.contentsRect().width(), 10_000),
                                               Qt.TextFlag.TextWordWrap, result.text()).height()
    assert result.text().startswith("Merged into") and needed <= result.height()
    assert result.geometry().bottom() < dialog.buttons.geometry().top()


def _cut_controls(dialog) -> list[str]:
    """The dialog's visible buttons and boxes narrower than the text they show."""
    from PySide6.QtWidgets import QComboBox, QPushButton

    cut = []
    for button in dialog.findChildren(QPushButton):
        if button.isVisible() and button.width() < button.fontMetrics().horizontalAdvance(button.text()):
            cut.append(f"button {button.text()!r}: {button.width()} px")
    for box in dialog.findChildren(QComboBox):
        if box.isVisible() and box.width() < box.fontMetrics().horizontalAdvance(box.currentText()):
            cut.append(f"box {box.currentText()!r}: {box.width()} px")
    return cut


@pytest.mark.parametrize("dialog_name", ["merge", "gguf", "split"])
def test_a_dialog_at_its_minimum_width_shows_its_controls_whole_at_16_pt(qtbot, app_font_pt, tmp_path, dialog_name):
    """At 16 pt the Merge dialog's 560 px minimum cut "cat (exact)" to "cat (exa" and "Browse…" to "rowse"."""
    from engine.adapters import AdapterCard
    from gui.adapters.gguf_dialog import GgufDialog
    from gui.adapters.merge_dialog import MergeDialog
    from gui.dataset.split_dialog import SplitDialog

    def make():
        if dialog_name == "merge":
            cards = [AdapterCard(name=n, path=f"/runs/{n}/final", source="run")
                     for n in ("20261205-095443-tiny-lora-b", "20261205-095142-tiny-lora-a")]
            return MergeDialog("demo", cards)
        if dialog_name == "gguf":
            (tmp_path / "final").mkdir(exist_ok=True)
            return GgufDialog(str(tmp_path / "final"), "20261205-095142-tiny-lora-a", base="demo")
        data = tmp_path / "dataset.jsonl"
        data.write_text('{"instruction": "a", "output": "b"}\n')
        return SplitDialog(data)

    default = make()
    qtbot.addWidget(default)
    app_font_pt(16)
    dialog = make()
    qtbot.addWidget(dialog)
    assert dialog.minimumWidth() > default.minimumWidth()
    dialog.show()
    qtbot.waitExposed(dialog)
    dialog.resize(dialog.minimumWidth(), dialog.height())
    qtbot.waitUntil(lambda: dialog.width() == dialog.minimumWidth())
    assert not _cut_controls(dialog)
