"""The memory estimate: exact parameter counts, the activation model against autograd,
the H100 calibration table, monotonicity, the fit verdict, suggestions, run history and
the ``estimate`` CLI."""

from __future__ import annotations

import argparse
import io
import json
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from engine.config import RunConfig
from engine.errors import ConfigError
from engine.memory import (
    BREAKDOWN_KEYS,
    Setup,
    cli_estimate,
    estimate,
    max_batch_size,
    measured_peaks,
    model_structure,
    peak_breakdown,
    peak_bytes,
    verdict,
)
from engine.memory.activations import LayerPlan, Numerics, layer_activations

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "bench" / "model_configs"
GIB = 1 << 30
ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _tiny_config(tied: bool) -> dict:
    return {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 512,
            "hidden_size": 128, "intermediate_size": 352, "num_hidden_layers": 2, "num_attention_heads": 4,
            "num_key_value_heads": 2, "head_dim": 32, "max_position_embeddings": 512, "rms_norm_eps": 1e-6,
            "tie_word_embeddings": tied, "attention_bias": False, "mlp_bias": False, "hidden_act": "silu"}


@pytest.fixture(scope="module", params=[False, True], ids=["untied", "tied"])
def tiny_dir(request, tmp_path_factory) -> Path:
    """A config-only tiny Llama (no weights: the estimate reads config.json alone)."""
    d = tmp_path_factory.mktemp("tiny-llama")
    (d / "config.json").write_text(json.dumps(_tiny_config(request.param)), encoding="utf-8")
    return d


@pytest.fixture(scope="module")
def untied_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("tiny-llama-untied")
    (d / "config.json").write_text(json.dumps(_tiny_config(False)), encoding="utf-8")
    return d


def _cfg(model: Path | str, **kw) -> RunConfig:
    return RunConfig.from_dict({"model": str(model), **kw})


def _real_model(model_dir: Path, dtype=None, attn: str = "sdpa"):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    conf = AutoConfig.from_pretrained(str(model_dir))
    return AutoModelForCausalLM.from_config(conf, dtype=dtype or torch.float32, attn_implementation=attn)


def _count(model) -> tuple[int, int]:
    """The independent count: PEFT's own for PEFT models, unique parameters otherwise."""
    if hasattr(model, "get_nb_trainable_parameters"):
        return model.get_nb_trainable_parameters()
    seen, trainable, total = set(), 0, 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return trainable, total


# ---------------------------------------------------------------- Parameter counts
METHOD_CASES = {
    "full": dict(method="full"),
    "freeze": dict(method="freeze", freeze_trainable_layers=1, freeze_extra_modules=["norm"]),
    "lora-qv": dict(method="lora", lora_r=8),
    "lora-all": dict(method="lora", lora_r=4, lora_target_modules="all-linear"),
    "dora": dict(method="lora", lora_r=4, lora_target_modules=["q_proj", "down_proj"], use_dora=True),
    "ia3": dict(method="ia3"),
    "prefix": dict(method="prefix", num_virtual_tokens=7),
    "prefix-mlp": dict(method="prefix", num_virtual_tokens=5, prefix_projection=True),
    "prompt": dict(method="prompt", num_virtual_tokens=9),
    "adapter-pfeiffer": dict(method="adapter", adapter_reduction_factor=16),
    "adapter-houlsby": dict(method="adapter", adapter_reduction_factor=8, adapter_style="houlsby"),
}


@pytest.mark.parametrize("case", list(METHOD_CASES))
def test_counts_match_the_method_applied_to_a_real_model(tiny_dir, case):
    from engine.methods import get_method

    cfg = _cfg(tiny_dir, **METHOD_CASES[case])
    st = model_structure(cfg)
    real = get_method(cfg.method).apply(_real_model(tiny_dir), cfg)
    assert (st.trainable_at(cfg.lora_r), st.total_at(cfg.lora_r)) == _count(real)


