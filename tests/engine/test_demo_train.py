"""Issue 2's acceptance: the demo preset trains real LoRA on the CPU with a falling loss."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_demo_preset_trains_lora_with_falling_loss(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "engine", "train", "resources/presets/demo.yaml",
                           "--output_dir", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert len(losses) == 120
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.7 * first, (first, last)  # clearly falling, not noise
    evals = [r["eval_loss"] for r in rows if "eval_loss" in r]
    assert evals and evals[-1] < evals[0]
    # How fast it trains is bench/demo_train_time.py's question (docs/throughput.md), not a test's.

    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from engine.paths import demo_model_dir

    base = AutoModelForCausalLM.from_pretrained(demo_model_dir())
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        before = base(ids).logits
    model = PeftModel.from_pretrained(base, out / "final")
    with torch.no_grad():
        after = model(ids).logits
    assert not torch.allclose(before, after)  # the adapter is real and changes the model
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["step"] == 120
    assert (out / "README.md").read_text().startswith("---")
