"""Adapters-area fixtures: the engine tests' trained adapters, and a mismatched one.

The LoRA fixtures live in tests/engine/conftest.py; they are loaded from there by path
(test folders are not packages), and reuse the same session folder, so nothing trains twice.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "engine_adapter_fixtures", Path(__file__).resolve().parents[2] / "engine" / "conftest.py")
_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fixtures)

demo_base = _fixtures.demo_base
trained_runs = _fixtures.trained_runs
runs_home = _fixtures.runs_home
train_lora = _fixtures.train_lora


@pytest.fixture(scope="session")
def foreign_adapter(tiny_model_dir, tmp_path_factory) -> Path:
    """A LoRA trained on the 2-layer tiny model: the demo base must refuse it."""
    return train_lora(tiny_model_dir, tmp_path_factory.mktemp("foreign") / "tiny-chat", "hello", steps=1)


@pytest.fixture
def make_area(qtbot):
    """An AdaptersArea whose worker is shut down at the end of the test."""
    from gui.adapters.area import AdaptersArea

    made = []

    def _make() -> AdaptersArea:
        area = AdaptersArea()
        qtbot.addWidget(area)
        area.precision_box.setCurrentText("fp32")
        area.resize(1360, 820)
        made.append(area)
        return area

    yield _make
    for area in made:
        area.shutdown()
