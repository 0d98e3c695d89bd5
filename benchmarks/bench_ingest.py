"""Ingestion benchmark: our DICOM reader against pydicom's own decode, on RSNA-like files
(benchmarks/bench_decode.py has the decode / reduced-decode / header-scan / cache tables).

    python benchmarks/bench_ingest.py [--images 64] [--size 1024] [--dir DIR] [--repeats 5]

Files: if DIR already holds *.dcm files (for example a real `stage_2_train_images/`), the first
`--images` of them are used; otherwise synthetic RSNA DICOMs (JPEG Baseline 8-bit MONOCHROME2,
one frame, like every RSNA file) are written into DIR (a temporary folder by default) with
`data_prep.synth.synth_rsna`.

All methods run in this one process over the same files. Each does one warm-up pass (which
also brings the files into the page cache), then `--repeats` timed passes, the methods taking
turns within each repetition; the table reports the median pass. Methods:

  read_dicom (fast path)        data_prep.dicom.read_dicom: simplejpeg (libjpeg-turbo, strict) on the frame
  read_dicom (fast_path=False)  the same pipeline, decoded by pydicom (its default plugin)
  pydicom pixel_array (pylibjpeg)   pydicom.dcmread(p).pixel_array, the baseline (pylibjpeg is
                                the plugin pydicom tries first, and what the ratio is against)
  pydicom pixel_array (pillow)  the same with Pillow's decoder (libjpeg-turbo too), if installed
  read_dicom_header             the header scan of `detect prepare`: header, pixel data proven
                                complete from its item lengths, SOF checked; nothing decoded
  dcmread(stop_before_pixels)   pydicom's header parse alone: what the scan costs on top of it
  frame: cv2.imdecode (lenient) the JPEG frame alone through OpenCV, which the fast path used
                                before: it passes corrupt entropy-coded data as a valid image
  frame: decode_jpeg (strict)   the same frames through data_prep.codestreams.decode_jpeg
                                (simplejpeg, libjpeg's corrupt-data warnings are errors, plus
                                the SOF / size / completeness checks): what strictness costs

The script also checks that the fast path equals pydicom's decode within 1 grey level, and
exits with status 1 if it does not.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pydicom

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without installing

from pydicom.encaps import get_frame  # noqa: E402

from data_prep.codestreams import decode_jpeg  # noqa: E402
from data_prep.dicom import read_dicom, read_dicom_header  # noqa: E402
from data_prep.synth import synth_rsna  # noqa: E402

RSNA_IMAGES_DIR = "stage_2_train_images"


def _existing_dicoms(directory: Path, count: int) -> list[Path]:
    for folder in (directory / RSNA_IMAGES_DIR, directory):
        paths = sorted(folder.glob("*.dcm"))
        if paths:
            return paths[:count]
    return []


def _make_files(directory: Path, count: int, size_px: int) -> tuple[list[Path], str]:
    existing = _existing_dicoms(directory, count)
    if existing:
        return existing, f"existing files in {directory}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        synth_rsna(directory, count, n_test_images=0, size_px=size_px, seed=0)
    return _existing_dicoms(directory, count), "data_prep.synth.synth_rsna"


def _time_methods(
    paths: list[Path], methods: list[tuple[str, Callable[[Path], object]]], repeats: int
) -> dict[str, tuple[float, float]]:
    """(wall, CPU) seconds of the median pass over `paths` per method, after one warm-up pass each.

    The methods take turns within each repetition, so a change in machine load during the run
    (other jobs on a shared 2-core machine) affects all of them alike. CPU time (this process
    only; every decoder here is single-threaded) is reported too: it is what the wall time would
    be on an idle machine.
    """
    for _, read_one in methods:
        for path in paths:
            read_one(path)
    wall: dict[str, list[float]] = {name: [] for name, _ in methods}
    cpu: dict[str, list[float]] = {name: [] for name, _ in methods}
    for _ in range(repeats):
        for name, read_one in methods:
            wall_start, cpu_start = time.perf_counter(), time.process_time()
            for path in paths:
                read_one(path)
            cpu[name].append(time.process_time() - cpu_start)
            wall[name].append(time.perf_counter() - wall_start)
    return {name: (statistics.median(wall[name]), statistics.median(cpu[name])) for name, _ in methods}


def _pydicom_pixel_array(plugin: str) -> Callable[[Path], np.ndarray]:
    """`pydicom.dcmread(p).pixel_array` with pydicom's decoding plugin pinned ('' = its default)."""

    def read_one(path: Path) -> np.ndarray:
        ds = pydicom.dcmread(path)
        ds.pixel_array_options(decoding_plugin=plugin)
        return ds.pixel_array

    return read_one


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=64, help="number of DICOM files (default 64)")
    parser.add_argument("--size", type=int, default=1024, help="synthetic image side in pixels (default 1024)")
    parser.add_argument("--dir", type=Path, default=None, help="folder with *.dcm files, or where to write them")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes per method (median reported)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench_ingest_") as tmp:
        directory = args.dir if args.dir is not None else Path(tmp)
        directory.mkdir(parents=True, exist_ok=True)
        paths, source = _make_files(directory, args.images, args.size)
        if not paths:
            print(f"no DICOM files found or written in {directory}", file=sys.stderr)
            return 2
        return _run(paths, source, args.repeats)


