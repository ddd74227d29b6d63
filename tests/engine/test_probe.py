"""Probe runs: a few real steps that save nothing and report time per step, duration and memory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from engine.config import RunConfig
from engine.probe import format_probe, full_run_steps, probe_config, probe_report, seconds_per_step
from engine.runs import read_summary
from tests.engine.test_train import make_cfg, train


def probe(cfg, steps: int = 6, **kw):
    return train(probe_config(cfg, steps), probe_of=cfg, **kw)


def test_a_probe_trains_saves_nothing_and_projects_the_full_run(tmp_path, tiny_model_dir, small_dataset):
    full = make_cfg(tiny_model_dir, small_dataset, tmp_path / "mine", max_steps=-1, num_epochs=3, batch_size=4,
                    gradient_accumulation_steps=2, eval_split=0.25, save_steps=1, early_stopping_patience=2)
    result, rec, _ = probe(full)
    assert result["status"] == "completed" and result["step"] == 6
    run_dir = Path(result["output_dir"])
    assert run_dir.parent.name == "runs" and run_dir.name.endswith("-lora-probe")  # never the user's output_dir
    assert not (tmp_path / "mine").exists()
    assert sorted(p.name for p in run_dir.iterdir()) == ["dataset.json", "events.jsonl", "metrics.jsonl",
                                                         "run.yaml", "summary.json"]
    assert rec.of("started")[0].data["probe"] is True
    assert read_summary(run_dir)["probe"] == rec.of("finished")[0].data["probe"]  # the report is kept
    assert not rec.of("eval") and not rec.of("checkpoint")

    report = rec.of("finished")[0].data["probe"]
    assert report["steps"] == 6 and report["seconds_per_step"] > 0 and report["tokens_per_s"] > 0
    # The full run's steps on its own split: 3 epochs of ceil(train / 4) // 2 steps.
    records = json.loads((run_dir / "dataset.json").read_text())["train"]
    from engine.data.split import train_eval_split

    train_n = len(train_eval_split(records, 0.25, full.seed)[0])
    assert report["full_steps"] == 3 * ((train_n + 3) // 4 // 2)
    assert report["projected_train_s"] == pytest.approx(report["full_steps"] * report["seconds_per_step"])
    assert report["peak_gpu_bytes"] is None and report["changed"] == {}
    lines = format_probe(report)
    assert lines[0].startswith("time per step: ") and f"full run: {report['full_steps']} steps" in lines[1]
    assert lines[-1] == "GPU memory: not measured (the probe trained on the CPU)"


@pytest.mark.parametrize(("projected", "said"), [(0.2, "under a second"), (0.6, "about 1 s"), (75, "about 75 s"),
                                                  (2280, "about 38 min")])
def test_the_projected_duration_never_reads_about_0_s(projected, said):
    """A tiny model's 20 steps read "full run: 20 steps, about 0 s of training"."""
    report = {"seconds_per_step": projected / 20, "tokens_per_s": 1000.0, "projected_train_s": projected,
              "full_steps": 20}
    assert format_probe(report)[1] == (f"full run: 20 steps, {said} of training (evaluations and checkpoints come "
                                       "on top)")


def test_full_run_steps_is_what_trainer_counts(tmp_path, tiny_model_dir, small_dataset):
    cfg = make_cfg(tiny_model_dir, small_dataset, tmp_path / "run", max_steps=-1, num_epochs=1.5, batch_size=5,
                   gradient_accumulation_steps=2, eval_split=0.1)
    result, rec, _ = train(cfg)
    trained = rec.of("step")[-1].data["max_steps"]
    records = json.loads((Path(result["output_dir"]) / "dataset.json").read_text())
    assert full_run_steps(cfg, records["train"]) == trained
    assert full_run_steps(cfg.replace(max_steps=7), None) == 7


