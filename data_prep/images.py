"""PNG/JPEG reading (Kermany's chest_xray/*.jpeg) and the DICOM-or-image dispatch.

Output contract, the same as `data_prep.dicom.read_dicom`: a 2-D ``uint8`` array [H, W],
0 = black, 255 = white, the file's own size (non-square stays non-square).

- 8-bit grayscale: unchanged.
- 3-channel (BGR as OpenCV decodes it) and 4-channel (BGRA): converted to grayscale with
  OpenCV's ITU-R BT.601 weights; alpha is ignored. Kermany has some 3-channel JPEGs whose
  channels are equal, which this maps to the same grey levels.
- 2-channel (gray + alpha): the gray channel.
- more than 8 bits (16-bit PNG) or floating point: scaled linearly from the image's own
  min..max to 0..255, the rule DICOM pixels without a window follow (a constant image -> 0).

Anything OpenCV cannot decode (junk such as `.DS_Store`, an empty or cut-off file) raises
ImageReadError(path, reason) with a one-line reason.
"""
from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np

from data_prep.dicom import jpeg_is_complete, read_dicom, read_dicom_header
from data_prep.errors import DicomReadError, ImageReadError
from data_prep.records import DicomHeader

__all__ = ["is_dicom_file", "read_any_image", "read_image"]

_DICM_OFFSET = 128


def _file_kind(head: bytes) -> str:
    """A short name for what the first bytes of a file look like, for error messages."""
    if head.startswith(b"\x89PNG"):
        return "a PNG"
    if head.startswith(b"\xff\xd8"):
        return "a JPEG"
    if len(head) >= _DICM_OFFSET + 4 and head[_DICM_OFFSET : _DICM_OFFSET + 4] == b"DICM":
        return "a DICOM file (use read_any_image or read_dicom)"
    return "not a PNG/JPEG image"


def read_image(path: str | Path) -> np.ndarray:
    """Read a PNG/JPEG (or other OpenCV-decodable raster) as uint8 grayscale [H, W].

    Raises ImageReadError for a missing, empty or undecodable file.
    """
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise ImageReadError(path, f"cannot open: {exc.strerror or exc}") from None
    if data.size == 0:
        raise ImageReadError(path, "empty file (0 bytes)")
    if data[:2].tobytes() == b"\xff\xd8" and not jpeg_is_complete(data.tobytes()):
        raise ImageReadError(path, f"truncated JPEG ({data.size} bytes, no end-of-image marker FF D9)")
    try:
        image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        reason = " ".join(str(exc).split())[:200]
        raise ImageReadError(path, f"undecodable image ({data.size} bytes): {reason}") from None
    if image is None or image.size == 0:
        kind = _file_kind(data[: _DICM_OFFSET + 4].tobytes())
        raise ImageReadError(path, f"undecodable image ({data.size} bytes, {kind}): OpenCV could not decode it")
    return _to_gray_uint8(path, image)


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


SNIFF_BYTES = 132  # the DICOM preamble (128) and the DICM marker (4)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8\xff"
# Groups a DICOM dataset without the 128-byte preamble starts with: file meta (0002, in files
# that keep it), identifying (0008), or patient (0010) when 0008 is absent. PACS exports often
# drop the preamble and the extension both.
RAW_DICOM_FIRST_GROUPS: tuple[int, ...] = (0x0002, 0x0008, 0x0010)
RAW_DICOM_MAX_FIRST_LENGTH = 1024  # the first element (a UID, a date, a type) is short


def sniff_image_kind(head: bytes) -> str | None:
    """'dicom', 'png' or 'jpeg' when the first bytes of a file look like one, else None."""
    if head[128:132] == b"DICM":
        return "dicom"
    if head.startswith(PNG_SIGNATURE):
        return "png"
    if head.startswith(JPEG_SIGNATURE):
        return "jpeg"
    if looks_like_raw_dicom(head):
        return "dicom"
    return None


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
    including unreadable paths.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(_DICM_OFFSET + 4)
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


def read_any_image(path: str | Path) -> tuple[np.ndarray, DicomHeader | None]:
    """Read a DICOM (-> read_dicom: pixels and header) or a PNG/JPEG (-> read_image, header None).

    A '.dcm' file goes to read_dicom even when it is not DICOM, so its error says so.
    Raises DicomReadError or ImageReadError respectively.
    """
    if is_dicom_file(path) or Path(path).suffix.lower() == ".dcm":
        return read_dicom(path)
    return read_image(path), None
