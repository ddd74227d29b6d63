"""Shared plumbing for the methods built on PEFT: wrap, save, load.

PEFT raises plain ``ValueError`` for config problems (e.g. target modules not in the
model); these become ``ConfigError`` naming the run-config key, so the user sees which
setting to change.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from engine.errors import ConfigError, ModelError

if TYPE_CHECKING:
    from peft import PeftConfig, PeftModel
    from torch import nn


def wrap(model: nn.Module, peft_config: PeftConfig, *, key: str) -> PeftModel:
    """``get_peft_model`` with PEFT's config errors turned into a ``ConfigError`` on ``key``."""
    from peft import get_peft_model

    try:
        return get_peft_model(model, peft_config)
    except ValueError as e:
        raise ConfigError(f"'{key}': {e}", key=key) from None


def save(model: nn.Module, out_dir: Path) -> Path:
    """Write ``adapter_config.json`` + ``adapter_model.safetensors`` into ``out_dir``."""
    from peft import PeftModel

    if not isinstance(model, PeftModel):
        raise TypeError(f"expected a PeftModel to save as an adapter, got {type(model).__name__}")
    model.save_pretrained(str(out_dir), safe_serialization=True)
    return out_dir


def load(base_model: nn.Module, path: Path, *, is_trainable: bool = False) -> PeftModel:
    """``PeftModel.from_pretrained`` on a fresh base, with a readable error."""
    from peft import PeftModel

    if not (path / "adapter_config.json").exists():
        raise ModelError(f"'{path}' is not a PEFT adapter folder: no adapter_config.json")
    return PeftModel.from_pretrained(base_model, str(path), is_trainable=is_trainable)
