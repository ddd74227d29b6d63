"""The Adapters area: library cards, the side-by-side playground, saved prompts, "Try it"."""

from __future__ import annotations

import json
import shutil

import pytest
from PySide6.QtCore import QPoint, QRect, Qt

from engine.generate import BASE
from engine.paths import data_home
from gui.adapters.library_model import AdapterLibraryModel, MatchRole
from gui.adapters.prompts import PromptStore

WAIT_MS = 180_000  # a worker start imports torch; the 2 shared CPU cores can be slow


def test_library_model_passes_qtmodeltester(qtmodeltester, runs_home, foreign_adapter):
    from engine.adapters import add_adapter, check_base_match, list_adapters

    add_adapter(foreign_adapter)
    model = AdapterLibraryModel()
    model.set_cards(list_adapters())
    model.set_matches({c.path: check_base_match(c.path, "demo") for c in model.cards})
    qtmodeltester.check(model)
    assert model.rowCount() == 3


def test_library_shows_cards_and_refuses_a_foreign_adapter(qtbot, make_area, runs_home, foreign_adapter):
    from engine.adapters import add_adapter

    add_adapter(foreign_adapter)
    area = make_area()
    area.refresh()
    area.show()
    qtbot.waitExposed(area)
    names = [area.model.data(area.model.index(r)) for r in range(area.model.rowCount())]
    assert sorted(names) == ["legal", "medical", "tiny-chat"]
    assert area.library_title.text() == "Adapter library (3)"
    foreign = area.model.index(area.model.row_of(foreign_adapter))
    match = foreign.data(MatchRole)
    assert match.ok is False and "hidden_size 32 vs 128" in match.message
    assert not area.model.set_checked(str(foreign_adapter), True)  # refused: can't be ticked
    assert "hidden_size" in foreign.data(Qt.ItemDataRole.ToolTipRole)
    # Clicking a card's check box ticks it.
    medical = area.model.index(area.model.row_of(runs_home["medical"]))
    rect = area.list.visualRect(medical)
    qtbot.mouseClick(area.list.viewport(), Qt.MouseButton.LeftButton, pos=rect.topLeft() + QPoint(20, 20))
    assert [c.name for c in area.model.checked_cards()] == ["medical"]
    # Nothing to generate without a prompt: a message, not a crash.
    area.generate()
    assert area.banner.isVisible() and "Type a prompt" in area.banner.text()
    assert area.thread is None
    # Merge and Compare of the selected foreign adapter are refused before a child loads the base.
    area.model.set_checked(str(runs_home["medical"]), False)
    area._select(str(foreign_adapter))
    for opener in (area.open_merge_dialog, area.open_compare_dialog):
        assert opener() is None
        assert "tiny-chat doesn't fit the base" in area.banner.text() and "hidden_size 32 vs 128" in area.banner.text()


def test_playground_streams_side_by_side_and_replays_saved_prompts(qtbot, make_area, runs_home, tmp_path):
    area = make_area()
    area.show()
    for final in runs_home.values():
        assert area.model.set_checked(str(final), True)
    area.prompt_edit.setPlainText("What should I do today?")
    area.max_tokens.setValue(16)
    with qtbot.waitSignal(area.sig_generation_finished, timeout=WAIT_MS):
        request = area.generate()
    streamed: dict[str, str] = {}
    area.thread.sig_tokens.connect(lambda req, name, text: streamed.__setitem__(name, streamed.get(name, "") + text))
    cols = area.columns
    assert list(cols) == [BASE, "legal", "medical"]  # base first, then the library order
    assert cols["medical"].answer().startswith("Rest, drink water")
    assert cols["legal"].answer().startswith("Read the contract")
    assert cols[BASE].answer() not in (cols["medical"].answer(), cols["legal"].answer())
    for col in cols.values():
        assert "tokens/s" in col.stats.text() and not col.error
    # Columns sit side by side.
    xs = [col.geometry().x() for col in cols.values()]
    assert xs == sorted(xs) and len(set(xs)) == 3
    shot = tmp_path / "adapters.png"
    assert area.grab().save(str(shot)) and shot.stat().st_size > 10_000
    worker, base_id = area.thread, area.last_loaded["base_id"]

    # Save the prompt with other settings; a fresh store reads it back from the data home.
    area.max_tokens.setValue(8)
    assert area.save_prompt("today") == "today"
    saved = json.loads((data_home() / "saved_prompts.json").read_text())["prompts"]
    assert saved[0]["prompt"] == "What should I do today?" and saved[0]["settings"]["max_new_tokens"] == 8
    assert PromptStore().names() == ["today"]

    # Replay it against one adapter only: same worker, base never reloaded, text streamed.
    area.prompt_edit.setPlainText("something else")
    area.max_tokens.setValue(30)
    area.compare_base.setChecked(False)
    area.model.set_checked(str(runs_home["medical"]), False)
    with qtbot.waitSignal(area.sig_generation_finished, timeout=WAIT_MS) as blocker:
        second = area.replay_prompt("today")
    assert blocker.args == [second] and second != request
    assert area.prompt_edit.toPlainText() == "What should I do today?" and area.max_tokens.value() == 8
    assert list(area.columns) == ["legal"]
    assert area.columns["legal"].answer().startswith("Read the contract")
    assert streamed["legal"] == area.columns["legal"].answer()
    assert area.thread is worker and area.last_loaded["base_id"] == base_id
    assert area.last_loaded["base_loads"] == 1


def test_try_adapter_opens_the_playground_on_it(qtbot, make_area, trained_runs, tmp_path, tiny_model_dir):
    # A run kept outside the runs folder (output_dir set by the user) is added to the library.
    run = tmp_path / "elsewhere"
    shutil.copytree(trained_runs["legal"], run)
    area = make_area()
    area.base_box.setCurrentText(str(tiny_model_dir))  # the wrong base: "Try it" must switch to demo
    with qtbot.waitSignal(area.sig_base_loaded, timeout=WAIT_MS,
                          check_params_cb=lambda d: d.get("adapter") == "elsewhere"):
        area.try_adapter(run / "final")
    assert area.base_text() == "demo"
    assert [c.name for c in area.model.checked_cards()] == ["elsewhere"]
    assert area.model.checked_cards()[0].source == "added"
    assert area.last_loaded["adapters"] == {"elsewhere": str((run / "final").resolve())}
    assert area.banner.isHidden()


def test_adapter_types_take_turns_and_a_lora_loads_after_an_ia3(qtbot, make_area, runs_home, demo_base, tmp_path):
    # Once an IA3 adapter was on the base no LoRA loaded ("one base holds one adapter type"),
    # even with only the LoRA ticked; only "Load base" recovered.
    from engine.adapters import add_adapter
    from tests.engine.conftest import other_type_adapter

    ia3 = add_adapter(other_type_adapter(demo_base, tmp_path / "ia3", "ia3")).path
    area = make_area()
    area.compare_base.setChecked(False)
    area.prompt_edit.setPlainText("What should I do today?")
    area.max_tokens.setValue(12)

    def run(*ticked: str) -> dict[str, str]:
        for path in list(area.model.checked):
            area.model.set_checked(path, False)
        for path in ticked:
            assert area.model.set_checked(path, True)
        with qtbot.waitSignal(area.sig_generation_finished, timeout=WAIT_MS):
            area.generate()
        assert not [c.error for c in area.columns.values() if c.error]
        return {name: col.answer() for name, col in area.columns.items()}

    medical, legal = str(runs_home["medical"]), str(runs_home["legal"])
    assert set(run(ia3)) == {"ia3"}
    assert run(medical)["medical"].startswith("Rest, drink water")  # the IA3 was unloaded for it
    qtbot.waitUntil(lambda: set(area.last_loaded.get("adapters", {})) == {"medical"}, timeout=WAIT_MS)
    # Both types ticked: each answers in its turn, the LoRAs (already on the base) first.
    answers = run(ia3, medical, legal)
    assert answers["medical"].startswith("Rest, drink water") and answers["legal"].startswith("Read the contract")
    assert answers["ia3"] and area.last_loaded["base_loads"] == 1
    # Unticked LoRAs stay loaded beside a ticked LoRA: switching back is instant.
    run(medical)
    assert set(area.last_loaded["adapters"]) == {"medical"}  # the IA3 held last, unloaded for it
    run(legal)
    assert set(area.last_loaded["adapters"]) == {"medical", "legal"}


