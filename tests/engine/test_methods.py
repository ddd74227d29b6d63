"""Every fine-tuning method on a tiny random Llama: trainable set, training, save -> load.

One parametrised table of cases, PEFT-style. The expected trainable-parameter counts are
written as formulas of the tiny model's shape, so a wrong target set fails loudly.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from engine.config import METHODS as CONFIG_METHODS
from engine.config import RunConfig
from engine.errors import ConfigError, ConfigErrors, ModelError
from engine.methods import (
    METHODS,
    bottleneck,
    count_parameters,
    freeze,
    get_method,
    invalid_reason,
    method_errors,
)

# Tiny Llama: h=32, FF=64, L=4, 4 heads of 8 dims, 2 KV heads -> h_kv = 16, V=128.
H, FF, L, V, H_KV = 32, 64, 4, 128, 16
LINEARS = {"q_proj": (H, H), "k_proj": (H, H_KV), "v_proj": (H, H_KV), "o_proj": (H, H),
           "gate_proj": (H, FF), "up_proj": (H, FF), "down_proj": (FF, H)}  # name -> (d_in, d_out)
LAYER = sum(i * o for i, o in LINEARS.values()) + 2 * H  # + input and post-attention RMSNorm
TOTAL = 2 * V * H + L * LAYER + H  # untied embedding and head + final norm


def tiny_config():
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=V, hidden_size=H, intermediate_size=FF, num_hidden_layers=L,
                       num_attention_heads=4, num_key_value_heads=2, pad_token_id=0, bos_token_id=1,
                       eos_token_id=2)


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory) -> Path:
    """A saved random tiny Llama, so every 'fresh base' has identical weights."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(tiny_config()).save_pretrained(path)
    return path


def fresh_base(base_dir: Path):
    from transformers import LlamaForCausalLM

    return LlamaForCausalLM.from_pretrained(base_dir, dtype=torch.float32)


def lora_count(targets, r=8, dora=False):
    per_layer = sum(r * (LINEARS[t][0] + LINEARS[t][1]) + (LINEARS[t][1] if dora else 0) for t in targets)
    return L * per_layer


def prefix_count(n, projection):
    t = H_KV  # PEFT sizes the prefix by the KV width under grouped-query attention
    if not projection:
        return n * L * 2 * t
    e = t  # PEFT's default encoder_hidden_size is token_dim
    return n * t + (t * e + e) + (e * 2 * L * t + 2 * L * t)


# (case id, run-config changes, expected trainable parameters)
CASES = [
    ("full", {"method": "full"}, TOTAL),
    ("freeze", {"method": "freeze", "freeze_trainable_layers": 2}, 2 * LAYER),
    ("freeze+norm+head", {"method": "freeze", "freeze_trainable_layers": 1,
                          "freeze_extra_modules": ["norm", "lm_head"]}, LAYER + H + V * H),
    ("lora", {"method": "lora", "lora_target_modules": ["q_proj", "v_proj"]}, lora_count(["q_proj", "v_proj"])),
    ("lora-all-dora-rslora", {"method": "lora", "lora_target_modules": "all-linear", "lora_r": 4,
                              "use_dora": True, "use_rslora": True}, lora_count(LINEARS, r=4, dora=True)),
    ("adapter-pfeiffer", {"method": "adapter", "adapter_style": "pfeiffer", "adapter_reduction_factor": 4},
     L * (2 * H * 8 + H + 8)),
    ("adapter-houlsby", {"method": "adapter", "adapter_style": "houlsby", "adapter_reduction_factor": 16},
     2 * L * (2 * H * 2 + H + 2)),
    ("prefix", {"method": "prefix", "num_virtual_tokens": 5}, prefix_count(5, False)),
    ("prefix-projection", {"method": "prefix", "num_virtual_tokens": 5, "prefix_projection": True},
     prefix_count(5, True)),
    ("prompt", {"method": "prompt", "num_virtual_tokens": 6}, 6 * H),
    ("ia3-auto", {"method": "ia3"}, L * (H_KV + H_KV + FF)),  # k and v outputs, down_proj input
    # q and up scale their outputs; down_proj is feed-forward for Llama, so its input is scaled.
    ("ia3-list", {"method": "ia3", "ia3_target_modules": ["q_proj", "up_proj", "down_proj"]}, L * (H + FF + FF)),
]


