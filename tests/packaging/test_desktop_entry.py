"""The .desktop entry follows the freedesktop Desktop Entry spec (the keys a start menu needs)."""

from __future__ import annotations

import re
from pathlib import Path

PACKAGING = Path(__file__).resolve().parents[2] / "packaging"
DESKTOP = PACKAGING / "finetune-studio.desktop"
# Keys of the Desktop Entry Specification 1.5 that this entry may use.
KNOWN_KEYS = {"Type", "Version", "Name", "GenericName", "NoDisplay", "Comment", "Icon", "Hidden",
              "OnlyShowIn", "NotShowIn", "DBusActivatable", "TryExec", "Exec", "Path", "Terminal",
              "Actions", "MimeType", "Categories", "Implements", "Keywords", "StartupNotify",
              "StartupWMClass", "URL", "PrefersNonDefaultGPU", "SingleMainWindow"}
MAIN_CATEGORIES = {"AudioVideo", "Audio", "Video", "Development", "Education", "Game", "Graphics",
                   "Network", "Office", "Science", "Settings", "System", "Utility"}


def parse(text: str) -> dict[str, str]:
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    assert lines[0] == "[Desktop Entry]", "the first group must be [Desktop Entry]"
    entry: dict[str, str] = {}
    for line in lines[1:]:
        assert not line.startswith("["), f"unexpected group {line}"
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {line!r}"
        assert key not in entry, f"duplicate key {key}"
        entry[key] = value
    return entry


def test_required_keys_and_values():
    entry = parse(DESKTOP.read_text(encoding="utf-8"))
    assert set(entry) <= KNOWN_KEYS, set(entry) - KNOWN_KEYS
    assert entry["Type"] == "Application"
    assert entry["Name"] == "Finetune Studio"
    assert entry["Exec"] == "@EXEC@" and entry["Icon"] == "@ICON@"  # install.sh fills both in
    assert entry["Terminal"] == "false" and entry["StartupNotify"] in ("true", "false")
    for key in ("Categories", "Keywords"):
        assert entry[key].endswith(";"), f"{key} is a list and must end with ';'"
    assert MAIN_CATEGORIES & set(entry["Categories"].split(";"))
    # X11 docks group the window under this entry by WM_CLASS, whose class Qt's xcb plugin takes from the
    # application name (its instance is argv[0]: '__main__.py' under python -m, so it can't be that).
    app_py = (PACKAGING.parent / "gui" / "app.py").read_text(encoding="utf-8")
    assert f'app.setApplicationName("{entry["StartupWMClass"]}")' in app_py


def test_install_fills_in_every_placeholder():
    """install.sh's sed must replace every @PLACEHOLDER@ the template has."""
    placeholders = set(re.findall(r"@(\w+)@", DESKTOP.read_text()))
    install = (PACKAGING / "install.sh").read_text()
    assert placeholders and all(f"s|@{p}@|" in install for p in placeholders)


def test_filled_entry_is_valid(tmp_path: Path):
    launcher = tmp_path / "my bin" / "finetune-studio"
    text = DESKTOP.read_text().replace("@EXEC@", f'"{launcher}"').replace("@ICON@", "/x/finetune-studio.svg")
    entry = parse(text)
    # Exec: a path with spaces must be one quoted argument (spec, "The Exec key")
    assert entry["Exec"] == f'"{launcher}"'
    assert Path(entry["Icon"]).is_absolute()
