"""Compare the base model and several adapters on the same records: ``finetune-studio adapters compare``.

The playground answers one prompt at a time; this answers "which adapter is better on this
data?" with a number. Every model (the base with its adapters switched off, then each adapter in
turn, all on one base loaded once) scores every record's answer with one forward pass: the mean
negative log-likelihood of the answer tokens given the prompt, counted exactly as training's loss
counts them (same template, ``seq_len`` and answer-only labels). Lower is better; perplexity is
``exp`` of the token-weighted mean.

Scores on records an adapter trained on say how well it memorised, not how well it does. So for
every adapter that came from a run, the run's train split is rebuilt as the run built it (its
dataset, template, ``seq_len``, ``eval_split`` and seed), and the headline figures are over the
records no compared adapter trained on ("held out"). The same figures over all records are kept.

A few records where the models disagree most (the largest spread of answer loss) are then
answered greedily by every model, next to the record's own answer, to read.

Adapters of different types (LoRA and IA3, say) can't sit on one PEFT model together; they are
loaded a type at a time, the base staying loaded.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import ConfigError, DataError, StudioError

DEFAULT_SEQ_LEN = 512
SAMPLE_WIDTH = 90


@dataclass
class ModelScore:
    """One model's figures. ``mean_loss``/``perplexity`` are over the held-out records (all
    records when none is held out); ``*_all`` over every record scored."""

    name: str
    path: str | None
    mean_loss: float | None
    perplexity: float | None
    mean_loss_all: float
    perplexity_all: float
    best_on: int = 0            # held-out records where this model's loss is the lowest
    trained_on: int = 0         # scored records in this adapter's training split
    train_split_known: bool = True
    answered: int = 0           # held-out records it answered for exact/f1 (``answer=``)
    exact: float | None = None  # share of those answers that match the reference (answer_matches)
    f1: float | None = None     # mean token F1 of those answers against the reference (token_f1)

    def vs_base(self, base: ModelScore) -> float | None:
        """Relative change of the headline loss against the base's (-0.4 = 40% lower); over every
        record when none is held out."""
        mine, theirs = ((self.mean_loss, base.mean_loss) if self.mean_loss is not None
                        else (self.mean_loss_all, base.mean_loss_all))
        if mine is None or not theirs or not math.isfinite(mine) or not math.isfinite(theirs):
            return None
        return mine / theirs - 1.0


@dataclass
class RecordScores:
    """One record's answer loss under each model (by name)."""

    record: int                 # 1-based, as the editor's rows
    line: int | None
    instruction: str
    tokens: int                 # answer tokens scored
    losses: dict[str, float]
    trained_by: list[str] = field(default_factory=list)  # adapters whose train split holds it
    truncated: bool = False

    @property
    def held_out(self) -> bool:
        return not self.trained_by

    @property
    def spread(self) -> float:
        finite = [v for v in self.losses.values() if math.isfinite(v)]
        return max(finite) - min(finite) if len(finite) > 1 else 0.0


@dataclass
class Sample:
    """Greedy answers of every model to one record, beside the record's own answer."""

    record: int
    prompt: str
    reference: str
    answers: dict[str, str]
    losses: dict[str, float]


@dataclass
class Comparison:
    base: str
    dataset: str
    device: str
    load_in: str
    template: str
    seq_len: int
    seconds: float
    models: list[ModelScore]
    records: list[RecordScores]
    samples: list[Sample] = field(default_factory=list)
    records_in_file: int = 0
    skipped: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    sampled_from: int = 0       # usable records a limited sample was drawn from; 0 when all were scored

    @property
    def held_out(self) -> int:
        return sum(1 for r in self.records if r.held_out)

    def model(self, name: str) -> ModelScore:
        return next(m for m in self.models if m.name == name)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["held_out"] = self.held_out
        d["schema_version"] = 1
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Comparison:
        data = {k: v for k, v in data.items() if k not in ("held_out", "schema_version")}
        if "sampled_from" not in data:
            # Kept before the sample had its own field: its note ended in the CLI's flag, which the
            # GUI must not show; each surface now says how to score all in its own words.
            notes = []
            for note in data.get("notes", []):
                found = _OLD_SAMPLE_NOTE.match(note)
                if found:
                    data["sampled_from"] = int(found["usable"])
                    note = found["note"]
                notes.append(note)
            data["notes"] = notes
        data["models"] = [ModelScore(**m) for m in data.get("models", [])]
        data["records"] = [RecordScores(**r) for r in data.get("records", [])]
        data["samples"] = [Sample(**s) for s in data.get("samples", [])]
        return cls(**data)


_OLD_SAMPLE_NOTE = re.compile(r"(?P<note>scored (?:a random )?\d+ of the (?P<usable>\d+) usable records .*); "
                              r"give limit 0 for all$", re.DOTALL)


