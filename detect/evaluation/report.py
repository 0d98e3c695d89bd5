"""The evaluation report: metrics.json, report.md and its plots, written into one folder.

    paths = write_eval_report(run_dir / "eval", metrics, curves=..., image_panels=...)

Files (each only when there is something to put in it):
    metrics.json          the metrics dict, strict JSON: numpy -> python, nan / inf -> null
    report.md             tables of every section present, plots linked by relative path
    pr_curve.png          precision-recall curves, one per entry of `curves`
    roc_curve.png         ROC curves, one per entry of `curves`
    confusion_matrix.png  every confusion matrix found in the classification sections
    examples.png          held-out images: TRUE boxes green, PREDICTED boxes red with scores
The returned dict maps 'metrics_json', 'report_md', 'pr_curve', 'roc_curve',
'confusion_matrix', 'examples' to the paths actually written.

Metrics layout (every section optional; a missing one is skipped; unknown top-level
sections are listed generically under "Other"):

    {
      "detection": {"rsna_score": float, "map": float, "map50": float, "map75": float,
                    ...any further scalars, e.g. "n_images", "score_thresh"}
                   or a sentence saying why it does not apply (a classifier checkpoint),
      "classification": {
          "pneumonia": <detect.metrics.binary_classification_metrics>,   # Normal vs Pneumonia
          "rsna_3class": <detect.metrics.multiclass_metrics>,            # RSNA_CLASSES order
      },
      "kermany": {
          "pneumonia": <binary_classification_metrics>,                  # NORMAL vs PNEUMONIA
          "bacterial_viral": <binary_classification_metrics>,            # positive = viral
          "kermany_3class": <multiclass_metrics>,                        # a kermany3 classifier
      },
      "operating_points": {"rsna": {"dataset", "threshold", "source", "applied_to"}, "kermany": ...},
      "counts": {str: int, ...},                                         # images per split etc.
    }

A binary dict may carry 'class_names': [negative, positive] (default per section: Normal /
Pneumonia, bacterial / viral) and 'threshold_source' (free text, e.g. "F1-optimal on rsna val
at epoch 5 (72 images)"), printed next to its threshold.

`curves` = {name: (y_true [N] of 0/1, y_prob [N])}; `image_panels` = [{'image': uint8
[H, W] (or [H, W, 3]), 'true_boxes_xyxy': [M, 4], 'pred_boxes_xyxy': [N, 4], 'pred_scores':
[N], 'title': str}] with boxes in that image's pixels. The plots are detect.outputs.plots'.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from data_prep.atomic import write_text_atomic
from detect.outputs.plots import curve_inputs, plot_confusion_matrices, plot_examples, plot_pr_curves, plot_roc_curves

DETECTION_ROWS: tuple[tuple[str, str], ...] = (
    ("rsna_score", "RSNA score (mean over IoU 0.40:0.05:0.75)"),
    ("map", "mAP@[.50:.05:.95] (COCO)"),
    ("map50", "mAP@.50"),
    ("map75", "mAP@.75"),
    ("rsna_score_no_postprocess", "RSNA score of the raw boxes above the score threshold (no gating or shrinking)"),
    ("n_images", "images scored (RSNA held-out patients with box labels)"),
    ("n_images_with_boxes", "images with true boxes"),
    ("n_true_boxes", "true boxes"),
    ("n_predicted_boxes", "predicted boxes (post-processed)"),
    ("map_boxes", "boxes mAP ranks"),
    ("rsna_score_boxes", "boxes the RSNA score counts"),
)
# The other keys a report shows, in words (counts, multi-class summaries); an unknown key shows as it is.
READABLE_KEYS: dict[str, str] = {
    "accuracy": "accuracy",
    "macro_f1": "macro F1",
    "macro_roc_auc": "macro ROC-AUC (one-vs-rest)",
    "n": "images",
}
INTERVALS_KEY = "intervals_95"  # {metric: [low, high]}: bootstrap percentile intervals over the test images
BINARY_ROWS: tuple[tuple[str, str], ...] = (
    ("accuracy", "accuracy"),
    ("sensitivity", "sensitivity (recall)"),
    ("specificity", "specificity"),
    ("precision", "precision (PPV)"),
    ("f1", "F1"),
    ("roc_auc", "ROC-AUC"),
    ("pr_auc", "PR-AUC (average precision)"),
)
# Published anchors (docs/data-formats.md), shown for orientation: other splits, other data.
KERMANY_PUBLISHED: dict[str, dict[str, float]] = {
    "pneumonia": {"accuracy": 0.928, "sensitivity": 0.932, "specificity": 0.901, "roc_auc": 0.968},
    "bacterial_viral": {"accuracy": 0.907},
}
DEFAULT_CLASS_NAMES: dict[tuple[str, str], tuple[str, str]] = {
    ("classification", "pneumonia"): ("Normal", "Pneumonia"),
    ("kermany", "pneumonia"): ("NORMAL", "PNEUMONIA"),
    ("kermany", "bacterial_viral"): ("bacterial", "viral"),
}
KNOWN_SECTIONS = ("detection", "classification", "kermany", "operating_points", "counts")


# ------------------------------------------------------------------------------------- JSON


def to_json_safe(value: Any, key_path: str = "metrics") -> Any:
    """A copy of `value` made of dict/list/str/int/float/bool/None only; nan and inf -> None.

    numpy scalars and arrays become python numbers and lists, tuples become lists, Paths become
    strings. Anything else is a TypeError naming where it sits (e.g. metrics.detection.model).
    """
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.ndarray):
        return [to_json_safe(v, f"{key_path}[{i}]") for i, v in enumerate(value.tolist())]
    if isinstance(value, Mapping):
        return {str(k): to_json_safe(v, f"{key_path}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_safe(v, f"{key_path}[{i}]") for i, v in enumerate(value)]
    raise TypeError(f"{key_path}: cannot write a {type(value).__name__} to JSON")


# --------------------------------------------------------------------------------- markdown


def format_number(value: Any) -> str:
    """4 decimals for floats, 'n/a' for None/nan, plain ints."""
    if value is None:
        return "n/a"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return "n/a" if not math.isfinite(float(value)) else f"{float(value):.4f}"
    return str(value)


def _interval_text(interval: Sequence[float] | None) -> str:
    if not interval or any(v is None or not math.isfinite(float(v)) for v in interval):
        return ""
    return f"[{float(interval[0]):.3f}, {float(interval[1]):.3f}]"


def _counts_label(key: str) -> str:
    """'rsna_test_images' -> 'rsna test images'; 'kermany_unreadable' -> 'kermany unreadable files'."""
    text = key.replace("_", " ")
    return text + " files" if text.endswith("unreadable") else text


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(format_number(v) for v in row) + " |" for row in rows]
    return lines


def _threshold_text(binary: Mapping[str, Any]) -> str:
    text = format_number(binary.get("threshold"))
    return f"{text} ({binary['threshold_source']})" if binary.get("threshold_source") else text


def _binary_section(
    title: str,
    binary: Mapping[str, Any],
    class_names: Sequence[str],
    threshold_text: str,
    published: Mapping[str, float] | None,
) -> list[str]:
    intervals = binary.get(INTERVALS_KEY) or {}
    header = ["metric", "value", "95% interval (bootstrap)"] + (
        ["published (Kermany et al. 2018)"] if published else []
    )
    rows = []
    for key, label in BINARY_ROWS:
        if key in binary:
            row = [label, binary[key], _interval_text(intervals.get(key))]
            if published:
                row.append(published.get(key, ""))
            rows.append(row)
    lines = [f"### {title}", ""]
    lines += _table(header, rows)
    lines += [
        "",
        f"Threshold: {threshold_text}. Positive class: {class_names[1]}. "
        f"n = {format_number(binary.get('n'))}, positives = {format_number(binary.get('n_positive'))}.",
        "",
    ]
    cm = binary.get("confusion_matrix")
    if cm is not None:
        (tn, fp), (fn, tp) = cm
        lines += _table(
            ["true \\ predicted", class_names[0], class_names[1]],
            [[class_names[0], tn, fp], [class_names[1], fn, tp]],
        )
        lines.append("")
    return lines


def _multiclass_section(title: str, multi: Mapping[str, Any]) -> list[str]:
    names = list(multi.get("class_names") or multi.get("per_class", {}).keys())
    lines = [f"### {title}", ""]
    lines += _table(
        ["metric", "value"],
        [[READABLE_KEYS[k], multi[k]] for k in ("accuracy", "macro_f1", "macro_roc_auc", "n") if k in multi],
    )
    lines.append("")
    per_class = multi.get("per_class") or {}
    if per_class:
        lines += _table(
            ["class", "precision", "sensitivity (recall)", "F1", "ROC-AUC (one-vs-rest)", "support"],
            [
                [name, v.get("precision"), v.get("sensitivity"), v.get("f1"), v.get("roc_auc"), v.get("support")]
                for name, v in per_class.items()
            ],
        )
        lines.append("")
    cm = multi.get("confusion_matrix")
    if cm is not None and names:
        lines += _table(["true \\ predicted", *names], [[name, *row] for name, row in zip(names, cm)])
        lines.append("")
    return lines


def _flat_items(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(value, Mapping):
        items: list[tuple[str, Any]] = []
        for k, v in value.items():
            items += _flat_items(v, f"{prefix}.{k}" if prefix else str(k))
        return items
    return [(prefix, value)]


def _binary_class_names(section: str, key: str, binary: Mapping[str, Any]) -> tuple[str, str]:
    names = binary.get("class_names") or DEFAULT_CLASS_NAMES.get((section, key), ("negative", "positive"))
    return str(names[0]), str(names[1])


def _is_multiclass(block: Any) -> bool:
    return isinstance(block, Mapping) and "per_class" in block


def _is_binary(block: Any) -> bool:
    return isinstance(block, Mapping) and "confusion_matrix" in block and not _is_multiclass(block)


def render_markdown(metrics: Mapping[str, Any], plots: Mapping[str, str], title: str) -> str:
    """report.md's text. `plots` maps a plot name to its file name relative to report.md."""
    lines = [f"# {title}", ""]
    operating_points = metrics.get("operating_points") if isinstance(metrics.get("operating_points"), Mapping) else None

    detection = metrics.get("detection")
    if isinstance(detection, str):  # a classifier: why there is no box metric (never a 0)
        lines += ["## Detection (opacity boxes)", "", f"mAP and the RSNA score: {detection}.", ""]
    if isinstance(detection, Mapping):
        lines += ["## Detection (opacity boxes)", ""]
        rows = [[label, detection[key]] for key, label in DETECTION_ROWS if key in detection]
        rows += [
            [key, value]
            for key, value in _flat_items({k: v for k, v in detection.items() if k not in dict(DETECTION_ROWS)})
        ]
        lines += _table(["metric", "value"], rows)
        lines += [
            "",
            "For orientation (not the same test images): RSNA 1st place 0.253 (Kaggle private "
            "leaderboard); a single torchvision Faster R-CNN R50-FPN at 512 px reached AP@0.5 = 0.429 "
            "on a held-out split.",
            "",
        ]

    for section, heading in (
        ("classification", f"## Classification ({_classification_dataset(metrics)})"),
        ("kermany", "## Kermany"),
    ):
        block = metrics.get(section)
        if not isinstance(block, Mapping) or not block:
            continue
        lines += [heading, ""]
        for key, sub in block.items():
            if _is_multiclass(sub):
                lines += _multiclass_section(_section_title(section, key), sub)
            elif _is_binary(sub):
                lines += _binary_section(
                    _section_title(section, key),
                    sub,
                    _binary_class_names(section, key, sub),
                    _threshold_text(sub),
                    KERMANY_PUBLISHED.get(key) if section == "kermany" else None,
                )
            else:
                lines += [f"### {key}", ""] + _table(["metric", "value"], _flat_items(sub)) + [""]

    if operating_points:
        lines += ["## Operating points (pneumonia decision thresholds)", ""]
        lines += _table(
            ["dataset", "threshold", "source", "applied to"],
            [
                [name, p.get("threshold"), p.get("source"), p.get("applied_to")]
                for name, p in operating_points.items()
                if isinstance(p, Mapping)
            ],
        ) + [""]
    counts = metrics.get("counts")
    if isinstance(counts, Mapping) and counts:
        rows = [[_counts_label(k), v] for k, v in _flat_items(counts)]
        lines += ["## Counts", ""] + _table(["what", "count"], rows) + [""]
    others = {k: v for k, v in metrics.items() if k not in KNOWN_SECTIONS}
    if others:
        lines += ["## Other", ""] + _table(["key", "value"], _flat_items(others)) + [""]

    if plots:
        lines += ["## Plots", ""]
        captions = {
            "pr_curve": "Precision-recall curves",
            "roc_curve": "ROC curves",
            "confusion_matrix": "Confusion matrices",
            "examples": "Held-out examples: true boxes green, predicted boxes red (score)",
        }
        for name, file_name in plots.items():
            lines += [f"### {captions.get(name, name)}", "", f"![{captions.get(name, name)}]({file_name})", ""]
    return "\n".join(lines).rstrip() + "\n"


