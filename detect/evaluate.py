"""`detect eval`: exact metrics on held-out patients, written as metrics.json + report.md + plots.

Two ways in:

(a) `evaluate_checkpoint(checkpoint, data_dirs, out_dir)`: a trained model and one or more
    datasets (RSNA and/or Kermany; prepared on the fly with the checkpoint's split settings when
    `detect prepare` has not been run). For each dataset the model predicts the 'val' split and
    the pneumonia decision threshold is chosen there (F1-optimal); it then predicts the held-out
    split (`split`, default 'test': patients never seen in training or threshold selection) and
    the metrics are computed with that threshold. Predictions go through exactly the code of
    `detect infer` (detect.infer.Predictor + finalize_prediction), with its post-processing
    settings recorded in metrics.json.
      - RSNA detection: the competition score `rsna_score` on the post-processed boxes (gating,
        score threshold, shrinking: what `detect infer` writes); COCO mAP@[.5:.95], mAP@.5,
        mAP@.75 (pycocotools) on the raw detector boxes (every returned box; mAP ranks, it needs
        no threshold), and `rsna_score_no_postprocess` (raw boxes >= score_thresh, no gating or
        shrinking) to show what post-processing buys.
      - RSNA image level: Normal/Pneumonia (binary, target = Lung Opacity) from the pneumonia
        probability, and the 3 RSNA classes from the class probabilities (argmax).
      - Kermany: pneumonia vs normal (own F1-optimal threshold on Kermany val), and bacterial vs
        viral on the pneumonia images (positive = viral, score P(viral) / (P(bacterial) +
        P(viral)) from the subtype head, threshold F1-optimal on the val pneumonia images).
(b) `evaluate_predictions(predictions_csv, labels_csv, out_dir)`: a Kaggle submission against
    stage_2_train_labels.csv. Only the patients of the predictions file are scored (a
    submission for a subset is normal: the held-out patients). Detection: `rsna_score` and
    COCO mAP on the submitted boxes as they are. Image level: the image score is the highest
    box confidence (0 without boxes); an image is called pneumonia when it has at least one box
    of positive confidence; ROC-AUC / PR-AUC rank the image scores.

Both write `metrics.json`, `report.md`, `pr_curve.png`, `roc_curve.png`,
`confusion_matrix.png`, `examples.png` (detect.report.write_eval_report); (a) also writes the
held-out predictions as a Kaggle CSV (`<split>_predictions.csv`, RSNA only), which (b) reads.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from data_prep.errors import DetectError, LabelFileError
from data_prep.records import KERMANY_SUBTYPES, RSNA_CLASSES, BadFile, ImageRecord
from detect.metrics import (
    binary_classification_metrics,
    coco_map,
    f1_optimal_threshold,
    multiclass_metrics,
    rsna_score,
)
from detect.postprocess import PostprocessSettings, postprocess_boxes

N_EXAMPLES = 8
EXAMPLE_MAX_SIDE_PX = 512
# (b): an image is called pneumonia when its highest box confidence is above 0.
ANY_BOX_THRESHOLD = float(np.nextafter(0.0, 1.0))


@dataclass
class EvalOutcome:
    """What an evaluation produced: the metrics dict, the files written, and notes for the user."""

    metrics: dict[str, Any]
    paths: dict[str, Path]
    notes: list[str] = field(default_factory=list)
    failures: list[BadFile] = field(default_factory=list)


# ------------------------------------------------------------------------- predicting a split


@dataclass
class SplitPredictions:
    """Raw predictions of the readable images of one split, aligned with `records`."""

    records: list[ImageRecord]
    raw: list[Any]  # detect.infer.RawPrediction, one per record
    failures: list[BadFile]

    @property
    def pneumonia_probs(self) -> np.ndarray:
        return np.array([r.pneumonia_probability for r in self.raw], dtype=np.float64)

    @property
    def targets(self) -> np.ndarray:
        return np.array([int(r.target) for r in self.records], dtype=np.int64)


def predict_records(
    predictor: Any, data_root: Path, records: Sequence[ImageRecord], *, batch_size: int = 8, workers: int = 2, progress: bool = False, desc: str = "predict"
) -> SplitPredictions:
    """Read each record's ORIGINAL file (data_root / record.path) and predict it with `predictor`.

    Unreadable files are BadFiles (reported, left out of the metrics), as in `detect infer`.
    """
    from detect.infer import LoadedImage, iter_loaded_batches

    files = [data_root / r.path for r in records]
    by_path = {str(f): r for f, r in zip(files, records)}
    out = SplitPredictions(records=[], raw=[], failures=[])
    batches = iter_loaded_batches(files, batch_size, workers)
    if progress:
        from tqdm import tqdm

        batches = tqdm(batches, total=math.ceil(len(files) / batch_size), unit="batch", desc=desc, leave=False)
    for batch in batches:
        images = [item for item in batch if isinstance(item, LoadedImage)]
        out.failures += [item for item in batch if isinstance(item, BadFile)]
        for image, raw in zip(images, predictor.predict_raw([i.pixels for i in images])):
            out.records.append(by_path[image.source])
            out.raw.append(raw)
    return out


# ---------------------------------------------------------------------------- metric blocks


def choose_pneumonia_threshold(y_true: np.ndarray, y_prob: np.ndarray, fallback: float, fallback_source: str) -> tuple[float, str]:
    """(F1-optimal threshold on these labels, 'F1-optimal on val'), or the fallback when the
    labels hold no positive (F1 is then 0 at every threshold)."""
    if y_true.size and y_true.sum() > 0:
        return f1_optimal_threshold(y_true, y_prob), "F1-optimal on val"
    return float(fallback), fallback_source


def _threshold_info(threshold: float, source: str, n_val_images: int, applied_to: str) -> dict[str, Any]:
    """metrics.json's 'threshold' section (the layout detect.report renders)."""
    chosen = source.startswith("F1-optimal")
    return {
        "value": float(threshold),
        "rule": "F1-optimal" if chosen else source,
        "chosen_on": "val" if chosen else None,
        "n_val_images": n_val_images,
        "applied_to": applied_to,
    }


