"""IA3 (arXiv 2205.05638) through PEFT: learned per-channel scales of chosen activations.

``ia3_target_modules: auto`` uses PEFT's default mapping for the architecture (keys,
values and the MLP's down projection for Llama). With an explicit list, the modules that
PEFT's mapping calls feed-forward for this architecture are scaled on their input, the
rest on their output, as in the paper.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from engine.methods import peft_adapter

if TYPE_CHECKING:
    from peft import IA3Config, PeftModel
    from torch import nn

    from engine.config import RunConfig


def ia3_config(cfg: RunConfig, model_type: str | None) -> IA3Config:
    """The PEFT ``IA3Config`` for ``cfg.ia3_target_modules`` on a model of ``model_type``."""
    from peft import IA3Config

    if cfg.ia3_target_modules == "auto":
        return IA3Config(task_type="CAUSAL_LM")
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING as FF

    targets = list(cfg.ia3_target_modules)
    known_ff = set(FF.get(model_type or "", []))
    return IA3Config(task_type="CAUSAL_LM", target_modules=targets,
                     feedforward_modules=[t for t in targets if t in known_ff])


def apply(model: nn.Module, cfg: RunConfig, *, method: str = "ia3") -> PeftModel:
    """Wrap ``model`` with IA3 scaling vectors; only they train."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if cfg.ia3_target_modules != "auto":
        peft_adapter.check_targets(model, list(cfg.ia3_target_modules), "ia3_target_modules")
    return peft_adapter.wrap(model, ia3_config(cfg, model_type), key="ia3_target_modules")


def save(model: PeftModel, out_dir: Path, cfg: RunConfig) -> Path:
    return peft_adapter.save(model, out_dir)


def load(base_model: nn.Module, path: Path, cfg: RunConfig) -> PeftModel:
    return peft_adapter.load(base_model, path)
