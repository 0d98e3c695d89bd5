"""The prepared folder: exact round trip, deterministic bytes, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from data_prep.errors import DataFormatError
from data_prep.manifest import (
    COLUMN_PARSERS,
    FORMAT_VERSION,
    find_prepared,
    read_manifest,
    write_manifest,
)
from data_prep.records import MANIFEST_COLUMNS, BadFile, ImageRecord

RECORDS = [
    ImageRecord(
        image_id="pos-uuid",
        dataset="rsna",
        path="stage_2_train_images/pos-uuid.dcm",
        patient_id="pos-uuid",
        target=1,
        has_box_labels=True,
        boxes_xyxy=np.array([[264.0, 152.0, 477.0, 531.0], [0.5, 1.25, 2.125, 3.0]]),
        rsna_class="Lung Opacity",
        split="train",
        height=1024,
        width=1024,
        sex="F",
        age_years=51.0,
        age_valid=True,
        view_position="AP",
        pixel_spacing_mm=(0.1943, 0.1943),
    ),
    ImageRecord(
        image_id="neg-uuid",
        dataset="rsna",
        path="stage_2_train_images/neg-uuid.dcm",
        patient_id="neg-uuid",
        target=0,
        has_box_labels=True,
        rsna_class="Normal",
        split="val",
        height=1024,
        width=1024,
        sex="M",
        age_years=151.0,
        age_valid=False,
        view_position="PA",
        pixel_spacing_mm=(0.139, 0.1433333333333333),
    ),
    ImageRecord(
        image_id="no-header",
        dataset="rsna",
        path="stage_2_train_images/no-header.dcm",
        patient_id="no-header",
        target=0,
        has_box_labels=True,
        rsna_class="No Lung Opacity / Not Normal",
        split="test",
    ),
]


def record_rows(records):
    return [r.to_row() for r in records]


def write(prepared_dir, records=RECORDS, **kwargs):
    defaults = dict(
        dataset="rsna",
        data_root=prepared_dir.parent,
        seed=0,
        val_fraction=0.1,
        test_fraction=0.1,
        bad_files=[BadFile("stage_2_train_images/z.dcm", "not a DICOM file"), BadFile("a.dcm", "empty file")],
        summary={"images": len(records), "classes": {"Normal": 1}},
    )
    return write_manifest(prepared_dir, records, **{**defaults, **kwargs})


def test_column_parsers_cover_the_manifest_columns_exactly():
    assert list(COLUMN_PARSERS) == list(MANIFEST_COLUMNS)


def test_round_trip_is_exact(tmp_path):
    prepared_dir = tmp_path / "data" / "detect_prepared"
    written = write(prepared_dir, cache_size_px=256)
    assert [p.name for p in written] == ["manifest.csv", "splits.csv", "bad_files.csv", "summary.json", "prepare.json"]

    prepared = read_manifest(prepared_dir)
    assert prepared.dataset == "rsna"
    assert prepared.data_root == (tmp_path / "data").resolve()
    assert prepared.prepared_dir == prepared_dir
    assert prepared.cache_size_px == 256
    assert (prepared.seed, prepared.val_fraction, prepared.test_fraction) == (0, 0.1, 0.1)
    assert prepared.bad_files == [
        BadFile("a.dcm", "empty file"),
        BadFile("stage_2_train_images/z.dcm", "not a DICOM file"),
    ]

    by_id = {r.image_id: r for r in prepared.records}
    assert [r.image_id for r in prepared.records] == ["neg-uuid", "no-header", "pos-uuid"]  # sorted
    assert record_rows(prepared.records) == sorted(record_rows(RECORDS), key=lambda row: row["image_id"])
    for original in RECORDS:
        back = by_id[original.image_id]
        for name in MANIFEST_COLUMNS:
            value, expected = getattr(back, name), getattr(original, name)
            if name == "boxes_xyxy":
                assert value.dtype == np.float32 and value.shape == expected.shape
                np.testing.assert_array_equal(value, expected)
            else:
                assert value == expected and type(value) is type(expected), name
    assert by_id["no-header"].height is None and by_id["no-header"].sex is None
    assert by_id["neg-uuid"].boxes_xyxy.shape == (0, 4)
    assert by_id["neg-uuid"].age_valid is False


def test_kermany_ids_that_look_like_numbers_stay_text(tmp_path):
    record = ImageRecord(
        image_id="train/NORMAL/IM-0115-0001",
        dataset="kermany",
        path="chest_xray/train/NORMAL/IM-0115-0001.jpeg",
        patient_id="0115",
        target=0,
        has_box_labels=False,
        subtype="normal",
        split="train",
        height=1858,
        width=2090,
        source_split="train",
    )
    write(tmp_path / "p", [record], dataset="kermany")
    back = read_manifest(tmp_path / "p").records[0]
    assert back.patient_id == "0115" and back.source_split == "train" and back.rsna_class is None
    frame = pd.read_csv(tmp_path / "p" / "splits.csv", dtype=str)
    assert frame.to_dict("records") == [{"patient_id": "0115", "dataset": "kermany", "split": "train"}]


def test_files_are_plain_csv_and_json(tmp_path):
    write(tmp_path / "p")
    frame = pd.read_csv(tmp_path / "p" / "manifest.csv")
    assert tuple(frame.columns) == MANIFEST_COLUMNS and len(frame) == 3
    assert json.loads(frame.loc[frame.image_id == "pos-uuid", "boxes_xyxy"].item()) == [
        [264.0, 152.0, 477.0, 531.0],
        [0.5, 1.25, 2.125, 3.0],
    ]
    splits = pd.read_csv(tmp_path / "p" / "splits.csv")
    assert splits.values.tolist() == [
        ["neg-uuid", "rsna", "val"],
        ["no-header", "rsna", "test"],
        ["pos-uuid", "rsna", "train"],
    ]
    info = json.loads((tmp_path / "p" / "prepare.json").read_text())
    assert info["format_version"] == FORMAT_VERSION and info["cache_size_px"] is None
    assert set(info["versions"]) >= {"numpy", "pandas", "scikit-learn", "pydicom"}
    assert json.loads((tmp_path / "p" / "summary.json").read_text()) == {"images": 3, "classes": {"Normal": 1}}


def test_writing_twice_is_byte_identical_whatever_the_input_order(tmp_path):
    write(tmp_path / "a")
    write(tmp_path / "b", list(reversed(RECORDS)))
    for name in ("manifest.csv", "splits.csv", "bad_files.csv", "summary.json", "prepare.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert not list((tmp_path / "a").glob("*.tmp"))


def test_duplicate_image_id_and_split_leak_are_refused(tmp_path):
    with pytest.raises(DataFormatError, match="image_id 'pos-uuid' appears twice"):
        write(tmp_path / "p", [RECORDS[0], RECORDS[0]])
    leak = ImageRecord(**{**RECORDS[1].__dict__, "image_id": "other", "patient_id": "pos-uuid"})
    with pytest.raises(DataFormatError, match="patient 'pos-uuid' is in splits 'val' and 'train'"):
        write(tmp_path / "p", [RECORDS[0], leak])


def test_find_prepared(tmp_path):
    assert find_prepared(tmp_path) is None
    write(tmp_path / "detect_prepared")
    assert find_prepared(tmp_path) == tmp_path / "detect_prepared"
    assert find_prepared(tmp_path / "detect_prepared") == tmp_path / "detect_prepared"
    # read_manifest accepts the data folder as well
    assert len(read_manifest(tmp_path).records) == 3


def test_cached_image_path(tmp_path):
    write(tmp_path / "p")
    prepared = read_manifest(tmp_path / "p")
    assert prepared.cached_image_path("train/NORMAL/IM-0115-0001", 512) == (
        tmp_path / "p" / "cache" / "512" / "train__NORMAL__IM-0115-0001.png"
    )
    assert prepared.image_path(prepared.records[0]) == prepared.data_root / "stage_2_train_images/neg-uuid.dcm"
    assert [r.image_id for r in prepared.split_records("test")] == ["no-header"]


def test_nothing_prepared_is_a_clear_error(tmp_path):
    with pytest.raises(DataFormatError) as info:
        read_manifest(tmp_path)
    assert (
        str(info.value)
        == f"{tmp_path}: no prepare.json here or in detect_prepared/: run `detect prepare DATA_DIR` first"
    )


def test_bad_cell_names_the_line_and_column(tmp_path):
    write(tmp_path / "p")
    path = tmp_path / "p" / "manifest.csv"
    lines = path.read_text().splitlines()
    lines[2] = lines[2].replace(",True,", ",yes,", 1)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError, match=r"manifest.csv: line 3: column 'has_box_labels': cannot read 'yes'"):
        read_manifest(tmp_path / "p")


def test_missing_manifest_column_and_old_format(tmp_path):
    write(tmp_path / "p")
    path = tmp_path / "p" / "manifest.csv"
    frame = pd.read_csv(path, dtype=str, keep_default_na=False).drop(columns=["split"])
    frame.to_csv(path, index=False)
    with pytest.raises(DataFormatError, match=r"manifest.csv: missing column 'split': rerun `detect prepare`"):
        read_manifest(tmp_path / "p")
    info_path = tmp_path / "p" / "prepare.json"
    info = json.loads(info_path.read_text())
    info["format_version"] = 0
    info_path.write_text(json.dumps(info))
    with pytest.raises(DataFormatError, match=r"prepare.json: format_version 0, this version reads 1"):
        read_manifest(tmp_path / "p")


def test_pixel_spacing_pair_is_written_as_dicom_text_and_read_back_exactly(tmp_path):
    write(tmp_path / "p")
    frame = pd.read_csv(tmp_path / "p" / "manifest.csv", dtype=str, keep_default_na=False).set_index("image_id")
    # row\column, each number the shortest text for its float (repr), so the pair survives exactly
    assert frame.loc["neg-uuid", "pixel_spacing_mm"] == "0.139\\0.1433333333333333"
    assert frame.loc["pos-uuid", "pixel_spacing_mm"] == "0.1943\\0.1943"
    assert frame.loc["no-header", "pixel_spacing_mm"] == ""
    by_id = {r.image_id: r for r in read_manifest(tmp_path / "p").records}
    assert by_id["neg-uuid"].pixel_spacing_mm == (0.139, 0.1433333333333333)
    assert by_id["no-header"].pixel_spacing_mm is None


def test_old_manifest_with_one_spacing_reads_as_square_pixels(tmp_path):
    # Manifests written before the pair held one float per image.
    write(tmp_path / "p")
    path = tmp_path / "p" / "manifest.csv"
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame["pixel_spacing_mm"] = frame["image_id"].map({"neg-uuid": "0.143", "pos-uuid": "0.1943", "no-header": ""})
    frame.to_csv(path, index=False)
    by_id = {r.image_id: r for r in read_manifest(tmp_path / "p").records}
    assert by_id["neg-uuid"].pixel_spacing_mm == (0.143, 0.143)
    assert by_id["pos-uuid"].pixel_spacing_mm == (0.1943, 0.1943)
    assert by_id["no-header"].pixel_spacing_mm is None


@pytest.mark.parametrize("text", ["0.1\\0.2\\0.3", "0.1\\", "wide"])
def test_bad_pixel_spacing_cell_names_the_line_and_column(tmp_path, text):
    write(tmp_path / "p")
    path = tmp_path / "p" / "manifest.csv"
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame.loc[0, "pixel_spacing_mm"] = text
    frame.to_csv(path, index=False)
    with pytest.raises(DataFormatError, match=r"manifest.csv: line 2: column 'pixel_spacing_mm': cannot read"):
        read_manifest(tmp_path / "p")


@pytest.mark.parametrize("spacing", [0.143, (0.1, 0.2, 0.3)])
def test_image_record_takes_only_a_spacing_pair(spacing):
    with pytest.raises(ValueError, match=r"pixel_spacing_mm must be \(row, column\) in mm or None"):
        ImageRecord(
            image_id="a",
            dataset="rsna",
            path="a.dcm",
            patient_id="a",
            target=0,
            has_box_labels=True,
            pixel_spacing_mm=spacing,
        )
    record = ImageRecord(
        image_id="a",
        dataset="rsna",
        path="a.dcm",
        patient_id="a",
        target=0,
        has_box_labels=True,
        pixel_spacing_mm=[np.float32(0.5), 0.25],
    )
    assert record.pixel_spacing_mm == (0.5, 0.25) and type(record.pixel_spacing_mm[0]) is float
