"""Validation: run a model over a loader and score it, in ORIGINAL pixel coordinates.

The model sees letterboxed images (data_prep.geometry: scale = size_px / max(H, W), top-left
placement), so a predicted box maps back by dividing by the sample's `scale`; the ground truth
is the manifest record's own boxes, never a resized copy. Metrics:

- detection, over the images with box labels (RSNA; Kermany has none and is left out):
  `map50`, `map`, `map75` from pycocotools on every returned box and score (a ranking metric:
  no threshold), and `rsna_score`, the competition score, on the boxes `detect infer` would
  write (detect.postprocess defaults: gating by the image probability, score threshold,
  shrinking) with the decision threshold chosen here;
- image level, over all images: the pneumonia decision threshold that maximises F1 on this
  split (`pneumonia_threshold`, stored in the checkpoint for `detect infer`), and `f1`,
  `auc` (ROC), `accuracy`, `sensitivity`, `specificity` at that threshold;
- optionally `loss`, the training loss on this split (`with_loss=True`, one more forward pass).
A metric that is undefined on the split (no box labels, one class only) is nan.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np
import torch

from detect.metrics import binary_classification_metrics, coco_map, f1_optimal_threshold, rsna_score
from detect.postprocess import PostprocessSettings, keep_valid_boxes, postprocess_boxes, to_original_coords

# Used when the split has no positive image, so no F1-optimal threshold exists.
DEFAULT_PNEUMONIA_THRESHOLD = 0.5


@dataclass
class EvalResult:
    """Per-image outputs in ORIGINAL pixels and the metrics computed from them.

    predictions: {image_id: (boxes_xyxy float32 [N, 4], scores float32 [N])}, raw model boxes
    mapped back to the original image; pneumonia_probs: {image_id: float}.
    """

    metrics: dict[str, float]
    predictions: dict[str, tuple[np.ndarray, np.ndarray]] = field(repr=False)
    pneumonia_probs: dict[str, float] = field(repr=False)
    pneumonia_threshold: float = DEFAULT_PNEUMONIA_THRESHOLD


def _records_of(loader: Iterable) -> list:
    dataset = loader.dataset  # type: ignore[attr-defined]
    while not hasattr(dataset, "records") and hasattr(dataset, "dataset"):  # torch Subset
        dataset = dataset.dataset
    return dataset.records


def _autocast(device: torch.device, amp: bool):
    if amp and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def _to_device(targets: list[dict[str, Any]], device: torch.device) -> list[dict[str, Any]]:
    return [{k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in t.items()} for t in targets]


@torch.inference_mode()
def predict_loader(
    model: torch.nn.Module, loader: Iterable, device: torch.device, *, amp: bool = False
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, float]]:
    """Run `model` (eval mode) over `loader`; boxes back in ORIGINAL pixels, probabilities per image."""
    records = _records_of(loader)
    model.eval()
    predictions: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    pneumonia_probs: dict[str, float] = {}
    for images, targets in loader:
        with _autocast(device, amp):
            outputs = model([image.to(device, non_blocking=True) for image in images])
        for output, target in zip(outputs, targets):
            record = records[int(target["image_index"])]
            scale = float(target["scale"])
            boxes = output["boxes"].float().cpu().numpy()
            scores = output["scores"].float().cpu().numpy()
            if record.width and record.height:
                boxes = to_original_coords(boxes, scale, record.width, record.height)
            else:
                boxes = (boxes / np.float32(scale)).astype(np.float32)
            predictions[record.image_id] = keep_valid_boxes(boxes, scores)
            pneumonia_probs[record.image_id] = float(output["pneumonia_prob"])
    return predictions, pneumonia_probs


def _set_loss_mode(model: torch.nn.Module) -> dict[torch.nn.Module, bool]:
    """Training mode (torchvision detectors return losses only then) with BatchNorm and Dropout
    kept in eval mode, so measuring the loss neither updates running statistics nor drops units."""
    modes = {m: m.training for m in model.modules()}
    model.train()
    for module in model.modules():
        if isinstance(module, (torch.nn.modules.batchnorm._BatchNorm, torch.nn.Dropout)):
            module.eval()
    return modes


@torch.no_grad()
def mean_loss(model: torch.nn.Module, loader: Iterable, device: torch.device, *, amp: bool = False) -> dict[str, float]:
    """The mean of each training loss component (and 'loss', their sum) over `loader`.

    The detector's proposal sampling is random: it runs under a forked, fixed-seed RNG so the
    number is reproducible and training's random streams are left untouched.
    """
    modes = _set_loss_mode(model)
    totals: dict[str, float] = {}
    n_batches = 0
    fork_devices = [device.index or 0] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=fork_devices):
            torch.manual_seed(0)
            for images, targets in loader:
                with _autocast(device, amp):
                    losses = model([i.to(device) for i in images], _to_device(targets, device))
                for name, value in losses.items():
                    totals[name] = totals.get(name, 0.0) + float(value)
                totals["loss"] = totals.get("loss", 0.0) + float(sum(losses.values()))
                n_batches += 1
    finally:
        for module, was_training in modes.items():
            module.train(was_training)
    return {k: v / n_batches for k, v in totals.items()} if n_batches else {"loss": math.nan}


def evaluate_model(
    model: torch.nn.Module,
    loader: Iterable,
    device: torch.device,
    *,
    amp: bool = False,
    pneumonia_threshold: float | None = None,
    postprocess: PostprocessSettings | None = None,
    with_loss: bool = False,
) -> EvalResult:
    """Predict over `loader` and compute the metrics listed in the module docstring.

    `loader` yields (images, targets) batches of a ManifestDataset (targets carry 'image_index'
    into its records and the letterbox 'scale'). `pneumonia_threshold=None` chooses the
    F1-optimal threshold on this split; pass the validation threshold to score a test split.
    The model is left in eval mode.
    """
    records = _records_of(loader)
    predictions, probs = predict_loader(model, loader, device, amp=amp)
    evaluated = [r for r in records if r.image_id in probs]

    y_true = np.array([int(r.target) for r in evaluated], dtype=np.int64)
    y_prob = np.array([probs[r.image_id] for r in evaluated], dtype=np.float64)
    if pneumonia_threshold is None:
        has_positive = y_true.size > 0 and y_true.sum() > 0
        pneumonia_threshold = f1_optimal_threshold(y_true, y_prob) if has_positive else DEFAULT_PNEUMONIA_THRESHOLD
    metrics: dict[str, float] = {"n_images": float(len(evaluated))}
    if y_true.size:
        binary = binary_classification_metrics(y_true, y_prob, pneumonia_threshold)
        for key in ("f1", "accuracy", "sensitivity", "specificity"):
            metrics[key] = binary[key]
        metrics["auc"] = binary["roc_auc"]
    metrics["pneumonia_threshold"] = float(pneumonia_threshold)

    boxed = [r for r in evaluated if r.has_box_labels]
    ground_truth = {r.image_id: r.boxes_xyxy for r in boxed}
    if ground_truth:
        detections = {i: predictions[i] for i in ground_truth}
        metrics.update(coco_map(detections, ground_truth))
        settings = postprocess or PostprocessSettings()
        final = {
            r.image_id: postprocess_boxes(
                *predictions[r.image_id],
                pneumonia_probability=probs[r.image_id],
                pneumonia_threshold=pneumonia_threshold,
                settings=settings,
                width_px=r.width,
                height_px=r.height,
            )
            for r in boxed
        }
        metrics["rsna_score"] = rsna_score(final, ground_truth)
    else:
        metrics.update({"map": math.nan, "map50": math.nan, "map75": math.nan, "rsna_score": math.nan})

    if with_loss:
        metrics.update(mean_loss(model, loader, device, amp=amp))
        model.eval()
    return EvalResult(metrics=metrics, predictions=predictions, pneumonia_probs=probs,
                      pneumonia_threshold=float(pneumonia_threshold))