def test_out_of_memory_in_a_probe_reports_the_batch_that_fits(tmp_path, tiny_model_dir, small_dataset):
    full = make_cfg(tiny_model_dir, small_dataset, tmp_path / "run", batch_size=4, max_steps=40)
    hits = []

    def oom_once(step: int):
        if step == 2 and not hits:
            hits.append(step)
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    result, rec, _ = probe(full, steps=6, fault_injector=oom_once)
    report = rec.of("finished")[0].data["probe"]
    assert result["status"] == "completed" and report["oom_retries"] == 1
    assert report["changed"] == {"batch_size": 2, "gradient_accumulation_steps": 2}
    assert report["full_steps"] == 40  # max_steps: optimizer steps don't change with the split batch
    assert format_probe(report)[0].startswith("out of memory at the config's micro-batch: it fits with "
                                              "batch_size 2, gradient_accumulation_steps 2 (1 halving)")
    assert not any(p.name.startswith("checkpoint-") for p in Path(result["output_dir"]).iterdir())


def test_stopping_a_probe_saves_no_checkpoint(tmp_path, tiny_model_dir, small_dataset):
    from engine.train import Commands, run_training
    from tests.engine.test_train import Recorder

    commands = Commands()
    full = make_cfg(tiny_model_dir, small_dataset, tmp_path / "run", max_steps=40)
    rec = Recorder()
    result = run_training(probe_config(full, 8), rec, commands=commands, probe_of=full,
                          fault_injector=lambda step: commands.put("stop") if step == 4 else None)
    assert result["status"] == "stopped" and result["step"] < 8
    assert not any(p.name.startswith(("checkpoint-", "final")) for p in Path(result["output_dir"]).iterdir())
    assert result["probe"]["seconds_per_step"] is not None


def test_report_puts_the_measured_peak_beside_the_estimate(tiny_model_dir, small_dataset, tmp_path):
    from engine.memory import estimate

    full = make_cfg(tiny_model_dir, small_dataset, tmp_path / "run", max_steps=100, device="auto")
    rows = [{"step": s, "loss": 1.0, "time": 100.0 + 0.5 * s + (3.0 if s == 1 else 0.0), "tokens_per_s": 1000.0}
            for s in range(1, 11)]
    gib = 2**30
    result = {"status": "completed", "step": 10, "peak_gpu_device_bytes": 3 * gib, "config": full.to_dict()}
    report = probe_report(full, result, rows, train_records=200, gpu_bytes=24 * gib, gpu_name="NVIDIA RTX 4090")
    expected = estimate(full, 24 * gib, gpu_name="NVIDIA RTX 4090").peak_bytes
    assert report["estimate_bytes"] == expected
    assert report["estimate_error"] == pytest.approx((expected - 3 * gib) / (3 * gib))
    assert report["seconds_per_step"] == pytest.approx(0.5) and report["projected_train_s"] == pytest.approx(50.0)
    line = format_probe(report)[-1]
    assert line.startswith("GPU memory: peak 3.00 GiB measured (driver) of 24 GiB on NVIDIA RTX 4090; estimate ")


def test_report_adds_the_estimate_at_the_datas_longest_record(tiny_model_dir, small_dataset, tmp_path):
    """Short records never pad a batch to seq_len: the estimate there is the config's worst case, and
    the one at the longest record is what this data reaches (the H200 check's probe read +87% at
    seq_len 512 with the demo data)."""
    from engine.memory import estimate

    full = make_cfg(tiny_model_dir, small_dataset, tmp_path / "run", max_steps=100, device="auto", seq_len=512)
    rows = [{"step": s, "loss": 1.0, "time": 100.0 + 0.5 * s} for s in range(1, 11)]
    gib = 2**30
    result = {"status": "completed", "step": 10, "peak_gpu_device_bytes": 3 * gib, "config": full.to_dict()}
    report = probe_report(full, result, rows, train_records=200, gpu_bytes=24 * gib, gpu_name="NVIDIA RTX 4090",
                          longest=100)
    at_longest = estimate(full.replace(seq_len=100), 24 * gib, gpu_name="NVIDIA RTX 4090").peak_bytes
    assert report["estimate_longest_bytes"] == at_longest < report["estimate_bytes"]
    assert report["longest_record"] == 100
    assert report["estimate_longest_error"] == pytest.approx((at_longest - 3 * gib) / (3 * gib))
    line = format_probe(report)[-1]
    assert " at seq_len 512, " in line and line.endswith("at the data's longest record (100 tokens)")
    # A record as long as seq_len, or packed rows, reach seq_len: nothing to add.
    for longest, packing in ((512, False), (100, True)):
        cfg = full.replace(packing=packing)
        report = probe_report(cfg, {**result, "config": cfg.to_dict()}, rows, train_records=200, gpu_bytes=24 * gib,
                              gpu_name="NVIDIA RTX 4090", longest=longest)
        assert report["estimate_longest_bytes"] is None and "longest record" not in format_probe(report)[-1]


