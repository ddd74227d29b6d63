"""The Train area's form: every key editable, tooltips, methods, invalid combinations,
presets, YAML save/load and "Copy as command"."""

from __future__ import annotations

import json
import shlex

import pytest
from PySide6.QtWidgets import QScrollArea

from engine.config import RunConfig
from engine.paths import presets_dir
from gui.train.fields import ERROR_COLOR, WARNING_COLOR


def test_every_config_key_has_an_editor_with_its_help_as_tooltip(make_area):
    area = make_area()
    meta = RunConfig.field_meta()
    special = {"model", "method", "load_in", "mixed_precision"}  # picker, method combo, precision grid
    assert set(area.editors) | special == set(meta)
    for key, editor in area.editors.items():
        assert meta[key]["help"] in editor.toolTip(), key
    assert meta["model"]["help"] in area.model_picker.combo.toolTip()
    assert meta["method"]["help"] in area.method_picker.combo.toolTip()


def test_method_shows_only_its_own_settings(make_area):
    from engine.methods import METHODS

    area = make_area()
    picker = area.method_picker
    for name, method in METHODS.items():
        picker.combo.setCurrentIndex(picker.combo.findData(name))
        picker.combo.activated.emit(picker.combo.currentIndex())
        assert area.config_model.get("method") == name
        assert set(picker.visible_settings()) == set(method.settings), name
        assert picker.no_settings.isVisible() == (not method.settings)


def test_invalid_precision_combinations_are_disabled_with_the_reason(make_area):
    area = make_area()  # no GPU
    grid = area.precision_grid
    for mp in ("no", "fp16", "bf16"):
        assert not grid.is_enabled("nf4", mp)
        assert "needs a CUDA GPU" in grid.cells[("nf4", mp)].toolTip()
    assert not grid.is_enabled("fp32", "fp16")
    assert "fp16" in grid.cells[("fp32", "fp16")].toolTip()
    assert grid.is_enabled("fp32", "no") and grid.is_enabled("bf16", "bf16")
    # Full fine-tuning can't train quantized or fp16 weights, whatever the machine.
    area.config_model.update({"method": "full", "load_in": "fp32", "mixed_precision": "no"})
    assert not grid.is_enabled("fp16", "no")
    assert "full" in grid.cells[("fp16", "no")].toolTip()
    # 8-bit optimizers are disabled on a CPU-only machine, with the reason.
    opt = area.editors["optimizer"].combo
    item = opt.model().item(opt.findText("adamw_8bit"))
    assert not item.isEnabled() and "CPU" in item.toolTip()


def test_machine_rules_follow_the_detected_gpu(make_area, gpu_env):
    area = make_area(gpu_env)  # a GPU without native bf16
    grid = area.precision_grid
    assert grid.is_enabled("nf4", "fp16") and grid.is_enabled("fp32", "fp16")
    assert not grid.is_enabled("bf16", "bf16")
    assert "bf16" in grid.cells[("bf16", "bf16")].toolTip()
    # Choosing QLoRA moves the precision to a valid cell (4-bit NF4) by itself.
    picker = area.method_picker
    picker.combo.setCurrentIndex(picker.combo.findData("qlora"))
    picker.combo.activated.emit(picker.combo.currentIndex())
    assert area.config_model.get("load_in") == "nf4"
    assert area.config_model.errors() == {}
    assert "Test GPU 24GB" in area.gpu_panel.label.text()


def test_qlora_on_a_cpu_says_it_needs_a_gpu_and_still_gets_an_estimate(make_area, qtbot):
    """No precision is possible for QLoRA without CUDA; the form must not ask for the
    crossed-out nf4 cell ("Set load_in: nf4") and refuse to estimate a legitimate plan."""
    area = make_area()  # no GPU
    picker = area.method_picker
    picker.combo.setCurrentIndex(picker.combo.findData("qlora"))
    picker.combo.activated.emit(picker.combo.currentIndex())
    assert area.config_model.get("load_in") == "nf4"
    assert "needs a CUDA GPU" in area.banner.text()
    assert "Set load_in: nf4" not in area.banner.text()
    assert not area.start_button.isEnabled()
    assert area.config_model.config_ignoring_machine() is not None  # the estimate can plan it
    assert area.estimator.wait(120_000)
    assert area.gauge.estimate is not None, area.gauge.details.text()


def test_no_gpu_is_said_plainly(make_area):
    area = make_area()
    assert "training will run on the cpu" in area.gpu_panel.label.text().lower()


def test_bad_value_names_the_key_and_blocks_start(make_area, qtbot):
    area = make_area()
    edit = area.editors["learning_rate"].edit
    edit.clear()
    qtbot.keyClicks(edit, "fast")
    assert not area.start_button.isEnabled()
    assert "learning_rate" in area.banner.text() and area.banner.isVisible()
    assert "learning_rate" in area.editors["learning_rate"].toolTip()
    edit.clear()
    qtbot.keyClicks(edit, "1e-4")
    assert area.config_model.get("learning_rate") == pytest.approx(1e-4)
    assert area.start_button.isEnabled() and not area.banner.isVisible()


def test_nan_learning_rate_is_refused_and_blocks_start(make_area, qtbot):
    # float("nan") parses, and NaN compares False with both bounds: the engine must refuse it by name.
    area = make_area()
    edit = area.editors["learning_rate"].edit
    edit.clear()
    qtbot.keyClicks(edit, "nan")
    assert not area.start_button.isEnabled()
    # The key is said once, after the field's label.
    assert "• Learning rate (learning_rate): must be between 0.0 and 10.0, got nan" in area.banner.text()
    assert "got nan" in area.editors["learning_rate"].toolTip()


