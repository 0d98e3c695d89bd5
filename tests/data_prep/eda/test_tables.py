"""data_prep.eda.tables: the label tables and the DICOM header table -> tidy images and boxes."""

import gzip
import math

import numpy as np
import pandas as pd
import pytest

from data_prep.eda.tables import (
    EdaSource,
    parse_spacing_mm,
    read_header_table,
    tables_from_label_files,
    tables_from_records,
)
from data_prep.errors import DataFormatError, LabelFileError
from data_prep.records import BadFile, ImageRecord

LABELS = """patientId,x,y,width,height,Target
neg-1,,,,,0
pos-2,10,20,100,200,1
pos-2,600,20,50,100,1
pos-2,600,20,50,100,1
neg-3,,,,,0
bad-4,,,,,1
pos-5,100,100,40,60,1
"""
CLASS_INFO = """patientId,class
neg-1,Normal
pos-2,Lung Opacity
pos-2,Lung Opacity
pos-2,Lung Opacity
neg-3,No Lung Opacity / Not Normal
bad-4,Lung Opacity
pos-5,Normal
extra-6,Normal
"""
# torchxrayvision's layout: an unnamed index column, PatientID, ages as bare numbers.
HEADERS = """,Filename,PatientAge,PatientID,PatientOrientation,PatientSex,PixelSpacing,ViewPosition
0,neg-1.dcm,58,neg-1,,F,0.14300000000000002,PA
1,pos-2.dcm,148,pos-2,,M,0.168,AP
2,neg-3.dcm,,neg-3,,,,
3,pos-5.dcm,058Y,pos-5,,M,0.139\\0.143,AP
4,only-header.dcm,30,only-header,,F,0.171,PA
5,neg-1.dcm,58,neg-1,,F,0.143,PA
"""


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_parse_spacing_mm_reads_every_written_form():
    assert parse_spacing_mm("0.14300000000000002") == (0.14300000000000002, 0.14300000000000002)
    assert parse_spacing_mm("0.139\\0.143") == (0.139, 0.143)
    assert parse_spacing_mm("[0.139, 0.143]") == (0.139, 0.143)
    assert parse_spacing_mm("['0.139', '0.143']") == (0.139, 0.143)
    assert parse_spacing_mm("abc") is None
    assert parse_spacing_mm("0") is None
    assert parse_spacing_mm("0.1\\0.2\\0.3") is None


def test_header_table_quirks(tmp_path):
    table = read_header_table(write(tmp_path / "headers.csv", HEADERS))
    fields = table.fields
    assert table.rows == 6 and table.duplicate_ids == 1
    assert list(fields.index) == ["neg-1", "pos-2", "neg-3", "pos-5", "only-header"]
    assert fields.loc["neg-1", "age_years"] == 58.0 and fields.loc["neg-1", "age_valid"]
    assert fields.loc["pos-2", "age_years"] == 148.0 and not fields.loc["pos-2", "age_valid"]  # flagged, kept
    assert fields.loc["pos-5", "age_years"] == 58.0  # the DICOM AS form too
    assert math.isnan(fields.loc["neg-3", "age_years"]) and fields.loc["neg-3", "age_valid"]
    assert pd.isna(fields.loc["neg-3", "sex"]) and pd.isna(fields.loc["neg-3", "view"])
    assert fields.loc["pos-5", "spacing_row_mm"] == 0.139 and fields.loc["pos-5", "spacing_col_mm"] == 0.143
    assert math.isnan(fields.loc["neg-1", "height_px"])  # no Rows/Columns in the table
    missing = {m.column: m.missing for m in table.missing}
    assert "Unnamed: 0" not in missing
    assert missing["PatientOrientation"] == 6 and missing["PatientAge"] == 1 and missing["PatientSex"] == 1


def test_header_table_gzip_and_filename_ids(tmp_path):
    path = tmp_path / "headers.csv.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write("Filename,PatientAge,Rows,Columns\nabc.dcm,40,1024,1000\n")
    table = read_header_table(path)
    assert list(table.fields.index) == ["abc"]
    assert table.fields.loc["abc", "height_px"] == 1024 and table.fields.loc["abc", "width_px"] == 1000


def test_header_table_without_id_column_names_the_columns(tmp_path):
    path = write(tmp_path / "h.csv", "PatientAge,PatientSex\n40,F\n")
    with pytest.raises(
        DataFormatError,
        match=r"h\.csv: no image id column \(expected one of patientId, PatientID, Filename; found PatientAge,PatientSex\)",
    ):
        read_header_table(path)
    with pytest.raises(DataFormatError, match="file not found"):
        read_header_table(tmp_path / "missing.csv")


