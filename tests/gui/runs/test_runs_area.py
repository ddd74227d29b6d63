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
    if final:
        (path / "final").mkdir()
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
    assert done[COLUMNS.index("Duration")] == "1m 05s"
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
    assert "Failed at step 4: the loss became non-finite" in text
    assert "nan_policy is &#x27;stop&#x27;" in text  # escaped: the label is rich text
    assert "lower the learning rate" in text and "learning_rate = 5.0" in text
    row = next(r for r in range(area.model.rowCount()) if area.model.runs[r].path == path)
    tip = area.model.data(area.model.index(row, COLUMNS.index("Status")), Qt.ItemDataRole.ToolTipRole)
    assert tip.startswith("Failed at step 4: the loss became non-finite")
    done = next(r for r in area.model.runs if r.status == "completed")
    area.select_paths([done.path])
    assert "Failed" not in area.summary.text()


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