def make_cfg(changes: dict) -> RunConfig:
    return RunConfig.from_dict({"load_in": "fp32", "mixed_precision": "no", "lora_dropout": 0.0, **changes})


def batch():
    g = torch.Generator().manual_seed(1)
    x = torch.randint(3, V, (2, 12), generator=g)
    return x, torch.ones_like(x)


@pytest.mark.parametrize("case,changes,expected", CASES, ids=[c[0] for c in CASES])
def test_method_trains_saves_and_loads(case, changes, expected, base_dir, tmp_path):
    cfg = make_cfg(changes)
    method = get_method(cfg.method)
    torch.manual_seed(0)
    model = method.apply(fresh_base(base_dir), cfg)

    trainable, total = count_parameters(model)
    assert trainable == expected
    assert total >= TOTAL

    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    x, mask = batch()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    losses = []
    for _ in range(4):
        loss = model(input_ids=x, attention_mask=mask, labels=x).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0], losses  # overfitting one batch must lower its loss
    for n, p in model.named_parameters():
        if p.requires_grad:
            assert not torch.equal(p, before[n]), f"trainable {n} did not change"
        else:
            assert torch.equal(p, frozen[n]), f"frozen {n} changed"

    out = method.save(model, tmp_path / "final", cfg)
    files = {p.name for p in out.iterdir()}
    if method.peft or cfg.method == "adapter":
        assert {"adapter_config.json", "adapter_model.safetensors"} <= files
    else:
        assert {"config.json", "model.safetensors"} <= files
    assert not any(f.endswith((".bin", ".pt")) for f in files)

    model.eval()
    with torch.no_grad():
        want = model(input_ids=x, attention_mask=mask).logits
    loaded = method.load(fresh_base(base_dir), out, cfg)
    loaded.eval()
    with torch.no_grad():
        got = loaded(input_ids=x, attention_mask=mask).logits
        plain = fresh_base(base_dir)(input_ids=x, attention_mask=mask).logits
    torch.testing.assert_close(got, want)
    # Prompt tuning returns logits for its virtual tokens too, in front of the real ones.
    assert not torch.allclose(got[:, -x.shape[1]:], plain, atol=1e-4), "the loaded artefact had no effect"


@pytest.mark.parametrize("name", ["lora", "prefix", "prompt", "ia3"])
def test_peft_artefact_loads_with_plain_peft(name, base_dir, tmp_path):
    from peft import PeftModel

    cfg = make_cfg({"method": name, "num_virtual_tokens": 4})
    model = get_method(name).apply(fresh_base(base_dir), cfg)
    get_method(name).save(model, tmp_path, cfg)
    loaded = PeftModel.from_pretrained(fresh_base(base_dir), str(tmp_path))
    assert loaded.peft_config["default"].task_type == "CAUSAL_LM"


@pytest.mark.parametrize("name,changes", [("prefix", {}), ("prefix", {"prefix_projection": True}),
                                          ("prompt", {})])
def test_prompt_learning_generate_uses_the_learned_tokens(name, changes, base_dir):
    """Cached generate must equal greedy decoding without a cache (PEFT 0.21 + transformers 5.24)."""
    cfg = make_cfg({"method": name, "num_virtual_tokens": 3, **changes})
    torch.manual_seed(0)
    model = get_method(name).apply(fresh_base(base_dir), cfg)
    with torch.no_grad():  # make the virtual tokens matter
        for p in model.parameters():
            if p.requires_grad:
                p.normal_(0.0, 1.0)
    model.eval()
    x, mask = batch()
    x, mask = x[:, :5], mask[:, :5]
    out = model.generate(input_ids=x, attention_mask=mask, max_new_tokens=8, do_sample=False)
    seq = x
    with torch.no_grad():
        for _ in range(8):
            logits = model(input_ids=seq, attention_mask=torch.ones_like(seq)).logits[:, -1]
            seq = torch.cat([seq, logits.argmax(-1, keepdim=True)], dim=1)
        plain = model.get_base_model().generate(input_ids=x, attention_mask=mask, max_new_tokens=8,
                                                do_sample=False)
    assert torch.equal(out, seq)
    assert not torch.equal(out, plain)


