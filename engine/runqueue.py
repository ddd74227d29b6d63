"""A queue of runs for the one GPU: line several up now, train them one after another.

A single-GPU workstation trains one run at a time, and the runs worth comparing (a learning
rate sweep, the same method on three datasets) are usually lined up before leaving for the
night. ``finetune-studio queue add RUN.yaml [--grid KEY=V1,V2 ...] [--KEY VALUE ...]`` adds
one run, or one per point of a grid; ``queue run`` trains them in order; the GUI's Queue does
the same through these functions.

- **What is queued is frozen.** Each entry's config is validated and written to
  ``<data home>/queue/<id>.yaml`` when it is added, so editing the original file or the Train
  form afterwards changes nothing that was queued. Every entry trains in a run folder of its
  own (its ``output_dir`` is cleared), so grid points never write over each other.
- **One runner.** ``queue run`` holds ``queue/runner.lock`` while it drains the queue; a
  second runner is refused. It is an OS file lock through ``filelock`` (installed with
  huggingface_hub and datasets, pinned in every lock file), let go if the process dies. Each
  entry trains in its own worker process, the one the GUI starts, so the Train area can
  re-attach to it and plot it, and the worker is detached: if the runner dies, the run goes
  on, and the next runner waits for it before starting another.
- **One run's failure does not stop the queue.** Its entry is marked failed, with the error,
  and the next one starts. A stop (``queue stop``, Ctrl-C, the GUI) ends the queue after the
  current run, or with ``--now`` stops the current run too, with a checkpoint; what is left
  stays pending.

State is ``queue/queue.json``, rewritten atomically under ``queue/queue.json.lock``, so the
GUI and a terminal can both change it.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from engine.errors import ConfigError, ConfigErrors, StudioError
from engine.files import atomic_write_text

PENDING, RUNNING = "pending", "running"
# How a queued run ended; "interrupted": its worker died without finishing (resumable).
ENDED = ("completed", "stopped", "failed", "interrupted")


@dataclass
class Entry:
    """One queued run."""

    id: str
    name: str  # the run_name it trains under
    config: str  # the frozen config file
    changes: dict[str, Any] = field(default_factory=dict)  # what differs from the config it came from
    source: str = ""  # the config file it came from ("" from the GUI's form)
    added: float = 0.0
    state: str = PENDING
    run_dir: str | None = None
    started: float | None = None
    ended: float | None = None
    message: str = ""  # how it ended, in words (the error of a failed run)
    resume: str | None = None  # a run folder to continue from its last checkpoint (queue retry)

    def describe(self) -> str:
        """The entry on one line: its name and what the grid changed."""
        changes = ", ".join(f"{k}={_short(v)}" for k, v in self.changes.items())
        text = f"{self.name} ({changes})" if changes else self.name
        return text + (f", resuming {Path(self.resume).name}" if self.resume else "")


def queue_dir() -> Path:
    from engine.paths import data_home

    return data_home() / "queue"


def parse_grid(items: list[str], *, notes: list[str] | None = None) -> dict[str, list[Any]]:
    """``["learning_rate=1e-4,3e-4", "lora_r=8,16"]`` -> ``{"learning_rate": [1e-4, 3e-4], ...}``.

    Values are split on the commas outside brackets, so ``lora_target_modules=[q_proj,v_proj],all-linear``
    is two values. A value given twice (``lora_r=8,8``, or ``1e-4,0.0001``) would queue the same run twice
    under the same name: it is kept once, and the drop is said in ``notes`` when given.

    Raises:
        ConfigErrors: a malformed item, an unknown key (with the closest one) or a repeated key.
    """
    from engine.config import RunConfig, UnpairedError, closest_key, coerce, parse_override, split_values

    names = RunConfig.field_names()
    grid: dict[str, list[Any]] = {}
    errors: list[ConfigError] = []
    for item in items:
        key, sep, values = item.partition("=")
        key = key.strip().lstrip("-").replace("-", "_")
        if not sep or not key or not values.strip():
            errors.append(ConfigError(f"--grid {item!r}: write KEY=V1,V2 (e.g. learning_rate=1e-4,3e-4)",
                                      key="grid"))
            continue
        if key not in names:
            close = closest_key(key)
            errors.append(ConfigError(f"--grid: unknown key '{key}'" + (f"; did you mean '{close}'?" if close
                                                                          else ""), key=key))
            continue
        if key in grid:
            errors.append(ConfigError(f"--grid: '{key}' is given twice; list all its values in one --grid",
                                      key=key))
            continue
        try:
            texts = split_values(values)
        except UnpairedError as problem:  # "[q_proj,v_proj" was queued as the literal text
            form = ("end a quoted value with its quote, e.g. --grid \"run_name='a,b',c\"" if problem.quote
                    else "write a list value whole in brackets, e.g. "
                    "--grid \"lora_target_modules=[q_proj,v_proj],all-linear\"")
            errors.append(ConfigError(f"--grid {key}: {problem} in {values.strip()!r}; {form}", key=key))
            continue
        kept: list[Any] = []
        seen: list[Any] = []
        for text in texts:
            try:
                value = parse_override(key, text)
            except ConfigError as problem:  # a list value that isn't YAML: "[a: b: c]"
                errors.append(ConfigError(f"--grid {key}: {problem.message.removeprefix(f'{key!r} ')}", key=key))
                break
            try:
                same = coerce(key, value)
            except ConfigError:
                same = value  # a bad value is named with its grid point when the runs are built
            if same in seen:
                if notes is not None:
                    notes.append(f"--grid {key}: {text} is the same as an earlier value; queued once")
                continue
            seen.append(same)
            kept.append(value)
        grid[key] = kept
    if errors:
        raise ConfigErrors(errors)
    return grid


class RunQueue:
    """The queue in ``root`` (default: :func:`queue_dir`)."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else queue_dir()

    # ---- Reading
    def entries(self) -> list[Entry]:
        return [_entry(e) for e in self._read().get("entries", [])]

    def pending(self) -> list[Entry]:
        return [e for e in self.entries() if e.state == PENDING]

    def current(self) -> Entry | None:
        """The entry training now (or left running by a runner that died)."""
        return next((e for e in self.entries() if e.state == RUNNING), None)

    def runner_pid(self) -> int | None:
        """The process draining the queue, if one is."""
        from engine.runs import pid_alive

        pid = self._read().get("runner_pid")
        return pid if isinstance(pid, int) and pid_alive(pid) else None

    def stop_requested(self) -> bool:
        return bool(self._read().get("stop"))

    # ---- Changing
    def add(self, cfg: Any, *, changes: dict[str, Any] | None = None, source: str = "",
            grid: dict[str, list[Any]] | None = None, given: Collection[str] | None = None,
            fill: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
            check: Callable[[Any], list[ConfigError]] | None = None) -> list[Entry]:
        """Queue ``cfg`` (a RunConfig), or one run per point of ``grid`` over it.

        Every point is validated before any is queued: a grid with one impossible point
        queues nothing, and the error names the point.

        Args:
            given: the keys the user set (in the file and on the command line). A grid point is then
                built as if its values were written into the config: the keys the user left out take
                their defaults for the point, so ``method=lora,qlora`` loads qlora in nf4 as
                ``method: qlora`` would. None: every key of ``cfg`` stands (the Train form's values).
            fill: more values a point needs, from the point (the Train form gives a point over methods
                the precision that picking the method in the form would); kept in the entry's changes.
            check: what is wrong with a point's config beyond its values (``queue add`` asks whether its
                model and data files are there), so a run that can't start is refused now, not failed
                later, unattended.

        Raises:
            ConfigErrors: a point is not a valid config.
        """
        from engine.config import RunConfig

        if given is not None:
            mine = {k: v for k, v in cfg.to_dict().items() if k in set(given)}
        points = [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())] \
            if grid else [{}]
        configs = []
        for point in points:
            # A grid point's name says what it changes: "medical-lr3e-4-r16", "ia3-lr1e-3".
            parts = [cfg.run_name] if cfg.run_name else []
            if "method" in point or not parts:
                parts.append(str(point.get("method", cfg.method)))
            parts += [f"{_slug(k)}{_short(v)}" for k, v in point.items() if k not in ("method", "run_name")]
            name = str(point["run_name"]) if "run_name" in point else "-".join(parts)
            filled = {k: v for k, v in (fill(point) if fill else {}).items() if k not in point}
            values = {**point, **filled, "output_dir": "", "run_name": name}  # the grid's own keys first
            try:
                point_cfg = cfg.replace(**values) if given is None else RunConfig.from_dict({**mine, **values})
                # A path in the grid was typed: relative to the current folder, stored absolute (the
                # frozen config lives in the queue folder, which a relative path would be read against).
                point_cfg = point_cfg.resolve_paths(Path.cwd(), typed=point)
                problems = check(point_cfg) if check else []
                if problems:
                    raise ConfigErrors(problems)
                configs.append((point_cfg, [k for k in values if k in point or k not in ("output_dir", "run_name")]))
            except ConfigErrors as e:
                if not point:  # no grid: the config's own problem, with its hint
                    raise e.errors[0] if len(e.errors) == 1 else e from None
                where = ", ".join(f"{k}={_short(v)}" for k, v in point.items())
                raise ConfigErrors([ConfigError(f"grid point {where}: {x.message}" + _from_config(x.key, point, given),
                                                key=x.key, fix=x.fix, hint=x.hint) for x in e.errors]) from None
        self.root.mkdir(parents=True, exist_ok=True)
        added = []
        with self._locked() as state:
            for point_cfg, point in configs:
                state["added"] = state.get("added", 0) + 1
                entry_id = time.strftime("%Y%m%d-%H%M%S") + f"-{state['added']:03d}"
                path = self.root / f"{entry_id}.yaml"
                point_cfg.save(path)
                entry = Entry(id=entry_id, name=point_cfg.run_name, config=str(path),
                              changes={**(changes or {}), **{k: getattr(point_cfg, k) for k in point}},
                              source=source, added=time.time())
                state["entries"].append(asdict(entry))
                added.append(entry)
        return added

    def remove(self, ids: list[str]) -> list[Entry]:
        """Take entries out of the queue (not the one training: stop it first).

        Raises:
            StudioError: an id that is not in the queue, or the entry training now.
        """
        with self._locked() as state:
            by_id = {e["id"]: e for e in state["entries"]}
            for i in ids:
                if i not in by_id:
                    raise StudioError(f"no queued run '{i}'", hint="finetune-studio queue list shows the ids")
                if by_id[i]["state"] == RUNNING:
                    raise StudioError(f"'{i}' is training now; stop it first",
                                      hint="finetune-studio queue stop --now")
            gone = [_entry(by_id[i]) for i in ids]
            state["entries"] = [e for e in state["entries"] if e["id"] not in set(ids)]
        for e in gone:
            Path(e.config).unlink(missing_ok=True)
        return gone

    def retry(self, entry_id: str) -> Entry:
        """Queue an ended entry again, at the end of the queue: a stopped or interrupted run
        continues from its last checkpoint (as ``train --resume`` would), a failed one (or one
        with nothing to resume) starts over from its frozen config.

        Its config is checked again as ``train`` checks it before it makes a run folder (the
        config itself, its model, its data files): they may have gone since it was queued.

        Raises:
            StudioError: no such entry, it has not ended (or it completed: nothing to redo), or
                its config can't train now (with the message ``train`` gives).
        """
        from engine.config import RunConfig
        from engine.models import resolve_model_path
        from engine.resume import resume_point, resume_verdict
        from engine.train import check_data_files

        old = next((e for e in self.entries() if e.id == entry_id), None)
        if old is None:
            raise StudioError(f"no queued run '{entry_id}'", hint="finetune-studio queue list shows the ids")
        if old.state not in ("stopped", "interrupted", "failed"):
            raise StudioError(f"'{entry_id}' is {old.state}: only a stopped, interrupted or failed run can be "
                              "retried", hint="To train a completed run further, raise max_steps and resume it "
                                              "from the Runs area or with train RUN/run.yaml --resume.")
        try:
            cfg = RunConfig.load(old.config)
            resolve_model_path(cfg.model)
            check_data_files(cfg)
        except StudioError as e:
            raise StudioError(f"'{entry_id}' ({old.describe()}) can't be retried: {e.message}",
                              hint=(f"{e.hint} " if e.hint else "") + f"The queued config is frozen ({old.config}): "
                              "put back what it names, or queue a corrected config (finetune-studio queue add "
                              "RUN.yaml).") from None
        resume = None
        if old.state != "failed" and old.run_dir and Path(old.run_dir).exists():
            if resume_verdict(resume_point(old.run_dir)).ok:
                resume = old.run_dir
        with self._locked() as state:
            state["added"] = state.get("added", 0) + 1
            entry_id = time.strftime("%Y%m%d-%H%M%S") + f"-{state['added']:03d}"
            path = self.root / f"{entry_id}.yaml"
            path.write_bytes(Path(old.config).read_bytes())
            entry = Entry(id=entry_id, name=old.name, config=str(path), changes=dict(old.changes),
                          source=old.source, added=time.time(), resume=resume)
            state["entries"].append(asdict(entry))
        return entry

    def clear_ended(self) -> int:
        """Forget the entries that have finished (their run folders stay in the history)."""
        ended = [e.id for e in self.entries() if e.state in ENDED]
        return len(self.remove(ended)) if ended else 0

    def move(self, entry_id: str, delta: int) -> None:
        """Move a pending entry ``delta`` places among the entries (negative: sooner)."""
        with self._locked() as state:
            items = state["entries"]
            i = next((k for k, e in enumerate(items) if e["id"] == entry_id), None)
            if i is None:
                raise StudioError(f"no queued run '{entry_id}'")
            j = max(0, min(len(items) - 1, i + delta))
            items.insert(j, items.pop(i))

    def request_stop(self, now: bool = False) -> Entry | None:
        """Ask the runner to start nothing more; ``now``: also stop the current run (after its
        current step, with a checkpoint). Returns the entry training now, if any."""
        if self.runner_pid() is None:
            return None  # nothing drains the queue: nothing to stop, and the next runner starts
        with self._locked() as state:
            state["stop"] = True
        current = self.current()
        if now and current is not None and current.run_dir:
            from engine.client import WorkerClient

            WorkerClient.attach(current.run_dir).stop()
        return current

    # ---- Running
    def start_runner(self) -> int:
        """Start ``finetune-studio queue run`` as a process of its own (the GUI's Start), so
        the queue goes on if the window closes. Its output goes to ``queue/runner.log``.
        Returns its pid."""
        import subprocess
        import threading

        if self.root != queue_dir():
            raise StudioError("start_runner drains the default queue only")
        self.root.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        root = str(Path(__file__).resolve().parent.parent)  # importable from a checkout too
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        kwargs: dict[str, Any] = {"start_new_session": True} if os.name == "posix" else {
            "creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)}
        with open(self.root / "runner.log", "ab") as log:
            proc = subprocess.Popen([sys.executable, "-m", "engine", "queue", "run"], stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=log, env=env, **kwargs)
        # Reaped when it ends, so its pid doesn't linger as a zombie that looks alive.
        threading.Thread(target=proc.wait, daemon=True, name=f"queue-runner-{proc.pid}").start()
        return proc.pid

    def run(self, on_event: Callable[[Entry, Any], None] | None = None,
            on_entry: Callable[[Entry], None] | None = None,
            stop_now: Callable[[], bool] | None = None,
            on_wait: Callable[[Any], None] | None = None, wait_poll_s: float = 2.0) -> list[Entry]:
        """Train the pending entries one after another until none is left or a stop is asked.

        Args:
            on_event: called with (entry, worker Event) for each event of each run.
            on_entry: called with an entry when it starts and again when it ended.
            stop_now: polled between events; once True the current run is stopped (with a
                checkpoint) and nothing more starts (Ctrl-C in ``queue run``).
            on_wait: called with the RunInfo of a run trained outside the queue (started in
                the Train area, or by ``train``) that the next entry waits for: one GPU, one
                run at a time.

        Returns:
            The entries this call trained, as they ended.

        Raises:
            StudioError: another runner is draining this queue.
        """
        from filelock import FileLock, Timeout

        self.root.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.root / "runner.lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            pid = self.runner_pid()
            raise StudioError("the queue is already being trained" + (f" by process {pid}" if pid else ""),
                              hint="One GPU trains one run at a time; 'finetune-studio queue stop' ends "
                                   "that runner after its current run.") from None
        done: list[Entry] = []
        awake = None
        try:
            with self._locked() as state:
                state["runner_pid"] = os.getpid()
                state["stop"] = False
            awake = self._keep_awake()
            while True:
                entry = self.current() or (None if self.stop_requested() else next(iter(self.pending()), None))
                if entry is None:
                    break
                if entry.state == PENDING and not self._wait_for_gpu(on_wait, stop_now, wait_poll_s):
                    break
                ended = self._train(entry, on_event, on_entry, stop_now)
                done.append(ended)
                if stop_now is not None and stop_now():
                    break
        finally:
            if awake is not None:
                awake.release()
            with self._locked() as state:
                state["runner_pid"] = None
                state["stop"] = False
            lock.release()
        return done

    # ---- Internals
    def _keep_awake(self) -> Any:
        """Each run keeps the computer awake while it trains (``keep_awake``); the runner holds
        the same lock across the whole queue, so the machine can't suspend in the gap while the
        next run loads its model. None when no queued run asks for it."""
        from engine import keepawake
        from engine.config import RunConfig

        def wants(e: Entry) -> bool:
            try:
                return RunConfig.load(e.config).keep_awake
            except StudioError:
                return False

        todo = [e for e in self.entries() if e.state in (PENDING, RUNNING)]
        if not any(wants(e) for e in todo):
            return None
        return keepawake.keep_awake(f"training a queue of {len(todo)} run(s)")

    def _wait_for_gpu(self, on_wait: Callable[[Any], None] | None, stop_now: Callable[[], bool] | None,
                      poll_s: float = 2.0) -> bool:
        """Wait while a run outside the queue trains; False if a stop came meanwhile."""
        from engine.runs import list_runs

        told: set[str] = set()
        while True:
            busy = [r for r in list_runs() if r.status == "running"]
            if not busy:
                return True
            if str(busy[0].path) not in told:
                told.add(str(busy[0].path))
                if on_wait:
                    on_wait(busy[0])
            if self.stop_requested() or (stop_now is not None and stop_now()):
                return False
            time.sleep(poll_s)

    def _train(self, entry: Entry, on_event: Callable[[Entry, Any], None] | None,
               on_entry: Callable[[Entry], None] | None, stop_now: Callable[[], bool] | None) -> Entry:
        from engine.client import WorkerClient
        from engine.config import RunConfig
        from engine.runs import pid_alive

        if entry.state == RUNNING and entry.run_dir:  # left by a runner that died: follow its worker
            client = WorkerClient.attach(entry.run_dir)
            pid = client.pid
            if pid is None or not pid_alive(pid):
                return self._finish(entry, on_entry)
        else:
            try:
                cfg = RunConfig.load(entry.config)
                if entry.resume:
                    cfg = cfg.replace(output_dir=entry.resume)
                client = WorkerClient.start(cfg, resume=bool(entry.resume))
            except (StudioError, OSError) as e:
                entry = self._update(entry.id, state="failed", ended=time.time(), started=time.time(),
                                     message=f"failed: could not start: {e}")
                if on_entry:
                    on_entry(entry)
                return entry
            entry = self._update(entry.id, state=RUNNING, run_dir=str(client.output_dir), started=time.time())
        if on_entry:
            on_entry(entry)
        stopping = False
        error = None
        for event in client.events(should_stop=lambda: False):
            if on_event:
                on_event(entry, event)
            if event.type == "error":
                error = event.get("message")
            if not stopping and stop_now is not None and stop_now():
                client.stop()
                stopping = True
        try:
            client.wait(timeout=60)
        except Exception:  # noqa: BLE001 - a worker that outlives its finished event is reaped later
            pass
        return self._finish(entry, on_entry, error)

    def _finish(self, entry: Entry, on_entry: Callable[[Entry], None] | None, error_text: str | None = None
                ) -> Entry:
        from engine.runs import read_summary, run_info

        run_dir = Path(entry.run_dir or "")
        info = run_info(run_dir) if (run_dir / "summary.json").exists() else None
        status = info.status if info is not None else "failed"
        if status not in ENDED:
            status = "interrupted"
        summary = read_summary(run_dir) if info is not None else {}
        if entry.run_dir and not run_dir.is_dir():  # it failed before its folder was made (or kept)
            entry = self._update(entry.id, run_dir=None)
        error = summary.get("error") or {}
        if status == "failed":
            message = "failed: " + (error.get("message") or error_text or "the worker ended before training")
        elif status == "completed":
            loss = info.final_loss_mean if info is not None else None
            message = f"completed at step {info.steps}" + (f", final loss {loss:.4f}" if loss is not None else "")
            if info is not None and info.best_eval_loss is not None:
                message += f", best eval loss {info.best_eval_loss:.4f}"
        elif status == "stopped":
            message = f"stopped at step {info.steps}, with a checkpoint"
        else:
            message = ("interrupted: its worker ended without finishing; continue it with "
                       f"finetune-studio train {run_dir / 'run.yaml'} --resume")
        entry = self._update(entry.id, state=status, ended=time.time(), message=message)
        if on_entry:
            on_entry(entry)
        return entry

    def _update(self, entry_id: str, **changes: Any) -> Entry:
        with self._locked() as state:
            for e in state["entries"]:
                if e["id"] == entry_id:
                    e.update(changes)
                    return _entry(e)
        raise StudioError(f"queued run '{entry_id}' was removed while it trained")

    def _read(self) -> dict[str, Any]:
        path = self.root / "queue.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"entries": []}
        except (OSError, json.JSONDecodeError) as e:
            raise StudioError(f"{path}: can't read the queue: {e}",
                              hint="Move the file away to start an empty queue.") from None
        data.setdefault("entries", [])
        return data

    @contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        """The queue's state for a read-modify-write; written back atomically on exit."""
        from filelock import FileLock

        self.root.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.root / "queue.json.lock"), timeout=30):
            state = self._read()
            yield state
            atomic_write_text(self.root / "queue.json", json.dumps(state, indent=1, ensure_ascii=False))


