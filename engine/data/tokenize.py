"""Records into training tokens: chat template (or Alpaca prompt), answer-only labels.

The loss is only on the assistant's tokens. For each assistant turn we render the
conversation up to it with ``add_generation_prompt=True`` (the prompt) and with the turn
itself (the full text), check that the prompt's tokens are a prefix of the full
sequence's, and train on the difference. This is what LLaMA-Factory
(``processor/supervised.py``) and Axolotl (``train_on_inputs: false``) do; the
``{% generation %}`` mask of ``apply_chat_template`` would be simpler, but most hub
templates lack those markers.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.data.records import RECORD_AT, turn_trains
from engine.data.templates import Rendering, alpaca_text, resolve
from engine.errors import DataError

IGNORE_INDEX = -100  # the label value torch's cross_entropy skips


def uses_chat_template(tokenizer: Any, template: str | Rendering) -> bool:
    """Whether ``template`` renders with a chat template (the tokenizer's, a named one or a file)
    rather than the Alpaca prompt."""
    return not resolve(tokenizer, template).alpaca


def render_prompt(tokenizer: Any, messages: list[dict], template: str | Rendering = "auto") -> list[int]:
    """Token ids of a conversation followed by the prompt for the model's next answer.

    The same rendering training used (a chat template, or the Alpaca format for base models),
    so generation sees the prompt the adapter was trained on.
    """
    return list(_render_ids(tokenizer, messages, len(messages), True, resolve(tokenizer, template)))


REFUSES = "refuses this conversation"
"""In the message of a conversation a chat template refuses (see :func:`apply_template`)."""


def apply_template(tokenizer: Any, messages: list[dict], rendering: Rendering, **kwargs: Any) -> Any:
    """``tokenizer.apply_chat_template`` with the rendering's chat template (a named format's or a
    file's; None: the tokenizer's own).

    Raises:
        DataError: the template refuses the conversation (its ``raise_exception``: Gemma's on a
            system turn or roles out of order), with the template's words.
    """
    from jinja2 import TemplateError

    if rendering.jinja:
        kwargs["chat_template"] = rendering.jinja
    try:
        return tokenizer.apply_chat_template(messages, **kwargs)
    except TemplateError as e:
        what = ("the model's chat template" if rendering.name in ("chat", "saved")
                else f"the chat template {rendering.name}")
        raise DataError(f"{what} {REFUSES}: {e}") from None


def _render_ids(tokenizer: Any, messages: list[dict], upto: int, add_generation_prompt: bool,
                rendering: Rendering) -> list[int]:
    if not rendering.alpaca:
        ids = apply_template(tokenizer, messages[:upto], rendering, tokenize=True,
                             add_generation_prompt=add_generation_prompt, return_dict=False)
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        return list(ids)
    text = alpaca_text(messages[:upto], add_generation_prompt, tokenizer.eos_token or "")
    return tokenizer(text, add_special_tokens=True)["input_ids"]


LOSS_ON = ("answers", "last_answer", "all")
"""Which tokens a run trains on: every answer (the default), only the last one, or every token."""


def render_record(messages: list[dict], tokenizer: Any, template: str | Rendering = "auto", *,
                  skipped: list[int] | None = None, loss_on: str = "answers") -> dict[str, list[int]]:
    """Tokenize one conversation; labels are -100 everywhere but on assistant turns.

    Each assistant turn is located as the tokens between the conversation rendered up to it
    (with the generation prompt) and rendered through it, both of which must be prefixes of the
    whole rendering. Some templates render an earlier turn differently once the conversation goes
    on (Qwen3's gives the last answer an empty think block and drops it from answers in the
    history); such a turn can't be located, so it is not trained (its index goes in ``skipped``)
    while the turns that can be located still are.

    An assistant turn's ``weight`` (Axolotl's per-turn key, see
    :func:`engine.data.records.turn_trains`) of 0 or false makes it context: it never trains,
    whatever ``loss_on``, and ``loss_on`` picks among the other answers. The weight never reaches
    the chat template.

    Args:
        messages: ``[{"role": "system"|"user"|"assistant", "content": str}, ...]``; an assistant
            turn may carry ``"weight"`` (0, 1, true or false; None or absent: trained).
        tokenizer: a Hugging Face tokenizer.
        template: a run config's ``template`` (see :mod:`engine.data.templates`) or its
            :class:`Rendering`.
        skipped: receives the indices of assistant turns that couldn't be located.
        loss_on: ``answers`` (every assistant turn), ``last_answer`` (only the final one whose
            weight isn't 0: the earlier answers are context, as LLaMA-Factory's ``mask_history``) or
            ``all`` (every token, prompts included, as ``train_on_prompt`` / Axolotl's
            ``train_on_inputs``; a weight-0 answer still doesn't train, as under Axolotl's).

    An empty or whitespace-only answer never trains either (it would teach the model to stop at
    once): it is context as a weight-0 one, and a record whose answers are all empty is refused,
    under any ``loss_on``.

    Returns:
        ``{"input_ids": [...], "labels": [...]}`` of equal length.

    Raises:
        DataError: no assistant turn; every one empty; every one has weight 0 or is empty (unless
            ``loss_on`` is ``all``); a weight that isn't 0, 1, true or false; none of the answers to
            train can be located in the rendering (then answer-only masking would be wrong); or,
            under ``all``, a weight-0 or empty answer can't be located (so it can't be left out).
    """
    if loss_on not in LOSS_ON:
        raise DataError(f"loss_on must be one of {', '.join(LOSS_ON)}, got {loss_on!r}")
    chat = resolve(tokenizer, template)
    answers = [i for i, m in enumerate(messages) if m.get("role") == "assistant"]
    if not answers:
        raise DataError("the record has no answer (assistant/output) to train on")
    trains = [i for i in answers if turn_trains(messages[i].get("weight"), f"message {i + 1} (assistant)")]
    # An empty or whitespace-only answer is no answer: training on it would teach the model to stop
    # at once. It is context, as a weight-0 one; a record whose answers are all empty can't train.
    empty = [i for i in answers if not str(messages[i].get("content") or "").strip()]
    if len(empty) == len(answers):
        what = "the answer is" if len(answers) == 1 else f"all {len(answers)} answers are"
        raise DataError(f"{what} empty, so the record has nothing to train on",
                        hint="Write the answer, or delete the record (the Dataset area's Checks list empty fields).")
    trains = [i for i in trains if i not in empty]
    context = [i for i in answers if i not in trains]
    if any("weight" in m for m in messages):  # the template sees role and content, as without weights
        messages = [{k: v for k, v in m.items() if k != "weight"} for m in messages]
    full = _render_ids(tokenizer, messages, len(messages), False, chat)
    if loss_on == "all":
        labels = list(full)
        for i in context:
            span = _answer_span(tokenizer, messages, i, full, chat)
            if span is None:
                why = "is empty" if i in empty else "has weight 0"
                raise DataError(f"message {i + 1} (assistant) {why}, but the chat template renders it "
                                "differently once the conversation goes on, so its tokens can't be left out of "
                                "loss_on all", hint="Use loss_on: answers, or template: alpaca.")
            labels[span[0]: span[1]] = [IGNORE_INDEX] * (span[1] - span[0])
        return {"input_ids": full, "labels": labels}
    if not trains:
        said = f"{len(answers)} answer{'s' if len(answers) != 1 else ''}, all context"
        if empty:
            said += f"; {len(empty)} of them empty"
        raise DataError(f"every answer of the record has weight 0 or is empty, so it has nothing to train on ({said})"
                        if empty else
                        f"every answer of the record has weight 0, so it has nothing to train on ({said})",
                        hint="Give the answers to learn weight 1 (or no weight), or leave the record out.")
    wanted = trains[-1:] if loss_on == "last_answer" else trains
    labels = [IGNORE_INDEX] * len(full)
    missed: list[int] = []
    for i in wanted:
        span = _answer_span(tokenizer, messages, i, full, chat)
        if span is None:
            missed.append(i)
            continue
        labels[span[0]: span[1]] = full[span[0]: span[1]]
    if len(missed) == len(wanted):
        raise DataError("the template's rendering of the prompt is not a prefix of the full "
                        "conversation, so the answer tokens can't be located",
                        hint="Use template: alpaca, or a tokenizer whose chat template renders "
                        "turns independently.")
    if skipped is not None:
        skipped.extend(missed)
    return {"input_ids": full, "labels": labels}


def _answer_span(tokenizer: Any, messages: list[dict], i: int, full: list[int],
                 chat: Rendering) -> tuple[int, int] | None:
    """Where assistant turn ``i`` lies in ``full``, the whole conversation's tokens, or None where the
    template renders it differently once the conversation goes on."""
    prompt = _render_ids(tokenizer, messages, i, True, chat)
    upto = _render_ids(tokenizer, messages, i + 1, False, chat)
    if full[: len(prompt)] != prompt or full[: len(upto)] != upto:
        return None
    return len(prompt), len(upto)


@dataclass
class TokenizeStats:
    """What happened to the records on their way to tokens, for the started event and the card."""

    records: int = 0
    truncated: int = 0
    dropped: int = 0          # nothing left to train on after truncation, or no answer
    tokens: int = 0
    trained_tokens: int = 0
    longest: int = 0
    problems: list[dict] = field(default_factory=list)  # every dropped record: {index, line, message}
    partial: list[dict] = field(default_factory=list)   # records with answers the template hides: {index, line, turns}
    sources: list[int] = field(default_factory=list)   # for each kept row, its record's index
    cut_rows: set[int] = field(default_factory=set)    # the kept rows that were truncated

    def to_dict(self) -> dict[str, Any]:
        return {"records": self.records, "truncated": self.truncated, "dropped": self.dropped,
                "tokens": self.tokens, "trained_tokens": self.trained_tokens, "longest": self.longest,
                "problems": self.problems[:20], "partial": len(self.partial)}


PARALLEL_FROM = 2000
"""Records from which tokenizing is spread over processes: below it, starting them costs more."""
# Bump when render_record's output for the same input changes. 2: an answer's weight 0 is not
# trained (messages now carry it; before, it trained). 3: an empty or whitespace-only answer is no
# answer (before, its end-of-turn tokens trained).
CACHE_VERSION = 3
CACHE_KEEP = 16    # tokenized datasets kept in the cache (the newest)


def tokenize_records(records: list[Any], tokenizer: Any, template: str | Rendering, seq_len: int,
                     loss_on: str = "answers", *, num_proc: int | None = None,
                     cache_dir: str | os.PathLike | None = None) -> tuple[list[dict[str, list[int]]], TokenizeStats]:
    """Tokenize engine records (with ``.messages()`` and ``.line``) for training.

    Longer sequences are truncated to ``seq_len`` and counted; records with nothing left to
    train on are dropped and listed, never silently. ``loss_on`` as in :func:`render_record`; the
    records' messages carry each answer's ``weight`` (``Record.messages(weights=True)``), so a
    weight-0 answer is context, and a bad weight or every answer at weight 0 leaves the record out.

    Large datasets are rendered with ``datasets.Dataset.map`` over ``num_proc`` processes
    (default: half the CPUs, at most 8; from :data:`PARALLEL_FROM` records). With
    ``cache_dir`` the rendered tokens are kept there, keyed by the records, the tokenizer,
    the template and ``loss_on``, so a resumed or repeated run skips the work.
    """
    stats = TokenizeStats()
    rows = []
    template = resolve(tokenizer, template)  # once: a template file is read and checked here
    if num_proc is None:
        num_proc = max(1, min(8, (os.cpu_count() or 2) // 2))
    convs: list[list[dict] | None] = []
    unreadable: dict[int, str] = {}  # a field of the wrong type, an unknown role...: left out and listed
    for index, rec in enumerate(records):
        try:
            convs.append(rec.messages(weights=True))  # an answer's weight decides whether it trains
        except DataError as e:
            convs.append(None)
            unreadable[index] = RECORD_AT.sub("", e.message, count=1)
    good = [c for c in convs if c is not None]
    good_rendered = iter(_render_with_datasets(good, tokenizer, template, loss_on, num_proc, cache_dir)
                         if good and cache_dir is not None or (num_proc > 1 and len(good) >= PARALLEL_FROM)
                         else (_render_one(c, tokenizer, template, loss_on) for c in good))
    rendered = ((None, unreadable[i], []) if i in unreadable else next(good_rendered) for i in range(len(records)))
    for index, (rec, (row, error, skipped)) in enumerate(zip(records, rendered, strict=True)):
        stats.records += 1
        if error is not None:
            stats.dropped += 1
            stats.problems.append({"index": index, "line": getattr(rec, "line", None), "message": error})
            continue
        if skipped:
            stats.partial.append({"index": index, "line": getattr(rec, "line", None), "turns": skipped})
        n = len(row["input_ids"])
        if n > seq_len:
            row = {k: v[:seq_len] for k, v in row.items()}
        trained = sum(1 for x in row["labels"] if x != IGNORE_INDEX)
        if trained == 0:  # left out, not truncated: counted once, as a problem
            stats.dropped += 1
            stats.problems.append({"index": index, "line": getattr(rec, "line", None),
                                   "message": f"the prompt alone is longer than seq_len={seq_len}"
                                   if n > seq_len else "no answer tokens to train on"})
            continue
        stats.longest = max(stats.longest, n)
        if n > seq_len:
            stats.truncated += 1
        stats.tokens += len(row["input_ids"])
        stats.trained_tokens += trained
        stats.sources.append(index)
        if n > seq_len:
            stats.cut_rows.add(len(rows))
        rows.append(row)
    return rows, stats


def describe_problems(problems: list[dict], limit: int = 3, total: int | None = None) -> str:
    """The first dropped records in words: ``line 4: 'output' is a number, expected text; line 9: ...``,
    then ``(and N more)``, counted from ``total`` where ``problems`` holds only the first of them."""
    def one(p: dict) -> str:
        message = str(p.get("message") or "")
        if not p.get("line"):
            return f"record {p.get('index', 0) + 1}: {message}"
        if message.startswith((f"line {p['line']}:", f"line {p['line']},")):
            return message  # a reader's error that names its line (and column) already
        return f"line {p['line']}: {message}"

    parts = [one(p) for p in problems[:limit]]
    more = max(total or 0, len(problems)) - limit
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def _render_one(messages: list[dict], tokenizer: Any, rendering: Rendering, loss_on: str
                ) -> tuple[dict[str, list[int]] | None, str | None, list[int]]:
    """(row, None, untrained answer turns) or (None, why it can't train, [])."""
    skipped: list[int] = []
    try:
        row = render_record(messages, tokenizer, rendering, skipped=skipped, loss_on=loss_on)
    except DataError as e:
        return None, e.message, []
    return row, None, skipped


def _render_batch(batch: dict[str, list], tokenizer: Any, rendering: Rendering, loss_on: str) -> dict[str, list]:
    """``Dataset.map`` function: one batch of JSON conversations into token columns."""
    out: dict[str, list] = {"input_ids": [], "labels": [], "error": [], "skipped": []}
    for conv in batch["conv"]:
        row, error, skipped = _render_one(json.loads(conv), tokenizer, rendering, loss_on)
        out["input_ids"].append(row["input_ids"] if row else [])
        out["labels"].append(row["labels"] if row else [])
        out["error"].append(error)
        out["skipped"].append(skipped)
    return out


def _render_with_datasets(conversations: list[list[dict]], tokenizer: Any, rendering: Rendering, loss_on: str, num_proc: int,
                          cache_dir: str | os.PathLike | None) -> Iterator[tuple[dict | None, str | None, list[int]]]:
    import datasets
    from datasets.fingerprint import Hasher

    convs = [json.dumps(c, ensure_ascii=False) for c in conversations]
    digest = hashlib.sha256()
    for c in convs:
        digest.update(c.encode("utf-8") + b"\0")
    key = Hasher.hash([CACHE_VERSION, digest.hexdigest(), _tokenizer_identity(tokenizer), rendering.alpaca,
                       rendering.jinja, loss_on])
    folder = Path(cache_dir) / key if cache_dir is not None else None
    bars = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # the worker's log is line-based; tqdm's carriage returns garble it
    try:
        table, damaged = None, False
        if folder is not None and folder.is_dir():
            try:
                table = datasets.load_from_disk(str(folder))
            except (OSError, ValueError):
                table = None
            damaged = table is None or len(table) != len(convs)  # rebuilt and replaced
        if table is None or damaged:
            table = datasets.Dataset.from_dict({"conv": convs}).map(
                _render_batch, batched=True, batch_size=64, remove_columns=["conv"],
                num_proc=num_proc if num_proc > 1 and len(convs) >= PARALLEL_FROM else None,
                fn_kwargs={"tokenizer": tokenizer, "rendering": rendering, "loss_on": loss_on})
            if folder is not None:
                _store(table, folder, replace=damaged)
    finally:
        if bars:
            datasets.enable_progress_bars()
    columns = table.to_dict()
    for ids, labels, error, skipped in zip(columns["input_ids"], columns["labels"], columns["error"],
                                           columns["skipped"], strict=True):
        yield (None if error is not None else {"input_ids": ids, "labels": labels}), error, skipped


def _tokenizer_identity(tokenizer: Any) -> str:
    """What decides a tokenizer's output: its vocabulary, rules, special tokens and chat template.

    Not ``Hasher.hash(tokenizer)``: a fast tokenizer's state records the truncation and
    padding of its last call, so its hash changes by using it.
    """
    from datasets.fingerprint import Hasher

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        state = json.loads(backend.to_str())
        state.pop("truncation", None)
        state.pop("padding", None)
    else:
        state = sorted(tokenizer.get_vocab().items())
    return Hasher.hash([type(tokenizer).__name__, state, tokenizer.special_tokens_map,
                        getattr(tokenizer, "chat_template", None)])


def _store(table: Any, folder: Path, *, replace: bool = False) -> None:
    """Keep a tokenized dataset (written aside, then renamed into place) and only the newest entries.

    An entry another process (a DDP rank) stored meanwhile is kept as it is, unless ``replace``
    (it didn't load).
    """
    import shutil
    import tempfile

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=folder.parent))
    try:
        table.save_to_disk(str(tmp))
        if replace and folder.is_dir():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # another process stored it first, or the disk is full: no cache
        return
    entries = sorted((p for p in folder.parent.iterdir() if p.is_dir() and not p.name.startswith(".")),
                     key=lambda p: p.stat().st_mtime, reverse=True)
    for old in entries[CACHE_KEEP:]:
        shutil.rmtree(old, ignore_errors=True)
