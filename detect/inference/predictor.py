"""The one predictor: images in, predictions in ORIGINAL pixels out.

Every path from an image to a prediction goes through `Predictor`: validation during training
(detect.training.engine), `detect eval` (detect.evaluation.evaluate) and `detect infer`
(detect.inference.batch). One image's way, one function per step:

    prepare_input(pixels, size, clahe)    uint8 [H, W] -> ModelInput: letterboxed float [3, S, S],
                                          scale, original size (detect.data.preprocess)
    Predictor.forward(inputs)             the model on a batch -> per-image numpy outputs
    to_raw_prediction(outputs, input)     boxes / scale, clipped to the original image, empty
                                          boxes dropped -> RawPrediction
    Predictor.predict_inputs(...)         the above for a batch, flip TTA views merged
    Predictor.prepare_views(pixels)       the ModelInput(s) of an image (+ its flip with TTA): what
                                          `detect infer`'s reader threads make ahead of the model
    Predictor.predict_raw(images)         from original uint8 images (what infer and eval call)

Post-processing (gating, score threshold, shrinking) comes after, per image, with the operating
point of its dataset (detect.inference.postprocess, detect.inference.batch.finalize_prediction).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from detect.config import Config
from detect.data.preprocess import Clahe, clahe_from_config, prepare_image
from detect.devices import autocast, resolve_device
from detect.inference.postprocess import hflip_boxes, keep_valid_boxes, merge_tta_boxes, to_original_coords
from detect.models.checkpoint import build_model_from_checkpoint, find_latest_best_checkpoint, software_versions
from detect.predictions import OperatingPoint, PostprocessSettings, RawPrediction

# The keys every model's inference output carries per image, beside torchvision's boxes / scores.
IMAGE_OUTPUT_KEYS: tuple[str, ...] = ("rsna_class_probs", "pneumonia_prob", "subtype_probs")


@dataclass(frozen=True)
class ModelInput:
    """One image ready for the model: `tensor` float32 [3, S, S] (letterboxed, see
    detect.data.preprocess), `scale` its letterbox scale, and the ORIGINAL size in pixels that
    its prediction maps back to."""

    tensor: Tensor
    scale: float
    height_px: int
    width_px: int


def prepare_input(pixels: np.ndarray, image_size_px: int, clahe: Clahe | None = None) -> ModelInput:
    """An original uint8 [H, W] image -> its ModelInput (the same steps as a training sample)."""
    tensor, scale = prepare_image(pixels, image_size_px, clahe)
    return ModelInput(tensor=tensor, scale=scale, height_px=int(pixels.shape[0]), width_px=int(pixels.shape[1]))


def _to_numpy(value: Tensor, columns: int | None = None) -> np.ndarray:
    array = value.detach().float().cpu().numpy()
    return array.reshape(-1, columns) if columns else array.reshape(-1)


def outputs_to_numpy(output: dict[str, Tensor]) -> dict[str, np.ndarray]:
    """One image's model output (torchvision's boxes / scores + IMAGE_OUTPUT_KEYS) as float32 numpy."""
    missing = [k for k in ("boxes", "scores", *IMAGE_OUTPUT_KEYS) if k not in output]
    if missing:
        raise ValueError(f"the model's output lacks {', '.join(missing)}: every model must return them (see detect.models.detector)")
    return {
        "boxes": _to_numpy(output["boxes"], 4),
        "scores": _to_numpy(output["scores"]),
        **{key: _to_numpy(output[key]) for key in IMAGE_OUTPUT_KEYS},
    }


def to_raw_prediction(views: Sequence[dict[str, np.ndarray]], model_input: ModelInput, *,
                      tta_merge: str = "wbf", tta_iou_thresh: float = 0.55) -> RawPrediction:
    """One image's outputs (one view, or the plain and the flipped view) -> RawPrediction.

    Boxes go from the letterboxed input to the ORIGINAL image (divide by the scale, clip);
    those left empty by the clip are dropped; the flipped view's boxes are flipped back with
    the original width and merged with the plain view's; probabilities are averaged over views.
    """
    width, height = model_input.width_px, model_input.height_px
    per_view = []
    for v, out in enumerate(views):
        boxes = to_original_coords(out["boxes"], model_input.scale, width, height)
        if v == 1:
            boxes = hflip_boxes(boxes, width)
        per_view.append(keep_valid_boxes(boxes, out["scores"]))
    boxes, scores = per_view[0]
    if len(per_view) == 2:
        boxes, scores = merge_tta_boxes(boxes, scores, *per_view[1], method=tta_merge, iou_thresh=tta_iou_thresh)
    return RawPrediction(
        width_px=width,
        height_px=height,
        boxes_xyxy=boxes,
        scores=scores,
        class_probabilities=np.mean([o["rsna_class_probs"] for o in views], axis=0),
        subtype_probabilities=np.mean([o["subtype_probs"] for o in views], axis=0),
        pneumonia_probability=float(np.mean([o["pneumonia_prob"][0] for o in views])),
    )


class Predictor:
    """A model plus its input size and device: images in, RawPredictions in original pixels out.

    `clahe`: the Clahe the model was trained with (None = off). `tta`: horizontal-flip test-time
    augmentation; the ORIGINAL image is flipped before letterboxing, so the padding stays at the
    right and bottom as in training. `amp`: float16 autocast on CUDA.
    """

    def __init__(self, model: torch.nn.Module, image_size_px: int, device: torch.device, *,
                 clahe: Clahe | None = None, tta: bool = False, tta_merge: str = "wbf",
                 tta_iou_thresh: float = 0.55, amp: bool = False) -> None:
        self.model = model.to(device).eval()
        self.image_size_px = int(image_size_px)
        self.device = device
        self.clahe = clahe
        self.tta = tta
        self.tta_merge = tta_merge
        self.tta_iou_thresh = tta_iou_thresh
        self.amp = amp

    def prepare(self, pixels: np.ndarray) -> ModelInput:
        return prepare_input(pixels, self.image_size_px, self.clahe)

    @torch.inference_mode()
    def forward(self, inputs: Sequence[ModelInput]) -> list[dict[str, np.ndarray]]:
        """One forward pass over a batch of ModelInputs -> per-image numpy outputs (input pixels)."""
        self.model.eval()
        tensors = [item.tensor.to(self.device, non_blocking=True) for item in inputs]
        with autocast(self.device, self.amp):
            outputs = self.model(tensors)
        return [outputs_to_numpy(out) for out in outputs]

    def predict_inputs(self, inputs: Sequence[ModelInput],
                       flipped: Sequence[ModelInput] | None = None) -> list[RawPrediction]:
        """Predict prepared inputs; with TTA, `flipped` holds each image's flipped ModelInput."""
        if not inputs:
            return []
        if self.tta and flipped is None:
            raise ValueError("TTA needs each image's flipped view: call predict_raw with the original images")
        views = [self.forward(inputs)] + ([self.forward(flipped)] if self.tta and flipped is not None else [])
        return [
            to_raw_prediction([view[i] for view in views], item, tta_merge=self.tta_merge, tta_iou_thresh=self.tta_iou_thresh)
            for i, item in enumerate(inputs)
        ]

    def prepare_views(self, pixels: np.ndarray) -> tuple[ModelInput, ModelInput | None]:
        """An original image's ModelInput, and with TTA its flipped one (else None). Safe to call
        from reader threads (no state is changed), so `detect infer` letterboxes there."""
        flipped = self.prepare(np.ascontiguousarray(pixels[:, ::-1])) if self.tta else None
        return self.prepare(pixels), flipped

    def predict_views(self, views: Sequence[tuple[ModelInput, ModelInput | None]]) -> list[RawPrediction]:
        """Predict images given as their `prepare_views`."""
        return self.predict_inputs([plain for plain, _ in views], [f for _, f in views] if self.tta else None)

    def predict_raw(self, images: Sequence[np.ndarray]) -> list[RawPrediction]:
        """Predict a batch of original uint8 [H, W] images (any sizes): one forward pass, two with TTA."""
        return self.predict_views([self.prepare_views(pixels) for pixels in images])


