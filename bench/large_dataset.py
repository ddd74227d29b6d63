"""Large-dataset benchmark, engine part: a 100,000-record (~100 MB) Alpaca JSONL.

Measures, each in a fresh process so memory numbers don't mix:

- ``open``: :func:`engine.data.load_dataset_file` (validates every line, keeps the line bytes,
  parses a record's dict only when it is touched), time and memory;
- ``eager``: the alternative of a parsed dict per record (``json.loads`` of every line, kept),
  for the choice written down in ``docs/dataset-bench.md``;
- after opening: reading 60 rows (one screen), editing 100 records, saving (one edit in 100k),
  the content hash, and the full lint.

Times are wall-clock (``*_s``) and CPU (``*_cpu_s``): on a shared machine the CPU time is
the stable number. Memory is the growth of the process's resident set (RSS) over the interpreter with the
engine imported, and its peak (``ru_maxrss``); ``tracemalloc`` is off because it slows
parsing about 3x.

Usage::

    python bench/large_dataset.py                   # generate into a temp dir, measure, print JSON
    python bench/large_dataset.py --records 20000   # smaller
    python bench/large_dataset.py --file data.jsonl # measure an existing file

The GUI part (open in the editor, scroll, edit) can reuse :func:`generate_jsonl`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

_EN = ("the model data train learn write code explain summarize translate classify answer question text "
       "story poem list reason function python error value network memory user customer order report "
       "weather city river market price school teacher student science history music").split()
_ZH = "数据模型训练学习写代码解释总结翻译分类回答问题文本故事诗列表原因为什么如何函数错误网络内存用户客户订单报告天气城市河流市场价格学校老师学生科学历史音乐"
_TASKS = ("qa", "summarization", "classification", "extraction", "rewriting", "generation")
_VERBS = ("Explain", "Summarize", "Classify", "Extract", "Rewrite", "Write", "Describe", "List", "Compare", "Translate")


def generate_jsonl(path: str | Path, records: int = 100_000, seed: int = 0) -> Path:
    """Write ``records`` Alpaca records with ``task`` and ``lang`` tags, ~1 KB each (~100 MB per 100k).

    One record in five is Chinese. The text is random words, so every record is distinct.
    """
    rnd = random.Random(seed)
    path = Path(path)

    def en(n: int) -> str:
        return " ".join(rnd.choice(_EN) for _ in range(n))

    def zh(n: int) -> str:
        return "".join(rnd.choice(_ZH) for _ in range(n))

    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        for i in range(records):
            if i % 5 == 0:
                rec = {"instruction": "请" + zh(14) + "。", "input": zh(50) if i % 3 else "",
                       "output": zh(190), "task": _TASKS[i % 6], "lang": "zh"}
            else:
                rec = {"instruction": f"{rnd.choice(_VERBS)} {en(12)}.", "input": en(28) if i % 3 else "",
                       "output": en(135), "task": _TASKS[i % 6], "lang": "en"}
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return path


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def _peak_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1e6 if sys.platform == "darwin" else peak / 1e3


def _measure(path: Path, mode: str) -> dict:
    """Runs inside a fresh process (see main)."""
    import engine.data  # noqa: F401  (imported before the baseline, like the running app)
    from engine.data import content_hash, lint, load_dataset_file, save_dataset_file

    base = _rss_mb()
    size_mb = path.stat().st_size / 1e6
    out: dict = {"mode": mode, "file_mb": round(size_mb, 1)}
    cpu = time.process_time()
    t = time.perf_counter()
    if mode == "eager":
        with open(path, "rb") as fh:
            rows = [json.loads(line) for line in fh]
        out["records"] = len(rows)
    else:
        ds = load_dataset_file(path)
        out["records"] = len(ds.records)
        out["detected"] = ds.detected
    out["open_s"] = round(time.perf_counter() - t, 3)
    out["open_cpu_s"] = round(time.process_time() - cpu, 3)
    out["open_rss_mb"] = round(_rss_mb() - base, 1)
    out["open_peak_mb"] = round(_peak_mb() - base, 1)
    out["open_rss_x_file"] = round(out["open_rss_mb"] / size_mb, 2)
    if mode == "eager":
        return out
    if mode == "materialize":  # what touching every record's .data (not .peek()) would cost
        t = time.perf_counter()
        for r in ds.records:
            r.data  # noqa: B018
        out["materialize_s"] = round(time.perf_counter() - t, 3)
        out["materialized_rss_mb"] = round(_rss_mb() - base, 1)
        out["materialized_rss_x_file"] = round(out["materialized_rss_mb"] / size_mb, 2)
        return out

    t = time.perf_counter()
    screen = [ds.records[k].peek()["instruction"] for k in range(50_000, 50_060)]
    out["screen_of_60_rows_ms"] = round((time.perf_counter() - t) * 1e3, 2)
    assert len(screen) == 60
    t = time.perf_counter()
    for k in range(0, len(ds.records), max(1, len(ds.records) // 100)):
        ds.records[k].data["output"] += " (edited)"
    out["edit_100_records_ms"] = round((time.perf_counter() - t) * 1e3, 2)
    t, cpu = time.perf_counter(), time.process_time()
    save_dataset_file(ds, path.with_name("saved.jsonl"))
    out["save_s"] = round(time.perf_counter() - t, 3)
    out["save_cpu_s"] = round(time.process_time() - cpu, 3)
    t, cpu = time.perf_counter(), time.process_time()
    out["content_hash"] = content_hash(ds.records)[:19]
    out["hash_s"] = round(time.perf_counter() - t, 3)
    out["hash_cpu_s"] = round(time.process_time() - cpu, 3)
    t, cpu = time.perf_counter(), time.process_time()
    report = lint(ds, seq_len=512)
    out["lint_s"] = round(time.perf_counter() - t, 3)
    out["lint_cpu_s"] = round(time.process_time() - cpu, 3)
    out["lint_rules"] = report.counts["by_rule"]
    out["lint_counts"] = {k: v for k, v in report.counts.items() if k != "by_rule"}
    out["load_average"] = os.getloadavg()[0]
    out["after_all_rss_mb"] = round(_rss_mb() - base, 1)
    out["after_all_peak_mb"] = round(_peak_mb() - base, 1)
    out["after_all_rss_x_file"] = round(out["after_all_rss_mb"] / size_mb, 2)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--records", type=int, default=100_000)
    p.add_argument("--file", type=Path, help="measure this JSONL instead of generating one")
    p.add_argument("--measure", choices=["lazy", "eager", "materialize"], help=argparse.SUPPRESS)
    p.add_argument("--write-doc", type=Path, help="write the results into this markdown file")
    p.add_argument("--date", default=time.strftime("%Y-%m-%d"))
    p.add_argument("--machine", default=f"{os.cpu_count()}-core CPU")
    args = p.parse_args(argv)
    if args.measure:
        print(json.dumps(_measure(args.file, args.measure)))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        path = args.file
        if path is None:
            t = time.perf_counter()
            path = generate_jsonl(Path(tmp) / "large.jsonl", args.records)
            gen_s = time.perf_counter() - t
        else:
            gen_s = None
        results = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
                   "generate_s": round(gen_s, 1) if gen_s else None}
        results["load_average_at_start"] = round(os.getloadavg()[0], 1)
        for mode in ("lazy", "eager", "materialize"):
            proc = subprocess.run([sys.executable, __file__, "--measure", mode, "--file", str(path)],
                                  capture_output=True, text=True, check=True)
            results[mode] = json.loads(proc.stdout)
    print(json.dumps(results, indent=2, ensure_ascii=False))
    if args.write_doc:
        write_doc(args.write_doc, to_markdown(results, args.date, args.machine))
    return 0


START, END = "<!-- large-dataset-engine:start -->", "<!-- large-dataset-engine:end -->"


def to_markdown(r: dict, date: str, machine: str) -> str:
    """The engine section of ``docs/dataset-bench.md``."""
    lz, eg, mt = r["lazy"], r["eager"], r["materialize"]
    lines = [
        START,
        "## Engine: reading, saving, hashing and linting the file",
        "",
        f"Measured {date} on {machine} ({r['machine']}) with `python bench/large_dataset.py`: "
        f"{lz['records']:,} Alpaca records with `task` and `lang` tags, one in five Chinese, "
        f"{lz['file_mb']} MB of JSONL. Each mode runs in a fresh process; memory is RSS growth over the "
        "interpreter with `engine.data` imported. The machine was shared by several engineers (load "
        f"average {r['load_average_at_start']} at the start, {lz['load_average']:.1f} during the lint, on "
        "2 cores), so wall times are upper bounds and the CPU times are the stable numbers.",
        "",
        "| what | wall | CPU | memory | target |",
        "|---|---|---|---|---|",
        f"| open: `load_dataset_file` (validates every line, keeps line bytes) | {lz['open_s']} s | "
        f"{lz['open_cpu_s']} s | {lz['open_rss_mb']} MB = {lz['open_rss_x_file']}× file (peak "
        f"{lz['open_peak_mb']} MB) | ≤ 2 s, ≤ 3× |",
        f"| alternative: a parsed dict per record (`json.loads` each line, kept) | {eg['open_s']} s | "
        f"{eg['open_cpu_s']} s | {eg['open_rss_mb']} MB = {eg['open_rss_x_file']}× | |",
        f"| lazy records after touching every `.data` (dict + line bytes) | +{mt['materialize_s']} s | | "
        f"{mt['materialized_rss_mb']} MB = {mt['materialized_rss_x_file']}× | avoid: use `.peek()` |",
        f"| one screen: 60 × `peek()` in the middle | {lz['screen_of_60_rows_ms']} ms | | | |",
        f"| edit 100 records through `.data` | {lz['edit_100_records_ms']} ms | | | |",
        f"| save, 100 edited (atomic; unedited lines written as their bytes) | {lz['save_s']} s | "
        f"{lz['save_cpu_s']} s | | |",
        f"| `content_hash` (sha256 of canonical JSON) | {lz['hash_s']} s | {lz['hash_cpu_s']} s | | |",
        f"| full `lint(seq_len=512)` without a tokenizer | {lz['lint_s']} s | {lz['lint_cpu_s']} s | "
        f"whole run: {lz['after_all_rss_mb']} MB = {lz['after_all_rss_x_file']}× after, peak "
        f"{lz['after_all_peak_mb']} MB | |",
        "",
        "The choice: records keep their original line (bytes, with its line ending) and parse it on",
        "first access of `.data`; `.peek()` parses without keeping the dict. Open still parses every",
        "line once, to find broken ones, and throws the dicts away. Against a dict per record this",
        f"costs the same time and saves {eg['open_rss_mb'] - lz['open_rss_mb']:.0f} MB here "
        f"({lz['open_rss_x_file']}× instead of {eg['open_rss_x_file']}× the file), and an unedited line",
        "is written back byte for byte without re-serialising it. Lint, hash, export and the trainer",
        "read through `.peek()`; the lint keeps ~100 bytes of facts per record and hashes of the",
        "normalised texts, not the texts, and computes MinHash signatures 2,000 records at a time.",
        "",
        "History on this machine: at load average ~3.5 (earlier on 2026-11-28) the open of this file took",
        "1.37 s wall (1.12 s for a 126 MB variant); with the CPU time at 0.9 s, the ≤ 2 s target holds",
        "unless the machine is shared this heavily.",
        "A first lint that kept every record's texts and messages for the dataset-wide rules peaked at",
        "1.0 GB (9× the file) and took 42 s wall at load ~3.6; MinHash over whole texts and a regex",
        "normalisation were most of it (now: capped, sampled shingles and an ASCII `bytes.translate` path).",
        END,
    ]
    return "\n".join(lines) + "\n"


def write_doc(doc: Path, section: str) -> None:
    """Replace this bench's section in ``doc`` (between its markers), or put it first."""
    text = doc.read_text(encoding="utf-8") if doc.exists() else "# Dataset benchmark\n"
    if START in text and END in text:
        a, b = text.index(START), text.index(END) + len(END)
        text = text[:a] + section.rstrip("\n") + text[b:]
    else:
        head, _, rest = text.partition("\n")
        text = head + "\n\n" + section + ("\n" + rest.lstrip("\n") if rest.strip() else "")
    doc.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
