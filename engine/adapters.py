"""The adapter library: cards, the base-model match rule, merge, combine and export.

The library holds every adapter a run produced (``runs_dir()/*/final/``), every adapter
folder under ``adapters_dir()``, and any PEFT adapter folder the user added (remembered
in ``data_home()/adapter_library.json``). Each gets an :class:`AdapterCard` read from
files only (no torch), so the GUI can list them cheaply.

Base-model match rule (:func:`check_base_match`, :func:`check_adapter_fits`)
-------------------------------------------------------------------------
An adapter records the base it was trained on: ``base_model_name_or_path`` in
``adapter_config.json`` and, for our runs, ``model`` in ``run.yaml``. Names are weak
evidence (the same model can sit in two folders; ``demo`` resolves to a folder), so the
rule compares what makes weights fit:

1. The recorded base resolves (offline) to the same folder as the loaded base: match.
2. It resolves to another folder: the two ``config.json`` *signatures* must be equal
   (:data:`SIGNATURE_KEYS`: architecture, model type, vocab size, hidden size, layers,
   MLP size, attention and key/value heads). Equal: match, noted as "same architecture,
   other folder". Different: refused, naming each differing key.
3. It doesn't resolve here (moved, or a hub id not in the cache): undecided from files;
   the shapes decide when it loads.

Whenever a model is actually loaded (generation worker, ``merge``), the adapter's tensor
shapes are also checked against the loaded modules (:func:`check_adapter_fits`): every
tensor must name a module the base has, LoRA's A/B must match its input/output sizes,
and saved copies of whole modules (``modules_to_save``, e.g. a resized embedding) must
match the original's shape. PEFT itself only warns about keys it can't place, so without
this an adapter from a deeper model would load silently, half applied.

CLI (engine/cli.py builds the parsers; each function takes its argparse Namespace)
-------------------------------------------------------------------------------
``finetune-studio adapters list [--json]`` -> :func:`cli_list`
    json (bool): print the cards as one JSON list instead of a table.
``finetune-studio adapters add PATH`` -> :func:`cli_add`
    path (str): a PEFT adapter folder, or a run folder with ``final/``.
``finetune-studio adapters remove PATH`` -> :func:`cli_remove`
    path (str): an added folder, or an added adapter's name.
``finetune-studio adapters export ADAPTER --out DIR`` -> :func:`cli_export`
    adapter (str): a folder, a run folder, a run name or a library name.
    out (str): a new or empty folder.
    allow_pickle (bool, optional, default False): also copy a pickle ``adapter_model.bin``.
``finetune-studio merge --base M --adapter A [--adapter B ...] [--weights W ...]
[--combination C] [--density D] [--dtype fp32|fp16|bf16] --out DIR`` -> :func:`cli_merge`
    base (str): ``demo``, a model folder or a cached hub id.
    adapter (list[str]): one or more adapters (as for export).
    weights (list[float] | None): one weight per adapter; combining needs them, a single
        adapter is merged with weight 1 unless one is given.
    combination (str, default "cat"): PEFT ``add_weighted_adapter`` type, one of
        :data:`COMBINATIONS`; ``cat`` is the exact weighted sum of the adapters' changes, the
        others approximate it (:data:`COMBINATION_HELP`).
    density (float | None, optional): kept fraction for ties/dare/magnitude_prune types.
    dtype (str, default "fp32"): dtype the base is loaded and saved in.
    out (str): a new or empty folder for the merged model.
    trust_remote_code, allow_pickle (bool, optional, default False).
    gguf (str | None, optional): also write ``<out>/<name>-<gguf>.gguf`` (see engine.gguf_export).
``finetune-studio generate ...`` -> ``engine.generate.cli_generate`` (see that module).
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.config import REWRITING_INITS
from engine.errors import ConfigError, ModelError, StudioError, json_problem
from engine.files import atomic_write_text, folder_bytes
from engine.paths import adapters_dir, data_home, runs_dir

if TYPE_CHECKING:
    import argparse

    from torch import nn

LIBRARY_FILE = "adapter_library.json"
# config.json keys whose equality means an adapter's weights fit (rule 2 above).
SIGNATURE_KEYS = ("architecture", "model_type", "vocab_size", "hidden_size", "num_hidden_layers",
                  "intermediate_size", "num_attention_heads", "num_key_value_heads")
# PEFT's add_weighted_adapter combination types (peft 0.21, LoraModel.add_weighted_adapter), the
# exact one first. With w_i the weights and dW_i = s_i B_i A_i each adapter's change to a weight:
# - cat stacks the A's (scaled by w_i s_i) and the B's, a LoRA of rank sum(r_i) whose B A is
#   exactly sum_i w_i dW_i.
# - linear, ties, dare_*, magnitude_prune combine the A's among themselves and the B's among
#   themselves (linear: sqrt(w_i) on each), so B A holds cross terms B_i A_j: two identical
#   adapters at 0.5/0.5 give 2 dW, not dW.
# - *_svd combine the dW_i themselves, then truncate the result to rank max(r_i) by SVD:
#   exact for svd when the sum fits in that rank, an approximation otherwise.
COMBINATIONS = ("cat", "linear", "svd", "ties", "ties_svd", "dare_linear", "dare_ties", "dare_linear_svd",
                "dare_ties_svd", "magnitude_prune", "magnitude_prune_svd")
DEFAULT_COMBINATION = "cat"
_CROSS = "combines the A's and the B's separately, not the changes B*A, so cross terms appear"
_SVD = "then truncated to rank max(r) by SVD"
COMBINATION_HELP = {
    "cat": "exact: the merged change is the weighted sum w1*dW1 + w2*dW2 + ... (each adapter's A and B "
           "stacked; ranks may differ)",
    "linear": f"approximation: scales A and B each by sqrt(w) and adds them; {_CROSS} (two identical "
              "adapters at 0.5/0.5 give twice the change); needs equal ranks",
    "svd": f"the weighted sum of the changes, {_SVD} (exact only when the sum fits in that rank)",
    "ties": f"approximation: TIES (arXiv 2306.01708) keeps the largest density of values, elects signs; {_CROSS}",
    "ties_svd": f"TIES on the changes themselves, {_SVD}",
    "dare_linear": f"approximation: DARE (arXiv 2311.03099) drops values at random, keeping density, and "
                   f"rescales; {_CROSS}",
    "dare_ties": f"approximation: DARE dropping, then TIES sign election; {_CROSS}",
    "dare_linear_svd": f"DARE on the changes themselves, {_SVD}",
    "dare_ties_svd": f"DARE and TIES on the changes themselves, {_SVD}",
    "magnitude_prune": f"approximation: keeps the largest density of values, then sums; {_CROSS}",
    "magnitude_prune_svd": f"magnitude pruning of the changes themselves, {_SVD}",
}
NEEDS_DENSITY = tuple(c for c in COMBINATIONS if c.startswith(("ties", "dare", "magnitude")))
# Prompt-learning adapters add virtual tokens instead of weight deltas: nothing to merge.
PROMPT_LEARNING = ("PREFIX_TUNING", "PROMPT_TUNING", "P_TUNING", "ADAPTION_PROMPT", "MULTITASK_PROMPT_TUNING")
BOTTLENECK_FORMAT = "finetune-studio-bottleneck"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "chat_template.jinja", "chat_template.json", "tokenizer.model", "vocab.json", "merges.txt")


# ---------------------------------------------------------------------------- Cards
@dataclass
class AdapterCard:
    """What the library shows for one adapter, read from its files without loading it.

    Attributes:
        name: Run name for run adapters, else the folder name.
        path: The adapter folder (holding ``adapter_config.json``).
        source: ``run`` (a run's ``final/``), ``library`` (under ``adapters_dir()``) or
            ``added`` (a folder the user added).
        base_model: The base it was trained on, as recorded (name or path).
        method: Our method name (``lora``, ``qlora``, ``ia3``...) from ``run.yaml``, else
            the PEFT type in lower case.
        peft_type: PEFT's ``peft_type`` (``LORA``, ``IA3``...), or ``BOTTLENECK``.
        rank: LoRA rank ``r`` (None for other types).
        alpha: LoRA alpha.
        targets: Target modules as recorded (a list, or a string such as ``all-linear``).
        dataset: The run's dataset, as configured.
        eval_dataset: The run's separate eval file (``eval_dataset``), if it had one.
        dataset_hash: Hash of the exact dataset snapshot the run trained on.
        dataset_records: Number of records in it.
        final_loss: The run's last training loss.
        best_eval_loss: The run's best evaluation loss.
        date: When the run finished (or the adapter was written), ``YYYY-MM-DD HH:MM``.
        timestamp: The same as Unix seconds, for sorting.
        size_bytes: Size of the folder on disk.
        loadable: The playground and merge can load it (a PEFT adapter).
        problem: Why it can't be used, when ``loadable`` is false or a file was unreadable.
        run_dir: The run folder, for run adapters.
        weights_from: The checkpoint ``final/`` holds when ``runs promote`` made it the result
            (e.g. ``checkpoint-40``), else None (the run's last step, or its best under early
            stopping).
    """

    name: str
    path: str
    source: str
    base_model: str | None = None
    method: str | None = None
    peft_type: str | None = None
    rank: int | None = None
    alpha: float | None = None
    targets: list[str] | str | None = None
    dataset: str | None = None
    eval_dataset: str | None = None
    dataset_hash: str | None = None
    dataset_records: int | None = None
    final_loss: float | None = None
    best_eval_loss: float | None = None
    date: str | None = None
    timestamp: float | None = None
    size_bytes: int = 0
    loadable: bool = True
    problem: str | None = None
    run_dir: str | None = None
    status: str | None = None
    weights_from: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def targets_text(self) -> str:
        if self.targets is None:
            return "?"
        if isinstance(self.targets, str):
            return self.targets
        return ", ".join(sorted(self.targets))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ModelError(f"{path}:{e.lineno}:{e.colno}: invalid JSON: {json_problem(e)}") from None
    except OSError as e:
        raise ModelError(f"can't read '{path}': {e.strerror or e}") from None
    if not isinstance(data, dict):
        raise ModelError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


def _read_run_yaml(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "run.yaml"
    if not path.exists():
        return {}
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def _when(value: Any) -> tuple[str | None, float | None]:
    """A summary timestamp (Unix seconds or ISO text) as display text and seconds."""
    if value is None:
        return None, None
    if isinstance(value, (int, float)):
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(value)), float(value)
    text = str(value)
    try:
        from datetime import datetime

        dt = datetime.fromisoformat(text)
        return dt.strftime("%Y-%m-%d %H:%M"), dt.timestamp()
    except ValueError:
        return text, None


def _run_dir_of(adapter: Path) -> Path | None:
    """The run folder an adapter came from, when it is a run's ``final/`` (or a checkpoint)."""
    parent = adapter.parent
    if (parent / "summary.json").exists() or (parent / "run.yaml").exists():
        return parent
    return None


def _not_a_folder(path: str | Path) -> ModelError:
    """A file given where an adapter folder goes (``adapters add``, ``generate --adapter``...)."""
    return ModelError(f"'{path}' is a file, not an adapter folder", hint="Give the folder that holds "
                      "adapter_config.json and the adapter's weights, or a run folder with final/.")


def read_card(path: str | Path, source: str = "added") -> AdapterCard:
    """Build the card of one adapter folder from its files.

    Args:
        path: The adapter folder (with ``adapter_config.json``), or a run folder whose
            ``final/`` holds one.
        source: ``run``, ``library`` or ``added``.

    Raises:
        ModelError: the folder doesn't exist, has no ``adapter_config.json``, or it is not
            valid JSON.
    """
    folder = Path(path).expanduser().resolve()
    if not folder.exists():
        raise ModelError(f"there is no folder '{folder}'", hint="Check the path; a run's adapter is in its final/.")
    if folder.is_file():
        if folder.name != "adapter_config.json":  # that one names its folder, as a model's config.json does
            raise _not_a_folder(folder)
        folder = folder.parent
    if not (folder / "adapter_config.json").exists() and (folder / "final" / "adapter_config.json").exists():
        folder = folder / "final"
    cfg_file = folder / "adapter_config.json"
    if not cfg_file.exists() and not (folder / "final").exists():
        from engine.runs import is_run_folder, no_final_error

        if is_run_folder(folder):  # a run still training, stopped or failed: its state and newest checkpoint
            raise no_final_error(folder)
    if not cfg_file.exists():
        raise ModelError(f"'{folder}' is not an adapter folder: it has no adapter_config.json",
                         hint="Pick the folder a PEFT save_pretrained() wrote (adapter_config.json + "
                         "adapter_model.safetensors), or a run folder with final/.")
    acfg = _read_json(cfg_file)
    run_dir = _run_dir_of(folder)
    run_cfg: dict[str, Any] = {}
    summary: dict[str, Any] = {}
    if run_dir is not None:
        from engine.runs import read_summary

        summary = read_summary(run_dir)
        run_cfg = _read_run_yaml(run_dir) or summary.get("config", {}) or {}
    if run_dir is not None and folder.name == "final":
        name = run_dir.name
    elif folder.name == "final" or re.fullmatch(r"checkpoint-\d+", folder.name):
        # A trainer's output outside any run ("medical/final", "out/checkpoint-500"): the
        # folder's own name says nothing about the adapter, its parent's does.
        name = folder.parent.name if folder.name == "final" else f"{folder.parent.name}-{folder.name}"
    else:
        name = folder.name
    card = AdapterCard(name=name, path=str(folder), source=source,
                       run_dir=str(run_dir) if run_dir is not None else None)

    if acfg.get("format") == BOTTLENECK_FORMAT:
        card.peft_type = "BOTTLENECK"
        card.method = "adapter"
        card.loadable = False
        card.problem = ("a bottleneck adapter (Finetune Studio's own format): the playground and merge "
                        "load PEFT adapters only")
        card.base_model = acfg.get("base_model_name_or_path") or run_cfg.get("model")
        card.rank = None
    else:
        card.peft_type = str(acfg.get("peft_type") or "?").upper()
        card.method = run_cfg.get("method") or card.peft_type.lower()
        card.base_model = acfg.get("base_model_name_or_path") or run_cfg.get("model")
        if card.peft_type == "LORA":
            card.rank = acfg.get("r")
            card.alpha = acfg.get("lora_alpha")
            card.targets = acfg.get("target_modules")
            from engine.methods.peft_adapter import token_ids

            ids = token_ids(acfg)
            if ids:  # the run's add_tokens; the ids alone when the run config isn't beside it
                card.extra["added_tokens"] = run_cfg.get("add_tokens") or [f"id {i}" for i in ids]
            if run_cfg.get("lora_init") in REWRITING_INITS:
                # Trained at rank r, saved as the plain LoRA of rank 2r that fits the original base.
                card.extra["init"] = REWRITING_INITS[run_cfg["lora_init"]]
                card.extra["trained_rank"] = run_cfg.get("lora_r")
        elif card.peft_type == "IA3":
            card.targets = acfg.get("target_modules")
        elif card.peft_type in PROMPT_LEARNING:
            card.extra["num_virtual_tokens"] = acfg.get("num_virtual_tokens")
        if not any((folder / n).exists() for n in ("adapter_model.safetensors", "adapter_model.bin")):
            card.loadable = False
            card.problem = "no adapter_model.safetensors in the folder"
        else:
            from engine.methods.peft_adapter import check_loadable

            try:
                check_loadable(folder, acfg)
            except ModelError as e:
                card.loadable = False
                card.problem = f"{e.message}. {e.hint}"
    from engine.data.templates import saved_rendering

    rendering = saved_rendering(folder)  # the prompt format its run saved with it
    if rendering is not None:
        card.extra["prompt_format"] = {"alpaca": "Alpaca prompt", "saved": "chat template"}.get(
            rendering.name, rendering.name)
    card.dataset = run_cfg.get("dataset")
    card.eval_dataset = run_cfg.get("eval_dataset") or None
    card.dataset_hash = summary.get("dataset_hash")
    card.dataset_records = summary.get("dataset_records")
    # The mean of the last logged steps, as `runs list`, `runs show` and the model card give it;
    # one step's loss (older summaries have only that) is one noisy micro-batch.
    card.final_loss = (summary.get("final_loss_mean") if summary.get("final_loss_mean") is not None
                       else summary.get("final_loss"))
    card.best_eval_loss = summary.get("best_eval_loss")
    card.status = summary.get("status")
    card.weights_from = summary.get("final_from")
    date, ts = _when(summary.get("finished") or summary.get("started"))
    step = re.fullmatch(r"checkpoint-(\d+)", folder.name)
    if run_dir is not None and step:
        # A checkpoint is the run as it stood at that step, not as it ended.
        from engine.runs import losses_at_step

        card.final_loss, card.best_eval_loss = losses_at_step(run_dir, int(step.group(1)))
        card.weights_from = None  # which checkpoint the run's final/ holds says nothing of this one
        date = ts = None  # its own files' date, below
    if run_dir is None:
        date, ts = _apply_exported_card(card, folder, date, ts)
    if date is None:
        weights = folder / "adapter_model.safetensors"
        ts = (weights if weights.exists() else cfg_file).stat().st_mtime
        date, ts = _when(ts)
    card.date, card.timestamp = date, ts
    card.size_bytes = folder_bytes(folder)
    return card


# What an exported folder's card.json restores: the facts of the run, which the adapter's own
# files don't hold. Where the folder is, its size and whether it loads are read from the files.
EXPORTED_CARD_FIELDS = ("base_model", "method", "dataset", "dataset_hash", "dataset_records", "final_loss", "weights_from",
                        "best_eval_loss", "status")


def final_problem(final: str | Path) -> str | None:
    """Why the playground and Compare on data can't load a run's ``final/``, or None.

    A whole model (``config.json``) and a PEFT adapter load; a bottleneck adapter (our own
    format) and an unreadable ``adapter_config.json`` don't. Cheap (reads the card only), so
    the Train and Runs areas ask it to grey Try it and Compare with the reason, rather than
    let them fail once the base has loaded.
    """
    final = Path(final)
    if (final / "config.json").exists():
        return None
    try:
        card = read_card(final)
    except StudioError as e:
        return e.message
    return None if card.loadable else card.problem


def _apply_exported_card(card: AdapterCard, folder: Path, date: str | None,
                         ts: float | None) -> tuple[str | None, float | None]:
    """Fill ``card`` from the ``card.json`` that :func:`export_adapter` wrote next to the adapter.

    An exported folder has left its run, so without this its card would be bare (no method,
    dataset or losses; a QLoRA adapter would read as plain ``lora``). An unreadable
    card.json is ignored: the folder's files still make a card.

    Returns:
        The card's date and timestamp: the exported card's when it has them, else ``date``, ``ts``.
    """
    try:
        saved = json.loads((folder / "card.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return date, ts
    if not isinstance(saved, dict):
        return date, ts
    for key in EXPORTED_CARD_FIELDS:
        if saved.get(key) is not None and (key != "base_model" or not card.base_model):
            setattr(card, key, saved[key])
    if saved.get("exported_from"):
        card.extra["exported_from"] = saved["exported_from"]
    if isinstance(saved.get("timestamp"), (int, float)):
        return _when(saved["timestamp"])
    return (saved["date"], ts) if isinstance(saved.get("date"), str) else (date, ts)


# ---------------------------------------------------------------------------- Library
def _library_file() -> Path:
    return data_home() / LIBRARY_FILE


def added_folders() -> list[Path]:
    """The adapter folders the user added, in the order they were added."""
    path = _library_file()
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return []
    return [Path(p) for p in data.get("added", []) if isinstance(p, str)]


def _save_added(folders: list[Path]) -> None:
    atomic_write_text(_library_file(), json.dumps({"added": [str(p) for p in folders]}, indent=2) + "\n")


def add_adapter(path: str | Path) -> AdapterCard:
    """Add a PEFT adapter folder to the library (remembered across sessions).

    Adding a folder that is already listed (a run's ``final/``, or added before) only
    returns its card.

    Raises:
        ModelError: the folder has no ``adapter_config.json``.
    """
    card = read_card(path)
    folder = Path(card.path)
    known = {Path(c.path) for c in list_adapters()}
    if folder not in known:
        _save_added([*added_folders(), folder])
    return next((c for c in list_adapters() if Path(c.path) == folder), card)


def remove_adapter(path: str | Path) -> bool:
    """Forget an added folder (its files stay). Returns whether it was in the list."""
    folder = Path(path).expanduser().resolve()
    current = added_folders()
    kept = [p for p in current if p.resolve() != folder]
    if len(kept) != len(current):
        _save_added(kept)
        return True
    return False


def list_adapters() -> list[AdapterCard]:
    """Every adapter in the library, newest first.

    Run adapters come from ``runs_dir()/*/final`` and the run folders outside it (``runs.outside_run_folders``);
    library ones from ``adapters_dir()/*``;
    added ones from ``adapter_library.json``. A folder listed twice appears once. An added
    folder that vanished or became unreadable still appears, with ``problem`` set, so the
    user can see and remove it.
    """
    added = {p.resolve() for p in added_folders()}
    cards: list[AdapterCard] = []
    seen: set[Path] = set()

    def take(folder: Path, source: str) -> None:
        folder = folder.resolve()
        if folder in seen:
            return
        seen.add(folder)
        try:
            cards.append(read_card(folder, source))
        except ModelError as e:
            problem = gone_message(folder, folder in added) if not folder.exists() else e.message
            cards.append(AdapterCard(name=folder.name, path=str(folder), source=source, loadable=False,
                                     problem=problem))

    for root, source in ((runs_dir(), "run"), (adapters_dir(), "library")):
        if not root.is_dir():
            continue
        for sub in sorted(root.iterdir()):
            cand = sub / "final" if source == "run" else sub
            if (cand / "adapter_config.json").exists():
                take(cand, source)
    from engine.runs import outside_run_folders

    for run in outside_run_folders():  # runs given an output_dir of their own
        if (run / "final" / "adapter_config.json").exists():
            take(run / "final", "run")
    for folder in added_folders():
        take(folder, "added")
    cards.sort(key=lambda c: c.timestamp or 0.0, reverse=True)
    return cards


def gone_message(folder: Path, added: bool = True) -> str:
    """What the library says of a listed adapter folder that is no longer on disk."""
    return ("the folder no longer exists (deleted or moved)"
            + (f"; remove it from the library with: finetune-studio adapters remove {folder}" if added else ""))


def resolve_adapter(ref: str | Path) -> Path:
    """Turn what the user typed into an adapter folder.

    Args:
        ref: An adapter folder, a run folder (its ``final/`` is used), a run folder's name in
            the runs directory, the name of a library card, or a run's ``run_name`` (the newest
            run of that name).

    Raises:
        ModelError: nothing matches; lists the library's names.
    """
    path = Path(str(ref)).expanduser()
    for cand in (path, path / "final", runs_dir() / str(ref) / "final", adapters_dir() / str(ref)):
        if (cand / "adapter_config.json").exists():
            return cand.resolve()
    if path.is_file():  # it is there: "no adapter folder ... of that name" said it wasn't
        if path.name == "adapter_config.json":  # names its folder, as read_card takes it
            return path.parent.resolve()
        raise _not_a_folder(path)
    if not path.exists() and path.resolve() in {p.resolve() for p in added_folders()}:
        raise ModelError(f"adapter '{ref}': the folder no longer exists (deleted or moved)",
                         hint=f"Remove it from the library: finetune-studio adapters remove {path.resolve()}")
    cards = list_adapters()
    named = [c for c in cards if c.name == str(ref)]
    if len(named) == 1:
        if not Path(named[0].path).exists():
            raise ModelError(f"adapter '{ref}' ({named[0].path}): the folder no longer exists (deleted or moved)",
                             hint=f"Remove it from the library: finetune-studio adapters remove {named[0].path}")
        return Path(named[0].path)
    if len(named) > 1:
        raise ModelError(f"adapter name '{ref}' is ambiguous: " + ", ".join(c.path for c in named),
                         hint="Give the folder path instead.")
    from engine.runs import find_run

    run = find_run(ref)  # a run's run_name: the newest run of that name, as `runs show` takes it
    if run is not None and (run / "final" / "adapter_config.json").exists():
        return (run / "final").resolve()
    if run is not None and not (run / "final").exists():
        from engine.runs import no_final_error

        raise no_final_error(run)
    names = ", ".join(sorted({c.name for c in cards})) or "(the library is empty)"
    raise ModelError(f"adapter '{ref}': no adapter folder (with adapter_config.json), run or library "
                     f"entry of that name", hint=f"Known adapters: {names}")


def adapter_name(card_or_path: AdapterCard | str | Path, taken: set[str] | None = None) -> str:
    """A PEFT adapter name for a folder: the card name made safe, unique within ``taken``.

    PEFT stores adapters in ``nn.ModuleDict``s, whose keys can't contain dots.
    """
    base = card_or_path.name if isinstance(card_or_path, AdapterCard) else None
    if base is None:
        p = Path(card_or_path)
        base = p.parent.name if p.name == "final" else p.name
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", base).strip("_") or "adapter"
    taken = taken or set()
    out, n = name, 1
    while out in taken:
        n += 1
        out = f"{name}_{n}"
    return out


# ---------------------------------------------------------------------------- Base match
@dataclass
class BaseMatch:
    """The result of :func:`check_base_match`.

    Attributes:
        ok: True (fits), False (refused) or None (undecided from files; shapes decide at load).
        message: One sentence for the user.
        exact: The recorded base is the same folder as the loaded base.
        differences: For a refusal, each differing signature key as ``"key A vs B"``
            (adapter's base vs loaded base).
        base_missing: The base itself can't be loaded (no such folder, a hub id not in the
            cache), so nothing can be checked, now or on load.
    """

    ok: bool | None
    message: str
    exact: bool = False
    differences: list[str] = field(default_factory=list)
    base_missing: bool = False


def signature(config: dict[str, Any]) -> dict[str, Any]:
    """The :data:`SIGNATURE_KEYS` of a ``config.json`` (multimodal configs: their text part)."""
    text = config.get("text_config") or config
    out = {"architecture": (config.get("architectures") or [None])[0], "model_type": config.get("model_type")}
    for key in SIGNATURE_KEYS[2:]:
        out[key] = text.get(key, config.get(key))
    if out["num_key_value_heads"] is None:
        out["num_key_value_heads"] = out["num_attention_heads"]
    return out


def _config_of(model_dir: Path) -> dict[str, Any]:
    return _read_json(Path(model_dir) / "config.json")


def _resolve_quietly(model: str) -> Path | None:
    from engine.models import resolve_model_path
    from engine.paths import demo_model_dir

    if model == "demo":
        # resolve_model_path would build a missing demo model; a check must stay cheap.
        path = demo_model_dir()
        return path.resolve() if (path / "config.json").exists() else None
    try:
        return resolve_model_path(model).resolve()
    except Exception:  # noqa: BLE001 - any failure means "not on this machine"
        return None


def recorded_bases(adapter_dir: Path) -> list[str]:
    """The base names an adapter records: PEFT's ``base_model_name_or_path``, then ``run.yaml``'s model."""
    names: list[str] = []
    try:
        rec = _read_json(adapter_dir / "adapter_config.json").get("base_model_name_or_path")
    except ModelError:
        rec = None
    if rec:
        names.append(str(rec))
    run_dir = _run_dir_of(adapter_dir)
    if run_dir is not None:
        model = _read_run_yaml(run_dir).get("model")
        if model and str(model) not in names:
            names.append(str(model))
    return names


def check_base_match(adapter: str | Path, base: str | Path) -> BaseMatch:
    """Decide from files alone whether an adapter fits a base (rules 1-3 in the module doc).

    Args:
        adapter: The adapter folder.
        base: The loaded base: a model folder, ``demo`` or a cached hub id.

    Returns:
        A :class:`BaseMatch`; never raises for a mismatch (see :func:`require_base_match`).
    """
    adapter_dir = Path(adapter).expanduser().resolve()
    base_dir = _resolve_quietly(str(base))
    if base_dir is None:
        if str(base) == "demo":  # built on first use: the adapter's shapes are checked then
            return BaseMatch(None, "the demo base is built when it first loads; shapes are checked then")
        return BaseMatch(None, f"the base '{base}' can't be loaded: it is not on this machine (no such folder, "
                         "or a hub id not in the cache); choose another base", base_missing=True)
    names = recorded_bases(adapter_dir)
    if not names:
        return BaseMatch(None, "the adapter doesn't record its base model; its shapes are checked when it loads")
    base_sig = signature(_config_of(base_dir))
    for name in names:
        rec_dir = _resolve_quietly(name)
        if rec_dir is None:
            continue
        if rec_dir == base_dir:
            return BaseMatch(True, f"trained on this base ({name})", exact=True)
        rec_sig = signature(_config_of(rec_dir))
        diffs = [f"{k} {rec_sig[k]} vs {base_sig[k]}" for k in SIGNATURE_KEYS if rec_sig[k] != base_sig[k]]
        if diffs:
            return BaseMatch(False, f"trained on '{name}', which differs from the loaded base '{base}': "
                             + ", ".join(diffs) + " (adapter's base vs loaded base)", differences=diffs)
        return BaseMatch(True, f"trained on '{name}', another folder with the same architecture and shapes "
                         f"as '{base}'")
    return BaseMatch(None, f"trained on '{names[0]}', which is not on this machine; its shapes are checked "
                     "when it loads")


def require_base_match(adapter: str | Path, base: str | Path) -> BaseMatch:
    """:func:`check_base_match`, raising on a refusal.

    Raises:
        ModelError: the adapter's recorded base has a different signature.
    """
    match = check_base_match(adapter, base)
    if match.ok is False:
        raise ModelError(f"adapter '{adapter_name(Path(adapter))}' ({adapter}) can't be used with this base: "
                         f"{match.message}",
                         hint="Load the base the adapter was trained on, or pick an adapter trained on this base.")
    return match


def safetensors_header(path: Path) -> dict[str, dict]:
    """Tensor name -> ``{"dtype", "shape", ...}`` from a safetensors file's header, without
    reading the tensors.

    The format is an 8-byte little-endian header length, then a JSON header
    (https://github.com/huggingface/safetensors#format).
    """
    return read_safetensors_header(path)[1]


def read_safetensors_header(path: Path) -> tuple[int, dict[str, dict]]:
    """``(header length in bytes, tensors)`` of a safetensors file (see :func:`safetensors_header`):
    the tensors' data starts at 8 + that length.

    Raises:
        ModelError: not a safetensors file (a header too long or not JSON, or no 8-byte length).
    """
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise ModelError(f"'{path}' is not a safetensors file ({len(head)} bytes)")
        (n,) = struct.unpack("<Q", head)
        if n > 100 * 2**20:
            raise ModelError(f"'{path}' is not a safetensors file (header of {n} bytes)")
        try:
            header = json.loads(fh.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ModelError(f"'{path}' is not a safetensors file (unreadable header)") from None
    if not isinstance(header, dict):
        raise ModelError(f"'{path}' is not a safetensors file (unreadable header)")
    return n, {k: v for k, v in header.items() if k != "__metadata__"}


def safetensors_shapes(path: Path) -> dict[str, list[int]]:
    """Tensor names and shapes from a safetensors file's header (see :func:`safetensors_header`)."""
    return {k: list(v["shape"]) for k, v in safetensors_header(path).items()}


# Where an adapter tensor's key stops naming the base module (PEFT's parameter prefixes).
_ADAPTER_PARTS = re.compile(r"\.(lora_[A-Za-z_]+|ia3_l|oft_[A-Za-z_]+|boft_[A-Za-z_]+|vera_[A-Za-z_]+|"
                            r"hra_[A-Za-z_]+|modules_to_save|original_module)(\.|$)")


def check_adapter_fits(adapter_dir: str | Path, model: nn.Module) -> list[str]:
    """Check an adapter's tensors against a loaded base model's modules.

    Args:
        adapter_dir: Folder with ``adapter_model.safetensors``.
        model: The base model (a plain ``PreTrainedModel`` or one already wrapped by PEFT).

    Returns:
        The problems found, each naming a tensor and what it expected (empty: fits).
    """
    adapter_dir = Path(adapter_dir)
    weights = adapter_dir / "adapter_model.safetensors"
    if not weights.exists():
        return []  # pickle-only adapters are refused or allowed earlier; PEFT checks them itself
    try:
        acfg = _read_json(adapter_dir / "adapter_config.json")
    except ModelError as e:
        return [e.message]
    if str(acfg.get("peft_type", "")).upper() in PROMPT_LEARNING:
        return []  # virtual-token tensors don't map to base modules
    # A PeftModel's tensors are named after the wrapped transformers model.
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    modules = dict(base.named_modules())
    problems: list[str] = []
    for key, shape in safetensors_shapes(weights).items():
        stem = key[len("base_model.model."):] if key.startswith("base_model.model.") else key
        if ".token_adapter." in stem:  # rows of tokens its run added (PEFT trainable tokens)
            mod_name = stem.split(".token_adapter.")[0]
            mod = modules.get(mod_name)
            mod = getattr(mod, "base_layer", mod)
            w = getattr(mod, "weight", None)
            if w is None:
                problems.append(f"{key}: the base has no embedding '{mod_name}'")
            elif shape and shape[-1] != w.shape[-1]:
                problems.append(f"{key}: the adapter's token rows have {shape[-1]} features; '{mod_name}' has "
                                f"{w.shape[-1]} in the base")
            continue
        m = _ADAPTER_PARTS.search(stem)
        mod_name = stem[: m.start()] if m else stem.rsplit(".", 1)[0]
        part = m.group(1) if m else ""
        mod = modules.get(mod_name)
        if mod is None:
            problems.append(f"{key}: the base has no module '{mod_name}'")
            continue
        # A module PEFT already wrapped keeps the original in .base_layer.
        mod = getattr(mod, "base_layer", mod)
        fin = getattr(mod, "in_features", None) or getattr(mod, "num_embeddings", None)
        fout = getattr(mod, "out_features", None) or getattr(mod, "embedding_dim", None)
        if part == "lora_A" and fin is not None and len(shape) == 2 and shape[1] != fin:
            problems.append(f"{key}: the adapter was made for {shape[1]} input features; '{mod_name}' has "
                            f"{fin} in the base")
        elif part == "lora_B" and fout is not None and len(shape) == 2 and shape[0] != fout:
            problems.append(f"{key}: the adapter was made for {shape[0]} output features; '{mod_name}' has "
                            f"{fout} in the base")
        elif part == "lora_embedding_A" and fin is not None and shape[-1] != fin:
            problems.append(f"{key}: the adapter was made for a vocabulary of {shape[-1]}; the base has {fin}")
        elif part in ("modules_to_save", ""):
            w = getattr(mod, "weight", None)
            if key.endswith(".weight") and w is not None and list(w.shape) != shape:
                problems.append(f"{key}: shape {shape}, but '{mod_name}' in the base is {list(w.shape)}")
    return problems


# ---------------------------------------------------------------------------- Merge and export
def _empty_out_dir(out: str | Path, what: str) -> Path:
    out_dir = Path(out).expanduser()
    if out_dir.exists() and not out_dir.is_dir():  # "not an empty folder" read as if it were a folder
        raise ConfigError(f"--out '{out_dir}' is a file; the {what} is written to a new folder", key="out",
                          hint="Choose a new folder.")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ConfigError(f"--out '{out_dir}' already exists and is not an empty folder; the {what} is "
                          "not written over existing files", key="out", hint="Choose a new folder.")
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


def check_mergeable(card: AdapterCard) -> None:
    """Refuse an adapter that has no weight changes to fold into the base.

    Raises:
        ModelError: a prompt-learning (virtual tokens) or bottleneck (new layers) adapter.
    """
    if card.peft_type == "BOTTLENECK" or card.peft_type in PROMPT_LEARNING:
        raise ModelError(f"adapter '{card.name}' ({card.peft_type}) can't be merged into the base: "
                         + ("it adds virtual tokens, not weight changes" if card.peft_type != "BOTTLENECK"
                            else "bottleneck adapters add new layers, not weight changes"),
                         hint="Export it on its own (adapters export) and load it on top of the base.")


def merge_adapters(base: str, adapters: list[str], out: str | Path, *, weights: list[float] | None = None,
                   combination: str = DEFAULT_COMBINATION, density: float | None = None, dtype: str = "fp32",
                   trust_remote_code: bool = False, allow_pickle: bool = False) -> Path:
    """Merge one LoRA (or IA3) adapter, or a weighted combination of LoRAs, into the base.

    The result is a plain safetensors model folder with the base's tokenizer (the
    adapter's own tokenizer files when it saved some), loadable by
    ``AutoModelForCausalLM.from_pretrained`` without PEFT. A ``merge.json`` records what
    went in.

    Args:
        base: ``demo``, a model folder or a cached hub id.
        adapters: Adapter references (see :func:`resolve_adapter`).
        out: A new or empty folder.
        weights: One weight per adapter. With several adapters they are combined with
            PEFT's ``add_weighted_adapter``; a single adapter with a weight is scaled by it.
        combination: One of :data:`COMBINATIONS`. ``cat`` (the default) merges exactly
            ``sum_i w_i * dW_i``; the others are approximations (see :data:`COMBINATION_HELP`).
        density: Fraction of weights kept by the ties/dare/magnitude_prune types.
        dtype: ``fp32``, ``fp16`` or ``bf16``: the dtype the merge happens and is saved in.
        trust_remote_code: Allow the model's own code.
        allow_pickle: Allow pickle weights (base or adapters).

    Returns:
        The output folder.

    Raises:
        ConfigError: bad weights/combination/density/dtype/out (key named).
        ModelError: an adapter doesn't fit the base, or can't be merged (prompt learning,
            combining non-LoRA adapters).
    """
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from engine.methods.peft_adapter import check_loadable, fit_vocab, token_rows
    from engine.models import check_weights_safe, load_tokenizer, resolve_model_path

    if not adapters:
        raise ConfigError("merge needs at least one --adapter", key="adapter")
    dtypes = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    if dtype not in dtypes:
        raise ConfigError(f"--dtype must be one of {', '.join(dtypes)}; got {dtype!r}", key="dtype")
    if weights is not None and len(weights) != len(adapters):
        raise ConfigError(f"--weights has {len(weights)} values for {len(adapters)} adapters; give one weight "
                          "per --adapter, in the same order", key="weights")
    combining = len(adapters) > 1 or weights is not None
    if combining and combination not in COMBINATIONS:
        raise ConfigError(f"--combination must be one of {', '.join(COMBINATIONS)}; got {combination!r}",
                          key="combination")
    if combining and combination in NEEDS_DENSITY and density is None:
        raise ConfigError(f"--combination {combination} prunes by magnitude and needs --density (the fraction "
                          "of weights kept, in (0, 1], e.g. 0.5)", key="density")
    if density is not None and not 0 < density <= 1:
        raise ConfigError(f"--density must be in (0, 1]; got {density}", key="density")
    if len(adapters) > 1 and weights is None:
        weights = [1.0 / len(adapters)] * len(adapters)

    base_dir = resolve_model_path(base)
    check_weights_safe(base_dir, allow_pickle)
    dirs = [resolve_adapter(a) for a in adapters]
    cards = [read_card(d) for d in dirs]
    for d, card in zip(dirs, cards, strict=True):
        check_mergeable(card)
        if combining and card.peft_type != "LORA":
            raise ModelError(f"adapter '{card.name}' is {card.peft_type}; combining with weights works for "
                             "LoRA adapters only (PEFT's add_weighted_adapter)",
                             hint="Merge it alone, without --weights.")
        if combining and _read_json(d / "adapter_config.json").get("use_dora"):
            # add_weighted_adapter combines only the low-rank A and B; the combined adapter
            # gets a fresh magnitude vector, so DoRA's learnt magnitudes would be lost.
            raise ModelError(f"adapter '{card.name}' is a DoRA adapter; combining with weights works for "
                             "plain LoRA only (the learnt DoRA magnitudes can't be combined)",
                             hint="Merge it alone, without --weights.")
        if combining and token_rows(_read_json(d / "adapter_config.json")):
            raise ModelError(f"adapter '{card.name}' trains tokens its run added; combining with weights works "
                             "for plain LoRA only (PEFT's add_weighted_adapter has no rule for embedding rows)",
                             hint="Merge it alone, without --weights.")
        check_weights_safe(d, allow_pickle)
        check_loadable(d)
        require_base_match(d, base_dir)
    out_dir = _empty_out_dir(out, "merged model")

    try:
        model = AutoModelForCausalLM.from_pretrained(
            base_dir, dtype=dtypes[dtype], local_files_only=True, trust_remote_code=trust_remote_code,
            use_safetensors=None if allow_pickle else True)
    except (OSError, ValueError) as e:
        raise ModelError(f"can't load the base '{base}' from '{base_dir}': {e}") from None
    names: list[str] = []
    peft_model = None
    for d, card in zip(dirs, cards, strict=True):
        fit_vocab(model, d)  # the rows of the tokens its run added
        problems = check_adapter_fits(d, model)
        if problems:
            raise ModelError(f"adapter '{card.name}' doesn't fit the base '{base}': " + "; ".join(problems[:5])
                             + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""))
        name = adapter_name(card, set(names))
        if peft_model is None:
            peft_model = PeftModel.from_pretrained(model, str(d), adapter_name=name)
        else:
            peft_model.load_adapter(str(d), adapter_name=name)
        names.append(name)
    assert peft_model is not None
    if combining:
        # The combined adapter copies the first one's config with lora_alpha = r, and each
        # adapter's own scale is folded into its A; an rsLoRA template would scale the sum
        # again by alpha/sqrt(r) = sqrt(r).
        peft_model.peft_config[names[0]].use_rslora = False
        try:
            peft_model.add_weighted_adapter(names, list(weights or [1.0]), "combined",
                                            combination_type=combination, density=density)
        except ValueError as e:
            hint = ("Adapters of different ranks can't be combined linearly; use --combination cat (exact) or svd."
                    if "same" in str(e) and "r" in str(e) else None)
            raise ModelError(f"PEFT could not combine {', '.join(names)} with '{combination}': {e}",
                             hint=hint) from None
        peft_model.set_adapter("combined")
        for n in names:
            peft_model.delete_adapter(n)
    merged = peft_model.merge_and_unload()
    merged.save_pretrained(out_dir)
    # A run saves its tokenizer (pad token, chat template) next to the adapter: prefer it.
    tok_src = next((d for d in dirs if (d / "tokenizer_config.json").exists()), None)
    tokenizer = (load_saved_tokenizer(tok_src, trust_remote_code) if tok_src is not None
                 else load_tokenizer(str(base_dir), trust_remote_code=trust_remote_code))
    tokenizer.save_pretrained(out_dir)
    record = {"base": base, "base_path": str(base_dir), "adapters": [str(d) for d in dirs],
              "weights": weights, "combination": combination if combining else None, "density": density,
              "dtype": dtype, "created": time.time()}
    atomic_write_text(out_dir / "merge.json", json.dumps(record, indent=2) + "\n")
    return out_dir


def load_saved_tokenizer(folder: Path, trust_remote_code: bool = False):
    """The tokenizer a run saved next to its adapter or model (its chat template, pad and added tokens)."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(folder, local_files_only=True, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        raise ModelError(f"can't load the tokenizer saved with the adapter in '{folder}': {e}") from None


def _card_readme(card: AdapterCard) -> str:
    rows = [("Base model", card.base_model), ("Method", card.method), ("PEFT type", card.peft_type),
            ("Rank / alpha", f"{_rank_text(card)} / {card.alpha}" if card.rank else None),
            ("Targets", card.targets_text if card.targets else None), ("Dataset", card.dataset),
            ("Dataset hash", card.dataset_hash), ("Dataset records", card.dataset_records),
            ("Final training loss", card.final_loss), ("Best eval loss", card.best_eval_loss),
            ("Weights from", card.weights_from), ("Date", card.date),
            ("Prompt format", card.extra.get("prompt_format")),
            ("Added tokens", ", ".join(f"`{t}`" for t in card.extra["added_tokens"])
             if card.extra.get("added_tokens") else None)]
    lines = [f"# {card.name}", "", "A PEFT adapter exported by Finetune Studio.", "",
             "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows if v is not None]
    lines += ["", "Load it with:", "", "```python",
              "from peft import PeftModel",
              "from transformers import AutoModelForCausalLM",
              f"base = AutoModelForCausalLM.from_pretrained({card.base_model!r})",
              *(["from transformers import AutoTokenizer",
                 "tokenizer = AutoTokenizer.from_pretrained('path/to/this/folder')",
                 "base.resize_token_embeddings(len(tokenizer))  # the rows of the added tokens"]
                if card.extra.get("added_tokens") else []),
              "model = PeftModel.from_pretrained(base, 'path/to/this/folder')", "```", ""]
    return "\n".join(lines)


def export_adapter(adapter: str | Path, out: str | Path, *, allow_pickle: bool = False) -> Path:
    """Copy one adapter on its own, with its card, to a new folder.

    Copies ``adapter_config.json``, ``adapter_model.safetensors`` and any tokenizer files
    saved with it, the run's model card ``README.md`` when there is one (else a generated
    one), and ``card.json`` (the library card as JSON).

    Args:
        adapter: An adapter reference (see :func:`resolve_adapter`).
        out: A new or empty folder.
        allow_pickle: Copy ``adapter_model.bin`` when there is no safetensors file.

    Raises:
        ModelError: not an adapter, or only pickle weights without ``allow_pickle``.
        ConfigError: ``out`` exists and is not empty.
    """
    folder = resolve_adapter(adapter)
    card = read_card(folder)
    weights = [n for n in ("adapter_model.safetensors",) if (folder / n).exists()]
    if not weights and (folder / "adapter_model.bin").exists():
        if not allow_pickle:
            raise ModelError(f"'{folder}' holds only pickle weights (adapter_model.bin), which can run code when "
                             "loaded", fix={"allow_pickle": True}, hint="Convert it to safetensors first.")
        weights = ["adapter_model.bin"]
    if not weights:
        raise ModelError(f"'{folder}' has no adapter weights (adapter_model.safetensors)")
    out_dir = _empty_out_dir(out, "export")
    for n in ("adapter_config.json", *weights, *TOKENIZER_FILES):
        if (folder / n).exists():
            shutil.copy2(folder / n, out_dir / n)
    # The run's model card beats the folder's README, which for a run is PEFT's empty template.
    run_readme = Path(card.run_dir) / "README.md" if card.run_dir else None
    if run_readme is not None and run_readme.exists():
        shutil.copy2(run_readme, out_dir / "README.md")
    elif (folder / "README.md").exists() and card.run_dir is None:
        shutil.copy2(folder / "README.md", out_dir / "README.md")
    else:
        atomic_write_text(out_dir / "README.md", _card_readme(card))
    exported = read_card(out_dir)
    info = {**card.to_dict(), "path": str(out_dir), "exported_from": card.path, "size_bytes": exported.size_bytes}
    atomic_write_text(out_dir / "card.json", json.dumps(info, indent=2, default=str) + "\n")
    return out_dir


# ---------------------------------------------------------------------------- CLI
def format_size(n: int) -> str:
    """Bytes as a short human string (``12.3 MB``)."""
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


def base_label(base_model: str | None) -> str:
    """A short name for a recorded base: ``demo`` for the demo folder, else the folder or hub id."""
    if not base_model:
        return "?"
    from engine.paths import demo_model_dir

    path = Path(base_model).expanduser()
    try:
        if path.is_dir() and path.resolve() == demo_model_dir().resolve():
            return "demo"
    except OSError:
        pass
    if path.is_absolute() or base_model.startswith((".", "~")):
        # "model" or "final" alone says nothing: name the folder it sits in too (demo/model).
        if path.name in ("model", "final", "base", "merged") or path.name.startswith("checkpoint-"):
            return f"{path.parent.name}/{path.name}"
        return path.name
    return base_model


def quiet_loading() -> None:
    """Hide transformers' per-load progress bars and PEFT's deprecation chatter in CLI output, and
    the ``kernels`` package's "Skipping publisher trust check ... offline mode" line, which
    bitsandbytes' import prints on CPUs with AVX512-BF16 when it looks (offline, as we always
    are) for an optional CPU kernel: every run printed it, and it says nothing about the run."""
    import logging
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    logging.getLogger("kernels").setLevel(logging.ERROR)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:
        pass


def _loss(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f}"


def _rank_text(card: AdapterCard) -> str:
    """The rank as saved, and as trained for a PiSSA/OLoRA run ("16 (PiSSA r8)")."""
    if not card.rank:
        return "-"
    init = card.extra.get("init")
    return f"{card.rank} ({init} r{card.extra.get('trained_rank')})" if init else str(card.rank)


def cli_list(args: argparse.Namespace) -> int:
    """``finetune-studio adapters list [--json]``: print the library.

    Args:
        args: ``json`` (bool): one JSON list of card dicts instead of a table.

    Returns:
        0.
    """
    cards = list_adapters()
    if getattr(args, "json", False):
        print(json.dumps([c.to_dict() for c in cards], indent=2, default=str))
        return 0
    if not cards:
        print(f"no adapters yet: train a PEFT method, or add a folder (runs are read from {runs_dir()})")
        return 0
    header = ("NAME", "METHOD", "RANK", "BASE", "FINAL", "BEST EVAL", "DATE", "SIZE", "PATH")
    rows = [(c.name + (f" ({c.status})" if c.status and c.status != "completed" else ""), c.method or "?",
             _rank_text(c), base_label(c.base_model),
             _loss(c.final_loss), _loss(c.best_eval_loss), c.date or "?", format_size(c.size_bytes),
             c.path + (f"  [{c.problem}]" if c.problem else "")) for c in cards]
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header) - 1)]
    for r in (header, *rows):
        print("  ".join(v.ljust(w) for v, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1])
    return 0


def cli_export(args: argparse.Namespace) -> int:
    """``finetune-studio adapters export ADAPTER --out DIR``: copy an adapter on its own.

    Args:
        args: ``adapter`` (str), ``out`` (str), optional ``allow_pickle`` (bool).

    Returns:
        0 on success; errors are raised as StudioError (the CLI prints them, exit 2).
    """
    out = export_adapter(args.adapter, args.out, allow_pickle=getattr(args, "allow_pickle", False))
    print(f"exported {args.adapter} -> {out}")
    return 0


def cli_add(args: argparse.Namespace) -> int:
    """``finetune-studio adapters add PATH``: the GUI's "Add folder…".

    Args:
        args: ``path`` (str): a PEFT adapter folder (with ``adapter_config.json``), or a run
            (its folder, or its name as ``runs list`` gives it) whose ``final/`` holds one.

    Returns:
        0 (also when it was listed already); errors are raised as StudioError (exit 2).
    """
    from engine.runs import find_run

    known = {Path(c.path) for c in list_adapters()}
    path = args.path
    if not Path(path).expanduser().exists():
        # A run's name, as generate, export-gguf and adapters compare take it: "there is no folder
        # '<cwd>/medical'" sent the user looking for a path.
        path = find_run(path) or path
    card = add_adapter(path)
    base = base_label(card.base_model)
    if Path(card.path) in known:
        print(f"already in the library ({card.source}): {card.name}, {card.method or '?'} on {base} - {card.path}")
    else:
        print(f"added {card.name}, {card.method or '?'} on {base} - {card.path}")
    if card.problem:
        print(f"  note: {card.problem}")
    return 0


def cli_remove(args: argparse.Namespace) -> int:
    """``finetune-studio adapters remove PATH``: the GUI's "Remove" (the files stay).

    Args:
        args: ``path`` (str): an added folder (or the run folder holding it), or the name
            of an added adapter as ``adapters list`` shows it.

    Returns:
        0; errors are raised as StudioError (exit 2): adapters listed from runs or from
        the library folder can't be removed this way, and the error says where they live.
    """
    ref = str(args.path)
    folder = Path(ref).expanduser().resolve()
    cards = list_adapters()
    added = [c for c in cards if c.source == "added"]
    # The folder itself, the run folder around an added final/, or the name the list shows.
    candidates = [folder, folder / "final"] + [Path(c.path) for c in added if c.name == ref]
    for cand in candidates:
        if remove_adapter(cand):
            print(f"removed {cand} from the library (its files are kept)")
            return 0
    other = next((c for c in cards if Path(c.path) in (folder, folder / "final") or c.name == ref), None)
    if other is not None and other.source == "run":
        raise ModelError(f"'{ref}' is the adapter of run '{other.name}', listed from the runs folder; only "
                         "added folders can be removed", hint=f"Delete the run folder {other.run_dir} to drop it.")
    if other is not None and other.source == "library":
        raise ModelError(f"'{ref}' lives in the library folder {adapters_dir()}; only added folders can be "
                         "removed", hint=f"Move or delete {other.path} to drop it.")
    names = ", ".join(c.path for c in added) or "none"
    raise ModelError(f"'{ref}' is not an added adapter folder", hint=f"Added folders: {names}.")


def cli_merge(args: argparse.Namespace) -> int:
    """``finetune-studio merge``: merge adapters into the base and save a model folder.

    Args:
        args: ``base`` (str), ``adapter`` (list[str]), ``weights`` (list[float] | None),
            ``combination`` (str), ``out`` (str), ``dtype`` (fp32|fp16|bf16), optional
            ``density`` (float), ``trust_remote_code`` and ``allow_pickle`` (bool).

    Returns:
        0 on success; errors are raised as StudioError (the CLI prints them, exit 2).
    """
    quiet_loading()
    t0 = time.perf_counter()
    out = merge_adapters(args.base, list(args.adapter), args.out, weights=getattr(args, "weights", None),
                         combination=getattr(args, "combination", None) or DEFAULT_COMBINATION,
                         density=getattr(args, "density", None), dtype=getattr(args, "dtype", "fp32") or "fp32",
                         trust_remote_code=getattr(args, "trust_remote_code", False),
                         allow_pickle=getattr(args, "allow_pickle", False))
    print(f"merged {', '.join(args.adapter)} into {args.base} -> {out} ({time.perf_counter() - t0:.1f} s); "
          "load it with AutoModelForCausalLM.from_pretrained", flush=True)
    if getattr(args, "gguf", None):
        from engine.gguf_export import describe, export_gguf

        result = export_gguf(out, out / f"{out.name}-{args.gguf}.gguf", out_type=args.gguf,
                             trust_remote_code=getattr(args, "trust_remote_code", False))
        print(describe(result))
    return 0
