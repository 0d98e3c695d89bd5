"""One's own images (COCO JSON / label CSV, DICOM and PNG) through the CLI: prepare, train, eval
on an unprepared folder in one command, infer, and eval of boxes.json against the labels."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cli import app
from tests.data_prep.own_fixtures import LABEL_MAP, build_coco_folder, build_csv_folder
from tests.detect.train_fixtures import TINY_OVERRIDES

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny detector trained on the CSV folder (prepared by `detect prepare` first)."""
    base = tmp_path_factory.mktemp("own")
    csv_dir = build_csv_folder(base / "csv")
    prepared = _run("prepare", csv_dir, "--label-map", LABEL_MAP, "--workers", "1", "--val-fraction", "0.25")
    assert prepared.exit_code == 0, prepared.output
    sets = [arg for override in TINY_OVERRIDES for arg in ("--set", override)]
    result = _run(
        "train",
        "--config",
        "configs/demo.yaml",
        "--data",
        csv_dir,
        "--out",
        base / "run",
        *sets,
        "--set",
        "train.epochs=1",
        "--set",
        "train.monitor=val_f1",
    )
    assert result.exit_code == 0, result.output
    return base, base / "run" / "checkpoints" / "best.pt"


def test_train_on_own_data_stores_its_operating_point(trained):
    import torch

    _, checkpoint = trained
    saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
    assert set(saved["extra"]["operating_points"]) == {"custom"}


def test_eval_scores_an_unprepared_coco_folder_in_one_command(trained):
    base, checkpoint = trained
    coco_dir = build_coco_folder(base / "coco")
    out = base / "eval"
    result = _run(
        "eval",
        "--checkpoint",
        checkpoint,
        "--data",
        coco_dir,
        "--split",
        "train",
        "--label-map",
        LABEL_MAP,
        "--out",
        out,
        "--device",
        "cpu",
    )
    assert result.exit_code == 0, result.output
    assert not (coco_dir / "detect_prepared").exists()  # the data folder is never written to
    assert (out / "prepared" / "coco" / "manifest.csv").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    pneumonia = metrics["classification"]["pneumonia"]
    assert {"sensitivity", "specificity", "f1", "roc_auc"} <= set(pneumonia["intervals_95"])
    assert "map50" in metrics["detection"] and "rsna_score" in metrics["detection"]
    assert metrics["operating_points"]["custom"]["applied_to"] == "custom train"
    assert "## Classification (your images)" in (out / "report.md").read_text()
    assert any(
        line.startswith("note: left out: png/p01.png: annotations.json annotation id 11: unknown label 'nodule'")
        for line in result.stderr.splitlines()
    )
    assert "your images pneumonia sensitivity" in result.stdout


def test_infer_then_eval_predictions_against_the_labels(trained):
    base, checkpoint = trained
    csv_dir = base / "csv"
    boxes = base / "boxes.json"
    inferred = _run(
        "infer", csv_dir / "png", csv_dir / "dicom", "--checkpoint", checkpoint, "--out", boxes, "--device", "cpu"
    )
    assert inferred.exit_code == 0, inferred.output
    out = base / "eval_boxes"
    result = _run(
        "eval", "--predictions", boxes, "--labels", csv_dir / "labels.csv", "--label-map", LABEL_MAP, "--out", out
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    # 8 usable labelled images have a prediction (scans/raw001 was not inferred); p01, p05, d04, d05 are left out
    assert metrics["counts"]["scored_images"] == 8
    assert metrics["classification"]["pneumonia"]["n"] == 8
    assert "labelled images without a prediction (not scored): 1 (scans/raw001)" in metrics["notes"]
    unmatched = [n for n in metrics["notes"] if n.startswith("predictions without a label")]
    assert unmatched and "extra.png" in unmatched[0]


def test_eda_reports_own_data_with_its_quality_checks(trained):
    base, _ = trained
    out = base / "eda"
    result = _run("eda", base / "csv", "--out", out, "--workers", "1", "--images-per-class", "2")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Exploratory data analysis: your images (COCO / CSV labels): 9 images, 3 positive")
    report = (out / "report.md").read_text()
    assert "| label rows skipped (duplicates, rows naming no image) | 1 |" in report
    assert "| images without a patient id (split per image: leakage possible) | 2 |" in report
    assert "Kermany" not in report


def test_a_classifier_trains_and_evaluates_on_own_data(trained):
    """The rsna tasks read one's own images too: their labels carry the RSNA classes."""
    base, _ = trained
    sets = [arg for override in TINY_OVERRIDES for arg in ("--set", override)]
    run = _run(
        "train",
        "--config",
        "configs/demo.yaml",
        "--data",
        base / "csv",
        "--out",
        base / "cls",
        *sets,
        "--set",
        "model.name=resnet18",
        "--set",
        "model.trainable_backbone_layers=5",
        "--set",
        "task=rsna3",
        "--set",
        "train.monitor=val_macro_f1",
        "--set",
        "train.epochs=1",
        "--set",
        "model.anchor_sizes_px=[]",
        "--set",
        "model.anchor_aspect_ratios=[]",
    )
    assert run.exit_code == 0, run.output
    out = base / "cls_eval"
    result = _run(
        "eval",
        "--checkpoint",
        base / "cls" / "checkpoints" / "best.pt",
        "--data",
        base / "csv",
        "--split",
        "train",
        "--out",
        out,
        "--device",
        "cpu",
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["detection"].startswith("not applicable: the model is a classifier (task rsna3)")
    from data_prep.manifest import read_manifest

    train_images = read_manifest(base / "csv").split_records("train")
    assert metrics["classification"]["rsna_3class"]["n"] == len(train_images) > 0


def test_the_recipe_carries_the_label_map_when_training_prepares_on_the_fly(tmp_path):
    from detect.training.data_setup import prepare_for_config
    from tests.detect.train_fixtures import tiny_config

    root = build_coco_folder(tmp_path / "coco")
    result = prepare_for_config(
        root, tiny_config("data.label_map=consolidation=opacity", "data.unannotated=normal"), workers=1
    )
    assert len(result.records) == 10  # the 9 usable images and png/p06.png, taken as normal
    assert result.counts["label_map"] == {"consolidation": "opacity"}
    with pytest.raises(Exception, match="config key 'data.unannotated' is 'abnormal'; use normal, or leave it empty"):
        tiny_config("data.unannotated=abnormal")
