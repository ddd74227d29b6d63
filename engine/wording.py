"""Small rules of English that messages built from numbers need.

A sentence that puts an article before a number must pick the one the number is read with:
"an 8 GiB GPU", "an 11 GB file", "a 24 GiB GPU". The choice follows how the number is
spoken, not its first digit: 8, 11, 18 and 80-89 ("eight", "eleven", "eighteen", "eighty")
take "an", and so does any number whose spoken form starts with one of them (800, 11,000,
8.5). Everything else ("one", "two", ..., "one hundred") takes "a".
"""

from __future__ import annotations


def article(n: float) -> str:
    """``"an"`` or ``"a"``: the indefinite article before the number ``n`` read aloud.

    Args:
        n: The number as it is written in the sentence (only its integer part is read for the
            choice: "an 8.5 GiB model").

    Returns:
        ``"an"`` when the number is spoken starting with a vowel sound, else ``"a"``.
    """
    if n < 0:  # "minus ..."
        return "a"
    whole = int(n)
    # The leading group of three digits is what is said first ("eleven thousand", "eight hundred").
    while whole >= 1000:
        whole //= 1000
    if whole >= 100:
        return "an" if whole // 100 == 8 else "a"
    return "an" if whole in (8, 11, 18) or 80 <= whole <= 89 else "a"


def a_number(n: float, text: str | None = None) -> str:
    """The number with its article: ``a_number(8)`` is ``"an 8"``, ``a_number(24)`` ``"a 24"``.

    Args:
        n: The number the article is chosen for.
        text: How the number is written, when not ``str(n)`` (e.g. ``"8.0"`` or ``"11,000"``).
    """
    return f"{article(n)} {text if text is not None else n}"
