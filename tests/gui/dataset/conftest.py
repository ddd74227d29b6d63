"""Fixtures for the dataset editor: an editor widget, and small files in each format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.paths import demo_dataset_path


@pytest.fixture
def make_editor(qtbot):
    """Build editors that are shut down (threads stopped) after the test."""
    from gui.dataset.editor import DatasetEditor

    made = []

    def _make(path: Path | None = None, wait_lint: bool = True):
        ed = DatasetEditor()
        qtbot.addWidget(ed)
        ed.resize(1200, 760)
        made.append(ed)
        if path is not None:
            if wait_lint:
                with qtbot.waitSignal(ed.sig_lint_finished, timeout=20000):
                    ed.open_file(path)
            else:
                ed.open_file(path)
        return ed

    yield _make
    for ed in made:
        ed.shutdown()


@pytest.fixture
def shown_editor(make_editor, qtbot):
    """An editor on a file, shown in an active window: shortcuts only fire in one."""

    def _make(path):
        ed = make_editor(path)
        ed.show()
        ed.activateWindow()
        qtbot.waitUntil(ed.isActiveWindow)
        return ed

    return _make


@pytest.fixture
def demo_copy(tmp_path) -> Path:
    """The whole demo dataset, copied so tests can save over it."""
    dst = tmp_path / "demo.jsonl"
    dst.write_bytes(demo_dataset_path().read_bytes())
    return dst


@pytest.fixture
def broken_file(tmp_path) -> Path:
    """Alpaca JSONL with one line that is not valid JSON (line 3)."""
    path = tmp_path / "broken.jsonl"
    lines = [
        json.dumps({"instruction": "Say hi", "input": "", "output": "Hi!"}),
        json.dumps({"instruction": "Name a colour", "input": "", "output": "Blue"}),
        '{"instruction": "Count to three", "input": "", "output": "1, 2, 3"',  # missing }
        json.dumps({"instruction": "Capital of France?", "input": "", "output": "Paris"}),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def messages_file(tmp_path) -> Path:
    path = tmp_path / "chat.jsonl"
    rows = [
        {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                      {"role": "assistant", "content": "Hello!"}], "id": 1},
        {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}], "id": 2},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path