def test_labels_alone(tmp_path):
    tables = tables_from_label_files(write(tmp_path / "labels.csv", LABELS))
    images = tables.images.set_index("image_id")
    assert list(images.index) == ["neg-1", "neg-3", "pos-2", "pos-5"]  # bad-4 left out, sorted
    assert images.loc["pos-2", "n_boxes"] == 2 and images.loc["pos-2", "target"] == 1
    assert images.loc["neg-1", "n_boxes"] == 0 and pd.isna(images.loc["neg-1", "rsna_class"])
    assert not tables.has_class_info and not tables.has_headers
    boxes = tables.boxes[tables.boxes.image_id == "pos-2"]
    assert boxes[["x", "y", "width", "height"]].to_numpy().tolist() == [[10, 20, 100, 200], [600, 20, 50, 100]]
    checks = {c.check: c for c in tables.checks}
    assert checks["duplicate label rows collapsed"].count == 1
    broken = checks["patients whose label rows break a rule (left out)"]
    assert broken.count == 1
    assert broken.examples == ("patientId bad-4: line 7: Target=1 row needs all of x,y,width,height",)
    assert checks["labels without images"].count is None  # cannot be known from the labels alone
    missing = {m.column: (m.missing, m.rows) for m in tables.missing}
    assert missing["x"] == (1, 5)  # counted on the Target=1 rows only (the duplicate included)
    assert missing["patientId"] == (0, 7)


def test_labels_with_class_info_and_headers(tmp_path):
    tables = tables_from_label_files(
        write(tmp_path / "labels.csv", LABELS),
        class_info=write(tmp_path / "class.csv", CLASS_INFO),
        headers=write(tmp_path / "headers.csv", HEADERS),
    )
    images = tables.images.set_index("image_id")
    assert list(images.index) == ["neg-1", "neg-3", "pos-2"]  # bad-4 (no box) and pos-5 (Normal with a box) left out
    assert images.loc["pos-2", "rsna_class"] == "Lung Opacity"
    assert images.loc["pos-2", "view"] == "AP" and not images.loc["pos-2", "age_valid"]
    assert images.loc["neg-3", "age_valid"] and math.isnan(images.loc["neg-3", "age_years"])
    checks = {c.check: c for c in tables.checks}
    assert checks["duplicate class-info rows collapsed"].count == 2
    assert checks["class-info patients without a label row"].examples == ("extra-6",)
    reasons = checks["patients whose label rows break a rule (left out)"].examples
    assert (
        reasons[1] == "patientId pos-5: Target=1 but class is 'Normal' (Target=1 exactly when class is 'Lung Opacity')"
    )
    assert checks["labels without images (no header row)"].examples == ("bad-4",)
    assert checks["images without labels (header row, no label row)"].examples == ("only-header",)
    assert checks["header rows repeating an image id (first kept)"].count == 1
    assert [f.role for f in tables.source.files] == ["labels", "class info", "DICOM headers"]
    assert [f.rows for f in tables.source.files] == [7, 8, 6]


def test_malformed_labels_name_the_line(tmp_path):
    path = write(tmp_path / "labels.csv", "patientId,x,y,width,height,Target\np,1,2,oops,4,1\n")
    with pytest.raises(LabelFileError, match=r"labels\.csv: line 2: column 'width': 'oops' is not a number"):
        tables_from_label_files(path)


def test_records_carry_header_fields_and_prepare_findings():
    records = [
        ImageRecord(
            image_id="a",
            dataset="rsna",
            path="a.dcm",
            patient_id="a",
            target=1,
            has_box_labels=True,
            boxes_xyxy=np.array([[10, 20, 110, 220]], np.float32),
            rsna_class="Lung Opacity",
            split="train",
            height=512,
            width=512,
            sex="F",
            age_years=151.0,
            age_valid=False,
            view_position="AP",
            pixel_spacing_mm=(0.2, 0.2),
        ),
        ImageRecord(
            image_id="b",
            dataset="rsna",
            path="b.dcm",
            patient_id="b",
            target=0,
            has_box_labels=True,
            rsna_class="Normal",
            split="val",
        ),
    ]
    summary = {
        "duplicate_class_rows": 3,
        "labels_without_images": 1,
        "labels_without_images_ids": ["z"],
        "junk_files": 2,
    }
    tables = tables_from_records(
        "rsna",
        records,
        source=EdaSource(mode="images", dataset="rsna"),
        summary=summary,
        bad_files=[BadFile("c.dcm", "truncated")],
    )
    assert tables.boxes[["x", "y", "width", "height"]].to_numpy().tolist() == [[10, 20, 100, 200]]
    a = tables.images.set_index("image_id").loc["a"]
    assert (a["view"], a["age_years"], a["age_valid"], a["width_px"], a["split"]) == (
        "AP",
        151.0,
        False,
        512.0,
        "train",
    )
    checks = {c.check: c for c in tables.checks}
    assert checks["labels without images"].examples == ("z",)
    assert checks["files that could not be used (left out)"].examples == ("c.dcm: truncated",)
    assert checks["junk files (not images, skipped)"].count == 2
    missing = {m.column: m.missing for m in tables.missing}
    assert missing == {"image size": 1, "PatientSex": 1, "PatientAge": 1, "ViewPosition": 1, "PixelSpacing": 1}
