"""The main window: areas, navigation, remembered geometry, screenshots, preflight."""

from __future__ import annotations

import subprocess
import sys

from gui import preflight
from gui.main_window import AREAS, MainWindow
from gui.settings import studio_settings as settings


def test_all_areas_load_and_navigate(qtbot):
    win = MainWindow(load_demo=False, restore_geometry=False)
    qtbot.addWidget(win)
    for key in AREAS:
        area = win.areas[key]
        assert area.__class__.__name__ != "QLabel", f"the {key} area failed: {area.text()}"
        win.show_area(key)
        assert win.stack.currentWidget() is area
        assert win.current_area() == key


def test_the_sidebar_follows_a_raised_font_and_shows_each_area_name_whole(qtbot, app_font_pt):
    """The sidebar's 14-px style sheet size stayed 14 px at a 16-pt desktop font, smaller than the
    areas' text; its width is now what the names need."""
    app_font_pt(16)
    win = MainWindow(load_demo=False, restore_geometry=False)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    nav = win.nav
    assert nav.fontInfo().pointSizeF() > 16
    for row in range(nav.count()):
        item = nav.item(row)
        rect = nav.visualItemRect(item)
        assert rect.right() < nav.viewport().width(), item.text()
        assert nav.fontMetrics().horizontalAdvance(item.text()) <= rect.width() - 2 * 14, item.text()
    win.discard_for_screenshot()


def test_the_checks_tab_counts_truncation_against_the_train_areas_seq_len(qtbot):
    win = MainWindow(load_demo=False, restore_geometry=False)
    qtbot.addWidget(win)
    train, checks = win.areas["train"], win.areas["dataset"].lint_panel
    assert checks.seq_len.value() == train.config_model.get("seq_len")
    train.config_model.set("seq_len", 1024)
    assert checks.seq_len.value() == 1024
    checks.seq_len.setValue(300)  # trying another length in the Checks tab leaves the run alone
    train.config_model.set("batch_size", 2)
    assert checks.seq_len.value() == 300 and train.config_model.get("seq_len") == 1024


def test_split_train_on_these_fills_the_train_areas_dataset_and_eval_file(qtbot, tmp_path):
    import shutil
    from pathlib import Path

    src = tmp_path / "demo.jsonl"
    shutil.copy(Path(__file__).resolve().parents[2] / "resources" / "demo" / "dataset.jsonl", src)
    win = MainWindow(load_demo=False, restore_geometry=False)
    qtbot.addWidget(win)
    editor, train = win.areas["dataset"], win.areas["train"]
    editor.open_file(src)
    train.config_model.set("eval_split", 0.1)
    dialog = editor.open_split_dialog()
    dialog.out_edit.setText(str(tmp_path / "parts"))
    assert not dialog.train_button.isVisible()  # nothing written yet
    assert dialog.split() and dialog.train_button.isVisible()
    dialog.train_button.click()
    assert win.current_area() == "train" and not dialog.isVisible()
    values = train.config_model.values()
    assert values["dataset"] == str(tmp_path / "parts" / "demo-train.jsonl")
    assert values["eval_dataset"] == str(tmp_path / "parts" / "demo-eval.jsonl") and values["eval_split"] == 0.0
    assert not train.config_model.errors()
    # The form scrolls to where the files went (the Data section was out of view under the model and method).
    win.resize(1024, 640)
    win.show()
    train.form_scroll.verticalScrollBar().setValue(train.form_scroll.verticalScrollBar().maximum())
    train.use_data_files(values["dataset"], values["eval_dataset"])
    qtbot.waitUntil(lambda: train.editors["dataset"].visibleRegion().boundingRect().height() > 0, timeout=2000)


