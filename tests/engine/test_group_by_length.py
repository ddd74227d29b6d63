"""group_by_length: transformers' LengthGroupedSampler batches records of similar length."""

from __future__ import annotations

import pytest

from engine.config import RunConfig
from engine.errors import ConfigErrors
from tests.engine.test_train import Recorder, make_cfg


def _padding(cfg: RunConfig) -> tuple[int, int]:
    """(padded positions, real tokens) over one epoch of the Trainer's own dataloader."""
    from engine.train import Commands, _build_trainer, _make_callback_class, setup

    prep = setup(cfg, Recorder())
    trainer, _ = _build_trainer(prep, Recorder(), Commands(), _make_callback_class(), None, True)
    padded = real = 0
    for batch in trainer.get_train_dataloader():
        padded += batch["input_ids"].numel()
        real += int(batch["attention_mask"].sum())
    return padded, real


def test_grouping_by_length_cuts_the_padding_of_mixed_length_records(tiny_model_dir, tmp_path):
    from engine.paths import demo_dataset_path

    data = demo_dataset_path()  # 366 records of mixed lengths
    plain = make_cfg(tiny_model_dir, data, tmp_path / "a", batch_size=8, seq_len=512, max_steps=2)
    padded, real = _padding(plain)
    grouped_padded, grouped_real = _padding(plain.replace(group_by_length=True, output_dir=str(tmp_path / "b")))
    assert grouped_real == real  # the same records, every one once
    assert grouped_padded < 0.8 * padded  # measured: docs/dataset-bench.md


def test_group_by_length_is_a_sampler_choice_and_excludes_packing(tiny_model_dir, small_dataset, tmp_path):
    from engine.train import Prepared, training_arguments_kwargs

    cfg = make_cfg(tiny_model_dir, small_dataset, tmp_path / "r", group_by_length=True)
    prep = Prepared(cfg, tmp_path, None, None, None, None, [], [], {}, 0, 0)
    from engine.precision import detect_environment

    prep.env = detect_environment()
    assert training_arguments_kwargs(cfg, prep)["train_sampling_strategy"] == "group_by_length"
    assert training_arguments_kwargs(cfg.replace(group_by_length=False), prep)["train_sampling_strategy"] == "random"
    with pytest.raises(ConfigErrors) as e:
        cfg.replace(packing=True).validate()
    assert e.value.errors[0].key == "group_by_length" and e.value.errors[0].fix == {"group_by_length": False}
