"""Where a DICOM file's pixel data lies, proven complete from the file itself, before decoding.

    layout = locate_pixel_data(path, handle, size_bytes, implicit_vr=..., little_endian=...)
    value = read_pixel_value(handle, layout)      # the bytes pydicom would hold as PixelData

The header has been parsed up to the PixelData element by data_prep.dicom._parse_header (the
one place a header is parsed: data_prep.dicom_header's fast parser, or pydicom with
stop_before_pixels), which leaves the file positioned at that element. From there this module reads the element header
and, for encapsulated (compressed) data, walks the items: each item tag (FFFE,E000) with its
length, skipped by a seek, up to the sequence delimiter (FFFE,E0DD). Every item must end
inside the file; the delimiter must be there. For native data the element's length must fit
in the file. A cut-off file is found from these lengths alone, with a few small reads, and
no state outside the call: nothing depends on which warning pydicom emits (recording
warnings is process-global and raced between the threads of `detect infer`), and the header
scan of `detect prepare` proves the pixel data complete at the cost of a few seeks per file.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from data_prep.errors import DicomReadError

__all__ = [
    "FLOAT_PIXEL_TAGS",
    "PIXEL_DATA_TAG",
    "PixelDataLayout",
    "locate_pixel_data",
    "read_first_fragment_head",
    "read_pixel_value",
]

PIXEL_DATA_TAG = 0x7FE00010
FLOAT_PIXEL_TAGS = (0x7FE00008, 0x7FE00009)  # FloatPixelData, DoubleFloatPixelData
_ITEM_TAG = 0xFFFEE000
_SEQUENCE_DELIMITER_TAG = 0xFFFEE0DD
_UNDEFINED_LENGTH = 0xFFFFFFFF
_LONG_LENGTH_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT", b"SV", b"UV"}
)
# A single radiograph is a handful of fragments; this bounds the walk over a hostile file.
MAX_FRAGMENTS = 100_000


@dataclass(frozen=True)
class PixelDataLayout:
    """The PixelData element as it lies in the file (byte offsets from the file's start).

    `fragments` holds (offset, length) of each item of encapsulated data, the basic offset
    table first; it is empty for native data, whose value is `length` bytes at `value_offset`.
    `value_end` is where the value stops: for encapsulated data, at the sequence delimiter.
    """

    tag: int
    vr: str | None
    element_offset: int
    value_offset: int
    length: int | None  # None: undefined length (encapsulated)
    value_end: int
    fragments: tuple[tuple[int, int], ...] = ()

    @property
    def encapsulated(self) -> bool:
        return self.length is None


def _tag_text(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _truncated(path: str | Path, size_bytes: int, what: str) -> DicomReadError:
    return DicomReadError(path, f"truncated file ({size_bytes} bytes): {what}")


def locate_pixel_data(
    path: str | Path, handle: BinaryIO, size_bytes: int, *, implicit_vr: bool, little_endian: bool
) -> PixelDataLayout | None:
    """Read the pixel data element at the handle's position (where pydicom's header parse
    stopped) and prove that it lies complete inside the file; None when the file holds no
    pixel data (the header ended at the end of the file).

    Raises DicomReadError: 'truncated file' when the element header, a native value, an item
    or the sequence delimiter would end past `size_bytes`; 'corrupt encapsulated pixel data'
    for a stray tag among the items.
    """
    start = handle.tell()
    remaining = size_bytes - start
    if remaining <= 0:
        return None
    head = handle.read(12)
    if len(head) < 8:
        raise _truncated(path, size_bytes, "ends inside the element header where the pixel data starts")
    endian = "<" if little_endian else ">"
    group, element = struct.unpack(endian + "HH", head[:4])
    tag = (group << 16) | element
    vr: str | None = None
    if implicit_vr:
        (length,) = struct.unpack(endian + "I", head[4:8])
        value_offset = start + 8
    elif head[4:6] in _LONG_LENGTH_VRS:
        if len(head) < 12:
            raise _truncated(path, size_bytes, f"ends inside the header of element {_tag_text(tag)}")
        vr = head[4:6].decode("ascii")
        (length,) = struct.unpack(endian + "I", head[8:12])
        value_offset = start + 12
    else:
        vr = head[4:6].decode("latin-1")
        (length,) = struct.unpack(endian + "H", head[6:8])
        value_offset = start + 8
    if tag != PIXEL_DATA_TAG and tag not in FLOAT_PIXEL_TAGS:
        raise DicomReadError(
            path, f"malformed dataset: element {_tag_text(tag)} at byte {start} where the header parse stopped"
        )
    if length != _UNDEFINED_LENGTH:
        end = value_offset + length
        if end > size_bytes:
            have = max(0, size_bytes - value_offset)
            raise _truncated(path, size_bytes, f"PixelData {_tag_text(tag)} has {have} of {length} bytes")
        return PixelDataLayout(tag, vr, start, value_offset, length, end)
    return _walk_items(path, handle, size_bytes, tag, vr, start, value_offset)


def _walk_items(
    path: str | Path, handle: BinaryIO, size_bytes: int, tag: int, vr: str | None, start: int, value_offset: int
) -> PixelDataLayout:
    """Encapsulated data (always explicit VR little endian items): item, item, ..., delimiter."""
    fragments: list[tuple[int, int]] = []
    position = value_offset
    handle.seek(position)
    while True:
        if len(fragments) > MAX_FRAGMENTS:
            raise DicomReadError(path, f"corrupt encapsulated pixel data: more than {MAX_FRAGMENTS} items")
        item = handle.read(8)
        if len(item) < 8:
            raise _truncated(
                path,
                size_bytes,
                f"encapsulated PixelData ends after {len(fragments)} item(s) "
                "without its sequence delimiter (FFFE,E0DD)",
            )
        group, element, length = struct.unpack("<HHI", item)
        item_tag = (group << 16) | element
        if item_tag == _SEQUENCE_DELIMITER_TAG:
            return PixelDataLayout(tag, vr, start, value_offset, None, position, tuple(fragments))
        if item_tag != _ITEM_TAG or length == _UNDEFINED_LENGTH:
            raise DicomReadError(
                path,
                f"corrupt encapsulated pixel data: {_tag_text(item_tag)} with length {length} at byte "
                f"{position}, expected an item (FFFE,E000) or the sequence delimiter (FFFE,E0DD)",
            )
        item_end = position + 8 + length
        if item_end > size_bytes:
            raise _truncated(
                path,
                size_bytes,
                f"pixel data item {len(fragments)} needs {length} bytes, {max(0, size_bytes - position - 8)} are left",
            )
        fragments.append((position + 8, length))
        position = item_end
        handle.seek(position)


def read_pixel_value(handle: BinaryIO, layout: PixelDataLayout) -> bytes:
    """The element's value as pydicom stores PixelData: native bytes, or the encapsulated items
    (basic offset table included) without the sequence delimiter."""
    handle.seek(layout.value_offset)
    return handle.read(layout.value_end - layout.value_offset)


def read_first_fragment_head(handle: BinaryIO, layout: PixelDataLayout, max_bytes: int = 65536) -> bytes:
    """The first bytes of the first frame's first fragment (after the basic offset table), for
    its codestream header; b'' when there is no such fragment."""
    if len(layout.fragments) < 2:
        return b""
    offset, length = layout.fragments[1]
    handle.seek(offset)
    return handle.read(min(length, max_bytes))
