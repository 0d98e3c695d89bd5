"""A checkpoint whose weights are NaN is refused, never read as a negative study: one line naming
the checkpoint through every backend (eager, TorchScript, ONNX Runtime), in infer, eval, serve
(500, the server stays up) and training's validation; and no JSON writer writes NaN."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cli import app
from data_prep.errors import ModelOutputError
from detect.evaluation.evaluate import evaluate_checkpoint
from detect.export.run import export_checkpoint
from detect.inference.api import Detector
from detect.inference.predictor import load_predictor
from detect.models.build import build_model
from detect.models.checkpoint import save_checkpoint
from tests.data_prep.dicom_fixtures import textured_image, write_jpeg_baseline_dicom
from tests.detect.inference.pixels import run_pixels
from tests.detect.train_fixtures import make_rsna, tiny_config


def save_nan_checkpoint(path):
    """The tiny detector of the inference tests with every floating-point weight NaN."""
    cfg = tiny_config()
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.data.image_size_px)
    with torch.no_grad():
        for tensor in list(model.parameters()) + list(model.buffers()):
            if tensor.is_floating_point():
                tensor.fill_(float("nan"))
    return save_checkpoint(path, model=model, cfg=cfg, epoch=1, global_step=1, extra={})


@pytest.fixture(scope="module")
def nan_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("nan")
    checkpoint = save_nan_checkpoint(folder / "best.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporters warn about traced control flow
        files = {
            "eager": checkpoint,
            "torchscript": export_checkpoint(checkpoint, "torchscript").out_path,
            "onnxruntime": export_checkpoint(checkpoint, "onnx").out_path,
        }
    scan = write_jpeg_baseline_dicom(folder / "scan.dcm", textured_image(64, 64, seed=3))
    return files, scan


@pytest.mark.parametrize("backend", ["eager", "torchscript", "onnxruntime"])
def test_infer_refuses_non_finite_outputs_naming_the_checkpoint(nan_files, backend, tmp_path):
    files, scan = nan_files
    out = tmp_path / "boxes.json"
    result = CliRunner().invoke(
        app,
        [
            "infer",
            str(scan),
            "--checkpoint",
            str(files[backend]),
            "--backend",
            backend,
            "--device",
            "cpu",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith(f"error: {files[backend]}: the model's output '") and "is not finite" in lines[-1]
    assert sum(line.startswith("error:") for line in lines) == 1
    assert not out.exists()


def test_the_api_refuses_them_too(nan_files):
    files, scan = nan_files
    loaded = load_predictor(files["eager"], device="cpu")
    with pytest.raises(ModelOutputError, match=rf"^{files['eager']}: the model's output"):
        run_pixels(loaded.predictor, [textured_image(64, 64)])


def test_eval_refuses_them(nan_files, tmp_path):
    files, _ = nan_files
    data = make_rsna(tmp_path / "rsna", n_images=12)
    with pytest.raises(ModelOutputError, match=rf"^{files['eager']}: the model's output"):
        evaluate_checkpoint(files["eager"], [data], tmp_path / "eval", device="cpu")
    assert not (tmp_path / "eval" / "metrics.json").exists()


def test_validation_during_training_refuses_them(tmp_path):
    from detect.training.engine import evaluate
    from tests.detect.training.test_engine import _loader, _records

    cfg = tiny_config()
    model = build_model(cfg.model, cfg.data.image_size_px)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    with pytest.raises(ModelOutputError, match=r"^validation at epoch 3: the model's output"):
        evaluate(model, _loader(_records()), torch.device("cpu"), epoch=3)


def test_serve_answers_500_with_the_message_and_stays_up(nan_files):
    from detect.serve.predict import ServeModel
    from tests.detect.serve.conftest import make_client

    files, scan = nan_files
    model = ServeModel(Detector.from_checkpoint(files["eager"], device="cpu"))
    try:
        with make_client(model) as client:
            for _ in range(2):
                answer = client.post(
                    "/v1/predict", content=scan.read_bytes(), headers={"content-type": "application/dicom"}
                )
                assert answer.status_code == 500, answer.text
                assert answer.json()["error"].startswith(f"{files['eager']}: the model's output")
            assert client.get("/healthz").status_code == 200
    finally:
        model.close()


def test_the_json_writers_refuse_nan(tmp_path):
    from detect.inference.jsonl import _line

    with pytest.raises(ValueError, match="not JSON compliant"):
        _line({"pneumonia_probability": float("nan")})
    assert np.isnan(json.loads("NaN"))  # what a lenient reader would have accepted from a lenient writer