def test_try_it_switches_to_the_adapters_own_base_from_a_same_shaped_model(qtbot, make_area, runs_home, demo_base,
                                                                            tmp_path):
    # A full run's final/ of the same size fits by its config's shapes, but is not the model
    # the adapter learnt on: "Try it" must load the recorded base when it is on this machine.
    full = tmp_path / "fullrun" / "final"
    shutil.copytree(demo_base, full)
    area = make_area()
    area.base_box.setCurrentText(str(full))
    with qtbot.waitSignal(area.sig_base_loaded, timeout=WAIT_MS,
                          check_params_cb=lambda d: d.get("adapter") == "medical"):
        area.try_adapter(runs_home["medical"])
    assert area.base_text() == "demo"


def test_an_adapter_that_fails_to_load_is_named_by_its_run_not_final(make_area, runs_home):
    area = make_area()
    area._on_error({"cmd": "load_adapter", "path": str(runs_home["medical"].resolve()), "message": "boom"})
    assert "Could not load adapter medical: boom" in area.banner.text()


def test_a_base_that_cannot_load_is_reported(qtbot, make_area, tmp_path):
    area = make_area()
    area.base_box.setCurrentText(str(tmp_path / "no-such-model"))
    area.compare_base.setChecked(True)
    area.prompt_edit.setPlainText("hi")
    with qtbot.waitSignal(area.sig_error, timeout=WAIT_MS):
        area.generate()
    qtbot.waitUntil(lambda: not area.busy, timeout=WAIT_MS)
    assert "no such folder" in area.columns[BASE].answer() or "no such folder" in area.banner.text()
    assert "Traceback" not in area.banner.text()


def test_try_on_a_full_model_run_loads_it_as_the_base(qtbot, make_area, tiny_model_dir):
    area = make_area()
    with qtbot.waitSignal(area.sig_base_loaded, timeout=WAIT_MS) as blocker:
        area.try_adapter(tiny_model_dir)  # a full/freeze run's final/ is a model folder
    assert area.base_text() == str(tiny_model_dir)
    assert blocker.args[0]["base_path"] == str(tiny_model_dir) and blocker.args[0]["adapters"] == {}
    assert area.model.checked_cards() == [] and area.compare_base.isChecked()
    assert area.banner.isHidden()


def test_merge_dialog_runs_the_merge_in_a_child_process(qtbot, make_area, runs_home, foreign_adapter, tmp_path):
    from engine.adapters import read_card
    from gui.adapters.merge_dialog import MergeDialog

    area = make_area()
    area.show()
    # Nothing ticked or selected: a message instead of a dialog.
    assert area.open_merge_dialog() is None and "Tick the adapters" in area.banner.text()
    for final in runs_home.values():
        assert area.model.set_checked(str(final), True)
    both = area.open_merge_dialog()
    qtbot.addWidget(both)
    cmd = both.command()
    assert cmd[cmd.index("--weights") + 1: cmd.index("--weights") + 3] == ["0.5", "0.5"]
    # The exact weighted sum by default, and what each combination does is said under it.
    assert cmd[cmd.index("--combination") + 1] == "cat" and "--density" not in cmd
    assert both.combination.currentText() == "cat (exact)" and "exact" in both.combination_help.text()
    both.combination.setCurrentIndex(both.combination.findData("linear"))
    assert "approximation" in both.combination_help.text() and "cross terms" in both.combination_help.text()
    both.combination.setCurrentIndex(both.combination.findData("ties"))
    assert "--density" in both.command() and both.density.isEnabled()

    area.model.set_checked(str(runs_home["legal"]), False)
    dialog = area.open_merge_dialog()
    qtbot.addWidget(dialog)
    assert [c.name for c in dialog.cards] == ["medical"] and "--weights" not in dialog.command()
    # An output folder that holds files is refused before anything runs.
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x.txt").write_text("keep me")
    dialog.out_edit.setText(str(tmp_path / "busy"))
    assert not dialog.start() and "not an empty folder" in dialog.result.text()
    (tmp_path / "merged.safetensors").write_text("keep me")  # a file: said "not an empty folder" too
    dialog.out_edit.setText(str(tmp_path / "merged.safetensors"))
    assert not dialog.start() and dialog.result.text() == (f"{tmp_path / 'merged.safetensors'} is a file; the merged "
                                                           "model is written to a new folder: choose one.")
    out = tmp_path / "merged"
    dialog.out_edit.setText(str(out))
    dialog.gguf.setCurrentIndex(dialog.gguf.findData("q8_0"))
    assert dialog.command_label.text().startswith("finetune-studio merge --base demo --adapter ")
    assert dialog.command()[-2:] == ["--gguf", "q8_0"]
    with qtbot.waitSignal(dialog.sig_merged, timeout=WAIT_MS) as merged:
        assert dialog.start()
    assert merged.args == [str(out)]
    assert (out / "config.json").exists() and (out / "model.safetensors").exists()
    assert (out / "merged-q8_0.gguf").stat().st_size > 100_000
    assert "Merged into" in dialog.result.text() and str(out / "merged-q8_0.gguf") in dialog.result.text()
    shot = tmp_path / "merge.png"
    assert dialog.grab().save(str(shot))
    # The merged model is a model to load, as the dialog says: in the Base list here, and among the
    # Train area's recent models (its model list shows them when it is shown).
    assert area.base_box.findText(str(out)) >= 0 and "in the Base list here" in area.status.text()
    from gui.train.model_picker import recent_models

    assert recent_models()[0] == str(out)

    # A base the adapter was not trained on: the engine's refusal is shown, nothing is written.
    bad = MergeDialog("demo", [read_card(foreign_adapter)])
    qtbot.addWidget(bad)
    bad.out_edit.setText(str(tmp_path / "bad"))
    assert bad.start() and bad.wait(WAIT_MS)
    qtbot.waitUntil(lambda: bad.merge_button.isEnabled())
    assert "can't be used with this base" in bad.result.text() and "hidden_size 32 vs 128" in bad.result.text()
    assert not (tmp_path / "bad" / "model.safetensors").exists()



def test_a_failed_merge_or_gguf_export_says_so_in_the_area_after_its_dialog_closes(qtbot, make_area, runs_home):
    from engine.paths import runs_dir

    broken = runs_dir() / "broken"  # reads as an adapter, but its weights file is not safetensors
    shutil.copytree(runs_home["medical"].parent, broken)
    (broken / "final" / "adapter_model.safetensors").write_bytes(b"not a safetensors file")
    area = make_area()
    area.refresh()
    area.status.setText("comparison saved to /somewhere/earlier.json")  # an earlier success
    assert area.model.set_checked(str(broken / "final"), True)
    merge = area.open_merge_dialog()
    qtbot.addWidget(merge)
    merge.out_edit.setText(str(data_home() / "merged-broken"))
    with qtbot.waitSignal(merge.sig_failed, timeout=WAIT_MS):
        assert merge.start()
    assert merge.result.text().startswith("The merge failed: ") and "not a safetensors file" in merge.result.text()
    merge.reject()
    assert area.status.text() == "the merge of broken failed"
    assert area.banner.isVisibleTo(area) and "not a safetensors file" in area.banner.text()
    assert area.banner.text().startswith("The merge of broken failed: ")

    area._select(str(broken / "final"))
    gguf = area.open_gguf_dialog()
    qtbot.addWidget(gguf)
    assert area.banner.isHidden()  # a new attempt: the old failure is not shown with it
    gguf.out_edit.setText(str(data_home() / "broken.gguf"))
    with qtbot.waitSignal(gguf.sig_failed, timeout=WAIT_MS):
        assert gguf.start()
    gguf.reject()
    assert area.status.text() == "the GGUF export of broken failed"
    assert area.banner.text().startswith("The GGUF export of broken failed: ")
    assert "not a safetensors file" in area.banner.text()