def postprocessed_predictions(
    split: SplitPredictions, settings: PostprocessSettings, pneumonia_threshold: float
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{image_id: (boxes_xyxy, scores)} after gating / score threshold / shrinking, as `detect infer`."""
    return {
        record.image_id: postprocess_boxes(
            raw.boxes_xyxy, raw.scores,
            pneumonia_probability=raw.pneumonia_probability,
            pneumonia_threshold=pneumonia_threshold,
            settings=settings,
            width_px=raw.width_px,
            height_px=raw.height_px,
        )
        for record, raw in zip(split.records, split.raw)
    }


def detection_metrics(
    final: dict[str, tuple[np.ndarray, np.ndarray]],
    raw: dict[str, tuple[np.ndarray, np.ndarray]],
    ground_truth: dict[str, np.ndarray],
    score_thresh: float,
) -> dict[str, Any]:
    """RSNA score on `final` boxes, COCO mAP on `raw` boxes, counts; nan where undefined."""
    thresholded = {}
    for image_id, (boxes, scores) in raw.items():
        keep = scores >= score_thresh
        thresholded[image_id] = (boxes[keep], scores[keep])
    return {
        "rsna_score": rsna_score(final, ground_truth),
        **coco_map(raw, ground_truth),
        "rsna_score_no_postprocess": rsna_score(thresholded, ground_truth),
        "n_images": len(ground_truth),
        "n_images_with_boxes": sum(int(len(b) > 0) for b in ground_truth.values()),
        "n_true_boxes": int(sum(len(b) for b in ground_truth.values())),
        "n_predicted_boxes": int(sum(len(b) for b, _ in final.values())),
    }


def _viral_score(subtype_probabilities: np.ndarray) -> float:
    bacterial = float(subtype_probabilities[KERMANY_SUBTYPES.index("bacterial")])
    viral = float(subtype_probabilities[KERMANY_SUBTYPES.index("viral")])
    return viral / (bacterial + viral) if bacterial + viral > 0 else 0.5


def _bacterial_viral(split: SplitPredictions) -> tuple[np.ndarray, np.ndarray]:
    pairs = [
        (int(r.subtype == "viral"), _viral_score(raw.subtype_probabilities))
        for r, raw in zip(split.records, split.raw)
        if r.subtype in ("bacterial", "viral")
    ]
    truth = np.array([p[0] for p in pairs], dtype=np.int64)
    score = np.array([p[1] for p in pairs], dtype=np.float64)
    return truth, score


# ----------------------------------------------------------------------------- data loading


def load_prepared(data_dir: str | Path, cfg: Any, *, workers: int = 2) -> tuple[Any, list[str]]:
    """The prepared dataset of `data_dir`, preparing it (no cache) when needed -> (dataset, notes).

    Preparing uses the checkpoint config's split settings (data.val_fraction, test_fraction,
    split_seed), which are those training used, so 'test' holds patients training never saw.
    An existing preparation with other settings is used as it is, with a warning note.
    """
    from data_prep.manifest import find_prepared, read_manifest

    notes: list[str] = []
    path = Path(data_dir)
    if not path.exists():
        raise DetectError(f"{path}: data folder not found")
    if find_prepared(path) is None:
        from data_prep.prepare import prepare_dataset

        notes.append(f"{path}: not prepared yet; prepared now with the checkpoint's split settings")
        prepare_dataset(
            path,
            val_fraction=cfg.data.val_fraction,
            test_fraction=cfg.data.test_fraction,
            seed=cfg.data.split_seed,
            workers=workers,
        )
    prepared = read_manifest(path)
    expected = (cfg.data.split_seed, cfg.data.val_fraction, cfg.data.test_fraction)
    found = (prepared.seed, prepared.val_fraction, prepared.test_fraction)
    if tuple(float(v) for v in found) != tuple(float(v) for v in expected):
        notes.append(
            f"{prepared.prepared_dir}: prepared with seed/val/test fractions {found}, the checkpoint's "
            f"config says {expected}: the held-out split may contain patients the model was trained on"
        )
    return prepared, notes


def _example_panel(source: Path, title: str, true_boxes: np.ndarray, pred_boxes: np.ndarray, pred_scores: np.ndarray) -> dict[str, Any] | None:
    """One image of the examples grid, downscaled to EXAMPLE_MAX_SIDE_PX with its boxes."""
    import cv2

    from detect.infer import load_image

    try:
        pixels = load_image(source).pixels
    except DetectError:
        return None
    height, width = pixels.shape
    factor = min(1.0, EXAMPLE_MAX_SIDE_PX / max(height, width))
    if factor < 1.0:
        pixels = cv2.resize(pixels, (max(1, round(width * factor)), max(1, round(height * factor))), interpolation=cv2.INTER_AREA)
    return {
        "image": pixels,
        "true_boxes_xyxy": np.asarray(true_boxes, dtype=np.float64).reshape(-1, 4) * factor,
        "pred_boxes_xyxy": np.asarray(pred_boxes, dtype=np.float64).reshape(-1, 4) * factor,
        "pred_scores": np.asarray(pred_scores, dtype=np.float64).reshape(-1),
        "title": title,
    }


def pick_examples(ids: Sequence[str], truth: dict[str, np.ndarray], predicted: dict[str, tuple[np.ndarray, np.ndarray]], n: int = N_EXAMPLES) -> list[str]:
    """Deterministic mix for the grid: images with true boxes first (half), then images with
    predicted but no true boxes (false alarms, a quarter), then the rest, each in id order."""
    ordered = sorted(ids)
    with_truth = [i for i in ordered if len(truth.get(i, ())) > 0]
    false_alarms = [i for i in ordered if len(truth.get(i, ())) == 0 and len(predicted.get(i, ((),))[0]) > 0]
    rest = [i for i in ordered if i not in set(with_truth) | set(false_alarms)]
    chosen = with_truth[: max(1, n // 2)] + false_alarms[: max(1, n // 4)]
    for i in with_truth + false_alarms + rest:
        if len(chosen) >= n:
            break
        if i not in chosen:
            chosen.append(i)
    return chosen[:n]


# ---------------------------------------------------------------------------- (a) checkpoint


def evaluate_checkpoint(
    checkpoint: str | Path | None,
    data_dirs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    split: str = "test",
    runs_dir: str | Path = "runs",
    settings: PostprocessSettings = PostprocessSettings(),
    batch_size: int = 8,
    device: str = "auto",
    workers: int = 2,
    progress: bool = False,
) -> EvalOutcome:
    """Evaluate a checkpoint on the held-out `split` of each dataset in `data_dirs` (see module doc).

    `checkpoint=None`: the best checkpoint most recently written under `runs_dir`.
    """
    from detect.infer import load_model

    _check_eval_arguments(split, data_dirs)
    loaded = load_model(checkpoint, runs_dir=runs_dir, device=device, settings=settings)
    return evaluate_loaded_model(loaded, data_dirs, out_dir, split=split, settings=settings, batch_size=batch_size, workers=workers, progress=progress)


def _check_eval_arguments(split: str, data_dirs: Sequence[str | Path]) -> None:
    if split not in ("val", "test", "train"):
        raise DetectError(f"split '{split}' is unknown; choose test (default), val or train")
    if not data_dirs:
        raise DetectError("no data given: pass --data DIR (a prepared or raw RSNA / Kermany folder)")


@dataclass
class DatasetSections:
    """What one dataset adds to the report: metrics.json sections, curves, example panels."""

    sections: dict[str, Any]
    curves: dict[str, tuple[np.ndarray, np.ndarray]]
    panels: list[dict[str, Any]] = field(default_factory=list)
    threshold_info: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)


def rsna_sections(
    held: SplitPredictions, threshold: float, settings: PostprocessSettings, image_path: Any, csv_path: Path
) -> DatasetSections:
    """RSNA held-out metrics at `threshold`: classification (binary + 3 classes), detection,
    the post-processed boxes as a Kaggle CSV at `csv_path`, and up to N_EXAMPLES panels."""
    from detect.submission import SubmissionRow, write_submission

    class_index = np.array([RSNA_CLASSES.index(r.rsna_class) for r in held.records], dtype=np.int64)
    class_probs = np.stack([raw.class_probabilities for raw in held.raw])
    sections: dict[str, Any] = {"classification": {
        "pneumonia": binary_classification_metrics(held.targets, held.pneumonia_probs, threshold),
        "rsna_3class": multiclass_metrics(class_index, class_probs, RSNA_CLASSES),
    }}
    final = postprocessed_predictions(held, settings, threshold)
    ground_truth = {r.image_id: r.boxes_xyxy for r in held.records if r.has_box_labels}
    if ground_truth:
        raw_boxes = {r.image_id: (raw.boxes_xyxy, raw.scores) for r, raw in zip(held.records, held.raw)}
        sections["detection"] = {
            **detection_metrics(
                {i: final[i] for i in ground_truth}, {i: raw_boxes[i] for i in ground_truth}, ground_truth, settings.score_thresh
            ),
            "map_boxes": "raw detector boxes (no gating, threshold or shrinking)",
            "rsna_score_boxes": "post-processed boxes, as written by detect infer",
        }
    write_submission(csv_path, [SubmissionRow(r.patient_id, *final[r.image_id]) for r in held.records])
    out = DatasetSections(sections, {"RSNA pneumonia": (held.targets, held.pneumonia_probs)},
                          notes=[f"wrote the held-out post-processed boxes to {csv_path}"])
    by_id = {r.image_id: (r, raw) for r, raw in zip(held.records, held.raw)}
    for image_id in pick_examples(list(by_id), ground_truth, final):
        record, raw = by_id[image_id]
        title = f"{image_id[:13]} p={float(raw.pneumonia_probability):.2f}"
        panel = _example_panel(image_path(record), title, record.boxes_xyxy, *final[image_id])
        if panel is not None:
            out.panels.append(panel)
    return out


def kermany_sections(val: SplitPredictions, held: SplitPredictions, threshold: float, source: str) -> DatasetSections:
    """Kermany held-out metrics: pneumonia vs normal at `threshold`, and bacterial vs viral on the
    pneumonia images at its own threshold, F1-optimal on the val pneumonia images."""
    pneumonia = binary_classification_metrics(held.targets, held.pneumonia_probs, threshold)
    pneumonia["threshold_source"] = f"{source} (Kermany)"
    out = DatasetSections({"kermany": {"pneumonia": pneumonia}}, {"Kermany pneumonia": (held.targets, held.pneumonia_probs)})
    bv_truth, bv_score = _bacterial_viral(held)
    if bv_truth.size:
        val_truth, val_score = _bacterial_viral(val)
        bv_threshold, bv_source = choose_pneumonia_threshold(val_truth, val_score, 0.5, "default 0.5 (no viral image in val)")
        bacterial_viral = binary_classification_metrics(bv_truth, bv_score, bv_threshold)
        bacterial_viral["threshold_source"] = f"{bv_source}, on P(viral) / (P(bacterial) + P(viral))"
        out.sections["kermany"]["bacterial_viral"] = bacterial_viral
        out.curves["Kermany viral vs bacterial"] = (bv_truth, bv_score)
    return out


def evaluate_loaded_model(
    loaded: Any,
    data_dirs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    split: str = "test",
    settings: PostprocessSettings = PostprocessSettings(),
    batch_size: int = 8,
    workers: int = 2,
    progress: bool = False,
) -> EvalOutcome:
    """`evaluate_checkpoint` for a model already loaded (detect.infer.LoadedModel: a predictor
    with `predict_raw`, the training `config` for the split settings, `checkpoint_threshold`).

    metrics.json's 'threshold' section describes the RSNA pneumonia threshold when RSNA data is
    evaluated, else Kermany's; every binary block of another threshold names its own source.
    """
    from detect.report import write_eval_report

    _check_eval_arguments(split, data_dirs)
    out = Path(out_dir)
    if loaded.checkpoint_threshold is not None:
        fallback, fallback_source = loaded.checkpoint_threshold, "checkpoint (no positive in val)"
    else:
        fallback, fallback_source = 0.5, "default 0.5 (no positive in val)"
    notes: list[str] = []
    if split == "val":
        notes.append("evaluating on 'val', where the threshold is also chosen: the numbers are optimistic")
    failures: list[BadFile] = []
    metrics: dict[str, Any] = {}
    counts: dict[str, int] = {}
    parts: dict[str, DatasetSections] = {}
    for data_dir in data_dirs:
        prepared, prep_notes = load_prepared(data_dir, loaded.config, workers=workers)
        notes += prep_notes
        name = prepared.dataset
        if name in parts:
            raise DetectError(f"{data_dir}: a second {name} dataset; pass each dataset once")
        held_records = prepared.split_records(split)
        if not held_records:
            raise DetectError(f"{prepared.prepared_dir}: the '{split}' split of this {name} dataset is empty")

        def predict(records: list[ImageRecord], which: str) -> SplitPredictions:
            return predict_records(loaded.predictor, prepared.data_root, records, batch_size=batch_size,
                                   workers=workers, progress=progress, desc=f"{name} {which}")

        val = predict(prepared.split_records("val"), "val")
        held = val if split == "val" else predict(held_records, split)
        new_failures = val.failures + ([] if held is val else held.failures)
        failures += new_failures
        if not held.records:
            raise DetectError(f"{prepared.prepared_dir}: none of the {len(held_records)} '{split}' images could be read")
        counts.update({
            f"{name}_val_images": len(val.records),
            f"{name}_{split}_images": len(held.records),
            f"{name}_{split}_pneumonia": int(held.targets.sum()),
            f"{name}_unreadable": len(new_failures),
        })
        threshold, source = choose_pneumonia_threshold(val.targets, val.pneumonia_probs, fallback, fallback_source)
        if name == "rsna":
            part = rsna_sections(held, threshold, settings, prepared.image_path, out / f"{split}_predictions.csv")
        else:
            part = kermany_sections(val, held, threshold, source)
        part.threshold_info = _threshold_info(threshold, source, len(val.records), split)
        parts[name] = part
        metrics.update(part.sections)
        notes += part.notes

    threshold_owner = parts.get("rsna") or parts.get("kermany")
    if threshold_owner is not None and threshold_owner.threshold_info is not None:
        metrics["threshold"] = threshold_owner.threshold_info
    metrics["counts"] = counts
    metrics["settings"] = settings.to_dict()
    metrics["model"] = loaded.model_info
    metrics["split"] = split
    notes += [f"unreadable, left out: {f.path}: {f.reason}" for f in failures]
    metrics["notes"] = list(notes)
    curves = {k: v for part in parts.values() for k, v in part.curves.items()}
    panels = [panel for part in parts.values() for panel in part.panels]
    title = f"detect eval: {', '.join(sorted(parts))} '{split}' split"
    paths = write_eval_report(out, metrics, curves=curves, image_panels=panels, title=title)
    return EvalOutcome(metrics=metrics, paths=paths, notes=notes, failures=failures)


# --------------------------------------------------------------------------- (b) CSV vs CSV


def evaluate_predictions(
    predictions_csv: str | Path,
    labels_csv: str | Path,
    out_dir: str | Path,
    *,
    images_dir: str | Path | None = None,
) -> EvalOutcome:
    """Score a Kaggle submission against stage_2_train_labels.csv (see the module docstring).

    `images_dir`: where <patientId>.dcm live, for the examples grid; default: the
    stage_2_train_images/ folder next to the labels file, when it exists.
    """
    from detect.report import write_eval_report
    from detect.submission import read_label_boxes, read_submission

    predictions = read_submission(predictions_csv)
    labels = read_label_boxes(labels_csv)
    if not predictions:
        raise LabelFileError(predictions_csv, "no prediction rows after the header")
    unknown = [pid for pid in predictions if pid not in labels]
    if unknown:
        raise LabelFileError(
            predictions_csv,
            f"{len(unknown)} patientId(s) have no row in {labels_csv}, e.g. '{unknown[0]}' (predictions and labels must name the same patients)",
        )
    ground_truth = {pid: labels[pid] for pid in predictions}
    preds = {pid: (row.boxes_xyxy, row.scores) for pid, row in predictions.items()}
    notes = [f"scored the {len(ground_truth)} patients of {predictions_csv} ({len(labels)} patients in {labels_csv})"]

    detection = {
        "rsna_score": rsna_score(preds, ground_truth),
        **coco_map(preds, ground_truth),
        "n_images": len(ground_truth),
        "n_images_with_boxes": sum(int(len(b) > 0) for b in ground_truth.values()),
        "n_true_boxes": int(sum(len(b) for b in ground_truth.values())),
        "n_predicted_boxes": int(sum(len(b) for b, _ in preds.values())),
        "map_boxes": "the submitted boxes",
        "rsna_score_boxes": "the submitted boxes",
    }
    ids = list(ground_truth)
    y_true = np.array([int(len(ground_truth[i]) > 0) for i in ids], dtype=np.int64)
    y_score = np.array([float(preds[i][1].max()) if len(preds[i][1]) else 0.0 for i in ids], dtype=np.float64)
    pneumonia = binary_classification_metrics(y_true, y_score, ANY_BOX_THRESHOLD)
    pneumonia["threshold_source"] = "image called pneumonia when it has a box of positive confidence; scores = max box confidence"
    metrics: dict[str, Any] = {
        "detection": detection,
        "classification": {"pneumonia": pneumonia},
        "counts": {"patients_in_predictions": len(predictions), "patients_in_labels": len(labels)},
        "sources": {"predictions": str(predictions_csv), "labels": str(labels_csv)},
        "notes": notes,
    }
    folder = Path(images_dir) if images_dir is not None else Path(labels_csv).parent / "stage_2_train_images"
    panels = []
    if folder.is_dir():
        for pid in pick_examples(ids, ground_truth, preds):
            source = folder / f"{pid}.dcm"
            if source.is_file():
                panel = _example_panel(source, pid[:13], ground_truth[pid], *preds[pid])
                if panel is not None:
                    panels.append(panel)
    curves = {"pneumonia (max box confidence)": (y_true, y_score)}
    paths = write_eval_report(out_dir, metrics, curves=curves, image_panels=panels, title="detect eval: submission vs labels")
    return EvalOutcome(metrics=metrics, paths=paths, notes=notes)


# ------------------------------------------------------------------------------- summary


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def format_summary(metrics: dict[str, Any]) -> str:
    """A short table of the headline numbers, for the terminal."""
    rows: list[tuple[str, Any]] = []
    detection = metrics.get("detection") or {}
    for key, label in (("rsna_score", "RSNA score"), ("map", "mAP@[.5:.95]"), ("map50", "mAP@.5"), ("map75", "mAP@.75")):
        if key in detection:
            rows.append((label, detection[key]))
    blocks = [("RSNA pneumonia", (metrics.get("classification") or {}).get("pneumonia")),
              ("Kermany pneumonia", (metrics.get("kermany") or {}).get("pneumonia")),
              ("Kermany viral vs bacterial", (metrics.get("kermany") or {}).get("bacterial_viral"))]
    for label, block in blocks:
        if block:
            for key in ("accuracy", "sensitivity", "specificity", "f1", "roc_auc"):
                rows.append((f"{label} {key}", block.get(key)))
    three = (metrics.get("classification") or {}).get("rsna_3class")
    if three:
        rows.append(("RSNA 3-class accuracy", three.get("accuracy")))
        rows.append(("RSNA 3-class macro F1", three.get("macro_f1")))
    width = max((len(label) for label, _ in rows), default=10)
    lines = [f"{'metric'.ljust(width)}  value", f"{'-' * width}  ------"]
    lines += [f"{label.ljust(width)}  {_fmt(value)}" for label, value in rows]
    return "\n".join(lines)
