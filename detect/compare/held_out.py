"""One trained model on the held-out test split: predictions, speed, metrics with bootstrap intervals.

    outcome = predict_held_out(loaded, data_dirs, batch_size=8)     HeldOutPredictions (+ timing)
    metrics = held_out_metrics(outcome, task="kermany3")                 {name: ConfidenceInterval}

The test split is the manifest's `test` split: Kermany's own test/ folder, RSNA's held-out
patients (data_prep.splits). Every image goes through the one Predictor (`prepare` + `run`, the
path of `detect eval` and `detect infer`), in batches of `batch_size`; the clock runs around
those calls only (preprocessing, forward pass, mapping back), not around reading the files, so
`infer_ms_per_image` is the model's cost, whatever the disk. The pneumonia decision of an
image is taken at its dataset's operating point stored in the checkpoint: the F1-optimal
threshold on that dataset's val split, chosen during training (detect.evaluation.scoring).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from data_prep.errors import DetectError
from data_prep.manifest import read_manifest
from data_prep.records import KERMANY_SUBTYPES, RSNA_CLASSES, BadFile, ImageRecord
from detect.data.files import LoadedImage, iter_loaded_batches
from detect.evaluation.metrics import binary_classification_metrics, multiclass_metrics
from detect.evaluation.scoring import threshold_of
from detect.evaluation.stats import ConfidenceInterval, bootstrap_metrics
from detect.inference.predictor import LoadedModel

BINARY_METRICS: tuple[str, ...] = ("accuracy", "precision", "sensitivity", "specificity", "f1", "roc_auc", "pr_auc")
THREE_CLASS_TASKS: dict[str, tuple[str, ...]] = {"kermany3": KERMANY_SUBTYPES, "rsna3": RSNA_CLASSES}


@dataclass
class HeldOutPredictions:
    """The readable test images of one model, aligned: ids, labels, probabilities, decisions."""

    image_ids: list[str]
    datasets: list[str]
    y_true: np.ndarray  # int64 [N] pneumonia
    y_prob: np.ndarray  # float64 [N] pneumonia probability
    decided: np.ndarray  # int64 [N]: y_prob >= the image's dataset threshold
    thresholds: dict[str, float]  # {dataset: threshold used}
    class_true: np.ndarray  # int64 [N] 3-class labels (-1 where the image has none)
    class_probs: np.ndarray  # float64 [N, 3]
    predict_seconds: float
    failures: list[BadFile] = field(default_factory=list)

    @property
    def n_images(self) -> int:
        return int(self.y_true.shape[0])

    @property
    def infer_ms_per_image(self) -> float:
        return 1000.0 * self.predict_seconds / self.n_images if self.n_images else math.nan

    @property
    def infer_images_per_s(self) -> float:
        return self.n_images / self.predict_seconds if self.predict_seconds > 0 else math.nan

    def to_json(self) -> dict[str, Any]:
        return {
            "image_ids": self.image_ids,
            "datasets": self.datasets,
            "y_true": self.y_true.tolist(),
            "y_prob": self.y_prob.tolist(),
            "decided": self.decided.tolist(),
            "thresholds": self.thresholds,
            "class_true": self.class_true.tolist(),
            "class_probs": self.class_probs.tolist(),
            "predict_seconds": self.predict_seconds,
            "failures": [{"path": f.path, "reason": f.reason} for f in self.failures],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HeldOutPredictions:
        return cls(
            image_ids=list(data["image_ids"]),
            datasets=list(data["datasets"]),
            y_true=np.asarray(data["y_true"], dtype=np.int64),
            y_prob=np.asarray(data["y_prob"], dtype=np.float64),
            decided=np.asarray(data["decided"], dtype=np.int64),
            thresholds=dict(data["thresholds"]),
            class_true=np.asarray(data["class_true"], dtype=np.int64),
            class_probs=np.asarray(data["class_probs"], dtype=np.float64).reshape(-1, 3),
            predict_seconds=float(data["predict_seconds"]),
            failures=[BadFile(f["path"], f["reason"]) for f in data.get("failures", [])],
        )


def class_index(record: ImageRecord, task: str) -> int:
    """The record's label in the 3-class task (-1 when it has none: a record of the other dataset)."""
    if task == "kermany3" and record.subtype in KERMANY_SUBTYPES:
        return KERMANY_SUBTYPES.index(record.subtype)
    if task == "rsna3" and record.rsna_class in RSNA_CLASSES:
        return RSNA_CLASSES.index(record.rsna_class)
    return -1


def held_out_records(data_dirs: Sequence[str | Path]) -> list[tuple[Path, ImageRecord]]:
    """(file, record) of every test image of the prepared datasets, in manifest order."""
    out = []
    for data_dir in data_dirs:
        prepared = read_manifest(data_dir)
        records = prepared.split_records("test")
        if not records:
            raise DetectError(f"{prepared.prepared_dir}: the test split of this {prepared.dataset} dataset is empty")
        out += [(prepared.data_root / r.path, r) for r in records]
    return out


