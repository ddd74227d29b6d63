"""Saved playground prompts: name, prompt, system message and generation settings.

Stored as JSON in ``data_home()/saved_prompts.json`` (written atomically), so a saved
prompt can be replayed against new adapters later.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine.files import atomic_write_text
from engine.paths import data_home

FILE_NAME = "saved_prompts.json"


@dataclass
class SavedPrompt:
    """One saved prompt."""

    name: str
    prompt: str
    system: str = ""
    settings: dict[str, Any] = field(default_factory=dict)


class PromptStore:
    """The saved prompts, in the order they were saved; a name saved again replaces the old one."""

    def __init__(self, path: Path | None = None):
        self.path = Path(path) if path else data_home() / FILE_NAME
        self.prompts: list[SavedPrompt] = self._read()

    def names(self) -> list[str]:
        return [p.name for p in self.prompts]

    def get(self, name: str) -> SavedPrompt | None:
        return next((p for p in self.prompts if p.name == name), None)

    def save(self, prompt: SavedPrompt) -> None:
        self.prompts = [p for p in self.prompts if p.name != prompt.name] + [prompt]
        self._write()

    def delete(self, name: str) -> bool:
        kept = [p for p in self.prompts if p.name != name]
        changed = len(kept) != len(self.prompts)
        self.prompts = kept
        if changed:
            self._write()
        return changed

    def _read(self) -> list[SavedPrompt]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return []
        out = []
        for row in data.get("prompts", []) if isinstance(data, dict) else []:
            if isinstance(row, dict) and isinstance(row.get("name"), str) and isinstance(row.get("prompt"), str):
                out.append(SavedPrompt(name=row["name"], prompt=row["prompt"], system=str(row.get("system") or ""),
                                       settings=dict(row.get("settings") or {})))
        return out

    def _write(self) -> None:
        atomic_write_text(self.path, json.dumps({"prompts": [asdict(p) for p in self.prompts]}, indent=2,
                                                ensure_ascii=False) + "\n")
