"""The live VRAM gauge: follows every config change, off the UI thread; Fit to my GPU."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from PySide6.QtCore import Qt

from engine.config import RunConfig
from gui.train.vram_gauge import NBSP, FitDialog, fmt_bytes

GiB = 2**30
REPO = Path(__file__).resolve().parents[3]


def test_gauge_updates_on_a_config_change_without_blocking(make_area, qtbot):
    area = make_area()
    assert area.estimator.wait(180_000), "the first estimate never arrived"
    first = area.estimate
    assert first is not None and area.gauge.bar.parts
    assert "Peak" in area.gauge.details.text()
    spin = area.editors["batch_size"].spin
    with qtbot.waitSignal(area.estimator.sig_estimate, timeout=10_000) as blocker:
        spin.setValue(spin.value() * 4)  # what a keystroke in the spin box does
        # The change returns before the new estimate exists: it is computed elsewhere, not on the UI thread.
        assert area.gauge.estimate is first
    est, _latency_ms = blocker.args
    assert est.peak_bytes > first.peak_bytes  # more activations
    assert est.breakdown["activations"] > first.breakdown["activations"]
    assert area.gauge.estimate is est
    # Elsewhere is the estimate child process (its latency is bench/ui_stall.py's to measure: docs/ui-stall.md).
    proc = area.estimator.process._proc
    assert proc is not None and proc.poll() is None and proc.pid != os.getpid()


def test_the_gauge_says_what_the_run_writes_to_disk(make_area):
    from gui.train.vram_gauge import disk_line

    area = make_area()
    assert area.estimator.wait(180_000)
    disk = area.estimate.disk
    assert disk["checkpoint_bytes"] > 0 and "Disk: checkpoints ≈" in area.gauge.details.text()
    short = {**disk, "need_bytes": 100 * GiB, "free_bytes": 10 * GiB, "fits": False, "checkpoints_at_once": 4}
    line = disk_line(short)
    assert "needs 100.00\u00a0GiB, 10.00\u00a0GiB free" in line and "d0342c" in line and "save_total_limit" in line
    assert ", final model " in line and "final/" not in line
    assert "all kept" in disk_line({**disk, "checkpoints_at_once": None, "need_bytes": None})


def test_a_burst_of_changes_is_coalesced(make_area, qtbot):
    area = make_area()
    assert area.estimator.wait(180_000)
    before = area.estimator.computed
    spin = area.editors["seq_len"].spin
    for v in (300, 301, 302, 303, 304, 305):
        spin.setValue(v)
    assert area.estimator.wait(10_000)
    assert area.estimator.computed - before <= 2
    assert area.estimate is not None


def test_a_slow_estimate_says_the_gauge_shows_the_previous_configs_numbers(make_area, qtbot, monkeypatch):
    area = make_area()
    assert area.estimator.wait(180_000)
    gauge = area.gauge
    assert gauge.updating.isHidden()
    real = area.estimator.process.estimate
    monkeypatch.setattr(area.estimator.process, "estimate", lambda *a: (time.sleep(1.2), real(*a))[1])
    with qtbot.waitSignal(area.estimator.sig_slow, timeout=5_000) as slow:
        area.editors["batch_size"].spin.setValue(area.editors["batch_size"].spin.value() * 2)
    assert slow.args == [True] and not gauge.updating.isHidden() and not gauge.bar.isEnabled()
    with qtbot.waitSignal(area.estimator.sig_slow, timeout=10_000) as done:
        pass
    assert done.args == [False] and gauge.updating.isHidden() and gauge.bar.isEnabled()


def test_an_estimate_computed_for_a_config_that_became_invalid_is_not_shown(make_area, qtbot, monkeypatch):
    area = make_area()
    assert area.estimator.wait(180_000)
    real = area.estimator.process.estimate
    monkeypatch.setattr(area.estimator.process, "estimate", lambda *a: (time.sleep(1.0), real(*a))[1])  # slow
    area.editors["batch_size"].spin.setValue(area.editors["batch_size"].spin.value() * 2)
    qtbot.waitUntil(lambda: area.estimator._busy, timeout=10_000)  # its estimate is being computed
    area.config_model.update({"lora_init": "pissa", "use_dora": True})  # invalid together
    assert area.estimator.wait(30_000)
    assert area.gauge.estimate is None and not area.gauge.bar.parts
    assert "No estimate: fix the config problems" in area.gauge.details.text()
    area.config_model.set("use_dora", False)
    assert area.estimator.wait(30_000) and area.gauge.estimate is not None  # valid again: estimated again


def test_fit_to_my_gpu_applies_the_first_suggestion_that_fits(make_area, qtbot, monkeypatch):
    area = make_area()
    area.config_model.update({"model": str(REPO / "bench" / "model_configs" / "llama2-7b"),
                              "load_in": "bf16", "mixed_precision": "bf16", "batch_size": 8, "seq_len": 2048,
                              "gradient_accumulation_steps": 1})
    assert area.gauge.select_target(16 * GiB)
    qtbot.waitUntil(lambda: area.estimate is not None and area.estimate.gpu_bytes == 16 * GiB
                    and area.estimate.fits == "no", timeout=180_000)
    assert "does not fit" in area.gauge.verdict.text()
    assert area.gauge.fit_button.isEnabled()
    suggestions = area.estimate.suggestions
    expected = suggestions[FitDialog.best_index(suggestions)]
    assert expected["fits"] in ("yes", "tight")
    monkeypatch.setattr(FitDialog, "exec", lambda self: 1)  # the user confirms
    qtbot.mouseClick(area.gauge.fit_button, Qt.MouseButton.LeftButton)
    values = area.config_model.values()
    for key, value in expected["changes"].items():
        assert values[key] == value
    qtbot.waitUntil(lambda: area.estimate.fits in ("yes", "tight") and area.estimate.gpu_bytes == 16 * GiB,
                    timeout=30_000)


def test_measured_peak_is_shown_beside_the_estimate(make_area):
    area = make_area()
    assert area.estimator.wait(180_000)
    area.gauge.set_measured(3 * GiB, "(whole GPU)")
    assert "Measured peak 3.00 GiB" in area.gauge.details.text()
    assert area.gauge.bar.measured == 3 * GiB


def test_a_measured_peak_before_the_first_estimate_is_not_lost(qtbot):
    from gui.train.vram_gauge import VramGauge

    gauge = VramGauge()
    qtbot.addWidget(gauge)
    assert gauge.estimate is None
    gauge.set_measured(None, "The last run trained on the CPU: no GPU peak to compare.")
    assert "trained on the CPU" in gauge.details.text()
    gauge.set_measured(3 * GiB, "(whole GPU)")
    assert "Measured peak 3.00 GiB (whole GPU)" in gauge.details.text()


def test_the_trainable_share_of_a_full_run_reads_100_percent(qtbot):
    """A full fine-tune trains every weight: '(100%)', not the '%.2g' '(1e+02%)'."""
    from gui.train.vram_gauge import VramGauge

    gauge = VramGauge()
    qtbot.addWidget(gauge)
    est = {"peak_bytes": GiB, "breakdown": {"weights": GiB}, "trainable_params": 1_000_576,
           "total_params": 1_000_576, "notes": []}
    gauge.set_estimate(est)
    assert "parameters (100%)" in gauge.details.text()
    gauge.set_estimate({**est, "trainable_params": 10_240, "total_params": 1_010_816})
    assert "parameters (1%)" in gauge.details.text()
    gauge.set_estimate({**est, "trainable_params": 123, "total_params": 1_000_000})
    assert "parameters (0.012%)" in gauge.details.text()


def test_the_trainable_share_is_rounded_and_whole_with_the_exact_counts_as_the_tooltip(qtbot):
    """'trainable 149,504 of 1,150,080 parameters (13%)' ran past the 1360-px window's pane and
    wrapped its '(13%)' onto a line of its own."""
    from gui.train.vram_gauge import VramGauge

    gauge = VramGauge()
    qtbot.addWidget(gauge)
    gauge.set_estimate({"peak_bytes": GiB, "breakdown": {"weights": GiB}, "trainable_params": 149_504,
                        "total_params": 1_150_080, "notes": []})
    text = gauge.details.text()
    assert "<span style='white-space:nowrap'>trainable 150K of 1.15M parameters (13%)</span>" in text
    assert gauge.details.toolTip() == "Trainable parameters: 149,504 of 1,150,080"
    # The records' failure keeps its place in the tooltip, after the counts.
    gauge.set_data_failed("no tokenizer in /models/x (tokenizer.json, tokenizer.model)")
    assert gauge.details.toolTip() == ("Trainable parameters: 149,504 of 1,150,080\n\nNo estimate with this dataset: "
                                       "no tokenizer in /models/x (tokenizer.json, tokenizer.model)")
    gauge.set_data_measuring()
    assert gauge.details.toolTip() == "Trainable parameters: 149,504 of 1,150,080"


def test_the_gauge_leaves_out_the_notes_it_says_otherwise_by_their_kind(qtbot):
    """What other programs hold has the gauge's own line, and 'no GPU detected' speaks CLI: the gauge
    leaves those notes out by ``notes_by_kind``, whatever their wording, and shows every other note. So is
    why this machine can't run the config, which the Train area's banner says."""
    from engine.memory import estimate
    from gui.train.vram_gauge import VramGauge

    gauge = VramGauge()
    qtbot.addWidget(gauge)
    others = "3 processes keep 9.00 GiB of this GPU busy (python (pid 4242) 8.00 GiB)"  # a new wording
    est = {"peak_bytes": 6 * GiB, "breakdown": {"weights": 6 * GiB}, "trainable_params": 1, "total_params": 2,
           "gpu_bytes": 24 * GiB, "gpu_others_bytes": 9 * GiB, "gpu_available_bytes": 15 * GiB, "fits": "yes",
           "max_batch_size": 8, "seq_len": 512,
           "notes": ["DoRA's temporaries are estimated from PEFT's code, not measured", others,
                     "other programs hold tea cups: not the engine's note on them, so it shows"],
           "notes_by_kind": {"gpu_others": others}}
    gauge.set_estimate(est)
    text = gauge.details.text()
    assert others not in text and "Other programs hold 9.00 GiB of this 24.00 GiB GPU now" in text
    assert "DoRA's temporaries are estimated" in text and "other programs hold tea cups" in text
    gauge.set_estimate({**est, "gpu_bytes": None, "gpu_others_bytes": None, "gpu_available_bytes": None,
                        "notes": ["GPUs are hard to find", "DoRA's temporaries are estimated"],
                        "notes_by_kind": {"no_gpu_detected": "GPUs are hard to find"}})
    text = gauge.details.text()
    assert "GPUs are hard to find" not in text and "DoRA's temporaries are estimated" in text
    assert "no GPU to compare with: pick a size under “Plan for”" in text
    # Why this machine can't run it is the Train area's banner: the gauge doesn't say it a second time.
    cant = "this machine can't run it (train refuses it): no CUDA here, in any words"
    gauge.set_estimate({**est, "notes": [cant, "DoRA's temporaries are estimated"],
                        "notes_by_kind": {"cannot_run_here": cant}})
    text = gauge.details.text()
    assert "no CUDA here" not in text and "DoRA's temporaries are estimated" in text
    # The engine's own estimate, as the estimate process sends it: its note on the other programs is
    # left out, and the gauge's line names them.
    cfg = RunConfig.from_dict({"model": str(REPO / "bench" / "model_configs" / "llama3.2-1b"), "method": "lora",
                               "seq_len": 1024, "gradient_checkpointing": True, "batch_size": 4})
    real = estimate(cfg, 24 * GiB, gpu_others_bytes=19 * GiB,
                    gpu_others=[{"pid": 4242, "name": "/home/ana/.venv/bin/python", "bytes": 18 * GiB}]).to_dict()
    gauge.set_estimate(real)
    text = gauge.details.text()
    assert real["notes_by_kind"]["gpu_others"] in real["notes"] and real["notes_by_kind"]["gpu_others"] not in text
    assert "Other programs hold 19.00 GiB of this 24.00 GiB GPU now" in text


def test_gauge_fits_a_narrow_pane_without_clipping(qtbot):
    """Narrow: "Plan for" wraps under the title and the legend takes fewer columns; wide: back."""
    from types import SimpleNamespace

    from gui.train.vram_gauge import VramGauge

    gauge = VramGauge()
    qtbot.addWidget(gauge)
    parts = {"weights": 4 * 2**20, "optimizer_states": 2**20, "activations": 80 * 2**20,
             "logits_and_loss": 48 * 2**20, "workspace": 64 * 2**20, "allocator_slack": 269 * 2**20,
             "cuda_context": 768 * 2**20}
    gauge.resize(1000, 200)
    gauge.show()
    qtbot.waitExposed(gauge)
    gauge.set_estimate(SimpleNamespace(breakdown=parts, peak_bytes=sum(parts.values()), gpu_bytes=None,
                                       fits=None, trainable_params=1, total_params=2, max_batch_size=None,
                                       suggestions=[]))
    assert gauge.header.indexOf(gauge.controls) >= 0 and gauge._legend_cols == 4
    gauge.resize(360, 260)
    qtbot.waitUntil(lambda: gauge.controls_row.indexOf(gauge.controls) >= 0)
    assert gauge.header.indexOf(gauge.controls) < 0
    assert gauge._legend_cols < 4
    widest = max(label.sizeHint().width() for label in gauge._legend_labels if not label.isHidden())
    assert gauge._legend_cols * widest <= 360
    gauge.resize(1000, 200)
    qtbot.waitUntil(lambda: gauge.header.indexOf(gauge.controls) >= 0)
    assert gauge._legend_cols == 4


def test_the_fit_dialog_wraps_each_suggestion_instead_of_cutting_it(qtbot):
    from PySide6.QtCore import QRect

    gib = 2**30
    steps = {"gradient_checkpointing": True, "batch_size": 1, "gradient_accumulation_steps": 16,
             "optimizer": "adamw_8bit", "method": "lora", "load_in": "bf16"}
    suggestions = [
        {"description": "8-bit AdamW (bitsandbytes): optimizer states 2 instead of 8 bytes per trainable parameter",
         "changes": dict(list(steps.items())[:4]), "peak_bytes": 30 * gib, "fits": "no"},
        {"description": "LoRA adapters instead of updating the base weights", "changes": steps,
         "peak_bytes": 15 * gib, "fits": "yes"},
    ]
    dialog = FitDialog(suggestions, 24 * gib)
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    for width in (600, 420):  # as opened, and narrowed by the user: the lines re-wrap
        dialog.resize(width, 440)
        qtbot.wait(50)
        view = dialog.list
        assert view.horizontalScrollBar().maximum() == 0
        metrics = view.fontMetrics()
        for row in range(view.count()):
            item = view.item(row)
            rect = view.visualItemRect(item)
            assert rect.right() <= view.viewport().width()
            needed = metrics.boundingRect(QRect(0, 0, rect.width() - 8, 10_000), Qt.TextFlag.TextWordWrap,
                                          item.text()).height()
            assert rect.height() >= needed, (width, row, rect.height(), needed)
            assert needed > 2 * metrics.lineSpacing()  # longer than the two lines it was cut to


def test_the_fit_dialog_applies_on_enter_and_on_a_double_click(qtbot):
    """Cancel was drawn as the default button: Enter dismissed the dialog the user opened to apply a step."""
    from PySide6.QtWidgets import QDialog, QDialogButtonBox

    gib = 2**30
    suggestions = [{"description": "gradient checkpointing", "changes": {"gradient_checkpointing": True},
                    "peak_bytes": 30 * gib, "fits": "no"},
                   {"description": "batch 1", "changes": {"batch_size": 1}, "peak_bytes": 15 * gib, "fits": "yes"}]
    for how in ("enter", "double-click"):
        dialog = FitDialog(suggestions, 24 * gib)
        qtbot.addWidget(dialog)
        dialog.show()
        qtbot.waitExposed(dialog)
        if how == "enter":
            qtbot.keyClick(dialog.list, Qt.Key.Key_Return)
        else:
            item = dialog.list.item(0)
            dialog.list.setCurrentItem(item)
            dialog.list.itemDoubleClicked.emit(item)
        assert dialog.result() == QDialog.DialogCode.Accepted, how
        assert dialog.list.currentRow() == (1 if how == "enter" else 0)
        assert dialog.findChild(QDialogButtonBox).button(QDialogButtonBox.StandardButton.Apply).isDefault()


def test_plan_for_sizes_read_with_the_right_article(qtbot):
    from gui.train.vram_gauge import VramGauge

    gauge = VramGauge()
    qtbot.addWidget(gauge)
    items = [gauge.target.itemText(i) for i in range(gauge.target.count())]
    assert "an 8 GiB GPU" in items and "an 80 GiB GPU" in items and "a 24 GiB GPU" in items
    assert not [t for t in items if t.startswith("a 8")]


# ---- The estimate with the data (the run's records measured in a second child process)
def _engine_data_estimate(area, gpu_bytes):
    """What the engine says in-process for the form's config, with its records measured."""
    from engine.data.lengths import data_lengths
    from engine.memory import estimate

    cfg = area.config_model.config_ignoring_machine()
    return estimate(cfg, gpu_bytes, data=data_lengths(cfg)).data


