"""Finding and loading models safely: local folders or the Hugging Face cache, offline.

No code path here touches the network: cache lookups use ``local_files_only``; remote
code runs only when the run config says ``trust_remote_code: true``; pickle weights load
only with ``allow_pickle: true``.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import ConfigError, ModelError, StudioError, json_problem
from engine.paths import demo_model_dir

SAFE_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "adapter_model.safetensors")
TOKENIZER_FILES = frozenset({"tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "spiece.model",
                             "sentencepiece.bpe.model", "tokenizer_config.json"})
"""Files a Hugging Face tokenizer loads from; a folder with none of them has no tokenizer."""
PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json", "model.pt", "adapter_model.bin")


def resolve_model_path(model: str) -> Path:
    """Turn the run config's ``model`` into a local folder, never downloading.

    Args:
        model: ``demo``, a folder path, or a Hugging Face id present in the local cache.

    Raises:
        ModelError: not a folder with ``config.json`` and not in the cache.
    """
    if model == "demo":
        path = demo_model_dir()
        if not (path / "config.json").exists():
            from engine.demo import ensure_demo_model

            ensure_demo_model()
        return path
    path = Path(os.path.expanduser(model))
    if path.is_dir():
        if not (path / "config.json").exists():
            _refuse_run_or_adapter_folder(path)
            if any(path.glob("*.gguf")):
                raise ModelError(f"model folder '{path}' holds GGUF files only: GGUF is for running a model "
                                 "(llama.cpp, Ollama), not for training it", hint="Pick the model in its Hugging "
                                 "Face form: a folder with config.json, the tokenizer and .safetensors weights.")
            raise ModelError(f"model folder '{path}' has no config.json", hint="Pick the folder that "
                             "holds config.json and the weights.")
        return path
    if path.suffix == ".json" and path.is_file():
        return path.parent
    if path.is_file():
        # A weights file, a GGUF or a config picked by mistake: "no such folder" said it wasn't there.
        if path.suffix.lower() == ".gguf":
            raise ModelError(f"model '{model}' is a GGUF file: GGUF is for running a model (llama.cpp, Ollama), "
                             "not for loading it here", hint="Pick the model in its Hugging Face form: a folder "
                             "with config.json, the tokenizer and .safetensors weights.")
        folder = path.parent
        raise ModelError(f"model '{model}' is a file, not a model folder", hint=(
            f"Give the folder that holds it: {folder}" if (folder / "config.json").exists() else
            "Give a folder with config.json, a Hugging Face id from your cache, or 'demo'."))
    if "/" in model and not path.exists() and not model.startswith((".", "/", "~")):
        found = _from_hf_cache(model)
        if found is not None:
            return found
        if not path.parent.is_dir():  # 'org/name' with no folder 'org' here: a hub id
            raise ModelError(f"model '{model}' is not in the local Hugging Face cache and Finetune Studio "
                             "does not download models", hint="Download it once with `hf download "
                             f"{model}` on a connected machine, or pick a local folder.")
    # A local path (its folder is there): `hf download models/my-modle` was no advice for a typo. A
    # relative one through a folder names that folder: which one 'models/' is depends on where it ran.
    where = "" if path.is_absolute() or path.parent == Path() else f" in {path.parent.resolve()}"
    raise ModelError(f"model '{model}': no such folder{where}" + _nearest_folder(path), hint="Give a folder "
                     "with config.json, a Hugging Face id from your cache, or 'demo'.")


def missing_model_in(model: str, folder: Path) -> Path | None:
    """Where a run config's relative ``model``, found neither in the YAML file's ``folder`` nor in the
    current folder, was meant: ``folder / model`` (absolute) when its parent folder is there and either
    holds a model folder of a close name or the current folder has no such parent; ``None`` when the
    model is a Hugging Face id in the cache, or nothing points at ``folder``.

    Without this, ``models/tiny-qwn2`` in /tmp/x/run.yaml run from elsewhere was taken for a hub id and
    got `hf download` advice; now :func:`resolve_model_path` says "no such folder" there and names the
    close one in /tmp/x/models.
    """
    path = Path(os.path.expanduser(model))
    if path.is_absolute() or model == "demo":
        return None
    meant = (folder / path).absolute()
    here = Path.cwd() / path.parent
    if not meant.parent.is_dir() or here.is_dir() and (here.samefile(meant.parent) or not _nearest_folder(meant)):
        return None  # the current folder's says as much, in the user's words
    if "/" in model and not model.startswith((".", "~")) and _from_hf_cache(model) is not None:
        return None
    return meant


def _nearest_folder(path: Path) -> str:
    """``"; did you mean 'models/qwen'?"`` when ``path``'s folder holds a model folder (with config.json)
    of a close name, else ``""``."""
    import difflib

    try:
        names = [p.name for p in path.parent.iterdir() if (p / "config.json").is_file()]
    except OSError:
        return ""
    close = difflib.get_close_matches(path.name, names, n=1, cutoff=0.6)
    return f"; did you mean '{path.parent / close[0]}'?" if close else ""


def _refuse_run_or_adapter_folder(path: Path) -> None:
    """A run or adapter folder where a model was expected: say which folder(s) to give instead.

    Raises:
        ModelError: always, when ``path`` is a run folder or an adapter folder.
    """
    from engine.runs import is_run_folder, run_model

    if (path / "adapter_config.json").exists():
        # A LoRA run's final/ (or any PEFT save): its base is the run's model, else what PEFT recorded.
        base = run_model(path.parent).base if is_run_folder(path.parent) and path.name == "final" else None
        if base is None:
            try:
                base = json.loads((path / "adapter_config.json").read_text(encoding="utf-8")).get(
                    "base_model_name_or_path")
            except (OSError, json.JSONDecodeError, AttributeError):
                base = None
        model = base or "BASE_MODEL"
        raise ModelError(f"'{path}' is an adapter, not a model" + (f": it was trained on {base}" if base else
                         " (it records no base model)"),
                         hint=f"Give {model} as the model and {path} as the adapter (finetune-studio generate "
                         f"--base {model} --adapter {path}).")
    if not is_run_folder(path):
        return
    run = run_model(path)  # raises when the run has no final/ yet
    if run.adapter is None:
        raise ModelError(f"'{path}' is a run folder, not a model: the model its {run.method} run trained is "
                         f"in {run.base}", hint=f"Give {run.base} as the model.")
    raise ModelError(f"'{path}' is a run folder, not a model: its {run.method} run trained an adapter "
                     f"({run.adapter}) on the base model {run.base}",
                     hint=f"Give {run.base} as the model and {run.adapter} as the adapter "
                     f"(finetune-studio generate --base {run.base} --adapter {path}).")


def cached_models() -> list[str]:
    """The ids of the models in the Hugging Face cache that have a snapshot, sorted (none without a cache).

    Read from the cache's folder names (``models--org--name``), as
    :func:`engine.data.hub.cached_datasets` reads the datasets': no file of any model is opened.
    """
    from huggingface_hub import constants

    try:
        folders = [p for p in Path(constants.HF_HUB_CACHE).glob("models--*--*") if any((p / "snapshots").glob("*"))]
    except OSError:
        return []
    return sorted(p.name.removeprefix("models--").replace("--", "/", 1) for p in folders)


def _from_hf_cache(repo_id: str) -> Path | None:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # noqa: BLE001 - any failure means "not cached"
        return None


def read_model_config(model: str) -> dict[str, Any]:
    """The model's ``config.json`` as a dict (enough for the memory estimate)."""
    path = resolve_model_path(model) / "config.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ModelError(f"{path}:{e.lineno}:{e.colno}: invalid JSON: {json_problem(e)}") from None


