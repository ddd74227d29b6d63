"""The run folder: its layout, the run history and resume lookup.

A run folder holds::

    run.yaml          the resolved run config
    summary.json      status, times, losses, measured peak memory, dataset hash (updated live);
                      ``started``/``finished`` are the last leg's, ``earlier_legs_s`` the training
                      time of the legs before it (a run stopped or killed, then resumed),
                      ``first_started`` when its first leg started
    metrics.jsonl     one JSON object per logged step / eval; a resumed run appends
    events.jsonl      every worker event, so a re-attached GUI can replay the run
    checkpoint-N/     Trainer checkpoints (model/adapter, optimizer, scheduler, RNG, data position)
    final/            the final PEFT adapter, or a safetensors model for full/freeze
    README.md         the model card
    worker.pid        the live worker's process id (written when its setup begins, removed when it exits)
    record_losses.json  each record's answer loss under the trained weights (``runs audit``)

``finetune-studio runs list|show|compare`` read these files (:func:`cli_list`, :func:`cli_show`,
:func:`cli_compare`); nothing here loads torch.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import ModelError, StudioError
from engine.files import atomic_write_text
from engine.paths import data_home, runs_dir

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


def checkpoint_folder(run_dir: Path, ref: str | int | Path) -> Path:
    """The checkpoint of ``run_dir`` that ``ref`` names: a step number, a ``checkpoint-N`` name or
    a folder (resolved).

    Raises:
        StudioError: no such checkpoint with weights; the kept ones are named.
    """
    ref = str(ref)
    for c in (Path(ref).expanduser(), run_dir / ref, run_dir / f"checkpoint-{ref}"):
        if c.is_dir() and c.name.startswith("checkpoint-") and holds_weights(c):
            if c.resolve().parent != Path(run_dir).resolve():
                # Another run's weights (another method, even another model) must never become this
                # run's final/, rewind point or audit.
                raise StudioError(f"'{c}' is not a checkpoint of run '{run_dir.name}'",
                                  hint="Give a step number or a checkpoint-N of this run (kept: "
                                  f"{', '.join(x.name for x in checkpoints(run_dir)) or 'none'}).")
            return c.resolve()
    kept = ", ".join(c.name for c in checkpoints(run_dir)) or "none"
    raise StudioError(f"run '{run_dir.name}' has no checkpoint '{ref}' (kept: {kept})")


SAMPLES_FILE = "samples.jsonl"  # engine.samples: the model's answers at each evaluation


def rewind_metrics(output_dir: Path, step: int) -> int:
    """Drop metric rows after ``step`` so a resumed, rolled-back or rewound run's curve continues
    cleanly; returns how many rows were dropped.

    Rows logged after the checkpoint we go back to describe progress that was lost (a kill
    -9) or undone (a rollback, a rewind); the resumed run logs those steps again.
    """
    dropped = 0
    for name in ("metrics.jsonl", SAMPLES_FILE):  # the loss curve, and the sample answers along it
        path = Path(output_dir) / name
        if not path.exists():
            continue
        rows = _read_jsonl(path)
        kept = [r for r in rows if r.get("step", 0) <= step]
        if len(kept) != len(rows):
            atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept))
        if name == "metrics.jsonl":
            dropped = len(rows) - len(kept)
    return dropped


def last_checkpoint(output_dir: Path) -> Path | None:
    """The newest complete checkpoint (one with trainer_state.json, written last by Trainer)."""
    for path in reversed(checkpoints(output_dir)):
        if (path / "trainer_state.json").exists():
            return path
    return None


def read_summary(output_dir: Path) -> dict[str, Any]:
    """summary.json as a dict; ``{}`` when it is missing, unreadable or not a JSON object (one
    damaged folder must not break the whole history)."""
    try:
        data = json.loads((Path(output_dir) / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):  # ValueError: bad JSON, and bytes that aren't UTF-8
        return {}
    return data if isinstance(data, dict) else {}


def write_summary(output_dir: Path, /, **changes: Any) -> dict[str, Any]:
    """Merge ``changes`` into summary.json, atomically."""
    data = read_summary(output_dir)
    data.update(changes)
    atomic_write_text(Path(output_dir) / "summary.json", json.dumps(data, indent=2, ensure_ascii=False))
    return data


def retired_error(summary: dict[str, Any], *, keep: bool = True) -> dict[str, Any]:
    """The summary.json changes that end a failed leg's error when the run goes on (a resume, a rewind):
    ``error`` becomes None, so the run no longer reads as failed with an old message ("Stopped at step
    9: out of memory at step 5"), and with ``keep`` the error goes to ``earlier_errors`` with the leg
    it ended. ``{}`` when the summary holds no error."""
    error = summary.get("error")
    if not error:
        return {}
    if not keep:
        return {"error": None}
    earlier = summary.get("earlier_errors")
    entry = {**(error if isinstance(error, dict) else {"message": str(error)}), "leg": int(summary.get("legs") or 1)}
    return {"error": None, "earlier_errors": [*(earlier if isinstance(earlier, list) else []), entry]}


# How a run's config came to change between its steps (summary.json's ``config_changes``).
CHANGE_REASONS = {"resume": "on resume", "oom": "after running out of memory", "nonfinite": "after a non-finite loss"}


# Where a run is and what it is called: no step trains differently when they change.
NOT_TRAINING_SETTINGS = ("output_dir", "run_name")


def config_diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list[Any]]:
    """``{key: [before, after]}`` for each training setting whose value changed (``output_dir``
    and ``run_name`` aside). A key on one side only is no change: a run.yaml of an older version
    lacks the newer keys."""
    return {k: [before[k], after[k]] for k in before
            if k in after and k not in NOT_TRAINING_SETTINGS and before[k] != after[k]}


def record_config_change(output_dir: Path, from_step: int, why: str, before: dict[str, Any],
                         after: dict[str, Any]) -> dict[str, Any] | None:
    """Note in summary.json that the run trains with other values from step ``from_step`` on (a
    resume with a new learning rate, an out-of-memory halving, a rollback): run.yaml holds only the
    newest, which alone would pass a run trained at 2e-4 for 900 of its 1000 steps as a 1e-4 run.

    Args:
        from_step: the first step trained with the new values (a resume from checkpoint-N: N + 1).
        why: a key of ``CHANGE_REASONS``.

    Returns:
        The entry added (``{from_step, why, changes: {key: [before, after]}, at}``), or None when
        no value changed.
    """
    changes = config_diff(before, after)
    if not changes:
        return None
    entry = {"from_step": int(from_step), "why": why, "changes": changes, "at": time.time()}
    earlier = read_summary(output_dir).get("config_changes")
    write_summary(output_dir, config_changes=[*(earlier if isinstance(earlier, list) else []), entry])
    return entry


def clamp_config_changes(output_dir: Path, step: int) -> None:
    """The run went back to ``step`` (a rewind, a rollback): a value changed after it now takes
    effect at the step after it, since run.yaml keeps it."""
    changes = read_summary(output_dir).get("config_changes")
    if isinstance(changes, list) and changes:
        write_summary(output_dir, config_changes=[
            {**c, "from_step": min(c["from_step"], step + 1)} if isinstance(c, dict) and
            isinstance(c.get("from_step"), int) else c for c in changes])


def config_timeline(changes: Any) -> list[dict[str, Any]]:
    """The recorded changes as the run trained with them: by step; the changes from one step as
    one entry, each key with its value before and after them; a value no step trained with (two
    changes from the same step, or from step 1) and a key set back to its value left out."""
    entries = sorted((c for c in changes if isinstance(c, dict) and isinstance(c.get("changes"), dict)
                      and isinstance(c.get("from_step"), int)) if isinstance(changes, list) else [],
                     key=lambda c: c["from_step"])
    current: dict[str, Any] = {}
    out: list[dict[str, Any]] = []
    i = 0
    while i < len(entries):
        step = entries[i]["from_step"]
        group = []
        while i < len(entries) and entries[i]["from_step"] == step:
            group.append(entries[i])
            i += 1
        before: dict[str, Any] = {}
        after: dict[str, Any] = {}
        for c in group:
            for k, pair in c["changes"].items():
                if isinstance(pair, list) and len(pair) == 2:
                    before.setdefault(k, current.get(k, pair[0]))
                    after[k] = pair[1]
        current.update(after)
        changed = {k: [before[k], after[k]] for k in after if before[k] != after[k]}
        if changed and step > 1:
            whys = list(dict.fromkeys(str(c.get("why")) for c in group))
            out.append({"from_step": step, "why": whys[0] if len(whys) == 1 else whys, "changes": changed})
    return out


def config_history(changes: Any, key: str) -> list[tuple[Any, int]]:
    """The values ``key`` had before its current one, each with the first step of the value that
    replaced it (oldest first); ``[]`` when no step trained with another value."""
    return [(c["changes"][key][0], c["from_step"]) for c in config_timeline(changes) if key in c["changes"]]


def describe_config_changes(changes: Any) -> list[str]:
    """One line per step the config changed at: ``from step 121 (on resume): learning_rate 0.0002 → 0.0001``."""
    lines = []
    for c in config_timeline(changes):
        whys = c["why"] if isinstance(c["why"], list) else [c["why"]]
        lines.append(f"from step {c['from_step']} ({' and '.join(CHANGE_REASONS.get(w, w) for w in whys)}): "
                     + ", ".join(f"{k} {config_value_text(v[0])} → {config_value_text(v[1])}" for k, v in c["changes"].items()))
    return lines


def with_history(value: Any, history: list[tuple[Any, int]], shown: Any = None) -> str:
    """``0.0001 from step 121 (0.0002 for steps 1-120)``: a config value with the ones it replaced."""
    show = shown or config_value_text
    if not history:
        return show(value)
    parts, start = [], 1
    for old, next_start in history:
        last = next_start - 1
        parts.append(f"{show(old)} for step{'s' if last > start else ''} "
                     f"{start}{f'-{last}' if last > start else ''}")
        start = next_start
    return f"{show(value)} from step {start} ({', '.join(parts)})"


def _last_row_time(path: Path) -> float | None:
    """The ``time`` of the last row of a JSON-lines file (events.jsonl, metrics.jsonl), read from
    its tail only: both grow every step."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 65536))
            lines = f.read().decode("utf-8", errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            t = json.loads(line).get("time")
        except (json.JSONDecodeError, AttributeError):
            continue  # a torn last line (after a kill), or the cut first line of the tail
        if isinstance(t, (int, float)):
            return float(t)
    return None


def training_time_so_far(output_dir: Path) -> tuple[float, int]:
    """The training time of every leg recorded in ``output_dir``, and how many legs there were.

    Called when a run resumes, before the new leg starts. A leg that finished (completed,
    stopped or failed) counts from its ``started`` to its ``finished``. One that was killed
    never wrote ``finished``: it counts up to the last thing it wrote (its last event, metric
    row or summary update). The wall time between legs never counts.

    Returns:
        ``(seconds, legs)``; ``(0.0, 0)`` for a folder no run has started in.
    """
    output_dir = Path(output_dir)
    s = read_summary(output_dir)
    started = s.get("started")
    if not isinstance(started, (int, float)):
        return 0.0, 0
    earlier = float(s.get("earlier_legs_s") or 0.0)
    legs = int(s.get("legs") or 1)
    end = s.get("finished")
    if not isinstance(end, (int, float)):
        end = last_written(output_dir) or started
    return earlier + max(0.0, end - started), legs


def first_start(output_dir: Path) -> float | None:
    """When the run in ``output_dir`` first started, over all its legs (``None``: never).

    The summary's ``started`` is its last leg's; ``first_started`` is written since resumed
    runs keep it. An older resumed run falls back on its folder's timestamped name.
    """
    output_dir = Path(output_dir)
    s = read_summary(output_dir)
    started = s.get("started")
    first = s.get("first_started")
    if isinstance(first, (int, float)):
        return float(first)
    if (s.get("legs") or 1) > 1:
        match = re.match(r"(\d{8}-\d{6})-", output_dir.name)
        if match:
            try:
                named = time.mktime(time.strptime(match.group(1), "%Y%m%d-%H%M%S"))
            except (ValueError, OverflowError):
                named = None
            if named is not None and (not isinstance(started, (int, float)) or named <= started):
                return named
    return float(started) if isinstance(started, (int, float)) else None


def last_written(output_dir: Path) -> float | None:
    """When a run last wrote anything: its last event or metric row, or its summary update.

    A killed worker never writes ``finished``; this is where its last leg ended. The rows'
    own times are used (a copied folder keeps them; file times would be the copy's).
    summary.json, which has none, counts by its modification time only in a folder without
    timed rows: ``runs promote`` or ``runs rewind`` rewrite it long after the worker died.
    """
    output_dir = Path(output_dir)
    seen = [_last_row_time(output_dir / "events.jsonl"), _last_row_time(output_dir / "metrics.jsonl")]
    rows = [t for t in seen if t is not None]
    if rows:
        return max(rows)
    try:
        return (output_dir / "summary.json").stat().st_mtime
    except OSError:
        return None


def read_metrics(output_dir: Path) -> list[dict[str, Any]]:
    """All rows of metrics.jsonl; a torn last line (after a kill) is skipped."""
    return _read_jsonl(Path(output_dir) / "metrics.jsonl")


def read_samples(output_dir: Path) -> list[dict[str, Any]]:
    """The sample answers a run wrote at its evaluations (engine.samples), oldest first."""
    return _read_jsonl(Path(output_dir) / SAMPLES_FILE)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    if not path.exists():
        return rows
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a torn last line (after a kill)
    return rows


def final_loss_mean(output_dir: Path, window: int = 10) -> tuple[float | None, int]:
    """The mean training loss of the last ``window`` logged steps, and how many there were.

    One step's loss on one micro-batch is noisy; this is the number to compare runs by. The
    curve is the one a resumed or rolled-back run ended with: a step logged again replaces
    what came after it.
    """
    curve = _train_curve(output_dir)
    tail = [loss for _, loss in curve[-window:] if loss == loss and abs(loss) != float("inf")]
    return (sum(tail) / len(tail), len(tail)) if tail else (None, 0)


def steps_in_mean(output_dir: Path, window: int, up_to: int | None = None) -> int:
    """How many optimizer steps the mean of the last ``window`` logged losses (up to step ``up_to``)
    covers: Trainer logs the mean loss of the steps since its last log, so with ``logging_steps: 5``
    the last 10 logged losses are the last 50 steps. ``window`` when there is no curve to read."""
    curve = [step for step, _ in _train_curve(output_dir) if up_to is None or step <= up_to]
    if not curve or window < 1:
        return window
    before = curve[-window - 1] if len(curve) > window else 0
    return curve[-1] - before


def mean_of_last(window: int, steps: int) -> str:
    """``"the mean of the last 10 steps"``, or with ``logging_steps`` above 1 ``"the mean of the 10
    losses logged over the last 50 steps"``: the number of logged losses read as steps understated
    what the mean covers (the last 50 steps said to be the last 10)."""
    if steps == window:
        return "the last step's" if window == 1 else f"the mean of the last {window} steps"
    if window == 1:
        return f"the loss logged over the last {steps} steps"
    return f"the mean of the {window} losses logged over the last {steps} steps"


def losses_at_step(output_dir: Path, step: int, window: int = 10) -> tuple[float | None, float | None]:
    """``(final_loss_mean, best_eval_loss)`` as they stood at ``step``: what a run's
    ``checkpoint-<step>`` was saved with, from the metrics.jsonl rows logged up to that step.

    The training loss is the mean of the last ``window`` logged steps, as :func:`final_loss_mean`;
    the eval loss is the lowest evaluation at or before ``step``.
    """
    curve = [loss for s, loss in _train_curve(output_dir) if s <= step]
    tail = [loss for loss in curve[-window:] if loss == loss and abs(loss) != float("inf")]
    evals: list[tuple[int, float]] = []
    for row in read_metrics(output_dir):
        s, loss = row.get("step"), row.get("eval_loss")
        if s is None or not isinstance(loss, (int, float)):
            continue
        while evals and evals[-1][0] >= s:  # evaluated again after a resume or rewind
            evals.pop()
        evals.append((int(s), float(loss)))
    best = min((loss for s, loss in evals if s <= step and loss == loss), default=None)
    return (sum(tail) / len(tail) if tail else None), best


_CURVE_ENDS: dict[Path, tuple[tuple[int, int], tuple[float | None, float | None, int | None]]] = {}


def curve_end(output_dir: Path) -> tuple[float | None, float | None, int | None, int]:
    """``(final_loss_mean, last loss, last step, steps in the mean)`` of a run's metrics.jsonl, for
    a run that ended without writing them to summary.json (failed, killed); cached while the file
    is unchanged."""
    path = Path(output_dir)
    try:
        st = (path / "metrics.jsonl").stat()
    except OSError:
        return None, None, None, 0
    key = (st.st_mtime_ns, st.st_size)
    cached = _CURVE_ENDS.get(path)
    if cached is not None and cached[0] == key:
        return cached[1]
    curve = _train_curve(path)
    mean, n = final_loss_mean(path) if curve else (None, 0)
    value = (mean, curve[-1][1], curve[-1][0], n) if curve else (None, None, None, 0)
    _CURVE_ENDS[path] = (key, value)
    return value


def _train_curve(output_dir: Path) -> list[tuple[int, float]]:
    """The logged ``(step, loss)`` rows of the path the run ended on (a step logged again
    replaces what came after it)."""
    curve: list[tuple[int, float]] = []
    for row in read_metrics(output_dir):
        step, loss = row.get("step"), row.get("loss")
        if step is None or not isinstance(loss, (int, float)) or "eval_loss" in row:
            continue
        while curve and curve[-1][0] >= step:
            curve.pop()
        curve.append((int(step), float(loss)))
    return curve


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs."""
    if sys.platform == "win32":
        return _windows_pid_alive(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def _windows_pid_alive(pid: int) -> bool:
    # Not os.kill(pid, 0): on Windows any signal but the console ones is TerminateProcess, so
    # asking would kill the process. Ask the kernel for its exit code instead.
    import ctypes

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
    if not handle:
        return ctypes.get_last_error() == 5  # ERROR_ACCESS_DENIED: it exists, someone else's
    try:
        code = ctypes.c_ulong()
        return bool(kernel32.GetExitCodeProcess(handle, ctypes.byref(code))) and code.value == 259  # STILL_ACTIVE
    finally:
        kernel32.CloseHandle(handle)


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
    final_loss_mean: float | None
    peak_gpu_bytes: int | None
    steps: int | None
    earlier_legs_s: float = 0.0  # training time of the legs before the last one (a resumed run)
    legs: int = 1
    last_written: float | None = None  # a killed run (no 'finished'): when it last wrote a file
    probe: bool = False  # a probe run (engine/probe.py): measured, nothing saved
    first_started: float | None = None  # the first leg's start (``started`` is the last leg's)
    # A failed run's error names the step it failed at; ``steps`` is the last one logged (often the
    # one before: a step that fails logs no loss). See :func:`steps_text`.
    failed_step: int | None = None

    @property
    def shown_status(self) -> str:
        """The status as the history shows it: a finished probe reads "probe"."""
        return "probe" if self.probe and self.status in ("completed", "stopped") else self.status

    @property
    def duration_s(self) -> float | None:
        """Training time over every leg of the run; the gaps between legs don't count.

        A killed run never wrote ``finished``: its last leg counts up to its last write.
        """
        if self.started is None:
            return None
        end = self.finished or (time.time() if self.status == "running" else self.last_written)
        return None if end is None else self.earlier_legs_s + end - self.started

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "name": self.name, "status": self.status, "method": self.method,
                "model": self.model, "started": self.started, "finished": self.finished,
                "duration_s": self.duration_s, "final_loss": self.final_loss,
                "final_loss_mean": self.final_loss_mean,
                "best_eval_loss": self.best_eval_loss, "peak_gpu_bytes": self.peak_gpu_bytes,
                "steps": self.steps, "failed_step": self.failed_step, "legs": self.legs, "probe": self.probe,
                "first_started": self.first_started}


def steps_text(steps: int | None, failed_step: int | None) -> str:
    """A run's steps as the history and ``runs list`` show them: the last step logged, and for a
    failed run the step it failed at when that is another one: "4 (failed at 5)".

    The failing step logs no loss, so a run that failed at step 5 logged 4; said alone, "4" beside
    an error "at step 5" read as if one of them were wrong.
    """
    if failed_step is None or failed_step == steps:
        return "-" if steps is None else str(steps)
    return f"{steps or 0} (failed at {failed_step})"


def steps_detail(steps: int | None, failed_step: int | None) -> str:
    """:func:`steps_text` in words, for ``runs show`` and the Runs area's tooltip."""
    if failed_step is None or failed_step == steps:
        return "-" if steps is None else str(steps)
    logged = f"{steps}, the last step logged" if steps else "none logged"
    return f"{logged}; the run failed at step {failed_step}" + (
        ", before logging it" if failed_step > (steps or 0) else "")


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
    # A killed leg never wrote its end (a rewound one reads "stopped" since): it ended at its last write.
    killed_end = last_written(path) if status != "running" and not s.get("finished") else None
    final_loss, final_mean, steps = s.get("final_loss"), s.get("final_loss_mean"), s.get("step")
    # A failed or killed leg wrote no step of its own: the summary's is its last checkpoint's (or an
    # earlier leg's end), which lags its last logged step.
    ended_early = status in ("interrupted", "failed", "crashed")
    if status not in ("completed", "running") and (None in (final_loss, final_mean, steps) or ended_early):
        # A run that failed or was killed may not have written them: its curve has them.
        curve_mean, curve_last, curve_step, _n = curve_end(path)
        if status == "interrupted" and curve_mean is not None:
            # A killed leg never wrote its end: the summary's losses are an earlier leg's.
            final_mean, final_loss = curve_mean, curve_last
        final_mean = curve_mean if final_mean is None else final_mean
        final_loss = curve_last if final_loss is None else final_loss
        steps = curve_step if steps is None or (ended_early and (curve_step or 0) > steps) else steps
    if status == "running":
        # The summary gets a step at each checkpoint only: between them (and before the first)
        # the curve is where the run is, as the Train area's progress bar says.
        curve_step = curve_end(path)[2]
        if curve_step is not None and (not isinstance(steps, int) or curve_step > steps):
            steps = curve_step
    error = s.get("error")
    # (Only a failed run's: a run resumed after failing keeps its old error in summary.json.)
    failed_step = error.get("step") if status in ("failed", "crashed") and isinstance(error, dict) else None
    best_eval = s.get("best_eval_loss")
    if status not in ("completed", "running") and (best_eval is None or status == "interrupted"):
        # Its evaluations are in its metrics even when its summary never got them (kill -9).
        best_eval = losses_at_step(path, steps if isinstance(steps, int) else 1 << 62)[1]
    return RunInfo(path=path, name=path.name, status=status, method=cfg.get("method", "?"),
                   model=cfg.get("model", "?"), started=s.get("started"), finished=s.get("finished"),
                   final_loss=final_loss, best_eval_loss=best_eval,
                   final_loss_mean=final_mean,
                   peak_gpu_bytes=s.get("peak_gpu_device_bytes") or s.get("peak_gpu_reserved_bytes"),
                   steps=steps, earlier_legs_s=float(s.get("earlier_legs_s") or 0.0),
                   legs=int(s.get("legs") or 1), last_written=killed_end, probe=bool(s.get("probe")),
                   first_started=first_start(path),
                   failed_step=failed_step if isinstance(failed_step, int) else None)


def run_folders_file() -> Path:
    """The index of run folders outside the runs directory (a run given its own ``output_dir``)."""
    return data_home() / "run_folders.json"


def remember_run_folder(folder: Path) -> None:
    """Add ``folder`` to the index of outside run folders, unless it is in the runs directory.

    A run trained into an ``output_dir`` of its own was invisible to ``runs list``, ``runs show
    NAME`` and the Runs area, which only looked in the runs directory. Called by rank 0 when a
    run starts; the file is read and replaced atomically under ``run_folders.json.lock``, so runs
    starting at once (a queue, a terminal, the GUI) don't write over each other's entry.
    """
    from filelock import FileLock  # installed with huggingface_hub; the queue's locks use it too

    folder = Path(folder).resolve()
    if folder.parent == runs_dir().resolve():
        return
    path = run_folders_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{path}.lock", timeout=30):
        known = _indexed_folders()
        if str(folder) in known:
            return
        atomic_write_text(path, json.dumps({"folders": [*known, str(folder)]}, indent=2, ensure_ascii=False) + "\n")


def _indexed_folders() -> list[str]:
    try:
        data = json.loads(run_folders_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    folders = data.get("folders") if isinstance(data, dict) else None
    return [f for f in folders if isinstance(f, str)] if isinstance(folders, list) else []


def outside_run_folders() -> list[Path]:
    """The indexed run folders outside the runs directory that still hold a run (a folder that
    was deleted or moved since is skipped)."""
    return [Path(f) for f in _indexed_folders() if is_run_folder(Path(f))]


def run_folders(root: Path | None = None) -> list[Path]:
    """The run folders (those with a summary.json) under ``root``; by default the runs
    directory's and the indexed ones outside it (:func:`remember_run_folder`)."""
    folders: list[Path] = []
    base = Path(root or runs_dir())
    if base.is_dir():
        folders = [p for p in base.iterdir() if (p / "summary.json").exists()]
    if root is None:
        inside = {p.resolve() for p in folders}
        folders += [p for p in outside_run_folders() if (p / "summary.json").exists() and p.resolve() not in inside]
    return folders


def list_runs(root: Path | None = None) -> list[RunInfo]:
    """Every run of :func:`run_folders`, newest first."""
    return sorted((run_info(p) for p in run_folders(root)), key=lambda r: r.started or 0, reverse=True)


def resolve_run(ref: str | Path) -> Path:
    """Turn what the user typed into a run folder.

    Args:
        ref: A run folder (with ``summary.json`` or ``run.yaml``), one of those two files, the
            name of one in the runs directory, or its ``run_name`` (see :func:`find_run`).

    Raises:
        StudioError: no such run (names the closest run names), or a file that is no run's.
    """
    found = find_run(ref)
    if found is not None:
        return found
    path = Path(str(ref)).expanduser()
    if path.is_dir():
        raise StudioError(f"'{ref}' is not a run folder: it has no summary.json or run.yaml")
    if path.is_file():
        if path.name in ("run.yaml", "summary.json") and is_run_folder(path.parent):
            return path.parent.resolve()  # a run's own file: the run (train --resume takes its run.yaml too)
        raise StudioError(f"'{ref}' is a file; a run is named by its folder or its name",
                          hint="finetune-studio runs list shows the runs.")
    names = [r.name for r in list_runs()]
    close = difflib.get_close_matches(str(ref), names, n=3, cutoff=0.5)
    hint = (f"Did you mean {', '.join(close)}?" if close else
            f"Runs: {', '.join(names[:10])}{' ...' if len(names) > 10 else ''}" if names else None)
    raise StudioError(f"run '{ref}': no such folder, and no run of that name in {runs_dir()}", hint=hint)


def find_run(ref: str | Path) -> Path | None:
    """The run folder ``ref`` names, or None.

    ``ref`` is a folder, a folder's name in the runs directory, or the ``run_name`` it was
    given (``20261129-033950-medical`` is found as ``medical``; of several runs of that name,
    the newest). A run trained into a folder of its own (indexed by :func:`remember_run_folder`)
    is found by its folder's name or its ``run_name`` too.
    """
    for cand in (Path(str(ref)).expanduser(), runs_dir() / str(ref)):
        if is_run_folder(cand):
            return cand.resolve()
    ref = str(ref)
    root = runs_dir()
    if not ref or any(sep in ref for sep in ("/", os.sep)):
        return None
    named = re.compile(r"^\d{8}-\d{6}-" + re.escape(ref) + r"(-\d+)?$")
    found = [p for p in root.iterdir() if named.match(p.name) and is_run_folder(p)] if root.is_dir() else []
    found += [p for p in outside_run_folders() if p.name == ref or read_run_config(p).get("run_name") == ref]
    if not found:
        return None
    # The newest: by when it first started, else (never started) by its folder's timestamped name.
    return max(found, key=lambda p: (first_start(p) or 0.0, p.name)).resolve()


def run_ref(path: Path) -> str:
    """How a command line names the run in ``path``: its folder's name when that finds it, else
    the folder itself (a run outside the runs directory whose name another run shares)."""
    import shlex

    path = Path(path).resolve()
    return path.name if find_run(path.name) == path else shlex.quote(str(path))


def no_final_error(run: Path) -> ModelError:
    """What to say when a run is named for its result (generate, merge, export-gguf, adapters
    compare) but has no ``final/`` yet: its state, and the checkpoint to use instead."""
    info = run_info(run)
    at = f" at step {info.steps}" if info.steps else ""
    state = "a probe, which saves nothing" if info.shown_status == "probe" else (
        f"still training{at}" if info.status == "running" else
        f"it completed{at}, but final/ is gone: moved or deleted" if info.status == "completed" else
        f"{info.status}{at}")
    ckpt = last_checkpoint(run)
    resume = f"finetune-studio train {run / 'run.yaml'} --resume"
    if info.shown_status == "probe":
        hint = "Train its config as a run of its own (Start, or finetune-studio train RUN.yaml)."
    elif ckpt is not None:
        what = (" as the model" if (ckpt / "config.json").exists() else
                " as the adapter on its base" if (ckpt / "adapter_config.json").exists() else "")
        hint = (f"Use its newest checkpoint{what}: {ckpt} (step {checkpoint_step(ckpt)}); or "
                + ("wait for it to finish." if info.status == "running" else f"finish it: {resume}"))
    else:
        hint = ("It kept no checkpoint yet: wait for one (save_steps)." if info.status == "running" else
                f"It kept no checkpoint: {resume} starts it over.")
    return ModelError(f"run '{run.name}' has no final/ model or adapter ({state})" + (
        "" if info.status == "completed" else "; a run writes its result there when it completes"), hint=hint)


def holds_weights(folder: Path) -> bool:
    """A run's ``final/`` or ``checkpoint-N/`` with weights in it: a model (``config.json``) or
    an adapter (``adapter_config.json``)."""
    return (Path(folder) / "config.json").exists() or (Path(folder) / "adapter_config.json").exists()


RECORD_FILES = ("summary.json", "events.jsonl", "metrics.jsonl", "dataset.json", SAMPLES_FILE, "README.md")
"""What a run writes about itself beside its weights; a new run that takes over the folder of a
run that trained nothing starts these afresh."""


def trained_nothing(folder: Path) -> bool:
    """The run in ``folder`` kept nothing of training: no checkpoint, no logged step, no final/.

    A run that failed before its first step (a dataset with no usable record, a model that
    doesn't load) leaves such a folder: a new run may start there, as nothing can be lost.
    """
    folder = Path(folder)
    return not checkpoints(folder) and not (folder / "final").exists() and not read_metrics(folder)


def live_worker(folder: Path) -> int | None:
    """The process id in ``folder``'s worker.pid when it is alive and not this process: another
    run is starting or training there (its worker writes the file when its setup begins)."""
    try:
        pid = int((Path(folder) / "worker.pid").read_text())
    except (OSError, ValueError):
        return None
    return pid if pid != os.getpid() and pid_alive(pid) else None


def is_run_folder(path: Path) -> bool:
    """A folder a run wrote: it holds ``summary.json`` or ``run.yaml``."""
    path = Path(path)
    return path.is_dir() and ((path / "summary.json").exists() or (path / "run.yaml").exists())


@dataclass
class RunModel:
    """What a run folder stands for where a model is expected (``generate --base RUN``).

    Attributes:
        run_dir: The run folder.
        method: The run's method, as recorded.
        base: The model to load: ``final/`` for a run that saved a whole model (full,
            freeze), the run's own ``model`` for one that saved an adapter.
        adapter: The run's adapter folder (``final/``), or None for a whole model.
    """

    run_dir: Path
    method: str
    base: str
    adapter: Path | None


def run_model(run_dir: Path) -> RunModel:
    """The model a run trained, read from its files (``final/`` and ``run.yaml``).

    Raises:
        ModelError: the run has no ``final/`` yet (names the newest checkpoint to use
            instead), its adapter is not a PEFT one, or it records no base model.
    """
    run_dir = Path(run_dir)
    recorded = recorded_config(run_dir)
    config = recorded.values
    method = str(config.get("method") or "?")
    final = run_dir / "final"
    if (final / "config.json").exists():
        return RunModel(run_dir, method, str(final), None)
    if (final / "adapter_config.json").exists():
        try:
            fmt = json.loads((final / "adapter_config.json").read_text(encoding="utf-8")).get("format")
        except (OSError, json.JSONDecodeError, AttributeError):
            fmt = None
        if fmt == "finetune-studio-bottleneck":
            raise ModelError(f"run '{run_dir.name}' trained a bottleneck adapter (Finetune Studio's own format, "
                             f"in {final}); generate and merge load whole models and PEFT adapters only",
                             hint="Load it in Python as the run's README.md shows.")
        base = config.get("model")
        if not base:
            why = f"its run.yaml can't be read: {recorded.problem}" if recorded.problem else "no 'model' in run.yaml"
            raise ModelError(f"run '{run_dir.name}' trained an adapter ({final}) but records no base model "
                             f"({why})", hint=f"Give the base model yourself, and {final} as the adapter.")
        return RunModel(run_dir, method, str(base), final)
    raise no_final_error(run_dir)


def read_run_config(path: Path) -> dict[str, Any]:
    """The run's resolved config: ``run.yaml``, else the copy in ``summary.json``; ``{}`` if neither."""
    return recorded_config(path).values


@dataclass(frozen=True)
class RecordedConfig:
    """A run's config as its folder records it, and where from."""

    values: dict[str, Any]
    source: str | None
    """``run.yaml``; ``summary.json`` (its copy as the run started) when run.yaml is missing or unreadable;
    None when neither holds one."""
    problem: str | None = None
    """Why the run's run.yaml can't be read, as ``train --resume`` refuses it (``FILE:LINE:COLUMN: invalid
    YAML: ...``); None when it reads or there is none (runs of older versions)."""


def recorded_config(path: Path) -> RecordedConfig:
    """The run's config (:func:`read_run_config`) with where it came from and what is wrong with its run.yaml."""
    import yaml

    file = Path(path) / "run.yaml"
    problem = None
    if file.exists():
        try:
            data = yaml.safe_load(file.read_text(encoding="utf-8-sig"))
        except (OSError, ValueError, yaml.YAMLError, RecursionError):
            data = None
        if isinstance(data, dict):
            return RecordedConfig(data, "run.yaml")
        from engine.config import unreadable_config

        # The config loader's words, as a resume would read the file; a file it reads here that safe_load
        # could not (none is known) is still unreadable to this reader.
        problem = unreadable_config(file) or f"{file}: can't be read as a run config"
    cfg = read_summary(path).get("config")
    return RecordedConfig(cfg if isinstance(cfg, dict) else {}, "summary.json" if isinstance(cfg, dict) else None,
                          problem)


def gpu_load(rows: list[dict]) -> dict[str, Any] | None:
    """The GPU's load over a run, from its metrics rows (nvidia-smi samples, engine.nvsmi.Sampler):
    ``{"util_mean_pct", "util_min_pct", "temp_max_c", "power_mean_w"}``, or None when none was
    measured (a CPU run, no nvidia-smi)."""
    utils = [r["gpu_util_pct"] for r in rows if isinstance(r.get("gpu_util_pct"), (int, float))]
    if not utils:
        return None
    temps = [r["gpu_temp_c"] for r in rows if isinstance(r.get("gpu_temp_c"), (int, float))]
    watts = [r["gpu_power_w"] for r in rows if isinstance(r.get("gpu_power_w"), (int, float))]
    return {"util_mean_pct": round(sum(utils) / len(utils), 1), "util_min_pct": min(utils),
            "temp_max_c": max(temps) if temps else None,
            "power_mean_w": round(sum(watts) / len(watts), 1) if watts else None}


def _load_text(load: dict) -> str:
    text = f"busy {load['util_mean_pct']:.0f}% of the time on average (lowest logging interval {load['util_min_pct']:.0f}%)"
    if load.get("temp_max_c") is not None:
        text += f", up to {load['temp_max_c']} °C"
    if load.get("power_mean_w") is not None:
        text += f", {load['power_mean_w']:.0f} W on average"
    return text


def run_details(path: Path) -> dict[str, Any]:
    """Everything ``runs show`` prints about one run, as plain values.

    Returns:
        :meth:`RunInfo.to_dict` plus ``dataset``, ``dataset_hash``, ``dataset_records``,
        ``error`` (a failed run's message), ``checkpoints`` (``[{name, step, path}]``),
        ``config_changes`` (values the run changed between its steps, see :func:`record_config_change`),
        ``final_dir`` (or None), ``resume`` (``{ok, reason, finished}``: would ``train --resume``
        continue anything, see ``engine.resume``), ``metrics`` (row counts, last and lowest train loss, lowest
        eval loss, read from metrics.jsonl), ``samples`` (the last answers to sample records, or
        None; see engine.samples) and ``config`` (the resolved run config).
    """
    info = run_info(path)
    summary = read_summary(path)
    recorded = recorded_config(path)
    config = recorded.values
    rows = read_metrics(path)
    train = [r for r in rows if isinstance(r.get("loss"), (int, float))]
    evals = [r for r in rows if isinstance(r.get("eval_loss"), (int, float))]
    lowest = min(train, key=lambda r: r["loss"], default=None)
    lowest_eval = min(evals, key=lambda r: r["eval_loss"], default=None)
    error = summary.get("error")
    final = path / "final"
    from engine.promote import describe_offer, final_step, promotion_offer
    from engine.resume import resume_point, resume_verdict

    verdict = resume_verdict(resume_point(path, info.status))
    offer = promotion_offer(path)
    return {
        **info.to_dict(),
        "dataset": config.get("dataset"), "eval_dataset": config.get("eval_dataset") or None,
        "rewound": summary.get("rewound"),
        "dataset_hash": summary.get("dataset_hash"),
        "dataset_records": summary.get("dataset_records"),
        "final_loss_window": curve_end(path)[3] if info.status == "interrupted" or
        summary.get("final_loss_window") is None else summary.get("final_loss_window"),
        "error": error.get("message") if isinstance(error, dict) else error,
        "earlier_errors": [e for e in summary.get("earlier_errors") or [] if isinstance(e, dict)],
        "checkpoints": [{"name": c.name, "step": checkpoint_step(c), "path": str(c)} for c in checkpoints(path)],
        "final_dir": str(final) if final.is_dir() else None,
        "gguf": [{"name": g.name, "bytes": g.stat().st_size} for g in gguf_files(path)],
        "final_step": final_step(path), "final_from": summary.get("final_from"),
        "probe_report": summary.get("probe") if isinstance(summary.get("probe"), dict) else None,
        "better_checkpoint": {"name": offer[0].name, "eval_loss": offer[1], "final_eval_loss": offer[2],
                              "text": describe_offer(offer)} if offer else None,
        "resume": {"ok": verdict.ok, "reason": verdict.reason, "finished": verdict.finished},
        "gpu_load": gpu_load(train),
        "metrics": {"train_rows": len(train), "eval_rows": len(evals),
                    "last_loss": train[-1]["loss"] if train else None,
                    "lowest_loss": lowest["loss"] if lowest else None,
                    "lowest_loss_step": lowest.get("step") if lowest else None,
                    "lowest_eval_loss": lowest_eval["eval_loss"] if lowest_eval else None,
                    "lowest_eval_loss_step": lowest_eval.get("step") if lowest_eval else None},
        "samples": (read_samples(path) or [None])[-1],
        "data": _data_use(path),
        "config": config, "config_source": recorded.source, "config_problem": recorded.problem,
        "config_changes": [c for c in summary.get("config_changes") or [] if isinstance(c, dict)],
    }


def _data_use(path: Path) -> dict[str, Any] | None:
    """What the run made of its dataset (its dataset.json): records trained on and held out, and those
    it left out (unreadable, or nothing to train on) or truncated, the first ones with their lines."""
    try:
        d = json.loads((path / "dataset.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(d, dict):
        return None
    from engine.data.tokenize import describe_problems

    left = [{"index": r.get("index", 0), "line": r.get("line"), "message": r.get("message")}
            for r in [*(d.get("broken_records") or []), *(d.get("problems") or [])] if isinstance(r, dict)]
    left.sort(key=lambda r: (r["line"] is None, r["line"] or 0, r["index"]))  # in the file's order
    return {"records": d.get("records"), "train": d.get("train"), "eval": d.get("eval"),
            "unreadable": d.get("broken") or 0,
            "left_out": (d.get("broken") or 0) + (d.get("dropped") or 0), "truncated": d.get("truncated") or 0,
            "seq_len_longest": d.get("longest"),
            "left_out_first": describe_problems(left, total=(d.get("broken") or 0) + (d.get("dropped") or 0))
            if left else ""}


def _dataset_records(d: dict[str, Any]) -> str:
    """The file's records, the unreadable ones included, so that used + left out add up to it."""
    unreadable = (d.get("data") or {}).get("unreadable") or 0
    if d.get("dataset_records") is None or not unreadable:
        return _num(d.get("dataset_records"))
    return f"{d['dataset_records'] + unreadable} ({unreadable} unreadable)"


def _data_fields(data: dict[str, Any] | None) -> list[tuple[str, str]]:
    if not data:
        return []
    out = []
    if data.get("train") is not None:
        out.append(("records used", f"{data['train']} train, {data.get('eval') or 0} eval"))
    if data.get("left_out"):
        out.append(("left out", f"{data['left_out']}: {data['left_out_first']}"))
    if data.get("truncated"):
        out.append(("truncated", f"{data['truncated']} (longest {data.get('seq_len_longest')} tokens)"))
    return out


def format_duration(seconds: float | None) -> str:
    """Seconds as "42 s", "3 min 05 s" or "1 h 02 min"; "-" when unknown."""
    if seconds is None:
        return "-"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def duration_text(run: RunInfo) -> str:
    """A run's duration as the history shows it: its training time over all its legs, and how
    many there were when it was resumed ("1 min 35 s (2 legs)"); the time stopped between them
    doesn't count."""
    return format_duration(run.duration_s) + (f" ({run.legs} legs)" if run.legs > 1 else "")


def _time(value: Any) -> str:
    if isinstance(value, (int, float)):
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))
    return "-" if value is None else str(value)


def _gib(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**30:.2f} GiB"


def _final(d: dict[str, Any]) -> float | None:
    """A run's final loss: the mean of its last logged steps, or (older runs) the last step's."""
    return d.get("final_loss_mean") if d.get("final_loss_mean") is not None else d.get("final_loss")


def _num(v: Any) -> str:
    return "-" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)


def _at_step(v: float | None, step: Any) -> str:
    return "-" if v is None else f"{v:.4f}" + (f" (step {step})" if step is not None else "")


def _clip(text: Any, width: int) -> str:
    text = " ".join(str(text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _size(n: int) -> str:
    from engine.adapters import format_size

    return format_size(n)


def gguf_files(run: Path) -> list[Path]:
    """The GGUF files exported into a run folder (``export-gguf``'s default place), by name."""
    return sorted(p for p in Path(run).glob("*.gguf") if p.is_file())


def cli_show(args: Any) -> int:
    """``finetune-studio runs show RUN [--json]``: one run's summary and its resolved config.

    Args:
        args: ``run`` (str): a run folder or a run name in the runs directory; ``json``
            (bool): print :func:`run_details` as one JSON object.

    Returns:
        0; errors are raised as StudioError (the CLI prints them, exit 2).
    """
    path = resolve_run(args.run)
    d = run_details(path)
    if getattr(args, "json", False):
        print(json.dumps(d, indent=2, ensure_ascii=False, default=str))
        return 0
    m = d["metrics"]
    window = d.get("final_loss_window") or 10
    covered = steps_in_mean(Path(d["path"]), window, d.get("final_step"))
    fields = [
        ("run", d["name"]), ("folder", d["path"]), ("status", d["status"]), ("method", d["method"]),
        ("model", d["model"]), ("started", _time(d.get("first_started") or d["started"])
                                   + (f" (last resumed {_time(d['started'])})" if (d.get("legs") or 1) > 1 else "")), ("finished", _time(d["finished"])),
        ("duration", duration_text(run_info(path))),
        ("steps", steps_detail(d["steps"], d.get("failed_step"))),
        ("final loss", _num(_final(d)) + (f" ({mean_of_last(window, covered).removeprefix('the ')}"
                                          + (f"; last {'step' if covered == window else 'logged'} "
                                             f"{_num(d['final_loss'])})" if window > 1 else ")")
                                          if d.get("final_loss_mean") is not None
                                          and covered > 1 else "")),
        ("best eval loss", _num(d["best_eval_loss"])),
        ("lowest train loss", _at_step(m["lowest_loss"], m["lowest_loss_step"])),
        ("metrics rows", f"{m['train_rows']} train, {m['eval_rows']} eval"),
        ("peak GPU memory", _gib(d["peak_gpu_bytes"])),
        *([("GPU load", _load_text(d["gpu_load"]))] if d.get("gpu_load") else []),
        ("dataset", _num(d["dataset"])),
        ("dataset hash", _num(d["dataset_hash"])), ("dataset records", _dataset_records(d)),
        *_data_fields(d.get("data")),
        ("eval data", d.get("eval_dataset") or (f"{(d['config'] or {}).get('eval_split'):.0%} of the dataset "
                                                 "held out" if (d["config"] or {}).get("eval_split") else "none")),
        ("checkpoints", ", ".join(c["name"] for c in d["checkpoints"]) or "none"),
        *([("rewound", f"went back to {d['rewound']['to']} from step {d['rewound'].get('from_step')}; later "
            f"checkpoints and final/ are in {d['rewound'].get('superseded') or '-'}/")] if d.get("rewound") else []),
        ("gguf", ", ".join(f"{g['name']} ({_size(g['bytes'])})" for g in d["gguf"]) or (
            f"none (finetune-studio export-gguf {run_ref(Path(d['path']))} writes one)" if d["final_dir"] else
            "none")),
        ("final", (d["final_dir"] or "none") + (f" (step {d['final_step']}"
                                                 + (f", from {d['final_from']})" if d.get("final_from") else ")")
                                                 if d.get("final_step") is not None else "")),
        ("resume", ("yes: " if d["resume"]["ok"] else "no: ") + d["resume"]["reason"]
         + (f" (finetune-studio train {d['path']}/run.yaml --resume)" if d["resume"]["ok"] else "")
         + (f" To train further: finetune-studio train {d['path']}/run.yaml --resume --max_steps N, with N above "
            f"{d['steps']}." if d["resume"].get("finished") and d.get("steps") else "")),
    ]
    if d.get("probe_report"):
        from engine.probe import format_probe

        fields = [f for f in fields if f[0] != "resume"]  # a probe keeps nothing to resume from
        fields += [("probe", line) for line in format_probe(d["probe_report"])]
    better = d.get("better_checkpoint")
    if better:
        fields.append(("better checkpoint", f"{better['text']}; make it the result: finetune-studio runs promote "
                       f"{d['path']}"))
    fields += [("config changed", line) for line in describe_config_changes(d["config_changes"])]
    if d["error"]:
        fields.append(("error", str(d["error"])))
    fields += [("earlier failure", f"leg {e.get('leg', '?')}"
                + (f", step {e['step']}" if isinstance(e.get("step"), int) else "") + f": {e.get('message')}"
                + " (resumed since)") for e in d.get("earlier_errors") or []]
    width = max(len(k) for k, _ in fields)
    for key, value in fields:
        print(f"{key:{width}}  {value}")
    print()
    samples = d.get("samples")
    if samples:
        where = "held-out" if samples.get("source") == "eval" else "training"
        print(f"answers at step {samples.get('step')} ({where} records, greedy):")
        for s in samples.get("samples") or []:
            print(f"  [line {s.get('line')}] {_clip(s.get('prompt'), 90)}\n    model:     {_clip(s.get('answer'), 90)}\n"
                  f"    reference: {_clip(s.get('reference'), 90)}")
        print()
    if d.get("config_problem"):
        print(f"config: run.yaml can't be read: {d['config_problem']}")
    if d["config"]:
        print("config (run.yaml):" if d.get("config_source") == "run.yaml" else
              "config (summary.json's copy, as the run started):")
        for key, value in d["config"].items():
            print(f"  {key}: {with_history(value, config_history(d['config_changes'], key))}")
    elif not d.get("config_problem"):
        print("config: none recorded (no run.yaml, no config in summary.json)")
    return 0


def config_value_text(value: Any) -> str:
    """A config value as YAML would show it: text bare, everything else (and empty text) as JSON."""
    if isinstance(value, str) and value:
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


# Always different between runs, so never a difference worth showing.
_NOT_COMPARED = ("output_dir",)


def compare_runs(paths: list[Path]) -> dict[str, Any]:
    """The numbers ``runs compare`` prints, as plain values.

    Returns:
        ``runs``: each run's :func:`run_details` without its config; ``config_differences``:
        ``{key: [value per run]}`` for every config key whose value differs (None where a
        run doesn't record it; ``output_dir`` left out), or whose values during the run differ;
        ``config_histories``: ``{key: [[[earlier value, step it ended at], ...] per run]}`` for
        those keys a run changed (see :func:`config_history`); ``same_config_keys``: how many keys
        are equal in all runs.
    """
    details = [run_details(p) for p in paths]
    configs = [d.pop("config") for d in details]
    keys: list[str] = []
    for cfg in configs:
        keys += [k for k in cfg if k not in keys and k not in _NOT_COMPARED]
    # A key differs when its value or its history does: two runs ending at 1e-4, one of them at 2e-4
    # for its first 900 steps, did not train alike.
    histories = {k: [config_history(d["config_changes"], k) for d in details] for k in keys}
    diffs = {k: [cfg.get(k) for cfg in configs] for k in keys
             if any(cfg.get(k) != configs[0].get(k) or (k in cfg) != (k in configs[0]) for cfg in configs)
             or any(h != histories[k][0] for h in histories[k])}
    # What tells the runs apart first: the values that differ, then the histories, then run_name (a sweep's
    # names always differ, and the runs are shown by name anyway).
    def order(key: str) -> tuple[bool, bool]:
        same_end = len({json.dumps(v, default=str) for v in diffs[key]}) == 1
        return key == "run_name", same_end

    diffs = {k: diffs[k] for k in sorted(diffs, key=order)}
    evals = {eval_data_of(cfg, d.get("dataset_hash")) for cfg, d in zip(configs, details, strict=True)}
    return {"runs": details, "config_differences": diffs,
            "config_histories": {k: [[list(x) for x in h] for h in histories[k]] for k in diffs
                                 if any(histories[k])},
            "same_config_keys": len(keys) - len(diffs), "same_eval_data": len(evals) == 1}


def eval_data_of(cfg: dict[str, Any], dataset_hash: str | None = None) -> tuple:
    """What a run's eval loss was measured on: its eval file, or its dataset's held-out share
    (the dataset's content, the share and the seed decide which records); () without eval data."""
    if cfg.get("eval_dataset"):
        return ("file", cfg["eval_dataset"])
    if cfg.get("eval_split"):
        return ("split", dataset_hash or cfg.get("dataset"), cfg.get("eval_split"), cfg.get("seed"))
    return ()


def cli_compare(args: Any) -> int:
    """``finetune-studio runs compare RUN RUN... [--json]``: runs side by side.

    The numbers behind the GUI's overlaid curves: status, steps, duration, final, best eval
    and lowest train losses, peak memory, dataset hash, and the config keys that differ.
    The lowest final and best eval losses are starred (the eval losses only when measured on the
    same records).

    Args:
        args: ``runs`` (list[str]): two or more run folders or run names; ``json`` (bool):
            print :func:`compare_runs` as one JSON object.

    Returns:
        0; errors are raised as StudioError (the CLI prints them, exit 2).
    """
    from engine.adapters import base_label

    refs = list(args.runs)
    if len(refs) < 2:
        raise StudioError("runs compare needs two runs or more", hint="finetune-studio runs list shows them.")
    result = compare_runs([resolve_run(r) for r in refs])
    if getattr(args, "json", False):
        print(json.dumps(result, indent=2, ensure_ascii=False, default=str))
        return 0
    runs = result["runs"]

    def best(key: str, rank: bool = True) -> list[str]:
        values = [_final(r) if key == "final_loss" else r[key] for r in runs]
        low = min((v for v in values if v is not None), default=None)
        return [_num(v) + (" *" if rank and v is not None and v == low and len(runs) > 1 else "") for v in values]

    table: list[tuple[str, list[str]]] = [
        ("status", [r["status"] for r in runs]), ("method", [r["method"] for r in runs]),
        ("model", [base_label(r["model"]) for r in runs]), ("steps", [steps_text(r["steps"], r.get("failed_step")) for r in runs]),
        ("duration", [format_duration(r["duration_s"]) + (f" ({r['legs']} legs)" if (r.get("legs") or 1) > 1 else "")
                      for r in runs]),
        ("final loss", best("final_loss")), ("best eval loss", best("best_eval_loss", rank=result["same_eval_data"])),
        ("lowest train loss", [_num(r["metrics"]["lowest_loss"]) for r in runs]),
        ("peak GPU memory", [_gib(r["peak_gpu_bytes"]) for r in runs]),
        ("dataset hash", [(r["dataset_hash"] or "-")[:19] for r in runs]),
    ]
    diffs = result["config_differences"]
    histories = result["config_histories"]
    table += [(key, [with_history(v, [tuple(x) for x in histories[key][i]] if key in histories else [])
                     for i, v in enumerate(values)]) for key, values in diffs.items()]
    header = ("", [r["name"] for r in runs])
    widths = [max(len(k) for k, _ in (header, *table))]
    widths += [max(len(vals[i]) for _, vals in (header, *table)) for i in range(len(runs))]
    n_fixed = len(table) - len(diffs)
    for i, (key, values) in enumerate((header, *table)):
        if i == n_fixed + 1 and diffs:
            print("config differences:")
        print("  ".join(v.ljust(w) for v, w in zip((key, *values), widths, strict=True)).rstrip())
    same = result["same_config_keys"]
    print(f"{'no config differences' if not diffs else f'{len(diffs)} config key(s) differ'}; "
          f"{same} other key{'s' if same != 1 else ''} equal in all runs")
    if not result["same_eval_data"]:
        print(f"note: {DIFFERENT_EVAL_DATA}")
    for r in runs:
        if r.get("config_problem"):
            print(f"note: {config_problem_text(r)}")
    return 0


def config_problem_text(d: dict[str, Any]) -> str:
    """What a comparison says of a run whose run.yaml can't be read (``d``: its :func:`run_details`):
    the reason, and which config its values are then."""
    instead = ("its config here is summary.json's copy, as the run started" if d.get("config_source") == "summary.json"
               else "its config is unknown")
    return f"{d['name']}: run.yaml can't be read: {d['config_problem']}; {instead}"


DIFFERENT_EVAL_DATA = ("the eval losses were measured on different records (eval_dataset, or the dataset, eval_split "
                       "or seed differ), so they don't rank the runs; compare them on the same held-out file with "
                       "'adapters compare'")


def cli_list(args: Any) -> int:
    """``finetune-studio runs list [--json]``."""
    runs = list_runs()
    if getattr(args, "json", False):
        print(json.dumps([r.to_dict() for r in runs], indent=2))
        return 0
    if not runs:
        print(f"no runs yet in {runs_dir()}")
        return 0
    steps = [steps_text(r.steps or 0, r.failed_step) for r in runs]
    w = max(6, *map(len, steps))  # "4 (failed at 5)" widens it
    print(f"{'run':40} {'status':12} {'method':8} {'steps':>{w}} {'final loss':>10} {'best eval':>10}  duration")
    for r, step in zip(runs, steps, strict=True):
        final = r.final_loss_mean if r.final_loss_mean is not None else r.final_loss
        fl = f"{final:.4f}" if final is not None else "-"
        be = f"{r.best_eval_loss:.4f}" if r.best_eval_loss is not None else "-"
        print(f"{r.name[:40]:40} {r.shown_status:12} {r.method:8} {step:>{w}} {fl:>10} {be:>10}  "
              f"{duration_text(r)}")
    return 0
