"""detect.outputs.dicom_sr: the TID 1500 SR of a run validates with dciodvfy and DCMTK, and
reads back (highdicom and plain pydicom) to the same run's boxes.json, coordinate by coordinate."""

from __future__ import annotations

import highdicom as hd
import numpy as np
import pydicom
import pytest

from data_prep.dicom import read_dicom_header
from detect.outputs.dicom_common import (
    CODE_ABSENT,
    CODE_CERTAINTY,
    CODE_HEIGHT,
    CODE_PNEUMONIA,
    CODE_PRESENT,
    CODE_WIDTH,
    AlgorithmInfo,
    DicomOutputError,
)
from detect.outputs.dicom_sr import build_sr
from detect.outputs.uids import derived_uid, file_sha256
from detect.predictions import ImagePrediction, OperatingPoint
from tests.detect.outputs.dicom_run import SPACING_MM, infer_with_dicom_outputs
from tests.dicom_tools import error_lines, run_tool

TOLERANCE_PX = 0.01


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return infer_with_dicom_outputs(tmp_path_factory.mktemp("sr"))


def _sr_of(run, entry) -> pydicom.Dataset:
    return pydicom.dcmread(run.sr_dir / f"{entry['sop_instance_uid']}_SR.dcm")


def _expected_polylines(entry) -> list[np.ndarray]:
    return [
        np.array(
            [
                [b["x"], b["y"]],
                [b["x"] + b["width"], b["y"]],
                [b["x"] + b["width"], b["y"] + b["height"]],
                [b["x"], b["y"] + b["height"]],
                [b["x"], b["y"]],
            ]
        )
        for b in entry["boxes"]
    ]


def _scoords(item: pydicom.Dataset) -> list[pydicom.Dataset]:
    """Every SCOORD content item under `item`, in document order (plain pydicom, no highdicom)."""
    found = []
    for child in item.get("ContentSequence", []):
        if child.ValueType == "SCOORD":
            found.append(child)
        found += _scoords(child)
    return found


def test_one_sr_per_dicom_in_the_source_study_in_a_new_series(run):
    assert len(run.boxes["images"]) == 2 and len(list(run.sr_dir.glob("*_SR.dcm"))) == 2
    for entry in run.boxes["images"]:
        sr = _sr_of(run, entry)
        assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
        assert sr.StudyInstanceUID == entry["study_instance_uid"]
        assert sr.SeriesInstanceUID != entry["series_instance_uid"]
        evidence = sr.CurrentRequestedProcedureEvidenceSequence[0]
        assert evidence.StudyInstanceUID == entry["study_instance_uid"]
        assert evidence.ReferencedSeriesSequence[0].SeriesInstanceUID == entry["series_instance_uid"]
        assert (
            evidence.ReferencedSeriesSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID
            == entry["sop_instance_uid"]
        )
        assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"
        assert sr.PatientID == entry["patient_id"] and str(sr.PatientName) == "Doe^Jane"


def test_every_coordinate_read_with_highdicom_matches_boxes_json(run):
    n_boxes = 0
    for entry in run.boxes["images"]:
        report = hd.sr.srread(run.sr_dir / f"{entry['sop_instance_uid']}_SR.dcm").content
        groups = report.get_planar_roi_measurement_groups()
        assert len(groups) == len(entry["boxes"])
        for group, expected, box in zip(groups, _expected_polylines(entry), entry["boxes"]):
            assert group.roi.graphic_type == hd.sr.GraphicTypeValues.POLYLINE
            np.testing.assert_allclose(group.roi.value, expected, atol=TOLERANCE_PX)
            assert (
                group.roi.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID
                == entry["sop_instance_uid"]
            )
            certainty = group.get_measurements(name=CODE_CERTAINTY)[0].value
            assert certainty == pytest.approx(box["score"], abs=1e-6)
            width_mm = group.get_measurements(name=CODE_WIDTH)[0].value
            height_mm = group.get_measurements(name=CODE_HEIGHT)[0].value
            assert width_mm == pytest.approx(box["width"] * SPACING_MM[1], abs=1e-3)  # columns: x
            assert height_mm == pytest.approx(box["height"] * SPACING_MM[0], abs=1e-3)  # rows: y
            n_boxes += 1
        image_group = report.get_image_measurement_groups()[0]
        assert image_group.get_measurements(name=CODE_CERTAINTY)[0].value == pytest.approx(
            entry["pneumonia_probability"], abs=1e-6
        )
        decision = image_group.get_qualitative_evaluations(name=CODE_PNEUMONIA)[0].value
        assert decision == (CODE_PRESENT if entry["pneumonia"] else CODE_ABSENT)
    assert n_boxes > 0  # the tiny checkpoint is biased to give boxes: the comparison above is not empty