@pytest.mark.parametrize("case", list(METHOD_CASES))
def test_the_methods_weights_are_built_on_the_meta_device_too(tiny_dir, case, monkeypatch):
    """The estimate reads shapes only: a method's new weights (a 7B prefix MLP is 4 GB, a rank-256
    all-linear LoRA 2.5 GB) must not be allocated and initialised on the CPU at every change
    (PEFT moves them to the base's meta device afterwards, so only the ops show it)."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    import engine.memory.structure as structure

    made: list[tuple] = []

    class Watch(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            made.extend((str(func), t.device.type, t.numel()) for t in tree_leaves(out)
                        if isinstance(t, torch.Tensor) and t.device.type != "meta" and t.numel() > 64)
            return out

    real_apply = structure.apply_method

    def watched(model, cfg):
        with Watch():
            return real_apply(model, cfg)

    monkeypatch.setattr(structure, "apply_method", watched)
    structure.clear_cache()
    model_structure(_cfg(tiny_dir, **METHOD_CASES[case]))
    assert made == []


def test_lora_rank_scales_the_count_exactly(untied_dir):
    from engine.methods import get_method

    st = model_structure(_cfg(untied_dir, method="lora", lora_r=8, lora_target_modules="all-linear"))
    for r in (1, 3, 16, 64):
        cfg = _cfg(untied_dir, method="lora", lora_r=r, lora_target_modules="all-linear")
        assert model_structure(cfg) is st  # the rank isn't part of the cache key
        real = get_method("lora").apply(_real_model(untied_dir), cfg)
        assert (st.trainable_at(r), st.total_at(r)) == _count(real)


def test_bottleneck_adapter_count_is_2hm_h_m_per_adapter(untied_dir):
    h, layers = 128, 2
    for style, per_layer, factor in (("pfeiffer", 1, 16), ("houlsby", 2, 8)):
        st = model_structure(_cfg(untied_dir, method="adapter", adapter_style=style,
                                  adapter_reduction_factor=factor))
        m = h // factor
        assert st.trainable_params == layers * per_layer * (2 * h * m + h + m)


def test_tied_embeddings_count_once(tiny_dir):
    st = model_structure(_cfg(tiny_dir, method="full"))
    conf = _tiny_config(st.tied)
    v, h, i, n = conf["vocab_size"], conf["hidden_size"], conf["intermediate_size"], conf["num_hidden_layers"]
    layer = h * 128 + 2 * h * 64 + 128 * h + 3 * h * i + 2 * h
    assert st.total_params == n * layer + v * h * (1 if st.tied else 2) + h


def test_llama2_7b_lora_qv_r8_count_from_public_config():
    st = model_structure(_cfg(CONFIGS / "llama2-7b", method="lora", lora_r=8,
                              lora_target_modules=["q_proj", "v_proj"]))
    assert (st.trainable_params, st.total_params) == (4_194_304, 6_742_609_920)


# ---------------------------------------------------------------- Activations vs autograd
def _saved_per_layer(model, ids, autocast: bool) -> list[int]:
    """Bytes autograd keeps per decoder layer (parameters and weight-shaped copies excluded)."""
    import torch

    from engine.methods.freeze import decoder_layers

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    _, layers = decoder_layers(base)
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    weight_shapes = {tuple(p.shape) for p in model.parameters() if p.dim() == 2}
    weight_shapes |= {s[::-1] for s in weight_shapes}
    where = {"layer": None}
    saved: dict[int, tuple] = {}
    handles = []
    for i, layer in enumerate(layers):
        handles.append(layer.register_forward_pre_hook(lambda m, a, i=i: where.update(layer=i)))
        handles.append(layer.register_forward_hook(lambda m, a, o: where.update(layer=None)))

    def pack(t):
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in params and where["layer"] is not None and tuple(t.shape) not in weight_shapes:
            saved.setdefault(ptr, (where["layer"], storage.nbytes()))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        if autocast:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                model(input_ids=ids, labels=ids)
        else:
            model(input_ids=ids, labels=ids)
    for h in handles:
        h.remove()
    out = [0] * len(layers)
    for layer, n in saved.values():
        out[layer] += n
    return out


ACT_CASES = {
    "full bf16 autocast": (dict(method="full", load_in="bf16"), "bf16", True, "sdpa"),
    "full fp32 autocast": (dict(method="full", load_in="fp32"), "fp32", True, "sdpa"),
    "full fp32": (dict(method="full", load_in="fp32", mixed_precision="no"), "fp32", False, "sdpa"),
    "lora bf16 autocast": (dict(method="lora", lora_dropout=0.0), "bf16", True, "sdpa"),
    "lora all-linear bf16 no autocast": (dict(method="lora", lora_target_modules="all-linear", lora_dropout=0.1,
                                              mixed_precision="no"), "bf16", False, "sdpa"),
    "ia3 bf16": (dict(method="ia3"), "bf16", True, "sdpa"),
    "prompt bf16": (dict(method="prompt", num_virtual_tokens=8), "bf16", True, "sdpa"),
    "freeze top 1": (dict(method="freeze", freeze_trainable_layers=1), "bf16", True, "sdpa"),
    "adapter houlsby": (dict(method="adapter", adapter_style="houlsby"), "bf16", True, "sdpa"),
    "full bf16 eager": (dict(method="full", load_in="bf16"), "bf16", True, "eager"),
    "lora bf16 eager": (dict(method="lora", lora_dropout=0.0), "bf16", True, "eager"),
}


@pytest.mark.parametrize("case", list(ACT_CASES))
def test_activation_model_matches_autograd_saved_tensors(untied_dir, case):
    """The symbolic block replay vs what autograd really saves, per layer (CPU, b=2, s=48)."""
    import torch

    from engine.methods import get_method

    overrides, dtype, autocast, attn = ACT_CASES[case]
    cfg = _cfg(untied_dir, attn_implementation=attn, **overrides)
    model = get_method(cfg.method).apply(
        _real_model(untied_dir, torch.bfloat16 if dtype == "bf16" else torch.float32, attn), cfg)
    model.train()
    b, s = 2, 48  # b*s must differ from every weight dimension (weight-shaped tensors are skipped)
    ids = torch.randint(0, 512, (b, s), generator=torch.Generator().manual_seed(0))
    measured = _saved_per_layer(model, ids, autocast)

    st = model_structure(cfg)
    setup = Setup.from_config(cfg)
    load_b = 2 if dtype == "bf16" else 4
    # CPU: dropout keeps its noise in the input's dtype, not a bool mask.
    num = Numerics(autocast=2 if autocast else 0, weight_bytes=load_b, linear_kind="dense", compute_bytes=2,
                   embed_bytes=load_b, mask_bytes=0)
    res, rg = load_b, st.embed_trainable or st.virtual_tokens > 0
    positions = s + st.virtual_tokens
    for i in range(st.n_layers):
        plan = LayerPlan(trainable=i >= st.n_layers - st.trainable_layers, input_requires_grad=rg,
                         lora=st.lora_modules, lora_rank=cfg.lora_r, lora_dropout=cfg.lora_dropout > 0,
                         dora=st.dora, ia3=st.ia3_modules, adapters=st.adapters_per_layer,
                         adapter_size=st.adapter_size, masked=False, eager=attn == "eager", seq=positions)
        r = layer_activations(st, num, plan, res)
        predicted = r.saved * b * positions
        # rotary cos/sin (b x s x head_dim) are shared by all layers and land in layer 0.
        assert predicted == pytest.approx(measured[i], rel=0.04, abs=16 * 1024), (case, i, measured)
        res, rg = r.output_bytes, r.output_requires_grad
    assert setup.autocast_bytes == (2 if autocast else 0)


# Tiny configs of the families people fine-tune, each in its transformers class: the block
# replay must follow their norms (Gemma's and OLMo2's fp32 weight multiply, Cohere's Python
# LayerNorm, nn.LayerNorm), q/k norms (Qwen3, OLMo2, Gemma 3), layouts (Gemma's sandwich,
# OLMo2's post-norm, Phi/GPT-NeoX/Cohere's parallel block), fused projections (Phi-3,
# GPT-NeoX), Gemma 2's soft-capped eager attention and routed experts (Qwen2-MoE, Mixtral,
# where PEFT's all-linear also wraps the 3D expert weights).
ARCH_COMMON = dict(vocab_size=512, hidden_size=128, intermediate_size=352, num_hidden_layers=2,
                   num_attention_heads=4, num_key_value_heads=2, head_dim=32, max_position_embeddings=512,
                   tie_word_embeddings=False, pad_token_id=0)
ARCHS = {
    "qwen3": dict(model_type="qwen3"),
    "gemma": dict(model_type="gemma", hidden_activation="gelu_pytorch_tanh"),
    "gemma2": dict(model_type="gemma2"),
    "gemma3_text": dict(model_type="gemma3_text"),
    "olmo2": dict(model_type="olmo2"),
    "phi3": dict(model_type="phi3", num_key_value_heads=4),
    "phi": dict(model_type="phi", num_key_value_heads=4),
    "gpt_neox": dict(model_type="gpt_neox", num_key_value_heads=4, intermediate_size=512),
    "starcoder2": dict(model_type="starcoder2"),
    "cohere": dict(model_type="cohere"),
    "qwen2_moe": dict(model_type="qwen2_moe", num_experts=4, num_experts_per_tok=2, moe_intermediate_size=64,
                      shared_expert_intermediate_size=128),
    "mixtral": dict(model_type="mixtral", num_local_experts=4, num_experts_per_tok=2),
}
# Phi's full fine-tuning measures 5% over the replay: with its partial rotary, o_proj's input
# is a copy on the CPU's attention kernel; the replay doesn't count it.
ARCH_TOLERANCE = {("phi", "full"): 0.06}


@pytest.fixture(scope="module")
def arch_dirs(tmp_path_factory) -> dict[str, Path]:
    from transformers import AutoConfig

    out = {}
    for name, extra in ARCHS.items():
        d = tmp_path_factory.mktemp(name)
        AutoConfig.for_model(**{**ARCH_COMMON, **extra}).save_pretrained(d)
        out[name] = d
    return out


@pytest.mark.parametrize("method", ["full", "lora-all"])
@pytest.mark.parametrize("arch", list(ARCHS))
def test_activation_model_follows_each_architecture(arch_dirs, arch, method):
    """Per layer, the replay vs autograd's saved tensors (bf16, CPU autocast, b=2, s=48)."""
    import torch

    from engine.methods import get_method

    eager = arch == "gemma2"  # transformers refuses SDPA for Gemma 2
    kw = dict(method="full", load_in="bf16") if method == "full" else dict(
        method="lora", lora_target_modules="all-linear", lora_dropout=0.0)
    cfg = _cfg(arch_dirs[arch], attn_implementation="eager" if eager else "sdpa", **kw)
    model = get_method(cfg.method).apply(_real_model(arch_dirs[arch], torch.bfloat16, "eager" if eager else "sdpa"),
                                         cfg)
    model.train()
    b, s = 2, 48
    ids = torch.randint(0, 512, (b, s), generator=torch.Generator().manual_seed(0))
    measured = _saved_per_layer(model, ids, autocast=True)
    st = model_structure(cfg)
    assert st.notes == () or st.moe_experts, st.notes  # a known family: no "may differ" caveat
    num = Numerics(autocast=2, weight_bytes=2, linear_kind="dense", compute_bytes=2, embed_bytes=2, mask_bytes=0,
                   fp32_autocast_ops=False)  # CPU autocast runs layer_norm and pow in bf16
    res, rg = 2, st.embed_trainable
    for i in range(st.n_layers):
        plan = LayerPlan(trainable=method == "full", input_requires_grad=rg, lora=st.lora_modules,
                         lora_rank=cfg.lora_r, lora_dropout=False, eager=eager, seq=s)
        r = layer_activations(st, num, plan, res)
        predicted = r.saved * b * s + r.weight_copies
        tol = ARCH_TOLERANCE.get((arch, method), 0.04)
        assert predicted == pytest.approx(measured[i], rel=tol, abs=16 * 1024), (arch, method, i, measured)
        res, rg = r.output_bytes, r.output_requires_grad


