"""Letterbox resizing and the box mapping that goes with it.

Training, the cache and inference all see images letterboxed to a square of `size_px`:
the image is scaled by `scale = size_px / max(height, width)` (aspect ratio kept, so
non-square images stay undistorted), placed at the top-left corner, and padded with 0
(black) on the right and bottom. A box maps by multiplication alone:

    boxes_resized_xyxy = boxes_original_xyxy * scale
    boxes_original_xyxy = boxes_resized_xyxy / scale

which keeps the round trip exact and lets predictions return to ORIGINAL pixel coordinates.
"""

from __future__ import annotations

import cv2
import numpy as np


def letterbox_scale(height: int, width: int, size_px: int) -> float:
    """The factor that fits an image of (height, width) into a size_px square."""
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    return size_px / float(max(height, width))


def letterbox_content_shape(height: int, width: int, size_px: int) -> tuple[int, int]:
    """(rows, columns) of the image inside its size_px letterbox: the part that is not padding."""
    scale = letterbox_scale(height, width, size_px)
    return min(size_px, max(1, round(height * scale))), min(size_px, max(1, round(width * scale)))


def letterbox_resize(
    pixels: np.ndarray, size_px: int, original_hw: tuple[int, int] | None = None
) -> tuple[np.ndarray, float]:
    """Resize a 2-D uint8 image to [size_px, size_px] by letterboxing; return (image, scale).

    INTER_AREA when shrinking (no aliasing of rib edges and noise), INTER_LINEAR when enlarging.
    `original_hw`: the size of the image `pixels` was decoded from, when it was decoded smaller
    (a DCT-reduced JPEG, data_prep.codestreams): the letterbox and the scale are those of the
    original, so boxes map by `scale` from ORIGINAL pixels whatever size was decoded.
    """
    if pixels.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale image, got shape {pixels.shape}")
    height, width = original_hw if original_hw is not None else pixels.shape
    scale = letterbox_scale(height, width, size_px)
    new_h, new_w = letterbox_content_shape(height, width, size_px)
    out = np.zeros((size_px, size_px), dtype=pixels.dtype)
    if pixels.shape == (new_h, new_w):
        out[:new_h, :new_w] = pixels
        return out, scale
    shrinking = new_h <= pixels.shape[0] and new_w <= pixels.shape[1]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    resized = cv2.resize(pixels, (new_w, new_h), interpolation=interpolation)
    out[:new_h, :new_w] = resized
    return out, scale


def scale_boxes(boxes_xyxy: np.ndarray, scale: float) -> np.ndarray:
    """Multiply xyxy boxes by `scale` (use 1/scale to map back). Returns float32 [N, 4]."""
    return (np.asarray(boxes_xyxy, dtype=np.float32).reshape(-1, 4) * np.float32(scale)).astype(np.float32)


def xywh_to_xyxy(boxes_xywh: np.ndarray) -> np.ndarray:
    """(x, y, width, height) with (x, y) the top-left corner -> (x1, y1, x2, y2). float32 [N, 4]."""
    b = np.asarray(boxes_xywh, dtype=np.float32).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1).astype(np.float32)


def xyxy_to_xywh(boxes_xyxy: np.ndarray) -> np.ndarray:
    """(x1, y1, x2, y2) -> (x, y, width, height) with (x, y) the top-left corner. float32 [N, 4]."""
    b = np.asarray(boxes_xyxy, dtype=np.float32).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1).astype(np.float32)
