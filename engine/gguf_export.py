"""Export a model, a full/freeze run or a merged adapter as one GGUF file for llama.cpp and Ollama.

GGUF is what llama.cpp, Ollama, LM Studio and llama-cpp-python load. The file is written
with ``gguf`` (the GGUF library llama.cpp maintains): its writer, tensor-name map, vocab
readers and quantisers. What this module adds is the part llama.cpp keeps in its
``convert_hf_to_gguf.py`` script, which is not installable as a library: the model's
hyper-parameters as GGUF keys, the tokenizer as a GGUF vocabulary, and the few tensor
changes each architecture needs. It covers the architectures people fine-tune on one GPU:

========================  ==========  ==============================================
``architectures[0]``      GGUF arch   tensor changes
========================  ==========  ==============================================
LlamaForCausalLM          llama       Q and K rows permuted to llama.cpp's rotary layout
MistralForCausalLM        llama       same as Llama
Qwen2ForCausalLM          qwen2       none (q/k/v biases kept)
Qwen3ForCausalLM          qwen3       none (q/k norms kept)
Phi3ForCausalLM           phi3        none (qkv_proj and gate_up_proj stay fused);
                                      longrope factors as rope_factors_long/short
Gemma2ForCausalLM         gemma2      every norm weight w written as w + 1 (Gemma's
                                      RMSNorm multiplies by 1 + w); softcapping keys
Gemma3ForCausalLM         gemma3      as Gemma 2, q/k norms too; no attention softcap
========================  ==========  ==============================================

llama.cpp fixes part of Gemma in its code instead of reading it from the file (which
layers slide, the attention scale, Gemma 3's local rope); a model that differs is refused
(:func:`_gemma_hparams`). Gemma 3 means the text model (Gemma3ForCausalLM: 1B, or a
fine-tune saved as text-only), not the vision model.

Tokenizers: byte-level BPE (GPT-2 style: Llama 3, Qwen 2/2.5/3, the demo model) with a
pre-tokenizer llama.cpp knows (``gpt-2``, ``llama-bpe``, ``qwen2``, ``gpt-4o``; recognised from the
pre-tokenizer's split pattern in ``tokenizer.json``, or named with ``pre_tokenizer``), and
SentencePiece-style BPE with byte fallback (Llama 2, Mistral 7B, Phi-3, Gemma), written with each
merged token scored by its merge's rank (:func:`_spm_vocab`), with whether it puts ``▁`` and BOS
before the text. The chat template, special tokens and BPE merges go in through gguf's
``SpecialVocab``, so llama.cpp and Ollama format chats as the model was trained.

Types (``--type``) are those llama.cpp's converter writes itself: ``f32``, ``f16``, ``bf16``
and ``q8_0``. As there, 1-D tensors (norms, biases) stay f32, and a matrix whose rows
don't split into 32-value blocks falls back to f16 under ``q8_0``. Smaller k-quants
(Q4_K_M...) are made from the f16 file with llama.cpp's ``llama-quantize``.

Tensors are streamed: each is read from the safetensors files, converted and written
before the next is read, so memory follows the largest tensor (a few float32 copies of the
embeddings), not the model: 1.3 GB for a 0.5B model with a 152k vocabulary (docs/gguf-export.md).
The file is written under a temporary name and renamed when complete.

CLI: ``finetune-studio export-gguf SOURCE --out FILE.gguf [--type q8_0] [--base MODEL]
[--pre NAME]`` -> :func:`cli_export_gguf`. SOURCE is ``demo``, a model folder, a cached
hub id, a full/freeze run (folder or name), or an adapter, which is merged into
``--base`` (default: the base it records) first. ``merge ... --gguf TYPE`` also writes
the merged folder's GGUF.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import ConfigError, ModelError, StudioError

TYPES = ("f32", "f16", "bf16", "q8_0")
"""Output types, as llama.cpp's converter names them."""

MERGE_DTYPE = {"f32": "fp32", "f16": "fp16", "bf16": "bf16", "q8_0": "fp16"}
"""The dtype an adapter is merged in before export: the output's precision or better, so an
8B model's merge takes 16 GB of memory, not fp32's 32 GB."""

@dataclass(frozen=True)
class Family:
    """How one HF architecture is written: what llama.cpp's converter does to it."""

    arch: str
    """The GGUF architecture (``general.architecture``)."""
    permute: bool = False
    """Q/K rows permuted to llama.cpp's interleaved rotary layout (Llama's "normal" rope; the
    others use llama.cpp's NEOX rope, which is HF's half-split layout)."""
    norm_shift: float = 0.0
    """Added to every ``*norm.weight``: Gemma's RMSNorm multiplies by ``1 + w`` and stores ``w``,
    llama.cpp's multiplies by the stored value."""
    own_output: bool = True
    """Whether llama.cpp's architecture has an output matrix of its own; Gemma 2's always reuses
    the embeddings."""


ARCHITECTURES: dict[str, Family] = {
    "LlamaForCausalLM": Family("llama", permute=True),
    "MistralForCausalLM": Family("llama", permute=True),
    "Qwen2ForCausalLM": Family("qwen2"),
    "Qwen3ForCausalLM": Family("qwen3"),
    "Phi3ForCausalLM": Family("phi3"),
    "Gemma2ForCausalLM": Family("gemma2", norm_shift=1.0, own_output=False),
    "Gemma3ForCausalLM": Family("gemma3", norm_shift=1.0),
}
"""HF architecture -> how it is written (llama.cpp's convert_hf_to_gguf.py: LlamaModel,
Qwen2Model, Qwen3Model, Phi3MiniModel, Gemma2Model, Gemma3Model)."""

# The split patterns of the byte-level BPE pre-tokenizers llama.cpp implements, as they
# appear in tokenizer.json (a Split before a regex-less ByteLevel).
_PRE_PATTERNS = {
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+":
        "llama-bpe",
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+":
        "qwen2",
    # GPT-4o's o200k pattern (Phi-4-mini): llama.cpp's "gpt-4o" (llama-vocab.cpp quotes it as "original
    # regex from tokenizer.json"; convert_hf_to_gguf.py names it after Xenova/gpt-4o's tokenizer).
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|"
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|"
    r"\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+":
        "gpt-4o",
}
PRE_TOKENIZERS = ("gpt-2", "llama-bpe", "qwen2", "gpt-4o")
"""Pre-tokenizer names recognised here; ``pre_tokenizer=`` may name any llama.cpp knows."""


@dataclass
class GgufResult:
    """What :func:`export_gguf` wrote."""

    path: Path
    type: str
    arch: str
    tokenizer: str
    pre_tokenizer: str | None
    tensors: int
    bytes: int
    seconds: float
    fallbacks: list[str] = field(default_factory=list)
    """Tensors written as f16 because their rows don't split into q8_0 blocks."""
    renamed: str | None = None
    """Why ``general.name`` in the file differs from the name asked for (:func:`llama_cpp_name`)."""

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "type": self.type, "arch": self.arch, "tokenizer": self.tokenizer,
                "pre_tokenizer": self.pre_tokenizer, "tensors": self.tensors, "bytes": self.bytes,
                "seconds": round(self.seconds, 2), "f16_fallbacks": self.fallbacks, "renamed": self.renamed}


# ---------------------------------------------------------------------------- inputs

def _safetensors_files(model_dir: Path) -> list[Path]:
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        try:
            names = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (OSError, json.JSONDecodeError, KeyError, AttributeError) as e:
            raise ModelError(f"'{index}' is not a readable safetensors index: {e}") from None
        files = [model_dir / n for n in names]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise ModelError(f"'{model_dir}' lacks shard(s) {', '.join(missing)} named by its index")
        return files
    single = model_dir / "model.safetensors"
    if single.is_file():
        return [single]
    if any((model_dir / n).exists() for n in ("pytorch_model.bin", "pytorch_model.bin.index.json")):
        raise ModelError(f"'{model_dir}' holds pickle (.bin) weights only; GGUF export reads safetensors",
                         hint="Load and save it once with save_pretrained(safe_serialization=True), or export "
                         "a merged model (merge writes safetensors).")
    raise ModelError(f"'{model_dir}' has no model.safetensors or safetensors index")


