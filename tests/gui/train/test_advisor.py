"""The advisor: typed events become plain advice; fixes apply to the form in one click."""

from __future__ import annotations

import json

from PySide6.QtCore import Qt

from gui.train.advisor import Advisor, DivergenceDetector
from gui.train.log_console import LogConsole


def test_divergence_is_detected_once_and_not_on_noise():
    d = DivergenceDetector()
    noisy_but_falling = [3.0 - 0.02 * i + (0.3 if i % 2 else -0.3) for i in range(100)]
    assert not any(d.update(i, v) for i, v in enumerate(noisy_but_falling))
    d = DivergenceDetector()
    falling = [3.0 - 0.02 * i for i in range(60)]  # down to ~1.8
    rising = [1.8 + 0.15 * i for i in range(60)]
    hits = [h for i, v in enumerate(falling + rising) if (h := d.update(i, v))]
    assert len(hits) == 1
    low, low_step, now, step = hits[0]
    assert now >= 1.5 * low and 55 <= low_step <= 65 and step > low_step


def test_advisor_turns_events_into_advice_with_fixes():
    a = Advisor()
    a.on_event("started", {"config": {"learning_rate": 2e-4}})
    oom = a.on_event("error", {"kind": "oom", "message": "CUDA ran out of memory at step 3 with micro-batch 1",
                               "fix": {"gradient_checkpointing": True}, "hint": "At micro-batch 1, try ..."})
    assert oom[0].title == "Out of GPU memory" and oom[0].fix == {"gradient_checkpointing": True}
    nan = a.on_event("error", {"kind": "nonfinite", "message": "the loss became non-finite at step 9",
                               "fix": {"mixed_precision": "bf16"}, "hint": "Use bf16 instead of fp16"})
    assert nan[0].fix == {"mixed_precision": "bf16"} and "bf16" in nan[0].text
    assert nan[0].title == "The loss became NaN or infinite"
    grad = a.on_event("error", {"kind": "nonfinite", "what": "the gradient norm",
                                "message": "the gradient norm became non-finite at step 5 (loss=13.82, grad_norm=nan)"})
    assert grad[0].title == "The gradient norm became NaN or infinite"  # not "the loss", which was 13.82
    rec = a.on_event("recovered", {"kind": "oom", "message": "Out of memory at step 4: micro-batch 8 -> 4",
                                   "changes": {"batch_size": 4, "gradient_accumulation_steps": 2}})
    assert rec[0].level == "info" and rec[0].fix == {"batch_size": 4, "gradient_accumulation_steps": 2}
    trunc = a.on_event("warning", {"kind": "truncation", "message": "12 of 300 records are longer than "
                                   "seq_len=256", "fix": {"seq_len": 512}})
    assert trunc[0].fix == {"seq_len": 512}
    assert a.on_event("warning", {"kind": "stopping", "message": "stopping after step 3"}) == []
    early = a.on_event("warning", {"kind": "early_stopped", "message": "Stopped early at step 6 of 20", "best_step": 4})
    assert early[0].level == "info" and "Stopped early" in early[0].title and early[0].fix is None
    cfg = a.on_event("error", {"kind": "config", "message": "x", "errors": [
        {"key": "load_in", "message": "needs a GPU", "fix": {"load_in": "fp32", "mixed_precision": "no"}},
        {"key": "typo", "message": "unknown key", "fix": {"typo": None}}]})
    assert [c.fix for c in cfg] == [{"load_in": "fp32", "mixed_precision": "no"}, {}]
    crash = a.on_event("finished", {"status": "crashed", "message": "ended unexpectedly", "log_tail": "a\nb"})
    assert crash[0].action == "resume" and "b" in crash[0].text
    diverging = a.on_steps([{"step": i, "loss": v} for i, v in
                            enumerate([3.0 - 0.02 * i for i in range(60)] + [1.8 + 0.15 * i for i in range(60)])])
    assert diverging and diverging[0].fix == {"learning_rate": 1e-4}
    full = a.on_event("warning", {"kind": "disk", "message": "the disk may fill up: ...",
                                  "fix": {"save_total_limit": 2}})
    assert full[0].title == "The disk may fill up" and full[0].fix == {"save_total_limit": 2}
    overlap = a.on_event("warning", {"kind": "eval_overlap", "message": "3 of the 40 records", "hint": "Remove them"})
    assert overlap[0].title == "Eval records are also training records" and "Remove them" in overlap[0].text
    dropped = a.on_event("warning", {"kind": "dropped", "message": "1 record of d.jsonl can't train and was "
                                     "left out: line 3: 'instruction' is a list, expected text",
                                     "hint": "Fix them in the Dataset area."})
    assert dropped[0].title == "Records were left out"
    assert dropped[0].text == ("1 record of d.jsonl can't train and was left out: line 3: 'instruction' is a list, "
                               "expected text.\nFix them in the Dataset area.")
    broken = a.on_event("warning", {"kind": "broken", "message": "1 record of d.jsonl could not be read"})
    assert broken[0].title == "Records could not be read"
    failed = a.on_event("error", {"kind": "data", "message": "no trainable records: every record of d.jsonl was "
                                  "left out (2 records): ...", "path": "d.jsonl", "line": 3})
    assert failed[0].title == "Dataset problem" and failed[0].where == ("d.jsonl", 3)
    split = a.on_event("warning", {"kind": "eval_split", "message": "eval_split 0.1 of 1 usable record holds out "
                                   "nothing", "fix": {"eval_split": 0.0}})
    assert split[0].title == "The eval split isn't what was asked" and split[0].fix_label() == "Apply: eval_split = 0"


