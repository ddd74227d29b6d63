"""How late does the UI thread get when the Dataset area's Prompt preview loads its tokenizer?

``python bench/ui_stall_preview.py [--reps N]`` opens the main window offscreen on the demo, lets
it settle for 3 s, then ticks a 10 ms precise timer on the GUI thread while the Prompt preview tab
is shown for the first time (the demo tokenizer loads, in the tokenizer's process since 2026-12-03;
transformers imports torch wherever it loads), and prints how long the load took, the worst
lateness, every lateness over 100 ms and whether the GUI process imported torch. Each rep runs in a
fresh interpreter. Results: docs/ui-stall.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TICK_MS = 10


def one() -> None:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ["FINETUNE_STUDIO_HOME"] = tempfile.mkdtemp(prefix="stall-preview-")
    sys.path.insert(0, str(REPO))
    from PySide6.QtCore import QCoreApplication, Qt, QTimer

    from gui.app import make_app
    from gui.main_window import MainWindow

    def spin(seconds: float) -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            QCoreApplication.processEvents()
            time.sleep(0.001)

    app = make_app()  # noqa: F841 - kept alive for the session
    win = MainWindow(load_demo=True, restore_geometry=False)
    win.show()
    editor = win.areas["dataset"]
    spin(3.0)
    late: list[float] = []
    last = [time.perf_counter()]

    def tick() -> None:
        now = time.perf_counter()
        late.append((now - last[0]) * 1000 - TICK_MS)
        last[0] = now

    timer = QTimer()
    timer.setTimerType(Qt.TimerType.PreciseTimer)
    timer.setInterval(TICK_MS)
    timer.timeout.connect(tick)
    timer.start()
    loaded: list[float] = []
    editor.preview.sig_tokenizer_loaded.connect(lambda *_: loaded.append(time.perf_counter()))
    t0 = time.perf_counter()
    editor.tabs.setCurrentWidget(editor.preview)
    while not loaded and time.perf_counter() - t0 < 120:
        spin(0.01)
    spin(2.0)
    over = [round(x) for x in late if x > 100]
    print(f"tokenizer loaded after {loaded[0] - t0:.2f} s; worst lateness {max(late):.0f} ms; over 100 ms: {over}; "
          f"torch imported in the GUI process: {'torch' in sys.modules}")
    win.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        one()
        return 0
    for _ in range(args.reps):
        out = subprocess.run([sys.executable, __file__, "--one"], capture_output=True, text=True, cwd=REPO)
        print(out.stdout.strip() or out.stderr[-2000:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
