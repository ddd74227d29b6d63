"""Whether resuming a run folder would train anything, and the words that say why (or why not).

Resuming a run that already reached its last step trains nothing: with its ``final/`` written,
the engine says "nothing left to train" and leaves the run as it is (``engine/train.py`` judges
it by :func:`resume_verdict` too); without ``final/`` (killed after its last checkpoint) it
writes ``final/`` from that checkpoint. So Resume is offered only where it continues
something, and a disabled Resume says why and what would make it possible.

The Runs and Train areas offer Resume by it; ``finetune-studio runs show`` prints it.
:func:`resume_point` reads a run folder once (per selection, or when a run ends);
:func:`resume_verdict` is pure, so the Train area can judge it again on every edit of
``max_steps`` or ``num_epochs`` without touching the disk.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from engine.runs import checkpoint_step, last_checkpoint, read_summary, recorded_config, run_info

RESUMABLE = ("stopped", "interrupted", "failed", "crashed")
"""Statuses of a run that ended before its plan: resumable when a checkpoint was saved."""


@dataclass(frozen=True)
class ResumePoint:
    """What a run folder holds that decides whether resuming it continues anything."""

    status: str
    checkpoint: str | None = None
    """The newest complete checkpoint's folder name (``checkpoint-N``), if any."""
    checkpoint_step: int = 0
    reached_step: int | None = None
    """The step the run got to, from summary.json."""
    max_steps: int = -1
    """The run's own plan (``-1``: ``num_epochs`` decides)."""
    num_epochs: float = 0.0
    epoch_steps: int = -1
    """For a run planned in epochs, the steps its ``num_epochs`` came to (Trainer's ``max_steps``
    in the newest checkpoint's trainer_state.json); -1 when unknown or planned in steps."""
    save_steps: int = 0
    has_final: bool = False
    """``final/`` exists: the adapter or model was written."""
    early_stopped: bool = False
    final_from: str | None = None
    """The checkpoint ``final/`` was made from after training (``runs promote``), if it was."""
    config_problem: str | None = None
    """Why the run's run.yaml, which a resume continues with, can't be read (None: it reads)."""

    def promoted_note(self) -> str:
        """What a resume does to a promoted ``final/``: it writes a new one over it ('' when not promoted)."""
        if not (self.has_final and self.final_from):
            return ""
        return (f"This run's final/ holds {self.final_from}, made the result after training; resuming writes a "
                "new final/ over it, from the run's last step.")


@dataclass(frozen=True)
class ResumeVerdict:
    """Whether to offer Resume, and the tooltip that explains it."""

    ok: bool
    reason: str
    finished: bool = False
    """Nothing left to train under the current plan: raising ``max_steps`` would change that."""


