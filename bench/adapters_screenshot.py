"""A screenshot of the Adapters area comparing two real demo runs with the base, for the docs.

``python bench/adapters_screenshot.py [OUT_DIR]`` (default ``docs/img``) trains two short LoRA
runs of the demo preset under their default run names (one with rank 8, one with rank 16),
opens the main window offscreen on the Adapters area, ticks both, asks the playground one
question greedily and saves ``adapters.png`` when the three answers are in. Then it compares
the two adapters with the base on the demo dataset ("Compare on data…"; the records the runs
trained on are set aside; every held-out record's answer is scored) and saves
``adapters-compare.png``. Everything goes to a temporary data home, so the user's runs and
library are untouched. About 3 minutes on 2 CPU cores.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def train(extra: list[str]) -> None:
    cmd = [sys.executable, "-m", "engine.cli", "train", str(ROOT / "resources/presets/demo.yaml"), *extra]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    time.sleep(1.1)  # run names carry the second; two runs must not share one


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/img")
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("FINETUNE_STUDIO_HOME", tempfile.mkdtemp(prefix="adapter-shots-"))
    train(["--max_steps", "60", "--lora_r", "8", "--lora_alpha", "16"])
    train(["--max_steps", "90"])
    from screens import open_demo_window, spin

    app, win = open_demo_window("adapters")
    area = win.areas["adapters"]
    area.refresh()
    cards = area.model.cards
    if len(cards) != 2:
        print(f"expected 2 adapters in the library, found {len(cards)}", file=sys.stderr)
        return 1
    for card in cards:
        area.model.set_checked(str(card.path), True)
    area.prompt_edit.setPlainText("What is the capital of France?")
    area.max_tokens.setValue(24)
    done: list[bool] = []
    area.sig_generation_finished.connect(lambda *_: done.append(True))
    area.generate()
    deadline = time.time() + 300
    while not done and time.time() < deadline:
        spin(0.05)
    if not done:
        print("no answers in 5 minutes", file=sys.stderr)
        return 1
    spin(0.5)
    win.grab().save(str(out / "adapters.png"))
    errors = [c.error for c in area.columns.values() if c.error]
    print(f"{out}/adapters.png ({len(area.columns)} columns{', errors: ' + '; '.join(errors) if errors else ''})")

    # The comparison, on the runs' own dataset (the demo): the records they trained on are set aside.
    dialog = area.open_compare_dialog()
    dialog.limit.setValue(0)
    dialog.samples.setValue(2)
    dialog.answer.setCurrentIndex(dialog.answer.count() - 1)  # every held-out record's answer scored
    dialog.max_tokens.setValue(48)
    dialog.resize(980, 760)
    dialog.show()
    compared: list[str] = []
    dialog.sig_compared.connect(compared.append)
    dialog.start()
    deadline = time.time() + 300
    while not compared and dialog.proc is not None and time.time() < deadline:
        spin(0.05)
    spin(0.5)
    dialog.grab().save(str(out / "adapters-compare.png"))
    print(f"{out}/adapters-compare.png ({'done' if compared else 'failed: ' + dialog.status.text()})")
    win.close()
    app.processEvents()
    return 1 if errors or not compared else 0


if __name__ == "__main__":
    sys.exit(main())
