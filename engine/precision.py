"""Precision: where the model runs, in which dtype, quantized or not, and with which optimizer.

This module answers four questions, in the order a run asks them:

1. :func:`detect_environment` - what this machine has (CUDA, bf16, bitsandbytes, memory).
2. :func:`check_environment` - can this run config work here? Every refusal is a
   :class:`~engine.errors.ConfigError` naming the key, the reason and a fix, raised before
   any weight is read.
3. :func:`load_model` - the base model in the right dtype or quantization, on the right
   device, prepared for k-bit training and gradient checkpointing.
4. :func:`trainer_precision_kwargs` - the matching ``TrainingArguments`` fields.

Config-only rules (e.g. full fine-tuning of fp16 weights) live in ``RunConfig.validate``;
this module adds the rules that depend on the machine.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import ConfigError, ConfigErrors, ModelError

if TYPE_CHECKING:
    import torch
    from transformers import BitsAndBytesConfig, PreTrainedModel

    from engine.config import RunConfig

# TrainingArguments ``optim`` names for our optimizer choices. The fused AdamW keeps no
# full-size temporary per step (unlike foreach), see ../shared/notes/memory-model.md.
OPTIM_NAMES = {
    "adamw": "adamw_torch",  # upgraded to adamw_torch_fused on CUDA
    "adamw_8bit": "adamw_bnb_8bit",
    "paged_adamw_8bit": "paged_adamw_8bit",
    "sgd": "sgd",
}


@dataclass
class Environment:
    """What the machine offers for training, as plain values (safe to send to the GUI).

    Attributes:
        cuda: A CUDA GPU is usable by torch.
        gpu_name: The first GPU's name, e.g. ``"NVIDIA H100 80GB HBM3"``.
        gpu_total_bytes: Its total memory.
        gpu_free_bytes: Its free memory when detected (other processes included).
        bf16_supported: The GPU computes bf16 natively (Ampere or newer). On a CPU-only
            machine this is True: torch's CPU kernels support bf16.
        bnb_available: bitsandbytes is installed and CUDA is usable, so int8/nf4 weights
            and 8-bit optimizers can work.
        compute_capability: ``(major, minor)`` of the GPU, e.g. ``(9, 0)``.
    """

    cuda: bool
    gpu_name: str | None = None
    gpu_total_bytes: int | None = None
    gpu_free_bytes: int | None = None
    bf16_supported: bool = True
    bnb_available: bool = False
    compute_capability: tuple[int, int] | None = None

    @classmethod
    def cpu_only(cls) -> Environment:
        """A machine without a GPU (tests and the GUI's offline view use it)."""
        return cls(cuda=False, bf16_supported=True, bnb_available=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def detect_environment(*, free_memory: bool = True) -> Environment:
    """Look at this machine's GPU and libraries, cheaply.

    Only ``torch.cuda`` queries run; bitsandbytes is looked up, not imported (importing
    it on a CPU-only machine prints kernel warnings and takes a second).

    Args:
        free_memory: Also query free GPU memory. That creates a CUDA context in the calling
            process (a few hundred MB of GPU memory until it exits), so the GUI process should
            pass False and leave the full query to the worker.
    """
    import torch

    bnb_installed = importlib.util.find_spec("bitsandbytes") is not None
    if not torch.cuda.is_available():
        return Environment(cuda=False, bf16_supported=True, bnb_available=False)
    index = torch.cuda.current_device()
    props = torch.cuda.get_device_properties(index)
    free, total = None, int(props.total_memory)
    if free_memory:
        try:
            free, total = torch.cuda.mem_get_info(index)
        except RuntimeError:  # a GPU in exclusive mode held by another process
            pass
    return Environment(
        cuda=True,
        gpu_name=props.name,
        gpu_total_bytes=int(total),
        gpu_free_bytes=int(free) if free is not None else None,
        # Emulated bf16 (e.g. on a T4) is many times slower than fp16, so only native counts.
        bf16_supported=bool(torch.cuda.is_bf16_supported(including_emulation=False)),
        bnb_available=bnb_installed,
        compute_capability=(props.major, props.minor),
    )


def resolve_device(cfg: RunConfig, env: Environment) -> str:
    """``'cuda'`` or ``'cpu'`` for this config on this machine (``auto`` prefers the GPU)."""
    if cfg.device == "cpu":
        return "cpu"
    if cfg.device == "cuda":
        return "cuda"
    return "cuda" if env.cuda else "cpu"


def _bf16_fix(cfg: RunConfig) -> dict[str, Any]:
    """The closest working precision without bf16: fp16 AMP over fp32 or fp16 weights."""
    if cfg.method in ("full", "freeze") or cfg.load_in == "fp32":
        return {"load_in": "fp32", "mixed_precision": "fp16"}
    if cfg.load_in in ("int8", "nf4"):
        return {"mixed_precision": "fp16"}
    return {"load_in": "fp16", "mixed_precision": "fp16"}


def environment_errors(cfg: RunConfig, env: Environment) -> list[ConfigError]:
    """Every reason this config can't run on ``env`` (empty if it can).

    Args:
        cfg: A run config that already passed ``RunConfig.validate``.
        env: The machine, usually from :func:`detect_environment`.
    """
    from engine.methods import method_errors

    errors: list[ConfigError] = method_errors(cfg)

    def bad(key: str, msg: str, fix: dict[str, Any] | None = None, hint: str | None = None) -> None:
        errors.append(ConfigError(msg, key=key, fix=fix, hint=hint))

    if cfg.device == "cuda" and not env.cuda:
        bad("device", "device is 'cuda' but torch sees no CUDA GPU on this machine (no GPU, no driver, "
            "or a CPU-only torch build).", fix={"device": "auto"})
    device = resolve_device(cfg, env)
    on_gpu = device == "cuda" and env.cuda
    gpu = env.gpu_name or "this GPU"

    if cfg.load_in in ("int8", "nf4"):
        what = "LLM.int8" if cfg.load_in == "int8" else "4-bit NF4"
        cpu_fix = ({"method": "lora", "load_in": "fp32", "mixed_precision": "no"} if cfg.method == "qlora"
                   else {"load_in": "fp32", "mixed_precision": "no"})
        if not on_gpu:
            # For QLoRA no precision cell is possible (it is quantized by definition): the way
            # out is the method, and the message says so rather than only the fix dict.
            instead = ("; method qlora is therefore not possible here. Use method lora instead (the same "
                       "adapter on an unquantized base), loaded in fp32 or bf16" if cfg.method == "qlora"
                       else ". Load the weights in fp32 or bf16 instead")
            bad("load_in", f"load_in '{cfg.load_in}' ({what} via bitsandbytes) needs a CUDA GPU, and this "
                f"run is on the CPU{instead}.", fix=cpu_fix)
        elif not env.bnb_available:
            bad("load_in", f"load_in '{cfg.load_in}' needs the bitsandbytes package, which is not installed.",
                fix={"load_in": "bf16" if env.bf16_supported else "fp16"},
                hint="pip install bitsandbytes")
    if cfg.optimizer in ("adamw_8bit", "paged_adamw_8bit"):
        if not on_gpu:
            bad("optimizer", f"optimizer '{cfg.optimizer}' is a bitsandbytes CUDA optimizer and this run is "
                "on the CPU; use adamw or sgd.", fix={"optimizer": "adamw"})
        elif not env.bnb_available:
            bad("optimizer", f"optimizer '{cfg.optimizer}' needs the bitsandbytes package, which is not "
                "installed.", fix={"optimizer": "adamw"}, hint="pip install bitsandbytes")

    if cfg.deepspeed and importlib.util.find_spec("deepspeed") is None:
        # transformers' check failed the run as "PackageNotFoundError ... This is a bug".
        bad("deepspeed", f"deepspeed names a DeepSpeed config ({cfg.deepspeed}), but the deepspeed package is not "
            "installed.", fix={"deepspeed": ""}, hint="pip install deepspeed (on a machine with CUDA GPUs), or leave "
            "deepspeed empty for a run without DeepSpeed.")

    uses_bf16 = (cfg.load_in == "bf16" or cfg.mixed_precision == "bf16"
                 # QLoRA/int8 compute in bf16 unless mixed precision is fp16 (see bnb_config).
                 or (cfg.load_in in ("int8", "nf4") and cfg.mixed_precision != "fp16"))
    if on_gpu and uses_bf16 and not env.bf16_supported:
        cc = f" (compute capability {env.compute_capability[0]}.{env.compute_capability[1]})" \
            if env.compute_capability else ""
        key = "load_in" if cfg.load_in == "bf16" else "mixed_precision"
        bad(key, f"{gpu}{cc} has no native bf16 (it needs an Ampere GPU or newer), but this run uses bf16 "
            f"(load_in: {cfg.load_in}, mixed_precision: {cfg.mixed_precision}). Use fp16 mixed precision, "
            "which scales the loss to avoid underflow.", fix=_bf16_fix(cfg))
    if cfg.mixed_precision == "fp16" and not on_gpu:
        bad("mixed_precision", "mixed_precision fp16 needs a GPU: fp16 training relies on CUDA loss scaling, "
            "which the CPU doesn't have. On the CPU use bf16 or no mixed precision.",
            fix={"mixed_precision": "bf16" if cfg.load_in != "fp16" else "no"})
    return errors


def check_environment(cfg: RunConfig, env: Environment) -> None:
    """Refuse a run this machine can't do, before anything is loaded.

    Covers the method's own rules (``engine.methods.method_errors``) and the machine's:
    CUDA, bf16 support, bitsandbytes, fp16 loss scaling.

    Raises:
        ConfigErrors: each problem as a ``ConfigError`` with ``key``, reason and ``fix``.
    """
    errors = environment_errors(cfg, env)
    if errors:
        raise ConfigErrors(errors)


def model_errors(cfg: RunConfig, model_path: Path) -> list[ConfigError]:
    """Problems of this config with this model, found from its config.json without loading weights.

    An architecture transformers can't build as a causal LM (:func:`engine.models.architecture_problem`),
    and an attention kernel the model's class doesn't offer (Gemma 2 has no SDPA attention, and
    transformers refuses it only once loading has begun, with a message about GitHub). A model that
    runs its own code (trust_remote_code) is not checked further.
    """
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    from engine.models import architecture_problem

    problem = architecture_problem(Path(model_path), cfg.trust_remote_code)
    if problem is not None:
        return [problem]
    try:
        config = AutoConfig.from_pretrained(model_path, local_files_only=True,
                                            trust_remote_code=cfg.trust_remote_code)
        cls = MODEL_FOR_CAUSAL_LM_MAPPING[type(config)]
    except Exception:  # noqa: BLE001 - loading says what is wrong with the folder
        return []
    errors = []
    if cfg.attn_implementation == "sdpa" and not getattr(cls, "_supports_sdpa", True):
        errors.append(ConfigError(
            f"attn_implementation: sdpa is not available for {cls.__name__} ({config.model_type}); "
            "its attention runs only as eager", key="attn_implementation", fix={"attn_implementation": "eager"},
            hint="eager keeps the whole attention matrix per layer; the memory estimate already counts it."))
    return errors


def check_model(cfg: RunConfig, model_path: Path) -> None:
    """Raise :class:`~engine.errors.ConfigErrors` for :func:`model_errors`, before anything is loaded."""
    errors = model_errors(cfg, Path(model_path))
    if errors:
        raise ConfigErrors(errors)


def compute_dtype(cfg: RunConfig) -> torch.dtype:
    """The dtype quantized layers compute in, and that their non-quantized parts load in.

    bf16 unless the run uses fp16 AMP; it is set explicitly because the bitsandbytes
    default compute dtype is float32, which makes every activation fp32.
    """
    import torch

    return torch.float16 if cfg.mixed_precision == "fp16" else torch.bfloat16


def load_dtype(cfg: RunConfig) -> torch.dtype:
    """The ``dtype=`` passed to ``from_pretrained`` for ``cfg.load_in``."""
    import torch

    if cfg.load_in in ("int8", "nf4"):
        return compute_dtype(cfg)
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[cfg.load_in]


def bnb_config(cfg: RunConfig) -> BitsAndBytesConfig | None:
    """The bitsandbytes quantization config for ``cfg.load_in`` (None when not quantized).

    NF4 follows the QLoRA paper (arXiv 2305.14314): NF4 data type, double quantization of
    the absmax constants, bf16 compute. Every field is set explicitly because the
    ``BitsAndBytesConfig`` defaults are fp4, no double quantization and fp32 compute.
    """
    if cfg.load_in not in ("int8", "nf4"):
        return None
    from transformers import BitsAndBytesConfig

    if cfg.load_in == "int8":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_threshold=float(cfg.int8_threshold))
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype(cfg),
    )


