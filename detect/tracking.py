"""Recording a training run in MLflow (config key train.loggers: [tensorboard, mlflow]).

    tracker = MlflowTracker.open(run_dir, cfg, resumed=state is not None)  # None unless 'mlflow' in train.loggers
    tracker.add_scalar("train/loss", 0.71, global_step)                   # per step, as TensorBoard gets it
    tracker.log_epoch({"val_map50": 0.3, ...}, epoch)                      # per epoch: metrics.csv's row
    tracker.log_best(best_pt, operating_points)                            # best.pt + its operating points
    tracker.close("FINISHED")

MLflow is an optional extra (`pip install 'detect[mlflow]'`, mlflow-skinny); asking for it
without it installed is a ConfigError. Where runs go is MLflow's own setting: the
MLFLOW_TRACKING_URI environment variable (a server, a database, a file: store), else MLflow's
default; the experiment is MLFLOW_EXPERIMENT_NAME, else 'detect'.

What a run holds: the resolved config as params ('train.lr', 'model.name', ...), the per-step
train/loss and train/lr, every metrics.csv column per epoch as epoch/<column>, and as
artifacts config.yaml, metrics.csv, bad_files.csv when there is one, and model/best.pt with
model/operating_points.json (the pneumonia thresholds `detect infer` applies; also the run's
tags operating_point.<dataset>). `detect eval` of a checkpoint whose run is tracked adds its
report, metrics.json and plots under eval/<split>/ (`log_eval_to_run`).

The run id is kept in RUN_DIR/mlflow_run.json and in every checkpoint (extra['mlflow_run_id']),
so `detect train --resume` continues the same MLflow run (its params are not logged again:
train.epochs may have grown). When an MLflow run is already active in the process, the training
run is its child: `detect compare` and `detect sweep` open one parent run for the whole
comparison (`parent_run`), so each model or combination is a nested run.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from data_prep.atomic import write_text_atomic
from data_prep.errors import ConfigError
from detect.config import Config, config_to_dict

RUN_ID_FILE = "mlflow_run.json"
DEFAULT_EXPERIMENT = "detect"
_PARAMS_PER_BATCH = 100  # MLflow's limit of params in one log_batch


def _mlflow() -> Any:
    try:
        import mlflow
    except ImportError:
        raise ConfigError(
            "config key 'train.loggers' includes mlflow, which is not installed: "
            "pip install 'detect[mlflow]' (or mlflow-skinny)"
        ) from None
    return mlflow


def wants_mlflow(cfg: Config) -> bool:
    return "mlflow" in cfg.train.loggers


def flat_params(cfg: Config) -> dict[str, str]:
    """The resolved config as MLflow params: {'train.lr': '0.02', 'train.step_epochs': '[8, 11]', ...}."""
    params: dict[str, str] = {}

    def walk(value: Any, prefix: str) -> None:
        if isinstance(value, Mapping):
            for key, sub in value.items():
                walk(sub, f"{prefix}.{key}" if prefix else str(key))
        else:
            params[prefix] = json.dumps(list(value)) if isinstance(value, (list, tuple)) else str(value)

    walk(config_to_dict(cfg), "")
    return params


def read_run_id(run_dir: str | Path) -> str | None:
    """The MLflow run id recorded in `run_dir`, or None."""
    path = Path(run_dir) / RUN_ID_FILE
    try:
        return str(json.loads(path.read_text(encoding="utf-8"))["run_id"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _start(
    run_dir: Path, run_name: str, tags: Mapping[str, str] | None = None, run_id: str | None = None
) -> tuple[Any, bool]:
    """Start (or continue, when run_dir or `run_id` names one) an MLflow run -> (the run, continued?)."""
    mlflow = _mlflow()
    nested = mlflow.active_run() is not None
    recorded = read_run_id(run_dir)
    run_id = recorded or run_id
    if run_id is not None:
        run, continued = mlflow.start_run(run_id=run_id, nested=nested), True
    else:
        if mlflow.active_run() is None:
            mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT)
        run, continued = mlflow.start_run(run_name=run_name, nested=nested, tags=dict(tags or {})), False
    if recorded is None:
        write_text_atomic(
            Path(run_dir) / RUN_ID_FILE,
            json.dumps(
                {
                    "run_id": run.info.run_id,
                    "experiment_id": run.info.experiment_id,
                    "tracking_uri": mlflow.get_tracking_uri(),
                },
                indent=2,
            )
            + "\n",
        )
    return run, continued


class MlflowTracker:
    """One training run's MLflow run (see the module docstring). Rank 0 alone opens one."""

    def __init__(self, run: Any, run_dir: Path) -> None:
        self.mlflow = _mlflow()
        self.run_id: str = run.info.run_id
        self.run_dir = run_dir

    @classmethod
    def open(cls, run_dir: Path, cfg: Config, *, resumed: bool, run_id: str | None = None) -> MlflowTracker | None:
        """The run's tracker, or None when train.loggers does not include mlflow. `run_id`: the
        run a resumed checkpoint records, used when RUN_DIR/mlflow_run.json is gone."""
        if not wants_mlflow(cfg):
            return None
        run_dir.mkdir(parents=True, exist_ok=True)
        run, continued = _start(run_dir, run_dir.name, tags={"detect.run_dir": str(run_dir.resolve())}, run_id=run_id)
        tracker = cls(run, run_dir)
        if not continued:
            params = flat_params(cfg)
            items = sorted(params.items())
            for start in range(0, len(items), _PARAMS_PER_BATCH):
                tracker.mlflow.log_params(dict(items[start : start + _PARAMS_PER_BATCH]))
        elif resumed:
            tracker.mlflow.set_tag("detect.resumed", "true")
        return tracker

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        """A per-step scalar (TensorBoard's call, so the loop feeds both alike)."""
        if math.isfinite(float(value)):
            self.mlflow.log_metric(tag, float(value), step=int(step))

    def log_epoch(self, row: Mapping[str, Any], epoch: int) -> None:
        """metrics.csv's row of `epoch` as epoch/<column> metrics at step `epoch` (non-finite left out)."""
        metrics = {
            f"epoch/{key}": float(value)
            for key, value in row.items()
            if key != "epoch" and isinstance(value, (int, float)) and math.isfinite(float(value))
        }
        if metrics:
            self.mlflow.log_metrics(metrics, step=int(epoch))

    def log_best(self, best_path: Path, operating_points: Mapping[str, Mapping[str, Any]]) -> None:
        """best.pt and its operating points as the run's model artifacts; the run folder's tables too."""
        if best_path.is_file():
            self.mlflow.log_artifact(str(best_path), artifact_path="model")
        self.mlflow.log_dict(dict(operating_points), "model/operating_points.json")
        for dataset, point in operating_points.items():
            self.mlflow.set_tag(f"operating_point.{dataset}", f"{point.get('threshold')} ({point.get('source')})")
        for name in ("config.yaml", "metrics.csv", "bad_files.csv"):
            if (self.run_dir / name).is_file():
                self.mlflow.log_artifact(str(self.run_dir / name))

    def close(self, status: str = "FINISHED") -> None:
        """End the run ('FINISHED', 'FAILED' or 'KILLED'); a parent run stays active."""
        active = self.mlflow.active_run()
        if active is not None and active.info.run_id == self.run_id:
            self.mlflow.end_run(status=status)


