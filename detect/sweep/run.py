"""`detect sweep`: one training run per combination of the grid, resumable, then the table and report.

    outcome = run_sweep("configs/demo.yaml", ["data/rsna"], ["train.lr=0.01,0.02", "train.batch_size=8,16"],
                        out_dir="sweep")

Every combination's config is built (and so checked) before the first run trains. Each run
trains into OUT/runs/<run name> through detect.training.trainer.run_training and, when done,
writes OUT/runs/<run name>/sweep_result.json atomically (its final and best validation
metrics): the finished marker. A run with a marker for the same config is not trained again;
one with a last.pt and no marker (killed) resumes from its last epoch. A run that diverges
(TrainingDivergedError: a learning rate too high is a sweep's normal finding) is recorded as
failed, with the error, and the sweep goes on.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from data_prep.atomic import check_writable, write_text_atomic
from data_prep.errors import ConfigError
from detect.config import Config, config_from_dict, config_to_dict, load_config
from detect.evaluation.report import to_json_safe
from detect.models.checkpoint import load_checkpoint
from detect.sweep.grid import GridAxis, check_grid, combinations, parse_grid, run_name
from detect.sweep.report import write_sweep_outputs
from detect.tracking import log_outputs, parent_run
from detect.training.data_setup import check_data_dirs
from detect.training.engine import TrainingDivergedError
from detect.training.trainer import run_training

RESULT_FILE = "sweep_result.json"
RESULT_VERSION = 1


@dataclass(frozen=True)
class SweepRun:
    """One combination: its swept values (as given), its resolved config, its run folder."""

    name: str
    params: dict[str, str]
    config: Config
    run_dir: Path

    @property
    def result_path(self) -> Path:
        return self.run_dir / RESULT_FILE


@dataclass
class RunResult:
    """A finished (or failed) run: final = the last epoch's validation metrics, best = those of
    the best epoch by train.monitor."""

    name: str
    params: dict[str, str]
    status: str  # "finished" | "failed: <error>"
    final: dict[str, float] = field(default_factory=dict)
    best: dict[str, float] = field(default_factory=dict)
    best_epoch: int = 0
    epochs_run: int = 0
    train_seconds: float = math.nan
    config: dict[str, Any] = field(default_factory=dict, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": RESULT_VERSION,
            **{
                k: getattr(self, k)
                for k in (
                    "name",
                    "params",
                    "status",
                    "final",
                    "best",
                    "best_epoch",
                    "epochs_run",
                    "train_seconds",
                    "config",
                )
            },
        }


@dataclass
class SweepOutcome:
    results: list[RunResult]
    axes: list[GridAxis]
    metric: str
    paths: dict[str, Path]
    trained: list[str]


def plan_sweep(
    config: Config | str | Path | None, grid: Sequence[str], out_dir: str | Path, *, overrides: Sequence[str] = ()
) -> tuple[list[GridAxis], list[SweepRun]]:
    """The axes and one SweepRun per combination; every ConfigError before anything trains."""
    if not grid:
        raise ConfigError("no --grid given: pass at least one, e.g. --grid train.lr=0.01,0.02")
    base = config if isinstance(config, Config) else load_config(config, [])
    base = config_from_dict(config_to_dict(base), list(overrides))
    axes = [parse_grid(text) for text in grid]
    check_grid(base, axes)
    runs, names = [], set()
    for combo in combinations(axes):
        name = run_name(combo)
        if name in names:
            raise ConfigError(
                f"--grid: two combinations share the run folder name '{name}'; write the values differently"
            )
        names.add(name)
        try:
            cfg = config_from_dict(config_to_dict(base), [f"{k}={v}" for k, v in combo.items()])
        except ConfigError as exc:
            raise ConfigError(f"--grid combination {name}: {exc}") from None
        runs.append(SweepRun(name, combo, cfg, Path(out_dir) / "runs" / name))
    return axes, runs


def read_finished(run: SweepRun) -> RunResult | None:
    """The run's result when its marker exists and holds the planned config, else None."""
    if not run.result_path.is_file():
        return None
    try:
        data = json.loads(run.result_path.read_text(encoding="utf-8"))
        data.pop("version")
        for key in ("final", "best"):  # a non-finite metric is stored as null (the file is strict JSON)
            data[key] = {k: math.nan if v is None else v for k, v in (data.get(key) or {}).items()}
        result = RunResult(**data)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return result if result.config == config_to_dict(run.config) else None


def train_run(run: SweepRun, data_dirs: Sequence[str | Path], log: Callable[[str], None]) -> RunResult:
    """Train (or resume) one combination and write its finished marker."""
    last = run.run_dir / "checkpoints" / "last.pt"
    resume = last.is_file()
    log(f"[{run.name}] {'resuming' if resume else 'training'} in {run.run_dir}")
    try:
        trained = run_training(
            run.config, data_dirs, out_dir=run.run_dir, resume=resume, log=lambda line: log(f"[{run.name}] {line}")
        )
    except TrainingDivergedError as exc:
        log(f"[{run.name}] failed: {exc}")
        result = RunResult(run.name, run.params, f"failed: {exc}", config=config_to_dict(run.config))
    else:
        final = {k: float(v) for k, v in load_checkpoint(trained.last_checkpoint)["metrics"].items()}
        result = RunResult(
            run.name,
            run.params,
            "finished",
            final=final,
            best={k: float(v) for k, v in trained.best_metrics.items()},
            best_epoch=trained.best_epoch,
            epochs_run=trained.epochs_completed,
            train_seconds=trained.train_seconds,
            config=config_to_dict(run.config),
        )
    write_text_atomic(run.result_path, json.dumps(to_json_safe(result.to_json()), allow_nan=False))
    return result


def run_sweep(
    config: Config | str | Path | None,
    data_dirs: Sequence[str | Path],
    grid: Sequence[str],
    out_dir: str | Path = "sweep",
    *,
    overrides: Sequence[str] = (),
    metric: str | None = None,
    log: Callable[[str], None] = print,
) -> SweepOutcome:
    """See the module docstring. `metric`: the validation metric the report compares (default:
    the config's train.monitor)."""
    check_data_dirs(data_dirs)
    axes, runs = plan_sweep(config, grid, out_dir, overrides=overrides)
    metric = metric or runs[0].config.train.monitor
    check_writable(out_dir, expect="folder", what="--out")
    log(f"sweep: {len(runs)} runs ({' x '.join(f'{len(a.texts)} {a.key}' for a in axes)}) into {out_dir}")
    results, trained = [], []
    mode = "min" if metric == "val_loss" else "max"
    with parent_run(out_dir, runs[0].config, "sweep") as parent:  # MLflow: each combination a nested run
        for run in runs:
            finished = read_finished(run)
            if finished is not None:
                log(f"[{run.name}] finished already ({run.result_path}): not trained again")
                results.append(finished)
                continue
            results.append(train_run(run, data_dirs, log))
            trained.append(run.name)
        paths = write_sweep_outputs(Path(out_dir), results, axes, metric, mode)
        log_outputs(parent, paths)
    return SweepOutcome(results, axes, metric, paths, trained)
