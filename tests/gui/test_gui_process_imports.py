"""The GUI process never imports torch: it holds the GIL for long enough to freeze the window
(0.7 s measured, docs/ui-stall.md). Estimates, the GPU probe and the pre-run token check run in
child processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import sys, time
from PySide6.QtCore import QCoreApplication
from gui.app import make_app
from gui.main_window import MainWindow

app = make_app()
win = MainWindow(load_demo=True, restore_geometry=False)
win.show_area("train")
win.show()
area = win.areas["train"]
assert area.wait_ready(180_000), "the Train area did not get ready"
deadline = time.time() + 60
while area._tokens_checked is None and time.time() < deadline:
    QCoreApplication.processEvents()
    time.sleep(0.02)
area._calls.wait(120_000)
QCoreApplication.processEvents()
print("checked" if area._tokens_checked is not None else "not checked")
print("torch imported" if "torch" in sys.modules else "no torch")
win.close()
"""


def test_opening_the_app_on_the_train_area_imports_no_torch(tmp_path):
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "FINETUNE_STUDIO_HOME": str(tmp_path),
           "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, cwd=REPO,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.split()
    assert "checked" in out.stdout.splitlines(), out.stdout  # the token check ran (in the child)
    assert "no torch" in out.stdout.splitlines(), lines
