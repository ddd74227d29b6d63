"""The fine-tuning methods, registered in one table.

The GUI's method picker, the memory estimate and the trainer all read :data:`METHODS`.
Each method lives in its own module with three functions:

- ``apply(model, cfg)``: make exactly the method's parameters trainable (a ``PeftModel``
  for PEFT methods), freezing the base where the method says so; LoRA's also takes
  ``train_tokens``, the embedding rows of the run's ``add_tokens``;
- ``save(model, out_dir, cfg) -> Path``: write the final artefact;
- ``load(base_model, path, cfg)``: the reverse of ``save``.

Adding a method means one new module and one row in :data:`METHODS`.

Nothing here imports torch at module level, so the GUI can read the table cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from engine.errors import ConfigError, ConfigErrors
from engine.methods import bottleneck, freeze, full, ia3, lora, prompt

if TYPE_CHECKING:
    from collections.abc import Sequence

    from torch import nn

    from engine.config import RunConfig
    from engine.precision import Environment

def _known(keys: tuple[str, ...]) -> tuple[str, ...]:
    """The keys that RunConfig has (``prompt_init_text`` is read only once the config defines it)."""
    from engine.config import RunConfig

    names = set(RunConfig.field_names())
    return tuple(k for k in keys if k in names)


LORA_SETTINGS = ("lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", "use_dora", "use_rslora",
                 "lora_init", "loraplus_lr_ratio")
ALL_LOADS = ("fp32", "fp16", "bf16", "int8", "nf4")


@dataclass(frozen=True)
class Method:
    """One fine-tuning method as the GUI, the estimate and the trainer see it.

    Attributes:
        name: The ``method`` value in the run config.
        label: Short GUI label.
        description: One sentence for the GUI.
        settings: The run-config keys this method reads (the GUI shows only these).
        peft: The artefact is a PEFT adapter folder (``PeftModel.from_pretrained`` loads it).
        allowed_load_in: The ``load_in`` values the method can train on.
        module: The module holding ``apply``, ``save`` and ``load``.
        learning_rate: The method's usual peak learning rate: a config that names the method and
            no ``learning_rate`` takes it, and the form switches to it with the method.
        learning_rate_source: Where that value comes from, for the advice that cites it.
    """

    name: str
    label: str
    description: str
    settings: tuple[str, ...]
    peft: bool
    allowed_load_in: tuple[str, ...]
    module: ModuleType
    learning_rate: float = 2e-4
    learning_rate_source: str = "the QLoRA paper's 1e-4 to 2e-4 for adapters on 7B-65B models"

    def config_defaults(self) -> dict[str, Any]:
        """What a config that names this method takes where it leaves the key out: its usual
        learning rate, and the one weight format it can train on (qlora: nf4)."""
        only = {"load_in": self.allowed_load_in[0]} if len(self.allowed_load_in) == 1 else {}
        return {"learning_rate": self.learning_rate, **only}

    def apply(self, model: nn.Module, cfg: RunConfig, *, train_tokens: Sequence[int] = ()) -> nn.Module:
        """Make exactly this method's parameters trainable; returns the model to train.

        ``train_tokens``: the ids of the run's ``add_tokens``, whose embedding rows train too
        (lora/qlora through PEFT's trainable tokens; full trains every row anyway).
        """
        if train_tokens and self.name in ("lora", "qlora"):
            return self.module.apply(model, cfg, method=self.name, train_tokens=list(train_tokens))
        return self.module.apply(model, cfg, method=self.name)

    def save(self, model: nn.Module, out_dir: Path, cfg: RunConfig) -> Path:
        """Write the final artefact into ``out_dir`` (created) and return that folder."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        return self.module.save(model, out_dir, cfg)

    def load(self, base_model: nn.Module, path: Path, cfg: RunConfig) -> nn.Module:
        """Load what :meth:`save` wrote on top of ``base_model`` (a fresh base)."""
        return self.module.load(base_model, Path(path), cfg)


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("full", "Full fine-tuning",
           "Train every weight of the model; best quality, most memory (about 16-18 bytes per parameter).",
           (), False, ("fp32", "bf16"), full,
           learning_rate=2e-5, learning_rate_source="Stanford Alpaca's full fine-tune of LLaMA-7B"),
    Method("freeze", "Freeze (top layers)",
           "Train only the top decoder layers (and optionally named modules such as the final norm or "
           "lm_head); the rest stays frozen.",
           ("freeze_trainable_layers", "freeze_extra_modules"), False, ("fp32", "bf16"), freeze,
           learning_rate=2e-5, learning_rate_source="full fine-tuning's, as whole layers train"),
    Method("lora", "LoRA",
           "Train small low-rank updates next to the chosen linear layers; the base stays frozen.",
           LORA_SETTINGS, True, ALL_LOADS, lora),
    Method("qlora", "QLoRA",
           "LoRA on a 4-bit NF4 base (double quantisation, bf16 compute): the least memory; needs a CUDA GPU.",
           LORA_SETTINGS, True, ("nf4",), lora),
    Method("adapter", "Bottleneck adapter",
           "Insert small bottleneck MLPs after the MLP (Pfeiffer) or after attention and MLP (Houlsby) "
           "of each decoder layer.",
           ("adapter_reduction_factor", "adapter_style"), False, ALL_LOADS, bottleneck,
           learning_rate_source="the 1e-4 to 1e-3 bottleneck adapters are usually trained at"),
    Method("prefix", "Prefix tuning",
           "Learn virtual key/value prefixes for every attention layer; very few parameters.",
           ("num_virtual_tokens", "prefix_projection"), True, ALL_LOADS, prompt,
           learning_rate=1e-2, learning_rate_source="PEFT's prefix tuning guide"),
    Method("prompt", "Prompt tuning",
           "Learn virtual token embeddings prepended to the input; the fewest parameters.",
           _known(("num_virtual_tokens", "prompt_init_text")), True, ALL_LOADS, prompt,
           learning_rate=3e-2, learning_rate_source="PEFT's prompt tuning guide for causal language models"),
    Method("ia3", "IA3",
           "Learn per-channel scales of keys, values and the MLP's down projection (far fewer "
           "parameters than LoRA).",
           ("ia3_target_modules",), True, ALL_LOADS, ia3,
           learning_rate=3e-3, learning_rate_source="the IA3 paper's T-Few recipe"),
)}


