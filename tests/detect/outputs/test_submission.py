"""Kaggle CSVs: the exact submission text, reading it back, and malformed files."""

import numpy as np
import pytest

from data_prep.errors import LabelFileError
from detect.outputs.submission import (
    SubmissionRow,
    format_prediction_string,
    parse_prediction_string,
    read_submission,
    submission_rows_from_entries,
    write_submission,
)


def test_prediction_string_exact_text_by_descending_confidence():
    boxes_xyxy = np.array([[264, 152, 477, 531], [562.4, 152, 818.4, 605]])
    text = format_prediction_string(boxes_xyxy, np.array([0.61, 0.95]))
    # conf 4 decimals, then x y width height (top-left, 1 decimal): 818.4 - 562.4 = 256, 605 - 152 = 453.
    assert text == "0.9500 562.4 152.0 256.0 453.0 0.6100 264.0 152.0 213.0 379.0"
    assert format_prediction_string(np.zeros((0, 4)), np.zeros(0)) == ""


def test_write_submission_exact_file(tmp_path):
    path = write_submission(
        tmp_path / "sub.csv",
        [
            SubmissionRow("p1", np.array([[10, 20, 110, 220]]), np.array([0.5])),
            SubmissionRow("p2"),
        ],
    )
    assert path.read_text() == "patientId,PredictionString\np1,0.5000 10.0 20.0 100.0 200.0\np2,\n"


def test_write_submission_refuses_duplicate_patient_ids(tmp_path):
    with pytest.raises(ValueError, match="duplicate patientId 'p1'"):
        write_submission(tmp_path / "sub.csv", [SubmissionRow("p1"), SubmissionRow("p1")])


def test_read_submission_round_trip(tmp_path):
    rows = [
        SubmissionRow("a", np.array([[10, 20, 110, 220], [300, 300, 400, 500]]), np.array([0.9, 0.25])),
        SubmissionRow("b"),
    ]
    read = read_submission(write_submission(tmp_path / "sub.csv", rows))
    assert list(read) == ["a", "b"]
    np.testing.assert_allclose(read["a"].boxes_xyxy, rows[0].boxes_xyxy)
    np.testing.assert_allclose(read["a"].scores, [0.9, 0.25])
    assert read["b"].boxes_xyxy.shape == (0, 4)


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "patient,PredictionString\na,\n",
            "line 1: header is 'patient,PredictionString', expected 'patientId,PredictionString'",
        ),
        (
            "patientId,PredictionString\na,\nb,0.5 1 2 3\n",
            "line 3: PredictionString has 4 numbers, expected groups of 5 (conf x y width height)",
        ),
        ("patientId,PredictionString\na,0.5 1 2 x 4\n", "line 2: PredictionString has a non-number 'x'"),
        ("patientId,PredictionString\na,0.5 1 2 -3 4\n", "line 2: PredictionString has a negative box width or height"),
        ("patientId,PredictionString\na,\n\nb,\na,0.5 1 2 3 4\n", "line 5: duplicate patientId 'a' (first on line 2)"),
        ("patientId,PredictionString\na,,extra\n", "line 2: expected 2 fields (patientId,PredictionString), got 3"),
        ("", "empty file (expected a header line)"),
    ],
)
def test_malformed_submission_names_file_and_line(tmp_path, text, message):
    path = tmp_path / "sub.csv"
    path.write_text(text)
    with pytest.raises(LabelFileError) as info:
        read_submission(path)
    assert str(info.value) == f"{path}: {message}"


def test_parse_prediction_string_xywh_to_xyxy():
    row = parse_prediction_string("0.5 10 20 30 40")
    np.testing.assert_allclose(row.boxes_xyxy, [[10, 20, 40, 60]])
    np.testing.assert_allclose(row.scores, [0.5])


def test_submission_rows_skip_failures_and_keep_the_first_of_a_patient():
    ok = {
        "source": "a/p1.dcm",
        "patient_id": "p1",
        "error": None,
        "boxes": [{"x": 1.0, "y": 2.0, "width": 2.0, "height": 2.0, "score": 0.5}],
    }
    again = {"source": "b/p1.dcm", "patient_id": "p1", "error": None, "boxes": []}
    png = {"source": "c/scan7.png", "patient_id": None, "error": None, "boxes": []}
    failed = {"source": "d/bad.dcm", "patient_id": None, "error": "not a DICOM file", "boxes": None}
    rows, duplicates = submission_rows_from_entries([ok, failed, again, png])
    assert [r.patient_id for r in rows] == ["p1", "scan7"] and duplicates == ["p1"]
    np.testing.assert_array_equal(rows[0].boxes_xyxy, [[1, 2, 3, 4]])
    np.testing.assert_array_equal(rows[0].scores, [0.5])


def test_the_csvs_for_people_neutralise_formula_like_text():
    from detect.compare.report import csv_text as compare_csv
    from detect.sweep.table import csv_text as sweep_csv

    for write in (compare_csv, sweep_csv):
        text = write([{"model": "=cmd|' /C calc'!A0", "auc": -0.5, "note": "-1.5"}])
        assert text.splitlines()[1] == "'=cmd|' /C calc'!A0,-0.5,-1.5"
