"""add_tokens: a chat format's markers added to the vocabulary, their embedding rows trained
(PEFT trainable tokens for LoRA, every row for full), and every later use of the run (resume,
playground, merge, GGUF, estimate) reading them back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from engine.config import RunConfig
from engine.errors import ConfigErrors, ModelError
from tests.conftest import save_tiny_llama, zero_token_rows
from tests.engine.test_templates import one_answer_dataset
from tests.engine.test_train import make_cfg, train

MARKERS = ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
DEMO_VOCAB = 2048


def test_config_names_what_is_wrong_with_add_tokens():
    with pytest.raises(ConfigErrors) as e:
        RunConfig.from_dict({"add_tokens": ["<a>", "<b>", "<a>"]}).validate()
    assert e.value.errors[0].key == "add_tokens" and "'<a>' more than once" in e.value.errors[0].message
    assert e.value.errors[0].fix == {"add_tokens": ["<a>", "<b>"]}
    with pytest.raises(ConfigErrors) as e:
        RunConfig.from_dict({"add_tokens": ["<a>", " "]}).validate()
    assert "non-empty token strings" in e.value.errors[0].message
    for method in ("ia3", "prefix", "prompt", "adapter", "freeze"):
        with pytest.raises(ConfigErrors) as e:
            RunConfig.from_dict({"add_tokens": ["<a>"], "method": method}).validate()
        (err,) = e.value.errors
        assert err.key == "add_tokens" and f"method '{method}'" in err.message and err.fix == {"method": "lora"}
    for method, load_in in (("full", "bf16"), ("lora", "bf16"), ("qlora", "nf4")):
        RunConfig.from_dict({"add_tokens": ["<a>"], "method": method, "load_in": load_in}).validate()
    assert RunConfig.from_dict({"add_tokens": "<a>"}).add_tokens == ["<a>"]  # one token, as a YAML scalar


def test_tokens_are_added_whole_at_the_next_ids_and_existing_ones_kept(tmp_path):
    from engine.models import add_special_tokens, load_tokenizer

    tok = load_tokenizer("demo", add_tokens=[*MARKERS, "<|im_start|>"])
    assert len(tok) == DEMO_VOCAB + 3
    assert tok.convert_tokens_to_ids(MARKERS) == [DEMO_VOCAB, DEMO_VOCAB + 1, DEMO_VOCAB + 2]
    assert tok.convert_tokens_to_ids("<|im_start|>") < DEMO_VOCAB  # the demo tokenizer has it already
    ids = tok("hi<|eot_id|>", add_special_tokens=False)["input_ids"]
    assert ids[-1] == DEMO_VOCAB + 2 and tok.decode(ids, skip_special_tokens=True) == "hi"
    assert add_special_tokens(tok, ["<|eot_id|>", "<new>"]) == ["<new>"]
    tok.save_pretrained(tmp_path)
    from transformers import AutoTokenizer

    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again.convert_tokens_to_ids([*MARKERS, "<new>"]) == list(range(DEMO_VOCAB, DEMO_VOCAB + 4))


@pytest.fixture(scope="module")
def taught(tmp_path_factory):
    """LoRA on the demo model teaches it the llama3 format with its markers added as tokens
    (checkpoint at step 20, final at 40)."""
    tmp = tmp_path_factory.mktemp("taught")
    cfg = make_cfg("demo", one_answer_dataset(tmp / "one.jsonl"), tmp / "run", template="llama3",
                   add_tokens=MARKERS, max_steps=40, save_steps=20, learning_rate=1e-2, lr_scheduler="constant",
                   batch_size=8, seq_len=256, lora_target_modules="all-linear", lora_r=16, lora_alpha=32)
    result, rec, trained = train(cfg)
    return cfg, result, rec, trained, tmp / "run"


def test_a_lora_run_trains_the_added_rows_and_saves_only_them(taught):
    from safetensors import safe_open

    cfg, result, rec, trained, run = taught
    assert result["status"] == "completed"
    assert not [e for e in rec.of("warning") if e.data.get("kind") == "template_markers"]  # they're tokens now
    started = rec.of("started")[0].data
    assert started["dataset"]["added_tokens"] == MARKERS
    losses = [e.data["loss"] for e in rec.of("step")]
    assert losses[-1] < 0.1 < losses[0]
    (model,) = trained
    layer = model.get_base_model().get_input_embeddings().token_adapter
    assert layer.base_layer.weight.shape[0] == DEMO_VOCAB + 3  # grown to the tokenizer
    delta = layer.trainable_tokens_delta["default"]
    assert delta.shape == (3, 128) and delta.requires_grad
    # The rows moved from their start (mean-of-the-old-rows init) by training.
    assert not torch.allclose(delta.detach(), layer.base_layer.weight[DEMO_VOCAB:].detach())

    for folder in (run / "final", run / "checkpoint-20"):
        with safe_open(str(folder / "adapter_model.safetensors"), "pt") as f:
            extra = {k: f.get_slice(k).get_shape() for k in f.keys() if "lora_" not in k}
        # Just the 3 trained rows: not the whole resized embedding PEFT saves by default.
        assert extra == {"base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta": [3, 128]}
        tok = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
        assert tok  # each keeps the tokenizer that gives the rows their meaning
    acfg = json.loads((run / "final" / "adapter_config.json").read_text(encoding="utf-8"))
    assert acfg["trainable_token_indices"] == {"embed_tokens": [DEMO_VOCAB, DEMO_VOCAB + 1, DEMO_VOCAB + 2]}
    card = (run / "README.md").read_text(encoding="utf-8")  # the run's model card
    assert "- **Added tokens:** `<|start_header_id|>`, `<|end_header_id|>`, `<|eot_id|>` (all new to the vocabulary)" in card


def test_the_saved_adapter_loads_onto_a_fresh_base_with_the_same_logits(taught):
    from peft import AutoPeftModelForCausalLM

    from engine.adapters import load_saved_tokenizer
    from engine.methods import get_method
    from tests.engine.test_train import logits

    cfg, _, _, trained, run = taught
    tok = load_saved_tokenizer(run / "final")
    ids = torch.tensor([tok("<|start_header_id|>user<|end_header_id|>\n\nWhat?<|eot_id|>")["input_ids"]])
    assert (ids >= DEMO_VOCAB).sum() == 3
    want = logits(trained[0], ids)
    base = _demo_base()
    loaded = get_method("lora").load(base, run / "final", cfg)  # grows the fresh base first
    assert torch.allclose(logits(loaded, ids), want, atol=1e-5)
    # The snippet the run's model card gives (PEFT resizes from the saved tokenizer).
    auto = AutoPeftModelForCausalLM.from_pretrained(str(run / "final"), dtype=torch.float32)
    assert torch.allclose(logits(auto, ids), want, atol=1e-5)


def _demo_base():
    from transformers import AutoModelForCausalLM

    from engine.models import resolve_model_path

    return AutoModelForCausalLM.from_pretrained(resolve_model_path("demo"), dtype=torch.float32)


def test_the_playground_answers_with_the_runs_tokens_and_stops_at_the_added_end(taught):
    from engine.generate import BASE, GenerationSettings, Generator

    *_, run = taught
    gen = Generator("demo", load_in="fp32", device="cpu")
    name = gen.load_adapter(run / "final")
    assert gen._rows() == DEMO_VOCAB + 3 and gen.base_rows == DEMO_VOCAB
    assert gen.tokenizer_for(name).convert_tokens_to_ids("<|eot_id|>") == DEMO_VOCAB + 2
    assert len(gen.tokenizer_for(BASE)) == DEMO_VOCAB
    out = gen.generate("What is the code?", name, GenerationSettings(max_new_tokens=40))
    assert out.text == "Code 7 blue."
    answer = gen.tokenizer_for(name)("Code 7 blue.", add_special_tokens=False)["input_ids"]
    assert out.tokens == len(answer) + 1  # stopped at <|eot_id|>, one token now
    prompt = gen.prompt_ids("What is the code?", template=gen.rendering(name), adapter=name)
    # user and assistant headers (2 markers each) and the end of the user turn, each one token
    assert sum(i >= DEMO_VOCAB for i in prompt) == 5
    # The base can't produce the rows it doesn't have words for.
    assert gen._suppress(gen.tokenizer_for(BASE)) == {"suppress_tokens": [DEMO_VOCAB, DEMO_VOCAB + 1, DEMO_VOCAB + 2]}
    assert gen._suppress(gen.tokenizer_for(name)) == {}
    gen.generate("What is the code?", BASE, GenerationSettings(max_new_tokens=8))


def test_an_adapter_adding_more_tokens_after_another_is_refused_with_the_way_out(taught, tmp_path):
    import shutil

    from engine.generate import Generator

    *_, run = taught
    more = tmp_path / "more"
    shutil.copytree(run / "final", more)
    acfg = json.loads((more / "adapter_config.json").read_text(encoding="utf-8"))
    acfg["trainable_token_indices"] = {"embed_tokens": [DEMO_VOCAB + 5]}
    (more / "adapter_config.json").write_text(json.dumps(acfg), encoding="utf-8")
    gen = Generator("demo", load_in="fp32", device="cpu")
    gen.load_adapter(run / "final")
    with pytest.raises(ModelError) as e:
        gen.load_adapter(more)
    assert "adds more tokens" in e.value.message and "first" in e.value.hint


def test_a_merge_grows_the_model_and_keeps_the_runs_tokenizer(taught, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from engine.adapters import merge_adapters
    from engine.gguf_export import lora_gguf_problem
    from tests.engine.test_train import logits

    _, _, _, trained, run = taught
    out = merge_adapters("demo", [str(run / "final")], tmp_path / "merged", dtype="fp32")
    merged = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(out)
    assert merged.get_input_embeddings().weight.shape[0] == len(tok) == DEMO_VOCAB + 3
    ids = torch.tensor([tok("x<|eot_id|>y")["input_ids"]])
    assert torch.allclose(logits(merged, ids), logits(trained[0], ids), atol=1e-4)
    with pytest.raises(ModelError, match="combining"):
        merge_adapters("demo", [str(run / "final")], tmp_path / "m2", weights=[0.5])
    assert "can't add rows to its base's embeddings" in lora_gguf_problem(run / "final")


def test_a_resumed_run_reads_its_rows_back(taught, tmp_path):
    import shutil

    cfg, _, _, _, run = taught
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    shutil.rmtree(copy / "final")
    for ckpt in ("checkpoint-40",):
        shutil.rmtree(copy / ckpt)
    result, rec, trained = train(cfg.replace(output_dir=str(copy)), resume=True)
    assert result["status"] == "completed"
    assert [e.data["step"] for e in rec.of("step")] == list(range(21, 41))
    assert rec.of("step")[0].data["loss"] < 0.1  # it goes on from the trained rows, not from a fresh start


def test_full_fine_tuning_trains_every_row_of_the_grown_vocabulary(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg = make_cfg(tiny_model_dir, one_answer_dataset(tmp_path / "one.jsonl"), tmp_path / "run", method="full",
                   template="llama3", add_tokens=MARKERS, max_steps=2, seq_len=256)
    result, _, trained = train(cfg)
    assert result["status"] == "completed"
    final = tmp_path / "run" / "final"
    model = AutoModelForCausalLM.from_pretrained(final)
    assert model.get_input_embeddings().weight.shape[0] == len(AutoTokenizer.from_pretrained(final)) == DEMO_VOCAB + 3
    assert trained[0].get_input_embeddings().weight.requires_grad
    # Its GGUF file carries the added tokens: llama.cpp reads the markers as the same single tokens.
    from engine.gguf_export import export_gguf
    from tests.engine.test_gguf_export import _logits

    gguf = export_gguf(final, tmp_path / "m.gguf", out_type="f32").path
    text = "<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>"
    ids = AutoTokenizer.from_pretrained(tmp_path, gguf_file="m.gguf")(text).input_ids
    assert ids == AutoTokenizer.from_pretrained(final)(text).input_ids and DEMO_VOCAB + 2 in ids
    assert (_logits(final, None) - _logits(final, gguf)).abs().max().item() < 1e-5


def test_a_split_marker_warning_offers_add_tokens_where_the_method_can_train_them(tmp_path):
    from engine.data.templates import resolve
    from engine.events import WARNING
    from engine.models import load_tokenizer
    from engine.train import _warn_template
    from tests.engine.test_train import Recorder

    tok = load_tokenizer("demo")
    for method, fix in (("lora", {"add_tokens": MARKERS}), ("ia3", {"template": "chat"})):
        rec = Recorder()
        _warn_template(resolve(tok, "llama3"), tok, RunConfig.from_dict({"method": method}), rec)
        (w,) = rec.of(WARNING)
        assert w.data["fix"] == fix and "add_tokens" in w.data["hint"]


def test_an_untied_head_trains_its_rows_too(tmp_path):
    """A model with a separate output head (Llama 2, Mistral) must learn to write the new tokens,
    not only read them: the head's rows train and save as well."""
    from safetensors import safe_open

    from engine.generate import Generator

    model_dir = save_tiny_llama(tmp_path / "untied", tied=False)
    cfg = make_cfg(model_dir, one_answer_dataset(tmp_path / "one.jsonl"), tmp_path / "run", template="llama3",
                   add_tokens=MARKERS, max_steps=2, seq_len=256)
    result, _, trained = train(cfg)
    assert result["status"] == "completed"
    final = tmp_path / "run" / "final"
    with safe_open(str(final / "adapter_model.safetensors"), "pt") as f:
        rows = {k.split(".token_adapter")[0]: f.get_slice(k).get_shape() for k in f.keys() if "token_adapter" in k}
    assert rows == {"base_model.model.model.embed_tokens": [3, 32], "base_model.model.lm_head": [3, 32]}
    gen = Generator(str(model_dir), load_in="fp32", device="cpu")
    name = gen.load_adapter(final)
    assert gen.model.get_output_embeddings().weight.shape[0] == DEMO_VOCAB + 3
    assert gen.generate("Hi", name).tokens > 0