@dataclass
class ModelInfo:
    """What the model picker shows, read from the folder without loading weights."""

    path: str
    architecture: str
    model_type: str
    vocab_size: int
    hidden_size: int
    num_layers: int
    context_length: int | None
    dtype: str | None
    has_chat_template: bool
    has_tokenizer: bool
    safetensors: bool
    pickle_only: bool
    tied_embeddings: bool


def model_info(model: str) -> ModelInfo:
    path = resolve_model_path(model)
    cfg = read_model_config(str(path))
    text_cfg = cfg.get("text_config", cfg)
    from engine.data.templates import saved_chat_template

    chat = saved_chat_template(path) is not None
    files = {p.name for p in path.iterdir()}
    safe = any(n in files for n in SAFE_WEIGHTS) or any(n.endswith(".safetensors") for n in files)
    pickle = any(n in files for n in PICKLE_WEIGHTS) or any(n.endswith(".bin") for n in files)
    return ModelInfo(
        path=str(path),
        architecture=(cfg.get("architectures") or ["?"])[0],
        model_type=cfg.get("model_type", "?"),
        vocab_size=int(text_cfg.get("vocab_size", 0)),
        hidden_size=int(text_cfg.get("hidden_size", 0)),
        num_layers=int(text_cfg.get("num_hidden_layers", 0)),
        context_length=text_cfg.get("max_position_embeddings"),
        dtype=cfg.get("dtype") or cfg.get("torch_dtype"),
        has_chat_template=chat,
        has_tokenizer=has_tokenizer_files(files),
        safetensors=safe,
        pickle_only=pickle and not safe,
        tied_embeddings=bool(text_cfg.get("tie_word_embeddings", cfg.get("tie_word_embeddings", False))),
    )


