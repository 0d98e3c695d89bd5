"""Decoding benchmark: read_dicom against the bare JPEG decoders and pydicom, the reduced DCT
decode, the header scan, and `detect prepare --cache` before and after, in one process.

    python benchmarks/bench_decode.py [--images 48] [--size 1024] [--jpeg-quality 95 87]
                                      [--dir DIR] [--repeats 3] [--prepare-images 48]

Files: DIR's *.dcm files when it has some (a real `stage_2_train_images/` for instance), else
synthetic RSNA DICOMs (data_prep.synth.synth_rsna: JPEG Baseline 8-bit MONOCHROME2, one frame)
written for each `--jpeg-quality`: 95 is what `detect synth` writes (~330 KB at 1024 px),
87 gives files of the real RSNA size (~130-150 KB). Every table says which.

Tables, each method timed over the same files, the methods taking turns within each round;
the best round is reported (wall time; CPU time beside it, which is what the wall time would
be on an idle machine):

1. decode, ms/image: the JPEG frame alone (bytes in memory) through simplejpeg (strict, as
   read_dicom runs it), OpenCV and torchvision; read_dicom on the file; pydicom.dcmread +
   pixel_array with each installed plugin (pylibjpeg, pillow, gdcm). Ratios against the
   fastest bare decode and against pydicom + Pillow. read_dicom must equal pydicom's decode
   within 1 grey level (exit status 1 otherwise).
2. reduced decode at 128 / 256 / 512 px: full decode + area letterbox against the decode at
   1/2, 1/4, 1/8 DCT scale + area letterbox (data_prep.images.read_any_image_sized), with the
   max and mean absolute difference of the results.
3. header scan, files/s: scan_dicom_headers as it is (data_prep.dicom_header) against the scan
   before it (pydicom's header parse for every file, `fast_header=False`); the headers found
   must be equal (exit status 1 otherwise).
4. `prepare --cache --image-size 512` (data_prep.prepare.prepare_dataset, 1 worker) against
   the same call with the steps of before patched in: pydicom header parse, full decode,
   zlib-1 PNG with adaptive filters (data_prep.cache.PNG_PARAMS_ZLIB1).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pydicom
import simplejpeg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without installing

from pydicom.encaps import get_frame  # noqa: E402

import data_prep.cache as cache_module  # noqa: E402
import data_prep.dicom as dicom_module  # noqa: E402
from data_prep.atomic import write_bytes_atomic  # noqa: E402
from data_prep.dicom import read_dicom, scan_dicom_headers  # noqa: E402
from data_prep.errors import DetectError  # noqa: E402
from data_prep.geometry import letterbox_resize  # noqa: E402
from data_prep.images import read_any_image_sized  # noqa: E402
from data_prep.prepare import prepare_dataset  # noqa: E402
from data_prep.synth import synth_rsna  # noqa: E402

RSNA_IMAGES_DIR = "stage_2_train_images"
REDUCED_SIZES_PX = (128, 256, 512)
PREPARE_SIZE_PX = 512

try:  # torchvision is this project's dependency through detect/, not data_prep's
    import torch
    from torchvision.io import decode_jpeg as tv_decode_jpeg
except ImportError:  # pragma: no cover - torch is installed wherever detect runs
    torch = tv_decode_jpeg = None


# ---------------------------------------------------------------------------------------------
# Files and timing


def _dicoms(directory: Path) -> list[Path]:
    for folder in (directory / RSNA_IMAGES_DIR, directory):
        paths = sorted(folder.glob("*.dcm"))
        if paths:
            return paths
    return []


def _write_synthetic(directory: Path, count: int, size_px: int, jpeg_quality: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        synth_rsna(directory, count, n_test_images=0, size_px=size_px, seed=0, jpeg_quality=jpeg_quality)


def _best_rounds(
    items: list, methods: list[tuple[str, Callable[[object], object]]], repeats: int
) -> dict[str, tuple[float, float]]:
    """(wall, CPU) seconds per item of each method's best round, after one warm-up round each.

    The methods take turns within each round, so a change of load on a shared machine touches
    them alike; the best round is the one least disturbed by other processes.
    """
    for _, run_one in methods:
        for item in items:
            run_one(item)
    wall: dict[str, list[float]] = {name: [] for name, _ in methods}
    cpu: dict[str, list[float]] = {name: [] for name, _ in methods}
    for _ in range(repeats):
        for name, run_one in methods:
            wall_start, cpu_start = time.perf_counter(), time.process_time()
            for item in items:
                run_one(item)
            cpu[name].append((time.process_time() - cpu_start) / len(items))
            wall[name].append((time.perf_counter() - wall_start) / len(items))
    return {name: (min(wall[name]), min(cpu[name])) for name, _ in methods}


def _pydicom_decode(plugin: str) -> Callable[[Path], np.ndarray]:
    def read_one(path: Path) -> np.ndarray:
        ds = pydicom.dcmread(path)
        ds.pixel_array_options(decoding_plugin=plugin)
        return ds.pixel_array

    return read_one


# ---------------------------------------------------------------------------------------------
# 1. decode


def decode_table(paths: list[Path], repeats: int) -> int:
    frames = {p: get_frame(pydicom.dcmread(p).PixelData, 0, number_of_frames=1) for p in paths}
    frame_tensors = {p: torch.frombuffer(bytearray(f), dtype=torch.uint8) for p, f in frames.items()} if torch else {}
    plugins = pydicom.pixels.get_decoder(pydicom.uid.JPEGBaseline8Bit).available_plugins
    bare = [
        ("bare: simplejpeg (strict)", lambda p: simplejpeg.decode_jpeg(frames[p], colorspace="GRAY", strict=True)),
        ("bare: cv2.imdecode", lambda p: cv2.imdecode(np.frombuffer(frames[p], np.uint8), cv2.IMREAD_UNCHANGED)),
    ]
    if tv_decode_jpeg is not None:
        bare.append(("bare: torchvision decode_jpeg", lambda p: tv_decode_jpeg(frame_tensors[p])))
    methods = [*bare, ("read_dicom", read_dicom)]
    for plugin in ("pylibjpeg", "pillow", "gdcm"):
        if plugin in plugins:
            methods.append((f"pydicom + {plugin}", _pydicom_decode(plugin)))

    worst = 0
    for path in paths:
        ours, _ = read_dicom(path)
        reference = _pydicom_decode("pillow" if "pillow" in plugins else "")(path)
        worst = max(worst, int(np.abs(ours.astype(np.int16) - reference.astype(np.int16)).max()))
    seconds = _best_rounds(paths, methods, repeats)
    bare_wall = min(seconds[name][0] for name, _ in bare)
    bare_cpu = min(seconds[name][1] for name, _ in bare)
    pillow_wall, pillow_cpu = seconds.get("pydicom + pillow", (float("nan"), float("nan")))
    print(
        f"| {'decode (1 image)':<30} | {'ms/image':>8} | {'CPU ms':>7} | {'vs bare':>7} | {'(CPU)':>6} "
        f"| {'vs pydicom+Pillow':>17} | {'(CPU)':>6} |"
    )
    print(f"|{'-' * 32}|{'-' * 10}|{'-' * 9}|{'-' * 9}|{'-' * 8}|{'-' * 19}|{'-' * 8}|")
    for name, _ in methods:
        wall_s, cpu_s = seconds[name]
        print(
            f"| {name:<30} | {wall_s * 1e3:>8.2f} | {cpu_s * 1e3:>7.2f} | {wall_s / bare_wall:>6.2f}x "
            f"| {cpu_s / bare_cpu:>5.2f}x | {pillow_wall / wall_s:>16.2f}x | {pillow_cpu / cpu_s:>5.2f}x |"
        )
    print(f"read_dicom vs pydicom's decode: max |difference| {worst} grey level(s) over {len(paths)} images")
    return 0 if worst <= 1 else 1


# ---------------------------------------------------------------------------------------------
# 2. reduced decode


def reduced_table(paths: list[Path], repeats: int) -> None:
    print(
        f"| {'letterbox size':>14} | {'full + area ms':>14} | {'reduced + area ms':>17} | {'speed-up':>8} "
        f"| {'(CPU)':>8} | {'max |diff|':>10} | {'mean |diff|':>11} |"
    )
    print(f"|{'-' * 16}|{'-' * 16}|{'-' * 19}|{'-' * 10}|{'-' * 10}|{'-' * 12}|{'-' * 13}|")
    for size_px in REDUCED_SIZES_PX:

        def full(path: Path, size_px: int = size_px) -> np.ndarray:
            return letterbox_resize(read_dicom(path)[0], size_px)[0]

        def reduced(path: Path, size_px: int = size_px) -> np.ndarray:
            image = read_any_image_sized(path, size_px)
            return letterbox_resize(image.pixels, size_px, image.original_hw)[0]

        differences = [np.abs(full(p).astype(np.int16) - reduced(p).astype(np.int16)) for p in paths]
        seconds = _best_rounds(paths, [("full", full), ("reduced", reduced)], repeats)
        (full_s, full_cpu), (reduced_s, reduced_cpu) = seconds["full"], seconds["reduced"]
        print(
            f"| {size_px:>11} px | {full_s * 1e3:>14.2f} | {reduced_s * 1e3:>17.2f} | {full_s / reduced_s:>7.2f}x "
            f"| {full_cpu / reduced_cpu:>7.2f}x | {max(int(d.max()) for d in differences):>10} "
            f"| {statistics.mean(float(d.mean()) for d in differences):>11.3f} |"
        )


# ---------------------------------------------------------------------------------------------
# 3. header scan and 4. prepare --cache: the steps of before, patched in for the baseline


def _old_cache_one(
    source: str, destination: str, size_px: int, height: int | None, width: int | None, max_pixels: int
) -> str | None:
    """data_prep.cache.cache_one as it was: pydicom header parse, full decode, zlib-1 PNG."""
    try:
        pixels, _ = read_dicom(source, max_pixels=max_pixels, fast_header=False)
    except DetectError as exc:
        return getattr(exc, "reason", str(exc))
    if height is not None and width is not None and pixels.shape != (height, width):
        return f"decoded size {pixels.shape[0]}x{pixels.shape[1]} differs from the header's {height}x{width}"
    resized, _ = letterbox_resize(pixels, size_px)
    ok, encoded = cv2.imencode(".png", resized, cache_module.PNG_PARAMS_ZLIB1)
    if not ok:
        return "PNG encoding failed"
    write_bytes_atomic(destination, encoded.tobytes(), durable=False)
    return None


@contextlib.contextmanager
def old_steps() -> Iterator[None]:
    """The header scan and the cache as they were, for the length of the block (one process)."""
    saved = dicom_module.read_dicom_header, cache_module.cache_one
    dicom_module.read_dicom_header = functools.partial(saved[0], fast_header=False)
    cache_module.cache_one = _old_cache_one
    try:
        yield
    finally:
        dicom_module.read_dicom_header, cache_module.cache_one = saved


def header_table(paths: list[Path], repeats: int) -> int:
    def new_scan(_: object) -> object:
        return scan_dicom_headers(paths, workers=1)

    def old_scan(_: object) -> object:
        with old_steps():
            return scan_dicom_headers(paths, workers=1)

    same = new_scan(None) == old_scan(None)
    seconds = _best_rounds([None], [("old", old_scan), ("new", new_scan)], repeats)
    old_s, new_s = seconds["old"][0], seconds["new"][0]
    n = len(paths)
    print(
        f"header scan (scan_dicom_headers, 1 worker, {n} files): {n / new_s:,.0f} files/s "
        f"(CPU {n / seconds['new'][1]:,.0f}) vs {n / old_s:,.0f} files/s with pydicom's header parse "
        f"(CPU {n / seconds['old'][1]:,.0f}): {old_s / new_s:.2f}x; same headers and bad files: {same}"
    )
    return 0 if same else 1


def prepare_table(data_dir: Path, n_files: int, repeats: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench_decode_prepare_"))
    try:

        def run(old: bool) -> tuple[float, float]:
            out = work / f"out_{'old' if old else 'new'}"
            shutil.rmtree(out, ignore_errors=True)
            start, cpu_start = time.perf_counter(), time.process_time()
            with old_steps() if old else contextlib.nullcontext(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                prepare_dataset(data_dir, out, cache=True, image_size_px=PREPARE_SIZE_PX, workers=1)
            return time.perf_counter() - start, time.process_time() - cpu_start

        runs: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
        for _ in range(repeats):
            runs[True].append(run(True))
            runs[False].append(run(False))
        (old_s, old_cpu), (new_s, new_cpu) = min(runs[True]), min(runs[False])
        old_cpu, new_cpu = min(c for _, c in runs[True]), min(c for _, c in runs[False])
        png_kb = statistics.mean(p.stat().st_size for p in (work / "out_new").rglob("*.png")) / 1024
        old_png_kb = statistics.mean(p.stat().st_size for p in (work / "out_old").rglob("*.png")) / 1024
        print(
            f"prepare --cache --image-size {PREPARE_SIZE_PX} (1 worker, {n_files} files): "
            f"{new_s / n_files * 1e3:.2f} ms/image vs {old_s / n_files * 1e3:.2f} before: {old_s / new_s:.2f}x "
            f"(CPU {new_cpu / n_files * 1e3:.2f} vs {old_cpu / n_files * 1e3:.2f} ms/image: {old_cpu / new_cpu:.2f}x); "
            f"cached PNG {png_kb:.0f} KB vs {old_png_kb:.0f} KB"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ---------------------------------------------------------------------------------------------


def run_one_set(directory: Path, source: str, repeats: int, n_images: int) -> int:
    paths = _dicoms(directory)[:n_images]
    header = dicom_module.read_dicom_header(paths[0])
    mean_kb = statistics.mean(p.stat().st_size for p in paths) / 1024
    print(f"\n## {len(paths)} files, {source}: {header.rows}x{header.columns}, mean {mean_kb:.0f} KB\n")
    status = decode_table(paths, repeats)
    print()
    reduced_table(paths, repeats)
    print()
    status |= header_table(paths, repeats)
    if (directory / "stage_2_train_labels.csv").is_file():
        prepare_table(directory, len(_dicoms(directory)), repeats)
    else:
        print("prepare --cache: skipped (no stage_2_train_labels.csv next to the files)")
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=48, help="files per table (default 48)")
    parser.add_argument("--size", type=int, default=1024, help="synthetic image side in pixels (default 1024)")
    parser.add_argument(
        "--jpeg-quality",
        type=int,
        nargs="+",
        default=[95, 87],
        help="synthetic sets to write: 95 = `detect synth`'s files, 87 = real RSNA size (default both)",
    )
    parser.add_argument("--dir", type=Path, default=None, help="an RSNA folder (or *.dcm files) to use instead")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per method, best reported (default 3)")
    args = parser.parse_args(argv)

    print(
        f"pydicom {pydicom.__version__}, simplejpeg {simplejpeg.__version__}, OpenCV {cv2.__version__}, "
        f"numpy {np.__version__}{', torch ' + torch.__version__ if torch else ''}; best of {args.repeats} rounds"
    )
    status = 0
    if args.dir is not None and _dicoms(args.dir):
        status |= run_one_set(args.dir, f"from {args.dir}", args.repeats, args.images)
    else:
        for quality in args.jpeg_quality:
            with tempfile.TemporaryDirectory(prefix="bench_decode_") as tmp:
                _write_synthetic(Path(tmp), args.images, args.size, quality)
                status |= run_one_set(
                    Path(tmp), f"synthetic (synth_rsna, JPEG quality {quality})", args.repeats, args.images
                )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\n{os.cpu_count()} CPU cores, 1-minute load average {load:.1f} at the end of the run")
    return status


if __name__ == "__main__":
    sys.exit(main())
