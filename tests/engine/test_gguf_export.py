"""GGUF export: files that transformers' own GGUF loader reads back into the same model.

transformers dequantises a GGUF file and undoes llama.cpp's rotary permutation on load,
independently of our writer, so an f32 export must give the original logits exactly and
the tokenizer rebuilt from the file must encode text to the same ids.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from pathlib import Path

import pytest

gguf = pytest.importorskip("gguf")

from engine.errors import ConfigError, ModelError  # noqa: E402
from engine.gguf_export import _PRE_PATTERNS, export_gguf, export_source, tokenizer_kind  # noqa: E402

PRE = {name: pattern for pattern, name in _PRE_PATTERNS.items()}
TEXT = "Name three primes: 2, 3 and 5. Then 12345 + 678 = 13023!\n\tDone?  Yes."


def tiny_tokenizer(out: Path, pattern: str | None) -> None:
    """A small byte-level BPE tokenizer with a chat template; ``pattern`` = a Split before ByteLevel."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    if pattern is None:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    else:
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    texts = [TEXT, "The quick brown fox jumps over the lazy dog 1234567890."] * 20
    tok.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=320, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    fast.chat_template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    fast.save_pretrained(out)


def _words() -> list[str]:
    """Training text cut into words: SentencePiece merges stay inside a word, and a vocabulary
    trained on whole repeated sentences would hold each sentence as one token."""
    texts = [TEXT, "The quick brown fox jumps over the lazy dog.", "hello world, hello there"] * 30
    return [w for t in texts for w in t.split(" ") if w]


def tiny_spm_tokenizer(out: Path, *, phi3_specials: bool = False) -> None:
    """A SentencePiece-style BPE as Llama 2's and Mistral's tokenizer.json are: byte fallback,
    ``▁`` for spaces, ``<0xXX>`` byte tokens, ``<unk>``/``<s>``/``</s>``. With ``phi3_specials``,
    Phi-3-mini's added tokens as its tokenizer.json has them: each strips the whitespace after it
    (``rstrip``), except ``<|endoftext|>``, and so does ``</s>``."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    eos = AddedToken("</s>", rstrip=True, special=True, normalized=False) if phi3_specials else "</s>"
    specials = ["<unk>", "<s>", eos, *(f"<0x{i:02X}>" for i in range(256))]
    tok.train_from_iterator(_words(), trainers.BpeTrainer(vocab_size=600, special_tokens=specials,
                                                          limit_alphabet=100, show_progress=False))
    if phi3_specials:
        tok.add_special_tokens([AddedToken("<|endoftext|>", special=True, normalized=False)] + [
            AddedToken(t, rstrip=True, special=True, normalized=False)
            for t in ("<|assistant|>", "<|system|>", "<|end|>", "<|user|>")])
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                            pad_token="<unk>").save_pretrained(out)


def tiny_gemma_tokenizer(out: Path) -> None:
    """A SentencePiece-style BPE as Gemma's is: transformers' own GemmaTokenizer (byte fallback,
    spaces as ``▁`` with none put before the text, ``<bos>`` added) over a small trained vocabulary,
    with Gemma's special tokens in Gemma's order and its turn markers and chat template."""
    from tokenizers import Tokenizer, models, normalizers, trainers
    from transformers import GemmaTokenizer

    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Replace(" ", "▁")
    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<start_of_turn>", "<end_of_turn>",
                *(f"<0x{i:02X}>" for i in range(256))]
    tok.train_from_iterator((" " + w for w in _words()), trainers.BpeTrainer(
        vocab_size=600, special_tokens=specials, limit_alphabet=100, show_progress=False))
    model = json.loads(tok.to_str())["model"]
    gemma = GemmaTokenizer(vocab=model["vocab"], merges=[tuple(m) if isinstance(m, list) else tuple(m.split(" "))
                                                         for m in model["merges"]], add_bos_token=True)
    gemma.add_special_tokens({"additional_special_tokens": ["<start_of_turn>", "<end_of_turn>"]})
    gemma.chat_template = ("{{ bos_token }}{% for m in messages %}<start_of_turn>{{ m['role'] }}\n{{ m['content'] }}"
                           "<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}")
    gemma.save_pretrained(out)


def tiny_model(out: Path, arch: str, *, pattern: str | None = None, spm: bool = False, vocab_extra: int = 0,
               phi3_specials: bool = False, **shape) -> Path:
    """A tiny random model of ``arch`` saved with safetensors and its own tokenizer (byte-level
    BPE split by ``pattern``, SentencePiece-style with ``spm`` (with Phi-3-mini's added tokens with
    ``phi3_specials``), Gemma's for Gemma)."""
    import torch
    from transformers import (
        AutoTokenizer,
        Gemma2Config,
        Gemma3TextConfig,
        LlamaConfig,
        MistralConfig,
        Phi3Config,
        Qwen2Config,
        Qwen3Config,
    )

    gemma = arch.startswith("gemma")
    if gemma:
        tiny_gemma_tokenizer(out)
    elif spm:
        tiny_spm_tokenizer(out, phi3_specials=phi3_specials)
    else:
        tiny_tokenizer(out, pattern)
    tok = AutoTokenizer.from_pretrained(out)
    configs = {"llama": LlamaConfig, "mistral": MistralConfig, "qwen2": Qwen2Config, "qwen3": Qwen3Config,
               "phi3": Phi3Config, "gemma2": Gemma2Config, "gemma3": Gemma3TextConfig}
    kw = dict(vocab_size=len(tok) + vocab_extra, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
              pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, tie_word_embeddings=False)
    if gemma:  # tied, as released; attention scaled by 1/sqrt(head_dim), as llama.cpp assumes, and 256 each
        # because transformers' GGUF reader doesn't read query_pre_attn_scalar and takes Gemma's default
        kw.update(bos_token_id=tok.bos_token_id, tie_word_embeddings=True, head_dim=256, query_pre_attn_scalar=256)
    kw.update(shape)
    config = configs[arch](**kw)
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():  # random biases, so that dropping or permuting one would show
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.add_(torch.randn_like(p) * 0.1)
    model.save_pretrained(out, safe_serialization=True)
    return out


def _logits(model_dir: Path, gguf_file: Path | None, text: str = TEXT):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    ids = tok(text, return_tensors="pt").input_ids
    if gguf_file is None:
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    else:
        model = AutoModelForCausalLM.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name,
                                                     dtype=torch.float32)
    with torch.no_grad():
        return model.eval()(ids).logits[0]