def test_gemma2_is_estimated_eager_with_its_soft_capped_logits(arch_dirs):
    """Gemma 2 has no SDPA: the estimate says the run needs eager and counts it so; its
    final soft-capping keeps tanh's output, one more logits-sized tensor (measured on the
    CPU with saved_tensors_hooks)."""
    sdpa = estimate(_cfg(arch_dirs["gemma2"], method="lora", attn_implementation="sdpa"), gpu_bytes=80 * GIB)
    eager = estimate(_cfg(arch_dirs["gemma2"], method="lora", attn_implementation="eager"), gpu_bytes=80 * GIB)
    assert sdpa.peak_bytes == eager.peak_bytes
    assert any("needs attn_implementation: eager" in n for n in sdpa.notes)
    assert not any("eager" in n for n in eager.notes)
    gemma = estimate(_cfg(arch_dirs["gemma"], method="lora"), gpu_bytes=80 * GIB)
    cfg = _cfg(arch_dirs["gemma2"], method="lora")
    tokens = cfg.batch_size * cfg.seq_len
    logits_bf16 = tokens * 512 * 2
    # Same vocabulary and head: the loss's part differs only by the capped copy.
    assert (eager.breakdown["logits_and_loss"] - gemma.breakdown["logits_and_loss"]) == logits_bf16


