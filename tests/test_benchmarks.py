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


def test_bench_infer_smoke_times_every_backend():
    """bench_infer.py --smoke: one detector at 64 px exported and timed in all three backends."""
    script = BENCHMARKS[0].parent / "bench_infer.py"
    result = subprocess.run([sys.executable, str(script), "--smoke"], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [line.split() for line in result.stdout.splitlines() if line.startswith("mobilenet_v3_large_fpn")]
    assert [row[2] for row in rows] == ["1", "2"]  # batch sizes
    for row in rows:
        ms_and_ratios = [float(value) for value in row[3:]]
        assert len(ms_and_ratios) == 5 and all(value > 0 for value in ms_and_ratios)
