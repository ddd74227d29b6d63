"""Find, replace and filter over records: which texts a record has, and what matches.

Pure Python over engine records (no Qt), so the rules are easy to test and the editor's
find bar, replace-all and filter all agree on what "matches" means.

A record's *texts* are its string leaves, each with a field label: an Alpaca field name
(``instruction``, ``output``, a tag such as ``task``...), a chat role (``user``,
``assistant``, ``system``, ``tool``) for a turn's content, ``history`` for Alpaca history
pairs, or ``raw`` for the text of a broken record.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from engine.data.records import CONVERSATION_KEY, SHAREGPT_ROLES, Record

# Keys whose strings are structure, not content: replacing inside them would corrupt roles.
_TURN_TAG_KEYS = ("role", "from")
_TURN_TEXT_KEYS = ("content", "value")

Path = tuple[Any, ...]


def record_texts(record: Record, fmt: str) -> Iterator[tuple[str, Path, str]]:
    """Yield ``(field label, path into the record's data, text)`` for each text of a record."""
    if record.broken:
        yield "raw", (), record.raw or ""
        return
    data = record.peek()
    conv_key = CONVERSATION_KEY.get(fmt)
    for key, value in data.items():
        if isinstance(value, str):
            yield key, (key,), value
        elif key == conv_key and isinstance(value, list):
            for i, turn in enumerate(value):
                if not isinstance(turn, dict):
                    continue
                tag = next((turn[k] for k in _TURN_TAG_KEYS if k in turn), None)
                role = SHAREGPT_ROLES.get(tag, str(tag)) if isinstance(tag, str) else "?"
                for tk in _TURN_TEXT_KEYS:
                    if isinstance(turn.get(tk), str):
                        yield role, (key, i, tk), turn[tk]
        elif key == "history" and isinstance(value, list):
            for i, pair in enumerate(value):
                if isinstance(pair, list):
                    for j, text in enumerate(pair):
                        if isinstance(text, str):
                            yield "history", (key, i, j), text


@dataclass(frozen=True)
class TextQuery:
    """What to look for: text or a regular expression, in one field or all of them.

    Args:
        text: The text or pattern; empty matches every record.
        regex: Treat ``text`` as a Python regular expression.
        case_sensitive: Match case exactly (default: ignore case).
        field: A field label from :func:`record_texts`, or None for every field.
    """

    text: str
    regex: bool = False
    case_sensitive: bool = False
    field: str | None = None

    def pattern(self) -> re.Pattern[str]:
        """The compiled pattern.

        Raises:
            re.error: ``text`` is not a valid regular expression (its ``msg`` and ``pos`` say where).
        """
        flags = 0 if self.case_sensitive else re.IGNORECASE
        return re.compile(self.text if self.regex else re.escape(self.text), flags)


# (query, prefilter) of the last query: one query is applied to many records. Replaced as one
# tuple, so a filter scanning on a thread and a find on the UI thread never mix two queries.
_last_prefilter: tuple = (None, None)


def _prefilter(query: TextQuery) -> tuple[bytes, bool] | None:
    """``(needle, fold_case)``: bytes that must occur in a record's JSON line for it to match.

    Parsing each line to search it costs ~20 µs per 1 KB record (2 s for 100k); a substring test
    on the raw bytes first skips the lines that can't match. Only sound for literal text that
    JSON writes unescaped: no quote, backslash or control character, and ASCII unless the search
    is case-sensitive (``bytes.lower`` folds only ASCII). None when it doesn't apply.
    """
    global _last_prefilter
    last_query, last_pf = _last_prefilter
    if last_query is query:
        return last_pf
    text = query.text
    pf = None
    if (not query.regex and text and not any(c in text for c in '"\\') and text.isprintable()
            and (text.isascii() or query.case_sensitive)):
        pf = (text.encode("utf-8") if query.case_sensitive else text.lower().encode("utf-8"),
              not query.case_sensitive)
    _last_prefilter = (query, pf)
    return pf


def _cannot_match(record: Record, query: TextQuery) -> bool:
    if record.materialized or record.broken:
        return False
    src = record.source
    if not isinstance(src, bytes):
        return False
    pf = _prefilter(query)
    if pf is None or (not query.text.isascii() and b"\\u" in src):
        return False  # \uXXXX escapes: the bytes don't show the characters
    needle, fold = pf
    if fold and any(letter in needle and special in src for letter, special in _FOLDS_TO_ASCII):
        return False
    return needle not in (src.lower() if fold else src)


# Non-ASCII letters that Unicode case-insensitive matching equates with ASCII ones (Kelvin sign,
# long s, dotless and dotted i): where a line has one, only the real search can tell.
_FOLDS_TO_ASCII = ((b"k", "\u212a".encode()), (b"s", "\u017f".encode()), (b"i", "\u0131".encode()),
                   (b"i", "\u0130".encode()))


def first_match(record: Record, fmt: str, query: TextQuery,
                pattern: re.Pattern[str] | None = None) -> tuple[str, Path, int, int] | None:
    """The first match in a record as ``(label, path, start, end)``, or None."""
    if _cannot_match(record, query):
        return None
    pattern = pattern or query.pattern()
    for label, path, text in record_texts(record, fmt):
        if query.field is not None and label != query.field:
            continue
        m = pattern.search(text)
        if m:
            return label, path, m.start(), m.end()
    return None


def all_matches(record: Record, fmt: str, query: TextQuery,
                pattern: re.Pattern[str] | None = None) -> list[tuple[str, Path, int, int]]:
    """Every match in a record, in reading order, as ``(label, path, start, end)``."""
    if _cannot_match(record, query):
        return []
    pattern = pattern or query.pattern()
    out = []
    for label, path, text in record_texts(record, fmt):
        if query.field is not None and label != query.field:
            continue
        out += [(label, path, m.start(), m.end()) for m in pattern.finditer(text) if m.end() > m.start()]
    return out


def replace_one(record: Record, fmt: str, query: TextQuery, replacement: str, path: Path, start: int,
                pattern: re.Pattern[str] | None = None) -> Any:
    """Replace the single match at ``start`` of the text at ``path``.

    Returns:
        The new data dict (or raw text for a broken record), or None if no match starts there.
    """
    pattern = pattern or query.pattern()
    for _label, p, text in record_texts(record, fmt):
        if p != path:
            continue
        m = pattern.search(text, start)
        if m is None or m.start() != start:
            return None
        new_text = text[:m.start()] + (m.expand(replacement) if query.regex else replacement) + text[m.end():]
        if record.broken:
            return new_text
        data = copy_data(record.peek())
        _set_path(data, path, new_text)
        return data
    return None


def record_matches(record: Record, fmt: str, query: TextQuery,
                   pattern: re.Pattern[str] | None = None) -> bool:
    if not query.text:
        return True
    return first_match(record, fmt, query, pattern) is not None


def replace_in_record(record: Record, fmt: str, query: TextQuery, replacement: str,
                      pattern: re.Pattern[str] | None = None) -> tuple[Any, int]:
    """Replace every match in a record.

    Returns:
        ``(new, count)``: for a good record ``new`` is a new data dict (the record itself is
        not touched), for a broken one the new raw text; ``(None, 0)`` when nothing matched.
        In regex mode ``replacement`` may use group references (``\\1``, ``\\g<name>``).
    """
    if not query.text or _cannot_match(record, query):
        return None, 0
    pattern = pattern or query.pattern()
    repl: Any = replacement if query.regex else (lambda _m: replacement)
    if record.broken:
        if query.field not in (None, "raw"):
            return None, 0
        new, n = pattern.subn(repl, record.raw or "")
        return (new, n) if n else (None, 0)
    data = record.peek()
    new_data: dict | None = None
    total = 0
    for label, path, text in list(record_texts(record, fmt)):
        if query.field is not None and label != query.field:
            continue
        new_text, n = pattern.subn(repl, text)
        if not n or new_text == text:
            continue
        if new_data is None:
            new_data = copy_data(data)
        _set_path(new_data, path, new_text)
        total += n
    return (new_data, total) if new_data is not None else (None, 0)


def copy_data(data: dict) -> dict:
    """A copy deep enough that edits to strings in turns or history never touch the original."""
    out: dict = {}
    for k, v in data.items():
        if isinstance(v, list):
            out[k] = [dict(x) if isinstance(x, dict) else list(x) if isinstance(x, list) else x for x in v]
        elif isinstance(v, dict):
            out[k] = dict(v)
        else:
            out[k] = v
    return out


def _set_path(data: Any, path: Path, value: str) -> None:
    target = data
    for p in path[:-1]:
        target = target[p]
    target[path[-1]] = value


def field_labels(records: list[Record], fmt: str, sample: int = 500) -> list[str]:
    """The field labels worth offering in a field picker: the format's own, then extras seen."""
    labels: dict[str, None] = {}
    if fmt in CONVERSATION_KEY:
        for role in ("system", "user", "assistant"):
            labels[role] = None
    else:
        for key in ("instruction", "input", "output", "system"):
            labels[key] = None
    step = max(1, len(records) // sample)
    for r in records[::step][:sample]:
        for label, _path, _text in record_texts(r, fmt):
            labels.setdefault(label, None)
    labels.pop("raw", None)
    labels["raw"] = None  # broken records' text, always last
    return list(labels)
