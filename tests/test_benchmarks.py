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


def test_bench_compare_smoke_run(tmp_path):
    """The compare benchmark end to end on a tiny set: synthesis, `detect compare` of its three models, the table."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_compare.py"
    result = subprocess.run([sys.executable, str(script), "--smoke", "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "smoke: OK" in result.stdout
    for model in ("basic_cnn", "resnet18", "efficientnet_b0"):
        assert model in result.stdout
    assert (tmp_path / "compare" / "compare.csv").is_file() and (tmp_path / "compare" / "report.md").is_file()
