"""`--grid key=v1,v2,...` options -> axes -> every combination, each a set of config overrides.

    axes = [parse_grid("train.lr=0.01,0.02"), parse_grid("train.batch_size=8,16")]
    check_grid(base_config, axes)           # every value through the config's own checks
    for combo in combinations(axes):        # [{'train.lr': '0.01', 'train.batch_size': '8'}, ...]
        overrides = [f"{k}={v}" for k, v in combo.items()]

Values are typed as `--set` types them (detect.config.parse_override: YAML scalars, [a, b]
lists); commas inside brackets do not separate values (`model.anchor_sizes_px=[16,32,64,128],[32,64,128,256]`).
Any key of the config can be swept: the optimizer, loss, learning rate, batch size, epochs,
augmentation strengths (data.augment.*), image size, the model itself.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any, Sequence

from data_prep.errors import ConfigError
from detect.config import Config, config_from_dict, config_to_dict
from detect.recipe import parse_override

_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9._=-]+")


@dataclass(frozen=True)
class GridAxis:
    """One swept key: its values as given on the command line and as the config types them."""

    key: str
    texts: tuple[str, ...]
    values: tuple[Any, ...]


def split_values(text: str) -> list[str]:
    """'0.01,0.02' -> ['0.01', '0.02']; commas inside [...] stay with their list."""
    parts, depth, current = [], 0, []
    for char in text:
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    parts.append("".join(current).strip())
    return parts


def parse_grid(text: str) -> GridAxis:
    """One --grid option; a ConfigError for a missing '=', an empty key, an empty or repeated value."""
    if "=" not in text:
        raise ConfigError(f"--grid '{text}' must look like key=value1,value2, e.g. --grid train.lr=0.01,0.02")
    key, raw = (part.strip() for part in text.split("=", 1))
    if not key:
        raise ConfigError(f"--grid '{text}' has an empty key")
    texts = split_values(raw)
    if not raw.strip() or any(not t for t in texts):
        raise ConfigError(f"--grid '{text}' has an empty value; give values separated by commas, e.g. {key}=0.01,0.02")
    if len(set(texts)) != len(texts):
        raise ConfigError(f"--grid '{text}' repeats a value")
    values = tuple(parse_override(f"{key}={t}")[1] for t in texts)
    return GridAxis(key, tuple(texts), values)


def check_grid(base: Config, axes: Sequence[GridAxis]) -> None:
    """Each key once, and each value accepted by the config itself (unknown key, bad value)."""
    seen: set[str] = set()
    for axis in axes:
        if axis.key in seen:
            raise ConfigError(f"--grid: key '{axis.key}' is given twice; list all its values in one --grid")
        seen.add(axis.key)
        for text in axis.texts:
            try:
                config_from_dict(config_to_dict(base), [f"{axis.key}={text}"])
            except ConfigError as exc:
                raise ConfigError(f"--grid {axis.key}={','.join(axis.texts)}: {exc}") from None


def combinations(axes: Sequence[GridAxis]) -> list[dict[str, str]]:
    """Every combination of the axes' values ({key: value text}), the first axis varying slowest."""
    return [dict(zip((a.key for a in axes), texts)) for texts in itertools.product(*(a.texts for a in axes))]


def run_name(combo: dict[str, str]) -> str:
    """The run folder of a combination: 'train.lr=0.01__train.batch_size=8' (unsafe characters as '-')."""
    parts = [f"{key}={_UNSAFE_NAME_CHARS.sub('-', text).strip('-') or 'x'}" for key, text in combo.items()]
    return "__".join(parts) or "base"
