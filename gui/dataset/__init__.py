"""The dataset editor area: table and form, find/replace and filters, undo, lint panel, autosave.

Kept import-free so that :mod:`gui.dataset.lint_child` can run in a child process without
loading Qt.
"""
