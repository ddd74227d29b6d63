"""The ``finetune-studio`` command: a thin layer over the engine.

With no subcommand it opens the GUI. The GUI is a separate program (``python -m gui``):
the engine never imports Qt or ``gui``, so the CLI hands over to it with ``exec``.

Every run-config key can be overridden on ``train``/``estimate``/``export-launch`` with
its own name (``--max_steps 30 --method ia3``); unknown keys get the closest suggestion, as do
unknown flags of every command. Every flag takes ``--top_p`` and ``--top-p`` alike (:class:`_Parser`).
Each subcommand dispatches to one function in the module that owns the feature, imported
lazily so that ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import math
import os
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from engine import __version__
from engine.adapters import COMBINATION_HELP, COMBINATIONS, DEFAULT_COMBINATION
from engine.config import RunConfig, closest_key, parse_override
from engine.data.formats import FMT_CHOICES
from engine.data.templates import TEMPLATE_CHOICES, check_template_name
from engine.errors import ConfigError, StudioError
from engine.generate import GenerationSettings
from engine.gguf_export import TYPES as GGUF_TYPES


def progress_printer(args: argparse.Namespace, what: str = "", verb: str = "scoring") -> Callable[[int, int], None]:
    """A ``progress(done, total)`` callback for a long command: ``progress DONE TOTAL`` lines on
    stderr with ``--progress`` (the GUI reads them), else a counter that rewrites itself at most
    twice a second on a terminal, and nothing under ``--json`` or into a pipe.

    Args:
        args: the command's arguments (``progress`` and ``json`` are read if present).
        what: the unit counted, e.g. ``records`` (``scoring 12/366 records``).
        verb: what is being done to them.
    """
    import time

    last = [0.0]
    suffix = f" {what}" if what else ""

    def progress(done: int, total: int) -> None:
        if getattr(args, "progress", False):
            print(f"progress {done} {total}", file=sys.stderr, flush=True)
            return
        now = time.monotonic()
        if not getattr(args, "json", False) and sys.stderr.isatty() and (now - last[0] > 0.5 or done == total):
            last[0] = now
            print(f"\r{verb} {done}/{total}{suffix}", end="\n" if done == total else "", file=sys.stderr, flush=True)

    return progress


# subcommand -> "module:function". The function takes the argparse Namespace, returns an exit code.
HANDLERS = {
    "train": "engine.train:cli_train",
    "estimate": "engine.memory:cli_estimate",
    "gpu": "engine.nvsmi:cli_gpu",
    "data check": "engine.data:cli_check",
    "data convert": "engine.data:cli_convert",
    "data preview": "engine.data:cli_preview",
    "data split": "engine.data:cli_split",
    "data hub": "engine.data.hub:cli_list",
    "adapters list": "engine.adapters:cli_list",
    "adapters add": "engine.adapters:cli_add",
    "adapters remove": "engine.adapters:cli_remove",
    "adapters export": "engine.adapters:cli_export",
    "adapters compare": "engine.compare:cli_compare",
    "adapters comparisons": "engine.compare:cli_comparisons",
    "generate": "engine.generate:cli_generate",
    "merge": "engine.adapters:cli_merge",
    "export-gguf": "engine.gguf_export:cli_export_gguf",
    "export-launch": "engine.launch:cli_export_launch",
    "runs list": "engine.runs:cli_list",
    "runs show": "engine.runs:cli_show",
    "runs compare": "engine.runs:cli_compare",
    "runs audit": "engine.audit:cli_audit",
    "runs promote": "engine.promote:cli_promote",
    "runs rewind": "engine.rewind:cli_rewind",
    "runs delete": "engine.cleanup:cli_delete",
    "runs prune": "engine.cleanup:cli_prune",
    "queue add": "engine.runqueue:cli_add",
    "queue list": "engine.runqueue:cli_list",
    "queue run": "engine.runqueue:cli_run",
    "queue stop": "engine.runqueue:cli_stop",
    "queue remove": "engine.runqueue:cli_remove",
    "queue retry": "engine.runqueue:cli_retry",
    "worker": "engine.worker:cli_worker",
    "self-check": "engine.selfcheck:run_self_check",
}


def _handler(name: str) -> Callable[[argparse.Namespace], int]:
    module, func = HANDLERS[name].split(":")
    return getattr(importlib.import_module(module), func)


def _config_epilog() -> str:
    meta = RunConfig.field_meta()
    lines = ["run-config keys (override any with --KEY VALUE):"]
    for name, m in meta.items():
        allowed = f" [{'|'.join(m['choices'])}]" if m.get("choices") else ""
        lines.append(f"  --{name}{allowed} (default {m['default']!r}): {m['help']}")
    return "\n".join(lines)


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that takes each ``--long_flag`` spelled ``--long-flag`` too, and the other
    way round: the flags mix both spellings (``--top_p``, ``--no-base``), so either one typed for
    the other is read as the flag declared, and ``--help`` still shows each flag once. Its
    subcommands' parsers are of this class too (``add_subparsers`` makes them with ``type(self)``)."""

    def parse_known_args(self, args: Sequence[str] | None = None,
                         namespace: argparse.Namespace | None = None) -> tuple[argparse.Namespace, list[str]]:
        args = list(sys.argv[1:] if args is None else args)
        self._typed = self._as_declared(args)
        return super().parse_known_args(self._typed, namespace)

    def error(self, message: str) -> NoReturn:
        """argparse's error, plus the flag a mistyped option most likely means when the typo left a required
        flag out (``generate --promt hi``: argparse says only that ``--prompt`` is required)."""
        if message.startswith("the following arguments are required"):
            declared = {o for a in self._actions for o in a.option_strings}
            meant = _flags_meant(self, [a for a in getattr(self, "_typed", [])
                                        if a.startswith("--") and a.partition("=")[0] not in declared])
            if meant:
                message += " (" + ", ".join(f"{flag}: did you mean {close}?" for flag, close in meant.items()) + ")"
        super().error(message)

    def _as_declared(self, args: list[str]) -> list[str]:
        """``args`` with each long option that this parser declares in the other spelling written as declared."""
        declared = {o for a in self._actions for o in a.option_strings}
        commands = {c for a in self._actions if isinstance(a, argparse._SubParsersAction) for c in a.choices}
        out: list[str] = []
        for i, arg in enumerate(args):
            if arg == "--" or arg in commands:  # what follows is positional, or the subcommand's to read
                return out + args[i:]
            flag, eq, value = arg.partition("=")
            if arg.startswith("--") and flag not in declared:
                flag = next((f for f in (f"--{flag[2:].replace('-', '_')}", f"--{flag[2:].replace('_', '-')}")
                             if f in declared), flag)
            out.append(flag + eq + value)
        return out


