"""The Runs area: the history table, overlaid curves and the actions on a run."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from engine.config import RunConfig
from engine.paths import runs_dir
from gui.runs.area import COLUMNS, RunsArea, RunsTableModel


def make_run(name: str, status: str, *, steps: int = 20, started: float | None = None, final: bool = False,
             checkpoint: bool = False, peak: int | None = None, pid: int | None = None) -> Path:
    path = runs_dir() / name
    path.mkdir(parents=True)
    cfg = RunConfig(max_steps=steps)
    cfg.save(path / "run.yaml")
    started = started or time.time() - 100
    summary = {"status": status, "started": started, "finished": None if status == "running" else started + 65,
               "final_loss": 1.0 + 1 / steps, "best_eval_loss": 1.2, "peak_gpu_device_bytes": peak,
               "step": steps, "config": cfg.to_dict()}
    (path / "summary.json").write_text(json.dumps(summary))
    rows = [{"step": i, "loss": 3.0 / i, "lr": 1e-4} for i in range(1, steps + 1)] + [{"step": steps, "eval_loss": 1.2}]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if final:  # a LoRA adapter as far as its files say (Try it and Compare read its card)
        (path / "final").mkdir()
        (path / "final" / "adapter_config.json").write_text('{"peft_type": "LORA"}')
        (path / "final" / "adapter_model.safetensors").write_bytes(b"")
    if checkpoint:
        (path / f"checkpoint-{steps}").mkdir()
        (path / f"checkpoint-{steps}" / "trainer_state.json").write_text("{}")
    if pid:
        (path / "worker.pid").write_text(str(pid))
    return path


@pytest.fixture
def runs(studio_home):
    now = time.time()
    return {
        "done": make_run("20261128-100000-lora", "completed", started=now - 300, final=True, peak=3 * 2**30),
        "stopped": make_run("20261128-110000-lora", "stopped", steps=12, started=now - 200, checkpoint=True),
        "dead": make_run("20261128-120000-full", "running", steps=5, started=now - 100, checkpoint=True,
                         pid=2**22 + 12345),  # no such process: the worker died
    }


def test_table_lists_every_run_with_status_losses_and_peak(qtbot, qtmodeltester, runs):
    area = RunsArea()
    qtbot.addWidget(area)
    qtmodeltester.check(area.model)
    assert area.model.rowCount() == 3 and not area.empty.isVisibleTo(area)
    shown = {area.model.data(area.model.index(r, 0)): [area.model.data(area.model.index(r, c))
                                                       for c in range(len(COLUMNS))]
             for r in range(area.model.rowCount())}
    done = shown["20261128-100000-lora"]
    assert done[COLUMNS.index("Status")] == "completed"
    assert done[COLUMNS.index("Peak GPU")] == "3.00 GiB"
    assert done[COLUMNS.index("Duration")] == "1 min 05 s"
    assert done[COLUMNS.index("Final loss")] == "1.0500"
    assert shown["20261128-120000-full"][COLUMNS.index("Status")] == "interrupted"
    # Newest first.
    first = area.proxy.index(0, 0).data()
    assert first == "20261128-120000-full"


def test_empty_state(qtbot, studio_home):
    area = RunsArea()
    qtbot.addWidget(area)
    area.show()
    assert area.empty.isVisible() and not area.table.isVisible()
    assert "Select a run" not in area.summary.text()  # there is none to select


def test_actions_follow_the_selection(qtbot, runs, monkeypatch):
    area = RunsArea()
    qtbot.addWidget(area)
    area.select_paths([runs["done"]])
    assert area.try_button.isEnabled() and not area.resume_button.isEnabled()
    with qtbot.waitSignal(area.sig_try_adapter) as tried:
        qtbot.mouseClick(area.try_button, Qt.MouseButton.LeftButton)
    assert tried.args == [str(runs["done"] / "final")]
    with qtbot.waitSignal(area.sig_open_config) as opened:
        qtbot.mouseClick(area.config_button, Qt.MouseButton.LeftButton)
    assert opened.args == [str(runs["done"] / "run.yaml")]
    for key in ("stopped", "dead"):
        area.select_paths([runs[key]])
        assert area.resume_button.isEnabled() and not area.try_button.isEnabled()
        with qtbot.waitSignal(area.sig_resume_run) as resumed:
            qtbot.mouseClick(area.resume_button, Qt.MouseButton.LeftButton)
        assert resumed.args == [str(runs[key])]
    opened_urls = []
    monkeypatch.setattr("gui.runs.area.QDesktopServices.openUrl", lambda url: opened_urls.append(url.toLocalFile()))
    qtbot.mouseClick(area.folder_button, Qt.MouseButton.LeftButton)
    assert opened_urls == [str(runs["dead"])]


def test_overlay_curves_of_selected_runs(qtbot, runs):
    area = RunsArea()
    qtbot.addWidget(area)
    area.select_paths([runs["done"], runs["stopped"]])
    assert set(area.curves) == {str(runs["done"]), str(runs["stopped"])}
    x, y = area.curves[str(runs["done"])].getData()
    assert len(x) == 20
    area.metric_combo.setCurrentIndex(area.metric_combo.findData("eval_loss"))
    assert len(area.curves) == 2 and area.curves[str(runs["done"])].getData()[1][0] == pytest.approx(1.2)
    area.metric_combo.setCurrentIndex(area.metric_combo.findData("grad_norm"))
    assert not area.curves and area.plot_hint.isVisible()



def test_the_curves_key_follows_a_raised_font(qtbot, runs, app_font_pt):
    """At 16 pt the key's names stayed 8 pt beside 16-pt ticks."""
    app_font_pt(16)
    area = RunsArea()
    qtbot.addWidget(area)
    area.resize(1130, 720)
    area.show()
    qtbot.waitExposed(area)
    area.select_paths([runs["done"], runs["stopped"]])
    qtbot.waitUntil(lambda: area.legend.width() > 0)
    line = area.plot.fontMetrics().height()
    for _sample, label in area.legend.items:
        assert label.item.document().size().height() >= line, label.text


def test_the_curves_key_sits_beside_the_plot_not_over_its_curves(qtbot, runs):
    area = RunsArea()
    qtbot.addWidget(area)
    area.resize(1200, 800)
    area.show()
    qtbot.waitExposed(area)
    item = area.plot.getPlotItem()
    area.select_paths([runs["done"], runs["stopped"]])
    qtbot.waitUntil(lambda: area.legend.width() > 0)
    names = [label.text for _sample, label in area.legend.items]
    assert sorted(names) == sorted([runs["done"].name, runs["stopped"].name])
    assert area.legend.parentItem() is not item.vb and item.legend is None
    qtbot.waitUntil(lambda: area.legend.sceneBoundingRect().left() >= item.vb.sceneBoundingRect().right() - 1)
    # Its entries stay together at the top, each label by its line.
    assert area.legend.sceneBoundingRect().height() < item.vb.sceneBoundingRect().height() / 2
    area.select_paths([runs["done"]])
    assert [label.text for _sample, label in area.legend.items] == [runs["done"].name]

