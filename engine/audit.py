"""Which records does a trained model find hardest? A per-record loss audit of a run.

After training, most records are fitted well; the few whose answers the model still finds
unlikely are, more often than not, annotation problems: a wrong or inconsistent answer, an
answer in another format than its siblings, a truncated record. Ranking the records by their
answer loss under the trained model is a cheap, well-known way to find them (it is how
"data cartography" and confident-learning audits start), and it points annotators at the
records worth a second look, by the record numbers the Dataset editor and `data check` use.

Each record is scored exactly as training saw it: the run's template, ``seq_len`` truncation
and answer-only labels, with the run's own train/eval split. The loss is the mean negative
log-likelihood of its answer tokens (what Trainer's loss averages over a batch).

``finetune-studio runs audit RUN`` prints the hardest records and writes ``record_losses.json``
into the run folder; the Runs area shows the same list and opens a record in the editor.
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import ModelError, OutOfMemory, StudioError
from engine.files import atomic_write_text

AUDIT_FILE = "record_losses.json"
# A record whose loss is this many times the median stands out.
OUTLIER_FACTOR = 3.0


@dataclass
class RecordLoss:
    """One record's score. ``record`` is its number in the dataset file, from 1."""

    record: int
    line: int | None
    split: str  # "train" or "eval"
    loss: float
    tokens: int  # answer tokens scored
    truncated: bool
    instruction: str  # the first user turn, shortened
    base_loss: float | None = None  # the same record under the base model (compare_base)
    digest: str | None = None  # record_digest() of what was scored: finds it again, unedited

    @property
    def fell(self) -> float | None:
        """How much training lowered this record's loss (negative: it rose)."""
        return None if self.base_loss is None else self.base_loss - self.loss


@dataclass
class Audit:
    run_dir: str
    weights: str
    dataset: str
    dataset_changed: bool  # the file's usable records differ from what the run trained on
    device: str
    seconds: float
    records: list[RecordLoss] = field(default_factory=list)  # hardest first
    skipped: list[dict[str, Any]] = field(default_factory=list)  # records with nothing to score
    notes: list[str] = field(default_factory=list)
    audited_at: float | None = None  # time.time() when it was scored

    @property
    def median(self) -> float | None:
        return statistics.median(r.loss for r in self.records) if self.records else None

    def median_of(self, split: str) -> float | None:
        values = [r.loss for r in self.records if r.split == split]
        return statistics.median(values) if values else None

    def outliers(self, factor: float = OUTLIER_FACTOR) -> list[RecordLoss]:
        """Records whose loss is ``factor`` times the median of their split or more."""
        medians = {s: self.median_of(s) for s in ("train", "eval")}
        return [r for r in self.records if medians[r.split] and r.loss >= factor * medians[r.split]]

    @property
    def compared_with_base(self) -> bool:
        return any(r.base_loss is not None for r in self.records)

    def base_median(self) -> float | None:
        values = [r.base_loss for r in self.records if r.base_loss is not None]
        return statistics.median(values) if values else None

    def not_learned(self) -> list[RecordLoss]:
        """Training records whose loss did not fall at all (with ``compare_base``): the run
        learned nothing from them, often because they contradict similar records."""
        return [r for r in self.records if r.split == "train" and r.fell is not None and r.fell <= 0]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(median=self.median, median_train=self.median_of("train"), median_eval=self.median_of("eval"),
                   outliers=[r.record for r in self.outliers()], outlier_factor=OUTLIER_FACTOR,
                   base_median=self.base_median(), not_learned=[r.record for r in self.not_learned()])
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Audit:
        known = {k: data[k] for k in ("run_dir", "weights", "dataset", "dataset_changed", "device", "seconds",
                                      "skipped", "notes", "audited_at") if k in data}
        return cls(**known, records=[RecordLoss(**r) for r in data.get("records", [])])

    def save(self) -> Path:
        path = Path(self.run_dir) / AUDIT_FILE
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1, ensure_ascii=False))
        return path


def read_audit(run_dir: str | Path) -> Audit | None:
    """The audit saved in a run folder, or None."""
    path = Path(run_dir) / AUDIT_FILE
    try:
        audit = Audit.from_dict(json.loads(path.read_text(encoding="utf-8")))
        if audit.audited_at is None:  # saved before audits carried their time
            audit.audited_at = path.stat().st_mtime
    except (OSError, json.JSONDecodeError, TypeError, KeyError):
        return None
    return audit


