"""Opening a dataset of the Hugging Face cache in the editor: a local copy, edited like any file."""

from __future__ import annotations

import json

from tests.engine.test_hub_datasets import hub_cache  # noqa: F401 - the fixture


def test_a_cached_dataset_opens_as_a_local_copy_the_editor_saves(make_editor, hub_cache, tmp_path, qtbot):  # noqa: F811
    ed = make_editor()
    copy = tmp_path / "mini.jsonl"
    assert ed.open_hub("org/alpaca-mini", copy)
    assert ed.path() == copy and len(ed.dataset().records) == 20
    lines = copy.read_text(encoding="utf-8").splitlines()
    assert json.loads(lines[13])["output"] == "Word 13."
    assert "mini.jsonl" in ed.title()
    # The split's two parquet files are one JSONL file now, and the editor writes only to it.
    blobs = sorted(p.stat().st_mtime_ns for p in (hub_cache / "datasets--org--alpaca-mini").rglob("*.parquet"))
    assert ed.save()
    assert sorted(p.stat().st_mtime_ns for p in (hub_cache / "datasets--org--alpaca-mini").rglob("*.parquet")) == blobs

    assert not ed.open_hub("org/alpaca-mini:dev", tmp_path / "dev.jsonl")
    text = ed.banner.label.text()
    assert "Can't open org/alpaca-mini:dev" in text and "no split 'dev'" in text and "test, train" in text
    assert not (tmp_path / "dev.jsonl").exists() and ed.path() == copy


def test_the_open_button_offers_the_cache(make_editor):
    from PySide6.QtWidgets import QToolButton

    ed = make_editor()
    button = ed.toolbar.widgetForAction(ed.act_open)
    assert isinstance(button, QToolButton)
    assert button.popupMode() == QToolButton.ToolButtonPopupMode.MenuButtonPopup
    assert [a.text() for a in ed.act_open.menu().actions()] == ["Open a file…", "Open from the Hugging Face cache…",
                                                                 "Open the demo dataset"]


def test_a_record_of_a_cached_dataset_opens_in_its_local_copy(make_editor, hub_cache, studio_home):  # noqa: F811
    ed = make_editor()
    assert ed.show_record("org/alpaca-mini", 13, "Say the word number 13.")
    copy = studio_home / "hub-copies" / "org__alpaca-mini-train.jsonl"
    assert ed.path() == copy and ed.current_record_index() == 13 and not ed.banner.isVisible()
    # The copy is made once: edits in it are kept, the next audit link opens it again.
    mtime = copy.stat().st_mtime_ns
    assert ed.show_record("org/alpaca-mini", 2)
    assert copy.stat().st_mtime_ns == mtime and ed.current_record_index() == 2
