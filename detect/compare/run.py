"""`detect compare`: train every model on the same splits, seed and budget, test each, report.

    outcome = run_compare(["resnet18_fpn", "basic_cnn"], "configs/demo.yaml", ["data/kermany"], "compare",
                          epochs=3)

Per model (detect.compare.plan): train into OUT/runs/<model> (detect.training.trainer.run_training),
load its best checkpoint into the one Predictor (detect.inference.predictor.load_predictor), predict
the test split and take the metrics with bootstrap intervals (detect.compare.held_out), then
write OUT/runs/<model>/compare_result.json atomically: the finished marker. Then the paired
tests of the best model against each other one (DeLong, McNemar; detect.evaluation.stats) and
OUT/compare.csv, OUT/report.md and the plots (detect.compare.report).

Resumable: a model whose marker holds the same config is not trained or tested again; a model
with a last.pt but no marker (killed during training or testing) continues through
run_training's resume, from its last finished epoch, not from scratch.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from data_prep.atomic import check_writable, write_text_atomic
from data_prep.errors import DetectError
from detect.compare.held_out import HeldOutPredictions, count_parameters, held_out_metrics, predict_held_out
from detect.compare.plan import ModelPlan, model_kind, plan_compare
from detect.compare.report import write_compare_outputs
from detect.config import Config, config_to_dict
from detect.evaluation.report import to_json_safe
from detect.evaluation.stats import ConfidenceInterval, DeLongResult, McNemarResult, delong_test, mcnemar_test
from detect.inference.predictor import load_predictor
from detect.tracking import log_outputs, parent_run
from detect.training.data_setup import check_data_dirs
from detect.training.trainer import run_training

RESULT_VERSION = 1


@dataclass
class ModelResult:
    """One model's line of the comparison: training cost, speed, test predictions and metrics."""

    model: str
    kind: str
    task: str
    parameters: int
    epochs_run: int
    best_epoch: int
    stopped_on_time: bool
    train_seconds: float
    train_images_per_s: float
    predictions: HeldOutPredictions
    metrics: dict[str, ConfidenceInterval]
    config: dict[str, Any] = field(repr=False, default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": RESULT_VERSION,
            "model": self.model,
            "kind": self.kind,
            "task": self.task,
            "parameters": self.parameters,
            "epochs_run": self.epochs_run,
            "best_epoch": self.best_epoch,
            "stopped_on_time": self.stopped_on_time,
            "train_seconds": self.train_seconds,
            "train_images_per_s": self.train_images_per_s,
            "config": self.config,
            "metrics": {k: vars(v) for k, v in self.metrics.items()},
            "predictions": self.predictions.to_json(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelResult:
        return cls(
            model=data["model"],
            kind=data["kind"],
            task=data["task"],
            parameters=int(data["parameters"]),
            epochs_run=int(data["epochs_run"]),
            best_epoch=int(data["best_epoch"]),
            stopped_on_time=bool(data["stopped_on_time"]),
            train_seconds=float(data["train_seconds"]),
            train_images_per_s=float(data["train_images_per_s"]),
            predictions=HeldOutPredictions.from_json(data["predictions"]),
            metrics={
                k: ConfidenceInterval(**{f: math.nan if x is None else x for f, x in v.items()})
                for k, v in data["metrics"].items()
            },
            config=data["config"],
        )


@dataclass(frozen=True)
class PairedComparison:
    """The best model against one other, on the test images both could read."""

    best: str
    other: str
    n_images: int
    delong: DeLongResult
    mcnemar: McNemarResult


@dataclass
class CompareOutcome:
    results: list[ModelResult]
    best_model: str | None
    comparisons: list[PairedComparison]
    paths: dict[str, Path]
    trained: list[str]  # models trained (or resumed) by this call; the others were finished already


def read_finished(plan: ModelPlan) -> ModelResult | None:
    """The model's finished result when its marker exists and holds the planned config, else None."""
    if not plan.result_path.is_file():
        return None
    try:
        data = json.loads(plan.result_path.read_text(encoding="utf-8"))
        result = ModelResult.from_json(data)
    except (OSError, ValueError, KeyError, TypeError):
        return None  # a damaged marker: the model is tested again (its training resumes, finished)
    return result if data.get("version") == RESULT_VERSION and result.config == config_to_dict(plan.config) else None


def train_and_test(
    plan: ModelPlan, data_dirs: Sequence[str | Path], *, task: str, n_resamples: int, log: Callable[[str], None]
) -> ModelResult:
    """Train (or resume) one model, test its best checkpoint, write the finished marker."""
    cfg: Config = plan.config
    resume = (plan.run_dir / "checkpoints" / "last.pt").is_file()
    log(f"[{plan.model}] {'resuming' if resume else 'training'} in {plan.run_dir}")
    trained = run_training(
        cfg, data_dirs, out_dir=plan.run_dir, resume=resume, log=lambda line: log(f"[{plan.model}] {line}")
    )
    loaded = load_predictor(trained.best_checkpoint, device=cfg.train.device)
    predictions = predict_held_out(
        loaded, data_dirs, task=task, batch_size=cfg.train.batch_size, workers=max(1, cfg.data.num_workers)
    )
    for failure in predictions.failures:
        log(f"[{plan.model}] unreadable test image, left out: {failure.path}: {failure.reason}")
    result = ModelResult(
        model=plan.model,
        kind=model_kind(plan.model_name),
        task=cfg.task,
        parameters=count_parameters(loaded.predictor.model),
        epochs_run=trained.epochs_completed,
        best_epoch=trained.best_epoch,
        stopped_on_time=trained.stopped_on_time,
        train_seconds=trained.train_seconds,
        train_images_per_s=trained.images_per_second,
        predictions=predictions,
        metrics=held_out_metrics(predictions, task, n_resamples=n_resamples, seed=cfg.seed),
        config=config_to_dict(cfg),
    )
    write_text_atomic(plan.result_path, json.dumps(to_json_safe(result.to_json()), allow_nan=False))
    log(
        f"[{plan.model}] tested on {predictions.n_images} images: F1 {result.metrics['f1'].format()}, "
        f"ROC-AUC {result.metrics['roc_auc'].format()}, {predictions.infer_ms_per_image:.1f} ms/image"
    )
    return result


def best_model(results: Sequence[ModelResult]) -> ModelResult | None:
    """The model with the highest test ROC-AUC (the first on a tie; None when none is defined)."""
    scored = [r for r in results if math.isfinite(r.metrics["roc_auc"].estimate)]
    return max(scored, key=lambda r: r.metrics["roc_auc"].estimate) if scored else None


def paired_comparison(best: ModelResult, other: ModelResult) -> PairedComparison:
    """DeLong on the probabilities and McNemar on the decisions, over the images both models read."""
    position = {image_id: i for i, image_id in enumerate(other.predictions.image_ids)}
    pairs = [(i, position[image_id]) for i, image_id in enumerate(best.predictions.image_ids) if image_id in position]
    a = np.array([i for i, _ in pairs], dtype=np.int64)
    b = np.array([j for _, j in pairs], dtype=np.int64)
    truth = best.predictions.y_true[a]
    correct_best = best.predictions.decided[a] == truth
    correct_other = other.predictions.decided[b] == other.predictions.y_true[b]
    return PairedComparison(
        best.model,
        other.model,
        len(pairs),
        delong_test(truth, best.predictions.y_prob[a], other.predictions.y_prob[b]),
        mcnemar_test(correct_best, correct_other),
    )


def run_compare(
    models: Sequence[str],
    config: Config | str | Path | None,
    data_dirs: Sequence[str | Path],
    out_dir: str | Path = "compare",
    *,
    overrides: Sequence[str] = (),
    epochs: int | None = None,
    minutes_per_model: float | None = None,
    n_resamples: int = 1000,
    log: Callable[[str], None] = print,
) -> CompareOutcome:
    """See the module docstring. Every argument is checked before the first model trains."""
    check_data_dirs(data_dirs)
    plan = plan_compare(
        models,
        config,
        out_dir,
        data_dirs=data_dirs,
        overrides=overrides,
        epochs=epochs,
        minutes_per_model=minutes_per_model,
    )
    plans, task = plan.models, plan.task
    if len(plans) < 2:
        raise DetectError("--models: name at least two models to compare")
    check_writable(out_dir, expect="folder", what="--out")
    results, trained = [], []
    with parent_run(out_dir, plans[0].config, "compare") as parent:  # MLflow: each model a nested run
        for plan in plans:
            finished = read_finished(plan)
            if finished is not None:
                log(f"[{plan.model}] finished already ({plan.result_path}): not trained again")
                results.append(finished)
                continue
            results.append(train_and_test(plan, data_dirs, task=task, n_resamples=n_resamples, log=log))
            trained.append(plan.model)
        best = best_model(results)
        comparisons = [paired_comparison(best, r) for r in results if best is not None and r is not best]
        paths = write_compare_outputs(
            Path(out_dir),
            results,
            best.model if best else None,
            comparisons,
            task=task,
            data_dirs=[str(d) for d in data_dirs],
        )
        log_outputs(parent, paths)
    return CompareOutcome(results, best.model if best else None, comparisons, paths, trained)
