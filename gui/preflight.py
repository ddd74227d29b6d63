"""Check that Qt can start here, and say which system package is missing if not.

Qt's own message for a missing xcb library ("could not load the Qt platform plugin
'xcb'... no Qt platform plugin could be initialized") names neither the library nor the
package. We look first and name both (Debian/Ubuntu names; see
../shared/notes/engineering.md, "Debian 12 packages for PySide6").
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from engine.selfcheck import debian_package_for as package_for  # one soname -> package table


def missing_message(libs: list[str], what: str) -> str:
    pkgs = sorted({p for p in (package_for(lib) for lib in libs) if p})
    text = f"Finetune Studio can't start {what}: missing system libraries: {', '.join(libs)}."
    if pkgs:
        text += f"\nInstall them with:\n    sudo apt-get install {' '.join(pkgs)}"
    return text


def check_import() -> str | None:
    """Import QtWidgets; on a missing shared library return a message naming the package."""
    try:
        import PySide6.QtWidgets  # noqa: F401
    except ImportError as e:
        m = re.search(r"(lib[\w.+-]+\.so[\w.]*)", str(e))
        if m:
            return missing_message([m.group(1)], "Qt")
        return f"Finetune Studio can't import Qt (PySide6): {e}"
    return None


def xcb_missing_libs() -> list[str]:
    """Libraries the Qt xcb platform plugin needs but can't find (via ldd)."""
    import PySide6

    plugin = Path(PySide6.__file__).parent / "Qt" / "plugins" / "platforms" / "libqxcb.so"
    if not plugin.exists() or not shutil.which("ldd"):
        return []
    out = subprocess.run(["ldd", str(plugin)], capture_output=True, text=True).stdout
    return list(dict.fromkeys(line.split()[0] for line in out.splitlines() if "not found" in line))


def check_display() -> str | None:
    """On Linux with a real display (xcb), check the plugin's libraries before Qt aborts."""
    if not sys.platform.startswith("linux"):
        return None
    platform = os.environ.get("QT_QPA_PLATFORM", "").split(":")[0]
    if platform in ("offscreen", "minimal", "wayland") or platform.startswith("wayland"):
        return None
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        return ("Finetune Studio found no display (DISPLAY is not set).\n"
                "Run it on a desktop session, under `xvfb-run`, or render offscreen with "
                "QT_QPA_PLATFORM=offscreen (e.g. `finetune-studio --screenshot main.png`).")
    if os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        missing = xcb_missing_libs()
        if missing:
            return missing_message(missing, "its window (Qt xcb platform)")
    return None


def preflight() -> str | None:
    return check_import() or check_display()
