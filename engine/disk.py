"""Disk space a run will write, checked before it trains.

A full fine-tune of a 7B model writes checkpoints of tens of GB each (weights plus the
optimizer's two moments), and Trainer keeps ``save_total_limit`` of them plus the one being
written. A disk that fills at step 2,000 fails the run hours in; this says so before step 1,
with the ``save_total_limit`` that would fit.

The sizes come from the loaded model itself (each tensor's element count and dtype), so they
are what Trainer writes, not a formula:

- a checkpoint holds the saved weights (PEFT methods: the trainable adapter tensors; full,
  freeze and bottleneck runs: the whole model, tied tensors once) and ``optimizer.pt``: AdamW
  keeps two moments in each trainable tensor's dtype, the 8-bit AdamWs one byte per moment plus
  a 32-bit scale per block of 256 (tensors under 4,096 elements stay 32-bit, as bitsandbytes
  does), SGD without momentum nothing;
- ``final/`` holds the weights (a PiSSA/OLoRA adapter twice: it is saved at rank 2r) and the
  tokenizer's files.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

SMALL_FILES = 1 << 20
"""scheduler.pt, rng_state.pth, trainer_state.json, training_args.bin, configs, cards: well under 1 MiB."""

@dataclass
class DiskPlan:
    """What a run will write into its folder, and whether its disk holds it."""

    checkpoint_bytes: int
    """One checkpoint."""
    final_bytes: int
    """``final/``."""
    checkpoints_at_once: int
    """The most checkpoints on disk at the same time (the kept ones, plus the one being written)."""
    existing_bytes: int
    """Checkpoints already in the folder (a resumed run), counted towards the ones kept."""
    need_bytes: int
    """What the run still writes at its fullest: the checkpoints not there yet, and ``final/``."""
    free_bytes: int
    """Free space on the run folder's disk now."""

    @property
    def fits(self) -> bool:
        return self.need_bytes <= self.free_bytes

    def fitting_limit(self) -> int | None:
        """The largest ``save_total_limit`` whose checkpoints fit, or None when not even one does."""
        room = self.free_bytes + self.existing_bytes - self.final_bytes
        at_once = room // max(self.checkpoint_bytes, 1)
        return int(at_once - 1) if at_once >= 2 else None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "fits": self.fits}


def model_bytes(model: Any, cfg: Any, *, peft: bool) -> tuple[int, int]:
    """``(saved weights, optimizer state)`` bytes of one checkpoint of ``model`` under ``cfg``
    (the state by the memory estimate's own per-tensor rule)."""
    import torch

    from engine.memory.terms import tensor_state_bytes

    weights = optimizer = 0
    seen: set[int] = set()
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    for p in model.parameters():
        if id(p) in seen:
            continue  # tied embeddings are saved once
        seen.add(id(p))
        size = p.numel() * p.element_size()
        if p.requires_grad:
            optimizer += tensor_state_bytes(cfg.optimizer, p.numel(), p.element_size(), embedding=id(p) in embeddings)
        if p.requires_grad or not peft:
            weights += size
    return weights, optimizer


def kept_at_most(cfg: Any) -> int | None:
    """The most checkpoints ``save_total_limit`` lets be on disk at once (None: no limit).

    Trainer writes the new checkpoint before it deletes the oldest; the best one under early
    stopping is kept on top of the limit.
    """
    if not cfg.save_total_limit:
        return None
    return cfg.save_total_limit + 1 + (1 if cfg.early_stopping_patience else 0)


def checkpoints_at_once(cfg: Any, steps: int | None) -> int:
    """The most checkpoints Trainer has on disk at once for ``steps`` optimizer steps."""
    saves = max(1, math.ceil(steps / cfg.save_steps)) if cfg.save_steps and steps else 1
    bound = kept_at_most(cfg)
    return saves if bound is None else min(saves, bound)


