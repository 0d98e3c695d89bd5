"""`detect train` through typer's CliRunner: a real tiny run, and user errors as one line + exit 2."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app
from tests.detect.train_fixtures import make_rsna

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO = str(REPO_ROOT / "configs" / "demo.yaml")
FAST = [
    "--set",
    "train.epochs=1",
    "--set",
    "train.max_steps_per_epoch=2",
    "--set",
    "data.image_size_px=64",
    "--set",
    "train.batch_size=4",
    "--set",
    "model.head_hidden_dim=32",
    "--set",
    "train.device=cpu",
]


@pytest.fixture(scope="module")
def raw_rsna(tmp_path_factory):
    """Synthetic RSNA as unzipped from Kaggle: no manifest yet, so `detect train` prepares it."""
    return make_rsna(tmp_path_factory.mktemp("rsna"), n_images=20, prepare=False)


def test_train_demo_recipe_end_to_end(raw_rsna, tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "--config", DEMO, "--data", str(raw_rsna), "--out", str(out), *FAST])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[0] == f"{raw_rsna}: no manifest yet, preparing it (as `detect prepare` would)"
    assert lines[2].strip() == "20 images, 20 patients, 4 positive (20.0%)"  # prepare's summary
    assert lines[-1].startswith(("best epoch 1: ", "no finite validation metric"))
    assert f"run dir {out} (best: {out / 'checkpoints' / 'best.pt'})" in lines[-1]
    for name in ("config.yaml", "metrics.csv", "checkpoints/best.pt", "checkpoints/last.pt"):
        assert (out / name).is_file(), name
    # prepared on the fly with the recipe's split settings, and cached (data.use_cache) at the run's size
    assert (raw_rsna / "detect_prepared" / "manifest.csv").is_file()
    assert len(list((raw_rsna / "detect_prepared" / "cache" / "64").glob("*.png"))) == 20
    with open(out / "metrics.csv", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 1


def test_default_run_folder_is_runs_slash_name(raw_rsna, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        app,
        [
            "train",
            "--config",
            DEMO,
            "--data",
            str(raw_rsna),
            *FAST,
            "--set",
            "train.max_steps_per_epoch=1",
            "--set",
            "name=smoke",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "runs" / "smoke" / "checkpoints" / "best.pt").is_file()
    # a second run into the same folder is refused rather than overwriting it
    again = CliRunner().invoke(app, ["train", "--config", DEMO, "--data", str(raw_rsna), *FAST, "--set", "name=smoke"])
    assert again.exit_code == 2
    assert again.output.strip() == (
        "error: runs/smoke already holds a run (last.pt); pass --resume to continue it, "
        "or choose a new folder with --out (or --set name=...)"
    )
    resumed = CliRunner().invoke(app, ["train", "--out", "runs/smoke", "--resume", "--set", "train.epochs=2"])
    assert resumed.exit_code == 0, resumed.output
    assert resumed.output.startswith("resuming runs/smoke after epoch 1 (step 1,")


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--set", "train.lrr=0.1"],
            "error: --set train.lrr=0.1: unknown config key 'train.lrr' (did you mean 'train.lr'?); "
            "valid keys in train: amp, batch_size, ",
        ),
        (
            ["--set", "train.optimizer=adam"],
            "error: --set train.optimizer=adam: config key 'train.optimizer' is 'adam'; choose one of: sgd, adamw",
        ),
        (["--set", "lr"], "error: override 'lr' must look like key=value, e.g. train.lr=0.01"),
    ],
)
def test_bad_settings_exit_2_with_one_line(raw_rsna, tmp_path, args, message):
    result = CliRunner().invoke(
        app, ["train", "--config", DEMO, "--data", str(raw_rsna), "--out", str(tmp_path / "r"), *args]
    )
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1
    assert result.output.startswith(message)


def test_no_config_exits_2(tmp_path):
    result = CliRunner().invoke(app, ["train", "--data", str(tmp_path)])
    assert result.exit_code == 2
    assert result.output.strip() == (
        "error: no config given: pass --config FILE (or --resume --out RUN_DIR to reuse RUN_DIR/config.yaml)"
    )
