"""Exact evaluation metrics: the RSNA competition score, COCO mAP, classification metrics.

Box contract (the project's, see `data_prep.records`): boxes are float arrays [N, 4] in xyxy
pixels (x_min, y_min, x_max, y_max), x_max >= x_min, y_max >= y_min; "no boxes" is shape
(0, 4). Everything here computes in float64 whatever dtype comes in, and is pure: numpy in,
python floats / dicts out, no torch.

    Predictions = {image_id: (boxes_xyxy [N, 4], scores [N])}
    GroundTruth = {image_id: boxes_xyxy [M, 4]}

The ground truth defines the evaluated images. An image of the ground truth that is missing
from the predictions has no predictions; a predicted image_id that is not in the ground truth
is an error (it is nearly always an id mismatch that would otherwise silently score 0).

IoU is continuous (area = (x_max - x_min) * (y_max - y_min), no "+1 pixel"), as in
pycocotools and the RSNA evaluation; boxes of zero area have IoU 0 with everything.

RSNA competition score (`rsna_image_score`, `rsna_score`), per image:
    for each t in RSNA_IOU_THRESHOLDS = 0.40, 0.45, ..., 0.75:
        predictions are taken in descending confidence (a stable sort on -score, so equal
        scores keep their input order); each is matched to the still-unmatched ground-truth
        box with the highest IoU (equal IoUs: the lowest ground-truth index) and is a true
        positive when that IoU is STRICTLY greater than t; otherwise it is a false positive.
        Unmatched ground-truth boxes are false negatives.
        score(t) = TP / (TP + FP + FN)
    image score = mean of score(t) over the 8 thresholds.
    No ground truth and no prediction: the image is skipped (None, not in the mean).
    No ground truth and any prediction: 0. Ground truth and no prediction: 0.
    rsna_score = mean of the image scores over the images that are not skipped.
Every box handed in counts: apply the score threshold BEFORE calling these functions (the
competition scored every box in the submission).
This follows the competition's evaluation page (prediction-first, confidence order, IoU
"greater than" t). The widely copied public kernel `map_iou` differs in two ways: it loops
over ground-truth boxes first and uses IoU >= t; it can give different numbers.

COCO mAP (`coco_map`) is pycocotools' COCOeval (bbox, one category 'opacity', area 'all',
maxDets 100, 101 recall points).

Classification: a sample is predicted positive when its probability is >= the threshold.
Ratios whose denominator is 0 (precision with no predicted positive, ROC-AUC with one class
only, ...) are nan, never a made-up 0 or 1.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Mapping, Sequence

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from sklearn.metrics import average_precision_score, roc_auc_score

from detect.inference.postprocess import box_iou

Predictions = Mapping[str, tuple[np.ndarray, np.ndarray]]
GroundTruth = Mapping[str, np.ndarray]

# Built by rounding so that 0.40 + 0.05 * 4 is exactly the float 0.6 (not 0.6000000000000001).
RSNA_IOU_THRESHOLDS: tuple[float, ...] = tuple(round(0.40 + 0.05 * i, 2) for i in range(8))

COCO_CATEGORY = {"id": 1, "name": "opacity"}


# --------------------------------------------------------------------------------- boxes / IoU


def _as_boxes(boxes_xyxy: np.ndarray, name: str) -> np.ndarray:
    """Validate and return float64 [N, 4] xyxy boxes; ValueError naming `name` otherwise."""
    boxes = np.asarray(boxes_xyxy, dtype=np.float64)
    if boxes.size == 0:
        return np.zeros((0, 4), dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{name}: expected boxes of shape [N, 4] (xyxy), got shape {boxes.shape}")
    if not np.isfinite(boxes).all():
        raise ValueError(f"{name}: boxes contain nan or inf")
    inverted = np.flatnonzero((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1]))
    if inverted.size:
        i = int(inverted[0])
        raise ValueError(
            f"{name}: box {i} {boxes[i].tolist()} has x_max < x_min or y_max < y_min "
            "(boxes must be xyxy; xywh boxes passed as xyxy look like this)"
        )
    return boxes


def _as_scores(scores: np.ndarray, n_boxes: int, name: str) -> np.ndarray:
    values = np.asarray(scores, dtype=np.float64).reshape(-1)
    if values.shape[0] != n_boxes:
        raise ValueError(f"{name}: {n_boxes} boxes but {values.shape[0]} scores")
    if not np.isfinite(values).all():
        raise ValueError(f"{name}: scores contain nan or inf")
    return values


def iou_matrix(boxes_a_xyxy: np.ndarray, boxes_b_xyxy: np.ndarray) -> np.ndarray:
    """Pairwise IoU of validated xyxy boxes: float64 [N, M] (shape (N, 0) / (0, M) when one side is empty).

    detect.inference.postprocess.box_iou (torchvision's, in float64) after the checks of
    `_as_boxes`: continuous areas (no +1 pixel); a pair whose union is 0 has IoU 0.
    """
    return box_iou(_as_boxes(boxes_a_xyxy, "boxes_a_xyxy"), _as_boxes(boxes_b_xyxy, "boxes_b_xyxy"))


def _descending_order(scores: np.ndarray) -> np.ndarray:
    """Indices by descending score; equal scores keep their input order (stable)."""
    return np.argsort(-scores, kind="stable")


# ------------------------------------------------------------------------------- RSNA score


def rsna_image_score(pred_boxes_xyxy: np.ndarray, pred_scores: np.ndarray, gt_boxes_xyxy: np.ndarray) -> float | None:
    """The RSNA competition score of one image (see the module docstring); None = skipped.

    pred_boxes_xyxy: [N, 4] xyxy, pred_scores: [N] confidences, gt_boxes_xyxy: [M, 4] xyxy.
    """
    pred = _as_boxes(pred_boxes_xyxy, "pred_boxes_xyxy")
    scores = _as_scores(pred_scores, pred.shape[0], "pred_scores")
    gt = _as_boxes(gt_boxes_xyxy, "gt_boxes_xyxy")
    n_pred, n_gt = pred.shape[0], gt.shape[0]
    if n_pred == 0 and n_gt == 0:
        return None
    if n_pred == 0 or n_gt == 0:
        return 0.0  # every threshold has TP = 0 and FP + FN > 0
    ious = iou_matrix(pred[_descending_order(scores)], gt)
    total = 0.0
    for t in RSNA_IOU_THRESHOLDS:
        gt_taken = np.zeros(n_gt, dtype=bool)
        tp = 0
        for row in ious:
            candidates = np.where(gt_taken, -1.0, row)
            best = int(np.argmax(candidates))  # first index among equal IoUs
            if candidates[best] > t:
                gt_taken[best] = True
                tp += 1
        fp = n_pred - tp
        fn = n_gt - tp
        total += tp / (tp + fp + fn)
    return total / len(RSNA_IOU_THRESHOLDS)


def _check_image_ids(predictions: Predictions, ground_truth: GroundTruth) -> None:
    unknown = sorted(set(predictions) - set(ground_truth))
    if unknown:
        raise ValueError(
            f"predictions name {len(unknown)} image id(s) absent from the ground truth, e.g. {unknown[0]!r}"
        )


def _prediction_of(predictions: Predictions, image_id: str) -> tuple[np.ndarray, np.ndarray]:
    if image_id not in predictions:
        return np.zeros((0, 4), dtype=np.float64), np.zeros((0,), dtype=np.float64)
    boxes, scores = predictions[image_id]
    return boxes, scores


def rsna_score_per_image(predictions: Predictions, ground_truth: GroundTruth) -> dict[str, float | None]:
    """{image_id: RSNA image score or None (skipped)} for every image of the ground truth."""
    _check_image_ids(predictions, ground_truth)
    result: dict[str, float | None] = {}
    for image_id, gt_boxes in ground_truth.items():
        boxes, scores = _prediction_of(predictions, image_id)
        try:
            result[image_id] = rsna_image_score(boxes, scores, gt_boxes)
        except ValueError as exc:
            raise ValueError(f"image {image_id!r}: {exc}") from None
    return result


def rsna_score(predictions: Predictions, ground_truth: GroundTruth) -> float:
    """The RSNA competition score: mean image score over the images not skipped (nan if none)."""
    scored = [s for s in rsna_score_per_image(predictions, ground_truth).values() if s is not None]
    if not scored:
        return math.nan
    return float(np.mean(np.asarray(scored, dtype=np.float64)))


# --------------------------------------------------------------------------------- COCO mAP


def _validated_detection_inputs(
    predictions: Predictions, ground_truth: GroundTruth
) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """[(image_id, pred_boxes, pred_scores, gt_boxes)] in sorted image_id order (COCO's order)."""
    _check_image_ids(predictions, ground_truth)
    rows = []
    for image_id in sorted(ground_truth):
        boxes, scores = _prediction_of(predictions, image_id)
        try:
            pred = _as_boxes(boxes, "pred_boxes_xyxy")
            rows.append(
                (
                    image_id,
                    pred,
                    _as_scores(scores, pred.shape[0], "pred_scores"),
                    _as_boxes(ground_truth[image_id], "gt_boxes_xyxy"),
                )
            )
        except ValueError as exc:
            raise ValueError(f"image {image_id!r}: {exc}") from None
    return rows


def _xywh_list(box_xyxy: np.ndarray) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    return [x1, y1, x2 - x1, y2 - y1]


def coco_map(predictions: Predictions, ground_truth: GroundTruth) -> dict[str, float]:
    """{'map': AP@[.50:.05:.95], 'map50': AP@.50, 'map75': AP@.75} from pycocotools' COCOeval.

    bbox evaluation, one category 'opacity', area 'all', maxDets 100. Images without ground
    truth take part (their predictions are false positives). No ground-truth box at all: AP is
    undefined and every value is nan.
    """
    rows = _validated_detection_inputs(predictions, ground_truth)
    if not any(gt.shape[0] for _, _, _, gt in rows):
        return {"map": math.nan, "map50": math.nan, "map75": math.nan}

    images, gt_anns, dt_anns = [], [], []
    # COCO treats annotation id 0 as "unmatched": ids start at 1.
    for coco_image_id, (image_id, pred, scores, gt) in enumerate(rows, start=1):
        images.append({"id": coco_image_id, "file_name": image_id})
        for box in gt:
            xywh = _xywh_list(box)
            gt_anns.append(
                {
                    "id": len(gt_anns) + 1,
                    "image_id": coco_image_id,
                    "category_id": 1,
                    "bbox": xywh,
                    "area": xywh[2] * xywh[3],
                    "iscrowd": 0,
                }
            )
        for box, score in zip(pred, scores):
            xywh = _xywh_list(box)
            dt_anns.append(
                {
                    "id": len(dt_anns) + 1,
                    "image_id": coco_image_id,
                    "category_id": 1,
                    "bbox": xywh,
                    "area": xywh[2] * xywh[3],
                    "iscrowd": 0,
                    "score": float(score),
                }
            )

    # COCO.loadRes fails on an empty result list, so both sides are built the same way.
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = {"images": images, "annotations": gt_anns, "categories": [dict(COCO_CATEGORY)]}
        coco_gt.createIndex()
        coco_dt = COCO()
        coco_dt.dataset = {"images": images, "annotations": dt_anns, "categories": [dict(COCO_CATEGORY)]}
        coco_dt.createIndex()
        evaluator = COCOeval(coco_gt, coco_dt, iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = [float(v) for v in evaluator.stats[:3]]
    # COCO reports -1 where AP is undefined.
    ap, ap50, ap75 = (v if v >= 0.0 else math.nan for v in stats)
    return {"map": ap, "map50": ap50, "map75": ap75}


# --------------------------------------------------------------------------- classification


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator) / float(denominator) if denominator > 0 else math.nan


def _binary_inputs(
    y_true: Sequence[int] | np.ndarray, y_prob: Sequence[float] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    truth = np.asarray(y_true).reshape(-1)
    prob = np.asarray(y_prob, dtype=np.float64).reshape(-1)
    if truth.shape[0] != prob.shape[0]:
        raise ValueError(f"y_true has {truth.shape[0]} labels but y_prob has {prob.shape[0]} probabilities")
    if truth.shape[0] == 0:
        raise ValueError("no samples: y_true and y_prob are empty")
    if not np.isin(truth, (0, 1)).all():
        raise ValueError(f"y_true must hold only 0 and 1, got values {sorted(set(truth.tolist()))[:5]}")
    if not np.isfinite(prob).all():
        raise ValueError("y_prob contains nan or inf")
    return truth.astype(np.int64), prob


def binary_classification_metrics(
    y_true: Sequence[int] | np.ndarray, y_prob: Sequence[float] | np.ndarray, threshold: float
) -> dict:
    """Binary metrics at `threshold` (predicted positive when y_prob >= threshold).

    Returns {'accuracy', 'precision', 'sensitivity' (recall), 'specificity', 'f1', 'roc_auc',
    'pr_auc' (sklearn average_precision_score), 'confusion_matrix'
    [[tn, fp], [fn, tp]], 'n', 'n_positive', 'threshold'}; python floats/ints, nan where undefined
    (roc_auc / pr_auc with a single class present, precision with no predicted positive, ...).
    """
    truth, prob = _binary_inputs(y_true, y_prob)
    predicted = prob >= threshold
    positive = truth == 1
    tp = int(np.sum(predicted & positive))
    fp = int(np.sum(predicted & ~positive))
    fn = int(np.sum(~predicted & positive))
    tn = int(np.sum(~predicted & ~positive))
    both_classes = 0 < tp + fn < truth.shape[0]
    return {
        "accuracy": _ratio(tp + tn, truth.shape[0]),
        "precision": _ratio(tp, tp + fp),
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "roc_auc": float(roc_auc_score(truth, prob)) if both_classes else math.nan,
        "pr_auc": float(average_precision_score(truth, prob)) if tp + fn > 0 else math.nan,
        "confusion_matrix": [[tn, fp], [fn, tp]],
        "n": int(truth.shape[0]),
        "n_positive": int(tp + fn),
        "threshold": float(threshold),
    }


def _cuts(truth: np.ndarray, prob: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(true positives, false positives, threshold) of every realisable cut y_prob >= t, highest t first.

    Calling positive everything >= a value includes all ties of that value: only the last index
    of each run of equal probabilities is a realisable cut."""
    order = np.argsort(-prob, kind="stable")
    prob_sorted = prob[order]
    tp = np.cumsum(truth[order]).astype(np.float64)
    fp = np.cumsum(1 - truth[order]).astype(np.float64)
    last_of_run = np.append(prob_sorted[1:] != prob_sorted[:-1], True)
    return tp[last_of_run], fp[last_of_run], prob_sorted[last_of_run]


def f1_optimal_threshold(y_true: Sequence[int] | np.ndarray, y_prob: Sequence[float] | np.ndarray) -> float:
    """The threshold (one of the observed probabilities) that maximises F1 under y_prob >= t.

    Choose it on the validation split, then apply it unchanged to the test split. Among
    thresholds of equal F1 the highest is returned (fewest positive calls). Needs at least one
    positive label (F1 is 0 at every threshold otherwise).
    """
    truth, prob = _binary_inputs(y_true, y_prob)
    n_positive = int(truth.sum())
    if n_positive == 0:
        raise ValueError("f1_optimal_threshold needs at least one positive label; y_true has none")
    tp, fp, cut_values = _cuts(truth, prob)
    f1 = 2 * tp / (2 * tp + fp + (n_positive - tp))
    best = int(np.flatnonzero(f1 == f1.max())[0])  # cut values descend: first = highest threshold
    return float(cut_values[best])


def youden_threshold(y_true: Sequence[int] | np.ndarray, y_prob: Sequence[float] | np.ndarray) -> float:
    """The threshold (one of the observed probabilities) that maximises Youden's J = sensitivity +
    specificity - 1 under y_prob >= t; ties to the highest threshold.

    Unlike F1, J does not depend on the prevalence: a threshold chosen on a val split with 74 %
    positives (Kermany's train/val) keeps its sensitivity and specificity on a test split with
    62.5 % (Kermany's test/), where the F1-optimal one, pulled low by the many positives, gives
    away specificity. Needs both classes.
    """
    truth, prob = _binary_inputs(y_true, y_prob)
    n_positive, n_negative = int(truth.sum()), int((1 - truth).sum())
    if n_positive == 0 or n_negative == 0:
        raise ValueError("youden_threshold needs both classes in y_true")
    tp, fp, cut_values = _cuts(truth, prob)
    j = tp / n_positive - fp / n_negative
    best = int(np.flatnonzero(j == j.max())[0])
    return float(cut_values[best])


def multiclass_metrics(y_true: Sequence[int] | np.ndarray, y_prob: np.ndarray, class_names: Sequence[str]) -> dict:
    """K-class metrics with the prediction argmax(y_prob) (first class on ties).

    y_true: int [N] in 0..K-1; y_prob: [N, K] (rows need not sum to 1); class_names: K names.
    Returns {'accuracy', 'macro_f1', 'macro_roc_auc', 'per_class': {name: {'precision',
    'sensitivity' (recall), 'f1', 'support', 'roc_auc'}}, 'confusion_matrix' K x K (rows = true class,
    columns = predicted), 'class_names', 'n'}. Per-class precision/sensitivity/f1 are nan when their
    denominator is 0; one-vs-rest ROC-AUC is nan when the class is absent or is every sample.
    macro_f1 / macro_roc_auc average the defined per-class values (nan if none is defined).
    """
    names = [str(c) for c in class_names]
    n_classes = len(names)
    prob = np.asarray(y_prob, dtype=np.float64)
    truth = np.asarray(y_true).reshape(-1)
    if prob.ndim != 2 or prob.shape[1] != n_classes:
        raise ValueError(f"y_prob must have shape [N, {n_classes}] for classes {names}, got {prob.shape}")
    if prob.shape[0] != truth.shape[0]:
        raise ValueError(f"y_true has {truth.shape[0]} labels but y_prob has {prob.shape[0]} rows")
    if truth.shape[0] == 0:
        raise ValueError("no samples: y_true and y_prob are empty")
    if not np.isfinite(prob).all():
        raise ValueError("y_prob contains nan or inf")
    if not (np.issubdtype(truth.dtype, np.integer) and truth.min() >= 0 and truth.max() < n_classes):
        raise ValueError(
            f"y_true must hold integer class indices 0..{n_classes - 1}, got {sorted(set(truth.tolist()))[:5]}"
        )
    predicted = np.argmax(prob, axis=1)
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(confusion, (truth, predicted), 1)

    per_class = {}
    for k, name in enumerate(names):
        tp = int(confusion[k, k])
        fp = int(confusion[:, k].sum()) - tp
        fn = int(confusion[k, :].sum()) - tp
        support = tp + fn
        is_k = (truth == k).astype(np.int64)
        per_class[name] = {
            "precision": _ratio(tp, tp + fp),
            "sensitivity": _ratio(tp, support),
            "f1": _ratio(2 * tp, 2 * tp + fp + fn),
            "support": support,
            "roc_auc": float(roc_auc_score(is_k, prob[:, k])) if 0 < support < truth.shape[0] else math.nan,
        }

    def defined_mean(key: str) -> float:
        values = [v[key] for v in per_class.values() if not math.isnan(v[key])]
        return float(np.mean(values)) if values else math.nan

    return {
        "accuracy": _ratio(int(np.trace(confusion)), truth.shape[0]),
        "macro_f1": defined_mean("f1"),
        "macro_roc_auc": defined_mean("roc_auc"),
        "per_class": per_class,
        "confusion_matrix": confusion.tolist(),
        "class_names": names,
        "n": int(truth.shape[0]),
    }
