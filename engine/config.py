"""The one run config: a typed dataclass with flat keys, YAML on disk.

The GUI, the CLI, the memory estimate, the trainer and ``accelerate launch`` all read
this one object. Each field's ``help`` is both the GUI tooltip and the CLI help; its
``choices`` or ``min``/``max`` drive validation and the GUI's widgets.

Validation collects every problem at once and raises :class:`ConfigErrors` whose
messages name the key and the allowed values, suggest the closest key for a typo and
explain impossible combinations. It never lets a traceback through.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
from collections.abc import Collection
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from engine.data.templates import TEMPLATE_CHOICES, TEMPLATE_FILE_SUFFIX
from engine.errors import ConfigError, ConfigErrors
from engine.paths import presets_dir

METHODS = ("full", "freeze", "lora", "qlora", "adapter", "prefix", "prompt", "ia3")
LOAD_IN = ("fp32", "fp16", "bf16", "int8", "nf4")
MIXED_PRECISION = ("no", "fp16", "bf16")
OPTIMIZERS = ("adamw", "adamw_8bit", "paged_adamw_8bit", "sgd")
DATASET_FORMATS = ("auto", "alpaca", "sharegpt", "messages", "csv", "parquet")
SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup", "cosine_with_restarts", "polynomial")
ATTENTION = ("sdpa", "eager")
DEVICES = ("auto", "cuda", "cpu")
LOSS_ON_CHOICES = ("answers", "last_answer", "all")
LORA_INITS = ("default", "gaussian", "pissa", "olora")
REWRITING_INITS = {"pissa": "PiSSA", "olora": "OLoRA"}
"""The LoRA inits that move part of each base weight into the adapter, by their display names."""
TOKEN_METHODS = ("full", "lora", "qlora")
"""The methods that can train the embeddings of ``add_tokens`` (full: every weight; lora/qlora: PEFT's
trainable tokens)."""
ADAPTER_STYLES = ("pfeiffer", "houlsby")
NAN_POLICIES = ("rollback", "stop")


def _f(default: Any, help: str, **meta: Any) -> Any:
    """A dataclass field with GUI/CLI metadata (help text, choices, bounds, group)."""
    meta["help"] = help
    if isinstance(default, list):
        return field(default_factory=lambda d=default: list(d), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class RunConfig:
    """Everything one fine-tuning run needs. Flat keys; the README documents them."""

    # ---- Model and data
    model: str = _f("demo", "Local model folder (with config.json) or a Hugging Face cache id such as "
                    "'Qwen/Qwen2.5-0.5B'; 'demo' is the embedded tiny model.", group="model")
    trust_remote_code: bool = _f(False, "Run Python code shipped with the model. Off unless you trust its "
                                 "author.", group="model")
    allow_pickle: bool = _f(False, "Allow loading pickle (.bin/.pt) weights, which can run code. "
                            "safetensors is always preferred.", group="model")
    attn_implementation: str = _f("sdpa", "Attention kernel: sdpa (memory-efficient) or eager.",
                                  choices=ATTENTION, group="model")
    dataset: str = _f("demo", "Dataset file (JSON, JSONL, CSV or Parquet), a dataset in the Hugging Face cache "
                      "('org/name', or 'org/name:split' for another split than train; never downloaded), or "
                      "'demo', the embedded sample dataset.", group="data")
    dataset_format: str = _f("auto", "Record format; auto detects it from the file.",
                             choices=DATASET_FORMATS, group="data")
    template: str = _f("auto", "How records become text: auto (the tokenizer's chat template, or the Alpaca "
                       "prompt when it has none), chat (the tokenizer's chat template), alpaca (the Alpaca "
                       "prompt, for base models), a chat format to teach a base model (chatml, llama3, gemma, "
                       "phi3), or a .jinja chat template file. The run saves the template it trained with "
                       "into its tokenizer, so merged and GGUF models chat the same way.",
                       choices=TEMPLATE_CHOICES, files=TEMPLATE_FILE_SUFFIX, group="data")
    add_tokens: list = _f([], "Tokens to add to the vocabulary as special tokens when the tokenizer lacks them, "
                          "and whose embeddings train: the markers of a chat format the base model doesn't know "
                          "(e.g. ['<|im_start|>', '<|im_end|>'] to teach chatml to a Llama-2 or Mistral base), or "
                          "existing but untrained ones. The embeddings grow to fit; lora/qlora train only these rows "
                          "(PEFT trainable tokens), full trains them with the rest.", group="data")
    seq_len: int = _f(512, "Maximum tokens per training sequence; longer records are truncated and "
                      "counted.", min=16, max=1_048_576, group="data")
    loss_on: str = _f("answers", "Which tokens the loss is computed on: answers (every assistant answer; the "
                      "prompts are context), last_answer (only a conversation's final answer, the earlier ones "
                      "are context too) or all (every token, prompts included: continued pre-training on the "
                      "records' text). An answer whose turn has weight 0 never trains; last_answer is then the last "
                      "of the others.", choices=LOSS_ON_CHOICES, group="data")
    group_by_length: bool = _f(False, "Batch records of similar length together (transformers' "
                               "LengthGroupedSampler): far less padding, so faster steps on records of mixed "
                               "lengths; the batches still come in random order, the longest first (an "
                               "out-of-memory shows at once). Not needed with packing, which has no padding.",
                               group="data")
    packing: bool = _f(False, "Pack several short records into each sequence (faster; records still "
                       "only train on their answers).", group="data")
    eval_split: float = _f(0.0, "Fraction of records held out for evaluation (0 = no eval).",
                           min=0.0, max=0.5, group="data")
    eval_dataset: str = _f("", "A separate evaluation file (same formats, read with dataset_format), or a split "
                           "of a cached Hugging Face dataset ('org/name:test'); every record of dataset then "
                           "trains. Empty = hold out eval_split of dataset instead.",
                           group="data")
    output_dir: str = _f("", "Where checkpoints, metrics and the final adapter go; empty = a new "
                         "folder in the runs directory.", group="run")
    run_name: str = _f("", "A short name for the run history; empty = method and time.", group="run")

    # ---- Method
    method: str = _f("lora", "Fine-tuning method: full, freeze (top layers), lora, qlora (LoRA on a "
                     "4-bit base), adapter (bottleneck), prefix, prompt or ia3.", choices=METHODS,
                     group="method")
    lora_r: int = _f(8, "LoRA rank: the size of the low-rank update.", min=1, max=4096, group="lora")
    lora_alpha: int = _f(16, "LoRA scaling numerator; the update is scaled by alpha/r (usually 2*r).",
                         min=1, max=65536, group="lora")
    lora_dropout: float = _f(0.05, "Dropout on the LoRA input.", min=0.0, max=0.9, group="lora")
    lora_target_modules: Any = _f(["q_proj", "v_proj"], "Module names that get LoRA (a list), or "
                                  "'all-linear' for every linear layer but the output head.",
                                  group="lora")
    use_dora: bool = _f(False, "DoRA: weight-decomposed LoRA (slower, often better at low rank).",
                        group="lora")
    use_rslora: bool = _f(False, "rsLoRA: scale by alpha/sqrt(r), which keeps high ranks stable.",
                          group="lora")
    lora_init: str = _f("default", "How LoRA starts: default (B = 0, so training starts from the base), gaussian, "
                        "pissa (A and B from the principal singular vectors of each weight, by a fast 16-iteration "
                        "SVD; the base keeps the rest; often converges faster) or olora (from a QR decomposition). "
                        "pissa and olora save final/ as a plain LoRA of twice the rank that fits the original base.",
                        choices=LORA_INITS, group="lora")
    loraplus_lr_ratio: float = _f(0.0, "LoRA+: train the B matrices at this many times the learning rate of "
                                  "the A matrices (0 = off; the paper uses 16; then often halve learning_rate).",
                                  min=0.0, max=1000.0, group="lora")
    freeze_trainable_layers: int = _f(2, "Freeze method: how many top decoder layers train.",
                                      min=1, max=1024, group="freeze")
    freeze_extra_modules: list = _f([], "Freeze method: extra module names that also train, e.g. "
                                    "['norm', 'lm_head'].", group="freeze")
    num_virtual_tokens: int = _f(20, "Prefix/prompt tuning: number of learned virtual tokens.",
                                 min=1, max=1024, group="prompt")
    prefix_projection: bool = _f(False, "Prefix tuning: learn the prefix through an MLP (more "
                                 "parameters, often more stable).", group="prompt")
    prompt_init_text: str = _f("", "Prompt tuning: initialise the virtual tokens from this text's "
                               "embeddings (empty = random init).", group="prompt")
    adapter_reduction_factor: int = _f(16, "Bottleneck adapter: hidden size / bottleneck size.",
                                       min=1, max=1024, group="adapter")
    adapter_style: str = _f("pfeiffer", "Bottleneck adapter placement: pfeiffer (after the MLP) or "
                            "houlsby (after attention and after the MLP).", choices=ADAPTER_STYLES,
                            group="adapter")
    ia3_target_modules: Any = _f("auto", "IA3: modules whose activations are rescaled; auto = the "
                                 "PEFT default for the architecture (k, v, down for Llama).",
                                 group="ia3")

    # ---- Precision
    load_in: str = _f("bf16", "How base weights are loaded: fp32, fp16, bf16, int8 (LLM.int8) or nf4 "
                      "(4-bit, QLoRA). qlora means nf4.", choices=LOAD_IN, group="precision")
    mixed_precision: str = _f("bf16", "Autocast during training: no, fp16 (with loss scaling) or bf16.",
                              choices=MIXED_PRECISION, group="precision")
    int8_threshold: float = _f(6.0, "LLM.int8 outlier threshold (bitsandbytes default 6.0).",
                               min=0.0, max=100.0, group="precision")
    gradient_checkpointing: bool = _f(False, "Recompute activations in backward: much less memory, "
                                      "about 30% slower.", group="precision")
    device: str = _f("auto", "Where to train: auto (the GPU if there is one), cuda or cpu.",
                     choices=DEVICES, group="precision")

    # ---- Optimisation
    optimizer: str = _f("adamw", "adamw (fused on GPU), adamw_8bit, paged_adamw_8bit (bitsandbytes) "
                        "or sgd.", choices=OPTIMIZERS, group="optim")
    learning_rate: float = _f(2e-4, "Peak learning rate. Left out, the method's usual one: 2e-4 for LoRA, QLoRA "
                              "and bottleneck adapters, 2e-5 for full and freeze, 1e-2 prefix, 3e-2 prompt, 3e-3 "
                              "IA3.", min=0.0, max=10.0, group="optim")
    lr_scheduler: str = _f("cosine", "Learning-rate schedule after warm-up.", choices=SCHEDULERS,
                           group="optim")
    min_lr_ratio: float = _f(0.0, "Cosine schedule: end at this fraction of learning_rate instead of 0 (e.g. "
                             "0.1, as many recent recipes do); 0 = decay to 0.", min=0.0, max=1.0, group="optim")
    warmup_ratio: float = _f(0.03, "Fraction of steps spent warming the learning rate up (rounded up to whole "
                             "steps; under one step is none, as a warm-up step trains at learning rate 0).",
                             min=0.0, max=0.5, group="optim")
    warmup_steps: int = _f(0, "Warm the learning rate up over this many optimizer steps instead (0 = use "
                           "warmup_ratio); what a recipe that gives warm-up in steps means.",
                           min=0, max=1_000_000_000, group="optim")
    weight_decay: float = _f(0.0, "Decoupled weight decay.", min=0.0, max=1.0, group="optim")
    adam_epsilon: float = _f(1e-8, "Adam epsilon; 1e-7 or larger helps fp16 stability.",
                             min=0.0, max=1.0, group="optim")
    max_grad_norm: float = _f(1.0, "Clip the gradient norm to this (0 = no clipping).",
                              min=0.0, max=1e6, group="optim")
    neftune_noise_alpha: float = _f(0.0, "NEFTune: add uniform noise of this scale to the input embeddings "
                                    "while training (0 = off; 5 is the paper's usual value). Often better "
                                    "instruction following.", min=0.0, max=100.0, group="optim")
    num_epochs: float = _f(3.0, "Passes over the training data (ignored when max_steps > 0).",
                           min=0.0, max=1e6, group="optim")
    max_steps: int = _f(-1, "Stop after this many optimizer steps; -1 = use num_epochs.",
                        min=-1, max=10**9, group="optim")
    batch_size: int = _f(4, "Micro-batch: sequences per forward pass.", min=1, max=65536, group="optim")
    gradient_accumulation_steps: int = _f(1, "Micro-batches per optimizer step; effective batch = "
                                          "batch_size x this.", min=1, max=65536, group="optim")
    seed: int = _f(42, "Random seed for init, shuffling and dropout.", min=0, max=2**32 - 1,
                   group="optim")

    # ---- Run behaviour
    save_steps: int = _f(50, "Save a checkpoint every N optimizer steps (0 = only at the end and on "
                         "stop).", min=0, max=10**9, group="run")
    save_total_limit: int = _f(3, "Keep at most this many checkpoints (0 = keep all).", min=0,
                               max=10**6, group="run")
    logging_steps: int = _f(1, "Log loss and metrics every N optimizer steps, and at the last step; each "
                            "logged loss is the mean of the steps since the previous log.", min=1, max=10**6,
                            group="run")
    eval_steps: int = _f(0, "Evaluate every N steps (0 = once per epoch when there is eval data).",
                         min=0, max=10**9, group="run")
    early_stopping_patience: int = _f(0, "Stop when the eval loss has not improved for this many evaluations "
                                      "in a row, and keep the best checkpoint as the result (0 = off; needs "
                                      "eval_split > 0 or an eval_dataset; with eval_steps 0 it evaluates at every checkpoint).", min=0, max=10**6, group="run")
    early_stopping_threshold: float = _f(0.0, "With early stopping: how much lower the eval loss must be to "
                                         "count as an improvement.", min=0.0, max=1e6, group="run")
    sample_answers: int = _f(2, "At each evaluation (at each checkpoint when there is no eval data) and when "
                             "training ends, the model answers this many records greedily, shown beside their "
                             "reference answers: held-out records if there are any, else the first training "
                             "records (0 = off; one GPU only).", min=0, max=16, group="run")
    sample_max_new_tokens: int = _f(96, "Longest sample answer, in tokens.", min=1, max=4096, group="run")
    nan_policy: str = _f("rollback", "On a NaN/inf loss: roll back to the last good checkpoint and "
                         "halve the LR, or stop.", choices=NAN_POLICIES, group="run")
    oom_recovery: bool = _f(True, "On CUDA out-of-memory: halve the micro-batch, double accumulation "
                            "and resume from the last checkpoint.", group="run")
    keep_awake: bool = _f(True, "Keep the computer from going to sleep while this run trains (the screen "
                          "may still lock); released when training ends, even if the worker is killed.",
                          group="run")
    deepspeed: str = _f("", "DeepSpeed config JSON for multi-GPU runs under `accelerate launch` (written by "
                        "`finetune-studio export-launch`); empty = no DeepSpeed.", group="run")

    # ---------------------------------------------------------------- Public API
    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def field_meta(cls) -> dict[str, dict[str, Any]]:
        """Name -> metadata (help, choices, min, max, group, default) for GUIs and help text."""
        out = {}
        for f in fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            out[f.name] = {**f.metadata, "default": default, "type": _kind(f.name, default)}
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "config") -> RunConfig:
        """Build and validate a config from plain values (YAML, CLI overrides, the GUI form).

        Raises:
            ConfigErrors: every problem found, each naming its key.
        """
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigErrors([ConfigError(_not_a_mapping(source, data))])
        errors: list[ConfigError] = []
        names = cls.field_names()
        meta = cls.field_meta()
        values: dict[str, Any] = {}
        for key, raw in data.items():
            if key not in names:
                close = closest_key(str(key))
                tip = f"; did you mean '{close}'?" if close else \
                    " (no run-config key is close to it; `finetune-studio train --help` lists them)"
                errors.append(ConfigError(f"{source}: unknown key '{key}'{tip}", key=str(key),
                                          fix={key: None} if not close else {}))
                continue
            try:
                values[key] = _coerce(key, raw, meta[key])
            except ConfigError as e:
                errors.append(e)
        # A method brings its own defaults for the keys the config leaves out: qlora a 4-bit NF4 base
        # (one given otherwise is explained by validate), full fine-tuning 2e-5 as its learning rate.
        if isinstance(values.get("method"), str):
            from engine.methods import METHODS

            if values["method"] in METHODS:
                values.update({k: v for k, v in METHODS[values["method"]].config_defaults().items() if k not in data})
        if errors:
            raise ConfigErrors(errors)
        cfg = cls(**values)
        cfg.validate()
        return cfg

    @classmethod
    def load(cls, path: str | os.PathLike, overrides: dict[str, Any] | None = None) -> RunConfig:
        """Read a YAML run config, apply ``overrides`` and validate.

        Relative paths in the file resolve against its folder, those in ``overrides`` (typed on the
        command line) against the current folder; both are stored absolute (:meth:`resolve_paths`).

        Raises:
            ConfigErrors: unreadable YAML (with line and column) or invalid values.
        """
        path = Path(path)
        text, data = _read_yaml(path)
        occurrences = _key_occurrences(text)
        # YAML keeps the last of a repeated key without a word; which one the user meant is a guess.
        repeated = [ConfigError(f"{path}:{places[-1][0]}:{places[-1][1]}: '{key}' is given {_times(len(places))} "
                                f"(lines {', '.join(str(line) for line, _ in places)}); YAML would silently keep "
                                "this last one: give it once", key=key)
                    for key, places in occurrences.items() if len(places) > 1]
        if isinstance(data, dict) and overrides:
            data = {**data, **overrides}
        try:
            cfg = cls.from_dict(data, source=str(path))
        except ConfigErrors as e:
            positions = {key: places[-1] for key, places in occurrences.items()}  # the ones safe_load kept
            raise ConfigErrors(repeated + _located(e, path, positions, set(overrides or ())).errors) from None
        if repeated:
            raise ConfigErrors(repeated)
        return cfg.resolve_paths(path.parent, typed=set(overrides or ()))

    def resolve_paths(self, base: Path, *, typed: Collection[str] = ()) -> RunConfig:
        """Make relative model/dataset/output paths absolute, so the saved run.yaml (``--resume``,
        ``runs audit``) means the same files from any folder.

        The rule: a path typed on the command line (the keys in ``typed``) is relative to the
        current folder, as a shell user expects; a path written in a YAML file is relative to that
        file's folder ``base``, so a config and its data can move together. A YAML path that isn't
        there but is in the current folder is taken from there (configs written for running from
        a project folder). A model or dataset found nowhere is kept as written: it may be a Hugging
        Face id ('org/name'), and otherwise its error names it as the user wrote it; except a model
        whose folder is next to the YAML (see ``engine.models.missing_model_in``), made absolute so
        its error names that folder and the model folder there it likely meant.
        """
        changes = {}
        for key in ("model", "dataset", "eval_dataset", "output_dir", "deepspeed", "template"):
            value = getattr(self, key)
            if key == "template" and not value.lower().endswith(TEMPLATE_FILE_SUFFIX):
                continue
            if not value or value == "demo" or os.path.isabs(value):
                continue
            here = Path(value)  # relative to the current folder
            candidate = here if key in typed else base / value
            if not candidate.exists() and here.exists():
                candidate = here
            if candidate.exists() or key == "output_dir":
                changes[key] = str(candidate.resolve())
            elif key == "model" and key not in typed:
                from engine.models import missing_model_in

                # A mistyped local model next to the YAML: its error should name that folder's models.
                meant = missing_model_in(value, base)
                if meant is not None:
                    changes[key] = str(meant)
        return dataclasses.replace(self, **changes) if changes else self

    def replace(self, **changes: Any) -> RunConfig:
        """A validated copy with ``changes`` applied (the GUI's and the advisor's way to edit)."""
        data = {**self.to_dict(), **changes}
        return RunConfig.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self, *, with_help: bool = True, only_changed: bool = False) -> str:
        """YAML text; with ``with_help`` each key carries its help as a comment."""
        meta = self.field_meta()
        lines = ["# Finetune Studio run config. Keys: see README 'Run config'."]
        for name, value in self.to_dict().items():
            if only_changed and value == meta[name]["default"]:
                continue
            dumped = yaml.safe_dump({name: value}, default_flow_style=True, allow_unicode=True,
                                    sort_keys=False).strip()
            if dumped.startswith("{") and dumped.endswith("}"):
                dumped = dumped[1:-1]
            lines.append(f"{dumped}  # {meta[name]['help']}" if with_help else dumped)
        return "\n".join(lines) + "\n"

    def save(self, path: str | os.PathLike, **kw: Any) -> Path:
        """Write YAML atomically (temp file + rename), so a crash never leaves half a file."""
        from engine.files import atomic_write_text

        return atomic_write_text(Path(path), self.to_yaml(**kw))

    @classmethod
    def markdown_table(cls) -> str:
        """The README's key table, generated from the metadata so the two never drift."""
        rows = ["| key | default | allowed | what it does |", "|---|---|---|---|"]
        for name, m in cls.field_meta().items():
            if m.get("choices"):
                allowed = " \\| ".join(f"`{c}`" for c in m["choices"])
                if m.get("files"):
                    allowed += f" \\| a `{m['files']}` file"
            elif m.get("min") is not None:
                allowed = f"{m['min']} … {m['max']}"
            else:
                allowed = m["type"]
            rows.append(f"| `{name}` | `{m['default']!r}` | {allowed} | {m['help']} |")
        return "\n".join(rows) + "\n"

    @property
    def effective_batch_size(self) -> int:
        return self.batch_size * self.gradient_accumulation_steps

    @property
    def is_quantized(self) -> bool:
        return self.load_in in ("int8", "nf4")

    @property
    def target_modules(self) -> list[str] | str:
        t = self.lora_target_modules
        return t if t == "all-linear" else list(t)

    def validate(self) -> None:
        """Check combinations that can't work, before anything is loaded.

        Raises:
            ConfigErrors: each impossible combination, with the reason and a fix.
        """
        errors: list[ConfigError] = []

        def bad(key: str, msg: str, fix: dict | None = None) -> None:
            errors.append(ConfigError(msg, key=key, fix=fix))

        if self.method in ("full", "freeze") and self.is_quantized:
            bad("load_in", f"method '{self.method}' updates the base weights, which can't be trained when "
                f"they are loaded quantized (load_in: {self.load_in}). Load them in bf16/fp32, or use "
                "qlora/lora to train adapters on a quantized base.",
                fix={"load_in": "bf16", "mixed_precision": "bf16"})
        if self.method == "qlora" and self.load_in != "nf4":
            bad("load_in", f"method 'qlora' is LoRA on a 4-bit NF4 base, but load_in is '{self.load_in}'. "
                "Set load_in: nf4, or use method: lora for a 16/32-bit or int8 base.",
                fix={"load_in": "nf4"})
        if self.method in ("full", "freeze") and self.load_in == "fp16":
            bad("load_in", f"method '{self.method}' with fp16 weights trains fp16 master weights: the "
                "optimizer updates underflow and fp16 loss scaling refuses fp16 gradients. Load in fp32 "
                "with mixed_precision fp16, or use bf16.",
                fix={"load_in": "fp32", "mixed_precision": "fp16"})
        if self.mixed_precision == "fp16" and self.load_in == "bf16":
            bad("mixed_precision", "mixed_precision fp16 with bf16 weights would cast every weight to the "
                "narrower-range fp16 on each step; use mixed_precision bf16 with bf16 weights.",
                fix={"mixed_precision": "bf16"})
        if self.mixed_precision == "bf16" and self.load_in == "fp16":
            bad("mixed_precision", "mixed_precision bf16 with fp16 weights mixes two half formats; use "
                "mixed_precision fp16 with fp16 weights, or load in bf16.", fix={"load_in": "bf16"})
        t = self.lora_target_modules
        if not (t == "all-linear" or (isinstance(t, list) and t and all(isinstance(x, str) and x for x in t))):
            bad("lora_target_modules", "lora_target_modules must be a non-empty list of module names "
                f"(e.g. [q_proj, v_proj]) or 'all-linear', got {t!r}")
        t = self.ia3_target_modules
        if not (t == "auto" or (isinstance(t, list) and t and all(isinstance(x, str) and x for x in t))):
            bad("ia3_target_modules", f"ia3_target_modules must be 'auto' or a list of module names, got {t!r}")
        if not all(isinstance(x, str) and x for x in self.freeze_extra_modules):
            bad("freeze_extra_modules", "freeze_extra_modules must be a list of module names")
        if self.max_steps <= 0 and self.num_epochs <= 0:
            bad("num_epochs", "num_epochs must be > 0 when max_steps is -1 (otherwise nothing trains)",
                fix={"num_epochs": 1.0})
        if self.max_steps == 0:
            bad("max_steps", "max_steps must be -1 (use num_epochs) or a positive number of steps",
                fix={"max_steps": -1})
        if self.optimizer in ("adamw_8bit", "paged_adamw_8bit") and self.device == "cpu":
            bad("optimizer", f"optimizer '{self.optimizer}' is a bitsandbytes CUDA optimizer; with "
                "device: cpu use adamw or sgd.", fix={"optimizer": "adamw"})
        if self.is_quantized and self.device == "cpu":
            bad("load_in", f"load_in '{self.load_in}' uses bitsandbytes CUDA kernels; with device: cpu "
                "load in fp32 or bf16.", fix={"load_in": "fp32", "mixed_precision": "no"})
        if self.eval_dataset and self.eval_split > 0:
            bad("eval_split", f"eval_dataset ({self.eval_dataset}) is the evaluation data, so eval_split "
                f"{self.eval_split:g} would hold out part of dataset for nothing; set eval_split: 0, or empty "
                "eval_dataset to evaluate on a held-out share of dataset.", fix={"eval_split": 0.0})
        if self.eval_dataset and self.eval_dataset == self.dataset:
            bad("eval_dataset", "eval_dataset is the training dataset itself: its eval loss would measure "
                "memorisation. Give a held-out file (the Dataset area's Split… writes one), or use eval_split.",
                fix={"eval_dataset": ""})
        if self.early_stopping_patience and self.eval_split <= 0 and not self.eval_dataset:
            bad("early_stopping_patience", "early stopping watches the eval loss, but eval_split is 0 and there "
                "is no eval_dataset, so nothing is evaluated; hold out some records (e.g. eval_split: 0.05), "
                "give an eval_dataset, or set early_stopping_patience: 0.", fix={"eval_split": 0.05})
        if self.early_stopping_patience and self.eval_steps and self.save_steps \
                and self.save_steps % self.eval_steps:
            bad("save_steps", f"with early stopping the best evaluation must have a checkpoint, so save_steps "
                f"({self.save_steps}) must be a multiple of eval_steps ({self.eval_steps}).",
                fix={"save_steps": self.eval_steps * max(1, self.save_steps // self.eval_steps)})
        if self.lora_init in REWRITING_INITS and self.method in ("lora", "qlora"):
            name = REWRITING_INITS[self.lora_init]
            if self.is_quantized:
                bad("lora_init", f"{name} moves part of each base weight into the adapter, which needs the base "
                    f"in 16 or 32 bits, but load_in is {self.load_in}. Use lora_init: default (or gaussian) on a "
                    "quantized base, or load in bf16.", fix={"lora_init": "default"})
            if self.use_dora:
                bad("lora_init", f"{name} with DoRA can't be saved as a plain LoRA for the original base (DoRA's "
                    "magnitudes are taken from the rewritten base); turn one of them off.", fix={"use_dora": False})
        if self.min_lr_ratio and self.lr_scheduler != "cosine":
            bad("min_lr_ratio", f"min_lr_ratio sets where the cosine schedule ends, but lr_scheduler is "
                f"'{self.lr_scheduler}'; use lr_scheduler: cosine, or min_lr_ratio: 0.", fix={"lr_scheduler": "cosine"})
        if 0 < self.loraplus_lr_ratio < 1:
            bad("loraplus_lr_ratio", f"loraplus_lr_ratio {self.loraplus_lr_ratio:g} would train B slower than A; "
                "LoRA+ wants 1 or more (16 in the paper), or 0 for off.", fix={"loraplus_lr_ratio": 16.0})
        if self.loraplus_lr_ratio and self.method not in ("lora", "qlora"):
            bad("loraplus_lr_ratio", f"LoRA+ sets the learning rates of LoRA's A and B matrices, but method is "
                f"'{self.method}'; set loraplus_lr_ratio: 0, or use lora/qlora.", fix={"loraplus_lr_ratio": 0.0})
        if self.loraplus_lr_ratio and self.deepspeed:
            bad("loraplus_lr_ratio", "LoRA+ builds its own optimizer, which DeepSpeed would replace with the one in "
                "its config; set loraplus_lr_ratio: 0 for DeepSpeed runs.", fix={"loraplus_lr_ratio": 0.0})
        tokens = self.add_tokens
        if not all(isinstance(x, str) and x.strip() for x in tokens):
            bad("add_tokens", f"add_tokens must be a list of non-empty token strings (e.g. ['<|im_start|>', "
                f"'<|im_end|>']), got {tokens!r}")
        elif len(set(tokens)) != len(tokens):
            twice = sorted({x for x in tokens if tokens.count(x) > 1})
            bad("add_tokens", f"add_tokens lists {', '.join(map(repr, twice))} more than once",
                fix={"add_tokens": list(dict.fromkeys(tokens))})
        if tokens and self.method not in TOKEN_METHODS:
            bad("add_tokens", f"add_tokens needs the new tokens' embeddings to train, which method "
                f"'{self.method}' can't do; use method full, lora or qlora, or add_tokens: [] (and a "
                "template whose markers the tokenizer already has).", fix={"method": "lora"})
        if self.group_by_length and self.packing:
            bad("group_by_length", "group_by_length sorts records by length to cut padding, but packing leaves no "
                "padding to cut (it joins records into one row); turn one of them off.", fix={"group_by_length": False})
        if self.method in ("prefix", "prompt") and self.packing:
            bad("packing", f"method '{self.method}' prepends virtual tokens to each sequence, which "
                "would leak across packed records; turn packing off.", fix={"packing": False})
        if errors:
            raise ConfigErrors(errors)


# ---------------------------------------------------------------- Key names
# What other trainers (transformers' TrainingArguments, PEFT, axolotl, LLaMA-Factory) and
# everyday shorthand call our keys; too far from ours for difflib to find.
KEY_ALIASES = {
    "lr": "learning_rate", "epochs": "num_epochs", "num_train_epochs": "num_epochs", "steps": "max_steps",
    "bs": "batch_size", "micro_batch_size": "batch_size", "per_device_train_batch_size": "batch_size",
    "grad_accum": "gradient_accumulation_steps", "gradient_accumulation": "gradient_accumulation_steps",
    "r": "lora_r", "rank": "lora_r", "alpha": "lora_alpha", "dropout": "lora_dropout",
    "target_modules": "lora_target_modules", "max_seq_length": "seq_len", "max_length": "seq_len",
    "sequence_len": "seq_len", "cutoff_len": "seq_len", "warmup": "warmup_ratio", "optim": "optimizer",
    "scheduler": "lr_scheduler", "lr_scheduler_type": "lr_scheduler", "model_name_or_path": "model",
    "data": "dataset", "output": "output_dir", "name": "run_name", "precision": "mixed_precision",
    "bf16": "mixed_precision", "fp16": "mixed_precision", "load_in_4bit": "load_in", "load_in_8bit": "load_in",
}


def closest_key(name: str) -> str | None:
    """The run-config key a mistyped or foreign ``name`` most likely means, or None.

    One place for every "did you mean" about a key (YAML files, ``--KEY`` overrides, ``--grid``).
    """
    name = name.strip().lstrip("-").replace("-", "_")
    names = RunConfig.field_names()
    if name.lower() in KEY_ALIASES:
        return KEY_ALIASES[name.lower()]
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    return close[0] if close else None


class UnpairedError(ValueError):
    """:func:`split_values`' brackets or quotes don't pair up; ``quote``: an unclosed quote."""

    def __init__(self, message: str, *, quote: bool = False):
        super().__init__(message)
        self.quote = quote


def split_values(text: str) -> list[str]:
    """``"[q_proj,v_proj],all-linear"`` -> ``["[q_proj,v_proj]", "all-linear"]``: split on the commas
    outside brackets and quotes, so a list value stays whole.

    Raises:
        UnpairedError: the brackets or quotes don't pair up, said as ``"'[' without ']'"`` (an unclosed
            ``[`` would take every comma after it: the text was queued as one literal value).
    """
    parts, opened, quote, start = [], [], "", 0
    pairs = {"[": "]", "{": "}"}
    for i, c in enumerate(text):
        if quote:
            quote = "" if c == quote else quote
        elif c in "'\"" and text[start:i].strip()[-1:] in ("", "[", "{", ",", ":"):
            quote = c  # a quote opens a value (as in YAML); bob's is text
        elif c in pairs:
            opened.append(c)
        elif c in "]}":
            if not opened or pairs[opened[-1]] != c:
                want = {v: k for k, v in pairs.items()}[c]
                raise UnpairedError(f"'{c}' without '{want}' before it" if not opened
                                    else f"'{opened[-1]}' closed by '{c}'")
            opened.pop()
        elif c == "," and not opened:
            parts.append(text[start:i])
            start = i + 1
    if quote:
        raise UnpairedError(f"a {quote} quote without its closing {quote}", quote=True)
    if opened:
        raise UnpairedError(f"'{opened[-1]}' without '{pairs[opened[-1]]}'")
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def coerce(key: str, raw: Any) -> Any:
    """``raw`` as ``key``'s type (``"1e-4"`` -> ``0.0001``), checked against its range and choices.

    Raises:
        ConfigError: naming the key and what is allowed.
    """
    return _coerce(key, raw, RunConfig.field_meta()[key])


# ---------------------------------------------------------------- Coercion helpers
_BOOL_WORDS = {"true": True, "yes": True, "on": True, "y": True, "1": True,
               "false": False, "no": False, "off": False, "n": False, "0": False}


class _TextLoader(yaml.SafeLoader):
    """YAML as a run config is read: a plain scalar stays the text that was typed, and the key it is
    the value of says what it means (:func:`_coerce`).

    YAML 1.1, which PyYAML speaks, guesses a type from the text alone: ``no`` and ``on`` are booleans
    (so ``run_name: no`` or a module called ``no`` was refused as "got False", and ``eval_split: yes``
    said "got True"), ``017`` is octal 15, ``2024-01-01`` a date, while ``1e-4`` (no dot) is text. Only
    null (``null``, ``~``, nothing) and ``<<`` keep their YAML meaning; quoted text and explicit tags
    (``!!float 1``) are as in YAML.
    """


_TextLoader.yaml_implicit_resolvers = {
    first: kept for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    if (kept := [(tag, rx) for tag, rx in resolvers
                 if tag in ("tag:yaml.org,2002:null", "tag:yaml.org,2002:merge")])
}


def _number(text: str) -> int | float | None:
    """``text`` as a number as people write one (``8``, ``1_000``, ``1e-4``, ``5E-5``, ``.5``, ``017`` is
    17), or in YAML's other spellings (``0x10``, ``0o17``, ``.inf``); None if it is none."""
    text = text.strip()
    for read in (int, lambda t: int(t, 0), float):
        try:
            return read(text)
        except (ValueError, OverflowError):  # int() refuses a number of over 4300 digits
            pass
    low = text.lower().removeprefix("+")
    return float(low.replace(".", "")) if low in (".inf", "-.inf", ".nan") else None


def _typed(value: Any, kind: str | None) -> Any:
    """A value read by :class:`_TextLoader` with the type its key wants where its text says so
    (``"8"`` -> 8 for a number key, ``"yes"`` -> True for a switch); any other as it is (``"1e-4"``,
    ``"1_000"``, ``"yes"`` for a number key), which :func:`_coerce` reads or quotes as typed."""
    if not isinstance(value, str):
        return value
    if kind == "bool" and value.strip().lower() in _BOOL_WORDS:
        return _BOOL_WORDS[value.strip().lower()]
    if kind in ("int", "float"):
        try:
            number = int(value)
        except ValueError:  # not a whole number, or one of over 4300 digits
            return value
        return number if str(number) == value.strip() else value  # 017, 1_000 and +5 stay as typed
    return value


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _flow(value: Any) -> str:
    """A value as YAML flow text, text as typed: ``[no, 1]``, ``{a: b}``, ``null``."""
    if isinstance(value, str):
        return value
    if value is None:
        return "null"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(x) for x in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_flow(k)}: {_flow(v)}" for k, v in value.items()) + "}"
    return repr(value)


def _shown(raw: Any) -> str:
    """A bad value as a message quotes it: text in quotes as typed (``'yes'``), a list or mapping as
    YAML writes it (``[q_proj, null]``)."""
    if isinstance(raw, str):
        return repr(_clip(raw))
    return _clip(_flow(raw)) if isinstance(raw, (list, dict)) else repr(raw)


def _decoded(path: Path, data: bytes) -> str:
    """A run config's text: UTF-8, with or without a BOM.

    Raises:
        ConfigErrors: another encoding, named by its BOM when it has one, else where the first
            byte that isn't UTF-8 is (line:column).
    """
    from engine.files import foreign_encoding

    name = foreign_encoding(data[:4])
    if name:
        raise ConfigErrors([ConfigError(
            f"{path}: the file is {name} text (it starts with a {name} byte-order mark, as PowerShell's "
            "'>' and Notepad's 'Unicode' write); run configs are read as UTF-8: save it as UTF-8")])
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        before = data[:e.start]
        line = before.count(b"\n") + 1
        column = e.start - (before.rfind(b"\n") + 1) + 1
        raise ConfigErrors([ConfigError(
            f"{path}:{line}:{column}: the file is not UTF-8 text (byte 0x{data[e.start]:02x} there can't be "
            "UTF-8; it may be Latin-1 or Windows-1252); run configs are read as UTF-8: save it as UTF-8")]) from None


def _read_yaml(path: Path) -> tuple[str, Any]:
    """A run config file's text and what YAML makes of it (each value as typed, :class:`_TextLoader`).

    Raises:
        ConfigErrors: no such file, unreadable, not UTF-8, invalid YAML (line:column), or no keys.
    """
    try:
        text = _decoded(path, path.read_bytes())
    except FileNotFoundError:
        raise ConfigErrors([ConfigError(f"{path}: no such run config file")]) from None
    except OSError as e:
        raise ConfigErrors([ConfigError(f"{path}: can't read: {e.strerror}")]) from None
    try:
        data = yaml.load(text, Loader=_TextLoader)
    except yaml.YAMLError as e:
        raise ConfigErrors([ConfigError(_yaml_problem(path, text, e))]) from None
    except RecursionError:  # [[[[... thousands deep: the parser recurses
        raise ConfigErrors([ConfigError(f"{path}: invalid YAML: a value is nested too deeply to read")]) from None
    if data is None:
        # An editor that never saved, or `> run.yaml` by mistake: every key would take its default and
        # the demo would train (or be estimated, or queued) in place of what the user meant.
        said = f"{path}: the file holds no keys (it is empty, or only blank lines and comments)"
        if path.name == "run.yaml" and (path.parent / "summary.json").is_file():
            raise ConfigErrors([_emptied_run_yaml(path, said)])
        raise ConfigErrors([ConfigError(
            f"{said}: a run config names at least the model and the dataset to train, e.g. 'model: demo' and "
            "'dataset: demo' for the embedded demo", hint=f"{presets_dir() / 'demo.yaml'} is a whole example; "
            "`finetune-studio train --help` lists every key.")])
    return text, data


def _emptied_run_yaml(path: Path, said: str) -> ConfigError:
    """A run's own run.yaml found empty. The run wrote its whole config there, so advice on writing a config
    from scratch ("e.g. 'model: demo'") would not bring this run's back; summary.json's copy can."""
    try:
        kept = isinstance(json.loads(path.parent.joinpath("summary.json").read_text(encoding="utf-8")).get("config"),
                          dict)
    except (OSError, ValueError, AttributeError):  # unreadable, not JSON, not an object
        kept = False
    return ConfigError(
        f"{said}, though the run wrote its config there as it started: the file was emptied since",
        hint=(f"The config the run started with is kept in its summary.json (`finetune-studio runs show "
              f"{path.parent}` prints it): write it back into run.yaml." if kept else
              "The run kept no other copy of its config: write run.yaml again as the run was set up."))


def _not_a_mapping(source: str, data: Any) -> str:
    got = f"a list {_shown(data)}" if isinstance(data, list) else \
        f"the text {_shown(data)}" if isinstance(data, str) else _shown(data)
    return f"{source}: the top level must be a mapping of keys to values (key: value lines, e.g. 'model: demo'), got {got}"


def unreadable_config(path: str | os.PathLike) -> str | None:
    """Why a run config file (a run's run.yaml) can't be read at all, in :meth:`RunConfig.load`'s words
    (``FILE:LINE:COLUMN: invalid YAML: ...``, ``FILE: the top level must be a mapping ...``); None when
    it reads as a mapping of keys. Its values are not validated: a run's config of an older version
    may hold keys this one dropped, and still tells what the run did.
    """
    path = Path(path)
    try:
        _, data = _read_yaml(path)
    except ConfigErrors as e:
        return e.message
    return None if isinstance(data, dict) else _not_a_mapping(str(path), data)


def _yaml_problem(path: Path, text: str, e: yaml.YAMLError) -> str:
    """A YAML error as ``FILE:LINE:COLUMN: invalid YAML: problem``, in words for the common slips."""
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
    problem = getattr(e, "problem", None) or str(e)
    if isinstance(e, yaml.reader.ReaderError):
        # A character YAML refuses (a NUL, a control character): PyYAML gives its index in the text, no mark.
        before = text[:e.position]
        where = f"{path}:{before.count(chr(10)) + 1}:{e.position - before.rfind(chr(10))}"
        code = ord(e.character) if isinstance(e.character, str) else e.character
        problem = f"the control character U+{code:04X} can't be in a YAML file; remove it"
    elif "'\\t'" in problem or "tab character" in problem:
        problem = "a tab; YAML indents and separates with spaces only: replace the tab with spaces"
    elif problem == "found unexpected end of stream" and "quoted scalar" in (getattr(e, "context", None) or ""):
        start = e.context_mark  # where the quote opens, not the end of the file
        where = f"{path}:{start.line + 1}:{start.column + 1}"
        problem = "this quote is never closed (the file ends inside it)"
    elif problem == "mapping values are not allowed here":
        problem += " (a 'key: value' where a value was expected: check this line's indentation, or quote a " \
                   "value that holds ': ')"
    elif problem == "but found another document":
        problem = "a second YAML document ('---'); a run config is one mapping of keys to values"
    return f"{where}: invalid YAML: {problem}"


def keys_in(path: str | os.PathLike) -> set[str]:
    """The top-level keys a run config file sets, to tell the user's choices from defaults.

    Read after :meth:`RunConfig.load` succeeded on the file; unreadable: no keys.
    """
    path = Path(path)
    try:
        return set(_key_occurrences(_decoded(path, path.read_bytes())))
    except (OSError, ConfigErrors):
        return set()


def located_in(path: str | os.PathLike, overrides: Collection[str],
               errors: ConfigError | list[ConfigError]) -> ConfigErrors:
    """Problems found after :meth:`RunConfig.load` (a method's rules, what the model lacks, a
    missing input), each located in the file as load's own are: ``RUN.yaml:4:1: ...`` where the
    key is written, ``--KEY`` where it was typed (``overrides``), ``RUN.yaml: ...`` for a default.
    ``errors``: a list, one error, or a :class:`ConfigErrors` (its errors).

    Read after load succeeded on the file; one that can't be read again gets its path only.
    """
    if isinstance(errors, ConfigError):
        errors = errors.errors if isinstance(errors, ConfigErrors) else [errors]
    path = Path(path)
    try:
        occurrences = _key_occurrences(_decoded(path, path.read_bytes()))
    except (OSError, ConfigErrors, yaml.YAMLError):
        occurrences = {}
    positions = {key: places[-1] for key, places in occurrences.items()}
    return _located(ConfigErrors(list(errors)), path, positions, set(overrides))


def _times(n: int) -> str:
    return "twice" if n == 2 else f"{n} times"


def _key_occurrences(text: str) -> dict[str, list[tuple[int, int]]]:
    """Where each top-level key is in a YAML text: key -> every (line, column) it is at, 1-based."""
    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return {}
    if not isinstance(root, yaml.MappingNode):
        return {}
    out: dict[str, list[tuple[int, int]]] = {}
    for key_node, _ in root.value:
        mark = key_node.start_mark
        out.setdefault(str(key_node.value), []).append((mark.line + 1, mark.column + 1))
    return out


def _located(errors: ConfigErrors, path: Path, positions: dict[str, tuple[int, int]],
             overridden: set[str]) -> ConfigErrors:
    """The same errors, each starting with the file (and line:column of its key when it is in it)."""
    out = []
    for e in errors.errors:
        message = e.message.removeprefix(f"{path}: ")
        if e.key in positions and e.key not in overridden:
            line, column = positions[e.key]
            message = f"{path}:{line}:{column}: {message}"
        elif e.key not in overridden:
            message = f"{path}: {message}"
        located = ConfigError(message, key=e.key, fix=e.fix, hint=e.hint, typed=e.key in overridden)
        out.append(located)
    return ConfigErrors(out)


def _kind(name: str, default: Any) -> str:
    if name in ("lora_target_modules", "ia3_target_modules"):
        return "modules"
    return {bool: "bool", int: "int", float: "float", str: "str", list: "list"}[type(default)]


_NEEDED_TEXT = {
    "model": "a model folder (with config.json), a Hugging Face id from your cache, or 'demo'",
    "dataset": "a dataset file (JSON, JSONL, CSV or Parquet), a dataset in the Hugging Face cache, or 'demo'",
}
"""What the text keys that can't be empty take, as their empty value's message says."""


def _allowed(key: str, meta: dict[str, Any]) -> str:
    """What ``key`` takes, as a message says after "give"."""
    kind, lo, hi = meta["type"], meta.get("min"), meta.get("max")
    if kind == "bool":
        return "true or false"
    if kind in ("int", "float"):
        return f"{'a whole number' if kind == 'int' else 'a number'} between {lo} and {hi}"
    if meta.get("choices"):
        return "one of " + ", ".join((*meta["choices"], f"a {meta['files']} file") if meta.get("files")
                                     else meta["choices"])
    if kind == "modules":
        return f"'{'all-linear' if key == 'lora_target_modules' else 'auto'}' or a list of module names"
    return _NEEDED_TEXT.get(key, "a list" if kind == "list" else "some text")


def _coerce(key: str, raw: Any, meta: dict[str, Any]) -> Any:
    """Check and convert one value; raise a ConfigError naming the key and what is allowed.

    Text is read by the key's type (``"1e-4"`` for a number, ``"no"`` for a switch or as the text
    ``no``); a message quotes a bad value as it was typed (``got 'yes'``, not ``got True``).
    """
    kind = meta["type"]
    choices = meta.get("choices")
    default = meta["default"]
    if raw is None:  # `key:` with nothing after it, null or ~
        if isinstance(default, (str, list)) and not default:
            return type(default)()  # an optional text or list: nothing is what it means
        raise ConfigError(f"'{key}' is empty (null): give {_allowed(key, meta)} (or leave it out for the default)",
                          key=key)
    if kind == "str" and not choices and default and isinstance(raw, str) and not raw.strip():
        raise ConfigError(f"'{key}' is empty: give {_allowed(key, meta)}", key=key)  # model, dataset
    if kind == "bool":
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.strip().lower() in _BOOL_WORDS:
            return _BOOL_WORDS[raw.strip().lower()]
        raise ConfigError(f"'{key}' must be true or false, got {_shown(raw)}", key=key)
    if kind in ("int", "float"):
        lo, hi = meta.get("min"), meta.get("max")
        number = _number(raw) if isinstance(raw, str) else \
            raw if isinstance(raw, (int, float)) and not isinstance(raw, bool) else None
        value: Any = None
        if kind == "int" and isinstance(number, int):
            value = number
        elif kind == "int" and isinstance(number, float) and number.is_integer():  # 1e3; not inf or nan
            value = int(number)
        elif kind == "float" and number is not None:
            try:
                value = float(number)
            except OverflowError:  # an int of over 308 digits
                value = math.inf if number > 0 else -math.inf
        if value is None:
            raise ConfigError(f"'{key}' must be {_allowed(key, meta)}, got {_shown(raw)}", key=key)
        # NaN compares False with every bound, so it must be refused by name (inf is out of range already).
        if (kind == "float" and math.isnan(value)) or (lo is not None and value < lo) \
                or (hi is not None and value > hi):
            said = _clip(raw.strip()) if isinstance(raw, str) else value
            raise ConfigError(f"'{key}' must be between {lo} and {hi}, got {said}", key=key)
        return value
    if kind == "str":
        # Python's False for the choice "no" (what YAML 1.1 read a bare `mixed_precision: no` as).
        if raw is False and choices and "no" in choices:
            raw = "no"
        if isinstance(raw, (int, float)) and not isinstance(raw, bool) and not choices:
            raw = str(raw)
        if not isinstance(raw, str):
            raise ConfigError(f"'{key}' must be " + (f"{_allowed(key, meta)}; got" if choices else "text, got")
                              + f" {_shown(raw)}", key=key)
        if choices and raw not in choices and not (meta.get("files") and raw.lower().endswith(meta["files"])):
            close = difflib.get_close_matches(raw, choices, n=1, cutoff=0.5)
            tip = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"'{key}' must be {_allowed(key, meta)}; got '{raw}'{tip}", key=key,
                              fix={key: close[0]} if close else None)
        return raw
    if kind == "list":
        if isinstance(raw, str):
            raw = [s.strip() for s in raw.split(",") if s.strip()]
        if not isinstance(raw, list):
            raise ConfigError(f"'{key}' must be a list, got {_shown(raw)}", key=key)
        return list(raw)
    if kind == "modules":
        special = "all-linear" if key == "lora_target_modules" else "auto"
        if raw == special:
            return raw
        if isinstance(raw, str):
            raw = [s.strip() for s in raw.split(",") if s.strip()]
        if not isinstance(raw, list) or not raw or not all(isinstance(x, str) and x for x in raw):
            raise ConfigError(f"'{key}' must be '{special}' or a list of module names, got {_shown(raw)}", key=key)
        return list(raw)
    raise AssertionError(kind)


