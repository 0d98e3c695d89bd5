"""Reading the files a user points at: one DICOM / PNG / JPEG -> a LoadedImage, in batches.

    load_image(path)                      -> LoadedImage (uint8 [H, W] + DICOM header), or a DetectError
    load_or_fail(path)                    -> LoadedImage, or a BadFile with the reason
    iter_loaded_batches(files, n, workers) the files read n at a time, the next batches in background
                                           threads (a bounded read-ahead) while the caller predicts
    default_read_workers()                 how many reader threads when the user does not say

The kind of file is decided by its content, not its name (data_prep.images.read_any_image).
"""
from __future__ import annotations

import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Deque, Iterator, Sequence

import numpy as np

from data_prep.codestreams import DEFAULT_MAX_IMAGE_PIXELS
from data_prep.errors import DetectError, ImageReadError
from data_prep.images import read_any_image
from data_prep.records import BadFile, DicomHeader


@dataclass(frozen=True)
class LoadedImage:
    """One readable input: `pixels` uint8 [H, W] (display orientation), `header` for DICOMs."""

    source: str
    pixels: np.ndarray
    header: DicomHeader | None = None

    @property
    def height_px(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width_px(self) -> int:
        return int(self.pixels.shape[1])


def load_image(path: str | Path, *, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> LoadedImage:
    """Read a DICOM, PNG or JPEG (decided by content, not name), refusing one over `max_pixels`
    before decoding it. Raises a DetectError subclass."""
    p = Path(path)
    if not p.exists():
        raise ImageReadError(p, "file not found")
    if p.is_dir():
        raise ImageReadError(p, "is a folder, not an image file")
    pixels, header = read_any_image(p, max_pixels=max_pixels)
    return LoadedImage(source=str(path), pixels=pixels, header=header)


def load_or_fail(path: Path, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> LoadedImage | BadFile:
    """`load_image`, with a user error turned into a BadFile (anything else is a bug and raises)."""
    try:
        return load_image(path, max_pixels=max_pixels)
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


def iter_loaded_batches(files: Sequence[Path], batch_size: int, workers: int = 2, *,
                        max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS, prefetch_batches: int = 2,
                        read: Callable[[Path, int], Any] | None = None) -> Iterator[list[Any]]:
    """Yield the files read in batches of `batch_size`, in order; up to `prefetch_batches`
    batches beyond the one handed out are read ahead by `workers` background threads while the
    caller works (a bounded read-ahead: at most (prefetch_batches + 1) x batch_size images held).
    `workers=0` reads each batch in the calling thread when it is asked for: no overlap, the
    serial baseline. Unreadable files (and files over `max_pixels`) come back as BadFile, in
    their place. Threads suffice: the JPEG decoder (simplejpeg) and OpenCV release the GIL,
    and the readers keep no shared state, so the threads' verdicts are independent (data_prep.dicom).
    `read(path, max_pixels)`: the work done per file in the threads, `load_or_fail` by default
    (the predictor passes one that also letterboxes the image: detect.inference.api)."""
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    if prefetch_batches < 1:
        raise ValueError(f"prefetch_batches must be >= 1, got {prefetch_batches}")
    batches = [list(files[i : i + batch_size]) for i in range(0, len(files), batch_size)]
    read = read if read is not None else load_or_fail
    if workers == 0:
        for batch in batches:
            yield [read(f, max_pixels) for f in batch]
        return
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="detect-read")
    window: Deque[list[Future]] = deque()
    try:
        for k in range(len(batches)):
            while len(window) <= prefetch_batches and k + len(window) < len(batches):
                window.append([pool.submit(read, f, max_pixels) for f in batches[k + len(window)]])
            yield [future.result() for future in window.popleft()]
    finally:
        # A caller that stops early (an error, a closed generator) does not wait for the read-ahead.
        pool.shutdown(wait=True, cancel_futures=True)