def _likeness(typed: str, name: str) -> float:
    """How much ``typed`` looks like the option ``name``, whatever their dashes, 0 to 1: 1 where it is a start
    of it of 3 or more characters (``--num-proc``, ``--num-processes``), else difflib's ratio (which puts that
    pair below ``num_epochs``)."""
    typed, name = (n.lstrip("-").replace("-", "_") for n in (typed, name))
    return 1.0 if len(typed) >= 3 and name.startswith(typed) else difflib.SequenceMatcher(None, typed, name).ratio()


def _closest_flag(parser: argparse.ArgumentParser, typed: str) -> str | None:
    """The flag of ``parser`` that a mistyped ``typed`` (``--temprature``) most likely means, or None.
    Hidden flags (``--progress``, for the GUI) are never suggested."""
    flags = [o for a in parser._actions if a.help != argparse.SUPPRESS for o in a.option_strings if o.startswith("--")]
    best = max(flags, key=lambda o: _likeness(typed, o), default=None)
    return best if best and _likeness(typed, best) >= 0.6 else None  # difflib's own cutoff


def _flags_meant(parser: argparse.ArgumentParser, typed: list[str]) -> dict[str, str]:
    """``{typed option: the flag of parser it most likely means}`` for the options among ``typed``
    (``--temprature=2`` counts as ``--temprature``) that have a close flag."""
    meant: dict[str, str] = {}
    for arg in typed:
        flag = arg.partition("=")[0]
        if flag.startswith("-") and flag not in meant and (close := _closest_flag(parser, flag)):
            meant[flag] = close
    return meant


