"""`detect eval CHECKPOINT --data DIR`: exact metrics on held-out patients, as metrics.json +
report.md + plots.

For each dataset (RSNA and/or Kermany; prepared on the fly with the checkpoint's split
settings when `detect prepare` has not been run) the model predicts the held-out split
(`split`, default 'test': patients never seen in training or threshold selection) through the
one predictor and the post-processing of `detect infer`, and is scored at the operating point
stored in the checkpoint for that dataset: the pneumonia threshold training chose on that
dataset's val split, the very one `detect infer` applies. Only when the checkpoint has none for a
dataset (it was not trained on it, or predates per-dataset thresholds) is it chosen here, on
that dataset's val split, and the report says so.

  - RSNA detection: the competition score `rsna_score` on the post-processed boxes (gating,
    score threshold, shrinking: what `detect infer` writes); COCO mAP@[.5:.95], mAP@.5, mAP@.75
    (pycocotools) on the raw detector boxes (mAP ranks every box: no threshold); and
    `rsna_score_no_postprocess` (raw boxes >= score_thresh) to show what post-processing buys.
  - RSNA image level: Normal/Pneumonia (target = Lung Opacity) from the pneumonia probability,
    and the 3 RSNA classes from the class probabilities (argmax).
  - Kermany: pneumonia vs normal, and bacterial vs viral on the pneumonia images (positive =
    viral, score P(viral) / (P(bacterial) + P(viral)), threshold F1-optimal on the val pneumonia
    images).
  - A folder of one's own images with a COCO JSON or label CSV (dataset 'custom', prepared on
    the fly into <out>/prepared/ when it has no manifest): scored as RSNA is (its labels carry
    the RSNA classes), with 95% bootstrap intervals of the pneumonia metrics; its threshold is
    the checkpoint's custom one, else its rsna one (a note says so), else chosen on val. No
    Kaggle CSV (its patient ids do not name one image each). It is scored alone: RSNA and a
    custom folder in one evaluation would share the report's sections.
With `--gate-with CLS` the pair is scored: the gate's pneumonia probability replaces the
detector's own before post-processing (detect.inference.gating), so every pneumonia block and
the RSNA score with gating measure the pair, at the GATE's stored operating point per dataset;
mAP (raw boxes) and the 3-class block stay the detector's. metrics.json's `gate_model` names it.
The held-out RSNA predictions are also written as a Kaggle CSV (`<split>_predictions.csv`),
which `detect eval --predictions` reads (detect.evaluation.submission_eval).

A classifier checkpoint (config key `task` other than detection) is scored on its task's
dataset only (another dataset's folder is an error): the pneumonia decision, and the three
classes for kermany3 / rsna3. It draws no boxes, so metrics.json's 'detection' is the sentence
DETECTION_NOT_APPLICABLE says (never a 0 mAP), and no Kaggle CSV is written; blocks a binary
task cannot predict (bacterial vs viral for kermany2, the 3 RSNA classes for rsna2) are left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from data_prep.atomic import check_writable
from data_prep.errors import DetectError
from data_prep.manifest import PreparedDataset, find_prepared, read_manifest
from data_prep.prepare import detect_dataset_kind, leakage_warning, prepare_dataset
from data_prep.records import CUSTOM_DATASET, KERMANY_SUBTYPES, RSNA_CLASSES, BadFile, ImageRecord
from data_prep.tasks import DETECTION_TASK, TASK_DATASET, TASK_DATASETS, record_label
from detect.config import Config
from detect.data.files import LoadedImage, iter_loaded_batches
from detect.evaluation.examples import example_panel, pick_examples
from detect.evaluation.metrics import binary_classification_metrics, multiclass_metrics
from detect.evaluation.report import INTERVALS_KEY, write_eval_report
from detect.evaluation.scoring import (
    choose_operating_point,
    detection_metrics,
    postprocessed_boxes,
    targets_and_probabilities,
)
from detect.evaluation.stats import binary_intervals
from detect.inference.gating import GatedPredictor, load_gate
from detect.inference.predictor import LoadedModel, Predictor, load_predictor
from detect.outputs.submission import SubmissionRow, formula_warnings, write_submission
from detect.predictions import OperatingPoint, PostprocessSettings, RawPrediction
from detect.progress import ProgressLog
from detect.tracking import log_eval_to_run

EVAL_SPLITS: tuple[str, ...] = ("test", "val", "train")
CUSTOM_PREPARED_DIRNAME = "prepared"  # <out>/prepared/<folder name>: where eval prepares a custom folder
DETECTION_NOT_APPLICABLE = "not applicable: the model is a classifier (task {task}) and draws no boxes"


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
    raw: list[RawPrediction]
    failures: list[BadFile]

    def targets_and_probabilities(self) -> tuple[np.ndarray, np.ndarray]:
        return targets_and_probabilities(self.records, self.raw)


def predict_records(
    predictor: Predictor | GatedPredictor,
    data_root: Path,
    records: Sequence[ImageRecord],
    *,
    batch_size: int = 8,
    workers: int = 2,
    progress: bool = False,
    desc: str = "predict",
    log: Callable[[str], None] | None = None,
) -> SplitPredictions:
    """Read each record's ORIGINAL file (data_root / record.path) and predict it with `predictor`.

    Unreadable files are BadFiles (reported, left out of the metrics), as in `detect infer`.
    A bar on a TTY (`progress`); else, with `log`, a line every 500 images or 30 s, as `detect infer` logs.
    """
    files = [data_root / r.path for r in records]
    by_path = {str(f): r for f, r in zip(files, records)}
    out = SplitPredictions(records=[], raw=[], failures=[])
    # Decoded for the model's input size, as the cache and the training loader decode them; a
    # gated pair (two models, two sizes) reads each image whole.
    sized = isinstance(predictor, Predictor)
    batches = iter_loaded_batches(files, batch_size, workers, target_size_px=predictor.image_size_px if sized else None)
    shown = ProgressLog(len(files), log or (lambda _: None), tty=progress, desc=desc) if progress or log else None
    for batch in batches:
        images = [item for item in batch if isinstance(item, LoadedImage)]
        out.failures += [item for item in batch if isinstance(item, BadFile)]
        if shown is not None:
            shown.update(len(batch) - len(images), n=len(batch))
        if isinstance(predictor, Predictor):
            raws = predictor.run([predictor.prepare(i.pixels, i.decoded_from_hw) for i in images])
        else:
            raws = predictor.run([predictor.prepare(i.pixels) for i in images])
        for image, raw in zip(images, raws):
            out.records.append(by_path[image.source])
            out.raw.append(raw)
    if shown is not None:
        shown.close()
    return out


# ---------------------------------------------------------------------------- metric blocks


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


@dataclass
class DatasetSections:
    """What one dataset adds to the report: metrics.json sections, curves, example panels."""

    sections: dict[str, Any]
    curves: dict[str, tuple[np.ndarray, np.ndarray]]
    panels: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


N_BOOTSTRAP = 1000  # resamples of the held-out images behind each binary block's 95% intervals


def with_intervals(
    block: dict[str, Any], y_true: np.ndarray, y_prob: np.ndarray, threshold: float, source: str
) -> dict[str, Any]:
    """A binary metrics block with its threshold's source and bootstrap 95% intervals (seed 0)."""
    block["threshold_source"] = source
    if len(y_true):
        intervals = binary_intervals(y_true, y_prob, threshold, n_resamples=N_BOOTSTRAP, seed=0)
        block[INTERVALS_KEY] = {name: [ci.low, ci.high] for name, ci in intervals.items()}
    return block