def test_a_seed_past_a_32_bit_int_shows_and_edits_in_the_field(make_area, qtbot, tmp_path):
    # QSpinBox holds a C int: set_value raised OverflowError and the field kept the old seed.
    area = make_area()
    path = tmp_path / "bigseed.yaml"
    path.write_text("model: demo\nseed: 3000000000\nmax_steps: 3\n")
    assert area.load_config_file(path)
    spin = area.editors["seed"].spin
    assert area.config_model.get("seed") == 3_000_000_000 and spin.text() == "3000000000"
    assert spin.maximum() == 2**32 - 1
    spin.selectAll()
    qtbot.keyClicks(spin, "4294967295")
    assert area.config_model.get("seed") == 4_294_967_295 and area.editors["seed"].value() == 4_294_967_295
    assert isinstance(area.config_model.get("seed"), int) and area.start_button.isEnabled()


@pytest.mark.parametrize("name", ["demo", "full", "lora", "qlora"])
def test_presets_load_and_apply(make_area, name):
    cfg = RunConfig.load(presets_dir() / f"{name}.yaml")  # every shipped preset is a valid config
    area = make_area()
    area.config_model.set("model", "/somewhere/my-model")
    area.apply_preset(name)
    values = area.config_model.values()
    assert values["method"] == cfg.method and values["learning_rate"] == cfg.learning_rate
    assert values["model"] == ("demo" if name == "demo" else "/somewhere/my-model")
    if name == "full":
        assert (values["batch_size"], values["gradient_accumulation_steps"], values["num_epochs"],
                values["learning_rate"]) == (4, 8, 3.0, 2e-5)
    if name == "lora":
        assert (values["lora_r"], values["lora_alpha"], values["lora_target_modules"],
                values["lora_dropout"]) == (8, 32, ["q_proj", "v_proj"], 0.05)
    if name == "qlora":
        assert values["load_in"] == "nf4"
        assert "load_in" in area.config_model.errors()  # no GPU here: said, not hidden


def test_save_and_load_yaml_round_trip(make_area, tmp_path):
    area = make_area()
    area.config_model.update({"lora_r": 4, "learning_rate": 5e-4, "lora_target_modules": ["q_proj", "k_proj"],
                              "max_steps": 7, "run_name": "round trip"})
    path = tmp_path / "mine.yaml"
    area.save_config_file(path)
    assert "# LoRA rank" in path.read_text()
    other = make_area()
    assert other.load_config_file(path)
    assert other.config_model.values() == area.config_model.values()


def test_loading_a_broken_yaml_reports_the_line(make_area, tmp_path):
    area = make_area()
    path = tmp_path / "bad.yaml"
    path.write_text("method: lora\nlora_r: [\n")
    before = area.config_model.values()
    assert not area.load_config_file(path)
    assert f"{path}:" in area.banner.text() and area.config_model.values() == before


def test_loading_an_empty_config_file_is_refused_as_the_cli_refuses_it(make_area, tmp_path):
    """An empty file filled the form with every default (the demo), which Start then trained."""
    area = make_area()
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing yet\n")
    area.config_model.update({"max_steps": 7})
    before = area.config_model.values()
    assert not area.load_config_file(path)
    assert f"{path}: the file holds no keys (it is empty, or only blank lines and comments)" in area.banner.text()
    assert area.config_model.values() == before


def test_copy_as_command_gives_the_exact_cli_line(make_area, qtbot, tmp_path):
    from PySide6.QtGui import QGuiApplication

    from engine.cli import _split_overrides, build_parser

    area = make_area()
    area.config_model.update({"max_steps": 30, "save_steps": 10, "mixed_precision": "bf16",
                              "lora_target_modules": ["q_proj", "v_proj"], "learning_rate": 2.5e-4,
                              "run_name": "my run", "seed": 7, "eval_split": 0.0, "packing": True})
    area.command_action.trigger()  # the Config menu's "Copy as command"
    line = QGuiApplication.clipboard().text()
    assert line == area.command_line()
    argv = shlex.split(line)
    assert argv[:2] == ["finetune-studio", "train"]
    assert "--max_steps" in argv and "--model" not in argv  # only what differs from the YAML
    parser = build_parser()
    args, rest = parser.parse_known_args(argv[1:])
    cfg = RunConfig.load(args.config, _split_overrides(parser, rest))
    assert cfg.to_dict() == area.config_model.config().to_dict()
    assert "--run_name 'my run'" in line  # as typed, not YAML-quoted ("'my run'")

    # A YAML without learning_rate: --method full alone would train at full's 2e-5.
    bare = tmp_path / "bare.yaml"
    bare.write_text("model: demo\nmethod: lora\n")
    assert area.load_config_file(bare)
    area.config_model.update({"method": "full", "learning_rate": 2e-4, "load_in": "fp32", "mixed_precision": "no"})
    argv = shlex.split(area.command_line())
    assert "--learning_rate" in argv
    args, rest = parser.parse_known_args(argv[1:])
    assert RunConfig.load(args.config, _split_overrides(parser, rest)).to_dict() == area.config_model.config().to_dict()


@pytest.mark.parametrize("name", ["no", "#1 run", "[x]", "12", "'quoted'", "it's", "a: b", " padded ", "-x"])
def test_copy_as_command_reads_back_every_text(make_area, name):
    from engine.cli import _split_overrides, build_parser

    area = make_area()
    area.config_model.update({"run_name": name})
    argv = shlex.split(area.command_line())
    parser = build_parser()
    args, rest = parser.parse_known_args(argv[1:])
    assert RunConfig.load(args.config, _split_overrides(parser, rest)).run_name == name


