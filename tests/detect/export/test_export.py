"""detect.export: the ONNX file (in ONNX Runtime) and the TorchScript file predict what eager
PyTorch predicts, through the one Predictor; the graph's own outputs are in original pixels;
the weights-only checkpoint loads with weights_only=True and predicts the same.

Tolerances: boxes 1e-3 px after matching (each eager box to the exported box nearest to it,
one to one), box scores and the image probabilities 1e-4.
"""

from __future__ import annotations

import numpy as np
import onnxruntime
import pytest
import torch

from data_prep.errors import CheckpointError, DetectError
from detect.config import config_from_dict
from detect.export.metadata import METADATA_KEY
from detect.export.run import default_out_path, export_checkpoint
from detect.export.wrapper import INPUT_NAMES, OUTPUT_NAMES, ExportableDetector
from detect.inference.backends import OnnxRuntimeBackend, TorchScriptBackend, choose_backend
from detect.inference.postprocess import keep_valid_boxes, to_original_coords
from detect.inference.predictor import load_predictor
from detect.models.build import build_model
from detect.models.checkpoint import save_checkpoint
from detect.models.roi_align import GridSampleMultiScaleRoIAlign
from detect.predictions import OperatingPoint
from tests.data_prep.dicom_fixtures import textured_image
from tests.detect.inference.pixels import run_pixels
from tests.detect.train_fixtures import tiny_config

BOX_TOL_PX = 1e-3
PROB_TOL = 1e-4
SIZE_PX = 64
MODEL_OVERRIDES = {
    # the image probability from the top box (model.image_probability): the exported graph applies the same rule
    "resnet18_fpn:top_box": (
        "model.name=resnet18_fpn",
        "model.trainable_backbone_layers=5",
        "model.image_probability=top_box",
        "model.anchor_sizes_px=[16,32,64,128]",
    ),
    # the demo's model with its training-speed RoIAlign, which the export swaps for torchvision's
    "resnet18_fpn": (
        "model.name=resnet18_fpn",
        "model.trainable_backbone_layers=5",
        "model.roi_align_backend=grid_sample",
        "model.anchor_sizes_px=[16,32,64,128]",
    ),
    "mobilenet_v3_large_fpn": ("model.name=mobilenet_v3_large_fpn",),
    # the pretrained CPU recipe's detector (timm's layers: fused BatchNorm + ReLU6, TensorFlow
    # 'same' padding from the input's size). Export rebuilds every checkpoint with weights 'none'
    # and loads its state, so an ImageNet start exports as this one does (test_efficientnet_lite
    # checks that rebuild predicts what the frozen-BatchNorm model predicted).
    "efficientnet_lite0_fpn": (
        "model.name=efficientnet_lite0_fpn",
        "model.trainable_backbone_layers=5",
        "model.roi_align_backend=grid_sample",
        "model.anchor_sizes_px=[16,32,64,128]",
    ),
}
# non-square originals: the letterbox scale, the padding and the clip all matter
IMAGE_SHAPES_HW = ((96, 64), (50, 128), (80, 80))


def save_detector_checkpoint(path, name: str):
    """An untrained detector whose box head is biased to opacity, with box_score_thresh 0: every
    image has boxes (scores spread out, so the order is not a tie), and an SGD state (momentum
    buffers) like a real run's checkpoint."""
    cfg = tiny_config(*MODEL_OVERRIDES[name], "model.box_score_thresh=0.0", f"data.image_size_px={SIZE_PX}")
    torch.manual_seed(0)
    model = build_model(cfg.model, SIZE_PX)
    with torch.no_grad():
        model.roi_heads.box_predictor.cls_score.bias.copy_(torch.tensor([-0.5, 0.5]))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0, momentum=0.9)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    extra = {
        "operating_points": {"rsna": OperatingPoint("rsna", 0.4, "test").to_dict()},
        "metrics_history": [{"epoch": 1}],
    }
    return save_checkpoint(path, model=model, cfg=cfg, epoch=2, global_step=4, optimizer=optimizer, extra=extra)


