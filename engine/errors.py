"""Typed errors: each carries a message for the user and, where one exists, a fix.

The GUI shows ``message`` and offers ``fix`` (a dict of run-config changes) as a button;
the CLI prints both. Neither ever shows a bare traceback for these.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from typing import Any


class StudioError(Exception):
    """Base class of every error the user is meant to read.

    Args:
        message: What is wrong and where (file, line, key...), in plain words.
        fix: Run-config changes that would fix it, e.g. ``{"mixed_precision": "bf16"}``.
        hint: A sentence of advice when no mechanical fix exists.
    """

    kind = "error"

    def __init__(self, message: str, *, fix: dict[str, Any] | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.fix = fix or {}
        self.hint = hint

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "message": self.message, "fix": self.fix, "hint": self.hint}

    def __str__(self) -> str:
        return self.text()

    def text(self, fix_text: Callable[[str, Any], str] | None = None) -> str:
        """The message, its hint and its fix as a terminal shows them.

        Args:
            fix_text: how one ``(key, value)`` of the fix is written where it is read: the
                option to type on a command line that takes run-config keys (the default,
                :func:`option_text`), or that command's own flag.
        """
        text = self._said()
        if self.hint:
            text += f"\n  hint: {self.hint}"
        if self.fix:
            # A change to None removes the key (an unknown key in a run config file): no option sets that.
            text += "\n  fix: " + " ".join(f"remove '{k}' from the run config" if v is None
                                           else (fix_text or option_text)(k, v) for k, v in self.fix.items())
        return text

    def _said(self) -> str:
        """The message as :meth:`text` shows it."""
        return self.message


def json_problem(e: json.JSONDecodeError) -> str:
    """A JSON decoder's message as a sentence: Python's ``Unterminated string starting at`` (its
    position given apart) reads ``Unterminated string starting here``, as the line and column
    said before it point there."""
    return e.msg[:-3] + " here" if e.msg.endswith(" at") else e.msg


def value_text(value: Any) -> str:
    """A run-config value as typed after its option: text bare, the rest as YAML reads it
    (``true``, ``0.0``, ``["q_proj", "v_proj"]``), quoted for the shell where it needs it."""
    return shlex.quote(value if isinstance(value, str) and value else json.dumps(value, ensure_ascii=False))


def option_text(key: str, value: Any) -> str:
    """One change of a fix as the run-config override to type: ``--load_in bf16`` (Python's
    ``load_in='bf16'`` was no option of any command)."""
    return f"--{key} {value_text(value)}"


class ConfigError(StudioError):
    """A run config key is unknown, has a wrong type or value, or clashes with another."""

    kind = "config"

    def __init__(self, message: str, *, key: str | None = None, typed: bool = False, **kw: Any):
        """``typed``: ``key``'s value was typed on the command line as ``--KEY VALUE`` (not read from a
        file or the form), so :meth:`text` names it by that option."""
        super().__init__(message, **kw)
        self.key = key
        self.typed = typed

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "key": self.key}

    def _said(self) -> str:
        """``'max_steps' must be a whole number, got 'x'`` reads ``--max_steps must be ...`` where the
        user typed ``--max_steps x``: the option they typed, not a key they never wrote. ``message``
        stays as it is (the GUI shows it beside the key's field)."""
        if self.typed and self.key:
            for name in (f"'{self.key}' ", f"{self.key} "):
                if self.message.startswith(name):
                    return f"--{self.key} " + self.message[len(name):]
        return self.message


class ConfigErrors(ConfigError):
    """Several config problems found at once, so the user can fix them in one go."""

    def __init__(self, errors: list[ConfigError]):
        self.errors = errors
        if len(errors) == 1:  # one problem reads as itself, with its hint and fix (not as a list of one)
            one = errors[0]
            super().__init__(one.message, key=one.key, fix=one.fix, hint=one.hint, typed=one.typed)
            return
        super().__init__("\n".join(f"- {e.message}" for e in errors), key=errors[0].key if errors else None)

    def _said(self) -> str:
        if len(self.errors) == 1:
            return super()._said()
        return "\n".join(f"- {e._said()}" for e in self.errors)


class DataError(StudioError):
    """A dataset file could not be read, or a record is malformed.

    Args:
        path: The file.
        line: 1-based line, when known.
        column: 1-based column, when known.
    """

    kind = "data"

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None,
                 column: int | None = None, **kw: Any):
        where = ""
        if path:
            where = str(path)
            if line is not None:
                where += f":{line}"
                if column is not None:
                    where += f":{column}"
            where += ": "
        super().__init__(where + message, **kw)
        self.path, self.line, self.column = path, line, column

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "path": self.path, "line": self.line, "column": self.column}


class ModelError(StudioError):
    """A model can't be found or loaded safely (offline, no remote code, no pickle without consent)."""

    kind = "model"


class OutOfMemory(StudioError):
    """The GPU ran out of memory."""

    kind = "oom"


class NonFiniteLoss(StudioError):
    """The loss or the gradient norm became NaN or infinite."""

    kind = "nonfinite"


class StoppedByUser(StudioError):
    """The user asked the run to stop; it saved a checkpoint first."""

    kind = "stopped"