def test_an_impossible_chosen_precision_stays_visible_in_the_grid(make_area):
    """int8 from a YAML on a CPU-only machine: the grid shows that cell chosen, in red, with why.

    Disabled cells draw no radio indicator, so a chosen impossible cell used to look like every
    other ✕ and nothing in the grid looked chosen.
    """
    area = make_area()  # no GPU
    grid = area.precision_grid
    area.config_model.update({"load_in": "int8", "mixed_precision": "no"})
    cell = grid.cells[("int8", "no")]
    assert cell.isEnabled() and cell.isChecked() and cell.text() == "✕"
    assert "#b71c1c" in cell.styleSheet()
    assert "Chosen, but not possible" in cell.toolTip() and "needs a CUDA GPU" in cell.toolTip()
    assert not grid.is_enabled("int8", "no")  # still not a possible combination
    assert not grid.cells[("int8", "bf16")].isEnabled()
    # Picking a possible cell: the old one is an ordinary crossed-out cell again.
    grid.cells[("fp32", "no")].click()
    assert area.config_model.get("load_in") == "fp32"
    assert not cell.isEnabled() and cell.styleSheet() == "" and "Chosen" not in cell.toolTip()
    assert area.config_model.errors() == {}


def test_a_long_run_status_line_wraps_instead_of_squeezing_the_form(make_area, qtbot):
    area = make_area()
    form = area.findChild(QScrollArea).widget()
    qtbot.waitUntil(lambda: form.width() > 0)
    roomy = form.width()
    area.progress_label.setText("Run completed in 0:27; final loss 2.1059 (mean of the last 10 steps). Folder: "
                                "/home/someone/.local/share/finetune-studio/runs/20261129-015756-lora-with-a-long-name")
    qtbot.wait(50)  # a layout pass
    # The form keeps the room its fields need (it has no horizontal scroll bar: narrower clips them).
    assert form.width() >= form.minimumSizeHint().width() and form.width() == roomy
    assert area.progress_label.wordWrap()


@pytest.mark.parametrize(("every", "said"), [(1, "(mean of the last 10 steps)"),
                                              (5, "(mean of the 10 losses logged over the last 50 steps)")])
def test_the_end_line_says_how_many_steps_the_final_loss_covers(make_area, tmp_path, every, said):
    """With logging_steps 5 the line said "mean of the last 10 steps" for a mean over 50 steps, as `train`
    and `runs show` did."""
    import json

    area = make_area()
    run = tmp_path / "run"
    run.mkdir()
    rows = [{"step": s, "loss": 2.0} for s in range(every, 60 + 1, every)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    area._on_finished({"status": "completed", "output_dir": str(run), "final_loss": 2.0,
                       "final_loss_mean": 2.0, "final_loss_window": 10})
    assert f"final loss 2.0000 {said}" in area.progress_label.text()


def test_warmup_steps_lock_the_warmup_ratio_saying_why(make_area, qtbot):
    area = make_area()
    ratio = area.editors["warmup_ratio"]
    assert ratio.isEnabled() and area.config_model.get("warmup_steps") == 0
    area.config_model.set("warmup_steps", 100)
    assert not ratio.isEnabled() and ratio.toolTip().startswith("Warm-up steps (100) replace the ratio.")
    assert area.config().warmup_steps == 100
    area.config_model.set("warmup_steps", 0)
    assert ratio.isEnabled() and ratio.toolTip().startswith("Fraction of steps spent warming")


def test_an_eval_file_replaces_the_eval_split_and_loading_both_names_the_conflict(make_area, qtbot, tmp_path):
    area = make_area()
    area.apply_preset("demo")
    assert area.config_model.get("eval_split") == 0.05 and area.editors["eval_split"].isEnabled()
    held_out = tmp_path / "held-out.jsonl"
    held_out.write_text('{"instruction": "q", "output": "a"}\n', encoding="utf-8")
    qtbot.keyClicks(area.editors["eval_dataset"].edit, str(held_out))
    # Typing an eval file sets the split to 0 (the whole dataset trains) and locks it, saying why.
    assert area.config_model.get("eval_dataset") == str(held_out)
    assert area.config_model.get("eval_split") == 0.0 and not area.editors["eval_split"].isEnabled()
    assert "every record of the dataset trains" in area.editors["eval_split"].toolTip()
    assert area.start_button.isEnabled() and not area.banner.isVisible()
    area.editors["eval_dataset"].edit.clear()
    qtbot.keyClick(area.editors["eval_dataset"].edit, "x")
    qtbot.keyClick(area.editors["eval_dataset"].edit, "\b")
    assert area.config_model.get("eval_dataset") == "" and area.editors["eval_split"].isEnabled()
    assert area.editors["eval_split"].toolTip().startswith("Fraction of records held out")
    # A config file with both is refused, and the banner names the key and the way out.
    path = tmp_path / "both.yaml"
    path.write_text("eval_split: 0.1\neval_dataset: /data/held-out.jsonl\n", encoding="utf-8")
    assert not area.load_config_file(path)
    assert "eval_split" in area.banner.text() and "set eval_split: 0" in area.banner.text()


def test_template_takes_a_named_format_or_a_jinja_file_typed_or_browsed(make_area, qtbot, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QFileDialog, QToolButton

    area = make_area()
    editor = area.editors["template"]
    combo = editor.combo
    assert [combo.itemText(i) for i in range(combo.count())] == list(RunConfig.field_meta()["template"]["choices"])
    combo.setCurrentIndex(combo.findText("llama3"))
    combo.activated.emit(combo.currentIndex())
    assert area.config_model.get("template") == "llama3"

    mine = tmp_path / "mine.jinja"
    mine.write_text("{% for m in messages %}{{ m['content'] }}{% endfor %}", encoding="utf-8")
    combo.lineEdit().clear()
    qtbot.keyClicks(combo.lineEdit(), str(mine)[:-3])
    assert area.config_model.get("template") == "llama3"  # nothing committed while typing
    combo.lineEdit().editingFinished.emit()
    assert not area.start_button.isEnabled() and "template" in area.banner.text()
    qtbot.keyClicks(combo.lineEdit(), "nja")
    combo.lineEdit().editingFinished.emit()
    assert area.config_model.get("template") == str(mine)
    assert area.start_button.isEnabled() and not area.banner.isVisible()

    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(tmp_path / "other.jinja"), ""))
    editor.findChild(QToolButton).click()
    assert area.config_model.get("template") == str(tmp_path / "other.jinja")
    assert combo.currentText() == str(tmp_path / "other.jinja")


