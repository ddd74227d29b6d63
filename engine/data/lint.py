"""Dataset lint: consistency, balance, diversity and length, as findings per record.

The three principles of good tuning data, made concrete (each rule names the record's
index and line; dataset-wide findings have neither):

Consistency
    ``broken-record`` (error): text that isn't a JSON object. ``empty-file`` (error).
    ``file-structure`` (error): the file around the records is not valid (a JSON array's comma
    after the last record, or its closing ``]`` missing: a file cut short).
    ``duplicate-key`` (warning): an object of the record has a key twice; JSON readers (this one
    too) keep the last value, so the first is never seen, and an edit drops it from the file.
    ``multi-line-record`` (warning): a JSONL record written over several lines (pretty-printed); it
    is read from its '{' to its '}', but other JSON Lines readers refuse the file; a save writes it on one line.
    ``non-finite-number`` (warning): ``NaN``, ``Infinity`` or ``-Infinity`` as a value; Python's
    JSON reader takes them (and a save writes them back as they are), but they are not JSON:
    most other tools refuse the file.
    ``wrong-type`` (error): a field of the wrong type, e.g. ``output`` is a number or a list.
    ``missing-field`` (error): no ``output`` / no assistant turn / no instruction / every
    assistant turn with ``weight`` 0 (nothing trains). A ``weight`` other than 0, 1, true or
    false on an assistant turn is ``wrong-type``.
    ``empty-field``: an empty or whitespace-only instruction, output or turn (error); a
    whitespace-only ``input`` or ``system`` (warning). An empty ``input`` is normal.
    ``unknown-role`` (error) and ``turn-order`` (warning) for conversations.
    ``template-refused`` (error, with a tokenizer): the chat template raises on the conversation
    (Gemma's does when roles don't alternate); a run leaves such a record out.
    ``untrained-tokens`` (warning, ``data check --model``): special tokens the format writes whose
    rows the model never trained (as the Train area and a run warn).
    ``duplicate`` (warning): same text after normalising case, whitespace and punctuation.
    ``near-duplicate`` (warning): MinHash over character 5-grams of the record's content
    (its input, or instruction when there is no input, plus the output), Jaccard >= 0.8.
    ``conflicting-output`` (warning): the same prompt with a different output.
    ``output-format``: within one task type where most outputs are JSON, an output that
    looks like JSON but doesn't parse (error) or is plain text (warning).
    ``label-spelling`` (warning): in a task whose outputs are short labels, one label
    spelled several ways ("Positive"/"positive"/"pos").

Balance
    ``balance`` (warning): one task type holds more than half of the records. The type comes
    from a tag field (``task``, ``category``, ``type``, ``task_type``) when present, else
    from the instruction by the keyword table :data:`TASK_KEYWORDS` (English and Chinese).
    ``language-mix`` (info) and ``language-tag`` (warning, a ``lang`` tag that disagrees
    with the script). Languages are told by script: ``zh`` (Han), ``en`` (Latin), ``other``.

Diversity
    ``diversity`` (warning): distinct instructions below half the records, or one leading
    word starting more than half of them.

Length
    ``truncated`` (warning): longer than ``seq_len`` tokens, counted with the model's
    tokenizer and template, or estimated without one (:func:`approx_tokens`).
    ``prompt-too-long`` (error, with a tokenizer): longer than ``seq_len``, and its first
    ``seq_len`` tokens are all prompt: a run leaves it out rather than truncating it.

Dataset-wide warnings need at least :data:`MIN_RECORDS_FOR_SHARES` records to be meaningful.
"""

from __future__ import annotations

import json
import math
import re
import sys
import unicodedata
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine.data import json_text
from engine.data.records import (
    CONVERSATION_KEY,
    RECORD_AT,
    DatasetFile,
    Record,
    RecordFormat,
    Schema,
    _json_type,
    to_messages,
)
from engine.errors import ConfigError, DataError, StudioError, json_problem

SEVERITIES = ("error", "warning", "info")
TAG_FIELDS = ("task", "category", "type", "task_type")
LANG_FIELDS = ("lang", "language")
MIN_RECORDS_FOR_SHARES = 10
DOMINANT_SHARE = 0.5        # a task type or a leading word above this share is flagged
MIN_DISTINCT_RATIO = 0.5    # distinct instructions / records below this is flagged
NEAR_DUP_JACCARD = 0.8
# Without a tokenizer: ~4 characters per token for English and other alphabetic text, and
# ~1.5 Han characters per token (measured on Llama-3/Qwen2 tokenizers, which merge common
# Chinese bigrams), plus ~4 tokens of template per message (role header, end-of-turn).
CHARS_PER_TOKEN = 4.0
HAN_CHARS_PER_TOKEN = 1.5
TEMPLATE_TOKENS_PER_MESSAGE = 4

# Task type inferred from the instruction: the first row whose English words (matched on
# word boundaries) or Chinese substrings occur wins. Order matters: "translate this
# question" is translation, not qa.
TASK_KEYWORDS: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
    ("translation", ("translate", "translation", "into english", "into chinese", "into french",
                     "into german", "into spanish", "into japanese"), ("翻译", "译成", "译为")),
    ("summarization", ("summarize", "summarise", "summary", "tl;dr", "sum up", "condense", "headline"),
     ("总结", "摘要", "概括", "归纳", "标题")),
    ("classification", ("classify", "categorize", "categorise", "sentiment", "label", "which category",
                        "spam", "positive or negative", "true or false"), ("分类", "情感", "类别", "判断", "属于")),
    ("extraction", ("extract", "list all", "find all", "pull out", "named entities", "entities"),
     ("提取", "抽取", "找出")),
    ("code", ("code", "function", "python", "javascript", "sql", "program", "script", "regex", "bug",
              "implement", "compile", "algorithm"), ("代码", "函数", "编程", "程序", "脚本", "算法")),
    ("math", ("calculate", "compute", "solve", "equation", "how many", "sum of", "math", "percent"),
     ("计算", "求解", "方程", "多少")),
    ("rewriting", ("rewrite", "paraphrase", "rephrase", "edit", "correct the grammar", "proofread",
                   "simplify", "polish", "make it more", "more formal", "more concise"),
     ("改写", "润色", "修改", "改正", "重写", "改成")),
    ("generation", ("write", "story", "poem", "essay", "song", "lyrics", "haiku", "slogan", "compose",
                    "generate", "create", "draft", "come up with", "suggest", "brainstorm"),
     ("写", "诗", "故事", "作文", "创作", "生成", "起草", "想出")),
    ("qa", ("what", "why", "how", "who", "when", "where", "which", "explain", "describe", "define",
            "is it", "are there", "can you tell"), ("什么", "为什么", "如何", "怎么", "解释", "哪", "谁", "吗", "？")),
]
_TASK_RES = [(name, re.compile(r"\b(?:" + "|".join(re.escape(w) for w in en) + r")\b"), zh)
             for name, en, zh in TASK_KEYWORDS]
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z\u00c0-\u024f]")
_OTHER_SCRIPT = re.compile(r"[\u0370-\u03ff\u0400-\u04ff\u0590-\u06ff\u0900-\u0dff\u0e00-\u0e7f"
                           r"\u3040-\u30ff\uac00-\ud7af]")
_NONWORD = re.compile(r"[\W_]+")
# ASCII letters and digits lower-cased, everything else a space (what _NONWORD does on ASCII).
_ASCII_FOLD = bytes((c + 32 if 65 <= c <= 90 else c) if chr(c).isalnum() else 32 for c in range(256))
_WORDS = re.compile(r"[\u3400-\u9fff]{1,2}|[^\W\d_]+")
_FILLERS = {"please", "kindly", "now", "can", "could", "would", "you", "请", "请你", "你", "帮我"}


