"""OUT/sweep.csv: one row per run.

sweep.csv columns: run (its folder under OUT/runs), status (finished | failed: <error>), one
column per swept key (the value as given), best_epoch, epochs_run, train_seconds, then
final_<metric> (the last epoch's validation value) and best_<metric> (at the best epoch by
train.monitor) for every validation metric any run reported.
"""

from __future__ import annotations

import csv
import io
import math
from typing import TYPE_CHECKING, Any, Sequence

from data_prep.spreadsheet import spreadsheet_safe

if TYPE_CHECKING:
    from detect.sweep.grid import GridAxis
    from detect.sweep.run import RunResult


def format_number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) and math.isfinite(value) else ""


def table_rows(results: Sequence[RunResult], axes: Sequence[GridAxis]) -> list[dict[str, Any]]:
    metrics = sorted({k for r in results for k in (*r.final, *r.best)})
    rows = []
    for r in results:
        row: dict[str, Any] = {"run": r.name, "status": r.status}
        row.update({axis.key: r.params.get(axis.key, "") for axis in axes})
        row.update(best_epoch=r.best_epoch, epochs_run=r.epochs_run, train_seconds=format_number(r.train_seconds))
        row.update({f"final_{m}": format_number(r.final.get(m, math.nan)) for m in metrics})
        row.update({f"best_{m}": format_number(r.best.get(m, math.nan)) for m in metrics})
        rows.append(row)
    return rows


def csv_text(rows: Sequence[dict[str, Any]]) -> str:
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n", restval="")
    writer.writeheader()
    writer.writerows({key: spreadsheet_safe(value) for key, value in row.items()} for row in rows)
    return buffer.getvalue()