def test_the_gauge_shows_the_estimate_with_the_data(make_area):
    area = make_area()
    assert area.gauge.select_target(12 * GiB)
    assert area.wait_ready(180_000)
    expected = _engine_data_estimate(area, 12 * GiB)
    assert area.estimate.data == expected
    text = area.gauge.details.text().replace("\u00a0", " ")
    # The demo's records stay under seq_len 256: the peak with them is the run's, judged first.
    assert expected["peak_bytes"] < area.estimate.peak_bytes
    assert text.startswith(f"<span style='color:#1565c0'>▍</span>With this dataset (366 records, longest "
                           f"{expected['longest_record']} tokens): ≈ <b>{fmt_bytes(expected['peak_bytes'])}</b> of "
                           f"12.00 GiB · a batch of all 366 records fits")
    assert expected["max_batch_size"] >= 366  # memory allows more than there are records
    assert f"At the full seq_len 256: ≈ {fmt_bytes(area.estimate.peak_bytes)}" \
        in text
    assert expected["fits"] == "yes" and "fits with this dataset" in area.gauge.verdict.text().replace("&nbsp;", " ")
    assert area.gauge.bar.data_peak == expected["peak_bytes"]  # the tick on the bar, at the end of its fill
    assert sum(b for _, b, _ in area.gauge.bar.parts) == expected["peak_bytes"]