def test_refresh_keeps_the_selection_and_picks_up_new_runs(qtbot, runs):
    area = RunsArea()
    qtbot.addWidget(area)
    area.select_paths([runs["stopped"]])
    make_run("20261128-130000-ia3", "completed")
    area.refresh()
    assert area.model.rowCount() == 4
    assert [r.path for r in area.selected_runs()] == [runs["stopped"]]


def test_table_model_alone(qtmodeltester):
    model = RunsTableModel()
    qtmodeltester.check(model)


def test_selecting_runs_says_how_their_configs_differ(qtbot, runs):
    area = RunsArea()
    qtbot.addWidget(area)
    area.select_paths([runs["done"], runs["stopped"]])
    text = area.summary.text()
    assert text.startswith("2 runs · differ in: ") and "max_steps</b>" in text
    # each run's value in its curve's colour, in the order the curves are drawn
    order = [r.path for r in area.selected_runs()]
    values = ["20" if p == runs["done"] else "12" for p in order]
    assert f"#1f77b4'>{values[0]}</span> / <span style='color:#d62728'>{values[1]}</span>" in text
    assert f"max_steps: {values[0]} / {values[1]}" in area.summary.toolTip()
    area.select_paths([runs["done"]])
    assert "differ" not in area.summary.text()


def test_a_run_whose_config_changed_on_the_way_says_so_and_differs_from_one_that_did_not(qtbot, studio_home):
    """Two runs ending at learning rate 1e-4, one trained at 2e-4 before step 120 (resumed with a new
    rate): the same in run.yaml, not the same run."""
    from engine.runs import record_config_change

    a = make_run("20261128-150000-lora", "completed")
    b = make_run("20261128-160000-lora", "completed")
    for path in (a, b):
        RunConfig.load(path / "run.yaml").replace(learning_rate=1e-4).save(path / "run.yaml")
    record_config_change(b, 12, "resume", {"learning_rate": 2e-4, "seed": 42}, {"learning_rate": 1e-4, "seed": 42})
    area = RunsArea()
    qtbot.addWidget(area)
    area.select_paths([b])
    assert "Config changed from step 12 (on resume): learning_rate 0.0002 → 0.0001" in area.summary.text()
    area.select_paths([a, b])
    text = area.summary.text()
    assert "learning_rate</b>" in text and "0.0001 from step 12 (0.0002 for steps 1-11)</span>" in text
    assert "0.0001 from step 12 (0.0002 for steps 1-11)" in area.summary.toolTip()
    area.select_paths([a])
    assert "Config changed" not in area.summary.text()


def test_a_failed_run_says_why_it_failed(qtbot, studio_home):
    """Selecting a failed run shows the error its summary.json holds, not just its folder."""
    path = make_run("20261128-130000-lora", "failed", steps=4)
    summary = json.loads((path / "summary.json").read_text())
    summary["error"] = {"kind": "nonfinite", "message": "the loss became non-finite at step 4 (loss=13.9, "
                        "grad_norm=nan); nan_policy is 'stop'", "hint": "lower the learning rate",
                        "fix": {"learning_rate": 5.0}, "step": 4}
    (path / "summary.json").write_text(json.dumps(summary))
    make_run("20261128-140000-lora", "completed", final=True)
    area = RunsArea()
    qtbot.addWidget(area)
    area.select_paths([path])
    text = area.summary.text()
    # The message names the step already: said once, not "Failed at step 4: ... at step 4".
    assert "Failed: the loss became non-finite at step 4" in text and text.count("step 4") == 1
    assert "nan_policy is &#x27;stop&#x27;" in text  # escaped: the label is rich text
    assert "lower the learning rate" in text and "learning_rate = 5.0" in text
    row = next(r for r in range(area.model.rowCount()) if area.model.runs[r].path == path)
    tip = area.model.data(area.model.index(row, COLUMNS.index("Status")), Qt.ItemDataRole.ToolTipRole)
    assert tip.startswith("Failed: the loss became non-finite at step 4")
    done = next(r for r in area.model.runs if r.status == "completed")
    area.select_paths([done.path])
    assert "Failed" not in area.summary.text()


def test_a_failed_runs_suggested_fix_is_a_button(qtbot, studio_home):
    """The error's "Suggested fix" opens the run's config in the Train area with the fix applied."""
    path = make_run("20261128-130000-lora", "failed", steps=4, checkpoint=True)
    summary = json.loads((path / "summary.json").read_text())
    summary["error"] = {"kind": "nonfinite", "message": "the gradient norm became non-finite at step 5",
                        "fix": {"learning_rate": 1.25}, "step": 5}
    (path / "summary.json").write_text(json.dumps(summary))
    plain = make_run("20261128-131000-lora", "failed", steps=4)
    plain_summary = json.loads((plain / "summary.json").read_text())
    plain_summary["error"] = {"kind": "data", "message": "record 7 has no 'output'", "step": 3}
    (plain / "summary.json").write_text(json.dumps(plain_summary))
    done = make_run("20261128-140000-lora", "completed", final=True)
    area = RunsArea()
    qtbot.addWidget(area)
    area.show()
    area.select_paths([path])
    assert area.fix_button.isVisible() and area.fix_button.isEnabled()
    assert "learning_rate = 1.25" in area.fix_button.toolTip() and "Resume there continues" in area.fix_button.toolTip()
    with qtbot.waitSignal(area.sig_open_config_fixed) as opened:
        qtbot.mouseClick(area.fix_button, Qt.MouseButton.LeftButton)
    assert opened.args == [str(path / "run.yaml"), {"learning_rate": 1.25}]
    for other in (plain, done):  # no fix to apply: no button
        area.select_paths([other])
        assert not area.fix_button.isVisible()
    area.select_paths([path, done])
    assert not area.fix_button.isVisible()


def failed_run(name: str, *, logged: int, failed_at: int, error: dict | None = None, **kw) -> Path:
    """A run that failed at step ``failed_at`` after logging ``logged`` steps, with a checkpoint there."""
    path = make_run(name, "failed", steps=logged, checkpoint=True, **kw)
    summary = json.loads((path / "summary.json").read_text())
    summary["error"] = error or {"kind": "nonfinite", "step": failed_at,
                                 "message": f"the gradient norm became non-finite at step {failed_at}"}
    (path / "summary.json").write_text(json.dumps(summary))
    return path


def test_a_failed_runs_steps_say_the_step_it_failed_at(qtbot, studio_home):
    """Its Steps read "4" beside an error "at step 5": both right (the failing step logs no loss), but
    nothing said so."""
    failed = failed_run("20261128-130000-lora", logged=4, failed_at=5)
    at_logged = failed_run("20261128-131000-lora", logged=2, failed_at=2)  # a callback, after its step
    done = make_run("20261128-140000-lora", "completed", final=True)
    area = RunsArea()
    qtbot.addWidget(area)
    col = COLUMNS.index("Steps")

    def cell(path, role=Qt.ItemDataRole.DisplayRole):
        row = next(r for r in range(area.model.rowCount()) if area.model.runs[r].path == path)
        return area.model.data(area.model.index(row, col), role)

    assert cell(failed) == "4 (failed at 5)" and cell(failed, Qt.ItemDataRole.UserRole) == 4  # sorts as 4
    assert cell(failed, Qt.ItemDataRole.ToolTipRole) == ("Steps: 4, the last step logged; the run failed at step 5, "
                                                         "before logging it. Its curve and losses end at step 4.")
    assert cell(at_logged) == "2" and cell(at_logged, Qt.ItemDataRole.ToolTipRole) is None
    assert cell(done) == "20" and cell(done, Qt.ItemDataRole.ToolTipRole) is None


