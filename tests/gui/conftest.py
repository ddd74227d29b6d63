"""GUI tests run headless; the data home is a tmp dir (the autouse ``studio_home`` in tests/conftest.py)."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