def advice_for(entries: list[Entry], *, short: bool = False) -> list[str]:
    """What the runs would warn about at their start that is known now (a learning rate far from
    the method's usual one), one line per queued run; said when they are queued. ``short``: the
    finding alone, without its reasons and hint (the Train area's progress line)."""
    from engine.config import RunConfig
    from engine.methods import learning_rate_note

    notes = []
    for e in entries:
        try:
            note = learning_rate_note(RunConfig.load(e.config))
        except StudioError:
            continue
        if note:
            notes.append(f"{e.name}: {note['finding']}" if short else
                         f"{e.name}: {note['message']}. {note['hint']}")
    return notes


def _entry(data: dict[str, Any]) -> Entry:
    """An entry from queue.json; keys a newer version added are ignored."""
    known = {f.name for f in fields(Entry)}
    return Entry(**{k: v for k, v in data.items() if k in known})


def _from_config(key: str | None, point: dict[str, Any], given: Collection[str] | None) -> str:
    """Why a grid over methods clashes with a key the config itself sets (load_in: fp32 for qlora)."""
    if given is None or "method" not in point or key is None or key not in given or key in point:
        return ""
    return (f" ({key} is set in the config, the form or as --{key}, so every grid point keeps it; leave it at its "
            f"default and each method takes its own, as qlora takes nf4, or give {key} values in the grid too)")


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return "+".join(str(v) for v in value)
    return str(value)


