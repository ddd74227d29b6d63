"""Prompt preview: a record rendered with the chosen template, its trained tokens marked.

Built on the labels of :func:`engine.data.tokenize.render_record`, so the preview shows
exactly what the trainer trains on (labels other than -100), not a re-derivation of it.
"""

from __future__ import annotations

from typing import Any

from engine.data.records import RECORD_AT, Record


def preview(record: Record | list[dict], tokenizer: Any, template: str = "auto", *,
            skipped: list[int] | None = None, loss_on: str = "answers") -> list[tuple[str, bool]]:
    """The record's rendered text in pieces, each marked trained (answer) or not (prompt).

    Args:
        record: A record, or its messages.
        tokenizer: A Hugging Face tokenizer.
        template: 'auto', 'chat' or 'alpaca', as in the run config.
        skipped: receives the message indices of answers the template hides from training
            (see :func:`engine.data.tokenize.render_record`).
        loss_on: the run config's ``loss_on``.

    Returns:
        ``[(text, trained), ...]``: consecutive tokens with the same mark, decoded together;
        joined, the texts give the whole rendered sequence.

    Raises:
        DataError: the record is broken, has the wrong field types or no answer, or the
            template can't locate the answer tokens.
    """
    from engine.data.tokenize import IGNORE_INDEX, render_record

    messages = record.messages(weights=True) if isinstance(record, Record) else record
    row = render_record(messages, tokenizer, template, skipped=skipped, loss_on=loss_on)
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


# ---- CLI

# ANSI: trained tokens bold green, prompt tokens dim, as the GUI highlights the answer.
_ANSI_TRAINED, _ANSI_PROMPT, _ANSI_RESET = "\x1b[1;32m", "\x1b[2m", "\x1b[0m"
OPEN, CLOSE = "[[", "]]"