def _classification_dataset(metrics: Mapping[str, Any]) -> str:
    """Whose images the 'classification' section scores: RSNA's, or one's own (dataset 'custom')."""
    points = metrics.get("operating_points")
    return "your images" if isinstance(points, Mapping) and "custom" in points else "RSNA"


def _section_title(section: str, key: str) -> str:
    titles = {
        ("classification", "pneumonia"): "Normal vs Pneumonia",
        ("classification", "rsna_3class"): "3 classes",
        ("kermany", "pneumonia"): "Pneumonia vs normal",
        ("kermany", "bacterial_viral"): "Bacterial vs viral",
        ("kermany", "kermany_3class"): "3 classes (normal, bacterial, viral)",
    }
    return titles.get((section, key), key)


def _confusion_matrices(metrics: Mapping[str, Any]) -> list[tuple[str, np.ndarray, list[str]]]:
    found = []
    for section, dataset in (("classification", _classification_dataset(metrics)), ("kermany", "Kermany")):
        block = metrics.get(section)
        if not isinstance(block, Mapping):
            continue
        for key, sub in block.items():
            if _is_multiclass(sub) and sub.get("confusion_matrix") is not None:
                names = list(sub.get("class_names") or sub["per_class"].keys())
                found.append((f"{dataset}: {_section_title(section, key)}", np.asarray(sub["confusion_matrix"]), names))
            elif _is_binary(sub):
                names = list(_binary_class_names(section, key, sub))
                found.append((f"{dataset}: {_section_title(section, key)}", np.asarray(sub["confusion_matrix"]), names))
    return found


