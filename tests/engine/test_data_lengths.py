"""The estimate with the run's data: its records tokenized as the run will, the estimate at the
longest one (engine/data/lengths.py, ``Estimate.data``, ``estimate --json``'s ``data``)."""

from __future__ import annotations

import argparse
import io
import json
import shutil
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from engine.config import RunConfig
from engine.data.lengths import data_lengths
from engine.errors import ModelError
from engine.memory import cli_estimate, estimate
from engine.memory.terms import GIB

REPO = Path(__file__).resolve().parents[2]
DEMO_MODEL = REPO / "resources" / "demo" / "model"
DEMO_DATA = REPO / "resources" / "demo" / "dataset.jsonl"


@pytest.fixture(scope="module")
def llama_1b(tmp_path_factory) -> Path:
    """Llama-3.2-1B's config.json (no weights: the estimate needs none) with the demo tokenizer."""
    d = tmp_path_factory.mktemp("l32-1b")
    shutil.copy(REPO / "bench" / "model_configs" / "llama3.2-1b" / "config.json", d / "config.json")
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(DEMO_MODEL / name, d / name)
    return d


def _cfg(model: Path, **kw) -> RunConfig:
    return RunConfig.from_dict({"model": str(model), "dataset": "demo", "method": "lora", "batch_size": 4,
                                "seq_len": 1024, **kw})


def _rendered_lengths(cfg: RunConfig) -> list[int]:
    """Every demo record's token count, rendered one by one as the trainer renders it."""
    from engine.data.tokenize import render_record
    from engine.models import load_tokenizer
    from engine.train import load_training_records

    records, _ = load_training_records(cfg)
    tok = load_tokenizer(cfg.model)
    return [len(render_record(r.messages(weights=True), tok, cfg.template)["input_ids"]) for r in records]


def test_the_longest_record_is_the_one_the_trainer_renders(llama_1b):
    cfg = _cfg(llama_1b)
    lengths = _rendered_lengths(cfg)
    d = data_lengths(cfg)
    assert d.longest == max(lengths) and d.records == len(lengths) and d.truncated == 0
    assert d.path == str(DEMO_DATA) and d.padded_len == max(lengths) < cfg.seq_len
    short = cfg.replace(seq_len=128)
    cut = data_lengths(short)
    assert cut.seq_len == 128 and cut.padded_len == 128
    # Kept records only: a record whose prompt alone fills seq_len is left out, not cut.
    assert 0 < cut.truncated <= sum(n > 128 for n in lengths) and cut.records < len(lengths)


def test_the_data_estimate_is_the_estimate_at_the_longest_record(llama_1b):
    cfg = _cfg(llama_1b)
    d = data_lengths(cfg)
    est = estimate(cfg, 24 * GIB, data=d)
    at_longest = estimate(cfg.replace(seq_len=d.longest), 24 * GIB)
    assert est.seq_len == 1024 and est.data["seq_len"] == d.longest
    assert est.data["peak_bytes"] == at_longest.peak_bytes < est.peak_bytes
    assert est.data["max_batch_size"] == at_longest.max_batch_size > est.max_batch_size
    assert est.data["fits"] == at_longest.fits
    # Its own breakdown, summing to its peak as the config's does (the gauge draws it as the bar).
    assert est.data["breakdown"] == at_longest.breakdown and sum(est.data["breakdown"].values()) == \
        est.data["peak_bytes"]
    assert (est.data["records"], est.data["longest_record"], est.data["truncated"]) == (d.records, d.longest, 0)
    # The config's own numbers are untouched by the data (the public contract's meaning).
    plain = estimate(cfg, 24 * GIB)
    assert (est.peak_bytes, est.fits, est.max_batch_size) == (plain.peak_bytes, plain.fits, plain.max_batch_size)
    assert plain.data is None


def test_data_that_reaches_seq_len_estimates_as_the_config(llama_1b):
    cfg = _cfg(llama_1b, seq_len=128)
    est = estimate(cfg, 24 * GIB, data=data_lengths(cfg))
    assert est.data["seq_len"] == 128 and est.data["truncated"] > 0
    assert est.data["peak_bytes"] == est.peak_bytes and est.data["max_batch_size"] == est.max_batch_size
    assert est.data["breakdown"] == est.breakdown


def test_packed_batches_keep_the_estimate_at_seq_len(llama_1b):
    cfg = _cfg(llama_1b, packing=True)
    est = estimate(cfg, 24 * GIB, data=data_lengths(cfg))
    assert est.data["seq_len"] == 1024 and est.data["peak_bytes"] == est.peak_bytes
    assert not any("every record of this dataset fits" in s["description"] for s in est.suggestions)