def cli_preview(args: Any) -> int:
    """``finetune-studio data preview FILE [--index N] [--model M] [--template T] [--format F] [--json]``.

    The GUI's prompt preview: record N rendered with the model's tokenizer (chat template or
    the Alpaca prompt), the trained (answer) tokens marked: in bold green on a terminal,
    else between ``[[`` and ``]]`` (``NO_COLOR`` set also gives brackets).

    Args:
        args: ``file`` (str); ``record`` (int or None): the record from 1, as the editor numbers
            rows; else ``index`` (int, default 0): the record from 0; ``model`` (str, default ``demo``):
            ``demo``, a model folder or a cached hub id; ``template`` (auto|chat|alpaca);
            ``format`` (str, default auto): how to read the file, as ``data check --format``;
            ``json`` (bool): print the segments as JSON instead.

    Returns:
        0; errors are raised as StudioError (the CLI prints them, exit 2).
    """
    import json
    import os
    import shlex
    import sys

    from engine.data.formats import open_dataset
    from engine.data.templates import (
        check_template_name,
        is_template_file,
        marker_problems,
        read_template_file,
        resolve,
        split_markers,
    )
    from engine.data.tokenize import IGNORE_INDEX, render_record
    from engine.errors import DataError
    from engine.models import load_tokenizer

    path = str(args.file)
    number = getattr(args, "record", None)  # 1-based, as the editor numbers rows; --index is 0-based
    index = number - 1 if number is not None else (getattr(args, "index", 0) or 0)
    model = getattr(args, "model", None) or "demo"
    template = getattr(args, "template", None) or "auto"
    check_template_name(template, key="--template")
    if is_template_file(template):  # a template file is the command's, not the record's: said as such
        try:
            read_template_file(template)
        except DataError as e:
            raise DataError(f"--template: {e.message}", hint="Give the path of a .jinja file, relative to the "
                            "current folder or absolute.", fix=e.fix) from None
    ds = open_dataset(path, getattr(args, "format", None) or "auto")  # a file or a cached hub dataset
    n = len(ds.records)
    if n == 0:
        raise DataError("the file has no records to preview", path=path)
    if not 0 <= index < n:
        has = f"the file has {n} record{'s' if n != 1 else ''}"
        if number is not None:
            raise DataError(f"record {number} is out of range: {has}, so --record takes 1 to {n}", path=path)
        raise DataError(f"record index {index} is out of range: {has}, so --index takes 0 to {n - 1}", path=path)
    record = ds.records[index]
    if record.broken:
        raise DataError(f"record {index + 1} is broken: {record.error}", path=path, line=record.line,
                        column=record.column, hint="Fix it first; `finetune-studio data check` lists every "
                        "broken record.")
    tokenizer = load_tokenizer(model, add_tokens=getattr(args, "add_tokens", None) or ())
    skipped: list[int] = []
    loss_on = getattr(args, "loss_on", None) or "answers"
    try:
        messages = record.messages(weights=True)
        pieces = preview(messages, tokenizer, template, skipped=skipped, loss_on=loss_on)
        # The exact counts, from the labels preview() marks by (its texts are decoded runs).
        row = render_record(messages, tokenizer, template, loss_on=loss_on)
    except DataError as e:
        raise DataError(f"record {index + 1}: {RECORD_AT.sub('', e.message, count=1)}", path=path, line=record.line,
                        fix=e.fix,
                        hint=e.hint) from None
    context = [i for i, m in enumerate(messages) if m.get("weight") is False]  # never trained, by their weight
    tokens = len(row["input_ids"])
    trained = sum(1 for x in row["labels"] if x != IGNORE_INDEX)
    rendering = resolve(tokenizer, template).name
    split = marker_problems(tokenizer, template)
    markers = split_markers(tokenizer, template)
    if getattr(args, "json", False):
        print(json.dumps({"file": path, "record": index + 1, "index": index, "line": record.line, "model": model,
                          "template": template, "rendering": rendering, "tokens": tokens,
                          "trained_tokens": trained, "untrained_answers": skipped,
                          "weight_0_answers": context, "split_markers": split,
                          "segments": [{"text": t, "trained": on} for t, on in pieces]},
                         ensure_ascii=False, indent=2))
        return 0
    colour = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    how = {"chat": "the chat template", "alpaca": "the Alpaca prompt format"}.get(rendering, f"the {rendering} template")
    mark = f"{_ANSI_TRAINED}like this{_ANSI_RESET}" if colour else f"{OPEN}like this{CLOSE}"
    print(f"{path}:{record.line}: record {index + 1} of {n}, rendered with {how} of {model}")
    what = {"answers": "the answers", "last_answer": "the last answer", "all": "every token"}.get(loss_on, loss_on)
    rest = "; the rest is prompt (label -100)" if trained < tokens else ""
    print(f"{tokens} tokens, {trained} trained ({what}, loss_on {loss_on}, marked {mark}){rest}")
    if context:
        which = ", ".join(str(i + 1) for i in context)
        print(f"note: message{'s' if len(context) > 1 else ''} {which} (answer{'s' if len(context) > 1 else ''}) "
              "won't train: weight 0, so context")
    if skipped:
        print(f"note: {untrained_note(skipped)}")
    if split:
        print(f"note: {model}'s tokenizer splits the {rendering} markers into pieces ({', '.join(split)}); "
              f"the model would learn them as text. A run with add_tokens: {markers} (method lora, qlora or full) "
              f"adds them as tokens; preview that with --add-tokens {' '.join(shlex.quote(m) for m in markers)}")
    print()
    print(render_marked(pieces, colour=colour))
    return 0


def render_marked(pieces: list[tuple[str, bool]], *, colour: bool = False) -> str:
    """The preview's pieces as one text, trained pieces in ``[[...]]`` (or ANSI colour)."""
    out = []
    for text, trained in pieces:
        if colour:
            out.append((_ANSI_TRAINED if trained else _ANSI_PROMPT) + text + _ANSI_RESET)
        else:
            out.append(f"{OPEN}{text}{CLOSE}" if trained else text)
    return "".join(out)


def untrained_note(skipped: list[int]) -> str:
    """What to tell about answers (message indices) the template hides from training."""
    which = ", ".join(str(i + 1) for i in skipped)
    return (f"message{'s' if len(skipped) > 1 else ''} {which} (answer{'s' if len(skipped) > 1 else ''}) "
            "won't train: the chat template renders them differently once the conversation goes on, so their "
            "tokens can't be located; `data convert FILE OUT --per-answer` writes one record per answer, which trains them")
