#!/usr/bin/env python3
"""Pick the torch build (CPU, CUDA 12.x, CUDA 13.x) that will run on this machine's NVIDIA driver.

Runs with any Python >= 3.8 and the standard library only, because the installers call it
before the application's environment exists (``install.sh`` with the system ``python3``, the
Windows bootstrap with the Python that ``uv`` finds). Usage::

    python3 torch_variant.py              # prints the variant: cpu | cu126 | cu130
    python3 torch_variant.py --json       # variant, reason, warnings and what was detected
    python3 torch_variant.py --driver 575.57.08 --compute-cap 8.6   # decide for given facts

Sources for the thresholds (re-check them when the torch pin moves):

* Minimum driver per CUDA major, from NVIDIA's "CUDA Compatibility", minor version
  compatibility table (docs.nvidia.com/deploy/cuda-compatibility/minor-version-compatibility.html):
  CUDA 12.x needs a driver >= 525 (Linux 525.60.13 is the CUDA 12.0 GA driver), CUDA 13.x needs
  >= 580 (Linux 580.65.06 is the CUDA 13.0 GA driver). Newer drivers run older CUDA builds
  (backward compatibility), so a 580 driver also runs the CUDA 12.6 build.
* GPU architectures per torch build, from pytorch/pytorch#157517: the CUDA 12.6 build carries
  sm_50 ... sm_90 (Maxwell to Hopper, no Blackwell); CUDA 13.0 removed Maxwell, Pascal and Volta
  (CUDA 13.0 release notes, "Deprecated Architectures"), so the CUDA 13.0 build starts at sm_75
  (Turing) and adds Blackwell (sm_100, sm_120).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field

VARIANTS = ("cpu", "cu126", "cu130")

# (minimum driver on Linux, minimum driver on Windows) per CUDA major.
MIN_DRIVER = {
    "cu126": {"linux": "525.60.13", "windows": "528.33"},
    "cu130": {"linux": "580.65.06", "windows": "580.00"},
}
# Compute capabilities each CUDA build has kernels for, as (lowest, highest) inclusive.
ARCH_RANGE = {
    "cu126": ((5, 0), (9, 0)),
    "cu130": ((7, 5), (12, 1)),
}


@dataclass
class GpuFacts:
    """What the machine reported about its NVIDIA driver and GPUs."""

    driver: str | None = None
    gpus: list[dict] = field(default_factory=list)  # {"name", "compute_cap", "memory_mib"}
    source: str = "none"


@dataclass
class Choice:
    """The variant to install, why, and what the admin should know."""

    variant: str
    reason: str
    warnings: list[str] = field(default_factory=list)
    facts: GpuFacts | None = None


def parse_version(text: str) -> tuple[int, ...]:
    """Parse a driver or compute-capability string like ``'580.65.06'`` or ``'8.6'``.

    Raises:
        ValueError: the text holds no dotted number.
    """
    parts = []
    for piece in text.strip().split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    if not parts:
        raise ValueError(f"not a version number: {text!r}")
    return tuple(parts)


def _at_least(version: tuple[int, ...], minimum: tuple[int, ...]) -> bool:
    width = max(len(version), len(minimum))
    return version + (0,) * (width - len(version)) >= minimum + (0,) * (width - len(minimum))


def _fmt(version: tuple[int, ...]) -> str:
    return ".".join(str(p) for p in version)


def choose_variant(driver: str | None, compute_caps: list[str], os_name: str = "linux") -> Choice:
    """Decide which torch build runs on a driver and a set of GPUs.

    Args:
        driver: the NVIDIA driver version (``nvidia-smi``'s ``driver_version``), or None when
            there is no NVIDIA driver.
        compute_caps: one ``'major.minor'`` per GPU; empty when unknown (drivers older than
            ~510 cannot report it), in which case only the driver decides.
        os_name: ``'linux'`` or ``'windows'``; the minimum driver numbers differ.

    Returns:
        The chosen variant with a one-line reason and warnings for the admin. The CPU build is
        the answer whenever no CUDA build is sure to work, so the install still succeeds.
    """
    if os_name not in ("linux", "windows"):
        raise ValueError(f"os_name must be 'linux' or 'windows', got {os_name!r}")
    if not driver:
        return Choice("cpu", "no NVIDIA driver found")
    drv = parse_version(driver)
    caps = [parse_version(c)[:2] for c in compute_caps if c and c.strip() not in ("", "[N/A]")]

    def arch_ok(variant: str) -> bool:
        low, high = ARCH_RANGE[variant]
        return all(low <= cap <= high for cap in caps)

    def driver_ok(variant: str) -> bool:
        return _at_least(drv, parse_version(MIN_DRIVER[variant][os_name]))

    caps_text = ", ".join(_fmt(c) for c in caps) or "unknown"
    if driver_ok("cu130") and arch_ok("cu130"):
        return Choice("cu130", f"driver {driver} >= {MIN_DRIVER['cu130'][os_name]}, "
                               f"compute capability {caps_text} is in the CUDA 13.0 build")
    if driver_ok("cu126") and arch_ok("cu126"):
        warnings = []
        if not driver_ok("cu130"):
            warnings.append(f"driver {driver} is older than {MIN_DRIVER['cu130'][os_name]}: "
                            "installing the CUDA 12.6 build; a driver >= 580 allows the CUDA 13.0 build")
        return Choice("cu126", f"driver {driver} >= {MIN_DRIVER['cu126'][os_name]}, "
                               f"compute capability {caps_text} is in the CUDA 12.6 build", warnings)
    too_old = [c for c in caps if c < ARCH_RANGE["cu126"][0]]
    if too_old:
        reason = (f"GPU compute capability {caps_text} is below 5.0, which no current torch "
                  "CUDA build supports")
        advice = "training will run on the CPU"
    elif caps and not arch_ok("cu126") and not driver_ok("cu130"):
        reason = (f"GPU compute capability {caps_text} (Blackwell or newer) needs the CUDA 13.0 "
                  f"build, which needs driver >= {MIN_DRIVER['cu130'][os_name]}; found {driver}")
        advice = "update the NVIDIA driver to >= 580 and re-run the installer to train on the GPU"
    elif caps and not arch_ok("cu126") and not arch_ok("cu130"):
        reason = (f"the GPUs span compute capabilities {caps_text}, which no single torch CUDA "
                  "build covers")
        advice = "install with --variant cu126 or cu130 to use one group of GPUs"
    else:
        reason = (f"driver {driver} is older than {MIN_DRIVER['cu126'][os_name]}, the "
                  "minimum for CUDA 12.x")
        advice = "update the NVIDIA driver and re-run the installer to train on the GPU"
    return Choice("cpu", reason, [f"installing the CPU build: {reason}; {advice}"])


def query_gpus(run=subprocess.run) -> GpuFacts:
    """Ask ``nvidia-smi`` (or, on Linux, ``/proc/driver/nvidia/version``) about the driver and GPUs.

    Args:
        run: ``subprocess.run`` or a stand-in with the same signature (tests).
    """
    smi = shutil.which("nvidia-smi") or _windows_smi()
    if smi:
        for fields in ("name,driver_version,compute_cap,memory.total", "name,driver_version"):
            try:
                proc = run([smi, f"--query-gpu={fields}", "--format=csv,noheader,nounits"],
                           capture_output=True, text=True, timeout=30)
            except (OSError, subprocess.SubprocessError):
                break
            if proc.returncode != 0:
                continue  # an old driver without compute_cap: retry with fewer fields
            facts = GpuFacts(source="nvidia-smi")
            for line in proc.stdout.splitlines():
                cols = [c.strip() for c in line.split(",")]
                if len(cols) < 2 or not cols[1]:
                    continue
                facts.driver = cols[1]
                gpu = {"name": cols[0], "compute_cap": cols[2] if len(cols) > 2 else "",
                       "memory_mib": int(cols[3]) if len(cols) > 3 and cols[3].isdigit() else None}
                facts.gpus.append(gpu)
            if facts.driver:
                return facts
    proc_version = "/proc/driver/nvidia/version"
    if os.path.exists(proc_version):
        with open(proc_version, encoding="utf-8", errors="replace") as fh:
            text = fh.read()
        # "NVRM version: NVIDIA UNIX x86_64 Kernel Module  580.65.06  Sun Jul 27 ..."
        for token in text.split():
            if token.count(".") >= 1 and token.replace(".", "").isdigit() and len(token) >= 6:
                return GpuFacts(driver=token, source=proc_version)
    return GpuFacts()


def _windows_smi() -> str | None:
    if os.name != "nt":
        return None
    root = os.environ.get("SystemRoot", r"C:\Windows")
    candidate = os.path.join(root, "System32", "nvidia-smi.exe")
    return candidate if os.path.exists(candidate) else None


def detect(os_name: str | None = None, run=subprocess.run) -> Choice:
    """Query this machine and choose its variant."""
    os_name = os_name or ("windows" if os.name == "nt" else "linux")
    facts = query_gpus(run)
    choice = choose_variant(facts.driver, [g.get("compute_cap", "") for g in facts.gpus], os_name)
    choice.facts = facts
    return choice


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print the decision as JSON")
    parser.add_argument("--os", choices=("linux", "windows"), help="default: this machine's")
    parser.add_argument("--driver", help="decide for this driver version instead of detecting")
    parser.add_argument("--compute-cap", action="append", default=[],
                        help="a GPU's compute capability, e.g. 8.6 (repeat per GPU; with --driver)")
    args = parser.parse_args(argv)
    os_name = args.os or ("windows" if os.name == "nt" else "linux")
    if args.driver is not None:
        choice = choose_variant(args.driver or None, args.compute_cap, os_name)
        choice.facts = GpuFacts(driver=args.driver or None, source="command line",
                                gpus=[{"compute_cap": c} for c in args.compute_cap])
    else:
        choice = detect(os_name)
    if args.json:
        print(json.dumps(asdict(choice), indent=2))
    else:
        print(choice.variant)
        for warning in choice.warnings:
            print(f"warning: {warning}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
