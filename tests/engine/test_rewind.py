"""``runs rewind``: back to an earlier checkpoint, the rest moved aside, then resumed from there."""

from __future__ import annotations

import json

import pytest

from engine.errors import StudioError
from engine.resume import resume_point, resume_verdict
from engine.rewind import rewind
from engine.runs import read_metrics, read_samples, read_summary
from tests.engine.test_train import make_cfg, train


def test_a_completed_run_rewound_to_an_earlier_checkpoint_trains_on_from_it(tiny_model_dir, small_dataset,
                                                                           tmp_path, capsys):
    out = tmp_path / "run"
    cfg = make_cfg(tiny_model_dir, small_dataset, out, max_steps=6, save_steps=2, save_total_limit=0)
    assert train(cfg)[0]["status"] == "completed"
    first_final = (out / "final" / "adapter_model.safetensors").read_bytes()
    done = rewind(out, 2)
    assert done.step == 2 and done.moved == ["checkpoint-4", "checkpoint-6", "final"]
    # Nothing is lost: the later checkpoints, final/ and the curve as it was are in superseded-*/.
    aside = done.superseded
    assert sorted(p.name for p in aside.iterdir()) == ["README.md", "checkpoint-4", "checkpoint-6", "final",
                                                       "metrics.jsonl", "samples.jsonl", "summary.json"]
    assert (aside / "final" / "adapter_model.safetensors").read_bytes() == first_final
    # The answers made at the later checkpoints go with them (no eval data: one per checkpoint, and the end).
    assert [r["step"] for r in read_samples(aside)] == [2, 4, 6] and [r["step"] for r in read_samples(out)] == [2]
    assert max(r["step"] for r in read_metrics(out)) == 2 and done.metric_rows_cut == 4
    summary = read_summary(out)
    assert summary["status"] == "stopped" and summary["step"] == 2 and summary["rewound"]["from_step"] == 6
    # The losses are the cut curve's, not the undone steps' (runs list, show and compare read them).
    losses = [r["loss"] for r in read_metrics(out) if "loss" in r]
    assert summary["final_loss"] == losses[-1] and summary["final_loss_window"] == 2
    assert summary["final_loss_mean"] == pytest.approx(sum(losses) / 2) and summary["best_eval_loss"] is None
    verdict = resume_verdict(resume_point(out))
    assert verdict.ok, verdict.reason
    from engine.cli import main

    assert main(["runs", "show", str(out)]) == 0
    shown = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("rewound"))
    assert f"went back to checkpoint-2 from step 6; later checkpoints and final/ are in {aside.name}/" in shown

    # Resumed with a lower learning rate: steps 3-6 again, from checkpoint-2's weights.
    result, rec, _ = train(cfg.replace(learning_rate=1e-3), resume=True)
    assert result["status"] == "completed" and rec.of("started")[0]["resume_step"] == 2
    steps = [r["step"] for r in read_metrics(out) if "loss" in r]
    assert steps == [1, 2, 3, 4, 5, 6]
    assert (out / "final" / "adapter_model.safetensors").read_bytes() != first_final
    assert read_summary(out)["status"] == "completed"

    assert main(["runs", "rewind", str(out), "--checkpoint", "checkpoint-4", "--json"]) == 0
    said = json.loads(capsys.readouterr().out)
    assert said["step"] == 4 and said["moved"] == ["checkpoint-6", "final"] and "--resume" in said["message"]


def test_rewinding_is_refused_for_a_missing_or_incomplete_checkpoint(tiny_model_dir, small_dataset, tmp_path):
    out = tmp_path / "run"
    assert train(make_cfg(tiny_model_dir, small_dataset, out, max_steps=4, save_steps=2))[0]["status"] == "completed"
    with pytest.raises(StudioError, match=r"no checkpoint '3' \(kept: checkpoint-2, checkpoint-4\)"):
        rewind(out, 3)
    # Another run's checkpoint is not this run's, whatever its name (promote and audit refuse it too).
    other = tmp_path / "other"
    assert train(make_cfg(tiny_model_dir, small_dataset, other, max_steps=2, save_steps=2))[0]["status"] == "completed"
    from engine.audit import audit_run
    from engine.promote import promote

    for act in (lambda: rewind(out, other / "checkpoint-2"), lambda: promote(out, other / "checkpoint-2"),
                lambda: audit_run(out, checkpoint=other / "checkpoint-2")):
        with pytest.raises(StudioError, match=f"is not a checkpoint of run '{out.name}'"):
            act()
    (out / "checkpoint-2" / "trainer_state.json").unlink()
    with pytest.raises(StudioError, match="incomplete"):
        rewind(out, 2)
    assert (out / "checkpoint-4").is_dir() and (out / "final").is_dir()  # nothing moved


def test_promoting_after_a_rewind_keeps_the_runs_tokenizer(tiny_model_dir, small_dataset, tmp_path):
    """final/ moved aside by the rewind held the tokenizer and chat template the run saved; a promoted
    checkpoint's final/ gets them from there (it had only the adapter and its config)."""
    from engine.promote import promote

    out = tmp_path / "run"
    assert train(make_cfg(tiny_model_dir, small_dataset, out, max_steps=4, save_steps=2))[0]["status"] == "completed"
    saved = sorted(f.name for f in (out / "final").iterdir() if "token" in f.name or f.suffix == ".jinja")
    assert saved
    rewind(out, 2)
    promote(out, 2)
    assert sorted(f.name for f in (out / "final").iterdir() if "token" in f.name or f.suffix == ".jinja") == saved


def test_rewinding_to_the_checkpoint_a_run_ends_at_changes_nothing_and_says_so(tiny_model_dir, small_dataset,
                                                                               tmp_path, capsys):
    """`runs rewind RUN --checkpoint <its last>` moved a completed run's final/ aside, called the run
    stopped and said 'now ends at checkpoint-2 ... Resume it to train on from there', where nothing
    was left to train; asked again, it said the same though it did nothing."""
    from engine.cli import main
    from tests.engine.test_train import _folder_state

    out = tmp_path / "run"
    assert train(make_cfg(tiny_model_dir, small_dataset, out, max_steps=2, save_steps=1))[0]["status"] == "completed"
    before, summary = _folder_state(out), (out / "summary.json").read_text()
    assert main(["runs", "rewind", str(out), "--checkpoint", "2"]) == 0
    said = capsys.readouterr().out
    assert said.startswith(f"nothing to rewind: {out.name} already ends at checkpoint-2 (step 2), its newest "
                           "checkpoint; nothing was changed. Completed at step 2 of 2: nothing is left to train. "
                           f"To train further, resume with a larger plan: finetune-studio train {out / 'run.yaml'} "
                           "--resume --max_steps N (N above 2).")
    assert _folder_state(out) == before and (out / "summary.json").read_text() == summary
    # An earlier checkpoint is still a rewind; then that one is where the run ends.
    assert rewind(out, 1).moved == ["checkpoint-2", "final"]
    again = rewind(out, 1)
    assert again.unchanged and again.moved == [] and again.to_dict()["unchanged"] is True
    assert "nothing to rewind" in again.describe() and "Resume: finetune-studio train" in again.describe()