def _config(model_dir: Path, trust_remote_code: bool):
    from huggingface_hub.errors import StrictDataclassError
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(model_dir, local_files_only=True, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, StrictDataclassError) as e:  # the last: a value the config class rejects
        raise ModelError(f"can't read '{model_dir / 'config.json'}': {e}") from None


def _arch_of(config) -> tuple[str, Family]:
    archs = list(getattr(config, "architectures", None) or [])
    for name in archs:
        if name in ARCHITECTURES:
            return name, ARCHITECTURES[name]
    raise ModelError(f"GGUF export doesn't know the architecture {', '.join(archs) or '(none recorded)'}; "
                     f"it knows {', '.join(ARCHITECTURES)}",
                     hint="llama.cpp's convert_hf_to_gguf.py covers many more; run it on this folder.")


# ---------------------------------------------------------------------------- tokenizer

def _tokenizer_json(model_dir: Path) -> dict[str, Any]:
    path = model_dir / "tokenizer.json"
    if not path.is_file():
        raise ModelError(f"'{model_dir}' has no tokenizer.json; GGUF export needs the fast tokenizer's file",
                         hint="Save the tokenizer with a recent transformers (tokenizer.save_pretrained).")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ModelError(f"'{path}' is not readable JSON: {e}") from None


def _parts(node: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not node:
        return []
    if node.get("type") == "Sequence":
        return [p for sub in node.get("pretokenizers") or node.get("decoders") or node.get("normalizers") or []
                for p in _parts(sub)]
    return [node]


def adds_space_prefix(tok_json: dict[str, Any]) -> bool:
    """Whether a SentencePiece-style tokenizer puts ``▁`` before the text (Llama 2, Mistral, Phi-3:
    a ``Prepend`` normalizer or a prepending ``Metaspace``) or not (Gemma). llama.cpp reads it
    from ``tokenizer.ggml.add_space_prefix`` and assumes it when the key is absent."""
    if any(p.get("type") == "Prepend" and p.get("prepend") == "\u2581" for p in _parts(tok_json.get("normalizer"))):
        return True
    return any(p.get("type") == "Metaspace" and (p.get("prepend_scheme") in ("first", "always")
                                                 or p.get("add_prefix_space") is True)
               for p in _parts(tok_json.get("pre_tokenizer")))


def tokenizer_kind(tok_json: dict[str, Any]) -> tuple[str, str | None]:
    """``("gpt2", pre)`` for a byte-level BPE, ``("llama", "default")`` for SentencePiece-style BPE.

    ``pre`` is the llama.cpp pre-tokenizer recognised from the split pattern, or None when
    the pattern is not one this module knows.

    Raises:
        ModelError: another tokenizer model (Unigram, WordPiece...).
    """
    model = tok_json.get("model") or {}
    parts = _parts(tok_json.get("pre_tokenizer"))
    byte_level = [p for p in parts if p.get("type") == "ByteLevel"]
    if model.get("type") == "BPE" and byte_level:
        splits = [p for p in parts if p.get("type") == "Split"]
        if not splits and byte_level[0].get("use_regex", True):
            return "gpt2", "gpt-2"
        if len(splits) == 1 and not byte_level[0].get("use_regex", True):
            pattern = (splits[0].get("pattern") or {}).get("Regex")
            return "gpt2", _PRE_PATTERNS.get(pattern)
        return "gpt2", None
    if model.get("type") == "BPE" and model.get("byte_fallback"):
        return "llama", "default"
    raise ModelError(f"GGUF export doesn't convert a {model.get('type', 'unknown')} tokenizer"
                     + ("" if model.get("type") != "BPE" else " without byte-level or byte-fallback encoding"),
                     hint="llama.cpp's convert_hf_to_gguf.py handles more tokenizers.")


def _bpe_vocab(model_dir: Path, vocab_size: int, trust_remote_code: bool) -> tuple[list[str], list[int], bool]:
    """Byte-level BPE tokens and types, id by id up to the model's vocab size (as llama.cpp's converter lists
    them), and whether the tokenizer puts its BOS token before the text."""
    import gguf
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir, local_files_only=True, trust_remote_code=trust_remote_code)
    vocab = tok.get_vocab()
    if max(vocab.values()) >= vocab_size:
        raise ModelError(f"the tokenizer has id {max(vocab.values())}, past the model's vocab_size {vocab_size}",
                         hint="The model's embeddings must be resized to the tokenizer (resize_token_embeddings).")
    by_id = {i: t for t, i in vocab.items()}
    added = tok.get_added_vocab()
    decoder = tok.added_tokens_decoder
    tokens: list[str] = []
    types: list[int] = []
    for i in range(vocab_size):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
            continue
        token = by_id[i]
        if token in added:
            # llama.cpp expects added tokens in their normalised (decoded) form.
            if not decoder[i].normalized:
                token = tok.decode(tok.encode(token, add_special_tokens=False))
            types.append(gguf.TokenType.CONTROL if decoder[i].special else gguf.TokenType.USER_DEFINED)
        else:
            types.append(gguf.TokenType.NORMAL)
        tokens.append(token)
    return tokens, types, _adds_bos(tok)


def _adds_bos(tok) -> bool:
    return tok.bos_token_id is not None and tok("a").input_ids[:1] == [tok.bos_token_id]


def _spm_vocab(model_dir: Path, vocab_size: int,
               trust_remote_code: bool) -> tuple[list[str], list[float], list[int], bool]:
    """A SentencePiece-style BPE (byte fallback, ``▁`` for spaces) as llama.cpp's "llama" vocabulary.

    llama.cpp tokenizes such a vocabulary the SentencePiece way: it merges the adjacent pair
    whose joined text is the token with the highest score. A merged token's score is
    therefore minus the rank of the BPE merge that makes it, so llama.cpp merges in the
    order the tokenizer's merges list gives (for Llama 2's converted tokenizer.json that is
    the order of the original SentencePiece scores). ``<0xXX>`` tokens are bytes, the unknown
    token is UNKNOWN, other special tokens CONTROL, other added tokens USER_DEFINED. The last
    value says whether the tokenizer puts its BOS token before the text.
    """
    import gguf
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir, local_files_only=True, trust_remote_code=trust_remote_code)
    vocab = tok.get_vocab()
    if max(vocab.values()) >= vocab_size:
        raise ModelError(f"the tokenizer has id {max(vocab.values())}, past the model's vocab_size {vocab_size}",
                         hint="The model's embeddings must be resized to the tokenizer (resize_token_embeddings).")
    rank: dict[str, int] = {}
    for i, merge in enumerate(_tokenizer_json(model_dir)["model"].get("merges") or []):
        left, right = merge.split(" ", 1) if isinstance(merge, str) else merge
        rank.setdefault(left + right, i)
    by_id = {i: t for t, i in vocab.items()}
    added = tok.get_added_vocab()
    special_ids = set(tok.all_special_ids)
    T = gguf.TokenType
    tokens: list[str] = []
    scores: list[float] = []
    types: list[int] = []
    for i in range(vocab_size):
        token = by_id.get(i)
        if token is None:
            tokens.append(f"[PAD{i}]")
            scores.append(-1000.0)
            types.append(T.UNUSED)
            continue
        tokens.append(token)
        scores.append(-float(rank[token]) if token in rank else 0.0)
        if re.fullmatch(r"<0x[0-9A-Fa-f]{2}>", token):
            types.append(T.BYTE)
        elif i == tok.unk_token_id:
            types.append(T.UNKNOWN)
        elif i in special_ids or (token in added and tok.added_tokens_decoder[i].special):
            types.append(T.CONTROL)
        elif token in added:
            types.append(T.USER_DEFINED)
        else:
            types.append(T.NORMAL)
    return tokens, scores, types, _adds_bos(tok)