_SLUGS = {"learning_rate": "lr", "lora_r": "r", "lora_alpha": "alpha", "batch_size": "bs", "seq_len": "len",
          "num_epochs": "ep", "max_steps": "steps", "gradient_accumulation_steps": "acc"}


def _slug(key: str) -> str:
    return _SLUGS.get(key, key)


# ---- CLI


def format_queue(entries: list[Entry], runner: int | None) -> str:
    if not entries:
        return "The queue is empty. Add a run: finetune-studio queue add RUN.yaml [--grid KEY=V1,V2]"
    lines = [f"{'id':<19}  {'state':<11}  run"]
    for e in entries:
        lines.append(f"{e.id:<19}  {e.state:<11}  {e.describe()}")
        if e.message or progress(e):
            lines.append(f"{'':<19}  {'':<11}  {e.message or progress(e)}")
        if e.state != PENDING:
            lines.append(f"{'':<19}  {'':<11}  {_folder_text(e)}")
    pending = sum(1 for e in entries if e.state == PENDING)
    lines.append("")
    lines.append(f"{pending} pending; " + (f"being trained by process {runner}" if runner
                                           else "not running (finetune-studio queue run)"))
    return "\n".join(lines)


def progress(e: Entry) -> str:
    """Where an entry in training is, from its run folder: "step 5 of 8", or "" (not training, or
    no step logged yet). ``queue.json`` changes only when a run starts or ends, so without this
    ``queue list`` and the Queue tab said nothing of the run in between."""
    if e.state != RUNNING or not e.run_dir or not Path(e.run_dir).is_dir():
        return ""
    from engine.runs import read_summary, run_info

    steps = run_info(Path(e.run_dir)).steps
    if not steps:
        return ""
    planned = (read_summary(Path(e.run_dir)).get("config") or {}).get("max_steps")
    return f"step {steps} of {planned}" if isinstance(planned, int) and planned > 0 else f"step {steps}"


