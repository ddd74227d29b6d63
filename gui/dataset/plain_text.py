"""A text box's text as the record holds it.

``QPlainTextEdit.toPlainText()`` turns no-break spaces into spaces and every line break (CRLF,
CR, U+2028, U+2029) into ``\\n``: an annotator who opened a field and typed one letter would
silently change every other no-break space and line ending in it, and committing a cell editor
untouched would count as an edit. The document's raw text keeps them; only its paragraph breaks
need reading back, and a field can mix them (CRLF and LF, a lone CR, a literal U+2029), so each
line the annotator left alone keeps its own.
"""

from __future__ import annotations

import re
from collections import Counter
from difflib import SequenceMatcher

from PySide6.QtWidgets import QPlainTextEdit

_PARAGRAPH = "\u2029"  # how a QTextDocument holds the line breaks it was given
# What QTextCursor.insertText starts a new block at (CRLF as one): these all read back as _PARAGRAPH.
# U+2028 is not among them; the raw text keeps it as it is.
_BREAK = re.compile("\r\n|[\r\n\u2029\ufdd0\ufdd1]")
_PREFERRED = ("\n", "\r\n", "\r", _PARAGRAPH)  # which ending a tie for the field's commonest goes to


def _lines(text: str) -> tuple[list[str], list[str]]:
    """``text`` cut at its line breaks: the lines, and the break after each line but the last."""
    return _BREAK.split(text), _BREAK.findall(text)


def _commonest(endings: list[str]) -> str:
    counts = Counter(endings)
    return max(_PREFERRED, key=lambda e: (counts[e], -_PREFERRED.index(e))) if counts else "\n"


def plain_text(edit: QPlainTextEdit, original: object = None) -> str:
    """The text of ``edit``, with ``original``'s line breaks (the value it was filled with).

    A line that is still there keeps the break it had; a break the annotator typed takes the
    kind ``original`` has most of (``\\n`` without one). An untouched box gives ``original`` back.
    """
    new = edit.document().toRawText().split(_PARAGRAPH)
    if not isinstance(original, str):
        return "\n".join(new)
    old, ends = _lines(original)
    if new == old:
        return original
    typed = _commonest(ends)
    out = [typed] * (len(new) - 1)  # out[j]: the break after new line j
    # A changed stretch keeps the break that closes it (the next line is untouched) and, in order,
    # as many of the breaks inside it as it still has: one word edited in a line changes no break.
    for tag, i1, i2, j1, j2 in SequenceMatcher(None, old, new, autojunk=False).get_opcodes():
        if tag == "equal":
            pairs = [(i1 + k, j1 + k) for k in range(i2 - i1)]
        else:
            inner = min(i2 - i1, j2 - j1) - 1
            pairs = [(i1 + k, j1 + k) for k in range(inner)]
            if i2 > i1 and j2 > j1:
                pairs.append((i2 - 1, j2 - 1))
        for i, j in pairs:
            if i < len(ends) and j < len(out):
                out[j] = ends[i]
    return "".join(line + end for line, end in zip(new, [*out, ""], strict=True))