def test_the_estimate_counts_the_trained_rows_and_the_matrices_peft_rebuilds(tmp_path):
    """The structure's trainable count is the real run's; the head matrix PEFT rebuilds each
    forward is what autograd saves for backward (measured on the CPU with saved-tensor hooks)."""
    from engine.memory import Setup, estimate
    from engine.memory.structure import clear_cache, meta_model, model_structure
    from engine.memory.terms import token_matrix_bytes
    from engine.methods import get_method
    from tests.engine.test_memory import _real_model, _tiny_config

    d = tmp_path / "tiny"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(_tiny_config(False)), encoding="utf-8")
    clear_cache()
    cfg = RunConfig.from_dict({"model": str(d), "method": "lora", "add_tokens": MARKERS, "load_in": "fp32",
                               "mixed_precision": "no", "batch_size": 2, "seq_len": 48})
    plain = cfg.replace(add_tokens=[])
    st, st0 = model_structure(cfg), model_structure(plain)
    vocab, hidden = st.vocab, st.hidden
    assert st.token_rows == 3 and st0.token_rows == 0
    assert st.trainable_params - st0.trainable_params == 2 * 3 * hidden  # embedding and head rows
    model = get_method("lora").apply(_real_model(d), cfg, train_tokens=[vocab - 3, vocab - 2, vocab - 1])
    assert model.get_nb_trainable_parameters()[0] == st.trainable_params
    assert meta_model(d).get_input_embeddings().weight.shape[0] == vocab

    saved: dict[int, tuple] = {}
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}

    def pack(t):
        if t.untyped_storage().data_ptr() not in params:
            saved[t.untyped_storage().data_ptr()] = tuple(t.shape), t.untyped_storage().nbytes()
        return t

    ids = torch.randint(0, vocab, (2, 48), generator=torch.Generator().manual_seed(0))
    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(input_ids=ids, labels=ids)
    copies = [n for shape, n in saved.values() if shape in ((vocab, hidden), (hidden, vocab))]  # W or its .t()
    assert copies == [token_matrix_bytes(st, Setup.from_config(cfg))]  # the head's rebuilt matrix

    with_rows, without = estimate(cfg), estimate(plain)
    assert with_rows.breakdown["temporaries"] >= token_matrix_bytes(st, Setup.from_config(cfg))
    assert with_rows.peak_bytes > without.peak_bytes
    assert any("add_tokens" in n for n in with_rows.notes)


