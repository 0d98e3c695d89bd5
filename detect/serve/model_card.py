"""GET /v1/model: what the loaded checkpoint is, in one JSON object.

Everything comes from the checkpoint (its stored config, operating points, validation metrics
and versions); nothing is re-measured. Data folders are reduced to their names, so the card
does not publish the training machine's directory layout.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from data_prep.records import KERMANY_SUBTYPES, RSNA_CLASSES
from data_prep.tasks import DETECTION_TASK, TASK_CLASSES
from detect.models.registry import get_model_spec
from detect.outputs.boxes_json import operating_point_to_json
from detect.serve.predict import ServeModel

DETECTION_DESCRIPTION = (
    "pneumonia detection on chest radiographs: opacity boxes (Faster R-CNN) with image-level "
    "RSNA class, pneumonia and Kermany subtype probabilities"
)
# What a whole-image classifier of each task decides (data_prep.tasks); every output key is still
# filled (detect.models.classifiers.image_outputs), but only these classes were learned.
CLASSIFIER_DESCRIPTION = {
    "kermany2": "whole-image classification of chest radiographs (Kermany): normal vs pneumonia; no boxes",
    "kermany3": "whole-image classification of chest radiographs (Kermany): normal vs bacterial vs viral pneumonia; no boxes",
    "rsna2": "whole-image classification of chest radiographs (RSNA): Lung Opacity (pneumonia) vs not; no boxes",
    "rsna3": "whole-image classification of chest radiographs (RSNA): the three RSNA classes; no boxes",
}


def task_description(task: str) -> dict[str, Any]:
    """The card's `task` block: the config task, what the model decides, and its learned classes."""
    if task == DETECTION_TASK:
        return {"name": task, "description": DETECTION_DESCRIPTION, "classes": list(RSNA_CLASSES)}
    return {"name": task, "description": CLASSIFIER_DESCRIPTION[task], "classes": list(TASK_CLASSES[task])}


def _finite_or_none(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def model_card(model: ServeModel) -> dict[str, Any]:
    loaded = model.loaded
    extra = loaded.checkpoint_extra
    spec = get_model_spec(loaded.config.model.name)
    metrics = extra.get("metrics") if isinstance(extra.get("metrics"), dict) else {}
    data_dirs = [Path(str(d)).name for d in extra.get("data_dirs") or []]
    return {
        "model": loaded.model_info,
        "task": task_description(loaded.config.task),
        "architecture": spec.description,
        "backbone": spec.backbone,
        "input": {
            "image_size_px": loaded.predictor.image_size_px,
            "letterbox": "aspect kept, padded right/bottom",
            "clahe": loaded.predictor.clahe is not None,
            "formats": ["DICOM", "PNG", "JPEG"],
        },
        "outputs": {
            "rsna_classes": list(RSNA_CLASSES),
            "kermany_subtypes": list(KERMANY_SUBTYPES),
            "boxes": (
                "xywh in original pixels, by descending score"
                if loaded.config.task == DETECTION_TASK
                else "none: a whole-image classifier draws no boxes"
            ),
        },
        "training_data": {
            "datasets": sorted(k for k in loaded.operating_points if k != "any"),
            "data_folders": data_dirs,
        },
        "operating_points": [operating_point_to_json(p) for _k, p in sorted(loaded.operating_points.items())],
        "validation": {
            "epoch": loaded.model_info.get("checkpoint_epoch"),
            "monitor": loaded.config.train.monitor,
            "best_metric": _finite_or_none(extra.get("best_metric")),
            "best_epoch": extra.get("best_epoch"),
            "metrics": {str(k): _finite_or_none(v) for k, v in sorted(metrics.items())},
        },
        "serve_defaults": model.settings.postprocess.to_dict(),
        "explanations": model.explanations,
        "versions": extra.get("versions") or {},
    }
