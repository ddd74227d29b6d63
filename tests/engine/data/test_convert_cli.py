"""``finetune-studio data convert``: the GUI's Export from the command line."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.cli import main
from engine.data import cli_convert, load_dataset_file
from engine.errors import DataError

REPO = Path(__file__).resolve().parents[3]


def convert(src, out, *formats: str, force: bool = False, input_format: str = "auto") -> int:
    return cli_convert(argparse.Namespace(input=str(src), output=str(out), format=list(formats) or None,
                                          input_format=input_format, force=force))


def datas(path: Path) -> list[dict]:
    return [r.data for r in load_dataset_file(path).records]


@pytest.mark.parametrize("name", ["out.csv", "out.tsv", "out.parquet", "out.json"])
def test_container_round_trip_keeps_every_record(small_dataset, tmp_path, name, capsys):
    out = tmp_path / name
    assert convert(small_dataset, out) == 0
    assert f"-> {out} (Alpaca " in capsys.readouterr().out
    back = tmp_path / "back.jsonl"
    assert convert(out, back) == 0
    assert datas(back) == datas(small_dataset)
    assert len(datas(back)) == 64


@pytest.mark.parametrize("fmt, container", [("sharegpt", "jsonl"), ("messages", "json"), ("sharegpt", "parquet")])
def test_record_format_round_trip_keeps_conversations_and_extras(small_dataset, tmp_path, fmt, container):
    out = tmp_path / f"chat.{container}"
    assert convert(small_dataset, out, fmt) == 0
    converted = load_dataset_file(out)
    assert (converted.format, converted.container) == (fmt, container)
    back = tmp_path / "back.jsonl"
    assert convert(out, back, "alpaca") == 0
    original = load_dataset_file(small_dataset).records
    again = load_dataset_file(back).records
    # Alpaca's instruction + input become one user turn, so compare what the model sees.
    assert [r.messages() for r in again] == [r.messages() for r in original]
    assert [(r.data["task"], r.data["lang"]) for r in again] == [(r.data["task"], r.data["lang"]) for r in original]


def test_a_turns_own_keys_survive_sharegpt_to_messages_and_back(tmp_path, capsys):
    """A turn's weight (LLaMA-Factory/axolotl: 0 leaves it out of the loss) or name is the turn's own,
    not the record's: converting dropped it. Training here reads only role and content."""
    src = tmp_path / "weighted.jsonl"
    turns = [{"from": "system", "value": "Be brief.", "name": "policy"},
             {"from": "human", "value": "Hi", "name": "bob"},
             {"from": "gpt", "value": "Hello... uh, hi?", "weight": 0},
             {"from": "human", "value": "Again"},
             {"from": "gpt", "value": "Hi!", "weight": 1}]
    src.write_text(json.dumps({"conversations": turns, "id": 7}) + "\n", encoding="utf-8")
    out = tmp_path / "weighted-messages.jsonl"
    assert main(["data", "convert", str(src), str(out), "--format", "messages"]) == 0
    assert json.loads(out.read_bytes()) == {"messages": [
        {"role": "system", "content": "Be brief.", "name": "policy"},
        {"role": "user", "content": "Hi", "name": "bob"},
        {"role": "assistant", "content": "Hello... uh, hi?", "weight": 0},
        {"role": "user", "content": "Again"},
        {"role": "assistant", "content": "Hi!", "weight": 1}], "id": 7}
    back = tmp_path / "back.jsonl"
    assert main(["data", "convert", str(out), str(back), "--format", "sharegpt"]) == 0
    assert back.read_bytes() == src.read_bytes()
    # What trains is unchanged: role and content only.
    assert load_dataset_file(out).records[0].messages() == load_dataset_file(src).records[0].messages() == [
        {"role": m, "content": t["value"]} for m, t in zip(["system", "user", "assistant", "user", "assistant"],
                                                          turns, strict=True)]


def test_format_option_may_name_record_format_and_container(small_dataset, tmp_path):
    out = tmp_path / "chat.json"  # JSON lines in a .json file read back fine
    assert convert(small_dataset, out, "messages", "jsonl") == 0
    ds = load_dataset_file(out)
    assert (ds.format, ds.container, len(ds.records)) == ("messages", "jsonl", 64)


def test_refuses_to_overwrite_the_input_even_with_force(small_dataset, tmp_path, capsys):
    before = small_dataset.read_bytes()
    same = tmp_path / "sub" / ".." / small_dataset.name
    (tmp_path / "sub").mkdir()
    for path, force in ((small_dataset, False), (same, True)):
        with pytest.raises(DataError, match="refusing to overwrite the input file"):
            convert(small_dataset, path, "sharegpt", force=force)
    assert main(["data", "convert", str(small_dataset), str(small_dataset), "--force"]) == 2
    assert "refusing to overwrite the input file" in capsys.readouterr().err
    assert small_dataset.read_bytes() == before


def test_existing_output_needs_force(small_dataset, tmp_path):
    out = tmp_path / "out.csv"
    out.write_text("keep me\n")
    with pytest.raises(DataError, match=r"already exists(.|\n)*--force"):
        convert(small_dataset, out)
    assert out.read_text() == "keep me\n"
    assert convert(small_dataset, out, force=True) == 0
    assert len(datas(out)) == 64


