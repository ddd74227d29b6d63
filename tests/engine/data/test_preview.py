"""Prompt preview: the rendered record with exactly the trainer's answer tokens marked."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.data import Record, preview
from engine.data.tokenize import IGNORE_INDEX, render_record
from engine.errors import DataError

MODEL = Path(__file__).resolve().parents[3] / "resources" / "demo" / "model"


@pytest.fixture(scope="module")
def tok():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(MODEL)


@pytest.mark.parametrize("template", ["auto", "alpaca"])
def test_trained_pieces_are_the_answers(tok, template):
    rec = Record({"system": "Be brief.", "history": [["Hi", "Hello!"]], "instruction": "Capital of France?",
                  "input": "", "output": "Paris."})
    pieces = preview(rec, tok, template)
    row = render_record(rec.messages(), tok, template)
    assert "".join(t for t, _ in pieces) == tok.decode(row["input_ids"])
    trained = [t for t, on in pieces if on]
    assert len(trained) == 2 and trained[0].startswith("Hello!") and trained[1].startswith("Paris.")
    assert "Capital of France?" in "".join(t for t, on in pieces if not on)
    n_trained = sum(1 for x in row["labels"] if x != IGNORE_INDEX)
    assert sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in trained) >= n_trained - 2


def test_preview_of_a_record_without_answer_raises(tok):
    with pytest.raises(DataError, match="no answer"):
        preview(Record({"instruction": "only a question"}), tok)
