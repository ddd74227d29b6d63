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