def test_broken_records_are_refused_not_dropped(tmp_path):
    src = tmp_path / "broken.jsonl"
    src.write_text('{"instruction": "a", "output": "b"}\n{"instruction": "c", "output": \n'
                   '{"instruction": "d", "output": "e"}\n')
    out = tmp_path / "out.csv"
    with pytest.raises(DataError, match=r"1 broken record\(s\) can't be exported; the first is at line 2") as e:
        convert(src, out)
    assert e.value.line == 2 and str(src) in str(e.value)
    assert not out.exists()


@pytest.mark.parametrize("formats, out, message", [
    (["yaml"], "out.jsonl", "unknown --format 'yaml'; allowed: alpaca, sharegpt, messages, json, jsonl, csv, parquet"),
    (["alpaca", "sharegpt"], "out.jsonl", "--format names two record formats (alpaca and sharegpt)"),
    (["parquet"], "out.csv", "--format parquet doesn't match the extension '.csv'"),
    ([], "out.txt", "can't tell the output container from the name 'out.txt'"),
])
def test_bad_target_is_a_clear_error(small_dataset, tmp_path, formats, out, message):
    with pytest.raises(DataError) as e:
        convert(small_dataset, tmp_path / out, *formats)
    assert message in str(e.value)
    assert not (tmp_path / out).exists()


def test_convert_runs_as_a_command(small_dataset, tmp_path):
    out = tmp_path / "chat.parquet"
    proc = subprocess.run([sys.executable, "-m", "engine", "data", "convert", str(small_dataset), str(out),
                           "--format", "sharegpt"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith(f"-> {out} (ShareGPT PARQUET, 64 records)")
    ds = load_dataset_file(out)
    assert (ds.format, ds.container, len(ds.records)) == ("sharegpt", "parquet", 64)
    assert json.loads(json.dumps(ds.records[0].data))["task"] == "extraction"


@pytest.mark.parametrize("fmt", ["sharegpt", "alpaca"])
def test_per_answer_writes_one_record_per_answer_each_ending_with_it(tmp_path, fmt, capsys, tiny_model_dir):
    src = tmp_path / "chats.jsonl"
    turns = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
             {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Count to two"},
             {"role": "assistant", "content": "One, two."}]
    src.write_text(json.dumps({"messages": turns, "lang": "en"}) + "\n"
                   + json.dumps({"messages": turns[:3], "lang": "de"}) + "\n")
    out = tmp_path / f"per-answer-{fmt}.jsonl"
    assert main(["data", "convert", str(src), str(out), "--format", fmt, "--per-answer"]) == 0
    assert "3 records from 2, one per answer" in capsys.readouterr().out
    records = load_dataset_file(out).records
    assert [r.messages() for r in records] == [turns[:3], turns, turns[:3]]
    assert [r.data["lang"] for r in records] == ["en", "en", "de"]  # extra fields go with every copy
    # Under a template that hides history answers, every answer now trains once.
    from transformers import AutoTokenizer

    from engine.data.tokenize import tokenize_records
    from tests.engine.test_tokenize import THINK_LAST

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.chat_template = THINK_LAST
    rows, stats = tokenize_records(records, tok, "chat", 256)
    assert len(rows) == 3 and stats.partial == [{"index": 1, "line": 2, "turns": [2]}]
    trained = [tok.decode([t for t, lab in zip(r["input_ids"], r["labels"], strict=True) if lab != -100])
               for r in rows]
    assert [t.removeprefix("<think>\n\n</think>\n\n") for t in trained] == [
        "Hello!<|im_end|>\n", "One, two.<|im_end|>\n", "Hello!<|im_end|>\n"]


def test_per_answer_cuts_only_after_answers_that_train(tmp_path, capsys):
    """A weight-0 answer is context: a record cut after it would have nothing to train on."""
    src = tmp_path / "chats.jsonl"
    turns = [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello!", "weight": 0},
             {"from": "human", "value": "Count to two"}, {"from": "gpt", "value": "One, two."},
             {"from": "human", "value": "And three?"}, {"from": "gpt", "value": "One, two, three."}]
    src.write_text(json.dumps({"conversations": turns}) + "\n")
    out = tmp_path / "per-answer.jsonl"
    assert main(["data", "convert", str(src), str(out), "--per-answer"]) == 0
    assert "2 records from 1, one per answer" in capsys.readouterr().out
    records = load_dataset_file(out).records
    assert [r.data["conversations"] for r in records] == [turns[:4], turns]  # the weight goes with its turn


def test_per_answer_writes_no_record_ending_on_an_empty_answer(tmp_path, capsys):
    """An empty answer is no answer: a record cut after it would have nothing to train on."""
    src = tmp_path / "chats.jsonl"
    turns = [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello!"},
             {"from": "human", "value": "Anything?"}, {"from": "gpt", "value": "  "},
             {"from": "human", "value": "Count to two"}, {"from": "gpt", "value": "One, two."}]
    src.write_text(json.dumps({"conversations": turns}) + "\n")
    out = tmp_path / "per-answer.jsonl"
    assert main(["data", "convert", str(src), str(out), "--per-answer"]) == 0
    assert "2 records from 1, one per answer" in capsys.readouterr().out
    assert [r.data["conversations"] for r in load_dataset_file(out).records] == [turns[:2], turns]
