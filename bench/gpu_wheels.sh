#!/usr/bin/env bash
# Download, here, the wheels the lent GPU machine lacks (it has torch, transformers, peft,
# accelerate, pyarrow, PyYAML...; see the device tool's KINDS.md) - bitsandbytes, platformdirs and
# datasets with its two packages the image lacks (dill, multiprocess) - into .whl/ (git-ignored
# through .git/info/exclude). bitsandbytes is 41 MB; with the repo (~11 MB) it stays under
# the 64 MiB a device call may carry.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qxF '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
mkdir -p .whl
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform any -d .whl bitsandbytes==0.50.2 platformdirs==4.3.8 \
    datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19
ls -la .whl
