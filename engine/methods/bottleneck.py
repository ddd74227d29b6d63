"""Bottleneck adapters, Houlsby (arXiv 1902.00751) and Pfeiffer (arXiv 2005.00247) placement.

AdapterHub's ``adapters`` library would be the natural choice, but its latest release
(1.3.0) requires ``transformers ~=4.57.6`` and this project pins transformers 5, so the
method is implemented here, small and architecture-agnostic:

- An adapter is ``x + up(act(down(x)))`` with ``down: h -> h/reduction_factor`` and
  ``up`` initialised to zero, so a fresh adapter is the identity and training starts
  from the base model's exact outputs.
- It is applied to a sub-layer's output (before the block's residual add), by a forward
  hook on that sub-layer: ``pfeiffer`` after the MLP of every decoder layer (ReLU), as
  AdapterHub's ``seq_bn``; ``houlsby`` after the attention and after the MLP (SiLU/swish),
  as ``double_seq_bn``. Parameters per adapter: 2*h*m + h + m with m = h/reduction_factor.
- The adapter modules are registered as children of the sub-layer they follow (named
  ``bottleneck_adapter``), so they move with ``.to()``, show up in ``parameters()`` for
  the optimizer, and are part of ``state_dict()`` for Trainer checkpoints.
- Adapters are kept in fp32 like PEFT's (``autocast_adapter_dtype``), whatever the base
  dtype; under autocast their matmuls still run in bf16/fp16.

Saved format (a folder, like a PEFT adapter but not loadable by PEFT):

- ``adapter_config.json``: ``{"format": "finetune-studio-bottleneck", "format_version": 1,
  "style", "reduction_factor", "bottleneck_size", "hidden_size", "non_linearity",
  "layers_path", "num_layers", "base_model_name_or_path"}``
- ``adapter_model.safetensors``: the adapters' tensors under their module path in the
  model, e.g. ``model.layers.3.mlp.bottleneck_adapter.down.weight``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import ConfigError, ModelError
from engine.methods.freeze import decoder_layers

if TYPE_CHECKING:
    from torch import nn

    from engine.config import RunConfig

FORMAT = "finetune-studio-bottleneck"
FORMAT_VERSION = 1
CHILD_NAME = "bottleneck_adapter"
# Sub-layer attribute names across common decoder architectures (Llama/Qwen/Mistral,
# GPT-2/GPT-NeoX, Falcon, Phi...).
ATTN_NAMES = ("self_attn", "attn", "attention", "self_attention")
MLP_NAMES = ("mlp", "feed_forward", "ffn")
NON_LINEARITY = {"pfeiffer": "relu", "houlsby": "silu"}


def bottleneck_size(hidden_size: int, reduction_factor: int) -> int:
    """m = h / reduction_factor, at least 1."""
    return max(1, hidden_size // reduction_factor)


def adapter_parameter_count(hidden_size: int, reduction_factor: int, num_layers: int, style: str) -> int:
    """Trainable parameters: (2*h*m + h + m) per adapter, 1 (pfeiffer) or 2 (houlsby) per layer."""
    m = bottleneck_size(hidden_size, reduction_factor)
    per_adapter = 2 * hidden_size * m + hidden_size + m
    return per_adapter * num_layers * (2 if style == "houlsby" else 1)


def _adapter_class() -> type:
    """The ``nn.Module`` class, built lazily so importing this module doesn't import torch."""
    global _ADAPTER_CLASS
    if _ADAPTER_CLASS is not None:
        return _ADAPTER_CLASS
    import torch
    from torch import nn

    class BottleneckAdapter(nn.Module):
        """``x + up(act(down(x)))``, with ``up`` zero-initialised so it starts as the identity."""

        def __init__(self, hidden_size: int, size: int, non_linearity: str, device: Any = None):
            super().__init__()
            self.down = nn.Linear(hidden_size, size, device=device, dtype=torch.float32)
            self.act = nn.ReLU() if non_linearity == "relu" else nn.SiLU()
            self.up = nn.Linear(size, hidden_size, device=device, dtype=torch.float32)
            nn.init.zeros_(self.up.weight)
            nn.init.zeros_(self.up.bias)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            delta = self.up(self.act(self.down(x.to(self.down.weight.dtype))))
            return x + delta.to(x.dtype)

    _ADAPTER_CLASS = BottleneckAdapter
    return BottleneckAdapter


_ADAPTER_CLASS: type | None = None


def _hook(module: nn.Module, args: Any, output: Any) -> Any:
    adapter = getattr(module, CHILD_NAME)
    # Attention modules return (hidden, attn_weights, ...); MLPs return a tensor.
    if isinstance(output, tuple):
        return (adapter(output[0]), *output[1:])
    return adapter(output)


def _sublayer(layer: nn.Module, names: tuple[str, ...], what: str, where: str) -> nn.Module:
    for name in names:
        sub = getattr(layer, name, None)
        if sub is not None:
            return sub
    children = ", ".join(n for n, _ in layer.named_children())
    raise ConfigError(f"method 'adapter': decoder layer {where} ({type(layer).__name__}) has no {what} "
                      f"sub-module named {' or '.join(names)}; its children are: {children}",
                      key="method", fix={"method": "lora"})


def _hidden_size(model: nn.Module) -> int:
    config = getattr(model, "config", None)
    if config is None:
        raise ConfigError("method 'adapter' needs a transformers model with a config (hidden_size)", key="method")
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return int(text.hidden_size)


