"""Compressed pixel streams (JPEG, JPEG-LS, JPEG 2000, PNG): their size before any decoder
runs, their completeness, and the one strict JPEG decoder.

    size = jpeg_frame_size(data)          # FrameSize from the SOF header, or None if not reached
    reason = pixel_limit_problem(h, w, max_pixels, components=c, bits=b)   # pixels, and bytes to allocate
    pixels = decode_jpeg(data, max_pixels=...)   # uint8 [H, W] or BGR [H, W, 3]; StreamError
    small = decode_jpeg(data, min_shape=(256, 256))  # decoded at 1/2, 1/4 or 1/8 scale when it can

Why here, in front of every decoder: a decoder allocates its output from the size the stream
claims. A 167 KB JPEG whose frame header says 60000 x 60000 makes libjpeg reserve 3.6 GB
before it finds out that the data is not there. So the size is read from the header (a few
bytes, parsed here in pure Python that trusts nothing) and checked against one limit on
decoded pixels, DEFAULT_MAX_IMAGE_PIXELS (100 megapixels: a 43 x 35 cm detector at 0.1 mm is
15 megapixels, so this is well above any radiograph), before a byte is decoded. The bytes the
decoder will allocate (pixels x channels x bytes per sample) are bounded too, at
BYTES_PER_PIXEL_BUDGET per pixel of that limit: a 486 KB PNG declaring 7999 x 7999 16-bit RGBA
is under a 64-megapixel limit but would allocate 512 MB.

JPEG data is decoded by simplejpeg (libjpeg-turbo) in strict mode: libjpeg's warnings about
corrupt entropy-coded data ("Corrupt JPEG data: 29 extraneous bytes before marker 0xd9",
"premature end of data segment", bad Huffman codes) become errors. OpenCV's decoder, used
before, printed the warning without a file name and returned the garbled image as valid.
Strict decoding catches most damage but not all: a change that still decodes to valid
Huffman codes of the right total length is invisible to any decoder (JPEG has no checksum).

Reduced decoding (`min_shape`): libjpeg can run its inverse DCT on the low-frequency
coefficients only and produce the image at 1/2, 1/4 or 1/8 of its size directly; the entropy
decoding is the same, the IDCT and the output (4x, 16x or 64x fewer pixels) are cheaper.
`dct_scale_denominator` picks the largest such reduction that keeps the image at least
`min_shape`, so the caller finishes with a small area resize (data_prep.geometry). A reduced
8x8 block is the average of its pixels computed in the frequency domain, not a box average of
the decoded pixels: the two differ by rounding and by the quantisation noise that the full
decode adds and averaging removes. Measured bound (tests/data_prep/test_codestreams.py,
benchmarks/bench_decode.py), reduced decode + INTER_AREA against full decode + INTER_AREA to
the same size: at most REDUCED_DECODE_MAX_ABS_DIFF grey levels on any pixel, mean under
REDUCED_DECODE_MEAN_ABS_DIFF, on synthetic radiographs and noise-free gradients. Content with
hard steps and pixel-level noise (a test texture, text burnt into an image) can differ more at
those steps: a step inside a d x d block is averaged by the reduced decode, which a full
decode resolves to the pixel (up to half the step's height there).

Every problem is a StreamError (a ValueError) with a one-line reason; the readers turn it into
their own DataFormatError naming the file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import simplejpeg

from data_prep.errors import ConfigError

__all__ = [
    "DEFAULT_MAX_IMAGE_PIXELS",
    "FrameSize",
    "StreamError",
    "BYTES_PER_PIXEL_BUDGET",
    "check_max_pixels",
    "decoded_bytes",
    "REDUCED_DECODE_MAX_ABS_DIFF",
    "REDUCED_DECODE_MEAN_ABS_DIFF",
    "dct_scale_denominator",
    "decode_jpeg",
    "j2k_frame_size",
    "jpeg_frame_size",
    "jpeg_is_complete",
    "megapixels_to_pixels",
    "pixel_limit_problem",
    "png_size",
]

DEFAULT_MAX_IMAGE_PIXELS = 100_000_000
# DCT-domain reductions libjpeg-turbo offers that this project uses (it has M/8 for M = 1..16;
# powers of two keep every decoded pixel an exact block of the original).
DCT_SCALE_DENOMINATORS = (8, 4, 2)
# The bound stated in the module docstring, in grey levels (0..255); asserted by the tests.
REDUCED_DECODE_MAX_ABS_DIFF = 10  # measured: 8 (1000x872 -> 64 px), 3 on 1024 -> 512/256/128
REDUCED_DECODE_MEAN_ABS_DIFF = 1.0  # measured: 0.68 (1024 -> 384 px), 0.16 on 1024 -> 512
# Bytes a decoded pixel may take, at most, under the pixel limit: 2 = one 16-bit grey sample.
BYTES_PER_PIXEL_BUDGET = 2
LIMIT_HINT = "raise it with --max-megapixels or data.max_image_megapixels"

# Start-of-frame markers: baseline, extended, progressive, lossless (Huffman and arithmetic),
# and JPEG-LS's SOF55 (FF F7). C4 (DHT), C8 (JPG) and CC (DAC) are not frames.
_SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xF7})
_STANDALONE_MARKERS = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM, RST0..7: no length field
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_J2K_SOC_SIZ = b"\xff\x4f\xff\x51"


def check_max_pixels(max_pixels: int) -> int:
    """`max_pixels` itself, or a ConfigError when it is not a positive number of pixels."""
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels <= 0:
        raise ConfigError(f"max pixels: {max_pixels!r} must be a positive number of pixels (--max-megapixels > 0)")
    return max_pixels


def megapixels_to_pixels(megapixels: float) -> int:
    """`--max-megapixels` as the readers' max_pixels; ConfigError unless positive and finite."""
    if not (isinstance(megapixels, (int, float)) and math.isfinite(megapixels) and megapixels > 0):
        raise ConfigError(f"--max-megapixels: {megapixels!r} must be a positive number of megapixels")
    return max(1, round(megapixels * 1e6))


