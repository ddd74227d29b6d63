"""Resume from the Runs area, open a run's config, and the close-during-a-run question
(the real worker path is in test_run.py; here the launch is recorded, not run)."""

from __future__ import annotations

import json

from engine.config import RunConfig
from engine.paths import runs_dir


def fake_run(name: str = "20261128-090000-lora", steps: int = 12):
    path = runs_dir() / name
    (path / f"checkpoint-{steps}").mkdir(parents=True)
    (path / f"checkpoint-{steps}" / "trainer_state.json").write_text("{}")
    cfg = RunConfig(lora_r=4, learning_rate=1e-3, max_steps=30, output_dir=str(path), run_name="mine")
    cfg.save(path / "run.yaml")
    (path / "summary.json").write_text(json.dumps({"status": "stopped", "started": 1.0, "finished": 2.0,
                                                   "step": steps, "config": cfg.to_dict()}))
    (path / "metrics.jsonl").write_text("".join(json.dumps({"step": i, "loss": 3.0 / i}) + "\n"
                                                for i in range(1, steps + 1)))
    return path


def test_resume_run_continues_that_folder_with_its_config(make_area, monkeypatch):
    area = make_area()
    path = fake_run()
    launched = []
    monkeypatch.setattr(area.run, "start", lambda cfg, **kw: launched.append((cfg, kw)))
    assert area.resume_run(path)
    cfg, kw = launched[0]
    assert kw["resume"] is True and cfg.output_dir == str(path)
    assert (cfg.lora_r, cfg.learning_rate) == (4, 1e-3)
    assert area.config_model.get("output_dir") == ""  # a later Start makes a new folder
    assert area.plots.point_count() == 12  # the curve so far, before the worker says anything


def test_open_config_of_a_run_is_for_a_new_run(make_area):
    area = make_area()
    path = fake_run()
    assert area.load_config_file(path / "run.yaml")
    values = area.config_model.values()
    assert values["lora_r"] == 4 and values["output_dir"] == "" and values["run_name"] == ""


def test_closing_during_a_run_asks_and_can_cancel_or_stop(make_area, monkeypatch):
    area = make_area()
    sent = []
    monkeypatch.setattr(area.run, "is_active", lambda: True)
    monkeypatch.setattr(area.run, "stop", lambda: sent.append("stop") or True)
    monkeypatch.setattr(area.run, "detach", lambda: sent.append("detach"))
    area._ask_close_choice = lambda: "cancel"
    assert area.maybe_close() is False and sent == []
    area._ask_close_choice = lambda: "stop"
    assert area.maybe_close() is True and sent == ["stop", "detach"]
    sent.clear()
    area._ask_close_choice = lambda: "keep"
    assert area.maybe_close() is True and sent == ["detach"]


def test_no_question_without_a_run(make_area):
    area = make_area()
    area._ask_close_choice = lambda: (_ for _ in ()).throw(AssertionError("asked"))
    assert area.maybe_close() is True
