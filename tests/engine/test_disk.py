"""The disk check before training: sizes against what Trainer really writes, and the verdicts."""

from __future__ import annotations

import shutil
from collections import namedtuple
from pathlib import Path

import pytest

from engine import disk
from engine.config import RunConfig
from engine.memory.terms import tensor_state_bytes
from tests.engine.test_train import make_cfg, train

Usage = namedtuple("Usage", "total used free")


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


@pytest.mark.parametrize("method", ["lora", "full"])
def test_the_plan_matches_the_checkpoints_and_final_the_run_wrote(method, tiny_model_dir, small_dataset, tmp_path):
    from engine.methods import get_method

    out = tmp_path / "run"
    cfg = make_cfg(tiny_model_dir, small_dataset, out, method=method, max_steps=4, save_steps=2, save_total_limit=0)
    result, rec, trained = train(cfg)
    assert result["status"] == "completed" and not [e for e in rec.of("warning") if e.data["kind"] == "disk"]
    plan = disk.plan(trained[0], cfg, tmp_path, peft=get_method(method).peft, steps=4, model_dir=tiny_model_dir)
    written = folder_bytes(out / "checkpoint-2")
    # The plan is an upper bound within its 1 MiB allowance for the small files.
    assert written <= plan.checkpoint_bytes <= written + disk.SMALL_FILES
    assert folder_bytes(out / "final") <= plan.final_bytes <= folder_bytes(out / "final") + disk.SMALL_FILES
    weights, optimizer = disk.model_bytes(trained[0], cfg, peft=get_method(method).peft)
    assert optimizer == 2 * sum(p.numel() * 4 for p in trained[0].parameters() if p.requires_grad)  # fp32 moments
    assert (out / "checkpoint-2" / "optimizer.pt").stat().st_size >= optimizer
    assert plan.checkpoints_at_once == 2 and plan.need_bytes == 2 * plan.checkpoint_bytes + plan.final_bytes


def test_checkpoints_on_disk_at_once_follow_save_steps_the_limit_and_early_stopping():
    cfg = RunConfig(save_steps=50, save_total_limit=3)
    assert disk.checkpoints_at_once(cfg, 1000) == 4  # three kept, one being written
    assert disk.checkpoints_at_once(cfg, 120) == 3
    assert disk.checkpoints_at_once(cfg.replace(save_total_limit=0), 1000) == 20
    assert disk.checkpoints_at_once(cfg.replace(save_steps=0), 1000) == 1  # the one at the end or on stop
    assert disk.checkpoints_at_once(cfg, None) == 1
    early = cfg.replace(eval_split=0.1, early_stopping_patience=2)
    assert disk.checkpoints_at_once(early, 1000) == 5  # the best is kept besides the limit


def test_optimizer_state_per_tensor():
    assert tensor_state_bytes("adamw", 10_000, 2) == 40_000  # bf16 moments
    assert tensor_state_bytes("adamw_8bit", 10_240, 2) == 20_480 + 2 * 4 * 40 + 2 * 4 * 256
    assert tensor_state_bytes("paged_adamw_8bit", 100, 2) == 800  # small tensors stay 32-bit
    assert tensor_state_bytes("sgd", 10_000, 4) == 0


def test_a_disk_without_room_for_one_checkpoint_fails_the_run_before_step_one(tiny_model_dir, small_dataset,
                                                                              tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10**12, 10**12, 100_000))
    out = tmp_path / "run"
    result, rec, _ = train(make_cfg(tiny_model_dir, small_dataset, out, method="full", save_steps=1))
    assert result["status"] == "failed" and not rec.of("step")
    (error,) = rec.of("error")
    assert error.data["key"] == "output_dir" and "not enough disk space" in error.data["message"]
    assert "0.1 MiB free" in error.data["message"] and "checkpoints of" in error.data["message"]


def test_a_disk_that_holds_fewer_checkpoints_than_kept_warns_with_the_limit_that_fits(tiny_model_dir, small_dataset,
                                                                                    tmp_path, monkeypatch):
    out = tmp_path / "run"
    cfg = make_cfg(tiny_model_dir, small_dataset, out, method="full", max_steps=6, save_steps=1, save_total_limit=5)
    _, _, trained = train(cfg.replace(max_steps=1, output_dir=str(tmp_path / "sizes")))
    plan = disk.plan(trained[0], cfg, tmp_path, peft=False, steps=6, model_dir=tiny_model_dir)
    # Room for final/ and three checkpoints at once: save_total_limit 2 fits.
    free = plan.final_bytes + 3 * plan.checkpoint_bytes + 1000
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10**12, 10**12, free))
    result, rec, _ = train(cfg)
    assert result["status"] == "completed"
    (warning,) = [e for e in rec.of("warning") if e.data["kind"] == "disk"]
    assert warning.data["fix"] == {"save_total_limit": 2} and "6 at once" in warning.data["message"]
    assert warning.data["disk"]["fits"] is False