def test_one_click_fix_changes_the_form(make_area, qtbot):
    area = make_area()
    area.run.sig_error.emit({"kind": "oom", "message": "CUDA ran out of memory at step 3 with micro-batch 1",
                             "fix": {"gradient_checkpointing": True}})
    area.run.sig_warning.emit({"kind": "truncation", "message": "3 of 10 records are longer than seq_len=256",
                               "fix": {"seq_len": 512}})
    assert area.tabs.tabText(0) == "Advice (2)"
    card = area.advisor_panel.cards["oom"]
    qtbot.mouseClick(card.fix_button, Qt.MouseButton.LeftButton)
    assert area.config_model.get("gradient_checkpointing") is True
    assert area.editors["gradient_checkpointing"].box.isChecked()
    qtbot.mouseClick(area.advisor_panel.cards["truncation"].fix_button, Qt.MouseButton.LeftButton)
    assert area.config_model.get("seq_len") == 512
    assert "warning" in area.log.visible_text()


def test_a_config_problem_card_goes_once_its_key_is_fixed_in_the_form(make_area):
    area = make_area()
    area.run.sig_error.emit({"kind": "config", "message": "x", "errors": [
        {"key": "seq_len", "message": "'seq_len' must be between 16 and 1048576, got 3", "fix": {}},
        {"key": "lora_r", "message": "'lora_r' must be between 1 and 4096, got 0", "fix": {}}]})
    assert set(area.advisor_panel.cards) == {"config:seq_len:0", "config:lora_r:1"}
    area.config_model.set("learning_rate", 1e-4)  # another key: both stay
    assert set(area.advisor_panel.cards) == {"config:seq_len:0", "config:lora_r:1"}
    area.config_model.set("seq_len", 384 if area.config_model.get("seq_len") != 384 else 320)
    assert set(area.advisor_panel.cards) == {"config:lora_r:1"}


def test_log_console_filters_and_copies(qtbot):
    from PySide6.QtGui import QGuiApplication

    log = LogConsole()
    qtbot.addWidget(log)
    log.append_many([("info", "step 1 loss 2.0"), ("warning", "records truncated"), ("error", "out of memory")])
    log.level.setCurrentIndex(1)
    assert "step 1" not in log.view.toPlainText() and "truncated" in log.view.toPlainText()
    log.level.setCurrentIndex(0)
    log.filter.setText("memory")
    assert log.view.toPlainText().strip().endswith("out of memory")
    assert len(log.view.toPlainText().splitlines()) == 1
    log.copy()
    assert QGuiApplication.clipboard().text().endswith("out of memory")


def test_keep_awake_state_is_told(make_area):
    area = make_area()
    started = {"trainable_params": 10, "total_params": 100, "device": "cpu", "dataset": {"train": 9, "eval": 1},
               "config": {"max_steps": 5}}
    area.run.sig_started.emit({**started, "keep_awake": {"held": True, "how": "systemd-inhibit", "problem": "",
                                                         "needed": True}})
    assert "keeping the computer awake until training ends (systemd-inhibit)" in area.log.visible_text()
    area.run.sig_started.emit({**started, "keep_awake": {"held": False, "how": "", "needed": False,
                                                         "problem": "systemd-inhibit refused: Failed to connect to bus"}})
    assert "not keeping the computer awake: systemd-inhibit refused" in area.log.visible_text()
    area.run.sig_warning.emit({"kind": "keep_awake", "message": "the computer may go to sleep during training "
                                                                "(systemd-inhibit refused: Access denied)"})
    assert "keep_awake" in area.advisor_panel.cards
    assert "Access denied" in area.log.visible_text()


