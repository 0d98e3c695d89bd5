"""The report's plots, drawn on matplotlib's Agg canvas through `matplotlib.figure.Figure`
(no pyplot global state, no display needed).

    plot_pr_curves(curves, path) / plot_roc_curves(curves, path)   curves = {name: (y_true 0/1 [N], y_prob [N])}
    plot_confusion_matrices([(title, matrix K x K, class names)], path)
    plot_examples(panels, path)    panels = [{'image', 'true_boxes_xyxy', 'pred_boxes_xyxy', 'pred_scores', 'title'}]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

from detect.outputs.figures import save_figure


def _new_figure(width_in: float, height_in: float) -> Figure:
    return Figure(figsize=(width_in, height_in), dpi=110, layout="constrained")


def curve_inputs(curves: Mapping[str, tuple[Any, Any]]) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], list[str]]:
    """Entries usable for PR/ROC (both classes present) and the names skipped."""
    usable, skipped = {}, []
    for name, (y_true, y_prob) in curves.items():
        truth = np.asarray(y_true).reshape(-1).astype(np.int64)
        prob = np.asarray(y_prob, dtype=np.float64).reshape(-1)
        if truth.shape != prob.shape:
            raise ValueError(f"curves[{name!r}]: {truth.shape[0]} labels but {prob.shape[0]} probabilities")
        if 0 < truth.sum() < truth.shape[0]:
            usable[name] = (truth, prob)
        else:
            skipped.append(name)
    return usable, skipped


def _n_text(truth: np.ndarray) -> str:
    """What a curve's legend says of its data: 'n = 72, 36 positive'."""
    return f"n = {len(truth)}, {int(np.sum(truth))} positive"


def plot_pr_curves(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], path: Path) -> None:
    fig = _new_figure(5.5, 4.5)
    ax = fig.add_subplot()
    for name, (truth, prob) in curves.items():
        precision, recall, _ = precision_recall_curve(truth, prob)
        ax.step(
            recall,
            precision,
            where="post",
            label=f"{name} (AP {average_precision_score(truth, prob):.3f}; {_n_text(truth)})",
        )
        ax.axhline(truth.mean(), linestyle=":", linewidth=0.8, color=ax.lines[-1].get_color())
    ax.set(
        xlabel="recall (sensitivity)",
        ylabel="precision",
        xlim=(0, 1),
        ylim=(0, 1.02),
        title="Precision-recall (dotted: prevalence)",
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    save_figure(fig, path)


def plot_roc_curves(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], path: Path) -> None:
    fig = _new_figure(5.5, 4.5)
    ax = fig.add_subplot()
    for name, (truth, prob) in curves.items():
        fpr, tpr, _ = roc_curve(truth, prob)
        ax.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(truth, prob):.3f}; {_n_text(truth)})")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8)
    ax.set(
        xlabel="1 - specificity (false positive rate)",
        ylabel="sensitivity (true positive rate)",
        xlim=(0, 1),
        ylim=(0, 1.02),
        title="ROC",
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    save_figure(fig, path)


def plot_confusion_matrices(matrices: Sequence[tuple[str, np.ndarray, list[str]]], path: Path) -> None:
    """One panel per matrix: counts with the row (true class) percentage, colour = row fraction."""
    fig = _new_figure(4.2 * len(matrices), 4.0)
    for i, (title, cm, names) in enumerate(matrices, start=1):
        ax = fig.add_subplot(1, len(matrices), i)
        row_totals = cm.sum(axis=1, keepdims=True)
        fraction = np.divide(cm, row_totals, out=np.zeros(cm.shape, dtype=np.float64), where=row_totals > 0)
        ax.imshow(fraction, cmap="Blues", vmin=0.0, vmax=1.0)
        for r in range(cm.shape[0]):
            for c in range(cm.shape[1]):
                ax.text(
                    c,
                    r,
                    f"{int(cm[r, c])}\n{100 * fraction[r, c]:.1f}%",
                    ha="center",
                    va="center",
                    fontsize=9,
                    color="white" if fraction[r, c] > 0.6 else "black",
                )
        short = [n if len(n) <= 14 else n[:12] + "..." for n in names]
        ax.set_xticks(range(len(names)), short, rotation=30, ha="right", fontsize=8)
        ax.set_yticks(range(len(names)), short, fontsize=8)
        ax.set(xlabel="predicted", ylabel="true", title=f"{title} (n = {int(cm.sum())})")
    save_figure(fig, path)


def plot_examples(image_panels: Sequence[Mapping[str, Any]], path: Path, columns: int = 4) -> None:
    """A grid of images: true boxes green, predicted boxes red with their score."""
    n = len(image_panels)
    n_cols = min(columns, n)
    n_rows = math.ceil(n / n_cols)
    fig = _new_figure(3.2 * n_cols, 3.4 * n_rows + 0.3)
    fig.suptitle("green = true box, red = predicted box (score)", fontsize=10)
    for i, panel in enumerate(image_panels):
        image = np.asarray(panel["image"])
        if image.ndim not in (2, 3):
            raise ValueError(f"image_panels[{i}]: image must be [H, W] or [H, W, 3], got shape {image.shape}")
        ax = fig.add_subplot(n_rows, n_cols, i + 1)
        ax.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        line_w = 1.5
        for box in np.asarray(panel.get("true_boxes_xyxy", np.zeros((0, 4))), dtype=np.float64).reshape(-1, 4):
            ax.add_patch(
                Rectangle(
                    (box[0], box[1]), box[2] - box[0], box[3] - box[1], fill=False, edgecolor="lime", linewidth=line_w
                )
            )
        pred = np.asarray(panel.get("pred_boxes_xyxy", np.zeros((0, 4))), dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(panel.get("pred_scores", np.full(pred.shape[0], np.nan)), dtype=np.float64).reshape(-1)
        if scores.shape[0] != pred.shape[0]:
            raise ValueError(f"image_panels[{i}]: {pred.shape[0]} predicted boxes but {scores.shape[0]} scores")
        for box, score in zip(pred, scores):
            ax.add_patch(
                Rectangle(
                    (box[0], box[1]),
                    box[2] - box[0],
                    box[3] - box[1],
                    fill=False,
                    edgecolor="red",
                    linewidth=line_w,
                    linestyle="--",
                )
            )
            if math.isfinite(score):
                ax.text(
                    box[0],
                    box[1],
                    f"{score:.2f}",
                    color="white",
                    fontsize=7,
                    va="bottom",
                    bbox={"facecolor": "red", "edgecolor": "none", "pad": 1.0, "alpha": 0.8},
                )
        ax.set_title(str(panel.get("title", "")), fontsize=8)
        ax.set_axis_off()
    save_figure(fig, path)
