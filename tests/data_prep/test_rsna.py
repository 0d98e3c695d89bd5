"""RSNA parser: hand-built CSVs and DICOMs with counts known by construction, plus synthesized data."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data_prep.errors import LabelFileError
from data_prep.records import RSNA_CLASSES, BadFile
from data_prep.rsna import label_rows_boxes_xyxy, parse_rsna, read_class_info, read_label_boxes, read_train_labels
from data_prep.synth import synth_rsna
from data_prep.synth.rsna import PIXEL_SPACINGS_MM
from tests.data_prep.dicom_fixtures import textured_image, write_jpeg_baseline_dicom

LABEL_HEADER = "patientId,x,y,width,height,Target\n"
CLASS_HEADER = "patientId,class\n"
SIZE_PX = 64

# The fixtures write RSNA's real, non-conformant ages ('58'); pydicom warns about each one.
pytestmark = pytest.mark.filterwarnings("ignore:Invalid value for VR AS")


def write_rsna_folder(
    root: Path,
    labels_csv: str,
    class_csv: str,
    images: dict[str, dict] | list[str],
    *,
    test_images: list[str] = (),
) -> Path:
    """A tiny RSNA folder: the two CSVs as given (text), and one 64x64 JPEG-Baseline DICOM per image id.

    `images` maps patientId -> header overrides (sex, age, view, pixel_spacing, size).
    """
    root.mkdir(parents=True, exist_ok=True)
    (root / "stage_2_train_labels.csv").write_text(labels_csv)
    (root / "stage_2_detailed_class_info.csv").write_text(class_csv)
    for folder, ids in (("stage_2_train_images", images), ("stage_2_test_images", test_images)):
        (root / folder).mkdir(exist_ok=True)
        overrides_of = ids if isinstance(ids, dict) else {pid: {} for pid in ids}
        for i, (pid, overrides) in enumerate(overrides_of.items()):
            overrides = dict(overrides)
            size = overrides.pop("size", (SIZE_PX, SIZE_PX))
            write_jpeg_baseline_dicom(
                root / folder / f"{pid}.dcm", textured_image(*size, seed=i), patient_id=pid, **overrides
            )
    return root


def record_rows(records) -> list[dict]:
    """Records as comparable dicts (ImageRecord holds numpy arrays, so == on records is ambiguous)."""
    return [r.to_row() for r in records]


# Four images: two negatives of different classes, a positive with two boxes (so its class row
# appears twice), a positive with one box.
GOOD_LABELS = (
    LABEL_HEADER
    + "neg-normal,,,,,0\n"
    + "neg-other,,,,,0\n"
    + "pos-two,10,12,20,30,1\n"
    + "pos-two,30.5,5,25.5,40,1\n"
    + "pos-one,0,0,64,64,1\n"
)
GOOD_CLASSES = (
    CLASS_HEADER
    + "neg-normal,Normal\n"
    + "neg-other,No Lung Opacity / Not Normal\n"
    + "pos-two,Lung Opacity\n"
    + "pos-two,Lung Opacity\n"
    + "pos-one,Lung Opacity\n"
)


def test_parse_hand_built_folder(tmp_path):
    root = write_rsna_folder(
        tmp_path / "rsna",
        GOOD_LABELS,
        GOOD_CLASSES,
        {
            "neg-normal": {"sex": "M", "age": "58", "view": "PA", "pixel_spacing": (0.168, 0.17)},
            "neg-other": {"sex": "F", "age": "151", "view": "AP"},
            "pos-two": {"sex": "F", "age": "7", "view": "AP"},
            "pos-one": {"size": (64, 48), "view": "AP"},
        },
        test_images=["unlabeled-1", "unlabeled-2"],
    )
    # pos-one's box (0, 0, 64, 64) does not fit its 48-wide image: it must be reported, not clipped.
    result = parse_rsna(root)

    by_id = {r.image_id: r for r in result.records}
    assert sorted(by_id) == ["neg-normal", "neg-other", "pos-two"]
    assert result.bad_files == [
        BadFile(
            path="stage_2_train_images/pos-one.dcm",
            reason="patientId pos-one: box [0, 0, 64, 64] (x,y,width,height; line 6) extends outside the 48x64 image",
        )
    ]
    assert result.duplicate_class_rows == 1
    assert result.duplicate_label_rows == 0
    assert result.images_without_labels == []
    assert result.labels_without_images == []
    assert result.test_image_paths == ["stage_2_test_images/unlabeled-1.dcm", "stage_2_test_images/unlabeled-2.dcm"]

    pos = by_id["pos-two"]
    assert (pos.dataset, pos.patient_id, pos.path) == ("rsna", "pos-two", "stage_2_train_images/pos-two.dcm")
    assert (pos.rsna_class, pos.target, pos.has_box_labels, pos.split) == ("Lung Opacity", 1, True, None)
    assert pos.boxes_xyxy.dtype == np.float32
    # (x, y, w, h) -> (x, y, x + w, y + h), worked by hand.
    np.testing.assert_array_equal(pos.boxes_xyxy, np.array([[10, 12, 30, 42], [30.5, 5, 56, 45]], np.float32))

    neg = by_id["neg-normal"]
    assert (neg.rsna_class, neg.target, neg.boxes_xyxy.shape) == ("Normal", 0, (0, 4))
    assert (neg.sex, neg.age_years, neg.age_valid, neg.view_position) == ("M", 58.0, True, "PA")
    assert neg.pixel_spacing_mm == (0.168, 0.17)  # (row, column) from the header, not square
    assert (neg.height, neg.width) == (64, 64)
    other = by_id["neg-other"]
    assert (other.rsna_class, other.age_years, other.age_valid) == ("No Lung Opacity / Not Normal", 151.0, False)


def test_records_are_sorted_and_workers_agree(tmp_path):
    ids = [f"p{i:02d}" for i in range(12)]
    labels = LABEL_HEADER + "".join(f"{pid},,,,,0\n" for pid in ids)
    classes = CLASS_HEADER + "".join(f"{pid},Normal\n" for pid in ids)
    root = write_rsna_folder(tmp_path / "rsna", labels, classes, list(reversed(ids)))
    one = parse_rsna(root, workers=1)
    two = parse_rsna(root, workers=2)
    assert [r.image_id for r in one.records] == ids
    assert record_rows(one.records) == record_rows(two.records)


def _one_good_one_bad(tmp_path, bad_labels: str, bad_classes: str) -> tuple:
    labels = LABEL_HEADER + "good,,,,,0\n" + bad_labels
    classes = CLASS_HEADER + "good,Normal\n" + bad_classes
    root = write_rsna_folder(tmp_path / "rsna", labels, classes, ["good", "bad"])
    return parse_rsna(root)


@pytest.mark.parametrize(
    "bad_labels, bad_classes, reason",
    [
        (
            "bad,10,10,20,20,1\n",
            "bad,Normal\n",
            "patientId bad: Target=1 but class is 'Normal' (Target=1 exactly when class is 'Lung Opacity')",
        ),
        (
            "bad,,,,,0\n",
            "bad,Lung Opacity\n",
            "patientId bad: Target=0 but class is 'Lung Opacity' (Target=1 exactly when class is 'Lung Opacity')",
        ),
        (
            "bad,50,10,30,20,1\n",
            "bad,Lung Opacity\n",
            "patientId bad: box [50, 10, 30, 20] (x,y,width,height; line 3) extends outside the 64x64 image",
        ),
        (
            "bad,-1,10,30,20,1\n",
            "bad,Lung Opacity\n",
            "patientId bad: box [-1, 10, 30, 20] (x,y,width,height; line 3) extends outside the 64x64 image",
        ),
        (
            "bad,10,10,0,20,1\n",
            "bad,Lung Opacity\n",
            "patientId bad: line 3 of stage_2_train_labels.csv: box width and height must be positive, got 0x20",
        ),
        (
            "bad,10,10,20,20,1\nbad,,,,,1\n",
            "bad,Lung Opacity\nbad,Lung Opacity\n",
            "patientId bad: line 4 of stage_2_train_labels.csv: Target=1 row needs all of x,y,width,height",
        ),
        (
            "bad,10,10,20,20,0\n",
            "bad,Normal\n",
            "patientId bad: line 3 of stage_2_train_labels.csv: Target=0 row has box coordinates "
            "(expected empty x,y,width,height)",
        ),
        (
            "bad,10,10,,20,1\n",
            "bad,Lung Opacity\n",
            "patientId bad: line 3 of stage_2_train_labels.csv: Target=1 row needs all of x,y,width,height",
        ),
        (
            "bad,,10,,,0\n",
            "bad,Normal\n",
            "patientId bad: line 3 of stage_2_train_labels.csv: Target=0 row has box coordinates "
            "(expected empty x,y,width,height)",
        ),
        (
            "bad,10,10,20,20,1\nbad,,,,,0\n",
            "bad,Lung Opacity\n",
            "patientId bad: lines 3, 4 of stage_2_train_labels.csv: patientId bad has both Target=0 and Target=1 rows",
        ),
        (
            "bad,,,,,0\n",
            "bad,Pneumonia\n",
            "patientId bad: unknown class 'Pneumonia' (expected one of 'Normal', "
            "'No Lung Opacity / Not Normal', 'Lung Opacity')",
        ),
        (
            "bad,,,,,0\n",
            "bad,Normal\nbad,No Lung Opacity / Not Normal\n",
            "patientId bad: conflicting classes in stage_2_detailed_class_info.csv: "
            "['Normal', 'No Lung Opacity / Not Normal']",
        ),
        ("bad,,,,,0\n", "", "patientId bad: no row in stage_2_detailed_class_info.csv"),
        ("", "bad,Normal\n", "patientId bad: no row in stage_2_train_labels.csv"),
    ],
    ids=[
        "target1-class-normal",
        "target0-class-opacity",
        "box-past-right-edge",
        "box-negative-corner",
        "box-zero-width",
        "positive-empty-box",
        "negative-with-box",
        "incomplete-box",
        "negative-with-part-of-a-box",
        "targets-disagree",
        "unknown-class",
        "conflicting-classes",
        "no-class-row",
        "no-label-row",
    ],
)
def test_inconsistent_labels_make_that_image_a_bad_file(tmp_path, bad_labels, bad_classes, reason):
    result = _one_good_one_bad(tmp_path, bad_labels, bad_classes)
    assert [r.image_id for r in result.records] == ["good"]
    assert result.bad_files == [BadFile(path="stage_2_train_images/bad.dcm", reason=reason)]


def test_exact_duplicate_label_rows_collapse_and_are_counted(tmp_path):
    labels = LABEL_HEADER + "p,1,2,3,4,1\np,1,2,3,4,1\np,10,20,30,40,1\nn,,,,,0\nn,,,,,0\n"
    classes = CLASS_HEADER + "p,Lung Opacity\np,Lung Opacity\np,Lung Opacity\nn,Normal\nn,Normal\n"
    result = parse_rsna(write_rsna_folder(tmp_path / "rsna", labels, classes, ["p", "n"]))
    by_id = {r.image_id: r for r in result.records}
    assert len(by_id["p"].boxes_xyxy) == 2
    assert by_id["n"].boxes_xyxy.shape == (0, 4)
    assert (result.duplicate_label_rows, result.duplicate_class_rows) == (2, 3)
    assert result.bad_files == []


def test_labels_without_images_and_images_without_labels(tmp_path):
    labels = LABEL_HEADER + "both,,,,,0\nno-image-1,,,,,0\nno-image-2,5,5,5,5,1\n"
    classes = CLASS_HEADER + "both,Normal\nno-image-1,Normal\nno-image-2,Lung Opacity\nclass-only,Normal\n"
    root = write_rsna_folder(tmp_path / "rsna", labels, classes, ["both", "stray-a", "stray-b"])
    result = parse_rsna(root)
    assert [r.image_id for r in result.records] == ["both"]
    assert result.labels_without_images == ["class-only", "no-image-1", "no-image-2"]
    assert result.images_without_labels == ["stray-a", "stray-b"]
    assert result.bad_files == []


def test_corrupt_dicom_is_reported_and_the_rest_parsed(tmp_path):
    ids = ["a", "b", "c"]
    labels = LABEL_HEADER + "".join(f"{pid},,,,,0\n" for pid in ids) + "broken,,,,,0\nempty,,,,,0\n"
    classes = CLASS_HEADER + "".join(f"{pid},Normal\n" for pid in [*ids, "broken", "empty"])
    root = write_rsna_folder(tmp_path / "rsna", labels, classes, ids)
    (root / "stage_2_train_images" / "broken.dcm").write_bytes(b"this is not a DICOM file" * 10)
    (root / "stage_2_train_images" / "empty.dcm").write_bytes(b"")
    (root / "stage_2_train_images" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    result = parse_rsna(root, workers=2)
    assert [r.image_id for r in result.records] == ids
    assert [b.path for b in result.bad_files] == [
        "stage_2_train_images/broken.dcm",
        "stage_2_train_images/empty.dcm",
    ]
    assert all(b.reason for b in result.bad_files)
    assert result.junk_files == ["stage_2_train_images/.DS_Store"]


def test_without_headers_records_carry_no_header_fields(tmp_path):
    result = parse_rsna(
        write_rsna_folder(
            tmp_path / "rsna",
            GOOD_LABELS,
            GOOD_CLASSES,
            {
                "neg-normal": {},
                "neg-other": {},
                "pos-two": {},
                "pos-one": {"size": (64, 48)},
            },
        ),
        read_headers=False,
    )
    # Without the header the 48-wide image's size is unknown: its box passes the sign/size checks.
    assert [r.image_id for r in result.records] == ["neg-normal", "neg-other", "pos-one", "pos-two"]
    assert all(r.height is None and r.sex is None and r.view_position is None for r in result.records)


def test_missing_column_names_the_file_and_column(tmp_path):
    root = write_rsna_folder(tmp_path / "rsna", "patientId,x,y,width,height\np,,,,\n", GOOD_CLASSES, [])
    with pytest.raises(LabelFileError) as info:
        parse_rsna(root)
    path = root / "stage_2_train_labels.csv"
    assert str(info.value) == (
        f"{path}: missing column 'Target' (expected patientId,x,y,width,height,Target; found patientId,x,y,width,height)"
    )


def test_missing_class_column(tmp_path):
    root = write_rsna_folder(tmp_path / "rsna", GOOD_LABELS, "patientId,klass\np,Normal\n", [])
    with pytest.raises(LabelFileError, match=r"stage_2_detailed_class_info.csv: missing column 'class'"):
        parse_rsna(root)


@pytest.mark.parametrize(
    "body, message",
    [
        ("a,,,,,0\nb,12x,5,5,5,1\n", "line 3: column 'x': '12x' is not a number"),
        ("a,,,,,0\nb,1,5,5,inf,1\n", "line 3: column 'height': 'inf' is not a finite number"),
        ("a,,,,,yes\n", "line 2: column 'Target': 'yes' is not 0 or 1"),
        ("a,,,,,2\n", "line 2: column 'Target': '2' is not 0 or 1"),
        ("a,,,,,0\n,,,,,0\n", "line 3: empty patientId"),
        ("a,1\n", "line 2: column 'Target': '' is not 0 or 1"),  # a short row
        ("a,,,,,0,7\n", "line 2: more fields than the 6 in the header"),
        (
            "a,,,,,0\nb,,,,,0,7\n",
            "not a readable CSV: Error tokenizing data. C error: Expected 6 fields in line 3, saw 7",
        ),
    ],
)
def test_malformed_label_values_name_the_line(tmp_path, body, message):
    path = tmp_path / "labels.csv"
    path.write_text(LABEL_HEADER + body)
    with pytest.raises(LabelFileError) as info:
        read_train_labels(path)
    assert str(info.value) == f"{path}: {message}"


def test_blank_lines_keep_line_numbers_right(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text(LABEL_HEADER + "a,,,,,0\n\nb,x,1,1,1,1\n")
    with pytest.raises(LabelFileError, match=r"line 4: column 'x'"):
        read_train_labels(path)


def test_patient_ids_stay_text_and_empty_fields_are_not_nan(tmp_path):
    # A purely numeric id must not become 123.0, and a literal 'NA' id must not become NaN.
    path = tmp_path / "labels.csv"
    path.write_text(LABEL_HEADER + "00123,,,,,0\nNA,1,2,3,4,1\n")
    rows, duplicates = read_train_labels(path)
    assert list(rows) == ["00123", "NA"]
    assert rows["00123"][0].box_xywh is None
    assert rows["NA"][0].box_xywh == (1.0, 2.0, 3.0, 4.0)
    assert duplicates == 0


def test_missing_csv_and_empty_csv(tmp_path):
    with pytest.raises(LabelFileError, match=r"classes.csv: file not found"):
        read_class_info(tmp_path / "classes.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(LabelFileError, match=r"empty.csv: file is empty"):
        read_class_info(tmp_path / "empty.csv")


def test_bom_and_whitespace_in_header_are_tolerated(tmp_path):
    path = tmp_path / "classes.csv"
    path.write_bytes("\ufeffpatientId , class\na , Normal\n".encode("utf-8"))
    classes, duplicates = read_class_info(path)
    assert classes == {"a": ["Normal"]}


# --- read_label_boxes: the labels file alone -----------------------------------------------------

LABELS = (
    LABEL_HEADER
    + "neg,,,,,0\n"
    + "pos,264,152,213,379,1\n"
    + "pos,562,152,256,453,1\n"
    + "pos,562,152,256,453,1\n"  # an exact duplicate row, collapsed
)


def _labels_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "labels.csv"
    path.write_text(text)
    return path


def test_label_rows_boxes_xyxy_one_patient_at_a_time(tmp_path):
    path = _labels_file(tmp_path, LABELS + "bad,,,,,1\n")
    rows, _ = read_train_labels(path)
    target, boxes = label_rows_boxes_xyxy(path, "pos", rows["pos"])
    assert target == 1 and boxes.tolist() == [[264, 152, 477, 531], [562, 152, 818, 605]]
    assert label_rows_boxes_xyxy(path, "neg", rows["neg"])[1].shape == (0, 4)
    with pytest.raises(LabelFileError, match=r"labels\.csv: line 6: Target=1 row needs all of x,y,width,height"):
        label_rows_boxes_xyxy(path, "bad", rows["bad"])


def test_read_label_boxes(tmp_path):
    labels = read_label_boxes(_labels_file(tmp_path, LABELS))
    assert list(labels) == ["neg", "pos"]
    assert labels["neg"].shape == (0, 4) and labels["neg"].dtype == np.float32
    assert labels["pos"].dtype == np.float32
    # (x, y, w, h) -> (x, y, x + w, y + h): 264 + 213 = 477, 152 + 379 = 531; 562 + 256 = 818, 152 + 453 = 605.
    np.testing.assert_array_equal(labels["pos"], [[264, 152, 477, 531], [562, 152, 818, 605]])


def test_read_label_boxes_keeps_file_order_and_float_text(tmp_path):
    # Patients in order of first appearance, a patient's boxes in line order, even when its rows
    # are not adjacent; '264.5' style text as the real file (and synth) write it.
    text = LABEL_HEADER + "zed,10.5,20.25,30,40.5,1\nalpha,,,,,0\nzed,0.0,0.0,1.0,2.0,1\n"
    labels = read_label_boxes(_labels_file(tmp_path, text))
    assert list(labels) == ["zed", "alpha"]
    np.testing.assert_array_equal(labels["zed"], [[10.5, 20.25, 40.5, 60.75], [0, 0, 1, 2]])


def test_read_label_boxes_does_not_bound_boxes_by_an_image(tmp_path):
    # The labels file does not know the image size: past the 1024 grid and negative corners pass unchanged.
    text = LABEL_HEADER + "p,1000,-5,100,10,1\n"
    np.testing.assert_array_equal(read_label_boxes(_labels_file(tmp_path, text))["p"], [[1000, -5, 1100, 5]])


@pytest.mark.parametrize(
    "rows, message",
    [
        ("a,,,,,1\n", "line 2: Target=1 row needs all of x,y,width,height"),
        ("a,1,2,,4,1\n", "line 2: Target=1 row needs all of x,y,width,height"),
        ("a,1,2,3,4,0\n", "line 2: Target=0 row has box coordinates (expected empty x,y,width,height)"),
        ("a,,,3,,0\n", "line 2: Target=0 row has box coordinates (expected empty x,y,width,height)"),
        ("a,1,2,0,4,1\n", "line 2: box width and height must be positive, got 0x4"),
        ("a,1,2,3,-0.5,1\n", "line 2: box width and height must be positive, got 3x-0.5"),
        ("a,,,,,0\na,1,2,3,4,1\n", "lines 2, 3: patientId a has both Target=0 and Target=1 rows"),
        # the duplicate on line 3 collapses, so the disagreeing rows are lines 2 and 4
        ("a,,,,,0\na,,,,,0\na,1,2,3,4,1\n", "lines 2, 4: patientId a has both Target=0 and Target=1 rows"),
        # the first patient in file order that breaks a rule is reported
        (
            "ok,,,,,0\nb,1,2,3,4,0\nc,,,,,1\n",
            "line 3: Target=0 row has box coordinates (expected empty x,y,width,height)",
        ),
        ("", "no label rows after the header"),
        ("\n\n", "no label rows after the header"),
    ],
)
def test_malformed_labels_name_file_and_line(tmp_path, rows, message):
    path = _labels_file(tmp_path, LABEL_HEADER + rows)
    with pytest.raises(LabelFileError) as info:
        read_label_boxes(path)
    assert str(info.value) == f"{path}: {message}"


def test_read_label_boxes_broken_cells_come_from_the_shared_parser(tmp_path):
    path = _labels_file(tmp_path, LABEL_HEADER + "a,1,two,3,4,1\n")
    with pytest.raises(LabelFileError) as info:
        read_label_boxes(path)
    assert str(info.value) == f"{path}: line 2: column 'y': 'two' is not a number"
    with pytest.raises(LabelFileError, match=r"nope.csv: file not found"):
        read_label_boxes(tmp_path / "nope.csv")
    with pytest.raises(LabelFileError, match=r"missing column 'Target'"):
        read_label_boxes(_labels_file(tmp_path, "patientId,x,y,width,height\np,,,,\n"))


def test_both_readers_apply_the_same_rules(tmp_path):
    # One broken patient: read_label_boxes rejects the file naming the line, parse_rsna makes
    # that image a BadFile with the same problem, and both agree on the good patient's boxes.
    labels = LABEL_HEADER + "good,1,2,3,4,1\nbad,5,6,0,8,1\n"
    classes = CLASS_HEADER + "good,Lung Opacity\nbad,Lung Opacity\n"
    root = write_rsna_folder(tmp_path / "rsna", labels, classes, ["good", "bad"])
    problem = "box width and height must be positive, got 0x8"
    with pytest.raises(LabelFileError) as info:
        read_label_boxes(root / "stage_2_train_labels.csv")
    assert str(info.value) == f"{root / 'stage_2_train_labels.csv'}: line 3: {problem}"
    result = parse_rsna(root)
    assert result.bad_files == [
        BadFile(
            path="stage_2_train_images/bad.dcm", reason=f"patientId bad: line 3 of stage_2_train_labels.csv: {problem}"
        )
    ]
    np.testing.assert_array_equal(result.records[0].boxes_xyxy, [[1, 2, 4, 6]])


# --- synthesized data -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synth_rsna_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth_rsna")
    summary = synth_rsna(root, n_images=40, n_test_images=3, size_px=128, seed=3)
    return root, summary


def test_parse_synthesized_rsna_counts(synth_rsna_root):
    root, summary = synth_rsna_root
    counts = summary.counts
    result = parse_rsna(root, workers=2)
    assert result.bad_files == [] and result.junk_files == []
    assert result.images_without_labels == [] and result.labels_without_images == []
    assert len(result.records) == counts["images"] == 40
    assert len(result.test_image_paths) == counts["test_images"] == 3
    assert result.duplicate_class_rows == counts["class_info_duplicate_rows"]
    assert result.duplicate_label_rows == 0
    assert sum(len(r.boxes_xyxy) for r in result.records) == counts["boxes"]
    assert Counter(r.rsna_class for r in result.records) == {c: counts[c] for c in RSNA_CLASSES if counts[c]}
    boxes_per_positive = Counter(len(r.boxes_xyxy) for r in result.records if r.target == 1)
    assert boxes_per_positive == {
        k: counts[f"positive_images_with_{k}_boxes"] for k in (1, 2, 3, 4) if counts[f"positive_images_with_{k}_boxes"]
    }
    for view in ("AP", "PA"):
        in_view = [r for r in result.records if r.view_position == view]
        assert (len(in_view), sum(r.target for r in in_view)) == (counts[view], counts[f"{view}_positive"])
    assert sum(not r.age_valid for r in result.records) == counts["age_quirks"]

    # and, independently of the summary, against the CSVs as written
    labels = pd.read_csv(root / "stage_2_train_labels.csv", dtype={"patientId": str})
    classes = pd.read_csv(root / "stage_2_detailed_class_info.csv", dtype={"patientId": str})
    per_image_class = classes.drop_duplicates().set_index("patientId")["class"]
    boxes_xywh = labels.dropna(subset=["x"])
    for record in result.records:
        assert record.rsna_class == per_image_class[record.image_id]
        rows = boxes_xywh[boxes_xywh.patientId == record.image_id][["x", "y", "width", "height"]].to_numpy()
        np.testing.assert_allclose(
            record.boxes_xyxy,
            np.concatenate([rows[:, :2], rows[:, :2] + rows[:, 2:]], axis=1) if len(rows) else np.zeros((0, 4)),
        )
        assert (record.height, record.width) == (128, 128)
        assert record.sex in ("M", "F") and record.pixel_spacing_mm is not None
        row_mm, column_mm = record.pixel_spacing_mm
        assert row_mm == column_mm and row_mm in PIXEL_SPACINGS_MM
        boxes = record.boxes_xyxy
        assert np.all(boxes[:, 2:] > boxes[:, :2]) and np.all(boxes >= 0) and np.all(boxes <= 128)


def test_read_label_boxes_agrees_with_parse_rsna_on_synthesized_data(synth_rsna_root):
    root, _summary = synth_rsna_root
    labels = read_label_boxes(root / "stage_2_train_labels.csv")
    records = parse_rsna(root, read_headers=False).records
    assert sorted(labels) == [r.image_id for r in records]
    for record in records:
        np.testing.assert_array_equal(labels[record.image_id], record.boxes_xyxy)
