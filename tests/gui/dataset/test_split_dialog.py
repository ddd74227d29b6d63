"""The editor's Split…: a train file and a held-out eval file, as a run would split them."""

from __future__ import annotations

import json

from PySide6.QtWidgets import QMessageBox

from engine.data import load_dataset_file
from engine.data.split import train_eval_split


def test_split_writes_the_runs_split_and_says_where(make_editor, demo_copy, tmp_path):
    ed = make_editor(demo_copy)
    assert ed.act_split.isEnabled()
    dialog = ed.open_split_dialog()
    assert dialog.command()[:3] == ["data", "split", str(demo_copy)]
    out = tmp_path / "parts"
    dialog.out_edit.setText(str(out))
    dialog.ratio.setValue(0.2)
    dialog.seed.setValue(7)
    assert dialog.split()
    records = load_dataset_file(demo_copy).records
    train_idx, eval_idx = train_eval_split(len(records), 0.2, 7)
    held = load_dataset_file(out / "demo-eval.jsonl").records
    assert [r.data for r in held] == [records[i].data for i in eval_idx]
    assert len(load_dataset_file(out / "demo-train.jsonl").records) == len(train_idx)
    assert f"{len(eval_idx):,} records to {out / 'demo-eval.jsonl'}" in dialog.status.text()
    # Again without "Replace": the engine's refusal is shown, the files stay.
    before = (out / "demo-eval.jsonl").read_bytes()
    assert not dialog.split() and "exists" in dialog.status.text()
    assert (out / "demo-eval.jsonl").read_bytes() == before
    dialog.force.setChecked(True)
    assert dialog.split()
    assert dialog.grab().save(str(tmp_path / "split.png"))


def test_unsaved_edits_are_saved_first_or_nothing_is_split(make_editor, demo_copy, monkeypatch):
    ed = make_editor(demo_copy)
    ed.add_record()
    assert ed.is_dirty()
    monkeypatch.setattr(ed, "_ask_save_before_split", lambda: QMessageBox.StandardButton.Cancel)
    assert ed.open_split_dialog() is None and ed.is_dirty()
    monkeypatch.setattr(ed, "_ask_save_before_split", lambda: QMessageBox.StandardButton.Save)
    dialog = ed.open_split_dialog()
    assert dialog is not None and not ed.is_dirty()
    assert len(load_dataset_file(demo_copy).records) == 367  # the added record is in the file that is split


def test_broken_records_are_refused_with_their_line(make_editor, broken_file, tmp_path):
    ed = make_editor(broken_file)
    dialog = ed.open_split_dialog()
    dialog.out_edit.setText(str(tmp_path / "out"))
    assert not dialog.split()
    assert "1 broken record(s)" in dialog.status.text() and "line 3" in dialog.status.text()
    assert not (tmp_path / "out" / "broken-train.jsonl").exists()
    json.dumps(dialog.command())  # plain values only


def test_one_record_per_answer_from_the_checks_tab(make_editor, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QFileDialog

    turns = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
             {"role": "user", "content": "Bye"}, {"role": "assistant", "content": "Ciao."}]
    src = tmp_path / "chats.jsonl"
    src.write_text(json.dumps({"messages": turns}) + "\n" + json.dumps({"messages": turns[:2]}) + "\n")
    ed = make_editor(src)
    out = tmp_path / "chats-per-answer.jsonl"
    asked = []
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        staticmethod(lambda _parent, _title, suggested, _filter: (asked.append(suggested),
                                                                                    (str(out), ""))[1]))
    ed.lint_panel.sig_per_answer.emit()  # the hidden-answer rule's "Write one record per answer…"
    assert asked == [str(tmp_path / "chats-per-answer.jsonl")]
    assert [r.messages() for r in load_dataset_file(out).records] == [turns[:2], turns, turns[:2]]
    assert ed.path() == src and not ed.is_dirty()  # the editor stays on its own file


def test_a_folder_that_can_not_be_made_is_named(make_editor, demo_copy, tmp_path):
    ed = make_editor(demo_copy)
    dialog = ed.open_split_dialog()
    dialog.out_edit.setText(str(demo_copy / "sub"))
    assert not dialog.split()
    assert f"'{demo_copy}' is a file" in dialog.status.text() and not dialog.train_button.isVisible()
    dialog.out_edit.setText(str(tmp_path / "out"))
    assert dialog.split()
    assert not dialog.split()  # the files exist now: the dialog points at its own checkbox, not at --force
    assert 'Tick "Replace the files if they exist"' in dialog.status.text() and "--force" not in dialog.status.text()
    assert not dialog.train_button.isVisibleTo(dialog)


def test_the_eval_share_takes_what_the_engine_takes(make_editor, demo_copy, tmp_path):
    """The dialog's bounds are data split's: a run's eval_split maximum, the engine's one check."""
    from engine.config import RunConfig

    ed = make_editor(demo_copy)
    dialog = ed.open_split_dialog()
    most = RunConfig.field_meta()["eval_split"]["max"]
    assert dialog.ratio.maximum() == most and dialog.ratio.minimum() > 0
    dialog.ratio.setValue(0.9)  # more can't be entered
    assert dialog.ratio.value() == most and "--eval-ratio 0.5" in " ".join(dialog.command())
    dialog.out_edit.setText(str(tmp_path / "half"))
    assert dialog.split()
    assert dialog.grab().save(str(tmp_path / "split-half.png"))


def test_the_dialog_keeps_its_size_as_messages_come_and_go(make_editor, demo_copy, qtbot):
    """Each message used to resize the dialog (adjustSize), so it jumped under the user's pointer.
    Room for the usual messages is kept from the start; only a longer one grows it, and nothing
    shrinks it back. (A short folder here: pytest's own tmp_path is long enough to wrap each path.)"""
    import shutil
    import tempfile
    from pathlib import Path

    folder = Path(tempfile.mkdtemp(prefix="s-"))
    try:
        ed = make_editor(demo_copy)
        dialog = ed.open_split_dialog()
        dialog.show()
        qtbot.waitExposed(dialog)
        size = dialog.size()
        dialog.out_edit.setText("")
        assert not dialog.split() and "Choose a folder" in dialog.status.text()
        assert dialog.size() == size
        dialog.out_edit.setText(str(folder / "out"))
        assert dialog.split()  # the longest usual message: two files and a three-line note
        assert dialog.status.height() >= dialog.status.heightForWidth(dialog.status.width())  # none of it cut
        short = len(str(folder)) <= 24  # each path on one line: no growing at all
        assert dialog.size() == size if short else dialog.size().height() >= size.height()
        grown = dialog.size()
        assert not dialog.split() and "exists" in dialog.status.text()
        assert dialog.size() == grown  # a shorter message doesn't shrink it
        dialog.out_edit.setText(str(folder / "out2"))
        assert dialog.split()
        assert dialog.size() == grown if short else dialog.size().height() >= grown.height()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_the_ratio_is_named_as_the_train_area_names_it(make_editor, demo_copy):
    from PySide6.QtWidgets import QFormLayout

    from gui.train.fields import label_for

    dialog = make_editor(demo_copy).open_split_dialog()
    form = next(item.layout() for item in (dialog.layout().itemAt(i) for i in range(dialog.layout().count()))
                if isinstance(item.layout(), QFormLayout))
    assert form.labelForField(dialog.ratio).text() == label_for("eval_split") + ":"
    assert "eval_split" in dialog.ratio.toolTip()  # the tooltip names the config key the user may meet
