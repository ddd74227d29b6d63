"""LoRA and QLoRA (arXiv 2106.09685, 2305.14314) through PEFT's ``LoraConfig``.

QLoRA is the same adapter on a 4-bit NF4 base. The quantization and PEFT's
``prepare_model_for_kbit_training`` happen when the base is loaded
(``engine.precision.load_model``), so ``apply`` is identical for both; the method table
is what restricts ``qlora`` to ``load_in: nf4``.

PiSSA and OLoRA (``lora_init``, PEFT's ``init_lora_weights``) start A and B from a
decomposition of each base weight and leave the base holding the rest, so what trains is an
adapter for that rewritten base. The run keeps the initial adapter in ``lora_init/`` and
``final/`` is saved as PEFT converts it, ``[A | A0] x [B | -B0]``: a plain LoRA of twice the rank
whose update is the training's change, which fits the original base like any other.
Checkpoints stay in the training form (a resume needs it); :func:`convert_checkpoint`
converts one for ``runs promote``, and :func:`engine.methods.peft_adapter.check_loadable`
keeps one from being loaded onto a shared base, which loading would rewrite.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from engine.errors import ModelError
from engine.methods import peft_adapter

if TYPE_CHECKING:
    from peft import LoraConfig, PeftModel
    from torch import nn

    from engine.config import RunConfig


def lora_config(cfg: RunConfig, token_targets: dict[str, list[int]] | None = None) -> LoraConfig:
    """The PEFT ``LoraConfig`` for the run config's ``lora_*``, ``use_dora`` and ``use_rslora``;
    ``token_targets`` (see :func:`peft_adapter.token_targets`) trains those embedding rows too."""
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
        init_lora_weights=INIT_WEIGHTS[cfg.lora_init],
        bias="none",
        trainable_token_indices=token_targets or None,
    )


# lora_init -> PEFT's init_lora_weights. pissa takes the fast SVD (16 subspace iterations, as
# LLaMA-Factory's default): a full SVD of every weight takes minutes on a 7B model.
INIT_WEIGHTS: dict[str, bool | str] = {"default": True, "gaussian": "gaussian", "pissa": "pissa_niter_16",
                                       "olora": "olora"}
INIT_FOLDER = "lora_init"
"""Where a PiSSA/OLoRA run keeps its initial adapter (in its run folder)."""


def rewrites_base(cfg: RunConfig | dict) -> bool:
    """The run's LoRA init moves part of the base weights into the adapter (PiSSA, OLoRA).

    ``cfg`` is a run config, or a run's config as read from its folder (a dict).
    """
    from engine.config import REWRITING_INITS

    get = cfg.get if isinstance(cfg, dict) else lambda key: getattr(cfg, key)
    return get("method") in ("lora", "qlora") and get("lora_init") in REWRITING_INITS


def save_initial(model: PeftModel, cfg: RunConfig, run_dir: Path) -> Path | None:
    """Keep the freshly initialised adapter of a PiSSA/OLoRA run (once: a resumed run's init is
    recomputed identically from the seed, and the first one stays)."""
    if not rewrites_base(cfg):
        return None
    folder = Path(run_dir) / INIT_FOLDER
    if not (folder / "adapter_config.json").exists():
        peft_adapter.save(model, folder)
    return folder


def apply(model: nn.Module, cfg: RunConfig, *, method: str = "lora", train_tokens: list[int] | None = None
          ) -> PeftModel:
    """Wrap ``model`` with LoRA adapters; only the adapters train, and the embedding rows of
    ``train_tokens`` (the run's ``add_tokens``) through PEFT's trainable tokens.

    Raises:
        ConfigError: on ``lora_target_modules`` when PEFT refuses the targets; on
            ``lora_dropout`` when the targets include a mixture-of-experts' 3D expert weights
            (PEFT's ``ParamWrapper``, which ``all-linear`` selects), which take no dropout.
    """
    from engine.errors import ConfigError

    peft_adapter.check_targets(model, cfg.target_modules, "lora_target_modules")
    try:
        targets = peft_adapter.token_targets(model, train_tokens) if train_tokens else None
        wrapped = peft_adapter.wrap(model, lora_config(cfg, targets), key="lora_target_modules")
        if targets:
            peft_adapter.save_token_rows_only(wrapped)
        return wrapped
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
    """PEFT adapter folder: ``adapter_config.json`` + ``adapter_model.safetensors``; for PiSSA and
    OLoRA converted to a plain LoRA for the original base (PEFT's own conversion)."""
    if not rewrites_base(cfg):
        return peft_adapter.save(model, out_dir)
    init = Path(cfg.output_dir) / INIT_FOLDER
    if not (init / "adapter_config.json").exists():
        raise ModelError(f"{init} is missing: the initial adapter a {cfg.lora_init} run needs to save a plain "
                         "LoRA", hint="Train the run again; its checkpoints stay usable for resuming.")
    model.save_pretrained(str(out_dir), safe_serialization=True,
                          path_initial_model_for_weight_conversion=str(init))
    return out_dir


def convert_checkpoint(checkpoint: Path, init: Path, out_dir: Path) -> Path:
    """Write into ``out_dir`` the plain LoRA of a PiSSA/OLoRA checkpoint (its adapter as trained,
    ``init`` the run's initial adapter): the conversion PEFT applies when saving, done on the files
    without loading a model. The update is ``s*B*A - s*B0*A0 = s' * [B | -B0] x [A | A0]`` with r' = 2r
    and alpha' keeping the scale (2*alpha, or sqrt(2)*alpha under rsLoRA)."""
    import json

    import torch
    from safetensors.torch import load_file, save_file

    config = json.loads((checkpoint / "adapter_config.json").read_text(encoding="utf-8"))
    trained = load_file(str(checkpoint / "adapter_model.safetensors"))
    initial = load_file(str(init / "adapter_model.safetensors"))
    if set(trained) != set(initial):
        raise ModelError(f"{init} doesn't match {checkpoint}: they hold different LoRA weights")
    out: dict = {}
    for name, t in trained.items():
        if "lora_A" in name:
            out[name] = torch.cat([t, initial[name]], dim=0)
        elif "lora_B" in name:
            out[name] = torch.cat([t, -initial[name]], dim=1)
        else:
            out[name] = t
    if config.get("rank_pattern") and config.get("use_rslora"):
        raise ModelError(f"{checkpoint}: a rank pattern under rsLoRA can't be converted (as in PEFT)")
    config["init_lora_weights"] = True
    config["r"] = 2 * config["r"]
    config["lora_alpha"] = config["lora_alpha"] * (2 ** 0.5 if config.get("use_rslora") else 2)
    for key in ("rank_pattern", "alpha_pattern"):
        if config.get(key):
            config[key] = {k: 2 * v for k, v in config[key].items()}
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in out.items()}, str(out_dir / "adapter_model.safetensors"),
              metadata={"format": "pt"})
    (out_dir / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True), encoding="utf-8")
    return out_dir



def load(base_model: nn.Module, path: Path, cfg: RunConfig) -> PeftModel:
    return peft_adapter.load(base_model, path)