def test_an_audit_scores_the_run_on_its_own_tokens(taught, tiny_model_dir, tmp_path):
    from engine.adapters import load_saved_tokenizer
    from engine.audit import audit_run

    *_, run = taught
    audit = audit_run(run, device="cpu", compare_base=True)
    answer = load_saved_tokenizer(run / "final")("Code 7 blue.", add_special_tokens=False)["input_ids"]
    (rec,) = {(r.loss < 0.1, r.tokens) for r in audit.records}  # 8 copies of the one record
    assert rec == (True, len(answer) + 1)  # the answer and its one <|eot_id|> token (not 8 pieces), learnt
    assert all(r.base_loss > 1 for r in audit.records)
    # A full run's base is grown to the tokens for its side of the comparison.
    cfg = make_cfg(tiny_model_dir, one_answer_dataset(tmp_path / "one.jsonl"), tmp_path / "full", method="full",
                   template="llama3", add_tokens=MARKERS, max_steps=1, seq_len=256)
    assert train(cfg)[0]["status"] == "completed"
    assert all(r.base_loss is not None for r in audit_run(tmp_path / "full", device="cpu", compare_base=True).records)


def test_a_comparison_on_losses_refuses_an_adapter_with_added_tokens(taught):
    from engine.compare import compare_adapters
    from engine.errors import StudioError

    *_, run = taught
    with pytest.raises(StudioError) as e:
        compare_adapters([str(run / "final")], "demo", limit=2)
    assert "added tokens (<|start_header_id|>, <|end_header_id|>, <|eot_id|>)" in e.value.message
    assert "playground" in e.value.hint