def test_a_long_status_is_elided_not_clipped_and_keeps_its_whole_text(qtbot):
    from gui.adapters.area import ElidedLabel

    label = ElidedLabel("", Qt.TextElideMode.ElideMiddle)
    qtbot.addWidget(label)
    whole = "merged model saved to /home/me/finetune-studio/merged/20261128-125652-lora-merged"
    label.setText(whole)
    label.resize(160, 20)
    label.show()
    qtbot.waitExposed(label)
    painted = super(ElidedLabel, label).text()
    assert label.text() == whole and label.toolTip() == whole
    assert "…" in painted and painted.startswith("merged") and painted.endswith("merged")
    assert label.fontMetrics().horizontalAdvance(painted) <= 160
    label.resize(2000, 20)
    assert super(ElidedLabel, label).text() == whole  # widened: shown whole again


def test_a_columns_long_base_subtitle_ends_in_an_ellipsis(qtbot, tmp_path):
    from gui.adapters.area import ElidedLabel, OutputColumn

    whole = "/home/me/models/Qwen2.5-0.5B-Instruct-merged-with-everything · adapters off"
    col = OutputColumn(BASE, "Base", whole, "#616161")
    qtbot.addWidget(col)
    col.resize(260, 300)
    col.show()
    qtbot.waitExposed(col)
    painted = super(ElidedLabel, col.subtitle).text()
    assert painted.endswith("…") and whole.startswith(painted[:-1]) and col.subtitle.toolTip() == whole
    col.grab().save(str(tmp_path / "column.png"))



def test_a_full_runs_answer_column_is_titled_by_its_run(qtbot, make_area, runs_home, demo_base):
    from engine.paths import runs_dir

    full = runs_dir() / "20261202-120000-full"  # a full run's layout: a whole model in final/
    shutil.copytree(demo_base, full / "final")
    (full / "run.yaml").write_text(f"model: {demo_base}\nmethod: full\ndataset: demo\n", encoding="utf-8")
    area = make_area()
    area.show()
    area.try_adapter(full / "final")  # the Runs area's "Try it"
    area.prompt_edit.setPlainText("hi")
    area.max_tokens.setValue(4)
    with qtbot.waitSignal(area.sig_generation_finished, timeout=WAIT_MS):
        area.generate()
    col = area.columns[BASE]
    assert col.title.text() == "20261202-120000-full"  # not "Base" over a path
    assert col.subtitle.text() == "Full run · trained from demo"
    assert col.subtitle.toolTip() == str(full / "final") and not col.error


def test_new_answer_columns_replace_the_old_ones_and_long_names_elide(qtbot, make_area, runs_home, tmp_path):
    from engine.adapters import read_card
    from gui.adapters.area import ElidedLabel

    area = make_area()
    area.show()
    qtbot.waitExposed(area)
    long = tmp_path / "medical-qa-llama3-r16-lr2e-4-long-context-v2" / "final"
    shutil.copytree(runs_home["medical"], long)
    cards = [read_card(runs_home["legal"]), read_card(long)]
    area._build_columns(True, cards, ["legal", "long"])
    old = list(area.columns.values())
    qtbot.waitUntil(lambda: all(c.isVisible() for c in old))
    title = area.columns["long"].title
    painted = super(ElidedLabel, title).text()
    assert title.text() == long.parent.name and painted.endswith("…")
    assert title.geometry().right() <= area.columns["long"].contentsRect().right()
    # The next request's columns: the old ones are gone from view at once, not painted under them.
    area._build_columns(True, [], [])
    assert list(area.columns) == [BASE]
    assert not any(c.isVisible() for c in old)


def test_a_narrow_columns_speed_line_wraps_between_figures_not_inside_one(qtbot):
    from gui.adapters.area import OutputColumn

    col = OutputColumn("legal", "legal", "LoRA r16", "#1565c0")
    qtbot.addWidget(col)
    col.finish({"adapter": "legal", "text": "hi", "tokens": 16, "tokens_per_s": 438.7, "time_s": 0.04,
                "switch_s": 0.0011})
    parts = col.stats.text().split(" · ")
    assert [p.replace("\u00a0", " ") for p in parts] == ["16 tokens", "438.7 tokens/s", "0.04 s", "switch 1.1 ms"]
    assert not [p for p in parts if " " in p]  # no place to break inside a figure

def test_adding_a_whole_model_folder_says_to_use_it_as_the_base(make_area, tiny_model_dir, tmp_path):
    """A full/freeze run's final/ is a model, not an adapter: say what to do with it."""
    area = make_area()
    area._add_folder(str(tiny_model_dir))
    assert area.banner.isVisibleTo(area)
    assert "whole model" in area.banner.text() and "Base" in area.banner.text()
    (tmp_path / "notes").mkdir()
    area._add_folder(str(tmp_path / "notes"))
    assert "no adapter_config.json" in area.banner.text()  # a plain folder keeps the engine's reason
    assert area.model.rowCount() == 0


def test_a_merge_refusal_is_cleared_when_a_merge_becomes_possible(qtbot, make_area, runs_home):
    area = make_area()
    assert area.open_merge_dialog() is None and "Tick the adapters" in area.banner.text()
    assert area.model.set_checked(str(runs_home["medical"]), True)
    dialog = area.open_merge_dialog()
    qtbot.addWidget(dialog)
    assert dialog is not None
    assert area.banner.isHidden() and area.banner.text() == ""


def test_a_promoted_runs_card_says_which_step_its_weights_are():
    from engine.adapters import AdapterCard
    from gui.adapters.library_model import AdapterLibraryModel, card_summary

    card = AdapterCard(name="r", path="/runs/r/final", source="run", date="2026-11-29 04:08", size_bytes=763_000,
                       weights_from="checkpoint-40")
    assert card_summary(card)[2].endswith(" · run (step 40)")
    assert card_summary(AdapterCard(name="r", path="/p", source="run"))[2] == "0 B · run"
    # A stopped run's final/ is an adapter too, but not the run's plan: the card says so.
    assert card_summary(AdapterCard(name="r", path="/p", source="run", status="stopped"))[2] == "0 B · run · stopped"
    assert card_summary(AdapterCard(name="r", path="/p", source="run", status="completed"))[2] == "0 B · run"
    model = AdapterLibraryModel()
    model.set_cards([card])
    tip = model.data(model.index(0), Qt.ItemDataRole.ToolTipRole)
    assert "weights: checkpoint-40, made the run's result after training" in tip


