"""What TensorBoard shows of each validation besides the scalars: the pneumonia PR and ROC
curves of the val images, and a grid of val images with their boxes.

    log_validation_visuals(writer, result, dataset, epoch)   # writer: a SummaryWriter

    val/pr_pneumonia    add_pr_curve of the image-level pneumonia probability (every dataset's val images)
    val/roc_pneumonia   the ROC curve as a figure (TensorBoard has no ROC panel), AUC in its title
    val/predictions     up to N_GRID val images (those with true boxes first, as the eval report
                        picks them): true boxes green, predicted boxes (score >= GRID_SCORE_THRESH) red
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from data_prep.errors import DetectError
from detect.data.files import load_image
from detect.evaluation.examples import pick_examples
from detect.evaluation.scoring import targets_and_probabilities
from detect.training.engine import RecordDataset, ValidationResult

N_GRID = 8
GRID_SIDE_PX = 256
GRID_SCORE_THRESH = 0.3


def _roc_figure(y_true: np.ndarray, y_prob: np.ndarray, epoch: int) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fpr, tpr, _ = roc_curve(y_true, y_prob)
    figure, axes = plt.subplots(figsize=(4, 4))
    axes.plot(fpr, tpr, color="tab:red")
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":")
    axes.set(
        xlabel="1 - specificity",
        ylabel="sensitivity",
        xlim=(0, 1),
        ylim=(0, 1),
        title=f"val pneumonia ROC, epoch {epoch}: AUC {roc_auc_score(y_true, y_prob):.3f}",
    )
    figure.tight_layout()
    return figure


def _tile(pixels: np.ndarray, true_boxes: np.ndarray, pred_boxes: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """uint8 [3, S, S]: the image letterboxed into S = GRID_SIDE_PX with its boxes drawn."""
    height, width = pixels.shape
    factor = GRID_SIDE_PX / max(height, width)
    small = cv2.resize(
        pixels, (max(1, round(width * factor)), max(1, round(height * factor))), interpolation=cv2.INTER_AREA
    )
    canvas = np.zeros((GRID_SIDE_PX, GRID_SIDE_PX, 3), dtype=np.uint8)
    canvas[: small.shape[0], : small.shape[1]] = small[..., None]
    for boxes, colour in ((true_boxes, (0, 200, 0)), (pred_boxes[scores >= GRID_SCORE_THRESH], (230, 30, 30))):
        for x1, y1, x2, y2 in np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * factor:
            cv2.rectangle(canvas, (round(x1), round(y1)), (round(x2), round(y2)), colour, 2)
    return canvas.transpose(2, 0, 1)


def log_validation_visuals(writer: Any, result: ValidationResult, dataset: RecordDataset, epoch: int) -> None:
    """The curves and the image grid of one validation at `epoch` (see the module docstring)."""
    if not result.records:
        return
    y_true, y_prob = targets_and_probabilities(result.records, result.predictions)
    if 0 < y_true.sum() < y_true.size and all(math.isfinite(p) for p in y_prob):
        writer.add_pr_curve("val/pr_pneumonia", y_true, y_prob, global_step=epoch)
        writer.add_figure("val/roc_pneumonia", _roc_figure(y_true, y_prob, epoch), global_step=epoch)
    ids = [r.image_id for r in result.records]
    truth = {r.image_id: r.boxes_xyxy for r in result.records}
    predicted = {r.image_id: (p.boxes_xyxy, p.scores) for r, p in zip(result.records, result.predictions)}
    index_of = {id(r): i for i, r in enumerate(dataset.records)}
    by_id = {r.image_id: (r, p) for r, p in zip(result.records, result.predictions)}
    tiles = []
    for image_id in pick_examples(ids, truth, predicted, n=N_GRID):
        record, prediction = by_id[image_id]
        index = index_of.get(id(record))
        if index is None or not hasattr(dataset, "image_path"):
            continue
        try:
            pixels = load_image(dataset.image_path(index)).pixels
        except DetectError:
            continue
        tiles.append(_tile(pixels, record.boxes_xyxy, prediction.boxes_xyxy, prediction.scores))
    if tiles:
        writer.add_images("val/predictions", np.stack(tiles), global_step=epoch, dataformats="NCHW")
    writer.flush()
