"""A matplotlib `Figure` written as a PNG file, for every report's plots (evaluation, EDA,
compare, sweep). Needs matplotlib only: `detect eda` on the label tables draws its plots
without importing scikit-learn, which the evaluation's curves (detect/outputs/plots.py) need."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from data_prep.atomic import atomic_write


def save_figure(fig: Figure, path: Path) -> None:
    """Render `fig` as PNG into `path`, atomically (data_prep.atomic): a failed write keeps the old plot."""
    with atomic_write(path) as handle:
        fig.savefig(handle, format="png")