def test_compare_dialog_scores_in_a_child_process_and_shows_the_winner(qtbot, make_area, runs_home, tmp_path):
    from tests.engine.conftest import ANSWERS, QUESTIONS

    data = tmp_path / "legal-test.jsonl"
    data.write_text("".join(json.dumps({"instruction": q, "input": "", "output": ANSWERS["legal"]}) + "\n"
                            for q in QUESTIONS), encoding="utf-8")
    area = make_area()
    area.show()
    assert area.open_compare_dialog() is None and "Tick the adapters" in area.banner.text()
    for final in runs_home.values():
        assert area.model.set_checked(str(final), True)
    dialog = area.open_compare_dialog()
    qtbot.addWidget(dialog)
    assert area.banner.isHidden()
    # The runs' dataset (medical.jsonl/legal.jsonl, different) is no shared default: the demo is offered.
    assert dialog.dataset_edit.text() == "demo"
    dialog.dataset_edit.setText(str(tmp_path / "nowhere.jsonl"))
    assert not dialog.start() and "is not a file" in dialog.status.text()
    dialog.dataset_edit.setText(str(data))
    dialog.samples.setValue(1)
    dialog.max_tokens.setValue(16)
    assert "--answer" not in dialog.command()
    dialog.answer.setCurrentIndex(dialog.answer.count() - 1)  # all held-out records
    cmd = dialog.command()
    assert cmd[:2] == ["adapters", "compare"] and cmd[cmd.index("--load_in") + 1] == "fp32"
    assert cmd[cmd.index("--answer") + 1] == "all"
    assert dialog.command_label.text().startswith("finetune-studio adapters compare ")
    dialog.show()
    with qtbot.waitSignal(dialog.sig_compared, timeout=WAIT_MS) as done:
        assert dialog.start()
    out = done.args[0]
    saved = json.loads(open(out, encoding="utf-8").read())
    assert min(saved["models"], key=lambda m: m["mean_loss"])["name"] == "legal"
    rows = {dialog.table_model.item(r, 0).text(): r for r in range(dialog.table_model.rowCount())}
    assert sorted(rows) == ["(base) demo", "legal", "medical"] and rows["(base) demo"] == 0
    cells = [dialog.table_model.item(rows["legal"], c).text() for c in range(dialog.table_model.columnCount())]
    assert cells[4] == str(len(QUESTIONS)) and cells[5] == "unknown"  # legal wins every record
    # Its greedy answers are the references, word for word; the base's are not.
    assert cells[6:] == ["100%", "1.000"] and not dialog.table.isColumnHidden(6)
    assert dialog.table_model.item(rows["(base) demo"], 6).text() == "0%"
    assert f"answers to {len(QUESTIONS)} held-out records" in dialog.status.text()
    assert dialog.table_model.item(rows["legal"], 1).font().bold()
    assert not dialog.table_model.item(rows["medical"], 1).font().bold()
    answers = dialog.answers.toPlainText()
    assert "reference" in answers and ANSWERS["legal"] in answers and "Read the contract" in answers
    assert "All scores:" in dialog.status.text()
    assert dialog.grab().save(str(tmp_path / "compare.png"))
    # Kept: a new dialog lists it and shows it without computing anything.
    later = area.open_compare_dialog()
    qtbot.addWidget(later)
    assert later.earlier.count() == 2 and "best: legal" in later.earlier.itemText(1)
    later.earlier.activated.emit(1)
    assert later.results.isVisibleTo(later) and later.proc is None
    assert not later.table.isColumnHidden(6)
    assert later.table_model.rowCount() == 3 and "Read the contract" in later.answers.toPlainText()

    # A failure shows the engine's own message.
    dialog.dataset_edit.setText(str(tmp_path / "empty.jsonl"))
    (tmp_path / "empty.jsonl").write_text("", encoding="utf-8")
    assert dialog.start() and dialog.wait(WAIT_MS)
    qtbot.waitUntil(lambda: dialog.run_button.isEnabled())
    assert dialog.status.text().startswith("The comparison failed:") and "empty.jsonl" in dialog.status.text()


def test_compare_adapters_from_the_runs_area_ticks_exactly_them_on_their_base(qtbot, make_area, runs_home,
                                                                              trained_runs, tmp_path, tiny_model_dir,
                                                                              foreign_adapter):
    run = tmp_path / "elsewhere"  # kept outside the runs folder: added to the library
    shutil.copytree(trained_runs["legal"], run)
    area = make_area()
    area.model.set_checked(str(runs_home["legal"]), True)  # ticked before: not part of this comparison
    area.base_box.setCurrentText(str(tiny_model_dir))      # the wrong base: switched to the runs' own
    dialog = area.compare_adapters([str(runs_home["medical"]), str(run / "final")])
    qtbot.addWidget(dialog)
    assert area.base_text() == "demo" and dialog.base == "demo"
    assert sorted(c.name for c in area.model.checked_cards()) == ["elsewhere", "medical"]
    assert sorted(c.name for c in dialog.cards) == ["elsewhere", "medical"]
    assert str((run / "final").resolve()) in dialog.command()
    # An adapter of another base among them: refused with the reason, no dialog.
    assert area.compare_adapters([str(runs_home["medical"]), str(foreign_adapter)]) is None
    assert "can't be compared" in area.banner.text()


def test_a_full_runs_model_is_compared_beside_the_ticked_adapters(qtbot, make_area, runs_home, demo_base):
    from engine.paths import runs_dir
    from gui.adapters.compare_dialog import WholeModel

    full = runs_dir() / "20261202-120000-full"  # a full run's layout: a whole model in final/
    shutil.copytree(demo_base, full / "final")
    (full / "run.yaml").write_text(f"model: {demo_base}\nmethod: full\ndataset: demo\n", encoding="utf-8")
    area = make_area()
    dialog = area.compare_adapters([str(runs_home["medical"]), str(full / "final")])
    qtbot.addWidget(dialog)
    assert [c.name for c in area.model.checked_cards()] == ["medical"]
    assert [type(c).__name__ for c in dialog.cards] == ["AdapterCard", "WholeModel"]
    assert str(full / "final") in dialog.command()
    # Whole models alone: the base is the one the run started from, its dataset the default.
    only = area.compare_adapters([str(full / "final")])
    qtbot.addWidget(only)
    assert only.cards == [WholeModel("20261202-120000-full", str(full / "final"), "demo")]
    assert only.base == "demo" and only.dataset_edit.text() == "demo" and not area.model.checked_cards()


def test_gguf_dialog_exports_the_selected_adapter_in_a_child_process(qtbot, make_area, runs_home, tmp_path):
    area = make_area()
    area.show()
    assert area.open_gguf_dialog() is None and "Select an adapter" in area.banner.text()
    area._select(str(runs_home["medical"]))
    dialog = area.open_gguf_dialog()
    qtbot.addWidget(dialog)
    assert not dialog.folder_button.isVisibleTo(dialog)  # nothing written yet
    run = runs_home["medical"].parent
    # A run's adapter: the file goes in the run folder, named after the run and the type.
    assert dialog.out_edit.text() == str(run / "medical-q8_0.gguf") and dialog.export_button.isEnabled()
    dialog.type_box.setCurrentIndex(dialog.type_box.findData("f16"))
    assert dialog.out_edit.text() == str(run / "medical-f16.gguf") and "16-bit" in dialog.type_note.text()
    # The demo base in f16 (it writes 2.08 MB), and the fp16 merged copy written first.
    assert dialog.size_label.text() == "about 2.1 MB; 4.3 MB free needed while the merged base is written"
    assert dialog.command_label.text() == (f"finetune-studio export-gguf {runs_home['medical']} --type f16 "
                                           f"--out {run / 'medical-f16.gguf'}")
    # A name the user typed stays when the type changes.
    dialog.out_edit.setText(str(tmp_path / "mine.gguf"))
    dialog.out_edit.textEdited.emit(str(tmp_path / "mine.gguf"))
    dialog.type_box.setCurrentIndex(dialog.type_box.findData("q8_0"))
    assert dialog.out_edit.text() == str(tmp_path / "mine.gguf")
    (tmp_path / "mine.gguf").write_bytes(b"keep me")
    assert not dialog.start() and "already exists" in dialog.status.text()
    assert (tmp_path / "mine.gguf").read_bytes() == b"keep me"

    dialog.out_edit.setText(str(tmp_path / "out" / "medical.gguf"))
    with qtbot.waitSignal(dialog.sig_exported, timeout=WAIT_MS) as done:
        assert dialog.start()
    assert done.args == [str(tmp_path / "out" / "medical.gguf")]
    assert (tmp_path / "out" / "medical.gguf").stat().st_size > 100_000
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["medical.gguf"]  # no merge scratch left
    assert "Wrote" in dialog.status.text() and "q8_0" in dialog.status.text()
    assert not dialog.export_button.isEnabled() and dialog.progress.isHidden()
    assert dialog.folder_button.isVisibleTo(dialog) and dialog.written == str(tmp_path / "out" / "medical.gguf")
    assert dialog.grab().save(str(tmp_path / "gguf.png"))


