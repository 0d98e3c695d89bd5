"""`detect eval --predictions CSV --labels CSV`: score a Kaggle submission against
stage_2_train_labels.csv.

Only the patients of the predictions file are scored (a submission for a subset is normal: the
held-out patients). Detection: `rsna_score` and COCO mAP on the submitted boxes as they are.
Image level: the image score is the highest box confidence (0 without boxes); an image is
called pneumonia when it has at least one box of positive confidence; ROC-AUC / PR-AUC rank
the image scores. Writes the same report as a checkpoint evaluation (detect.evaluation.report).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from data_prep.atomic import check_writable
from data_prep.errors import LabelFileError
from data_prep.rsna import read_label_boxes
from data_prep.safe_paths import UnsafeNameError, child_path
from detect.evaluation.evaluate import EvalOutcome
from detect.evaluation.examples import example_panel, pick_examples
from detect.evaluation.metrics import binary_classification_metrics, coco_map, rsna_score
from detect.evaluation.report import write_eval_report
from detect.outputs.submission import read_submission

# An image is called pneumonia when its highest box confidence is above 0.
ANY_BOX_THRESHOLD = float(np.nextafter(0.0, 1.0))


def evaluate_predictions(
    predictions_csv: str | Path,
    labels_csv: str | Path,
    out_dir: str | Path,
    *,
    images_dir: str | Path | None = None,
) -> EvalOutcome:
    """Score a Kaggle submission against stage_2_train_labels.csv (see the module docstring).

    `images_dir`: where <patientId>.dcm live, for the examples grid; default: the
    stage_2_train_images/ folder next to the labels file, when it exists.
    """
    check_writable(out_dir, expect="folder", what="--out")
    predictions = read_submission(predictions_csv)
    labels = read_label_boxes(labels_csv)
    if not predictions:
        raise LabelFileError(predictions_csv, "no prediction rows after the header")
    unknown = [pid for pid in predictions if pid not in labels]
    if unknown:
        raise LabelFileError(
            predictions_csv,
            f"{len(unknown)} patientId(s) have no row in {labels_csv}, e.g. '{unknown[0]}' (predictions and labels must name the same patients)",
        )
    ground_truth = {pid: labels[pid] for pid in predictions}
    preds = {pid: (row.boxes_xyxy, row.scores) for pid, row in predictions.items()}
    notes = [f"scored the {len(ground_truth)} patients of {predictions_csv} ({len(labels)} patients in {labels_csv})"]

    detection = {
        "rsna_score": rsna_score(preds, ground_truth),
        **coco_map(preds, ground_truth),
        "n_images": len(ground_truth),
        "n_images_with_boxes": sum(int(len(b) > 0) for b in ground_truth.values()),
        "n_true_boxes": int(sum(len(b) for b in ground_truth.values())),
        "n_predicted_boxes": int(sum(len(b) for b, _ in preds.values())),
        "map_boxes": "the submitted boxes",
        "rsna_score_boxes": "the submitted boxes",
    }
    ids = list(ground_truth)
    y_true = np.array([int(len(ground_truth[i]) > 0) for i in ids], dtype=np.int64)
    y_score = np.array([float(preds[i][1].max()) if len(preds[i][1]) else 0.0 for i in ids], dtype=np.float64)
    pneumonia = binary_classification_metrics(y_true, y_score, ANY_BOX_THRESHOLD)
    pneumonia["threshold_source"] = (
        "image called pneumonia when it has a box of positive confidence; scores = max box confidence"
    )
    metrics: dict[str, Any] = {
        "detection": detection,
        "classification": {"pneumonia": pneumonia},
        "counts": {"patients_in_predictions": len(predictions), "patients_in_labels": len(labels)},
        "sources": {"predictions": str(predictions_csv), "labels": str(labels_csv)},
        "notes": notes,
    }
    folder = Path(images_dir) if images_dir is not None else Path(labels_csv).parent / "stage_2_train_images"
    panels = []
    if folder.is_dir():
        for pid in pick_examples(ids, ground_truth, preds):
            try:  # a patientId from the CSV names a file only when it stays in the folder
                source = child_path(folder, f"{pid}.dcm")
            except UnsafeNameError:
                continue
            if source.is_file():
                panel = example_panel(source, pid[:13], ground_truth[pid], *preds[pid])
                if panel is not None:
                    panels.append(panel)
    curves = {"pneumonia (max box confidence)": (y_true, y_score)}
    paths = write_eval_report(
        out_dir, metrics, curves=curves, image_panels=panels, title="detect eval: submission vs labels"
    )
    return EvalOutcome(metrics=metrics, paths=paths, notes=notes)
