"""`detect train`: the run, top to bottom (torchvision's references, nanoGPT's train.py).

    result = run_training("configs/demo.yaml", ["data/rsna"], out_dir="runs/demo")

  1. resolve the config (strict YAML + `--set` overrides, every value checked at load) and the
     run folder (runs/<name>/); check that a weights file exists; with --resume, load
     RUN_DIR/checkpoints/last.pt and check its config (train.epochs may grow, RESUME_MUTABLE_KEYS
     such as train.device may change). All of this happens before any data is read.
  2. prepare each `--data` folder that has no manifest yet (rank 0), read the manifests, build
     the train / val datasets and loaders (detect.data);
  3. seed python, numpy and torch; build the model (detect.models.build), the optimizer and the
     schedule (detect.training.optim), the GradScaler (AMP on CUDA only); on --resume restore
     weights, optimizer, scheduler, scaler, counters and RNG states;
  4. per epoch: `train_one_epoch`, validation through the one predictor
     (detect.training.engine.evaluate) every train.eval_every_epochs and at the last epoch,
     a row of metrics.csv and TensorBoard scalars, then last.pt always (with the operating
     points chosen on each dataset's val split and the metrics history), best.pt on an
     improvement of train.monitor, early stopping, and a stop at the end of the epoch in which
     train.max_minutes ran out (the time is kept in last.pt, so a resume spends what is left). That order, and what a resume repairs, keep
     the run folder consistent after a kill at any instant (detect.training.run_folder).

Sampling is reproducible (detect.data.sampling): a run resumed from last.pt draws the same
batches as one that never stopped (bit-identical weights on CPU with data.num_workers=0; with
workers, the augmentation streams of the worker processes are not checkpointed).

Under `torchrun --nproc_per_node=N` each process trains on its own share of the data in
DistributedDataParallel (detect.distributed); rank 0 alone evaluates, logs and writes.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch.optim.lr_scheduler import ReduceLROnPlateau

from data_prep.atomic import check_writable, copy_file_atomic
from data_prep.errors import ConfigError
from detect.config import Config, TrainConfig, config_from_dict, config_to_dict, load_config
from detect.data.sampling import derive_seed
from detect.devices import resolve_device
from detect.distributed import (
    DistInfo,
    all_gather_objects,
    barrier,
    destroy_distributed,
    dist_info_from_env,
    init_distributed,
    wrap_model,
)
from detect.models.build import build_model
from detect.models.checkpoint import config_of_checkpoint, load_checkpoint, save_checkpoint
from detect.models.classifiers import ImageClassifier
from detect.models.losses import build_classification_loss
from detect.models.weights import check_weights_available
from detect.training.data_setup import Loaders, build_loaders, check_data_dirs, main_then_share
from detect.training.engine import dataset_of, format_epoch, train_one_epoch, validate
from detect.training.optim import (
    backbone_frozen_in,
    build_optimizer,
    build_scheduler,
    is_improvement,
    monitor_mode,
    start_finetuning,
)
from detect.training.run_folder import RunFolderExistsError, RunWriter, check_resume_config, ensure_best
from detect.training.seeding import capture_rng_states, restore_rng_states, seed_everything
from detect.training.skipped_files import SkippedFiles


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
    stopped_on_time: bool = False  # train.max_minutes ran out before train.epochs
    train_seconds: float = 0.0  # wall time of the epochs and their validation, summed over resumes
    epochs_completed: int = 0  # epochs the run has trained in all, resumes included (epochs_run: this call's)
    rank: int = 0  # the process's rank under torchrun; only rank 0 wrote anything
    model: torch.nn.Module | None = field(default=None, repr=False)


@dataclass
class Progress:
    """The counters that a checkpoint carries from one epoch to the next."""

    epoch: int = 0  # epochs completed
    global_step: int = 0  # optimizer steps taken
    best_metric: float = math.nan  # best value of train.monitor so far
    best_epoch: int = 0  # 1-based epoch of best_metric, 0 = none yet
    stale_epochs: int = 0  # evaluations since the last improvement (early stopping)
    best_metrics: dict[str, float] = field(default_factory=dict)
    # {dataset: OperatingPoint.to_dict()} chosen on each dataset's val split at the last evaluation
    operating_points: dict[str, dict[str, Any]] = field(default_factory=dict)
    train_seconds: float = 0.0  # wall time of the epochs so far (train.max_minutes counts it)

    def out_of_time(self, max_minutes: float) -> bool:
        return max_minutes > 0 and self.train_seconds >= 60.0 * max_minutes

    def record_evaluation(
        self, metrics: dict[str, float], operating_points: dict[str, dict[str, Any]], monitor: str, epoch: int
    ) -> bool:
        """Take one evaluation's metrics into account; True when `monitor` improved."""
        self.operating_points = dict(operating_points)
        value = metrics.get(monitor)
        if is_improvement(value, self.best_metric, monitor_mode(monitor)):
            self.best_metric, self.best_epoch, self.best_metrics, self.stale_epochs = value, epoch + 1, dict(metrics), 0
            return True
        self.stale_epochs += 1
        return False

    @classmethod
    def from_checkpoint(cls, payload: dict[str, Any], best_path: Path) -> Progress:
        extra = payload["extra"]
        best_metrics = extra.get("best_metrics")
        if best_metrics is None:  # a last.pt written before it carried them
            best_metrics = load_checkpoint(best_path)["metrics"] if best_path.is_file() else {}
        return cls(
            epoch=int(payload["epoch"]),
            global_step=int(payload["global_step"]),
            best_metric=float(payload["best_metric"]),
            best_epoch=int(payload["best_epoch"]),
            stale_epochs=int(payload.get("epochs_without_improvement", 0)),
            best_metrics=dict(best_metrics),
            operating_points=dict(extra.get("operating_points") or {}),
            train_seconds=float(extra.get("train_seconds", 0.0)),
        )