def _fields(path: Path) -> dict:
    reader = gguf.GGUFReader(path)
    out = {}
    for name, f in reader.fields.items():
        if f.types and f.types[0] == gguf.GGUFValueType.STRING:
            out[name] = f.contents() if not (len(f.types) > 1) else None
        elif len(f.data) == 1:
            out[name] = f.contents()
    out["_tensors"] = {t.name: t.tensor_type.name for t in reader.tensors}
    return out


def test_demo_model_f32_export_gives_the_same_logits_and_tokenizer(demo_base, tmp_path):
    from transformers import AutoTokenizer

    result = export_gguf(demo_base, tmp_path / "demo.gguf", out_type="f32")
    assert result.path.is_file() and result.arch == "llama" and result.pre_tokenizer == "gpt-2"
    a, b = _logits(demo_base, None), _logits(demo_base, result.path)
    assert (a - b).abs().max().item() < 1e-5

    original = AutoTokenizer.from_pretrained(demo_base)
    rebuilt = AutoTokenizer.from_pretrained(tmp_path, gguf_file="demo.gguf")
    sample = TEXT + " <|im_start|>user\nwörld<|im_end|>"
    assert rebuilt(sample).input_ids == original(sample).input_ids
    fields = _fields(result.path)
    assert fields["tokenizer.chat_template"] == original.chat_template
    assert fields["tokenizer.ggml.eos_token_id"] == original.eos_token_id
    assert fields["general.architecture"] == "llama" and fields["llama.block_count"] == 4
    # Tied embeddings: no output.weight, llama.cpp reuses token_embd.
    assert "output.weight" not in fields["_tensors"] and "token_embd.weight" in fields["_tensors"]
    assert not list(tmp_path.glob("*.part"))
    umask = os.umask(0)
    os.umask(umask)
    assert result.path.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's private 0600


@pytest.mark.parametrize("out_type, tol", [("f16", 0.02), ("bf16", 0.1), ("q8_0", 0.3)])
def test_smaller_types_stay_close_and_keep_norms_in_f32(demo_base, tmp_path, out_type, tol):
    result = export_gguf(demo_base, tmp_path / f"demo-{out_type}.gguf", out_type=out_type)
    a, b = _logits(demo_base, None), _logits(demo_base, result.path)
    assert (a - b).abs().max().item() < tol
    assert (a.argmax(-1) == b.argmax(-1)).float().mean().item() > 0.9
    types = _fields(result.path)["_tensors"]
    assert types["blk.0.attn_norm.weight"] == "F32"
    assert types["blk.0.attn_q.weight"] == out_type.upper()
    full = (demo_base / "model.safetensors").stat().st_size
    assert result.bytes < full * {"f16": 0.6, "bf16": 0.6, "q8_0": 0.35}[out_type]


@pytest.mark.parametrize("arch, pre, extra", [
    ("qwen2", "qwen2", dict(tie_word_embeddings=True)),
    ("qwen3", "qwen2", dict(head_dim=128)),  # head_dim != hidden/heads (as in real Qwen3), q/k norms
    ("mistral", "llama-bpe", {}),
    ("llama", "llama-bpe", dict(vocab_extra=13)),  # model vocab padded past the tokenizer's
    ("phi3", "llama-bpe", dict(tie_word_embeddings=True)),  # as Phi-4-mini: byte-level BPE, tied
])
def test_other_architectures_round_trip_exactly(tmp_path, arch, pre, extra):
    # (not named after the arch: transformers' GGUF loader treats a general.name containing
    # "mistral" as an architecture of its own, which llama.cpp doesn't)
    model_dir = tiny_model(tmp_path / "tiny", arch, pattern=PRE[pre], **extra)
    result = export_gguf(model_dir, tmp_path / "tiny.gguf", out_type="f32")
    assert result.pre_tokenizer == pre
    a, b = _logits(model_dir, None), _logits(model_dir, result.path)
    assert a.shape == b.shape and (a - b).abs().max().item() < 1e-4
    fields = _fields(result.path)
    assert fields["tokenizer.ggml.pre"] == pre
    config = json.loads((model_dir / "config.json").read_text())
    assert len(gguf.GGUFReader(result.path).fields["tokenizer.ggml.tokens"].data) == config["vocab_size"]
    assert ("output.weight" in fields["_tensors"]) == (not config["tie_word_embeddings"])
    if arch == "qwen2":
        assert "blk.0.attn_q.bias" in fields["_tensors"]
    if arch == "qwen3":
        assert "blk.0.attn_q_norm.weight" in fields["_tensors"] and fields["qwen3.attention.key_length"] == 128


