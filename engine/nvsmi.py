"""What the NVIDIA driver says about the GPUs now, through ``nvidia-smi``, without CUDA.

The estimate answers "will this run fit?" against the GPU's memory, but on a workstation the
GPU is rarely empty: a notebook that still holds a model, another run, the desktop itself.
torch can only say how much is free by creating a CUDA context (~0.5 GB pinned for the life
of the asking process), which the GUI must not do. ``nvidia-smi`` ships with the driver, asks
NVML and creates no context: two short calls give each GPU's memory in use, utilisation,
temperature and power, and the compute processes holding memory on it.

The query format is nvidia-smi's documented CSV (``--query-gpu``, ``--query-compute-apps``,
``--format=csv,noheader,nounits``; see ``nvidia-smi --help-query-gpu``). Fields a GPU can't
report (``[N/A]``, ``[Not Supported]``, e.g. power on some laptops, per-process memory under
MIG) are None. No nvidia-smi, a failing one or one that hangs all mean "don't know" (None),
never an error: the caller then judges against the GPU's total as before.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

MIB = 2**20
GPU_FIELDS = ("index", "uuid", "name", "memory.total", "memory.used", "utilization.gpu", "temperature.gpu",
              "power.draw", "power.limit")
APP_FIELDS = ("gpu_uuid", "pid", "process_name", "used_memory")
TIMEOUT_S = 5.0


@dataclass(frozen=True)
class GpuProcess:
    """A compute process holding memory on a GPU."""

    pid: int
    name: str
    used_bytes: int | None
    """None where the driver can't say (MIG, some containers)."""

    def to_dict(self) -> dict[str, Any]:
        """``{"pid", "name", "bytes"}``: how the estimate (``gpu_others``) and the GUI pass it on."""
        return {"pid": self.pid, "name": self.name, "bytes": self.used_bytes}


@dataclass(frozen=True)
class GpuStatus:
    """One GPU as the driver reports it now.

    Attributes:
        index: nvidia-smi's index (PCI bus order; not necessarily torch's ``cuda:N``).
        uuid: ``GPU-…``, the same GPU whatever the ordering.
        total_bytes, used_bytes: Memory as nvidia-smi shows it (every process, graphics too).
        utilization_pct: Share of the last sample period a kernel ran, 0-100.
        temperature_c, power_w, power_limit_w: Where the GPU reports them.
        processes: Compute processes holding memory on this GPU.
    """

    index: int
    uuid: str
    name: str
    total_bytes: int
    used_bytes: int
    utilization_pct: int | None = None
    temperature_c: int | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    processes: tuple[GpuProcess, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def held_by_others(self, own_pids: Iterable[int] = ()) -> tuple[int, list[GpuProcess]]:
        """Memory in use by everything but ``own_pids``, and the other compute processes.

        The memory counts graphics processes (the desktop) and the driver's own share, which
        no process list shows, so it is the GPU's used memory less what ``own_pids`` hold,
        not a sum over the list.
        """
        own = set(own_pids)
        mine = sum(p.used_bytes or 0 for p in self.processes if p.pid in own)
        others = [p for p in self.processes if p.pid not in own]
        others.sort(key=lambda p: -(p.used_bytes or 0))
        return max(0, self.used_bytes - mine), others


# ---------------------------------------------------------------- Public API
def query(smi: str | None = None, timeout_s: float = TIMEOUT_S, *, processes: bool = True) -> list[GpuStatus] | None:
    """Every GPU the driver sees, or None without a working ``nvidia-smi``.

    Args:
        smi: The nvidia-smi executable; default: the one on PATH.
        timeout_s: Per call. A driver in trouble can hang nvidia-smi; past this it's "don't know".
        processes: Also list the compute processes (a second call).
    """
    smi = smi or shutil.which("nvidia-smi")
    if not smi:
        return None
    gpus = _run(smi, ["--query-gpu=" + ",".join(GPU_FIELDS)], timeout_s)
    if gpus is None:
        return None
    apps = (_run(smi, ["--query-compute-apps=" + ",".join(APP_FIELDS)], timeout_s) or []) if processes else []
    by_gpu: dict[str, list[GpuProcess]] = {}
    for line in apps:
        parsed = _parse_app(line)
        if parsed is not None:
            by_gpu.setdefault(parsed[0], []).append(parsed[1])
    out = []
    for line in gpus:
        status = _parse_gpu(line)
        if status is not None:
            out.append(GpuStatus(**{**asdict(status), "processes": tuple(by_gpu.get(status.uuid, ()))}))
    return out or None


def cuda_gpu(statuses: list[GpuStatus] | None, uuid: str | None = None, name: str | None = None) -> GpuStatus | None:
    """The GPU torch calls ``cuda:0`` among ``statuses``, or None when it can't be told.

    Args:
        uuid: torch's ``get_device_properties(0).uuid`` when known: the sure way.
        name: Its name: picks the GPU when that name is unique.

    Without either, ``CUDA_VISIBLE_DEVICES`` decides: a UUID entry is matched; an index entry
    only under ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` (CUDA's default order is fastest first, which
    nvidia-smi doesn't show). A machine with one GPU has no doubt.
    """
    if not statuses:
        return None
    if uuid:
        bare = str(uuid).removeprefix("GPU-").lower()
        for s in statuses:
            if s.uuid.lower().removeprefix("gpu-") == bare:
                return s
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()] \
        if "CUDA_VISIBLE_DEVICES" in os.environ else None
    if visible is not None:
        if not visible or visible[0].startswith("-"):
            return None
        first = visible[0]
        if first.upper().startswith(("GPU-", "MIG-")):
            return next((s for s in statuses if s.uuid.lower().startswith(first.lower())), None)
        if first.isdigit() and os.environ.get("CUDA_DEVICE_ORDER") == "PCI_BUS_ID":
            return next((s for s in statuses if s.index == int(first)), None)
    if name:
        named = [s for s in statuses if s.name == name]
        if len(named) == 1:
            return named[0]
    return statuses[0] if len(statuses) == 1 else None


