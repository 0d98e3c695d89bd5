"""COCO export of a prepared dataset, and the round trip RSNA -> COCO -> `detect prepare`."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cli import app
from data_prep.coco import coco_dict
from data_prep.manifest import read_manifest
from data_prep.prepare import prepare_dataset
from data_prep.records import ImageRecord
from tests.data_prep.test_prepare import build_rsna

pytestmark = pytest.mark.filterwarnings("ignore:Invalid value for VR AS")

# What a COCO file cannot carry: which Kaggle set the images came from, and RSNA's own ids.
NOT_CARRIED = ("dataset", "image_id")


def _comparable(records: list[ImageRecord]) -> dict[str, dict]:
    return {r.path: {k: v for k, v in r.to_row().items() if k not in NOT_CARRIED} for r in records}


def test_rsna_to_coco_to_prepare_gives_the_same_manifest(tmp_path):
    root = build_rsna(tmp_path / "rsna")
    rsna = prepare_dataset(root, workers=1, val_fraction=0.2, test_fraction=0.2, seed=3)
    out = tmp_path / "rsna.json"
    result = CliRunner().invoke(app, ["prepare", str(rsna.prepared_dir), "--export-coco", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"wrote {out}"

    coco = json.loads(out.read_text())
    assert len(coco["images"]) == 20 and len(coco["annotations"]) == 7
    assert coco["categories"] == [{"id": 1, "name": "opacity", "supercategory": "lung"}]
    first_box = next(a for a in coco["annotations"])
    assert first_box["bbox"] == [4, 8, 16, 40] and first_box["area"] == 640  # xywh as RSNA's CSV gave it

    # prepared again from the COCO file alone (another seed: the declared splits must win)
    again = prepare_dataset(root, labels=out, out_dir=tmp_path / "again", workers=1, seed=99)
    assert again.dataset == "custom"
    assert again.bad_files == [] and again.own.skipped_rows == []
    assert _comparable(read_manifest(tmp_path / "again").records) == _comparable(
        read_manifest(rsna.prepared_dir).records
    )
    assert again.counts["patients_from"] == {"labels": 20, "dicom": 0, "none": 0}


def test_kermany_exports_image_labels_without_boxes(tmp_path):
    from tests.data_prep.test_kermany import build_kermany

    root = build_kermany(tmp_path / "k")
    prepared = prepare_dataset(root, workers=1)
    coco = coco_dict(prepared.records)
    assert coco["annotations"] == []
    labels = {image["label"] for image in coco["images"]}
    assert labels == {"normal", "opacity"}
    assert all(image["split"] in ("train", "val", "test") for image in coco["images"])


def test_export_refuses_an_unwritable_target(tmp_path):
    root = build_rsna(tmp_path / "rsna")
    prepare_dataset(root, workers=1)
    (tmp_path / "folder.json").mkdir()
    result = CliRunner().invoke(
        app, ["prepare", str(root / "detect_prepared"), "--export-coco", str(tmp_path / "folder.json")]
    )
    assert result.exit_code == 2
    assert result.output.startswith(f"error: {tmp_path / 'folder.json'}: ")
    assert len(result.output.strip().splitlines()) == 1