def vocab_matrices(path: Path) -> list[tuple[Path, str, int]]:
    """The model's vocabulary matrices (input embeddings, and the output head when it is stored apart)
    in its safetensors files, as ``(file, tensor name, rows)``, read from the files' headers alone.

    Found by shape (vocab_size x hidden_size, 16- or 32-bit floats), so any architecture's names
    work. Empty without safetensors weights or when they are quantized.
    """
    from engine.adapters import safetensors_header

    cfg = read_model_config(str(path))
    text_cfg = cfg.get("text_config", cfg)
    shape = [int(text_cfg.get("vocab_size") or 0), int(text_cfg.get("hidden_size") or 0)]
    files = [f for f in sorted(Path(path).glob("*.safetensors")) if not f.name.startswith("adapter_")]
    return [(file, name, shape[0]) for file in files for name, t in safetensors_header(file).items()
            if t["shape"] == shape and t["dtype"] in ("F32", "F16", "BF16")]


def architecture_problem(path: Path, trust_remote_code: bool = False) -> ConfigError | None:
    """Why transformers can't build this folder's model as a causal LM from its config.json, as a bad
    value of the key ``model`` (None when it can, or when config.json can't say: loading then says
    what is wrong).

    The architectures it doesn't know (a model newer than this transformers, a typo in model_type),
    one that has no causal-LM head (T5, a vision-language model transformers loads only with its
    processor), and one that ships its own code without ``trust_remote_code``. These failed a run after
    its folder was made, in transformers' words (a paragraph about installing it from GitHub).
    Imports transformers' auto mappings (names only, no model code).
    """
    import transformers
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    try:
        config = read_model_config(str(path))
    except (StudioError, OSError, UnicodeDecodeError):
        return None
    if not isinstance(config, dict):
        return None
    model_type = config.get("model_type")
    auto_map = config.get("auto_map") if isinstance(config.get("auto_map"), dict) else {}
    own_code = "AutoModelForCausalLM" in auto_map
    where = path / "config.json"
    if model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES or (own_code and trust_remote_code):
        return None
    if own_code:
        return ConfigError(f"{where}: the model ships its own code ({auto_map['AutoModelForCausalLM']}), which "
                           "runs only with trust_remote_code: true", key="model", fix={"trust_remote_code": True},
                           hint="Turn it on only if you trust the model's source: its Python code runs on this "
                           "machine.")
    if not isinstance(model_type, str) or not model_type:
        return ConfigError(f"{where}: no model_type, so transformers can't tell which architecture it is",
                           key="model", hint="Copy the model's config.json from its repository again.")
    if model_type not in CONFIG_MAPPING_NAMES:
        return ConfigError(f"{where}: model_type '{model_type}' is no architecture transformers "
                           f"{transformers.__version__} knows", key="model",
                           hint="A model newer than this transformers needs a newer one, installed in Finetune "
                           "Studio's environment; check the spelling of model_type otherwise.")
    return ConfigError(f"{where}: a '{model_type}' model has no causal language-model head in transformers "
                       "(AutoModelForCausalLM): Finetune Studio trains decoder language models such as Llama, "
                       "Qwen, Mistral, Gemma and Phi", key="model",
                       hint="Pick a decoder (causal) language model; encoder-decoder (T5) and vision-language "
                       "models that transformers loads only with their processor can't be trained here.")


