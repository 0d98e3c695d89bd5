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


def test_bench_compare_smoke_run(tmp_path):
    """The compare benchmark end to end on a tiny set: synthesis, `detect compare` of its three models, the table."""
    script = HERE / "bench_compare.py"
    result = subprocess.run(
        [sys.executable, str(script), "--smoke", "--out", str(tmp_path)], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "smoke: OK" in result.stdout
    for model in ("basic_cnn", "resnet18", "efficientnet_b0"):
        assert model in result.stdout
    assert (tmp_path / "compare" / "compare.csv").is_file() and (tmp_path / "compare" / "report.md").is_file()


def _compare_rows(aucs: dict[str, float], p_basic: str) -> dict[str, dict[str, str]]:
    best = max(aucs, key=aucs.get)
    return {
        m: {
            "model": m,
            "roc_auc": str(a),
            "delong_p_vs_best": "" if m == best else (p_basic if m == "basic_cnn" else "0.5"),
        }
        for m, a in aucs.items()
    }


@pytest.mark.parametrize(
    "aucs, p_basic, total_s, failing",
    [
        ({"basic_cnn": 0.80, "resnet18": 0.95, "efficientnet_b0": 0.93}, "0.001", 600, []),
        ({"basic_cnn": 0.80, "resnet18": 0.88, "efficientnet_b0": 0.85}, "0.001", 600, ["< 0.9"]),
        ({"basic_cnn": 0.90, "resnet18": 0.92, "efficientnet_b0": 0.91}, "0.2", 600, ["not clearly above"]),
        ({"basic_cnn": 0.97, "resnet18": 0.92, "efficientnet_b0": 0.91}, "", 600, ["basic_cnn is the best"]),
        ({"basic_cnn": 0.80, "resnet18": 0.95, "efficientnet_b0": 0.93}, "0.001", 1000, ["wall time"]),
    ],
)
def test_bench_compare_criteria(aucs, p_basic, total_s, failing):
    sys.path.insert(0, str(HERE))
    import bench_compare

    failures = bench_compare.check_criteria(_compare_rows(aucs, p_basic), total_s, bench_compare.parse_args([]))
    assert len(failures) == len(failing)
    for text, expected in zip(failures, failing):
        assert expected in text


def test_decode_benchmark_smoke_run():
    """bench_decode end to end on two tiny synthetic files: every table printed, checks passed."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_decode.py"
    result = subprocess.run(
        [sys.executable, str(script), "--images", "2", "--size", "64", "--repeats", "1", "--jpeg-quality", "87"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    for expected in (
        "| read_dicom ",
        "| pydicom + pillow",
        " 128 px |",
        "header scan",
        "same headers and bad files: True",
        "prepare --cache --image-size 512",
        "max |difference| 0 grey level(s)",
    ):
        assert expected in result.stdout, (expected, result.stdout[-3000:])


def _smoke(script: str, tmp_path: Path, *extra: str) -> str:
    env = {**os.environ, "OUT": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, str(HERE / script), "--smoke", *extra], capture_output=True, text=True, timeout=300, env=env
    )
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


def test_classifier_loop_smoke_prints_both_arms_and_their_ratio(tmp_path):
    out = _smoke("bench_classifier_loop.py", tmp_path)
    row = next(line.split() for line in out.splitlines() if line.strip().startswith("basic_cnn") and "bare" not in line)
    bare, loop, ratio = (float(v) for v in row[1:4])
    assert bare > 0 and loop > 0 and abs(ratio - loop / bare) < 0.01