@dataclass
class Finding:
    """One lint finding.

    Attributes:
        index: 0-based record index, or None for a dataset-wide finding.
        line: 1-based line of the record in the file, or None.
        rule: The rule's id, e.g. ``duplicate``.
        severity: ``error``, ``warning`` or ``info``.
        message: What is wrong, in plain words.
        key: The field concerned, when there is one.
    """

    index: int | None
    line: int | None
    rule: str
    severity: str
    message: str
    key: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class LintReport:
    """Findings, their counts, and the dataset's statistics (for the lint panel's charts)."""

    findings: list[Finding] = field(default_factory=list)
    counts: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def has_errors(self) -> bool:
        return any(f.severity == "error" for f in self.findings)

    def by_rule(self) -> dict[str, list[Finding]]:
        groups: dict[str, list[Finding]] = defaultdict(list)
        for f in self.findings:
            groups[f.rule].append(f)
        return dict(groups)

    def for_record(self, index: int) -> list[Finding]:
        return [f for f in self.findings if f.index == index]

    def extended(self, extra: list[Finding]) -> LintReport:
        """A copy with ``extra`` findings (e.g. a run audit's) merged in, counts updated."""
        if not extra:
            return self
        findings = sorted([*self.findings, *extra], key=_finding_order)
        return LintReport(findings, _counts(findings, self.counts.get("records", 0), self.counts.get("broken", 0)),
                          self.stats)

    def to_dict(self) -> dict[str, Any]:
        return {"counts": self.counts, "findings": [f.to_dict() for f in self.findings], "stats": self.stats}


# ---- Public API


def lint(ds: DatasetFile, *, tokenizer: Any = None, seq_len: int | None = None,
         template: str = "auto") -> LintReport:
    """Check a dataset for consistency, balance, diversity and length.

    Args:
        ds: The dataset (broken records included; they are reported, not skipped silently).
        tokenizer: A Hugging Face tokenizer for exact token lengths; without one, lengths
            are estimated by :func:`approx_tokens`.
        seq_len: Report the records longer than this many tokens.
        template: How records become text, as the run config's ``template`` (auto, chat, alpaca,
            chatml, llama3, gemma, phi3 or a .jinja file; with a tokenizer).

    Returns:
        The report; ``findings`` are ordered by record index, dataset-wide ones last.
    """
    out: list[Finding] = []
    n = len(ds.records)
    if n == 0:
        out.append(Finding(None, None, "empty-file", "error", "the file has no records"))
    for e in ds.file_errors:
        out.append(Finding(None, e.line, "file-structure", "error", file_error_words(e)))
    scan = _Scan(ds.schema, out, ds.container)
    for i, r in enumerate(ds.records):
        scan.add(i, r)
    rows = scan.rows

    stats: dict[str, Any] = {"records": n, "broken": sum(1 for r in ds.records if r.broken),
                             "format": ds.format, "container": ds.container}
    stats["duplicates"] = {"exact": scan.exact, "near": scan.near_duplicates(ds.records),
                           "conflicting": scan.conflicting}
    tasks = _task_types(rows, stats)
    _output_formats(rows, tasks, out)
    _labels(rows, tasks, out)
    _balance(stats, len(rows), out)
    _languages(rows, out, stats)
    _diversity(rows, out, stats)
    _lengths(rows, ds, tokenizer, seq_len, template, out, stats)
    if tokenizer is not None:
        _hidden_answers(rows, ds, tokenizer, template, out)

    out.sort(key=_finding_order)
    return LintReport(out, _counts(out, n, stats["broken"]), stats)


def file_error_words(e: DataError) -> str:
    """A file-structure error (one of ``DatasetFile.file_errors``) as the ``file-structure`` finding
    says it: its place as a broken record's ("line 4, column 2: ..."), without the file's path."""
    # The error's message starts "PATH:LINE:COLUMN: ".
    at = (f":{e.line}" + (f":{e.column}" if e.column is not None else "")) if e.line is not None else ""
    said = e.message.removeprefix(f"{e.path}{at}: ")
    where = f"line {e.line}, column {e.column}: " if e.column else f"line {e.line}: " if e.line else ""
    return where + said


def _finding_order(f: Finding) -> tuple:
    return f.index is None, f.index if f.index is not None else 0, SEVERITIES.index(f.severity)


def _counts(findings: list[Finding], records: int, broken: int) -> dict[str, Any]:
    by_sev = Counter(f.severity for f in findings)
    return {"records": records, "broken": broken, "errors": by_sev["error"], "warnings": by_sev["warning"],
            "infos": by_sev["info"], "by_rule": dict(sorted(Counter(f.rule for f in findings).items()))}


def normalize(text: str) -> str:
    """Text for duplicate checks: NFKC, lower case, punctuation and runs of whitespace as one space."""
    if text.isascii():
        # Same result as the regex below, ~3x faster on English (measured on the 100k bench).
        return " ".join(text.encode("ascii").translate(_ASCII_FOLD).decode("ascii").split())
    text = unicodedata.normalize("NFKC", text)
    return _NONWORD.sub(" ", text.lower()).strip()


def infer_task(instruction: str) -> str:
    """The task type of an instruction by :data:`TASK_KEYWORDS`, or ``other``."""
    head = instruction[:300].lower()
    for name, pattern, zh in _TASK_RES:
        if pattern.search(head) or any(w in head for w in zh):
            return name
    return "other"


def detect_language(text: str) -> str:
    """``zh``, ``en`` or ``other`` by script: Han characters weigh 3 Latin letters (about a word)."""
    sample = text[:2000]
    if sample.isascii():
        return "en" if _LATIN.search(sample) else "other"
    han = len(_HAN.findall(sample))
    latin = len(_LATIN.findall(sample))
    other = len(_OTHER_SCRIPT.findall(sample))
    if not (han or latin or other):
        return "other"
    scores = {"zh": han * 3, "en": latin, "other": other * 2}
    return max(scores, key=scores.get)


def approx_tokens(texts: list[str]) -> int:
    """Estimated tokens of a conversation: see :data:`CHARS_PER_TOKEN` and friends."""
    total = 0.0
    for t in texts:
        han = 0 if t.isascii() else len(_HAN.findall(t))
        total += (len(t) - han) / CHARS_PER_TOKEN + han / HAN_CHARS_PER_TOKEN + TEMPLATE_TOKENS_PER_MESSAGE
    return int(math.ceil(total))


# ---- Per-record checks


class _Row:
    """What the dataset-wide rules need of one good record: small, so 100k of them are cheap.

    Full texts are not kept; duplicates compare hashes of the normalised texts, and the
    near-duplicate signatures are computed chunk by chunk as records are scanned.
    """

    __slots__ = ("index", "line", "tag", "lang_tag", "instruction_head", "instruction_key", "short_output",
                 "json_error", "looks_json", "lang", "lead", "bigram", "tokens", "answers")

    def __init__(self, index: int, line: int | None):
        self.index, self.line = index, line


