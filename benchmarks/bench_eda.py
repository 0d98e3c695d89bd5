"""`detect eda` benchmark: the tables-only report on the real RSNA tables, and the folder report's cache reuse.

    python benchmarks/bench_eda.py [--labels CSV --headers CSV] [--repeats 3] [--rows 2000000]
                                   [--images 120] [--size 512]

1. Tables only. The labels CSV and DICOM header table default to the real ones in
   $DETECT_RSNA_TABLES or ~/.cache/detect/rsna_tables (tests/real_data/fetch_rsna_tables.py
   puts them there). In this one process, `--repeats` times each: the baseline, reading both
   tables with a bare `pandas.read_csv` (the floor any analysis of them pays), then the report's
   stages (tables -> numbers -> plots and files). The median of each is printed with the ratio
   of the whole report to the baseline. Then the command itself, `detect eda --labels ...
   --headers ...`, in a fresh interpreter (start-up and imports included): the time a user waits.
2. A large export: `--rows` (default 2,000,000) label rows written like a hospital's export
   (most patients one negative row, a quarter with boxes, a few duplicates and broken
   patients), then `detect eda --labels` on it in a fresh process: its wall time and its peak
   resident memory, beside the peak of a process that only makes the same imports. The peak is
   the child's VmHWM (/proc/self/status), not its ru_maxrss: Linux carries the parent's peak
   into a child's ru_maxrss across fork and exec, and this parent holds the export's lines.
   `--rows 0` skips it.
3. A folder. A synthetic RSNA folder (`data_prep.synth.synth_rsna`, `--images` at `--size` px)
   is reported twice: the first run prepares it (one header scan) and decodes the sample into
   the cache, the second reuses both. Prints both times, their ratio and how many images each
   decoded (counted in-process, workers=1): the second must decode none.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without installing

import data_prep.cache  # noqa: E402
from data_prep.eda import compute_eda, tables_from_label_files  # noqa: E402
from data_prep.synth import synth_rsna  # noqa: E402
from detect.eda.folder import run_eda_folder  # noqa: E402
from detect.eda.run import write_eda  # noqa: E402

DEFAULT_TABLES = Path(os.environ.get("DETECT_RSNA_TABLES") or Path.home() / ".cache" / "detect" / "rsna_tables")


def _median_seconds(action, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_tables(labels: Path, headers: Path, repeats: int, out_dir: Path) -> None:
    baseline = _median_seconds(lambda: (pd.read_csv(labels), pd.read_csv(headers)), repeats)
    tables = tables_from_label_files(labels, headers=headers)
    numbers = compute_eda(tables)
    stages = {
        "tables (read + rules)": _median_seconds(lambda: tables_from_label_files(labels, headers=headers), repeats),
        "numbers (compute_eda)": _median_seconds(lambda: compute_eda(tables), repeats),
        "plots + report files": _median_seconds(lambda: write_eda(out_dir / "inproc", numbers), repeats),
    }
    total = sum(stages.values())
    print(f"tables only: {labels.name} ({len(pd.read_csv(labels)):,} rows), {headers.name}; median of {repeats}")
    print(f"  {'stage':<28}{'seconds':>9}")
    print(f"  {'baseline: pandas.read_csv x2':<28}{baseline:>9.2f}")
    for name, seconds in stages.items():
        print(f"  {name:<28}{seconds:>9.2f}")
    print(f"  {'report, in process':<28}{total:>9.2f}   {total / baseline:.1f}x the baseline")
    command = [
        sys.executable,
        "-m",
        "cli",
        "eda",
        "--labels",
        str(labels),
        "--headers",
        str(headers),
        "--out",
        str(out_dir / "cli"),
    ]
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    wall = _median_seconds(lambda: subprocess.run(command, check=True, capture_output=True, cwd=root, env=env), repeats)
    print(f"  {'detect eda (fresh process)':<28}{wall:>9.2f}   wall clock incl. start-up and imports")


def write_large_labels(path: Path, n_rows: int, seed: int = 0) -> int:
    """A labels CSV of about `n_rows` rows like a hospital export; returns the rows written."""
    import numpy as np

    rng = np.random.default_rng(seed)
    n_patients = int(n_rows / 1.125)  # a quarter of the patients have 1 or 2 boxes: 1.125 rows each on average
    lines = ["patientId,x,y,width,height,Target"]
    kinds = rng.integers(0, 8, n_patients)
    for i, kind in enumerate(kinds):
        pid = f"{i:08x}-{i % 65536:04x}-4000-8000-{i:012x}"
        if kind >= 2:
            lines.append(f"{pid},,,,,0")
            continue
        for _ in range(int(kind) + 1):
            lines.append(
                f"{pid},{rng.integers(0, 800)},{rng.integers(0, 800)},{rng.integers(20, 300)},{rng.integers(20, 300)},1"
            )
        if i % 997 == 0:
            lines.append(lines[-1])
        if i % 4999 == 0:
            lines.append(f"{pid},,,,,0")
    path.write_text("\n".join(lines) + "\n")
    return len(lines) - 1


_PEAK_CHILD = """
import resource, sys
sys.argv = ["detect"] + sys.argv[1:]
if sys.argv[1:]:
    from cli import app
    try:
        app()
    except SystemExit as exc:
        if exc.code:
            raise