def test_lora_on_moe_experts_counts_the_merged_expert_weights(arch_dirs):
    """PEFT's all-linear wraps Mixtral's 3D expert weights; each forward merges them."""
    attn_only = _cfg(arch_dirs["mixtral"], method="lora", lora_target_modules=["q_proj", "v_proj"])
    all_linear = _cfg(arch_dirs["mixtral"], method="lora", lora_target_modules="all-linear", lora_dropout=0.0)
    assert not model_structure(attn_only).moe_lora_experts
    st = model_structure(all_linear)
    assert st.moe_lora_experts and st.moe_experts == 4 and st.moe_top_k == 2
    assert any("mixture of experts" in n for n in estimate(all_linear).notes)


def test_lora_on_moe_experts_says_what_the_merged_weights_cost(tmp_path):
    from transformers import AutoConfig

    AutoConfig.for_model(model_type="mixtral", vocab_size=32000, hidden_size=1024, intermediate_size=3584,
                         num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=2, num_local_experts=8,
                         num_experts_per_tok=2).save_pretrained(tmp_path)
    cfg = _cfg(tmp_path, method="lora", lora_target_modules="all-linear", lora_dropout=0.0, batch_size=1)
    merged = 4 * 8 * 3 * 3584 * 1024 * 2  # layers x experts x (gate, up, down) x I x h x bf16
    note = next(n for n in estimate(cfg).notes if "merged expert weights" in n)
    assert f"{merged / GIB:.1f} GiB" in note and "[k_proj, o_proj, q_proj, v_proj]" in note
    attention_only = estimate(cfg.replace(lora_target_modules=["k_proj", "o_proj", "q_proj", "v_proj"]))
    assert not any("merged expert weights" in n for n in attention_only.notes)
    # The merged copies are most of the difference (LoRA's own parameters are tiny).
    assert estimate(cfg).peak_bytes - attention_only.peak_bytes >= merged * 0.9
    assert not any("merged expert weights" in n
                   for n in estimate(cfg.replace(gradient_checkpointing=True)).notes)
    assert not any("lora_dropout" in n for n in estimate(cfg).notes)
    assert any("needs lora_dropout: 0 (it is 0.05)" in n for n in estimate(cfg.replace(lora_dropout=0.05)).notes)


