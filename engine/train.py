"""The training recipe, top to bottom: setup -> train -> save.

``run_training(cfg)`` is what the worker process, ``finetune-studio train`` and
``accelerate launch -m engine.train RUN.yaml`` all run. It builds on transformers'
Trainer: checkpoints (model/adapter, optimizer, scheduler, RNG, data position), resume,
gradient accumulation, mixed precision and DDP come from there. Our part is the
:class:`EventCallback`, which turns Trainer's logs into JSON-line events and
``metrics.jsonl`` rows and obeys stop/save commands, and the guards around ``train()``:
non-finite loss (roll back to the last good checkpoint with a lower learning rate) and
CUDA out-of-memory (halve the micro-batch, double accumulation, resume).
"""

from __future__ import annotations

import json
import math
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine import events as ev
from engine.config import RunConfig
from engine.errors import ConfigErrors, NonFiniteLoss, OutOfMemory, StudioError
from engine.events import EventWriter
from engine.files import atomic_write_text
from engine.runs import last_checkpoint, new_run_dir, write_summary


# ---------------------------------------------------------------- Commands from the client
@dataclass
class Commands:
    """Stop/save requests, from the worker's stdin, a signal, or a STOP file in the run folder.

    The STOP/SAVE files let a GUI that re-attached to a running worker (and so does not own
    its stdin) still control it.
    """

    output_dir: Path | None = None
    _queue: queue.Queue = field(default_factory=queue.Queue)
    stop_requested: bool = False

    def put(self, cmd: str) -> None:
        self._queue.put(cmd)

    def poll(self) -> set[str]:
        """Commands that arrived since the last poll (cheap: called once per step)."""
        got = set()
        while True:
            try:
                got.add(self._queue.get_nowait())
            except queue.Empty:
                break
        if self.output_dir is not None:
            for name in ("STOP", "SAVE"):
                flag = self.output_dir / name
                if flag.exists():
                    got.add(name.lower())
                    try:
                        flag.unlink()
                    except OSError:
                        pass
        if "stop" in got:
            self.stop_requested = True
        return got

    def read_stdin_forever(self, stream=None) -> None:
        """Feed JSON-line commands from ``stream`` (the worker's stdin) into the queue."""
        stream = stream or sys.stdin
        for line in stream:
            try:
                cmd = json.loads(line).get("cmd")
            except (json.JSONDecodeError, AttributeError):
                cmd = line.strip()
            if cmd:
                self.put(cmd)
        # stdin closed: the GUI went away. Keep training; the run folder records everything.


# ---------------------------------------------------------------- Setup
@dataclass
class Prepared:
    """Everything ``train`` needs, built once by :func:`setup`."""

    cfg: RunConfig
    output_dir: Path
    tokenizer: Any
    model: Any
    method: Any
    env: Any
    train_rows: list
    eval_rows: list
    data_stats: dict
    total_params: int
    trainable_params: int


def _count_params(model: Any) -> tuple[int, int]:
    if hasattr(model, "get_nb_trainable_parameters"):
        trainable, total = model.get_nb_trainable_parameters()
        return int(total), int(trainable)
    seen, total, trainable = set(), 0, 0
    for p in model.parameters():
        if id(p) in seen:
            continue  # tied embeddings count once
        seen.add(id(p))
        n = p.numel() * (2 if p.__class__.__name__ == "Params4bit" else 1)
        total += n
        trainable += n if p.requires_grad else 0
    return total, trainable


def load_training_records(cfg: RunConfig) -> tuple[list, dict]:
    """Read the dataset (the demo one for 'demo'); broken records are reported, not used."""
    from engine.data.formats import load_dataset_file
    from engine.data.split import content_hash
    from engine.paths import demo_dataset_path

    path = demo_dataset_path() if cfg.dataset == "demo" else Path(cfg.dataset)
    ds = load_dataset_file(path, cfg.dataset_format)
    good = [r for r in ds.records if not r.broken]
    info = {"path": str(path), "detected": ds.detected, "records": len(good),
            "broken": len(ds.records) - len(good), "hash": content_hash(good)}
    return good, info