def format_change(v: float | None) -> str:
    """A relative change as the "vs base" column prints it, in the GUI and the CLI alike.

    Whole percents from 10% on; one decimal below, so a 0.45% drop reads "-0.5%", not "-0%".
    A change too small for one decimal still shows its direction ("-<0.1%"); "±0.0%" is kept
    for no change at all.

    Args:
        v: The change as a fraction (-0.4 = 40% lower); None when there is nothing to compare.

    Returns:
        The signed percentage, or "–" for None or a non-finite value.
    """
    if v is None or not math.isfinite(v):
        return "–"
    pct = v * 100
    if abs(pct) >= 9.95:  # would print "10.0%" with a decimal
        return f"{pct:+.0f}%"
    if round(pct, 1) != 0:
        return f"{pct:+.1f}%"
    if pct == 0:
        return "±0.0%"
    return f"{'-' if pct < 0 else '+'}<0.1%"


# Scripts written without spaces count a character as a word (Chinese, Japanese, Korean, Thai).
_WORD = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\u0e00-\u0e7f]|[^\W_]+")


def _normal_text(text: str) -> str:
    return " ".join(text.casefold().split()).rstrip(".。!！")


def _json_value(text: str) -> Any:
    text = text.strip()
    if not text.startswith(("{", "[")):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def answer_matches(answer: str, reference: str) -> bool:
    """Whether a generated answer says exactly what the reference says.

    Two JSON objects or arrays match when they parse to equal values (key order and spacing
    don't count); other answers match when equal after case folding, collapsing whitespace
    and dropping a final full stop. Meant for short answers (labels, extractions, figures),
    where it is the accuracy; for free text read the F1 (:func:`token_f1`).
    """
    a, r = _json_value(answer), _json_value(reference)
    if r is not None:
        return a is not None and a == r
    return _normal_text(answer) == _normal_text(reference)


