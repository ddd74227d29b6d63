"""Keeps the memory estimate current without ever blocking the UI thread.

Every config change restarts a short debounce timer; when it fires, the newest config is
sent to the estimate process (:mod:`gui.train.estimate_worker`) from a pool thread, which
waits for the answer. The first estimate imports torch there and builds a meta-device
model (seconds); later ones hit the engine's cache (milliseconds). While one estimate
runs, further changes only mark the newest config as pending, so a burst of typing costs
at most one extra estimate and results never arrive out of order.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from gui.train.background import BackgroundCalls

DEBOUNCE_MS = 5  # coalesces the changes of one event-loop pass; in-flight coalescing does the rest


class EstimateProcess:
    """The estimate child process: one JSON request line in, one answer line out.

    Restarted on the next request if it died. Thread-safe: one request at a time.
    """

    def __init__(self) -> None:
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()

    def _ensure(self) -> subprocess.Popen:
        if self._proc is None or self._proc.poll() is not None:
            root = str(Path(__file__).resolve().parents[2])
            env = {**os.environ, "PYTHONUNBUFFERED": "1",
                   "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
            self._proc = subprocess.Popen([sys.executable, "-m", "gui.train.estimate_worker"], stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                          encoding="utf-8", bufsize=1, env=env)
        return self._proc

    def estimate(self, cfg: Any, gpu_bytes: int | None, gpu_name: str | None) -> Any:
        """The engine's ``Estimate`` as an object with the same attributes.

        Raises:
            RuntimeError: the estimate failed (the message says why) or the process died.
        """
        answer = self._ask({"config": cfg.to_dict(), "gpu_bytes": gpu_bytes, "gpu_name": gpu_name})
        return SimpleNamespace(**answer["estimate"])

    def format_tokens(self, cfg: Any) -> dict | None:
        """``engine.train.check_format_tokens(cfg)``, computed in the child (it loads the tokenizer,
        which imports torch): the warning a run would give, or None.

        Raises:
            RuntimeError: the check failed (the message says why) or the process died.
        """
        return self._ask({"call": "format_tokens", "config": cfg.to_dict()})["result"]

    def _ask(self, request: dict) -> dict:
        with self._lock:
            proc = self._ensure()
            try:
                proc.stdin.write(json.dumps(request) + "\n")
                proc.stdin.flush()
                line = proc.stdout.readline()
            except (BrokenPipeError, OSError, ValueError):
                line = ""
            if not line:
                raise RuntimeError(f"the estimate process ended (exit code {proc.poll()})")
            answer = json.loads(line)
        if not answer.get("ok"):
            raise RuntimeError(answer.get("error", "estimate failed"))
        return answer

    def close(self) -> None:
        """End the process now; a request waiting on it fails at once instead of blocking exit."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(5)


SLOW_MS = 400
"""After this long without the new estimate, the gauge says it is updating (most take < 50 ms)."""


class EstimateScheduler(QObject):
    """Debounced, coalesced ``engine.memory.estimate`` calls off the UI thread."""

    sig_estimate = Signal(object, float)
    """A new estimate (``engine.memory.Estimate``) and the ms from the change to the result."""
    sig_failed = Signal(str)
    """The estimate raised: a one-line message."""
    sig_slow = Signal(bool)
    """True when a request has been waiting for its estimate longer than SLOW_MS (the gauge then
    says its numbers are the previous config's); False when it came."""

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.process = EstimateProcess()
        self._calls = BackgroundCalls(self, max_threads=1)
        self._calls.sig_done.connect(self._on_done)
        self._calls.sig_failed.connect(self._on_failed)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self._launch)
        self._slow = QTimer(self)
        self._slow.setSingleShot(True)
        self._slow.setInterval(SLOW_MS)
        self._slow.timeout.connect(lambda: self._say_slow(True))
        self._slow_said = False
        self._request: tuple[Any, int | None, str | None, float] | None = None
        self._busy = False
        self._pending = False
        self._closed = False
        self.last_latency_ms: float | None = None
        self.computed = 0
        self._generation = 0
        self._inflight = 0

    # ---- Public API
    def request(self, cfg: Any, gpu_bytes: int | None, gpu_name: str | None = None) -> None:
        """Estimate ``cfg`` against ``gpu_bytes`` soon (the newest request wins).

        ``gpu_name`` (the detected GPU's) lets the engine apply its per-GPU correction.
        """
        if self._closed:
            return
        self._request = (cfg, gpu_bytes, gpu_name, time.perf_counter())
        self._timer.start()
        if not self._slow.isActive() and not self._slow_said:
            self._slow.start()

    def cancel(self) -> None:
        """Drop the waiting request, and the result of one being computed (the config became invalid:
        an estimate arriving now would show numbers for a config the form no longer holds)."""
        self._timer.stop()
        self._request = None
        self._pending = False
        self._generation += 1
        self._say_slow(False)

    def is_idle(self) -> bool:
        return not (self._busy or self._pending or self._timer.isActive())

    def wait(self, msecs: int = 60_000) -> bool:
        """Block until the newest request is estimated (tests and screenshots only)."""
        from PySide6.QtCore import QCoreApplication, QDeadlineTimer

        deadline = QDeadlineTimer(msecs)
        while not self.is_idle():
            if deadline.hasExpired():
                return False
            QCoreApplication.processEvents()
            self._calls.wait(10)
        QCoreApplication.processEvents()
        return True

    def shutdown(self) -> None:
        self._closed = True
        self._timer.stop()
        self._request = None
        self.process.close()
        self._calls.wait(10_000)

    # ---- Internals
    def _launch(self) -> None:
        if self._request is None:
            return
        if self._busy:
            self._pending = True
            return
        cfg, gpu_bytes, gpu_name, t0 = self._request
        self._busy = True
        self._inflight = self._generation  # one job at a time (_busy)

        def job() -> tuple[Any, float]:
            return self.process.estimate(cfg, gpu_bytes, gpu_name if gpu_bytes else None), t0

        self._calls.submit("estimate", job)

    def _on_done(self, tag: str, result: Any) -> None:
        est, t0 = result
        self._busy = False
        self.computed += 1
        self.last_latency_ms = (time.perf_counter() - t0) * 1000
        if self._pending:
            self._pending = False
            self._launch()
            return  # a newer config is on its way; this result is already stale
        if self._inflight == self._generation:  # else cancelled while it was computed
            self._say_slow(False)
            self.sig_estimate.emit(est, self.last_latency_ms)

    def _on_failed(self, tag: str, message: str, trace: str) -> None:
        self._busy = False
        if self._pending:
            self._pending = False
            self._launch()
            return
        if self._inflight == self._generation:
            self._say_slow(False)
            self.sig_failed.emit(message.removeprefix("RuntimeError: "))

    def _say_slow(self, slow: bool) -> None:
        self._slow.stop()
        if slow != self._slow_said:
            self._slow_said = slow
            self.sig_slow.emit(slow)
