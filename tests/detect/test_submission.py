"""Kaggle CSVs: the exact submission text, reading it back, and malformed files."""
import numpy as np
import pytest

from data_prep.errors import LabelFileError
from detect.submission import (
    SubmissionRow,
    format_prediction_string,
    parse_prediction_string,
    read_label_boxes,
    read_submission,
    write_submission,
)


def test_prediction_string_exact_text_by_descending_confidence():
    boxes_xyxy = np.array([[264, 152, 477, 531], [562.4, 152, 818.4, 605]])
    text = format_prediction_string(boxes_xyxy, np.array([0.61, 0.95]))
    # conf 4 decimals, then x y width height (top-left, 1 decimal): 818.4 - 562.4 = 256, 605 - 152 = 453.
    assert text == "0.9500 562.4 152.0 256.0 453.0 0.6100 264.0 152.0 213.0 379.0"
    assert format_prediction_string(np.zeros((0, 4)), np.zeros(0)) == ""


def test_write_submission_exact_file(tmp_path):
    path = write_submission(tmp_path / "sub.csv", [
        SubmissionRow("p1", np.array([[10, 20, 110, 220]]), np.array([0.5])),
        SubmissionRow("p2"),
    ])
    assert path.read_text() == "patientId,PredictionString\np1,0.5000 10.0 20.0 100.0 200.0\np2,\n"


def test_write_submission_refuses_duplicate_patient_ids(tmp_path):
    with pytest.raises(ValueError, match="duplicate patientId 'p1'"):
        write_submission(tmp_path / "sub.csv", [SubmissionRow("p1"), SubmissionRow("p1")])


def test_read_submission_round_trip(tmp_path):
    rows = [SubmissionRow("a", np.array([[10, 20, 110, 220], [300, 300, 400, 500]]), np.array([0.9, 0.25])), SubmissionRow("b")]
    read = read_submission(write_submission(tmp_path / "sub.csv", rows))
    assert list(read) == ["a", "b"]
    np.testing.assert_allclose(read["a"].boxes_xyxy, rows[0].boxes_xyxy)
    np.testing.assert_allclose(read["a"].scores, [0.9, 0.25])
    assert read["b"].boxes_xyxy.shape == (0, 4)


@pytest.mark.parametrize(
    "text, message",
    [
        ("patient,PredictionString\na,\n", "line 1: header is 'patient,PredictionString', expected 'patientId,PredictionString'"),
        ("patientId,PredictionString\na,\nb,0.5 1 2 3\n", "line 3: PredictionString has 4 numbers, expected groups of 5 (conf x y width height)"),
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


LABELS = (
    "patientId,x,y,width,height,Target\n"
    "neg,,,,,0\n"
    "pos,264,152,213,379,1\n"
    "pos,562,152,256,453,1\n"
    "pos,562,152,256,453,1\n"  # an exact duplicate row, collapsed
)


def test_read_label_boxes(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text(LABELS)
    labels = read_label_boxes(path)
    assert list(labels) == ["neg", "pos"]
    assert labels["neg"].shape == (0, 4)
    np.testing.assert_allclose(labels["pos"], [[264, 152, 477, 531], [562, 152, 818, 605]])


@pytest.mark.parametrize(
    "rows, message",
    [
        ("a,,,,,1\n", "line 2: Target=1 row needs all of x,y,width,height"),
        ("a,1,2,3,4,0\n", "line 2: Target=0 row has box coordinates (expected empty x,y,width,height)"),
        ("a,1,2,0,4,1\n", "line 2: box width and height must be positive, got 0x4"),
        ("a,,,,,0\na,1,2,3,4,1\n", "lines 2, 3: patientId a has both Target=0 and Target=1 rows"),
    ],
)
def test_malformed_labels_name_file_and_line(tmp_path, rows, message):
    path = tmp_path / "labels.csv"
    path.write_text("patientId,x,y,width,height,Target\n" + rows)
    with pytest.raises(LabelFileError) as info:
        read_label_boxes(path)
    assert str(info.value) == f"{path}: {message}"


def test_labels_with_a_broken_number_come_from_the_shared_parser(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("patientId,x,y,width,height,Target\na,1,two,3,4,1\n")
    with pytest.raises(LabelFileError, match=r"line 2: column 'y': 'two' is not a number"):
        read_label_boxes(path)
