"""``finetune-studio data split`` and the content hash in ``data check``: the run's split and dataset_hash."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.config import RunConfig
from engine.data import cli_check, cli_split, content_hash, export, load_dataset_file, train_eval_split
from engine.errors import DataError
from engine.train import load_training_records

REPO = Path(__file__).resolve().parents[3]
FIXTURES = Path(__file__).parent / "fixtures"


def split(path, out_dir, ratio=0.25, *, seed=3, as_json=False, force=False) -> int:
    return cli_split(argparse.Namespace(file=str(path), eval_ratio=ratio, seed=seed, out_dir=str(out_dir),
                                        format="auto", force=force, json=as_json))


def test_split_is_the_runs_split_and_hash(small_dataset, tmp_path, capsys):
    out_dir = tmp_path / "split"
    assert split(small_dataset, out_dir, 0.25, seed=3) == 0
    text = capsys.readouterr().out
    records = load_dataset_file(small_dataset).records
    train_idx, eval_idx = train_eval_split(len(records), 0.25, 3)
    train = load_dataset_file(out_dir / "small-train.jsonl")
    evals = load_dataset_file(out_dir / "small-eval.jsonl")
    assert (train.format, train.container, evals.format, evals.container) == ("alpaca", "jsonl") * 2
    assert [r.data for r in train.records] == [records[i].data for i in train_idx]
    assert [r.data for r in evals.records] == [records[i].data for i in eval_idx]
    assert (len(train.records), len(evals.records)) == (48, 16)
    # The hash printed is the dataset_hash a run on this file records.
    _, info = load_training_records(RunConfig(dataset=str(small_dataset)))
    assert f"content hash: {info['hash']}\n" in text
    assert "eval ratio 0.25, seed 3: 48 train, 16 eval" in text


def test_split_keeps_the_container_and_prints_json(small_dataset, tmp_path, capsys):
    csv = tmp_path / "data.csv"
    export(load_dataset_file(small_dataset), csv)
    assert split(csv, tmp_path / "out", 0.1, seed=0, as_json=True) == 0
    out = json.loads(capsys.readouterr().out)
    records = load_dataset_file(csv).records
    assert out["content_hash"] == content_hash(records) and out["records"] == 64 and out["seed"] == 0
    assert out["train"]["path"].endswith("data-train.csv") and out["eval"]["path"].endswith("data-eval.csv")
    assert out["train"]["records"] + out["eval"]["records"] == 64 and out["eval"]["records"] == 6
    assert load_dataset_file(out["eval"]["path"]).container == "csv"


def test_existing_outputs_need_force(small_dataset, tmp_path):
    assert split(small_dataset, tmp_path / "s") == 0
    with pytest.raises(DataError, match="already exists"):
        split(small_dataset, tmp_path / "s")
    assert split(small_dataset, tmp_path / "s", force=True) == 0


@pytest.mark.parametrize("ratio", [0.0, 1.0, -0.5, 0.7, 0.51, float("nan"), float("inf")])
def test_ratio_out_of_range(small_dataset, tmp_path, ratio):
    """Above 0.5 the eval file outgrows the train file, and a run refuses such an eval_split: the
    split that matches a run takes what a run takes."""
    with pytest.raises(DataError, match=rf"^--eval-ratio must be above 0 and at most 0\.5 \(a run's eval_split "
                       rf"holds out at most 50% of the records\), got {ratio:g}\n"):
        split(small_dataset, tmp_path / "s", ratio)
    assert not (tmp_path / "s").exists()
    assert RunConfig.field_meta()["eval_split"]["max"] == 0.5
    assert split(small_dataset, tmp_path / "s", 0.5) == 0  # the bound itself is allowed


def test_broken_records_and_single_record_are_refused(tmp_path):
    with pytest.raises(DataError, match=r"2 broken record\(s\) can't be split; the first is at line 2"):
        split(FIXTURES / "broken.jsonl", tmp_path / "s")
    one = tmp_path / "one.jsonl"
    one.write_text('{"instruction": "a", "output": "b"}\n')
    with pytest.raises(DataError, match="1 record\\(s\\) can't be split"):
        split(one, tmp_path / "s", 0.5)
    assert not (tmp_path / "s").exists() or not any((tmp_path / "s").iterdir())


@pytest.mark.parametrize("tail,words", [
    ("\n", "line 4: the list of records is not closed: ']' is missing at the end"),
    (",\n", "line 4, column 40: the file ends after a comma, without the list's closing ']': it may be cut short, "
     "and records after this one missing"),
])
def test_a_json_array_cut_short_is_refused_in_data_checks_words(tmp_path, capsys, tail, words):
    """Its records up to the cut load; split, they made an eval file short of the lost records without a word."""
    path = tmp_path / "cut.json"
    rows = [f'  {{"instruction": "q{i}", "output": "a{i}"}}' for i in range(3)]
    path.write_text("[\n" + ",\n".join(rows) + tail, encoding="utf-8")
    with pytest.raises(DataError) as err:
        split(path, tmp_path / "s", 0.34)
    assert err.value.message == (f"{path}: the file has a file-structure error, so records may be missing from it, "
                                 f"and it isn't split: {words}")
    assert "data check" in err.value.hint
    assert not (tmp_path / "s").exists()
    # The same words as data check's finding.
    assert cli_check(argparse.Namespace(file=str(path), json=False, format="auto")) == 1
    assert f"file-structure (error, 1)\n  {path}:4: {words}" in capsys.readouterr().out


def test_check_prints_the_content_hash_of_the_usable_records(capsys):
    path = FIXTURES / "broken.jsonl"
    ds = load_dataset_file(path)
    expected = content_hash(r for r in ds.records if not r.broken)
    cli_check(argparse.Namespace(file=str(path), json=False, format="auto", seq_len=None, model=None))
    assert f"Content hash: {expected} (of the 3 usable records" in capsys.readouterr().out
    cli_check(argparse.Namespace(file=str(path), json=True, format="auto", seq_len=None, model=None))
    assert json.loads(capsys.readouterr().out)["content_hash"] == expected


def test_split_runs_as_a_command(small_dataset, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "engine", "data", "split", str(small_dataset), "--eval-ratio",
                           "0.1", "--out-dir", str(tmp_path / "out")], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    seed = RunConfig.field_meta()["seed"]["default"]  # the default seed is the run config's
    _, eval_idx = train_eval_split(64, 0.1, seed)
    assert f"seed {seed}: 58 train, 6 eval" in proc.stdout
    records = load_dataset_file(small_dataset).records
    assert [r.data for r in load_dataset_file(tmp_path / "out" / "small-eval.jsonl").records] == \
        [records[i].data for i in eval_idx]


def test_split_takes_demo_as_check_preview_convert_and_a_run_config_do(tmp_path, capsys):
    """`data split demo` said "demo: no such file" where `data check demo` checks the embedded demo."""
    from engine.cli import main
    from engine.paths import demo_dataset_path

    out_dir = tmp_path / "split"
    assert main(["data", "split", "demo", "--eval-ratio", "0.1", "--out-dir", str(out_dir)]) == 0
    text = capsys.readouterr().out
    records = load_dataset_file(demo_dataset_path()).records
    train_idx, eval_idx = train_eval_split(len(records), 0.1, RunConfig().seed)
    train = load_dataset_file(out_dir / "demo-train.jsonl")
    evals = load_dataset_file(out_dir / "demo-eval.jsonl")
    assert [r.data for r in train.records] == [records[i].data for i in train_idx]
    assert [r.data for r in evals.records] == [records[i].data for i in eval_idx]
    _, info = load_training_records(RunConfig(dataset="demo"))  # the hash a run on `dataset: demo` records
    assert text.startswith("demo: Alpaca JSONL, 366 records") and f"content hash: {info['hash']}\n" in text
    assert sorted(p.name for p in out_dir.iterdir()) == ["demo-eval.jsonl", "demo-train.jsonl"]
