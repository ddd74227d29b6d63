"""Build hook: ship the repository's ``resources/`` inside the wheel as ``engine/_resources``.

All metadata lives in ``pyproject.toml``. ``engine.paths.resources_dir()`` uses ``resources/``
next to the engine package in a source checkout, else ``engine/_resources`` inside an installed
wheel; setuptools' package-data cannot reach a folder outside the package, hence this copy
into the build tree. ``MANIFEST.in`` puts ``resources/`` into the sdist, so a wheel built from
the sdist carries it too.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

RESOURCES = Path(__file__).resolve().parent / "resources"


class BuildPyWithResources(build_py):
    def run(self):
        super().run()
        if not RESOURCES.is_dir():
            raise SystemExit(f"setup.py: {RESOURCES} is missing: the wheel would ship without the "
                             "demo model, dataset and presets")
        target = Path(self.build_lib) / "engine" / "_resources"
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(RESOURCES, target,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*"))


setup(cmdclass={"build_py": BuildPyWithResources})
