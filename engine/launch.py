"""Beyond one GPU: write an accelerate config, a DeepSpeed ZeRO config and a launch script.

``finetune-studio export-launch RUN.yaml [--out DIR] [--zero 2|3] [--offload]
[--num-processes N]`` writes into ``DIR`` (default ``<output_dir>/launch``; a config without an
``output_dir`` gets a new run folder in the runs directory, named in the exported ``run.yaml``):

- ``ds_zero{2,3}[_offload].json``: a DeepSpeed config in the shape of the ZeRO-3 CPU-offload
  example of the transformers DeepSpeed guide. Every value Trainer knows is ``"auto"``, so
  HF's ``HfTrainerDeepSpeedConfig`` fills batch size, accumulation, learning rate, Adam
  betas/epsilon, weight decay, clipping and bf16/fp16 from the run config. Unlike the
  example there is no ``scheduler`` block: without one Trainer keeps the run's own
  ``lr_scheduler`` and warm-up (a WarmupLR block would silently replace a cosine schedule).
  The ``optimizer`` block is kept: with offload DeepSpeed then uses its fast CPU Adam.
- ``accelerate_config.yaml``: ``distributed_type: DEEPSPEED`` with that JSON and N processes.
- ``run.yaml``: the run config with ``deepspeed`` pointing at the JSON (Trainer reads it
  through ``TrainingArguments(deepspeed=...)``).
- ``launch.sh``: ``accelerate launch --config_file accelerate_config.yaml -m engine.train run.yaml``;
  extra arguments (``--resume``, ``--max_steps 10``) are passed on.

Plain DDP needs none of this: ``accelerate launch --multi_gpu --num_processes N -m
engine.train RUN.yaml`` runs the same config (README, "Several GPUs").
"""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path
from typing import Any

from engine.config import RunConfig, located_in
from engine.errors import ConfigError
from engine.files import atomic_write_text

# The keys HF Trainer fills when they are "auto" (transformers' HfTrainerDeepSpeedConfig.trainer_config_process).
AUTO_FROM_TRAINER = ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "train_batch_size",
                     "gradient_clipping", "optimizer.params.lr", "optimizer.params.betas",
                     "optimizer.params.eps", "optimizer.params.weight_decay", "fp16.enabled", "bf16.enabled")


def deepspeed_config(zero: int, offload: bool) -> dict[str, Any]:
    """A DeepSpeed config for ZeRO stage ``zero``, optionally offloading to the CPU.

    Args:
        zero: 2 (shard optimizer states and gradients) or 3 (also the parameters).
        offload: keep optimizer states (and for ZeRO-3 the parameters) in CPU memory.

    Raises:
        ValueError: ``zero`` is not 2 or 3.
    """
    if zero not in (2, 3):
        raise ValueError(f"zero must be 2 or 3, got {zero}")
    cpu = {"device": "cpu", "pin_memory": True}
    zero_opt: dict[str, Any] = {"stage": zero}
    if offload:
        zero_opt["offload_optimizer"] = dict(cpu)
        if zero == 3:
            zero_opt["offload_param"] = dict(cpu)
    if zero == 2:
        zero_opt.update({"allgather_partitions": True, "allgather_bucket_size": 2e8, "overlap_comm": True,
                         "reduce_scatter": True, "reduce_bucket_size": "auto", "contiguous_gradients": True})
    else:
        zero_opt.update({"overlap_comm": True, "contiguous_gradients": True, "sub_group_size": 1e9,
                         "reduce_bucket_size": "auto", "stage3_prefetch_bucket_size": "auto",
                         "stage3_param_persistence_threshold": "auto", "stage3_max_live_parameters": 1e9,
                         "stage3_max_reuse_distance": 1e9,
                         # One consolidated safetensors model at save time, not only sharded states.
                         "stage3_gather_16bit_weights_on_model_save": True})
    return {
        "fp16": {"enabled": "auto", "loss_scale": 0, "loss_scale_window": 1000, "initial_scale_power": 16,
                 "hysteresis": 2, "min_loss_scale": 1},
        "bf16": {"enabled": "auto"},
        "optimizer": {"type": "AdamW", "params": {"lr": "auto", "betas": "auto", "eps": "auto",
                                                  "weight_decay": "auto"}},
        "zero_optimization": zero_opt,
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "steps_per_print": 2000,
        "train_batch_size": "auto",
        "train_micro_batch_size_per_gpu": "auto",
        "wall_clock_breakdown": False,
    }


def accelerate_config(ds_json: Path, num_processes: int, zero: int) -> str:
    """The accelerate config YAML (what ``accelerate config`` would write) for one machine."""
    return "\n".join([
        "# Written by finetune-studio export-launch. Precision comes from the DeepSpeed JSON",
        "# (\"auto\" = the run config's mixed_precision), so mixed_precision is not set here.",
        "compute_environment: LOCAL_MACHINE",
        "distributed_type: DEEPSPEED",
        "deepspeed_config:",
        f"  deepspeed_config_file: {json.dumps(str(ds_json))}",
        f"  zero3_init_flag: {'true' if zero == 3 else 'false'}",
        "machine_rank: 0",
        "main_training_function: main",
        "num_machines: 1",
        f"num_processes: {num_processes}",
        "rdzv_backend: static",
        "same_network: true",
        "use_cpu: false",
        "",
    ])


def launch_script(config_yaml: str, run_yaml: str) -> str:
    """A bash script that launches the run from the folder it lives in."""
    return f"""#!/usr/bin/env bash
# Written by finetune-studio export-launch on {time.strftime('%Y-%m-%d %H:%M')}.
# Extra arguments go to the training command, e.g. ./launch.sh --resume
set -euo pipefail
HERE="$(cd "$(dirname "${{BASH_SOURCE[0]}}")" && pwd)"
exec "${{ACCELERATE:-accelerate}}" launch --config_file "$HERE/{config_yaml}" -m engine.train "$HERE/{run_yaml}" "$@"
"""


