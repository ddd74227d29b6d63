"""The event schema shared by the worker processes and their clients.

A worker writes one JSON object per line on stdout, each with ``event`` (one of
:data:`EVENT_TYPES`) and ``time`` (Unix seconds). It reads commands, one JSON object per
line on stdin, each with ``cmd`` (one of :data:`COMMANDS`). Only plain values cross the
process boundary: numbers, strings, lists and dicts. Anything else a library prints to
stdout is wrapped by the client as a ``log`` event, so the stream never breaks.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from typing import IO, Any

# Training worker events.
STARTED = "started"          # config, total_params, trainable_params, device, gpu, world_size, dataset stats,
                             # resumed, resume_step (a resumed run redoes the steps after it: drop them from plots)
STEP = "step"                # step, max_steps, epoch, loss, lr, grad_norm, tokens_per_s, tokens_seen, samples_per_s,
                             # gpu_mem_* (CUDA only), eta_s
EVAL = "eval"                # step, eval_loss
SAMPLES = "samples"          # step, source (eval|train), samples [{line, prompt, reference, answer, tokens}], time_s
CHECKPOINT = "checkpoint"    # step, path
WARNING = "warning"          # kind, message, fix, hint
ERROR = "error"              # kind, message, fix, hint (a typed StudioError.to_dict()); config errors add
                             # errors (each with key); oom adds step, levers; nonfinite adds step, batch
RECOVERED = "recovered"      # kind (oom|nonfinite), step, message, before, changes, resume_from, resume_step
                             # (steps after it are redone); nonfinite adds loss, grad_norm, batch, advice
FINISHED = "finished"        # status (completed|stopped|failed; crashed = made up by the client when the
                             # worker died without one), output_dir, step, final_loss, best_eval_loss, peak_*
LOG = "log"                  # text: a line a library printed
# Generation worker events.
LOADED = "loaded"            # base, adapters, load_s
TOKEN = "token"              # request, adapter, text (a streamed piece)
GENERATED = "generated"      # request, adapter, text, tokens, tokens_per_s
READY = "ready"              # the worker finished a command and waits for the next

EVENT_TYPES = (STARTED, STEP, EVAL, SAMPLES, CHECKPOINT, WARNING, ERROR, RECOVERED, FINISHED, LOG,
               LOADED, TOKEN, GENERATED, READY)
COMMANDS = ("stop", "save", "generate", "load_adapter", "unload", "quit")


@dataclass
class Event:
    """One event from a worker: ``type`` plus its fields as a plain dict."""

    type: str
    data: dict[str, Any] = field(default_factory=dict)
    time: float = 0.0

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def to_json(self) -> str:
        return json.dumps({"event": self.type, "time": self.time, **self.data}, ensure_ascii=False,
                          default=_plain)

    @classmethod
    def from_line(cls, line: str) -> Event:
        """Parse one stdout line; non-JSON lines become ``log`` events instead of errors."""
        line = line.rstrip("\r\n")
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            return cls(LOG, {"text": line}, time.time())
        if not isinstance(obj, dict) or "event" not in obj:
            return cls(LOG, {"text": line}, time.time())
        kind = obj.pop("event")
        t = obj.pop("time", time.time())
        return cls(kind, obj, t)


def _plain(value: Any) -> Any:
    """Turn numpy/torch scalars and paths into JSON values."""
    if hasattr(value, "item"):
        return value.item()
    return str(value)


class EventWriter:
    """Writes events as JSON lines to a stream (the worker's real stdout), flushing each."""

    def __init__(self, stream: IO[str] | None = None, mirror: IO[str] | None = None):
        self.stream = stream or sys.stdout
        self.mirror = mirror  # e.g. output_dir/events.jsonl, so a re-attached GUI can replay

    def emit(self, kind: str, /, **data: Any) -> Event:
        # Positional-only: error events carry their own "kind" field (StudioError.to_dict()).
        ev = Event(kind, data, time.time())
        line = ev.to_json() + "\n"
        for s in (self.stream, self.mirror):
            if s is None:
                continue
            try:
                s.write(line)
                s.flush()
            except (BrokenPipeError, ValueError, OSError):
                # The client went away (GUI closed): keep training, the run folder still records it.
                if s is self.stream:
                    self.stream = None  # type: ignore[assignment]
        return ev