def rsna_sections(
    held: SplitPredictions,
    point: OperatingPoint,
    settings: PostprocessSettings,
    image_path: Callable[[ImageRecord], Path],
    csv_path: Path | None,
    task: str = DETECTION_TASK,
) -> DatasetSections:
    """RSNA held-out metrics at `point`: classification (binary + 3 classes), detection, the
    post-processed boxes as a Kaggle CSV at `csv_path` (none when None), and up to N_EXAMPLES
    panels; the pneumonia metrics with their bootstrap 95% intervals.
    A classifier's (`task` rsna2 / rsna3): classification only (see the module docstring)."""
    if task != DETECTION_TASK:
        return _rsna_classifier_sections(held, point, task)
    y_true, y_prob = held.targets_and_probabilities()
    class_index = np.array([RSNA_CLASSES.index(r.rsna_class) for r in held.records], dtype=np.int64)
    class_probs = np.stack([raw.class_probabilities for raw in held.raw])
    pneumonia = with_intervals(
        binary_classification_metrics(y_true, y_prob, point.threshold), y_true, y_prob, point.threshold, point.source
    )
    sections: dict[str, Any] = {
        "classification": {
            "pneumonia": pneumonia,
            "rsna_3class": multiclass_metrics(class_index, class_probs, RSNA_CLASSES),
        }
    }
    final = postprocessed_boxes(held.records, held.raw, {"rsna": point}, settings)
    ground_truth = {r.image_id: r.boxes_xyxy for r in held.records if r.has_box_labels}
    if ground_truth:
        raw_boxes = {r.image_id: (raw.boxes_xyxy, raw.scores) for r, raw in zip(held.records, held.raw)}
        sections["detection"] = {
            **detection_metrics(
                {i: final[i] for i in ground_truth},
                {i: raw_boxes[i] for i in ground_truth},
                ground_truth,
                settings.score_thresh,
            ),
            "map_boxes": "raw detector boxes (no gating, threshold or shrinking)",
            "rsna_score_boxes": "post-processed boxes, as written by detect infer",
        }
    notes = []
    if csv_path is not None:
        rows = [SubmissionRow(r.patient_id, *final[r.image_id]) for r in held.records]
        write_submission(csv_path, rows)
        notes += [f"wrote the held-out post-processed boxes to {csv_path}", *formula_warnings(rows)]
    out = DatasetSections(
        sections, {"RSNA pneumonia" if csv_path is not None else "pneumonia": (y_true, y_prob)}, notes=notes
    )
    by_id = {r.image_id: (r, raw) for r, raw in zip(held.records, held.raw)}
    for image_id in pick_examples(list(by_id), ground_truth, final):
        record, raw = by_id[image_id]
        title = f"{image_id[:13]} p={float(raw.pneumonia_probability):.2f}"
        panel = example_panel(image_path(record), title, record.boxes_xyxy, *final[image_id])
        if panel is not None:
            out.panels.append(panel)
    return out


