"""What the estimate needs to know about a model, read from ``config.json`` alone.

The model is instantiated on the ``meta`` device (shapes, no storage, no download), the
run's fine-tuning method is applied to it through the method table
(:mod:`engine.methods`), and the result is boiled down to a small frozen
:class:`ModelStructure`: parameter counts exactly as PEFT counts them, the shapes of one
decoder layer's linear layers, and which parameters train.

Building one takes 0.05-0.5 s (a 7B model), so structures are cached per model folder,
``config.json`` modification time and the *structural* method settings. The LoRA rank is
not part of the key: LoRA's parameter count is linear in ``r`` (PEFT's ``lora_A`` is
``r x d_in`` and ``lora_B`` is ``d_out x r``), so one structure serves every rank and a
change of rank re-estimates in microseconds.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import ModelError

if TYPE_CHECKING:
    from torch import nn

    from engine.config import RunConfig

# Name fragments of the linear layers inside a decoder block, by the role the activation
# model gives them. Covers Llama/Mistral/Qwen/Gemma/Phi-3-style blocks (and the usual
# GPT-style names for a plain two-layer MLP).
_ROLES = {
    "qkv": ("qkv_proj", "query_key_value", "Wqkv", "c_attn"),
    "gate_up": ("gate_up_proj",),
    "q": ("q_proj", "query", "wq"),
    "k": ("k_proj", "key", "wk"),
    "v": ("v_proj", "value", "wv"),
    "o": ("o_proj", "out_proj", "wo", "dense"),
    "gate": ("gate_proj", "w1"),
    "up": ("up_proj", "w3"),
    "down": ("down_proj", "w2"),
    "fc1": ("fc1", "c_fc", "dense_h_to_4h", "fc_in"),
    "fc2": ("fc2", "dense_4h_to_h", "fc_out", "c_proj"),
}

# Activation functions whose PyTorch op keeps only its input for backward; anything else
# (``gelu_new``, ``gelu_fast``: tanh formulas written in Python) keeps its intermediates.
_FUSED_ACTS = ("silu", "swish", "gelu", "gelu_pytorch_tanh", "relu", "gelu_python_tanh", "relu2")

# bitsandbytes and PEFT skip layers with fewer elements than this for 8-bit optimizer
# states (bnb ``Optimizer8bit`` ``min_8bit_size`` default).
MIN_8BIT_SIZE = 4096


@dataclass(frozen=True)
class LinearSpec:
    """One linear layer of a decoder block."""

    name: str
    role: str
    d_in: int
    d_out: int
    bias: bool


@dataclass(frozen=True)
class ModelStructure:
    """Shapes and parameter counts of one model with one method applied.

    Counts are PEFT's (``PeftModel.get_nb_trainable_parameters``): every parameter once,
    tied embeddings once, adapters included in the total. They are valid at
    ``lora_rank``; use :meth:`trainable_at` / :meth:`total_at` for another rank.

    Attributes:
        model_type: ``config.json``'s ``model_type``.
        vocab: Vocabulary size (rows of the output head).
        hidden: Hidden size h.
        n_layers: Decoder layers L.
        n_heads: Query heads.
        n_kv_heads: Key/value heads (GQA).
        head_dim: Per-head size.
        intermediate: MLP width I (largest MLP linear output).
        tied: The output head shares the input embedding.
        layer_linears: The base linear layers of one decoder block.
        gated_mlp: The MLP is gate/up/down (SwiGLU-style); else fc1/fc2.
        layer_params: All base parameters of one decoder block.
        embed_params: Input embedding parameters.
        head_params: Output head parameters (0 when tied).
        final_norm_params: Parameters outside the blocks other than embedding and head.
        total_params: PEFT's total at ``lora_rank``.
        trainable_params: PEFT's trainable count at ``lora_rank``.
        base_trainable: Trainable parameters that belong to the base model (full/freeze).
        base_trainable_linear: Of those, weights of linear layers (autocast casts them).
        trainable_tensor_sizes: ``(numel, count)`` of trainable tensors not scaled by rank
            (``nn.Embedding`` weights excepted: ``trainable_embedding_sizes``).
        trainable_layers: Top decoder blocks with trainable base parameters.
        embed_trainable: The input embedding trains.
        head_trainable: The output head trains.
        final_norm_trainable: The final norm trains.
        lora_rank: The rank the counts were taken at (0 when the method isn't LoRA).
        lora_modules: ``(role, d_in, d_out)`` of the LoRA-wrapped linears of one block.
        lora_coef: Sum of ``d_in + d_out`` over every LoRA-wrapped linear in the model.
        dora: LoRA uses DoRA (magnitude vectors).
        ia3_modules: ``(role, d_in, d_out, feedforward)`` of IA3-wrapped linears of one block.
        adapters_per_layer: Bottleneck adapters per block (1 Pfeiffer, 2 Houlsby).
        adapter_size: Bottleneck width m.
        virtual_tokens: Prompt-tuning tokens prepended to every sequence.
        prefix_tokens: Prefix-tuning key/value positions added to every attention.
        norm_kind: ``rms`` (Llama's RMSNorm), ``rms_fp32`` (Gemma's ``x * (1 + w)``, OLMo2's
            ``w * x``: in fp32, then cast back), ``layer`` (``nn.LayerNorm``) or ``layer_py``
            (a LayerNorm written in Python in fp32, Cohere's).
        qk_norm: Queries and keys are normalised before RoPE (Qwen3, OLMo2, Gemma 3).
        layout: Where the norms sit: ``pre`` (Llama), ``sandwich`` (Gemma 2/3: also after
            attention and around the MLP), ``post`` (OLMo2: after attention and MLP only),
            ``parallel`` (Phi, GPT-NeoX, Cohere: attention and MLP read the same input).
        parallel_norms: Norms of a parallel block (GPT-NeoX has one per branch).
        mlp_act: ``config.hidden_act``.
        moe_experts: Routed experts per block (0 for a dense MLP).
        moe_top_k: Experts each token is routed to.
        moe_intermediate: Width of one routed expert's MLP.
        token_rows: Embedding rows trained through PEFT's trainable tokens (``add_tokens`` with
            lora/qlora); each forward then builds the whole embedding, and head, with them.
        trainable_embedding_sizes: ``(numel, count)`` of trainable ``nn.Embedding`` weights (full or
            freeze training of the embedding, prompt and prefix encoders): the Trainer gives them
            32-bit states under the 8-bit optimizers.
        moe_lora_experts: LoRA wraps the experts' 3D weights (PEFT's ``ParamWrapper``, which
            ``all-linear`` selects for MoE models): every forward builds the merged weights.
        attn_softcap: Attention scores go through ``tanh`` soft-capping (Gemma 2, eager).
        final_logit_softcap: The logits go through ``tanh`` soft-capping (Gemma 2).
        supports_sdpa: transformers accepts ``attn_implementation="sdpa"`` for the model.
        arch: The model class, e.g. ``Gemma2ForCausalLM``.
    """

    model_type: str
    vocab: int
    hidden: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    intermediate: int
    tied: bool
    layer_linears: tuple[LinearSpec, ...]
    gated_mlp: bool
    layer_params: int
    embed_params: int
    head_params: int
    final_norm_params: int
    total_params: int
    trainable_params: int
    base_trainable: int
    base_trainable_linear: int
    trainable_tensor_sizes: tuple[tuple[int, int], ...]
    trainable_layers: int
    embed_trainable: bool
    head_trainable: bool
    final_norm_trainable: bool
    lora_rank: int = 0
    lora_modules: tuple[tuple[str, int, int], ...] = ()
    lora_coef: int = 0
    lora_tensor_dims: tuple[tuple[int, int], ...] = ()
    dora: bool = False
    ia3_modules: tuple[tuple[str, int, int, bool], ...] = ()
    adapters_per_layer: int = 0
    adapter_size: int = 0
    virtual_tokens: int = 0
    prefix_tokens: int = 0
    norm_kind: str = "rms"
    qk_norm: bool = False
    layout: str = "pre"
    parallel_norms: int = 1
    mlp_act: str = "silu"
    moe_experts: int = 0
    moe_top_k: int = 0
    moe_intermediate: int = 0
    moe_lora_experts: bool = False
    token_rows: int = 0
    trainable_embedding_sizes: tuple[tuple[int, int], ...] = ()
    attn_softcap: bool = False
    final_logit_softcap: bool = False
    supports_sdpa: bool = True
    arch: str = ""
    notes: tuple[str, ...] = field(default=())

    # ---- Public API
    @property
    def q_dim(self) -> int:
        return self.n_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.n_kv_heads * self.head_dim

    @property
    def layer_linear_weights(self) -> int:
        """Weights of the linear layers of one block: what bitsandbytes quantizes."""
        return sum(s.d_in * s.d_out for s in self.layer_linears)

    @property
    def layer_linear_biases(self) -> int:
        return sum(s.d_out for s in self.layer_linears if s.bias)

    @property
    def base_params(self) -> int:
        """Parameters of the base model (tied embedding once), without any adapter."""
        return (self.n_layers * self.layer_params + self.embed_params + self.head_params
                + self.final_norm_params)

    def trainable_at(self, rank: int) -> int:
        """PEFT's trainable count at LoRA rank ``rank`` (other methods: unchanged)."""
        return self.trainable_params + (rank - self.lora_rank) * self.lora_coef

    def total_at(self, rank: int) -> int:
        """PEFT's total count at LoRA rank ``rank``."""
        return self.total_params + (rank - self.lora_rank) * self.lora_coef

    def trainable_tensors_at(self, rank: int) -> list[tuple[int, int]]:
        """``(numel, count)`` of every trainable tensor at LoRA rank ``rank``, embeddings excepted
        (:attr:`trainable_embedding_sizes`)."""
        out = list(self.trainable_tensor_sizes)
        out.extend((d * rank, n) for d, n in self.lora_tensor_dims)
        return out


