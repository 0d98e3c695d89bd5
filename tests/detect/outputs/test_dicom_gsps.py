"""detect.outputs.dicom_gsps: the presentation state of a run validates with dciodvfy and
dcmdump and draws the same boxes as the run's boxes.json over the source image."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from data_prep.dicom import read_dicom_header
from detect.outputs.dicom_common import AlgorithmInfo
from detect.outputs.dicom_gsps import build_gsps
from tests.data_prep.dicom_fixtures import textured_image, write_jpeg_baseline_dicom
from tests.detect.outputs.dicom_run import infer_with_dicom_outputs
from tests.detect.outputs.test_dicom_charsets import _prediction
from tests.dicom_tools import error_lines, run_tool


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return infer_with_dicom_outputs(tmp_path_factory.mktemp("gsps"))


def test_each_box_is_a_closed_polyline_over_the_source_with_its_label(run):
    for entry in run.boxes["images"]:
        gsps = pydicom.dcmread(run.gsps_dir / f"{entry['sop_instance_uid']}_GSPS.dcm")
        assert gsps.SOPClassUID == "1.2.840.10008.5.1.4.1.1.11.1"  # Grayscale Softcopy Presentation State
        assert gsps.StudyInstanceUID == entry["study_instance_uid"]
        annotation = gsps.GraphicAnnotationSequence[0]
        assert annotation.ReferencedImageSequence[0].ReferencedSOPInstanceUID == entry["sop_instance_uid"]
        graphics = annotation.get("GraphicObjectSequence", [])
        assert len(graphics) == len(entry["boxes"]) > 0
        for graphic, box in zip(graphics, entry["boxes"]):
            points = np.asarray(graphic.GraphicData, dtype=np.float64).reshape(-1, 2)
            x2, y2 = box["x"] + box["width"], box["y"] + box["height"]
            expected = [[box["x"], box["y"]], [x2, box["y"]], [x2, y2], [box["x"], y2], [box["x"], box["y"]]]
            assert graphic.GraphicType == "POLYLINE" and graphic.GraphicAnnotationUnits == "PIXEL"
            np.testing.assert_allclose(points, expected, atol=0.01)
        texts = [t.UnformattedTextValue for t in annotation.TextObjectSequence]
        assert texts[:-1] == [f"opacity {i + 1}: {b['score']:.2f}" for i, b in enumerate(entry["boxes"])]
        assert texts[-1].startswith("pneumonia: p=" if entry["pneumonia"] else "no pneumonia: p=")


def test_dciodvfy_and_dcmdump_find_no_error_in_the_gsps(run):
    path = next(run.gsps_dir.glob("*_GSPS.dcm"))
    done = run_tool("dciodvfy", path)
    output = done.stdout + done.stderr
    assert "GrayscaleSoftcopyPresentationState" in output
    assert error_lines(output) == [], output
    raw = run_tool("dcmdump", "+L", path)
    assert raw.returncode == 0 and error_lines(raw.stderr) == [], raw.stderr
    assert "GraphicAnnotationSequence" in raw.stdout


@pytest.mark.parametrize(
    "photometric, shape, expected",
    [
        ("MONOCHROME2", None, "IDENTITY"),
        ("MONOCHROME2", "IDENTITY", "IDENTITY"),
        ("MONOCHROME1", None, "INVERSE"),
        ("MONOCHROME1", "INVERSE", "INVERSE"),
        ("MONOCHROME2", "INVERSE", "INVERSE"),
    ],
)
def test_the_presentation_state_keeps_the_sources_polarity(tmp_path, photometric, shape, expected):
    """A presentation state's Presentation LUT Shape replaces the image's own: IDENTITY over a
    MONOCHROME1 source would show it as a negative."""
    tags = {"PhotometricInterpretation": photometric, **({"PresentationLUTShape": shape} if shape else {})}
    source = write_jpeg_baseline_dicom(tmp_path / "source.dcm", textured_image(64, 64, seed=2), **tags)
    gsps = build_gsps(read_dicom_header(source), _prediction(source), AlgorithmInfo("detect x", "1", "ab" * 32))
    assert gsps.PresentationLUTShape == expected
    path = tmp_path / "gsps.dcm"
    gsps.save_as(path, enforce_file_format=True)
    done = run_tool("dciodvfy", path)
    assert error_lines(done.stdout + done.stderr) == [], done.stdout + done.stderr
