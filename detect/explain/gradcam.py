"""Grad-CAM on the classifiers: where in the radiograph the pneumonia score comes from.

    explainer = GradCamExplainer(model, image_size_px, device, clahe)   # a classifier; DetectError otherwise
    heatmaps = explainer.heatmaps([pixels, ...])     # float32 [H, W] in [0, 1] per ORIGINAL uint8 [H, W] image
    canvas = draw_heatmap_overlay(pixels, heatmap)   # BGR uint8, for `detect infer --explain DIR`
    energy_inside_box(heatmap, box_xyxy)             # the share of the map's energy inside a box

The maps come from the maintained `pytorch_grad_cam.GradCAM` (Selvaraju et al. 2017), not a
hand-written copy, on the classifier contract (detect.models.classifiers): the model is
`task_logits` on a [B, 3, S, S] batch, the layer `cam_target_layer()`, and the target the
differentiable `pneumonia_score` (the binary logit, or pneumonia's log-odds against the other
classes), so the map answers "what raises the pneumonia score", whatever the task.

A map is computed on the letterboxed model input the Predictor makes (prepare_image with the
model's size and CLAHE: the same pixels the prediction saw) and mapped back to ORIGINAL pixels:
the content region (top-left, the padding is at the right and bottom) is cropped and resized
to the image's size. This room sits below detect.inference (which calls it for `detect infer
--explain`) and needs only a model and its input settings.
"""

from __future__ import annotations

import math
from typing import Sequence

import cv2
import numpy as np
import torch
from torch import Tensor, nn

from data_prep.errors import DetectError
from data_prep.geometry import letterbox_content_shape
from detect.data.preprocess import Clahe, prepare_image
from detect.extras import require
from detect.outputs.overlay import display_size, legend_strip

EXPLAIN_HOOKS: tuple[str, ...] = ("task_logits", "pneumonia_score", "cam_target_layer")
# The heat map's share of an overlay pixel: enough colour to read the map, enough grey to read the film.
HEATMAP_WEIGHT = 0.45


def is_explainable(model: nn.Module) -> bool:
    """A classifier of the contract (kind 'classifier' with its Grad-CAM hooks)."""
    return getattr(model, "kind", None) == "classifier" and all(
        callable(getattr(model, h, None)) for h in EXPLAIN_HOOKS
    )


class TaskLogits(nn.Module):
    """The classifier as GradCAM wants a model: a [B, 3, S, S] batch in [0, 1] -> logits [B, K]."""

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, batch: Tensor) -> Tensor:
        return self.classifier.task_logits(batch)


class PneumoniaScoreTarget:
    """A GradCAM target: one image's logits [K] -> its scalar pneumonia score (what is explained)."""

    def __init__(self, classifier: nn.Module) -> None:
        self.classifier = classifier

    def __call__(self, logits: Tensor) -> Tensor:
        return self.classifier.pneumonia_score(logits.unsqueeze(0))[0]


def cam_batch(classifier: nn.Module, batch: Tensor) -> np.ndarray:
    """Grad-CAM of the pneumonia score for a letterboxed batch [B, 3, S, S] -> float32 [B, S, S].

    Each map is GradCAM's: ReLU of the gradient-weighted activations of `cam_target_layer()`,
    upsampled to S x S and scaled to [0, 1] (all zeros where nothing raises the score).
    """
    # the input needs a gradient so that the layer's output has one even where the checkpoint's
    # parameters were frozen (transfer learning's backbone)
    from pytorch_grad_cam import GradCAM  # the explain extra: imported only when a map is made

    inputs = batch.detach().clone().requires_grad_(True)
    with (
        torch.enable_grad(),
        GradCAM(model=TaskLogits(classifier), target_layers=[classifier.cam_target_layer()]) as cam,
    ):
        maps = cam(input_tensor=inputs, targets=[PneumoniaScoreTarget(classifier)] * len(inputs))
    return np.asarray(maps, dtype=np.float32)