class _Scan:
    """One pass over the records: per-record rules, exact duplicates, and per-row facts."""

    def __init__(self, schema: Schema, out: list[Finding], container: str | None = None):
        self.schema, self.out, self.container = schema, out, container
        self.rows: list[_Row] = []
        self.seen: dict[int, _Row] = {}
        self.prompts: dict[int, _Row] = {}
        self.exact = self.conflicting = 0
        self.minhash = _MinHasher()

    def add(self, i: int, r: Record) -> None:
        out, schema, line = self.out, self.schema, r.line
        if r.broken:
            out.append(Finding(i, line, "broken-record", "error", f"not a valid record: {r.error_words()}"))
            return
        data = r.peek()
        before = len(out)
        if self.container == RecordFormat.JSONL:
            _multi_line_record(i, line, r, out)
        _duplicate_keys(i, line, r, out)
        if self.container != RecordFormat.PARQUET:  # Parquet's float columns hold NaN: no JSON there
            _non_finite_numbers(i, line, r, out, located=self.container != RecordFormat.CSV)
        if schema.format == RecordFormat.ALPACA:
            _check_alpaca(i, line, data, schema, out)
        else:
            _check_chat(i, line, data, schema, out)
        if any(f.severity == "error" and f.rule in ("wrong-type", "unknown-role") for f in out[before:]):
            return
        try:
            msgs = to_messages(data, schema)  # its errors start "record: ", cut: the finding names the record
        except DataError as e:  # a shape the checks above didn't foresee: still reported, never lost
            if not any(f.severity == "error" for f in out[before:]):  # else they named it, in their words
                out.append(Finding(i, line, "wrong-type", "error", RECORD_AT.sub("", e.message, count=1)))
            return
        users = "\n".join(m["content"] for m in msgs if m["role"] == "user")
        answers = [m["content"] for m in msgs if m["role"] == "assistant"]
        if schema.format == RecordFormat.ALPACA:
            instruction = _str(schema.key(data, "instruction"))
            extra = _str(schema.key(data, "input"))
        else:
            instruction = next((m["content"] for m in msgs if m["role"] == "user"), "")
            extra = ""
        output = answers[-1] if answers else ""

        row = _Row(i, line)
        n_prompt, n_output, n_instruction = normalize(users), normalize(output), normalize(instruction)
        key = hash((n_prompt, n_output))
        first = self.seen.get(key)
        if first is not None:
            self.exact += 1
            out.append(Finding(i, line, "duplicate", "warning", f"duplicates {_where(first)} (same text "
                               "after normalising case, whitespace and punctuation)"))
        else:
            self.seen[key] = row
            # The prompt is all the conversation says before its last answer (earlier answers and
            # the system prompt too: they change what the answer should be); a record with no answer
            # has no output to conflict (it is reported as missing one).
            last = max((k for k, m in enumerate(msgs) if m["role"] == "assistant"), default=len(msgs))
            context = n_prompt if schema.format == RecordFormat.ALPACA else normalize(
                "\n".join(f"{m['role']}: {m['content']}" for m in msgs[:last]))
            prompt_key = hash(context)
            same_prompt = self.prompts.get(prompt_key) if answers and context else None
            if same_prompt is not None:
                self.conflicting += 1
                out.append(Finding(i, line, "conflicting-output", "warning", f"same prompt as "
                                   f"{_where(same_prompt)} but a different output; the model learns both"))
            elif answers and context:
                self.prompts.setdefault(prompt_key, row)
            self.minhash.add(row, _content(n_instruction, extra, n_output))

        tag = next((data[k] for k in TAG_FIELDS if isinstance(data.get(k), str) and data[k].strip()), None)
        lang_tag = next((data[k] for k in LANG_FIELDS if isinstance(data.get(k), str) and data[k].strip()), None)
        row.tag = tag.strip().lower() if tag else None
        row.lang_tag = lang_tag.strip().lower() if lang_tag else None
        row.instruction_head = instruction[:300]
        row.instruction_key = hash(n_instruction)
        stripped = output.strip()
        row.short_output = stripped if len(output) <= 40 and len(output.split()) <= 3 and "\n" not in stripped \
            else None
        row.looks_json = _looks_json(output)
        row.json_error = _json_error(output) if row.looks_json else None
        row.lang = detect_language(users[:2000] + "\n" + output[:2000])
        row.lead, row.bigram = _lead(instruction)
        row.tokens = approx_tokens([m["content"] for m in msgs])
        row.answers = len(answers)
        self.rows.append(row)

    def _content_of(self, r: Record) -> str:
        data = r.peek()
        msgs = to_messages(data, self.schema)
        output = next((m["content"] for m in reversed(msgs) if m["role"] == "assistant"), "")
        if self.schema.format == RecordFormat.ALPACA:
            instruction = _str(self.schema.key(data, "instruction"))
            extra = _str(self.schema.key(data, "input"))
        else:
            instruction, extra = next((m["content"] for m in msgs if m["role"] == "user"), ""), ""
        return _content(normalize(instruction), extra, normalize(output))

    def near_duplicates(self, records: list[Record]) -> int:
        """Report near duplicates; MinHash candidates are confirmed on the exact Jaccard."""
        found = 0
        k, cap = self.minhash.k, self.minhash.cap
        for row, first, _estimate in self.minhash.pairs():
            a, b = (_shingles(self._content_of(records[x.index]), k, cap) for x in (row, first))
            share = len(a & b) / (len(a | b) or 1)
            if share < NEAR_DUP_JACCARD:
                continue
            found += 1
            self.out.append(Finding(row.index, row.line, "near-duplicate", "warning",
                                    f"nearly the same as {_where(first)} (about {share:.0%} of "
                                    "5-character pieces shared)"))
        return found


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _duplicate_keys(i: int, line: int | None, r: Record, out: list[Finding]) -> None:
    """Warn of a key written twice in one object of the record's text (a JSONL line, a JSON element).

    The parsed record can't tell (a dict keeps the last value), so its text is read again, keeping
    every pair; only where its text has more ``":`` than the record has keys, which a duplicate needs.
    """
    src = r.source
    if src is None or not isinstance(src, (str, bytes)):
        return  # a record made in the editor: a dict, which can't hold a key twice
    text = src.decode("utf-8", "replace") if isinstance(src, bytes) else src
    try:
        if len(_KEY_END.findall(text)) <= _count_keys(r.peek()):
            return
    except RecursionError:  # nested too deep to walk (it parsed, a little shallower than the limit)
        return
    seen: list[tuple[str, str]] = []

    def pairs(items: list[tuple[str, Any]]) -> dict:
        keys = [k for k, _ in items]
        seen.extend((k, json.dumps(v, ensure_ascii=False)[:40]) for k, v in items if keys.count(k) > 1)
        return dict(items)

    try:
        json.loads(text, object_pairs_hook=pairs)
    except (ValueError, RecursionError):
        return  # it parsed once; a second reading that fails says nothing new
    if seen:
        key = seen[0][0]
        values = [v for k, v in seen if k == key]
        times = "twice" if len(values) == 2 else f"{len(values)} times"
        out.append(Finding(i, line, "duplicate-key", "warning",
                           f"the key '{key}' is written {times} in one object ({', '.join(values)}); "
                           "only the last value is read, and an edit of the record drops the others", key))


_LINE_END = re.compile(rb"\r\n|\r|\n")


def _multi_line_record(i: int, line: int | None, r: Record, out: list[Finding]) -> None:
    """Warn of a JSONL record written over several lines (pretty-printed JSON pasted in): the reader
    takes it as jq does, but it is not JSON Lines, and most tools that read JSON Lines refuse the file."""
    src = r.source
    if not isinstance(src, bytes) or line is None:
        return
    below = len(_LINE_END.findall(src.rstrip(b"\r\n")))
    if not below:
        return
    out.append(Finding(i, line, "multi-line-record", "warning",
                       f"lines {line}–{line + below}: the record is written over {below + 1} lines (pretty-printed "
                       "JSON); it is read, but JSON Lines holds one record per line, and other tools (pandas "
                       "read_json(lines=True), Hugging Face datasets) refuse the file. Save in the Dataset editor, or "
                       "`finetune-studio data convert FILE NEW.jsonl`, writes each record on one line"))


