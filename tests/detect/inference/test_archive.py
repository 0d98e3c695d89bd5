"""`detect infer` over an archive: killed and resumed with nothing lost or duplicated, settings
checked on resume, and 2 torchrun ranks equal to 1 process (subprocesses, tiny model, CPU)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from detect.inference.batch import run_inference
from detect.inference.jsonl import ResumeMismatchError, part_path
from tests.data_prep.dicom_fixtures import textured_image, write_jpeg_baseline_dicom
from tests.detect.inference.test_batch import save_tiny_checkpoint

REPO_ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "best.pt")


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """40 extensionless DICOMs in nested folders, as a PACS export names them."""
    root = tmp_path_factory.mktemp("archive")
    for i in range(40):
        folder = root / f"S{i % 3}"
        folder.mkdir(exist_ok=True)
        write_jpeg_baseline_dicom(folder / f"IM{i:04d}", textured_image(64, 64, seed=i), patient_id=f"p{i:02d}")
    return root


def _cli(*args: str | Path, env: dict | None = None) -> list[str]:
    return [sys.executable, str(REPO_ROOT / "cli.py"), *[str(a) for a in args]]


def _entries(path: Path) -> list[dict]:
    return json.loads(path.read_text())["images"]


@pytest.fixture(scope="module")
def uninterrupted(archive, checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("straight") / "boxes.json"
    run_inference([archive], out_path=out, checkpoint=checkpoint, device="cpu", batch_size=1, workers=1)
    return out


def test_sigkill_mid_run_then_resume_loses_and_duplicates_nothing(archive, checkpoint, uninterrupted, tmp_path):
    out = tmp_path / "boxes.json"
    part = part_path(out)
    args = ("infer", archive, "--checkpoint", checkpoint, "--out", out, "--device", "cpu", "--batch-size", "1")
    process = subprocess.Popen(
        _cli(*args), cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if part.is_file() and part.read_bytes().count(b"\n") >= 4:  # the run line and three images
            break
        time.sleep(0.005)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    lines_at_kill = part.read_bytes().count(b"\n") - 1
    assert 3 <= lines_at_kill < 40, "the kill must land mid-run"
    assert not out.exists()  # boxes.json is assembled only at the end

    resumed = subprocess.run(_cli(*args, "--resume"), cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{lines_at_kill} already predicted (--resume)" in resumed.stdout
    images = [json.loads(line) for line in part.read_text().splitlines()[1:]]
    assert len(images) == 40 and len({i["entry"]["source"] for i in images}) == 40  # nothing lost, nothing twice
    assert _entries(out) == _entries(uninterrupted)


def test_resume_refuses_other_settings_and_names_them(archive, checkpoint, tmp_path):
    out = tmp_path / "boxes.json"
    run_inference([archive / "S0"], out_path=out, checkpoint=checkpoint, device="cpu")
    with pytest.raises(
        ResumeMismatchError,
        match=r"boxes\.jsonl: --resume: this run differs from the stopped one at "
        r"settings\.score_thresh \(0\.3 -> 0\.5\)",
    ):
        run_inference(
            [archive / "S0"],
            out_path=out,
            checkpoint=checkpoint,
            device="cpu",
            resume=True,
            score_thresh=0.5,
        )


def test_a_torn_last_line_is_dropped_on_resume(archive, checkpoint, uninterrupted, tmp_path):
    out = tmp_path / "boxes.json"
    run_inference([archive], out_path=out, checkpoint=checkpoint, device="cpu", batch_size=1, workers=1)
    part = part_path(out)
    lines = part.read_text().splitlines(keepends=True)
    part.write_text("".join(lines[:-5]) + lines[-5][: len(lines[-5]) // 2])  # the last 4 lost, the 5th torn
    messages: list[str] = []
    result = run_inference(
        [archive],
        out_path=out,
        checkpoint=checkpoint,
        device="cpu",
        batch_size=1,
        workers=1,
        resume=True,
        log=messages.append,
    )
    assert result.n_skipped == 35 and result.n_predicted == 5
    assert any("a torn last line" in m for m in messages)
    assert _entries(out) == _entries(uninterrupted)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_torchrun_ranks_equal_one_process(archive, checkpoint, uninterrupted, tmp_path):
    out = tmp_path / "boxes.json"
    torchrun = Path(sys.executable).with_name("torchrun")
    command = [
        str(torchrun),
        "--nnodes=1",
        "--nproc_per_node=2",
        f"--master_port={_free_port()}",
        "--master_addr=127.0.0.1",
        str(REPO_ROOT / "cli.py"),
        "infer",
        str(archive),
        "--checkpoint",
        str(checkpoint),
        "--out",
        str(out),
        "--device",
        "cpu",
        "--batch-size",
        "1",
        "--submission",
        str(tmp_path / "sub.csv"),
    ]
    done = subprocess.run(
        command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert done.returncode == 0, done.stderr[-3000:]
    parts = [part_path(out, r, 2) for r in range(2)]
    lines = sorted(
        json.dumps(json.loads(line)["entry"], sort_keys=True) for p in parts for line in p.read_text().splitlines()[1:]
    )
    single = sorted(
        json.dumps(json.loads(line)["entry"], sort_keys=True)
        for line in part_path(uninterrupted).read_text().splitlines()[1:]
    )
    assert lines == single  # line for line, once sorted
    assert _entries(out) == _entries(uninterrupted)  # rank 0 merged them in the listing's order
    assert len((tmp_path / "sub.csv").read_text().splitlines()) == 41
    assert done.stdout.count("predicted ") == 1  # rank 0 alone prints the summary
