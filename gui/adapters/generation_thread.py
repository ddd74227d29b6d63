"""The playground's client for the generation worker: a QThread around ``GenerationClient``.

The GUI process holds no model: ``engine.generate``'s worker process loads the base and
the adapters. The QThread starts it (spawning from a big GUI process takes tens of
milliseconds) and reads its events into a buffer. A 10 Hz ``QTimer`` on the GUI thread
drains the buffer and emits ``sig_*`` signals; streamed tokens are joined per column, so a
fast model can't flood the event loop with one signal per token.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

from PySide6.QtCore import QObject, QThread, QTimer, Signal

from engine import events as ev

DRAIN_INTERVAL_MS = 100  # 10 Hz: streaming looks live, the UI never redraws per token


class GenerationThread(QThread):
    """Run one generation worker for one base; send it commands; turn its events into signals.

    Args:
        base: ``demo``, a model folder or a cached hub id.
        load_in: ``auto``, ``fp32``, ``bf16``, ``fp16``, ``int8`` or ``nf4``.
        device: ``auto``, ``cpu`` or ``cuda``.
        parent: The owning QObject.
    """

    sig_loaded = Signal(dict)
    """The base (and any adapters) are loaded: base, adapters {name: path}, adapter?, load_s, device, dtype."""
    sig_tokens = Signal(str, str, str)
    """Streamed text since the last drain: request, adapter, text."""
    sig_generated = Signal(dict)
    """One answer finished: request, adapter, text, tokens, tokens_per_s, time_s, switch_s, stopped."""
    sig_error = Signal(dict)
    """A typed error: kind, message, hint, and cmd / request / adapter / path when it concerns one."""
    sig_ready = Signal(dict)
    """The worker finished a command (cmd, request) and waits for the next."""
    sig_log = Signal(str)
    """A line the worker printed on stderr."""
    sig_exited = Signal(dict)
    """The worker process is gone: status, returncode."""

    def __init__(self, base: str, load_in: str = "auto", device: str = "auto", parent: QObject | None = None):
        super().__init__(parent)
        self.base = base
        self.load_in = load_in
        self.device = device
        self.client: Any = None
        self._buffer: deque = deque()
        self._lock = threading.Lock()
        self._pending: list[tuple[str, dict[str, Any]]] = []  # commands sent before the client existed
        self._timer = QTimer(self)
        self._timer.setInterval(DRAIN_INTERVAL_MS)
        self._timer.timeout.connect(self.drain)
        self.exited = False

    # ---- Public API
    def begin(self) -> None:
        """Start the thread (which starts the worker) and the drain timer; returns at once."""
        self._timer.start()
        self.start()

    def send(self, cmd: str, **fields: Any) -> None:
        """Send a command; before the worker exists it is queued and sent once it does."""
        with self._lock:
            client = self.client
            if client is None:
                self._pending.append((cmd, fields))
                return
        client.send(cmd, **fields)

    def load_adapter(self, path: str, name: str) -> None:
        self.send("load_adapter", path=str(path), name=name)

    def unload(self, name: str) -> None:
        self.send("unload", name=name)

    def generate(self, request: str, prompt: str, adapters: list[str], settings: dict[str, Any],
                 system: str | None = None) -> None:
        self.send("generate", request=request, prompt=prompt, system=system or None, adapters=list(adapters),
                  settings=settings)

    def stop_generation(self) -> None:
        """End the current request after the current token."""
        self.send("stop")

    def shutdown(self, timeout_s: float = 5.0) -> None:
        """Ask the worker to quit (kill it after ``timeout_s``) and end the thread."""
        with self._lock:
            client = self.client
            self._pending.clear()
        if client is not None:
            client.stop()  # a running answer ends at the next token instead of delaying the quit
            client.close(timeout=timeout_s)
        self.requestInterruption()
        self.wait(int(timeout_s * 1000) + 1000)
        self._timer.stop()
        self.drain()

    def drain(self) -> None:
        """Emit the buffered events as signals, joining consecutive tokens per column."""
        with self._lock:
            events = list(self._buffer)
            self._buffer.clear()
        pending_text: dict[tuple[str, str], list[str]] = {}

        def flush() -> None:
            for (request, adapter), parts in pending_text.items():
                self.sig_tokens.emit(request, adapter, "".join(parts))
            pending_text.clear()

        for event in events:
            if event.type == ev.TOKEN:
                key = (str(event.get("request")), str(event.get("adapter")))
                pending_text.setdefault(key, []).append(event.get("text", ""))
                continue
            flush()  # an answer's last tokens must arrive before its GENERATED
            if event.type == ev.LOADED:
                self.sig_loaded.emit(event.data)
            elif event.type == ev.GENERATED:
                self.sig_generated.emit(event.data)
            elif event.type == ev.ERROR:
                self.sig_error.emit(event.data)
            elif event.type == ev.READY:
                self.sig_ready.emit(event.data)
            elif event.type == ev.LOG:
                self.sig_log.emit(str(event.get("text", "")))
            elif event.type == ev.FINISHED and event.get("status") == "exited":
                self.exited = True
                self._timer.stop()
                self.sig_exited.emit(event.data)
        flush()

    # ---- QThread
    def run(self) -> None:
        from engine.generate import GenerationClient

        client = GenerationClient(self.base, load_in=self.load_in, device=self.device)
        try:
            client.start()
        except OSError as e:
            self._push(ev.ERROR, {"kind": "start", "message": f"could not start the generation worker: {e}",
                                  "fix": {}, "hint": None, "cmd": "start", "fatal": True})
            self._push(ev.FINISHED, {"status": "exited", "returncode": None})
            return
        with self._lock:
            self.client = client
            pending, self._pending = self._pending, []
        for cmd, fields in pending:
            client.send(cmd, **fields)
        # client.events() blocks on the pipe; a daemon thread reads so this QThread can stop on request.
        reader = threading.Thread(target=self._read, args=(client,), daemon=True, name="generation-events")
        reader.start()
        while reader.is_alive() and not self.isInterruptionRequested():
            reader.join(0.1)

    # ---- Internals
    def _push(self, kind: str, data: dict[str, Any]) -> None:
        with self._lock:
            self._buffer.append(ev.Event(kind, data, time.time()))

    def _read(self, client: Any) -> None:
        for event in client.events():
            with self._lock:
                self._buffer.append(event)
