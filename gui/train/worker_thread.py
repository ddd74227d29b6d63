"""The GUI's client for a training worker: a QThread around ``engine.client.WorkerClient``.

Training never runs in the GUI process (see ../../shared/notes/engineering.md, "Where
training runs"). The :class:`RunClient` starts or re-attaches to a worker process from a
``QThread`` (spawning a process from a big GUI process takes tens of milliseconds), reads
its events there, and buffers them. A 10 Hz ``QTimer`` on the GUI thread drains the buffer
and emits one typed ``sig_*`` signal per event kind, with steps batched, so a fast run can
never flood the event loop. Each drain has a time budget, so replaying a long run after a
re-attach is spread over several ticks instead of freezing the window.

Stop and Save-now are commands to the worker (a line on its stdin, or a STOP/SAVE file in
the run folder for a re-attached run); the worker's Trainer callback acts on them between
steps. Nothing here ever kills a thread.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QThread, QTimer, Signal

from engine import events as ev
from engine.client import WorkerClient  # at import: a first import in the Start click stalled the UI ~25 ms

DRAIN_INTERVAL_MS = 100   # 10 Hz: fast enough to feel live, slow enough to never flood
DRAIN_BUDGET_S = 0.008    # per tick, so the UI thread stays well under a 20 ms stall


class _EventPump(QThread):
    """Starts (or attaches to) the worker, then reads its events into a shared buffer.

    For a worker it started, ``WorkerClient.events()`` blocks on the worker's stdout and
    can't be interrupted, so that iteration runs in a daemon Python thread and this
    QThread only waits for it, checking ``isInterruptionRequested()``: a GUI that
    detaches (closing with "keep running") never waits on a silent worker. A re-attached
    run is followed here through ``WorkerClient.events(should_stop=...)``, which checks the
    same flag.
    """

    def __init__(self, launch: Any, buffer: deque, lock: threading.Lock, parent: QObject | None = None,
                 nice: int | None = None):
        super().__init__(parent)
        self._launch = launch
        self._nice = nice
        self._buffer = buffer
        self._lock = lock
        self.client: Any = None
        self.pending: list[str] = []  # commands asked for before the client existed
        self.kill_requested = False  # Kill pressed before the client existed
        self.handover = threading.Lock()  # the client's arrival vs. a command or Kill asked meanwhile

    def _push(self, kind: str, data: dict[str, Any]) -> None:
        with self._lock:
            self._buffer.append(ev.Event(kind, data, time.time()))

    def run(self) -> None:
        try:
            client = self._launch()
        except Exception as e:  # noqa: BLE001 - a failed start is an event, not a crash
            message = getattr(e, "message", None) or f"{type(e).__name__}: {e}"
            self._push(ev.ERROR, {"kind": getattr(e, "kind", "start"), "message": f"could not start the "
                                  f"training worker: {message}", "fix": getattr(e, "fix", {}) or {},
                                  "hint": getattr(e, "hint", None)})
            self._push(ev.FINISHED, {"status": "failed", "message": message})
            return
        with self.handover:
            self.client = client
            pending, self.pending, kill = self.pending, [], self.kill_requested
        if kill:  # Kill pressed while the worker was being spawned: it was ignored, and the run trained on
            client.kill()
        if self._nice and client.proc is not None and hasattr(os, "setpriority"):
            # Right after the spawn, before the worker starts its compute threads (which
            # inherit the niceness on Linux, where it is per thread).
            try:
                os.setpriority(os.PRIO_PROCESS, client.proc.pid, self._nice)
            except OSError:
                pass
        self._push("launched", {"output_dir": str(client.output_dir), "pid": client.pid})
        for cmd in pending:
            client.send(cmd)
        if client.proc is None:  # re-attached: follow its events.jsonl, interruptibly, right here
            for event in client.events(should_stop=self.isInterruptionRequested):
                with self._lock:
                    self._buffer.append(event)
            return
        reader = threading.Thread(target=self._read, args=(client,), daemon=True, name="worker-events")
        reader.start()
        while reader.is_alive() and not self.isInterruptionRequested():
            reader.join(0.1)

    def _read(self, client: Any) -> None:
        try:
            for event in client.events():
                with self._lock:
                    self._buffer.append(event)
        except Exception as e:  # noqa: BLE001 - e.g. the client was detached while reading
            self._push(ev.LOG, {"text": f"event reader stopped: {type(e).__name__}: {e}"})


class RunClient(QObject):
    """Start, watch and control one training run from the GUI thread, without blocking it."""

    sig_launched = Signal(str)
    """The worker process runs; its run folder."""
    sig_started = Signal(dict)
    """The worker loaded model and data: config, parameter counts, device, dataset stats."""
    sig_steps = Signal(list)
    """New training steps since the last drain (a list of step-event dicts)."""
    sig_eval = Signal(dict)
    """An evaluation finished: step, eval_loss."""
    sig_samples = Signal(dict)
    """The model answered the sample records: step, source, samples, time_s."""
    sig_checkpoint = Signal(dict)
    """A checkpoint was saved: step, path."""
    sig_warning = Signal(dict)
    """A warning: kind, message, fix, hint."""
    sig_error = Signal(dict)
    """A typed error: kind, message, fix, hint (and errors for config problems)."""
    sig_recovered = Signal(dict)
    """The worker recovered by itself (OOM, NaN): kind, message, changes, resume_from."""
    sig_log = Signal(str)
    """A line a library printed."""
    sig_finished = Signal(dict)
    """The run ended: status (completed, stopped, failed or crashed), losses, peaks."""

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._buffer: deque = deque()
        self._lock = threading.Lock()
        self._pump: _EventPump | None = None
        self._timer = QTimer(self)
        self._timer.setInterval(DRAIN_INTERVAL_MS)
        self._timer.timeout.connect(self.drain)
        self.output_dir: str | None = None
        self.stop_requested = False
        self._finished = True
        self.events_seen = 0

    # ---- Public API
    def start(self, cfg: Any, *, resume: bool = False, env: dict[str, str] | None = None,
              nice: int | None = None, probe_steps: int = 0) -> None:
        """Start a worker on ``cfg`` (a validated RunConfig); returns at once.

        Args:
            nice: lower the worker's CPU priority by this much (POSIX). Training on the CPU
                keeps every core busy; a niced worker yields to the GUI when it needs a
                few milliseconds, and loses almost nothing (docs/ui-stall.md).
            probe_steps: a probe run of this many steps in a folder of its own (engine/probe.py).
        """
        self._begin(lambda: WorkerClient.start(cfg, resume=resume, env=env, probe_steps=probe_steps),
                    None if probe_steps else cfg.output_dir or None, nice)

    def attach(self, output_dir: str | Path) -> None:
        """Follow a run started earlier (perhaps by a GUI that has since closed)."""
        self._begin(lambda: WorkerClient.attach(output_dir), str(output_dir))

    def is_active(self) -> bool:
        """A run is being started or watched and has not finished."""
        return not self._finished

    def stop(self) -> bool:
        """Ask the worker to stop after the current step, with a checkpoint."""
        self.stop_requested = True
        return self._send("stop")

    def save(self) -> bool:
        """Ask the worker to save a checkpoint now and go on."""
        return self._send("save")

    def kill(self) -> None:
        """Last resort: end the worker process now (progress since the last checkpoint is lost)."""
        pump = self._pump
        if pump is None:
            return
        with pump.handover:
            pump.kill_requested = True  # the pump kills it on arrival when it isn't there yet
            client = pump.client
        if client is not None:
            client.kill()

    def detach(self) -> None:
        """Stop watching but leave the worker running (the window is closing, run kept)."""
        pump = self._pump
        if pump is None:
            return
        if pump.client is not None:
            pump.client.detach()
        pump.requestInterruption()
        pump.wait(2000)
        self._timer.stop()
        self._finished = True
        self._pump = None

    def shutdown(self) -> None:
        """Before the app exits: stop the thread (the worker, if any, keeps running)."""
        self.detach()

    def drain(self) -> None:
        """Emit the buffered events as signals (the 10 Hz timer calls this)."""
        deadline = time.perf_counter() + DRAIN_BUDGET_S
        steps: list[dict] = []
        while True:
            with self._lock:
                if not self._buffer:
                    break
                event = self._buffer.popleft()
            self.events_seen += 1
            if event.type == ev.STEP:
                steps.append(event.data)
            else:
                if steps:
                    self.sig_steps.emit(steps)
                    steps = []
                self._emit(event)
            if time.perf_counter() > deadline:
                break
        if steps:
            self.sig_steps.emit(steps)
        pump = self._pump
        if self._finished and pump is not None and not pump.isRunning():
            with self._lock:
                empty = not self._buffer
            if empty:
                self._timer.stop()
                self._pump = None

    # ---- Internals
    def _begin(self, launch: Any, output_dir: str | None, nice: int | None = None) -> None:
        if self.is_active():
            raise RuntimeError("a run is already active in this client")
        if self._pump is not None:
            self._pump.wait(2000)
        with self._lock:
            self._buffer.clear()
        self.output_dir = output_dir
        self.stop_requested = False
        self._finished = False
        self._pump = _EventPump(launch, self._buffer, self._lock, self, nice)
        self._pump.start()
        self._timer.start()

    def _send(self, cmd: str) -> bool:
        pump = self._pump
        if pump is None or self._finished:
            return False
        with pump.handover:
            client = pump.client
            if client is None:
                pump.pending.append(cmd)
                return True
        return client.send(cmd)

    def _emit(self, event: Any) -> None:
        kind, data = event.type, event.data
        if kind == "launched":
            self.output_dir = data.get("output_dir")
            self.sig_launched.emit(self.output_dir or "")
        elif kind == ev.STARTED:
            if data.get("output_dir"):
                self.output_dir = data["output_dir"]
            self.sig_started.emit(data)
        elif kind == ev.EVAL:
            self.sig_eval.emit(data)
        elif kind == ev.SAMPLES:
            self.sig_samples.emit(data)
        elif kind == ev.CHECKPOINT:
            self.sig_checkpoint.emit(data)
        elif kind == ev.WARNING:
            self.sig_warning.emit(data)
        elif kind == ev.ERROR:
            self.sig_error.emit(data)
        elif kind == ev.RECOVERED:
            self.sig_recovered.emit(data)
        elif kind == ev.LOG:
            self.sig_log.emit(str(data.get("text", "")))
        elif kind == ev.FINISHED:
            self._finished = True
            self.sig_finished.emit({"output_dir": self.output_dir, **data})
