"""The preprocessing cache: every image decoded once, letterboxed, stored as a grayscale PNG.

    <prepared_dir>/cache/<size_px>/<image_id with '/' -> '__'>.png

Each PNG is uint8 [size_px, size_px]: the image scaled by size_px / max(height, width) and
placed top-left on black (data_prep.geometry.letterbox_resize), so a box maps to the cache by
`boxes_xyxy * scale` alone. JPEG data is decoded at a reduced DCT scale when size_px allows
(data_prep.images.read_any_image_sized), as every other reader of a known size decodes it. Training then reads small PNGs instead of decoding a 1024x1024
JPEG-in-DICOM every epoch.

Building is idempotent: a PNG that already exists and is complete (right signature, right
size, IEND chunk at the end) is kept, and new files are written through data_prep.atomic
(a unique temporary name, then a rename), so an interrupted build leaves no truncated PNG behind.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from data_prep.atomic import write_bytes_atomic
from data_prep.codestreams import DEFAULT_MAX_IMAGE_PIXELS
from data_prep.errors import DetectError, ImageReadError
from data_prep.geometry import letterbox_resize
from data_prep.images import read_any_image_sized
from data_prep.manifest import CACHE_DIRNAME, PreparedDataset
from data_prep.records import BadFile, ImageRecord

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_CHUNK_SIZE = 32  # images per task handed to a worker process
# Encoding, not decoding, was the slowest step of a cache build (5 ms of ~8 per 512 px image
# with zlib level 1 and libpng's adaptive filters). Measured on 512 px synthetic radiographs:
# the UP filter alone and Huffman-only deflate (no LZ77 match search, which finds little in
# noisy grey levels anyway) encode 2.7x faster, give ~14% SMALLER files, and decode 1.8x
# faster when training reads them back (benchmarks/bench_decode.py). Lossless either way.
_PNG_PARAMS = [
    cv2.IMWRITE_PNG_COMPRESSION,
    1,
    cv2.IMWRITE_PNG_STRATEGY,
    cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY,
    cv2.IMWRITE_PNG_FILTER,
    cv2.IMWRITE_PNG_FILTER_UP,
]
# What the cache wrote before: kept for benchmarks/bench_decode.py's baseline.
PNG_PARAMS_ZLIB1 = [cv2.IMWRITE_PNG_COMPRESSION, 1]


@dataclass(frozen=True)
class CacheResult:
    """What `build_cache` did. `bad_files` paths are relative to the dataset root."""

    cache_dir: Path
    size_px: int
    n_images: int
    n_written: int
    n_skipped: int  # already cached and complete
    bad_files: list[BadFile]


def is_complete_png(path: str | Path, size_px: int) -> bool:
    """True when `path` is a whole PNG of size_px x size_px (header and trailer checked, pixels not decoded)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(24)
            handle.seek(0, os.SEEK_END)
            if handle.tell() < 24 + len(_PNG_IEND):
                return False
            handle.seek(-len(_PNG_IEND), os.SEEK_END)
            tail = handle.read()
    except OSError:
        return False
    if head[:8] != _PNG_SIGNATURE or head[12:16] != b"IHDR":
        return False
    width, height = struct.unpack(">II", head[16:24])
    return width == size_px and height == size_px and tail == _PNG_IEND


