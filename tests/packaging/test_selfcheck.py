"""`finetune-studio --self-check`: the report logic, without running the slow checks."""

from __future__ import annotations

import json
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import pytest

from engine import selfcheck as sc


@pytest.mark.parametrize(
    ("soname", "package"),
    [
        ("libxcb-icccm.so.4", "libxcb-icccm4"),
        ("libxcb-keysyms.so.1", "libxcb-keysyms1"),
        ("libxcb-cursor.so.0", "libxcb-cursor0"),
        ("libxkbcommon-x11.so.0", "libxkbcommon-x11-0"),
        ("libxkbcommon.so.0", "libxkbcommon0"),
        ("libEGL.so.1", "libegl1"),
        ("libglib-2.0.so.0", "libglib2.0-0"),
        ("libxcb-render-util.so.0", "libxcb-render-util0"),
        ("libxcb-present.so.0", "libxcb-present0"),  # not in the table: Debian's naming rule
        ("libfoo.so.3", None),
    ],
)
def test_debian_package_for(soname, package):
    assert sc.debian_package_for(soname) == package


def test_missing_libraries_hint():
    hint = sc.missing_libraries_hint(["libxcb-icccm.so.4", "libxcb-keysyms.so.1", "libfoo.so.3"])
    assert "sudo apt-get install libxcb-icccm4 libxcb-keysyms1" in hint
    assert "libfoo.so.3" in hint and "apt-file" in hint


LDD = """\tlinux-vdso.so.1 (0x00007ffd)
\tlibxcb-icccm.so.4 => not found
\tlibQt6XcbQpa.so.6 => /venv/PySide6/Qt/lib/libQt6XcbQpa.so.6 (0x00007f)
\tlibxcb-keysyms.so.1 => not found
\tlibxcb-icccm.so.4 => not found
"""


def test_ldd_missing_lists_each_library_once():
    def run(cmd, **kw):
        return subprocess.CompletedProcess(cmd, 0, LDD, "")

    assert sc.ldd_missing(Path("/x/libqxcb.so"), run) == ["libxcb-icccm.so.4", "libxcb-keysyms.so.1"]


def test_check_xcb_fails_naming_library_and_package(monkeypatch, tmp_path):
    plugin = tmp_path / "libqxcb.so"
    plugin.write_bytes(b"")
    monkeypatch.setattr(sc.sys, "platform", "linux")
    monkeypatch.setenv("DISPLAY", ":99")
    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb")
    monkeypatch.setattr(sc, "xcb_plugin_path", lambda: plugin)
    monkeypatch.setattr(sc.shutil, "which", lambda name: "/usr/bin/ldd")
    monkeypatch.setattr(sc, "ldd_missing", lambda lib: ["libxcb-cursor.so.0"])
    check = sc.check_xcb()
    assert check.status == sc.FAIL
    assert "libxcb-cursor.so.0" in check.detail and "apt-get install libxcb-cursor0" in check.detail


def test_check_xcb_skips_offscreen(monkeypatch):
    monkeypatch.setenv("DISPLAY", ":99")
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    assert sc.check_xcb().status == sc.SKIP


def test_uses_real_display():
    linux = sys.platform.startswith("linux")
    assert sc.uses_real_display({"DISPLAY": ":0"}) is linux
    assert sc.uses_real_display({"DISPLAY": ":0", "QT_QPA_PLATFORM": "xcb"}) is linux
    assert not sc.uses_real_display({"DISPLAY": ":0", "QT_QPA_PLATFORM": "offscreen"})
    assert not sc.uses_real_display({})


def test_png_size(tmp_path):
    png = tmp_path / "x.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + (640).to_bytes(4, "big")
                    + (480).to_bytes(4, "big") + b"\x08\x06\x00\x00\x00")
    assert sc.png_size(png) == (640, 480)
    png.write_bytes(b"GIF89a")
    assert sc.png_size(png) is None
    assert sc.png_size(tmp_path / "missing.png") is None


CPU = {"version": "2.13.0+cpu", "cuda_build": None, "cuda_available": False, "devices": []}
CUDA_BROKEN = {"version": "2.13.0", "cuda_build": "13.0", "cuda_available": False, "devices": [],
               "cuda_error": "RuntimeError: The NVIDIA driver on your system is too old"}
CUDA_OK = {"version": "2.13.0", "cuda_build": "13.0", "cuda_available": True,
           "devices": [{"name": "NVIDIA H100", "memory_bytes": 80 * 2**30, "capability": "9.0"}]}