def _folder_text(e: Entry) -> str:
    """Where an entry that started trains (or trained), for ``queue list``."""
    if e.run_dir is None:
        return "no run folder: it failed before its run began" if e.state == "failed" else "no run folder yet"
    return e.run_dir if Path(e.run_dir).is_dir() else f"{e.run_dir} (no longer there: moved or deleted)"


def cli_add(args: Any) -> int:
    """``finetune-studio queue add RUN.yaml [--grid KEY=V1,V2 ...] [--KEY VALUE ...] [--json]``."""
    from engine.config import RunConfig, keys_in, located_in
    from engine.train import missing_inputs, model_problems

    q = RunQueue()
    cfg = RunConfig.load(args.config, args.overrides)
    notes: list[str] = []
    grid = parse_grid(args.grid or [], notes=notes)
    # A key given both ways: the grid's values were queued and the option was dropped without a word.
    # (The eval_split that --eval_dataset implies is no choice of the user's: the grid's stands.)
    both = [k for k in grid if k in args.overrides and not (k == "eval_split" and args.overrides.get("eval_dataset"))]
    if both:
        errors = [ConfigError(f"--{k} {args.overrides[k]} and --grid {k}=... both set '{k}'; give its "
                              "values in one place", key=k,
                              hint=f"To queue it with {args.overrides[k]} too, add that value to the grid.")
                  for k in both]
        raise ConfigErrors(errors)  # one reads as itself, with its hint
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    given = {*keys_in(args.config), *args.overrides}
    try:
        added = q.add(cfg, changes=dict(args.overrides), source=str(Path(args.config).resolve()), grid=grid,
                      given=given, check=lambda c: missing_inputs(c) or model_problems(c))
    except ConfigError as e:
        if grid:  # each grid point's problem names the point, and where its key came from
            raise
        raise located_in(args.config, args.overrides, e) from None  # as train says it
    for note in advice_for(added):  # said now: the runs train unattended
        print(f"note: {note}", file=sys.stderr)
    if args.json:
        print(json.dumps([asdict(e) for e in added], indent=1, ensure_ascii=False))
    else:
        for e in added:
            print(f"queued {e.id}  {e.describe()}")
        print(f"{len(q.pending())} run(s) pending; train them with: finetune-studio queue run")
    return 0