def _non_finite_numbers(i: int, line: int | None, r: Record, out: list[Finding], *, located: bool = True) -> None:
    """Warn of NaN, Infinity or -Infinity in the record: Python's ``json`` reads them as floats, but
    they are not JSON (RFC 8259 has no such numbers), and most tools refuse a file that holds them.

    Placed at the first one's line and column in the record's text (a JSONL line, a JSON array
    element; a CSV row's JSON cell gives the row's line only, and an element's first line no
    column: where it starts on that line is not kept for a record that reads). ``located``: the
    record's text is JSON (not a CSV row's), so a place in it is a place in the file."""
    src = r.source
    if isinstance(src, (str, bytes)):
        text = src.decode("utf-8", "replace") if isinstance(src, bytes) else src
        if "NaN" not in text and "Infinity" not in text:
            return  # the quick answer for nearly every record
    else:
        text = None
    found = _first_non_finite(r.peek(), "")
    if found is None:
        return  # the words are inside strings
    path, value = found
    where = f"line {line}: " if line else ""
    if text is not None and located and line:
        token = next((m for m in _NON_FINITE.finditer(text) if m.group(1)), None)
        if token is not None:
            at = token.start(1)
            below = text.count("\n", 0, at)
            if below or isinstance(src, bytes):  # a JSONL line starts at column 1
                where = f"line {line + below}, column {at - (text.rfind(chr(10), 0, at) + 1) + 1}: "
            else:
                where = f"line {line}: "
    out.append(Finding(i, line, "non-finite-number", "warning",
                       f"{where}'{path}' is {value}, which is not a JSON number: Python reads it, but most JSON "
                       "tools refuse the file (a save writes it back as it is); write null, a number or a string "
                       "instead", path.split(".")[0].split("[")[0]))


# A string token (skipped: a word inside text is no number) or a non-finite number's literal.
_NON_FINITE = re.compile(r'"(?:[^"\\]|\\.)*"?|(-?Infinity|NaN)')


def _first_non_finite(value: Any, path: str) -> tuple[str, str] | None:
    """The path (``score``, ``messages[1].weight``) and JSON literal of the first NaN or infinity."""
    if isinstance(value, float) and not math.isfinite(value):
        return path, "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"
    if isinstance(value, dict):
        items = ((f"{path}.{k}" if path else str(k), v) for k, v in value.items())
    elif isinstance(value, list):
        items = ((f"{path}[{n}]", v) for n, v in enumerate(value))
    else:
        return None
    for p, v in items:
        found = _first_non_finite(v, p)
        if found is not None:
            return found
    return None


_KEY_END = re.compile(r'"\s*:')  # how a key ends; a string value holding '":' counts too, hence "at most"


def _count_keys(value: Any) -> int:
    if isinstance(value, dict):
        return len(value) + sum(_count_keys(v) for v in value.values())
    if isinstance(value, list):
        return sum(_count_keys(v) for v in value)
    return 0


def _check_alpaca(i: int, line: int | None, data: dict, schema: Schema, out: list[Finding]) -> None:
    def name(std: str) -> str:  # the file's own name for a standard field
        return next((k for k, v in schema.mapping.items() if v == std and k in data), std)

    for std in ("instruction", "input", "output", "system"):
        value = schema.key(data, std)
        if value is not None and not isinstance(value, str):
            out.append(Finding(i, line, "wrong-type", "error",
                               f"'{name(std)}' is {_json_type(value)}, expected text", name(std)))
    history = schema.key(data, "history")
    if history not in (None, "", []):
        if not isinstance(history, list):
            out.append(Finding(i, line, "wrong-type", "error", f"'{name('history')}' is "
                               f"{_json_type(history)}, expected a list of [instruction, answer] pairs",
                               name("history")))
        else:
            for k, pair in enumerate(history):
                if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
                    out.append(Finding(i, line, "wrong-type", "error", f"history[{k}] is not an "
                                       "[instruction, answer] pair of texts", name("history")))
                    break
    instruction = schema.key(data, "instruction")
    extra = schema.key(data, "input")
    output = schema.key(data, "output")
    if output is None:
        out.append(Finding(i, line, "missing-field", "error", f"no '{name('output')}': nothing to train on",
                           name("output")))
    elif isinstance(output, str) and not output.strip():
        out.append(Finding(i, line, "empty-field", "error",
                           f"'{name('output')}' is {'empty' if not output else 'only whitespace'}",
                           name("output")))
    if instruction is None and extra is None:
        out.append(Finding(i, line, "missing-field", "error", f"no '{name('instruction')}'",
                           name("instruction")))
    elif isinstance(instruction, str) and not instruction.strip() and not (isinstance(extra, str)
                                                                             and extra.strip()):
        out.append(Finding(i, line, "empty-field", "error",
                           f"'{name('instruction')}' is {'empty' if not instruction else 'only whitespace'}",
                           name("instruction")))
    for std in ("input", "system"):
        value = schema.key(data, std)
        if isinstance(value, str) and value and not value.strip():
            out.append(Finding(i, line, "empty-field", "warning", f"'{name(std)}' is only whitespace "
                               "(leave it empty instead)", name(std)))