def _refuse_unrecognized(parser: argparse.ArgumentParser, rest: list[str]) -> None:
    """Exit as argparse does on arguments ``parser`` doesn't take, naming the flag each unknown option most
    likely means (argparse said only ``unrecognized arguments: --temprature 2``)."""
    meant = _flags_meant(parser, rest)
    said = ", ".join(close if len(meant) == 1 else f"{close} for {flag}" for flag, close in meant.items())
    parser.error(f"unrecognized arguments: {' '.join(rest)}" + (f" (did you mean {said}?)" if said else ""))


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="finetune-studio",
        description="Fine-tune an LLM on one GPU, and build its instruction dataset. "
        "With no command, opens the app (on the embedded demo the first time).",
        allow_abbrev=False,
    )
    p.add_argument("--version", action="version", version=f"finetune-studio {__version__}")
    p.add_argument("--screenshot", metavar="OUT.png", help="render the main window offscreen with the "
                   "demo loaded and save it as a PNG, then exit")
    p.add_argument("--tab", choices=["dataset", "train", "adapters", "runs"], default="dataset",
                   help="with --screenshot: which area to show")
    p.add_argument("--open", metavar="FILE", help="open the app on this dataset file")
    p.add_argument("--color-scheme", choices=["system", "light", "dark"],
                   help="light or dark colours for this start (and for --screenshot), instead of the app's "
                        "Appearance setting; system follows the desktop")
    p.add_argument("--demo", action="store_true", help="open the app on the demo dataset and preset (without it, "
                   "the app opens the dataset file and the Train form as they were when it last closed)")
    p.add_argument("--self-check", action="store_true", help="check that the installed app works "
                   "(imports, GPU, window, 3 training steps) and exit non-zero on any failure")
    p.add_argument("--json", action="store_true", help="with --self-check: print the report as JSON")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    raw = argparse.RawDescriptionHelpFormatter

    t = sub.add_parser("train", help="train a run config (in this process; Ctrl-C stops with a checkpoint)",
                       epilog=_config_epilog(), formatter_class=raw, allow_abbrev=False)
    t.add_argument("config", metavar="RUN.yaml", help="a run config; with --resume also a run's folder or name")
    t.add_argument("--resume", action="store_true", help="continue a run from its last checkpoint: give its "
                   "run.yaml, its folder or its name")
    t.add_argument("--events", action="store_true", help="print JSON-line events instead of a progress log")
    t.add_argument("--probe", action="store_true", help="train only a few steps, save nothing, and report the "
                   "time per step, the full run's duration and the peak GPU memory beside the estimate")
    t.add_argument("--probe-steps", type=int, default=None, dest="probe_steps", metavar="N",
                   help="with --probe: optimizer steps to train (default 10)")

    e = sub.add_parser("estimate", help="estimate peak GPU memory for a run config",
                       epilog=_config_epilog(), formatter_class=raw, allow_abbrev=False)
    e.add_argument("config", metavar="RUN.yaml")
    e.add_argument("--json", action="store_true", help="print one JSON object (see README)")
    e.add_argument("--gpu-memory", type=_gib, metavar="GiB", help="GPU memory to fit into "
                   "(default: the detected GPU)")
    e.add_argument("--no-data", action="store_true", dest="no_data",
                   help="don't read the dataset: the estimate at seq_len only (by default the records are "
                   "tokenized as the run would, and the estimate at the longest one is given too)")

    gp = sub.add_parser("gpu", help="the GPUs now, as the driver reports them: memory in use and by whom, "
                        "utilisation, temperature, power (nvidia-smi; no CUDA context)", allow_abbrev=False)
    gp.add_argument("--json", action="store_true", help="print one JSON object")
    gp.add_argument("--watch", type=_positive_seconds, metavar="SECONDS",
                    help="print again every SECONDS (Ctrl-C ends), e.g. beside a training run")

    d = sub.add_parser("data", help="dataset tools")
    dsub = d.add_subparsers(dest="data_command", metavar="DATA_COMMAND", required=True)
    dc = dsub.add_parser("check", help="lint a dataset: consistency, balance, diversity, length")
    dc.add_argument("file", metavar="FILE", help="a dataset file, or a dataset in the Hugging Face cache: org/name or org/name:split")
    dc.add_argument("--json", action="store_true", help="machine-readable report; exit 1 on errors")
    dc.add_argument("--format", default="auto", choices=FMT_CHOICES, metavar="FORMAT",
                    help="auto|alpaca|sharegpt|messages|csv|parquet")
    dc.add_argument("--seq-len", type=_count, dest="seq_len", help="report records longer than this")
    dc.add_argument("--model", help="count tokens with this model's tokenizer")
    dc.add_argument("--template", default="auto", type=_template, metavar="|".join(TEMPLATE_CHOICES) + "|FILE.jinja",
                    help="with --model: render records as the run config's template would (default auto)")
    dc.add_argument("--add-tokens", nargs="+", default=[], metavar="TOKEN", dest="add_tokens",
                    help="with --model: as the run config's add_tokens key (markers count as one token each)")
    dc.add_argument("--audit", nargs="?", const="latest", metavar="RUN",
                    help="add the records a run audit flagged (runs audit RUN); without RUN: the newest "
                    "audit of a run that trained on FILE")
    dv = dsub.add_parser("convert", help="export a dataset to another container and/or record format")
    dv.add_argument("input", metavar="IN", help="a dataset file, or a dataset in the Hugging Face cache: org/name or org/name:split")
    dv.add_argument("output", metavar="OUT", help="the new file; its extension picks the container unless "
                    "--format names one")
    dv.add_argument("--format", action="append", metavar="F", help="record format alpaca|sharegpt|messages "
                    "and/or container json|jsonl|csv|parquet (give both as --format sharegpt --format "
                    "parquet); default: IN's record format, OUT's extension")
    dv.add_argument("--input-format", default="auto", dest="input_format", metavar="F", choices=FMT_CHOICES,
                    help="how to read IN: auto|alpaca|sharegpt|messages|json|jsonl|csv|parquet")
    dv.add_argument("--per-answer", action="store_true", dest="per_answer",
                    help="write a multi-turn conversation as one record per answer, each ending with it (so "
                    "every answer trains under chat templates that render earlier answers differently, e.g. "
                    "Qwen3's)")
    dv.add_argument("--force", action="store_true", help="replace OUT if it exists (never IN)")
    dp = dsub.add_parser("preview", help="show a record as the model sees it, the trained tokens marked")
    dp.add_argument("file", metavar="FILE", help="a dataset file, or a dataset in the Hugging Face cache: org/name or org/name:split")
    which = dp.add_mutually_exclusive_group()
    which.add_argument("--record", type=int, default=None, metavar="N", help="the record, from 1 as in the "
                       "editor and in `data check` (default 1)")
    which.add_argument("--index", type=int, default=None, metavar="I", help="the record, from 0 (for scripts)")
    dp.add_argument("--model", default="demo", help="tokenizer and chat template of this model: demo, a "
                    "model folder or a cached hub id (default demo)")
    dp.add_argument("--template", default="auto", type=_template, metavar="|".join(TEMPLATE_CHOICES) + "|FILE.jinja",
                    help="as the run config's template key (default auto)")
    dp.add_argument("--loss-on", default="answers", choices=["answers", "last_answer", "all"],
                    dest="loss_on", help="as the run config's loss_on key (default answers)")
    dp.add_argument("--add-tokens", nargs="+", default=[], metavar="TOKEN", dest="add_tokens",
                    help="as the run config's add_tokens key: render with these added as whole tokens")
    dp.add_argument("--format", default="auto", choices=FMT_CHOICES, metavar="FORMAT",
                    help="auto|alpaca|sharegpt|messages|csv|parquet")
    dp.add_argument("--json", action="store_true", help="print the segments as JSON")
    seed_default = RunConfig.field_meta()["seed"]["default"]
    ds_ = dsub.add_parser("split", help="write train and eval files, split the way a run's eval_split splits")
    ds_.add_argument("file", metavar="FILE", help="a dataset file, 'demo' (the embedded sample dataset), or a dataset "
                     "in the Hugging Face cache: org/name or org/name:split")
    ds_.add_argument("--eval-ratio", type=float, required=True, dest="eval_ratio", metavar="R",
                     help="share of records held out for eval, above 0 and at most 0.5 (as a run's eval_split)")
    ds_.add_argument("--seed", type=_seed, default=seed_default, help=f"the run's seed (default {seed_default}, "
                     "the run config's default)")
    ds_.add_argument("--out-dir", required=True, dest="out_dir", metavar="DIR",
                     help="where FILE's -train and -eval files go")
    ds_.add_argument("--format", default="auto", choices=FMT_CHOICES, metavar="FORMAT",
                     help="auto|alpaca|sharegpt|messages|csv|parquet")
    ds_.add_argument("--force", action="store_true", help="replace existing output files")
    ds_.add_argument("--json", action="store_true")

    dh = dsub.add_parser("hub", help="list the datasets in the Hugging Face cache (what dataset: ORG/NAME can name)")
    dh.add_argument("--json", action="store_true")

    a = sub.add_parser("adapters", help="the adapter library")
    asub = a.add_subparsers(dest="adapters_command", metavar="ADAPTERS_COMMAND", required=True)
    al = asub.add_parser("list", help="list adapters from runs and added folders")
    al.add_argument("--json", action="store_true")
    aa = asub.add_parser("add", help="add a PEFT adapter folder to the library")
    aa.add_argument("path", metavar="PATH|RUN", help="an adapter folder, or a run: its folder or its name "
                    "(a run's adapter is listed already; this says so)")
    ar = asub.add_parser("remove", help="forget an added folder (its files stay)")
    ar.add_argument("path", metavar="PATH", help="an added folder, or its name in 'adapters list'")
    ax = asub.add_parser("export", help="copy an adapter on its own to a folder")
    ax.add_argument("adapter", metavar="ADAPTER", help="an adapter folder, a run (folder or name) or a name in "
                    "'adapters list'")
    ax.add_argument("--out", required=True, metavar="DIR", help="the folder to write (PEFT format, loadable by "
                    "PeftModel.from_pretrained)")
    ax.add_argument("--allow_pickle", action="store_true", help="copy a pickle adapter_model.bin when there is "
                    "no safetensors file (pickle can run code when loaded)")
    ac = asub.add_parser("compare", help="score the base and adapters on the same records; answer a few with each",
                         description="Every model (the base, then each adapter, on one base loaded once) scores "
                         "every record's answer as training's loss counts it. The headline figures leave out the "
                         "records any compared adapter trained on (its run's train split, rebuilt).")
    ac.add_argument("adapter", nargs="+", metavar="ADAPTER", help="adapter folders, run folders or names; a full or "
                    "freeze run is compared as a whole model")
    ac.add_argument("--dataset", required=True, metavar="FILE", help="the records to score ('demo': the embedded "
                    "dataset; org/name:split: a dataset in the Hugging Face cache); best a held-out file no adapter "
                    "trained on")
    ac.add_argument("--base", default=None, metavar="MODEL", help="default: the first adapter's base; a run (folder "
                    "or name) stands for its trained model (full, freeze) or its base with its adapter compared")
    ac.add_argument("--format", default="auto", choices=FMT_CHOICES, metavar="FORMAT",
                    help="auto|alpaca|sharegpt|messages|csv|parquet")
    ac.add_argument("--template", default=None, type=_template, metavar="|".join(TEMPLATE_CHOICES) + "|FILE.jinja",
                    help="default: the adapters' runs' template")
    ac.add_argument("--seq-len", type=_count, default=None, dest="seq_len", metavar="N",
                    help="default: the largest seq_len of the adapters' runs")
    ac.add_argument("--limit", type=_count_or_all, default=None, metavar="N", help="score N records, the held-out ones first, "
                    "then a seeded random choice (default all)")
    ac.add_argument("--samples", type=_count_or_none, default=3, metavar="K", help="records every model answers greedily, "
                    "where they differ most (default 3; 0 = none)")
    ac.add_argument("--answer", default=None, metavar="N|all", help="every model also answers N held-out "
                    "records (or all of them) greedily, scored against their references: exact match (JSON "
                    "compared as values) and token F1 (default: none)")
    ac.add_argument("--max_new_tokens", type=_count, default=128, metavar="N",
                    help="longest answer for --samples and --answer (default 128)")
    ac.add_argument("--load_in", default="auto", choices=["auto", "fp32", "fp16", "bf16", "int8", "nf4"],
                    help="how the base loads (default auto: as the adapters' runs trained it)")
    ac.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                    help="auto: the GPU if there is one")
    ac.add_argument("--batch_size", type=_count, default=4, metavar="N", help="records scored per forward pass "
                    "(default 4)")
    ac.add_argument("--seed", type=_seed, default=0, help="for --limit's sample")
    ac.add_argument("--out", default=None, metavar="FILE", help="where the whole result goes as JSON (default: a new "
                    "file in <data home>/comparisons, listed by 'adapters comparisons'); an existing file is "
                    "refused unless --force")
    ac.add_argument("--force", action="store_true", help="with --out: replace the file if it exists")
    ac.add_argument("--json", action="store_true")
    ac.add_argument("--progress", action="store_true", help=argparse.SUPPRESS)
    ac.add_argument("--allow_pickle", action="store_true", help="allow pickle (.bin) weights, which can run code")
    ac.add_argument("--trust_remote_code", action="store_true", help="run Python code shipped with the model")
    acs = asub.add_parser("comparisons", help="the kept comparisons, newest first, or one in full")
    acs.add_argument("--show", default=None, metavar="N|FILE", help="print one: its number in the list, or its file")
    acs.add_argument("--json", action="store_true")

    g = sub.add_parser("generate", help="generate with a base model and adapters")
    g.add_argument("--base", required=True, metavar="MODEL", help="demo, a model folder, a cached hub id, or a "
                   "run (folder or name): a full/freeze run's trained model, or a LoRA run's base with its adapter")
    g.add_argument("--adapter", action="append", default=[], metavar="ADAPTER",
                   help="an adapter folder, run (folder or name) or library name; repeat it for several, each "
                   "answers in its own block on the one loaded base")
    g.add_argument("--prompt", required=True, metavar="TEXT", help="the user's message, formatted with the chat "
                   "template (an adapter's own: a run saves the template it trained with)")
    g.add_argument("--system", default=None, metavar="TEXT", help="a system message before the prompt")
    g.add_argument("--max_new_tokens", type=_generation_setting("max_new_tokens"), default=128, metavar="N",
                   help="longest answer (default 128)")
    g.add_argument("--temperature", type=_generation_setting("temperature"), default=0.0, help="0 = greedy")
    g.add_argument("--top_p", type=_generation_setting("top_p"), default=1.0, metavar="P", help="nucleus "
                   "sampling: sample from the smallest set of tokens whose probability reaches P (default 1.0 = off)")
    g.add_argument("--repetition_penalty", type=_generation_setting("repetition_penalty"), default=1.0, metavar="X",
                   help="> 1 makes repeating a token less likely (default 1.0 = off)")
    g.add_argument("--load_in", default="auto", choices=["auto", "fp32", "fp16", "bf16", "int8", "nf4"],
                   help="how the base loads, as in training (default auto: bf16 on a GPU that supports it, "
                   "else fp16; fp32 on the CPU; int8 and nf4 need a GPU)")
    g.add_argument("--no-base", action="store_true", dest="no_base", help="skip the base model's answer")
    g.add_argument("--seed", type=_seed, default=0, help="for sampling (temperature > 0), so a run repeats")
    g.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="auto: the GPU if there "
                   "is one")
    g.add_argument("--allow_pickle", action="store_true", help="allow pickle (.bin) weights in the base or "
                   "adapters, which can run code")
    g.add_argument("--trust_remote_code", action="store_true", help="run Python code shipped with the model")

    width = max(map(len, COMBINATIONS))
    m = sub.add_parser("merge", help="merge LoRA adapters into the base and save a model folder",
                       formatter_class=raw, epilog="combinations (--combination), dW = an adapter's change "
                       "to a weight, w = its weight:\n" + "\n".join(
                           textwrap.fill(COMBINATION_HELP[c], 100, initial_indent=f"  {c.ljust(width)}  ",
                                         subsequent_indent=" " * (width + 4)) for c in COMBINATIONS))
    m.add_argument("--base", required=True, metavar="MODEL", help="demo, a model folder or a cached hub id: "
                   "the base the adapters were trained on")
    m.add_argument("--adapter", action="append", required=True, metavar="ADAPTER",
                   help="an adapter folder, run (folder or name) or library name; repeat it to combine several")
    m.add_argument("--weights", type=_finite_number, nargs="+", help="one weight per adapter (combine)")
    m.add_argument("--combination", default=DEFAULT_COMBINATION, metavar="TYPE", choices=COMBINATIONS,
                   help=f"PEFT's add_weighted_adapter type when combining: {', '.join(COMBINATIONS)} "
                   f"(default {DEFAULT_COMBINATION}: exactly the weighted sum of the adapters' changes; the others "
                   "approximate it, see below)")
    m.add_argument("--out", required=True, metavar="DIR", help="the merged model's folder (safetensors, loadable "
                   "by plain transformers)")
    m.add_argument("--dtype", default="fp32", choices=["fp32", "fp16", "bf16"], help="dtype of the saved weights")
    m.add_argument("--density", type=float, default=None, help="fraction of weights kept by the ties, dare_* "
                   "and magnitude_prune combinations (0 < density <= 1)")
    m.add_argument("--allow_pickle", action="store_true", help="allow pickle (.bin) weights in the base or "
                   "adapters, which can run code")
    m.add_argument("--trust_remote_code", action="store_true", help="run Python code shipped with the model")
    m.add_argument("--gguf", default=None, metavar="TYPE", choices=GGUF_TYPES,
                   help=f"also write the merged model as <out>/<name>-TYPE.gguf ({', '.join(GGUF_TYPES)})")

    gg = sub.add_parser("export-gguf", help="write a model, full/freeze run or adapter as one GGUF file "
                        "(llama.cpp, Ollama, LM Studio)")
    gg.add_argument("source", metavar="SOURCE", help="demo, a model folder, a cached hub id, a full/freeze run, "
                    "or an adapter (merged into its base first)")
    gg.add_argument("--out", default=None, metavar="FILE.gguf", help="default: <run>-<type>.gguf in the run folder "
                    "for a run, else <data home>/gguf/<name>-<type>.gguf")
    gg.add_argument("--type", default=None, choices=GGUF_TYPES, help="tensor type of the matrices (default "
                    "q8_0; f16 with --lora); norms stay f32. For Q4_K_M etc., write f16 and run llama.cpp's "
                    "llama-quantize")
    gg.add_argument("--lora", action="store_true", help="write a LoRA adapter on its own, as a llama.cpp adapter "
                    "GGUF applied on the base's GGUF at run time (llama.cpp --lora, Ollama's ADAPTER), "
                    "instead of merging it; f16 or f32")
    gg.add_argument("--base", default=None, metavar="MODEL", help="the base an adapter is merged into "
                    "(default: the base it records)")
    gg.add_argument("--pre", default=None, metavar="NAME", help="llama.cpp pre-tokenizer name, when the "
                    "tokenizer's split pattern is not recognised (e.g. llama-bpe, qwen2, gpt-2)")
    gg.add_argument("--json", action="store_true", help="print the result as one JSON object")
    gg.add_argument("--progress", action="store_true", help=argparse.SUPPRESS)
    gg.add_argument("--allow_pickle", action="store_true", help="allow pickle (.bin) weights in the base or "
                    "adapter being merged, which can run code")
    gg.add_argument("--trust_remote_code", action="store_true", help="run Python code shipped with the model")

    x = sub.add_parser("export-launch", help="write accelerate/DeepSpeed configs and a launch script",
                       epilog=_config_epilog(), formatter_class=raw, allow_abbrev=False)
    x.add_argument("config", metavar="RUN.yaml")
    x.add_argument("--out", default=None, metavar="DIR", help="default: <output_dir>/launch (relative: to the current folder); when "
                   "output_dir is empty, a new run folder in the runs directory becomes the run's output_dir")
    x.add_argument("--zero", type=int, choices=[2, 3], default=2, help="DeepSpeed ZeRO stage")
    x.add_argument("--offload", action="store_true", help="ZeRO CPU offload of optimizer (and params for 3)")
    x.add_argument("--num-processes", type=int, default=2, dest="num_processes")

    q = sub.add_parser("queue", help="line runs up and train them one after another (a grid sweep too)")
    qsub = q.add_subparsers(dest="queue_command", metavar="QUEUE_COMMAND", required=True)
    qa = qsub.add_parser("add", help="queue a run config, or one run per point of a --grid",
                         epilog=_config_epilog(), formatter_class=raw, allow_abbrev=False)
    qa.add_argument("config", metavar="RUN.yaml")
    qa.add_argument("--grid", action="append", metavar="KEY=V1,V2",
                    help="one run per value; several --grid make every combination "
                    "(--grid learning_rate=1e-4,3e-4 --grid lora_r=8,16 queues 4 runs); a list value stays "
                    "whole in brackets (--grid \"lora_target_modules=[q_proj,v_proj],all-linear\")")
    qa.add_argument("--json", action="store_true", help="print the queued entries as JSON")
    ql = qsub.add_parser("list", help="the queue: pending, training and ended runs")
    ql.add_argument("--json", action="store_true")
    qr = qsub.add_parser("run", help="train the pending runs in order (Ctrl-C stops the current one with a "
                         "checkpoint and leaves the rest queued)")
    qr.add_argument("--json", action="store_true", help="print JSON-line events (each run's, and one "
                    "'queue' event as each run starts and ends)")
    qs = qsub.add_parser("stop", help="let the runner start nothing more")
    qs.add_argument("--now", action="store_true", help="also stop the current run after its step, with a "
                    "checkpoint")
    qy = qsub.add_parser("retry", help="queue a stopped, interrupted or failed run again (stopped and interrupted "
                         "ones continue from their last checkpoint)")
    qy.add_argument("ids", nargs="+", metavar="ID")
    qm = qsub.add_parser("remove", help="take runs out of the queue")
    qm.add_argument("ids", nargs="*", metavar="ID")
    qm.add_argument("--ended", action="store_true", help="forget every run that has ended (its folder stays "
                    "in the run history)")

    r = sub.add_parser("runs", help="run history")
    rsub = r.add_subparsers(dest="runs_command", metavar="RUNS_COMMAND", required=True)
    rl = rsub.add_parser("list", help="list runs with status, losses and peak memory")
    rl.add_argument("--json", action="store_true")
    rs = rsub.add_parser("show", help="one run: status, times, losses, memory, checkpoints, config")
    rs.add_argument("run", metavar="RUN", help="a run folder, or a run name from 'runs list'")
    rs.add_argument("--json", action="store_true")
    rc = rsub.add_parser("compare", help="runs side by side: losses and the config keys that differ")
    rc.add_argument("runs", nargs="+", metavar="RUN", help="two or more run folders or names")
    rc.add_argument("--json", action="store_true")

    ra = rsub.add_parser("audit", help="rank a run's records by their answer loss under the trained model: "
                         "the hardest are often annotation mistakes")
    ra.add_argument("run", metavar="RUN", help="a run folder, or a run name from 'runs list'")
    ra.add_argument("--top", type=_count, default=15, help="how many of the hardest records to print (default 15)")
    ra.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    ra.add_argument("--batch_size", type=_count, default=None,
                    help="records per forward pass (default: the run's micro-batch)")
    ra.add_argument("--checkpoint", metavar="N|DIR", default=None,
                    help="score one of the run's checkpoints (a step number, checkpoint-N or its folder) instead of "
                    "final/")
    ra.add_argument("--compare-base", action="store_true", dest="compare_base",
                    help="also score each record with the base model: how much training lowered its loss "
                         "(twice the time)")
    ra.add_argument("--json", action="store_true", help="print the whole audit as one JSON object")
    ra.add_argument("--progress", action="store_true", help=argparse.SUPPRESS)  # "progress N M" lines for the GUI

    rp = rsub.add_parser("promote", help="make a checkpoint the run's result (final/): by default the one "
                         "with the lowest eval loss; the weights final/ held stay in their checkpoint, or in "
                         "final-step-N/")
    rp.add_argument("run", metavar="RUN", help="a run folder, or a run name from 'runs list'")
    rp.add_argument("--checkpoint", default="best", metavar="best|N|DIR",
                    help="'best' (lowest eval loss, the default), a step number or a checkpoint folder")
    rp.add_argument("--json", action="store_true")

    rw = rsub.add_parser("rewind", help="go back to an earlier checkpoint to train on from there (then "
                         "train RUN/run.yaml --resume): later checkpoints and final/ move to superseded-TIME/")
    rw.add_argument("run", metavar="RUN", help="a run folder, or a run name from 'runs list'")
    rw.add_argument("--checkpoint", required=True, metavar="N|DIR", help="a step number or a checkpoint folder")
    rw.add_argument("--json", action="store_true")

    rd = rsub.add_parser("delete", help="delete runs: their whole folders (checkpoints, curves, final/); "
                         "never one that is training")
    rd.add_argument("runs", nargs="+", metavar="RUN", help="a run folder, or a run name from 'runs list'")
    rd.add_argument("--yes", "-y", action="store_true", help="don't ask (needed where no one can answer: a script)")
    rd.add_argument("--json", action="store_true", help="print what was removed as JSON")

    rn = rsub.add_parser("prune", help="free disk: remove a run's older checkpoints (keeping the newest "
                         "--keep, so it can still be resumed) and the superseded-*/ folders of rewinds; final/, "
                         "the curves and the config stay")
    rn.add_argument("runs", nargs="+", metavar="RUN", help="a run folder, or a run name from 'runs list'")
    rn.add_argument("--keep", type=_count_or_none, default=1, metavar="N",
                    help="newest checkpoints to keep (default 1; 0 only for a run with a final/)")
    rn.add_argument("--keep-superseded", action="store_true", dest="keep_superseded",
                    help="leave the superseded-*/ folders of earlier rewinds")
    rn.add_argument("--yes", "-y", action="store_true", help="don't ask (needed where no one can answer: a script)")
    rn.add_argument("--json", action="store_true", help="print what was removed as JSON")

    w = sub.add_parser("worker", help="(internal) the training worker process: JSON events on stdout, "
                       "commands on stdin")
    w.add_argument("config", metavar="RUN.yaml")
    w.add_argument("--resume", action="store_true")
    w.add_argument("--probe-steps", type=int, default=0, dest="probe_steps",
                   help="a probe run of this many steps (0: a normal run)")
    w.add_argument("--config-is-temp", action="store_true", dest="config_is_temp",
                   help="delete RUN.yaml once read (the client's hand-over file; the run writes its own run.yaml)")
    return p