def chosen_pre(model_dir: Path, pre_override: str | None) -> tuple[str, str | None]:
    """The tokenizer kind and the pre-tokenizer name the file gets: the one recognised from the
    split pattern, or ``pre_override`` where none is.

    Raises:
        ConfigError: ``pre_override`` is not a name, the tokenizer has no pre-tokenizer to name
            (SentencePiece-style), or it contradicts the recognised pattern: llama.cpp would split
            text otherwise than the model was trained on, and nothing would say so.
    """
    kind, pre = tokenizer_kind(_tokenizer_json(model_dir))
    if not pre_override:
        return kind, pre
    if not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", pre_override):
        raise ConfigError(f"--pre '{pre_override}' is not a llama.cpp pre-tokenizer name (lower-case letters, "
                          f"digits, '-', '.' and '_'; e.g. {', '.join(PRE_TOKENIZERS)})", key="pre")
    if kind != "gpt2":
        raise ConfigError(f"--pre {pre_override}: the tokenizer of {model_dir} is SentencePiece-style (byte "
                          "fallback), which has no pre-tokenizer to name", key="pre", hint="Drop --pre.")
    if pre is not None and pre != pre_override:
        raise ConfigError(f"--pre {pre_override}: the tokenizer's split pattern is {pre}'s; with "
                          f"{pre_override} llama.cpp would split text otherwise than the model was trained on",
                          key="pre", hint=f"Drop --pre: the file names {pre} itself.")
    return kind, pre_override


def _write_vocab(writer, model_dir: Path, vocab_size: int, pre_override: str | None,
                 trust_remote_code: bool) -> tuple[str, str | None, list[str], list[int]]:
    """The tokenizer as a GGUF vocabulary; returns its kind, pre-tokenizer, tokens and token types."""
    import gguf

    kind, pre = chosen_pre(model_dir, pre_override)
    if kind == "gpt2":
        if pre is None:
            raise ModelError("the tokenizer's pre-tokenizer split pattern is not one GGUF export recognises "
                             f"({', '.join(PRE_TOKENIZERS)}); llama.cpp needs its name to split text as the "
                             "model was trained", hint="Name it with --pre (e.g. --pre llama-bpe) if you know "
                             "it, or convert with llama.cpp's convert_hf_to_gguf.py.")
        tokens, types, adds_bos = _bpe_vocab(model_dir, vocab_size, trust_remote_code)
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre(pre)
        writer.add_token_list(tokens)
        writer.add_token_types(types)
        special = gguf.SpecialVocab(model_dir, load_merges=True, n_vocab=len(tokens))
    else:
        tokens, scores, types, adds_bos = _spm_vocab(model_dir, vocab_size, trust_remote_code)
        writer.add_tokenizer_model("llama")
        writer.add_tokenizer_pre(pre or "default")
        writer.add_token_list(tokens)
        writer.add_token_scores(scores)
        writer.add_token_types(types)
        writer.add_add_space_prefix(adds_space_prefix(_tokenizer_json(model_dir)))
        special = gguf.SpecialVocab(model_dir, load_merges=False, n_vocab=len(tokens))
    # llama.cpp adds BOS to a SentencePiece-style or llama-bpe vocabulary unless told otherwise
    # (llama-vocab.cpp); say what the tokenizer does where its files don't.
    if "bos" not in special.add_special_token:
        special.add_special_token["bos"] = adds_bos
    special.add_to_gguf(writer, quiet=True)
    return kind, pre, tokens, types


_PHI3_NAME = re.compile(r"phi-?3", re.IGNORECASE)
_PHI3_UNSTRIPPED = ("<unk>", "<s>", "<|endoftext|>")


def llama_cpp_name(name: str, tokens: list[str], types: list[int], tok_json: dict[str, Any]) -> tuple[str, str | None]:
    """``general.name`` for the file, and why it differs from ``name`` (None when it doesn't).

    GGUF has no key for a special token's ``rstrip`` (it eats the whitespace after it). llama.cpp
    infers it from the name instead (llama-vocab.cpp): when ``general.name`` contains "phi3" or
    "phi-3" in any case, every special token strips but ``<unk>``, ``<s>`` and ``<|endoftext|>``,
    and ``</s>`` does too, as in Phi-3's tokenizer.json; and a vocabulary lacking one of those four
    then fails to load. So the name says Phi-3 when that is closer to the tokenizer's own flags
    than no stripping ("(Phi-3)" is added), and otherwise doesn't ("Phi-3"/"phi3" become
    "Phi 3"/"phi 3", as llama.cpp's converter titles a Phi-3 folder).
    """
    import gguf

    special = {t for t, k in zip(tokens, types, strict=True)
               if k in (gguf.TokenType.CONTROL, gguf.TokenType.USER_DEFINED, gguf.TokenType.UNKNOWN)}
    strips = {t["content"] for t in tok_json.get("added_tokens") or [] if t.get("rstrip")}
    as_phi3 = (special - set(_PHI3_UNSTRIPPED)) | {"</s>"}
    phi3 = set(_PHI3_UNSTRIPPED + ("</s>",)) <= set(tokens) and len(as_phi3 ^ strips) < len(strips)
    says_phi3 = bool(_PHI3_NAME.search(name))
    if phi3 and not says_phi3:
        return f"{name} (Phi-3)", ("'(Phi-3)' added to the name: llama.cpp strips the whitespace after special "
                                   "tokens, as this tokenizer does, only in a model named Phi-3")
    if says_phi3 and not phi3:
        renamed = _PHI3_NAME.sub(lambda m: m.group(0)[:3] + " 3", name)
        return renamed, (f"named '{renamed}': llama.cpp takes a model whose name contains 'phi3' or 'phi-3' "
                         "for one with Phi-3's tokenizer, which this one isn't")
    return name, None


# ---------------------------------------------------------------------------- hyper-parameters

def _rope(config) -> dict[str, Any]:
    params = getattr(config, "rope_parameters", None)
    if isinstance(params, dict) and "rope_type" in params:
        return params
    scaling = dict(getattr(config, "rope_scaling", None) or {})
    scaling.setdefault("rope_type", scaling.get("type", "default"))
    scaling.setdefault("rope_theta", getattr(config, "rope_theta", 10000.0))
    return scaling


def _head_dim(config) -> int:
    return int(getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads)


def _llama3_rope_factors(config):
    """llama.cpp's ``rope_freqs``: the default inverse frequencies over the llama3-scaled ones,
    computed with transformers' own rope initialisation (the model's, exactly)."""
    import torch
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    dim = _head_dim(config)
    base = float(_rope(config)["rope_theta"])
    default = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
    scaled, _ = ROPE_INIT_FUNCTIONS["llama3"](config, "cpu")
    return (default / scaled).float().numpy()


def _write_hparams(writer, config, family: Family) -> list[tuple[str, Any]]:
    """Model keys; returns extra tensors (name, float32 array) the rope scaling needs."""
    writer.add_context_length(int(config.max_position_embeddings))
    writer.add_embedding_length(int(config.hidden_size))
    writer.add_block_count(int(config.num_hidden_layers))
    writer.add_feed_forward_length(int(config.intermediate_size))
    writer.add_head_count(int(config.num_attention_heads))
    writer.add_head_count_kv(int(getattr(config, "num_key_value_heads", None) or config.num_attention_heads))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_vocab_size(int(config.vocab_size))
    head_dim = _head_dim(config)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    if family.arch == "phi3":
        return _phi3_hparams(writer, config)
    writer.add_rope_dimension_count(head_dim)
    if family.arch in _GEMMA:
        _gemma_hparams(writer, config, family.arch)
        return []
    return _llama_rope(writer, config)