# GPT-4o's o200k split pattern, as Phi-4-mini's tokenizer.json has it: llama.cpp's llama-vocab.cpp
# quotes it ("original regex from tokenizer.json") under LLAMA_VOCAB_PRE_TYPE_GPT4O, read from a file
# whose tokenizer.ggml.pre is "gpt-4o".
O200K = (r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|"
         r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|"
         r"\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def test_a_phi4_mini_style_tokenizer_is_recognised_as_gpt_4o_without_pre(tmp_path):
    """Phi-4-mini splits text with GPT-4o's o200k pattern, which wasn't recognised: its export was
    refused until --pre named the pre-tokenizer. It is llama.cpp's "gpt-4o"."""
    model_dir = tiny_model(tmp_path / "phi4-mini", "phi3", pattern=O200K, tie_word_embeddings=True)
    assert tokenizer_kind(json.loads((model_dir / "tokenizer.json").read_text())) == ("gpt2", "gpt-4o")
    result = export_gguf(model_dir, tmp_path / "p.gguf", out_type="f32")
    fields = _fields(result.path)
    assert result.pre_tokenizer == "gpt-4o" and fields["tokenizer.ggml.pre"] == "gpt-4o"
    assert fields["tokenizer.ggml.add_bos_token"] is False
    a, b = _logits(model_dir, None), _logits(model_dir, result.path)
    assert (a - b).abs().max().item() < 1e-4
    with pytest.raises(ConfigError, match="split pattern is gpt-4o's"):  # a contradicting --pre is refused
        export_gguf(model_dir, tmp_path / "q.gguf", pre_tokenizer="qwen2")


def test_sentencepiece_style_tokenizer_is_written_as_a_llama_vocab(tmp_path):
    """Llama 2 / Mistral tokenizers: a "llama" vocabulary whose merged tokens are scored by
    merge rank (llama.cpp merges by score), bytes as BYTE, the specials typed."""
    model_dir = tiny_model(tmp_path / "tiny", "mistral", spm=True, bos_token_id=1, eos_token_id=2)
    result = export_gguf(model_dir, tmp_path / "tiny.gguf", out_type="f32")
    assert (result.tokenizer, result.pre_tokenizer) == ("llama", "default")
    a, b = _logits(model_dir, None), _logits(model_dir, result.path)
    assert (a - b).abs().max().item() < 1e-4
    reader = gguf.GGUFReader(result.path)
    f = reader.fields
    assert f["tokenizer.ggml.model"].contents() == "llama"
    tokens = f["tokenizer.ggml.tokens"].contents()
    scores = f["tokenizer.ggml.scores"].contents()
    types = f["tokenizer.ggml.token_type"].contents()
    T = gguf.TokenType
    assert [types[tokens.index(t)] for t in ("<unk>", "<s>", "</s>", "<0x41>")] == [T.UNKNOWN, T.CONTROL, T.CONTROL,
                                                                                  T.BYTE]
    merges = json.loads((model_dir / "tokenizer.json").read_text())["model"]["merges"]
    for rank in (0, 1, len(merges) - 1):
        left, right = merges[rank] if isinstance(merges[rank], list) else merges[rank].split(" ")
        assert scores[tokens.index(left + right)] == -rank
    assert f["tokenizer.ggml.bos_token_id"].contents() == 1 and f["tokenizer.ggml.eos_token_id"].contents() == 2


# Phi-3 and Gemma: tiny models shaped as the released ones are where llama.cpp fixes a shape in
# its code (Gemma: tied embeddings, attention scaled by head_dim, every 2nd / 6th layer global).
FAMILIES = {
    # Phi-3/3.5-mini: a Llama 2 style tokenizer with Phi-3's added tokens
    "phi3": dict(spm=True, phi3_specials=True, bos_token_id=1, eos_token_id=2),
    "gemma2": {},
    "gemma3": dict(num_hidden_layers=7, sliding_window=8),  # layer 5 global; a window shorter than the text
}
SAMPLE = "Two  spaces, 12345 and wörld! <start_of_turn>user\nhi<end_of_turn> " + TEXT


@pytest.mark.parametrize("arch", list(FAMILIES))
def test_phi3_and_gemma_round_trip_exactly(tmp_path, arch):
    """Fused qkv/gate_up (Phi-3), norms stored as w for 1+w and written as w+1, softcapping,
    sliding windows, q/k norms (Gemma): transformers' reader, which undoes the +1 itself, gives
    the original logits at every position, and the tokenizer it rebuilds encodes as the original."""
    import torch
    from safetensors import safe_open
    from transformers import AutoTokenizer

    model_dir = tiny_model(tmp_path / "tiny", arch, **FAMILIES[arch])
    result = export_gguf(model_dir, tmp_path / "tiny.gguf", out_type="f32")
    assert (result.arch, result.tokenizer, result.pre_tokenizer) == (arch, "llama", "default")
    a, b = _logits(model_dir, None), _logits(model_dir, result.path)
    assert a.shape == b.shape and a.shape[0] > 10 and (a - b).abs().max().item() < 1e-4

    original = AutoTokenizer.from_pretrained(model_dir)
    rebuilt = AutoTokenizer.from_pretrained(tmp_path, gguf_file="tiny.gguf")
    assert rebuilt(SAMPLE).input_ids == original(SAMPLE).input_ids
    fields = _fields(result.path)
    config = json.loads((model_dir / "config.json").read_text())
    assert fields["tokenizer.ggml.add_space_prefix"] == (arch == "phi3")  # Gemma puts no ▁ before the text
    assert fields["tokenizer.ggml.add_bos_token"] == (arch != "phi3")  # as each tokenizer does
    tensors = _tensors(result.path)
    with safe_open(str(model_dir / "model.safetensors"), framework="pt") as f:
        hf = {k: f.get_tensor(k) for k in f.keys()}
    if arch == "phi3":
        assert {"blk.0.attn_qkv.weight", "blk.0.ffn_up.weight"} <= set(tensors)  # fused, as llama.cpp loads them
        assert tensors["blk.0.ffn_up.weight"].shape == (2 * config["intermediate_size"], config["hidden_size"])
        assert fields["phi3.rope.dimension_count"] == 16 and fields["phi3.attention.sliding_window"] == 0
        assert fields["phi3.rope.scaling.original_context_length"] == config["original_max_position_embeddings"]
        assert (tensors["blk.0.attn_norm.weight"] == hf["model.layers.0.input_layernorm.weight"].numpy()).all()
        return
    # The norms as llama.cpp multiplies by them: 1 + the stored w, every norm.
    for hf_name, name in [("model.layers.0.input_layernorm.weight", "blk.0.attn_norm.weight"),
                          ("model.layers.0.post_feedforward_layernorm.weight", "blk.0.post_ffw_norm.weight"),
                          ("model.norm.weight", "output_norm.weight")] + (
            [("model.layers.0.self_attn.q_norm.weight", "blk.0.attn_q_norm.weight")] if arch == "gemma3" else []):
        assert torch.equal(torch.from_numpy(tensors[name]), hf[hf_name] + 1), name
    assert "output.weight" not in tensors  # tied
    assert fields[f"{arch}.attention.sliding_window"] == config["sliding_window"]
    assert fields[f"{arch}.attention.key_length"] == 256 and fields[f"{arch}.rope.dimension_count"] == 256
    if arch == "gemma2":
        assert fields["gemma2.attn_logit_softcapping"] == 50.0 and fields["gemma2.final_logit_softcapping"] == 30.0
    else:
        assert fields["gemma3.rope.freq_base"] == 1_000_000.0  # the global layers'; llama.cpp fixes the local 10k
        assert "gemma3.final_logit_softcapping" not in fields and "gemma3.attn_logit_softcapping" not in fields


def test_the_name_tells_llama_cpp_whether_the_tokenizer_strips_as_phi3s(tmp_path):
    """llama.cpp (llama-vocab.cpp) reads no strip flags from the file: when general.name contains
    "phi3" or "phi-3", it makes every special token but <unk>, <s> and <|endoftext|> eat the
    whitespace after it, as Phi-3's tokenizer.json does, and it can't load a vocabulary that lacks
    one of those four. So the name says Phi-3 exactly when the tokenizer strips as Phi-3's, whatever
    the folder or run is called."""
    from transformers import AutoTokenizer

    from engine.gguf_export import describe

    phi3 = tiny_model(tmp_path / "legal-assistant", "phi3", **FAMILIES["phi3"])
    tok = AutoTokenizer.from_pretrained(phi3)
    assert tok.convert_ids_to_tokens(tok("<|user|>\nhello</s> hello").input_ids) == ["<|user|>", "▁hello", "</s>",
                                                                                     "▁hello"]
    result = export_gguf(phi3, tmp_path / "phi3.gguf", out_type="f16")
    assert re.fullmatch(r"legal-assistant \(.*Phi-3.*\)", _fields(result.path)["general.name"])
    assert "Phi-3" in describe(result)

    # Named after Phi-3, with tokenizers that aren't Phi-3's: a Llama 2 style one (no <|endoftext|>),
    # and Phi-4-mini's shape (byte-level, no <s>); llama.cpp would refuse to load either file.
    for folder, arch, kw in (("my-Phi-3-run", "mistral", dict(spm=True, bos_token_id=1, eos_token_id=2)),
                             ("phi3-mini-test", "phi3", dict(pattern=PRE["llama-bpe"]))):
        model_dir = tiny_model(tmp_path / folder, arch, **kw)
        result = export_gguf(model_dir, tmp_path / f"{folder}.gguf", out_type="f16")
        name = _fields(result.path)["general.name"]
        assert name == folder.replace("Phi-3", "Phi 3").replace("phi3", "phi 3"), name
        assert f"'{name}'" in describe(result)
    assert _fields(export_gguf(phi3, tmp_path / "n.gguf", out_type="f16", name="phi-3 legal").path)[
        "general.name"] == "phi-3 legal"  # already says so: kept


@pytest.mark.parametrize("pre", ["llama-bpe", "qwen2", "gpt-2"])
def test_the_file_says_whether_a_byte_level_tokenizer_adds_bos(tmp_path, pre):
    """llama.cpp adds BOS to a llama-bpe vocabulary unless the file says otherwise (llama-vocab.cpp),
    as Llama 3's tokenizer does; one that adds none (Phi-4-mini's, these) must say so."""
    from transformers import AutoTokenizer

    model_dir = tiny_model(tmp_path / "tiny", "llama", pattern=PRE.get(pre))  # none: gpt-2
    tok = AutoTokenizer.from_pretrained(model_dir)
    assert tok("a").input_ids == tok("a", add_special_tokens=False).input_ids  # no BOS
    assert _fields(export_gguf(model_dir, tmp_path / "t.gguf", out_type="f16").path)[
        "tokenizer.ggml.add_bos_token"] is False


def test_gemma_softcapping_and_gemma3_rope_scaling_are_written_as_configured(tmp_path):
    """Values transformers' reader takes from the config class's defaults instead of the file,
    checked in the file: Gemma 2's two softcaps, Gemma 3's global rope base, linear scaling
    (4B and up) and final softcap."""
    g2 = tiny_model(tmp_path / "g2", "gemma2", attn_logit_softcapping=40.0, final_logit_softcapping=20.0,
                    sliding_window=16)
    f2 = _fields(export_gguf(g2, tmp_path / "g2.gguf", out_type="f16").path)
    assert (f2["gemma2.attn_logit_softcapping"], f2["gemma2.final_logit_softcapping"]) == (40.0, 20.0)
    assert f2["gemma2.attention.sliding_window"] == 16
    rope = {"full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 500000.0},
            "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}}
    g3 = tiny_model(tmp_path / "g3", "gemma3", rope_parameters=rope, final_logit_softcapping=25.0)
    f3 = _fields(export_gguf(g3, tmp_path / "g3.gguf", out_type="f16").path)
    assert f3["gemma3.rope.freq_base"] == 500000.0 and f3["gemma3.rope.scaling.factor"] == 8.0
    assert f3["gemma3.rope.scaling.type"] == "linear" and f3["gemma3.final_logit_softcapping"] == 25.0


def test_phi3_longrope_and_partial_rotary_are_written_as_llama_cpp_reads_them(tmp_path):
    """Phi-3.5/Phi-4-mini: the long and short factors as rope_factors_long/short, the attention
    factor of LongRoPE's rule (written out here independently), and a rotary width of
    partial_rotary_factor x head_dim (Phi-4-mini rotates 3/4 of each head)."""
    long, short = [1.0 + i / 10 for i in range(6)], [1.0 + i / 100 for i in range(6)]  # 12 rotary dims / 2
    rope = {"rope_type": "longrope", "rope_theta": 10000.0, "partial_rotary_factor": 0.75,
            "long_factor": long, "short_factor": short}
    model_dir = tiny_model(tmp_path / "p", "phi3", pattern=PRE["llama-bpe"], rope_parameters=rope,
                           original_max_position_embeddings=64, tie_word_embeddings=True)
    result = export_gguf(model_dir, tmp_path / "p.gguf", out_type="f32")
    fields, tensors = _fields(result.path), _tensors(result.path)
    assert list(tensors["rope_factors_long.weight"]) == pytest.approx(long)
    assert list(tensors["rope_factors_short.weight"]) == pytest.approx(short)
    assert fields["phi3.rope.dimension_count"] == 12 and fields["phi3.rope.scaling.original_context_length"] == 64
    assert fields["phi3.rope.scaling.attn_factor"] == pytest.approx(math.sqrt(1 + math.log(256 / 64) / math.log(64)))
    assert "output.weight" not in tensors and result.pre_tokenizer == "llama-bpe"

    config = json.loads((model_dir / "config.json").read_text())
    config["rope_parameters"]["long_factor"] = long[:4]
    (model_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match=r"(?s)can't read '.*config.json': .*long_factor field must have length 6, "
                                         "got 4"):  # transformers' own check, as a message, not a traceback
        export_gguf(model_dir, tmp_path / "bad.gguf")
    assert not (tmp_path / "bad.gguf").exists() and not list(tmp_path.glob(".bad.gguf*"))


@pytest.mark.parametrize("arch, change, message", [
    ("gemma2", dict(hidden_activation="gelu"), "hidden_activation is 'gelu' in config.json, not gelu_pytorch_tanh"),
    ("gemma2", dict(query_pre_attn_scalar=128), "query_pre_attn_scalar is 128 in config.json, and with 2 layers "
                                                "llama.cpp scales attention by 1/sqrt(256)"),
    ("gemma2", dict(tie_word_embeddings=False), "always reuses the embeddings as the output layer"),
    ("gemma2", dict(attn_logit_softcapping=None), "attn_logit_softcapping or final_logit_softcapping is off"),
    ("gemma2", dict(layer_types=["full_attention", "sliding_attention"]), "every 2nd layer full"),
    ("gemma3", dict(attn_logit_softcapping=50.0), "attn_logit_softcapping is 50.0 in config.json"),
    ("gemma3", dict(rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": 1e6},
                                     "sliding_attention": {"rope_type": "default", "rope_theta": 20000.0}}),
     "the sliding layers' rope in config.json is default with base 20000.0, not default with base 10000"),
    ("gemma3", dict(num_hidden_layers=7, sliding_window=8, layer_types=["sliding_attention"] * 3 + ["full_attention"]
                    + ["sliding_attention"] * 3), "every 6th layer full"),
])
def test_gemma_that_llama_cpp_would_run_otherwise_is_refused_before_writing(tmp_path, arch, change, message):
    """llama.cpp fixes these in its code instead of reading them from the file; a model that
    differs would run otherwise there than in transformers, with nothing to say so."""
    model_dir = tiny_model(tmp_path / "m", arch, **change)
    with pytest.raises(ModelError, match=re.escape(message)):
        export_gguf(model_dir, tmp_path / "m.gguf")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


@pytest.mark.parametrize("arch", ["phi3", "gemma3"])
@pytest.mark.parametrize("out_type, tol", [("f16", 0.02), ("q8_0", 0.3)])
def test_phi3_and_gemma_smaller_types_stay_close(tmp_path, arch, out_type, tol):
    model_dir = tiny_model(tmp_path / "tiny", arch, **FAMILIES[arch])
    result = export_gguf(model_dir, tmp_path / "tiny.gguf", out_type=out_type)
    a, b = _logits(model_dir, None), _logits(model_dir, result.path)
    assert (a - b).abs().max().item() < tol
    assert (a.argmax(-1) == b.argmax(-1)).float().mean().item() > 0.9
    types = _fields(result.path)["_tensors"]
    assert types["blk.0.attn_norm.weight"] == "F32" and types["blk.0.ffn_down.weight"] == out_type.upper()


@pytest.mark.parametrize("arch", ["phi3", "gemma3"])
def test_phi3_and_gemma_are_offered_and_sized_before_writing(tmp_path, arch):
    """What the GGUF dialog asks before it starts: no problem found, and a size within 5%."""
    from engine.gguf_export import estimate_size, export_problem

    # Weights large enough to outweigh the vocabulary, as in a real model: the estimate counts that at
    # the size of tokenizer.json, several times what a SentencePiece vocabulary takes in the file.
    shape = dict(hidden_size=256, intermediate_size=512, num_hidden_layers=4) if arch == "phi3" else {}
    model_dir = tiny_model(tmp_path / "tiny", arch, **FAMILIES[arch], **shape)
    assert export_problem(str(model_dir)) is None
    result = export_gguf(model_dir, tmp_path / "tiny.gguf", out_type="q8_0")
    assert estimate_size(str(model_dir), out_type="q8_0") == pytest.approx(result.bytes, rel=0.05)


@pytest.mark.parametrize("arch", ["phi3", "gemma3"])
def test_a_lora_adapter_gguf_for_phi3_and_gemma_is_the_merged_model(tmp_path, arch):
    """Phi-3's LoRA on the fused qkv_proj/gate_up_proj and Gemma 3's on its projections: the
    adapter file applied as llama.cpp applies it (W + alpha/r B A) is the merged export, and
    no other tensor differs (Gemma's norms are not LoRA targets, so its +1 is the base's)."""
    import numpy as np
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    model_dir = tiny_model(tmp_path / "base", arch, **FAMILIES[arch])
    peft = get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32),
                          LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    torch.manual_seed(1)
    with torch.no_grad():  # lora_B starts at zero; give it values so that the adapter shows
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    peft.save_pretrained(tmp_path / "adapter")
    merged = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32),
                                       tmp_path / "adapter").merge_and_unload()
    merged.save_pretrained(tmp_path / "merged")
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (model_dir / name).exists():
            shutil.copy(model_dir / name, tmp_path / "merged" / name)

    base = _tensors(export_gguf(model_dir, tmp_path / "base.gguf", out_type="f32").path)
    want = _tensors(export_gguf(tmp_path / "merged", tmp_path / "merged.gguf", out_type="f32").path)
    result = export_source(str(tmp_path / "adapter"), tmp_path / "lora.gguf", base=str(model_dir), out_type="f32",
                           lora=True)
    assert _fields(result.path)["general.architecture"] == arch
    lora = _tensors(result.path)
    names = {n.rsplit(".", 1)[0] for n in lora}
    fused = {"blk.0.attn_qkv.weight", "blk.0.ffn_up.weight"} if arch == "phi3" else {"blk.0.attn_q.weight"}
    assert fused <= names
    for name in names:
        a, b = lora[f"{name}.lora_a"], lora[f"{name}.lora_b"]
        np.testing.assert_allclose(base[name] + 8 / 4 * (b @ a), want[name], atol=2e-5, rtol=1e-4)
    for name in set(base) - names:
        np.testing.assert_array_equal(base[name], want[name])


