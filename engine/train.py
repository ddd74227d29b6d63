"""The training recipe, top to bottom: setup -> train -> save.

``run_training(cfg)`` is what the worker process, ``finetune-studio train`` and
``accelerate launch -m engine.train RUN.yaml`` all run. It builds on transformers'
Trainer: checkpoints (model/adapter, optimizer, scheduler, RNG, data position), resume,
gradient accumulation, mixed precision and DDP come from there. Our part is the
:class:`EventCallback`, which turns Trainer's logs into JSON-line events and
``metrics.jsonl`` rows and obeys stop/save commands, and the guards around ``train()``:

- non-finite loss or gradient norm, checked after every optimizer step (not only at
  logging steps): roll back to the last good checkpoint with the learning rate halved;
- CUDA out-of-memory: halve the micro-batch, double accumulation, resume.

Both guards resume through Trainer's own ``resume_from_checkpoint``; rows of
``metrics.jsonl`` after the checkpoint are dropped so the curve stays one line.
"""

from __future__ import annotations

import gc
import json
import math
import os
import queue
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine import events as ev
from engine.config import RunConfig, located_in
from engine.errors import ConfigError, ConfigErrors, DataError, NonFiniteLoss, OutOfMemory, StudioError
from engine.events import EventWriter
from engine.files import atomic_write_text, write_nowhere
from engine.keepawake import keep_awake
from engine.runs import (
    RECORD_FILES,
    checkpoint_step,
    checkpoints,
    clamp_config_changes,
    config_diff,
    config_history,
    config_value_text,
    final_loss_mean,
    first_start,
    last_checkpoint,
    live_worker,
    new_run_dir,
    read_metrics,
    read_run_config,
    read_summary,
    record_config_change,
    remember_run_folder,
    retired_error,
    rewind_metrics,
    run_ref,
    trained_nothing,
    training_time_so_far,
    with_history,
    write_summary,
)

SEQ_LEN_MAX = RunConfig.field_meta()["seq_len"]["max"]


def nan_advice(cfg: RunConfig) -> str:
    """What to change after a non-finite loss, for this run's precision and settings.

    fp16's range (max 65504) is the usual cause, so its advice comes first when the run uses
    it; an fp32 or bf16 run is told the levers that apply to it instead.
    """
    fp16 = "fp16" in (cfg.load_in, cfg.mixed_precision)
    steps = []
    if fp16:
        steps.append("use bf16 instead of fp16 (the range of fp32), or keep fp16 loss scaling on")
    steps.append(f"lower the learning rate (now {cfg.learning_rate:g})")
    if cfg.max_grad_norm <= 0:
        steps.append("turn gradient clipping on (max_grad_norm 1.0)")
    if cfg.adam_epsilon < 1e-7 and cfg.optimizer != "sgd":
        steps.append(f"raise adam_epsilon from {cfg.adam_epsilon:g} to 1e-7")
    if not fp16:
        steps.append(f"check the batch's records: this run is {cfg.load_in} with mixed precision "
                     f"'{cfg.mixed_precision}', so fp16 overflow is not the cause")
    text = ", ".join(steps[:-1]) + (", and " if len(steps) > 1 else "") + steps[-1]
    return text[0].upper() + text[1:] + "."


MAX_NAN_ROLLBACKS = 2
MAX_OOM_RETRIES = 4
# The "GPU often idle" advice (EventCallback._follow_idle): this many logging intervals in a row,
# each below this share busy (NVML's utilisation: the share of time a kernel ran), after this much
# training. A healthy single-GPU run reads 90-100%; below half, the GPU waits more than it works.
IDLE_PCT = 50
IDLE_WINDOWS = 5
IDLE_MIN_S = 60.0
GPU_SAMPLE_S = 2.0  # how often the run's GPU load is read (one nvidia-smi call, ~30 ms of CPU)
FIX_RECORDS_HINT = "Fix them in the Dataset area, or list them with `finetune-studio data check FILE`."
"""What to do about records a run left out."""


class _NothingLeftToTrain(Exception):
    """The checkpoint a run resumes from is already at the run's last step."""


class _RunComplete(Exception):
    """A resume of a run that has nothing left to train and has its final/ written.

    Nothing of the run is touched: its final/ may be an earlier checkpoint's (``runs promote``),
    which writing final/ again from the last checkpoint would silently undo, and its record
    (summary.json's legs, final_from, metrics.jsonl) describes the run as it ended.
    """

    def __init__(self, message: str, *, status: str, step: int | None, hint: str | None = None):
        super().__init__(message)
        self.message, self.status, self.step, self.hint = message, status, step, hint


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
        """Queue a command ('stop' or 'save'); safe from any thread or a signal handler."""
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
    model_path: Path | None = None
    train_lines: list = field(default_factory=list)  # source file line of each train row (None if unknown)
    dropped_records: list = field(default_factory=list)  # every dropped record: {index, line, message}
    probe: bool = False  # a probe run (engine/probe.py): nothing is saved
    # A resume not yet committed (see _commit_resume): the run's config before it, and the checkpoint's step.
    resumed_from: tuple[dict, int] | None = None
    sampler: Any = None  # engine.samples.Sampler: answers a few records at each evaluation
    # Memory other programs held on the GPU before this process touched it (nvidia-smi), or None:
    # the device peak leaves it out, as the estimate does (_gpu_used_before).
    gpu_used_before: int | None = None
    gpu_sampler: Any = None  # engine.nvsmi.Sampler: the GPU's load during the run (run_training, from _run_gpu)


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


def load_training_records(cfg: RunConfig, *, eval_file: bool = False) -> tuple[list, dict]:
    """Read the dataset (the demo one for 'demo'); broken records are reported, not used.

    Args:
        cfg: the run config.
        eval_file: read its ``eval_dataset`` instead (same ``dataset_format``).

    Returns:
        ``(records, info)`` with info's ``path``, ``detected`` format, ``records`` (usable),
        ``broken`` and the content ``hash`` of the usable records.
    """
    from engine.data.formats import open_dataset
    from engine.data.split import content_hash
    from engine.paths import demo_dataset_path

    name = cfg.eval_dataset if eval_file else cfg.dataset
    ds = open_dataset(name, cfg.dataset_format)
    # A hub dataset is recorded by its id (its cached files are named in `detected`).
    path = demo_dataset_path() if name == "demo" else name
    good = [r for r in ds.records if not r.broken]
    info = {"path": str(path), "detected": ds.detected, "records": len(good),
            "broken": len(ds.records) - len(good), "hash": content_hash(good)}
    if info["broken"]:
        info["broken_records"] = [{"line": r.line, "column": r.column, "message": r.error}
                                  for r in ds.records if r.broken][:100]
    return good, info


def _format_note(name: str | None) -> str:
    """The model card's line on how prompts were written (the saved tokenizer carries it)."""
    what = {"chat": "the base model's chat template", "alpaca": "the Alpaca prompt",
            None: "unknown"}.get(name, f"`{name}`")
    return (f"{what}, saved as the tokenizer's chat template, so `tokenizer.apply_chat_template(messages, "
            "add_generation_prompt=True)` writes prompts as in training") if name else what


def _tokens_note(cfg: RunConfig, data_stats: dict) -> str:
    """The model card's line on ``add_tokens`` (empty without them)."""
    if not cfg.add_tokens:
        return ""
    new = data_stats.get("added_tokens") or []
    listed = ", ".join(f"`{t}`" for t in cfg.add_tokens)
    how = ("their embedding rows trained through PEFT's trainable tokens; loading onto the base needs "
           "`base.resize_token_embeddings(len(tokenizer))` first (`AutoPeftModelForCausalLM` does it)"
           if cfg.method in ("lora", "qlora") else "the embeddings grew to fit and trained with every other weight")
    fresh = ("all new to the vocabulary" if len(new) == len(cfg.add_tokens) else "all already in the vocabulary"
             if not new else f"{len(new)} new to the vocabulary, the others already in it")
    return f"\n- **Added tokens:** {listed} ({fresh}); {how}"


def _warn_template(rendering: Any, tokenizer: Any, cfg: RunConfig, writer: EventWriter) -> None:
    """Warn when a named chat format's markers are not single tokens of this model's vocabulary.

    The fix offered adds them as tokens (``add_tokens``) where the method can train their
    embeddings; otherwise it switches to a format the tokenizer has the markers of.
    """
    from engine.config import TOKEN_METHODS
    from engine.data.templates import FORMATS, marker_problems, split_markers

    bad = marker_problems(tokenizer, rendering)
    if not bad:
        return
    fitting = [name for name in FORMATS if not marker_problems(tokenizer, name)]
    own = bool(getattr(tokenizer, "chat_template", None))
    options = (["its own chat template (template: chat)"] if own else []) + fitting or ["alpaca"]
    other = {"template": "chat" if own else (fitting or ["alpaca"])[0]}
    markers = split_markers(tokenizer, rendering)
    if cfg.method in TOKEN_METHODS:
        hint = (f"Add them as tokens whose embeddings train with the run (add_tokens: {markers}), or use a "
                "format whose markers the tokenizer has as tokens: " + ", ".join(options) + ".")
        fix = {"add_tokens": [*cfg.add_tokens, *markers]}
    else:
        hint = ("Use a format whose markers the tokenizer has as tokens: " + ", ".join(options) + " (or add them "
                "with add_tokens, which needs method lora, qlora or full).")
        fix = other
    writer.emit(ev.WARNING, kind="template_markers",
                message=f"template {rendering.name}: this model's tokenizer splits its markers into pieces "
                f"({', '.join(bad)}), so the model learns them as text, and every turn costs those tokens",
                hint=hint, fix=fix)


def _eval_file_rows(cfg: RunConfig, tokenizer: Any, train_records: list, writer: EventWriter
                    ) -> tuple[list, dict[str, Any]]:
    """The tokenized rows of ``cfg.eval_dataset`` and what was read (path, format, counts, hash).

    Broken records are left out with a warning, as the training file's are; records that are
    also in the training data are kept but counted and warned about, since their eval loss
    measures memorisation.

    Raises:
        StudioError: no record of the file can be evaluated.
    """
    from engine.audit import record_digest
    from engine.data.tokenize import describe_problems, tokenize_records
    from engine.paths import tokenized_cache_dir

    records, info = load_training_records(cfg, eval_file=True)
    rows, stats = tokenize_records(records, tokenizer, cfg.template, cfg.seq_len, cfg.loss_on,
                                   cache_dir=tokenized_cache_dir())
    if not rows:
        raise StudioError(f"eval_dataset {info['path']}: no record can be evaluated "
                          f"({info['broken']} broken, {stats.dropped} with nothing to score)",
                          hint="Check it in the Dataset area, or with `finetune-studio data check FILE`.")
    if info["broken"]:
        first = info["broken_records"][0]
        writer.emit(ev.WARNING, kind="broken", message=f"{info['broken']} record(s) of the eval file "
                    f"{info['path']} could not be read and were left out (line {first['line']}: "
                    f"{first['message']})", records=info["broken_records"], path=info["path"])
    if stats.dropped:
        n = stats.dropped
        writer.emit(ev.WARNING, kind="dropped", message=f"{n} record{'s' if n > 1 else ''} of the eval file "
                    f"{info['path']} can't be scored and {'were' if n > 1 else 'was'} left out: "
                    f"{describe_problems(stats.problems)}", records=stats.problems[:100], path=info["path"])
    trained = set()
    for r in train_records:
        try:
            trained.add(record_digest(r.messages()))
        except DataError:
            pass  # left out of training (and reported) already
    shared = [i for i in range(len(rows)) if record_digest(records[stats.sources[i]].messages()) in trained]
    if shared:
        lines = [getattr(records[stats.sources[i]], "line", None) for i in shared]
        writer.emit(ev.WARNING, kind="eval_overlap", message=f"{len(shared)} of the {len(rows)} records of the "
                    f"eval file {info['path']} are also in the training data (first at line {lines[0]}); their "
                    "eval loss shows memorisation, not how the model does on data it hasn't seen",
                    hint="Remove them from one of the files (the Dataset area's Split… writes disjoint files).",
                    lines=lines[:100])
    info.update(stats.to_dict(), evaluated=len(rows), in_training_data=len(shared))
    return rows, info, [records[i] for i in stats.sources]


def _shared_output_dir(cfg: RunConfig, is_main: bool) -> Path:
    """The run folder; under DDP rank 0 makes a new one and every rank gets its name."""
    if cfg.output_dir:
        return Path(cfg.output_dir)
    from accelerate import PartialState

    path = str(new_run_dir(cfg.method, cfg.run_name)) if is_main else ""
    if PartialState().num_processes > 1:
        from accelerate.utils import broadcast_object_list

        path = broadcast_object_list([path], from_process=0)[0]
    return Path(path)


def _rank0_decides(is_main: bool, check: Callable[[], Any]) -> None:
    """Rank 0 runs a check of the run folder and every rank raises its refusal, before rank 0
    writes there. A rank that looked on its own could find the run.yaml rank 0 had just written,
    refuse alone and leave rank 0 waiting on it (gloo: "connection closed by peer")."""
    refusal = None
    if is_main:
        try:
            check()
        except ConfigError as e:
            refusal = ("config", e.message, e.hint, {"key": e.key})
        except _RunComplete as e:
            refusal = ("complete", e.message, e.hint, {"status": e.status, "step": e.step})
    from accelerate import PartialState

    if PartialState().num_processes > 1:
        from accelerate.utils import broadcast_object_list

        refusal = broadcast_object_list([refusal], from_process=0)[0]
    if refusal is not None:
        kind, message, hint, extra = refusal
        if kind == "complete":
            raise _RunComplete(message, hint=hint, **extra)
        raise ConfigError(message, hint=hint, **extra)


def _refuse_a_used_folder(output_dir: Path) -> None:
    """A new run never starts in a folder that holds another: its final/, checkpoints and curve
    would mix with the new run's (a best checkpoint from the old run, steps 1..32 then 1, 2).

    A folder whose run trained nothing (it failed before its first step) is taken over, its
    record files removed: nothing can be lost there, and its run.yaml blocked the very rerun
    its error asked for. A folder where another run is still starting is not.
    """
    if not output_dir.is_dir():
        return
    pid = live_worker(output_dir)
    if pid is not None:
        raise ConfigError(f"output_dir '{output_dir}' is in use: a run is starting or training there (process "
                          f"{pid})", key="output_dir", hint="Wait for it to end (finetune-studio runs show "
                          f"{output_dir}), or give another output_dir.")
    if trained_nothing(output_dir):
        for name in RECORD_FILES:
            (output_dir / name).unlink(missing_ok=True)
        return
    held = [name for name in ("run.yaml", "metrics.jsonl", "final") if (output_dir / name).exists()]
    n = len(checkpoints(output_dir))
    if n:
        held.append(f"{n} checkpoint{'s' if n > 1 else ''}")
    if held:
        raise ConfigError(f"output_dir '{output_dir}' already holds a run ({', '.join(held)}); a new run there "
                          "would mix its checkpoints, curve and result with that one's", key="output_dir",
                          hint="Continue that run with --resume (the Runs area's Resume), give another output_dir, "
                          "or leave output_dir empty for a new folder under the runs folder.")