def cli_list(args: Any) -> int:
    """``finetune-studio queue list [--json]``."""
    q = RunQueue()
    entries, runner = q.entries(), q.runner_pid()
    if args.json:
        print(json.dumps({"runner_pid": runner, "entries": [asdict(e) for e in entries]}, indent=1,
                         ensure_ascii=False))
    else:
        print(format_queue(entries, runner))
    return 0


def cli_remove(args: Any) -> int:
    """``finetune-studio queue remove ID... | --ended``."""
    q = RunQueue()
    if args.ended:
        print(f"forgot {q.clear_ended()} ended run(s); their folders stay in the run history")
        return 0
    if not args.ids:
        raise StudioError("name the queued runs to remove (their ids), or give --ended",
                          hint="finetune-studio queue list shows the ids")
    for e in q.remove(args.ids):
        print(f"removed {e.id}  {e.describe()}")
    return 0


def cli_retry(args: Any) -> int:
    """``finetune-studio queue retry ID...``."""
    q = RunQueue()
    for i in args.ids:
        e = q.retry(i)
        print(f"queued {e.id}  {e.describe()}" + ("" if e.resume else " (from the start)"))
    return 0


def cli_stop(args: Any) -> int:
    """``finetune-studio queue stop [--now]``."""
    q = RunQueue()
    current = q.request_stop(now=args.now)
    if q.runner_pid() is None and current is None:
        print("the queue is not being trained: nothing to stop")
    elif current is None:
        print("the queue will not start another run")
    else:
        print(f"{'stopping' if args.now else 'the queue ends after'} {current.describe()}"
              + (" after its current step, with a checkpoint" if args.now else ""))
    return 0


