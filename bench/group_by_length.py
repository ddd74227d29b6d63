"""Padding and step time with and without ``group_by_length`` (transformers' LengthGroupedSampler).

    python bench/group_by_length.py [--steps 60] [--batch-sizes 4,8,16]

1. Padding: every batch of one epoch of the demo dataset through the Trainer's own dataloader
   (the run's collator, padded to the batch's longest record), random order vs grouped by length:
   positions computed / real tokens.
2. Time: the demo preset (LoRA on the demo model, CPU) trained ``--steps`` steps each way, in one
   process, seconds from the first step to the last (model loading and tokenizing excluded).

Prints JSON lines; results go in docs/dataset-bench.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def padding(cfg) -> dict:
    import io

    from engine.events import EventWriter
    from engine.train import Commands, _build_trainer, _make_callback_class, setup

    prep = setup(cfg, EventWriter(stream=io.StringIO()))
    trainer, _ = _build_trainer(prep, EventWriter(stream=io.StringIO()), Commands(), _make_callback_class(), None,
                                True)
    positions = real = batches = 0
    for batch in trainer.get_train_dataloader():
        positions += batch["input_ids"].numel()
        real += int(batch["attention_mask"].sum())
        batches += 1
    return {"batches": batches, "positions": positions, "real_tokens": real,
            "padding_share": round(1 - real / positions, 4)}


def timed(cfg) -> dict:
    import io

    from engine.events import STEP, EventWriter
    from engine.train import run_training

    times: list[float] = []

    class Clock(EventWriter):
        def emit(self, kind, /, **data):
            if kind == STEP:
                import time

                times.append(time.perf_counter())
            return super().emit(kind, **data)

    result = run_training(cfg, Clock(stream=io.StringIO()))
    return {"status": result["status"], "steps": len(times), "seconds": round(times[-1] - times[0], 2),
            "final_loss": result.get("final_loss")}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--batch-sizes", default="4,8,16")
    args = p.parse_args()
    os.environ.setdefault("FINETUNE_STUDIO_HOME", tempfile.mkdtemp(prefix="gbl-bench-"))
    from engine.config import RunConfig
    from engine.paths import presets_dir

    base = RunConfig.load(presets_dir() / "demo.yaml").replace(sample_answers=0, eval_split=0.0, save_steps=0,
                                                               eval_steps=0)
    print(json.dumps({"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count()}))
    with tempfile.TemporaryDirectory() as tmp:
        for b in (int(x) for x in args.batch_sizes.split(",")):
            for grouped in (False, True):
                cfg = base.replace(batch_size=b, group_by_length=grouped, output_dir=f"{tmp}/p{b}{grouped}")
                print(json.dumps({"part": "padding", "batch_size": b, "group_by_length": grouped,
                                  **padding(cfg)}), flush=True)
        for grouped in (False, True):
            cfg = base.replace(max_steps=args.steps, group_by_length=grouped, output_dir=f"{tmp}/t{grouped}")
            print(json.dumps({"part": "time", "batch_size": cfg.batch_size, "group_by_length": grouped,
                              **timed(cfg)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