def token_f1(answer: str, reference: str) -> float:
    """SQuAD's token F1 of an answer against the reference: words (and single CJK/Thai
    characters) after case folding, counted with multiplicity. 1.0 when both are empty."""
    from collections import Counter

    a, r = _WORD.findall(answer.casefold()), _WORD.findall(reference.casefold())
    if not a or not r:
        return float(a == r)
    same = sum((Counter(a) & Counter(r)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(a), same / len(r)
    return 2 * precision * recall / (precision + recall)


def _answer_split(messages: list[dict[str, str]]) -> tuple[list[dict[str, str]], str]:
    """The turns before the last answer, and that answer."""
    last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=len(messages))
    reference = messages[last]["content"] if last < len(messages) else ""
    return messages[:last], reference


def _train_digests(name: str, run_dir: str | Path | None, tokenizer: Any
                   ) -> tuple[set[str] | None, str | None, dict[str, Any]]:
    """The digests of the records a run trained on (its adapter's, or its model's), rebuilt as
    the run split them.

    Returns ``(digests or None when unknown, a note, the run's config as a dict)``.
    """
    from engine.audit import record_digest
    from engine.config import RunConfig
    from engine.data import hub
    from engine.data.formats import open_dataset
    from engine.data.split import train_eval_split
    from engine.data.tokenize import tokenize_records
    from engine.paths import demo_dataset_path, tokenized_cache_dir

    if not run_dir or not (Path(run_dir) / "run.yaml").exists():
        return None, (f"{name} is not from a run: which records it trained on is unknown, "
                      "so it is scored on all of them"), {}
    try:
        cfg = RunConfig.load(Path(run_dir) / "run.yaml")
    except StudioError as e:
        return None, f"{name}: its run.yaml doesn't load ({e.message}); its training records are unknown", {}
    data = demo_dataset_path() if cfg.dataset == "demo" else Path(cfg.dataset)
    from_hub = hub.parse_ref(cfg.dataset) is not None
    if not from_hub and not data.is_file():
        return None, (f"{name}: its run's dataset '{data}' is gone, so which records it trained on is "
                      "unknown"), cfg.to_dict()
    try:
        ds = open_dataset(cfg.dataset, cfg.dataset_format)
    except DataError:
        if not from_hub:
            raise
        return None, (f"{name}: its run's dataset '{cfg.dataset}' is no longer in the Hugging Face cache, so which "
                      "records it trained on is unknown"), cfg.to_dict()
    good = [r for r in ds.records if not r.broken]
    rows, stats = tokenize_records(good, tokenizer, cfg.template, cfg.seq_len, cfg.loss_on,
                                   cache_dir=tokenized_cache_dir())  # the run's own drops
    train_idx, _ = train_eval_split(len(rows), cfg.eval_split, cfg.seed)
    return {record_digest(good[stats.sources[i]].messages()) for i in train_idx}, None, cfg.to_dict()


@dataclass
class _Item:
    """One compared model besides the base: a PEFT adapter on the base, or a whole model
    (a full or freeze run's ``final/``, or a model folder)."""

    kind: str                   # "adapter" or "model"
    folder: Path
    run_dir: Path | None
    label: str
    card: Any = None            # the AdapterCard of an adapter
    name: str = ""              # its column name, once known


def _resolve_item(ref: str | Path) -> _Item:
    """An adapter (:func:`engine.adapters.resolve_adapter`), else a whole model: a full or freeze
    run (its folder or name) with ``final/config.json``, or a model folder.

    Raises:
        ModelError: neither; the adapter lookup's message, which lists the known adapters.
    """
    from engine.adapters import read_card, resolve_adapter
    from engine.errors import ModelError
    from engine.runs import find_run

    try:
        folder = resolve_adapter(ref)
    except ModelError as e:
        run = find_run(ref)
        if run is not None and (run / "final" / "config.json").exists():
            return _Item("model", (run / "final").resolve(), run, run.name)
        if run is not None and not (run / "final").exists():
            raise  # the run has no result yet: the error names its newest checkpoint
        path = Path(str(ref)).expanduser()
        if (path / "config.json").exists():
            # A run's final/ or one of its checkpoints: the run records the base it trained from.
            inside = path.name == "final" or path.name.startswith("checkpoint-")
            run = path.parent if inside and find_run(path.parent) is not None else None
            label = path.name if run is None else run.name if path.name == "final" else f"{run.name}/{path.name}"
            return _Item("model", path.resolve(), run, label)
        raise ModelError(e.message + "; nor a full/freeze run or a model folder (with config.json)",
                         hint=e.hint) from None
    card = read_card(folder)
    return _Item("adapter", folder, Path(card.run_dir) if card.run_dir else None, card.name, card)


def _token_mean(pairs: list[tuple[float, int]]) -> float:
    tokens = sum(n for _, n in pairs)
    return sum(loss * n for loss, n in pairs) / tokens if tokens else float("nan")


def _ppl(loss: float | None) -> float | None:
    if loss is None or not math.isfinite(loss):
        return None
    return math.exp(loss) if loss < 700 else float("inf")


class _Lineup:
    """Puts each compared model on the device in turn, one at a time where it must be.

    The base is loaded once; the adapters go on it one PEFT type at a time (PEFT holds one
    type on a model at a time); whole models (full or freeze runs) come last, each loaded
    alone after the base is released. :meth:`each` walks them in that order and is walked
    twice (scoring, then answering): a group already on the base is not loaded again, and a
    base released for the whole models is loaded again for the second walk.
    """

    def __init__(self, open_model: Callable[[str | Path], Any], base_ref: str | Path, items: list[_Item]):
        self.open_model = open_model
        self.base_ref = base_ref
        self.items = items
        self.gen = open_model(base_ref)
        self.reopened = False
        self.groups: list[list[int]] = []
        for k, item in enumerate(items):
            if item.kind != "adapter":
                continue
            same = next((g for g in self.groups if items[g[0]].card.peft_type == item.card.peft_type), None)
            if same is None:
                self.groups.append([k])
            else:
                same.append(k)
        self.wholes = [i for i in items if i.kind == "model"]
        self._loaded: int | None = None  # the group on the base now

    def each(self) -> Iterator[tuple[str, Any, str]]:
        """``(column name, generator, adapter to answer as)`` for the base, each adapter, each whole model."""
        from engine.generate import BASE

        if self.gen is None:
            self.gen = self.open_model(self.base_ref)
            self.reopened = True
        yield BASE, self.gen, BASE
        for g, group in enumerate(self.groups):
            if self._loaded != g:
                self._unload_all(self.gen)
                for k in group:
                    self.items[k].name = self.gen.load_adapter(self.items[k].folder, self.items[k].name or None)
                self._loaded = g
            for k in group:
                yield self.items[k].name, self.gen, self.items[k].name
        if not self.wholes:
            return
        taken = {BASE} | {i.name for i in self.items if i.kind == "adapter"}
        for item in self.wholes:
            if not item.name:
                item.name = _unique(re.sub(r"[^A-Za-z0-9_-]+", "-", item.label).strip("-") or "model", taken)
            taken.add(item.name)
        self.release(self.gen)  # one model at a time on the device
        self.gen, self._loaded = None, None
        for item in self.wholes:
            whole = self.open_model(item.folder)
            yield item.name, whole, BASE
            self.release(whole)

    def _unload_all(self, g: Any) -> None:
        for name in list(g.adapters):
            g.unload(name)

    def release(self, g: Any) -> None:
        if g is None:
            return
        import gc

        self._unload_all(g)
        g.model = g.peft = None
        gc.collect()
        if g.env.cuda:
            import torch

            torch.cuda.empty_cache()


def compare_adapters(adapters: list[str | Path], dataset: str | Path, *, base: str | None = None,
                     dataset_format: str = "auto", template: str | None = None, seq_len: int | None = None,
                     limit: int | None = None, samples: int = 3, answer: int = 0, max_new_tokens: int = 128,
                     load_in: str = "auto", device: str = "auto", batch_size: int = 4, seed: int = 0,
                     trust_remote_code: bool = False, allow_pickle: bool = False,
                     progress: Callable[[int, int], None] | None = None) -> Comparison:
    """Score the base and each adapter (or whole model) on the records of ``dataset``; answer a few with each.

    Args:
        adapters: Adapter folders, run folders or names (:func:`engine.adapters.resolve_adapter`);
            a full or freeze run (or a model folder) is compared as a whole model, loaded on
            its own after the base and the adapters. It must use the base's tokenizer.
        dataset: A dataset file in any format the editor reads; ``demo`` is the embedded one.
        base: The base model (or a run, as ``generate --base`` takes it); default: the one the
            first adapter (or run) trained from.
        dataset_format: How to read the file (default: detect).
        template: ``auto``, ``chat`` or ``alpaca``; default: the runs' (``auto`` if they differ).
        seq_len: Longest sequence scored; default: the largest of the runs' (else 512).
        limit: Score ``limit`` records, those no compared model trained on first, chosen at random
            (seeded by ``seed``); None or 0 = all.
        samples: How many records every model answers greedily (0 = none), shown beside the reference.
        answer: How many held-out records every model answers greedily to score its answers
            against the references (exact match, token F1); -1 = every held-out record, 0 = none.
            The records are the first held-out ones in file order; the samples' answers are reused.
        max_new_tokens: Length limit of those answers.
        load_in, device, trust_remote_code, allow_pickle: As for :class:`engine.generate.Generator`.
        batch_size: Records per forward pass (halved on out-of-memory).
        progress: Called with (units done, units in all); a unit is one record scored or answered
            by one model.

    Raises:
        ConfigError: nothing to compare, a bad limit or template.
        DataError: the dataset file can't be read.
        ModelError: an adapter doesn't load or doesn't fit the base; a whole model's tokenizer
            differs from the base's.
        StudioError: nothing in the file to score.
    """

    from engine.adapters import read_card
    from engine.audit import first_user_turn, record_digest, rounded_loss, score_rows
    from engine.data.formats import open_dataset
    from engine.data.templates import check_template_name
    from engine.data.tokenize import describe_problems, tokenize_records
    from engine.errors import ModelError
    from engine.generate import BASE, Generator
    from engine.models import load_tokenizer
    from engine.paths import demo_dataset_path, tokenized_cache_dir
    from engine.precision import compute_dtype
    from engine.runs import read_run_config

    started = time.perf_counter()
    if not adapters:
        raise ConfigError("give at least one adapter (or run) to compare with the base", key="adapter")
    if limit is not None and limit < 0:
        raise ConfigError(f"limit must be 0 (all records) or more; got {limit}", key="limit")
    if template is not None:
        check_template_name(template)
    items = [_resolve_item(a) for a in adapters]
    if len({i.folder for i in items}) != len(items):
        raise ConfigError("the same adapter is given twice", key="adapter")
    for item in items:
        if item.card is not None and not item.card.loadable:
            raise StudioError(f"adapter '{item.label}' can't be compared: {item.card.problem}")
        if item.card is not None and item.card.extra.get("added_tokens"):
            # Every model is scored on the same tokens, the base tokenizer's, where the markers this
            # run made whole tokens are split: its losses would measure text it never read.
            raise StudioError(f"adapter '{item.label}' can't be compared on losses: its run added tokens "
                              f"({', '.join(item.card.extra['added_tokens'])}), and the comparison scores every "
                              "model on the base tokenizer's tokens, which split them",
                              hint="Try its answers in the Adapters area's playground (it uses the run's own "
                              "tokenizer), or `finetune-studio runs audit RUN` for its losses on its data.")
    if base:
        from engine.generate import base_from_run

        # A run as the base, as `generate --base RUN` takes it: its trained model (full, freeze),
        # or its base model with its adapter among those compared.
        base, run_adapter, _ = base_from_run(base)
        if run_adapter is not None and run_adapter.resolve() not in {i.folder for i in items}:
            card = read_card(run_adapter)
            items.insert(0, _Item("adapter", run_adapter.resolve(), Path(card.run_dir) if card.run_dir else None,
                                  card.name, card))
    base_ref = base
    if not base_ref:
        first = items[0]
        base_ref = (first.card.base_model if first.card is not None
                    else read_run_config(first.run_dir).get("model") if first.run_dir is not None else None)
    if not base_ref:
        raise ConfigError(f"'{items[0].label}' doesn't record its base model: give --base", key="base")

    data_path = demo_dataset_path() if str(dataset) == "demo" else Path(dataset)
    ds = open_dataset(dataset, dataset_format)  # a file, or a dataset in the Hugging Face cache
    good = [r for r in ds.records if not r.broken]
    numbers = [i + 1 for i, r in enumerate(ds.records) if not r.broken]
    if not good:
        first_bad = next((r for r in ds.records if r.broken), None)
        where = f"{data_path}:{first_bad.line}: {first_bad.error}" if first_bad is not None else str(data_path)
        raise DataError(f"no record of {data_path} can be read" + (f" ({len(ds.records)} broken; the first at "
                        f"{where})" if first_bad is not None else ": the file holds no records"),
                        hint="Check it with `finetune-studio data check FILE`; a dataset is JSON, JSONL, CSV or "
                        "Parquet records.")
    notes: list[str] = []
    if len(good) < len(ds.records):
        notes.append(f"{len(ds.records) - len(good)} broken record(s) skipped (see `finetune-studio data check`)")

    def open_model(ref: str | Path) -> Generator:
        return Generator(str(ref), load_in=load_in, device=device, trust_remote_code=trust_remote_code,
                         allow_pickle=allow_pickle)

    lineup = _Lineup(open_model, base_ref, items)
    gen = lineup.gen
    tokenizer = gen.tokenizer
    resolved_load_in = gen.load_in  # "auto" made concrete: bf16/fp16 on a GPU, fp32 on the CPU
    for item in lineup.wholes:
        theirs = load_tokenizer(str(item.folder), trust_remote_code=trust_remote_code)
        if theirs.get_vocab() != tokenizer.get_vocab():
            raise ModelError(f"'{item.label}' has another tokenizer than the base '{base_ref}': losses per token "
                             "would not compare", hint="Compare models trained from the same base.")

    # What each one trained on, and the template and length the runs used.
    trained: dict[int, set[str] | None] = {}
    run_cfgs: list[dict[str, Any]] = []
    for k, item in enumerate(items):
        digests, note, run_cfg = _train_digests(item.label, item.run_dir, tokenizer)
        trained[k] = digests
        if note:
            notes.append(note)
        if run_cfg:
            run_cfgs.append(run_cfg)
    run_templates = sorted({c.get("template", "auto") for c in run_cfgs})
    if template is None:
        template = run_templates[0] if len(run_templates) == 1 else "auto"
    if run_templates and run_templates != [template]:
        notes.append(f"the runs used template {', '.join(run_templates)}; scored with {template}")
    if seq_len is None:
        seq_len = max((int(c.get("seq_len", DEFAULT_SEQ_LEN)) for c in run_cfgs), default=DEFAULT_SEQ_LEN)

    rows, stats = tokenize_records(good, tokenizer, template, seq_len,
                                   cache_dir=tokenized_cache_dir())
    if not rows:
        raise StudioError(f"nothing to score in {data_path}: every record was dropped",
                          hint=describe_problems(stats.problems) or None)
    all_digests = [record_digest(good[src].messages()) for src in stats.sources]
    chosen = list(range(len(rows)))
    sampled_from = 0
    if limit and limit < len(rows):
        # The headline counts only records no compared model trained on: a limited sample takes
        # those first, so a small limit still measures something.
        unseen = [i for i in chosen if not any(t is not None and all_digests[i] in t for t in trained.values())]
        rng = random.Random(seed)
        first = rng.sample(unseen, min(limit, len(unseen)))
        taken = set(first)
        rest = rng.sample([i for i in chosen if i not in taken], limit - len(first))
        chosen = sorted(first + rest)
        # How to score them all is said by each surface in its own words (--limit 0, Records: all).
        sampled_from = len(rows)
        notes.append(f"scored a random {limit} of the {len(rows)} usable records (seed {seed})"
                     if len(unseen) in (0, len(rows)) else
                     f"scored {limit} of the {len(rows)} usable records (seed {seed}): {len(first)} of the "
                     f"{len(unseen)} no compared model trained on, then {len(rest)} of the others")
    rows = [rows[i] for i in chosen]
    sources = [stats.sources[i] for i in chosen]
    digests = [all_digests[i] for i in chosen]
    cut = {j for j, i in enumerate(chosen) if i in stats.cut_rows}

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    dev = next(gen.model.parameters()).device
    autocast = compute_dtype(gen.cfg) if gen.cfg.mixed_precision in ("fp16", "bf16") else None
    n_models = 1 + len(items)
    total = len(rows) * n_models + min(samples, len(rows)) * n_models  # the answers are counted again once picked
    done = [0]

    def run_scores(model: Any, size: int) -> tuple[dict[int, tuple[float, int]], int]:
        base_done = done[0]

        def tick(d: int, _t: int) -> None:
            if progress is not None:
                progress(base_done + d, total)
        pairs, size = score_rows(model, rows, size, pad, dev, autocast, tick)
        done[0] = base_done + len(rows)
        return pairs, size

    size = max(1, batch_size)
    losses: dict[str, dict[int, tuple[float, int]]] = {}
    for name, g, as_ in lineup.each():
        with g.answering_as(as_) as model:
            losses[name], size = run_scores(model, size)
    if size < max(1, batch_size):
        notes.append(f"out of memory at batch size {batch_size}: scored {size} record(s) at a time")

    order = [BASE] + [i.name for i in items]
    records: list[RecordScores] = []
    for j, src in enumerate(sources):
        rec = good[src]
        by = [items[k].name for k in range(len(items)) if trained[k] is not None and digests[j] in trained[k]]
        records.append(RecordScores(record=numbers[src], line=getattr(rec, "line", None),
                                    instruction=first_user_turn(rec.messages(), SAMPLE_WIDTH),
                                    tokens=losses[BASE][j][1], losses={n: rounded_loss(losses[n][j][0]) for n in order},
                                    trained_by=by, truncated=j in cut))
    held = [j for j, r in enumerate(records) if r.held_out]
    if not held:
        notes.append("every record scored is in some compared model's training split: the figures say how well "
                     "each memorised them, not how it does on new data; compare on a held-out file "
                     "(`finetune-studio data split`)")

    models: list[ModelScore] = []
    for name in order:
        pairs = [losses[name][j] for j in range(len(rows))]
        mean_all = _token_mean(pairs)
        mean_held = _token_mean([pairs[j] for j in held]) if held else None
        k = next((k for k in range(len(items)) if items[k].name == name), None)
        models.append(ModelScore(
            name=name, path=str(items[k].folder) if k is not None else str(base_ref),
            mean_loss=round(mean_held, 5) if mean_held is not None else None,
            perplexity=_ppl(mean_held), mean_loss_all=round(mean_all, 5), perplexity_all=_ppl(mean_all) or float("inf"),
            trained_on=sum(1 for r in records if name in r.trained_by),
            train_split_known=k is None or trained[k] is not None))
    for j in held or range(len(records)):
        best = min(order, key=lambda n: records[j].losses[n])
        next(m for m in models if m.name == best).best_on += 1

    # Greedy answers where the models disagree most, and on the records whose answers are scored.
    picked: list[int] = []
    if samples > 0:
        pool = held or list(range(len(records)))
        picked = sorted(pool, key=lambda j: -records[j].spread)[:samples]
    matched = held if answer < 0 else held[:answer]
    if answer and not held:
        notes.append("no held-out record to answer: exact match and F1 need records no compared model trained on")
    wanted = sorted(set(picked) | set(matched))
    total = done[0] + len(wanted) * n_models  # fewer held-out records than asked for: fewer answers
    out_samples: list[Sample] = []
    if wanted:
        answers: dict[int, dict[str, str]] = {j: {} for j in wanted}
        conv = {j: _answer_split(good[sources[j]].messages()) for j in wanted}

        def answer_all(g: Generator, column: str, as_: str) -> None:
            nonlocal size
            before = done[0]

            def tick(n: int) -> None:
                done[0] = before + n
                if progress is not None:
                    progress(done[0], total)
            texts, size = g.generate_greedy_batch([conv[j][0] for j in wanted], as_, max_new_tokens=max_new_tokens,
                                                  template=template, batch_size=size, on_done=tick)
            for j, text in zip(wanted, texts, strict=True):
                answers[j][column] = text
        for name, g, as_ in lineup.each():
            answer_all(g, name, as_)
        if lineup.reopened:
            notes.append("the base was loaded a second time to answer, after the whole models were scored")
        if matched:
            for m in models:
                pairs = [(answers[j][m.name], conv[j][1]) for j in matched]
                m.answered = len(pairs)
                m.exact = round(sum(answer_matches(a, r) for a, r in pairs) / len(pairs), 4)
                m.f1 = round(sum(token_f1(a, r) for a, r in pairs) / len(pairs), 4)
            if any(len(tokenizer(conv[j][1])["input_ids"]) > max_new_tokens for j in matched):
                # "max new tokens": the GUI's label and the CLI's --max_new_tokens both read it.
                notes.append(f"some reference answers are longer than the max new tokens ({max_new_tokens}): "
                             "those answers are cut short, which lowers exact match and F1")
        for j in picked:
            out_samples.append(Sample(record=records[j].record, prompt=first_user_turn(conv[j][0], 400),
                                      reference=conv[j][1], answers={n: answers[j][n] for n in order},
                                      losses=records[j].losses))
    lineup.release(lineup.gen)
    skipped = [{"record": numbers[p["index"]], "line": p.get("line"), "message": p["message"]}
               for p in stats.problems]
    return Comparison(base=str(base_ref), dataset=str(data_path), device=str(dev),
                      load_in=resolved_load_in,
                      template=template, seq_len=seq_len, seconds=round(time.perf_counter() - started, 2),
                      models=models, records=records, samples=out_samples, records_in_file=len(ds.records),
                      skipped=skipped, notes=notes, sampled_from=sampled_from)


def _unique(name: str, taken: set[str]) -> str:
    out, n = name, 2
    while out in taken:
        out, n = f"{name}-{n}", n + 1
    return out


# ---------------------------------------------------------------------------- Text
def _num(v: float | None, digits: int = 3) -> str:
    if v is None:
        return "–"
    if not math.isfinite(v):
        return "inf"
    return f"{v:.{digits}f}" if v < 1e4 else f"{v:.3g}"


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{v:.0%}"


def format_comparison(c: Comparison, top: int = 10) -> str:
    """The table of models, the records that separate them, and the sampled answers."""
    base = c.models[0]
    lines = [f"{len(c.records)} records of {c.dataset} scored on {c.device} in {c.seconds:.1f} s "
             f"(template {c.template}, seq_len {c.seq_len})"]
    lines += [f"note: {n}" for n in c.notes]
    if c.sampled_from:
        lines.append(f"note: --limit 0 scores all {c.sampled_from} usable records")
    held = c.held_out
    scope = (f"over the {held} records no compared model trained on (the other {len(c.records) - held} are in "
             "a training split)" if held and held < len(c.records) else "over all records")
    lines.append("")
    lines.append(f"answer loss (lower is better) {scope}:")
    width = max(12, *(len(m.name) for m in c.models))
    lines.append(f"  {'model':<{width}}  {'loss':>8}  {'perplexity':>10}  {'vs base':>8}  {'best on':>7}  "
                 f"{'trained on':>10}")
    for m in c.models:
        vs = m.vs_base(base)
        trained = "–" if m is base else (str(m.trained_on) if m.train_split_known else "?")
        lines.append(f"  {m.name:<{width}}  {_num(m.mean_loss if held else m.mean_loss_all):>8}  "
                     f"{_num(m.perplexity if held else m.perplexity_all, 2):>10}  "
                     f"{'–' if m is base else format_change(vs):>8}  {m.best_on:>7}  {trained:>10}")
    if held and held < len(c.records):
        lines.append("  over all records: " + ", ".join(f"{m.name} {_num(m.mean_loss_all)}" for m in c.models))
    if base.answered:
        lines.append("")
        lines.append(f"greedy answers to {base.answered} held-out records against their references "
                     "(higher is better):")
        lines.append(f"  {'model':<{width}}  {'exact':>8}  {'F1':>8}")
        for m in c.models:
            lines.append(f"  {m.name:<{width}}  {_pct(m.exact):>8}  {_num(m.f1):>8}")
    if len(c.models) > 2:
        pool = [r for r in c.records if r.held_out] or c.records
        split = sorted(pool, key=lambda r: -r.spread)[:top]
        if split:
            lines.append("")
            lines.append("records where the models differ most:")
            for r in split:
                lo = min(r.losses, key=lambda n: r.losses[n])
                lines.append(f"  record {r.record}: best {lo} ({_num(r.losses[lo])}); "
                             + ", ".join(f"{n} {_num(v)}" for n, v in r.losses.items())
                             + f" | {r.instruction}")
    for s in c.samples:
        lines.append("")
        lines.append(f"=== record {s.record}: {s.prompt}")
        lines.append(f"--- reference: {s.reference}")
        for name, text in s.answers.items():
            lines.append(f"--- {name} (loss {_num(s.losses.get(name))}): {text}")
    if c.skipped:
        lines.append("")
        lines.append(f"{len(c.skipped)} record(s) not scored: "
                     + "; ".join(f"record {p['record']}: {p['message']}" for p in c.skipped[:3]))
    return "\n".join(lines)


def comparisons_dir() -> Path:
    """Where comparisons are kept: ``<data home>/comparisons/``, one JSON file each."""
    from engine.paths import data_home

    return data_home() / "comparisons"


def new_comparison_path() -> Path:
    """A fresh file name in :func:`comparisons_dir` (the time, made unique)."""
    folder = comparisons_dir()
    stem = time.strftime("%Y%m%d-%H%M%S")
    path, n = folder / f"{stem}.json", 2
    while path.exists():
        path, n = folder / f"{stem}-{n}.json", n + 1
    return path


def saved_comparisons(folder: Path | None = None) -> list[tuple[Path, Comparison]]:
    """The kept comparisons, newest first; unreadable files are skipped."""
    folder = folder or comparisons_dir()
    out = []
    for path in sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True) if folder.is_dir() else []:
        try:
            out.append((path, Comparison.from_dict(json.loads(path.read_text(encoding="utf-8")))))
        except (OSError, ValueError, TypeError, KeyError):
            continue
    return out


