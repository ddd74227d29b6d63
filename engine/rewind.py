"""Go back to an earlier checkpoint of a run, to train on from there (a branch).

The loss went wrong after step 300 without a NaN to trip the guard, or an earlier checkpoint
looks like the better place to go on with a lower learning rate: ``finetune-studio runs rewind
RUN --checkpoint 300`` makes checkpoint-300 the run's newest, and ``train RUN/run.yaml --resume``
trains on from it, with the config as it is then (the Runs area's "Go back to…" rewinds and opens
the run's config in the Train area, where Resume continues).

Nothing is lost. The checkpoints after it, ``final/`` and copies of ``metrics.jsonl``,
``summary.json`` and the model card move into ``superseded-<time>/`` in the run folder (a
rename: no copy of the weights). The run's curve is cut back to the checkpoint's step, so the
resumed run continues it, and ``summary.json`` says the run was rewound, from where, and where
the rest went.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import StudioError
from engine.runs import (
    SAMPLES_FILE,
    checkpoint_folder,
    checkpoint_step,
    checkpoints,
    clamp_config_changes,
    curve_end,
    losses_at_step,
    read_summary,
    retired_error,
    rewind_metrics,
    run_info,
    write_summary,
)


@dataclass
class Rewound:
    """What :func:`rewind` did."""

    run_dir: Path
    checkpoint: Path
    step: int
    superseded: Path | None
    """Where the later checkpoints and final/ went (None when there was nothing after it)."""
    moved: list[str]
    """The folder names moved there."""
    metric_rows_cut: int
    unchanged: bool = False
    """The run already ended at that checkpoint, its newest: nothing was moved or rewritten."""

    def to_dict(self) -> dict[str, Any]:
        return {"run": str(self.run_dir), "checkpoint": self.checkpoint.name, "step": self.step,
                "superseded": str(self.superseded) if self.superseded else None, "moved": self.moved,
                "metric_rows_cut": self.metric_rows_cut, "unchanged": self.unchanged,
                "message": self.describe()}

    def what_happened(self) -> str:
        if self.unchanged:
            return (f"nothing to rewind: {self.run_dir.name} already ends at {self.checkpoint.name} (step "
                    f"{self.step}), its newest checkpoint; nothing was changed")
        where = (f"; {', '.join(self.moved)} moved to {self.superseded.name}/" if self.moved and self.superseded
                 else "")
        return f"{self.run_dir.name} now ends at {self.checkpoint.name} (step {self.step}){where}"

    def describe(self) -> str:
        resume = f"finetune-studio train {self.run_dir / 'run.yaml'} --resume"
        if not self.unchanged:
            return f"{self.what_happened()}. Resume it to train on from there: {resume}"
        from engine.resume import resume_point, resume_verdict

        verdict = resume_verdict(resume_point(self.run_dir))
        then = (f" Resume: {resume}" if verdict.ok else
                f" To train further, resume with a larger plan: {resume} --max_steps N (N above {self.step})."
                if verdict.finished else "")
        return f"{self.what_happened()}. {verdict.reason}{then}"


def rewind(run_dir: str | Path, checkpoint: str | int | Path) -> Rewound:
    """Make ``checkpoint`` the run's newest checkpoint, moving what came after it aside.

    Args:
        run_dir: the run folder.
        checkpoint: a step number, a ``checkpoint-N`` name or a checkpoint folder of the run.

    Raises:
        StudioError: the run is training, or the checkpoint is missing or incomplete.
    """
    run_dir = Path(run_dir)
    info = run_info(run_dir)
    if info.status == "running":
        raise StudioError(f"run '{run_dir.name}' is still training; stop it first")
    source = checkpoint_folder(run_dir, checkpoint)
    if source.parent.resolve() != run_dir.resolve():
        raise StudioError(f"'{source}' is not a checkpoint of run '{run_dir.name}'")
    if not (source / "trainer_state.json").exists():
        raise StudioError(f"{source.name} of run '{run_dir.name}' is incomplete (no trainer_state.json: it was "
                          "being written when the run ended), so training can't continue from it",
                          hint="Pick an earlier checkpoint.")
    step = checkpoint_step(source)
    later = [c for c in checkpoints(run_dir) if checkpoint_step(c) > step]
    if not later and info.steps == step:
        # Already there: moving final/ aside (a completed run's result, or one promoted from an
        # earlier checkpoint) and calling the run stopped would undo something for nothing.
        return Rewound(run_dir, source, step, None, [], 0, unchanged=True)
    results = [p for p in [run_dir / "final", *sorted(run_dir.glob("final-step-*"))] if p.is_dir()]
    superseded = None
    moved: list[str] = []
    if later or results:
        superseded = run_dir / f"superseded-{time.strftime('%Y%m%d-%H%M%S')}"
        n = 1
        while superseded.exists():
            n += 1
            superseded = run_dir / f"superseded-{time.strftime('%Y%m%d-%H%M%S')}-{n}"
        superseded.mkdir()
        for name in ("metrics.jsonl", SAMPLES_FILE, "summary.json", "README.md"):
            if (run_dir / name).exists():
                shutil.copy2(run_dir / name, superseded / name)
        for folder in [*later, *results]:
            os.replace(folder, superseded / folder.name)
            moved.append(folder.name)
    cut = rewind_metrics(run_dir, step)
    summary = read_summary(run_dir)

    # The losses as they stood at the step gone back to (the undone steps' went to superseded-*/).
    mean, last, _, window = curve_end(run_dir)
    _, best_eval = losses_at_step(run_dir, step)
    # A killed leg never wrote its end: "stopped" now, it ended where it last wrote (read before the cut).
    ended = {"finished": info.last_written} if not summary.get("finished") and info.last_written else {}
    write_summary(run_dir, **ended, status="stopped", step=step, final_dir=None, final_step=None, final_from=None,
                  final_loss=last, final_loss_mean=mean, final_loss_window=window or None, best_eval_loss=best_eval,
                  early_stopped=False, **retired_error(summary),
                  rewound={"to": source.name, "step": step, "from_step": summary.get("step"),
                           "superseded": superseded.name if superseded else None, "at": time.time()})
    clamp_config_changes(run_dir, step)  # a value changed after it now takes effect at step + 1
    return Rewound(run_dir, source, step, superseded, moved, cut)


def cli_rewind(args: Any) -> int:
    """``finetune-studio runs rewind RUN --checkpoint N [--json]``."""
    from engine.runs import resolve_run

    result = rewind(resolve_run(args.run), args.checkpoint)
    print(json.dumps(result.to_dict()) if getattr(args, "json", False) else result.describe())
    return 0