else:
    import cli, detect.eda.run  # noqa: F401 - what `detect eda` imports before it reads a byte
try:  # this process's own peak; ru_maxrss would include the parent's (Linux keeps it across exec)
    with open("/proc/self/status") as status:
        peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
except OSError:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print("peak_kib", peak, file=sys.stderr)
"""


def _child_peak(args: list[str]) -> tuple[float, float]:
    """(seconds, peak resident MiB) of `detect <args>` in a fresh interpreter (no args: its imports only)."""
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _PEAK_CHILD, *args], check=True, capture_output=True, text=True, cwd=root, env=env
    )
    seconds = time.perf_counter() - start
    peak = [line for line in done.stderr.splitlines() if line.startswith("peak_kib ")][-1]
    return seconds, int(peak.split()[1]) / 1024


def bench_large_labels(n_rows: int, work: Path) -> None:
    labels = work / "large_labels.csv"
    written = write_large_labels(labels, n_rows)
    _, imports = _child_peak([])
    seconds, peak = _child_peak(["eda", "--labels", str(labels), "--out", str(work / "large_eda")])
    print(
        f"large export: {written:,} label rows ({labels.stat().st_size / 1e6:.0f} MB), "
        "detect eda --labels, fresh process"
    )
    print(
        f"  wall {seconds:.1f} s; peak resident memory {peak:.0f} MiB, of which {imports:.0f} MiB is the imports "
        f"and {peak - imports:.0f} MiB the report"
    )


def bench_folder(n_images: int, size_px: int, work: Path) -> None:
    root = work / "rsna"
    synth_rsna(root, n_images=n_images, size_px=size_px, seed=0)
    decodes: Counter[str] = Counter()
    original = data_prep.cache.read_any_image_sized

    def counting(path, *args, **kwargs):
        decodes[str(path)] += 1
        return original(path, *args, **kwargs)

    data_prep.cache.read_any_image_sized = counting
    runs = []
    for i in range(2):
        decodes.clear()
        start = time.perf_counter()
        result = run_eda_folder(work / f"eda{i}", root, workers=1)
        runs.append(
            (time.perf_counter() - start, sum(decodes.values()), result.numbers["images_section"]["decoded_now"])
        )
    data_prep.cache.read_any_image_sized = original
    (first, first_decodes, _), (second, second_decodes, _) = runs
    print(
        f"folder: synthetic RSNA, {n_images} images at {size_px} px, 48 sampled per class, cache at 512 px, workers=1"
    )
    print(f"  first run (prepare + decode the sample)   {first:6.2f} s, {first_decodes} images decoded")
    print(f"  second run (manifest and cache reused)    {second:6.2f} s, {second_decodes} images decoded")
    print(f"  ratio first / second                      {first / second:6.2f}x")
    if second_decodes:
        raise SystemExit("the second run decoded images: the cache was not reused")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=Path, default=DEFAULT_TABLES / "stage_2_train_labels.csv")
    parser.add_argument("--headers", type=Path, default=DEFAULT_TABLES / "stage_2_train_images_dicom_headers.csv.gz")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rows", type=int, default=2_000_000, help="rows of the large export (0: skip it)")
    parser.add_argument("--images", type=int, default=120)
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.rows:
            bench_large_labels(args.rows, work)
            print()
        if args.repeats and args.labels.is_file() and args.headers.is_file():
            bench_tables(args.labels, args.headers, args.repeats, work)
        else:
            print(
                f"tables only: skipped, {args.labels} or {args.headers} not found "
                "(python tests/real_data/fetch_rsna_tables.py fetches the real ones)"
            )
        print()
        bench_folder(args.images, args.size, work)


if __name__ == "__main__":
    main()
