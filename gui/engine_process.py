"""One way to run a ``finetune-studio`` command in a child process from the GUI.

Work that loads a model or copies gigabytes (merge, audit, promote) runs as the CLI in a
``QProcess``: the GUI process never holds a model, stays responsive, and the child's result
is exactly what the same command line gives.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QMimeData, QObject, QProcess, QProcessEnvironment, Qt
from PySide6.QtGui import QResizeEvent, QTextOption
from PySide6.QtWidgets import QAbstractButton, QFrame, QProgressBar, QSizePolicy, QTextEdit, QWidget

ROOT = str(Path(__file__).resolve().parents[1])


def engine_process(parent: QObject, *, merged: bool = True) -> QProcess:
    """A ``QProcess`` set up to run ``python -m engine ...`` (start it with :func:`start_engine`).

    Args:
        merged: read stderr with stdout (the CLI's error lines then come with its output).
    """
    proc = QProcess(parent)
    env = QProcessEnvironment.systemEnvironment()
    env.insert("PYTHONUNBUFFERED", "1")
    # The engine package must be importable by the child even when the app runs from a checkout.
    env.insert("PYTHONPATH", ROOT + (os.pathsep + env.value("PYTHONPATH") if env.contains("PYTHONPATH") else ""))
    proc.setProcessEnvironment(env)
    if merged:
        proc.setProcessChannelMode(QProcess.ProcessChannelMode.MergedChannels)
    return proc


def start_engine(proc: QProcess, args: list[str]) -> None:
    """Run ``finetune-studio ARGS`` (as ``python -m engine ARGS``) in ``proc``."""
    proc.start(sys.executable, ["-m", "engine", *args])


def run_engine(parent: QObject, args: list[str], on_done: Callable[[int, str], None]) -> QProcess:
    """Run ``finetune-studio ARGS`` and call ``on_done(exit code, its whole output)`` at the end."""
    proc = engine_process(parent)
    proc.finished.connect(lambda code, _status: on_done(
        code, bytes(proc.readAll().data()).decode("utf-8", errors="replace")))
    start_engine(proc, args)
    return proc


def cli_failure(output: str, command: str, code: int) -> str:
    """Why ``finetune-studio COMMAND`` failed, from its output: its own error line (the CLI
    prints ``finetune-studio COMMAND: message`` and an indented ``hint:``), else the last line."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    prefix = f"finetune-studio {command}: "
    errors = [ln.removeprefix(prefix) for ln in lines if ln.startswith(prefix)]
    hints = [ln for ln in lines if ln.startswith("hint:")]
    reason = errors[-1] if errors else (lines[-1] if lines else f"exit code {code}")
    return reason + (f" ({hints[-1]})" if errors and hints else "")


def json_message(output: str, fallback: str) -> str:
    """The ``message`` of a ``--json`` command's result (the last line of its output)."""
    try:
        return str(json.loads(output.strip().splitlines()[-1])["message"])
    except (ValueError, IndexError, KeyError, TypeError):
        return fallback


def parse_progress(line: str) -> tuple[int, int] | None:
    """``(done, total)`` from a ``progress DONE TOTAL`` line a ``--progress`` command writes on
    stderr, else None."""
    parts = line.split()
    if len(parts) == 3 and parts[0] == "progress" and parts[1].isdigit() and parts[2].isdigit():
        return int(parts[1]), int(parts[2])
    return None


def read_progress(proc: QProcess, bar: QProgressBar, unit: str = "") -> tuple[str, bool]:
    """Read what a ``--progress`` command wrote on stderr since the last call.

    Its ``progress DONE TOTAL`` lines move ``bar`` (shown as ``DONE / TOTAL unit``); the
    other lines (warnings, the CLI's error line) are returned as text.

    Returns:
        (the other lines, each ending in a newline; whether any progress line came)
    """
    text = bytes(proc.readAllStandardError().data()).decode("utf-8", errors="replace")
    rest, moved = "", False
    for line in text.splitlines():
        if (progress := parse_progress(line)) is not None:
            done, total = progress
            bar.setRange(0, total)
            bar.setValue(done)
            bar.setFormat(f"{done:,} / {total:,}" + (f" {unit}" if unit else ""))
            moved = True
        elif line.strip():
            rest += line + "\n"
    return rest, moved


class EngineCommandMixin:
    """A dialog's (or panel's) one ``finetune-studio`` command at a time, run in a child process.

    Mixed into a widget (before it: ``class MergeDialog(EngineCommandMixin, QDialog)``) that has a
    ``progress`` bar. While the child runs, the button that started it is disabled and the bar shows
    a busy state; ``progress DONE TOTAL`` lines on stderr move the bar (:func:`read_progress`), the
    other stderr lines are kept in ``errors`` and stdout in ``output`` (also handed to
    :meth:`_on_output` as it comes). At the end the bar hides and the button comes back, and
    :meth:`_on_succeeded` gets the output, or :meth:`_on_failed` the command's own error line
    (:func:`cli_failure`): a child killed mid-way is a failure too.
    """

    CLI_COMMAND = ""
    """The command as its error lines name it (``finetune-studio CLI_COMMAND: message``)."""
    PROGRESS_UNIT = ""
    """What the progress bar counts (``1,200 / 1,200 tensors``)."""

    proc: QProcess | None = None
    output = ""
    """The child's stdout (with stderr when started ``merged``)."""
    errors = ""
    """The child's stderr lines that are not progress lines."""
    progress: QProgressBar
    _engine_button: QAbstractButton | None = None

    # ---- Public API
    def wait(self, msecs: int = 300_000) -> bool:
        """Block until the child process ends (tests and scripts)."""
        return self.proc is not None and self.proc.waitForFinished(msecs)

    # ---- For the dialog
    def _start_engine(self, args: list[str], button: QAbstractButton, *, merged: bool = False) -> None:
        """Run ``finetune-studio ARGS`` with ``button`` disabled until it ends (``merged``: stderr
        comes with stdout, for a dialog that shows the child's whole output as it comes)."""
        self.proc = engine_process(self, merged=merged)  # type: ignore[arg-type]  # self: the widget mixed into
        self.proc.readyReadStandardError.connect(self._on_stderr)
        self.proc.readyReadStandardOutput.connect(self._on_stdout)
        self.proc.finished.connect(self._on_finished)
        self.output = self.errors = ""
        self.progress.setRange(0, 0)
        self.progress.setVisible(True)
        self._engine_button = button
        button.setEnabled(False)
        start_engine(self.proc, args)

    def _kill_engine(self) -> bool:
        """Kill a running child (its end is reported as a failure); True when one was running."""
        if self.proc is None or self.proc.state() == QProcess.ProcessState.NotRunning:
            return False
        self.proc.kill()
        self.proc.waitForFinished(5000)
        return True

    def _on_output(self, text: str) -> None:
        """More of the child's stdout came (already added to ``output``)."""

    def _on_progress(self) -> None:
        """A progress line moved the bar (say what is being done)."""

    def _on_succeeded(self, output: str) -> None:
        """The child exited 0; ``output``: its stdout."""

    def _on_failed(self, why: str) -> None:
        """The child failed; ``why``: its own error line, else its last line, else its exit code."""

    # ---- Internals
    def _on_stderr(self) -> None:
        if self.proc is not None:
            self._read(self.proc)

    def _on_stdout(self) -> None:
        if self.proc is not None:
            self._read_stdout(self.proc)

    def _read_stdout(self, proc: QProcess) -> None:
        text = bytes(proc.readAllStandardOutput().data()).decode("utf-8", errors="replace")
        if text:
            self.output += text
            self._on_output(text)

    def _read(self, proc: QProcess) -> None:
        text, moved = read_progress(proc, self.progress, self.PROGRESS_UNIT)
        self.errors += text
        if moved:
            self._on_progress()

    def _on_finished(self, code: int, status: Any) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            self._read(proc)
            self._read_stdout(proc)
        self.progress.setVisible(False)
        if self._engine_button is not None:
            self._engine_button.setEnabled(True)
        if code == 0 and status != QProcess.ExitStatus.CrashExit:
            self._on_succeeded(self.output)
        else:
            self._on_failed(cli_failure(self.errors + self.output, self.CLI_COMMAND, code))


# U+2060 WORD JOINER: no line break here. Put after each hyphen of the shown text only; copying strips it.
_NO_BREAK = "\u2060"


class CommandView(QTextEdit):
    """The grey, selectable command line under a dialog's form, as tall as its wrapped text.

    A ``QLabel`` wraps after any hyphen (Unicode line breaking), so ``--out`` could read
    ``--`` / ``out`` on two lines, and ``medical-assistant`` too. Here a word joiner follows each
    hyphen on screen, so lines break at spaces (or at a path's ``/``, for a path wider than the
    line), and what is copied is the exact command: :meth:`createMimeDataFromSelection` removes them.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._text = ""
        self.setReadOnly(True)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse
                                     | Qt.TextInteractionFlag.TextSelectableByKeyboard)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setWordWrapMode(QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere)
        self.document().setDocumentMargin(0)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        self.setStyleSheet("QTextEdit { color: palette(placeholder-text); background: transparent; "
                           "font-family: monospace; }")
        self._fit_height()

    # ---- Public API
    def text(self) -> str:
        """The command, exactly as set (and as copied)."""
        return self._text

    def setText(self, text: str) -> None:  # noqa: N802 - QLabel's name: the dialogs set it as they did a label
        self._text = text
        self.setPlainText(text.replace("-", "-" + _NO_BREAK))
        self._fit_height()

    def shown_lines(self) -> list[str]:
        """The lines as wrapped on screen, word joiners removed (for tests and checks)."""
        layout = self.document().firstBlock().layout()
        shown = self.document().firstBlock().text()
        return [shown[(line := layout.lineAt(i)).textStart():line.textStart() + line.textLength()]
                .replace(_NO_BREAK, "") for i in range(layout.lineCount())]

    # ---- Qt overrides
    def createMimeDataFromSelection(self) -> QMimeData:  # noqa: N802
        # Qt's own object, changed, not a new QMimeData: the clipboard keeps what is copied until
        # the process exits, and a Python-made one is then deleted after Python has finished,
        # which crashed every exit after a copy (SIGSEGV in shiboken).
        mime = super().createMimeDataFromSelection()
        text = mime.text().replace(_NO_BREAK, "")  # text() first: Qt fills the formats in on first read
        for kind in mime.formats():
            mime.removeFormat(kind)
        mime.setText(text)
        return mime

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802
        super().resizeEvent(event)
        self._fit_height()

    def _fit_height(self) -> None:
        self.document().setTextWidth(self.viewport().width())
        lines = max(round(self.document().size().height()), self.fontMetrics().lineSpacing())
        self.setFixedHeight(lines + 2 * self.frameWidth())


def command_label() -> CommandView:
    """The grey, selectable line under a dialog's form that shows the command it runs."""
    return CommandView()


def command_text(args: list[str]) -> str:
    """``finetune-studio ARGS`` as a user would type it (quoted for a POSIX shell)."""
    return "finetune-studio " + " ".join(shlex.quote(a) for a in args)
