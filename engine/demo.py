"""The embedded demo: a tiny Llama-architecture model and tokenizer the project builds itself.

Nothing is downloaded. The tokenizer is a byte-level BPE trained with ``tokenizers`` on
the demo dataset (so Chinese and English both tokenize compactly), with a ChatML chat
template. The model is a ~1M-parameter ``LlamaForCausalLM`` initialised from a fixed
seed and then briefly pre-trained on the dataset's texts as *plain text* (no chat
format), so that it has seen the vocabulary. Fine-tuning then has something visible to
learn: the chat format and answering instructions, which makes the demo's loss fall
clearly within a couple of minutes on a CPU.

The result is committed under ``resources/demo/model`` (about 4 MB); ``python -m
engine.demo --rebuild`` regenerates it deterministically.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from engine.paths import demo_dataset_path, demo_model_dir

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
VOCAB_SIZE = 2048
# Small enough to train in seconds on a CPU, big enough to learn the demo data's patterns.
MODEL_SHAPE = dict(hidden_size=128, intermediate_size=352, num_hidden_layers=4, num_attention_heads=4,
                   num_key_value_heads=2, max_position_embeddings=1024, tie_word_embeddings=True)
SEED = 1234


def _texts(dataset: Path) -> list[str]:
    out = []
    for line in dataset.read_text(encoding="utf-8-sig").splitlines():
        if line.strip():
            rec = json.loads(line)
            out.append("\n".join(str(rec.get(k, "")) for k in ("instruction", "input", "output") if rec.get(k)))
    return out


def build_tokenizer(texts: list[str], out_dir: Path):
    """Train a byte-level BPE on ``texts`` and save it as a fast tokenizer with a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   bos_token=None, unk_token=None, model_max_length=1024)
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out_dir)
    return fast


def build_model(tokenizer, out_dir: Path, *, pretrain_steps: int = 300):
    """Create the tiny Llama from a fixed seed and pre-train it on plain text for a few steps."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(SEED)
    config = LlamaConfig(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id, bos_token_id=None, **MODEL_SHAPE)
    model = LlamaForCausalLM(config)
    if pretrain_steps:
        texts = _texts(demo_dataset_path())
        ids = [tokenizer(t + tokenizer.pad_token)["input_ids"] for t in texts]
        stream = torch.tensor([i for seq in ids for i in seq])
        block, batch = 64, 16
        n_blocks = len(stream) // block
        blocks = stream[: n_blocks * block].view(n_blocks, block)
        gen = torch.Generator().manual_seed(SEED)
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
        model.train()
        for _ in range(pretrain_steps):
            idx = torch.randint(0, n_blocks, (batch,), generator=gen)
            x = blocks[idx]
            loss = model(input_ids=x, labels=x).loss
            loss.backward()
            opt.step()
            opt.zero_grad()
    model.eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(out_dir, safe_serialization=True)
    return model


def build_demo(out_dir: Path | None = None, *, pretrain_steps: int = 300) -> Path:
    """Build the demo tokenizer and model into ``out_dir`` (default: resources/demo/model)."""
    out_dir = Path(out_dir or demo_model_dir())
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tok = build_tokenizer(_texts(demo_dataset_path()), tmp)
    build_model(tok, tmp, pretrain_steps=pretrain_steps)
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return out_dir


def ensure_demo_model() -> Path:
    """Build the demo model on first use if it is missing (it is normally committed)."""
    path = demo_model_dir()
    if not (path / "config.json").exists():
        build_demo(path)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m engine.demo", description=__doc__.split("\n")[0])
    p.add_argument("--rebuild", action="store_true", help="rebuild even if it exists")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    if args.rebuild or args.out:
        path = build_demo(args.out)
    else:
        path = ensure_demo_model()
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
