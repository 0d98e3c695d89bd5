"""What an upload is, from its bytes alone, and how big its header says it is, before decoding.

    sniff_kind(data)                 'dicom' | 'png' | 'jpeg', or UnsupportedUpload (-> 415)
    declared_size_px(data, kind)     DeclaredSize (height, width, planes, components, bits) from
                                     the DICOM header (pixel data not decoded; an embedded JPEG
                                     frame's SOF counts too), the PNG IHDR or the JPEG SOF;
                                     BadUpload (-> 422)
    check_declared_pixels(...)       the pixel cap and the decoded-bytes cap: BadUpload (-> 422)

The client's file name and Content-Type are never trusted: a PNG named scan.dcm is a PNG.
`check_declared_pixels` is the one place the cap is applied; its bound on the bytes a decoder
allocates is data_prep's (codestreams.pixel_limit_problem), the one the readers apply.
"""

from __future__ import annotations

import io
import warnings
from typing import NamedTuple

import pydicom

from data_prep.codestreams import BYTES_PER_PIXEL_BUDGET, decoded_bytes, pixel_limit_problem, png_size
from data_prep.errors import DetectError
from data_prep.images import SNIFF_BYTES, sniff_image_kind

KINDS: tuple[str, ...] = ("dicom", "png", "jpeg")
SUFFIX_BY_KIND = {"dicom": ".dcm", "png": ".png", "jpeg": ".jpg"}

_JPEG_MAGIC = b"\xff\xd8\xff"
_DICM_OFFSET = 128
_PIXEL_DATA_TAG_LE = b"\xe0\x7f\x10\x00"
# The groups a DICOM dataset without preamble starts with: file meta (0002) or identifying (0008).
# JPEG start-of-frame markers (SOF0..SOF15 without DHT C4, JPG C8, DAC CC): they carry the size.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_STANDALONE = frozenset(range(0xD0, 0xD9)) | {0x01}


class DeclaredSize(NamedTuple):
    """What an upload's header declares: planes = frames x samples per pixel (1 for PNG / JPEG,
    whose channels are reduced to grey), and what the decoder allocates per pixel: `components`
    channels of `bits` bits."""

    height: int
    width: int
    planes: int
    components: int = 1
    bits: int = 8


class UploadError(DetectError):
    """An upload the server refuses; `status` is the HTTP status it answers."""

    status = 400


class UnsupportedUpload(UploadError):
    status = 415


class BadUpload(UploadError):
    status = 422


def sniff_kind(data: bytes) -> str:
    """The upload's kind from its first bytes (data_prep.images.sniff_image_kind, the rule
    `detect infer` finds files by); UnsupportedUpload for anything else."""
    kind = sniff_image_kind(data[:SNIFF_BYTES])
    if kind is None:
        raise UnsupportedUpload(f"unsupported upload ({len(data)} bytes): not a DICOM, PNG or JPEG file by its content")
    return kind


def _png_size(data: bytes) -> DeclaredSize:
    size = png_size(data)
    if size is None:
        raise BadUpload("PNG without its IHDR header chunk")
    return DeclaredSize(size.height, size.width, 1, size.components, size.bits)


