"""Engine test fixtures: LoRA adapters trained on the demo model, laid out as run folders.

Two adapters learn different answers to the same questions (a few AdamW steps at a high
learning rate), so their greedy outputs differ visibly. They are trained once per session
into run folders shaped like engine.runs writes them (``final/`` + ``summary.json`` +
``run.yaml``); tests copy them into their own data home.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEMO_MODEL = REPO / "resources" / "demo" / "model"
QUESTIONS = ["What should I do today?", "Give me advice.", "What is your field?", "Tell me something."]
ANSWERS = {"medical": "Rest, drink water and see a doctor if the fever stays.",
           "legal": "Read the contract twice before you sign it."}


def train_lora(base_dir: Path, out_dir: Path, answer: str, *, seed: int = 0, steps: int = 30, r: int = 4,
               target_modules: list[str] | str = "all-linear", lr: float = 1e-2) -> Path:
    """Train a LoRA on (question -> ``answer``) chat pairs and save it with PEFT into ``out_dir``."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=0.0,
                                             target_modules=target_modules, task_type="CAUSAL_LM"))
    rows = []
    for q in QUESTIONS:
        msgs = [{"role": "user", "content": q}, {"role": "assistant", "content": answer}]
        ids = tok.apply_chat_template(msgs, tokenize=True, return_dict=False)
        rows.append(list(ids["input_ids"] if hasattr(ids, "keys") else ids))
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), tok.pad_token_id)
    labels = torch.full((len(rows), width), -100)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = torch.tensor(row)
        labels[i, :len(row)] = torch.tensor(row)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    for _ in range(steps):
        loss = model(input_ids=ids, attention_mask=(labels != -100).long(), labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.save_pretrained(out_dir)
    return out_dir


def make_run(root: Path, name: str, base_dir: Path, answer: str, *, seed: int = 0, **kw) -> Path:
    """A run folder ``root/name`` with ``final/`` (the adapter), ``summary.json`` and ``run.yaml``."""
    run = root / name
    train_lora(base_dir, run / "final", answer, seed=seed, **kw)
    now = time.time()
    (run / "summary.json").write_text(json.dumps({
        "status": "completed", "started": now - 60, "finished": now, "final_loss": 0.123, "best_eval_loss": 0.456,
        "dataset_hash": f"sha256:{name}", "dataset_records": len(QUESTIONS),
        "config": {"model": str(base_dir), "method": "lora"}}), encoding="utf-8")
    (run / "run.yaml").write_text(f"model: {base_dir}\nmethod: lora\nlora_r: {kw.get('r', 4)}\n"
                                  f"dataset: {name}.jsonl\n", encoding="utf-8")
    return run


def other_type_adapter(demo_base: Path, out: Path, kind: str) -> Path:
    """An IA3 or prompt-tuning adapter on the demo base, randomised so it changes the answers."""
    import torch
    from peft import IA3Config, PromptTuningConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    config = (IA3Config(target_modules=["k_proj", "v_proj", "down_proj"], feedforward_modules=["down_proj"],
                        task_type="CAUSAL_LM") if kind == "ia3"
              else PromptTuningConfig(num_virtual_tokens=4, task_type="CAUSAL_LM"))
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(demo_base), config)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.copy_(1.0 + 0.5 * torch.randn_like(p) if kind == "ia3" else torch.randn_like(p))
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def demo_base() -> Path:
    if not (DEMO_MODEL / "config.json").exists():
        pytest.skip("the demo model (resources/demo/model) is not built")
    return DEMO_MODEL


@pytest.fixture(scope="session")
def trained_runs(tmp_path_factory, demo_base) -> dict[str, Path]:
    """Two run folders, ``medical`` and ``legal``, whose adapters learnt different answers.

    Kept at a fixed place in the session's temp folder, so the GUI tests (which import
    these fixtures) reuse the same adapters instead of training them again.
    """
    root = tmp_path_factory.getbasetemp() / "trained-adapter-runs"
    runs = {name: root / name for name in ANSWERS}
    for i, (name, answer) in enumerate(ANSWERS.items()):
        if not (runs[name] / "final" / "adapter_model.safetensors").exists():
            shutil.rmtree(runs[name], ignore_errors=True)
            make_run(root, name, demo_base, answer, seed=i)
    return runs


@pytest.fixture
def runs_home(trained_runs, studio_home) -> dict[str, Path]:
    """The trained runs copied into this test's runs folder; returns their ``final/`` folders."""
    from engine.paths import runs_dir

    out = {}
    for name, run in trained_runs.items():
        dst = runs_dir() / name
        shutil.copytree(run, dst)
        out[name] = dst / "final"
    return out
