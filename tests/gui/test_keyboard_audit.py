"""The keyboard across the whole window and its dialogs: no two shortcuts on one key where the
keyboard is (Qt then emits activatedAmbiguously and does nothing), no mnemonic letter twice, and
Tab reaching every control of each dialog from a sensible first focus."""

from __future__ import annotations

import json

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QAbstractButton, QPushButton

from gui.main_window import AREAS, MainWindow
from tests.gui.keyboard_audit import ambiguous_shortcuts, describe, duplicate_mnemonics, tab_chain, tab_stops


@pytest.fixture
def chat_file(tmp_path):
    path = tmp_path / "chat.jsonl"
    rows = [{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                          {"role": "assistant", "content": "Hello!"}]},
            {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize("data", ["alpaca", "chat"])
def test_no_two_shortcuts_share_a_key_where_the_keyboard_is(qtbot, small_dataset, chat_file, data):
    """Every action and shortcut of the real window (the areas' own, the editor's standard keys, the
    form's turn keys, the area keys Ctrl+1..4), checked with the keyboard on each control of each area."""
    win = MainWindow(load_demo=False, restore_geometry=False,
                     open_path=small_dataset if data == "alpaca" else chat_file)
    qtbot.addWidget(win)
    win.show()
    editor = win.areas["dataset"]
    editor.add_record()  # Undo enabled: its keys are live too
    for record in range(2):
        editor.select_record(record)
        for key in AREAS:
            win.show_area(key)
            assert not ambiguous_shortcuts(win), key
            assert not duplicate_mnemonics(win), key
    win.discard_for_screenshot()
    win.close()


def _dialogs():
    from engine.adapters import AdapterCard
    from engine.paths import demo_dataset_path
    from gui.adapters.compare_dialog import CompareDialog, WholeModel
    from gui.adapters.gguf_dialog import GgufDialog
    from gui.adapters.merge_dialog import MergeDialog
    from gui.dataset.split_dialog import SplitDialog
    from gui.train.vram_gauge import FitDialog

    gib = 2**30
    cards = [AdapterCard(name=n, path=f"/runs/{n}/final", source="run") for n in ("medical", "legal")]
    return {
        "compare": lambda: CompareDialog("demo", [WholeModel("full-run", "/runs/full-run/final"), cards[0]]),
        "merge": lambda: MergeDialog("demo", cards),
        "gguf": lambda: GgufDialog("/runs/medical/final", "medical"),
        "split": lambda: SplitDialog(demo_dataset_path()),
        "fit": lambda: FitDialog([{"description": "batch 1", "changes": {"batch_size": 1}, "peak_bytes": 15 * gib,
                                   "fits": "yes"}], 24 * gib),
    }


@pytest.mark.parametrize(("name", "action"), [("compare", "Compare"), ("merge", "Merge"), ("gguf", "Export"),
                                              ("split", "Split"), ("fit", "Apply")])
def test_each_dialog_tabs_through_every_control_without_clashing_keys(qtbot, name, action):
    """Return in the Compare and Split dialogs pressed "Browse…" (a folder picker), not the dialog's
    action: its default was set before the button box was in the dialog, where Qt could not record it."""
    dialog = _dialogs()[name]()
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.activateWindow()
    qtbot.waitUntil(dialog.isActiveWindow)
    first = dialog.focusWidget()
    # The first focus is where the user starts (an input, a list), not a button that ends the dialog.
    assert first is not None and not isinstance(first, QAbstractButton), describe(first)
    # Return there presses the dialog's action (checked before Tab gives a button the focus).
    assert [b.text() for b in dialog.findChildren(QPushButton) if b.isDefault()] == [action]
    chain = tab_chain(first)
    assert all(dialog.isAncestorOf(w) and w.isVisible() and w.isEnabled() for w in chain)
    assert not [describe(w) for w in tab_stops(dialog) if w not in chain]
    assert not ambiguous_shortcuts(dialog)
    assert not duplicate_mnemonics(dialog)


def test_return_in_the_split_dialogs_fields_splits(qtbot, small_dataset, tmp_path):
    from gui.dataset.split_dialog import SplitDialog

    dialog = SplitDialog(small_dataset, out_dir=tmp_path / "parts")
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.activateWindow()
    qtbot.waitUntil(dialog.isActiveWindow)
    dialog.seed.setFocus()
    qtbot.keyClick(dialog.seed, Qt.Key.Key_Return)  # (Browse… opened a folder picker: a modal dialog)
    assert sorted(p.name for p in (tmp_path / "parts").iterdir()) == ["small-eval.jsonl", "small-train.jsonl"]


def test_the_sidebar_names_each_areas_key_and_the_key_shows_it(qtbot):
    """Ctrl+1..4 showed the areas, but nothing on screen said so."""
    win = MainWindow(load_demo=False, restore_geometry=False)
    qtbot.addWidget(win)
    win.show()
    win.activateWindow()
    qtbot.waitUntil(win.isActiveWindow)
    for i, key in reversed(list(enumerate(AREAS))):
        assert win.nav.item(i).toolTip().endswith(f"(Ctrl+{i + 1})")
        qtbot.keyClick(win.nav, getattr(Qt.Key, f"Key_{i + 1}"), Qt.KeyboardModifier.ControlModifier)
        assert win.current_area() == key
    win.discard_for_screenshot()


def test_docs_keyboard_md_names_every_key_the_window_binds(qtbot, chat_file):
    """The keyboard list in docs/ is the window's: each key of each action and shortcut (the editor's,
    the form's turn keys, the filter's, the playground's, the area keys) is in it. Media keys that
    the platform adds to a standard key (the keyboard's Open, Save, Undo keys) are left out."""
    from pathlib import Path

    from PySide6.QtGui import QAction, QShortcut

    doc = (Path(__file__).resolve().parents[2] / "docs" / "keyboard.md").read_text(encoding="utf-8")
    win = MainWindow(load_demo=False, restore_geometry=False, open_path=chat_file)
    qtbot.addWidget(win)
    keys = {k for a in win.findChildren(QAction) for k in a.shortcuts()}
    keys |= {k for s in win.findChildren(QShortcut) for k in s.keys()}
    media = {Qt.Key.Key_Open, Qt.Key.Key_Save, Qt.Key.Key_Find, Qt.Key.Key_Undo, Qt.Key.Key_Redo}
    spelled = {k.toString() for k in keys if k[0].key() not in media}
    assert len(spelled) > 30
    assert not sorted(k for k in spelled if f"`{k}`" not in doc)
    win.discard_for_screenshot()