def test_prompt_text_init_uses_the_text_embeddings(base_dir, tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<pad>", "<s>", "</s>", "<unk>", "answer", "the", "question", "briefly"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    model_dir = tmp_path / "model"
    fresh_base(base_dir).save_pretrained(model_dir)
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>").save_pretrained(model_dir)

    cfg_text = make_cfg({"method": "prompt", "num_virtual_tokens": 6, "model": str(model_dir),
                         "prompt_init_text": "answer the question briefly"})
    model = get_method("prompt").apply(fresh_base(base_dir), cfg_text)
    prompt = model.prompt_encoder["default"].embedding.weight
    emb = model.get_input_embeddings().weight
    ids = [4, 5, 6, 7, 4, 5]  # the text's 4 tokens, repeated up to 6 virtual tokens
    torch.testing.assert_close(prompt, emb[ids])


@pytest.mark.parametrize("case,changes,expected", CASES, ids=[c[0] for c in CASES])
def test_counts_on_meta_device(case, changes, expected):
    """The memory estimate applies methods to a weightless model to count parameters."""
    from transformers import LlamaForCausalLM

    with torch.device("meta"):
        model = LlamaForCausalLM(tiny_config())
    model = get_method(changes["method"]).apply(model, make_cfg(changes))
    assert count_parameters(model)[0] == expected


def test_qlora_apply_is_lora_and_table_restricts_it_to_nf4(base_dir):
    cfg = make_cfg({"method": "lora"})
    assert METHODS["qlora"].module is METHODS["lora"].module
    assert METHODS["qlora"].allowed_load_in == ("nf4",)
    assert count_parameters(METHODS["qlora"].apply(fresh_base(base_dir), cfg))[0] == lora_count(["q_proj", "v_proj"])
    reason = invalid_reason("qlora", "fp32", "no")
    assert reason and "nf4" in reason


def test_table_covers_the_config_and_names_real_settings():
    assert tuple(METHODS) == CONFIG_METHODS
    keys = set(RunConfig.field_names())
    for m in METHODS.values():
        assert m.label and m.description.endswith(".")
        assert set(m.settings) <= keys, m.name
        assert set(m.allowed_load_in) <= {"fp32", "fp16", "bf16", "int8", "nf4"}
        for fn in ("apply", "save", "load"):
            assert callable(getattr(m.module, fn))
    assert {n for n, m in METHODS.items() if m.peft} == {"lora", "qlora", "prefix", "prompt", "ia3"}


def test_unknown_method_lists_allowed_values():
    with pytest.raises(ConfigError) as e:
        get_method("lorax")
    assert e.value.key == "method" and "qlora" in e.value.message and "ia3" in e.value.message


def test_freeze_finds_the_layers_and_explains_bad_settings(base_dir):
    model = fresh_base(base_dir)
    name, layers = freeze.decoder_layers(model)
    assert name == "model.layers" and len(layers) == L
    with pytest.raises(ConfigError) as e:
        freeze.apply(model, make_cfg({"method": "freeze", "freeze_trainable_layers": 9}))
    assert e.value.key == "freeze_trainable_layers" and e.value.fix == {"freeze_trainable_layers": L}
    with pytest.raises(ConfigError) as e:
        freeze.apply(model, make_cfg({"method": "freeze", "freeze_extra_modules": ["final_norm"]}))
    assert e.value.key == "freeze_extra_modules" and "lm_head" in e.value.message


def test_lora_unknown_target_names_the_key(base_dir):
    with pytest.raises(ConfigError) as e:
        get_method("lora").apply(fresh_base(base_dir), make_cfg({"method": "lora",
                                                                  "lora_target_modules": ["qkv"]}))
    assert e.value.key == "lora_target_modules" and "qkv" in e.value.message
    # A typo beside a name that matches was dropped silently (PEFT only refuses when none match).
    for method, key in (("lora", "lora_target_modules"), ("ia3", "ia3_target_modules")):
        with pytest.raises(ConfigError) as e:
            get_method(method).apply(fresh_base(base_dir), make_cfg({"method": method, key: ["q_proj", "vv_proj"]}))
        assert e.value.key == key
        assert e.value.message.startswith(f"'{key}': vv_proj matches no module of this model; its linear layers "
                                          "are down_proj, gate_proj, k_proj, o_proj, q_proj, up_proj, v_proj")
        # The hint's other way out is a value this key takes (IA3's was "all-linear", which it refuses).
        offered = e.value.hint.split(" or ", 1)[1].split()[0].rstrip(".")
        assert RunConfig.from_dict({"method": method, key: offered}).to_dict()[key] == offered
    # Whole dotted names and suffixes still match, as PEFT matches them.
    get_method("lora").apply(fresh_base(base_dir), make_cfg({"method": "lora",
                                                             "lora_target_modules": ["self_attn.q_proj", "v_proj"]}))


def test_lora_dropout_on_moe_expert_weights_names_the_key_and_fix():
    from transformers import MixtralConfig, MixtralForCausalLM

    # all-linear reaches the experts' 3D weights (PEFT's ParamWrapper), which take no dropout.
    def moe():
        return MixtralForCausalLM(MixtralConfig(vocab_size=V, hidden_size=H, intermediate_size=FF,
                                                num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                                num_local_experts=4, num_experts_per_tok=2))

    cfg = make_cfg({"method": "lora", "lora_target_modules": "all-linear", "lora_dropout": 0.05})
    with pytest.raises(ConfigError) as e:
        get_method("lora").apply(moe(), cfg)
    assert e.value.key == "lora_dropout" and e.value.fix == {"lora_dropout": 0.0}
    assert "q_proj" in e.value.hint
    model = get_method("lora").apply(moe(), cfg.replace(**e.value.fix))
    assert any("experts" in n and "lora_A" in n for n, p in model.named_parameters() if p.requires_grad)


def test_prefix_refuses_gradient_checkpointing():
    cfg = make_cfg({"method": "prefix", "gradient_checkpointing": True})
    errors = method_errors(cfg)
    assert [e.key for e in errors] == ["gradient_checkpointing"]
    assert errors[0].fix == {"gradient_checkpointing": False}
    assert method_errors(make_cfg({"method": "prompt", "gradient_checkpointing": True})) == []


def test_bottleneck_adapter_starts_as_identity_and_its_format_is_checked(base_dir, tmp_path):
    x, mask = batch()
    with torch.no_grad():
        plain = fresh_base(base_dir)(input_ids=x).logits
    cfg = make_cfg({"method": "adapter", "adapter_style": "houlsby"})
    model = bottleneck.apply(fresh_base(base_dir), cfg)
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=x).logits, plain)
    with pytest.raises(ConfigError):
        bottleneck.apply(model, cfg)  # twice would stack adapters

    out = bottleneck.save(model, tmp_path, cfg)
    meta = json.loads((out / "adapter_config.json").read_text())
    assert meta["format"] == bottleneck.FORMAT and meta["style"] == "houlsby"
    assert meta["bottleneck_size"] == H // 16 and meta["layers_path"] == "model.layers"
    from safetensors.torch import load_file

    keys = set(load_file(str(out / "adapter_model.safetensors")))
    assert "model.layers.0.self_attn.bottleneck_adapter.down.weight" in keys
    assert "model.layers.3.mlp.bottleneck_adapter.up.bias" in keys
    assert len(keys) == 2 * L * 4

    meta["hidden_size"] = 64
    (tmp_path / "adapter_config.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="hidden size 64"):
        bottleneck.load(fresh_base(base_dir), tmp_path)
    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    with pytest.raises(ModelError, match="not a bottleneck adapter"):
        bottleneck.load(fresh_base(base_dir), tmp_path)


def test_bottleneck_adapter_keeps_fp32_on_a_bf16_base(base_dir):
    from transformers import LlamaForCausalLM

    base = LlamaForCausalLM.from_pretrained(base_dir, dtype=torch.bfloat16)
    model = bottleneck.apply(base, make_cfg({"method": "adapter"}))
    dtypes = {p.dtype for p in model.parameters() if p.requires_grad}
    assert dtypes == {torch.float32}
    x, _ = batch()
    loss = model(input_ids=x, labels=x).loss
    loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_invalid_reason_combines_config_rules():
    assert invalid_reason("lora", "bf16", "bf16") is None
    assert "quantized" in invalid_reason("full", "nf4", "bf16")
    assert "fp16" in invalid_reason("freeze", "fp16", "fp16")
    with pytest.raises(ConfigErrors):
        RunConfig.from_dict({"method": "full", "load_in": "int8"})
