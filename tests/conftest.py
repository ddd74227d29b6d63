"""Shared fixtures: an isolated data home, and a tiny random model with the demo tokenizer."""

from __future__ import annotations

import os
import shutil
import stat
import sys
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


def save_tiny_llama(out: Path, *, tied: bool = True, **save_kw) -> Path:
    """A 2-layer random Llama (hidden 32) with the demo tokenizer and chat template, saved to ``out``;
    ``tied=False`` gives it a separate output head (Llama 2, Mistral)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(REPO / "resources" / "demo" / "model")
    tok.save_pretrained(out)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, tie_word_embeddings=tied)
    LlamaForCausalLM(cfg).save_pretrained(out, **save_kw)
    return out


def zero_token_rows(model_dir: Path, tokens: list[str]) -> Path:
    """Zero these tokens' input-embedding rows in ``model_dir``'s model.safetensors, as a base model
    ships chat tokens it never trained (Llama 3 base's <|eot_id|>)."""
    from safetensors.torch import load_file, save_file
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    weights = load_file(str(model_dir / "model.safetensors"))
    for i in tok.convert_tokens_to_ids(tokens):
        weights["model.embed_tokens.weight"][i] = 0.0
    save_file(weights, str(model_dir / "model.safetensors"), metadata={"format": "pt"})
    return model_dir


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 2-layer random Llama (hidden 32) saved with the demo tokenizer and chat template."""
    return save_tiny_llama(tmp_path_factory.mktemp("tiny-model"))


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


def fake_nvidia_smi(folder: Path, gpus: str, apps: str = "", *, rc: int = 0, sleep: float = 0) -> Path:
    """An executable ``nvidia-smi`` that answers ``--query-gpu`` with ``gpus`` and ``--query-compute-apps``
    with ``apps`` (nvidia-smi's ``csv,noheader,nounits`` lines), logging its arguments."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "gpus.txt").write_text(gpus, encoding="utf-8")
    (folder / "apps.txt").write_text(apps, encoding="utf-8")
    script = folder / "nvidia-smi"
    script.write_text(
        f"#!{sys.executable}\n"
        "import sys, time, pathlib\n"
        f"here = pathlib.Path({str(folder)!r})\n"
        "(here / 'calls.log').open('a').write(' '.join(sys.argv[1:]) + '\\n')\n"
        f"time.sleep({sleep})\n"
        "args = ' '.join(sys.argv[1:])\n"
        "assert '--format=csv,noheader,nounits' in args, args\n"
        "name = 'apps.txt' if '--query-compute-apps=' in args else 'gpus.txt'\n"
        "sys.stdout.write((here / name).read_text())\n"
        f"sys.exit({rc})\n", encoding="utf-8")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


@pytest.fixture
def smi_on_path(tmp_path, monkeypatch):
    """``install(gpus=..., apps=..., rc=..., sleep=...)`` puts a stand-in nvidia-smi first on PATH."""
    def install(gpus: str, apps: str = "", **kw) -> Path:
        script = fake_nvidia_smi(tmp_path / "bin", gpus, apps, **kw)
        monkeypatch.setenv("PATH", f"{script.parent}{os.pathsep}{os.environ.get('PATH', '')}")
        return script
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)
    return install
