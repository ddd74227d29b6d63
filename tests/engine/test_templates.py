"""Prompt templates: named chat formats, .jinja files, the Alpaca prompt's saved Jinja form."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import RunConfig
from engine.data.templates import (
    FORMATS,
    alpaca_text,
    marker_problems,
    resolve,
    saved_rendering,
    saved_template,
    stops,
)
from engine.data.tokenize import IGNORE_INDEX, render_prompt, render_record
from engine.errors import ConfigErrors, DataError

REPO = Path(__file__).resolve().parents[2]
CONVERSATIONS = [
    [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello!"}],
    [{"role": "system", "content": "  Be brief. "}, {"role": "user", "content": "2+2?"},
     {"role": "assistant", "content": "4"}, {"role": "user", "content": "and 3+3"},
     {"role": "assistant", "content": "6"}],
    [{"role": "user", "content": "look it up"}, {"role": "assistant", "content": "calling"},
     {"role": "tool", "content": "42"}, {"role": "assistant", "content": "It is 42."}],
]


@pytest.fixture(scope="module")
def demo_tok():
    from engine.models import load_tokenizer

    return load_tokenizer("demo")


@pytest.fixture(scope="module")
def bos_tok(tmp_path_factory):
    """A SentencePiece-style tokenizer that adds <s> itself, as Llama 2's and Mistral's do."""
    from tokenizers import processors
    from transformers import AutoTokenizer

    from tests.engine.test_gguf_export import tiny_spm_tokenizer

    out = tmp_path_factory.mktemp("bos-tok")
    tiny_spm_tokenizer(out)
    tok = AutoTokenizer.from_pretrained(out)
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tok.bos_token_id)])
    assert tok("hello")["input_ids"][0] == tok.bos_token_id
    return tok


def answers_trained(tok, conv, template) -> str:
    row = render_record(conv, tok, template)
    return tok.decode([i for i, lab in zip(row["input_ids"], row["labels"], strict=True) if lab != IGNORE_INDEX])


def test_chatml_renders_the_exact_format_and_trains_each_answer_with_its_end_marker(demo_tok):
    conv = CONVERSATIONS[1]
    text = demo_tok.decode(render_record(conv, demo_tok, "chatml")["input_ids"])
    assert text == ("<|im_start|>system\n  Be brief. <|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n"
                    "<|im_start|>assistant\n4<|im_end|>\n<|im_start|>user\nand 3+3<|im_end|>\n"
                    "<|im_start|>assistant\n6<|im_end|>\n")
    assert answers_trained(demo_tok, conv, "chatml") == "4<|im_end|>\n6<|im_end|>\n"
    prompt = demo_tok.decode(render_prompt(demo_tok, conv[:2], "chatml"))
    assert prompt.endswith("<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n")


@pytest.mark.parametrize("name, end, text", [
    ("llama3", "<|eot_id|>", "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
     "<|start_header_id|>user<|end_header_id|>\n\n2+2?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
     "4<|eot_id|>"),
    ("gemma", "<end_of_turn>", "<start_of_turn>user\nBe brief.\n\n2+2?<end_of_turn>\n<start_of_turn>model\n"
     "4<end_of_turn>\n"),
    ("phi3", "<|end|>", "<|system|>\n  Be brief. <|end|>\n<|user|>\n2+2?<|end|>\n<|assistant|>\n4<|end|>\n"),
])
def test_each_named_format_renders_its_turns_and_locates_every_answer(demo_tok, name, end, text):
    conv = CONVERSATIONS[1][:3]
    jinja = resolve(demo_tok, name).jinja
    assert demo_tok.apply_chat_template(conv, chat_template=jinja, tokenize=False) == text
    for c in CONVERSATIONS:
        skipped: list[int] = []
        render_record(c, demo_tok, name, skipped=skipped)
        assert skipped == []
    assert answers_trained(demo_tok, CONVERSATIONS[0], name).startswith("Hello!" + end)


def test_a_format_writes_the_bos_the_tokenizer_adds_on_its_own(demo_tok, bos_tok):
    conv = CONVERSATIONS[0]
    assert render_record(conv, bos_tok, "chatml")["input_ids"][0] == bos_tok.bos_token_id
    assert demo_tok.bos_token_id is None or render_record(conv, demo_tok, "chatml")["input_ids"][0] != \
        demo_tok.bos_token_id


@pytest.mark.parametrize("tok_name", ["demo_tok", "bos_tok"])
def test_the_saved_alpaca_template_renders_the_tokens_training_used(request, tok_name):
    """A merged model or GGUF file formats chats with the saved Jinja; it must give the ids
    training gave (the Alpaca text tokenized with the tokenizer's own special tokens)."""
    tok = request.getfixturevalue(tok_name)
    jinja = saved_template(tok, "alpaca")
    for conv in CONVERSATIONS:
        for upto, gen in ((len(conv), False), (len(conv) - 1, True), (1, True)):
            msgs = conv[:upto]
            ours = tok(alpaca_text(msgs, gen, tok.eos_token or ""), add_special_tokens=True)["input_ids"]
            theirs = tok.apply_chat_template(msgs, chat_template=jinja, add_generation_prompt=gen, tokenize=True,
                                             return_dict=False)
            assert list(theirs) == list(ours)
    assert render_prompt(tok, CONVERSATIONS[0][:1], "alpaca")[-3:] == \
        tok.apply_chat_template(CONVERSATIONS[0][:1], chat_template=jinja, add_generation_prompt=True,
                                tokenize=True, return_dict=False)[-3:]


def test_a_tokenizer_carrying_the_saved_alpaca_template_still_renders_alpaca(demo_tok, tmp_path):
    tok = demo_tok.__class__.from_pretrained(REPO / "resources" / "demo" / "model")
    tok.chat_template = saved_template(tok, "alpaca")
    assert resolve(tok, "auto").alpaca
    tok.save_pretrained(tmp_path)
    assert saved_rendering(tmp_path).alpaca


def test_markers_the_tokenizer_splits_are_named(demo_tok):
    assert marker_problems(demo_tok, "chatml") == []
    bad = marker_problems(demo_tok, "llama3")
    assert [b.split(" ")[0] for b in bad] == ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    assert all("tokens)" in b for b in bad)


def test_stops_are_the_end_marker_as_a_token_or_as_a_string(demo_tok):
    im_end = demo_tok.convert_tokens_to_ids("<|im_end|>")
    assert stops(demo_tok, resolve(demo_tok, "chatml")) == ([im_end], [])
    assert stops(demo_tok, resolve(demo_tok, "llama3")) == ([], ["<|eot_id|>"])
    assert stops(demo_tok, resolve(demo_tok, "alpaca")) == ([], [])


def test_a_jinja_file_renders_and_a_broken_one_names_its_line(demo_tok, tmp_path):
    good = tmp_path / "mine.jinja"
    good.write_text("{% for m in messages %}[{{ m['role'] }}]\n{{ m['content'] }}\n{% endfor %}"
                    "{% if add_generation_prompt %}[assistant]\n{% endif %}", encoding="utf-8")
    row = render_record(CONVERSATIONS[0], demo_tok, str(good))
    assert demo_tok.decode(row["input_ids"]) == "[user]\nHi there\n[assistant]\nHello!\n"
    assert answers_trained(demo_tok, CONVERSATIONS[0], str(good)) == "Hello!\n"

    broken = tmp_path / "broken.jinja"
    broken.write_text("{% for m in messages %}\n{{ m['content'] }\n{% endfor %}", encoding="utf-8")
    with pytest.raises(DataError, match=r"broken\.jinja:2: the chat template is not valid Jinja"):
        render_record(CONVERSATIONS[0], demo_tok, str(broken))
    with pytest.raises(DataError, match="does not exist"):
        render_record(CONVERSATIONS[0], demo_tok, str(tmp_path / "gone.jinja"))


def test_a_template_path_that_is_a_folder_is_a_data_error_naming_it(tmp_path):
    """A folder named x.jinja raised IsADirectoryError: 'Is a directory: ...' from train, a traceback from the
    Train form's check of its fields (which expects DataError)."""
    from engine.data.templates import read_template_file
    from engine.train import data_file_errors

    folder = tmp_path / "mine.jinja"
    folder.mkdir()
    with pytest.raises(DataError) as e:
        read_template_file(folder)
    assert e.value.message == f"the chat template file '{folder}' is a folder, not a file"
    [err] = data_file_errors(RunConfig.from_dict({"template": str(folder)}))
    assert err.key == "template" and "is a folder, not a file" in err.message


def test_config_takes_names_and_jinja_files_relative_to_its_folder(tmp_path):
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "mine.jinja").write_text("{{ messages }}", encoding="utf-8")
    (tmp_path / "run.yaml").write_text("template: t/mine.jinja\n", encoding="utf-8")
    assert RunConfig.load(tmp_path / "run.yaml").template == str((tmp_path / "t" / "mine.jinja").resolve())
    assert RunConfig.from_dict({"template": "llama3"}).template == "llama3"
    with pytest.raises(ConfigErrors, match=r"one of auto, chat, alpaca, chatml, llama3, gemma, phi3 or|"
                       r"did you mean 'chatml'") as e:
        RunConfig.from_dict({"template": "chatm"})
    assert "a .jinja file" in str(e.value) and e.value.errors[0].fix == {"template": "chatml"}


