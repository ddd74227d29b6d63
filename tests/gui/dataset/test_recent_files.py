"""Starting where you stopped: recent files under Open ▾, the last file reopened at start, and the
demo dataset (it ships with the app) saved as a copy, never over itself."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog

from engine.paths import resources_dir
from gui.main_window import MainWindow
from gui.settings import recent_files


@pytest.fixture
def shipped(tmp_path, monkeypatch) -> Path:
    """The app's resources in a tmp folder, so a broken save can't touch the repository's."""
    res = Path(shutil.copytree(resources_dir(), tmp_path / "resources"))  # 4 MB: the demo model too
    monkeypatch.setenv("FINETUNE_STUDIO_RESOURCES", str(res))
    return res / "demo" / "dataset.jsonl"


def _copies(tmp_path, small_dataset, *names) -> list[Path]:
    paths = []
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        paths.append(Path(shutil.copy(small_dataset, tmp_path / name)))
    return paths


@pytest.fixture
def make_window(qtbot, monkeypatch):
    """Main windows whose areas are shut down (threads stopped) after the test."""
    from engine.precision import Environment
    from gui.train import area as area_module

    monkeypatch.setattr(area_module, "detect_environment_isolated", Environment.cpu_only)
    made = []

    def _make(**kw) -> MainWindow:
        win = MainWindow(restore_geometry=False, **kw)
        qtbot.addWidget(win)
        made.append(win)
        return win

    yield _make
    for win in made:
        win.discard_for_screenshot()  # close without prompts or saved state
        win.close()


def _recent_entries(ed) -> list[str]:
    ed._fill_open_menu()
    return [a.toolTip() for a in ed.open_menu.actions() if a.toolTip().startswith("/")]


def test_open_lists_the_files_opened_lately_newest_first(make_editor, small_dataset, tmp_path, shipped):
    a, b = _copies(tmp_path, small_dataset, "a/one.jsonl", "b/two.jsonl")
    ed = make_editor(a, wait_lint=False)
    ed.open_file(b)
    ed.open_file(shipped)  # the demo has its own entry, not a recent one
    ed.open_file(a)
    assert _recent_entries(ed) == [str(a), str(b)]
    entry = next(x for x in ed.open_menu.actions() if x.toolTip() == str(a))
    assert not entry.isEnabled() and entry.text().startswith("&1  one.jsonl")  # the open file
    assert any(x.text() == "Open the demo dataset" for x in ed.open_menu.actions())
    next(x for x in ed.open_menu.actions() if x.toolTip() == str(b)).trigger()
    assert ed.path() == b and recent_files() == [b, a]
    next(x for x in ed.open_menu.actions() if x.text() == "Clear the list").trigger()
    assert _recent_entries(ed) == [] and recent_files() == []


def test_a_recent_file_that_was_deleted_is_said_so_and_dropped(make_editor, small_dataset, tmp_path):
    a, b = _copies(tmp_path, small_dataset, "one.jsonl", "two.jsonl")
    ed = make_editor(a, wait_lint=False)
    ed.open_file(b)
    a.unlink()
    ed.open_recent(a)
    assert ed.path() == b  # the open file stays
    assert "no longer at" in ed.banner.label.text() and not ed.banner.isHidden()
    assert recent_files() == [b]


def test_the_app_reopens_the_file_open_when_it_closed(make_window, small_dataset, tmp_path, shipped):
    (mine,) = _copies(tmp_path, small_dataset, "mine.jsonl")
    win = make_window(load_demo=False)
    editor = win.areas["dataset"]
    win.load_demo(reopen_last=True)
    assert editor.path() == shipped  # first start: the demo
    editor.open_file(mine)
    editor.open_file(small_dataset)
    win.load_demo()  # --demo, and screenshots
    assert editor.path() == shipped
    editor.open_file(mine)  # the file open when the app closed
    win.load_demo(reopen_last=True)
    assert editor.path() == mine
    win.load_demo(reopen_last=True, path=small_dataset)  # --open FILE
    assert editor.path() == small_dataset
    editor.open_file(mine)
    mine.unlink()
    again = make_window(load_demo=True, reopen_last=True)
    editor = again.areas["dataset"]
    assert editor.path() == shipped  # the demo instead, under the reason
    text = editor.banner.label.text()
    assert not editor.banner.isHidden() and f"Can't open {mine.name}" in text
    assert "It was the file open when Finetune Studio last closed. The demo dataset is open instead" in text
    again.load_demo(path=tmp_path / "typo.jsonl")  # --open FILE that isn't there: not the last session's
    text = editor.banner.label.text()
    assert "Can't open typo.jsonl" in text and "last closed" not in text and "demo dataset is open" in text


