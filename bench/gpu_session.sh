#!/usr/bin/env bash
# Everything this project measures on a GPU, in one device-tool call of at most 10 minutes:
#   memory      bench/measure_memory.py         - the VRAM estimate's calibration table (issue: memory estimate)
#   check       bench/gpu_check.py              - every method and precision trains on a 1.24B model (engine)
#     + bench/gpu_check_generation.py         - 4-bit and 8-bit bases with two adapters, a comparison (adapters)
#   throughput  bench/throughput.py             - our engine vs a plain Trainer + PEFT script (engine)
# Run from the repo root on the device machine, after bench/gpu_wheels.sh here, with carry
# [".whl"] and timeout_s 590:
#   bash bench/gpu_session.sh
# STEPS picks and orders the steps (default "memory check throughput"; check includes generation); MEM_ONLY
# and MEM_BUDGET pass --only and --budget-s to the memory step, e.g. a second, shorter call:
#   STEPS="throughput memory" MEM_ONLY=7b MEM_BUDGET=60 bash bench/gpu_session.sh
# MEM_ONLY is comma-separated substrings of case names, run in that order (bench/measure_memory.py
# --only; add --list to print the selection without running it, no GPU needed).
# Next session's memory follow-up (not in the default run): do variable-length batches' device numbers
# plateau (12 steps), does expandable_segments remove the creep, does training complete with the
# allocator capped at the estimate (see VARIANTS in bench/measure_memory.py); then the 4 cases the
# 2026-12-04 run had no time for. 12 cases, about 6 min (the first 8, the follow-up, about 4), so
# timeout_s 480:
#   STEPS="memory" MEM_ONLY="12steps,expandable,capped,3tokens,l2-7b,q3-,g3-" MEM_BUDGET=330 MEM_TIMEOUT=420 bash bench/gpu_session.sh
# With the throughput comparison on long records after it in the same call (timeout_s 590):
#   STEPS="memory throughput" MEM_ONLY="12steps,expandable,capped,3tokens,l2-7b,q3-,g3-" MEM_BUDGET=300 MEM_TIMEOUT=360 bash bench/gpu_session.sh
# Results go to $OUT, at most 8 files (what the device tool brings back): session.log,
# memory-<date>.{json,md}, gpu-check-<date>.{json,md}, gpu-check-generation.json, throughput.json.
set -u
OUT=${OUT:-bench/results}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/session.log") 2>&1
STEPS=${STEPS:-memory check throughput}
if [ ! -d /tmp/site/bitsandbytes ] || [ ! -d /tmp/site/datasets ]; then  # a warm machine keeps them
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || { echo "carry .whl (bench/gpu_wheels.sh)"; exit 1; }
fi
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
    HF_DATASETS_OFFLINE=1 FINETUNE_STUDIO_HOME=/tmp/fs-home TOKENIZERS_PARALLELISM=false
date -u
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
# Preflight: every package imports and bitsandbytes' CUDA kernels run (4-bit and 8-bit).
python3 - <<'EOF'
import torch, transformers, peft, accelerate, datasets, bitsandbytes as bnb, platformdirs, pyarrow
print("torch", torch.__version__, "cuda", torch.version.cuda, "transformers", transformers.__version__, "peft",
      peft.__version__, "accelerate", accelerate.__version__, "bitsandbytes", bnb.__version__, "datasets",
      datasets.__version__, "pyarrow", pyarrow.__version__)
