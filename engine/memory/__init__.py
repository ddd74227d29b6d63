"""Peak GPU memory of a fine-tuning run, estimated from the run config and config.json alone.

Public surface (what the GUI, the CLI and the advisor use):

- :func:`estimate` -> :class:`Estimate` (peak, breakdown, fit verdict, max micro-batch,
  suggestions; ``to_dict()`` is the ``finetune-studio estimate --json`` contract);
- :func:`model_structure` -> exact parameter counts and shapes (meta device, cached);
- :func:`measured_peaks` and :func:`correction_factor`: learning from real runs;
- :func:`cli_estimate`: the ``estimate`` subcommand.

The model, its sources and its calibration are documented in ``docs/memory.md``.
"""

from engine.memory.cli import cli_estimate
from engine.memory.history import calibration_path, correction_factor, correction_factors, measured_peaks
from engine.memory.peak import (
    BREAKDOWN_KEYS,
    Estimate,
    GpuInfo,
    detect_gpu,
    estimate,
    max_batch_size,
    peak_breakdown,
    peak_bytes,
    step_phases,
    suggest,
    verdict,
)
from engine.memory.structure import ModelStructure, clear_cache, model_structure
from engine.memory.terms import MEASURED_LOOP, Assumptions, Setup

__all__ = [
    "BREAKDOWN_KEYS", "MEASURED_LOOP", "Assumptions", "Estimate", "GpuInfo", "ModelStructure", "Setup",
    "calibration_path", "clear_cache", "cli_estimate", "correction_factor", "correction_factors", "detect_gpu",
    "estimate", "max_batch_size", "measured_peaks", "model_structure", "peak_breakdown", "peak_bytes",
    "step_phases", "suggest", "verdict",
]
