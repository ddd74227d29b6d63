"""Records into training tokens: answer-only labels, templates, truncation, packing."""

from __future__ import annotations

import pytest
import torch

from engine.data.records import Record
from engine.data.tokenize import IGNORE_INDEX, render_record, tokenize_records
from engine.errors import DataError


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture
def base_tok(tiny_model_dir):
    """The same tokenizer without a chat template, like a base model's."""
    from transformers import AutoTokenizer

    t = AutoTokenizer.from_pretrained(tiny_model_dir)
    t.chat_template = None
    return t


def trained_text(tokenizer, row) -> str:
    return tokenizer.decode([i for i, lab in zip(row["input_ids"], row["labels"], strict=True) if lab != IGNORE_INDEX])


def test_answer_only_labels_with_the_chat_template(tok):
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"},
            {"role": "assistant", "content": "Paris."}]
    row = render_record(msgs, tok)
    prompt = tok.apply_chat_template(msgs[:2], tokenize=True, add_generation_prompt=True, return_dict=False)
    prompt = list(prompt["input_ids"] if hasattr(prompt, "keys") else prompt)
    n = len(prompt)
    assert row["input_ids"][:n] == prompt  # the prompt is a prefix of the full sequence
    assert row["labels"][:n] == [IGNORE_INDEX] * n
    assert row["labels"][n:] == row["input_ids"][n:]
    assert trained_text(tok, row) == "Paris.<|im_end|>\n"


def test_multi_turn_trains_on_every_answer_and_nothing_else(tok):
    msgs = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "Count to two"}, {"role": "assistant", "content": "One, two."}]
    row = render_record(msgs, tok)
    assert trained_text(tok, row) == "Hello!<|im_end|>\nOne, two.<|im_end|>\n"
    # The second user turn sits between two trained spans and is masked.
    labelled = [lab != IGNORE_INDEX for lab in row["labels"]]
    spans = sum(1 for i, x in enumerate(labelled) if x and (i == 0 or not labelled[i - 1]))
    assert spans == 2
    assert "Count to two" not in trained_text(tok, row)


def test_alpaca_template_for_a_tokenizer_without_chat_template(base_tok):
    rec = Record({"instruction": "Translate to French", "input": "cat", "output": "chat"}, line=7)
    row = render_record(rec.messages(), base_tok, "auto")
    text = base_tok.decode(row["input_ids"])
    assert "### Instruction:\nTranslate to French\ncat" in text and "### Response:\nchat" in text
    assert "Below is an instruction" in text
    assert trained_text(base_tok, row) == "chat" + base_tok.eos_token + "\n\n"


def test_alpaca_format_keeps_tool_results_as_prompt_and_trains_the_calls(base_tok):
    # ShareGPT tool use: function_call is trained (the model's output), observation is prompt.
    rec = Record({"conversations": [
        {"from": "human", "value": "Weather in Oslo?"},
        {"from": "function_call", "value": '{"name": "weather", "arguments": {"city": "Oslo"}}'},
        {"from": "observation", "value": "3 C, rain"},
        {"from": "gpt", "value": "Cold and rainy."}]}, line=1)
    row = render_record(rec.messages(), base_tok, "alpaca")
    text = base_tok.decode(row["input_ids"])
    assert "### Observation:\n3 C, rain\n\n### Response:\nCold and rainy." in text
    trained = trained_text(base_tok, row)
    assert '"city": "Oslo"' in trained and "Cold and rainy." in trained
    assert "3 C, rain" not in trained and "Weather in Oslo" not in trained


def test_render_prompt_is_the_training_prompt(tok, base_tok):
    from engine.data.tokenize import render_prompt

    msgs = [{"role": "user", "content": "Capital of France?"}, {"role": "assistant", "content": "Paris."}]
    for t in (tok, base_tok):
        row = render_record(msgs, t)
        prompt = render_prompt(t, msgs[:1])
        assert row["input_ids"][: len(prompt)] == prompt
        assert all(lab == IGNORE_INDEX for lab in row["labels"][: len(prompt)])
        assert row["labels"][len(prompt)] != IGNORE_INDEX


def test_chat_template_requested_but_missing_is_a_data_error_with_fix(base_tok):
    with pytest.raises(DataError) as e:
        render_record([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}], base_tok, "chat")
    assert e.value.fix == {"template": "alpaca"}