# ------------------------------------------------------------------------------------ entry


def write_eval_report(
    out_dir: str | Path,
    metrics: dict,
    *,
    curves: dict | None = None,
    image_panels: list | None = None,
    title: str = "detect evaluation",
) -> dict[str, Path]:
    """Write metrics.json, report.md and the plots into `out_dir` (created); return their paths.

    See the module docstring for the layout of `metrics`, `curves` and `image_panels`.
    Existing files of the same names are replaced, each atomically (data_prep.atomic): a write
    that fails raises OutputWriteError and keeps that file's previous version.
    """
    out = Path(out_dir)
    safe = to_json_safe(metrics)
    written: dict[str, Path] = {}

    metrics_path = out / "metrics.json"
    write_text_atomic(metrics_path, json.dumps(safe, indent=2, allow_nan=False) + "\n")
    written["metrics_json"] = metrics_path

    plots: dict[str, str] = {}
    skipped_curves: list[str] = []
    if curves:
        usable, skipped_curves = curve_inputs(curves)
        if usable:
            plot_pr_curves(usable, out / "pr_curve.png")
            plot_roc_curves(usable, out / "roc_curve.png")
            plots["pr_curve"] = "pr_curve.png"
            plots["roc_curve"] = "roc_curve.png"
    matrices = _confusion_matrices(metrics)
    if matrices:
        plot_confusion_matrices(matrices, out / "confusion_matrix.png")
        plots["confusion_matrix"] = "confusion_matrix.png"
    if image_panels:
        plot_examples(image_panels, out / "examples.png")
        plots["examples"] = "examples.png"
    for name, file_name in plots.items():
        written[name] = out / file_name

    text = render_markdown(metrics, plots, title)
    if skipped_curves:
        text += "\nNo PR/ROC curve for " + ", ".join(skipped_curves) + ": only one class is present in its labels.\n"
    report_path = out / "report.md"
    write_text_atomic(report_path, text)
    written["report_md"] = report_path
    return written


