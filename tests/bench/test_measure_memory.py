"""bench/measure_memory.py's --smoke runs each case on a shrunk model of the case's own family; a variant's
options (more steps, an allocator setting, a cap at the estimate) reach its child."""

from __future__ import annotations

import json
import os
import re
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


def _measure_memory():
    """bench/measure_memory.py as a module (bench/ is no package; as bench/calibration.py imports it)."""
    sys.path.insert(0, str(REPO / "bench"))
    try:
        import measure_memory
    finally:
        sys.path.remove(str(REPO / "bench"))
    return measure_memory


def test_variants_come_last_and_keep_the_three_field_cases():
    mm = _measure_memory()
    # bench/calibration.py unpacks (model, overrides, padded) for every measured case.
    for name, case in mm.CASES.items():
        _, _, padded = case
        assert isinstance(padded, bool), name
    assert list(mm.CASES)[-len(mm.VARIANTS):] == list(mm.VARIANTS)
    for name, (base, options) in mm.VARIANTS.items():
        assert mm.CASES[name] == mm.CASES[base] and mm.CASE_OPTIONS[name] == options and name.startswith(base + "/")
        assert set(options) <= {"steps", "alloc_conf", "cap_at_estimate"}


def test_the_documented_follow_up_selects_exactly_its_cases():
    # bench/gpu_session.sh's header gives the next session's MEM_ONLY; its substrings must pick the
    # eight follow-up variants (first) and the four cases the 2026-12-04 run had no time for, nothing else.
    mm = _measure_memory()
    script = (REPO / "bench" / "gpu_session.sh").read_text(encoding="utf-8")
    (only,) = re.findall(r'^#\s+STEPS="memory" MEM_ONLY="([^"]+)"', script, flags=re.M)
    names = mm.select(only)
    assert names[:8] == [n for s in ("12steps", "expandable", "capped") for n in mm.VARIANTS if n.endswith(s)]
    assert set(names[:8]) == set(mm.VARIANTS)
    assert names[8:] == ["l32-1b/lora-qv-r8+3tokens/bf16/nockpt/b4s512", "l2-7b/freeze-4/bf16/ckpt/b4s1024/adamw8bit",
                         "q3-1.7b/lora-all-r16/bf16/nockpt/b4s1024", "g3-1b/full/bf16/ckpt/b2s1024"]


def test_smoke_variants_pass_their_options_to_the_child(tmp_path):
    # A variant's steps override --steps, its alloc_conf reaches the child's environment (with
    # PYTORCH_ALLOC_CONF, which would win, removed), and a capped case is run uncapped on the CPU
    # with the cap the parent computed from the estimate recorded.
    mm = _measure_memory()
    base = "l32-1b/lora-all-r16/bf16/nockpt/b4s1024/padded"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTORCH_CUDA_ALLOC_CONF", "PYTORCH_ALLOC_CONF")}
    env["PYTORCH_ALLOC_CONF"] = "expandable_segments:False"
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "measure_memory.py"), "--smoke", "--only", base + "/",
                           "--out", str(tmp_path), "--steps", "2"], capture_output=True, text=True, timeout=600,
                          cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (report,) = tmp_path.glob("memory-*.json")
    rows = {r["case"]: r for r in json.loads(report.read_text())["rows"]}
    assert list(rows) == [f"{base}/12steps", f"{base}/expandable", f"{base}/capped"]
    for row in rows.values():
        assert "error" not in row and row["steps"] == 12 and len(row["step_s"]) == 12, row
        assert row["options"] == mm.CASE_OPTIONS[row["case"]] and row["padded"]
    assert rows[f"{base}/12steps"]["alloc_conf"] == {"PYTORCH_ALLOC_CONF": "expandable_segments:False"}
    assert rows[f"{base}/expandable"]["alloc_conf"] == {"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"}
    capped = rows[f"{base}/capped"]
    assert capped["cap_result"] == "not applied (CPU smoke run)"
    assert capped["cap_bytes"] == mm.cap_bytes(mm.estimate_row(base, 80 * mm.GIB)) > 10 * mm.GIB
    assert "cap_bytes" not in rows[f"{base}/12steps"]
    table = (tmp_path / report.name.replace(".json", ".md")).read_text()
    assert "12 steps; allocator capped at" in table and "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True" in table


def test_markdown_shows_what_a_capped_or_expandable_gpu_case_did():
    mm = _measure_memory()
    base = "m-7b/lora-all-r16/bf16/ckpt/b2s2048/padded"
    gpu = dict(estimate_bytes=18 * mm.GIB, peak_allocated_bytes=17 * mm.GIB, peak_reserved_bytes=17 * mm.GIB,
               trainable=1, total=2)
    rows = [
        {"case": f"{base}/capped", **gpu, "options": mm.CASE_OPTIONS[f"{base}/capped"], "cap_bytes": 17 * mm.GIB,
         "cap_result": "out of memory at step 3", "device_used_per_step": [18 * mm.GIB, 18 * mm.GIB],
         "device_used_bytes": 18 * mm.GIB},
        {"case": f"{base}/capped", **gpu, "trainable": None, "total": None, "cap_bytes": 17 * mm.GIB,
         "cap_result": "out of memory while loading the model", "device_used_per_step": []},
        {"case": f"{base}/expandable", **gpu, "options": mm.CASE_OPTIONS[f"{base}/expandable"],
         "expandable_segments": False, "device_used_per_step": [18 * mm.GIB], "device_used_bytes": 18 * mm.GIB},
    ]
    lines = mm.markdown(rows, {"date": "d", "steps": 4}).splitlines()[4:]
    assert "allocator capped at 17.00 GiB (estimate - CUDA context): out of memory at step 3" in lines[0]
    assert "device GiB per step: 18.00, 18.00" in lines[0] and "| 18.00 | 18.00 | +0.0% |" in lines[0]
    assert "| no step completed | 18.00 |  |" in lines[1] and "out of memory while loading the model" in lines[1]
    assert "expandable_segments:True (but no expandable segment seen)" in lines[2]
