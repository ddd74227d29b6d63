"""Answers to a few records while a run trains: watch what the model learns, not only its loss.

At each evaluation (or each checkpoint when there is no eval data) and when training ends,
the model being trained answers ``sample_answers`` records greedily, with the prompt training
used, and the answers go out as a ``samples`` event and into the run's ``samples.jsonl`` next to
the records' reference answers. Held-out records are used when there are any, else the first
training records (the event says which).

Generation never stops a run: an error (out of memory included) turns the samples off for the
rest of the run with a warning.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from engine.data.templates import Rendering, cut_at_stops, stops
from engine.data.tokenize import render_prompt
from engine.runs import SAMPLES_FILE

PROMPT_CHARS = 400  # a sample's prompt text is cut to this in the event (the record has it whole)


@dataclass
class SamplePrompt:
    """One record to answer: where it is, what is asked, the answer it has, the prompt's tokens."""

    line: int | None
    prompt: str
    reference: str
    ids: list[int]


def pick(records: list[Any], tokenizer: Any, rendering: Rendering, count: int) -> list[SamplePrompt]:
    """Prompts for the first ``count`` of ``records`` that have an answer.

    The prompt is the conversation up to its last answer, rendered as training renders it; the
    reference is that answer.
    """
    picked: list[SamplePrompt] = []
    for record in records:
        if len(picked) >= count:
            break
        try:
            messages = record.messages()
        except Exception:  # noqa: BLE001 - a record that can't become messages is simply not sampled
            continue
        answers = [k for k, m in enumerate(messages) if m.get("role") == "assistant"]
        if not answers or answers[-1] == 0:
            continue
        last = answers[-1]
        asked = next((m["content"] for m in reversed(messages[:last]) if m.get("role") != "system"), "")
        picked.append(SamplePrompt(line=getattr(record, "line", None), prompt=str(asked)[:PROMPT_CHARS],
                                   reference=str(messages[last].get("content", "")),
                                   ids=render_prompt(tokenizer, messages[:last], rendering)))
    return picked


class Sampler:
    """Answers the picked prompts with the model as it is now; one call per evaluation."""

    def __init__(self, prompts: list[SamplePrompt], source: str, tokenizer: Any, rendering: Rendering,
                 max_new_tokens: int, output_dir: Path | None):
        self.prompts, self.source, self.tokenizer = prompts, source, tokenizer
        self.max_new_tokens = max_new_tokens
        self.stop_ids, self.stop_strings = stops(tokenizer, rendering)
        eos = tokenizer.eos_token_id
        if eos is not None and eos not in self.stop_ids:
            self.stop_ids = [eos, *self.stop_ids]
        self.output_dir = output_dir
        self.last_step: int | None = None
        self.off = not prompts

    def answer(self, model: Any, step: int, autocast: Any = None) -> dict[str, Any]:
        """The samples event's data for ``step``: each prompt's greedy answer, with timing."""
        import contextlib

        import torch

        was_training = model.training
        model.eval()
        device = next(p for p in model.parameters()).device
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else (self.stop_ids or [0])[0]
        kwargs: dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "do_sample": False, "pad_token_id": pad,
                                  "temperature": None, "top_p": None, "top_k": None, "use_cache": True}
        if self.stop_ids:
            kwargs["eos_token_id"] = self.stop_ids
        if self.stop_strings:
            kwargs.update(stop_strings=self.stop_strings, tokenizer=self.tokenizer)
        out = []
        t0 = time.perf_counter()
        try:
            with torch.no_grad(), (autocast or contextlib.nullcontext()):
                for p in self.prompts:
                    ids = torch.tensor([p.ids], device=device)
                    new = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **kwargs)[0, len(p.ids):]
                    text = cut_at_stops(self.tokenizer.decode(new.tolist(), skip_special_tokens=True),
                                        self.stop_strings)
                    out.append({**{k: v for k, v in asdict(p).items() if k != "ids"},
                                "answer": text.strip(), "tokens": int(new.numel())})
        finally:
            model.train(was_training)
        self.last_step = step
        return {"step": step, "source": self.source, "samples": out, "time_s": round(time.perf_counter() - t0, 3)}

    def record(self, data: dict[str, Any]) -> None:
        """Append one event's data to the run's samples.jsonl (flushed, like metrics.jsonl)."""
        if self.output_dir is None:
            return
        with open(self.output_dir / SAMPLES_FILE, "a", encoding="utf-8") as f:
            f.write(json.dumps({**data, "time": time.time()}, ensure_ascii=False) + "\n")
