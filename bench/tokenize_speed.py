"""Time to tokenize a dataset before step 1: the plain loop, datasets.map over processes, the cache.

    python bench/tokenize_speed.py [--copies 55] [--model demo] [--template auto]

The demo dataset's 366 records are repeated ``--copies`` times (each copy's answers numbered, so
no two records are the same). Prints one JSON line per variant; results go in docs/dataset-bench.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--copies", type=int, default=55)
    p.add_argument("--model", default="demo")
    p.add_argument("--template", default="auto")
    p.add_argument("--seq-len", type=int, default=1024)
    args = p.parse_args()

    from engine.data.formats import load_dataset_file
    from engine.data.records import Record
    from engine.data.tokenize import tokenize_records
    from engine.models import load_tokenizer
    from engine.paths import demo_dataset_path

    tok = load_tokenizer(args.model)
    base = [r for r in load_dataset_file(demo_dataset_path(), "auto").records if not r.broken]
    records = []
    for k in range(args.copies):
        for r in base:
            d = dict(r.peek())
            d["output"] = f"{d['output']} ({k})"
            records.append(Record(d, line=len(records) + 1, schema=r.schema))
    cpus = os.cpu_count() or 1
    cache = Path(tempfile.mkdtemp(prefix="tok-cache-"))
    results = []

    def run(name: str, **kw) -> list:
        t0 = time.perf_counter()
        rows, stats = tokenize_records(records, tok, args.template, args.seq_len, **kw)
        dt = time.perf_counter() - t0
        results.append({"variant": name, "records": len(records), "seconds": round(dt, 2),
                        "records_per_s": round(len(records) / dt), "tokens": stats.tokens})
        print(json.dumps(results[-1]), flush=True)
        return rows

    try:
        plain = run("loop, 1 process", num_proc=1)
        parallel = run(f"datasets.map, {max(1, min(8, cpus // 2))} process(es) (the default)")
        every = run(f"datasets.map, {cpus} processes", num_proc=cpus) if cpus > 1 else parallel
        first = run("datasets.map + cache (first run: fills it)", cache_dir=cache)
        again = run("cache hit (resume, rerun)", cache_dir=cache)
        assert plain == parallel == every == first == again, "the variants gave different tokens"
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    print(json.dumps({"cpus": cpus, "machine": platform.processor() or platform.machine(), "model": args.model,
                      "template": args.template}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
