"""LoRA initialisations (``lora_init``): gaussian, and PiSSA/OLoRA, which rewrite the base.

A PiSSA or OLoRA run trains an adapter for a base that its init rewrote. Its ``final/`` must
still be a plain LoRA for the original base (the same function as the trained model), its
checkpoints must resume exactly, and they must not be loaded where they would rewrite a
shared base; ``runs promote`` converts one.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from engine.config import RunConfig
from engine.errors import ConfigErrors, ModelError
from tests.engine.test_train import fresh, logits, make_cfg, probe_ids, train

SETTINGS = {"lora_target_modules": "all-linear", "lora_r": 4, "lora_alpha": 8, "max_steps": 4, "save_steps": 2}


def _final_on_the_original_base(model_dir, run_dir, cfg):
    from peft import PeftModel

    return PeftModel.from_pretrained(fresh(cfg, model_dir), str(run_dir / "final"))


@pytest.mark.parametrize("init", ["gaussian", "pissa", "olora"])
def test_each_init_trains_and_final_is_a_plain_lora_for_the_original_base(init, tiny_model_dir, small_dataset,
                                                                          tmp_path):
    from engine.methods import get_method

    out = tmp_path / "run"
    cfg = make_cfg(tiny_model_dir, small_dataset, out, lora_init=init, **SETTINGS)
    result, rec, trained = train(cfg)
    assert result["status"] == "completed", result.get("error")
    ids = probe_ids(tiny_model_dir)
    after = logits(trained[0], ids)
    base = logits(fresh(cfg, tiny_model_dir), ids)
    assert not torch.allclose(after, base, atol=1e-4), "training did not change the model"
    saved = json.loads((out / "final" / "adapter_config.json").read_text())
    rewrites = init in ("pissa", "olora")
    # PiSSA/OLoRA: [A | A0] x [B | -B0], twice the rank at the same scale, for the untouched base.
    assert saved["r"] == (8 if rewrites else 4) and saved["lora_alpha"] == (16 if rewrites else 8)
    assert saved["init_lora_weights"] == (True if rewrites else "gaussian")
    assert (out / "lora_init").is_dir() == rewrites
    from engine.adapters import read_card

    card = read_card(out / "final")
    assert card.loadable and card.rank == saved["r"]
    rank_info = {k: card.extra[k] for k in ("init", "trained_rank") if k in card.extra}
    assert rank_info == ({"init": {"pissa": "PiSSA", "olora": "OLoRA"}[init], "trained_rank": 4} if rewrites else {})
    assert card.extra["prompt_format"] == "chat template"  # the run saved the base's chat template
    loaded = _final_on_the_original_base(tiny_model_dir, out, cfg)
    torch.testing.assert_close(logits(loaded, ids), after, rtol=1e-4, atol=1e-4)
    again = get_method("lora").load(fresh(cfg, tiny_model_dir), out / "final", cfg)  # the engine's own load
    torch.testing.assert_close(logits(again, ids), after, rtol=1e-4, atol=1e-4)


def test_pissa_starts_from_the_principal_directions_without_changing_the_function(tiny_model_dir, small_dataset,
                                                                                 tmp_path):
    from engine.methods import get_method

    ids = probe_ids(tiny_model_dir)
    for init, b_is_zero in (("default", True), ("pissa", False)):
        cfg = make_cfg(tiny_model_dir, small_dataset, tmp_path / init, lora_init=init, **SETTINGS)
        base = logits(fresh(cfg, tiny_model_dir), ids)
        torch.manual_seed(cfg.seed)
        model = get_method("lora").apply(fresh(cfg, tiny_model_dir), cfg)
        b = [p for n, p in model.named_parameters() if "lora_B" in n]
        assert all(bool((x == 0).all()) for x in b) == b_is_zero
        # Either way the adapted model starts as the base (PiSSA: W_res + s*B*A = W).
        torch.testing.assert_close(logits(model, ids), base, rtol=1e-4, atol=1e-4)


def test_a_pissa_run_resumed_from_its_checkpoint_ends_like_the_uninterrupted_one(tiny_model_dir, small_dataset,
                                                                                  tmp_path):
    cfg = make_cfg(tiny_model_dir, small_dataset, tmp_path / "a", lora_init="pissa", lora_dropout=0.1, **SETTINGS)
    _, rec_a, trained_a = train(cfg)
    resumed = tmp_path / "b"
    resumed.mkdir()
    for part in ("checkpoint-2", "lora_init"):
        shutil.copytree(tmp_path / "a" / part, resumed / part)
    result, rec_b, trained_b = train(cfg.replace(output_dir=str(resumed)), resume=True)
    assert result["status"] == "completed" and [e["step"] for e in rec_b.of("step")] == [3, 4]
    torch.testing.assert_close(torch.tensor([e["loss"] for e in rec_b.of("step")]),
                               torch.tensor([e["loss"] for e in rec_a.of("step")][2:]), rtol=1e-5, atol=1e-5)
    ids = probe_ids(tiny_model_dir)
    torch.testing.assert_close(logits(trained_b[0], ids), logits(trained_a[0], ids), rtol=1e-4, atol=1e-4)
    final_b = _final_on_the_original_base(tiny_model_dir, resumed, cfg)
    torch.testing.assert_close(logits(final_b, ids), logits(trained_a[0], ids), rtol=1e-4, atol=1e-4)


def test_pissa_checkpoints_are_refused_where_they_would_rewrite_a_base_and_promote_converts_them(
        tiny_model_dir, small_dataset, tmp_path):
    from safetensors.torch import load_file

    from engine.adapters import merge_adapters, read_card
    from engine.methods.lora import convert_checkpoint
    from engine.methods.peft_adapter import check_loadable, load
    from engine.promote import promote

    out = tmp_path / "run"
    cfg = make_cfg(tiny_model_dir, small_dataset, out, lora_init="pissa", eval_split=0.1, eval_steps=2, **SETTINGS)
    assert train(cfg)[0]["status"] == "completed"
    ckpt = out / "checkpoint-2"
    with pytest.raises(ModelError) as e:
        check_loadable(ckpt)
    assert "PISSA adapter as training holds it" in e.value.message and "runs promote" in e.value.hint
    with pytest.raises(ModelError):
        load(fresh(cfg, tiny_model_dir), ckpt)
    card = read_card(ckpt)
    assert not card.loadable and "final/" in card.problem
    with pytest.raises(ModelError):
        merge_adapters(str(tiny_model_dir), [str(ckpt)], tmp_path / "merged")
    from engine.gguf_export import export_lora_gguf, lora_gguf_problem

    assert "PISSA adapter as training holds it" in lora_gguf_problem(ckpt)
    with pytest.raises(ModelError) as e:
        export_lora_gguf(ckpt, tmp_path / "x.gguf", base=str(tiny_model_dir))
    assert "runs promote" in e.value.hint and not (tmp_path / "x.gguf").exists()
    check_loadable(out / "final")  # the converted result loads anywhere

    # The offline conversion gives PEFT's own: checkpoint-4 converted == final/ (step 4).
    mine = convert_checkpoint(out / "checkpoint-4", out / "lora_init", tmp_path / "converted")
    peft_tensors = load_file(str(out / "final" / "adapter_model.safetensors"))
    my_tensors = load_file(str(mine / "adapter_model.safetensors"))
    assert set(my_tensors) == set(peft_tensors)
    for name, t in peft_tensors.items():
        torch.testing.assert_close(my_tensors[name], t)
    theirs = json.loads((out / "final" / "adapter_config.json").read_text())
    ours = json.loads((mine / "adapter_config.json").read_text())
    assert {k: ours[k] for k in ("r", "lora_alpha", "init_lora_weights")} == \
        {k: theirs[k] for k in ("r", "lora_alpha", "init_lora_weights")}

    # Promoting checkpoint-2 makes final/ its plain LoRA: loadable, and a different function.
    before = logits(_final_on_the_original_base(tiny_model_dir, out, cfg), probe_ids(tiny_model_dir))
    promote(out, "2")
    check_loadable(out / "final")
    assert json.loads((out / "final" / "adapter_config.json").read_text())["r"] == 8
    after = logits(_final_on_the_original_base(tiny_model_dir, out, cfg), probe_ids(tiny_model_dir))
    assert not torch.allclose(after, before, atol=1e-5)


def test_pissa_and_olora_need_a_float_base_and_no_dora():
    with pytest.raises(ConfigErrors) as e:
        RunConfig.from_dict({"method": "qlora", "load_in": "nf4", "lora_init": "pissa"})
    assert e.value.errors[0].key == "lora_init" and "load_in is nf4" in e.value.errors[0].message
    assert e.value.errors[0].fix == {"lora_init": "default"}
    with pytest.raises(ConfigErrors) as e:
        RunConfig.from_dict({"lora_init": "olora", "use_dora": True})
    assert "OLoRA with DoRA" in e.value.errors[0].message and e.value.errors[0].fix == {"use_dora": False}
    assert RunConfig.from_dict({"method": "qlora", "load_in": "nf4", "lora_init": "gaussian"}).lora_init == "gaussian"
    with pytest.raises(ConfigErrors) as e:
        RunConfig.from_dict({"lora_init": "loftq"})
    assert "default" in e.value.errors[0].message and "pissa" in e.value.errors[0].message


def test_a_pissa_run_stopped_early_keeps_its_best_checkpoint_as_a_plain_lora(tiny_model_dir, small_dataset, tmp_path):
    from engine.methods.lora import convert_checkpoint

    out = tmp_path / "run"
    cfg = make_cfg(tiny_model_dir, small_dataset, out, lora_init="pissa", eval_split=0.25, eval_steps=2,
                   early_stopping_patience=2, early_stopping_threshold=1e3, learning_rate=0.5,
                   **{**SETTINGS, "max_steps": 20, "save_total_limit": 1})
    result, _, _ = train(cfg)
    # At this learning rate the run overshoots after its first evaluation: the best is not the last step.
    assert result["status"] == "completed" and result["early_stopped"] and result["best_step"] < result["step"]
    best = convert_checkpoint(out / f"checkpoint-{result['best_step']}", out / "lora_init", tmp_path / "best")
    from peft import PeftModel

    ids = probe_ids(tiny_model_dir)
    want = logits(PeftModel.from_pretrained(fresh(cfg, tiny_model_dir), str(best)), ids)
    got = logits(_final_on_the_original_base(tiny_model_dir, out, cfg), ids)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
