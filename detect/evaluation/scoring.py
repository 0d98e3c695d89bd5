"""Metric blocks over one split's predictions, shared by validation during training and `detect eval`.

    points = choose_operating_points(records, raws, where="val at epoch 5")   {dataset: OperatingPoint}
    final = postprocessed_boxes(records, raws, points, settings)             what `detect infer` writes
    detection_metrics(final, raw_boxes, ground_truth, score_thresh)          RSNA score + COCO mAP
    validation_metrics(records, raws, points, settings)                      the val_* numbers
    classification_metrics(records, raws, points, task)                     a classifier's val_* numbers

The pneumonia decision threshold of a dataset is chosen on that dataset's own val split
(F1-optimal): RSNA adults and Kermany children differ in prevalence and in how the model's
probability is calibrated on them, so one pooled threshold would fit neither. The threshold
chosen during training is stored in the checkpoint; `detect eval` reports it and `detect infer`
applies it (detect.predictions.OperatingPoint).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from data_prep.records import ImageRecord
from data_prep.tasks import TASK_CLASSES, num_outputs, record_label
from detect.evaluation.metrics import (
    binary_classification_metrics,
    coco_map,
    f1_optimal_threshold,
    multiclass_metrics,
    rsna_score,
    youden_threshold,
)
from detect.inference.postprocess import postprocess_prediction
from detect.predictions import DEFAULT_PNEUMONIA_THRESHOLD, OperatingPoint, PostprocessSettings, RawPrediction

BoxesById = dict[str, tuple[np.ndarray, np.ndarray]]


def choose_operating_point(
    dataset: str, y_true: np.ndarray, y_prob: np.ndarray, where: str, rule: str = "f1"
) -> OperatingPoint:
    """The threshold of these labels by `rule` (train.threshold_rule: 'f1', the F1-optimal one;
    'youden', the one of highest sensitivity + specificity), described as chosen on `dataset`
    `where` (e.g. "val at epoch 5"); the default when they hold no positive (F1 is 0 at every
    threshold), and F1's when Youden's J lacks a negative."""
    if y_true.size and y_true.sum() > 0:
        if rule == "youden" and (y_true == 0).any():
            threshold = youden_threshold(y_true, y_prob)
            return OperatingPoint(dataset, threshold, f"Youden-optimal on {dataset} {where} ({y_true.size} images)")
        threshold = f1_optimal_threshold(y_true, y_prob)
        return OperatingPoint(dataset, threshold, f"F1-optimal on {dataset} {where} ({y_true.size} images)")
    return OperatingPoint(
        dataset,
        DEFAULT_PNEUMONIA_THRESHOLD,
        f"default {DEFAULT_PNEUMONIA_THRESHOLD} (no positive image in {dataset} {where})",
    )


def targets_and_probabilities(
    records: Sequence[ImageRecord], raws: Sequence[RawPrediction]
) -> tuple[np.ndarray, np.ndarray]:
    """(pneumonia labels int64 [N], pneumonia probabilities float64 [N]) of aligned records / predictions."""
    y_true = np.array([int(r.target) for r in records], dtype=np.int64)
    y_prob = np.array([raw.pneumonia_probability for raw in raws], dtype=np.float64)
    return y_true, y_prob


def choose_operating_points(
    records: Sequence[ImageRecord], raws: Sequence[RawPrediction], where: str, rule: str = "f1"
) -> dict[str, OperatingPoint]:
    """One operating point per dataset present in `records`, each chosen on that dataset's images only, by `rule`."""
    points = {}
    for dataset in sorted({r.dataset for r in records}):
        index = [i for i, r in enumerate(records) if r.dataset == dataset]
        y_true, y_prob = targets_and_probabilities([records[i] for i in index], [raws[i] for i in index])
        points[dataset] = choose_operating_point(dataset, y_true, y_prob, where, rule)
    return points


def threshold_of(record: ImageRecord, points: dict[str, OperatingPoint]) -> float:
    """The decision threshold that applies to `record`: its dataset's, else the default."""
    point = points.get(record.dataset) or points.get("any")
    return point.threshold if point is not None else DEFAULT_PNEUMONIA_THRESHOLD


def postprocessed_boxes(
    records: Sequence[ImageRecord],
    raws: Sequence[RawPrediction],
    points: dict[str, OperatingPoint],
    settings: PostprocessSettings,
) -> BoxesById:
    """{image_id: (boxes_xyxy, scores)} after gating / score threshold / shrinking, as `detect infer`."""
    return {
        record.image_id: postprocess_prediction(raw, threshold_of(record, points), settings)
        for record, raw in zip(records, raws)
    }


