"""The app's settings file (``settings.ini`` where ``engine.paths.settings_path`` puts it), and the
lists of recent things it keeps."""

from __future__ import annotations

import json
from pathlib import Path

from PySide6.QtCore import QSettings

from engine.paths import settings_path


def studio_settings() -> QSettings:
    path = settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    return QSettings(str(path), QSettings.Format.IniFormat)


def kept_dict(key: str) -> tuple[dict | None, str]:
    """The JSON object kept under ``key`` (an area's form as it was left) and its text; None when
    there is none, or what is there isn't a JSON object (an older or hand-edited file)."""
    text = studio_settings().value(key, "")
    if not isinstance(text, str) or not text:
        return None, ""
    try:
        value = json.loads(text)
    except ValueError:
        return None, text
    return (value if isinstance(value, dict) else None), text


def recent_list(key: str) -> list[str]:
    """A list of strings kept under ``key`` (QSettings gives a lone value back as a plain string)."""
    value = studio_settings().value(key, [])
    if isinstance(value, str):
        value = [value]
    return [v for v in (value or []) if isinstance(v, str) and v]


def remember(key: str, item: str, most: int) -> None:
    """Put ``item`` first in the list under ``key``, keeping ``most`` items."""
    items = [item] + [v for v in recent_list(key) if v != item]
    studio_settings().setValue(key, items[:most])


def forget(key: str, item: str | None = None) -> None:
    """Take ``item`` out of the list under ``key``, or empty the list."""
    s = studio_settings()
    if item is None:
        s.remove(key)
    else:
        s.setValue(key, [v for v in recent_list(key) if v != item])


RECENT_FILES_KEY = "dataset/recent_files"
LAST_FILE_KEY = "dataset/last_file"
MAX_RECENT_FILES = 10


def recent_files() -> list[Path]:
    """Dataset files opened lately, newest first (some may have been moved or deleted since)."""
    return [Path(p) for p in recent_list(RECENT_FILES_KEY)]


def remember_file(path: Path, *, recent: bool = True) -> None:
    """``path`` is the file the Dataset area now edits: it is opened again at the next start, and
    (``recent``) listed first under Open ▾."""
    path = Path(path).resolve()
    studio_settings().setValue(LAST_FILE_KEY, str(path))
    if recent:
        remember(RECENT_FILES_KEY, str(path), MAX_RECENT_FILES)


def last_file() -> Path | None:
    """The file the Dataset area edited when the app last ran (it may be gone since)."""
    value = studio_settings().value(LAST_FILE_KEY, "")
    return Path(value) if isinstance(value, str) and value else None
