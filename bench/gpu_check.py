"""GPU check: every method and the CUDA-only precisions on a ~1B-parameter model, in one go.

On one GPU (sized for an H100) this script:

1. builds a Llama with the Llama-3.2-1B shape (``bench/model_configs/llama3.2-1b``, 1.24 B
   parameters) from its config with random weights, on the GPU in bf16, and saves it with
   the demo tokenizer (the vocabulary ids the tokenizer produces all exist in the model),
   so nothing is downloaded;
2. trains each case below for a few steps through ``engine.train.run_training``, the same
   recipe the worker runs: every method (full, freeze, lora, qlora, adapter, prefix,
   prompt, ia3), LLM.int8, fp16 with loss scaling, fp32 weights under bf16 autocast,
   gradient checkpointing, the 8-bit and paged 8-bit AdamW, and a batch that really runs
   out of memory so the OOM guard must halve it (a real ``torch.OutOfMemoryError``);
3. records per case: status, steps, first/last loss and whether every loss was finite,
   steady-state tokens/s (steps after the first two), peak allocated/reserved GPU memory,
   trainable/total parameters, what the guards did, and the seconds it took;
4. writes ``gpu-check-<date>.json`` and ``gpu-check-<date>.md`` (a table) to ``--out`` and
   prints the table. The exit code is 1 if any case that should work did not.

Cases run in one process, one after another, freeing memory and resetting the peak
counters between them. A ``--budget-s`` (default 420 s) stops starting new cases, so the
whole check stays under 8 minutes; skipped cases are listed as such.

``--dry-run`` runs the same code on the CPU with a tiny model (hidden 64, 2 layers): the
CUDA-only cases are reported as refused with the engine's reason, the others train 2 steps.
The test suite runs it; it says nothing about GPU numbers.

Usage::

    python bench/gpu_check.py                       # on the GPU machine
    python bench/gpu_check.py --only lora,qlora     # a subset (names contain one of these)
    python bench/gpu_check.py --dry-run             # CPU smoke run of the code paths
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MODEL_CONFIG = ROOT / "bench" / "model_configs" / "llama3.2-1b" / "config.json"
DEMO_MODEL = ROOT / "resources" / "demo" / "model"

# name -> run-config changes on top of BASE, in the order a tight time budget should keep them:
# every method, quantization and 8-bit optimizer first, then variants.
CASES: dict[str, dict[str, Any]] = {
    "full-bf16": {"method": "full"},
    "lora-bf16": {"method": "lora"},
    "qlora-nf4": {"method": "qlora", "load_in": "nf4"},
    "lora-int8": {"method": "lora", "load_in": "int8"},
    "full-bf16-adamw8bit": {"method": "full", "optimizer": "adamw_8bit"},
    "freeze-top4": {"method": "freeze", "freeze_trainable_layers": 4, "freeze_extra_modules": ["norm"]},
    "adapter-houlsby": {"method": "adapter", "adapter_style": "houlsby"},
    "prefix": {"method": "prefix"},
    "prompt": {"method": "prompt"},
    "ia3": {"method": "ia3"},
    "lora-fp16-amp": {"method": "lora", "load_in": "fp16", "mixed_precision": "fp16"},
    "lora-fp32-bf16-autocast": {"method": "lora", "load_in": "fp32", "mixed_precision": "bf16"},
    "lora-gc-paged8bit": {"method": "lora", "gradient_checkpointing": True, "optimizer": "paged_adamw_8bit"},
    "qlora-nf4-gc": {"method": "qlora", "load_in": "nf4", "gradient_checkpointing": True},
    "lora-dora-rslora": {"method": "lora", "use_dora": True, "use_rslora": True},
    "lora-pissa": {"method": "lora", "lora_init": "pissa"},
    # The llama3 format's markers added to the (ChatML) demo tokenizer and trained through PEFT's
    # trainable tokens on the 4-bit base, whose embedding k-bit preparation made fp32.
    "qlora-nf4-add-tokens": {"method": "qlora", "load_in": "nf4", "template": "llama3",
                             "add_tokens": ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]},
    # A micro-batch of long records whose fp32 logits alone (64 x 1024 x 128256 x 4 B = 34 GB)
    # plus the bf16 copy overflow 80 GB: the guard must halve it (64 -> 32 -> ...) and finish.
    "oom-recovery-lora": {"method": "lora", "batch_size": 64, "seq_len": 1024, "dataset": "long",
                          "max_steps": 3},
}
# After these cases train, `runs audit` scores every demo record with their weights on the same
# device (4-bit base + adapter, and a bf16 LoRA): the audit's CUDA and bitsandbytes paths.
AUDIT_CASES = ("lora-bf16", "qlora-nf4")
BASE: dict[str, Any] = {"lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "lora_target_modules": "all-linear",
                        "load_in": "bf16", "mixed_precision": "bf16", "seq_len": 512, "batch_size": 8,
                        "max_steps": 8, "learning_rate": 1e-4, "warmup_ratio": 0.0, "logging_steps": 1,
                        "save_steps": 0, "eval_split": 0.0, "sample_answers": 0, "seed": 0, "num_virtual_tokens": 16}
DRY_CHANGES: dict[str, Any] = {"seq_len": 64, "batch_size": 2, "max_steps": 2}


# ---------------------------------------------------------------- Inputs
def build_model(out: Path, *, dry_run: bool) -> Path:
    """Random weights in the configured shape, saved with the demo tokenizer; returns the folder."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(DEMO_MODEL)
    ids = {"pad_token_id": tok.pad_token_id, "eos_token_id": tok.eos_token_id, "bos_token_id": tok.bos_token_id}
    if dry_run:
        config = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True, **ids)
        device, dtype = "cpu", torch.float32
    else:
        config = LlamaConfig.from_dict({**json.loads(MODEL_CONFIG.read_text()), **ids})
        device, dtype = "cuda", torch.bfloat16
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(config).to(dtype)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    del model
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return out


