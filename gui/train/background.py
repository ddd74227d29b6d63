"""Run small blocking jobs (imports, file scans, estimates) off the UI thread.

Results come back as a queued Qt signal, so slots run on the GUI thread. A ``QRunnable``
can't emit signals itself, so each job reports through this QObject, which lives on the
GUI thread (see ../../shared/notes/engineering.md, "Qt specifics").
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal


class _Job(QRunnable):
    def __init__(self, owner: BackgroundCalls, tag: str, fn: Callable[[], Any]):
        super().__init__()
        self.owner, self.tag, self.fn = owner, tag, fn

    def run(self) -> None:
        try:
            result = self.fn()
        except Exception as e:  # noqa: BLE001 - reported to the GUI, never raised in a pool thread
            self._report(self.owner.sig_failed, self.tag, f"{type(e).__name__}: {e}", traceback.format_exc())
            return
        self._report(self.owner.sig_done, self.tag, result)

    @staticmethod
    def _report(signal, *args) -> None:
        try:
            signal.emit(*args)
        except RuntimeError:
            pass  # the owner was deleted while the job ran (the window closed): nobody to tell


class BackgroundCalls(QObject):
    """A private thread pool whose jobs report ``(tag, result)`` on the GUI thread."""

    sig_done = Signal(str, object)
    """A job finished: its tag and its return value."""
    sig_failed = Signal(str, str, str)
    """A job raised: its tag, a one-line message and the traceback."""

    def __init__(self, parent: QObject | None = None, max_threads: int = 2):
        super().__init__(parent)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(max_threads)

    # ---- Public API
    def submit(self, tag: str, fn: Callable[[], Any]) -> None:
        """Run ``fn()`` in the pool; ``sig_done``/``sig_failed`` carry ``tag`` back."""
        self.pool.start(_Job(self, tag, fn))

    def wait(self, msecs: int = 30_000) -> bool:
        """Block until every job is done (tests, screenshots and shutdown only)."""
        return self.pool.waitForDone(msecs)