def _llama_rope(writer, config) -> list[tuple[str, Any]]:
    import gguf

    rope = _rope(config)
    writer.add_rope_freq_base(float(rope.get("rope_theta", 10000.0)))
    kind = rope.get("rope_type") or "default"
    if kind == "default":
        return []
    if kind == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(rope["factor"]))
        return []
    if kind == "yarn":
        writer.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        writer.add_rope_scaling_factor(float(rope["factor"]))
        writer.add_rope_scaling_orig_ctx_len(int(rope.get("original_max_position_embeddings")
                                                 or config.max_position_embeddings))
        return []
    if kind == "llama3":
        return [("rope_freqs.weight", _llama3_rope_factors(config))]
    raise ModelError(f"GGUF export doesn't write rope scaling '{kind}' (it writes linear, yarn and llama3)",
                     hint="llama.cpp's convert_hf_to_gguf.py may handle it.")


def _phi3_hparams(writer, config) -> list[tuple[str, Any]]:
    """Phi-3/3.5/4-mini, as llama.cpp's Phi3MiniModel writes them: a rotary width for a partial
    rope (Phi-4-mini rotates 3/4 of each head), the pre-training context, the sliding window
    (0 for none), and for longrope ("su") the long and short factors as ``rope_factors_long`` /
    ``rope_factors_short`` with the attention factor transformers computes."""
    import numpy as np

    rope = _rope(config)
    rope_dims = int(_head_dim(config) * float(rope.get("partial_rotary_factor", 1.0)))
    writer.add_rope_dimension_count(rope_dims)
    writer.add_rope_freq_base(float(rope.get("rope_theta", 10000.0)))
    writer.add_rope_scaling_orig_ctx_len(int(rope.get("original_max_position_embeddings")
                                             or getattr(config, "original_max_position_embeddings", None)
                                             or config.max_position_embeddings))
    writer.add_sliding_window(int(getattr(config, "sliding_window", None) or 0))
    kind = rope.get("rope_type") or "default"
    if kind == "default":
        return []
    if kind not in ("longrope", "su"):
        raise ModelError(f"GGUF export doesn't write Phi-3 rope scaling '{kind}' (it writes longrope)",
                         hint="llama.cpp's convert_hf_to_gguf.py may handle it.")
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    # (transformers checked the factors' count against the rotary width when it read the config)

    _, attention_factor = ROPE_INIT_FUNCTIONS["longrope"](config, "cpu")
    writer.add_rope_scaling_attn_factors(float(attention_factor))
    return [("rope_factors_long.weight", np.asarray(rope["long_factor"], dtype=np.float32)),
            ("rope_factors_short.weight", np.asarray(rope["short_factor"], dtype=np.float32))]


_GEMMA = {"gemma2": ("Gemma 2", 2, 46), "gemma3": ("Gemma 3", 6, 62)}
"""GGUF arch -> (name, sliding-window pattern, layer count of the 27B model): what llama.cpp
fixes for these architectures instead of reading it from the file (llama-model.cpp: every
pattern-th layer attends globally, the others in the window; the 27B scales attention by
hidden/heads, the others by head_dim)."""


def _gemma_hparams(writer, config, arch: str) -> None:
    """Gemma 2 and Gemma 3 (text), as llama.cpp's Gemma2Model and Gemma3Model write them.

    llama.cpp fixes part of these models in its code rather than reading it from the file: the
    GELU (tanh) activation, which layers slide (:data:`_GEMMA`), the attention scale, Gemma 2's
    attention softcapping (on, 50 unless the file says otherwise), and Gemma 3's local rope
    (default, base 10000). A model that differs from what llama.cpp assumes is refused rather
    than written as a file that runs otherwise than the model.

    Raises:
        ModelError: such a difference, naming the config.json key.
    """
    import gguf

    what, pattern, layers_27b = _GEMMA[arch]
    n_layers = int(config.num_hidden_layers)

    def refuse(problem: str) -> ModelError:
        return ModelError(f"{what}: {problem}, which llama.cpp's {arch} architecture doesn't do",
                          hint="llama.cpp's own convert_hf_to_gguf.py writes the same keys; a model that "
                          "changes this part of the architecture needs llama.cpp support first.")

    act = getattr(config, "hidden_activation", None) or getattr(config, "hidden_act", None)
    if act != "gelu_pytorch_tanh":
        raise refuse(f"hidden_activation is '{act}' in config.json, not gelu_pytorch_tanh (GELU's tanh form)")
    if getattr(config, "use_bidirectional_attention", False):
        raise refuse("use_bidirectional_attention is true in config.json (an embedding model)")
    # llama.cpp derives the attention scale from the model's shape, not from the file.
    scalar = int(config.hidden_size) // int(config.num_attention_heads) if n_layers == layers_27b \
        else _head_dim(config)
    if float(config.query_pre_attn_scalar) != float(scalar):
        raise refuse(f"query_pre_attn_scalar is {config.query_pre_attn_scalar} in config.json, and with "
                     f"{n_layers} layers llama.cpp scales attention by 1/sqrt({scalar})")

    window = getattr(config, "sliding_window", None)
    types = list(getattr(config, "layer_types", None) or [])
    llama_cpp = ["sliding_attention" if i % pattern < pattern - 1 else "full_attention" for i in range(n_layers)]
    if arch == "gemma3" and (not window or (types and all(t == "full_attention" for t in types))):
        pass  # no sliding window key: llama.cpp's gemma3 then attends globally on every layer
    elif not window:
        raise refuse("sliding_window is not set in config.json, so no layer slides")
    elif types and types != llama_cpp:
        raise refuse(f"layer_types in config.json mixes sliding and full attention otherwise than every "
                     f"{pattern}{'nd' if pattern == 2 else 'th'} layer full")
    else:
        writer.add_sliding_window(int(window))

    params = getattr(config, "rope_parameters", None) or {}
    if arch == "gemma2":
        full = _rope(config)
    else:
        full = params.get("full_attention") or _rope(config)
        local = params.get("sliding_attention") or {}
        if (local.get("rope_type") or "default") != "default" or float(local.get("rope_theta", 10000.0)) != 10000.0:
            raise refuse(f"the sliding layers' rope in config.json is {local.get('rope_type') or 'default'} with "
                         f"base {local.get('rope_theta')}, not default with base 10000")
    writer.add_rope_freq_base(float(full.get("rope_theta", 10000.0)))
    kind = full.get("rope_type") or "default"
    if kind == "linear" and arch == "gemma3":  # Gemma 3 4B and up: the global layers only, in both
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(full["factor"]))
    elif kind != "default":
        raise refuse(f"rope scaling '{kind}' in config.json")

    attn_cap = getattr(config, "attn_logit_softcapping", None)
    final_cap = getattr(config, "final_logit_softcapping", None)
    if arch == "gemma2":
        if not attn_cap or not final_cap:  # llama.cpp's gemma2 always caps, at 50 and 30 unless told
            raise refuse("attn_logit_softcapping or final_logit_softcapping is off in config.json")
        writer.add_attn_logit_softcapping(float(attn_cap))
        writer.add_final_logit_softcapping(float(final_cap))
        return
    if attn_cap:
        raise refuse(f"attn_logit_softcapping is {attn_cap} in config.json (Gemma 3 caps no attention logits)")
    if final_cap:
        writer.add_final_logit_softcapping(float(final_cap))


# ---------------------------------------------------------------------------- tensors