def long_dataset(path: Path, n: int = 256, words: int = 900) -> Path:
    """Alpaca records with ~1000-token answers, for the real out-of-memory case."""
    import random

    rng = random.Random(0)
    vocab = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi".split()
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            answer = " ".join(rng.choice(vocab) for _ in range(words))
            fh.write(json.dumps({"instruction": f"Write a long list, number {i}.", "output": answer}) + "\n")
    return path


# ---------------------------------------------------------------- One case
def run_case(name: str, model_dir: Path, work: Path, datasets: dict[str, Path], dry_run: bool) -> dict[str, Any]:
    import torch

    from engine import precision
    from engine.config import RunConfig
    from engine.errors import ConfigErrors
    from engine.events import EventWriter
    from engine.train import run_training

    changes = {**BASE, **CASES[name]}
    if dry_run:
        changes.update(DRY_CHANGES)
        if name.startswith("oom"):
            changes.update(batch_size=2, max_steps=2)
        if "freeze_trainable_layers" in changes:
            changes["freeze_trainable_layers"] = 1  # the tiny model has 2 layers
    changes["dataset"] = str(datasets[changes.get("dataset", "demo")])
    out_dir = work / name
    row: dict[str, Any] = {"case": name, "method": changes.get("method"), "load_in": changes.get("load_in"),
                           "mixed_precision": changes.get("mixed_precision"),
                           "optimizer": changes.get("optimizer", "adamw"),
                           "gradient_checkpointing": changes.get("gradient_checkpointing", False),
                           "batch_size": changes.get("batch_size")}
    try:
        cfg = RunConfig.from_dict({**changes, "model": str(model_dir), "output_dir": str(out_dir)})
        refusal = precision.environment_errors(cfg, precision.detect_environment())
    except ConfigErrors as e:
        refusal = e.errors
    if refusal:
        row.update(status="refused", reason=" ".join(e.message for e in refusal))
        return row

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        row["allocated_before_bytes"] = int(torch.cuda.memory_allocated())
    events = io.StringIO()
    t0 = time.time()
    result = run_training(cfg, EventWriter(stream=events))
    row["seconds"] = round(time.time() - t0, 1)
    log = [json.loads(x) for x in events.getvalue().splitlines()]
    steps = [e for e in log if e["event"] == "step"]
    losses = [e["loss"] for e in steps]
    row.update(status=result["status"], steps=result.get("step"), trainable=result.get("trainable_params"),
               total=result.get("total_params"), loss_first=losses[0] if losses else None,
               loss_last=losses[-1] if losses else None,
               loss_finite=bool(losses) and all(math.isfinite(x) for x in losses),
               tokens_per_s=_steady_tokens_per_s(steps),
               peak_allocated_bytes=result.get("peak_gpu_allocated_bytes"),
               peak_reserved_bytes=result.get("peak_gpu_reserved_bytes"),
               oom_retries=result.get("oom_retries"), nan_rollbacks=result.get("nan_rollbacks"),
               skipped_steps=result.get("skipped_steps"),
               recovered=[e["message"] for e in log if e["event"] == "recovered"])
    if result["status"] != "completed":
        row["error"] = result.get("error")
    if row["status"] == "completed" and name.startswith("oom") and not dry_run and not row["oom_retries"]:
        row.update(status="failed", error={"message": "expected a real out-of-memory and a recovery"})
    if row["status"] == "completed" and name in AUDIT_CASES:
        row["run_dir"] = str(out_dir)  # audited after every case has trained (adapters: small)
    else:
        shutil.rmtree(out_dir, ignore_errors=True)  # full-model checkpoints are GBs each
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        row["allocated_after_bytes"] = int(torch.cuda.memory_allocated())
    return row