def test_gguf_dialog_writes_a_lora_on_its_own_for_the_bases_gguf(qtbot, make_area, runs_home, tmp_path):
    import gguf

    area = make_area()
    area._select(str(runs_home["legal"]))
    dialog = area.open_gguf_dialog()
    qtbot.addWidget(dialog)
    run = runs_home["legal"].parent
    assert dialog.form_box.isVisibleTo(dialog) and dialog.form_box.currentData() == "merged"
    dialog.form_box.setCurrentIndex(dialog.form_box.findData("lora"))
    # Float types only, an adapter file named as one, its size from the adapter's matrices.
    assert [dialog.type_box.itemData(i) for i in range(dialog.type_box.count())] == ["f16", "f32"]
    assert dialog.out_edit.text() == str(run / "legal-lora-f16.gguf")
    assert "applied at run time" in dialog.intro.text() and dialog.command()[-1] == "--lora"
    assert dialog.size_label.text().startswith("about ") and "merged base" not in dialog.size_label.text()
    dialog.out_edit.setText(str(tmp_path / "legal-lora.gguf"))
    with qtbot.waitSignal(dialog.sig_exported, timeout=WAIT_MS):
        assert dialog.start()
    reader = gguf.GGUFReader(tmp_path / "legal-lora.gguf")
    assert reader.fields["adapter.type"].contents() == "lora"
    assert "--lora FILE" in dialog.status.text() and "ADAPTER FILE" in dialog.status.text()
    assert dialog.grab().save(str(tmp_path / "gguf-lora.png"))


def test_gguf_dialog_offers_no_lora_file_for_a_dora_adapter(qtbot, runs_home, tmp_path):
    import shutil

    from gui.adapters.gguf_dialog import GgufDialog

    dora = shutil.copytree(runs_home["legal"], tmp_path / "dora" / "final")
    cfg = json.loads((dora / "adapter_config.json").read_text())
    (dora / "adapter_config.json").write_text(json.dumps({**cfg, "use_dora": True}))
    dialog = GgufDialog(str(dora), "dora")
    qtbot.addWidget(dialog)
    assert dialog.export_button.isEnabled()  # merging works
    assert not dialog.form_box.model().item(1).isEnabled()
    assert "DoRA" in dialog.form_box.itemData(1, Qt.ItemDataRole.ToolTipRole)


def test_gguf_dialog_refuses_an_adapter_that_cant_merge(qtbot, tmp_path):
    from gui.adapters.gguf_dialog import GgufDialog

    prompt = tmp_path / "prompt-run" / "final"
    prompt.mkdir(parents=True)
    (prompt / "adapter_config.json").write_text(json.dumps({
        "peft_type": "PROMPT_TUNING", "task_type": "CAUSAL_LM", "num_virtual_tokens": 8,
        "base_model_name_or_path": "demo"}))
    dialog = GgufDialog(str(prompt), "prompt-run")
    qtbot.addWidget(dialog)
    assert not dialog.export_button.isEnabled()
    assert "Can't export" in dialog.status.text() and "only LoRA and IA3" in dialog.status.text()
    assert "prompt-run is a prompt tuning adapter:" in dialog.status.text()
    assert "about" not in dialog.size_label.text() and "can't be made" in dialog.size_label.text()
    # A bottleneck adapter (our own format) is named as one, not "a adapter adapter".
    from engine.adapters import BOTTLENECK_FORMAT

    bneck = tmp_path / "bneck-run" / "final"
    bneck.mkdir(parents=True)
    (bneck / "adapter_config.json").write_text(json.dumps({"format": BOTTLENECK_FORMAT,
                                                           "base_model_name_or_path": "demo"}))
    dialog = GgufDialog(str(bneck), "bneck-run")
    qtbot.addWidget(dialog)
    assert "bneck-run is a bottleneck adapter: only LoRA and IA3" in dialog.status.text()
    assert "adapter adapter" not in dialog.status.text() and "about" not in dialog.size_label.text()
    dialog.grab().save(str(tmp_path / "gguf-refused.png"))


def test_the_gguf_dialog_keeps_qts_size(qtbot, runs_home):
    """Its estimated file size was kept in ``self.size``, an int hiding ``QWidget.size()``: any
    caller of ``dialog.size()`` (a layout check, a screenshot script) failed with "'int' object is
    not callable"."""
    from PySide6.QtCore import QSize

    from gui.adapters.gguf_dialog import GgufDialog

    dialog = GgufDialog(str(runs_home["legal"]), "legal")
    qtbot.addWidget(dialog)
    assert isinstance(dialog.size(), QSize) and dialog.file_size > 0


def test_a_pissa_runs_card_gives_the_saved_and_the_trained_rank():
    from engine.adapters import AdapterCard
    from gui.adapters.library_model import card_summary

    card = AdapterCard(name="r", path="/runs/r/final", source="run", method="lora", rank=16, alpha=32,
                       base_model="demo", extra={"init": "PiSSA", "trained_rank": 8})
    assert card_summary(card)[0] == "LoRA r16 α32 (PiSSA r8) on demo"


def test_the_comparison_defaults_to_the_eval_file_the_runs_share():
    from engine.adapters import AdapterCard
    from gui.adapters.compare_dialog import WholeModel, default_dataset

    a = AdapterCard(name="a", path="/a", source="run", dataset="/d/train.jsonl", eval_dataset="/d/eval.jsonl")
    b = AdapterCard(name="b", path="/b", source="run", dataset="/d/train.jsonl", eval_dataset="/d/eval.jsonl")
    plain = AdapterCard(name="c", path="/c", source="run", dataset="/d/train.jsonl")
    assert default_dataset([a, b]) == "/d/eval.jsonl"  # held out from both: the honest comparison
    assert default_dataset([a, plain]) == "/d/train.jsonl"  # not shared: the dataset they share
    assert default_dataset([a, WholeModel("w", "/w", "/other.jsonl")]) == ""


@pytest.mark.parametrize("size", [(960, 640), (1024, 700)])
def test_the_playground_controls_keep_whole_labels_in_a_small_window(qtbot, size):
    """At 1024 px the playground is about 480 px wide: one row of settings cut 'Temperature' to
    'Tempe' and the Generate button to 'enera'."""
    from PySide6.QtWidgets import QLabel

    from gui.main_window import MainWindow

    win = MainWindow(load_demo=False, restore_geometry=False)
    qtbot.addWidget(win)
    win.resize(*size)
    win.show_area("adapters")
    win.show()
    qtbot.waitExposed(win)
    area = win.areas["adapters"]
    qtbot.wait(100)
    right = area.generate_button.parentWidget()
    shown = [area.max_tokens, area.temperature, area.top_p, area.repetition, area.seed, area.compare_base,
             area.saved_box, area.replay_button, area.save_button, area.delete_prompt_button, area.stop_button,
             area.generate_button]
    shown += [w.parentWidget().findChild(QLabel) for w in shown[:5]]
    spins = shown[:5]
    for w in shown:
        if w in spins:
            assert w.width() >= 64, w  # capped at 90 by design; wide enough for its value
        elif w is area.saved_box:
            assert w.width() >= 150
        else:  # buttons, the checkbox and the labels: their whole text
            assert w.width() >= w.sizeHint().width(), w.text()
        r = QRect(w.mapTo(right, QPoint(0, 0)), w.size())
        assert r.left() >= 0 and r.right() <= right.width(), w


def _set_up_playground(area, base: str, ticked: list[str]) -> None:
    """What a user does in the playground before closing the app."""
    area.base_box.setCurrentText(base)
    for path in ticked:
        assert area.model.set_checked(path, True)
    area.prompt_edit.setPlainText("My knee hurts after running.\nWhat should I do?")
    area.system_edit.setText("Answer in one sentence.")
    area.max_tokens.setValue(77)
    area.temperature.setValue(0.3)
    area.top_p.setValue(0.8)
    area.repetition.setValue(1.15)
    area.seed.setValue(7)
    area.compare_base.setChecked(False)


def _assert_prompt_and_settings_restored(area) -> None:
    assert area.prompt_edit.toPlainText() == "My knee hurts after running.\nWhat should I do?"
    assert area.system_edit.text() == "Answer in one sentence."
    assert (area.max_tokens.value(), area.temperature.value(), area.top_p.value(), area.repetition.value(),
            area.seed.value()) == (77, 0.3, 0.8, 1.15, 7)
    assert not area.compare_base.isChecked()