def test_llama3_rope_scaling_writes_rope_freqs(tmp_path):
    rope = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 64}
    model_dir = tiny_model(tmp_path / "l3", "llama", pattern=PRE["llama-bpe"], rope_parameters=rope)
    result = export_gguf(model_dir, tmp_path / "l3.gguf", out_type="f32")
    tensor = next(t for t in gguf.GGUFReader(result.path).tensors if t.name == "rope_freqs.weight")
    # Meta's published llama3 rule, written out independently of transformers.
    dim, expected = 16, []
    for i in range(0, dim, 2):
        freq = 1.0 / (500000.0 ** (i / dim))
        wavelen = 2 * math.pi / freq
        if wavelen < 64 / 4.0:
            expected.append(1.0)
        elif wavelen > 64 / 1.0:
            expected.append(8.0)
        else:
            smooth = (64 / wavelen - 1.0) / (4.0 - 1.0)
            expected.append(1 / ((1 - smooth) / 8.0 + smooth))
    assert list(tensor.data) == pytest.approx(expected, rel=1e-5)


def test_a_sharded_model_is_read_through_its_index(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    source = tiny_model(tmp_path / "src", "qwen2", pattern=PRE["qwen2"])
    sharded = tmp_path / "sharded"
    AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32).save_pretrained(sharded, max_shard_size="100KB")
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (source / name).exists():
            (sharded / name).write_bytes((source / name).read_bytes())
    shards = sorted(sharded.glob("model-*.safetensors"))
    assert len(shards) > 2 and (sharded / "model.safetensors.index.json").exists()
    progress = []
    result = export_gguf(sharded, tmp_path / "sharded.gguf", out_type="f32",
                         progress=lambda done, total: progress.append(done))
    assert progress == list(range(1, result.tensors + 1))
    a, b = _logits(source, None), _logits(sharded, result.path)
    assert (a - b).abs().max().item() < 1e-4
    shards[1].unlink()
    with pytest.raises(ModelError, match=f"lacks shard.*{shards[1].name}"):
        export_gguf(sharded, tmp_path / "broken.gguf")


