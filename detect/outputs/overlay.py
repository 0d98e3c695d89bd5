"""Overlay PNGs: the radiograph with its predicted boxes, scores, decision and probabilities.

canvas = draw_overlay(pixels, prediction)     BGR uint8: the image (longest side in [512, 1024] px)
                                              above a legend strip of the same width
write_overlay(folder / unique_png_name(stem, used), canvas)
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from data_prep.atomic import write_bytes_atomic
from data_prep.errors import OutputWriteError
from detect.predictions import ImagePrediction

OVERLAY_MAX_SIDE_PX = 1024
OVERLAY_MIN_SIDE_PX = 512


def display_factor(
    height_px: int, width_px: int, *, max_side_px: int = OVERLAY_MAX_SIDE_PX, min_side_px: int = OVERLAY_MIN_SIDE_PX
) -> float:
    """The scale that brings the longest side into [min_side_px, max_side_px] (text stays legible)."""
    longest = float(max(height_px, width_px))
    return min(1.0, max_side_px / longest) if longest >= min_side_px else min_side_px / longest


def display_size(
    height_px: int, width_px: int, *, max_side_px: int = OVERLAY_MAX_SIDE_PX, min_side_px: int = OVERLAY_MIN_SIDE_PX
) -> tuple[int, int]:
    """(width, height) of an overlay of an image this size (cv2's order), by `display_factor`."""
    factor = display_factor(height_px, width_px, max_side_px=max_side_px, min_side_px=min_side_px)
    return max(1, round(width_px * factor)), max(1, round(height_px * factor))


def draw_overlay(
    pixels: np.ndarray,
    prediction: ImagePrediction,
    *,
    max_side_px: int = OVERLAY_MAX_SIDE_PX,
    min_side_px: int = OVERLAY_MIN_SIDE_PX,
) -> np.ndarray:
    """BGR uint8 image: the radiograph with the boxes (red, score above each), and below it a
    black strip with the decision and the class probabilities, so that no text covers the lungs
    (an apical finding sits where a corner legend would). The image's longest side is brought into
    [min_side_px, max_side_px] (aspect kept) so that the text stays legible on small images."""
    # The prediction's size is the ORIGINAL one its boxes are in; `pixels` may have been decoded
    # smaller for the model (detect.data.files.load_image's target_size_px).
    height, width = (
        (prediction.height_px, prediction.width_px)
        if prediction.height_px and prediction.width_px
        else pixels.shape[:2]
    )
    factor = display_factor(height, width, max_side_px=max_side_px, min_side_px=min_side_px)
    size = display_size(height, width, max_side_px=max_side_px, min_side_px=min_side_px)
    shrinking = size[0] < pixels.shape[1] or size[1] < pixels.shape[0]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    gray = pixels if (size[1], size[0]) == pixels.shape[:2] else cv2.resize(pixels, size, interpolation=interpolation)
    canvas = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    side = max(canvas.shape[:2])
    font_scale = max(0.35, side / 1600.0)
    thickness = max(1, round(side / 400))
    red = (0, 0, 255)

    def label(text: str, x: int, y: int, colour: tuple[int, int, int]) -> None:
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
        x = int(min(max(x, 0), max(canvas.shape[1] - tw - 2, 0)))
        y = int(min(max(y, th + 2), canvas.shape[0] - base))
        cv2.rectangle(canvas, (x, y - th - 2), (x + tw + 2, y + base), (0, 0, 0), -1)
        cv2.putText(canvas, text, (x + 1, y), cv2.FONT_HERSHEY_SIMPLEX, font_scale, colour, 1, cv2.LINE_AA)

    for box, score in zip(prediction.boxes_xyxy * factor, prediction.scores):
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), red, thickness)
        label(f"{float(score):.2f}", x1, y1 - 3, red)

    decision = "PNEUMONIA" if prediction.pneumonia else "no pneumonia"
    point = prediction.operating_point
    thr = f" (threshold {point.threshold:.2f}, {point.dataset})" if point is not None else ""
    lines = [f"{decision}: p={prediction.pneumonia_probability or 0.0:.3f}{thr}"]
    lines += [f"{name}: {p:.3f}" for name, p in (prediction.class_probabilities or {}).items()]
    return np.vstack([canvas, legend_strip(lines, canvas.shape[1], font_scale)])


def legend_strip(lines: list[str], width_px: int, font_scale: float) -> np.ndarray:
    """BGR uint8 [h, width_px, 3]: `lines` on black, the first in yellow, the font shrunk to fit the width."""
    widest = max(cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)[0][0] for text in lines)
    scale = font_scale * min(1.0, (width_px - 6) / max(widest, 1))
    line_height = int(cv2.getTextSize("Ag", cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][1] * 1.8) + 2
    strip = np.zeros((line_height * len(lines) + line_height // 2, width_px, 3), dtype=np.uint8)
    for k, text in enumerate(lines):
        colour = (0, 255, 255) if k == 0 else (255, 255, 255)
        cv2.putText(strip, text, (3, (k + 1) * line_height), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)
    return strip


def unique_png_name(stem: str, used: set[str]) -> str:
    name, n = f"{stem}.png", 1
    while name in used:
        n += 1
        name = f"{stem}_{n}.png"
    used.add(name)
    return name


def write_overlay(path: Path, canvas_bgr: np.ndarray) -> Path:
    """Encode `canvas_bgr` as PNG and write it atomically (data_prep.atomic). Returns the path."""
    ok, encoded = cv2.imencode(".png", canvas_bgr)
    if not ok:
        raise OutputWriteError(path, "cannot encode the overlay as PNG")
    return write_bytes_atomic(path, encoded.tobytes())
