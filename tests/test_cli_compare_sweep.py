"""`detect compare` / `detect sweep` through typer's CliRunner: user errors are one line and exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app

DEMO = str(Path(__file__).resolve().parents[1] / "configs" / "demo.yaml")


def _invoke(args):
    result = CliRunner().invoke(app, args)
    return result.exit_code, result.output.strip().splitlines()


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["compare", "--models", "resnet18_fpn,nope", "--config", DEMO, "--data", "."],
            "error: --models: 'nope' is not a known model; available models: ",
        ),
        (
            ["compare", "--models", "resnet18_fpn,resnet50_fpn", "--config", DEMO, "--data", "no/such/dir"],
            "error: --data no/such/dir: folder not found",
        ),
        (
            ["compare", "--models", "resnet18_fpn,resnet50_fpn", "--config", DEMO, "--data", ".", "--epochs", "0"],
            "error: --epochs must be >= 1, got 0",
        ),
        (
            ["compare", "--models", "resnet18_fpn", "--config", DEMO, "--data", "."],
            "error: --models: name at least two models to compare",
        ),
        (
            ["sweep", "--config", DEMO, "--data", ".", "--grid", "train.lr"],
            "error: --grid 'train.lr' must look like key=value1,value2",
        ),
        (
            ["sweep", "--config", DEMO, "--data", ".", "--grid", "train.lr="],
            "error: --grid 'train.lr=' has an empty value",
        ),
        (
            ["sweep", "--config", DEMO, "--data", ".", "--grid", "train.lrate=0.1,0.2"],
            "error: --grid train.lrate=0.1,0.2: unknown config key 'train.lrate' (did you mean 'train.lr'?); valid keys in train: ",
        ),
        (
            ["sweep", "--config", DEMO, "--data", "no/such/dir", "--grid", "train.lr=0.1,0.2"],
            "error: --data no/such/dir: folder not found",
        ),
        (["sweep", "--config", DEMO, "--data", "."], "error: no --grid given"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(args, message):
    code, lines = _invoke(args)
    assert code == 2 and len(lines) == 1 and lines[0].startswith(message), lines


def test_help_names_the_outputs():
    code, lines = _invoke(["compare", "--help"])
    assert code == 0 and "compare.csv" in " ".join(lines)
    code, lines = _invoke(["sweep", "--help"])
    assert code == 0 and "sweep.csv" in " ".join(lines)
