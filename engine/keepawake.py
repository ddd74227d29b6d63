"""Keep the computer awake while a run trains.

A workstation that suspends after half an hour idle freezes a six-hour run: the GPU process
stops mid-step and the user comes back to a run that did nothing all night. The worker holds
the operating system's own "don't sleep" lock for as long as it trains, and nothing more: the
screen may still blank and lock.

- Linux: a logind block inhibitor for ``sleep:idle``, held by ``systemd-inhibit``.
- macOS: ``caffeinate -i -s``.
- Windows: ``SetThreadExecutionState(ES_CONTINUOUS | ES_SYSTEM_REQUIRED)`` on the training
  thread.

On Linux and macOS the lock is held by a small child process that watches the worker's PID,
so it ends within seconds of the worker ending, even after a ``kill -9``; a crashed worker
never leaves the machine unable to sleep. Where the lock can't be had, training goes on and
the reason is reported (``Awake.problem``).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

WHO = "Finetune Studio"

# Waits for a PID to end (a zombie counts as ended); the lock's holder runs it under the lock.
# It is runs.pid_alive's logic as a standalone script: the child must not need the engine's
# imports (or its PYTHONPATH) to do its one job.
_WAIT_FOR_PID = """
import os, sys, time
pid = int(sys.argv[1])
def alive():
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return True
while alive():
    time.sleep(1)
"""

# systemd-inhibit's messages when there is no logind to ask: a container or a machine without
# a session manager, where nothing would suspend the machine on idle either.
_NO_SESSION_MANAGER = ("Failed to connect to bus", "org.freedesktop.login1 was not provided")

ES_CONTINUOUS = 0x80000000
ES_SYSTEM_REQUIRED = 0x00000001


@dataclass
class Awake:
    """What was done to keep the computer awake; ``release()`` undoes it (idempotent).

    ``held``: the lock is held. ``how``: the mechanism. ``problem``: why not, when not held.
    ``needed``: False when there is nothing here that would put the machine to sleep (no
    session manager), so not holding the lock is not worth a warning.
    """

    held: bool
    how: str = ""
    problem: str = ""
    needed: bool = True
    _proc: subprocess.Popen | None = field(default=None, repr=False)
    _windows: bool = field(default=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"held": self.held, "how": self.how, "problem": self.problem, "needed": self.needed}

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def release(self) -> None:
        if self._proc is not None:
            proc, self._proc = self._proc, None
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)  # the tool and the PID watcher under it
                except (ProcessLookupError, PermissionError, AttributeError):
                    proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if proc.stderr is not None:
                proc.stderr.close()
        if self._windows:
            self._windows = False
            import ctypes

            ctypes.windll.kernel32.SetThreadExecutionState(ES_CONTINUOUS)  # type: ignore[attr-defined]
        self.held = False

    def __enter__(self) -> Awake:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def keep_awake(why: str, *, pid: int | None = None, platform: str | None = None,
               settle_s: float = 0.5) -> Awake:
    """Ask the OS not to suspend while process ``pid`` (default: this one) runs.

    Args:
        why: shown by the OS to whoever asks what blocks sleep (``systemd-inhibit --list``,
            ``pmset -g assertions``).
        pid: the process whose life bounds the lock.
        platform: ``sys.platform`` by default (tests pass another).
        settle_s: how long to wait for the tool to refuse before calling the lock held.
    """
    platform = platform or sys.platform
    pid = os.getpid() if pid is None else pid
    if platform.startswith("win"):
        return _windows()
    if platform == "darwin":
        tool = shutil.which("caffeinate")
        if tool is None:
            return Awake(False, problem="caffeinate was not found on PATH")
        return _hold([tool, "-i", "-s", "-w", str(pid)], "caffeinate", settle_s)
    tool = shutil.which("systemd-inhibit")
    if tool is None:
        return Awake(False, problem="systemd-inhibit was not found on PATH (no systemd here)", needed=False)
    command = [tool, "--what=sleep:idle", f"--who={WHO}", f"--why={why}", "--mode=block",
               sys.executable, "-c", _WAIT_FOR_PID, str(pid)]
    return _hold(command, "systemd-inhibit", settle_s)


def _hold(command: list[str], how: str, settle_s: float) -> Awake:
    try:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, start_new_session=True)
    except OSError as e:
        return Awake(False, problem=f"{how} could not start: {e}")
    try:
        code = proc.wait(timeout=settle_s)
    except subprocess.TimeoutExpired:
        return Awake(True, how=how, _proc=proc)
    message = (proc.stderr.read().decode("utf-8", "replace").strip() if proc.stderr else "") or f"exit code {code}"
    if proc.stderr is not None:
        proc.stderr.close()
    needed = not any(s in message for s in _NO_SESSION_MANAGER)
    return Awake(False, problem=f"{how} refused: {message.splitlines()[-1]}", needed=needed)


def _windows() -> Awake:
    try:
        import ctypes

        ok = ctypes.windll.kernel32.SetThreadExecutionState(ES_CONTINUOUS | ES_SYSTEM_REQUIRED)  # type: ignore[attr-defined]
    except (AttributeError, OSError) as e:
        return Awake(False, problem=f"SetThreadExecutionState is not available: {e}")
    if not ok:
        return Awake(False, problem="SetThreadExecutionState failed")
    return Awake(True, how="SetThreadExecutionState", _windows=True)
