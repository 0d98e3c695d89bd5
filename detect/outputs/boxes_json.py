"""boxes.json: the versioned document `detect infer` writes, and its JSON Schema.

    document = {"schema_version": SCHEMA_VERSION, "anonymized": False, "model": ...,
                "settings": settings_to_json(...), "images": [prediction_to_json(p) for p in predictions]}
    validate_output(document)        # the shipped schema (schemas/boxes.schema.json) + boxes inside images
    write_boxes_json(path, document)

Boxes are written as {x, y, width, height, score}, (x, y) the top-left corner in the ORIGINAL
image's pixels, 2 decimals; probabilities with 6 decimals.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Sequence

import jsonschema
import numpy as np

from data_prep.atomic import atomic_write, write_text_atomic
from detect.predictions import ImagePrediction, OperatingPoint, PostprocessSettings

SCHEMA_VERSION = "2.3"
SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / "boxes.schema.json"
# Boxes and probabilities are written with these many decimals in boxes.json.
BOX_DECIMALS = 2
PROBABILITY_DECIMALS = 6


def _probability(value: float) -> float:
    return round(min(max(float(value), 0.0), 1.0), PROBABILITY_DECIMALS)


def boxes_to_json(boxes_xyxy: np.ndarray, scores: np.ndarray) -> list[dict[str, float]]:
    """[{'x', 'y', 'width', 'height', 'score'}] with (x, y) the top-left corner, in pixels.

    The corners are rounded first and the size derived from them, so x + width stays within
    the image whenever the xyxy box does.
    """
    out = []
    for (x1, y1, x2, y2), score in zip(np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4), scores):
        x1, y1, x2, y2 = (round(float(v), BOX_DECIMALS) for v in (x1, y1, x2, y2))
        width, height = round(x2 - x1, BOX_DECIMALS), round(y2 - y1, BOX_DECIMALS)
        if width > 0 and height > 0:  # postprocess drops boxes below MIN_BOX_SIZE_PX, so this always holds
            out.append({"x": x1, "y": y1, "width": width, "height": height, "score": _probability(score)})
    return out


def operating_point_to_json(point: OperatingPoint) -> dict[str, Any]:
    return {"dataset": point.dataset, "threshold": _probability(point.threshold), "source": point.source}


def prediction_to_json(prediction: ImagePrediction, *, anonymize: bool = False) -> dict[str, Any]:
    """One `images[]` entry of boxes.json (fixed keys; prediction fields null on failure).
    `anonymize`: patient_id is null (the only patient identifier boxes.json carries)."""
    if prediction.error is not None:
        return {
            "source": prediction.source,
            "patient_id": None,
            "sop_instance_uid": None,
            "study_instance_uid": None,
            "series_instance_uid": None,
            "pixel_spacing_row_mm": None,
            "pixel_spacing_column_mm": None,
            "image_width_px": None,
            "image_height_px": None,
            "view_position": None,
            "class_probabilities": None,
            "subtype_probabilities": None,
            "pneumonia_probability": None,
            "pneumonia": None,
            "operating_point": None,
            "box_outcome": None,
            "boxes": None,
            "error": prediction.error,
        }
    if prediction.operating_point is None or prediction.box_outcome is None:
        raise ValueError(f"{prediction.source}: a prediction needs its operating_point and box_outcome")
    return {
        "source": prediction.source,
        "patient_id": None if anonymize else prediction.patient_id,
        "sop_instance_uid": prediction.sop_instance_uid,
        "study_instance_uid": prediction.study_instance_uid,
        "series_instance_uid": prediction.series_instance_uid,
        "pixel_spacing_row_mm": prediction.pixel_spacing_mm[0] if prediction.pixel_spacing_mm else None,
        "pixel_spacing_column_mm": prediction.pixel_spacing_mm[1] if prediction.pixel_spacing_mm else None,
        "image_width_px": prediction.width_px,
        "image_height_px": prediction.height_px,
        "view_position": prediction.view_position,
        "class_probabilities": {k: _probability(v) for k, v in (prediction.class_probabilities or {}).items()},
        "subtype_probabilities": {k: _probability(v) for k, v in (prediction.subtype_probabilities or {}).items()},
        "pneumonia_probability": _probability(prediction.pneumonia_probability or 0.0),
        "pneumonia": bool(prediction.pneumonia),
        "operating_point": operating_point_to_json(prediction.operating_point),
        "box_outcome": prediction.box_outcome,
        "boxes": boxes_to_json(prediction.boxes_xyxy, prediction.scores),
        "error": None,
    }


def settings_to_json(
    settings: PostprocessSettings, operating_points: Sequence[OperatingPoint], rule: str
) -> dict[str, Any]:
    """boxes.json's `settings`: post-processing, the operating points on offer and how each
    image's was picked."""
    values = settings.to_dict()
    return {
        "score_thresh": values["score_thresh"],
        "operating_points": [operating_point_to_json(p) for p in operating_points],
        "operating_point_rule": rule,
        "gate": values["gate"],
        "drop_below_threshold": values["drop_below_threshold"],
        "shrink_factor": values["shrink_factor"],
        "tta": values["tta"],
        "tta_merge": values["tta_merge"],
        "tta_iou_thresh": values["tta_iou_thresh"],
    }