def settle() -> None:
    """Run the layout passes a change sets off to their end: each posts the next, and a fixed wait
    ended before the last on a busy machine."""
    from PySide6.QtWidgets import QApplication

    for _ in range(10):
        QApplication.processEvents()


def visible_rows(table) -> int:
    """The table's rows shown whole in its viewport."""
    model = table.model()
    return sum(1 for r in range(model.rowCount())
               if 0 <= table.visualRect(model.index(r, 0)).top()
               and table.visualRect(model.index(r, 0)).bottom() < table.viewport().height())


USUAL_ERROR = {"kind": "nonfinite", "step": 5, "fix": {"learning_rate": 1.25e-4},
               "message": "the gradient norm became non-finite at step 5 (loss=13.9, grad_norm=nan); nan_policy is "
                          "'stop'",
               "hint": "lower the learning rate (the run's is 2.5e-4) or clip gradients harder (max_grad_norm); bf16 "
                       "is steadier than fp16"}
# A library's exception, as engine.train words it: several lines of its own.
LONG_ERROR = {"kind": "error", "step": 5, "fix": {"learning_rate": 1e-4},
              "message": "training failed at step 5: RuntimeError: CUDA error: device-side assert triggered\nCUDA "
                         "kernel errors might be asynchronously reported at some other API call, so the stacktrace "
                         "below might be incorrect.\nFor debugging consider passing CUDA_LAUNCH_BLOCKING=1\nCompile "
                         "with `TORCH_USE_CUDA_DSA` to enable device-side assertions.",
              "hint": "This is a bug or an unexpected library error; the traceback is in the log."}


# The area in a 1024×700 and a 1366×768 window.
@pytest.mark.parametrize(("width", "height"), [(870, 678), (1212, 746)])
@pytest.mark.parametrize("error", [None, LONG_ERROR], ids=["usual-error", "long-error"])
def test_a_failed_runs_explanation_leaves_the_run_list_its_rows(qtbot, studio_home, width, height, error):
    """At 1024×700 a failed run's error, hint and fix under the list squeezed it to 2½ rows."""
    now = time.time()
    for i in range(9):
        make_run(f"20261128-{10 + i:02d}0000-lora", "completed", started=now - 1000 + i * 10, final=True)
    failed = failed_run("20261128-200000-lora", logged=4, failed_at=5, started=now - 50, error=error or USUAL_ERROR)
    area = RunsArea()
    qtbot.addWidget(area)
    area.resize(width, height)
    area.show()
    qtbot.waitExposed(area)
    area.show_run(failed)
    settle()
    assert area.fix_button.isVisible() and "Hint:" in area.summary.text()
    assert visible_rows(area.table) >= 7
    # The explanation is whole: laid out at its full height, shown at once or scrolled to.
    label, box = area.summary, area.details
    assert label.height() >= label.heightForWidth(label.width())
    shown = box.viewport().height()
    if error is None:  # a usual error, hint and fix: shown whole
        assert shown >= label.height() and not box.verticalScrollBar().isVisible()
    else:  # a library's exception: it scrolls, in a box of a few lines
        assert box.verticalScrollBar().isVisible()
        assert box.verticalScrollBar().maximum() >= label.height() - shown > 0
        assert shown >= 5 * label.fontMetrics().lineSpacing()
    assert area.plot.height() >= 150  # and the curves keep their room
    area.select_paths([area.model.runs[-1].path])  # a completed run: one line, no empty box left
    settle()
    assert box.height() <= 2 * label.fontMetrics().lineSpacing()


def test_an_empty_config_value_is_shown_as_a_dash_when_comparing(qtbot, studio_home):
    """A default run name ('') differs from a named one: the comparison must show both values."""
    a = make_run("20261128-150000-lora", "completed")
    b = make_run("20261128-160000-ia3", "completed")
    cfg = RunConfig.load(b / "run.yaml").replace(run_name="my ia3")
    summary = json.loads((b / "summary.json").read_text())
    summary["config"] = cfg.to_dict()
    (b / "summary.json").write_text(json.dumps(summary))
    cfg.save(b / "run.yaml")
    area = RunsArea()
    qtbot.addWidget(area)
    area.select_paths([a, b])
    text = area.summary.text()
    assert "run_name</b>" in text
    assert "'></span>" not in text  # no empty coloured value
    assert ">–</span>" in text and ">my ia3</span>" in text
    RunConfig.load(b / "run.yaml").replace(lora_target_modules=["q_proj", "k_proj"]).save(b / "run.yaml")
    area.select_paths([a])
    area.select_paths([a, b])
    assert ">[q_proj, k_proj]</span>" in area.summary.text()  # as the YAML writes it, not ['q_proj', ...]


@pytest.mark.parametrize(("status", "checkpoint", "enabled", "says"), [
    ("completed", True, False, "nothing is left to train"),
    ("completed", False, False, "raise max_steps"),
    ("stopped", True, True, "from checkpoint-12 (step 12 of 20)"),
    ("stopped", False, False, "before its first checkpoint"),
    ("failed", True, True, "with the same config"),
    ("failed", False, False, "nothing to resume from"),
    ("crashed", True, True, "from checkpoint-12"),
    ("unknown", True, False, "status is 'unknown'"),
])
def test_resume_is_offered_only_for_a_run_that_can_continue(qtbot, studio_home, status, checkpoint, enabled, says):
    """A completed run has nothing left to train (the engine would only rewrite final/): no Resume.

    A run that ended early needs a checkpoint to continue from; the tooltip says which and why.
    """
    path = make_run("20261128-100000-lora", status, steps=12, checkpoint=checkpoint, final=status == "completed")
    cfg = RunConfig(max_steps=20)
    cfg.save(path / "run.yaml")  # what a resume reads: the plan is 20 steps, the run got to 12
    summary = json.loads((path / "summary.json").read_text())
    summary["config"] = cfg.to_dict()
    (path / "summary.json").write_text(json.dumps(summary))
    area = RunsArea()
    qtbot.addWidget(area)
    area.select_paths([path])
    assert area.resume_button.isEnabled() is enabled
    assert says in area.resume_button.toolTip()