def test_a_seq_len_that_cuts_nothing_is_the_first_suggestion(llama_1b):
    cfg = _cfg(llama_1b)
    d = data_lengths(cfg)
    config_peak = estimate(cfg).peak_bytes
    data_peak = estimate(cfg, data=d).data["peak_bytes"]
    gpu = (config_peak + data_peak) // 2  # the data fits, a batch of seq_len tokens doesn't
    est = estimate(cfg, gpu, data=d)
    assert est.fits == "no" and est.data["fits"] == "yes"
    first = est.suggestions[0]
    n = -(-d.longest // 64) * 64
    assert first["changes"] == {"seq_len": n} and n < cfg.seq_len and first["fits"] == "yes"
    assert first["peak_bytes"] == estimate(cfg.replace(seq_len=n)).peak_bytes
    assert f"the longest is {d.longest:,} tokens" in first["description"]
    assert len(est.suggestions) == 1  # it fits: the ladder stops there
    # Without the data the ladder starts with checkpointing, as before.
    assert estimate(cfg, gpu).suggestions[0]["changes"] == {"gradient_checkpointing": True}


def test_no_tokenizer_is_a_model_error(tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(REPO / "bench" / "model_configs" / "llama3.2-1b" / "config.json", bare / "config.json")
    with pytest.raises(ModelError, match="has no tokenizer"):
        data_lengths(_cfg(bare))


def _cli(path: Path, **kw) -> tuple[int, str, str]:
    args = argparse.Namespace(config=str(path), json=kw.pop("json", True), gpu_memory=kw.pop("gpu_memory", None),
                              overrides=kw.pop("overrides", {}), no_data=kw.pop("no_data", False))
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cli_estimate(args)
    return code, out.getvalue(), err.getvalue()


def test_cli_gives_the_estimate_with_the_data(llama_1b, tmp_path):
    run = tmp_path / "run.yaml"
    run.write_text(f"model: {llama_1b}\ndataset: demo\nmethod: lora\nbatch_size: 4\nseq_len: 1024\n", encoding="utf-8")
    code, out, err = _cli(run, gpu_memory=12.0)
    assert code == 0, err
    d = json.loads(out)
    longest = data_lengths(_cfg(llama_1b)).longest
    assert d["seq_len"] == 1024 and d["data"]["longest_record"] == longest and d["data"]["seq_len"] == longest
    assert d["data"]["peak_bytes"] < d["peak_bytes"] and d["data"]["records"] == 366
    assert d["suggestions"][0]["changes"] == {"seq_len": -(-longest // 64) * 64}
    code, text, _ = _cli(run, json=False, gpu_memory=12.0)
    assert code == 0 and "with batches of seq_len 1,024 tokens" in text
    assert f"with this data (366 records, the longest {longest:,} tokens): " in text
    code, out, _ = _cli(run, no_data=True)
    assert code == 0 and json.loads(out)["data"] is None


def test_the_data_line_never_offers_a_batch_larger_than_the_data():
    """`estimate` said "largest micro-batch that fits: 10000" for a 200-record dataset."""
    from engine.memory.cli import data_text

    data = {"records": 200, "longest_record": 90, "truncated": 0, "seq_len": 90, "peak_bytes": 2**30,
            "fits": "yes", "max_batch_size": 10000}
    assert data_text(data, 24 * 2**30).endswith(
        "largest micro-batch that fits: 10000 (more than the 200 records: a batch of all of them fits)")
    assert data_text({**data, "max_batch_size": 64}, 24 * 2**30).endswith("largest micro-batch that fits: 64")


def test_cli_without_a_tokenizer_estimates_and_says_why_there_is_no_data_line(tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(REPO / "bench" / "model_configs" / "llama3.2-1b" / "config.json", bare / "config.json")
    run = tmp_path / "run.yaml"
    run.write_text(f"model: {bare}\ndataset: demo\n", encoding="utf-8")
    code, out, err = _cli(run)
    assert code == 0, err
    d = json.loads(out)
    assert d["data"] is None and d["peak_bytes"] > 0
    assert any(n.startswith("the estimate at the data's longest record is missing: ") and "has no tokenizer" in n
               for n in d["notes"])


def test_an_edited_template_file_is_measured_again(llama_1b, tmp_path):
    """The lengths are kept per template; a .jinja file edited in place renders differently, so its
    edit is a new measurement, not the kept one."""
    template = tmp_path / "mine.jinja"
    source = (DEMO_MODEL / "chat_template.jinja").read_text(encoding="utf-8")
    template.write_text(source, encoding="utf-8")
    cfg = _cfg(llama_1b, template=str(template))
    before = data_lengths(cfg)
    template.write_text("{{ 'A preamble of several words before every conversation. ' }}" + source,
                        encoding="utf-8")
    after = data_lengths(cfg)
    assert after.longest > before.longest and after.records == before.records