def test_check_torch():
    assert sc.check_torch(CPU, []).status == sc.OK
    warn = sc.check_torch(CPU, ["NVIDIA RTX A4000, 550.54"])
    assert warn.status == sc.WARN and "Re-run the installer without --variant" in warn.detail
    fail = sc.check_torch(CUDA_BROKEN, ["NVIDIA RTX A4000, 550.54"])
    # An installed machine has the package's README.md, not the repository's packaging/ folder.
    assert "packaging/README.md" not in fail.detail and "'Which torch build'" in fail.detail
    assert fail.status == sc.FAIL and "too old" in fail.detail
    ok = sc.check_torch(CUDA_OK, ["NVIDIA H100, 580.65.06"])
    assert ok.status == sc.OK and "NVIDIA H100, 80.0 GiB, sm_90" in ok.detail
    assert sc.check_torch(None, []).status == sc.FAIL


def test_check_imports_reports_the_failing_module_and_package():
    modules = [{"module": "torch", "ok": True, "version": "2.13.0"},
               {"module": "PySide6", "ok": False,
                "error": "ImportError: libEGL.so.1: cannot open shared object file"}]
    check = sc.check_imports(modules, "")
    assert check.status == sc.FAIL
    assert "PySide6: ImportError: libEGL.so.1" in check.detail and "apt-get install libegl1" in check.detail
    assert "not reached: transformers" in check.detail


def test_check_bitsandbytes():
    imported = [{"module": "bitsandbytes", "ok": True}]
    assert sc.check_bitsandbytes({"device": "cuda", "nf4_relative_error": 0.09}, imported).status == sc.OK
    assert sc.check_bitsandbytes({"device": "cuda", "nf4_relative_error": 0.9}, imported).status == sc.FAIL
    assert sc.check_bitsandbytes({"error": "RuntimeError: no kernel"}, imported).status == sc.FAIL
    assert sc.check_bitsandbytes(None, [{"module": "bitsandbytes", "ok": False}]).status == sc.FAIL


def test_probe_names_the_module_that_crashed(monkeypatch):
    """A native crash mid-import (here: os._exit in a fake module) is pinned on that module."""
    monkeypatch.setattr(sc, "STACK", ("json", "ftpkg_crashes_on_import"))
    monkeypatch.setattr(sc, "_PROBE", sc._PROBE.replace(
        "mod = importlib.import_module(name)",
        "mod = importlib.import_module(name) if name == 'json' else os._exit(139)").replace(
        "import importlib, json, sys, time", "import importlib, json, os, sys, time"))
    modules, facts, bnb, error = sc.run_probe(timeout=60)
    assert modules[0]["ok"] and modules[-1]["module"] == "ftpkg_crashes_on_import"
    assert "exited with 139 while importing ftpkg_crashes_on_import" in error
    assert sc.check_imports(modules, error).status == sc.FAIL


def test_install_info_is_read_from_the_venv(monkeypatch, tmp_path):
    (tmp_path / sc.INSTALL_INFO).write_text(
        "# written by install.sh\nVERSION=0.1.0\nVARIANT=cu130\n"
        "VARIANT_REASON=driver\\ 580.65.06\\ \\>=\\ 580.65.06\nINSTALLED=2026-11-28T05:06:35Z\n")
    monkeypatch.setattr(sc.sys, "prefix", str(tmp_path))
    check = sc.check_install()
    assert check.data["variant"] == "cu130"
    assert "as the cu130 build (driver 580.65.06 >= 580.65.06)" in check.detail


def test_report_table_json_and_exit_code(monkeypatch, capsys):
    def fake_self_check(on_check=None):
        report = sc.Report("0.1.0", "3.11", "/venv")
        for check in (sc.Check("imports", sc.OK, "torch 2.13.0"),
                      sc.Check("xcb", sc.FAIL, "missing libxcb-cursor.so.0\nline two"),
                      sc.Check("torch", sc.WARN, "CPU build")):
            report.checks.append(check)
            if on_check:
                on_check(check)
        return report

    monkeypatch.setattr(sc, "self_check", fake_self_check)
    assert sc.run_self_check(Namespace(json=False)) == 1
    out = capsys.readouterr().out
    assert "xcb           FAIL   missing libxcb-cursor.so.0\n" in out
    assert "\n                     line two" in out
    assert "self-check FAILED: xcb (warnings: torch)" in out
    assert sc.run_self_check(Namespace(json=True)) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is False and [c["status"] for c in data["checks"]] == ["ok", "fail", "warn"]


def test_engine_selfcheck_does_not_import_qt():
    code = "import sys, engine.selfcheck; sys.exit('PySide6' in sys.modules or 'gui' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
