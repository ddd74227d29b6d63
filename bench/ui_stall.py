"""How late does the UI thread get while the Train area runs a demo training?

A 10 ms ``QTimer`` (Qt.PreciseTimer) ticks on the GUI thread for the whole session; each
tick records how late it fired against the previous tick + 10 ms. Lateness is the time
the event loop could not run: what a user would feel as a stall. The session has phases:

- ``open``: the Train area is built and shown; GPU detection (child process) and the
  first memory estimate (a meta-device model, off the UI thread) run;
- ``idle``: the window sits ready, nothing running (the baseline);
- ``typing``: 40 config edits, 25 ms apart, each re-estimating the memory (the gauge);
- ``run``: Start is pressed on the demo preset; the worker trains; events arrive at 10 Hz
  through the QThread client into plots, progress, advisor and log; until ``finished``.

``python bench/ui_stall.py [--max-steps N] [--json OUT.json]`` (offscreen by default).
Results for this project are recorded in docs/ui-stall.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TICK_MS = 10


def neutralize_none_refcount_bug() -> bool:
    """Work around PySide6 6.12.0 on CPython < 3.12 dropping a reference to None on every
    call of a Qt method that returns nothing (measured: -1000 after 1000 ``setValue``
    calls; PySide6 6.11.3 and Python 3.12's immortal None don't have it). A long session
    reaches zero and aborts with "none_dealloc". This bench must survive a full demo run,
    so it pads None's refcount; the app itself needs the dependency fixed (see
    docs/ui-stall.md). Returns whether the bug was present.
    """
    import ctypes

    from PySide6.QtWidgets import QApplication, QProgressBar

    if sys.version_info >= (3, 12):
        return False
    QApplication.instance() or QApplication([])
    bar = QProgressBar()
    before = sys.getrefcount(None)
    for i in range(100):
        bar.setValue(i)
    if sys.getrefcount(None) >= before:
        return False
    # True and False lose references too on some paths (seen as "bool_dealloc" mid-run).
    for obj in (None, True, False):
        ctypes.c_ssize_t.from_address(id(obj)).value += 1 << 40  # ob_refcnt is PyObject's first field
    return True


class StackSampler:
    """Samples the main thread's Python stack from a background thread (every ~2 ms).

    A stall's window then says which code ran during it. Samples are taken only when the
    sampler gets the GIL, so time in C++ that holds the GIL shows as the Python frame that
    called into it, which is what we want to know.
    """

    def __init__(self, interval_s: float = 0.002):
        import threading

        self.main = threading.main_thread().ident
        self.samples: list[tuple[float, tuple[str, ...]]] = []
        self._stop = threading.Event()
        self._interval = interval_s
        self._thread = threading.Thread(target=self._run, daemon=True, name="stack-sampler")
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            frame = sys._current_frames().get(self.main)
            stack = []
            while frame is not None and len(stack) < 40:
                code = frame.f_code
                stack.append(f"{Path(code.co_filename).name}:{code.co_name}:{frame.f_lineno}")
                frame = frame.f_back
            self.samples.append((time.perf_counter(), tuple(stack)))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def where(self, t0: float, t1: float, top: int = 3) -> list[str]:
        """The most frequent innermost project frame (and its leaf) among samples in [t0, t1]."""
        from collections import Counter

        ours = ("area.py", "plots.py", "vram_gauge.py", "worker_thread.py", "log_console.py", "advisor.py",
                "notify.py", "main_window.py", "fields.py", "config_model.py", "estimator.py", "gpu_panel.py",
                "method_picker.py", "model_picker.py", "background.py")
        counts: Counter = Counter()
        for t, stack in self.samples:
            if t0 <= t <= t1 and stack:
                mine = next((f for f in stack if f.split(":")[0] in ours), "-")
                counts[f"{mine} <- leaf {stack[0]}"] += 1
        total = sum(counts.values())
        return [f"{n}/{total} {k}" for k, n in counts.most_common(top)]


def stats(values: list[float]) -> dict[str, float]:
    import numpy as np

    if not values:
        return {"ticks": 0}
    a = np.asarray(values)
    return {"ticks": int(a.size), "p50_ms": round(float(np.percentile(a, 50)), 2),
            "p99_ms": round(float(np.percentile(a, 99)), 2), "max_ms": round(float(a.max()), 2)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--max-steps", type=int, default=120, help="demo run length (the preset's 120 by default)")
    p.add_argument("--idle-s", type=float, default=3.0)
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--nice", type=int, default=None, help="override the CPU worker's niceness (0 = off)")
    p.add_argument("--stacks", action="store_true",
                   help="sample the GUI thread's Python stack every 2 ms and report where each stall "
                        "over 20 ms was spent")
    args = p.parse_args()
    os.environ.setdefault("FINETUNE_STUDIO_HOME", tempfile.mkdtemp(prefix="ui-stall-"))

    from PySide6.QtCore import QElapsedTimer, QEventLoop, Qt, QTimer
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    none_bug = neutralize_none_refcount_bug()
    phase = {"name": "build"}
    late: dict[str, list[float]] = {}
    worst: dict[str, float] = {}
    clock = QElapsedTimer()
    clock.start()
    last = {"t": None, "cpu": 0.0}
    # The worst stalls, with how much CPU this process used during each: a stall with
    # ~0 CPU is the OS running something else (other processes, the worker), one with
    # CPU ~ its length is this process busy (our code, Qt, the GC).
    stalls: list[tuple[float, str, float, float]] = []
    sampler = StackSampler() if args.stacks else None
    stall_windows: list[tuple[float, float, float]] = []  # (lateness, start, end) in perf_counter s

    def tick() -> None:
        now = clock.nsecsElapsed() / 1e6
        cpu = time.process_time() * 1000
        if last["t"] is not None:
            lateness = max(0.0, now - last["t"] - TICK_MS)
            late.setdefault(phase["name"], []).append(lateness)
            if lateness > worst.get(phase["name"], -1):
                worst[phase["name"]] = lateness
            if lateness > 20:
                end = time.perf_counter()
                stall_windows.append((lateness, end - (lateness + TICK_MS) / 1000, end))
                stalls.append((round(lateness, 1), phase["name"], round(now / 1000, 2), round(cpu - last["cpu"], 1)))
        last["t"], last["cpu"] = now, cpu

    # Garbage-collector pauses, by generation: a full collection walks every object the
    # GUI holds, and shows up as a stall with this process's CPU busy.
    import gc

    gc_pauses: list[tuple[int, float]] = []
    gc_t0 = {"t": 0.0}

    def on_gc(stage: str, info: dict) -> None:
        if stage == "start":
            gc_t0["t"] = time.perf_counter()
        else:
            gc_pauses.append((info["generation"], (time.perf_counter() - gc_t0["t"]) * 1000))

    gc.callbacks.append(on_gc)

    timer = QTimer()
    timer.setTimerType(Qt.TimerType.PreciseTimer)
    timer.setInterval(TICK_MS)
    timer.timeout.connect(tick)
    timer.start()

    def spin(seconds: float) -> None:
        loop = QEventLoop()
        QTimer.singleShot(int(seconds * 1000), loop.quit)
        loop.exec()

    def spin_until(cond, timeout_s: float) -> bool:
        end = time.time() + timeout_s
        while not cond():
            if time.time() > end:
                return False
            spin(0.05)
        return True

    # PySide6 6.12 on Python 3.11 loses a reference to None in some C++ -> Python
    # conversions; a steady fall here means a crash later (see gui/train/vram_gauge.py).
    watched = {"None": None, "True": True, "False": False, "0": 0, "1": 1}
    none_refs = {"start": {k: sys.getrefcount(v) for k, v in watched.items()}}
    t_open = time.perf_counter()
    import gui.train.area
    from gui.train.area import TrainArea

    if args.nice is not None:
        gui.train.area.CPU_TRAINING_NICE = args.nice

    area = TrainArea()
    area.resize(1210, 830)
    area.show()
    phase["name"] = "open"
    ready = spin_until(lambda: area.env is not None and area.estimate is not None, 300)
    open_s = time.perf_counter() - t_open
    if not ready:
        print("the Train area never became ready", file=sys.stderr)
        return 1

    phase["name"] = "idle"
    spin(args.idle_s)

    phase["name"] = "typing"
    spin_box = area.editors["seq_len"].spin
    latencies: list[float] = []
    area.estimator.sig_estimate.connect(lambda est, ms: latencies.append(ms))
    for i in range(40):
        spin_box.setValue(256 + 8 * (i % 20))
        spin(0.025)
    spin_until(area.estimator.is_idle, 30)
    area.config_model.update({"seq_len": 256, "max_steps": args.max_steps})
    spin_until(area.estimator.is_idle, 30)

    # How long the GUI thread spends per drain (events -> signals -> widgets) and per plot redraw.
    costs: dict[str, list[float]] = {"drain": [], "redraw": []}

    def timed(fn, key):
        def wrapper():
            t0 = time.perf_counter()
            fn()
            costs[key].append((time.perf_counter() - t0) * 1000)
        return wrapper

    area.run._timer.timeout.disconnect()
    area.run._timer.timeout.connect(timed(area.run.drain, "drain"))
    area.plots._timer.timeout.disconnect()
    area.plots._timer.timeout.connect(timed(area.plots.redraw, "redraw"))

    phase["name"] = "run"
    finished: dict = {}
    area.run.sig_finished.connect(finished.update)
    steps = {"n": 0}
    area.run.sig_steps.connect(lambda rows: steps.__setitem__("n", steps["n"] + len(rows)))
    t_run = time.perf_counter()
    if not area.start_run():
        print(f"could not start: {area.banner.text()}", file=sys.stderr)
        return 1
    ok = spin_until(lambda: bool(finished), 900)
    run_s = time.perf_counter() - t_run
    none_refs["after_run"] = {k: sys.getrefcount(v) - none_refs["start"][k] for k, v in watched.items()}
    phase["name"] = "after"
    spin(0.5)
    timer.stop()
    area.shutdown()
    area.deleteLater()
    app.processEvents()

    result = {
        "date": time.strftime("%Y-%m-%d"), "platform": os.environ.get("QT_QPA_PLATFORM"),
        "cpus": os.cpu_count(), "python": sys.version.split()[0],
        "open_s": round(open_s, 1), "run_s": round(run_s, 1), "run_status": finished.get("status"),
        "steps_received": steps["n"], "max_steps": args.max_steps,
        "phases": {name: stats(values) for name, values in late.items()},
        "gauge_latency_ms": stats(latencies) | {"estimates": len(latencies)},
        "none_refcount": none_refs, "pyside_none_bug": none_bug,
        "worker_nice": gui.train.area.CPU_TRAINING_NICE,
        "stalls_over_20ms": [{"ms": ms, "phase": ph, "at_s": at, "own_cpu_ms": c}
                             for ms, ph, at, c in sorted(stalls, reverse=True)[:12]],
        "gc_pause_ms": {f"gen{g}": stats([ms for gen, ms in gc_pauses if gen == g]) for g in (0, 1, 2)},
        "drain_cost_ms": stats(costs["drain"]), "redraw_cost_ms": stats(costs["redraw"]),
    }
    if sampler is not None:
        sampler.stop()
        result["stall_stacks"] = [{"ms": round(ms, 1), "where": sampler.where(t0, t1)}
                                  for ms, t0, t1 in sorted(stall_windows, reverse=True)[:12]]
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0 if ok and finished.get("status") == "completed" else 1


if __name__ == "__main__":
    sys.exit(main())
