"""bench/gpu_check.py can't run here (no GPU); its CPU dry run exercises the same code paths."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_gpu_check_dry_run_trains_cpu_cases_and_refuses_cuda_ones(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_check.py"), "--dry-run",
                           "--only", "lora-bf16,qlora-nf4,adapter,oom", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (report,) = tmp_path.glob("gpu-check-dry-*.json")
    cases = {c["case"]: c for c in json.loads(report.read_text())["cases"]}
    assert set(cases) == {"lora-bf16", "qlora-nf4", "qlora-nf4-gc", "qlora-nf4-add-tokens", "adapter-houlsby",
                          "oom-recovery-lora"}
    for name in ("lora-bf16", "adapter-houlsby", "oom-recovery-lora"):
        assert cases[name]["status"] == "completed" and cases[name]["loss_finite"] and cases[name]["steps"] == 2
        assert cases[name]["trainable"] > 0
    for name in ("qlora-nf4", "qlora-nf4-add-tokens"):
        assert cases[name]["status"] == "refused" and "CUDA" in cases[name]["reason"]
    # The trained lora case is audited too (on a GPU: the qlora case's 4-bit base as well).
    assert cases["lora-bf16"]["audit"] == "ok" and cases["lora-bf16"]["audit_records"] > 100
    assert "audit" not in cases["adapter-houlsby"]
    probe = json.loads(report.read_text())["meta"]["probe"]  # a 6-step probe of lora-bf16
    assert probe["status"] == "completed" and probe["report"]["steps"] == 6
    table = next(tmp_path.glob("gpu-check-dry-*.md")).read_text()
    assert "| qlora-nf4 | qlora | nf4 |" in table and "| lora-bf16 | lora | bf16 | bf16 | adamw | completed |" in table
    assert "- **probe (lora-bf16, 6 steps)**: time per step: " in table