def test_the_prompt_preview_follows_the_train_areas_loss_on_template_and_added_tokens(qtbot, tmp_path):
    win = MainWindow(load_demo=False, restore_geometry=False)
    qtbot.addWidget(win)
    train, preview = win.areas["train"], win.areas["dataset"].preview
    assert preview.loss_on == "answers" and preview.template.currentText() == "auto"
    train.config_model.set("loss_on", "all")
    assert preview.loss_on == "all"
    train.config_model.set("template", "gemma")
    assert preview.template.currentText() == "gemma"
    train.config_model.set("template", str(tmp_path / "mine.jinja"))
    assert preview.template.currentText() == str(tmp_path / "mine.jinja")
    assert preview.add_tokens == []
    train.config_model.set("add_tokens", ["<|eot_id|>"])
    assert preview.add_tokens == ["<|eot_id|>"]


def test_geometry_is_remembered(qtbot):
    win = MainWindow(load_demo=False, restore_geometry=True)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    win.resize(1111, 777)
    win.show_area("adapters")
    win._screenshot_mode = False
    win.close()
    assert settings().value("main/area") == "adapters"
    again = MainWindow(load_demo=False, restore_geometry=True)
    qtbot.addWidget(again)
    again.show()
    qtbot.waitExposed(again)
    assert (again.width(), again.height()) == (1111, 777)
    assert again.current_area() == "adapters"


