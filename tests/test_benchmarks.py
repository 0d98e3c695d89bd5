"""Every benchmark script still imports and parses its arguments, and the ones with a --smoke
mode run it (tiny sizes: this checks the scripts, the speed is measured by running them, never
in a test)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parents[1] / "benchmarks"
BENCHMARKS = sorted(HERE.glob("bench_*.py")) + [HERE / "gpu_checks.py"]


@pytest.mark.parametrize("script", BENCHMARKS, ids=[p.name for p in BENCHMARKS])
def test_benchmark_script_starts(script):
    result = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage:" in result.stdout


def test_decode_benchmark_smoke_run():
    """bench_decode end to end on two tiny synthetic files: every table printed, checks passed."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_decode.py"
    result = subprocess.run([sys.executable, str(script), "--images", "2", "--size", "64", "--repeats", "1",
                             "--jpeg-quality", "87"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    for expected in ("| read_dicom ", "| pydicom + pillow", " 128 px |", "header scan", "same headers and bad files: True",
                     "prepare --cache --image-size 512", "max |difference| 0 grey level(s)"):
        assert expected in result.stdout, (expected, result.stdout[-3000:])


def _smoke(script: str, tmp_path: Path, *extra: str) -> str:
    env = {**os.environ, "OUT": str(tmp_path)}
    result = subprocess.run([sys.executable, str(HERE / script), "--smoke", *extra], capture_output=True, text=True,
                            timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_infer_pipeline_smoke_prints_every_arm(tmp_path):
    out = _smoke("bench_infer_pipeline.py", tmp_path)
    assert "serial (decode, then model)" in out and "overlap, torch on all cores" in out
    assert "decode %" in out and "images/s" in out


def test_train_smoke_runs_one_epoch_of_both_arms(tmp_path):
    out = _smoke("bench_train.py", tmp_path, "--json", str(tmp_path / "train.json"))
    assert "plain (fp32, pydicom decode every access)" in out and "one epoch" in out
    results = json.loads((tmp_path / "train.json").read_text())
    assert results["epoch"] and results["plain_images_per_s"] > 0 and results["detect_images_per_s"] > 0


def test_gpu_checks_smoke_writes_its_table_and_json(tmp_path):
    import torch

    out = _smoke("gpu_checks.py", tmp_path)
    document = json.loads((tmp_path / "gpu_checks.json").read_text())
    checks = {row["check"] for row in document["rows"]}
    assert checks == {"train", "infer", "decode"}
    measured = [row for row in document["rows"] if row["images_per_s"] is not None]
    assert measured and all(row["images_per_s"] > 0 for row in measured)
    if not torch.cuda.is_available():
        skipped = [row["arm"] for row in document["rows"] if row["note"] == "no CUDA device: skipped"]
        assert "AMP + channels_last" in skipped and any(arm.startswith("nvJPEG") for arm in skipped)
        assert out.count("no CUDA device: skipped") >= 2 * len(skipped)  # as it runs, and in the table
    assert document["details"]["infer"]["channels_last"]["applied"]


def test_bench_infer_smoke_times_every_backend():
    """bench_infer.py --smoke: one detector at 64 px exported and timed in all three backends."""
    script = HERE / "bench_infer.py"
    result = subprocess.run([sys.executable, str(script), "--smoke"], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [line.split() for line in result.stdout.splitlines() if line.startswith("mobilenet_v3_large_fpn")]
    assert [row[2] for row in rows] == ["1", "2"]  # batch sizes
    for row in rows:
        ms_and_ratios = [float(value) for value in row[3:]]
        assert len(ms_and_ratios) == 5 and all(value > 0 for value in ms_and_ratios)
