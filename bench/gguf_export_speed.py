"""Time and memory of ``export-gguf`` on a real-sized model: ``python bench/gguf_export_speed.py``.

Builds a model with Qwen2.5-0.5B's shape (494M parameters, 151,936-token vocabulary, tied
embeddings) from its config, random weights saved in bf16 (nothing downloaded; the
tokenizer is the tests' small Qwen-pattern one, so most of the vocabulary is padding), then
runs ``finetune-studio export-gguf`` on it once per type, each in a fresh interpreter, and
prints, as JSON: wall time (interpreter start and imports included), the export's own time,
file size, and that interpreter's peak resident memory (``VmHWM``: imports, the mapped
safetensors pages it read, the conversion) beside the safetensors size, which loading the
whole model would at least take.

Results are in docs/gguf-export.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "engine"))

SHAPE = dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
             num_key_value_heads=2, max_position_embeddings=32768, vocab_size=151936, tie_word_embeddings=True,
             rope_theta=1000000.0, rms_norm_eps=1e-6)


def main() -> int:
    import torch
    from test_gguf_export import PRE, tiny_tokenizer
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    results = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        model_dir = tmp / "qwen2.5-0.5b-shape"
        model_dir.mkdir()
        tiny_tokenizer(model_dir, PRE["qwen2"])
        tok = AutoTokenizer.from_pretrained(model_dir)
        torch.manual_seed(0)
        config = Qwen2Config(**SHAPE, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        model = Qwen2ForCausalLM(config).to(torch.bfloat16)
        params = sum(p.numel() for p in model.parameters())
        model.save_pretrained(model_dir, safe_serialization=True)
        del model
        weights = sum(f.stat().st_size for f in model_dir.glob("*.safetensors"))
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        for out_type in ("q8_0", "f16", "bf16"):
            out = tmp / f"model-{out_type}.gguf"
            args = ["export-gguf", str(model_dir), "--type", out_type, "--out", str(out), "--json"]
            # The CLI in a fresh interpreter that reports its own peak RSS when done.
            # (VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so a child would report
            # this script's own peak, which holds the model it built.)
            code = ("import sys; from engine.cli import main; rc = main(sys.argv[1:]); "
                    "hwm = [ln.split()[1] for ln in open('/proc/self/status') if ln.startswith('VmHWM')][0]; "
                    "print('maxrss', hwm, file=sys.stderr); sys.exit(rc)")
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True)
            wall = time.perf_counter() - t0
            if proc.returncode != 0:
                print(proc.stderr, file=sys.stderr)
                return 1
            peak_kib = int(next(ln.split()[1] for ln in proc.stderr.splitlines() if ln.startswith("maxrss")))
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            results.append({"type": out_type, "wall_s": round(wall, 1), "export_s": row["seconds"],
                            "file_mb": round(row["bytes"] / 1e6, 1), "peak_rss_mb": round(peak_kib / 1024, 1)})
            out.unlink()
    print(json.dumps({"date": time.strftime("%Y-%m-%d"), "cpu_cores": os.cpu_count(), "params": params,
                      "safetensors_mb": round(weights / 1e6, 1), "runs": results}, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
