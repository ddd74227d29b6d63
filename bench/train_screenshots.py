"""Screenshots of the Train area before, during and after a real demo run, for the docs.

``python bench/train_screenshots.py [OUT_DIR]`` (default ``docs/img``) opens the main window
offscreen on the demo, starts the demo preset's LoRA run from the Train area, and saves
``train-before.png``, ``train-during.png`` (about 60% through), ``train-after.png`` and
``train-answers.png`` (the Answers tab after the run).
Runs go to a temporary data home, so the user's runs are untouched.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/img")
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("FINETUNE_STUDIO_HOME", tempfile.mkdtemp(prefix="train-shots-"))
    from screens import open_demo_window, spin

    app, win = open_demo_window("train")
    area = win.areas["train"]
    area.prepare_screenshot()  # waits for the GPU detection and the first estimate

    spin(0.5)
    win.grab().save(str(out / "train-before.png"))
    steps = {"n": 0, "max": 0}
    finished: dict = {}

    def on_steps(rows):
        steps["n"] = rows[-1].get("step", 0)
        steps["max"] = rows[-1].get("max_steps", 0) or steps["max"]

    area.run.sig_steps.connect(on_steps)
    area.run.sig_finished.connect(finished.update)
    if not area.start_run():
        print(f"could not start: {area.banner.text()}", file=sys.stderr)
        return 1
    deadline = time.time() + 600
    while not (steps["max"] and steps["n"] >= 0.6 * steps["max"]) and not finished:
        if time.time() > deadline:
            print("the run did not reach 60% in 10 minutes", file=sys.stderr)
            return 1
        spin(0.1)
    spin(0.3)
    win.grab().save(str(out / "train-during.png"))
    while not finished and time.time() < deadline:
        spin(0.1)
    spin(1.0)
    win.grab().save(str(out / "train-after.png"))
    # The Answers tab: the model's answers to held-out records at the last evaluation. Opened, it
    # takes the small plots' room itself (TrainArea._on_tab_changed); no splitter sizes set here.
    area.tabs.setCurrentWidget(area.samples)
    spin(0.5)
    win.grab().save(str(out / "train-answers.png"))
    win.discard_for_screenshot()
    win.close()
    app.processEvents()
    print(f"{finished.get('status')}: {out}/train-before.png, train-during.png, train-after.png, "
          "train-answers.png")
    return 0 if finished.get("status") == "completed" else 1


if __name__ == "__main__":
    sys.exit(main())