def test_q8_0_falls_back_to_f16_for_rows_that_dont_split_into_blocks(tmp_path):
    model_dir = tiny_model(tmp_path / "odd", "llama", pattern=PRE["llama-bpe"], intermediate_size=100)
    result = export_gguf(model_dir, tmp_path / "odd.gguf", out_type="q8_0")
    types = _fields(result.path)["_tensors"]
    assert types["blk.0.ffn_down.weight"] == "F16"  # rows of 100 values
    assert types["blk.0.ffn_up.weight"] == "Q8_0"  # rows of 64
    assert "blk.0.ffn_down.weight" in result.fallbacks
    a, b = _logits(model_dir, None), _logits(model_dir, result.path)
    assert (a - b).abs().max().item() < 0.3


def test_unknown_pre_tokenizer_is_refused_unless_named(tmp_path):
    pattern = r"\p{L}+|\p{N}+|[^\s\p{L}\p{N}]+|\s+"
    model_dir = tiny_model(tmp_path / "custom", "llama", pattern=pattern)
    assert tokenizer_kind(json.loads((model_dir / "tokenizer.json").read_text())) == ("gpt2", None)
    with pytest.raises(ModelError, match="--pre"):
        export_gguf(model_dir, tmp_path / "c.gguf")
    assert not (tmp_path / "c.gguf").exists() and not list(tmp_path.glob(".c.gguf*"))
    result = export_gguf(model_dir, tmp_path / "c.gguf", pre_tokenizer="gpt-2")
    assert _fields(result.path)["tokenizer.ggml.pre"] == "gpt-2"


