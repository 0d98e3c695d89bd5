"""The examples grid of the eval report: a deterministic pick of held-out images with their
true boxes (green) and predicted boxes (red), each downscaled to EXAMPLE_MAX_SIDE_PX."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from data_prep.errors import DetectError
from detect.data.files import load_image

N_EXAMPLES = 8
EXAMPLE_MAX_SIDE_PX = 512


def example_panel(
    source: Path, title: str, true_boxes: np.ndarray, pred_boxes: np.ndarray, pred_scores: np.ndarray
) -> dict[str, Any] | None:
    """One image of the examples grid, downscaled to EXAMPLE_MAX_SIDE_PX with its boxes."""
    try:
        pixels = load_image(source).pixels
    except DetectError:
        return None
    height, width = pixels.shape
    factor = min(1.0, EXAMPLE_MAX_SIDE_PX / max(height, width))
    if factor < 1.0:
        pixels = cv2.resize(
            pixels, (max(1, round(width * factor)), max(1, round(height * factor))), interpolation=cv2.INTER_AREA
        )
    return {
        "image": pixels,
        "true_boxes_xyxy": np.asarray(true_boxes, dtype=np.float64).reshape(-1, 4) * factor,
        "pred_boxes_xyxy": np.asarray(pred_boxes, dtype=np.float64).reshape(-1, 4) * factor,
        "pred_scores": np.asarray(pred_scores, dtype=np.float64).reshape(-1),
        "title": title,
    }


def pick_examples(
    ids: Sequence[str],
    truth: dict[str, np.ndarray],
    predicted: dict[str, tuple[np.ndarray, np.ndarray]],
    n: int = N_EXAMPLES,
) -> list[str]:
    """Deterministic mix for the grid: images with true boxes first (half), then images with
    predicted but no true boxes (false alarms, a quarter), then the rest, each in id order."""
    ordered = sorted(ids)
    with_truth = [i for i in ordered if len(truth.get(i, ())) > 0]
    false_alarms = [i for i in ordered if len(truth.get(i, ())) == 0 and len(predicted.get(i, ((),))[0]) > 0]
    rest = [i for i in ordered if i not in set(with_truth) | set(false_alarms)]
    chosen = with_truth[: max(1, n // 2)] + false_alarms[: max(1, n // 4)]
    for i in with_truth + false_alarms + rest:
        if len(chosen) >= n:
            break
        if i not in chosen:
            chosen.append(i)
    return chosen[:n]
