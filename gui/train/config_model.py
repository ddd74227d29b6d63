"""The run config being edited, as plain values with one change signal.

Widgets are views of this model: an edit calls :meth:`ConfigModel.set`, and every
widget listens to ``sig_changed`` to show the new value. Validation is the engine's
(``RunConfig.from_dict`` and ``engine.precision.environment_errors``), so the form and
the CLI can never disagree about what is allowed.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from PySide6.QtCore import QObject, Signal

from engine.config import RunConfig
from engine.errors import ConfigError, ConfigErrors


class ConfigModel(QObject):
    """Plain run-config values keyed by field name, plus their validation state."""

    sig_changed = Signal(object)
    """Some values changed: the set of keys."""

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._values: dict[str, Any] = RunConfig().to_dict()
        self._env: Any = None
        self._errors: dict[str, str] | None = None
        self._file_keys: set[str] = set()  # keys whose problems are only that their data file isn't there
        self._cfg: RunConfig | None = None

    # ---- Public API
    def get(self, key: str) -> Any:
        return self._values[key]

    def values(self) -> dict[str, Any]:
        return dict(self._values)

    def set(self, key: str, value: Any) -> None:
        self.update({key: value})

    def update(self, changes: dict[str, Any]) -> None:
        """Apply changes; ``sig_changed`` fires once with the keys that really changed."""
        changed = {k for k, v in changes.items() if k in self._values and self._values[k] != v}
        if not changed:
            return
        for k in changed:
            self._values[k] = changes[k]
        self._errors = None
        self.sig_changed.emit(changed)

    def set_config(self, cfg: RunConfig) -> None:
        """Replace every value with ``cfg``'s."""
        self.update(cfg.to_dict())

    def set_environment(self, env: Any) -> None:
        """The detected machine (``engine.precision.Environment``); adds its rules to validation."""
        self._env = env
        self._errors = None
        self.sig_changed.emit(set())

    def recheck_files(self) -> bool:
        """Look at the data files again (one may have been saved or removed since the values last
        changed); ``sig_changed`` fires when what is said about them changes. Returns whether it did."""
        if self._errors is None:
            return False
        before = self._errors
        self._validate()
        if self._errors == before:
            return False
        self.sig_changed.emit(set())
        return True

    @property
    def environment(self) -> Any:
        return self._env

    def errors(self) -> dict[str, str]:
        """Key -> message for every problem with the current values ('' key: not tied to one)."""
        if self._errors is None:
            self._validate()
        return dict(self._errors or {})

    def config(self, *, files_elsewhere: Collection[str] = ()) -> RunConfig:
        """The current values as a validated ``RunConfig``.

        Args:
            files_elsewhere: keys (``dataset``) whose missing data file doesn't count: a queued grid
                gives every point its own, and each point's files are checked with the point.

        Raises:
            ConfigErrors: the values don't make a valid config (the machine's rules included).
        """
        errors = {k: v for k, v in self.errors().items() if k not in self._file_keys or k not in files_elsewhere}
        if errors:
            raise ConfigErrors([ConfigError(msg, key=key or None) for key, msg in errors.items()])
        assert self._cfg is not None
        return self._cfg

    def try_config(self) -> RunConfig | None:
        """The config if valid, else None (for previews like the memory estimate)."""
        self.errors()
        return self._cfg if not self._errors else None

    def config_ignoring_machine(self) -> RunConfig | None:
        """The config if it is valid by the config's own rules, whatever this machine can do.

        The memory estimate uses this: planning a QLoRA run on a laptop is legitimate.
        """
        self.errors()
        return self._cfg

    # ---- Internals
    def _validate(self) -> None:
        errors: dict[str, str] = {}
        self._cfg = None
        self._file_keys = set()
        try:
            self._cfg = RunConfig.from_dict(self._values)
        except ConfigErrors as e:
            for err in e.errors:
                _add(errors, err.key or "", err.message)
        if self._cfg is not None:
            from engine.train import data_file_errors

            # A missing dataset or template file is said beside its field, not when Start fails.
            for err in data_file_errors(self._cfg):
                _add(errors, err.key or "", err.message)
                self._file_keys.add(err.key or "")
        if self._cfg is not None and self._env is not None:
            from engine.precision import environment_errors

            for err in environment_errors(self._cfg, self._env):
                _add(errors, err.key or "", err.message)
                self._file_keys.discard(err.key or "")  # a machine problem on that key counts whatever the grid
        self._errors = errors


def _add(errors: dict[str, str], key: str, message: str) -> None:
    errors[key] = f"{errors[key]}\n{message}" if key in errors else message
