"""A real demo run driven from the GUI on the CPU: start, watch, stop, resume, keep running
when the window closes, re-attach, finish. Each worker start costs ~8 s of imports."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt

from engine.config import RunConfig
from engine.runs import last_checkpoint, list_runs, read_metrics, read_summary
from gui.train.gpu_panel import detect_environment_isolated

FAST = {"max_steps": 30, "save_steps": 10, "eval_steps": 15, "logging_steps": 1}
RUN_TIMEOUT_MS = 180_000


def test_real_gpu_detection_runs_out_of_process():
    env = detect_environment_isolated()
    import torch

    assert env.cuda == torch.cuda.is_available()


def test_start_stop_resume_keep_running_and_reattach(make_area, qtbot):
    area = make_area()
    area.config_model.update(FAST)
    steps: list[dict] = []
    area.run.sig_steps.connect(steps.extend)

    # Start: the worker reports, steps arrive, the first checkpoint is saved.
    with qtbot.waitSignal(area.run.sig_checkpoint, timeout=RUN_TIMEOUT_MS):
        qtbot.mouseClick(area.start_button, Qt.MouseButton.LeftButton)
        assert not area.start_button.isEnabled() and area.stop_button.isEnabled()
    assert steps and steps[0]["step"] == 1 and "loss" in steps[0]
    assert area.plots.point_count() >= 1
    run_dir = Path(area.run_dir)
    assert run_dir.is_dir() and run_dir.parent.name == "runs"

    # Stop: the worker finishes its step and saves a checkpoint.
    with qtbot.waitSignal(area.run.sig_finished, timeout=RUN_TIMEOUT_MS) as stopped:
        qtbot.mouseClick(area.stop_button, Qt.MouseButton.LeftButton)
    assert stopped.args[0]["status"] == "stopped"
    stop_step = stopped.args[0]["step"]
    assert 10 <= stop_step < 30
    assert last_checkpoint(run_dir).name == f"checkpoint-{stop_step}"
    assert area.notifications[-1][0] == "Training stopped"
    assert area.resume_button.isEnabled() and area.start_button.isEnabled()
    assert "stopped" in area.progress_label.text()
    assert area.progress.text() == f"stopped at step {stop_step} of 30"

    # Resume with the form's config: continues from the checkpoint, not from step 1.
    steps.clear()
    with qtbot.waitSignal(area.run.sig_started, timeout=RUN_TIMEOUT_MS) as started:
        qtbot.mouseClick(area.resume_button, Qt.MouseButton.LeftButton)
    assert started.args[0]["resumed"] is True
    assert area.plots.point_count() >= stop_step  # the curve so far was reloaded from metrics.jsonl

    # Close the window while it trains and keep the run: the worker goes on without us.
    area._ask_close_choice = lambda: "keep"
    assert area.maybe_close()
    assert not area.run.is_active()
    assert any(r.status == "running" and r.path == run_dir for r in list_runs())

    # Next start: the new window re-attaches and follows the run to its end.
    again = make_area()
    again.config_model.update(FAST)
    with qtbot.waitSignal(again.run.sig_finished, timeout=RUN_TIMEOUT_MS) as finished:
        assert again.reattach_running() == str(run_dir)
    assert finished.args[0]["status"] == "completed", finished.args[0]
    assert again.plots.point_count() == 30  # both sessions replayed, the resumed one continuing the first
    again.plots.redraw()
    assert again.plots.curve_data()[0][-1] == 30
    summary = read_summary(run_dir)
    assert summary["status"] == "completed" and summary["step"] == 30
    assert [r["step"] for r in read_metrics(run_dir) if "loss" in r][-1] == 30
    assert (run_dir / "final" / "adapter_config.json").exists()
    assert again.notifications[-1][0] == "Training finished"
    # The time over both legs (the first started here, the second finished after a re-attach), as runs list says.
    from engine.runs import duration_text, run_info

    assert f"Run completed in {duration_text(run_info(run_dir))}" in again.progress_label.text()
    assert duration_text(run_info(run_dir)).endswith(" (2 legs)")
    # The Answers tab shows what the model answered at the last evaluation, beside the references.
    assert again.samples.shown_step() == 30 and again.samples.rows[0]["source"] == "eval"
    assert "reference" in again.samples.view.toPlainText()
    assert again.tabs.tabText(again.tabs.indexOf(again.samples)) == "Answers (step 30)"
    assert again.try_button.isVisibleTo(again)
    with qtbot.waitSignal(again.sig_try_adapter) as tried:
        qtbot.mouseClick(again.try_button, Qt.MouseButton.LeftButton)
    assert tried.args[0] == str(run_dir / "final")
    assert again.audit_button.isVisibleTo(again)
    with qtbot.waitSignal(again.sig_audit_run) as audit:
        qtbot.mouseClick(again.audit_button, Qt.MouseButton.LeftButton)
    assert audit.args[0] == str(run_dir)
    assert again.compare_button.isVisibleTo(again)
    with qtbot.waitSignal(again.sig_compare_adapters) as compared:
        qtbot.mouseClick(again.compare_button, Qt.MouseButton.LeftButton)
    assert compared.args[0] == [str(run_dir / "final")]
    assert again.gguf_button.isVisibleTo(again)
    dialog = again.open_gguf_dialog()
    qtbot.addWidget(dialog)
    assert dialog.source == str(run_dir / "final") and dialog.out_edit.text() == str(run_dir / f"{run_dir.name}-q8_0.gguf")
    assert "CPU" in again.gauge.details.text()  # no GPU peak to show beside the estimate


def test_reattach_to_a_worker_started_by_the_engine_client(make_area, qtbot, tmp_path):
    from engine.client import WorkerClient

    cfg = RunConfig.load(Path(__file__).resolve().parents[3] / "resources" / "presets" / "demo.yaml",
                         {**FAST, "max_steps": 40, "save_steps": 0, "eval_split": 0.0})
    client = WorkerClient.start(cfg)  # detached: its own session, as the GUI starts it
    try:
        qtbot.waitUntil(lambda: any(r.status == "running" for r in list_runs()), timeout=RUN_TIMEOUT_MS)
        client.detach()  # this "GUI" goes away; the worker keeps training
        area = make_area()
        with qtbot.waitSignal(area.run.sig_finished, timeout=RUN_TIMEOUT_MS) as finished:
            assert area.reattach_running() == str(client.output_dir)
            assert area.stop_button.isEnabled()
        assert finished.args[0]["status"] == "completed"
        assert area.plots.point_count() == 40
        assert area.run.events_seen > 40
    finally:
        client.kill()


def test_cpu_training_leaves_a_core_to_the_window(make_area, monkeypatch):
    from gui.train import area as area_module

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(area_module.os, "cpu_count", lambda: 8)
    assert area_module.cpu_training_env() == {"OMP_NUM_THREADS": "7"}
    monkeypatch.setattr(area_module.os, "cpu_count", lambda: 1)
    assert area_module.cpu_training_env() == {"OMP_NUM_THREADS": "1"}
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's own setting is kept
    assert area_module.cpu_training_env() == {}
    monkeypatch.delenv("OMP_NUM_THREADS")

    area = make_area()  # no GPU: the run trains on the CPU
    calls: list[dict] = []
    monkeypatch.setattr(area.run, "start", lambda cfg, **kw: calls.append(kw))
    area.config_model.update(FAST)
    assert area.start_run()
    assert calls and calls[0]["env"] == {"OMP_NUM_THREADS": "1"}


def test_probe_measures_saves_nothing_and_leaves_resume_alone(make_area, qtbot):
    from gui.train.area import PROBE_STEPS

    area = make_area()
    area.config_model.update({"max_steps": 200, "save_steps": 50})
    assert area.probe_button.isEnabled() and "Nothing is saved" in area.probe_button.toolTip()
    area.run_dir = before = "/somewhere/earlier-run"  # the last real run, which Resume refers to
    with qtbot.waitSignal(area.run.sig_finished, timeout=RUN_TIMEOUT_MS) as finished:
        qtbot.mouseClick(area.probe_button, Qt.MouseButton.LeftButton)
        assert not area.probe_button.isEnabled() and not area.start_button.isEnabled()
    data = finished.args[0]
    assert data["status"] == "completed" and data["step"] == PROBE_STEPS
    probe_dir = Path(data["output_dir"])
    assert probe_dir.name.endswith("-probe")
    assert not any(p.name.startswith(("checkpoint-", "final")) for p in probe_dir.iterdir())
    assert area.run_dir == before
    card = area.advisor_panel.cards["probe"]
    assert "time per step" in card.advice.text and "full run: 200 steps" in card.advice.text
    assert card.advice.fix is None  # it fit: nothing to change
    assert area.progress_label.text().startswith("Probe completed") and "nothing saved. Full run: 200 steps" in \
        area.progress_label.text()
    assert area.notifications[-1][0] == "Probe finished" and not area.try_button.isVisible()
    assert not area.audit_button.isVisible()  # a probe saved nothing to audit
    assert not area.compare_button.isVisible() and not area.gguf_button.isVisible()
    assert area.start_button.isEnabled() and area.probe_button.isEnabled()


def test_a_run_training_elsewhere_is_asked_about_before_a_second_starts(make_area, qtbot, studio_home):
    """A queued or terminal run holds the GPU: Start asks first, and a No starts nothing."""
    import json
    import os

    area = make_area()
    area.config_model.update(FAST)
    other = studio_home / "runs" / "20261202-140000-full"
    other.mkdir(parents=True)
    (other / "summary.json").write_text(json.dumps({"status": "running", "config": {"method": "full"}}))
    (other / "worker.pid").write_text(str(os.getpid()))  # alive
    asked = []
    area._ask_start_beside = lambda name: asked.append(name) or False
    assert not area.start_run() and asked == [other.name] and not area.run.is_active()
    assert f"Not started: {other.name} is training on this machine" in area.banner.text()
    assert area.progress_label.text() == f"Not started: {other.name} is training on this machine."

    area._ask_start_beside = lambda name: True
    with qtbot.waitSignal(area.run.sig_started, timeout=RUN_TIMEOUT_MS):
        assert area.start_run()
    area.run.kill()


def test_reopened_while_the_queue_trains_it_follows_that_run_and_keeps_the_form(make_area, qtbot, studio_home):
    """After a restart, the queue's live run is followed, not loaded into the form."""
    import json
    import os

    from engine.runqueue import RunQueue

    live = studio_home / "runs" / "20261202-160000-sweep-r8"
    live.mkdir(parents=True)
    (live / "summary.json").write_text(json.dumps({"status": "running", "started": 1.0,
                                                   "config": {"method": "lora", "run_name": "sweep-r8"}}))
    (live / "worker.pid").write_text(str(os.getpid()))  # alive
    (live / "events.jsonl").write_text(json.dumps({"event": "started", "time": 1.0}) + "\n")
    q = RunQueue()
    [entry] = q.add(RunConfig.load(Path(__file__).resolve().parents[3] / "resources" / "presets" / "demo.yaml"))
    q._update(entry.id, state="running", run_dir=str(live))
    area = make_area()
    area.config_model.update({"run_name": "mine"})
    assert area.reattach_running() == str(live)
    assert area._following and area.config_model.values()["run_name"] == "mine"
    assert f"Following {live.name} from the queue" in area.progress_label.text()
    area.run.detach()


