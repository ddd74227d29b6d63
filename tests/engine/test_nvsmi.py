"""The GPUs as the driver reports them (engine/nvsmi.py), and the estimate judged against the
memory other programs leave.

No GPU here: a stand-in ``nvidia-smi`` on PATH prints what nvidia-smi prints for these queries
(``--format=csv,noheader,nounits``), so the real subprocess call, parsing and matching run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine import nvsmi
from engine.cli import main
from engine.config import RunConfig
from engine.memory import estimate
from engine.memory import peak as peak_module
from engine.memory.peak import GpuInfo

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "bench" / "model_configs"
GIB = 1 << 30
UUID_A = "GPU-5c1a2b3d-0000-1111-2222-333344445555"
UUID_B = "GPU-9f8e7d6c-aaaa-bbbb-cccc-ddddeeeeffff"
# Two GPUs, as an RTX 4090 workstation with an older card beside it shows them: the second
# reports no power draw, as many do.
GPUS = (f"0, {UUID_A}, NVIDIA GeForce RTX 4090, 24564, 9310, 87, 71, 412.35, 450.00\n"
        f"1, {UUID_B}, NVIDIA GeForce GTX 1080 Ti, 11264, 1, 0, 34, [N/A], [N/A]\n")
APPS = (f"{UUID_A}, 4242, /home/ana/.venv/bin/python, 7680\n"
        f"{UUID_A}, 5150, /usr/bin/ollama, 1024\n")


def test_query_reads_every_gpu_and_its_processes(smi_on_path):
    script = smi_on_path(GPUS, APPS)
    gpus = nvsmi.query()
    assert [g.index for g in gpus] == [0, 1]
    a, b = gpus
    assert (a.uuid, a.name, a.total_bytes, a.used_bytes) == (UUID_A, "NVIDIA GeForce RTX 4090", 24564 << 20, 9310 << 20)
    assert (a.utilization_pct, a.temperature_c, a.power_w, a.power_limit_w) == (87, 71, 412.35, 450.0)
    assert [(p.pid, p.name, p.used_bytes) for p in a.processes] == [
        (4242, "/home/ana/.venv/bin/python", 7680 << 20), (5150, "/usr/bin/ollama", 1024 << 20)]
    # "[N/A]" is "can't say", not zero and not an error; a GPU without processes has none.
    assert (b.power_w, b.power_limit_w, b.utilization_pct, b.processes) == (None, None, 0, ())
    calls = (script.parent / "calls.log").read_text().splitlines()
    assert len(calls) == 2 and any("--query-gpu=index,uuid,name,memory.total" in c for c in calls)


def test_process_names_with_commas_and_unreported_memory(smi_on_path):
    smi_on_path(f"0, {UUID_A}, NVIDIA H100 80GB HBM3, 81559, 20000, 3, 40, 90.1, 700.00\n",
                f"{UUID_A}, 77, /opt/my, odd/app, [N/A]\nNo running processes found\n")
    (gpu,) = nvsmi.query()
    assert [(p.pid, p.name, p.used_bytes) for p in gpu.processes] == [(77, "/opt/my, odd/app", None)]


@pytest.mark.parametrize("kw", [{"rc": 9}, {"gpus": "NVIDIA-SMI has failed because it couldn't communicate "
                                                    "with the NVIDIA driver.\n"}, {"sleep": 3}],
                         ids=["fails", "no-driver", "hangs"])
def test_a_failing_or_hanging_nvidia_smi_is_dont_know(smi_on_path, kw):
    script = smi_on_path(**{"gpus": GPUS, "apps": APPS, **kw})
    assert nvsmi.query(timeout_s=1.0) is None
    assert nvsmi.query(smi=str(script.parent / "nothing-here"), timeout_s=1.0) is None


def test_no_nvidia_smi_at_all_is_dont_know(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert nvsmi.query() is None
    assert peak_module.gpu_others("whatever", "NVIDIA GeForce RTX 4090") == (None, [])


def test_cuda_gpu_is_told_apart_by_uuid_visible_devices_or_a_unique_name(smi_on_path, monkeypatch):
    smi_on_path(GPUS, APPS)
    gpus = nvsmi.query()
    # torch's uuid has no "GPU-" prefix
    assert nvsmi.cuda_gpu(gpus, uuid=UUID_B.removeprefix("GPU-")).index == 1
    assert nvsmi.cuda_gpu(gpus, name="NVIDIA GeForce GTX 1080 Ti").index == 1
    # Two GPUs and nothing to tell them apart: don't guess.
    assert nvsmi.cuda_gpu(gpus) is None
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", UUID_B[:12])
    assert nvsmi.cuda_gpu(gpus).index == 1
    # An index means nvidia-smi's index only in PCI bus order; CUDA's default is fastest first.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert nvsmi.cuda_gpu(gpus) is None
    monkeypatch.setenv("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    assert nvsmi.cuda_gpu(gpus).index == 1
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert nvsmi.cuda_gpu(gpus) is None
    assert nvsmi.cuda_gpu(gpus[:1]) is None  # hidden by CUDA_VISIBLE_DEVICES=""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert nvsmi.cuda_gpu(gpus[:1]).index == 0  # one GPU: no doubt


def test_memory_of_this_apps_own_workers_is_not_another_programs(smi_on_path, tmp_path):
    smi_on_path(GPUS, APPS)
    gpu = nvsmi.query()[0]
    held, others = gpu.held_by_others()
    assert held == 9310 << 20
    assert [p.pid for p in others] == [4242, 5150]  # biggest first
    held, others = gpu.held_by_others({4242})
    assert held == (9310 - 7680) << 20
    assert [p.pid for p in others] == [5150]
    # 9310 MiB used, 8704 listed: the ~0.6 GiB rest is the desktop or the driver, and is said.
    text = nvsmi.describe_others(9310 << 20, [p.to_dict() for p in gpu.processes])
    assert text.startswith("python (pid 4242) 7.50 GiB, ollama (pid 5150) 1.00 GiB, 0.59 GiB not listed")
    # In a container nvidia-smi often lists no process at all.
    assert nvsmi.describe_others(9310 << 20, []).startswith("no process listed: the desktop, the driver")


def test_own_worker_pids_are_the_live_ones_in_the_runs_folder(studio_home):
    from engine.paths import runs_dir

    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        for name, pid in (("live-run", live.pid), ("ended-run", dead.pid)):
            (runs_dir() / name).mkdir(parents=True)
            (runs_dir() / name / "worker.pid").write_text(str(pid))
        (runs_dir() / "garbled").mkdir()
        (runs_dir() / "garbled" / "worker.pid").write_text("not a pid")
        pids = nvsmi.own_worker_pids()
    finally:
        live.kill()
        live.wait()
    assert live.pid in pids and dead.pid not in pids and os.getpid() in pids


def _cfg(**kw) -> RunConfig:
    return RunConfig.from_dict({"model": str(CONFIGS / "llama3.2-1b"), "method": "lora", "seq_len": 1024,
                                "gradient_checkpointing": True, **kw})


def test_the_verdict_judges_what_other_programs_leave():
    cfg = _cfg(batch_size=4)
    gpu = 24 * GIB
    alone = estimate(cfg, gpu)
    assert alone.fits == "yes" and alone.gpu_available_bytes == gpu and alone.gpu_others_bytes is None
    others = [{"pid": 4242, "name": "/home/ana/.venv/bin/python", "bytes": 18 * GIB}]
    busy = estimate(cfg, gpu, gpu_others_bytes=19 * GIB, gpu_others=others)
    assert busy.peak_bytes == alone.peak_bytes  # the run needs the same; it has less
    assert busy.gpu_available_bytes == 5 * GIB
    assert busy.fits == estimate(cfg, 5 * GIB).fits == "no"
    assert busy.max_batch_size == estimate(cfg, 5 * GIB).max_batch_size < alone.max_batch_size
    assert busy.suggestions == estimate(cfg, 5 * GIB).suggestions != []
    assert any("other programs hold 19.00 GiB" in n and "python (pid 4242) 18.00 GiB" in n and "5.00 GiB left" in n
               for n in busy.notes)
    d = busy.to_dict()
    assert (d["gpu_bytes"], d["gpu_others_bytes"], d["gpu_available_bytes"]) == (gpu, 19 * GIB, 5 * GIB)
    assert d["gpu_others"] == others
    # That note is marked by its kind, in the JSON too (the gauge says it its own way and leaves it out),
    # and stays in "notes" for what reads those: the JSON only gained a key.
    assert d["notes_by_kind"] == {"gpu_others": next(n for n in busy.notes if "other programs hold" in n)}
    assert d["notes_by_kind"]["gpu_others"] in d["notes"]
    assert alone.notes_by_kind == {} and alone.to_dict()["notes_by_kind"] == {}
    # A GPU that others fill completely: "no", not "no GPU".
    full = estimate(cfg, gpu, gpu_others_bytes=30 * GIB)
    assert (full.fits, full.max_batch_size, full.gpu_available_bytes) == ("no", 0, 1)


def test_the_data_estimate_judges_the_same_room(tmp_path):
    from engine.data.lengths import DataLengths

    cfg = _cfg(batch_size=8, seq_len=4096)
    data = DataLengths(path="x.jsonl", records=100, longest=300, truncated=0, seq_len=4096)
    busy = estimate(cfg, 24 * GIB, gpu_others_bytes=20 * GIB, data=data)
    same = estimate(cfg, 4 * GIB, data=data)
    assert busy.data["fits"] == same.data["fits"]
    assert busy.data["max_batch_size"] == same.data["max_batch_size"]


def test_a_detected_gpu_asks_nvidia_smi_who_holds_memory(smi_on_path, monkeypatch):
    smi_on_path(GPUS, APPS)

    def detect():
        held, others = peak_module.gpu_others(UUID_A.removeprefix("GPU-"), "NVIDIA GeForce RTX 4090")
        return GpuInfo(name="NVIDIA GeForce RTX 4090", total_bytes=24 * GIB, others_bytes=held, others=tuple(others))

    monkeypatch.setattr(peak_module, "detect_gpu", detect)
    est = estimate(_cfg(batch_size=4))
    assert est.gpu_source == "detected"
    assert est.gpu_others_bytes == 9310 << 20
    assert [o["pid"] for o in est.gpu_others] == [4242, 5150]
    assert est.gpu_available_bytes == 24 * GIB - (9310 << 20)


def test_estimate_cli_says_what_is_left(smi_on_path, monkeypatch, tmp_path, capsys):
    smi_on_path(GPUS, APPS)
    monkeypatch.setattr(peak_module, "detect_gpu", lambda: GpuInfo(
        name="NVIDIA GeForce RTX 4090", total_bytes=24 * GIB, others_bytes=20 * GIB,
        others=({"pid": 4242, "name": "python", "bytes": 19 * GIB},)))
    run = tmp_path / "run.yaml"
    run.write_text(f"model: {CONFIGS / 'llama3.2-1b'}\nmethod: lora\nseq_len: 1024\nbatch_size: 4\n")
    assert main(["estimate", str(run), "--no-data"]) == 0
    out = capsys.readouterr().out
    assert "24.00 GiB, 20.00 GiB held by other programs, 4.00 GiB left -> fits: no" in out
    assert "of what is left" in out and "python (pid 4242) 19.00 GiB" in out


def test_gpu_command_prints_the_gpus_and_marks_our_runs(smi_on_path, monkeypatch, capsys):
    smi_on_path(GPUS, APPS)
    monkeypatch.setattr(nvsmi, "own_worker_pids", lambda: {5150})
    assert main(["gpu", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    a = rep["gpus"][0]
    assert a["others_bytes"] == (9310 - 1024) << 20
    assert [(p["pid"], p["ours"]) for p in a["processes"]] == [(4242, False), (5150, True)]
    assert main(["gpu"]) == 0
    out = capsys.readouterr().out
    assert "GPU 0: NVIDIA GeForce RTX 4090: 9.09 of 23.99 GiB in use, 87% busy, 71 °C, 412 W of 450" in out
    assert "pid    5150    1.00 GiB  /usr/bin/ollama  (a Finetune Studio run)" in out
    assert "GPU 1: NVIDIA GeForce GTX 1080 Ti: 0.00 of 11.00 GiB in use, 0% busy, 34 °C\n" in out
    assert "no compute process holds memory on it" in out


def test_gpu_command_without_nvidia_smi_says_so(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main(["gpu"]) == 1
    assert "no nvidia-smi answered" in capsys.readouterr().out


@pytest.mark.parametrize("bad", ["0", "-1", "soon", "inf"])
def test_gpu_watch_needs_a_real_interval(bad, capsys):
    with pytest.raises(SystemExit) as e:
        main(["gpu", "--watch", bad])
    assert e.value.code == 2
    assert "--watch" in capsys.readouterr().err


def _warnings(cfg, env, longest=0) -> list[dict]:
    import io

    from engine.events import EventWriter
    from engine.train import _warn_busy_gpu

    out = io.StringIO()
    _warn_busy_gpu(cfg, env, longest, EventWriter(out))
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_run_warns_before_loading_when_others_leave_too_little(smi_on_path):
    from engine.precision import Environment

    smi_on_path(GPUS, APPS)
    cfg = _cfg(batch_size=4)
    need = estimate(cfg, 24 * GIB)
    need = need.peak_bytes - need.breakdown["cuda_context"]
    env = Environment(cuda=True, gpu_name="NVIDIA GeForce RTX 4090", gpu_total_bytes=24 * GIB,
                      gpu_free_bytes=need - (64 << 20))
    (event,) = _warnings(cfg, env)
    data = event
    assert event["event"] == "warning" and data["kind"] == "gpu_busy"
    assert data["need_bytes"] == need and data["free_bytes"] == need - (64 << 20)
    assert "other programs hold 9.09 GiB (python (pid 4242) 7.50 GiB, ollama (pid 5150) 1.00 GiB" in data["message"]
    assert [o["pid"] for o in data["others"]] == [4242, 5150]
    assert "finetune-studio gpu" in data["hint"]
    # Enough free: nothing said. No GPU, or free memory unknown: nothing said.
    assert _warnings(cfg, Environment(**{**env.to_dict(), "gpu_free_bytes": need + (64 << 20)})) == []
    assert _warnings(cfg, Environment.cpu_only()) == []
    assert _warnings(cfg, Environment(**{**env.to_dict(), "gpu_free_bytes": None})) == []


def test_the_runs_warning_is_for_the_datas_longest_record(smi_on_path):
    from engine.precision import Environment

    smi_on_path(GPUS, APPS)
    cfg = _cfg(batch_size=4, seq_len=4096)
    at_seq = estimate(cfg, 24 * GIB)
    short = estimate(cfg.replace(seq_len=320), 24 * GIB)
    free = (at_seq.peak_bytes + short.peak_bytes) // 2 - at_seq.breakdown["cuda_context"]
    env = Environment(cuda=True, gpu_name="NVIDIA GeForce RTX 4090", gpu_total_bytes=24 * GIB, gpu_free_bytes=free)
    assert _warnings(cfg, env, longest=300) == []  # padded to 320: fits what is free
    assert len(_warnings(cfg, env, longest=4000)) == 1
    assert len(_warnings(cfg.replace(packing=True), env, longest=300)) == 1  # packed batches are seq_len long


def test_a_runs_device_peak_leaves_out_what_others_held_before_it(smi_on_path, monkeypatch):
    """The run's measured peak is compared with the estimate (probe, "measured on this machine",
    the per-GPU correction): a notebook's 8 GiB must not read as the run's."""
    import types

    import torch

    from engine.train import _gpu_used_before, _run_gpu, device_peak

    smi_on_path(GPUS, APPS)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: types.SimpleNamespace(
        name="NVIDIA GeForce RTX 4090", uuid=UUID_A.removeprefix("GPU-")))
    cfg = _cfg()
    assert _run_gpu(cfg).uuid == UUID_A
    assert _gpu_used_before(_run_gpu(cfg)) == 9310 << 20
    assert _run_gpu(cfg.replace(device="cpu")) is None
    assert _gpu_used_before(None) is None
    monkeypatch.setenv("WORLD_SIZE", "2")  # a launcher's ranks: each has its own GPU and its own view
    assert _run_gpu(cfg) is None
    monkeypatch.delenv("WORLD_SIZE")
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: types.SimpleNamespace(
        name="NVIDIA RTX 6000 Ada", uuid="not-one-of-these"))
    assert _run_gpu(cfg) is None  # two GPUs, neither torch's: can't be told
    # total - free at the end of the run, less what others held before it; never below torch's own.
    gib = GIB
    assert device_peak(24 * gib, 4 * gib, 8 * gib, 11 * gib) == 12 * gib
    assert device_peak(24 * gib, 4 * gib, None, 11 * gib) == 20 * gib
    assert device_peak(24 * gib, 14 * gib, 8 * gib, 3 * gib) == 3 * gib  # others left during the run


def test_nothing_is_asked_of_nvidia_smi_without_it(monkeypatch, tmp_path):
    from engine.train import _run_gpu

    monkeypatch.setenv("PATH", str(tmp_path))
    assert _run_gpu(_cfg()) is None