def describe_saved(path: Path, c: Comparison) -> str:
    """One line for a kept comparison: when, which models, on what, the winner."""
    held = c.held_out
    scored = [(m.mean_loss if held else m.mean_loss_all, m.name) for m in c.models]
    best = min((x for x in scored if x[0] is not None), default=(None, "?"))[1]
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(path.stat().st_mtime))
    return (f"{when} · {len(c.models) - 1} vs base on {Path(c.dataset).name} ({len(c.records):,} records) · "
            f"best: {best}")


def _answer_count(value: str | None) -> int:
    """``--answer``: a count, or ``all`` (-1)."""
    if value in (None, "", "0"):
        return 0
    if value == "all":
        return -1
    try:
        n = int(value)
    except ValueError:
        n = -2
    if n < 0:
        raise ConfigError(f"--answer takes a number of records or 'all'; got {value!r}", key="answer")
    return n


def cli_compare(args: argparse.Namespace) -> int:
    """``finetune-studio adapters compare ADAPTER... --dataset FILE [--base M] [--limit N] [--samples K]
    [--answer N|all] [--max_new_tokens N] [--seq-len N] [--template T] [--load_in L] [--device D] [--batch_size N]
    [--out FILE] [--json] [--progress]``. The result is also kept in :func:`comparisons_dir`
    (unless ``--out`` names another file)."""
    from engine.adapters import quiet_loading
    from engine.cli import progress_printer
    from engine.files import atomic_write_text

    if args.out and not getattr(args, "force", False) and Path(args.out).exists():
        # Before the base loads: minutes of work must not end by replacing someone's file.
        raise StudioError(f"--out '{args.out}' already exists" + (" (a folder: give a file name)"
                                                                   if Path(args.out).is_dir() else ""),
                          hint="Give another file, or --force to replace it.")
    quiet_loading()
    progress = progress_printer(args)

    comparison = compare_adapters(
        args.adapter, args.dataset, base=args.base, dataset_format=args.format, template=args.template,
        seq_len=args.seq_len, limit=args.limit, samples=args.samples, answer=_answer_count(args.answer),
        max_new_tokens=args.max_new_tokens,
        load_in=args.load_in, device=args.device, batch_size=args.batch_size, seed=args.seed,
        trust_remote_code=args.trust_remote_code, allow_pickle=args.allow_pickle, progress=progress)
    text = json.dumps(comparison.to_dict(), ensure_ascii=False)
    out = Path(args.out) if args.out else new_comparison_path()
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, text + "\n")
    if args.json:
        print(text)
    else:
        print(format_comparison(comparison))
        print(f"\nall scores: {out}")
    return 0