# ---------------------------------------------------------------- Calibration (H100 and H200 tables)
def test_calibration_tables_stay_within_the_band():
    """Every measured case: within +-10% of the driver's peak, never 5% under, except the listed
    ones (which must be exactly those outside the band); parameter counts exact; the allocated
    part close to torch's max_memory_allocated."""
    sys.path.insert(0, str(REPO / "bench"))
    try:
        from calibration import OUTSIDE_THE_BAND, calibration_rows
    finally:
        sys.path.remove(str(REPO / "bench"))
    rows = calibration_rows()
    assert [r["table"] for r in rows].count("H100") == 8
    assert [r["table"] for r in rows].count("H200") >= 15
    outside = {r["case"] for r in rows if not -5.0 <= r["error_pct"] <= 10.0}
    assert outside == set(OUTSIDE_THE_BAND), {r["case"]: r["error_pct"] for r in rows}
    for r in rows:
        assert r["trainable"] == r["measured_trainable"], r
        assert r["total"] == r["measured_total"], r
        # The allocator-level model (before slack and context) is within 0.35 GiB or 1.5%.
        gap = abs(r["estimate_alloc_gib"] - r["measured_alloc_gib"])
        assert gap < max(0.35, 0.015 * r["measured_alloc_gib"]), r


# ---------------------------------------------------------------- Monotonicity and sums
def _peak(model_dir, **kw) -> int:
    cfg = _cfg(model_dir, **kw)
    return peak_bytes(model_structure(cfg), Setup.from_config(cfg))


@pytest.mark.parametrize("method,ckpt", [(m, c) for m in ("lora", "full", "prefix", "ia3", "freeze", "adapter")
                                         for c in (False, True) if not (m == "prefix" and c)])
def test_peak_grows_with_batch_and_sequence(method, ckpt):
    """Never down; and up whenever activations or logits set the peak (full fine-tuning at
    small batches peaks at the optimizer step, which doesn't depend on the batch)."""
    model = CONFIGS / "llama3.2-1b"
    peaks_b = [_peak(model, method=method, gradient_checkpointing=ckpt, batch_size=b) for b in (1, 2, 4, 8, 16)]
    peaks_s = [_peak(model, method=method, gradient_checkpointing=ckpt, seq_len=s) for s in (128, 512, 2048, 8192)]
    for peaks in (peaks_b, peaks_s):
        assert peaks == sorted(peaks)
        assert peaks[-1] > peaks[-2] > peaks[0]


def test_peak_grows_with_lora_rank_and_checkpointing_lowers_it():
    model = CONFIGS / "llama2-7b"
    peaks = [_peak(model, method="lora", lora_target_modules="all-linear", lora_r=r) for r in (4, 16, 64, 256)]
    assert peaks == sorted(peaks) and len(set(peaks)) == len(peaks)
    for method in ("lora", "full", "qlora", "prompt", "freeze", "ia3", "adapter"):
        extra = {"load_in": "nf4"} if method == "qlora" else {}
        assert _peak(model, method=method, gradient_checkpointing=True, batch_size=8, seq_len=2048, **extra) < \
            _peak(model, method=method, gradient_checkpointing=False, batch_size=8, seq_len=2048, **extra)


def test_lower_precision_weights_take_less_memory():
    model = CONFIGS / "mistral-7b"
    weights = {}
    for load, mixed in (("nf4", "bf16"), ("int8", "bf16"), ("bf16", "bf16"), ("fp32", "bf16")):
        cfg = _cfg(model, method="lora", load_in=load, mixed_precision=mixed, gradient_checkpointing=True)
        peak, breakdown, _ = peak_breakdown(model_structure(cfg), Setup.from_config(cfg))
        weights[load] = (breakdown["weights"] + breakdown["quant_constants"], peak)
    assert weights["nf4"][0] < weights["int8"][0] < weights["bf16"][0] < weights["fp32"][0]
    assert weights["nf4"][1] < weights["bf16"][1] < weights["fp32"][1]
    # Full fine-tuning: 8-bit AdamW < AdamW; fused AdamW < foreach (no sqrt temporary).
    from engine.memory import Assumptions

    full = _cfg(model, method="full", load_in="fp32", gradient_checkpointing=True)
    st = model_structure(full)
    fused = peak_bytes(st, Setup.from_config(full))
    foreach = peak_bytes(st, Setup.from_config(full, Assumptions(adamw_impl="foreach")))
    eight = peak_bytes(st, Setup.from_config(full.replace(optimizer="adamw_8bit")))
    assert eight < fused < foreach


@pytest.mark.parametrize("method,load", [("full", "fp32"), ("full", "bf16"), ("freeze", "bf16"), ("lora", "bf16"),
                                         ("lora", "int8"), ("qlora", "nf4"), ("prefix", "bf16"), ("prompt", "fp32"),
                                         ("ia3", "nf4"), ("adapter", "bf16")])
