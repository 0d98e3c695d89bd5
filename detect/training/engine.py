"""One epoch of training beside one validation pass (torchvision's references keep
`train_one_epoch` next to `evaluate` the same way).

    stats = train_one_epoch(model, loader, optimizer, scheduler, scaler, device, cfg, ...)
    result = evaluate(model, val_loader, device, epoch=e)     # through the one predictor

A training step: forward -> dict of named losses -> sum -> non-finite loss guard (the losses
averaged over ranks first, so every rank stops together) -> backward -> clip, with a
non-finite gradient guard -> optimizer step -> per-step schedule.

Samples that could not be read (a ManifestDataset built with skip_unreadable) arrive as the
batch's `skipped` BadFiles: the loop and validation collect them (EpochStats.skipped,
ValidationResult.skipped) for the trainer to record, and train on the rest of the batch; a
batch with no readable sample (on any rank) is skipped by every rank alike.

Validation predicts through detect.inference.predictor.Predictor (the component `detect eval`
and `detect infer` use), so its boxes and probabilities are those the other two give for the
same checkpoint and images; the metrics come from detect.evaluation.scoring.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

import torch
from torch.optim.lr_scheduler import ReduceLROnPlateau
from torch.utils.data import DataLoader

from data_prep.errors import DetectError
from data_prep.records import BadFile, ImageRecord
from data_prep.tasks import DETECTION_TASK
from detect.config import Config
from detect.devices import autocast
from detect.distributed import DistInfo, all_reduce_mean
from detect.evaluation.scoring import choose_operating_points, classification_metrics, validation_metrics
from detect.inference.predictor import ModelInput, Predictor, PreparedImage
from detect.predictions import OperatingPoint, PostprocessSettings, RawPrediction
from detect.progress import LOG_EVERY_SECONDS, ProgressLog


class ScalarLogger(Protocol):
    """What the loop needs of a TensorBoard SummaryWriter (an optional extra, so not imported here)."""

    def add_scalar(self, tag: str, scalar_value: float, global_step: int) -> Any: ...


class TrainingDivergedError(DetectError):
    """The training loss became nan or inf: training stops instead of silently skipping steps."""


@dataclass
class EpochStats:
    losses: dict[str, float]  # mean of each component over the epoch, plus 'loss' (their sum)
    n_images: int  # over all ranks
    seconds: float
    global_step: int
    lr: float  # the learning rate of the epoch's last step
    skipped: list[BadFile] = field(default_factory=list)  # unreadable samples met (this rank)


def move_targets(targets: Sequence[dict[str, Any]], device: torch.device) -> list[dict[str, Any]]:
    return [
        {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in t.items()}
        for t in targets
    ]


def reduced_loss_values(loss_dict: dict[str, torch.Tensor]) -> dict[str, float]:
    """Each loss averaged over ranks (the values themselves in one process), as floats."""
    names = sorted(loss_dict)
    reduced = all_reduce_mean(torch.stack([loss_dict[k].detach().float() for k in names]))
    return dict(zip(names, reduced.tolist()))


def check_finite_losses(values: dict[str, float], *, step: int, epoch: int, lr: float) -> None:
    if not all(math.isfinite(v) for v in values.values()):
        parts = ", ".join(f"{k}={v:.4g}" for k, v in values.items())
        raise TrainingDivergedError(
            f"non-finite loss at step {step} (epoch {epoch}): {parts}; lower train.lr (now {lr:.3g}), "
            "lengthen train.warmup_steps or set train.grad_clip_norm > 0"
        )


def clip_gradients(
    params: list[torch.nn.Parameter],
    max_norm: float,
    *,
    guard: bool,
    values: dict[str, float],
    step: int,
    epoch: int,
    lr: float,
) -> None:
    """Clip the (already unscaled) gradients to `max_norm`; with `guard`, a non-finite norm stops
    training. Without AMP a non-finite gradient would write nan into the weights (clipping does
    not stop it); with AMP the GradScaler skips such steps and lowers its scale instead."""
    grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    if guard and not math.isfinite(float(grad_norm)):
        parts = ", ".join(f"{k}={v:.4g}" for k, v in values.items())
        raise TrainingDivergedError(
            f"non-finite gradient at step {step} (epoch {epoch}) with finite losses {parts}; "
            f"lower train.lr (now {lr:.3g}) or lengthen train.warmup_steps"
        )


def batch_is_empty_on_some_rank(n_images: int, device: torch.device, info: DistInfo) -> bool:
    """True when this batch, or the batch of any other rank, holds no readable image: then no
    rank may take the step (DDP's gradient all-reduce would wait for the missing rank)."""
    if not info.is_distributed:
        return n_images == 0
    empty = torch.tensor([1.0 if n_images == 0 else 0.0], device=device)
    return bool(all_reduce_mean(empty).item() > 0.0)


def train_one_epoch(
    model: torch.nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | ReduceLROnPlateau,
    scaler: torch.amp.GradScaler,
    device: torch.device,
    cfg: Config,
    *,
    epoch: int,
    global_step: int,
    info: DistInfo,
    log: Callable[[str], None],
    tensorboard: ScalarLogger | None = None,
) -> EpochStats:
    """One pass over `loader` (at most train.max_steps_per_epoch steps); `scheduler` is stepped
    per optimizer step unless it is a ReduceLROnPlateau."""
    train_cfg = cfg.train
    n_steps = len(loader) if train_cfg.max_steps_per_epoch <= 0 else min(len(loader), train_cfg.max_steps_per_epoch)
    per_step_schedule = not isinstance(scheduler, ReduceLROnPlateau)
    use_amp = train_cfg.amp and device.type == "cuda"
    params = [p for p in model.parameters() if p.requires_grad]
    # a bar on a terminal; else a line every train.log_every_steps steps or 30 s (0: no step lines), as infer logs
    every = train_cfg.log_every_steps
    shown = ProgressLog(
        n_steps,
        log if info.is_main else (lambda _: None),
        tty=info.is_main and sys.stderr.isatty(),
        desc=f"epoch {epoch + 1}/{train_cfg.epochs}",
        unit="step",
        every=every,
        every_seconds=LOG_EVERY_SECONDS if every > 0 else math.inf,
        count_failures=False,
    )

    model.train()
    sums: dict[str, float] = {}
    n_images, n_done, lr = 0, 0, optimizer.param_groups[0]["lr"]
    skipped: list[BadFile] = []
    start = time.perf_counter()
    for step, batch in enumerate(loader):
        if step >= n_steps:
            break
        images, targets = batch
        skipped.extend(getattr(batch, "skipped", ()))
        if batch_is_empty_on_some_rank(len(images), device, info):
            continue
        images = [image.to(device, non_blocking=True) for image in images]
        targets = move_targets(targets, device)
        with autocast(device, use_amp):
            loss_dict = model(images, targets)
        loss = sum(loss_dict.values())
        values = reduced_loss_values(loss_dict)
        check_finite_losses(values, step=global_step + 1, epoch=epoch + 1, lr=optimizer.param_groups[0]["lr"])

        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if train_cfg.grad_clip_norm > 0:
            scaler.unscale_(optimizer)  # clip the true gradients, not the loss-scaled ones
            clip_gradients(
                params,
                train_cfg.grad_clip_norm,
                guard=not use_amp,
                values=values,
                step=global_step + 1,
                epoch=epoch + 1,
                lr=optimizer.param_groups[0]["lr"],
            )
        lr = optimizer.param_groups[0]["lr"]  # the lr of this step, before the schedule moves on
        scaler.step(optimizer)
        scaler.update()
        if per_step_schedule:
            scheduler.step()
        global_step += 1
        n_done += 1

        n_images += len(images) * info.world_size
        for k, v in values.items():
            sums[k] = sums.get(k, 0.0) + v
        sums["loss"] = sums.get("loss", 0.0) + sum(values.values())
        mean_loss_so_far = sums["loss"] / n_done
        elapsed = time.perf_counter() - start
        shown.update(note=f"loss {mean_loss_so_far:.4f}, lr {lr:.2e}, {n_images / max(elapsed, 1e-9):.1f} img/s")
        if tensorboard is not None and every > 0 and (step + 1) % every == 0:
            tensorboard.add_scalar("train/loss", sum(values.values()), global_step)
            tensorboard.add_scalar("train/lr", lr, global_step)
    shown.close()
    seconds = time.perf_counter() - start
    return EpochStats(
        losses={k: v / max(1, n_done) for k, v in sums.items()},
        n_images=n_images,
        seconds=seconds,
        global_step=global_step,
        lr=lr,
        skipped=skipped,
    )


# -------------------------------------------------------------------------------- validation


@dataclass
class ValidationResult:
    """One validation pass: its metrics (unprefixed), the operating point chosen on each
    dataset's val images, and the predictions (ORIGINAL pixels) aligned with `records`."""

    metrics: dict[str, float]
    operating_points: dict[str, OperatingPoint]
    records: list[ImageRecord] = field(repr=False)
    predictions: list[RawPrediction] = field(repr=False)
    skipped: list[BadFile] = field(default_factory=list)  # val samples that could not be read


class RecordDataset(Protocol):
    """What validation needs of a dataset (detect.data.dataset.ManifestDataset has it): the
    records its samples' `image_index` points into, and the square input size."""

    records: list[ImageRecord]
    image_size_px: int


def dataset_of(loader: DataLoader) -> RecordDataset:
    dataset = loader.dataset
    while not hasattr(dataset, "records") and hasattr(dataset, "dataset"):  # torch Subset
        dataset = dataset.dataset
    if not (hasattr(dataset, "records") and hasattr(dataset, "image_size_px")):
        raise TypeError(
            f"validation needs a loader over a dataset with records (a ManifestDataset), got {type(dataset).__name__}"
        )
    return dataset


def predict_loader(
    predictor: Predictor, loader: DataLoader, skipped: list[BadFile] | None = None
) -> tuple[list[ImageRecord], list[RawPrediction]]:
    """Every batch of `loader` through `predictor` -> (records, RawPredictions in ORIGINAL pixels).

    The loader's samples are letterboxed as `predictor.prepare` would make them (the cache holds
    the same pixels), so only their scale and original size are needed to map them back.
    Unreadable samples (the batches' `skipped`) have no prediction; they are appended to `skipped`.
    """
    dataset = dataset_of(loader)
    records: list[ImageRecord] = []
    predictions: list[RawPrediction] = []
    for batch in loader:
        images, targets = batch
        if skipped is not None:
            skipped.extend(getattr(batch, "skipped", ()))
        if not images:
            continue
        # The loader letterboxed these as Predictor.prepare would (the same detect.data.preprocess
        # steps); validation runs without TTA, so each image is one plain view.
        prepared = [
            PreparedImage(
                ModelInput(
                    tensor=image,
                    scale=float(target["scale"]),
                    height_px=int(target["orig_size"][0]),
                    width_px=int(target["orig_size"][1]),
                )
            )
            for image, target in zip(images, targets)
        ]
        predictions += predictor.run(prepared)
        records += [dataset.records[int(target["image_index"])] for target in targets]
    return records, predictions


def set_loss_mode(model: torch.nn.Module) -> dict[torch.nn.Module, bool]:
    """Training mode (torchvision detectors return losses only then) with BatchNorm and Dropout
    kept in eval mode, so measuring the loss neither updates running statistics nor drops units."""
    modes = {m: m.training for m in model.modules()}
    model.train()
    for module in model.modules():
        if isinstance(module, (torch.nn.modules.batchnorm._BatchNorm, torch.nn.Dropout)):
            module.eval()
    return modes


@torch.no_grad()
def mean_loss(
    model: torch.nn.Module, loader: DataLoader, device: torch.device, *, amp: bool = False
) -> dict[str, float]:
    """The mean of each training loss component (and 'loss', their sum) over `loader`.

    The detector's proposal sampling is random: it runs under a forked, fixed-seed RNG so the
    number is reproducible and training's random streams are left untouched.
    """
    modes = set_loss_mode(model)
    totals: dict[str, float] = {}
    n_batches = 0
    fork_devices = [device.index or 0] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=fork_devices):
            torch.manual_seed(0)
            for images, targets in loader:
                if not images:  # every sample unreadable: validation's predict_loader recorded them
                    continue
                with autocast(device, amp):
                    losses = model([i.to(device) for i in images], move_targets(targets, device))
                for name, value in losses.items():
                    totals[name] = totals.get(name, 0.0) + float(value)
                totals["loss"] = totals.get("loss", 0.0) + float(sum(losses.values()))
                n_batches += 1
    finally:
        for module, was_training in modes.items():
            module.train(was_training)
    return {k: v / n_batches for k, v in totals.items()} if n_batches else {"loss": math.nan}


