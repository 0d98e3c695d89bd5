"""detect.evaluate: numbers worked by hand, on CSV pairs and on synthetic prepared data."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from data_prep.errors import DetectError, LabelFileError
from data_prep.records import RSNA_CLASSES
from detect.evaluate import evaluate_loaded_model, evaluate_predictions, format_summary
from detect.infer import LoadedModel, RawPrediction, load_image
from detect.postprocess import PostprocessSettings

LABELS_CSV = (
    "patientId,x,y,width,height,Target\n"
    "p1,100,100,100,100,1\n"
    "p2,,,,,0\n"
    "p3,,,,,0\n"
    "p4,0,0,100,100,1\n"
    "p4,300,300,100,100,1\n"
    "p5,500,500,100,100,1\n"  # not in the predictions: not scored
)
PREDICTIONS_CSV = (
    "patientId,PredictionString\n"
    "p1,0.9 120 100 100 100\n"
    "p2,\n"
    "p3,0.3 10 10 50 50\n"
    "p4,0.8 0 0 100 100 0.95 600 600 100 100\n"
)
# RSNA score, per image (IoU thresholds t = 0.40, 0.45, ..., 0.75; TP when IoU > t):
#   p1: the box is shifted 20 px: IoU = 80*100 / (2*100*100 - 8000) = 0.6667 -> TP for the six
#       t <= 0.65 (score 1/1), FP + FN for t = 0.70, 0.75 (score 0/2): 6/8 = 0.75
#   p2: no truth, no prediction: skipped
#   p3: no truth, one prediction: 0
#   p4: at every t one TP (the exact box), one FP (600,600), one FN (300,300): 1/3
#   mean over p1, p3, p4 = (0.75 + 0 + 1/3) / 3 = 0.361111
EXPECTED_RSNA = (0.75 + 0.0 + 1 / 3) / 3
# COCO AP at one IoU threshold t (3 true boxes; detections by score: p4's FP 0.95, p1 0.9,
# p4's match 0.8, p3 0.3):
#   t <= 0.65 (0.50, 0.55, 0.60, 0.65): FP, TP, TP, FP -> recall 0, 1/3, 2/3, 2/3, precision
#     0, 1/2, 2/3, 1/2; monotone envelope 2/3 up to recall 2/3: 67 of the 101 recall points
#     (0.00 .. 0.66) -> AP = 67 * (2/3) / 101 = 134/303
#   t >= 0.70 (six thresholds): FP, FP, TP, FP -> envelope 1/3 up to recall 1/3: 34 points
#     (0.00 .. 0.33) -> AP = 34 * (1/3) / 101 = 34/303
#   mAP = (4 * 134/303 + 6 * 34/303) / 10 = 740/3030
EXPECTED_MAP50 = 134 / 303
EXPECTED_MAP75 = 34 / 303
EXPECTED_MAP = 740 / 3030


def _write_pair(tmp_path: Path) -> tuple[Path, Path]:
    predictions, labels = tmp_path / "sub.csv", tmp_path / "labels.csv"
    predictions.write_text(PREDICTIONS_CSV)
    labels.write_text(LABELS_CSV)
    return predictions, labels


def test_predictions_against_labels_worked_by_hand(tmp_path):
    predictions, labels = _write_pair(tmp_path)
    outcome = evaluate_predictions(predictions, labels, tmp_path / "eval")
    detection = outcome.metrics["detection"]
    assert detection["rsna_score"] == pytest.approx(EXPECTED_RSNA, abs=1e-12)
    assert detection["map50"] == pytest.approx(EXPECTED_MAP50, abs=1e-9)
    assert detection["map75"] == pytest.approx(EXPECTED_MAP75, abs=1e-9)
    assert detection["map"] == pytest.approx(EXPECTED_MAP, abs=1e-9)
    assert detection["n_images"] == 4  # p5 is not in the predictions
    # Image level: scores = max box confidence (p1 0.9, p2 0, p3 0.3, p4 0.95); called positive
    # with any box: TP p1 p4, FP p3, TN p2 -> accuracy 3/4, sensitivity 1, specificity 1/2,
    # precision 2/3, F1 = 2*2 / (2*2 + 1 + 0) = 0.8; both positives outrank both negatives: AUC 1.
    pneumonia = outcome.metrics["classification"]["pneumonia"]
    assert pneumonia["confusion_matrix"] == [[1, 1], [0, 2]]
    assert pneumonia["accuracy"] == pytest.approx(0.75)
    assert pneumonia["specificity"] == pytest.approx(0.5)
    assert pneumonia["f1"] == pytest.approx(0.8)
    assert pneumonia["roc_auc"] == pytest.approx(1.0)
    assert any("scored the 4 patients" in note for note in outcome.notes)

    written = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert written["detection"]["rsna_score"] == pytest.approx(EXPECTED_RSNA)
    for name in ("metrics.json", "report.md", "pr_curve.png", "roc_curve.png", "confusion_matrix.png"):
        assert (tmp_path / "eval" / name).is_file(), name
    assert "0.3611" in (tmp_path / "eval" / "report.md").read_text()
    summary = format_summary(outcome.metrics)
    assert "RSNA score" in summary and "0.3611" in summary


def test_predictions_for_unknown_patients_are_refused(tmp_path):
    predictions, labels = _write_pair(tmp_path)
    predictions.write_text(PREDICTIONS_CSV + "nobody,\n")
    with pytest.raises(LabelFileError) as info:
        evaluate_predictions(predictions, labels, tmp_path / "eval")
    assert str(info.value) == (
        f"{predictions}: 1 patientId(s) have no row in {labels}, e.g. 'nobody' "
        "(predictions and labels must name the same patients)"
    )


def test_malformed_predictions_csv_is_a_one_line_error(tmp_path):
    predictions, labels = _write_pair(tmp_path)
    predictions.write_text("patientId,PredictionString\np1,0.9 1 2 3\n")
    with pytest.raises(LabelFileError, match=r"sub.csv: line 2: PredictionString has 4 numbers"):
        evaluate_predictions(predictions, labels, tmp_path / "eval")


# ----------------------------------------------------------------- a model on prepared data


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

    def predict_raw(self, images):
        self.calls += 1
        out = []
        for pixels in images:
            record = self.by_hash[hashlib.sha1(pixels.tobytes()).hexdigest()]
            p = 0.9 if record.target else (0.95 if record.image_id in self.false_alarm_ids else 0.1)
            classes = np.full(3, 0.1)
            if record.rsna_class is not None:
                classes[RSNA_CLASSES.index(record.rsna_class)] = 0.8
            viral = record.subtype == "viral"
            if record.image_id in self.swapped_subtype_ids:
                viral = not viral
            subtypes = np.array([0.0, 0.3, 0.7] if viral else [0.0, 0.7, 0.3]) if record.subtype != "normal" else np.array([1.0, 0.0, 0.0])
            out.append(RawPrediction(
                width_px=pixels.shape[1], height_px=pixels.shape[0],
                boxes_xyxy=record.boxes_xyxy.copy(), scores=np.full(len(record.boxes_xyxy), 0.9, dtype=np.float32),
                class_probabilities=classes, subtype_probabilities=subtypes, pneumonia_probability=p,
            ))
        return out


def _loaded(predictor, cfg):
    info = {"name": "oracle", "checkpoint": "none", "checkpoint_epoch": None, "image_size_px": 64, "config_name": "tiny", "detect_version": "test"}
    return LoadedModel(predictor=predictor, checkpoint_path=Path("none"), config=cfg, model_info=info, checkpoint_threshold=None)


@pytest.fixture(scope="module")
def rsna_prepared(tmp_path_factory):
    from data_prep.manifest import read_manifest
    from tests.detect.train_fixtures import make_rsna

    root = make_rsna(tmp_path_factory.mktemp("rsna"), n_images=40)
    return read_manifest(root)


def test_eval_of_an_oracle_on_synthetic_rsna_reproduces_hand_numbers(tmp_path, rsna_prepared):
    from tests.detect.train_fixtures import tiny_config

    test_records = rsna_prepared.split_records("test")
    negatives = sorted(r.image_id for r in test_records if not r.target)
    positives = [r for r in test_records if r.target]
    assert positives and len(negatives) >= 1, "the synthetic test split needs both classes"
    oracle = OraclePredictor(rsna_prepared, false_alarm_ids=negatives[:1])
    settings = PostprocessSettings(shrink_factor=0.8)
    outcome = evaluate_loaded_model(_loaded(oracle, tiny_config()), [rsna_prepared.data_root], tmp_path / "eval", settings=settings, batch_size=4, workers=1)
    metrics = outcome.metrics

    # Threshold on val: positives 0.9, negatives 0.1 -> F1 is 1 at 0.9, the highest such cut.
    assert metrics["threshold"]["value"] == pytest.approx(0.9)
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


def test_eval_refuses_an_unknown_split_and_missing_data(tmp_path):
    from tests.detect.train_fixtures import tiny_config

    loaded = _loaded(None, tiny_config())
    with pytest.raises(DetectError, match="split 'holdout' is unknown; choose test"):
        evaluate_loaded_model(loaded, [tmp_path], tmp_path / "eval", split="holdout")
    with pytest.raises(DetectError, match=f"{tmp_path / 'nothing'}: data folder not found"):
        evaluate_loaded_model(loaded, [tmp_path / "nothing"], tmp_path / "eval")


def test_eval_of_an_oracle_on_synthetic_kermany(tmp_path):
    from data_prep.manifest import read_manifest
    from tests.detect.train_fixtures import make_kermany, tiny_config

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