def _run(paths: list[Path], source: str, repeats: int) -> int:
    header = read_dicom_header(paths[0])
    mean_kb = statistics.mean(p.stat().st_size for p in paths) / 1024
    plugins = pydicom.pixels.get_decoder(header.transfer_syntax_uid).available_plugins
    print(
        f"{len(paths)} files from {source}: {header.rows}x{header.columns}, "
        f"transfer syntax {pydicom.uid.UID(header.transfer_syntax_uid).name}, mean {mean_kb:.0f} KB"
    )
    print(
        f"pydicom {pydicom.__version__} (decoder plugins: {', '.join(plugins) or 'none'}), "
        f"OpenCV {cv2.__version__}, numpy {np.__version__}; {repeats} timed passes, median"
    )

    baseline_name = "pydicom pixel_array (pylibjpeg)" if "pylibjpeg" in plugins else "pydicom pixel_array"
    pydicom_default = _pydicom_pixel_array("pylibjpeg" if "pylibjpeg" in plugins else "")
    worst = 0
    for path in paths:
        ours, _ = read_dicom(path)
        reference = pydicom_default(path)
        worst = max(worst, int(np.abs(ours.astype(np.int16) - reference.astype(np.int16)).max()))
    print(f"fast path vs {baseline_name}: max |difference| = {worst} grey level(s) over {len(paths)} images")

    methods: list[tuple[str, Callable[[Path], object]]] = [
        ("read_dicom (fast path)", read_dicom),
        ("read_dicom (fast_path=False)", lambda p: read_dicom(p, fast_path=False)),
        (baseline_name, pydicom_default),
    ]
    if "pillow" in plugins:  # Pillow also wraps libjpeg-turbo: shows what the decoder alone buys
        methods.append(("pydicom pixel_array (pillow)", _pydicom_pixel_array("pillow")))
    methods.append(("read_dicom_header", read_dicom_header))
    methods.append(("dcmread(stop_before_pixels)", lambda p: pydicom.dcmread(p, stop_before_pixels=True)))
    frames = {p: get_frame(pydicom.dcmread(p).PixelData, 0, number_of_frames=1) for p in paths}
    methods.append(
        (
            "frame: cv2.imdecode (lenient)",
            lambda p: cv2.imdecode(np.frombuffer(frames[p], np.uint8), cv2.IMREAD_UNCHANGED),
        )
    )
    methods.append(("frame: decode_jpeg (strict)", lambda p: decode_jpeg(frames[p])))
    seconds = _time_methods(paths, methods, repeats)
    baseline_wall, baseline_cpu = seconds[baseline_name]

    print()
    print(
        f"| {'method':<32} | {'images/s':>9} | {'ms/image':>8} | {'vs pydicom':>10} "
        f"| {'CPU ms/image':>12} | {'vs pydicom (CPU)':>16} |"
    )
    print(f"|{'-' * 34}|{'-' * 11}|{'-' * 10}|{'-' * 12}|{'-' * 14}|{'-' * 18}|")
    for name, _ in methods:
        wall_s, cpu_s = seconds[name]
        per_image_s = wall_s / len(paths)
        print(
            f"| {name:<32} | {1.0 / per_image_s:>9.0f} | {per_image_s * 1e3:>8.2f} | "
            f"{baseline_wall / wall_s:>9.1f}x | {cpu_s / len(paths) * 1e3:>12.2f} | {baseline_cpu / cpu_s:>15.1f}x |"
        )
    for what, numerator, denominator in (
        (
            "strict JPEG decoding vs OpenCV's lenient one",
            "frame: decode_jpeg (strict)",
            "frame: cv2.imdecode (lenient)",
        ),
        (
            "header scan (pixel data proven) vs pydicom's header parse",
            "read_dicom_header",
            "dcmread(stop_before_pixels)",
        ),
    ):
        print(
            f"{what}: {seconds[numerator][0] / seconds[denominator][0]:.2f}x the wall time, "
            f"{seconds[numerator][1] / seconds[denominator][1]:.2f}x the CPU time"
        )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\n{os.cpu_count()} CPU cores, 1-minute load average {load:.1f} at the end of the run")
    return 0 if worst <= 1 else 1


if __name__ == "__main__":
    sys.exit(main())
