#!/usr/bin/env bash
# Download every wheel that a lock pins into a folder, on a connected machine, for offline installs.
#
#   packaging/wheelhouse.sh TARGET [DEST]      # TARGET: linux-cpu, linux-cu130, windows-cpu, ...
#
# DEST defaults to packaging/out/wheelhouse/TARGET. The wheels are checked against the lock's
# hashes while downloading (pip's hash-checking mode), for the lock's platform and Python, so a
# Linux machine can build a Windows wheelhouse. Install from it with no network:
#   install.sh --wheelhouse DEST        (or: uv pip sync --offline --no-index --find-links DEST LOCK)
#
# Environment: PIP (default: python3 -m pip), TORCH_FIND_LINKS (a folder with the torch wheel,
# when download.pytorch.org is unreachable). pip's own configuration (a lab proxy/mirror in
# pip.conf) is honoured.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
die() { echo "wheelhouse.sh: $*" >&2; exit 1; }
target="${1:-}"
[ -n "$target" ] || die "usage: wheelhouse.sh TARGET [DEST]   (TARGET: a lock in $here/locks, e.g. linux-cpu)"
lock="$here/locks/$target.txt"
[ -f "$lock" ] || die "no lock $lock; generate it with: packaging/lock.sh $target"
dest="${2:-$here/out/wheelhouse/$target}"
read -r -a PIP <<< "${PIP:-python3 -m pip}"

header="$(grep -m1 '^# finetune-studio lock:' "$lock")" || die "$lock has no finetune-studio header"
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<< "$header"; }
python_version="$(field python)"
index="$(field torch-index)"
platforms=()
case "$(field platform)" in
    x86_64-manylinux_2_34)
        # pip does not widen a manylinux tag to older glibc floors by itself: list them all
        for minor in $(seq 34 -1 17); do platforms+=(--platform "manylinux_2_${minor}_x86_64"); done
        platforms+=(--platform manylinux2014_x86_64 --platform manylinux2010_x86_64 \
                    --platform manylinux1_x86_64 --platform linux_x86_64) ;;
    x86_64-pc-windows-msvc) platforms=(--platform win_amd64) ;;
    *) die "unknown platform in $lock: $(field platform)" ;;
esac
abi="cp${python_version/./}"
extra=()
if [ -n "${TORCH_FIND_LINKS:-}" ]; then
    extra+=(--find-links "$TORCH_FIND_LINKS")
elif [ "$index" != pypi ]; then
    extra+=(--extra-index-url "$index")
fi

mkdir -p "$dest"
echo "downloading $target wheels into $dest"
start=$SECONDS
download() {  # download REQUIREMENTS [pip options...]
    local requirements="$1"; shift
    # --no-deps: the lock is already the complete, resolved set; --only-binary: nothing is built
    # on the lab machine; a lock line whose hash does not match the downloaded file aborts.
    "${PIP[@]}" download --no-deps --only-binary=:all: --require-hashes -r "$requirements" \
        "${platforms[@]}" --python-version "$python_version" --implementation cp \
        --abi "$abi" --abi abi3 --abi none \
        "$@" --dest "$dest" --progress-bar off --quiet
}
if [ ${#extra[@]} -eq 0 ]; then
    download "$lock"
else
    # Only the pins with a local version (torch==2.13.0+cpu) live on the PyTorch index. Asking it
    # for every other pin too made pip retry each of them when the index is unreachable (a lab
    # proxy, a build machine that reaches only PyPI): minutes of warnings for nothing. So two passes.
    split="$(mktemp -d)"
    trap 'rm -rf "$split"' EXIT
    python3 - "$lock" "$split" <<'EOF'
import pathlib, re, sys
lock, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
blocks = re.split(r"(?m)^(?=[A-Za-z0-9])", lock.read_text())  # one block per pin, with its hashes
pins = [b for b in blocks if re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*==\S+", b)]
local = [b for b in pins if "+" in b.split()[0]]
(out / "torch-index.txt").write_text("".join(local))
(out / "rest.txt").write_text("".join(b for b in pins if b not in local))
EOF
    download "$split/rest.txt"
    if [ -s "$split/torch-index.txt" ]; then
        wanted="$(grep -o '^[A-Za-z0-9][^ ]*==[^ ]*' "$split/torch-index.txt" | paste -sd' ')"
        download "$split/torch-index.txt" "${extra[@]}" \
            || die "could not download $wanted from ${TORCH_FIND_LINKS:-$index}. If this machine \
cannot reach it, put the wheel(s) in a folder and run again with TORCH_FIND_LINKS=that-folder"
    fi
fi
# Re-running after a lock change keeps the old wheels that pip finds again; drop the rest, so the
# wheelhouse is exactly the lock.
python3 - "$lock" "$dest" <<'EOF'
import pathlib, re, sys
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
pins = {(norm(m[1]), m[2]) for m in re.finditer(r"(?m)^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", pathlib.Path(sys.argv[1]).read_text())}
for wheel in pathlib.Path(sys.argv[2]).glob("*.whl"):
    name, version = wheel.name.split("-")[:2]
    if (norm(name), version) not in pins:
        print(f"removing {wheel.name}: not in the lock")
        wheel.unlink()
EOF
count="$(find "$dest" -maxdepth 1 -name '*.whl' | wc -l)"
echo "wheelhouse $dest: $count wheels, $(du -sh "$dest" | cut -f1), $((SECONDS - start)) s"