# ------------------------------------------------------------------------ from a checkpoint


def operating_points_from_extra(extra: dict[str, Any]) -> dict[str, OperatingPoint]:
    """The checkpoint's per-dataset operating points ({} when it stores none).

    A checkpoint of detect before 0.2 stored one 'pneumonia_threshold', chosen on the pooled
    validation split of all its datasets: it is read as one point for any dataset.
    """
    stored = extra.get("operating_points")
    if isinstance(stored, dict):
        points = {}
        for dataset, values in stored.items():
            try:
                points[str(dataset)] = OperatingPoint.from_dict(values)
            except (KeyError, TypeError, ValueError):
                continue  # a damaged entry is ignored: the decision falls back as for a missing one
        return points
    legacy = extra.get("pneumonia_threshold")
    if isinstance(legacy, (int, float)) and math.isfinite(legacy) and 0.0 <= legacy <= 1.0:
        return {"any": OperatingPoint("any", float(legacy), "checkpoint (F1-optimal on the pooled val split; older format)")}
    return {}


@dataclass(frozen=True)
class LoadedModel:
    """A predictor and what the outputs say about it: the checkpoint, its training config, the
    `model_info` block of boxes.json / metrics.json, its per-dataset operating points, and the
    checkpoint's `extra` (validation metrics, versions, data folders: what a model card shows)."""

    predictor: Predictor
    checkpoint_path: Path
    config: Config
    model_info: dict[str, Any]
    operating_points: dict[str, OperatingPoint] = field(default_factory=dict)
    checkpoint_extra: dict[str, Any] = field(default_factory=dict)


def load_predictor(checkpoint: str | Path | None, *, runs_dir: str | Path = "runs", device: str = "auto",
                   settings: PostprocessSettings = PostprocessSettings()) -> LoadedModel:
    """Find (when `checkpoint` is None: the newest runs/*/checkpoints/best.pt) and load a
    checkpoint into a Predictor on `device`, with TTA as `settings` says."""
    path = Path(checkpoint) if checkpoint is not None else find_latest_best_checkpoint(runs_dir)
    torch_device = resolve_device(device, what="--device")
    model, cfg, extra = build_model_from_checkpoint(path, torch_device)
    predictor = Predictor(
        model, cfg.data.image_size_px, torch_device, clahe=clahe_from_config(cfg.data.augment),
        tta=settings.tta, tta_merge=settings.tta_merge, tta_iou_thresh=settings.tta_iou_thresh,
    )
    epoch = extra.get("epoch")
    info = {
        "name": cfg.model.name,
        "checkpoint": str(path),
        "checkpoint_epoch": int(epoch) if isinstance(epoch, (int, float)) else None,
        "image_size_px": int(cfg.data.image_size_px),
        "config_name": cfg.name,
        "detect_version": software_versions()["detect"],
    }
    return LoadedModel(predictor, path, cfg, info, operating_points_from_extra(extra), checkpoint_extra=extra)