def _stop_if_complete(output_dir: Path, cfg: RunConfig) -> None:
    """A resume of a run whose plan is done and whose final/ is written changes nothing.

    Judged as ``runs show``'s "resume" line is (:func:`engine.resume.resume_verdict`), with this
    resume's plan: a larger ``max_steps``/``num_epochs`` still continues the run, and a run
    interrupted after its last checkpoint but before final/ still gets final/ written from it.

    Raises:
        _RunComplete: with the message to show; nothing was written.
    """
    from engine.promote import final_step
    from engine.resume import resume_point, resume_verdict

    point = resume_point(output_dir)
    if not point.has_final:
        return
    verdict = resume_verdict(point, max_steps=cfg.max_steps, num_epochs=cfg.num_epochs)
    if verdict.ok or not (verdict.finished or point.status == "completed"):
        return
    done = point.reached_step if point.reached_step is not None else point.checkpoint_step
    last = point.max_steps if point.max_steps > 0 else point.epoch_steps  # a plan in epochs: the steps they came to
    plan = f" of {last}" if last > 0 else ""
    held = final_step(output_dir)
    came = read_summary(output_dir).get("final_from")
    what = f" (step {held}{f', from {came}' if came else ''})" if held is not None else ""
    ignored = list(config_diff(read_run_config(output_dir), cfg.to_dict()))
    raise _RunComplete(
        f"the run {output_dir.name} is complete{f' at step {done}{plan}' if done else ''}: nothing left to train; "
        f"final/{what}, the checkpoints and the run's record are left as they were"
        + (f"; the values given with this resume ({', '.join(ignored)}) trained nothing and are not the run's"
           if ignored else ""),
        status=point.status, step=done or None,
        hint=(f"To train further, resume with a larger plan: --max_steps N with N above {done}"
              + (f", or --num_epochs above {point.num_epochs:g}" if point.max_steps <= 0 else "") + "."
              if done else "To train further, resume with a larger plan (max_steps or num_epochs)."))


def _refuse_changed_structure(output_dir: Path, cfg: RunConfig) -> None:
    """A resume that changes the method, the shape of what it trains or the optimizer can't load
    the checkpoint (a size-mismatch dump from PyTorch), and must not rewrite the run's record."""
    from engine.resume import fixed_on_resume

    changed = fixed_on_resume(read_run_config(output_dir), cfg.to_dict())
    if changed:
        said = "; ".join(f"{k}: {before!r} → {after!r}" for k, before, after in changed)
        raise ConfigError(f"a resume can't change {', '.join(k for k, *_ in changed)} ({said}): the checkpoints "
                          f"in {output_dir} hold weights and optimizer state of the run's own settings",
                          key=changed[0][0], hint="Resume with the run's own values (drop those options), or start "
                          "a new run with the new ones (no --resume, no output_dir).")


@dataclass
class SetupProgress:
    """How far :func:`setup` got with the run folder, so that a setup that fails after making it
    is recorded there (run_training writes its summary) instead of leaving an unlisted folder."""

    output_dir: Path | None = None
    """The run folder, made (or taken over) and holding this process's worker.pid."""
    new_run: RunConfig | None = None
    """The config of the new run whose run.yaml setup wrote (None for a resume from a checkpoint,
    whose record a failed resume leaves as it was)."""


def check_data_files(cfg: RunConfig) -> None:
    """The run's data files are there: its dataset and eval dataset (a file, or a split in the
    Hugging Face cache) and a template file. :func:`setup` checks them before it makes the run
    folder, ``train`` before it loads anything (exit 2, as a bad value), and ``queue retry`` again,
    as the files may have gone since the run was queued. The Train form shows
    :func:`data_file_errors` beside the fields.

    Raises:
        ConfigError: naming the key and the file (the first of :func:`data_file_errors`).
    """
    errors = data_file_errors(cfg)
    if errors:
        raise errors[0]


def data_file_errors(cfg: RunConfig) -> list[ConfigError]:
    """What is wrong with the run's data files, one error per key (see :func:`check_data_files`);
    reads no record and imports no torch, so a form can ask on every change."""
    from engine.data import hub
    from engine.data.formats import parquet_problem
    from engine.data.templates import is_template_file, read_template_file

    errors = []
    for key in ("dataset", "eval_dataset"):
        name = getattr(cfg, key)
        if name and hub.parse_ref(name) is not None:
            try:
                hub.split_files(*hub.parse_ref(name))  # cached, with that split
            except DataError as e:
                errors.append(ConfigError(e.message if key == "dataset" else f"{key}: {e.message}", key=key,
                                          hint=e.hint))
        elif name and name != "demo" and not Path(name).is_file():
            errors.append(ConfigError(
                f"{key} '{name}': {'not a file' if Path(name).exists() else 'no such file'}",
                key=key, hint="Give a JSON, JSONL, CSV or Parquet file (a relative path is read from the run "
                "config's folder), a dataset in the Hugging Face cache ('org/name' or 'org/name:split'), or "
                "'demo'."))
        elif name and name != "demo" and Path(name).suffix.lower() == ".parquet":
            problem = parquet_problem(Path(name))
            if problem:
                errors.append(ConfigError(f"{key} '{name}': {problem}", key=key, hint=(
                    "Copy the file again, or write it again from where it was made." if "cut short" in problem
                    else "A file in another format needs its own extension: .jsonl, .json or .csv.")))
    if is_template_file(cfg.template):
        try:
            read_template_file(cfg.template)
        except DataError as e:
            errors.append(ConfigError(e.message, key="template", hint=e.hint))
    return errors


def missing_inputs(cfg: RunConfig) -> list[ConfigError]:
    """The run's model and data files that aren't there (:func:`data_file_errors`, and a model folder
    that isn't there or lacks config.json, or a hub id not in the cache, on the ``model`` key), a
    DeepSpeed config file that isn't there, and an output_dir that is (or is inside) a file.
    Imports no torch: ``train``, ``queue add`` and ``export-launch`` ask before anything loads or is
    queued, so a typo'd path is a bad value (exit 2), not a run that fails later, unattended.
    """
    return [*_missing_model(cfg), *data_file_errors(cfg), *_path_errors(cfg)]


def model_problems(cfg: RunConfig) -> list[ConfigError]:
    """What the method's settings ask of this model that it doesn't have, from its config.json on the
    meta device (:func:`engine.memory.structure.model_structure`, cached; no weights are read):
    ``freeze_trainable_layers`` above its layer count, a target or extra module it has no such layer
    for. The run stopped at these only after its folder was made and the model loaded, with a
    ``--resume`` hint that could not help. Imports torch: ``train`` and ``queue add`` ask it after
    :func:`missing_inputs` (the GUI hears the same from its estimate process). A model the structure
    can't be built for (one that isn't there included) is left to those and to the run.
    """
    from engine.memory.structure import model_structure

    try:
        model_structure(cfg)  # (a model transformers can't build as a causal LM is the model key's problem)
    except ConfigError as e:
        return [e] if e.key else []
    except Exception:  # noqa: BLE001 - a model it can't build (ModelError, a family's quirk): never stop a run
        return []  # not a settings problem: the run's own loading says it, with its context
    return []