def heatmap_to_original(cam_input: np.ndarray, height_px: int, width_px: int) -> np.ndarray:
    """A map over the S x S letterboxed input -> float32 [height_px, width_px] over the ORIGINAL
    image: the content region is cropped (the padding explains nothing) and resized."""
    size_px = int(cam_input.shape[0])
    rows, cols = letterbox_content_shape(height_px, width_px, size_px)
    content = np.ascontiguousarray(cam_input[:rows, :cols], dtype=np.float32)
    interpolation = cv2.INTER_AREA if rows > height_px else cv2.INTER_LINEAR
    resized = cv2.resize(content, (int(width_px), int(height_px)), interpolation=interpolation)
    return np.clip(resized, 0.0, 1.0).astype(np.float32)


class GradCamExplainer:
    """Grad-CAM heat maps of a classifier on its own inputs: `image_size_px` and `clahe` as the
    model was trained (what its Predictor uses), on `device`."""

    def __init__(self, model: nn.Module, image_size_px: int, device: torch.device, clahe: Clahe | None = None) -> None:
        require("explain", "Grad-CAM heat maps (--explain)")
        if not is_explainable(model):
            raise DetectError(
                "Grad-CAM is for classifiers: the model has no task_logits / pneumonia_score / cam_target_layer"
            )
        self.model = model
        self.image_size_px = int(image_size_px)
        self.device = device
        self.clahe = clahe

    def heatmaps(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Original uint8 [H, W] images -> one float32 [H, W] map in [0, 1] each (ORIGINAL pixels)."""
        if not images:
            return []
        batch = torch.stack([prepare_image(pixels, self.image_size_px, self.clahe)[0] for pixels in images])
        maps = cam_batch(self.model, batch.to(self.device))
        self.model.eval()
        return [heatmap_to_original(m, int(p.shape[0]), int(p.shape[1])) for m, p in zip(maps, images)]


def box_mask(shape_hw: tuple[int, int], box_xyxy: Sequence[float]) -> np.ndarray:
    """bool [H, W]: the pixels whose centre lies inside the xyxy box (ORIGINAL pixels)."""
    height, width = shape_hw
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    columns = (np.arange(width) + 0.5 >= x1) & (np.arange(width) + 0.5 <= x2)
    rows = (np.arange(height) + 0.5 >= y1) & (np.arange(height) + 0.5 <= y2)
    return rows[:, None] & columns[None, :]


def box_area_fraction(shape_hw: tuple[int, int], box_xyxy: Sequence[float]) -> float:
    """The share of the image's pixels inside the box (what a uniform map puts inside it)."""
    return float(box_mask(shape_hw, box_xyxy).mean())


def energy_inside_box(heatmap: np.ndarray, box_xyxy: Sequence[float]) -> float:
    """sum(heatmap inside the box) / sum(heatmap), in [0, 1]; nan for a map with no energy."""
    total = float(np.sum(heatmap, dtype=np.float64))
    if total <= 0.0:
        return math.nan
    return float(np.sum(heatmap[box_mask(heatmap.shape[:2], box_xyxy)], dtype=np.float64)) / total


def draw_heatmap_overlay(pixels: np.ndarray, heatmap: np.ndarray, *, title: str = "") -> np.ndarray:
    """BGR uint8: the radiograph (uint8 [H, W]) under its heat map (float [H, W] in [0, 1], jet
    colours), sized as detect.outputs.overlay sizes overlays, with `title` in a strip below it."""
    if pixels.shape[:2] != heatmap.shape[:2]:
        raise ValueError(f"heat map {heatmap.shape[:2]} and image {pixels.shape[:2]} differ in size")
    width, height = display_size(pixels.shape[0], pixels.shape[1])
    grey = (
        cv2.resize(pixels, (width, height), interpolation=cv2.INTER_AREA)
        if (height, width) != pixels.shape[:2]
        else pixels
    )
    mask = cv2.resize(heatmap.astype(np.float32), (width, height)) if (height, width) != heatmap.shape[:2] else heatmap
    from pytorch_grad_cam.utils.image import show_cam_on_image  # the explain extra

    base = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR).astype(np.float32) / 255.0
    canvas = show_cam_on_image(base, np.clip(mask, 0.0, 1.0), use_rgb=False, image_weight=1.0 - HEATMAP_WEIGHT)
    if title:  # in a strip below the image, as the boxes overlay's legend: no text over the lungs
        canvas = np.vstack([canvas, legend_strip([title], width, max(0.35, max(height, width) / 1600.0))])
    return np.ascontiguousarray(canvas)