def test_the_dataset_is_a_file_or_a_dataset_of_the_hugging_face_cache(make_area, tmp_path, monkeypatch):
    from huggingface_hub import constants
    from PySide6.QtWidgets import QFileDialog

    from tests.engine.test_hub_datasets import _parquet

    root = tmp_path / "hub"
    (root / "datasets--org--mini" / "refs").mkdir(parents=True)
    (root / "datasets--org--mini" / "refs" / "main").write_text("abc", encoding="utf-8")
    _parquet(root / "datasets--org--mini" / "snapshots" / "abc" / "data" / "train-00000-of-00001.parquet", range(4))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(root))
    area = make_area()
    editor = area.editors["dataset"]
    assert [a.text() for a in editor.menu.actions()] == ["Choose a file…", "From the Hugging Face cache"]
    editor.hub_menu.aboutToShow.emit()
    (choice,) = editor.hub_menu.actions()
    assert choice.text() == "org/mini"
    choice.trigger()
    assert area.config_model.get("dataset") == "org/mini" and editor.edit.text() == "org/mini"
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(tmp_path / "mine.jsonl"), ""))
    editor.menu.actions()[0].trigger()
    assert area.config_model.get("dataset") == str(tmp_path / "mine.jsonl")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    editor.hub_menu.aboutToShow.emit()
    (none,) = editor.hub_menu.actions()
    assert not none.isEnabled() and "huggingface-cli download" in none.text()


def test_the_model_picker_says_what_a_folder_lacks(make_area, qtbot, tiny_model_dir, tmp_path):
    area = make_area()
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.json").write_bytes((tiny_model_dir / "config.json").read_bytes())
    area.config_model.set("model", str(bare))
    picker = area.model_picker
    qtbot.waitUntil(lambda: picker.info is not None and picker.info["info"].path == str(bare), timeout=10_000)
    assert picker.labels["chat"].text().startswith("<span style='color:#d0342c'>no tokenizer files</span>")
    assert "none found</span>: training needs the .safetensors files" in picker.labels["weights"].text()
    area.config_model.set("model", str(tiny_model_dir))
    qtbot.waitUntil(lambda: picker.info is not None and picker.info["info"].path == str(tiny_model_dir),
                    timeout=10_000)
    assert picker.labels["chat"].text() == "yes" and picker.labels["weights"].text() == "safetensors"


def test_a_grid_over_methods_gives_each_method_the_precision_picking_it_in_the_form_would(make_area, studio_home):
    """Picking qlora in the form switches an fp32 form to nf4; a queued grid ``method=lora,qlora``
    does the same for its qlora point (it was refused: "load_in is 'fp32'"). A precision in the
    grid itself stands."""
    from engine.runqueue import RunQueue

    area = make_area()
    area.config_model.update({"method": "lora", "run_name": "m", "load_in": "fp32", "mixed_precision": "no"})
    assert area.queue_run("method=lora,qlora,full") == 3
    entries = RunQueue().entries()
    loaded = {e.name: RunConfig.load(e.config) for e in entries}
    assert {n: (c.method, c.load_in, c.mixed_precision) for n, c in loaded.items()} == {
        "m-lora": ("lora", "fp32", "no"), "m-qlora": ("qlora", "nf4", "bf16"), "m-full": ("full", "fp32", "no")}
    assert loaded["m-qlora"].lora_r == area.config_model.get("lora_r")
    assert entries[1].changes == {"method": "qlora", "load_in": "nf4", "mixed_precision": "bf16"}
    assert list(entries[2].changes)[0] == "method"  # the grid's key first, then what it brought (full: 2e-5)
    assert entries[0].changes == {"method": "lora"}

    assert area.queue_run("method=lora,qlora;load_in=fp32") == 0  # given in the grid: kept, and refused
    assert "grid point method=qlora, load_in=fp32" in area.banner.text()
    assert len(RunQueue().entries()) == 3