def test_a_run_whose_run_yaml_is_corrupt_says_so_as_runs_show_does_and_resume_is_not_offered(qtbot, studio_home):
    """A stopped run with a truncated run.yaml: Resume was offered and then refused by the engine; nothing said why."""
    path = make_run("20261128-100000-lora", "stopped", steps=12, checkpoint=True)
    other = make_run("20261128-110000-lora", "completed", final=True)
    (path / "run.yaml").write_text("model: demo\nlora_r: [\n")
    said = f"{path / 'run.yaml'}:3:1: invalid YAML: expected the node content, but found &#x27;&lt;stream end&gt;&#x27;"
    area = RunsArea()
    qtbot.addWidget(area)
    assert {r.path for r in area.model.runs} == {path, other}
    area.select_paths([path])
    assert f"run.yaml can&#x27;t be read: {said}" in area.summary.text()
    assert not area.resume_button.isEnabled()
    assert area.resume_button.toolTip().startswith("Its run.yaml, which a resume continues with, can't be read: "
                                                   f"{path / 'run.yaml'}:3:1: invalid YAML")
    area.select_paths([other])
    assert "can&#x27;t be read" not in area.summary.text()
    area.select_paths([path, other])
    assert f"Note: {path.name}: run.yaml can&#x27;t be read: {said}; its config here is summary.json&#x27;s copy, " \
           "as the run started." in area.summary.text()


def test_resume_of_a_run_already_at_its_last_step_says_it_only_writes_final(qtbot, studio_home):
    """An interrupted run whose newest checkpoint is its last step: resuming writes final/ (engine/train.py)."""
    path = make_run("20261128-120000-full", "running", steps=5, checkpoint=True, pid=2**22 + 12345)
    area = RunsArea()
    qtbot.addWidget(area)
    area.select_paths([path])
    assert area.resume_button.isEnabled()
    assert "already at the last step (5 of 5)" in area.resume_button.toolTip()
    assert "final/" in area.resume_button.toolTip()


def test_resume_tooltip_without_a_single_selection(qtbot, runs):
    area = RunsArea()
    qtbot.addWidget(area)
    assert not area.resume_button.isEnabled() and area.resume_button.toolTip() == "Select one run to resume it"
    area.select_paths([runs["done"]])
    area.select_paths([runs["done"], runs["stopped"]])
    assert not area.resume_button.isEnabled() and area.resume_button.toolTip() == "Select one run to resume it"


def test_a_failure_message_without_its_step_gets_it_from_the_error(qtbot, studio_home):
    path = make_run("20261128-130000-lora", "failed", steps=4)
    summary = json.loads((path / "summary.json").read_text())
    summary["error"] = {"kind": "data", "message": "record 7 has no 'output'", "step": 3}
    (path / "summary.json").write_text(json.dumps(summary))
    area = RunsArea()
    qtbot.addWidget(area)
    area.select_paths([path])
    assert "Failed at step 3: record 7 has no &#x27;output&#x27;" in area.summary.text()


def test_an_interrupted_run_says_what_happened_and_what_resume_does(qtbot, runs):
    """The details of an interrupted run explain it, not just its folder (the Status tooltip alone hid it)."""
    area = RunsArea()
    qtbot.addWidget(area)
    area.select_paths([runs["dead"]])
    text = area.summary.text()
    assert "Interrupted: the worker ended without finishing" in text
    assert "Resume continues from checkpoint-5." in text
    with (runs["dead"] / "metrics.jsonl").open("a") as f:  # killed two steps after its checkpoint
        f.write(json.dumps({"step": 6, "loss": 0.5}) + "\n" + json.dumps({"step": 7, "loss": 0.4}) + "\n")
    area.select_paths([])
    area.select_paths([runs["dead"]])
    assert "Resume continues from checkpoint-5; steps 6–7, logged after it, are trained again." in area.summary.text()
    path = make_run("20261128-130000-lora", "running", steps=7, pid=2**22 + 12346)  # died before a checkpoint
    area.refresh()
    area.select_paths([path])
    assert "before its first checkpoint; open its config to start it again." in area.summary.text()


def test_try_it_says_why_there_is_nothing_to_try(qtbot, runs):
    """A disabled "Try it" says why (no final/ yet) instead of describing what it would do."""
    area = RunsArea()
    qtbot.addWidget(area)
    assert area.try_button.toolTip() == "Select one run to try its adapter"
    area.select_paths([runs["done"]])
    assert area.try_button.isEnabled() and "final/" in area.try_button.toolTip()
    area.select_paths([runs["stopped"]])
    assert not area.try_button.isEnabled()
    assert area.try_button.toolTip() == ("This run was stopped before saving its adapter (no final/ folder): "
                                         "resume it to finish it")


def test_the_step_axis_shows_whole_steps_only(qtbot, studio_home):
    """A 3-step run's curve spans 1..3: its axis must not read "step 1.2, 1.4, ..."."""
    path = make_run("20261128-100000-lora", "completed", steps=3, final=True)
    area = RunsArea()
    qtbot.addWidget(area)
    area.select_paths([path])
    axis = area.plot.getAxis("bottom")
    levels = axis.tickValues(0.9, 3.1, 1000)
    values = [v for _, vs in levels for v in vs]
    assert values and all(float(v).is_integer() for v in values)
    assert {1.0, 2.0, 3.0} <= set(values)
    many = [v for _, vs in axis.tickValues(0, 1000, 1000) for v in vs]
    assert 500.0 in many  # a long run keeps pyqtgraph's own spacing


def test_a_run_with_one_logged_step_is_drawn_as_a_dot(qtbot, studio_home):
    """A run that failed at step 2 logged one loss: a line of one point draws nothing, so it gets a dot."""
    path = make_run("20261128-170000-lora", "failed", steps=1)
    area = RunsArea()
    qtbot.addWidget(area)
    area.select_paths([path])
    curve = area.curves[str(path)]
    assert len(curve.getData()[0]) == 1
    assert curve.opts["symbol"] == "o"
    longer = make_run("20261128-180000-lora", "completed", steps=5)
    area.refresh()
    area.select_paths([longer])
    assert area.curves[str(longer)].opts["symbol"] is None  # a line of 5 steps needs no dots


def plain(label) -> str:
    """A rich-text label's text as the user reads it."""
    from PySide6.QtGui import QTextDocument

    doc = QTextDocument()
    doc.setHtml(label.text())
    return doc.toPlainText()