def test_every_coordinate_read_with_plain_pydicom_matches_boxes_json(run):
    for entry in run.boxes["images"]:
        scoords = _scoords(_sr_of(run, entry))
        assert len(scoords) == len(entry["boxes"]) > 0
        for item, expected in zip(scoords, _expected_polylines(entry)):
            assert item.GraphicType == "POLYLINE"
            points = np.asarray(item.GraphicData, dtype=np.float64).reshape(-1, 2)  # (column, row) pairs
            assert points.shape == (5, 2) and np.array_equal(points[0], points[-1])  # closed
            np.testing.assert_allclose(points, expected, atol=TOLERANCE_PX)
            source = item.ContentSequence[0].ReferencedSOPSequence[0]
            assert source.ReferencedSOPInstanceUID == entry["sop_instance_uid"]


def test_dciodvfy_finds_no_error_in_the_sr(run):
    path = next(run.sr_dir.glob("*_SR.dcm"))
    done = run_tool("dciodvfy", path)
    output = done.stdout + done.stderr
    assert "Comprehensive3DSR" in output
    assert error_lines(output) == [], output


def test_dsrdump_and_dcmdump_read_the_sr_without_error(run):
    path = next(run.sr_dir.glob("*_SR.dcm"))
    dump = run_tool("dsrdump", path)
    assert dump.returncode == 0 and error_lines(dump.stdout + dump.stderr) == [], dump.stderr
    assert "Imaging Measurement Report" in dump.stdout and "POLYLINE" in dump.stdout
    assert '(112001,DCM,"Opacity")' in dump.stdout and '(233604007,SCT,"Pneumonia")' in dump.stdout
    raw = run_tool("dcmdump", "+L", path)
    assert raw.returncode == 0 and error_lines(raw.stderr) == [], raw.stderr


def test_the_sr_uid_is_a_function_of_source_and_checkpoint_and_repeats(run, tmp_path):
    entry = run.boxes["images"][0]
    expected = derived_uid(entry["sop_instance_uid"], file_sha256(run.checkpoint), "sr")
    assert _sr_of(run, entry).SOPInstanceUID == expected
    header = read_dicom_header(entry["source"])
    prediction = ImagePrediction(
        source=entry["source"],
        pneumonia_probability=0.2,
        pneumonia=False,
        operating_point=OperatingPoint("rsna", 0.4, "test"),
        box_outcome="not_pneumonia",
    )
    again = build_sr(header, prediction, AlgorithmInfo("detect x", "1", file_sha256(run.checkpoint)))
    assert again.SOPInstanceUID == expected and again.SeriesInstanceUID == _sr_of(run, entry).SeriesInstanceUID


def test_no_pneumonia_is_an_explicit_absent_finding_with_no_region(tmp_path, run):
    entry = run.boxes["images"][0]
    header = read_dicom_header(entry["source"])
    prediction = ImagePrediction(
        source=entry["source"],
        pneumonia_probability=0.12,
        pneumonia=False,
        operating_point=OperatingPoint("rsna", 0.4, "test"),
        box_outcome="not_pneumonia",
    )
    sr = build_sr(header, prediction, AlgorithmInfo("detect x", "1", "ab" * 32))
    path = tmp_path / "negative_SR.dcm"
    sr.save_as(path, enforce_file_format=True)
    report = hd.sr.srread(path).content
    assert report.get_planar_roi_measurement_groups() == []
    group = report.get_image_measurement_groups()[0]
    assert group.get_qualitative_evaluations(name=CODE_PNEUMONIA)[0].value == CODE_ABSENT
    done = run_tool("dciodvfy", path)
    assert error_lines(done.stdout + done.stderr) == [], done.stderr


def test_anonymize_blanks_patient_id_name_and_birth_date(tmp_path, run):
    anonymous = infer_with_dicom_outputs(tmp_path, anonymize=True, checkpoint=run.checkpoint)
    assert anonymous.boxes["anonymized"] is True
    assert all(entry["patient_id"] is None for entry in anonymous.boxes["images"])
    for path in list(anonymous.sr_dir.glob("*.dcm")) + list(anonymous.gsps_dir.glob("*.dcm")):
        ds = pydicom.dcmread(path)
        assert (ds.PatientID, str(ds.PatientName), ds.PatientBirthDate) == ("", "", "")
        assert (
            ds.StudyInstanceUID == anonymous.boxes["images"][0]["study_instance_uid"]
            or len(anonymous.boxes["images"]) > 1
        )


def test_a_source_without_uids_is_refused_with_its_name():
    prediction = ImagePrediction(source="photo.png", pneumonia_probability=0.5, pneumonia=True)
    with pytest.raises(DicomOutputError, match="photo.png: not a DICOM file"):
        build_sr(None, prediction, AlgorithmInfo("detect x", "1", "ab" * 32))