def test_screenshot_command_writes_png(tmp_path):
    out = tmp_path / "main.png"
    proc = subprocess.run([sys.executable, "-m", "engine", "--screenshot", str(out), "--tab", "dataset"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


def test_missing_xcb_library_names_the_package():
    msg = preflight.missing_message(["libxcb-cursor.so.0"], "its window (Qt xcb platform)")
    assert "libxcb-cursor.so.0" in msg and "sudo apt-get install libxcb-cursor0" in msg


def test_no_display_gives_advice_not_a_crash(monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert "QT_QPA_PLATFORM=offscreen" in preflight.check_display()


def test_xcb_check_reads_ldd(monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb")
    monkeypatch.setenv("DISPLAY", ":99")
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(preflight, "xcb_missing_libs", lambda: ["libxkbcommon-x11.so.0"])
    assert "libxkbcommon-x11-0" in preflight.check_display()


def test_compare_from_the_train_and_runs_areas_opens_the_comparison(qtbot):
    import shutil

    from engine.paths import demo_model_dir, runs_dir
    from gui.adapters.compare_dialog import CompareDialog

    run = runs_dir() / "20261202-120000-full"  # a finished full run: a whole model in final/
    shutil.copytree(demo_model_dir(), run / "final")
    (run / "run.yaml").write_text("model: demo\nmethod: full\ndataset: demo\n", encoding="utf-8")
    win = MainWindow(load_demo=False, restore_geometry=False)
    qtbot.addWidget(win)
    for source in (win.areas["train"], win.areas["runs"]):
        win.show_area("dataset")
        source.sig_compare_adapters.emit([str(run / "final")])
        assert win.current_area() == "adapters"
        dialogs = [w for w in win.areas["adapters"].findChildren(CompareDialog) if w.isVisible()]
        assert dialogs and dialogs[-1].cards[-1].path == str(run / "final")
        for d in dialogs:
            d.close()


def test_a_left_out_record_opens_in_the_dataset_area_from_its_advice(qtbot, tmp_path):
    """A run's warning about records it left out offers to show the first one, at its line."""
    from PySide6.QtWidgets import QPushButton

    path = tmp_path / "typed.jsonl"
    path.write_text('{"instruction": "fine", "output": "yes"}\n\n{"instruction": ["a", "list"], "output": "x"}\n'
                    '{"instruction": "also fine", "output": "ok"}\n', encoding="utf-8")
    win = MainWindow(load_demo=False, restore_geometry=False)
    qtbot.addWidget(win)
    train, editor = win.areas["train"], win.areas["dataset"]
    win.show_area("train")
    advice = train.advisor.on_event("warning", {
        "kind": "dropped", "path": str(path), "message": f"1 record of {path} can't train and was left out: "
        "line 3: 'instruction' is a list, expected text",
        "records": [{"index": 1, "line": 3, "message": "'instruction' is a list, expected text"}]})
    assert advice[0].where == (str(path), 3)
    train.advisor_panel.add_all(advice)
    card = train.advisor_panel.cards["dropped"]
    (show,) = [b for b in card.findChildren(QPushButton) if b.text() == "Show in the Dataset area"]
    show.click()
    assert win.current_area() == "dataset" and editor.path() == path
    assert editor.current_record_index() == 1 and editor.dataset().records[1].line == 3
    # A line with no record now (the file changed since): a banner says so, nothing is selected wrongly.
    assert not editor.show_line(path, 2)
    assert "no record at line 2" in editor.banner.label.text()
    # A Hugging Face cache dataset's lines are in the cache's files: no button for it.
    assert train.advisor.on_event("warning", {"kind": "dropped", "path": "org/name:train", "message": "m",
                                              "records": [{"index": 0, "line": 1}]})[0].where is None


def test_the_train_form_is_as_it_was_when_the_app_last_closed(qtbot, tmp_path):
    """A researcher who split their data and set up a run finds the form so after a restart, not
    the demo preset (whose Start would train on the shipped demo dataset, not their file)."""
    import shutil
    from pathlib import Path

    data = tmp_path / "mine-train.jsonl"
    shutil.copy(Path(__file__).resolve().parents[2] / "resources" / "demo" / "dataset.jsonl", data)
    shutil.copy(data, tmp_path / "mine-eval.jsonl")
    win = MainWindow(load_demo=False, restore_geometry=False, reopen_last=True)
    qtbot.addWidget(win)
    train = win.areas["train"]
    train.config_model.update({"dataset": str(data), "eval_dataset": str(tmp_path / "mine-eval.jsonl"),
                               "eval_split": 0.0, "learning_rate": 0.001, "lora_r": 4})
    win.close()

    again = MainWindow(load_demo=False, restore_geometry=False, reopen_last=True)
    qtbot.addWidget(again)
    values = again.areas["train"].config_model.values()
    assert values["dataset"] == str(data) and values["eval_dataset"] == str(tmp_path / "mine-eval.jsonl")
    assert (values["eval_split"], values["learning_rate"], values["lora_r"]) == (0.0, 0.001, 4)
    assert not again.areas["train"].config_model.errors()
    assert again.areas["dataset"].lint_panel.seq_len.value() == values["seq_len"]

    # The run Resume continued is remembered too: a stopped run can be resumed after the restart.
    from tests.gui.runs.test_runs_area import make_run

    stopped = make_run("20261204-120000-lora", "stopped", steps=12, checkpoint=True)
    again.areas["train"].run_dir = str(stopped)
    again.close()
    third = MainWindow(load_demo=False, restore_geometry=False, reopen_last=True)
    qtbot.addWidget(third)
    assert third.areas["train"].run_dir == str(stopped)
    # Resume is about that run (here it says the form's LoRA rank differs from what its checkpoints hold).
    assert third.areas["train"].resume_button.toolTip().startswith("20261204-120000-lora: a resume can't change")
    from engine.config import RunConfig

    third.areas["train"].config_model.set_config(RunConfig.load(stopped / "run.yaml"))
    assert third.areas["train"].resume_button.isEnabled()

    # --demo (reopen_last False) opens the app on the demo: the demo preset's form.
    demo = MainWindow(load_demo=False, restore_geometry=False)
    qtbot.addWidget(demo)
    assert demo.areas["train"].config_model.get("dataset") == "demo"


def test_a_run_that_ends_in_the_train_area_is_the_one_selected_in_the_runs_area(qtbot):
    """Back in Runs after a run, its curves and actions (Try it, Open config) are there, not
    "Select one or more runs"; a probe's throwaway folder leaves the selection alone."""
    import json
    import time

    from engine.config import RunConfig
    from engine.paths import runs_dir

    def make_run(name: str, summary: dict) -> str:
        path = runs_dir() / name
        (path / "final").mkdir(parents=True)
        # A LoRA adapter as far as its files say: Try it reads its card (an empty final/ can't be tried).
        (path / "final" / "adapter_config.json").write_text('{"peft_type": "LORA"}')
        (path / "final" / "adapter_model.safetensors").write_bytes(b"")
        RunConfig(max_steps=10).save(path / "run.yaml")
        (path / "summary.json").write_text(json.dumps({"started": time.time() - 60, "finished": time.time(),
                                                       "step": 10, **summary}))
        return str(path)

    older = make_run("20261204-100000-lora", {"status": "completed"})
    win = MainWindow(load_demo=False, restore_geometry=False)
    qtbot.addWidget(win)
    train, runs = win.areas["train"], win.areas["runs"]
    runs.select_paths([older])
    new = make_run("20261204-110000-lora", {"status": "completed"})
    train.sig_run_finished.emit({"output_dir": new, "status": "completed"})
    win.show_area("runs")
    assert [str(r.path) for r in runs.selected_runs()] == [new]
    assert runs.try_button.isEnabled() and runs.config_button.isEnabled()

    probe = make_run("20261204-120000-lora-probe", {"status": "completed", "probe": {"steps": 10}})
    train.sig_run_finished.emit({"output_dir": probe, "status": "completed", "probe": {"steps": 10}})
    assert [str(r.path) for r in runs.selected_runs()] == [new]
    assert runs.model.rowCount() == 3


def test_the_dataset_areas_messages_reach_the_status_bar(qtbot, tmp_path):
    """Save, a record kept as text and an export per answer each say what happened, in the
    window's status bar (they were emitted to nothing: the bar said "Ready" after a save)."""
    path = tmp_path / "small.jsonl"
    path.write_text('{"instruction": "a", "output": "b"}\n{"instruction": "c", "output": "d"}\n', encoding="utf-8")
    win = MainWindow(load_demo=False, restore_geometry=False)
    qtbot.addWidget(win)
    editor = win.areas["dataset"]
    editor.open_file(path)
    assert win.statusBar().currentMessage().startswith("Opened small.jsonl")
    editor.select_record(0)
    editor.form.field_edit("output").setPlainText("b, checked")
    editor.form.flush()
    assert editor.save()
    assert win.statusBar().currentMessage().startswith(f"Saved 2 records to {path}")
    assert editor.save_as(tmp_path / "copy.jsonl")  # what Save on the demo does: your own copy
    assert win.statusBar().currentMessage().startswith(f"Saved 2 records to {tmp_path / 'copy.jsonl'}")
    assert editor.export_per_answer(tmp_path / "per-answer.jsonl")
    assert f"Wrote {tmp_path / 'per-answer.jsonl'}" in win.statusBar().currentMessage()
    editor.form.json_button.setChecked(True)
    editor.form.raw.setPlainText('{"instruction": "a" "output": "b"}')  # a comma left out
    editor.form.flush()
    editor.select_record(1)
    assert "Record 1 is kept as text: its JSON doesn't parse" in win.statusBar().currentMessage()
    editor.undo_stack.setClean()  # closing must not ask about the broken record
    one = tmp_path / "one.jsonl"
    one.write_text('{"instruction": "a", "output": "b"}\n', encoding="utf-8")
    editor.open_file(one)
    assert editor.save_as(tmp_path / "one-copy.jsonl")
    assert win.statusBar().currentMessage().startswith(f"Saved 1 record to {tmp_path / 'one-copy.jsonl'}")  # "1 records"


def test_starting_a_run_replaces_the_last_runs_line_in_the_status_bar(qtbot, monkeypatch):
    """A probe's "finished" line stayed 30 s into the next run."""
    from engine.precision import Environment
    from gui.train import area as area_module

    monkeypatch.setattr(area_module, "CPU_TRAINING_NICE", 0)
    monkeypatch.setattr(area_module, "detect_environment_isolated", Environment.cpu_only)
    win = MainWindow(load_demo=False, restore_geometry=False)
    qtbot.addWidget(win)
    train = win.areas["train"]
    train.apply_preset("demo")
    qtbot.waitUntil(lambda: train.env is not None, timeout=30_000)
    win.statusBar().showMessage("Probe finished: 10 steps, 0.1 s per step", 30_000)
    try:
        assert train.start_run(), train.banner.text()
        assert win.statusBar().currentMessage() == "Training lora on demo…"
    finally:
        train.run.kill()
        qtbot.waitUntil(lambda: not train.run.is_active(), timeout=30_000)  # closing asks about a live run


def test_a_failed_runs_fix_opens_its_config_in_the_train_area_with_the_fix(qtbot, studio_home):
    import json

    from PySide6.QtCore import Qt

    from engine.config import RunConfig
    from engine.paths import runs_dir

    path = runs_dir() / "20261205-011529-boom"
    path.mkdir(parents=True)
    cfg = RunConfig.from_dict({"model": "demo", "dataset": "demo", "learning_rate": 10.0, "max_steps": 20,
                               "output_dir": str(path)})
    cfg.save(path / "run.yaml")
    (path / "summary.json").write_text(json.dumps({
        "status": "failed", "started": 1.0, "finished": 2.0, "step": 4, "config": cfg.to_dict(),
        "error": {"kind": "nonfinite", "message": "the gradient norm became non-finite at step 5",
                  "fix": {"learning_rate": 1.25}, "step": 5}}))
    win = MainWindow(load_demo=False, restore_geometry=False)
    qtbot.addWidget(win)
    train, runs = win.areas["train"], win.areas["runs"]
    win.show_area("runs")
    runs.select_paths([path])
    qtbot.mouseClick(runs.fix_button, Qt.MouseButton.LeftButton)
    assert win.current_area() == "train"
    values = train.config_model.values()
    assert values["learning_rate"] == 1.25 and values["max_steps"] == 20


def test_the_appearance_menu_switches_light_and_dark_at_once_and_is_remembered(qtbot, qapp):
    from PySide6.QtGui import QPalette

    from gui.scheme import SCHEME_KEY, is_dark

    old = qapp.palette()
    win = MainWindow(load_demo=False, restore_geometry=False)
    qtbot.addWidget(win)
    plot = win.areas["train"].plots.loss.widget
    actions = {a.data(): a for a in win.appearance_actions.actions()}
    assert set(actions) == {"system", "light", "dark"} and actions["system"].isChecked()
    try:
        win.show()
        win.show_area("train")
        actions["dark"].trigger()
        assert settings().value(SCHEME_KEY) == "dark" and is_dark(qapp.palette())
        base = qapp.palette().color(QPalette.ColorRole.Base)
        qtbot.waitUntil(lambda: plot.backgroundBrush().color() == base)  # the plots follow while it runs
        # So do widgets with a style sheet (the area list's palette(window)), which Qt left light.
        qtbot.waitUntil(lambda: win.nav.grab().toImage().pixelColor(3, win.nav.height() - 3).lightnessF() < 0.5)
        actions["system"].trigger()
        assert settings().value(SCHEME_KEY) == "system" and not is_dark(qapp.palette())
        qtbot.waitUntil(lambda: plot.backgroundBrush().color() == qapp.palette().color(QPalette.ColorRole.Base))
    finally:
        qapp.setPalette(old)
    again = MainWindow(load_demo=False, restore_geometry=False)
    qtbot.addWidget(again)
    assert {a.data(): a.isChecked() for a in again.appearance_actions.actions()}["system"]


def test_the_color_scheme_flag_takes_only_known_schemes(capsys):
    import pytest

    from gui.app import _parse

    assert _parse(["--color-scheme", "dark"]).color_scheme == "dark"
    assert _parse([]).color_scheme is None  # the Appearance setting decides
    with pytest.raises(SystemExit):
        _parse(["--color-scheme", "dim"])
    assert "--color-scheme: invalid choice: 'dim'" in capsys.readouterr().err


def test_the_command_hands_the_color_scheme_to_the_window(monkeypatch):
    from engine import cli

    handed = []
    monkeypatch.setattr(cli, "_run_gui", lambda argv: handed.append(list(argv)) or 0)
    assert cli._main(["--screenshot", "out.png", "--tab", "runs", "--color-scheme", "dark"]) == 0
    assert handed == [["--screenshot", "out.png", "--tab", "runs", "--color-scheme", "dark"]]
