"""The Train area's own cost per frame: a synthetic 10 Hz run with no worker process.

``bench/ui_stall.py`` measures a real demo run, where the training worker competes with the
GUI for this machine's cores. This script feeds the same kind of events (``started``, 120
``step`` rows at 10 Hz, an ``eval`` and a ``checkpoint`` every 40 steps, ``finished``)
straight into a shown TrainArea's slots, so every stall it measures is the GUI's own work.
A 10 ms PreciseTimer records how late each tick fires; ``--stacks`` style sampling names
where each stall over 12 ms was spent.

``python bench/ui_stall_synthetic.py`` (offscreen). Results: docs/ui-stall.md.
"""

from __future__ import annotations

import math
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
STEPS = 120
TICK_MS = 10


def main() -> int:
    os.environ.setdefault("FINETUNE_STUDIO_HOME", tempfile.mkdtemp(prefix="ui-synth-"))
    from gui.app import offscreen_platform

    os.environ.setdefault("QT_QPA_PLATFORM", offscreen_platform())
    import numpy as np
    from PySide6.QtCore import QElapsedTimer, QEventLoop, Qt, QTimer
    from PySide6.QtWidgets import QApplication
    from ui_stall import StackSampler

    app = QApplication.instance() or QApplication([])
    import engine.runs  # noqa: F401 - imported by the app's run client before any run; not a per-frame cost
    from gui.train.area import TrainArea

    area = TrainArea()
    area.resize(1210, 830)
    area.show()
    area.wait_ready(60_000)
    for _ in range(30):
        app.processEvents()
        time.sleep(0.01)

    clock = QElapsedTimer()
    clock.start()
    last: dict = {"t": None}
    late: list[float] = []
    stalls: list[tuple[float, float, float, float]] = []
    sampler = StackSampler()

    def tick() -> None:
        now = clock.nsecsElapsed() / 1e6
        if last["t"] is not None:
            lateness = max(0.0, now - last["t"] - TICK_MS)
            late.append(lateness)
            if lateness > 12:
                end = time.perf_counter()
                stalls.append((lateness, now / 1000, end - (lateness + TICK_MS) / 1000, end))
        last["t"] = now

    timer = QTimer()
    timer.setTimerType(Qt.TimerType.PreciseTimer)
    timer.setInterval(TICK_MS)
    timer.timeout.connect(tick)
    timer.start()

    rng = random.Random(0)
    cfg = {**area.config_model.config().to_dict(), "max_steps": STEPS}
    area._on_started({"config": cfg, "output_dir": str(Path(os.environ["FINETUNE_STUDIO_HOME"]) / "run"),
                      "dataset": {"train": 348, "eval": 18}, "device": "cpu", "total_params": 1_150_080,
                      "trainable_params": 149_504})
    state = {"step": 0}
    loop = QEventLoop()

    def feed() -> None:
        state["step"] += 1
        s = state["step"]
        area._on_steps([{"step": s, "max_steps": STEPS, "epoch": s / 40, "eta_s": STEPS - s,
                         "loss": 4 * math.exp(-s / 30) + 1.5 + 0.3 * rng.random(), "lr": 3e-3 * (1 - s / STEPS),
                         "grad_norm": 1 + rng.random(), "tokens_per_s": 4000 + 2000 * rng.random()}])
        if s % 40 == 0:
            area._on_eval({"step": s, "eval_loss": 1.7 - s / 1000})
            area._on_checkpoint({"step": s, "path": f"checkpoint-{s}"})
        if s >= STEPS:
            feeder.stop()
            area._on_finished({"status": "completed", "output_dir": cfg.get("output_dir") or "", "step": s,
                               "final_loss": 1.6, "best_eval_loss": 1.58})
            QTimer.singleShot(500, loop.quit)

    feeder = QTimer()
    feeder.setInterval(100)
    feeder.timeout.connect(feed)
    feeder.start()
    loop.exec()
    timer.stop()
    sampler.stop()
    a = np.asarray(late)
    print(f"{time.strftime('%Y-%m-%d')}: {a.size} ticks; lateness p50 {np.percentile(a, 50):.2f} ms, "
          f"p99 {np.percentile(a, 99):.2f} ms, max {a.max():.2f} ms; stalls over 20 ms: {int((a > 20).sum())}")
    for ms, at, t0, t1 in sorted(stalls, reverse=True)[:6]:
        print(f"  {ms:5.1f} ms at {at:5.2f} s: {sampler.where(t0, t1, top=3)}")
    area.shutdown() if hasattr(area, "shutdown") else None
    return 0


if __name__ == "__main__":
    sys.exit(main())
