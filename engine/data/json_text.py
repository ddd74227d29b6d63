"""JSON text read so that every way it can fail is a :class:`json.JSONDecodeError` with a position.

Python's parser fails in two more ways on text a dataset file can hold: brackets nested a few
hundred levels deep end in a ``RecursionError`` (the C scanner recurses once per level), and an
integer of more than 4300 digits in a ``ValueError`` (``sys.get_int_max_str_digits``, CPython's
guard against quadratic int parsing). Neither says where it is. And it accepts an escape of half
a surrogate pair (``"\\ud83d"`` without the ``"\\ude00"`` that makes the emoji), giving a string
that is not text: hashing, tokenizing or saving it fails later, far from the file. The readers
place JSON errors by ``lineno``/``colno``; these functions turn all three into a
``JSONDecodeError`` at the bracket, number or escape, so the same code names the line and
column, and the records around it still load.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

DEPTH_SHOWN = 100
"""The nesting depth a too-deep error points past: deep enough that no record needs more."""

# A string token (skipped, so digits inside text never count) or a number token.
_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"?|-?\d+(?:\.\d*)?(?:[eE][+-]?\d+)?')
# A \\uXXXX escape (not an escaped backslash followed by "u"): its hex digits.
_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u([0-9a-fA-F]{4})")
_BRACKETS = re.compile(r'"(?:[^"\\]|\\.)*"?|[\[{\]}]')


def loads(text: str | bytes) -> Any:
    """``json.loads``, raising only ``JSONDecodeError`` (see the module docstring).

    Raises:
        json.JSONDecodeError: not JSON, nested too deeply, or an integer too long to read; or bytes
            with a zero byte (UTF-8 JSON has none), which ``json.loads`` would read as UTF-16 or UTF-32.
        UnicodeDecodeError: ``text`` is bytes that are not UTF-8 (as ``json.loads``).
    """
    if isinstance(text, (bytes, bytearray)) and b"\x00" in text:
        doc = _as_text(text)
        raise json.JSONDecodeError("a zero byte: the line is UTF-16 text (as Windows PowerShell's >> appends "
                                   "it), or binary, not UTF-8", doc, doc.index("\x00"))
    try:
        value = json.loads(text)
    except RecursionError:
        raise too_deep(_as_text(text), 0) from None
    except ValueError as e:
        if isinstance(e, (json.JSONDecodeError, UnicodeDecodeError)):
            raise
        raise _too_long(_as_text(text), 0, e) from None
    refuse_lone_surrogate(text)
    return value


def raw_decode(decoder: json.JSONDecoder, text: str, start: int) -> tuple[Any, int]:
    """``decoder.raw_decode(text, start)``, raising only ``JSONDecodeError``, placed in ``text``."""
    try:
        value, end = decoder.raw_decode(text, start)
    except RecursionError:
        raise too_deep(text, start) from None
    except ValueError as e:
        if isinstance(e, json.JSONDecodeError):
            raise
        raise _too_long(text, start, e) from None
    refuse_lone_surrogate(text, start, end)
    return value, end


def refuse_lone_surrogate(text: str | bytes, start: int = 0, end: int | None = None) -> None:
    """Raise at the first escape in ``text[start:end]`` of half a surrogate pair without its other half.

    Raises:
        json.JSONDecodeError: placed at the escape's backslash.
    """
    stop = len(text) if end is None else end
    needles = ("\\ud", "\\uD") if isinstance(text, str) else (b"\\ud", b"\\uD")
    if all(text.find(n, start, stop) < 0 for n in needles):
        return  # the quick answer for nearly every record
    if isinstance(text, (bytes, bytearray)):  # a JSONL line, read whole: placed in its characters
        text = _as_text(text)
        stop = len(text)
    paired_at = -1  # where the low half that completes the last high half starts
    for m in _ESCAPE.finditer(text, start, stop):
        unit = int(m.group(1), 16)
        at = m.end() - 6
        if 0xD800 <= unit < 0xDC00:
            low = _ESCAPE.match(text, m.end())
            if low and low.end() - 6 == m.end() and 0xDC00 <= int(low.group(1), 16) < 0xE000:
                paired_at = m.end()
                continue
        elif not 0xDC00 <= unit < 0xE000 or at == paired_at:
            continue
        raise json.JSONDecodeError(f"'\\u{m.group(1)}' is half of a surrogate pair (how JSON escapes a character "
                                   "such as an emoji) without its other half: not text", text, at)


def too_deep(text: str, start: int) -> json.JSONDecodeError:
    """The error for a value at ``start`` whose brackets nest too deeply: at the bracket that opens
    level ``DEPTH_SHOWN + 1`` (or the deepest one, in a value that the parser failed on sooner)."""
    depth = deepest = 0
    at = start
    for m in _BRACKETS.finditer(text, start):
        tok = m.group()
        if tok in "[{":
            depth += 1
            if depth > deepest:
                deepest, at = depth, m.start()
            if depth > DEPTH_SHOWN:
                return json.JSONDecodeError(f"nested more than {DEPTH_SHOWN} levels deep (brackets inside "
                                            "brackets), too deep to read", text, at)
        elif tok in "]}":
            depth -= 1
            if depth <= 0:
                break
    return json.JSONDecodeError(f"nested {deepest} levels deep (brackets inside brackets), too deep to read",
                                text, at)


def _too_long(text: str, start: int, error: ValueError) -> json.JSONDecodeError:
    limit = sys.get_int_max_str_digits()
    for m in _TOKENS.finditer(text, start):
        tok = m.group()
        if tok[0] != '"' and not any(c in tok for c in ".eE") and len(tok.lstrip("-")) > limit:
            return json.JSONDecodeError(f"a number with {len(tok.lstrip('-'))} digits, more than the {limit} "
                                        "a JSON reader takes; write it as a string", text, m.start())
    return json.JSONDecodeError(str(error), text, start)


def _as_text(text: str | bytes) -> str:
    return text.decode("utf-8", "replace") if isinstance(text, (bytes, bytearray)) else text
