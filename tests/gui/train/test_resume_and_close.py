"""Resume from the Runs area, open a run's config, and the close-during-a-run question
(the real worker path is in test_run.py; here the launch is recorded, not run)."""

from __future__ import annotations

import json

from engine.config import RunConfig
from engine.paths import runs_dir


def fake_run(name: str = "20261128-090000-lora", steps: int = 12, status: str = "stopped", max_steps: int = 30):
    path = runs_dir() / name
    (path / f"checkpoint-{steps}").mkdir(parents=True)
    (path / f"checkpoint-{steps}" / "trainer_state.json").write_text("{}")
    if status == "completed":
        (path / "final").mkdir()
    cfg = RunConfig(lora_r=4, learning_rate=1e-3, max_steps=max_steps, output_dir=str(path), run_name="mine")
    cfg.save(path / "run.yaml")
    (path / "summary.json").write_text(json.dumps({"status": status, "started": 1.0, "finished": 2.0,
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
    assert cfg.run_name == "mine"  # the run keeps its name (the form's is for new runs)
    assert area.config_model.get("output_dir") == ""  # a later Start makes a new folder
    assert area.config_model.get("run_name") == ""
    assert area.plots.point_count() == 12  # the curve so far, before the worker says anything


def test_open_config_of_a_run_is_for_a_new_run(make_area):
    area = make_area()
    path = fake_run()
    assert area.load_config_file(path / "run.yaml")
    values = area.config_model.values()
    assert values["lora_r"] == 4 and values["output_dir"] == "" and values["run_name"] == ""


def test_resume_of_a_completed_run_needs_a_larger_max_steps(make_area, monkeypatch):
    """A completed run has nothing left to train (the engine would only rewrite final/): Resume
    is off and says so, until the form plans more steps than the run did."""
    area = make_area()
    path = fake_run(steps=30, status="completed")
    launched = []
    monkeypatch.setattr(area.run, "start", lambda cfg, **kw: launched.append((cfg, kw)))
    assert not area.resume_button.isEnabled()
    assert area.resume_button.toolTip().startswith("No run to resume")

    # Open config of that run: Start makes a new run, Resume would continue this one.
    assert area.load_config_file(path / "run.yaml")
    assert area.run_dir == str(path)
    tip = area.resume_button.toolTip()
    assert not area.resume_button.isEnabled()
    assert "Completed at step 30 of 30: nothing is left to train" in tip and "Raise max_steps" in tip
    assert path.name in tip

    area.config_model.update({"max_steps": 50})
    assert area.resume_button.isEnabled()
    assert "from checkpoint-30 (step 30) up to step 50" in area.resume_button.toolTip()
    area.resume_button.click()
    cfg, kw = launched[0]
    assert kw["resume"] is True and cfg.output_dir == str(path) and cfg.max_steps == 50
    assert cfg.run_name == "mine"

    # The Runs area's Resume (the run's own config) is refused with the reason, never launched.
    assert not area.resume_run(path)
    assert "nothing is left to train" in area.banner.text() and len(launched) == 1


def test_resume_follows_the_run_state_and_the_form(make_area):
    area = make_area()
    path = fake_run(steps=12, status="stopped", max_steps=30)
    assert area.load_config_file(path / "run.yaml")
    assert area.resume_button.isEnabled()
    assert "Continue this stopped run from checkpoint-12 (step 12 of 30)" in area.resume_button.toolTip()
    area.config_model.update({"learning_rate": -1.0})  # an invalid form: can't resume with it
    assert not area.resume_button.isEnabled()
    assert "fix the problems listed above first" in area.resume_button.toolTip()
    area.config_model.update({"learning_rate": 5e-4})  # a lower LR: a resume may change that
    assert area.resume_button.isEnabled()
    area.config_model.update({"lora_r": 8})  # the checkpoints hold rank-4 LoRA weights
    assert not area.resume_button.isEnabled()
    assert "a resume can't change what its checkpoints hold (lora_r 4 → 8)" in area.resume_button.toolTip()


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
