#!/usr/bin/env bash
# The installer's done-means test (`make -C packaging test-install`), on a Linux machine:
#   1. build the CPU package with its wheelhouse (out/finetune-studio-VERSION-linux.tar.gz);
#   2. unpack it into a fresh folder and install it for a fresh user (HOME in that folder), from
#      the wheelhouse with --no-index, inside `unshare -n` (no network interface at all) when the
#      kernel allows it;
#   3. `finetune-studio --self-check` offscreen;
#   4. the same under Xvfb with QT_QPA_PLATFORM=xcb: fails if the Qt xcb plugin lacks a system
#      library (the self-check names it and its Debian package);
#   5. upgrade in place with user data present, then uninstall: the data must survive both;
#   6. a system-wide --prefix install, then `uninstall --purge --yes`: the user's data is gone.
# Needs: xvfb-run (apt-get install -y xvfb xauth). Prints sizes and times at the end.
# Environment: KEEP=1 keeps the test folder; SKIP_BUILD=1 reuses out/; TORCH_FIND_LINKS as in
# wheelhouse.sh (default /opt/wheels when it holds the torch wheel and download.pytorch.org is
# unreachable).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
out="$here/out"
step() { echo; echo "=== $*"; }
fail() { echo "test_install.sh: FAIL: $*" >&2; exit 1; }
declare -a summary=()
record() { summary+=("$1"); echo "  -> $1"; }
timed() {  # timed LABEL CMD...: run, record the wall time
    local label="$1" t0=$SECONDS; shift
    "$@"
    record "$label: $((SECONDS - t0)) s"
}

command -v xvfb-run >/dev/null || fail "xvfb-run is missing: apt-get install -y xvfb xauth"
if [ -z "${TORCH_FIND_LINKS:-}" ] && ls /opt/wheels/torch-*+cpu-*.whl >/dev/null 2>&1 \
        && ! getent hosts download.pytorch.org >/dev/null; then
    export TORCH_FIND_LINKS=/opt/wheels
fi
version="$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$repo/engine/__init__.py")"
tarball="$out/finetune-studio-$version-linux.tar.gz"

# ---- 1. build ---------------------------------------------------------------------------------
step "build the CPU package with its wheelhouse"
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    timed "wheelhouse.sh linux-cpu (download or refresh)" \
        env PIP="${PYTHON:-$repo/.venv/bin/python} -m pip" "$here/wheelhouse.sh" linux-cpu
    timed "build.sh linux (wheel + tarball)" env WHEELHOUSE=cpu PIP="${PYTHON:-$repo/.venv/bin/python} -m pip" "$here/build.sh" linux
fi
[ -f "$tarball" ] || fail "$tarball was not built"
record "tarball $(basename "$tarball"): $(du -h "$tarball" | cut -f1)"
record "wheelhouse linux-cpu: $(find "$out/wheelhouse/linux-cpu" -name '*.whl' | wc -l) wheels, $(du -sh "$out/wheelhouse/linux-cpu" | cut -f1)"
record "app wheel: $(du -h "$out"/dist/finetune_studio-*.whl | cut -f1)"

# ---- 2. install into a fresh folder, offline ---------------------------------------------------
T="$(mktemp -d /tmp/finetune-studio-install-test.XXXXXX)"
if [ "${KEEP:-0}" = 1 ]; then echo "test folder: $T (kept)"; else trap 'rm -rf "$T"' EXIT; fi
mkdir -p "$T/home" "$T/pkg"
tar -C "$T/pkg" -xzf "$tarball"
pkg="$T/pkg/finetune-studio-$version-linux"
(cd "$pkg" && sha256sum --quiet -c SHA256SUMS) || fail "SHA256SUMS does not match the unpacked files"
record "unpacked package: $(du -sh "$pkg" | cut -f1)"

# A clean environment: a fresh user, no venv, no pip/uv configuration or cache, Debian's python3.
clean_env=(env -i HOME="$T/home" USER="${USER:-root}" LANG=C.UTF-8 TERM=dumb
           PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
           UV_CACHE_DIR="$T/uv-cache" UV_NO_CONFIG=1 PIP_CONFIG_FILE=/dev/null)
offline=()
if unshare -n true 2>/dev/null; then
    offline=(unshare -n --)
    record "network: none (unshare -n: a network namespace with only a down loopback)"
else
    record "network: present (unshare -n not permitted); the install still uses --offline --no-index"
fi
in_sandbox() { "${offline[@]}" "${clean_env[@]}" "$@"; }

step "install for a fresh user, offline from the bundled wheelhouse"
t0=$SECONDS
in_sandbox "$pkg/install.sh" | tee "$T/install.log"
record "install (per user, offline, --no-index): $((SECONDS - t0)) s"
grep -q "offline from $pkg/wheelhouse/linux-cpu" "$T/install.log" || fail "the install did not use the wheelhouse"
app="$T/home/.local/share/finetune-studio/app"
launcher="$T/home/.local/bin/finetune-studio"
desktop="$T/home/.local/share/applications/finetune-studio.desktop"
icon="$T/home/.local/share/icons/hicolor/scalable/apps/finetune-studio.svg"
for f in "$launcher" "$desktop" "$icon" "$app/uninstall" "$app/install.env"; do
    [ -e "$f" ] || fail "the install did not create $f"