def test_a_probe_that_needed_a_smaller_batch_offers_it():
    from gui.train.advisor import Advisor

    report = {"steps": 10, "seconds_per_step": 1.5, "tokens_per_s": 900.0, "full_steps": 400,
              "projected_train_s": 600.0, "peak_gpu_bytes": 20 * 2**30, "peak_is_driver": True,
              "estimate_bytes": 21 * 2**30, "estimate_error": 0.05, "gpu_bytes": 24 * 2**30, "gpu_name": "RTX 4090",
              "oom_retries": 1, "changed": {"batch_size": 4, "gradient_accumulation_steps": 2}, "status": "completed"}
    (card,) = Advisor().on_event("finished", {"status": "completed", "probe": report})
    assert card.key == "probe" and card.level == "warning"
    assert card.fix == {"batch_size": 4, "gradient_accumulation_steps": 2}
    assert "it fits with batch_size 4" in card.text and "about 10 min of training" in card.text
    assert "peak 20.00 GiB measured (driver) of 24 GiB on RTX 4090; estimate 21.00 GiB (+5.0%)" in card.text
    ok = {**report, "oom_retries": 0, "changed": {}}
    (card,) = Advisor().on_event("finished", {"status": "completed", "probe": ok})
    assert card.level == "ok" and card.fix is None


def test_an_overfit_run_is_offered_its_best_checkpoint(make_area, qtbot, tmp_path, tiny_model_dir, small_dataset):
    from engine.promote import final_step
    from tests.engine.test_promote import make_step_best, trained_run

    run_dir = trained_run(tmp_path, tiny_model_dir, small_dataset)
    area = make_area()
    area.run_dir = str(run_dir)
    area.run.sig_finished.emit({"status": "completed", "output_dir": str(run_dir)})
    assert "promote" not in area.advisor_panel.cards  # the last step is the best: nothing to offer

    # The last eval a hair above the one before: noise, not overfitting (the card said "the run overfit").
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    noisy = {2: 1.2, 4: 1.0, 6: 1.01}
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps({**r, "eval_loss": noisy[r["step"]]} if "eval_loss" in r
                                                              else r) + "\n" for r in rows))
    area.run.sig_finished.emit({"status": "completed", "output_dir": str(run_dir)})
    assert "promote" not in area.advisor_panel.cards

    make_step_best(run_dir, 4)
    area.run.sig_finished.emit({"status": "completed", "output_dir": str(run_dir)})
    card = area.advisor_panel.cards["promote"]
    assert card.advice.action == "promote" and "checkpoint-4 evaluated 1.0000" in card.advice.text
    assert card.advice.text.startswith("The eval loss rose from its lowest, 1.0000 at step 4, to 2.0600 at step 6")
    assert card.advice.fix == {"early_stopping_patience": 3}
    area.advisor_panel.sig_action.emit("promote")
    qtbot.waitUntil(lambda: area._promote is None, timeout=120_000)
    assert final_step(run_dir) == 4
    assert "promote" not in area.advisor_panel.cards and "promoted" in area.advisor_panel.cards
    assert f"final/ of {run_dir.name} now holds checkpoint-4 (eval loss 1.0000)" in area.log.visible_text()


def test_untrained_format_tokens_are_advised_before_the_run_and_the_fix_clears_it(make_area, qtbot,
                                                                                  tiny_model_dir, tmp_path):
    """Picking a model and a format whose tokens the model never trained shows the run's warning
    at once (rows read from the weight files); its one-click fix makes it go away."""
    import shutil

    from tests.conftest import zero_token_rows

    model = tmp_path / "zeroed"
    shutil.copytree(tiny_model_dir, model)
    zero_token_rows(model, ["<|im_start|>", "<|im_end|>"])

    area = make_area()
    key = "warning:untrained_tokens"
    area.config_model.update({"model": str(tiny_model_dir), "template": "chatml"})
    qtbot.wait(1000)
    area._calls.wait(20_000)
    qtbot.wait(50)
    assert key not in area.advisor_panel.cards  # a model that knows its tokens: nothing to say
    area.config_model.update({"model": str(model)})
    qtbot.waitUntil(lambda: key in area.advisor_panel.cards, timeout=20_000)
    card = area.advisor_panel.cards[key].advice
    assert card.title == "The model never learnt these format tokens"
    assert card.text.startswith("The chatml format's <|im_start|>, <|im_end|> have untrained embeddings")
    assert card.fix == {"add_tokens": ["<|im_start|>", "<|im_end|>"]}
    area.apply_fix(card.fix)
    qtbot.waitUntil(lambda: key not in area.advisor_panel.cards, timeout=20_000)
    assert area.config().add_tokens == ["<|im_start|>", "<|im_end|>"]
