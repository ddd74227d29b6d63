"""Finetune Studio's engine: data, methods, the memory estimate, training and the CLI.

The engine never imports Qt or ``gui`` (an import-linter contract checks this in CI).
Heavy libraries (torch, transformers, peft, datasets) are imported inside functions so
that ``import engine`` stays cheap for the GUI and the CLI's help.
"""

__version__ = "0.1.0"


def _quiet_known_library_noise() -> None:
    """Silence two messages every run would print that are neither actionable nor ours.

    - bitsandbytes' CPU backend logs a warning when the optional ``kernels`` package (which
      would fetch a kernel from the Hub, which we never do) is absent.
    - transformers 5.24 deprecates ``is_gradient_checkpointing``, which PEFT 0.21 still calls.
    """
    import logging
    import warnings

    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)


_quiet_known_library_noise()

OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def stay_offline() -> None:
    """Tell huggingface_hub, transformers and datasets that there is no network, for this process
    and the workers it starts: nothing is ever downloaded, and a library's own check (PEFT asking
    the Hub whether a base's config exists, a tokenizer's update check) fails at once instead of
    waiting on a machine without internet. Called by the entry points before those libraries are
    imported (they read it at import); a value the user set is kept.
    """
    import logging
    import os

    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    # Offline, the ``kernels`` package (looked up by bitsandbytes' import on CPUs with AVX512-BF16)
    # logs "Skipping publisher trust check ... offline mode" on every command: true, and no news.
    logging.getLogger("kernels").setLevel(logging.ERROR)