# ---------------------------------------------------------------- Public API
_CACHE: dict[tuple, ModelStructure] = {}
_LOCK = threading.Lock()


_RESOLVED: dict[str, Path] = {}


def resolved_model_dir(model: str) -> Path:
    """``resolve_model_path``, remembered for Hugging Face cache ids (a cache lookup is slow;
    a local folder is re-checked every time)."""
    from engine.models import resolve_model_path

    local = Path(os.path.expanduser(model))
    if model != "demo" and (local / "config.json").is_file():
        return local
    hit = _RESOLVED.get(model)
    if hit is not None and (hit / "config.json").exists():
        return hit
    path = resolve_model_path(model)
    _RESOLVED[model] = path
    return path


def structure_key(cfg: RunConfig) -> tuple:
    """The cache key: model folder, config.json mtime and the method's structural settings."""
    path = resolved_model_dir(cfg.model)
    try:
        mtime = (path / "config.json").stat().st_mtime_ns
    except OSError:
        mtime = 0
    return (str(path.resolve()), mtime, cfg.trust_remote_code) + method_key(cfg)


def method_key(cfg: RunConfig) -> tuple:
    """The method settings that change which parameters exist (LoRA rank excluded)."""
    m = cfg.method
    if m in ("lora", "qlora"):
        targets = cfg.target_modules
        return ("lora", targets if isinstance(targets, str) else tuple(targets), cfg.use_dora, len(cfg.add_tokens))
    if m == "freeze":
        return ("freeze", cfg.freeze_trainable_layers, tuple(cfg.freeze_extra_modules))
    if m == "adapter":
        return ("adapter", cfg.adapter_reduction_factor, cfg.adapter_style)
    if m in ("prefix", "prompt"):
        return (m, cfg.num_virtual_tokens, cfg.prefix_projection if m == "prefix" else False)
    if m == "ia3":
        t = cfg.ia3_target_modules
        return ("ia3", t if isinstance(t, str) else tuple(t))
    return (m,)


