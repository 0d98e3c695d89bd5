"""The command line's own surface: --version, plain help that keeps its text, one name per idea."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app

ROOT = Path(__file__).resolve().parents[1]


def _help(*command: str) -> str:
    result = CliRunner().invoke(app, [*command, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    return result.output


def test_version_from_the_cli_the_module_and_the_package():
    import detect

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"detect {detect.__version__}"
    assert detect.__version__[0].isdigit()
    module = subprocess.run(
        [sys.executable, "-m", "detect", "--version"], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert module.returncode == 0 and module.stdout.strip() == f"detect {detect.__version__}"


def test_help_keeps_brackets_and_flags_take_no_value():
    text = _help("sweep")
    assert "[a,b] for lists" in text
    train = _help("train")
    assert "<bool>" not in train and "--resume " in train


@pytest.mark.parametrize(
    "command, option",
    [
        (("eval",), "--batch-size"),
        (("eval",), "--device"),
        (("synth", "rsna"), "--seed"),
        (("synth", "kermany"), "--seed"),
    ],
)
def test_every_option_has_help(command, option):
    line = next(line for line in _help(*command).splitlines() if line.strip().startswith(option))
    assert len(line.split(option, 1)[1].split()) > 1, line  # the option's name is followed by its explanation


def test_one_name_per_idea_with_the_old_spellings_hidden():
    assert "--image-size" in _help("synth", "rsna") and "--size " not in _help("synth", "rsna")
    for command in ("infer", "serve"):
        text = _help(command)
        assert "--threads" in text and "--workers" not in text
    for command in ("prepare", "eda"):
        assert "--workers" in _help(command)  # processes


def test_train_device_and_epochs_are_shortcuts_for_their_keys():
    result = CliRunner().invoke(
        app, ["train", "--config", "configs/demo.yaml", "--device", "cpu", "--epochs", "3", "--print-config"]
    )
    assert result.exit_code == 0, result.output
    assert "  epochs: 3  # default: 12" in result.output and "  device: cpu  # default: auto" in result.output
    bad = CliRunner().invoke(app, ["train", "--config", "configs/demo.yaml", "--device", "tpu", "--print-config"])
    assert bad.exit_code == 2 and bad.output.startswith("error: --set train.device=tpu: config key 'train.device'")
