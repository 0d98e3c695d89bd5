"""`detect train`: the training loop, explicit and readable (torchvision's engine.py, nanoGPT).

    result = run_training("configs/demo.yaml", ["data/rsna"], out_dir="runs/demo")

One run, top to bottom (`_train`):
  1. resolve the config (strict YAML + `--set` overrides) and the run folder (runs/<name>/);
  2. prepare each `--data` folder that has no manifest yet (rank 0), read the manifests, build
     the train / val datasets;
  3. seed python, numpy and torch; build the model, the optimizer (no weight decay on norms
     and biases), the per-step LambdaLR (warm-up + cosine / step / constant) or the per-epoch
     ReduceLROnPlateau, the GradScaler (AMP on CUDA only);
  4. `--resume`: load RUN_DIR/checkpoints/last.pt (same config required; train.epochs may
     grow, and RESUME_MUTABLE_KEYS such as train.device may change) and restore weights,
     optimizer, scheduler, scaler, counters and RNG states;
  5. per epoch: `train_one_epoch` (forward -> dict of losses -> sum -> non-finite loss guard ->
     backward -> clip, with a non-finite gradient guard -> step), validation on the 'val' split
     with `detect.engine.evaluate_model`
     every train.eval_every_epochs and at the last epoch, best.pt on an improvement of
     train.monitor, last.pt always, a row of metrics.csv, TensorBoard scalars, early stopping.

Sampling is reproducible: each epoch's sampler is rebuilt from (seed, epoch, rank), so a run
resumed from last.pt draws the same batches as one that never stopped (bit-identical weights
on CPU with data.num_workers=0; with workers, the augmentation streams of the worker processes
are not checkpointed).

Under `torchrun --nproc_per_node=N` each process trains on its own share of the data in
DistributedDataParallel (see detect.distributed); rank 0 alone evaluates, logs and writes.
With data.balance_classes every rank draws its own ceil(len/N) samples from the weighted
sampler with a rank-specific seed: N independent weighted draws with replacement are one
weighted draw of N times the size, so the class balance is exactly that of one process.
"""
from __future__ import annotations

import csv
import math
import random
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, RandomSampler, Sampler
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

from data_prep.errors import ConfigError, DetectError
from detect.checkpoint import (
    config_of_checkpoint,
    load_checkpoint,
    restore_rng_states,
    save_checkpoint,
)
from detect.config import Config, TrainConfig, config_to_dict, load_config, save_config
from detect.distributed import (
    DistInfo,
    all_reduce_mean,
    barrier,
    broadcast_object,
    destroy_distributed,
    dist_info_from_env,
    init_distributed,
    resolve_device,
    wrap_model,
)
from detect.engine import evaluate_model

# Linear warm-up starts at this fraction of the base lr (torchvision's detection reference).
WARMUP_START_FACTOR = 0.001
# Config keys that may differ on --resume: they change how a run executes, not what it computes.
RESUME_MUTABLE_KEYS: tuple[str, ...] = ("train.device", "data.num_workers", "train.log_every_steps")
# Validation metrics written to metrics.csv (prefixed val_), in this order.
VAL_CSV_KEYS: tuple[str, ...] = (
    "map50", "map", "map75", "rsna_score", "f1", "auc", "accuracy", "sensitivity", "specificity",
    "pneumonia_threshold", "loss",
)


class TrainingDivergedError(DetectError):
    """The training loss became nan or inf: training stops instead of silently skipping steps."""


class RunFolderExistsError(DetectError):
    """The run folder already holds a trained run and neither --resume nor a new --out was given."""


@dataclass
class TrainResult:
    """What a training run produced. `model` is the trained (last-epoch, unwrapped) model."""

    run_dir: Path
    best_checkpoint: Path
    last_checkpoint: Path
    best_metrics: dict[str, float]
    best_epoch: int
    epochs_run: int
    global_step: int
    images_per_second: float
    stopped_early: bool = False
    rank: int = 0  # the process's rank under torchrun; only rank 0 wrote anything
    model: torch.nn.Module | None = field(default=None, repr=False)


@dataclass
class EpochStats:
    losses: dict[str, float]  # mean of each component over the epoch, plus 'loss' (their sum)
    n_images: int  # over all ranks
    seconds: float
    global_step: int
    lr: float  # the learning rate of the epoch's last step


