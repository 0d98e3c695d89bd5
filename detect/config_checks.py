"""Building and checking the config sections (detect.config): every value checked and converted
to its field's type (`build_dataclass`), each failure one ConfigError line naming the full key,
e.g. `config key 'train.lr' must be > 0, got -1.0`; and the nearest valid key to a misspelled one."""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from typing import Any

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


def field_types(cls: type) -> dict[str, Any]:
    """{field name: its resolved type} of a config dataclass."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def coerce_value(value: Any, annotation: Any, key: str, root: type) -> Any:
    """Check and convert one YAML value to the field's type, or raise ConfigError naming `key`."""
    origin = typing.get_origin(annotation)
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}' must be a mapping, got {type(value).__name__}")
        return build_dataclass(annotation, value, prefix=f"{key}.", root=root)
    if origin is tuple:
        (item_type, _ellipsis) = typing.get_args(annotation)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}' must be a list, got {shown(value)}")
        return tuple(coerce_value(v, item_type, f"{key}[{i}]", root) for i, v in enumerate(value))
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None:
            return None
        return coerce_value(value, args[0], key, root)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key '{key}' must be true or false, got {shown(value)}")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            if abs(value) >= 2**63:
                raise ConfigError(f"config key '{key}' is too large (more than 18 digits): {shown(value)}")
            return value
        raise ConfigError(f"config key '{key}' must be an integer, got {shown(value)}")
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if isinstance(value, int) and abs(value) >= 10**300:  # float() would overflow
                raise ConfigError(f"config key '{key}' is too large (more than 300 digits): {shown(value)}")
            return float(value)
        raise ConfigError(f"config key '{key}' must be a number, got {shown(value)}")
    if annotation is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"config key '{key}' must be a string, got {shown(value)}")
    raise ConfigError(f"config key '{key}' has an unsupported type {annotation!r}")  # pragma: no cover


def build_dataclass(cls: type, values: dict[str, Any], prefix: str = "", *, root: type) -> Any:
    """`cls(**values)` with every key known (else a ConfigError suggesting the nearest key of
    `root`, the whole config) and every value checked and converted to its field's type."""
    types_by_name = field_types(cls)
    unknown = sorted((set(values) - set(types_by_name)), key=str)
    if unknown:
        valid = ", ".join(sorted(types_by_name))
        key = f"{prefix}{unknown[0]}"
        nearest = nearest_key(key, root)
        hint = f" (did you mean '{nearest}'?)" if nearest else ""
        raise ConfigError(
            f"unknown config key {shown(key)}{hint}; valid keys{' in ' + prefix.rstrip('.') if prefix else ''}: {valid}"
        )
    kwargs = {name: coerce_value(v, types_by_name[name], f"{prefix}{name}", root) for name, v in values.items()}
    return cls(**kwargs)


def deep_copy(d: dict[str, Any]) -> dict[str, Any]:
    """A nested dict copied down to its leaves (the values themselves are shared)."""
    return {k: deep_copy(v) if isinstance(v, dict) else v for k, v in d.items()}
