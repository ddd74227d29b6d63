"""Throughput: our engine vs a plain, minimal transformers Trainer + PEFT script, same config.

Both variants train the same model on the same tokenized rows (our tokenizer's output,
so data preparation is not what is compared), with the same LoRA, batch, learning rate,
schedule, optimizer, precision, logging every step and no checkpoints. What differs is
everything the engine adds around Trainer: the event callback (a JSON event and a flushed
``metrics.jsonl`` row per step), the per-step non-finite check, the STOP-file poll, the
indexed collator, the run folder.

Each variant runs in its own fresh process, alternating ``ours, plain, ours, plain...``
``--repeats`` times, so neither inherits the other's allocator or page cache state.

Measured per run:

- tokens/s: non-padding input tokens per second over the steady state, from the time and
  ``num_input_tokens_seen`` at each step's log; the first ``--warmup`` steps are excluded.
  Both variants take the timestamp at the same point (Trainer's ``on_log``).
- peak memory: on CUDA ``torch.cuda.max_memory_allocated`` and ``max_memory_reserved``;
  on the CPU the process's peak resident set size (``ru_maxrss``).

The report gives, per variant, the median and best wall-clock tokens/s, the median tokens
per CPU-second (``time.process_time``; less sensitive to other processes on a shared
machine than wall time) and the median peak memory, and the ratios ours/plain (tokens/s
> 1 = we are faster; memory < 1 = we use less).

Usage::

    python bench/throughput.py                        # demo model, CPU or GPU, JSON + markdown
    python bench/throughput.py --model bench/model_configs/qwen2.5-0.5b --random-weights
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def run_config(args: argparse.Namespace, out_dir: Path):
    from engine.config import RunConfig

    return RunConfig.from_dict({
        "model": args.model, "dataset": args.dataset, "method": "lora", "lora_r": 16, "lora_alpha": 32,
        "lora_dropout": 0.05, "lora_target_modules": "all-linear", "load_in": args.load_in,
        "mixed_precision": args.mixed_precision, "seq_len": args.seq_len, "batch_size": args.batch_size,
        "max_steps": args.steps, "learning_rate": 2e-4, "lr_scheduler": "cosine", "warmup_ratio": 0.03,
        "logging_steps": 1, "save_steps": 0, "eval_split": 0.0, "sample_answers": 0, "seed": 0, "output_dir": str(out_dir),
    })


def _steady_rate(points: list[tuple[float, int]], warmup: int) -> float:
    """Tokens per second between the end of step ``warmup`` and the last step."""
    (t0, n0), (t1, n1) = points[warmup - 1], points[-1]
    return (n1 - n0) / max(t1 - t0, 1e-9)


def _peaks() -> dict[str, Any]:
    import resource

    import torch

    out: dict[str, Any] = {"peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    if torch.cuda.is_available():
        out["peak_cuda_allocated_bytes"] = int(torch.cuda.max_memory_allocated())
        out["peak_cuda_reserved_bytes"] = int(torch.cuda.max_memory_reserved())
    return out


# ---------------------------------------------------------------- child: one variant
def child_ours(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from engine.events import EventWriter
    from engine.train import run_training

    cpu_times: list[float] = []

    class CpuClock(EventWriter):
        def emit(self, kind, /, **data):
            if kind == "step":
                cpu_times.append(time.process_time())  # right after the row's wall time, in on_log
            return super().emit(kind, **data)

    cfg = run_config(args, work / "ours")
    with open(os.devnull, "w") as sink:
        result = run_training(cfg, CpuClock(stream=sink))
    if result["status"] != "completed":
        raise SystemExit(f"our engine failed: {result.get('error')}")
    rows = [json.loads(x) for x in (work / "ours" / "metrics.jsonl").read_text().splitlines()]
    points = [(r["time"], r["tokens_seen"]) for r in rows]  # stamped in on_log, like the plain callback
    cpu_points = [(c, r["tokens_seen"]) for c, r in zip(cpu_times, rows, strict=True)]
    return {"variant": "ours", "tokens_per_s": _steady_rate(points, args.warmup),
            "tokens_per_cpu_s": _steady_rate(cpu_points, args.warmup), "steps": len(rows),
            "final_loss": rows[-1]["loss"], **_peaks()}


def child_plain(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """The minimal script a researcher would write: tokenized rows, LoRA, Trainer."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        DataCollatorForSeq2Seq,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from engine.models import load_tokenizer, resolve_model_path
    from engine.train import load_training_records

    cfg = run_config(args, work / "plain")
    path = resolve_model_path(cfg.model)
    tok = load_tokenizer(str(path))
    from engine.data.tokenize import tokenize_records

    records, _ = load_training_records(cfg)
    rows, _ = tokenize_records(records, tok, cfg.template, cfg.seq_len)
    cuda = torch.cuda.is_available()
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[cfg.load_in]
    torch.manual_seed(cfg.seed)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, device_map={"": 0} if cuda else None)
    model.config.use_cache = False
    model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                                             lora_dropout=cfg.lora_dropout, target_modules="all-linear"))
    points: list[tuple[float, int]] = []
    cpu_points: list[tuple[float, int]] = []
    losses: list[float] = []

    class Timing(TrainerCallback):
        def on_log(self, a, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                points.append((time.time(), state.num_input_tokens_seen))
                cpu_points.append((time.process_time(), state.num_input_tokens_seen))
                losses.append(logs["loss"])

    targs = TrainingArguments(
        output_dir=str(work / "plain"), per_device_train_batch_size=cfg.batch_size, max_steps=cfg.max_steps,
        learning_rate=cfg.learning_rate, lr_scheduler_type=cfg.lr_scheduler, warmup_steps=cfg.warmup_ratio,
        logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True, seed=cfg.seed,
        bf16=cfg.mixed_precision == "bf16", fp16=cfg.mixed_precision == "fp16", use_cpu=not cuda,
        optim="adamw_torch_fused" if cuda else "adamw_torch", include_num_input_tokens_seen="non_padding",
        dataloader_pin_memory=False)
    trainer = Trainer(model=model, args=targs, train_dataset=rows,
                      data_collator=DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100,
                                                           pad_to_multiple_of=8 if cuda else None),
                      callbacks=[Timing()])
    trainer.train()
    return {"variant": "plain", "tokens_per_s": _steady_rate(points, args.warmup),
            "tokens_per_cpu_s": _steady_rate(cpu_points, args.warmup), "steps": len(points),
            "final_loss": losses[-1], **_peaks()}


