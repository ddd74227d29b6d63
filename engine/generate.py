"""Generation with one base model and many adapters: the worker process and its client.

The base loads once; adapters load next to it under names (PEFT ``load_adapter``) and
are switched with ``set_adapter``, which only flips which low-rank weights the forward
pass reads, so it takes milliseconds. The base's own answer runs inside
``disable_adapter()``. Prompts go through the tokenizer's chat template, or the Alpaca
prompt that training uses for tokenizers without one (``engine.data.tokenize``).

Three ways in:

- :class:`Generator`: the in-process core (the CLI and tests use it).
- ``python -m engine.generate --base M [--load_in auto|fp32|bf16|fp16|int8|nf4]
  [--device auto|cpu|cuda] [--trust_remote_code] [--allow_pickle]``: the worker process.
  It speaks the JSON-lines protocol of :mod:`engine.events`: events on stdout, commands
  on stdin. Like training, generation runs in a child process so the GUI never holds a
  model (../shared/notes/engineering.md).
- :class:`GenerationClient`: starts the worker, sends commands, iterates its events. The
  GUI's QThread wraps it.

Worker commands (one JSON object per line on stdin)::

    {"cmd": "load_adapter", "path": DIR, "name": NAME?}   -> LOADED (or ERROR), READY
    {"cmd": "unload", "name": NAME}                       -> LOADED (or ERROR), READY
    {"cmd": "generate", "request": ID, "prompt": TEXT, "system": TEXT?,
     "adapters": [BASE or NAME, ...], "settings": {max_new_tokens, temperature,
     top_p, repetition_penalty, seed}}                   -> per adapter: TOKEN..., GENERATED
                                                             (or ERROR with "adapter"); READY
    {"cmd": "stop"}     ends the current generate request after the current token
    {"cmd": "quit"}     -> FINISHED, exit 0 (closing stdin does the same)

Events: ``loaded`` {base, base_path, adapters: {name: path}, adapter?, load_s, device,
dtype, load_in, base_loads, base_id}, ``token`` {request, adapter, text}, ``generated``
{request, adapter, text, tokens, prompt_tokens, time_s, tokens_per_s, switch_s, stopped},
``error`` (a StudioError's dict, plus request/adapter/cmd), ``ready`` {cmd, request}.
``base_loads`` counts how often the base weights were read (it stays 1) and ``base_id``
is the base model object's id, so a client can check that switching never reloads.

CLI: ``finetune-studio generate`` -> :func:`cli_generate` (arguments in its docstring).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import IO, Any

from engine.data.templates import Rendering, cut_at_stops, saved_rendering
from engine.data.templates import resolve as resolve_template
from engine.data.templates import stops as template_stops
from engine.errors import ConfigError, ModelError, OutOfMemory, StudioError
from engine.events import ERROR, FINISHED, GENERATED, LOADED, LOG, READY, TOKEN, Event, EventWriter

# The base model's column name. Adapter names are sanitised to [A-Za-z0-9_-], so it can't clash.
BASE = "(base)"
LOAD_CHOICES = ("auto", "fp32", "bf16", "fp16", "int8", "nf4")
DEVICE_CHOICES = ("auto", "cpu", "cuda")


# ---------------------------------------------------------------------------- Settings
@dataclass
class GenerationSettings:
    """The usual sampling knobs. ``temperature`` 0 means greedy decoding (``do_sample=False``).

    Attributes:
        max_new_tokens: Tokens to generate at most (1..32768).
        temperature: Softmax temperature; 0 = greedy (0..5).
        top_p: Nucleus sampling mass (0 < top_p <= 1); ignored when greedy.
        repetition_penalty: >1 discourages repeats (CTRL paper, arXiv 1909.05858); 1 = off.
        seed: Seeds sampling before each answer, so every column gets the same random
            stream (None: not reseeded).
    """

    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    seed: int | None = 0

    BOUNDS = {"max_new_tokens": (1, 32768), "temperature": (0.0, 5.0), "top_p": (0.0, 1.0),
              "repetition_penalty": (0.5, 5.0)}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> GenerationSettings:
        """Build and validate settings from plain values.

        Raises:
            ConfigError: an unknown key, a wrong type or a value out of range (key named).
        """
        data = dict(data or {})
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown generation setting '{unknown[0]}'; allowed: {', '.join(sorted(names))}",
                              key=unknown[0])
        values: dict[str, Any] = {}
        for key, raw in data.items():
            if key == "seed" and raw is None:
                values[key] = None
                continue
            kind = int if key in ("max_new_tokens", "seed") else float
            try:
                if isinstance(raw, bool) or (kind is int and isinstance(raw, float) and not raw.is_integer()):
                    raise ValueError
                values[key] = kind(raw)
            except (TypeError, ValueError):
                raise ConfigError(f"generation setting '{key}' must be {'an integer' if kind is int else 'a number'}"
                                  f"; got {raw!r}", key=key) from None
        settings = cls(**values)
        settings.validate()
        return settings

    @classmethod
    def allowed(cls, key: str) -> str:
        """The range ``key`` takes, as the messages write it: ``[0.0, 5.0]``, ``(0, 1.0]``."""
        lo, hi = cls.BOUNDS[key]
        return f"(0, {hi}]" if key == "top_p" else f"[{lo}, {hi}]"

    @classmethod
    def in_range(cls, key: str, value: float) -> bool:
        """Whether ``value`` is in :meth:`allowed` for ``key`` (NaN is not)."""
        lo, hi = cls.BOUNDS[key]
        return lo <= value <= hi and not (key == "top_p" and value == 0)

    def validate(self) -> None:
        for key in self.BOUNDS:
            v = getattr(self, key)
            if not self.in_range(key, v):
                raise ConfigError(f"generation setting '{key}' must be in {self.allowed(key)}; got {v}", key=key)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "BOUNDS"}

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass
class GenerationResult:
    """One answer: its text and how fast it came."""

    adapter: str
    text: str
    tokens: int
    prompt_tokens: int
    time_s: float
    tokens_per_s: float
    switch_s: float
    stopped: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------- Loading
def check_adapter(folder: Path, base_path: Path, *, allow_pickle: bool = False) -> Any:
    """What can be checked of an adapter from its files before it loads: it is a PEFT adapter,
    its weights are safe to read, and it was not trained on another base.

    Cheap (no torch), so the CLI checks every adapter before it spends seconds loading the base.

    Returns:
        The adapter's :class:`engine.adapters.AdapterCard`.

    Raises:
        ModelError: not loadable (bottleneck, no weights...), pickle weights without
            ``allow_pickle``, or a base of another shape recorded.
    """
    from engine.adapters import read_card, require_base_match
    from engine.models import check_weights_safe

    card = read_card(folder)
    if not card.loadable:
        raise ModelError(f"adapter '{card.name}' can't be loaded: {card.problem}")
    check_weights_safe(folder, allow_pickle)
    require_base_match(folder, base_path)
    return card


def type_groups(cards: list[Any]) -> list[list[int]]:
    """Indexes of ``cards`` grouped by PEFT type, in the order each type first appears.

    PEFT holds adapters of one type on a base at a time, so mixed types take turns.
    """
    groups: dict[str, list[int]] = {}
    for i, card in enumerate(cards):
        groups.setdefault(str(card.peft_type), []).append(i)
    return list(groups.values())


def _precision_config(base: str, load_in: str, device: str, trust_remote_code: bool, allow_pickle: bool):
    """A RunConfig carrying just the loading choices, so generation loads exactly like training."""
    from engine.config import RunConfig
    from engine.precision import check_environment, detect_environment

    env = detect_environment()
    if load_in == "auto":
        on_gpu = env.cuda and device != "cpu"
        load_in = ("bf16" if env.bf16_supported else "fp16") if on_gpu else "fp32"
    if load_in not in LOAD_CHOICES:
        raise ConfigError(f"load_in must be one of {', '.join(LOAD_CHOICES)}; got {load_in!r}", key="load_in")
    if device not in DEVICE_CHOICES:
        raise ConfigError(f"device must be one of {', '.join(DEVICE_CHOICES)}; got {device!r}", key="device")
    # mixed_precision only picks the compute dtype of quantized layers here; fp16 AMP is
    # refused on the CPU by the training rules, so plain fp16 weights say "no".
    if load_in in ("int8", "nf4"):
        mixed = "bf16" if env.bf16_supported else "fp16"
    elif load_in == "bf16":
        mixed = "bf16"
    else:
        mixed = "no"
    cfg = RunConfig.from_dict({"model": base, "load_in": load_in, "mixed_precision": mixed, "device": device,
                               "method": "lora", "trust_remote_code": trust_remote_code,
                               "allow_pickle": allow_pickle})
    check_environment(cfg, env)
    return cfg, env


class Generator:
    """One base model with named adapters, generating one answer at a time.

    Args:
        base: ``demo``, a model folder or a cached hub id (never downloaded).
        load_in: ``auto`` (bf16/fp16 on a GPU, fp32 on the CPU), ``fp32``, ``bf16``,
            ``fp16``, or ``int8``/``nf4`` (bitsandbytes; CUDA only).
        device: ``auto``, ``cpu`` or ``cuda``.
        trust_remote_code: Run the model's own code (off unless asked).
        allow_pickle: Allow pickle weights for the base and adapters.

    Raises:
        ModelError: the model can't be found or loaded safely.
        ConfigErrors: the precision can't work on this machine (e.g. nf4 without CUDA).
    """

    def __init__(self, base: str, *, load_in: str = "auto", device: str = "auto",
                 trust_remote_code: bool = False, allow_pickle: bool = False):
        from engine.models import resolve_model_path

        self.base_ref = base
        self.base_path = resolve_model_path(base)
        self.trust_remote_code = trust_remote_code
        self.allow_pickle = allow_pickle
        self.cfg, self.env = _precision_config(base, load_in, device, trust_remote_code, allow_pickle)
        self.load_in = self.cfg.load_in
        self.base_loads = 0
        self.adapters: dict[str, Path] = {}
        self.renderings: dict[str, Any] = {}  # adapter name -> the Rendering its run saved, if any
        self.tokenizers: dict[str, Any] = {}  # adapter name -> its run's tokenizer, when the run added tokens
        self.peft_type: str | None = None
        self.peft = None  # the PeftModel wrapping self.model once an adapter is loaded
        self.active: str | None = None
        t0 = time.perf_counter()
        self.model = self._load_base()
        self.tokenizer = self._load_tokenizer()
        self.base_rows = self._rows()  # embedding rows as loaded; adapters with added tokens grow them
        self.load_s = time.perf_counter() - t0

    # ---- Public API
    def describe(self) -> dict[str, Any]:
        """Plain values about the loaded state, for the LOADED event."""
        param = next(self.model.parameters())
        return {"base": self.base_ref, "base_path": str(self.base_path),
                "adapters": {n: str(p) for n, p in self.adapters.items()}, "load_s": round(self.load_s, 3),
                "device": str(param.device), "dtype": str(param.dtype).replace("torch.", ""),
                "load_in": self.load_in,
                "base_loads": self.base_loads, "base_id": id(self.model),
                "chat_template": bool(getattr(self.tokenizer, "chat_template", None))}

    def load_adapter(self, path: str | Path, name: str | None = None) -> str:
        """Load an adapter next to the others, checking that it fits the base first.

        Args:
            path: The adapter folder (or any reference :func:`engine.adapters.resolve_adapter` takes).
            name: Its name for :meth:`generate`; default: the run or folder name.

        Returns:
            The name it was loaded under. Loading a folder that is already loaded returns
            its existing name.

        Raises:
            ModelError: not a PEFT adapter, trained on a different base, a different
                adapter type than those loaded, or pickle weights without consent.
        """
        from peft import PeftModel

        from engine.adapters import adapter_name, check_adapter_fits, resolve_adapter

        folder = resolve_adapter(path)
        for n, p in self.adapters.items():
            if p == folder:
                return n
        card = check_adapter(folder, self.base_path, allow_pickle=self.allow_pickle)
        problems = check_adapter_fits(folder, self.peft or self.model)
        if problems:
            raise ModelError(f"adapter '{card.name}' doesn't fit the base '{self.base_ref}': "
                             + "; ".join(problems[:4]) + (f" (and {len(problems) - 4} more)" if len(problems) > 4
                                                          else ""),
                             hint="It was trained on a model of another size or architecture; load that base.")
        if self.peft_type is not None and card.peft_type != self.peft_type:
            raise ModelError(f"adapter '{card.name}' is {card.peft_type} but the loaded adapters "
                             f"({', '.join(self.adapters)}) are {self.peft_type}; PEFT holds one adapter type "
                             "on a base at a time", hint="Unload those first (the unload command).")
        if name is not None:
            # PEFT keeps adapters in nn.ModuleDicts, whose keys can't contain dots. Run names
            # (20261128-125652-lora) start with a digit; a ModuleDict key may.
            if name in self.adapters or name == BASE:
                raise ConfigError(f"adapter name {name!r} is already loaded", key="name")
            if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
                raise ConfigError(f"adapter name {name!r} may hold only letters, digits, '_' and '-'",
                                  key="name", hint="adapter_name() makes a safe one from a folder.")
        else:
            name = adapter_name(card, set(self.adapters))
        tokenizer = self._grow_for(folder, card.name)
        if self.peft is None:
            from engine.methods.prompt import fix_generation

            # Prefix/prompt adapters need PEFT's generation path fixed, as after training.
            self.peft = fix_generation(PeftModel.from_pretrained(self.model, str(folder), adapter_name=name))
            self.peft.eval()
        else:
            self.peft.load_adapter(str(folder), adapter_name=name)
        self.adapters[name] = folder
        if tokenizer is not None:
            self.tokenizers[name] = tokenizer
        rendering = saved_rendering(folder)
        if rendering is not None:
            self.renderings[name] = rendering
        self.peft_type = card.peft_type
        self._switch(name)
        return name

    def unload(self, name: str) -> None:
        """Remove one adapter; the base stays loaded.

        Raises:
            ModelError: no adapter of that name is loaded.
        """
        if name not in self.adapters:
            raise ModelError(f"no adapter named {name!r} is loaded; loaded: {', '.join(self.adapters) or 'none'}")
        assert self.peft is not None
        if len(self.adapters) == 1:
            # Take the adapter layers out of the base in place, so the same base object is reused.
            inner = self.peft.base_model
            if hasattr(inner, "unload"):
                inner.unload()
            self.peft = None
            self.peft_type = None
            self.active = None
        else:
            import warnings

            with warnings.catch_warnings():
                # PEFT warns that it moved the active adapter; we track it ourselves.
                warnings.simplefilter("ignore", UserWarning)
                self.peft.delete_adapter(name)
            self.active = self.peft.active_adapter
        del self.adapters[name]
        self.renderings.pop(name, None)
        self.tokenizers.pop(name, None)

    def prompt_ids(self, prompt: str, system: str | None = None, *, messages: list[dict[str, str]] | None = None,
                   template: str | Rendering = "auto", adapter: str = BASE) -> list[int]:
        """Token ids of the prompt with the generation prompt appended (chat template or Alpaca).

        ``messages`` (a whole conversation so far) replaces ``prompt`` and ``system``; ``adapter``
        picks the tokenizer (an adapter whose run added tokens has its own).
        """
        # The same rendering as training (engine.data.tokenize), so adapters see the format they learnt.
        from engine.data.tokenize import render_prompt

        if messages is None:
            messages = (([{"role": "system", "content": system}] if system else [])
                        + [{"role": "user", "content": prompt}])
        return render_prompt(self.tokenizer_for(adapter), messages, template)

    def generate(self, prompt: str, adapter: str = BASE, settings: GenerationSettings | None = None, *,
                 system: str | None = None, on_text: Callable[[str], None] | None = None,
                 should_stop: Callable[[], bool] | None = None, messages: list[dict[str, str]] | None = None,
                 template: str = "auto") -> GenerationResult:
        """Answer ``prompt`` with the base (``BASE``) or a loaded adapter.

        Args:
            prompt: The user message.
            adapter: ``BASE`` or the name of a loaded adapter.
            settings: Sampling settings (default: greedy, 128 tokens).
            system: An optional system message.
            on_text: Called with each streamed piece of text.
            should_stop: Polled after every token; True ends the answer early.
            messages: The conversation to answer (a record's turns before its answer), instead
                of ``prompt`` and ``system``.
            template: as the run config's ``template``; ``auto`` answers as an adapter's run
                trained (the template saved with it), else with the tokenizer's chat template.

        Raises:
            ModelError: unknown adapter name.
            OutOfMemory: the GPU ran out of memory.
        """
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextStreamer

        settings = settings or GenerationSettings()
        t_switch = time.perf_counter()
        if adapter != BASE:
            if adapter not in self.adapters:
                raise ModelError(f"no adapter named {adapter!r} is loaded; loaded: "
                                 f"{', '.join(self.adapters) or 'none'}")
            self._switch(adapter)
        switch_s = time.perf_counter() - t_switch

        rendering = self.rendering(adapter, template)
        tokenizer = self.tokenizer_for(adapter)
        ids = self.prompt_ids(prompt, system, messages=messages, template=rendering, adapter=adapter)
        device = next(self.model.parameters()).device
        input_ids = torch.tensor([ids], device=device)
        stopped = {"flag": False}

        class _Stop(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                hit = bool(should_stop and should_stop())
                stopped["flag"] = stopped["flag"] or hit
                return torch.full((input_ids.shape[0],), hit, dtype=torch.bool, device=input_ids.device)

        class _Stream(TextStreamer):
            def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
                if text and on_text is not None:
                    on_text(text)

        kwargs: dict[str, Any] = {
            "max_new_tokens": settings.max_new_tokens, "do_sample": not settings.greedy,
            "repetition_penalty": settings.repetition_penalty,
            "pad_token_id": tokenizer.pad_token_id, "stopping_criteria": StoppingCriteriaList([_Stop()]),
            "streamer": _Stream(tokenizer, skip_prompt=True, skip_special_tokens=True),
            **self._suppress(tokenizer),
        }
        if not settings.greedy:
            kwargs.update(temperature=settings.temperature, top_p=settings.top_p, top_k=0)
            if settings.seed is not None:
                torch.manual_seed(settings.seed)
        else:
            # The model's generation_config may carry sampling defaults; greedy must not warn about them.
            kwargs.update(temperature=None, top_p=None, top_k=None)
        eos, stop_strings = self._stops(rendering, tokenizer)
        if eos:
            kwargs["eos_token_id"] = eos
        if stop_strings:
            kwargs.update(stop_strings=stop_strings, tokenizer=tokenizer)
        model = self.peft if (self.peft is not None) else self.model
        t0 = time.perf_counter()
        try:
            with torch.inference_mode():
                if adapter == BASE and self.peft is not None:
                    with self.peft.disable_adapter():
                        out = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                                             **kwargs)
                else:
                    out = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), **kwargs)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            raise OutOfMemory(f"the GPU ran out of memory generating {settings.max_new_tokens} tokens "
                              f"with '{adapter}'", hint="Lower max_new_tokens, or load the base in nf4.") from None
        elapsed = time.perf_counter() - t0
        new = out[0, len(ids):].tolist()
        text = cut_at_stops(tokenizer.decode(new, skip_special_tokens=True), stop_strings)
        return GenerationResult(adapter=adapter, text=text, tokens=len(new), prompt_tokens=len(ids),
                                time_s=elapsed, tokens_per_s=len(new) / elapsed if elapsed > 0 else 0.0,
                                switch_s=switch_s, stopped=stopped["flag"])

    def generate_greedy_batch(self, conversations: list[list[dict[str, str]]], adapter: str = BASE, *,
                              max_new_tokens: int = 128, template: str = "auto", batch_size: int = 8,
                              on_done: Callable[[int], None] | None = None) -> tuple[list[str], int]:
        """Greedy answers to many conversations, several at a time (left-padded batches).

        What :meth:`generate` answers one by one, for evaluation: no streaming, no sampling.
        Conversations are batched by length, so little padding is computed; the answers come
        back in the order given. An out-of-memory error halves the batch and retries it.

        Args:
            conversations: each a record's turns before its answer.
            adapter: ``BASE`` or a loaded adapter's name.
            on_done: called with the number of answers finished so far.

        Returns:
            (the answers' texts, the batch size that fitted)

        Raises:
            ModelError: unknown adapter name.
            OutOfMemory: even one conversation at a time doesn't fit.
        """
        import torch

        rendering = self.rendering(adapter, template)
        tokenizer = self.tokenizer_for(adapter)
        prompts = [self.prompt_ids("", messages=c, template=rendering, adapter=adapter) for c in conversations]
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        texts: list[str] = [""] * len(prompts)
        pad = tokenizer.pad_token_id
        if pad is None:
            pad = (self._eos_ids(tokenizer) or [0])[0]
        stop_ids, stop_strings = self._stops(rendering, tokenizer)
        eos = set(stop_ids)
        kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens, "do_sample": False, "pad_token_id": pad,
                                  "temperature": None, "top_p": None, "top_k": None, **self._suppress(tokenizer)}
        if eos:
            kwargs["eos_token_id"] = sorted(eos)
        if stop_strings:
            kwargs.update(stop_strings=stop_strings, tokenizer=tokenizer)
        device = next(self.model.parameters()).device
        size, done, start = max(1, batch_size), 0, 0
        with self.answering_as(adapter) as model, torch.inference_mode():
            while start < len(order):
                chunk = order[start:start + size]
                width = max(len(prompts[i]) for i in chunk)
                ids = torch.full((len(chunk), width), pad, dtype=torch.long, device=device)
                mask = torch.zeros((len(chunk), width), dtype=torch.long, device=device)
                for row, i in enumerate(chunk):  # left padding: every prompt ends where generation starts
                    ids[row, width - len(prompts[i]):] = torch.tensor(prompts[i], device=device)
                    mask[row, width - len(prompts[i]):] = 1
                try:
                    out = model.generate(input_ids=ids, attention_mask=mask, **kwargs)
                except torch.cuda.OutOfMemoryError:
                    torch.cuda.empty_cache()
                    if size == 1:
                        raise OutOfMemory(f"the GPU ran out of memory answering with '{adapter}'",
                                          hint="Lower max_new_tokens, or load the base in nf4.") from None
                    size = max(1, size // 2)
                    continue
                for row, i in enumerate(chunk):
                    new = out[row, width:].tolist()
                    cut = next((k for k, t in enumerate(new) if t in eos), len(new))
                    texts[i] = cut_at_stops(tokenizer.decode(new[:cut], skip_special_tokens=True), stop_strings)
                start += len(chunk)
                done += len(chunk)
                if on_done is not None:
                    on_done(done)
        return texts, size

    @contextlib.contextmanager
    def answering_as(self, adapter: str = BASE) -> Iterator[Any]:
        """The model that answers as ``adapter`` (``BASE``: every adapter switched off), for
        scoring with a forward pass; the same objects :meth:`generate` uses, nothing reloaded.

        Raises:
            ModelError: unknown adapter name.
        """
        if adapter == BASE:
            if self.peft is None:
                yield self.model
            else:
                with self.peft.disable_adapter():
                    yield self.peft
            return
        if adapter not in self.adapters:
            raise ModelError(f"no adapter named {adapter!r} is loaded; loaded: {', '.join(self.adapters) or 'none'}")
        self._switch(adapter)
        yield self.peft

    # ---- Internals
    def _switch(self, name: str) -> None:
        if self.active != name:
            assert self.peft is not None
            self.peft.set_adapter(name)
            self.active = name

    def rendering(self, adapter: str, template: str | Rendering = "auto") -> Rendering:
        """How prompts for ``adapter`` are rendered: ``auto`` means as its run trained, if it saved a template."""
        if template == "auto" and adapter in self.renderings:
            return self.renderings[adapter]
        return resolve_template(self.tokenizer_for(adapter), template)

    def tokenizer_for(self, adapter: str = BASE) -> Any:
        """The tokenizer that answers as ``adapter``: its run's, when the run added tokens, else the base's."""
        return self.tokenizers.get(adapter, self.tokenizer)

    def _stops(self, rendering: Rendering, tokenizer: Any) -> tuple[list[int], list[str]]:
        """Token ids and strings that end an answer: the EOS, and the template's end of turn."""
        ids, strings = template_stops(tokenizer, rendering)
        eos = self._eos_ids(tokenizer)
        return eos + [i for i in ids if i not in eos], strings

    def _eos_ids(self, tokenizer: Any) -> list[int]:
        ids: list[int] = []
        gen_eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        for v in (tokenizer.eos_token_id, gen_eos):
            for i in (v if isinstance(v, list) else [v]):
                if i is not None and i not in ids:
                    ids.append(int(i))
        return ids

    def _rows(self) -> int:
        return int(self.model.get_input_embeddings().weight.shape[0])

    def _suppress(self, tokenizer: Any) -> dict[str, Any]:
        """Keep an answer from using rows an adapter's added tokens grew the base by, when answering
        with a tokenizer that doesn't have them (the base, or an adapter without those tokens)."""
        extra = [i for i in range(max(self.base_rows, len(tokenizer)), self._rows())]
        return {"suppress_tokens": extra} if extra else {}

    def _grow_for(self, folder: Path, label: str) -> Any:
        """Before loading the adapter in ``folder``: grow the base's embeddings to the tokens its run
        added, and return that run's tokenizer (None when it added none).

        Raises:
            ModelError: its tokenizer can't be read, or the base would have to grow under an adapter
                already loaded that trains embedding rows itself.
        """
        from engine.adapters import load_saved_tokenizer
        from engine.methods.peft_adapter import grow_vocab, token_rows

        need = token_rows(json.loads((folder / "adapter_config.json").read_text(encoding="utf-8")))
        if not need:
            return None
        if not (folder / "tokenizer_config.json").exists():
            raise ModelError(f"adapter '{label}' trains added tokens, but its folder has no tokenizer to read "
                             "them with", hint="Load the run's final/ folder, which holds its tokenizer.")
        tokenizer = load_saved_tokenizer(folder, self.trust_remote_code)
        if need > self._rows() and self.tokenizers:
            raise ModelError(f"adapter '{label}' adds more tokens than the base holds under the adapters with "
                             f"added tokens already loaded ({', '.join(self.tokenizers)})",
                             hint="Load the adapter that adds the most tokens first, or unload those.")
        grow_vocab(self.peft.get_base_model() if self.peft is not None else self.model, need)
        return tokenizer

    def _load_base(self):
        from transformers import AutoModelForCausalLM

        from engine.models import check_weights_safe
        from engine.precision import from_pretrained_kwargs

        check_weights_safe(self.base_path, self.allow_pickle)
        kwargs = from_pretrained_kwargs(self.cfg, self.env)
        try:
            model = AutoModelForCausalLM.from_pretrained(self.base_path, **kwargs)
        except ValueError as e:
            if "trust_remote_code" in str(e):
                raise ModelError(f"the model in '{self.base_path}' needs its own code to run",
                                 fix={"trust_remote_code": True},
                                 hint="Only enable trust_remote_code if you trust the model's author.") from None
            raise ModelError(f"can't load the model in '{self.base_path}': {e}") from None
        except OSError as e:
            raise ModelError(f"can't load the model in '{self.base_path}': {e}") from None
        model.eval()
        self.base_loads += 1
        return model

    def _load_tokenizer(self):
        from engine.models import load_tokenizer

        return load_tokenizer(str(self.base_path), trust_remote_code=self.trust_remote_code)


# ---------------------------------------------------------------------------- Worker process
def _read_commands(stream: IO[str], commands: queue.Queue, stop: threading.Event) -> None:
    """Reader thread: a ``stop`` acts at once (mid-generation); the rest queue in order."""
    for line in stream:
        line = line.strip()
        if not line:
            continue
        try:
            cmd = json.loads(line)
            if not isinstance(cmd, dict):
                raise ValueError("not an object")
        except ValueError as e:
            commands.put({"cmd": "_bad", "line": line, "why": str(e)})
            continue
        if cmd.get("cmd") == "stop":
            stop.set()
        commands.put(cmd)
    commands.put({"cmd": "quit"})


def _run_generate(gen: Generator, cmd: dict[str, Any], w: EventWriter, stop: threading.Event) -> None:
    request = cmd.get("request")
    prompt = cmd.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ConfigError("generate needs a non-empty 'prompt'", key="prompt")
    settings = GenerationSettings.from_dict(cmd.get("settings"))
    targets = cmd.get("adapters") or [BASE]
    for adapter in targets:
        if stop.is_set():
            break
        try:
            result = gen.generate(prompt, adapter, settings, system=cmd.get("system"),
                                  on_text=lambda s, a=adapter: w.emit(TOKEN, request=request, adapter=a, text=s),
                                  should_stop=stop.is_set)
        except StudioError as e:
            w.emit(ERROR, **e.to_dict(), request=request, adapter=adapter, cmd="generate")
            if isinstance(e, OutOfMemory):
                break
            continue
        w.emit(GENERATED, request=request, **result.to_dict())


def worker_main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m engine.generate`` (arguments in the module docstring)."""
    p = argparse.ArgumentParser(prog="python -m engine.generate",
                                description="Generation worker: JSON-line events on stdout, commands on stdin.")
    p.add_argument("--base", required=True)
    p.add_argument("--load_in", default="auto", choices=LOAD_CHOICES)
    p.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    p.add_argument("--trust_remote_code", action="store_true")
    p.add_argument("--allow_pickle", action="store_true")
    args = p.parse_args(argv)

    # Events own the real stdout; anything a library prints goes to stderr instead.
    w = EventWriter(sys.stdout)
    sys.stdout = sys.stderr
    from engine.adapters import quiet_loading

    quiet_loading()
    try:
        gen = Generator(args.base, load_in=args.load_in, device=args.device,
                        trust_remote_code=args.trust_remote_code, allow_pickle=args.allow_pickle)
    except StudioError as e:
        w.emit(ERROR, **e.to_dict(), cmd="start", fatal=True)
        w.emit(FINISHED, status="failed")
        return 2
    w.emit(LOADED, **gen.describe())
    w.emit(READY, cmd="start", request=None)

    commands: queue.Queue = queue.Queue()
    stop = threading.Event()
    threading.Thread(target=_read_commands, args=(sys.stdin, commands, stop), daemon=True).start()
    while True:
        cmd = commands.get()
        kind = cmd.get("cmd")
        if kind == "quit":
            break
        if kind == "stop":
            continue  # acted on by the reader already; nothing was running, or it has ended
        request = cmd.get("request")
        try:
            if kind == "load_adapter":
                t0 = time.perf_counter()
                name = gen.load_adapter(cmd.get("path", ""), cmd.get("name"))
                w.emit(LOADED, **{**gen.describe(), "adapter": name, "load_s": round(time.perf_counter() - t0, 4)})
            elif kind == "unload":
                gen.unload(str(cmd.get("name")))
                w.emit(LOADED, **gen.describe())
            elif kind == "generate":
                stop.clear()
                _run_generate(gen, cmd, w, stop)
            elif kind == "_bad":
                raise ConfigError(f"command line is not a JSON object ({cmd['why']}): {cmd['line'][:200]}",
                                  key="cmd")
            else:
                raise ConfigError(f"unknown command {kind!r}; allowed: load_adapter, unload, generate, stop, quit",
                                  key="cmd")
        except StudioError as e:
            w.emit(ERROR, **e.to_dict(), request=request, cmd=kind, path=cmd.get("path"))
        except Exception as e:  # noqa: BLE001 - the worker must survive one bad command
            traceback.print_exc()
            w.emit(ERROR, kind="internal", message=f"{type(e).__name__}: {e}", fix={}, hint=None,
                   request=request, cmd=kind, path=cmd.get("path"))
        w.emit(READY, cmd=kind, request=request)
    w.emit(FINISHED, status="completed")
    return 0


# ---------------------------------------------------------------------------- Client
class GenerationClient:
    """Starts the generation worker and talks to it; plain Python, no Qt.

    Events arrive on a background thread and queue up; iterate :meth:`events` (or call
    :meth:`next_event`) from one consumer. Commands may be sent from any thread, even
    before the worker has finished loading (they wait in its stdin).

    Args:
        base: The base model for the worker (``demo``, folder or cached id).
        load_in: See :class:`Generator`.
        device: ``auto``, ``cpu`` or ``cuda``.
        trust_remote_code: Passed to the worker.
        allow_pickle: Passed to the worker.
        python: The interpreter to run (default: this one).
    """

    def __init__(self, base: str, *, load_in: str = "auto", device: str = "auto",
                 trust_remote_code: bool = False, allow_pickle: bool = False, python: str | None = None):
        self.base = base
        self.args = ["--base", base, "--load_in", load_in, "--device", device]
        if trust_remote_code:
            self.args.append("--trust_remote_code")
        if allow_pickle:
            self.args.append("--allow_pickle")
        self.python = python or sys.executable
        self.proc: subprocess.Popen | None = None
        self.stderr_tail: deque[str] = deque(maxlen=60)
        self._events: queue.Queue[Event | None] = queue.Queue()
        self._lock = threading.Lock()
        self._next_request = 0
        self._saw_error = False
        self._done = False

    # ---- Public API
    def start(self) -> None:
        """Start the worker process (returns at once; the LOADED event says when the base is in)."""
        root = str(Path(__file__).resolve().parent.parent)
        env = dict(os.environ)
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env.update(PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                   TOKENIZERS_PARALLELISM="false")
        self.proc = subprocess.Popen([self.python, "-m", "engine.generate", *self.args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8",
                                     errors="replace", bufsize=1, env=env)
        threading.Thread(target=self._pump_stdout, daemon=True).start()
        threading.Thread(target=self._pump_stderr, daemon=True).start()

    def send(self, cmd: str, **fields_: Any) -> None:
        """Send one command line; ignored (with no error) once the worker has gone."""
        if self.proc is None or self.proc.stdin is None:
            raise RuntimeError("GenerationClient.start() was not called")
        line = json.dumps({"cmd": cmd, **fields_}, ensure_ascii=False) + "\n"
        with self._lock:
            try:
                self.proc.stdin.write(line)
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError, ValueError):
                pass

    def load_adapter(self, path: str | Path, name: str | None = None) -> None:
        self.send("load_adapter", path=str(path), **({"name": name} if name else {}))

    def unload(self, name: str) -> None:
        self.send("unload", name=name)

    def generate(self, prompt: str, adapters: list[str], settings: GenerationSettings | dict | None = None,
                 system: str | None = None, request: str | None = None) -> str:
        """Ask for one answer per adapter (``BASE`` for the base); returns the request id."""
        if request is None:
            self._next_request += 1
            request = f"r{self._next_request}"
        if isinstance(settings, GenerationSettings):
            settings = settings.to_dict()
        self.send("generate", request=request, prompt=prompt, system=system, adapters=list(adapters),
                  settings=settings or {})
        return request

    def stop(self) -> None:
        """End the current generate request after the current token."""
        self.send("stop")

    def close(self, timeout: float = 10.0) -> int | None:
        """Ask the worker to quit; kill it if it doesn't within ``timeout``. Returns its exit code."""
        if self.proc is None:
            return None
        self.send("quit")
        try:
            if self.proc.stdin:
                self.proc.stdin.close()
        except OSError:
            pass
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def next_event(self, timeout: float | None = None) -> Event | None:
        """The next event, or None when the worker has exited and every event was read.

        Raises:
            TimeoutError: nothing arrived within ``timeout`` seconds.
        """
        if self._done:
            return None
        try:
            ev = self._events.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no event from the generation worker in {timeout} s") from None
        if ev is None:
            self._done = True
        return ev

    def events(self, timeout: float | None = None) -> Iterator[Event]:
        """Iterate events until the worker exits (``timeout`` applies to each wait)."""
        while True:
            ev = self.next_event(timeout)
            if ev is None:
                return
            yield ev

    def wait_ready(self, timeout: float | None = 120.0) -> list[Event]:
        """Collect events up to and including the next READY (or the worker's exit)."""
        out = []
        for ev in self.events(timeout):
            out.append(ev)
            if ev.type == READY:
                break
        return out

    # ---- Internals
    def _pump_stdout(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            ev = Event.from_line(line)
            if ev.type == ERROR:
                self._saw_error = True
            self._events.put(ev)
        code = self.proc.wait()
        if code != 0 and not self._saw_error:
            # A crash in native code (CUDA, bitsandbytes) leaves no ERROR event: report it with stderr.
            tail = "\n".join(list(self.stderr_tail)[-15:])
            self._events.put(Event(ERROR, {"kind": "crash", "message": f"the generation worker exited with code "
                                           f"{code}", "fix": {}, "hint": tail or None, "fatal": True}, time.time()))
        self._events.put(Event(FINISHED, {"status": "exited", "returncode": code}, time.time()))
        self._events.put(None)

    def _pump_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            line = line.rstrip("\r\n")
            if line:
                self.stderr_tail.append(line)
                self._events.put(Event(LOG, {"text": line, "stream": "stderr"}, time.time()))


# ---------------------------------------------------------------------------- CLI
def base_from_run(base: str) -> tuple[str, Path | None, str | None]:
    """What ``generate --base`` loads when it names a run (its folder, or its name) rather than a model.

    A run that saved a whole model (full, freeze) stands for that model, ``final/``. A run
    that saved an adapter stands for its base model with that adapter, as
    ``--base MODEL --adapter RUN`` would: the base's answer and the adapter's, side by side.

    Args:
        base: what the user gave as ``--base``.

    Returns:
        ``(model, adapter, note)``: the model to load, the run's adapter folder (or None) and
        a line telling the user what was resolved (None when ``base`` is not a run).

    Raises:
        ModelError: the run has no final/ yet, or an adapter the playground can't load; or
            ``base`` is nothing: no folder, no run of that name and no hub id (the closest
            run names and cached models are suggested).
    """
    from engine.runs import find_run, run_model

    if base == "demo" or (Path(base).expanduser() / "config.json").exists():
        return base, None, None
    run_dir = find_run(base)
    if run_dir is None:
        if not Path(base).expanduser().exists() and not _hub_id_like(base):
            raise unknown_base_error(base)
        return base, None, None  # a model folder, or a hub id: resolve_model_path decides
    run = run_model(run_dir)
    if run.adapter is None:
        return run.base, None, f"{base} is a {run.method} run: generating with the model it trained, {run.base}"
    return run.base, run.adapter, (f"{base} is a {run.method} run: generating with its base model {run.base} and "
                                   f"its adapter {run.adapter} (as --base {run.base} --adapter {base})")


def _hub_id_like(ref: str) -> bool:
    """``org/name``, as :func:`engine.models.resolve_model_path` looks it up in the hub cache."""
    return "/" in ref and not ref.startswith((".", "/", "~"))


def unknown_base_error(base: str) -> ModelError:
    """The error for a ``--base`` that names nothing. ``--base`` takes a run too, so "model 'x': no
    such folder" sent the user looking for a model folder when a run name was mistyped.

    Args:
        base: what the user gave as ``--base``.

    Returns:
        A ModelError whose hint names the closest run names and cached models, else what
        ``--base`` takes.
    """
    import difflib

    from engine.models import cached_models
    from engine.runs import list_runs

    runs = [r.name for r in list_runs()]
    # A run is named by its folder or by its run_name, the folder's name past its timestamp.
    names = dict.fromkeys([*runs, *(re.sub(r"^\d{8}-\d{6}-", "", n) for n in runs)])
    models = ["demo", *cached_models()]
    close = difflib.get_close_matches(base, [*names, *models], n=3, cutoff=0.5)
    takes = ("a model (a folder with config.json, a Hugging Face id from your cache, or 'demo') or a run (its "
             "folder, or a name from `finetune-studio runs list`)")
    said = " or ".join(f"'{c}' (a {'model' if c in models else 'run'})" for c in close)
    return ModelError(f"--base '{base}': no model folder, run folder or run of that name",
                      hint=(f"Did you mean {said}? " if said else "") + f"Give {takes}.")


def no_base_error(given: str, base: str, *, whole_model_run: bool) -> ConfigError:
    """The refusal of ``--no-base`` with no adapter to answer, said before anything is printed or
    loaded. A full or freeze run given as ``--base`` was announced as "generating with the model it
    trained" and then refused as "leaves nothing": its model *is* the base here, so say that.

    Args:
        given: what the user gave as ``--base``.
        base: the model that stands for it (:func:`base_from_run`).
        whole_model_run: ``given`` is a run that saved a whole model (no adapter).
    """
    if whole_model_run:
        from engine.runs import find_run, run_model

        run_dir = find_run(given)
        method = run_model(run_dir).method if run_dir is not None else "full"
        return ConfigError(
            f"--no-base leaves nothing to generate: {given} is a {method} run, which trained the whole model "
            f"({base}), so that model is the base here and there is no adapter to answer without it. Drop "
            "--no-base to generate with the model it trained, or add --adapter for adapters trained on it.",
            key="no_base")
    return ConfigError("--no-base leaves nothing to generate: give at least one --adapter", key="no_base")


def cli_generate(args: argparse.Namespace) -> int:
    """``finetune-studio generate``: print one block per answer, base first.

    Every adapter is checked from its files (it exists, is a PEFT adapter, has safe weights
    and was trained on this base) before the base loads. An adapter given twice answers
    once. Adapters of different PEFT types (LoRA and IA3, say) take turns on the one base:
    each type's adapters are loaded, answer, and are unloaded before the next type's load.

    Args:
        args: ``base`` (str; a model, or a run folder or name: see :func:`base_from_run`),
            ``adapter`` (list[str]; folders, run names or library
            names), ``prompt`` (str, not empty), optional ``system`` (str), ``max_new_tokens`` (int),
            ``temperature`` (float, 0 = greedy), ``top_p`` (float), ``repetition_penalty``
            (float), ``seed`` (int), ``load_in`` (auto|fp32|bf16|fp16|int8|nf4; default auto:
            bf16 or fp16 on a GPU, fp32 on the CPU), ``no_base``
            (bool: skip the base's answer), optional ``device`` (auto|cpu|cuda),
            ``trust_remote_code`` and ``allow_pickle`` (bool).

    Returns:
        0. Errors are raised as StudioError (the CLI prints them and exits 2).
    """
    from engine.adapters import quiet_loading, resolve_adapter
    from engine.models import resolve_model_path

    quiet_loading()
    if not str(getattr(args, "prompt", "") or "").strip():
        raise ConfigError("--prompt is empty: give the message to answer, e.g. --prompt \"Give me advice.\"",
                          key="prompt")
    settings = GenerationSettings.from_dict({
        "max_new_tokens": getattr(args, "max_new_tokens", 128), "temperature": getattr(args, "temperature", 0.0),
        "top_p": getattr(args, "top_p", 1.0), "repetition_penalty": getattr(args, "repetition_penalty", 1.0),
        "seed": getattr(args, "seed", 0)})
    base, run_adapter, note = base_from_run(args.base)
    if getattr(args, "no_base", False) and run_adapter is None and not getattr(args, "adapter", None):
        raise no_base_error(args.base, base, whole_model_run=note is not None)
    refs: list[tuple[str, Path]] = [(str(run_adapter), run_adapter)] if run_adapter is not None else []
    refs += [(str(a), resolve_adapter(a)) for a in (getattr(args, "adapter", None) or [])]
    if note:
        print(f"note: {note}", file=sys.stderr)
    folders: list[Path] = []
    for ref, folder in refs:
        if folder.resolve() in {f.resolve() for f in folders}:
            if folder != run_adapter:
                print(f"note: {ref} is {folder}, given already: it answers once", file=sys.stderr)
            continue
        folders.append(folder)
    allow_pickle = getattr(args, "allow_pickle", False)
    base_path = resolve_model_path(base)
    cards = [check_adapter(f, base_path, allow_pickle=allow_pickle) for f in folders]  # before the slow load
    groups = type_groups(cards)
    if len(groups) > 1:
        kinds = "; ".join(f"{cards[g[0]].peft_type}: " + ", ".join(cards[i].name for i in g) for g in groups)
        print(f"note: PEFT holds one adapter type on a base at a time, so the types take turns ({kinds})",
              file=sys.stderr)
    gen = Generator(base, load_in=getattr(args, "load_in", "auto") or "auto",
                    device=getattr(args, "device", "auto") or "auto",
                    trust_remote_code=getattr(args, "trust_remote_code", False), allow_pickle=allow_pickle)
    print(f"loaded {base} ({gen.describe()['dtype']} on {gen.describe()['device']}) in {gen.load_s:.1f} s",
          file=sys.stderr)
    blocks = 0

    def answer(target: str) -> None:
        nonlocal blocks
        title = f"base: {base}" if target == BASE else f"adapter: {target} ({gen.adapters[target]})"
        print(("\n" if blocks else "") + f"=== {title} ===", flush=True)
        blocks += 1
        result = gen.generate(args.prompt, target, settings, system=getattr(args, "system", None),
                              on_text=lambda s: print(s, end="", flush=True))
        print()
        print(f"--- {result.tokens} tokens in {result.time_s:.2f} s, {result.tokens_per_s:.1f} tokens/s", flush=True)

    if not getattr(args, "no_base", False):
        answer(BASE)
    for group in groups:
        for name in list(gen.adapters):  # the previous type's adapters
            gen.unload(name)
        for name in [gen.load_adapter(folders[i]) for i in group]:
            answer(name)
    return 0


if __name__ == "__main__":
    sys.exit(worker_main())
