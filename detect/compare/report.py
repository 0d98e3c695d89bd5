"""OUT/compare.csv (one row per model) and OUT/report.md with its plots, from the models' results.

compare.csv columns, per model:
    model, kind (detector | classifier), task, parameters, epochs_run (in all, resumes included),
    best_epoch, stopped_on_time (train.max_minutes ran out), train_seconds (wall time of the
    epochs and their validation), train_images_per_s, infer_ms_per_image and infer_images_per_s
    (through the one Predictor on the test images, batch = train.batch_size, file reading not
    timed), n_test_images, thresholds (each dataset's decision threshold: F1-optimal on its val
    split), then for every test metric M: M, M_low, M_high (its bootstrap 95% percentile
    interval), then auc_difference_vs_best, delong_p_vs_best, mcnemar_p_vs_best (empty on the
    best model's own row).
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from data_prep.atomic import write_text_atomic
from data_prep.spreadsheet import spreadsheet_safe
from detect.compare.held_out import BINARY_METRICS, THREE_CLASS_TASKS, confusion_matrix
from detect.compare.plots import plot_accuracy_vs_time
from detect.outputs.plots import curve_inputs, plot_confusion_matrices, plot_roc_curves

if TYPE_CHECKING:
    from detect.compare.run import ModelResult, PairedComparison

METRIC_TITLES: dict[str, str] = {
    "accuracy": "accuracy",
    "precision": "precision",
    "sensitivity": "recall (sensitivity)",
    "specificity": "specificity",
    "f1": "F1",
    "roc_auc": "ROC-AUC",
    "pr_auc": "PR-AUC",
    "accuracy_3class": "3-class accuracy",
    "macro_f1": "macro F1",
    "macro_roc_auc": "macro ROC-AUC",
}


def _number(value: float, digits: int = 4) -> str:
    return "" if value is None or not math.isfinite(value) else f"{value:.{digits}g}"


def metric_names(results: Sequence[ModelResult]) -> list[str]:
    """Every metric any model has, binary ones first, in a stable order."""
    names = list(BINARY_METRICS)
    for result in results:
        names += [k for k in result.metrics if k not in names]
    return names


def _thresholds(result: ModelResult) -> str:
    return " ".join(f"{k}={v:.4g}" for k, v in sorted(result.predictions.thresholds.items()))


def compare_rows(results: Sequence[ModelResult], comparisons: Sequence[PairedComparison]) -> list[dict[str, Any]]:
    """compare.csv's rows (see the module docstring), one dict per model."""
    by_other = {c.other: c for c in comparisons}
    rows = []
    for result in results:
        p = result.predictions
        row: dict[str, Any] = {
            "model": result.model,
            "kind": result.kind,
            "task": result.task,
            "parameters": result.parameters,
            "epochs_run": result.epochs_run,
            "best_epoch": result.best_epoch,
            "stopped_on_time": result.stopped_on_time,
            "train_seconds": _number(result.train_seconds),
            "train_images_per_s": _number(result.train_images_per_s),
            "infer_ms_per_image": _number(p.infer_ms_per_image),
            "infer_images_per_s": _number(p.infer_images_per_s),
            "n_test_images": p.n_images,
            "thresholds": _thresholds(result),
        }
        for name in metric_names(results):
            ci = result.metrics.get(name)
            row[name] = _number(ci.estimate) if ci else ""
            row[f"{name}_low"] = _number(ci.low) if ci else ""
            row[f"{name}_high"] = _number(ci.high) if ci else ""
        paired = by_other.get(result.model)
        row["auc_difference_vs_best"] = _number(paired.delong.difference) if paired else ""
        row["delong_p_vs_best"] = _number(paired.delong.p_value) if paired else ""
        row["mcnemar_p_vs_best"] = _number(paired.mcnemar.p_value) if paired else ""
        rows.append(row)
    return rows