def test_a_template_whose_prompt_is_not_a_prefix_is_refused(tiny_model_dir):
    from transformers import AutoTokenizer

    t = AutoTokenizer.from_pretrained(tiny_model_dir)
    # Renders finished assistant turns as 'bot' but prompts with 'assistant': answers can't be located.
    t.chat_template = ("{% for m in messages %}{{ '<|im_start|>' + ('bot' if m['role'] == 'assistant' else m['role'])"
                       " + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
                       "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
    records = [Record({"instruction": "q", "output": "a"}, line=1)]
    rows, stats = tokenize_records(records, t, "auto", 64)
    assert rows == [] and stats.dropped == 1
    assert "not a prefix" in stats.problems[0]["message"] and stats.problems[0]["line"] == 1


# Like Qwen3's: the last answer after the last user turn gets an empty think block; an answer in
# the history is rendered without one. Written here from that behaviour, not copied.
THINK_LAST = ("{%- set ns = namespace(last_user=-1) -%}"
              "{%- for m in messages -%}{%- if m.role == 'user' -%}{%- set ns.last_user = loop.index0 -%}{%- endif -%}"
              "{%- endfor -%}"
              "{%- for m in messages -%}"
              "{%- if m.role == 'assistant' and loop.last and loop.index0 > ns.last_user -%}"
              "{{ '<|im_start|>assistant\n<think>\n\n</think>\n\n' + m.content + '<|im_end|>\n' }}"
              "{%- else -%}{{ '<|im_start|>' + m.role + '\n' + m.content + '<|im_end|>\n' }}{%- endif -%}"
              "{%- endfor -%}"
              "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\n' }}{%- endif -%}")


def test_a_template_that_renders_history_answers_differently_trains_the_answers_it_can_locate(tiny_model_dir):
    from transformers import AutoTokenizer

    t = AutoTokenizer.from_pretrained(tiny_model_dir)
    t.chat_template = THINK_LAST
    single = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
    skipped: list[int] = []
    assert trained_text(t, render_record(single, t, skipped=skipped)) == "<think>\n\n</think>\n\nHello!<|im_end|>\n"
    assert skipped == []
    multi = [*single, {"role": "user", "content": "Count to two"}, {"role": "assistant", "content": "One, two."}]
    row = render_record(multi, t, skipped=skipped)
    # The first answer is rendered without the think block once the conversation goes on: it can't
    # be located as the prefixes would, so only the last answer trains, and the skip is reported.
    assert trained_text(t, row) == "<think>\n\n</think>\n\nOne, two.<|im_end|>\n" and skipped == [1]
    assert t.decode(row["input_ids"]).count("<think>") == 1  # the sequence is the template's own rendering
    rows, stats = tokenize_records([Record({"messages": multi}, line=5), Record({"messages": single}, line=6)],
                                   t, "auto", 128)
    assert len(rows) == 2 and stats.dropped == 0
    assert stats.partial == [{"index": 0, "line": 5, "turns": [1]}] and stats.to_dict()["partial"] == 1


def test_loss_on_the_last_answer_or_on_every_token(tok):
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Count to two"},
            {"role": "assistant", "content": "One, two."}]
    answers = render_record(msgs, tok)
    last = render_record(msgs, tok, loss_on="last_answer")
    every = render_record(msgs, tok, loss_on="all")
    assert answers["input_ids"] == last["input_ids"] == every["input_ids"]  # same text, other labels
    assert trained_text(tok, answers) == "Hello!<|im_end|>\nOne, two.<|im_end|>\n"
    assert trained_text(tok, last) == "One, two.<|im_end|>\n"
    assert every["labels"] == every["input_ids"]
    with pytest.raises(DataError, match="loss_on must be one of answers, last_answer, all"):
        render_record(msgs, tok, loss_on="prompt")
    # A prompt longer than seq_len leaves no answer to train on, but every token still trains with 'all'.
    long_prompt = [Record({"instruction": " ".join(["prompt"] * 80), "output": "x"}, line=1)]
    assert tokenize_records(long_prompt, tok, "auto", 48)[1].dropped == 1
    rows, stats = tokenize_records(long_prompt, tok, "auto", 48, "all")
    assert stats.dropped == 0 and len(rows[0]["input_ids"]) == 48 and IGNORE_INDEX not in rows[0]["labels"]