def _check_chat(i: int, line: int | None, data: dict, schema: Schema, out: list[Finding]) -> None:
    key = CONVERSATION_KEY[schema.format]
    own = next((k for k, v in schema.mapping.items() if v == key and k in data), key)
    turns = schema.key(data, key)
    if turns is None:
        out.append(Finding(i, line, "missing-field", "error", f"no '{own}' list of turns", own))
        return
    if not isinstance(turns, list):
        out.append(Finding(i, line, "wrong-type", "error", f"'{own}' is {_json_type(turns)}, "
                           "expected a list of turns", own))
        return
    system = schema.key(data, "system")
    if system is not None and not isinstance(system, str):
        out.append(Finding(i, line, "wrong-type", "error", f"'system' is {_json_type(system)}, expected text",
                           "system"))
    from engine.data.records import SHAREGPT_ROLES, turn_content, turn_trains

    m = schema.mapping
    roles = []
    weighted_out = 0  # answers whose weight is 0: context, never trained
    for k, turn in enumerate(turns):
        where = f"{own}[{k}]"
        if not isinstance(turn, dict):
            out.append(Finding(i, line, "wrong-type", "error", f"{where} is {_json_type(turn)}, expected "
                               "an object", own))
            continue
        turn = {m.get(a, a): b for a, b in turn.items()}
        tag = turn.get("role", turn.get("from"))
        content = turn.get("content", turn.get("value"))
        if tag is None:
            out.append(Finding(i, line, "missing-field", "error", f"{where} has no role ('role' or 'from')", own))
            continue
        role = SHAREGPT_ROLES.get(m.get(tag, tag)) if isinstance(tag, str) else None
        if role is None:
            out.append(Finding(i, line, "unknown-role", "error", f"{where} has the role {tag!r}; allowed: "
                               + ", ".join(sorted(SHAREGPT_ROLES)), own))
            continue
        roles.append(role)
        if role == "assistant" and turn.get("weight") is not None:
            try:
                weighted_out += not turn_trains(turn["weight"], f"{where} ({role})")
            except DataError as e:
                out.append(Finding(i, line, "wrong-type", "error", e.message + "; a run leaves this record out", own))
        if turn.get("tool_calls") or isinstance(content, list):  # OpenAI forms: what trains is their text
            try:
                content = turn_content(turn, content, where)
            except DataError as e:
                out.append(Finding(i, line, "wrong-type", "error", e.message.split(": ", 1)[-1] + "; a run "
                                   "leaves this record out", own))
                continue
        if content is None:
            out.append(Finding(i, line, "missing-field", "error", f"{where} ({role}) has no content", own))
        elif not isinstance(content, str):
            out.append(Finding(i, line, "wrong-type", "error", f"{where} ({role}) content is "
                               f"{_json_type(content)}, expected text", own))
        elif not content.strip():
            sev = "warning" if role == "system" else "error"
            out.append(Finding(i, line, "empty-field", sev, f"{where} ({role}) is "
                               f"{'empty' if not content else 'only whitespace'}", own))
    if turns and all(isinstance(t, dict) for t in turns):
        if "assistant" not in roles:
            out.append(Finding(i, line, "missing-field", "error", "no assistant turn: nothing to train on", own))
        elif weighted_out == roles.count("assistant"):
            out.append(Finding(i, line, "missing-field", "error", "every assistant turn has weight 0: nothing to "
                               "train on (unless loss_on is all); a run leaves this record out", own))
        elif roles and roles[-1] != "assistant":
            out.append(Finding(i, line, "turn-order", "warning", f"the last turn is from {roles[-1]}; "
                               "it is never trained on", own))
        body = [r for r in roles if r in ("user", "assistant")]
        if body and body[0] == "assistant" and len(roles) == len(turns):  # (an unknown role is an error already)
            out.append(Finding(i, line, "turn-order", "warning", "the conversation starts with an assistant "
                               "turn, which answers nothing; some chat templates (Gemma's, Mistral's) refuse that, "
                               "expecting a user turn first", own))
        spoken = [r for r in roles if r != "system"]  # a tool's result between two assistant turns is the usual
        if any(a == b and a in ("user", "assistant") for a, b in zip(spoken, spoken[1:], strict=False)):
            out.append(Finding(i, line, "turn-order", "warning", "two user or two assistant turns in a "
                               "row; most chat templates expect them to alternate", own))
    elif not turns:
        out.append(Finding(i, line, "empty-field", "error", f"'{own}' is an empty list", own))


# ---- Consistency across records


def _where(row: _Row) -> str:
    # Numbered from 1, as the editor's rows are (Finding.index stays 0-based).
    return f"record {row.index + 1} (line {row.line})" if row.line else f"record {row.index + 1}"


def _content(n_instruction: str, extra: str, n_output: str) -> str:
    """The record's own content: its input (or, without one, its instruction) and its answer,
    so that a shared instruction template doesn't make every record look alike."""
    return (normalize(extra) if extra.strip() else n_instruction) + " " + n_output


def _shingles(text: str, k: int, cap: int) -> set[str]:
    text = text[:cap]
    return {text[j:j + k] for j in range(len(text) - k + 1)}