def csv_text(rows: Sequence[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows({key: spreadsheet_safe(value) for key, value in row.items()} for row in rows)
    return buffer.getvalue()


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def _format_p(p: float) -> str:
    if not math.isfinite(p):
        return "n/a"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def report_markdown(
    results: Sequence[ModelResult],
    best: str | None,
    comparisons: Sequence[PairedComparison],
    *,
    task: str,
    data_dirs: Sequence[str],
    plots: dict[str, str],
) -> str:
    n_test = max(r.predictions.n_images for r in results)
    lines = [
        "# detect compare",
        "",
        f"Models: {', '.join(r.model for r in results)}. Data: {', '.join(data_dirs)}; the test split "
        f"(Kermany: its own test/ folder; RSNA: held-out patients), {n_test} images. Every model trained with the "
        "same recipe, splits, seed and budget; each decision is taken at its dataset's F1-optimal threshold "
        "on the val split. Intervals: bootstrap 95% percentile intervals over the test images "
        f"({next(iter(results[0].metrics.values())).n_resamples} resamples). Numbers measured on synthetic data "
        "say nothing about real radiographs.",
        "",
        "## Test metrics",
        "",
    ]
    header = ["model", "kind", *(METRIC_TITLES[m] for m in BINARY_METRICS)]
    lines += _markdown_table(
        header, [[r.model, r.kind, *(r.metrics[m].format() for m in BINARY_METRICS)] for r in results]
    )
    names = THREE_CLASS_TASKS.get(task)
    if names and any("macro_f1" in r.metrics for r in results):
        per_class = [m for m in metric_names(results) if m.startswith("f1_")]
        lines += ["", f"## Three classes ({task}: {', '.join(names)})", ""]
        header = ["model", "3-class accuracy", "macro F1", "macro ROC-AUC", *(f"F1 {m[3:]}" for m in per_class)]
        keys = ["accuracy_3class", "macro_f1", "macro_roc_auc", *per_class]
        lines += _markdown_table(
            header, [[r.model, *(r.metrics[k].format() if k in r.metrics else "n/a" for k in keys)] for r in results]
        )
    lines += ["", "## Cost", ""]
    lines += _markdown_table(
        [
            "model",
            "parameters",
            "epochs",
            "train s",
            "train images/s",
            "inference ms/image",
            "inference images/s",
            "thresholds",
        ],
        [
            [
                r.model,
                f"{r.parameters:,}",
                f"{r.epochs_run}{' (time ran out)' if r.stopped_on_time else ''}",
                _number(r.train_seconds, 4),
                _number(r.train_images_per_s, 3),
                _number(r.predictions.infer_ms_per_image, 3),
                _number(r.predictions.infer_images_per_s, 3),
                _thresholds(r),
            ]
            for r in results
        ],
    )
    lines += [
        "",
        "Inference is timed around the Predictor's calls only (preprocessing, forward pass, mapping back), "
        "in batches of train.batch_size, after one untimed warm-up batch; reading the files is not timed. "
        "Timings depend on the machine and its load.",
        "",
        "## Is the best model's lead significant?",
        "",
    ]
    if best is None or not comparisons:
        lines.append("No model has a defined test ROC-AUC (the test split holds one class only): no paired test.")
    else:
        lines += [
            f"Best test ROC-AUC: **{best}** (on a tie, the first listed). Against each other model, on the test images both read: DeLong's "
            "test of the two correlated ROC-AUCs, and McNemar's test of the right/wrong decisions at each "
            "model's threshold (exact binomial under 25 discordant images, chi-square with continuity "
            "correction above). A p-value under 0.05 says the lead is unlikely to be chance on these images.",
            "",
        ]
        lines += _markdown_table(
            [
                "vs",
                "images",
                "AUC difference",
                "DeLong z",
                "DeLong p",
                "only best right",
                "only other right",
                "McNemar p",
            ],
            [
                [
                    c.other,
                    str(c.n_images),
                    _number(c.delong.difference, 3),
                    _number(c.delong.z, 3),
                    _format_p(c.delong.p_value),
                    str(c.mcnemar.a_only),
                    str(c.mcnemar.b_only),
                    f"{_format_p(c.mcnemar.p_value)} ({c.mcnemar.method})",
                ]
                for c in comparisons
            ],
        )
    lines += ["", "## Plots", ""]
    lines += [f"![{title}]({name})" for title, name in plots.items()]
    return "\n".join(lines) + "\n"


def write_compare_outputs(
    out_dir: Path,
    results: Sequence[ModelResult],
    best: str | None,
    comparisons: Sequence[PairedComparison],
    *,
    task: str,
    data_dirs: Sequence[str],
) -> dict[str, Path]:
    """compare.csv, report.md, roc.png, confusion.png (+ confusion_3class.png), accuracy_vs_time.png."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out_dir / "compare.csv", "report": out_dir / "report.md"}
    plots: dict[str, str] = {}
    curves, _skipped = curve_inputs({r.model: (r.predictions.y_true, r.predictions.y_prob) for r in results})
    if curves:
        plot_roc_curves(curves, out_dir / "roc.png")
        plots["ROC curves of all models"] = "roc.png"
    plot_confusion_matrices(
        [(f"{r.model} (pneumonia)", confusion_matrix(r.predictions), ["no pneumonia", "pneumonia"]) for r in results],
        out_dir / "confusion.png",
    )
    plots["confusion matrices"] = "confusion.png"
    names = THREE_CLASS_TASKS.get(task)
    if names:
        matrices = []
        for r in results:
            labelled = r.predictions.class_true >= 0
            if labelled.any():
                cm = np.zeros((3, 3), dtype=np.int64)
                np.add.at(
                    cm, (r.predictions.class_true[labelled], np.argmax(r.predictions.class_probs[labelled], axis=1)), 1
                )
                matrices.append((r.model, cm, list(names)))
        if matrices:
            plot_confusion_matrices(matrices, out_dir / "confusion_3class.png")
            plots["3-class confusion matrices"] = "confusion_3class.png"
    plot_accuracy_vs_time(
        [
            (
                r.model,
                r.predictions.infer_ms_per_image,
                r.metrics["accuracy"].estimate,
                r.metrics["accuracy"].low,
                r.metrics["accuracy"].high,
            )
            for r in results
        ],
        out_dir / "accuracy_vs_time.png",
    )
    plots["accuracy against inference time"] = "accuracy_vs_time.png"
    write_text_atomic(paths["csv"], csv_text(compare_rows(results, comparisons)))
    write_text_atomic(
        paths["report"], report_markdown(results, best, comparisons, task=task, data_dirs=data_dirs, plots=plots)
    )
    paths.update({name.removesuffix(".png"): out_dir / name for name in plots.values()})
    return paths
