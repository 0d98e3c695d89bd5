"""Data-parallel training helpers: `torchrun --nproc_per_node=N cli.py train ...` runs DDP.

torchrun starts N processes and sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT
in each; `init_distributed` reads them and joins the process group (NCCL on CUDA, gloo on CPU).
Without those variables (a plain `detect train`) everything here is a no-op for one process.

The conventions of torchvision's detection references, kept here:
- every rank trains on its own share of the data and DistributedDataParallel averages the
  gradients, so after each optimizer step every rank holds the same parameters;
- rank 0 alone logs, evaluates and writes checkpoints; the others wait at a barrier and receive
  the decisions that depend on validation (best epoch, early stop, plateau lr) by broadcast.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from data_prep.errors import ConfigError


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: rank 0..world_size-1; local_rank picks its GPU on the node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name}={raw!r} must be an integer (set by torchrun)") from None


def dist_info_from_env() -> DistInfo:
    """Read torchrun's RANK / WORLD_SIZE / LOCAL_RANK; a single process when they are absent."""
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", rank)
    if world_size < 1 or not 0 <= rank < world_size:
        raise ConfigError(f"RANK={rank} and WORLD_SIZE={world_size} are inconsistent (need 0 <= RANK < WORLD_SIZE)")
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank)


def init_distributed(device: torch.device, info: DistInfo) -> None:
    """Join the process group when running under torchrun (NCCL for CUDA, gloo for CPU)."""
    if not info.is_distributed or dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl")
    else:
        dist.init_process_group(backend="gloo")


def destroy_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank `src`'s picklable `obj` on every rank (the object itself when not distributed)."""
    if not (dist.is_available() and dist.is_initialized()):
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=src)
    return holder[0]


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's picklable `obj`, in rank order ([obj] when not distributed)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def all_reduce_mean(values: torch.Tensor) -> torch.Tensor:
    """The element-wise mean of `values` over ranks (a copy; `values` itself when not distributed)."""
    if not (dist.is_available() and dist.is_initialized()):
        return values
    reduced = values.detach().clone()
    dist.all_reduce(reduced, op=dist.ReduceOp.SUM)
    return reduced / dist.get_world_size()


def wrap_model(model: torch.nn.Module, device: torch.device, info: DistInfo) -> torch.nn.Module:
    """DistributedDataParallel around `model` when distributed, else `model` unchanged.

    find_unused_parameters=True: a batch of Kermany images only (no box labels) leaves the
    detector heads without gradient on that rank, and DDP must not wait for them forever.
    """
    if not info.is_distributed:
        return model
    device_ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids, find_unused_parameters=True)