def _whole_number(text: str, least: int, said: str, most: int | None = None) -> int:
    """A whole number from ``least`` to ``most`` (None: no bound), for an argparse type (``said``: the
    bounds in words)."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if n < least or (most is not None and n > most):
        raise argparse.ArgumentTypeError(f"must be {said}, got {n}")
    return n


def _number(text: str, what: str, ok: Callable[[float], bool], said: str) -> float:
    """A number for an argparse type: ``what`` names it ("a number of GiB"), ``ok`` checks it
    (``said``: what it must be, in words)."""
    try:
        n = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if not ok(n):
        raise argparse.ArgumentTypeError(f"must be {said}, got {text}")
    return n


def _positive_seconds(text: str) -> float:
    """An argparse type: a number of seconds, at least 0.1."""
    return _number(text, "a number of seconds", lambda n: 0.1 <= n < math.inf, "at least 0.1 seconds")


def _gib(text: str) -> float:
    """An argparse type: a positive, finite number of GiB (``--gpu-memory inf`` ended in a traceback)."""
    return _number(text, "a number of GiB", lambda n: 0 < n < math.inf, "a positive number of GiB")  # nan fails both


def _finite_number(text: str) -> float:
    """An argparse type: any finite number (``--weights nan`` would merge a model of NaNs)."""
    return _number(text, "a number", math.isfinite, "a finite number")


def _seed(text: str) -> int:
    """An argparse type: a seed in the run config's range (``--seed 10**30`` overflowed in torch)."""
    meta = RunConfig.field_meta()["seed"]
    return _whole_number(text, meta["min"], f"{meta['min']} to {meta['max']}", meta["max"])