@pytest.fixture(scope="module", params=sorted(MODEL_OVERRIDES))
def exported(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    checkpoint = save_detector_checkpoint(folder / "best.pt", request.param)
    files = {fmt: export_checkpoint(checkpoint, fmt).out_path for fmt in ("onnx", "torchscript", "weights")}
    return checkpoint, files


@pytest.fixture(scope="module")
def images():
    return [textured_image(h, w, seed=i) for i, (h, w) in enumerate(IMAGE_SHAPES_HW)]


def assert_same_predictions(expected, actual):
    for want, got in zip(expected, actual, strict=True):
        assert (got.width_px, got.height_px) == (want.width_px, want.height_px)
        assert len(want.boxes_xyxy) > 0, "the test needs boxes to compare"
        assert len(got.boxes_xyxy) == len(want.boxes_xyxy)
        distance = np.abs(want.boxes_xyxy[:, None, :] - got.boxes_xyxy[None, :, :]).max(axis=2)
        match = distance.argmin(axis=1)
        assert len(set(match.tolist())) == len(match), "two eager boxes matched one exported box"
        assert distance[np.arange(len(match)), match].max() <= BOX_TOL_PX
        np.testing.assert_allclose(got.scores[match], want.scores, atol=PROB_TOL, rtol=0)
        np.testing.assert_allclose(got.class_probabilities, want.class_probabilities, atol=PROB_TOL, rtol=0)
        np.testing.assert_allclose(got.subtype_probabilities, want.subtype_probabilities, atol=PROB_TOL, rtol=0)
        assert abs(got.pneumonia_probability - want.pneumonia_probability) <= PROB_TOL


def test_exported_files_predict_what_eager_pytorch_predicts(exported, images):
    checkpoint, files = exported
    eager = load_predictor(checkpoint, device="cpu")
    assert (
        isinstance(eager.predictor.model.roi_heads.box_roi_pool, GridSampleMultiScaleRoIAlign)
        or eager.config.model.roi_align_backend == "torchvision"
    )
    expected = run_pixels(eager.predictor, images)
    for fmt, backend_type in (("onnx", OnnxRuntimeBackend), ("torchscript", TorchScriptBackend)):
        loaded = load_predictor(files[fmt], device="cpu")
        assert isinstance(loaded.predictor.backend, backend_type)
        assert loaded.operating_points == eager.operating_points
        assert loaded.model_info["image_size_px"] == SIZE_PX and loaded.model_info["name"] == eager.model_info["name"]
        assert_same_predictions(expected, run_pixels(loaded.predictor, images))
        # the batch of 3 ran in one call: ONNX Runtime image by image, TorchScript at once
        assert_same_predictions(expected, [run_pixels(loaded.predictor, [image])[0] for image in images])


def test_onnx_graph_returns_boxes_in_original_pixels(exported, images):
    """The graph's own contract, without the Predictor: letterbox scale and original size in,
    boxes in ORIGINAL pixels (clipped, empty ones dropped) out, padded with score -1."""
    checkpoint, files = exported
    eager = load_predictor(checkpoint, device="cpu").predictor
    session = onnxruntime.InferenceSession(str(files["onnx"]), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == list(INPUT_NAMES)
    assert [o.name for o in session.get_outputs()] == list(OUTPUT_NAMES)
    assert METADATA_KEY in session.get_modelmeta().custom_metadata_map
    for image in images:
        item = eager.prepare(image).plain
        feed = {
            "images": item.tensor[None].numpy(),
            "scale": np.array([item.scale], dtype=np.float32),
            "orig_size_hw": np.array([[item.height_px, item.width_px]], dtype=np.int64),
        }
        boxes, scores, count, rsna, pneumonia, subtype = session.run(None, feed)
        out = eager._forward([item])[0]
        want_boxes, want_scores = keep_valid_boxes(
            to_original_coords(out["boxes"], item.scale, item.width_px, item.height_px), out["scores"]
        )
        n = int(count[0])
        assert n == len(want_boxes) > 0
        assert boxes.shape == (1, eager.model.roi_heads.detections_per_img, 4) and scores.dtype == np.float32
        assert (scores[0, n:] == -1).all() and (boxes[0, n:] == 0).all()
        np.testing.assert_allclose(boxes[0, :n], want_boxes, atol=BOX_TOL_PX, rtol=0)
        np.testing.assert_allclose(scores[0, :n], want_scores, atol=PROB_TOL, rtol=0)
        np.testing.assert_allclose(pneumonia, out["pneumonia_prob"], atol=PROB_TOL, rtol=0)
        np.testing.assert_allclose(rsna[0], out["rsna_class_probs"], atol=PROB_TOL, rtol=0)
        np.testing.assert_allclose(subtype[0], out["subtype_probs"], atol=PROB_TOL, rtol=0)


def test_torchscript_file_takes_any_batch_size(exported, images):
    _, files = exported
    module = torch.jit.load(str(files["torchscript"]))
    for batch in (1, 3):
        outputs = module(torch.rand(batch, 3, SIZE_PX, SIZE_PX), torch.ones(batch), torch.full((batch, 2), SIZE_PX))
        assert [o.shape[0] for o in outputs] == [batch] * len(OUTPUT_NAMES)


def test_weights_only_checkpoint_is_smaller_and_predicts_the_same(exported, images):
    checkpoint, files = exported
    payload = torch.load(files["weights"], weights_only=True)
    assert payload["optimizer"] is None and payload["rng"] is None
    assert "metrics_history" not in payload["extra"] and "operating_points" in payload["extra"]
    full = torch.load(checkpoint, weights_only=True)
    assert full["optimizer"]["state"], "the source checkpoint must carry optimizer state for this test"
    assert files["weights"].stat().st_size < checkpoint.stat().st_size
    assert_same_predictions(
        run_pixels(load_predictor(checkpoint, device="cpu").predictor, images),
        run_pixels(load_predictor(files["weights"], device="cpu").predictor, images),
    )


def test_exportable_detector_leaves_the_model_unchanged(tmp_path):
    checkpoint = save_detector_checkpoint(tmp_path / "best.pt", "resnet18_fpn")
    model = load_predictor(checkpoint, device="cpu").predictor.model
    ExportableDetector(model)
    assert isinstance(model.roi_heads.box_roi_pool, GridSampleMultiScaleRoIAlign)


def test_backend_must_fit_the_file(exported, tmp_path):
    checkpoint, files = exported
    assert choose_backend(files["onnx"], None) == "onnxruntime"
    assert choose_backend(files["torchscript"], None) == "torchscript"
    assert choose_backend(files["weights"], None) == "eager" == choose_backend(checkpoint, "eager")
    with pytest.raises(DetectError, match="--backend eager needs a training or weights-only checkpoint"):
        choose_backend(files["onnx"], "eager")
    with pytest.raises(DetectError, match=r"--backend onnxruntime needs an \.onnx file"):
        choose_backend(checkpoint, "onnxruntime")
    with pytest.raises(DetectError, match="--backend is 'tensorrt'; choose one of eager, torchscript, onnxruntime"):
        choose_backend(checkpoint, "tensorrt")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(CheckpointError, match="bad.onnx: not a readable ONNX model"):
        load_predictor(bad, device="cpu")


def test_missing_onnxruntime_is_one_line(exported, monkeypatch):
    _, files = exported
    monkeypatch.setattr("detect.extras.is_installed", lambda module: module != "onnxruntime")
    with pytest.raises(
        DetectError,
        match=r"needs the 'export' extra \(No module named 'onnxruntime'\): "
        r'pip install "detect\[export\]"',
    ):
        load_predictor(files["onnx"], device="cpu")


def test_default_out_paths(tmp_path):
    assert default_out_path(tmp_path / "best.pt", "onnx") == tmp_path / "best.onnx"
    assert default_out_path(tmp_path / "best.pt", "torchscript") == tmp_path / "best.torchscript.pt"
    assert default_out_path(tmp_path / "best.pt", "weights") == tmp_path / "best.weights.pt"
    with pytest.raises(DetectError, match="--format is 'tflite'"):
        export_checkpoint(tmp_path / "best.pt", "tflite")


@pytest.mark.parametrize(
    "name, task", [("basic_cnn", "kermany3"), ("resnet18", "rsna2"), ("efficientnet_lite0", "kermany2")]
)
def test_exported_classifier_predicts_what_eager_pytorch_predicts(tmp_path, images, name, task):
    """A classifier checkpoint exports under the same contract: no boxes, the same probabilities."""
    cfg = config_from_dict(
        {}, [f"model.name={name}", f"task={task}", f"data.image_size_px={SIZE_PX}", "train.monitor=val_f1"]
    )
    torch.manual_seed(0)
    model = build_model(cfg.model, SIZE_PX, task=cfg.task)
    checkpoint = save_checkpoint(tmp_path / "best.pt", model=model, cfg=cfg, epoch=1, global_step=2)
    expected = run_pixels(load_predictor(checkpoint, device="cpu").predictor, images)
    assert len({round(p.pneumonia_probability, 6) for p in expected}) > 1, "the images must differ for the test"
    for fmt in ("onnx", "torchscript"):
        result = export_checkpoint(checkpoint, fmt)
        assert result.max_abs_diff is not None and result.max_abs_diff < PROB_TOL
        got = run_pixels(load_predictor(result.out_path, device="cpu").predictor, images)
        for want, have in zip(expected, got, strict=True):
            assert have.boxes_xyxy.shape == (0, 4) and have.scores.shape == (0,)
            np.testing.assert_allclose(have.class_probabilities, want.class_probabilities, atol=PROB_TOL, rtol=0)
            np.testing.assert_allclose(have.subtype_probabilities, want.subtype_probabilities, atol=PROB_TOL, rtol=0)
            assert abs(have.pneumonia_probability - want.pneumonia_probability) <= PROB_TOL
