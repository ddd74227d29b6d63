"""The hash-pinned locks agree with pyproject.toml and with each other."""

from __future__ import annotations

import importlib.util
import re
import shutil
import sys
from pathlib import Path

import pytest

PACKAGING = Path(__file__).resolve().parents[2] / "packaging"


def load_script(name: str):
    """Import ``packaging/<name>.py``: the folder is no package (it would shadow ``packaging``)."""
    spec = importlib.util.spec_from_file_location(f"ftpkg_{name}", PACKAGING / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


lockcheck = load_script("lockcheck")
LOCKS = sorted(p for p in (PACKAGING / "locks").glob("*.txt") if p.stem in lockcheck.TORCH_INDEX)
# The locks this machine can generate (see packaging/README.md, "Locks"); the others need
# download.pytorch.org and are checked when present.
REQUIRED = {"linux-cpu", "linux-cu130", "windows-cpu"}


def test_required_locks_exist():
    assert REQUIRED <= {p.stem for p in LOCKS}


@pytest.mark.parametrize("lock", LOCKS, ids=lambda p: p.stem)
def test_lock_is_consistent_with_pyproject(lock: Path):
    assert lockcheck.check_lock(lock) == []


@pytest.mark.parametrize("lock", LOCKS, ids=lambda p: p.stem)
def test_torch_pin_matches_variant(lock: Path):
    pins = {p.name: p.version for p in lockcheck.parse_pins(lock.read_text())[0]}
    os_name, variant = lock.stem.split("-", 1)
    if lockcheck.TORCH_INDEX[lock.stem] == "pypi":
        assert "+" not in pins["torch"]
    else:
        assert pins["torch"].endswith(f"+{variant}")
    cuda = [n for n in pins if n.startswith(("nvidia-", "cuda-"))]
    assert bool(cuda) == (os_name == "linux" and variant != "cpu")


def test_direct_dependencies_pinned_alike_across_locks():
    """Every variant installs the same app stack; only torch's build differs."""
    direct = {lockcheck.normalize(re.split(r"[<>=!~;\[ ]", d, maxsplit=1)[0])
              for d in lockcheck.project_dependencies()}
    seen: dict[str, dict[str, str]] = {}
    for lock in LOCKS:
        for pin in lockcheck.parse_pins(lock.read_text())[0]:
            if pin.name in direct:
                seen.setdefault(pin.name, {})[lock.stem] = pin.version.split("+")[0]
    differing = {name: v for name, v in seen.items() if len(set(v.values())) > 1}
    assert differing == {}


def test_uv_lock_is_pinned_with_hashes():
    pins, problems = lockcheck.parse_pins((PACKAGING / "locks" / "uv.txt").read_text())
    assert problems == []
    assert [p.name for p in pins] == ["uv"] and len(pins[0].hashes) >= 2


# ---- lockcheck catches the mistakes it exists for ------------------------------------------


@pytest.fixture
def cpu_lock(tmp_path: Path) -> Path:
    target = tmp_path / "linux-cpu.txt"
    shutil.copy(PACKAGING / "locks" / "linux-cpu.txt", target)
    return target


def test_lockcheck_flags_a_missing_hash(cpu_lock: Path):
    text = cpu_lock.read_text()
    text = re.sub(r"(peft==[^ ]+) \\\n(    --hash=sha256:\w+ \\\n)*    --hash=sha256:\w+\n", r"\1\n", text)
    cpu_lock.write_text(text)
    assert any("peft==" in p and "no --hash" in p for p in lockcheck.check_lock(cpu_lock))


def test_lockcheck_flags_a_stale_lock_and_a_missing_dependency(cpu_lock: Path, tmp_path: Path):
    pyproject = tmp_path / "pyproject.toml"
    text = (PACKAGING.parent / "pyproject.toml").read_text()
    pyproject.write_text(text.replace('"pyarrow>=15",', '"pyarrow>=15",\n    "rich-new-dependency>=1",'))
    problems = lockcheck.check_lock(cpu_lock, pyproject)
    assert any("stale" in p and "lock.sh linux-cpu" in p for p in problems)
    assert any("rich-new-dependency" in p and "not pinned" in p for p in problems)


def test_lockcheck_flags_a_pin_outside_the_specifier(cpu_lock: Path, tmp_path: Path):
    pyproject = tmp_path / "pyproject.toml"
    text = (PACKAGING.parent / "pyproject.toml").read_text()
    pyproject.write_text(re.sub(r'"peft>=[^"]+"', '"peft>=99"', text))
    assert any("does not satisfy" in p and "peft>=99" in p for p in lockcheck.check_lock(cpu_lock, pyproject))


def test_lockcheck_flags_the_wrong_torch_build(cpu_lock: Path):
    cpu_lock.write_text(cpu_lock.read_text().replace("torch==2.13.0+cpu", "torch==2.13.0+cu130"))
    assert any("not the cpu build" in p for p in lockcheck.check_lock(cpu_lock))


def test_digest_ignores_dependency_order(tmp_path: Path):
    pyproject = tmp_path / "pyproject.toml"
    text = (PACKAGING.parent / "pyproject.toml").read_text()
    pyproject.write_text(text.replace('    "torch>=2.11",\n', "").replace('"pyarrow>=15",', '"pyarrow>=15",\n    "torch>=2.11",'))
    assert lockcheck.deps_digest(pyproject) == lockcheck.deps_digest()