@pytest.fixture
def zeroed_chatml_model(tiny_model_dir, tmp_path) -> Path:
    """The tiny model with the rows of <|im_start|> and <|im_end|> zeroed, as a base model ships
    chat tokens it never trained (Llama 3 base's <|eot_id|>)."""
    import shutil

    out = tmp_path / "zeroed"
    shutil.copytree(tiny_model_dir, out)
    return zero_token_rows(out, ["<|im_start|>", "<|im_end|>"])


def test_untrained_format_tokens_are_named_with_add_tokens_as_the_fix(zeroed_chatml_model, tmp_path):
    data = one_answer_dataset(tmp_path / "one.jsonl")
    result, rec, _ = train(make_cfg(zeroed_chatml_model, data, tmp_path / "a", template="chatml", max_steps=1))
    assert result["status"] == "completed"
    (w,) = [e.data for e in rec.of("warning") if e.data.get("kind") == "untrained_tokens"]
    assert "<|im_start|>, <|im_end|> have untrained embeddings" in w["message"]
    assert w["fix"] == {"add_tokens": ["<|im_start|>", "<|im_end|>"]}
    # Taking the fix: their rows train (PEFT trainable tokens on rows that exist), and no warning.
    result, rec, trained = train(make_cfg(zeroed_chatml_model, data, tmp_path / "b", template="chatml",
                                          max_steps=2, add_tokens=["<|im_start|>", "<|im_end|>"]))
    assert result["status"] == "completed" and not [e for e in rec.of("warning")
                                                    if e.data.get("kind") == "untrained_tokens"]
    assert rec.of("started")[0].data["dataset"]["added_tokens"] == []  # nothing new: only trained
    delta = trained[0].get_base_model().get_input_embeddings().token_adapter.trainable_tokens_delta["default"]
    assert delta.shape == (2, 32) and float(delta.detach().abs().sum()) > 0
    # A method that can't train rows is told which can.
    _, rec, _ = train(make_cfg(zeroed_chatml_model, data, tmp_path / "c", template="chatml", method="ia3",
                               max_steps=1))
    (w,) = [e.data for e in rec.of("warning") if e.data.get("kind") == "untrained_tokens"]
    assert "fix" not in w or not w["fix"]
    assert "use lora, qlora or full with add_tokens" in w["hint"]