@lru_cache(maxsize=1)
def load_schema() -> dict[str, Any]:
    """The shipped JSON Schema of boxes.json (draft 2020-12)."""
    return json.loads(SCHEMA_PATH.read_text())


def _first_schema_error(validator: jsonschema.Draft202012Validator, instance: Any, where_prefix: str) -> None:
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        where = "/".join([where_prefix, *(str(p) for p in first.absolute_path)]).strip("/") or "<root>"
        raise ValueError(f"boxes.json does not match its schema at {where}: {first.message}")


@lru_cache(maxsize=1)
def _entry_validator() -> jsonschema.Draft202012Validator:
    schema = load_schema()
    return jsonschema.Draft202012Validator({"$defs": schema["$defs"], **schema["properties"]["images"]["items"]})


def _check_boxes_inside(entry: dict[str, Any], where: str) -> None:
    tolerance = 10.0**-BOX_DECIMALS
    for j, box in enumerate(entry.get("boxes") or []):
        if (
            box["x"] + box["width"] > entry["image_width_px"] + tolerance
            or box["y"] + box["height"] > entry["image_height_px"] + tolerance
        ):
            raise ValueError(
                f"boxes.json: {where}/boxes/{j} extends outside the {entry['image_width_px']}x{entry['image_height_px']} image"
            )


def validate_entry(entry: dict[str, Any], where: str = "images/0") -> None:
    """One `images[]` entry against the schema's prediction / failure definitions, boxes inside the image."""
    _first_schema_error(_entry_validator(), entry, where)
    _check_boxes_inside(entry, where)


def validate_output(document: dict[str, Any]) -> None:
    """Validate a boxes.json document against the schema, plus what JSON Schema cannot say:
    every box lies inside its image. Raises ValueError with the first problem."""
    _first_schema_error(jsonschema.Draft202012Validator(load_schema()), document, "")
    for i, image in enumerate(document["images"]):
        _check_boxes_inside(image, f"images/{i}")


def write_boxes_json_stream(
    path: str | Path, head: dict[str, Any], entries: Iterable[dict[str, Any]]
) -> tuple[Path, int]:
    """Write boxes.json from its head (schema_version, model, settings) and an iterator of
    entries, without holding them all: each entry is validated as it is written, the head as a
    document without images. The text is what `json.dumps(document, indent=2)` would give.
    Returns (path, number of entries)."""
    validate_output({**head, "images": []})
    out = Path(path)
    opening = json.dumps({**head, "images": []}, indent=2, allow_nan=False)
    assert opening.endswith('"images": []\n}')
    n = 0
    # atomic: a failed or killed assembly leaves the previous boxes.json (or none), never half of one
    with atomic_write(out) as handle:
        handle.write((opening[: -len("[]\n}")] + "[").encode())
        for n, entry in enumerate(entries, start=1):
            validate_entry(entry, f"images/{n - 1}")
            body = "\n".join("    " + line for line in json.dumps(entry, indent=2, allow_nan=False).splitlines())
            handle.write((("\n" if n == 1 else ",\n") + body).encode())
        handle.write(("\n  ]\n}\n" if n else "]\n}\n").encode())
    return out, n


def write_boxes_json(path: str | Path, document: dict[str, Any]) -> Path:
    """Validate `document` and write it to `path` (folders created), atomically: a full disk or
    a kill leaves the previous boxes.json as it was (OutputWriteError). Returns the path."""
    validate_output(document)
    return write_text_atomic(path, json.dumps(document, indent=2, allow_nan=False) + "\n")