class _MinHasher:
    """MinHash LSH over character 5-grams, for candidate pairs at Jaccard >= 0.8.

    Character shingles work the same for English and Chinese. Texts are capped at ``cap``
    characters, and of a text longer than 200 characters only the shingles whose hash falls
    in one quarter of the range are kept (the same quarter for every text, so the Jaccard
    estimate holds). Signatures are computed in chunks as texts arrive, so memory stays at
    32 numbers per record. 8 bands of 4 rows find pairs at Jaccard 0.8 with ~98% chance.
    """

    def __init__(self, k: int = 5, perms: int = 32, bands: int = 8, cap: int = 600, chunk: int = 2000):
        import numpy as np

        self.k, self.perms, self.bands, self.cap, self.chunk = k, perms, bands, cap, chunk
        rng = np.random.default_rng(20261128)
        self.a = rng.integers(1, 2**63 - 1, size=perms, dtype=np.uint64) | np.uint64(1)
        self.b = rng.integers(0, 2**63 - 1, size=perms, dtype=np.uint64)
        self.band_mult = rng.integers(1, 2**63 - 1, size=perms // bands, dtype=np.uint64) | np.uint64(1)
        self.powers = np.array([pow(1000003, k - 1 - j, 2**64) for j in range(k)], dtype=np.uint64)
        self.texts: list[str] = []
        self.owners: list[_Row] = []
        self.pending: list[_Row] = []
        self.sigs: list[Any] = []

    def add(self, row: _Row, text: str) -> None:
        if len(text) < 2 * self.k:
            return  # too short to be "near": exact duplicates cover it
        self.texts.append(text[: self.cap])
        self.pending.append(row)
        if len(self.texts) >= self.chunk:
            self._flush()

    def _flush(self) -> None:
        import numpy as np

        if not self.texts:
            return
        k, texts = self.k, self.texts
        codes = np.frombuffer("".join(texts).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
        lens = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
        ends = np.cumsum(lens)
        m = len(codes) - k + 1
        with np.errstate(over="ignore"):
            h = np.zeros(m, dtype=np.uint64)
            for j in range(k):
                h += codes[j:j + m] * self.powers[j]
            owner = np.repeat(np.arange(len(texts)), lens)[:m]
            valid = np.arange(m) + k <= np.repeat(ends, lens)[:m]  # the shingle lies inside one text
            long = np.repeat(lens > 200, lens)[:m]
            sampled = ((h * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(62)) == 0
            keep = valid & (sampled | ~long)
            empty = np.bincount(owner[keep], minlength=len(texts)) == 0
            if empty.any():  # e.g. one character repeated: keep all its shingles
                keep |= valid & empty[owner]
            h, owner = h[keep], owner[keep]
            seg = np.searchsorted(owner, np.arange(len(texts)))
            sig = np.empty((len(texts), self.perms), dtype=np.uint32)
            for p in range(self.perms):
                sig[:, p] = np.minimum.reduceat(((h * self.a[p] + self.b[p]) >> np.uint64(32)).astype(np.uint32),
                                                seg)
        self.sigs.append(sig)
        self.owners.extend(self.pending)
        self.texts, self.pending = [], []

    def pairs(self) -> list[tuple[_Row, _Row, float]]:
        """``(row, earlier_row, estimated_jaccard)`` for each record nearly the same as an earlier one."""
        import numpy as np

        self._flush()
        if len(self.owners) < 2:
            return []
        sigs = np.concatenate(self.sigs)
        n = len(sigs)
        r = self.perms // self.bands
        need = int(math.ceil(NEAR_DUP_JACCARD * self.perms))
        best = np.full(n, n, dtype=np.int64)  # the earliest verified match of each record
        with np.errstate(over="ignore"):
            for s in range(self.bands):
                keys = (sigs[:, s * r:(s + 1) * r].astype(np.uint64) * self.band_mult).sum(axis=1)
                # The first record with the same band key is the candidate (an LSH bucket's head).
                _, first_of_key, inverse = np.unique(keys, return_index=True, return_inverse=True)
                first = first_of_key[inverse.ravel()]
                cand = np.nonzero(first < np.arange(n))[0]
                if not len(cand):
                    continue
                agree = np.count_nonzero(sigs[cand] == sigs[first[cand]], axis=1)
                ok = cand[agree >= need]
                best[ok] = np.minimum(best[ok], first[ok])
        found = []
        for idx in np.nonzero(best < n)[0].tolist():
            j = int(best[idx])
            share = np.count_nonzero(sigs[idx] == sigs[j]) / self.perms
            found.append((self.owners[idx], self.owners[j], share))
        return found


def _task_types(rows: list[_Row], stats: dict) -> dict[int, str]:
    tagged = sum(1 for r in rows if r.tag)
    use_tags = bool(rows) and tagged >= len(rows) / 2
    tasks = {r.index: (r.tag if use_tags and r.tag else infer_task(r.instruction_head)) for r in rows}
    counts = Counter(tasks.values())
    total = sum(counts.values()) or 1
    stats["task_types"] = {
        "source": "tag field" if use_tags else "inferred from the instruction (keyword table)",
        "counts": dict(counts.most_common()),
        "shares": {k: round(v / total, 4) for k, v in counts.most_common()},
    }
    return tasks


def _looks_json(text: str) -> bool:
    t = text.strip()
    return t.startswith(("{", "[", "```json"))


def _json_error(text: str) -> str | None:
    t = text.strip()
    if t.startswith("```"):
        t = t.split("\n", 1)[-1].rsplit("```", 1)[0]
    try:
        json_text.loads(t)
    except json.JSONDecodeError as e:
        return f"line {e.lineno}, column {e.colno}: {json_problem(e)}"
    return None


def _output_formats(rows: list[_Row], tasks: dict[int, str], out: list[Finding]) -> None:
    groups: dict[str, list[_Row]] = defaultdict(list)
    for r in rows:
        groups[tasks[r.index]].append(r)
    for task, members in groups.items():
        if len(members) < 3:
            continue
        valid = sum(1 for r in members if r.looks_json and r.json_error is None)
        if valid / len(members) < 0.6:
            continue
        share = f"{valid} of {len(members)} '{task}' outputs are JSON"
        for r in members:
            if r.looks_json and r.json_error is not None:
                out.append(Finding(r.index, r.line, "output-format", "error",
                                   f"output is not valid JSON ({r.json_error}), while {share}", "output"))
            elif not r.looks_json:
                out.append(Finding(r.index, r.line, "output-format", "warning",
                                   f"output is plain text, while {share}", "output"))


def _label_key(text: str) -> str:
    return normalize(text)


def _labels(rows: list[_Row], tasks: dict[int, str], out: list[Finding]) -> None:
    groups: dict[str, list[_Row]] = defaultdict(list)
    for r in rows:
        groups[tasks[r.index]].append(r)
    for task, members in groups.items():
        if len(members) < 5:
            continue
        short = [r for r in members if r.short_output is not None]
        if len(short) < 0.8 * len(members):
            continue
        spellings = Counter(r.short_output for r in short)
        keys = sorted({_label_key(s) for s in spellings if _label_key(s)}, key=len)
        if len(keys) > max(10, len(short) // 5):
            continue  # free-form short answers, not labels
        # An abbreviation of 3+ characters belongs to the label it starts ("pos" -> "positive").
        canon: dict[str, str] = {}
        for key in keys:
            longer = [k for k in keys if k != key and len(key) >= 3 and k.startswith(key)]
            canon[key] = longer[0] if len(longer) == 1 else key
        clusters: dict[str, Counter] = defaultdict(Counter)
        for s, c in spellings.items():
            key = _label_key(s)
            if key:
                clusters[canon[key]][s] += c
        for variants in clusters.values():
            if len(variants) < 2:
                continue
            preferred = variants.most_common(1)[0][0]
            listing = ", ".join(f"'{s}' ({c})" for s, c in variants.most_common())
            for r in short:
                s = r.short_output
                if s in variants and s != preferred:
                    out.append(Finding(r.index, r.line, "label-spelling", "warning",
                                       f"the '{task}' label '{s}' is spelled several ways: {listing}; "
                                       f"use '{preferred}'", "output"))


# ---- Balance and diversity


def _balance(stats: dict, n: int, out: list[Finding]) -> None:
    shares = stats["task_types"]["shares"]
    if n < MIN_RECORDS_FOR_SHARES or not shares:
        return
    top, share = next(iter(shares.items()))
    if share > DOMINANT_SHARE and top == "other" and stats["task_types"]["source"] != "tag field":
        # 'other' is the keyword table recognising nothing, not a task the model will lean to.
        out.append(Finding(None, None, "balance", "info",
                           f"the keyword table recognises no task type in {share:.0%} of the instructions, so "
                           f"balance can't be judged; give each record a {TAG_FIELDS[0]} field for it"))
    elif share > DOMINANT_SHARE:
        others = ", ".join(f"{k} {v:.0%}" for k, v in list(shares.items())[1:6]) or "no other type"
        out.append(Finding(None, None, "balance", "warning",
                           f"'{top}' is {share:.0%} of the records ({others}); the model will lean to it. "
                           + task_types_note(stats["task_types"]["source"])))


def task_types_note(source: str) -> str:
    """Where the task types come from, as a sentence (the balance finding and the GUI's chart say it)."""
    if source == "tag field":
        return f"Task types come from each record's tag field ({', '.join(TAG_FIELDS[:-1])} or {TAG_FIELDS[-1]})."
    return f"Task types are {source}." if source else ""


def _languages(rows: list[_Row], out: list[Finding], stats: dict) -> None:
    counts: Counter = Counter()
    for r in rows:
        lang = r.lang
        counts[lang] += 1
        tag = r.lang_tag
        if tag and lang in ("zh", "en") and tag[:2] in ("zh", "en") and tag[:2] != lang:
            out.append(Finding(r.index, r.line, "language-tag", "warning",
                               f"tagged '{r.lang_tag}' but the text is mostly {'Chinese' if lang == 'zh' else 'Latin-script'}",
                               "lang"))
    total = sum(counts.values()) or 1
    stats["languages"] = {"counts": dict(counts.most_common()),
                          "shares": {k: round(v / total, 4) for k, v in counts.most_common()},
                          "method": "by script: zh = Han, en = Latin, other"}
    if len(counts) > 1:
        out.append(Finding(None, None, "language-mix", "info", "languages: " + ", ".join(
            f"{k} {v / total:.0%}" for k, v in counts.most_common())))


def _lead(instruction: str) -> tuple[str, str]:
    words = [w for w in _WORDS.findall(instruction[:200].lower())]
    while words and words[0] in _FILLERS:
        words.pop(0)
    return (words[0] if words else ""), (" ".join(words[:2]) if words else "")


def _diversity(rows: list[_Row], out: list[Finding], stats: dict) -> None:
    n = len(rows)
    distinct = len({r.instruction_key for r in rows})
    verbs: Counter = Counter()
    bigrams: Counter = Counter()
    for r in rows:
        v, bg = r.lead, r.bigram
        if v:
            verbs[v] += 1
            bigrams[bg] += 1
    ratio = distinct / n if n else 0.0
    top_verb, top_count = verbs.most_common(1)[0] if verbs else ("", 0)
    stats["diversity"] = {
        "distinct_instructions": distinct,
        "distinct_instruction_ratio": round(ratio, 4),
        "leading_words": {"distinct": len(verbs), "top": verbs.most_common(10),
                          "top_share": round(top_count / n, 4) if n else 0.0},
        "first_bigrams": {"distinct": len(bigrams), "top": bigrams.most_common(10),
                          "top_share": round(bigrams.most_common(1)[0][1] / n, 4) if bigrams else 0.0},
    }
    if n < MIN_RECORDS_FOR_SHARES:
        return
    if ratio < MIN_DISTINCT_RATIO:
        out.append(Finding(None, None, "diversity", "warning",
                           f"only {distinct} distinct instructions for {n} records ({ratio:.0%}); "
                           "vary how tasks are asked"))
    if top_count / n > DOMINANT_SHARE:
        out.append(Finding(None, None, "diversity", "warning",
                           f"{top_count / n:.0%} of the instructions start with '{top_verb}'; "
                           "vary the leading verbs"))


# ---- Length


def _lengths(rows: list[_Row], ds: DatasetFile, tokenizer: Any, seq_len: int | None, template: str,
             out: list[Finding], stats: dict) -> None:
    lengths = None
    if tokenizer is not None:
        refused: dict[int, str] = {}
        try:
            lengths = _token_lengths(rows, ds, tokenizer, template, refused=refused)
        except StudioError as e:  # 'chat' without a chat template, a broken .jinja file: the run refuses too
            out.append(Finding(None, None, "template", "error", f"template {template!r} can't render these "
                               f"records: {e.message}; token lengths are estimated instead"))
        else:
            method = f"tokenizer ({getattr(tokenizer, 'name_or_path', '') or type(tokenizer).__name__})" + (
                f", template {Path(template).name if template.lower().endswith('.jinja') else template}"
                if template != "auto" else "")
            if len(rows) > 1 and len(refused) == len(rows) and len(set(refused.values())) == 1:
                # The same refusal for every record is the template's own fault (a filter it doesn't
                # have, a syntax error): one finding, not one per record.
                out.append(Finding(None, None, "template", "error", f"template {template!r} can't render any "
                                   f"record: {next(iter(refused.values()))}; a run would train on nothing"))
            else:
                for k, why in refused.items():
                    out.append(Finding(rows[k].index, rows[k].line, "template-refused", "error",
                                       f"{why}; a run leaves it out"))
    exact = lengths is not None  # counted with the tokenizer, not estimated
    if lengths is None:
        lengths = [r.tokens for r in rows]
        method = (f"estimate: ~{CHARS_PER_TOKEN:g} characters per token, ~{HAN_CHARS_PER_TOKEN:g} Han "
                  f"characters per token, +{TEMPLATE_TOKENS_PER_MESSAGE} per message")
    info: dict[str, Any] = {"method": method, "seq_len": seq_len, "truncated": None}
    if lengths:
        s = sorted(lengths)
        info.update(min=s[0], max=s[-1], mean=round(sum(s) / len(s), 1), median=s[len(s) // 2],
                    p95=s[min(len(s) - 1, int(0.95 * len(s)))], histogram=_histogram(s))
    else:
        info.update(min=0, max=0, mean=0.0, median=0, p95=0, histogram={"edges": [], "counts": []})
    info["per_record"] = {r.index: n for r, n in zip(rows, lengths, strict=True)} if len(rows) <= 5000 else None
    if seq_len:
        over = left_out = 0
        word = "" if exact else "~"
        for r, n in zip(rows, lengths, strict=True):
            if n <= seq_len:
                continue
            if exact and _prompt_fills(ds, r, tokenizer, template, seq_len):
                left_out += 1
                out.append(Finding(r.index, r.line, "prompt-too-long", "error",
                                   f"{n} tokens, and the prompt alone fills seq_len {seq_len}: no answer token is "
                                   "left to train on, so a run leaves this record out"))
                continue
            over += 1
            out.append(Finding(r.index, r.line, "truncated", "warning",
                               f"{word}{n} tokens; seq_len {seq_len} cuts off the last {n - seq_len}"))
        info["truncated"] = over
        info["left_out"] = left_out
    stats["length"] = info


HIDDEN_ANSWER_SAMPLE = 50
"""Multi-answer records checked for answers the chat template hides: it is the template's habit,
so the first ones tell, and each check renders the conversation once per answer."""


def _hidden_answers(rows: list[_Row], ds: DatasetFile, tokenizer: Any, template: str, out: list[Finding],
                    sample: int | None = None) -> None:
    """Answers of multi-turn records that won't train under this tokenizer's chat template
    (see :func:`engine.data.tokenize.render_record`), in the first ``sample`` such records."""
    from engine.data.tokenize import render_record, uses_chat_template

    try:
        if not uses_chat_template(tokenizer, template):
            return
    except DataError:
        return
    sample = HIDDEN_ANSWER_SAMPLE if sample is None else sample
    multi = [r for r in rows if r.answers > 1]
    checked = hidden = 0
    for r in multi[:sample]:
        try:  # with the weights: a weight-0 answer the template hides loses nothing
            msgs = to_messages(ds.records[r.index].peek(), ds.schema, weights=True)
        except DataError:
            continue  # a bad weight: reported by wrong-type
        checked += 1
        skipped: list[int] = []
        try:
            render_record(msgs, tokenizer, template, skipped=skipped)
        except DataError:
            continue  # no locatable answer at all: the trainer drops it and says so
        if skipped:
            hidden += 1
            which = ", ".join(str(i + 1) for i in skipped)
            out.append(Finding(r.index, r.line, "hidden-answer", "warning",
                               f"message{'s' if len(skipped) > 1 else ''} {which} won't train: the chat template "
                               "renders earlier answers differently once the conversation goes on; `finetune-studio "
                               "data convert FILE OUT --per-answer` writes one record per answer"))
    if hidden and len(multi) > checked:
        out.append(Finding(None, None, "hidden-answer", "info",
                           f"the first {checked} of {len(multi)} multi-answer records were checked for answers the chat "
                           f"template hides, and {hidden} have some: the others likely do too"))


def _histogram(sorted_lengths: list[int], bins: int = 20) -> dict[str, list]:
    top = max(sorted_lengths[-1], 1)
    # A "nice" bin width: 1, 2 or 5 times a power of ten.
    raw = top / bins
    mag = 10 ** math.floor(math.log10(raw)) if raw >= 1 else 1
    width = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    width = max(int(width), 1)
    nbins = top // width + 1
    counts = [0] * nbins
    for n in sorted_lengths:
        counts[min(n // width, nbins - 1)] += 1
    return {"edges": [k * width for k in range(nbins + 1)], "counts": counts}


def _prompt_fills(ds: DatasetFile, row: _Row, tokenizer: Any, template: str, seq_len: int) -> bool:
    """Whether the record's first ``seq_len`` tokens, as the trainer renders them (loss on the
    answers), hold no answer token: the run then leaves it out instead of truncating it. Asked
    only of records longer than seq_len, so the few renders cost little."""
    from engine.data.tokenize import IGNORE_INDEX, render_record

    try:
        labels = render_record(to_messages(ds.records[row.index].peek(), ds.schema, weights=True), tokenizer,
                               template)["labels"]
    except DataError:
        return False  # refused, no answer or a bad weight: reported by its own rule
    return all(x == IGNORE_INDEX for x in labels[:seq_len])


def _token_lengths(rows: list[_Row], ds: DatasetFile, tokenizer: Any, template: str,
                   batch: int = 512, refused: dict[int, str] | None = None) -> list[int]:
    """Tokens of each whole conversation as the trainer renders it (template included).

    ``refused`` collects, by row position, the conversations the chat template refuses (its
    ``raise_exception``, e.g. Gemma's on roles out of order): a run leaves those out.
    """
    from engine.data.templates import resolve
    from engine.data.tokenize import apply_template, render_record

    rendering = resolve(tokenizer, template)
    schema = ds.schema
    lengths: list[int] = []
    for b0 in range(0, len(rows), batch):
        convs = [to_messages(ds.records[r.index].peek(), schema) for r in rows[b0:b0 + batch]]
        if not rendering.alpaca:
            texts = []
            for k, c in enumerate(convs):
                try:
                    texts.append(apply_template(tokenizer, c, rendering, tokenize=False))
                except DataError as e:
                    if refused is not None:
                        refused[b0 + k] = e.message
                    texts.append("\n".join(m["content"] for m in c))  # still counts towards the lengths
            lengths.extend(len(x) for x in tokenizer(texts, add_special_tokens=False)["input_ids"])
            continue
        for c in convs:
            try:
                lengths.append(len(render_record(c, tokenizer, rendering)["input_ids"]))
            except DataError:  # no answer: reported by missing-field; count the text anyway
                lengths.append(len(tokenizer("\n".join(m["content"] for m in c))["input_ids"]))
    return lengths


def _format_token_findings(args: Any, tokenizer: Any) -> list[Finding]:
    """``untrained-tokens``: the special tokens the chosen format writes that the model never trained
    (their rows read from its weight files), as the Train area and a run warn. ``tokenizer``: the
    one the check counted with (add_tokens included)."""
    from engine.config import RunConfig
    from engine.train import check_format_tokens

    cfg = RunConfig.from_dict({"model": args.model, "template": getattr(args, "template", "auto") or "auto",
                               "add_tokens": list(getattr(args, "add_tokens", None) or [])})
    found = check_format_tokens(cfg, tokenizer)
    if not found:
        return []
    return [Finding(None, None, "untrained-tokens", "warning", f"{found['message']}. {found['hint']}")]


# ---- CLI


def cli_check(args: Any) -> int:
    """``finetune-studio data check FILE [--json] [--format F] [--seq-len N] [--model M [--template T]
    [--add-tokens TOKEN ...]]``.

    Returns:
        0 when there are no errors, 1 when there are (broken records included), 2 when the
        file can't be read at all.
    """
    path = args.file
    try:
        ds = _load_for_check(path, getattr(args, "format", "auto") or "auto")
        tokenizer = None
        if getattr(args, "model", None):
            from engine.models import load_tokenizer

            tokenizer = load_tokenizer(args.model, add_tokens=getattr(args, "add_tokens", None) or ())
        elif getattr(args, "template", "auto") != "auto" or getattr(args, "add_tokens", None):
            raise ConfigError("--template and --add-tokens shape the token counts, so they need --model "
                              "(whose tokenizer counts)", key="model")
        report = lint(ds, tokenizer=tokenizer, seq_len=getattr(args, "seq_len", None),
                      template=getattr(args, "template", "auto") or "auto")
        if tokenizer is not None:
            report = report.extended(_format_token_findings(args, tokenizer))
        audit_note = None
        if getattr(args, "audit", None):
            found = _audit_findings(path, args.audit, ds)
            report = report.extended(found.findings)
            audit_note = found.summary()
    except StudioError as e:
        if getattr(args, "json", False):
            print(json.dumps({"error": e.to_dict()}, ensure_ascii=False, indent=2))
        else:
            print(f"finetune-studio data check: {e}", file=sys.stderr)
        return 2
    if getattr(args, "json", False):
        payload = {"file": str(path), "detected": ds.detected, "content_hash": usable_content_hash(ds),
                   **report.to_dict()}
        if audit_note:
            payload["audit"] = audit_note
        payload["stats"] = {**report.stats, "length": {k: v for k, v in report.stats["length"].items()
                                                      if k != "per_record"}}
        print(json.dumps(payload, ensure_ascii=False, indent=2))
    else:
        print(format_report(report, ds, str(path)))
        if audit_note:
            print(audit_note)
    return 1 if report.has_errors else 0


def _audit_findings(path: str, ref: str, ds: DatasetFile) -> Any:
    """``data check --audit RUN|latest``: the run audit's flagged records, found in ``ds``."""
    from engine.audit import audit_findings, latest_audit_for, read_audit
    from engine.runs import resolve_run, run_ref

    if ref == "latest":
        audit = latest_audit_for(path)
        if audit is None:
            raise StudioError(f"no run that trained on {path} has been audited",
                              hint="Audit a run first: finetune-studio runs audit RUN")
    else:
        run = resolve_run(ref)
        audit = read_audit(run)
        if audit is None:
            raise StudioError(f"run '{run.name}' has no audit yet",
                              hint=f"finetune-studio runs audit {run_ref(run)}")
        if Path(audit.dataset).resolve() != Path(path).resolve():
            raise StudioError(f"run '{run.name}' was audited on {audit.dataset}, not {path}",
                              hint=f"finetune-studio data check {audit.dataset} --audit {run_ref(run)}")
    return audit_findings(audit, ds.records)


def _load_for_check(path: str, fmt: str) -> DatasetFile:
    from engine.data.formats import open_dataset

    return open_dataset(path, fmt)  # a file, or a dataset in the Hugging Face cache


def usable_content_hash(ds: DatasetFile) -> str:
    """The content hash of the records a run would train on: the ``dataset_hash`` it records."""
    from engine.data.split import content_hash

    return content_hash(r for r in ds.records if not r.broken)


def format_report(report: LintReport, ds: DatasetFile, path: str, per_rule: int = 20) -> str:
    """The human-readable report: detected format, counts, findings by rule, statistics."""
    c = report.counts
    lines = [f"{path}: {ds.detected}",
             f"{c['errors']} error(s), {c['warnings']} warning(s), {c['infos']} note(s)", ""]
    for rule, findings in report.by_rule().items():
        sev = Counter(f.severity for f in findings).most_common(1)[0][0]
        lines.append(f"{rule} ({sev}, {len(findings)})")
        for f in findings[:per_rule]:
            where = f"{path}:{f.line}" if f.line else path
            rec = f" [record {f.index + 1}]" if f.index is not None else ""
            lines.append(f"  {where}:{rec} {f.message}")
        if len(findings) > per_rule:
            lines.append(f"  ... and {len(findings) - per_rule} more (use --json for all)")
        lines.append("")
    s = report.stats
    tt = s.get("task_types", {})
    if tt.get("shares"):
        lines.append(f"Task types ({tt['source']}): " + ", ".join(
            f"{k} {v:.0%}" for k, v in tt["shares"].items()))
    lang = s.get("languages", {})
    if lang.get("shares"):
        lines.append("Languages (by script): " + ", ".join(f"{k} {v:.0%}" for k, v in lang["shares"].items()))
    d = s.get("diversity")
    if d:
        top = ", ".join(f"'{w}' {n}" for w, n in d["leading_words"]["top"][:5])
        lines.append(f"Diversity: {d['distinct_instructions']} distinct instructions "
                     f"({d['distinct_instruction_ratio']:.0%}); {d['leading_words']['distinct']} leading "
                     f"words, top: {top}")
    dup = s.get("duplicates")
    if dup:
        lines.append(f"Duplicates: {dup['exact']} exact, {dup['near']} near, {dup['conflicting']} "
                     "same prompt with another output")
    ln = s.get("length")
    if ln:
        text = (f"Length ({ln['method']}): min {ln['min']}, median {ln['median']}, p95 {ln['p95']}, "
                f"max {ln['max']} tokens")
        if ln.get("seq_len"):
            text += f"; {ln['truncated']} truncated to seq_len {ln['seq_len']}"
            if ln.get("left_out"):
                text += f", {ln['left_out']} left out (the prompt alone fills it)"
        lines.append(text)
    usable = len(ds.records) - len(ds.broken_indices())
    lines.append(f"Content hash: {usable_content_hash(ds)} (of the {usable} usable records: the "
                 "dataset_hash a run on this file records)")
    return "\n".join(lines)
