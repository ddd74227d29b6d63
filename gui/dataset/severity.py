"""How a lint finding's severity looks: one mark and colour each, in the table, the form and
the Checks tab, so an error reads as an error everywhere."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

MARKS = {"error": "✖", "warning": "⚠", "info": "ℹ"}
COLORS = {"error": "#be1e1e", "warning": "#8a5a00", "info": "#3c6eaa"}  # text on white
ORDER = {"error": 0, "warning": 1, "info": 2}
WORDS = {"error": "error", "warning": "warning", "info": "note"}
"""Each severity as a screen reader says it: the marks alone read as "heavy multiplication x"."""


def severity(finding: Any) -> str:
    """A finding's severity; one without a known severity counts as a warning."""
    sev = getattr(finding, "severity", "warning")
    return sev if sev in ORDER else "warning"


def by_severity(findings: Iterable[Any]) -> list[Any]:
    """Errors first, then warnings, then notes (stable within each)."""
    return sorted(findings, key=lambda f: ORDER[severity(f)])


def worst(findings: Iterable[Any]) -> str | None:
    """The most severe of ``findings``' severities, or None for none."""
    return min((severity(f) for f in findings), key=ORDER.__getitem__, default=None)


def spoken(findings: Iterable[Any]) -> str:
    """A record's findings in words, for a screen reader ("2 findings, the worst an error"); "" for none."""
    found = list(findings)
    if not found:
        return ""
    sev = WORDS[worst(found)]
    article = "an" if sev[0] in "aeiou" else "a"
    if len(found) == 1:
        return f"1 finding, {article} {sev}"
    return f"{len(found)} findings, the worst {article} {sev}"
