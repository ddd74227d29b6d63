#!/usr/bin/env bash
# Install, upgrade or repair Finetune Studio on a Linux x86_64 machine (glibc >= 2.34).
#
#   ./install.sh                        per user: ~/.local/share/finetune-studio/app, ~/.local/bin,
#                                       start-menu entry in ~/.local/share/applications
#   sudo ./install.sh --prefix /usr/local   for every user: /usr/local/lib/finetune-studio, ...
#
# Options:
#   --prefix DIR      install under DIR/{lib/finetune-studio,bin,share} instead of the user's dirs
#   --variant V       auto (default: from the NVIDIA driver), cpu, cu126 or cu130
#   --wheelhouse DIR  install offline from this folder of wheels (default: ./wheelhouse/linux-V
#                     when present); the network is not used at all
#   --python SPEC     the Python for the app's environment (default: the lock's version, e.g. 3.11;
#                     a path works too). uv finds it on the machine or, online, downloads it.
#   --no-desktop      no start-menu entry and icon
#   --self-check      run `finetune-studio --self-check` after installing
#
# Running it again upgrades in place: a new environment is built beside the old one and switched
# to only once it imports; user data (runs, adapters, datasets, settings) lives elsewhere
# (platformdirs: ~/.local/share/finetune-studio, ~/.config/finetune-studio) and is never touched.
set -euo pipefail

src="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
APP=finetune-studio
say() { echo "install.sh: $*"; }
die() { echo "install.sh: error: $*" >&2; exit 1; }

prefix="" variant=auto wheelhouse="" python_spec="" desktop=1 run_self_check=0
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) prefix="${2:?--prefix needs a folder}"; shift 2 ;;
        --prefix=*) prefix="${1#*=}"; shift ;;
        --variant) variant="${2:?--variant needs auto, cpu, cu126 or cu130}"; shift 2 ;;
        --variant=*) variant="${1#*=}"; shift ;;
        --wheelhouse) wheelhouse="${2:?--wheelhouse needs a folder}"; shift 2 ;;
        --wheelhouse=*) wheelhouse="${1#*=}"; shift ;;
        --python) python_spec="${2:?--python needs a version or a path}"; shift 2 ;;
        --python=*) python_spec="${1#*=}"; shift ;;
        --no-desktop) desktop=0; shift ;;
        --self-check) run_self_check=1; shift ;;
        -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
done
case "$variant" in auto|cpu|cu126|cu130) ;; *) die "--variant must be auto, cpu, cu126 or cu130, not '$variant'" ;; esac

# ---- the machine --------------------------------------------------------------------------------
[ "$(uname -s)" = Linux ] || die "this installer is for Linux; on Windows run the Setup .exe"
[ "$(uname -m)" = x86_64 ] || die "the locks are for x86_64; this machine is $(uname -m)"
glibc="$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{print $2}')"
if [ -n "$glibc" ]; then
    major="${glibc%%.*}" minor="${glibc#*.}"; minor="${minor%%.*}"
    if [ "$major" -lt 2 ] || { [ "$major" -eq 2 ] && [ "$minor" -lt 34 ]; }; then
        die "glibc $glibc is older than 2.34 (PySide6 6.12's floor): Ubuntu >= 22.04, Debian >= 12, RHEL >= 9"
    fi
fi

# ---- where things go ---------------------------------------------------------------------------
if [ -n "$prefix" ]; then
    mkdir -p "$prefix"
    prefix="$(cd "$prefix" && pwd)"
    scope=system
    app_dir="$prefix/lib/$APP"
    bin_dir="$prefix/bin"
    apps_dir="$prefix/share/applications"
    icon_dir="$prefix/share/icons/hicolor/scalable/apps"
else
    scope=user
    data_root="${XDG_DATA_HOME:-$HOME/.local/share}"
    app_dir="$data_root/$APP/app"       # beside (never inside) the user's runs/ and adapters/
    bin_dir="$HOME/.local/bin"
    apps_dir="$data_root/applications"
    icon_dir="$data_root/icons/hicolor/scalable/apps"
