"""The training recipe on a tiny random Llama: every method x CPU precision, guards, outputs.

Each case runs ``run_training`` for a few steps (seq_len 64, 3 steps) and checks that the
loss is finite, that training changed the model, and that save -> load on a fresh base
gives the trained model's logits. The guards (non-finite loss, out-of-memory) are driven
by the trainer's fault injector, so they run on a CPU.
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from engine.config import RunConfig
from engine.events import Event, EventWriter
from engine.runs import read_metrics

METHODS = ("full", "freeze", "lora", "adapter", "prefix", "prompt", "ia3")
# (load_in, mixed_precision) that train on a CPU: plain fp32, pure bf16, and fp32 under bf16 autocast.
CPU_PRECISIONS = (("fp32", "no"), ("bf16", "bf16"), ("fp32", "bf16"))
METHOD_SETTINGS = {"freeze": {"freeze_trainable_layers": 1, "freeze_extra_modules": ["norm"]},
                   "lora": {"lora_target_modules": "all-linear", "use_rslora": True},
                   "adapter": {"adapter_reduction_factor": 4, "adapter_style": "houlsby"},
                   "prefix": {"num_virtual_tokens": 4}, "prompt": {"num_virtual_tokens": 4}}


def make_cfg(model_dir: Path, dataset: Path, out: Path, **changes) -> RunConfig:
    base = dict(model=str(model_dir), dataset=str(dataset), method="lora", load_in="fp32", mixed_precision="no",
                device="cpu", max_steps=3, seq_len=64, batch_size=4, learning_rate=1e-2, warmup_ratio=0.0,
                lora_dropout=0.0, save_steps=0, logging_steps=1, output_dir=str(out), seed=7)
    return RunConfig.from_dict({**base, **changes})


class Recorder(EventWriter):
    """Keeps every event in a list (and still serialises it, as the worker would)."""

    def __init__(self):
        super().__init__(stream=io.StringIO())
        self.events: list[Event] = []

    def emit(self, kind, /, **data):
        event = super().emit(kind, **data)
        self.events.append(Event.from_line(event.to_json()))
        return event

    def of(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.type == kind]


def train(cfg: RunConfig, **kw) -> tuple[dict, Recorder, list]:
    rec = Recorder()
    trained: list = []
    result = run(cfg, rec, trained, **kw)
    return result, rec, trained


def run(cfg, rec, trained, **kw):
    from engine.train import run_training

    return run_training(cfg, rec, on_trained=trained.append, **kw)


def probe_ids(model_dir: Path) -> torch.Tensor:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    return torch.tensor([tok("Name three colours of the rainbow.")["input_ids"]])


def logits(model, ids: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.float()


def fresh(cfg: RunConfig, model_dir: Path):
    from engine import precision

    return precision.load_model(cfg, model_dir, precision.detect_environment())


def initial_model(cfg: RunConfig, model_dir: Path):
    """The model exactly as setup builds it before training (same seed, same method init)."""
    from engine.methods import get_method

    torch.manual_seed(cfg.seed)
    return get_method(cfg.method).apply(fresh(cfg, model_dir), cfg)


# ---------------------------------------------------------------- Every method x precision
@pytest.mark.parametrize("load_in,mixed", CPU_PRECISIONS, ids=[f"{a}-{b}" for a, b in CPU_PRECISIONS])
@pytest.mark.parametrize("method", METHODS)
def test_method_precision_trains_saves_and_loads(method, load_in, mixed, tiny_model_dir, small_dataset, tmp_path):
    from engine.methods import get_method

    cfg = make_cfg(tiny_model_dir, small_dataset, tmp_path / "run", method=method, load_in=load_in,
                   mixed_precision=mixed, **METHOD_SETTINGS.get(method, {}))
    result, rec, trained = train(cfg)
    assert result["status"] == "completed", result.get("error")
    losses = [e["loss"] for e in rec.of("step")]
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))
    assert len(set(losses)) > 1
    # The model being trained answered sample records at the end (generate works for every method).
    assert not [w.data for w in rec.of("warning") if w.data.get("kind") == "samples"]
    (samples,) = rec.of("samples")
    assert samples.data["step"] == 3 and all(s["tokens"] > 0 for s in samples.data["samples"])

    ids = probe_ids(tiny_model_dir)
    after = logits(trained[0], ids)
    before = logits(initial_model(cfg, tiny_model_dir), ids)
    assert after.shape == before.shape
    assert not torch.allclose(after, before, atol=1e-4), "training did not change the model"

    # Save -> load on a fresh base gives the trained model's function.
    loaded = get_method(method).load(fresh(cfg, tiny_model_dir), tmp_path / "run" / "final", cfg)
    torch.testing.assert_close(logits(loaded, ids), after)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[load_in]
    assert next(p for n, p in loaded.named_parameters() if "embed_tokens" in n).dtype == dtype


@pytest.mark.parametrize("method", METHODS)
def test_every_method_resumes_from_its_checkpoint(method, tiny_model_dir, small_dataset, tmp_path):
    """A run resumed from checkpoint-2 ends where the uninterrupted run ends (weights, losses)."""
    settings = {**METHOD_SETTINGS.get(method, {}), "max_steps": 4, "save_steps": 2, "lora_dropout": 0.1}
    full_cfg = make_cfg(tiny_model_dir, small_dataset, tmp_path / "a", method=method, **settings)
    _, rec_a, trained_a = train(full_cfg)
    resumed_dir = tmp_path / "b"
    resumed_dir.mkdir()
    shutil.copytree(tmp_path / "a" / "checkpoint-2", resumed_dir / "checkpoint-2")
    result, rec_b, trained_b = train(full_cfg.replace(output_dir=str(resumed_dir)), resume=True)
    assert result["status"] == "completed" and result["step"] == 4
    assert rec_b.of("started")[0]["resume_step"] == 2
    loss_a = [e["loss"] for e in rec_a.of("step")][2:]
    loss_b = [e["loss"] for e in rec_b.of("step")]
    assert [e["step"] for e in rec_b.of("step")] == [3, 4]
    torch.testing.assert_close(torch.tensor(loss_b), torch.tensor(loss_a), rtol=1e-5, atol=1e-5)
    ids = probe_ids(tiny_model_dir)
    torch.testing.assert_close(logits(trained_b[0], ids), logits(trained_a[0], ids), rtol=1e-4, atol=1e-4)


def test_qlora_is_refused_on_cpu_before_loading(tiny_model_dir, small_dataset, tmp_path):
    cfg = RunConfig.from_dict({"model": str(tiny_model_dir), "dataset": str(small_dataset), "method": "qlora",
                               "output_dir": str(tmp_path / "run"), "max_steps": 2})
    result, rec, trained = train(cfg)
    assert result["status"] == "failed" and not trained
    error = rec.of("error")[0]
    assert error["kind"] == "config" and error["key"] == "load_in"
    (load_in,) = [e for e in error["errors"] if e["key"] == "load_in"]
    assert "CUDA" in load_in["message"] and "qlora" in load_in["message"]
    assert load_in["fix"]["method"] == "lora"
    assert not rec.of("started") and not (tmp_path / "run").exists()  # nothing loaded, nothing written


@pytest.mark.parametrize("load_in,mixed", [("fp16", "fp16"), ("fp32", "fp16")])
def test_fp16_is_refused_on_cpu_with_a_reason(load_in, mixed, tiny_model_dir, small_dataset, tmp_path):
    cfg = make_cfg(tiny_model_dir, small_dataset, tmp_path / "run", load_in=load_in, mixed_precision=mixed)
    result, rec, _ = train(cfg)
    assert result["status"] == "failed"
    error = rec.of("error")[0]
    messages = " ".join(e["message"] for e in error["errors"])
    assert "fp16" in messages and "loss scaling" in messages and "CPU" in messages
    assert any(e["key"] == "mixed_precision" for e in error["errors"])


# ---------------------------------------------------------------- Guards: non-finite loss
def poison_once(at_step: int):
    fired: list[int] = []

    def inject(step: int):
        if step == at_step and not fired:
            fired.append(step)
            return "nan"
        return None
    return inject


def test_nonfinite_loss_rolls_back_with_the_lr_really_halved(tiny_model_dir, small_dataset, tmp_path):
    """NaN at step 5 (checked every step, though logging is every 2): back to checkpoint-4, LR / 2."""
    common = dict(max_steps=8, save_steps=2, logging_steps=2, lr_scheduler="linear")
    _, clean, _ = train(make_cfg(tiny_model_dir, small_dataset, tmp_path / "clean", **common))
    out = tmp_path / "run"
    result, rec, trained = train(make_cfg(tiny_model_dir, small_dataset, out, **common),
                                 fault_injector=poison_once(4))  # global_step 4 = during step 5
    assert result["status"] == "completed", result.get("error")
    (event,) = rec.of("recovered")
    assert event["kind"] == "nonfinite" and event["step"] == 5
    assert event["resume_step"] == 4 and event["resume_from"].endswith("checkpoint-4")
    assert event["changes"] == {"learning_rate": 5e-3} and event["before"] == {"learning_rate": 1e-2}
    batch = event["batch"]
    assert batch["step"] == 5 and len(batch["sample_indices"]) == 4 and len(batch["record_lines"]) == 4
    assert all(isinstance(x, int) and 1 <= x <= 64 for x in batch["record_lines"])
    for advice in ("learning rate", "1e-7", "fp16 overflow is not the cause"):  # an fp32 run
        assert advice in event["advice"]
    assert "use bf16" not in event["advice"]
    # The halving took effect although the checkpoint stored the old schedule.
    lr_clean = {e["step"]: e["lr"] for e in clean.of("step")}
    steps = rec.of("step")
    after = [e for e in rec.events[rec.events.index(event):] if e.type == "step"]
    assert [e["step"] for e in after] == [6, 8]
    for e in after:
        assert e["lr"] == pytest.approx(lr_clean[e["step"]] / 2, rel=1e-6)
    assert all(torch.isfinite(torch.tensor(e["loss"])) for e in steps)
    rows = [r["step"] for r in read_metrics(out) if "loss" in r]
    assert rows == [2, 4, 6, 8]  # the curve is one line: nothing from the bad branch
    assert all(torch.isfinite(p).all() for p in trained[0].parameters())
    assert RunConfig.load(out / "run.yaml").learning_rate == 5e-3
    (change,) = json.loads((out / "summary.json").read_text())["config_changes"]  # steps 1-4 ran at 1e-2
    assert (change["from_step"], change["why"], change["changes"]) == (5, "nonfinite", {"learning_rate": [1e-2, 5e-3]})
    assert "| learning_rate | 0.005 from step 5 (0.01 for steps 1-4) |" in (out / "README.md").read_text()


def test_nonfinite_loss_with_policy_stop_reports_step_batch_and_advice(tiny_model_dir, small_dataset, tmp_path):
    cfg = make_cfg(tiny_model_dir, small_dataset, tmp_path / "run", max_steps=4, nan_policy="stop")
    result, rec, trained = train(cfg, fault_injector=poison_once(1))
    assert result["status"] == "failed" and not trained
    error = rec.of("error")[0]
    assert error["kind"] == "nonfinite" and error["step"] == 2
    assert "step 2" in error["message"] and "lines" in error["message"]
    assert error["fix"] == {"learning_rate": 5e-3} and "lower the learning rate (now 0.01)" in error["hint"].lower()
    assert error["message"].startswith(f"{error['what']} became non-finite at step 2 (loss=")
    assert not (tmp_path / "run" / "final").exists()


def test_a_failed_run_resumed_no_longer_reads_as_failed_and_keeps_its_failure_as_history(
        tiny_model_dir, small_dataset, tmp_path, capsys):
    """summary.json kept the failed leg's error through a resume: a resumed run that was then stopped
    read "Stopped at step 3: the loss became non-finite..." in the Runs area, and `runs show` printed it
    as the run's error."""
    from engine.cli import main
    from engine.runs import read_summary, run_details, run_info
    from gui.runs.area import failure_text

    out = tmp_path / "run"
    cfg = make_cfg(tiny_model_dir, small_dataset, out, max_steps=4, save_steps=1, nan_policy="stop")
    assert train(cfg, fault_injector=poison_once(2))[0]["status"] == "failed"  # during step 3
    failed = read_summary(out)["error"]
    assert failed["step"] == 3 and run_info(out).failed_step == 3
    resumed, _, _ = train(cfg, resume=True)
    assert resumed["status"] == "completed"
    summary = read_summary(out)
    assert summary["error"] is None
    (earlier,) = summary["earlier_errors"]
    assert earlier["message"] == failed["message"] and earlier["step"] == 3 and earlier["leg"] == 1
    info = run_info(out)
    assert info.status == "completed" and info.failed_step is None and failure_text(info) == ""
    # Had the resumed leg been stopped, the Runs area would have said why the earlier leg failed.
    assert failure_text(dataclasses.replace(info, status="stopped")) == ""
    d = run_details(out)
    assert d["error"] is None and d["earlier_errors"][0]["step"] == 3
    assert main(["runs", "show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "\nerror " not in shown
    assert re.search(r"\nearlier failure +leg 1, step 3: .*non-finite.*\(resumed since\)\n", shown)


@pytest.mark.parametrize("loss, grad, subject, numbers", [
    (13.823262214660645, float("nan"), "the gradient norm", "loss=13.82, grad_norm=nan"),
    (float("nan"), 2.5, "the loss", "loss=nan, grad_norm=2.5"),
    (float("inf"), float("nan"), "the loss and the gradient norm", "loss=inf, grad_norm=nan"),
    (float("nan"), None, "the loss", "loss=nan"),
])
def test_a_nonfinite_step_names_what_was_nonfinite(loss, grad, subject, numbers):
    from engine.train import nonfinite_what

    assert nonfinite_what({"step": 5, "loss": loss, "grad_norm": grad}) == (subject, numbers)


def test_nonfinite_without_a_checkpoint_restarts_from_a_fresh_model(tiny_model_dir, small_dataset, tmp_path):
    cfg = make_cfg(tiny_model_dir, small_dataset, tmp_path / "run", max_steps=3)
    result, rec, trained = train(cfg, fault_injector=poison_once(1))
    assert result["status"] == "completed" and result["nan_rollbacks"] == 1
    (event,) = rec.of("recovered")
    assert event["resume_from"] is None and event["resume_step"] == 0
    assert [r["step"] for r in read_metrics(tmp_path / "run") if "loss" in r] == [1, 2, 3]
    assert all(torch.isfinite(p).all() for p in trained[0].parameters())


# ---------------------------------------------------------------- Guards: out of memory
def oom_at(step_to_fail: int, times: int):
    fired: list[int] = []

    def inject(step: int):
        if step == step_to_fail and len(fired) < times:
            fired.append(step)
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")
    return inject


def test_oom_halves_the_micro_batch_keeps_the_effective_batch_and_resumes(tiny_model_dir, small_dataset, tmp_path):
    out = tmp_path / "run"
    cfg = make_cfg(tiny_model_dir, small_dataset, out, max_steps=6, save_steps=3, batch_size=4)
    result, rec, trained = train(cfg, fault_injector=oom_at(4, 1))
    assert result["status"] == "completed" and result["step"] == 6 and result["oom_retries"] == 1
    (event,) = rec.of("recovered")
    assert event["kind"] == "oom" and event["step"] == 5
    assert event["before"] == {"batch_size": 4, "gradient_accumulation_steps": 1}
    assert event["changes"] == {"batch_size": 2, "gradient_accumulation_steps": 2}
    assert event["resume_step"] == 3 and "effective batch unchanged at 4" in event["message"]
    saved = RunConfig.load(out / "run.yaml")
    assert (saved.batch_size, saved.gradient_accumulation_steps) == (2, 2)
    assert [r["step"] for r in read_metrics(out) if "loss" in r] == [1, 2, 3, 4, 5, 6]
    assert (out / "final" / "adapter_model.safetensors").exists()
    (change,) = json.loads((out / "summary.json").read_text())["config_changes"]
    assert (change["from_step"], change["why"]) == (4, "oom")  # steps 1-3 (checkpoint-3) ran at batch 4
    assert change["changes"] == {"batch_size": [4, 2], "gradient_accumulation_steps": [1, 2]}


def test_oom_at_micro_batch_one_fails_with_the_next_levers_in_order(tiny_model_dir, small_dataset, tmp_path):
    cfg = make_cfg(tiny_model_dir, small_dataset, tmp_path / "run", max_steps=4, batch_size=2)
    result, rec, trained = train(cfg, fault_injector=oom_at(1, 99))
    assert result["status"] == "failed" and not trained
    assert [e["changes"] for e in rec.of("recovered")] == [{"batch_size": 1, "gradient_accumulation_steps": 2}]
    error = rec.of("error")[0]
    assert error["kind"] == "oom" and "micro-batch 1" in error["message"]
    names = [lever["lever"] for lever in error["levers"]]
    assert names == ["gradient checkpointing", "8-bit AdamW", "QLoRA (LoRA on a 4-bit NF4 base)",
                     "DeepSpeed ZeRO-3 with CPU offload"]
    estimates = [lever["estimated_peak_bytes"] for lever in error["levers"][:3]]
    assert all(isinstance(x, int) and x > 0 for x in estimates)  # from engine.memory.estimate
    assert error["fix"] == {"gradient_checkpointing": True}
    hint = error["hint"]
    assert hint.index("gradient checkpointing") < hint.index("8-bit") < hint.index("QLoRA") < hint.index("DeepSpeed")
    assert "export-launch" in hint and "GiB" in hint


# ---------------------------------------------------------------- Outputs
@pytest.mark.parametrize(("max_steps", "logged"), [(3, [3]), (7, [5, 7])])
def test_the_last_step_is_logged_whatever_logging_steps_says(tiny_model_dir, small_dataset, tmp_path, max_steps,
                                                             logged):
    """The lora preset (logging_steps 5) run for 4 steps ended "completed: ... (no step was logged)", its final
    loss "-"; at 7 steps the loss of steps 6-7 was never logged."""
    out = tmp_path / "run"
    result, rec, _ = train(make_cfg(tiny_model_dir, small_dataset, out, max_steps=max_steps, logging_steps=5))
    assert result["status"] == "completed"
    assert [r["step"] for r in read_metrics(out) if "loss" in r] == logged == [e["step"] for e in rec.of("step")]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["final_loss"] == pytest.approx(rec.of("step")[-1]["loss"])


def test_run_folder_outputs(tiny_model_dir, small_dataset, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out = tmp_path / "run"
    cfg = make_cfg(tiny_model_dir, small_dataset, out, max_steps=4, eval_split=0.1, eval_steps=2, save_steps=2)
    result, rec, trained = train(cfg)
    assert result["status"] == "completed"
    assert RunConfig.load(out / "run.yaml").to_dict() == {**cfg.to_dict(), "output_dir": str(out)}

    data = json.loads((out / "dataset.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    assert data["records"] == 64 and data["hash"].startswith("sha256:") and len(data["hash"]) == 71
    assert summary["dataset_hash"] == data["hash"] and summary["dataset_records"] == 64
    assert data["dropped"] == len(data["problems"]) > 0 and all("line" in p for p in data["problems"])
    assert data["train"] + data["eval"] == 64 - data["dropped"]
    assert summary["status"] == "completed" and summary["step"] == 4 and summary["final_loss"] is not None
    assert summary["best_eval_loss"] is not None

    rows = read_metrics(out)
    train_rows = [r for r in rows if "loss" in r]
    eval_rows = [r for r in rows if "eval_loss" in r]
    assert [r["step"] for r in train_rows] == [1, 2, 3, 4] and [r["step"] for r in eval_rows] == [2, 4]
    step_losses = [e["loss"] for e in rec.of("step")]
    assert summary["final_loss"] == pytest.approx(step_losses[-1])
    assert summary["final_loss_window"] == 4 and summary["final_loss_mean"] == pytest.approx(sum(step_losses) / 4)
    for r in train_rows:
        assert {"step", "loss", "lr", "grad_norm", "tokens_per_s", "samples_per_s", "epoch", "time"} <= set(r)
        assert r["tokens_per_s"] > 0
        gpu_keys = {"gpu_mem_allocated", "gpu_mem_reserved"}
        assert gpu_keys <= set(r) if torch.cuda.is_available() else not gpu_keys & set(r)

    card = (out / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: peft")
    for needle in (str(tiny_model_dir), "LoRA", data["hash"], "final training loss", "best eval loss",
                   "| learning_rate | 0.01 |"):
        assert needle in card
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model = PeftModel.from_pretrained(base, out / "final")
    ids = probe_ids(tiny_model_dir)
    torch.testing.assert_close(logits(model, ids), logits(trained[0], ids))
    events = [json.loads(x) for x in (out / "events.jsonl").read_text().splitlines()]
    assert events[0]["event"] == "started" and events[-1]["event"] == "finished"
    assert not (out / "worker.pid").exists()


@pytest.mark.parametrize("method", ["full", "freeze"])
def test_full_and_freeze_save_a_safetensors_model(method, tiny_model_dir, small_dataset, tmp_path):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "run"
    cfg = make_cfg(tiny_model_dir, small_dataset, out, method=method, max_steps=2)
    result, _, trained = train(cfg)
    assert result["status"] == "completed"
    assert (out / "final" / "model.safetensors").exists() and (out / "final" / "config.json").exists()
    assert not list((out / "final").glob("*.bin"))
    assert (out / "final" / "tokenizer.json").exists()
    assert "library_name: transformers" in (out / "README.md").read_text()
    ids = probe_ids(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(out / "final")
    torch.testing.assert_close(logits(model, ids), logits(trained[0], ids))


def test_packing_trains_and_records_do_not_see_each_other(tiny_model_dir, small_dataset, tmp_path):
    cfg = make_cfg(tiny_model_dir, small_dataset, tmp_path / "run", packing=True, max_steps=3)
    result, rec, _ = train(cfg)
    assert result["status"] == "completed"
    assert all(torch.isfinite(torch.tensor(e["loss"])) for e in rec.of("step"))


def test_training_arguments_carry_the_deepspeed_config(tiny_model_dir, small_dataset, tmp_path):
    from engine.precision import Environment
    from engine.train import Prepared, training_arguments_kwargs

    ds = tmp_path / "ds.json"
    ds.write_text("{}")
    cfg = make_cfg(tiny_model_dir, small_dataset, tmp_path / "run", deepspeed=str(ds))
    prep = Prepared(cfg, tmp_path / "run", None, None, None, Environment.cpu_only(), [], [], {}, 0, 0)
    assert training_arguments_kwargs(cfg, prep)["deepspeed"] == str(ds)
    assert "deepspeed" not in training_arguments_kwargs(cfg.replace(deepspeed=""), prep)


def cli_train(run_yaml: Path) -> int:
    """``finetune-studio train RUN.yaml`` in this process; the signal handlers it installs are put back."""
    import signal

    from engine.cli import main

    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        return main(["train", str(run_yaml)])
    finally:
        signal.signal(signal.SIGINT, handlers[0])
        signal.signal(signal.SIGTERM, handlers[1])


def test_ctrl_c_stops_after_the_step_and_a_second_stops_at_once_even_within_one_long_call(capsys):
    """Python runs a handler once for the signals that arrived while the main thread was in one long
    call (a step on a large model, a checkpoint's save): a second Ctrl-C pressed then was lost, and
    the run only stopped after its step. The handlers there before are put back."""
    import hashlib
    import os
    import signal
    import threading

    from engine.train import Commands, _stop_on_signals

    before = signal.getsignal(signal.SIGINT)
    commands = Commands()
    with _stop_on_signals(commands) as got:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.01)  # the handler runs here
        assert got == [signal.SIGINT] and commands.stop_requested and commands.poll() == {"stop"}
    assert "stopping after this step, with a checkpoint (Ctrl-C again to stop at once, keeping the last " \
        "checkpoint saved)" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGINT) is before

    def press_twice():
        time.sleep(0.02)  # both land in the hash below
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt), _stop_on_signals(Commands()) as got:
        presses = threading.Thread(target=press_twice)
        presses.start()
        hashlib.sha256(bytes(200_000_000))  # one long call that runs no Python code while both arrive
        presses.join()
        time.sleep(0.01)
    assert got == [signal.SIGINT, signal.SIGINT] and signal.getsignal(signal.SIGINT) is before


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_checkpoints_saved_within_a_second_do_not_print_transformers_mtime_note(tiny_model_dir, small_dataset,
                                                                                tmp_path):
    """Trainer's checkpoint rotation sorts by mtime and, when the checkpoints were written within a
    second of each other (fast steps, no sample answers between saves), printed "mtime may not be
    reliable on this filesystem, falling back to numerical ordering" in a `train`'s output: a
    filesystem problem that wasn't there, since checkpoint-N by N is the right order.

    The child gives every checkpoint folder the same mtime, so that the rotation meets the case
    every time, however fast this machine saves."""
    import os
    import subprocess

    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(repo), os.environ.get("PYTHONPATH")]))}
    out = tmp_path / "run"
    run_yaml = tmp_path / "run.yaml"
    make_cfg(tiny_model_dir, small_dataset, out, max_steps=3, save_steps=1, save_total_limit=2,
             sample_answers=0).save(run_yaml)
    same_second = ("import os, sys\n"
                   "real = os.path.getmtime\n"
                   "os.path.getmtime = lambda p: 1.0e9 if os.path.basename(p).startswith('checkpoint-') else real(p)\n"
                   "from engine.cli import main\n"
                   "sys.exit(main(['train', sys.argv[1]]))\n")
    proc = subprocess.run([sys.executable, "-c", same_second, str(run_yaml)], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=300)
    said = proc.stdout + proc.stderr
    assert proc.returncode == 0, said[-3000:]
    assert "mtime may not be reliable" not in said
    # The rotation still ran, in step order: the newest two are kept.
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-3"]
    assert f"saved {out / 'checkpoint-3'}" in said


