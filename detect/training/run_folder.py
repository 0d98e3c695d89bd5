"""The run folder: what rank 0 writes beside the checkpoints, and what --resume checks and repairs.

    RUN_DIR/config.yaml      the resolved config (detect.config.save_config)
    RUN_DIR/metrics.csv      one row per epoch: losses, val_* metrics (val_csv_keys(task)), time, speed
    RUN_DIR/tensorboard/     the same scalars, val PR / ROC curves and a grid of val predictions per
                             evaluation, when tensorboard is installed and in train.loggers
    RUN_DIR/mlflow_run.json  the MLflow run's id, when train.loggers has mlflow (detect.tracking)
    RUN_DIR/checkpoints/     last.pt every epoch, best.pt on an improvement (detect.models.checkpoint)

Consistent after a kill at any instant. Every file is replaced atomically (data_prep.atomic), and
an epoch ends in this order:

    1. metrics.csv gains the epoch's row (the whole file rewritten, so never half a row);
    2. last.pt is written; it holds the run's own copy of every metrics.csv row so far
       (extra['metrics_history']), the best epoch's number (best_epoch) and metrics;
    3. best.pt becomes a copy of last.pt when the epoch improved train.monitor.

last.pt is the truth; on resume (`RunWriter` with the checkpoint) the rest is made to agree with it:
metrics.csv is rewritten from last.pt's history (a row written in step 1 for an epoch whose
last.pt never came is dropped, and the epoch runs again), best.pt is restored from last.pt when
a kill fell between steps 2 and 3 (last.pt's epoch is its best_epoch but best.pt holds another
epoch or is missing), and the temporary files of a write the kill interrupted are removed.
"""

from __future__ import annotations

import csv
import io
import math
import numbers
from pathlib import Path
from typing import Any, Callable

from data_prep.atomic import copy_file_atomic, remove_stale_temps, write_text_atomic
from data_prep.errors import CheckpointError, ConfigError, DetectError
from data_prep.tasks import DETECTION_TASK, TASK_DATASET, num_outputs
from detect.config import Config, config_to_dict, save_config
from detect.distributed import DistInfo, barrier
from detect.models.checkpoint import load_checkpoint
from detect.tracking import MlflowTracker
from detect.training.engine import EpochStats
from detect.training.val_visuals import log_validation_visuals

# Config keys that may differ on --resume: they change how a run executes, not what it computes.
# train.max_minutes is a budget, like train.epochs: a resume may grant more time
RESUME_MUTABLE_KEYS: tuple[str, ...] = (
    "train.device",
    "data.num_workers",
    "train.log_every_steps",
    "train.max_minutes",
    "train.loggers",
)
# Validation metrics written to metrics.csv (prefixed val_), in this order.
VAL_CSV_KEYS: tuple[str, ...] = (
    "map50",
    "map",
    "map75",
    "rsna_score",
    "f1",
    "roc_auc",
    "accuracy",
    "sensitivity",
    "specificity",
    "threshold_rsna",
    "threshold_kermany",
    "loss",
)


def val_csv_keys(task: str) -> tuple[str, ...]:
    """The val_* columns of a task's metrics.csv: VAL_CSV_KEYS for detection; a classifier's have
    no box metrics (it draws no boxes: absent, not 0), macro_f1 for the three-class tasks, and
    the threshold of its one dataset."""
    if task == DETECTION_TASK:
        return VAL_CSV_KEYS
    three_class = ("macro_f1",) if num_outputs(task) > 1 else ()
    return (
        "f1",
        "roc_auc",
        "accuracy",
        *three_class,
        "sensitivity",
        "specificity",
        f"threshold_{TASK_DATASET[task]}",
        "loss",
    )


class RunFolderExistsError(DetectError):
    """The run folder already holds a trained run and neither --resume nor a new --out was given."""


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in d.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def check_resume_config(old: Config, new: Config, checkpoint_path: Path) -> None:
    """A ConfigError naming every key where `new` differs from the checkpoint's config, except
    train.epochs growing and the RESUME_MUTABLE_KEYS (they do not change what is computed)."""
    old_flat, new_flat = _flatten(config_to_dict(old)), _flatten(config_to_dict(new))
    differing = []
    for key in sorted(set(old_flat) | set(new_flat)):
        before, after = old_flat.get(key), new_flat.get(key)
        if before == after or key in RESUME_MUTABLE_KEYS:
            continue
        if key == "train.epochs" and after >= before:
            continue
        differing.append(f"{key} ({before!r} -> {after!r})")
    if differing:
        raise ConfigError(
            f"--resume: the config differs from {checkpoint_path} at {', '.join(differing)}; resume with the "
            "run's own config.yaml (train.epochs may grow) or start a new run with --out"
        )


