"""``finetune-studio data preview``: a record as the model sees it, exactly the trained tokens marked."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.cli import main
from engine.data import cli_preview, load_dataset_file
from engine.data.tokenize import IGNORE_INDEX, render_record
from engine.errors import DataError

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def tok():
    from engine.models import load_tokenizer

    return load_tokenizer(str(REPO / "resources" / "demo" / "model"))


def args(path, *, index=0, template="auto", as_json=False, model="demo", record=None) -> argparse.Namespace:
    return argparse.Namespace(file=str(path), index=index, record=record, model=model, template=template, format="auto",
                              json=as_json)


def trained_text(tok, record, template: str) -> str:
    """The trainer's answer tokens, straight from the labels, decoded."""
    row = render_record(record.messages(), tok, template)
    return tok.decode([t for t, label in zip(row["input_ids"], row["labels"], strict=True) if label != IGNORE_INDEX])


@pytest.mark.parametrize("template", ["auto", "alpaca"])
def test_json_segments_mark_exactly_the_answer_tokens(demo_base, small_dataset, tok, template, capsys):
    assert cli_preview(args(small_dataset, index=1, template=template, as_json=True)) == 0
    out = json.loads(capsys.readouterr().out)
    record = load_dataset_file(small_dataset).records[1]
    row = render_record(record.messages(), tok, template)
    segments = out["segments"]
    trained = "".join(s["text"] for s in segments if s["trained"])
    prompt = "".join(s["text"] for s in segments if not s["trained"])
    assert trained == trained_text(tok, record, template)
    assert trained.startswith(record.data["output"])
    assert record.data["instruction"] in prompt and record.data["output"] not in prompt
    assert "".join(s["text"] for s in segments) == tok.decode(row["input_ids"])
    assert out["tokens"] == len(row["input_ids"])
    assert out["trained_tokens"] == sum(1 for x in row["labels"] if x != IGNORE_INDEX)
    assert (out["record"], out["index"], out["line"], out["model"]) == (2, 1, 2, "demo")
    assert out["rendering"] == ("chat" if template == "auto" else "alpaca")


def test_plain_output_brackets_each_answer(demo_base, tmp_path, tok, capsys):
    path = tmp_path / "multi.jsonl"
    path.write_text(json.dumps({"history": [["Hi", "Hello there!"]], "instruction": "Capital of France?",
                                "output": "Paris."}) + "\n")
    assert cli_preview(args(path)) == 0
    out = capsys.readouterr().out
    head, body = out.split("\n\n", 1)
    assert "record 1 of 1, rendered with the chat template of demo" in head and "[[like this]]" in head
    assert "\x1b[" not in out  # not a terminal: brackets, no colour
    spans = [part.split("]]")[0] for part in body.split("[[")[1:]]
    assert len(spans) == 2 and spans[0].startswith("Hello there!") and spans[1].startswith("Paris.")
    record = load_dataset_file(path).records[0]
    assert "".join(spans) == trained_text(tok, record, "auto")
    assert "Capital of France?" in body.split("[[")[1]  # the question sits between the two answers, unmarked


def test_colour_only_on_a_terminal(demo_base, small_dataset, monkeypatch, capsys):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert cli_preview(args(small_dataset)) == 0
    out = capsys.readouterr().out
    assert "\x1b[1;32m" in out and "[[" not in out
    monkeypatch.setenv("NO_COLOR", "1")
    assert cli_preview(args(small_dataset)) == 0
    out = capsys.readouterr().out
    assert "\x1b[" not in out and "[[" in out


@pytest.mark.parametrize("index", [64, -1])
def test_bad_index_names_the_valid_range(demo_base, small_dataset, index, capsys):
    with pytest.raises(DataError) as e:
        cli_preview(args(small_dataset, index=index))
    assert f"record index {index} is out of range: the file has 64 records, so --index takes 0 to 63" in str(e.value)
    assert main(["data", "preview", str(small_dataset), "--index", str(index)]) == 2
    err = capsys.readouterr().err
    assert "--index takes 0 to 63" in err and "Traceback" not in err


