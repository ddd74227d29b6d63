"""Measure peak GPU memory of real training steps and put the estimate beside each case.

Runs on one CUDA GPU (written for one H100 80GB), about 20-30 s a case (H200, 2026-12-04):

- every case runs in a fresh process (``--case NAME``), so no memory or allocator state
  leaks between cases, and the parent never touches CUDA (its context would count);
- models are built from the public configs in ``bench/model_configs`` with random
  weights, nothing is downloaded. Quantized cases load random weights that a preparatory
  child saves once, through the product's own ``engine.precision.load_model`` (bnb NF4
  with double quantization / LLM.int8, ``prepare_model_for_kbit_training``); the others
  are built on the GPU with ``from_config`` and get the same post-processing;
- methods are applied with the method table (``engine.methods``) and trained with the
  HF ``Trainer`` and ``engine.precision.trainer_precision_kwargs`` (fused AdamW), i.e. the
  product's loop, for ``--steps`` steps (default 4);
- recorded per case: ``memory_allocated`` after loading, torch's ``max_memory_allocated``
  and ``max_memory_reserved``, and the driver's view (``cudaMemGetInfo`` total - free)
  after each step (reserved memory never shrinks without ``empty_cache``, so the last one
  is the peak). The estimate targets the driver's number.

Some cases are variants of another (:data:`VARIANTS`: the same model, overrides and data) run
with options (:data:`CASE_OPTIONS`): more steps, ``PYTORCH_CUDA_ALLOC_CONF`` in the child's
environment, or torch's caching allocator capped at the estimate. They follow up the
2026-12-04 H200 run (``bench/results/memory-2026-12-04-h200.json``) and come last in
:data:`CASES`.

Output (``--out``, default ``bench/results``): ``memory-<date>.json`` (every field) and
``memory-<date>.md`` (the table for ``docs/memory.md``), written after each case so a
time-out keeps what was measured.

Usage::

    python bench/measure_memory.py                 # all cases, as many as --budget-s (6 min) starts
    python bench/measure_memory.py --only qlora    # cases whose name contains 'qlora'
    python bench/measure_memory.py --only 12steps,capped --list   # print the selection, run nothing
    python bench/measure_memory.py --smoke         # CPU check of the code paths (tiny model, no numbers)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CONFIGS = ROOT / "bench" / "model_configs"
GIB = 1 << 30
ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
BUDGET_S = 360  # start no new case after this, to stay under 7 minutes

# name -> (model, run-config overrides, padded). "padded": records of random lengths in
# [s/2, s] padded to the longest (a real attention mask); otherwise all exactly seq_len.
CASES: dict[str, tuple[str, dict[str, Any], bool]] = {
    # In the order a tight time budget should keep them: first one case of every method, precision,
    # gradient checkpointing on and off, the large vocabulary (152k: the logits dominate) and a 7B
    # model; then variants (DoRA, 8-bit optimizers, SGD, added tokens) and other block families
    # (Qwen3's q/k norms, Gemma 3's sandwich norms and 262k vocabulary).
    "l32-1b/full/bf16/nockpt/b2s1024": ("llama3.2-1b", dict(method="full", load_in="bf16", batch_size=2, seq_len=1024), False),
    "l32-1b/lora-all-r16/bf16/nockpt/b4s1024/padded": ("llama3.2-1b", dict(method="lora", lora_r=16, lora_target_modules=ALL,
                                                                            seq_len=1024), True),
    "l32-1b/qlora-all-r16/nf4/nockpt/b4s512": ("llama3.2-1b", dict(method="qlora", load_in="nf4", lora_r=16,
                                                                    lora_target_modules=ALL), False),
    "l32-1b/lora-all-r16/int8/ckpt/b4s512": ("llama3.2-1b", dict(method="lora", load_in="int8", lora_r=16,
                                                                  lora_target_modules=ALL, gradient_checkpointing=True), False),
    "q25-0.5b/lora-all-r16/bf16/nockpt/b8s1024": ("qwen2.5-0.5b", dict(method="lora", lora_r=16, lora_target_modules=ALL,
                                                                        batch_size=8, seq_len=1024), False),
    "m-7b/lora-all-r16/bf16/ckpt/b2s2048/padded": ("mistral-7b", dict(method="lora", lora_r=16, lora_target_modules=ALL,
                                                                      gradient_checkpointing=True, batch_size=2,
                                                                      seq_len=2048), True),
    "l32-1b/full/fp32+amp/ckpt/b4s512": ("llama3.2-1b", dict(method="full", load_in="fp32", gradient_checkpointing=True), False),
    "l32-1b/lora-qv-r8/fp16/ckpt/b8s1024": ("llama3.2-1b", dict(method="lora", load_in="fp16", mixed_precision="fp16",
                                                                 gradient_checkpointing=True, batch_size=8, seq_len=1024), False),
    "l32-1b/lora-qv-r8/bf16-noamp/nockpt/b4s512": ("llama3.2-1b", dict(method="lora", mixed_precision="no"), False),
    "l32-1b/freeze-2/bf16/nockpt/b4s1024": ("llama3.2-1b", dict(method="freeze", freeze_trainable_layers=2, seq_len=1024), False),
    "l32-1b/adapter-houlsby/bf16/ckpt/b4s1024/ga4": ("llama3.2-1b", dict(
        method="adapter", adapter_style="houlsby", gradient_checkpointing=True, seq_len=1024,
        gradient_accumulation_steps=4), False),
    "l32-1b/ia3/bf16/nockpt/b4s1024": ("llama3.2-1b", dict(method="ia3", seq_len=1024), False),
    "l32-1b/prompt-20/bf16/ckpt/b4s1024": ("llama3.2-1b", dict(method="prompt", num_virtual_tokens=20,
                                                                gradient_checkpointing=True, seq_len=1024), False),
    "l32-1b/prefix-20/bf16/nockpt/b4s512/eager": ("llama3.2-1b", dict(method="prefix", num_virtual_tokens=20,
                                                                       attn_implementation="eager"), False),
    "l32-1b/full/bf16/adamw8bit/ckpt/b4s1024": ("llama3.2-1b", dict(method="full", load_in="bf16", optimizer="adamw_8bit",
                                                                    gradient_checkpointing=True, seq_len=1024), False),
    # variants
    "l32-1b/dora-qv-r8/bf16/nockpt/b4s512": ("llama3.2-1b", dict(method="lora", use_dora=True), False),
    "l32-1b/qlora-all-r64/nf4/ckpt/b2s2048/paged8bit": ("llama3.2-1b", dict(
        method="qlora", load_in="nf4", lora_r=64, lora_target_modules=ALL, gradient_checkpointing=True, batch_size=2,
        seq_len=2048, optimizer="paged_adamw_8bit"), False),
    "q25-0.5b/full/bf16/ckpt/b4s2048/sgd": ("qwen2.5-0.5b", dict(method="full", optimizer="sgd", gradient_checkpointing=True,
                                                                  seq_len=2048), False),
    # add_tokens: PEFT's trainable tokens rebuild the 128k x 2048 embedding (tied head) every step
    "l32-1b/lora-qv-r8+3tokens/bf16/nockpt/b4s512": ("llama3.2-1b", dict(
        method="lora", add_tokens=["<|a|>", "<|b|>", "<|c|>"]), False),
    "l2-7b/freeze-4/bf16/ckpt/b4s1024/adamw8bit": ("llama2-7b", dict(method="freeze", freeze_trainable_layers=4,
                                                                      gradient_checkpointing=True, seq_len=1024,
                                                                      optimizer="adamw_8bit"), False),
    "q3-1.7b/lora-all-r16/bf16/nockpt/b4s1024": ("qwen3-1.7b", dict(method="lora", lora_r=16, lora_target_modules=ALL,
                                                                     seq_len=1024), False),
    "g3-1b/full/bf16/ckpt/b2s1024": ("gemma3-1b", dict(method="full", gradient_checkpointing=True, batch_size=2,
                                                        seq_len=1024), False),
}

# Variants: name -> (the case it repeats, options). They follow up the 2026-12-04 H200 run
# (bench/results/memory-2026-12-04-h200.json), where with variable-length batches the driver's
# number grew far above torch's allocated peak (l32-1b .../padded: 16.71, 22.45, 22.45, 22.45 GiB
# per step, allocated 16.91; m-7b .../padded: 18.7, 18.7, 20.09, 21.55, still growing at step 4):
# the caching allocator keeps the blocks a shorter batch left, which a longer one can't reuse; and
# full fine-tuning + 8-bit AdamW kept 3.35 GiB reserved beyond allocated (the estimate's slack: 1.48).
# Options:
#   steps: overrides --steps for the case (does the driver's number plateau, and where?). The
#     padded variants all run 12, so they see the same batches and compare step by step.
#   alloc_conf: PYTORCH_CUDA_ALLOC_CONF in the child's environment (PYTORCH_ALLOC_CONF, which
#     takes precedence in recent torch, removed). "expandable_segments:True" is PyTorch's documented
#     remedy for "a job changing allocation sizes frequently, such as having a changing batch size"
#     (https://docs.pytorch.org/docs/stable/notes/cuda.html, "Optimizing memory usage with
#     PYTORCH_CUDA_ALLOC_CONF"); the row's expandable_segments says whether the allocator used it.
#   cap_at_estimate: the caching allocator capped with torch.cuda.set_per_process_memory_fraction
#     at the estimate less its cuda_context term (the context is outside the allocator), i.e. the
#     estimate's budget for torch's reserved memory. On reaching the cap torch frees its cached
#     blocks and retries before raising OutOfMemoryError, so a capped run that completes shows the
#     estimate is a sufficient budget even when the driver's number creeps; the row records
#     cap_bytes and cap_result ("completed" or "out of memory at step N"). The cap needs CUDA:
#     --smoke runs the case uncapped (cap_result "not applied (CPU smoke run)").
_L32_PADDED = "l32-1b/lora-all-r16/bf16/nockpt/b4s1024/padded"
_M7_PADDED = "m-7b/lora-all-r16/bf16/ckpt/b2s2048/padded"
_L32_FULL_8BIT = "l32-1b/full/bf16/adamw8bit/ckpt/b4s1024"
_EXPANDABLE = "expandable_segments:True"
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    f"{_L32_PADDED}/12steps": (_L32_PADDED, dict(steps=12)),
    f"{_L32_PADDED}/expandable": (_L32_PADDED, dict(steps=12, alloc_conf=_EXPANDABLE)),
    f"{_L32_PADDED}/capped": (_L32_PADDED, dict(steps=12, cap_at_estimate=True)),
    f"{_M7_PADDED}/12steps": (_M7_PADDED, dict(steps=12)),
    f"{_M7_PADDED}/expandable": (_M7_PADDED, dict(steps=12, alloc_conf=_EXPANDABLE)),
    f"{_M7_PADDED}/capped": (_M7_PADDED, dict(steps=12, cap_at_estimate=True)),
    f"{_L32_FULL_8BIT}/expandable": (_L32_FULL_8BIT, dict(alloc_conf=_EXPANDABLE)),
    f"{_L32_FULL_8BIT}/capped": (_L32_FULL_8BIT, dict(cap_at_estimate=True)),
}
# Every CASES entry stays (model, overrides, padded) (bench/calibration.py unpacks three); a
# variant's options live beside it, keyed by name.
CASES.update({name: CASES[base] for name, (base, _) in VARIANTS.items()})
CASE_OPTIONS: dict[str, dict[str, Any]] = {name: options for name, (_, options) in VARIANTS.items()}
SMOKE_SKIP = ("int8", "nf4", "8bit", "fp16")  # bitsandbytes and fp16 AMP need CUDA


def select(only: str, smoke: bool = False) -> list[str]:
    """The cases whose name contains one of ``only``'s comma-separated substrings (all when empty),
    in the order of the substrings, then of :data:`CASES`, so a tight time budget keeps the first;
    ``smoke`` drops those that need CUDA."""
    wanted = [w for w in only.split(",") if w] or [""]
    names = list(dict.fromkeys(n for w in wanted for n in CASES if w in n))
    if smoke:
        names = [n for n in names if not any(k in n for k in SMOKE_SKIP)]
    return names


def run_config(name: str, model_dir: Path | None = None):
    from engine.config import RunConfig

    model, overrides, _ = CASES[name]
    data = {"model": str(model_dir or CONFIGS / model), "lora_dropout": 0.05, "max_steps": 4, "sample_answers": 0,
            **overrides}
    data.setdefault("lora_alpha", 2 * data.get("lora_r", 8))
    return RunConfig.from_dict(data)


# ---------------------------------------------------------------- child: one case
def _random_weights(model: str, out: Path, device: str) -> Path:
    """Random-init a model from its config and save it (bf16 safetensors) for quantized loads."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    target = out / model
    if (target / "model.safetensors").exists() or (target / "model.safetensors.index.json").exists():
        return target
    conf = AutoConfig.from_pretrained(str(CONFIGS / model))
    torch.manual_seed(0)
    with torch.device(device):
        m = AutoModelForCausalLM.from_config(conf, dtype=torch.bfloat16)
    m.save_pretrained(str(target), safe_serialization=True)
    return target