def test_every_named_format_is_offered(demo_tok):
    from engine.config import RunConfig

    assert set(FORMATS) <= set(RunConfig.field_meta()["template"]["choices"])


def one_answer_dataset(path: Path, n: int = 8) -> Path:
    import json

    rows = [{"instruction": "What is the code?", "input": "", "output": "Code 7 blue."}] * n
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_a_run_saves_its_template_and_its_model_answers_in_it_and_stops_at_its_end(tiny_model_dir, tmp_path):
    """Teach the tiny ChatML model the llama3 format (whose markers its tokenizer splits): the
    run warns, final/ carries the llama3 template, and the saved model answers the trained
    question in that format and stops at <|eot_id|> (a string here, not a token)."""
    from engine.data.templates import FORMATS
    from engine.generate import GenerationSettings, Generator
    from tests.engine.test_train import make_cfg, train

    cfg = make_cfg(tiny_model_dir, one_answer_dataset(tmp_path / "one.jsonl"), tmp_path / "run", method="full",
                   template="llama3", max_steps=60, learning_rate=1e-2, lr_scheduler="constant", batch_size=8,
                   seq_len=256)
    result, rec, _ = train(cfg)
    assert result["status"] == "completed"
    warning = [e for e in rec.of("warning") if e.data.get("kind") == "template_markers"]
    assert warning and "<|eot_id|> (8 tokens)" in warning[0].data["message"]
    assert warning[0].data["fix"] == {"add_tokens": ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]}
    # The answers made while training use the run's format and stop at its end too.
    (last,) = [e.data for e in rec.of("samples")]
    assert last["samples"][0]["answer"] == "Code 7 blue." and last["samples"][0]["tokens"] < 40
    final = tmp_path / "run" / "final"
    assert saved_rendering(final).name == "llama3"
    assert (final / "chat_template.jinja").read_text(encoding="utf-8").endswith(FORMATS["llama3"].jinja)

    # llama.cpp, Ollama and LM Studio read the format from the GGUF file.
    from engine.gguf_export import export_gguf
    from tests.engine.test_gguf_export import _fields

    gguf = export_gguf(final, tmp_path / "model.gguf", out_type="f32").path
    assert _fields(gguf)["tokenizer.chat_template"].endswith(FORMATS["llama3"].jinja)

    gen = Generator(str(final), load_in="fp32", device="cpu")
    assert gen.rendering("base").name == "llama3"
    out = gen.generate("What is the code?", settings=GenerationSettings(max_new_tokens=40))
    assert out.text == "Code 7 blue."
    assert out.tokens < 40  # it stopped at the end marker, not at the token limit


