"""The adapter library: cards, the base-match rule, merge, combine and export."""

from __future__ import annotations

import json
import shutil
from argparse import Namespace
from pathlib import Path

import pytest

from engine import adapters as lib
from engine.errors import ConfigError, ModelError


def _logits(model, ids):
    import torch

    with torch.no_grad():
        return model(input_ids=ids).logits


def _prompt_ids(base_dir: Path):
    import torch
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base_dir)
    ids = tok.apply_chat_template([{"role": "user", "content": "What should I do today?"}], tokenize=True,
                                  add_generation_prompt=True, return_dict=False)
    ids = ids["input_ids"] if hasattr(ids, "keys") else ids
    return torch.tensor([list(ids)])


# ---------------------------------------------------------------------------- Library
def test_library_lists_run_adapters_with_full_cards(runs_home, demo_base):
    cards = {c.name: c for c in lib.list_adapters()}
    assert set(cards) == {"medical", "legal"}
    card = cards["medical"]
    assert card.source == "run"
    assert Path(card.path) == runs_home["medical"].resolve()
    assert Path(card.base_model).resolve() == demo_base.resolve()
    assert (card.method, card.peft_type, card.rank, card.alpha) == ("lora", "LORA", 4, 8)
    assert {"q_proj", "v_proj", "down_proj"} <= set(card.targets)
    assert (card.dataset_hash, card.dataset_records) == ("sha256:medical", 4)
    assert (card.final_loss, card.best_eval_loss) == (0.123, 0.456)
    assert card.date and card.date[:2] == "20"
    weights = runs_home["medical"] / "adapter_model.safetensors"
    assert card.size_bytes >= weights.stat().st_size > 0
    assert card.loadable and card.problem is None


def test_added_folder_is_remembered_and_removable(trained_runs, tmp_path, studio_home):
    folder = tmp_path / "my-adapter"
    shutil.copytree(trained_runs["legal"] / "final", folder)
    card = lib.add_adapter(folder)
    assert card.source == "added" and card.name == "my-adapter"
    stored = json.loads((studio_home / lib.LIBRARY_FILE).read_text())
    assert stored["added"] == [str(folder.resolve())]
    assert [c.name for c in lib.list_adapters()] == ["my-adapter"]
    # Adding it again doesn't duplicate it.
    lib.add_adapter(folder)
    assert len(lib.list_adapters()) == 1
    # A folder that vanished stays listed with its problem, so the user can remove it.
    shutil.rmtree(folder)
    (gone,) = lib.list_adapters()
    assert not gone.loadable and "no longer exists (deleted or moved)" in gone.problem
    assert f"adapters remove {folder.resolve()}" in gone.problem
    # Named by what the list shows, or by its path: the same reason and the remedy, not "no such adapter".
    for ref in ("my-adapter", str(folder)):
        with pytest.raises(ModelError, match="no longer exists") as e:
            lib.resolve_adapter(ref)
        assert "adapters remove" in e.value.hint
    assert lib.remove_adapter(folder)
    assert lib.list_adapters() == []


def test_non_adapter_folder_is_refused_with_a_clear_message(tmp_path):
    with pytest.raises(ModelError, match="there is no folder") as e:
        lib.add_adapter(tmp_path / "nonexistent")
    assert "adapter_config" not in e.value.message
    with pytest.raises(ModelError, match="no adapter_config.json"):
        lib.read_card(tmp_path)
    (tmp_path / "adapter_config.json").write_text('{"peft_type": "LORA",\n "r": }')
    with pytest.raises(ModelError, match=r"adapter_config.json:2:\d+: invalid JSON"):
        lib.read_card(tmp_path)


def test_resolve_adapter_by_run_name_folder_and_run_folder(runs_home):
    final = runs_home["legal"].resolve()
    assert lib.resolve_adapter("legal") == final
    assert lib.resolve_adapter(final) == final
    assert lib.resolve_adapter(final.parent) == final
    with pytest.raises(ModelError, match="Known adapters: legal, medical"):
        lib.resolve_adapter("nope")
    # A run's run_name, as `runs show` takes it: the newest run of that name.
    older, newer = (final.parents[1] / f"2026120{d}-101500-clinic" for d in (1, 2))
    for run in (older, newer):
        shutil.copytree(runs_home["medical"].parent, run)
    assert lib.resolve_adapter("clinic") == (newer / "final").resolve()


