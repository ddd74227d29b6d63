"""A plain-Python client for the training worker (no Qt).

It starts ``python -m engine.worker`` as a child process, iterates its events and sends
commands. The GUI's QThread wraps exactly this class; tests drive it directly.

A run can outlive the client (the user closed the window and chose "keep running"):
:meth:`WorkerClient.attach` re-attaches to such a run by replaying and then following
its ``events.jsonl``, and controls it through STOP/SAVE files in the run folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from engine.config import RunConfig
from engine.events import FINISHED, LOG, STARTED, Event
from engine.runs import pid_alive, read_summary


class WorkerClient:
    """Start, watch and control one training worker process.

    Example::

        client = WorkerClient.start(cfg)
        for event in client.events():
            if event.type == "step":
                print(event["step"], event["loss"])
        client.wait()
    """

    def __init__(self, proc: subprocess.Popen | None, output_dir: Path | None = None,
                 log_path: Path | None = None):
        self.proc = proc
        self.output_dir = output_dir
        self.log_path = log_path
        self._lock = threading.Lock()
        self.finished: Event | None = None

    # ---- Public API
    @classmethod
    def start(cls, cfg: RunConfig, *, resume: bool = False, env: dict[str, str] | None = None,
              detach: bool = True, probe_steps: int = 0) -> WorkerClient:
        """Write the config to a file and start the worker on it.

        Args:
            cfg: the run config; if ``output_dir`` is empty, a new run folder is made now so the
                client knows where the run lives.
            resume: continue from the newest checkpoint.
            env: extra environment variables for the child.
            detach: start the worker in its own session, so it survives the GUI closing.
            probe_steps: a probe run of this many steps (engine/probe.py) in a new run folder
                of its own; nothing is saved.
        """
        from engine.runs import new_run_dir

        if probe_steps:
            from engine.probe import probe_name

            cfg = cfg.replace(output_dir=str(new_run_dir(cfg.method, probe_name(cfg))))
        elif not cfg.output_dir:
            cfg = cfg.replace(output_dir=str(new_run_dir(cfg.method, cfg.run_name)))
        out = Path(cfg.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        fd, cfg_path = tempfile.mkstemp(prefix="run-", suffix=".yaml", dir=out)
        os.close(fd)
        cfg.save(cfg_path)
        log_path = out / "worker.log"
        cmd = [sys.executable, "-m", "engine.worker", cfg_path, "--config-is-temp"]
        if resume:
            cmd.append("--resume")
        if probe_steps:
            cmd += ["--probe-steps", str(probe_steps)]
        child_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        # The engine package must be importable by the child even when run from a checkout.
        root = str(Path(__file__).resolve().parent.parent)
        child_env["PYTHONPATH"] = os.pathsep.join(p for p in (root, child_env.get("PYTHONPATH")) if p)
        kwargs: dict = {}
        if detach and os.name == "posix":
            kwargs["start_new_session"] = True
        elif detach and os.name == "nt":
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP  # type: ignore[attr-defined]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=open(log_path, "ab"), env=child_env, text=True, encoding="utf-8",
                                bufsize=1, **kwargs)
        # The worker writes its pid once its setup is done (model and data loaded); written now,
        # a client that attaches meanwhile (the GUI following a queued run) sees it running
        # instead of a run that died before it began. The worker removes it when it ends.
        (out / "worker.pid").write_text(str(proc.pid))
        return cls(proc, out, log_path)

    @classmethod
    def attach(cls, output_dir: str | os.PathLike) -> WorkerClient:
        """Re-attach to a run started earlier (maybe by a GUI that has since closed)."""
        return cls(None, Path(output_dir))

    @property
    def pid(self) -> int | None:
        if self.proc is not None:
            return self.proc.pid
        try:
            return int((self.output_dir / "worker.pid").read_text())
        except (OSError, ValueError, TypeError):
            return None

    def is_running(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is None
        pid = self.pid
        return pid is not None and pid_alive(pid)

    def events(self, poll_s: float = 0.2, should_stop: Callable[[], bool] | None = None) -> Iterator[Event]:
        """Yield events until the worker finishes (a ``finished`` event ends the stream).

        If the worker dies without a ``finished`` event (kill -9, a native crash), a synthetic
        ``finished`` event with status ``crashed`` and the tail of its log is yielded.

        Args:
            poll_s: For an attached run: how often its ``events.jsonl`` is read.
            should_stop: For an attached run: checked before each read; when it returns
                True the stream ends without a ``finished`` (a closing GUI stops following).
                A started worker's pipe can't be interrupted this way.
        """
        if self.proc is not None:
            yield from self._events_from_pipe()
        else:
            yield from self._events_from_file(poll_s, should_stop or (lambda: False))

    def send(self, cmd: str, **data) -> bool:
        """Send a command; returns False if the worker is gone."""
        with self._lock:
            if self.proc is not None and self.proc.stdin and self.proc.poll() is None:
                try:
                    self.proc.stdin.write(json.dumps({"cmd": cmd, **data}) + "\n")
                    self.proc.stdin.flush()
                    return True
                except (BrokenPipeError, OSError, ValueError):
                    return False
            if self.output_dir is not None and cmd in ("stop", "save") and self.is_running():
                (self.output_dir / cmd.upper()).write_text("1")
                return True
        return False

    def stop(self) -> bool:
        """Graceful stop after the current step, with a checkpoint."""
        return self.send("stop")

    def save(self) -> bool:
        """Save a checkpoint now, and go on training."""
        return self.send("save")

    def kill(self) -> None:
        """Last resort: end the process now (progress since the last checkpoint is lost)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        elif self.pid and self.is_running():
            import signal

            os.kill(self.pid, signal.SIGKILL if hasattr(signal, "SIGKILL") else signal.SIGTERM)

    def wait(self, timeout: float | None = None) -> int | None:
        if self.proc is not None:
            return self.proc.wait(timeout)
        end = None if timeout is None else time.time() + timeout
        while self.is_running():
            if end is not None and time.time() > end:
                raise subprocess.TimeoutExpired("worker", timeout or 0)
            time.sleep(0.1)
        return None

    def detach(self) -> None:
        """Stop listening but leave the worker running (the GUI is closing, run kept).

        Closes the worker's stdin (it notices, and keeps training). Its stdout is not closed
        here: closing a pipe another thread is blocked reading waits for that read to end,
        which could freeze the caller while the worker is silent (loading a model). Instead a
        daemon thread drains it, so an unread pipe never fills up and blocks the worker's
        event writes, and reaps the process when it exits, so :meth:`attach` in this same
        process does not mistake a zombie for a running worker. If this process exits, the
        pipe closes and the worker's writes to it fail, which it ignores.
        """
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            if proc.stdin:
                proc.stdin.close()
        except OSError:
            pass
        threading.Thread(target=_drain_and_reap, args=(proc,), daemon=True,
                         name=f"drain-worker-{proc.pid}").start()

    # ---- Internals
    def _crashed_event(self, code: int | None) -> Event:
        tail = ""
        if self.log_path and self.log_path.exists():
            tail = self.log_path.read_text(encoding="utf-8", errors="replace")[-2000:]
        return Event(FINISHED, {"status": "crashed", "returncode": code,
                                "output_dir": str(self.output_dir) if self.output_dir else None,
                                "message": f"the worker process ended unexpectedly (exit code {code}); "
                                "resume continues from the last checkpoint", "log_tail": tail}, time.time())

    def _events_from_pipe(self) -> Iterator[Event]:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            if not line.strip():
                continue
            event = Event.from_line(line)
            if event.type == FINISHED:
                self.finished = event
            yield event
            if event.type == FINISHED:
                break
        code = self.proc.wait()
        if self.finished is None:
            self.finished = self._crashed_event(code)
            yield self.finished

    def _events_from_file(self, poll_s: float, should_stop: Callable[[], bool]) -> Iterator[Event]:
        # A run that was stopped or crashed and then resumed has an earlier `finished` in its
        # events.jsonl, followed by the resumed attempt's `started`. Only the last `finished`
        # ends the stream, so it is held back until the file is read to the end with the
        # worker gone (or a later `started` shows it was not the last).
        path = self.output_dir / "events.jsonl"
        pos = 0
        buf = ""
        pending: Event | None = None
        while not should_stop():
            running = self.is_running()  # before reading: all a dead worker wrote is then in the file
            if path.exists():
                with open(path, encoding="utf-8") as fh:
                    fh.seek(pos)
                    chunk = fh.read()
                    pos = fh.tell()
                buf += chunk
                *lines, buf = buf.split("\n")
                for line in lines:
                    if line.strip():
                        event = Event.from_line(line)
                        if event.type == FINISHED:
                            pending = event
                            continue
                        if event.type == STARTED and pending is not None:
                            yield Event(LOG, {"text": f"(an earlier session of this run ended: "
                                                      f"{pending.get('status')} at step {pending.get('step')})"},
                                        pending.time)
                            pending = None
                        yield event
            if not running:
                if pending is not None:
                    self.finished = pending
                    yield pending
                    return
                if self.finished is None:
                    status = read_summary(self.output_dir).get("status")
                    if status in ("completed", "stopped", "failed"):
                        self.finished = Event(FINISHED, read_summary(self.output_dir), time.time())
                    else:
                        self.finished = self._crashed_event(None)
                    yield self.finished
                return
            time.sleep(poll_s)


def _drain_and_reap(proc: subprocess.Popen) -> None:
    """Read a detached worker's stdout to EOF (discarding it), then collect its exit status."""
    try:
        if proc.stdout:
            for _ in proc.stdout:
                pass
    except (OSError, ValueError):  # closed by a reader thread that was still running
        pass
    proc.wait()
