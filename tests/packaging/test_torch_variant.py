"""The NVIDIA driver -> torch build decision (packaging/torch_variant.py)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGING = Path(__file__).resolve().parents[2] / "packaging"
_spec = importlib.util.spec_from_file_location("ftpkg_torch_variant", PACKAGING / "torch_variant.py")
tv = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = tv
_spec.loader.exec_module(tv)


@pytest.mark.parametrize(
    ("driver", "caps", "os_name", "variant"),
    [
        (None, [], "linux", "cpu"),                       # no NVIDIA driver
        ("470.256.02", ["8.6"], "linux", "cpu"),          # CUDA 11 driver
        ("525.60.12", ["8.6"], "linux", "cpu"),           # just below the CUDA 12.x minimum
        ("525.60.13", ["8.6"], "linux", "cu126"),         # the CUDA 12.0 GA driver
        ("570.172.08", ["9.0"], "linux", "cu126"),        # H100 on a 570 driver
        ("580.65.05", ["8.9"], "linux", "cu126"),         # just below CUDA 13.0's minimum
        ("580.65.06", ["8.9"], "linux", "cu130"),         # the CUDA 13.0 GA driver
        ("590.10", ["12.0"], "linux", "cu130"),           # Blackwell needs the CUDA 13 build
        ("575.57.08", ["12.0"], "linux", "cpu"),          # ... which this driver cannot run
        ("580.65.06", ["6.1"], "linux", "cu126"),         # Pascal: CUDA 13 dropped sm_61
        ("580.65.06", ["7.0"], "linux", "cu126"),         # Volta too
        ("580.65.06", ["7.5"], "linux", "cu130"),         # Turing is still in CUDA 13
        ("580.65.06", ["6.1", "8.6"], "linux", "cu126"),  # one old GPU pulls the build down
        ("580.65.06", ["6.1", "12.0"], "linux", "cpu"),   # no single build covers both
        ("580.65.06", ["3.7"], "linux", "cpu"),           # Kepler: no current build
        ("580.65.06", [], "linux", "cu130"),              # compute capability unknown: driver decides
        ("550.54", [], "linux", "cu126"),
        ("528.24", ["8.6"], "windows", "cpu"),            # Windows numbering differs
        ("528.33", ["8.6"], "windows", "cu126"),
        ("581.57", ["8.6"], "windows", "cu130"),
    ],
)
def test_choose_variant(driver, caps, os_name, variant):
    assert tv.choose_variant(driver, caps, os_name).variant == variant


def test_cpu_fallbacks_say_why_and_what_to_do():
    choice = tv.choose_variant("575.57.08", ["12.0"], "linux")
    assert "580" in choice.reason and "Blackwell" in choice.reason
    assert any("update the NVIDIA driver" in w for w in choice.warnings)
    assert tv.choose_variant("580.65.06", ["3.7"]).warnings[0].endswith("training will run on the CPU")


def test_cu126_on_an_old_driver_recommends_580():
    assert any(">= 580" in w for w in tv.choose_variant("550.54", ["8.6"]).warnings)
    assert tv.choose_variant("580.65.06", ["6.1"]).warnings == []  # nothing to fix: the GPU is old


def test_variants_cover_the_lock_targets():
    lockcheck_targets = {"cpu", "cu126", "cu130"}
    assert set(tv.VARIANTS) == lockcheck_targets


def test_parse_version():
    assert tv.parse_version("580.65.06") == (580, 65, 6)
    assert tv.parse_version(" 8.6\n") == (8, 6)
    with pytest.raises(ValueError):
        tv.parse_version("[N/A]")


def _fake_smi(outputs):
    """A stand-in for subprocess.run answering each nvidia-smi query from ``outputs`` in turn."""
    calls = []

    def run(cmd, **kwargs):
        calls.append(cmd)
        rc, out = outputs[len(calls) - 1]
        return subprocess.CompletedProcess(cmd, rc, out, "")

    return run, calls


def test_query_gpus_parses_nvidia_smi(monkeypatch):
    monkeypatch.setattr(tv.shutil, "which", lambda name: "/usr/bin/nvidia-smi")
    run, calls = _fake_smi([(0, "NVIDIA H100 80GB HBM3, 580.65.06, 9.0, 81559\n"
                                "NVIDIA RTX A4000, 580.65.06, 8.6, 16376\n")])
    facts = tv.query_gpus(run)
    assert facts.driver == "580.65.06" and facts.source == "nvidia-smi"
    assert [g["compute_cap"] for g in facts.gpus] == ["9.0", "8.6"]
    assert facts.gpus[0]["memory_mib"] == 81559
    assert "--query-gpu=name,driver_version,compute_cap,memory.total" in calls[0]


def test_query_gpus_retries_without_compute_cap_on_old_drivers(monkeypatch):
    monkeypatch.setattr(tv.shutil, "which", lambda name: "/usr/bin/nvidia-smi")
    run, calls = _fake_smi([(6, "Field \"compute_cap\" is not a valid field to query.\n"),
                            (0, "Tesla T4, 470.256.02\n")])
    facts = tv.query_gpus(run)
    assert facts.driver == "470.256.02" and facts.gpus[0]["compute_cap"] == ""
    assert len(calls) == 2
    assert tv.choose_variant(facts.driver, [g["compute_cap"] for g in facts.gpus]).variant == "cpu"


def test_query_gpus_without_nvidia_smi(monkeypatch):
    monkeypatch.setattr(tv.shutil, "which", lambda name: None)
    monkeypatch.setattr(tv.os.path, "exists", lambda path: False)
    assert tv.query_gpus().driver is None


def test_command_line_json():
    out = subprocess.run([sys.executable, str(PACKAGING / "torch_variant.py"), "--json",
                          "--driver", "550.54", "--compute-cap", "8.6"],
                         capture_output=True, text=True, check=True).stdout
    data = json.loads(out)
    assert data["variant"] == "cu126" and data["facts"]["driver"] == "550.54"
