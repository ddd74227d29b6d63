"""The peak-memory estimate: terms composed over the phases of one training step.

A step's memory is highest at one of five moments; the peak is the largest of them and
the breakdown lists what is alive at that moment, so it sums exactly to the peak:

- ``forward``: end of the forward pass and loss (all activations, autocast's weight
  cache, the logits and their fp32 copies);
- ``loss backward``: the cross-entropy's backward (12 B per logit element, measured);
- ``block backward``: backward through the top block (all activations still alive, one
  block rebuilt under checkpointing, its gradient temporaries, bnb's dequantized weight);
- ``end of backward``: every gradient allocated;
- ``optimizer step``: weights, gradients, states and the step's temporaries.

Then torch's caching allocator reserves more than it hands out (``allocator_slack``) and
the CUDA context sits outside it (``cuda_context``): the result is what ``nvidia-smi``
shows. An optional per-GPU factor (``memory_calibration.json``, see
:mod:`engine.memory.history`) scales the total.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.memory import terms
from engine.memory.structure import ModelStructure, model_structure
from engine.memory.terms import GIB, Assumptions, Setup

if TYPE_CHECKING:
    from engine.config import RunConfig
    from engine.data.lengths import DataLengths
    from engine.precision import Environment

SCHEMA_VERSION = 1
BREAKDOWN_KEYS = ("weights", "quant_constants", "gradients", "optimizer_states", "autocast_weight_copies",
                  "activations", "logits_and_loss", "temporaries", "workspace", "allocator_slack", "cuda_context",
                  "gpu_correction")
# A run whose estimate is above this share of the GPU is "tight": the estimate's error band
# on the H100 table is about +-10%, so it may or may not fit.
TIGHT_SHARE = 0.90
MAX_BATCH = 65536
# A suggestion must lower the peak by at least this share to be worth a config change.
MIN_SAVING = 0.02


@dataclass(frozen=True)
class GpuInfo:
    """The GPU the estimate compares against."""

    name: str | None
    total_bytes: int
    free_bytes: int | None = None
    others_bytes: int | None = None
    """Memory other programs hold on it now (nvidia-smi; this app's workers left out), or None
    when the driver can't say."""
    others: tuple[dict[str, Any], ...] = ()
    """Those programs' compute processes, biggest first: ``{"pid", "name", "bytes"}``."""


@dataclass
class Estimate:
    """Expected peak GPU memory of one run config, as the driver (``nvidia-smi``) reports it.

    Attributes:
        peak_bytes: The peak, CUDA context and allocator slack included.
        breakdown: Name -> bytes alive at the peak; sums exactly to ``peak_bytes``.
        trainable_params: Trainable parameters, as PEFT counts them.
        total_params: All parameters (adapters included, tied embeddings once).
        gpu_bytes: The GPU's memory (detected or given), or None.
        gpu_others_bytes: Memory other programs hold on the detected GPU now (nvidia-smi), or
            None: a given GPU, no nvidia-smi, or this GPU not told apart from others.
        gpu_others: Those programs' compute processes, ``{"pid", "name", "bytes"}``.
        gpu_available_bytes: What the run can have: ``gpu_bytes`` less ``gpu_others_bytes``.
            ``fits``, ``max_batch_size``, the suggestions and the data estimate judge this.
        fits: ``yes`` (peak <= 90% of the available memory), ``tight`` (90-100%), ``no``; None
            without a GPU.
        max_batch_size: The largest micro-batch whose estimate fits in ``gpu_available_bytes``
            (0 if none does); None without a GPU.
        suggestions: Config changes that lower the peak, cumulative and in order, each
            ``{"changes", "peak_bytes", "fits", "description"}``.
        peak_phase: The moment of the step that sets the peak.
        gpu_name: The detected GPU's name.
        gpu_source: ``detected``, ``given`` or None.
        correction: The per-GPU factor applied (1.0 when none).
        measured: Peaks measured by earlier runs of an equivalent config on this machine.
        notes: Caveats (no GPU, uncalibrated terms, architecture guesses).
        notes_by_kind: The notes that say in words what other fields hold, by kind -> the
            note as it is in ``notes``: ``"gpu_others"`` (what other programs hold:
            ``gpu_others_bytes``, ``gpu_others``), ``"no_gpu_detected"`` (``gpu_bytes`` is None on
            a run config for the GPU; the note says to give ``--gpu-memory``), ``"cannot_run_here"``
            (this machine can't run the config, in the words ``train`` refuses it with; the estimate
            is still for a GPU that can). A program that shows
            those fields its own way leaves these notes out by this, not by their wording.
        disk: The run's checkpoint and ``final/`` sizes and the free space where it will be
            written (:func:`engine.disk.estimate_from_config`).
        data: The estimate with this dataset, when its records were measured (see
            :func:`data_estimate`); None when they were not.
        seq_len: The sequence length the estimate is for (the config's ``seq_len``).
    """

    peak_bytes: int
    breakdown: dict[str, int]
    trainable_params: int
    total_params: int
    gpu_bytes: int | None
    fits: str | None
    max_batch_size: int | None
    suggestions: list[dict[str, Any]]
    peak_phase: str = ""
    gpu_name: str | None = None
    gpu_source: str | None = None
    correction: float = 1.0
    measured: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    notes_by_kind: dict[str, str] = field(default_factory=dict)
    disk: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] | None = None
    seq_len: int | None = None
    gpu_others_bytes: int | None = None
    gpu_others: list[dict[str, Any]] = field(default_factory=list)
    gpu_available_bytes: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The ``estimate --json`` object (docs/memory.md "JSON output" is its contract)."""
        return {
            "schema_version": SCHEMA_VERSION,
            "peak_bytes": self.peak_bytes,
            "peak_gib": round(self.peak_bytes / GIB, 2),
            "breakdown": dict(self.breakdown),
            "peak_phase": self.peak_phase,
            "seq_len": self.seq_len,
            "trainable_params": self.trainable_params,
            "total_params": self.total_params,
            "gpu_bytes": self.gpu_bytes,
            "gpu_name": self.gpu_name,
            "gpu_source": self.gpu_source,
            "gpu_others_bytes": self.gpu_others_bytes,
            "gpu_others": [dict(o) for o in self.gpu_others],
            "gpu_available_bytes": self.gpu_available_bytes,
            "fits": self.fits,
            "max_batch_size": self.max_batch_size,
            "suggestions": [dict(s) for s in self.suggestions],
            "correction": self.correction,
            "measured": [dict(m) for m in self.measured],
            "notes": list(self.notes),
            "notes_by_kind": dict(self.notes_by_kind),
            "disk": dict(self.disk),
            "data": dict(self.data) if self.data is not None else None,
        }


# ---------------------------------------------------------------- Public API
def estimate(cfg: RunConfig, gpu_bytes: int | None = None, *, gpu_name: str | None = None,
             assumptions: Assumptions | None = None, with_measured: bool = False,
             data: DataLengths | None = None, gpu_others_bytes: int | None = None,
             gpu_others: list[dict[str, Any]] | None = None, env: Environment | None = None) -> Estimate:
    """Estimate the peak GPU memory of training ``cfg``, from config.json alone.

    Args:
        cfg: The run config.
        gpu_bytes: GPU memory to fit into; None detects the GPU (none on a CPU-only machine,
            or when the run config says ``device: cpu``).
        gpu_name: The GPU's name for the per-GPU correction, when ``gpu_bytes`` is given.
        gpu_others_bytes, gpu_others: With a given ``gpu_bytes``: memory other programs hold
            on it now and their processes (the GUI's GPU monitor passes them). A detected GPU
            asks nvidia-smi itself.
        assumptions: Training-loop facts; the default describes engine/train.py.
        with_measured: Also scan the runs folder for measured peaks of equivalent configs
            (file I/O; the GUI's live estimate leaves it off).
        data: The token lengths of the run's records (:func:`engine.data.lengths.data_lengths`):
            adds the estimate at the data's longest record (``Estimate.data``), and, when the
            config doesn't fit, ``seq_len`` cut to the data's longest record as the first,
            free, suggestion.
        env: This machine (``engine.precision.detect_environment``): when it can't run ``cfg``
            (no CUDA for ``load_in: nf4``, fp16 autocast or an 8-bit optimizer, no bitsandbytes,
            no native bf16), a ``cannot_run_here`` note says why. The estimate is not refused: it
            is how a run is planned for another machine. None (the GUI, which shows the same
            reasons in its banner) adds no such note.

    Raises:
        ModelError: the model or its config.json can't be read or built.
        ConfigError: the method doesn't fit the model (e.g. unknown LoRA target modules).
    """
    from engine.memory import history

    st = model_structure(cfg)
    setup = Setup.from_config(cfg, assumptions)
    notes = list(st.notes)
    by_kind: dict[str, str] = {}
    source: str | None = "given" if gpu_bytes is not None else None
    others = list(gpu_others or [])
    if gpu_bytes is None and cfg.device != "cpu":
        info = detect_gpu()
        if info is not None:
            gpu_bytes, gpu_name, source = info.total_bytes, info.name, "detected"
            gpu_others_bytes, others = info.others_bytes, list(info.others)
    if gpu_bytes is None:
        gpu_others_bytes, others = None, []
        if cfg.device == "cpu":
            notes.append("device is cpu: this is the GPU memory the run would need")
        else:
            by_kind["no_gpu_detected"] = "no GPU detected: give --gpu-memory GiB to check whether it fits"
            notes.append(by_kind["no_gpu_detected"])
    if env is not None:
        from engine.methods import method_errors
        from engine.precision import environment_errors

        # The same words train refuses the run with, so the two commands never disagree; the
        # method's own rules are no fault of this machine, so they are not said to be.
        own = {e.message for e in method_errors(cfg)}
        why = " ".join(e.message for e in environment_errors(cfg, env) if e.message not in own)
        if why:
            by_kind["cannot_run_here"] = (f"this machine can't run it (train refuses it): {why} "
                                          "The estimate is for a CUDA GPU that can.")
            notes.append(by_kind["cannot_run_here"])
    factor = history.correction_factor(gpu_name) if gpu_name else 1.0
    peak, breakdown, phase = peak_breakdown(st, setup, factor)
    if factor != 1.0:
        notes.append(f"per-GPU correction x{factor:g} for {gpu_name} from {history.calibration_path()}")
    if st.moe_lora_experts and not setup.gradient_checkpointing:
        merged = st.n_layers * st.moe_experts * 3 * st.moe_intermediate * st.hidden * (setup.autocast_bytes or setup.base_bytes)
        linears = ", ".join(sorted({spec.name.rsplit(".", 1)[-1] for spec in st.layer_linears}))
        notes.append(f"LoRA wraps the experts' 3D weights: every layer keeps its merged expert weights for "
                     f"backward, {merged / 2**30:.1f} GiB in all; gradient checkpointing keeps one layer's, and "
                     f"lora_target_modules: [{linears}] none")
    if st.moe_lora_experts and cfg.lora_dropout:
        notes.append(f"PEFT adapts the experts' 3D weights without dropout: the run needs lora_dropout: 0 "
                     f"(it is {cfg.lora_dropout:g})")
    if not st.supports_sdpa and cfg.attn_implementation == "sdpa":
        notes.append(f"{st.arch} has no SDPA attention: the run needs attn_implementation: eager, "
                     "which this estimate assumes")
    if st.dora:
        notes.append("DoRA's temporaries are estimated from PEFT's code, not measured")
    if setup.optimizer == "paged_adamw_8bit":
        notes.append("paged optimizer states are counted on the GPU; under pressure they move to CPU memory")
    room = available_bytes(gpu_bytes, gpu_others_bytes)
    if gpu_others_bytes and gpu_bytes:
        from engine.nvsmi import describe_others

        who = describe_others(gpu_others_bytes, others)
        by_kind["gpu_others"] = (f"other programs hold {gpu_others_bytes / GIB:.2f} GiB of this GPU now"
                                 + (f" ({who})" if who else "") + f": the verdict is for the {room / GIB:.2f} GiB left")
        notes.append(by_kind["gpu_others"])
    fits = verdict(peak, room)
    max_b = max_batch_size(st, setup, room, factor) if room else None
    suggestions = [] if fits == "yes" else suggest(cfg, setup, room, factor, data=data)
    return Estimate(
        peak_bytes=peak,
        breakdown=breakdown,
        trainable_params=st.trainable_at(cfg.lora_r),
        total_params=st.total_at(cfg.lora_r),
        gpu_bytes=gpu_bytes,
        fits=fits,
        max_batch_size=max_b,
        suggestions=suggestions,
        peak_phase=phase,
        gpu_name=gpu_name,
        gpu_source=source,
        correction=factor,
        measured=history.measured_peaks(cfg) if with_measured else [],
        notes=notes,
        notes_by_kind=by_kind,
        disk=_disk(cfg, st),
        data=(data_estimate(cfg, setup, data, peak, max_b, room, factor, breakdown=breakdown)
              if data is not None else None),
        seq_len=cfg.seq_len,
        gpu_others_bytes=gpu_others_bytes,
        gpu_others=others,
        gpu_available_bytes=room,
    )


def available_bytes(gpu_bytes: int | None, others_bytes: int | None) -> int | None:
    """The memory a run can have: the GPU's less what other programs hold (at least 1 byte, so
    that a full GPU reads "no", not "no GPU")."""
    if not gpu_bytes:
        return gpu_bytes
    return max(1, gpu_bytes - (others_bytes or 0))


def data_estimate(cfg: RunConfig, setup: Setup, data: DataLengths, peak: int, max_b: int | None,
                  gpu_bytes: int | None, factor: float = 1.0, *,
                  breakdown: dict[str, int] | None = None) -> dict[str, Any]:
    """The estimate for ``cfg`` trained on ``data``: at its longest record, not at ``seq_len``.

    Batches are padded to their longest record, so the batch holding the data's longest record
    sets the peak (engine/data/lengths.py). Packed batches (``packing``) join records instead of
    padding them: their estimate stays the one at ``seq_len``.

    Args:
        breakdown: The config's breakdown at ``seq_len`` (``peak``'s), the data's own when the
            data reaches ``seq_len``.

    Returns:
        ``{"path", "records", "longest_record", "truncated", "seq_len", "peak_bytes", "fits",
        "max_batch_size", "breakdown"}``: ``seq_len`` is the longest batch's length (the longest
        record cut to the config's ``seq_len``); the last four as in :class:`Estimate`, for this
        data (``peak``, ``max_b`` and ``breakdown``, the config's, when the data reaches
        ``seq_len``). The breakdown lets the GUI's gauge draw the bar of the peak it judges.
    """
    seq = cfg.seq_len if cfg.packing else data.padded_len
    out: dict[str, Any] = {"path": data.path, "records": data.records, "longest_record": data.longest,
                           "truncated": data.truncated, "seq_len": seq}
    if seq < cfg.seq_len:
        st = model_structure(cfg)
        at = setup.with_(seq_len=seq)
        peak, breakdown, _phase = peak_breakdown(st, at, factor)
        max_b = max_batch_size(st, at, gpu_bytes, factor) if gpu_bytes else None
    out.update(peak_bytes=peak, fits=verdict(peak, gpu_bytes), max_batch_size=max_b,
               breakdown=dict(breakdown or {}))
    return out


def data_seq_len(data: DataLengths) -> int:
    """The ``seq_len`` that truncates no record of ``data``: its longest, up to a multiple of 64."""
    return -(-data.longest // 64) * 64


def _disk(cfg: RunConfig, st: ModelStructure) -> dict[str, Any]:
    """The checkpoints' and final/'s sizes, and the free space where the run will be written."""
    from engine.disk import estimate_from_config
    from engine.paths import runs_dir

    return estimate_from_config(cfg, st, Path(cfg.output_dir) if cfg.output_dir else runs_dir())


def verdict(peak_bytes: int, gpu_bytes: int | None) -> str | None:
    """``yes`` (<= 90% of the GPU), ``tight`` (90-100%), ``no`` (> 100%), None without a GPU."""
    if not gpu_bytes:
        return None
    if peak_bytes <= TIGHT_SHARE * gpu_bytes:
        return "yes"
    return "tight" if peak_bytes <= gpu_bytes else "no"


def peak_bytes(st: ModelStructure, setup: Setup, factor: float = 1.0) -> int:
    """The estimated peak alone (what the batch search and the suggestions compare)."""
    return peak_breakdown(st, setup, factor)[0]


def peak_breakdown(st: ModelStructure, setup: Setup, factor: float = 1.0) -> tuple[int, dict[str, int], str]:
    """``(peak, breakdown, phase)``: the largest phase plus allocator slack and context.

    The breakdown holds every key of :data:`BREAKDOWN_KEYS` (zeros included) and sums
    exactly to the peak.
    """
    phases = step_phases(st, setup)
    name, parts = max(phases.items(), key=lambda kv: sum(kv[1].values()))
    allocated = sum(parts.values())
    persistent = sum(parts.get(k, 0) for k in ("weights", "quant_constants", "optimizer_states", "workspace"))
    transient = allocated - persistent
    breakdown = {k: int(parts.get(k, 0)) for k in BREAKDOWN_KEYS}
    breakdown["allocator_slack"] = terms.allocator_slack_bytes(transient, _largest_transient(st, setup, name))
    breakdown["cuda_context"] = terms.cuda_context_bytes(setup)
    raw = sum(breakdown.values())
    if factor != 1.0:
        breakdown["gpu_correction"] = int(round(raw * factor)) - raw
    return sum(breakdown.values()), breakdown, name


def step_phases(st: ModelStructure, setup: Setup) -> dict[str, dict[str, int]]:
    """Allocated bytes by term at each moment of a training step (see the module doc)."""
    w = terms.weight_bytes(st, setup)
    q = terms.quant_constant_bytes(st, setup)
    g = terms.gradient_bytes(st, setup)
    o = terms.optimizer_state_bytes(st, setup)
    act = terms.activations(st, setup)
    loss_fwd, loss_bwd = terms.logits_and_loss_bytes(st, setup, act)
    # With accumulation, gradients live through the next micro-batches' forward passes.
    kept_grads = g if setup.gradient_accumulation_steps > 1 else 0
    head_grads = 0
    if st.head_trainable:
        head_grads += st.vocab * st.hidden * setup.base_bytes
    if st.final_norm_trainable:
        head_grads += st.final_norm_params * setup.base_bytes
    base = {"weights": w, "quant_constants": q, "optimizer_states": o, "gradients": kept_grads,
            "workspace": terms.workspace_bytes(setup)}
    block_tmp = (act.recompute + terms.backward_temp_bytes(st, setup, act) + terms.bnb_temp_bytes(st, setup)
                 + terms.dora_temp_bytes(st, setup))
    # add_tokens through PEFT's trainable tokens: the head's rebuilt matrix lives from the forward
    # to the head's backward, which adds its dense gradient; the embedding's comes at the end.
    tokens = terms.token_matrix_bytes(st, setup)
    return {
        "forward": {**base, "autocast_weight_copies": act.weight_copies_forward, "activations": act.saved,
                    "logits_and_loss": loss_fwd, "temporaries": tokens},
        "loss backward": {**base, "autocast_weight_copies": act.weight_copies_backward,
                          "activations": act.saved, "logits_and_loss": loss_bwd, "temporaries": 2 * tokens},
        "block backward": {**base, "gradients": max(kept_grads, head_grads),
                           "autocast_weight_copies": act.weight_copies_backward, "activations": act.saved,
                           "temporaries": block_tmp},
        "end of backward": {**base, "gradients": g,
                            "temporaries": terms.embedding_backward_temp_bytes(st, setup) + tokens},
        "optimizer step": {**base, "gradients": g, "temporaries": terms.optimizer_step_temp_bytes(st, setup)},
    }


def max_batch_size(st: ModelStructure, setup: Setup, gpu_bytes: int, factor: float = 1.0) -> int:
    """The largest micro-batch whose estimated peak is within ``gpu_bytes`` (0: none is).

    The peak grows with the batch (every term is non-decreasing in it), so a binary search
    over 1..65536 finds it in about 17 estimates.
    """
    def ok(b: int) -> bool:
        return peak_bytes(st, setup.with_(batch_size=b), factor) <= gpu_bytes

    if not ok(1):
        return 0
    lo, hi = 1, 2
    while hi <= MAX_BATCH and ok(hi):
        lo, hi = hi, hi * 2
    hi = min(hi, MAX_BATCH + 1)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid
    return lo


def suggest(cfg: RunConfig, setup: Setup, gpu_bytes: int | None, factor: float = 1.0, *,
            data: DataLengths | None = None) -> list[dict[str, Any]]:
    """Config changes that lower the peak, cumulative, in the order that costs least.

    0. with ``data`` whose records are all shorter: ``seq_len`` down to the longest (rounded up
       to a multiple of 64). It changes nothing in training (batches are padded to their longest
       record anyway); only a longer record added later would be cut;
    1. gradient checkpointing (same result, ~30% slower);
    2. a smaller micro-batch with more accumulation (same effective batch, slower);
    3. the 8-bit AdamW (bitsandbytes; states 2 B/param instead of 8);
    4. LoRA instead of full/freeze fine-tuning, then a 4-bit NF4 base (QLoRA);
    5. a shorter ``seq_len`` (longer records get truncated).

    Each rung is kept only if it lowers the previous rung's peak by at least 2% and is a
    valid config; the
    ladder stops at the first rung that fits ``gpu_bytes`` (without a GPU it runs to the end).
    """
    from engine.errors import ConfigErrors, StudioError

    out: list[dict[str, Any]] = []
    changes: dict[str, Any] = {}
    current = cfg
    current_peak = peak_bytes(model_structure(cfg), setup, factor)

    def rung(step: dict[str, Any], description: str) -> bool:
        nonlocal changes, current, current_peak
        trial = {**changes, **step}
        try:
            new_cfg = cfg.replace(**trial)
            st = model_structure(new_cfg)
        except (ConfigErrors, StudioError):
            return False
        new_setup = Setup.from_config(new_cfg, setup.assumptions)
        peak = peak_bytes(st, new_setup, factor)
        if peak > current_peak * (1 - MIN_SAVING):
            return False
        changes, current, current_peak = trial, new_cfg, peak
        fits = verdict(peak, gpu_bytes)
        out.append({"changes": dict(trial), "peak_bytes": peak, "fits": fits, "description": description})
        return fits == "yes"

    if data is not None and not cfg.packing and data_seq_len(data) < cfg.seq_len:
        n = data_seq_len(data)
        if rung({"seq_len": n}, f"seq_len {n}: every record of this dataset fits (the longest is "
                f"{data.longest:,} tokens), so training is the same; a longer record added later is cut"):
            return out
    if not cfg.gradient_checkpointing and rung({"gradient_checkpointing": True},
                                               "turn on gradient checkpointing (about 30% slower, same result)"):
        return out
    if current.batch_size > 1:
        st = model_structure(current)
        cur_setup = Setup.from_config(current, setup.assumptions)
        effective = current.batch_size * current.gradient_accumulation_steps
        limit = 1
        if gpu_bytes:
            # The largest micro-batch that fits comfortably (<= 90%), else the largest at all.
            roomy = max_batch_size(st, cur_setup, int(TIGHT_SHARE * gpu_bytes), factor)
            limit = max(1, min(current.batch_size - 1, roomy or max_batch_size(st, cur_setup, gpu_bytes, factor)))
        # A divisor of the effective batch keeps it exactly the same.
        b = max(d for d in range(1, limit + 1) if effective % d == 0)
        ga = effective // b
        if rung({"batch_size": b, "gradient_accumulation_steps": ga},
                f"micro-batch {b} with {ga} accumulation steps (same effective batch, slower)"):
            return out
    if current.optimizer == "adamw" and cfg.device != "cpu" and rung(
            {"optimizer": "adamw_8bit"}, "8-bit AdamW (bitsandbytes): optimizer states 2 instead of 8 bytes per "
            "trainable parameter"):
        return out
    if current.method in ("full", "freeze") and rung(
            {"method": "lora", "load_in": "bf16", "mixed_precision": "bf16"},
            "LoRA adapters instead of updating the base weights"):
        return out
    if current.method == "lora" and current.load_in != "nf4" and cfg.device != "cpu" and rung(
            {"method": "qlora", "load_in": "nf4", "mixed_precision": "bf16"},
            "QLoRA: LoRA on a 4-bit NF4 base"):
        return out
    if current.method in ("prefix", "prompt", "ia3", "adapter") and not current.is_quantized and \
            cfg.device != "cpu" and rung({"load_in": "nf4", "mixed_precision": "bf16"}, "a 4-bit NF4 base"):
        return out
    seq = current.seq_len
    target = max(16, seq // 2)
    if gpu_bytes:
        st = model_structure(current)
        cur_setup = Setup.from_config(current, setup.assumptions)
        while target > 64 and peak_bytes(st, cur_setup.with_(seq_len=target), factor) > gpu_bytes:
            target //= 2
    if target < seq:
        rung({"seq_len": target}, f"seq_len {target}: records longer than {target} tokens are truncated")
    return out


def detect_gpu() -> GpuInfo | None:
    """The first CUDA GPU's name and memory, or None without one.

    ``torch.cuda.mem_get_info`` is used only when this process already holds a CUDA
    context: creating one just to ask would pin ~0.5 GB of GPU memory in the GUI's
    process for its lifetime. Otherwise the device properties give the total.
    """
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    index = torch.cuda.current_device() if torch.cuda.is_initialized() else 0
    props = torch.cuda.get_device_properties(index)
    free = None
    total = int(props.total_memory)
    if torch.cuda.is_initialized():
        free, total = (int(x) for x in torch.cuda.mem_get_info(index))
    others_bytes, others = gpu_others(getattr(props, "uuid", None), props.name)
    return GpuInfo(name=props.name, total_bytes=total, free_bytes=free, others_bytes=others_bytes,
                   others=tuple(others))


def gpu_others(uuid: Any = None, name: str | None = None) -> tuple[int | None, list[dict[str, Any]]]:
    """Memory other programs hold on torch's ``cuda:0`` now, and their processes, from nvidia-smi;
    ``(None, [])`` when it can't be told. This app's live training workers don't count."""
    from engine import nvsmi

    gpu = nvsmi.cuda_gpu(nvsmi.query(), str(uuid) if uuid else None, name)
    if gpu is None:
        return None, []
    held, procs = gpu.held_by_others(nvsmi.own_worker_pids())
    return held, [p.to_dict() for p in procs]


# ---------------------------------------------------------------- Internals
def _largest_transient(st: ModelStructure, setup: Setup, phase: str) -> int:
    """The largest single tensor allocated and freed during ``phase`` (for the slack)."""
    positions = setup.tokens_per_sequence(st)
    tokens = setup.batch_size * positions
    if phase in ("forward", "loss backward"):
        return tokens * st.vocab * 4  # the fp32 logits / log-softmax / their gradients
    if phase == "block backward":
        return tokens * max(st.intermediate, st.hidden) * 4
    biggest = max([st.embed_params, st.head_params] + [x.d_in * x.d_out for x in st.layer_linears])
    return biggest * setup.base_bytes if st.base_trainable else 0
