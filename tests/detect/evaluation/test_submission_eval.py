"""detect.evaluation.submission_eval: a Kaggle submission against the labels, numbers worked by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from data_prep.errors import LabelFileError
from detect.evaluation.report import format_summary
from detect.evaluation.submission_eval import evaluate_predictions

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
