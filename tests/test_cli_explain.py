"""`detect infer --gate-with / --explain` and `detect eval --gate-with` through typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest
from typer.testing import CliRunner

from cli import app
from detect.outputs.overlay import display_size
from tests.data_prep.dicom_fixtures import textured_image
from tests.detect.inference.test_batch import save_tiny_checkpoint, write_images
from tests.detect.inference.test_gate import save_classifier_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "best.pt")


def _run(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


def _one_error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_infer_with_a_missing_or_corrupt_gate_exits_2_in_one_line(tmp_path, checkpoint):
    write_images(tmp_path / "in")
    line = _one_error_line(
        _run(
            "infer",
            tmp_path / "in",
            "--checkpoint",
            checkpoint,
            "--out",
            tmp_path / "b.json",
            "--device",
            "cpu",
            "--gate-with",
            tmp_path / "nope.pt",
        )
    )
    assert line == f"error: {tmp_path / 'nope.pt'}: --gate-with: checkpoint not found"
    (tmp_path / "junk.pt").write_bytes(b"\x00junk")
    line = _one_error_line(
        _run(
            "infer",
            tmp_path / "in",
            "--checkpoint",
            checkpoint,
            "--out",
            tmp_path / "b.json",
            "--device",
            "cpu",
            "--gate-with",
            tmp_path / "junk.pt",
        )
    )
    assert line.startswith(f"error: {tmp_path / 'junk.pt'}: --gate-with: not a readable checkpoint file")
    assert not (tmp_path / "b.json").exists()


def test_eval_with_a_missing_gate_exits_2_in_one_line(tmp_path, checkpoint):
    line = _one_error_line(
        _run(
            "eval",
            "--checkpoint",
            checkpoint,
            "--data",
            tmp_path,
            "--out",
            tmp_path / "ev",
            "--device",
            "cpu",
            "--gate-with",
            tmp_path / "nope.pt",
        )
    )
    assert line == f"error: {tmp_path / 'nope.pt'}: --gate-with: checkpoint not found"


def test_infer_gated_by_a_second_checkpoint_names_it_in_boxes_json(tmp_path, checkpoint):
    gate = save_tiny_checkpoint(tmp_path / "gate.pt", thresholds={"rsna": 0.02}, pneumonia_bias=-3.0)
    write_images(tmp_path / "in")
    result = _run(
        "infer",
        tmp_path / "in",
        "--checkpoint",
        checkpoint,
        "--gate-with",
        gate,
        "--out",
        tmp_path / "b.json",
        "--device",
        "cpu",
        "--allow-failures",
    )
    assert result.exit_code == 0, result.output
    document = json.loads((tmp_path / "b.json").read_text())
    assert document["schema_version"] == "2.3" and document["gate_model"]["checkpoint"] == str(gate)
    assert all(e["pneumonia_probability"] < 0.1 for e in document["images"] if e["error"] is None)


def test_explain_with_a_detector_exits_2_in_one_line_before_predicting(tmp_path, checkpoint):
    write_images(tmp_path / "in")
    line = _one_error_line(
        _run(
            "infer",
            tmp_path / "in",
            "--checkpoint",
            checkpoint,
            "--out",
            tmp_path / "b.json",
            "--device",
            "cpu",
            "--explain",
            tmp_path / "cam",
        )
    )
    assert line.startswith(
        f"error: {checkpoint}: --explain: Grad-CAM is for classifiers and model 'mobilenet_v3_large_fpn' is a detector"
    )
    assert not (tmp_path / "b.json").exists() and not list(tmp_path.glob("cam/*.png"))


@pytest.fixture(scope="module")
def classifier(tmp_path_factory) -> Path:
    return save_classifier_checkpoint(tmp_path_factory.mktemp("cls") / "best.pt")


def _inputs_with_a_repeated_stem(folder: Path) -> None:
    write_images(folder)  # a.dcm, sub/b.dcm, wide.png (60 x 150), corrupt.dcm
    cv2.imwrite(str(folder / "sub" / "a.png"), textured_image(80, 70, seed=4))  # the stem 'a' again


def test_explain_writes_one_gradcam_png_per_readable_image_with_unique_names(tmp_path, classifier):
    _inputs_with_a_repeated_stem(tmp_path / "in")
    result = _run(
        "infer",
        tmp_path / "in",
        "--checkpoint",
        classifier,
        "--out",
        tmp_path / "b.json",
        "--device",
        "cpu",
        "--explain",
        tmp_path / "cams",
        "--allow-failures",
    )
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in (tmp_path / "cams").glob("*.png"))
    # the listing is sorted: in/a.dcm before in/sub/a.png, so the DICOM keeps the plain name
    assert names == ["a_gradcam.png", "a_gradcam_2.png", "b_gradcam.png", "wide_gradcam.png"]
    wide = cv2.imread(str(tmp_path / "cams" / "wide_gradcam.png"))
    width, height = display_size(60, 150)  # the original's aspect, sized as overlays, the title in a strip below
    assert wide.shape[1] == width and wide.shape[0] > height
    assert wide.std() > 0 and "4 Grad-CAM PNG(s) in" in result.stdout


def test_explain_beside_a_detector_explains_the_classifier_gate(tmp_path, checkpoint, classifier):
    write_images(tmp_path / "in")
    result = _run(
        "infer",
        tmp_path / "in",
        "--checkpoint",
        checkpoint,
        "--gate-with",
        classifier,
        "--out",
        tmp_path / "b.json",
        "--device",
        "cpu",
        "--explain",
        tmp_path / "cams",
        "--allow-failures",
    )
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "b.json").read_text())["gate_model"]["name"] == "basic_cnn"
    assert len(list((tmp_path / "cams").glob("*_gradcam.png"))) == 3
