"""`detect eval --predictions boxes.json --labels FILE`: score predictions made elsewhere (a
`detect infer --out boxes.json`, on this machine or another) against one's own labels.

The labels file is a COCO .json or a label CSV as `detect prepare --labels` reads it
(data_prep.own_labels), its paths relative to its own folder, where the images are: they are
read (headers only for DICOM) to check every box against its image, and the same problems are
reported (as notes) and left out. A prediction belongs to a labelled image when its `source`
is that image's path, or ends with '/' + it (infer was run from another folder).

Scored on the labelled images that have a prediction, each once:
  - detection: the RSNA score and COCO mAP of the boxes as boxes.json holds them (post-processed
    by `detect infer`), on the images whose labels say where opacities are;
  - pneumonia: from each image's pneumonia_probability at the operating point boxes.json
    records (the most common one when images differ; a note says so), with 95% bootstrap
    intervals, and the three classes when the labels use them and the probabilities are there.
Labelled images without a prediction, predictions without a label and failed predictions are
counted and named in the notes, never scored.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from data_prep.atomic import check_writable
from data_prep.errors import DetectError, LabelFileError
from data_prep.own_labels import parse_own_dataset
from data_prep.records import RSNA_CLASSES, ImageRecord
from detect.evaluation.evaluate import EvalOutcome, with_intervals
from detect.evaluation.examples import example_panel, pick_examples
from detect.evaluation.metrics import (
    binary_classification_metrics,
    coco_map,
    multiclass_metrics,
    rsna_score,
)
from detect.evaluation.report import write_eval_report

_NOTE_LIMIT = 20


def read_boxes_json(path: str | Path) -> list[dict[str, Any]]:
    """The `images` entries of a boxes.json; LabelFileError naming the file when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise LabelFileError(path, "file not found")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LabelFileError(path, f"not valid JSON ({exc})") from None
    if not isinstance(document, dict) or not isinstance(document.get("images"), list):
        raise LabelFileError(path, "not a boxes.json of detect infer: expected an object with an 'images' list")
    for index, entry in enumerate(document["images"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("source"), str):
            raise LabelFileError(path, f"images[{index}]: no 'source'")
    return document["images"]


def _boxes_xyxy(entry: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    boxes = entry.get("boxes") or []
    xyxy = np.array(
        [[b["x"], b["y"], b["x"] + b["width"], b["y"] + b["height"]] for b in boxes], dtype=np.float32
    ).reshape(-1, 4)
    return xyxy, np.array([b["score"] for b in boxes], dtype=np.float32)


def match_predictions(records: list[ImageRecord], entries: list[dict[str, Any]]) -> tuple[dict[str, dict], list[str]]:
    """{record.path: its prediction entry}, and the sources no labelled image claims.

    A source matches the labelled path it equals, else the longest labelled path it ends with
    after a '/'. A labelled image claimed twice keeps its first prediction.
    """
    paths = {r.path for r in records}
    matched: dict[str, dict] = {}
    unmatched: list[str] = []
    for entry in entries:
        source = entry["source"].replace("\\", "/")
        parts = source.split("/")
        candidate = next((p for p in ("/".join(parts[i:]) for i in range(len(parts))) if p in paths), None)
        if candidate is None:
            unmatched.append(entry["source"])
        elif candidate not in matched:
            matched[candidate] = entry
    return matched, unmatched


def _listed(what: str, items: list[str]) -> str:
    shown = ", ".join(items[:_NOTE_LIMIT]) + (
        f", ... ({len(items) - _NOTE_LIMIT} more)" if len(items) > _NOTE_LIMIT else ""
    )
    return f"{what}: {len(items)} ({shown})"


def evaluate_boxes_json(
    predictions_json: str | Path,
    labels: str | Path,
    out_dir: str | Path,
    *,
    label_map: str | None = None,
    unannotated: str | None = None,
    workers: int = 1,
) -> EvalOutcome:
    """Score a boxes.json against a COCO / CSV labels file (see the module docstring)."""
    check_writable(out_dir, expect="folder", what="--out")
    entries = read_boxes_json(predictions_json)
    labels = Path(labels)
    parsed = parse_own_dataset(labels.parent, labels, label_map=label_map, unannotated=unannotated, workers=workers)
    notes = [f"left out: {b.path}: {b.reason}" for b in parsed.bad_files] + list(parsed.skipped_rows)
    matched, unmatched = match_predictions(parsed.records, entries)
    failed = [p for p, e in matched.items() if e.get("error")]
    for path in failed:
        notes.append(f"left out: {path}: the prediction failed ({matched.pop(path)['error']})")
    records = [r for r in parsed.records if r.path in matched]
    missing = [r.path for r in parsed.records if r.path not in matched and r.path not in failed]
    if missing:
        notes.append(_listed("labelled images without a prediction (not scored)", missing))
    if unmatched:
        notes.append(_listed(f"predictions without a label in {labels.name} (not scored)", unmatched))
    if not records:
        raise DetectError(
            f"{predictions_json}: none of its {len(entries)} predictions is of an image labelled in "
            f"{labels} ({len(parsed.records)} usable labelled images)"
        )

    predictions = {r.path: _boxes_xyxy(matched[r.path]) for r in records}
    ground_truth = {r.path: r.boxes_xyxy for r in records if r.has_box_labels}
    metrics: dict[str, Any] = {}
    if ground_truth:
        metrics["detection"] = {
            "rsna_score": rsna_score({i: predictions[i] for i in ground_truth}, ground_truth),
            **coco_map({i: predictions[i] for i in ground_truth}, ground_truth),
            "n_images": len(ground_truth),
            "map_boxes": "the boxes of boxes.json (post-processed by detect infer)",
            "rsna_score_boxes": "the boxes of boxes.json (post-processed by detect infer)",
        }
    y_true = np.array([r.target for r in records], dtype=np.int64)
    y_prob = np.array([float(matched[r.path]["pneumonia_probability"]) for r in records], dtype=np.float64)
    thresholds = Counter(float((matched[r.path].get("operating_point") or {}).get("threshold", 0.5)) for r in records)
    threshold = thresholds.most_common(1)[0][0]
    if len(thresholds) > 1:
        notes.append(
            f"the images were decided at {len(thresholds)} thresholds; scored at the most common, {threshold:g}"
        )
    pneumonia = with_intervals(
        binary_classification_metrics(y_true, y_prob, threshold),
        y_true,
        y_prob,
        threshold,
        "the operating point recorded in boxes.json",
    )
    classification: dict[str, Any] = {"pneumonia": pneumonia}
    class_probs = [matched[r.path].get("class_probabilities") or {} for r in records]
    if all(set(RSNA_CLASSES) <= set(p) for p in class_probs):
        classification["rsna_3class"] = multiclass_metrics(
            np.array([RSNA_CLASSES.index(r.rsna_class) for r in records], dtype=np.int64),
            np.array([[p[c] for c in RSNA_CLASSES] for p in class_probs], dtype=np.float64),
            RSNA_CLASSES,
        )
    metrics["classification"] = classification
    metrics["operating_points"] = {
        "custom": {
            "dataset": "custom",
            "threshold": threshold,
            "source": "boxes.json",
            "applied_to": f"{len(records)} labelled images",
        }
    }
    metrics["counts"] = {
        "predictions": len(entries),
        "labelled_images": len(parsed.records),
        "scored_images": len(records),
        "left_out_labels": len(parsed.bad_files),
        "failed_predictions": len(failed),
    }
    metrics["sources"] = {"predictions": str(predictions_json), "labels": str(labels)}
    metrics["notes"] = notes
    panels = []
    for path in pick_examples([r.path for r in records], ground_truth, predictions):
        record = next(r for r in records if r.path == path)
        panel = example_panel(labels.parent / path, path[-20:], record.boxes_xyxy, *predictions[path])
        if panel is not None:
            panels.append(panel)
    paths = write_eval_report(
        out_dir,
        metrics,
        curves={"pneumonia": (y_true, y_prob)},
        image_panels=panels,
        title=f"detect eval: {Path(predictions_json).name} vs {labels.name}",
    )
    return EvalOutcome(metrics=metrics, paths=paths, notes=notes)
