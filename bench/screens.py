"""Shared set-up of the docs screenshot scripts: the main window, offscreen, on the demo."""

from __future__ import annotations

import os
import time
from typing import Any


def open_demo_window(area: str, size: tuple[int, int] = (1360, 860)) -> tuple[Any, Any]:
    """``(app, window)`` with ``area`` shown, offscreen unless ``QT_QPA_PLATFORM`` says otherwise."""
    from gui.app import offscreen_platform

    os.environ.setdefault("QT_QPA_PLATFORM", offscreen_platform())
    from gui.app import make_app
    from gui.main_window import MainWindow

    app = make_app()
    win = MainWindow(load_demo=True, restore_geometry=False)
    win.resize(*size)
    win.show_area(area)
    win.show()
    return app, win


def spin(seconds: float) -> None:
    """Let Qt run for ``seconds``."""
    from PySide6.QtCore import QCoreApplication

    end = time.time() + seconds
    while time.time() < end:
        QCoreApplication.processEvents()
        time.sleep(0.02)