@pytest.mark.parametrize("numel", [10_240, 4_095, 70_001])
def test_the_8bit_adamw_state_is_what_bitsandbytes_keeps(numel):
    torch = pytest.importorskip("torch")
    bnb = pytest.importorskip("bitsandbytes")
    p = torch.nn.Parameter(torch.randn(numel))
    opt = bnb.optim.AdamW8bit([p])
    p.grad = torch.randn(numel)
    opt.step()
    kept = sum(v.numel() * v.element_size() for v in opt.state[p].values()
               if torch.is_tensor(v) and v.numel() > 1)  # not the step counter
    assert tensor_state_bytes("adamw_8bit", numel, 4) == kept


@pytest.mark.parametrize("method,load_in", [("lora", "fp32"), ("full", "fp32"), ("lora", "bf16"), ("ia3", "fp32")])
def test_the_estimate_before_loading_agrees_with_the_plan_from_the_loaded_model(method, load_in, tiny_model_dir,
                                                                                 tmp_path):
    from engine import precision
    from engine.memory.structure import model_structure
    from engine.methods import get_method

    cfg = RunConfig.from_dict({"model": str(tiny_model_dir), "method": method, "load_in": load_in,
                               "mixed_precision": "bf16" if load_in == "bf16" else "no", "device": "cpu",
                               "lora_target_modules": "all-linear", "save_total_limit": 2})
    before = disk.estimate_from_config(cfg, model_structure(cfg), tmp_path)
    model = get_method(method).apply(precision.load_model(cfg, tiny_model_dir, precision.detect_environment()), cfg)
    after = disk.plan(model, cfg, tmp_path, peft=get_method(method).peft, steps=1000, model_dir=tiny_model_dir)
    assert before["checkpoint_bytes"] == after.checkpoint_bytes
    assert before["final_bytes"] == after.final_bytes
    assert before["checkpoints_at_once"] == after.checkpoints_at_once == 3
    assert before["free_bytes"] > 0 and before["fits"] is True


def test_the_trainers_8bit_adamw_keeps_embeddings_in_32_bit_and_the_estimate_counts_it(tiny_model_dir, tmp_path):
    """Trainer.create_optimizer registers optim_bits=32 for every nn.Embedding under the bitsandbytes
    8-bit optimizers; a full fine-tune's tied 128k embedding then holds 8 B/param of state, not ~2
    (measured on the H200: 1.46 GiB for Llama-3.2-1B's shape). The estimate, the disk plan and the
    optimizer the Trainer really builds agree on every byte."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("bitsandbytes")
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

    from engine.memory.structure import model_structure
    from engine.memory.terms import Setup, optimizer_state_bytes

    cfg = RunConfig.from_dict({"model": str(tiny_model_dir), "method": "full", "load_in": "fp32",
                               "mixed_precision": "no", "optimizer": "adamw_8bit"})
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    embedding = model.get_input_embeddings().weight
    assert embedding.numel() >= 4096  # 8-bit without the override
    trainer = Trainer(model=model, args=TrainingArguments(output_dir=str(tmp_path), optim="adamw_bnb_8bit",
                                                          use_cpu=True, report_to=[]))
    opt = trainer.create_optimizer()
    ids = torch.randint(0, embedding.shape[0], (2, 16))
    model(input_ids=ids, labels=ids).loss.backward()
    opt.step()

    def state_bytes(p):
        return sum(v.numel() * v.element_size() for v in opt.state[p].values() if torch.is_tensor(v) and v.numel() > 1)

    assert state_bytes(embedding) == 8 * embedding.numel()
    kept = sum(state_bytes(p) for p in {id(p): p for p in model.parameters()}.values())
    assert optimizer_state_bytes(model_structure(cfg), Setup.from_config(cfg)) == kept
    assert disk.model_bytes(model, cfg, peft=False)[1] == kept
