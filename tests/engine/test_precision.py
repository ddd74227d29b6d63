"""Precision: environment checks, model loading in each dtype, quantization configs, Trainer kwargs.

Quantized loading needs CUDA and bitsandbytes; on the CPU the tests check that it is
refused with a reason, and that the BitsAndBytesConfig we would pass is right. The
``gpu``-marked test loads int8 and nf4 for real when a GPU is present.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from engine.config import LOAD_IN, METHODS, MIXED_PRECISION, RunConfig
from engine.errors import ConfigErrors, ModelError
from engine.precision import (
    Environment,
    bnb_config,
    check_environment,
    detect_environment,
    environment_errors,
    from_pretrained_kwargs,
    load_model,
    resolve_device,
    trainer_precision_kwargs,
    validity_matrix,
)

CPU = Environment.cpu_only()
H100 = Environment(cuda=True, gpu_name="NVIDIA H100 80GB HBM3", gpu_total_bytes=80 * 2**30,
                   gpu_free_bytes=79 * 2**30, bf16_supported=True, bnb_available=True, compute_capability=(9, 0))
T4 = dataclasses.replace(H100, gpu_name="Tesla T4", gpu_total_bytes=16 * 2**30, gpu_free_bytes=15 * 2**30,
                         bf16_supported=False, compute_capability=(7, 5))
NO_BNB = dataclasses.replace(H100, bnb_available=False)


def cfg(**changes) -> RunConfig:
    return RunConfig.from_dict(changes)


def errors(c: RunConfig, env: Environment) -> dict[str, str]:
    return {e.key: e.message for e in environment_errors(c, env)}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(LlamaConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                                 num_attention_heads=4, num_key_value_heads=2)).save_pretrained(path)
    return path


# ---------------------------------------------------------------- loading on the CPU
@pytest.mark.parametrize("load_in,mixed,dtype", [("fp32", "no", torch.float32), ("bf16", "bf16", torch.bfloat16),
                                                 ("bf16", "no", torch.bfloat16), ("fp16", "no", torch.float16)])
def test_load_model_dtype(load_in, mixed, dtype, model_dir):
    c = cfg(load_in=load_in, mixed_precision=mixed)
    model = load_model(c, model_dir, CPU)
    assert {p.dtype for p in model.parameters()} == {dtype}
    assert {p.device.type for p in model.parameters()} == {"cpu"}
    assert model.training and model.config.use_cache is False
    assert model.config._attn_implementation == "sdpa"


def test_load_model_gradient_checkpointing_reaches_frozen_bases(model_dir):
    model = load_model(cfg(load_in="fp32", mixed_precision="no", gradient_checkpointing=True), model_dir, CPU)
    assert model.model.gradient_checkpointing
    x = torch.randint(0, 128, (1, 8))
    # enable_input_require_grads: the embedding output requires grad even though the
    # embedding is frozen, so checkpointed blocks pass gradients to adapters.
    model.get_input_embeddings().weight.requires_grad_(False)
    assert model.get_input_embeddings()(x).requires_grad
    plain = load_model(cfg(load_in="fp32", mixed_precision="no"), model_dir, CPU)
    assert not plain.model.gradient_checkpointing


def test_load_model_eager_attention(model_dir):
    model = load_model(cfg(load_in="fp32", mixed_precision="no", attn_implementation="eager"), model_dir, CPU)
    assert model.config._attn_implementation == "eager"


def test_attention_a_model_lacks_is_refused_before_loading_with_the_fix(tmp_path):
    from transformers import Gemma2Config, Gemma2ForCausalLM

    # Gemma 2 has no SDPA attention; transformers would only say so once loading began.
    Gemma2ForCausalLM(Gemma2Config(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, head_dim=8)).save_pretrained(tmp_path)
    with pytest.raises(ConfigErrors) as e:
        load_model(cfg(load_in="fp32", mixed_precision="no"), tmp_path, CPU)
    (err,) = e.value.errors
    assert err.key == "attn_implementation" and err.fix == {"attn_implementation": "eager"}
    assert "Gemma2ForCausalLM" in err.message
    model = load_model(cfg(load_in="fp32", mixed_precision="no", attn_implementation="eager"), tmp_path, CPU)
    assert model.config._attn_implementation == "eager"


def test_pickle_weights_need_consent(model_dir, tmp_path):
    from safetensors.torch import load_file

    for f in model_dir.iterdir():
        if f.name != "model.safetensors":
            (tmp_path / f.name).write_bytes(f.read_bytes())
    torch.save(load_file(str(model_dir / "model.safetensors")), tmp_path / "pytorch_model.bin")
    with pytest.raises(ModelError) as e:
        load_model(cfg(load_in="fp32", mixed_precision="no"), tmp_path, CPU)
    assert e.value.fix == {"allow_pickle": True}
    model = load_model(cfg(load_in="fp32", mixed_precision="no", allow_pickle=True), tmp_path, CPU)
    assert model.config.hidden_size == 32


def test_a_model_folder_missing_its_tokenizer_or_weights_or_in_gguf_form_says_what_is_missing(model_dir, tmp_path):
    from engine.models import load_tokenizer, resolve_model_path

    gguf = tmp_path / "gguf"
    gguf.mkdir()
    (gguf / "model-Q4_K_M.gguf").write_bytes(b"GGUF")
    with pytest.raises(ModelError, match="holds GGUF files only: GGUF is for running a model"):
        resolve_model_path(str(gguf))
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.json").write_bytes((model_dir / "config.json").read_bytes())
    with pytest.raises(ModelError) as e:
        load_tokenizer(str(bare))
    assert e.value.message.startswith(f"model folder '{bare}' has no tokenizer (sentencepiece.bpe.model, ")
    with pytest.raises(ModelError, match=r"has no weights \(\.safetensors files\)"):
        load_model(cfg(load_in="fp32", mixed_precision="no"), bare, CPU)


def test_weights_cut_short_padded_or_missing_a_shard_are_refused_by_file_before_loading(model_dir, tmp_path):
    """An interrupted download or copy failed inside the run: "SafetensorError: incomplete metadata, file
    not fully covered", told as a bug, after the run's folder was made."""
    from transformers import AutoModelForCausalLM

    from engine.models import check_weights_complete

    def copy(name: str) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        for f in model_dir.iterdir():
            (folder / f.name).write_bytes(f.read_bytes())
        return folder

    weights = (model_dir / "model.safetensors").read_bytes()
    short = copy("short")
    (short / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    with pytest.raises(ModelError) as e:
        load_model(cfg(load_in="fp32", mixed_precision="no"), short, CPU)
    assert e.value.message.startswith(f"weights in '{short}': model.safetensors is cut short: ")
    assert e.value.message.endswith(f"cut short: {len(weights) // 2:,} bytes of the {len(weights):,} bytes its header "
                                    "describes")
    assert "download or copy the model's files again" in e.value.hint
    (short / "model.safetensors").write_bytes(weights[:5])
    with pytest.raises(ModelError, match=r"model.safetensors is cut short \(5 bytes: no safetensors header\)"):
        check_weights_complete(short)
    (short / "model.safetensors").write_bytes(weights[:100])  # inside the JSON header
    with pytest.raises(ModelError, match="model.safetensors is not a safetensors file .* it may be cut short"):
        check_weights_complete(short)
    padded = copy("padded")
    (padded / "model.safetensors").write_bytes(weights + b"junk")
    with pytest.raises(ModelError, match=f"holds 4 bytes more than its header describes \\({len(weights) + 4:,} bytes"):
        check_weights_complete(padded)
    # A sharded save with one shard gone; then whole again, it loads.
    sharded = tmp_path / "sharded"
    AutoModelForCausalLM.from_pretrained(model_dir).save_pretrained(sharded, max_shard_size="20KB")
    for f in model_dir.iterdir():
        if "token" in f.name:
            (sharded / f.name).write_bytes(f.read_bytes())
    shards = sorted(sharded.glob("model-*.safetensors"))
    assert len(shards) > 2
    kept = shards[1].read_bytes()
    shards[1].unlink()
    with pytest.raises(ModelError) as e:
        load_model(cfg(load_in="fp32", mixed_precision="no"), sharded, CPU)
    assert e.value.message == (f"weights in '{sharded}': 1 of the {len(shards)} files its model.safetensors.index.json "
                               f"names are missing: {shards[1].name}")
    shards[1].write_bytes(kept)
    assert load_model(cfg(load_in="fp32", mixed_precision="no"), sharded, CPU).config.hidden_size == 32
    (sharded / "model.safetensors.index.json").write_text("{", encoding="utf-8")
    with pytest.raises(ModelError, match="can't be read as a safetensors index"):
        check_weights_complete(sharded)


def test_a_model_folders_json_cut_short_or_edited_is_refused_at_its_line_and_column(model_dir, tmp_path):
    """config.json cut short failed the run as "OSError: It looks like the config file ... is not a valid
    JSON file" (told as a bug); tokenizer.json cut inside a character as "'utf-8' codec can't decode byte"."""
    from engine.models import check_weights_safe, load_tokenizer

    folder = tmp_path / "model"
    folder.mkdir()
    for f in model_dir.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    (folder / "tokenizer.json").write_text('{"version": "1.0", "added_tokens": [{"content": "é"}]}', encoding="utf-8")
    check_weights_safe(folder, allow_pickle=False)  # all of it JSON: no complaint
    config = (folder / "config.json").read_text(encoding="utf-8")
    (folder / "config.json").write_text(config[: config.index('"hidden_size"') + 5], encoding="utf-8")
    with pytest.raises(ModelError) as e:
        load_model(cfg(load_in="fp32", mixed_precision="no"), folder, CPU)
    line = config[: config.index('"hidden_size"')].count("\n") + 1
    assert e.value.message.startswith(f"{folder / 'config.json'}:{line}:")
    assert e.value.message.endswith("invalid JSON: Unterminated string starting here (the file ends inside it: cut "
                                    "short)")
    assert "copy or download the model's files again" in e.value.hint
    (folder / "config.json").write_text(config, encoding="utf-8")
    tokenizer = (folder / "tokenizer.json").read_bytes()
    (folder / "tokenizer.json").write_bytes(tokenizer[: tokenizer.index("é".encode()) + 1])
    with pytest.raises(ModelError, match=f"tokenizer.json: not UTF-8 text at byte {tokenizer.index('é'.encode()):,} "
                       r"of [0-9,]+ \(the file ends inside a character: cut short\)"):
        load_tokenizer(str(folder))
    (folder / "tokenizer.json").write_bytes(tokenizer[: tokenizer.index(b'"added')])
    with pytest.raises(ModelError, match=r"tokenizer.json:1:20: invalid JSON: Expecting property name enclosed in "
                       r"double quotes \(the file ends here: cut short\)"):
        check_weights_safe(folder, allow_pickle=False)
    (folder / "tokenizer.json").write_bytes(tokenizer.replace(b'"1.0",', b'"1.0"'))  # an edit, not a cut
    with pytest.raises(ModelError) as e:
        check_weights_safe(folder, allow_pickle=False)
    assert e.value.message.endswith("tokenizer.json:1:19: invalid JSON: Expecting ',' delimiter")


@pytest.mark.parametrize("load_in", ["int8", "nf4"])
def test_quantized_load_on_cpu_is_refused_before_loading(load_in, tmp_path):
    # tmp_path holds no model at all: the refusal must come before any file is read.
    method = "qlora" if load_in == "nf4" else "lora"
    with pytest.raises(ConfigErrors) as e:
        load_model(cfg(method=method, load_in=load_in), tmp_path, CPU)
    err = next(x for x in e.value.errors if x.key == "load_in")
    assert "CUDA GPU" in err.message and load_in in err.message
    assert err.fix["load_in"] == "fp32"
    if method == "qlora":
        # Every precision is crossed out for QLoRA on a CPU: the message names the way out, the method.
        assert "qlora" in err.message and err.fix["method"] == "lora"
        assert "Use method lora instead (the same adapter on an unquantized base)" in err.message
    else:
        assert "Load the weights in fp32 or bf16 instead." in err.message and "method" not in err.fix


# ---------------------------------------------------------------- quantization configs
def test_nf4_config_is_explicit_qlora():
    q = bnb_config(cfg(method="qlora"))
    assert q.load_in_4bit and not q.load_in_8bit
    assert q.bnb_4bit_quant_type == "nf4"
    assert q.bnb_4bit_use_double_quant is True
    assert q.bnb_4bit_compute_dtype == torch.bfloat16
    assert bnb_config(cfg(method="qlora", mixed_precision="fp16", load_in="nf4")).bnb_4bit_compute_dtype == torch.float16


def test_int8_config_uses_the_threshold():
    q = bnb_config(cfg(method="lora", load_in="int8", int8_threshold=4.5))
    assert q.load_in_8bit and not q.load_in_4bit and q.llm_int8_threshold == 4.5
    assert bnb_config(cfg(load_in="bf16")) is None


def test_from_pretrained_kwargs_on_a_gpu(monkeypatch):
    kw = from_pretrained_kwargs(cfg(method="qlora", trust_remote_code=True), H100)
    assert kw["dtype"] == torch.bfloat16 and kw["device_map"] == {"": 0}
    assert kw["local_files_only"] is True and kw["use_safetensors"] is True and kw["trust_remote_code"] is True
    assert kw["quantization_config"].bnb_4bit_quant_type == "nf4"
    monkeypatch.setenv("LOCAL_RANK", "1")  # under accelerate launch each rank loads onto its own GPU
    assert from_pretrained_kwargs(cfg(load_in="bf16"), H100)["device_map"] == {"": 1}
    cpu_kw = from_pretrained_kwargs(cfg(load_in="fp32", allow_pickle=True), CPU)
    assert "device_map" not in cpu_kw and "quantization_config" not in cpu_kw and cpu_kw["use_safetensors"] is None


# ---------------------------------------------------------------- environment rules
def test_environment_rules_name_the_key_and_fix():
    e = errors(cfg(method="lora", load_in="bf16", mixed_precision="bf16"), T4)
    assert "bf16" in e["load_in"] and "Tesla T4" in e["load_in"] and "7.5" in e["load_in"]
    err = environment_errors(cfg(method="lora", load_in="bf16", mixed_precision="bf16"), T4)[0]
    assert err.fix == {"load_in": "fp16", "mixed_precision": "fp16"}
    # The fix itself must pass everywhere.
    assert errors(cfg(method="lora", **err.fix), T4) == {}
    assert errors(cfg(method="full", load_in="fp32", mixed_precision="fp16"), T4) == {}
    assert "mixed_precision" in errors(cfg(method="full", load_in="fp32", mixed_precision="bf16"), T4)
    # QLoRA's bf16 compute also needs bf16; fp16 compute works.
    assert "mixed_precision" in errors(cfg(method="qlora"), T4)
    assert errors(cfg(method="qlora", mixed_precision="fp16", load_in="nf4"), T4) == {}

    assert "CUDA" in errors(cfg(optimizer="adamw_8bit"), CPU)["optimizer"]
    assert "bitsandbytes" in errors(cfg(optimizer="paged_adamw_8bit"), NO_BNB)["optimizer"]
    assert "bitsandbytes" in errors(cfg(method="lora", load_in="int8"), NO_BNB)["load_in"]
    assert "loss scaling" in errors(cfg(load_in="fp32", mixed_precision="fp16"), CPU)["mixed_precision"]
    assert "no CUDA GPU" in errors(cfg(device="cuda", load_in="fp32", mixed_precision="no"), CPU)["device"]
    assert errors(cfg(device="cpu", load_in="fp32", mixed_precision="no"), H100) == {}
    assert errors(cfg(method="qlora", optimizer="paged_adamw_8bit"), H100) == {}
    with pytest.raises(ConfigErrors) as e:
        check_environment(cfg(method="prefix", gradient_checkpointing=True, mixed_precision="fp16",
                              load_in="fp32"), CPU)
    assert {x.key for x in e.value.errors} == {"gradient_checkpointing", "mixed_precision"}


def test_a_deepspeed_run_without_the_deepspeed_package_is_refused_by_name(monkeypatch, tmp_path):
    """It failed the run as "training failed: PackageNotFoundError ... This is a bug"."""
    import importlib.util

    ds = tmp_path / "ds.json"
    ds.write_text("{}")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "deepspeed" else real(name, *a))
    [err] = environment_errors(cfg(deepspeed=str(ds)), H100)
    assert err.key == "deepspeed" and err.fix == {"deepspeed": ""}
    assert err.message == f"deepspeed names a DeepSpeed config ({ds}), but the deepspeed package is not installed."
    assert errors(cfg(), H100) == {}  # no DeepSpeed, no question


