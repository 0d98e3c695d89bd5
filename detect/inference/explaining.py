"""Grad-CAM overlays of a Detector's predictions: the PNGs `detect infer --explain DIR` writes and
the `explanation` `detect serve` returns for `explain=true`.

    can_explain(detector)                              the deciding model is a classifier
    explainer = explainer_for(detector)                its GradCamExplainer; a detector: DetectError
    explanation_overlays(explainer, detector, preds)   BGR uint8 per Prediction: its radiograph under
                                                       the heat map, titled (one Grad-CAM batch)

The explained model is the one whose pneumonia probability decides (the gate when there is
one: Detector.decision_model), on the pixels the prediction saw (Prediction.image).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from data_prep.errors import DetectError
from detect.explain.gradcam import GradCamExplainer, draw_heatmap_overlay, is_explainable
from detect.inference.api import Detector
from detect.inference.prediction import Prediction

EXPLANATION_METHOD = "gradcam"


def can_explain(detector: Detector) -> bool:
    """True when the model whose probability decides is a classifier Grad-CAM can explain."""
    return is_explainable(detector.decision_model.predictor.model)


def explainer_for(detector: Detector) -> GradCamExplainer:
    """Grad-CAM of the model whose pneumonia probability decides; a detector is one DetectError line."""
    model = detector.decision_model
    predictor = model.predictor
    if not is_explainable(predictor.model):
        raise DetectError(
            f"{model.checkpoint_path}: --explain: Grad-CAM is for classifiers and model "
            f"'{model.model_info['name']}' is a detector; pass a classifier checkpoint "
            "(as --checkpoint, or as --gate-with beside a detector)"
        )
    return GradCamExplainer(predictor.model, predictor.image_size_px, predictor.device, predictor.clahe)


def explain_title(detector: Detector, prediction: Prediction) -> str:
    return (
        f"Grad-CAM {detector.decision_model.model_info['name']}: pneumonia score, "
        f"p={prediction.pneumonia_probability or 0.0:.3f}"
    )


def explanation_overlays(
    explainer: GradCamExplainer, detector: Detector, predictions: Sequence[Prediction]
) -> list[np.ndarray]:
    """One overlay (BGR uint8, detect.explain.gradcam.draw_heatmap_overlay) per prediction, the
    heat maps computed as one batch. Each prediction must hold its pixels (made by a Detector)."""
    images = []
    for prediction in predictions:
        if prediction.image is None:
            raise ValueError(f"{prediction.source}: no pixels to explain ({prediction.error or 'not kept'})")
        images.append(np.asarray(prediction.image))
    heatmaps = explainer.heatmaps(images)
    return [
        draw_heatmap_overlay(pixels, heatmap, title=explain_title(detector, prediction))
        for pixels, heatmap, prediction in zip(images, heatmaps, predictions)
    ]
