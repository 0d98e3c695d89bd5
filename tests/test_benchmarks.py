"""Every benchmark script still imports and parses its arguments (they are not run here: speed
is measured by running them, never in a test)."""
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = sorted((Path(__file__).resolve().parents[1] / "benchmarks").glob("bench_*.py"))


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
