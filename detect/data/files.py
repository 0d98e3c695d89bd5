"""Reading the files a user points at: one DICOM / PNG / JPEG -> a LoadedImage, in batches.

    load_image(path)                      -> LoadedImage (uint8 [H, W] + DICOM header), or a DetectError
    load_or_fail(path)                    -> LoadedImage, or a BadFile with the reason
    iter_loaded_batches(files, n, workers) the files read n at a time, the next batch in background
                                           threads while the caller predicts the current one

The kind of file is decided by its content, not its name (data_prep.images.read_any_image).
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

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


def iter_loaded_batches(files: Sequence[Path], batch_size: int, workers: int = 2, *,
                        max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> Iterator[list[LoadedImage | BadFile]]:
    """Yield the files read in batches of `batch_size`, in order; the next batch is read in
    background threads while the caller works on the current one. Unreadable files (and
    files over `max_pixels`) come back as BadFile, in their place. The readers keep no shared
    state, so the threads' verdicts are independent (data_prep.dicom)."""
    batches = [list(files[i : i + batch_size]) for i in range(0, len(files), batch_size)]
    if not batches:
        return
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        pending = [pool.submit(load_or_fail, f, max_pixels) for f in batches[0]]
        for k in range(len(batches)):
            current = pending
            pending = [pool.submit(load_or_fail, f, max_pixels) for f in batches[k + 1]] if k + 1 < len(batches) else []
            yield [future.result() for future in current]