def test_the_check_before_a_run_reads_the_rows_from_the_files_and_says_what_the_run_would(
        zeroed_chatml_model, tmp_path):
    """The Train area's check: no model loaded, a few thousand rows read from the safetensors files,
    and the same warning (message, hint, fix) as the run gives once it has loaded the model."""
    from engine.train import check_format_tokens

    cfg = make_cfg(zeroed_chatml_model, one_answer_dataset(tmp_path / "one.jsonl"), tmp_path / "a",
                   template="chatml", max_steps=1)
    before = check_format_tokens(cfg)
    assert before["tokens"] == ["<|im_start|>", "<|im_end|>"]
    _, rec, _ = train(cfg)
    (during,) = [e.data for e in rec.of("warning") if e.data.get("kind") == "untrained_tokens"]
    assert {k: before[k] for k in ("kind", "message", "hint", "fix")} == {k: during[k] for k in
                                                                        ("kind", "message", "hint", "fix")}
    assert check_format_tokens(cfg.replace(add_tokens=["<|im_start|>", "<|im_end|>"])) is None
    # The Alpaca prompt has no markers, but ends each answer with the tokenizer's EOS: <|im_end|> here.
    assert check_format_tokens(cfg.replace(template="alpaca"))["tokens"] == ["<|im_end|>"]
    assert check_format_tokens(cfg.replace(method="ia3"))["fix"] == {}
    (zeroed_chatml_model / "model.safetensors").rename(zeroed_chatml_model / "elsewhere.bin")
    assert check_format_tokens(cfg) is None  # no safetensors: the run checks once it has loaded the model