def _generation_setting(key: str) -> Callable[[str], float]:
    """An argparse type for the generation setting ``key`` (``temperature``), in the range the engine takes
    (:class:`GenerationSettings`): the engine's own refusal came after the flags were read and named the
    setting ("generation setting 'temperature' must be ..."), not the flag typed."""
    said = f"in {GenerationSettings.allowed(key)}"
    if key == "max_new_tokens":
        lo, hi = GenerationSettings.BOUNDS[key]
        return lambda text: _whole_number(text, lo, said, hi)
    return lambda text: _number(text, "a number", lambda n: GenerationSettings.in_range(key, n), said)


def _template(text: str) -> str:
    """An argparse type: a template name or a .jinja file (data check refused a bad one as 'template', a
    run-config key, only once its tokenizer had loaded)."""
    try:
        return check_template_name(text)
    except ConfigError:
        raise argparse.ArgumentTypeError(f"must be one of {', '.join(TEMPLATE_CHOICES)} or a .jinja file, "
                                         f"got {text!r}") from None


def _count(text: str) -> int:
    """An argparse type: a whole number of at least 1 (``--top -3`` printed all but 3 rows)."""
    return _whole_number(text, 1, "at least 1")


def _count_or_none(text: str) -> int:
    """An argparse type: a whole number of at least 0 (``--samples -1`` was taken as none)."""
    return _whole_number(text, 0, "0 (none) or more")


