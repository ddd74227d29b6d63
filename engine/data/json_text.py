"""JSON text read so that every way it can fail is a :class:`json.JSONDecodeError` with a position.

Python's parser fails in two more ways on text a dataset file can hold: brackets nested a few
hundred levels deep end in a ``RecursionError`` (the C scanner recurses once per level), and an
integer of more than 4300 digits in a ``ValueError`` (``sys.get_int_max_str_digits``, CPython's
guard against quadratic int parsing). Neither says where it is. The readers place JSON errors
by ``lineno``/``colno``; these functions turn both into a ``JSONDecodeError`` at the bracket or
number, so the same code names the line and column, and the records around it still load.
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
_BRACKETS = re.compile(r'"(?:[^"\\]|\\.)*"?|[\[{\]}]')


def loads(text: str | bytes) -> Any:
    """``json.loads``, raising only ``JSONDecodeError`` (see the module docstring).

    Raises:
        json.JSONDecodeError: not JSON, nested too deeply, or an integer too long to read.
        UnicodeDecodeError: ``text`` is bytes that are not UTF-8 (as ``json.loads``).
    """
    try:
        return json.loads(text)
    except RecursionError:
        raise too_deep(_as_text(text), 0) from None
    except ValueError as e:
        if isinstance(e, (json.JSONDecodeError, UnicodeDecodeError)):
            raise
        raise _too_long(_as_text(text), 0, e) from None


def raw_decode(decoder: json.JSONDecoder, text: str, start: int) -> tuple[Any, int]:
    """``decoder.raw_decode(text, start)``, raising only ``JSONDecodeError``, placed in ``text``."""
    try:
        return decoder.raw_decode(text, start)
    except RecursionError:
        raise too_deep(text, start) from None
    except ValueError as e:
        if isinstance(e, json.JSONDecodeError):
            raise
        raise _too_long(text, start, e) from None


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