def _build(cfg, model: str, config_dir: Path, weights_dir: Path, device: str):
    """The base model as engine/precision.load_model would return it."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from engine import precision

    env = precision.detect_environment()
    if cfg.load_in in ("int8", "nf4"):
        return precision.load_model(cfg, weights_dir / model, env)
    conf = AutoConfig.from_pretrained(str(config_dir))
    torch.manual_seed(0)
    with torch.device(device):
        m = AutoModelForCausalLM.from_config(conf, dtype=precision.load_dtype(cfg),
                                             attn_implementation=cfg.attn_implementation)
    m.config.use_cache = False
    if cfg.gradient_checkpointing:
        precision.enable_checkpointing(m)
        m.enable_input_require_grads()
    m.train()
    return m


def _dataset(n: int, seq: int, vocab: int, padded: bool, seed: int = 0) -> list[dict[str, list[int]]]:
    import random

    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        length = rng.randint(seq // 2, seq) if padded else seq
        ids = [rng.randrange(3, vocab) for _ in range(length)]
        rows.append({"input_ids": ids, "labels": list(ids)})
    return rows


def _collate(rows: list[dict[str, list[int]]]) -> dict[str, Any]:
    """Pad to the longest (multiple of 8), like DataCollatorForSeq2Seq in engine/train.py."""
    import torch

    width = max(len(r["input_ids"]) for r in rows)
    width = (width + 7) // 8 * 8
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        n = len(r["input_ids"])
        ids[i, :n] = torch.tensor(r["input_ids"])
        labels[i, :n] = torch.tensor(r["labels"])
        mask[i, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def run_case(name: str, weights_dir: Path, steps: int, smoke: bool, cap_bytes: int | None = None) -> dict[str, Any]:
    """One case, in this (fresh) process. ``cap_bytes``: cap torch's caching allocator there
    (``set_per_process_memory_fraction``, before the model is built) and record whether the
    steps complete under it or ``torch.OutOfMemoryError`` is raised; CUDA only (a smoke run
    records the cap as not applied)."""
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from engine import precision
    from engine.memory.structure import apply_method
    from engine.methods import count_parameters

    model_name, _, padded = CASES[name]
    device = "cpu" if smoke else "cuda"
    model_dir = CONFIGS / model_name
    if smoke:  # the case's own family, shrunk (see _smoke_model)
        model_dir = weights_dir / "smoke" / model_name
        model_name = f"smoke/{model_name}"
    cfg = run_config(name, model_dir)
    if smoke:
        cfg = cfg.replace(device="cpu", batch_size=2, seq_len=32, mixed_precision="no"
                          if cfg.load_in == "fp32" else cfg.mixed_precision)
    cuda = device == "cuda"
    cap: dict[str, Any] = {}
    if cap_bytes is not None:
        cap["cap_bytes"] = int(cap_bytes)
        if cuda:  # the allowed memory is fraction x the device's total (c10 CUDACachingAllocator)
            device_total = torch.cuda.get_device_properties(0).total_memory
            cap.update(cap_fraction=min(1.0, cap_bytes / device_total), device_total_bytes=int(device_total))
            torch.cuda.set_per_process_memory_fraction(cap["cap_fraction"])
        else:
            cap["cap_result"] = "not applied (CPU smoke run)"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    device_used: list[int] = []
    step_times: list[float] = []
    trainable = total = loaded = None
    optim = None
    try:
        model = _build(cfg, model_name, model_dir, weights_dir, device)
        model = apply_method(model, cfg)  # as the estimate applies it (add_tokens: the vocabulary's last rows)
        if cuda and not cfg.is_quantized:
            model.to("cuda")  # in case a method created its parameters on the CPU
        if hasattr(model, "get_nb_trainable_parameters"):
            trainable, total = model.get_nb_trainable_parameters()
        else:
            trainable, total = count_parameters(model)
        loaded = torch.cuda.memory_allocated() if cuda else None
        vocab = model.get_input_embeddings().weight.shape[0]
        data = _dataset(cfg.batch_size * cfg.gradient_accumulation_steps * steps, cfg.seq_len, vocab, padded)

        class Probe(TrainerCallback):
            def on_step_begin(self, args, state, control, **kw):
                self.t = time.perf_counter()

            def on_step_end(self, args, state, control, **kw):
                if cuda:
                    torch.cuda.synchronize()
                    free, total_mem = torch.cuda.mem_get_info()
                    device_used.append(int(total_mem - free))
                step_times.append(time.perf_counter() - self.t)

        env = precision.detect_environment()
        with tempfile.TemporaryDirectory() as out:
            args = TrainingArguments(
                output_dir=out, max_steps=steps, per_device_train_batch_size=cfg.batch_size,
                gradient_accumulation_steps=cfg.gradient_accumulation_steps, learning_rate=1e-5,
                lr_scheduler_type="constant", logging_strategy="no", save_strategy="no", report_to=[],
                disable_tqdm=True, dataloader_num_workers=0, remove_unused_columns=False, seed=0,
                gradient_checkpointing=False,  # already applied like engine/precision.load_model does
                **precision.trainer_precision_kwargs(cfg, env))
            optim = args.optim.value if hasattr(args.optim, "value") else str(args.optim)
            trainer = Trainer(model=model, args=args, train_dataset=data, data_collator=_collate,
                              callbacks=[Probe()])
            trainer.train()
        if cuda and cap:
            cap["cap_result"] = "completed"
    except torch.OutOfMemoryError:
        if not (cuda and cap):
            raise  # only a capped case's out-of-memory is a result
        cap["cap_result"] = (f"out of memory at step {len(step_times) + 1}" if trainable is not None
                             and optim is not None else "out of memory while loading the model")
    row: dict[str, Any] = {
        "case": name, "model": CASES[name][0], "overrides": CASES[name][1],
        "padded": padded, "trainable": None if trainable is None else int(trainable),
        "total": None if total is None else int(total), "steps": steps,
        "step_s": [round(t, 3) for t in step_times], "optim": optim,
        "options": CASE_OPTIONS.get(name, {}),
        # what this process saw, so a row shows that an alloc_conf option reached it
        "alloc_conf": {k: os.environ[k] for k in ("PYTORCH_ALLOC_CONF", "PYTORCH_CUDA_ALLOC_CONF") if k in os.environ},
        **cap,
    }
    if cuda:
        segments = torch.cuda.memory_snapshot()  # the allocator's segments (cudaMalloc'd or expandable)
        row.update(loaded_bytes=None if loaded is None else int(loaded),
                   peak_allocated_bytes=int(torch.cuda.max_memory_allocated()),
                   peak_reserved_bytes=int(torch.cuda.max_memory_reserved()),
                   device_used_per_step=device_used, segments=len(segments),
                   expandable_segments=any(seg.get("is_expandable") for seg in segments),
                   gpu_name=torch.cuda.get_device_name(), torch=torch.__version__)
        if device_used:  # none when a capped case ran out of memory before its first step ended
            row["device_used_bytes"] = max(device_used)
    return row


# ---------------------------------------------------------------- parent: all cases
def estimate_row(name: str, gpu_bytes: int) -> dict[str, Any]:
    """The estimate for a case, with the loop's facts (fused AdamW; a mask only when padded)."""
    from engine.memory import Assumptions, estimate

    _, _, padded = CASES[name]
    cfg = run_config(name)
    est = estimate(cfg, gpu_bytes, assumptions=Assumptions(attention_mask="always" if padded else "never"))
    return {"estimate_bytes": est.peak_bytes, "estimate_breakdown": est.breakdown, "peak_phase": est.peak_phase,
            "estimate_trainable": est.trainable_params, "estimate_total": est.total_params}


