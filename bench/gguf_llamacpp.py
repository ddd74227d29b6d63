"""Does llama.cpp run what ``export-gguf`` writes as transformers runs the original?

``python bench/gguf_llamacpp.py [--out FILE.md]``

Needs llama-cpp-python (``pip install llama-cpp-python``: it compiles llama.cpp, about 15
minutes on 2 cores). It is not a dependency of the app; the test suite checks the files with
transformers' own GGUF loader instead.

Cases: the demo model (Llama, tied embeddings, GPT-2 pre-tokenizer); a LoRA trained on the
demo model to give one answer, merged and exported in one step (``export_source``); tiny
random models with the Llama 3 (``llama-bpe``) and Qwen 2 (``qwen2``) pre-tokenizers, as
Llama, Mistral, Qwen2 (with biases) and Qwen3 (with q/k norms), and a Mistral with a
SentencePiece-style tokenizer (byte fallback, as Llama 2's and Mistral's). For each file, printed as a
Markdown table:

- tokens: llama.cpp's tokenization of a few hard strings (digit runs, whitespace runs,
  accents, CJK, chat tokens) equals the HF tokenizer's, string by string;
- logits: the largest difference of llama.cpp's next-token logits from transformers' over a
  prompt (f32 files: rounding only);
- greedy: how many of 24 greedy tokens llama.cpp picks as transformers does, ignoring EOS
  (random-weight models have near-ties, so quantised files may part ways late);
- for the LoRA: llama.cpp's greedy answer to a training question, in text, from the merged
  export and from the adapter file (``export-gguf --lora``) applied on the base's file; the
  reference is transformers running the merged model. A random all-linear LoRA on a GQA Llama
  checks the adapter file's Q/K permutation.

Results are in docs/gguf-export.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "engine"))

STRINGS = ["Name three primes: 2, 3 and 5. Then 12345 + 678 = 13023!",
           "  leading spaces,\ttabs\n\nand   runs of   spaces  ",
           "Déjà vu: naïve café, 東京 and Ünïcödé",
           "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n"]
N_GREEDY = 24


def _hf_greedy(model, ids, n):
    import torch

    ids = ids.clone()
    out = []
    with torch.no_grad():
        for _ in range(n):
            nxt = int(model(ids).logits[0, -1].argmax())
            out.append(nxt)
            ids = torch.cat([ids, torch.tensor([[nxt]])], dim=1)
    return out


def _llama_greedy(llm, ids, n):
    llm.reset()
    out = []
    for tok in llm.generate(ids, temp=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.0, reset=True):
        out.append(tok)
        if len(out) == n:
            break
    return out


def check(model_dir: Path, gguf_file: Path, prompt: str, *, answer: bool = False, lora: Path | None = None) -> dict:
    import numpy as np
    import torch
    from llama_cpp import Llama
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    llm = Llama(str(gguf_file), n_ctx=256, n_threads=2, logits_all=True, verbose=False, seed=0,
                lora_path=str(lora) if lora else None)
    same_tokens = sum(llm.tokenize(s.encode(), add_bos=False, special=True)
                      == tok(s, add_special_tokens=False).input_ids for s in STRINGS)
    ids = tok(prompt, return_tensors="pt", add_special_tokens=False).input_ids
    with torch.no_grad():
        want = model(ids).logits[0].numpy()
    llm.reset()
    llm.eval(ids[0].tolist())
    got = np.array(llm.scores[: ids.shape[1]])
    hf = _hf_greedy(model, ids, N_GREEDY)
    cpp = _llama_greedy(llm, ids[0].tolist(), N_GREEDY)
    agree = next((i for i, (a, b) in enumerate(zip(hf, cpp, strict=True)) if a != b), N_GREEDY)
    row = {"tokens": f"{same_tokens}/{len(STRINGS)}", "logits": float(np.abs(want - got).max()),
           "greedy": f"{agree}/{N_GREEDY}", "size": (lora or gguf_file).stat().st_size}
    llm.close()
    if answer:
        eos = tok.eos_token_id
        stop = cpp.index(eos) if eos in cpp else len(cpp)
        row["answer"] = tok.decode(cpp[:stop])
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=None, help="also write the Markdown table here")
    args = ap.parse_args()
    try:
        import llama_cpp
    except ImportError:
        print("llama-cpp-python is not installed: pip install llama-cpp-python", file=sys.stderr)
        return 2
    from conftest import train_lora  # tests/engine/conftest.py
    from test_gguf_export import PRE, tiny_model

    from engine.gguf_export import export_gguf, export_source
    from engine.models import resolve_model_path

    demo = resolve_model_path("demo")
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        cases = [("demo Llama (gpt-2 pre)", demo, "### Instruction:\nGive three tips for staying healthy.\n")]
        for arch, pre in (("llama", "llama-bpe"), ("mistral", "llama-bpe"), ("qwen2", "qwen2"), ("qwen3", "qwen2")):
            extra = {"head_dim": 128} if arch == "qwen3" else {}
            d = tiny_model(tmp / f"tiny-{arch}", arch, pattern=PRE[pre], **extra)
            cases.append((f"tiny {arch} ({pre} pre)", d, STRINGS[0]))
        d = tiny_model(tmp / "tiny-spm", "mistral", spm=True, bos_token_id=1, eos_token_id=2)
        cases.append(("tiny mistral (SentencePiece-style)", d, STRINGS[0]))
        for label, model_dir, prompt in cases:
            for out_type in ("f32", "f16", "q8_0"):
                t0 = time.perf_counter()
                res = export_gguf(model_dir, tmp / f"{model_dir.name}-{out_type}.gguf", out_type=out_type)
                row = check(model_dir, res.path, prompt)
                rows.append((label, out_type, round(time.perf_counter() - t0, 1), row))
                print(label, out_type, row, file=sys.stderr, flush=True)

        # A LoRA that learnt one answer, merged and exported in one step, answering in llama.cpp.
        from transformers import AutoTokenizer

        answer = "Read the contract twice before you sign it."
        adapter = train_lora(demo, tmp / "legal-adapter", answer)
        merged_dir = tmp / "legal-merged"
        from engine.adapters import merge_adapters

        merge_adapters(str(demo), [str(adapter)], merged_dir)
        tok = AutoTokenizer.from_pretrained(demo)
        prompt = tok.apply_chat_template([{"role": "user", "content": "Give me advice."}],
                                         add_generation_prompt=True, tokenize=False)
        for out_type in ("f16", "q8_0"):
            res = export_source(str(adapter), tmp / f"legal-{out_type}.gguf", out_type=out_type, base=str(demo))
            row = check(merged_dir, res.path, prompt, answer=True)
            rows.append(("demo + LoRA, merged", out_type, None, row))
            print("lora", out_type, row, file=sys.stderr, flush=True)

        # The same LoRA as an adapter file (export-gguf --lora) on the base's file, at run time.
        from engine.gguf_export import export_lora_gguf

        for base_type, lora_type in (("f32", "f32"), ("f16", "f16"), ("q8_0", "f16")):
            base_file = tmp / f"demo-{base_type}.gguf"
            if not base_file.exists():
                export_gguf(demo, base_file, out_type=base_type)
            res = export_lora_gguf(adapter, tmp / f"legal-lora-{lora_type}-on-{base_type}.gguf", base=str(demo),
                                   out_type=lora_type)
            row = check(merged_dir, base_file, prompt, answer=True, lora=res.path)
            rows.append((f"demo {base_type} + LoRA file (--lora)", lora_type, None, row))
            print("lora file", base_type, lora_type, row, file=sys.stderr, flush=True)

        # A random LoRA on every linear layer of a GQA Llama (4 heads, 2 KV heads): Q and K's
        # lora_b rows must be permuted as the base's rows are.
        import torch
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModelForCausalLM

        tiny = tmp / "tiny-llama"
        torch.manual_seed(1)
        peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32),
                                    LoraConfig(r=8, lora_alpha=16, target_modules="all-linear",
                                               init_lora_weights=False))
        peft_model.save_pretrained(tmp / "tiny-lora")
        tiny_merged = tmp / "tiny-llama-merged"
        merge_adapters(str(tiny), [str(tmp / "tiny-lora")], tiny_merged)
        base_file = export_gguf(tiny, tmp / "tiny-base-f32.gguf", out_type="f32").path
        res = export_lora_gguf(tmp / "tiny-lora", tmp / "tiny-lora-f32.gguf", base=str(tiny), out_type="f32")
        row = check(tiny_merged, base_file, STRINGS[0], lora=res.path)
        rows.append(("tiny llama GQA f32 + random all-linear LoRA file", "f32", None, row))
        print("tiny lora file", row, file=sys.stderr, flush=True)

    lines = [f"llama-cpp-python {llama_cpp.__version__}, {time.strftime('%Y-%m-%d')}", "",
             "| model | type | size | tokens equal | max logit diff | greedy tokens equal | answer |",
             "|---|---|---|---|---|---|---|"]
    for label, out_type, _, row in rows:
        lines.append(f"| {label} | {out_type} | {row['size'] / 1e6:.2f} MB | {row['tokens']} | "
                     f"{row['logits']:.2g} | {row['greedy']} | {row.get('answer', '')} |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
