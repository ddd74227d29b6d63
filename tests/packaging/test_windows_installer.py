"""The Inno Setup script and the PowerShell bootstrap (compiled and run only on Windows)."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

PACKAGING = Path(__file__).resolve().parents[2] / "packaging"
_spec = importlib.util.spec_from_file_location("ftpkg_check_iss", PACKAGING / "check_iss.py")
check_iss = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = check_iss
_spec.loader.exec_module(check_iss)
ISS = PACKAGING / "windows" / "finetune-studio.iss"
BOOTSTRAP = PACKAGING / "windows" / "bootstrap.ps1"


def test_iss_references_files_that_exist():
    assert check_iss.check_repo() == []


def test_iss_sources_are_parsed():
    sources = check_iss.referenced_sources(ISS.read_text())
    assert {"bootstrap.ps1", "uv.exe", "finetune-studio.ico", "locks/windows-*.txt"} <= set(sources)


def test_staged_check_reports_missing_files(tmp_path: Path):
    iss = tmp_path / "finetune-studio.iss"
    iss.write_text(ISS.read_text())
    (tmp_path / "bootstrap.ps1").write_text("")
    problems = check_iss.check_staged(iss)
    assert any("'uv.exe'" in p for p in problems)
    assert not any("'bootstrap.ps1'" in p for p in problems)


def test_iss_essentials():
    text = ISS.read_text()
    setup = dict(line.split("=", 1) for line in check_iss.sections(text)["Setup"])
    assert re.fullmatch(r"\{\{[0-9A-F-]{36}\}", setup["AppId"])  # a fixed AppId: upgrades replace
    assert setup["PrivilegesRequiredOverridesAllowed"] == "dialog commandline"
    assert "x64" in setup["ArchitecturesAllowed"]
    # the environment bootstrap.ps1 builds is removed on uninstall, user data is not
    deleted = [check_iss.entry_fields(line)["Name"] for line in check_iss.sections(text)["UninstallDelete"]]
    assert "{app}\\venv" in deleted and not any("localappdata" in d.lower() for d in deleted)
    shortcuts = [check_iss.entry_fields(line) for line in check_iss.sections(text)["Icons"]]
    assert any(s["Filename"] == "{app}\\venv\\Scripts\\pythonw.exe" and s["Parameters"] == "-m gui"
               for s in shortcuts)


def test_bootstrap_structure():
    """No PowerShell here, so check what a parser would: balanced brackets outside strings, the
    switch between envs only after the import check, and PS 5.1 compatible syntax."""
    text = BOOTSTRAP.read_text()
    code = re.sub(r"<#.*?#>", "", text, flags=re.S)
    code = re.sub(r"(?m)^\s*#.*$", "", code)
    code = re.sub(r"'[^']*'|\"(?:[^\"`]|`.)*\"", "''", code)
    for open_, close in ("{}", "()", "[]"):
        assert code.count(open_) == code.count(close), f"unbalanced {open_}{close}"
    assert "??" not in code and " && " not in code  # PowerShell 7 only; Windows ships 5.1
    assert text.index("PySide6.QtWidgets") < text.index("Rename-Item -Path $new")
    assert "--require-hashes" in text and "--offline" in text and "--no-index" in text
    assert "finetune-studio-install.env" in text  # read by the self-check


def test_windows_and_linux_installers_agree():
    install = (PACKAGING / "install.sh").read_text()
    bootstrap = BOOTSTRAP.read_text()
    for needle in ("finetune-studio-install.env", "torch_variant.py", "unsafe-best-match", "pip check"):
        assert needle in install and needle in bootstrap.replace("'pip', 'check'", "pip check")