# ---------------------------------------------------------------- parent
def random_model(config_dir: Path, out: Path, cuda: bool) -> Path:
    """A model in ``config_dir``'s shape with random weights, saved with the demo tokenizer (whose ids all exist)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(ROOT / "resources" / "demo" / "model")
    config = AutoConfig.from_pretrained(config_dir)
    if len(tok) > config.vocab_size:
        raise SystemExit(f"{config_dir}: vocab_size {config.vocab_size} is smaller than the demo tokenizer's {len(tok)}")
    for key in ("pad_token_id", "eos_token_id", "bos_token_id"):
        setattr(config, key, getattr(tok, key))
    torch.manual_seed(0)
    with torch.device("cuda" if cuda else "cpu"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16 if cuda else torch.float32)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    del model
    if cuda:
        torch.cuda.empty_cache()
    return out


def machine() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version(),
                            "torch": torch.__version__, "cpus": os.cpu_count()}
    try:
        info["cpu"] = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                           if line.startswith("model name"))
    except (OSError, StopIteration):
        info["cpu"] = platform.processor()
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    try:
        info["load_average_at_start"] = os.getloadavg()
    except OSError:
        pass
    import peft
    import transformers

    info["transformers"], info["peft"] = transformers.__version__, peft.__version__
    return info


def markdown(report: dict[str, Any]) -> str:
    s = report["summary"]
    mem_key = "peak_cuda_allocated_bytes" if "peak_cuda_allocated_bytes" in s["ours"] else "peak_rss_bytes"
    lines = ["| variant | tokens/s, median | tokens/s, best | tokens per CPU-second, median | runs (tokens/s) "
             "| peak memory, median |", "|---|---|---|---|---|---|"]
    for v in ("ours", "plain"):
        runs = ", ".join(f"{r['tokens_per_s']:.0f}" for r in report["runs"] if r["variant"] == v)
        lines.append(f"| {v} | {s[v]['tokens_per_s']:.0f} | {s[v]['best_tokens_per_s']:.0f} | "
                     f"{s[v]['tokens_per_cpu_s']:.0f} | {runs} | {s[v][mem_key] / 2**20:.0f} MiB ({mem_key}) |")
    lines.append(f"| **ours / plain** | **{s['ratio_tokens_per_s']:.3f}** | **{s['ratio_best_tokens_per_s']:.3f}** | "
                 f"**{s['ratio_tokens_per_cpu_s']:.3f}** | | **{s['ratio_peak_memory']:.3f}** |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variant", choices=["ours", "plain"], help=argparse.SUPPRESS)  # child mode
    p.add_argument("--result", help=argparse.SUPPRESS)
    p.add_argument("--model", default="demo")
    p.add_argument("--dataset", default="demo")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--warmup", type=int, default=5, help="steps left out of the rate")
    p.add_argument("--batch-size", type=int, default=8, dest="batch_size")
    p.add_argument("--seq-len", type=int, default=256, dest="seq_len")
    p.add_argument("--load-in", default=None, dest="load_in", help="default: fp32 on CPU, bf16 on GPU")
    p.add_argument("--mixed-precision", default=None, dest="mixed_precision")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads per run (OMP_NUM_THREADS); 1 "
                   "keeps a run from stalling in thread barriers when another process shares the cores")
    p.add_argument("--out", default=None, help="write the JSON report here")
    p.add_argument("--random-weights", action="store_true", dest="random_weights",
                   help="--model is a folder with only a config.json (bench/model_configs): build it with random "
                        "weights (bf16 on a GPU) and the demo tokenizer, once, for both variants")
    args = p.parse_args(argv)
    import torch

    cuda = torch.cuda.is_available()
    args.load_in = args.load_in or ("bf16" if cuda else "fp32")
    args.mixed_precision = args.mixed_precision or ("bf16" if cuda else "no")

    if args.variant:
        with tempfile.TemporaryDirectory() as tmp:
            res = (child_ours if args.variant == "ours" else child_plain)(args, Path(tmp))
        Path(args.result).write_text(json.dumps(res))
        return 0

    runs = []
    passthrough = [f"--model={args.model}", f"--dataset={args.dataset}", f"--steps={args.steps}",
                   f"--warmup={args.warmup}", f"--batch-size={args.batch_size}", f"--seq-len={args.seq_len}",
                   f"--load-in={args.load_in}", f"--mixed-precision={args.mixed_precision}"]
    started = time.strftime("%Y-%m-%d %H:%M")
    with tempfile.TemporaryDirectory() as tmp:
        if args.random_weights:
            model_dir = random_model(Path(args.model), Path(tmp) / "model", cuda)
            passthrough[0] = f"--model={model_dir}"
        for i in range(args.repeats):
            for variant in ("ours", "plain"):
                res_path = Path(tmp) / f"{variant}-{i}.json"
                env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
                       "TOKENIZERS_PARALLELISM": "false",
                       "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
                proc = subprocess.run([sys.executable, __file__, f"--variant={variant}", f"--result={res_path}",
                                       *passthrough], capture_output=True, text=True, env=env)
                if proc.returncode != 0:
                    print(proc.stderr[-3000:], file=sys.stderr)
                    return 1
                runs.append(json.loads(res_path.read_text()))
                print(f"{variant:5} run {i + 1}: {runs[-1]['tokens_per_s']:.0f} tokens/s", file=sys.stderr)

    def med(variant: str, key: str) -> float:
        return statistics.median(r[key] for r in runs if r["variant"] == variant)

    mem_key = "peak_cuda_allocated_bytes" if cuda else "peak_rss_bytes"
    summary = {v: {"tokens_per_s": med(v, "tokens_per_s"), "tokens_per_cpu_s": med(v, "tokens_per_cpu_s"),
                   "best_tokens_per_s": max(r["tokens_per_s"] for r in runs if r["variant"] == v),
                   "peak_rss_bytes": med(v, "peak_rss_bytes"),
                   **({"peak_cuda_allocated_bytes": med(v, "peak_cuda_allocated_bytes"),
                       "peak_cuda_reserved_bytes": med(v, "peak_cuda_reserved_bytes")} if cuda else {})}
               for v in ("ours", "plain")}
    for key in ("tokens_per_s", "tokens_per_cpu_s", "best_tokens_per_s"):
        summary[f"ratio_{key}"] = summary["ours"][key] / summary["plain"][key]
    summary["ratio_peak_memory"] = summary["ours"][mem_key] / summary["plain"][mem_key]
    report = {"started": started, "machine": machine(), "settings": {k: v for k, v in vars(args).items()
                                                                    if k not in ("variant", "result", "out")},
              "runs": runs, "summary": summary}
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps(summary, indent=2))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
