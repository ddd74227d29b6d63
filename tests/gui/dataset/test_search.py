"""Find/replace/filter rules, including the raw-bytes shortcut for lazily parsed lines."""

from __future__ import annotations

import json

import pytest

from engine.data import load_dataset_file
from gui.dataset.search import TextQuery, all_matches, record_matches, record_texts, replace_in_record


@pytest.fixture
def tricky(tmp_path):
    rows = [
        {"instruction": 'Say "hi"', "input": "", "output": "Café au lait"},
        {"instruction": "Tab\there", "input": "line\nbreak", "output": "naïve"},
        {"instruction": "plain", "input": "", "output": "CAFÉ"},
        {"instruction": "keys only", "input": "", "output": "nothing", "café": "x"},
        {"instruction": "Kelvin \u212a and long \u017f", "input": "", "output": "ok"},
    ]
    path = tmp_path / "tricky.jsonl"
    # One line ASCII-escaped (\\u00e9), the others not: both styles occur in real files.
    lines = [json.dumps(r, ensure_ascii=(i == 2)) for i, r in enumerate(rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return load_dataset_file(path)


@pytest.mark.parametrize("text,case", [("café", False), ("CAFÉ", True), ("Café", True), ('"hi"', False),
                                       ("hi", False), ("naïve", False), ("line", False), ("x", False),
                                       ("tab", False), ("output", False), ("k and", False),
                                       ("long s", False)])
def test_raw_shortcut_agrees_with_parsing(tricky, text, case):
    q = TextQuery(text, case_sensitive=case)
    pat = q.pattern()
    for r in tricky.records:
        assert not r.materialized
        expect = any(pat.search(t) for _l, _p, t in record_texts(r, tricky.format))
        assert record_matches(r, tricky.format, q) == expect, (text, r.peek())


def test_field_scope_and_conversations(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"conversations": [{"from": "human", "value": "gpt here?"},
                                                  {"from": "gpt", "value": "yes"}]}) + "\n", encoding="utf-8")
    ds = load_dataset_file(path)
    r = ds.records[0]
    assert [m[0] for m in all_matches(r, ds.format, TextQuery("gpt"))] == ["user"]  # tags are not text
    assert not record_matches(r, ds.format, TextQuery("gpt", field="assistant"))
    new, n = replace_in_record(r, ds.format, TextQuery("yes", field="assistant"), "no")
    assert n == 1 and new["conversations"][1] == {"from": "gpt", "value": "no"}
    assert r.peek()["conversations"][1]["value"] == "yes"  # the record itself is untouched
