#!/usr/bin/env python3
"""Check the hash-pinned lock files in ``packaging/locks/`` against ``pyproject.toml``.

``lock.sh`` runs it right after regenerating a lock, and ``tests/packaging`` runs it in CI, so
a dependency added to ``pyproject.toml`` without a new lock fails fast, with the command that
fixes it. Needs Python >= 3.11 (``tomllib``) and the ``packaging`` library::

    python packaging/lockcheck.py                     # check every lock
    python packaging/lockcheck.py packaging/locks/linux-cpu.txt
    python packaging/lockcheck.py --digest            # print the pyproject dependency digest
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import tomllib
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.version import Version

HERE = Path(__file__).resolve().parent
PYPROJECT = HERE.parent / "pyproject.toml"
LOCKS = HERE / "locks"

# Where each target's torch comes from. "pypi" means PyPI's default build: on Linux x86_64 the
# torch 2.13 wheel on PyPI is the CUDA 13.0 build (it depends on cuda-toolkit 13.0.x); on
# Windows PyPI only has the CPU build. Everything else comes from download.pytorch.org.
TORCH_INDEX = {
    "linux-cpu": "https://download.pytorch.org/whl/cpu",
    "linux-cu126": "https://download.pytorch.org/whl/cu126",
    "linux-cu130": "pypi",
    "windows-cpu": "pypi",
    "windows-cu126": "https://download.pytorch.org/whl/cu126",
    "windows-cu130": "https://download.pytorch.org/whl/cu130",
}
PLATFORM = {"linux": "x86_64-manylinux_2_34", "windows": "x86_64-pc-windows-msvc"}
# PEP 508 marker environments of the two targets, for deciding which dependencies apply.
MARKER_ENV = {
    "linux": {"sys_platform": "linux", "platform_system": "Linux", "os_name": "posix",
              "platform_machine": "x86_64"},
    "windows": {"sys_platform": "win32", "platform_system": "Windows", "os_name": "nt",
                "platform_machine": "AMD64"},
}
HEADER_RE = re.compile(r"^# finetune-studio lock: (?P<fields>.+)$", re.M)
DIGEST_RE = re.compile(r"^# pyproject-deps-sha256: (?P<digest>[0-9a-f]{64})$", re.M)


@dataclass
class Pin:
    """One ``name==version`` line of a lock with its hashes."""

    name: str
    version: str
    hashes: list[str] = field(default_factory=list)
    line: int = 0


def normalize(name: str) -> str:
    """PEP 503 name normalization (``PySide6_Essentials`` -> ``pyside6-essentials``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def project_dependencies(pyproject: Path = PYPROJECT) -> list[str]:
    """The ``[project].dependencies`` of ``pyproject``, as written."""
    with open(pyproject, "rb") as fh:
        return list(tomllib.load(fh)["project"]["dependencies"])


def deps_digest(pyproject: Path = PYPROJECT) -> str:
    """A digest of the dependency list that a lock records, to detect stale locks."""
    canonical = "\n".join(sorted(str(Requirement(d)) for d in project_dependencies(pyproject)))
    return hashlib.sha256(canonical.encode()).hexdigest()


def read_header(text: str) -> dict[str, str]:
    """The ``key=value`` fields of the ``# finetune-studio lock:`` header line."""
    match = HEADER_RE.search(text)
    if not match:
        return {}
    return dict(part.split("=", 1) for part in match["fields"].split() if "=" in part)


def parse_pins(text: str) -> tuple[list[Pin], list[str]]:
    """Parse a ``uv pip compile --generate-hashes`` lock into pins.

    Returns:
        The pins, and the problems found on the way (unpinned or unhashed lines), each naming
        the line number.
    """
    pins: list[Pin] = []
    problems: list[str] = []
    logical = ""
    start = 0
    for number, raw in enumerate(text.splitlines() + [""], start=1):
        line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not logical:
            start = number
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        logical += line
        statement, logical = logical.strip(), ""
        if not statement or statement.startswith("--"):
            continue  # an option line such as --index-url
        requirement, *options = statement.split()
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^;\s]+)", requirement)
        if not match:
            problems.append(f"line {start}: {requirement!r} is not pinned as name==version")
            continue
        hashes = [opt.split("=", 1)[1] for opt in options if opt.startswith("--hash=")]
        if not hashes:
            problems.append(f"line {start}: {requirement} has no --hash")
        pins.append(Pin(normalize(match[1]), match[2], hashes, start))
    return pins, problems