def cache_one(
    source: str,
    destination: str,
    size_px: int,
    height: int | None,
    width: int | None,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> str | None:
    """Decode `source`, letterbox it to size_px and write `destination`; return None or the failure reason.

    A decoded size that differs from the manifest's (height, width) is a failure: the boxes
    were checked against the header's size and would land in the wrong place. JPEG data is
    decoded at a reduced DCT scale when size_px allows (data_prep.images.read_any_image_sized;
    the bound on the difference is in data_prep.codestreams), then area-resized.
    """
    try:
        image = read_any_image_sized(source, size_px, max_pixels=max_pixels)
    except DetectError as exc:
        return getattr(exc, "reason", str(exc))
    if height is not None and width is not None and image.original_hw != (height, width):
        return f"decoded size {image.original_hw[0]}x{image.original_hw[1]} differs from the header's {height}x{width}"
    resized, _ = letterbox_resize(image.pixels, size_px, image.original_hw)
    ok, encoded = cv2.imencode(".png", resized, _PNG_PARAMS)
    if not ok:
        return "PNG encoding failed"
    # not fsynced: a cache file can be rebuilt, and is_complete_png checks every one on reuse
    write_bytes_atomic(destination, encoded.tobytes(), durable=False)
    return None


def _cache_chunk(tasks: list[tuple[str, str, str, int, int | None, int | None, int]]) -> list[tuple[str, str | None]]:
    return [
        (relative, cache_one(source, dest, size, h, w, limit)) for relative, source, dest, size, h, w, limit in tasks
    ]


def build_cache(
    prepared: PreparedDataset,
    size_px: int,
    workers: int = 1,
    records: list[ImageRecord] | None = None,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> CacheResult:
    """Write the letterboxed PNG of every record (default: all of `prepared.records`) not cached yet.

    Files that cannot be decoded are returned as BadFiles (path relative to the data root,
    reason), never fatal: that includes corrupt JPEG data and images over `max_pixels`. With workers > 1 the images are decoded in a process pool, in chunks.
    A progress bar with counts is shown on a terminal.
    """
    if size_px <= 0:
        raise ValueError(f"size_px must be positive, got {size_px}")
    records = prepared.records if records is None else records
    cache_dir = prepared.prepared_dir / CACHE_DIRNAME / str(int(size_px))
    cache_dir.mkdir(parents=True, exist_ok=True)

    tasks = []
    skipped = 0
    for record in records:
        destination = prepared.cached_image_path(record.image_id, size_px)
        if is_complete_png(destination, size_px):
            skipped += 1
            continue
        tasks.append(
            (
                record.path,
                str(prepared.image_path(record)),
                str(destination),
                int(size_px),
                record.height,
                record.width,
                max_pixels,
            )
        )
    chunks = [tasks[i : i + _CHUNK_SIZE] for i in range(0, len(tasks), _CHUNK_SIZE)]

    bad_files: list[BadFile] = []
    written = 0
    bar = tqdm(total=len(records), initial=skipped, desc=f"cache {size_px}px", unit="img", disable=None)
    bar.set_postfix(written=0, skipped=skipped, bad=0)

    def collect(results: list[tuple[str, str | None]]) -> None:
        nonlocal written
        for relative, reason in results:
            if reason is None:
                written += 1
            else:
                bad_files.append(BadFile(path=relative, reason=reason))
        bar.update(len(results))
        bar.set_postfix(written=written, skipped=skipped, bad=len(bad_files))

    try:
        if workers > 1 and len(chunks) > 1:
            with get_context().Pool(min(workers, len(chunks))) as pool:
                for results in pool.imap(_cache_chunk, chunks):
                    collect(results)
        else:
            for chunk in chunks:
                collect(_cache_chunk(chunk))
    finally:
        bar.close()

    return CacheResult(
        cache_dir=cache_dir,
        size_px=int(size_px),
        n_images=len(records),
        n_written=written,
        n_skipped=skipped,
        bad_files=sorted(bad_files, key=lambda b: b.path),
    )


def load_cached_image(path: str | Path) -> np.ndarray:
    """A cached PNG -> uint8 [size_px, size_px]. Raises ImageReadError naming the file if it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(path, "cached image not found: run `detect prepare --cache`")
    pixels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if pixels is None:
        raise ImageReadError(path, "cannot decode the cached PNG: delete it and run `detect prepare --cache` again")
    if pixels.ndim != 2 or pixels.dtype != np.uint8:
        raise ImageReadError(path, f"cached image is {pixels.dtype} {pixels.shape}, expected 2-D uint8")
    return pixels
