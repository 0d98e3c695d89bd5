"""`detect eda` through typer's CliRunner: both modes, the summary, one-line errors with exit 2."""

from __future__ import annotations

from typer.testing import CliRunner

from cli import app
from data_prep.rsna import CLASS_INFO_CSV, LABELS_CSV
from tests.detect.train_fixtures import make_rsna


def _run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_eda_tables_and_folder(tmp_path):
    root = make_rsna(tmp_path / "rsna", n_images=12, prepare=False)
    result = _run("eda", "--labels", root / LABELS_CSV, "--class-info", root / CLASS_INFO_CSV, "--out", tmp_path / "t")
    assert result.exit_code == 0, result.output
    assert "RSNA Pneumonia Detection (stage 2): 12 images" in result.stdout
    assert (tmp_path / "t" / "report.html").is_file()
    result = _run(
        "eda", root, "--out", tmp_path / "f", "--images-per-class", "1", "--image-size", "32", "--workers", "1"
    )
    assert result.exit_code == 0, result.output
    assert "no manifest yet, preparing it" in result.stdout and (tmp_path / "f" / "samples.png").is_file()


def test_eda_errors_are_one_line(tmp_path):
    result = _run("eda", "--out", tmp_path / "x")
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "error: pass either DATA_DIR (a dataset folder) or --labels LABELS.csv (the tables alone), not both"
    )
    result = _run("eda", tmp_path, "--headers", tmp_path / "h.csv")
    assert result.exit_code == 2 and "--class-info and --headers go with --labels" in result.stderr
    result = _run("eda", "--labels", tmp_path / "missing.csv", "--out", tmp_path / "x")
    assert result.exit_code == 2 and result.stderr.strip() == f"error: {tmp_path / 'missing.csv'}: file not found"
    assert "Traceback" not in result.output


def test_help_lists_eda():
    result = _run("--help")
    assert result.exit_code == 0 and "eda" in result.stdout
