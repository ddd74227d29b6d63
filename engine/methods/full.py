"""Full fine-tuning: every weight trains; the artefact is a safetensors model folder."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

    from engine.config import RunConfig


def apply(model: nn.Module, cfg: RunConfig, *, method: str = "full") -> nn.Module:
    """Make every parameter trainable (a loaded model may arrive partly frozen)."""
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def save(model: nn.Module, out_dir: Path, cfg: RunConfig) -> Path:
    """``save_pretrained``: config.json + model.safetensors (transformers 5 writes only safetensors)."""
    return save_model_folder(model, out_dir)


def load(base_model: nn.Module, path: Path, cfg: RunConfig) -> nn.Module:
    """Load the saved folder as the same class and dtype as ``base_model``."""
    return load_model_folder(base_model, path)


def save_model_folder(model: nn.Module, out_dir: Path) -> Path:
    model.save_pretrained(str(out_dir))
    return out_dir


def load_model_folder(base_model: nn.Module, path: Path) -> nn.Module:
    from engine.models import check_weights_safe

    check_weights_safe(path, allow_pickle=False)
    dtype = next(base_model.parameters()).dtype
    model = type(base_model).from_pretrained(str(path), dtype=dtype, local_files_only=True,
                                             use_safetensors=True)
    return model.to(next(base_model.parameters()).device)