@pytest.mark.parametrize("ckpt,ga", [(False, 1), (True, 4)])
def test_breakdown_sums_exactly_to_the_peak(method, load, ckpt, ga):
    if method == "prefix" and ckpt:
        ckpt = False  # prefix tuning can't be checkpointed (RunConfig refuses it)
    cfg = _cfg(CONFIGS / "qwen2.5-0.5b", method=method, load_in=load, gradient_checkpointing=ckpt,
               gradient_accumulation_steps=ga, use_dora=method == "lora" and load == "int8")
    est = estimate(cfg, 80 * GIB)
    assert set(est.breakdown) == set(BREAKDOWN_KEYS)
    assert sum(est.breakdown.values()) == est.peak_bytes
    assert all(v >= 0 for v in est.breakdown.values())
    for s in est.suggestions:
        assert s["peak_bytes"] < est.peak_bytes


# ---------------------------------------------------------------- Fit verdict, batch, suggestions
def test_verdict_thresholds():
    assert verdict(90, 100) == "yes"
    assert verdict(91, 100) == "tight"
    assert verdict(100, 100) == "tight"
    assert verdict(101, 100) == "no"
    assert verdict(5, None) is None


@pytest.mark.parametrize("gpu_gib", [8, 24, 80])
def test_max_batch_size_is_consistent_with_the_estimate(gpu_gib):
    cfg = _cfg(CONFIGS / "llama3.2-1b", method="lora", seq_len=1024, gradient_checkpointing=True)
    gpu = gpu_gib * GIB
    est = estimate(cfg, gpu)
    b = est.max_batch_size
    assert b >= 1
    assert estimate(cfg.replace(batch_size=b), gpu).fits in ("yes", "tight")
    assert estimate(cfg.replace(batch_size=b + 1), gpu).fits == "no"


def test_max_batch_size_is_zero_when_nothing_fits():
    cfg = _cfg(CONFIGS / "llama2-7b", method="full", load_in="fp32")
    st = model_structure(cfg)
    assert max_batch_size(st, Setup.from_config(cfg), 16 * GIB) == 0
    assert estimate(cfg, 16 * GIB).fits == "no"


def test_suggestions_lower_the_peak_step_by_step_until_it_fits():
    cfg = _cfg(CONFIGS / "llama2-7b", method="lora", batch_size=8, seq_len=2048,
               lora_target_modules="all-linear")
    est = estimate(cfg, 24 * GIB)
    assert est.fits == "no"
    assert est.suggestions
    previous = est.peak_bytes
    for s in est.suggestions:
        assert s["peak_bytes"] < previous
        previous = s["peak_bytes"]
        applied = estimate(cfg.replace(**s["changes"]), 24 * GIB)
        assert applied.peak_bytes == s["peak_bytes"]
        assert applied.fits == s["fits"]
    assert est.suggestions[0]["changes"] == {"gradient_checkpointing": True}
    assert est.suggestions[-1]["fits"] == "yes"
    # The micro-batch rung keeps the effective batch.
    batch = next(s["changes"] for s in est.suggestions if "batch_size" in s["changes"])
    assert batch["batch_size"] * batch["gradient_accumulation_steps"] == 8


def test_no_suggestions_when_it_fits_and_no_verdict_without_a_gpu(monkeypatch):
    import engine.memory.peak as mod

    cfg = _cfg(CONFIGS / "qwen2.5-0.5b", method="lora", batch_size=1, seq_len=256)
    assert estimate(cfg, 80 * GIB).suggestions == []
    monkeypatch.setattr(mod, "detect_gpu", lambda: None)
    est = estimate(cfg)
    assert est.gpu_bytes is None and est.fits is None and est.max_batch_size is None
    assert any("no GPU detected" in n for n in est.notes)
    assert est.notes_by_kind["no_gpu_detected"] in est.notes and "--gpu-memory" in est.notes_by_kind["no_gpu_detected"]
    # A run config for the CPU says so, and nothing in it is marked: that note is not one the GUI says otherwise.
    on_cpu = estimate(cfg.replace(device="cpu"))
    assert any("device is cpu" in n for n in on_cpu.notes) and on_cpu.notes_by_kind == {}


def test_re_estimate_after_an_edit_reuses_the_cached_structure():
    cfg = _cfg(CONFIGS / "llama2-7b", method="lora", lora_target_modules="all-linear")
    st = model_structure(cfg)
    edits = [dict(batch_size=16), dict(seq_len=4096), dict(lora_r=64), dict(load_in="fp32"),
             dict(gradient_checkpointing=True), dict(optimizer="adamw_8bit")]
    for e in edits:
        edited = cfg.replace(**e)
        # No rebuild per edit: the meta-model is the cached one (bench/estimate_speed.py measures ~2 ms).
        assert model_structure(edited) is st
        assert estimate(edited, 24 * GIB).peak_bytes > 0


