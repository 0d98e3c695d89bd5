"""detect.pacs.dicomweb against a hostile DICOMweb server on loopback (tests/detect/pacs/hostile_server.py):
UIDs that would build a path out of the scratch folder."""
from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app
from data_prep.errors import DicomWebError
from detect.pacs.dicomweb import connect, fetch_study_images
from tests.detect.pacs.hostile_server import STUDY_UID, dicom_bytes, hostile_dicomweb


@pytest.mark.parametrize("bad_uid", ["../../../../escape/pwned", "1.2.3/../../pwned", "..", "1.02.3"])
def test_a_retrieved_instance_whose_uid_is_a_path_writes_nothing_outside_the_folder(tmp_path, bad_uid):
    folder = tmp_path / "scratch" / "images"
    with hostile_dicomweb(instances=[dicom_bytes(bad_uid)]) as url:
        with pytest.raises(DicomWebError, match=rf"^{url}: WADO-RS answer: SOPInstanceUID '.*' is not a valid DICOM UID"):
            fetch_study_images(connect(url), url, STUDY_UID, folder)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written == []


def test_detect_infer_dicomweb_with_a_traversal_uid_is_one_line_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr("tempfile.tempdir", None)
    with hostile_dicomweb(instances=[dicom_bytes("../../../pwned")]) as url:
        result = CliRunner().invoke(app, ["infer", "--dicomweb", url, "--study", STUDY_UID,
                                          "--out", str(tmp_path / "out" / "b.json")])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "SOPInstanceUID '../../../pwned' is not a valid DICOM UID" in lines[0]
    assert not list(tmp_path.rglob("pwned*"))


def test_a_study_uid_that_is_not_a_uid_is_refused_before_any_request(tmp_path):
    with hostile_dicomweb() as url:
        with pytest.raises(DicomWebError, match=r"^--study: Study Instance UID '1\.2/\.\./x' is not a valid DICOM UID"):
            fetch_study_images(connect(url), url, "1.2/../x", tmp_path)


def test_a_good_instance_is_written_under_its_uid(tmp_path):
    with hostile_dicomweb(instances=[dicom_bytes("1.2.826.0.1.3680043.8.498.20009")]) as url:
        paths, skipped = fetch_study_images(connect(url), url, STUDY_UID, tmp_path)
    assert paths == [tmp_path / "1.2.826.0.1.3680043.8.498.20009.dcm"] and skipped == []
    assert Path(paths[0]).stat().st_size > 0
