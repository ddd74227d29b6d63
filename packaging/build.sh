#!/usr/bin/env bash
# Build the installers into packaging/out/ (called by `make package`; see packaging/README.md).
#
#   packaging/build.sh [linux] [windows]     default: both
#
# linux:   out/finetune-studio-VERSION-linux.tar.gz, a folder with install.sh, the app wheel, the
#          Linux locks, uv, the icon and the desktop entry; with WHEELHOUSE="cpu cu130" also
#          wheelhouse/linux-cpu, ... for offline installs.
# windows: out/windows/, everything finetune-studio.iss needs (the app wheel, the Windows locks,
#          uv.exe, the .ico, bootstrap.ps1); on Windows with Inno Setup's ISCC on PATH it also
#          compiles out/finetune-studio-VERSION-windows-setup.exe.
#
# Environment: UV, PYTHON (a Python with pip and PySide6, default ../.venv/bin/python),
# WHEELHOUSE (variants to bundle offline), TORCH_FIND_LINKS (see wheelhouse.sh).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
out="$here/out"
UV="${UV:-$( [ -x "$repo/.venv/bin/uv" ] && echo "$repo/.venv/bin/uv" || command -v uv || true)}"
PYTHON="${PYTHON:-$( [ -x "$repo/.venv/bin/python" ] && echo "$repo/.venv/bin/python" || echo python3)}"
WHEELHOUSE="${WHEELHOUSE:-}"
die() { echo "build.sh: $*" >&2; exit 1; }
say() { echo "build.sh: $*"; }
version="$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$repo/engine/__init__.py")"
[ -n "$version" ] || die "no __version__ in engine/__init__.py"

build_wheel() {
    local start=$SECONDS had_egg_info=0
    [ -d "$repo/finetune_studio.egg-info" ] && had_egg_info=1
    rm -rf "$out/dist"
    # sdist first, then the wheel from the sdist: proves MANIFEST.in carries resources/.
    "$UV" build --quiet --out-dir "$out/dist" "$repo"
    [ "$had_egg_info" = 1 ] || rm -rf "$repo/finetune_studio.egg-info"
    wheel="$out/dist/finetune_studio-$version-py3-none-any.whl"
    [ -f "$wheel" ] || die "uv build did not produce $wheel"
    "$PYTHON" - "$wheel" <<'EOF' || die "the wheel lacks files the app needs at run time"
import sys, zipfile
names = set(zipfile.ZipFile(sys.argv[1]).namelist())
need = ["engine/_resources/demo/dataset.jsonl", "engine/_resources/demo/model/config.json",
        "engine/_resources/presets/demo.yaml", "gui/resources/icon.svg", "engine/selfcheck.py"]
missing = [n for n in need if n not in names]
if missing:
    sys.exit(f"missing from {sys.argv[1]}: {', '.join(missing)}")
EOF
    say "wheel $(basename "$wheel") ($(du -h "$wheel" | cut -f1)) in $((SECONDS - start)) s"
}

fetch_uv() {  # $1: linux|windows -> $out/uv/$1/uv[.exe], hash-checked against locks/uv.txt
    local os="$1" exe=uv platforms=()
    if [ "$os" = windows ]; then exe=uv.exe; platforms=(--platform win_amd64)
    else platforms=(--platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64); fi
    [ -x "$out/uv/$os/$exe" ] && return 0
    rm -rf "$out/uv/$os" && mkdir -p "$out/uv/$os/wheel"
    "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --require-hashes \
        -r "$here/locks/uv.txt" "${platforms[@]}" --python-version 3.11 --implementation py \
        --dest "$out/uv/$os/wheel" --progress-bar off 2>&1 | grep -v 'is ignored' >&2 || true
    "$PYTHON" - "$out/uv/$os" "$exe" <<'EOF' || die "could not extract $exe from the uv wheel"
import pathlib, sys, zipfile
folder, exe = pathlib.Path(sys.argv[1]), sys.argv[2]
wheel = next((folder / "wheel").glob("uv-*.whl"))
with zipfile.ZipFile(wheel) as zf:
    member = next(n for n in zf.namelist() if n.endswith(f".data/scripts/{exe}"))
    (folder / exe).write_bytes(zf.read(member))
(folder / exe).chmod(0o755)
EOF
    rm -rf "$out/uv/$os/wheel"
}

