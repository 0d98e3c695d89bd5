"""Every input the fuzzer (tests/fuzz/fuzz_ingest.py) found to crash a reader, replayed: each
must now end in the project's DetectError family, in one line, or be read."""

from __future__ import annotations

from pathlib import Path

import pytest

from data_prep.dicom import read_dicom, read_dicom_header
from data_prep.errors import DetectError
from data_prep.rsna import read_class_info, read_train_labels
from detect.config import load_config
from detect.outputs.submission import read_submission

CRASHES = Path(__file__).parent / "fuzz" / "crashes"
READERS = {
    "dicom": (read_dicom, read_dicom_header),
    "header": (read_dicom_header,),
    "labels": (read_train_labels, read_class_info),
    "submission": (read_submission,),
    "recipe": (load_config,),
}
# A DICOMweb answer needs a server: tests/detect/pacs/test_dicomweb_hostile.py replays those on loopback.
REPLAYED_ELSEWHERE = {"multipart"}
CASES = sorted(
    (target.name, crash)
    for target in CRASHES.iterdir()
    if target.is_dir() and target.name not in REPLAYED_ELSEWHERE
    for crash in target.iterdir()
)


def test_every_target_has_a_reader():
    assert {target.name for target in CRASHES.iterdir() if target.is_dir()} <= set(READERS) | REPLAYED_ELSEWHERE


@pytest.mark.parametrize("target, crash", CASES, ids=[f"{t}/{c.name[:14]}" for t, c in CASES])
def test_fuzz_crash_is_a_one_line_detect_error(tmp_path, target, crash):
    suffix = {"dicom": ".dcm", "header": ".dcm", "recipe": ".yaml"}.get(target, ".csv")
    path = tmp_path / f"input{suffix}"
    path.write_bytes(crash.read_bytes())
    for read in READERS[target]:
        try:
            read(path)
        except DetectError as exc:
            assert "\n" not in str(exc) and str(exc).startswith(f"{path}: ")
