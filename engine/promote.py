"""Make a checkpoint a run's result: "keep the best" after training has ended.

A run that overfits at its end has a better checkpoint than its last step: the eval loss
bottomed out earlier. Early stopping handles that when it was turned on before the run;
this handles it afterwards, without training again. ``finetune-studio runs promote RUN``
(and the Runs area's "Use best checkpoint") makes ``final/`` hold the weights of the
checkpoint with the lowest eval loss, or of a checkpoint you name.

Nothing is lost: the new ``final/`` is assembled in a temporary folder and renamed into place;
the previous one is removed only when its step's checkpoint still holds the same weights, and
is kept as ``final-step-N/`` otherwise. ``summary.json`` records which step ``final/`` holds.
Only files are copied; no model is loaded.

A Trainer checkpoint holds exactly what the run's ``final/`` holds for PEFT methods (the
adapter) and for full and freeze (the model), plus the optimizer state this leaves behind.
A bottleneck-adapter checkpoint holds the whole model with the adapters inside, not the
adapter format ``final/`` uses, so those runs are refused.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import StudioError
from engine.files import atomic_write_text
from engine.runs import (
    checkpoint_folder,
    checkpoint_step,
    checkpoints,
    holds_weights,
    read_metrics,
    read_run_config,
    read_summary,
    run_info,
    write_summary,
)

# What a Trainer checkpoint holds besides the weights: the state to resume from.
TRAINER_STATE = ("optimizer.pt", "scheduler.pt", "scaler.pt", "trainer_state.json", "training_args.bin")
WEIGHTS_AND_CONFIG = ("adapter_model.safetensors", "adapter_model.bin", "adapter_config.json", "config.json",
                      "generation_config.json", "model.safetensors", "model.safetensors.index.json",
                      "pytorch_model.bin", "pytorch_model.bin.index.json", "README.md")


@dataclass
class Promoted:
    run_dir: Path
    checkpoint: Path
    step: int
    eval_loss: float | None
    previous: Path | None  # where the old final/ went
    previous_step: int | None

    def describe(self) -> str:
        loss = f" (eval loss {self.eval_loss:.4f})" if self.eval_loss is not None else ""
        text = f"final/ of {self.run_dir.name} now holds {self.checkpoint.name}{loss}"
        if self.previous is not None:
            text += f"; the weights it held before (step {self.previous_step}) are in {self.previous.name}/"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"run": str(self.run_dir), "final_from": self.checkpoint.name, "step": self.step,
                "eval_loss": self.eval_loss, "previous": str(self.previous) if self.previous else None,
                "previous_step": self.previous_step, "message": self.describe()}


def describe_offer(offer: tuple[Path, float, float | None]) -> str:
    """One line on a checkpoint that evaluated better than ``final/`` (:func:`promotion_offer`)."""
    path, loss, final_loss = offer
    than = f", lower than final/'s {final_loss:.4f}" if final_loss is not None else " (final/'s step was not evaluated)"
    return f"{path.name} evaluated {loss:.4f}{than}"


def eval_losses(run_dir: Path, rows: list[dict] | None = None) -> dict[int, float]:
    """Step -> eval loss, from metrics.jsonl (a resumed run's later value wins); ``rows``: its
    rows when the caller has read them."""
    out: dict[int, float] = {}
    for row in read_metrics(run_dir) if rows is None else rows:
        if isinstance(row.get("eval_loss"), (int, float)) and isinstance(row.get("step"), int):
            out[row["step"]] = float(row["eval_loss"])
    return out


def final_step(run_dir: Path) -> int | None:
    """The step whose weights ``final/`` holds (a run's last step, unless promoted)."""
    s = read_summary(run_dir)
    step = s.get("final_step", s.get("best_step") if s.get("early_stopped") else s.get("step"))
    return step if isinstance(step, int) and (Path(run_dir) / "final").is_dir() else None


# A single evaluation after the lowest counts as a rise only this far above it (a share of the
# lowest). Our own threshold: one eval point a little higher may be noise (a few held-out records,
# a step that happened to fit them worse), not a turn of the curve; two or more after it need none.
CLEAR_RISE = 0.05


@dataclass(frozen=True)
class EvalRise:
    """The eval loss rose after its lowest point (:func:`eval_rise`): evidence of overfitting."""

    best_step: int
    best_loss: float
    last_step: int
    last_loss: float
    points: int  # evaluations after the lowest

    def describe(self) -> str:
        after = "one evaluation" if self.points == 1 else f"{self.points} evaluations"
        return (f"the eval loss rose from its lowest, {self.best_loss:.4f} at step {self.best_step}, to "
                f"{self.last_loss:.4f} at step {self.last_step} ({after} after it)")


def eval_rise(losses: dict[int, float]) -> EvalRise | None:
    """Whether the eval loss really rose after its lowest point.

    It did when at least two evaluations came after the lowest and the last is still above it,
    or when the one evaluation after it is clearly (:data:`CLEAR_RISE`) above it. A run with a
    single evaluation, whose lowest is its last, or with one point barely above, shows no rise.

    Args:
        losses: step -> eval loss (:func:`eval_losses`).
    """
    points = sorted((s, v) for s, v in losses.items() if math.isfinite(v))
    if len(points) < 2:
        return None
    best_step, best = min(points, key=lambda p: (p[1], p[0]))
    after = [p for p in points if p[0] > best_step]
    if not after or after[-1][1] <= best:
        return None
    last_step, last = after[-1]
    if len(after) < 2 and last - best < CLEAR_RISE * abs(best):
        return None
    return EvalRise(best_step, best, last_step, last, len(after))


def best_checkpoint(run_dir: str | Path) -> tuple[Path, float] | None:
    """The kept checkpoint with the lowest eval loss, and that loss; None without evaluations
    at a kept checkpoint's step."""
    losses = eval_losses(Path(run_dir))
    kept = [(losses[checkpoint_step(c)], c) for c in checkpoints(Path(run_dir))
            if checkpoint_step(c) in losses and holds_weights(c)]
    if not kept:
        return None
    loss, path = min(kept, key=lambda x: (x[0], checkpoint_step(x[1])))
    return path, loss


def promotion_offer(run_dir: str | Path) -> tuple[Path, float, float | None] | None:
    """``(checkpoint, its eval loss, final's eval loss)`` when a kept checkpoint evaluated
    better than the weights in ``final/``; else None. For the GUI and ``runs show``.

    When ``final/``'s step was not evaluated, a lower checkpoint is offered only where the eval
    loss rose after it (:func:`eval_rise`): on a curve still falling at its last evaluation the
    last weights are as likely the better ones."""
    run_dir = Path(run_dir)
    step = final_step(run_dir)
    if step is None or _refusal(run_dir) is not None:  # cheap checks first: the GUI asks on every selection
        return None
    best = best_checkpoint(run_dir)
    if best is None or checkpoint_step(best[0]) == step:
        return None
    losses = eval_losses(run_dir)
    final_loss = losses.get(step)
    if final_loss is not None and final_loss <= best[1]:
        return None
    if final_loss is None and eval_rise(losses) is None:
        return None
    return best[0], best[1], final_loss


def _rewrites_base(run_dir: Path) -> bool:
    """A PiSSA/OLoRA run: its checkpoints hold the adapter for its rewritten base."""
    from engine.methods.lora import rewrites_base

    return rewrites_base(read_run_config(run_dir))


def _refusal(run_dir: Path) -> str | None:
    method = str(read_run_config(run_dir).get("method") or "")
    if method == "adapter":
        return ("its checkpoints hold the whole model with the bottleneck adapters inside, not the adapter "
                "format final/ uses")
    if run_info(run_dir).status == "running":
        return "it is still training"
    from engine.methods.lora import INIT_FOLDER

    if _rewrites_base(run_dir) and not (run_dir / INIT_FOLDER / "adapter_model.safetensors").exists():
        return (f"it is a PiSSA/OLoRA run whose initial adapter ({INIT_FOLDER}/) is gone, and its checkpoints "
                "can't be converted to a plain LoRA without it")
    return None


def promote(run_dir: str | Path, checkpoint: str | Path | None = None) -> Promoted:
    """Make ``checkpoint`` (default: the best by eval loss) the run's ``final/``.

    Args:
        run_dir: the run folder.
        checkpoint: ``None``/``"best"``, a step number, a ``checkpoint-N`` name or a folder.

    Raises:
        StudioError: no such checkpoint, no evaluations to pick the best by, a bottleneck
            adapter run, or a run still training.
    """
    run_dir = Path(run_dir)
    why = _refusal(run_dir)
    if why is not None:
        raise StudioError(f"can't change the result of run '{run_dir.name}': {why}")
    losses = eval_losses(run_dir)
    if checkpoint in (None, "best"):
        best = best_checkpoint(run_dir)
        if best is None:
            kept = ", ".join(c.name for c in checkpoints(run_dir)) or "none"
            raise StudioError(f"run '{run_dir.name}' has no evaluated checkpoint to pick the best from "
                              f"(checkpoints: {kept}; evaluations at steps: "
                              f"{', '.join(map(str, sorted(losses))) or 'none'})",
                              hint="Name one with --checkpoint N. For next time: eval_split > 0 with "
                                   "save_steps a multiple of eval_steps evaluates every checkpoint.")
        source = best[0]
    else:
        source = checkpoint_folder(run_dir, checkpoint)
    step = checkpoint_step(source)
    current = final_step(run_dir)
    if current == step:
        best = " the best checkpoint," if checkpoint in (None, "best") else ""
        loss = f", eval loss {losses[step]:.4f}" if step in losses else ""
        raise StudioError(f"final/ of run '{run_dir.name}' already holds{best} step {step} ({source.name}{loss})")

    final = run_dir / "final"
    tmp = Path(tempfile.mkdtemp(prefix=".final-", dir=run_dir))
    convert = _rewrites_base(run_dir)
    try:
        for f in source.iterdir():
            if f.is_file() and f.name not in TRAINER_STATE and not f.name.startswith("rng_state") \
                    and not (convert and f.name in ("adapter_model.safetensors", "adapter_config.json")):
                shutil.copy2(f, tmp / f.name)
        if convert:  # a PiSSA/OLoRA checkpoint becomes the plain LoRA final/ always is
            from engine.methods.lora import INIT_FOLDER, convert_checkpoint

            convert_checkpoint(source, run_dir / INIT_FOLDER, tmp)
        # The tokenizer and chat template the run saved with its result: from final/, or, when a rewind
        # moved final/ aside, from the newest result kept (superseded-*/final, final-step-*).
        kept = [final] if final.is_dir() else sorted(
            (d for d in (*run_dir.glob("superseded-*/final"), *run_dir.glob("final-step-*")) if d.is_dir()),
            key=lambda d: d.stat().st_mtime, reverse=True)[:1]
        for folder in kept:
            for f in folder.iterdir():
                if f.is_file() and f.name not in WEIGHTS_AND_CONFIG and not (tmp / f.name).exists():
                    shutil.copy2(f, tmp / f.name)
        previous = None
        if final.exists():
            previous = _free_name(run_dir, f"final-step-{current if current is not None else 'unknown'}")
            os.replace(final, previous)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    kept_in = run_dir / f"checkpoint-{current}"
    if previous is not None and current is not None and holds_weights(kept_in):
        # Its checkpoint holds the same weights: keeping a second copy (GBs for a full run) buys nothing.
        shutil.rmtree(previous, ignore_errors=True)
        previous = kept_in
    write_summary(run_dir, final_step=step, final_from=source.name, final_eval_loss=losses.get(step),
                  previous_final=previous.name if previous else None)
    _note_in_card(run_dir, source.name, losses.get(step), previous)
    return Promoted(run_dir, source, step, losses.get(step), previous, current)


def _free_name(run_dir: Path, name: str) -> Path:
    path, n = run_dir / name, 2
    while path.exists():
        path, n = run_dir / f"{name}-{n}", n + 1
    return path


def _note_in_card(run_dir: Path, source: str, loss: float | None, previous: Path | None) -> None:
    card = run_dir / "README.md"
    if not card.exists():
        return
    text = "\n".join(line for line in card.read_text(encoding="utf-8").splitlines()
                     if not line.startswith("> **final/ holds "))  # an earlier promotion's note
    note = (f"\n> **final/ holds {source}**" + (f" (eval loss {loss:.4f})" if loss is not None else "")
            + ", chosen after training" + (f"; the weights it held before are in {previous.name}/." if previous
                                           else ".") + "\n")
    atomic_write_text(card, text.rstrip("\n") + "\n" + note)


def cli_promote(args: Any) -> int:
    """``finetune-studio runs promote RUN [--checkpoint best|N|DIR] [--json]``."""
    from engine.runs import resolve_run

    run_dir = resolve_run(args.run)
    done = promote(run_dir, args.checkpoint)
    if args.json:
        print(json.dumps(done.to_dict()))
    else:
        print(done.describe())
    return 0