def _permute(w, n_head: int):
    """HF's rotary layout (halves) to llama.cpp's (interleaved pairs), per head."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


@dataclass
class _Plan:
    hf_name: str
    gguf_name: str
    file: Path
    shape: tuple[int, ...]
    qtype: Any  # gguf.GGMLQuantizationType
    permute_heads: int = 0
    shift: float = 0.0
    """Added to the values (Gemma's norms: :attr:`Family.norm_shift`)."""


def _qtype_for(shape: tuple[int, ...], out_type: str, name: str, fallbacks: list[str]):
    import gguf

    Q = gguf.GGMLQuantizationType
    if len(shape) <= 1 or out_type == "f32":
        return Q.F32
    if out_type == "f16":
        return Q.F16
    if out_type == "bf16":
        return Q.BF16
    if shape[-1] % gguf.GGML_QUANT_SIZES[Q.Q8_0][0] != 0:
        fallbacks.append(name)
        return Q.F16
    return Q.Q8_0


def _plan(files: list[Path], config, arch_enum, family: Family, out_type: str,
          fallbacks: list[str]) -> list[_Plan]:
    import gguf
    from safetensors import safe_open

    n_blocks = int(config.num_hidden_layers)
    tmap = gguf.get_tensor_name_map(arch_enum, n_blocks)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    n_head = int(config.num_attention_heads)
    n_kv = int(getattr(config, "num_key_value_heads", None) or n_head)
    plans: list[_Plan] = []
    unknown: list[str] = []
    for file in files:
        with safe_open(str(file), framework="pt") as f:
            for hf_name in f.keys():
                if hf_name.endswith(("rotary_emb.inv_freq", ".masked_bias", ".attn.bias")):
                    continue
                if tied and hf_name == "lm_head.weight":
                    continue  # llama.cpp reuses token_embd when output is absent
                if hf_name == "lm_head.weight" and not family.own_output:
                    raise ModelError(f"this {family.arch} model has an output layer (lm_head) of its own "
                                     "(tie_word_embeddings is false in config.json), and llama.cpp's "
                                     f"{family.arch} always reuses the embeddings as the output layer",
                                     hint="Train it with tied embeddings, as the released models are.")
                name = tmap.get_name(hf_name, try_suffixes=(".weight", ".bias"))
                if name is None:
                    unknown.append(hf_name)
                    continue
                shape = tuple(f.get_slice(hf_name).get_shape())
                heads = 0
                if family.permute and hf_name.endswith(("q_proj.weight", "q_proj.bias")):
                    heads = n_head
                elif family.permute and hf_name.endswith(("k_proj.weight", "k_proj.bias")):
                    heads = n_kv
                shift = family.norm_shift if hf_name.endswith("norm.weight") else 0.0
                plans.append(_Plan(hf_name, name, file, shape, _qtype_for(shape, out_type, name, fallbacks), heads,
                                   shift))
    if unknown:
        raise ModelError(f"GGUF export can't place {len(unknown)} tensor(s) of this model, e.g. "
                         f"{', '.join(unknown[:3])}", hint="It is probably not a plain causal LM of its "
                         "architecture (a vision tower, extra heads); llama.cpp's converter may handle it.")
    return plans


def _convert(plan: _Plan, tensor) -> Any:
    import gguf
    import numpy as np

    Q = gguf.GGMLQuantizationType
    data = tensor.float()
    if plan.permute_heads:
        data = _permute(data, plan.permute_heads)
    if plan.shift:
        data = data + plan.shift
    arr = data.contiguous().numpy()
    if plan.qtype == Q.F32:
        return arr.astype(np.float32, copy=False)
    if plan.qtype == Q.F16:
        return arr.astype(np.float16)
    return gguf.quants.quantize(arr, plan.qtype)


def _nbytes(plan: _Plan) -> int:
    import gguf
    import numpy as np

    return int(np.prod(gguf.quant_shape_to_byte_shape(plan.shape, plan.qtype)))


# ---------------------------------------------------------------------------- export

def export_gguf(model_dir: str | Path, out: str | Path, *, out_type: str = "q8_0", name: str | None = None,
                pre_tokenizer: str | None = None, trust_remote_code: bool = False, overwrite: bool = False,
                progress: Callable[[int, int], None] | None = None) -> GgufResult:
    """Write the safetensors model in ``model_dir`` as one GGUF file at ``out``.

    Args:
        model_dir: a folder with ``config.json``, safetensors weights and ``tokenizer.json``.
        out: the ``.gguf`` file to write.
        out_type: one of :data:`TYPES`.
        name: ``general.name`` in the file (default: the folder's name).
        pre_tokenizer: llama.cpp pre-tokenizer name, for a byte-level BPE whose pattern isn't recognised.
        overwrite: replace an existing ``out``.
        progress: called with (tensors written, tensor count).

    Raises:
        ConfigError: bad type, or ``out`` exists.
        ModelError: an architecture, tokenizer or rope scaling this writer doesn't cover; pickle weights.
    """
    import gguf
    from safetensors import safe_open

    t0 = time.perf_counter()
    if out_type not in TYPES:
        raise ConfigError(f"--type '{out_type}' is not a GGUF type written here; allowed: {', '.join(TYPES)}",
                          key="type", hint="For k-quants (Q4_K_M...), write f16 and run llama.cpp's "
                          "llama-quantize on it.")
    model_dir = Path(model_dir)
    out = _check_out(out, overwrite)
    config = _config(model_dir, trust_remote_code)
    _, family = _arch_of(config)
    arch = family.arch
    arch_enum = next(k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == arch)
    files = _safetensors_files(model_dir)
    fallbacks: list[str] = []
    plans = _plan(files, config, arch_enum, family, out_type, fallbacks)
    ftype = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
             "bf16": gguf.LlamaFileType.MOSTLY_BF16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[out_type]

    tmp = _temp_beside(out)
    writer = gguf.GGUFWriter(tmp, arch)
    try:
        extra = _write_hparams(writer, config, family)
        writer.add_file_type(ftype)
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        kind, pre, tokens, types = _write_vocab(writer, model_dir, int(config.vocab_size), pre_tokenizer,
                                                trust_remote_code)
        name, renamed = llama_cpp_name(name or model_dir.name, tokens, types, _tokenizer_json(model_dir))
        writer.add_name(name)
        for tname, arr in extra:
            writer.add_tensor_info(tname, arr.shape, arr.dtype, arr.nbytes)
        for p in plans:
            writer.add_tensor_info(p.gguf_name, p.shape, _info_dtype(p.qtype), _nbytes(p), raw_dtype=_raw(p.qtype))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for _, arr in extra:
            writer.write_tensor_data(arr)
        done = 0
        for group in _by_file(plans):
            with safe_open(str(group[0].file), framework="pt") as f:
                for p in group:
                    writer.write_tensor_data(_convert(p, f.get_tensor(p.hf_name)))
                    done += 1
                    if progress is not None:
                        progress(done, len(plans))
        _finish(writer, tmp, out)
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    return GgufResult(out, out_type, arch, kind, pre, len(plans) + len(extra), out.stat().st_size,
                      time.perf_counter() - t0, fallbacks, renamed)


def _check_out(out: str | Path, overwrite: bool) -> Path:
    """The ``--out`` file as a path, refused when it isn't a ``.gguf`` or exists (unless ``overwrite``)."""
    out = Path(out).expanduser()
    if out.suffix.lower() != ".gguf":
        raise ConfigError(f"--out '{out}' should end in .gguf", key="out")
    if out.exists() and not overwrite:
        raise ConfigError(f"--out '{out}' already exists; GGUF export doesn't write over a file", key="out",
                          hint="Choose a new file name.")
    return out


def _temp_beside(out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent)
    os.close(fd)
    return Path(tmp_name)


def _finish(writer, tmp: Path, out: Path) -> None:
    """Flush, fsync and close ``writer``'s file ``tmp``, then rename it to ``out``."""
    for fh in writer.fout or []:  # on disk before the rename: the file is whole or absent
        fh.flush()
        os.fsync(fh.fileno())
    writer.close()
    # mkstemp makes the file private (0600); give it the mode a plain new file gets, so a
    # server running as another user (Ollama's service, say) can read it.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, out)


# ---------------------------------------------------------------------------- LoRA adapters

LORA_TYPES = ("f32", "f16")
"""An adapter GGUF's types: small files, kept in float (llama.cpp's converter defaults to f32)."""


def _adapter_config(adapter_dir: Path) -> dict | str:
    """The folder's ``adapter_config.json``, or why it can't be read."""
    try:
        return json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        return f"'{adapter_dir}' is not a PEFT adapter folder: {e}"


def lora_gguf_problem(adapter_dir: str | Path, adapter_config: dict | str | None = None) -> str | None:
    """Why ``adapter_dir`` can't be written as a llama.cpp LoRA adapter, or None when it can
    (``adapter_config``: what :func:`_adapter_config` read, when the caller has it)."""
    adapter_dir = Path(adapter_dir)
    acfg = _adapter_config(adapter_dir) if adapter_config is None else adapter_config
    if isinstance(acfg, str):
        return acfg
    from engine.adapters import BOTTLENECK_FORMAT, adapter_name

    name = adapter_name(adapter_dir)  # a run's final/ is named by its run
    if str(acfg.get("peft_type", "")).upper() != "LORA":
        what = "bottleneck" if acfg.get("format") == BOTTLENECK_FORMAT else str(acfg.get("peft_type") or "unknown")
        article = "an" if what[:1].lower() in "aeiou" else "a"
        return f"'{name}' is {article} {what} adapter; llama.cpp applies LoRA adapters only"
    if acfg.get("use_dora"):
        return f"'{name}' is a DoRA adapter, which llama.cpp can't apply at run time"
    if acfg.get("trainable_token_indices"):
        return (f"'{name}' trains tokens its run added to the vocabulary, and a llama.cpp adapter can't "
                "add rows to its base's embeddings")
    if acfg.get("alpha_pattern") or (acfg.get("use_rslora") and acfg.get("rank_pattern")):
        return (f"'{adapter_dir.name}' scales its modules differently (alpha_pattern, or rsLoRA with a rank_pattern); "
                "a llama.cpp adapter has one alpha")
    if not (adapter_dir / "adapter_model.safetensors").exists():
        return f"'{adapter_dir.name}' has no adapter_model.safetensors (pickle adapters aren't exported)"
    from engine.methods.peft_adapter import check_loadable

    try:
        check_loadable(adapter_dir, acfg)
    except ModelError as e:
        return e.message
    return None


def estimate_lora_size(adapter_dir: str | Path, out_type: str = "f16") -> int | None:
    """The adapter GGUF's size: its A and B matrices at the type's bytes, plus a few kB of header."""
    from safetensors import safe_open

    try:
        with safe_open(str(Path(adapter_dir) / "adapter_model.safetensors"), framework="pt") as f:
            values = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
    except (OSError, ValueError):
        return None
    return int(values * BYTES_PER_VALUE[out_type]) + 4096


def export_lora_gguf(adapter_dir: str | Path, out: str | Path, *, base: str | None = None, out_type: str = "f16",
                     trust_remote_code: bool = False, overwrite: bool = False) -> GgufResult:
    """Write a PEFT LoRA adapter as a llama.cpp LoRA adapter GGUF (``--lora FILE``, Ollama's
    ``ADAPTER``), to apply on the base model's GGUF at run time instead of merging.

    The file holds ``general.type = adapter``, ``adapter.type = lora`` and ``adapter.lora.alpha``,
    and each adapted weight's ``<gguf name>.lora_a`` (r x in) and ``.lora_b`` (out x r), with the
    rows of Q and K's ``lora_b`` permuted as the base's Q and K rows are. llama.cpp scales by
    alpha / r, so an rsLoRA adapter (alpha / sqrt(r)) is written with alpha * sqrt(r).

    Args:
        adapter_dir: a PEFT LoRA folder (``adapter_config.json`` + ``adapter_model.safetensors``).
        out: the ``.gguf`` file to write.
        base: the base model (folder, cached id, ``demo``); default: the one the adapter records.
        out_type: ``f16`` or ``f32``.

    Raises:
        ConfigError: bad type or out.
        ModelError: not a LoRA, or one llama.cpp can't apply (DoRA, per-module alphas, tensors
            other than LoRA's A and B, a training-form PiSSA/OLoRA checkpoint).
    """
    import gguf
    from safetensors import safe_open

    from engine.models import resolve_model_path

    t0 = time.perf_counter()
    if out_type not in LORA_TYPES:
        raise ConfigError(f"--type '{out_type}' for a LoRA adapter GGUF; allowed: {', '.join(LORA_TYPES)}",
                          key="type")
    adapter_dir, out = Path(adapter_dir), _check_out(out, overwrite)
    from engine.methods.peft_adapter import check_loadable

    acfg = _adapter_config(adapter_dir)
    if isinstance(acfg, dict):
        check_loadable(adapter_dir, acfg)  # a PiSSA/OLoRA checkpoint: its own way out (runs promote)
    problem = lora_gguf_problem(adapter_dir, acfg)
    if problem:
        raise ModelError(problem, hint="Export it merged into its base instead (without --lora).")
    weights = adapter_dir / "adapter_model.safetensors"
    base_ref = base or acfg.get("base_model_name_or_path")
    if not base_ref:
        raise ConfigError(f"adapter '{adapter_dir}' records no base model", key="base", hint="Give it with --base.")
    config = _config(resolve_model_path(base_ref), trust_remote_code)
    _, family = _arch_of(config)
    arch, permute = family.arch, family.permute
    arch_enum = next(k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == arch)
    tmap = gguf.get_tensor_name_map(arch_enum, int(config.num_hidden_layers))
    n_head = int(config.num_attention_heads)
    n_kv = int(getattr(config, "num_key_value_heads", None) or n_head)
    alpha = float(acfg["lora_alpha"]) * (math.sqrt(int(acfg["r"])) if acfg.get("use_rslora") else 1.0)
    dtype = {"f32": "float32", "f16": "float16"}[out_type]

    pairs: dict[str, dict[str, str]] = {}
    with safe_open(str(weights), framework="pt") as f:
        keys = list(f.keys())
    for key in keys:
        part = "a" if ".lora_A." in key else "b" if ".lora_B." in key else None
        if part is None:
            raise ModelError(f"'{adapter_dir}' holds '{key}', which is not a LoRA A or B matrix (trained embeddings "
                             "or modules_to_save); a llama.cpp adapter can't carry it", hint="Export it merged instead.")
        hf_name = key.removeprefix("base_model.model.").replace(f".lora_{part.upper()}.weight", ".weight")
        name = tmap.get_name(hf_name, try_suffixes=(".weight",))
        if name is None or hf_name.endswith(("embed_tokens.weight", "lm_head.weight")):
            raise ModelError(f"'{adapter_dir}' adapts '{hf_name}', which a llama.cpp LoRA adapter can't target here",
                             hint="Export it merged instead.")
        pairs.setdefault(name, {})[part] = key
    if not pairs or any(len(p) != 2 for p in pairs.values()):
        raise ModelError(f"'{adapter_dir}' doesn't hold matching lora_A and lora_B matrices")

    tmp = _temp_beside(out)
    writer = gguf.GGUFWriter(tmp, arch)
    try:
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
        writer.add_name(adapter_dir.parent.name if adapter_dir.name == "final" else adapter_dir.name)
        writer.add_file_type(gguf.LlamaFileType.ALL_F32 if out_type == "f32" else gguf.LlamaFileType.MOSTLY_F16)
        with safe_open(str(weights), framework="pt") as f:
            for name, pair in pairs.items():
                a = f.get_tensor(pair["a"]).float()
                b = f.get_tensor(pair["b"]).float()
                heads = n_head if name.endswith("attn_q.weight") else n_kv if name.endswith("attn_k.weight") else 0
                if permute and heads:
                    b = _permute(b, heads)  # B's rows are the base weight's rows
                writer.add_tensor(f"{name}.lora_a", a.contiguous().numpy().astype(dtype))
                writer.add_tensor(f"{name}.lora_b", b.contiguous().numpy().astype(dtype))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        _finish(writer, tmp, out)
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    return GgufResult(out, out_type, arch, "lora adapter", None, 2 * len(pairs), out.stat().st_size,
                      time.perf_counter() - t0, [])


def _by_file(plans: list[_Plan]) -> Iterator[list[_Plan]]:
    """The plans grouped by safetensors file, in plan order (which is the file's order)."""
    group: list[_Plan] = []
    for p in plans:
        if group and p.file != group[0].file:
            yield group
            group = []
        group.append(p)
    if group:
        yield group


def _info_dtype(qtype):
    import gguf
    import numpy as np

    return {gguf.GGMLQuantizationType.F32: np.float32, gguf.GGMLQuantizationType.F16: np.float16}.get(
        qtype, np.dtype(np.float32))


def _raw(qtype):
    import gguf

    return None if qtype in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16) else qtype


