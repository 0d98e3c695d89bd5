"""The installed package's version, from its metadata (pyproject.toml's `version`).

A source tree that was never installed (PYTHONPATH=. on a fresh clone) has no metadata; it reads
the version from pyproject.toml beside it instead, so both ways report the same number.
"""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

UNKNOWN_VERSION = "0+unknown"


def _from_pyproject(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return UNKNOWN_VERSION
    match = re.search(r'^version\s*=\s*"([^"]+)"', text, re.MULTILINE)
    return match.group(1) if match else UNKNOWN_VERSION


def package_version() -> str:
    """The installed distribution's version; in a source tree without metadata, pyproject.toml's."""
    try:
        return version("detect")
    except PackageNotFoundError:
        return _from_pyproject(Path(__file__).resolve().parents[1] / "pyproject.toml")


__version__ = package_version()