def _count_or_all(text: str) -> int:
    """An argparse type: a whole number of at least 0, where 0 means no limit (``--limit``)."""
    return _whole_number(text, 0, "0 (all) or more")


def _split_overrides(parser: argparse.ArgumentParser, rest: list[str]) -> dict[str, object]:
    """Turn leftover ``--key value`` pairs into run-config overrides, or fail with a suggestion."""
    names = RunConfig.field_names()
    out: dict[str, object] = {}
    given: dict[str, str] = {}
    i = 0
    while i < len(rest):
        tok = rest[i]
        if not tok.startswith("--"):
            parser.error(f"unexpected argument '{tok}'")
        key, _, value = tok[2:].partition("=")
        key = key.replace("-", "_") if key.replace("-", "_") in names else key
        if key not in names:
            # The command's own flags are candidates too: `estimate --gpu-mem` means --gpu-memory, and
            # `export-launch --num-proc` was told "did you mean '--num_epochs'?".
            own, cfg = _closest_flag(parser, key), closest_key(key)
            close = own if own and (not cfg or _likeness(key, own) > _likeness(key, cfg)) else cfg and f"--{cfg}"
            parser.error(f"unknown option '--{key}'" + (f"; did you mean '{close}'?" if close else ""))
        if not _:
            # The next option is not this one's value: `--max_steps --method ia3` lacks the steps.
            if i + 1 >= len(rest) or rest[i + 1].startswith("--"):
                parser.error(f"option '--{key}' needs a value" + (
                    f" (the next argument is the option '{rest[i + 1]}'; write --{key}=VALUE for a value that "
                    "starts with --)" if i + 1 < len(rest) else ""))
            value = rest[i + 1]
            i += 1
        if key in given:  # as a YAML config refuses a key given twice: which one was meant?
            parser.error(f"option '--{key}' is given twice ({given[key]} and {value}); give it once")
        given[key] = value
        try:
            out[key] = parse_override(key, value)
        except StudioError as e:  # a list value whose brackets don't close
            parser.error(e.text())
        i += 1
    if out.get("eval_dataset") and "eval_split" not in out:
        # An eval file named on the command line replaces the config's held-out share, as picking
        # one in the Train area does: the whole dataset trains.
        out["eval_split"] = 0.0
    return out