def test_hardest_records_audit_in_a_child_process_and_open_in_the_editor(qtbot, tmp_path, tiny_model_dir,
                                                                          small_dataset):
    """A real run is audited by `runs audit` in a child process; a double-click shows the record."""
    from engine.audit import read_audit
    from engine.data.formats import load_dataset_file
    from gui.main_window import MainWindow
    from tests.engine.test_train import make_cfg, train

    result, _, _ = train(make_cfg(tiny_model_dir, small_dataset, "", run_name="audited"))
    run_dir = Path(result["output_dir"])
    win = MainWindow(load_demo=False, restore_geometry=False)
    qtbot.addWidget(win)
    win.show_area("runs")
    area, panel = win.areas["runs"], win.areas["runs"].audit_panel
    area.select_paths([run_dir])
    assert panel.run is not None and panel.run.path == run_dir
    assert "Not audited yet" in plain(panel.status) and panel.audit_button.text() == "Audit records"
    assert not panel.table.isVisibleTo(panel)

    with qtbot.waitSignal(panel.sig_audited, timeout=180_000):
        qtbot.mouseClick(panel.audit_button, Qt.MouseButton.LeftButton)
        assert not panel.audit_button.isEnabled() and panel.progress.isVisibleTo(panel)
    audit = read_audit(run_dir)
    assert audit is not None and panel.model.rowCount() == len(audit.records) > 0
    assert panel.audit_button.text() == "Audit again" and f"{len(audit.records):,} records scored" in plain(panel.status)
    top = panel.model.rows[0]
    assert top.loss == max(r.loss for r in audit.records)
    from gui.runs.audit_panel import COLUMNS as AUDIT_COLUMNS

    assert panel.proxy.data(panel.proxy.index(0, AUDIT_COLUMNS.index("Record"))) == f"#{top.record}"  # hardest first
    assert panel.table.isColumnHidden(AUDIT_COLUMNS.index("Base loss"))  # not compared with the base

    # The tint follows the audit's own outliers.
    flagged = {r.record for r in audit.outliers()}
    tinted = {panel.model.rows[i].record for i in range(panel.model.rowCount())
              if panel.model.data(panel.model.index(i, 0), Qt.ItemDataRole.BackgroundRole) is not None}
    assert tinted == flagged
    panel.flagged_only.setChecked(True)
    assert panel.model.rowCount() == len(flagged)
    panel.flagged_only.setChecked(False)

    # Selecting a record shows it whole beside the table.
    panel.table.selectRow(0)
    shown = panel.preview.toPlainText()
    first = load_dataset_file(small_dataset).records[top.record - 1].messages()
    assert f"Record {top.record}" in shown and first[-1]["content"].strip()[:40] in shown
    assert "not the record the audit scored" not in shown

    # Double-click a record: the Dataset area opens the run's file at that record.
    pick = panel.model.rows[3]
    index = panel.proxy.mapFromSource(panel.model.index(3, 0))
    with qtbot.waitSignal(area.sig_open_record) as opened:
        panel.table.doubleClicked.emit(index)
    assert opened.args == [str(small_dataset), pick.record - 1, pick.instruction]
    editor = win.areas["dataset"]
    assert win.current_area() == "dataset" and editor.path() == small_dataset
    assert editor.current_record_index() == pick.record - 1
    assert load_dataset_file(small_dataset).records[pick.record - 1].line == pick.line
    assert not editor.banner.isVisibleTo(editor)  # it is the audited record: nothing to warn about

    # The file changes under the audit (a record inserted at the top): the editor says so.
    lines = small_dataset.read_text(encoding="utf-8").splitlines()
    small_dataset.write_text("\n".join([lines[-1]] + lines) + "\n", encoding="utf-8")
    editor.open_file(small_dataset)
    panel.table.doubleClicked.emit(index)
    assert editor.banner.isVisibleTo(editor) and "not the one the audit scored" in editor.banner.label.text()
    panel.table.selectRow(1)
    panel.table.selectRow(3)  # the preview re-reads the changed file and says so too
    assert "not the record the audit scored" in panel.preview.toPlainText()

    # Another run without weights: nothing to audit, and it says so.
    bare = make_run("20261128-090000-lora", "stopped")
    area.refresh()
    area.select_paths([bare])
    assert not panel.audit_button.isEnabled() and "no trained weights yet" in plain(panel.status)


def test_a_failed_audit_says_why(qtbot, studio_home):
    area = RunsArea()
    qtbot.addWidget(area)
    run = make_run("20261128-100000-lora", "completed", final=True)
    (run / "final" / "adapter_config.json").write_text("{}")
    (run / "run.yaml").write_text("model: demo\ndataset: /nonexistent/data.jsonl\nmethod: lora\n")
    area.refresh()
    area.select_paths([run])
    panel = area.audit_panel
    with qtbot.waitSignal(panel.proc.finished if panel.start() else None, timeout=120_000):
        pass
    assert "The audit failed: the run's dataset '/nonexistent/data.jsonl' is gone" in plain(panel.status)
    assert panel.audit_button.isEnabled() and panel.proc is None


def test_an_audit_finishing_while_another_run_is_shown_stays_with_its_run(qtbot, tmp_path, tiny_model_dir,
                                                                          small_dataset):
    from engine.audit import read_audit
    from tests.engine.test_train import make_cfg, train

    first = Path(train(make_cfg(tiny_model_dir, small_dataset, "", run_name="first"))[0]["output_dir"])
    other = make_run("20261128-090000-lora", "stopped")
    area = RunsArea()
    qtbot.addWidget(area)
    panel = area.audit_panel
    area.select_paths([first])
    with qtbot.waitSignal(panel.sig_audited, timeout=180_000) as done:
        assert panel.start()
        area.select_paths([other])  # the user looks at another run meanwhile
        assert panel.run.path == other and not panel.progress.isVisibleTo(panel)
    assert done.args == [str(first)] and read_audit(first) is not None
    assert panel.model.audit is None and "no trained weights yet" in plain(panel.status)
    area.select_paths([first])
    assert panel.model.rowCount() == len(read_audit(first).records)
    area.shutdown()  # nothing running: harmless


def test_use_best_checkpoint_promotes_it_in_a_child_process(qtbot, tmp_path, tiny_model_dir, small_dataset):
    from engine.promote import final_step
    from tests.engine.test_promote import make_step_best, trained_run

    run_dir = trained_run(tmp_path, tiny_model_dir, small_dataset, out="")
    area = RunsArea()
    qtbot.addWidget(area)
    area.select_paths([run_dir])
    assert not area.best_button.isEnabled() and "Nothing to do" in area.best_button.toolTip()

    make_step_best(run_dir, 4)
    area.refresh()
    assert area.best_button.isEnabled()
    assert "checkpoint-4 evaluated 1.0000, lower than final/'s 2.0600" in area.best_button.toolTip()
    assert "“Use best checkpoint” makes it the result" in plain(area.summary)
    with qtbot.waitSignal(area.sig_promoted, timeout=120_000) as promoted:
        qtbot.mouseClick(area.best_button, Qt.MouseButton.LeftButton)
        assert not area.best_button.isEnabled()
    assert promoted.args == [str(run_dir)] and final_step(run_dir) == 4
    assert "now holds checkpoint-4 (eval loss 1.0000)" in plain(area.summary)
    assert "the weights it held before (step 6) are in checkpoint-6/" in plain(area.summary)
    assert not area.best_button.isEnabled()  # nothing better left
    area.refresh()
    assert "final/ holds checkpoint-4" in plain(area.summary)


