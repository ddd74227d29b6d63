"""``finetune-studio estimate RUN.yaml [--json] [--gpu-memory GiB]``."""

from __future__ import annotations

import argparse
import json

from engine.errors import ConfigError, StudioError
from engine.memory.terms import GIB


def cli_estimate(args: argparse.Namespace) -> int:
    """Print the estimate of ``args.config`` (with ``args.overrides``) as text or JSON.

    Args:
        args: ``config`` (path), ``json`` (bool), ``gpu_memory`` (GiB or None),
            ``overrides`` (run-config keys from the command line).

    Returns:
        0.

    Raises:
        StudioError: the config, the model or the calibration file is unusable (the CLI prints
            it as every command's errors, ``finetune-studio estimate: ...``, and exits 2).
    """
    from engine.config import RunConfig, located_in
    from engine.memory.peak import estimate
    from engine.precision import detect_environment

    overrides = getattr(args, "overrides", None) or {}
    cfg = RunConfig.load(args.config, overrides)
    # --gpu-memory is a positive, finite number: the CLI's argparse type refuses the rest by name.
    gpu_bytes = None if getattr(args, "gpu_memory", None) is None else int(args.gpu_memory * GIB)
    _refuse_an_architecture(cfg, args.config, overrides)  # before the data's tokenizer: its warnings would come first
    data, why = (None, "") if getattr(args, "no_data", False) else _data(cfg)
    # The machine is checked even with --gpu-memory: a note says when this one can't run the config
    # (train refuses it), while the estimate still plans it for a GPU that can.
    try:
        result = estimate(cfg, gpu_bytes, with_measured=True, data=data,
                          env=detect_environment(free_memory=False))
    except ConfigError as e:  # a method's rule, a module the model lacks: said where the key is, as train says it
        raise located_in(args.config, overrides, e) from None
    if why:
        result.notes.append(why)
    if getattr(args, "json", False):
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(format_text(result.to_dict(), model=cfg.model))
    return 0


def _refuse_an_architecture(cfg, config: str, overrides: dict) -> None:
    """A model transformers can't build as a causal LM is said at once, at the model key's line."""
    from engine.config import located_in
    from engine.models import architecture_problem, resolve_model_path

    try:
        problem = architecture_problem(resolve_model_path(cfg.model), cfg.trust_remote_code)
    except StudioError:
        return  # a model that isn't there: the estimate says it
    if problem is not None:
        raise located_in(config, overrides, problem)


def _data(cfg) -> tuple:
    """``(DataLengths, "")``, or ``(None, why not)`` when the records can't be measured: the
    estimate at ``seq_len`` needs only config.json, so a missing dataset or tokenizer is a note."""
    from engine.data.lengths import data_lengths

    try:
        return data_lengths(cfg), ""
    except StudioError as e:
        return None, f"the estimate at the data's longest record is missing: {e.message}"


def format_gib(n: int | None) -> str:
    """Bytes as GiB (MiB below 1 GiB), '-' for None."""
    if n is None:
        return "-"
    return f"{n / GIB:.2f} GiB" if n >= GIB else f"{n / (1 << 20):.1f} MiB"


def format_text(d: dict, *, model: str = "") -> str:
    """A readable report of an estimate's ``to_dict()``."""
    share = f" = {100 * d['trainable_params'] / d['total_params']:.2f}%" if d["total_params"] else ""
    at = f" with batches of seq_len {d['seq_len']:,} tokens" if d.get("seq_len") else ""
    lines = [f"Estimated peak GPU memory: {format_gib(d['peak_bytes'])} ({d['peak_bytes'] / 1e9:.1f} GB, as "
             f"nvidia-smi shows it), at the {d['peak_phase']}{at}",
             f"  model: {model}: {d['total_params']:,} parameters, {d['trainable_params']:,} trainable{share}",
             "  breakdown at the peak:"]
    for name, value in d["breakdown"].items():
        if value:
            lines.append(f"    {name.replace('_', ' '):<24} {format_gib(value):>12}")
    if d["gpu_bytes"]:
        gpu = d["gpu_name"] or "GPU"
        room = d.get("gpu_available_bytes") or d["gpu_bytes"]
        pct = 100 * d["peak_bytes"] / room
        held = d.get("gpu_others_bytes")
        left = (f", {format_gib(held)} held by other programs, {format_gib(room)} left"
                if held and room < d["gpu_bytes"] else "")
        lines.append(f"  {gpu} ({d['gpu_source']}): {format_gib(d['gpu_bytes'])}{left} -> fits: {d['fits']} "
                     f"({pct:.0f}% of {'what is left' if left else 'it'})")
        lines.append(f"  largest micro-batch that fits: {d['max_batch_size']}")
    data = d.get("data")
    if data:
        lines.append("  " + data_text(data, d["gpu_bytes"]))
    for m in d["measured"]:
        peak = m.get("peak_gpu_device_bytes") or m.get("peak_gpu_reserved_bytes")
        longest = f", longest record {m['longest_record']:,} tokens" if m.get("longest_record") else ""
        lines.append(f"  measured on this machine: {format_gib(peak)} on {m.get('gpu_name') or 'GPU'} "
                     f"({m['run_dir']}, {m.get('finished') or m.get('status')}{longest})")
    if d["suggestions"]:
        lines.append("  to lower it (each step includes the ones above):")
        for i, s in enumerate(d["suggestions"], 1):
            verdict = f", fits: {s['fits']}" if s["fits"] else ""
            changes = ", ".join(f"{k}={v}" for k, v in s["changes"].items())
            lines.append(f"    {i}. {s['description']}: {format_gib(s['peak_bytes'])}{verdict}  [{changes}]")
    disk = d.get("disk") or {}
    if disk:
        lines.append(f"  disk: {disk_text(disk)}")
    for note in d["notes"]:
        lines.append(f"  note: {note}")
    return "\n".join(lines)


def data_text(data: dict, gpu_bytes: int | None) -> str:
    """One line on the estimate with the run's data (the estimate's ``data`` object)."""
    n = data["records"]
    text = f"with this data ({n:,} record{'s' if n != 1 else ''}, the longest {data['longest_record']:,} tokens"
    if data["truncated"]:
        text += f", {data['truncated']:,} cut to seq_len {data['seq_len']:,}): the same"
    else:
        text += f"): {format_gib(data['peak_bytes'])}"
    if gpu_bytes:
        text += f" -> fits: {data['fits']}, largest micro-batch that fits: {data['max_batch_size']}"
        if (data.get("max_batch_size") or 0) >= n > 0:
            # The memory's answer, but no batch holds more records than there are ("10000" for 200 records).
            text += f" (more than the {n:,} records: a batch of all of them fits)"
    return text


def disk_text(disk: dict) -> str:
    """One line on what the run writes to disk (the estimate's ``disk`` object)."""
    at_once = disk.get("checkpoints_at_once")
    text = (f"checkpoints of {format_gib(disk['checkpoint_bytes'])} each, "
            + (f"up to {at_once} at once, " if at_once else "every one kept (save_total_limit 0), ")
            + f"and final/ of {format_gib(disk['final_bytes'])}")
    if disk.get("need_bytes"):
        text += f": {format_gib(disk['need_bytes'])} in all"
    if disk.get("free_bytes") is not None:
        text += f"; {format_gib(disk['free_bytes'])} free there" + (" (NOT ENOUGH)" if disk.get("fits") is False else "")
    return text