# ------------------------------------------------------------------------------ terminal


def _summary_value(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def format_summary(metrics: dict[str, Any]) -> str:
    """A short table of the headline numbers, for the terminal."""
    rows: list[tuple[str, Any]] = []
    detection = metrics.get("detection") or {}
    if isinstance(detection, str):
        rows.append(("RSNA score, mAP", detection))
        detection = {}
    for key, label in (
        ("rsna_score", "RSNA score"),
        ("map", "mAP@[.5:.95]"),
        ("map50", "mAP@.5"),
        ("map75", "mAP@.75"),
    ):
        if key in detection:
            rows.append((label, detection[key]))
    own = _classification_dataset(metrics)
    blocks = [
        (f"{own} pneumonia", (metrics.get("classification") or {}).get("pneumonia")),
        ("Kermany pneumonia", (metrics.get("kermany") or {}).get("pneumonia")),
        ("Kermany viral vs bacterial", (metrics.get("kermany") or {}).get("bacterial_viral")),
    ]
    for label, block in blocks:
        if block:
            intervals = block.get(INTERVALS_KEY) or {}
            for key in ("accuracy", "sensitivity", "specificity", "f1", "roc_auc"):
                ci = intervals.get(key)
                value = block.get(key)
                if ci and value is not None and math.isfinite(value) and math.isfinite(ci[0]):
                    value = f"{value:.4f} [{ci[0]:.4f}, {ci[1]:.4f}]"
                rows.append((f"{label} {key}", value))
    three = (metrics.get("classification") or {}).get("rsna_3class")
    if three:
        rows.append((f"{own} 3-class accuracy", three.get("accuracy")))
        rows.append((f"{own} 3-class macro F1", three.get("macro_f1")))
    kermany_three = (metrics.get("kermany") or {}).get("kermany_3class")
    if kermany_three:
        rows.append(("Kermany 3-class accuracy", kermany_three.get("accuracy")))
        rows.append(("Kermany 3-class macro F1", kermany_three.get("macro_f1")))
    width = max((len(label) for label, _ in rows), default=10)
    lines = [f"{'metric'.ljust(width)}  value", f"{'-' * width}  ------"]
    lines += [f"{label.ljust(width)}  {_summary_value(value)}" for label, value in rows]
    return "\n".join(lines)
