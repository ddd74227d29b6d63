"""Re-attaching to a run from its events.jsonl, without a worker process."""

from __future__ import annotations

import json
import subprocess
import sys

from engine.client import WorkerClient


def _write_events(path, events):
    path.write_text("".join(json.dumps({"event": t, "time": 0.0, **d}) + "\n" for t, d in events), encoding="utf-8")


def test_attach_to_a_resumed_run_ends_at_the_last_finished_not_the_first(tmp_path):
    _write_events(tmp_path / "events.jsonl", [
        ("started", {"resumed": False}), ("step", {"step": 1, "loss": 2.0}),
        ("finished", {"status": "stopped", "step": 1}),
        ("started", {"resumed": True, "resume_step": 1}), ("step", {"step": 2, "loss": 1.5}),
        ("finished", {"status": "completed", "step": 2}),
    ])
    # a pid that is certainly gone
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "worker.pid").write_text(str(dead.pid))

    events = list(WorkerClient.attach(tmp_path).events(poll_s=0.01))

    types = [e.type for e in events]
    assert types == ["started", "step", "log", "started", "step", "finished"]
    assert events[2]["text"] == "(an earlier session of this run ended: stopped at step 1)"
    assert events[-1]["status"] == "completed" and events[-1]["step"] == 2


def test_following_an_attached_run_stops_when_asked(tmp_path):
    import os

    _write_events(tmp_path / "events.jsonl", [("started", {}), ("step", {"step": 1, "loss": 2.0})])
    (tmp_path / "worker.pid").write_text(str(os.getpid()))  # "running": this very process
    seen = []
    for event in WorkerClient.attach(tmp_path).events(poll_s=0.01, should_stop=lambda: len(seen) >= 2):
        seen.append(event)
    assert [e.type for e in seen] == ["started", "step"]  # no made-up finished: the run goes on


def test_attach_to_a_run_killed_mid_way_reports_crashed(tmp_path):
    _write_events(tmp_path / "events.jsonl", [("started", {}), ("step", {"step": 1, "loss": 2.0})])
    (tmp_path / "worker.pid").write_text("999999999")

    events = list(WorkerClient.attach(tmp_path).events(poll_s=0.01))

    assert events[-1].type == "finished" and events[-1]["status"] == "crashed"
