"""Each lint rule on a small crafted dataset, the statistics, and the demo dataset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.data import load_dataset_file, save_dataset_file
from engine.data.lint import approx_tokens, detect_language, infer_task, lint, normalize
from engine.paths import demo_dataset_path

REPO = Path(__file__).resolve().parents[3]


def make(tmp_path: Path, records: list, name: str = "d.jsonl", fmt: str = "auto"):
    path = tmp_path / name
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n"
                            for r in records), encoding="utf-8")
    return load_dataset_file(path, fmt)


def rules(report, rule: str) -> list[tuple[int | None, int | None, str]]:
    return [(f.index, f.line, f.severity) for f in report.findings if f.rule == rule]


def varied(n: int) -> list[dict]:
    """n distinct, clean records spread over task types and leading verbs."""
    verbs = ["Explain", "Summarize", "Translate", "Classify", "Write", "List", "Describe", "Compare"]
    return [{"instruction": f"{verbs[i % len(verbs)]} topic number {i} in detail {'x' * (i % 7)}",
             "input": "", "output": f"Answer {i}: " + " ".join(f"w{i}_{k}" for k in range(8))}
            for i in range(n)]


def test_clean_dataset_has_no_findings_but_stats(tmp_path):
    report = lint(make(tmp_path, varied(12)))
    assert [f for f in report.findings if f.severity != "info"] == []
    s = report.stats
    assert s["records"] == 12 and s["duplicates"] == {"exact": 0, "near": 0, "conflicting": 0}
    assert s["diversity"]["distinct_instruction_ratio"] == 1.0
    assert s["length"]["histogram"]["counts"] and sum(s["length"]["histogram"]["counts"]) == 12
    json.dumps(report.to_dict())  # plain values only


def test_broken_record_and_empty_file(tmp_path):
    report = lint(make(tmp_path, ['{"instruction": "a", "output": "b"}', '{"instruction": oops}']))
    assert rules(report, "broken-record") == [(1, 2, "error")]
    assert "line 2, column 17: Expecting value" in report.findings[0].message
    empty = tmp_path / "e.jsonl"
    empty.write_text("")
    report = lint(load_dataset_file(empty))
    assert rules(report, "empty-file") == [(None, None, "error")] and report.has_errors


def test_wrong_field_types_name_record_and_key(tmp_path):
    report = lint(make(tmp_path, [
        {"instruction": "a", "output": 42},
        {"instruction": "b", "output": ["x", "y"]},
        {"instruction": "c", "output": "ok", "history": [["only one"]]},
        {"instruction": {"nested": 1}, "output": "ok"},
    ]))
    found = [(f.index, f.line, f.key, f.message) for f in report.findings if f.rule == "wrong-type"]
    assert found == [
        (0, 1, "output", "'output' is a number, expected text"),
        (1, 2, "output", "'output' is a list, expected text"),
        (2, 3, "history", "history[0] is not an [instruction, answer] pair of texts"),
        (3, 4, "instruction", "'instruction' is an object, expected text"),
    ]


def test_a_turn_without_a_role_or_a_record_without_turns_is_one_finding(tmp_path):
    """The checks name it, and the conversion to messages fails on it too: that second wording was
    a second finding, starting "record 3:" inside a finding that names the record already."""
    report = lint(make(tmp_path, [
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]},
        {"messages": [{"role": None, "content": "hi"}, {"role": "assistant", "content": "yo"}]},
        {"messages": [{"content": "hi"}, {"role": "assistant", "content": "yo"}]},
        {"messages": None},
    ]))
    found = [(f.index, f.rule, f.message) for f in report.findings if f.severity == "error"]
    assert found == [(1, "missing-field", "messages[0] has no role ('role' or 'from')"),
                     (2, "missing-field", "messages[0] has no role ('role' or 'from')"),
                     (3, "missing-field", "no 'messages' list of turns")]


@pytest.mark.parametrize("name", ["d.jsonl", "d.json"])
def test_a_key_written_twice_in_a_record_is_a_warning(tmp_path, name):
    """json keeps the last of two equal keys: the first value was dropped without a word."""
    path = tmp_path / name
    lines = ['{"instruction": "a", "instruction": "b", "output": "c"}',
             '{"messages": [{"role": "user", "content": "hi", "content": "ho"}, {"role": "assistant", "content": "x"}],'
             ' "messages2": "no key twice here: \\": \\": \\":"}',
             '{"instruction": "q", "output": "o", "note": "quotes \\": inside a value are no keys"}']
    path.write_text("\n".join(lines) + "\n" if name.endswith(".jsonl") else "[" + ",\n".join(lines) + "]")
    report = lint(load_dataset_file(path, "alpaca"))
    found = [(f.index, f.line, f.key, f.message) for f in report.findings if f.rule == "duplicate-key"]
    assert found == [(0, 1, "instruction", "the key 'instruction' is written twice in one object (\"a\", \"b\"); only "
                      "the last value is read, and an edit of the record drops the others"),
                     (1, 2, "content", "the key 'content' is written twice in one object (\"hi\", \"ho\"); only the "
                      "last value is read, and an edit of the record drops the others")]
    assert {f.severity for f in report.findings if f.rule == "duplicate-key"} == {"warning"}


def test_missing_and_empty_fields(tmp_path):
    report = lint(make(tmp_path, [
        {"instruction": "no output here"},
        {"instruction": "   ", "input": "", "output": "x"},
        {"instruction": "q", "input": "  ", "output": ""},
        {"instruction": "fine", "input": "", "output": "fine"},
    ]))
    assert rules(report, "missing-field") == [(0, 1, "error")]
    assert sorted(rules(report, "empty-field")) == [(1, 2, "error"), (2, 3, "error"), (2, 3, "warning")]
    messages = {f.message for f in report.findings if f.rule == "empty-field"}
    assert "'instruction' is only whitespace" in messages and "'output' is empty" in messages


def test_chat_rules(tmp_path):
    report = lint(make(tmp_path, [
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
        {"messages": [{"role": "user", "content": "hi"}]},
        {"messages": [{"role": "narrator", "content": "x"}, {"role": "assistant", "content": "y"}]},
        {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                      {"role": "user", "content": "c"}]},
        {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": 5}]},
        {"messages": "not a list"},
        {"messages": [{"role": "system", "content": "s"}, {"role": "assistant", "content": "Welcome!"},
                      {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
    ]))
    assert rules(report, "missing-field") == [(1, 2, "error")]
    assert rules(report, "unknown-role") == [(2, 3, "error")]
    assert "'narrator'" in report.for_record(2)[0].message
    assert rules(report, "turn-order") == [(3, 4, "warning"), (6, 7, "warning")]
    assert report.for_record(6)[0].message.startswith("the conversation starts with an assistant turn")
    assert rules(report, "wrong-type") == [(4, 5, "error"), (5, 6, "error")]


def test_exact_duplicates_after_normalising(tmp_path):
    base = varied(10)
    dup = {"instruction": base[3]["instruction"].upper() + "  !!", "input": "",
           "output": base[3]["output"].replace(" ", "   ") + "."}
    report = lint(make(tmp_path, [*base, dup]))
    assert rules(report, "duplicate") == [(10, 11, "warning")]
    assert "record 4 (line 4)" in report.for_record(10)[0].message


def test_near_duplicates_and_conflicting_outputs(tmp_path):
    text = ("The city council approved a new budget on Monday that adds funding for parks, libraries "
            "and road repairs over the next two years, officials said.")
    records = varied(8) + [
        {"instruction": "Summarize.", "input": text, "output": "More money for parks, libraries and roads."},
        {"instruction": "Summarize.", "input": text.replace("Monday", "Tuesday"),
         "output": "More money for parks, libraries and roads."},
        {"instruction": "Summarize.", "input": text, "output": "The council cut the budget."},
    ]
    report = lint(make(tmp_path, records))
    assert rules(report, "near-duplicate") == [(9, 10, "warning")]
    assert "record 9 (line 9)" in report.for_record(9)[0].message
    assert rules(report, "conflicting-output") == [(10, 11, "warning")]


def test_near_duplicates_in_chinese(tmp_path):
    text = "今天市议会通过了新的预算，增加了公园、图书馆和道路维修的资金，官员们表示这将持续两年时间。"
    records = [{"instruction": "总结这段话。", "input": text, "output": "预算增加了公园和道路的资金。"},
               {"instruction": "总结这段话。", "input": text.replace("今天", "昨天"),
                "output": "预算增加了公园和道路的资金。"},
               {"instruction": "翻译成英文。", "input": "我喜欢猫。", "output": "I like cats."}]
    report = lint(make(tmp_path, records))
    assert rules(report, "near-duplicate") == [(1, 2, "warning")]


def test_output_format_within_a_task(tmp_path):
    records = [{"instruction": f"Extract the name from text {i}.", "input": f"Ann{i} met Bob.",
                "output": json.dumps({"name": f"Ann{i}"}), "task": "extraction"} for i in range(6)]
    records.append({"instruction": "Extract the name.", "input": "Cy met Di.", "output": '{"name": "Cy",}',
                    "task": "extraction"})
    records.append({"instruction": "Extract the name.", "input": "Ed met Fa.", "output": "Ed",
                    "task": "extraction"})
    records.append({"instruction": "Say hi", "input": "", "output": "hi", "task": "chat"})
    report = lint(make(tmp_path, records))
    assert rules(report, "output-format") == [(6, 7, "error"), (7, 8, "warning")]
    assert "not valid JSON (line 1, column 15: Expecting property name" in report.for_record(6)[0].message
    assert "6 of 8 'extraction' outputs are JSON" in report.for_record(7)[0].message


@pytest.mark.parametrize("output,words", [
    ("[" * 5000 + "]" * 5000, "line 1, column 101: nested more than 100 levels deep"),
    ('{"id": ' + "9" * 5000 + "}", "line 1, column 8: a number with 5000 digits"),
])
def test_output_json_python_cannot_parse_is_named_not_a_crash(tmp_path, output, words):
    """An output the JSON parser fails on with a RecursionError or a bare ValueError is an output-format
    error where it fails, as any other invalid JSON, instead of stopping the whole check."""
    records = [{"instruction": f"Extract the id from text {i}.", "input": f"id {i}", "output": json.dumps({"id": i}),
                "task": "extraction"} for i in range(4)]
    records.append({"instruction": "Extract the id.", "input": "a big one", "output": output, "task": "extraction"})
    report = lint(make(tmp_path, records))
    assert rules(report, "output-format") == [(4, 5, "error")]
    assert f"output is not valid JSON ({words}" in report.for_record(4)[0].message


def test_label_spellings_in_classification(tmp_path):
    labels = ["positive"] * 5 + ["negative"] * 4 + ["Positive", "pos", "Negative."]
    records = [{"instruction": f"What is the sentiment of review {i}?", "input": f"review text {i}",
                "output": lab, "task": "classification"} for i, lab in enumerate(labels)]
    report = lint(make(tmp_path, records))
    flagged = {report.findings[k].index for k, f in enumerate(report.findings) if f.rule == "label-spelling"}
    assert flagged == {9, 10, 11}
    msg = report.for_record(10)[0].message
    assert "'pos'" in msg and "use 'positive'" in msg


def test_balance_from_tag_field_and_inferred(tmp_path):
    tagged = [dict(r, task="qa" if i < 7 else "code") for i, r in enumerate(varied(10))]
    report = lint(make(tmp_path, tagged, "t.jsonl"))
    assert rules(report, "balance") == [(None, None, "warning")]
    assert report.stats["task_types"]["shares"] == {"qa": 0.7, "code": 0.3}
    assert report.stats["task_types"]["source"] == "tag field"
    assert report.findings[[f.rule for f in report.findings].index("balance")].message.endswith(
        "Task types come from each record's tag field (task, category, type or task_type).")
    untagged = [{"instruction": f"Translate sentence {i} into French.", "input": "", "output": f"phrase {i}"}
                for i in range(6)] + [{"instruction": f"请总结第{i}段。", "input": "", "output": f"摘要{i}"}
                                      for i in range(5)]
    report = lint(make(tmp_path, untagged, "u.jsonl"))
    assert report.stats["task_types"]["counts"] == {"translation": 6, "summarization": 5}
    assert rules(report, "balance") == [(None, None, "warning")]  # 55% translation
    balance = next(f for f in report.findings if f.rule == "balance")
    assert balance.message.endswith("Task types are inferred from the instruction (keyword table).")
    # Nothing the keyword table knows: 'other' is no task type the model leans to.
    unknown = [{"instruction": f"Zorble the quux number {i}.", "input": "", "output": f"z{i}"} for i in range(10)]
    report = lint(make(tmp_path, unknown, "x.jsonl"))
    (balance,) = [f for f in report.findings if f.rule == "balance"]
    assert balance.severity == "info" and balance.message.startswith(
        "the keyword table recognises no task type in 100% of the instructions, so balance can't be judged")


@pytest.mark.parametrize("text,task", [
    ("Translate this question into English", "translation"), ("把下面的句子翻译成中文", "translation"),
    ("Summarize the article", "summarization"), ("请概括这段话的主要内容", "summarization"),
    ("Classify the sentiment of the review", "classification"), ("判断这条评论的情感", "classification"),
    ("Extract all dates", "extraction"), ("Write a Python function that reverses a list", "code"),
    ("Calculate 15% of 80", "math"), ("Rewrite this sentence to be more formal", "rewriting"),
    ("Write a haiku about rain", "generation"), ("写一首关于春天的诗", "generation"),
    ("Why is the sky blue?", "qa"), ("地球为什么是圆的？", "qa"), ("Hello there", "other"),
])
def test_task_keyword_table(text, task):
    assert infer_task(text) == task


def test_languages_and_language_tags(tmp_path):
    records = varied(6) + [{"instruction": "解释一下光合作用。", "input": "", "output": "植物利用阳光制造养分。",
                            "lang": "zh"},
                           {"instruction": "用一句话介绍北京。", "input": "", "output": "北京是中国的首都。",
                            "lang": "en"}]
    report = lint(make(tmp_path, records))
    assert report.stats["languages"]["counts"] == {"en": 6, "zh": 2}
    assert rules(report, "language-mix") == [(None, None, "info")]
    assert rules(report, "language-tag") == [(7, 8, "warning")]
    assert detect_language("Привет, как дела?") == "other"
    assert detect_language("Use the pandas 库 to 读取 CSV 文件，然后统计每一列的缺失值。") == "zh"


def test_low_diversity(tmp_path):
    records = [{"instruction": "Summarize the text.", "input": f"Text number {i} about topic {i * 7}.",
                "output": f"Topic {i * 7}."} for i in range(12)]
    report = lint(make(tmp_path, records))
    msgs = [f.message for f in report.findings if f.rule == "diversity"]
    assert len(msgs) == 2
    assert msgs[0].startswith("only 1 distinct instructions for 12 records (8%)")
    assert "100% of the instructions start with 'summarize'" in msgs[1]
    assert report.stats["diversity"]["leading_words"]["top"][0] == ("summarize", 12)


def test_length_estimate_and_truncation(tmp_path):
    records = [{"instruction": "Short?", "input": "", "output": "Yes."},
               {"instruction": "Long one", "input": "", "output": "word " * 400},
               {"instruction": "长的", "input": "", "output": "字" * 300}]
    report = lint(make(tmp_path, records), seq_len=128)
    assert rules(report, "truncated") == [(1, 2, "warning"), (2, 3, "warning")]
    ln = report.stats["length"]
    assert ln["truncated"] == 2 and ln["seq_len"] == 128 and "estimate" in ln["method"]
    assert approx_tokens(["word " * 400]) == 504  # 2000 chars / 4 + 4 for the message
    assert approx_tokens(["字" * 300]) == 204      # 300 Han / 1.5 + 4
    assert report.stats["length"]["per_record"][1] == approx_tokens(["Long one", "word " * 400])


def test_length_with_tokenizer_matches_the_trainers_rendering(tmp_path):
    from transformers import AutoTokenizer

    from engine.data.tokenize import render_record

    tok = AutoTokenizer.from_pretrained(REPO / "resources" / "demo" / "model")
    ds = make(tmp_path, varied(4))
    report = lint(ds, tokenizer=tok, seq_len=8)
    per = report.stats["length"]["per_record"]
    for i, r in enumerate(ds.records):
        assert per[i] == len(render_record(r.messages(), tok, "auto")["input_ids"])
    ln = report.stats["length"]
    assert ln["truncated"] + ln["left_out"] == 4 and "tokenizer" in ln["method"]


def test_a_record_whose_prompt_fills_seq_len_is_called_left_out_not_truncated(tmp_path):
    """The run leaves such a record out (no answer token in its first seq_len tokens); the check
    said "seq_len cuts off the last N" as for a record that still trains."""
    from transformers import AutoTokenizer

    from engine.data.tokenize import tokenize_records

    tok = AutoTokenizer.from_pretrained(REPO / "resources" / "demo" / "model")
    records = [{"instruction": "Short?", "input": "", "output": "Yes."},
               {"instruction": "Say it", "input": "", "output": "word " * 200},
               {"instruction": "Read this: " + "prompt " * 200, "input": "", "output": "ok"}]
    ds = make(tmp_path, records)
    report = lint(ds, tokenizer=tok, seq_len=64)
    assert rules(report, "truncated") == [(1, 2, "warning")]
    (f,) = [f for f in report.findings if f.rule == "prompt-too-long"]
    assert (f.index, f.line, f.severity) == (2, 3, "error")
    assert "the prompt alone fills seq_len 64" in f.message and "a run leaves this record out" in f.message
    ln = report.stats["length"]
    assert (ln["truncated"], ln["left_out"]) == (1, 1)
    _, stats = tokenize_records(ds.records, tok, "auto", 64)  # what the run does with the same records
    assert (stats.truncated, stats.dropped) == (1, 1)


def test_length_follows_the_chosen_format_and_names_conversations_the_template_refuses(tmp_path):
    from transformers import AutoTokenizer

    from engine.data.tokenize import render_record
    from tests.engine.test_tokenize import GEMMA_LIKE

    tok = AutoTokenizer.from_pretrained(REPO / "resources" / "demo" / "model")
    tok.chat_template = None  # a base model's tokenizer: the format comes from the run's template
    ds = make(tmp_path, varied(4))
    per = lint(ds, tokenizer=tok, template="llama3").stats["length"]["per_record"]
    assert [per[i] for i in range(4)] == [len(render_record(r.messages(), tok, "llama3")["input_ids"])
                                          for r in ds.records]
    tok.chat_template = GEMMA_LIKE
    path = tmp_path / "chats.jsonl"
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant",
                                                                               "content": "yo"}]}) + "\n"
                    + json.dumps({"messages": [{"role": "assistant", "content": "Welcome"},
                                               {"role": "user", "content": "q"},
                                               {"role": "assistant", "content": "a"}]}) + "\n")
    report = lint(load_dataset_file(path), tokenizer=tok)
    assert rules(report, "template-refused") == [(1, 2, "error")]
    (refused,) = [f for f in report.for_record(1) if f.rule == "template-refused"]
    assert refused.message.startswith("the model's chat template refuses this conversation: Conversation roles "
                                      "must alternate")
    assert refused.message.endswith("; a run leaves it out")
    assert report.stats["length"]["per_record"][1] > 0


def test_normalize():
    assert normalize("  Hello,   WORLD!! ") == "hello world"
    assert normalize("你好，世界！") == "你好 世界"


def test_demo_dataset_lints_without_errors():
    path = demo_dataset_path()
    if not path.exists():
        pytest.skip("the demo dataset is not generated yet")
    report = lint(load_dataset_file(path), seq_len=512)
    assert not report.has_errors, [f for f in report.findings if f.severity == "error"][:5]
    assert report.counts["records"] >= 300


def test_answers_the_chat_template_hides_are_flagged_with_a_tokenizer(tmp_path, tiny_model_dir, monkeypatch):
    import importlib

    from transformers import AutoTokenizer

    from tests.engine.test_tokenize import THINK_LAST

    lint_module = importlib.import_module("engine.data.lint")

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    turns = [{"role": "user", "content": f"Q{i}"} if i % 2 == 0 else {"role": "assistant", "content": f"A{i}"}
             for i in range(4)]
    path = tmp_path / "chats.jsonl"
    path.write_text("".join(json.dumps({"messages": turns}) + "\n" for _ in range(3))
                    + json.dumps({"messages": turns[:2]}) + "\n")
    ds = load_dataset_file(path)
    assert not [f for f in lint(ds, tokenizer=tok).findings if f.rule == "hidden-answer"]  # plain ChatML: none
    tok.chat_template = THINK_LAST
    found = [f for f in lint(ds, tokenizer=tok).findings if f.rule == "hidden-answer"]
    assert [(f.line, f.severity) for f in found] == [(1, "warning"), (2, "warning"), (3, "warning")]
    assert "message 2 won't train" in found[0].message and "--per-answer" in found[0].message
    # Only the first few multi-answer records are checked: it is the template's habit.
    monkeypatch.setattr(lint_module, "HIDDEN_ANSWER_SAMPLE", 2)
    found = [f for f in lint_module.lint(ds, tokenizer=tok).findings if f.rule == "hidden-answer"]
    assert [f.line for f in found] == [1, 2, None] and "first 2 of 3 multi-answer records" in found[-1].message


def test_tool_turns_between_answers_are_in_order_and_openai_tool_calls_are_named(tmp_path):
    """ShareGPT's function_call → observation → gpt is the usual tool pattern (it trains); OpenAI's
    tool_calls with null content don't train, and the finding says why instead of 'no content'."""
    report = lint(make(tmp_path, [
        {"conversations": [{"from": "human", "value": "Weather in Oslo?"},
                           {"from": "function_call", "value": '{"name": "weather", "arguments": {"city": "Oslo"}}'},
                           {"from": "observation", "value": '{"temp": 3}'},
                           {"from": "gpt", "value": "It is 3 °C in Oslo."}]},
        {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"},
                           {"from": "gpt", "value": "again"}]},
    ]))
    assert rules(report, "turn-order") == [(1, 2, "warning")]
    report = lint(make(tmp_path, [
        {"messages": [{"role": "user", "content": "2+2?"},
                      {"role": "assistant", "content": None,
                       "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "calc"}}]},
                      {"role": "tool", "tool_call_id": "c1", "content": "4"},
                      {"role": "assistant", "content": "It is 4."}]},
    ], name="tools.jsonl"))
    assert rules(report, "turn-order") == [] and report.findings == []
    report = lint(make(tmp_path, [
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x.png"}}]},
                      {"role": "assistant", "content": "A cat."}]},
    ], name="image.jsonl"))
    (f,) = report.findings
    assert (f.rule, f.severity) == ("wrong-type", "error")
    assert f.message == "messages[0].content has image_url parts; only text parts train; a run leaves this record out"