def test_cli_list_table_and_json(runs_home, capsys):
    assert lib.cli_list(Namespace(json=False)) == 0
    table = capsys.readouterr().out
    assert "medical" in table and "legal" in table and "demo" in table and "0.4560" in table
    assert lib.cli_list(Namespace(json=True)) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in rows} == {"medical", "legal"}
    assert all(r["rank"] == 4 and r["dataset_records"] == 4 for r in rows)


# ---------------------------------------------------------------------------- Base match
def test_base_match_rule(runs_home, demo_base, tiny_model_dir, tmp_path):
    medical = runs_home["medical"]
    exact = lib.check_base_match(medical, "demo")
    assert exact.ok is True and exact.exact

    # Same config in another folder (a copy): fits, but noted as not the same folder.
    copy = tmp_path / "demo-copy"
    shutil.copytree(demo_base, copy)
    other = lib.check_base_match(medical, copy)
    assert other.ok is True and not other.exact and "same architecture" in other.message

    # A different model: refused, naming every differing key.
    wrong = lib.check_base_match(medical, tiny_model_dir)
    assert wrong.ok is False
    assert "hidden_size 128 vs 32" in wrong.message and "num_hidden_layers 4 vs 2" in wrong.message
    with pytest.raises(ModelError, match="can't be used with this base") as e:
        lib.require_base_match(medical, tiny_model_dir)
    assert "Load the base the adapter was trained on" in str(e.value)

    # The recorded base is not on this machine: undecided from files.
    loose = tmp_path / "loose"
    shutil.copytree(medical, loose)
    cfg = json.loads((loose / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = "/nowhere/base-model"
    (loose / "adapter_config.json").write_text(json.dumps(cfg))
    undecided = lib.check_base_match(loose, tiny_model_dir)
    assert undecided.ok is None and "not on this machine" in undecided.message


def test_shape_check_catches_what_names_cannot(runs_home, demo_base, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    assert lib.check_adapter_fits(runs_home["medical"], AutoModelForCausalLM.from_pretrained(demo_base)) == []
    problems = lib.check_adapter_fits(runs_home["medical"], AutoModelForCausalLM.from_pretrained(tiny_model_dir))
    # Layers 2 and 3 don't exist in the 2-layer model; the rest have the wrong width.
    assert any("has no module 'model.layers.3.mlp.down_proj'" in p for p in problems)
    assert any("made for 128 input features" in p and "has 32 in the base" in p for p in problems)


# ---------------------------------------------------------------------------- Merge, combine, export
def test_merged_model_logits_equal_base_plus_adapter(runs_home, demo_base, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = lib.cli_merge(Namespace(base="demo", adapter=["medical"], weights=None, combination="linear",
                                  out=str(tmp_path / "merged"), dtype="fp32"))
    assert out == 0
    merged_dir = tmp_path / "merged"
    assert (merged_dir / "model.safetensors").exists() and not (merged_dir / "adapter_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(merged_dir)  # plain transformers, no PEFT
    assert type(merged).__name__ == "LlamaForCausalLM"
    peft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(demo_base), runs_home["medical"])
    ids = _prompt_ids(demo_base)
    expected = _logits(peft_model, ids)
    torch.testing.assert_close(_logits(merged, ids), expected, atol=1e-4, rtol=1e-4)
    # And it really is the adapter's model, not the base's.
    base_logits = _logits(AutoModelForCausalLM.from_pretrained(demo_base), ids)
    assert (base_logits - expected).abs().max() > 0.1
    tok = AutoTokenizer.from_pretrained(merged_dir)
    assert tok.chat_template and tok.eos_token == "<|im_end|>"
    record = json.loads((merged_dir / "merge.json").read_text())
    assert record["adapters"] == [str(runs_home["medical"].resolve())] and record["combination"] is None


def test_weighted_cat_combination_is_the_weighted_sum_of_deltas(runs_home, demo_base, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    def weights(path):
        return AutoModelForCausalLM.from_pretrained(path).state_dict()

    lib.merge_adapters("demo", ["medical"], tmp_path / "m")
    lib.merge_adapters("demo", ["legal"], tmp_path / "l")
    lib.merge_adapters("demo", ["medical", "legal"], tmp_path / "c", weights=[0.7, 0.3], combination="cat")
    base, med, leg, comb = (weights(p) for p in (demo_base, tmp_path / "m", tmp_path / "l", tmp_path / "c"))
    changed = 0
    for key, w in base.items():
        expected = w + 0.7 * (med[key] - w) + 0.3 * (leg[key] - w)
        torch.testing.assert_close(comb[key], expected, atol=1e-5, rtol=1e-5)
        changed += int((med[key] - w).abs().max() > 1e-3)
    assert changed >= 7 * 4  # every targeted projection of every layer moved


def test_the_default_combination_is_the_exact_weighted_sum(runs_home, demo_base, tmp_path):
    # PEFT's "linear" scales A and B each by sqrt(w): two identical adapters at 0.5/0.5 gave
    # twice the change. The default must be the weighted sum of the changes.
    import torch
    from transformers import AutoModelForCausalLM

    def weights(path):
        return AutoModelForCausalLM.from_pretrained(path).state_dict()

    twin = tmp_path / "twin"
    shutil.copytree(runs_home["medical"], twin)
    lib.merge_adapters("demo", ["medical"], tmp_path / "alone")
    lib.merge_adapters("demo", ["medical", str(twin)], tmp_path / "halves")  # default weights 1/2 each
    lib.merge_adapters("demo", ["medical", "legal"], tmp_path / "first", weights=[1.0, 0.0])
    alone, halves, first = (weights(tmp_path / n) for n in ("alone", "halves", "first"))
    base = weights(demo_base)
    key = "model.layers.0.self_attn.q_proj.weight"
    assert (alone[key] - base[key]).abs().max() > 1e-3  # the adapter changed it
    for key, w in alone.items():
        torch.testing.assert_close(halves[key], w, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(first[key], w, atol=1e-5, rtol=1e-5)
    assert json.loads((tmp_path / "halves" / "merge.json").read_text())["combination"] == "cat"


def test_merge_refuses_bad_arguments_naming_the_option(runs_home, tmp_path, tiny_model_dir):
    with pytest.raises(ConfigError, match="2 adapters") as e:
        lib.merge_adapters("demo", ["medical", "legal"], tmp_path / "a", weights=[1.0])
    assert e.value.key == "weights"
    with pytest.raises(ConfigError, match="needs --density") as e:
        lib.merge_adapters("demo", ["medical", "legal"], tmp_path / "b", combination="ties")
    assert e.value.key == "density"
    with pytest.raises(ConfigError, match="one of cat, linear") as e:
        lib.merge_adapters("demo", ["medical", "legal"], tmp_path / "c", combination="average")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep me")
    with pytest.raises(ConfigError, match="not an empty folder") as e:
        lib.merge_adapters("demo", ["medical"], tmp_path / "full")
    assert e.value.key == "out" and (tmp_path / "full" / "x").read_text() == "keep me"
    # A file said "already exists and is not an empty folder", as if it were a folder.
    (tmp_path / "merged.safetensors").write_text("keep me")
    with pytest.raises(ConfigError) as e:
        lib.merge_adapters("demo", ["medical"], tmp_path / "merged.safetensors")
    assert str(e.value) == (f"--out '{tmp_path / 'merged.safetensors'}' is a file; the merged model is written to a "
                            "new folder\n  hint: Choose a new folder.")
    assert e.value.key == "out" and (tmp_path / "merged.safetensors").read_text() == "keep me"
    with pytest.raises(ModelError, match="hidden_size 128 vs 32"):
        lib.merge_adapters(str(tiny_model_dir), ["medical"], tmp_path / "d")


def test_export_copies_the_adapter_alone_with_its_card(runs_home, tmp_path, capsys):
    run_dir = runs_home["legal"].parent
    (run_dir / "README.md").write_text("# legal run\nThe run's model card.\n")
    assert lib.cli_export(Namespace(adapter="legal", out=str(tmp_path / "exp"))) == 0
    out = tmp_path / "exp"
    assert {p.name for p in out.iterdir()} == {"adapter_config.json", "adapter_model.safetensors", "README.md",
                                                "card.json"}
    assert (out / "README.md").read_text().startswith("# legal run")
    card = json.loads((out / "card.json").read_text())
    assert card["name"] == "legal" and card["dataset_hash"] == "sha256:legal"
    assert card["exported_from"] == str(runs_home["legal"].resolve())
    assert (out / "adapter_model.safetensors").read_bytes() == (runs_home["legal"] / "adapter_model.safetensors"
                                                                ).read_bytes()
    # A folder with no card at all gets one written from the library card.
    bare = tmp_path / "bare"
    shutil.copytree(runs_home["legal"], bare)
    (bare / "README.md").unlink(missing_ok=True)
    lib.export_adapter(bare, tmp_path / "exp2")
    readme = (tmp_path / "exp2" / "README.md").read_text()
    assert "| Rank / alpha | 4 / 8 |" in readme and "PeftModel.from_pretrained" in readme


def test_an_exported_adapter_added_back_keeps_its_card(runs_home, tmp_path, capsys):
    # Out of its run, the folder's own files know only the PEFT config: the run's facts come
    # back from the card.json the export wrote.
    run_dir = runs_home["legal"].parent
    run_yaml = run_dir / "run.yaml"
    run_yaml.write_text(run_yaml.read_text().replace("method: lora", "method: qlora"))
    original = lib.read_card(runs_home["legal"])
    assert original.method == "qlora"  # the premise: not what the PEFT type alone would say
    out = lib.export_adapter("legal", tmp_path / "shared" / "legal-v1")
    assert lib.cli_add(Namespace(path=str(out))) == 0
    assert "added legal-v1, qlora on" in capsys.readouterr().out
    added = next(c for c in lib.list_adapters() if c.source == "added")
    assert Path(added.path) == out.resolve() and added.name == "legal-v1"
    same = ("base_model", "method", "peft_type", "rank", "alpha", "targets", "dataset", "dataset_hash",
            "dataset_records", "final_loss", "best_eval_loss", "status", "date", "timestamp", "loadable")
    assert {k: getattr(added, k) for k in same} == {k: getattr(original, k) for k in same}
    assert added.extra["exported_from"] == original.path and added.run_dir is None
    # A broken card.json leaves the card the folder's own files make.
    (out / "card.json").write_text("{not json")
    bare = lib.read_card(out)
    assert (bare.method, bare.rank, bare.dataset_hash) == ("lora", 4, None)


def test_base_label_names_the_demo_and_generic_folders_by_their_parent(tmp_path):
    from engine.adapters import base_label
    from engine.paths import demo_model_dir

    assert base_label(str(demo_model_dir())) == "demo"
    other_copy = tmp_path / "checkout" / "resources" / "demo" / "model"
    other_copy.mkdir(parents=True)
    assert base_label(str(other_copy)) == "demo/model"
    assert base_label(str(tmp_path / "runs" / "r1" / "final")) == "r1/final"
    assert base_label(str(tmp_path / "Llama-3.2-1B")) == "Llama-3.2-1B"
    assert base_label("meta-llama/Llama-3.2-1B") == "meta-llama/Llama-3.2-1B"
    assert base_label(None) == "?"


def _random_lora(base_dir: Path, out: Path, **lora_kw) -> Path:
    """A LoRA on ``base_dir`` with random (non-zero) B, saved with PEFT: no training needed."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base_dir),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], **lora_kw))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.5)
    model.save_pretrained(out)
    return out


def test_weighted_merge_of_an_rslora_adapter_keeps_its_scale(demo_base, tmp_path):
    # PEFT's add_weighted_adapter folds each adapter's scale into A and gives the combined
    # adapter alpha = r, i.e. scale 1, unless it copies use_rslora (alpha/sqrt(r) = sqrt(r)).
    import torch
    from transformers import AutoModelForCausalLM

    rs = _random_lora(demo_base, tmp_path / "rs", use_rslora=True)
    lib.merge_adapters("demo", [str(rs)], tmp_path / "plain")
    lib.merge_adapters("demo", [str(rs)], tmp_path / "weighted", weights=[1.0])
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "plain").state_dict()
    weighted = AutoModelForCausalLM.from_pretrained(tmp_path / "weighted").state_dict()
    base = AutoModelForCausalLM.from_pretrained(demo_base).state_dict()
    key = "model.layers.0.self_attn.q_proj.weight"
    assert (plain[key] - base[key]).abs().max() > 1e-2  # the adapter changed the weight
    for key, w in plain.items():
        torch.testing.assert_close(weighted[key], w, atol=1e-5, rtol=1e-5)


def test_dora_adapters_are_not_combined_with_weights(demo_base, tmp_path):
    # A DoRA adapter's learnt magnitude is not a low-rank delta: add_weighted_adapter drops it.
    dora = _random_lora(demo_base, tmp_path / "dora", use_dora=True)
    lora = _random_lora(demo_base, tmp_path / "lora")
    with pytest.raises(ModelError, match="DoRA") as e:
        lib.merge_adapters("demo", [str(lora), str(dora)], tmp_path / "c", weights=[0.5, 0.5])
    assert "alone" in e.value.hint
    assert not (tmp_path / "c").exists()
    assert (lib.merge_adapters("demo", [str(dora)], tmp_path / "d") / "model.safetensors").exists()


def test_card_loss_is_the_mean_of_the_last_steps_as_runs_list_gives_it(runs_home, capsys):
    summary = runs_home["medical"].parent / "summary.json"
    data = json.loads(summary.read_text())
    summary.write_text(json.dumps({**data, "final_loss": 0.9, "final_loss_mean": 0.5}))
    assert lib.read_card(runs_home["medical"]).final_loss == 0.5
    lib.cli_list(Namespace(json=False))
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("medical"))
    assert "0.5000" in row and "0.9000" not in row


def test_a_checkpoints_card_gives_that_steps_losses_and_date(runs_home):
    import os

    run = runs_home["medical"].parent
    rows = [{"step": s, "loss": 10.0 - s} for s in range(1, 9)] + [
        {"step": 4, "eval_loss": 3.0}, {"step": 8, "eval_loss": 1.0}]
    rows.sort(key=lambda r: r["step"])
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    ckpt = run / "checkpoint-4"
    shutil.copytree(runs_home["medical"], ckpt)
    when = 1_700_000_000
    for f in ckpt.iterdir():
        os.utime(f, (when, when))
    card = lib.read_card(ckpt)
    assert card.final_loss == pytest.approx((9 + 8 + 7 + 6) / 4)  # steps 1-4 only
    assert card.best_eval_loss == 3.0  # not the run's 1.0 of step 8, nor the summary's 0.456
    assert card.timestamp == when and card.weights_from is None
    final = lib.read_card(runs_home["medical"])
    assert (final.final_loss, final.best_eval_loss) == (0.123, 0.456) and final.timestamp != when


def test_a_trainer_output_folder_is_named_by_its_parent(runs_home, tmp_path):
    """PEFT outputs outside a run ("medical/final", "out/checkpoint-500") get a name that says something."""
    final = tmp_path / "medical" / "final"
    ckpt = tmp_path / "out" / "checkpoint-500"
    for folder in (final, ckpt):
        shutil.copytree(runs_home["medical"], folder)
    assert lib.read_card(final).name == "medical"
    assert lib.read_card(ckpt).name == "out-checkpoint-500"
    assert lib.read_card(runs_home["medical"]).name == "medical"  # a run's final/: the run's name


def test_an_adapter_without_weight_changes_is_not_merged_nor_exported_as_gguf(demo_base, tmp_path):
    """Prompt tuning adds virtual tokens: nothing to fold into the base. Merge and GGUF export say so
    before writing or announcing anything."""
    from peft import PromptTuningConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from engine.gguf_export import export_source

    folder = tmp_path / "prompt"
    get_peft_model(AutoModelForCausalLM.from_pretrained(demo_base),
                   PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4)).save_pretrained(folder)
    with pytest.raises(ModelError, match=r"\(PROMPT_TUNING\) can't be merged into the base: it adds virtual tokens"):
        lib.merge_adapters("demo", [str(folder)], tmp_path / "merged")
    assert not (tmp_path / "merged").exists()
    said = []
    with pytest.raises(ModelError, match="can't be merged"):
        export_source(str(folder), tmp_path / "p.gguf", out_type="f16", note=said.append)
    assert said == [] and not list(tmp_path.glob("*.gguf")) and not list(tmp_path.glob(".gguf-merge-*"))