def test_saving_the_demo_writes_a_copy_and_edits_it(make_editor, shipped, tmp_path, monkeypatch, studio_home):
    before = shipped.read_bytes()
    ed = make_editor(shipped, wait_lint=False)
    assert ed.is_shipped()
    ed.proxy.setData(ed.proxy.index(0, ed.model.column_of("output")), "my answer", Qt.ItemDataRole.EditRole)
    asked = []

    def answer(path):
        def dialog(_parent, title, start, filters, selected=""):
            asked.append((title, start, selected))
            return str(path), selected
        return dialog

    monkeypatch.setattr(QFileDialog, "getSaveFileName", answer(""))  # cancelled
    assert not ed.save() and ed.is_dirty()
    assert asked[0] == ("dataset.jsonl ships with the app: save your copy as",
                        str(studio_home / "datasets" / "dataset.jsonl"), "JSON lines (*.jsonl)")
    monkeypatch.setattr(QFileDialog, "getSaveFileName", answer(shipped.parent / "other.jsonl"))
    assert not ed.save() and "outside the app's resources" in ed.banner.label.text()
    assert not (shipped.parent / "other.jsonl").exists()
    copy = tmp_path / "work" / "demo-edited.jsonl"
    copy.parent.mkdir()
    monkeypatch.setattr(QFileDialog, "getSaveFileName", answer(copy))
    assert ed.save()
    assert shipped.read_bytes() == before  # the shipped file is never written
    assert ed.path() == copy and not ed.is_dirty() and not ed.is_shipped()
    assert '"output": "my answer"' in copy.read_text(encoding="utf-8").splitlines()[0]
    assert recent_files()[0] == copy
    ed.proxy.setData(ed.proxy.index(1, ed.model.column_of("output")), "second", Qt.ItemDataRole.EditRole)
    monkeypatch.setattr(QFileDialog, "getSaveFileName", answer(""))
    assert ed.save() and len(asked) == 3  # the copy saves in place, no dialog


def test_the_command_opens_a_file_or_the_demo(monkeypatch, small_dataset, tmp_path, capsys):
    from engine import cli

    handed = []
    monkeypatch.setattr(cli, "_run_gui", lambda argv: handed.append(list(argv)) or 0)
    assert cli._main(["--open", str(small_dataset)]) == 0
    assert cli._main(["--demo"]) == 0
    assert handed == [["--open", str(small_dataset.resolve())], ["--demo"]]
    with pytest.raises(SystemExit) as e:
        cli._main(["--open", str(tmp_path / "missing.jsonl")])
    assert e.value.code == 2 and f"--open {tmp_path / 'missing.jsonl'}: no such file" in capsys.readouterr().err


def test_the_gui_program_takes_open_and_demo():
    from gui.app import _parse

    args = _parse(["--open", "x.jsonl", "--demo"])
    assert args.open == Path("x.jsonl") and args.demo
    assert not _parse([]).demo and _parse([]).open is None


def test_the_demo_saved_as_another_format_opens_that_copy(make_editor, shipped, tmp_path, monkeypatch):
    before = shipped.read_bytes()
    ed = make_editor(shipped, wait_lint=False)
    ed.proxy.setData(ed.proxy.index(0, ed.model.column_of("output")), "my answer", Qt.ItemDataRole.EditRole)
    copy = tmp_path / "mine.csv"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a: (str(copy), "CSV (*.csv)"))
    assert ed.save()
    assert ed.path() == copy and not ed.is_dirty() and shipped.read_bytes() == before
    assert ed.dataset().records[0].peek()["output"] == "my answer"


def test_split_of_the_demo_writes_into_the_data_home(make_editor, shipped, studio_home):
    ed = make_editor(shipped, wait_lint=False)
    dialog = ed.open_split_dialog()
    try:
        assert dialog.out_edit.text() == str(studio_home / "datasets")
    finally:
        dialog.reject()
