"""detect.training.run_folder: the run folder is consistent after a kill at any instant, or is
repaired on resume: every epoch once in metrics.csv, best.pt the epoch
last.pt records as best, no temporary file left.

In-process interruptions (an exception where the kill would land) pin down each repair with
scripted validation metrics; the subprocess test then kills a real `detect train` with SIGKILL.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from data_prep.atomic import is_temp_name
from detect.config import save_config
from detect.models.checkpoint import load_checkpoint
from detect.predictions import OperatingPoint
from detect.training import engine as engine_module
from detect.training import trainer as train_module
from detect.training.engine import ValidationResult
from detect.training.trainer import run_training
from tests.detect.train_fixtures import make_rsna, tiny_config

REPO_ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def rsna_dir(tmp_path_factory):
    return make_rsna(tmp_path_factory.mktemp("rsna"))


def _epochs_in_csv(run_dir: Path) -> list[int]:
    with open(run_dir / "metrics.csv", newline="") as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle)]


def _temp_files(run_dir: Path) -> list[str]:
    return [
        p.name
        for folder in (run_dir, run_dir / "checkpoints")
        if folder.is_dir()
        for p in folder.iterdir()
        if is_temp_name(p.name)
    ]


def assert_consistent(run_dir: Path, epochs: int) -> dict:
    """The run folder's contract after a (resumed) run of `epochs` epochs; returns last.pt."""
    last = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert last["epoch"] == epochs
    assert _epochs_in_csv(run_dir) == list(range(1, epochs + 1))  # every epoch exactly once
    assert [row["epoch"] for row in last["extra"]["metrics_history"]] == list(range(1, epochs + 1))
    best = load_checkpoint(run_dir / "checkpoints" / "best.pt")
    if last["best_epoch"] > 0:
        assert best["epoch"] == last["best_epoch"]
        assert best["best_metric"] == last["best_metric"] or best["epoch"] < last["epoch"]
    assert _temp_files(run_dir) == []
    return last


def _scripted_validation(monkeypatch, map50_by_epoch: list[float]) -> None:
    def fake_evaluate(model, loader, device, *, epoch, **kwargs):
        return ValidationResult(
            metrics={"map50": map50_by_epoch[epoch - 1], "f1": 0.5},
            operating_points={"rsna": OperatingPoint("rsna", 0.4, "scripted")},
            records=[],
            predictions=[],
        )

    monkeypatch.setattr(engine_module, "evaluate", fake_evaluate)  # what validate() calls


def _interrupt(monkeypatch, name: str, when) -> None:
    """Make trainer.<name> raise KeyboardInterrupt (where a kill would land) on the call `when` selects."""
    real = getattr(train_module, name)

    def wrapped(*args, **kwargs):
        if when(args, kwargs):
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, name, wrapped)


FAST = ("train.epochs=3", "train.max_steps_per_epoch=1")


@pytest.mark.parametrize(
    "map50_by_epoch, stopped_in_epoch, expected_best",
    [
        ([0.0, 0.0, 0.0], 1, 1),  # only epoch 1 improves; best.pt never got written
        ([0.1, 0.5, 0.2], 2, 2),  # best.pt still holds epoch 1 while last.pt says epoch 2 is the best
    ],
)
def test_a_kill_between_last_pt_and_best_pt_is_repaired_on_resume(
    rsna_dir, tmp_path, monkeypatch, map50_by_epoch, stopped_in_epoch, expected_best
):
    _scripted_validation(monkeypatch, map50_by_epoch)
    run_dir = tmp_path / "run"
    copies = []
    _interrupt(monkeypatch, "copy_file_atomic", lambda a, k: copies.append(1) or len(copies) == stopped_in_epoch)
    with pytest.raises(KeyboardInterrupt):
        run_training(tiny_config(*FAST), [rsna_dir], out_dir=run_dir, log=lambda _: None)
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["best_epoch"] == stopped_in_epoch
    monkeypatch.undo()
    _scripted_validation(monkeypatch, map50_by_epoch)

    lines: list[str] = []
    result = run_training(None, [], out_dir=run_dir, resume=True, log=lines.append)
    assert any(
        line.startswith(f"{run_dir / 'checkpoints' / 'best.pt'}: restored from last.pt (epoch {stopped_in_epoch}")
        for line in lines
    ), lines
    assert not any("was never finite" in line for line in lines), lines
    assert result.best_epoch == expected_best
    assert result.best_metrics["val_map50"] == pytest.approx(max(map50_by_epoch))
    assert assert_consistent(run_dir, 3)["best_epoch"] == expected_best


