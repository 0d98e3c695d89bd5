"""`detect infer --gate-with / --explain` and `detect eval --gate-with` through typer's CliRunner."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app
from tests.detect.inference.test_batch import save_tiny_checkpoint, write_images


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
    line = _one_error_line(_run("infer", tmp_path / "in", "--checkpoint", checkpoint, "--out", tmp_path / "b.json",
                                "--device", "cpu", "--gate-with", tmp_path / "nope.pt"))
    assert line == f"error: {tmp_path / 'nope.pt'}: --gate-with: checkpoint not found"
    (tmp_path / "junk.pt").write_bytes(b"\x00junk")
    line = _one_error_line(_run("infer", tmp_path / "in", "--checkpoint", checkpoint, "--out", tmp_path / "b.json",
                                "--device", "cpu", "--gate-with", tmp_path / "junk.pt"))
    assert line.startswith(f"error: {tmp_path / 'junk.pt'}: --gate-with: not a readable checkpoint file")
    assert not (tmp_path / "b.json").exists()


def test_eval_with_a_missing_gate_exits_2_in_one_line(tmp_path, checkpoint):
    line = _one_error_line(_run("eval", "--checkpoint", checkpoint, "--data", tmp_path, "--out", tmp_path / "ev",
                                "--device", "cpu", "--gate-with", tmp_path / "nope.pt"))
    assert line == f"error: {tmp_path / 'nope.pt'}: --gate-with: checkpoint not found"


def test_infer_gated_by_a_second_checkpoint_names_it_in_boxes_json(tmp_path, checkpoint):
    gate = save_tiny_checkpoint(tmp_path / "gate.pt", thresholds={"rsna": 0.02}, pneumonia_bias=-3.0)
    write_images(tmp_path / "in")
    result = _run("infer", tmp_path / "in", "--checkpoint", checkpoint, "--gate-with", gate, "--out", tmp_path / "b.json",
                  "--device", "cpu", "--allow-failures")
    assert result.exit_code == 0, result.output
    document = json.loads((tmp_path / "b.json").read_text())
    assert document["schema_version"] == "2.2" and document["gate_model"]["checkpoint"] == str(gate)
    assert all(e["pneumonia_probability"] < 0.1 for e in document["images"] if e["error"] is None)


def test_explain_with_a_detector_exits_2_in_one_line_before_predicting(tmp_path, checkpoint):
    write_images(tmp_path / "in")
    line = _one_error_line(_run("infer", tmp_path / "in", "--checkpoint", checkpoint, "--out", tmp_path / "b.json",
                                "--device", "cpu", "--explain", tmp_path / "cam"))
    assert line.startswith(f"error: {checkpoint}: --explain: Grad-CAM is for classifiers and model 'mobilenet_v3_large_fpn' is a detector")
    assert not (tmp_path / "b.json").exists() and not list(tmp_path.glob("cam/*.png"))