def _local_rank() -> int:
    # Under `accelerate launch` each process owns the GPU of its local rank.
    return int(os.environ.get("LOCAL_RANK", "0"))


def from_pretrained_kwargs(cfg: RunConfig, env: Environment) -> dict[str, Any]:
    """The keyword arguments :func:`load_model` passes to ``AutoModelForCausalLM.from_pretrained``.

    Split out so tests can check them on a machine that can't load quantized models.
    """
    kwargs: dict[str, Any] = {
        "dtype": load_dtype(cfg),
        "attn_implementation": cfg.attn_implementation,
        "local_files_only": True,
        "trust_remote_code": cfg.trust_remote_code,
        # None lets transformers fall back to .bin files, which we only allow with consent.
        "use_safetensors": None if cfg.allow_pickle else True,
    }
    quant = bnb_config(cfg)
    if quant is not None:
        kwargs["quantization_config"] = quant
    if resolve_device(cfg, env) == "cuda":
        # Loading straight onto the GPU avoids a full CPU copy; bnb quantizes while placing.
        kwargs["device_map"] = {"": _local_rank()}
    return kwargs


def load_model(cfg: RunConfig, model_path: Path, env: Environment, *,
               vocab_size: int | None = None) -> PreTrainedModel:
    """Load the base model for training: dtype, quantization, device, checkpointing.

    Args:
        cfg: The run config (``load_in``, ``mixed_precision``, ``int8_threshold``,
            ``attn_implementation``, ``gradient_checkpointing``, ``trust_remote_code``,
            ``allow_pickle``, ``device`` are read).
        model_path: A local model folder (see ``engine.models.resolve_model_path``).
        env: The machine, from :func:`detect_environment`.
        vocab_size: The tokenizer's length when ``add_tokens`` added some: embeddings with
            fewer rows grow to it (the new rows start at the old embeddings' mean and
            covariance), before the k-bit preparation and checkpointing hooks, which hold
            on to the embedding modules.

    Returns:
        A ``PreTrainedModel`` in train mode. Quantized bases have been through PEFT's
        ``prepare_model_for_kbit_training`` (norms, embeddings and head upcast to fp32,
        base frozen). With ``gradient_checkpointing`` the non-reentrant variant is on and
        the input embeddings' outputs require grad, so frozen-base methods still get
        gradients through checkpointed blocks.

    Raises:
        ConfigErrors: the config can't run on this machine (see :func:`check_environment`) or
            with this model (see :func:`model_errors`).
        ModelError: pickle-only weights without ``allow_pickle``, or the model can't be loaded.
    """
    from transformers import AutoModelForCausalLM

    from engine.models import check_weights_safe

    check_environment(cfg, env)
    model_path = Path(model_path)
    check_weights_safe(model_path, cfg.allow_pickle)
    check_model(cfg, model_path)
    kwargs = from_pretrained_kwargs(cfg, env)
    try:
        model = AutoModelForCausalLM.from_pretrained(model_path, **kwargs)
    except ValueError as e:
        if "trust_remote_code" in str(e):
            raise ModelError(f"the model in '{model_path}' needs its own code to run",
                             fix={"trust_remote_code": True},
                             hint="Only enable trust_remote_code if you trust the model's author.") from None
        raise ModelError(f"can't load the model in '{model_path}': {e}") from None
    except OSError as e:
        raise ModelError(f"can't load the model in '{model_path}': {e}") from None
    # Generation caches are useless in training and warn with gradient checkpointing.
    if getattr(model.config, "use_cache", None) is not None:
        model.config.use_cache = False
    if vocab_size and vocab_size > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(vocab_size, mean_resizing=True)
    if cfg.load_in in ("int8", "nf4"):
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=cfg.gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    elif cfg.gradient_checkpointing:
        enable_checkpointing(model)
        # Without this a frozen embedding yields activations without grad, and PEFT methods
        # would get no gradient through the checkpointed blocks.
        model.enable_input_require_grads()
    model.train()
    return model


