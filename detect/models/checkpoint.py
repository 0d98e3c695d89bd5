"""Checkpoints: what `detect train` writes and `detect infer` / `detect eval` read.

A checkpoint is one `torch.save` file holding a dict with fixed keys:

    format_version  int, CHECKPOINT_FORMAT_VERSION
    model           the model's state_dict (unwrapped from DDP)
    optimizer       optimizer.state_dict(), or None
    scheduler       lr scheduler state_dict(), or None
    scaler          torch.amp.GradScaler state_dict() ({} when AMP is off), or None
    epoch           int, the number of epochs COMPLETED (resume starts at this epoch index)
    global_step     int, optimizer steps taken
    best_metric     float, the best value of config train.monitor so far (nan before any eval)
    best_epoch      int, the 1-based epoch that reached best_metric (0 = none yet)
    epochs_without_improvement  int, the early-stopping counter
    metrics         dict[str, float], the validation metrics of this checkpoint's epoch
    config          the resolved Config as a plain dict (detect.config.config_to_dict)
    versions        {'torch', 'torchvision', 'detect', 'python'}
    rng             {'python', 'numpy', 'torch', 'cuda'}: RNG states, for an exact resume
                    (detect.training.seeding.capture_rng_states)
    extra           dict: 'operating_points' ({dataset: OperatingPoint.to_dict()}: the pneumonia
                    thresholds chosen on each dataset's val split at this epoch, which `detect
                    infer` applies and `detect eval` reports), 'data_dirs', and in training's
                    last.pt 'best_metrics' (the best epoch's validation metrics) and
                    'metrics_history' (every metrics.csv row so far, the file's source on resume:
                    detect.training.run_folder), ...

Everything in it is a tensor or a plain python value, so it loads with torch.load's
weights_only=True (no arbitrary code from a checkpoint file).
"""

from __future__ import annotations

import dataclasses
import math
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

from data_prep.atomic import atomic_write
from data_prep.errors import CheckpointError, ConfigError
from detect.config import Config, config_from_dict, config_to_dict
from detect.models.build import build_model
from detect.models.classifiers import ImageClassifier
from detect.models.detector import PneumoniaDetector
from detect.models.weights import load_weights_only

CHECKPOINT_FORMAT_VERSION = 1
REQUIRED_KEYS: tuple[str, ...] = ("format_version", "model", "config", "epoch", "global_step")


def software_versions() -> dict[str, str]:
    try:
        detect_version = version("detect")
    except PackageNotFoundError:  # running from a source tree that was never installed
        detect_version = "unknown"
    return {
        "torch": str(torch.__version__),  # TorchVersion, a str subclass weights_only loading refuses
        "torchvision": str(torchvision.__version__),
        "detect": detect_version,
        "python": platform.python_version(),
    }


def save_checkpoint(
    path: str | Path,
    *,
    model: torch.nn.Module,
    cfg: Config,
    epoch: int,
    global_step: int,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: LRScheduler | ReduceLROnPlateau | None = None,
    scaler: torch.amp.GradScaler | None = None,
    best_metric: float = math.nan,
    best_epoch: int = 0,
    epochs_without_improvement: int = 0,
    metrics: dict[str, float] | None = None,
    extra: dict[str, Any] | None = None,
    rng_states: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically (data_prep.atomic: a unique temporary file in the same
    folder, fsync, os.replace).

    A kill, a crash or a full disk mid-write leaves the previous checkpoint intact and no
    temporary file (a SIGKILL's one is removed on resume): never half a file. Any OSError or
    RuntimeError of torch.save -> OutputWriteError naming the path. `model` is the plain model
    (not DistributedDataParallel's wrapper). Returns the path written.
    """
    path = Path(path)
    payload = {
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "epoch": int(epoch),
        "global_step": int(global_step),
        "best_metric": float(best_metric),
        "best_epoch": int(best_epoch),
        "epochs_without_improvement": int(epochs_without_improvement),
        "metrics": {k: float(v) for k, v in (metrics or {}).items()},
        "config": config_to_dict(cfg),
        "versions": software_versions(),
        "rng": dict(rng_states or {}),
        "extra": dict(extra or {}),
    }
    # into a file object, not a path: torch then reports a full disk as OSError(ENOSPC) instead
    # of an opaque RuntimeError ('unexpected pos ...'); both are caught all the same
    with atomic_write(path, catch=(OSError, RuntimeError)) as handle:
        torch.save(payload, handle)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint`; a CheckpointError names the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    payload = load_weights_only(path, "checkpoint file", map_location=map_location)
    if not isinstance(payload, dict) or any(key not in payload for key in REQUIRED_KEYS):
        missing = [k for k in REQUIRED_KEYS if not isinstance(payload, dict) or k not in payload]
        raise CheckpointError(
            f"{path}: not a detect training checkpoint (missing {', '.join(missing)}); "
            "pass a best.pt or last.pt written by `detect train`"
        )
    if payload["format_version"] > CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format {payload['format_version']} is newer than this detect "
            f"understands ({CHECKPOINT_FORMAT_VERSION}); upgrade detect"
        )
    return payload


def config_of_checkpoint(payload: dict[str, Any], path: str | Path) -> Config:
    """The resolved Config stored in a checkpoint (a CheckpointError if it no longer validates)."""
    try:
        return config_from_dict(payload["config"])
    except ConfigError as exc:
        raise CheckpointError(f"{path}: stored config is not valid for this detect version ({exc})") from None


def find_latest_best_checkpoint(runs_dir: str | Path = "runs") -> Path:
    """The best.pt of the most recently written run under `runs_dir` (by file mtime)."""
    runs_dir = Path(runs_dir)
    candidates = list(runs_dir.glob("*/checkpoints/best.pt")) if runs_dir.is_dir() else []
    if not candidates:
        raise CheckpointError(
            f"no trained model found under {runs_dir.as_posix().rstrip('/')}/; "
            "train one with `detect train` or pass --checkpoint"
        )
    return max(candidates, key=lambda p: p.stat().st_mtime)


def build_model_from_checkpoint(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[PneumoniaDetector | ImageClassifier, Config, dict[str, Any]]:
    """Rebuild the trained model from a checkpoint: (model in eval mode on `device`, cfg, extra).

    The architecture comes from the stored config; its `weights` are NOT fetched again (the
    checkpoint holds the trained weights). `extra` is the checkpoint's extra dict (e.g.
    'pneumonia_threshold') plus 'epoch', 'global_step', 'best_metric', 'metrics', 'versions'.
    """
    payload = load_checkpoint(path, map_location="cpu")
    cfg = config_of_checkpoint(payload, path)
    model_cfg = dataclasses.replace(cfg.model, weights="none")
    model = build_model(model_cfg, cfg.data.image_size_px, task=cfg.task)
    try:
        model.load_state_dict(payload["model"], strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0][:200]
        raise CheckpointError(f"{path}: weights do not fit model '{cfg.model.name}' ({first})") from None
    model.to(device).eval()
    extra = dict(payload.get("extra") or {})
    for key in ("epoch", "global_step", "best_metric", "best_epoch", "metrics", "versions"):
        extra.setdefault(key, payload.get(key))
    return model, cfg, extra
