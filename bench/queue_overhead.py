"""How much time a run queue loses between runs: ``python bench/queue_overhead.py [N] [STEPS]``.

Queues N (default 4) demo runs of STEPS (default 6) optimizer steps as a learning-rate grid,
trains them with ``RunQueue.run`` (what ``finetune-studio queue run`` does) in a temporary data
home, and prints, as JSON:

- the queue's wall time;
- each run's time as its ``summary.json`` records it (``started`` to ``finished``: loading the
  model and the data, training, the final save);
- the gaps: from the end of one run to the start of the next, which is what the queue itself
  costs (the runner noting the result, a new worker process starting and importing torch,
  transformers and PEFT).

Results are in docs/throughput.md.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 4
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 6
    os.environ["FINETUNE_STUDIO_HOME"] = tempfile.mkdtemp(prefix="queue-bench-")
    from engine.config import RunConfig
    from engine.runqueue import RunQueue
    from engine.runs import read_summary

    cfg = RunConfig.load(ROOT / "resources/presets/demo.yaml").replace(max_steps=steps, save_steps=0,
                                                                       eval_split=0.0, device="cpu")
    rates = [round(3e-3 * (i + 1), 6) for i in range(n)]
    q = RunQueue()
    q.add(cfg, grid={"learning_rate": rates})
    t0 = time.time()
    ended = q.run()
    wall = time.time() - t0
    runs = []
    for e in ended:
        s = read_summary(Path(e.run_dir))
        runs.append({"name": e.name, "state": e.state, "started": s.get("started"), "finished": s.get("finished")})
    train_s = [r["finished"] - r["started"] for r in runs if r["started"] and r["finished"]]
    gaps = [b["started"] - a["finished"] for a, b in zip(runs, runs[1:], strict=False)
            if a["finished"] and b["started"]]
    first_start = runs[0]["started"] - t0 if runs and runs[0]["started"] else None
    print(json.dumps({
        "runs": n, "steps_per_run": steps, "states": [r["state"] for r in runs], "wall_s": round(wall, 1),
        "train_s": [round(x, 1) for x in train_s], "first_run_start_s": round(first_start, 1) if first_start else None,
        "gaps_s": [round(g, 1) for g in gaps], "mean_gap_s": round(sum(gaps) / len(gaps), 1) if gaps else None,
        "cpu_count": os.cpu_count()}, indent=2))
    return 0 if all(r["state"] == "completed" for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