def _path_errors(cfg: RunConfig) -> list[ConfigError]:
    """``deepspeed`` names no file; ``output_dir`` can't be a folder because it or a folder above it is
    a file (both failed the run as "training failed: FileExistsError ... This is a bug")."""
    errors = []
    if cfg.deepspeed and not Path(cfg.deepspeed).is_file():
        errors.append(ConfigError(
            f"deepspeed '{cfg.deepspeed}': {'not a file' if Path(cfg.deepspeed).exists() else 'no such file'}",
            key="deepspeed", hint="Give the DeepSpeed config JSON (finetune-studio export-launch writes one), or "
            "leave deepspeed empty for a run without DeepSpeed."))
    if cfg.output_dir:
        out = Path(cfg.output_dir)
        blocker = next((p for p in (out, *out.parents) if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            where = "is a file" if blocker == out else f"is inside '{blocker}', which is a file"
            errors.append(ConfigError(f"output_dir '{cfg.output_dir}' {where}, not a folder", key="output_dir",
                                      hint="Give a folder (made if it isn't there), or leave output_dir empty "
                                      "for a new folder under the runs folder."))
    return errors


def _missing_model(cfg: RunConfig) -> list[ConfigError]:
    from engine.errors import ModelError
    from engine.models import check_tokenizer_files, check_weights_safe, resolve_model_path

    if cfg.model == "demo":
        return []  # embedded: built on first use (with torch), never missing
    try:
        path = resolve_model_path(cfg.model)
        # A folder saved without its tokenizer or its weights failed the run after its folder was
        # made (or a queued run, unattended); both are a look at the file names. Pickle-only weights
        # are there: setup refuses them with the allow_pickle fix that the Train area offers.
        check_tokenizer_files(path)
        check_weights_safe(path, allow_pickle=True)
    except ModelError as e:
        return [ConfigError(e.message, key="model", hint=e.hint, fix=e.fix)]
    return []


def setup(cfg: RunConfig, writer: EventWriter, *, resume: bool = False, is_main: bool = True,
          progress: SetupProgress | None = None) -> Prepared:
    """Check, load data and model, apply the method. Fails before loading anything heavy.

    Args:
        cfg: the run config.
        writer: where warnings (truncation, dropped records, no checkpoint) go.
        resume: the run continues from its newest checkpoint; metric rows logged after that
            checkpoint (lost progress after a kill) are dropped so the curve continues cleanly.
        is_main: this is rank 0 (or the only process); only it writes files.
        progress: filled in as the run folder is made and its run.yaml written.

    Raises:
        ConfigErrors: the config can't run on this machine (checked before any loading).
        StudioError: data or model problems.
    """
    import torch

    from engine import precision
    from engine.data.split import train_eval_split
    from engine.data.templates import resolve as resolve_template
    from engine.data.templates import saved_template
    from engine.data.tokenize import describe_problems, tokenize_records
    from engine.methods import get_method, learning_rate_note
    from engine.models import add_special_tokens, check_weights_safe, load_tokenizer, resolve_model_path
    from engine.paths import tokenized_cache_dir

    env = precision.detect_environment()
    precision.check_environment(cfg, env)  # invalid combinations fail before any loading
    method = get_method(cfg.method)
    model_path = resolve_model_path(cfg.model)
    check_weights_safe(model_path, cfg.allow_pickle)
    precision.check_model(cfg, model_path)  # before the run folder is made, too
    check_data_files(cfg)  # and so is this: a typo'd path leaves no empty run behind

    output_dir = _shared_output_dir(cfg, is_main)
    ckpt = last_checkpoint(output_dir) if resume and output_dir.is_dir() else None

    def check_folder() -> None:
        if not resume:
            _refuse_a_used_folder(output_dir)
            return
        if output_dir.is_dir():
            _stop_if_complete(output_dir, cfg)
        if ckpt is not None:
            _refuse_changed_structure(output_dir, cfg)

    _rank0_decides(is_main, check_folder)
    output_dir.mkdir(parents=True, exist_ok=True)
    progress = progress if progress is not None else SetupProgress()
    progress.output_dir = output_dir
    if is_main:
        # Marks the folder as in use while the data and model load (another run's check reads it).
        (output_dir / "worker.pid").write_text(str(os.getpid()))
        remember_run_folder(output_dir)  # one outside the runs folder is listed and found by name too
    if resume and ckpt is None:
        writer.emit(ev.WARNING, kind="resume", message=f"no checkpoint in {output_dir}; starting from "
                    "the beginning")
    if is_main and ckpt is not None:
        rewind_metrics(output_dir, checkpoint_step(ckpt))
        from engine.resume import resume_point

        promoted = resume_point(output_dir).promoted_note()
        if promoted:
            writer.emit(ev.WARNING, kind="resume", message=promoted,
                        hint="To keep that result, copy final/ elsewhere before this run ends.")
    if resume and not cfg.run_name:
        # A resume that names no run (the Train area's form is for new runs) keeps the run's name.
        cfg = cfg.replace(run_name=str(read_run_config(output_dir).get("run_name") or ""))
    cfg = cfg.replace(output_dir=str(output_dir))
    # A resume's values are the run's once it trains a step with them (_commit_resume): one that
    # fails to load, or has nothing left to train, leaves run.yaml and the run's record as they were.
    before = read_run_config(output_dir) if is_main and ckpt is not None else None
    if ckpt is None:
        if is_main:
            cfg.save(output_dir / "run.yaml")
        if not resume or trained_nothing(output_dir):  # a resume that starts over keeps the earlier record
            progress.new_run = cfg

    records, data_info = load_training_records(cfg)
    if is_main and ckpt is not None:
        _warn_changed_dataset(output_dir, data_info, writer)
    tokenizer = load_tokenizer(str(model_path), trust_remote_code=cfg.trust_remote_code)
    added_tokens = add_special_tokens(tokenizer, cfg.add_tokens)
    rows, stats = tokenize_records(records, tokenizer, cfg.template, cfg.seq_len, cfg.loss_on,
                                   cache_dir=tokenized_cache_dir())
    refusal = _refusal_advice(stats.problems, tokenizer, cfg)
    if not rows and not stats.records and not data_info["broken"]:
        raise DataError(f"no trainable records: {data_info['path']} has no records",
                        hint="Give a file with records, or check dataset_format.")
    if not rows:
        # Every one of them, unreadable or not, in the file's order: the user fixes them all.
        left = sorted([*data_info.get("broken_records", []), *stats.problems],
                      key=lambda p: (p.get("line") is None, p.get("line") or 0))
        n = data_info["broken"] + stats.dropped
        err = DataError(f"no trainable records: every record of {data_info['path']} was left out "
                        f"({n} record{'s' if n != 1 else ''}): {describe_problems(left, limit=10, total=n)}",
                        hint=refusal.get("hint") or FIX_RECORDS_HINT, fix=refusal.get("fix"))
        # Where the first one is, for "Show in the Dataset area" (the message names the file already).
        err.path, err.line, err.column = data_info["path"], left[0].get("line"), left[0].get("column")
        raise err
    train_idx, eval_idx = train_eval_split(rows, cfg.eval_split, cfg.seed)
    train_rows = [rows[i] for i in train_idx]
    eval_rows = [rows[i] for i in eval_idx]
    if eval_idx and len(eval_idx) >= 2 * cfg.eval_split * len(rows):
        # At least one record is held out: on a few records that is far more than asked for.
        writer.emit(ev.WARNING, kind="eval_split", message=f"eval_split {cfg.eval_split:g} of {len(rows)} usable "
                    f"records holds out {len(eval_idx)} ({len(eval_idx) / len(rows):.0%}; at least one record is "
                    "held out), which the run doesn't train on",
                    hint="Add records, or set eval_split: 0 to train on all of them (and evaluate on an "
                    "eval_dataset, or not at all).", fix={"eval_split": 0.0})
    elif cfg.eval_split > 0 and not eval_idx:
        # One usable record: nothing can be held out, so nothing is evaluated (nor stops early).
        stops = " and early_stopping_patience never stops it" if cfg.early_stopping_patience else ""
        writer.emit(ev.WARNING, kind="eval_split", message=f"eval_split {cfg.eval_split:g} of {len(rows)} usable "
                    f"record holds out nothing (one record can't be split), so the run evaluates nothing{stops}",
                    hint="Add records, or set eval_split: 0 (and evaluate on an eval_dataset, or not at all).",
                    fix={"eval_split": 0.0})
    lr_note = learning_rate_note(cfg)
    if lr_note and is_main:
        writer.emit(ev.WARNING, **lr_note)
    train_lines = [getattr(records[stats.sources[i]], "line", None) for i in train_idx]
    data_stats = {**data_info, **stats.to_dict(), "train": len(train_rows), "eval": len(eval_rows)}
    eval_records = [records[stats.sources[i]] for i in eval_idx]
    if cfg.eval_dataset:
        eval_rows, data_stats["eval_dataset"], eval_records = _eval_file_rows(cfg, tokenizer, records, writer)
        data_stats["eval"] = len(eval_rows)
    rendering = resolve_template(tokenizer, cfg.template)
    _warn_template(rendering, tokenizer, cfg, writer)
    data_stats["template"] = rendering.name
    if cfg.add_tokens:
        data_stats["added_tokens"] = added_tokens
    sampler = None
    if cfg.sample_answers and is_main:
        from engine.samples import Sampler, pick

        source = "eval" if eval_records else "train"
        pool = eval_records or [records[stats.sources[i]] for i in train_idx]
        sampler = Sampler(pick(pool, tokenizer, rendering, cfg.sample_answers), source,
                          tokenizer, rendering, cfg.sample_max_new_tokens, output_dir)
    # The saved tokenizer formats chats as this run trained, for the playground, merges and GGUF files.
    tokenizer.chat_template = saved_template(tokenizer, rendering) or tokenizer.chat_template
    if data_info["broken"]:
        where = ", ".join(f"line {b['line']}" for b in data_info["broken_records"][:5])
        n = data_info["broken"]
        writer.emit(ev.WARNING, kind="broken", message=f"{n} record{'s' if n > 1 else ''} of {data_info['path']} "
                    f"could not be read and {'were' if n > 1 else 'was'} left out ({where}"
                    f"{', ...' if data_info['broken'] > 5 else ''}): {data_info['broken_records'][0]['message']}",
                    hint=FIX_RECORDS_HINT, records=data_info["broken_records"], path=data_info["path"])
    if stats.truncated:
        writer.emit(ev.WARNING, kind="truncation", message=f"{stats.truncated} of {stats.records} records "
                    f"are longer than seq_len={cfg.seq_len} and were truncated (longest: {stats.longest} "
                    "tokens)", fix={"seq_len": min(_next_pow2(stats.longest), SEQ_LEN_MAX)})
    if stats.partial:
        n = len(stats.partial)
        writer.emit(ev.WARNING, kind="partial", message=f"{n} multi-turn record{'s' if n > 1 else ''} "
                    f"(first at line {stats.partial[0]['line']}) train only on some of their answers: the chat "
                    "template renders the others differently once the conversation goes on (Qwen3's, for one, "
                    "drops the think block of answers in the history), so their tokens can't be located",
                    hint="To train every answer, write one record per answer (`finetune-studio data convert "
                    "FILE OUT --per-answer`), or use template: alpaca.",
                    records=stats.partial[:100])
    if stats.dropped:
        n = stats.dropped
        writer.emit(ev.WARNING, kind="dropped", message=f"{n} record{'s' if n > 1 else ''} of {data_info['path']} "
                    f"can't train and {'were' if n > 1 else 'was'} left out: {describe_problems(stats.problems)}",
                    hint=refusal.get("hint") or FIX_RECORDS_HINT, fix=refusal.get("fix") or {},
                    records=stats.problems[:100], path=data_info["path"])

    if is_main:
        _warn_busy_gpu(cfg, env, stats.longest, writer)
    torch.manual_seed(cfg.seed)
    model = _model_to_train(cfg, model_path, env, method, tokenizer, on_base=(
        lambda base: _warn_untrained(base, tokenizer, rendering, cfg, writer)) if is_main else None)
    if is_main:
        from engine.methods.lora import save_initial

        save_initial(model, cfg, output_dir)  # PiSSA/OLoRA: final/ is converted against it
    total, trainable = _count_params(model)
    return Prepared(cfg, output_dir, tokenizer, model, method, env, train_rows, eval_rows, data_stats,
                    total, trainable, model_path=model_path, train_lines=train_lines, sampler=sampler,
                    dropped_records=stats.problems,
                    resumed_from=(before, checkpoint_step(ckpt)) if before is not None else None)


def resume_changes(prep: Prepared) -> dict[str, list[Any]]:
    """``{key: [run's value, this resume's]}``: what a resume changes (empty when it changes nothing)."""
    if prep.resumed_from is None:
        return {}
    return config_diff(prep.resumed_from[0], prep.cfg.to_dict())


def _commit_resume(prep: Prepared) -> None:
    """The resume trains its first step: its values become the run's (run.yaml, summary.json's
    config) and what changed is recorded from that step on."""
    if prep.resumed_from is None:
        return
    before, step = prep.resumed_from
    prep.resumed_from = None
    record_config_change(prep.output_dir, step + 1, "resume", before, prep.cfg.to_dict())
    prep.cfg.save(prep.output_dir / "run.yaml")
    write_summary(prep.output_dir, config=prep.cfg.to_dict())


def _warn_busy_gpu(cfg: RunConfig, env: Any, longest: int, writer: EventWriter) -> None:
    """Warn before the model loads when other programs hold so much of the GPU that this run's
    estimate no longer fits in what they leave, and name them: the user can close a notebook
    that still holds a model, which the out-of-memory back-off can't.

    The estimate is at the data's longest record (batches are padded to their longest), less the
    CUDA context, which this process already holds and ``mem_get_info`` already counts as used.
    """
    if not env.cuda or env.gpu_free_bytes is None or not env.gpu_total_bytes or cfg.deepspeed:
        return
    from engine.memory import estimate
    from engine.memory.cli import format_gib
    from engine.memory.peak import gpu_others
    from engine.nvsmi import describe_others

    try:
        seq = cfg.seq_len if cfg.packing or not longest else min(cfg.seq_len, -(-longest // 64) * 64)
        est = estimate(cfg.replace(seq_len=seq), env.gpu_total_bytes, gpu_name=env.gpu_name)
    except Exception:  # noqa: BLE001 - advice only: the run itself says what is wrong with the config
        return
    need = est.peak_bytes - est.breakdown.get("cuda_context", 0)
    if need <= env.gpu_free_bytes:
        return
    held, others = gpu_others(None, env.gpu_name)
    who = describe_others(held or 0, others) if held else ""
    writer.emit(ev.WARNING, kind="gpu_busy", message=(
        f"the GPU has {format_gib(env.gpu_free_bytes)} free of {format_gib(env.gpu_total_bytes)}, and this run is "
        f"estimated to need {format_gib(need)}" + (f"; other programs hold {format_gib(held)} ({who})" if who else "")
        + "; it may run out of memory (then the out-of-memory back-off halves the micro-batch, if it is on)"),
        hint="Close the programs that hold GPU memory (`finetune-studio gpu` lists them), or lower the run's "
        "memory (the Train area's Fit…, `finetune-studio estimate`).",
        free_bytes=env.gpu_free_bytes, need_bytes=need, others=others)


def _check_disk(prep: Prepared, writer: EventWriter, world_size: int) -> None:
    """Fail before step 1 when the run folder's disk can't hold one checkpoint and ``final/``; warn,
    with the ``save_total_limit`` that fits, when it can't hold the kept checkpoints.

    Raises:
        ConfigError: on ``output_dir``: not even one checkpoint and ``final/`` fit.
    """
    from engine import disk
    from engine.memory.cli import format_gib
    from engine.probe import full_run_steps

    cfg = prep.cfg
    if cfg.deepspeed:
        return  # DeepSpeed writes its own sharded layout; its size isn't this arithmetic
    steps = full_run_steps(cfg, len(prep.train_rows), world_size)
    plan = disk.plan(prep.model, cfg, prep.output_dir, peft=prep.method.peft, steps=steps,
                     model_dir=prep.model_path, existing=checkpoints(prep.output_dir))
    if plan.fits:
        return
    what = (f"this run writes checkpoints of {format_gib(plan.checkpoint_bytes)} each, up to "
            f"{plan.checkpoints_at_once} at once, and final/ of {format_gib(plan.final_bytes)}: "
            f"{format_gib(plan.need_bytes)} more, but the disk of {prep.output_dir} has {format_gib(plan.free_bytes)} free")
    limit = plan.fitting_limit()
    if limit is None:
        raise ConfigError(f"not enough disk space: {what}, not even room for one checkpoint and final/",
                          key="output_dir", hint="Free some space, or put the run on a larger disk (output_dir). "
                          "A LoRA/QLoRA run writes far smaller checkpoints than full fine-tuning.")
    writer.emit(ev.WARNING, kind="disk", message=f"the disk may fill up: {what}. With save_total_limit: {limit} "
                "the checkpoints fit; otherwise the run fails at the save that fills it (the earlier checkpoints "
                "are kept and it can be resumed once there is room)",
                fix={"save_total_limit": limit}, disk=plan.to_dict())


def _reload_model(prep: Prepared) -> None:
    """A fresh base with a fresh method, for a rollback when there is no checkpoint to go back to."""
    import torch

    prep.model = None
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    torch.manual_seed(prep.cfg.seed)
    prep.model = _model_to_train(prep.cfg, prep.model_path, prep.env, prep.method, prep.tokenizer)


def _model_to_train(cfg: RunConfig, model_path: Path, env: Any, method: Any, tokenizer: Any,
                    on_base: Callable[[Any], None] | None = None) -> Any:
    """The base loaded for training with the method applied; with ``add_tokens`` its embeddings
    grown to the tokenizer and those tokens' rows trainable. ``on_base`` sees the base first."""
    from engine import precision

    model = precision.load_model(cfg, model_path, env, vocab_size=len(tokenizer) if cfg.add_tokens else None)
    if on_base is not None:
        on_base(model)
    ids = tokenizer.convert_tokens_to_ids(list(cfg.add_tokens)) if cfg.add_tokens else []
    return method.apply(model, cfg, train_tokens=ids)


UNTRAINED_ROW = 1e-3
"""A vocabulary row counts as untrained below this fraction of the median row norm."""


def format_special_ids(tokenizer: Any, rendering: Any) -> list[int]:
    """The special tokens a prompt format writes: every marker of a conversation with a system
    turn and an answer in the history, the end of an answer included."""
    from engine.data.tokenize import render_prompt

    conv = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"},
            {"role": "assistant", "content": "a"}, {"role": "user", "content": "v"}]
    try:
        ids = render_prompt(tokenizer, conv, rendering)
    except Exception:  # noqa: BLE001 - a template that refuses a system turn
        ids = render_prompt(tokenizer, conv[1:], rendering)
    special = set(tokenizer.all_special_ids) | set(getattr(tokenizer, "added_tokens_decoder", {}) or {})
    return sorted({i for i in ids if i in special})


def untrained_rows(rows: int, read: Any, ids: list[int]) -> set[int]:
    """Which of ``ids`` index a next-to-zero row of one vocabulary matrix.

    Args:
        rows: The matrix's number of rows.
        read: ``read(start, stop)`` -> the float tensor of rows ``start:stop`` (a slice of a
            loaded weight, or of a safetensors file, so a check reads a few thousand rows).
        ids: The token ids to check.
    """
    import torch

    blocks = 16
    size = max(1, min(256, rows // blocks))
    starts = sorted({int(k * (rows - size) / max(blocks - 1, 1)) for k in range(blocks)})
    sample = torch.cat([read(a, a + size).float().norm(dim=1) for a in starts])
    median = float(sample.median())
    if median <= 0:
        return set()
    return {i for i in ids if i < rows and float(read(i, i + 1).float().norm()) < UNTRAINED_ROW * median}


def untrained_format_tokens(model: Any, tokenizer: Any, rendering: Any) -> list[str]:
    """The special tokens the run's prompt format writes whose embedding (or output head) rows look
    untrained: next to nothing compared with the typical row (below 1/1000 of the median norm).

    Base models often ship chat tokens they never trained (Llama 3's ``<|eot_id|>`` and header
    markers are all but zero in the base model): the model can't read them, and learning to write
    one from a zero row takes long or turns the loss NaN in half precision.
    """
    import torch

    found = format_special_ids(tokenizer, rendering)
    if not found:
        return []
    bad: set[int] = set()
    with torch.no_grad():
        for layer in (model.get_input_embeddings(), model.get_output_embeddings()):
            weight = getattr(layer, "weight", None)
            if weight is None or weight.dim() != 2 or weight.dtype not in (torch.float32, torch.float16,
                                                                            torch.bfloat16):
                continue
            bad |= untrained_rows(weight.shape[0], lambda a, b, w=weight: w[a:b], found)
    return [tokenizer.convert_ids_to_tokens(i) for i in sorted(bad)]


def check_format_tokens(cfg: RunConfig, tokenizer: Any = None, load: Any = None) -> dict[str, Any] | None:
    """Before a run: the format's special tokens whose rows are untrained in the model's files.

    Reads, from the safetensors files, only the vocabulary matrices' sampled rows and the tokens'
    rows (no model is loaded). ``tokenizer``: the model's, with ``cfg.add_tokens`` added, when the
    caller has it (else it is loaded, by ``load(path, trust_remote_code=, add_tokens=)`` when given,
    e.g. a caching loader; ``engine.models.load_tokenizer`` by default). ``None`` when all is well or it can't tell (pickle or
    quantized weights); else the warning the run would give: ``kind``, ``message``, ``hint``,
    ``fix`` and ``tokens``.
    """
    from safetensors import safe_open

    from engine.data.templates import resolve as resolve_template
    from engine.models import load_tokenizer, resolve_model_path, vocab_matrices

    path = resolve_model_path(cfg.model)
    matrices = vocab_matrices(path)
    if not matrices:
        return None
    if tokenizer is None:
        tokenizer = (load or load_tokenizer)(str(path), trust_remote_code=cfg.trust_remote_code,
                                             add_tokens=cfg.add_tokens)
    rendering = resolve_template(tokenizer, cfg.template)
    found = format_special_ids(tokenizer, rendering)
    bad: set[int] = set()
    for file, name, rows in matrices:
        with safe_open(str(file), framework="pt") as f:  # one open per matrix; rows read by slice
            weight = f.get_slice(name)
            bad |= untrained_rows(rows, lambda a, b, w=weight: w[a:b], found)
    tokens = [t for t in (tokenizer.convert_ids_to_tokens(i) for i in sorted(bad)) if t not in cfg.add_tokens]
    return {"kind": "untrained_tokens", "tokens": tokens, **untrained_advice(tokens, rendering.name, cfg)} \
        if tokens else None


def untrained_advice(bad: list[str], format_name: str, cfg: RunConfig) -> dict[str, Any]:
    """The warning about ``bad`` format tokens: message, hint and (for methods that can) the fix."""
    from engine.config import TOKEN_METHODS

    listed = ", ".join(bad)
    msg = (f"the {format_name} format's {listed} {'has' if len(bad) == 1 else 'have'} untrained embeddings in "
           "this model (their rows are next to zero, as in Llama 3 base models): it can't read them, and learning "
           "to write them from zero is slow and can turn the loss NaN")
    if cfg.method in TOKEN_METHODS:
        return {"message": msg, "hint": f"Train their rows too: add_tokens: {bad} (they are in the vocabulary "
                "already; only their embeddings train).", "fix": {"add_tokens": [*cfg.add_tokens, *bad]}}
    return {"message": msg, "hint": f"Method {cfg.method} can't train embedding rows: use lora, qlora or full with "
            f"add_tokens: {bad}, or a format whose tokens this model knows.", "fix": {}}


def _warn_untrained(model: Any, tokenizer: Any, rendering: Any, cfg: RunConfig, writer: EventWriter) -> None:
    """Warn, with ``add_tokens`` as the fix, about format tokens this base never trained."""
    bad = [t for t in untrained_format_tokens(model, tokenizer, rendering) if t not in cfg.add_tokens]
    if bad:
        writer.emit(ev.WARNING, kind="untrained_tokens", **untrained_advice(bad, rendering.name, cfg))


def _next_pow2(n: int) -> int:
    return 1 << max(4, math.ceil(math.log2(max(n, 1))))


# ---------------------------------------------------------------- The Trainer callback
def _run_gpu(cfg: RunConfig) -> Any:
    """The run's GPU as nvidia-smi reports it now (an ``engine.nvsmi.GpuStatus``), or None when it
    can't be told: no nvidia-smi, a CPU run, several processes (a launcher's ranks share the GPUs),
    or the GPU not told apart from others.

    Asked before this process creates a CUDA context, it says what other programs hold
    (:func:`_gpu_used_before`); the run's load sampler follows the same GPU.
    """
    if cfg.device == "cpu" or int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        return None
    from engine import nvsmi

    statuses = nvsmi.query()  # before torch is asked anything about the GPU
    if not statuses:
        return None
    import torch

    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(0)
    return nvsmi.cuda_gpu(statuses, str(getattr(props, "uuid", "") or "") or None, props.name)


def _gpu_used_before(gpu: Any) -> int | None:
    """Memory in use on ``gpu`` (:func:`_run_gpu`) before this process touched it: other programs',
    this process's own (if it holds any already) left out; None without ``gpu``.

    ``mem_get_info`` at the end of a run sees the whole GPU; a notebook that held 8 GiB before the
    run would otherwise make the run's measured peak, and every estimate compared with it, read
    8 GiB high.
    """
    return gpu.held_by_others({os.getpid()})[0] if gpu is not None else None


def device_peak(total: int, free: int, used_before: int | None, reserved_peak: int | None) -> int:
    """This run's peak as the driver sees it: the GPU's used memory at the end (torch's cache
    still holds the peak's blocks) less what other programs held before the run, never below
    what torch itself reserved at its peak."""
    used = int(total - free) - (used_before or 0)
    return max(used, int(reserved_peak or 0))


def _gpu_memory() -> dict[str, int]:
    import torch

    if not torch.cuda.is_available():
        return {}
    return {"gpu_mem_allocated": int(torch.cuda.memory_allocated()),
            "gpu_mem_reserved": int(torch.cuda.memory_reserved()),
            "gpu_mem_peak_allocated": int(torch.cuda.max_memory_allocated()),
            "gpu_mem_peak_reserved": int(torch.cuda.max_memory_reserved())}


def _finite(x: float | None) -> bool:
    return x is None or math.isfinite(x)


def _make_callback_class():
    from transformers import TrainerCallback

    class EventCallback(TrainerCallback):
        """Trainer logs -> events and metrics.jsonl; commands -> control flags; NaN guard.

        ``trainer`` is set after the Trainer is built: the per-step health check reads the
        step's losses and gradient norm from it.
        """

        def __init__(self, writer: EventWriter, commands: Commands, output_dir: Path, is_main: bool,
                     train_lines: list | None = None):
            self.writer, self.commands, self.output_dir, self.is_main = writer, commands, output_dir, is_main
            self.train_lines = train_lines or []
            self.probe = False  # set by _build_trainer: a probe saves nothing, not even on stop
            self.sampler: Any = None  # set by _build_trainer (main process, one GPU, not a probe)
            self.gpu: Any = None  # engine.nvsmi.Sampler, set by _build_trainer: the GPU's load
            self.batch: tuple[int, int] = (1, 1)  # (micro-batch, accumulation), for the idle advice
            self.busy_window = False  # this logging interval evaluated, saved or sampled: not a training-only reading
            self.samples_at_save = False  # no eval data: the samples come with each checkpoint
            self.tokenizer: Any = None  # set when the run added tokens, or trains whole layers: each checkpoint keeps it
            self.on_begin: Callable[[], None] | None = None  # the first step is about to train (_commit_resume)
            self.trainer: Any = None
            self.metrics = open(output_dir / "metrics.jsonl", "a", encoding="utf-8") if is_main else None
            self.t_last = time.time()
            self.tokens_last = 0
            self.step_last = 0
            self.t_start = time.time()
            self.step_start = 0
            self.nonfinite: dict | None = None
            self.last_loss: float | None = None
            self.best_eval: float | None = None
            self.skipped_steps = 0  # fp16 loss-scaler overflows (the step was skipped, which is normal)
            # The optimizer step under way, from its first micro-batch through its logging, saving
            # and evaluation (global_step counts it done only before on_step_end); None before
            # the first. A failure's error names it.
            self.step_running: int | None = None

        def close(self) -> None:
            if self.metrics:
                self.metrics.close()
                self.metrics = None

        def _row(self, row: dict) -> None:
            if self.metrics:
                # One line per log, flushed so a kill -9 loses at most the line being written
                # (read_metrics skips a torn last line).
                self.metrics.write(json.dumps(row) + "\n")
                self.metrics.flush()

        def on_train_begin(self, args, state, control, **kw):
            if 0 < state.max_steps <= state.global_step:
                # Resuming a finished run: Trainer would run one more step before it checks
                # max_steps (training past the plan, on a zero learning rate).
                raise _NothingLeftToTrain
            if self.is_main and self.on_begin is not None:
                self.on_begin()
            self.t_start = self.t_last = time.time()
            self.step_start = self.step_last = state.global_step
            self.tokens_last = getattr(state, "num_input_tokens_seen", 0) or 0

        def on_step_begin(self, args, state, control, **kw):
            self.step_running = state.global_step + 1

        def on_step_end(self, args, state, control, **kw):
            got = self.commands.poll()
            health = self.trainer.take_step_health(stop="stop" in got, save="save" in got) \
                if self.trainer is not None else {"stop": "stop" in got, "save": "save" in got}
            if health.get("nonfinite"):
                # The update with the bad gradient has been applied: never checkpoint or
                # evaluate these weights; stop and let the guard roll back.
                self.nonfinite = {"step": state.global_step, "loss": health.get("loss"),
                                  "grad_norm": health.get("grad_norm"),
                                  "sample_indices": health.get("samples") or [],
                                  "record_lines": [self.train_lines[i] for i in health.get("samples") or []
                                                   if 0 <= i < len(self.train_lines)]}
                control.should_training_stop = True
                control.should_save = control.should_evaluate = control.should_log = False
                return
            if health.get("skipped"):
                self.skipped_steps += 1
            if (health.get("save") or health.get("stop")) and not self.probe:  # a probe saves nothing
                control.should_save = True
            if health.get("stop"):
                self.commands.stop_requested = True
                control.should_training_stop = True
                self.writer.emit(ev.WARNING, kind="stopping", message=f"stopping after step "
                                 f"{state.global_step}; saving a checkpoint")
            if control.should_training_stop:
                # The last step logs whatever logging_steps says (Trainer logs it only on a multiple):
                # a run shorter than logging_steps had no loss at all, a longer one lost its last steps'.
                control.should_log = True

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
                       "tokens_per_s": (tokens - self.tokens_last) / dt, "tokens_seen": tokens,
                       "samples_per_s": dsteps * args.per_device_train_batch_size
                       * args.gradient_accumulation_steps * max(args.world_size, 1) / dt,
                       "time": now, **_gpu_memory()}
                gpu_load = self.gpu.window(self.t_last, now) if self.gpu is not None else {}
                row.update(gpu_load)
                if self.is_main:
                    self._follow_idle(gpu_load.get("gpu_util_pct"), step, now)
                self.busy_window = False
                self.t_last, self.tokens_last, self.step_last = now, tokens, step
                fp16_overflow = args.fp16 and math.isfinite(loss) and not _finite(grad_norm)
                if not math.isfinite(loss) or (not _finite(grad_norm) and not fp16_overflow):
                    # Backstop for a trainer without the per-step check (it normally fires first).
                    if self.nonfinite is None:
                        self.nonfinite = {"step": step, "loss": loss, "grad_norm": grad_norm,
                                          "sample_indices": [], "record_lines": []}
                    control.should_training_stop = True
                    control.should_save = control.should_evaluate = False
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

        def _follow_idle(self, util: float | None, step: int, now: float) -> None:
            """Say once when the GPU keeps waiting: IDLE_WINDOWS logging intervals in a row, each
            only training (no evaluation, save or sampling in it), below IDLE_PCT busy, after
            IDLE_MIN_S of training (the first steps warm up)."""
            g = self.gpu
            if g is None or g.warned or util is None or self.busy_window:
                return
            g.idle_windows = g.idle_windows + 1 if util < IDLE_PCT else 0
            if g.idle_windows < IDLE_WINDOWS or now - self.t_start < IDLE_MIN_S:
                return
            g.warned = True
            mean = g.window(self.t_start, now).get("gpu_util_pct", util)
            micro, accum = self.batch
            fix = ({"batch_size": micro * 2, "gradient_accumulation_steps": accum // 2}
                   if accum >= 2 and accum % 2 == 0 else {})
            self.writer.emit(ev.WARNING, kind="gpu_idle", step=step, gpu_util_pct=mean, fix=fix, message=(
                f"the GPU was busy only {util:.0f}% of the time over the last {IDLE_WINDOWS} logging intervals "
                f"({mean:.0f}% since the run started): its steps wait for the CPU side (batching the data, "
                "Python overhead), or are too small to fill it"),
                hint=("A larger micro-batch with less gradient accumulation trains the same (the same effective "
                      f"batch: micro-batch {micro * 2} x accumulation {accum // 2}) and gives the GPU more at once, "
                      "if it fits (the Train area's gauge says the largest that does). "
                      if fix else "A larger micro-batch gives the GPU more at once, if it fits (the gauge says the "
                      "largest that does). ")
                + "group_by_length cuts the padding; evaluating or logging less often cuts the pauses.")

        def on_save(self, args, state, control, **kw):
            self.busy_window = True
            if self.is_main:
                path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                if self.tokenizer is not None and path.is_dir():
                    # Its added tokens' ids are what the checkpoint's embedding rows mean.
                    self.tokenizer.save_pretrained(path)
                self.writer.emit(ev.CHECKPOINT, step=state.global_step, path=str(path))
                write_summary(self.output_dir, step=state.global_step, last_checkpoint=str(path))
            scheduled = args.save_steps and state.global_step % args.save_steps == 0  # not a "save now"
            if self.samples_at_save and scheduled and not self.commands.stop_requested:
                self.sample(state.global_step)

        def on_evaluate(self, args, state, control, **kw):
            self.busy_window = True
            self.sample(state.global_step)

        def sample(self, step: int) -> None:
            """Answer the sample records with the model as it is now (see engine.samples)."""
            s = self.sampler
            if s is None or s.off or s.last_step == step or self.nonfinite is not None or self.trainer is None:
                return
            self.busy_window = True  # generating answers: not a training-only reading
            import torch

            try:
                data = s.answer(self.trainer.model, step, self.trainer.autocast_smart_context_manager())
            except Exception as e:  # noqa: BLE001 - samples are a view; they never stop a run
                s.off = True
                if isinstance(e, torch.cuda.OutOfMemoryError):
                    torch.cuda.empty_cache()
                self.writer.emit(ev.WARNING, kind="samples", message=f"sample answers are off for the rest of "
                                 f"this run: generating them failed at step {step} ({type(e).__name__}: {e})",
                                 fix={"sample_answers": 0})
                return
            s.record(data)
            self.writer.emit(ev.SAMPLES, **data)

    return EventCallback


# ---------------------------------------------------------------- The Trainer
class _ListDataset:
    """Tokenized rows as a map-style dataset; each item carries its index for error reports."""

    def __init__(self, rows: list[dict]):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        return {**self.rows[i], "sample_index": i}


class _IndexedCollator:
    """Wraps a collator: strips ``sample_index`` before it and adds it back as a tensor.

    The trainer pops it again before the forward pass; it lets a non-finite step name the
    exact training rows (and their source lines) of its batch.
    """

    def __init__(self, base: Callable):
        self.base = base

    def __call__(self, features: list[dict]) -> dict:
        import torch

        index = [f.get("sample_index", -1) for f in features]
        batch = self.base([{k: v for k, v in f.items() if k != "sample_index"} for f in features])
        batch["sample_index"] = torch.tensor(index, dtype=torch.long)
        return batch


CHECKPOINT_ORDER_NOTE = "mtime may not be reliable on this filesystem"
"""The start of transformers' note (``trainer_utils.sort_checkpoints``) that it orders checkpoints by step."""


class _StepOrderedCheckpoints:
    """A logging filter that drops transformers' "mtime may not be reliable on this filesystem, falling
    back to numerical ordering", and nothing else.

    Trainer rotates checkpoints (``save_total_limit``) after each save, sorting them by mtime, and
    takes an oldest-to-newest spread under a second for a filesystem with fake mtimes. Ours are
    real: the checkpoints were simply written within a second (a small model, a fast GPU, no sample
    answers between saves). The fallback it announces, ordering checkpoint-N by N, is exactly our
    step order, so the line told the user of a problem that wasn't there.
    """

    def filter(self, record: Any) -> bool:
        return not str(record.msg).startswith(CHECKPOINT_ORDER_NOTE)


def _quiet_checkpoint_order_note() -> None:
    """Install :class:`_StepOrderedCheckpoints` on transformers' trainer_utils logger (once)."""
    from transformers.utils import logging as hf_logging

    logger = hf_logging.get_logger("transformers.trainer_utils")
    if not any(isinstance(f, _StepOrderedCheckpoints) for f in logger.filters):
        logger.addFilter(_StepOrderedCheckpoints())


def _trainer_class():
    import torch
    from transformers import Trainer

    _quiet_checkpoint_order_note()  # every Trainer of ours comes from here: worker, CLI, launch, queue

    class StudioTrainer(Trainer):
        """Trainer plus what the guards need.

        - a per-step health check (:meth:`take_step_health`): the step's micro-batch losses
          and gradient norm, one device sync per optimizer step;
        - the run config's learning rate and schedule win over those stored in a checkpoint
          when resuming (:meth:`_load_optimizer_and_scheduler`), so a rollback's halved
          learning rate really takes effect, and a run extended past its old max_steps
          continues on its new schedule from the first resumed step;
        - ``fault_injector(global_step)``, called before every micro-batch (tests only): it may
          raise (e.g. ``torch.OutOfMemoryError``) or return ``"nan"`` to make that micro-batch's
          loss NaN, whose gradient then poisons the weights like a real divergence.
        """

        fault_injector: Callable[[int], Any] | None = None
        loraplus_lr_ratio: float = 0.0

        def __init__(self, *args: Any, **kwargs: Any):
            super().__init__(*args, **kwargs)
            self._step_losses: list = []
            self._step_samples: list = []
            self._step_grad_norm: Any = None
            self._poison = False

        def create_optimizer(self, model=None):
            """Trainer's optimizer, or with LoRA+ the same optimizer class and settings (fused AdamW,
            8-bit AdamW...) with PEFT's parameter groups: B matrices at ``loraplus_lr_ratio`` x the
            learning rate."""
            if not self.loraplus_lr_ratio or self.optimizer is not None:
                return super().create_optimizer(model)
            from peft.optimizers import create_loraplus_optimizer

            opt_model = self.model if model is None else model
            cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(self.args, opt_model)
            lr = kwargs.pop("lr", self.args.learning_rate)
            self.optimizer = create_loraplus_optimizer(opt_model, cls, lr=lr, loraplus_lr_ratio=self.loraplus_lr_ratio,
                                                       loraplus_weight_decay=self.args.weight_decay, **kwargs)
            return self.optimizer

        def training_step(self, model, inputs, num_items_in_batch=None):
            self._poison = False
            if self.fault_injector is not None:
                self._poison = self.fault_injector(self.state.global_step) == "nan"
            loss = super().training_step(model, inputs, num_items_in_batch)
            self._step_losses.append(loss)
            return loss

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            samples = inputs.pop("sample_index", None)
            if samples is not None and model.training:
                self._step_samples.append(samples)  # a tensor: no device sync here
            out = super().compute_loss(model, inputs, return_outputs=return_outputs,
                                       num_items_in_batch=num_items_in_batch)
            if self._poison and model.training:
                nan = float("nan")
                out = (out[0] * nan, *out[1:]) if return_outputs else out * nan
            return out

        def _get_grad_norm(self, model, grad_norm=None):
            self._step_grad_norm = super()._get_grad_norm(model, grad_norm=grad_norm)
            return self._step_grad_norm

        def take_step_health(self, *, stop: bool = False, save: bool = False) -> dict[str, Any]:
            """Was the optimizer step that just ended finite? Also agrees stop/save across ranks.

            Under DDP the flags are max-reduced, so every rank stops, saves or rolls back at the
            same step (a rank that decided alone would hang the others in the next collective).

            Returns:
                ``{"nonfinite", "skipped", "stop", "save"}``, plus ``loss``, ``grad_norm`` and
                ``samples`` (training-row indices of this rank's batch) when non-finite.
            """
            losses, samples, gn = self._step_losses, self._step_samples, self._step_grad_norm
            self._step_losses, self._step_samples, self._step_grad_norm = [], [], None
            device = self.args.device
            loss = torch.stack([x.float().reshape(()) for x in losses]).sum().to(device) if losses \
                else torch.zeros((), device=device)
            norm = torch.as_tensor(0.0 if gn is None else gn, dtype=torch.float32).to(device)
            flags = torch.stack([(~torch.isfinite(loss)).float(), (~torch.isfinite(norm)).float(),
                                 torch.tensor(float(stop), device=device), torch.tensor(float(save), device=device)])
            if self.args.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
                torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX)
            bad_loss, bad_norm, stop_all, save_all = (flags > 0).tolist()  # the one sync per step
            # With fp16 loss scaling an inf/NaN gradient and a finite loss is the scaler's normal
            # overflow: the optimizer skipped the step and lowered the scale. Not a divergence.
            overflow = bad_norm and not bad_loss and getattr(self.accelerator, "scaler", None) is not None
            out: dict[str, Any] = {"nonfinite": bad_loss or (bad_norm and not overflow), "skipped": overflow,
                                   "stop": stop_all, "save": save_all}
            if out["nonfinite"]:
                out.update(loss=float(loss), grad_norm=None if gn is None else float(norm),
                           samples=torch.cat([s.reshape(-1) for s in samples]).tolist() if samples else [])
            return out

        def create_scheduler(self, num_training_steps, optimizer=None):
            """Trainer's scheduler, except that a warm-up ratio worth less than one step is none:
            transformers rounds it up to a whole step, whose learning rate is 0 (a 20-step run
            at warmup_ratio 0.03 spent its first step training nothing)."""
            ratio = self.args.warmup_steps
            if not (0 < ratio < 1 and num_training_steps * ratio < 1):
                return super().create_scheduler(num_training_steps, optimizer)
            self.args.warmup_steps = 0
            try:
                return super().create_scheduler(num_training_steps, optimizer)
            finally:
                self.args.warmup_steps = ratio

        def _load_optimizer_and_scheduler(self, checkpoint):
            scheduler = self.lr_scheduler
            fresh = list(getattr(scheduler, "base_lrs", None) or [])
            super()._load_optimizer_and_scheduler(checkpoint)
            if checkpoint is None or not fresh or self.is_deepspeed_enabled:
                return
            groups = self.optimizer.param_groups
            restored = list(scheduler.base_lrs)
            if len(restored) != len(fresh):
                return
            # The checkpoint brought back the learning rate it was saved with. The run config's
            # wins (a rollback halves it; a user may lower it before resuming).
            scheduler.base_lrs = fresh
            for group, new in zip(groups, fresh, strict=True):
                group["initial_lr"] = new
            lambdas = getattr(scheduler, "lr_lambdas", None)
            if lambdas and len(lambdas) == len(groups):
                # The current value from this run's schedule at the restored position: the plan
                # may be longer than the checkpoint's (a completed run resumed with more
                # max_steps), whose last value (0 at a cosine's end) would train the next step.
                for group, base, fn in zip(groups, fresh, lambdas, strict=True):
                    group["lr"] = base * fn(scheduler.last_epoch)
            else:
                for group, old, new in zip(groups, restored, fresh, strict=True):
                    group["lr"] = group["lr"] * (new / old) if old else new
            scheduler._last_lr = [group["lr"] for group in groups]

    return StudioTrainer


def training_arguments_kwargs(cfg: RunConfig, prep: Prepared) -> dict[str, Any]:
    """The ``TrainingArguments`` keyword arguments for this run (split out to be testable).

    Args:
        cfg: the run config (possibly changed by a guard since setup).
        prep: the prepared run (output folder, eval rows, environment).
    """
    from engine import precision

    has_eval = bool(prep.eval_rows)
    kwargs: dict[str, Any] = dict(
        output_dir=str(prep.output_dir),
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        num_train_epochs=cfg.num_epochs,
        max_steps=cfg.max_steps,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type="cosine_with_min_lr" if cfg.lr_scheduler == "cosine" and cfg.min_lr_ratio else cfg.lr_scheduler,
        lr_scheduler_kwargs={"min_lr_rate": cfg.min_lr_ratio} if cfg.lr_scheduler == "cosine" and cfg.min_lr_ratio
        else {},
        # An int counts steps; a float < 1 is a ratio of the total steps (transformers 5).
        warmup_steps=cfg.warmup_steps if cfg.warmup_steps > 0 else float(cfg.warmup_ratio),
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
        neftune_noise_alpha=cfg.neftune_noise_alpha or None,
        # LengthGroupedSampler: megabatches of 50 x the batch sorted by length, longest batch first.
        train_sampling_strategy="group_by_length" if cfg.group_by_length else "random",
    )  # gradient checkpointing is applied by precision.load_model, before the method
    if cfg.early_stopping_patience and has_eval:
        # Trainer keeps the best checkpoint and loads it at the end; that needs a checkpoint at
        # every evaluation. Without eval_steps, evaluate at each checkpoint (or each epoch).
        every = cfg.eval_steps or cfg.save_steps
        strategy = "steps" if every else "epoch"
        kwargs.update(eval_strategy=strategy, eval_steps=every or None, save_strategy=strategy,
                      save_steps=cfg.save_steps or every or 500, load_best_model_at_end=True,
                      metric_for_best_model="eval_loss", greater_is_better=False)
    kwargs.update(precision.trainer_precision_kwargs(cfg, prep.env))  # bf16/fp16, optim, device, eps, clip
    if cfg.deepspeed:
        # HF fills the JSON's "auto" values (batch, accumulation, lr, precision) from these arguments.
        kwargs["deepspeed"] = cfg.deepspeed
    return kwargs


def _build_trainer(prep: Prepared, writer: EventWriter, commands: Commands, callback_cls: type,
                   fault_injector: Callable[[int], Any] | None, is_main: bool) -> tuple[Any, Any]:
    from transformers import (
        DataCollatorForSeq2Seq,
        DataCollatorWithFlattening,
        PrinterCallback,
        TrainingArguments,
    )

    cfg = prep.cfg
    # Packing: each micro-batch becomes one row with restarting position_ids; transformers'
    # masks detect the boundaries from them, so records never attend to each other.
    base_collator = (DataCollatorWithFlattening() if cfg.packing else
                     DataCollatorForSeq2Seq(prep.tokenizer, padding=True, label_pad_token_id=-100,
                                            pad_to_multiple_of=8 if prep.env.cuda else None))
    cb = callback_cls(writer, commands, prep.output_dir, is_main, prep.train_lines)
    callbacks = [cb]
    if cfg.early_stopping_patience and prep.eval_rows:
        from transformers import EarlyStoppingCallback

        callbacks.append(EarlyStoppingCallback(early_stopping_patience=cfg.early_stopping_patience,
                                               early_stopping_threshold=cfg.early_stopping_threshold))
    trainer = _trainer_class()(model=prep.model, args=TrainingArguments(**training_arguments_kwargs(cfg, prep)),
                               train_dataset=_ListDataset(prep.train_rows),
                               eval_dataset=_ListDataset(prep.eval_rows) if prep.eval_rows else None,
                               data_collator=_IndexedCollator(base_collator), callbacks=callbacks)
    trainer.fault_injector = fault_injector
    trainer.loraplus_lr_ratio = cfg.loraplus_lr_ratio
    trainer.remove_callback(PrinterCallback)  # our callback reports; no raw dict prints
    cb.trainer = trainer
    cb.probe = prep.probe
    cb.gpu = prep.gpu_sampler
    cb.batch = (cfg.batch_size, cfg.gradient_accumulation_steps)
    cb.on_begin = lambda: _commit_resume(prep)
    if (cfg.add_tokens or cfg.method in ("full", "freeze")) and not prep.probe:
        # Added tokens: their ids are what the embedding rows mean. Full and freeze: a checkpoint is
        # then a whole model that generate, export-gguf and adapters compare take as it is.
        cb.tokenizer = prep.tokenizer
    if (prep.sampler is not None and not prep.probe and is_main and not cfg.deepspeed
            and int(os.environ.get("WORLD_SIZE", "1")) == 1):
        # One GPU only: under DDP the other ranks would wait in a collective meanwhile, and ZeRO
        # partitions the weights generate needs.
        cb.sampler = prep.sampler
        cb.samples_at_save = not prep.eval_rows
    return trainer, cb


def _release(trainer: Any) -> None:
    """Drop a failed Trainer's gradients, optimizer state and references before the next try.

    After a CUDA OOM the half-done step's gradients and the optimizer's states are still
    allocated; the next try (or a model reload) needs that memory.
    """
    import torch

    try:
        trainer.model.zero_grad(set_to_none=True)
        trainer.accelerator.free_memory()
    except Exception:  # noqa: BLE001 - best effort; the next Trainer builds its own
        pass
    trainer.optimizer = trainer.lr_scheduler = None
    trainer.model = trainer.model_wrapped = None
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _go_back_to(prep: Prepared, checkpoint: Path | None, is_main: bool) -> None:
    """Prepare to resume from ``checkpoint``, or from scratch (a fresh model) when it is None."""
    if is_main:
        step = checkpoint_step(checkpoint) if checkpoint else 0
        _discard_checkpoints_after(prep.output_dir, step)
        rewind_metrics(prep.output_dir, step)
        clamp_config_changes(prep.output_dir, step)
    if checkpoint is None:
        # The weights in memory are past the point we go back to (or broken): start afresh.
        _reload_model(prep)


# ---------------------------------------------------------------- Train
def _records_note(stats: dict) -> str:
    """The model card's record counts, which add up: ``7 records: 3 train, 0 eval, 4 left out (2
    unreadable, 2 with nothing to train on)``."""
    broken, dropped = stats.get("broken") or 0, stats.get("dropped") or 0
    total = (stats.get("records") or 0) + broken
    out = f"{total} records: {stats.get('train')} train, {stats.get('eval')} eval"
    if broken or dropped:
        why = [f"{broken} unreadable"] if broken else []
        why += [f"{dropped} with nothing to train on"] if dropped else []
        out += f", {broken + dropped} left out ({', '.join(why)})"
    return out


def _model_card(prep: Prepared, result: dict) -> str:
    cfg = prep.cfg
    changes = read_summary(prep.output_dir).get("config_changes")
    hp = "\n".join(f"| {k} | {with_history(v, config_history(changes, k), shown=str)} |"
                   for k, v in cfg.to_dict().items() if k not in ("output_dir",))
    early_note = (f" (stopped early; these weights are the best checkpoint, step {result.get('best_step')})"
                  if result.get("early_stopped") else "")
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
- **Data:** `{prep.data_stats.get('path')}` ({prep.data_stats.get('detected')}); {_records_note(prep.data_stats)}; content hash `{prep.data_stats.get('hash')}`; {prep.data_stats.get('truncated')} truncated to {cfg.seq_len} tokens{_eval_file_note(prep.data_stats.get('eval_dataset'))}
- **Prompt format:** {_format_note(prep.data_stats.get('template'))}{_tokens_note(cfg, prep.data_stats)}
- **Steps:** {result.get('step')}; **final training loss:** {_fmt(result.get('final_loss_mean'))}{_window_note(result)}; **best eval loss:** {_fmt(result.get('best_eval_loss'))}
- **Status:** {result.get('status')}{early_note}

## Load it
```python
{_load_snippet(prep)}
```

## Hyperparameters
| key | value |
|---|---|
{hp}
"""


def _window_note(result: dict) -> str:
    n = result.get("final_loss_window")
    if not n or n == 1:
        return " (the last logged step's)" if n == 1 else ""
    return f" (mean of the last {n} logged steps; the last step alone {_fmt(result.get('final_loss'))})"


def _eval_file_note(info: dict | None) -> str:
    if not info:
        return ""
    shared = f", {info['in_training_data']} of them also in the training data" if info.get("in_training_data") else ""
    return (f"\n- **Eval data:** `{info.get('path')}` ({info.get('detected')}); {info.get('evaluated')} records "
            f"evaluated{shared}; content hash `{info.get('hash')}`")


def nonfinite_what(bad: dict) -> tuple[str, str]:
    """What became non-finite at a bad step, and its numbers: ``("the gradient norm",
    "loss=13.82, grad_norm=nan")``. A finite loss with a NaN gradient norm is not a NaN loss."""

    def finite(x: Any) -> bool:
        return isinstance(x, (int, float)) and math.isfinite(x)

    loss, grad = bad.get("loss"), bad.get("grad_norm")
    loss_bad = not finite(loss)
    grad_bad = grad is not None and not finite(grad)
    subject = ("the loss and the gradient norm" if loss_bad and grad_bad
               else "the gradient norm" if grad_bad else "the loss")
    numbers = [f"loss={loss:.4g}" if finite(loss) else f"loss={loss}"]
    if grad is not None:
        numbers.append(f"grad_norm={grad:.4g}" if finite(grad) else f"grad_norm={grad}")
    return subject, ", ".join(numbers)


def _fmt(x: Any) -> str:
    return f"{x:.4f}" if isinstance(x, (int, float)) else "-"


def _load_snippet(prep: Prepared) -> str:
    final = str(prep.output_dir / "final")
    if prep.method.peft:
        return ("from peft import AutoPeftModelForCausalLM\n"
                f"model = AutoPeftModelForCausalLM.from_pretrained({final!r})")
    if prep.cfg.method == "adapter":
        return ("from transformers import AutoModelForCausalLM\n"
                "from engine.config import RunConfig\n"
                "from engine.methods import get_method\n"
                f"base = AutoModelForCausalLM.from_pretrained({str(prep.model_path or prep.cfg.model)!r})\n"
                f"model = get_method('adapter').load(base, {final!r}, RunConfig.load({str(prep.output_dir / 'run.yaml')!r}))")
    return ("from transformers import AutoModelForCausalLM\n"
            f"model = AutoModelForCausalLM.from_pretrained({final!r})")


# The attribute that carries, on an exception raised inside Trainer.train(), the step it failed at.
FAILED_STEP = "finetune_studio_step"


def _note_failed_step(exc: BaseException, step: int | None) -> None:
    """Record on ``exc`` the optimizer step that was running when it was raised (the first note wins)."""
    if step is not None and getattr(exc, FAILED_STEP, None) is None:
        try:
            setattr(exc, FAILED_STEP, step)
        except AttributeError:  # an exception class with __slots__: the step stays unknown
            pass


def _is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def run_training(cfg: RunConfig, writer: EventWriter | None = None, *, resume: bool = False,
                 commands: Commands | None = None,
                 fault_injector: Callable[[int], Any] | None = None,
                 on_trained: Callable[[Any], None] | None = None,
                 probe_of: RunConfig | None = None) -> dict[str, Any]:
    """Run one training from a validated config; emit events; never lose progress.

    Args:
        cfg: the run config.
        writer: where events go (default: stdout as JSON lines).
        resume: continue from the newest checkpoint in ``cfg.output_dir``.
        commands: stop/save requests (the worker feeds it from stdin).
        fault_injector: tests only: called with the global step before each micro-batch; may
            raise (e.g. ``torch.OutOfMemoryError``) or return ``"nan"`` to poison that
            micro-batch's loss, to exercise the guards on a CPU.
        on_trained: called with the trained model after the final save (in-process callers
            such as tests compare it with what was saved). Not called when training failed.
        probe_of: ``cfg`` is a probe (:func:`engine.probe.probe_config`) of this config: nothing
            is saved, and the result's ``probe`` holds what was measured (time per step,
            projected duration, peak memory beside the estimate).

    Returns:
        The final summary (status, output_dir, final_loss, best_eval_loss, peaks...).
    """
    import torch
    from accelerate import PartialState

    from engine.precision import resolve_device

    gpu = _run_gpu(cfg)  # first: before anything here creates a CUDA context
    # cpu=True matters under a launcher: without it accelerate sees no GPU backend and sets up
    # a single process, while TrainingArguments(use_cpu=True) would later set up gloo DDP.
    state = PartialState(cpu=cfg.device == "cpu" or not torch.cuda.is_available())
    is_main = state.is_main_process
    writer = writer or EventWriter()
    if not is_main:
        writer = EventWriter(stream=open(os.devnull, "w"))  # one event stream per run, from rank 0
    commands = commands or Commands()
    started = time.time()
    prep = None
    awake = None
    progress = SetupProgress()
    try:
        prep = setup(cfg, writer, resume=resume, is_main=is_main, progress=progress)
        prep.probe = probe_of is not None
        prep.gpu_used_before = _gpu_used_before(gpu)
        if is_main and gpu is not None:
            from engine.nvsmi import Sampler

            prep.gpu_sampler = Sampler(gpu, interval_s=GPU_SAMPLE_S).start()
        cfg = prep.cfg
        commands.output_dir = prep.output_dir
        ckpt = last_checkpoint(prep.output_dir) if resume else None
        if is_main:
            # A resumed run's duration is the training time of all its legs, not this leg's
            # alone nor the wall time since the first; read before this leg writes anything.
            # Resuming without a checkpoint starts over: the earlier legs' time is not its own.
            earlier_s, legs = training_time_so_far(prep.output_dir) if ckpt is not None else (0.0, 0)
            first = (first_start(prep.output_dir) if ckpt is not None else None) or started
            # A leg that failed before this one: its error is history now (a run that starts over keeps none).
            retired = retired_error(read_summary(prep.output_dir), keep=ckpt is not None)
            (prep.output_dir / "worker.pid").write_text(str(os.getpid()))
            mirror = open(prep.output_dir / "events.jsonl", "a", encoding="utf-8")
            writer.mirror = mirror
            write_summary(prep.output_dir, status="running", started=started, finished=None,
                          earlier_legs_s=earlier_s, legs=legs + 1, first_started=first,
                          # a resume's values are the run's once it trains with them (_commit_resume)
                          config=prep.resumed_from[0] if prep.resumed_from and prep.resumed_from[0] else
                          cfg.to_dict(), dataset_hash=prep.data_stats["hash"],
                          dataset_records=prep.data_stats["records"], pid=os.getpid(),
                          world_size=state.num_processes, probe=prep.probe, **retired)
            atomic_write_text(prep.output_dir / "dataset.json", json.dumps(
                {**prep.data_stats, "problems": prep.dropped_records}, indent=2, ensure_ascii=False))
            if cfg.keep_awake:
                awake = keep_awake(f"training {cfg.method} run {prep.output_dir.name}")
        writer.emit(ev.STARTED, config=cfg.to_dict(), output_dir=str(prep.output_dir),
                    total_params=prep.total_params, trainable_params=prep.trainable_params,
                    device=resolve_device(cfg, prep.env),
                    gpu={"name": prep.env.gpu_name, "total_bytes": prep.env.gpu_total_bytes},
                    world_size=state.num_processes, dataset=prep.data_stats, resumed=ckpt is not None,
                    resume_step=checkpoint_step(ckpt) if ckpt else 0, resume_changes=resume_changes(prep),
                    keep_awake=awake.to_dict() if awake is not None else None, probe=prep.probe)
        if awake is not None and not awake.held and awake.needed:
            writer.emit(ev.WARNING, kind="keep_awake", message=(
                f"the computer may go to sleep during training ({awake.problem}); turn off automatic "
                "suspend in the system settings for this run: nothing trains while the machine sleeps, and with "
                "some GPU drivers the run fails on waking"))
        if is_main and not prep.probe:
            _check_disk(prep, writer, state.num_processes)
        result = _train_with_guards(prep, writer, commands, resume, fault_injector, is_main)
        if prep.probe and is_main and result.get("status") in ("completed", "stopped"):
            from engine.probe import probe_report, train_records_of

            rows = len(prep.train_rows) + len(prep.eval_rows)
            result["probe"] = probe_report(probe_of, result, read_metrics(prep.output_dir),
                                           train_records=train_records_of(probe_of, rows),
                                           gpu_bytes=prep.env.gpu_total_bytes, gpu_name=prep.env.gpu_name,
                                           longest=prep.data_stats.get("longest"))
        if on_trained is not None:
            on_trained(result.pop("_model"))
        result.pop("_model", None)
    except _RunComplete as e:
        # Said as a warning, not an error: the run is fine, and nothing of it was written.
        writer.emit(ev.WARNING, kind="resume", message=e.message, hint=e.hint, step=e.step)
        result = {"status": e.status, "output_dir": str(cfg.output_dir), "step": e.step, "unchanged": True}
    except ConfigErrors as e:
        writer.emit(ev.ERROR, **e.to_dict(), errors=[x.to_dict() for x in e.errors])
        result = {"status": "failed", "error": e.to_dict()}
    except StudioError as e:
        details = dict(getattr(e, "details", {}))
        if details.get("step") is None and getattr(e, FAILED_STEP, None) is not None:
            details["step"] = getattr(e, FAILED_STEP)
        writer.emit(ev.ERROR, **e.to_dict(), **details)
        result = {"status": "failed", "error": {**e.to_dict(), **details}}
    except Exception as e:  # noqa: BLE001 - a worker must report, not die silently
        import traceback

        step = getattr(e, FAILED_STEP, None)
        if _is_oom(e):  # e.g. while loading the model, before the Trainer's guard is in place
            err = _oom_error(cfg, step, str(e).splitlines()[0] if str(e) else "")
        else:
            where = f" at step {step}" if step is not None else ""
            err = StudioError(f"training failed{where}: {type(e).__name__}: {e}",
                              hint="This is a bug or an unexpected library error; the traceback is in the log.")
            err.details = {"step": step} if step is not None else {}
        details = getattr(err, "details", {})
        writer.emit(ev.LOG, text=traceback.format_exc())
        writer.emit(ev.ERROR, **err.to_dict(), **details)
        result = {"status": "failed", "error": {**err.to_dict(), **details}}
    finally:
        if awake is not None:
            awake.release()
        if prep is not None and prep.gpu_sampler is not None:
            prep.gpu_sampler.stop()
    result.update(started=started, finished=time.time())
    if prep is not None:
        result["output_dir"] = str(prep.output_dir)
        if is_main:
            result = write_summary(prep.output_dir, **result)
    elif progress.new_run is not None:
        # Failed in setup after writing run.yaml (no usable record, a model that doesn't load):
        # recorded, so the run history lists it with its error and a rerun may take the folder over.
        result["output_dir"] = str(progress.output_dir)
        if is_main:
            result = write_summary(progress.output_dir, **result, config=progress.new_run.to_dict(),
                                   first_started=started, legs=1)
    if is_main:
        _drop_pid_file(prep.output_dir if prep is not None else progress.output_dir or cfg.output_dir)
    writer.emit(ev.FINISHED, **{k: v for k, v in result.items() if k != "config"})
    if writer.mirror:
        writer.mirror.close()
        writer.mirror = None
    return result


def _train_with_guards(prep: Prepared, writer: EventWriter, commands: Commands, resume: bool,
                       fault_injector: Callable[[int], Any] | None, is_main: bool) -> dict[str, Any]:
    """Run Trainer.train(); on NaN roll back, on OOM shrink the micro-batch; then save."""
    import torch

    cfg = prep.cfg
    callback_cls = _make_callback_class()
    resume_from = last_checkpoint(prep.output_dir) if resume else None
    nan_rollbacks = oom_retries = 0
    best_eval = None
    while True:
        trainer, cb = _build_trainer(prep, writer, commands, callback_cls, fault_injector, is_main)
        oom_step = None
        try:
            trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
        except _NothingLeftToTrain:
            # The trainer holds the checkpoint's weights: they become final/, as at the end of a run.
            done = trainer.state.global_step
            ignored = resume_changes(prep)
            if ignored:  # no step trains with them: the run keeps its own values, final/'s card too
                try:
                    cfg = prep.cfg = RunConfig.from_dict(prep.resumed_from[0])
                except ConfigErrors:
                    pass
            writer.emit(ev.WARNING, kind="resume", step=done,
                        message=f"{resume_from.name if resume_from else 'the run'} is already at step {done} of "
                        f"{trainer.state.max_steps}: nothing left to train, final/ is written from it"
                        + (f"; the values given with this resume ({', '.join(ignored)}) trained nothing and are "
                           "not the run's" if ignored else "") + ". Raise max_steps (or num_epochs) to train "
                        "further.")
            cb.last_loss = next((r["loss"] for r in reversed(read_metrics(prep.output_dir)) if "loss" in r), None)
        except Exception as e:  # noqa: BLE001
            if not _is_oom(e):
                # run_training reports the step in the error (summary.json's error.step).
                _note_failed_step(e, cb.step_running)
                raise
            # The step that was running (before the first step begins, the one about to run).
            oom_step = cb.step_running if cb.step_running is not None else trainer.state.global_step + 1
        finally:
            cb.close()
        best_eval = cb.best_eval if cb.best_eval is not None else best_eval

        if oom_step is not None:
            _release(trainer)
            trainer = cb.trainer = None
            change = _oom_change(cfg)
            if not cfg.oom_recovery or change is None or oom_retries >= MAX_OOM_RETRIES:
                raise _oom_error(cfg, oom_step)
            oom_retries += 1
            before = {"batch_size": cfg.batch_size, "gradient_accumulation_steps": cfg.gradient_accumulation_steps}
            cfg = prep.cfg = cfg.replace(**change)
            resume_from = last_checkpoint(prep.output_dir)
            _go_back_to(prep, resume_from, is_main)
            writer.emit(ev.RECOVERED, kind="oom", step=oom_step, before=before, changes=change,
                        resume_from=str(resume_from) if resume_from else None,
                        resume_step=checkpoint_step(resume_from) if resume_from else 0,
                        message=f"Out of memory at step {oom_step}: micro-batch {before['batch_size']} -> "
                        f"{change['batch_size']}, gradient accumulation {before['gradient_accumulation_steps']} "
                        f"-> {change['gradient_accumulation_steps']} (effective batch unchanged at "
                        f"{cfg.effective_batch_size}); resuming from "
                        f"{resume_from.name if resume_from else 'the start (no checkpoint yet)'}")
            if is_main:
                record_config_change(prep.output_dir, (checkpoint_step(resume_from) if resume_from else 0) + 1,
                                     "oom", before, change)
                cfg.save(prep.output_dir / "run.yaml")
            continue

        if cb.nonfinite is not None:
            bad = cb.nonfinite
            _release(trainer)
            trainer = cb.trainer = None
            batch = _batch_description(bad, cfg)
            subject, what = nonfinite_what(bad)
            if cfg.nan_policy == "rollback" and nan_rollbacks < MAX_NAN_ROLLBACKS:
                nan_rollbacks += 1
                resume_from = _last_good_checkpoint(prep.output_dir, bad["step"])
                old_lr = cfg.learning_rate
                cfg = prep.cfg = cfg.replace(learning_rate=old_lr / 2)
                _go_back_to(prep, resume_from, is_main)
                writer.emit(ev.RECOVERED, kind="nonfinite", step=bad["step"], loss=bad["loss"],
                            grad_norm=bad["grad_norm"], what=subject, batch=batch,
                            before={"learning_rate": old_lr}, changes={"learning_rate": cfg.learning_rate},
                            resume_from=str(resume_from) if resume_from else None,
                            resume_step=checkpoint_step(resume_from) if resume_from else 0, advice=nan_advice(cfg),
                            message=f"{subject[0].upper()}{subject[1:]} became non-finite at step "
                            f"{bad['step']} ({what}); rolled back to "
                            f"{resume_from.name if resume_from else 'the start'} with the learning rate "
                            f"halved from {old_lr:g} to {cfg.learning_rate:g}. {batch['description']}. "
                            f"{nan_advice(cfg)}")
                if is_main:
                    record_config_change(prep.output_dir, (checkpoint_step(resume_from) if resume_from else 0) + 1,
                                         "nonfinite", {"learning_rate": old_lr}, {"learning_rate": cfg.learning_rate})
                    cfg.save(prep.output_dir / "run.yaml")
                continue
            fix: dict[str, Any] = {"learning_rate": cfg.learning_rate / 2}
            if cfg.mixed_precision == "fp16":
                fix = {"mixed_precision": "bf16", **({"load_in": "bf16"} if cfg.load_in == "fp16" else {})}
            why = ("nan_policy is 'stop'" if cfg.nan_policy == "stop"
                   else f"it happened again after {nan_rollbacks} rollbacks")
            err = NonFiniteLoss(f"{subject} became non-finite at step {bad['step']} ({what}); {why}. "
                                f"{batch['description']}", fix=fix, hint=nan_advice(cfg))
            err.details = {"step": bad["step"], "batch": batch, "rollbacks": nan_rollbacks, "what": subject}
            raise err
        break

    if not commands.stop_requested:
        cb.sample(trainer.state.global_step)  # the result's answers, unless this step's were just made

    if is_main:
        # The whole curve, rewound to the run's path: a resumed run also evaluated before its checkpoint.
        evals = [r["eval_loss"] for r in read_metrics(prep.output_dir)
                 if isinstance(r.get("eval_loss"), (int, float)) and math.isfinite(r["eval_loss"])]
        best_eval = min(evals, default=best_eval)
    stopped = commands.stop_requested
    state = trainer.state
    early = {}
    if cfg.early_stopping_patience and prep.eval_rows and not stopped and state.global_step < state.max_steps:
        best_step = checkpoint_step(Path(state.best_model_checkpoint)) if state.best_model_checkpoint else None
        early = {"early_stopped": True, "best_step": best_step, "best_checkpoint": state.best_model_checkpoint}
        by = f" by more than {cfg.early_stopping_threshold:g}" if cfg.early_stopping_threshold else ""
        when = (" at the last evaluation" if cfg.early_stopping_patience == 1 else
                f" for {cfg.early_stopping_patience} evaluations in a row")
        best = (f" (step {best_step}, eval loss {state.best_metric:.4f})"
                if best_step is not None and state.best_metric is not None else "")
        writer.emit(ev.WARNING, kind="early_stopped", step=state.global_step, best_step=best_step,
                    best_eval_loss=state.best_metric,
                    message=f"Stopped early at step {state.global_step} of {state.max_steps}: the eval loss did "
                    f"not improve{by}{when}. The result is the best checkpoint{best}")
    final_dir = prep.output_dir / "final"
    if is_main and not prep.probe:
        prep.method.save(trainer.model, final_dir, cfg)
        prep.tokenizer.save_pretrained(final_dir)
    peaks = _gpu_memory()
    device_bytes = None
    if torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info()
        device_bytes = device_peak(total, free, prep.gpu_used_before, peaks.get("gpu_mem_peak_reserved"))
    mean_loss, mean_window = final_loss_mean(prep.output_dir) if is_main else (None, 0)
    result = {"status": "stopped" if stopped else "completed", "step": trainer.state.global_step,
              "final_loss": cb.last_loss, "final_loss_mean": mean_loss, "final_loss_window": mean_window,
              "best_eval_loss": best_eval,
              "final_dir": None if prep.probe else str(final_dir), "trainable_params": prep.trainable_params,
              "total_params": prep.total_params, "dataset_hash": prep.data_stats["hash"],
              "dataset_records": prep.data_stats["records"],
              "peak_gpu_allocated_bytes": peaks.get("gpu_mem_peak_allocated"),
              "peak_gpu_reserved_bytes": peaks.get("gpu_mem_peak_reserved"),
              "peak_gpu_device_bytes": device_bytes, "gpu_used_before_bytes": prep.gpu_used_before,
              "gpu_name": prep.env.gpu_name,
              "gpu_util_mean_pct": prep.gpu_sampler.mean_util() if prep.gpu_sampler is not None else None,
              "nan_rollbacks": nan_rollbacks, "oom_retries": oom_retries, "skipped_steps": cb.skipped_steps,
              # The step final/ holds (`runs promote` may later make it an earlier checkpoint's).
              "final_step": None if prep.probe else early.get("best_step") or trainer.state.global_step,
              "final_from": None,
              "final_eval_loss": None,
              **early,
              "config": cfg.to_dict()}
    if is_main and not prep.probe:
        atomic_write_text(prep.output_dir / "README.md", _model_card(prep, result))
    # Without accelerate's autocast wrapper on forward, so in-process callers get the plain model.
    result["_model"] = trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False)
    return result


def _batch_description(bad: dict, cfg: RunConfig) -> dict[str, Any]:
    """The offending optimizer step's batch: training-row indices and their source lines."""
    lines = [x for x in bad.get("record_lines") or [] if x is not None]
    indices = bad.get("sample_indices") or []
    if lines:
        text = f"Its batch held the records at lines {', '.join(map(str, lines[:16]))} of the dataset file"
    elif indices:
        text = f"Its batch held training rows {', '.join(map(str, indices[:16]))}"
    else:
        text = f"Its batch was the {cfg.effective_batch_size} samples of optimizer step {bad['step']}"
    return {"step": bad["step"], "sample_indices": indices, "record_lines": lines, "description": text}


def _last_good_checkpoint(output_dir: Path, bad_step: int) -> Path | None:

    good = [p for p in checkpoints(output_dir) if checkpoint_step(p) < bad_step
            and (p / "trainer_state.json").exists()]
    return good[-1] if good else None


def _discard_checkpoints_after(output_dir: Path, step: int) -> None:
    """Delete checkpoints newer than ``step`` (they hold weights from after a divergence)."""
    import shutil


    for p in checkpoints(output_dir):
        if checkpoint_step(p) > step:
            shutil.rmtree(p, ignore_errors=True)




def _oom_change(cfg: RunConfig) -> dict[str, int] | None:
    if cfg.batch_size <= 1:
        return None
    return {"batch_size": cfg.batch_size // 2, "gradient_accumulation_steps": cfg.gradient_accumulation_steps * 2}


def _oom_levers(cfg: RunConfig) -> list[dict[str, Any]]:
    """The next levers, in order, each with the estimated peak after it and the ones before.

    Order: a smaller micro-batch (while above 1), gradient checkpointing, an 8-bit
    optimizer, QLoRA, DeepSpeed ZeRO-3 with CPU offload. The estimate comes from
    ``engine.memory.estimate`` and is cumulative (lever 3's includes levers 1-2); it is
    advice and never blocks the error.
    """
    steps: list[tuple[str, dict[str, Any]]] = []
    if cfg.batch_size > 1:
        steps.append(("smaller micro-batch, more accumulation", _oom_change(cfg) or {}))
    if not cfg.gradient_checkpointing and cfg.method != "prefix":
        steps.append(("gradient checkpointing", {"gradient_checkpointing": True}))
    if cfg.optimizer == "adamw":
        steps.append(("8-bit AdamW", {"optimizer": "adamw_8bit"}))
    if cfg.method in ("lora", "full", "freeze"):
        steps.append(("QLoRA (LoRA on a 4-bit NF4 base)", {"method": "qlora", "load_in": "nf4"}))
    levers: list[dict[str, Any]] = []
    # The estimate is of GPU memory: price the levers as on a GPU even when the config says cpu
    # (where 8-bit optimizers and NF4 would not validate).
    current = cfg
    for name, changes in steps:
        lever: dict[str, Any] = {"lever": name, "changes": changes, "estimated_peak_bytes": None}
        try:
            current = current.replace(**changes, **({"device": "auto"} if current.device == "cpu" else {}))
            from engine.memory import estimate

            lever["estimated_peak_bytes"] = int(estimate(current).peak_bytes)
        except Exception:  # noqa: BLE001 - the estimate is advice, never a blocker here
            pass
        levers.append(lever)
    levers.append({"lever": "DeepSpeed ZeRO-3 with CPU offload", "changes": {},
                   "command": "finetune-studio export-launch RUN.yaml --zero 3 --offload",
                   "estimated_peak_bytes": None})
    return levers


def _oom_levers_text(levers: list[dict[str, Any]]) -> str:
    parts = []
    for i, lever in enumerate(levers, 1):
        est = lever.get("estimated_peak_bytes")
        est_text = f" -> estimated peak {est / 2**30:.2f} GiB" if est else " (not estimated)"
        how = ", ".join(f"{k}: {v}" for k, v in lever["changes"].items()) or lever.get("command", "")
        parts.append(f"{i}. {lever['lever']} ({how}){est_text}")
    return "Try, in this order (estimates include the levers before): " + "; ".join(parts)


def _oom_error(cfg: RunConfig, step: int | None, detail: str = "") -> OutOfMemory:
    levers = _oom_levers(cfg)
    where = f"at step {step}" if step is not None else "before training started"
    why = "" if cfg.batch_size <= 1 else (" (oom_recovery is off)" if not cfg.oom_recovery
                                          else " after repeated micro-batch halving")
    err = OutOfMemory(f"the GPU ran out of memory {where} with micro-batch {cfg.batch_size}{why}"
                      + (f": {detail}" if detail else ""),
                      fix=levers[0]["changes"] if levers and levers[0]["changes"] else None,
                      hint=_oom_levers_text(levers))
    err.details = {"step": step, "levers": levers}
    return err


# ---------------------------------------------------------------- CLI entry points
class _ConsoleWriter(EventWriter):
    """Human-readable progress for ``finetune-studio train`` (``--events`` prints JSON).

    JSON events still go to the run folder's events.jsonl (the mirror), not to the console.
    """

    def __init__(self):
        super().__init__(stream=open(os.devnull, "w"))

    def emit(self, kind: str, /, **data: Any):
        e = super().emit(kind, **data)
        show_event(kind, data)
        return e


def show_event(kind: str, data: dict[str, Any]) -> None:
    """One event as ``finetune-studio train`` prints it (``queue run`` prints its runs the same
    way): errors and warnings to stderr, the rest to stdout. If the reader went away
    (`train RUN.yaml | head`), the run goes on, printing nowhere; its events still go to
    events.jsonl."""
    out = sys.stderr if kind in (ev.ERROR, ev.WARNING) else sys.stdout
    try:
        _print_event(kind, data, out)
    except BrokenPipeError:
        write_nowhere(out)


def _drop_pid_file(output_dir: str | Path | None) -> None:
    """Remove the run folder's ``worker.pid`` if it names this process (the client writes it
    when it starts the worker, so a run can be followed before setup is done; a setup that
    fails must not leave it behind)."""
    if not output_dir:
        return
    path = Path(output_dir) / "worker.pid"
    try:
        if int(path.read_text()) == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def _one_line(text: str, width: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _print_event(kind: str, data: dict[str, Any], out: Any) -> None:
    if kind == ev.STARTED:
        print(f"training {data['config']['method']} on {data['config']['model']} -> {data['output_dir']}\n"
              f"  {data['trainable_params']:,} trainable of {data['total_params']:,} parameters; "
              f"device {data['device']}; {data['dataset']['train']} train / {data['dataset']['eval']} "
              "eval records", file=out)
        if data.get("resumed"):
            changed = data.get("resume_changes") or {}
            print(f"  resuming after step {data.get('resume_step')}"
                  + (": " + ", ".join(f"{k} {config_value_text(v[0])} → {config_value_text(v[1])}" for k, v in changed.items())
                     + " from here on" if changed else " with the run's own settings"), file=out)
        if (data.get("keep_awake") or {}).get("held"):
            print(f"  keeping the computer awake until training ends ({data['keep_awake']['how']})", file=out)
    elif kind == ev.STEP:
        eta = f" eta {data['eta_s']:.0f}s" if data.get("eta_s") is not None else ""
        gpu = f" GPU {data['gpu_util_pct']:.0f}% busy" if data.get("gpu_util_pct") is not None else ""
        print(f"step {data['step']:>5}/{data['max_steps']} loss {data['loss']:.4f} lr {data['lr']:.2e} "
              f"{data['tokens_per_s']:.0f} tok/s{gpu}{eta}", file=out, flush=True)
    elif kind == ev.EVAL:
        print(f"eval  step {data['step']:>5} eval_loss {data['eval_loss']:.4f}", file=out)
    elif kind == ev.SAMPLES:
        where = "held-out" if data.get("source") == "eval" else "training"
        print(f"answers at step {data['step']} ({where} records, {data.get('time_s', 0):.1f}s):", file=out)
        for s in data.get("samples") or []:
            line = f"line {s['line']}" if s.get("line") else "record"
            print(f"  [{line}] {_one_line(s['prompt'], 70)}\n    model: {_one_line(s['answer'], 110)}\n"
                  f"    reference: {_one_line(s['reference'], 106)}", file=out)
    elif kind == ev.CHECKPOINT:
        print(f"saved {data['path']}", file=out)
    elif kind in (ev.WARNING, ev.RECOVERED):
        # With its hint and fix, as an error prints: a terminal user has no advice card to click.
        print(f"{kind}: {StudioError(str(data.get('message')), fix=data.get('fix'), hint=data.get('hint'))}",
              file=out)
    elif kind == ev.ERROR:
        print(f"error: {StudioError(data['message'], fix=data.get('fix'), hint=data.get('hint'))}", file=out)
    elif kind == ev.FINISHED:
        if data.get("output_dir") is None:  # failed before a run folder was made: the error says why
            print(f"{data.get('status')}: nothing was trained", file=out)
        elif data.get("unchanged"):  # a resume of a complete run: the warning said why
            print(f"{data.get('status')}: {data.get('output_dir')} (unchanged: nothing was left to train)", file=out)
        elif data.get("probe"):
            from engine.probe import format_probe

            print(f"probe {data.get('status')}: {data.get('step')} steps, nothing saved "
                  f"({data.get('output_dir')})", file=out)
            for line in format_probe(data["probe"]):
                print(f"  {line}", file=out)
        elif data.get("status") == "failed":
            # The error above said why and what to change; here, where it stopped and how to go on.
            err = data.get("error") if isinstance(data.get("error"), dict) else {}
            at = f" at step {err['step']}" if isinstance(err.get("step"), int) else ""
            print(f"failed{at}: {data.get('output_dir')} ({_how_to_continue(data.get('output_dir'))})", file=out)
        elif isinstance(data.get("final_loss_mean"), (int, float)) and data.get("final_loss_window"):
            from engine.runs import mean_of_last, steps_in_mean

            n = data["final_loss_window"]
            print(f"{data.get('status')}: {data.get('output_dir')} (final loss {_fmt(data.get('final_loss_mean'))}, "
                  f"{mean_of_last(n, steps_in_mean(Path(data['output_dir']), n))})", file=out)
        else:  # failed (or stopped) before a step was logged: no loss to speak of
            print(f"{data.get('status')}: {data.get('output_dir')} (no step was logged)", file=out)
    out.flush()  # a closed pipe shows here, in emit's try, not in a later library print


@contextmanager
def _stop_on_signals(commands: Commands) -> Iterator[list[int]]:
    """Ctrl-C (or SIGTERM) during ``finetune-studio train``: the first stops the run after this
    step, with a checkpoint; the second stops it at once (KeyboardInterrupt), keeping the last
    checkpoint saved. Yields the signals received, in order (the exit status says which); the
    handlers there before are put back on exit.

    Python runs a handler once for signals that arrived together, so two Ctrl-Cs pressed while
    the main thread was inside one long call (a step on a large model, a checkpoint's save) read
    as one: the second was lost. The wakeup socket gets a byte per signal (``signal.set_wakeup_fd``),
    so the handler counts them.
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    ours = (signal.SIGINT, signal.SIGTERM)
    reader, wakeup = socket.socketpair()  # a socket: what set_wakeup_fd takes on Windows too
    reader.setblocking(False)
    wakeup.setblocking(False)

    def handler(signum, frame):
        try:
            got = [s for s in reader.recv(64) if s in ours]
        except OSError:  # nothing to read: this signal's byte was counted by the call before
            got = []
        if len(received) > 1:
            return  # already stopping at once
        received.extend(got or [signum])
        if len(received) > 1:
            raise KeyboardInterrupt
        commands.put("stop")
        commands.stop_requested = True
        print("\nstopping after this step, with a checkpoint (Ctrl-C again to stop at once, keeping the last "
              "checkpoint saved)", file=sys.stderr, flush=True)

    before = [signal.getsignal(s) for s in ours]
    old_wakeup = signal.set_wakeup_fd(wakeup.fileno(), warn_on_full_buffer=False)
    for s in ours:
        signal.signal(s, handler)
    try:
        yield received
    finally:
        for s, h in zip(ours, before, strict=True):
            signal.signal(s, h)
        signal.set_wakeup_fd(old_wakeup)
        reader.close()
        wakeup.close()


def _how_to_continue(output_dir: str | Path | None) -> str:
    """The checkpoint a run stopped before its end continues from, and the command that does it."""
    if not output_dir or not Path(output_dir).is_dir():
        return "nothing was trained"
    ckpt = last_checkpoint(Path(output_dir))
    resume = f"finetune-studio train {run_ref(Path(output_dir))} --resume"
    if ckpt is None:
        return f"no checkpoint was saved yet; {resume} starts it over"
    return f"its last checkpoint is {ckpt.name} (step {checkpoint_step(ckpt)}); continue it with: {resume}"


def _warn_changed_dataset(output_dir: Path, data_info: dict[str, Any], writer: EventWriter) -> None:
    """On resume: say so when the dataset is not the one the run started on (its content hash)."""
    before = read_summary(output_dir)
    old_hash, old_n = before.get("dataset_hash"), before.get("dataset_records")
    if not old_hash or old_hash == data_info["hash"]:
        return
    writer.emit(ev.WARNING, kind="dataset_changed", message=(
        f"{data_info['path']} changed since this run started ({old_n} usable records then, {data_info['records']} "
        "now): the resumed run trains on the records as they are now, and the checkpoint's place in the epoch "
        "counts the old ones"), hint="Fine after fixing a few records. To train on the old data, restore the file; "
        "for a clean run on the new data, start a new run.", before=old_hash, now=data_info["hash"])


def _refusal_advice(problems: list[dict], tokenizer: Any, cfg: RunConfig) -> dict[str, Any]:
    """When the model's own chat template refused records (Gemma's takes no system turn and wants
    strictly alternating roles), the hint and fix of our format for its markers, which folds the
    system prompt into the first user turn."""
    from engine.data.templates import FORMATS
    from engine.data.tokenize import REFUSES

    if cfg.template not in ("auto", "chat") or not any(REFUSES in p.get("message", "") for p in problems):
        return {}
    vocab = tokenizer.get_vocab()
    for f in FORMATS.values():
        if all(m in vocab for m in f.markers):
            return {"fix": {"template": f.name},
                    "hint": f"The model's chat template refuses some conversations (see above). template: {f.name} "
                    "writes the same markers and takes a system prompt into the first user turn; or fix the "
                    "records in the Dataset area."}
    return {}


def _refuse_another_runs_folder(config: Path, cfg: RunConfig) -> None:
    """``train COPY/run.yaml --resume`` of a copied or moved run folder: its run.yaml still names the
    folder it came from, which the resume would continue (and rewrite), leaving the copy as it was."""
    from engine.runs import is_run_folder

    folder = config.resolve().parent
    if config.name != "run.yaml" or not is_run_folder(folder) or not cfg.output_dir:
        return
    if Path(cfg.output_dir).resolve() != folder:
        raise ConfigError(f"{config} is the run.yaml of {folder}, but names output_dir {cfg.output_dir} (a copied "
                          "or moved run keeps it): --resume would continue that folder, not this one",
                          key="output_dir", fix={"output_dir": str(folder)},
                          hint=f"Continue this folder: add --output_dir {folder}. Continue the other: finetune-studio "
                          f"train {Path(cfg.output_dir) / 'run.yaml'} --resume.")


def _config_to_resume(ref: str) -> Path:
    """The run config ``train REF --resume`` reads: REF itself when it is a file, else the run.yaml
    of the run REF names (its folder, its folder's name or its run_name, as ``runs show`` takes)."""
    from engine.runs import find_run

    path = Path(ref).expanduser()
    if path.is_file():
        return path
    run = find_run(ref)
    if run is None:
        if path.is_dir():
            raise ConfigError(f"'{ref}' is a folder but not a run folder (no run.yaml or summary.json): --resume "
                              "continues a run", hint="Give the run's run.yaml, its folder or its name "
                              "(finetune-studio runs list shows them).")
        if path.suffix.lower() in (".yaml", ".yml"):
            return path  # RunConfig.load says it doesn't exist
        from engine.runs import resolve_run, runs_dir

        try:  # for its hint: the closest run names (this said only "no such run config file")
            resolve_run(ref)
        except StudioError as e:
            raise ConfigError(f"--resume '{ref}': no such run config file, run folder or run name in {runs_dir()}",
                              hint=e.hint or "No run is kept yet.") from None
        return path
    if not (run / "run.yaml").is_file():
        raise ConfigError(f"run {run} has no run.yaml to continue from", hint="Start it again from the config "
                          "it was trained with.")
    return run / "run.yaml"


def _refuse_a_resume_of_no_run(config: Path, cfg: RunConfig) -> None:
    """``train PRESET.yaml --resume``: the config names no run folder (output_dir empty), so the
    resume would silently start a new run in a new folder."""
    if cfg.output_dir:
        return
    raise ConfigError(f"--resume continues a run, but {config} is not a run's run.yaml and names no output_dir: "
                      "there is no run to continue", key="output_dir",
                      hint="Give the run's run.yaml, its folder or its name (finetune-studio train NAME --resume; "
                      "finetune-studio runs list shows them), or drop --resume to start a new run.")


def cli_train(args: Any) -> int:
    """``finetune-studio train RUN.yaml|RUN [--resume] [--events] [--KEY VALUE ...]``; with
    ``--resume`` RUN may be a run's folder or name."""
    probe = getattr(args, "probe", False)
    probe_steps = getattr(args, "probe_steps", None)
    if args.resume and probe:
        raise ConfigError("--probe trains a few steps of a new run; it can't --resume", key="probe")
    if probe_steps is not None and not probe:
        raise ConfigError(f"--probe-steps {probe_steps} is the length of a probe, and this is no probe: "
                          "without --probe the whole run would train", key="probe_steps",
                          hint="Add --probe to measure a few steps, or leave --probe-steps out to train the run.")
    config = _config_to_resume(args.config) if args.resume else Path(args.config)
    cfg = RunConfig.load(config, args.overrides)
    if args.resume:
        _refuse_a_resume_of_no_run(config, cfg)
        if "output_dir" not in args.overrides:
            _refuse_another_runs_folder(config, cfg)
    # Before torch loads: a typo'd path is told at once, as a bad value. Both are said where the
    # key is written (RUN.yaml:LINE:COLUMN) or typed (--KEY), as load's own problems are.
    errors = missing_inputs(cfg)
    if errors:
        raise located_in(config, args.overrides, errors)  # one reads as itself, with its hint
    # Before the run's folder: a setting the model can't take is a bad value too, not a failed run.
    errors = model_problems(cfg)
    if errors:
        raise located_in(config, args.overrides, errors)
    from engine.adapters import quiet_loading

    quiet_loading()  # the run prints its own progress: no "Loading weights" bar in a line-based log
    commands = Commands()
    writer = EventWriter() if args.events else _ConsoleWriter()
    full = None
    if probe:
        from engine.probe import WARMUP_STEPS, probe_config

        probe_steps = 10 if probe_steps is None else probe_steps
        if probe_steps < WARMUP_STEPS + 2:
            raise ConfigError(f"--probe-steps {probe_steps}: a probe needs at least {WARMUP_STEPS + 2} steps "
                              f"({WARMUP_STEPS} warm-up steps are not timed)", key="probe_steps",
                              hint="The default, 10, gives a steady time per step.")
        full, cfg = cfg, probe_config(cfg, probe_steps)
    with _stop_on_signals(commands) as signals:
        try:
            result = run_training(cfg, writer, resume=args.resume, commands=commands, probe_of=full)
        except KeyboardInterrupt:
            if len(signals) < 2:
                raise
            # The run's summary still says running, as after a kill: runs list shows it interrupted.
            print("stopped at once: " + ("the probe saved nothing" if full is not None else
                                         _how_to_continue(commands.output_dir)), file=sys.stderr)
            return 128 + signals[-1]
    if result.get("status") == "stopped" and not result.get("unchanged"):
        # Not finished: a script must not take it for a completed run (128 + N: stopped by signal N).
        if full is None:
            print(f"stopped before the end of the run: {_how_to_continue(result.get('output_dir'))}",
                  file=sys.stderr)
        return 128 + signals[0] if signals else 1
    return 0 if result.get("status") == "completed" or result.get("unchanged") else 1


def main(argv: list[str] | None = None) -> int:
    """``accelerate launch -m engine.train RUN.yaml [--resume] [--KEY VALUE ...]`` (DDP)."""
    from engine.cli import main as cli_main

    argv = list(sys.argv[1:] if argv is None else argv)
    return cli_main(["train", *argv])


if __name__ == "__main__":
    sys.exit(main())