def check_launch(cfg: RunConfig, *, zero: int = 2, num_processes: int = 2) -> None:
    """Refuse a launch that can't run, before anything is written (a refused export made an empty
    run folder for a config without output_dir).

    Raises:
        ConfigError: fewer than one process, ZeRO-3 with a quantized base, or a CPU-only config;
            its ``fix`` is run-config changes that pass this check and the config's own validation.
    """
    if num_processes < 1:
        raise ConfigError(f"--num-processes must be at least 1, got {num_processes}", key="num_processes",
                          hint="Give the number of GPUs on this machine, e.g. --num-processes 2.")
    if zero == 3 and cfg.is_quantized:
        # qlora is nf4 by definition: a 16-bit base means plain LoRA.
        fix = {"method": "lora", "load_in": "bf16"} if cfg.method == "qlora" else {"load_in": "bf16"}
        raise ConfigError(f"ZeRO-3 shards every parameter across GPUs, which bitsandbytes {cfg.load_in} weights "
                          f"don't support here (method {cfg.method}, load_in {cfg.load_in})", key="load_in", fix=fix,
                          hint=f"Use --zero 2 (optimizer and gradient sharding), which works with load_in "
                          f"{cfg.load_in}; or keep ZeRO-3 with a 16-bit base: "
                          + " ".join(f"--{k} {v}" for k, v in fix.items()) + ".")
    if cfg.device == "cpu":
        raise ConfigError("DeepSpeed needs GPUs, but this run config says device: cpu. For several CPU "
                          "processes use `accelerate launch --multi_gpu --num_processes N -m engine.train RUN.yaml`.",
                          key="device", fix={"device": "auto"})


def export_launch(cfg: RunConfig, out_dir: Path, *, zero: int = 2, offload: bool = False,
                  num_processes: int = 2) -> dict[str, Path]:
    """Write the DeepSpeed JSON, the accelerate config, the run config and ``launch.sh``.

    Args:
        cfg: the run config to launch.
        out_dir: the folder to write into (created).
        zero: DeepSpeed ZeRO stage, 2 or 3.
        offload: CPU offload of optimizer states (and parameters for ZeRO-3).
        num_processes: processes (GPUs) on this machine.

    Returns:
        ``{"deepspeed", "accelerate", "run", "script"}`` -> the written files.

    Raises:
        ConfigError: ZeRO-3 with a quantized base, fewer than one process, or a CPU-only config
            (see :func:`check_launch`).
    """
    check_launch(cfg, zero=zero, num_processes=num_processes)
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    ds_path = out_dir / f"ds_zero{zero}{'_offload' if offload else ''}.json"
    atomic_write_text(ds_path, json.dumps(deepspeed_config(zero, offload), indent=2) + "\n")
    acc_path = atomic_write_text(out_dir / "accelerate_config.yaml", accelerate_config(ds_path, num_processes, zero))
    run_path = cfg.replace(deepspeed=str(ds_path)).save(out_dir / "run.yaml")
    script = atomic_write_text(out_dir / "launch.sh", launch_script(acc_path.name, run_path.name))
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return {"deepspeed": ds_path, "accelerate": acc_path, "run": run_path, "script": script}


def cli_export_launch(args: Any) -> int:
    """``finetune-studio export-launch RUN.yaml [--out DIR] [--zero 2|3] [--offload] [--num-processes N]``."""
    overrides = getattr(args, "overrides", None) or {}
    cfg = RunConfig.load(args.config, overrides)
    check_launch(cfg, zero=args.zero, num_processes=args.num_processes)  # before a run folder is made
    from engine.methods import method_errors
    from engine.train import missing_inputs, model_problems

    # A launch of a model or dataset that isn't here, or of settings the method or the model can't
    # take, fails only when started, on every GPU, and left a run folder that never trained: refused
    # now, as train refuses it, in its words. (What only this machine lacks, a CUDA GPU for nf4, is
    # no reason: the launch is for the machine with the GPUs.)
    errors = [e for e in missing_inputs(cfg) if e.key != "deepspeed"]  # the launch writes its own
    errors = errors or method_errors(cfg) or model_problems(cfg)
    if errors:
        raise located_in(args.config, overrides, errors)  # one reads as itself, with its hint
    if args.out:
        out = Path(args.out)
        if out.exists() and not out.is_dir():
            raise ConfigError(f"--out '{args.out}' is a file, not a folder", key="out",
                              hint="Give a folder for the launch files (made if it isn't there).")
    else:
        if not cfg.output_dir:
            # The run's folder is made now, as training would make it, and named in the exported run.yaml:
            # the launch files live in the folder of the run they start (not beside the config, which may
            # be a shipped preset), and every launch of them continues that one run.
            from engine.runs import new_run_dir

            cfg = cfg.replace(output_dir=str(new_run_dir(cfg.method, cfg.run_name)))
        out = Path(cfg.output_dir) / "launch"
    files = export_launch(cfg, out, zero=args.zero, offload=args.offload, num_processes=args.num_processes)
    print(f"wrote {files['deepspeed']}\n      {files['accelerate']}\n      {files['run']}\n      {files['script']}")
    if cfg.optimizer != "adamw":
        print(f"note: the DeepSpeed optimizer (AdamW{', CPU Adam with offload' if args.offload else ''}) "
              f"replaces optimizer '{cfg.optimizer}' under DeepSpeed")
    rel = os.path.relpath(files["script"])
    print(f"run it with: {files['script'] if rel.startswith('..') else rel}")  # not ../../tmp/...
    return 0