class StreamError(ValueError):
    """A compressed stream is malformed, too large or undecodable; str() is a one-line reason."""


@dataclass(frozen=True)
class FrameSize:
    """What a stream's header claims: rows, columns, components and bits per sample."""

    height: int
    width: int
    components: int
    bits: int


def bytes_per_sample(bits: int) -> int:
    """What a decoder allocates per sample of `bits` bits: 1, 2, 4 or 8 bytes."""
    for size in (1, 2, 4):
        if bits <= 8 * size:
            return size
    return 8


def decoded_bytes(height: int, width: int, *, components: int = 1, bits: int = 8, frames: int = 1) -> int:
    """The bytes a decoder allocates for its output: pixels x channels x bytes per sample (x frames)."""
    return height * width * max(1, components) * bytes_per_sample(bits) * max(1, frames)


def pixel_limit_problem(
    height: int, width: int, max_pixels: int, *, components: int = 1, bits: int = 8, frames: int = 1
) -> str | None:
    """Why an image of height x width may not be decoded under `max_pixels`; None if it may.

    Two bounds, both from the header: the pixels (height x width), and the bytes the decoder
    will allocate (decoded_bytes: channels, bytes per sample and frames count), at most
    BYTES_PER_PIXEL_BUDGET per pixel of the limit: a 16-bit grey radiograph at the limit fits,
    a 16-bit RGBA PNG (8 bytes a pixel) of as many pixels does not.
    """
    if height * width > max_pixels:
        return (
            f"image size {height}x{width} ({height * width / 1e6:.1f} megapixels) exceeds the limit of "
            f"{max_pixels / 1e6:g} megapixels ({LIMIT_HINT})"
        )
    needed = decoded_bytes(height, width, components=components, bits=bits, frames=frames)
    budget = max_pixels * BYTES_PER_PIXEL_BUDGET
    if needed <= budget:
        return None
    layout = f"{height}x{width} x {max(1, components)} channel(s) x {bytes_per_sample(bits)} byte(s)"
    layout += f" x {frames} frames" if frames > 1 else ""
    return (
        f"decoding {layout} needs {needed / 1e6:.0f} MB, above the limit of {budget / 1e6:.0f} MB "
        f"({BYTES_PER_PIXEL_BUDGET} bytes a pixel of the {max_pixels / 1e6:g}-megapixel limit; {LIMIT_HINT})"
    )