OVERRIDE_COMMANDS = ("train", "estimate", "export-launch", "worker", "queue add")
"""The commands that take any run-config key as ``--KEY VALUE``."""


def _subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    """The parser of ``command`` (``"queue add"``): its usage line is the one an error shows."""
    sub = parser
    for word in command.split():
        sub = next((a.choices[word] for a in sub._actions
                    if isinstance(a, argparse._SubParsersAction) and word in a.choices), sub)
    return sub


def _fix_text(parser: argparse.ArgumentParser, command: str) -> Callable[[str, object], str]:
    """How an error's fix is written for ``command``: its own flag where it has one (``generate
    --allow_pickle``), ``--KEY VALUE`` where it takes run-config keys (``train --allow_pickle
    true``), else the run-config line to write (``allow_pickle: true``)."""
    from engine.errors import option_text, value_text

    sub = _subparser(parser, command)
    flags = {opt: a for a in sub._actions for opt in a.option_strings}

    def text(key: str, value: object) -> str:
        action = flags.get(f"--{key}") or flags.get(f"--{key.replace('_', '-')}")
        if action is not None and action.nargs == 0:  # a switch: store_true
            return action.option_strings[0] if value else f"(without {action.option_strings[0]})"
        if action is not None or command in OVERRIDE_COMMANDS:
            return option_text(key, value)
        return f"{key}: {value_text(value)} in the run config"

    return text


