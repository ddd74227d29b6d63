"""The dataset's content hash (recorded with each run) and a deterministic train/eval split."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from engine.data.records import Record
from engine.errors import DataError


def content_hash(records: Iterable[Record | dict]) -> str:
    """SHA-256 over the records' data as canonical JSON, one record per line, in order.

    Canonical means sorted keys, no spaces, non-ASCII kept as is, so the hash depends on
    the content only: not on key order, whitespace, BOM, line endings or the container.
    Moving a record changes the hash (order matters for a run's reproducibility). A broken
    record contributes its raw text, so fixing it changes the hash.

    Args:
        records: Records (or plain dicts).

    Returns:
        ``"sha256:<64 hex digits>"``.
    """
    h = hashlib.sha256()
    dumps = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode
    for r in records:
        if isinstance(r, Record):
            value = {"__broken__": r.raw} if r.broken else r.peek()
        else:
            value = r
        h.update(dumps(value).encode("utf-8"))
        h.update(b"\n")
    return "sha256:" + h.hexdigest()


def train_eval_split(records: Sequence | int, eval_fraction: float, seed: int = 0
                     ) -> tuple[list[int], list[int]]:
    """Split record indices into train and eval, the same way for the same inputs.

    The indices are shuffled with ``random.Random(seed)`` (stable across Python versions
    and platforms) and the first ``round(n * eval_fraction)`` go to eval, at least one when
    the fraction is positive and there are two records or more. Both lists come back sorted.

    Args:
        records: The records, or their count.
        eval_fraction: Share of records held out, in ``[0, 1)``.
        seed: The run's seed.

    Returns:
        ``(train_indices, eval_indices)``.

    Raises:
        DataError: the fraction is out of range.
    """
    n = records if isinstance(records, int) else len(records)
    if not 0.0 <= eval_fraction < 1.0:
        raise DataError(f"eval_split must be at least 0 and below 1, got {eval_fraction}",
                        fix={"eval_split": 0.1})
    n_eval = round(n * eval_fraction)
    if eval_fraction > 0 and n >= 2:
        n_eval = min(max(n_eval, 1), n - 1)
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return sorted(order[n_eval:]), sorted(order[:n_eval])


# ---- CLI


def split_file(src: str | Path, eval_ratio: float, out_dir: str | Path, *, seed: int | None = None,
               fmt: str = "auto", force: bool = False) -> dict[str, Any]:
    """Write ``out_dir/<name>-train.<ext>`` and ``out_dir/<name>-eval.<ext>``.

    In the file's own container and record format, split by :func:`train_eval_split` exactly
    as a run with ``eval_split: eval_ratio`` and ``seed`` splits (a run splits the records left
    after tokenization, so the two agree when the run dropped none). Broken records are
    refused, as by :func:`engine.data.formats.export`, and so is a file with file-structure errors
    (``data check``'s, such as a JSON array without its closing ``]``): records may be missing
    from it, and a split would leave them out of both parts without a word.

    Args:
        src: The dataset file, ``demo`` (the embedded sample dataset) or a dataset in the Hugging
            Face cache (``org/name`` or ``org/name:split``), as a run config's ``dataset``.
        eval_ratio: Share of records held out, above 0 and at most the run config's eval_split
            maximum (0.5).
        out_dir: Where the two files go (created if missing).
        seed: The run's seed (default: the run config's default seed).
        fmt: How to read the file (default: detect).
        force: Replace existing output files.

    Returns:
        ``{file, detected, content_hash, records, eval_ratio, seed, train: {path, records},
        eval: {path, records}}``; ``content_hash`` is the ``dataset_hash`` such a run records.

    Raises:
        DataError: a ratio out of range, broken records, a file-structure error (a JSON array cut
            short, or with text after its ']'), fewer than two records, or an output that exists
            (without ``force``) or is not a folder.
    """
    from engine.config import RunConfig  # not at the top: engine.config imports engine.data
    from engine.data.formats import check_output_path, open_dataset, save_dataset_file
    from engine.data.records import DatasetFile

    src = Path(src)
    ratio = float(eval_ratio)
    meta = RunConfig.field_meta()
    if seed is None:
        seed = meta["seed"]["default"]
    # The split is the one a run with eval_split: ratio makes, so it takes the ratios such a run
    # takes (an eval set larger than the train set is refused there too), 0 excepted: no split.
    most = meta["eval_split"]["max"]
    if not 0.0 < ratio <= most:
        raise DataError(f"--eval-ratio must be above 0 and at most {most:g} (a run's eval_split holds out at "
                        f"most {most:.0%} of the records), got {ratio:g}", hint="e.g. --eval-ratio 0.1")
    ds = open_dataset(src, fmt or "auto")  # what a run's `dataset` names: a file, demo or a cached hub dataset
    source = Path(ds.path) if ds.path is not None else src
    broken = ds.broken_indices()
    if broken:
        first = ds.records[broken[0]]
        raise DataError(f"{len(broken)} broken record(s) can't be split; the first is at line {first.line}: "
                        f"{first.error}", path=str(source), line=first.line, column=first.column,
                        hint="Fix or delete them first; `finetune-studio data check` lists every one.")
    if ds.file_errors:
        # A JSON array cut short (no closing ']', or ending after a comma) loads the records before
        # the cut: a split of them would write an eval set short of records without a word.
        from engine.data.lint import file_error_words

        count = len(ds.file_errors)
        first = ds.file_errors[0]
        which = f"; the first of {count}: " if count > 1 else ": "
        raise DataError("the file has a file-structure error, so records may be missing from it, and it isn't "
                        f"split{which}{file_error_words(first)}", path=first.path or str(source),
                        hint="Fix the file first (one cut short: copy it again from where it came); "
                             "`finetune-studio data check` lists every problem.")
    n = len(ds.records)
    train_idx, eval_idx = train_eval_split(n, ratio, seed)
    if not train_idx or not eval_idx:
        raise DataError(f"{n} record(s) can't be split into a train and an eval set", path=str(source),
                        hint="A split needs two records or more.")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError("--out-dir is a file, not a folder", path=str(out_dir))
    stem, suffix = _output_name(src, ds)
    targets = {part: check_output_path(out_dir / f"{stem}-{part}{suffix}", source=source, force=force)
               for part in ("train", "eval")}
    written = {}
    for part, indices in (("train", train_idx), ("eval", eval_idx)):
        # Each part in the file's own container, format and style: its column names (a file read
        # through a mapping keeps prompt/response), CSV dialect, JSON indent, Parquet column types.
        subset = DatasetFile(path=source, format=ds.format, container=ds.container, newline=ds.newline,
                             bom=ds.bom, mapping=dict(ds.mapping), style=dict(ds.style),
                             records=[ds.records[i] for i in indices])
        written[part] = {"path": str(save_dataset_file(subset, targets[part])), "records": len(indices)}
    return {"file": str(src), "detected": ds.detected, "content_hash": content_hash(ds.records), "records": n,
            "eval_ratio": ratio, "seed": seed, **written}


def _output_name(src: Path, ds: Any) -> tuple[str, str]:
    """The stem and suffix of the split's files: a file's own (``chat.jsonl`` -> ``chat-train.jsonl``),
    ``demo`` -> ``demo-train.jsonl``, a cached hub dataset's name and split, never its ``org/`` nor a
    ``:`` (``org/faq:test`` -> ``faq-test-train.jsonl``)."""
    from engine.data import hub

    ref = hub.parse_ref(str(src)) if ds.path is None else None
    if ref is not None:
        repo, split = ref
        stem = repo.rsplit("/", 1)[-1] + ("" if split == hub.DEFAULT_SPLIT else f"-{split}")
        return stem, f".{ds.container}"
    if str(src) == "demo":
        return "demo", Path(ds.path).suffix
    return src.stem, src.suffix or f".{ds.container}"


def cli_split(args: Any) -> int:
    """``finetune-studio data split FILE --eval-ratio R [--seed S] --out-dir DIR [--format F] [--force] [--json]``.

    See :func:`split_file`. Prints the input's :func:`content_hash`, the ``dataset_hash`` such
    a run records.

    Returns:
        0; errors are raised as StudioError (the CLI prints them, exit 2).
    """
    result = split_file(args.file, float(args.eval_ratio), args.out_dir, seed=getattr(args, "seed", None),
                        fmt=getattr(args, "format", None) or "auto", force=getattr(args, "force", False))
    if getattr(args, "json", False):
        print(json.dumps(result, ensure_ascii=False, indent=2))
        return 0
    print(f"{result['file']}: {result['detected']}")
    print(f"content hash: {result['content_hash']}")
    print(f"split with eval ratio {result['eval_ratio']:g}, seed {result['seed']}: {result['train']['records']} train, "
          f"{result['eval']['records']} eval")
    for part in ("train", "eval"):
        print(f"  {part:5} -> {result[part]['path']}")
    print(f"train on it with: dataset: {result['train']['path']}  eval_dataset: {result['eval']['path']}")
    return 0