def test_truncation_is_counted_and_dropped_records_are_listed(tok):
    long_answer = " ".join(["word"] * 80)
    records = [Record({"instruction": "short", "output": "fine"}, line=1),
               Record({"instruction": "short", "output": long_answer}, line=2),
               Record({"instruction": " ".join(["prompt"] * 80), "output": "x"}, line=3),
               Record({"instruction": "no answer here"}, line=4)]
    rows, stats = tokenize_records(records, tok, "auto", 48)
    # Line 3 is left out (its prompt fills seq_len): counted once, as dropped, not also as truncated.
    assert stats.records == 4 and stats.truncated == 1 and stats.dropped == 2
    assert len(rows) == 2 and all(len(r["input_ids"]) <= 48 for r in rows)
    assert len(rows[1]["input_ids"]) == 48 and rows[1]["labels"][-1] != IGNORE_INDEX
    assert [p["line"] for p in stats.problems] == [3, 4]
    assert "longer than seq_len=48" in stats.problems[0]["message"]
    assert "no answer" in stats.problems[1]["message"]
    assert stats.sources == [0, 1]  # which record each row came from (for NaN batch reports)
    assert stats.longest > 48 and stats.trained_tokens == sum(
        sum(1 for x in r["labels"] if x != IGNORE_INDEX) for r in rows)


def test_packed_batch_gives_each_record_its_own_logits(tok, tiny_model_dir):
    """DataCollatorWithFlattening rows: position_ids restart per record, so attention doesn't leak."""
    from transformers import AutoModelForCausalLM, DataCollatorWithFlattening

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    records = [Record({"instruction": "one", "output": "first answer"}, line=1),
               Record({"instruction": "two two", "output": "second"}, line=2)]
    rows, _ = tokenize_records(records, tok, "auto", 64)
    batch = DataCollatorWithFlattening()(rows)
    assert batch["input_ids"].shape[0] == 1
    n0 = len(rows[0]["input_ids"])
    assert batch["position_ids"][0, n0].item() == 0
    assert batch["labels"][0, n0].item() == IGNORE_INDEX  # no loss across the boundary
    with torch.no_grad():
        # No cache, as in training: transformers then reads record boundaries from position_ids.
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits[0]
        alone = [model(input_ids=torch.tensor([r["input_ids"]])).logits[0] for r in rows]
    torch.testing.assert_close(packed[:n0], alone[0], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(packed[n0:], alone[1], rtol=1e-4, atol=1e-4)


# ---- datasets.map over processes, and the tokenized cache


def mixed_records(n: int = 40) -> list[Record]:
    """Short, truncated, prompt-too-long, answerless and multi-turn records, repeated to ``n``."""
    kinds = [{"instruction": "short", "output": "fine"},
             {"instruction": "short", "output": " ".join(["word"] * 80)},
             {"instruction": " ".join(["prompt"] * 80), "output": "x"},
             {"instruction": "no answer here"},
             {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"},
                                {"from": "human", "value": "again"}, {"from": "gpt", "value": "sure"}]}]
    out = []
    for i in range(n):
        d = dict(kinds[i % len(kinds)])
        if "output" in d:
            d["output"] = f"{d['output']} {i}"
        out.append(Record(d, line=i + 1))
    return out


def same(a, b) -> None:
    (rows_a, st_a), (rows_b, st_b) = a, b
    assert rows_a == rows_b
    assert st_a.to_dict() == st_b.to_dict()
    assert (st_a.problems, st_a.partial, st_a.sources, st_a.cut_rows) == \
        (st_b.problems, st_b.partial, st_b.sources, st_b.cut_rows)


def test_records_with_a_wrong_field_are_left_out_and_listed_not_fatal(tok, tmp_path):
    from engine.data.tokenize import describe_problems

    records = [Record({"instruction": "short", "output": "fine"}, line=1),
               Record({"instruction": 3, "output": "a number as the instruction"}, line=2),
               Record({"messages": [{"role": "narrator", "content": "x"}]}, line=3),
               Record({"instruction": "also fine", "output": "yes"}, line=4)]
    for kw in ({"num_proc": 1}, {"cache_dir": tmp_path}):
        rows, stats = tokenize_records(records, tok, "auto", 48, **kw)
        assert stats.records == 4 and stats.dropped == 2 and stats.sources == [0, 3] and len(rows) == 2
        assert [(p["index"], p["line"]) for p in stats.problems] == [(1, 2), (2, 3)]
        assert stats.problems[0]["message"] == "'instruction' is a number, expected text"
        assert stats.problems[1]["message"].startswith("messages[0] has the role 'narrator'; allowed:")
    assert describe_problems(stats.problems, limit=1) == (
        "line 2: 'instruction' is a number, expected text (and 1 more)")