# ---------------------------------------------------------------- Learning from real runs
def _write_run(root: Path, name: str, config: dict, **summary) -> Path:
    run = root / "runs" / name
    run.mkdir(parents=True)
    data = {"status": "finished", "finished": summary.pop("finished", "2026-11-20T10:00:00"),
            "gpu_name": "NVIDIA H100 80GB HBM3", "peak_gpu_allocated_bytes": 10 * GIB,
            "peak_gpu_reserved_bytes": 11 * GIB, "peak_gpu_device_bytes": 12 * GIB, "config": config, **summary}
    (run / "summary.json").write_text(json.dumps(data), encoding="utf-8")
    return run


def test_measured_peaks_finds_runs_with_the_same_memory_settings(studio_home):
    model = str(CONFIGS / "qwen2.5-0.5b")
    cfg = _cfg(model, method="lora", batch_size=4, seq_len=512, learning_rate=1e-4)
    same = {**cfg.to_dict(), "learning_rate": 3e-4, "num_epochs": 1.0, "dataset": "other.jsonl",
            "lora_dropout": 0.1, "freeze_trainable_layers": 5}
    _write_run(studio_home, "a-old", same, finished="2026-11-01T00:00:00")
    _write_run(studio_home, "b-new", same, finished="2026-11-25T00:00:00", peak_gpu_device_bytes=13 * GIB)
    _write_run(studio_home, "c-other-batch", {**cfg.to_dict(), "batch_size": 8})
    _write_run(studio_home, "d-other-rank", {**cfg.to_dict(), "lora_r": 16})
    _write_run(studio_home, "e-no-peak", same, peak_gpu_allocated_bytes=None, peak_gpu_reserved_bytes=None,
               peak_gpu_device_bytes=None)
    broken = studio_home / "runs" / "f-broken"
    broken.mkdir()
    (broken / "summary.json").write_text("{not json", encoding="utf-8")
    # A run trained into an output_dir of its own counts too.
    from engine.runs import remember_run_folder

    outside = _write_run(studio_home / "elsewhere", "g-own-folder", same, finished="2026-11-20T00:00:00")
    remember_run_folder(outside)
    found = measured_peaks(cfg)
    assert [Path(r["run_dir"]).name for r in found] == ["b-new", "g-own-folder", "a-old"]
    assert found[0]["peak_gpu_device_bytes"] == 13 * GIB
    assert found[0]["gpu_name"] == "NVIDIA H100 80GB HBM3"
    assert estimate(cfg, 80 * GIB, with_measured=True).measured == found
    # The run's longest record (its dataset.json) comes along: a run on shorter data peaks lower.
    assert [r["longest_record"] for r in found] == [None, None, None]
    (studio_home / "runs" / "b-new" / "dataset.json").write_text(json.dumps({"longest": 247}), encoding="utf-8")
    (studio_home / "runs" / "a-old" / "dataset.json").write_text("{not json", encoding="utf-8")
    assert [r["longest_record"] for r in measured_peaks(cfg)] == [247, None, None]


def test_per_gpu_correction_scales_the_estimate(studio_home):
    cfg = _cfg(CONFIGS / "qwen2.5-0.5b", method="lora")
    plain = estimate(cfg, 80 * GIB, gpu_name="NVIDIA GeForce RTX 4090")
    (studio_home / "memory_calibration.json").write_text(
        json.dumps({"NVIDIA GeForce RTX 4090": 1.1, "NVIDIA H100 80GB HBM3": 0.95}), encoding="utf-8")
    corrected = estimate(cfg, 80 * GIB, gpu_name="NVIDIA GeForce RTX 4090")
    assert corrected.correction == 1.1
    assert corrected.peak_bytes == round(plain.peak_bytes * 1.1)
    assert corrected.breakdown["gpu_correction"] == corrected.peak_bytes - plain.peak_bytes
    assert sum(corrected.breakdown.values()) == corrected.peak_bytes
    other = estimate(cfg, 80 * GIB, gpu_name="Some Other GPU")
    assert other.peak_bytes == plain.peak_bytes and other.correction == 1.0
    (studio_home / "memory_calibration.json").write_text(json.dumps({"NVIDIA GeForce RTX 4090": "big"}))
    with pytest.raises(ConfigError, match="RTX 4090.*between 0.5 and 2"):
        estimate(cfg, 80 * GIB, gpu_name="NVIDIA GeForce RTX 4090")


# ---------------------------------------------------------------- CLI
def _cli(path: Path, **kw) -> tuple[int, str, str]:
    args = argparse.Namespace(config=str(path), json=kw.pop("json", True), gpu_memory=kw.pop("gpu_memory", None),
                              overrides=kw.pop("overrides", {}))
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cli_estimate(args)
    return code, out.getvalue(), err.getvalue()


