"""The resolved config as YAML, each value that differs from the default marked: what
`detect train --print-config` prints (detect.config holds the config itself)."""

from __future__ import annotations

import dataclasses
from typing import Any

import yaml

from detect.config import Config


def format_config(cfg: Config) -> str:
    """The resolved config as YAML (what config.yaml holds), each value that differs from the
    default in code marked `# default: X`: what `detect train --print-config` prints."""
    lines: list[str] = []

    def walk(value: Any, default: Any, indent: str) -> None:
        for f in dataclasses.fields(value):
            current, base = getattr(value, f.name), getattr(default, f.name)
            if dataclasses.is_dataclass(current):
                lines.append(f"{indent}{f.name}:")
                walk(current, base, indent + "  ")
                continue
            text = yaml.safe_dump({f.name: _plain(current)}, default_flow_style=True, width=10_000).strip()[1:-1]
            if current != base:
                text += f"  # default: {yaml.safe_dump(_plain(base), default_flow_style=True).strip().removesuffix('...').strip()}"
            lines.append(indent + text)

    walk(cfg, Config(), "")
    return "\n".join(lines) + "\n"


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
