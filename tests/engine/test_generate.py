"""Generation: many adapters on one base, switching, the worker protocol and the CLI."""

from __future__ import annotations

import json
import shutil
import sys

import pytest

from engine.cli import main as cli_main
from engine.errors import ConfigError, ConfigErrors, ModelError
from engine.events import ERROR, FINISHED, GENERATED, LOADED, READY, TOKEN
from engine.generate import BASE, GenerationClient, GenerationSettings, Generator
from tests.engine.conftest import other_type_adapter

PROMPT = "What should I do today?"
GREEDY = GenerationSettings(max_new_tokens=20)


@pytest.fixture
def gen(runs_home) -> Generator:
    return Generator("demo", load_in="fp32", device="cpu")


def test_two_adapters_trained_on_different_data_answer_differently(gen, runs_home):
    base_text = gen.generate(PROMPT, BASE, GREEDY).text
    gen.load_adapter(runs_home["medical"])
    gen.load_adapter("legal")
    medical = gen.generate(PROMPT, "medical", GREEDY).text
    legal = gen.generate(PROMPT, "legal", GREEDY).text
    assert medical.startswith("Rest, drink water")
    assert legal.startswith("Read the contract twice")
    assert len({base_text, medical, legal}) == 3
    # The base's answer with adapters loaded (inside disable_adapter) is the plain base's.
    assert gen.generate(PROMPT, BASE, GREEDY).text == base_text


def test_switching_changes_the_output_without_reloading_the_base(gen, runs_home):
    model = gen.model
    weight = model.get_input_embeddings().weight
    a = gen.load_adapter(runs_home["medical"])
    b = gen.load_adapter(runs_home["legal"])
    short = GenerationSettings(max_new_tokens=6)
    texts, switches = [], []
    for name in (a, b, a, b):
        r = gen.generate(PROMPT, name, short)
        texts.append(r.text)
        switches.append(r.switch_s)
    assert texts[0] == texts[2] != texts[1] == texts[3]
    assert gen.base_loads == 1
    assert gen.model is model and gen.peft.get_base_model() is model
    assert gen.model.get_input_embeddings().weight is weight  # the same tensors, not a reload
    assert max(switches) < 0.5, switches  # "well under a second"; ~2 ms measured on the tiny model
    # Unloading the last adapter hands back the very same base, adapter-free.
    gen.unload(b)
    gen.unload(a)
    assert gen.peft is None and gen.model is model
    assert not any("lora" in n for n, _ in model.named_modules())
    again = gen.load_adapter(runs_home["legal"])
    assert gen.generate(PROMPT, again, short).text == texts[1]
    assert gen.base_loads == 1