def test_go_back_to_an_earlier_checkpoint_opens_the_config_ready_to_resume(qtbot, tmp_path, tiny_model_dir,
                                                                          small_dataset, monkeypatch):
    from gui.main_window import MainWindow
    from tests.engine.test_promote import make_step_best, trained_run

    run_dir = trained_run(tmp_path, tiny_model_dir, small_dataset, out="")
    make_step_best(run_dir, 4)
    win = MainWindow(load_demo=False, restore_geometry=False)
    qtbot.addWidget(win)
    area, train = win.areas["runs"], win.areas["train"]
    area.refresh()
    area.select_paths([run_dir])
    # The checkpoints before the last step, with their eval losses; the last one is the run's end.
    entries = [a.text() for a in area.rewind_menu.actions()]
    assert entries == ["checkpoint-2 (step 2, eval loss 2.0200)", "checkpoint-4 (step 4, eval loss 1.0000)"]
    assert area.rewind_button.isEnabled() and "superseded" in area.rewind_button.toolTip()
    monkeypatch.setattr(area, "_confirm_rewind", lambda *a: False)
    area.rewind_menu.actions()[1].trigger()
    assert (run_dir / "checkpoint-6").is_dir()  # declined: nothing moved
    asked = []
    monkeypatch.setattr(area, "_confirm_rewind", lambda path, ckpt: asked.append(ckpt) or True)
    area.rewind_menu.actions()[1].trigger()
    assert asked == ["checkpoint-4"] and not (run_dir / "checkpoint-6").exists()
    assert len(list(run_dir.glob("superseded-*/checkpoint-6"))) == 1
    # The run's config is open in the Train area with Resume ready: change the LR, then Resume.
    assert win.current_area() == "train" and train.run_dir == str(run_dir)
    assert train.resume_button.isEnabled() and "Train area" in plain(area.summary)
    assert [a.text() for a in area.rewind_menu.actions()] == ["checkpoint-2 (step 2, eval loss 2.0200)"]
    area.select_paths([run_dir])
    assert "went back to checkpoint-4 from step 6; the rest is in superseded-" in plain(area.summary)


def test_use_best_checkpoint_explains_when_it_cant(qtbot, runs):
    area = RunsArea()
    qtbot.addWidget(area)
    assert "Select one run" in area.best_button.toolTip()
    area.select_paths([runs["dead"]])
    assert not area.best_button.isEnabled() and not area.use_best_checkpoint()


def test_a_probe_run_reads_as_one(qtbot, runs):
    path = runs["done"]
    summary = json.loads((path / "summary.json").read_text())
    (path / "summary.json").write_text(json.dumps({**summary, "probe": {"steps": 10}}))
    area = RunsArea()
    qtbot.addWidget(area)
    row = next(r for r in range(area.model.rowCount()) if area.model.runs[r].path == path)
    index = area.model.index(row, COLUMNS.index("Status"))
    assert area.model.data(index) == "probe" and "nothing was saved" in area.model.data(index, Qt.ItemDataRole.ToolTipRole)


def test_audit_compared_with_the_base_shows_how_much_each_record_fell(qtbot, tmp_path, tiny_model_dir,
                                                                     small_dataset):
    from engine.audit import read_audit
    from gui.runs.audit_panel import COLUMNS as AUDIT_COLUMNS
    from tests.engine.test_train import make_cfg, train

    run_dir = Path(train(make_cfg(tiny_model_dir, small_dataset, "", run_name="based"))[0]["output_dir"])
    area = RunsArea()
    qtbot.addWidget(area)
    panel = area.audit_panel
    area.select_paths([run_dir])
    panel.compare_base.setChecked(True)
    with qtbot.waitSignal(panel.sig_audited, timeout=180_000):
        assert panel.start()
    audit = read_audit(run_dir)
    assert audit.compared_with_base and all(r.base_loss is not None for r in audit.records)
    col = AUDIT_COLUMNS.index("Fell by")
    assert not panel.table.isColumnHidden(col) and not panel.table.isColumnHidden(AUDIT_COLUMNS.index("Base loss"))
    row = panel.model.rows[0]
    assert panel.model.data(panel.model.index(0, col)) == f"{row.base_loss - row.loss:.3f}"
    assert "median loss under the base model" in plain(panel.status)


def test_audit_records_from_the_train_area_opens_the_runs_tab_and_audits(qtbot, tmp_path, tiny_model_dir,
                                                                        small_dataset):
    from gui.main_window import MainWindow
    from tests.engine.test_train import make_cfg, train

    run_dir = Path(train(make_cfg(tiny_model_dir, small_dataset, "", run_name="fromtrain"))[0]["output_dir"])
    win = MainWindow(load_demo=False, restore_geometry=False)
    qtbot.addWidget(win)
    runs = win.areas["runs"]
    with qtbot.waitSignal(runs.audit_panel.sig_audited, timeout=180_000) as done:
        win.areas["train"].sig_audit_run.emit(str(run_dir))
        assert win.current_area() == "runs" and runs.bottom_tabs.currentWidget() is runs.audit_panel
        assert [r.path for r in runs.selected_runs()] == [run_dir]
    assert done.args == [str(run_dir)] and runs.audit_panel.model.rowCount() > 0


def test_compare_on_data_sends_the_selected_runs_adapters(qtbot, runs):
    second = make_run("20261128-130000-lora", "completed", final=True)
    for run in (runs["done"], second):
        (run / "final" / "adapter_config.json").write_text('{"peft_type": "LORA"}')
    area = RunsArea()
    qtbot.addWidget(area)
    assert not area.compare_data_button.isEnabled()
    area.select_paths([runs["done"], second])
    assert area.compare_data_button.isEnabled()
    with qtbot.waitSignal(area.sig_compare_adapters) as sent:
        area.compare_data_button.click()
    assert sorted(sent.args[0]) == sorted(str(r / "final") for r in (runs["done"], second))
    # A run without an adapter in the selection: nothing to compare it as, and the tooltip says so.
    area.select_paths([runs["done"], runs["stopped"]])
    assert not area.compare_data_button.isEnabled() and "Every selected run" in area.compare_data_button.toolTip()
    area.select_paths([runs["stopped"]])
    assert not area.compare_data_button.isEnabled() and "Select one or more" in area.compare_data_button.toolTip()


def test_export_gguf_is_offered_for_one_finished_run(qtbot, runs):
    """The run's final/ goes to the GGUF dialog, which names the file after the run, in its folder."""
    (runs["done"] / "final" / "adapter_config.json").write_text('{"peft_type": "LORA"}')
    area = RunsArea()
    qtbot.addWidget(area)
    area.select_paths([runs["stopped"]])
    assert not area.gguf_button.isEnabled() and "Select one finished run" in area.gguf_button.toolTip()
    assert area.open_gguf_dialog() is None
    area.select_paths([runs["done"], runs["stopped"]])
    assert not area.gguf_button.isEnabled()
    area.select_paths([runs["done"]])
    assert area.gguf_button.isEnabled() and "GGUF" in area.gguf_button.toolTip()
    dialog = area.open_gguf_dialog()
    qtbot.addWidget(dialog)
    assert dialog.source == str(runs["done"] / "final") and dialog.is_adapter
    assert dialog.out_edit.text() == str(runs["done"] / f"{runs['done'].name}-q8_0.gguf")
    # An exported file is listed in the run's summary line.
    assert "GGUF" not in area.summary.text()
    (runs["done"] / f"{runs['done'].name}-q8_0.gguf").write_bytes(b"GGUF")
    dialog.sig_exported.emit(str(runs["done"] / f"{runs['done'].name}-q8_0.gguf"))
    assert f"GGUF: {runs['done'].name}-q8_0.gguf" in area.summary.text()


