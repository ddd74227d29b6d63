"""Screenshots of the run queue at work on the demo, for the docs.

``python bench/queue_screenshot.py [OUT_DIR]`` (default ``docs/img``) queues a 3-run learning
rate sweep of the demo preset (LoRA, 60 steps each, ~15 s per run on 2 CPU cores) in a
temporary data home, opens the main window offscreen, starts the queue with the Runs area's
own button, and saves ``runs-queue.png`` (the Queue tab while the second run trains) and
``train-queue.png`` (the Train area following it).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/img")
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("FINETUNE_STUDIO_HOME", tempfile.mkdtemp(prefix="queue-shots-"))
    from screens import open_demo_window, spin

    from engine.config import RunConfig
    from engine.runqueue import RunQueue, parse_grid

    cfg = RunConfig.load(ROOT / "resources/presets/demo.yaml", {"max_steps": 60, "run_name": "demo"})
    RunQueue().add(cfg, grid=parse_grid(["learning_rate=1e-3,3e-3,1e-2"]))
    app, win = open_demo_window("runs", size=(1360, 820))
    runs, train = win.areas["runs"], win.areas["train"]
    runs.show_queue()
    panel = runs.queue_panel
    if not panel.start():
        print("the queue did not start", file=sys.stderr)
        return 1
    end = time.time() + 900  # 3 runs of 60 steps: ~15 s each on 2 idle cores, minutes on busy ones
    while time.time() < end:
        spin(0.5)
        states = [e.state for e in panel.model.entries]
        if states[:2] == ["completed", "running"] and train.plots.point_count() >= 20:
            break
    else:
        print(f"timed out: {[e.state for e in panel.model.entries]}", file=sys.stderr)
        panel.stop(now=True)  # the runner is a process of its own: left alone it trains on in the temporary home
        spin(3.0)
        return 1
    runs.table.selectRow(0)
    spin(1.0)
    win.grab().save(str(out / "runs-queue.png"))
    win.show_area("train")
    spin(1.0)
    win.grab().save(str(out / "train-queue.png"))
    print(f"wrote {out / 'runs-queue.png'} and {out / 'train-queue.png'}")
    panel.stop(now=True)
    spin(3.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