def detection_metrics(
    final: BoxesById, raw: BoxesById, ground_truth: dict[str, np.ndarray], score_thresh: float
) -> dict[str, float | int]:
    """RSNA score on `final` boxes, COCO mAP on `raw` boxes (mAP ranks every box: no threshold),
    the RSNA score of the raw boxes at `score_thresh` alone (what post-processing buys), counts."""
    thresholded = {}
    for image_id, (boxes, scores) in raw.items():
        keep = scores >= score_thresh
        thresholded[image_id] = (boxes[keep], scores[keep])
    return {
        "rsna_score": rsna_score(final, ground_truth),
        **coco_map(raw, ground_truth),
        "rsna_score_no_postprocess": rsna_score(thresholded, ground_truth),
        "n_images": len(ground_truth),
        "n_images_with_boxes": sum(int(len(b) > 0) for b in ground_truth.values()),
        "n_true_boxes": int(sum(len(b) for b in ground_truth.values())),
        "n_predicted_boxes": int(sum(len(b) for b, _ in final.values())),
    }


def pneumonia_decision_metrics(
    records: Sequence[ImageRecord], raws: Sequence[RawPrediction], points: dict[str, OperatingPoint]
) -> dict[str, float]:
    """f1, accuracy, sensitivity, specificity of the pneumonia decision (each image at its own
    dataset's threshold), roc_auc of the probabilities, threshold_<dataset>, n_images."""
    metrics: dict[str, float] = {"n_images": float(len(records))}
    if records:
        y_true, y_prob = targets_and_probabilities(records, raws)
        decided = np.array([int(p >= threshold_of(r, points)) for r, p in zip(records, y_prob)], dtype=np.float64)
        # Each image against its own threshold: score the 0/1 decisions at 0.5, the ranking on the probabilities.
        binary = binary_classification_metrics(y_true, decided, 0.5)
        for key in ("f1", "accuracy", "sensitivity", "specificity"):
            metrics[key] = binary[key]
        metrics["roc_auc"] = binary_classification_metrics(y_true, y_prob, 0.5)["roc_auc"]
    for dataset, point in points.items():
        metrics[f"threshold_{dataset}"] = float(point.threshold)
    return metrics


def task_probabilities(raws: Sequence[RawPrediction], task: str) -> np.ndarray:
    """[N, K] class probabilities of a three-class task, in TASK_CLASSES order."""
    if task == "kermany3":
        return np.stack([np.asarray(raw.subtype_probabilities, dtype=np.float64) for raw in raws])
    return np.stack([np.asarray(raw.class_probabilities, dtype=np.float64) for raw in raws])


def classification_metrics(
    records: Sequence[ImageRecord], raws: Sequence[RawPrediction], points: dict[str, OperatingPoint], task: str
) -> dict[str, float]:
    """A classifier's validation numbers (metrics.csv prefixes them val_): the pneumonia
    decision's f1 / sensitivity / specificity at the F1-optimal threshold chosen on these images
    (`points`), roc_auc; accuracy of that decision for binary tasks; for the three-class tasks
    `accuracy` and `macro_f1` of the argmax over the task's classes. No box metrics: a
    classifier draws no boxes, so map / rsna_score are absent, not 0."""
    metrics = pneumonia_decision_metrics(records, raws, points)
    if records and num_outputs(task) > 1:
        labels = np.array([record_label(r, task) for r in records], dtype=np.int64)
        three_class = multiclass_metrics(labels, task_probabilities(raws, task), TASK_CLASSES[task])
        metrics["accuracy"] = float(three_class["accuracy"])
        metrics["macro_f1"] = float(three_class["macro_f1"])
    return metrics


def validation_metrics(
    records: Sequence[ImageRecord],
    raws: Sequence[RawPrediction],
    points: dict[str, OperatingPoint],
    settings: PostprocessSettings,
) -> dict[str, float]:
    """The numbers training validates on (metrics.csv prefixes them val_):

    - `f1`, `accuracy`, `sensitivity`, `specificity` of the pneumonia decision over every image,
      each decided at its own dataset's threshold; `roc_auc` of the probabilities (no threshold);
    - `threshold_<dataset>` for each dataset present;
    - over the images with box labels (RSNA): `map50`, `map`, `map75` of the raw boxes and
      `rsna_score` of the post-processed ones (nan without box labels).
    A metric that is undefined on the split (one class only) is nan.
    """
    metrics = pneumonia_decision_metrics(records, raws, points)
    boxed = [(r, raw) for r, raw in zip(records, raws) if r.has_box_labels]
    if boxed:
        ground_truth = {r.image_id: r.boxes_xyxy for r, _ in boxed}
        raw_boxes = {r.image_id: (raw.boxes_xyxy, raw.scores) for r, raw in boxed}
        final = postprocessed_boxes([r for r, _ in boxed], [raw for _, raw in boxed], points, settings)
        metrics.update(coco_map(raw_boxes, ground_truth))
        metrics["rsna_score"] = rsna_score(final, ground_truth)
    else:
        metrics.update({"map": math.nan, "map50": math.nan, "map75": math.nan, "rsna_score": math.nan})
    return metrics
