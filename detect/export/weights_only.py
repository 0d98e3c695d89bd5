"""The deployment checkpoint: a training checkpoint without its training state.

    write_weights_only(payload, path)

Keeps what inference reads (the model's state dict, the resolved config, epoch, metrics,
versions, the operating points in `extra`) and drops the optimizer, scheduler, scaler and RNG
states, and the training-only extra entries (metrics_history, best_metrics, data folders).
It is still a detect checkpoint (detect.models.checkpoint: the same required keys, loadable
with torch.load(weights_only=True)), so load_predictor, `detect infer`, `detect eval` and
`detect serve` take it as they take best.pt; `detect train --resume` does not (no optimizer).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from data_prep.atomic import atomic_write

# the extra entries inference and a model card read; the rest is the training run's bookkeeping
INFERENCE_EXTRA_KEYS: tuple[str, ...] = ("operating_points", "pneumonia_threshold", "versions")
TRAINING_STATE_KEYS: tuple[str, ...] = ("optimizer", "scheduler", "scaler", "rng")


def weights_only_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """`payload` (a loaded checkpoint) without its training state; a new dict, tensors shared."""
    kept = {key: value for key, value in payload.items() if key not in TRAINING_STATE_KEYS and key != "extra"}
    kept.update({key: None for key in TRAINING_STATE_KEYS})
    extra = payload.get("extra") or {}
    kept["extra"] = {key: extra[key] for key in INFERENCE_EXTRA_KEYS if key in extra}
    kept["extra"]["weights_only"] = True
    # copies: a tensor saved as a view of a larger one would carry that whole storage
    kept["model"] = {name: tensor.detach().clone() for name, tensor in payload["model"].items()}
    return kept


def write_weights_only(payload: dict[str, Any], path: str | Path) -> Path:
    with atomic_write(path, catch=(OSError, RuntimeError)) as handle:
        torch.save(weights_only_payload(payload), handle)
    return Path(path)