class MetricsCsv:
    """RUN_DIR/metrics.csv: one row per epoch, the header fixed by the first row. Each append
    rewrites the whole (small) file atomically, so the file always ends with a complete row.

    `rows`: what the file must hold now (a resumed run's history; [] for a new run, which
    removes a file left over from an earlier attempt)."""

    def __init__(self, path: Path, rows: list[dict[str, Any]]) -> None:
        self.path = path
        self.rows = list(rows)
        self.fieldnames: list[str] = list(self.rows[0]) if self.rows else []
        if self.rows:
            self._write_all()
        elif path.exists():
            path.unlink()

    def _write_all(self) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.fieldnames, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: _csv_value(row.get(k)) for k in self.fieldnames} for row in self.rows)
        write_text_atomic(self.path, buffer.getvalue())

    def append(self, row: dict[str, Any]) -> None:
        if not self.fieldnames:
            self.fieldnames = list(row)
        self.rows.append(row)
        self._write_all()


def _rows_before(path: Path, epoch: int) -> list[dict[str, Any]]:
    """The rows of an existing metrics.csv up to `epoch`: the fallback for a checkpoint written
    before last.pt held its own history."""
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r.get("epoch", "").isdigit() and int(r["epoch"]) <= epoch]
    return [{key: _parse_cell(text) for key, text in row.items()} for row in rows]


def _parse_cell(text: str | None) -> int | float | str | None:
    """A metrics.csv cell back to the value `_csv_value` wrote: '' -> None, '3' -> 3, '0.25' -> 0.25."""
    if not text:
        return None
    for parse in (int, float):
        try:
            return parse(text)
        except ValueError:
            pass
    return text


def resumed_metrics_rows(path: Path, state: dict[str, Any]) -> list[dict[str, Any]]:
    """metrics.csv's rows for a run resumed from `state` (its last.pt): last.pt's own history
    (extra['metrics_history']) when it has one, else the existing file cut after its epoch."""
    history = (state.get("extra") or {}).get("metrics_history")
    if isinstance(history, list):
        return [dict(row) for row in history]
    return _rows_before(path, int(state["epoch"]))


def repair_best_checkpoint(state: dict[str, Any], last_path: Path, best_path: Path, log: Callable[[str], None]) -> None:
    """Make best.pt the epoch that last.pt (`state`) records as best, when a kill fell between
    writing last.pt and copying it to best.pt: then last.pt itself is that epoch."""
    best_epoch, epoch = int(state.get("best_epoch", 0)), int(state["epoch"])
    if best_epoch == 0:
        return  # nothing improved yet: the run ends with a best.pt anyway (ensure_best)
    try:
        held = int(load_checkpoint(best_path)["epoch"]) if best_path.exists() else None
    except CheckpointError:
        held = None
    if held == best_epoch:
        return
    if epoch == best_epoch:
        copy_file_atomic(last_path, best_path)
        log(
            f"{best_path}: restored from {last_path.name} (epoch {epoch}, the best so far): the previous run "
            f"stopped before copying it"
        )
    else:
        log(
            f"warning: {best_path} holds {'no readable checkpoint' if held is None else f'epoch {held}'}, "
            f"not epoch {best_epoch} that {last_path.name} records as best; it is replaced at the next improvement"
        )


def _plain_number(value: Any) -> int | float | None:
    if value is None:
        return None
    return int(value) if isinstance(value, numbers.Integral) else float(value)


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6g}"
    return value


