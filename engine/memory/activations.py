"""Saved activations: what autograd keeps for backward, per token, traced op by op.

Rather than one constant per architecture (Korthikanti et al. 2022, arXiv 2205.05198, give
``34 + 5as/h`` bytes per token and hidden unit for a GPT), the forward pass of one decoder
block is replayed on symbolic tensors that carry only ``(elements per token, bytes per
element, requires_grad)``. Each op saves what its PyTorch backward formula needs, and only
when an input requires grad, as autograd does (``derivatives.yaml``: ``mm`` keeps ``self``
only when the weight needs a gradient, so a frozen linear keeps just its weight). A saved
tensor counts once, however many ops keep it.

This reproduces the per-layer counts measured with ``saved_tensors_hooks`` in
``../shared/notes/memory-model.md`` (full fine-tuning: 20h + 4h_kv + 8I bytes per token
with SDPA; +46% for LoRA without autocast; the fp32 residual stream after
``prepare_model_for_kbit_training``; eager attention's fp32 softmax) and the H100 table in
``docs/memory.md``; ``tests/engine/test_memory.py`` checks it against autograd on a tiny
model for every method.

Sources for individual ops are cited inline: HF ``modeling_llama.py`` (RMSNorm upcast,
SDPA/eager attention, ``repeat_kv``), PEFT ``tuners/lora/layer.py`` (adapter input cast to
the fp32 adapter dtype, dropout), PEFT ``tuners/ia3/layer.py``, PEFT ``tuners/lora/dora.py``,
bitsandbytes ``autograd/_functions.py`` (``MatMul4Bit`` keeps no activation;
``MatMul8bitLt`` keeps its input ``A``), transformers ``integrations/sdpa_attention.py``
(GQA inside SDPA only without a mask).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from engine.memory.structure import _FUSED_ACTS, ModelStructure


@dataclass(frozen=True)
class Numerics:
    """How tensors are typed during a training step.

    Attributes:
        autocast: Bytes of the autocast dtype (2 for bf16/fp16), or 0 without autocast.
        weight_bytes: Bytes per element of non-quantized base weights (after any upcast).
        linear_kind: ``dense``, ``nf4`` or ``int8`` for the block's linear layers.
        compute_bytes: bitsandbytes compute dtype bytes (quantized linears).
        embed_bytes: Bytes of the embedding output (the residual stream starts there).
        mask_bytes: Bytes per element of a dropout mask: 1 on CUDA (``native_dropout``
            keeps a bool mask), the input's size on the CPU (``input * noise`` keeps noise).
        fp32_autocast_ops: Autocast runs ``layer_norm`` and ``pow`` in fp32 (CUDA's lists;
            CPU autocast doesn't).
    """

    autocast: int
    weight_bytes: int
    linear_kind: str
    compute_bytes: int
    embed_bytes: int
    mask_bytes: int = 1
    fp32_autocast_ops: bool = True


@dataclass(frozen=True)
class LayerPlan:
    """The method-specific facts of one decoder block (hashable, so results are cached).

    Attributes:
        trainable: The block's base weights train (full, or a top layer under freeze).
        input_requires_grad: The residual stream entering the block requires grad.
        lora: ``(role, d_in, d_out)`` of LoRA-wrapped linears.
        lora_rank: LoRA rank r.
        lora_dropout: LoRA dropout is on (> 0).
        dora: DoRA magnitude vectors are on.
        ia3: ``(role, d_in, d_out, feedforward)`` of IA3-wrapped linears.
        adapters: Bottleneck adapters (1 after the MLP, 2 also after attention).
        adapter_size: Their width m.
        kv_extra: Prefix-tuning positions added to keys and values.
        masked: An explicit attention mask reaches SDPA (padding, packing, prefix tuning),
            which disables GQA inside SDPA, so keys and values are repeated to all heads.
        eager: Eager attention (materialised scores) instead of SDPA.
        seq: Query length s (eager's scores are s x (s + kv_extra)).
    """

    trainable: bool
    input_requires_grad: bool
    lora: tuple[tuple[str, int, int], ...] = ()
    lora_rank: int = 0
    lora_dropout: bool = False
    dora: bool = False
    ia3: tuple[tuple[str, int, int, bool], ...] = ()
    adapters: int = 0
    adapter_size: int = 0
    kv_extra: int = 0
    masked: bool = False
    eager: bool = False
    seq: int = 512


@dataclass(frozen=True)
class LayerResult:
    """Bytes per token of one decoder block.

    Attributes:
        saved: Tensors autograd keeps for backward (activations).
        weight_copies: Autocast/DoRA weight copies that autograd keeps (bytes per *layer*,
            not per token) because the op's input requires grad.
        output_bytes: Bytes per element of the block's output (the residual stream).
        output_requires_grad: The block's output requires grad.
        mlp_bytes: Bytes per element of the MLP's intermediate tensors.
        escaped: Part of ``saved`` that gradient checkpointing can't drop: tensors an autograd
            Function keeps as attributes of its ``ctx`` rather than through
            ``save_for_backward``, so ``saved_tensors_hooks`` never see them (bitsandbytes
            ``MatMul8bitLt``'s input).
    """

    saved: float
    weight_copies: int
    output_bytes: int
    output_requires_grad: bool
    mlp_bytes: int
    escaped: float = 0.0


class _T:
    """A symbolic tensor: elements per token, bytes per element, requires_grad."""

    __slots__ = ("n", "b", "rg")

    def __init__(self, n: float, b: int, rg: bool):
        self.n, self.b, self.rg = n, b, rg


class _Tape:
    """Collects what autograd would save; a tensor kept by several ops counts once."""

    def __init__(self) -> None:
        self._saved: dict[int, _T] = {}
        self._escaped: dict[int, _T] = {}
        self.weight_copies = 0

    def new(self, n: float, b: int, rg: bool) -> _T:
        return _T(n, b, rg)

    def save(self, *tensors: _T | None, escapes: bool = False) -> None:
        """Keep ``tensors`` for backward; ``escapes``: kept on ``ctx`` outside ``save_for_backward``."""
        for t in tensors:
            if t is not None:
                self._saved[id(t)] = t
                if escapes:
                    self._escaped[id(t)] = t

    def cast(self, t: _T, b: int) -> _T:
        # ``.to(dtype)`` returns the same tensor when the dtype already matches.
        return t if t.b == b else _T(t.n, b, t.rg)

    @property
    def saved_bytes(self) -> float:
        return sum(t.n * t.b for t in self._saved.values())

    @property
    def escaped_bytes(self) -> float:
        return sum(t.n * t.b for t in self._escaped.values())


def _promote(a: int, b: int) -> int:
    # Elementwise ops outside autocast's lists promote (bf16 x fp32 -> fp32).
    return max(a, b)


class _Block:
    """Replays one Llama-style decoder block on symbolic tensors."""

    def __init__(self, st: ModelStructure, num: Numerics, plan: LayerPlan):
        self.st, self.num, self.plan = st, num, plan
        self.tape = _Tape()
        self.lora = {role: (d_in, d_out) for role, d_in, d_out in plan.lora}
        self.ia3 = {role: (d_in, d_out, ff) for role, d_in, d_out, ff in plan.ia3}
        self.mlp_bytes = 0

    # ---- ops
    def norm(self, x: _T, trainable: bool | None = None, n: float | None = None) -> _T:
        """The block's norm over ``n`` elements per token (default h), by ``st.norm_kind``.

        ``rms``: HF ``LlamaRMSNorm``: ``x.float()``, ``* rsqrt(mean(x^2))``, ``.to(in)``,
        ``weight *``. ``rms_fp32``: ``GemmaRMSNorm`` (``* (1 + w)``) and ``Olmo2RMSNorm``
        (``w *``) multiply in fp32, then cast back. ``layer``: ``nn.LayerNorm``
        (``native_layer_norm`` keeps its input; CUDA autocast runs it in fp32 on a cast copy).
        ``layer_py``: ``CohereLayerNorm``: ``x - mean`` twice in fp32, then ``w.float() *``.
        """
        t = self.tape
        n = self.st.hidden if n is None else n
        trainable = self.plan.trainable if trainable is None else trainable
        kind = self.st.norm_kind
        if kind == "layer":
            ac = self.num.autocast and self.num.fp32_autocast_ops
            xin = t.cast(x, 4) if ac else x
            if x.rg or trainable:
                t.save(xin)
            return t.new(n, 4 if ac else _promote(x.b, self.num.weight_bytes), x.rg or trainable)
        if kind == "layer_py":
            if x.rg:
                t.save(t.new(n, 4, True), t.new(n, 4, True))  # pow's and mul's (x - mean)
            if trainable:
                t.save(t.new(n, 4, True))
            return t.new(n, x.b, x.rg or trainable)
        xf = t.cast(x, 4)
        if x.rg:
            t.save(xf)  # pow and mul keep the fp32 input (rsqrt's output is 1 per token)
        normed = t.new(n, 4, x.rg)
        if kind == "rms_fp32":
            if trainable:
                t.save(normed)  # the weight's gradient needs the fp32 normalised input
            return t.new(n, x.b, x.rg or trainable)
        n2 = t.cast(normed, x.b)
        if trainable:
            t.save(n2)  # weight's gradient needs the normalised input
        return t.new(n, _promote(self.num.weight_bytes, n2.b), x.rg or trainable)

    def linear(self, x: _T, role: str, d_in: int, d_out: int, *, trainable: bool | None = None,
               kind: str | None = None, weight_bytes: int | None = None) -> _T:
        t, num = self.tape, self.num
        ac = num.autocast
        trainable = self.plan.trainable if trainable is None else trainable
        kind = kind or num.linear_kind
        wb = num.weight_bytes if weight_bytes is None else weight_bytes
        if kind == "nf4" and not trainable:
            # bnb Linear4bit: input cast to the compute dtype, output cast back to the input's
            # dtype; MatMul4Bit saves only the packed weight (ctx.tensors = (None, B)).
            xc = t.cast(x, num.compute_bytes)
            y = t.new(d_out, num.compute_bytes, x.rg)
            out = t.cast(y, x.b)
            del xc
        elif kind == "int8" and not trainable:
            # bnb MatMul8bitLt keeps A (its input) whenever an input needs grad, as
            # ``ctx.tensors``: an attribute, which gradient checkpointing doesn't drop
            # (measured on the H200, 2026-12-04: +1.7 GiB over the checkpointed inputs alone).
            if x.rg:
                t.save(x, escapes=True)
            out = t.new(d_out, x.b, x.rg)
        elif ac:
            xc = t.cast(x, ac)
            out = t.new(d_out, ac, x.rg or trainable)
            if trainable:
                t.save(xc)
            if x.rg and wb != ac and not trainable:
                # A frozen fp32 weight is cast per call (autocast caches only leaves that
                # require grad) and the copy is kept for grad_input. Trainable weights'
                # cached copies are counted from the structure (terms.autocast_copies).
                t.weight_copies += d_in * d_out * ac
        else:
            out = t.new(d_out, wb, x.rg or trainable)
            if trainable:
                t.save(x)
        if role in self.lora:
            out = self._lora(x, out, d_in, d_out)
        if role in self.ia3:
            out = self._ia3_out(out) if not self.ia3[role][2] else out
        return out

    def _lora(self, x: _T, base_out: _T, d_in: int, d_out: int) -> _T:
        """PEFT LoRA: x cast to the fp32 adapter dtype, dropout, A, B, scaled, added."""
        t, num, plan = self.tape, self.num, self.plan
        ac = num.autocast
        # PEFT ``_cast_input_dtype`` (dense) casts to lora_A's fp32 dtype; bnb layers under
        # autocast skip the cast (``requires_conversion = not torch.is_autocast_enabled()``).
        xa = x if (ac and num.linear_kind != "dense") else t.cast(x, 4)
        if plan.lora_dropout:
            if xa.rg:  # dropout's backward needs its mask only when its input needs grad
                t.save(t.new(d_in, num.mask_bytes or xa.b, False))
            d = t.new(d_in, xa.b, xa.rg)
        else:
            d = xa
        r = plan.lora_rank
        if ac:
            dc = t.cast(d, ac)
            t.save(dc)
            a = t.new(r, ac, True)
            t.save(a)
            b = t.new(d_out, ac, True)
        else:
            t.save(d)
            a = t.new(r, 4, True)
            t.save(a)
            b = t.new(d_out, 4, True)
        if plan.dora:
            # dora.py: (mag_norm_scale - 1) * base_result + mag_norm_scale * lora_result * s:
            # both products keep their tensor operand for the magnitude's gradient.
            t.save(base_out, b)
            if plan.lora_dropout:
                # With dropout the base output is recomputed as F.linear(x, weight) on a cast
                # weight copy, which backward keeps.
                t.weight_copies += d_in * d_out * (ac or 4)
        res = t.new(d_out, _promote(base_out.b, b.b), True)
        return t.cast(res, base_out.b) if res.b != base_out.b else res

    def _ia3_in(self, x: _T, role: str) -> _T:
        """IA3 on a feed-forward module scales its input: ``x.to(fp32) * ia3_l``."""
        t = self.tape
        xf = t.cast(x, 4)
        t.save(xf)
        return t.cast(t.new(x.n, 4, True), x.b)

    def _ia3_out(self, out: _T) -> _T:
        """IA3 on keys/values scales the output: ``(result * ia3_l).to(result.dtype)``."""
        t = self.tape
        t.save(out)
        return t.cast(t.new(out.n, _promote(out.b, 4), True), out.b)

    def lin(self, x: _T, role: str) -> _T:
        spec = self._spec(role)
        if role in self.ia3 and self.ia3[role][2]:
            x = self._ia3_in(x, role)
        return self.linear(x, role, spec[0], spec[1])

    def _spec(self, role: str) -> tuple[int, int]:
        for s in self.st.layer_linears:
            if s.role == role:
                return s.d_in, s.d_out
        st = self.st
        return {"q": (st.hidden, st.q_dim), "k": (st.hidden, st.kv_dim), "v": (st.hidden, st.kv_dim),
                "o": (st.q_dim, st.hidden), "gate": (st.hidden, st.intermediate),
                "up": (st.hidden, st.intermediate), "down": (st.intermediate, st.hidden),
                "fc1": (st.hidden, st.intermediate), "fc2": (st.intermediate, st.hidden)}[role]

    def attention(self, q: _T, k: _T, v: _T) -> _T:
        t, st, plan, num = self.tape, self.st, self.plan, self.num
        # RoPE: q*cos + rotate_half(q)*sin keeps only cos/sin (no grad) -> new q, k.
        q = t.new(q.n, q.b, q.rg)
        k = t.new(k.n, k.b, k.rg)
        ratio = (plan.seq + plan.kv_extra) / plan.seq
        if plan.kv_extra:
            # Prefix keys/values are concatenated in front (DynamicCache.update -> torch.cat).
            k = t.new(k.n * ratio, k.b, True)
            v = t.new(v.n * ratio, v.b, True)
        rg = q.rg or k.rg or v.rg
        groups = st.n_heads // max(1, st.n_kv_heads)
        if plan.eager or (plan.masked and groups > 1):
            # repeat_kv (expand + reshape copies): eager always; SDPA only with a mask.
            k = t.new(k.n * groups, k.b, k.rg)
            v = t.new(v.n * groups, v.b, v.rg)
        ac = num.autocast
        if not plan.eager:
            qc, kc, vc = (t.cast(x, ac) for x in (q, k, v)) if ac else (q, k, v)
            out = t.new(st.q_dim, ac or q.b, rg)
            if rg:
                # Flash/efficient backward needs q, k, v, out and the fp32 logsumexp; the
                # output is already laid out (b, s, heads, d), so o_proj's input is it.
                t.save(qc, kc, vc, out, t.new(st.n_heads, 4, False))
            return out
        s_kv = plan.seq + plan.kv_extra
        qc, kc = (t.cast(x, ac) for x in (q, k)) if ac else (q, k)
        scores = t.new(st.n_heads * s_kv, ac or q.b, q.rg or k.rg)
        self._matmul(qc, kc)
        if st.attn_softcap and scores.rg:
            t.save(t.new(scores.n, scores.b, True))  # Gemma 2: tanh(scores / cap) keeps its output
        # softmax(..., dtype=float32) keeps its fp32 output; .to(query dtype) is new.
        probs32 = t.new(scores.n, 4, scores.rg)
        if scores.rg:
            t.save(probs32)
        probs = t.cast(probs32, q.b)
        pc = t.cast(probs, ac) if ac else probs
        vc = t.cast(v, ac) if ac else v
        self._matmul(pc, vc)
        out = t.new(st.q_dim, ac or q.b, rg)
        # transpose(1, 2).contiguous(): a new tensor, which o_proj keeps when it trains.
        return t.new(out.n, out.b, rg)

    def _matmul(self, a: _T, b: _T) -> None:
        # mm's backward: grad_a needs b, grad_b needs a.
        if a.rg:
            self.tape.save(b)
        if b.rg:
            self.tape.save(a)

    def act(self, x: _T) -> _T:
        """The MLP's activation: one PyTorch op keeps its input; ``gelu_new`` (a Python tanh
        formula, ``transformers/activations.py``) keeps four tensors, in fp32 on CUDA under
        autocast (``pow`` is on its fp32 list)."""
        t = self.tape
        if self.st.mlp_act in _FUSED_ACTS:
            if x.rg:
                t.save(x)
            return t.new(x.n, x.b, x.rg)
        wide = 4 if (self.num.autocast and self.num.fp32_autocast_ops) else x.b
        if x.rg:
            t.save(t.cast(x, wide), t.new(x.n, wide, True), t.new(x.n, x.b, True), t.new(x.n, wide, True))
        return t.new(x.n, wide, x.rg)

    def mlp(self, x: _T) -> _T:
        t = self.tape
        if self.st.moe_experts:
            return self.moe(x)
        if self.st.gated_mlp:
            if any(s.role == "gate_up" for s in self.st.layer_linears):
                gu = self.lin(x, "gate_up")  # chunk(2): gate and up are views of one tensor
                g = u = t.new(gu.n / 2, gu.b, gu.rg)
                saved_gu = gu
            else:
                g, u, saved_gu = self.lin(x, "gate"), self.lin(x, "up"), None
            act = self.act(g)
            if saved_gu is not None and g.rg:
                t._saved.pop(id(g), None)
                t.save(saved_gu)  # the views keep the whole gate_up output alive
            p = t.new(g.n, _promote(act.b, u.b), act.rg or u.rg)
            if u.rg:
                t.save(act)
            if act.rg:
                t.save(saved_gu if saved_gu is not None else u)
            self.mlp_bytes = p.b
            return self.lin(p, "down")
        h1 = self.lin(x, "fc1")
        a = self.act(h1)
        self.mlp_bytes = a.b
        return self.lin(a, "fc2")

    def moe(self, x: _T) -> _T:
        """A routed mixture of experts (transformers' ``*Experts``: 3D weights, a loop over the
        experts hit): per token, ``top_k`` gathered copies through a gated expert MLP, plus the
        router's fp32 softmax and an optional shared expert (Qwen2-MoE)."""
        t, st, plan, ac = self.tape, self.st, self.plan, self.num.autocast
        k, width, h, e = st.moe_top_k or 1, st.moe_intermediate, st.hidden, st.moe_experts
        tr = plan.trainable
        if x.rg or tr:
            t.save(t.cast(x, ac) if ac else x)  # the router's linear (its weight trains in full FT)
        rg = x.rg or tr
        if rg:
            t.save(t.new(e, 4, False), t.new(2 * k, 4, False))  # softmax output; top-k weights
        b = ac or self.num.weight_bytes
        if tr or st.moe_lora_experts:
            t.save(t.new(k * h, b, False))  # each expert's gathered input (gate_up's weight grad)
        if rg:
            t.save(t.new(k * 2 * width, b, False))  # gate_up output: act keeps gate, mul keeps up
            t.save(t.new(k * width, b, False))  # act(gate), kept by the product with up
            t.save(t.new(k * h, b, False))  # the expert's output, kept by * routing weight
        if tr or st.moe_lora_experts:
            t.save(t.new(k * width, b, False))  # down's input
        if st.moe_lora_experts:
            # PEFT's ParamWrapper adds B @ A to each 3D expert weight on every forward; the
            # grouped matmuls keep those merged gate_up and down weights (measured).
            t.weight_copies += e * 3 * width * h * b
            # ... and their B and A factors cast for the batched matmul (small at low rank).
            t.weight_copies += e * 2 * plan.lora_rank * (3 * h + 3 * width) * b
        out = t.new(h, x.b, rg)
        if any(s.role == "gate" for s in st.layer_linears):  # a shared expert beside the routed ones
            g, u = self.lin(x, "gate"), self.lin(x, "up")
            act = self.act(g)
            if u.rg:
                t.save(act)
            if act.rg:
                t.save(u)
            shared = self.lin(t.new(g.n, _promote(act.b, u.b), act.rg or u.rg), "down")
            if shared.rg:
                t.save(shared, t.new(1, shared.b, False))  # sigmoid(gate) * shared
            out = t.new(h, _promote(out.b, shared.b), True)
        self.mlp_bytes = b
        return out

    def adapter(self, x: _T) -> _T:
        """Bottleneck adapter (engine/methods/bottleneck.py): x + up(act(down(x.float())))."""
        t, ac, m = self.tape, self.num.autocast, self.plan.adapter_size
        xf = t.cast(x, 4)
        xc = t.cast(xf, ac) if ac else xf
        t.save(xc)
        b = ac or 4
        down = t.new(m, b, True)
        act = t.new(m, b, True)
        t.save(down, act)  # the activation keeps its input/output, up keeps its input
        # up's output is cast back to x's dtype and added: nothing more is kept.
        return t.new(x.n, x.b, True)

    def add(self, a: _T, b: _T) -> _T:
        return self.tape.new(a.n, _promote(a.b, b.b), a.rg or b.rg)

    def attn_block(self, h: _T) -> _T:
        st, t = self.st, self.tape
        fused = any(s.role == "qkv" for s in st.layer_linears)
        if fused:
            qkv = self.lin(h, "qkv")
            q = t.new(st.q_dim, qkv.b, qkv.rg)
            k = t.new(st.kv_dim, qkv.b, qkv.rg)
            v = t.new(st.kv_dim, qkv.b, qkv.rg)
        else:
            q, k, v = self.lin(h, "q"), self.lin(h, "k"), self.lin(h, "v")
        if st.qk_norm:  # Qwen3, OLMo2, Gemma 3: RMSNorm on queries and keys before RoPE
            q, k = self.norm(q, n=st.q_dim), self.norm(k, n=st.kv_dim)
        att = self.attention(q, k, v)
        if fused:
            # Sliced q/k/v are strided: the attention output is re-laid out (a copy) before
            # o_proj, which keeps that copy when it trains (Phi-3, measured).
            att = t.new(att.n, att.b, att.rg)
        o = self.lin(att, "o")
        if self.plan.adapters >= 2:
            o = self.adapter(o)
        return o

    def mlp_block(self, h: _T) -> _T:
        m = self.mlp(h)
        if self.plan.adapters >= 1:
            m = self.adapter(m)
        return m

    def run(self, x: _T) -> _T:
        layout = self.st.layout
        if layout == "parallel":
            # Phi / Cohere: one norm feeds both branches; GPT-NeoX: one norm per branch.
            h = self.norm(x)
            o = self.attn_block(h)
            m = self.mlp_block(self.norm(x) if self.st.parallel_norms > 1 else h)
            return self.add(self.add(x, o), m)
        if layout == "post":  # OLMo2: x + norm(attn(x)), then x + norm(mlp(x))
            x2 = self.add(x, self.norm(self.attn_block(x)))
            return self.add(x2, self.norm(self.mlp_block(x2)))
        o = self.attn_block(self.norm(x))
        if layout == "sandwich":  # Gemma 2/3: norms after attention and around the MLP
            o = self.norm(o)
        x2 = self.add(x, o)
        m = self.mlp_block(self.norm(x2))
        if layout == "sandwich":
            m = self.norm(m)
        return self.add(x2, m)


@lru_cache(maxsize=4096)
def layer_activations(st: ModelStructure, num: Numerics, plan: LayerPlan, res_bytes: int) -> LayerResult:
    """Bytes per token one decoder block keeps for backward, and its output's dtype.

    Args:
        st: The model's structure.
        num: Dtypes of the step.
        plan: The block's method facts.
        res_bytes: Bytes per element of the residual stream entering the block.
    """
    block = _Block(st, num, plan)
    x = _T(st.hidden, res_bytes, plan.input_requires_grad)
    out = block.run(x)
    return LayerResult(saved=block.tape.saved_bytes, weight_copies=block.tape.weight_copies,
                       output_bytes=out.b, output_requires_grad=out.rg, mlp_bytes=block.mlp_bytes or out.b,
                       escaped=block.tape.escaped_bytes)


@dataclass(frozen=True)
class HeadResult:
    """Bytes of the final norm and output head.

    Attributes:
        saved_per_token: What the final norm and the head keep for backward.
        weight_copy: A frozen head's cast weight copy kept for backward (bytes, not per token).
        logits_bytes: Bytes per element of the logits the head returns.
    """

    saved_per_token: float
    weight_copy: int
    logits_bytes: int


@lru_cache(maxsize=1024)
def head_activations(st: ModelStructure, num: Numerics, res_bytes: int, requires_grad: bool,
                     head_weight_bytes: int) -> HeadResult:
    """The final RMSNorm and the (never quantized) output head, traced like a block.

    Args:
        st: The model's structure.
        num: Dtypes of the step.
        res_bytes: Bytes per element of the residual stream leaving the last block.
        requires_grad: Whether it requires grad.
        head_weight_bytes: Bytes per element of the head's weight (fp32 after
            ``prepare_model_for_kbit_training``, which upcasts it: ``peft/utils/other.py``).
    """
    block = _Block(st, num, LayerPlan(trainable=False, input_requires_grad=requires_grad))
    x = _T(st.hidden, res_bytes, requires_grad)
    h = block.norm(x, trainable=st.final_norm_trainable)
    logits = block.linear(h, "lm_head", st.hidden, st.vocab, trainable=st.head_trainable, kind="dense",
                          weight_bytes=head_weight_bytes)
    # A frozen fp32 head's cast copy (QLoRA after prepare: measured +2Vh); a trainable
    # head's copy is autocast-cached and counted with the other trainable weights.
    return HeadResult(saved_per_token=block.tape.saved_bytes, weight_copy=block.tape.weight_copies,
                      logits_bytes=logits.b)
