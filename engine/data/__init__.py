"""Datasets: reading and writing every common format, lint, split and content hash, preview.

The editor (``gui/dataset``) and the trainer both go through this package; it never
imports Qt. Heavy imports (numpy, pyarrow, transformers) happen inside the functions
that need them, so importing this package stays cheap.
"""

# The functions are bound after their submodules are imported, so ``engine.data.lint`` and
# ``engine.data.preview`` name the functions (an import of the submodule sets the package
# attribute only on first load, which these imports already did).
from engine.data.formats import cli_convert, export, load_dataset_file, save_dataset_file
from engine.data.lint import Finding, LintReport, cli_check, lint
from engine.data.preview import cli_preview, preview
from engine.data.records import DatasetFile, Record, RecordFormat, Schema
from engine.data.split import cli_split, content_hash, train_eval_split

__all__ = ["DatasetFile", "Record", "RecordFormat", "Schema", "load_dataset_file", "save_dataset_file",
           "export", "lint", "Finding", "LintReport", "cli_check", "preview", "content_hash",
           "train_eval_split", "cli_convert", "cli_preview", "cli_split"]
