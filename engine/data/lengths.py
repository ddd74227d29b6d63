"""How long a run's records are in tokens, as the trainer will see them.

The memory estimate is for batches of ``seq_len`` tokens: the most that any data the config
allows can reach. Real batches are padded only to their longest record (the trainer's
``DataCollatorForSeq2Seq`` pads per batch, to a multiple of 8 on a GPU), so a dataset whose
records all stay under ``seq_len`` peaks lower: the batch that holds the longest record sets
the peak. On one H200 a probe of the demo data read 87% under the estimate at ``seq_len`` 512
for that reason (docs/gpu-check.md).

:func:`data_lengths` renders the records exactly as a run does (``load_training_records``,
the model's tokenizer with ``add_tokens``, the template, ``tokenize_records`` with the same
tokenize cache), so a run that follows finds them tokenized already.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.config import RunConfig


@dataclass(frozen=True)
class DataLengths:
    """The token lengths of a run's training records.

    Attributes:
        path: The dataset as the run names it (a file, ``demo`` or a hub id's cached file).
        records: Records that train (unreadable ones and ones with nothing to train on left out).
        longest: Tokens of the longest of them before truncation, template included.
        truncated: How many are longer than ``seq_len`` (cut to it).
        seq_len: The ``seq_len`` they were counted against.
    """

    path: str
    records: int
    longest: int
    truncated: int
    seq_len: int

    @property
    def padded_len(self) -> int:
        """The longest batch's length in tokens: the longest record, cut to ``seq_len``."""
        return min(self.longest, self.seq_len)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


INPUT_KEYS = ("dataset", "dataset_format", "model", "template", "loss_on", "add_tokens", "seq_len",
              "trust_remote_code")
"""The run config's keys the lengths depend on (with the files they name): a caller that keeps the
lengths asks again when one of them changes (the Train area's gauge, gui/train/estimator.py)."""

_memo: dict[tuple, DataLengths] = {}
_memo_lock = threading.Lock()
MEMO_KEEP = 8


def data_lengths(cfg: RunConfig) -> DataLengths:
    """Tokenize ``cfg``'s training records as a run would, and measure them.

    The result is kept per records (their content hash), tokenizer folder (and its mtime),
    template (a template file's mtime and size too), ``loss_on``, ``add_tokens`` and ``seq_len``: asking again after a change of
    batch, rank or precision costs one read of the dataset file.

    Raises:
        DataError: the dataset can't be read, or no record of it can train.
        ModelError: the model folder has no tokenizer, or it can't be loaded.
    """
    from engine.errors import DataError
    from engine.models import load_tokenizer, resolve_model_path
    from engine.train import load_training_records

    records, info = load_training_records(cfg)
    model_path = resolve_model_path(cfg.model)
    key = (info["hash"], str(model_path), model_path.stat().st_mtime_ns, cfg.trust_remote_code,
           cfg.template, _template_stamp(cfg.template), cfg.loss_on, tuple(cfg.add_tokens or ()), cfg.seq_len)
    with _memo_lock:
        if key in _memo:
            return _memo[key]
    from engine.data.tokenize import tokenize_records
    from engine.paths import tokenized_cache_dir

    tokenizer = load_tokenizer(str(model_path), trust_remote_code=cfg.trust_remote_code,
                               add_tokens=cfg.add_tokens or ())
    rows, stats = tokenize_records(records, tokenizer, cfg.template, cfg.seq_len, cfg.loss_on,
                                   cache_dir=tokenized_cache_dir())
    if not rows:
        raise DataError(f"no record of {info['path']} can train (as {cfg.template}, seq_len {cfg.seq_len})",
                        hint="finetune-studio data check names them.")
    result = DataLengths(path=info["path"], records=len(rows), longest=stats.longest, truncated=stats.truncated,
                         seq_len=cfg.seq_len)
    with _memo_lock:
        while len(_memo) >= MEMO_KEEP:
            _memo.pop(next(iter(_memo)))
        _memo[key] = result
    return result


def _template_stamp(template: str) -> tuple[int, int] | None:
    """A ``.jinja`` template file's modification time and size (an edited file renders differently)."""
    import os
    from pathlib import Path

    from engine.data.templates import is_template_file

    if not is_template_file(template):
        return None
    try:
        st = Path(os.path.expanduser(template)).stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size
