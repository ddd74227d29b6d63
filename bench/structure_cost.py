"""What one cold structure build costs the estimate: time and the process's peak memory.

A change of method or target modules makes the estimate build the model's structure again (meta
device) and apply the method. Each case runs in a fresh process, so its peak RSS is its own; the
time excludes the imports (torch, transformers, peft). Nothing touches a GPU.

Usage::

    python bench/structure_cost.py [--model bench/model_configs/llama2-7b] [--json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CASES = {
    "prefix + projection": {"method": "prefix", "prefix_projection": True},
    "lora all-linear r=256": {"method": "lora", "lora_target_modules": "all-linear", "lora_r": 256},
    "lora q,v r=8 + DoRA": {"method": "lora", "lora_target_modules": ["q_proj", "v_proj"], "use_dora": True},
    "adapter (pfeiffer)": {"method": "adapter"},
    "prompt": {"method": "prompt"},
    "ia3": {"method": "ia3"},
}

CHILD = """
import json, resource, sys, time
sys.path.insert(0, {root!r})
from engine.config import RunConfig
from engine.memory import estimate
import torch, transformers, peft  # imports are not the build's cost
cfg = RunConfig.from_dict({{"model": {model!r}, "dataset": "demo", **json.loads({case!r})}})
t = time.perf_counter()
est = estimate(cfg, gpu_bytes=80 << 30)
print(json.dumps({{"s": time.perf_counter() - t, "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "trainable": est.trainable_params, "peak_gib": est.peak_bytes / 2**30}}))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / "bench" / "model_configs" / "llama2-7b"))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = {}
    for name, case in CASES.items():
        code = CHILD.format(root=str(ROOT), model=args.model, case=json.dumps(case))
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        rows[name] = json.loads(out.stdout.strip().splitlines()[-1])
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'case':24s} {'build s':>8s} {'peak RSS GiB':>13s} {'trainable':>14s}")
    for name, r in rows.items():
        print(f"{name:24s} {r['s']:8.2f} {r['peak_rss_bytes'] / 2**30:13.2f} {r['trainable']:14,d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