def _rsna_classifier_sections(held: SplitPredictions, point: OperatingPoint, task: str) -> DatasetSections:
    y_true, y_prob = held.targets_and_probabilities()
    pneumonia = with_intervals(
        binary_classification_metrics(y_true, y_prob, point.threshold), y_true, y_prob, point.threshold, point.source
    )
    classification: dict[str, Any] = {"pneumonia": pneumonia}
    if task == "rsna3":
        class_index = np.array([record_label(r, task) for r in held.records], dtype=np.int64)
        classification["rsna_3class"] = multiclass_metrics(
            class_index, np.stack([raw.class_probabilities for raw in held.raw]), RSNA_CLASSES
        )
    sections = {"classification": classification, "detection": DETECTION_NOT_APPLICABLE.format(task=task)}
    return DatasetSections(
        sections,
        {"RSNA pneumonia": (y_true, y_prob)},
        notes=[f"rsna: mAP and the RSNA score are {DETECTION_NOT_APPLICABLE.format(task=task)}; no Kaggle CSV written"],
    )


def kermany_sections(
    val: SplitPredictions | None, held: SplitPredictions, point: OperatingPoint, task: str = DETECTION_TASK
) -> DatasetSections:
    """Kermany held-out metrics: pneumonia vs normal at `point`, and bacterial vs viral on the
    pneumonia images at its own threshold, F1-optimal on the val pneumonia images. A kermany3
    classifier adds its 3 classes (argmax); a kermany2 one has no bacterial vs viral to score."""
    y_true, y_prob = held.targets_and_probabilities()
    pneumonia = with_intervals(
        binary_classification_metrics(y_true, y_prob, point.threshold), y_true, y_prob, point.threshold, point.source
    )
    out = DatasetSections({"kermany": {"pneumonia": pneumonia}}, {"Kermany pneumonia": (y_true, y_prob)})
    if task == "kermany3":
        subtype_index = np.array([record_label(r, task) for r in held.records], dtype=np.int64)
        out.sections["kermany"]["kermany_3class"] = multiclass_metrics(
            subtype_index, np.stack([raw.subtype_probabilities for raw in held.raw]), KERMANY_SUBTYPES
        )
    if task == "kermany2":
        return out
    bv_truth, bv_score = _bacterial_viral(held)
    if bv_truth.size and val is not None:
        val_truth, val_score = _bacterial_viral(val)
        viral = choose_operating_point(
            "kermany", val_truth, val_score, "val pneumonia images, on P(viral) / (P(bacterial) + P(viral))"
        )
        bacterial_viral = with_intervals(
            binary_classification_metrics(bv_truth, bv_score, viral.threshold),
            bv_truth,
            bv_score,
            viral.threshold,
            viral.source,
        )
        out.sections["kermany"]["bacterial_viral"] = bacterial_viral
        out.curves["Kermany viral vs bacterial"] = (bv_truth, bv_score)
    return out


# ----------------------------------------------------------------------------- data loading