x = torch.randn(64, 64, device="cuda", dtype=torch.bfloat16)
q, state = bnb.functional.quantize_4bit(x, quant_type="nf4")
print("nf4 round trip max error", float((bnb.functional.dequantize_4bit(q, state) - x).abs().max()))
print("bf16 supported", torch.cuda.is_bf16_supported(), torch.cuda.get_device_name(0))
EOF
# engine/nvsmi.py against the real nvidia-smi (its tests use a stand-in): this process holds 2 GiB,
# so nvidia-smi must list it with at least that, and the estimate must see it as another program's.
timeout 60 python3 - <<'EOF' 2>&1 | tee "$OUT/nvsmi-check.txt"
import json, os, torch
from engine import nvsmi
from engine.memory.peak import gpu_others
from engine.config import RunConfig
from engine.train import _gpu_used_before
print("used before this process (expect ~0 on an empty GPU):", _gpu_used_before(RunConfig.from_dict({"model": "demo"})))
hold = torch.empty(2 << 30, dtype=torch.uint8, device="cuda")
torch.cuda.synchronize()
props = torch.cuda.get_device_properties(0)
gpus = nvsmi.query()
print(json.dumps(nvsmi.report(gpus, ()), indent=1))
gpu = nvsmi.cuda_gpu(gpus, str(getattr(props, "uuid", "")), props.name)
me = [p for p in (gpu.processes if gpu else ()) if p.pid == os.getpid()]
held, others = gpu_others(getattr(props, "uuid", None), props.name)
free, total = torch.cuda.mem_get_info()
print("matched", gpu is not None, "listed me", bool(me), "my bytes", me[0].used_bytes if me else None,
      "others_bytes", held, "driver used", total - free)
sampler = nvsmi.Sampler(gpu, interval_s=0.2).start() if gpu else None
if sampler:
    x = torch.randn(8192, 8192, device="cuda")
    import time
    t_end = time.time() + 1.5
    while time.time() < t_end:
        x = (x @ x).clamp_(-1, 1)  # keep the GPU busy: the sampler should read it busy
    torch.cuda.synchronize()
    sampler.stop()
    print("sampler while busy:", sampler.window(0), len(sampler.samples), "samples")
ok = gpu and me and (me[0].used_bytes or 0) >= 2 << 30 and (held or 0) >= 2 << 30
print("NVSMI CHECK", "OK" if ok else "FAILED")
EOF
GIB=$(python3 -c "import torch; print(round(torch.cuda.get_device_properties(0).total_memory / 2**30))")
for step in $STEPS; do
    echo "=== $step $(date -u +%T)"
    case $step in
        # each step also stops itself (its budget) before its hard timeout
        memory) timeout "${MEM_TIMEOUT:-260}" python3 bench/measure_memory.py --out "$OUT" --gpu-gib "$GIB" --timeout 60 \
                    --budget-s "${MEM_BUDGET:-200}" ${MEM_ONLY:+--only "$MEM_ONLY"} 2>&1 | tail -45 ;;
        # generation (a 4.5M-parameter demo model, under a minute) runs beside the training check's
        # first cases: their tokens/s share the GPU with it; the memory step never shares it.
        check) timeout 75 python3 bench/gpu_check_generation.py > "$OUT/gpu-check-generation.json" 2> "$OUT/generation.log" &
               gen=$!
               timeout 160 python3 bench/gpu_check.py --out "$OUT" --budget-s "${CHECK_BUDGET:-105}" 2>&1 | tail -45
               wait "$gen"; echo "generation exit $?"; tail -c 1500 "$OUT/gpu-check-generation.json"; echo
               tail -c 1500 "$OUT/generation.log"; cat "$OUT/generation.log" >> "$OUT/session.log"; rm -f "$OUT/generation.log" ;;
        # Long records (~700 words, cut at seq_len 1024): each step is GPU work, not per-step overhead
        # (the demo's short records made 2026-12-04's round overhead-bound).
        throughput) python3 -c "import sys; from pathlib import Path; sys.path.insert(0, 'bench'); \
from gpu_check import long_dataset; long_dataset(Path('/tmp/long.jsonl'), n=512, words=700)"
                    timeout "${TP_TIMEOUT:-170}" python3 bench/throughput.py --model bench/model_configs/qwen2.5-0.5b \
                        --random-weights --dataset /tmp/long.jsonl --seq-len 1024 --steps 20 --warmup 5 \
                        --repeats "${TP_REPEATS:-2}" --out "$OUT/throughput.json" 2>&1 | tail -30 ;;
    esac
done
echo "=== done $(date -u +%T)"
ls -la "$OUT"
sleep 1  # let tee write the log's end