@contextlib.contextmanager
def parent_run(out_dir: str | Path, cfg: Config, kind: str) -> Iterator[Any]:
    """An MLflow run for a whole `detect compare` / `detect sweep` (`kind`) in `out_dir`, when
    its config's train.loggers include mlflow (else nothing): the training runs inside it are
    its nested runs. A resumed comparison continues its run (OUT/mlflow_run.json)."""
    if not wants_mlflow(cfg):
        yield None
        return
    mlflow = _mlflow()
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    run, _ = _start(Path(out_dir), f"{kind} {Path(out_dir).name}", tags={"detect.kind": kind})
    status = "FAILED"
    try:
        yield run
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        active = mlflow.active_run()
        while active is not None and active.info.run_id != run.info.run_id:  # a child left open by an error
            mlflow.end_run(status=status)
            active = mlflow.active_run()
        if active is not None:
            mlflow.end_run(status=status)


def log_outputs(run: Any, paths: Mapping[str, Path], artifact_path: str | None = None) -> None:
    """Log the files of `paths` (a report's outputs) as artifacts of the active run `run` (None: nothing)."""
    if run is None:
        return
    mlflow = _mlflow()
    for path in paths.values():
        if Path(path).is_file():
            mlflow.log_artifact(str(path), artifact_path=artifact_path)


def log_eval_to_run(
    checkpoint_path: Path, cfg: Config, paths: Mapping[str, Path], split: str, metrics: Mapping[str, Any]
) -> str | None:
    """Add `detect eval`'s files (and its headline numbers as eval/<split>/... metrics) to the MLflow
    run of the checkpoint's training, when that run is tracked; returns its id, else None."""
    if not wants_mlflow(cfg):
        return None
    run_dir = Path(checkpoint_path).resolve().parent.parent  # RUN_DIR/checkpoints/best.pt
    run_id = read_run_id(run_dir)
    if run_id is None:
        return None
    mlflow = _mlflow()
    with mlflow.start_run(run_id=run_id, nested=mlflow.active_run() is not None):
        for path in paths.values():
            if Path(path).is_file():
                mlflow.log_artifact(str(path), artifact_path=f"eval/{split}")
        numbers = {}
        detection = metrics.get("detection")
        if isinstance(detection, Mapping):
            numbers.update(
                {f"eval/{split}/{k}": v for k, v in detection.items() if k in ("map", "map50", "rsna_score")}
            )
        for section in ("classification", "kermany"):
            block = (metrics.get(section) or {}).get("pneumonia") if isinstance(metrics.get(section), Mapping) else None
            if isinstance(block, Mapping):
                numbers.update(
                    {
                        f"eval/{split}/{section}_{k}": block.get(k)
                        for k in ("sensitivity", "specificity", "f1", "roc_auc")
                    }
                )
        finite = {k: float(v) for k, v in numbers.items() if isinstance(v, (int, float)) and math.isfinite(float(v))}
        if finite:
            mlflow.log_metrics(finite)
    return run_id
