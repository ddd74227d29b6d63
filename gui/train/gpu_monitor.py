"""The GPU now, every few seconds: memory in use and by whom, utilisation, temperature, power.

The readings come from ``engine.nvsmi`` (nvidia-smi, no CUDA context in the GUI's process), on a
Python thread: nvidia-smi takes tens of milliseconds, and seconds when the driver is busy, which
the UI thread must never wait for. Each reading is a plain dict (:func:`reading`); the Train
area shows it under the GPU's description and passes what other programs hold to the estimate,
whose verdict then judges what they leave.
"""

from __future__ import annotations

import threading
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from gui.scheme import ink

INTERVAL_MS = 3000


def reading(name: str | None) -> dict[str, Any] | None:
    """The GPU named ``name`` (torch's ``cuda:0``) now, or None when nvidia-smi can't say.

    Returns:
        ``{"gpu": GpuStatus.to_dict(), "others_bytes", "others": [{"pid", "name", "bytes"}],
        "ours_bytes"}``: ``others_*`` leave out this app's live training workers, whose memory is
        ``ours_bytes``.
    """
    from engine import nvsmi

    gpu = nvsmi.cuda_gpu(nvsmi.query(), None, name)
    if gpu is None:
        return None
    own = nvsmi.own_worker_pids()
    held, others = gpu.held_by_others(own)
    return {"gpu": gpu.to_dict(), "others_bytes": held,
            "others": [p.to_dict() for p in others],
            "ours_bytes": sum(p.used_bytes or 0 for p in gpu.processes if p.pid in own)}


class GpuMonitor(QObject):
    """Reads the GPU every ``interval_ms`` while started; one reading at a time."""

    sig_reading = Signal(object)
    """A reading (:func:`reading`'s dict), or None: nvidia-smi can't say."""

    # ---- Public API
    def __init__(self, interval_ms: int = INTERVAL_MS, parent: QObject | None = None):
        super().__init__(parent)
        self.name: str | None = None
        self._busy = False
        self._thread: threading.Thread | None = None
        self.timer = QTimer(self)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self.read_now)

    def start(self, name: str | None) -> None:
        """Read the GPU called ``name`` now and then every interval."""
        self.name = name
        if not self.timer.isActive():
            self.timer.start()
        self.read_now()

    def stop(self) -> None:
        self.timer.stop()

    def is_active(self) -> bool:
        return self.timer.isActive()

    def read_now(self) -> None:
        if self._busy:
            return
        self._busy = True
        self._thread = threading.Thread(target=self._read, args=(self.name,), name="gpu-monitor", daemon=True)
        self._thread.start()

    def shutdown(self) -> None:
        self.timer.stop()
        if self._thread is not None:
            self._thread.join(6)

    # ---- Internals
    def _read(self, name: str | None) -> None:
        try:
            result = reading(name)
        except Exception:  # noqa: BLE001 - a reading is advice; "can't say" is the answer
            result = None
        finally:
            self._busy = False
        self.sig_reading.emit(result)


def describe_reading(r: dict[str, Any] | None) -> str:
    """"Now: 9.1 of 24.0 GiB in use, 7.5 GiB by other programs (python, pid 4242), 87% busy, 71 °C, 412 W"."""
    if r is None:
        return ""
    gib = 2**30
    g = r["gpu"]
    parts = [f"Now: {g['used_bytes'] / gib:.1f} of {g['total_bytes'] / gib:.1f} GiB in use"]
    if r["ours_bytes"]:
        parts.append(f"{r['ours_bytes'] / gib:.1f} GiB by this app's run")
    if r["others_bytes"] >= 256 * 2**20:
        from engine.nvsmi import describe_others

        who = describe_others(r["others_bytes"], r["others"], limit=2)
        parts.append(f"<span style='color:{ink('#b26b00')}'>{r['others_bytes'] / gib:.1f} GiB by other programs</span>"
                     + (f" [{who}]" if who else ""))
    if g.get("utilization_pct") is not None:
        parts.append(f"{g['utilization_pct']}% busy")
    if g.get("temperature_c") is not None:
        parts.append(f"{g['temperature_c']} °C")
    if g.get("power_w") is not None:
        parts.append(f"{g['power_w']:.0f} W")
    return ", ".join(parts)