def resolve_config(config: Config | str | Path | None, overrides: Sequence[str], run_dir: Path | None) -> Config:
    """The run's Config: a Config as given (plus overrides), a recipe file, or with neither
    RUN_DIR/config.yaml (what --resume --out RUN_DIR reuses)."""
    if isinstance(config, Config):
        if overrides:
            return config_from_dict(config_to_dict(config), overrides, flag="--set")
        return config
    if config is None:
        if run_dir is None or not (run_dir / "config.yaml").is_file():
            raise ConfigError(
                "no config given: pass --config FILE (or --resume --out RUN_DIR to reuse RUN_DIR/config.yaml)"
            )
        config = run_dir / "config.yaml"
    return load_config(config, list(overrides))


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
    device = resolve_device(cfg.train.device, local_rank=info.local_rank, what="config key 'train.device'")
    owns_group = info.is_distributed and not torch.distributed.is_initialized()
    init_distributed(device, info)
    try:
        return _train(cfg, data_dirs, run_dir, resume, device, info, log if info.is_main else (lambda _: None))
    finally:
        if owns_group:
            destroy_distributed()


def _load_resume_state(run_dir: Path, cfg: Config, resume: bool, device: torch.device) -> dict[str, Any] | None:
    """last.pt of the run to continue (its config checked against `cfg`), or None for a new run;
    a RunFolderExistsError when the folder already holds a run and --resume was not given."""
    last_path = run_dir / "checkpoints" / "last.pt"
    if resume:
        state = load_checkpoint(last_path, map_location=device)
        check_resume_config(config_of_checkpoint(state, last_path), cfg, last_path)
        return state
    if last_path.exists():
        raise RunFolderExistsError(
            f"{run_dir} already holds a run ({last_path.name}); pass --resume to continue it, "
            "or choose a new folder with --out (or --set name=...)"
        )
    return None


