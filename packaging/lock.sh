#!/usr/bin/env bash
# Regenerate the hash-pinned lock files in packaging/locks/ from pyproject.toml.
#
#   packaging/lock.sh                 # every target (needs PyPI and download.pytorch.org)
#   packaging/lock.sh linux-cpu linux-cu130 uv
#
# Targets: linux-cpu linux-cu126 linux-cu130 windows-cpu windows-cu126 windows-cu130 uv.
# Each lock is `uv pip compile --generate-hashes` for CPython $PYTHON_VERSION on one platform,
# with torch constrained to $TORCH_VERSION (the version the test suite runs against) and taken
# from the index of its variant (see TORCH_INDEX in lockcheck.py), then checked by lockcheck.py.
#
# Environment:
#   UV                uv binary (default: ../.venv/bin/uv, else uv on PATH)
#   PYTHON            Python >= 3.11 with `packaging`, for lockcheck.py (default: ../.venv/bin/python)
#   TORCH_VERSION     default 2.13.0
#   PYTHON_VERSION    default 3.11 (Debian 12's python3; uv fetches it elsewhere)
#   UV_VERSION        the uv that the installers bundle (default 0.13.9)
#   TORCH_FIND_LINKS  a folder holding the torch wheels of the variant, searched instead of
#                     download.pytorch.org (for machines that reach PyPI but not that index)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
locks="$here/locks"
UV="${UV:-$( [ -x "$repo/.venv/bin/uv" ] && echo "$repo/.venv/bin/uv" || command -v uv || true)}"
PYTHON="${PYTHON:-$( [ -x "$repo/.venv/bin/python" ] && echo "$repo/.venv/bin/python" || echo python3)}"
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
PYTHON_VERSION="${PYTHON_VERSION:-3.11}"
UV_VERSION="${UV_VERSION:-0.13.9}"
ALL_TARGETS=(linux-cpu linux-cu126 linux-cu130 windows-cpu windows-cu126 windows-cu130 uv)

die() { echo "lock.sh: $*" >&2; exit 1; }
[ -n "$UV" ] || die "uv not found: pip install uv, or set UV=/path/to/uv"

torch_index() {  # the single source of truth is lockcheck.py's TORCH_INDEX table
    "$PYTHON" -c 'import sys; sys.path.insert(0, sys.argv[1]); import lockcheck; print(lockcheck.TORCH_INDEX[sys.argv[2]])' "$here" "$1"
}

lock_uv() {
    local out="$locks/uv.txt" tmp
    tmp="$(mktemp)"
    echo "uv==$UV_VERSION" > "$tmp.in"
    # --generate-hashes records the hash of every file of the pinned release, so this one lock
    # covers the Linux and the Windows binary.
    "$UV" pip compile "$tmp.in" --generate-hashes --no-header --python-version "$PYTHON_VERSION" \
        --python-platform x86_64-manylinux_2_34 --quiet -o "$tmp"
    { echo "# finetune-studio tool lock: the uv that install.sh and the Windows installer bundle"
      echo "# regenerate: packaging/lock.sh uv"
      cat "$tmp"; } > "$out"
    rm -f "$tmp" "$tmp.in"
    echo "wrote $out"
}

lock_target() {
    local target="$1" os variant index platform out tmp constraints
    os="${target%%-*}"; variant="${target#*-}"
    case "$os" in
        linux) platform=x86_64-manylinux_2_34 ;;   # glibc >= 2.34: PySide6 6.12's wheel floor
        windows) platform=x86_64-pc-windows-msvc ;;
        *) die "unknown target $target (known: ${ALL_TARGETS[*]})" ;;
    esac
    index="$(torch_index "$target")" || die "unknown target $target (known: ${ALL_TARGETS[*]})"
    out="$locks/$target.txt"
    tmp="$(mktemp)"
    constraints="$(mktemp)"
    echo "torch==$TORCH_VERSION" > "$constraints"
    local source_args=()
    if [ "$index" != pypi ]; then
        if [ -n "${TORCH_FIND_LINKS:-}" ]; then
            source_args=(--find-links "$TORCH_FIND_LINKS")
        else
            # uv takes torch and its CUDA wheels from the PyTorch index and everything else
            # from PyPI, which a plain --extra-index-url cannot express safely.
            source_args=(--torch-backend "$variant")
        fi
    fi
    echo "locking $target: torch==$TORCH_VERSION from $index, CPython $PYTHON_VERSION on $platform"
    (cd "$repo" && "$UV" pip compile pyproject.toml -c "$constraints" --generate-hashes \
        --python-version "$PYTHON_VERSION" --python-platform "$platform" \
        ${source_args[@]+"${source_args[@]}"} \
        --custom-compile-command "packaging/lock.sh $target" --quiet -o "$tmp")
    local checkdir
    checkdir="$(mktemp -d)"   # lockcheck.py wants the file named after its target
    { echo "# finetune-studio lock: target=$target python=$PYTHON_VERSION platform=$platform torch-index=$index"
      echo "# pyproject-deps-sha256: $("$PYTHON" "$here/lockcheck.py" --digest)"
      cat "$tmp"; } > "$checkdir/$target.txt"
    rm -f "$tmp" "$constraints"
    if ! "$PYTHON" "$here/lockcheck.py" "$checkdir/$target.txt" >&2; then
        mv "$checkdir/$target.txt" "$locks/.$target.txt.rejected"
        rmdir "$checkdir"
        die "$target: the new lock fails lockcheck.py; kept it as $locks/.$target.txt.rejected"
    fi
    mv "$checkdir/$target.txt" "$out"
    rmdir "$checkdir"
    echo "wrote $out ($(grep -c '^[a-z0-9]' "$out") packages)"
}

mkdir -p "$locks"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${ALL_TARGETS[@]}")
for target in "${targets[@]}"; do
    if [ "$target" = uv ]; then lock_uv; else lock_target "$target"; fi
done