# ------------------------------------------------------------------------------- seeding


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def derive_seed(*parts: int) -> int:
    """A well-mixed 31-bit seed from (seed, epoch, rank, ...): no collisions between parts."""
    return int(np.random.SeedSequence([int(p) % 2**32 for p in parts]).generate_state(1)[0]) & 0x7FFFFFFF


def seed_worker(worker_id: int) -> None:
    """DataLoader worker init: torch seeds each worker; numpy and python follow that seed."""
    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)


class EpochSampler(Sampler[int]):
    """A sampler rebuilt at `set_epoch(epoch)` from a function of the epoch.

    Keeps the DataLoader (and its persistent workers) while making each epoch's draw a pure
    function of (seed, epoch, rank): what makes --resume replay the same batches.
    """

    def __init__(self, build: Callable[[int], Iterable[int]], length: int) -> None:
        self._build = build
        self._length = length
        self._sampler = build(0)

    def set_epoch(self, epoch: int) -> None:
        self._sampler = self._build(epoch)

    def __iter__(self):
        return iter(self._sampler)

    def __len__(self) -> int:
        return self._length


def build_train_sampler(dataset: Any, cfg: Config, info: DistInfo) -> EpochSampler:
    """Weighted (data.balance_classes, data.kermany_weight) or uniform shuffling; this rank's share under DDP."""
    from detect.datasets import make_weighted_sampler

    per_rank = math.ceil(len(dataset) / info.world_size)

    # data.kermany_weight reweights the datasets even without class balancing
    weighted = cfg.data.balance_classes or cfg.data.kermany_weight != 1.0

    def build(epoch: int) -> Iterable[int]:
        if weighted:
            return make_weighted_sampler(
                dataset.records,
                kermany_weight=cfg.data.kermany_weight,
                num_samples=per_rank,
                seed=derive_seed(cfg.seed, epoch, info.rank),
                balance_classes=cfg.data.balance_classes,
            )
        if info.is_distributed:
            sampler = DistributedSampler(dataset, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=cfg.seed)
            sampler.set_epoch(epoch)
            return sampler
        return RandomSampler(dataset, generator=torch.Generator().manual_seed(derive_seed(cfg.seed, epoch)))

    return EpochSampler(build, per_rank)


def build_loader(dataset: Any, cfg: Config, device: torch.device, *, sampler: Sampler | None = None,
                 drop_last: bool = False, seed: int = 0) -> DataLoader:
    from detect.datasets import collate_detection

    workers = cfg.data.num_workers
    return DataLoader(
        dataset,
        batch_size=cfg.train.batch_size,
        sampler=sampler,
        shuffle=False,
        num_workers=workers,
        collate_fn=collate_detection,
        pin_memory=device.type == "cuda",
        drop_last=drop_last,
        persistent_workers=workers > 0,
        worker_init_fn=seed_worker,
        generator=torch.Generator().manual_seed(seed),
    )


# ------------------------------------------------------------------ optimizer and schedule


