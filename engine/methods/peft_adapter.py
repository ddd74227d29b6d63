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

# The value of each target-modules key that targets without names: what check_targets' hint offers.
ALL_TARGETS = {"lora_target_modules": "all-linear", "ia3_target_modules": "auto (PEFT's default for the architecture)"}


def wrap(model: nn.Module, peft_config: PeftConfig, *, key: str) -> PeftModel:
    """``get_peft_model`` with PEFT's config errors turned into a ``ConfigError`` on ``key``."""
    from peft import get_peft_model

    try:
        return get_peft_model(model, peft_config)
    except ValueError as e:
        raise ConfigError(f"'{key}': {e}", key=key) from None


def check_targets(model: nn.Module, targets: object, key: str) -> None:
    """Every name in a list of target modules must match a module, as PEFT matches them (the whole
    name or its last parts). PEFT refuses a list where none matches, but drops a typo silently
    when another name matches ([q_proj, vv_proj] trained q_proj alone).

    Raises:
        ConfigError: on ``key``, naming the unmatched names and the model's linear layers.
    """
    from torch import nn

    if not isinstance(targets, (list, tuple)):
        return  # "all-linear" or a regex: PEFT's own rules
    names = [n for n, _ in model.named_modules() if n]
    missing = [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
    if missing:
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules()
                         if isinstance(m, nn.Linear) and m is not model.get_output_embeddings()})
        raise ConfigError(f"'{key}': {', '.join(missing)} {'matches' if len(missing) == 1 else 'match'} no module "
                          f"of this model; its linear layers are {', '.join(linear)}", key=key,
                          hint=f"Use those names, or {ALL_TARGETS.get(key, 'all-linear')}.")


def token_targets(model: nn.Module, ids: list[int]) -> dict[str, list[int]]:
    """PEFT's ``trainable_token_indices`` for training the rows ``ids``: the input embedding's,
    and the output head's when it is a separate matrix (tied heads follow the embedding).

    Without the head a new token could be read but hardly written: its output row would stay
    at its initial value.
    """
    emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    names = {id(m): n for n, m in model.named_modules()}
    targets = {names[id(emb)].rsplit(".", 1)[-1]: list(ids)}
    if head is not None and id(head) in names and head.weight is not emb.weight:
        targets[names[id(head)].rsplit(".", 1)[-1]] = list(ids)
    return targets


def save_token_rows_only(model: PeftModel) -> None:
    """Make every save of ``model`` (``final/`` and the Trainer's checkpoints) keep only the trained
    embedding rows, not the whole resized embedding and head.

    PEFT's default (``save_embedding_layers="auto"``) saves both whole matrices once the vocabulary
    grew, about 0.5 GiB per checkpoint for a 7B Llama, though the trainable-tokens deltas are all
    that changed; :func:`fit_vocab` regrows a base to load the adapter onto.
    """
    import functools

    model.save_pretrained = functools.partial(model.save_pretrained, save_embedding_layers=False)


def token_ids(adapter_config: dict) -> list[int]:
    """The token ids an adapter trains through ``trainable_token_indices`` (a list, or a list per
    embedding module), sorted; [] when it trains none."""
    tti = adapter_config.get("trainable_token_indices")
    return sorted({i for v in tti.values() for i in v} if isinstance(tti, dict) else set(tti or []))


def token_rows(adapter_config: dict) -> int:
    """How many embedding rows a base needs for this adapter: one past the highest id it trains
    (0 when it trains none)."""
    ids = token_ids(adapter_config)
    return ids[-1] + 1 if ids else 0


def grow_vocab(base_model: nn.Module, rows: int) -> int:
    """Grow ``base_model``'s embeddings (and head) to ``rows``, for an adapter whose added tokens
    train rows it lacks; returns the rows added (0: it had them).

    The new rows' starting values don't matter: the adapter replaces each row it trained.
    """
    have = base_model.get_input_embeddings().weight.shape[0]
    if rows <= have:
        return 0
    base_model.resize_token_embeddings(rows, mean_resizing=False)
    return rows - have


def fit_vocab(base_model: nn.Module, folder: Path) -> int:
    """:func:`grow_vocab` to the rows the adapter in ``folder`` trains."""
    import json

    try:
        config = json.loads((Path(folder) / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return 0
    return grow_vocab(base_model, token_rows(config)) if isinstance(config, dict) else 0


def save(model: nn.Module, out_dir: Path) -> Path:
    """Write ``adapter_config.json`` + ``adapter_model.safetensors`` into ``out_dir``."""
    from peft import PeftModel

    if not isinstance(model, PeftModel):
        raise TypeError(f"expected a PeftModel to save as an adapter, got {type(model).__name__}")
    model.save_pretrained(str(out_dir), safe_serialization=True)
    return out_dir


# init_lora_weights values whose adapters only fit the base their init rewrote.
_REWRITING_INITS = ("pissa", "olora", "corda", "lora_ga")


def check_loadable(path: Path, adapter_config: dict | None = None) -> None:
    """Refuse an adapter saved in PiSSA/OLoRA training form (a checkpoint of such a run).

    Loading one makes PEFT run the decomposition again on the base it is loaded onto: the base
    is rewritten (the other adapters on it then answer wrongly) and, with a randomised SVD, not
    exactly as in training. A run's ``final/`` is converted to a plain LoRA and loads anywhere.

    Args:
        path: the adapter folder.
        adapter_config: its ``adapter_config.json`` when the caller has read it already.

    Raises:
        ModelError: the adapter is in that form, with the way to a plain one.
    """
    import json

    if adapter_config is None:
        try:
            adapter_config = json.loads((Path(path) / "adapter_config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return  # not readable here; PEFT's own loading says what is wrong
    init = adapter_config.get("init_lora_weights") if isinstance(adapter_config, dict) else None
    if isinstance(init, str) and init.lower().startswith(_REWRITING_INITS):
        raise ModelError(f"'{path}' is a {init.split('_')[0].upper()} adapter as training holds it: it fits only the "
                         "base its run rewrote, and loading it would rewrite this base too",
                         hint="Use the run's final/ (saved as a plain LoRA), or make this checkpoint the result "
                              "with `finetune-studio runs promote RUN --checkpoint N`, which converts it.")


def load(base_model: nn.Module, path: Path, *, is_trainable: bool = False) -> PeftModel:
    """``PeftModel.from_pretrained`` on a fresh base, with a readable error."""
    from peft import PeftModel

    if not (path / "adapter_config.json").exists():
        raise ModelError(f"'{path}' is not a PEFT adapter folder: no adapter_config.json")
    check_loadable(path)
    fit_vocab(base_model, path)
    return PeftModel.from_pretrained(base_model, str(path), is_trainable=is_trainable)