def test_a_kill_after_the_csv_row_and_before_last_pt_runs_that_epoch_once_more(rsna_dir, tmp_path, monkeypatch):
    _scripted_validation(monkeypatch, [0.1, 0.2, 0.3])
    run_dir = tmp_path / "run"
    _interrupt(monkeypatch, "save_checkpoint", lambda a, k: k["epoch"] == 2)
    with pytest.raises(KeyboardInterrupt):
        run_training(tiny_config(*FAST), [rsna_dir], out_dir=run_dir, log=lambda _: None)
    assert _epochs_in_csv(run_dir) == [1, 2]  # the row came first ...
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["epoch"] == 1  # ... the checkpoint never did
    monkeypatch.undo()
    _scripted_validation(monkeypatch, [0.1, 0.2, 0.3])
    run_training(None, [], out_dir=run_dir, resume=True, log=lambda _: None)
    assert assert_consistent(run_dir, 3)["best_epoch"] == 3


def test_resume_rebuilds_a_lost_metrics_csv_and_removes_stale_temporary_files(rsna_dir, tmp_path, monkeypatch):
    _scripted_validation(monkeypatch, [0.1, 0.2, 0.3])
    run_dir = tmp_path / "run"
    run_training(
        tiny_config("train.epochs=2", "train.max_steps_per_epoch=1"), [rsna_dir], out_dir=run_dir, log=lambda _: None
    )
    (run_dir / "metrics.csv").unlink()
    left = []
    for folder, name in ((run_dir, "metrics.csv"), (run_dir / "checkpoints", "last.pt")):
        fd, path = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)  # what a SIGKILL leaves
        os.close(fd)
        left.append(Path(path).name)
    (run_dir / "checkpoints" / "notes.tmp").write_text("not ours: kept")

    lines: list[str] = []
    run_training(None, [], out_dir=run_dir, resume=True, overrides=["train.epochs=3"], log=lines.append)
    assert f"removed 2 temporary file(s) of an interrupted write: {', '.join(left)}" in lines
    assert_consistent(run_dir, 3)
    assert (run_dir / "checkpoints" / "notes.tmp").is_file()


# ------------------------------------------------------------------- a real SIGKILL, in a subprocess


@pytest.mark.parametrize(
    "instant, epoch",
    [
        ("after_last", 1),  # between last.pt and best.pt: epoch 1 always improves val_loss (from nan)
        ("after_best", 1),
        ("after_csv", 2),  # metrics.csv has epoch 2's row, last.pt is still epoch 1's
        ("mid_last", 2),  # killed inside last.pt's write: a temporary file is left
    ],
)
def test_detect_train_killed_at_an_epoch_end_resumes_into_a_consistent_run_folder(rsna_dir, tmp_path, instant, epoch):
    recipe = tmp_path / "tiny.yaml"
    save_config(tiny_config("train.monitor=val_loss"), recipe)
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    killed = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.detect.training.kill_at",
            instant,
            str(epoch),
            "train",
            "--config",
            str(recipe),
            "--data",
            str(rsna_dir),
            "--out",
            str(run_dir),
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    last = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    if instant == "after_last":  # the state the kill left is the one the repair must handle
        assert last["epoch"] == last["best_epoch"] == 1 and not (run_dir / "checkpoints" / "best.pt").exists()
    if instant == "after_csv":
        assert _epochs_in_csv(run_dir) == [1, 2] and last["epoch"] == 1
    if instant == "mid_last":
        assert last["epoch"] == 1 and _temp_files(run_dir) != []

    lines: list[str] = []
    run_training(None, [], out_dir=run_dir, resume=True, log=lines.append)
    assert lines[0].startswith(f"resuming {run_dir} after epoch 1 ")
    assert not any("was never finite" in line for line in lines), lines
    assert_consistent(run_dir, 2)


def test_a_last_pt_without_a_history_resumes_from_the_csv_cut_after_its_epoch(rsna_dir, tmp_path, monkeypatch):
    """Checkpoints written before last.pt carried metrics_history: the file itself is the history."""
    import torch

    _scripted_validation(monkeypatch, [0.1, 0.2, 0.3])
    run_dir = tmp_path / "run"
    run_training(
        tiny_config("train.epochs=2", "train.max_steps_per_epoch=1"), [rsna_dir], out_dir=run_dir, log=lambda _: None
    )
    last_path = run_dir / "checkpoints" / "last.pt"
    state = torch.load(last_path, weights_only=True)
    del state["extra"]["metrics_history"], state["extra"]["best_metrics"]
    state["epoch"] = 1  # as if epoch 2's row had been written after epoch 1's checkpoint
    torch.save(state, last_path)
    run_training(None, [], out_dir=run_dir, resume=True, overrides=["train.epochs=3"], log=lambda _: None)
    assert _epochs_in_csv(run_dir) == [1, 2, 3]
    assert [row["epoch"] for row in load_checkpoint(last_path)["extra"]["metrics_history"]] == [1, 2, 3]