def evaluate(
    model: torch.nn.Module,
    loader: DataLoader,
    device: torch.device,
    *,
    amp: bool = False,
    epoch: int = 0,
    settings: PostprocessSettings = PostprocessSettings(),
    with_loss: bool = False,
    threshold_rule: str = "f1",
) -> ValidationResult:
    """Predict `loader` (a val split) through the one predictor and score it
    (detect.evaluation.scoring.validation_metrics, or classification_metrics for a
    classifier); `epoch` (1-based) names where the operating
    points were chosen. With `with_loss`, also the training loss on the split ('loss' and its
    parts). The model is left in eval mode."""
    dataset = dataset_of(loader)
    predictor = Predictor(model, dataset.image_size_px, device, amp=amp, name=f"validation at epoch {epoch}")
    skipped: list[BadFile] = []
    records, predictions = predict_loader(predictor, loader, skipped)
    points = choose_operating_points(records, predictions, f"val at epoch {epoch}", threshold_rule)
    task = getattr(model, "task", DETECTION_TASK)  # an ImageClassifier knows its task; detectors have none
    if task == DETECTION_TASK:
        metrics = validation_metrics(records, predictions, points, settings)
    else:
        metrics = classification_metrics(records, predictions, points, task)
    if with_loss:
        metrics.update(mean_loss(model, loader, device, amp=amp))
        model.eval()
    return ValidationResult(
        metrics=metrics, operating_points=points, records=records, predictions=predictions, skipped=skipped
    )