def has_tokenizer_files(names: set[str]) -> bool:
    """Whether a folder holding these file names has a tokenizer to load."""
    return bool(names & TOKENIZER_FILES) or any(n.endswith(".tiktoken") for n in names)


def check_tokenizer_files(path: Path) -> None:
    """Refuse a model folder saved without its tokenizer (``save_pretrained`` of the model alone).

    Raises:
        ModelError: the folder holds none of :data:`TOKENIZER_FILES`.
    """
    if not has_tokenizer_files({p.name for p in path.iterdir()}):
        raise ModelError(f"model folder '{path}' has no tokenizer ({', '.join(sorted(TOKENIZER_FILES))})",
                         hint="Copy the tokenizer files of the model's repository into the folder (a model "
                         "saved without its tokenizer lacks them).")


def check_weights_safe(path: Path, allow_pickle: bool) -> None:
    """Refuse pickle-only checkpoints unless the user consented.

    Raises:
        ModelError: only pickle weights are present and ``allow_pickle`` is false.
    """
    files = {p.name for p in path.iterdir()}
    safe = any(n.endswith(".safetensors") or n == "model.safetensors.index.json" for n in files)
    pickle = any(n.endswith((".bin", ".pt", ".pth")) for n in files)
    if not safe and not pickle:
        raise ModelError(f"'{path}' has no weights (.safetensors files)",
                         hint="Copy the model's .safetensors files (and model.safetensors.index.json when it is "
                         "sharded) into the folder.")
    if pickle and not safe and not allow_pickle:
        # How to allow them is the fix, which each command writes its own way (generate's switch,
        # train's override, a run-config line); a hint naming one of them misled the others.
        raise ModelError(f"'{path}' holds only pickle weights (.bin), which can run arbitrary code when "
                         "loaded", fix={"allow_pickle": True},
                         hint="Convert it to safetensors, or allow pickle weights only if you trust its source.")
    if safe:
        check_weights_complete(path)
    check_json_files(path)  # every loader asks this before loading: the folder's JSON too


MODEL_JSON_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                    "special_tokens_map.json", "added_tokens.json", "preprocessor_config.json")
"""A model folder's JSON files that transformers reads when it loads the model or its tokenizer."""


def check_json_files(path: Path) -> None:
    """Refuse a model folder whose JSON files (:data:`MODEL_JSON_FILES`) aren't JSON: cut short by an
    interrupted copy, or edited by hand. The run failed after its folder was made, with "OSError: It looks
    like the config file ... is not a valid JSON file" told as a bug, or the decoder's message about a
    byte. Each file is read once per size and time.

    Raises:
        ModelError: ``FILE:LINE:COLUMN: invalid JSON: ...`` (or the byte that isn't UTF-8).
    """
    for name in MODEL_JSON_FILES:
        file = path / name
        try:
            st = file.stat()
        except OSError:
            continue
        problem = _json_problem(str(file), st.st_size, st.st_mtime_ns)
        if problem:
            raise ModelError(problem, hint="A copy or download cut short leaves a file like this: copy or download "
                             "the model's files again (or undo the edit).")


@functools.lru_cache(maxsize=64)
def _json_problem(file: str, size: int, mtime_ns: int) -> str | None:
    text = ""
    try:
        text = Path(file).read_bytes().decode("utf-8")
        json.loads(text)
    except UnicodeDecodeError as e:
        return f"{file}: not UTF-8 text at byte {e.start:,} of {size:,}" + (
            " (the file ends inside a character: cut short)" if e.reason == "unexpected end of data" else "")
    except json.JSONDecodeError as e:
        # The end of the text inside a value or a string (no closing quote follows it): cut short.
        cut = (" (the file ends here: cut short)" if e.pos >= len(text.rstrip())
               else " (the file ends inside it: cut short)" if e.msg.startswith("Unterminated string") else "")
        return f"{file}:{e.lineno}:{e.colno}: invalid JSON: {json_problem(e)}{cut}"
    except (OSError, RecursionError) as e:
        return f"{file}: can't be read: {getattr(e, 'strerror', None) or e}"
    return None


