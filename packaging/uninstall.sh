#!/usr/bin/env bash
# Remove Finetune Studio as install.sh installed it (install.sh copies this file to <app>/uninstall).
#
#   ~/.local/share/finetune-studio/app/uninstall            keeps runs, adapters, datasets, settings
#   ~/.local/share/finetune-studio/app/uninstall --purge    also deletes this user's data
#   sudo /usr/local/lib/finetune-studio/uninstall           a --prefix install
#
# --purge deletes the platformdirs folders of the user running it ($XDG_DATA_HOME or
# ~/.local/share/finetune-studio, ~/.config/finetune-studio, ~/.cache/finetune-studio); it asks
# first unless --yes is given. Data under FINETUNE_STUDIO_HOME is never deleted.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
APP=finetune-studio
say() { echo "uninstall: $*"; }
die() { echo "uninstall: error: $*" >&2; exit 1; }

purge=0 yes=0
for arg in "$@"; do
    case "$arg" in
        --purge) purge=1 ;;
        --yes|-y) yes=1 ;;
        -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option '$arg' (see --help)" ;;
    esac
done

info="$here/install.env"
[ -f "$info" ] || die "$info is missing: run the copy of this script inside the installed app folder"
APP_DIR="" LAUNCHER="" DESKTOP_FILE="" ICON_FILE="" SCOPE=""
# shellcheck source=/dev/null
. "$info"
[ -n "$APP_DIR" ] && [ "$(cd "$APP_DIR" && pwd)" = "$here" ] || die "$info does not describe $here"

data_dir="${XDG_DATA_HOME:-$HOME/.local/share}/$APP"
config_dir="${XDG_CONFIG_HOME:-$HOME/.config}/$APP"
cache_dir="${XDG_CACHE_HOME:-$HOME/.cache}/$APP"
purge_targets=()
if [ "$purge" = 1 ]; then
    for d in "$data_dir" "$config_dir" "$cache_dir"; do [ -d "$d" ] && purge_targets+=("$d"); done
fi
# Confirm before removing anything, so a refused purge leaves the install as it was.
if [ ${#purge_targets[@]} -gt 0 ] && [ "$yes" = 0 ]; then
    [ -t 0 ] || die "--purge without --yes needs a terminal to confirm; nothing removed"
    echo "This deletes all runs, adapters, datasets and settings of ${USER:-this user}:"
    printf '  %s\n' "${purge_targets[@]}"
    read -r -p "Type 'delete' to confirm: " answer
    [ "$answer" = delete ] || die "not confirmed; nothing removed"
fi

# Only remove a launcher that install.sh wrote (a user may have replaced it with their own).
if [ -n "$LAUNCHER" ] && [ -f "$LAUNCHER" ] && grep -q '^# finetune-studio launcher' "$LAUNCHER"; then
    rm -f "$LAUNCHER" && say "removed $LAUNCHER"
fi
for f in "$DESKTOP_FILE" "$ICON_FILE"; do
    if [ -n "$f" ] && [ -e "$f" ]; then rm -f "$f" && say "removed $f"; fi
done
if [ -n "$DESKTOP_FILE" ] && command -v update-desktop-database >/dev/null; then
    update-desktop-database -q "$(dirname "$DESKTOP_FILE")" 2>/dev/null || true
fi

# The app folder holds only what install.sh made: envs/, current, python/, install.env, uninstall.
rm -rf "$APP_DIR/envs" "$APP_DIR/python" "$APP_DIR/current" "$APP_DIR/install.env" "$APP_DIR/uninstall"
rmdir "$APP_DIR" 2>/dev/null || say "left $APP_DIR: it holds files install.sh did not create"
say "removed the app (${SCOPE:-user} install) from $APP_DIR"

if [ "$purge" = 0 ]; then
    [ -d "$data_dir" ] && say "kept your data in $data_dir (runs, adapters, datasets)"
    [ -d "$config_dir" ] && say "kept your settings in $config_dir"
    exit 0
fi
[ ${#purge_targets[@]} -gt 0 ] || say "no user data to purge for ${USER:-$(id -un)}"
for d in ${purge_targets[@]+"${purge_targets[@]}"}; do rm -rf "$d" && say "deleted $d"; done
if [ "$SCOPE" = system ]; then
    # An admin running this with sudo would otherwise believe every user's runs are gone.
    say "--purge deleted only the data of ${USER:-$(id -un)}: every other user's runs, adapters and \
settings stay in their own ~/.local/share/$APP and ~/.config/$APP (each user can delete them)"
fi
[ -z "${FINETUNE_STUDIO_HOME:-}" ] || say "left FINETUNE_STUDIO_HOME=$FINETUNE_STUDIO_HOME alone"