def cli_run(args: Any) -> int:
    """``finetune-studio queue run [--json]``."""
    return _cli_run(RunQueue(), args.json)


def _cli_run(q: RunQueue, as_json: bool) -> int:
    import signal
    import threading

    from engine.train import show_event

    asked = threading.Event()

    def handler(signum, frame):
        if asked.is_set():
            raise KeyboardInterrupt
        asked.set()
        print("\nstopping the current run after this step, with a checkpoint; the rest stay queued "
              "(Ctrl-C again to leave it running on its own)", file=sys.stderr)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)

    def on_entry(e: Entry) -> None:
        if as_json:
            _say(json.dumps({"event": "queue", **asdict(e)}, ensure_ascii=False))
        elif e.state == RUNNING:
            _say(f"== {e.id}  {e.describe()}")
        else:
            _say(f"== {e.id}  {e.message}")

    def on_event(e: Entry, event: Any) -> None:
        if as_json:
            _say(event.to_json())
        else:
            show_event(event.type, event.data)

    def on_wait(run: Any) -> None:
        _say(f"waiting for {run.name} to finish (one GPU, one run at a time)", sys.stderr)

    if not q.pending() and q.current() is None:
        print("nothing is queued: finetune-studio queue add RUN.yaml", file=sys.stderr)
        return 0
    done = q.run(on_event=on_event, on_entry=on_entry, stop_now=asked.is_set, on_wait=on_wait)
    left = len(q.pending())
    if not as_json:
        counts = {s: sum(1 for e in done if e.state == s) for s in ENDED}
        _say(f"queue: {len(done)} run(s) trained (" + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
             + f"); {left} still pending")
        compared = [Path(e.run_dir).name for e in done if e.run_dir and e.state in ("completed", "stopped")]
        if len(compared) > 1:
            _say("compare them: finetune-studio runs compare " + " ".join(compared))
    return 0 if all(e.state in ("completed", "stopped") for e in done) else 1


def _say(text: str, out: Any = None) -> None:
    """Print a line of ``queue run``; a reader that went away (``queue run | head``) stops the
    printing, not the queue, as with ``train``."""
    from engine.files import write_nowhere

    out = out or sys.stdout
    try:
        print(text, file=out, flush=True)
    except BrokenPipeError:
        write_nowhere(out)
