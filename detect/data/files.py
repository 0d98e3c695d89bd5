"""Reading the files a user points at: one DICOM / PNG / JPEG -> a LoadedImage, in batches.

    load_image(path)                      -> LoadedImage (uint8 [H, W] + DICOM header), or a DetectError
    load_image(path, target_size_px=S)    -> the same, JPEG data decoded at a reduced DCT scale for
                                           an S px model input (original_hw: the file's own size)
    load_or_fail(path)                    -> LoadedImage, or a BadFile with the reason
    load_image_bytes(data, suffix, folder) -> the same for bytes in memory (an upload, a Dataset)
    iter_loaded_batches(files, n, workers) the files read n at a time, the next batches in background
                                           threads (a bounded read-ahead) while the caller predicts
    default_read_workers()                 how many reader threads when the user does not say

The kind of file is decided by its content, not its name (data_prep.images.read_any_image).
"""

from __future__ import annotations

import os
import uuid
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from data_prep.codestreams import DEFAULT_MAX_IMAGE_PIXELS
from data_prep.errors import DetectError, ImageReadError
from data_prep.images import read_any_image, read_any_image_sized
from data_prep.records import BadFile, DicomHeader


@dataclass(frozen=True)
class LoadedImage:
    """One readable input: `pixels` uint8 [H, W] (display orientation), `header` for DICOMs."""

    source: str
    pixels: np.ndarray
    header: DicomHeader | None = None
    # The file's own (rows, columns) when `pixels` were decoded smaller (load_image's
    # target_size_px); None: `pixels` are the original. Predictions map back to this size.
    decoded_from_hw: tuple[int, int] | None = None

    @property
    def original_hw(self) -> tuple[int, int]:
        return self.decoded_from_hw or (int(self.pixels.shape[0]), int(self.pixels.shape[1]))

    @property
    def height_px(self) -> int:
        """The ORIGINAL height, whatever size was decoded."""
        return self.original_hw[0]

    @property
    def width_px(self) -> int:
        """The ORIGINAL width, whatever size was decoded."""
        return self.original_hw[1]


def load_image(
    path: str | Path, *, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS, target_size_px: int | None = None
) -> LoadedImage:
    """Read a DICOM, PNG or JPEG (decided by content, not name), refusing one over `max_pixels`
    before decoding it. Raises a DetectError subclass.

    `target_size_px` (the model's input size): JPEG data is decoded at the largest 1/2, 1/4 or
    1/8 DCT scale that still covers the letterbox (data_prep.images.read_any_image_sized); the
    result's `decoded_from_hw` is then the original size, to pass to prepare_image's
    `original_hw` so that predictions come back in ORIGINAL pixels."""
    p = Path(path)
    if not p.exists():
        raise ImageReadError(p, "file not found")
    if p.is_dir():
        raise ImageReadError(p, "is a folder, not an image file")
    if target_size_px is not None:
        image = read_any_image_sized(p, target_size_px, max_pixels=max_pixels)
        reduced = image.pixels.shape[:2] != image.original_hw
        return LoadedImage(
            source=str(path),
            pixels=image.pixels,
            header=image.header,
            decoded_from_hw=image.original_hw if reduced else None,
        )
    pixels, header = read_any_image(p, max_pixels=max_pixels)
    return LoadedImage(source=str(path), pixels=pixels, header=header)


def load_image_bytes(
    data: bytes,
    suffix: str,
    folder: Path,
    *,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    target_size_px: int | None = None,
) -> LoadedImage:
    """`load_image` of bytes held in memory. The readers take a path, so `data` goes to a fresh
    name in `folder` (the caller's private folder) and is removed after; `source` is that path."""
    path = Path(folder) / f"{uuid.uuid4().hex}{suffix}"
    try:
        path.write_bytes(data)
        return load_image(path, max_pixels=max_pixels, target_size_px=target_size_px)
    finally:
        path.unlink(missing_ok=True)


def load_or_fail(
    path: Path, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS, target_size_px: int | None = None
) -> LoadedImage | BadFile:
    """`load_image`, with a user error turned into a BadFile (anything else is a bug and raises)."""
    try:
        return load_image(path, max_pixels=max_pixels, target_size_px=target_size_px)
    except DetectError as exc:
        reason = getattr(exc, "reason", None) or str(exc)
        return BadFile(path=str(path), reason=reason)


def default_read_workers(device_type: str = "cuda", cpu_count: int | None = None) -> int:
    """Reader threads for `detect infer` when the user does not say. For a GPU: one per core but
    one (left to the thread that drives the model), at most 8: a 1024 px JPEG DICOM takes ~5 ms
    to read, so 8 threads feed ~1,500 images/s, more than one GPU predicts. For the CPU: 1, as
    the CPU model takes ~100x longer per image than its read, and the cores are the model's."""
    if device_type != "cuda":
        return 1
    cores = cpu_count if cpu_count is not None else (os.cpu_count() or 1)
    return max(1, min(8, cores - 1))


def iter_loaded_batches(
    files: Sequence[Path],
    batch_size: int,
    workers: int = 2,
    *,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    prefetch_batches: int = 2,
    read: Callable[[Path, int], Any] | None = None,
    target_size_px: int | None = None,
) -> Iterator[list[Any]]:
    """Yield the files read in batches of `batch_size`, in order; up to `prefetch_batches`
    batches beyond the one handed out are read ahead by `workers` background threads while the
    caller works (a bounded read-ahead: at most (prefetch_batches + 1) x batch_size images held).
    `workers=0` reads each batch in the calling thread when it is asked for: no overlap, the
    serial baseline. Unreadable files (and files over `max_pixels`) come back as BadFile, in
    their place. Threads suffice: the JPEG decoder (simplejpeg) and OpenCV release the GIL,
    and the readers keep no shared state, so the threads' verdicts are independent (data_prep.dicom).
    `read(path, max_pixels)`: the work done per file in the threads, `load_or_fail` by default
    (the predictor passes one that also letterboxes the image: detect.inference.api).
    `target_size_px`: as in load_image, for the default `read` (the model's input size: JPEG
    data decoded at a reduced DCT scale)."""
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    if prefetch_batches < 1:
        raise ValueError(f"prefetch_batches must be >= 1, got {prefetch_batches}")
    batches = [list(files[i : i + batch_size]) for i in range(0, len(files), batch_size)]
    if read is None:

        def read(path: Path, limit: int) -> LoadedImage | BadFile:
            if target_size_px is None:
                return load_or_fail(path, limit)
            return load_or_fail(path, limit, target_size_px)

    if workers == 0:
        for batch in batches:
            yield [read(f, max_pixels) for f in batch]
        return
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="detect-read")
    window: deque[list[Future]] = deque()
    try:
        for k in range(len(batches)):
            while len(window) <= prefetch_batches and k + len(window) < len(batches):
                window.append([pool.submit(read, f, max_pixels) for f in batches[k + len(window)]])
            yield [future.result() for future in window.popleft()]
    finally:
        # A caller that stops early (an error, a closed generator) does not wait for the read-ahead.
        pool.shutdown(wait=True, cancel_futures=True)
