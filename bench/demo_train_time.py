"""How long the demo preset takes to train on this machine: ``python bench/demo_train_time.py [ROUNDS]``.

Runs ``finetune-studio train resources/presets/demo.yaml`` (LoRA on the embedded tiny model, 120
steps) ROUNDS times (default 2) in a temporary data home, each in a fresh process as a user runs it,
and prints, as JSON, each round's wall time (process start to exit: imports, model and data loading,
training, evaluations, sample answers, the final save) and the training time the run itself records
(``summary.json``'s ``started`` to ``finished``).

This is the speed target the test suite used to assert (``elapsed < 240`` in
tests/engine/test_demo_train.py), which failed on a loaded CI box; results are in docs/throughput.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    results = []
    for i in range(rounds):
        home = tempfile.mkdtemp(prefix="demo-time-")
        out = Path(home) / "run"
        env = {**os.environ, "FINETUNE_STUDIO_HOME": home}
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "engine", "train", "resources/presets/demo.yaml",
                               "--output_dir", str(out)], cwd=ROOT, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            print(proc.stderr[-2000:], file=sys.stderr)
            return 1
        summary = json.loads((out / "summary.json").read_text())
        results.append({"round": i + 1, "wall_s": round(wall, 1),
                        "run_s": round(summary["finished"] - summary["started"], 1),
                        "steps": summary.get("step"), "final_loss_mean": summary.get("final_loss_mean")})
    print(json.dumps({"cpus": os.cpu_count(), "rounds": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
