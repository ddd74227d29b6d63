"""The run folder: its layout, the run history and resume lookup.

A run folder holds::

    run.yaml          the resolved run config
    summary.json      status, times, losses, measured peak memory, dataset hash (updated live)
    metrics.jsonl     one JSON object per logged step / eval; a resumed run appends
    events.jsonl      every worker event, so a re-attached GUI can replay the run
    checkpoint-N/     Trainer checkpoints (model/adapter, optimizer, scheduler, RNG, data position)
    final/            the final PEFT adapter, or a safetensors model for full/freeze
    README.md         the model card
    worker.pid        the live worker's process id (removed when it exits)
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.files import atomic_write_text
from engine.paths import runs_dir

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


def new_run_dir(method: str, run_name: str = "") -> Path:
    """A fresh, unique folder in the runs directory, named by time and method."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", run_name).strip("-") if run_name else method
    base = runs_dir() / f"{stamp}-{slug}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    path.mkdir(parents=True)
    return path


def checkpoints(output_dir: Path) -> list[Path]:
    """Checkpoint folders in step order (oldest first)."""
    if not output_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in output_dir.iterdir() if p.is_dir() and (m := CHECKPOINT_RE.match(p.name))]
    return [p for _, p in sorted(found)]


def checkpoint_step(path: Path) -> int:
    """The global step a ``checkpoint-N`` folder was saved at."""
    m = CHECKPOINT_RE.match(Path(path).name)
    if not m:
        raise ValueError(f"'{path}' is not a checkpoint folder (checkpoint-N)")
    return int(m.group(1))


def last_checkpoint(output_dir: Path) -> Path | None:
    """The newest complete checkpoint (one with trainer_state.json, written last by Trainer)."""
    for path in reversed(checkpoints(output_dir)):
        if (path / "trainer_state.json").exists():
            return path
    return None


def read_summary(output_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((Path(output_dir) / "summary.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def write_summary(output_dir: Path, /, **changes: Any) -> dict[str, Any]:
    """Merge ``changes`` into summary.json, atomically."""
    data = read_summary(output_dir)
    data.update(changes)
    atomic_write_text(Path(output_dir) / "summary.json", json.dumps(data, indent=2, ensure_ascii=False))
    return data


def read_metrics(output_dir: Path) -> list[dict[str, Any]]:
    """All rows of metrics.jsonl; a torn last line (after a kill) is skipped."""
    rows = []
    path = Path(output_dir) / "metrics.jsonl"
    if not path.exists():
        return rows
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


@dataclass
class RunInfo:
    """One row of the run history."""

    path: Path
    name: str
    status: str
    method: str
    model: str
    started: float | None
    finished: float | None
    final_loss: float | None
    best_eval_loss: float | None
    peak_gpu_bytes: int | None
    steps: int | None

    @property
    def duration_s(self) -> float | None:
        if self.started is None:
            return None
        end = self.finished or (time.time() if self.status == "running" else None)
        return None if end is None else end - self.started

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "name": self.name, "status": self.status, "method": self.method,
                "model": self.model, "started": self.started, "finished": self.finished,
                "duration_s": self.duration_s, "final_loss": self.final_loss,
                "best_eval_loss": self.best_eval_loss, "peak_gpu_bytes": self.peak_gpu_bytes,
                "steps": self.steps}


def run_info(path: Path) -> RunInfo:
    s = read_summary(path)
    cfg = s.get("config", {})
    status = s.get("status", "unknown")
    pid_file = path / "worker.pid"
    if status == "running":
        try:
            alive = pid_alive(int(pid_file.read_text()))
        except (OSError, ValueError):
            alive = False
        if not alive:
            status = "interrupted"  # killed or crashed: resumable from its last checkpoint
    return RunInfo(path=path, name=path.name, status=status, method=cfg.get("method", "?"),
                   model=cfg.get("model", "?"), started=s.get("started"), finished=s.get("finished"),
                   final_loss=s.get("final_loss"), best_eval_loss=s.get("best_eval_loss"),
                   peak_gpu_bytes=s.get("peak_gpu_device_bytes") or s.get("peak_gpu_reserved_bytes"),
                   steps=s.get("step"))


def list_runs(root: Path | None = None) -> list[RunInfo]:
    """Every run folder under ``root`` (default: the runs directory), newest first."""
    root = Path(root or runs_dir())
    if not root.is_dir():
        return []
    runs = [run_info(p) for p in root.iterdir() if (p / "summary.json").exists()]
    return sorted(runs, key=lambda r: r.started or 0, reverse=True)


def cli_list(args: Any) -> int:
    """``finetune-studio runs list [--json]``."""
    runs = list_runs()
    if getattr(args, "json", False):
        print(json.dumps([r.to_dict() for r in runs], indent=2))
        return 0
    if not runs:
        print(f"no runs yet in {runs_dir()}")
        return 0
    print(f"{'run':40} {'status':12} {'method':8} {'steps':>6} {'final loss':>10} {'best eval':>10}")
    for r in runs:
        fl = f"{r.final_loss:.4f}" if r.final_loss is not None else "-"
        be = f"{r.best_eval_loss:.4f}" if r.best_eval_loss is not None else "-"
        print(f"{r.name[:40]:40} {r.status:12} {r.method:8} {r.steps or 0:>6} {fl:>10} {be:>10}")
    return 0