def cap_bytes(estimate: dict[str, Any]) -> int:
    """A capped case's limit on torch's caching allocator: the estimate less its CUDA context
    (which the driver holds outside the allocator), i.e. the estimate's budget for reserved memory."""
    return int(estimate["estimate_bytes"] - estimate["estimate_breakdown"]["cuda_context"])


def note(r: dict[str, Any]) -> str:
    """The markdown's note on a variant: its options, the cap's result, the driver's number per step."""
    options = r.get("options") or CASE_OPTIONS.get(r["case"], {})
    parts = []
    if "steps" in options:
        parts.append(f"{options['steps']} steps")
    if "alloc_conf" in options:
        used = r.get("expandable_segments")
        parts.append(f"PYTORCH_CUDA_ALLOC_CONF={options['alloc_conf']}"
                     + (" (but no expandable segment seen)" if used is False and "expandable" in options["alloc_conf"]
                        else ""))
    if "cap_bytes" in r:
        parts.append(f"allocator capped at {r['cap_bytes'] / GIB:.2f} GiB (estimate - CUDA context): "
                     f"{r.get('cap_result', '?')}")
    if options and r.get("device_used_per_step"):
        parts.append("device GiB per step: " + ", ".join(f"{b / GIB:.2f}" for b in r["device_used_per_step"]))
    return "; ".join(parts)


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [f"Measured {meta['date']} on {meta.get('gpu_name', '?')} (torch {meta.get('torch', '?')}), "
             f"{meta['steps']} steps per case unless the note says otherwise, HF Trainer, fused AdamW unless the "
             "case says otherwise.", "",
             "| case | measured device GiB | estimate GiB | error | peak alloc GiB | peak reserved GiB | "
             "trainable | total | note |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "peak_allocated_bytes" not in r:  # an error, a skip or a smoke run
            lines.append(f"| {r['case']} | {r.get('error', 'ran (no GPU numbers)')} | | | | | | | {note(r)} |")
            continue
        used = r.get("device_used_bytes")  # none when a capped case ran out of memory in its first step
        measured, err = ((f"{used / GIB:.2f}", f"{100.0 * (r['estimate_bytes'] - used) / used:+.1f}%") if used
                         else ("no step completed", ""))
        trainable, total = (f"{r[k]:,}" if r.get(k) is not None else "" for k in ("trainable", "total"))
        lines.append(f"| {r['case']} | {measured} | {r['estimate_bytes'] / GIB:.2f} | {err} | "
                     f"{r['peak_allocated_bytes'] / GIB:.2f} | {r['peak_reserved_bytes'] / GIB:.2f} | "
                     f"{trainable} | {total} | {note(r)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--case", help=argparse.SUPPRESS)  # child mode
    p.add_argument("--weights", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    p.add_argument("--prepare", help=argparse.SUPPRESS)
    p.add_argument("--cap-bytes", type=int, help=argparse.SUPPRESS)  # a capped case's limit (see VARIANTS)
    p.add_argument("--only", default="",
                   help="run only cases whose name contains one of these (comma-separated), in that order")
    p.add_argument("--list", action="store_true", help="print the cases --only (and --smoke) select, run nothing")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--out", default=str(ROOT / "bench" / "results"))
    p.add_argument("--gpu-gib", type=float, default=80.0, help="GPU size the estimate's verdict uses")
    p.add_argument("--timeout", type=int, default=120, help="seconds per case")
    p.add_argument("--budget-s", type=float, default=BUDGET_S, help="start no new case after this many seconds")
    p.add_argument("--smoke", action="store_true", help="CPU-only check of the code paths on a tiny model")
    args = p.parse_args(argv)

    if args.prepare:  # child: write random weights for quantized cases
        _random_weights(args.prepare, Path(args.weights), "cpu" if args.smoke else "cuda")
        return 0
    if args.case:  # child: one case
        row = run_case(args.case, Path(args.weights), args.steps, args.smoke, args.cap_bytes)
        Path(args.result).write_text(json.dumps(row), encoding="utf-8")
        return 0

    start = time.perf_counter()
    names = select(args.only, args.smoke)
    if args.list:
        for name in names:
            print(name, *([json.dumps(CASE_OPTIONS[name])] if name in CASE_OPTIONS else []))
        return 0
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    date = dt.date.today().isoformat()
    json_path, md_path = out_dir / f"memory-{date}.json", out_dir / f"memory-{date}.md"
    meta: dict[str, Any] = {"date": date, "steps": args.steps, "smoke": args.smoke}
    rows: list[dict[str, Any]] = []
    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="fs-mem-") as tmp:
        weights = Path(tmp)
        if args.smoke:
            for model in sorted({CASES[n][0] for n in names}):
                _smoke_model(model, weights / "smoke" / model)
        for model in sorted({CASES[n][0] for n in names if CASES[n][1].get("load_in") in ("int8", "nf4")}):
            try:  # a failure here shows as the quantized cases' errors; the others still run
                subprocess.run([py, __file__, "--prepare", model, "--weights", str(weights)], check=True,
                               timeout=args.timeout)
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
                print(f"preparing {model}'s random weights failed: {e}", flush=True)
        for name in names:
            if time.perf_counter() - start > args.budget_s:
                rows.append({"case": name, "error": "skipped (time budget)"})
                continue
            row = {"case": name}
            options = CASE_OPTIONS.get(name, {})
            estimate = (estimate_row(name, int(args.gpu_gib * GIB))
                        if not args.smoke or options.get("cap_at_estimate") else {})
            if not args.smoke:
                row.update(estimate)
            result = Path(tmp) / "result.json"
            result.unlink(missing_ok=True)
            cmd = [py, __file__, "--case", name, "--weights", str(weights), "--result", str(result),
                   "--steps", str(options.get("steps", args.steps))] + (["--smoke"] if args.smoke else [])
            if options.get("cap_at_estimate"):  # the child, on CUDA, turns it into a fraction of the device
                cmd += ["--cap-bytes", str(cap_bytes(estimate))]
            env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
            if "alloc_conf" in options:  # PYTORCH_ALLOC_CONF would take precedence over it
                env.pop("PYTORCH_ALLOC_CONF", None)
                env["PYTORCH_CUDA_ALLOC_CONF"] = options["alloc_conf"]
            t = time.perf_counter()
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, env=env)
                if proc.returncode == 0 and result.exists():
                    row.update(json.loads(result.read_text(encoding="utf-8")))
                else:
                    row["error"] = f"exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:] or ''}"
            except subprocess.TimeoutExpired:
                row["error"] = f"timed out after {args.timeout} s"
            row["wall_s"] = round(time.perf_counter() - t, 1)
            rows.append(row)
            for k in ("gpu_name", "torch"):
                if k in row:
                    meta[k] = row[k]
            json_path.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2), encoding="utf-8")
            md_path.write_text(markdown(rows, meta), encoding="utf-8")
            used = row.get("device_used_bytes")
            status = row.get("error") or (f"{used / GIB:.2f} GiB" if used else "ok")
            if "cap_result" in row:
                status += f", capped: {row['cap_result']}"
            print(f"[{time.perf_counter() - start:5.0f}s] {name}: {status}", flush=True)
    meta["total_s"] = round(time.perf_counter() - start, 1)
    json_path.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2), encoding="utf-8")
    md_path.write_text(markdown(rows, meta), encoding="utf-8")
    print(md_path.read_text(encoding="utf-8"))
    return 0 if all("error" not in r for r in rows) else 1


