"""What this machine offers for training, detected off the UI thread and out of process.

``engine.precision.detect_environment()`` imports torch (seconds) and asks CUDA for free
memory, which creates a CUDA context: about 0.5 GB of GPU memory pinned for as long as
the process lives (see engine/memory/estimate.py, ``detect_gpu``). The GUI must leave
that memory to the training worker, so the detection runs in a short-lived child
process, started from a background job; the window opens at once and says "Detecting".
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from gui.scheme import ink

GiB = 2**30


def describe_environment(env: Any) -> str:
    """One or two plain sentences about the GPU, or that training will use the CPU."""
    if env is None:
        return "Detecting the GPU…"
    if not env.cuda:
        return ("<b>No CUDA GPU found.</b> Training will run on the CPU: fine for the demo, far too slow "
                "for real models. 4-bit/8-bit loading and 8-bit optimizers need a GPU.")
    free = f", {env.gpu_free_bytes / GiB:.1f} GiB free" if env.gpu_free_bytes is not None else ""
    cc = f", compute capability {env.compute_capability[0]}.{env.compute_capability[1]}" \
        if env.compute_capability else ""
    bf16 = "bf16 supported" if env.bf16_supported else f"<span style='color:{ink('#d98e04')}'>no native bf16</span> " \
        "(use fp16 mixed precision)"
    bnb = "" if env.bnb_available else "; bitsandbytes missing (no 4/8-bit)"
    return f"<b>{env.gpu_name}</b>: {env.gpu_total_bytes / GiB:.1f} GiB total{free}; {bf16}{cc}{bnb}."


_PROBE = ("import json; from engine.precision import detect_environment; "
          "print(json.dumps(detect_environment().to_dict()))")


_running: set[subprocess.Popen] = set()


def detect_environment_isolated(timeout_s: float = 180) -> Any:
    """``engine.precision.detect_environment()``, run in a child process.

    Raises:
        RuntimeError: the child failed (or was cancelled); the message holds the end of its stderr.
    """
    from engine.precision import Environment

    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.Popen([sys.executable, "-c", _PROBE], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True, env=env)
    _running.add(proc)
    try:
        stdout, stderr = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
    finally:
        _running.discard(proc)
    lines = [ln for ln in stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = " ".join(stderr.strip().splitlines()[-3:])
        raise RuntimeError(f"GPU detection failed (exit code {proc.returncode}): {tail}")
    data = json.loads(lines[-1])
    if data.get("compute_capability"):
        data["compute_capability"] = tuple(data["compute_capability"])
    return Environment(**data)


def cancel_detection() -> None:
    """The app is closing: end running detections instead of waiting for torch to import."""
    for proc in list(_running):
        if proc.poll() is None:
            proc.kill()


class GpuPanel(QWidget):
    """A short description of the GPU (or its absence)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.env: Any = None
        self.label = QLabel(describe_environment(None))
        self.label.setWordWrap(True)
        self.now = QLabel("")
        """The GPU now (gpu_monitor's readings): memory in use and by whom, load, temperature, power."""
        self.now.setObjectName("gpu_now")
        self.now.setWordWrap(True)
        self.now.setToolTip("Read from nvidia-smi every few seconds while this area shows. Memory other "
                            "programs hold is memory this run can't have: the estimate's verdict counts it.")
        self.now.hide()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.label)
        layout.addWidget(self.now)

    def set_environment(self, env: Any) -> None:
        self.env = env
        self.label.setText(describe_environment(env))

    def set_reading(self, reading: dict | None) -> None:
        """Show the GPU now (a reading of gui.train.gpu_monitor), or nothing when nvidia-smi can't say."""
        from gui.train.gpu_monitor import describe_reading

        text = describe_reading(reading)
        self.now.setText(text)
        self.now.setVisible(bool(text))

    def set_error(self, message: str) -> None:
        self.label.setText(f"<span style='color:{ink('#d0342c')}'>Could not detect the GPU: {message}</span>. "
                           "Training will try the CPU.")
