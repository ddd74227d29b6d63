"""The GPU's load during a run (engine.nvsmi.Sampler): recorded in metrics.jsonl and runs show, and
the advice when the GPU keeps waiting. A stand-in nvidia-smi (tests/conftest.py) reports the load;
the training itself is real, on the CPU."""

from __future__ import annotations

import io
import re
import time
from pathlib import Path

import pytest

from engine import nvsmi
from engine.config import RunConfig
from engine.runs import read_metrics
from tests.engine.test_train import Recorder, make_cfg

UUID = "GPU-aaaabbbb-cccc-dddd-eeee-ffff00001111"


def _gpu(util: int) -> str:
    return f"0, {UUID}, NVIDIA GeForce RTX 4090, 24564, 6000, {util}, 71, 280.00, 450.00\n"


def test_the_sampler_averages_each_interval(smi_on_path):
    smi = smi_on_path(_gpu(40))
    sampler = nvsmi.Sampler(nvsmi.query()[0], interval_s=0.02).start()
    try:
        t0 = time.time()
        deadline = t0 + 10
        while len(sampler.samples) < 3 and time.time() < deadline:
            time.sleep(0.02)
        (smi.parent / "gpus.txt").write_text(_gpu(90))
        t1 = time.time()
        n = len(sampler.samples)
        while len(sampler.samples) < n + 3 and time.time() < deadline:
            time.sleep(0.02)
    finally:
        sampler.stop()
    assert sampler.window(t0 - 1, t1 - 0.005)["gpu_util_pct"] == 40.0  # (a sample may straddle t1)
    late = sampler.window(t1 + 0.05)
    assert late == {"gpu_util_pct": 90.0, "gpu_temp_c": 71, "gpu_power_w": 280.0}
    assert 40.0 <= sampler.mean_util() <= 90.0
    assert sampler.window(time.time() + 60) == {}
    n = len(sampler.samples)
    time.sleep(0.1)
    assert len(sampler.samples) == n  # stopped


def _run(tmp_path, tiny_model_dir, small_dataset, monkeypatch, util: int, **changes):
    from engine import train as train_module

    gpus = nvsmi.query()
    # A CPU run whose "GPU" is the stand-in nvidia-smi's: the run's own gate would say none.
    monkeypatch.setattr(train_module, "_run_gpu", lambda cfg: gpus[0])
    monkeypatch.setattr(train_module, "GPU_SAMPLE_S", 0.02)
    monkeypatch.setattr(train_module, "IDLE_WINDOWS", 3)
    monkeypatch.setattr(train_module, "IDLE_MIN_S", 0.0)
    cfg = make_cfg(tiny_model_dir, small_dataset, tmp_path / f"run-{util}",
                   **{"max_steps": 8, "batch_size": 2, "gradient_accumulation_steps": 2, "eval_split": 0.0, "seed": 3,
                      **changes})
    rec = Recorder()
    # Each micro-batch takes a little while, so every logging interval holds a few samples.
    result = train_module.run_training(cfg, rec, fault_injector=lambda step: time.sleep(0.05))
    return cfg, result, rec


def test_a_run_records_the_gpus_load_and_says_when_it_keeps_waiting(tmp_path, tiny_model_dir, small_dataset,
                                                                    monkeypatch, smi_on_path, capsys):
    from engine.cli import main

    smi_on_path(_gpu(20))
    cfg, result, rec = _run(tmp_path, tiny_model_dir, small_dataset, monkeypatch, 20)
    assert result["status"] == "completed"
    rows = [r for r in read_metrics(Path(cfg.output_dir)) if "loss" in r]
    assert len(rows) == 8
    assert all(r["gpu_util_pct"] == 20.0 and r["gpu_temp_c"] == 71 and r["gpu_power_w"] == 280.0
               for r in rows[1:]), rows
    assert result["gpu_util_mean_pct"] == 20.0
    idle = [e for e in rec.events if e.type == "warning" and e.data.get("kind") == "gpu_idle"]
    assert len(idle) == 1  # once per run
    w = idle[0].data
    assert w["fix"] == {"batch_size": 4, "gradient_accumulation_steps": 1}
    assert "busy only 20% of the time" in w["message"] and "micro-batch 4 x accumulation 1" in w["hint"]
    assert main(["runs", "show", cfg.output_dir]) == 0
    out = capsys.readouterr().out
    assert re.search(r"GPU load\s+busy 20% of the time on average \(lowest logging interval 20%\), up to 71 °C, "
                     r"280 W on average", out), out


def test_a_busy_gpu_gets_no_advice(tmp_path, tiny_model_dir, small_dataset,
                                                              monkeypatch, smi_on_path):
    smi_on_path(_gpu(95))
    _, result, rec = _run(tmp_path, tiny_model_dir, small_dataset, monkeypatch, 95)
    assert result["gpu_util_mean_pct"] == 95.0
    assert not [e for e in rec.events if e.data.get("kind") == "gpu_idle"]


@pytest.mark.parametrize("accum", [1, 3])
def test_without_an_even_accumulation_the_advice_has_no_one_click_fix(tmp_path, tiny_model_dir, small_dataset,
                                                                      monkeypatch, smi_on_path, accum):
    smi_on_path(_gpu(10))
    _, _, rec = _run(tmp_path, tiny_model_dir, small_dataset, monkeypatch, 10, gradient_accumulation_steps=accum)
    (w,) = [e.data for e in rec.events if e.data.get("kind") == "gpu_idle"]
    assert w["fix"] == {}
    assert "A larger micro-batch gives the GPU more at once" in w["hint"]


def test_a_cpu_run_follows_no_gpu(tmp_path):
    from engine.train import _run_gpu

    assert _run_gpu(RunConfig.from_dict({"model": "demo", "device": "cpu"})) is None


def test_intervals_with_an_evaluation_dont_count(tmp_path, tiny_model_dir, small_dataset, monkeypatch, smi_on_path):
    """An evaluation after every step: each logging interval holds one, so the GPU's pauses there are
    the evaluation's, not the training's; no advice."""
    smi_on_path(_gpu(10))
    _, result, rec = _run(tmp_path, tiny_model_dir, small_dataset, monkeypatch, 10, eval_split=0.25, eval_steps=1)
    assert result["status"] == "completed" and result["best_eval_loss"] is not None
    assert not [e for e in rec.events if e.data.get("kind") == "gpu_idle"]


def test_the_train_commands_progress_line_says_how_busy_the_gpu_is():
    from engine.train import _print_event

    out = io.StringIO()
    row = {"step": 40, "max_steps": 100, "loss": 1.5, "lr": 2e-4, "tokens_per_s": 5000.0, "eta_s": 60.0}
    _print_event("step", {**row, "gpu_util_pct": 87.4}, out)
    _print_event("step", row, out)
    assert out.getvalue().splitlines() == ["step    40/100 loss 1.5000 lr 2.00e-04 5000 tok/s GPU 87% busy eta 60s",
                                           "step    40/100 loss 1.5000 lr 2.00e-04 5000 tok/s eta 60s"]
