"""LoRA and QLoRA (arXiv 2106.09685, 2305.14314) through PEFT's ``LoraConfig``.

QLoRA is the same adapter on a 4-bit NF4 base. The quantization and PEFT's
``prepare_model_for_kbit_training`` happen when the base is loaded
(``engine.precision.load_model``), so ``apply`` is identical for both; the method table
is what restricts ``qlora`` to ``load_in: nf4``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from engine.methods import peft_adapter

if TYPE_CHECKING:
    from peft import LoraConfig, PeftModel
    from torch import nn

    from engine.config import RunConfig


def lora_config(cfg: RunConfig) -> LoraConfig:
    """The PEFT ``LoraConfig`` for the run config's ``lora_*``, ``use_dora`` and ``use_rslora``."""
    from peft import LoraConfig

    return LoraConfig(
        task_type="CAUSAL_LM",
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        # 'all-linear' is PEFT's own shorthand: every Linear except the output head.
        target_modules=cfg.target_modules,
        use_dora=cfg.use_dora,
        use_rslora=cfg.use_rslora,
        bias="none",
    )


def apply(model: nn.Module, cfg: RunConfig, *, method: str = "lora") -> PeftModel:
    """Wrap ``model`` with LoRA adapters; only the adapters train.

    Raises:
        ConfigError: on ``lora_target_modules`` when PEFT refuses the targets; on
            ``lora_dropout`` when the targets include a mixture-of-experts' 3D expert weights
            (PEFT's ``ParamWrapper``, which ``all-linear`` selects), which take no dropout.
    """
    from engine.errors import ConfigError

    try:
        return peft_adapter.wrap(model, lora_config(cfg), key="lora_target_modules")
    except ConfigError as e:
        if "ParamWrapper" not in e.message or "lora_dropout" not in e.message:
            raise
        raise ConfigError(
            f"lora_dropout: {cfg.lora_dropout} can't be used with LoRA on this model's expert weights "
            f"(lora_target_modules: {cfg.lora_target_modules} reaches its mixture-of-experts layers, whose 3D "
            "weights PEFT adapts without dropout)", key="lora_dropout", fix={"lora_dropout": 0.0},
            hint="Or keep the dropout and adapt only attention: lora_target_modules [q_proj, k_proj, v_proj, "
            "o_proj].") from None


def save(model: PeftModel, out_dir: Path, cfg: RunConfig) -> Path:
    """PEFT adapter folder: ``adapter_config.json`` + ``adapter_model.safetensors``."""
    return peft_adapter.save(model, out_dir)


def load(base_model: nn.Module, path: Path, cfg: RunConfig) -> PeftModel:
    return peft_adapter.load(base_model, path)