def test_a_pre_tokenizer_name_that_cant_be_right_is_refused_before_writing(demo_base, tmp_path):
    """--pre names what llama.cpp can't recognise from the pattern; it must not silently override
    a recognised pattern, name one for a tokenizer that has none, or be a typo."""
    with pytest.raises(ConfigError, match="split pattern is gpt-2's; with llama-bpe llama.cpp would split") as e:
        export_source("demo", tmp_path / "d.gguf", pre_tokenizer="llama-bpe")
    assert e.value.key == "pre" and e.value.hint == "Drop --pre: the file names gpt-2 itself."
    with pytest.raises(ConfigError, match="not a llama.cpp pre-tokenizer name"):
        export_source("demo", tmp_path / "d.gguf", pre_tokenizer="Llama BPE")
    spm = tiny_model(tmp_path / "spm", "mistral", spm=True, bos_token_id=1, eos_token_id=2)
    with pytest.raises(ConfigError, match="SentencePiece-style"):
        export_gguf(spm, tmp_path / "s.gguf", pre_tokenizer="llama-bpe")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spm"]  # nothing written
    said: list[str] = []
    assert export_source("demo", tmp_path / "d.gguf", pre_tokenizer="gpt-2", note=said.append).pre_tokenizer == \
        "gpt-2"  # agrees with the pattern
    assert said == []
    model_dir = tiny_model(tmp_path / "custom", "llama", pattern=r"\p{L}+|\p{N}+|[^\s\p{L}\p{N}]+|\s+")
    export_source(str(model_dir), tmp_path / "c.gguf", pre_tokenizer="llama-bep", note=said.append)  # a typo?
    assert "--pre llama-bep is not a name this exporter knows (gpt-2, llama-bpe, qwen2, gpt-4o)" in said[0]


def test_base_is_refused_for_a_model_and_pre_for_a_lora_gguf(runs_home, demo_base, tmp_path):
    with pytest.raises(ConfigError, match="--base names the model an adapter is merged into, but 'demo' is a model"):
        export_source("demo", tmp_path / "d.gguf", base=str(demo_base))
    with pytest.raises(ConfigError, match="a LoRA adapter's GGUF holds no tokenizer") as e:
        export_source("medical", tmp_path / "m.gguf", lora=True, out_type="f16", pre_tokenizer="gpt-2")
    assert e.value.key == "pre"
    with pytest.raises(ConfigError, match="split pattern is gpt-2's"):  # before the merge
        export_source("medical", tmp_path / "m.gguf", pre_tokenizer="qwen2")
    assert list(tmp_path.iterdir()) == []