def _int(value: object, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def resume_point(path: str | Path, status: str | None = None) -> ResumePoint:
    """Read what decides whether ``path`` can be resumed (status, checkpoint, plan, final/).

    Args:
        path: the run folder.
        status: the run's status when the caller knows it already (``RunInfo.status``, where a
            dead worker's "running" reads "interrupted"); read from the folder otherwise.
    """
    path = Path(path)
    status = status or run_info(path).status
    summary = read_summary(path)
    recorded = recorded_config(path)
    cfg = recorded.values or summary.get("config") or {}
    ckpt = last_checkpoint(path)
    epochs = cfg.get("num_epochs")
    max_steps = _int(cfg.get("max_steps"), -1)
    epoch_steps = -1
    if ckpt is not None and max_steps <= 0:
        try:
            state = json.loads((ckpt / "trainer_state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            state = None
        # Only while the run's num_epochs are the ones that checkpoint's plan was made for
        # (Trainer records them rounded up: 1.5 epochs are 2, of which it trains max_steps).
        if isinstance(state, dict) and isinstance(epochs, (int, float)) \
                and state.get("num_train_epochs") == math.ceil(epochs):
            epoch_steps = _int(state.get("max_steps"), -1)
    return ResumePoint(
        status=status, checkpoint=ckpt.name if ckpt else None, checkpoint_step=checkpoint_step(ckpt) if ckpt else 0,
        reached_step=summary.get("step") if isinstance(summary.get("step"), int) else None,
        max_steps=max_steps, num_epochs=float(epochs) if isinstance(epochs, (int, float)) else 0.0,
        epoch_steps=epoch_steps,
        save_steps=_int(cfg.get("save_steps"), 0), has_final=(path / "final").is_dir(),
        early_stopped=bool(summary.get("early_stopped")),
        final_from=summary.get("final_from") if isinstance(summary.get("final_from"), str) else None,
        config_problem=recorded.problem)


def resume_verdict(point: ResumePoint, *, max_steps: int | None = None,
                   num_epochs: float | None = None) -> ResumeVerdict:
    """Would resuming ``point`` train (or finish) anything, and why (not)?

    Args:
        point: from :func:`resume_point`.
        max_steps: the plan the resume would use (the Train area's form); default: the run's own.
        num_epochs: likewise, for a run planned in epochs (``max_steps`` -1).

    Returns:
        ``ok`` to offer Resume, with a ``reason`` for its tooltip (which warns when the resume
        would write over a promoted ``final/``); ``finished`` when only a larger plan would
        leave something to train.
    """
    verdict = _verdict(point, max_steps, num_epochs)
    if verdict.ok and point.config_problem:
        # train --resume would refuse it with this very message; offering it promises what can't happen.
        return ResumeVerdict(False, f"Its run.yaml, which a resume continues with, can't be read: "
                             f"{point.config_problem}. Once the file is fixed: {verdict.reason}")
    note = point.promoted_note()
    if verdict.ok and note:
        return ResumeVerdict(True, f"{verdict.reason} {note}", verdict.finished)
    return verdict


def _verdict(point: ResumePoint, max_steps: int | None, num_epochs: float | None) -> ResumeVerdict:
    status = point.status
    plan = point.max_steps if max_steps is None else max_steps
    epochs = point.num_epochs if num_epochs is None else num_epochs
    # The step the plan ends at: a run planned in epochs, resumed with the same epochs, ends
    # where they came to (without it, one stopped at its last step was offered a resume that
    # trained nothing and wrote final/ again).
    last = plan if plan > 0 else point.epoch_steps if epochs == point.num_epochs else -1
    of_plan = f" of {last}" if last > 0 else ""
    if status == "running":
        return ResumeVerdict(False, "This run is still training: it can be stopped, then resumed.")
    if status == "completed":
        done = point.reached_step if point.reached_step is not None else point.checkpoint_step
        # Only a larger plan than the one it completed leaves steps to train.
        more = (plan > max(done, point.max_steps) if plan > 0
                else point.max_steps <= 0 and epochs > point.num_epochs)
        if point.checkpoint and more:
            target = f"up to step {plan}" if plan > 0 else f"for {epochs:g} epochs"
            return ResumeVerdict(True, f"Continue this completed run from {point.checkpoint} (step "
                                 f"{point.checkpoint_step}) {target}.")
        at = f" at step {done}{of_plan}" if done else ""
        if point.early_stopped:
            return ResumeVerdict(False, f"Stopped early{at} because the eval loss stopped improving; its result "
                                 "is the best checkpoint. Nothing is left to train.")
        if not point.checkpoint:
            return ResumeVerdict(False, f"Completed{at}: nothing is left to train, and no checkpoint was kept to "
                                 "continue from. To train longer, raise max_steps and start a new run.")
        return ResumeVerdict(False, f"Completed{at}: nothing is left to train.", finished=True)
    if status not in RESUMABLE:
        return ResumeVerdict(False, f"This run's status is '{status}': only a stopped, interrupted or failed "
                             "run can be resumed.")
    if not point.checkpoint:
        every = f" (one is saved every {point.save_steps} steps)" if point.save_steps > 0 else ""
        return ResumeVerdict(False, f"This run {status} before its first checkpoint{every}: there is nothing to "
                             "resume from. Start it again from its run.yaml.")
    if 0 < last <= point.checkpoint_step:
        if point.has_final:
            return ResumeVerdict(False, f"This run {status} at its last step ({point.checkpoint_step}{of_plan}) "
                                 "and its final adapter is written: nothing is left to train.", finished=True)
        return ResumeVerdict(True, f"{point.checkpoint} is already at the last step ({point.checkpoint_step}"
                             f"{of_plan}): resuming writes final/ from it without training.")
    return ResumeVerdict(True, f"Continue this {status} run from {point.checkpoint} (step "
                         f"{point.checkpoint_step}{of_plan}).")


_FIXED_BY_METHOD = {
    "lora": ("lora_r", "lora_target_modules", "use_dora", "lora_init", "loraplus_lr_ratio", "add_tokens"),
    "qlora": ("lora_r", "lora_target_modules", "use_dora", "lora_init", "loraplus_lr_ratio", "add_tokens"),
    "full": ("add_tokens",),
    "freeze": ("freeze_trainable_layers", "freeze_extra_modules"),
    "prefix": ("num_virtual_tokens", "prefix_projection"),
    "prompt": ("num_virtual_tokens",),
    "adapter": ("adapter_reduction_factor", "adapter_style"),
    "ia3": ("ia3_target_modules",),
}
"""Per method, the settings its checkpoints' weights and optimizer state are shaped by."""


def fixed_on_resume(before: dict, after: dict) -> list[tuple[str, object, object]]:
    """The settings a resume may not change, as ``(key, before, after)``: the method, the settings
    that shape its trained weights (LoRA rank and targets, virtual tokens, ...), and the optimizer,
    whose saved state only loads into the same kind. ``before``: the run's run.yaml."""
    if not before:
        return []
    if before.get("method") != after.get("method"):
        return [("method", before.get("method"), after.get("method"))]
    keys = (*_FIXED_BY_METHOD.get(str(after.get("method")), ()), "optimizer")
    return [(k, before[k], after.get(k)) for k in keys if k in before and _norm(before[k]) != _norm(after.get(k))]


def _norm(value: object) -> object:
    return tuple(value) if isinstance(value, list) else value
