"""Shared fixtures: an isolated data home, and a tiny random model with the demo tokenizer."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

if os.environ.get("QT_QPA_PLATFORM", "offscreen") == "offscreen":
    # A desktop-sized offscreen screen: Qt's default 800x800 would clamp the main window.
    from gui.app import offscreen_platform

    os.environ["QT_QPA_PLATFORM"] = offscreen_platform()
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def studio_home(tmp_path_factory, monkeypatch) -> Path:
    """Every test gets its own runs/adapters/settings folder; nothing touches the real home."""
    home = tmp_path_factory.mktemp("studio-home")
    monkeypatch.setenv("FINETUNE_STUDIO_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 2-layer random Llama (hidden 32) saved with the demo tokenizer and chat template."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("tiny-model")
    tok = AutoTokenizer.from_pretrained(REPO / "resources" / "demo" / "model")
    tok.save_pretrained(out)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, tie_word_embeddings=True)
    LlamaForCausalLM(cfg).save_pretrained(out, safe_serialization=True)
    return out


@pytest.fixture
def small_dataset(tmp_path) -> Path:
    """The first 64 demo records, as an Alpaca JSONL file."""
    src = REPO / "resources" / "demo" / "dataset.jsonl"
    lines = src.read_text(encoding="utf-8").splitlines()[:64]
    path = tmp_path / "small.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def copy_preset(tmp_path):
    def _copy(name: str = "demo.yaml") -> Path:
        dst = tmp_path / name
        shutil.copy(REPO / "resources" / "presets" / name, dst)
        return dst
    return _copy
