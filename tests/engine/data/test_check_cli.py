"""``finetune-studio data check``: human and JSON output, exit codes 0/1/2."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from engine.data import cli_check

FIXTURES = Path(__file__).parent / "fixtures"


def check(path, *, as_json=True, fmt="auto", seq_len=None, model=None, template="auto",
          add_tokens=()) -> argparse.Namespace:
    return argparse.Namespace(file=str(path), json=as_json, format=fmt, seq_len=seq_len, model=model,
                              template=template, add_tokens=list(add_tokens))


def test_token_lengths_follow_the_template_and_add_tokens(capsys):
    from engine.cli import main

    demo = Path(__file__).resolve().parents[3] / "resources" / "demo" / "dataset.jsonl"
    markers = ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    lengths = {}
    for name, extra in (("auto", []), ("llama3", ["--template", "llama3"]),
                        ("llama3+tokens", ["--template", "llama3", "--add-tokens", *markers])):
        assert main(["data", "check", str(demo), "--model", "demo", "--seq-len", "4096", "--json", *extra]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["stats"]["length"]["method"].startswith("tokenizer")
        lengths[name] = out["stats"]["length"]["median"]
        assert out["stats"]["length"]["method"].endswith(", template llama3") == (name != "auto")
    # Llama 3's markers split into pieces in the demo tokenizer; as whole tokens they are far fewer.
    assert lengths["llama3"] > lengths["llama3+tokens"] and lengths["llama3"] != lengths["auto"]
    assert main(["data", "check", str(demo), "--template", "llama3"]) == 2
    assert "need --model" in capsys.readouterr().err


def test_json_report_lists_per_record_findings_and_exits_1_on_errors(capsys):
    rc = cli_check(check(FIXTURES / "broken.jsonl", seq_len=64))
    out = json.loads(capsys.readouterr().out)
    assert rc == 1
    assert out["detected"] == "Alpaca JSONL, 5 records (2 broken), UTF-8, LF"
    assert out["counts"]["records"] == 5 and out["counts"]["broken"] == 2 and out["counts"]["errors"] == 2
    first = out["findings"][0]
    assert first == {"index": 1, "line": 2, "rule": "broken-record", "severity": "error",
                     "message": "not a valid record: line 2, column 34: Expecting ',' delimiter", "key": None}
    assert set(out["stats"]) >= {"task_types", "languages", "diversity", "length", "duplicates"}
    assert out["stats"]["length"]["seq_len"] == 64 and "per_record" not in out["stats"]["length"]


def test_clean_file_exits_0(tmp_path, capsys):
    path = tmp_path / "ok.jsonl"
    path.write_text("".join(json.dumps({"instruction": f"Explain idea {i}", "output": f"Idea {i} is {i}."}) + "\n"
                            for i in range(3)))
    assert cli_check(check(path)) == 0
    assert json.loads(capsys.readouterr().out)["counts"]["errors"] == 0


RECORD = '{"instruction": "Explain idea 1", "output": "Idea 1 is 1."}'


@pytest.mark.parametrize("text,line,words", [
    (f"[\n  {RECORD},\n  {RECORD.replace('1', '2')},\n", 3, "line 3, column 62: the file ends after a comma, without "
     "the list's closing ']': it may be cut short, and records after this one missing"),
    (f"[\n  {RECORD},\n]\n", 2, "line 2, column 62: a comma after the last record"),
    (f"[\n  {RECORD}\n  {RECORD.replace('1', '2')}]\n", 3, "line 3, column 3: expected ',' or ']' after the record "
     "that starts at line 2"),
    (f"[\n  {RECORD}\n", 2, "line 2: the list of records is not closed: ']' is missing at the end"),
    (f"[\n  {RECORD}\n]\n{RECORD}\n", 4, "line 4, column 1: text after the list's closing ']' is not read; records "
     "there belong inside the list"),
    (f"[\n  {RECORD}\n]\n" + "\0" * 8, 4, "line 4, column 1: zero bytes after the list's closing ']', as a write cut "
     "short leaves; they are not read"),
])
def test_a_json_array_that_is_not_valid_around_its_records_is_an_error(tmp_path, capsys, text, line, words):
    """Every record loads, but the file is not valid JSON (and a file cut short after a comma may have lost
    records): the reader said so only to the editor's banner; check found nothing and exited 0. Text after
    the closing ']' (a record appended to the file) was not even said: never read, silently."""
    path = tmp_path / "cut.json"
    path.write_text(text, encoding="utf-8")
    assert cli_check(check(path)) == 1
    found = [f for f in json.loads(capsys.readouterr().out)["findings"] if f["rule"] == "file-structure"]
    assert found == [{"index": None, "line": line, "rule": "file-structure", "severity": "error",
                      "message": words, "key": None}]


@pytest.mark.parametrize("name", ["top_level_object.json", "nope.jsonl"])
def test_unreadable_file_exits_2(name, capsys):
    assert cli_check(check(FIXTURES / name)) == 2
    err = json.loads(capsys.readouterr().out)["error"]
    assert err["kind"] == "data" and name in err["message"]
    assert cli_check(check(FIXTURES / name, as_json=False)) == 2
    assert name in capsys.readouterr().err


def test_human_report_groups_findings_by_rule(capsys):
    rc = cli_check(check(FIXTURES / "broken.jsonl", as_json=False, seq_len=4))
    text = capsys.readouterr().out
    assert rc == 1
    path = str(FIXTURES / "broken.jsonl")
    assert text.startswith(f"{path}: Alpaca JSONL, 5 records (2 broken), UTF-8, LF\n2 error(s), 3 warning(s)")
    assert f"broken-record (error, 2)\n  {path}:2: [record 2] not a valid record: line 2, column 34" in text
    assert "truncated (warning, 3)" in text
    assert "Length (estimate" in text and "3 truncated to seq_len 4" in text


def test_format_option_and_model_tokenizer(capsys):
    model = Path(__file__).resolve().parents[3] / "resources" / "demo" / "model"
    rc = cli_check(check(FIXTURES / "messages.jsonl", fmt="messages", model=str(model), seq_len=36))
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["stats"]["format"] == "messages"
    assert out["stats"]["length"]["method"].startswith("tokenizer") and out["stats"]["length"]["truncated"] == 2
    # At 10 tokens the prompts (system + user turns, ~38 tokens in all) fill seq_len: a run leaves both
    # out, an error.
    rc = cli_check(check(FIXTURES / "messages.jsonl", fmt="messages", model=str(model), seq_len=10))
    out = json.loads(capsys.readouterr().out)
    assert rc == 1 and (out["stats"]["length"]["truncated"], out["stats"]["length"]["left_out"]) == (0, 2)


def test_through_the_real_cli(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "engine.cli", "data", "check", str(FIXTURES / "broken.jsonl"),
                           "--json"], capture_output=True, text=True, cwd=Path(__file__).resolve().parents[3])
    assert proc.returncode == 1, proc.stderr
    assert json.loads(proc.stdout)["counts"]["broken"] == 2


def test_demo_dataset_checks_clean(capsys):
    from engine.paths import demo_dataset_path

    if not demo_dataset_path().exists():
        pytest.skip("the demo dataset is not generated yet")
    assert cli_check(check(demo_dataset_path(), seq_len=512)) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["counts"]["errors"] == 0 and out["counts"]["records"] >= 300


def test_with_a_model_it_names_the_format_tokens_the_model_never_trained(tiny_model_dir, tmp_path, capsys):
    import shutil

    from engine.cli import main
    from tests.conftest import zero_token_rows

    model = tmp_path / "zeroed"
    shutil.copytree(tiny_model_dir, model)
    zero_token_rows(model, ["<|im_end|>"])
    data = tmp_path / "ok.jsonl"
    data.write_text("".join(json.dumps({"instruction": f"Explain idea {i}", "output": f"Idea {i} is {i}."}) + "\n"
                            for i in range(3)))
    assert main(["data", "check", str(data), "--model", str(model), "--template", "chatml", "--json"]) == 0
    (found,) = [f for f in json.loads(capsys.readouterr().out)["findings"] if f["rule"] == "untrained-tokens"]
    assert found["severity"] == "warning" and found["index"] is None
    assert found["message"].startswith("the chatml format's <|im_end|> has untrained embeddings")
    assert "add_tokens: ['<|im_end|>']" in found["message"]
    assert main(["data", "check", str(data), "--model", str(model), "--template", "chatml", "--json",
                 "--add-tokens", "<|im_end|>"]) == 0  # training its row: nothing to say
    assert not [f for f in json.loads(capsys.readouterr().out)["findings"] if f["rule"] == "untrained-tokens"]
    assert main(["data", "check", str(data), "--model", str(tiny_model_dir), "--template", "chatml", "--json"]) == 0
    assert not [f for f in json.loads(capsys.readouterr().out)["findings"] if f["rule"] == "untrained-tokens"]


def _check_preview_and_train(path: Path, capsys, record: int) -> tuple[int, list[dict], dict, dict]:
    """``data check --json``'s exit code and findings, ``data preview --record N --json`` and the trainer's
    reading (``load_training_records``) of one file: the three readers a user meets."""
    from engine.cli import main
    from engine.config import RunConfig
    from engine.train import load_training_records

    rc = main(["data", "check", str(path), "--json"])
    found = [f for f in json.loads(capsys.readouterr().out)["findings"] if f["severity"] != "info"]
    assert main(["data", "preview", str(path), "--record", str(record), "--json"]) == 0
    preview = json.loads(capsys.readouterr().out)
    _, info = load_training_records(RunConfig(dataset=str(path)))
    return rc, found, preview, info


def test_a_pretty_printed_record_in_jsonl_is_one_warning_and_every_reader_takes_it(tmp_path, capsys):
    """``json.dumps(obj, indent=2)`` pasted into a .jsonl: check named its first line a spread object and each
    of the next ones a broken record of its own (exit 1), and the trainer left it out; check, preview and the
    trainer now all read the record, and check warns once, naming its lines and the fix."""
    path = tmp_path / "pasted.jsonl"
    pretty = json.dumps({"instruction": "Explain idea 2", "output": "Idea 2 is 2."}, indent=2)  # 4 lines
    path.write_text(f"{RECORD}\n{pretty}\n{RECORD.replace('1', '3')}\n", encoding="utf-8")
    rc, found, preview, info = _check_preview_and_train(path, capsys, 2)
    assert rc == 0
    assert [(f["rule"], f["index"], f["line"]) for f in found] == [("multi-line-record", 1, 2)]
    assert found[0]["message"].startswith("lines 2–5: the record is written over 4 lines (pretty-printed JSON); it "
                                          "is read, but JSON Lines holds one record per line")
    assert "Dataset editor" in found[0]["message"] and "data convert" in found[0]["message"]
    assert (preview["line"], preview["segments"][-1]["text"]) == (2, "Idea 2 is 2.<|im_end|>\n")
    assert (info["records"], info["broken"]) == (3, 0)


def test_a_jsonl_file_with_lone_cr_line_endings_reads_line_by_line_everywhere(tmp_path, capsys):
    """Lines that end in a CR alone were one line: check said so and read no record, the trainer read none."""
    path = tmp_path / "mac.jsonl"
    path.write_bytes(f"{RECORD}\r{RECORD.replace('1', '2')}\r\r{{\"instruction\": \"x\", bad}}\r".encode())
    rc, found, preview, info = _check_preview_and_train(path, capsys, 2)
    assert rc == 1
    assert [(f["rule"], f["index"], f["line"], f["message"]) for f in found] == [
        ("broken-record", 2, 4, "not a valid record: line 4, column 22: Expecting property name enclosed in double quotes")]
    assert (preview["line"], preview["segments"][-1]["text"]) == (2, "Idea 2 is 2.<|im_end|>\n")
    assert (info["records"], info["broken"], info["broken_records"][0]["line"]) == (2, 1, 4)
