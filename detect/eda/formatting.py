"""How the EDA report writes a number: the one place, so the tables, plot labels and the summary agree."""

from __future__ import annotations

import math
from typing import Any


def count(value: Any) -> str:
    """26684 -> '26,684'; None -> 'n/a'."""
    return "n/a" if value is None else f"{int(value):,}"


def share(value: Any, decimals: int = 1) -> str:
    """0.38314 -> '38.3%'; below 1% one more decimal (13 of 26,684: '0.05%', not '0.0%'); None -> 'n/a'."""
    if value is None or not math.isfinite(float(value)):
        return "n/a"
    percent = 100.0 * float(value)
    if 0 < abs(percent) < 1:
        decimals += 1
    return f"{percent:.{decimals}f}%"


def interval(low: Any, high: Any, decimals: int = 1) -> str:
    """(0.3745, 0.3918) -> '37.5-39.2%'; 'n/a' when either end is missing."""
    if low is None or high is None:
        return "n/a"
    return f"{100.0 * low:.{decimals}f}-{100.0 * high:.{decimals}f}%"


def number(value: Any, decimals: int = 0) -> str:
    """A measurement: 217.0 -> '217', 1.4476 -> '1.45' (decimals=2), thousands separated; None -> 'n/a'."""
    if value is None or not math.isfinite(float(value)):
        return "n/a"
    return f"{float(value):,.{decimals}f}"


def age(value: float) -> str:
    """148.0 -> '148', 0.5 -> '0.5'."""
    return f"{value:g}"