fi

# ---- what to install ---------------------------------------------------------------------------
# A copy cut short on a USB stick or a share otherwise fails deep inside uv or unzip.
if [ -f "$src/SHA256SUMS" ]; then
    if ! damaged="$(cd "$src" && sha256sum --quiet -c SHA256SUMS 2>&1)"; then
        echo "$damaged" >&2
        die "the package in $src is damaged or incomplete (the files above do not match its \
SHA256SUMS): copy or unpack it again"
    fi
fi
uv="$src/bin/uv"
[ -x "$uv" ] || die "$uv is missing: this folder is not a complete package (build it with make package)"
wheel="$(ls "$src"/dist/finetune_studio-*-py3-none-any.whl 2>/dev/null | head -n1)"
[ -n "$wheel" ] || die "no app wheel in $src/dist"
version="$(basename "$wheel" | cut -d- -f2)"

detect_python="$(command -v python3 || true)"
[ -n "$detect_python" ] || detect_python="$("$uv" python find 2>/dev/null || true)"
variant_reason="chosen with --variant"
auto_variant=0
if [ "$variant" = auto ]; then
    auto_variant=1
    [ -n "$detect_python" ] || die "no python3 to run the driver detection; pass --variant cpu|cu126|cu130"
    detection="$("$detect_python" "$src/torch_variant.py" --json)" || die "driver detection failed"
    variant="$("$detect_python" -c 'import json,sys; print(json.load(sys.stdin)["variant"])' <<< "$detection")"
    variant_reason="$("$detect_python" -c 'import json,sys; print(json.load(sys.stdin)["reason"])' <<< "$detection")"
    "$detect_python" -c 'import json,sys; [print("install.sh: warning:", w) for w in json.load(sys.stdin)["warnings"]]' <<< "$detection" >&2
fi
lock="$src/locks/linux-$variant.txt"
if [ ! -f "$lock" ]; then
    have="$(cd "$src/locks" && ls linux-*.txt 2>/dev/null | sed 's/^linux-//; s/\.txt$//' | paste -sd' ' || true)"
    die "this package has no lock for the $variant build (it has: ${have:-none}). Rebuild the package \
with a $variant lock (packaging/lock.sh linux-$variant on a connected machine), or install a build it \
has: $0 --variant ${have%% *}"
fi
header="$(grep -m1 '^# finetune-studio lock:' "$lock")" || die "$lock has no finetune-studio header"
lock_field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<< "$header"; }
torch_index="$(lock_field torch-index)"
[ -n "$python_spec" ] || python_spec="$(lock_field python)"

if [ -z "$wheelhouse" ] && [ -d "$src/wheelhouse/linux-$variant" ]; then
    wheelhouse="$src/wheelhouse/linux-$variant"
fi
bundled="$(cd "$src" && ls -d wheelhouse/linux-* 2>/dev/null | sed 's|^wheelhouse/linux-||' | paste -sd' ' || true)"
if [ -z "$wheelhouse" ] && [ -n "$bundled" ] && [ "$auto_variant" = 1 ]; then
    # An offline package carried to a machine whose driver calls for another build: going online
    # would hang on a machine without network, so stop and say how to stay offline.
    die "this machine's driver calls for the $variant build ($variant_reason), but this package's \
offline wheelhouse has only: $bundled. Install that build offline with: $0 --variant ${bundled%% *}
  or rebuild the package with WHEELHOUSE=\"$variant\" (packaging/README.md), or, on a machine \
that reaches the package index, download the $variant build with: $0 --variant $variant"
fi
if [ -n "$wheelhouse" ]; then
    [ -d "$wheelhouse" ] || die "wheelhouse $wheelhouse is not a folder"
    wheelhouse="$(cd "$wheelhouse" && pwd)"
    # Offline: no index at all, no Python downloads; every wheel must be in the wheelhouse.
    source_args=(--offline --no-index --find-links "$wheelhouse")
    export UV_PYTHON_DOWNLOADS=never UV_OFFLINE=1
    # The wheels are local already: a cache would only leave a second copy of the environment
    # (~2 GB CPU, more with CUDA) in ~/.cache/uv that the uninstall never removes.
    [ -n "${UV_CACHE_DIR:-}" ] || export UV_NO_CACHE=1
    mode="offline from $wheelhouse"