def test_resolve_device():
    assert resolve_device(cfg(), CPU) == "cpu"
    assert resolve_device(cfg(), H100) == "cuda"
    assert resolve_device(cfg(device="cpu"), H100) == "cpu"


def test_detect_environment_matches_torch():
    env = detect_environment()
    assert env.cuda == torch.cuda.is_available()
    if not env.cuda:
        assert env.gpu_name is None and not env.bnb_available
    else:
        assert env.gpu_total_bytes > 0 and env.compute_capability is not None
    assert set(env.to_dict()) == {f.name for f in dataclasses.fields(Environment)}


# ---------------------------------------------------------------- Trainer kwargs
@pytest.mark.parametrize("optimizer,env,optim", [
    ("adamw", H100, "adamw_torch_fused"), ("adamw", CPU, "adamw_torch"), ("adamw_8bit", H100, "adamw_bnb_8bit"),
    ("paged_adamw_8bit", H100, "paged_adamw_8bit"), ("sgd", CPU, "sgd"),
])
def test_trainer_optimizer_names(optimizer, env, optim):
    from transformers.training_args import OptimizerNames

    kw = trainer_precision_kwargs(cfg(optimizer=optimizer), env)
    assert kw["optim"] == optim
    assert optim in {o.value for o in OptimizerNames}


