"""detect.evaluation.evaluate: a checkpoint's metrics on synthetic prepared data, numbers worked by
hand, at the operating point the checkpoint stores (or one chosen on val when it has none)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from data_prep.errors import DetectError
from data_prep.manifest import read_manifest
from data_prep.records import RSNA_CLASSES
from detect.data.files import load_image
from detect.evaluation.evaluate import evaluate_loaded_model
from detect.evaluation.submission_eval import evaluate_predictions
from detect.inference.predictor import LoadedModel
from detect.predictions import OperatingPoint, PostprocessSettings, RawPrediction
from tests.detect.train_fixtures import make_kermany, make_rsna, tiny_config


class OraclePredictor:
    """Knows every image of a prepared dataset (by pixel hash) and predicts from its labels.

    RSNA: the true boxes with score 0.9; pneumonia probability 0.9 for positives, 0.1 for
    negatives except the ids in `false_alarm_ids` (0.95); class probability 0.8 on the true class.
    Kermany: P(viral)/(P(bacterial)+P(viral)) = 0.7 for viral, 0.3 for bacterial, except the
    ids in `swapped_subtype_ids`.
    """

    def __init__(self, prepared, false_alarm_ids=(), swapped_subtype_ids=()):
        self.by_hash = {}
        for record in prepared.records:
            pixels = load_image(prepared.image_path(record)).pixels
            self.by_hash[hashlib.sha1(pixels.tobytes()).hexdigest()] = record
        self.false_alarm_ids = set(false_alarm_ids)
        self.swapped_subtype_ids = set(swapped_subtype_ids)
        self.calls = 0

    image_size_px = None  # no input size: detect eval reads the originals whole, which the oracle hashes

    def prepare(self, pixels, original_hw=None):
        return pixels  # the oracle reads the pixels themselves

    def run(self, images):
        self.calls += 1
        out = []
        self.images_seen = getattr(self, "images_seen", 0) + len(images)
        for pixels in images:
            record = self.by_hash[hashlib.sha1(pixels.tobytes()).hexdigest()]
            p = 0.9 if record.target else (0.95 if record.image_id in self.false_alarm_ids else 0.1)
            classes = np.full(3, 0.1)
            if record.rsna_class is not None:
                classes[RSNA_CLASSES.index(record.rsna_class)] = 0.8
            viral = record.subtype == "viral"
            if record.image_id in self.swapped_subtype_ids:
                viral = not viral
            subtypes = (
                np.array([0.0, 0.3, 0.7] if viral else [0.0, 0.7, 0.3])
                if record.subtype != "normal"
                else np.array([1.0, 0.0, 0.0])
            )
            out.append(
                RawPrediction(
                    width_px=pixels.shape[1],
                    height_px=pixels.shape[0],
                    boxes_xyxy=record.boxes_xyxy.copy(),
                    scores=np.full(len(record.boxes_xyxy), 0.9, dtype=np.float32),
                    class_probabilities=classes,
                    subtype_probabilities=subtypes,
                    pneumonia_probability=p,
                )
            )
        return out


def _loaded(predictor, cfg, operating_points=None):
    info = {
        "name": "oracle",
        "task": "detection",
        "checkpoint": "none",
        "checkpoint_epoch": None,
        "image_size_px": 64,
        "config_name": "tiny",
        "detect_version": "test",
    }
    return LoadedModel(
        predictor=predictor,
        checkpoint_path=Path("none"),
        config=cfg,
        model_info=info,
        operating_points=dict(operating_points or {}),
    )


@pytest.fixture(scope="module")
def rsna_prepared(tmp_path_factory):
    root = make_rsna(tmp_path_factory.mktemp("rsna"), n_images=40)
    return read_manifest(root)


def test_eval_of_an_oracle_on_synthetic_rsna_reproduces_hand_numbers(tmp_path, rsna_prepared):
    test_records = rsna_prepared.split_records("test")
    negatives = sorted(r.image_id for r in test_records if not r.target)
    positives = [r for r in test_records if r.target]
    assert positives and len(negatives) >= 1, "the synthetic test split needs both classes"
    oracle = OraclePredictor(rsna_prepared, false_alarm_ids=negatives[:1])
    settings = PostprocessSettings(shrink_factor=0.8)
    outcome = evaluate_loaded_model(
        _loaded(oracle, tiny_config()),
        [rsna_prepared.data_root],
        tmp_path / "eval",
        settings=settings,
        batch_size=4,
        workers=1,
    )
    metrics = outcome.metrics

    # No stored threshold: chosen on val: positives 0.9, negatives 0.1 -> F1 is 1 at 0.9, the highest such cut.
    point = metrics["operating_points"]["rsna"]
    assert point["threshold"] == pytest.approx(0.9) and point["applied_to"] == "rsna test"
    assert point["source"].startswith("F1-optimal on rsna val at evaluation (the checkpoint stores none for it)")
    assert metrics["classification"]["pneumonia"]["threshold_source"] == point["source"]
    # Every true box comes back shrunk by 0.8 about its centre: IoU = 0.8**2 = 0.64, a TP for the
    # five t in 0.40..0.60 and not for 0.65, 0.70, 0.75 (FP + FN): 5/8 on every positive image.
    # Negatives get no box (gated away, or the oracle's false alarm has no box): skipped.
    assert metrics["detection"]["rsna_score"] == pytest.approx(5 / 8)
    # mAP is computed on the raw boxes, which are the truth itself: AP 1 at every IoU.
    assert metrics["detection"]["map"] == pytest.approx(1.0)
    assert metrics["detection"]["rsna_score_no_postprocess"] == pytest.approx(1.0)
    # Image level: the one false alarm (0.95 >= 0.9) among the negatives.
    pneumonia = metrics["classification"]["pneumonia"]
    n_neg, n_pos = len(negatives), len(positives)
    assert pneumonia["confusion_matrix"] == [[n_neg - 1, 1], [0, n_pos]]
    assert pneumonia["specificity"] == pytest.approx((n_neg - 1) / n_neg)
    assert pneumonia["accuracy"] == pytest.approx((n_pos + n_neg - 1) / (n_pos + n_neg))
    assert metrics["classification"]["rsna_3class"]["accuracy"] == pytest.approx(1.0)
    assert metrics["counts"]["rsna_test_images"] == len(test_records)

    # The written test predictions round-trip through `eval --predictions` to the same score.
    csv_path = tmp_path / "eval" / "test_predictions.csv"
    again = evaluate_predictions(csv_path, rsna_prepared.data_root / "stage_2_train_labels.csv", tmp_path / "again")
    assert again.metrics["detection"]["rsna_score"] == pytest.approx(5 / 8, abs=1e-3)
    for name in ("metrics.json", "report.md", "pr_curve.png", "roc_curve.png", "confusion_matrix.png", "examples.png"):
        assert (tmp_path / "eval" / name).is_file(), name


def test_eval_applies_the_operating_point_the_checkpoint_stores(tmp_path, rsna_prepared):
    """The threshold `detect infer` applies is the one reported: no val prediction, no new choice."""
    test_records = rsna_prepared.split_records("test")
    oracle = OraclePredictor(rsna_prepared)
    stored = OperatingPoint("rsna", 0.95, "F1-optimal on rsna val at epoch 4 (9 images)")
    outcome = evaluate_loaded_model(
        _loaded(oracle, tiny_config(), {"rsna": stored}),
        [rsna_prepared.data_root],
        tmp_path / "eval",
        batch_size=4,
        workers=1,
    )
    pneumonia = outcome.metrics["classification"]["pneumonia"]
    assert pneumonia["threshold"] == pytest.approx(0.95) and pneumonia["threshold_source"] == stored.source
    # positives score 0.9 < 0.95: every image is called normal at the stored point
    assert pneumonia["confusion_matrix"][1] == [sum(r.target for r in test_records), 0]
    assert oracle.images_seen == len(test_records)  # the val split was not predicted
    assert "F1-optimal on rsna val at epoch 4" in (tmp_path / "eval" / "report.md").read_text()


def test_eval_refuses_an_unknown_split_and_missing_data(tmp_path):
    loaded = _loaded(None, tiny_config())
    with pytest.raises(DetectError, match="split 'holdout' is unknown; choose test"):
        evaluate_loaded_model(loaded, [tmp_path], tmp_path / "eval", split="holdout")
    with pytest.raises(DetectError, match=f"{tmp_path / 'nothing'}: data folder not found"):
        evaluate_loaded_model(loaded, [tmp_path / "nothing"], tmp_path / "eval")


def test_eval_of_an_oracle_on_synthetic_kermany(tmp_path):
    root = make_kermany(tmp_path / "kermany", n_images=48)
    prepared = read_manifest(root)
    test_records = prepared.split_records("test")
    sick = sorted((r for r in test_records if r.subtype in ("bacterial", "viral")), key=lambda r: r.image_id)
    assert sick, "the synthetic Kermany test split needs pneumonia images"
    oracle = OraclePredictor(prepared, swapped_subtype_ids=[sick[0].image_id])
    outcome = evaluate_loaded_model(_loaded(oracle, tiny_config()), [root], tmp_path / "eval", workers=1)
    kermany = outcome.metrics["kermany"]
    assert kermany["pneumonia"]["accuracy"] == pytest.approx(1.0)
    assert "detection" not in outcome.metrics  # Kermany has no boxes
    # One of the n pneumonia images has its subtype swapped: accuracy (n - 1) / n.
    assert kermany["bacterial_viral"]["accuracy"] == pytest.approx((len(sick) - 1) / len(sick))
    assert kermany["bacterial_viral"]["n"] == len(sick)