def attach(model: nn.Module, style: str, reduction_factor: int) -> list[nn.Module]:
    """Insert fresh adapters into every decoder layer and hook them in; returns them.

    Raises:
        ConfigError: unknown style, the model already has adapters, or a layer lacks the
            attention/MLP sub-module to hook.
    """
    if style not in NON_LINEARITY:
        raise ConfigError(f"'adapter_style' must be one of {', '.join(NON_LINEARITY)}; got {style!r}",
                          key="adapter_style")
    if any(n.endswith("." + CHILD_NAME) for n, _ in model.named_modules()):
        raise ConfigError("method 'adapter': this model already has bottleneck adapters", key="method")
    hidden = _hidden_size(model)
    size = bottleneck_size(hidden, reduction_factor)
    layers_path, layers = decoder_layers(model)
    cls = _adapter_class()
    added = []
    for i, layer in enumerate(layers):
        where = f"{layers_path}.{i}"
        targets = [_sublayer(layer, MLP_NAMES, "MLP", where)]
        if style == "houlsby":
            targets.insert(0, _sublayer(layer, ATTN_NAMES, "attention", where))
        for sub in targets:
            device = next(sub.parameters()).device
            adapter = cls(hidden, size, NON_LINEARITY[style], device=device)
            sub.add_module(CHILD_NAME, adapter)
            sub.register_forward_hook(_hook)
            added.append(adapter)
    return added


def adapter_state_dict(model: nn.Module) -> dict[str, Any]:
    """The adapters' tensors keyed by their path in the model."""
    return {k: v for k, v in model.state_dict().items() if f".{CHILD_NAME}." in k}


def apply(model: nn.Module, cfg: RunConfig, *, method: str = "adapter") -> nn.Module:
    """Freeze the base and insert trainable bottleneck adapters (``adapter_style``,
    ``adapter_reduction_factor``)."""
    for p in model.parameters():
        p.requires_grad_(False)
    for adapter in attach(model, cfg.adapter_style, cfg.adapter_reduction_factor):
        for p in adapter.parameters():
            p.requires_grad_(True)
    return model


def save(model: nn.Module, out_dir: Path, cfg: RunConfig) -> Path:
    """Write ``adapter_config.json`` + ``adapter_model.safetensors`` (format in the module doc)."""
    from safetensors.torch import save_file

    from engine.files import atomic_write_text

    state = {k: v.detach().contiguous().cpu() for k, v in adapter_state_dict(model).items()}
    if not state:
        raise ModelError("method 'adapter': the model has no bottleneck adapters to save")
    hidden = _hidden_size(model)
    layers_path, layers = decoder_layers(model)
    down_key = next(k for k in state if k.endswith(".down.weight"))
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "style": cfg.adapter_style,
        "reduction_factor": cfg.adapter_reduction_factor,
        "bottleneck_size": int(state[down_key].shape[0]),
        "hidden_size": hidden,
        "non_linearity": NON_LINEARITY[cfg.adapter_style],
        "layers_path": layers_path,
        "num_layers": len(layers),
        "base_model_name_or_path": getattr(getattr(model, "config", None), "_name_or_path", None),
    }
    save_file(state, str(out_dir / "adapter_model.safetensors"), metadata={"format": FORMAT})
    atomic_write_text(out_dir / "adapter_config.json", json.dumps(config, indent=2) + "\n")
    return out_dir


def read_config(path: Path) -> dict[str, Any]:
    """``adapter_config.json`` of a saved bottleneck adapter, checked.

    Raises:
        ModelError: missing, not JSON, or not this format.
    """
    file = Path(path) / "adapter_config.json"
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"'{path}' is not an adapter folder: no adapter_config.json") from None
    except json.JSONDecodeError as e:
        raise ModelError(f"{file}:{e.lineno}:{e.colno}: invalid JSON: {e.msg}") from None
    if config.get("format") != FORMAT:
        raise ModelError(f"{file}: not a bottleneck adapter (format {config.get('format')!r}, "
                         f"expected '{FORMAT}')", hint="PEFT adapters load with their own method.")
    if config.get("format_version", 0) > FORMAT_VERSION:
        raise ModelError(f"{file}: format_version {config['format_version']} is newer than this "
                         f"Finetune Studio understands ({FORMAT_VERSION}); update the app")
    return config


def load(base_model: nn.Module, path: Path, cfg: RunConfig | None = None) -> nn.Module:
    """Insert the saved adapters into a fresh ``base_model`` (frozen, ready for inference).

    Style and reduction factor come from the saved ``adapter_config.json``, not ``cfg``.

    Raises:
        ModelError: not this format, or the adapter doesn't fit this base model.
    """
    from safetensors.torch import load_file

    config = read_config(path)
    hidden = _hidden_size(base_model)
    _, layers = decoder_layers(base_model)
    if config["hidden_size"] != hidden or config["num_layers"] != len(layers):
        raise ModelError(f"'{path}': the adapter was trained on a model with hidden size "
                         f"{config['hidden_size']} and {config['num_layers']} layers; this base has "
                         f"{hidden} and {len(layers)}")
    attach(base_model, config["style"], config["reduction_factor"])
    state = load_file(str(Path(path) / "adapter_model.safetensors"))
    expected = set(adapter_state_dict(base_model))
    if set(state) != expected:
        missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
        raise ModelError(f"'{path}': adapter tensors don't match the model (missing {missing[:3]}, "
                         f"unexpected {extra[:3]})")
    base_model.load_state_dict(state, strict=False)
    for p in base_model.parameters():
        p.requires_grad_(False)
    return base_model
