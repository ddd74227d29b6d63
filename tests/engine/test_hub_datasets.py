"""Datasets from the Hugging Face cache by id (``org/name``, ``org/name:split``), never downloaded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.data import hub
from engine.data.formats import open_dataset
from engine.errors import DataError
from tests.engine.test_train import make_cfg, train


def _parquet(path: Path, rows: range) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"instruction": [f"Say the word number {i}." for i in rows], "input": [""] * len(rows),
                             "output": [f"Word {i}." for i in rows]}), path)


@pytest.fixture
def hub_cache(tmp_path, monkeypatch) -> Path:
    """A hub cache as huggingface_hub lays it out: a two-file train split and a test split
    (``org/alpaca-mini``), and a repository holding one ``train.jsonl`` (``org/one-file``)."""
    from huggingface_hub import constants

    root = tmp_path / "hub"
    for repo, commit in (("alpaca-mini", "1111"), ("one-file", "2222")):
        folder = root / f"datasets--org--{repo}"
        (folder / "refs").mkdir(parents=True)
        (folder / "refs" / "main").write_text(commit, encoding="utf-8")
    snap = root / "datasets--org--alpaca-mini" / "snapshots" / "1111"
    _parquet(snap / "data" / "train-00000-of-00002.parquet", range(0, 12))
    _parquet(snap / "data" / "train-00001-of-00002.parquet", range(12, 20))
    _parquet(snap / "data" / "test-00000-of-00001.parquet", range(20, 24))
    (snap / "README.md").write_text("---\nlicense: mit\n---\n", encoding="utf-8")
    one = root / "datasets--org--one-file" / "snapshots" / "2222"
    one.mkdir(parents=True)
    (one / "train.jsonl").write_text("".join(json.dumps({"instruction": f"q{i}", "output": f"a{i}"}) + "\n"
                                             for i in range(3)), encoding="utf-8")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(root))
    return root


def test_names_that_are_hub_ids_and_names_that_are_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert hub.parse_ref("org/name") == ("org/name", "train")
    assert hub.parse_ref("HuggingFaceH4/ultrachat_200k:train_sft") == ("HuggingFaceH4/ultrachat_200k", "train_sft")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "set").mkdir()
    for name in ("demo", "data/train.jsonl", "data/set", "train.parquet", "name", "a/b/c", "", "/abs/x.csv"):
        assert hub.parse_ref(name) is None, name


def test_a_split_in_several_files_is_read_in_order_as_one_dataset(hub_cache):
    ds = open_dataset("org/alpaca-mini")
    assert [r.peek()["output"] for r in ds.records] == [f"Word {i}." for i in range(20)]
    assert ds.path is None  # read, never written back
    assert ds.detected == "Alpaca PARQUET, 20 records, from the Hugging Face cache: org/alpaca-mini:train (2 files)"
    test = open_dataset("org/alpaca-mini:test")
    assert [r.peek()["output"] for r in test.records] == [f"Word {i}." for i in range(20, 24)]
    one = open_dataset("org/one-file")
    assert one.path is None and len(one.records) == 3  # never written back into the cache
    assert hub.cached_datasets() == ["org/alpaca-mini", "org/one-file"]


def test_a_missing_dataset_or_split_says_what_there_is_and_never_downloads(hub_cache):
    with pytest.raises(DataError) as e:
        open_dataset("org/alpaca-mini:validation")
    assert "no split 'validation'" in e.value.message and "(splits: test, train)" in e.value.message
    assert "org/alpaca-mini:SPLIT" in e.value.hint
    with pytest.raises(DataError) as e:
        open_dataset("org/not-cached")
    assert "not in the Hugging Face cache" in e.value.message and str(hub_cache) in e.value.message
    assert "huggingface-cli download --repo-type dataset org/not-cached" in e.value.hint


def test_a_run_trains_on_a_cached_dataset_and_evaluates_on_its_test_split(hub_cache, tiny_model_dir, tmp_path):
    from engine.audit import audit_run

    cfg = make_cfg(tiny_model_dir, "org/alpaca-mini", tmp_path / "run", eval_dataset="org/alpaca-mini:test",
                   max_steps=2, seq_len=64)
    result, rec, _ = train(cfg)
    assert result["status"] == "completed"
    data = rec.of("started")[0].data["dataset"]
    assert data["path"] == "org/alpaca-mini" and data["train"] == 20 and data["eval"] == 4
    assert "org/alpaca-mini:train (2 files)" in data["detected"]
    assert rec.of("eval")  # the test split was evaluated
    audit = audit_run(tmp_path / "run", device="cpu")
    assert audit.dataset == "org/alpaca-mini" and len(audit.records) == 20 and not audit.dataset_changed


def test_an_uncached_dataset_fails_before_the_run_folder_is_made(hub_cache, tiny_model_dir, tmp_path):
    for key, name in (("dataset", "org/alpaca-mini:dev"), ("eval_dataset", "org/not-cached:test")):
        changes = {key: name} if key == "eval_dataset" else {}
        result, rec, _ = train(make_cfg(tiny_model_dir, name if key == "dataset" else "org/alpaca-mini",
                                        tmp_path / "run", **changes))
        assert result["status"] == "failed" and not (tmp_path / "run").exists()
        (error,) = rec.of("error")
        assert error.data["key"] == key
        assert ("no split 'dev'" if key == "dataset" else "eval_dataset: dataset 'org/not-cached' is not in the "
                "Hugging Face cache") in error.data["message"]


def test_the_data_commands_take_a_cached_dataset(hub_cache, tmp_path, capsys):
    from engine.cli import main

    out = tmp_path / "alpaca-mini.jsonl"
    assert main(["data", "convert", "org/alpaca-mini", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 20 and rows[19]["output"] == "Word 19."
    assert main(["data", "check", "org/alpaca-mini:test"]) == 0
    assert main(["data", "preview", "org/alpaca-mini", "--record", "13"]) == 0
    assert "Word 12." in capsys.readouterr().out


def test_data_split_takes_a_cached_dataset_and_names_its_files_by_its_name_and_split(hub_cache, tmp_path, capsys):
    """`data split org/name` said "no such file" where check, preview and convert take the id."""
    from engine.cli import main

    out = tmp_path / "split"
    assert main(["data", "split", "org/alpaca-mini", "--eval-ratio", "0.25", "--out-dir", str(out)]) == 0
    assert main(["data", "split", "org/alpaca-mini:test", "--eval-ratio", "0.5", "--out-dir", str(out)]) == 0
    assert main(["data", "split", "org/one-file", "--eval-ratio", "0.5", "--out-dir", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [  # no org/ folder, no ':' in a file name
        "alpaca-mini-eval.parquet", "alpaca-mini-test-eval.parquet", "alpaca-mini-test-train.parquet",
        "alpaca-mini-train.parquet", "one-file-eval.jsonl", "one-file-train.jsonl"]
    both = open_dataset(out / "alpaca-mini-train.parquet").records + open_dataset(out / "alpaca-mini-eval.parquet").records
    assert sorted(r.data["output"] for r in both) == sorted(f"Word {i}." for i in range(20))  # both files of the split
    assert "split with eval ratio 0.25, seed 42: 15 train, 5 eval" in capsys.readouterr().out


def test_data_hub_lists_the_cached_datasets_and_their_splits(hub_cache, capsys):
    from engine.cli import main

    assert main(["data", "hub"]) == 0
    out = capsys.readouterr().out
    assert "org/alpaca-mini  test (1 file), train (2 files)" in out and "org/one-file     train (1 file)" in out
    assert main(["data", "hub", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["datasets"] == [{"id": "org/alpaca-mini", "splits": {"test": 1, "train": 2}},
                                {"id": "org/one-file", "splits": {"train": 1}}]