def test_switching_method_takes_its_usual_learning_rate_and_a_far_one_is_advised(make_area, qtbot, studio_home):
    """Full fine-tuning kept LoRA's 2e-4 (ten times its usual, enough to wreck a pretrained model) and
    prompt tuning kept it too (150 times below its usual: it barely moves)."""
    from PySide6.QtCore import Qt

    from engine.runqueue import RunQueue

    area = make_area()
    model = area.config_model
    model.update({"method": "lora", "learning_rate": 2e-4})
    picker = area.method_picker
    picker._on_activated(picker.combo.findData("full"))
    assert (model.get("method"), model.get("learning_rate")) == ("full", 2e-5)
    assert "warning:learning_rate" not in area.advisor_panel.cards
    picker._on_activated(picker.combo.findData("prompt"))
    assert model.get("learning_rate") == 3e-2
    model.set("learning_rate", 1e-3)  # the user's own rate stays through a switch...
    picker._on_activated(picker.combo.findData("ia3"))
    assert model.get("learning_rate") == 1e-3
    assert "Usual learning rate: 0.003" in picker.rate_label.text() and not picker.rate_button.isVisibleTo(picker)
    model.update({"method": "full", "learning_rate": 2e-4})  # ...and one far from the method's usual is said
    assert picker.rate_label.text() == "⚠ Learning rate 0.0002 is 10x above Full fine-tuning's usual 2e-5."
    assert picker.rate_button.isVisibleTo(picker) and picker.rate_button.text() == "Use 2e-5"
    qtbot.waitUntil(lambda: "warning:learning_rate" in area.advisor_panel.cards)  # once typing pauses
    card = area.advisor_panel.cards["warning:learning_rate"]
    assert "Learning rate 0.0002 is 10x above Full fine-tuning's usual 2e-5" in card.advice.text
    assert "is 10x above" in area.editors["learning_rate"].toolTip()
    assert area.editors["learning_rate"].mark_color() == WARNING_COLOR
    # Dismissed, it stays away while other fields change; a new far rate brings it back.
    area.advisor_panel.remove("warning:learning_rate")
    model.set("batch_size", 2)
    qtbot.wait(600)
    assert "warning:learning_rate" not in area.advisor_panel.cards
    model.set("learning_rate", 1e-3)
    qtbot.waitUntil(lambda: "warning:learning_rate" in area.advisor_panel.cards)
    card = area.advisor_panel.cards["warning:learning_rate"]
    qtbot.mouseClick(card.fix_button, Qt.MouseButton.LeftButton)
    assert model.get("learning_rate") == 2e-5
    qtbot.waitUntil(lambda: "warning:learning_rate" not in area.advisor_panel.cards)
    assert area.editors["learning_rate"].mark_color() is None and not picker.rate_button.isVisibleTo(picker)
    assert picker.rate_label.toolTip() == ""  # the warning's tooltip went with it
    model.set("learning_rate", 2e-4)
    picker.rate_button.click()  # the method picker's own fix
    assert model.get("learning_rate") == 2e-5

    # A grid over methods gives each its usual rate where the form holds its own method's.
    model.update({"method": "lora", "learning_rate": 2e-4, "run_name": "g", "load_in": "fp32",
                  "mixed_precision": "no"})
    assert area.queue_run("method=lora,full,prompt") == 3
    assert {e.name: RunConfig.load(e.config).learning_rate for e in RunQueue().entries()} == {
        "g-lora": 2e-4, "g-full": 2e-5, "g-prompt": 3e-2}
    assert "Note:" not in area.progress_label.text()
    assert area.queue_run("method=full;learning_rate=2e-4") == 1  # a far rate: said in one short line
    assert "Note: g-full-lr2e-4: learning rate 0.0002 is 10x above Full fine-tuning's usual 2e-5." in \
        area.progress_label.text() and "Stanford" not in area.progress_label.text()


def test_a_method_that_needs_another_precision_gives_the_users_back_when_left(make_area):
    """fp32 → QLoRA (nf4) → LoRA left the form at a precision the user never chose."""
    area = make_area()
    model, picker = area.config_model, area.method_picker
    model.update({"method": "lora", "load_in": "fp32", "mixed_precision": "no"})
    picker._on_activated(picker.combo.findData("qlora"))
    assert (model.get("load_in"), model.get("mixed_precision")) == ("nf4", "bf16")
    picker._on_activated(picker.combo.findData("lora"))
    assert (model.get("load_in"), model.get("mixed_precision")) == ("fp32", "no")
    # Through two methods that need nf4 and back, too.
    picker._on_activated(picker.combo.findData("qlora"))
    picker._on_activated(picker.combo.findData("full"))  # full can't load nf4: the user's fp32 again
    assert (model.get("load_in"), model.get("mixed_precision")) == ("fp32", "no")
    # A precision the user picks meanwhile is theirs: it stays.
    model.update({"load_in": "bf16", "mixed_precision": "bf16"})
    picker._on_activated(picker.combo.findData("lora"))
    assert (model.get("load_in"), model.get("mixed_precision")) == ("bf16", "bf16")


def test_a_missing_data_file_is_said_beside_its_field_and_a_file_saved_later_clears_it(make_area, qtbot, tmp_path):
    """Not only when Start fails: the form names the missing dataset, eval file or template file,
    and looks again when the area is shown or Start is pressed (the Dataset area may have saved it)."""
    area = make_area()
    area.apply_preset("demo")
    data = tmp_path / "mine.jsonl"
    area.config_model.update({"dataset": str(data), "template": str(tmp_path / "mine.jinja")})
    assert area.editors["dataset"].toolTip().startswith(f"⚠ dataset '{data}': no such file")
    assert "the chat template file" in area.editors["template"].toolTip() and "does not exist" in area.banner.text()
    assert not area.start_button.isEnabled()
    area.config_model.set("template", "auto")
    data.write_text('{"instruction": "q", "output": "a"}\n', encoding="utf-8")  # saved in the Dataset area
    area.hide()
    area.show()
    assert not area.banner.isVisible() and area.start_button.isEnabled()
    assert "no such file" not in area.editors["dataset"].toolTip()
    data.unlink()  # gone again: Start says so instead of starting a run that fails
    assert area.start_run() is False
    assert f"dataset '{data}': no such file" in area.banner.text() and not area.run.is_active()


def test_a_model_remembered_elsewhere_is_in_the_model_list_when_it_is_shown_again(make_area, tmp_path):
    """A model merged in the Adapters area goes to the recent models; the Train area's list offers it."""
    from gui.train.model_picker import remember_model

    area = make_area()
    picker = area.model_picker
    merged = str(tmp_path / "merged" / "medical")
    assert picker.combo.findText(merged) < 0
    remember_model(merged)
    area.hide()
    area.show()
    assert picker.combo.findText(merged) >= 0


