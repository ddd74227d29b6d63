"""Start Qt: preflight checks, the application object, the main window, screenshots.

``python -m gui [--screenshot OUT.png --tab dataset|train|adapters|runs] [--color-scheme light|dark]``;
``finetune-studio`` with no command hands over to this.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from gui.preflight import preflight

AREAS = ("dataset", "train", "adapters", "runs")


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="finetune-studio (GUI)")
    p.add_argument("--screenshot", metavar="OUT.png")
    p.add_argument("--tab", choices=AREAS, default="dataset")
    p.add_argument("--size", default="1360x860", help="window size for --screenshot, WxH")
    p.add_argument("--open", metavar="FILE", type=Path, help="open this dataset file in the Dataset area")
    p.add_argument("--demo", action="store_true",
                   help="open the demo dataset and the demo preset, not the file and Train form of when the app "
                        "last closed")
    p.add_argument("--color-scheme", choices=("system", "light", "dark"),
                   help="light or dark colours for this start (and for --screenshot), instead of the Appearance "
                        "setting; system follows the desktop")
    return p.parse_args(argv)


def offscreen_platform(width: int = 1920, height: int = 1200) -> str:
    """The offscreen platform with a desktop-sized screen (Qt's default is 800x800, smaller
    than the window, which would clamp it)."""
    import json
    import tempfile

    cfg = {"screens": [{"name": "offscreen", "x": 0, "y": 0, "width": width, "height": height,
                        "logicalDpi": 96, "logicalBaseDpi": 96, "dpr": 1}]}
    path = Path(tempfile.gettempdir()) / f"finetune-studio-offscreen-{width}x{height}.json"
    if not path.exists():
        path.write_text(json.dumps(cfg))
    return f"offscreen:configfile={path}"


def make_app(argv: list[str] | None = None, color_scheme: str | None = None):
    """The application object; ``color_scheme`` ("system", "light" or "dark") overrides the
    Appearance setting for this start."""
    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication

    from gui.scheme import apply_color_scheme, saved_scheme

    app = QApplication.instance() or QApplication(argv or [sys.argv[0]])
    app.setApplicationName("Finetune Studio")
    app.setOrganizationName("finetune-studio")
    app.setApplicationDisplayName("Finetune Studio")
    app.setDesktopFileName("finetune-studio")
    icon = Path(__file__).parent / "resources" / "icon.svg"
    if icon.exists():
        app.setWindowIcon(QIcon(str(icon)))
    scheme = color_scheme or saved_scheme()
    if scheme != "system":  # "system" is what Qt does anyway; leave its palette untouched
        apply_color_scheme(scheme)
    return app


def screenshot(out: str, tab: str = "dataset", size: str = "1360x860", color_scheme: str | None = None) -> int:
    """Render the main window offscreen with the demo loaded and save a PNG."""
    from PySide6.QtCore import QCoreApplication

    from gui.main_window import MainWindow

    app = make_app(color_scheme=color_scheme)
    win = MainWindow(load_demo=True, restore_geometry=False)
    w, h = (int(x) for x in size.lower().split("x"))
    win.resize(w, h)
    win.show_area(tab)
    win.show()
    for _ in range(20):
        QCoreApplication.processEvents()
    win.prepare_screenshot(tab)
    for _ in range(20):
        QCoreApplication.processEvents()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    ok = win.grab().save(out)
    failed = dict(win.failed_areas)
    win.discard_for_screenshot()
    win.close()
    app.processEvents()
    if not ok or not Path(out).exists() or Path(out).stat().st_size == 0:
        print(f"could not write {out}", file=sys.stderr)
        return 1
    if failed:
        for key, error in failed.items():
            print(f"the {key} area failed to load: {error}", file=sys.stderr)
        return 1
    print(out)
    return 0


def main(argv: list[str] | None = None) -> int:
    from engine import stay_offline

    stay_offline()  # the window, and every worker it starts, never reaches for the network
    args = _parse(list(sys.argv[1:] if argv is None else argv))
    if args.screenshot and os.environ.get("QT_QPA_PLATFORM", "offscreen") == "offscreen":
        os.environ["QT_QPA_PLATFORM"] = offscreen_platform()
    problem = preflight()
    if problem:
        print(problem, file=sys.stderr)
        return 3
    if args.screenshot:
        return screenshot(args.screenshot, args.tab, args.size, args.color_scheme)
    from gui.main_window import MainWindow

    app = make_app(color_scheme=args.color_scheme)
    win = MainWindow(load_demo=True, reopen_last=not args.demo, open_path=args.open)
    win.show()
    win.after_show()
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
