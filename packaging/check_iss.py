#!/usr/bin/env python3
"""Check that ``finetune-studio.iss`` references only files that exist (no Inno Setup needed).

Two modes:

* ``python packaging/check_iss.py out/windows/finetune-studio.iss``: in the folder that
  ``build.sh windows`` staged, every ``Source:`` pattern and ``SetupIconFile`` must match a file.
* ``python packaging/check_iss.py --repo``: the repository's ``packaging/windows/finetune-studio.iss``;
  each staged name must come from a repository file (``REPO_SOURCES``) or be a build product that
  ``build.sh`` makes (``BUILT``), and ``bootstrap.ps1`` must accept the parameters the ``.iss`` passes.
"""

from __future__ import annotations

import argparse
import glob
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
ISS = HERE / "windows" / "finetune-studio.iss"
# staged name (as the .iss writes it, with / for \) -> the repository file(s) build.sh copies
REPO_SOURCES = {
    "finetune-studio.iss": "packaging/windows/finetune-studio.iss",
    "bootstrap.ps1": "packaging/windows/bootstrap.ps1",
    "torch_variant.py": "packaging/torch_variant.py",
    "locks/windows-*.txt": "packaging/locks/windows-*.txt",
}
# staged names that build.sh produces (the app wheel, uv.exe from the hash-pinned uv wheel, the .ico)
BUILT = {"uv.exe", "finetune-studio.ico", "dist/finetune_studio-*.whl"}


def sections(text: str) -> dict[str, list[str]]:
    """The .iss lines per ``[Section]``, without comments and blank lines."""
    out: dict[str, list[str]] = {}
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(";") or line.startswith("#"):
            continue
        match = re.fullmatch(r"\[(\w+)\]", line)
        if match:
            current = match[1]
            out.setdefault(current, [])
        else:
            out.setdefault(current, []).append(line)
    return out


def entry_fields(line: str) -> dict[str, str]:
    """``Name: "x"; Flags: a b`` -> {"Name": "x", "Flags": "a b"} (Inno doubles quotes inside values)."""
    fields = {}
    for match in re.finditer(r'(\w+):\s*("(?:[^"]|"")*"|[^;]*)\s*(?:;|$)', line):
        value = match[2].strip()
        if value.startswith('"'):
            value = value[1:-1].replace('""', '"')
        fields[match[1]] = value
    return fields


def referenced_sources(iss_text: str) -> list[str]:
    """Every file the compiler reads: ``[Files]`` sources and ``SetupIconFile``, with / separators."""
    parts = sections(iss_text)
    sources = []
    for line in parts.get("Setup", []):
        key, _, value = line.partition("=")
        if key.strip() == "SetupIconFile":
            sources.append(value.strip())
    for line in parts.get("Files", []):
        fields = entry_fields(line)
        if "skipifsourcedoesntexist" not in fields.get("Flags", ""):
            sources.append(fields["Source"])
    return [s.replace("\\", "/") for s in sources]


def check_staged(iss: Path) -> list[str]:
    """Problems with an .iss in its staged folder: sources that match no file."""
    problems = []
    for source in referenced_sources(iss.read_text(encoding="utf-8")):
        if not glob.glob(str(iss.parent / source)):
            problems.append(f"{iss}: Source {source!r} matches no file in {iss.parent}")
    return problems


def check_repo(iss: Path = ISS) -> list[str]:
    """Problems with the repository's .iss: unknown sources, missing repo files, parameter drift."""
    text = iss.read_text(encoding="utf-8")
    problems = []
    build_sh = (HERE / "build.sh").read_text(encoding="utf-8")
    for source in referenced_sources(text):
        if source in BUILT:
            name = source.split("/")[-1].split("*")[0]
            if name not in build_sh:
                problems.append(f"{iss}: {source!r} is listed as built, but build.sh never mentions {name!r}")
        elif source in REPO_SOURCES:
            if not glob.glob(str(REPO / REPO_SOURCES[source])):
                problems.append(f"{iss}: {source!r} comes from {REPO_SOURCES[source]}, which matches no file")
        else:
            problems.append(f"{iss}: Source {source!r} is neither a repository file (REPO_SOURCES) "
                            "nor a build product (BUILT) in check_iss.py")
    bootstrap = (HERE / "windows" / "bootstrap.ps1").read_text(encoding="utf-8")
    param_block = re.search(r"param\((.*?)\n\)", bootstrap, re.S)
    accepted = set(re.findall(r"\$(\w+)\s*=", param_block[1])) if param_block else set()
    passed = set(re.findall(r"' -(\w+) ", text)) | set(re.findall(r"\+ ' -(\w+) ", text))
    for name in sorted(passed - accepted):
        problems.append(f"{iss}: passes -{name} to bootstrap.ps1, whose param() block lacks ${name}")
    for variant in re.findall(r"ValidateSet\(([^)]*)\)", bootstrap):
        names = set(re.findall(r"'(\w+)'", variant))
        sys.path.insert(0, str(HERE))
        import torch_variant

        if names != {"auto", *torch_variant.VARIANTS}:
            problems.append(f"bootstrap.ps1 accepts variants {sorted(names)}, torch_variant.py knows "
                            f"{sorted(torch_variant.VARIANTS)}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("iss", nargs="?", type=Path, help="a staged .iss (default: --repo mode)")
    parser.add_argument("--repo", action="store_true", help="check the repository's .iss")
    args = parser.parse_args(argv)
    problems = check_repo() if args.repo or args.iss is None else check_staged(args.iss)
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
