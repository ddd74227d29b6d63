"""Freeze tuning: only the top N decoder layers (and optionally named modules) train.

The decoder layers are found without knowing the architecture: they are the longest
``nn.ModuleList`` in the model (``model.model.layers`` for Llama, ``transformer.h`` for
GPT-2). "Top" means closest to the output, as in LLaMA-Factory's
``freeze_trainable_layers``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from engine.errors import ConfigError
from engine.methods import full

if TYPE_CHECKING:
    from torch import nn

    from engine.config import RunConfig


def decoder_layers(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The model's block list and its qualified name: the longest ``nn.ModuleList``.

    Raises:
        ConfigError: the model has no ``ModuleList`` of blocks.
    """
    from torch import nn

    best: tuple[str, nn.ModuleList] | None = None
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0 and (best is None or len(module) > len(best[1])):
            best = (name, module)
    if best is None:
        raise ConfigError(f"method 'freeze': can't find the decoder layers of {type(model).__name__} "
                          "(no list of blocks)", key="method", fix={"method": "lora"})
    return best


def find_modules(model: nn.Module, name: str) -> list[tuple[str, nn.Module]]:
    """Modules whose qualified name is ``name`` or ends with ``.name`` (e.g. 'norm' -> model.norm)."""
    return [(q, m) for q, m in model.named_modules() if q == name or q.endswith("." + name)]


def apply(model: nn.Module, cfg: RunConfig, *, method: str = "freeze") -> nn.Module:
    """Freeze everything, then unfreeze the top layers and the extra modules.

    Raises:
        ConfigError: more trainable layers than the model has (``freeze_trainable_layers``),
            or an extra module name matching nothing (``freeze_extra_modules``).
    """
    layers_name, layers = decoder_layers(model)
    n = cfg.freeze_trainable_layers
    if n > len(layers):
        raise ConfigError(f"'freeze_trainable_layers' is {n} but the model has only {len(layers)} decoder "
                          f"layers ({layers_name})", key="freeze_trainable_layers",
                          fix={"freeze_trainable_layers": len(layers)})
    extras: list[nn.Module] = []
    for extra in cfg.freeze_extra_modules:
        found = find_modules(model, extra)
        if not found:
            top = sorted({q.split(".")[-1] for q, m in model.named_modules()
                          if q and not q.startswith(layers_name + ".")})
            raise ConfigError(f"'freeze_extra_modules': no module named '{extra}' in "
                              f"{type(model).__name__}; names outside the decoder layers: {', '.join(top)}",
                              key="freeze_extra_modules")
        extras.extend(m for _, m in found)
    for p in model.parameters():
        p.requires_grad_(False)
    for layer in list(layers)[len(layers) - n:]:
        for p in layer.parameters():
            p.requires_grad_(True)
    for module in extras:
        for p in module.parameters():
            p.requires_grad_(True)
    return model


def save(model: nn.Module, out_dir: Path, cfg: RunConfig) -> Path:
    """The whole model as a safetensors folder (the frozen part is needed to use it)."""
    return full.save_model_folder(model, out_dir)


def load(base_model: nn.Module, path: Path, cfg: RunConfig) -> nn.Module:
    return full.load_model_folder(base_model, path)