def audit_case(run_dir: Path) -> dict[str, Any]:
    """``runs audit`` on a finished case: every record scored, finite, on the case's device."""
    import torch

    from engine.audit import audit_run

    t0 = time.time()
    try:
        audit = audit_run(run_dir, device="cuda" if torch.cuda.is_available() else "cpu")
    except Exception as e:  # noqa: BLE001 - reported in the table
        return {"audit": f"{type(e).__name__}: {e}"}
    finite = all(math.isfinite(r.loss) for r in audit.records)
    return {"audit": "ok" if audit.records and finite else "non-finite or no scores",
            "audit_seconds": round(time.time() - t0, 1), "audit_records": len(audit.records),
            "audit_device": audit.device, "audit_notes": audit.notes}


def probe_case(model_dir: Path, datasets: dict[str, Path], dry_run: bool) -> dict[str, Any]:
    """A 6-step probe of the lora-bf16 case: its measured peak beside the estimate, on the GPU."""
    from engine.config import RunConfig
    from engine.events import EventWriter
    from engine.probe import format_probe, probe_config
    from engine.train import run_training

    changes = {**BASE, **CASES["lora-bf16"], **(DRY_CHANGES if dry_run else {})}
    full = RunConfig.from_dict({**changes, "model": str(model_dir), "dataset": str(datasets["demo"])})
    t0 = time.time()
    result = run_training(probe_config(full, 6), EventWriter(stream=io.StringIO()), probe_of=full)
    report = result.get("probe") or {}
    if result.get("output_dir"):
        shutil.rmtree(result["output_dir"], ignore_errors=True)
    print(f"{'probe lora-bf16':26} {result['status']:9} {time.time() - t0:.1f}", file=sys.stderr)
    return {"status": result["status"], "seconds": round(time.time() - t0, 1), "report": report,
            "lines": format_probe(report) if report else [], "error": result.get("error")}


