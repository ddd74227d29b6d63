"""The queue from the GUI: the Train area queues a sweep, the Runs area's Queue starts a real
runner process, and the Train area follows each run it trains."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from engine.precision import Environment
from engine.runqueue import RunQueue


def test_queue_a_sweep_start_it_and_follow_its_runs(qtbot, monkeypatch, studio_home):
    from gui.main_window import MainWindow
    from gui.train import area as area_module

    monkeypatch.setattr(area_module, "detect_environment_isolated", Environment.cpu_only)
    win = MainWindow(load_demo=True, restore_geometry=False)
    qtbot.addWidget(win)
    win.show()
    train, runs = win.areas["train"], win.areas["runs"]
    panel = runs.queue_panel
    qtbot.waitUntil(lambda: train.env is not None, timeout=10_000)
    train.config_model.update({"max_steps": 3, "save_steps": 0, "eval_steps": 0, "logging_steps": 1,
                               "run_name": "sweep"})
    assert not panel.table.isVisibleTo(panel) and panel.empty.isVisibleTo(panel)
    assert not panel.start_button.isEnabled()

    # A bad sweep queues nothing and says which point is wrong.
    assert train.queue_run("lora_r=4,lots") == 0
    assert "Not queued: grid point lora_r=lots" in train.banner.text() and RunQueue().entries() == []

    assert train.queue_run("lora_r=4,8,8") == 2  # a value given twice is queued once, and said
    assert "Queued sweep-r4, sweep-r8 (2 pending; start it in Runs › Queue)" in train.progress_label.text()
    assert "lora_r: 8 is the same as an earlier value; queued once" in train.progress_label.text()
    assert [e.name for e in panel.model.entries] == ["sweep-r4", "sweep-r8"]  # reloaded at once
    assert runs.bottom_tabs.tabText(runs.bottom_tabs.indexOf(panel)) == "Queue (2)"
    panel.table.selectRow(1)
    qtbot.mouseClick(panel.up_button, Qt.MouseButton.LeftButton)
    assert [e.name for e in panel.model.entries] == ["sweep-r8", "sweep-r4"]

    # Start: a runner process of its own trains both; the Train area follows each.
    followed: set[str] = set()
    qtbot.mouseClick(panel.start_button, Qt.MouseButton.LeftButton)
    assert not panel.start_button.isEnabled() and "Started the queue" in panel.status.text()

    def all_ended() -> bool:
        if train.run_dir:
            followed.add(train.run_dir)
        panel.reload()
        return [e.state for e in panel.model.entries] == ["completed", "completed"] and panel._runner is None

    # Closing the window while it follows a queued run asks nothing: the queue goes on without it.
    qtbot.waitUntil(lambda: train.run.is_active() and train._following, timeout=60_000)
    train._ask_close_choice = lambda: pytest.fail("asked about a queued run")
    assert train.maybe_close() and not train.run.is_active()
    followed.add(train.run_dir)

    qtbot.waitUntil(all_ended, timeout=180_000)
    entries = panel.model.entries
    assert {e.run_dir for e in entries} <= followed | {entries[0].run_dir}  # the first may end before a tick
    assert train.run_dir in {e.run_dir for e in entries} and not train.run.is_active()
    assert all((Path(e.run_dir) / "final" / "adapter_config.json").exists() for e in entries)
    assert {str(r.path) for r in runs.model.runs} >= {e.run_dir for e in entries}  # in the history
    assert runs.bottom_tabs.tabText(runs.bottom_tabs.indexOf(panel)) == "Queue"
    log = (studio_home / "queue" / "runner.log").read_text()
    assert "queue: 2 run(s) trained (2 completed); 0 still pending" in log

    # Compare: the sweep's curves overlaid in Curves, with the setting that differs.
    assert panel.compare_button.isEnabled()
    qtbot.mouseClick(panel.compare_button, Qt.MouseButton.LeftButton)
    assert sorted(str(r.path) for r in runs.selected_runs()) == sorted(e.run_dir for e in entries)
    assert runs.bottom_tabs.currentIndex() == 0 and set(runs.curves) == {e.run_dir for e in entries}
    assert "lora_r" in runs.summary.text()

    # Retry is for runs that did not complete.
    panel.table.selectRow(0)
    assert not panel.retry_button.isEnabled()

    panel.table.selectAll()
    qtbot.mouseClick(panel.clear_button, Qt.MouseButton.LeftButton)
    assert panel.model.entries == [] and panel.empty.isVisibleTo(panel)


def test_retry_queues_a_stopped_run_to_continue_and_a_failed_one_afresh(qtbot, tmp_path, small_dataset,
                                                                       studio_home):
    """Entries as a runner left them (no training here): Retry queues them again."""
    from engine.runqueue import RunQueue
    from gui.runs.queue_panel import QueuePanel
    from tests.engine.test_train import make_cfg
    from tests.gui.runs.test_runs_area import make_run

    q = RunQueue()
    stopped, failed = q.add(make_cfg(Path("demo"), small_dataset, "", max_steps=50), grid={"lora_r": [4, 8]})
    run = make_run("20261202-150000-lora", "stopped", steps=20, checkpoint=True)
    q._update(stopped.id, state="stopped", run_dir=str(run), message="stopped at step 20, with a checkpoint")
    q._update(failed.id, state="failed", message="failed: out of disk")
    panel = QueuePanel()
    qtbot.addWidget(panel)
    panel.table.selectAll()
    assert panel.retry_button.isEnabled()
    qtbot.mouseClick(panel.retry_button, Qt.MouseButton.LeftButton)
    again = panel.model.entries[2:]
    assert [(e.name, e.state, e.resume) for e in again] == [(stopped.name, "pending", str(run)),
                                                            (failed.name, "pending", None)]
    assert "Queued 2 again (1 continues from its checkpoint)." in panel.status.text()
    assert [e.id for e in panel.selected()] == [stopped.id, failed.id]  # the selection survives the reload
    assert panel.model.data(panel.model.index(2, 1)) == f"{stopped.name} (resumed)"


def test_the_run_in_training_shows_its_step_in_result(qtbot, studio_home):
    """The Result of the entry in training follows its run ("step 5 of 8"), repainted at each poll
    though queue.json stays as it is."""
    import json
    import os

    from engine.runqueue import RUNNING, Entry
    from gui.runs.queue_panel import COLUMNS, QueuePanel
    from tests.engine.test_runs_cli import make_run

    path = make_run("20261128-100000-sweep", steps=3)
    summary = json.loads((path / "summary.json").read_text())
    summary["config"]["max_steps"] = 8
    summary.update(status="running", finished=None, step=None)
    (path / "summary.json").write_text(json.dumps(summary))
    (path / "worker.pid").write_text(str(os.getpid()))
    panel = QueuePanel()
    qtbot.addWidget(panel)
    panel.model.set_entries([Entry(id="1", name="sweep", config="x.yaml", state=RUNNING, run_dir=str(path))])
    cell = panel.model.index(0, COLUMNS.index("Result"))
    assert cell.data() == "step 3 of 8"
    with (path / "metrics.jsonl").open("a") as f:
        f.write(json.dumps({"step": 4, "loss": 0.5}) + "\n")
    with qtbot.waitSignal(panel.model.dataChanged):
        panel.reload()  # the queue file as read: only the step moved on
    assert cell.data() == "step 4 of 8"