def test_the_playground_is_as_the_user_left_it_after_a_restart(qtbot, make_area, runs_home, demo_base):
    """The base, the ticked adapters, the prompt and the generation settings come back at the next
    start; they are in the settings as soon as they change, so a crash loses none of them."""
    from gui.adapters.area import PLAYGROUND_KEY
    from gui.settings import studio_settings

    ticked = sorted(str(final.resolve()) for final in runs_home.values())
    area = make_area()
    _set_up_playground(area, str(demo_base), ticked)
    # Written on the next turn of the event loop, not when the app closes (there is no close here).
    qtbot.waitUntil(lambda: "My knee hurts" in str(studio_settings().value(PLAYGROUND_KEY, "")), timeout=2000)
    kept = json.loads(studio_settings().value(PLAYGROUND_KEY))
    assert sorted(kept["adapters"]) == ticked and kept["base"] == str(demo_base)

    again = make_area()  # the next start, with the same settings file
    assert again.restore_form()
    assert again.base_text() == str(demo_base)
    assert sorted(c.path for c in again.model.checked_cards()) == ticked
    _assert_prompt_and_settings_restored(again)
    assert again.thread is None and again.banner.isHidden()  # nothing loads until the user asks

    # A start with nothing kept (the first one) leaves the playground as it is built.
    studio_settings().remove(PLAYGROUND_KEY)
    fresh = make_area()
    assert not fresh.restore_form()
    assert not fresh.model.checked and not fresh.prompt_edit.toPlainText() and fresh.compare_base.isChecked()


def test_a_ticked_adapter_deleted_before_the_restart_is_dropped_quietly(qtbot, make_area, runs_home):
    from engine.paths import runs_dir
    from gui.adapters.area import PLAYGROUND_KEY
    from gui.settings import studio_settings

    area = make_area()
    _set_up_playground(area, "demo", [str(runs_home["medical"]), str(runs_home["legal"])])
    area.remember_form()  # as the main window does on close
    area.shutdown()
    shutil.rmtree(runs_dir() / "legal")

    again = make_area()
    assert again.restore_form()
    assert [c.name for c in again.model.checked_cards()] == ["medical"]
    assert again.base_text() == "demo" and again.banner.isHidden()
    _assert_prompt_and_settings_restored(again)
    again.remember_form()
    again.shutdown()
    assert json.loads(studio_settings().value(PLAYGROUND_KEY))["adapters"] == [str(runs_home["medical"].resolve())]

    # None left: the playground's normal empty state, the prompt and settings still there.
    shutil.rmtree(runs_dir() / "medical")
    third = make_area()
    third.show()
    assert third.restore_form()
    assert not third.model.checked and not third.model.cards
    assert third.empty_hint.isVisible() and third.columns_placeholder.isVisible() and third.banner.isHidden()
    _assert_prompt_and_settings_restored(third)


def test_the_main_window_restores_the_playground_unless_started_on_the_demo(qtbot, runs_home):
    """``reopen_last`` (a normal start) puts the playground back; ``--demo`` doesn't, and a session
    that leaves the playground alone (or a --screenshot) doesn't overwrite what was kept."""
    from gui.adapters.area import PLAYGROUND_KEY
    from gui.main_window import MainWindow
    from gui.settings import studio_settings

    win = MainWindow(load_demo=False, restore_geometry=False, reopen_last=True)
    qtbot.addWidget(win)
    _set_up_playground(win.areas["adapters"], "demo", [str(runs_home["medical"])])
    win.close()
    kept = studio_settings().value(PLAYGROUND_KEY)

    demo = MainWindow(load_demo=False, restore_geometry=False)  # --demo
    qtbot.addWidget(demo)
    assert not demo.areas["adapters"].prompt_edit.toPlainText() and not demo.areas["adapters"].model.checked
    demo.show_area("adapters")
    qtbot.wait(50)
    demo.close()
    assert studio_settings().value(PLAYGROUND_KEY) == kept

    shot = MainWindow(load_demo=False, restore_geometry=False)  # as gui.app.screenshot does
    qtbot.addWidget(shot)
    shot.prepare_screenshot("adapters")
    qtbot.wait(50)
    shot.discard_for_screenshot()
    shot.close()
    assert studio_settings().value(PLAYGROUND_KEY) == kept

    again = MainWindow(load_demo=False, restore_geometry=False, reopen_last=True)
    qtbot.addWidget(again)
    playground = again.areas["adapters"]
    assert [c.name for c in playground.model.checked_cards()] == ["medical"]
    _assert_prompt_and_settings_restored(playground)
    again.close()


def test_a_ticked_adapter_whose_folder_is_deleted_is_unticked_on_refresh(make_area, runs_home, tmp_path):
    """Its check box can't be toggled once it can't load: left ticked, every Generate, Compare and
    Merge would fail on it and the user could not untick it."""
    from engine.adapters import add_adapter

    mine = tmp_path / "mine"
    shutil.copytree(runs_home["medical"], mine)
    add_adapter(mine)
    area = make_area()
    area.refresh()
    assert area.model.set_checked(str(mine.resolve()), True) and area.model.set_checked(str(runs_home["legal"]), True)
    shutil.rmtree(mine)
    area.refresh()
    gone = area.model.index(area.model.row_of(mine))
    assert not gone.flags() & Qt.ItemFlag.ItemIsUserCheckable  # "can't load": the box is not the user's
    assert gone.data(Qt.ItemDataRole.CheckStateRole) == Qt.CheckState.Unchecked
    assert [c.name for c in area.model.checked_cards()] == ["legal"]


def test_refresh_says_what_it_found_and_keeps_the_selected_card(make_area, runs_home):
    """A click on Refresh that found nothing new looked like one that did nothing."""
    from engine.paths import runs_dir

    area = make_area()
    area.show()
    area._select(str(runs_home["legal"]))
    shutil.copytree(runs_home["legal"].parent, runs_dir() / "legal-again")
    shutil.rmtree(runs_home["medical"].parent)
    area.refresh_button.click()
    assert area.status.text() == "library read again: 2 adapters, 1 new (legal-again), 1 gone (medical)"
    assert area.library_title.text() == "Adapter library (2)"
    legal = area.model.row_of(runs_home["legal"])
    assert area._selected_path() == str(runs_home["legal"]) and area.list.currentIndex().row() == legal
    area.refresh_button.click()
    assert area.status.text() == "library read again: 2 adapters, nothing new or gone"


def test_acting_on_an_adapter_deleted_since_the_library_was_read_says_so_and_starts_nothing(make_area, runs_home,
                                                                                           tmp_path):
    """Generate, Compare, Merge and the exports check the folders first: no worker or child process
    fails on a missing folder later with a command-line hint; the banner names it and says what to do."""
    from engine.adapters import add_adapter

    mine = tmp_path / "mine"
    shutil.copytree(runs_home["medical"], mine)
    add_adapter(mine)
    area = make_area()
    area.refresh()
    area.prompt_edit.setPlainText("What is the capital of France?")
    for act in (area.generate, area.open_compare_dialog, area.open_merge_dialog, area.open_gguf_dialog,
                lambda: area.export_selected(tmp_path / "out")):
        assert area.model.set_checked(str(mine.resolve()), True)
        area._select(str(mine.resolve()))
        shutil.rmtree(mine, ignore_errors=True)
        assert act() is None
        text = area.banner.text()
        assert text.startswith("mine: its folder was deleted or moved since the library was read"), text
        assert str(mine.resolve()) in text and "press Remove to forget it" in text
        assert not area.model.checked and area.thread is None and not area.columns
        assert not (tmp_path / "out").exists()
        shutil.copytree(runs_home["medical"], mine)  # back, for the next action
        area.refresh()


def test_an_added_folder_deleted_since_reads_as_gone_and_points_at_remove(make_area, runs_home, tmp_path):
    """Its card said "? on ?", "0 B" and to run "finetune-studio adapters remove" in a terminal."""
    from engine.adapters import add_adapter
    from gui.adapters.library_model import CardRole, card_summary

    mine = tmp_path / "mine"
    shutil.copytree(runs_home["medical"], mine)
    add_adapter(mine)
    shutil.rmtree(mine)
    area = make_area()
    area.refresh()
    index = area.model.index(area.model.row_of(mine))
    lines = card_summary(index.data(CardRole))
    assert lines[0] == str(mine.resolve()) and lines[2] == "added"
    problem = index.data(CardRole).problem
    assert problem == "the folder no longer exists (deleted or moved): select it and press Remove to forget it"
    assert "finetune-studio" not in index.data(Qt.ItemDataRole.ToolTipRole)
    area._select(str(mine.resolve()))
    assert area.remove_button.isEnabled()
    area.remove_button.click()
    assert area.model.row_of(mine) < 0