def test_mismatched_base_is_refused(tiny_model_dir, runs_home, tmp_path):
    gen = Generator(str(tiny_model_dir), load_in="fp32", device="cpu")
    with pytest.raises(ModelError, match="can't be used with this base") as e:
        gen.load_adapter(runs_home["medical"])
    assert "hidden_size 128 vs 32" in e.value.message
    # An adapter whose recorded base isn't on this machine is refused by its shapes instead.
    loose = tmp_path / "loose"
    shutil.copytree(runs_home["medical"], loose)
    cfg = json.loads((loose / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = "/nowhere/base"
    (loose / "adapter_config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelError, match="doesn't fit the base"):
        gen.load_adapter(loose)
    assert gen.adapters == {} and gen.peft is None


@pytest.mark.parametrize("kind", ["ia3", "prompt"])
def test_unloading_an_adapter_of_another_type_lets_a_lora_load(kind, gen, runs_home, demo_base, tmp_path):
    base_text = gen.generate(PROMPT, BASE, GREEDY).text
    other = gen.load_adapter(other_type_adapter(demo_base, tmp_path / f"{kind}-adapter", kind))
    assert gen.generate(PROMPT, other, GREEDY).text != base_text
    with pytest.raises(ModelError, match="one adapter type on a base at a time") as e:
        gen.load_adapter(runs_home["medical"])
    assert ("IA3" if kind == "ia3" else "PROMPT_TUNING") in e.value.message and "Unload those first" in e.value.hint
    gen.unload(other)
    assert gen.generate(PROMPT, BASE, GREEDY).text == base_text  # nothing of it left on the base
    medical = gen.load_adapter(runs_home["medical"])
    assert gen.generate(PROMPT, medical, GREEDY).text.startswith("Rest, drink water")
    assert gen.base_loads == 1


def test_cli_generate_takes_mixed_types_in_turns_and_each_adapter_once(runs_home, demo_base, tmp_path, capsys):
    ia3 = other_type_adapter(demo_base, tmp_path / "ia3", "ia3")
    argv = ["generate", "--base", "demo", "--adapter", str(ia3), "--adapter", "medical", "--adapter", "legal",
            "--adapter", str(ia3), "--prompt", PROMPT, "--max_new_tokens", "12"]
    assert cli_main(argv) == 0
    captured = capsys.readouterr()
    headers = [line for line in captured.out.splitlines() if line.startswith("=== ")]
    assert headers == ["=== base: demo ===", f"=== adapter: ia3 ({ia3.resolve()}) ===",
                       f"=== adapter: medical ({runs_home['medical'].resolve()}) ===",
                       f"=== adapter: legal ({runs_home['legal'].resolve()}) ==="]
    assert "Rest, drink water" in captured.out and "Read the contract" in captured.out
    assert "given already: it answers once" in captured.err
    assert "types take turns (IA3: ia3; LORA: medical, legal)" in captured.err


def test_cli_generate_checks_the_adapters_before_loading_the_base(runs_home, tiny_model_dir, tmp_path, capsys,
                                                                  monkeypatch):
    import torch
    from safetensors.torch import load_file

    from engine import adapters as lib

    monkeypatch.setattr(Generator, "_load_base", lambda self: pytest.fail("the base loaded first"))
    gone = tmp_path / "gone"
    shutil.copytree(runs_home["medical"], gone)
    lib.add_adapter(gone)
    shutil.rmtree(gone)
    foreign = tmp_path / "foreign"
    shutil.copytree(runs_home["medical"], foreign)
    cfg = json.loads((foreign / "adapter_config.json").read_text())
    (foreign / "adapter_config.json").write_text(json.dumps({**cfg, "base_model_name_or_path": str(tiny_model_dir)}))
    pickled = tmp_path / "pickled"
    shutil.copytree(runs_home["medical"], pickled)
    torch.save(load_file(pickled / "adapter_model.safetensors"), pickled / "adapter_model.bin")
    (pickled / "adapter_model.safetensors").unlink()
    for ref, why in (("gone", "the folder no longer exists (deleted or moved)"), (str(gone), "no longer exists"),
                     (str(foreign), "can't be used with this base"), (str(pickled), "allow_pickle")):
        assert cli_main(["generate", "--base", "demo", "--adapter", "medical", "--adapter", ref,
                         "--prompt", PROMPT]) == 2
        assert why in capsys.readouterr().err, ref
    assert cli_main(["generate", "--base", "demo", "--prompt", "  "]) == 2
    assert "--prompt is empty" in capsys.readouterr().err


def test_cli_generate_names_a_base_that_is_nothing_as_a_model_or_a_run(studio_home, capsys):
    """`--base nosuchrun` said "model 'nosuchrun': no such folder", though --base takes a run too: a mistyped
    run name sent the user looking for a model folder."""
    run = studio_home / "runs" / "20260101-000000-medical"
    run.mkdir(parents=True)
    (run / "run.yaml").write_text(f"model: demo\noutput_dir: {run}\n", encoding="utf-8")
    (run / "summary.json").write_text(json.dumps({"status": "completed", "run_name": "medical"}), encoding="utf-8")
    assert cli_main(["generate", "--base", "medicall", "--prompt", PROMPT]) == 2
    err = capsys.readouterr().err
    assert err.startswith("finetune-studio generate: --base 'medicall': no model folder, run folder or run of that "
                          "name\n  hint: Did you mean 'medical' (a run)")
    assert "Give a model (a folder with config.json, a Hugging Face id from your cache, or 'demo') or a run" in err
    assert cli_main(["generate", "--base", "dmeo", "--prompt", PROMPT]) == 2
    assert "hint: Did you mean 'demo' (a model)? " in capsys.readouterr().err
    assert cli_main(["generate", "--base", "zzzzzzzz", "--prompt", PROMPT]) == 2
    assert capsys.readouterr().err == (
        "finetune-studio generate: --base 'zzzzzzzz': no model folder, run folder or run of that name\n  hint: Give "
        "a model (a folder with config.json, a Hugging Face id from your cache, or 'demo') or a run (its folder, or a "
        "name from `finetune-studio runs list`).\n")


def test_quantized_base_without_cuda_is_refused_clearly():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; bench/gpu_check_generation.py covers nf4")
    with pytest.raises(ConfigErrors, match="needs a CUDA GPU") as e:
        Generator("demo", load_in="nf4")
    assert e.value.errors[0].key == "load_in" and e.value.errors[0].fix["load_in"] == "fp32"


def test_settings_are_validated_with_the_key_named():
    with pytest.raises(ConfigError, match="'temperature' must be in") as e:
        GenerationSettings.from_dict({"temperature": -1})
    assert e.value.key == "temperature"
    with pytest.raises(ConfigError, match="'top_p' must be in \\(0, 1.0\\]"):
        GenerationSettings.from_dict({"top_p": 0})
    with pytest.raises(ConfigError, match="unknown generation setting 'top_k'"):
        GenerationSettings.from_dict({"top_k": 5})
    with pytest.raises(ConfigError, match="must be an integer"):
        GenerationSettings.from_dict({"max_new_tokens": "many"})
    assert GenerationSettings.from_dict({"temperature": 0}).greedy


def test_sampling_is_reproducible_with_a_seed_and_stop_ends_early(gen, runs_home):
    warm = GenerationSettings(max_new_tokens=12, temperature=1.5, top_p=0.95, seed=7)
    one, two = (gen.generate(PROMPT, BASE, warm).text for _ in range(2))
    assert one == two
    other = gen.generate(PROMPT, BASE, GenerationSettings(max_new_tokens=12, temperature=1.5, seed=8)).text
    assert other != one
    calls = []
    streamed = []
    r = gen.generate(PROMPT, BASE, GenerationSettings(max_new_tokens=40), on_text=streamed.append,
                     should_stop=lambda: calls.append(1) or len(calls) >= 3)
    assert r.stopped and r.tokens == 3
    assert "".join(streamed) == r.text


def test_alpaca_prompt_for_tokenizers_without_a_chat_template(tiny_model_dir, tmp_path):
    plain = tmp_path / "plain"
    shutil.copytree(tiny_model_dir, plain)
    (plain / "chat_template.jinja").unlink(missing_ok=True)
    tok_cfg = json.loads((plain / "tokenizer_config.json").read_text())
    tok_cfg.pop("chat_template", None)
    (plain / "tokenizer_config.json").write_text(json.dumps(tok_cfg))
    gen = Generator(str(plain), load_in="fp32", device="cpu")
    assert not gen.tokenizer.chat_template
    text = gen.tokenizer.decode(gen.prompt_ids("Name a colour."))
    assert text.startswith("Below is an instruction")
    assert text.endswith("### Instruction:\nName a colour.\n\n### Response:\n")


def test_cli_generate_prints_one_block_per_adapter_greedily(runs_home, capsys):
    argv = ["generate", "--base", "demo", "--adapter", "medical", "--adapter", str(runs_home["legal"]),
            "--prompt", PROMPT, "--max_new_tokens", "12"]
    assert cli_main(argv) == 0
    first = capsys.readouterr().out
    headers = [line for line in first.splitlines() if line.startswith("=== ")]
    assert headers == ["=== base: demo ===", f"=== adapter: medical ({runs_home['medical'].resolve()}) ===",
                       f"=== adapter: legal ({runs_home['legal'].resolve()}) ==="]
    assert first.count("tokens/s") == 3 and "Rest, drink water" in first and "Read the contract" in first
    def answers(out: str) -> list[str]:  # everything but the timing lines
        return [line for line in out.splitlines() if not line.startswith("--- ")]

    assert cli_main(argv) == 0
    assert answers(capsys.readouterr().out) == answers(first)  # greedy: the same text again
    assert cli_main([*argv, "--no-base"]) == 0
    assert "=== base" not in capsys.readouterr().out
    assert cli_main(["generate", "--base", "demo", "--adapter", "nope", "--prompt", "x"]) == 2
    assert "adapter 'nope'" in capsys.readouterr().err


@pytest.mark.timeout(180)
def test_worker_process_streams_and_switches_without_reloading(runs_home):
    client = GenerationClient("demo", load_in="fp32", device="cpu")
    client.start()
    try:
        client.load_adapter(runs_home["medical"])
        client.load_adapter(runs_home["legal"], name="contract")
        client.load_adapter("/nowhere/adapter")
        request = client.generate(PROMPT, [BASE, "medical", "contract", "missing"], GREEDY)
        client.send("bogus")
        events = []
        readies = 0
        for ev in client.events(timeout=120):
            events.append(ev)
            readies += ev.type == READY
            if readies == 6:  # start, 3 load_adapter, generate, bogus
                break
    finally:
        code = client.close()
    assert code == 0
    loaded = [e for e in events if e.type == LOADED]
    assert [e.get("adapter") for e in loaded] == [None, "medical", "contract"]
    assert len({e["base_id"] for e in loaded}) == 1 and {e["base_loads"] for e in loaded} == {1}
    errors = [e for e in events if e.type == ERROR]
    assert errors[0]["cmd"] == "load_adapter" and "/nowhere/adapter" in errors[0]["message"]
    assert errors[1]["adapter"] == "missing" and "no adapter named 'missing'" in errors[1]["message"]
    assert errors[2]["key"] == "cmd" and "unknown command 'bogus'" in errors[2]["message"]
    generated = {e["adapter"]: e for e in events if e.type == GENERATED}
    assert list(generated) == [BASE, "medical", "contract"]
    for name, ev in generated.items():
        assert ev["request"] == request and ev["tokens"] > 0 and ev["tokens_per_s"] > 0
        streamed = "".join(e["text"] for e in events if e.type == TOKEN and e["adapter"] == name)
        assert streamed == ev["text"]
    assert generated["medical"]["text"].startswith("Rest, drink water")
    assert generated["contract"]["text"].startswith("Read the contract")
    assert generated["contract"]["switch_s"] < 0.5


def test_worker_reports_a_bad_base_and_exits(tmp_path):
    client = GenerationClient(str(tmp_path / "no-model"), python=sys.executable)
    client.start()
    events = list(client.events(timeout=60))
    kinds = [e.type for e in events if e.type != "log"]
    assert kinds[:2] == [ERROR, FINISHED]
    assert "no such folder" in events[[e.type for e in events].index(ERROR)]["message"]
    assert client.proc.returncode == 2


def test_an_adapter_from_a_default_named_run_loads_under_the_run_name(gen, runs_home, tmp_path):
    # Runs are named <date>-<time>-<method> by default: a name that starts with a digit.
    run = tmp_path / "20261128-125652-lora"
    shutil.copytree(runs_home["medical"].parent, run)
    name = gen.load_adapter(run / "final")
    assert name == "20261128-125652-lora"
    assert gen.generate(PROMPT, name, GREEDY).text.startswith("Rest, drink water")
    with pytest.raises(ConfigError) as e:
        gen.load_adapter(runs_home["legal"], name="legal.v2")
    assert "only letters, digits" in e.value.message
    with pytest.raises(ConfigError) as e:
        gen.load_adapter(runs_home["legal"], name=name)
    assert "already loaded" in e.value.message


@pytest.mark.parametrize("method", ["prefix", "prompt"])
def test_prompt_learning_adapters_generate_with_their_virtual_tokens(method, tiny_model_dir, tmp_path):
    # The generator loads adapters itself (not through engine.methods), so it needs the same
    # generation fix: without it a prefix answered like the base and a prompt adapter re-read
    # its virtual tokens at every step.
    import torch
    from transformers import AutoModelForCausalLM

    from engine.config import RunConfig
    from engine.methods import get_method

    cfg = RunConfig.from_dict({"model": str(tiny_model_dir), "method": method, "num_virtual_tokens": 4,
                               "load_in": "fp32", "mixed_precision": "no"})
    torch.manual_seed(0)
    model = get_method(method).apply(AutoModelForCausalLM.from_pretrained(tiny_model_dir), cfg)
    with torch.no_grad():  # make the virtual tokens matter
        for p in model.parameters():
            if p.requires_grad:
                p.normal_(0.0, 1.0)
    get_method(method).save(model, tmp_path / "final", cfg)

    gen = Generator(str(tiny_model_dir), load_in="fp32", device="cpu")
    name = gen.load_adapter(tmp_path / "final")
    settings = GenerationSettings(max_new_tokens=8)
    got = gen.generate(PROMPT, name, settings).text
    ids = gen.prompt_ids(PROMPT)
    seq = torch.tensor([ids])
    with torch.no_grad():  # greedy decoding without a cache, through PEFT's forward as in training
        for _ in range(8):
            logits = gen.peft(input_ids=seq, attention_mask=torch.ones_like(seq)).logits[:, -1]
            seq = torch.cat([seq, logits.argmax(-1, keepdim=True)], dim=1)
    assert got == gen.tokenizer.decode(seq[0, len(ids):], skip_special_tokens=True)
    with torch.no_grad():
        adapted = gen.peft(input_ids=seq, attention_mask=torch.ones_like(seq)).logits[:, -1]
        with gen.peft.disable_adapter():
            plain = gen.peft(input_ids=seq, attention_mask=torch.ones_like(seq)).logits[:, -1]
    assert not torch.allclose(plain, adapted, atol=1e-3), "the virtual tokens had no effect"


def test_cli_generate_and_merge_take_the_allow_pickle_the_refusal_suggests(runs_home, tmp_path, capsys):
    import torch
    from safetensors.torch import load_file

    pickled = tmp_path / "pickled"
    shutil.copytree(runs_home["medical"], pickled)
    torch.save(load_file(pickled / "adapter_model.safetensors"), pickled / "adapter_model.bin")
    (pickled / "adapter_model.safetensors").unlink()
    argv = ["generate", "--base", "demo", "--adapter", str(pickled), "--prompt", PROMPT, "--max_new_tokens", "8",
            "--no-base"]
    assert cli_main(argv) == 2
    assert "allow_pickle" in capsys.readouterr().err
    assert cli_main([*argv, "--allow_pickle"]) == 0
    assert "Rest, drink" in capsys.readouterr().out
    merge = ["merge", "--base", "demo", "--adapter", str(pickled), "--out", str(tmp_path / "merged")]
    assert cli_main([*merge, "--allow_pickle"]) == 0
    assert (tmp_path / "merged" / "model.safetensors").exists()


# ---------------------------------------------------------------------------- --base given a run
def test_cli_generate_with_a_lora_run_as_base_uses_its_base_and_its_adapter(runs_home, demo_base, capsys):
    run = runs_home["medical"].parent
    explicit = ["generate", "--base", str(demo_base), "--adapter", str(run), "--prompt", PROMPT,
                "--max_new_tokens", "12"]
    assert cli_main(explicit) == 0
    expected = capsys.readouterr().out
    for ref in (str(run), "medical"):  # the run's folder, or its name
        assert cli_main(["generate", "--base", ref, "--prompt", PROMPT, "--max_new_tokens", "12"]) == 0
        got = capsys.readouterr()
        headers = [line for line in got.out.splitlines() if line.startswith("=== ")]
        assert headers == [f"=== base: {demo_base} ===", f"=== adapter: medical ({runs_home['medical'].resolve()}) ==="]
        assert "Rest, drink water" in got.out
        assert [x for x in got.out.splitlines() if not x.startswith("--- ")] == \
               [x for x in expected.splitlines() if not x.startswith("--- ")]
        assert "is a lora run" in got.err and f"--base {demo_base} --adapter {ref}" in got.err
    # Naming the run's adapter again doesn't load it twice.
    assert cli_main(["generate", "--base", str(run), "--adapter", "medical", "--prompt", PROMPT,
                     "--max_new_tokens", "4", "--no-base"]) == 0
    assert capsys.readouterr().out.count("=== adapter") == 1


def test_cli_generate_with_a_full_run_as_base_loads_the_trained_model(tiny_model_dir, tmp_path, capsys):
    run = tmp_path / "full-run"
    shutil.copytree(tiny_model_dir, run / "final")
    (run / "run.yaml").write_text(f"model: {tiny_model_dir}\nmethod: full\n")
    (run / "summary.json").write_text(json.dumps({"status": "completed", "config": {"method": "full"}}))
    assert cli_main(["generate", "--base", str(run), "--prompt", PROMPT, "--max_new_tokens", "4",
                     "--device", "cpu"]) == 0
    got = capsys.readouterr()
    assert [x for x in got.out.splitlines() if x.startswith("=== ")] == [f"=== base: {run / 'final'} ==="]
    assert f"is a full run: generating with the model it trained, {run / 'final'}" in got.err
    # --no-base with it said "generating with the model it trained" and then refused with "--no-base
    # leaves nothing": its model is the base here, and the one line up front says so.
    assert cli_main(["generate", "--base", str(run), "--prompt", PROMPT, "--no-base"]) == 2
    got = capsys.readouterr()
    assert got.out == "" and "generating with" not in got.err and "loaded" not in got.err
    assert got.err.strip().splitlines() == [
        f"finetune-studio generate: --no-base leaves nothing to generate: {run} is a full run, which trained the "
        f"whole model ({run / 'final'}), so that model is the base here and there is no adapter to answer without "
        "it. Drop --no-base to generate with the model it trained, or add --adapter for adapters trained on it."]
    # A model that is no run keeps the short line: it has a base answer, and --no-base left it out.
    assert cli_main(["generate", "--base", str(tiny_model_dir), "--prompt", PROMPT, "--no-base"]) == 2
    assert capsys.readouterr().err == ("finetune-studio generate: --no-base leaves nothing to generate: give at "
                                       "least one --adapter\n")


def test_a_run_without_final_is_refused_with_what_to_do(tiny_model_dir, tmp_path, capsys):
    from engine.models import resolve_model_path

    run = tmp_path / "killed-run"
    shutil.copytree(tiny_model_dir, run / "checkpoint-2")
    (run / "checkpoint-2" / "trainer_state.json").write_text("{}")
    (run / "run.yaml").write_text(f"model: {tiny_model_dir}\nmethod: full\n")
    (run / "summary.json").write_text(json.dumps({"status": "running", "config": {"method": "full"}}))
    assert cli_main(["generate", "--base", str(run), "--prompt", PROMPT]) == 2
    err = capsys.readouterr().err
    assert "has no final/ model or adapter (interrupted)" in err
    assert f"Use its newest checkpoint as the model: {run / 'checkpoint-2'} (step 2)" in err
    assert f"train {run / 'run.yaml'} --resume" in err
    # Wherever else a model is expected (merge --base, a run config's model), a run folder is named as one.
    shutil.copytree(tiny_model_dir, run / "final")
    with pytest.raises(ModelError, match="is a run folder, not a model") as e:
        resolve_model_path(str(run))
    assert e.value.hint == f"Give {run / 'final'} as the model."


def test_a_lora_run_folder_given_as_a_model_names_its_base_and_adapter(runs_home, demo_base, tmp_path, capsys):
    from engine.models import resolve_model_path

    run = runs_home["legal"].parent
    with pytest.raises(ModelError, match="trained an adapter") as e:
        resolve_model_path(str(run))
    assert f"Give {demo_base} as the model and {run / 'final'} as the adapter" in e.value.hint
    # Its final/ (an adapter, not a model) is named as one, with the run's base.
    with pytest.raises(ModelError, match=f"is an adapter, not a model: it was trained on {demo_base}") as e:
        resolve_model_path(str(run / "final"))
    assert f"Give {demo_base} as the model and {run / 'final'} as the adapter" in e.value.hint
    assert cli_main(["generate", "--base", str(run / "final"), "--prompt", PROMPT]) == 2
    assert f"--base {demo_base} --adapter {run / 'final'}" in capsys.readouterr().err
    # Out of its run, an adapter's base is the one PEFT recorded.
    loose = tmp_path / "loose"
    shutil.copytree(run / "final", loose)
    with pytest.raises(ModelError, match="is an adapter, not a model: it was trained on ") as e:
        resolve_model_path(str(loose))
    assert "as the adapter (finetune-studio generate --base " in e.value.hint


def test_batched_greedy_answers_equal_one_by_one_in_the_given_order(gen, runs_home, monkeypatch):
    """generate_greedy_batch (used to score answers in `adapters compare`): left-padded batches of
    uneven prompts give each conversation the answer generate() gives it alone; an out-of-memory
    error halves the batch and retries."""
    import torch

    from engine.data.formats import load_dataset_file
    from engine.paths import demo_dataset_path

    gen.load_adapter(runs_home["legal"])
    records = load_dataset_file(demo_dataset_path()).records[:7]
    convs = [[{"role": "user", "content": r.messages()[-2]["content"]}] for r in records]
    convs.insert(3, [{"role": "user", "content": "Give me advice."}])
    assert len({len(gen.prompt_ids("", messages=c)) for c in convs}) > 3  # uneven: padding matters
    settings = GenerationSettings(max_new_tokens=20, temperature=0.0)
    for who in (BASE, "legal"):
        alone = [gen.generate("", who, settings, messages=c).text for c in convs]
        seen: list[int] = []
        batched, size = gen.generate_greedy_batch(convs, who, max_new_tokens=20, batch_size=3, on_done=seen.append)
        assert batched == alone and size == 3
        assert seen == [3, 6, 8]
    assert batched[3] == "Read the contract twice before you sign it."

    # Out of memory at 3 and at 2: it goes on one at a time, and says so through the size.
    real = type(gen.peft).generate

    def tight(self, *args, **kwargs):
        if kwargs["input_ids"].shape[0] > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(type(gen.peft), "generate", tight)
    again, size = gen.generate_greedy_batch(convs, "legal", max_new_tokens=20, batch_size=3)
    assert again == batched and size == 1
