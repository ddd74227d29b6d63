"""The shipped demo dataset: size, balance, well-formed records, and a reproducible file."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from engine import demo_data
from engine.paths import demo_dataset_path


@pytest.fixture(scope="module")
def records() -> list[dict[str, str]]:
    return demo_data.build_records()


def test_size_and_schema(records):
    assert len(records) >= 300
    for i, rec in enumerate(records):
        assert list(rec) == ["instruction", "input", "output", "task", "lang"], i
        assert all(isinstance(v, str) for v in rec.values()), i
        assert rec["instruction"].strip() and rec["output"].strip(), i
        assert rec["task"] in demo_data.TASKS, i
        assert rec["lang"] in demo_data.LANGS, i


def test_language_and_task_balance(records):
    langs = Counter(r["lang"] for r in records)
    assert 0.45 <= langs["en"] / len(records) <= 0.65, langs
    pairs = Counter((r["task"], r["lang"]) for r in records)
    missing = [(t, lang) for t in demo_data.TASKS for lang in demo_data.LANGS if pairs[(t, lang)] == 0]
    assert not missing, missing
    tasks = Counter(r["task"] for r in records)
    top_task, top_count = tasks.most_common(1)[0]
    assert top_count / len(records) <= 0.35, (top_task, top_count, len(records))


def test_no_duplicates(records):
    full = Counter(json.dumps(r, ensure_ascii=False) for r in records)
    assert [k for k, n in full.items() if n > 1] == []
    prompts = Counter((r["instruction"], r["input"]) for r in records)
    assert [k for k, n in prompts.items() if n > 1] == []


def test_extraction_outputs_are_json(records):
    extraction = [r for r in records if r["task"] == "extraction"]
    assert extraction
    for rec in extraction:
        value = json.loads(rec["output"])
        assert isinstance(value, (dict, list)) and value, rec
        assert "\n" not in rec["output"], rec


def test_classification_labels(records):
    for rec in records:
        if rec["task"] == "classification":
            assert rec["output"] in demo_data.SENTIMENT_LABELS[rec["lang"]], rec


def test_outputs_are_short(records):
    # The demo model is tiny: long targets would dominate the loss and never be learnt.
    for rec in records:
        if rec["lang"] == "en":
            assert len(rec["output"].split()) < 60, rec
        else:
            assert len(rec["output"]) < 120, rec


def test_shipped_file_equals_fresh_build(records):
    shipped = demo_dataset_path().read_bytes()
    assert shipped == demo_data.to_jsonl(records).encode("utf-8"), (
        "resources/demo/dataset.jsonl is stale: run `python -m engine.demo_data`"
    )
    assert demo_data.build_records() == records


def test_write_dataset_is_byte_identical(tmp_path):
    a = demo_data.write_dataset(tmp_path / "a" / "dataset.jsonl").read_bytes()
    b = demo_data.write_dataset(tmp_path / "b.jsonl").read_bytes()
    assert a == b
    lines = a.decode("utf-8").splitlines()
    assert len(lines) == len(demo_data.build_records())
    assert json.loads(lines[0])["lang"] in demo_data.LANGS
