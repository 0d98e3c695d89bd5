"""detect.inference.predictor: the one predictor maps to ORIGINAL pixels, flips for TTA, and gives
validation, `detect eval` and `detect infer` identical boxes and probabilities."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from data_prep.cache import build_cache
from data_prep.manifest import read_manifest
from detect.data.dataset import build_datasets
from detect.evaluation.evaluate import predict_records
from detect.inference.batch import run_inference
from detect.inference.predictor import Predictor, load_predictor
from detect.training.data_setup import build_loader
from detect.training.engine import evaluate
from tests.detect.inference.pixels import run_pixels
from tests.detect.inference.test_batch import save_tiny_checkpoint
from tests.detect.train_fixtures import make_rsna

SIZE_PX = 64


class _StubModel(torch.nn.Module):
    """Returns fixed boxes in INPUT pixels; the pneumonia probability differs per call (view)."""

    def __init__(self, boxes_input_xyxy, scores, probs_per_call):
        super().__init__()
        self.boxes, self.scores = torch.tensor(boxes_input_xyxy, dtype=torch.float32), torch.tensor(scores)
        self.probs = list(probs_per_call)
        self.inputs: list[list[torch.Tensor]] = []

    def forward(self, images):
        self.inputs.append(images)
        p = self.probs[len(self.inputs) - 1]
        return [
            {
                "boxes": self.boxes.clone(),
                "scores": self.scores.clone(),
                "labels": torch.ones(len(self.scores), dtype=torch.int64),
                "rsna_class_probs": torch.tensor([0.2, 0.3, 0.5]),
                "pneumonia_prob": torch.tensor(p),
                "subtype_probs": torch.tensor([0.1, 0.6, 0.3]),
            }
            for _ in images
        ]


def test_predictor_maps_boxes_back_to_original_pixels():
    # A 100 (h) x 200 (w) image letterboxed to 64 px: scale = 64 / 200 = 0.32.
    # [0, 0, 32, 32] / 0.32 = [0, 0, 100, 100]; [40, 40, 60, 60] / 0.32 = [125, 125, 187.5, 187.5]
    # lies below the image (in the padding): clipped to height 100 it is empty and dropped.
    model = _StubModel([[0, 0, 32, 32], [40, 40, 60, 60]], [0.8, 0.7], [0.7])
    raw = run_pixels(Predictor(model, SIZE_PX, torch.device("cpu")), [np.zeros((100, 200), dtype=np.uint8)])[0]
    np.testing.assert_allclose(raw.boxes_xyxy, [[0, 0, 100, 100]], atol=1e-4)
    np.testing.assert_allclose(raw.scores, [0.8])
    assert (raw.width_px, raw.height_px) == (200, 100)
    assert raw.pneumonia_probability == pytest.approx(0.7)
    assert model.inputs[0][0].shape == (3, SIZE_PX, SIZE_PX)


def test_flip_tta_flips_boxes_back_and_averages_probabilities():
    model = _StubModel([[0, 0, 32, 32]], [0.8], [0.7, 0.5])
    image = np.zeros((100, 200), dtype=np.uint8)
    image[:, :10] = 255  # the flipped view must really be flipped
    raw = run_pixels(Predictor(model, SIZE_PX, torch.device("cpu"), tta=True), [image])[0]
    # The flipped view's [0, 0, 100, 100] is [200 - 100, 0, 200 - 0, 100] = [100, 0, 200, 100] in
    # the original. The two boxes do not overlap: WBF keeps both at 0.8 * 1/2 = 0.4.
    order = np.argsort(raw.boxes_xyxy[:, 0])
    np.testing.assert_allclose(raw.boxes_xyxy[order], [[0, 0, 100, 100], [100, 0, 200, 100]], atol=1e-4)
    np.testing.assert_allclose(raw.scores, [0.4, 0.4])
    assert raw.pneumonia_probability == pytest.approx(0.6)  # (0.7 + 0.5) / 2
    original, flipped = model.inputs[0][0], model.inputs[1][0]
    assert float(original[0, 0, 0]) == 1.0 and float(flipped[0, 0, 0]) == 0.0
    assert float(flipped[0, 0, 63]) == 1.0  # 200 px wide -> 64 px: the white band is now on the right


@pytest.fixture(scope="module")
def prepared_rsna_with_cache(tmp_path_factory):
    root = make_rsna(tmp_path_factory.mktemp("rsna"), n_images=24)
    prepared = read_manifest(root)
    build_cache(prepared, SIZE_PX, workers=1)
    return prepared


@pytest.mark.parametrize("use_cache", [True, False])
def test_validation_eval_and_infer_give_identical_boxes_and_probabilities(
    tmp_path, prepared_rsna_with_cache, use_cache
):
    """One checkpoint, the val images, three paths: the loader of training validation (cached PNGs
    or originals), `detect eval`'s reading of the original DICOMs, and `detect infer` on the files."""
    prepared = prepared_rsna_with_cache
    checkpoint = save_tiny_checkpoint(tmp_path / "best.pt", overrides=(f"data.use_cache={str(use_cache).lower()}",))
    loaded = load_predictor(checkpoint, device="cpu")
    cfg = loaded.config
    val_records = prepared.split_records("val")
    assert len(val_records) >= 3

    # 1. validation during training, batched as the loader batches (train.batch_size)
    val_set = build_datasets([prepared], cfg)["val"]
    result = evaluate(loaded.predictor.model, build_loader(val_set, cfg, torch.device("cpu")), torch.device("cpu"))
    validation = dict(zip([r.image_id for r in result.records], result.predictions))
    # 2. detect eval's prediction of the split, in batches of the same size
    split = predict_records(
        loaded.predictor, prepared.data_root, val_records, batch_size=cfg.train.batch_size, workers=1
    )
    evaluation = dict(zip([r.image_id for r in split.records], split.raw))
    # 3. detect infer on the same files, same batch size
    files = [prepared.image_path(r) for r in val_records]
    inferred = run_inference(
        files,
        out_path=tmp_path / "boxes.json",
        checkpoint=checkpoint,
        device="cpu",
        batch_size=cfg.train.batch_size,
        workers=1,
        score_thresh=0.0,
        gate=False,
        shrink_factor=1.0,
    )
    assert set(validation) == set(evaluation) == {r.image_id for r in val_records}
    entries = {Path(e["source"]).stem: e for e in json.loads((tmp_path / "boxes.json").read_text())["images"]}
    assert inferred.n_predicted == len(val_records)
    for record in val_records:
        a, b = validation[record.image_id], evaluation[record.image_id]
        np.testing.assert_array_equal(a.boxes_xyxy, b.boxes_xyxy)
        np.testing.assert_array_equal(a.scores, b.scores)
        assert a.pneumonia_probability == b.pneumonia_probability
        np.testing.assert_array_equal(a.class_probabilities, b.class_probabilities)
        np.testing.assert_array_equal(a.subtype_probabilities, b.subtype_probabilities)
        # infer post-processes (here: nothing dropped, no gating or shrinking) and rounds for JSON
        entry = entries[record.patient_id]
        assert entry["pneumonia_probability"] == round(a.pneumonia_probability, 6)
        boxes = a.boxes_xyxy[np.argsort(-a.scores, kind="stable")].astype(np.float64)
        np.testing.assert_allclose(
            [[e["x"], e["y"], e["x"] + e["width"], e["y"] + e["height"]] for e in entry["boxes"]],
            boxes.reshape(-1, 4),
            atol=0.011,
        )


def test_an_input_decoded_smaller_maps_back_to_the_original_size():
    from detect.inference.predictor import prepare_input

    original = np.zeros((256, 128), dtype=np.uint8)
    original[64:128, 32:96] = 255
    full = prepare_input(original, 64)
    reduced = prepare_input(original[::4, ::4].copy(), 64, original_hw=(256, 128))  # a 1/4 DCT-scale decode
    assert (
        (reduced.height_px, reduced.width_px, reduced.scale)
        == (full.height_px, full.width_px, full.scale)
        == (256, 128, 0.25)
    )
    assert torch.equal(reduced.tensor, full.tensor)  # flat-sided block on the 4 px grid: the same input