def test_seconds_per_step_skips_the_warm_up_and_gaps():
    rows = [{"step": 1, "loss": 1, "time": 0.0}, {"step": 2, "loss": 1, "time": 9.0},
            {"step": 3, "loss": 1, "time": 10.0}, {"step": 4, "loss": 1, "time": 11.0},
            {"step": 5, "eval_loss": 1, "time": 30.0}, {"step": 5, "loss": 1, "time": 12.5},
            {"step": 7, "loss": 1, "time": 99.0}]
    assert seconds_per_step(rows) == pytest.approx(1.25)  # 3->4 and 4->5; not 1->2, 2->3 or 5->7
    assert seconds_per_step(rows[:3]) is None


def test_cli_probe(tmp_path, tiny_model_dir, small_dataset, capsys):
    from engine.cli import main

    cfg_path = tmp_path / "run.yaml"
    make_cfg(tiny_model_dir, small_dataset, "", max_steps=50).save(cfg_path)
    assert main(["train", str(cfg_path), "--probe", "--probe-steps", "5"]) == 0
    out = capsys.readouterr().out
    assert "probe completed: 5 steps, nothing saved" in out and "full run: 50 steps, about" in out
    assert main(["train", str(cfg_path), "--probe", "--resume"]) == 2
    assert "can't --resume" in capsys.readouterr().err
    assert main(["train", str(cfg_path), "--probe", "--probe-steps", "2"]) == 2
    err = capsys.readouterr().err
    assert "--probe-steps 2: a probe needs at least 4 steps" in err and "hint: The default, 10" in err
    # --probe-steps without --probe used to be ignored: the whole 50-step run trained
    assert main(["train", str(cfg_path), "--probe-steps", "5"]) == 2
    err = capsys.readouterr().err
    assert "--probe-steps 5 is the length of a probe" in err and "Add --probe" in err
    assert not list(tmp_path.glob("**/checkpoint-*")) and not list(tmp_path.glob("**/final"))


def test_probe_runs_are_marked_in_the_history(tmp_path, tiny_model_dir, small_dataset, capsys):
    from engine.cli import main
    from engine.runs import list_runs

    result, _, _ = probe(make_cfg(tiny_model_dir, small_dataset, tmp_path / "run", max_steps=30), steps=4)
    (info,) = list_runs()
    assert info.probe and info.to_dict()["probe"] is True
    assert main(["runs", "list"]) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[1] == "probe"
    assert main(["runs", "show", str(result["output_dir"])]) == 0
    shown = capsys.readouterr().out
    assert "probe              full run: 30 steps" in shown and "\nresume " not in shown


def test_a_probe_of_a_run_with_an_eval_file_evaluates_nothing_and_counts_every_record(tmp_path):
    full = RunConfig.from_dict({"eval_dataset": str(tmp_path / "eval.jsonl"), "early_stopping_patience": 2,
                                "eval_steps": 10, "save_steps": 10})
    probe_cfg = probe_config(full, 8)
    assert (probe_cfg.eval_dataset, probe_cfg.eval_split, probe_cfg.early_stopping_patience) == ("", 0.0, 0)
    from engine.probe import train_records_of

    assert train_records_of(full, 120) == 120  # the whole dataset trains; the eval file is apart
