"""`detect prepare` on one's own images: a label CSV or a COCO JSON, DICOM and PNG, every problem once."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cli import app
from data_prep.errors import ConfigError, DataFormatError, LabelFileError
from data_prep.manifest import read_manifest
from data_prep.own_labels import parse_label_map, record_label
from data_prep.prepare import detect_dataset_kind, format_summary, prepare_dataset
from data_prep.splits import patients_in_several_splits
from tests.data_prep.own_fixtures import (
    BAD_PATHS,
    EXPECTED_RECORDS,
    LABEL_MAP,
    build_coco_folder,
    build_csv_folder,
)

EXPECTED_BAD = {
    "csv": [
        "dicom/d04.dcm: labels.csv line 7: box [50, 30, 20, 10] (x,y,width,height) extends outside the 64x48 image",
        "dicom/d05.dcm: labels.csv line 8: box [5, 5, -3, 10] (x,y,width,height) has a negative width or height",
        "png/missing.png: not found (labels.csv line 16)",
        (
            "png/p01.png: labels.csv line 12: unknown label 'nodule' (known: normal, abnormal, opacity, consolidation; "
            "map others with --label-map NAME=LABEL)"
        ),
        "png/p05.png: conflicting labels: normal (labels.csv line 17) and opacity (labels.csv line 18)",
    ],
    "coco": [
        (
            "dicom/d04.dcm: annotations.json annotation id 6: box [50, 30, 20, 10] (x,y,width,height) extends outside "
            "the 64x48 image"
        ),
        (
            "dicom/d05.dcm: annotations.json annotation id 7: box [5, 5, -3, 10] (x,y,width,height) has a negative "
            "width or height"
        ),
        "png/missing.png: not found (annotations.json images[12] (id 112))",
        (
            "png/p01.png: annotations.json annotation id 11: unknown label 'nodule' (known: normal, abnormal, opacity, "
            "consolidation; map others with --label-map NAME=LABEL)"
        ),
        (
            "png/p05.png: conflicting labels: normal (annotations.json images[13] (id 113)) and opacity "
            "(annotations.json annotation id 16)"
        ),
    ],
}
EXPECTED_SKIPPED = {
    "csv": ["labels.csv line 11: duplicate of line 10, skipped"],
    "coco": ["annotations.json annotation id 10: duplicate of annotation id 9, skipped"],
}


@pytest.fixture(scope="module", params=["csv", "coco"])
def prepared(request, tmp_path_factory):
    """(format, PrepareResult) of the fixture folder prepared with the label map."""
    build = build_csv_folder if request.param == "csv" else build_coco_folder
    root = build(tmp_path_factory.mktemp(request.param))
    return request.param, prepare_dataset(root, label_map=LABEL_MAP, workers=1, val_fraction=0.2, test_fraction=0.2)


def test_records_hold_the_labels_boxes_and_patients(prepared):
    _, result = prepared
    found = {r.path: r for r in result.records}
    assert sorted(found) == sorted(EXPECTED_RECORDS)
    for path, (label, boxes, has_box_labels, patient, split) in EXPECTED_RECORDS.items():
        record = found[path]
        assert record.dataset == "custom" and record.image_id == path
        assert record_label(record) == label, path
        assert record.target == int(label == "opacity")
        assert record.boxes_xyxy.tolist() == boxes, path
        assert record.has_box_labels is has_box_labels, path
        assert record.patient_id == patient, path
        assert (record.height, record.width) == (48, 64)
        if split is not None:
            assert record.split == split, path  # a declared split is kept
    # the DICOM header fields come along; a PNG has none
    assert (found["dicom/d00.dcm"].sex, found["dicom/d00.dcm"].age_years, found["dicom/d00.dcm"].view_position) == (
        "M",
        40.0,
        "PA",
    )
    assert found["png/p03.png"].sex is None


def test_patients_are_grouped_and_never_split(prepared):
    _, result = prepared
    records = {r.path: r for r in result.records}
    assert records["dicom/d00.dcm"].split == records["dicom/d01.dcm"].split  # both of patient PA (DICOM PatientID)
    assert patients_in_several_splits(result.records) == []
    assert result.counts["patients"] == 8
    assert result.counts["patients_from"] == {"labels": 2, "dicom": 5, "none": 2}
    assert result.counts["declared_splits"] == 2


def test_every_problem_is_one_line_naming_file_and_row(prepared):
    kind, result = prepared
    assert [f"{b.path}: {b.reason}" for b in result.bad_files] == EXPECTED_BAD[kind]
    assert sorted(b.path for b in result.bad_files) == BAD_PATHS
    assert result.own.skipped_rows == EXPECTED_SKIPPED[kind]
    summary = format_summary(result)
    for line in EXPECTED_BAD[kind] + EXPECTED_SKIPPED[kind]:
        assert f"\n    {line}\n" in summary
    warnings = [line for line in summary.splitlines() if "warning" in line]
    assert warnings == [
        (
            "  warning: 2 of 9 images have no patient id (no patient_id in the labels, no DICOM PatientID): "
            "they are split per image, so one patient's images can fall in both train and test (leakage)"
        )
    ]


def test_summary_counts(prepared):
    kind, result = prepared
    c = result.counts
    assert (c["dataset"], c["images"], c["positive_images"], c["boxes"], c["images_with_box_labels"]) == (
        "custom",
        9,
        3,
        3,
        8,
    )
    assert c["classes"] == {"normal": 5, "abnormal": 1, "opacity": 3}
    assert c["bad_files"] == 5 and c["skipped_label_rows"] == 1 and c["junk_files"] == 1
    assert sum(s["images"] for s in c["splits"].values()) == 9
    if kind == "csv":
        assert result.images_without_labels == ["png/extra.png", "png/p06.png"] and c["unannotated_images"] == 0
    else:
        assert result.images_without_labels == ["png/extra.png"] and c["unannotated_ids"] == ["png/p06.png"]


def test_the_manifest_reads_back_and_a_second_run_is_identical(prepared):
    _, result = prepared
    prepared_dir = result.prepared_dir
    before = {p.name: p.read_bytes() for p in result.written}
    again = prepare_dataset(result.data_root, label_map=LABEL_MAP, workers=1, val_fraction=0.2, test_fraction=0.2)
    assert {p.name: p.read_bytes() for p in again.written} == before
    back = read_manifest(prepared_dir)
    assert back.dataset == "custom"
    assert [r.to_row() for r in back.records] == [r.to_row() for r in result.records]
    info = json.loads((prepared_dir / "prepare.json").read_text())
    assert info["labels"]["label_map"] == {"consolidation": "opacity"}


def test_unannotated_normal_takes_the_coco_image_as_normal(tmp_path):
    root = build_coco_folder(tmp_path / "coco")
    result = prepare_dataset(root, label_map=LABEL_MAP, unannotated="normal", workers=1)
    p06 = next(r for r in result.records if r.path == "png/p06.png")
    assert record_label(p06) == "normal" and p06.has_box_labels and p06.target == 0
    assert result.own.unannotated == []


def test_labels_found_by_name_or_given(tmp_path):
    root = build_csv_folder(tmp_path / "a", file_name="my_labels.csv")
    with pytest.raises(DataFormatError, match="unrecognised layout"):
        detect_dataset_kind(root)
    assert detect_dataset_kind(root, root / "my_labels.csv") == "custom"
    result = prepare_dataset(root, labels=root / "my_labels.csv", label_map=LABEL_MAP, workers=1)
    assert len(result.records) == 9
    (root / "labels.csv").write_text("path,label\n")
    (root / "annotations.json").write_text("{}")
    with pytest.raises(
        DataFormatError, match="holds both annotations.json and labels.csv: pass the one to use with --labels FILE"
    ):
        detect_dataset_kind(root)


@pytest.mark.parametrize(
    "text, message",
    [
        ("consolidation", "--label-map: 'consolidation' is not NAME=LABEL (e.g. consolidation=opacity)"),
        ("a=tumour", "--label-map: a=tumour: 'tumour' is not one of normal, abnormal, opacity"),
    ],
)
def test_bad_label_map_is_a_config_error(text, message):
    with pytest.raises(ConfigError) as excinfo:
        parse_label_map(text)
    assert str(excinfo.value) == message


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("labels.csv", "file,label\na.png,normal\n", "missing column 'path' (expected path,label[,x,y,width,height]"),
        ("labels.csv", "path,label,x,y\na.png,normal,1,2\n", "box columns x,y without width,height"),
        ("labels.csv", "", "file is empty"),
        (
            "annotations.json",
            "{not json",
            "not valid JSON: Expecting property name enclosed in double quotes at line 1",
        ),
        ("annotations.json", "[]", "not a COCO detection file: expected an object with an 'images' list"),
    ],
)
def test_a_broken_labels_file_is_one_error_naming_it(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(LabelFileError) as excinfo:
        prepare_dataset(tmp_path, workers=1)
    assert str(excinfo.value).startswith(f"{tmp_path / name}: {message}")


def test_coco_entries_that_name_nothing_are_skipped_one_line_each(tmp_path):
    build_csv_folder(tmp_path)
    (tmp_path / "labels.csv").unlink()
    coco = {
        "images": [
            {"id": 1, "file_name": "png/p00.png"},
            {"id": 1, "file_name": "png/p02.png"},
            {"file_name": "png/p03.png"},
            {"id": 4, "file_name": "png/p00.png"},
        ],
        "annotations": [
            {"id": 5, "image_id": 99, "category_id": 1, "bbox": [1, 1, 2, 2]},
            {"id": 6, "image_id": 1, "category_id": 1, "bbox": [1, 1, "x", 2]},
        ],
        "categories": [{"id": 1, "name": "opacity"}],
    }
    (tmp_path / "annotations.json").write_text(json.dumps(coco))
    result = prepare_dataset(tmp_path, workers=1)
    assert result.own.skipped_rows == [
        "annotations.json images[1] (id 1): id 1 already used by 'png/p00.png', skipped",
        "annotations.json images[2]: no id or file_name, skipped",
        "annotations.json images[3] (id 4): 'png/p00.png' already listed at annotations.json images[0] (id 1), skipped",
        "annotations.json annotation id 5: image_id 99 is not in images, skipped",
    ]
    assert [f"{b.path}: {b.reason}" for b in result.bad_files] == [
        'png/p00.png: annotations.json annotation id 6: bbox [1, 1, "x", 2] is not [x, y, width, height] in pixels'
    ]


def test_a_path_that_leaves_the_folder_is_refused(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "secret.png").write_bytes(b"x")
    (tmp_path / "data" / "labels.csv").write_text("path,label\n../secret.png,normal\n/etc/passwd,normal\n")
    result = prepare_dataset(tmp_path / "data", workers=1)
    assert [f"{b.path}: {b.reason}" for b in result.bad_files] == [
        "../secret.png: labels.csv line 2: the path leaves the data folder",
        "/etc/passwd: labels.csv line 3: the path leaves the data folder",
    ]


def test_cli_prepare_prints_each_problem_on_its_own_line(tmp_path):
    root = build_csv_folder(tmp_path / "mine")
    result = CliRunner().invoke(app, ["prepare", str(root), "--label-map", LABEL_MAP, "--workers", "1"])
    assert result.exit_code == 0, result.output
    for line in EXPECTED_BAD["csv"] + EXPECTED_SKIPPED["csv"]:
        assert f"    {line}" in result.output.splitlines()
    bad = CliRunner().invoke(app, ["prepare", str(root), "--label-map", "x=y"])
    assert bad.exit_code == 2
    assert bad.output.strip() == "error: --label-map: x=y: 'y' is not one of normal, abnormal, opacity"
