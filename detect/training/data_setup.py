"""The data of a training run: each `--data` folder prepared on the fly where it has no manifest
(rank 0, the others wait for it), the train / val datasets, the epoch sampler and the loaders.

    loaders = build_loaders(data_dirs, cfg, device, info, log)    # detect.training.trainer's step 2
    result = prepare_for_config(data_dir, cfg, workers=2)         # `detect prepare` with the recipe's splits
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch.utils.data import DataLoader, Sampler

from data_prep.cache import build_cache
from data_prep.errors import ConfigError, DetectError
from data_prep.manifest import PreparedDataset, find_prepared, read_manifest
from data_prep.prepare import PrepareResult, detect_dataset_kind, format_summary, prepare_dataset
from data_prep.records import CUSTOM_DATASET, ImageRecord
from detect.config import Config
from detect.data.dataset import ManifestDataset, build_datasets, collate_detection
from detect.data.sampling import EpochSampler, build_train_sampler, derive_seed
from detect.distributed import (
    DistInfo,
    broadcast_object,
)
from detect.training.seeding import seed_worker


def build_loader(
    dataset: ManifestDataset,
    cfg: Config,
    device: torch.device,
    *,
    sampler: Sampler | None = None,
    drop_last: bool = False,
    seed: int = 0,
) -> DataLoader:
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


def main_then_share(info: DistInfo, work: Callable[[], Any]) -> Any:
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


def prepare_for_config(data_dir: str | Path, cfg: Config, *, workers: int) -> PrepareResult:
    """`detect prepare` with the recipe's split fractions, split seed and cache size (and, for a
    folder of one's own images, its data.label_map and data.unannotated)."""
    own = detect_dataset_kind(data_dir) == CUSTOM_DATASET
    return prepare_dataset(
        data_dir,
        label_map=cfg.data.label_map if own else None,
        unannotated=(cfg.data.unannotated or None) if own else None,
        cache=cfg.data.use_cache,
        image_size_px=cfg.data.image_size_px,
        val_fraction=cfg.data.val_fraction,
        test_fraction=cfg.data.test_fraction,
        seed=cfg.data.split_seed,
        workers=workers,
        max_pixels=cfg.data.max_image_pixels,
    )


def check_data_dirs(data_dirs: Sequence[str | Path]) -> None:
    if not data_dirs:
        raise ConfigError(
            "no dataset given: pass --data DIR (an RSNA or Kermany root as unzipped from Kaggle, or a prepared folder)"
        )
    for data_dir in data_dirs:
        if not Path(data_dir).is_dir():
            raise ConfigError(f"--data {data_dir}: folder not found")


def prepare_data(
    data_dirs: Sequence[str | Path], cfg: Config, info: DistInfo, log: Callable[[str], None]
) -> list[PreparedDataset]:
    """Each --data folder's PreparedDataset, running `detect prepare` (rank 0) where none exists,
    and building the image cache at data.image_size_px when data.use_cache."""
    check_data_dirs(data_dirs)

    def prepare_missing() -> None:
        for data_dir in data_dirs:
            if find_prepared(data_dir) is None:
                log(f"{data_dir}: no manifest yet, preparing it (as `detect prepare` would)")
                result = prepare_for_config(data_dir, cfg, workers=max(1, cfg.data.num_workers))
                log(format_summary(result))
            elif cfg.data.use_cache:
                prepared = read_manifest(data_dir)
                cache = build_cache(
                    prepared,
                    cfg.data.image_size_px,
                    workers=max(1, cfg.data.num_workers),
                    max_pixels=cfg.data.max_image_pixels,
                )
                if cache.n_written or cache.bad_files:
                    log(
                        f"{prepared.prepared_dir}: cached {cache.n_written} images at {cache.size_px} px"
                        + (f", {len(cache.bad_files)} unreadable (skipped)" if cache.bad_files else "")
                    )

    main_then_share(info, prepare_missing)
    return [read_manifest(data_dir) for data_dir in data_dirs]


def _check_val_split(val_dataset: ManifestDataset | None, cfg: Config, data_dirs: Sequence[str | Path]) -> None:
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


@dataclass
class Loaders:
    train: DataLoader
    val: DataLoader | None  # rank 0 alone validates
    sampler: EpochSampler
    n_train: int
    n_val: int
    steps_per_epoch: int
    train_records: list[ImageRecord] = field(default_factory=list, repr=False)  # weighted_ce counts them


def build_loaders(
    data_dirs: Sequence[str | Path], cfg: Config, device: torch.device, info: DistInfo, log: Callable[[str], None]
) -> Loaders:
    datasets = build_datasets(prepare_data(data_dirs, cfg, info, log), cfg, skip_unreadable=True)
    train_dataset, val_dataset = datasets.get("train"), datasets.get("val")
    if train_dataset is None or len(train_dataset) == 0:
        raise ConfigError(f"the train split of {', '.join(map(str, data_dirs))} is empty")
    _check_val_split(val_dataset, cfg, data_dirs)
    sampler = build_train_sampler(train_dataset, cfg, info.rank, info.world_size)
    drop_last = len(sampler) >= 2 * cfg.train.batch_size  # no last batch of 1 for batch-norm, unless data is tiny
    train_loader = build_loader(
        train_dataset, cfg, device, sampler=sampler, drop_last=drop_last, seed=derive_seed(cfg.seed, info.rank)
    )
    val_loader = build_loader(val_dataset, cfg, device) if info.is_main else None
    steps_per_epoch = len(train_loader)
    if cfg.train.max_steps_per_epoch > 0:
        steps_per_epoch = min(steps_per_epoch, cfg.train.max_steps_per_epoch)
    return Loaders(
        train_loader,
        val_loader,
        sampler,
        len(train_dataset),
        len(val_dataset),
        steps_per_epoch,
        train_records=list(train_dataset.records),
    )