def build_optimizer(model: torch.nn.Module, train_cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD (momentum) or AdamW over the trainable parameters.

    Norm weights and biases (1-D parameters) get no weight decay: decaying them only fights
    the normalisation (torchvision's references and timm do the same).
    """
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (no_decay if param.ndim <= 1 else decay).append(param)
    groups = [g for g in ({"params": decay, "weight_decay": train_cfg.weight_decay},
                          {"params": no_decay, "weight_decay": 0.0}) if g["params"]]
    if train_cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=train_cfg.lr, momentum=train_cfg.momentum)
    if train_cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=train_cfg.lr)
    raise ConfigError(f"config key 'train.optimizer' is '{train_cfg.optimizer}'; choose one of: sgd, adamw")


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
    else:
        raise ConfigError(f"config key 'train.schedule' is '{train_cfg.schedule}'; no per-step factor")
    return factor


def build_scheduler(optimizer: torch.optim.Optimizer, train_cfg: TrainConfig, steps_per_epoch: int, monitor_mode: str):
    """LambdaLR stepped after every optimizer step, or ReduceLROnPlateau stepped per evaluation."""
    if train_cfg.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode=monitor_mode, factor=train_cfg.gamma, patience=train_cfg.plateau_patience
        )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor_fn(train_cfg, steps_per_epoch))


def monitor_mode(monitor: str) -> str:
    return "min" if monitor == "val_loss" else "max"


def is_improvement(value: float | None, best: float, mode: str) -> bool:
    if value is None or not math.isfinite(value):
        return False
    if not math.isfinite(best):
        return True
    return value < best if mode == "min" else value > best


# ------------------------------------------------------------------------ one epoch


def _autocast(device: torch.device, enabled: bool):
    return torch.autocast(device_type=device.type, dtype=torch.float16, enabled=enabled and device.type == "cuda")


def _move_targets(targets: Sequence[dict[str, Any]], device: torch.device) -> list[dict[str, Any]]:
    return [{k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in t.items()}
            for t in targets]


def _format_eta(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def train_one_epoch(
    model: torch.nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler,
    device: torch.device,
    cfg: Config,
    *,
    epoch: int,
    global_step: int,
    info: DistInfo,
    log: Callable[[str], None],
    tensorboard: Any = None,
) -> EpochStats:
    """One pass over `loader` (at most train.max_steps_per_epoch steps); `scheduler` is stepped
    per optimizer step unless it is a ReduceLROnPlateau."""
    train_cfg = cfg.train
    n_steps = len(loader) if train_cfg.max_steps_per_epoch <= 0 else min(len(loader), train_cfg.max_steps_per_epoch)
    per_step_schedule = not isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
    use_amp = train_cfg.amp and device.type == "cuda"
    params = [p for p in model.parameters() if p.requires_grad]
    show_bar = info.is_main and sys.stderr.isatty()
    bar = tqdm(total=n_steps, desc=f"epoch {epoch + 1}/{train_cfg.epochs}", unit="step",
               disable=not show_bar, leave=False, dynamic_ncols=True)

    model.train()
    sums: dict[str, float] = {}
    n_images, n_done, lr = 0, 0, optimizer.param_groups[0]["lr"]
    start = time.perf_counter()
    for step, (images, targets) in enumerate(loader):
        if step >= n_steps:
            break
        images = [image.to(device, non_blocking=True) for image in images]
        targets = _move_targets(targets, device)
        with _autocast(device, use_amp):
            loss_dict = model(images, targets)
        loss = sum(loss_dict.values())

        # Averaged over ranks before backward: every rank sees the same values, so a
        # non-finite loss on any rank stops all of them together (none waits in all-reduce).
        names = sorted(loss_dict)
        reduced = all_reduce_mean(torch.stack([loss_dict[k].detach().float() for k in names]))
        values = dict(zip(names, reduced.tolist()))
        if not all(math.isfinite(v) for v in values.values()):
            parts = ", ".join(f"{k}={v:.4g}" for k, v in values.items())
            raise TrainingDivergedError(
                f"non-finite loss at step {global_step + 1} (epoch {epoch + 1}): {parts}; "
                f"lower train.lr (now {optimizer.param_groups[0]['lr']:.3g}), lengthen train.warmup_steps "
                "or set train.grad_clip_norm > 0"
            )

        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if train_cfg.grad_clip_norm > 0:
            scaler.unscale_(optimizer)  # clip the true gradients, not the loss-scaled ones
            grad_norm = torch.nn.utils.clip_grad_norm_(params, train_cfg.grad_clip_norm)
            # Without AMP a non-finite gradient would write nan into the weights (clipping does
            # not stop it); with AMP the GradScaler skips such steps and lowers its scale.
            if not use_amp and not math.isfinite(float(grad_norm)):
                parts = ", ".join(f"{k}={v:.4g}" for k, v in values.items())
                raise TrainingDivergedError(
                    f"non-finite gradient at step {global_step + 1} (epoch {epoch + 1}) with finite losses {parts}; "
                    f"lower train.lr (now {optimizer.param_groups[0]['lr']:.3g}) or lengthen train.warmup_steps"
                )
        lr = optimizer.param_groups[0]["lr"]  # the lr of this step, before the schedule moves on
        scaler.step(optimizer)
        scaler.update()
        if per_step_schedule:
            scheduler.step()
        global_step += 1
        n_done += 1

        batch_images = len(images) * info.world_size
        n_images += batch_images
        for k, v in values.items():
            sums[k] = sums.get(k, 0.0) + v
        sums["loss"] = sums.get("loss", 0.0) + sum(values.values())
        mean_loss = sums["loss"] / n_done
        bar.set_postfix(loss=f"{mean_loss:.4f}", lr=f"{lr:.2e}")
        bar.update(1)
        every = train_cfg.log_every_steps
        if every > 0 and (step + 1) % every == 0:
            elapsed = time.perf_counter() - start
            if tensorboard is not None:
                tensorboard.add_scalar("train/loss", sum(values.values()), global_step)
                tensorboard.add_scalar("train/lr", lr, global_step)
            if not show_bar:
                log(f"epoch {epoch + 1}/{train_cfg.epochs} step {step + 1}/{n_steps} loss {mean_loss:.4f} "
                    f"lr {lr:.2e} {n_images / elapsed:.1f} img/s eta {_format_eta(elapsed / (step + 1) * (n_steps - step - 1))}")
    bar.close()
    seconds = time.perf_counter() - start
    return EpochStats(
        losses={k: v / max(1, n_done) for k, v in sums.items()},
        n_images=n_images,
        seconds=seconds,
        global_step=global_step,
        lr=lr,
    )


# -------------------------------------------------------------------------- run folder


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


def resolve_config(config: Config | str | Path | None, overrides: Sequence[str], run_dir: Path | None) -> Config:
    if isinstance(config, Config):
        if overrides:
            from detect.config import config_from_dict

            return config_from_dict(config_to_dict(config), overrides)
        return config
    if config is None:
        if run_dir is None or not (run_dir / "config.yaml").is_file():
            raise ConfigError("no config given: pass --config FILE (or --resume --out RUN_DIR to reuse RUN_DIR/config.yaml)")
        config = run_dir / "config.yaml"
    return load_config(config, list(overrides))


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


# --------------------------------------------------------------------------- data


def _main_then_share(info: DistInfo, work: Callable[[], Any]) -> Any:
    """Run `work` on rank 0 and hand its result (or its DetectError) to every rank.

    The broadcast doubles as a barrier, and an error on rank 0 reaches the other ranks
    instead of leaving them waiting forever.
    """
    result, error = None, None
    if info.is_main:
        try:
            result = work()
        except DetectError as exc:
            if not info.is_distributed:
                raise
            error = exc
    shared = broadcast_object((result, None if error is None else str(error)))
    if error is not None:
        raise error
    if shared[1] is not None:
        raise DetectError(shared[1])
    return shared[0]


def prepare_for_config(data_dir: str | Path, cfg: Config, *, workers: int) -> Any:
    """`detect prepare` with the recipe's split fractions, split seed and cache size."""
    from data_prep.prepare import prepare_dataset

    return prepare_dataset(
        data_dir,
        cache=cfg.data.use_cache,
        image_size_px=cfg.data.image_size_px,
        val_fraction=cfg.data.val_fraction,
        test_fraction=cfg.data.test_fraction,
        seed=cfg.data.split_seed,
        workers=workers,
    )


def prepare_data(data_dirs: Sequence[str | Path], cfg: Config, info: DistInfo, log: Callable[[str], None]) -> list[Any]:
    """Each --data folder's PreparedDataset, running `detect prepare` (rank 0) where none exists,
    and building the image cache at data.image_size_px when data.use_cache."""
    from data_prep.cache import build_cache
    from data_prep.manifest import find_prepared, read_manifest
    from data_prep.prepare import format_summary

    if not data_dirs:
        raise ConfigError("no dataset given: pass --data DIR (an RSNA or Kermany root as unzipped from Kaggle, or a prepared folder)")
    for data_dir in data_dirs:
        if not Path(data_dir).is_dir():
            raise ConfigError(f"--data {data_dir}: folder not found")

    def prepare_missing() -> None:
        for data_dir in data_dirs:
            if find_prepared(data_dir) is None:
                log(f"{data_dir}: no manifest yet, preparing it (as `detect prepare` would)")
                result = prepare_for_config(data_dir, cfg, workers=max(1, cfg.data.num_workers))
                log(format_summary(result))
            elif cfg.data.use_cache:
                prepared = read_manifest(data_dir)
                cache = build_cache(prepared, cfg.data.image_size_px, workers=max(1, cfg.data.num_workers))
                if cache.n_written or cache.bad_files:
                    log(f"{prepared.prepared_dir}: cached {cache.n_written} images at {cache.size_px} px"
                        + (f", {len(cache.bad_files)} unreadable (skipped)" if cache.bad_files else ""))

    _main_then_share(info, prepare_missing)
    return [read_manifest(data_dir) for data_dir in data_dirs]


def _check_val_split(val_dataset: Any, cfg: Config, data_dirs: Sequence[str | Path]) -> None:
    if val_dataset is None or len(val_dataset) == 0:
        raise ConfigError(
            f"the val split of {', '.join(map(str, data_dirs))} is empty; prepare with data.val_fraction > 0 "
            "(delete the detect_prepared folder to prepare again)"
        )
    monitor = cfg.train.monitor
    if monitor in ("val_map50", "val_rsna_score") and not any(r.has_box_labels for r in val_dataset.records):
        raise ConfigError(
            f"config key 'train.monitor' is '{monitor}' but the val split has no box-labelled (RSNA) images; "
            "use val_f1 or val_loss"
        )


# --------------------------------------------------------------------------- the run


def run_training(
    config: Config | str | Path | None,
    data_dirs: Sequence[str | Path],
    *,
    out_dir: str | Path | None = None,
    resume: bool = False,
    overrides: Sequence[str] = (),
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Train per `config` (a Config, or a YAML path with `overrides`) on the datasets in `data_dirs`.

    Writes RUN_DIR = out_dir or runs/<cfg.name>: config.yaml (resolved), metrics.csv,
    checkpoints/{best,last}.pt, tensorboard/ (when installed). Raises DetectError subclasses
    (ConfigError, CheckpointError, TrainingDivergedError, RunFolderExistsError) for user errors.
    Under torchrun it joins the process group itself and leaves it at the end.
    """
    info = dist_info_from_env()
    cfg = resolve_config(config, overrides, Path(out_dir) if out_dir is not None else None)
    run_dir = Path(out_dir) if out_dir is not None else Path("runs") / cfg.name
    device = resolve_device(cfg.train.device, info)
    owns_group = info.is_distributed and not torch.distributed.is_initialized()
    init_distributed(device, info)
    try:
        return _train(cfg, data_dirs, run_dir, resume, device, info, log if info.is_main else (lambda _: None))
    finally:
        if owns_group:
            destroy_distributed()


@dataclass
class Progress:
    """The counters that a checkpoint carries from one epoch to the next."""

    epoch: int = 0  # epochs completed
    global_step: int = 0  # optimizer steps taken
    best_metric: float = math.nan  # best value of train.monitor so far
    best_epoch: int = 0  # 1-based epoch of best_metric, 0 = none yet
    stale_epochs: int = 0  # evaluations since the last improvement (early stopping)
    best_metrics: dict[str, float] = field(default_factory=dict)
    pneumonia_threshold: float = 0.5  # F1-optimal on val at the last evaluation

    def record_evaluation(self, metrics: dict[str, float], monitor: str, epoch: int) -> bool:
        """Take one evaluation's metrics into account; True when `monitor` improved."""
        self.pneumonia_threshold = metrics.get("val_pneumonia_threshold", self.pneumonia_threshold)
        value = metrics.get(monitor)
        if is_improvement(value, self.best_metric, monitor_mode(monitor)):
            self.best_metric, self.best_epoch, self.best_metrics, self.stale_epochs = value, epoch + 1, dict(metrics), 0
            return True
        self.stale_epochs += 1
        return False

    @classmethod
    def from_checkpoint(cls, payload: dict[str, Any], best_path: Path) -> "Progress":
        best_metrics = dict(load_checkpoint(best_path)["metrics"]) if best_path.is_file() else {}
        return cls(epoch=int(payload["epoch"]), global_step=int(payload["global_step"]),
                   best_metric=float(payload["best_metric"]), best_epoch=int(payload["best_epoch"]),
                   stale_epochs=int(payload.get("epochs_without_improvement", 0)), best_metrics=best_metrics,
                   pneumonia_threshold=float(payload["extra"].get("pneumonia_threshold", 0.5)))


def _train(cfg: Config, data_dirs: Sequence[str | Path], run_dir: Path, resume: bool,
           device: torch.device, info: DistInfo, log: Callable[[str], None]) -> TrainResult:
    from detect.datasets import build_datasets
    from detect.models import build_model

    train_cfg = cfg.train
    if train_cfg.eval_every_epochs < 1:
        raise ConfigError(f"config key 'train.eval_every_epochs' must be >= 1, got {train_cfg.eval_every_epochs}")
    last_path, best_path = run_dir / "checkpoints" / "last.pt", run_dir / "checkpoints" / "best.pt"
    resume_state = None
    if resume:
        resume_state = load_checkpoint(last_path, map_location=device)
        check_resume_config(config_of_checkpoint(resume_state, last_path), cfg, last_path)
        data_dirs = data_dirs or list(resume_state["extra"].get("data_dirs", []))  # the run remembers its data
    elif last_path.exists():
        raise RunFolderExistsError(
            f"{run_dir} already holds a run ({last_path.name}); pass --resume to continue it, "
            "or choose a new folder with --out (or --set name=...)"
        )

    # data
    datasets = build_datasets(prepare_data(data_dirs, cfg, info, log), cfg)
    train_dataset, val_dataset = datasets.get("train"), datasets.get("val")
    if train_dataset is None or len(train_dataset) == 0:
        raise ConfigError(f"the train split of {', '.join(map(str, data_dirs))} is empty")
    _check_val_split(val_dataset, cfg, data_dirs)
    sampler = build_train_sampler(train_dataset, cfg, info)
    drop_last = len(sampler) >= 2 * train_cfg.batch_size  # no last batch of 1 for batch-norm, unless data is tiny
    train_loader = build_loader(train_dataset, cfg, device, sampler=sampler, drop_last=drop_last,
                                seed=derive_seed(cfg.seed, info.rank))
    val_loader = build_loader(val_dataset, cfg, device) if info.is_main else None
    steps_per_epoch = len(train_loader)
    if train_cfg.max_steps_per_epoch > 0:
        steps_per_epoch = min(steps_per_epoch, train_cfg.max_steps_per_epoch)

    # model and optimisation
    seed_everything(cfg.seed)
    model = build_model(cfg.model, cfg.data.image_size_px).to(device)
    optimizer = build_optimizer(model, train_cfg)
    scheduler = build_scheduler(optimizer, train_cfg, steps_per_epoch, monitor_mode(train_cfg.monitor))
    per_epoch_schedule = isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
    use_amp = train_cfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp)
    progress = Progress()
    if resume_state is not None:
        model.load_state_dict(resume_state["model"])
        optimizer.load_state_dict(resume_state["optimizer"])
        scheduler.load_state_dict(resume_state["scheduler"])
        if resume_state["scaler"]:  # empty when the run so far had AMP off (e.g. on a CPU)
            scaler.load_state_dict(resume_state["scaler"])
        progress = Progress.from_checkpoint(resume_state, best_path)
        if info.is_main:
            restore_rng_states(resume_state["rng"])
        else:  # only rank 0's states are saved: the others continue on fresh, rank-specific streams
            seed_everything(derive_seed(cfg.seed, progress.epoch, info.rank))
        log(f"resuming {run_dir} after epoch {progress.epoch} (step {progress.global_step}, best "
            f"{train_cfg.monitor} {progress.best_metric:.4f} at epoch {progress.best_epoch})")
    elif info.is_distributed:
        seed_everything(derive_seed(cfg.seed, 0, info.rank))  # each rank its own augmentations
    ddp_model = wrap_model(model, device, info)

    writer = RunWriter(run_dir, cfg, resumed_after=progress.epoch if resume_state else None) if info.is_main else None
    log(f"training {cfg.model.name} at {cfg.data.image_size_px} px on {device}"
        f"{f' x {info.world_size} processes' if info.is_distributed else ''}: {len(train_dataset)} train / "
        f"{len(val_dataset)} val images, {steps_per_epoch} steps per epoch, run dir {run_dir}")
    if progress.epoch >= train_cfg.epochs:
        log(f"{run_dir} has already trained {progress.epoch} of {train_cfg.epochs} epochs; "
            "raise train.epochs (--set train.epochs=N) to train longer")
    extra = {"data_dirs": [str(Path(d).resolve()) for d in data_dirs]}
    total_images, total_seconds, epochs_run, stopped_early = 0, 0.0, 0, False
    try:
        for epoch in range(progress.epoch, train_cfg.epochs):
            sampler.set_epoch(epoch)
            stats = train_one_epoch(ddp_model, train_loader, optimizer, scheduler, scaler, device, cfg, epoch=epoch,
                                    global_step=progress.global_step, info=info, log=log,
                                    tensorboard=writer.tensorboard if writer else None)
            progress.global_step, progress.epoch = stats.global_step, epoch + 1
            total_images, total_seconds, epochs_run = total_images + stats.n_images, total_seconds + stats.seconds, epochs_run + 1

            metrics: dict[str, float] = {}
            improved = False
            if (epoch + 1) % train_cfg.eval_every_epochs == 0 or epoch + 1 == train_cfg.epochs:
                # rank 0 evaluates; every rank receives the metrics, so all take the same decisions
                metrics = _main_then_share(info, lambda: validate(model, val_loader, device, use_amp, train_cfg.monitor))
                improved = progress.record_evaluation(metrics, train_cfg.monitor, epoch)
                monitored = metrics.get(train_cfg.monitor)
                if per_epoch_schedule and monitored is not None and math.isfinite(monitored):
                    scheduler.step(monitored)

            if writer is not None:
                save_checkpoint(last_path, model=model, cfg=cfg, epoch=progress.epoch, global_step=progress.global_step,
                                optimizer=optimizer, scheduler=scheduler, scaler=scaler,
                                best_metric=progress.best_metric, best_epoch=progress.best_epoch,
                                epochs_without_improvement=progress.stale_epochs, metrics=metrics,
                                extra={**extra, "pneumonia_threshold": progress.pneumonia_threshold})
                if improved:
                    _copy_atomic(last_path, best_path)
                writer.write_epoch(epoch + 1, stats, metrics)
                log(format_epoch(epoch + 1, train_cfg.epochs, stats, metrics, improved))
            barrier()
            if metrics and 0 < train_cfg.early_stop_patience <= progress.stale_epochs:
                log(f"early stop: {train_cfg.monitor} has not improved for {progress.stale_epochs} evaluations "
                    f"(best {progress.best_metric:.4f} at epoch {progress.best_epoch})")
                stopped_early = True
                break
    finally:
        if writer is not None:
            writer.close()

    if info.is_main and not best_path.is_file() and last_path.is_file():
        log(f"{train_cfg.monitor} was never finite: best.pt is the last epoch's checkpoint")
        _copy_atomic(last_path, best_path)
    barrier()
    return TrainResult(
        run_dir=run_dir,
        best_checkpoint=best_path,
        last_checkpoint=last_path,
        best_metrics=progress.best_metrics,
        best_epoch=progress.best_epoch,
        epochs_run=epochs_run,
        global_step=progress.global_step,
        images_per_second=total_images / total_seconds if total_seconds > 0 else math.nan,
        stopped_early=stopped_early,
        rank=info.rank,
        model=model,
    )


def validate(model: torch.nn.Module, loader: DataLoader, device: torch.device, amp: bool, monitor: str) -> dict[str, float]:
    """detect.engine.evaluate_model on the val loader, its metrics prefixed 'val_'."""
    result = evaluate_model(model, loader, device, amp=amp, with_loss=monitor == "val_loss")
    metrics = {f"val_{k}": float(v) for k, v in result.metrics.items()}
    metrics["val_pneumonia_threshold"] = float(result.pneumonia_threshold)
    return metrics


def format_epoch(epoch: int, epochs: int, stats: EpochStats, metrics: dict[str, float], improved: bool) -> str:
    shown = " ".join(f"{k} {metrics[k]:.4f}" for k in ("val_map50", "val_rsna_score", "val_f1", "val_auc", "val_loss")
                     if k in metrics)
    return (f"epoch {epoch}/{epochs} loss {stats.losses.get('loss', math.nan):.4f}{' | ' + shown if shown else ''} "
            f"| lr {stats.lr:.2e} | {stats.seconds:.1f} s, {stats.n_images / max(stats.seconds, 1e-9):.1f} img/s"
            f"{'  * best' if improved else ''}")


def _copy_atomic(source: Path, destination: Path) -> None:
    tmp = destination.with_name(f".{destination.name}.tmp")
    shutil.copyfile(source, tmp)
    tmp.replace(destination)


def format_result(result: TrainResult) -> str:
    """The closing line of `detect train`: best epoch, its validation metrics, the run folder."""
    keys = ("val_map50", "val_map", "val_rsna_score", "val_f1", "val_auc", "val_loss")
    shown = " ".join(f"{k}={result.best_metrics[k]:.4f}" for k in keys if k in result.best_metrics)
    best = f"best epoch {result.best_epoch}: {shown}" if result.best_epoch else "no finite validation metric"
    speed = f"{result.images_per_second:.1f} images/s" if math.isfinite(result.images_per_second) else "no steps run"
    epochs = f"{result.epochs_run} epoch{'' if result.epochs_run == 1 else 's'}"
    return f"{best} | {epochs}, {speed} | run dir {result.run_dir} (best: {result.best_checkpoint})"