def test_saving_a_prompt_under_a_name_taken_by_another_asks_before_replacing_it(make_area, monkeypatch):
    """The suggested name is the prompt's first 40 characters: two questions from the demo data
    ("Please answer this question. What is the …") got the same one, and the first was lost."""
    area = make_area()
    asked: list = []
    monkeypatch.setattr(area, "_confirm_replace_prompt", lambda old: asked.append(old.prompt) or False,
                        raising=False)  # without the question, the test fails on what was saved
    first = "Please answer this question. What is the chemical formula for water?"
    area.prompt_edit.setPlainText(first)
    name = first[:40]
    assert area.save_prompt(name) == name and not asked
    assert area.save_prompt(name) == name and not asked  # the same prompt again: nothing to lose
    area.prompt_edit.setPlainText("Please answer this question. What is the capital of France?")
    assert area.save_prompt(name) is None  # the user said no
    assert asked == [first] and PromptStore().get(name).prompt == first
    monkeypatch.setattr(area, "_confirm_replace_prompt", lambda old: True)
    assert area.save_prompt(name) == name
    assert PromptStore().get(name).prompt.endswith("capital of France?") and PromptStore().names() == [name]


def test_deleting_a_saved_prompt_asks_first(make_area, monkeypatch):
    area = make_area()
    area.prompt_edit.setPlainText("What should I do today?")
    area.save_prompt("today")
    assert area.saved_box.currentText() == "today" and area.delete_prompt_button.isEnabled()
    asked: list = []
    monkeypatch.setattr(area, "_confirm_delete_prompt", lambda saved: asked.append(saved.name) or False,
                        raising=False)
    area.delete_prompt_button.click()
    assert PromptStore().names() == ["today"] and area.saved_box.currentText() == "today" and asked == ["today"]
    assert "saved prompt" in area.delete_prompt_button.toolTip()
    monkeypatch.setattr(area, "_confirm_delete_prompt", lambda saved: True)
    area.delete_prompt_button.click()
    assert PromptStore().names() == [] and area.saved_box.count() == 0


def _painted_details(area, path) -> list[tuple[str, bool]]:
    """The lines the delegate paints under a card's name, at the width the area gives the card."""
    from gui.adapters.library_model import CardRole

    index = area.model.index(area.model.row_of(path))
    delegate = area.list.itemDelegate()
    left, right = delegate.text_span(area.list.visualRect(index))
    return delegate.detail_lines(index.data(CardRole), index.data(MatchRole), area.list.font(), right - left)


def test_why_a_card_cannot_be_used_is_shown_whole_not_cut_at_the_card_edge(qtbot, make_area, runs_home, tmp_path,
                                                                        tiny_model_dir):
    """Cut to one line, the gone folder's card read "…(deleted or moved): select…", and the
    refused one "other base: hidden_size 32 vs 128, num_hidden_layer…"."""
    from engine.adapters import add_adapter

    mine = tmp_path / "mine"
    shutil.copytree(runs_home["medical"], mine)
    add_adapter(mine)
    shutil.rmtree(mine)
    area = make_area()
    area.resize(1024, 700)  # the narrowest window: the library pane at its minimum width
    area.show()
    qtbot.waitExposed(area)
    area.refresh()
    gone, fine = (area.list.visualRect(area.model.index(area.model.row_of(p))) for p in (mine, runs_home["medical"]))
    assert gone.height() > fine.height()  # the card is as tall as its lines
    problem = [text for text, is_problem in _painted_details(area, mine) if is_problem]
    assert " ".join(problem) == ("the folder no longer exists (deleted or moved): select it and press Remove to "
                                 "forget it")
    # A base the adapters don't fit: each card grows to say how, when the base changes.
    area.base_box.setCurrentText(str(tiny_model_dir))
    area._update_matches()
    qtbot.waitUntil(lambda: area.list.visualRect(area.model.index(area.model.row_of(runs_home["medical"]))).height()
                    > fine.height())
    problem = [text for text, is_problem in _painted_details(area, runs_home["medical"]) if is_problem]
    assert len(problem) == 2 and problem[0].startswith("other base: hidden_size 128 vs 32")
    assert "num_hidden_layers 4 vs 2" in " ".join(problem)


def test_an_added_folders_method_reads_as_a_runs_does(make_area, demo_base, tmp_path):
    """An added prompt tuning folder's card said "prompt_tuning on demo" (its PEFT type), and its
    refused merge "is a prompt_tuning adapter", where the GGUF export says "prompt tuning"."""
    from engine.adapters import add_adapter
    from gui.adapters.library_model import CardRole, card_summary
    from tests.engine.conftest import other_type_adapter

    prompt = add_adapter(other_type_adapter(demo_base, tmp_path / "soft-prompt", "prompt")).path
    area = make_area()
    area.refresh()
    card = area.model.index(area.model.row_of(prompt)).data(CardRole)
    assert card.method == "prompt_tuning"  # the engine's: the PEFT type of a folder without a run
    assert card_summary(card)[0] == "Prompt tuning on demo"
    area._select(prompt)
    assert area.open_merge_dialog() is None
    assert area.banner.text().startswith("soft-prompt is a prompt tuning adapter; only LoRA and IA3 adapters")


def test_merge_and_compare_say_at_once_that_the_base_is_not_there(make_area, runs_home, tmp_path):
    """A Base of a folder that doesn't exist: the dialogs opened, took their settings, and only their
    child process said "no such folder", after loading the engine."""
    area = make_area()
    area.base_box.setCurrentText(str(tmp_path / "no-such-model"))
    area._update_matches()
    assert area.model.set_checked(str(runs_home["medical"]), True)  # undecided without a base: "checked on load"
    for opener in (area.open_merge_dialog, area.open_compare_dialog):
        area._show_banner("")
        assert opener() is None
        text = area.banner.text()
        assert area.banner.isVisibleTo(area) and text.startswith("The base in the Base box can't be loaded: ")
        assert f"'{tmp_path / 'no-such-model'}': no such folder" in text and "config.json" in text
    area.base_box.setCurrentText("demo")  # a base that loads: the dialogs open
    dialog = area.open_merge_dialog()
    assert dialog is not None and area.banner.isHidden()
    dialog.deleteLater()


def test_a_base_that_does_not_exist_is_what_each_card_says(make_area, runs_home, tmp_path):
    """With a Base of a folder that doesn't exist, every card said "? checked on load": a load
    that could never happen. Now they say the base can't load, and the tooltip why."""
    from gui.adapters.library_model import AdapterCardDelegate, CardRole

    area = make_area()
    area.refresh()
    missing = tmp_path / "no-such-model"
    area.base_box.setCurrentText(str(missing))
    area._update_matches()
    index = area.model.index(area.model.row_of(runs_home["medical"]))
    verdict, _ = AdapterCardDelegate._verdict(index.data(CardRole), index.data(MatchRole))
    assert verdict == "✗ base can't load"
    tip = index.data(Qt.ItemDataRole.ToolTipRole)
    assert f"the base '{missing}' can't be loaded: it is not on this machine" in tip and "choose another base" in tip
    # The demo base, not built yet, is built on load: still undecided, not refused.
    from engine.adapters import check_base_match

    assert check_base_match(runs_home["medical"], "demo").base_missing is False


def test_the_gguf_export_entry_is_greyed_out_with_why_for_an_adapter_that_cant_merge(make_area, runs_home,
                                                                                   demo_base, tmp_path):
    """"GGUF file…" was offered for a prompt tuning adapter, and its dialog only said after it
    opened that the export can't work."""
    from engine.adapters import add_adapter
    from tests.engine.conftest import other_type_adapter

    prompt = add_adapter(other_type_adapter(demo_base, tmp_path / "soft-prompt", "prompt")).path
    area = make_area()
    area.refresh()
    area._select(prompt)
    action = area.export_gguf_action
    assert area.export_button.isEnabled() and area.export_folder_action.isEnabled()  # the folder copy still works
    assert not action.isEnabled()
    assert action.toolTip().startswith("soft-prompt is a prompt tuning adapter: only LoRA and IA3 adapters merge")
    assert "Use Adapter folder…" in action.toolTip() and "train a LoRA or IA3 adapter" in action.toolTip()
    assert area.export_button.menu().toolTipsVisible()
    area._select(str(runs_home["medical"]))  # a LoRA: offered again
    assert action.isEnabled() and "merged into its base" in action.toolTip()