def test_trainer_precision_flags(tmp_path):
    from transformers import TrainingArguments

    kw = trainer_precision_kwargs(cfg(load_in="fp32", mixed_precision="fp16", adam_epsilon=1e-7), T4)
    assert kw["fp16"] and not kw["bf16"] and not kw["use_cpu"] and kw["adam_epsilon"] == 1e-7
    kw = trainer_precision_kwargs(cfg(load_in="bf16", mixed_precision="bf16"), H100)
    assert kw["bf16"] and not kw["fp16"]
    kw = trainer_precision_kwargs(cfg(load_in="bf16", mixed_precision="bf16"), CPU)
    assert kw["use_cpu"] and kw["bf16"]
    fields = {f.name for f in dataclasses.fields(TrainingArguments)}
    assert set(kw) <= fields
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], **kw)  # valid on this CPU
    assert args.bf16 and args.use_cpu


# ---------------------------------------------------------------- the GUI's matrix
def test_validity_matrix_on_cpu():
    m = validity_matrix(CPU)
    assert len(m) == len(METHODS) * len(LOAD_IN) * len(MIXED_PRECISION)
    assert "quantized" in m[("full", "nf4", "bf16")]
    assert "nf4" in m[("qlora", "fp32", "no")]
    assert "CUDA" in m[("qlora", "nf4", "bf16")]
    assert "fp16" in m[("full", "fp16", "fp16")]
    assert "loss scaling" in m[("lora", "fp32", "fp16")]
    for method in METHODS:
        if method != "qlora":
            assert m[(method, "fp32", "no")] is None, method
            assert m[(method, "bf16", "bf16")] is None, method