else
    source_args=()
    # Hash-pinned, so taking each pin from whichever index has it is safe; uv's default
    # (first index that knows a name) would look for numpy only on the PyTorch index.
    [ "$torch_index" = pypi ] || source_args=(--index-strategy unsafe-best-match --extra-index-url "$torch_index")
    mode="online (PyPI${torch_index:+, torch from $torch_index})"
fi

say "Finetune Studio $version, $variant build ($variant_reason)"
say "installing for $([ $scope = user ] && echo "user ${USER:-$(id -un)}" || echo "every user") into $app_dir, $mode"

# ---- build the environment beside the current one ----------------------------------------------
mkdir -p "$app_dir/envs"
# Managed Pythons (when the machine has no suitable one) live inside the app, so that a
# system-wide install does not point into root's home and uninstall removes them.
export UV_PYTHON_INSTALL_DIR="$app_dir/python"
env_id="$version-$variant-$(date +%Y%m%d-%H%M%S)-$$"  # the PID: two installs in one second never share a folder
env_dir="$app_dir/envs/$env_id"
# Any failure from here on removes the half-built env; the current install stays as it was.
trap 'rm -rf "$env_dir"' EXIT

start=$SECONDS
"$uv" venv --quiet --python "$python_spec" "$env_dir" \
    || die "no Python $python_spec found, and the locked wheels are for Python $(lock_field python) only. \
Install it (Debian 12: apt-get install python3; Ubuntu 22.04: apt-get install python3.11; RHEL 9: \
dnf install python3.11) and, if it is not on PATH, pass --python /path/to/python$(lock_field python). \
$([ -n "$wheelhouse" ] && echo "This offline install downloads no Python." || echo "Online, uv downloads one when the index allows it.")"
# --compile-bytecode: a --prefix install is read-only for users, so without it every start
# would recompile all of torch/transformers in memory; it also makes the first start fast.
"$uv" pip sync --quiet --compile-bytecode --python "$env_dir/bin/python" --require-hashes ${source_args[@]+"${source_args[@]}"} "$lock"
"$uv" pip install --quiet --compile-bytecode --python "$env_dir/bin/python" --no-deps --offline --no-index "$wheel"
# The app's own requirements must be met by the lock (catches a stale lock).
"$uv" pip check --quiet --python "$env_dir/bin/python" || die "the installed packages do not satisfy the app's requirements"
say "environment built in $((SECONDS - start)) s ($(du -sh "$env_dir" | cut -f1))"

# Verify like ComfyUI Desktop's import check: the ML stack must import before we switch over.
if ! import_log="$("$env_dir/bin/python" -c 'import engine, torch, transformers, peft, accelerate, datasets, safetensors' 2>&1)"; then
    echo "$import_log" >&2
    die "the new environment cannot import the ML stack; the previous install (if any) is unchanged"
fi
if ! qt_error="$("$env_dir/bin/python" -c 'import PySide6.QtWidgets' 2>&1)"; then
    echo "install.sh: warning: Qt cannot load: ${qt_error##*$'\n'}" >&2
    echo "install.sh: warning: run 'finetune-studio --self-check' after installing the system libraries it names" >&2