def test_only_what_the_records_depend_on_measures_them_again(make_area, qtbot, small_dataset):
    area = make_area()
    assert area.wait_ready(180_000)
    asked = []
    real = area.data_lengths.process.data_lengths
    area.data_lengths.process.data_lengths = lambda cfg: asked.append(cfg) or real(cfg)
    spin = area.editors["batch_size"].spin
    with qtbot.waitSignal(area.estimator.sig_estimate, timeout=30_000) as blocker:
        spin.setValue(spin.value() * 2)
    assert area.wait_ready(60_000)
    assert asked == [] and blocker.args[0].data is not None  # re-estimated with the lengths already measured
    area.config_model.set("seq_len", 128)
    assert area.wait_ready(60_000)
    assert [c.seq_len for c in asked] == [128]
    assert area.estimate.data["truncated"] > 0 and "cut to seq_len 128, so the peak is the same" in \
        area.gauge.details.text()
    area.config_model.set("dataset", str(small_dataset))
    assert area.wait_ready(60_000)
    assert len(asked) == 2 and area.estimate.data["records"] <= 64
    # Saved elsewhere (the Dataset area, an editor): measured again when the area is shown again.
    lines = small_dataset.read_text(encoding="utf-8").splitlines()
    small_dataset.write_text("\n".join(lines[:10]) + "\n", encoding="utf-8")
    area.hide()
    area.show()
    assert area.wait_ready(60_000)
    assert len(asked) == 3 and area.estimate.data["records"] <= 10
    area.hide()
    area.show()  # unchanged: not measured again
    assert area.wait_ready(60_000) and len(asked) == 3