def check_weights_complete(path: Path) -> None:
    """Refuse safetensors weights that are cut short, unreadable, padded or missing a shard.

    An interrupted download or copy leaves a file shorter than its header says, or an index that
    names shards the folder lacks; loading then failed inside the run ("SafetensorError: incomplete
    metadata, file not fully covered", told as a bug) after its folder was made. Reads only the
    headers (cached by size and time), so the Train form can ask it as the user types.

    Raises:
        ModelError: which file, and what is wrong with it.
    """
    files = sorted(path.glob("*.safetensors"))
    index = path / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError):
            raise ModelError(f"'{index}' can't be read as a safetensors index (no weight_map of tensor names to "
                             "files)", hint=_COPY_AGAIN) from None
        missing = [name for name in shards if not (path / name).is_file()]
        if missing:
            raise ModelError(f"weights in '{path}': {len(missing)} of the {len(shards)} files its "
                             f"model.safetensors.index.json names are missing: {', '.join(missing[:3])}"
                             + (f" and {len(missing) - 3} more" if len(missing) > 3 else ""), hint=_COPY_AGAIN)
    for file in files:
        st = file.stat()
        problem = _safetensors_problem(str(file), st.st_size, st.st_mtime_ns)
        if problem:
            raise ModelError(f"weights in '{path}': {file.name} {problem}", hint=_COPY_AGAIN)


_COPY_AGAIN = ("An interrupted download or copy leaves weights like this: download or copy the model's files "
               "again (hf download resumes a partial download).")


@functools.lru_cache(maxsize=256)
def _safetensors_problem(file: str, size: int, mtime_ns: int) -> str | None:
    """What is wrong with a safetensors file of this size (None: its header covers it exactly)."""
    from engine.adapters import read_safetensors_header

    if size < 8:
        return f"is cut short ({size} bytes: no safetensors header)"
    try:
        n, header = read_safetensors_header(Path(file))
    except ModelError:
        return "is not a safetensors file (its header can't be read): it may be cut short"
    ends = [int(t["data_offsets"][1]) for t in header.values() if isinstance(t, dict) and "data_offsets" in t]
    expected = 8 + n + max(ends, default=0)
    if size < expected:
        return f"is cut short: {_size(size)} of the {_size(expected)} its header describes"
    if size > expected:  # safetensors refuses it too ("file not fully covered")
        return f"holds {size - expected:,} bytes more than its header describes ({size:,} bytes, not {expected:,})"
    return None


def _size(n: int) -> str:
    """Exact bytes below 1 MiB (a few bytes short is worth seeing), else as the estimate writes sizes."""
    from engine.memory.cli import format_gib

    return f"{n:,} bytes" if n < 2**20 else format_gib(n)


def load_tokenizer(model: str, *, trust_remote_code: bool = False, add_tokens: Sequence[str] = ()):
    """The model's tokenizer (local files only), with a pad token (the EOS when it has none) and
    ``add_tokens`` added as special tokens where it lacks them (a run's ``add_tokens``; they take
    the next ids, in the order given, so the same list always gives the same ids)."""
    from transformers import AutoTokenizer

    path = resolve_model_path(model)
    check_tokenizer_files(path)
    check_json_files(path)
    try:
        tok = AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=trust_remote_code)
    except ValueError as e:
        if "trust_remote_code" in str(e):
            raise ModelError(f"the tokenizer of '{model}' needs its own code to run",
                             fix={"trust_remote_code": True}) from None
        raise ModelError(f"can't load the tokenizer of '{model}': {e}") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    add_special_tokens(tok, add_tokens)
    return tok


def add_special_tokens(tokenizer: Any, tokens: Sequence[str]) -> list[str]:
    """Add ``tokens`` the tokenizer lacks as special tokens (whole, never split; skipped when
    decoding with ``skip_special_tokens``), at the next ids in the order given. Returns the
    ones that were new."""
    vocab = tokenizer.get_vocab()
    new = [t for t in dict.fromkeys(tokens) if t not in vocab]
    if tokens:
        tokenizer.add_tokens(list(tokens), special_tokens=True)
    return new