def _smoke_model(model: str, out: Path) -> None:
    """``model``'s config shrunk for --smoke (CPU): the same family and block (Qwen3's q/k norms,
    Gemma 3's sandwich norms and sliding layers...), so its code paths run; not its numbers."""
    out.mkdir(parents=True, exist_ok=True)
    conf = json.loads((CONFIGS / model / "config.json").read_text(encoding="utf-8"))
    layers = 2
    conf.update(vocab_size=256, hidden_size=64, intermediate_size=176, num_hidden_layers=layers,
                num_attention_heads=4, num_key_value_heads=min(2, conf.get("num_key_value_heads") or 2), head_dim=16,
                tie_word_embeddings=conf.get("tie_word_embeddings", False))
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        if isinstance(conf.get(key), int) and conf[key] >= 256:
            conf[key] = 1
    if "query_pre_attn_scalar" in conf:  # Gemma: scores scaled by 1/sqrt(this), the head size
        conf["query_pre_attn_scalar"] = 16
    if isinstance(conf.get("layer_types"), list):  # per-layer attention kinds: one per layer
        conf["layer_types"] = conf["layer_types"][:layers]
    if isinstance(conf.get("max_window_layers"), int):
        conf["max_window_layers"] = min(conf["max_window_layers"], layers)
    (out / "config.json").write_text(json.dumps(conf), encoding="utf-8")


if __name__ == "__main__":
    raise SystemExit(main())