def model_structure(cfg: RunConfig) -> ModelStructure:
    """The (cached) structure of ``cfg.model`` with ``cfg.method`` applied.

    Raises:
        ModelError: the model can't be found, or transformers can't build it from its config.
        ConfigError: the method's settings don't fit the model (e.g. unknown target modules).
    """
    key = structure_key(cfg)
    with _LOCK:
        hit = _CACHE.get(key)
    if hit is not None:
        return hit
    built = _build(cfg, Path(key[0]))
    with _LOCK:
        _CACHE[key] = built
    return built


def clear_cache() -> None:
    """Forget every cached structure (tests; after editing a config.json in place)."""
    with _LOCK:
        _CACHE.clear()
        _RESOLVED.clear()


def meta_model(model_dir: Path, *, trust_remote_code: bool = False) -> nn.Module:
    """``AutoModelForCausalLM.from_config`` on the meta device: shapes only, no memory.

    Raises:
        ConfigError: (key ``model``) transformers has no causal LM of this architecture, or it runs
            its own code and ``trust_remote_code`` is off (:func:`engine.models.architecture_problem`).
        ModelError: the config is invalid.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from engine.models import architecture_problem

    problem = architecture_problem(Path(model_dir), trust_remote_code)
    if problem is not None:  # a bad value of the config's model: said at its field (the Train form holds Start)
        raise problem
    try:
        config = AutoConfig.from_pretrained(str(model_dir), local_files_only=True,
                                            trust_remote_code=trust_remote_code)
        with torch.device("meta"):
            return AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    except Exception as e:  # noqa: BLE001 - transformers/huggingface_hub validation errors have no common base
        raise ModelError(f"{model_dir / 'config.json'}: transformers can't build this model from its "
                         f"config: {e}", hint="Fix the value named above in config.json; an architecture transformers "
                         "doesn't know needs trust_remote_code: true (when the model ships its code).") from None


def apply_method(model: nn.Module, cfg: RunConfig) -> nn.Module:
    """Apply the run's method to ``model`` as training will (the method table).

    ``add_tokens`` train as many rows; the last rows of the vocabulary stand in for them (the
    few rows the run may add change no memory term measurably).
    """
    from engine.methods import get_method

    vocab = model.get_input_embeddings().weight.shape[0]
    rows = list(range(max(0, vocab - len(cfg.add_tokens)), vocab))
    return get_method(cfg.method).apply(model, cfg, train_tokens=rows)


# ---------------------------------------------------------------- Building
def _role(name: str) -> str:
    leaf = name.rsplit(".", 1)[-1]
    for role, names in _ROLES.items():
        if leaf in names:
            return role
    return "other"


def _text_config(model: nn.Module) -> Any:
    config = model.config
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def _build(cfg: RunConfig, model_dir: Path) -> ModelStructure:
    import torch
    from torch import nn

    from engine.methods.freeze import decoder_layers

    base = meta_model(model_dir, trust_remote_code=cfg.trust_remote_code)
    text = _text_config(base)
    layers_name, layers = decoder_layers(base)
    layer0 = layers[0]
    linears = tuple(
        LinearSpec(name, _role(name), m.in_features, m.out_features, m.bias is not None)
        for name, m in layer0.named_modules() if isinstance(m, nn.Linear)
    )
    roles = {s.role for s in linears}
    gated = {"gate", "up", "down"} <= roles
    mlp_out = [s.d_out for s in linears if s.role in ("gate", "up", "fc1")]
    intermediate = max(mlp_out) if mlp_out else int(getattr(text, "intermediate_size", 4 * text.hidden_size))
    hidden = int(text.hidden_size)
    n_heads = int(text.num_attention_heads)
    head_dim = int(getattr(text, "head_dim", None) or hidden // n_heads)
    n_kv = int(getattr(text, "num_key_value_heads", None) or n_heads)

    embed = base.get_input_embeddings()
    head = base.get_output_embeddings()
    tied = head is not None and head.weight is embed.weight
    embed_params = embed.weight.numel()
    head_params = 0 if (head is None or tied) else sum(p.numel() for p in head.parameters())
    layer_params = sum(p.numel() for p in layer0.parameters())
    seen = {id(p) for p in layers.parameters()} | {id(embed.weight)}
    if head is not None:
        seen |= {id(p) for p in head.parameters()}
    final_norm_params = sum(p.numel() for p in {id(p): p for p in base.parameters()}.values()
                            if id(p) not in seen)

    base_param_ids = {id(p) for p in base.parameters()}
    notes: list[str] = []
    variant = _block_variant(layer0, text)
    sdpa_ok = bool(getattr(type(base), "_supports_sdpa", True))
    arch_name = type(base).__name__
    if variant["moe_experts"]:
        notes.append(f"mixture of experts ({variant['moe_experts']} experts, {variant['moe_top_k']} per token): "
                     "activations follow transformers' expert loop and grouped matmuls, checked on the CPU only")
    gated = gated or "gate_up" in roles
    if variant["moe_experts"]:
        intermediate = max(intermediate if gated else 0, variant["moe_intermediate"])
    if not variant["moe_experts"] and not gated and not ({"fc1", "fc2"} <= roles):
        notes.append(f"{type(base).__name__}: the activation model assumes a Llama-style block "
                     "(RMSNorm, attention, gated MLP); this architecture may differ")

    with torch.device("meta"):  # the method's new weights too: shapes only (a 7B prefix MLP is 4 GB)
        model = apply_method(base, cfg)
    is_peft = hasattr(model, "get_nb_trainable_parameters")
    if is_peft:
        trainable, total = model.get_nb_trainable_parameters()
    else:
        from engine.methods import count_parameters

        trainable, total = count_parameters(model)

    # Which trainable tensors exist, and which belong to the base (full/freeze) or are new.
    unique: dict[int, torch.nn.Parameter] = {}
    names: dict[int, str] = {}
    for name, p in model.named_parameters(remove_duplicate=True):
        unique[id(p)] = p
        names[id(p)] = name
    base_trainable = base_trainable_linear = 0
    fixed_sizes: dict[int, int] = {}
    lora_dims: dict[int, int] = {}
    lora_rank = cfg.lora_r if cfg.method in ("lora", "qlora") else 0
    linear_weight_ids = {id(m.weight) for m in base.modules() if isinstance(m, nn.Linear)}
    embedding_weight_ids = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    embedding_sizes: dict[int, int] = {}
    for pid, p in unique.items():
        if not p.requires_grad:
            continue
        name = names[pid]
        n = p.numel()
        if pid in base_param_ids:
            base_trainable += n
            if pid in linear_weight_ids:
                base_trainable_linear += n
        if lora_rank and (".lora_A." in name or ".lora_B." in name) and n % lora_rank == 0:
            lora_dims[n // lora_rank] = lora_dims.get(n // lora_rank, 0) + 1
        elif pid in embedding_weight_ids:
            embedding_sizes[n] = embedding_sizes.get(n, 0) + 1
        else:
            fixed_sizes[n] = fixed_sizes.get(n, 0) + 1

    layer_trainable = [any(p.requires_grad for p in layer.parameters() if id(p) in base_param_ids)
                       for layer in layers]
    trainable_layers = 0
    for flag in reversed(layer_trainable):
        if not flag:
            break
        trainable_layers += 1
    if sum(layer_trainable) != trainable_layers:
        notes.append("trainable decoder layers are not the top ones; activations assume they are")

    lora_modules: list[tuple[str, int, int]] = []
    ia3_modules: list[tuple[str, int, int, bool]] = []
    adapters = 0
    adapter_size = 0
    lora_coef = 0
    dora = False
    moe_lora = False
    token_rows = 0
    for name, m in model.named_modules():
        if name.endswith("token_adapter") and hasattr(m, "trainable_tokens_delta"):
            token_rows = len(cfg.add_tokens)
        if (hasattr(m, "lora_A") and getattr(m, "parameter_name", None) in ("gate_up_proj", "down_proj", "up_proj")
                and len(m.lora_A) > 0):
            moe_lora = True
        if hasattr(m, "lora_A") and hasattr(m, "base_layer") and len(m.lora_A) > 0:
            a = next(iter(m.lora_A.values()))
            b = next(iter(m.lora_B.values()))
            d_in = getattr(a, "in_features", None) or a.weight.shape[1]
            d_out = getattr(b, "out_features", None) or b.weight.shape[0]
            lora_coef += d_in + d_out
            if len(getattr(m, "lora_magnitude_vector", {}) or {}) > 0:
                dora = True
            if f"{layers_name}.0." in name:
                lora_modules.append((_role(name), d_in, d_out))
        elif hasattr(m, "ia3_l") and hasattr(m, "base_layer") and len(m.ia3_l) > 0:
            if f"{layers_name}.0." in name:
                base_layer = m.base_layer
                ia3_modules.append((_role(name), base_layer.in_features, base_layer.out_features,
                                    bool(getattr(m, "is_feedforward", False))))
        elif name.endswith("bottleneck_adapter") and f"{layers_name}.0." in name:
            adapters += 1
            adapter_size = m.down.out_features

    embed_trainable = embed.weight.requires_grad
    head_trainable = head is not None and any(p.requires_grad for p in head.parameters())
    final_norm_trainable = any(p.requires_grad for pid, p in unique.items()
                               if pid in base_param_ids and pid not in seen)
    if token_rows:
        notes.append(f"add_tokens: PEFT's trainable tokens rebuild the {'embedding' if tied else 'embedding and head'} "
                     "matrix with the new rows on every forward; those copies and their gradients are counted from "
                     "their shapes, not yet measured on a GPU")
    virtual = cfg.num_virtual_tokens if cfg.method == "prompt" else 0
    prefix = cfg.num_virtual_tokens if cfg.method == "prefix" else 0

    return ModelStructure(
        model_type=str(getattr(text, "model_type", "?")),
        vocab=int(text.vocab_size),
        hidden=hidden,
        n_layers=len(layers),
        n_heads=n_heads,
        n_kv_heads=n_kv,
        head_dim=head_dim,
        intermediate=int(intermediate),
        tied=bool(tied),
        layer_linears=linears,
        gated_mlp=gated,
        layer_params=int(layer_params),
        embed_params=int(embed_params),
        head_params=int(head_params),
        final_norm_params=int(final_norm_params),
        total_params=int(total),
        trainable_params=int(trainable),
        base_trainable=int(base_trainable),
        base_trainable_linear=int(base_trainable_linear),
        trainable_tensor_sizes=tuple(sorted(fixed_sizes.items())),
        trainable_embedding_sizes=tuple(sorted(embedding_sizes.items())),
        trainable_layers=trainable_layers,
        embed_trainable=bool(embed_trainable),
        head_trainable=bool(head_trainable),
        final_norm_trainable=bool(final_norm_trainable),
        lora_rank=lora_rank if lora_coef else 0,
        lora_modules=tuple(lora_modules),
        lora_coef=int(lora_coef),
        lora_tensor_dims=tuple(sorted(lora_dims.items())),
        dora=dora,
        ia3_modules=tuple(ia3_modules),
        adapters_per_layer=adapters,
        adapter_size=adapter_size,
        virtual_tokens=virtual,
        prefix_tokens=prefix,
        **variant,
        moe_lora_experts=moe_lora and bool(variant["moe_experts"]),
        token_rows=token_rows,
        supports_sdpa=sdpa_ok,
        arch=arch_name,
        notes=tuple(notes),
    )


def _block_variant(layer: nn.Module, text: Any) -> dict[str, Any]:
    """The block's norms, layout, activation and experts, from its module names.

    ``tests/engine/test_memory.py`` checks the replay for each family against autograd.
    """
    norms = {name: type(m).__name__ for name, m in layer.named_modules()
             if name and "norm" in type(m).__name__.lower()}
    leaves = {name.rsplit(".", 1)[-1] for name in norms}
    kinds = set(norms.values())
    if "LayerNorm" in kinds:
        kind = "layer"  # torch.nn.LayerNorm
    elif any("LayerNorm" in k for k in kinds):
        kind = "layer_py"  # written in Python in fp32 (CohereLayerNorm)
    elif any(k.startswith(("Gemma", "Olmo2", "Olmo3")) for k in kinds):
        kind = "rms_fp32"  # the weight multiplies in fp32, then .to(input dtype)
    else:
        kind = "rms"
    block_norms = leaves - {"q_norm", "k_norm", "q_layernorm", "k_layernorm"}
    if {"pre_feedforward_layernorm", "post_feedforward_layernorm"} <= block_norms:
        layout = "sandwich"
    elif "input_layernorm" not in block_norms and "post_feedforward_layernorm" in block_norms:
        layout = "post"
    elif len(block_norms) == 1 or getattr(text, "use_parallel_residual", False):
        layout = "parallel"
    else:
        layout = "pre"
    experts = 0
    for _name, m in layer.named_modules():
        e = getattr(m, "num_experts", None)
        if isinstance(e, int) and e > 1:
            experts = e
            break
    act = getattr(text, "hidden_act", None) or getattr(text, "hidden_activation", None) or "silu"
    return dict(
        norm_kind=kind,
        qk_norm=bool({"q_norm", "k_norm"} <= leaves or {"q_layernorm", "k_layernorm"} <= leaves),
        layout=layout,
        parallel_norms=max(1, len(block_norms)) if layout == "parallel" else 1,
        mlp_act=str(act),
        moe_experts=experts,
        moe_top_k=int(getattr(text, "num_experts_per_tok", 0) or 0) if experts else 0,
        moe_intermediate=int(getattr(text, "moe_intermediate_size", None) or getattr(text, "intermediate_size", 0))
        if experts else 0,
        attn_softcap=bool(getattr(text, "attn_logit_softcapping", None)),
        final_logit_softcap=bool(getattr(text, "final_logit_softcapping", None)),
    )
