"""What a sweep's table says, computed from its numbers and put in sentences.

    summary = summarize_key(rows, "train.lr", metric)   [(value, mean, std, n), ...]
    lines = observations(rows, keys, metric, mode)        ["train.lr 0.02 beat 0.01 by 0.070 val_f1 on average (3 of 4 pairs)", ...]
    interaction_observation(rows, key, values, by, by_values, metric, mode)   a sentence when the best value of key
                                                          changes with by's value, else None

A row is one finished run: {'params': {key: value text}, 'value': the metric (nan when the run
failed or never measured it)}. For a key, the value with the best mean metric is compared with
each other value on PAIRS of runs that share every other swept key's value, so that the other
keys' effects cancel: the mean paired difference and how many pairs it won. A key's average
winner can hide that it loses under some value of another key (a learning rate that suits one
loss and not the other): for each pair of keys, the report says so when the best value of one
changes with the other's value. `mode` 'max' (higher is better: F1, AUC, mAP) or 'min' (val_loss).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def summarize_key(
    rows: Sequence[dict[str, Any]], key: str, values: Sequence[str]
) -> list[tuple[str, float, float, int]]:
    """Per value of `key` (in the given order): (value, mean, population std, n runs) of the
    finite metric values, over every combination of the other keys."""
    out = []
    for value in values:
        found = [r["value"] for r in rows if r["params"].get(key) == value and _finite(r["value"])]
        out.append(
            (
                value,
                float(np.mean(found)) if found else math.nan,
                float(np.std(found)) if found else math.nan,
                len(found),
            )
        )
    return out


def paired_differences(rows: Sequence[dict[str, Any]], key: str, better: str, other: str) -> list[float]:
    """metric(key=better) - metric(key=other) over the pairs of runs equal in every other key."""

    def rest(row: dict[str, Any]) -> tuple:
        return tuple(sorted((k, v) for k, v in row["params"].items() if k != key))

    others = {rest(r): r["value"] for r in rows if r["params"].get(key) == other and _finite(r["value"])}
    return [
        r["value"] - others[rest(r)]
        for r in rows
        if r["params"].get(key) == better and _finite(r["value"]) and rest(r) in others
    ]


def _best_first(summary: list[tuple[str, float, float, int]], mode: str) -> list[tuple[str, float, float, int]]:
    defined = [s for s in summary if math.isfinite(s[1])]
    return sorted(defined, key=lambda s: -s[1] if mode == "max" else s[1])  # a stable sort: ties keep the given order


def key_observations(
    rows: Sequence[dict[str, Any]], key: str, values: Sequence[str], metric: str, mode: str
) -> list[str]:
    """One sentence per other value of `key`: how the best value did against it, pair by pair."""
    ranked = _best_first(summarize_key(rows, key, values), mode)
    if len(ranked) < 2:
        return [f"{key}: fewer than two values have a finite {metric}; nothing to compare"]
    best = ranked[0][0]
    lines = []
    for other, *_ in ranked[1:]:
        diffs = paired_differences(rows, key, best, other)
        if not diffs:
            lines.append(f"{key} {best} vs {other}: no pair of runs equal in the other keys")
            continue
        gain = float(np.mean(diffs)) if mode == "max" else -float(np.mean(diffs))
        wins = sum(1 for d in diffs if (d > 0 if mode == "max" else d < 0))
        pairs = f"({wins} of {len(diffs)} pair{'s' if len(diffs) != 1 else ''})"
        if gain == 0:
            lines.append(
                f"{key} {best} and {other} tied on {metric} ({len(diffs)} pair{'s' if len(diffs) != 1 else ''})"
            )
        elif mode == "max":
            lines.append(f"{key} {best} beat {other} by {gain:.3f} {metric} on average {pairs}")
        else:
            lines.append(f"{key} {best} beat {other} by {gain:.3f} lower {metric} on average {pairs}")
    return lines


def interaction_observation(
    rows: Sequence[dict[str, Any]],
    key: str,
    values: Sequence[str],
    by: str,
    by_values: Sequence[str],
    metric: str,
    mode: str,
) -> str | None:
    """A sentence when the best value of `key` (by its mean metric among the runs with one value
    of `by`, over any further keys) is not the same for every value of `by`; None when it is, or
    when some value of `by` has fewer than two values of `key` with a finite metric."""
    winners = []
    for by_value in by_values:
        subset = [r for r in rows if r["params"].get(by) == by_value]
        ranked = _best_first(summarize_key(subset, key, values), mode)
        if len(ranked) < 2:
            return None
        winners.append((by_value, ranked[0][0], abs(ranked[0][1] - ranked[1][1])))
    if len({winner for _b, winner, _margin in winners}) < 2:
        return None
    parts = [
        f"{winner} is best with {by}={by_value} (by {margin:.3f} {metric})" for by_value, winner, margin in winners
    ]
    return f"{key} and {by} interact: the best {key} depends on {by}: " + "; ".join(parts)


def observations(
    rows: Sequence[dict[str, Any]], axes: Sequence[tuple[str, Sequence[str]]], metric: str, mode: str
) -> list[str]:
    """The report's 'observations': the best run, each key's comparisons, the keys ranked by
    effect, then each pair of keys that interact (once per pair).

    `axes`: (key, its value texts) in grid order.
    """
    finished = [r for r in rows if _finite(r["value"])]
    if not finished:
        return [f"no run has a finite {metric}"]
    best_row = (max if mode == "max" else min)(finished, key=lambda r: r["value"])
    setting = ", ".join(f"{k}={v}" for k, v in best_row["params"].items())
    lines = [
        f"best run: {setting} with {metric} {best_row['value']:.3f} ({len(finished)} of {len(rows)} runs finished with a value)"
    ]
    spans = []
    for key, values in axes:
        lines += key_observations(rows, key, values, metric, mode)
        means = [s[1] for s in summarize_key(rows, key, values) if math.isfinite(s[1])]
        if len(means) >= 2:
            spans.append((max(means) - min(means), key))
    if len(spans) >= 2:
        spans.sort(key=lambda s: -s[0])
        ranked = ", ".join(f"{key} ({span:.3f})" for span, key in spans)
        lines.append(f"keys by the spread of their values' mean {metric}, largest first: {ranked}")
    for i, (key, values) in enumerate(axes):
        for by, by_values in axes[i + 1 :]:
            line = interaction_observation(rows, key, values, by, by_values, metric, mode) or interaction_observation(
                rows, by, by_values, key, values, metric, mode
            )
            if line is not None:
                lines.append(line)
    return lines