def test_record_counts_from_one_as_the_editor_and_data_check_do(demo_base, small_dataset, capsys):
    assert main(["data", "preview", str(small_dataset), "--record", "2", "--json"]) == 0
    by_record = json.loads(capsys.readouterr().out)
    assert main(["data", "preview", str(small_dataset), "--index", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == by_record
    assert (by_record["record"], by_record["line"]) == (2, 2)
    for bad in ("0", "65"):
        assert main(["data", "preview", str(small_dataset), "--record", bad]) == 2
        assert "--record takes 1 to 64" in capsys.readouterr().err
    proc = subprocess.run([sys.executable, "-m", "engine", "data", "preview", str(small_dataset), "--record", "1",
                           "--index", "0"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2 and "--index: not allowed with argument --record" in proc.stderr


def test_broken_record_and_missing_answer_name_the_line(demo_base, tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"instruction": "a", "output": "b"}\n{"instruction": \n{"instruction": "no answer"}\n')
    with pytest.raises(DataError, match="record 2 is broken") as e:
        cli_preview(args(path, index=1))
    assert e.value.line == 2
    with pytest.raises(DataError, match="record 3: the record has no answer") as e:
        cli_preview(args(path, index=2))
    assert e.value.line == 3


def test_a_field_of_the_wrong_type_names_the_record_once(demo_base, tmp_path):
    path = tmp_path / "typed.jsonl"
    path.write_text('{"instruction": "a", "output": "b"}\n{"instruction": 5, "output": "b"}\n')
    with pytest.raises(DataError) as e:
        cli_preview(args(path, index=1))
    assert e.value.message == f"{path}:2: record 2: 'instruction' is a number, expected text"  # not "record at line 2: "


def test_preview_runs_as_a_command(demo_base, small_dataset):
    proc = subprocess.run([sys.executable, "-m", "engine", "data", "preview", str(small_dataset), "--index", "1",
                           "--template", "alpaca"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    record = load_dataset_file(small_dataset).records[1]
    assert "### Response:\n[[" + record.data["output"] in proc.stdout
    assert "\x1b[" not in proc.stdout


def test_answers_the_template_hides_from_training_are_named(tmp_path, tiny_model_dir, capsys):
    import shutil

    from transformers import AutoTokenizer

    from tests.engine.test_tokenize import THINK_LAST

    model = shutil.copytree(tiny_model_dir, tmp_path / "model")
    t = AutoTokenizer.from_pretrained(model)
    t.chat_template = THINK_LAST
    t.save_pretrained(model)
    path = tmp_path / "chat.jsonl"
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"},
                                             {"role": "user", "content": "Bye"},
                                             {"role": "assistant", "content": "Ciao"}]}) + "\n")
    assert cli_preview(args(path, model=str(model))) == 0
    assert "note: message 2 (answer) won't train" in capsys.readouterr().out
    assert cli_preview(args(path, model=str(model), as_json=True)) == 0
    assert json.loads(capsys.readouterr().out)["untrained_answers"] == [1]


def test_loss_on_marks_what_such_a_run_trains(demo_base, tmp_path, capsys):
    path = tmp_path / "multi.jsonl"
    path.write_text(json.dumps({"history": [["Hi", "Hello there!"]], "instruction": "Capital of France?",
                                "output": "Paris."}) + "\n")
    outs = {}
    for loss_on in ("answers", "last_answer", "all"):
        a = args(path, as_json=True)
        a.loss_on = loss_on
        assert cli_preview(a) == 0
        outs[loss_on] = json.loads(capsys.readouterr().out)
    trained = {k: "".join(s["text"] for s in v["segments"] if s["trained"]) for k, v in outs.items()}
    assert trained["answers"].startswith("Hello there!") and "Paris." in trained["answers"]
    assert "Hello there!" not in trained["last_answer"] and trained["last_answer"].startswith("Paris.")
    assert outs["all"]["trained_tokens"] == outs["all"]["tokens"] and "Capital of France?" in trained["all"]
    a = args(path)
    a.loss_on = "all"
    assert cli_preview(a) == 0
    line = capsys.readouterr().out.splitlines()[1]
    assert "trained (every token, loss_on all" in line and "the rest is prompt" not in line


def test_a_weight_0_answer_is_shown_untrained(demo_base, tmp_path, capsys):
    path = tmp_path / "weighted.jsonl"
    path.write_text(json.dumps({"conversations": [
        {"from": "human", "value": "Hi"}, {"from": "gpt", "value": "A bad hello.", "weight": 0},
        {"from": "human", "value": "Capital of France?"}, {"from": "gpt", "value": "Paris.", "weight": 1}]}) + "\n"
        + json.dumps({"conversations": [{"from": "human", "value": "Hi"},
                                        {"from": "gpt", "value": "Hello.", "weight": "no"}]}) + "\n")
    assert cli_preview(args(path)) == 0
    out = capsys.readouterr().out
    assert "note: message 2 (answer) won't train: weight 0, so context" in out
    body = out.split("\n\n", 1)[1]
    spans = [part.split("]]")[0] for part in body.split("[[")[1:]]
    assert len(spans) == 1 and spans[0].startswith("Paris.")
    assert "A bad hello." in body
    assert cli_preview(args(path, as_json=True)) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["weight_0_answers"] == [1]
    assert "".join(s["text"] for s in out["segments"] if s["trained"]).startswith("Paris.")
    assert main(["data", "preview", str(path), "--record", "2"]) == 2
    err = capsys.readouterr().err
    assert "conversations[1] (assistant) has the weight \"no\"; allowed: 0, 1, true or false" in err


def test_a_missing_template_file_is_the_commands_problem_not_a_records(demo_base, small_dataset, tmp_path, capsys):
    missing = tmp_path / "nope.jinja"
    assert main(["data", "preview", str(small_dataset), "--template", str(missing)]) == 2
    err = capsys.readouterr().err
    assert f"data preview: --template: the chat template file '{missing}' does not exist" in err
    assert "record 1" not in err and "run config" not in err and "relative to the current folder" in err