# ------------------------------------------------------------------- between epochs


def validate(
    model: torch.nn.Module,
    loader: DataLoader,
    device: torch.device,
    amp: bool,
    monitor: str,
    epoch: int,
    visuals: Callable[[ValidationResult], None] | None = None,
    threshold_rule: str = "f1",
) -> tuple[dict[str, float], dict[str, dict[str, Any]], list[BadFile]]:
    """`evaluate` on the val loader -> (its metrics prefixed 'val_', {dataset: operating point as
    a dict}: what the checkpoint stores, the unreadable val files), the operating points chosen by
    `threshold_rule` (train.threshold_rule). `visuals` gets the whole ValidationResult
    (predictions included): TensorBoard's curves and grid."""
    result = evaluate(
        model, loader, device, amp=amp, epoch=epoch, with_loss=monitor == "val_loss", threshold_rule=threshold_rule
    )
    if visuals is not None:
        visuals(result)
    metrics = {f"val_{k}": float(v) for k, v in result.metrics.items()}
    return metrics, {name: point.to_dict() for name, point in result.operating_points.items()}, result.skipped


def format_epoch(epoch: int, epochs: int, stats: EpochStats, metrics: dict[str, float], improved: bool) -> str:
    shown = " ".join(
        f"{k} {metrics[k]:.4f}"
        for k in ("val_map50", "val_rsna_score", "val_f1", "val_roc_auc", "val_macro_f1", "val_accuracy", "val_loss")
        if k in metrics and not (k in ("val_map50", "val_rsna_score") and math.isnan(metrics[k]))
    )
    return (
        f"epoch {epoch}/{epochs} loss {stats.losses.get('loss', math.nan):.4f}{' | ' + shown if shown else ''} "
        f"| lr {stats.lr:.2e} | {stats.seconds:.1f} s, {stats.n_images / max(stats.seconds, 1e-9):.1f} img/s"
        f"{'  * best' if improved else ''}"
    )