def load_prepared(
    data_dir: str | Path,
    cfg: Config,
    *,
    workers: int = 2,
    out_dir: str | Path | None = None,
    label_map: str | None = None,
    unannotated: str | None = None,
) -> tuple[PreparedDataset, list[str]]:
    """The prepared dataset of `data_dir`, preparing it (no cache) when needed -> (dataset, notes).

    Preparing uses the checkpoint config's split settings (data.val_fraction, test_fraction,
    split_seed), which are those training used, so 'test' holds patients training never saw.
    An existing preparation with other settings is used as it is, with a warning note.
    A folder of one's own images (its annotations.json / labels.csv, read with `label_map` and
    `unannotated`, default the checkpoint config's data.label_map and data.unannotated) is
    prepared into `out_dir`/prepared/<folder name>, so that the data folder
    itself is never written to; its bad files become notes.
    """
    notes: list[str] = []
    path = Path(data_dir)
    if not path.exists():
        raise DetectError(f"{path}: data folder not found")
    found = find_prepared(path)
    if found is None and out_dir is not None and detect_dataset_kind(path) == CUSTOM_DATASET:
        found = Path(out_dir) / CUSTOM_PREPARED_DIRNAME / path.resolve().name
        if find_prepared(found) is None:
            result = prepare_dataset(
                path,
                out_dir=found,
                val_fraction=cfg.data.val_fraction,
                test_fraction=cfg.data.test_fraction,
                seed=cfg.data.split_seed,
                workers=workers,
                label_map=label_map if label_map is not None else cfg.data.label_map,
                unannotated=unannotated if unannotated is not None else (cfg.data.unannotated or None),
            )
            notes.append(
                f"{path}: prepared now into {found} with the checkpoint's split settings "
                f"({len(result.records)} images, {len(result.bad_files)} left out)"
            )
            notes += [f"left out: {b.path}: {b.reason}" for b in result.bad_files]
            if result.own is not None and leakage_warning(result.own):
                notes.append(leakage_warning(result.own).removeprefix("warning: "))
        path = found
    elif found is None:
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


# ---------------------------------------------------------------------------- the evaluation


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
    gate_with: str | Path | None = None,
    label_map: str | None = None,
    unannotated: str | None = None,
    log: Callable[[str], None] | None = None,
) -> EvalOutcome:
    """Evaluate a checkpoint on the held-out `split` of each dataset in `data_dirs` (see module doc).

    `checkpoint=None`: the best checkpoint most recently written under `runs_dir`. `gate_with`:
    score the checkpoint gated by this one (its pneumonia probability and operating points).
    `label_map` / `unannotated`: how a folder of one's own images is read when it is prepared here.
    """
    _check_eval_arguments(split, data_dirs, out_dir)
    loaded = load_predictor(checkpoint, runs_dir=runs_dir, device=device, settings=settings)
    gate = load_gate(gate_with, device=device, settings=settings) if gate_with is not None else None
    outcome = evaluate_loaded_model(
        loaded,
        data_dirs,
        out_dir,
        split=split,
        settings=settings,
        batch_size=batch_size,
        workers=workers,
        progress=progress,
        gate=gate,
        label_map=label_map,
        unannotated=unannotated,
        log=log,
    )
    run_id = log_eval_to_run(loaded.checkpoint_path, loaded.config, outcome.paths, split, outcome.metrics)
    if run_id is not None:
        outcome.notes.append(f"added the report to MLflow run {run_id} (eval/{split}/)")
    return outcome


def _check_eval_arguments(split: str, data_dirs: Sequence[str | Path], out_dir: str | Path) -> None:
    if split not in EVAL_SPLITS:
        raise DetectError(f"split '{split}' is unknown; choose test (default), val or train")
    if not data_dirs:
        raise DetectError("no data given: pass --data DIR (a prepared or raw RSNA / Kermany folder)")
    check_writable(out_dir, expect="folder", what="--out")  # before the model predicts anything


