"""Which training images an epoch draws, and in what order: reproducible per (seed, epoch, rank).

    build_train_sampler(dataset, cfg, rank, world_size)   -> EpochSampler (set_epoch(e) before each epoch)

Weighted sampling (data.balance_classes, data.kermany_weight) draws with replacement by
`sampling_weights`; otherwise the images are shuffled (DistributedSampler under torchrun).
Each epoch's draw is a pure function of (seed, epoch, rank): a run resumed from its last
checkpoint draws the same batches as one that never stopped. Under torchrun every rank draws
its own ceil(len / world_size) samples from the weighted sampler with a rank-specific seed:
N independent weighted draws with replacement are one weighted draw of N times the size, so
the class balance is exactly that of one process.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from torch.utils.data import DistributedSampler, RandomSampler, Sampler, WeightedRandomSampler

from data_prep.errors import ConfigError
from data_prep.records import ImageRecord
from data_prep.tasks import DETECTION_TASK, record_label
from detect.config import Config
from detect.data.dataset import ManifestDataset


def derive_seed(*parts: int) -> int:
    """A well-mixed 31-bit seed from (seed, epoch, rank, ...): no collisions between parts."""
    return int(np.random.SeedSequence([int(p) % 2**32 for p in parts]).generate_state(1)[0]) & 0x7FFFFFFF


def sampling_group(record: ImageRecord, task: str = DETECTION_TASK) -> tuple[str, str]:
    """The (dataset, class) group a record is balanced in: by the task's class for a
    classification task (kermany2 / rsna2: the target); for detection RSNA by rsna_class, Kermany
    by subtype, anything else (or a record without its class) by target."""
    if task != DETECTION_TASK:
        return record.dataset, f"{task}={record_label(record, task)}"
    if record.dataset == "rsna" and record.rsna_class is not None:
        return record.dataset, record.rsna_class
    if record.dataset == "kermany" and record.subtype is not None:
        return record.dataset, record.subtype
    return record.dataset, f"target={record.target}"


def sampling_weights(
    records: Sequence[ImageRecord],
    *,
    kermany_weight: float = 1.0,
    balance_classes: bool = True,
    task: str = DETECTION_TASK,
) -> np.ndarray:
    """Per-record sampling weights (float64 [N], summing to 1).

    Each dataset keeps its natural share of draws, times `kermany_weight` for Kermany: with
    n_D images, dataset D gets a share proportional to n_D * w_D (w_rsna = 1), so on average a
    Kermany image is drawn kermany_weight times as often as an RSNA image. With
    `balance_classes`, a dataset's share is split equally among its classes (inverse class
    frequency: RSNA Normal / No Lung Opacity / Lung Opacity, Kermany normal / bacterial / viral),
    and equally among the images of a class.
    """
    if not records:
        raise ConfigError("cannot sample from an empty set of training images")
    groups = [sampling_group(r, task) for r in records]
    dataset_counts = Counter(dataset for dataset, _ in groups)
    group_counts = Counter(groups)
    classes_per_dataset = Counter(dataset for dataset, _ in group_counts)
    dataset_share = {d: n * (kermany_weight if d == "kermany" else 1.0) for d, n in dataset_counts.items()}
    weights = np.empty(len(records), dtype=np.float64)
    for i, (dataset, cls) in enumerate(groups):
        if balance_classes:
            weights[i] = dataset_share[dataset] / classes_per_dataset[dataset] / group_counts[(dataset, cls)]
        else:
            weights[i] = dataset_share[dataset] / dataset_counts[dataset]
    total = weights.sum()
    if total <= 0:
        raise ConfigError("data.kermany_weight is 0 and there are only Kermany training images: nothing to sample")
    return weights / total


def make_weighted_sampler(
    records: Sequence[ImageRecord],
    *,
    kermany_weight: float,
    num_samples: int | None,
    seed: int,
    balance_classes: bool = True,
    task: str = DETECTION_TASK,
) -> WeightedRandomSampler:
    """A WeightedRandomSampler (with replacement) over `records` by `sampling_weights`;
    `num_samples` draws per epoch (None = len(records)); reproducible given `seed`."""
    weights = sampling_weights(records, kermany_weight=kermany_weight, balance_classes=balance_classes, task=task)
    generator = torch.Generator().manual_seed(int(seed))
    return WeightedRandomSampler(
        torch.from_numpy(weights), num_samples=int(num_samples or len(records)), replacement=True, generator=generator
    )


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


def build_train_sampler(dataset: ManifestDataset, cfg: Config, rank: int = 0, world_size: int = 1) -> EpochSampler:
    """Weighted (data.balance_classes, data.kermany_weight) or uniform shuffling; this rank's share under DDP."""
    per_rank = math.ceil(len(dataset) / world_size)
    # data.kermany_weight reweights the datasets even without class balancing
    weighted = cfg.data.balance_classes or cfg.data.kermany_weight != 1.0

    def build(epoch: int) -> Iterable[int]:
        if weighted:
            return make_weighted_sampler(
                dataset.records,
                kermany_weight=cfg.data.kermany_weight,
                num_samples=per_rank,
                seed=derive_seed(cfg.seed, epoch, rank),
                balance_classes=cfg.data.balance_classes,
                task=cfg.task,
            )
        if world_size > 1:
            sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=cfg.seed)
            sampler.set_epoch(epoch)
            return sampler
        return RandomSampler(dataset, generator=torch.Generator().manual_seed(derive_seed(cfg.seed, epoch)))

    return EpochSampler(build, per_rank)
