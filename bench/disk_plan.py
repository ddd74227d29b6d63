"""Does the disk plan match what a run of a real-sized model writes?

``python bench/disk_plan.py [--out FILE.md]`` builds Qwen2.5-0.5B's shape from
``bench/model_configs/qwen2.5-0.5b`` with random weights (fp32 safetensors, the demo tokenizer:
its ids all fit the 151,936-entry vocabulary), trains two steps on the CPU with a checkpoint at
each, and compares, per case, the estimate made from the config alone (``estimate --json``'s
``disk``), the plan the run makes from the loaded model before step 1, and the bytes of
``checkpoint-1/`` and ``final/`` on disk. Cases: LoRA (all-linear, r 16) and full fine-tuning with
AdamW (the engine runs the 8-bit AdamWs on a GPU only; their state's layout is checked against
bitsandbytes in tests/engine/test_disk.py). It writes about 10 GB into a temporary folder and
deletes it; a few minutes on 2 CPU cores.

Results are in docs/memory.md ("Disk").
"""

from __future__ import annotations

import argparse
import io
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CASES = {
    "lora all-linear r16, adamw": {"method": "lora", "lora_r": 16, "lora_alpha": 32, "lora_target_modules": "all-linear"},
    "full, adamw": {"method": "full"},
}


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def build_model(out: Path) -> Path:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(ROOT / "bench" / "model_configs" / "qwen2.5-0.5b")
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.save_pretrained(out, safe_serialization=True)
    demo = ROOT / "resources" / "demo" / "model"
    for f in demo.iterdir():
        if f.name.startswith(("tokenizer", "special_tokens", "chat_template", "vocab", "merges")):
            shutil.copy2(f, out / f.name)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=None, help="also write the Markdown table here")
    args = ap.parse_args()
    from engine import disk
    from engine.config import RunConfig
    from engine.events import EventWriter
    from engine.memory.structure import model_structure
    from engine.methods import get_method
    from engine.train import run_training

    rows = []
    with tempfile.TemporaryDirectory(prefix="disk-plan-") as tmp_name:
        tmp = Path(tmp_name)
        model_dir = build_model(tmp / "qwen2.5-0.5b")
        data = tmp / "data.jsonl"
        lines = (ROOT / "resources" / "demo" / "dataset.jsonl").read_text(encoding="utf-8").splitlines()[:16]
        data.write_text("\n".join(lines) + "\n", encoding="utf-8")
        for label, changes in CASES.items():
            out = tmp / label.replace(" ", "_").replace(",", "")
            cfg = RunConfig.from_dict({"model": str(model_dir), "dataset": str(data), "device": "cpu",
                                       "load_in": "fp32", "mixed_precision": "no", "max_steps": 2, "save_steps": 1,
                                       "save_total_limit": 0, "seq_len": 64, "batch_size": 1, "warmup_ratio": 0.0,
                                       "output_dir": str(out), **changes})
            before = disk.estimate_from_config(cfg, model_structure(cfg), tmp)
            plans = []

            def keep(model, cfg=cfg, out=out, plans=plans):
                plans.append(disk.plan(model, cfg, out, peft=get_method(cfg.method).peft, steps=2,
                                       model_dir=model_dir))

            t0 = time.perf_counter()
            result = run_training(cfg, EventWriter(stream=io.StringIO()), on_trained=keep)
            assert result["status"] == "completed", result.get("error")
            plan = plans[0]
            ckpt, final = folder_bytes(out / "checkpoint-1"), folder_bytes(out / "final")
            rows.append((label, before["checkpoint_bytes"], plan.checkpoint_bytes, ckpt,
                         before["final_bytes"], plan.final_bytes, final, time.perf_counter() - t0))
            print(label, rows[-1], file=sys.stderr, flush=True)
            shutil.rmtree(out)

    def mb(n: int) -> str:
        return f"{n / 1e6:,.1f}"

    lines = [f"Qwen2.5-0.5B shape, fp32, random weights; CPU; {time.strftime('%Y-%m-%d')}", "",
             "| case | checkpoint: estimate / plan / on disk (MB) | plan − disk | final/: estimate / plan / on disk (MB) "
             "| plan − disk |", "|---|---|---|---|---|"]
    for label, ce, cp, cd, fe, fp, fd, _ in rows:
        lines.append(f"| {label} | {mb(ce)} / {mb(cp)} / {mb(cd)} | {(cp - cd) / 1e6:+.2f} MB | "
                     f"{mb(fe)} / {mb(fp)} / {mb(fd)} | {(fp - fd) / 1e6:+.2f} MB |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
