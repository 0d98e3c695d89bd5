"""data_prep.dicom_header: the plain header parsed to pydicom's own Dataset; everything else left
to pydicom; a file cut anywhere in its pixel data still reported by the header scan."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRBigEndian, ImplicitVRLittleEndian

from data_prep.dicom import read_dicom, read_dicom_header, scan_dicom_headers
from data_prep.dicom_header import HEAD_READ_BYTES, parse_simple_header
from data_prep.dicom_pixels import PIXEL_DATA_TAG
from data_prep.errors import DicomReadError
from tests.data_prep.dicom_fixtures import textured_image, write_dicom, write_jpeg_baseline_dicom

pytestmark = pytest.mark.filterwarnings("ignore:Invalid value for VR AS")


def _raw(elem):
    return (
        int(elem.tag),
        elem.VR,
        elem.length,
        elem.value,
        elem.value_tell,
        elem.is_implicit_VR,
        elem.is_little_endian,
    )


def _parse_both(path: Path):
    size = path.stat().st_size
    with open(path, "rb") as handle:
        ours = parse_simple_header(handle, size)
        our_position = handle.tell()
    with open(path, "rb") as handle:
        theirs = pydicom.dcmread(handle, stop_before_pixels=True)
        their_position = handle.tell()
    return ours, our_position, theirs, their_position


def test_plain_header_is_the_dataset_pydicom_builds(tmp_path):
    path = write_jpeg_baseline_dicom(tmp_path / "a.dcm", textured_image(64, 48), WindowCenter=40, WindowWidth=400)
    ours, our_position, theirs, their_position = _parse_both(path)
    assert ours is not None
    assert our_position == their_position  # at the PixelData element, where locate_pixel_data starts
    assert list(ours.keys()) == list(theirs.keys()) and PIXEL_DATA_TAG not in ours
    # pydicom converts SpecificCharacterSet while reading (it decodes the rest); ours stays raw
    # until something asks, as every other element does: the same value either way.
    assert ours.SpecificCharacterSet == theirs.SpecificCharacterSet == "ISO_IR 100"
    others = [t for t in theirs.keys() if t != 0x00080005]
    assert [_raw(ours.get_item(t)) for t in others] == [_raw(theirs.get_item(t)) for t in others]
    # pydicom decodes the file meta group as it reads it: compare the values
    assert [(t, ours.file_meta[t].value) for t in ours.file_meta.keys()] == [
        (t, theirs.file_meta[t].value) for t in theirs.file_meta.keys()
    ]
    assert ours.original_encoding[:2] == theirs.original_encoding[:2] == (False, True)
    assert ours.PatientID == theirs.PatientID and ours.WindowCenter == theirs.WindowCenter


def test_a_header_longer_than_the_first_read_is_read_on(tmp_path):
    assert 10000 > HEAD_READ_BYTES
    path = write_jpeg_baseline_dicom(tmp_path / "long.dcm", textured_image(32, 32), ImageComments="x" * 10000)
    ours, our_position, theirs, their_position = _parse_both(path)
    assert ours is not None and our_position == their_position
    assert ours.ImageComments == theirs.ImageComments
    assert read_dicom_header(path) == read_dicom_header(path, fast_header=False)


def _with_sequence(path: Path) -> Path:
    ds = pydicom.dcmread(path)
    item = Dataset()
    item.ReferencedSOPInstanceUID = "1.2.3"
    ds.ReferencedImageSequence = Sequence([item])
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.parametrize(
    "make",
    [
        lambda d: write_dicom(d / "implicit.dcm", textured_image(8, 8), transfer_syntax=ImplicitVRLittleEndian),
        lambda d: write_dicom(d / "big.dcm", textured_image(8, 8, bits=12), transfer_syntax=ExplicitVRBigEndian),
        lambda d: _with_sequence(write_jpeg_baseline_dicom(d / "seq.dcm", textured_image(16, 16))),
    ],
    ids=["implicit_vr", "big_endian", "sequence"],
)
def test_files_outside_the_plain_layout_go_to_pydicom_with_the_same_verdict(tmp_path, make):
    path = make(tmp_path)
    with open(path, "rb") as handle:
        assert parse_simple_header(handle, path.stat().st_size) is None
    assert read_dicom_header(path) == read_dicom_header(path, fast_header=False)
    np.testing.assert_array_equal(read_dicom(path)[0], read_dicom(path, fast_header=False)[0])


@pytest.mark.parametrize(
    "make",
    [
        lambda d: write_jpeg_baseline_dicom(
            d / "jpeg.dcm", textured_image(40, 56), RescaleSlope=1, WindowCenter=100, WindowWidth=120
        ),
        lambda d: write_jpeg_baseline_dicom(d / "mono1.dcm", textured_image(40, 56), photometric="MONOCHROME1"),
        lambda d: write_dicom(
            d / "native16.dcm", textured_image(12, 10, bits=12), bits_stored=12, RescaleSlope=2, RescaleIntercept=-1024
        ),
        lambda d: write_dicom(d / "native8.dcm", textured_image(12, 10)),
    ],
    ids=["jpeg_windowed", "monochrome1", "native_12bit_rescaled", "native_8bit"],
)
def test_plain_files_give_the_same_header_and_pixels_either_way(tmp_path, make):
    path = make(tmp_path)
    with open(path, "rb") as handle:
        assert parse_simple_header(handle, path.stat().st_size) is not None
    assert read_dicom_header(path) == read_dicom_header(path, fast_header=False)
    fast, slow = read_dicom(path), read_dicom(path, fast_header=False)
    np.testing.assert_array_equal(fast[0], slow[0])
    assert fast[1] == slow[1]


def _layout_offsets(path: Path) -> dict[str, int]:
    """Byte offsets in a one-fragment JPEG Baseline file: pixel element, items, delimiter."""
    data = path.read_bytes()
    element = data.rindex(b"\xe0\x7f\x10\x00OB\x00\x00")
    bot = element + 12
    (bot_length,) = struct.unpack("<I", data[bot + 4 : bot + 8])
    fragment = bot + 8 + bot_length
    (fragment_length,) = struct.unpack("<I", data[fragment + 4 : fragment + 8])
    delimiter = fragment + 8 + fragment_length
    assert data[delimiter : delimiter + 4] == b"\xfe\xff\xdd\xe0" and delimiter + 8 == len(data)
    return {"element": element, "bot": bot, "fragment": fragment, "delimiter": delimiter, "end": len(data)}


@pytest.mark.parametrize(
    "cut",
    [
        ("element", 6),
        ("element", 10),
        ("bot", 4),
        ("fragment", 3),
        ("fragment", 8 + 10),
        ("head_read", 0),
        ("delimiter", -1000),
        ("delimiter", -1),
        ("delimiter", 0),
        ("delimiter", 4),
    ],
    ids=[
        "in_element_header",
        "in_element_length",
        "in_offset_table_item",
        "in_fragment_item_header",
        "fragment_just_begun",
        "at_end_of_first_read",
        "mid_fragment",
        "last_fragment_byte",
        "no_delimiter",
        "half_a_delimiter",
    ],
)
def test_a_file_cut_anywhere_in_its_pixel_data_is_a_bad_file_of_the_scan(tmp_path, cut):
    """The scan reads only the start of the file; the item lengths still prove the rest there."""
    path = write_jpeg_baseline_dicom(tmp_path / "a.dcm", textured_image(256, 256), quality=95)
    offsets = _layout_offsets(path)
    where, delta = cut
    at = HEAD_READ_BYTES if where == "head_read" else offsets[where] + delta
    assert offsets["element"] < at < offsets["end"]
    path.write_bytes(path.read_bytes()[:at])
    headers, bad = scan_dicom_headers([path])
    assert headers == [] and len(bad) == 1 and bad[0].reason.startswith("truncated file"), bad
    for fast_header in (True, False):  # pydicom's parse says 'truncated or corrupt' for a cut length
        with pytest.raises(DicomReadError, match="truncated"):
            read_dicom_header(path, fast_header=fast_header)


def test_a_cut_in_the_header_goes_to_pydicom_and_keeps_its_message(tmp_path):
    path = write_jpeg_baseline_dicom(tmp_path / "a.dcm", textured_image(32, 32))
    data = path.read_bytes()
    at = data.index(b"0004cfab") + 4  # inside PatientName's value
    path.write_bytes(data[:at])
    with open(path, "rb") as handle:
        assert parse_simple_header(handle, path.stat().st_size) is None
    with pytest.raises(DicomReadError, match=r"truncated file .*PatientName"):
        read_dicom_header(path)