def test_queue_refuses_a_run_whose_model_or_data_is_missing_as_queue_add_does(make_area, qtbot, tmp_path):
    """The Queue button queued a run whose model or data file wasn't there (for each grid point too), which
    failed later, unattended; `queue add` refuses it. The form's own is said beside its field; nothing
    is queued while any point is missing a file."""
    from engine.runqueue import RunQueue

    area = make_area()
    area.apply_preset("demo")
    area.config_model.set("run_name", "q")
    model = tmp_path / "no-such-model"
    area.config_model.set("model", str(model))
    assert area.queue_run() == 0
    assert area.banner.isVisible() and area.banner.text().startswith("Not queued: ") and str(model) in area.banner.text()
    picker = area.model_picker
    assert picker.problem.isVisibleTo(area) and str(model) in picker.problem.text()
    assert area.queue_run("learning_rate=1e-4,3e-4") == 0  # every point would train the form's missing model
    assert str(model) in area.banner.text() and "grid point" not in area.banner.text()
    assert RunQueue().entries() == []

    # A grid over datasets: the point whose file is missing is named; the form's dataset field is not marked.
    area.config_model.set("model", "demo")
    good, gone = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    good.write_text('{"instruction": "q", "output": "a"}\n', encoding="utf-8")
    assert area.queue_run(f"dataset={good},{gone}") == 0
    assert f"Not queued: grid point dataset={gone}: dataset '{gone}': no such file" in area.banner.text()
    assert not area.editors["dataset"].toolTip().startswith("⚠")
    assert RunQueue().entries() == []

    # The form's data file, removed since the form last changed: looked at again, as Start does.
    area.config_model.set("dataset", str(good))
    good.unlink()
    assert area.queue_run() == 0
    assert area.editors["dataset"].toolTip().startswith(f"⚠ dataset '{good}': no such file")
    assert RunQueue().entries() == []

    good.write_text('{"instruction": "q", "output": "a"}\n', encoding="utf-8")
    gone.write_text('{"instruction": "q", "output": "a"}\n', encoding="utf-8")
    assert area.queue_run(f"dataset={good},{gone}") == 2
    assert not area.banner.isVisible() and len(RunQueue().entries()) == 2


def test_start_refuses_a_missing_model_and_starts_no_worker(make_area, qtbot, tmp_path, monkeypatch):
    """Start only had the picker's note for a model that isn't there: the worker was started, loaded its
    libraries and failed. Now Start refuses it as Queue does: under the picker, in the banner, no worker."""
    from PySide6.QtCore import Qt

    from gui.train import worker_thread

    launched: list = []

    def launch(*args, **kwargs):  # where the worker process would be spawned (in the run's thread)
        launched.append(args)
        raise OSError("no worker in this test")

    monkeypatch.setattr(worker_thread.WorkerClient, "start", launch)
    area = make_area()
    area.apply_preset("demo")
    model = tmp_path / "no-such-model"
    area.config_model.set("model", str(model))
    assert area.start_button.isEnabled()  # the form's values are valid: only the folder is missing
    qtbot.mouseClick(area.start_button, Qt.MouseButton.LeftButton)
    assert area.banner.isVisible() and area.banner.text() == f"Not started: model '{model}': no such folder"
    picker = area.model_picker
    assert picker.problem.isVisibleTo(area) and picker.problem.text() == f"model '{model}': no such folder"
    assert not area.run.is_active()
    qtbot.wait(300)  # the launch happens in the run's thread: give it time to show up
    assert launched == []
    # Probe and Resume go through the same check.
    assert area.start_run(probe=True) is False and launched == [] and not area.run.is_active()
    assert area.start_run(resume=True, run_dir=tmp_path) is False and launched == []
    qtbot.wait(300)
    assert launched == [] and not area.run.is_active()

    # A missing data file too: said beside its field (the config is refused before the model is asked), no worker.
    area.config_model.set("dataset", str(tmp_path / "gone.jsonl"))
    assert area.start_run() is False and launched == [] and not area.run.is_active()
    assert area.editors["dataset"].toolTip().startswith("⚠ dataset")


def test_a_refused_start_says_so_on_the_run_line_until_the_form_changes(make_area, qtbot, tmp_path, monkeypatch):
    """A refused Start left the line under the progress bar at "No run yet. Press Start…" under a
    "Not started" banner. It now says what stopped it, and gives the line back when the form changes.
    Queue, which starts no run here, leaves it alone (the banner and the field say why)."""
    from PySide6.QtCore import Qt

    from gui.train import worker_thread

    launched: list = []
    monkeypatch.setattr(worker_thread.WorkerClient, "start", lambda *a, **k: launched.append(a))
    area = make_area()
    area.apply_preset("demo")
    line = area.progress_label
    idle = "No run yet. Press Start to train the form's config."
    assert line.text() == idle

    # The model folder isn't there (the form's values are valid: Start is enabled).
    area.config_model.set("model", str(tmp_path / "no-such-model"))
    qtbot.mouseClick(area.start_button, Qt.MouseButton.LeftButton)
    assert area.banner.text().startswith("Not started: model")
    assert line.text() == ("Not started: model 'no-such-model': no such folder. Fix it in the form, then press "
                           "Start again.")
    assert line.isVisible() and line.height() >= line.heightForWidth(line.width())  # not cut
    assert area.start_run(probe=True) is False
    assert line.text().endswith("then press Probe again.")
    area.config_model.set("model", "demo")  # fixed: the banner goes, and the line is back
    assert not area.banner.isVisible() and line.text() == idle
    # Queue starts no run in this window: its refusal is the banner's and the picker's, the line stays.
    area.config_model.set("model", str(tmp_path / "no-such-model"))
    assert area.queue_run() == 0 and area.banner.text().startswith("Not queued: model")
    assert line.text() == idle
    area.config_model.set("model", "demo")

    # A dataset removed after it was picked: the config check refuses it (said beside the field).
    data = tmp_path / "chat.jsonl"
    data.write_text('{"instruction": "q", "output": "a"}\n', encoding="utf-8")
    area.config_model.set("dataset", str(data))
    done = "Run completed in 33 s; final loss 2.1059. Folder: /runs/20261204-160611-lora"
    line.setText(done)  # the last run's line: it comes back too
    data.unlink()
    assert area.start_button.isEnabled()  # the form hasn't looked at the file since
    qtbot.mouseClick(area.start_button, Qt.MouseButton.LeftButton)
    assert area.banner.text().startswith("This config can't run here yet")
    assert line.text() == ("Not started: dataset 'chat.jsonl': no such file. Fix it in the form, then press "
                           "Start again.")
    area.config_model.set("dataset", "demo")
    assert line.text() == done

    # The Runs area's Resume of a run with nothing to resume: said on the line too.
    empty = tmp_path / "20261204-160611-lora"
    empty.mkdir()
    assert area.resume_run(empty) is False and area.banner.text().startswith(f"Nothing to resume in {empty.name}")
    assert line.text() == f"Nothing to resume in {empty.name} (see above)."
    # A stopped run with a checkpoint whose run.yaml is truncated: the file is the problem, named where.
    cut = tmp_path / "20261204-170000-lora"
    (cut / "checkpoint-5").mkdir(parents=True)
    (cut / "checkpoint-5" / "trainer_state.json").write_text("{}")
    (cut / "summary.json").write_text(json.dumps({"status": "stopped", "step": 5, "config": {"max_steps": 10}}))
    (cut / "run.yaml").write_text("model: demo\nlora_r: [\n")
    assert area.resume_run(cut) is False
    assert area.banner.text() == (f"Can't resume {cut.name}: {cut / 'run.yaml'}:3:1: invalid YAML: expected the node "
                                  "content, but found '<stream end>'")
    assert line.text() == f"Not resumed: {cut.name}'s run config has problems (see above)."
    assert launched == [] and not area.run.is_active()


