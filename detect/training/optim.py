"""Optimiser, learning-rate schedule and the monitored metric's direction.

build_optimizer(model, cfg.train)            SGD (momentum) or AdamW, no decay on norms and biases
build_scheduler(optimizer, cfg.train, n, mode) per-step LambdaLR (warm-up + cosine / step /
                                             constant) or per-evaluation ReduceLROnPlateau
monitor_mode(monitor), is_improvement(value, best, mode)
backbone_frozen_in(epoch, cfg.train)         two-phase transfer: is the backbone frozen in this epoch?
start_finetuning(optimizer, scheduler, f)    at the phase boundary: every lr (and base lr) times f
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch.optim.lr_scheduler import LambdaLR, ReduceLROnPlateau

from detect.config import TrainConfig

# Linear warm-up starts at this fraction of the base lr (torchvision's detection reference).
WARMUP_START_FACTOR = 0.001


def build_optimizer(model: torch.nn.Module, train_cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD (momentum) or AdamW over the trainable parameters.

    Norm weights and biases (1-D parameters) get no weight decay: decaying them only fights
    the normalisation (torchvision's references and timm do the same).
    """
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (no_decay if param.ndim <= 1 else decay).append(param)
    groups = [
        g
        for g in ({"params": decay, "weight_decay": train_cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0})
        if g["params"]
    ]
    if train_cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=train_cfg.lr, momentum=train_cfg.momentum)
    return torch.optim.AdamW(groups, lr=train_cfg.lr)  # detect.config allows sgd and adamw only


def lr_factor_fn(train_cfg: TrainConfig, steps_per_epoch: int) -> Callable[[int], float]:
    """step -> lr / base lr, for the per-step schedules (cosine, step, constant).

    cosine: linear warm-up over train.warmup_steps from WARMUP_START_FACTOR to 1, then a
    half cosine to 0 at the last step. step: the same warm-up, times gamma for every
    milestone in train.step_epochs already reached (0-based epoch index >= milestone).
    constant: 1.
    """
    total_steps = max(1, train_cfg.epochs * steps_per_epoch)
    warmup = train_cfg.warmup_steps

    def warm(step: int) -> float:
        if warmup <= 0 or step >= warmup:
            return 1.0
        return WARMUP_START_FACTOR + (1.0 - WARMUP_START_FACTOR) * step / warmup

    if train_cfg.schedule == "cosine":

        def factor(step: int) -> float:
            if step < warmup:
                return warm(step)
            progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
            return 0.5 * (1.0 + math.cos(math.pi * progress))
    elif train_cfg.schedule == "step":

        def factor(step: int) -> float:
            epoch = step // max(1, steps_per_epoch)
            return warm(step) * train_cfg.gamma ** sum(epoch >= m for m in train_cfg.step_epochs)
    elif train_cfg.schedule == "constant":

        def factor(step: int) -> float:
            return 1.0
    else:  # plateau is stepped per evaluation (build_scheduler), never through a factor
        raise ValueError(f"train.schedule '{train_cfg.schedule}' has no per-step factor")
    return factor


def build_scheduler(
    optimizer: torch.optim.Optimizer, train_cfg: TrainConfig, steps_per_epoch: int, monitor_mode: str
) -> LambdaLR | ReduceLROnPlateau:
    """LambdaLR stepped after every optimizer step, or ReduceLROnPlateau stepped per evaluation."""
    if train_cfg.schedule == "plateau":
        return ReduceLROnPlateau(
            optimizer, mode=monitor_mode, factor=train_cfg.gamma, patience=train_cfg.plateau_patience
        )
    return LambdaLR(optimizer, lr_factor_fn(train_cfg, steps_per_epoch))


def monitor_mode(monitor: str) -> str:
    return "min" if monitor == "val_loss" else "max"


def is_improvement(value: float | None, best: float, mode: str) -> bool:
    if value is None or not math.isfinite(value):
        return False
    if not math.isfinite(best):
        return True
    return value < best if mode == "min" else value > best


def backbone_frozen_in(epoch: int, train_cfg: TrainConfig) -> bool:
    """True in the first train.freeze_backbone_epochs epochs (0-based `epoch`): only the new head trains."""
    return epoch < train_cfg.freeze_backbone_epochs


def start_finetuning(optimizer: torch.optim.Optimizer, scheduler: LambdaLR | ReduceLROnPlateau, factor: float) -> None:
    """Scale every learning rate by `factor` when the backbone unfreezes.

    The schedule's base lrs are scaled too, so a per-step schedule goes on from base * factor
    (LambdaLR recomputes lr = base lr x factor(step)); its base lrs are in its state dict, so a
    run resumed after the boundary keeps them, and the trainer calls this once, at the first
    epoch of the second phase.
    """
    for group in optimizer.param_groups:
        group["lr"] *= factor
        if "initial_lr" in group:
            group["initial_lr"] *= factor
    if isinstance(scheduler, LambdaLR):
        scheduler.base_lrs = [lr * factor for lr in scheduler.base_lrs]