def test_runs_evaluated_on_different_records_are_said_not_to_rank_by_eval_loss(qtbot, studio_home):
    from tests.engine.test_runs_cli import make_run as make_cli_run

    a = make_cli_run("20261128-100000-lora", eval_split=0.1)
    b = make_cli_run("20261128-110000-lora", eval_dataset="/data/held-out.jsonl")
    area = RunsArea()
    qtbot.addWidget(area)
    area.select_paths([a, b])
    assert "measured on different records" in plain(area.summary) and "eval_dataset" in plain(area.summary)


@pytest.mark.parametrize("width", [790, 854])  # the area in a 960- and a 1024-px window
def test_buttons_and_run_names_are_whole_in_a_narrow_window(qtbot, runs, width):
    area = RunsArea()
    qtbot.addWidget(area)
    area.resize(width, 560)
    area.show()
    qtbot.waitExposed(area)
    qtbot.wait(50)  # layout passes
    # (Open with the fix shows only for a failed run that suggests one.)
    buttons = [b for b in area.button_row.findChildren(type(area.refresh_button)) if b.isVisibleTo(area)]
    assert len(buttons) == 11
    for b in buttons:
        # Whole labels ("e best checkpo" when they shared one row), inside the area.
        assert b.width() >= b.sizeHint().width(), b.text()
        right = b.mapTo(area, b.rect().topRight()).x()
        assert right <= area.width(), b.text()
    assert area.button_row.height() > max(b.height() for b in buttons)  # they wrapped onto a second row
    area.show_queue()  # the Queue tab's buttons too ("Stop after this run" was cut to "p after this r")
    qtbot.wait(50)
    panel = area.queue_panel
    queue_buttons = [panel.start_button, panel.stop_button, panel.stop_now_button, panel.up_button,
                     panel.down_button, panel.retry_button, panel.remove_button, panel.clear_button,
                     panel.compare_button]
    for b in queue_buttons:
        assert b.width() >= b.sizeHint().width(), b.text()
        assert b.mapTo(area, b.rect().topRight()).x() <= area.width(), b.text()
    run_col = COLUMNS.index("Run")
    metrics = area.table.fontMetrics()
    widest = max(metrics.horizontalAdvance(name) for name in (p.name for p in runs.values()))
    assert area.table.columnWidth(run_col) >= widest  # "2026120… cli-run" when the column was stretched


def test_a_resumed_run_shows_its_first_start_and_the_time_of_all_its_legs(qtbot, studio_home):
    path = make_run("20261128-130000-lora", "completed", started=time.time() - 50)
    summary = json.loads((path / "summary.json").read_text())
    first = summary["started"] - 3600  # stopped, then resumed an hour later
    summary.update(first_started=first, earlier_legs_s=30.0, legs=2)
    (path / "summary.json").write_text(json.dumps(summary))
    area = RunsArea()
    qtbot.addWidget(area)
    row = [area.model.data(area.model.index(0, c)) for c in range(len(COLUMNS))]
    assert row[COLUMNS.index("Started")] == time.strftime("%Y-%m-%d %H:%M", time.localtime(first))
    assert row[COLUMNS.index("Duration")] == "1 min 35 s (2 legs)"  # 30 s + this leg's 65 s, as runs list says
    tip = area.model.data(area.model.index(0, COLUMNS.index("Duration")), Qt.ItemDataRole.ToolTipRole)
    assert "2 legs" in tip and "doesn't count" in tip


def test_try_it_takes_any_run_with_a_final_folder_and_resume_warns_of_a_promoted_one(qtbot, studio_home):
    """A stopped run whose final/ a promotion made checkpoint-4's: Try it opens it, and Resume says
    that resuming writes a new final/ over it."""
    path = make_run("20261128-140000-lora", "stopped", steps=8, final=True, checkpoint=True)
    summary = json.loads((path / "summary.json").read_text())
    (path / "summary.json").write_text(json.dumps({**summary, "max_steps": 20, "final_from": "checkpoint-4",
                                                   "final_step": 4}))
    RunConfig(max_steps=20).save(path / "run.yaml")
    area = RunsArea()
    qtbot.addWidget(area)
    area.select_paths([path])
    assert area.try_button.isEnabled() and area.resume_button.isEnabled()
    assert area.resume_button.toolTip().startswith("Continue this stopped run from checkpoint-8 (step 8 of 20)")
    assert "final/ holds checkpoint-4, made the result after training; resuming writes a new final/ over it" \
        in area.resume_button.toolTip()


def test_free_disk_and_delete_say_what_goes_ask_and_run_in_a_child_process(qtbot, runs, monkeypatch):
    """The Disk column shows each run's size; Free disk… removes the older checkpoints (final/ and the
    newest stay), Delete… whole runs; both after a confirmation that names what goes, and the
    library and the Train area are told."""
    done, stopped = runs["done"], runs["stopped"]
    for step in (4, 8):  # the stopped run gets two older checkpoints, 1 MB each
        (stopped / f"checkpoint-{step}").mkdir()
        (stopped / f"checkpoint-{step}" / "model.safetensors").write_bytes(b"\0" * 1_000_000)
    area = RunsArea()
    qtbot.addWidget(area)
    disk = {area.model.data(area.model.index(r, 0)): area.model.data(area.model.index(r, COLUMNS.index("Disk")))
            for r in range(area.model.rowCount())}
    assert disk[stopped.name] == "2.0 MB"
    area.select_paths([stopped])
    assert area.free_button.isEnabled() and "(2.0 MB)" in area.free_button.toolTip()
    asked = []
    monkeypatch.setattr(area, "_confirm_removal", lambda plans, prune: asked.append((plans, prune)) or False)
    assert area.remove_selected(prune=True) is False  # the user said no: nothing removed
    (plans, prune), = asked
    assert prune and [f.name for f in plans[0].folders] == ["checkpoint-4", "checkpoint-8"]
    assert plans[0].kept == ["checkpoint-12"] and (stopped / "checkpoint-4").exists()
    monkeypatch.setattr(area, "_confirm_removal", lambda plans, prune: True)
    with qtbot.waitSignal(area.sig_removed, timeout=60_000) as removed:
        assert area.remove_selected(prune=True)
    assert removed.args == [[str(stopped)]]
    assert sorted(p.name for p in stopped.glob("checkpoint-*")) == ["checkpoint-12"]
    assert "Freed 2.0 MB: older checkpoints of 20261128-110000-lora removed." in plain(area.summary)
    assert not area.free_button.isEnabled() and "Nothing to free" in area.free_button.toolTip()
    # Delete… two runs at once (the Delete key in the table does the same).
    area.select_paths([done, stopped])
    assert area.delete_button.isEnabled()
    area.show()
    area.table.setFocus()
    with qtbot.waitSignal(area.sig_removed, timeout=60_000):
        qtbot.keyClick(area.table, Qt.Key.Key_Delete)
    assert not done.exists() and not stopped.exists() and area.model.rowCount() == 1
    assert plain(area.summary).startswith("Deleted 20261128-110000-lora, 20261128-100000-lora (")  # table order