def test_queue_lets_a_grid_over_datasets_decide_when_the_forms_dataset_is_missing(make_area, qtbot, tmp_path,
                                                                                   monkeypatch):
    """Queue checked the form's config before the grid points, so a sweep over datasets that all exist
    was refused for the form's own (missing) dataset, which no point trains. A grid that leaves the
    dataset to the form still refuses it."""
    from PySide6.QtWidgets import QInputDialog

    from engine.runqueue import RunQueue

    area = make_area()
    area.apply_preset("demo")
    area.config_model.set("run_name", "g")
    gone = tmp_path / "gone.jsonl"
    area.config_model.set("dataset", str(gone))
    assert area.editors["dataset"].toolTip().startswith(f"⚠ dataset '{gone}': no such file")
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    for f in (first, second):
        f.write_text('{"instruction": "q", "output": "a"}\n', encoding="utf-8")

    # A grid that doesn't set the dataset: every point would train the form's missing file.
    assert area.queue_run("learning_rate=1e-4,3e-4") == 0
    assert str(gone) in area.banner.text() and RunQueue().entries() == []

    # Through the Queue menu's sweep dialog, as a user types it: each point names its own file.
    monkeypatch.setattr(QInputDialog, "getText", staticmethod(lambda *a, **k: (f"dataset={first},{second}", True)))
    queued: list[int] = []
    area.sig_queued.connect(queued.append)
    area.sweep_action.trigger()
    assert queued == [2], area.banner.text()
    entries = RunQueue().entries()
    assert sorted(e.changes["dataset"] for e in entries) == [str(first), str(second)]
    assert "Queued" in area.progress_label.text()


@pytest.mark.parametrize(("changes", "key", "fixed"), [
    ({"method": "freeze", "freeze_trainable_layers": 10}, "freeze_trainable_layers", 4),
    ({"method": "ia3", "ia3_target_modules": ["nope_proj"]}, "ia3_target_modules", ["v_proj"]),
])
def test_a_setting_the_model_cant_take_is_said_at_its_field_and_blocks_start(make_area, qtbot, monkeypatch,
                                                                             studio_home, changes, key, fixed):
    """Ten trainable top layers of the demo's four, or an IA3 target it doesn't have: the config's own rules
    pass, so the form let Start launch a worker that loaded the model and stopped there; only the gauge said
    it ("No estimate: ..."). Now the estimate's problem is said at the field and in the banner, in the words
    `finetune-studio estimate` prints for the same config, and Start waits until the value is fixed."""
    from engine.errors import ConfigError
    from engine.memory import estimate
    from gui.train import worker_thread

    launched: list = []
    monkeypatch.setattr(worker_thread.WorkerClient, "start", lambda *a, **k: launched.append(a))
    area = make_area()
    area.config_model.update(changes)
    assert area.estimator.wait(120_000)
    qtbot.waitUntil(lambda: not area.start_button.isEnabled(), timeout=5_000)
    with pytest.raises(ConfigError) as cli:  # what `finetune-studio estimate` prints for this config
        estimate(area.config())
    said = cli.value.message
    assert said.startswith(f"'{key}'")
    assert area.editors[key].toolTip().startswith(f"⚠ {said}")
    assert area.banner.isVisible() and said.removeprefix(f"'{key}' ").removeprefix(f"'{key}': ") \
        in area.banner.text()
    assert area.start_run() is False and not area.run.is_active()
    qtbot.wait(200)
    assert launched == []
    assert area.progress_label.text().startswith("Not started: ")
    # Queue refuses it too (each queued run would stop at it), unless a grid varies that key.
    assert area.queue_run() == 0 and area.banner.text() == f"Not queued: {said}"
    from engine.runqueue import RunQueue

    assert RunQueue().pending() == []

    area.config_model.set(key, fixed)
    assert area.estimator.wait(120_000)
    qtbot.waitUntil(lambda: area.start_button.isEnabled(), timeout=5_000)
    assert not area.banner.isVisible() and not area.editors[key].toolTip().startswith("⚠")
    assert area.gauge.estimate is not None


