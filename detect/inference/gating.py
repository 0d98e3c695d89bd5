"""Gating by a separate model: `detect infer / eval --checkpoint DET --gate-with CLS`.

The 1st-place RSNA solution gated its detector with a separately trained classifier. Here the
gate is a second LoadedModel (any checkpoint whose predictions carry a pneumonia probability:
a classifier, or another detector's image head). Both run through their own `Predictor` on the
same original images (each with its own input size, CLAHE and TTA), and the gate's pneumonia
probability replaces the detector's image probability before post-processing:

    detector.predict_raw(images)  ->  boxes, box scores, class / subtype probabilities
    gate.predict_raw(images)      ->  the pneumonia probability that gates and decides

The decision threshold is then the GATE's operating point (chosen on its val split, stored in
its checkpoint's extra 'operating_points'): the threshold belongs to the model whose
probability it is compared with. The detector's RSNA class and Kermany subtype probabilities
are kept as they are.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from data_prep.errors import CheckpointError, DetectError
from detect.inference.predictor import LoadedModel, ModelInput, Predictor, load_predictor
from detect.predictions import PostprocessSettings, RawPrediction

Views = tuple[ModelInput, ModelInput | None]  # one image as Predictor.prepare_views gives it
GatedViews = tuple[Views, Views]  # the same image prepared for the detector and for the gate


def with_gate_probability(raw: RawPrediction, gate_raw: RawPrediction) -> RawPrediction:
    """The detector's prediction of one image with the gate's pneumonia probability in its place."""
    if (raw.width_px, raw.height_px) != (gate_raw.width_px, gate_raw.height_px):
        raise ValueError(
            f"the gate predicted a {gate_raw.width_px}x{gate_raw.height_px} image, "
            f"the detector a {raw.width_px}x{raw.height_px} one: not the same image"
        )
    return dataclasses.replace(raw, pneumonia_probability=float(gate_raw.pneumonia_probability))


class GatedPredictor:
    """Two Predictors as one: the detector's RawPredictions with the gate's pneumonia probability.

    It offers what `detect infer` (detect.inference.api: prepare_views in the reader threads,
    predict_views) and `detect eval` (detect.evaluation.evaluate.predict_records: predict_raw)
    call on a predictor.
    """

    def __init__(self, detector: Predictor, gate: Predictor) -> None:
        self.detector = detector
        self.gate = gate

    def prepare_views(self, pixels: np.ndarray) -> GatedViews:
        """One original image prepared for both models (each has its own input size and CLAHE).
        Safe in reader threads, as Predictor.prepare_views is."""
        return self.detector.prepare_views(pixels), self.gate.prepare_views(pixels)

    def predict_views(self, views: Sequence[GatedViews]) -> list[RawPrediction]:
        """Predict images given as their `prepare_views`: gated RawPredictions, in order."""
        raws = self.detector.predict_views([detector_views for detector_views, _ in views])
        gates = self.gate.predict_views([gate_views for _, gate_views in views])
        return [with_gate_probability(raw, gate) for raw, gate in zip(raws, gates)]

    def predict_raw(self, images: Sequence[np.ndarray]) -> list[RawPrediction]:
        """Original uint8 [H, W] images -> gated RawPredictions (ORIGINAL pixels), in order."""
        return self.predict_views([self.prepare_views(pixels) for pixels in images])


def check_gate(gate: LoadedModel) -> None:
    """Refuse a gate that cannot give a pneumonia probability, in one line (DetectError).

    One blank image of the gate's own input size goes through its predictor: a model whose
    output lacks `pneumonia_prob`, fails at that size, or returns a value outside [0, 1] is
    refused now, before any image is read.
    """
    name = gate.model_info["name"]
    size_px = int(gate.model_info["image_size_px"])
    try:
        raw = gate.predictor.predict_raw([np.zeros((size_px, size_px), dtype=np.uint8)])[0]
    except (RuntimeError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or ["no message"])[0][:200]
        raise DetectError(
            f"{gate.checkpoint_path}: --gate-with: model '{name}' at {size_px} px gives no "
            f"pneumonia probability ({first})"
        ) from None
    probability = raw.pneumonia_probability
    if not (math.isfinite(probability) and 0.0 <= probability <= 1.0):
        raise DetectError(
            f"{gate.checkpoint_path}: --gate-with: model '{name}' gave pneumonia probability "
            f"{probability} on a blank image, not one in [0, 1]"
        )


def load_gate(
    checkpoint: str | Path, *, device: str = "auto", settings: PostprocessSettings = PostprocessSettings()
) -> LoadedModel:
    """Load the `--gate-with` checkpoint on `device` (TTA as `settings` says) and check it gates.

    A missing or unreadable file is one CheckpointError line naming it and the option.
    """
    path = Path(checkpoint)
    if not path.is_file():
        raise CheckpointError(f"{path}: --gate-with: checkpoint not found")
    try:
        gate = load_predictor(path, device=device, settings=settings)
    except CheckpointError as exc:
        message = str(exc)
        raise CheckpointError(
            message.replace(f"{path}: ", f"{path}: --gate-with: ", 1)
            if message.startswith(f"{path}: ")
            else f"--gate-with {message}"
        ) from None
    check_gate(gate)
    return gate
