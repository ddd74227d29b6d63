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
        patterns = {str(k): v for k, v in get_data_patterns(str(root)).items()}  # keys are NamedSplits
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
    """The ids of the datasets in the hub cache that have a snapshot, sorted (none without a cache).

    Read from the cache's folder names (``datasets--org--name``; the Hub forbids ``--`` in names)
    rather than ``scan_cache_dir``, which stats every file of every cached model: this runs when a
    menu opens.
    """
    from huggingface_hub import constants

    root = Path(constants.HF_HUB_CACHE)
    try:
        folders = [p for p in root.glob("datasets--*--*") if any((p / "snapshots").glob("*"))]
    except OSError:
        return []
    return sorted(p.name.removeprefix("datasets--").replace("--", "/", 1) for p in folders)


def cached_splits(repo_id: str) -> dict[str, int]:
    """``{split: files this app can read}`` of a cached dataset ({} when none is readable)."""
    from datasets.data_files import EmptyDatasetError, get_data_patterns

    try:
        root = snapshot(repo_id)
        patterns = get_data_patterns(str(root))
    except (DataError, EmptyDatasetError):
        return {}
    out = {}
    for split, globs in patterns.items():
        files = {p for g in globs for p in root.glob(g) if p.is_file() and p.suffix.lower() in FILE_SUFFIXES}
        if files:
            out[str(split)] = len(files)
    return out


def cli_list(args) -> int:
    """``finetune-studio data hub``: the cached datasets, their splits and how to name them."""
    import json

    from huggingface_hub import constants

    rows = [{"id": repo, "splits": cached_splits(repo)} for repo in cached_datasets()]
    if getattr(args, "json", False):
        print(json.dumps({"cache": str(constants.HF_HUB_CACHE), "datasets": rows}, indent=2))
        return 0
    if not rows:
        print(f"no dataset in the Hugging Face cache ({constants.HF_HUB_CACHE}); where there is internet: "
              "huggingface-cli download --repo-type dataset ORG/NAME")
        return 0
    print(f"datasets in {constants.HF_HUB_CACHE} (give one as dataset: ORG/NAME, or ORG/NAME:SPLIT):")
    width = max(len(r["id"]) for r in rows)
    for r in rows:
        splits = ", ".join(f"{s} ({n} file{'s' if n > 1 else ''})" for s, n in sorted(r["splits"].items()))
        print(f"  {r['id']:<{width}}  {splits or 'no JSON, JSONL, CSV or Parquet files'}")
    return 0


def describe(repo_id: str, split: str, files: list[Path]) -> str:
    """``org/name:train (2 files)`` for messages and the run's record of its data."""
    return f"{repo_id}:{split}" + (f" ({len(files)} files)" if len(files) > 1 else "")