def test_the_progress_bar_says_how_a_failed_run_ended(make_area, qtbot, tmp_path):
    area = make_area()
    assert area.progress.text() == "no run yet"
    empty = tmp_path / "empty-answers.jsonl"  # every record left out: the run fails in its setup
    empty.write_text('{"instruction": "a", "output": ""}\n{"instruction": "b", "output": " "}\n', encoding="utf-8")
    area.config_model.update({**FAST, "dataset": str(empty)})
    with qtbot.waitSignal(area.run.sig_finished, timeout=RUN_TIMEOUT_MS) as done:
        assert area.start_run(), area.banner.text()
    assert done.args[0]["status"] == "failed" and "empty-answers.jsonl" in area.progress_label.text()
    assert area.progress.text() == "failed before the first step"  # it said "no run yet"
    # A run that failed at step 5 after its bar showed step 3 (a NaN rollback) names that step.
    area._max_steps = 30
    area.progress.setRange(0, 30)
    area.progress.setValue(3)
    area._show_progress_end("failed", {"status": "failed", "error": {"kind": "nonfinite", "step": 5}})
    assert area.progress.text() == "failed at step 5 of 30"


def test_kill_right_after_start_ends_the_worker_it_was_spawning(qtbot, studio_home, monkeypatch):
    """Kill pressed while the pump thread was still spawning the worker found no client and did
    nothing: the run trained on (a test waiting for it left a worker training for minutes)."""
    import os
    import threading

    from engine.client import WorkerClient, pid_alive
    from gui.train.worker_thread import RunClient

    spawning, spawned = threading.Event(), []
    real_start = WorkerClient.start.__func__

    def slow_start(cls, *args, **kwargs):
        spawning.wait(30)  # Kill is pressed while this runs
        spawned.append(real_start(cls, *args, **kwargs))
        return spawned[-1]

    monkeypatch.setattr(WorkerClient, "start", classmethod(slow_start))
    cfg = RunConfig.load(Path(__file__).resolve().parents[3] / "resources" / "presets" / "demo.yaml",
                         {**FAST, "max_steps": 2000, "save_steps": 0, "eval_split": 0.0})
    run = RunClient()
    run.start(cfg)
    run.kill()
    spawning.set()
    try:
        with qtbot.waitSignal(run.sig_finished, timeout=60_000):
            pass
        assert spawned and not pid_alive(spawned[0].pid)
    finally:
        if spawned and pid_alive(spawned[0].pid):
            os.kill(spawned[0].pid, 9)
        run.shutdown()
