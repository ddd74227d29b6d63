"""A text box's text as the record holds it.

``QPlainTextEdit.toPlainText()`` turns no-break spaces into spaces and every line break (CRLF,
CR, U+2028, U+2029) into ``\\n``: an annotator who opened a field and typed one letter would
silently change every other no-break space and line ending in it, and committing a cell editor
untouched would count as an edit. The document's raw text keeps them; only its paragraph breaks
need reading back.
"""

from __future__ import annotations

from PySide6.QtWidgets import QPlainTextEdit

_PARAGRAPH = "\u2029"  # how a QTextDocument holds the line breaks it was given (\n, \r\n, \r)


def _as_document(text: str) -> str:
    return text.replace("\r\n", _PARAGRAPH).replace("\r", _PARAGRAPH).replace("\n", _PARAGRAPH)


def plain_text(edit: QPlainTextEdit, original: object = None) -> str:
    """The text of ``edit``; ``original`` (the value it was filled with), exactly, when the box
    still shows it, and otherwise with the original's CRLF line ending where it used only CRLF."""
    raw = edit.document().toRawText()
    if isinstance(original, str) and raw == _as_document(original):
        return original
    newline = "\r\n" if isinstance(original, str) and "\r\n" in original \
        and original.count("\n") == original.count("\r\n") else "\n"
    return raw.replace(_PARAGRAPH, newline)