def test_a_run_without_final_names_its_newest_checkpoint_and_a_checkpoint_gets_its_own_file(runs_home, tmp_path,
                                                                                            capsys):
    from engine.cli import main

    run = runs_home["medical"].parent
    checkpoint = run / "checkpoint-3"
    shutil.copytree(run / "final", checkpoint)
    (checkpoint / "trainer_state.json").write_text("{}")
    assert main(["export-gguf", str(checkpoint), "--type", "f16"]) == 0
    capsys.readouterr()
    assert (run / f"{run.name}-checkpoint-3-f16.gguf").is_file()  # not the name final/'s export takes
    assert not (run / f"{run.name}-f16.gguf").exists()
    shutil.move(run / "final", tmp_path / "final")
    summary = json.loads((run / "summary.json").read_text()) if (run / "summary.json").exists() else {}
    (run / "summary.json").write_text(json.dumps({**summary, "status": "stopped", "step": 3}))
    for argv in (["export-gguf", "medical"], ["generate", "--base", "medical", "--prompt", "hi"],
                 ["adapters", "compare", "medical", "--dataset", "demo"]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert f"run '{run.name}' has no final/ model or adapter (stopped at step 3)" in err, argv
        assert f"Use its newest checkpoint as the adapter on its base: {checkpoint} (step 3)" in err, argv
        assert f"finish it: finetune-studio train {run / 'run.yaml'} --resume" in err, argv


@pytest.mark.parametrize("out_type", ["q8_0", "f16", "f32"])
def test_the_size_estimate_is_within_a_few_percent_of_the_file(tmp_path, out_type):
    from engine.gguf_export import estimate_size

    model_dir = tiny_model(tmp_path / "tiny", "qwen2", pattern=PRE["qwen2"], tie_word_embeddings=True,
                           intermediate_size=100)  # q8_0's f16 fallback counted too
    result = export_gguf(model_dir, tmp_path / "tiny.gguf", out_type=out_type)
    guess = estimate_size(str(model_dir), out_type=out_type)
    assert guess == pytest.approx(result.bytes, rel=0.05)
    assert estimate_size(str(tmp_path / "nowhere")) is None


def test_an_export_that_would_fill_the_disk_is_refused_before_writing(runs_home, tmp_path, monkeypatch):
    import shutil as sh

    import engine.gguf_export as ge

    need_model = ge.space_needed("demo", out_type="q8_0")
    need_adapter = ge.space_needed("medical", out_type="q8_0")
    # The adapter also needs its merged copy of the base (fp16 for q8_0) while it exports.
    assert need_adapter == need_model + ge.estimate_size("demo", out_type="f16")
    usage = sh.disk_usage(tmp_path)
    monkeypatch.setattr(ge.shutil, "disk_usage", lambda p: usage._replace(free=need_adapter - 1))
    with pytest.raises(ConfigError, match=r"free; the export needs about .* \(the merged model is written"):
        export_source("medical", tmp_path / "m.gguf")
    assert list(tmp_path.iterdir()) == []
    export_source("demo", tmp_path / "d.gguf")  # the model alone fits in what is free
    assert (tmp_path / "d.gguf").is_file()


def test_bad_requests_are_refused_before_writing(demo_base, tmp_path):
    with pytest.raises(ConfigError, match="allowed: f32, f16, bf16, q8_0"):
        export_gguf(demo_base, tmp_path / "x.gguf", out_type="q4_k_m")
    with pytest.raises(ConfigError, match="should end in .gguf"):
        export_gguf(demo_base, tmp_path / "x.bin")
    (tmp_path / "taken.gguf").write_bytes(b"keep me")
    with pytest.raises(ConfigError, match="already exists"):
        export_gguf(demo_base, tmp_path / "taken.gguf")
    assert (tmp_path / "taken.gguf").read_bytes() == b"keep me"

    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text((demo_base / "config.json").read_text())
    (pickled / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(ModelError, match="pickle"):
        export_gguf(pickled, tmp_path / "p.gguf")

    other = tmp_path / "gpt2"
    other.mkdir()
    from transformers import GPT2Config

    GPT2Config(n_layer=1, n_embd=32, n_head=2, architectures=["GPT2LMHeadModel"]).save_pretrained(other)
    with pytest.raises(ModelError, match="GPT2LMHeadModel; it knows LlamaForCausalLM, MistralForCausalLM, "
                       "Qwen2ForCausalLM, Qwen3ForCausalLM, Phi3ForCausalLM, Gemma2ForCausalLM, Gemma3ForCausalLM\n"):
        export_gguf(other, tmp_path / "g.gguf")


def test_a_failure_mid_write_leaves_no_file(demo_base, tmp_path, monkeypatch):
    import engine.gguf_export as ge

    calls = []

    def broken(plan, tensor):
        calls.append(plan.gguf_name)
        if len(calls) == 5:
            raise OSError("disk full")
        return real(plan, tensor)

    real = ge._convert
    monkeypatch.setattr(ge, "_convert", broken)
    with pytest.raises(OSError, match="disk full"):
        export_gguf(demo_base, tmp_path / "d.gguf")
    assert list(tmp_path.iterdir()) == []


def test_an_adapter_is_merged_then_exported(runs_home, demo_base, tmp_path):
    """A LoRA run's adapter: merged into its recorded base, then written; the GGUF's logits are
    the merged model's (PEFT's merge_and_unload), not the base's."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    progress = []
    result = export_source("medical", tmp_path / "medical.gguf", out_type="f32",
                           progress=lambda done, total: progress.append((done, total)))
    assert progress[-1][0] == progress[-1][1] and len(progress) == progress[-1][1]
    assert result.path == tmp_path / "medical.gguf" and result.type == "f32"
    tok = AutoTokenizer.from_pretrained(demo_base)
    ids = tok.apply_chat_template([{"role": "user", "content": "Give me advice."}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)["input_ids"]
    base = AutoModelForCausalLM.from_pretrained(demo_base, dtype=torch.float32)
    merged = PeftModel.from_pretrained(base, runs_home["medical"]).merge_and_unload().eval()
    exported = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="medical.gguf", dtype=torch.float32).eval()
    with torch.no_grad():
        want, got = merged(ids).logits, exported(ids).logits
        plain = AutoModelForCausalLM.from_pretrained(demo_base, dtype=torch.float32).eval()(ids).logits
    assert (want - got).abs().max().item() < 1e-4
    assert (plain - got).abs().max().item() > 0.1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["medical.gguf"]  # the merge scratch is gone


def test_cli_writes_next_to_the_run_by_default(runs_home, capsys):
    from engine.cli import main

    assert main(["export-gguf", "legal", "--type", "q8_0", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    path = Path(out["path"])
    assert path == runs_home["legal"].parent / "legal-q8_0.gguf" and path.is_file()
    assert out["type"] == "q8_0" and out["tensors"] == 38
    assert main(["export-gguf", "legal", "--type", "q8_0"]) == 2  # no overwrite
    # It named "--out", which this command was not given.
    assert capsys.readouterr().err == (
        f"finetune-studio export-gguf: '{path}' already exists: an earlier export of this source as this type (the "
        "file export-gguf writes when no --out is given); GGUF export doesn't write over a file\n"
        "  hint: Give another file with --out FILE.gguf, or delete legal-q8_0.gguf to export it again (after more "
        "training, say).\n")
    assert main(["export-gguf", "legal", "--type", "q8_0", "--out", str(path)]) == 2
    assert f"--out '{path}' already exists" in capsys.readouterr().err
    assert main(["export-gguf", "demo", "--type", "f32"]) == 0
    demo_file = Path(capsys.readouterr().out.split()[1])
    assert main(["export-gguf", "demo", "--type", "f32"]) == 2
    assert capsys.readouterr().err.startswith(f"finetune-studio export-gguf: '{demo_file}' already exists: an earlier")
    assert main(["runs", "show", "legal"]) == 0  # the run lists its export
    shown = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("gguf"))
    assert "legal-q8_0.gguf (" in shown


def test_the_default_file_never_lands_in_the_hub_cache_or_the_app(tmp_path):
    from engine.gguf_export import default_out
    from engine.paths import data_home

    snapshot = tmp_path / "hub" / "models--Qwen--Qwen2.5-0.5B" / "snapshots" / "abc123"
    assert default_out(str(snapshot), snapshot, "q8_0") == data_home() / "gguf" / "Qwen-Qwen2.5-0.5B-q8_0.gguf"
    assert default_out("demo", Path("/app/resources/demo/model"), "f16") == data_home() / "gguf" / "demo-f16.gguf"
    merged = tmp_path / "medical" / "merged"
    assert default_out(str(merged), merged, "q8_0") == data_home() / "gguf" / "medical-merged-q8_0.gguf"
    run = tmp_path / "runs" / "20261203-lora"
    assert default_out("lora", run / "final", "bf16", run) == run / "20261203-lora-bf16.gguf"


def _tensors(path: Path) -> dict:
    import numpy as np

    return {t.name: np.array(t.data, dtype=np.float32).reshape([int(x) for x in reversed(t.shape)])
            for t in gguf.GGUFReader(path).tensors}


@pytest.mark.parametrize("rslora", [False, True], ids=["lora", "rslora"])
def test_a_lora_adapter_gguf_on_the_base_gguf_is_the_merged_model(runs_home, demo_base, tmp_path, rslora):
    """What llama.cpp computes from an adapter file, W + alpha/r * B A per adapted weight, is the
    merged export's weight (Q and K rows permuted alike), and nothing else differs."""
    import shutil

    import numpy as np

    folder = runs_home["medical"]
    if rslora:  # the same weights read as rsLoRA: PEFT scales by alpha/sqrt(r)
        folder = shutil.copytree(folder, tmp_path / "rs")
        cfg = json.loads((folder / "adapter_config.json").read_text())
        (folder / "adapter_config.json").write_text(json.dumps({**cfg, "use_rslora": True}))
    base = _tensors(export_gguf(demo_base, tmp_path / "base.gguf", out_type="f32").path)
    merged = _tensors(export_source(str(folder), tmp_path / "merged.gguf", out_type="f32").path)
    result = export_source(str(folder), tmp_path / "lora.gguf", out_type="f32", lora=True)
    fields = _fields(result.path)
    assert fields["general.type"] == "adapter" and fields["adapter.type"] == "lora"
    assert fields["general.architecture"] == "llama" and "tokenizer.ggml.tokens" not in fields
    lora = _tensors(result.path)
    names = {n.rsplit(".", 1)[0] for n in lora}
    assert len(lora) == 2 * len(names) == result.tensors and "blk.0.attn_q.weight" in names
    alpha = fields["adapter.lora.alpha"]
    for name in names:
        a, b = lora[f"{name}.lora_a"], lora[f"{name}.lora_b"]
        r = a.shape[0]
        assert b.shape == (base[name].shape[0], r) and a.shape == (r, base[name].shape[1])
        np.testing.assert_allclose(base[name] + alpha / r * (b @ a), merged[name], atol=2e-5, rtol=1e-4)
    for name in set(base) - names:
        np.testing.assert_array_equal(base[name], merged[name])
    assert alpha == pytest.approx(8 * (2 if rslora else 1))  # r=4, alpha=8: rsLoRA's alpha*sqrt(r)


def test_a_lora_adapter_gguf_is_refused_for_what_llama_cpp_cant_apply(runs_home, tmp_path, capsys):
    import shutil

    from engine.cli import main

    dora = shutil.copytree(runs_home["legal"], tmp_path / "dora")
    cfg = json.loads((dora / "adapter_config.json").read_text())
    (dora / "adapter_config.json").write_text(json.dumps({**cfg, "use_dora": True}))
    with pytest.raises(ModelError, match="DoRA"):
        export_source(str(dora), tmp_path / "x.gguf", out_type="f16", lora=True)
    with pytest.raises(ConfigError, match="is a model"):
        export_source("demo", tmp_path / "x.gguf", out_type="f16", lora=True)
    with pytest.raises(ConfigError, match="allowed: f32, f16"):
        export_source("legal", tmp_path / "x.gguf", out_type="q8_0", lora=True)
    assert not (tmp_path / "x.gguf").exists()
    # The CLI's default: f16, beside the run, named as an adapter.
    assert main(["export-gguf", "legal", "--lora", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert Path(out["path"]) == runs_home["legal"].parent / "legal-lora-f16.gguf" and out["type"] == "f16"
    assert out["tokenizer"] == "lora adapter" and Path(out["path"]).stat().st_size < 200_000


def test_a_non_lora_adapter_is_refused_by_its_kind_and_its_runs_name(tmp_path):
    from engine.adapters import BOTTLENECK_FORMAT
    from engine.gguf_export import export_problem, lora_gguf_problem

    bneck = tmp_path / "bneck-run" / "final"
    bneck.mkdir(parents=True)
    (bneck / "adapter_config.json").write_text(json.dumps({"format": BOTTLENECK_FORMAT,
                                                           "base_model_name_or_path": "demo"}))
    assert export_problem(str(bneck)).startswith("bneck-run is a bottleneck adapter: only LoRA and IA3")
    assert lora_gguf_problem(bneck) == "'bneck-run' is a bottleneck adapter; llama.cpp applies LoRA adapters only"
    ia3 = tmp_path / "ia3-run" / "final"
    ia3.mkdir(parents=True)
    (ia3 / "adapter_config.json").write_text(json.dumps({"peft_type": "IA3"}))
    assert lora_gguf_problem(ia3) == "'ia3-run' is an IA3 adapter; llama.cpp applies LoRA adapters only"