def tokenizer_bytes(model_dir: Path | None) -> int:
    """The tokenizer files ``final/`` gets a copy of (read from the model folder)."""
    if model_dir is None or not Path(model_dir).is_dir():
        return 0
    names = ("tokenizer", "vocab", "merges", "special_tokens_map", "added_tokens", "chat_template", "spiece")
    return sum(f.stat().st_size for f in Path(model_dir).iterdir()
               if f.is_file() and f.name.startswith(names))


def plan(model: Any, cfg: Any, output_dir: Path, *, peft: bool, steps: int | None, model_dir: Path | None = None,
         existing: list[Path] | None = None) -> DiskPlan:
    """The disk plan of a prepared run.

    Args:
        model: the model as it trains (method applied).
        cfg: its run config.
        output_dir: the run folder (exists).
        peft: checkpoints hold only the trainable tensors (a PEFT method).
        steps: the run's optimizer steps (None: unknown; counted as one save).
        model_dir: the base model's folder, for the tokenizer files.
        existing: checkpoints already in the folder.
    """
    weights, optimizer = model_bytes(model, cfg, peft=peft)
    checkpoint = weights + optimizer + SMALL_FILES
    from engine.methods.lora import rewrites_base

    final = weights * (2 if rewrites_base(cfg) else 1) + tokenizer_bytes(model_dir) + SMALL_FILES
    at_once = checkpoints_at_once(cfg, steps)
    existing = existing or []
    existing_bytes = sum(f.stat().st_size for c in existing for f in c.rglob("*") if f.is_file())
    new = max(0, at_once - len(existing))
    final_there = (Path(output_dir) / "final").is_dir()
    need = new * checkpoint + (0 if final_there else final)
    free = shutil.disk_usage(output_dir).free
    return DiskPlan(checkpoint, final, at_once, existing_bytes, need, free)


def estimate_from_config(cfg: Any, st: Any, free_in: Path | None = None) -> dict[str, Any]:
    """What :func:`plan` will find, from the config and the estimate's model structure alone
    (no weights): the ``disk`` object of ``estimate --json``.

    The same rules as :func:`model_bytes`, on the structure's parameter counts: PEFT methods save
    their adapter parameters (fp32, as PEFT keeps them), the others the whole model at its load
    dtype plus fp32 adapters; the optimizer state is the memory estimate's own term. The run's
    step count needs the dataset, so ``checkpoints_at_once`` is the bound ``save_total_limit``
    sets (None when it keeps every checkpoint).

    Args:
        cfg: the run config.
        st: its :class:`engine.memory.structure.ModelStructure`.
        free_in: a folder whose disk's free space is reported (default: none reported).
    """
    from engine.memory.terms import Setup, adapter_params, optimizer_state_bytes, weight_bytes
    from engine.methods import get_method
    from engine.methods.lora import rewrites_base

    setup = Setup.from_config(cfg)
    saved = adapter_params(st, setup) * 4 if get_method(cfg.method).peft else weight_bytes(st, setup)
    checkpoint = saved + optimizer_state_bytes(st, setup) + SMALL_FILES
    final = saved * (2 if rewrites_base(cfg) else 1) + SMALL_FILES
    from engine.errors import ModelError
    from engine.memory.structure import resolved_model_dir

    try:
        final += tokenizer_bytes(resolved_model_dir(cfg.model))  # the estimate's own cached lookup
    except (ModelError, OSError):
        pass  # the structure was built from this model, so this is a folder gone since: no tokenizer counted
    at_once = kept_at_most(cfg)
    free = None
    if free_in is not None:
        folder = Path(free_in)
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        free = shutil.disk_usage(folder).free
    need = final + checkpoint * at_once if at_once else None
    return {"checkpoint_bytes": int(checkpoint), "final_bytes": int(final), "checkpoints_at_once": at_once,
            "need_bytes": need, "free_bytes": free,
            "fits": None if free is None or need is None else need <= free}