fi
{
    echo "# written by install.sh; read by finetune-studio --self-check and uninstall"
    printf 'VERSION=%q\nVARIANT=%q\nVARIANT_REASON=%q\nLOCK=%q\nLOCK_SHA256=%q\n' \
        "$version" "$variant" "$variant_reason" "$(basename "$lock")" "$(sha256sum "$lock" | cut -d' ' -f1)"
    printf 'MODE=%q\nINSTALLED=%q\nSCOPE=%q\n' "$mode" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$scope"
} > "$env_dir/finetune-studio-install.env"
trap - EXIT

# Switch atomically: a rename of a symlink, so a crash leaves either the old or the new env.
ln -sfn "envs/$env_id" "$app_dir/current.new"
mv -T "$app_dir/current.new" "$app_dir/current"
# An open window, a training worker or an overnight queue still runs from the old environment:
# deleting it under them breaks their lazy imports and kills the run. Keep it for the next install.
in_use_by() {  # the PIDs whose command line runs from folder $1
    local proc
    for proc in /proc/[0-9]*; do
        # A process may exit between the listing and the read. Silence comes first: bash opens
        # redirections left to right, and a failed `<` would report before a later `2>`.
        if tr '\0' ' ' 2>/dev/null < "$proc/cmdline" | grep -qF "$1/"; then echo "${proc#/proc/}"; fi
    done
}
for old in "$app_dir"/envs/*; do
    [ "$old" != "$env_dir" ] || continue
    pids="$(in_use_by "$old" | paste -sd' ' || true)"
    if [ -n "$pids" ]; then
        say "kept the previous environment $(basename "$old"): Finetune Studio still runs from it (pid $pids); \
restart the app for $version. The next install or the uninstall removes it"
    else
        rm -rf "$old"
    fi
done

# ---- launcher, start-menu entry, uninstaller ---------------------------------------------------
mkdir -p "$bin_dir"
launcher="$bin_dir/$APP"
cat > "$launcher.new" <<EOF
#!/bin/sh
# finetune-studio launcher (written by install.sh; removed by $app_dir/uninstall)
exec "$app_dir/current/bin/finetune-studio" "\$@"
EOF
chmod 755 "$launcher.new"
mv -f "$launcher.new" "$launcher"

desktop_file="" icon_file=""
if [ "$desktop" = 1 ]; then
    mkdir -p "$apps_dir" "$icon_dir"
    icon_file="$icon_dir/$APP.svg"
    install -m 644 "$src/share/icon.svg" "$icon_file"
    desktop_file="$apps_dir/$APP.desktop"
    # Exec and Icon are absolute: ~/.local/bin is often not on the desktop session's PATH, and a
    # --prefix outside XDG_DATA_DIRS would hide a themed icon name.
    sed -e "s|@EXEC@|\"$launcher\"|" -e "s|@ICON@|$icon_file|" "$src/share/$APP.desktop" > "$desktop_file"
    chmod 644 "$desktop_file"
    command -v update-desktop-database >/dev/null && update-desktop-database -q "$apps_dir" 2>/dev/null || true
fi

install -m 755 "$src/uninstall.sh" "$app_dir/uninstall"
{
    echo "# written by install.sh; read by uninstall"
    printf 'APP_DIR=%q\nLAUNCHER=%q\nDESKTOP_FILE=%q\nICON_FILE=%q\nSCOPE=%q\n' \
        "$app_dir" "$launcher" "$desktop_file" "$icon_file" "$scope"
} > "$app_dir/install.env"

say "installed Finetune Studio $version ($variant) in $((SECONDS - start)) s"
say "  start it: $launcher   (or from the start menu)"
say "  check it: $launcher --self-check"
if [ "$scope" = user ]; then
    say "  remove it: $app_dir/uninstall   (add --purge to also delete your runs and settings)"
else
    say "  remove it: $app_dir/uninstall   (users' runs and settings stay in their homes)"
fi
case ":$PATH:" in *":$bin_dir:"*) ;; *) say "  note: $bin_dir is not on your PATH" ;; esac

if [ "$run_self_check" = 1 ]; then
    "$launcher" --self-check
fi
