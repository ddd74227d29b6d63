"""Measure peak GPU memory of real training steps and put the estimate beside each case.

Runs on one CUDA GPU (written for one H100 80GB) in about 5-6 minutes:

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

Output (``--out``, default ``bench/results``): ``memory-<date>.json`` (every field) and
``memory-<date>.md`` (the table for ``docs/memory.md``), written after each case so a
time-out keeps what was measured.

Usage::

    python bench/measure_memory.py                 # all cases, ~5-6 min on one H100
    python bench/measure_memory.py --only qlora    # cases whose name contains 'qlora'
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
SMOKE_SKIP = ("int8", "nf4", "8bit", "fp16")  # bitsandbytes and fp16 AMP need CUDA


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


def run_case(name: str, weights_dir: Path, steps: int, smoke: bool) -> dict[str, Any]:
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
    if cuda:
        torch.cuda.reset_peak_memory_stats()
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
    device_used: list[int] = []
    step_times: list[float] = []

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
        trainer = Trainer(model=model, args=args, train_dataset=data, data_collator=_collate, callbacks=[Probe()])
        trainer.train()
    row: dict[str, Any] = {
        "case": name, "model": CASES[name][0], "overrides": CASES[name][1],
        "padded": padded, "trainable": int(trainable), "total": int(total), "steps": steps,
        "step_s": [round(t, 3) for t in step_times], "optim": args.optim.value if hasattr(args.optim, "value") else
        str(args.optim),
    }
    if cuda:
        row.update(loaded_bytes=int(loaded), peak_allocated_bytes=int(torch.cuda.max_memory_allocated()),
                   peak_reserved_bytes=int(torch.cuda.max_memory_reserved()),
                   device_used_bytes=max(device_used), device_used_per_step=device_used,
                   gpu_name=torch.cuda.get_device_name(), torch=torch.__version__)
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


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [f"Measured {meta['date']} on {meta.get('gpu_name', '?')} (torch {meta.get('torch', '?')}), "
             f"{meta['steps']} steps per case, HF Trainer, fused AdamW unless the case says otherwise.", "",
             "| case | measured device GiB | estimate GiB | error | peak alloc GiB | peak reserved GiB | "
             "trainable | total |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "device_used_bytes" not in r:
            lines.append(f"| {r['case']} | {r.get('error', 'ran (no GPU numbers)')} | | | | | | |")
            continue
        err = 100.0 * (r["estimate_bytes"] - r["device_used_bytes"]) / r["device_used_bytes"]
        lines.append(f"| {r['case']} | {r['device_used_bytes'] / GIB:.2f} | {r['estimate_bytes'] / GIB:.2f} | "
                     f"{err:+.1f}% | {r['peak_allocated_bytes'] / GIB:.2f} | {r['peak_reserved_bytes'] / GIB:.2f} | "
                     f"{r['trainable']:,} | {r['total']:,} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--case", help=argparse.SUPPRESS)  # child mode
    p.add_argument("--weights", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    p.add_argument("--prepare", help=argparse.SUPPRESS)
    p.add_argument("--only", default="", help="run only cases whose name contains one of these (comma-separated)")
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
        row = run_case(args.case, Path(args.weights), args.steps, args.smoke)
        Path(args.result).write_text(json.dumps(row), encoding="utf-8")
        return 0

    start = time.perf_counter()
    wanted = [w for w in args.only.split(",") if w] or [""]
    names = [n for n in CASES if any(w in n for w in wanted)]
    if args.smoke:
        names = [n for n in names if not any(k in n for k in SMOKE_SKIP)]
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
            if not args.smoke:
                row.update(estimate_row(name, int(args.gpu_gib * GIB)))
            result = Path(tmp) / "result.json"
            result.unlink(missing_ok=True)
            cmd = [py, __file__, "--case", name, "--weights", str(weights), "--result", str(result),
                   "--steps", str(args.steps)] + (["--smoke"] if args.smoke else [])
            t = time.perf_counter()
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout,
                                      env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
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
