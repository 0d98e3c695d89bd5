"""The comparison's own plot: test accuracy against inference time, one point per model.

ROC curves and confusion matrices are drawn by detect.outputs.plots, as in `detect eval`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from detect.outputs.figures import save_figure

# Inference times spanning at least this factor are drawn on a log axis (a basic CNN and a
# DenseNet differ by 10-100x); closer ones on a linear axis, where a log axis would leave a
# single decade with overlapping minor labels.
LOG_AXIS_MIN_RATIO = 10.0


def time_axis_scale(ms_per_image: Sequence[float]) -> str:
    """'log' when the finite positive times span at least LOG_AXIS_MIN_RATIO, else 'linear'."""
    times = [ms for ms in ms_per_image if math.isfinite(ms) and ms > 0]
    return "log" if times and max(times) / min(times) >= LOG_AXIS_MIN_RATIO else "linear"


def _minor_log_label(ms: float, _pos: int) -> str:
    if ms <= 0:
        return ""
    leading = ms / 10 ** math.floor(math.log10(ms))
    return f"{ms:g}" if round(leading, 6) in (2.0, 5.0) else ""


def plot_accuracy_vs_time(points: Sequence[tuple[str, float, float, float, float]], path: Path) -> None:
    """points: (model, inference ms/image, accuracy, CI low, CI high); error bars = the 95% interval."""
    fig = Figure(figsize=(5.5, 4.5), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    for name, ms, accuracy, low, high in points:
        if not (math.isfinite(ms) and math.isfinite(accuracy)):
            continue
        below = accuracy - low if math.isfinite(low) else 0.0
        above = high - accuracy if math.isfinite(high) else 0.0
        ax.errorbar([ms], [accuracy], yerr=[[below], [above]], fmt="o", capsize=3, label=name)
        ax.annotate(name, (ms, accuracy), textcoords="offset points", xytext=(5, 5), fontsize=8)
    ax.set(
        xlabel="inference time (ms per image, through the Predictor)",
        ylabel="test accuracy (95% bootstrap interval)",
        title="Accuracy against inference time",
    )
    if time_axis_scale([ms for _name, ms, *_rest in points]) == "log":
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda ms, _pos: f"{ms:g}"))  # 1, 10, 100: not 10^0
        ax.xaxis.set_minor_formatter(FuncFormatter(_minor_log_label))  # 2 and 5 of each decade, to read the points
    ax.grid(alpha=0.3)
    save_figure(fig, path)