def _u16(data: bytes, offset: int) -> int:
    return (data[offset] << 8) | data[offset + 1]


def _u32(data: bytes, offset: int) -> int:
    return int.from_bytes(data[offset : offset + 4], "big")


def jpeg_frame_size(data: bytes) -> FrameSize | None:
    """The frame header (SOFn, or JPEG-LS SOF55) of a JPEG stream; None when `data` ends before it.

    Walks the marker segments from SOI, skipping each by its length, exactly as a decoder does,
    so the size found is the one the decoder would allocate. Raises StreamError for a stream
    that is not JPEG, a scan or EOI before any frame header, a zero-sized frame (height 0 means
    'given later by a DNL marker', which no decoder here supports) or a malformed segment.
    """
    n = len(data)
    if n < 2 or data[0] != 0xFF or data[1] != 0xD8:
        raise StreamError("not a JPEG stream (no start-of-image marker FF D8)")
    i = 2
    while True:
        if i >= n:
            return None
        if data[i] != 0xFF:
            raise StreamError(f"JPEG header: expected a marker at byte {i}, found 0x{data[i]:02x}")
        while i < n and data[i] == 0xFF:  # fill bytes
            i += 1
        if i >= n:
            return None
        marker = data[i]
        i += 1
        if marker in _STANDALONE_MARKERS:
            continue
        if marker in (0xD8, 0xD9, 0xDA, 0x00):
            raise StreamError(f"JPEG header: marker FF {marker:02X} before any frame header (SOF)")
        if i + 2 > n:
            return None
        length = _u16(data, i)
        if length < 2:
            raise StreamError(f"JPEG header: marker FF {marker:02X} has segment length {length}")
        if marker in _SOF_MARKERS:
            if i + 8 > n:
                return None
            if length < 8:
                raise StreamError(f"JPEG frame header of {length} bytes (at least 8 needed)")
            bits, height, width, components = data[i + 2], _u16(data, i + 3), _u16(data, i + 5), data[i + 7]
            if height == 0 or width == 0 or components == 0:
                raise StreamError(
                    f"JPEG frame header claims {height}x{width} with {components} component(s): not decodable"
                )
            return FrameSize(height=height, width=width, components=components, bits=bits)
        i += length


def j2k_frame_size(data: bytes) -> FrameSize | None:
    """The image size of a JPEG 2000 codestream from its SIZ marker; None when `data` does not
    hold one (a JP2 file is searched for its codestream). Raises StreamError for a zero size."""
    start = 0 if data[:4] == _J2K_SOC_SIZ else data.find(_J2K_SOC_SIZ, 0, 65536)
    if start < 0 or start + 42 > len(data):
        return None
    siz = start + 4  # Lsiz(2) Rsiz(2) Xsiz Ysiz XOsiz YOsiz XTsiz YTsiz XTOsiz YTOsiz (4 each) Csiz(2)
    x_size, y_size = _u32(data, siz + 4), _u32(data, siz + 8)
    x_offset, y_offset = _u32(data, siz + 12), _u32(data, siz + 16)
    components = _u16(data, siz + 36)
    width, height = x_size - x_offset, y_size - y_offset
    if width <= 0 or height <= 0 or components == 0:
        raise StreamError(f"JPEG 2000 header claims {height}x{width} with {components} component(s): not decodable")
    bits = (data[siz + 38] & 0x7F) + 1 if siz + 38 < len(data) else 0
    return FrameSize(height=height, width=width, components=components, bits=bits)


def png_size(data: bytes) -> FrameSize | None:
    """The size in a PNG's IHDR chunk; None when `data` is not a PNG or ends before IHDR."""
    if data[:8] != _PNG_SIGNATURE or len(data) < 26 or data[12:16] != b"IHDR":
        return None
    width, height = _u32(data, 16), _u32(data, 20)
    components = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}.get(data[25], 0)  # a palette (3) decodes to 3 channels
    return FrameSize(height=height, width=width, components=components, bits=data[24])