def setup(cfg: RunConfig, writer: EventWriter, *, resume: bool = False, is_main: bool = True) -> Prepared:
    """Check, load data and model, apply the method. Fails before loading anything heavy."""
    import torch

    from engine import precision
    from engine.data.split import train_eval_split
    from engine.data.tokenize import tokenize_records
    from engine.methods import get_method
    from engine.models import check_weights_safe, load_tokenizer, resolve_model_path

    env = precision.detect_environment()
    precision.check_environment(cfg, env)  # invalid combinations fail before any loading
    method = get_method(cfg.method)
    model_path = resolve_model_path(cfg.model)
    check_weights_safe(model_path, cfg.allow_pickle)

    output_dir = Path(cfg.output_dir) if cfg.output_dir else new_run_dir(cfg.method, cfg.run_name)
    output_dir.mkdir(parents=True, exist_ok=True)
    if resume and last_checkpoint(output_dir) is None:
        writer.emit(ev.WARNING, kind="resume", message=f"no checkpoint in {output_dir}; starting from "
                    "the beginning")
    cfg = cfg.replace(output_dir=str(output_dir))
    if is_main:
        cfg.save(output_dir / "run.yaml")

    records, data_info = load_training_records(cfg)
    tokenizer = load_tokenizer(str(model_path), trust_remote_code=cfg.trust_remote_code)
    rows, stats = tokenize_records(records, tokenizer, cfg.template, cfg.seq_len)
    if not rows:
        raise StudioError("no trainable records: every record was dropped", hint=json.dumps(stats.problems[:3]))
    train_idx, eval_idx = train_eval_split(rows, cfg.eval_split, cfg.seed)
    train_rows = [rows[i] for i in train_idx]
    eval_rows = [rows[i] for i in eval_idx]
    data_stats = {**data_info, **stats.to_dict(), "train": len(train_rows), "eval": len(eval_rows)}
    if stats.truncated:
        writer.emit(ev.WARNING, kind="truncation", message=f"{stats.truncated} of {stats.records} records "
                    f"are longer than seq_len={cfg.seq_len} and were truncated (longest: {stats.longest} "
                    "tokens)", fix={"seq_len": _next_pow2(stats.longest)})
    if stats.dropped:
        writer.emit(ev.WARNING, kind="dropped", message=f"{stats.dropped} records had nothing to train on "
                    "and were left out", hint=json.dumps(stats.problems[:5], ensure_ascii=False))

    torch.manual_seed(cfg.seed)
    model = precision.load_model(cfg, model_path, env)
    model = method.apply(model, cfg)
    total, trainable = _count_params(model)
    return Prepared(cfg, output_dir, tokenizer, model, method, env, train_rows, eval_rows, data_stats,
                    total, trainable)


def _next_pow2(n: int) -> int:
    return 1 << max(4, math.ceil(math.log2(max(n, 1))))


# ---------------------------------------------------------------- The Trainer callback
def _gpu_memory() -> dict[str, int]:
    import torch

    if not torch.cuda.is_available():
        return {}
    return {"gpu_mem_allocated": int(torch.cuda.memory_allocated()),
            "gpu_mem_reserved": int(torch.cuda.memory_reserved()),
            "gpu_mem_peak_allocated": int(torch.cuda.max_memory_allocated()),
            "gpu_mem_peak_reserved": int(torch.cuda.max_memory_reserved())}


