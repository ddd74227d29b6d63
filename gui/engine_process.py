"""One way to run a ``finetune-studio`` command in a child process from the GUI.

Work that loads a model or copies gigabytes (merge, audit, promote) runs as the CLI in a
``QProcess``: the GUI process never holds a model, stays responsive, and the child's result
is exactly what the same command line gives.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from PySide6.QtCore import QObject, QProcess, QProcessEnvironment

ROOT = str(Path(__file__).resolve().parents[1])


def engine_process(parent: QObject, *, merged: bool = True) -> QProcess:
    """A ``QProcess`` set up to run ``python -m engine ...`` (start it with :func:`start_engine`).

    Args:
        merged: read stderr with stdout (the CLI's error lines then come with its output).
    """
    proc = QProcess(parent)
    env = QProcessEnvironment.systemEnvironment()
    env.insert("PYTHONUNBUFFERED", "1")
    # The engine package must be importable by the child even when the app runs from a checkout.
    env.insert("PYTHONPATH", ROOT + (os.pathsep + env.value("PYTHONPATH") if env.contains("PYTHONPATH") else ""))
    proc.setProcessEnvironment(env)
    if merged:
        proc.setProcessChannelMode(QProcess.ProcessChannelMode.MergedChannels)
    return proc


def start_engine(proc: QProcess, args: list[str]) -> None:
    """Run ``finetune-studio ARGS`` (as ``python -m engine ARGS``) in ``proc``."""
    proc.start(sys.executable, ["-m", "engine", *args])
