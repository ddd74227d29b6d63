"""Reading a finetune-studio child's outcome: its own error line, its JSON result."""

from __future__ import annotations

from gui.engine_process import cli_failure, json_message


def test_cli_failure_takes_the_commands_own_error_and_hint():
    out = ("Loading weights: 100%\nfinetune-studio runs promote: can't change the result of run 'r': it is still "
           "training\n  hint: Stop it first.\n")
    assert cli_failure(out, "runs promote", 2) == ("can't change the result of run 'r': it is still training "
                                                   "(hint: Stop it first.)")
    assert cli_failure("Traceback ...\nKeyError: 'x'\n", "runs audit", 1) == "KeyError: 'x'"
    assert cli_failure("", "runs audit", 137) == "exit code 137"


def test_json_message_reads_the_last_line():
    assert json_message('noise\n{"message": "final/ now holds checkpoint-4"}\n', "?") == "final/ now holds checkpoint-4"
    assert json_message("not json", "fallback") == "fallback"


def test_read_progress_moves_the_bar_and_keeps_the_other_lines(qtbot):
    import sys

    from PySide6.QtCore import QProcess
    from PySide6.QtWidgets import QProgressBar

    from gui.engine_process import read_progress

    bar = QProgressBar()
    qtbot.addWidget(bar)
    proc = QProcess()
    script = ("import sys\n"
              "for line in ('progress 3 1200', 'warning: slow disk', '', 'progress 1200 1200', 'progress x 2'):\n"
              "    print(line, file=sys.stderr)\n")
    proc.start(sys.executable, ["-c", script])
    assert proc.waitForFinished(30_000)
    rest, moved = read_progress(proc, bar, "tensors")
    assert moved and bar.maximum() == 1200 and bar.value() == 1200
    assert bar.format() == "1,200 / 1,200 tensors"
    assert rest == "warning: slow disk\nprogress x 2\n"  # a malformed line is not progress
    assert read_progress(proc, bar) == ("", False)  # nothing new


COPY_THEN_EXIT = """
import sys
from PySide6.QtWidgets import QApplication
from gui.engine_process import command_label
app = QApplication(sys.argv)
view = command_label()
view.setText("finetune-studio merge demo medical-assistant --out /tmp/merged-out")
view.selectAll()
view.copy()
copied = QApplication.clipboard().text()
print(copied == view.text() and "\\u2060" not in QApplication.clipboard().mimeData().data("text/html").data().decode())
"""


def test_copying_a_command_line_leaves_an_exit_that_does_not_crash():
    """The copied text stays on the clipboard until the process ends; a QMimeData made in Python
    was then deleted after Python had finished, and every exit after a copy died of SIGSEGV."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    proc = subprocess.run([sys.executable, "-c", COPY_THEN_EXIT], capture_output=True, text=True, env=env,
                          timeout=120)
    assert (proc.returncode, proc.stdout.strip()) == (0, "True"), proc.stderr[-2000:]


def _command_dialog(qtbot, monkeypatch, script: str):
    """A dialog with the shared child-process handling, whose "engine" is ``python -c SCRIPT``."""
    import sys

    from PySide6.QtWidgets import QDialog, QProgressBar, QPushButton, QVBoxLayout

    import gui.engine_process as ep

    monkeypatch.setattr(ep, "start_engine", lambda proc, args: proc.start(sys.executable, ["-c", script]))

    class Dialog(ep.EngineCommandMixin, QDialog):
        CLI_COMMAND = "data split"
        PROGRESS_UNIT = "records"

        def __init__(self):
            super().__init__()
            self.progress = QProgressBar()
            self.button = QPushButton("Run")
            self.said: list[str] = []
            lay = QVBoxLayout(self)
            lay.addWidget(self.progress)
            lay.addWidget(self.button)

        def _on_progress(self):
            self.said.append(f"moving {self.progress.value()}")

        def _on_succeeded(self, output):
            self.said.append(f"done: {output.strip()}")

        def _on_failed(self, why):
            self.said.append(f"failed: {why}")

    dialog = Dialog()
    qtbot.addWidget(dialog)
    dialog.show()
    return dialog


def test_a_failing_childs_own_error_line_reaches_the_dialog(qtbot, monkeypatch):
    script = ("import sys\n"
              "print('progress 2 4', file=sys.stderr, flush=True)\n"
              "print('partial output')\n"
              "print('finetune-studio data split: data.jsonl line 3: not JSON', file=sys.stderr)\n"
              "print('  hint: fix line 3', file=sys.stderr)\n"
              "sys.exit(2)\n")
    dialog = _command_dialog(qtbot, monkeypatch, script)
    dialog._start_engine(["data", "split"], dialog.button)
    assert not dialog.button.isEnabled() and dialog.progress.isVisible() and dialog.proc is not None
    assert dialog.wait(30_000)
    assert dialog.said[0] == "moving 2" and dialog.progress.format() == "2 / 4 records"
    assert dialog.said[-1] == "failed: data.jsonl line 3: not JSON (hint: fix line 3)"
    assert dialog.button.isEnabled() and dialog.progress.isHidden() and dialog.proc is None
    assert dialog.output == "partial output\n" and "progress" not in dialog.errors


def test_a_child_that_succeeds_hands_its_output_over(qtbot, monkeypatch):
    dialog = _command_dialog(qtbot, monkeypatch, "print('{\"ok\": 1}')")
    dialog._start_engine(["data", "split"], dialog.button)
    assert dialog.wait(30_000)
    assert dialog.said == ['done: {"ok": 1}'] and dialog.button.isEnabled()


def test_a_child_killed_mid_way_is_a_failure_and_gives_the_button_back(qtbot, monkeypatch):
    dialog = _command_dialog(qtbot, monkeypatch, "import sys, time\nprint('started', flush=True)\ntime.sleep(60)\n")
    assert not dialog._kill_engine()  # nothing running
    dialog._start_engine(["data", "split"], dialog.button)
    assert dialog.proc.waitForReadyRead(30_000)
    assert dialog._kill_engine()
    assert dialog.button.isEnabled() and dialog.progress.isHidden() and dialog.proc is None
    assert len(dialog.said) == 1 and dialog.said[0].startswith("failed: ")
    assert not dialog.wait()  # nothing left to wait for
