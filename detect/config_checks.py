"""The value checks of the config sections (detect.config): each failure is one ConfigError line
naming the full key, e.g. `config key 'train.lr' must be > 0, got -1.0`; and the nearest valid
key to a misspelled one."""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing

from data_prep.errors import ConfigError
from detect.recipe import shown


def all_keys(cls: type, prefix: str = "") -> list[str]:
    """Every dotted key of a config dataclass, sections included."""
    keys = []
    for name, annotation in typing.get_type_hints(cls).items():
        if name in {f.name for f in dataclasses.fields(cls)}:
            keys.append(prefix + name)
            if dataclasses.is_dataclass(annotation):
                keys += all_keys(annotation, f"{prefix}{name}.")
    return keys


def nearest_key(key: str, cls: type) -> str | None:
    """The valid key closest to a misspelled `key` (difflib), not its own section; None if none is close."""
    candidates = [k for k in all_keys(cls) if not key.startswith(k + ".")]
    found = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
    return found[0] if found else None


class Checks:
    """Raises the one-line ConfigError of a failed check, naming the full key; values are shown
    bounded (detect.recipe.shown), so a hostile value cannot blow up the message."""

    def __init__(self, section: str) -> None:
        self.prefix = f"{section}." if section else ""

    def fail(self, key: str, message: str) -> None:
        raise ConfigError(f"config key '{self.prefix}{key}' {message}")

    def choice(self, key: str, value: str, allowed: tuple[str, ...]) -> None:
        if value not in allowed:
            self.fail(key, f"is {shown(value)}; choose one of: {', '.join(allowed)}")

    def at_least(self, key: str, value: float, low: float) -> None:
        if not (math.isfinite(value) and value >= low):
            self.fail(key, f"is {shown(value)}; expected at least {low:g}")

    def at_most(self, key: str, value: float, high: float) -> None:
        if not (math.isfinite(value) and value <= high):
            self.fail(key, f"is {shown(value)}; expected at most {high:,g}")

    def positive(self, key: str, value: float) -> None:
        if not (math.isfinite(value) and value > 0):
            self.fail(key, f"must be > 0, got {shown(value)}")

    def in_range(
        self, key: str, value: float, low: float, high: float, *, low_open: bool = False, high_open: bool = False
    ) -> None:
        above = value > low if low_open else value >= low
        below = value < high if high_open else value <= high
        if not (math.isfinite(value) and above and below):
            interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
            self.fail(key, f"is {shown(value)}; expected a value in {interval}")
