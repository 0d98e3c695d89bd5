"""The run folder: what rank 0 writes beside the checkpoints, and what --resume checks.

    RUN_DIR/config.yaml      the resolved config (detect.config.save_config)
    RUN_DIR/metrics.csv      one row per epoch: losses, val_* metrics (VAL_CSV_KEYS), time, speed
    RUN_DIR/tensorboard/     the same scalars, when tensorboard is installed
    RUN_DIR/checkpoints/     last.pt every epoch, best.pt on an improvement (detect.models.checkpoint)
"""
from __future__ import annotations

import csv
import math
import shutil
from pathlib import Path
from typing import Any

from data_prep.errors import ConfigError, DetectError
from detect.config import Config, config_to_dict, save_config
from detect.training.engine import EpochStats

# Config keys that may differ on --resume: they change how a run executes, not what it computes.
RESUME_MUTABLE_KEYS: tuple[str, ...] = ("train.device", "data.num_workers", "train.log_every_steps")
# Validation metrics written to metrics.csv (prefixed val_), in this order.
VAL_CSV_KEYS: tuple[str, ...] = (
    "map50", "map", "map75", "rsna_score", "f1", "roc_auc", "accuracy", "sensitivity", "specificity",
    "threshold_rsna", "threshold_kermany", "loss",
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
    """RUN_DIR/metrics.csv: one row per epoch. The header is fixed by the first row written;
    on resume, rows after the resumed epoch (written after its checkpoint) are dropped."""

    def __init__(self, path: Path, resume_after_epoch: int | None) -> None:
        self.path = path
        self.fieldnames: list[str] | None = None
        if resume_after_epoch is not None and path.is_file():
            with open(path, newline="") as handle:
                reader = csv.DictReader(handle)
                self.fieldnames = list(reader.fieldnames or [])
                rows = [r for r in reader if r.get("epoch", "").isdigit() and int(r["epoch"]) <= resume_after_epoch]
            self._write_all(rows)
        elif path.exists():
            path.unlink()

    def _write_all(self, rows: list[dict[str, Any]]) -> None:
        with open(self.path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.fieldnames or [], extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)

    def append(self, row: dict[str, Any]) -> None:
        if not self.fieldnames:
            self.fieldnames = list(row)
            self._write_all([])
        with open(self.path, "a", newline="") as handle:
            csv.DictWriter(handle, fieldnames=self.fieldnames, extrasaction="ignore").writerow(
                {k: _csv_value(row.get(k)) for k in self.fieldnames}
            )


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
    """Rank 0's outputs in the run folder: config.yaml, metrics.csv, tensorboard/ (checkpoints aside)."""

    def __init__(self, run_dir: Path, cfg: Config, resumed_after: int | None) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
        self.metrics_csv = MetricsCsv(run_dir / "metrics.csv", resumed_after)
        self.tensorboard = open_tensorboard(run_dir / "tensorboard")

    def write_epoch(self, epoch: int, stats: EpochStats, metrics: dict[str, float]) -> None:
        row = {"epoch": epoch, "global_step": stats.global_step, "lr": stats.lr,
               **{f"train_{k}": v for k, v in stats.losses.items()},
               **{f"val_{k}": metrics.get(f"val_{k}") for k in VAL_CSV_KEYS},
               "epoch_time_s": stats.seconds,
               "train_images_per_s": stats.n_images / stats.seconds if stats.seconds > 0 else math.nan}
        self.metrics_csv.append(row)
        if self.tensorboard is not None:
            for key, value in row.items():
                if key != "epoch" and isinstance(value, (int, float)):
                    self.tensorboard.add_scalar(f"epoch/{key}", value, epoch)
            self.tensorboard.flush()

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()


def copy_atomic(source: Path, destination: Path) -> None:
    tmp = destination.with_name(f".{destination.name}.tmp")
    shutil.copyfile(source, tmp)
    tmp.replace(destination)