def _make_callback_class():
    from transformers import TrainerCallback

    class EventCallback(TrainerCallback):
        """Trainer logs -> events and metrics.jsonl; commands -> control flags; NaN guard."""

        def __init__(self, writer: EventWriter, commands: Commands, output_dir: Path, is_main: bool):
            self.writer, self.commands, self.output_dir, self.is_main = writer, commands, output_dir, is_main
            self.metrics = open(output_dir / "metrics.jsonl", "a", encoding="utf-8") if is_main else None
            self.t_last = time.time()
            self.tokens_last = 0
            self.step_last = 0
            self.t_start = time.time()
            self.step_start = 0
            self.nonfinite: dict | None = None
            self.last_loss: float | None = None
            self.best_eval: float | None = None

        def close(self) -> None:
            if self.metrics:
                self.metrics.close()

        def _row(self, row: dict) -> None:
            if self.metrics:
                self.metrics.write(json.dumps(row) + "\n")
                self.metrics.flush()

        def on_train_begin(self, args, state, control, **kw):
            self.t_start = self.t_last = time.time()
            self.step_start = self.step_last = state.global_step
            self.tokens_last = getattr(state, "num_input_tokens_seen", 0) or 0

        def on_step_end(self, args, state, control, **kw):
            got = self.commands.poll()
            if "save" in got or "stop" in got:
                control.should_save = True
            if "stop" in got:
                control.should_training_stop = True
                self.writer.emit(ev.WARNING, kind="stopping", message=f"stopping after step "
                                 f"{state.global_step}; saving a checkpoint")

        def on_log(self, args, state, control, logs=None, **kw):
            logs = logs or {}
            step = state.global_step
            if "loss" in logs:
                now = time.time()
                tokens = getattr(state, "num_input_tokens_seen", 0) or 0
                dt = max(now - self.t_last, 1e-9)
                dsteps = max(step - self.step_last, 1)
                loss = float(logs["loss"])
                grad_norm = logs.get("grad_norm")
                grad_norm = float(grad_norm) if grad_norm is not None else None
                rate = (step - self.step_start) / max(now - self.t_start, 1e-9)
                eta = (state.max_steps - step) / rate if rate > 0 else None
                row = {"step": step, "epoch": round(float(logs.get("epoch", state.epoch or 0)), 4),
                       "loss": loss, "lr": float(logs.get("learning_rate", 0.0)), "grad_norm": grad_norm,
                       "tokens_per_s": (tokens - self.tokens_last) / dt,
                       "samples_per_s": dsteps * args.per_device_train_batch_size
                       * args.gradient_accumulation_steps * max(args.world_size, 1) / dt,
                       "time": now, **_gpu_memory()}
                self.t_last, self.tokens_last, self.step_last = now, tokens, step
                if not math.isfinite(loss) or (grad_norm is not None and not math.isfinite(grad_norm)):
                    self.nonfinite = {"step": step, "loss": loss, "grad_norm": grad_norm}
                    control.should_training_stop = True
                    return
                self.last_loss = loss
                self._row(row)
                if self.is_main:
                    self.writer.emit(ev.STEP, max_steps=state.max_steps, eta_s=eta, **row)
            if "eval_loss" in logs:
                eval_loss = float(logs["eval_loss"])
                if math.isfinite(eval_loss):
                    self.best_eval = eval_loss if self.best_eval is None else min(self.best_eval, eval_loss)
                row = {"step": step, "epoch": round(float(state.epoch or 0), 4), "eval_loss": eval_loss,
                       "time": time.time()}
                self._row(row)
                if self.is_main:
                    self.writer.emit(ev.EVAL, **row)

        def on_save(self, args, state, control, **kw):
            if self.is_main:
                path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                self.writer.emit(ev.CHECKPOINT, step=state.global_step, path=str(path))
                write_summary(self.output_dir, step=state.global_step, last_checkpoint=str(path))

    return EventCallback


# ---------------------------------------------------------------- Train
def _training_arguments(cfg: RunConfig, prep: Prepared):
    from transformers import TrainingArguments

    from engine import precision

    has_eval = bool(prep.eval_rows)
    kwargs = dict(
        output_dir=str(prep.output_dir),
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        num_train_epochs=cfg.num_epochs,
        max_steps=cfg.max_steps,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_ratio,  # a float < 1 is a ratio of the total steps (transformers 5)
        weight_decay=cfg.weight_decay,
        seed=cfg.seed,
        logging_steps=cfg.logging_steps,
        logging_nan_inf_filter=False,  # we must see a NaN to act on it
        include_num_input_tokens_seen="non_padding",
        save_strategy="steps" if cfg.save_steps else "no",
        save_steps=cfg.save_steps or 500,
        save_total_limit=cfg.save_total_limit or None,
        eval_strategy=("steps" if cfg.eval_steps else "epoch") if has_eval else "no",
        eval_steps=cfg.eval_steps or None,
        report_to="none",
        disable_tqdm=True,
        remove_unused_columns=False,
        dataloader_pin_memory=False,
    )  # gradient checkpointing is applied by precision.load_model, before the method
    kwargs.update(precision.trainer_precision_kwargs(cfg, prep.env))  # bf16/fp16, optim, device, eps, clip
    return TrainingArguments(**kwargs)