build_linux() {
    local start=$SECONDS name="finetune-studio-$version-linux" stage
    stage="$out/$name"
    fetch_uv linux
    rm -rf "$stage" "$out/$name.tar.gz"
    mkdir -p "$stage/bin" "$stage/dist" "$stage/locks" "$stage/share"
    install -m 755 "$here/install.sh" "$here/uninstall.sh" "$here/torch_variant.py" "$stage/"
    install -m 755 "$out/uv/linux/uv" "$stage/bin/uv"
    install -m 644 "$wheel" "$stage/dist/"
    install -m 644 "$here"/locks/linux-*.txt "$stage/locks/"
    install -m 644 "$repo/gui/resources/icon.svg" "$stage/share/icon.svg"
    install -m 644 "$here/finetune-studio.desktop" "$stage/share/"
    install -m 644 "$here/README.md" "$stage/README.md"
    for v in $WHEELHOUSE; do
        [ -f "$here/locks/linux-$v.txt" ] || die "WHEELHOUSE has $v but there is no locks/linux-$v.txt"
        "$here/wheelhouse.sh" "linux-$v"   # quick when up to date: pip keeps hash-matching files
        mkdir -p "$stage/wheelhouse"
        cp -al "$out/wheelhouse/linux-$v" "$stage/wheelhouse/linux-$v" 2>/dev/null \
            || cp -a "$out/wheelhouse/linux-$v" "$stage/wheelhouse/linux-$v"
    done
    (cd "$stage" && find . -type f -print0 | sort -z | xargs -0 sha256sum > "$out/SHA256SUMS.tmp")
    mv "$out/SHA256SUMS.tmp" "$stage/SHA256SUMS"
    # gzip -1: wheels are zip archives already, so harder compression only costs time
    tar -C "$out" --use-compress-program='gzip -1' -cf "$out/$name.tar.gz" "$name"
    say "linux: $out/$name.tar.gz ($(du -h "$out/$name.tar.gz" | cut -f1); unpacked $(du -sh "$stage" | cut -f1)) in $((SECONDS - start)) s"
}

build_windows() {
    local start=$SECONDS stage="$out/windows"
    fetch_uv windows
    rm -rf "$stage" && mkdir -p "$stage/locks" "$stage/dist"
    install -m 644 "$here/windows/finetune-studio.iss" "$here/windows/bootstrap.ps1" "$here/torch_variant.py" "$stage/"
    install -m 644 "$here"/locks/windows-*.txt "$stage/locks/"
    install -m 644 "$wheel" "$stage/dist/"
    install -m 755 "$out/uv/windows/uv.exe" "$stage/uv.exe"
    QT_QPA_PLATFORM=offscreen "$PYTHON" "$here/make_ico.py" "$repo/gui/resources/icon.svg" "$stage/finetune-studio.ico" >/dev/null
    "$PYTHON" "$here/check_iss.py" "$stage/finetune-studio.iss" || die "finetune-studio.iss references files the stage lacks"
    if command -v iscc >/dev/null || command -v ISCC.exe >/dev/null; then
        (cd "$stage" && "$(command -v iscc || command -v ISCC.exe)" /DAppVersion="$version" /O"$out" finetune-studio.iss)
        say "windows: $out/finetune-studio-$version-windows-setup.exe"
    else
        say "windows: staged $stage ($(du -sh "$stage" | cut -f1)) in $((SECONDS - start)) s; compile it on Windows:"
        say "         iscc /DAppVersion=$version finetune-studio.iss"
    fi
}

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(linux windows)
if [ -z "$UV" ]; then
    # No uv installed (the dev venv does not carry one): build with the hash-pinned uv that the
    # Linux package bundles anyway, so `make package` works from a fresh clone.
    [ "$(uname -s)-$(uname -m)" = Linux-x86_64 ] \
        || die "uv not found: pip install uv (the version in packaging/locks/uv.txt), or set UV=/path/to/uv"
    fetch_uv linux
    UV="$out/uv/linux/uv"
    say "uv not installed: building with the bundled $("$UV" --version)"
fi
build_wheel
for t in "${targets[@]}"; do
    case "$t" in
        linux) build_linux ;;
        windows) build_windows ;;
        *) die "unknown target $t (linux, windows)" ;;
    esac
done
