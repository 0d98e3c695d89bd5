"""OUT/report.md with the per-key plot and the observations, beside sweep.csv (detect.sweep.table)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from matplotlib.figure import Figure

from data_prep.atomic import write_text_atomic
from detect.outputs.figures import save_figure
from detect.sweep.observations import observations, summarize_key
from detect.sweep.table import csv_text, format_number, table_rows

if TYPE_CHECKING:
    from detect.sweep.grid import GridAxis
    from detect.sweep.run import RunResult


def observation_rows(results: Sequence[RunResult], metric: str) -> list[dict[str, Any]]:
    """What detect.sweep.observations reads: each run's params and its best `metric` (nan if none)."""
    return [
        {"params": r.params, "value": r.best.get(metric, math.nan) if r.status == "finished" else math.nan}
        for r in results
    ]


def plot_by_key(rows: Sequence[dict[str, Any]], axes: Sequence[GridAxis], metric: str, path: Path) -> None:
    """One panel per swept key: the mean metric of each value, error bar = the std over the other keys."""
    fig = Figure(figsize=(3.6 * len(axes), 3.4), dpi=110, layout="constrained")
    for i, axis in enumerate(axes, start=1):
        ax = fig.add_subplot(1, len(axes), i)
        summary = summarize_key(rows, axis.key, axis.texts)
        positions = list(range(len(summary)))
        ax.errorbar(
            positions,
            [s[1] for s in summary],
            yerr=[0.0 if math.isnan(s[2]) else s[2] for s in summary],
            fmt="o-",
            capsize=4,
        )
        ax.set_xticks(positions, [s[0] for s in summary], rotation=20, fontsize=8)
        ax.set(xlabel=axis.key, ylabel=f"best {metric}" if i == 1 else "", title=axis.key)
        ax.grid(alpha=0.3)
    save_figure(fig, path)


def report_markdown(
    results: Sequence[RunResult], axes: Sequence[GridAxis], metric: str, mode: str, table: Sequence[dict[str, Any]]
) -> str:
    rows = observation_rows(results, metric)
    lines = [
        "# detect sweep",
        "",
        f"{len(results)} runs over {' x '.join(f'{a.key} ({len(a.texts)} values)' for a in axes)}; compared on "
        f"each run's best {metric} ({'higher' if mode == 'max' else 'lower'} is better). "
        "Numbers measured on synthetic data say nothing about real radiographs.",
        "",
        "## Observations",
        "",
    ]
    lines += [f"- {line}" for line in observations(rows, [(a.key, a.texts) for a in axes], metric, mode)]
    lines += [
        "",
        "## Each key's values",
        "",
        "Mean and standard deviation of the best " + metric + " over every combination of the other keys.",
        "",
    ]
    for axis in axes:
        lines += [f"| {axis.key} | mean | std | runs |", "|---|---|---|---|"]
        lines += [
            f"| {value} | {format_number(mean)} | {format_number(std)} | {n} |"
            for value, mean, std, n in summarize_key(rows, axis.key, axis.texts)
        ]
        lines.append("")
    lines += ["![each key's values](by_key.png)", "", "## Runs", ""]
    columns = [
        "run",
        "status",
        *(a.key for a in axes),
        "best_epoch",
        f"final_{metric}",
        f"best_{metric}",
        "train_seconds",
    ]
    lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row.get(c, "")) for c in columns) + " |" for row in table]
    lines += ["", "Every run's final and best value of every validation metric: sweep.csv."]
    return "\n".join(lines) + "\n"


def write_sweep_outputs(
    out_dir: Path, results: Sequence[RunResult], axes: Sequence[GridAxis], metric: str, mode: str
) -> dict[str, Path]:
    """sweep.csv, report.md and by_key.png in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out_dir / "sweep.csv", "report": out_dir / "report.md", "plot": out_dir / "by_key.png"}
    table = table_rows(results, axes)
    plot_by_key(observation_rows(results, metric), axes, metric, paths["plot"])
    write_text_atomic(paths["csv"], csv_text(table))
    write_text_atomic(paths["report"], report_markdown(results, axes, metric, mode, table))
    return paths