# How many times the method's usual learning rate (above, below) a config may go before the run
# says so: 10x where it is known to hurt (full fine-tuning too high: the pretrained weights move
# ten times as far; prompt tuning too low: it barely moves), 50x otherwise (the demo trains its
# tiny model's LoRA at 15x on purpose).
LR_OFF_BY = {"full": (10.0, 50.0), "freeze": (10.0, 50.0), "prefix": (50.0, 10.0), "prompt": (50.0, 10.0),
             "ia3": (50.0, 10.0)}


def learning_rate_note(cfg: RunConfig) -> dict[str, Any] | None:
    """A warning (``kind``, ``finding``: the short fact, ``message``: it with its source and effect,
    ``hint``, ``fix``) when the learning rate is far from the method's usual one (:data:`LR_OFF_BY`),
    or None."""
    return rate_note(cfg.method, cfg.learning_rate)


def rate_note(method_name: str, learning_rate: Any) -> dict[str, Any] | None:
    """:func:`learning_rate_note` for a method name and a rate (the Train form's values as they are)."""
    method = METHODS.get(method_name)
    if method is None or not isinstance(learning_rate, (int, float)) or not learning_rate > 0:
        return None
    ratio = learning_rate / method.learning_rate
    above, below = LR_OFF_BY.get(method.name, (50.0, 50.0))
    near = 1 - 1e-9  # exactly 10x counts, whatever the float division gives (10.000000000000002)
    if ratio * below * near > 1 and ratio < above * near:
        return None
    high = ratio > 1
    effect = ("it can wreck what the pretrained weights know (loss spikes, forgetting)" if high and not method.peft
              and method.name != "adapter" else "training may diverge" if high else
              "the few weights it trains will barely move in the steps a run has")
    finding = (f"learning rate {_rate(learning_rate)} is {ratio if high else 1 / ratio:.0f}x "
               f"{'above' if high else 'below'} {method.label.split(' (')[0]}'s usual {_rate(method.learning_rate)}")
    return {"kind": "learning_rate", "finding": finding,
            "message": f"{finding} ({method.learning_rate_source}): {effect}",
            "hint": f"Use about {_rate(method.learning_rate)}, or keep yours if you have measured it.",
            "fix": {"learning_rate": method.learning_rate}}


def _rate(x: float) -> str:
    """2e-05 -> 2e-5: a learning rate as people write it."""
    return f"{x:g}".replace("e-0", "e-").replace("e+0", "e+")


def get_method(name: str) -> Method:
    """The registered method called ``name``.

    Raises:
        ConfigError: unknown name (key ``method``), listing the allowed values.
    """
    try:
        return METHODS[name]
    except KeyError:
        raise ConfigError(f"'method' must be one of {', '.join(METHODS)}; got {name!r}",
                          key="method") from None


def method_errors(cfg: RunConfig) -> list[ConfigError]:
    """Settings the chosen method can't work with (beyond ``RunConfig.validate``).

    The ``load_in`` must be one the method allows, and a method module may add its own
    rules through a ``config_errors(cfg, method)`` function (prefix tuning refuses
    gradient checkpointing, for example).
    """
    m = get_method(cfg.method)
    errors = []
    if cfg.load_in not in m.allowed_load_in:
        errors.append(ConfigError(f"method '{m.name}' can't train on load_in '{cfg.load_in}'; it allows "
                                  f"{', '.join(m.allowed_load_in)}.", key="load_in",
                                  fix={"load_in": m.allowed_load_in[-1] if m.name == "qlora" else "bf16"}))
    check = getattr(m.module, "config_errors", None)
    if check is not None:
        errors.extend(check(cfg, m.name))
    return errors


def invalid_reason(method: str, load_in: str, mixed_precision: str,
                   env: Environment | None = None) -> str | None:
    """Why this combination can't train (on ``env`` if given), or None if it can.

    Config-level rules come from ``RunConfig.validate`` and :func:`method_errors`; machine
    rules from ``engine.precision.environment_errors``. The other settings are defaults.
    """
    from engine.config import RunConfig

    try:
        cfg = RunConfig.from_dict({"method": method, "load_in": load_in, "mixed_precision": mixed_precision})
    except ConfigErrors as e:
        return " ".join(err.message for err in e.errors)
    errors = method_errors(cfg)
    if env is not None and not errors:
        from engine.precision import environment_errors

        errors = environment_errors(cfg, env)
    return " ".join(err.message for err in errors) if errors else None


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts; shared (tied) tensors count once.

    Works on meta-device models, so the memory estimate can count without any weights.
    """
    seen: set[int] = set()
    trainable = total = 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        n = _numel(p)
        total += n
        if p.requires_grad:
            trainable += n
    return trainable, total


def _numel(p: Any) -> int:
    # bnb Params4bit stores two 4-bit values per byte; ds_numel/quant_state hold the real count.
    quant_state = getattr(p, "quant_state", None)
    if quant_state is not None and hasattr(quant_state, "shape"):
        n = 1
        for d in quant_state.shape:
            n *= int(d)
        return n
    return int(p.numel())


__all__ = ["METHODS", "Method", "count_parameters", "get_method", "invalid_reason", "method_errors"]
