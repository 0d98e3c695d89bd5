"""The one predictor: images in, predictions in ORIGINAL pixels out.

Every path from an image to a prediction goes through `Predictor`: validation during training
(detect.training.engine), `detect eval` (detect.evaluation.evaluate), `detect compare`,
`detect infer` and `detect serve` (through detect.inference.api.Detector). Two public steps,
in the style of torchvision's transforms and a predictor's preprocess -> inference:

    Predictor.prepare(pixels)             uint8 [H, W] -> PreparedImage: the letterboxed float
                                          [3, S, S] input (+ its flipped twin with TTA), scale,
                                          original size (detect.data.preprocess). Pure: reader
                                          threads call it ahead of the model
    Predictor.run(prepared)               a batch of PreparedImages -> RawPredictions: the
                                          backend (eager PyTorch, TorchScript or ONNX Runtime,
                                          detect.inference.backends), outputs checked finite,
                                          boxes / scale clipped to the original image, empty
                                          boxes dropped, flip views merged

The third step, the decision at the image's operating point with post-processing (gating,
score threshold, shrinking), is `Detector.finalize` (detect.inference.api).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from data_prep.errors import ModelOutputError
from detect.config import Config
from detect.data.preprocess import Clahe, clahe_from_config, prepare_image
from detect.devices import resolve_device
from detect.export.metadata import config_of_metadata
from detect.inference.backends import (
    EagerBackend,
    OnnxRuntimeBackend,
    TorchScriptBackend,
    choose_backend,
)
from detect.inference.postprocess import hflip_boxes, keep_valid_boxes, merge_tta_boxes, to_original_coords
from detect.models.checkpoint import build_model_from_checkpoint, find_latest_best_checkpoint, software_versions
from detect.predictions import OperatingPoint, PostprocessSettings, RawPrediction


@dataclass(frozen=True)
class ModelInput:
    """One image ready for the model: `tensor` float32 [3, S, S] (letterboxed, see
    detect.data.preprocess), `scale` its letterbox scale, and the ORIGINAL size in pixels that
    its prediction maps back to."""

    tensor: Tensor
    scale: float
    height_px: int
    width_px: int


@dataclass(frozen=True)
class PreparedImage:
    """One original image ready for `Predictor.run`: its ModelInput and, with flip TTA, the
    ModelInput of the horizontally flipped original (None without TTA)."""

    plain: ModelInput
    flipped: ModelInput | None = None


def prepare_input(
    pixels: np.ndarray, image_size_px: int, clahe: Clahe | None = None, original_hw: tuple[int, int] | None = None
) -> ModelInput:
    """An original uint8 [H, W] image -> its ModelInput (the same steps as a training sample).
    `original_hw`: the file's size when `pixels` were decoded smaller for this input size
    (detect.data.files.load_image's target_size_px); predictions then map back to it."""
    tensor, scale = prepare_image(pixels, image_size_px, clahe, original_hw)
    height, width = original_hw if original_hw is not None else pixels.shape[:2]
    return ModelInput(tensor=tensor, scale=scale, height_px=int(height), width_px=int(width))


def to_raw_prediction(
    views: Sequence[dict[str, np.ndarray]],
    model_input: ModelInput,
    *,
    tta_merge: str = "wbf",
    tta_iou_thresh: float = 0.55,
) -> RawPrediction:
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


Backend = EagerBackend | TorchScriptBackend | OnnxRuntimeBackend


def check_finite_outputs(outputs: Sequence[dict[str, np.ndarray]], model_name: str) -> None:
    """Refuse a batch's outputs holding NaN or infinity (ModelOutputError naming `model_name`).

    A checkpoint with non-finite weights answers NaN for every image; read as a prediction that
    would be a negative study (NaN > threshold is false) and boxes.json would not be JSON. Every
    backend's outputs pass here (Predictor.forward), so the check is made once for all of them.
    """
    for out in outputs:
        for key, value in out.items():
            array = np.asarray(value)
            if array.dtype.kind in "fc" and not np.isfinite(array).all():
                raise ModelOutputError(
                    f"{model_name}: the model's output '{key}' is not finite (NaN or infinity): "
                    "a broken checkpoint (non-finite weights?); its predictions cannot be used"
                )


class Predictor:
    """A model plus its input size and device: images in, RawPredictions in original pixels out.

    `model`: an nn.Module (run eagerly: EagerBackend) or a backend of detect.inference.backends
    (an exported file). `clahe`: the Clahe the model was trained with (None = off). `tta`:
    horizontal-flip test-time augmentation; the ORIGINAL image is flipped before letterboxing,
    so the padding stays at the right and bottom as in training. `amp`: float16 autocast on CUDA
    (eager only). Attributes: `backend` runs the model; `model` is the nn.Module (Grad-CAM,
    validation and parameter counts read it), None for an exported file. `name`: what an error
    about its outputs names (the checkpoint's path; the epoch during training).
    """

    def __init__(
        self,
        model: torch.nn.Module | Backend,
        image_size_px: int,
        device: torch.device,
        *,
        clahe: Clahe | None = None,
        tta: bool = False,
        tta_merge: str = "wbf",
        tta_iou_thresh: float = 0.55,
        amp: bool = False,
        name: str = "the model",
    ) -> None:
        self.backend: Backend = EagerBackend(model, device, amp) if isinstance(model, torch.nn.Module) else model
        self.model = self.backend.model if isinstance(self.backend, EagerBackend) else None
        self.image_size_px = int(image_size_px)
        self.device = device
        self.clahe = clahe
        self.tta = tta
        self.tta_merge = tta_merge
        self.tta_iou_thresh = tta_iou_thresh
        self.amp = amp
        self.name = name

    def _input(self, pixels: np.ndarray, original_hw: tuple[int, int] | None) -> ModelInput:
        return prepare_input(pixels, self.image_size_px, self.clahe, original_hw)

    def prepare(self, pixels: np.ndarray, original_hw: tuple[int, int] | None = None) -> PreparedImage:
        """An original uint8 [H, W] image -> its PreparedImage (with TTA, the flipped original too:
        flipped before letterboxing, so the padding stays at the right and bottom as in training).
        Safe to call from reader threads (no state is changed). `original_hw`: the file's size
        when `pixels` were decoded smaller (LoadedImage.decoded_from_hw); predictions map back to it."""
        flipped = self._input(np.ascontiguousarray(pixels[:, ::-1]), original_hw) if self.tta else None
        return PreparedImage(self._input(pixels, original_hw), flipped)

    def _forward(self, inputs: Sequence[ModelInput]) -> list[dict[str, np.ndarray]]:
        """One forward pass over a batch of ModelInputs -> per-image numpy outputs (input pixels).
        Raises ModelOutputError when an output is not finite."""
        outputs = self.backend([item.tensor for item in inputs])
        check_finite_outputs(outputs, self.name)
        return outputs

    def run(self, prepared: Sequence[PreparedImage]) -> list[RawPrediction]:
        """A batch of PreparedImages -> their RawPredictions in ORIGINAL pixels, in order: one
        forward pass, two with TTA. Raises ModelOutputError for non-finite outputs."""
        if not prepared:
            return []
        plain = [item.plain for item in prepared]
        views = [self._forward(plain)]
        if self.tta:
            flipped = [item.flipped for item in prepared]
            if any(f is None for f in flipped):
                raise ValueError("TTA needs each image's flipped view: prepare the images with this predictor")
            views.append(self._forward(flipped))  # type: ignore[arg-type]
        return [
            to_raw_prediction(
                [view[i] for view in views], item, tta_merge=self.tta_merge, tta_iou_thresh=self.tta_iou_thresh
            )
            for i, item in enumerate(plain)
        ]


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
        return {
            "any": OperatingPoint("any", float(legacy), "checkpoint (F1-optimal on the pooled val split; older format)")
        }
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


def load_predictor(
    checkpoint: str | Path | None,
    *,
    runs_dir: str | Path = "runs",
    device: str = "auto",
    settings: PostprocessSettings = PostprocessSettings(),
    backend: str | None = None,
) -> LoadedModel:
    """Find (when `checkpoint` is None: the newest runs/*/checkpoints/best.pt) and load a
    checkpoint into a Predictor on `device`, with TTA as `settings` says.

    `checkpoint` is a training or weights-only checkpoint (eager PyTorch), or a file of
    `detect export` (TorchScript, ONNX: the config and operating points come from its metadata).
    `backend` (eager | torchscript | onnxruntime; None: what the file is) must fit the file:
    detect.inference.backends.choose_backend.
    """
    path = Path(checkpoint) if checkpoint is not None else find_latest_best_checkpoint(runs_dir)
    kind = choose_backend(path, backend)
    torch_device = resolve_device(device, what="--device")
    if kind == "eager":
        model, cfg, extra = build_model_from_checkpoint(path, torch_device)
        runner: torch.nn.Module | Backend = model
    else:
        if kind == "torchscript":
            runner, metadata = TorchScriptBackend.open(path, torch_device)
        else:  # ONNX Runtime picks its provider from the request itself (auto: CUDA if it has one)
            runner, metadata = OnnxRuntimeBackend.open(path, device if device == "auto" else str(torch_device))
        cfg, extra = config_of_metadata(metadata, str(path)), dict(metadata.get("extra") or {})
    predictor = Predictor(
        runner,
        cfg.data.image_size_px,
        torch_device,
        clahe=clahe_from_config(cfg.data.augment),
        tta=settings.tta,
        tta_merge=settings.tta_merge,
        tta_iou_thresh=settings.tta_iou_thresh,
        name=str(path),
    )
    epoch = extra.get("epoch")
    info = {
        "name": cfg.model.name,
        "task": cfg.task,
        "checkpoint": str(path),
        "checkpoint_epoch": int(epoch) if isinstance(epoch, (int, float)) else None,
        "image_size_px": int(cfg.data.image_size_px),
        "config_name": cfg.name,
        "detect_version": software_versions()["detect"],
    }
    return LoadedModel(predictor, path, cfg, info, operating_points_from_extra(extra), checkpoint_extra=extra)
