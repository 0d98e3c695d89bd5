"""Where the model runs: one device resolver and one autocast rule for every command.

`train.device` in a recipe and `--device` on `detect infer` / `detect eval` take the same
values: `auto` (this process's GPU when CUDA is available, else the CPU), `cpu`, `cuda`
(this process's GPU: LOCAL_RANK under torchrun) or `cuda:N`.
"""

from __future__ import annotations

import contextlib

import torch

from data_prep.errors import ConfigError

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"


def resolve_device(name: str, *, local_rank: int = 0, what: str = "device") -> torch.device:
    """`name` -> a torch.device that exists on this machine, or a ConfigError naming `what`
    (e.g. "config key 'train.device'" or "--device") and the valid choices."""
    text = name.strip().lower()
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    if text == "cpu":
        return torch.device("cpu")
    if not text.startswith("cuda"):
        raise ConfigError(f"{what} is '{name}'; use {DEVICE_CHOICES}")
    if not torch.cuda.is_available():
        raise ConfigError(f"{what} is '{name}' but CUDA is not available on this machine; use auto or cpu")
    if text == "cuda":
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    try:
        return torch.device(text)
    except RuntimeError:
        raise ConfigError(f"{what} is '{name}'; use {DEVICE_CHOICES}") from None


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """float16 autocast on CUDA when `enabled`; a no-op elsewhere (CPU training stays float32)."""
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.float16)
    return contextlib.nullcontext()
