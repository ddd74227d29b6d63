"""Finetune Studio's engine: data, methods, the memory estimate, training and the CLI.

The engine never imports Qt or ``gui`` (an import-linter contract checks this in CI).
Heavy libraries (torch, transformers, peft, datasets) are imported inside functions so
that ``import engine`` stays cheap for the GUI and the CLI's help.
"""

__version__ = "0.1.0"
