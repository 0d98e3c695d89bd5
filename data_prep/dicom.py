"""DICOM reading: header fields, pixel decoding and the display pixel pipeline.

The DICOM readers, module by module (each file has one job; this one is the entry point)
-----------------------------------------------------------------------------------------
Where is the header parsed? In ONE place: ``_parse_header`` here, which every reader calls
(`read_dicom`, `read_dicom_header`, `scan_dicom_headers`, through ``_open_checked``). It asks
data_prep.dicom_header for the fast parse of the plain layout and falls back to pydicom's
``dcmread(stop_before_pixels=True)`` for everything else; both give the same pydicom Dataset,
from which ``_header_from_dataset`` takes the typed fields (a DicomHeader). The modules beside
this one never parse a header themselves:

    data_prep/inputs.py        opens the file: regular files only, its format from its magic bytes
    data_prep/dicom.py         THIS module: the header (``_parse_header``), its fields, the checks
                               before decoding, the decoders' dispatch and the display pipeline
    data_prep/dicom_header.py  the fast header parser ``_parse_header`` uses for the plain layout
    data_prep/dicom_pixels.py  after the header: where the pixel data lies, proven complete
    data_prep/codestreams.py   compressed frames: their size from their own header, the pixel
                               limit, the one strict JPEG decoder (also for PNG/JPEG files)
    data_prep/images.py        PNG/JPEG files, and the DICOM-or-image dispatch of every caller

Output contract of `read_dicom` / `to_display_uint8`
----------------------------------------------------
ONE range for every input: a 2-D ``uint8`` array ``[Rows, Columns]`` (non-square stays
non-square), values 0..255 in display orientation, 0 = black (air on a chest radiograph),
255 = white (bone), whatever the file's bit depth (1/8/10/12/16/32 bits, signed or unsigned).

The pixel pipeline, in this order (DICOM PS3.3 C.11 / PS3.4 N.2):

1. Modality LUT: ``RescaleSlope``/``RescaleIntercept`` or a Modality LUT Sequence
   (``pydicom.pixels.apply_modality_lut``). It comes BEFORE the window: windows are given in
   rescaled units (e.g. Hounsfield units, or the manufacturer's output units).
2. VOI: a VOI LUT Sequence if present (``pydicom.pixels.apply_voi``; its output is scaled from
   the LUT's own min..max to 0..255), else ``WindowCenter``/``WindowWidth`` (the FIRST value
   when multi-valued) with ``VOILUTFunction`` LINEAR (default), LINEAR_EXACT or SIGMOID,
   computed straight into 0..255 (PS3.3 C.11.2.1.2 with y_min = 0, y_max = 255).
   A window with a non-positive width is unusable and ignored (step 3 applies).
3. No VOI and no window:
   - 8-bit stored, unsigned data with no modality rescale passes through UNCHANGED (every
     RSNA file: its grey levels are already display values and must not be stretched);
   - everything else is scaled linearly from the image's own min..max to 0..255 (a constant
     image becomes all 0).
4. Polarity: MONOCHROME1 (0 = white) or ``PresentationLUTShape`` INVERSE is inverted
   (255 - value) AFTER the VOI stage, so the output is always MONOCHROME2-like; a MONOCHROME1
   file that also says INVERSE is inverted once, not twice (the rule and its sources in the
   standard: ``_shows_minimum_white``).

Values are rounded to the nearest integer (``np.rint``) and clipped to 0..255.

Decoding
--------
The fast path serves what every RSNA file is: transfer syntax JPEG Baseline
(1.2.840.10008.1.2.4.50), ONE encapsulated frame, 8-bit unsigned MONOCHROME2/1, one sample
per pixel. The frame's bytes are taken out of the encapsulation (``pydicom.encaps.get_frame``)
and decoded strictly by libjpeg-turbo (``data_prep.codestreams.decode_jpeg``: corrupt
entropy-coded data is an error), which is several times faster than ``Dataset.pixel_array``
and equal to it within 1 grey level (IDCT rounding differences); it also needs no pydicom
decoder plugin. Everything else (JPEG Lossless/Extended, JPEG-LS, JPEG 2000, RLE,
uncompressed implicit/explicit VR little/big endian, deflated) is decoded by pydicom's
``pixel_array``, which needs pylibjpeg (+ -libjpeg, -openjpeg) or gdcm for the compressed
syntaxes. With ``target_size_px`` (the letterbox size the caller resizes to) the JPEG Baseline
frame is decoded at the largest 1/2, 1/4 or 1/8 DCT scale that still covers the letterbox
(data_prep.codestreams, which states the bound against a full decode + area resize); the
header keeps the file's own Rows x Columns, which boxes refer to.

The header is parsed by data_prep.dicom_header when the file has the plain layout of every
RSNA file (Part 10, explicit VR little endian, no sequences or undefined lengths): the same
Dataset pydicom builds, about three times cheaper. Any other file is parsed by pydicom.

Before any decoder runs (``_open_checked``, shared by `read_dicom` and `read_dicom_header`):
the file must be a regular file; the pixel data must lie complete inside it, proven from the
element and item lengths (``data_prep.dicom_pixels``), never from pydicom's warnings, so
threads reading files at once each get their own verdict; Rows x Columns and the first
frame's codestream header (JPEG SOF, JPEG 2000 SIZ) must agree and stay within the pixel
limit (``max_pixels``, default ``DEFAULT_MAX_IMAGE_PIXELS`` = 100 megapixels); bits, sample
count and the length of native data must be consistent.

Errors
------
Every failure is a `DicomReadError(path, reason)` with a one-line reason: not a DICOM file
(or another format, named from its magic bytes: 'a PNG file, not a DICOM'), a FIFO or device,
empty file, truncated file, no pixel data, pixel data inconsistent with the header, over the
pixel limit, colour (RGB/YBR/palette) data, multi-frame data, an unsupported transfer syntax
or a missing decoder plugin (with the pip command), or pixel data that fails to decode.
pydicom/numpy/decoder exceptions never escape.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pydicom
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import get_frame
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.pixels import apply_modality_lut, apply_voi, get_decoder
from pydicom.tag import BaseTag, Tag
from pydicom.uid import (
    HTJ2K,
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
)

from data_prep.codestreams import (
    DEFAULT_MAX_IMAGE_PIXELS,
    StreamError,
    dct_scale_denominator,
    decode_jpeg,
    j2k_frame_size,
    jpeg_frame_size,
    jpeg_is_complete,
    pixel_limit_problem,
)
from data_prep.dicom_header import parse_simple_header
from data_prep.dicom_pixels import (
    PIXEL_DATA_TAG,
    PixelDataLayout,
    locate_pixel_data,
    read_first_fragment_head,
    read_pixel_value,
)
from data_prep.errors import DetectError, DicomReadError
from data_prep.geometry import letterbox_content_shape
from data_prep.inputs import content_kind, open_regular_file
from data_prep.records import (
    MAX_PLAUSIBLE_AGE_YEARS,
    BadFile,
    DicomHeader,
    DicomIdentity,  # its own line: keeps merges with header edits easy
)

__all__ = [
    "DECODER_INSTALL_HINT",
    "DEFAULT_MAX_IMAGE_PIXELS",
    "jpeg_is_complete",
    "parse_age_years",
    "read_dicom",
    "read_dicom_header",
    "scan_dicom_headers",
    "to_display_uint8",
    "unsupported_reason",
    "window_to_unit",
]

DECODER_INSTALL_HINT = "pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg (or python-gdcm)"

MONOCHROME = ("MONOCHROME1", "MONOCHROME2")
COLOUR_REASON = "RGB/colour DICOM not supported: chest radiographs are grayscale"
_COLOUR_PHOTOMETRICS = (
    "RGB",
    "ARGB",
    "CMYK",
    "HSV",
    "PALETTE COLOR",
    "YBR_FULL",
    "YBR_FULL_422",
    "YBR_PARTIAL_422",
    "YBR_PARTIAL_420",
    "YBR_ICT",
    "YBR_RCT",
)

_DICM_OFFSET = 128
_UNDEFINED_LENGTH = 0xFFFFFFFF

# DICOM AS ('058Y', '006M', '010W', '003D') and RSNA's bare years ('58').
_AGE_RE = re.compile(r"([+-]?\d+(?:\.\d+)?)\s*([DWMY]?)", re.IGNORECASE)
_DAYS_PER_YEAR = 365.25
_AGE_UNIT_YEARS = {"": 1.0, "Y": 1.0, "M": 1.0 / 12.0, "W": 7.0 / _DAYS_PER_YEAR, "D": 1.0 / _DAYS_PER_YEAR}
_VIEW_IN_DESCRIPTION_RE = re.compile(r"view:\s*(\w+)", re.IGNORECASE)
_SEXES = ("M", "F", "O")


# ---------------------------------------------------------------------------------------------
# Header fields


def parse_age_years(text: str | None) -> tuple[float | None, bool]:
    """Parse a PatientAge value into (age in years, valid).

    Accepts DICOM AS strings ('058Y' -> 58.0, '006M' -> 0.5, '010W' -> 70/365.25,
    '003D' -> 3/365.25) and bare numbers, read as years, as RSNA writes them ('58' -> 58.0).
    - absent or blank (None, ''): (None, True): nothing to flag;
    - present but unparsable ('abc'): (None, False);
    - parsed but impossible (negative, or above MAX_PLAUSIBLE_AGE_YEARS, e.g. RSNA's '148'):
      (148.0, False): flagged, never dropped.
    """
    if text is None:
        return None, True
    stripped = str(text).strip().strip("\x00").strip()
    if not stripped:
        return None, True
    match = _AGE_RE.fullmatch(stripped)
    if match is None:
        return None, False
    age_years = float(match.group(1)) * _AGE_UNIT_YEARS[match.group(2).upper()]
    valid = 0.0 <= age_years <= MAX_PLAUSIBLE_AGE_YEARS
    return age_years, valid


# Header values are read straight from pydicom's raw (still undecoded) elements where that is
# safe: pydicom's general value conversion costs more than parsing the file, and a header scan
# of 30,000 files should take seconds. Anything unusual falls back to pydicom's conversion.
_TEXT_CODECS = {b"": "latin-1", b"ISO_IR 6": "latin-1", b"ISO_IR 100": "latin-1", b"ISO_IR 192": "utf-8"}
_TEXT_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UI", "UT"})
_SPECIFIC_CHARACTER_SET_TAG = Tag(0x00080005)


def _text_codec(ds: Dataset) -> str | None:
    """The codec for raw text values, or None when only pydicom can decode them."""
    elem = ds.get_item(_SPECIFIC_CHARACTER_SET_TAG)
    if elem is None:
        return "latin-1"
    if isinstance(elem, RawDataElement):
        return _TEXT_CODECS.get((elem.value or b"").strip(b" \x00"))
    return _TEXT_CODECS.get(str(elem.value or "").strip().encode("ascii", "replace"))


@functools.cache
def _tag(keyword: str) -> BaseTag:
    return Tag(tag_for_keyword(keyword))


def _raw_vr(elem: RawDataElement) -> str | None:
    if elem.VR:
        return str(elem.VR)
    try:
        return dictionary_VR(elem.tag)  # implicit VR: the dictionary says
    except KeyError:
        return None


_CODEC_UNKNOWN = "?"  # `codec` not passed: look it up


def _texts(ds: Dataset, keyword: str, codec: str | None = _CODEC_UNKNOWN) -> list[str]:
    """A tag's values as stripped strings ([] when absent or empty). `codec`: _text_codec(ds),
    passed in by callers that read many tags (looking it up costs as much as the read)."""
    elem = ds.get_item(_tag(keyword))
    if elem is None:
        return []
    if isinstance(elem, RawDataElement) and elem.value is not None and _raw_vr(elem) in _TEXT_VRS:
        if codec == _CODEC_UNKNOWN:
            codec = _text_codec(ds)
        if codec is not None:
            values = elem.value.decode(codec, errors="replace").split("\\")
            values = [v.strip(" \x00") for v in values]
            return [v for v in values if v] if any(values) else []
    value = ds.get(keyword)
    if value is None:
        return []
    items = list(value) if isinstance(value, (list, tuple, MultiValue)) else [value]
    texts = [str(v).strip(" \x00") for v in items if v is not None]
    return [t for t in texts if t]


def _text(ds: Dataset, keyword: str, codec: str | None = _CODEC_UNKNOWN) -> str | None:
    """A string tag's value, stripped; None when absent or empty. Multi-valued -> first value."""
    values = _texts(ds, keyword, codec)
    return values[0] if values else None


def _int(ds: Dataset, keyword: str, default: int | None = None) -> int | None:
    """An integer tag (US/SS/IS), first value; `default` when absent or empty."""
    elem = ds.get_item(_tag(keyword))
    if elem is None:
        return default
    if isinstance(elem, RawDataElement) and elem.value is not None:
        vr = _raw_vr(elem)
        if vr in ("US", "SS") and len(elem.value) >= 2:
            return int.from_bytes(elem.value[:2], "little" if elem.is_little_endian else "big", signed=(vr == "SS"))
        if vr == "IS":
            text = _text(ds, keyword)
            return default if text is None else int(float(text))
    value = ds.get(keyword)
    if value is None or value == "":
        return default
    if isinstance(value, (list, tuple, MultiValue)):
        if not len(value):
            return default
        value = value[0]
    return int(value)


def _pixel_spacing_mm(ds: Dataset, codec: str | None = _CODEC_UNKNOWN) -> tuple[float, float] | None:
    """(row spacing, column spacing) in mm from PixelSpacing, else ImagerPixelSpacing."""
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        try:
            spacing = [float(v) for v in _texts(ds, keyword, codec)]
        except (TypeError, ValueError):
            continue
        if len(spacing) == 1:  # a single value is a (non-conformant) isotropic spacing
            spacing = spacing * 2
        if len(spacing) >= 2 and all(math.isfinite(s) and s > 0 for s in spacing[:2]):
            return spacing[0], spacing[1]
    return None


def _view_position(ds: Dataset, codec: str | None = _CODEC_UNKNOWN) -> str | None:
    view = _text(ds, "ViewPosition", codec)
    if view:
        return view.upper()
    description = _text(ds, "SeriesDescription", codec)  # RSNA also writes 'view: PA'
    if description:
        match = _VIEW_IN_DESCRIPTION_RE.search(description)
        if match:
            return match.group(1).upper()
    return None


def _float_or_none(ds: Dataset, keyword: str, codec: str | None = _CODEC_UNKNOWN) -> float | None:
    try:
        values = [float(v) for v in _texts(ds, keyword, codec)]
    except (TypeError, ValueError):
        return None
    return values[0] if values and math.isfinite(values[0]) else None


def _identity(ds: Dataset, codec: str | None = _CODEC_UNKNOWN) -> DicomIdentity:
    """The fields a DICOM SR / presentation state copies from this source (DicomIdentity)."""
    sop_class = _text(ds, "SOPClassUID", codec)
    if sop_class is None and getattr(ds, "file_meta", None) is not None:
        sop_class = _text(ds.file_meta, "MediaStorageSOPClassUID")
    return DicomIdentity(
        study_instance_uid=_text(ds, "StudyInstanceUID", codec) or "",
        series_instance_uid=_text(ds, "SeriesInstanceUID", codec) or "",
        sop_class_uid=sop_class or "",
        patient_name=_text(ds, "PatientName", codec) or "",
        patient_birth_date=_text(ds, "PatientBirthDate", codec) or "",
        patient_sex=_text(ds, "PatientSex", codec) or "",
        study_date=_text(ds, "StudyDate", codec) or "",
        study_time=_text(ds, "StudyTime", codec) or "",
        study_id=_text(ds, "StudyID", codec) or "",
        accession_number=_text(ds, "AccessionNumber", codec) or "",
        referring_physician_name=_text(ds, "ReferringPhysicianName", codec) or "",
        frame_of_reference_uid=_text(ds, "FrameOfReferenceUID", codec),
        window_center=_float_or_none(ds, "WindowCenter", codec),
        window_width=_float_or_none(ds, "WindowWidth", codec),
        presentation_lut_shape=(_text(ds, "PresentationLUTShape", codec) or "").strip().upper(),
    )


def _transfer_syntax(ds: Dataset) -> UID:
    meta = getattr(ds, "file_meta", None)
    uid = _text(meta, "TransferSyntaxUID", "latin-1") if meta is not None else None  # group 0002 is ASCII
    if uid:
        return UID(uid)
    # A raw dataset without file meta: pydicom worked the encoding out while parsing it.
    implicit_vr, little_endian = ds.original_encoding
    if implicit_vr:
        return ImplicitVRLittleEndian
    return ExplicitVRLittleEndian if little_endian else ExplicitVRBigEndian


def _required_int(path: str | Path, ds: Dataset, keyword: str, tag: str) -> int:
    value = _int(ds, keyword)
    if value is None:
        raise DicomReadError(path, f"not an image: required tag {keyword} {tag} is absent")
    return value


def _header_from_dataset(path: str | Path, ds: Dataset) -> DicomHeader:
    try:
        codec = _text_codec(ds)
        rows = _required_int(path, ds, "Rows", "(0028,0010)")
        columns = _required_int(path, ds, "Columns", "(0028,0011)")
        bits_allocated = _required_int(path, ds, "BitsAllocated", "(0028,0100)")
        photometric = _text(ds, "PhotometricInterpretation", codec)
        if photometric is None:
            raise DicomReadError(path, "not an image: required tag PhotometricInterpretation (0028,0004) is absent")
        sex = (_text(ds, "PatientSex", codec) or "").upper()
        age_years, age_valid = parse_age_years(_text(ds, "PatientAge", codec))
        sop_uid = _text(ds, "SOPInstanceUID", codec)
        if sop_uid is None and getattr(ds, "file_meta", None) is not None:
            sop_uid = _text(ds.file_meta, "MediaStorageSOPInstanceUID")
        return DicomHeader(
            path=str(path),
            patient_id=_text(ds, "PatientID", codec) or "",
            sop_instance_uid=sop_uid or "",
            sex=sex if sex in _SEXES else None,
            age_years=age_years,
            age_valid=age_valid,
            view_position=_view_position(ds, codec),
            pixel_spacing_mm=_pixel_spacing_mm(ds, codec),
            rows=rows,
            columns=columns,
            photometric_interpretation=photometric.upper(),
            bits_allocated=bits_allocated,
            bits_stored=_int(ds, "BitsStored", bits_allocated),
            transfer_syntax_uid=str(_transfer_syntax(ds)),
            modality=_text(ds, "Modality", codec),
            number_of_frames=_int(ds, "NumberOfFrames", 1),
            samples_per_pixel=_int(ds, "SamplesPerPixel", 1),
            identity=_identity(ds, codec),
        )
    except DetectError:
        raise
    except Exception as exc:  # a malformed value (e.g. Rows = 'abc') deep in pydicom's conversion
        raise DicomReadError(path, f"malformed header: {_one_line(exc)}") from None


def unsupported_reason(header: DicomHeader) -> str | None:
    """Why `read_dicom` cannot return this file's pixels, from its header alone; None if it can."""
    if header.samples_per_pixel != 1 or header.photometric_interpretation in _COLOUR_PHOTOMETRICS:
        return (
            f"{COLOUR_REASON} (PhotometricInterpretation {header.photometric_interpretation}, "
            f"SamplesPerPixel {header.samples_per_pixel})"
        )
    if header.photometric_interpretation not in MONOCHROME:
        return (
            f"unsupported PhotometricInterpretation {header.photometric_interpretation!r} "
            "(expected MONOCHROME1 or MONOCHROME2)"
        )
    if header.number_of_frames > 1:
        return (
            f"multi-frame DICOM not supported (NumberOfFrames = {header.number_of_frames}): "
            "expected one radiograph per file"
        )
    if header.rows <= 0 or header.columns <= 0:
        return f"not an image: size {header.rows}x{header.columns}"
    return None


# ---------------------------------------------------------------------------------------------
# Opening a file: the one way every reader gets a dataset, its header and proven pixel data


def _one_line(exc: BaseException, max_chars: int = 240) -> str:
    text = " ".join(str(exc).split())
    name = type(exc).__name__
    text = f"{name}: {text}" if text else name
    return text if len(text) <= max_chars else text[: max_chars - 3] + "..."


def _truncated_element(ds: Dataset, size_bytes: int) -> str | None:
    """Describe where a file cut off inside its header ends; None when the header is complete.

    pydicom reads a cut-off header without complaint: the last element gets fewer bytes than
    its length says, or a partial element header (under 8 bytes) is silently ignored. Only
    the last element read (largest tag) can be cut off. The pixel data is checked separately
    (data_prep.dicom_pixels).
    """
    if not ds:
        return "no data elements after the file meta header"
    last_tag = max(ds.keys(), key=int)  # int comparisons: BaseTag compares in Python
    elem = ds.get_item(last_tag)
    if not isinstance(elem, RawDataElement) or elem.length == _UNDEFINED_LENGTH or elem.value is None:
        return None
    name = keyword_for_tag(last_tag) or str(last_tag)
    if len(elem.value) < elem.length:
        return f"{name} {last_tag} has {len(elem.value)} of {elem.length} bytes"
    leftover_bytes = size_bytes - (elem.value_tell + elem.length)
    if 0 < leftover_bytes < 8:  # a whole element header is at least 8 bytes
        return f"ends inside the element header after {name} {last_tag}"
    return None


def _not_dicom_reason(handle: BinaryIO, size_bytes: int) -> str:
    handle.seek(0)
    kind = content_kind(handle.read(_DICM_OFFSET + 4))
    if kind is not None and kind != "a DICOM file":
        return f"{kind}, not a DICOM (no 'DICM' marker at byte 128)"
    if size_bytes < _DICM_OFFSET + 4:
        return f"not a DICOM file ({size_bytes} bytes, no 'DICM' marker at byte 128)"
    return "not a DICOM file (no 'DICM' marker at byte 128)"


def _read_raw_dataset(path: str | Path, handle: BinaryIO, size_bytes: int) -> Dataset:
    """A legacy raw dataset (no preamble, no 'DICM'): accepted when a forced parse yields the
    image tags Rows and Columns. A file whose magic bytes show another format is not parsed."""
    reason = _not_dicom_reason(handle, size_bytes)
    if not reason.startswith("not a DICOM file"):
        raise DicomReadError(path, reason)
    try:
        handle.seek(0)
        ds = pydicom.dcmread(handle, stop_before_pixels=True, force=True)
        if _int(ds, "Rows") and _int(ds, "Columns"):
            return ds
    except Exception:  # garbage parsed as tags fails in many ways; all mean 'not DICOM'
        pass
    raise DicomReadError(path, reason)


def _parse_header(path: str | Path, handle: BinaryIO, size_bytes: int, *, fast_header: bool = True) -> Dataset:
    """pydicom's parse of the elements before the pixel data, any failure a DicomReadError.

    The handle is left where the parse stopped: at the PixelData element (pydicom rewinds to
    its start) or at the end of the file. The plain layout (explicit VR little endian, no
    sequences: every RSNA file) is parsed by data_prep.dicom_header, about three times
    faster than pydicom and to the same Dataset; every other file by pydicom from the start.
    """
    try:
        try:
            ds = parse_simple_header(handle, size_bytes) if fast_header else None
            if ds is not None:
                return ds
            handle.seek(0)
            return pydicom.dcmread(handle, stop_before_pixels=True)
        except InvalidDicomError:
            return _read_raw_dataset(path, handle, size_bytes)
    except DetectError:
        raise
    except OSError as exc:
        raise DicomReadError(path, f"cannot read: {exc.strerror or _one_line(exc)}") from None
    except Exception as exc:
        raise DicomReadError(
            path, f"unreadable DICOM header, truncated or corrupt ({size_bytes} bytes): {_one_line(exc, 120)}"
        ) from None


def _native_bytes_needed(header: DicomHeader) -> int:
    pixels = header.rows * header.columns * header.samples_per_pixel * max(1, header.number_of_frames)
    if header.bits_allocated == 1:
        return (pixels + 7) // 8
    return pixels * (header.bits_allocated // 8)


def _pixel_data_problem(
    header: DicomHeader, ds: Dataset, layout: PixelDataLayout | None, max_pixels: int
) -> str | None:
    """Why the header and the pixel data element cannot describe a decodable image; None if
    they can. All from the header and the element's length: nothing is allocated or decoded."""
    if layout is None:
        return "no pixel data (PixelData tag absent)"
    if layout.tag != PIXEL_DATA_TAG:
        return "float pixel data (FloatPixelData) not supported"
    if header.rows <= 0 or header.columns <= 0:
        return f"not an image: size {header.rows}x{header.columns}"
    problem = pixel_limit_problem(
        header.rows,
        header.columns,
        max_pixels,
        components=header.samples_per_pixel,
        bits=header.bits_allocated,
        frames=header.number_of_frames,
    )
    if problem is not None:
        return problem
    bits_allocated, bits_stored = header.bits_allocated, header.bits_stored
    if bits_allocated != 1 and (bits_allocated % 8 or not 8 <= bits_allocated <= 64):
        return f"inconsistent pixel description: BitsAllocated {bits_allocated} is not 1 or a multiple of 8 up to 64"
    if not 1 <= bits_stored <= bits_allocated:
        return f"inconsistent pixel description: BitsStored {bits_stored} is not within 1..BitsAllocated ({bits_allocated})"
    high_bit = _int(ds, "HighBit")
    if high_bit is not None and not 0 <= high_bit < bits_allocated:
        return f"inconsistent pixel description: HighBit {high_bit} is not within 0..BitsAllocated-1 ({bits_allocated - 1})"
    representation = _int(ds, "PixelRepresentation", 0)
    if representation not in (0, 1):
        return f"inconsistent pixel description: PixelRepresentation {representation} is not 0 (unsigned) or 1 (signed)"
    if header.samples_per_pixel < 1 or header.number_of_frames < 0:
        return (
            f"inconsistent pixel description: SamplesPerPixel {header.samples_per_pixel}, "
            f"NumberOfFrames {header.number_of_frames}"
        )
    if layout.encapsulated:
        if len(layout.fragments) < 2:
            return "encapsulated pixel data holds no frame (only a basic offset table)"
        return None
    needed = _native_bytes_needed(header)
    if layout.length is not None and layout.length < needed:
        return (
            f"pixel data shorter than the header says: PixelData holds {layout.length} bytes, "
            f"{header.rows}x{header.columns} x {header.samples_per_pixel} sample(s) x {bits_allocated} bits"
            f"{f' x {header.number_of_frames} frames' if header.number_of_frames > 1 else ''} needs {needed}"
        )
    return None


# Everything else a decoder raises is the file's fault, including a Rust extension's
# pyo3 PanicException, which derives from BaseException (found by tests/fuzz/fuzz_ingest.py).
_INTERRUPTS = (KeyboardInterrupt, SystemExit, GeneratorExit)

_JPEG_SYNTAXES = frozenset(
    {
        JPEGBaseline8Bit,
        JPEGExtended12Bit,
        JPEGLossless,
        JPEGLosslessSV1,
        JPEGLSLossless,
        JPEGLSNearLossless,
    }
)
_J2K_SYNTAXES = frozenset(
    {
        JPEG2000Lossless,
        JPEG2000,
        HTJ2KLossless,
        HTJ2KLosslessRPCL,
        HTJ2K,
    }
)


def _codestream_problem(header: DicomHeader, head: bytes | memoryview, max_pixels: int) -> str | None:
    """Why the first frame's codestream header (its first bytes, `head`) disagrees with the
    DICOM header or exceeds the pixel limit; None when it agrees or cannot be read from `head`.

    This is what stops a frame whose SOF claims 60000 x 60000 under a 256 x 256 header before
    any decoder sees it, and what turns a frame of the wrong size or depth into one clear line
    instead of a numpy broadcast error inside pydicom.
    """
    syntax = header.transfer_syntax_uid
    if syntax in _JPEG_SYNTAXES:
        name, parse = "JPEG", jpeg_frame_size
    elif syntax in _J2K_SYNTAXES:
        name, parse = "JPEG 2000", j2k_frame_size
        head = bytes(head)  # it searches the head for its codestream (a JP2 box may come first)
    else:
        return None
    try:
        frame = parse(head)
    except StreamError as exc:
        return f"corrupt {name} frame: {exc}"
    if frame is None:
        return None
    problem = pixel_limit_problem(frame.height, frame.width, max_pixels, components=frame.components, bits=frame.bits)
    if problem is not None:
        return f"{name} frame: {problem}"
    if (frame.height, frame.width) != (header.rows, header.columns):
        return f"{name} frame is {frame.height}x{frame.width} but the header says {header.rows}x{header.columns} (Rows x Columns)"
    if frame.components != header.samples_per_pixel:
        return f"{name} frame has {frame.components} component(s) but SamplesPerPixel is {header.samples_per_pixel}"
    bytes_per_sample = 1 if frame.bits <= 8 else 2
    if name == "JPEG" and frame.bits and bytes_per_sample * 8 != header.bits_allocated:
        return f"{name} frame has {frame.bits}-bit samples but BitsAllocated is {header.bits_allocated}"
    if frame.bits > header.bits_allocated:
        return f"{name} frame has {frame.bits}-bit samples but BitsAllocated is {header.bits_allocated}"
    return None


def _inflated_pixel_data(path: str | Path, handle: BinaryIO) -> tuple[Dataset, PixelDataLayout | None]:
    """A Deflated Explicit VR file: the whole dataset is one zlib stream, so it is inflated and
    parsed whole (its pixel data is native, with a defined length that is checked as such)."""
    try:
        handle.seek(0)
        ds = pydicom.dcmread(handle)
    except Exception as exc:
        raise DicomReadError(path, f"unreadable deflated DICOM, truncated or corrupt: {_one_line(exc, 120)}") from None
    elem = ds.get_item(PIXEL_DATA_TAG)
    if elem is None or elem.value is None:
        return ds, None
    length = len(elem.value)
    if isinstance(elem, RawDataElement) and length < elem.length:
        raise DicomReadError(path, f"truncated file: PixelData has {length} of {elem.length} bytes")
    return ds, PixelDataLayout(PIXEL_DATA_TAG, None, 0, 0, length, length)


def _open_checked(
    path: str | Path, *, with_pixels: bool, max_pixels: int, fast_header: bool = True
) -> tuple[Dataset, DicomHeader]:
    """Open a DICOM file and prove its pixel data complete and consistent -> (dataset, header).

    1. a regular file, not empty (data_prep.inputs: a FIFO or device is refused, never read);
    2. the header is parsed (data_prep.dicom_header, else pydicom), stopping before the pixel data; a cut-off header is found;
    3. the PixelData element is located and proven to lie inside the file
       (data_prep.dicom_pixels), from lengths alone: no process-wide state, so threads can
       read files at the same time and each gets its own verdict;
    4. the header is checked against the pixel limit and for consistency (bits, length of
       native data), and the first frame's codestream header against the DICOM header;
    5. with `with_pixels`, the pixel data is read and put into the dataset as pydicom would.
    Raises DicomReadError (one line) at the first problem.
    """
    handle, size_bytes = open_regular_file(path, DicomReadError)
    with handle:
        if size_bytes == 0:
            raise DicomReadError(path, "empty file (0 bytes)")
        ds = _parse_header(path, handle, size_bytes, fast_header=fast_header)
        try:
            header = _check_pixel_data(path, handle, size_bytes, ds, with_pixels=with_pixels, max_pixels=max_pixels)
        except (DetectError, *_INTERRUPTS):
            raise
        except OSError as exc:
            raise DicomReadError(path, f"cannot read: {exc.strerror or _one_line(exc)}") from None
        except BaseException as exc:  # a value pydicom cannot convert (a mangled VR, a bad number)
            raise DicomReadError(path, f"malformed header: {_one_line(exc)}") from None
    return ds, header


def _check_pixel_data(
    path: str | Path, handle: BinaryIO, size_bytes: int, ds: Dataset, *, with_pixels: bool, max_pixels: int
) -> DicomHeader:
    """Steps 2-5 of `_open_checked` on the parsed `ds` (modified in place with the pixel data)."""
    truncated = _truncated_element(ds, size_bytes)
    if truncated is not None:
        raise DicomReadError(path, f"truncated file ({size_bytes} bytes): {truncated}")
    header = _header_from_dataset(path, ds)
    if header.transfer_syntax_uid == DeflatedExplicitVRLittleEndian:
        inflated, layout = _inflated_pixel_data(path, handle)
        problem = _pixel_data_problem(header, inflated, layout, max_pixels)
        if problem is not None:
            raise DicomReadError(path, problem)
        ds.update(inflated)
        return header
    implicit_vr, little_endian = (bool(flag) for flag in ds.original_encoding[:2])
    layout = locate_pixel_data(path, handle, size_bytes, implicit_vr=implicit_vr, little_endian=little_endian)
    problem = _pixel_data_problem(header, ds, layout, max_pixels)
    if problem is not None:
        raise DicomReadError(path, problem)
    assert layout is not None  # _pixel_data_problem reports a missing element
    value = read_pixel_value(handle, layout) if with_pixels else None
    if layout.encapsulated:
        if value is not None:
            offset, length = layout.fragments[1]
            start = offset - layout.value_offset
            head = memoryview(value)[start : start + min(length, 65536)]  # a view: no 64 KB copy
        else:
            head = read_first_fragment_head(handle, layout)
        problem = _codestream_problem(header, head, max_pixels)
        if problem is not None:
            raise DicomReadError(path, problem)
    if value is not None:
        length = _UNDEFINED_LENGTH if layout.encapsulated else len(value)
        ds[PIXEL_DATA_TAG] = RawDataElement(
            BaseTag(PIXEL_DATA_TAG), layout.vr, length, value, layout.value_offset, implicit_vr, little_endian
        )
    return header


# ---------------------------------------------------------------------------------------------
# Public readers


def read_dicom_header(
    path: str | Path, *, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS, fast_header: bool = True
) -> DicomHeader:
    """Read one file's header and prove, without decoding, that its pixel data can be read.

    The pixel data is located but not read (a few small reads and seeks): it must lie complete
    inside the file, agree with the header (length of native data, the first frame's
    codestream size, components and depth) and stay within `max_pixels`.
    Raises DicomReadError for a missing, empty, truncated or non-DICOM file, a dataset without
    the image tags Rows, Columns, BitsAllocated and PhotometricInterpretation, or pixel data
    that is absent, cut off, inconsistent with the header or over the limit.
    Optional tags absent from the file are None (PatientID and SOPInstanceUID: '').
    `fast_header=False` parses every header with pydicom (the scan before
    data_prep.dicom_header, kept for comparisons: the fields found are the same).
    """
    return _open_checked(path, with_pixels=False, max_pixels=max_pixels, fast_header=fast_header)[1]


def _scan_one(path: str, check_supported: bool, max_pixels: int) -> DicomHeader | BadFile:
    try:
        header = read_dicom_header(path, max_pixels=max_pixels)
    except DetectError as exc:
        return BadFile(path=path, reason=getattr(exc, "reason", str(exc)))
    if check_supported:
        reason = unsupported_reason(header)
        if reason is not None:
            return BadFile(path=path, reason=reason)
    return header


def _scan_chunk(paths: list[str], check_supported: bool, max_pixels: int) -> list[DicomHeader | BadFile]:
    return [_scan_one(p, check_supported, max_pixels) for p in paths]


def scan_dicom_headers(
    paths: Iterable[str | Path],
    workers: int = 1,
    *,
    check_supported: bool = True,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> tuple[list[DicomHeader], list[BadFile]]:
    """Read the headers of many files, without decoding pixel data; return (headers, bad files).

    Both lists keep the input order. A file that cannot be read is reported as a BadFile
    (path + reason), never raised and never dropped: that includes pixel data cut off or
    inconsistent with the header (see read_dicom_header). With `check_supported` (the
    default), a file whose header already shows that `read_dicom` would refuse it (colour,
    multi-frame) is reported too, with the reason `read_dicom` gives. `workers` > 1 uses a
    process pool.
    """
    path_strs = [str(p) for p in paths]
    if workers <= 1 or len(path_strs) < 2 * workers:
        results = _scan_chunk(path_strs, check_supported, max_pixels)
    else:
        # Chunks amortise the pickling round trip; a few per worker keeps the load balanced.
        chunk_size = max(1, min(512, math.ceil(len(path_strs) / (workers * 4))))
        chunks = [path_strs[i : i + chunk_size] for i in range(0, len(path_strs), chunk_size)]
        results = []
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for chunk_results in pool.map(
                _scan_chunk, chunks, [check_supported] * len(chunks), [max_pixels] * len(chunks)
            ):
                results.extend(chunk_results)
    headers = [r for r in results if isinstance(r, DicomHeader)]
    bad_files = [r for r in results if isinstance(r, BadFile)]
    return headers, bad_files


def read_dicom(
    path: str | Path,
    *,
    fast_path: bool = True,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    target_size_px: int | None = None,
    fast_header: bool = True,
) -> tuple[np.ndarray, DicomHeader]:
    """Read one DICOM radiograph: (pixels uint8 [Rows, Columns], header).

    Pixels follow the module docstring's contract (0 = black, 0..255 for every bit depth).
    `target_size_px`: the letterbox size the caller will resize to (data_prep.geometry). A
    JPEG Baseline frame is then decoded at the largest 1/2, 1/4 or 1/8 DCT scale that stays at
    least the letterbox's content size (data_prep.codestreams.decode_jpeg's `min_shape`), so
    the pixels may be Rows / d x Columns / d; `header.rows` / `header.columns` are always the
    file's own size, which boxes refer to (letterbox with `original_hw=(rows, columns)`).
    `fast_path=False` forces pydicom's own decoder even for JPEG Baseline, and
    `fast_header=False` pydicom's header parse for every file (both for comparisons).
    `max_pixels` bounds Rows x Columns and the codestream's own size, checked before decoding.
    Raises DicomReadError (one line, naming the file and the reason) for anything it cannot
    read; no pydicom, numpy or decoder exception escapes.
    """
    ds, header = _open_checked(path, with_pixels=True, max_pixels=max_pixels, fast_header=fast_header)
    reason = unsupported_reason(header)
    if reason is not None:
        raise DicomReadError(path, reason)

    expected_shape: tuple[int, int] = (header.rows, header.columns)
    if fast_path and _fast_path_applies(header, ds):
        min_shape = None
        if target_size_px is not None:
            min_shape = letterbox_content_shape(header.rows, header.columns, target_size_px)
            d = dct_scale_denominator(header.rows, header.columns, min_shape)
            expected_shape = (header.rows // d, header.columns // d)
        raw = _decode_jpeg_baseline_frame(path, ds, max_pixels, min_shape)
    else:
        raw = _decode_with_pydicom(path, ds, header)
    if raw.shape != expected_shape:
        raise DicomReadError(
            path, f"decoded pixel array has shape {raw.shape}, header says {header.rows}x{header.columns}"
        )
    try:
        pixels = to_display_uint8(raw, ds)
    except _INTERRUPTS:
        raise
    except BaseException as exc:
        raise DicomReadError(path, f"cannot apply the modality/VOI LUT: {_one_line(exc)}") from None
    return pixels, header


def _fast_path_applies(header: DicomHeader, ds: Dataset) -> bool:
    """JPEG Baseline, one frame, 8-bit unsigned grey (PixelRepresentation was checked readable)."""
    return (
        header.transfer_syntax_uid == JPEGBaseline8Bit
        and header.photometric_interpretation in MONOCHROME
        and header.bits_allocated == 8
        and header.bits_stored == 8
        and header.samples_per_pixel == 1
        and header.number_of_frames <= 1
        and _int(ds, "PixelRepresentation", 0) == 0
    )


def _decode_jpeg_baseline_frame(
    path: str | Path, ds: Dataset, max_pixels: int, min_shape: tuple[int, int] | None
) -> np.ndarray:
    """The single JPEG frame decoded strictly by libjpeg-turbo (data_prep.codestreams.decode_jpeg)."""
    try:
        # the raw element's bytes: `ds.PixelData` would first run pydicom's value conversion
        frame = get_frame(ds.get_item(PIXEL_DATA_TAG).value, 0, number_of_frames=1)
    except Exception as exc:
        raise DicomReadError(path, f"corrupt encapsulated pixel data: {_one_line(exc)}") from None
    try:
        decoded = decode_jpeg(frame, max_pixels=max_pixels, min_shape=min_shape)
    except StreamError as exc:
        raise DicomReadError(path, f"JPEG Baseline frame: {exc}") from None
    if decoded.ndim != 2:  # the codestream check has already compared components with SamplesPerPixel
        raise DicomReadError(path, f"JPEG Baseline frame decodes to shape {decoded.shape}, expected one grey channel")
    return decoded


def _decode_with_pydicom(path: str | Path, ds: Dataset, header: DicomHeader) -> np.ndarray:
    transfer_syntax = UID(header.transfer_syntax_uid)
    try:
        decoder = get_decoder(transfer_syntax)
    except NotImplementedError:
        raise DicomReadError(
            path,
            f"unsupported transfer syntax {transfer_syntax.name} ({transfer_syntax}): pydicom has no decoder for it",
        ) from None
    if not decoder.is_available:
        raise DicomReadError(
            path, f"no decoder installed for {transfer_syntax.name} ({transfer_syntax}): {DECODER_INSTALL_HINT}"
        )
    if getattr(ds, "file_meta", None) is None or "TransferSyntaxUID" not in ds.file_meta:
        # A raw dataset (no file meta): pydicom's decoders need the syntax spelled out.
        ds.file_meta = ds.file_meta if getattr(ds, "file_meta", None) is not None else FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = transfer_syntax
    try:
        raw = ds.pixel_array
    except _INTERRUPTS:
        raise
    except BaseException as exc:  # the plugins raise anything; pylibjpeg-rle's Rust panics are BaseExceptions
        message = _one_line(exc)
        if "less than expected" in message or "shorter than" in message:
            raise DicomReadError(path, f"truncated pixel data ({transfer_syntax.name}): {message}") from None
        raise DicomReadError(path, f"undecodable pixel data ({transfer_syntax.name}): {message}") from None
    return raw


# ---------------------------------------------------------------------------------------------
# The pixel pipeline


def _first_number(value: Any) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, (list, tuple, MultiValue)):
        if len(value) == 0:
            return None
        value = value[0]
    number = float(value)
    return number if math.isfinite(number) else None


def _get(ds: Dataset, keyword: str) -> Any:
    """ds.get(keyword), answering an absent tag by a dict lookup: Dataset.get finds it absent by
    raising and catching AttributeError, which costs more than the rest of the pipeline on an
    RSNA file (where all but one of the tags read below are absent)."""
    return ds.get(keyword) if _tag(keyword) in ds else None


def _has_modality_transform(ds: Dataset) -> bool:
    if _get(ds, "ModalityLUTSequence"):
        return True
    slope = _first_number(_get(ds, "RescaleSlope"))
    intercept = _first_number(_get(ds, "RescaleIntercept"))
    return (slope is not None and slope != 1.0) or (intercept is not None and intercept != 0.0)


def window_to_unit(values: np.ndarray, center: float, width: float, function: str = "LINEAR") -> np.ndarray:
    """DICOM window (PS3.3 C.11.2.1.2) mapped to float64 in [0, 1]; multiply by 255 for display.

    LINEAR:       ((x - (c - 0.5)) / (w - 1) + 0.5), clipped (w = 1: a threshold at c - 0.5)
    LINEAR_EXACT: ((x - c) / w + 0.5), clipped
    SIGMOID:      1 / (1 + exp(-4 (x - c) / w))

    The same display pixels as ``pydicom.pixels.apply_windowing`` given the output range
    0..255 (tests/data_prep/test_dicom_luts.py compares them pixel for pixel), kept by hand
    because pydicom's is slower: it windows through three boolean masks and a fancy-indexed
    write where this is one clip. Window then rint to uint8, 2048x2048 12-bit image after a
    rescale, best of 3, one thread (pydicom 3.0.2, numpy 2.4.6, AMD EPYC):
        LINEAR 26 ms here against 47 ms, LINEAR_EXACT 26 against 45, SIGMOID 34 against 39.
    pydicom's also reads its output range from BitsStored and the rescale tags (so its values
    would need rescaling to 0..255 again), writes those tags back into the dataset, and raises
    for a LINEAR width below 1 where this thresholds.
    """
    x = np.asarray(values, dtype=np.float64)
    function = (function or "LINEAR").strip().upper()
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(-4.0 * (x - center) / width))
    if function == "LINEAR_EXACT":
        return np.clip((x - center) / width + 0.5, 0.0, 1.0)
    if width <= 1.0:
        return (x > center - 0.5).astype(np.float64)
    return np.clip((x - (center - 0.5)) / (width - 1.0) + 0.5, 0.0, 1.0)


def _voi_lut_to_unit(values: np.ndarray, ds: Dataset) -> np.ndarray:
    """The first VOI LUT Sequence item applied, scaled from the LUT's own min..max to [0, 1].

    The LUT's output range is taken from its data, not from LUTDescriptor's bit depth, which
    real files often get wrong (16 declared, 12 used).
    """
    mapped = apply_voi(values, ds, index=0).astype(np.float64)
    descriptor = ds.VOILUTSequence[0].LUTDescriptor
    entries = int(descriptor[0]) or 2**16
    first_mapped = int(descriptor[1])
    lut_values = apply_voi(np.arange(first_mapped, first_mapped + entries, dtype=np.int64), ds, index=0)
    low, high = float(np.min(lut_values)), float(np.max(lut_values))
    if high <= low:
        return np.zeros_like(mapped)
    return (mapped - low) / (high - low)


def _min_max_to_unit(values: np.ndarray) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    low, high = float(x.min()), float(x.max())
    if high <= low:
        return np.zeros_like(x)
    return (x - low) / (high - low)


def to_display_uint8(raw: np.ndarray, ds: Dataset) -> np.ndarray:
    """The pixel pipeline: stored values [H, W] -> display uint8 [H, W] (module docstring).

    `raw` is one decoded frame as pydicom's `pixel_array` (or the fast path) returns it; `ds`
    supplies the tags (PhotometricInterpretation, BitsStored, PixelRepresentation, Rescale*,
    Modality/VOI LUT Sequences, Window*, PresentationLUTShape). Pure: `raw` and `ds` are not
    modified; the result may be `raw` itself when nothing changes (8-bit MONOCHROME2 without
    window).
    """
    if raw.ndim != 2:
        raise ValueError(f"expected one 2-D grayscale frame, got shape {raw.shape}")
    photometric = (_text(ds, "PhotometricInterpretation") or "MONOCHROME2").upper()
    if photometric not in MONOCHROME:
        raise ValueError(f"expected MONOCHROME1 or MONOCHROME2, got {photometric!r}")

    unit = None  # float64 in [0, 1] once a VOI / window / min-max has been applied
    display = None  # uint8 when the stored values are already display values
    modality_transform = _has_modality_transform(ds)
    values = apply_modality_lut(raw, ds) if modality_transform else raw

    if _get(ds, "VOILUTSequence"):
        unit = _voi_lut_to_unit(values, ds)
    else:
        center = _first_number(_get(ds, "WindowCenter"))
        width = _first_number(_get(ds, "WindowWidth"))
        if center is not None and width is not None and width > 0:
            unit = window_to_unit(values, center, width, _text(ds, "VOILUTFunction") or "LINEAR")
    if unit is None:
        eight_bit_unsigned = (
            raw.dtype == np.uint8 and _int(ds, "BitsStored", 8) == 8 and _int(ds, "PixelRepresentation", 0) == 0
        )
        if eight_bit_unsigned and not modality_transform:
            display = raw
        else:
            unit = _min_max_to_unit(values)
    if display is None:
        display = np.clip(np.rint(unit * 255.0), 0, 255).astype(np.uint8)
    if _shows_minimum_white(ds, photometric):
        display = 255 - display
    return display


def _shows_minimum_white(ds: Dataset, photometric: str) -> bool:
    """Whether the VOI stage's lowest output is to be shown white: the polarity step.

    MONOCHROME1: "the minimum sample value is intended to be displayed as white after any VOI
    gray scale transformations have been performed" (PS3.3 C.7.6.3.1.2). Presentation LUT Shape
    INVERSE (2050,0020): "P-Value = maximum value - output value", applied to the VOI stage's
    output (PS3.3 C.11.6.1.2). In an image the two say the same thing: the General Image
    Module (PS3.3 C.7.6.1) requires INVERSE for MONOCHROME1 and IDENTITY for MONOCHROME2. So
    the rule is an OR, never an XOR: MONOCHROME1 + INVERSE (the consistent spelling) is
    inverted once; MONOCHROME2 + INVERSE (which C.7.6.1 does not allow, but which the shape's
    own definition settles) is inverted; MONOCHROME1 + IDENTITY (inconsistent) keeps
    MONOCHROME1's inversion, Photometric Interpretation being the required (type 1) tag and
    Presentation LUT Shape the optional one. Any other shape (LIN OD is for print only) is
    taken as IDENTITY.

    The inversion is 255 - value, against the full output range as C.11.6.1.2 says; not
    ``pydicom.pixels.apply_presentation_lut``, whose INVERSE subtracts from the image's own
    maximum (an image whose brightest pixel is 200 would come out 55 grey levels too dark)
    and which knows nothing of MONOCHROME1.
    """
    if photometric == "MONOCHROME1":
        return True
    shape = _text(ds, "PresentationLUTShape")
    return shape is not None and shape.upper() == "INVERSE"