def own_worker_pids() -> set[int]:
    """Process ids of this app's training workers that are alive now (their runs' ``worker.pid``).

    The memory they hold is not "another program's": a config beside a running run is judged
    as if that run had finished.
    """
    from engine.paths import runs_dir
    from engine.runs import pid_alive

    pids = {os.getpid()}
    root = runs_dir()
    try:
        files = list(root.glob("*/worker.pid"))
    except OSError:
        return pids
    for f in files:
        try:
            pid = int(f.read_text().strip())
        except (OSError, ValueError):
            continue
        if pid_alive(pid):
            pids.add(pid)
    return pids


def describe_others(used_bytes: int, processes: list[dict[str, Any]], limit: int = 3) -> str:
    """"python (pid 4242) 7.50 GiB, Xorg …": who holds the memory, biggest first.

    Args:
        used_bytes: All the memory they hold (processes not listed included).
        processes: :meth:`GpuProcess.to_dict` of each listed one.
    """
    names = [f"{p['name'].rsplit('/', 1)[-1] or p['name']} (pid {p['pid']})"
             + (f" {p['bytes'] / 2**30:.2f} GiB" if p.get("bytes") is not None else "") for p in processes[:limit]]
    if len(processes) > limit:
        names.append(f"{len(processes) - limit} more")
    listed = sum(p.get("bytes") or 0 for p in processes)
    if not processes:
        return "no process listed: the desktop, the driver, or processes in other containers"
    if used_bytes - listed >= 256 * MIB:
        names.append(f"{(used_bytes - listed) / 2**30:.2f} GiB not listed, e.g. the desktop or the driver")
    return ", ".join(names)


