"""Prefix tuning (arXiv 2101.00190) and prompt tuning (arXiv 2104.08691) through PEFT.

Prefix tuning learns ``num_virtual_tokens`` keys and values for every attention layer
(optionally through an MLP, ``prefix_projection``); prompt tuning learns that many input
embeddings. Prompt tuning starts from random embeddings, or from the embeddings of a
text when the run config has a non-empty ``prompt_init_text``.

Generation fix (PEFT 0.21.2 with transformers 5.24): transformers renamed the cache
argument of ``prepare_inputs_for_generation``/``forward`` from ``past_key_values`` to
``cache``. PEFT still reads and writes ``past_key_values`` there, so in ``generate`` it
never sees the generation cache: prefix tuning injects its prefix as a second cache that
the model drops ("Both `past_key_values` and `cache` are set ... ignoring"), and prompt
tuning prepends its virtual tokens again at every step. Generation then equals the base
model's (prefix) or is garbage (prompt). Training is not affected: ``PeftModel.forward``
passes ``past_key_values``, which the model's deprecation shim renames to ``cache``.
:func:`fix_generation` translates the name around PEFT's method, only where transformers
uses ``cache`` and PEFT doesn't know it; ``tests/engine/test_methods.py`` checks that
cached ``generate`` equals step-by-step greedy decoding without a cache.
"""

from __future__ import annotations

import functools
import inspect
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import ConfigError
from engine.methods import peft_adapter

if TYPE_CHECKING:
    from peft import PeftConfig, PeftModel
    from torch import nn

    from engine.config import RunConfig


def peft_config(cfg: RunConfig, method: str) -> PeftConfig:
    """``PrefixTuningConfig`` for ``prefix``, ``PromptTuningConfig`` for ``prompt``."""
    from peft import PrefixTuningConfig, PromptTuningConfig, PromptTuningInit

    if method == "prefix":
        return PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=cfg.num_virtual_tokens,
                                  prefix_projection=cfg.prefix_projection)
    init_text = getattr(cfg, "prompt_init_text", "") or ""
    if not init_text:
        return PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=cfg.num_virtual_tokens,
                                  prompt_tuning_init=PromptTuningInit.RANDOM)
    from engine.models import resolve_model_path

    return PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=cfg.num_virtual_tokens,
                              prompt_tuning_init=PromptTuningInit.TEXT, prompt_tuning_init_text=init_text,
                              tokenizer_name_or_path=str(resolve_model_path(cfg.model)),
                              tokenizer_kwargs={"local_files_only": True,
                                                "trust_remote_code": cfg.trust_remote_code})


def config_errors(cfg: RunConfig, method: str) -> list[ConfigError]:
    """Settings that can't work with this method (checked before loading)."""
    if method == "prefix" and cfg.gradient_checkpointing:
        # The prefix is a pre-filled KV cache; checkpointed layers re-run with the cache
        # already extended, so PEFT refuses the combination (huggingface/peft#869, #2191).
        return [ConfigError("method 'prefix' can't be combined with gradient checkpointing: the prefix is "
                            "a key/value cache that recomputed layers would extend twice (PEFT refuses it).",
                            key="gradient_checkpointing", fix={"gradient_checkpointing": False})]
    return []


def apply(model: nn.Module, cfg: RunConfig, *, method: str = "prompt") -> PeftModel:
    """Wrap ``model`` with learned virtual tokens; only they (and the prefix MLP) train.

    Raises:
        ConfigError: see :func:`config_errors`, or PEFT refused the settings.
    """
    errors = config_errors(cfg, method)
    if errors:
        raise errors[0]
    return fix_generation(peft_adapter.wrap(model, peft_config(cfg, method), key="num_virtual_tokens"))


def save(model: PeftModel, out_dir: Path, cfg: RunConfig) -> Path:
    return peft_adapter.save(model, out_dir)


def load(base_model: nn.Module, path: Path, cfg: RunConfig) -> PeftModel:
    return fix_generation(peft_adapter.load(base_model, path))


_translating = threading.local()


def _needs_fix(model: PeftModel) -> bool:
    from peft import PeftModelForCausalLM

    if not isinstance(model, PeftModelForCausalLM) or hasattr(model, "_studio_generation_fixed"):
        return False
    base_params = inspect.signature(model.base_model_prepare_inputs_for_generation).parameters
    peft_src = inspect.getsource(PeftModelForCausalLM.prepare_inputs_for_generation)
    return "cache" in base_params and "past_key_values" not in base_params and '"cache"' not in peft_src


def fix_generation(model: PeftModel) -> PeftModel:
    """Make PEFT's prompt-learning ``generate`` see transformers 5's ``cache`` argument.

    PEFT's ``prepare_inputs_for_generation`` calls the base model's; the base result's
    ``cache`` is shown to PEFT as ``past_key_values`` (only during PEFT's call, so the base
    model's own ``generate`` is untouched), and PEFT's result is renamed back to ``cache``.
    ``functools.wraps`` keeps the signatures that ``generate`` inspects.
    """
    if not _needs_fix(model):
        return model
    base_prepare = model.base_model_prepare_inputs_for_generation
    peft_prepare = model.prepare_inputs_for_generation

    @functools.wraps(base_prepare)
    def base_prepare_for_peft(*args: Any, **kwargs: Any) -> dict[str, Any]:
        out = base_prepare(*args, **kwargs)
        if getattr(_translating, "active", False) and "cache" in out:
            out["past_key_values"] = out.pop("cache")
        return out

    @functools.wraps(peft_prepare)
    def prepare(*args: Any, **kwargs: Any) -> dict[str, Any]:
        _translating.active = True
        try:
            out = peft_prepare(*args, **kwargs)
        finally:
            _translating.active = False
        if "past_key_values" in out:
            out["cache"] = out.pop("past_key_values")
        return out

    model.base_model_prepare_inputs_for_generation = base_prepare_for_peft
    model.prepare_inputs_for_generation = prepare
    model._studio_generation_fixed = True
    return model
