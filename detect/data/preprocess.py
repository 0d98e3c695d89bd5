"""One image's way into the model, shared by training, validation and inference.

    prepare_image(pixels, size_px, clahe)   uint8 [H, W] original -> (float32 [3, S, S], scale)

= letterbox (data_prep.geometry.letterbox_resize: aspect kept, placed top-left, black padding
right and bottom), CLAHE when the model was trained with it, grey repeated to three channels.
A dataset sample without augmentation is made by the same steps (detect.data.dataset), and the
preprocessing cache stores the letterboxed uint8 image itself (data_prep.cache), so the model
sees the same pixels whichever way an image reaches it.

CLAHE is a preprocessing step, not an augmentation: it runs on the uint8 grey image, before
tensors exist, identically in training, evaluation and inference (data.augment.clahe).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import Tensor

from data_prep.geometry import letterbox_resize, letterbox_scale
from detect.config import AugmentConfig


def content_size(height: int, width: int, size_px: int) -> tuple[int, int]:
    """(height, width) of the image part of a letterboxed square: as letterbox_resize places it."""
    scale = letterbox_scale(height, width, size_px)
    return min(size_px, max(1, round(height * scale))), min(size_px, max(1, round(width * scale)))


def pixels_to_tensor(pixels: np.ndarray | Tensor) -> Tensor:
    """uint8 grey [S, S] (numpy) or [1, S, S] / [3, S, S] (tensor) -> float32 [3, S, S] in [0, 1]."""
    tensor = torch.from_numpy(np.ascontiguousarray(pixels)) if isinstance(pixels, np.ndarray) else pixels
    tensor = tensor.as_subclass(Tensor)
    if tensor.ndim == 2:
        tensor = tensor.unsqueeze(0)
    tensor = tensor.to(torch.float32).div_(255.0) if tensor.dtype == torch.uint8 else tensor.to(torch.float32)
    if tensor.shape[0] == 1:
        tensor = tensor.expand(3, -1, -1)
    return tensor.contiguous()


class Clahe:
    """Contrast-limited adaptive histogram equalisation (OpenCV) of a uint8 grey image.

    `clip_limit` as in cv2.createCLAHE (2.0 is OpenCV's usual choice for radiographs),
    `tile_grid_size` the (columns, rows) of tiles. Called on a letterboxed image, pass
    `content_hw` = (height, width) of the image part at the top-left: only that part is
    equalised, so the black padding neither shifts the tile histograms nor turns grey.
    """

    def __init__(self, clip_limit: float = 2.0, tile_grid_size: tuple[int, int] = (8, 8)) -> None:
        if clip_limit <= 0:
            raise ValueError(f"CLAHE clip_limit must be > 0, got {clip_limit}")
        self.clip_limit = float(clip_limit)
        self.tile_grid_size = (int(tile_grid_size[0]), int(tile_grid_size[1]))

    def __repr__(self) -> str:
        return f"Clahe(clip_limit={self.clip_limit}, tile_grid_size={self.tile_grid_size})"

    def __call__(self, pixels: np.ndarray, content_hw: tuple[int, int] | None = None) -> np.ndarray:
        """uint8 [H, W] -> uint8 [H, W] (a new array)."""
        if pixels.ndim != 2 or pixels.dtype != np.uint8:
            raise ValueError(f"CLAHE expects a 2-D uint8 image, got {pixels.dtype} {pixels.shape}")
        # Created per call: cv2.CLAHE objects cannot be pickled into DataLoader workers.
        clahe = cv2.createCLAHE(clipLimit=self.clip_limit, tileGridSize=self.tile_grid_size)
        out = pixels.copy()
        height, width = content_hw if content_hw is not None else pixels.shape
        height, width = min(int(height), pixels.shape[0]), min(int(width), pixels.shape[1])
        if height > 0 and width > 0:
            out[:height, :width] = clahe.apply(np.ascontiguousarray(pixels[:height, :width]))
        return out


def clahe_from_config(augment: AugmentConfig) -> Clahe | None:
    """The Clahe of data.augment (clahe, clahe_clip_limit), or None when it is off."""
    return Clahe(augment.clahe_clip_limit) if augment.clahe else None


def prepare_image(
    pixels: np.ndarray, image_size_px: int, clahe: Clahe | None = None, original_hw: tuple[int, int] | None = None
) -> tuple[Tensor, float]:
    """An original uint8 [H, W] image -> (float32 [3, S, S] model input, letterbox scale), exactly
    as a dataset sample is made without augmentation: letterbox, CLAHE (when given), to tensor.

    `original_hw`: the file's own size when `pixels` were decoded smaller for this size
    (data_prep.images.read_any_image_sized); the scale is then that of the original, so
    predictions divided by it are in ORIGINAL pixels."""
    height, width = original_hw if original_hw is not None else pixels.shape[:2]
    resized, scale = letterbox_resize(pixels, image_size_px, original_hw)
    if clahe is not None:
        resized = clahe(resized, content_hw=content_size(height, width, image_size_px))
    return pixels_to_tensor(resized), float(scale)