def test_openai_tool_calls_and_content_parts_train_as_their_text():
    """An assistant's tool_calls (content null) used to train as an empty answer: the call is now
    its JSON, as a ShareGPT function_call turn holds it."""
    from engine.data.records import to_messages

    msgs = to_messages({"messages": [
        {"role": "user", "content": [{"type": "text", "text": "What is "}, {"type": "text", "text": "2+2?"}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "calc", "arguments": '{"expr": "2+2"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "4"},
        {"role": "assistant", "content": "Let me check both.", "tool_calls": [
            {"function": {"name": "a", "arguments": {}}}, {"function": {"name": "b", "arguments": "not json"}}]},
    ]})
    assert [m["content"] for m in msgs] == [
        "What is 2+2?", '{"name": "calc", "arguments": {"expr": "2+2"}}', "4",
        'Let me check both.\n[{"name": "a", "arguments": {}}, {"name": "b", "arguments": "not json"}]']
    sharegpt = to_messages({"conversations": [
        {"from": "human", "value": "What is 2+2?"},
        {"from": "function_call", "value": '{"name": "calc", "arguments": {"expr": "2+2"}}'}]})
    assert sharegpt[1] == msgs[1]


def test_a_template_that_renders_no_record_is_one_finding_not_one_per_record(tmp_path):
    """A .jinja with a filter jinja doesn't have fails the same way on every record: it is the
    template's fault, said once."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(REPO / "resources" / "demo" / "model")
    bad = tmp_path / "bad.jinja"
    bad.write_text("{% for m in messages %}{{ m.content | nosuchfilter }}{% endfor %}")
    report = lint(make(tmp_path, varied(6)), tokenizer=tok, template=str(bad))
    assert rules(report, "template-refused") == []
    (f,) = [f for f in report.findings if f.rule == "template"]
    assert f.severity == "error" and "can't render any record" in f.message and "nosuchfilter" in f.message


def test_a_conversation_conflicts_only_with_one_of_the_same_context_and_an_answer(tmp_path):
    def chat(*turns):
        return {"conversations": [{"from": who, "value": text} for who, text in turns]}

    records = [
        chat(("human", "hi"), ("gpt", "hello")),
        chat(("human", "hi")),  # no answer: reported as missing one, not as another output
        chat(("gpt", "x"), ("human", "hi")),  # nothing before its answer
        chat(("human", "hi"), ("gpt", "hey"), ("human", "how are you?"), ("gpt", "fine")),  # another context
        chat(("human", "hi"), ("gpt", "good day")),  # the same prompt, another answer
    ]
    path = tmp_path / "chat.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    report = lint(load_dataset_file(path))
    assert rules(report, "conflicting-output") == [(4, 5, "warning")]
    assert rules(report, "missing-field") == [(1, 2, "error")]


def test_answer_weights_a_run_cannot_read_or_that_leave_nothing_to_train(tmp_path):
    def conv(*weights):
        turns = []
        for k, w in enumerate(weights):
            turns += [{"from": "human", "value": f"question {k}"},
                      {"from": "gpt", "value": f"answer {k}"} | ({} if w is None else {"weight": w})]
        return {"conversations": turns}

    report = lint(make(tmp_path, [conv(0, 1), conv(1, 0.5), conv(0, False), conv(None), conv(True)]))
    assert rules(report, "wrong-type") == [(1, 2, "error")]
    assert "conversations[3] (assistant) has the weight 0.5; allowed: 0, 1, true or false" in next(
        f.message for f in report.findings if f.rule == "wrong-type")
    assert rules(report, "missing-field") == [(2, 3, "error")]
    assert "every assistant turn has weight 0: nothing to train on" in next(
        f.message for f in report.findings if f.rule == "missing-field")


NOT_JSON = ("which is not a JSON number: Python reads it, but most JSON tools refuse the file (a save writes it "
            "back as it is); write null, a number or a string instead")


@pytest.mark.parametrize("name,text,found", [
    ("d.jsonl", '{"instruction": "a", "output": "b", "score": NaN}\n{"instruction": "NaN Infinity", "output": "d"}\n'
     '{"instruction": "e", "output": "f", "w": [1, -Infinity]}\n',
     [(0, 1, f"line 1, column 46: 'score' is NaN, {NOT_JSON}", "score"),
      (2, 3, f"line 3, column 46: 'w[1]' is -Infinity, {NOT_JSON}", "w")]),
    ("d.json", '[\n  {"instruction": "a", "output": "b",\n   "meta": {"score": Infinity}},\n'
     '  {"instruction": "c", "output": "d", "w": -Infinity}\n]\n',
     [(0, 2, f"line 3, column 22: 'meta.score' is Infinity, {NOT_JSON}", "meta"),
      (1, 4, f"line 4: 'w' is -Infinity, {NOT_JSON}", "w")]),
    ("d.csv", 'instruction,output,history\na,b,"[[""q"", ""r""]]"\nNaN,d,"[[""q"", NaN]]"\n',
     [(1, 3, f"line 3: 'history[0][1]' is NaN, {NOT_JSON}", "history")]),
])
def test_nan_and_infinity_are_a_non_finite_number_warning(tmp_path, name, text, found):
    """Python's json takes NaN, Infinity and -Infinity; other tools refuse the file. The word inside a
    string (and a CSV cell's text) is no number."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    report = lint(load_dataset_file(path))
    assert [(f.index, f.line, f.message, f.key) for f in report.findings if f.rule == "non-finite-number"] == found
    assert all(f.severity == "warning" for f in report.findings if f.rule == "non-finite-number")


def test_a_save_writes_nan_and_infinity_back_as_they_were(tmp_path):
    """Edited or not, a record keeps its NaN and -Infinity literals (json.dumps writes them back), so a
    save changes nothing the file had; the lint warning is what says they are not JSON."""
    path = tmp_path / "d.jsonl"
    path.write_text('{"instruction": "a", "output": "b", "score": NaN}\n'
                    '{"instruction": "c", "output": "d", "w": -Infinity}\n', encoding="utf-8")
    ds = load_dataset_file(path)
    ds.records[0].data = dict(ds.records[0].data, output="B")
    save_dataset_file(ds)
    assert path.read_text(encoding="utf-8") == ('{"instruction": "a", "output": "B", "score": NaN}\n'
                                                '{"instruction": "c", "output": "d", "w": -Infinity}\n')
    assert [f.line for f in lint(load_dataset_file(path)).findings if f.rule == "non-finite-number"] == [1, 2]
