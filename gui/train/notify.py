"""Desktop notifications for a finished or failed run.

A system-tray balloon where the platform has a tray; otherwise a status-bar message
plus ``QApplication.alert`` (the taskbar entry flashes or bounces), so a user who
looked away still learns that the run ended.
"""

from __future__ import annotations

from PySide6.QtWidgets import QApplication, QMainWindow, QSystemTrayIcon, QWidget

_tray: QSystemTrayIcon | None = None


def notify(widget: QWidget, title: str, message: str, *, ok: bool = True) -> str:
    """Tell the user; returns how ("tray" or "status") so callers and tests can check."""
    global _tray
    window = widget.window()
    if QSystemTrayIcon.isSystemTrayAvailable() and QSystemTrayIcon.supportsMessages():
        if _tray is None:
            _tray = QSystemTrayIcon(QApplication.windowIcon(), QApplication.instance())
            _tray.setToolTip("Finetune Studio")
        _tray.show()
        icon = QSystemTrayIcon.MessageIcon.Information if ok else QSystemTrayIcon.MessageIcon.Critical
        _tray.showMessage(title, message, icon, 10_000)
        how = "tray"
    else:
        how = "status"
    if isinstance(window, QMainWindow):
        window.statusBar().showMessage(f"{title}: {message}", 30_000)
    QApplication.alert(window, 0)
    return how
