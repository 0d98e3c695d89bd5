"""The real RSNA tables (tests/real_data/fetch_rsna_tables.py puts them in the cache).

In CI (CI=true, as .ci/run sets it) a missing table FAILS the test that needs it: CI fetches them
first, so their absence is a broken fetch, not a reason to pass quietly. Elsewhere the test is
skipped with the command that fetches them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.real_data.fetch_rsna_tables import ENV_VAR, HEADERS_NAME, LABELS_NAME, tables_dir


@pytest.fixture(scope="session")
def rsna_tables() -> tuple[Path, Path]:
    """(labels CSV, DICOM header table .csv.gz) of the real RSNA stage 2 training set."""
    directory = tables_dir()
    paths = (directory / LABELS_NAME, directory / HEADERS_NAME)
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        message = (
            f"real RSNA tables missing in {directory} ({', '.join(missing)}; ${ENV_VAR} overrides the folder): "
            "run `python tests/real_data/fetch_rsna_tables.py`"
        )
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(message)
        pytest.skip(message)
    return paths
