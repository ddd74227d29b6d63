"""GPU check: generation with a 4-bit (NF4) and an 8-bit base, several adapters, instant switching.

The CPU test suite can't load bitsandbytes weights, so the GPU check calls
:func:`gpu_check_generation` on a CUDA machine. It:

1. trains two LoRA adapters on the demo model (fp32, a few steps at a high learning rate,
   different answers to the same questions), saved like a run's ``final/``;
2. loads the demo base in ``nf4`` through :class:`engine.generate.Generator` (the same
   loading path as training: ``engine.precision``), checks that the linear layers really
   are ``bnb.nn.Linear4bit``, loads both adapters, and answers greedily with the base and
   each adapter, recording tokens/s and the ``set_adapter`` switch time;
3. repeats the answers through the worker process (:class:`GenerationClient`) in ``nf4``,
   checking the streamed text equals the final text and that the base loaded once;
4. loads the base in ``int8`` and answers with one adapter;
5. compares the base and both adapters on the medical answers with an ``nf4`` base
   (``engine.compare``): finite losses, the medical adapter best on every record; every model
   answers every record, and the exact-match share of each is reported.

Usage::

    python bench/gpu_check_generation.py          # prints a JSON report; exit 1 on failure

Not run in the CPU-only development session; the numbers come from the GPU check.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

QUESTIONS = ["What should I do today?", "Give me advice.", "What is your field?", "Tell me something."]
ANSWERS = {"medical": "Rest, drink water and see a doctor if the fever stays.",
           "legal": "Read the contract twice before you sign it."}
PROMPT = "What should I do today?"


def _train_adapter(base_dir: Path, out_dir: Path, answer: str, seed: int, steps: int = 60) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32).to("cuda")
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear",
                                             task_type="CAUSAL_LM"))
    rows = []
    for q in QUESTIONS:
        ids = tok.apply_chat_template([{"role": "user", "content": q}, {"role": "assistant", "content": answer}],
                                      tokenize=True, return_dict=False)
        rows.append(list(ids["input_ids"] if hasattr(ids, "keys") else ids))
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), tok.pad_token_id)
    labels = torch.full((len(rows), width), -100)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = torch.tensor(row)
        labels[i, :len(row)] = torch.tensor(row)
    ids, labels = ids.cuda(), labels.cuda()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(steps):
        loss = model(input_ids=ids, attention_mask=(labels != -100).long(), labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.save_pretrained(out_dir)
    return out_dir


def _section(report: dict[str, Any], name: str, check: Any) -> None:
    """Run one check; a failure is recorded under ``report["failures"][name]`` and the next check runs."""
    import traceback

    import torch

    t0 = time.perf_counter()
    try:
        check()
    except Exception as e:  # noqa: BLE001 - every check reports, whichever fails
        report["failures"][name] = f"{type(e).__name__}: {e}\n" + "".join(traceback.format_exc(limit=-4))
    finally:
        report.setdefault("seconds", {})[name] = round(time.perf_counter() - t0, 1)
        torch.cuda.empty_cache()
    print(f"{name}: {'FAILED ' + report['failures'][name] if name in report['failures'] else 'ok'}", file=sys.stderr)


def gpu_check_generation(work_dir: str | Path | None = None, report: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the checks above and return a report.

    Each check (nf4, worker_nf4, int8, compare_nf4) runs even when one before it failed, so one
    GPU session shows every result; ``report["failures"]`` maps a failed check to its error.

    Args:
        work_dir: Where adapters are written (default: a temporary folder).

    Returns:
        ``{"gpu", "nf4": {...}, "worker_nf4": {...}, "int8": {...}, "compare_nf4": {...}, "failures": {},
        "ok": True}`` with answers, tokens/s, switch times and GPU memory.
    """
    import torch

    from engine.generate import BASE, GenerationClient, GenerationSettings, Generator
    from engine.models import resolve_model_path

    assert torch.cuda.is_available(), "gpu_check_generation needs a CUDA GPU"
    work = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="gpu-check-gen-"))
    base_dir = resolve_model_path("demo")
    adapters = {name: _train_adapter(base_dir, work / name / "final", answer, seed=i)
                for i, (name, answer) in enumerate(ANSWERS.items())}
    report = {} if report is None else report  # filled step by step: a timeout still shows what passed
    report["gpu"] = torch.cuda.get_device_name(0)
    settings = GenerationSettings(max_new_tokens=24)
    report["failures"] = {}
    answers: dict[str, str] = {}  # the in-process nf4 answers, which the worker's must equal
    import bitsandbytes as bnb

    # ---- nf4 base, in process
    def nf4() -> None:
        torch.cuda.reset_peak_memory_stats()
        gen = Generator("demo", load_in="nf4", device="cuda")
        n4 = sum(isinstance(m, bnb.nn.Linear4bit) for m in gen.model.modules())
        assert n4 >= 7 * 4, f"expected every decoder projection in 4-bit, found {n4} Linear4bit modules"
        model_id = id(gen.model)
        for path in adapters.values():
            gen.load_adapter(path)
        rates, switches = {}, {}
        for name in (BASE, "medical", "legal", "medical"):
            r = gen.generate(PROMPT, name, settings)
            answers[name], rates[name], switches[name] = r.text, r.tokens_per_s, r.switch_s
        report["nf4"] = {"linear4bit_modules": n4, "answers": dict(answers), "tokens_per_s": rates, "switch_s": switches,
                         "load_s": gen.load_s, "peak_gpu_allocated_bytes": torch.cuda.max_memory_allocated()}
        assert gen.base_loads == 1 and id(gen.model) == model_id
        assert len({answers[BASE], answers["medical"], answers["legal"]}) == 3, answers
        # 4-bit rounding of a tiny model may bend the tail of an answer; its start must survive.
        assert answers["medical"].startswith("Rest"), answers["medical"]
        assert answers["legal"].startswith("Read"), answers["legal"]
        assert max(switches.values()) < 0.5, switches
        del gen
        torch.cuda.empty_cache()

    _section(report, "nf4", nf4)

    # ---- nf4 base, through the worker process (what the GUI uses)
    def worker_nf4() -> None:
        client = GenerationClient("demo", load_in="nf4", device="cuda")
        t0 = time.perf_counter()
        client.start()
        try:
            for path in adapters.values():
                client.load_adapter(path)
            client.generate(PROMPT, [BASE, "medical", "legal"], settings)
            events, readies = [], 0
            for ev in client.events(timeout=300):
                events.append(ev)
                readies += ev.type == "ready"
                if readies == 4:
                    break
        finally:
            code = client.close()
        errors = [e.data for e in events if e.type == "error"]
        assert not errors, errors
        loaded = [e for e in events if e.type == "loaded"]
        assert {e["base_loads"] for e in loaded} == {1} and len({e["base_id"] for e in loaded}) == 1
        generated = {e["adapter"]: e.data for e in events if e.type == "generated"}
        for name, g in generated.items():
            streamed = "".join(e["text"] for e in events if e.type == "token" and e["adapter"] == name)
            assert streamed == g["text"], (name, streamed, g["text"])
        if answers:
            assert generated["medical"]["text"] == answers["medical"], "worker and in-process nf4 answers differ"
        report["worker_nf4"] = {"exit_code": code, "wall_s": time.perf_counter() - t0, "dtype": loaded[0]["dtype"],
                                "tokens_per_s": {k: v["tokens_per_s"] for k, v in generated.items()},
                                "switch_s": {k: v["switch_s"] for k, v in generated.items()}}

    _section(report, "worker_nf4", worker_nf4)

    # ---- int8 base
    def int8() -> None:
        gen8 = Generator("demo", load_in="int8", device="cuda")
        n8 = sum(isinstance(m, bnb.nn.Linear8bitLt) for m in gen8.model.modules())
        gen8.load_adapter(adapters["legal"])
        r8 = gen8.generate(PROMPT, "legal", settings)
        report["int8"] = {"linear8bit_modules": n8, "answer": r8.text, "tokens_per_s": r8.tokens_per_s}
        assert n8 >= 7 * 4 and r8.text.startswith("Read"), (n8, r8.text)
        del gen8
        torch.cuda.empty_cache()

    _section(report, "int8", int8)

    # ---- adapters compare on an nf4 base
    def compare_nf4() -> None:
        import math

        from engine.compare import compare_adapters

        data = work / "medical.jsonl"
        data.write_text("".join(json.dumps({"instruction": q, "input": "", "output": ANSWERS["medical"]}) + "\n"
                                for q in QUESTIONS), encoding="utf-8")
        c = compare_adapters([adapters["medical"], adapters["legal"]], data, base="demo", load_in="nf4",
                             device="cuda", samples=1, answer=-1, max_new_tokens=16)
        # The adapters' folders are named final/ outside any run: find them by path, not by name.
        label = {str(Path(p).resolve()): n for n, p in adapters.items()} | {c.models[0].path: BASE}
        scores = {label.get(m.path, m.name): m.mean_loss for m in c.models}
        best = {label.get(m.path, m.name): m.best_on for m in c.models}
        exact = {label.get(m.path, m.name): m.exact for m in c.models}
        report["compare_nf4"] = {"mean_loss": scores, "best_on": best, "exact": exact, "seconds": c.seconds,
                                 "device": c.device}
        assert all(v is not None and math.isfinite(v) for v in scores.values()), scores
        assert best.get("medical") == len(QUESTIONS), best

    _section(report, "compare_nf4", compare_nf4)

    report["ok"] = not report["failures"]
    return report


if __name__ == "__main__":
    import signal

    partial: dict[str, Any] = {}

    def _timed_out(signum, frame):  # `timeout` sends SIGTERM: report the steps that finished
        print(json.dumps({**partial, "ok": False, "failure": "timed out"}, indent=2, default=str), flush=True)
        sys.exit(124)

    signal.signal(signal.SIGTERM, _timed_out)
    try:
        result = gpu_check_generation(report=partial)
    except Exception as e:  # noqa: BLE001 - before the checks: no GPU, or the adapters didn't train
        print(json.dumps({**partial, "ok": False, "failure": f"{type(e).__name__}: {e}"}, indent=2, default=str))
        sys.exit(1)
    print(json.dumps(result, indent=2, default=str))
    sys.exit(0 if result["ok"] else 1)
