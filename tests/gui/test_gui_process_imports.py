"""The GUI process never imports torch: it holds the GIL for long enough to freeze the window
(0.7 s measured, docs/ui-stall.md). Estimates, the GPU probe and the pre-run token check run in
child processes, and so does the Dataset area's tokenizer (preview and exact token lengths)."""

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
# The Dataset area's Prompt preview and its checks with exact token lengths.
editor = win.areas["dataset"]
win.show_area("dataset")
rendered, linted = [], []
editor.preview.sig_rendered.connect(lambda: rendered.append(1))
editor.sig_lint_finished.connect(lambda report, *_: linted.append(report.stats["length"]["method"]))
editor.select_record(0)
editor.tabs.setCurrentWidget(editor.preview)
deadline = time.time() + 120
while not (rendered and any(m.startswith("tokenizer") for m in linted)) and time.time() < deadline:
    QCoreApplication.processEvents()
    time.sleep(0.02)
print("rendered" if rendered and "trained" in editor.preview.stats.text() else "not rendered")
print("exact lengths" if any(m.startswith("tokenizer") for m in linted) else f"lengths: {linted}")
print("torch imported" if "torch" in sys.modules else "no torch")
win.close()
"""


def test_the_train_area_and_the_prompt_preview_import_no_torch_in_the_gui_process(tmp_path):
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "FINETUNE_STUDIO_HOME": str(tmp_path),
           "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, cwd=REPO,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.split()
    said = out.stdout.splitlines()
    assert "checked" in said, out.stdout  # the format-token check ran (in the estimate's process)
    assert "rendered" in said and "exact lengths" in said, out.stdout  # in the tokenizer's process
    assert "no torch" in said, lines