def _run_gui(argv: Sequence[str]) -> int:
    """Hand over to the GUI program; the engine never imports Qt itself."""
    cmd = [sys.executable, "-m", "gui", *argv]
    if os.name == "posix":
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(sys.executable, cmd)
    import subprocess

    return subprocess.call(cmd)


def main(argv: Sequence[str] | None = None) -> int:
    """The ``finetune-studio`` command; returns its exit code.

    Output piped into a reader that stops early (``runs show RUN | head -1``) ends the
    command quietly, as ``cat`` would, instead of with a BrokenPipeError traceback.
    """
    from engine import stay_offline

    stay_offline()
    try:
        code = _main(argv)
        sys.stdout.flush()  # inside the try: a broken pipe can surface only at this last flush
        return code
    except BrokenPipeError:
        from engine.files import write_nowhere

        write_nowhere(sys.stdout)  # or the flush at exit raises (and prints "Exception ignored") again
        return 1


def _main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    key = args.command  # "data check", "queue add": the handler's key and the parser's path
    for sub_attr in ("data_command", "adapters_command", "runs_command", "queue_command"):
        if getattr(args, sub_attr, None):
            key = f"{args.command} {getattr(args, sub_attr)}"
    overrides = {}
    if key in OVERRIDE_COMMANDS:
        overrides = _split_overrides(_subparser(parser, key), rest)
    elif rest:
        _refuse_unrecognized(_subparser(parser, key or ""), rest)
    args.overrides = overrides

    if args.self_check:
        return _handler("self-check")(args)
    if args.command is None:
        gui_args = []
        if args.screenshot:
            gui_args += ["--screenshot", args.screenshot, "--tab", args.tab]
        if args.open:
            if not Path(args.open).is_file():
                parser.error(f"--open {args.open}: no such file")
            gui_args += ["--open", str(Path(args.open).resolve())]
        if args.demo:
            gui_args.append("--demo")
        if args.color_scheme:
            gui_args += ["--color-scheme", args.color_scheme]
        return _run_gui(gui_args)
    try:
        return int(_handler(key)(args) or 0)
    except StudioError as e:
        print(f"finetune-studio {key}: {e.text(_fix_text(parser, key))}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        raise  # main() ends quietly
    except OSError as e:  # a folder that can't be made, a read-only file, a full disk: say which, no traceback
        what = f"{e.strerror}: {e.filename}" if e.strerror and e.filename else (e.strerror or str(e))
        if getattr(e, "filename2", None):
            what += f" -> {e.filename2}"
        print(f"finetune-studio {key}: {what}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
