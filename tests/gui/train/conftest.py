"""Fixtures for the Train area: an area on a known machine, and a fast demo run config."""

from __future__ import annotations

import pytest

from engine.precision import Environment


@pytest.fixture
def cpu_env() -> Environment:
    return Environment.cpu_only()


@pytest.fixture
def gpu_env() -> Environment:
    """A 24 GiB GPU without native bf16 (a Turing card): exercises the machine rules."""
    return Environment(cuda=True, gpu_name="Test GPU 24GB", gpu_total_bytes=24 * 2**30,
                       gpu_free_bytes=23 * 2**30, bf16_supported=False, bnb_available=True,
                       compute_capability=(7, 5))


@pytest.fixture
def make_area(qtbot, monkeypatch, cpu_env):
    """Build a TrainArea whose GPU detection answers at once with ``env`` (default: no GPU).

    The real detection (a child process importing torch) is tested on its own; here it
    would only add seconds to every test.
    """
    from gui.train import area as area_module

    areas = []

    def _make(env: Environment | None = None):
        chosen = env or cpu_env
        monkeypatch.setattr(area_module, "detect_environment_isolated", lambda: chosen)
        # The shipped niceness makes a CPU worker yield to the GUI; on a loaded CI box it
        # would also starve the test's worker. Scheduling priority is not under test here.
        monkeypatch.setattr(area_module, "CPU_TRAINING_NICE", 0)
        a = area_module.TrainArea()
        qtbot.addWidget(a)
        a.resize(1210, 830)
        a.show()
        qtbot.waitUntil(lambda: a.env is not None, timeout=10_000)
        areas.append(a)
        return a

    yield _make
    for a in areas:
        if a.run.is_active():  # a failed test must not leave a worker training
            a.run.kill()
        a.shutdown()