def test_the_check_finds_an_untrained_row_of_a_separate_head_in_a_sharded_checkpoint(tmp_path):
    from safetensors.torch import load_file, save_file
    from transformers import AutoTokenizer

    from engine.train import check_format_tokens

    model_dir = save_tiny_llama(tmp_path / "untied", tied=False, max_shard_size="100KB")
    tok = AutoTokenizer.from_pretrained(model_dir)
    shards = sorted(model_dir.glob("model-*.safetensors"))
    assert len(shards) > 1
    (head,) = [f for f in shards if "lm_head.weight" in load_file(str(f))]
    weights = load_file(str(head))
    weights["lm_head.weight"][tok.convert_tokens_to_ids("<|im_end|>")] = 0.0
    save_file(weights, str(head), metadata={"format": "pt"})
    cfg = RunConfig.from_dict({"model": str(model_dir), "template": "chatml", "method": "lora"})
    assert check_format_tokens(cfg)["tokens"] == ["<|im_end|>"]


def test_trained_format_tokens_raise_no_warning(tiny_model_dir, tmp_path):
    _, rec, _ = train(make_cfg(tiny_model_dir, one_answer_dataset(tmp_path / "one.jsonl"), tmp_path / "r",
                               template="chatml", max_steps=1))
    assert not [e for e in rec.of("warning") if e.data.get("kind") == "untrained_tokens"]