def cli_comparisons(args: argparse.Namespace) -> int:
    """``finetune-studio adapters comparisons [--show N|FILE] [--json]``: the kept comparisons,
    newest first, or one of them in full (``N`` counts from 1 in that list)."""
    from engine.errors import StudioError

    kept = saved_comparisons()
    show = getattr(args, "show", None)
    if show is None:
        if args.json:
            print(json.dumps([{"path": str(p), "line": describe_saved(p, c)} for p, c in kept], ensure_ascii=False))
        elif not kept:
            print(f"no comparisons yet in {comparisons_dir()}; `finetune-studio adapters compare` makes one")
        else:
            for i, (p, c) in enumerate(kept, start=1):
                print(f"{i:>3}  {describe_saved(p, c)}  {p}")
        return 0
    if str(show).isdigit():
        n = int(show)
        if not 1 <= n <= len(kept):
            raise StudioError(f"--show {n}: there are {len(kept)} kept comparison(s)",
                              hint="`finetune-studio adapters comparisons` lists them, newest first.")
        path, comparison = kept[n - 1]
    else:
        path = Path(show)
        try:
            comparison = Comparison.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except OSError as e:
            raise StudioError(f"can't read {path}: {e.strerror or e}") from None
        except (ValueError, TypeError, KeyError) as e:
            raise StudioError(f"{path} is not a comparison `adapters compare` wrote: {e}") from None
    if args.json:
        print(json.dumps(comparison.to_dict(), ensure_ascii=False))
    else:
        print(format_comparison(comparison))
        print(f"\nfrom {path}")
    return 0