# ---------------------------------------------------------------- Internals
def _run(smi: str, query_args: list[str], timeout_s: float) -> list[str] | None:
    try:
        proc = subprocess.run([smi, *query_args, "--format=csv,noheader,nounits"], capture_output=True,
                              text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        return None
    return [ln.strip() for ln in proc.stdout.splitlines() if ln.strip()]


def _number(text: str) -> float | None:
    text = text.strip()
    try:
        return float(text)
    except ValueError:  # [N/A], [Not Supported], N/A, [Unknown Error]
        return None


def _parse_gpu(line: str) -> GpuStatus | None:
    parts = [p.strip() for p in line.split(",")]
    n = len(GPU_FIELDS)
    if len(parts) < n:
        return None
    # A name can hold commas; the other fields can't: take them from both ends.
    index, uuid = parts[0], parts[1]
    tail = parts[len(parts) - (n - 3):]
    name = ", ".join(parts[2:len(parts) - (n - 3)])
    total, used, util, temp, power, limit = (_number(t) for t in tail)
    if not index.isdigit() or total is None or used is None:
        return None
    return GpuStatus(index=int(index), uuid=uuid, name=name, total_bytes=int(total * MIB),
                     used_bytes=int(used * MIB),
                     utilization_pct=int(util) if util is not None else None,
                     temperature_c=int(temp) if temp is not None else None,
                     power_w=power, power_limit_w=limit)


def _parse_app(line: str) -> tuple[str, GpuProcess] | None:
    try:
        uuid, pid, rest = (p.strip() for p in line.split(",", 2))
        name, used = (p.strip() for p in rest.rsplit(",", 1))
        pid_n = int(pid)
    except ValueError:  # "No running processes found" and the like
        return None
    mib = _number(used)
    return uuid, GpuProcess(pid=pid_n, name=name, used_bytes=int(mib * MIB) if mib is not None else None)


class Sampler:
    """A training run's GPU load over time: nvidia-smi every ``interval_s`` on a daemon thread.

    Utilisation is the share of the sample period in which a kernel ran (NVML's definition), so
    its mean over a logging interval says how much of the time the GPU had work: a run whose
    steps wait on the CPU (collating batches, Python overhead, steps too small to fill the GPU)
    reads low. One ``--query-gpu`` call per sample, ~30 ms of CPU.

    Args:
        gpu: The GPU to follow (its UUID is what is matched on each sample).
        smi: The nvidia-smi executable; default: the one on PATH.
    """

    def __init__(self, gpu: GpuStatus, smi: str | None = None, interval_s: float = 2.0):
        self.uuid, self.smi, self.interval_s = gpu.uuid, smi, interval_s
        self.samples: list[tuple[float, int | None, int | None, float | None]] = []  # (t, util, temp, W)
        self.idle_windows = 0  # consecutive logging intervals that read idle (the trainer's callback counts)
        self.warned = False  # the "GPU often idle" advice was given (once per run)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="gpu-sampler", daemon=True)

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(TIMEOUT_S + 1)

    def window(self, since: float, until: float | None = None) -> dict[str, Any]:
        """``{"gpu_util_pct", "gpu_temp_c", "gpu_power_w"}`` over the samples taken in (since, until]:
        the mean utilisation and power, the highest temperature; keys without a sample are left out."""
        rows = [r for r in list(self.samples) if r[0] > since and (until is None or r[0] <= until)]
        out: dict[str, Any] = {}
        utils = [r[1] for r in rows if r[1] is not None]
        temps = [r[2] for r in rows if r[2] is not None]
        watts = [r[3] for r in rows if r[3] is not None]
        if utils:
            out["gpu_util_pct"] = round(sum(utils) / len(utils), 1)
        if temps:
            out["gpu_temp_c"] = max(temps)
        if watts:
            out["gpu_power_w"] = round(sum(watts) / len(watts), 1)
        return out

    def mean_util(self) -> float | None:
        """The mean utilisation over every sample so far (None without one)."""
        return self.window(float("-inf")).get("gpu_util_pct")

    def _loop(self) -> None:
        while not self._stop.is_set():
            gpus = query(self.smi, processes=False) or []
            gpu = next((g for g in gpus if g.uuid == self.uuid), None)
            if gpu is not None:
                self.samples.append((time.time(), gpu.utilization_pct, gpu.temperature_c, gpu.power_w))
            self._stop.wait(self.interval_s)


# ---------------------------------------------------------------- Command line
def report(statuses: list[GpuStatus] | None, own_pids: Iterable[int] = ()) -> dict[str, Any]:
    """The ``gpu --json`` object: ``{"gpus": [...], "note": str|None}``; each GPU's dict adds
    ``others_bytes`` (memory held by programs other than this app's training workers)."""
    if statuses is None:
        return {"gpus": [], "note": "no nvidia-smi answered: no NVIDIA GPU or driver here (torch may still see "
                                    "a GPU of another kind; `finetune-studio --self-check` says)"}
    own = set(own_pids)
    gpus = []
    for s in statuses:
        held, _ = s.held_by_others(own)
        gpus.append({**s.to_dict(), "others_bytes": held,
                     "processes": [{**asdict(p), "ours": p.pid in own} for p in s.processes]})
    return {"gpus": gpus, "note": None}


def format_report(rep: dict[str, Any]) -> str:
    """Readable lines of :func:`report`."""
    if not rep["gpus"]:
        return rep["note"]
    lines = []
    for g in rep["gpus"]:
        gib = 2**30
        extra = [f"{g['utilization_pct']}% busy" if g["utilization_pct"] is not None else None,
                 f"{g['temperature_c']} °C" if g["temperature_c"] is not None else None,
                 (f"{g['power_w']:.0f} W" + (f" of {g['power_limit_w']:.0f}" if g["power_limit_w"] else ""))
                 if g["power_w"] is not None else None]
        lines.append(f"GPU {g['index']}: {g['name']}: {g['used_bytes'] / gib:.2f} of {g['total_bytes'] / gib:.2f} GiB "
                     f"in use" + "".join(f", {e}" for e in extra if e))
        for p in g["processes"]:
            mem = f"{p['used_bytes'] / gib:.2f} GiB" if p["used_bytes"] is not None else "memory not reported"
            lines.append(f"  pid {p['pid']:>7}  {mem:>10}  {p['name']}" + ("  (a Finetune Studio run)" if p["ours"] else ""))
        if not g["processes"]:
            lines.append("  no compute process holds memory on it")
    return "\n".join(lines)


def cli_gpu(args: Any) -> int:
    """``finetune-studio gpu [--json] [--watch S]``."""
    import json
    import time

    while True:
        rep = report(query(), own_worker_pids())
        print(json.dumps(rep) if args.json else format_report(rep), flush=True)
        if not args.watch:
            return 0 if rep["gpus"] else 1
        time.sleep(args.watch)
        if not args.json:
            print(flush=True)
