"""`detect export` and `detect infer --backend` through typer's CliRunner: files, boxes.json, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from cli import app
from detect.outputs.boxes_json import validate_output
from tests.detect.inference.test_batch import save_tiny_checkpoint, write_images


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "best.pt")


def _run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_export_onnx_then_infer_with_onnxruntime_matches_eager(tmp_path, checkpoint):
    inputs = tmp_path / "in"
    write_images(inputs)
    exported = _run("export", "--checkpoint", checkpoint, "--format", "onnx", "--out", tmp_path / "model.onnx")
    assert exported.exit_code == 0, exported.output
    assert f"wrote {tmp_path / 'model.onnx'} (onnx, " in exported.stdout
    outputs = {}
    for name, args in (
        ("eager", ("--checkpoint", checkpoint)),
        ("onnxruntime", ("--checkpoint", tmp_path / "model.onnx", "--backend", "onnxruntime")),
    ):
        result = _run(
            "infer", inputs, *args, "--out", tmp_path / name / "boxes.json", "--device", "cpu", "--allow-failures"
        )
        assert result.exit_code == 0, result.output
        outputs[name] = json.loads((tmp_path / name / "boxes.json").read_text())
        validate_output(outputs[name])
    eager, onnx = (
        [entry for entry in doc["images"] if entry["error"] is None]
        for doc in (outputs["eager"], outputs["onnxruntime"])
    )
    assert len(eager) == len(onnx) == 3
    assert sum(len(entry["boxes"]) for entry in eager) > 0, "the test needs boxes to compare"
    for want, got in zip(eager, onnx):
        assert got["source"] == want["source"]
        assert got["pneumonia_probability"] == pytest.approx(want["pneumonia_probability"], abs=1e-4)
        # the tiny model's scores are ties near 1: compare the boxes as sets, in a fixed order
        corners = [sorted((b["x"], b["y"], b["width"], b["height"]) for b in entry["boxes"]) for entry in (want, got)]
        assert len(corners[1]) == len(corners[0])
        for w, g in zip(*corners):  # boxes.json rounds to 0.01 px: one rounding step apart at most
            assert g == pytest.approx(w, abs=0.01 + 1e-3)
    assert outputs["onnxruntime"]["model"]["name"] == outputs["eager"]["model"]["name"]


def test_export_weights_only_is_loadable_and_infer_takes_it(tmp_path, checkpoint):
    result = _run("export", "--checkpoint", checkpoint, "--format", "weights", "--out", tmp_path / "w.pt")
    assert result.exit_code == 0, result.output
    assert torch.load(tmp_path / "w.pt", weights_only=True)["optimizer"] is None
    write_images(tmp_path / "in")
    infer = _run(
        "infer",
        tmp_path / "in",
        "--checkpoint",
        tmp_path / "w.pt",
        "--out",
        tmp_path / "boxes.json",
        "--device",
        "cpu",
        "--allow-failures",
    )
    assert infer.exit_code == 0, infer.output


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ("--backend", "onnxruntime"),
            "error: --backend onnxruntime needs an .onnx file of `detect export --format onnx`;",
        ),
        (("--backend", "tensorrt"), "error: --backend is 'tensorrt'; choose one of eager, torchscript, onnxruntime"),
    ],
)
def test_infer_backend_that_does_not_fit_exits_2_in_one_line(tmp_path, checkpoint, args, message):
    write_images(tmp_path / "in")
    result = _run(
        "infer", tmp_path / "in", "--checkpoint", checkpoint, *args, "--out", tmp_path / "boxes.json", "--device", "cpu"
    )
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith(message), result.stderr


def test_export_bad_format_and_missing_checkpoint_exit_2(tmp_path, checkpoint):
    bad = _run("export", "--checkpoint", checkpoint, "--format", "tflite")
    assert (
        bad.exit_code == 2
        and bad.stderr.strip() == "error: --format is 'tflite'; choose one of onnx, torchscript, weights"
    )
    missing = _run("export", "--checkpoint", tmp_path / "nope.pt")
    assert missing.exit_code == 2 and missing.stderr.strip() == f"error: {tmp_path / 'nope.pt'}: checkpoint not found"