def test_validity_matrix_on_gpus():
    h100, t4 = validity_matrix(H100), validity_matrix(T4)
    assert h100[("qlora", "nf4", "bf16")] is None and h100[("lora", "int8", "bf16")] is None
    assert h100[("lora", "fp32", "fp16")] is None
    assert "bf16" in t4[("lora", "bf16", "bf16")] and "Tesla T4" in t4[("lora", "bf16", "bf16")]
    assert t4[("lora", "fp16", "fp16")] is None and t4[("qlora", "nf4", "fp16")] is None
    assert "quantized" in h100[("freeze", "int8", "bf16")]


# ---------------------------------------------------------------- real quantized loads
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("load_in", ["int8", "nf4"])
def test_quantized_load_on_gpu(load_in, model_dir):
    import bitsandbytes as bnb

    env = detect_environment()
    method = "qlora" if load_in == "nf4" else "lora"
    mixed = "bf16" if env.bf16_supported else "fp16"
    c = cfg(method=method, load_in=load_in, mixed_precision=mixed, gradient_checkpointing=True)
    model = load_model(c, model_dir, env)
    layer = model.model.layers[0].self_attn.q_proj
    assert isinstance(layer, bnb.nn.Linear4bit if load_in == "nf4" else bnb.nn.Linear8bitLt)
    # prepare_model_for_kbit_training: base frozen, norms upcast to fp32
    assert not any(p.requires_grad for p in model.parameters())
    assert model.model.norm.weight.dtype == torch.float32
    from engine.methods import get_method

    peft_model = get_method(method).apply(model, c)
    x = torch.randint(0, 128, (2, 16), device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16 if mixed == "bf16" else torch.float16):
        loss = peft_model(input_ids=x, labels=x).loss
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in peft_model.parameters() if p.requires_grad)
