"""Keeps the memory estimate current without ever blocking the UI thread.

Every config change restarts a short debounce timer; when it fires, the newest config is
sent to the estimate process (:mod:`gui.train.estimate_worker`) from a pool thread, which
waits for the answer. The first estimate imports torch there and builds a meta-device
model (seconds); later ones hit the engine's cache (milliseconds). While one estimate
runs, further changes only mark the newest config as pending, so a burst of typing costs
at most one extra estimate and results never arrive out of order.

The estimate with the data needs the run's records measured in tokens, which tokenizes every
record (seconds to minutes on a large dataset, the first time). :class:`DataLengthsScheduler`
does that in a second process of its own, asked only when what the lengths depend on changes
(:func:`data_inputs`); the live estimate never waits for it, and is asked again with the
lengths once they come.
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


class ConfigProblem(RuntimeError):
    """The estimate found a problem of the config with this model, tied to a run-config key: the
    ``ConfigError`` the run would stop at after loading the model (``freeze_trainable_layers`` above
    its layer count, a target module it doesn't have). ``problem``: its ``to_dict()``."""

    def __init__(self, message: str, problem: dict):
        super().__init__(message)
        self.problem = problem


class EstimateProcess:
    """The estimate child process: one JSON request line in, one answer line out.

    Started by the first request and restarted on the next one if it died. Thread-safe: one
    request at a time.

    Args:
        nice: lower the process's CPU priority by this much (POSIX), for work that must yield to
            the window and the live estimate (measuring a large dataset).
    """

    def __init__(self, nice: int = 0) -> None:
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._nice = nice

    def _ensure(self) -> subprocess.Popen:
        if self._proc is None or self._proc.poll() is not None:
            root = str(Path(__file__).resolve().parents[2])
            env = {**os.environ, "PYTHONUNBUFFERED": "1",
                   "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
            self._proc = subprocess.Popen([sys.executable, "-m", "gui.train.estimate_worker"], stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                          encoding="utf-8", bufsize=1, env=env)
            if self._nice and hasattr(os, "setpriority"):
                try:  # before it imports torch, whose compute threads inherit it
                    os.setpriority(os.PRIO_PROCESS, self._proc.pid, self._nice)
                except OSError:
                    pass
        return self._proc

    def estimate(self, cfg: Any, gpu_bytes: int | None, gpu_name: str | None, data: dict | None = None,
                 others: tuple[int, list] | None = None) -> Any:
        """The engine's ``Estimate`` as an object with the same attributes.

        Args:
            data: the run's records measured (:meth:`data_lengths`' answer): the estimate then
                holds the one at their longest record too (``data``).
            others: ``(bytes, processes)`` other programs hold on that GPU now (the GPU monitor's
                reading): the verdict judges what they leave.

        Raises:
            ConfigProblem: the config can't work with this model (a key's value).
            RuntimeError: the estimate failed otherwise (the message says why) or the process died.
        """
        request = {"config": cfg.to_dict(), "gpu_bytes": gpu_bytes, "gpu_name": gpu_name}
        if data:
            request["data"] = data
        if others:
            request["gpu_others_bytes"], request["gpu_others"] = others
        return SimpleNamespace(**self._ask(request)["estimate"])

    def data_lengths(self, cfg: Any) -> dict:
        """``engine.data.lengths.data_lengths(cfg).to_dict()``, computed in the child: the run's
        training records tokenized as the run will, and their lengths.

        Raises:
            RuntimeError: they can't be measured (the message says why) or the process died.
        """
        return self._ask({"call": "data_lengths", "config": cfg.to_dict()})["result"]

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
            if answer.get("problem"):
                raise ConfigProblem(answer["error"], answer["problem"])
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


def _wait_idle(is_idle: Any, calls: BackgroundCalls, msecs: int) -> bool:
    """Process events until ``is_idle()`` or ``msecs`` pass; True when idle (a scheduler's ``wait``)."""
    from PySide6.QtCore import QCoreApplication, QDeadlineTimer

    deadline = QDeadlineTimer(msecs)
    while not is_idle():
        if deadline.hasExpired():
            return False
        QCoreApplication.processEvents()
        calls.wait(10)
    QCoreApplication.processEvents()
    return True


class EstimateScheduler(QObject):
    """Debounced, coalesced ``engine.memory.estimate`` calls off the UI thread."""

    sig_estimate = Signal(object, float)
    """A new estimate (``engine.memory.Estimate``) and the ms from the change to the result."""
    sig_failed = Signal(str)
    """The estimate raised: a one-line message."""
    sig_problem = Signal(object)
    """The newest config can't work with this model (:class:`ConfigProblem`'s ``problem``: ``key``,
    ``message``, ``fix``, ``hint``); emitted before ``sig_failed`` with its message. The next request
    may be fine: every ``sig_estimate`` or ``sig_failed`` without it means the problem went."""
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
        self._request: tuple[Any, int | None, str | None, dict | None, tuple | None, float] | None = None
        self._busy = False
        self._pending = False
        self._closed = False
        self.last_latency_ms: float | None = None
        self.computed = 0
        self._generation = 0
        self._inflight = 0

    # ---- Public API
    def request(self, cfg: Any, gpu_bytes: int | None, gpu_name: str | None = None,
                data: dict | None = None, others: tuple[int, list] | None = None) -> None:
        """Estimate ``cfg`` against ``gpu_bytes`` soon (the newest request wins).

        ``gpu_name`` (the detected GPU's) lets the engine apply its per-GPU correction;
        ``data`` (the run's records measured, ``DataLengths.to_dict()``) adds the estimate at
        their longest record; ``others`` (``(bytes, processes)`` other programs hold on the
        GPU now) makes the verdict judge what they leave.
        """
        if self._closed:
            return
        self._request = (cfg, gpu_bytes, gpu_name, data, others, time.perf_counter())
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
        return _wait_idle(self.is_idle, self._calls, msecs)

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
        cfg, gpu_bytes, gpu_name, data, others, t0 = self._request
        self._busy = True
        self._inflight = self._generation  # one job at a time (_busy)

        def job() -> tuple[Any, float]:
            try:
                return self.process.estimate(cfg, gpu_bytes, gpu_name if gpu_bytes else None, data,
                                             others if gpu_bytes else None), t0
            except ConfigProblem as e:  # an answer about the config, not a failure of the estimate
                return e, t0

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
            if isinstance(est, ConfigProblem):
                self.sig_problem.emit(est.problem)
                self.sig_failed.emit(str(est))
            else:
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


DATA_NICE = 10
"""The data process's niceness: tokenizing a large dataset keeps a core busy for minutes, and the
window and the live estimate come first (as a CPU training worker's, docs/ui-stall.md)."""


def data_inputs(cfg: Any) -> tuple:
    """What the run's records measured in tokens depend on: ``engine.data.lengths.INPUT_KEYS``' values, and the
    modification time and size of the dataset file, a template file and the model folder.

    Cheap enough for every change of the form (a few ``stat`` calls, no read): the lengths are
    asked for again when this changes, so a dataset saved in the Dataset area, or by another
    program, is measured again when the Train area is next shown (``TrainArea.showEvent``).
    """
    from engine.data.lengths import INPUT_KEYS
    from engine.data.templates import is_template_file
    from engine.paths import demo_dataset_path, demo_model_dir

    def stamp(path: Path) -> tuple[int, int] | None:
        try:
            st = path.stat()
        except (OSError, ValueError):
            return None  # not a path (a hub id, a template name) or not there
        return st.st_mtime_ns, st.st_size

    values = tuple(tuple(v) if isinstance(v, list) else v for v in (getattr(cfg, k) for k in INPUT_KEYS))
    dataset = demo_dataset_path() if cfg.dataset == "demo" else Path(os.path.expanduser(cfg.dataset or ""))
    model = demo_model_dir() if cfg.model == "demo" else Path(os.path.expanduser(cfg.model or ""))
    template = Path(os.path.expanduser(cfg.template)) if is_template_file(cfg.template) else None
    return (*values, stamp(dataset) if cfg.dataset else None, stamp(model) if cfg.model else None,
            stamp(template) if template else None)


class DataLengthsScheduler(QObject):
    """``engine.data.lengths.data_lengths`` in a process of its own, off the UI thread.

    Measuring tokenizes every training record, so it never shares the estimate's process: a
    batch-size change is re-estimated within milliseconds while a large dataset is measured.
    The process starts with the first request, once :meth:`release` was called (the Train area
    calls it when the first estimate is in: both processes importing torch at once made the
    first estimate come 0.3-0.8 s later on two cores). As with the estimate, the newest request
    wins and at most one measurement is in flight; the answer to an older request is dropped.
    """

    sig_lengths = Signal(object, dict)
    """The records were measured: the request's key and ``DataLengths.to_dict()``."""
    sig_failed = Signal(object, str)
    """They can't be measured: the request's key and a one-line reason (the engine's message)."""

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.process = EstimateProcess(nice=DATA_NICE)
        self._calls = BackgroundCalls(self, max_threads=1)
        self._calls.sig_done.connect(self._on_done)
        self._calls.sig_failed.connect(self._on_failed)
        self._request: tuple[Any, Any] | None = None  # (key, cfg) waiting for the one in flight
        self._wanted: Any = None  # the newest request's key: the only answer worth showing
        self._busy = False
        self._closed = False
        self._held = True
        self.measured = 0
        """Measurements asked of the process (tests count them)."""

    # ---- Public API
    def request(self, key: Any, cfg: Any) -> None:
        """Measure ``cfg``'s records soon; ``key`` (e.g. :func:`data_inputs`) comes back with the answer."""
        if self._closed:
            return
        self._request = (key, cfg)
        self._wanted = key
        self._launch()

    def release(self) -> None:
        """Start measuring (the newest request, if any); until this is called, requests wait."""
        self._held = False
        self._launch()

    def cancel(self) -> None:
        """Drop the waiting request, and the answer of the one being measured."""
        self._request = None
        self._wanted = None

    def is_idle(self) -> bool:
        return not (self._busy or self._request is not None)

    def wait(self, msecs: int = 60_000) -> bool:
        """Block until the newest request is answered (tests and screenshots only)."""
        return _wait_idle(self.is_idle, self._calls, msecs)

    def shutdown(self) -> None:
        self._closed = True
        self._request = None
        self.process.close()
        self._calls.wait(10_000)

    # ---- Internals
    def _launch(self) -> None:
        if self._busy or self._held or self._request is None:
            return
        (key, cfg), self._request = self._request, None
        self._busy = True
        self.measured += 1
        process = self.process

        def job() -> tuple[Any, dict | None, str]:
            try:
                return key, process.data_lengths(cfg), ""
            except RuntimeError as e:
                return key, None, str(e)

        self._calls.submit("data_lengths", job)

    def _on_done(self, tag: str, result: Any) -> None:
        key, lengths, error = result
        self._busy = False
        if self._request is not None:
            self._launch()  # a newer request: this answer is already stale
            return
        if key != self._wanted or self._closed:
            return
        if lengths is None:
            self.sig_failed.emit(key, error)
        else:
            self.sig_lengths.emit(key, lengths)

    def _on_failed(self, tag: str, message: str, trace: str) -> None:
        key, self._busy = self._wanted, False  # the job itself raised (a bug): say it as the reason
        if self._request is not None:
            self._launch()
        elif key is not None and not self._closed:
            self.sig_failed.emit(key, message)
