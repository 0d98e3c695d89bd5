"""Reading the files a user points at: one DICOM / PNG / JPEG -> a LoadedImage, in batches.

    load_image(path)                      -> LoadedImage (uint8 [H, W] + DICOM header), or a DetectError
    load_image(path, target_size_px=S)    -> the same, JPEG data decoded at a reduced DCT scale for
                                           an S px model input (original_hw: the file's own size)
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
        return LoadedImage(source=str(path), pixels=image.pixels, header=image.header,
                           decoded_from_hw=image.original_hw if reduced else None)
    pixels, header = read_any_image(p, max_pixels=max_pixels)
    return LoadedImage(source=str(path), pixels=pixels, header=header)


def load_or_fail(path: Path, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
                 target_size_px: int | None = None) -> LoadedImage | BadFile:
    """`load_image`, with a user error turned into a BadFile (anything else is a bug and raises)."""
    try:
        return load_image(path, max_pixels=max_pixels, target_size_px=target_size_px)
    except DetectError as exc:
        reason = getattr(exc, "reason", None) or str(exc)
        return BadFile(path=str(path), reason=reason)


def iter_loaded_batches(files: Sequence[Path], batch_size: int, workers: int = 2, *,
                        max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
                        target_size_px: int | None = None) -> Iterator[list[LoadedImage | BadFile]]:
    """Yield the files read in batches of `batch_size`, in order; the next batch is read in
    background threads while the caller works on the current one. Unreadable files (and
    files over `max_pixels`) come back as BadFile, in their place. The readers keep no shared
    state, so the threads' verdicts are independent (data_prep.dicom). `target_size_px`: as
    in load_image (the model's input size: JPEG data decoded at a reduced DCT scale)."""
    batches = [list(files[i : i + batch_size]) for i in range(0, len(files), batch_size)]
    if not batches:
        return
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        pending = [pool.submit(load_or_fail, f, max_pixels, target_size_px) for f in batches[0]]
        for k in range(len(batches)):
            current = pending
            pending = ([pool.submit(load_or_fail, f, max_pixels, target_size_px) for f in batches[k + 1]]
                       if k + 1 < len(batches) else [])
            yield [future.result() for future in current]
