"""bench/measure_memory.py's --smoke runs each case on a shrunk model of the case's own family."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_smoke_runs_the_non_llama_cases_on_their_own_families(tmp_path):
    # The Qwen3 and Gemma 3 cases were added for the next GPU session: their blocks (q/k norms,
    # sandwich norms, sliding layers) must run before that session spends device time on them.
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "measure_memory.py"), "--smoke", "--only", "q3-,g3-",
                           "--out", str(tmp_path), "--steps", "2"], capture_output=True, text=True, timeout=600,
                          cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (report,) = tmp_path.glob("memory-*.json")
    rows = {r["case"]: r for r in json.loads(report.read_text())["rows"]}
    assert len(rows) == 2
    for case, family in (("q3-1.7b/lora-all-r16/bf16/nockpt/b4s1024", "qwen3-1.7b"),
                         ("g3-1b/full/bf16/ckpt/b2s1024", "gemma3-1b")):
        row = rows[case]
        assert "error" not in row and row["model"] == family and row["steps"] == 2, row
    # Gemma 3 full fine-tuning trains everything; Qwen3's LoRA a sliver of it.
    assert rows["g3-1b/full/bf16/ckpt/b2s1024"]["trainable"] == rows["g3-1b/full/bf16/ckpt/b2s1024"]["total"]
    q3 = rows["q3-1.7b/lora-all-r16/bf16/nockpt/b4s1024"]
    assert 0 < q3["trainable"] < q3["total"]