done
grep -q "^Exec=\"$launcher\"$" "$desktop" || fail "$desktop does not run $launcher"
grep -q "^Icon=$icon$" "$desktop" || fail "$desktop does not point at $icon"
if command -v desktop-file-validate >/dev/null; then desktop-file-validate "$desktop"; fi
record "app environment: $(du -shL "$app/current" | cut -f1)"
in_sandbox "$launcher" --version

# ---- 3. self-check offscreen -------------------------------------------------------------------
step "self-check, offscreen"
t0=$SECONDS
in_sandbox QT_QPA_PLATFORM=offscreen "$launcher" --self-check | tee "$T/selfcheck-offscreen.txt" \
    || fail "the self-check failed offscreen (report above)"
record "self-check offscreen: $((SECONDS - t0)) s, $(tail -n1 "$T/selfcheck-offscreen.txt")"
grep -E '^(train|window|imports) ' "$T/selfcheck-offscreen.txt" | grep -qv ' OK ' \
    && fail "a required check did not pass offscreen"

# ---- 4. self-check under Xvfb with the xcb platform -------------------------------------------
step "self-check under Xvfb (QT_QPA_PLATFORM=xcb)"
t0=$SECONDS
# xvfb-run needs xauth and a writable /tmp; Xvfb listens on a unix socket, so no network is needed.
if ! in_sandbox QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 1600x1000x24" \
        "$launcher" --self-check | tee "$T/selfcheck-xcb.txt"; then
    grep -A2 '^xcb ' "$T/selfcheck-xcb.txt" >&2 || true
    fail "the self-check failed under Xvfb/xcb (report above)"
fi
grep -q '^xcb  *OK ' "$T/selfcheck-xcb.txt" || fail "the xcb check did not run under Xvfb"
grep -q 'main window built (xcb)' "$T/selfcheck-xcb.txt" || fail "the window was not built on xcb"
record "self-check under Xvfb/xcb: $((SECONDS - t0)) s, $(tail -n1 "$T/selfcheck-xcb.txt")"

# ---- 5. upgrade in place, then uninstall, with user data ---------------------------------------
step "upgrade in place keeps user data"
data="$T/home/.local/share/finetune-studio"
config="$T/home/.config/finetune-studio"
mkdir -p "$data/runs/keep-me" "$data/adapters/keep-me" "$data/datasets" "$config"
echo "run" > "$data/runs/keep-me/summary.json"
echo "adapter" > "$data/adapters/keep-me/adapter_config.json"
echo '{"instruction": "keep"}' > "$data/datasets/mine.jsonl"
printf '[ui]\ntheme=dark\n' > "$config/settings.ini"
before="$(readlink "$app/current")"
t0=$SECONDS
in_sandbox "$pkg/install.sh" > "$T/upgrade.log"
record "upgrade in place (offline): $((SECONDS - t0)) s"
after="$(readlink "$app/current")"
[ "$before" != "$after" ] || fail "the upgrade did not switch to a new environment"
[ "$(ls "$app/envs" | wc -l)" = 1 ] || fail "the upgrade left old environments: $(ls "$app/envs")"
check_data() {
    [ "$(cat "$data/runs/keep-me/summary.json")" = run ] || fail "$1 lost runs/"
    [ "$(cat "$data/adapters/keep-me/adapter_config.json")" = adapter ] || fail "$1 lost adapters/"
    [ -s "$data/datasets/mine.jsonl" ] || fail "$1 lost datasets/"
    grep -q theme=dark "$config/settings.ini" || fail "$1 lost settings.ini"
}
check_data "the upgrade"
in_sandbox "$launcher" --version

step "uninstall keeps user data"
in_sandbox "$app/uninstall"
for f in "$launcher" "$desktop" "$icon" "$app"; do [ ! -e "$f" ] || fail "uninstall left $f"; done
check_data "uninstall"

# ---- 6. system-wide --prefix install, uninstall --purge -----------------------------------------
step "install with --prefix, then uninstall --purge"
prefix="$T/prefix"
t0=$SECONDS
in_sandbox "$pkg/install.sh" --prefix "$prefix" > "$T/prefix.log"
record "install --prefix (offline): $((SECONDS - t0)) s"
for f in "$prefix/bin/finetune-studio" "$prefix/share/applications/finetune-studio.desktop" \
         "$prefix/share/icons/hicolor/scalable/apps/finetune-studio.svg" "$prefix/lib/finetune-studio/current"; do
    [ -e "$f" ] || fail "the --prefix install did not create $f"
done
in_sandbox "$prefix/bin/finetune-studio" --version
in_sandbox "$prefix/lib/finetune-studio/uninstall" --purge --yes
[ ! -e "$prefix/lib/finetune-studio" ] || fail "uninstall left $prefix/lib/finetune-studio"
[ ! -e "$data" ] && [ ! -e "$config" ] || fail "uninstall --purge left the user's data"

echo
echo "=== PASSED on $(date -u +%Y-%m-%d), $(nproc) cores, $(. /etc/os-release && echo "$PRETTY_NAME")"
printf '  %s\n' "${summary[@]}"