def parse_override(key: str, text: str) -> Any:
    """Turn a CLI ``--key value`` string into the value it means.

    A text key (``run_name``, ``prompt_init_text``, ``method``...) takes the text as given:
    read as YAML, ``"#1 run"`` would be a comment (None), ``no`` false, ``[x]`` a list and
    ``"Classify: yes"`` a mapping. The one exception is a text wholly in YAML quotes
    (``"'no'"``), which is unquoted, so a command written by YAML-quoting a value (the Train
    area's "Copy as command") reads back the same. Other keys are read as YAML, so numbers,
    booleans and lists (``[q_proj, v_proj]``) work, each read by the key's type as a file's value is
    (:class:`_TextLoader`): ``--eval_split yes`` is refused quoting ``'yes'``, ``--lora_target_modules no``
    is the module ``no``.
    """
    meta = RunConfig.field_meta().get(key)
    if meta is not None and meta["type"] == "str":
        return _unquoted(text)
    if text == "":
        return ""
    try:
        value = yaml.load(text, Loader=_TextLoader) if meta is not None else yaml.safe_load(text)
    except yaml.YAMLError as e:
        if meta is not None and meta["type"] in ("list", "modules") and text.lstrip().startswith(("[", "{")):
            # `--add_tokens '[<a>'` trained the token '[<a>', `--lora_target_modules '[q_proj'` looked for that module.
            raise ConfigError(f"'{key}' {text!r} is not a YAML list ({getattr(e, 'problem', None) or e}); write the "
                              "list whole in brackets, e.g. [q_proj, v_proj], or the names with commas: q_proj,v_proj",
                              key=key, typed=True) from None
        return text
    return _typed(value, meta and meta["type"])


def _unquoted(text: str) -> str:
    """``'it''s'`` -> ``it's``: the text inside YAML quotes when all of it is one quoted scalar."""
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            return text
        if isinstance(value, str):
            return value
    return text


def update_readme(path: Path) -> bool:
    """Rewrite the key table between the README's config-table markers; True if it changed."""
    text = path.read_text(encoding="utf-8")
    start, end = "<!-- config-table:start -->\n", "<!-- config-table:end -->"
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    new = head + start + RunConfig.markdown_table() + end + tail
    if new != text:
        path.write_text(new, encoding="utf-8")
    return new != text


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["--update-readme"]:
        from engine.paths import REPO_ROOT

        print("updated" if update_readme(REPO_ROOT / "README.md") else "up to date")
