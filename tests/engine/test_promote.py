"""`runs promote`: a checkpoint becomes the run's final/, by eval loss or by name, losing nothing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from engine.errors import StudioError
from engine.promote import best_checkpoint, final_step, promote, promotion_offer
from engine.runs import read_summary, run_details
from tests.engine.test_train import make_cfg, probe_ids, train


def trained_run(tmp_path, tiny_model_dir, small_dataset, out: Path | str | None = None, **changes) -> Path:
    """Checkpoints and evaluations at steps 2, 4 and 6, all kept (``out=""``: in the runs folder)."""
    settings = {"max_steps": 6, "save_steps": 2, "eval_steps": 2, "eval_split": 0.2, "save_total_limit": 0,
                **changes}
    cfg = make_cfg(tiny_model_dir, small_dataset, tmp_path / "run" if out is None else out, **settings)
    result, _, _ = train(cfg)
    assert result["status"] == "completed"
    return Path(result["output_dir"])


def make_step_best(run_dir: Path, best: int) -> None:
    """Rewrite the logged eval losses so that ``best`` evaluated lowest (an overfitting run)."""
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for row in rows:
        if "eval_loss" in row:
            row["eval_loss"] = 1.0 if row["step"] == best else 2.0 + row["step"] / 100
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def peft_logits(base_dir: Path, adapter: Path) -> torch.Tensor:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), adapter).eval()
    with torch.no_grad():
        return model(input_ids=probe_ids(base_dir)).logits


def test_best_checkpoint_becomes_final_and_loads_as_it(tmp_path, tiny_model_dir, small_dataset):
    run_dir = trained_run(tmp_path, tiny_model_dir, small_dataset)
    assert final_step(run_dir) == 6 and read_summary(run_dir)["final_step"] == 6
    make_step_best(run_dir, 2)
    assert best_checkpoint(run_dir) == (run_dir / "checkpoint-2", 1.0)
    offer = promotion_offer(run_dir)
    assert offer is not None and offer[0].name == "checkpoint-2" and offer[2] == pytest.approx(2.06)
    before = peft_logits(tiny_model_dir, run_dir / "final")

    done = promote(run_dir)
    assert done.step == 2 and done.eval_loss == 1.0 and done.previous_step == 6
    # final/ held step 6, which checkpoint-6 still holds: no second copy is kept.
    assert done.previous == run_dir / "checkpoint-6" and not list(run_dir.glob("final-step-*"))
    final = run_dir / "final"
    assert (final / "adapter_model.safetensors").read_bytes() == \
        (run_dir / "checkpoint-2" / "adapter_model.safetensors").read_bytes()
    assert (final / "tokenizer_config.json").exists() and not (final / "optimizer.pt").exists()
    assert not any(p.name.startswith(".final-") for p in run_dir.iterdir())
    after = peft_logits(tiny_model_dir, final)
    assert torch.allclose(after, peft_logits(tiny_model_dir, run_dir / "checkpoint-2"))
    assert not torch.allclose(after, before)
    assert torch.allclose(before, peft_logits(tiny_model_dir, run_dir / "checkpoint-6"))  # nothing lost

    assert final_step(run_dir) == 2 and promotion_offer(run_dir) is None
    from engine.adapters import export_adapter, read_card

    assert read_card(final).weights_from == "checkpoint-2"  # the library card says which weights
    assert read_card(export_adapter(final, tmp_path / "exported")).weights_from == "checkpoint-2"
    details = run_details(run_dir)
    assert details["final_step"] == 2 and details["final_from"] == "checkpoint-2"
    assert "> **final/ holds checkpoint-2** (eval loss 1.0000)" in (run_dir / "README.md").read_text()
    with pytest.raises(StudioError, match="already holds the best checkpoint, step 2"):
        promote(run_dir)

    # Back to the last step, by name; the card keeps one note.
    promote(run_dir, "6")
    assert final_step(run_dir) == 6
    assert torch.allclose(peft_logits(tiny_model_dir, final), before)
    assert (run_dir / "README.md").read_text().count("> **final/ holds") == 1


def test_previous_final_is_kept_when_no_checkpoint_holds_it(tmp_path, tiny_model_dir, small_dataset):
    run_dir = trained_run(tmp_path, tiny_model_dir, small_dataset, method="full")
    make_step_best(run_dir, 4)
    import shutil

    shutil.rmtree(run_dir / "checkpoint-6")  # rotated away (save_total_limit)
    weights = (run_dir / "final" / "model.safetensors").read_bytes()
    done = promote(run_dir)
    assert done.step == 4 and done.previous == run_dir / "final-step-6"
    assert (run_dir / "final-step-6" / "model.safetensors").read_bytes() == weights
    assert (run_dir / "final" / "model.safetensors").read_bytes() == \
        (run_dir / "checkpoint-4" / "model.safetensors").read_bytes()
    assert (run_dir / "final" / "config.json").exists() and (run_dir / "final" / "tokenizer.json").exists()


def test_what_cant_be_promoted_says_why(tmp_path, tiny_model_dir, small_dataset):
    run_dir = trained_run(tmp_path, tiny_model_dir, small_dataset, eval_split=0.0)
    assert best_checkpoint(run_dir) is None and promotion_offer(run_dir) is None
    with pytest.raises(StudioError, match="no evaluated checkpoint to pick the best from") as e:
        promote(run_dir)
    assert "--checkpoint N" in e.value.hint
    with pytest.raises(StudioError, match=r"no checkpoint '5' \(kept: checkpoint-2, checkpoint-4, checkpoint-6\)"):
        promote(run_dir, 5)

    summary = json.loads((run_dir / "summary.json").read_text())
    (run_dir / "summary.json").write_text(json.dumps({**summary, "status": "running"}))
    (run_dir / "worker.pid").write_text(str(os.getpid()))  # a live worker
    with pytest.raises(StudioError, match="it is still training"):
        promote(run_dir, 2)


def test_bottleneck_runs_are_refused(tmp_path, tiny_model_dir, small_dataset):
    run_dir = trained_run(tmp_path, tiny_model_dir, small_dataset, method="adapter",
                          adapter_reduction_factor=4)
    make_step_best(run_dir, 2)
    assert promotion_offer(run_dir) is None
    with pytest.raises(StudioError, match="bottleneck adapters inside"):
        promote(run_dir)


def test_cli_and_resume_after_a_promotion(tmp_path, tiny_model_dir, small_dataset, capsys):
    import io

    from engine.cli import main
    from engine.config import RunConfig
    from engine.events import EventWriter
    from engine.train import run_training

    run_dir = trained_run(tmp_path, tiny_model_dir, small_dataset)
    make_step_best(run_dir, 4)
    assert main(["runs", "show", str(run_dir)]) == 0
    shown = capsys.readouterr().out
    assert "better checkpoint  checkpoint-4 evaluated 1.0000, lower than final/'s 2.0600" in shown
    assert main(["runs", "promote", str(run_dir), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["final_from"] == "checkpoint-4"
    assert main(["runs", "promote", str(run_dir)]) == 2
    assert "already holds the best checkpoint" in capsys.readouterr().err

    # Training further writes a new final/ over the promoted one: said before (Resume's tooltip,
    # runs show) and when it starts; then the summary says final/ holds the new last step.
    from engine.resume import resume_point, resume_verdict

    warning = ("This run's final/ holds checkpoint-4, made the result after training; resuming writes a new "
               "final/ over it, from the run's last step.")
    verdict = resume_verdict(resume_point(run_dir), max_steps=8)
    assert verdict.ok and verdict.reason.endswith(warning)
    assert not resume_verdict(resume_point(run_dir)).ok  # its own plan: nothing to train, nothing to warn of
    cfg = RunConfig.load(run_dir / "run.yaml").replace(max_steps=8)
    stream = io.StringIO()
    assert run_training(cfg, EventWriter(stream=stream), resume=True)["status"] == "completed"
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [e["message"] for e in events if e.get("event") == "warning" and e.get("kind") == "resume"] == [warning]
    s = read_summary(run_dir)
    assert final_step(run_dir) == 8 and s["final_from"] is None
    assert warning not in resume_verdict(resume_point(run_dir), max_steps=10).reason  # final/ is the run's again


def test_overfitting_is_said_only_when_the_eval_loss_really_rose():
    from engine.promote import CLEAR_RISE, eval_rise

    assert eval_rise({}) is None and eval_rise({100: 1.0}) is None  # a single evaluation
    assert eval_rise({100: 1.2, 200: 1.0}) is None  # still falling at its last evaluation
    assert eval_rise({100: 1.0, 200: 1.01}) is None  # one point barely above: noise, not a turn
    assert eval_rise({100: 1.0, 200: 1.3, 300: 0.99}) is None  # it came back below
    clear = eval_rise({100: 1.2, 200: 1.0, 300: 1.0 + 2 * CLEAR_RISE})
    assert clear is not None and (clear.best_step, clear.last_step, clear.points) == (200, 300, 1)
    two = eval_rise({100: 1.0, 200: 1.01, 300: 1.02, 400: float("nan")})
    assert two is not None and (two.best_step, two.last_loss, two.points) == (100, 1.02, 2)
    assert two.describe() == ("the eval loss rose from its lowest, 1.0000 at step 100, to 1.0200 at step 300 "
                              "(2 evaluations after it)")


def test_a_checkpoint_is_offered_over_an_unevaluated_final_only_after_a_rise(tmp_path):
    """final/'s step (6) was not evaluated: a lower checkpoint was offered as "better" even on a
    curve still falling at its last evaluation."""
    run_dir = tmp_path / "run"
    for name in ("checkpoint-2", "checkpoint-4", "checkpoint-6", "final"):
        (run_dir / name).mkdir(parents=True)
        (run_dir / name / "adapter_config.json").write_text("{}")
    (run_dir / "run.yaml").write_text("method: lora\nmax_steps: 6\n")
    (run_dir / "summary.json").write_text(json.dumps({"status": "completed", "step": 6, "final_step": 6}))

    def evals(losses: dict[int, float]) -> None:
        (run_dir / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "eval_loss": v}) + "\n"
                                                       for s, v in losses.items()))

    evals({2: 1.5, 4: 1.2})
    assert promotion_offer(run_dir) is None
    evals({2: 1.0, 4: 1.3})  # one clear rise after checkpoint-2
    offer = promotion_offer(run_dir)
    assert offer is not None and offer[0].name == "checkpoint-2" and offer[2] is None
    evals({2: 1.0, 4: 1.3, 6: 1.01})  # final/'s step evaluated: a fact, whatever the curve did
    assert promotion_offer(run_dir)[2] == 1.01