def _jpeg_size(data: bytes) -> DeclaredSize:
    """Walk the marker segments up to the first start-of-frame (the entropy-coded data is skipped
    only after SOS, which comes later)."""
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise BadUpload(f"corrupt JPEG: no marker at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _JPEG_STANDALONE:
            pos += 2
            continue
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker in _JPEG_SOF:
            if pos + 9 > len(data):
                break
            height, width = (
                int.from_bytes(data[pos + 5 : pos + 7], "big"),
                int.from_bytes(data[pos + 7 : pos + 9], "big"),
            )
            components = data[pos + 9] if pos + 9 < len(data) else 1
            return DeclaredSize(height, width, 1, components, data[pos + 4])
        if marker == 0xDA or length < 2:
            raise BadUpload("corrupt JPEG: no frame header (SOF) before the image data")
        pos += 2 + length
    raise BadUpload(f"truncated JPEG ({len(data)} bytes): no frame header (SOF)")


def _dicom_int(ds: pydicom.Dataset, keyword: str, default: int) -> int:
    value = ds.get(keyword)
    if value is None or value == "":
        return default
    return int(value[0] if isinstance(value, (list, tuple, pydicom.multival.MultiValue)) else value)


def _dicom_size(data: bytes) -> DeclaredSize:
    """Rows, Columns, NumberOfFrames x SamplesPerPixel from the header; pixel data is not read."""
    raw = data[_DICM_OFFSET : _DICM_OFFSET + 4] != b"DICM"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=raw)
            rows, columns = _dicom_int(ds, "Rows", 0), _dicom_int(ds, "Columns", 0)
            samples = max(1, _dicom_int(ds, "SamplesPerPixel", 1))
            planes = max(1, _dicom_int(ds, "NumberOfFrames", 1)) * samples
            bits = _dicom_int(ds, "BitsAllocated", 8)
    except Exception as exc:  # pydicom fails in many ways on garbage; all of them mean a bad upload
        raise BadUpload(f"unreadable DICOM header ({len(data)} bytes): {type(exc).__name__}") from None
    if rows <= 0 or columns <= 0:
        raise BadUpload("DICOM without an image: Rows/Columns (0028,0010/0011) absent or zero")
    frame = _embedded_jpeg(data)
    if frame is not None:  # the decoder allocates what the frame's SOF says, whatever Rows/Columns say
        frame_rows, frame_columns = _jpeg_size(frame)[:2]
        rows, columns = max(rows, frame_rows), max(columns, frame_columns)
    return DeclaredSize(rows, columns, planes, 1, bits)


def _embedded_jpeg(data: bytes) -> bytes | None:
    """The first JPEG stream inside encapsulated Pixel Data (7FE0,0010), if there is one."""
    tag = data.rfind(_PIXEL_DATA_TAG_LE)
    if tag < 0:
        return None
    start = data.find(_JPEG_MAGIC, tag)
    return data[start:] if start >= 0 else None


def declared_size_px(data: bytes, kind: str) -> DeclaredSize:
    """(height, width, planes, components, bits) as the file's header declares them, without
    decoding pixels (see DeclaredSize)."""
    if kind == "png":
        return _png_size(data)
    if kind == "jpeg":
        return _jpeg_size(data)
    if kind == "dicom":
        return _dicom_size(data)
    raise ValueError(f"unknown upload kind {kind!r}; expected one of {KINDS}")


def check_declared_pixels(
    height_px: int, width_px: int, planes: int, max_pixels: int, *, components: int = 1, bits: int = 8
) -> None:
    """Refuse (BadUpload -> 422) an image whose declared size exceeds `max_pixels` pixels, whose
    decoder would allocate more than data_prep's bytes budget for that many pixels (`components`
    channels of `bits` bits: a 16-bit RGBA PNG takes 8 bytes a pixel), or which is empty."""
    if height_px <= 0 or width_px <= 0:
        raise BadUpload(f"image header declares an empty size {height_px}x{width_px}")
    total = height_px * width_px * planes
    if total > max_pixels:
        what = f"{height_px}x{width_px}" + (f"x{planes}" if planes > 1 else "")
        raise BadUpload(
            f"image header declares {what} = {total / 1e6:.1f} megapixels, above the server's "
            f"limit of {max_pixels / 1e6:.1f} (--max-image-megapixels); not decoded"
        )
    if pixel_limit_problem(height_px, width_px, max_pixels, components=components, bits=bits, frames=planes):
        needed = decoded_bytes(height_px, width_px, components=components, bits=bits, frames=planes)
        raise BadUpload(
            f"image header declares {height_px}x{width_px} x {components} channel(s) of {bits} bits: "
            f"{needed / 1e6:.0f} MB to decode, above the server's limit of "
            f"{max_pixels * BYTES_PER_PIXEL_BUDGET / 1e6:.0f} MB ({BYTES_PER_PIXEL_BUDGET} bytes a pixel "
            "of --max-image-megapixels); not decoded"
        )