def _model_card(prep: Prepared, result: dict) -> str:
    cfg = prep.cfg
    hp = "\n".join(f"| {k} | {v} |" for k, v in cfg.to_dict().items()
                   if k not in ("output_dir",))
    return f"""---
library_name: {'peft' if prep.method.peft else 'transformers'}
base_model: {cfg.model}
tags: [finetune-studio, {cfg.method}]
---
# {prep.output_dir.name}

Fine-tuned with Finetune Studio.

- **Base model:** `{cfg.model}`
- **Method:** {prep.method.label} (`{cfg.method}`), weights loaded as `{cfg.load_in}`, mixed precision `{cfg.mixed_precision}`
- **Trainable parameters:** {prep.trainable_params:,} of {prep.total_params:,}
- **Data:** `{prep.data_stats.get('path')}` ({prep.data_stats.get('detected')}); {prep.data_stats.get('train')} train / {prep.data_stats.get('eval')} eval records; content hash `{prep.data_stats.get('hash')}`; {prep.data_stats.get('truncated')} truncated to {cfg.seq_len} tokens
- **Steps:** {result.get('step')}; **final training loss:** {_fmt(result.get('final_loss'))}; **best eval loss:** {_fmt(result.get('best_eval_loss'))}
- **Status:** {result.get('status')}

## Load it
```python
{_load_snippet(prep)}
```

## Hyperparameters
| key | value |
|---|---|
{hp}
"""


def _fmt(x: Any) -> str:
    return f"{x:.4f}" if isinstance(x, (int, float)) else "-"


def _load_snippet(prep: Prepared) -> str:
    if prep.method.peft:
        return ("from peft import AutoPeftModelForCausalLM\n"
                f"model = AutoPeftModelForCausalLM.from_pretrained({str(prep.output_dir / 'final')!r})")
    if prep.cfg.method == "adapter":
        return ("from engine.methods import get_method\n"
                f"# bottleneck adapter: get_method('adapter').load(base_model, {str(prep.output_dir / 'final')!r}, cfg)")
    return ("from transformers import AutoModelForCausalLM\n"
            f"model = AutoModelForCausalLM.from_pretrained({str(prep.output_dir / 'final')!r})")


