"""Runs the engine's lint without stalling the editor: small files on a thread, big ones in a
child process (see :mod:`gui.dataset.lint_child` for why), one job at a time, latest wins.

The job sees a snapshot of the record list. The editor swaps record objects rather than
mutating them, so a snapshot stays consistent while the annotator keeps editing, and the
findings (by index in the snapshot) can be tied back to record objects.
"""

from __future__ import annotations

import copy
import multiprocessing
import threading
import time

from PySide6.QtCore import QObject, QThread, Signal, Slot

from engine.data.records import DatasetFile
from gui.dataset import lint_child

# Records; lint costs ~0.12 ms of CPU per record (docs/dataset-bench.md), so up to ~0.6 s on a
# thread, while a child process costs ~1 s just to start.
IN_PROCESS_MAX = 5000


class _ThreadJob(QObject):
    sig_done = Signal(int, object, object)
    """(token, report or None, error message or None)."""

    @Slot(int, object, object, int)
    def run(self, token: int, ds: DatasetFile, tokens, seq_len: int) -> None:
        # The module, not engine.data.lint: once imported, the submodule shadows that name.
        from engine.data.lint import lint

        try:
            if tokens is not None:  # exact lengths: linted in the tokenizer's process
                service, request = tokens
                report = service.call({**request, "ds": ds, "seq_len": seq_len or None})
            else:
                report = lint(ds, seq_len=seq_len or None)
        except Exception as e:  # noqa: BLE001 - a lint bug must not take the editor down
            self.sig_done.emit(token, None, f"{type(e).__name__}: {e}")
            return
        self.sig_done.emit(token, report, None)


class LintRunner(QObject):
    """Lints snapshots of a dataset in the background and reports the newest result."""

    sig_finished = Signal(object, object, float)
    """(report, the record list it was computed on, seconds taken)."""

    sig_failed = Signal(str)
    """Lint failed (the message)."""

    sig_started = Signal(bool)
    """A job started (True when it runs in a child process)."""

    _sig_thread_request = Signal(int, object, object, int)
    _sig_process_done = Signal(int, object, object)

    # ---- Public API
    def __init__(self, parent=None):
        super().__init__(parent)
        self._thread = QThread()
        self._thread.setObjectName("dataset-lint")
        self._job = _ThreadJob()
        self._job.moveToThread(self._thread)
        self._sig_thread_request.connect(self._job.run)
        self._job.sig_done.connect(self._on_done)
        self._sig_process_done.connect(self._on_done)
        self._thread.start()
        self._token = 0
        self._running: tuple | None = None  # (token, records, started)
        self._pending: tuple | None = None
        self._process = None
        self.in_process_max = IN_PROCESS_MAX

    def request(self, ds: DatasetFile, *, baseline: tuple = (), signature=None, tokens=None,
                seq_len: int | None = None) -> None:
        """Lint the records of ``ds`` as they are now.

        Args:
            ds: The dataset.
            baseline: The records as the file on disk holds them (big files are re-read from disk
                by the child, and only the differences sent).
            signature: ``(size, mtime_ns)`` of the file when ``baseline`` was read.
            tokens: ``(TokenService, request)`` for exact token lengths (small files): the lint runs
                in the tokenizer's process (``request`` names the tokenizer, the run config's
                ``add_tokens`` and ``template``; see :meth:`PreviewPane.lint_request`).
            seq_len: Count records longer than this.
        """
        snap = copy.copy(ds)
        snap.records = list(ds.records)
        self._pending = (snap, baseline, signature, tokens, seq_len or 0)
        if self._running is None:
            self._start_pending()
        elif self._process is not None:
            self._kill_process()  # its result would be stale anyway

    def busy(self) -> bool:
        return self._running is not None

    def stop(self) -> None:
        self._pending = None
        self._kill_process()
        self._thread.quit()
        self._thread.wait()

    # ---- Internals
    def _start_pending(self) -> None:
        snap, baseline, signature, tokens, seq_len = self._pending
        self._pending = None
        self._token += 1
        token = self._token
        self._running = (token, snap.records, time.perf_counter())
        big = len(snap.records) > self.in_process_max
        self.sig_started.emit(big)
        if not big:
            self._sig_thread_request.emit(token, snap, tokens, seq_len)
            return
        job = {"source": str(snap.path) if snap.path else None, "signature": signature,
               "format": snap.format, "container": snap.container,
               "entries": lint_child.encode_records(snap.records, baseline if signature else ()),
               "seq_len": seq_len}
        ctx = multiprocessing.get_context("spawn")
        recv, send = ctx.Pipe(duplex=False)
        job_recv, job_send = ctx.Pipe(duplex=False)
        # The job goes through a pipe from the waiting thread, not as the process's argument: an
        # argument is written to the child's bootstrap pipe by start(), which blocks until the new
        # interpreter reads it, ~1 s on this GUI thread for a 100k-record job (measured, a stall
        # on every open and re-check of a big file).
        proc = ctx.Process(target=lint_child.main, args=(send, job_recv), name="dataset-lint", daemon=True)
        proc.start()
        send.close()
        job_recv.close()
        self._process = proc
        threading.Thread(target=self._wait_process, args=(token, proc, recv, job_send, job), daemon=True,
                         name="dataset-lint-wait").start()

    def _wait_process(self, token: int, proc, recv, job_send, job) -> None:
        try:
            job_send.send(job)
            job_send.close()
            report, error = recv.recv()
        except (EOFError, OSError):  # a broken pipe too: the child was cancelled or died
            report, error = None, "the lint process ended without a result"
        finally:
            job_send.close()
            recv.close()
        proc.join()
        if proc.exitcode not in (0, None) and report is None and proc.exitcode < 0:
            error = "cancelled"
        self._sig_process_done.emit(token, report, error)

    def _kill_process(self) -> None:
        proc, self._process = self._process, None
        if proc is not None and proc.is_alive():
            proc.terminate()

    def _on_done(self, token: int, report, error) -> None:
        running = self._running
        if running is None or running[0] != token:
            return
        self._running = None
        self._process = None
        if self._pending is not None:
            self._start_pending()  # newer records: this result is already stale
            return
        if error is not None:
            self.sig_failed.emit(error)
        else:
            self.sig_finished.emit(report, running[1], time.perf_counter() - running[2])