def test_a_slow_measurement_does_not_hold_up_the_estimate(make_area, qtbot, small_dataset):
    import threading

    area = make_area()
    assert area.wait_ready(180_000)
    process = area.data_lengths.process
    real, gate = process.data_lengths, threading.Event()

    def slow(cfg):
        with process._lock:  # the child is busy tokenizing a large dataset
            gate.wait(60)
        return real(cfg)

    process.data_lengths = slow
    try:
        area.config_model.set("dataset", str(small_dataset))
        # The previous dataset's line stays a moment, greyed (a quick re-measure replaces it without a
        # flash of "measuring"), then says the records are being measured.
        assert "<span style='color:palette(mid)'>With this dataset (366 records" in area.gauge.details.text()
        qtbot.waitUntil(lambda: not area.data_lengths.is_idle(), timeout=5_000)
        assert area.estimator.wait(30_000)  # the dataset's own estimate, at seq_len
        spin = area.editors["batch_size"].spin
        with qtbot.waitSignal(area.estimator.sig_estimate, timeout=10_000) as blocker:
            spin.setValue(spin.value() * 2)
        assert blocker.args[0].data is None  # at seq_len only, while the records are measured
        assert not area.data_lengths.is_idle()  # still measuring
        qtbot.waitUntil(lambda: "With this dataset: measuring its records…" in area.gauge.details.text(),
                        timeout=5_000)
        assert "Peak at seq_len" in area.gauge.details.text() and area.gauge.bar.data_peak is None
    finally:
        gate.set()
    assert area.wait_ready(60_000)
    assert area.estimate.data["records"] <= 64 and "With this dataset (" in area.gauge.details.text()