GEMMA_LIKE = ("{% for m in messages %}{% if (m['role'] == 'user') != (loop.index0 % 2 == 0) %}"
              "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
              "{% endif %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
              "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def test_a_conversation_the_chat_template_refuses_is_left_out_and_listed(tiny_model_dir, tmp_path):
    """Gemma's template raises on roles out of order: that record is dropped with the template's
    words, not the whole run."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.chat_template = GEMMA_LIKE
    records = [Record({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]},
                      line=1),
               Record({"messages": [{"role": "assistant", "content": "Welcome"}, {"role": "user", "content": "q"},
                                    {"role": "assistant", "content": "a"}]}, line=2)]
    for kw in ({"num_proc": 1}, {"cache_dir": tmp_path}):
        rows, stats = tokenize_records(records, tok, "chat", 64, **kw)
        assert len(rows) == 1 and stats.sources == [0]
        assert stats.problems == [{"index": 1, "line": 2, "message": "the model's chat template refuses this "
                                   "conversation: Conversation roles must alternate user/assistant/user/assistant/..."}]


def test_datasets_map_over_processes_gives_what_the_loop_gives(tok, monkeypatch):
    import engine.data.tokenize as tk

    records = mixed_records(60)
    plain = tokenize_records(records, tok, "auto", 48, num_proc=1)
    assert plain[1].dropped == 24 and plain[1].truncated == 12
    monkeypatch.setattr(tk, "PARALLEL_FROM", 10)
    same(plain, tokenize_records(records, tok, "auto", 48, num_proc=2))


def test_the_cache_serves_a_repeated_tokenization_and_misses_on_any_change(tok, tmp_path, monkeypatch):
    import engine.data.tokenize as tk

    records = mixed_records()
    plain = tokenize_records(records, tok, "auto", 48, num_proc=1)
    same(plain, tokenize_records(records, tok, "auto", 48, cache_dir=tmp_path))
    assert len(list(tmp_path.iterdir())) == 1

    def boom(*a, **k):
        raise AssertionError("rendered again")

    plain64 = tokenize_records(records, tok, "auto", 64, num_proc=1)
    with monkeypatch.context() as m:  # a hit renders nothing; seq_len is applied after the cache
        m.setattr(tk, "render_record", boom)
        same(plain, tokenize_records(records, tok, "auto", 48, cache_dir=tmp_path))
        same(plain64, tokenize_records(records, tok, "auto", 64, cache_dir=tmp_path))
    changed = [*records[:-1], Record({"instruction": "short", "output": "edited"}, line=40)]
    for args in ((changed, tok, "auto", 48), (records, tok, "alpaca", 48)):
        same(tokenize_records(*args, num_proc=1), tokenize_records(*args, cache_dir=tmp_path))
    same(tokenize_records(records, tok, "auto", 48, "all", num_proc=1),
         tokenize_records(records, tok, "auto", 48, "all", cache_dir=tmp_path))
    assert len(list(tmp_path.iterdir())) == 4


def test_a_damaged_cache_entry_is_rebuilt_and_only_the_newest_entries_are_kept(tok, tmp_path, monkeypatch):
    import engine.data.tokenize as tk

    records = mixed_records()
    plain = tokenize_records(records, tok, "auto", 48, num_proc=1)
    tokenize_records(records, tok, "auto", 48, cache_dir=tmp_path)
    (entry,) = tmp_path.iterdir()
    for f in entry.glob("*.arrow"):
        f.write_bytes(b"not arrow")
    same(plain, tokenize_records(records, tok, "auto", 48, cache_dir=tmp_path))
    assert [p.name for p in tmp_path.iterdir()] == [entry.name]
    same(plain, tokenize_records(records, tok, "auto", 48, cache_dir=tmp_path))  # the rebuilt entry loads

    monkeypatch.setattr(tk, "CACHE_KEEP", 2)
    for k in range(3):
        tokenize_records(records[: 10 + k], tok, "auto", 48, cache_dir=tmp_path)
    assert len(list(tmp_path.iterdir())) == 2


def test_a_resumed_run_reuses_the_tokens_of_its_first_start(tiny_model_dir, small_dataset, tmp_path, monkeypatch):
    import engine.data.tokenize as tk
    from engine.paths import tokenized_cache_dir
    from tests.engine.test_train import make_cfg, train

    cfg = make_cfg(tiny_model_dir, small_dataset, tmp_path / "run", max_steps=2, save_steps=1, eval_split=0.1)
    assert train(cfg)[0]["status"] == "completed"
    assert len(list(tokenized_cache_dir().iterdir())) == 1

    def boom(*a, **k):
        raise AssertionError("tokenized again")

    monkeypatch.setattr(tk, "render_record", boom)
    result, _, _ = train(cfg.replace(max_steps=4), resume=True)
    assert result["status"] == "completed" and result["step"] == 4


def test_no_records_give_no_rows_with_or_without_the_cache(tok, tmp_path):
    rows, stats = tokenize_records([], tok, "auto", 48, cache_dir=tmp_path)
    assert rows == [] and stats.records == 0 and stats.dropped == 0


# ---- A turn's weight (Axolotl's per-turn key): 0 or false makes an answer context


WEIGHTED = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!", "weight": 0},
            {"role": "user", "content": "Count to two"}, {"role": "assistant", "content": "One, two."}]


@pytest.mark.parametrize("zero", [0, False, 0.0])
def test_a_weight_0_answer_is_context_and_the_others_train(tok, zero):
    msgs = [dict(m) for m in WEIGHTED]
    msgs[1]["weight"] = zero
    row = render_record(msgs, tok)
    plain = [{"role": m["role"], "content": m["content"]} for m in msgs]
    assert row["input_ids"] == render_record(plain, tok)["input_ids"]  # the weight never reaches the template
    assert trained_text(tok, row) == "One, two.<|im_end|>\n"
    first = tok.encode("Hello!", add_special_tokens=False)
    at = next(i for i in range(len(row["input_ids"])) if row["input_ids"][i:i + len(first)] == first)
    assert row["labels"][at:at + len(first)] == [IGNORE_INDEX] * len(first)
    # Weight 1 or true, or none, trains as before.
    for one in (1, True, None):
        msgs[1]["weight"] = one
        assert trained_text(tok, render_record(msgs, tok)) == "Hello!<|im_end|>\nOne, two.<|im_end|>\n"


def test_weight_0_never_trains_and_loss_on_picks_among_the_other_answers(tok):
    last_zero = [dict(m) for m in WEIGHTED]
    last_zero[1].pop("weight")
    last_zero[3]["weight"] = 0
    # last_answer: the last answer that trains is the first one here.
    assert trained_text(tok, render_record(last_zero, tok, loss_on="last_answer")) == "Hello!<|im_end|>\n"
    assert trained_text(tok, render_record(WEIGHTED, tok, loss_on="last_answer")) == "One, two.<|im_end|>\n"
    # all: every token but the weight-0 answer's, as Axolotl's train_on_inputs leaves a weight-0 turn out.
    every = render_record(WEIGHTED, tok, loss_on="all")
    untrained = tok.decode([t for t, lab in zip(every["input_ids"], every["labels"], strict=True)
                            if lab == IGNORE_INDEX])
    assert untrained == "Hello!<|im_end|>\n"
    # A weight on a user turn is not the answer's: it is ignored.
    on_user = [dict(m) for m in WEIGHTED]
    on_user[0]["weight"] = 0
    on_user[1].pop("weight")
    assert trained_text(tok, render_record(on_user, tok)) == "Hello!<|im_end|>\nOne, two.<|im_end|>\n"


@pytest.mark.parametrize("bad", [0.5, 2, "no", [0]])
def test_a_weight_other_than_0_1_true_false_names_the_turn_and_the_allowed_values(tok, bad):
    msgs = [dict(m) for m in WEIGHTED]
    msgs[3]["weight"] = bad
    with pytest.raises(DataError, match=r"message 4 \(assistant\) has the weight .*; allowed: 0, 1, true or false"):
        render_record(msgs, tok)
    rec = Record({"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Yo", "weight": bad}]},
                 line=5)
    with pytest.raises(DataError, match=r"conversations\[1\] \(assistant\) has the weight"):
        rec.messages(weights=True)
    assert rec.messages() == [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]


def test_every_answer_weight_0_leaves_nothing_to_train(tok):
    msgs = [dict(m) for m in WEIGHTED]
    msgs[3]["weight"] = False
    for loss_on in ("answers", "last_answer"):
        with pytest.raises(DataError, match="every answer of the record has weight 0, so it has nothing to train on"):
            render_record(msgs, tok, loss_on=loss_on)
    every = render_record(msgs, tok, loss_on="all")  # the prompts still train there
    assert "Hello!" not in trained_text(tok, every) and "Count to two" in trained_text(tok, every)


@pytest.mark.parametrize("blank", ["", "  ", "\n\t"])
def test_an_empty_answer_is_no_answer_it_never_trains(tok, blank):
    """Training on an empty answer teaches the model to stop at once: an empty (or whitespace-only)
    answer is context, and a record whose answers are all empty is refused under any loss_on."""
    msgs = [dict(m) for m in WEIGHTED]
    msgs[1].pop("weight")
    msgs[3]["content"] = blank
    row = render_record(msgs, tok)
    assert trained_text(tok, row) == "Hello!<|im_end|>\n"  # only the answer that has text
    assert trained_text(tok, render_record(msgs, tok, loss_on="last_answer")) == "Hello!<|im_end|>\n"
    every = render_record(msgs, tok, loss_on="all")
    untrained = tok.decode([t for t, lab in zip(every["input_ids"], every["labels"], strict=True)
                            if lab == IGNORE_INDEX])
    assert untrained.strip() == "<|im_end|>"  # the empty answer's end of turn is left out; all else trains
    one = [{"role": "user", "content": "Say something."}, {"role": "assistant", "content": blank}]
    for loss_on in ("answers", "last_answer", "all"):
        with pytest.raises(DataError, match="the answer is empty, so the record has nothing to train on") as e:
            render_record(one, tok, loss_on=loss_on)
        assert "Write the answer" in e.value.hint
    both = [dict(m) for m in msgs]
    both[1]["content"] = " "
    with pytest.raises(DataError, match="all 2 answers are empty"):
        render_record(both, tok)
    # An empty answer beside weight-0 ones: nothing trains, and the message says both.
    mixed = [dict(m) for m in msgs]
    mixed[1]["weight"] = 0
    with pytest.raises(DataError, match=r"has weight 0 or is empty.*1 of them empty"):
        render_record(mixed, tok)


def test_a_file_with_empty_answers_trains_the_rest_and_lists_them(tok, tmp_path):
    """An Alpaca file's records with an empty output are left out and listed by line, never trained."""
    import json

    from engine.data import load_dataset_file

    path = tmp_path / "a.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [
        {"instruction": "Name a colour.", "output": "Blue."},
        {"instruction": "Name a fruit.", "output": ""},
        {"instruction": "Name a tree.", "output": "   "},
        {"instruction": "Name a bird.", "output": "Robin."},
    ]) + "\n")
    rows, stats = tokenize_records(load_dataset_file(path).records, tok, "auto", 128)
    assert len(rows) == 2 and stats.dropped == 2
    assert [(p["line"], p["message"]) for p in stats.problems] == [
        (2, "the answer is empty, so the record has nothing to train on"),
        (3, "the answer is empty, so the record has nothing to train on")]


