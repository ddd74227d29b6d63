"""The dataset's content hash (recorded with each run) and a deterministic train/eval split."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterable, Sequence
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


def cli_split(args: Any) -> int:
    """``finetune-studio data split FILE --eval-ratio R [--seed S] --out-dir DIR [--format F] [--force] [--json]``.

    Writes ``DIR/<name>-train.<ext>`` and ``DIR/<name>-eval.<ext>`` in the file's own
    container and record format, split by :func:`train_eval_split` exactly as a run with
    ``eval_split: R`` and ``seed: S`` splits (a run splits the records left after
    tokenization, so the two agree when the run dropped none). Prints the input's
    :func:`content_hash`, the ``dataset_hash`` such a run records. Broken records are
    refused, as by :func:`engine.data.formats.export`.

    Args:
        args: ``file`` (str); ``eval_ratio`` (float, above 0 and below 1); ``seed`` (int,
            default: the run config's default seed); ``out_dir`` (str); ``format`` (str,
            default auto): how to read the file; ``force`` (bool): replace existing outputs;
            ``json`` (bool): print one JSON object.

    Returns:
        0; errors are raised as StudioError (the CLI prints them, exit 2).
    """
    from pathlib import Path

    from engine.data.formats import check_output_path, export, load_dataset_file
    from engine.data.records import DatasetFile

    src = Path(args.file)
    ratio = float(args.eval_ratio)
    seed = getattr(args, "seed", None)
    if seed is None:
        from engine.config import RunConfig

        seed = RunConfig.field_meta()["seed"]["default"]
    if not 0.0 < ratio < 1.0:
        raise DataError(f"--eval-ratio must be above 0 and below 1, got {ratio}", hint="e.g. --eval-ratio 0.1")
    ds = load_dataset_file(src, getattr(args, "format", None) or "auto")
    broken = ds.broken_indices()
    if broken:
        first = ds.records[broken[0]]
        raise DataError(f"{len(broken)} broken record(s) can't be split; the first is at line {first.line}: "
                        f"{first.error}", path=str(src), line=first.line, column=first.column,
                        hint="Fix or delete them first; `finetune-studio data check` lists every one.")
    n = len(ds.records)
    train_idx, eval_idx = train_eval_split(n, ratio, seed)
    if not train_idx or not eval_idx:
        raise DataError(f"{n} record(s) can't be split into a train and an eval set", path=str(src),
                        hint="A split needs two records or more.")
    out_dir = Path(args.out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError("--out-dir is a file, not a folder", path=str(out_dir))
    suffix = src.suffix or f".{ds.container}"
    targets = {part: check_output_path(out_dir / f"{src.stem}-{part}{suffix}", source=src,
                                       force=getattr(args, "force", False)) for part in ("train", "eval")}
    written = {}
    for part, indices in (("train", train_idx), ("eval", eval_idx)):
        subset = DatasetFile(path=src, format=ds.format, container=ds.container, newline=ds.newline,
                             bom=ds.bom, mapping=dict(ds.mapping),
                             records=[ds.records[i] for i in indices])
        written[part] = {"path": str(export(subset, targets[part], ds.container, ds.format)),
                         "records": len(indices)}
    digest = content_hash(ds.records)
    if getattr(args, "json", False):
        print(json.dumps({"file": str(src), "detected": ds.detected, "content_hash": digest, "records": n,
                          "eval_ratio": ratio, "seed": seed, **written}, ensure_ascii=False, indent=2))
        return 0
    print(f"{src}: {ds.detected}")
    print(f"content hash: {digest}")
    print(f"split with eval ratio {ratio:g}, seed {seed}: {len(train_idx)} train, {len(eval_idx)} eval")
    for part in ("train", "eval"):
        print(f"  {part:5} -> {written[part]['path']}")
    return 0