# ---------------------------------------------------------------------------- sources

def resolve_source(ref: str) -> tuple[str, Path, Path | None]:
    """What ``export-gguf SOURCE`` names: ``(kind, folder, run)``, kind ``"model"`` or ``"adapter"``.

    A full or freeze run (folder or name) gives its ``final/`` model; an adapter (a folder,
    a LoRA run, a library name) is returned as such, to be merged first.

    Raises:
        ModelError: none of these.
    """
    from engine.adapters import resolve_adapter
    from engine.models import resolve_model_path
    from engine.runs import find_run

    run = find_run(ref) if ref != "demo" else None
    if run is not None and (run / "final" / "config.json").exists():
        return "model", run / "final", run
    if run is not None and not (run / "final").exists():
        from engine.runs import no_final_error

        raise no_final_error(run)
    path = Path(ref).expanduser()
    if ref != "demo" and (path / "adapter_config.json").exists():
        return "adapter", path, None
    if ref == "demo" or (path / "config.json").exists():
        return "model", resolve_model_path(ref), None
    try:
        return "adapter", resolve_adapter(ref), None
    except ModelError as e:
        try:
            return "model", resolve_model_path(ref), None
        except ModelError:
            raise ModelError(f"'{ref}' is not a model folder, a full/freeze run, a cached model or an adapter",
                             hint=e.hint) from None