def _is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def run_training(cfg: RunConfig, writer: EventWriter | None = None, *, resume: bool = False,
                 commands: Commands | None = None,
                 fault_injector: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Run one training from a validated config; emit events; never lose progress.

    Args:
        cfg: the run config.
        writer: where events go (default: stdout as JSON lines).
        resume: continue from the newest checkpoint in ``cfg.output_dir``.
        commands: stop/save requests (the worker feeds it from stdin).
        fault_injector: tests only: called with the global step before each step; may raise
            (e.g. ``torch.OutOfMemoryError``) to exercise the guards on a CPU.

    Returns:
        The final summary (status, output_dir, final_loss, best_eval_loss, peaks...).
    """
    from accelerate import PartialState

    state = PartialState()
    is_main = state.is_main_process
    writer = writer or EventWriter()
    if not is_main:
        writer = EventWriter(stream=open(os.devnull, "w"))  # one event stream per run, from rank 0
    commands = commands or Commands()
    started = time.time()
    prep = None
    try:
        prep = setup(cfg, writer, resume=resume, is_main=is_main)
        cfg = prep.cfg
        commands.output_dir = prep.output_dir
        if is_main:
            (prep.output_dir / "worker.pid").write_text(str(os.getpid()))
            mirror = open(prep.output_dir / "events.jsonl", "a", encoding="utf-8")
            writer.mirror = mirror
            write_summary(prep.output_dir, status="running", started=started, finished=None,
                          config=cfg.to_dict(), dataset_hash=prep.data_stats["hash"],
                          dataset_records=prep.data_stats["records"], pid=os.getpid())
            atomic_write_text(prep.output_dir / "dataset.json", json.dumps(prep.data_stats, indent=2,
                                                                          ensure_ascii=False))
        writer.emit(ev.STARTED, config=cfg.to_dict(), output_dir=str(prep.output_dir),
                    total_params=prep.total_params, trainable_params=prep.trainable_params,
                    device=prep.env.device_name if hasattr(prep.env, "device_name") else
                    ("cuda" if prep.env.cuda else "cpu"),
                    gpu={"name": prep.env.gpu_name, "total_bytes": prep.env.gpu_total_bytes},
                    dataset=prep.data_stats, resumed=bool(resume and last_checkpoint(prep.output_dir)))
        result = _train_with_guards(prep, writer, commands, resume, fault_injector, is_main)
    except ConfigErrors as e:
        writer.emit(ev.ERROR, **e.to_dict(), errors=[x.to_dict() for x in e.errors])
        result = {"status": "failed", "error": e.to_dict()}
    except StudioError as e:
        writer.emit(ev.ERROR, **e.to_dict())
        result = {"status": "failed", "error": e.to_dict()}
    except Exception as e:  # noqa: BLE001 - a worker must report, not die silently
        import traceback

        err = StudioError(f"training failed: {type(e).__name__}: {e}",
                          hint="This is a bug or an unexpected library error; the traceback is in the log.")
        writer.emit(ev.LOG, text=traceback.format_exc())
        writer.emit(ev.ERROR, **err.to_dict())
        result = {"status": "failed", "error": err.to_dict()}
    result.update(started=started, finished=time.time())
    if prep is not None:
        result["output_dir"] = str(prep.output_dir)
        if is_main:
            result = write_summary(prep.output_dir, **result)
            try:
                (prep.output_dir / "worker.pid").unlink()
            except OSError:
                pass
    writer.emit(ev.FINISHED, **{k: v for k, v in result.items() if k != "config"})
    if writer.mirror:
        writer.mirror.close()
        writer.mirror = None
    return result


def _train_with_guards(prep: Prepared, writer: EventWriter, commands: Commands, resume: bool,
                       fault_injector: Callable[[int], None] | None, is_main: bool) -> dict[str, Any]:
    """Run Trainer.train(); on NaN roll back, on OOM shrink the micro-batch; then save."""
    import torch
    from transformers import DataCollatorForSeq2Seq, DataCollatorWithFlattening, PrinterCallback

    cfg = prep.cfg
    collator = (DataCollatorWithFlattening() if cfg.packing else
                DataCollatorForSeq2Seq(prep.tokenizer, padding=True, label_pad_token_id=-100,
                                       pad_to_multiple_of=8 if prep.env.cuda else None))
    callback_cls = _make_callback_class()
    resume_from = last_checkpoint(prep.output_dir) if resume else None
    nan_retries = oom_retries = 0
    best_eval = None
    while True:
        args = _training_arguments(cfg, prep)
        cb = callback_cls(writer, commands, prep.output_dir, is_main)
        trainer_cls = _trainer_class()
        trainer = trainer_cls(model=prep.model, args=args, train_dataset=_ListDataset(prep.train_rows),
                              eval_dataset=_ListDataset(prep.eval_rows) if prep.eval_rows else None,
                              data_collator=collator, callbacks=[cb])
        trainer.fault_injector = fault_injector
        trainer.remove_callback(PrinterCallback)  # our callback reports; no raw dict prints
        try:
            trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
        except Exception as e:  # noqa: BLE001
            cb.close()
            if not _is_oom(e):
                raise
            torch.cuda.empty_cache() if torch.cuda.is_available() else None
            step = trainer.state.global_step
            change = _oom_change(cfg)
            if not cfg.oom_recovery or change is None or oom_retries >= 4:
                raise OutOfMemory(f"CUDA ran out of memory at step {step} with micro-batch {cfg.batch_size}",
                                  fix=_oom_next_lever(cfg), hint=_oom_levers_text(cfg)) from None
            oom_retries += 1
            cfg = cfg.replace(**change)
            prep.cfg = cfg
            resume_from = last_checkpoint(prep.output_dir)
            writer.emit(ev.RECOVERED, kind="oom", step=step, changes=change,
                        resume_from=str(resume_from) if resume_from else None,
                        message=f"Out of memory at step {step}: micro-batch {change['batch_size'] * 2} -> "
                        f"{change['batch_size']}, accumulation -> {change['gradient_accumulation_steps']} "
                        f"(effective batch unchanged at {cfg.effective_batch_size}); resuming from "
                        f"{resume_from.name if resume_from else 'the start'}")
            if is_main:
                cfg.save(prep.output_dir / "run.yaml")
            continue
        cb.close()
        best_eval = cb.best_eval if cb.best_eval is not None else best_eval
        if cb.nonfinite is not None:
            bad = cb.nonfinite
            resume_from = _last_good_checkpoint(prep.output_dir, bad["step"])
            advice = ("Use bf16 instead of fp16, lower the learning rate, keep gradient clipping on "
                      "(max_grad_norm 1.0), or raise adam_epsilon to 1e-7.")
            fix = {"learning_rate": cfg.learning_rate / 2}
            if cfg.mixed_precision == "fp16":
                fix = {"mixed_precision": "bf16", **({"load_in": "bf16"} if cfg.load_in == "fp16" else {})}
            if cfg.nan_policy == "rollback" and resume_from is not None and nan_retries < 2:
                nan_retries += 1
                cfg = cfg.replace(learning_rate=cfg.learning_rate / 2)
                prep.cfg = cfg
                writer.emit(ev.RECOVERED, kind="nonfinite", step=bad["step"], changes={"learning_rate":
                            cfg.learning_rate}, resume_from=str(resume_from),
                            batch=_batch_description(bad["step"], cfg),
                            message=f"Non-finite loss at step {bad['step']} (loss={bad['loss']}, "
                            f"grad_norm={bad['grad_norm']}); rolled back to {resume_from.name} with the "
                            f"learning rate halved to {cfg.learning_rate:g}. {advice}")
                _discard_checkpoints_after(prep.output_dir, resume_from)
                _rewind_metrics(prep.output_dir, int(resume_from.name.split("-")[1]))
                continue
            raise NonFiniteLoss(f"the loss became non-finite at step {bad['step']} (loss={bad['loss']}, "
                                f"grad_norm={bad['grad_norm']}); "
                                f"{_batch_description(bad['step'], cfg)}", fix=fix, hint=advice)
        break

    stopped = commands.stop_requested
    final_dir = prep.output_dir / "final"
    if is_main:
        prep.method.save(trainer.model, final_dir, cfg)
        prep.tokenizer.save_pretrained(final_dir)
    peaks = _gpu_memory()
    device_bytes = None
    if torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info()
        device_bytes = int(total - free)
    result = {"status": "stopped" if stopped else "completed", "step": trainer.state.global_step,
              "final_loss": cb.last_loss, "best_eval_loss": best_eval,
              "final_dir": str(final_dir), "trainable_params": prep.trainable_params,
              "total_params": prep.total_params,
              "peak_gpu_allocated_bytes": peaks.get("gpu_mem_peak_allocated"),
              "peak_gpu_reserved_bytes": peaks.get("gpu_mem_peak_reserved"),
              "peak_gpu_device_bytes": device_bytes, "gpu_name": prep.env.gpu_name,
              "config": cfg.to_dict()}
    if is_main:
        atomic_write_text(prep.output_dir / "README.md", _model_card(prep, result))
    return result


def _batch_description(step: int, cfg: RunConfig) -> str:
    first = (step - 1) * cfg.effective_batch_size
    return (f"the offending optimizer step {step} used training samples ~{first}..{first + cfg.effective_batch_size - 1} "
            "of the shuffled order")


def _last_good_checkpoint(output_dir: Path, bad_step: int) -> Path | None:
    from engine.runs import checkpoints

    good = [p for p in checkpoints(output_dir) if int(p.name.split("-")[1]) < bad_step
            and (p / "trainer_state.json").exists()]
    return good[-1] if good else None


def _discard_checkpoints_after(output_dir: Path, keep: Path) -> None:
    import shutil

    from engine.runs import checkpoints

    n = int(keep.name.split("-")[1])
    for p in checkpoints(output_dir):
        if int(p.name.split("-")[1]) > n:
            shutil.rmtree(p, ignore_errors=True)


def _rewind_metrics(output_dir: Path, step: int) -> None:
    """Drop metric rows after ``step`` so a rolled-back run's curve continues cleanly."""
    from engine.runs import read_metrics

    rows = [r for r in read_metrics(output_dir) if r.get("step", 0) <= step]
    atomic_write_text(output_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in rows))


