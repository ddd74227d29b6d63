"""The worker process through its plain-Python client: commands, detach/attach, kill -9, resume.

These start real ``python -m engine.worker`` processes on the tiny model, so each test
pays one interpreter start (a few seconds); the behaviours are grouped to keep that low.
"""

from __future__ import annotations

import io
import json
import os
import signal
import time
from pathlib import Path

import pytest
import torch

from engine.client import WorkerClient
from engine.config import RunConfig
from engine.runs import checkpoint_step, last_checkpoint, read_metrics, read_summary

TIMEOUT_S = 180


def make_cfg(model_dir: Path, dataset: Path, out: Path, **changes) -> RunConfig:
    base = dict(model=str(model_dir), dataset=str(dataset), method="lora", load_in="fp32", mixed_precision="no",
                device="cpu", seq_len=64, batch_size=4, learning_rate=1e-2, warmup_ratio=0.0, lora_dropout=0.1,
                logging_steps=1, output_dir=str(out), seed=3, lr_scheduler="linear")
    return RunConfig.from_dict({**base, **changes})


def events_until(client: WorkerClient, stop_when, deadline: float):
    """Yield the client's events until ``stop_when(event)`` is true (that event included)."""
    for event in client.events():
        yield event
        if stop_when(event):
            return
        assert time.time() < deadline, "worker too slow"


def test_save_continues_detach_keeps_training_attach_and_stop_file(tiny_model_dir, small_dataset, tmp_path):
    out = tmp_path / "run"
    client = WorkerClient.start(make_cfg(tiny_model_dir, small_dataset, out, max_steps=2000, save_steps=0,
                                         save_total_limit=0))
    deadline = time.time() + TIMEOUT_S
    try:
        seen = []
        for event in events_until(client, lambda e: e.type == "checkpoint" or e.type == "finished", deadline):
            seen.append(event)
            if event.type == "step" and event["step"] == 2:
                assert client.save()
        assert seen[-1].type == "checkpoint", seen[-1].data
        saved_at = seen[-1]["step"]
        assert saved_at >= 2 and (out / f"checkpoint-{saved_at}" / "trainer_state.json").exists()
        # Training goes on after a save.
        next_step = next(e for e in events_until(client, lambda e: e.type == "step", deadline))
        assert next_step.type == "step" and next_step["step"] > saved_at

        # The GUI goes away: stdin and stdout close. The worker keeps training.
        pid = client.pid
        client.detach()
        rows_then = len(read_metrics(out))
        time.sleep(3)
        assert len(read_metrics(out)) > rows_then
        assert read_summary(out)["status"] == "running"

        # A new GUI attaches: it replays events.jsonl, then follows it, and stops with a STOP file.
        attached = WorkerClient.attach(out)
        assert attached.pid == pid and attached.is_running()
        replayed, sent = [], False
        for event in attached.events(poll_s=0.05):
            replayed.append(event)
            if event.type == "step" and event["step"] > next_step["step"] + 2 and not sent:
                assert attached.stop()  # writes out/STOP: this client doesn't own the worker's stdin
                sent = True
            assert time.time() < deadline
        assert replayed[0].type == "started"
        assert any(e.type == "checkpoint" and e["step"] == saved_at for e in replayed)
        final = replayed[-1]
        assert final.type == "finished" and final["status"] == "stopped"
        stopped_at = final["step"]
        assert (out / f"checkpoint-{stopped_at}" / "trainer_state.json").exists()  # stop saves a checkpoint
        assert stopped_at < 2000 and (out / "final" / "adapter_model.safetensors").exists()
        assert read_summary(out)["status"] == "stopped" and not (out / "worker.pid").exists()
        steps = [r["step"] for r in read_metrics(out) if "loss" in r]
        assert steps == list(range(1, stopped_at + 1))
    finally:
        if client.proc is not None:
            client.kill()
        _kill_if_alive(out)


def _kill_if_alive(out: Path) -> None:
    try:
        pid = int((out / "worker.pid").read_text())
    except (OSError, ValueError):
        return
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def test_stop_command_over_stdin_saves_and_reports_stopped(tiny_model_dir, small_dataset, tmp_path):
    out = tmp_path / "run"
    client = WorkerClient.start(make_cfg(tiny_model_dir, small_dataset, out, max_steps=2000, save_steps=0))
    deadline = time.time() + TIMEOUT_S
    try:
        events = []
        for event in events_until(client, lambda e: e.type == "finished", deadline):
            events.append(event)
            if event.type == "step" and event["step"] == 3:
                assert client.stop()
        assert events[-1]["status"] == "stopped"
        stopped_at = events[-1]["step"]
        assert 3 <= stopped_at < 2000
        assert [e["step"] for e in events if e.type == "checkpoint"] == [stopped_at]
        assert client.wait(30) == 0
        assert (out / "final" / "adapter_config.json").exists()
    finally:
        client.kill()