def test_cli_json_is_the_documented_contract(tmp_path, studio_home):
    run = tmp_path / "run.yaml"
    run.write_text(f"model: {CONFIGS / 'llama2-7b'}\nmethod: lora\nlora_r: 8\n"
                   "lora_target_modules: [q_proj, v_proj]\nbatch_size: 4\nseq_len: 512\n", encoding="utf-8")
    code, out, err = _cli(run, gpu_memory=24.0, overrides={"gradient_checkpointing": True})
    assert code == 0, err
    d = json.loads(out)
    for key in ("schema_version", "peak_bytes", "breakdown", "trainable_params", "total_params", "gpu_bytes",
                "fits", "max_batch_size", "suggestions", "peak_phase", "gpu_source", "measured", "notes",
                "notes_by_kind"):
        assert key in d
    assert (d["trainable_params"], d["total_params"]) == (4_194_304, 6_742_609_920)
    assert d["gpu_bytes"] == 24 * GIB and d["gpu_source"] == "given"
    assert sum(d["breakdown"].values()) == d["peak_bytes"]
    assert d["fits"] == "yes" and d["max_batch_size"] >= 4
    # The adapter (fp32) and AdamW's two fp32 moments, three kept checkpoints plus the one being written.
    disk = d["disk"]
    assert disk["checkpoint_bytes"] == 4_194_304 * (4 + 8) + 2**20 and disk["checkpoints_at_once"] == 4
    assert disk["final_bytes"] >= 4_194_304 * 4 + 2**20
    assert disk["need_bytes"] == disk["final_bytes"] + 4 * disk["checkpoint_bytes"] and disk["free_bytes"] > 0
    code, text, _ = _cli(run, json=False, gpu_memory=24.0)
    assert code == 0 and "Estimated peak GPU memory" in text and "fits:" in text
    assert "disk: checkpoints of 49.0 MiB each, up to 4 at once" in text


def test_cli_estimates_a_config_this_machine_cant_run_and_says_so_in_trains_words(tmp_path, studio_home, monkeypatch):
    """`estimate` of a QLoRA run with fp16 autocast and an 8-bit optimizer on a machine without CUDA
    estimated it as if all were well, while `train` refused it. It still estimates (a plan for another
    machine, --gpu-memory or not), and a `cannot_run_here` note gives train's reasons."""
    import engine.precision as precision

    monkeypatch.setattr(precision, "detect_environment", lambda **kw: precision.Environment.cpu_only())
    run = tmp_path / "run.yaml"
    run.write_text(f"model: {CONFIGS / 'llama2-7b'}\nmethod: qlora\nload_in: nf4\nmixed_precision: fp16\n"
                   "optimizer: paged_adamw_8bit\nseq_len: 512\n", encoding="utf-8")
    cfg = RunConfig.load(run)
    reasons = [e.message for e in precision.environment_errors(cfg, precision.Environment.cpu_only())]
    assert len(reasons) == 3
    for gpu_memory in (24.0, None):
        code, out, err = _cli(run, gpu_memory=gpu_memory)
        assert code == 0, err
        d = json.loads(out)
        assert d["peak_bytes"] > 0 and d["breakdown"]["quant_constants"] > 0  # estimated for the GPU as asked
        note = d["notes_by_kind"]["cannot_run_here"]
        assert note in d["notes"] and note.startswith("this machine can't run it (train refuses it): ")
        assert all(r in note for r in reasons) and note.endswith("The estimate is for a CUDA GPU that can.")
    code, text, _ = _cli(run, json=False, gpu_memory=24.0)
    assert code == 0 and f"note: {note}" in text and "Estimated peak GPU memory" in text
    # A config this machine can run has no such note.
    code, out, _ = _cli(run, gpu_memory=24.0, overrides={"method": "lora", "load_in": "bf16",
                                                         "mixed_precision": "bf16", "optimizer": "adamw"})
    assert code == 0 and "cannot_run_here" not in json.loads(out)["notes_by_kind"]


def test_cli_reports_config_errors_on_stderr_with_exit_2(tmp_path, capsys):
    from engine.cli import main

    run = tmp_path / "bad.yaml"
    run.write_text("model: demo\nbatch_sise: 4\n", encoding="utf-8")
    assert main(["estimate", str(run)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("finetune-studio estimate: ")
    assert "batch_sise" in err and "batch_size" in err
    assert main(["estimate", str(tmp_path / "missing.yaml")]) == 2
    assert "no such run config file" in capsys.readouterr().err
    good = tmp_path / "good.yaml"
    good.write_text(f"model: {tmp_path / 'nowhere'}\n", encoding="utf-8")
    assert main(["estimate", str(good)]) == 2
    assert "nowhere" in capsys.readouterr().err


@pytest.mark.parametrize("bad", [{"hidden_size": 100, "num_attention_heads": 3, "head_dim": None},
                                 {"hidden_size": "abc"}])
def test_a_config_json_transformers_rejects_is_a_model_error_not_a_traceback(tmp_path, bad):
    """transformers' strict config validation raises huggingface_hub's own error classes."""
    from engine.errors import ModelError

    conf = {**_tiny_config(False), **bad}
    (tmp_path / "config.json").write_text(json.dumps({k: v for k, v in conf.items() if v is not None}))
    with pytest.raises(ModelError) as e:
        estimate(_cfg(tmp_path, method="lora"))
    assert "config.json: transformers can't build this model from its config" in e.value.message
    assert "Fix the value named above in config.json" in e.value.hint