def test_records_that_cant_be_measured_are_a_grey_reason_beside_the_estimate(make_area, tmp_path):
    from PySide6.QtWidgets import QApplication

    model = tmp_path / "no-tokenizer"
    model.mkdir()
    (model / "config.json").write_text((REPO / "resources" / "demo" / "model" / "config.json").read_text())
    area = make_area()
    area.config_model.set("model", str(model))
    assert area.wait_ready(180_000)
    text = area.gauge.details.text()
    assert area.estimate is not None and "Peak at seq_len" in text  # the estimate needs only config.json
    assert "palette(mid)'>No estimate with this dataset: model folder" in text and "has no tokenizer" in text
    assert "Traceback" not in text and "sentencepiece" not in text  # the file list is in the tooltip
    assert "sentencepiece" in area.gauge.details.toolTip()
    assert QApplication.activeModalWidget() is None
    assert area.estimate.data is None and area.gauge.bar.data_peak is None


def test_fit_to_my_gpu_first_cuts_seq_len_to_the_datas_longest_record(make_area, qtbot, monkeypatch, tmp_path):
    model = tmp_path / "l32-1b"
    model.mkdir()
    shutil.copy(REPO / "bench" / "model_configs" / "llama3.2-1b" / "config.json", model / "config.json")
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(REPO / "resources" / "demo" / "model" / name, model / name)
    area = make_area()
    area.config_model.update({"model": str(model), "load_in": "bf16", "mixed_precision": "bf16", "batch_size": 8,
                              "seq_len": 1024, "gradient_accumulation_steps": 1})
    assert area.gauge.select_target(12 * GiB)
    assert area.wait_ready(180_000)
    est = area.estimate
    assert est.fits == "no" and est.data["fits"] == "yes"
    first = est.suggestions[0]
    assert first["changes"] == {"seq_len": -(-est.data["longest_record"] // 64) * 64} and first["fits"] == "yes"
    assert FitDialog.best_index(est.suggestions) == 0
    monkeypatch.setattr(FitDialog, "exec", lambda self: 1)  # the user confirms
    qtbot.mouseClick(area.gauge.fit_button, Qt.MouseButton.LeftButton)
    assert area.config_model.values()["seq_len"] == first["changes"]["seq_len"]
    assert area.wait_ready(60_000)
    assert area.estimate.fits == "yes" and "fits" in area.gauge.verdict.text()
    assert area.estimate.peak_bytes == first["peak_bytes"]


def test_the_data_line_says_when_records_reach_seq_len(qtbot):
    from gui.train.vram_gauge import VramGauge

    gauge = VramGauge()
    qtbot.addWidget(gauge)
    est = {"peak_bytes": 7 * GiB, "breakdown": {"weights": 7 * GiB}, "gpu_bytes": 12 * GiB, "fits": "yes",
           "max_batch_size": 18, "seq_len": 128, "notes": [],
           "data": {"path": "d.jsonl", "records": 365, "longest_record": 167, "truncated": 18, "seq_len": 128,
                    "peak_bytes": 7 * GiB, "fits": "yes", "max_batch_size": 18}}
    gauge.set_estimate(est)
    text = gauge.details.text()
    assert "With this dataset (365 records, longest 167 tokens): 18 records are cut to seq_len 128, so the peak " \
           "is the same" in text
    assert gauge.bar.data_peak is None  # the same peak: no second mark
    one = {**est["data"], "records": 1, "truncated": 1}
    gauge.set_estimate({**est, "data": one})
    assert "(1 record, longest 167 tokens): 1 record is cut" in gauge.details.text()
    packed = {**est["data"], "truncated": 0, "longest_record": 100}
    gauge.set_estimate({**est, "data": packed})
    assert "packing fills every batch to seq_len, so the peak is the same" in gauge.details.text()
    # Below seq_len: a peak of its own, a tick, and the measured peak is held against it too.
    below = {**est["data"], "truncated": 0, "longest_record": 100, "seq_len": 100, "peak_bytes": 5 * GiB}
    gauge.set_estimate({**est, "data": below})
    gauge.set_measured(4 * GiB, "(whole GPU)")
    assert gauge.bar.data_peak == 5 * GiB
    assert "Measured peak 4.00 GiB (whole GPU) (estimate +75%, with this dataset +25%)" in gauge.details.text()


def test_the_judged_data_line_offers_no_batch_larger_than_the_data():
    """The line the badge judges said "largest micro-batch that fits: 10000" for a 200-record dataset."""
    from gui.train.vram_gauge import data_line

    data = {"records": 200, "longest_record": 90, "truncated": 0, "seq_len": 90, "peak_bytes": GiB,
            "fits": "yes", "max_batch_size": 10000}
    text = data_line(data, 512, 24 * GiB, primary=True).replace(NBSP, " ")
    assert "a batch of all 200 records fits" in text and "10000" not in text
    text = data_line({**data, "max_batch_size": 64}, 512, 24 * GiB, primary=True).replace(NBSP, " ")
    assert "largest micro-batch that fits: <b>64</b>" in text


def test_measurements_wait_for_the_first_estimate_and_the_newest_request_wins(qtbot):
    """One measurement in flight; requests made meanwhile collapse into the newest, and the answer
    to an older one is never said. Nothing is measured before release() (the first estimate)."""
    import threading

    from gui.train.estimator import DataLengthsScheduler

    scheduler = DataLengthsScheduler()
    gate, asked = threading.Event(), []

    def measure(cfg):
        asked.append(cfg)
        if cfg == "first":
            gate.wait(30)
        return {"records": len(asked), "for": cfg}

    scheduler.process.data_lengths = measure
    answers = []
    scheduler.sig_lengths.connect(lambda key, lengths: answers.append((key, lengths["for"])))
    scheduler.request("k1", "first")
    qtbot.wait(50)
    assert asked == [] and not scheduler.is_idle()  # held until the first estimate
    scheduler.release()
    qtbot.waitUntil(lambda: asked == ["first"], timeout=5_000)
    for i in range(2, 6):
        scheduler.request(f"k{i}", f"cfg{i}")
    gate.set()
    assert scheduler.wait(10_000)
    assert asked == ["first", "cfg5"] and answers == [("k5", "cfg5")]
    scheduler.shutdown()


def _config_and_data(**data):
    """An estimate that doesn't fit at seq_len 1024 on 12 GiB, with data whose longest batch (188
    tokens) fits: Llama-3.2-1B's shape on the demo records (docs/memory.md, "With the data")."""
    est = {"peak_bytes": 33 * GiB, "breakdown": {"weights": 2 * GiB, "activations": 31 * GiB}, "gpu_bytes": 12 * GiB,
           "fits": "no", "max_batch_size": 2, "seq_len": 1024, "notes": [],
           "suggestions": [{"changes": {"seq_len": 192}, "peak_bytes": 9 * GiB, "fits": "yes",
                            "description": "seq_len cut to the longest record"}]}
    est["data"] = {"path": "d.jsonl", "records": 366, "longest_record": 188, "truncated": 0, "seq_len": 188,
                   "peak_bytes": 9 * GiB, "fits": "yes", "max_batch_size": 12,
                   "breakdown": {"weights": 2 * GiB, "activations": 7 * GiB}, **data}
    return est


def _badge(gauge) -> str:
    return gauge.verdict.text().replace("&nbsp;", " ")


def test_with_the_data_measured_the_badge_and_the_bar_judge_the_runs_real_peak(qtbot):
    """A run without packing pads each batch to its longest record: with data that stays under seq_len,
    the peak with this dataset is the one the run reaches. The badge said "does not fit" (the peak at
    seq_len) beside a line saying "fits", over a bar filled to the seq_len peak."""
    from gui.train.vram_gauge import VramGauge

    gauge = VramGauge()
    qtbot.addWidget(gauge)
    est = _config_and_data()
    gauge.set_estimate(est)
    assert "fits with this dataset" in _badge(gauge) and "does not fit" not in _badge(gauge)
    assert "#2e8540" in gauge.verdict.text()  # green
    assert "at seq_len 1024" in gauge.verdict.toolTip() and "does not fit" in gauge.verdict.toolTip()
    # The bar is the data's breakdown; the peak at the full seq_len is an outline beyond it.
    assert sum(b for _, b, _ in gauge.bar.parts) == 9 * GiB and gauge.bar.full_peak == 33 * GiB
    assert [label.text() for label in gauge._legend_labels if not label.isHidden()][1].endswith("7.00 GiB</span>")
    # The peak judged first, the one at the full seq_len second, with its own verdict.
    first, second = gauge.details.text().replace(NBSP, " ").split("<br>")[:2]
    assert "With this dataset (366 records, longest 188 tokens): ≈ <b>9.00 GiB</b> of 12.00 GiB · largest " \
           "micro-batch that fits: <b>12</b>" in first
    assert "At the full seq_len 1024" in second and "≈ 33.00 GiB — does not fit, largest micro-batch 2" in second
    assert gauge.judged_data() == est["data"]
    # It fits with the data, but not at the full seq_len: Fit stays offered, and says what it is for.
    assert gauge.fit_button.isEnabled() and gauge.fit_button.toolTip().startswith("It fits with this dataset")
    # With the data short of the GPU too, the badge says so: judged with the data, red.
    gauge.set_estimate(_config_and_data(peak_bytes=13 * GiB, fits="no", max_batch_size=0))
    assert "does not fit with this dataset" in _badge(gauge) and "#d0342c" in gauge.verdict.text()
    gauge.set_estimate(_config_and_data(peak_bytes=11 * GiB, fits="tight", max_batch_size=1))
    assert "tight with this dataset" in _badge(gauge)


def test_without_a_peak_of_the_datas_own_the_badge_judges_seq_len(qtbot):
    """Records that reach seq_len (cut to it), packed batches, records that can't be measured, or
    are still being measured: the estimate at seq_len is the one there is, said plainly."""
    from gui.train.vram_gauge import VramGauge

    gauge = VramGauge()
    qtbot.addWidget(gauge)
    reaching = _config_and_data(seq_len=1024, longest_record=1500, truncated=3, peak_bytes=33 * GiB, fits="no")
    packed = _config_and_data(seq_len=1024, peak_bytes=33 * GiB, fits="no")
    for est in (reaching, packed):
        gauge.set_estimate(est)
        assert _badge(gauge).count("does not fit") == 1 and "with this dataset" not in _badge(gauge)
        assert sum(b for _, b, _ in gauge.bar.parts) == 33 * GiB and gauge.bar.full_peak is None
        assert gauge.details.text().startswith("Peak at seq_len 1024") and gauge.judged_data() is None
    gauge.set_estimate(_config_and_data())
    gauge.set_data_failed("model folder /m has no tokenizer")
    gauge.set_estimate({**_config_and_data(), "data": None})
    assert "does not fit" in _badge(gauge) and "with this dataset" not in _badge(gauge)
    assert "Judged at seq_len 1024" in gauge.verdict.toolTip()
    assert sum(b for _, b, _ in gauge.bar.parts) == 33 * GiB and gauge.bar.full_peak is None


def test_while_the_records_are_measured_again_the_badge_keeps_the_previous_verdict_greyed(qtbot):
    """seq_len typed: the previous line stays greyed a moment (STALE_MS) and so does its verdict and its
    bar, faded; a quick re-measure replaces them without a flash of red. Then the estimate at seq_len."""
    from gui.train.vram_gauge import STALE_BADGE, VramGauge

    gauge = VramGauge()
    qtbot.addWidget(gauge)
    gauge.set_estimate(_config_and_data())
    gauge.set_data_measuring()
    gauge.set_estimate({**_config_and_data(), "data": None})  # the new config's estimate, at seq_len only
    assert "fits with this dataset" in _badge(gauge) and STALE_BADGE in gauge.verdict.text()
    assert gauge.bar.muted and sum(b for _, b, _ in gauge.bar.parts) == 9 * GiB
    assert gauge.judged_data() is None  # nothing to Fit for but the estimate at seq_len
    qtbot.waitUntil(lambda: "measuring its records" in gauge.details.text(), timeout=5_000)
    assert "does not fit" in _badge(gauge) and "with this dataset" not in _badge(gauge)
    assert not gauge.bar.muted and sum(b for _, b, _ in gauge.bar.parts) == 33 * GiB
    gauge.set_estimate(_config_and_data())  # measured
    assert "fits with this dataset" in _badge(gauge) and not gauge.bar.muted


def test_the_fit_dialog_says_the_run_fits_with_this_dataset_already(qtbot):
    est = _config_and_data()
    dialog = FitDialog(est["suggestions"], 12 * GiB, data=est["data"], seq_len=1024)
    qtbot.addWidget(dialog)
    from PySide6.QtWidgets import QLabel

    text = " ".join(label.text() for label in dialog.findChildren(QLabel))
    assert "With this dataset the run peaks at ≈ 9.00 GiB (fits)" in text
    assert "for batches of the full seq_len 1024" in text
    plain = FitDialog(est["suggestions"], 12 * GiB)
    qtbot.addWidget(plain)
    assert "With this dataset" not in " ".join(label.text() for label in plain.findChildren(QLabel))


def test_a_screen_reader_reads_the_painted_bar_in_words_as_it_changes(qtbot):
    """The bar is painted: a screen reader found a nameless, wordless widget where the estimate is."""
    from gui.train.vram_gauge import VramGauge
    from tests.gui.keyboard_audit import spoken_description, spoken_name

    gauge = VramGauge()
    qtbot.addWidget(gauge)
    gauge.show()
    assert spoken_name(gauge.bar) == "GPU memory estimate"
    gauge.set_estimate({**_config_and_data(), "data": None})
    assert spoken_description(gauge.bar) == "Estimated 33.00 GiB at seq_len 1024 of 12.00 GiB — does not fit."
    gauge.set_estimate(_config_and_data())  # judged with the data
    assert spoken_description(gauge.bar) == ("Estimated 9.00 GiB with this dataset of 12.00 GiB — fits. "
                                             "33.00 GiB at the full seq_len 1024.")
    gauge.set_measured(int(10.5 * GiB))
    assert spoken_description(gauge.bar).endswith("33.00 GiB at the full seq_len 1024. Measured peak 10.50 GiB.")
    gauge.set_estimate({**_config_and_data(), "data": None, "gpu_bytes": None})  # no GPU, no size picked
    assert spoken_description(gauge.bar).startswith("Estimated 33.00 GiB at seq_len 1024, no GPU to compare with.")