def _oom_change(cfg: RunConfig) -> dict[str, int] | None:
    if cfg.batch_size <= 1:
        return None
    return {"batch_size": cfg.batch_size // 2, "gradient_accumulation_steps": cfg.gradient_accumulation_steps * 2}


def _oom_levers(cfg: RunConfig) -> list[dict[str, Any]]:
    """The next levers at micro-batch 1, in order, each with its new estimate when available."""
    levers: list[dict[str, Any]] = []
    if not cfg.gradient_checkpointing:
        levers.append({"gradient_checkpointing": True})
    if cfg.optimizer == "adamw":
        levers.append({"optimizer": "adamw_8bit"})
    if cfg.method in ("lora", "full", "freeze"):
        levers.append({"method": "qlora", "load_in": "nf4"})
    return levers


def _oom_next_lever(cfg: RunConfig) -> dict[str, Any]:
    levers = _oom_levers(cfg)
    return levers[0] if levers else {}


def _oom_levers_text(cfg: RunConfig) -> str:
    parts = []
    for lever in _oom_levers(cfg):
        try:
            from engine.memory import estimate

            est = estimate(cfg.replace(**lever))
            parts.append(f"{lever} -> estimated peak {est.peak_bytes / 2**30:.1f} GiB")
        except Exception:  # noqa: BLE001 - the estimate is advice, never a blocker here
            parts.append(str(lever))
    parts.append("DeepSpeed ZeRO-3 with CPU offload: `finetune-studio export-launch RUN.yaml --zero 3 --offload`")
    return "At micro-batch 1, try in order: " + "; ".join(parts)


class _ListDataset:
    """A list of tokenized rows as a map-style dataset (Trainer only needs len and getitem)."""

    def __init__(self, rows: list[dict]):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        return self.rows[i]


def _trainer_class():
    from transformers import Trainer

    class StudioTrainer(Trainer):
        """Trainer with a fault-injection hook so the OOM guard can be tested on a CPU."""

        fault_injector: Callable[[int], None] | None = None

        def training_step(self, model, inputs, num_items_in_batch=None):
            if self.fault_injector is not None:
                self.fault_injector(self.state.global_step)
            return super().training_step(model, inputs, num_items_in_batch)

    return StudioTrainer


# ---------------------------------------------------------------- CLI entry points
class _ConsoleWriter(EventWriter):
    """Human-readable progress for ``finetune-studio train`` (``--events`` prints JSON).

    JSON events still go to the run folder's events.jsonl (the mirror), not to the console.
    """

    def __init__(self):
        super().__init__(stream=open(os.devnull, "w"))

    def emit(self, kind: str, /, **data: Any):
        e = super().emit(kind, **data)
        out = sys.stderr if kind in (ev.ERROR, ev.WARNING) else sys.stdout
        if kind == ev.STARTED:
            print(f"training {data['config']['method']} on {data['config']['model']} -> {data['output_dir']}\n"
                  f"  {data['trainable_params']:,} trainable of {data['total_params']:,} parameters; "
                  f"device {data['device']}; {data['dataset']['train']} train / {data['dataset']['eval']} "
                  "eval records", file=out)
        elif kind == ev.STEP:
            eta = f" eta {data['eta_s']:.0f}s" if data.get("eta_s") is not None else ""
            print(f"step {data['step']:>5}/{data['max_steps']} loss {data['loss']:.4f} lr {data['lr']:.2e} "
                  f"{data['tokens_per_s']:.0f} tok/s{eta}", file=out, flush=True)
        elif kind == ev.EVAL:
            print(f"eval  step {data['step']:>5} eval_loss {data['eval_loss']:.4f}", file=out)
        elif kind == ev.CHECKPOINT:
            print(f"saved {data['path']}", file=out)
        elif kind in (ev.WARNING, ev.RECOVERED):
            print(f"{kind}: {data.get('message')}", file=out)
        elif kind == ev.ERROR:
            print(f"error: {StudioError(data['message'], fix=data.get('fix'), hint=data.get('hint'))}", file=out)
        elif kind == ev.FINISHED:
            print(f"{data.get('status')}: {data.get('output_dir')} (final loss {_fmt(data.get('final_loss'))})",
                  file=out)
        return e


def _install_signal_handlers(commands: Commands) -> None:
    """First Ctrl-C/SIGTERM: stop after this step with a checkpoint; the second interrupts."""
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum, frame):
        if commands.stop_requested:
            raise KeyboardInterrupt
        commands.put("stop")
        commands.stop_requested = True
        print("\nstopping after this step (Ctrl-C again to abort without saving)", file=sys.stderr)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def cli_train(args: Any) -> int:
    """``finetune-studio train RUN.yaml [--resume] [--events] [--KEY VALUE ...]``."""
    cfg = RunConfig.load(args.config, args.overrides)
    commands = Commands()
    _install_signal_handlers(commands)
    writer = EventWriter() if args.events else _ConsoleWriter()
    result = run_training(cfg, writer, resume=args.resume, commands=commands)
    return {"completed": 0, "stopped": 0}.get(result.get("status"), 1)


def main(argv: list[str] | None = None) -> int:
    """``accelerate launch -m engine.train RUN.yaml [--resume] [--KEY VALUE ...]`` (DDP)."""
    from engine.cli import main as cli_main

    argv = list(sys.argv[1:] if argv is None else argv)
    return cli_main(["train", *argv])


if __name__ == "__main__":
    sys.exit(main())
