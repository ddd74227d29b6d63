"""The Qt binding must not lose references to None: a long training session calls Qt
methods hundreds of thousands of times, and on CPython < 3.12 (where None is not
immortal) each lost reference brings the interpreter closer to aborting with
"Fatal Python error: none_dealloc". PySide6 6.12.0 has this bug (6.11.3 does not;
measured in docs/ui-stall.md); the bench saw a demo run lose ~12,000 references."""

from __future__ import annotations

import sys

from PySide6.QtWidgets import QProgressBar


def test_qt_calls_do_not_leak_references_to_none(qtbot):
    import PySide6

    bar = QProgressBar()
    qtbot.addWidget(bar)
    before = sys.getrefcount(None)
    for i in range(1000):
        bar.setValue(i % 100)
    lost = before - sys.getrefcount(None)
    assert lost < 10, (
        f"PySide6 {PySide6.__version__} on Python {sys.version.split()[0]} lost {lost} references to None "
        "in 1000 QProgressBar.setValue calls: a long GUI session will abort with 'deallocating None'. "
        "Use PySide6-Essentials 6.11.3 (or Python >= 3.12, where None is immortal).")
