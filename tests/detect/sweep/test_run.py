"""detect sweep end to end on tiny runs: the table and report, a killed run resumes, finished runs are skipped."""

from __future__ import annotations

import csv
import json

import pytest

from detect.config import config_from_dict, config_to_dict
from detect.models.checkpoint import load_checkpoint
from detect.sweep import run as sweep_run
from detect.sweep.run import plan_sweep, read_finished, train_run
from detect.training.engine import TrainingDivergedError
from detect.training.trainer import run_training
from tests.detect.train_fixtures import make_kermany, tiny_config

GRID = ["train.lr=0.01,0.02"]
SILENT = lambda _line: None  # noqa: E731


def _recipe():
    return tiny_config("train.monitor=val_f1", "train.max_steps_per_epoch=1", "train.epochs=2")


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """A sweep whose first run was killed after epoch 1 of 2 (a last.pt, no marker)."""
    root = tmp_path_factory.mktemp("sweep")
    data = make_kermany(root / "kermany", n_images=24)
    out = root / "out"
    _axes, runs = plan_sweep(_recipe(), GRID, out)
    half = config_from_dict(config_to_dict(runs[0].config), ["train.epochs=1"])
    run_training(half, [data], out_dir=runs[0].run_dir, log=SILENT)
    lines: list[str] = []
    outcome = sweep_run.run_sweep(_recipe(), [data], GRID, out, log=lines.append)
    return data, out, outcome, lines


def test_writes_every_runs_final_and_best_metrics(swept):
    _data, out, outcome, _lines = swept
    with open(out / "sweep.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["run"] for r in rows] == ["train.lr=0.01", "train.lr=0.02"]
    assert [r["train.lr"] for r in rows] == ["0.01", "0.02"] and {r["status"] for r in rows} == {"finished"}
    for row, result in zip(rows, outcome.results):
        assert row["final_val_f1"] != "" and float(row["best_val_f1"]) == pytest.approx(result.best["val_f1"], rel=1e-3)
        assert int(row["epochs_run"]) == 2
    report = (out / "report.md").read_text()
    assert "## Observations" in report and "- best run: train.lr=" in report
    assert (out / "by_key.png").is_file() and outcome.metric == "val_f1"


def test_a_killed_run_resumes_instead_of_restarting(swept):
    _data, out, outcome, lines = swept
    assert "[train.lr=0.01] resuming in " + str(out / "runs" / "train.lr=0.01") in lines
    last = load_checkpoint(out / "runs" / "train.lr=0.01" / "checkpoints" / "last.pt")
    assert last["epoch"] == 2 and last["global_step"] == 2
    assert outcome.trained == ["train.lr=0.01", "train.lr=0.02"]


def test_finished_runs_are_not_trained_again(swept, monkeypatch):
    data, out, _outcome, _lines = swept

    def refuse(*_args, **_kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(sweep_run, "run_training", refuse)
    again = sweep_run.run_sweep(_recipe(), [data], GRID, out, log=SILENT)
    assert again.trained == [] and len(again.results) == 2


def test_a_changed_recipe_is_not_taken_for_finished(swept):
    _data, out, _outcome, _lines = swept
    _axes, runs = plan_sweep(
        tiny_config("train.monitor=val_f1", "train.max_steps_per_epoch=1", "train.epochs=3"), GRID, out
    )
    assert read_finished(runs[0]) is None  # epochs 2 -> 3: trained on (resumed), not skipped


def test_a_diverged_run_is_recorded_and_not_retried(tmp_path, monkeypatch):
    def diverge(*_args, **_kwargs):
        raise TrainingDivergedError("non-finite loss at step 1 (epoch 1); lower train.lr (now 100)")

    monkeypatch.setattr(sweep_run, "run_training", diverge)
    _axes, runs = plan_sweep(_recipe(), ["train.lr=100"], tmp_path)
    result = train_run(runs[0], [tmp_path], SILENT)
    assert result.status.startswith("failed: non-finite loss at step 1")
    assert json.loads(runs[0].result_path.read_text())["status"] == result.status
    again = read_finished(runs[0])
    assert again is not None and (again.name, again.status, again.best) == (result.name, result.status, {})
