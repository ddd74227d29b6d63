"""Where things live: the embedded resources, and the user's runs, adapters and settings.

User data follows the platform's conventions (platformdirs), e.g. on Linux
``~/.local/share/finetune-studio``; ``FINETUNE_STUDIO_HOME`` overrides it (tests, portable
installs, lab machines with a shared data disk).
"""

from __future__ import annotations

import os
from pathlib import Path

APP_NAME = "finetune-studio"
REPO_ROOT = Path(__file__).resolve().parent.parent


def resources_dir() -> Path:
    """The ``resources/`` folder: the demo dataset, the demo model and the presets."""
    env = os.environ.get("FINETUNE_STUDIO_RESOURCES")
    if env:
        return Path(env)
    here = REPO_ROOT / "resources"
    if here.is_dir():
        return here
    # Installed as a wheel: resources are shipped inside the package as data.
    return Path(__file__).resolve().parent / "_resources"


def demo_dataset_path() -> Path:
    return resources_dir() / "demo" / "dataset.jsonl"


def demo_model_dir() -> Path:
    return resources_dir() / "demo" / "model"


def presets_dir() -> Path:
    return resources_dir() / "presets"


def data_home() -> Path:
    """Root of the user's data: runs, adapters, recovery files."""
    env = os.environ.get("FINETUNE_STUDIO_HOME")
    if env:
        return Path(env)
    from platformdirs import user_data_path

    return user_data_path(APP_NAME, appauthor=False)


def runs_dir() -> Path:
    return data_home() / "runs"


def adapters_dir() -> Path:
    return data_home() / "adapters"


def tokenized_cache_dir() -> Path:
    """Tokenized datasets kept by engine.data.tokenize, so resumed and repeated runs skip tokenizing."""
    return data_home() / "cache" / "tokenized"


def recovery_dir() -> Path:
    return data_home() / "recovery"


def settings_path() -> Path:
    env = os.environ.get("FINETUNE_STUDIO_HOME")
    if env:
        return Path(env) / "settings.ini"
    from platformdirs import user_config_path

    return user_config_path(APP_NAME, appauthor=False) / "settings.ini"
