"""The estimate's terms: one pure function per kind of GPU memory, each citing its source.

Every function takes the model's :class:`~engine.memory.structure.ModelStructure` and the
run's :class:`Setup` (the estimate-relevant run-config values plus the training-loop
facts in :class:`Assumptions`) and returns bytes. None of them touches a GPU or a file.

Sources: ``../shared/notes/memory-model.md`` (researched constants, cited there), the
library code named at each term, and our own H100 measurements in ``docs/memory.md``
("measured" below).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from engine.memory.activations import HeadResult, LayerPlan, Numerics, head_activations, layer_activations
from engine.memory.structure import MIN_8BIT_SIZE, ModelStructure

if TYPE_CHECKING:
    from engine.config import RunConfig

GIB = 1 << 30

# Measured: device used (cudaMemGetInfo) minus torch's peak reserved was 0.74-0.75 GiB in
# all 8 H100 cases (torch 2.11+cu130, driver 580; bnb cases included): the CUDA context,
# cuBLAS workspaces and kernel images, none of which torch's allocator sees.
CUDA_CONTEXT_BYTES = int(0.75 * GIB)

# Allocator slack (reserved - allocated), fitted on the 8 H100 cases (docs/memory.md):
# a fixed part, half of the largest single transient tensor (a freed block of that size
# is often split and can't be reused whole: pytorch/pytorch#40989 saw +11%), and a share
# of everything allocated and freed each step.
SLACK_FIXED = int(0.25 * GIB)
SLACK_LARGEST = 0.5
SLACK_TRANSIENT = 0.04

# Measured: every H100 case allocated 0.06-0.08 GiB more than its terms: cuBLAS/cuBLASLt
# workspaces (allocated through torch's caching allocator since torch 2.3), rotary
# buffers, ids and labels.
WORKSPACE_BYTES = 64 << 20

# Measured on the H100 (qwen2.5-0.5b, 152k vocabulary, logits dominate): 12.0 bytes per
# logit element at the loss's backward, i.e. the saved fp32 log-softmax, its incoming
# gradient and the gradient of the input (memory-model.md derived 12; measured 12.03).
LOSS_BACKWARD_BYTES_PER_LOGIT = 12


@dataclass(frozen=True)
class Assumptions:
    """Facts about the training loop that the run config doesn't hold.

    The defaults describe ``engine/train.py`` (HF ``Trainer``): fused AdamW on CUDA, a
    padding collator (``pad_to_multiple_of=8``), quantized bases prepared with PEFT's
    ``prepare_model_for_kbit_training``, backward outside autocast.

    Attributes:
        adamw_impl: ``fused`` (Trainer's ``adamw_torch_fused``) or ``foreach`` (plain
            ``torch.optim.AdamW()``, which keeps a full-size ``sqrt(exp_avg_sq)`` temporary
            per step; the H100 table used it).
        attention_mask: ``auto`` (a mask when padding can occur: batch > 1, packing, prefix
            tuning), ``never`` (equal-length batches, as in the H100 table) or ``always``.
        kbit_prepare: Quantized bases go through ``prepare_model_for_kbit_training``.
        pad_multiple: Sequences are padded up to a multiple of this.
        cuda_context_bytes: Memory the driver holds outside torch's allocator.
        dropout_mask_bytes: Bytes per dropout-mask element (1 on CUDA; 0 = input's size, CPU).
    """

    adamw_impl: str = "fused"
    attention_mask: str = "auto"
    kbit_prepare: bool = True
    pad_multiple: int = 8
    cuda_context_bytes: int = CUDA_CONTEXT_BYTES
    dropout_mask_bytes: int = 1


# The loop the H100 table was measured with (docs/memory.md): plain PyTorch, default
# (foreach) torch.optim.AdamW, random ids of exactly seq_len, no attention mask.
MEASURED_LOOP = Assumptions(adamw_impl="foreach", attention_mask="never", pad_multiple=1)


@dataclass(frozen=True)
class Setup:
    """The run-config values the estimate reads, plus :class:`Assumptions`."""

    method: str
    load_in: str
    mixed_precision: str
    gradient_checkpointing: bool
    optimizer: str
    batch_size: int
    seq_len: int
    gradient_accumulation_steps: int
    lora_r: int
    lora_dropout: float
    attn_implementation: str
    packing: bool
    weight_decay: float
    assumptions: Assumptions = Assumptions()

    @classmethod
    def from_config(cls, cfg: RunConfig, assumptions: Assumptions | None = None) -> Setup:
        return cls(method=cfg.method, load_in=cfg.load_in, mixed_precision=cfg.mixed_precision,
                   gradient_checkpointing=cfg.gradient_checkpointing, optimizer=cfg.optimizer,
                   batch_size=cfg.batch_size, seq_len=cfg.seq_len,
                   gradient_accumulation_steps=cfg.gradient_accumulation_steps, lora_r=cfg.lora_r,
                   lora_dropout=cfg.lora_dropout, attn_implementation=cfg.attn_implementation,
                   packing=cfg.packing, weight_decay=cfg.weight_decay,
                   assumptions=assumptions or Assumptions())

    def with_(self, **changes: object) -> Setup:
        return replace(self, **changes)

    # ---- derived dtypes
    @property
    def quantized(self) -> bool:
        return self.load_in in ("nf4", "int8")

    @property
    def autocast_bytes(self) -> int:
        """2 under bf16/fp16 autocast, 0 without autocast."""
        return 2 if self.mixed_precision in ("bf16", "fp16") else 0

    @property
    def compute_bytes(self) -> int:
        # engine/precision.py compute_dtype: bf16 (or fp16 with fp16 AMP), never bnb's fp32 default.
        return 2

    @property
    def base_bytes(self) -> int:
        """Bytes per element of the non-quantized base parameters.

        Quantized loads keep embeddings, head, norms and biases in the compute dtype, and
        ``prepare_model_for_kbit_training`` casts every non-``Params4bit`` fp16/bf16
        parameter to fp32 (``peft/utils/other.py``).
        """
        if self.quantized:
            return 4 if self.assumptions.kbit_prepare else self.compute_bytes
        return 4 if self.load_in == "fp32" else 2

    @property
    def numerics(self) -> Numerics:
        kind = self.load_in if self.quantized else "dense"
        return Numerics(autocast=self.autocast_bytes, weight_bytes=self.base_bytes, linear_kind=kind,
                        compute_bytes=self.compute_bytes, embed_bytes=self.base_bytes,
                        mask_bytes=self.assumptions.dropout_mask_bytes)

    def tokens_per_sequence(self, st: ModelStructure) -> int:
        """Positions per sequence: padded length plus prompt-tuning's virtual tokens."""
        m = max(1, self.assumptions.pad_multiple)
        return int(math.ceil(self.seq_len / m) * m) + st.virtual_tokens

    def masked(self, st: ModelStructure) -> bool:
        # Prefix tuning's keys are offset from the queries: causal masking can't be left
        # to SDPA's is_causal, so transformers materialises a mask (masking_utils).
        if st.prefix_tokens > 0:
            return True
        mode = self.assumptions.attention_mask
        if mode != "auto":
            return mode == "always"
        # Padding to the longest record (batch > 1) and packing's per-record positions
        # also materialise one.
        return self.batch_size > 1 or self.packing


# ---------------------------------------------------------------- Parameters and states
def adapter_params(st: ModelStructure, s: Setup) -> int:
    """Parameters added by the method (LoRA, IA3, prompts, bottleneck adapters)."""
    return st.total_at(s.lora_r) - st.base_params


def weight_bytes(st: ModelStructure, s: Setup) -> int:
    """Base weights in their load format, plus the method's new parameters in fp32.

    Quantized: bnb packs the decoder blocks' linear weights (NF4: 0.5 B/param; LLM.int8:
    1 B/param, ``Int8Params.CB``) and leaves embeddings, head (``get_keys_to_not_convert``),
    norms and biases in ``base_bytes``. PEFT keeps adapters in fp32
    (``autocast_adapter_dtype=True``), as does engine/methods/bottleneck.py.
    """
    if s.quantized:
        lin = st.n_layers * st.layer_linear_weights
        packed = lin // 2 if s.load_in == "nf4" else lin
        base = packed + (st.base_params - lin) * s.base_bytes
    else:
        base = st.base_params * s.base_bytes
    return base + adapter_params(st, s) * 4


def quant_constant_bytes(st: ModelStructure, s: Setup) -> int:
    """Quantization constants stored next to the packed weights.

    NF4 with double quantization (engine/precision.py): one uint8 absmax per 64-weight
    block plus one fp32 absmax per 256 blocks (bnb ``quantize_4bit`` with
    ``compress_statistics``): P_lin * (1/64 + 4/16384). LLM.int8: one fp32 scale per output
    row (``SCB``).
    """
    lin = st.n_layers * st.layer_linear_weights
    if s.load_in == "nf4":
        return lin // 64 + (lin // (64 * 256)) * 4
    if s.load_in == "int8":
        return 4 * st.n_layers * sum(spec.d_out for spec in st.layer_linears)
    return 0


def _trainable_param_bytes(st: ModelStructure, s: Setup) -> int:
    # Base parameters train in their load dtype (full/freeze); every new one is fp32.
    return 4 if st.base_trainable == 0 else s.base_bytes


def gradient_bytes(st: ModelStructure, s: Setup) -> int:
    """Gradients take their parameter's dtype (memory-model.md, per-trainable-parameter table)."""
    base = st.base_trainable
    rest = st.trainable_at(s.lora_r) - base
    return base * s.base_bytes + rest * 4


def optimizer_state_bytes(st: ModelStructure, s: Setup) -> int:
    """Optimizer states for the trainable tensors.

    torch AdamW: ``exp_avg`` and ``exp_avg_sq`` via ``zeros_like(p)``, so 2 x the parameter's
    dtype. bnb 8-bit AdamW (paged or not): two uint8 states plus two fp32 absmax per
    256-element block, but tensors under ``min_8bit_size`` = 4096 elements keep fp32 states
    (bnb ``Optimizer8bit.init_state``), and so does every ``nn.Embedding`` weight: the Trainer
    registers ``optim_bits=32`` for them (``Trainer.create_optimizer``; measured on the H200,
    2026-12-04: full fine-tuning of Llama-3.2-1B's shape allocated 1.46 GiB more than 8-bit
    states of its 128k x 2048 embedding). Paged states count too: they stay on the GPU until
    memory runs out. HF's ``sgd`` has momentum 0: no state.
    """
    if s.optimizer == "sgd":
        return 0
    if s.optimizer == "adamw":
        if st.base_trainable:
            return 2 * (st.base_trainable * s.base_bytes + (st.trainable_at(s.lora_r) - st.base_trainable) * 4)
        return 2 * 4 * st.trainable_at(s.lora_r)
    return (sum(tensor_state_bytes(s.optimizer, numel, 4) * count for numel, count in st.trainable_tensors_at(s.lora_r))
            + sum(tensor_state_bytes(s.optimizer, numel, 4, embedding=True) * count
                  for numel, count in st.trainable_embedding_sizes))


def tensor_state_bytes(optimizer: str, numel: int, element_size: int, *, embedding: bool = False) -> int:
    """The optimizer state of one trainable tensor of ``numel`` elements of ``element_size`` bytes.

    torch AdamW: two moments in the tensor's dtype. bnb 8-bit AdamW: two uint8 moments, an fp32
    absmax per block of 256 and a 256-entry fp32 code table for each, but 32-bit moments below
    ``min_8bit_size`` elements and for an ``nn.Embedding`` weight (``embedding``: the Trainer's
    ``optim_bits=32`` override) (checked against bitsandbytes' own state in tests/engine/test_disk.py).
    SGD (momentum 0): none.
    """
    if optimizer == "sgd":
        return 0
    if optimizer in ("adamw_8bit", "paged_adamw_8bit"):
        if numel < MIN_8BIT_SIZE or embedding:
            return 8 * numel
        return 2 * numel + 2 * 4 * math.ceil(numel / 256) + 2 * 4 * 256
    return 2 * numel * element_size


def autocast_cache_bytes(st: ModelStructure, s: Setup) -> int:
    """Autocast's cached low-precision copies of trainable fp32 weights, alive until the
    forward pass leaves autocast (``aten/src/ATen/autocast_mode.cpp`` caches casts of leaves
    that require grad). Full fine-tuning of an fp32 model with AMP: +2 B/param
    (memory-model.md "18 B/param"). Adapters' fp32 weights are cached the same way.
    """
    ac = s.autocast_bytes
    if not ac:
        return 0
    base = st.base_trainable_linear if s.base_bytes != ac else 0
    return (base + adapter_params(st, s)) * ac


# ---------------------------------------------------------------- Activations
@dataclass(frozen=True)
class Activations:
    """Saved activations and related per-step quantities, in bytes for the whole batch.

    Attributes:
        saved: Everything autograd keeps at the end of the forward pass (all blocks, or
            their checkpointed inputs, plus the final norm and head).
        recompute: One block's activations rebuilt in backward (checkpointing only).
        weight_copies_forward: Cast weight copies alive at the end of the forward pass.
        weight_copies_backward: Cast weight copies backward still holds.
        mlp_bytes: Bytes per element of the MLP intermediates (for backward temporaries).
        residual_bytes: Bytes per element of the residual stream.
        head: The final norm and head's result.
        tokens: Batch positions (b x positions per sequence).
    """

    saved: int
    recompute: int
    weight_copies_forward: int
    weight_copies_backward: int
    mlp_bytes: int
    residual_bytes: int
    head: HeadResult
    tokens: int


def activations(st: ModelStructure, s: Setup) -> Activations:
    """Replay every decoder block (activations.py) and add the final norm and head.

    With gradient checkpointing (HF ``gradient_checkpointing_enable``, non-reentrant, one
    checkpoint per block) a block keeps only its input, h x (2 or 4) bytes per token
    (measured 2.0 for a bf16 residual stream, 4.0 for fp32), plus what its ops keep outside
    ``save_for_backward`` (LLM.int8's inputs), and one block is rebuilt at a time in backward.
    Freeze keeps nothing below the lowest trainable block.
    """
    num = s.numerics
    positions = s.tokens_per_sequence(st)
    tokens = s.batch_size * positions
    res = s.base_bytes
    # With checkpointing, engine/precision.load_model (and prepare_model_for_kbit_training)
    # call enable_input_require_grads: the embedding output requires grad, so even frozen
    # lower blocks (freeze) keep their checkpointed inputs.
    rg = st.embed_trainable or st.virtual_tokens > 0 or s.gradient_checkpointing
    masked = s.masked(st)
    # A model without SDPA support (Gemma 2) refuses "sdpa" at load; it trains eager.
    eager = s.attn_implementation == "eager" or not st.supports_sdpa
    saved = 0.0
    ckpt_inputs = 0.0
    recompute = 0.0
    copies = 0
    mlp_bytes = res
    first_trainable = st.n_layers - st.trainable_layers
    for i in range(st.n_layers):
        plan = LayerPlan(trainable=i >= first_trainable, input_requires_grad=rg, lora=st.lora_modules,
                         lora_rank=s.lora_r, lora_dropout=s.lora_dropout > 0, dora=st.dora, ia3=st.ia3_modules,
                         adapters=st.adapters_per_layer, adapter_size=st.adapter_size,
                         kv_extra=st.prefix_tokens, masked=masked, eager=eager, seq=positions)
        r = layer_activations(st, num, plan, res)
        needed = r.output_requires_grad
        if needed:
            saved += r.saved
            copies += r.weight_copies
            ckpt_inputs += res * st.hidden + r.escaped
            recompute = max(recompute, r.saved)
            mlp_bytes = r.mlp_bytes
        res, rg = r.output_bytes, r.output_requires_grad
    head_w = 4 if (s.quantized and s.assumptions.kbit_prepare) else s.base_bytes
    head = head_activations(st, num, res, rg, head_w)
    cache = autocast_cache_bytes(st, s)
    if s.gradient_checkpointing:
        body, body_copies, rebuilt = ckpt_inputs, 0, recompute
        # Only the head (outside the checkpoints) keeps its cast weight through backward.
        head_copy = st.hidden * st.vocab * s.autocast_bytes if (
            st.head_trainable and s.autocast_bytes and head_w != s.autocast_bytes) else 0
        kept = head_copy + head.weight_copy
    else:
        body, body_copies, rebuilt = saved, copies, 0.0
        kept = cache + body_copies + head.weight_copy
    return Activations(
        saved=int((body + head.saved_per_token) * tokens),
        recompute=int(rebuilt * tokens),
        weight_copies_forward=int(cache + body_copies + head.weight_copy),
        weight_copies_backward=int(kept),
        mlp_bytes=mlp_bytes,
        residual_bytes=res,
        head=head,
        tokens=tokens,
    )


def logits_and_loss_bytes(st: ModelStructure, s: Setup, act: Activations) -> tuple[int, int]:
    """``(forward, backward)`` bytes of the logits and the cross-entropy loss.

    transformers' ``ForCausalLMLoss`` calls ``logits.float()``; ``cross_entropy`` keeps the
    fp32 log-softmax. Forward peak: logits + fp32 copy + log-softmax (10 B per element for
    bf16 logits, measured on CPU). Backward: 12 B per element (measured on the H100). The
    Trainer drops the model output before backward, so the logits themselves are gone.
    """
    elems = act.tokens * st.vocab
    lb = act.head.logits_bytes
    # Gemma 2's final soft-capping (``tanh(logits / cap) * cap``) keeps tanh's output until
    # its backward, after the loss's (from modeling_gemma2.py; not measured on a GPU).
    capped = elems * lb if st.final_logit_softcap else 0
    forward = elems * (lb + (4 if lb != 4 else 0) + 4) + capped
    return forward, elems * LOSS_BACKWARD_BYTES_PER_LOGIT + capped


# ---------------------------------------------------------------- Temporaries
def backward_temp_bytes(st: ModelStructure, s: Setup, act: Activations) -> int:
    """Gradients of one block's intermediates while it is differentiated (estimate).

    The MLP is the largest: ``mul``'s backward holds grad_out, grad_act and grad_up (3 x I
    per token), plus the incoming and outgoing residual gradients. Trainable weights also
    get a low-precision weight gradient before it is accumulated into ``.grad``. Not
    measured separately; on the H100 cases the loss or the optimizer step was larger.
    """
    per_token = 3 * st.intermediate * act.mlp_bytes + 2 * st.hidden * act.residual_bytes
    weight_grad = 0
    if st.base_trainable and st.layer_linears:
        weight_grad = max(x.d_in * x.d_out for x in st.layer_linears) * (s.autocast_bytes or s.base_bytes)
    return per_token * act.tokens + weight_grad


def bnb_temp_bytes(st: ModelStructure, s: Setup) -> int:
    """bitsandbytes dequantizes a whole weight to multiply in forward and backward.

    NF4: ``MatMul4Bit`` (``dequantize_4bit(B).to(A.dtype)``) -> 2 x d_in x d_out for the
    largest linear. LLM.int8 backward: ``CB.to(A.dtype) * SCB`` in the input's dtype (fp32
    after prepare) -> 4 x d_in x d_out.
    """
    if not s.quantized or not st.layer_linears:
        return 0
    largest = max(x.d_in * x.d_out for x in st.layer_linears)
    per = s.compute_bytes if s.load_in == "nf4" else (4 if s.assumptions.kbit_prepare else 2)
    return largest * per


def dora_temp_bytes(st: ModelStructure, s: Setup) -> int:
    """DoRA builds full-size fp32 matrices per module each forward (``lora/dora.py``): the
    LoRA product B @ A, the weight cast to the input's dtype and their sum for the norm."""
    if not st.dora or not st.lora_modules:
        return 0
    largest = max(d_in * d_out for _, d_in, d_out in st.lora_modules)
    return 3 * 4 * largest


def optimizer_step_temp_bytes(st: ModelStructure, s: Setup) -> int:
    """Temporaries of ``optimizer.step()``.

    Fused AdamW (``_fused_adamw_``, Trainer's default on CUDA): none. foreach AdamW
    (``torch/optim/adamw.py`` ``_multi_tensor_adamw``): ``exp_avg_sq_sqrt =
    torch._foreach_sqrt(exp_avg_sqs)``, one state-sized copy of every tensor (measured:
    the fp32 full fine-tune peaked at exactly W + G + 2 states + 1 state = 20 B/param).
    bnb 8-bit: in-place kernels. foreach SGD with weight decay: ``_foreach_add(grads,
    params)`` copies the gradients.
    """
    if s.optimizer == "adamw" and s.assumptions.adamw_impl == "foreach":
        return optimizer_state_bytes(st, s) // 2
    if s.optimizer == "sgd" and s.weight_decay > 0:
        return gradient_bytes(st, s)
    return 0


def embedding_backward_temp_bytes(st: ModelStructure, s: Setup) -> int:
    """A trainable tied embedding gets two gradients (head side first, then input side) that
    are summed into ``.grad``: one extra V x h tensor at the end of backward."""
    if st.embed_trainable and st.tied:
        # The embedding's own gradient (embedding_dense_backward) is in its weight's dtype;
        # autocast doesn't cast embeddings. Measured on the H200 (2026-12-04): an fp32 model
        # under bf16 autocast allocated V x h x 4 here, not x 2.
        return st.vocab * st.hidden * s.base_bytes
    return 0


def token_matrix_bytes(st: ModelStructure, s: Setup) -> int:
    """One V x h matrix as PEFT's trainable tokens build it (``add_tokens`` with lora/qlora): each
    forward ``index_copy``s the trained rows into a copy of the embedding (and of the head, or of
    the tied embedding for the head). The head's copy is saved for backward; backward makes a
    dense V x h gradient for each, from which only the trained rows are kept. In the weights'
    dtype: fp32 on a k-bit base, which PEFT's preparation upcasts the embedding and head to.
    """
    if not st.token_rows:
        return 0
    width = 4 if (s.quantized and s.assumptions.kbit_prepare) else s.base_bytes
    return st.vocab * st.hidden * width


def allocator_slack_bytes(transient: int, largest: int) -> int:
    """Reserved but unallocated memory in torch's caching allocator at the peak.

    Fitted on the 8 H100 cases (docs/memory.md): ``SLACK_FIXED + SLACK_LARGEST x largest
    transient tensor + SLACK_TRANSIENT x all transient memory``.
    """
    return int(SLACK_FIXED + SLACK_LARGEST * largest + SLACK_TRANSIENT * transient)


def workspace_bytes(s: Setup) -> int:
    """cuBLAS workspaces and small per-step buffers inside torch's allocator (measured)."""
    return WORKSPACE_BYTES


def cuda_context_bytes(s: Setup) -> int:
    """CUDA context and library workspaces outside torch's allocator (measured, see above)."""
    return s.assumptions.cuda_context_bytes
