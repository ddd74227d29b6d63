"""The estimate's child process (gui/train/estimate_worker.py) measures the run's records and
estimates with them, answering as the engine does in-process."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from engine.config import RunConfig
from engine.data.lengths import DataLengths, data_lengths
from engine.memory import estimate
from gui.train.estimator import EstimateProcess

GiB = 2**30
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def child():
    """One child for the module: each one imports torch (seconds)."""
    process = EstimateProcess()
    yield process
    process.close()


def demo_cfg(**kw) -> RunConfig:
    return RunConfig.load(REPO / "resources" / "presets" / "demo.yaml").replace(**kw)


def test_the_child_measures_the_demo_records_as_the_engine_does(child):
    cfg = demo_cfg()
    answer = child.data_lengths(cfg)
    assert answer == data_lengths(cfg).to_dict()
    assert answer["records"] == 366 and 0 < answer["longest"] < cfg.seq_len and answer["truncated"] == 0
    # An estimate asked with them holds the estimate at the longest record, as estimate(data=) gives it.
    est = child.estimate(cfg, 12 * GiB, None, answer)
    expected = estimate(cfg, 12 * GiB, data=DataLengths(**answer))
    assert est.data == expected.data and est.data["seq_len"] == answer["longest"]
    assert est.peak_bytes == expected.peak_bytes and est.seq_len == cfg.seq_len
    assert child.estimate(cfg, 12 * GiB, None).data is None  # without them: none


def test_a_model_folder_without_a_tokenizer_is_an_answer_not_the_end_of_the_child(child, tmp_path):
    model = tmp_path / "no-tokenizer"
    model.mkdir()
    shutil.copy(REPO / "resources" / "demo" / "model" / "config.json", model / "config.json")
    with pytest.raises(RuntimeError, match="has no tokenizer"):
        child.data_lengths(demo_cfg(model=str(model)))
    with pytest.raises(RuntimeError, match="no such file"):
        child.data_lengths(demo_cfg(dataset=str(tmp_path / "gone.jsonl")))
    assert child.data_lengths(demo_cfg())["records"] == 366  # still serving