def test_the_gguf_dialog_says_when_the_model_was_renamed_for_llama_cpp(qtbot, runs_home, tmp_path):
    """The export may change the model name written into the file (``llama_cpp_name``); the CLI
    printed why, the dialog's success text didn't."""
    import gguf

    from engine.gguf_export import GgufResult, llama_cpp_name
    from gui.adapters.gguf_dialog import GgufDialog

    name, why = llama_cpp_name("my-phi3-chat", ["a", "b"], [gguf.TokenType.NORMAL] * 2, {})
    assert name == "my-phi 3-chat" and why
    dialog = GgufDialog(str(runs_home["medical"]), "medical")
    qtbot.addWidget(dialog)
    result = GgufResult(tmp_path / "medical.gguf", "q8_0", "llama", "llama-bpe", None, 12, 2_000_000, 1.5,
                        renamed=why)
    dialog.output = json.dumps(result.to_dict()) + "\n"
    with qtbot.waitSignal(dialog.sig_exported):
        dialog._on_finished(0, None)
    text = dialog.status.text()
    assert text.startswith(f"Wrote {tmp_path / 'medical.gguf'}")
    assert "<br>Named 'my-phi 3-chat': llama.cpp takes a model whose name contains 'phi3' or 'phi-3'" in text
    assert text.endswith("which this one isn't.")
    dialog.resize(640, dialog.sizeHint().height())
    assert dialog.grab().save(str(tmp_path / "gguf-renamed.png"))


def test_the_library_pane_takes_a_share_of_a_wide_window(qtbot, make_area, runs_home):
    """At 1920 px the library stayed at its 372 px minimum, cutting card names and targets, beside
    a playground with room to spare; at 1024 px it must stay at that minimum."""
    from PySide6.QtWidgets import QSplitter

    area = make_area()
    area.refresh()
    area.show()
    qtbot.waitExposed(area)
    splitter = area.findChild(QSplitter)
    library = splitter.widget(0)
    area.resize(1024, 700)
    qtbot.waitUntil(lambda: splitter.width() == 1024)
    assert library.width() == library.minimumWidth()  # the playground keeps all it had
    area.resize(1920, 1080)
    qtbot.waitUntil(lambda: splitter.width() == 1920)
    library_w, playground_w = splitter.sizes()
    assert 0.25 * 1920 < library_w < playground_w / 2  # a share of the room, the playground still first
    area.resize(1024, 700)  # and back: the library gives it up again
    qtbot.waitUntil(lambda: splitter.width() == 1024)
    assert library.width() == library.minimumWidth()


@pytest.mark.parametrize("points", [9, 13, 16])
def test_a_card_holds_its_lines_at_a_large_font(qtbot, app_font_pt, points):
    """At 13 pt the card's last line (date, size, source) was painted past its bottom, over the next card."""
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtWidgets import QListView, QStyleOptionViewItem

    from engine.adapters import AdapterCard
    from gui.adapters.library_model import AdapterCardDelegate

    app_font_pt(points)
    model = AdapterLibraryModel()
    model.set_cards([AdapterCard(name="medical-assistant", path="/runs/medical-assistant/final", source="run",
                                 method="lora", base_model="demo", date="2026-12-05 09:54", size_bytes=745_400)])
    view = QListView()
    qtbot.addWidget(view)
    view.setModel(model)
    delegate = AdapterCardDelegate(view)
    option = QStyleOptionViewItem()
    option.initFrom(view)
    option.font = view.font()
    option.widget = view
    index = model.index(0)
    height = delegate.sizeHint(option, index).height()
    option.rect = QRect(0, 0, 360, height)
    below = 80
    image = QImage(360, height + below, QImage.Format.Format_ARGB32)
    image.fill(0)
    painter = QPainter(image)
    delegate.paint(painter, option, index)
    painter.end()
    painted_below = [(x, y) for y in range(height, height + below) for x in range(0, 360, 2)
                     if image.pixelColor(x, y).alpha()]
    assert not painted_below, f"text painted under the card's {height} px at {points} pt: {painted_below[:5]}"


def test_the_library_pane_at_13_pt_shows_its_buttons_and_titles_whole(qtbot, app_font_pt, make_area):
    """At 13 pt on a 1280-px screen "Compare on data…" was cut to "ompare on data.", the hint to
    "Tick adapters to compare them in the play", and the 14-px titles were smaller than the text."""
    from PySide6.QtWidgets import QPushButton

    app_font_pt(13)
    area = make_area()
    area.resize(1280 - 150, 720)  # what the main window leaves beside its sidebar
    area.show()
    qtbot.waitExposed(area)
    for button in (area.compare_button, area.merge_button, area.refresh_button, area.add_button):
        assert button.width() >= button.fontMetrics().horizontalAdvance(button.text()), button.text()
    assert [b.text() for b in area.findChildren(QPushButton) if b.isVisible() and b.visibleRegion().isEmpty()] == []
    hint = next(label for label in area.findChildren(type(area.library_title))
                if label.text().startswith("Tick adapters"))
    assert hint.heightForWidth(hint.width()) <= hint.height()  # wrapped, not cut
    assert area.library_title.fontInfo().pointSizeF() > area.font().pointSizeF()


def test_the_prompt_box_holds_four_lines_at_16_pt(qtbot, app_font_pt, make_area):
    """Its fixed 72 px held two and a half lines of a 16-pt font."""
    app_font_pt(16)
    area = make_area()
    edit = area.prompt_edit
    edit.setPlainText("one\ntwo\nthree\nfour")
    area.show()
    qtbot.waitExposed(area)
    assert edit.viewport().height() >= 4 * edit.fontMetrics().lineSpacing()


def test_tab_leaves_the_prompt_and_ctrl_with_either_enter_key_generates(make_area, qtbot):
    """Tab in the prompt box typed a tab character, press after press: the settings, Save prompt and
    Generate were out of the keyboard's reach. Ctrl+Enter (the placeholder's words) on the keypad's
    Enter did nothing: only Ctrl+Return was bound."""
    from tests.gui.keyboard_audit import describe, tab_chain, tab_stops

    area = make_area()
    area.show()
    area.activateWindow()
    qtbot.waitUntil(area.isActiveWindow)
    chain = tab_chain(area.list)
    assert area.prompt_edit.toPlainText() == ""  # no tab typed into it
    assert not [describe(w) for w in tab_stops(area) if w not in chain]
    assert chain.index(area.system_edit) == chain.index(area.prompt_edit) + 1
    assert chain.index(area.generate_button) > chain.index(area.seed)
    for key, mods in ((Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier),
                      (Qt.Key.Key_Enter, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.KeypadModifier)):
        area.banner.hide()
        area.prompt_edit.setFocus()
        qtbot.keyClick(area.prompt_edit, key, mods)
        assert area.banner.isVisible() and "Type a prompt" in area.banner.text(), key  # generate() ran
    assert "Ctrl+Enter" in area.generate_button.toolTip()


def test_a_screen_reader_names_the_playgrounds_boxes(make_area):
    """The prompt, the settings and the base boxes had no accessible name: a screen reader said
    "edit text, 128" with no word of what the box is."""
    from tests.gui.keyboard_audit import spoken_name

    area = make_area()
    area.show()
    named = {w: spoken_name(w) for w in (area.list, area.prompt_edit, area.system_edit, area.base_box, area.precision_box,
                       area.max_tokens, area.temperature, area.top_p, area.repetition, area.seed)}
    assert list(named.values()) == ["Adapter library", "Prompt", "System message", "Base", "Precision",
                                    "Max tokens", "Temperature", "Top-p", "Rep. penalty", "Seed"]