def check_lock(path: Path, pyproject: Path = PYPROJECT) -> list[str]:
    """Every problem with one lock file; an empty list means it is consistent.

    Checks: the header names a known target; the recorded dependency digest matches
    ``pyproject``; every line is pinned with hashes; every dependency that applies to the target
    is pinned at a version its specifier allows; the torch pin is the build of the variant.
    """
    text = path.read_text(encoding="utf-8")
    header = read_header(text)
    target = header.get("target", "")
    if target not in TORCH_INDEX:
        return [f"{path}: no '# finetune-studio lock: target=...' header naming one of "
                f"{sorted(TORCH_INDEX)}; regenerate it with packaging/lock.sh"]
    fix = f"run packaging/lock.sh {target}"
    problems: list[str] = []
    if path.stem != target:
        problems.append(f"{path}: header says target={target} but the file is named {path.name}")
    digest = DIGEST_RE.search(text)
    if not digest or digest["digest"] != deps_digest(pyproject):
        problems.append(f"{path}: stale, pyproject.toml dependencies changed since it was "
                        f"generated; {fix}")
    if header.get("torch-index") != TORCH_INDEX[target]:
        problems.append(f"{path}: torch-index={header.get('torch-index')}, expected "
                        f"{TORCH_INDEX[target]}")
    pins, line_problems = parse_pins(text)
    problems += [f"{path}: {p}" for p in line_problems]
    by_name = {p.name: p for p in pins}
    os_name, variant = target.split("-", 1)
    env = dict(MARKER_ENV[os_name], python_version=header.get("python", "3.11"),
               python_full_version=header.get("python", "3.11") + ".0")
    for spec in project_dependencies(pyproject):
        req = Requirement(spec)
        if req.marker and not Marker(str(req.marker)).evaluate(env):
            continue
        pin = by_name.get(normalize(req.name))
        if pin is None:
            problems.append(f"{path}: dependency {spec!r} of pyproject.toml is not pinned; {fix}")
        elif not req.specifier.contains(Version(pin.version), prereleases=True):
            problems.append(f"{path}:{pin.line}: {pin.name}=={pin.version} does not satisfy "
                            f"pyproject's {spec!r}; {fix}")
    problems += [f"{path}: {p}" for p in _torch_build_problems(os_name, variant, by_name)]
    return problems


def _torch_build_problems(os_name: str, variant: str, pins: dict[str, Pin]) -> list[str]:
    torch = pins.get("torch")
    if torch is None:
        return ["torch is not pinned"]
    local = Version(torch.version).local
    cuda_pins = sorted(n for n in pins if n.startswith(("nvidia-", "cuda-")))
    cu13 = [n for n in cuda_pins
            if n.endswith("-cu13") or (n == "cuda-toolkit" and pins[n].version.startswith("13."))]
    cu12 = [n for n in cuda_pins if n.endswith("-cu12")]
    from_pypi = TORCH_INDEX[f"{os_name}-{variant}"] == "pypi"
    problems = []
    if from_pypi and local:
        problems.append(f"torch=={torch.version}: PyPI builds carry no local version (+{local})")
    if not from_pypi and local != variant:
        problems.append(f"torch=={torch.version} is not the {variant} build (expected +{variant})")
    if variant == "cpu" and cuda_pins:
        problems.append(f"the CPU lock pins CUDA packages: {', '.join(cuda_pins)}")
    if os_name == "linux" and variant == "cu130" and not cu13:
        problems.append("the CUDA 13.0 lock pins no CUDA 13 runtime (cuda-toolkit 13.x or *-cu13)")
    if os_name == "linux" and variant == "cu126" and not cu12:
        problems.append("the CUDA 12.6 lock pins no CUDA 12 runtime (nvidia-*-cu12)")
    if variant == "cu126" and cu13:
        problems.append(f"the CUDA 12.6 lock pins CUDA 13 packages: {', '.join(cu13)}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("locks", nargs="*", type=Path, help="default: packaging/locks/<target>.txt")
    parser.add_argument("--digest", action="store_true", help="print the dependency digest")
    args = parser.parse_args(argv)
    if args.digest:
        print(deps_digest())
        return 0
    locks = args.locks or sorted(p for p in LOCKS.glob("*.txt") if p.stem in TORCH_INDEX)
    if not locks:
        print(f"no lock files in {LOCKS}; run packaging/lock.sh", file=sys.stderr)
        return 1
    failed = False
    for lock in locks:
        problems = check_lock(lock)
        failed |= bool(problems)
        print(f"{'FAIL' if problems else 'ok  '} {lock}")
        for problem in problems:
            print(f"     {problem}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
