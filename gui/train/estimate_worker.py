"""A child process that answers memory-estimate requests, so the GUI never imports torch.

The estimate builds a meta-device model with torch and transformers. Importing torch
loads hundreds of megabytes of shared libraries while holding the GIL; measured in the
GUI process it froze the window for 0.7 s (docs/ui-stall.md). Here it happens in a
child: the GUI sends one JSON line per request on stdin and reads one JSON line back.

Request: ``{"config": {...RunConfig.to_dict()...}, "gpu_bytes": int|null, "gpu_name": str|null}``
(and ``"gpu_others_bytes"``, ``"gpu_others"``: what other programs hold on that GPU now),
optionally with ``"data": {...DataLengths.to_dict()...}`` (the answer to ``data_lengths`` below):
the estimate then also holds the one at the data's longest record (``Estimate.data``).
Answer: ``{"ok": true, "estimate": Estimate.to_dict()}`` or ``{"ok": false, "error": "..."}``, with
``"problem": ConfigError.to_dict()`` when the config can't work with this model and the error names
its key (``freeze_trainable_layers`` above the model's layer count, a target module it doesn't have):
the run would stop there too, after loading the model.

Request ``{"call": "data_lengths", "config": {...}}``: the run's training records tokenized as the
run will (``engine.data.lengths.data_lengths``: seconds to minutes on a large dataset, the first
time; the tokenize cache and the engine's memo make repeats fast). Answer: ``{"ok": true, "result":
DataLengths.to_dict()}``, or ``{"ok": false, "error": "..."}`` (no dataset, a model folder without
a tokenizer, no record that can train). The Train area asks this of a second process of its own
(:class:`gui.train.estimator.DataLengthsScheduler`), so a long measurement never holds up an
estimate.

Request ``{"call": "format_tokens", "config": {...}}``: the pre-run check of the format's special
tokens (``engine.train.check_format_tokens``, which loads the tokenizer: torch again). Answer:
``{"ok": true, "result": the warning or null}``. The last tokenizer loaded is kept (keyed by its
folder, the folder's mtime, ``trust_remote_code`` and ``add_tokens``), so trying formats one after
another on the same model loads it once.

No Qt here: ``python -m gui.train.estimate_worker`` only needs the engine.
"""

from __future__ import annotations

import json
import os
import sys


def serve(stdin=None, stdout=None) -> int:
    stdin = stdin or sys.stdin
    out = stdout or os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8", buffering=1)
    if stdout is None:
        os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # library prints must not corrupt the answers
    from engine.config import RunConfig
    from engine.errors import ConfigError, StudioError

    kept: dict[tuple, object] = {}  # the last tokenizer loaded (_kept)

    for line in stdin:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            cfg = RunConfig.from_dict(req["config"])
            if req.get("call") == "format_tokens":
                from engine.train import check_format_tokens

                answer = {"ok": True, "result": check_format_tokens(cfg, load=lambda *a, **k: _kept(kept, *a, **k))}
            elif req.get("call") == "data_lengths":
                from engine.data.lengths import data_lengths

                answer = {"ok": True, "result": data_lengths(cfg).to_dict()}
            else:
                from engine.data.lengths import DataLengths
                from engine.memory import estimate

                data = DataLengths(**req["data"]) if req.get("data") else None
                est = estimate(cfg, gpu_bytes=req.get("gpu_bytes"), gpu_name=req.get("gpu_name"), data=data,
                               gpu_others_bytes=req.get("gpu_others_bytes"), gpu_others=req.get("gpu_others"))
                answer = {"ok": True, "estimate": est.to_dict()}
        except StudioError as e:
            answer = {"ok": False, "error": e.message}
            if isinstance(e, ConfigError) and e.key:  # what the run would stop at, said at its field first
                answer["problem"] = e.to_dict()
        except Exception as e:  # noqa: BLE001 - one bad request must not end the service
            answer = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        out.write(json.dumps(answer) + "\n")
        out.flush()
    return 0


def _kept(kept: dict, path: str, **kwargs):
    """``engine.models.load_tokenizer``, but the last one loaded is reused while its folder is
    unchanged (same mtime) and asked for with the same options."""
    from pathlib import Path

    from engine.models import load_tokenizer

    key = (path, Path(path).stat().st_mtime_ns, kwargs.get("trust_remote_code"), tuple(kwargs.get("add_tokens", ())))
    if key not in kept:
        kept.clear()
        kept[key] = load_tokenizer(path, **kwargs)
    return kept[key]


if __name__ == "__main__":
    sys.exit(serve())
