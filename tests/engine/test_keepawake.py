"""Keeping the computer awake while training: the lock is held, refused, and let go.

``systemd-inhibit`` is replaced on PATH by a script that records its arguments and its PID,
then runs the command it was given, as the real tool does once logind grants the lock. What
runs under it (the PID watcher) is the real one.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.keepawake import keep_awake

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the systemd-inhibit path is Linux's")

FAKE_GRANTS = """#!/bin/sh
echo "$$" > "{log}.pid"
for a in "$@"; do echo "$a" >> "{log}"; done
while [ "${{1#--}}" != "$1" ]; do shift; done
exec "$@"
"""
FAKE_REFUSES = """#!/bin/sh
echo "Failed to inhibit: {message}" >&2
exit 1
"""


def fake_tool(folder: Path, monkeypatch, body: str, **fmt) -> Path:
    folder.mkdir(exist_ok=True)
    tool = folder / "systemd-inhibit"
    tool.write_text(body.format(**fmt))
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    return tool


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rpartition(")")[2].split()[0] != "Z"


def wait_until(predicate, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def test_lock_is_asked_for_sleep_and_released(tmp_path, monkeypatch):
    log = tmp_path / "calls"
    fake_tool(tmp_path / "bin", monkeypatch, FAKE_GRANTS, log=log)
    awake = keep_awake("training lora run r1")
    assert awake.held and awake.how == "systemd-inhibit"
    args = log.read_text().splitlines()
    assert {"--what=sleep:idle", "--mode=block", "--who=Finetune Studio", "--why=training lora run r1"} <= set(args)
    assert args[-1] == str(os.getpid())  # the watcher is bound to this process
    holder = awake.pid
    assert alive(holder)
    awake.release()
    assert not alive(holder) and not awake.held
    awake.release()  # twice is harmless


def test_lock_ends_with_the_process_it_watches_even_after_kill_9(tmp_path, monkeypatch):
    log = tmp_path / "calls"
    fake_tool(tmp_path / "bin", monkeypatch, FAKE_GRANTS, log=log)
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        awake = keep_awake("training", pid=worker.pid)
        assert awake.held
        holder = awake.pid
        time.sleep(1.5)
        assert alive(holder)  # held while the worker lives
        worker.kill()
        worker.wait()
        assert wait_until(lambda: awake._proc.poll() is not None), "the lock outlived the killed worker"
    finally:
        worker.kill()
        awake.release()


def test_refusal_is_reported_with_the_tools_words(tmp_path, monkeypatch):
    fake_tool(tmp_path / "bin", monkeypatch, FAKE_REFUSES, message="Access denied")
    awake = keep_awake("training")
    assert not awake.held and awake.needed
    assert "Access denied" in awake.problem and "systemd-inhibit" in awake.problem


def test_no_session_manager_is_not_worth_a_warning(tmp_path, monkeypatch):
    fake_tool(tmp_path / "bin", monkeypatch, '#!/bin/sh\necho "Failed to connect to bus: No such file or directory" >&2\nexit 1\n')
    awake = keep_awake("training")
    assert not awake.held and not awake.needed and "Failed to connect to bus" in awake.problem


def test_missing_tool(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    awake = keep_awake("training")
    assert not awake.held and "systemd-inhibit was not found" in awake.problem


def test_training_holds_the_lock_for_the_run_and_lets_go(tmp_path, monkeypatch, tiny_model_dir, small_dataset):
    from tests.engine.test_train import make_cfg, train

    log = tmp_path / "calls"
    fake_tool(tmp_path / "bin", monkeypatch, FAKE_GRANTS, log=log)
    seen: list[bool] = []

    def check(step: int):
        if step == 2:
            seen.append(alive(int(Path(f"{log}.pid").read_text())))

    result, rec, _ = train(make_cfg(tiny_model_dir, small_dataset, tmp_path / "run"), fault_injector=check)
    assert result["status"] == "completed"
    assert rec.of("started")[0].data["keep_awake"] == {"held": True, "how": "systemd-inhibit", "problem": "",
                                                       "needed": True}
    assert seen == [True]  # held mid-training
    assert f"--why=training lora run {Path(result['output_dir']).name}" in log.read_text().splitlines()
    assert not alive(int(Path(f"{log}.pid").read_text()))  # and let go at the end


def test_refused_lock_warns_and_training_goes_on(tmp_path, monkeypatch, tiny_model_dir, small_dataset):
    from tests.engine.test_train import make_cfg, train

    fake_tool(tmp_path / "bin", monkeypatch, FAKE_REFUSES, message="Access denied")
    result, rec, _ = train(make_cfg(tiny_model_dir, small_dataset, tmp_path / "run"))
    assert result["status"] == "completed"
    warnings = [e.data for e in rec.of("warning") if e.data.get("kind") == "keep_awake"]
    assert len(warnings) == 1 and "Access denied" in warnings[0]["message"]
    assert "may go to sleep" in warnings[0]["message"]


def test_keep_awake_off_asks_nothing(tmp_path, monkeypatch, tiny_model_dir, small_dataset):
    from tests.engine.test_train import make_cfg, train

    log = tmp_path / "calls"
    fake_tool(tmp_path / "bin", monkeypatch, FAKE_GRANTS, log=log)
    result, rec, _ = train(make_cfg(tiny_model_dir, small_dataset, tmp_path / "run", keep_awake=False))
    assert result["status"] == "completed" and not log.exists()
    assert rec.of("started")[0].data["keep_awake"] is None


def test_macos_asks_caffeinate_to_wait_for_the_worker(tmp_path, monkeypatch):
    log = tmp_path / "calls"
    folder = tmp_path / "bin"
    folder.mkdir()
    tool = folder / "caffeinate"
    tool.write_text(f'#!/bin/sh\necho "$$" > "{log}.pid"\nfor a in "$@"; do echo "$a" >> "{log}"; done\nexec sleep 60\n')
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    awake = keep_awake("training", pid=4242, platform="darwin")
    try:
        assert awake.held and awake.how == "caffeinate"
        assert log.read_text().splitlines() == ["-i", "-s", "-w", "4242"]
        holder = awake.pid
    finally:
        awake.release()
    assert not alive(holder)


def test_windows_without_its_api_says_so():
    awake = keep_awake("training", platform="win32")  # no ctypes.windll on this machine
    assert not awake.held and "SetThreadExecutionState is not available" in awake.problem