def test_the_playground_renders_an_adapter_in_its_runs_template(tiny_model_dir, small_dataset, tmp_path):
    from engine.generate import BASE, Generator
    from tests.engine.test_train import make_cfg, train

    cfg = make_cfg(tiny_model_dir, small_dataset, tmp_path / "run", template="alpaca", max_steps=1, seq_len=256)
    assert train(cfg)[0]["status"] == "completed"
    gen = Generator(str(tiny_model_dir), load_in="fp32", device="cpu")
    name = gen.load_adapter(tmp_path / "run" / "final")
    assert gen.rendering(name).alpaca and not gen.rendering(BASE).alpaca
    alpaca_ids = render_prompt(gen.tokenizer, [{"role": "user", "content": "Hi"}], "alpaca")
    assert gen.prompt_ids("Hi", template=gen.rendering(name)) == alpaca_ids
    assert gen.generate("Hi", name).prompt_tokens == len(alpaca_ids)
    assert gen.rendering(name, "chat").name == "chat"  # a template asked for explicitly wins


def test_a_saved_chat_template_is_read_from_each_file_transformers_writes(tmp_path):
    import json

    from engine.data.templates import saved_chat_template

    jinja = FORMATS["chatml"].jinja
    forms = {"jinja": ("chat_template.jinja", jinja),
             "json": ("chat_template.json", json.dumps({"chat_template": jinja})),
             "config": ("tokenizer_config.json", json.dumps({"chat_template": jinja})),
             "named": ("tokenizer_config.json", json.dumps({"chat_template": [
                 {"name": "tool_use", "template": "x"}, {"name": "default", "template": jinja}]}))}
    for name, (file, text) in forms.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / file).write_text(text, encoding="utf-8")
        assert saved_chat_template(tmp_path / name) == jinja, name
        assert saved_rendering(tmp_path / name).name == "chatml" and saved_rendering(tmp_path / name).end == "<|im_end|>"
    (tmp_path / "none").mkdir()
    (tmp_path / "none" / "tokenizer_config.json").write_text("{not json", encoding="utf-8")
    assert saved_chat_template(tmp_path / "none") is None and saved_rendering(tmp_path / "none") is None