def predict_held_out(
    loaded: LoadedModel, data_dirs: Sequence[str | Path], *, task: str, batch_size: int, workers: int = 2
) -> HeldOutPredictions:
    """Predict every test image through `loaded.predictor`, timing the predictor calls only."""
    items = held_out_records(data_dirs)
    by_path = {str(path): record for path, record in items}
    records: list[ImageRecord] = []
    raws = []
    failures: list[BadFile] = []
    seconds = 0.0
    warmed = False
    for batch in iter_loaded_batches(
        [path for path, _ in items], batch_size, workers, max_pixels=loaded.config.data.max_image_pixels
    ):
        images = [item for item in batch if isinstance(item, LoadedImage)]
        failures += [item for item in batch if isinstance(item, BadFile)]
        if not images:
            continue
        predictor = loaded.predictor
        if not warmed:  # the first call pays for lazy initialisation (cuDNN, allocator): not the model's cost
            predictor.run([predictor.prepare(image.pixels) for image in images])
            warmed = True
        start = time.perf_counter()
        predicted = predictor.run([predictor.prepare(image.pixels) for image in images])
        seconds += time.perf_counter() - start
        records += [by_path[image.source] for image in images]
        raws += predicted
    if not records:
        raise DetectError(f"none of the {len(items)} test images could be read")
    points = loaded.operating_points
    y_prob = np.array([raw.pneumonia_probability for raw in raws], dtype=np.float64)
    thresholds = {r.dataset: threshold_of(r, points) for r in records}
    labels = THREE_CLASS_TASKS.get(task)
    class_probs = np.stack(
        [raw.subtype_probabilities if task == "kermany3" else raw.class_probabilities for raw in raws]
    )
    return HeldOutPredictions(
        image_ids=[r.image_id for r in records],
        datasets=[r.dataset for r in records],
        y_true=np.array([int(r.target) for r in records], dtype=np.int64),
        y_prob=y_prob,
        decided=np.array([int(p >= thresholds[r.dataset]) for r, p in zip(records, y_prob)], dtype=np.int64),
        thresholds=thresholds,
        class_true=np.array([class_index(r, task) if labels else -1 for r in records], dtype=np.int64),
        class_probs=class_probs.astype(np.float64),
        predict_seconds=seconds,
        failures=failures,
    )


def metrics_at(predictions: HeldOutPredictions, index: np.ndarray, task: str) -> dict[str, float]:
    """The test metrics of the images at `index` (a bootstrap resample, or all of them).

    Binary: each image decided at its own dataset's threshold, the 0/1 decisions scored as in
    validation (detect.evaluation.scoring.validation_metrics); ROC-AUC and PR-AUC from the
    probabilities. 3-class tasks add accuracy_3class, macro_f1, macro_roc_auc and per class
    f1_<class>, sensitivity_<class>, precision_<class>.
    """
    y_true, decided, y_prob = predictions.y_true[index], predictions.decided[index], predictions.y_prob[index]
    at_threshold = binary_classification_metrics(y_true, decided, 0.5)
    ranked = binary_classification_metrics(y_true, y_prob, 0.5)
    out = {key: float(at_threshold[key]) for key in BINARY_METRICS[:5]}
    out["roc_auc"], out["pr_auc"] = float(ranked["roc_auc"]), float(ranked["pr_auc"])
    names = THREE_CLASS_TASKS.get(task)
    if names:
        labelled = predictions.class_true[index] >= 0
        if labelled.any():
            multi = multiclass_metrics(
                predictions.class_true[index][labelled], predictions.class_probs[index][labelled], names
            )
            out.update(
                accuracy_3class=multi["accuracy"], macro_f1=multi["macro_f1"], macro_roc_auc=multi["macro_roc_auc"]
            )
            for name, values in multi["per_class"].items():
                for key in ("f1", "sensitivity", "precision"):
                    out[f"{key}_{metric_suffix(name)}"] = float(values[key])
    return out


def metric_suffix(class_name: str) -> str:
    """A class name as a column name: 'No Lung Opacity / Not Normal' -> 'no_lung_opacity_not_normal'."""
    return "_".join("".join(c if c.isalnum() else " " for c in class_name.lower()).split())


def held_out_metrics(
    predictions: HeldOutPredictions, task: str, *, n_resamples: int = 1000, seed: int = 0
) -> dict[str, ConfidenceInterval]:
    """Every test metric with its seeded bootstrap percentile 95% interval (detect.evaluation.stats)."""
    return bootstrap_metrics(
        lambda index: metrics_at(predictions, index, task), predictions.n_images, n_resamples=n_resamples, seed=seed
    )


def confusion_matrix(predictions: HeldOutPredictions) -> np.ndarray:
    """[[tn, fp], [fn, tp]] of the pneumonia decisions."""
    return np.asarray(binary_classification_metrics(predictions.y_true, predictions.decided, 0.5)["confusion_matrix"])


def count_parameters(model: Any) -> int:
    """Parameters of the model as built (trainable and frozen)."""
    return int(sum(p.numel() for p in model.parameters()))