def test_kill9_then_resume_continues_the_same_loss_curve(tiny_model_dir, small_dataset, tmp_path):
    """kill -9 after a checkpoint; ``finetune-studio train --resume`` continues where it saved.

    The resumed steps' losses equal those of an uninterrupted run with the same seed: the
    checkpoint restores weights, optimizer, scheduler, RNG (LoRA dropout is on) and the data
    position (Trainer skips the batches already seen in the epoch).
    """
    out = tmp_path / "run"
    cfg = make_cfg(tiny_model_dir, small_dataset, out, max_steps=10, save_steps=3)
    client = WorkerClient.start(cfg)
    deadline = time.time() + TIMEOUT_S
    checkpointed = False
    try:
        for event in events_until(client, lambda e: e.type == "finished", deadline):
            checkpointed = checkpointed or event.type == "checkpoint"
            if checkpointed and event.type == "step" and event["step"] >= 5:
                os.kill(client.pid, signal.SIGKILL)
                break
        crashed = list(client.events())[-1]  # the pipe closed without a finished event
        assert crashed.type == "finished" and crashed["status"] == "crashed"
        assert crashed["returncode"] == -signal.SIGKILL and "resume" in crashed["message"]
    finally:
        client.kill()
    assert read_summary(out)["status"] == "running"  # as the kill left it: a resumable run
    ckpt = last_checkpoint(out)
    assert ckpt is not None
    lost = [r["step"] for r in read_metrics(out) if r["step"] > checkpoint_step(ckpt)]
    assert lost, "the kill should have happened after the checkpoint"

    from engine.cli import main

    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        assert main(["train", str(out / "run.yaml"), "--resume"]) == 0
    finally:
        signal.signal(signal.SIGINT, handlers[0])
        signal.signal(signal.SIGTERM, handlers[1])

    rows = [r for r in read_metrics(out) if "loss" in r]
    assert [r["step"] for r in rows] == list(range(1, 11))  # appended, continuing, no duplicates
    started = [json.loads(x) for x in (out / "events.jsonl").read_text().splitlines()
               if '"event": "started"' in x]
    assert len(started) == 2 and started[1]["resumed"] and started[1]["resume_step"] == checkpoint_step(ckpt)
    assert read_summary(out)["status"] == "completed" and read_summary(out)["step"] == 10
    assert (out / "final" / "adapter_model.safetensors").exists()

    # The same run without the kill: every step's loss matches.
    from engine.events import EventWriter
    from engine.train import run_training

    ref_dir = tmp_path / "reference"
    run_training(cfg.replace(output_dir=str(ref_dir)), EventWriter(io.StringIO()))
    ref = [r for r in read_metrics(ref_dir) if "loss" in r]
    torch.testing.assert_close(torch.tensor([r["loss"] for r in rows]), torch.tensor([r["loss"] for r in ref]),
                               rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(torch.tensor([r["lr"] for r in rows]), torch.tensor([r["lr"] for r in ref]))


def test_invalid_combination_fails_before_loading_with_an_error_event(tiny_model_dir, small_dataset, tmp_path):
    out = tmp_path / "run"
    client = WorkerClient.start(make_cfg(tiny_model_dir, small_dataset, out, load_in="int8", device="auto",
                                         max_steps=2))
    events = list(client.events())
    assert client.wait(60) != 0
    assert [e.type for e in events] == ["error", "finished"]
    error = events[0]
    assert error["kind"] == "config" and error["key"] == "load_in"
    assert "CUDA" in error["message"] and error["errors"][0]["fix"]
    assert events[1]["status"] == "failed"
    # Refused before any model loading, and before run.yaml: the folder the client made for the run,
    # its worker.log empty (no "Loading weights"), is removed, so no empty run is left in the history.
    assert not out.exists()


@pytest.mark.parametrize("bad,expected", [("method: nonsense\n", "'method' must be one of"),
                                          ("max_steps: [\n", "bad.yaml:2:1: invalid YAML")])
def test_unreadable_config_reports_an_error_event(bad, expected, tmp_path):
    import subprocess
    import sys

    cfg = tmp_path / "bad.yaml"
    cfg.write_text(bad)
    proc = subprocess.run([sys.executable, "-m", "engine.worker", str(cfg)], capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 2
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [e["event"] for e in events] == ["error", "finished"]
    assert events[0]["kind"] == "config" and expected in events[0]["message"]


def test_a_probe_through_the_client_runs_in_its_own_folder(tiny_model_dir, small_dataset, tmp_path):
    out = tmp_path / "my-run"  # the config's own folder: a probe must not touch it
    client = WorkerClient.start(make_cfg(tiny_model_dir, small_dataset, out, max_steps=300), probe_steps=5)
    deadline = time.time() + TIMEOUT_S
    try:
        events = list(events_until(client, lambda e: e.type == "finished", deadline))
        assert client.wait(30) == 0
    finally:
        client.kill()
    assert not out.exists()
    probe_dir = client.output_dir
    assert probe_dir.name.endswith("-lora-probe") and probe_dir.parent.name == "runs"
    started = next(e for e in events if e.type == "started")
    assert started["probe"] is True and started["output_dir"] == str(probe_dir)
    finished = events[-1]
    assert finished["status"] == "completed" and finished["step"] == 5
    assert finished["probe"]["full_steps"] == 300 and finished["probe"]["seconds_per_step"] > 0
    assert not any(p.name.startswith(("checkpoint-", "final")) for p in probe_dir.iterdir())


def test_a_run_can_be_followed_the_moment_it_starts(tmp_path, tiny_model_dir, small_dataset):
    """Attached before the worker has loaded anything (the GUI following a queued run), the
    run reads as running and its events all arrive; a worker whose setup fails leaves no pid."""
    client = WorkerClient.start(make_cfg(tiny_model_dir, small_dataset, tmp_path / "run", max_steps=2))
    follower = WorkerClient.attach(tmp_path / "run")
    assert follower.is_running()  # before the worker wrote anything itself
    events = list(follower.events(poll_s=0.05))
    assert [e.type for e in events if e.type in ("started", "finished")] == ["started", "finished"]
    assert events[-1]["status"] == "completed"
    client.wait(TIMEOUT_S)
    assert not (tmp_path / "run" / "worker.pid").exists()

    missing = tmp_path / "gone.jsonl"
    failing = WorkerClient.start(make_cfg(tiny_model_dir, missing, tmp_path / "failed", max_steps=2))
    finished = [e for e in failing.events() if e.type == "finished"]
    failing.wait(TIMEOUT_S)
    assert finished[0]["status"] == "failed" and not (tmp_path / "failed" / "worker.pid").exists()