def test_a_training_run_can_be_neither_deleted_nor_pruned(qtbot, studio_home):
    import os

    live = make_run("20261128-140000-lora", "running", checkpoint=True, pid=os.getppid())  # a live process
    (live / "checkpoint-5").mkdir()
    area = RunsArea()
    qtbot.addWidget(area)
    area.select_paths([live])
    assert not area.delete_button.isEnabled() and "is training: stop it first" in area.delete_button.toolTip()
    assert not area.free_button.isEnabled() and "is training: stop it first" in area.free_button.toolTip()
    assert area.removal_plans(prune=False) == [] and area.remove_selected(prune=False) is False
    assert live.exists()


def test_acting_on_a_run_deleted_since_the_list_was_read_says_so(qtbot, runs, monkeypatch):
    """A run folder removed outside the app (its Open folder, a file manager) while it is selected:
    each action re-reads the list and says what happened, instead of a click that does nothing."""
    import shutil

    done = runs["done"]
    (done / "final" / "adapter_config.json").write_text('{"peft_type": "LORA"}')
    area = RunsArea()
    qtbot.addWidget(area)
    sent: list = []
    for signal in (area.sig_try_adapter, area.sig_open_config, area.sig_compare_adapters, area.sig_resume_run):
        signal.connect(sent.append)
    monkeypatch.setattr(area, "_confirm_removal", lambda plans, prune: sent.append(plans) or False)
    opened: list = []
    monkeypatch.setattr("gui.runs.area.QDesktopServices.openUrl", opened.append)
    for click in ("try_button", "config_button", "compare_data_button", "folder_button", "delete_button",
                  "gguf_button"):
        area.refresh()
        area.select_paths([done])
        assert getattr(area, click).isEnabled(), click
        shutil.move(done, done.with_name("moved-away"))
        if click == "gguf_button":
            assert area.open_gguf_dialog() is None
        else:
            getattr(area, click).click()
        assert plain(area.summary) == (f"{done.name}: its folder was deleted or moved since the list was read "
                                       f"({done}). The list was read again; nothing was done."), click
        assert done.name not in [r.name for r in area.model.runs] and not area.selected_runs()
        assert not sent and not opened
        shutil.move(done.with_name("moved-away"), done)
    # Only its final/ gone: Try it says that.
    area.refresh()
    area.select_paths([done])
    shutil.rmtree(done / "final")
    area.try_button.click()
    assert not sent and plain(area.summary).startswith(f"{done.name}: its final/ folder was deleted or moved")


def test_a_screen_reader_reads_the_compared_curves_ends_in_words(qtbot, runs):
    """The curves plot is painted: a screen reader found a nameless graphics view."""
    from tests.gui.keyboard_audit import spoken_description, spoken_name

    area = RunsArea()
    qtbot.addWidget(area)
    area.show()
    assert spoken_name(area.plot) == "Run curves plot"
    area.select_paths([runs["done"]])
    said = spoken_description(area.plot)
    assert said.startswith(f"Training loss: {runs['done'].name}: ") and said.endswith(" at step 20."), said
    area.metric_combo.setCurrentIndex(area.metric_combo.findData("grad_norm"))
    assert spoken_description(area.plot) == "No gradient norm recorded for the selected runs"


def test_a_bottleneck_runs_try_it_compare_and_gguf_are_greyed_with_why_as_in_the_train_area(qtbot, runs):
    """A bottleneck adapter's final/ is Finetune Studio's own format: the playground, Compare on
    data and GGUF export can't load it. The Train area greys Try it and Compare with the reason;
    the Runs area offered all three for one."""
    from engine.adapters import BOTTLENECK_FORMAT

    bneck = make_run("20261128-130000-adapter", "completed", final=True)
    (bneck / "final" / "adapter_config.json").write_text(json.dumps({"format": BOTTLENECK_FORMAT,
                                                                      "base_model_name_or_path": "demo"}))
    (runs["done"] / "final" / "adapter_config.json").write_text('{"peft_type": "LORA"}')
    area = RunsArea()
    qtbot.addWidget(area)
    area.select_paths([bneck])
    for button in (area.try_button, area.gguf_button):
        assert not button.isEnabled()
    assert area.try_button.toolTip().startswith("Not for this run: a bottleneck adapter")
    assert "playground and merge load PEFT adapters only" in area.try_button.toolTip()
    assert "is a bottleneck adapter: only LoRA and IA3" in area.gguf_button.toolTip()
    assert not area.compare_data_button.isEnabled()
    assert area.compare_data_button.toolTip().startswith(f"Not for {bneck.name}: a bottleneck adapter")
    area.select_paths([bneck, runs["done"]])
    assert not area.compare_data_button.isEnabled() and "bottleneck" in area.compare_data_button.toolTip()
    # A LoRA run's stay offered.
    area.select_paths([runs["done"]])
    assert area.try_button.isEnabled() and area.gguf_button.isEnabled() and area.compare_data_button.isEnabled()


def test_the_filter_narrows_the_list_by_any_column_and_the_selection_follows(qtbot, runs):
    """A dozen runs of several methods and states: typing part of a name, a method or a status
    leaves the matching rows; a selected run the filter hides leaves the curves and details."""
    make_run("20261128-130000-ia3", "failed")
    area = RunsArea()
    qtbot.addWidget(area)
    assert area.proxy.rowCount() == 4

    def shown() -> set[str]:
        return {area.proxy.index(r, 0).data() for r in range(area.proxy.rowCount())}

    area.filter_edit.setText("FULL")  # the name's part, any case
    assert shown() == {"20261128-120000-full"}
    area.filter_edit.setText("interrupted")  # a status as shown (the dead worker's run)
    assert shown() == {"20261128-120000-full"}
    area.filter_edit.clear()
    area.select_paths([runs["done"], runs["stopped"]])
    assert len(area.curves) == 2
    area.filter_edit.setText("110000")
    assert shown() == {"20261128-110000-lora"}
    assert [r.path for r in area.selected_runs()] == [runs["stopped"]]
    assert list(area.curves) == [str(runs["stopped"])]
    area.filter_edit.setText("qlora")
    assert not shown() and "No run matches “qlora”" in area.summary.text() and "all 4 runs" in area.summary.text()
    area.filter_edit.clear()
    assert len(shown()) == 4


def test_a_run_shown_after_it_ends_stays_selected_while_ctrl_is_held(qtbot, runs):
    """show_run made the run current with the view's setCurrentIndex, which selects by the keyboard's
    modifiers: with Ctrl held it toggled the just-selected run off, and the area said "Select a run"."""
    area = RunsArea()
    qtbot.addWidget(area)
    area.show()
    area.select_paths([runs["stopped"]])
    qtbot.keyPress(area.table, Qt.Key.Key_Control, Qt.KeyboardModifier.ControlModifier)
    try:
        area.show_run(runs["done"])
        assert [str(r.path) for r in area.selected_runs()] == [str(runs["done"])]
        assert area.table.currentIndex().row() == area.table.selectionModel().selectedRows()[0].row()
    finally:
        qtbot.keyRelease(area.table, Qt.Key.Key_Control)
