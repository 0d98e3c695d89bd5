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


def _compare_rows(aucs: dict[str, float], p_basic: str) -> dict[str, dict[str, str]]:
    best = max(aucs, key=aucs.get)
    return {m: {"model": m, "roc_auc": str(a), "delong_p_vs_best": "" if m == best else (p_basic if m == "basic_cnn" else "0.5")}
            for m, a in aucs.items()}


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
def test_bench_compare_done_when(aucs, p_basic, total_s, failing):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import bench_compare

    failures = bench_compare.check_done_when(_compare_rows(aucs, p_basic), total_s, bench_compare.parse_args([]))
    assert len(failures) == len(failing)
    for text, expected in zip(failures, failing):
        assert expected in text