def open_tensorboard(log_dir: Path) -> Any:
    """A SummaryWriter when tensorboard is installed, else None (it is an optional extra)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(log_dir=str(log_dir))


class RunWriter:
    """Rank 0's outputs in the run folder: config.yaml, metrics.csv, tensorboard/ (checkpoints aside).

    Opening it tidies the folder (module docstring): the temporary files of a killed process
    go, and with `resume_state` (the last.pt resumed from) best.pt and metrics.csv are brought
    back in line with it."""

    def __init__(
        self, run_dir: Path, cfg: Config, resume_state: dict[str, Any] | None, log: Callable[[str], None] = print
    ) -> None:
        checkpoints = run_dir / "checkpoints"
        removed = remove_stale_temps(run_dir) + remove_stale_temps(checkpoints)
        if removed:
            log(
                f"removed {len(removed)} temporary file(s) of an interrupted write: {', '.join(p.name for p in removed)}"
            )
        if resume_state is not None:
            repair_best_checkpoint(resume_state, checkpoints / "last.pt", checkpoints / "best.pt", log)
        save_config(cfg, run_dir / "config.yaml")
        self.val_keys = val_csv_keys(cfg.task)
        metrics_path = run_dir / "metrics.csv"
        self.metrics_csv = MetricsCsv(
            metrics_path, resumed_metrics_rows(metrics_path, resume_state) if resume_state else []
        )
        self.tensorboard = open_tensorboard(run_dir / "tensorboard") if "tensorboard" in cfg.train.loggers else None
        self.mlflow = MlflowTracker.open(
            run_dir,
            cfg,
            resumed=resume_state is not None,
            run_id=(resume_state or {}).get("extra", {}).get("mlflow_run_id"),
        )

    @property
    def step_logger(self) -> _ScalarFanOut | None:
        """What train_one_epoch logs its per-step scalars to: TensorBoard and MLflow alike."""
        sinks = [s for s in (self.tensorboard, self.mlflow) if s is not None]
        return _ScalarFanOut(sinks) if sinks else None

    def write_epoch(self, epoch: int, stats: EpochStats, metrics: dict[str, float]) -> dict[str, Any]:
        """Append the epoch's row to metrics.csv (and TensorBoard) and return it. `metrics_csv.rows`,
        all rows so far, is what the epoch's last.pt records as its history."""
        row = {
            "epoch": epoch,
            "global_step": stats.global_step,
            "lr": stats.lr,
            **{f"train_{k}": v for k, v in stats.losses.items()},
            **{f"val_{k}": metrics.get(f"val_{k}") for k in self.val_keys},
            "epoch_time_s": stats.seconds,
            "train_images_per_s": stats.n_images / stats.seconds if stats.seconds > 0 else math.nan,
        }
        row = {key: _plain_number(value) for key, value in row.items()}  # last.pt loads weights-only
        self.metrics_csv.append(row)
        if self.tensorboard is not None:
            for key, value in row.items():
                if key != "epoch" and isinstance(value, (int, float)):
                    self.tensorboard.add_scalar(f"epoch/{key}", value, epoch)
            self.tensorboard.flush()
        if self.mlflow is not None:
            self.mlflow.log_epoch(row, epoch)
        return row

    def log_validation(self, result: Any, dataset: Any, epoch: int) -> None:
        """TensorBoard's val PR / ROC curves and prediction grid of this epoch (detect.training.val_visuals)."""
        if self.tensorboard is not None:
            log_validation_visuals(self.tensorboard, result, dataset, epoch)

    def finish_tracking(self, best_path: Path, operating_points: dict[str, Any], status: str = "FINISHED") -> None:
        """End the MLflow run: best.pt and its operating points first when it `status` is FINISHED."""
        if self.mlflow is not None:
            if status == "FINISHED":
                self.mlflow.log_best(best_path, operating_points)
            self.mlflow.close(status)
            self.mlflow = None

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()


class _ScalarFanOut:
    """add_scalar to every sink (a SummaryWriter, an MlflowTracker)."""

    def __init__(self, sinks: list[Any]) -> None:
        self.sinks = sinks

    def add_scalar(self, tag: str, scalar_value: float, global_step: int) -> None:
        for sink in self.sinks:
            sink.add_scalar(tag, scalar_value, global_step)


def ensure_best(
    last_path: Path, best_path: Path, monitor: str, best_epoch: int, info: DistInfo, log: Callable[[str], None]
) -> None:
    """A run always ends with a best.pt: the last epoch's when the monitor never improved."""
    if info.is_main and not best_path.is_file() and last_path.is_file():
        if best_epoch == 0:
            log(f"{monitor} was never finite: best.pt is the last epoch's checkpoint")
        else:  # only when best.pt was deleted by hand: a resume restores it after a kill
            log(f"{best_path} is missing and epoch {best_epoch}'s checkpoint is gone: best.pt is the last epoch's")
        copy_file_atomic(last_path, best_path)
    barrier()
