"""A fast parse of the common DICOM header: Part 10 file, explicit VR little endian, no sequences.

    ds = parse_simple_header(handle, size_bytes)   # a pydicom Dataset, or None: use pydicom

Called by data_prep.dicom._parse_header only, the one place a DICOM header is parsed (which
falls back to pydicom when this returns None); data_prep.dicom's docstring maps the readers.

What every RSNA file is, and what most radiographs are: the 128-byte preamble and 'DICM',
the file meta group (0002), then a dataset in explicit VR little endian (every compressed
transfer syntax is) whose elements all have defined lengths, up to the PixelData element.
Such a header is a flat list of (tag, VR, length, value); this module walks it with
`struct.unpack_from` over ONE read of the file's first bytes, and returns the same Dataset
pydicom's `dcmread(stop_before_pixels=True)` builds (the same RawDataElements: tag, VR,
length, value bytes, file offset, encoding), leaving the handle at the PixelData element (or
at the end of the file) exactly where pydicom would. pydicom's general reader costs about
three times as much per element: it is written for every file, not for this one layout.

Anything else returns None BEFORE a decision is made, and the caller parses the file with
pydicom from the start: no preamble, implicit VR, big endian, deflated, a sequence or an
element of undefined length, an unknown VR, a value or an element header cut off by the end
of the file, an item tag at the top level. So a file that is odd in any way gets pydicom's
verdict and the reader's existing messages; only the plain case is served here. The pixel
data itself is proven complete afterwards by data_prep.dicom_pixels, as for every file.
"""

from __future__ import annotations

import functools
import struct
from typing import BinaryIO

from pydicom.dataelem import RawDataElement, empty_value_for_VR
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.tag import BaseTag
from pydicom.uid import UID

__all__ = ["HEAD_READ_BYTES", "parse_simple_header"]

# One read covers RSNA's whole header (about 600 bytes) and the pixel element's first item
# header with room to spare; a longer header is read on in steps of at least this much.
HEAD_READ_BYTES = 8192
# A header this long is not the plain case: leave it to pydicom rather than buffer it.
MAX_HEADER_BYTES = 1 << 20

_DICM_OFFSET = 128
_UNDEFINED_LENGTH = 0xFFFFFFFF
_STOP_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})  # PixelData, FloatPixelData, DoubleFloatPixelData
_ITEM_GROUP = 0xFFFE
_LONG_LENGTH_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT", b"SV", b"UV"}
)
_SHORT_LENGTH_VRS = frozenset(
    {
        b"AE",
        b"AS",
        b"AT",
        b"CS",
        b"DA",
        b"DS",
        b"DT",
        b"FL",
        b"FD",
        b"IS",
        b"LO",
        b"LT",
        b"PN",
        b"SH",
        b"SL",
        b"SS",
        b"ST",
        b"TM",
        b"UI",
        b"UL",
        b"US",
    }
)
_TRANSFER_SYNTAX_TAG = 0x00020010
_HEAD = struct.Struct("<HH2sH")
_U32 = struct.Struct("<I")


@functools.lru_cache(maxsize=64)
def _plain_syntax(uid_bytes: bytes) -> bool:
    """True for a transfer syntax whose dataset is explicit VR little endian and not deflated."""
    uid = UID(uid_bytes.decode("ascii", "replace").strip(" \x00"))
    if not uid.is_transfer_syntax:
        return False
    return (not uid.is_implicit_VR) and uid.is_little_endian and not uid.is_deflated


class _Head:
    """The file's first bytes, read on demand in large steps (one read for a plain header)."""

    def __init__(self, handle: BinaryIO, size_bytes: int) -> None:
        self.handle = handle
        self.size_bytes = size_bytes
        self.data = handle.read(min(size_bytes, HEAD_READ_BYTES))

    def have(self, end: int) -> bool:
        """Make sure bytes [0, end) are buffered; False when the file (or our limit) ends first."""
        if end <= len(self.data):
            return True
        if end > self.size_bytes or end > MAX_HEADER_BYTES:
            return False
        want = min(self.size_bytes, MAX_HEADER_BYTES, max(end, 2 * len(self.data))) - len(self.data)
        more = self.handle.read(want)
        self.data += more
        return end <= len(self.data)


def _elements(head: _Head, position: int, *, meta: bool) -> tuple[dict[BaseTag, RawDataElement], int] | None:
    """Explicit VR little endian elements from `position` -> ({tag: element}, where they stop).

    The file meta group (`meta`) stops at the first tag outside group 0002; the dataset at
    the pixel data, or at the end of the file. None for anything outside the plain case.
    """
    elements: dict[BaseTag, RawDataElement] = {}
    size_bytes = head.size_bytes
    data = head.data
    while True:
        if position == size_bytes and not meta:
            return elements, position
        if position + 12 > len(data) and not head.have(min(position + 12, size_bytes)):
            return None
        data = head.data
        if position + 8 > len(data):
            return None
        group, element, vr, length = _HEAD.unpack_from(data, position)
        tag = (group << 16) | element
        if meta and group != 0x0002:
            return elements, position
        if tag in _STOP_TAGS or group == _ITEM_GROUP:
            return (elements, position) if not meta and tag in _STOP_TAGS else None
        if vr in _SHORT_LENGTH_VRS:
            value_offset = position + 8
        elif vr in _LONG_LENGTH_VRS and vr != b"SQ":
            if position + 12 > len(data):
                return None
            (length,) = _U32.unpack_from(data, position + 8)
            value_offset = position + 12
        else:  # a sequence, or a VR pydicom would have to guess at
            return None
        if length == _UNDEFINED_LENGTH:
            return None
        end = value_offset + length
        if end > len(data):
            if not head.have(end):
                return None
            data = head.data
        vr_text = vr.decode("ascii")
        value = data[value_offset:end] if length else empty_value_for_VR(vr_text, raw=True)
        key = BaseTag(tag)
        elements[key] = RawDataElement(key, vr_text, length, value, value_offset, False, True)
        position = end


def parse_simple_header(handle: BinaryIO, size_bytes: int) -> Dataset | None:
    """The header of a plain Part 10 file (module docstring) as pydicom's dcmread(stop_before_pixels)
    would build it, the handle left at the PixelData element or at the end of the file; None (the
    handle's position then undefined) when the file is not of that kind and pydicom must parse it."""
    handle.seek(0)
    head = _Head(handle, size_bytes)
    if not head.have(_DICM_OFFSET + 4) or head.data[_DICM_OFFSET : _DICM_OFFSET + 4] != b"DICM":
        return None
    parsed = _elements(head, _DICM_OFFSET + 4, meta=True)
    if parsed is None:
        return None
    meta_elements, position = parsed
    syntax = meta_elements.get(_TRANSFER_SYNTAX_TAG)
    if syntax is None or not syntax.value or not _plain_syntax(bytes(syntax.value)):
        return None
    parsed = _elements(head, position, meta=False)
    if parsed is None or not parsed[0]:
        return None
    elements, position = parsed
    ds = Dataset(elements)
    ds.file_meta = FileMetaDataset(meta_elements)
    ds.preamble = head.data[:_DICM_OFFSET]
    ds.set_original_encoding(False, True)
    handle.seek(position)
    return ds
