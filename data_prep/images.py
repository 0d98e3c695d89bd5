"""PNG/JPEG reading (Kermany's chest_xray/*.jpeg) and the DICOM-or-image dispatch.

Output contract, the same as `data_prep.dicom.read_dicom`: a 2-D ``uint8`` array [H, W],
0 = black, 255 = white, the file's own size (non-square stays non-square).

- 8-bit grayscale: unchanged.
- 3-channel (BGR as decoded) and 4-channel (BGRA): converted to grayscale with OpenCV's
  ITU-R BT.601 weights; alpha is ignored. Kermany has some 3-channel JPEGs whose channels
  are equal, which this maps to the same grey levels.
- 2-channel (gray + alpha): the gray channel.
- more than 8 bits (16-bit PNG) or floating point: scaled linearly from the image's own
  min..max to 0..255, the rule DICOM pixels without a window follow (a constant image -> 0).

Only PNG and JPEG are read, decided by the file's magic bytes: their size is checked against
the pixel limit from the header (PNG IHDR, JPEG SOF) before anything is decoded, which
OpenCV's other decoders (TIFF, WebP, ...) would not allow. JPEG is decoded strictly
(data_prep.codestreams.decode_jpeg: corrupt data is an error, not a garbled image); PNG by
OpenCV (libpng checks every chunk's CRC). Anything else, an empty or cut-off file, a FIFO or
a folder raises ImageReadError(path, reason) with a one-line reason.

`read_any_image_sized(path, target_size_px)` is the reader of every path that knows the model's
input size (the cache, the training loader, detect eval / infer): JPEG data (a JPEG file, a
DICOM's JPEG Baseline frame) is decoded at the largest 1/2, 1/4 or 1/8 DCT scale that still
covers the letterbox, and the result carries the file's own size (`SizedImage.original_hw`)
for data_prep.geometry.letterbox_resize and for mapping predictions back.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from data_prep.codestreams import (
    DEFAULT_MAX_IMAGE_PIXELS,
    StreamError,
    decode_jpeg,
    jpeg_frame_size,
    pixel_limit_problem,
    png_size,
)
from data_prep.dicom import read_dicom, read_dicom_header
from data_prep.errors import DicomReadError, ImageReadError
from data_prep.geometry import letterbox_content_shape
from data_prep.inputs import content_kind, open_regular_file
from data_prep.records import DicomHeader

__all__ = ["SizedImage", "is_dicom_file", "read_any_image", "read_any_image_sized", "read_image"]

_DICM_OFFSET = 128


def _read_bytes(path: str | Path) -> bytes:
    handle, size_bytes = open_regular_file(path, ImageReadError)
    with handle:
        if size_bytes == 0:
            raise ImageReadError(path, "empty file (0 bytes)")
        try:
            return handle.read()
        except OSError as exc:
            raise ImageReadError(path, f"cannot read: {exc.strerror or exc}") from None


def _decode_png(path: str | Path, data: bytes, max_pixels: int) -> np.ndarray:
    size = png_size(data)
    if size is None:
        raise ImageReadError(path, f"truncated or corrupt PNG ({len(data)} bytes): no IHDR header")
    problem = pixel_limit_problem(size.height, size.width, max_pixels, components=size.components, bits=size.bits)
    if problem is not None:
        raise ImageReadError(path, problem)
    try:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        reason = " ".join(str(exc).split())[:200]
        raise ImageReadError(path, f"undecodable PNG ({len(data)} bytes): {reason}") from None
    if image is None or image.size == 0:
        raise ImageReadError(path, f"undecodable PNG ({len(data)} bytes): truncated or corrupt (libpng rejected it)")
    return image


def read_image(path: str | Path, *, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> np.ndarray:
    """Read a PNG or JPEG as uint8 grayscale [H, W]; the format is decided by content.

    Raises ImageReadError for a missing, empty, non-regular, cut-off, corrupt or undecodable
    file, another format (named by its magic bytes), or a size over `max_pixels`.
    """
    return _read_image(path, max_pixels, None).pixels


def _read_image(path: str | Path, max_pixels: int, target_size_px: int | None) -> SizedImage:
    data = _read_bytes(path)
    kind = content_kind(data[: _DICM_OFFSET + 4])
    original_hw = None
    if kind == "a JPEG file":
        try:
            min_shape = None
            if target_size_px is not None:
                frame = jpeg_frame_size(data)  # decode_jpeg checks it again, with the limit, before decoding
                if frame is not None:
                    original_hw = (frame.height, frame.width)
                    min_shape = letterbox_content_shape(frame.height, frame.width, target_size_px)
            image = decode_jpeg(data, max_pixels=max_pixels, min_shape=min_shape)
        except StreamError as exc:
            raise ImageReadError(path, str(exc)) from None
    elif kind == "a PNG file":
        image = _decode_png(path, data, max_pixels)
    elif kind == "a DICOM file":
        raise ImageReadError(path, "a DICOM file, not a PNG/JPEG (use read_any_image or read_dicom)")
    else:
        raise ImageReadError(path, f"{kind or 'unknown content'}, not a PNG/JPEG image ({len(data)} bytes)")
    pixels = _to_gray_uint8(path, image)
    return SizedImage(
        pixels=pixels, original_hw=original_hw or (int(pixels.shape[0]), int(pixels.shape[1])), header=None
    )


def _to_gray_uint8(path: str | Path, image: np.ndarray) -> np.ndarray:
    if image.ndim == 3:
        channels = image.shape[2]
        if channels == 1:
            image = image[:, :, 0]
        elif channels == 2:
            image = image[:, :, 0]
        elif channels == 3:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        elif channels == 4:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
        else:
            raise ImageReadError(path, f"unsupported image with {channels} channels")
    elif image.ndim != 2:
        raise ImageReadError(path, f"unsupported image shape {image.shape}")
    if image.dtype == np.uint8:
        return np.ascontiguousarray(image)
    values = image.astype(np.float64)
    if not np.all(np.isfinite(values)):
        raise ImageReadError(path, "image contains non-finite values")
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(image.shape, dtype=np.uint8)
    return np.clip(np.rint((values - low) / (high - low) * 255.0), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class SizedImage:
    """An image read for a known letterbox size: `pixels` uint8 [h, w], possibly decoded at a
    1/2, 1/4 or 1/8 DCT scale; `original_hw` the file's own (rows, columns), which boxes and
    predictions refer to; `header` for a DICOM."""

    pixels: np.ndarray
    original_hw: tuple[int, int]
    header: DicomHeader | None

    @property
    def reduction(self) -> int:
        """d of the 1/d DCT scale the pixels were decoded at (1: full size)."""
        return max(1, self.original_hw[0] // max(1, int(self.pixels.shape[0])))


SNIFF_BYTES = 132  # the DICOM preamble (128) and the DICM marker (4)
# Groups a DICOM dataset without the 128-byte preamble starts with: file meta (0002, in files
# that keep it), identifying (0008), or patient (0010) when 0008 is absent. PACS exports often
# drop the preamble and the extension both.
RAW_DICOM_FIRST_GROUPS: tuple[int, ...] = (0x0002, 0x0008, 0x0010)
RAW_DICOM_MAX_FIRST_LENGTH = 1024  # the first element (a UID, a date, a type) is short


# data_prep.inputs.content_kind's names of the formats detect reads as images
_IMAGE_KINDS: dict[str, str] = {"a DICOM file": "dicom", "a PNG file": "png", "a JPEG file": "jpeg"}


def sniff_image_kind(head: bytes) -> str | None:
    """'dicom', 'png' or 'jpeg' when the first bytes of a file look like one, else None
    (the magic bytes of data_prep.inputs, plus a DICOM dataset without its preamble)."""
    kind = _IMAGE_KINDS.get(content_kind(head) or "")
    if kind is None and looks_like_raw_dicom(head):
        return "dicom"
    return kind


def looks_like_raw_dicom(head: bytes) -> bool:
    """True when a file without the preamble starts like a little-endian DICOM dataset: a first
    tag in the file meta, identifying or patient group, followed either by an explicit VR (two
    capital letters) or by a short implicit-VR length."""
    if len(head) < 8:
        return False
    group, element = struct.unpack("<HH", head[:4])
    if group not in RAW_DICOM_FIRST_GROUPS or element >= 0x1000:
        return False
    if head[4:6].isalpha() and head[4:6].isupper():
        return True  # explicit VR
    (length,) = struct.unpack("<I", head[4:8])
    return 0 < length <= RAW_DICOM_MAX_FIRST_LENGTH


def is_dicom_file(path: str | Path) -> bool:
    """True for a DICOM Part 10 file ('DICM' at byte 128), or a raw DICOM dataset (no preamble:
    a '.dcm' name, or a start that `looks_like_raw_dicom`) whose header parses. False otherwise,
    including unreadable paths and FIFOs or devices (never opened in a way that could block).
    """
    try:
        handle, _ = open_regular_file(path, ImageReadError)
    except ImageReadError:
        return False
    with handle:
        try:
            head = handle.read(_DICM_OFFSET + 4)
        except OSError:
            return False
    if len(head) == _DICM_OFFSET + 4 and head[_DICM_OFFSET:] == b"DICM":
        return True
    if not head or (Path(path).suffix.lower() != ".dcm" and not looks_like_raw_dicom(head)):
        return False
    try:
        read_dicom_header(path)
    except DicomReadError:
        return False
    return True


def read_any_image(
    path: str | Path, *, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
) -> tuple[np.ndarray, DicomHeader | None]:
    """Read a DICOM (-> read_dicom: pixels and header) or a PNG/JPEG (-> read_image, header None).

    A '.dcm' file goes to read_dicom even when it is not DICOM, so its error says what it is
    ('a PNG file, not a DICOM'). `max_pixels` bounds the decoded size, checked before decoding.
    Raises DicomReadError or ImageReadError respectively.
    """
    if is_dicom_file(path) or Path(path).suffix.lower() == ".dcm":
        return read_dicom(path, max_pixels=max_pixels)
    return read_image(path, max_pixels=max_pixels), None


def read_any_image_sized(
    path: str | Path, target_size_px: int, *, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
) -> SizedImage:
    """`read_any_image` for an image that will be letterboxed to `target_size_px`: a JPEG (or a
    DICOM's JPEG Baseline frame) is decoded at the largest 1/2, 1/4 or 1/8 DCT scale that keeps
    it at least the letterbox's content size (data_prep.codestreams: the bound on how far that
    is from a full decode + area resize); other formats at full size. Finish with
    data_prep.geometry.letterbox_resize(image.pixels, target_size_px, image.original_hw).
    Raises DicomReadError or ImageReadError as read_any_image does.
    """
    if target_size_px <= 0:
        raise ValueError(f"target_size_px must be positive, got {target_size_px}")
    if is_dicom_file(path) or Path(path).suffix.lower() == ".dcm":
        pixels, header = read_dicom(path, max_pixels=max_pixels, target_size_px=target_size_px)
        return SizedImage(pixels=pixels, original_hw=(header.rows, header.columns), header=header)
    return _read_image(path, max_pixels, target_size_px)
