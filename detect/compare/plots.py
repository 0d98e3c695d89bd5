"""The comparison's own plot: test accuracy against inference time, one point per model.

ROC curves and confusion matrices are drawn by detect.outputs.plots, as in `detect eval`.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

from matplotlib.figure import Figure

from detect.outputs.plots import save_figure


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
    ax.set(xlabel="inference time (ms per image, through the Predictor)", ylabel="test accuracy (95% bootstrap interval)",
           title="Accuracy against inference time")
    ax.set_xscale("log")
    ax.grid(alpha=0.3)
    save_figure(fig, path)