def test_two_ddp_processes_grow_and_train_the_same_rows(small_dataset, tmp_path):
    """Under ``accelerate launch`` (2 CPU processes, gloo) each rank adds the tokens at the same ids
    and grows its embeddings alike; the run saves the trained rows once.

    Rank 1 reaches the run folder 4 s after rank 0, as on a loaded machine: it must not find the
    run.yaml rank 0 has just written and refuse the folder as another run's."""
    import os
    import subprocess
    import sys

    from safetensors import safe_open

    repo = Path(__file__).resolve().parents[2]
    run_yaml = tmp_path / "run.yaml"
    RunConfig.from_dict({"model": "demo", "dataset": str(small_dataset), "method": "lora", "load_in": "fp32",
                         "mixed_precision": "no", "device": "cpu", "max_steps": 2, "seq_len": 128, "batch_size": 2,
                         "learning_rate": 0.01, "template": "llama3", "add_tokens": MARKERS, "sample_answers": 0,
                         "output_dir": str(tmp_path / "run")}).save(run_yaml)
    late = tmp_path / "late_rank"
    late.mkdir()
    (late / "sitecustomize.py").write_text(
        "import os\n"
        "if os.environ.get('LOCAL_RANK') == '1':\n"
        "    import time\n"
        "    from engine import precision\n"
        "    checked = precision.check_model\n"
        "    precision.check_model = lambda *a, **k: (time.sleep(4), checked(*a, **k))[1]\n")
    proc = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                           "-m", "engine.train", str(run_yaml)], capture_output=True, text=True, timeout=400,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join([str(late), str(repo)]),
                               "OMP_NUM_THREADS": "1"}, cwd=repo)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["world_size"] == 2
    with safe_open(str(tmp_path / "run" / "final" / "adapter_model.safetensors"), "pt") as f:
        delta = f.get_tensor("base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta")
    assert delta.shape == (3, 128) and torch.isfinite(delta).all()


def test_the_library_card_names_the_prompt_format_and_the_added_tokens(taught):
    from engine.adapters import _card_readme, read_card

    *_, run = taught
    card = read_card(run / "final")
    assert card.extra["prompt_format"] == "llama3" and card.extra["added_tokens"] == MARKERS
    readme = _card_readme(card)
    assert "| Prompt format | llama3 |" in readme
    assert "| Added tokens | `<|start_header_id|>`, `<|end_header_id|>`, `<|eot_id|>` |" in readme
    assert "base.resize_token_embeddings(len(tokenizer))" in readme


def test_the_terminal_shows_a_warnings_hint_and_fix(capsys):
    import sys

    from engine.events import WARNING
    from engine.train import _print_event

    _print_event(WARNING, {"kind": "template_markers", "message": "template llama3: split markers",
                           "hint": "Add them as tokens", "fix": {"add_tokens": MARKERS}}, sys.stdout)
    out = capsys.readouterr().out.splitlines()
    assert out == ["warning: template llama3: split markers", "  hint: Add them as tokens",
                   "  fix: --add_tokens '[\"<|start_header_id|>\", \"<|end_header_id|>\", \"<|eot_id|>\"]'"]


def test_the_estimate_process_loads_a_tokenizer_once_for_the_formats_tried_on_one_model(
        zeroed_chatml_model, tmp_path, monkeypatch):
    """The Train area asks again at each change of format: the child keeps the last tokenizer (same
    folder, same add_tokens) and answers as a fresh load would."""
    import io

    import engine.models
    from gui.train.estimate_worker import serve

    loads = []
    real = engine.models.load_tokenizer
    monkeypatch.setattr(engine.models, "load_tokenizer", lambda *a, **k: loads.append(k) or real(*a, **k))
    cfg = make_cfg(zeroed_chatml_model, one_answer_dataset(tmp_path / "one.jsonl"), tmp_path / "a",
                   template="chatml", max_steps=1)
    asks = [cfg, cfg.replace(template="alpaca"), cfg.replace(template="chatml"),
            cfg.replace(add_tokens=["<|im_start|>", "<|im_end|>"])]
    out = io.StringIO()
    serve(io.StringIO("".join(json.dumps({"call": "format_tokens", "config": c.to_dict()}) + "\n" for c in asks)),
          out)
    answers = [json.loads(line)["result"] for line in out.getvalue().splitlines()]
    assert [a and a["tokens"] for a in answers] == [["<|im_start|>", "<|im_end|>"], ["<|im_end|>"],
                                                   ["<|im_start|>", "<|im_end|>"], None]
    assert [k["add_tokens"] for k in loads] == [[], ["<|im_start|>", "<|im_end|>"]]  # 3 formats, one load
