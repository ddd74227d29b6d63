"""A probe run: train a config for a few steps to measure what it really costs.

The estimate says what a config should need; a probe measures it on this machine in about a
minute: the peak GPU memory as the driver reports it (beside the estimate), the time per
optimizer step, and from it how long the full run will train. If the micro-batch doesn't
fit, the out-of-memory guard halves it as in a real run and the probe reports the batch that
fits. Nothing is saved (no checkpoint, no final/): the run folder keeps only the curve, the
events and ``summary.json``, whose measured peak then shows as "measured on this machine"
beside the estimate of every equivalent config (engine/memory/history.py).

``finetune-studio train RUN.yaml --probe [--probe-steps N]``; the Train area's "Probe".
"""

from __future__ import annotations

import math
import statistics
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.config import RunConfig

PROBE_STEPS = 10
WARMUP_STEPS = 2  # CUDA init, allocator growth and kernel selection make the first steps slow


def probe_name(cfg: RunConfig) -> str:
    """The probe's run name: its run folder is ``<time>-<name>``."""
    return f"{cfg.run_name or cfg.method}-probe"


def probe_config(cfg: RunConfig, steps: int = PROBE_STEPS, output_dir: str = "") -> RunConfig:
    """``cfg`` as a probe: ``steps`` optimizer steps, logged each, in a new run folder (or
    ``output_dir``, one the caller made for the probe; never the config's own).

    Memory-relevant keys are untouched, so the measured peak stands for ``cfg``'s. Evaluation
    and early stopping are off (the probe trains on every record; :func:`probe_report` counts
    the full run's steps on its own split) and no checkpoint is saved.
    """
    if steps < WARMUP_STEPS + 2:
        raise ValueError(f"a probe needs at least {WARMUP_STEPS + 2} steps, got {steps}")
    return cfg.replace(max_steps=steps, save_steps=0, logging_steps=1, eval_split=0.0,
                       eval_dataset="", eval_steps=0, early_stopping_patience=0, output_dir=output_dir, run_name=probe_name(cfg))


def seconds_per_step(rows: list[dict[str, Any]]) -> float | None:
    """The median time between consecutive logged steps, after the warm-up steps."""
    steps = sorted((r["step"], r["time"]) for r in rows
                   if isinstance(r.get("step"), int) and "loss" in r and isinstance(r.get("time"), (int, float)))
    gaps = [t - t0 for (s0, t0), (s, t) in zip(steps, steps[1:], strict=False)
            if s == s0 + 1 and s0 > WARMUP_STEPS]
    return statistics.median(gaps) if gaps else None


def train_records_of(cfg: RunConfig, records: int) -> int:
    """How many of ``records`` tokenized records the full run trains on, after its eval split."""
    from engine.data.split import train_eval_split

    return len(train_eval_split(records, cfg.eval_split, cfg.seed)[0])