def audit_weights(run_dir: str | Path) -> Path | None:
    """What an audit of the run scores with: ``final/``, else its newest checkpoint with
    weights, else None (nothing trained yet). Reads no weights."""
    from engine.runs import checkpoints, holds_weights

    run_dir = Path(run_dir)
    if holds_weights(run_dir / "final"):
        return run_dir / "final"
    return next((c for c in reversed(checkpoints(run_dir)) if holds_weights(c)), None)


def _weights(run_dir: Path) -> Path:
    found = audit_weights(run_dir)
    if found is not None:
        return found
    raise ModelError(f"run '{run_dir.name}' has no trained weights yet: no final/ and no checkpoint",
                     hint="Let it train to its first checkpoint (save_steps), or resume it.")


def first_user_turn(messages: list[dict[str, str]], width: int = 90) -> str:
    """A record's first user turn on one line, shortened: how an audit names the record."""
    text = next((m["content"] for m in messages if m.get("role") == "user"), "")
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[:width - 1] + "…"


def record_digest(messages: list[dict[str, str]]) -> str:
    """A short fingerprint of a record's rendered turns: the same record, unedited, has the same one."""
    text = json.dumps(messages, ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def still_the_audited_record(record: Any, instruction: str) -> bool:
    """Whether ``record`` (an engine Record, e.g. the editor's) is the one an audit scored as
    ``instruction``; False once the file changed under the audit's record numbers."""
    try:
        return first_user_turn(record.messages()) == instruction
    except Exception:  # noqa: BLE001 - a record broken since: not the audited one
        return False


@dataclass
class AuditFindings:
    """A saved audit's flagged records, found in a dataset as it is now.

    ``findings`` are lint findings (rules :data:`HARD_RULE` and :data:`NOT_LEARNED_RULE`) with
    the records' indices in the given list; ``lost`` counts flagged records that are no longer
    in it (edited or deleted since the audit)."""

    run_name: str
    audited_at: float | None
    findings: list[Any] = field(default_factory=list)
    lost: int = 0

    def summary(self) -> str:
        hard = sum(1 for f in self.findings if f.rule == HARD_RULE)
        stuck = len(self.findings) - hard
        parts = [f"{hard} record{'s' if hard != 1 else ''} the model still finds hard"]
        if stuck:
            parts.append(f"{stuck} it learned nothing from")
        text = f"Audit of run '{self.run_name}'"
        if self.audited_at:
            text += time.strftime(" (%Y-%m-%d %H:%M)", time.localtime(self.audited_at))
        text += ": " + " and ".join(parts)
        if self.lost:
            text += f"; {self.lost} more {'was' if self.lost == 1 else 'were'} edited or deleted since"
        return text + "."


HARD_RULE = "hard-for-model"
NOT_LEARNED_RULE = "not-learned"


def latest_audit_for(dataset: str | Path, root: str | Path | None = None) -> Audit | None:
    """The newest saved audit (``runs audit``) of a run that read ``dataset``, or None."""
    found = newest_audit_of(dataset, root)
    return read_audit(found[0]) if found else None


def newest_audit_of(dataset: str | Path, root: str | Path | None = None) -> tuple[Path, int] | None:
    """(run folder, its audit file's mtime in ns) of the newest audit of ``dataset``, or None.

    Cheap to call often (the editor asks each time it is shown): audits are tried newest first,
    and which file each audit scored is remembered until the audit is written again."""
    from engine.paths import runs_dir

    root = Path(root or runs_dir())
    target = Path(dataset).resolve()
    if not root.is_dir():
        return None
    found = []
    for run in root.iterdir():
        try:
            found.append(((run / AUDIT_FILE).stat().st_mtime_ns, run))
        except OSError:
            continue
    for stamp, run in sorted(found, key=lambda x: x[0], reverse=True):
        key = (str(run), stamp)
        if key not in _AUDITED_FILE:
            audit = read_audit(run)
            if audit is None:
                continue
            _AUDITED_FILE[key] = Path(audit.dataset).resolve()
        if _AUDITED_FILE[key] == target:
            return run, stamp
    return None


# (run folder, record_losses.json's mtime) -> the dataset file that audit scored.
_AUDITED_FILE: dict[tuple[str, int], Path] = {}


def audit_findings(audit: Audit, records: list[Any], factor: float = OUTLIER_FACTOR) -> AuditFindings:
    """Turn an audit's flagged records into lint findings on ``records`` (engine Records, the
    file as it is now, e.g. with the editor's edits).

    A flagged record is found at its audited number if it is still the record the audit
    scored, unedited (same :func:`record_digest`), else wherever exactly one record is that
    record (records were inserted or deleted above it). A record edited since is not reported:
    its score was for the old text. Audits saved before records had a digest match on the
    first user turn instead.
    """
    index: dict[str, list[int]] | None = None

    def same(rec: Any, r: RecordLoss) -> bool:
        if r.digest is None:  # saved before audits kept a fingerprint: the first user turn decides
            return still_the_audited_record(rec, r.instruction)
        try:
            return record_digest(rec.messages()) == r.digest
        except Exception:  # noqa: BLE001 - a record broken since: not the audited one
            return False

    def locate(r: RecordLoss) -> int | None:
        nonlocal index
        i = r.record - 1
        if 0 <= i < len(records) and same(records[i], r):
            return i
        if index is None:
            index = {}
            for k, rec in enumerate(records):
                try:
                    messages = rec.messages()
                except Exception:  # noqa: BLE001 - a broken record can't be the audited one
                    continue
                index.setdefault(record_digest(messages), []).append(k)
                index.setdefault(first_user_turn(messages), []).append(k)
        found = index.get(r.digest if r.digest is not None else r.instruction, [])
        return found[0] if len(found) == 1 else None

    medians = {s: audit.median_of(s) for s in ("train", "eval")}
    name = Path(audit.run_dir).name
    out = AuditFindings(run_name=name, audited_at=audit.audited_at)
    flagged = [(r, HARD_RULE) for r in audit.outliers(factor)]
    seen = {r.record for r, _ in flagged}
    flagged += [(r, NOT_LEARNED_RULE) for r in audit.not_learned() if r.record not in seen]
    for r, rule in flagged:
        i = locate(r)
        if i is None:
            out.lost += 1
            continue
        rec = records[i]
        key = _answer_key(rec)
        if rule == HARD_RULE:
            m = medians[r.split]
            message = (f"the trained model still finds this answer unlikely: loss {r.loss:.2f}, "
                       f"{ratio_text(r.loss / m)}x the {r.split} median ({m:.2f}) after run '{name}'. Check it for "
                       "a mistake, a contradiction with similar records or another format")
            if r.truncated:
                message += " (it was cut at seq_len)"
            out.findings.append(_finding(i, rec, rule, "warning", message, key))
        else:
            message = (f"training learned nothing from this record: its answer loss went from {r.base_loss:.2f} "
                       f"(base model) to {r.loss:.2f} in run '{name}'. It may contradict similar records")
            out.findings.append(_finding(i, rec, rule, "info", message, key))
    out.findings.sort(key=lambda f: f.index)
    return out


def _answer_key(record: Any) -> str | None:
    """The file's own name of the field that holds a record's answer (for the editor's column)."""
    from engine.data.records import CONVERSATION_KEY, RecordFormat

    schema = record.schema
    std = "output" if schema.format == RecordFormat.ALPACA else CONVERSATION_KEY.get(schema.format)
    if std is None:
        return None
    return next((k for k, v in schema.mapping.items() if v == std), std)


def _finding(index: int, record: Any, rule: str, severity: str, message: str, key: str | None) -> Any:
    from engine.data.lint import Finding

    return Finding(index, getattr(record, "line", None), rule, severity, message, key)


def audit_run(run_dir: str | Path, *, device: str = "auto", batch_size: int | None = None,
              checkpoint: str | Path | None = None, compare_base: bool = False,
              progress: Callable[[int, int], None] | None = None) -> Audit:
    """Score every usable record of a run's dataset with the run's trained weights.

    Args:
        run_dir: the run folder.
        device: ``auto`` (the GPU if there is one), ``cpu`` or ``cuda``. On a CPU a run trained
            in 8-bit, 4-bit or fp16 is scored in fp32, and the result says so.
        batch_size: records per forward pass (default: the run's micro-batch).
        checkpoint: score these weights (a step, ``checkpoint-N`` or its folder, of this run) instead of ``final/``.
        compare_base: also score each record with the base model (the adapter switched off,
            or the base loaded on its own for full, freeze and bottleneck runs): how much
            training lowered each record's loss. Twice the time.
        progress: called with (records scored, records in all).

    Raises:
        ModelError: the run has no weights yet, or they don't load.
        StudioError: the run's dataset is gone or has nothing to score.
    """
    import torch

    from engine import precision
    from engine.config import RunConfig
    from engine.data import hub
    from engine.data.formats import open_dataset
    from engine.data.split import content_hash, train_eval_split
    from engine.data.tokenize import describe_problems, tokenize_records
    from engine.methods import get_method
    from engine.models import load_tokenizer, resolve_model_path
    from engine.paths import demo_dataset_path, tokenized_cache_dir
    from engine.runs import checkpoint_folder, read_summary

    started = time.perf_counter()
    run_dir = Path(run_dir)
    if not (run_dir / "run.yaml").exists():
        raise StudioError(f"'{run_dir}' is not a run folder: no run.yaml")
    cfg = RunConfig.load(run_dir / "run.yaml")
    method = get_method(cfg.method)
    weights = checkpoint_folder(run_dir, checkpoint) if checkpoint else _weights(run_dir)
    if method.name == "adapter" and not (weights / "adapter_config.json").exists():
        # Loaded as a model, the adapters' weights inside would be dropped without a word.
        raise ModelError(f"'{weights}' is a checkpoint of a bottleneck-adapter run: it holds the whole model "
                         "with the adapters inside, which the audit can't score as the run's result",
                         hint="Audit the run's final/ (let it finish, or resume it to write final/).")
    notes: list[str] = []
    if weights.name != "final":
        notes.append(f"scored with {weights.name} (the run has no final/)" if not checkpoint
                     else f"scored with {weights.name}")

    data_path = demo_dataset_path() if cfg.dataset == "demo" else Path(cfg.dataset)
    if hub.parse_ref(cfg.dataset) is None and not data_path.is_file():
        raise StudioError(f"the run's dataset '{data_path}' is gone", hint="Put it back where the run read it, "
                          "or edit 'dataset' in the run's run.yaml.")
    ds = open_dataset(cfg.dataset, cfg.dataset_format)  # a file, or a dataset in the Hugging Face cache
    numbers = [i + 1 for i, r in enumerate(ds.records) if not r.broken]
    good = [r for r in ds.records if not r.broken]
    trained_hash = read_summary(run_dir).get("dataset_hash")
    changed = bool(trained_hash) and trained_hash != content_hash(good)
    if changed:
        notes.append("the dataset changed since this run trained: the scores are for the file as it is now, "
                     "and the train/eval split may differ from the run's")

    env = precision.detect_environment()
    on = "cuda" if device == "cuda" or (device == "auto" and env.cuda) else "cpu"
    changes: dict[str, Any] = {"device": on, "gradient_checkpointing": False}
    if on == "cpu" and (cfg.load_in in ("int8", "nf4", "fp16") or cfg.mixed_precision == "fp16"):
        notes.append(f"trained with load_in {cfg.load_in}, scored in fp32 on the CPU")
        changes.update(load_in="fp32", mixed_precision="no")
    cfg = cfg.replace(**changes)

    tokenizer = load_tokenizer(str(resolve_model_path(cfg.model)), trust_remote_code=cfg.trust_remote_code,
                               add_tokens=cfg.add_tokens)
    rows, stats = tokenize_records(good, tokenizer, cfg.template, cfg.seq_len, cfg.loss_on,
                                   cache_dir=tokenized_cache_dir())
    if not rows:
        raise StudioError(f"nothing to score in {data_path}: every record was dropped",
                          hint=describe_problems(stats.problems))
    train_idx, eval_idx = train_eval_split(rows, cfg.eval_split, cfg.seed)
    split_of = {i: "train" for i in train_idx} | {i: "eval" for i in eval_idx}

    # A run with add_tokens scores on its tokenizer's ids: the base's embeddings grow to them.
    grown = len(tokenizer) if cfg.add_tokens else None
    if not (weights / "adapter_config.json").exists():  # a whole model: full, freeze (bottleneck refused above)
        model = precision.load_model(cfg, weights, env)
    else:
        base = precision.load_model(cfg, resolve_model_path(cfg.model), env, vocab_size=grown)
        model = method.load(base, weights, cfg)
    model.eval()
    dev = next(model.parameters()).device
    autocast = precision.compute_dtype(cfg) if cfg.mixed_precision in ("fp16", "bf16") else None

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    size = max(1, batch_size or cfg.batch_size)
    passes = 2 if compare_base else 1
    tick = (lambda done, total: progress(done, total * passes)) if progress is not None else None
    losses, size = score_rows(model, rows, size, pad, dev, autocast, tick)
    base_losses: dict[int, tuple[float, int]] = {}
    if compare_base:
        after = (lambda done, total: progress(total + done, total * passes)) if progress is not None else None
        if hasattr(model, "disable_adapter"):  # a PEFT model: the base is underneath, no second load
            with model.disable_adapter():
                base_losses, size = score_rows(model, rows, size, pad, dev, autocast, after)
        else:  # full, freeze, bottleneck: load the base on its own
            del model
            if on == "cuda":
                torch.cuda.empty_cache()
            model = precision.load_model(cfg, resolve_model_path(cfg.model), env, vocab_size=grown)
            model.eval()
            base_losses, size = score_rows(model, rows, size, pad, dev, autocast, after)
    if size < max(1, batch_size or cfg.batch_size):
        notes.append(f"out of memory at the run's batch size: scored {size} record(s) at a time")

    results = []
    for i in range(len(rows)):
        source = stats.sources[i]
        rec = good[source]
        loss, n = losses[i]
        base = base_losses[i][0] if i in base_losses else None
        results.append(RecordLoss(record=numbers[source], line=getattr(rec, "line", None), split=split_of[i],
                                  loss=rounded_loss(loss), tokens=n, truncated=i in stats.cut_rows,
                                  instruction=first_user_turn(rec.messages()),
                                  base_loss=rounded_loss(base) if base is not None else None,
                                  digest=record_digest(rec.messages())))
    results.sort(key=lambda r: -r.loss)
    skipped = [{"record": numbers[p["index"]], "line": p.get("line"), "message": p["message"]}
               for p in stats.problems]
    del model
    if on == "cuda":
        torch.cuda.empty_cache()
    return Audit(run_dir=str(run_dir), weights=str(weights), dataset=str(data_path), dataset_changed=changed,
                 device=on, seconds=round(time.perf_counter() - started, 2), records=results, skipped=skipped,
                 notes=notes, audited_at=time.time())


def rounded_loss(loss: float) -> float:
    return round(loss, 5) if math.isfinite(loss) else float("inf")


def score_rows(model: Any, rows: list[dict[str, list[int]]], size: int, pad: int, dev: Any, autocast: Any,
               progress: Callable[[int, int], None] | None) -> tuple[dict[int, tuple[float, int]], int]:
    """Every row's (loss, answer tokens), batched longest first; out of memory halves the batch.

    Returns the scores by row index and the batch size that worked (the next pass starts there).
    """
    import torch

    # Longest first: batches of like lengths waste less on padding, and the largest come first.
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i]["input_ids"]))
    losses: dict[int, tuple[float, int]] = {}
    start = 0
    while start < len(order):
        chunk = order[start:start + size]
        try:
            scores = _score(model, [rows[i] for i in chunk], pad, dev, autocast)
        except torch.OutOfMemoryError as e:
            del e
            if dev.type == "cuda":
                torch.cuda.empty_cache()
            if size == 1:
                raise OutOfMemory(f"the GPU ran out of memory scoring one record of {len(rows[chunk[0]]['input_ids'])} "
                                  "tokens", hint="Audit on the CPU (--device cpu), or free the GPU (a "
                                  "training run or the playground may hold it).") from None
            size = max(1, size // 2)
            continue
        for i, score in zip(chunk, scores, strict=True):
            losses[i] = score
        start += len(chunk)
        if progress is not None:
            progress(start, len(rows))
    return losses, size


def ratio_text(ratio: float | None) -> str:
    """``loss / median`` to one decimal, rounded down, so 2.996 reads 2.9 and not the flag's 3.0."""
    return "–" if ratio is None else f"{math.floor(ratio * 10) / 10:.1f}"


def _score(model: Any, batch: list[dict[str, list[int]]], pad: int, dev: Any, autocast: Any
           ) -> list[tuple[float, int]]:
    """(mean answer NLL, answer tokens) of each row, in one padded forward pass."""
    import torch

    from engine.data.tokenize import IGNORE_INDEX

    width = max(len(r["input_ids"]) for r in batch)
    ids = torch.full((len(batch), width), pad, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
    for j, r in enumerate(batch):
        n = len(r["input_ids"])
        ids[j, :n] = torch.tensor(r["input_ids"])
        mask[j, :n] = 1
        labels[j, :n] = torch.tensor(r["labels"])
    ids, mask, labels = ids.to(dev), mask.to(dev), labels.to(dev)
    with torch.no_grad(), torch.autocast(dev.type, dtype=autocast, enabled=autocast is not None):
        logits = model(input_ids=ids, attention_mask=mask).logits
    # Prompt tuning puts its virtual tokens first; the last `width` positions are the input's.
    logits = logits[:, -width:, :].float()
    nll = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                                            ignore_index=IGNORE_INDEX, reduction="none").view(len(batch), -1)
    counted = (labels[:, 1:] != IGNORE_INDEX).sum(dim=1)
    per_record = nll.sum(dim=1) / counted.clamp(min=1)
    return [(float(per_record[j]), int(counted[j])) for j in range(len(batch))]


def format_audit(audit: Audit, top: int = 15) -> str:
    """The hardest records as a table, with what to do about them."""
    lines = [f"{len(audit.records)} records of {audit.dataset} scored with {audit.weights} on {audit.device} "
             f"in {audit.seconds:.1f} s"]
    lines += [f"note: {n}" for n in audit.notes]
    med_t, med_e = audit.median_of("train"), audit.median_of("eval")
    lines.append("median answer loss: " + ", ".join(
        f"{name} {m:.3f}" for name, m in (("train", med_t), ("eval", med_e)) if m is not None)
        + (f"; the base model's {audit.base_median():.3f}" if audit.compared_with_base else ""))
    lines.append("")
    base = audit.compared_with_base
    lines.append(f"{'loss':>8} {'x median':>8}" + (f" {'base':>8} {'fell by':>8}" if base else "")
                 + f" {'tokens':>6}  {'record':>7}  {'split':<5}  instruction")
    medians = {"train": med_t, "eval": med_e}
    for r in audit.records[:top]:
        m = medians[r.split]
        ratio = ratio_text(r.loss / m if m else None)
        trunc = " (truncated)" if r.truncated else ""
        vs_base = (f" {r.base_loss:>8.3f} {r.fell:>8.3f}" if r.base_loss is not None else f" {'–':>8} {'–':>8}"
                   ) if base else ""
        lines.append(f"{r.loss:>8.3f} {ratio:>8}{vs_base} {r.tokens:>6}  {'#' + str(r.record):>7}  {r.split:<5}  "
                     f"{r.instruction}{trunc}")
    outliers = audit.outliers()
    lines.append("")
    if outliers:
        one = len(outliers) == 1
        lines.append(f"{len(outliers)} record{' scores' if one else 's score'} {OUTLIER_FACTOR:g}x the median of "
                     f"{'its' if one else 'their'} split or more. The trained model still finds "
                     f"{'its answer' if one else 'their answers'} unlikely: check {'it' if one else 'them'} for a "
                     "wrong, inconsistent or differently formatted answer "
                     f"(finetune-studio data preview {audit.dataset} --record N).")
    else:
        lines.append(f"No record scores {OUTLIER_FACTOR:g}x the median of its split: nothing stands out.")
    if base:
        stuck = audit.not_learned()
        lines.append(f"{len(stuck)} training record{'s' if len(stuck) != 1 else ''} did not get any easier than "
                     "under the base model" + (": the run learned nothing from "
                                               f"{'it' if len(stuck) == 1 else 'them'}, often because "
                                               f"{'it contradicts' if len(stuck) == 1 else 'they contradict'} "
                                               "similar records (" + ", ".join(f"#{r.record}" for r in stuck[:10])
                                               + (", ..." if len(stuck) > 10 else "") + ")." if stuck else "."))
    if audit.skipped:
        lines.append(f"{len(audit.skipped)} record(s) had nothing to score: "
                     + "; ".join(f"#{s['record']}: {s['message']}" for s in audit.skipped[:3]))
    return "\n".join(lines)


def cli_audit(args: Any) -> int:
    """``finetune-studio runs audit RUN [--top N] [--json] [--device D] [--batch_size N] [--checkpoint DIR]``."""
    from engine.adapters import quiet_loading
    from engine.cli import progress_printer
    from engine.runs import resolve_run

    run_dir = resolve_run(args.run)
    quiet_loading()
    progress = progress_printer(args, "records")

    audit = audit_run(run_dir, device=args.device, batch_size=args.batch_size, checkpoint=args.checkpoint,
                      compare_base=getattr(args, "compare_base", False), progress=progress)
    path = audit.save()
    if args.json:
        print(json.dumps(audit.to_dict(), ensure_ascii=False))
    else:
        print(format_audit(audit, args.top))
        print(f"all {len(audit.records)} scores: {path}")
    return 0
