"""The GPU now in the Train area: readings from nvidia-smi (a stand-in here, printing its CSV), and
the estimate's verdict judging what other programs leave."""

from __future__ import annotations

from pathlib import Path

from gui.train.gpu_monitor import GpuMonitor, describe_reading, reading

GiB = 2**30
REPO = Path(__file__).resolve().parents[3]
UUID = "GPU-11112222-3333-4444-5555-666677778888"


def _gpus(used_mib: int) -> str:
    return f"0, {UUID}, Test GPU 24GB, 24576, {used_mib}, 64, 66, 301.50, 350.00\n"


def test_a_reading_names_who_holds_the_memory(smi_on_path):
    smi_on_path(_gpus(20480), f"{UUID}, 4242, /home/ana/.venv/bin/python, 19968\n")
    r = reading("Test GPU 24GB")
    assert r["others_bytes"] == 20480 << 20 and r["ours_bytes"] == 0
    assert r["others"] == [{"pid": 4242, "name": "/home/ana/.venv/bin/python", "bytes": 19968 << 20}]
    text = describe_reading(r)
    assert text.startswith("Now: 20.0 of 24.0 GiB in use, ")
    assert "20.0 GiB by other programs</span> [python (pid 4242) 19.50 GiB, 0.50 GiB not listed, e.g. the desktop" in text
    assert text.endswith("64% busy, 66 °C, 302 W")
    # Two GPUs, neither called as torch's: the one it uses can't be told, so nothing is said.
    smi_on_path(_gpus(20480) + "1, GPU-99, Other GPU, 8192, 10, 0, 30, 20.00, 100.00\n")
    assert reading("Test GPU 24GB")["gpu"]["index"] == 0
    assert reading("A third GPU") is None


def test_the_monitor_reads_off_the_ui_thread_and_says_when_it_cant(qtbot, smi_on_path, tmp_path, monkeypatch):
    smi_on_path(_gpus(100))
    monitor = GpuMonitor(interval_ms=50)
    with qtbot.waitSignal(monitor.sig_reading, timeout=10_000) as got:
        monitor.start("Test GPU 24GB")
    assert got.args[0]["gpu"]["used_bytes"] == 100 << 20
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    qtbot.waitUntil(lambda: monitor._busy is False, timeout=10_000)
    with qtbot.waitSignal(monitor.sig_reading, timeout=10_000, check_params_cb=lambda r: r is None):
        pass
    monitor.shutdown()
    assert not monitor.is_active()


def test_the_verdict_follows_what_other_programs_hold(make_area, gpu_env, qtbot, smi_on_path):
    smi = smi_on_path(_gpus(20480), f"{UUID}, 4242, /home/ana/.venv/bin/python, 19968\n")
    area = make_area(gpu_env)
    area.gpu_monitor.timer.setInterval(100)
    area.config_model.update({"model": str(REPO / "bench" / "model_configs" / "llama3.2-1b"), "method": "lora",
                              "load_in": "bf16", "mixed_precision": "bf16", "batch_size": 4, "seq_len": 1024,
                              "gradient_checkpointing": True, "gradient_accumulation_steps": 1})
    qtbot.waitUntil(lambda: area.estimate is not None and area.estimate.gpu_others_bytes == 20480 << 20,
                    timeout=180_000)
    est = area.estimate
    assert est.gpu_bytes == 24 * GiB and est.gpu_available_bytes == 4 * GiB
    assert est.fits == "no", est.peak_bytes / GiB
    assert "does not fit" in area.gauge.verdict.text()
    assert "by other programs" in area.gpu_panel.now.text() and area.gpu_panel.now.isVisible()
    assert "python (pid 4242)" in area.gauge.details.text() + area.gauge.toolTip() + " ".join(est.notes)
    # The notebook is closed: the next reading frees the memory, and the verdict follows.
    (smi.parent / "gpus.txt").write_text(_gpus(200))
    (smi.parent / "apps.txt").write_text("")
    qtbot.waitUntil(lambda: area.estimate.gpu_others_bytes == 200 << 20, timeout=60_000)
    assert area.estimate.fits == "yes"
    assert "by other programs" not in area.gpu_panel.now.text()
    # Planning for another GPU size: others' memory is not subtracted from a GPU that isn't this one.
    assert area.gauge.select_target(16 * GiB)
    qtbot.waitUntil(lambda: area.estimate.gpu_bytes == 16 * GiB, timeout=60_000)
    assert area.estimate.gpu_others_bytes is None and area.estimate.gpu_available_bytes == 16 * GiB
    # Hidden, the area stops reading the GPU.
    area.hide()
    assert not area.gpu_monitor.is_active()


def test_no_gpu_no_readings(make_area):
    area = make_area()
    assert not area.gpu_monitor.is_active()
    assert area.gpu_panel.now.isHidden()