def test_an_error_frames_a_spin_box_in_red_and_leaves_its_arrows_as_they_were(make_area, qtbot):
    """Ten trainable top layers of the demo's four turn the field red. The red was a style sheet border,
    which made Qt draw the whole spin box from the style sheet: its up/down arrows were squashed into a
    blank sliver. Now the mark is a frame on top, and inside it the box is drawn exactly as without it."""
    from PySide6.QtGui import QColor

    area = make_area()
    area.config_model.update({"method": "freeze", "freeze_trainable_layers": 10})
    assert area.estimator.wait(120_000)
    editor = area.editors["freeze_trainable_layers"]
    qtbot.waitUntil(lambda: editor.toolTip().startswith("⚠"), timeout=5_000)
    assert editor.mark_color() == ERROR_COLOR
    marked = editor.grab().toImage()
    box = editor.spin.geometry()
    editor.set_error(None)
    assert editor.mark_color() is None and editor.spin.geometry() == box
    plain = editor.grab().toImage()
    inside = box.adjusted(2, 2, -2, -2)  # the arrows, the text, the background: all but the frame
    changed = [(x, y) for x in range(inside.left(), inside.right() + 1)
               for y in range(inside.top(), inside.bottom() + 1) if marked.pixel(x, y) != plain.pixel(x, y)]
    assert changed == []
    middle = box.center().y()
    assert {QColor(marked.pixel(x, middle)).name() for x in (box.left(), box.right())} == {ERROR_COLOR}
    assert QColor(plain.pixel(box.left(), middle)).name() != ERROR_COLOR


@pytest.mark.parametrize(("config", "can_try"), [
    ({"format": "finetune-studio-bottleneck", "style": "pfeiffer", "base_model_name_or_path": "demo"}, False),
    ({"peft_type": "LORA", "r": 8, "base_model_name_or_path": "demo"}, True),
])
def test_try_it_and_compare_are_greyed_with_the_reason_for_a_bottleneck_adapter_run(make_area, tmp_path, config,
                                                                                    can_try):
    """A bottleneck-adapter run completed with Try it and Compare with base offered; both switched to the Adapters
    area, which then said the adapter can't be loaded. They are greyed now, saying why, as the library says it."""
    from engine.adapters import read_card

    final = tmp_path / "run" / "final"
    final.mkdir(parents=True)
    (final / "adapter_config.json").write_text(json.dumps(config), encoding="utf-8")
    (final / "adapter_model.safetensors").write_bytes(b"")
    area = make_area()
    area.run_dir = str(final.parent)
    area._show_after_run(True)
    for button in (area.try_button, area.compare_button):
        assert button.isVisibleTo(area) and button.isEnabled() is can_try
    if not can_try:
        assert area.try_button.toolTip() == f"Not for this run: {read_card(final).problem}"
        assert "PEFT adapters only" in area.compare_button.toolTip()
    assert area.audit_button.isEnabled() and area.gguf_button.isEnabled()


def test_a_model_transformers_cant_build_as_a_causal_lm_is_said_at_the_model_field(make_area, qtbot, monkeypatch,
                                                                                   studio_home, tmp_path):
    """A model folder whose model_type has no causal-LM head (here t5): the gauge said "No estimate" with
    transformers' paragraph about installing it from GitHub, and Start launched a run that failed."""
    import json

    from engine.demo import ensure_demo_model
    from gui.train import worker_thread

    launched: list = []
    monkeypatch.setattr(worker_thread.WorkerClient, "start", lambda *a, **k: launched.append(a))
    model = tmp_path / "model"
    model.mkdir()
    for f in ensure_demo_model().iterdir():
        (model / f.name).write_bytes(f.read_bytes())
    config = json.loads((model / "config.json").read_text(encoding="utf-8"))
    (model / "config.json").write_text(json.dumps({**config, "model_type": "t5"}), encoding="utf-8")
    area = make_area()
    area.config_model.set("model", str(model))
    assert area.estimator.wait(120_000)
    qtbot.waitUntil(lambda: not area.start_button.isEnabled(), timeout=5_000)
    said = f"{model / 'config.json'}: a 't5' model has no causal language-model head in transformers"
    assert area.model_picker.problem.isVisible() and area.model_picker.problem.text().startswith(said)
    assert area.banner.isVisible() and said in area.banner.text() and "git+https" not in area.banner.text()
    area.grab().save(str(tmp_path / "t5.png"))
    assert area.start_run() is False and launched == []


def test_a_screen_reader_names_each_input_and_says_its_painted_error_mark(make_area, qtbot):
    """The form's labels named the field editors, not the boxes in them that take the keyboard: a screen
    reader said "edit text" and "check box" with no name, "✕" for an impossible precision cell and "…"
    for Browse; and the red or amber frame an error paints was not said at all."""
    from gui.train.fields import label_for
    from tests.gui.keyboard_audit import spoken_description, spoken_name

    area = make_area()
    area.show()
    editors = area.editors
    for key, box in (("learning_rate", editors["learning_rate"].edit), ("seq_len", editors["seq_len"].spin),
                     ("seed", editors["seed"].spin), ("use_dora", editors["use_dora"].box)):
        assert spoken_name(box) == label_for(key), key
    assert spoken_name(editors["dataset"].button) == f"Browse for {label_for('dataset').lower()}"
    assert editors["optimizer"].combo.accessibleName() == label_for("optimizer")  # (Linux reads a combo's text)
    cell = area.precision_grid.cells[("nf4", "bf16")]
    assert cell.text() == "✕" and spoken_name(cell) == "nf4 (4-bit) weights, bf16 AMP"
    assert "Not possible" in spoken_description(cell)
    edit = editors["learning_rate"].edit
    edit.clear()
    qtbot.keyClicks(edit, "fast")
    assert spoken_description(edit).startswith("Error: ") and "learning_rate" in spoken_description(edit)
    edit.clear()
    qtbot.keyClicks(edit, "1e-4")
    assert not spoken_description(edit).startswith("Error")  # the key's help again