def _restore(
    state: dict[str, Any],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | ReduceLROnPlateau,
    scaler: torch.amp.GradScaler,
    cfg: Config,
    info: DistInfo,
    best_path: Path,
) -> Progress:
    """Weights, optimiser, schedule, scaler, counters and RNG states of a resumed run."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if state["scaler"]:  # empty when the run so far had AMP off (e.g. on a CPU)
        scaler.load_state_dict(state["scaler"])
    progress = Progress.from_checkpoint(state, best_path)
    if info.is_main:
        restore_rng_states(state["rng"])
    else:  # only rank 0's states are saved: the others continue on fresh, rank-specific streams
        seed_everything(derive_seed(cfg.seed, progress.epoch, info.rank))
    return progress


def _log_start(
    cfg: Config,
    device: torch.device,
    info: DistInfo,
    loaders: Loaders,
    progress: Progress,
    run_dir: Path,
    log: Callable[[str], None],
) -> None:
    log(
        f"training {cfg.model.name} at {cfg.data.image_size_px} px on {device}"
        f"{f' x {info.world_size} processes' if info.is_distributed else ''}: {loaders.n_train} train / "
        f"{loaders.n_val} val images, {loaders.steps_per_epoch} steps per epoch, run dir {run_dir}"
    )
    if progress.epoch >= cfg.train.epochs:
        log(
            f"{run_dir} has already trained {progress.epoch} of {cfg.train.epochs} epochs; "
            "raise train.epochs (--set train.epochs=N) to train longer"
        )


def _train(
    cfg: Config,
    data_dirs: Sequence[str | Path],
    run_dir: Path,
    resume: bool,
    device: torch.device,
    info: DistInfo,
    log: Callable[[str], None],
) -> TrainResult:
    train_cfg = cfg.train
    last_path, best_path = run_dir / "checkpoints" / "last.pt", run_dir / "checkpoints" / "best.pt"
    check_writable(run_dir, expect="folder", what="the run folder (--out)")  # before any data is read
    check_weights_available(cfg.model)
    resume_state = _load_resume_state(run_dir, cfg, resume, device)
    if resume_state is not None:
        data_dirs = data_dirs or list(resume_state["extra"].get("data_dirs", []))  # the run remembers its data
    check_data_dirs(data_dirs)

    loaders = build_loaders(data_dirs, cfg, device, info, log)
    seed_everything(cfg.seed)
    model = build_model(cfg.model, cfg.data.image_size_px, task=cfg.task).to(device)
    if isinstance(model, ImageClassifier):
        model.loss = build_classification_loss(train_cfg.loss, train_cfg.focal_gamma, cfg.task, loaders.train_records)
    optimizer = build_optimizer(model, train_cfg)  # every parameter, frozen ones too: they join in phase 2
    scheduler = build_scheduler(optimizer, train_cfg, loaders.steps_per_epoch, monitor_mode(train_cfg.monitor))
    use_amp = train_cfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp)
    progress = Progress()
    if resume_state is not None:
        progress = _restore(resume_state, model, optimizer, scheduler, scaler, cfg, info, best_path)
        log(
            f"resuming {run_dir} after epoch {progress.epoch} (step {progress.global_step}, best "
            f"{train_cfg.monitor} {progress.best_metric:.4f} at epoch {progress.best_epoch})"
        )
    elif info.is_distributed:
        seed_everything(derive_seed(cfg.seed, 0, info.rank))  # each rank its own augmentations
    two_phase = isinstance(model, ImageClassifier) and train_cfg.freeze_backbone_epochs > 0
    if two_phase:
        model.set_backbone_frozen(backbone_frozen_in(progress.epoch, train_cfg))
    ddp_model = wrap_model(model, device, info)

    writer = RunWriter(run_dir, cfg, resume_state, log) if info.is_main else None
    skipped_files = SkippedFiles(run_dir, resume=resume_state is not None) if info.is_main else None
    _log_start(cfg, device, info, loaders, progress, run_dir, log)
    extra = {"data_dirs": [str(Path(d).resolve()) for d in data_dirs]}
    total_images, total_seconds, epochs_run, stopped_early = 0, 0.0, 0, False
    stopped_on_time = progress.epoch < train_cfg.epochs and progress.out_of_time(train_cfg.max_minutes)
    if stopped_on_time:
        log(
            f"{run_dir} has spent its train.max_minutes={train_cfg.max_minutes:g} after epoch {progress.epoch}; "
            "raise it to train longer"
        )
    try:
        for epoch in range(progress.epoch, train_cfg.epochs):
            if stopped_on_time:
                break
            epoch_start = time.monotonic()
            loaders.sampler.set_epoch(epoch)
            if two_phase and epoch == train_cfg.freeze_backbone_epochs:
                ddp_model = _unfreeze_backbone(model, optimizer, scheduler, train_cfg, device, info, log, epoch)
            stats = train_one_epoch(
                ddp_model,
                loaders.train,
                optimizer,
                scheduler,
                scaler,
                device,
                cfg,
                epoch=epoch,
                global_step=progress.global_step,
                info=info,
                log=log,
                tensorboard=writer.step_logger if writer else None,
            )
            progress.global_step, progress.epoch = stats.global_step, epoch + 1
            total_images, total_seconds, epochs_run = (
                total_images + stats.n_images,
                total_seconds + stats.seconds,
                epochs_run + 1,
            )
            skipped = [bad for rank_skipped in all_gather_objects(stats.skipped) for bad in rank_skipped]

            # rank 0's clock decides, so that every rank stops after the same epoch
            stopped_on_time = main_then_share(
                info,
                lambda: (
                    progress.train_seconds + time.monotonic() - epoch_start >= 60.0 * train_cfg.max_minutes
                    if train_cfg.max_minutes > 0
                    else False
                ),
            )
            metrics: dict[str, float] = {}
            improved = False
            if (epoch + 1) % train_cfg.eval_every_epochs == 0 or epoch + 1 == train_cfg.epochs or stopped_on_time:
                # rank 0 evaluates; every rank receives the metrics, so all take the same decisions
                visuals = (
                    (lambda result: writer.log_validation(result, dataset_of(loaders.val), epoch + 1))
                    if writer
                    else None
                )
                metrics, points, val_skipped = main_then_share(
                    info,
                    lambda: validate(
                        model,
                        loaders.val,
                        device,
                        use_amp,
                        train_cfg.monitor,
                        epoch + 1,
                        visuals,
                        train_cfg.threshold_rule,
                    ),
                )
                skipped += val_skipped
                improved = progress.record_evaluation(metrics, points, train_cfg.monitor, epoch)
                monitored = metrics.get(train_cfg.monitor)
                if isinstance(scheduler, ReduceLROnPlateau) and monitored is not None and math.isfinite(monitored):
                    scheduler.step(monitored)

            if skipped_files is not None:
                skipped_files.add(skipped, log)
            progress.train_seconds += time.monotonic() - epoch_start
            if writer is not None:  # this order keeps the run folder consistent (detect.training.run_folder)
                writer.write_epoch(epoch + 1, stats, metrics)
                save_checkpoint(
                    last_path,
                    model=model,
                    cfg=cfg,
                    epoch=progress.epoch,
                    global_step=progress.global_step,
                    optimizer=optimizer,
                    scheduler=scheduler,
                    scaler=scaler,
                    best_metric=progress.best_metric,
                    best_epoch=progress.best_epoch,
                    epochs_without_improvement=progress.stale_epochs,
                    metrics=metrics,
                    extra={
                        **extra,
                        "operating_points": progress.operating_points,
                        "best_metrics": progress.best_metrics,
                        "train_seconds": progress.train_seconds,
                        "metrics_history": writer.metrics_csv.rows,  # so a resume needs no other file
                        **({"mlflow_run_id": writer.mlflow.run_id} if writer.mlflow else {}),
                    },
                    rng_states=capture_rng_states(),
                )
                if improved:
                    copy_file_atomic(last_path, best_path)
                log(format_epoch(epoch + 1, train_cfg.epochs, stats, metrics, improved))
            barrier()
            if stopped_on_time:
                log(
                    f"time budget: train.max_minutes={train_cfg.max_minutes:g} ran out during epoch {epoch + 1}; "
                    "stopping after it"
                )
                break
            if metrics and 0 < train_cfg.early_stop_patience <= progress.stale_epochs:
                log(
                    f"early stop: {train_cfg.monitor} has not improved for {progress.stale_epochs} evaluations "
                    f"(best {progress.best_metric:.4f} at epoch {progress.best_epoch})"
                )
                stopped_early = True
                break
    except BaseException as exc:
        if writer is not None:
            writer.finish_tracking(best_path, {}, "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        raise
    finally:
        if writer is not None:
            writer.close()

    ensure_best(last_path, best_path, train_cfg.monitor, progress.best_epoch, info, log)
    if writer is not None and writer.mlflow is not None:
        best_points = load_checkpoint(best_path, map_location="cpu")["extra"].get("operating_points", {})
        writer.finish_tracking(best_path, best_points)
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
        stopped_on_time=stopped_on_time,
        train_seconds=progress.train_seconds,
        epochs_completed=progress.epoch,
        rank=info.rank,
        model=model,
    )


def _unfreeze_backbone(
    model: ImageClassifier,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | ReduceLROnPlateau,
    train_cfg: TrainConfig,
    device: torch.device,
    info: DistInfo,
    log: Callable[[str], None],
    epoch: int,
) -> torch.nn.Module:
    """The second phase of transfer learning, at its first epoch (also when a resume starts
    there): every layer trains, every lr times train.finetune_lr_factor. DDP is wrapped again:
    its gradient reducer knows only the parameters that required gradients when it was built."""
    model.set_backbone_frozen(False)
    start_finetuning(optimizer, scheduler, train_cfg.finetune_lr_factor)
    log(f"epoch {epoch + 1}: the backbone unfreezes; every layer trains at lr x {train_cfg.finetune_lr_factor:g}")
    return wrap_model(model, device, info)


def format_result(result: TrainResult) -> str:
    """The closing line of `detect train`: best epoch, its validation metrics, the run folder."""
    keys = (
        "val_map50",
        "val_map",
        "val_rsna_score",
        "val_f1",
        "val_roc_auc",
        "val_macro_f1",
        "val_accuracy",
        "val_loss",
    )
    shown = " ".join(f"{k}={result.best_metrics[k]:.4f}" for k in keys if k in result.best_metrics)
    best = f"best epoch {result.best_epoch}: {shown}" if result.best_epoch else "no finite validation metric"
    speed = f"{result.images_per_second:.1f} images/s" if math.isfinite(result.images_per_second) else "no steps run"
    epochs = f"{result.epochs_run} epoch{'' if result.epochs_run == 1 else 's'}"
    return f"{best} | {epochs}, {speed} | run dir {result.run_dir} (best: {result.best_checkpoint})"