def default_out(ref: str, source: Path, out_type: str, run: Path | None = None, *, lora: bool = False) -> Path:
    """Where ``export-gguf`` writes when no ``--out`` is given: a run's file in its run folder
    (``<run>-<type>.gguf``), anything else in ``<data home>/gguf/<name>-<type>.gguf``, never
    beside a model in the Hugging Face cache or the app's own demo folder."""
    from engine.paths import data_home

    kind = f"lora-{out_type}" if lora else out_type
    if run is not None:
        # A checkpoint's file must not take the name of the run's result (final/).
        of = "" if source.name == "final" or source == run else f"-{source.name}"
        return run / f"{run.name}{of}-{kind}.gguf"
    if ref == "demo":
        name = "demo"
    elif source.name in ("final", "merged") or source.name.startswith("checkpoint-"):
        name = f"{source.parent.name}-{source.name}"
    elif "snapshots" in source.parts and source.parent.name == "snapshots":
        name = source.parent.parent.name.removeprefix("models--").replace("--", "-")  # a hub cache entry
    else:
        name = source.name
    return data_home() / "gguf" / f"{name}-{kind}.gguf"


def _refuse_default_taken(target: Path) -> None:
    """Refuse to write over the file an earlier export of the same source and type left where no
    ``--out`` was given; the error named ``--out``, a flag the user never typed.

    Raises:
        ConfigError: ``target`` exists.
    """
    if target.exists():
        raise ConfigError(f"'{target}' already exists: an earlier export of this source as this type (the file "
                          "export-gguf writes when no --out is given); GGUF export doesn't write over a file",
                          key="out", hint=f"Give another file with --out FILE.gguf, or delete {target.name} to "
                          "export it again (after more training, say).")


def export_source(ref: str, out: str | Path | None, *, out_type: str = "q8_0", base: str | None = None,
                  pre_tokenizer: str | None = None, trust_remote_code: bool = False, allow_pickle: bool = False,
                  progress: Callable[[int, int], None] | None = None,
                  note: Callable[[str], None] | None = None, lora: bool = False) -> GgufResult:
    """:func:`export_gguf` for anything ``export-gguf`` accepts; an adapter is merged (in
    :data:`MERGE_DTYPE`) into its base in a scratch folder beside the target first, which is
    deleted afterwards. With ``lora``, an adapter is written on its own instead
    (:func:`export_lora_gguf`)."""
    kind, folder, run = resolve_source(ref)
    if pre_tokenizer and pre_tokenizer not in PRE_TOKENIZERS and note:
        note(f"--pre {pre_tokenizer} is not a name this exporter knows ({', '.join(PRE_TOKENIZERS)}); it is written "
             "as given, and llama.cpp refuses the file if it doesn't know the name either: check the spelling "
             "against llama.cpp's list (llama-vocab.cpp)")
    if base and kind == "model":
        raise ConfigError(f"--base names the model an adapter is merged into, but '{ref}' is a model ({folder}): "
                          "it is written as it is", key="base", hint="Drop --base.")
    if lora:
        if kind != "adapter":
            raise ConfigError(f"--lora writes a LoRA adapter on its own, but '{ref}' is a model", key="lora",
                              hint="Drop --lora to export the model.")
        if pre_tokenizer:
            raise ConfigError("--pre names the tokenizer's pre-tokenizer, and a LoRA adapter's GGUF holds no "
                              "tokenizer (llama.cpp takes the base's)", key="pre", hint="Drop --pre.")
        from engine.adapters import read_card

        card = read_card(folder)
        target = Path(out) if out else default_out(ref, folder, out_type,
                                                   Path(card.run_dir) if card.run_dir else None, lora=True)
        if not out:
            _refuse_default_taken(target)
        return export_lora_gguf(folder, target, base=base or card.base_model, out_type=out_type,
                                trust_remote_code=trust_remote_code)
    if kind == "model":
        target = Path(out) if out else default_out(ref, folder, out_type, run)
        if not out:
            _refuse_default_taken(target)
        if pre_tokenizer:
            chosen_pre(folder, pre_tokenizer)
        check_space(ref, target, base, out_type)
        return export_gguf(folder, target, out_type=out_type, name=run.name if run else None,
                           pre_tokenizer=pre_tokenizer, trust_remote_code=trust_remote_code, progress=progress)
    from engine.adapters import check_mergeable, merge_adapters, read_card

    card = read_card(folder)
    check_mergeable(card)  # before anything is said or written
    base_model = base or card.base_model
    if not base_model:
        raise ConfigError(f"adapter '{card.name}' records no base model", key="base",
                          hint="Give the base with --base.")
    target = Path(out) if out else default_out(ref, folder, out_type, Path(card.run_dir) if card.run_dir else None)
    if not out:
        _refuse_default_taken(target)
    elif target.exists():
        raise ConfigError(f"--out '{target}' already exists; GGUF export doesn't write over a file", key="out")
    if pre_tokenizer:  # before the merge: the merged folder takes the base's tokenizer
        from engine.models import resolve_model_path

        chosen_pre(resolve_model_path(base_model), pre_tokenizer)
    check_space(ref, target, base, out_type)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Beside the target: the merged copy needs the disk space the GGUF file will need anyway.
    scratch = Path(tempfile.mkdtemp(prefix=".gguf-merge-", dir=target.parent))
    dtype = MERGE_DTYPE[out_type]
    try:
        if note:
            note(f"merging {card.name} into {base_model} first ({dtype})")
        merged = merge_adapters(base_model, [str(folder)], scratch / "merged", dtype=dtype,
                                trust_remote_code=trust_remote_code, allow_pickle=allow_pickle)
        return export_gguf(merged, target, out_type=out_type, name=card.name, pre_tokenizer=pre_tokenizer,
                           trust_remote_code=trust_remote_code, progress=progress)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


