"""Gating by a separate model: `detect infer / eval --checkpoint DET --gate-with CLS`.

The 1st-place RSNA solution gated its detector with a separately trained classifier. Here the
gate is a second LoadedModel (any checkpoint whose predictions carry a pneumonia probability:
a classifier, or another detector's image head). Both run through their own `Predictor` on the
same original images (each with its own input size, CLAHE and TTA), and the gate's pneumonia
probability replaces the detector's image probability before post-processing:

    detector.run(detector.prepare(image))  ->  boxes, box scores, class / subtype probabilities
    gate.run(gate.prepare(image))          ->  the pneumonia probability that gates and decides

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
from detect.inference.predictor import LoadedModel, Predictor, PreparedImage, load_predictor
from detect.predictions import PostprocessSettings, RawPrediction

GatedPrepared = tuple[PreparedImage, PreparedImage]  # the same image prepared for the detector and for the gate


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

    It offers the two steps of a Predictor, `prepare` (in reader threads) and `run`.
    """

    def __init__(self, detector: Predictor, gate: Predictor) -> None:
        self.detector = detector
        self.gate = gate

    def prepare(self, pixels: np.ndarray) -> GatedPrepared:
        """One original image prepared for both models (each has its own input size and CLAHE).
        Safe in reader threads, as Predictor.prepare is."""
        return self.detector.prepare(pixels), self.gate.prepare(pixels)

    def run(self, prepared: Sequence[GatedPrepared]) -> list[RawPrediction]:
        """Images given as their `prepare` -> gated RawPredictions, in order."""
        raws = self.detector.run([for_detector for for_detector, _ in prepared])
        gates = self.gate.run([for_gate for _, for_gate in prepared])
        return [with_gate_probability(raw, gate) for raw, gate in zip(raws, gates)]


def check_gate(gate: LoadedModel) -> None:
    """Refuse a gate that cannot give a pneumonia probability, in one line (DetectError).

    One blank image of the gate's own input size goes through its predictor: a model whose
    output lacks `pneumonia_prob`, fails at that size, or returns a value outside [0, 1] is
    refused now, before any image is read.
    """
    name = gate.model_info["name"]
    size_px = int(gate.model_info["image_size_px"])
    try:
        raw = gate.predictor.run([gate.predictor.prepare(np.zeros((size_px, size_px), dtype=np.uint8))])[0]
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