def full_run_steps(cfg: RunConfig, train_records: int | None, world_size: int = 1) -> int | None:
    """Optimizer steps of the full run: ``max_steps``, or epochs x steps per epoch as Trainer counts them."""
    if cfg.max_steps > 0:
        return cfg.max_steps
    if not train_records:
        return None
    batches = math.ceil(train_records / (cfg.batch_size * max(1, world_size)))
    per_epoch = max(1, batches // cfg.gradient_accumulation_steps)
    return math.ceil(per_epoch * cfg.num_epochs)


def probe_report(full: RunConfig, result: dict[str, Any], rows: list[dict[str, Any]], *,
                 train_records: int | None, gpu_bytes: int | None, gpu_name: str | None,
                 longest: int | None = None) -> dict[str, Any]:
    """What the probe measured, for the FINISHED event, ``summary.json`` and the user.

    Args:
        full: the config the user means to run (not the probe's).
        result: the probe run's result (status, peaks, ``oom_retries``, ``config``).
        rows: its metrics rows.
        train_records: training records of the run (its split).
        gpu_bytes, gpu_name: the GPU it ran on (None on the CPU).
        longest: the longest tokenized training record. The estimate is for batches of
            ``seq_len`` positions; when no record is that long (and rows aren't packed), no batch
            is padded that far, so the estimate at the longest record is given beside it.
    """
    from engine.config import RunConfig

    ran = RunConfig.from_dict(result["config"]) if result.get("config") else full
    # An out-of-memory back-off changed the micro-batch: what was measured is the new one's.
    changed = {k: getattr(ran, k) for k in ("batch_size", "gradient_accumulation_steps")
               if getattr(ran, k) != getattr(full, k)}
    measured_as = full.replace(**changed) if changed else full
    per_step = seconds_per_step(rows)
    steps = full_run_steps(measured_as, train_records)
    peak = result.get("peak_gpu_device_bytes") or result.get("peak_gpu_reserved_bytes")
    estimate_bytes = data_bytes = data_len = None
    if gpu_bytes:
        from engine.memory import estimate

        try:
            estimate_bytes = estimate(measured_as, gpu_bytes, gpu_name=gpu_name).peak_bytes
            if longest and not measured_as.packing and longest < measured_as.seq_len:
                data_bytes = estimate(measured_as.replace(seq_len=longest), gpu_bytes, gpu_name=gpu_name).peak_bytes
                data_len = longest
        except Exception:  # noqa: BLE001 - the probe's measurement stands without an estimate
            pass
    tokens = [r["tokens_per_s"] for r in rows if isinstance(r.get("tokens_per_s"), (int, float))
              and isinstance(r.get("step"), int) and r["step"] > WARMUP_STEPS]
    return {
        "steps": result.get("step"), "seconds_per_step": per_step,
        "tokens_per_s": statistics.median(tokens) if tokens else None,
        "full_steps": steps, "projected_train_s": per_step * steps if per_step and steps else None,
        "peak_gpu_bytes": peak, "peak_is_driver": bool(result.get("peak_gpu_device_bytes")),
        "estimate_bytes": estimate_bytes,
        "estimate_error": (estimate_bytes - peak) / peak if estimate_bytes and peak else None,
        "estimate_seq_len": measured_as.seq_len, "longest_record": data_len, "estimate_longest_bytes": data_bytes,
        "estimate_longest_error": (data_bytes - peak) / peak if data_bytes and peak else None,
        "gpu_bytes": gpu_bytes, "gpu_name": gpu_name, "oom_retries": result.get("oom_retries") or 0,
        "changed": changed, "status": result.get("status"),
    }


def _duration(seconds: float) -> str:
    """A projected duration, rounded as a projection should be ("about 38 min", not
    runs.format_duration's "38 min 05 s" for a measured one)."""
    s = int(round(seconds))
    if s < 90:
        return f"{s} s"
    if s < 5400:
        return f"{round(s / 60)} min"
    return f"{s // 3600} h {round(s % 3600 / 60):02d} min"


def format_probe(report: dict[str, Any]) -> list[str]:
    """The probe's findings as short lines (the CLI prints them; the GUI shows them as advice)."""
    lines = []
    if report.get("changed"):
        change = ", ".join(f"{k} {v}" for k, v in report["changed"].items())
        lines.append(f"out of memory at the config's micro-batch: it fits with {change} "
                     f"({report['oom_retries']} halving{'s' if report['oom_retries'] > 1 else ''}); "
                     "the numbers below are for that")
    per_step = report.get("seconds_per_step")
    if per_step:
        tps = f"; {report['tokens_per_s']:,.0f} tokens/s" if report.get("tokens_per_s") else ""
        lines.append(f"time per step: {per_step:.2f} s (median after {WARMUP_STEPS} warm-up steps){tps}")
        if report.get("projected_train_s"):
            took = report["projected_train_s"]
            # "about 0 s" for a tiny model's run that takes a fraction of a second.
            how_long = "under a second" if took < 0.5 else f"about {_duration(took)}"
            lines.append(f"full run: {report['full_steps']:,} steps, {how_long} of training (evaluations and "
                         "checkpoints come on top)")
    else:
        lines.append("time per step: not measured (too few steps after the warm-up)")
    peak = report.get("peak_gpu_bytes")
    if peak:
        gib = 2**30
        text = f"GPU memory: peak {peak / gib:.2f} GiB measured{' (driver)' if report.get('peak_is_driver') else ''}"
        if report.get("gpu_bytes"):
            text += f" of {report['gpu_bytes'] / gib:.0f} GiB on {report.get('gpu_name') or 'the GPU'}"
        if report.get("estimate_bytes"):
            text += f"; estimate {report['estimate_bytes'] / gib:.2f} GiB ({report['estimate_error']:+.1%})"
            if report.get("estimate_longest_bytes"):
                # No batch of this data is padded to seq_len: the estimate there is the worst case
                # the config allows, the one at the longest record what this data can reach.
                text += (f" at seq_len {report['estimate_seq_len']}, "
                         f"{report['estimate_longest_bytes'] / gib:.2f} GiB ({report['estimate_longest_error']:+.1%}) "
                         f"at the data's longest record ({report['longest_record']:,} tokens)")
        lines.append(text)
    else:
        lines.append("GPU memory: not measured (the probe trained on the CPU)")
    return lines