def test_a_sharegpt_file_trains_by_its_turns_weights(tok, tmp_path):
    """The training path: a ShareGPT file's weight-0 answer is context, a bad weight and an
    all-weight-0 record are left out and listed by line, with the loop and with the cache."""
    import json

    from engine.data import load_dataset_file
    from engine.data.tokenize import describe_problems

    def conv(*answers):
        turns = []
        for k, (text, weight) in enumerate(answers):
            turns.append({"from": "human", "value": f"question {k}"})
            turns.append({"from": "gpt", "value": text} | ({} if weight is None else {"weight": weight}))
        return {"conversations": turns}

    path = tmp_path / "chat.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [
        conv(("A wrong answer.", 0), ("The right one.", 1)),
        conv(("Half.", 0.5), ("Fine.", None)),
        conv(("Context only.", 0), ("More context.", False)),
        conv(("Plain.", None)),
    ]) + "\n")
    records = load_dataset_file(path).records
    for kw in ({"num_proc": 1}, {"cache_dir": tmp_path / "cache"}, {"cache_dir": tmp_path / "cache"}):
        rows, stats = tokenize_records(records, tok, "auto", 128, **kw)
        assert stats.sources == [0, 3] and stats.dropped == 2
        assert trained_text(tok, rows[0]) == "The right one.<|im_end|>\n"
        assert "A wrong answer." in tok.decode(rows[0]["input_ids"])
        assert trained_text(tok, rows[1]) == "Plain.<|im_end|>\n"
        assert [p["line"] for p in stats.problems] == [2, 3]
        assert stats.problems[0]["message"].startswith(
            "conversations[1] (assistant) has the weight 0.5; allowed: 0, 1, true or false")
        assert stats.problems[1]["message"].startswith("every answer of the record has weight 0")
    assert describe_problems(stats.problems).startswith("line 2: conversations[1] (assistant) has the weight 0.5")
