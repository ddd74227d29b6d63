"""Prompt preview: a record rendered with the chosen template, its trained tokens marked.

Built on the labels of :func:`engine.data.tokenize.render_record`, so the preview shows
exactly what the trainer trains on (labels other than -100), not a re-derivation of it.
"""

from __future__ import annotations

from typing import Any

from engine.data.records import Record


def preview(record: Record | list[dict], tokenizer: Any, template: str = "auto") -> list[tuple[str, bool]]:
    """The record's rendered text in pieces, each marked trained (answer) or not (prompt).

    Args:
        record: A record, or its messages.
        tokenizer: A Hugging Face tokenizer.
        template: 'auto', 'chat' or 'alpaca', as in the run config.

    Returns:
        ``[(text, trained), ...]``: consecutive tokens with the same mark, decoded together;
        joined, the texts give the whole rendered sequence.

    Raises:
        DataError: the record is broken, has the wrong field types or no answer, or the
            template can't locate the answer tokens.
    """
    from engine.data.tokenize import IGNORE_INDEX, render_record

    messages = record.messages() if isinstance(record, Record) else record
    row = render_record(messages, tokenizer, template)
    pieces: list[tuple[str, bool]] = []
    run: list[int] = []
    run_trained: bool | None = None
    for token, label in zip(row["input_ids"], row["labels"], strict=True):
        trained = label != IGNORE_INDEX
        if run and trained != run_trained:
            pieces.append((tokenizer.decode(run), bool(run_trained)))
            run = []
        run.append(token)
        run_trained = trained
    if run:
        pieces.append((tokenizer.decode(run), bool(run_trained)))
    return pieces
