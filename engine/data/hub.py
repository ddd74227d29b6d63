"""Datasets from the Hugging Face cache, by repository id: ``org/name`` or ``org/name:split``.

Nothing is downloaded: the repository must already be in the hub cache (``~/.cache/huggingface/hub``,
or ``HF_HUB_CACHE``), as ``huggingface-cli download --repo-type dataset`` or an earlier
``datasets.load_dataset`` left it. The files of a split are found with ``datasets``' own rules
for a repository without a loading script (``data/train-00000-of-00002.parquet``, ``train.jsonl``,
a single data file...), and read like any local file; several files of one split are read in
order as one dataset.
"""

from __future__ import annotations

import re
from pathlib import Path

from engine.errors import DataError

FILE_SUFFIXES = (".json", ".jsonl", ".csv", ".tsv", ".parquet")
"""What a local dataset file ends with; a name without one of these may be a hub id."""
_REF = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+?)(?::(?P<split>[\w.-]+))?$")
DEFAULT_SPLIT = "train"


def parse_ref(name: str) -> tuple[str, str] | None:
    """``(repo_id, split)`` when ``name`` reads as a hub dataset id and is no local path, else None.

    A name with a dataset file's suffix, or one that exists on disk, is a file.
    """
    name = str(name).strip()
    if not name or name == "demo" or name.lower().endswith(FILE_SUFFIXES) or Path(name).expanduser().exists():
        return None
    m = _REF.match(name)
    if m is None:
        return None
    return m["repo"], m["split"] or DEFAULT_SPLIT


def snapshot(repo_id: str) -> Path:
    """The cached snapshot folder of dataset ``repo_id`` (never downloads).

    Raises:
        DataError: it isn't in the cache, saying how to get it there.
    """
    from huggingface_hub import constants, snapshot_download

    try:
        return Path(snapshot_download(repo_id, repo_type="dataset", local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached, or the cache entry is incomplete
        raise DataError(f"dataset '{repo_id}' is not in the Hugging Face cache ({constants.HF_HUB_CACHE}); "
                        "Finetune Studio never downloads",
                        hint=f"Where there is internet: `huggingface-cli download --repo-type dataset {repo_id}` "
                        "(then copy the cache folder here), or give a local JSON, JSONL, CSV or Parquet "
                        "file.") from None


def split_files(repo_id: str, split: str = DEFAULT_SPLIT) -> list[Path]:
    """The cached data files of one split, in order.

    Raises:
        DataError: not cached; no such split (the ones there are named); or the split's files
            are in a format this app doesn't read.
    """
    from datasets.data_files import EmptyDatasetError, get_data_patterns

    root = snapshot(repo_id)
    try:
        patterns = get_data_patterns(str(root))
    except EmptyDatasetError:
        patterns = {}
    if split not in patterns:
        have = ", ".join(sorted(patterns)) or "none found"
        raise DataError(f"dataset '{repo_id}' has no split '{split}' in the cache (splits: {have})",
                        hint=f"Give one of them as '{repo_id}:SPLIT'." if patterns else
                        "Its files follow no layout `datasets` recognises; give one of its files as the dataset.")
    files = sorted({p for pattern in patterns[split] for p in root.glob(pattern) if p.is_file()})
    readable = [p for p in files if p.suffix.lower() in FILE_SUFFIXES]
    if not readable:
        kinds = ", ".join(sorted({p.suffix or p.name for p in files})) or "no files"
        raise DataError(f"dataset '{repo_id}' split '{split}' is stored as {kinds}, which this app doesn't read",
                        hint="Convert it to JSONL or Parquet (e.g. with `datasets`: "
                        "load_dataset(...).to_json('train.jsonl')) and give that file.")
    return readable


def cached_datasets() -> list[str]:
    """The ids of the datasets in the hub cache, sorted (none when there is no cache)."""
    from huggingface_hub import constants, scan_cache_dir

    try:
        info = scan_cache_dir(constants.HF_HUB_CACHE)
    except Exception:  # noqa: BLE001 - no cache folder, or one huggingface_hub can't read
        return []
    return sorted(r.repo_id for r in info.repos if r.repo_type == "dataset")


def describe(repo_id: str, split: str, files: list[Path]) -> str:
    """``org/name:train (2 files)`` for messages and the run's record of its data."""
    return f"{repo_id}:{split}" + (f" ({len(files)} files)" if len(files) > 1 else "")
