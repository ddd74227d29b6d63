"""How fast the memory estimate re-runs after a GUI edit (target: <= 20 ms).

Builds Llama-2-7B's structure once (meta device), then times ``engine.memory.estimate``
after each kind of change the GUI makes: micro-batch, sequence length, precision
(``load_in``/``mixed_precision``), LoRA rank, checkpointing, optimizer. A GPU size is
given, so each call also finds ``max_batch_size`` and, when it doesn't fit, the
suggestions. Nothing touches a GPU.

Usage::

    python bench/estimate_speed.py [--model bench/model_configs/llama2-7b] [--repeat 30] [--json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

GIB = 1 << 30

EDITS = {
    "batch_size": [{"batch_size": b} for b in (1, 2, 4, 8, 16, 32)],
    "seq_len": [{"seq_len": s} for s in (256, 512, 1024, 2048, 4096)],
    "precision": [{"load_in": "bf16", "mixed_precision": "bf16"}, {"load_in": "fp32", "mixed_precision": "bf16"},
                  {"load_in": "nf4", "method": "qlora"}, {"load_in": "int8"}, {"load_in": "fp16",
                                                                                 "mixed_precision": "fp16"}],
    "lora_r": [{"lora_r": r} for r in (4, 8, 16, 32, 64, 128)],
    "gradient_checkpointing": [{"gradient_checkpointing": v} for v in (True, False)],
    "optimizer": [{"optimizer": o} for o in ("adamw", "adamw_8bit", "sgd")],
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=str(ROOT / "bench" / "model_configs" / "llama2-7b"))
    p.add_argument("--repeat", type=int, default=30, help="timed calls per edit kind")
    p.add_argument("--gpu-gib", type=float, default=24.0, help="GPU size to fit into")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    from engine.config import RunConfig
    from engine.memory import clear_cache, estimate

    t0 = time.perf_counter()
    import peft  # noqa: F401  - imports are timed apart from the estimate
    import torch  # noqa: F401
    import transformers  # noqa: F401

    imports = time.perf_counter() - t0
    base = RunConfig.from_dict({"model": args.model, "method": "lora", "batch_size": 4, "seq_len": 1024,
                                "lora_target_modules": "all-linear"})
    gpu = int(args.gpu_gib * GIB)
    clear_cache()
    t0 = time.perf_counter()
    estimate(base, gpu)
    cold = time.perf_counter() - t0
    # A change of method settings (qlora's target list, say) builds a new structure once;
    # warm every variant up so the numbers below are re-estimates.
    configs = {kind: [base.replace(**e) for e in edits] for kind, edits in EDITS.items()}
    for cfgs in configs.values():
        for c in cfgs:
            estimate(c, gpu)
    results = {}
    for kind, cfgs in configs.items():
        times = []
        for i in range(args.repeat):
            c = cfgs[i % len(cfgs)]
            t = time.perf_counter()
            estimate(c, gpu)
            times.append((time.perf_counter() - t) * 1000)
        results[kind] = {"median_ms": round(statistics.median(times), 2), "max_ms": round(max(times), 2)}
    t = time.perf_counter()
    for _ in range(args.repeat):
        base.replace(batch_size=8)
    replace_ms = (time.perf_counter() - t) * 1000 / args.repeat
    report = {"model": args.model, "imports_s": round(imports, 2), "cold_first_estimate_s": round(cold, 3), "re_estimate": results,
              "run_config_replace_ms": round(replace_ms, 2), "machine": platform.processor() or platform.machine(),
              "python": platform.python_version()}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"model {args.model}: imports {imports:.2f} s; first estimate (meta model + method) {cold:.2f} s")
        print("| edit | median ms | max ms |\n|---|---|---|")
        for kind, r in results.items():
            print(f"| {kind} | {r['median_ms']:.2f} | {r['max_ms']:.2f} |")
        print(f"(RunConfig.replace, which validates the edited config: {replace_ms:.2f} ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