def evaluate_loaded_model(
    loaded: LoadedModel,
    data_dirs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    split: str = "test",
    settings: PostprocessSettings = PostprocessSettings(),
    batch_size: int = 8,
    workers: int = 2,
    progress: bool = False,
    gate: LoadedModel | None = None,
    label_map: str | None = None,
    unannotated: str | None = None,
    log: Callable[[str], None] | None = None,
) -> EvalOutcome:
    """`evaluate_checkpoint` for a model already loaded (its predictor, training config and operating points),
    gated by `gate` when given (its pneumonia probability, its operating points).

    metrics.json's 'operating_points' section lists, per dataset, the pneumonia threshold used
    and where it came from; every binary block also names its own threshold's source.
    """
    _check_eval_arguments(split, data_dirs, out_dir)
    out = Path(out_dir)
    notes: list[str] = []
    if split == "val":
        notes.append("evaluating on 'val', where the thresholds were chosen: the numbers are optimistic")
    failures: list[BadFile] = []
    metrics: dict[str, Any] = {}
    counts: dict[str, int] = {}
    points: dict[str, dict[str, Any]] = {}
    parts: dict[str, DatasetSections] = {}
    task = loaded.config.task
    predictor = GatedPredictor(loaded.predictor, gate.predictor) if gate is not None else loaded.predictor
    decider = gate if gate is not None else loaded  # whose probability decides, and so whose thresholds
    which_checkpoint = "the gate checkpoint" if gate is not None else "the checkpoint"
    if gate is not None:
        notes.append(
            f"gated by {gate.model_info['name']} ({gate.checkpoint_path}): its pneumonia probability "
            "and operating points score the pair; mAP and the RSNA 3-class block are the detector's own"
        )
    for data_dir in data_dirs:
        prepared, prep_notes = load_prepared(
            data_dir, loaded.config, workers=workers, out_dir=out, label_map=label_map, unannotated=unannotated
        )
        notes += prep_notes
        name = prepared.dataset
        if name in parts:
            raise DetectError(f"{data_dir}: a second {name} dataset; pass each dataset once")
        if {name, *parts} >= {"rsna", CUSTOM_DATASET}:
            raise DetectError(
                f"{data_dir}: RSNA and a folder of your own images share the report's sections; "
                "evaluate them in two runs"
            )
        if task != DETECTION_TASK and name not in TASK_DATASETS[task]:
            raise DetectError(
                f"--data {data_dir}: a {name} dataset, but the checkpoint is a {task} classifier, "
                f"which reads {TASK_DATASET[task]} images only"
            )
        held_records = prepared.split_records(split)
        if not held_records:
            raise DetectError(f"{prepared.prepared_dir}: the '{split}' split of this {name} dataset is empty")

        def predict(records: list[ImageRecord], which: str) -> SplitPredictions:
            return predict_records(
                predictor,
                prepared.data_root,
                records,
                batch_size=batch_size,
                workers=workers,
                progress=progress,
                desc=f"eval {name} {which}",
                log=log,
            )

        point = decider.operating_points.get(name) or decider.operating_points.get("any")
        if point is None and name == CUSTOM_DATASET and "rsna" in decider.operating_points:
            point = decider.operating_points["rsna"]
            notes.append(
                f"{name}: {which_checkpoint} stores no threshold for it; its rsna one is used ({point.source})"
            )
        # val is predicted only where a threshold is still to be chosen on it: no stored point,
        # or Kermany's bacterial-vs-viral threshold
        val = (
            predict(prepared.split_records("val"), "val")
            if split == "val" or point is None or name == "kermany"
            else None
        )
        held = val if split == "val" and val is not None else predict(held_records, split)
        new_failures = (val.failures if val is not None else []) + ([] if held is val else held.failures)
        failures += new_failures
        if not held.records:
            raise DetectError(
                f"{prepared.prepared_dir}: none of the {len(held_records)} '{split}' images could be read"
            )
        if point is None:
            assert val is not None
            point = choose_operating_point(
                name, *val.targets_and_probabilities(), f"val at evaluation ({which_checkpoint} stores none for it)"
            )
            notes.append(f"{name}: {which_checkpoint} stores no decision threshold for it; {point.source}")
        counts.update(
            {
                f"{name}_{split}_images": len(held.records),
                f"{name}_{split}_pneumonia": int(held.targets_and_probabilities()[0].sum()),
                f"{name}_unreadable": len(new_failures),
            }
        )
        if name == "rsna":
            part = rsna_sections(held, point, settings, prepared.image_path, out / f"{split}_predictions.csv", task)
        elif name == CUSTOM_DATASET:
            part = rsna_sections(held, point, settings, prepared.image_path, None, task)
        else:
            part = kermany_sections(val, held, point, task)
        points[name] = {**point.to_dict(), "applied_to": f"{name} {split}"}
        parts[name] = part
        metrics.update(part.sections)
        notes += part.notes

    metrics["operating_points"] = points
    metrics["counts"] = counts
    metrics["settings"] = settings.to_dict()
    metrics["model"] = loaded.model_info
    metrics["gate_model"] = gate.model_info if gate is not None else None
    metrics["split"] = split
    notes += [f"unreadable, left out: {f.path}: {f.reason}" for f in failures]
    metrics["notes"] = list(notes)
    curves = {k: v for part in parts.values() for k, v in part.curves.items()}
    panels = [panel for part in parts.values() for panel in part.panels]
    title = f"detect eval: {', '.join(sorted(parts))} '{split}' split"
    paths = write_eval_report(out, metrics, curves=curves, image_panels=panels, title=title)
    return EvalOutcome(metrics=metrics, paths=paths, notes=notes, failures=failures)
