"""The dataset's content hash (recorded with each run) and a deterministic train/eval split."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterable, Sequence

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
