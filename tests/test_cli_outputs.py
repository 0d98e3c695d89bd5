"""Output paths through the CLI: a blocked, unwritable or full output
is one line `error: <path>: ...` and exit 2, found before the work starts, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app
from tests.data_prep.fs_fixtures import fill_disk, read_only_filesystem, small_filesystem
from tests.detect.evaluation.test_submission_eval import LABELS_CSV, PREDICTIONS_CSV
from tests.detect.inference.test_batch import save_tiny_checkpoint, write_images
from tests.detect.train_fixtures import make_rsna

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO = str(REPO_ROOT / "configs" / "demo.yaml")


def _run(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


def _one_error_line(result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def raw_rsna(tmp_path_factory) -> Path:
    return make_rsna(tmp_path_factory.mktemp("rsna"), n_images=8, prepare=False)


@pytest.fixture()
def blocked(tmp_path) -> Path:
    """A path below a file: `--out f/x` where f is a file."""
    (tmp_path / "f").write_text("a file, not a folder")
    return tmp_path / "f" / "x"


def _commands(tmp_path: Path, raw_rsna: Path, out: Path) -> dict[str, list[object]]:
    """Each command with `out` as its output; the inputs are such that any work done before
    the check would end in a different error (a missing checkpoint, a never-prepared folder)."""
    (tmp_path / "sub.csv").write_text(PREDICTIONS_CSV)
    (tmp_path / "labels.csv").write_text(LABELS_CSV)
    images = write_images(tmp_path / "in")
    return {
        "infer --out": ["infer", images["a"], "--checkpoint", tmp_path / "missing.pt", "--out", out / "boxes.json"],
        "infer --submission": [
            "infer",
            images["a"],
            "--checkpoint",
            tmp_path / "missing.pt",
            "--out",
            tmp_path / "ok.json",
            "--submission",
            out / "sub.csv",
        ],
        "infer --overlay": [
            "infer",
            images["a"],
            "--checkpoint",
            tmp_path / "missing.pt",
            "--out",
            tmp_path / "ok.json",
            "--overlay",
            out / "overlays",
        ],
        "prepare": ["prepare", raw_rsna, "--out", out / "prepared"],
        "train": ["train", "--config", DEMO, "--data", raw_rsna, "--out", out / "run"],
        "eval": ["eval", "--checkpoint", tmp_path / "missing.pt", "--data", raw_rsna, "--out", out / "eval"],
        "eval --predictions": [
            "eval",
            "--predictions",
            tmp_path / "sub.csv",
            "--labels",
            tmp_path / "labels.csv",
            "--out",
            out / "eval",
        ],
        "demo": ["demo", "--quick", "--out", out / "demo"],
    }


COMMANDS = [
    "infer --out",
    "infer --submission",
    "infer --overlay",
    "prepare",
    "train",
    "eval",
    "eval --predictions",
    "demo",
]


@pytest.mark.parametrize("command", COMMANDS)
def test_an_output_below_a_file_is_refused_before_any_work(command, tmp_path, raw_rsna, blocked):
    args = _commands(tmp_path, raw_rsna, blocked)[command]
    target = next(Path(str(a)) for a in args if str(a).startswith(str(blocked)))
    line = _one_error_line(_run(*args))
    assert line == f"error: {target}: cannot write: {blocked.parent} is a file, not a folder"
    assert not (raw_rsna / "detect_prepared").exists()  # nothing was prepared, trained or predicted


@pytest.mark.parametrize("command", COMMANDS)
def test_an_output_on_a_read_only_file_system_is_refused_before_any_work(command, tmp_path, raw_rsna):
    with read_only_filesystem(tmp_path / "ro") as ro:
        args = _commands(tmp_path, raw_rsna, ro)[command]
        target = next(Path(str(a)) for a in args if str(a).startswith(str(ro)))
        line = _one_error_line(_run(*args))
        assert line == f"error: {target}: cannot write in {ro} (Read-only file system)"
    assert not (raw_rsna / "detect_prepared").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["infer", "{img}", "--checkpoint", "{tmp}/missing.pt", "--out", "{tmp}"],
            "error: {tmp}: --out must name a file, not a folder",
        ),
        (
            ["infer", "{img}", "--checkpoint", "{tmp}/missing.pt", "--out", "{tmp}/b.json", "--overlay", "{img}"],
            "error: {img}: --overlay must name a folder, but this is a file",
        ),
        (
            ["eval", "--predictions", "{tmp}/sub.csv", "--labels", "{tmp}/labels.csv", "--out", "{img}"],
            "error: {img}: --out must name a folder, but this is a file",
        ),
        (["demo", "--quick", "--out", "{img}"], "error: {img}: --out must name a folder, but this is a file"),
    ],
)
def test_a_file_given_for_a_folder_and_the_reverse(tmp_path, args, message):
    image = write_images(tmp_path / "in")["a"]
    (tmp_path / "sub.csv").write_text(PREDICTIONS_CSV)
    (tmp_path / "labels.csv").write_text(LABELS_CSV)
    line = _one_error_line(_run(*[a.format(tmp=tmp_path, img=image) for a in args]))
    assert line == message.format(tmp=tmp_path, img=image)


def test_infer_on_a_full_disk_keeps_the_previous_boxes_json(tmp_path):
    """A failed infer keeps the previous valid boxes.json (never 4 KB of invalid JSON in its place)."""
    checkpoint = save_tiny_checkpoint(tmp_path / "best.pt")
    images = write_images(tmp_path / "in")
    with small_filesystem(tmp_path / "full", size_kib=256) as full:
        good = _run("infer", images["a"], "--checkpoint", checkpoint, "--out", full / "boxes.json", "--device", "cpu")
        assert good.exit_code == 0, good.output
        before = (full / "boxes.json").read_bytes()
        fill_disk(full)
        result = _run(
            "infer", tmp_path / "in", "--checkpoint", checkpoint, "--out", full / "boxes.json", "--device", "cpu"
        )
        assert result.exit_code == 2 and "Traceback" not in result.output
        # the first write of a run is its JSON Lines part (results stream there before boxes.json)
        assert (
            result.stderr.strip().splitlines()[-1]
            == f"error: {full / 'boxes.jsonl'}: cannot write (No space left on device)"
        )
        assert (full / "boxes.json").read_bytes() == before
        json.loads(before)
        assert sorted(p.name for p in full.iterdir()) == ["boxes.json", "boxes.jsonl", "fill"]  # the earlier part kept