def _steady_tokens_per_s(steps: list[dict[str, Any]]) -> float | None:
    """Tokens/s after the first two steps (CUDA init, allocator warm-up, kernel selection)."""
    if len(steps) < 4:
        return None
    a, b = steps[1], steps[-1]
    return (b["tokens_seen"] - a["tokens_seen"]) / max(b["time"] - a["time"], 1e-9)


# ---------------------------------------------------------------- Report
def _gib(x: int | None) -> str:
    return f"{x / 2**30:.2f}" if x else "-"


def _count(n: int | None) -> str:
    return f"{n:,}" if n else "-"


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [f"GPU: {meta.get('gpu', '-')}; torch {meta['torch']}, transformers {meta['transformers']}, "
             f"peft {meta['peft']}, bitsandbytes {meta.get('bitsandbytes', '-')}; model {meta['model']} "
             f"({meta.get('model_params', 0) / 1e9:.2f} B parameters); {meta['date']}; total {meta['seconds']:.0f} s.",
             "",
             "| case | method | load_in | mixed | optimizer | status | steps | loss first → last | finite | "
             "tokens/s | peak alloc GiB | peak reserved GiB | trainable | s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        loss = (f"{r['loss_first']:.3f} → {r['loss_last']:.3f}" if r.get("loss_first") is not None else "-")
        tps = f"{r['tokens_per_s']:.0f}" if r.get("tokens_per_s") else "-"
        status = r["status"] + (f" ({r['oom_retries']} OOM halvings)" if r.get("oom_retries") else "")
        lines.append(f"| {r['case']} | {r['method']} | {r['load_in']} | {r['mixed_precision']} | {r['optimizer']} | "
                     f"{status} | {r.get('steps', '-')} | {loss} | {r.get('loss_finite', '-')} | {tps} | "
                     f"{_gib(r.get('peak_allocated_bytes'))} | {_gib(r.get('peak_reserved_bytes'))} | "
                     f"{_count(r.get('trainable'))} | {r.get('seconds', '-')} |")
    notes = [f"- **{r['case']}**: {r.get('reason') or (r.get('error') or {}).get('message')}" for r in rows
             if r["status"] not in ("completed",)]
    probe = meta.get("probe") or {}
    if probe.get("lines"):
        notes += ["- **probe (lora-bf16, 6 steps)**: " + "; ".join(probe["lines"])]
    elif probe:
        notes += [f"- **probe (lora-bf16)**: {probe.get('status')}: {(probe.get('error') or {}).get('message')}"]
    notes += [f"- **{r['case']}** `runs audit`: {r['audit_records']} records scored on {r['audit_device']} in "
              f"{r['audit_seconds']} s" + (f" ({'; '.join(r['audit_notes'])})" if r.get("audit_notes") else "")
              for r in rows if r.get("audit") == "ok"]
    return "\n".join(lines + ([""] + notes if notes else [])) + "\n"


def meta_info(model_dir: Path, dry_run: bool) -> dict[str, Any]:
    import importlib.metadata as md

    import torch

    info: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M"), "dry_run": dry_run,
                            "model": "tiny (dry run)" if dry_run else "llama3.2-1b shape, random bf16 weights",
                            "torch": torch.__version__}
    for pkg in ("transformers", "peft", "accelerate", "bitsandbytes"):
        try:
            info[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            info[pkg] = None
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_total_bytes"] = torch.cuda.get_device_properties(0).total_memory
    cfg = json.loads((model_dir / "config.json").read_text())
    h, L, V, ff = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["vocab_size"], cfg["intermediate_size"]
    kv = cfg["num_key_value_heads"] * cfg.get("head_dim", h // cfg["num_attention_heads"])
    info["model_params"] = V * h + L * (2 * h * h + 2 * h * kv + 3 * h * ff + 2 * h) + h  # tied head
    return info


# ---------------------------------------------------------------- Main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dry-run", action="store_true", help="CPU smoke run with a tiny model (no GPU numbers)")
    p.add_argument("--only", default="", help="comma-separated: run cases whose name contains one of these")
    p.add_argument("--budget-s", type=float, default=420.0, help="start no new case after this many seconds")
    p.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = p.parse_args(argv)
    import torch

    if not args.dry_run and not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU here; use --dry-run for the CPU smoke run", file=sys.stderr)
        return 2
    wanted = [w for w in args.only.split(",") if w]
    names = [n for n in CASES if not wanted or any(w in n for w in wanted)]
    t0 = time.time()
    rows: list[dict[str, Any]] = []
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"gpu-check{'-dry' if args.dry_run else ''}-{time.strftime('%Y-%m-%d-%H%M')}"
    meta: dict[str, Any] = {}

    def write() -> str:
        """The results so far: written after every step, so a session's hard timeout keeps them."""
        meta["seconds"] = time.time() - t0
        (out / f"{stem}.json").write_text(json.dumps({"meta": meta, "cases": rows}, indent=2, default=str))
        table = markdown(rows, meta)
        (out / f"{stem}.md").write_text(table)
        return table

    # Work after the training cases (audits, the probe) starts only this soon after the case
    # budget, so it ends well inside the caller's timeout (bench/gpu_session.sh: budget + 50 s).
    extra_budget = args.budget_s + 15
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        work = Path(tmp)
        model_dir = build_model(work / "model", dry_run=args.dry_run)
        meta.update(meta_info(model_dir, args.dry_run))
        datasets = {"demo": ROOT / "resources" / "demo" / "dataset.jsonl",
                    "long": long_dataset(work / "long.jsonl", n=16 if args.dry_run else 256,
                                         words=40 if args.dry_run else 900)}
        print(f"model ready in {time.time() - t0:.0f} s", file=sys.stderr)
        for name in names:
            if time.time() - t0 > args.budget_s:
                rows.append({"case": name, **{k: CASES[name].get(k, BASE.get(k, "-")) for k in
                                              ("method", "load_in", "mixed_precision")},
                             "optimizer": CASES[name].get("optimizer", "adamw"), "status": "not run",
                             "reason": f"time budget of {args.budget_s:.0f} s used up"})
                continue
            try:
                row = run_case(name, model_dir, work / "runs", datasets, args.dry_run)
            except Exception as e:  # noqa: BLE001 - one broken case must not hide the others
                row = {"case": name, "method": "?", "load_in": "?", "mixed_precision": "?", "optimizer": "?",
                       "status": "crashed", "error": {"message": f"{type(e).__name__}: {e}"}}
            rows.append(row)
            print(f"{name:26} {row['status']:9} {row.get('seconds', '')}", file=sys.stderr)
            write()
        for row in rows:  # the audits come last: they must not push a training case out of the budget
            if not row.get("run_dir"):
                continue
            run_dir = Path(row.pop("run_dir"))
            if time.time() - t0 > extra_budget:
                row["audit"] = "not run (time budget used up)"
                continue
            row.update(audit_case(run_dir))
            print(f"{row['case'] + ' audit':26} {row['audit']:9} {row.get('audit_seconds', '')}", file=sys.stderr)
            if row["audit"] != "ok":
                row.update(status="failed", error={"message": f"the run trained but its audit failed: "
                                                              f"{row['audit']}"})
            write()
        meta["probe"] = probe_case(model_dir, datasets, args.dry_run) if time.time() - t0 <= extra_budget else None
    table = write()
    print(table)
    expected_ok = {"completed", "refused"} if args.dry_run else {"completed"}
    bad = [r["case"] for r in rows if r["status"] not in expected_ok and r["status"] != "not run"]
    if meta.get("probe") and meta["probe"]["status"] != "completed":
        bad.append("probe")
    if bad:
        print(f"gpu_check: FAILED: {', '.join(bad)}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
