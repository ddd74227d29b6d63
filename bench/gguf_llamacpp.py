"""Does llama.cpp run what ``export-gguf`` writes as transformers runs the original?

``python bench/gguf_llamacpp.py [--out FILE.md]``

Needs llama-cpp-python (``pip install llama-cpp-python``: it compiles llama.cpp, about 15
minutes on 2 cores). It is not a dependency of the app; the test suite checks the files with
transformers' own GGUF loader instead.

Cases: the demo model (Llama, tied embeddings, GPT-2 pre-tokenizer); a LoRA trained on the
demo model to give one answer, merged and exported in one step (``export_source``); tiny
random models with the Llama 3 (``llama-bpe``) and Qwen 2 (``qwen2``) pre-tokenizers, as
Llama, Mistral, Qwen2 (with biases) and Qwen3 (with q/k norms), a Phi-3 with GPT-4o's (``gpt-4o``,
Phi-4-mini's), and a Mistral with a
SentencePiece-style tokenizer (byte fallback, as Llama 2's and Mistral's); the tiny Phi-3 and
Gemma models of tests/engine/test_gguf_export.py: Phi-3 (fused qkv/gate_up, Llama 2 style
tokenizer), Phi-3 with longrope and a partial rotary width (Phi-4-mini's shape, byte-level BPE),
run once with a context no longer than its original one (short factors) and once with a prompt
past it (long factors), Gemma 2 and Gemma 3 (norms written as w + 1, softcaps, sliding windows
shorter than the prompt, Gemma's tokenizer). For each file, printed as a Markdown table:

- tokens: llama.cpp's tokenization of a few hard strings (digit runs, whitespace runs,
  accents, CJK, ChatML's, Phi-3's and Gemma's chat tokens) equals the HF tokenizer's, string by string, both as bare text and
  with the special tokens each adds by itself (Gemma's BOS: the file's ``add_bos_token``);
- logits: the largest difference of llama.cpp's next-token logits from transformers' over a
  prompt (f32 files: rounding only);
- greedy: how many of 24 greedy tokens llama.cpp picks as transformers does, ignoring EOS
  (random-weight models have near-ties, so quantised files may part ways late);
- for the LoRA: llama.cpp's greedy answer to a training question, in text, from the merged
  export and from the adapter file (``export-gguf --lora``) applied on the base's file; the
  reference is transformers running the merged model. A random all-linear LoRA on a GQA Llama
  checks the adapter file's Q/K permutation; on Phi-3, its fused qkv/gate_up names; on Gemma 2
  and 3, that the adapter leaves the +1 norms alone.

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
           "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n",
           "<|user|>\nhello</s> world<|end|>\n<|assistant|>\n",  # Phi-3's: these tokens eat the whitespace after them
           "<start_of_turn>user\nhello<end_of_turn>\n<start_of_turn>model\n"]
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


def check(model_dir: Path, gguf_file: Path, prompt: str, *, answer: bool = False, lora: Path | None = None,
          n_ctx: int = 256) -> dict:
    import numpy as np
    import torch
    from llama_cpp import Llama
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    llm = Llama(str(gguf_file), n_ctx=n_ctx, n_threads=2, logits_all=True, verbose=False, seed=0,
                lora_path=str(lora) if lora else None)
    # add_bos=True lets llama.cpp add what the file says its tokenizer adds (llama_tokenize's add_special)
    same_tokens = sum(llm.tokenize(s.encode(), add_bos=False, special=True) == tok(s, add_special_tokens=False).input_ids
                      and llm.tokenize(s.encode(), add_bos=True, special=True) == tok(s).input_ids for s in STRINGS)
    ids = tok(prompt, return_tensors="pt", add_special_tokens=False).input_ids
    assert ids.shape[1] + N_GREEDY <= n_ctx, (ids.shape[1], n_ctx)
    with torch.no_grad():
        want = model(ids).logits[0].numpy()
    llm.reset()
    llm.eval(ids[0].tolist())
    got = np.array(llm.scores[: ids.shape[1]])
    hf = _hf_greedy(model, ids, N_GREEDY)
    cpp = _llama_greedy(llm, ids[0].tolist(), N_GREEDY)
    agree = next((i for i, (a, b) in enumerate(zip(hf, cpp, strict=True)) if a != b), N_GREEDY)
    row = {"tokens": f"{same_tokens}/{len(STRINGS)}", "logits": float(np.abs(want - got).max()),
           "greedy": f"{agree}/{N_GREEDY}", "size": (lora or gguf_file).stat().st_size, "prompt": ids.shape[1]}
    llm.close()
    if answer:
        eos = tok.eos_token_id
        stop = cpp.index(eos) if eos in cpp else len(cpp)
        row["answer"] = tok.decode(cpp[:stop])
    return row


def _phi3_and_gemma_cases(tmp: Path, tiny_model, families: dict, pre: dict, sample: str) -> list:
    """The tiny Phi-3 and Gemma models of the GGUF tests, as (label, folder, prompt, n_ctx).

    llama.cpp picks Phi-3's longrope factors once, by the context it is given (long when n_ctx,
    rounded up to a multiple of 256, exceeds the original context), while transformers picks them
    per forward pass, by the sequence's length; so the longrope model runs twice, once where both
    take the short factors (a context of 256, the original one there) and once where both take the
    long ones (a prompt past 48 tokens, the original context there, in a context of 256).
    """
    from transformers import AutoTokenizer

    long_prompt = " ".join([STRINGS[0], STRINGS[2], sample])
    rope = {"rope_type": "longrope", "rope_theta": 10000.0, "partial_rotary_factor": 0.75,
            "long_factor": [1.0 + i / 4 for i in range(6)], "short_factor": [1.0 + i / 40 for i in range(6)]}
    cases = [("tiny phi3 (SentencePiece-style)", tiny_model(tmp / "tiny-phi3", "phi3", **families["phi3"]),
              STRINGS[0], 256)]
    for label, original, prompt, n_ctx in (("short factors", 256, STRINGS[0], 256),
                                           ("long factors", 48, long_prompt, 256)):
        d = tiny_model(tmp / f"tiny-phi3-longrope-{original}", "phi3", pattern=pre["llama-bpe"],
                       rope_parameters=dict(rope), original_max_position_embeddings=original,
                       max_position_embeddings=1024, tie_word_embeddings=True)
        length = len(AutoTokenizer.from_pretrained(d)(prompt, add_special_tokens=False).input_ids)
        assert (length > original) == (label == "long factors") and n_ctx >= length + N_GREEDY, (label, length)
        cases.append((f"tiny phi3 longrope, 3/4 rotary, {label} (llama-bpe pre)", d, prompt, n_ctx))
    cases.append(("tiny gemma2 (window 8)", tiny_model(tmp / "tiny-gemma2", "gemma2", **families["gemma2"],
                                                        sliding_window=8), sample, 256))
    cases.append(("tiny gemma3 (7 layers, window 8)", tiny_model(tmp / "tiny-gemma3", "gemma3",
                                                                  **families["gemma3"]), sample, 256))
    return cases


def _random_lora(base: Path, tmp: Path) -> tuple[Path, Path]:
    """A LoRA with random A and B on every linear layer of ``base``, and ``base`` merged with it."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from engine.adapters import merge_adapters

    torch.manual_seed(1)
    peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32),
                                LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", init_lora_weights=False))
    peft_model.save_pretrained(tmp / f"{base.name}-lora")
    merged = tmp / f"{base.name}-merged"
    merge_adapters(str(base), [str(tmp / f"{base.name}-lora")], merged)
    return tmp / f"{base.name}-lora", merged


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=None, help="also write the Markdown table here")
    ap.add_argument("--extra-buffers", action="store_true",
                    help="let llama.cpp repack q8_0 weights into its extra CPU buffer types (its default; "
                         "llama-cpp-python 0.3.36 built here with AMX crashed in llama_decode on every q8_0 file)")
    args = ap.parse_args()
    try:
        import llama_cpp
        import llama_cpp.llama_cpp as lib
    except ImportError:
        print("llama-cpp-python is not installed: pip install llama-cpp-python", file=sys.stderr)
        return 2
    if not args.extra_buffers:  # Llama() takes no such argument; it reads the library's default params
        default_params = lib.llama_model_default_params

        def model_params():
            params = default_params()
            params.use_extra_bufts = False
            return params

        lib.llama_model_default_params = model_params
    from conftest import train_lora  # tests/engine/conftest.py
    from test_gguf_export import FAMILIES, PRE, SAMPLE, tiny_model

    from engine.gguf_export import export_gguf, export_source
    from engine.models import resolve_model_path

    demo = resolve_model_path("demo")
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        # (label, model folder, prompt, llama.cpp context)
        cases = [("demo Llama (gpt-2 pre)", demo, "### Instruction:\nGive three tips for staying healthy.\n", 256)]
        for arch, pre in (("llama", "llama-bpe"), ("mistral", "llama-bpe"), ("qwen2", "qwen2"), ("qwen3", "qwen2")):
            extra = {"head_dim": 128} if arch == "qwen3" else {}
            d = tiny_model(tmp / f"tiny-{arch}", arch, pattern=PRE[pre], **extra)
            cases.append((f"tiny {arch} ({pre} pre)", d, STRINGS[0], 256))
        d = tiny_model(tmp / "tiny-phi4mini", "phi3", pattern=PRE["gpt-4o"], tie_word_embeddings=True)
        cases.append(("tiny phi3 (gpt-4o pre, Phi-4-mini's pattern)", d, STRINGS[0], 256))
        d = tiny_model(tmp / "tiny-spm", "mistral", spm=True, bos_token_id=1, eos_token_id=2)
        cases.append(("tiny mistral (SentencePiece-style)", d, STRINGS[0], 256))
        cases += _phi3_and_gemma_cases(tmp, tiny_model, FAMILIES, PRE, SAMPLE)
        for label, model_dir, prompt, n_ctx in cases:
            for out_type in ("f32", "f16", "q8_0"):
                t0 = time.perf_counter()
                out = tmp / f"{model_dir.name}-{out_type}.gguf"
                res = export_gguf(model_dir, out, out_type=out_type) if not out.exists() else None
                row = check(model_dir, out, prompt, n_ctx=n_ctx)
                rows.append((label, out_type, round(time.perf_counter() - t0, 1) if res else None, row))
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
        # lora_b rows must be permuted as the base's rows are. On Phi-3 it lands on the fused
        # qkv_proj / gate_up_proj; on Gemma it must leave the +1 norms as they are.
        lora_cases = [("tiny llama GQA", tmp / "tiny-llama", STRINGS[0], 256)]
        lora_cases += [(label, d, prompt, n_ctx) for label, d, prompt, n_ctx in cases
                       if d.name in ("tiny-phi3", "tiny-gemma2", "tiny-gemma3")]
        for label, tiny, prompt, n_ctx in lora_cases:
            adapter, tiny_merged = _random_lora(tiny, tmp)
            base_file = tmp / f"{tiny.name}-f32.gguf"
            if not base_file.exists():
                export_gguf(tiny, base_file, out_type="f32")
            res = export_lora_gguf(adapter, tmp / f"{tiny.name}-lora-f32.gguf", base=str(tiny), out_type="f32")
            row = check(tiny_merged, base_file, prompt, lora=res.path, n_ctx=n_ctx)
            rows.append((f"{label} f32 + random all-linear LoRA file", "f32", None, row))
            print("tiny lora file", label, row, file=sys.stderr, flush=True)

    lines = [f"llama-cpp-python {llama_cpp.__version__}, {time.strftime('%Y-%m-%d')}, "
             f"extra CPU buffer types {'on' if args.extra_buffers else 'off'}", "",
             "| model | type | size | prompt tokens | tokens equal | max logit diff | greedy tokens equal | answer |",
             "|---|---|---|---|---|---|---|---|"]
    for label, out_type, _, row in rows:
        lines.append(f"| {label} | {out_type} | {row['size'] / 1e6:.2f} MB | {row['prompt']} | {row['tokens']} | "
                     f"{row['logits']:.2g} | {row['greedy']} | {row.get('answer', '')} |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
