"""Sample answers while training: which records, when, what is written, and that they never stop a run."""

from __future__ import annotations

import json

from engine.runs import read_samples
from tests.engine.test_train import make_cfg, train


def test_held_out_records_are_answered_at_each_evaluation_and_written_down(tiny_model_dir, small_dataset, tmp_path):
    cfg = make_cfg(tiny_model_dir, small_dataset, tmp_path / "run", max_steps=4, eval_split=0.1, eval_steps=2,
                   sample_answers=3, sample_max_new_tokens=8, seq_len=256)
    result, rec, _ = train(cfg)
    assert result["status"] == "completed"
    events = [e.data for e in rec.of("samples")]
    assert [e["step"] for e in events] == [2, 4]  # the end's answers are step 4's: not made twice
    assert read_samples(tmp_path / "run") == [{**e, "time": r["time"]} for e, r in
                                              zip(events, read_samples(tmp_path / "run"), strict=True)]
    records = {i + 1: json.loads(line) for i, line in enumerate(small_dataset.read_text().splitlines())}
    # The run's own split: the held-out records are the answered ones.
    from transformers import AutoTokenizer

    from engine.data.formats import load_dataset_file
    from engine.data.split import train_eval_split
    from engine.data.tokenize import tokenize_records

    good = load_dataset_file(small_dataset, "auto").records
    rows, stats = tokenize_records(good, AutoTokenizer.from_pretrained(tiny_model_dir), "auto", 256, num_proc=1)
    _, eval_idx = train_eval_split(len(rows), 0.1, 7)
    eval_lines = {good[stats.sources[i]].line for i in eval_idx}
    for e in events:
        assert e["source"] == "eval" and len(e["samples"]) == 3
        for s in e["samples"]:
            assert s["reference"] == records[s["line"]]["output"]
            assert s["prompt"].startswith(records[s["line"]]["instruction"][:40])
            assert isinstance(s["answer"], str) and 0 < s["tokens"] <= 8
            assert s["line"] in eval_lines
    assert events[0]["samples"][0]["line"] == events[1]["samples"][0]["line"]  # the same records each time


def test_without_eval_data_training_records_are_answered_at_each_checkpoint(tiny_model_dir, small_dataset, tmp_path):
    cfg = make_cfg(tiny_model_dir, small_dataset, tmp_path / "run", max_steps=3, save_steps=2, sample_answers=1,
                   sample_max_new_tokens=4, seq_len=256)
    result, rec, _ = train(cfg)
    events = [e.data for e in rec.of("samples")]
    assert [e["step"] for e in events] == [2, 3] and {e["source"] for e in events} == {"train"}
    assert events[0]["samples"][0]["line"] == 1


def test_sample_answers_zero_makes_none(tiny_model_dir, small_dataset, tmp_path):
    cfg = make_cfg(tiny_model_dir, small_dataset, tmp_path / "run", max_steps=2, eval_split=0.1, eval_steps=1,
                   sample_answers=0)
    _, rec, _ = train(cfg)
    assert not rec.of("samples") and not (tmp_path / "run" / "samples.jsonl").exists()


def test_a_failing_generation_turns_samples_off_with_a_warning_and_the_run_goes_on(tiny_model_dir, small_dataset,
                                                                                   tmp_path, monkeypatch):
    from engine.samples import Sampler

    calls = []

    def broken(self, model, step, autocast=None):
        calls.append(step)
        raise RuntimeError("no room for the KV cache")

    monkeypatch.setattr(Sampler, "answer", broken)
    cfg = make_cfg(tiny_model_dir, small_dataset, tmp_path / "run", max_steps=4, eval_split=0.1, eval_steps=1,
                   seq_len=256)
    result, rec, _ = train(cfg)
    assert result["status"] == "completed" and calls == [1]
    (warning,) = [e.data for e in rec.of("warning") if e.data.get("kind") == "samples"]
    assert "no room for the KV cache" in warning["message"] and warning["fix"] == {"sample_answers": 0}


def test_going_back_to_a_checkpoint_cuts_the_later_answers(tiny_model_dir, small_dataset, tmp_path):
    from engine.rewind import rewind

    cfg = make_cfg(tiny_model_dir, small_dataset, tmp_path / "run", max_steps=4, save_steps=2, sample_answers=1,
                   sample_max_new_tokens=2, seq_len=256)
    train(cfg)
    assert [r["step"] for r in read_samples(tmp_path / "run")] == [2, 4]
    rewind(tmp_path / "run", 2)
    assert [r["step"] for r in read_samples(tmp_path / "run")] == [2]


def test_runs_show_prints_the_last_answers(tiny_model_dir, small_dataset, tmp_path, capsys):
    from types import SimpleNamespace

    from engine.runs import cli_show, run_details

    cfg = make_cfg(tiny_model_dir, small_dataset, tmp_path / "run", max_steps=2, sample_answers=1,
                   sample_max_new_tokens=4, seq_len=256)
    train(cfg)
    details = run_details(tmp_path / "run")
    assert details["samples"]["step"] == 2 and details["samples"]["source"] == "train"
    cli_show(SimpleNamespace(run=str(tmp_path / "run"), json=False))
    out = capsys.readouterr().out
    assert "answers at step 2 (training records, greedy):" in out
    assert f"reference: {details['samples']['samples'][0]['reference'][:40]}" in out