BYTES_PER_VALUE = {"f32": 4.0, "f16": 2.0, "bf16": 2.0, "q8_0": 34 / 32}
"""Bytes per weight of a matrix in each type (q8_0: blocks of 32 int8 values and one f16 scale)."""


def estimate_size(ref: str, base: str | None = None, out_type: str = "q8_0") -> int | None:
    """About how many bytes ``export-gguf REF --type OUT_TYPE`` writes, from the safetensors
    headers alone (an adapter's: its base's), no tensor read; None when it can't tell.

    Matrices count at :data:`BYTES_PER_VALUE` (q8_0's f16 fallback included), 1-D tensors at
    4 bytes, a tied ``lm_head`` not at all; the vocabulary and chat template at the size of
    ``tokenizer.json``.
    """
    from engine.adapters import read_card, safetensors_shapes
    from engine.models import resolve_model_path

    try:
        kind, folder, _ = resolve_source(ref)
        if kind == "adapter":
            folder = resolve_model_path(base or read_card(folder).base_model or "")
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        tied = bool(config.get("tie_word_embeddings", False))
        total = 0.0
        for file in _safetensors_files(folder):
            for name, shape in safetensors_shapes(file).items():
                if tied and name == "lm_head.weight":
                    continue
                n = 1
                for d in shape:
                    n *= d
                if len(shape) <= 1 or out_type == "f32":
                    total += 4 * n
                elif out_type == "q8_0" and shape[-1] % 32:
                    total += 2 * n
                else:
                    total += BYTES_PER_VALUE[out_type] * n
        tokenizer = folder / "tokenizer.json"
        return int(total + (tokenizer.stat().st_size if tokenizer.is_file() else 0))
    except (StudioError, OSError, ValueError, KeyError):
        return None


def space_needed(ref: str, base: str | None = None, out_type: str = "q8_0") -> int | None:
    """Disk space ``export-gguf`` needs beside its target: the file, plus, for an adapter, the
    merged copy of the base it writes first (in :data:`MERGE_DTYPE`) and deletes after. None
    when it can't tell."""
    size = estimate_size(ref, base, out_type)
    if size is None:
        return None
    try:
        kind, _, _ = resolve_source(ref)
    except StudioError:
        return None
    if kind == "adapter":
        merged = estimate_size(ref, base, "f32" if MERGE_DTYPE[out_type] == "fp32" else "f16")
        if merged is None:
            return None
        size += merged
    return size


def free_space(path: Path) -> int | None:
    """Free bytes on the disk that holds ``path`` (or its nearest existing parent)."""
    path = Path(path).expanduser().absolute()
    for folder in (path, *path.parents):
        if folder.exists():
            try:
                return shutil.disk_usage(folder).free
            except OSError:
                return None
    return None


def check_space(ref: str, target: Path, base: str | None = None, out_type: str = "q8_0") -> None:
    """Refuse before writing anything when the target's disk lacks the space :func:`space_needed` says.

    Raises:
        ConfigError: not enough free space, with both figures.
    """
    need, free = space_needed(ref, base, out_type), free_space(target.parent)
    if need is not None and free is not None and free < need:
        from engine.adapters import format_size

        raise ConfigError(f"'{target.parent}' has {format_size(free)} free; the export needs about "
                          f"{format_size(need)}" + (" (the merged model is written there first)"
                                                    if resolve_source(ref)[0] == "adapter" else ""),
                          key="out", hint="Free some space, or choose a file on another disk with --out.")


def adapter_kind(card: Any) -> str:
    """"a bottleneck adapter", "a prompt tuning adapter": what kind of adapter a card is, for messages."""
    peft_type = (card.peft_type or "").upper()
    what = ("bottleneck" if peft_type == "BOTTLENECK" else
            (peft_type or card.method or "unknown").lower().replace("_", " "))
    return f"{'an' if what[:1] in 'aeiou' else 'a'} {what} adapter"


def unmergeable(card: Any) -> str | None:
    """Why an adapter card can't become a GGUF file at all (its kind doesn't merge), or None.

    Cheap (the card's recorded PEFT type only), so the GUI can ask it on every selection change.
    """
    if (card.peft_type or "").upper() in ("LORA", "IA3"):
        return None
    return (f"{card.name} is {adapter_kind(card)}: only LoRA and IA3 adapters merge into the weights, "
            "and a GGUF file holds plain weights.")


def export_problem(ref: str, base: str | None = None) -> str | None:
    """Why ``export-gguf REF`` can't work, found from files alone (no torch), or None.

    For the GUI, before it starts the export: the source or base doesn't resolve, the
    adapter can't be merged, the architecture or tokenizer isn't one this writer covers.
    The export itself checks the same things again, and more (rope scaling, tensor names).
    """
    try:
        kind, folder, _ = resolve_source(ref)
        if kind == "adapter":
            from engine.adapters import read_card
            from engine.models import resolve_model_path

            card = read_card(folder)
            if why := unmergeable(card):
                return why
            if not (base or card.base_model):
                return f"{card.name} records no base model; give one."
            folder = resolve_model_path(base or card.base_model)
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        archs = config.get("architectures") or []
        if not any(a in ARCHITECTURES for a in archs):
            return (f"GGUF export doesn't know the architecture {', '.join(archs) or '(none recorded)'}; it knows "
                    f"{', '.join(ARCHITECTURES)}.")
        _safetensors_files(folder)
        kind, pre = tokenizer_kind(_tokenizer_json(folder))
        if kind == "gpt2" and pre is None:
            return ("the tokenizer's pre-tokenizer is not one GGUF export recognises; export it from the command "
                    "line with --pre NAME.")
    except (ModelError, ConfigError) as e:
        return e.message
    except (OSError, json.JSONDecodeError) as e:
        return str(e)
    return None


def _size(n: int) -> str:
    from engine.adapters import format_size

    return format_size(n)


def describe(result: GgufResult) -> str:
    what = ("a LoRA adapter for llama.cpp's --lora / Ollama's ADAPTER" if result.tokenizer == "lora adapter" else
            f"{result.tokenizer} tokenizer" + (f" / {result.pre_tokenizer}" if result.pre_tokenizer else ""))
    text = (f"wrote {result.path} ({_size(result.bytes)}, {result.type}, arch {result.arch}, "
            f"{result.tensors} tensors, {what}) in {result.seconds:.1f} s")
    if result.fallbacks:
        text += (f"\n  {len(result.fallbacks)} tensor(s) kept in f16: their rows don't split into q8_0 blocks "
                 f"({', '.join(result.fallbacks[:3])}{'...' if len(result.fallbacks) > 3 else ''})")
    if result.renamed:
        text += f"\n  {result.renamed}"
    return text


def cli_export_gguf(args: argparse.Namespace) -> int:
    """``finetune-studio export-gguf SOURCE [--out FILE] [--type T] [--base M] [--pre NAME] [--lora] [--json]``."""
    from engine.adapters import quiet_loading
    from engine.cli import progress_printer

    quiet_loading()  # its own progress line, not the libraries' "Loading weights" bars
    lora = getattr(args, "lora", False)
    out_type = args.type or ("f16" if lora else "q8_0")
    result = export_source(args.source, args.out, out_type=out_type, base=args.base, pre_tokenizer=args.pre,
                           trust_remote_code=args.trust_remote_code, allow_pickle=args.allow_pickle,
                           progress=progress_printer(args, "tensors", verb="writing"),
                           note=None if args.json else (lambda s: print(s, file=sys.stderr, flush=True)), lora=lora)
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print(describe(result))
    return 0