def test_ctrl_c_in_cli_train_exits_130_and_says_how_to_continue(tiny_model_dir, small_dataset, tmp_path):
    """A run stopped with Ctrl-C exited 0, as if it had finished: a script couldn't tell."""
    import os
    import signal
    import subprocess

    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(repo), os.environ.get("PYTHONPATH")]))}

    def interrupted(out: Path, presses: int) -> tuple[int, str]:
        run_yaml = tmp_path / f"{out.name}.yaml"
        # Steps long enough that the second Ctrl-C lands while the first one's stop is under way.
        make_cfg(tiny_model_dir, small_dataset, out, max_steps=5000, learning_rate=2e-4, batch_size=16,
                 seq_len=256).save(run_yaml)
        proc = subprocess.Popen([sys.executable, "-m", "engine", "train", str(run_yaml)], cwd=repo, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        said, pressed = [], 0
        for line in proc.stdout:
            said.append(line)
            if pressed == 0 and line.startswith("step") and int(line.split()[1].split("/")[0]) >= 2 or \
                    pressed == 1 < presses and line.startswith("stopping after this step"):
                proc.send_signal(signal.SIGINT)
                pressed += 1
        return proc.wait(timeout=120), "".join(said)

    out = tmp_path / "once"
    code, said = interrupted(out, 1)
    step = json.loads((out / "summary.json").read_text())["step"]
    assert code == 130 and json.loads((out / "summary.json").read_text())["status"] == "stopped"
    assert (out / f"checkpoint-{step}").is_dir() and (out / "final").is_dir()
    assert "stopping after this step, with a checkpoint (Ctrl-C again to stop at once" in said
    assert f"stopped before the end of the run: its last checkpoint is checkpoint-{step} (step {step}); continue " \
        "it with: finetune-studio train once --resume" in said

    out = tmp_path / "twice"
    code, said = interrupted(out, 2)  # the second while the first one's stop is under way
    assert code == 130 and "\nstopped at once: " in said and "finetune-studio train twice --resume" in said
    assert not (out / "final").exists() and json.loads((out / "summary.json").read_text())["status"] == "running"


def test_cli_train_invalid_combination_exits_non_zero(tiny_model_dir, small_dataset, tmp_path, capsys):
    run_yaml = tmp_path / "run.yaml"
    make_cfg(tiny_model_dir, small_dataset, tmp_path / "run", load_in="int8", device="auto").save(run_yaml)
    code = cli_train(run_yaml)
    assert code != 0
    err = capsys.readouterr().err
    assert "load_in" in err and "CUDA" in err
    assert not (tmp_path / "run" / "final").exists()


def test_cli_train_with_a_missing_dataset_names_the_key_and_leaves_no_run(tiny_model_dir, tmp_path, capsys):
    from engine.paths import runs_dir

    run_yaml = tmp_path / "run.yaml"
    make_cfg(tiny_model_dir, tmp_path / "train.jsonl", "").save(run_yaml)
    code = cli_train(run_yaml)
    out, err = capsys.readouterr()
    assert code != 0
    assert "dataset" in err and "train.jsonl" in err and "no such file" in err
    assert "None" not in out + err
    assert not runs_dir().exists() or not any(runs_dir().iterdir())


def test_cli_train_on_a_model_without_sdpa_says_use_eager_and_leaves_no_run(small_dataset, tmp_path, capsys):
    from transformers import Gemma2Config, Gemma2ForCausalLM

    from engine.paths import demo_model_dir, runs_dir

    model = tmp_path / "gemma2"
    Gemma2ForCausalLM(Gemma2Config(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, head_dim=8)).save_pretrained(model)
    # With a tokenizer: a folder without one is refused before the attention is looked at.
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(demo_model_dir() / name, model / name)
    run_yaml = tmp_path / "run.yaml"
    make_cfg(model, small_dataset, "").save(run_yaml)
    code = cli_train(run_yaml)
    err = capsys.readouterr().err
    assert code != 0
    assert "attn_implementation" in err and "eager" in err and "Gemma2ForCausalLM" in err
    assert not runs_dir().exists() or not any(runs_dir().iterdir())


def test_malformed_records_are_reported_with_their_lines(tiny_model_dir, small_dataset, tmp_path):
    lines = small_dataset.read_text(encoding="utf-8").splitlines()
    lines.insert(3, '{"instruction": "Say hi", "output": "hi"')  # line 4: the closing brace is missing
    data = tmp_path / "broken.jsonl"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result, rec, _ = train(make_cfg(tiny_model_dir, data, tmp_path / "run", max_steps=1))
    assert result["status"] == "completed"
    warning = next(e for e in rec.of("warning") if e["kind"] == "broken")
    assert "1 record of" in warning["message"] and "was left out" in warning["message"] and "line 4" in warning["message"]
    assert warning["records"][0]["line"] == 4
    saved = json.loads((tmp_path / "run" / "dataset.json").read_text())
    assert saved["broken"] == 1 and saved["broken_records"][0]["line"] == 4


def test_records_with_a_wrong_field_are_left_out_with_file_and_line(tiny_model_dir, small_dataset, tmp_path):
    lines = small_dataset.read_text(encoding="utf-8").splitlines()
    lines.insert(2, '{"instruction": ["a", "list"], "output": "x"}')  # line 3: valid JSON, not a record
    data = tmp_path / "typed.jsonl"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result, rec, _ = train(make_cfg(tiny_model_dir, data, tmp_path / "run", max_steps=1))
    assert result["status"] == "completed"
    warning = next(e for e in rec.of("warning") if e["kind"] == "dropped")
    assert f"of {data} can't train" in warning["message"]
    assert "line 3: 'instruction' is a list, expected text" in warning["message"]
    assert {"index": 2, "line": 3, "message": "'instruction' is a list, expected text"} in warning["records"]
    # Every record unusable: the run says so, naming the file, before loading the model.
    data.write_text('{"instruction": 1, "output": "x"}\n{"instruction": "no answer"}\n', encoding="utf-8")
    result, rec, _ = train(make_cfg(tiny_model_dir, data, tmp_path / "run2", max_steps=1))
    assert result["status"] == "failed"
    error = rec.of("error")[0]
    assert error["kind"] == "data" and f"every record of {data} was left out (2 records): line 1: 'instruction'" in error["message"]


def test_records_the_models_template_refuses_get_our_format_for_its_markers_as_the_fix(tiny_model_dir, tmp_path):
    """Gemma's template refuses a system turn: every record with one is left out, and the run names
    the format that writes the model's own markers and folds the system prompt in."""
    import shutil

    from tests.engine.test_tokenize import GEMMA_LIKE

    model = tmp_path / "strict"
    shutil.copytree(tiny_model_dir, model)
    config = json.loads((model / "tokenizer_config.json").read_text())
    config["chat_template"] = GEMMA_LIKE
    (model / "tokenizer_config.json").write_text(json.dumps(config))
    (model / "chat_template.jinja").unlink(missing_ok=True)
    data = tmp_path / "system.jsonl"
    data.write_text("".join(json.dumps({"system": "Be brief.", "instruction": f"Say {w}.", "output": w}) + "\n"
                            for w in ("red", "green", "blue")), encoding="utf-8")
    result, rec, _ = train(make_cfg(model, data, tmp_path / "a", template="chat", max_steps=1))
    assert result["status"] == "failed"
    error = rec.of("error")[0]
    assert "the model's chat template refuses this conversation: Conversation roles must alternate" in error["message"]
    assert error["fix"] == {"template": "chatml"} and "template: chatml" in error["hint"]
    result, _, _ = train(make_cfg(model, data, tmp_path / "b", template="chatml", max_steps=1))
    assert result["status"] == "completed"


def test_runs_show_says_which_records_a_run_left_out(tiny_model_dir, tmp_path, capsys):
    import argparse

    from engine.runs import cli_show

    data = tmp_path / "mixed.jsonl"
    data.write_text('{"instruction": "Say red.", "output": "red"}\n{"instruction": "Say", \n'
                    '{"instruction": 7, "output": "seven"}\n{"instruction": "Say blue.", "output": "blue"}\n',
                    encoding="utf-8")
    result, _, _ = train(make_cfg(tiny_model_dir, data, tmp_path / "run", max_steps=1))
    assert result["status"] == "completed"
    assert cli_show(argparse.Namespace(run=str(tmp_path / "run"), json=False)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "records used       2 train, 0 eval" in lines
    (left,) = [x for x in lines if x.startswith("left out")]
    assert left.startswith("left out           2: line 2, column 24: Expecting property name") and left.endswith(
        "; line 3: 'instruction' is a number, expected text")
    # The counts add up: 2 used + 2 left out of the file's 4 records, the unreadable one included.
    assert "dataset records    4 (1 unreadable)" in lines
    card = (tmp_path / "run" / "README.md").read_text(encoding="utf-8")
    assert "4 records: 2 train, 0 eval, 2 left out (1 unreadable, 1 with nothing to train on)" in card


def test_a_run_with_every_record_left_out_lists_them_all_in_the_files_order(tiny_model_dir, tmp_path):
    """Unreadable lines and records with nothing to train on alike, the first ten, then how many more."""
    data = tmp_path / "bad.jsonl"
    bad = ['{"instruction": "Say", \n', '{"instruction": "q", "output": ""}\n', '{"instruction": 7, "output": "x"}\n']
    data.write_text("".join(bad * 4), encoding="utf-8")  # 12 records, none trainable
    result, rec, _ = train(make_cfg(tiny_model_dir, data, tmp_path / "run", max_steps=1))
    assert result["status"] == "failed"
    message = rec.of("error")[0]["message"]
    assert message.startswith(f"no trainable records: every record of {data} was left out (12 records): "
                              "line 1, column 24: Expecting property name")
    assert "; line 2: the answer is empty" in message and "; line 10, column 24:" in message
    assert "line 11" not in message and message.endswith(" (and 2 more)")
    assert (rec.of("error")[0]["path"], rec.of("error")[0]["line"]) == (str(data), 1)  # for "Show in the Dataset area"


def test_resume_without_a_checkpoint_warns_and_starts_over(tiny_model_dir, small_dataset, tmp_path):
    cfg = make_cfg(tiny_model_dir, small_dataset, tmp_path / "run", max_steps=2)
    result, rec, _ = train(cfg, resume=True)
    assert result["status"] == "completed"
    assert any(e["kind"] == "resume" for e in rec.of("warning"))
    assert rec.of("started")[0]["resumed"] is False


def test_resuming_on_a_changed_dataset_says_so(tiny_model_dir, small_dataset, tmp_path):
    cfg = make_cfg(tiny_model_dir, small_dataset, tmp_path / "run", max_steps=2, save_steps=1)
    assert train(cfg)[0]["status"] == "completed"
    _, rec, _ = train(cfg.replace(max_steps=3), resume=True)  # the same file: nothing to say
    assert not [e for e in rec.of("warning") if e["kind"] == "dataset_changed"]
    lines = small_dataset.read_text(encoding="utf-8").splitlines()
    small_dataset.write_text("\n".join(lines[:40]) + "\n", encoding="utf-8")
    result, rec, _ = train(cfg.replace(max_steps=4), resume=True)
    assert result["status"] == "completed" and rec.of("started")[0]["resumed"] is True
    (w,) = [e for e in rec.of("warning") if e["kind"] == "dataset_changed"]
    assert w["message"].startswith(f"{small_dataset} changed since this run started (64 usable records then, 40 now)")
    assert w["before"] != w["now"]


def test_resuming_a_completed_run_trains_no_step_past_max_steps(tiny_model_dir, small_dataset, tmp_path):
    # Trainer runs one optimizer step before it checks max_steps, so a resume from the last
    # checkpoint of a finished run used to train step max_steps + 1 and overwrite final/.
    cfg = make_cfg(tiny_model_dir, small_dataset, tmp_path / "run", max_steps=2, save_steps=2)
    first, _, trained_a = train(cfg)
    assert first["status"] == "completed" and (tmp_path / "run" / "checkpoint-2").exists()
    result, rec, trained_b = train(cfg, resume=True)
    assert result["status"] == "completed" and result["step"] == 2 and result["unchanged"]
    assert rec.of("step") == [] and trained_b == []
    assert any("nothing left to train" in e["message"] for e in rec.of("warning"))
    assert [r["step"] for r in read_metrics(tmp_path / "run") if "loss" in r] == [1, 2]
    assert not (tmp_path / "run" / "checkpoint-3").exists()
    # Killed after its last checkpoint, before final/ was written: the resume writes final/ from it.
    shutil.rmtree(tmp_path / "run" / "final")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    (tmp_path / "run" / "summary.json").write_text(json.dumps({**summary, "status": "running", "pid": 2**22 + 1}))
    result, rec, trained_b = train(cfg, resume=True)
    assert result["status"] == "completed" and result["step"] == 2 and not result.get("unchanged")
    assert rec.of("step") == [] and (tmp_path / "run" / "final").is_dir()
    assert any("already at step 2 of 2" in e["message"] for e in rec.of("warning"))
    ids = probe_ids(tiny_model_dir)
    torch.testing.assert_close(logits(trained_b[0], ids), logits(trained_a[0], ids))
    # Raising max_steps still continues the run.
    more, rec, _ = train(cfg.replace(max_steps=3), resume=True)
    assert more["status"] == "completed" and [e["step"] for e in rec.of("step")] == [3]


def test_resuming_a_complete_run_leaves_its_promoted_final_and_its_record_as_they_were(tiny_model_dir, small_dataset,
                                                                                      tmp_path, capsys):
    """`train R/run.yaml --resume` of a completed run rewrote final/ from its last checkpoint, undoing
    `runs promote`, bumped summary.json's legs and dropped its final_from."""
    from engine.cli import main
    from engine.promote import promote

    out = tmp_path / "run"
    cfg = make_cfg(tiny_model_dir, small_dataset, out, max_steps=6, save_steps=2)
    assert train(cfg)[0]["status"] == "completed"
    promote(out, 4)
    before = _folder_state(out)
    summary = (out / "summary.json").read_text()
    assert main(["train", str(out / "run.yaml"), "--resume"]) == 0
    captured = capsys.readouterr()
    assert f"the run {out.name} is complete at step 6 of 6: nothing left to train; final/ (step 4, from " \
        "checkpoint-4), the checkpoints and the run's record are left as they were" in captured.err
    assert "--max_steps N with N above 6" in captured.err
    assert f"completed: {out} (unchanged: nothing was left to train)" in captured.out
    assert _folder_state(out) == before and (out / "summary.json").read_text() == summary
    # A larger plan still continues it.
    more, rec, _ = train(cfg.replace(max_steps=7), resume=True)
    assert more["status"] == "completed" and [e["step"] for e in rec.of("step")] == [7]


def test_resuming_a_run_planned_in_epochs_stopped_at_its_last_step_changes_nothing(tiny_model_dir, small_dataset,
                                                                                   tmp_path, capsys):
    """A run planned in epochs has max_steps -1, so one stopped at its last step (final/ written)
    was judged to have steps left: `train NAME --resume` trained nothing and wrote final/ again."""
    from engine.cli import main
    from engine.train import Commands

    out = tmp_path / "run"
    cfg = make_cfg(tiny_model_dir, small_dataset, out, max_steps=-1, num_epochs=1, batch_size=32)  # 2 steps
    commands = Commands()

    def stop_at_the_last_step(step):
        if step == 1:
            commands.put("stop")  # read at the end of step 2

    stopped, _, _ = train(cfg, commands=commands, fault_injector=stop_at_the_last_step)
    assert (stopped["status"], stopped["step"]) == ("stopped", 2) and (out / "checkpoint-2").is_dir()
    before = _folder_state(out)
    assert main(["train", str(out), "--resume"]) == 0
    captured = capsys.readouterr()
    assert f"the run {out.name} is complete at step 2 of 2: nothing left to train; final/ (step 2), the " \
        "checkpoints and the run's record are left as they were" in captured.err
    assert "--max_steps N with N above 2, or --num_epochs above 1" in captured.err
    assert f"stopped: {out} (unchanged: nothing was left to train)" in captured.out
    assert _folder_state(out) == before
    # More epochs still continue it.
    more, rec, _ = train(cfg.replace(num_epochs=2), resume=True)
    assert more["status"] == "completed" and [e["step"] for e in rec.of("step")] == [3, 4]


def test_a_completed_run_extended_with_more_steps_follows_the_new_schedule(tiny_model_dir, small_dataset,
                                                                          tmp_path):
    # A 2-step cosine ends at lr 0; resumed with max_steps 4, step 3 used that 0 (the
    # checkpoint's last value) instead of the 4-step schedule's value at step 3.
    cfg = make_cfg(tiny_model_dir, small_dataset, tmp_path / "run", max_steps=2, save_steps=2)
    assert train(cfg)[0]["status"] == "completed"
    extended, rec, _ = train(cfg.replace(max_steps=4), resume=True)
    assert extended["status"] == "completed"
    _, planned, _ = train(cfg.replace(max_steps=4, output_dir=str(tmp_path / "planned")))
    lr = {e["step"]: e["lr"] for e in rec.of("step")}
    want = {e["step"]: e["lr"] for e in planned.of("step")}
    assert set(lr) == {3, 4} and want[3] > 0
    assert lr[3] == pytest.approx(want[3]) and lr[4] == pytest.approx(want[4])


def test_a_resume_with_new_values_keeps_what_the_steps_before_it_ran_with(tiny_model_dir, small_dataset, tmp_path,
                                                                         capsys):
    """run.yaml holds the values the run continues with; summary.json, runs show/compare and the
    model card say what the earlier steps trained with (run.yaml alone passed a run trained at
    1e-2 for its first steps as a 5e-3 run)."""
    from engine.cli import main
    from engine.rewind import rewind
    from engine.runs import compare_runs

    out = tmp_path / "run"
    cfg = make_cfg(tiny_model_dir, small_dataset, out, max_steps=2, save_steps=1, save_total_limit=0)
    assert train(cfg)[0]["status"] == "completed"
    resumed, rec, _ = train(cfg.replace(max_steps=4, learning_rate=5e-3), resume=True)
    assert resumed["status"] == "completed"
    (started,) = rec.of("started")
    assert started["resume_changes"] == {"learning_rate": [1e-2, 5e-3], "max_steps": [2, 4]}
    assert RunConfig.load(out / "run.yaml").learning_rate == 5e-3
    (change,) = json.loads((out / "summary.json").read_text())["config_changes"]
    assert (change["from_step"], change["why"]) == (3, "resume")  # steps 1-2 trained at 1e-2
    assert change["changes"] == {"max_steps": [2, 4], "learning_rate": [1e-2, 5e-3]}
    assert [r["lr"] for r in read_metrics(out) if r["step"] >= 3 and "lr" in r][0] <= 5e-3
    assert "| learning_rate | 0.005 from step 3 (0.01 for steps 1-2) |" in (out / "README.md").read_text()
    assert "| seed | 7 |" in (out / "README.md").read_text()

    assert main(["runs", "show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert re.search(r"\nconfig changed +from step 3 \(on resume\): learning_rate 0.01 → 0.005, max_steps 2 → 4\n",
                     shown)
    assert "  learning_rate: 0.005 from step 3 (0.01 for steps 1-2)\n" in shown and "  seed: 7\n" in shown

    # Against a run at 5e-3 throughout: the same final value, but not the same run.
    plain = tmp_path / "plain"
    assert train(cfg.replace(max_steps=4, learning_rate=5e-3, output_dir=str(plain)))[0]["status"] == "completed"
    compared = compare_runs([out, plain])
    assert compared["config_differences"]["learning_rate"] == [5e-3, 5e-3]
    assert compared["config_histories"]["learning_rate"] == [[[1e-2, 3]], []]
    assert main(["runs", "compare", str(out), str(plain)]) == 0
    assert "0.005 from step 3 (0.01 for steps 1-2)" in capsys.readouterr().out

    # Resumed again as it is: nothing new to record. With new values but nothing left to train:
    # nothing trains with them, so nothing of the run changes.
    train(cfg.replace(max_steps=4, learning_rate=5e-3), resume=True)
    yaml_before = (out / "run.yaml").read_text()
    done, rec, _ = train(cfg.replace(max_steps=4, learning_rate=1e-4), resume=True)
    assert done["status"] == "completed" and (out / "run.yaml").read_text() == yaml_before
    assert "the values given with this resume (learning_rate) trained nothing" in \
        [e for e in rec.of("warning") if e["kind"] == "resume"][0]["message"]
    assert len(json.loads((out / "summary.json").read_text())["config_changes"]) == 1
    assert json.loads((out / "summary.json").read_text())["config"]["learning_rate"] == 5e-3
    assert "| learning_rate | 0.005 from step 3 (0.01 for steps 1-2) |" in (out / "README.md").read_text()

    # A resume that fails before it trains leaves the run as it was.
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "a", "reply": "b"}\n')
    failed, _, _ = train(cfg.replace(max_steps=6, learning_rate=1e-3, dataset=str(bad)), resume=True)
    assert failed["status"] == "failed" and (out / "run.yaml").read_text() == yaml_before
    assert len(json.loads((out / "summary.json").read_text())["config_changes"]) == 1

    # Gone back to step 1 and resumed with the first rate: the run trained at 1e-2 throughout.
    rewind(out, 1)
    assert json.loads((out / "summary.json").read_text())["config_changes"][0]["from_step"] == 2
    train(cfg.replace(max_steps=2, learning_rate=1e-2), resume=True)
    assert compare_runs([out, out])["config_histories"] == {}
    assert main(["runs", "show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "config changed" not in shown and "  learning_rate: 0.01\n" in shown


def test_a_resume_keeps_the_runs_name_and_never_counts_it_as_a_change(tiny_model_dir, small_dataset, tmp_path):
    """The Train area resumes with the form's config, whose run_name is empty (the form is for new
    runs): the run kept no name (run.yaml, summary, runs list) and its record said the resume
    changed run_name."""
    from engine.runs import find_run, read_run_config, read_summary

    out = tmp_path / "run"
    cfg = make_cfg(tiny_model_dir, small_dataset, out, max_steps=2, save_steps=2, run_name="named")
    assert train(cfg)[0]["status"] == "completed"
    resumed, rec, _ = train(cfg.replace(max_steps=3, run_name=""), resume=True)
    assert resumed["status"] == "completed"
    (started,) = rec.of("started")
    assert started["config"]["run_name"] == "named"
    assert started["resume_changes"] == {"max_steps": [2, 3]}
    assert read_run_config(out)["run_name"] == "named" and read_summary(out)["config"]["run_name"] == "named"
    (change,) = read_summary(out)["config_changes"]
    assert change["changes"] == {"max_steps": [2, 3]}
    assert find_run("named") == out.resolve()
    # A resume that gives a name renames the run; that is no training setting either.
    renamed, rec, _ = train(cfg.replace(max_steps=4, run_name="renamed"), resume=True)
    assert renamed["status"] == "completed" and read_run_config(out)["run_name"] == "renamed"
    assert rec.of("started")[0]["resume_changes"] == {"max_steps": [3, 4]}


def test_config_history_keeps_what_steps_trained_with():
    from engine.runs import config_history, config_timeline, with_history

    changes = [{"from_step": 5, "why": "resume", "changes": {"learning_rate": [2e-4, 1e-4]}},
               {"from_step": 5, "why": "nonfinite", "changes": {"learning_rate": [1e-4, 5e-5]}},  # 1e-4: no step
               {"from_step": 9, "why": "resume", "changes": {"learning_rate": [5e-5, 1e-5], "seed": [1, 2]}},
               {"from_step": 12, "why": "resume", "changes": {"seed": [2, 1]}},
               {"from_step": 1, "why": "oom", "changes": {"batch_size": [8, 4]}}]  # before any step trained
    assert config_history(changes, "learning_rate") == [(2e-4, 5), (5e-5, 9)]
    assert config_history(changes, "seed") == [(1, 9), (2, 12)] and config_history(changes, "batch_size") == []
    assert with_history(1e-5, config_history(changes, "learning_rate")) == \
        "1e-05 from step 9 (0.0002 for steps 1-4, 5e-05 for steps 5-8)"
    assert with_history(1, [(2, 2)]) == "1 from step 2 (2 for step 1)"
    assert [c["why"] for c in config_timeline(changes)] == [["resume", "nonfinite"], "resume", "resume"]
    # A value set back at the same step is no change at all.
    assert config_timeline([{"from_step": 3, "why": "resume", "changes": {"seed": [1, 2]}},
                            {"from_step": 3, "why": "resume", "changes": {"seed": [2, 1]}}]) == []


def test_a_resumed_run_keeps_the_best_eval_loss_from_before_the_kill(tiny_model_dir, small_dataset, tmp_path):
    # A high constant learning rate: the eval loss is lowest at step 2, then rises.
    cfg = make_cfg(tiny_model_dir, small_dataset, tmp_path / "a", max_steps=4, save_steps=2, eval_split=0.1,
                   eval_steps=1, learning_rate=0.3, lr_scheduler="constant")
    whole, _, _ = train(cfg)
    evals = {r["step"]: r["eval_loss"] for r in read_metrics(tmp_path / "a") if "eval_loss" in r}
    assert min(evals, key=evals.get) <= 2  # the premise: the best evaluation precedes checkpoint-2
    killed = tmp_path / "b"  # as a kill -9 after step 2 leaves it
    shutil.copytree(tmp_path / "a" / "checkpoint-2", killed / "checkpoint-2")
    (killed / "metrics.jsonl").write_text("".join(
        json.dumps(r) + "\n" for r in read_metrics(tmp_path / "a") if r["step"] <= 2))
    resumed, _, _ = train(cfg.replace(output_dir=str(killed)), resume=True)
    assert resumed["best_eval_loss"] == pytest.approx(whole["best_eval_loss"]) == pytest.approx(min(evals.values()))
    assert json.loads((killed / "summary.json").read_text())["best_eval_loss"] == pytest.approx(min(evals.values()))


@pytest.mark.parametrize("method", ["lora", "adapter", "full"])
def test_early_stopping_stops_and_keeps_the_best_checkpoint(method, tiny_model_dir, small_dataset, tmp_path):
    """A threshold no evaluation can beat: the first eval is the best, the run stops after patience evals."""
    from engine.methods import get_method

    cfg = make_cfg(tiny_model_dir, small_dataset, tmp_path / "run", method=method, max_steps=20, eval_split=0.25,
                   eval_steps=2, save_steps=2, save_total_limit=1, early_stopping_patience=2,
                   early_stopping_threshold=1e3, **METHOD_SETTINGS.get(method, {}),
                   # full fine-tuning at this LR overshoots after step 4 (eval 11.8, 7.3, 8.5 at steps
                   # 2, 4, 6), so its best checkpoint is not the last one
                   **({"learning_rate": 0.3} if method == "full" else {}))
    result, rec, trained = train(cfg)
    assert result["status"] == "completed", result.get("error")
    evals = {e["step"]: e["eval_loss"] for e in rec.of("eval")}
    best_step = min(evals, key=evals.get)
    assert result["early_stopped"] is True and result["step"] == 6 and list(evals) == [2, 4, 6]
    assert result["best_step"] == best_step and result["best_eval_loss"] == pytest.approx(evals[best_step])
    if method == "full":
        assert best_step < 6  # so the final model being the best one is not the last step's by chance
    (warning,) = [e for e in rec.of("warning") if e["kind"] == "early_stopped"]
    assert warning["best_step"] == best_step and "Stopped early at step 6 of 20" in warning["message"]
    # The result is the lowest-eval-loss checkpoint's model, kept despite save_total_limit 1.
    out = tmp_path / "run"
    assert (out / f"checkpoint-{best_step}").is_dir()
    from engine.promote import final_step, promotion_offer

    assert final_step(out) == best_step and promotion_offer(out) is None  # nothing better to promote
    ids = probe_ids(tiny_model_dir)
    method_ = get_method(method)
    final = logits(method_.load(fresh(cfg, tiny_model_dir), out / "final", cfg), ids)
    ckpt = out / f"checkpoint-{best_step}"
    if (ckpt / "adapter_config.json").exists():  # a PEFT checkpoint
        best_model = method_.load(fresh(cfg, tiny_model_dir), ckpt, cfg)
    else:  # Trainer saved the whole model (full, or the base with its bottleneck adapters)
        from safetensors.torch import load_file

        best_model = initial_model(cfg, tiny_model_dir)
        _missing, unexpected = best_model.load_state_dict(load_file(ckpt / "model.safetensors"), strict=False)
        assert not unexpected
    torch.testing.assert_close(final, logits(best_model, ids))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["early_stopped"] is True and summary["best_step"] == best_step
    assert f"stopped early; these weights are the best checkpoint, step {best_step}" in (out / "README.md").read_text()


def test_early_stopping_needs_an_eval_split_or_an_eval_file():
    from engine.errors import ConfigErrors

    assert RunConfig.from_dict({"early_stopping_patience": 3, "eval_dataset": "eval.jsonl"}).eval_dataset

    with pytest.raises(ConfigErrors) as e:
        RunConfig.from_dict({"early_stopping_patience": 3})
    (err,) = e.value.errors
    assert err.key == "early_stopping_patience" and "eval_split is 0" in err.message and err.fix == {"eval_split": 0.05}
    with pytest.raises(ConfigErrors) as e:
        RunConfig.from_dict({"early_stopping_patience": 3, "eval_split": 0.1, "eval_steps": 20, "save_steps": 50})
    assert e.value.errors[0].key == "save_steps" and e.value.errors[0].fix == {"save_steps": 40}


def _eval_file(tmp_path: Path, lines: list[str], name: str = "eval.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_an_eval_file_is_evaluated_and_every_dataset_record_trains(tiny_model_dir, small_dataset, tmp_path):
    demo = (Path(__file__).resolve().parents[2] / "resources/demo/dataset.jsonl").read_text(encoding="utf-8")
    held_out = [x for x in demo.splitlines()[100:112]]
    eval_path = _eval_file(tmp_path, [*held_out, "{broken", small_dataset.read_text().splitlines()[0]])
    out = tmp_path / "run"
    cfg = make_cfg(tiny_model_dir, small_dataset, out, max_steps=4, eval_dataset=str(eval_path), eval_steps=2,
                   seq_len=256)
    result, rec, trained = train(cfg)
    assert result["status"] == "completed"
    data = json.loads((out / "dataset.json").read_text())
    # The whole training file trains; the eval file's 13 readable records are evaluated.
    info = data["eval_dataset"]
    assert data["train"] == 64 and data["eval"] == info["evaluated"] == 13
    assert info["path"] == str(eval_path) and info["records"] == 13 and info["broken"] == 1
    assert info["in_training_data"] == 1 and info["hash"].startswith("sha256:")
    warnings = {e.data["kind"]: e.data for e in rec.of("warning")}
    assert "line 13" in warnings["broken"]["message"] and "eval file" in warnings["broken"]["message"]
    assert warnings["eval_overlap"]["lines"] == [14]
    assert "1 of the 13 records" in warnings["eval_overlap"]["message"]
    eval_losses = [r["eval_loss"] for r in read_metrics(out) if "eval_loss" in r]
    assert len(eval_losses) == 2 and all(x > 0 for x in eval_losses)
    # The eval loss is the eval file's: the model's own loss over those 13 records.
    from transformers import AutoTokenizer

    from engine.data.formats import load_dataset_file
    from engine.data.tokenize import tokenize_records

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    good = [r for r in load_dataset_file(eval_path).records if not r.broken]
    rows, _ = tokenize_records(good, tok, cfg.template, cfg.seq_len)
    assert len(rows) == info["evaluated"]
    model = trained[0].eval()
    total = count = 0
    with torch.no_grad():
        for row in rows:
            ids = torch.tensor([row["input_ids"]])
            labels = torch.tensor([row["labels"]])
            n = int((labels[:, 1:] != -100).sum())
            total += model(input_ids=ids, labels=labels).loss.item() * n
            count += n
    assert eval_losses[-1] == pytest.approx(total / count, rel=1e-4)
    card = (out / "README.md").read_text()
    assert f"**Eval data:** `{eval_path}`" in card
    assert "13 records evaluated, 1 of them also in the training data" in card


def test_an_eval_file_problem_is_named_before_the_run_folder_is_made(tiny_model_dir, small_dataset, tmp_path):
    from engine.errors import ConfigErrors

    out = tmp_path / "run"
    result, rec, _ = train(make_cfg(tiny_model_dir, small_dataset, out, eval_dataset=str(tmp_path / "nope.jsonl")))
    assert result["status"] == "failed" and not out.exists()
    (error,) = rec.of("error")
    assert error.data["key"] == "eval_dataset" and "no such file" in error.data["message"]
    unusable = _eval_file(tmp_path, ["{broken", "[1, 2"])
    result, rec, _ = train(make_cfg(tiny_model_dir, small_dataset, out, eval_dataset=str(unusable)))
    assert result["status"] == "failed" and "no record can be evaluated (2 broken" in rec.of("error")[0].data["message"]
    with pytest.raises(ConfigErrors) as e:
        make_cfg(tiny_model_dir, small_dataset, out, eval_dataset=str(unusable), eval_split=0.1)
    assert e.value.errors[0].key == "eval_split" and e.value.errors[0].fix == {"eval_split": 0.0}
    with pytest.raises(ConfigErrors) as e:
        make_cfg(tiny_model_dir, small_dataset, out, eval_dataset=str(small_dataset))
    assert e.value.errors[0].key == "eval_dataset" and "memorisation" in e.value.errors[0].message


def test_an_eval_file_path_is_read_from_the_config_files_folder(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "eval.jsonl").write_text("{}\n")
    path = tmp_path / "run.yaml"
    path.write_text("eval_dataset: data/eval.jsonl\n", encoding="utf-8")
    assert RunConfig.load(path).eval_dataset == str((tmp_path / "data" / "eval.jsonl").resolve())


def test_multi_turn_answers_a_template_hides_are_reported_with_their_lines(tiny_model_dir, tmp_path):
    from transformers import AutoTokenizer

    from tests.engine.test_tokenize import THINK_LAST

    model_dir = shutil.copytree(tiny_model_dir, tmp_path / "model")
    tok = AutoTokenizer.from_pretrained(model_dir)
    tok.chat_template = THINK_LAST
    tok.save_pretrained(model_dir)
    turns = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
             {"role": "user", "content": "Count to two"}, {"role": "assistant", "content": "One, two."}]
    data = _eval_file(tmp_path, [json.dumps({"messages": turns})] * 3 + [json.dumps({"messages": turns[:2]})] * 3,
                      "chats.jsonl")
    result, rec, _ = train(make_cfg(model_dir, data, tmp_path / "run", max_steps=1, batch_size=2))
    assert result["status"] == "completed"
    (warning,) = [e.data for e in rec.of("warning") if e.data["kind"] == "partial"]
    assert warning["message"].startswith("3 multi-turn records (first at line 1) train only on some of their answers")
    assert [r["line"] for r in warning["records"]] == [1, 2, 3]
    assert json.loads((tmp_path / "run" / "dataset.json").read_text())["partial"] == 3


def test_loss_on_every_token_trains_on_the_prompts_too(tiny_model_dir, small_dataset, tmp_path):
    """The logged loss is the model's loss over the labels loss_on chose: with 'all', every token."""
    from transformers import AutoTokenizer

    from engine.data.formats import load_dataset_file
    from engine.data.tokenize import tokenize_records

    cfg = make_cfg(tiny_model_dir, small_dataset, tmp_path / "run", max_steps=2, loss_on="all", seq_len=256,
                   eval_split=0.25, eval_steps=2, learning_rate=1e-9)
    result, rec, trained = train(cfg)
    assert result["status"] == "completed" and RunConfig.load(tmp_path / "run" / "run.yaml").loss_on == "all"
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    records = load_dataset_file(small_dataset).records
    answers = tokenize_records(records, tok, "auto", 256)[1]
    every = tokenize_records(records, tok, "auto", 256, "all")[1]
    data = json.loads((tmp_path / "run" / "dataset.json").read_text())
    assert data["trained_tokens"] == every.trained_tokens == every.tokens > answers.trained_tokens
    # With a learning rate of 1e-9 the model stays the base: the eval loss is the base's over every token.
    from engine.data.split import train_eval_split

    rows = tokenize_records(records, tok, "auto", 256, "all")[0]
    _, eval_idx = train_eval_split(rows, 0.25, cfg.seed)
    model = fresh(cfg, tiny_model_dir).eval()
    total = count = 0
    with torch.no_grad():
        for i in eval_idx:
            ids = torch.tensor([rows[i]["input_ids"]])
            n = ids.shape[1] - 1
            total += model(input_ids=ids, labels=ids).loss.item() * n
            count += n
    assert rec.of("eval")[-1]["eval_loss"] == pytest.approx(total / count, rel=1e-3)


# ---------------------------------------------------------------- Failed and resumed runs in summary.json
def raise_at(step_to_fail: int):
    def inject(step: int):
        if step == step_to_fail:
            raise RuntimeError("injected failure")
    return inject


@pytest.mark.parametrize("case", ["nonfinite-stop", "exception", "callback"])
def test_a_failed_run_records_the_step_it_failed_at_in_summary_json(case, tiny_model_dir, small_dataset, tmp_path,
                                                                    monkeypatch):
    # The runs area reads summary["error"]["step"].
    import engine.train as train_module

    out = tmp_path / "run"
    cfg = make_cfg(tiny_model_dir, small_dataset, out, max_steps=4, nan_policy="stop", save_steps=2)
    injector = None
    if case == "nonfinite-stop":
        injector, expected = poison_once(1), 2  # global_step 1 = during step 2
    elif case == "exception":
        injector, expected = raise_at(2), 3
    else:
        # A callback fails after its step is done (global_step already counts it): the disk
        # fills up as on_save records the step-2 checkpoint in summary.json.
        real = train_module.write_summary

        def disk_full(output_dir, /, **changes):
            if "last_checkpoint" in changes:
                raise OSError(28, "No space left on device")
            return real(output_dir, **changes)

        monkeypatch.setattr(train_module, "write_summary", disk_full)
        expected = 2
    result, rec, _ = train(cfg, fault_injector=injector)
    error = json.loads((out / "summary.json").read_text())["error"]
    assert result["status"] == "failed" and error["step"] == expected
    assert f"step {expected}" in error["message"] and rec.of("error")[0]["step"] == expected
    if case == "exception":
        assert "RuntimeError: injected failure" in error["message"]
    if case == "callback":
        assert "No space left on device" in error["message"]


def test_a_failed_runs_history_gives_its_last_logged_step_and_the_step_it_failed_at(tiny_model_dir, small_dataset,
                                                                                      tmp_path):
    """Failed at step 4 after checkpoint-2: the history read "2" (the summary's step is the last
    checkpoint's) beside an error at step 4, with the curve ending at step 3."""
    from engine.runs import read_summary, run_info, steps_text

    out = tmp_path / "run"
    cfg = make_cfg(tiny_model_dir, small_dataset, out, max_steps=6, save_steps=2)
    result, rec, _ = train(cfg, fault_injector=raise_at(3))  # global_step 3 = during step 4
    assert result["status"] == "failed" and read_summary(out)["step"] == 2
    assert [e["step"] for e in rec.of("step")] == [1, 2, 3]  # step 4 failed before logging
    info = run_info(out)
    assert (info.steps, info.failed_step) == (3, 4)
    assert steps_text(info.steps, info.failed_step) == "3 (failed at 4)"


def test_a_run_that_fails_before_training_records_no_step(tiny_model_dir, small_dataset, tmp_path, monkeypatch):
    import engine.train as train_module

    def broken(*a, **kw):
        raise RuntimeError("injected failure while building the trainer")

    monkeypatch.setattr(train_module, "_build_trainer", broken)
    out = tmp_path / "run"
    result, _, _ = train(make_cfg(tiny_model_dir, small_dataset, out))
    error = json.loads((out / "summary.json").read_text())["error"]
    assert result["status"] == "failed" and "step" not in error and "at step" not in error["message"]


def test_a_resumed_runs_duration_is_the_training_time_of_all_its_legs(tiny_model_dir, small_dataset, tmp_path,
                                                                      capsys):
    from argparse import Namespace

    from engine.runs import cli_show, duration_text, read_summary, run_info

    out = tmp_path / "run"
    cfg = make_cfg(tiny_model_dir, small_dataset, out, max_steps=2, save_steps=2)
    first, _, _ = train(cfg)
    assert first["status"] == "completed" and (out / "checkpoint-2").exists()
    # The first leg ran an hour before the second: the gap is wall time, not training time.
    hour = 3600.0
    s = read_summary(out)
    leg1 = s["finished"] - s["started"]
    assert s["first_started"] == s["started"]
    began = s["started"] - hour
    (out / "summary.json").write_text(json.dumps({**s, "started": began, "first_started": began,
                                                  "finished": s["finished"] - hour}))
    second, rec, _ = train(cfg.replace(max_steps=4), resume=True)
    assert second["status"] == "completed" and [e["step"] for e in rec.of("step")] == [3, 4]
    s = read_summary(out)
    leg2 = s["finished"] - s["started"]
    info = run_info(out)
    assert info.duration_s == pytest.approx(leg1 + leg2) and info.duration_s < hour
    assert info.legs == 2 and s["earlier_legs_s"] == pytest.approx(leg1)
    # Started: the first leg's start, kept by the resume (the summary's "started" is this leg's).
    assert s["first_started"] == began and info.first_started == began and s["started"] > began + hour - 1
    capsys.readouterr()
    assert cli_show(Namespace(run=str(out), json=False)) == 0
    shown = capsys.readouterr().out
    assert f"\nduration           {duration_text(info)}\n" in shown and "(2 legs)" in shown
    assert f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(began))}" in shown and "(last resumed" in shown


def test_an_older_resumed_run_without_first_started_starts_when_its_folder_was_named(tmp_path):
    from engine.runs import first_start

    out = tmp_path / "20261203-182409-killed"
    out.mkdir()
    named = time.mktime(time.strptime("20261203-182409", "%Y%m%d-%H%M%S"))
    (out / "summary.json").write_text(json.dumps({"started": named + 40, "legs": 2}))
    assert first_start(out) == named
    (out / "summary.json").write_text(json.dumps({"started": named + 40, "legs": 1}))  # one leg: its own start
    assert first_start(out) == named + 40
    other = tmp_path / "my-run"
    other.mkdir()
    (other / "summary.json").write_text(json.dumps({"started": named + 40, "legs": 2}))
    assert first_start(other) == named + 40  # no timestamped name to go by


def test_nan_advice_fits_the_runs_precision():
    from engine.train import nan_advice

    fp16 = nan_advice(RunConfig.from_dict({"load_in": "fp16", "mixed_precision": "fp16", "learning_rate": 1e-3}))
    assert fp16.startswith("Use bf16 instead of fp16") and "lower the learning rate (now 0.001)" in fp16
    fp32 = nan_advice(RunConfig.from_dict({"load_in": "fp32", "mixed_precision": "no", "max_grad_norm": 0.0}))
    assert "bf16 instead" not in fp32 and "fp16 overflow is not the cause" in fp32
    assert "turn gradient clipping on" in fp32 and "raise adam_epsilon from 1e-08 to 1e-07" not in fp32
    assert "raise adam_epsilon from 1e-08 to 1e-7" in fp32
    bf16 = nan_advice(RunConfig.from_dict({"adam_epsilon": 1e-6}))
    assert "adam_epsilon" not in bf16 and "gradient clipping" not in bf16 and bf16.endswith("not the cause.")


# ---------------------------------------------------------------- LoRA+ and NEFTune
def _saved_groups(checkpoint: Path) -> list[dict]:
    state = torch.load(checkpoint / "optimizer.pt", weights_only=True)
    return [g for g in state["param_groups"] if g["params"]]


def test_loraplus_trains_the_b_matrices_at_ratio_times_the_lr_and_resumes(tiny_model_dir, small_dataset, tmp_path):
    out = tmp_path / "run"
    cfg = make_cfg(tiny_model_dir, small_dataset, out, max_steps=2, save_steps=2, lora_r=4,
                   lora_target_modules="all-linear", loraplus_lr_ratio=16.0, lr_scheduler="constant")
    result, _, trained = train(cfg)
    assert result["status"] == "completed"
    groups = _saved_groups(out / "checkpoint-2")
    lrs = sorted({g["lr"] for g in groups})
    assert lrs == pytest.approx([1e-2, 16e-2])  # A at the learning rate, B at 16x
    n_b = sum(1 for n, p in trained[0].named_parameters() if p.requires_grad and "lora_B" in n)
    n_a = sum(1 for n, p in trained[0].named_parameters() if p.requires_grad and "lora_A" in n)
    assert sum(len(g["params"]) for g in groups if g["lr"] > 0.1) == n_b > 0
    assert sum(len(g["params"]) for g in groups if g["lr"] < 0.1) == n_a
    # Resumed (with more steps), the optimizer comes back with both learning rates.
    result, rec, _ = train(cfg.replace(max_steps=4, save_steps=4), resume=True)
    assert result["status"] == "completed" and [e["step"] for e in rec.of("step")] == [3, 4]
    assert sorted({g["lr"] for g in _saved_groups(out / "checkpoint-4")}) == pytest.approx([1e-2, 16e-2])


def test_loraplus_settings_that_cannot_work_are_refused_with_a_fix():
    from engine.errors import ConfigErrors

    for values, says in [({"loraplus_lr_ratio": 0.5}, "would train B slower"),
                         ({"loraplus_lr_ratio": 16, "method": "ia3"}, "method is 'ia3'"),
                         ({"loraplus_lr_ratio": 16, "deepspeed": "ds.json"}, "DeepSpeed")]:
        with pytest.raises(ConfigErrors) as e:
            RunConfig.from_dict(values)
        (err,) = e.value.errors
        assert err.key == "loraplus_lr_ratio" and says in err.message and err.fix
    assert RunConfig.from_dict({"loraplus_lr_ratio": 16, "method": "qlora", "load_in": "nf4"}).loraplus_lr_ratio == 16


def test_neftune_noises_the_embeddings_while_training_only(tiny_model_dir, small_dataset, tmp_path):
    def first_loss(alpha: float, name: str) -> tuple[float, Any]:
        cfg = make_cfg(tiny_model_dir, small_dataset, tmp_path / name, max_steps=1, neftune_noise_alpha=alpha,
                       lora_dropout=0.0)
        result, rec, trained = train(cfg)
        assert result["status"] == "completed"
        return rec.of("step")[0]["loss"], trained[0]

    plain, _ = first_loss(0.0, "plain")
    again, _ = first_loss(0.0, "again")
    noisy, model = first_loss(50.0, "noisy")
    assert plain == again  # deterministic on the CPU: the difference below is the noise
    assert noisy != pytest.approx(plain, abs=1e-4)
    # The hook is gone after training: the saved model's embeddings are noise-free.
    emb = model.get_input_embeddings()
    assert not emb._forward_hooks


def test_warmup_steps_replace_the_ratio(tiny_model_dir, small_dataset, tmp_path):
    """The logged learning rates are transformers' linear schedule with that many warm-up steps."""
    from transformers.optimization import get_linear_schedule_with_warmup

    def logged(cfg):
        result, rec, _ = train(cfg)
        assert result["status"] == "completed"
        return [e["lr"] for e in rec.of("step")]

    def want(warmup):
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-2)
        sched = get_linear_schedule_with_warmup(opt, warmup, 8)
        out = []
        for _ in range(8):
            out.append(sched.get_last_lr()[0])
            opt.step()
            sched.step()
        return out

    cfg = make_cfg(tiny_model_dir, small_dataset, tmp_path / "run", max_steps=8, lr_scheduler="linear",
                   learning_rate=1e-2, warmup_ratio=0.5, warmup_steps=3)
    assert logged(cfg) == pytest.approx(want(3))
    assert logged(cfg.replace(warmup_steps=0, output_dir=str(tmp_path / "ratio"))) == pytest.approx(want(4))
    # A ratio worth less than one step (0.1 x 8 = 0.8) is no warm-up: transformers rounds it up to one
    # step at learning rate 0, which trained nothing.
    short = logged(cfg.replace(warmup_steps=0, warmup_ratio=0.1, output_dir=str(tmp_path / "short")))
    assert short == pytest.approx(want(0)) and short[0] == pytest.approx(1e-2)
    assert logged(cfg.replace(warmup_steps=0, warmup_ratio=0.125, output_dir=str(tmp_path / "one"))) == \
        pytest.approx(want(1))  # exactly one step asked: one step


def test_min_lr_ratio_ends_the_cosine_schedule_there(tiny_model_dir, small_dataset, tmp_path):
    """The logged learning rates are those of transformers' own cosine-with-floor schedule."""
    from transformers.optimization import get_cosine_with_min_lr_schedule_with_warmup

    from engine.errors import ConfigErrors

    cfg = make_cfg(tiny_model_dir, small_dataset, tmp_path / "run", max_steps=8, min_lr_ratio=0.1,
                   learning_rate=1e-2, warmup_ratio=0.0)
    result, rec, _ = train(cfg)
    assert result["status"] == "completed"
    logged = [e["lr"] for e in rec.of("step")]
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-2)
    sched = get_cosine_with_min_lr_schedule_with_warmup(opt, 0, 8, min_lr_rate=0.1)
    want = []
    for _ in range(8):
        want.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert logged == pytest.approx(want) and min(logged) >= 1e-3 - 1e-12
    plain = train(cfg.replace(min_lr_ratio=0.0, output_dir=str(tmp_path / "plain")))[1]
    assert min(e["lr"] for e in plain.of("step")) < 1e-3  # without the floor the cosine goes lower
    with pytest.raises(ConfigErrors) as e:
        cfg.replace(lr_scheduler="linear")
    assert e.value.errors[0].key == "min_lr_ratio" and e.value.errors[0].fix == {"lr_scheduler": "cosine"}


def _folder_state(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*"))}


def test_a_new_run_is_refused_in_a_folder_that_holds_a_run(tiny_model_dir, small_dataset, tmp_path):
    """Without --resume, reusing a run's folder mixed the two: steps 1..2 then 1 in metrics.jsonl, the
    old checkpoints beside the new, the old final/ replaced."""
    cfg = make_cfg(tiny_model_dir, small_dataset, tmp_path / "run", max_steps=2, save_steps=1)
    assert train(cfg)[0]["status"] == "completed"
    before = _folder_state(tmp_path / "run")
    result, rec, _ = train(cfg.replace(max_steps=1))
    assert result["status"] == "failed"
    (err,) = rec.of("error")
    assert f"output_dir '{tmp_path / 'run'}' already holds a run (run.yaml, metrics.jsonl, final, 2 checkpoints)" \
        in err["message"] and "--resume" in err["hint"]
    assert _folder_state(tmp_path / "run") == before
    # An empty folder, or one the app made for the run (its worker.log), is fine.
    (tmp_path / "fresh").mkdir()
    (tmp_path / "fresh" / "worker.log").write_text("")
    assert train(cfg.replace(output_dir=str(tmp_path / "fresh"), max_steps=1))[0]["status"] == "completed"


def test_a_run_that_fails_before_its_first_step_is_recorded_and_its_folder_can_be_reused(
        tiny_model_dir, small_dataset, tmp_path, capsys):
    """A run whose dataset had no usable record left run.yaml alone in its folder: no summary, so the
    history never listed it (runs/<time>-lora/ orphans), and a rerun there was refused as 'already
    holds a run' while runs show said 'status unknown'."""
    import os

    from engine.cli import main
    from engine.runs import list_runs, run_details

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"foo": "a", "bar": "b"}\n' * 3)
    out = tmp_path / "od1"
    failed, _, _ = train(make_cfg(tiny_model_dir, bad, out, max_steps=2))
    assert failed["status"] == "failed" and failed["output_dir"] == str(out)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "failed" and "can't tell the record format" in summary["error"]["message"]
    assert summary["config"]["dataset"] == str(bad) and not (out / "worker.pid").exists()
    details = run_details(out)
    assert details["status"] == "failed" and "nothing to resume from" in details["resume"]["reason"]
    # Without output_dir the folder made under the runs folder is listed, with its error.
    assert train(make_cfg(tiny_model_dir, bad, "", max_steps=2))[0]["status"] == "failed"
    (listed,) = [r for r in list_runs() if r.path != out]
    assert listed.status == "failed" and listed.method == "lora"
    # The rerun with a good dataset takes the folder over: nothing was trained there to lose.
    run_yaml = tmp_path / "good.yaml"
    make_cfg(tiny_model_dir, small_dataset, out, max_steps=2).save(run_yaml)
    assert main(["train", str(run_yaml)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed" and "error" not in summary and summary["step"] == 2
    # A folder that trained something is still refused, and so is one where a run is starting.
    assert main(["train", str(run_yaml)]) == 1
    assert "already holds a run" in capsys.readouterr().err
    starting = tmp_path / "starting"
    starting.mkdir()
    (starting / "run.yaml").write_text((out / "run.yaml").read_text())
    (starting / "worker.pid").write_text(str(os.getppid()))
    assert main(["train", str(run_yaml), "--output_dir", str(starting)]) == 1
    assert f"output_dir '{starting}' is in use: a run is starting or training there" in capsys.readouterr().err


def test_a_resume_that_changes_what_the_checkpoints_hold_is_refused_before_anything_is_written(
        tiny_model_dir, small_dataset, tmp_path):
    cfg = make_cfg(tiny_model_dir, small_dataset, tmp_path / "run", max_steps=2, save_steps=1, lora_r=8)
    assert train(cfg)[0]["status"] == "completed"
    before = _folder_state(tmp_path / "run")
    for changed, said in ((dict(lora_r=4), "a resume can't change lora_r (lora_r: 8 → 4)"),
                          (dict(method="ia3"), "a resume can't change method (method: 'lora' → 'ia3')"),
                          (dict(optimizer="sgd"), "a resume can't change optimizer")):
        result, rec, _ = train(cfg.replace(max_steps=3, **changed), resume=True)
        assert result["status"] == "failed"
        (err,) = rec.of("error")
        assert said in err["message"] and "Resume with the run's own values" in err["hint"], err["message"]
        assert _folder_state(tmp_path / "run") == before  # run.yaml, summary.json, metrics untouched
    # Settings that don't shape the checkpoints may change: a resume with a lower LR trains on.
    result, _, _ = train(cfg.replace(max_steps=3, learning_rate=1e-3, lora_alpha=32), resume=True)
    assert result["status"] == "completed" and result["step"] == 3


def test_an_empty_dataset_says_it_has_no_records(tiny_model_dir, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    result, rec, _ = train(make_cfg(tiny_model_dir, empty, tmp_path / "run"))
    assert result["status"] == "failed"
    (err,) = rec.of("error")
    assert err["message"].endswith(f"no trainable records: {empty} has no records")  # not "...left out: "


def test_the_cli_line_of_a_failed_run_says_where_it_stopped_and_how_to_go_on(capsys, tmp_path):
    from engine.events import FINISHED
    from engine.train import _print_event

    run = tmp_path / "20261203-181123-nanlr"
    run.mkdir()
    _print_event(FINISHED, {"status": "failed", "output_dir": str(run), "error": {"step": 5},
                            "final_loss_mean": None, "final_loss_window": None}, sys.stdout)
    line = capsys.readouterr().out.strip()
    # Not "the mean of the last None", nor "no step was logged" after four logged steps.
    assert line == (f"failed at step 5: {run} (no checkpoint was saved yet; finetune-studio train {run} --resume "
                    "starts it over)")
    (run / "checkpoint-4").mkdir()
    (run / "checkpoint-4" / "trainer_state.json").write_text("{}")
    _print_event(FINISHED, {"status": "failed", "output_dir": str(run), "error": {"step": 5}}, sys.stdout)
    assert capsys.readouterr().out.strip() == (
        f"failed at step 5: {run} (its last checkpoint is checkpoint-4 (step 4); continue it with: "
        f"finetune-studio train {run} --resume)")
    _print_event(FINISHED, {"status": "failed", "output_dir": None}, sys.stdout)
    assert capsys.readouterr().out.strip() == "failed: nothing was trained"
    _print_event(FINISHED, {"status": "completed", "output_dir": "/runs/r", "final_loss_mean": 2.68081,
                            "final_loss_window": 10}, sys.stdout)
    assert capsys.readouterr().out.strip() == "completed: /runs/r (final loss 2.6808, the mean of the last 10 steps)"


def test_an_eval_split_that_rounds_up_to_far_more_than_asked_is_said(tiny_model_dir, tmp_path):
    data = tmp_path / "four.jsonl"
    data.write_text("".join(json.dumps({"instruction": f"q{i}", "output": f"a{i}"}) + "\n" for i in range(4)))
    result, rec, _ = train(make_cfg(tiny_model_dir, data, tmp_path / "run", eval_split=0.05, max_steps=1))
    assert result["status"] == "completed"
    (w,) = [e for e in rec.of("warning") if e["kind"] == "eval_split"]
    assert w["message"].startswith("eval_split 0.05 of 4 usable records holds out 1 (25%;") and w["fix"] == {
        "eval_split": 0.0}
    _, rec, _ = train(make_cfg(tiny_model_dir, data, tmp_path / "run2", eval_split=0.25, max_steps=1))
    assert not [e for e in rec.of("warning") if e["kind"] == "eval_split"]  # 1 of 4 is what was asked


def test_an_eval_split_that_holds_out_nothing_is_said(tiny_model_dir, tmp_path):
    """One usable record can't be split: the run evaluates nothing, and says so with the fix."""
    data = tmp_path / "one.jsonl"
    data.write_text(json.dumps({"instruction": "q", "output": "a"}) + "\n"
                    + json.dumps({"instruction": "q2", "output": ""}) + "\n")  # left out: no answer
    result, rec, _ = train(make_cfg(tiny_model_dir, data, tmp_path / "run", eval_split=0.1, max_steps=1))
    assert result["status"] == "completed" and not rec.of("eval")
    (w,) = [e for e in rec.of("warning") if e["kind"] == "eval_split"]
    assert w["message"] == ("eval_split 0.1 of 1 usable record holds out nothing (one record can't be split), "
                            "so the run evaluates nothing")
    assert w["fix"] == {"eval_split": 0.0}
    _, rec, _ = train(make_cfg(tiny_model_dir, data, tmp_path / "run2", eval_split=0.0, max_steps=1))
    assert not [e for e in rec.of("warning") if e["kind"] == "eval_split"]


def test_a_run_far_from_its_methods_usual_learning_rate_warns_with_the_fix(tiny_model_dir, small_dataset, tmp_path):
    result, rec, _ = train(make_cfg(tiny_model_dir, small_dataset, tmp_path / "run", method="full", max_steps=1,
                                    learning_rate=1e-3))
    assert result["status"] == "completed"
    (w,) = [e for e in rec.of("warning") if e["kind"] == "learning_rate"]
    assert "learning rate 0.001 is 50x above Full fine-tuning's usual 2e-5" in w["message"]
    assert w["fix"] == {"learning_rate": 2e-5}


def test_resuming_a_copied_run_folder_is_refused_with_the_fix(tiny_model_dir, small_dataset, tmp_path, capsys):
    """run.yaml names its folder absolutely: `train COPY/run.yaml --resume` continued (and rewrote) the
    original, leaving the copy as it was."""
    from engine.cli import main

    out = tmp_path / "run"
    assert train(make_cfg(tiny_model_dir, small_dataset, out, max_steps=1, save_steps=1))[0]["status"] == "completed"
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    before = (out / "summary.json").read_text()
    assert main(["train", str(copy / "run.yaml"), "--resume", "--max_steps", "2"]) == 2
    err = capsys.readouterr().err
    assert f"{copy / 'run.yaml'} is the run.yaml of {copy}, but names output_dir {out}" in err
    assert f"add --output_dir {copy}" in err and (out / "summary.json").read_text() == before
    assert main(["train", str(copy / "run.yaml"), "--resume", "--max_steps", "2", "--output_dir", str(copy)]) == 0
    assert json.loads((copy / "summary.json").read_text())["step"] == 2
    assert RunConfig.load(copy / "run.yaml").output_dir == str(copy) and (out / "summary.json").read_text() == before


def test_resume_continues_a_run_named_by_run_yaml_folder_or_name_and_refuses_a_preset(
        tiny_model_dir, small_dataset, tmp_path, copy_preset, capsys):
    """`train PRESET.yaml --resume` started a new run ('no checkpoint in <new folder>; starting from the
    beginning'); `train NAME --resume` said 'no such run config file', `train FOLDER --resume` 'Is a
    directory'."""
    from engine.cli import main
    from engine.paths import runs_dir

    assert main(["train", str(copy_preset("demo.yaml")), "--resume", "--max_steps", "2"]) == 2
    err = capsys.readouterr().err
    assert "--resume continues a run, but" in err and "names no output_dir" in err
    assert "its folder or its name" in err and not runs_dir().exists()

    config = tmp_path / "named.yaml"
    make_cfg(tiny_model_dir, small_dataset, "", max_steps=1, save_steps=1, run_name="named").save(config)
    assert main(["train", str(config)]) == 0
    (folder,) = runs_dir().iterdir()
    assert main(["train", "named", "--resume", "--max_steps", "2"]) == 0
    assert json.loads((folder / "summary.json").read_text())["step"] == 2
    assert main(["train", str(folder), "--resume", "--max_steps", "3"]) == 0
    assert main(["train", folder.name, "--resume", "--max_steps", "4"]) == 0
    assert json.loads((folder / "summary.json").read_text())["step"] == 4
    assert [p.name for p in runs_dir().iterdir()] == [folder.name]  # no new run was started
    capsys.readouterr()
    assert main(["train", str(tmp_path), "--resume"]) == 2
    assert "is a folder but not a run folder" in capsys.readouterr().err


def test_a_run_with_its_own_output_dir_is_in_the_run_history_and_found_by_name(tiny_model_dir, small_dataset,
                                                                                tmp_path, capsys):
    """`train --run_name sigint1 --output_dir /tmp/x/sigint1`: runs list didn't show it, runs show sigint1
    said no such run, and runs show FOLDER suggested `export-gguf sigint1`, which failed."""
    from engine.adapters import list_adapters
    from engine.cli import main
    from engine.runs import find_run, list_runs

    first = tmp_path / "x" / "sigint1"
    assert train(make_cfg(tiny_model_dir, small_dataset, first, max_steps=1, run_name="sigint1"))[0]["status"] \
        == "completed"
    assert [r.path for r in list_runs()] == [first]
    assert main(["runs", "list"]) == 0
    assert "sigint1" in capsys.readouterr().out
    assert main(["runs", "show", "sigint1"]) == 0
    shown = capsys.readouterr().out
    assert f"folder             {first}" in shown and "(finetune-studio export-gguf sigint1 writes one)" in shown
    assert [a.path for a in list_adapters()] == [str(first / "final")]
    # Another folder of that name, elsewhere: the name finds the newest; the older is named by its folder.
    second = tmp_path / "y" / "sigint1"
    assert train(make_cfg(tiny_model_dir, small_dataset, second, max_steps=1, run_name="sigint1"))[0]["status"] \
        == "completed"
    assert find_run("sigint1") == second and len(list_runs()) == 2
    assert main(["runs", "show", str(first)]) == 0
    assert f"(finetune-studio export-gguf {first} writes one)" in capsys.readouterr().out
    # A resume doesn't index the folder twice; a folder deleted since is skipped.
    train(make_cfg(tiny_model_dir, small_dataset, second, max_steps=2, run_name="sigint1"), resume=True)
    shutil.rmtree(second)
    assert [r.path for r in list_runs()] == [first] and find_run("sigint1") == first
    from engine.runs import run_folders_file

    assert json.loads(run_folders_file().read_text())["folders"] == [str(first), str(second)]


def test_a_full_runs_checkpoint_is_a_whole_model_the_other_commands_take(tiny_model_dir, small_dataset, tmp_path,
                                                                          capsys):
    """A full run's checkpoint held no tokenizer: the hint 'use its newest checkpoint' failed in generate,
    export-gguf and adapters compare."""
    from engine.cli import main

    out = tmp_path / "run"
    assert train(make_cfg(tiny_model_dir, small_dataset, out, method="full", max_steps=2, save_steps=1,
                          learning_rate=2e-5))[0]["status"] == "completed"
    shutil.move(out / "final", tmp_path / "final-elsewhere")  # as a run killed before the end has none
    ckpt = out / "checkpoint-2"
    assert (ckpt / "tokenizer.json").is_file() and (ckpt / "config.json").is_file()
    assert main(["generate", "--base", str(out), "--prompt", "hi"]) == 2
    assert f"Use its newest checkpoint as the model: {ckpt} (step 2)" in capsys.readouterr().err
    assert main(["generate", "--base", str(ckpt), "--prompt", "hi", "--max_new_tokens", "3", "--device", "cpu"]) == 0
    capsys.readouterr()
    assert main(["adapters", "compare", str(ckpt), "--dataset", str(small_dataset), "--limit", "4", "--samples", "0",
                 "--device", "cpu"]) == 0
    assert re.search(r"\n  run-checkpoint-2 +[0-9.]+ ", capsys.readouterr().out)  # scored, named by its run