def jpeg_is_complete(data: bytes) -> bool:
    """True when a JPEG stream has an end-of-image marker (FF D9) after its first scan (FF DA).

    A cut-off JPEG decodes into a partly grey image with only a warning in lenient decoders,
    so completeness is checked before decoding, which also gives the clearer message.
    Padding (DICOM fragments are padded to even length) or other bytes after the EOI marker
    are allowed. Inside entropy-coded data 0xFF is always stuffed, so FF D9 cannot occur there
    by chance. Both searches stop near the ends of the buffer (the first scan starts after the
    short header, EOI is at the end), so the check costs microseconds even for a large frame.
    """
    first_scan = data.find(b"\xff\xda")
    return first_scan >= 0 and data.rfind(b"\xff\xd9") > first_scan


def _one_line(exc: BaseException, max_chars: int = 200) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    half = len(text) // 2
    if text[:half] == text[half:]:  # simplejpeg repeats libjpeg's message: once is enough
        text = text[:half]
    return text if len(text) <= max_chars else text[: max_chars - 3] + "..."


def dct_scale_denominator(height: int, width: int, min_shape: tuple[int, int] | None) -> int:
    """d in (1, 2, 4, 8): the largest DCT-domain reduction 1/d that divides both sides and keeps
    the output, height / d x width / d, at least `min_shape` (rows, columns); 1 for None.

    Only exact divisors: with a partial block at the right or bottom edge, libjpeg rounds the
    reduced size up and the reduced pixel grid drifts by up to a pixel from the one an area
    resize of the full image uses, which shows as differences of a tenth of the contrast at
    every sharp edge (measured: up to 28 grey levels). On an exact grid the two agree to the
    stated bound (REDUCED_DECODE_MAX_ABS_DIFF)."""
    if min_shape is None:
        return 1
    min_height, min_width = min_shape
    for d in DCT_SCALE_DENOMINATORS:
        if height % d == 0 and width % d == 0 and height // d >= min_height and width // d >= min_width:
            return d
    return 1


def decode_jpeg(
    data: bytes, *, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS, min_shape: tuple[int, int] | None = None
) -> np.ndarray:
    """Decode a JPEG stream strictly: uint8 [H, W] for one component, BGR [H, W, 3] for three.

    `min_shape` (rows, columns): decode at the largest 1/2, 1/4 or 1/8 DCT scale that stays at
    least that size and divides H and W (dct_scale_denominator; the module docstring says how
    it differs from a full decode); the result is then H / d x W / d. The pixel limit applies
    to the full size.

    The size is checked against `max_pixels` from the frame header (jpeg_frame_size) AND from
    libjpeg-turbo's own header parse before any output is allocated; the stream must be
    complete (jpeg_is_complete); libjpeg's warnings about corrupt data are errors. Raises
    StreamError with a one-line reason for all of these and for anything the decoder rejects.
    """
    frame = jpeg_frame_size(data)
    if frame is None:
        raise StreamError(f"JPEG stream of {len(data)} bytes ends before its frame header (SOF)")
    problem = pixel_limit_problem(frame.height, frame.width, max_pixels, components=frame.components, bits=frame.bits)
    if problem is not None:
        raise StreamError(problem)
    if not jpeg_is_complete(data):
        raise StreamError(f"truncated JPEG ({len(data)} bytes, no end-of-image marker FF D9)")
    if frame.components not in (1, 3):
        raise StreamError(f"JPEG with {frame.components} components not supported (expected 1 grey or 3 colour)")
    try:
        height, width, _, _ = simplejpeg.decode_jpeg_header(data)
        problem = pixel_limit_problem(height, width, max_pixels, components=frame.components)
        if problem is not None:
            raise StreamError(problem)
        d = dct_scale_denominator(height, width, min_shape)
        reduced = {"min_height": height // d, "min_width": width // d} if d > 1 else {}
        decoded = simplejpeg.decode_jpeg(
            data, colorspace="GRAY" if frame.components == 1 else "BGR", strict=True, **reduced
        )
    except (StreamError, KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # simplejpeg raises ValueError for libjpeg errors and (strict) warnings
        raise StreamError(f"corrupt or undecodable JPEG data: {_one_line(exc)}") from None
    return decoded[:, :, 0] if frame.components == 1 else decoded
