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

from dataclasses import dataclass, field
from typing import Any

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


def _render_ids(tokenizer: Any, messages: list[dict], upto: int, add_generation_prompt: bool,
                rendering: Rendering) -> list[int]:
    if not rendering.alpaca:
        kwargs = {"chat_template": rendering.jinja} if rendering.jinja else {}
        ids = tokenizer.apply_chat_template(messages[:upto], tokenize=True,
                                            add_generation_prompt=add_generation_prompt,
                                            return_dict=False, **kwargs)
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

    Args:
        messages: ``[{"role": "system"|"user"|"assistant", "content": str}, ...]``.
        tokenizer: a Hugging Face tokenizer.
        template: a run config's ``template`` (see :mod:`engine.data.templates`) or its
            :class:`Rendering`.
        skipped: receives the indices of assistant turns that couldn't be located.
        loss_on: ``answers`` (every assistant turn), ``last_answer`` (only the final one: the
            earlier answers are context, as LLaMA-Factory's ``mask_history``) or ``all`` (every token,
            prompts included, as ``train_on_prompt`` / Axolotl's ``train_on_inputs``).

    Returns:
        ``{"input_ids": [...], "labels": [...]}`` of equal length.

    Raises:
        DataError: no assistant turn, or none whose tokens can be located in the rendering
            (then answer-only masking would be wrong).
    """
    if loss_on not in LOSS_ON:
        raise DataError(f"loss_on must be one of {', '.join(LOSS_ON)}, got {loss_on!r}")
    chat = resolve(tokenizer, template)
    if not any(m.get("role") == "assistant" for m in messages):
        raise DataError("the record has no answer (assistant/output) to train on")
    full = _render_ids(tokenizer, messages, len(messages), False, chat)
    if loss_on == "all":
        return {"input_ids": full, "labels": list(full)}
    labels = [IGNORE_INDEX] * len(full)
    missed: list[int] = []
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    for i, m in enumerate(messages):
        if m["role"] != "assistant" or (loss_on == "last_answer" and i != last):
            continue
        prompt = _render_ids(tokenizer, messages, i, True, chat)
        upto = _render_ids(tokenizer, messages, i + 1, False, chat)
        if full[: len(prompt)] != prompt or full[: len(upto)] != upto:
            missed.append(i)
            continue
        labels[len(prompt): len(upto)] = full[len(prompt): len(upto)]
    wanted = 1 if loss_on == "last_answer" else sum(1 for m in messages if m["role"] == "assistant")
    if len(missed) == wanted:
        raise DataError("the template's rendering of the prompt is not a prefix of the full "
                        "conversation, so the answer tokens can't be located",
                        hint="Use template: alpaca, or a tokenizer whose chat template renders "
                        "turns independently.")
    if skipped is not None:
        skipped.extend(missed)
    return {"input_ids": full, "labels": labels}


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


def tokenize_records(records: list[Any], tokenizer: Any, template: str | Rendering, seq_len: int,
                     loss_on: str = "answers") -> tuple[list[dict[str, list[int]]], TokenizeStats]:
    """Tokenize engine records (with ``.messages()`` and ``.line``) for training.

    Longer sequences are truncated to ``seq_len`` and counted; records with nothing left to
    train on are dropped and listed, never silently. ``loss_on`` as in :func:`render_record`.
    """
    stats = TokenizeStats()
    rows = []
    template = resolve(tokenizer, template)  # once: a template file is read and checked here
    for index, rec in enumerate(records):
        stats.records += 1
        skipped: list[int] = []
        try:
            row = render_record(rec.messages(), tokenizer, template, skipped=skipped, loss_on=loss_on)
            if skipped:
                stats.partial.append({"index": index, "line": getattr(rec, "line", None), "turns": skipped})
        except DataError as e:
            stats.dropped += 1
            stats.problems.append({"index": index, "line": getattr(rec, "line", None), "message": e.message})
            continue
        n = len(row["input_ids"])
        stats.longest = max(stats.longest, n)
        if n > seq_len:
            stats.truncated += 1
            row = {k: v[:seq_len] for k, v in row.items()}
        trained = sum(1 for x in row["labels"] if x != IGNORE_INDEX)
        if trained == 0:
            stats.dropped += 1
            stats.problems.append({"index": index, "line": getattr(rec, "line", None),
                                   "message": f"the prompt alone is longer than seq_len={seq_len}"})
            continue
        stats.tokens += len(row["input_ids"])
        stats.trained_tokens += trained
        stats.sources.append(index)
        if n > seq_len:
            stats.cut_rows.add(len(rows))
        rows.append(row)
    return rows, stats
