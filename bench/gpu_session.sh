#!/usr/bin/env bash
# Everything this project measures on a GPU, in one device-tool call of at most 10 minutes:
#   1. bench/measure_memory.py  - the VRAM estimate's calibration table (issue: memory estimate)
#   2. bench/gpu_check.py       - every method and precision trains on a 1.24B model (engine)
#   3. bench/gpu_check_generation.py - 4-bit and 8-bit bases with two adapters, and a comparison (adapters)
# Results go to $OUT (at most 8 files come back). Run from the repo root on the device machine,
# after bench/gpu_wheels.sh here, with carry [".whl"] and timeout_s 590:
#   bash bench/gpu_session.sh
set -u
OUT=${OUT:-bench/results}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "carry .whl (bench/gpu_wheels.sh)"; exit 1; }
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1
python3 -c "import torch, transformers, peft, bitsandbytes; print('torch', torch.__version__, 'transformers', \
transformers.__version__, 'peft', peft.__version__, 'bitsandbytes', bitsandbytes.__version__)" >> "$OUT/gpu.txt" 2>&1
cat "$OUT/gpu.txt"
GIB=$(python3 -c "import torch; print(round(torch.cuda.get_device_properties(0).total_memory / 2**30))")
# Budgets: 4.5 min memory table, 3 min training check, 1 min generation (each also stops
# itself); with the install, about 9 minutes. MEM_ONLY=7b runs only those memory cases.
timeout 270 python3 bench/measure_memory.py --out "$OUT" --gpu-gib "$GIB" --timeout 60 --budget-s 210 ${MEM_ONLY:+--only "$MEM_ONLY"} 2>&1 | tail -40
timeout 180 python3 bench/gpu_check.py --out "$OUT" --budget-s 130 2>&1 | tail -40
timeout 70 python3 bench/gpu_check_generation.py > "$OUT/gpu-check-generation.json" 2> "$OUT/generation.log"
echo "generation exit $?"; tail -c 1500 "$OUT/gpu-check-generation.json"
ls -la "$OUT"