def enable_checkpointing(model: PreTrainedModel) -> None:
    """Non-reentrant gradient (activation) checkpointing of every decoder layer.

    transformers 5.24 renamed ``gradient_checkpointing_enable`` to
    ``activation_checkpointing_enable`` (the old name warns); older 5.x only has the old one.
    """
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def trainer_precision_kwargs(cfg: RunConfig, env: Environment) -> dict[str, Any]:
    """The ``TrainingArguments`` fields for this config's precision, optimizer and device.

    ``fp16=True`` makes the Trainer use a ``GradScaler`` (dynamic loss scaling), so small
    fp16 gradients don't underflow. Gradient checkpointing is not in here: :func:`load_model`
    already switched it on, with the non-reentrant variant.

    Returns:
        ``bf16``, ``fp16``, ``optim``, ``use_cpu``, ``adam_epsilon`` and ``max_grad_norm``.
    """
    device = resolve_device(cfg, env)
    optim = OPTIM_NAMES[cfg.optimizer]
    if cfg.optimizer == "adamw" and device == "cuda":
        optim = "adamw_torch_fused"
    return {
        "bf16": cfg.mixed_precision == "bf16",
        "fp16": cfg.mixed_precision == "fp16",
        "optim": optim,
        "use_cpu": device == "cpu",
        "adam_epsilon": cfg.adam_epsilon,
        "max_grad_norm": cfg.max_grad_norm,
    }


def validity_matrix(env: Environment) -> dict[tuple[str, str, str], str | None]:
    """Every (method, load_in, mixed_precision) combination -> why it can't run, or None.

    The GUI disables the impossible combinations and shows the reason as a tooltip.
    """
    from engine.config import LOAD_IN, METHODS, MIXED_PRECISION
    from engine.methods import invalid_reason

    return {(m, li, mp): invalid_reason(m, li, mp, env)
            for m in METHODS for li in LOAD_IN for mp in MIXED_PRECISION}
