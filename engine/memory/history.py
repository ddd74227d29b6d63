"""Learning from real runs: measured peaks of earlier runs, and a per-GPU correction.

Every run folder's ``summary.json`` (engine/runs.py) records the peak memory the worker
measured (``peak_gpu_allocated_bytes``, ``peak_gpu_reserved_bytes``,
``peak_gpu_device_bytes``) next to the run config. :func:`measured_peaks` finds the runs
whose config matches a config in every key that changes memory, so the GUI and the CLI
can show "measured on this machine" beside the estimate.

``memory_calibration.json`` in the data folder (``engine.paths.data_home()``) holds one
factor per GPU name, e.g. ``{"NVIDIA GeForce RTX 4090": 1.04}``; the estimate for that GPU
is multiplied by it (docs/memory.md "Per-GPU correction").
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import ConfigError

if TYPE_CHECKING:
    from engine.config import RunConfig

CALIBRATION_FILE = "memory_calibration.json"
FACTOR_RANGE = (0.5, 2.0)

# Run-config keys that change the peak memory, by the methods they matter for (None: all).
# Two runs that agree on these (and on the model) peak at the same memory on one GPU.
ESTIMATE_KEYS: dict[str, tuple[str, ...] | None] = {
    "method": None, "load_in": None, "mixed_precision": None, "gradient_checkpointing": None,
    "optimizer": None, "batch_size": None, "seq_len": None, "packing": None, "attn_implementation": None,
    "lora_r": ("lora", "qlora"), "lora_target_modules": ("lora", "qlora"), "use_dora": ("lora", "qlora"),
    "add_tokens": ("lora", "qlora"),
    "freeze_trainable_layers": ("freeze",), "freeze_extra_modules": ("freeze",),
    "num_virtual_tokens": ("prefix", "prompt"), "prefix_projection": ("prefix",),
    "adapter_reduction_factor": ("adapter",), "adapter_style": ("adapter",), "ia3_target_modules": ("ia3",),
}


def calibration_path() -> Path:
    """Where the per-GPU correction factors live."""
    from engine.paths import data_home

    return data_home() / CALIBRATION_FILE


_FACTORS: dict[str, Any] = {"key": None, "value": {}}


def correction_factors() -> dict[str, float]:
    """``{gpu_name: factor}`` from ``memory_calibration.json`` ({} when there is none).

    Re-read only when the file changes.

    Raises:
        ConfigError: the file isn't a JSON object of GPU names to numbers in [0.5, 2].
    """
    path = calibration_path()
    try:
        stat = path.stat()
    except OSError:
        return {}
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if _FACTORS["key"] == key:
        return _FACTORS["value"]
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}:{e.lineno}:{e.colno}: invalid JSON: {e.msg}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must be a JSON object of GPU name -> factor, e.g. "
                          '{"NVIDIA H100 80GB HBM3": 1.0}')
    out: dict[str, float] = {}
    lo, hi = FACTOR_RANGE
    for name, value in data.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
            raise ConfigError(f"{path}: the factor for '{name}' must be a number between {lo} and {hi}, "
                              f"got {value!r}")
        out[str(name)] = float(value)
    _FACTORS.update(key=key, value=out)
    return out


def correction_factor(gpu_name: str | None) -> float:
    """The factor for ``gpu_name`` (1.0 when the file or the GPU's entry is missing)."""
    if not gpu_name:
        return 1.0
    return correction_factors().get(gpu_name, 1.0)


def estimate_signature(data: dict[str, Any]) -> tuple:
    """The memory-relevant part of a run config (as a dict), for comparing runs.

    Keys a method doesn't read are left out; LoRA dropout and gradient accumulation count
    only as on/off (a dropout mask exists or not; gradients outlive the step or not).
    """
    from engine.config import RunConfig

    meta = RunConfig.field_meta()

    def get(key: str) -> Any:
        return data.get(key, meta[key]["default"])

    method = get("method")
    out: list[Any] = [_model_id(str(get("model")))]
    for key, methods in ESTIMATE_KEYS.items():
        if methods is not None and method not in methods:
            continue
        value = get(key)
        if isinstance(value, list):
            value = tuple(sorted(value)) if key.endswith("modules") else tuple(value)
        out.append((key, value))
    if method in ("lora", "qlora"):
        out.append(("lora_dropout", float(get("lora_dropout")) > 0))
    out.append(("accumulates", int(get("gradient_accumulation_steps")) > 1))
    return tuple(out)


def measured_peaks(cfg: RunConfig) -> list[dict[str, Any]]:
    """Peaks measured by earlier runs whose config matches ``cfg`` in every memory key.

    Scans the summary.json of every run folder (``engine.runs.run_folders``: the runs
    directory's, and those trained into an output_dir of their own). Unreadable or foreign files are
    skipped (a run folder being written, or a file from another tool, must not break the
    estimate).

    Returns:
        Newest first: ``{"run_dir", "status", "finished", "gpu_name",
        "peak_gpu_allocated_bytes", "peak_gpu_reserved_bytes", "peak_gpu_device_bytes",
        "longest_record"}``. The dataset is not a memory key, but its longest record sets the
        longest batch (engine/data/lengths.py): ``longest_record`` (tokens, from the run's
        dataset.json; None when unknown) tells a measurement on shorter data apart.
    """
    from engine.runs import run_folders

    want = estimate_signature(cfg.to_dict())
    found = []
    for summary in (folder / "summary.json" for folder in run_folders()):
        try:
            data = json.loads(summary.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
            continue
        try:
            if estimate_signature(data["config"]) != want:
                continue
        except (TypeError, KeyError):
            continue
        peaks = {k: data.get(k) for k in ("peak_gpu_allocated_bytes", "peak_gpu_reserved_bytes",
                                          "peak_gpu_device_bytes")}
        if not any(isinstance(v, int) and v > 0 for v in peaks.values()):
            continue
        found.append({"run_dir": str(summary.parent), "status": data.get("status"),
                      "finished": data.get("finished"), "gpu_name": data.get("gpu_name"), **peaks,
                      "longest_record": _longest_record(summary.parent)})
    found.sort(key=lambda r: str(r.get("finished") or ""), reverse=True)
    return found


def _longest_record(run_dir: Path) -> int | None:
    """The run's longest training record in tokens (its dataset.json), or None."""
    try:
        value = json.loads((run_dir / "dataset.json").read_text(encoding="utf-8")).get("longest")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _model_id(model: str) -> str:
    # A local folder compares by its real path; 'demo' and cache ids compare as written.
    path = Path(os.path.expanduser(model))
    return str(path.resolve()) if model != "demo" and path.is_dir() else model
