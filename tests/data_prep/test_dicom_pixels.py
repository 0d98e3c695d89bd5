"""data_prep.dicom_pixels: the pixel data proven complete from element and item lengths."""

from __future__ import annotations

import struct
from pathlib import Path

import pydicom
import pytest

from data_prep.dicom_pixels import PIXEL_DATA_TAG, locate_pixel_data, read_pixel_value
from data_prep.errors import DicomReadError
from tests.data_prep.dicom_fixtures import textured_image, write_dicom, write_jpeg_baseline_dicom

_DELIMITER = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"


def _locate(path: Path, size_bytes: int | None = None):
    with open(path, "rb") as handle:
        ds = pydicom.dcmread(handle, stop_before_pixels=True)
        layout = locate_pixel_data(
            path,
            handle,
            size_bytes or path.stat().st_size,
            implicit_vr=ds.original_encoding[0],
            little_endian=ds.original_encoding[1],
        )
        return layout, (read_pixel_value(handle, layout) if layout else None)


def test_encapsulated_layout_and_value_match_pydicom(tmp_path):
    path = write_jpeg_baseline_dicom(tmp_path / "a.dcm", textured_image(64, 48))
    layout, value = _locate(path)
    assert layout.tag == PIXEL_DATA_TAG and layout.encapsulated and len(layout.fragments) == 2
    assert layout.value_end + len(_DELIMITER) == path.stat().st_size
    assert value == pydicom.dcmread(path).PixelData


def test_native_layout(tmp_path):
    path = write_dicom(tmp_path / "n.dcm", textured_image(8, 4, bits=12), bits_stored=12)
    layout, value = _locate(path)
    assert not layout.encapsulated and layout.length == 64 and value == pydicom.dcmread(path).PixelData


@pytest.mark.parametrize(
    "damage, fragment",
    [
        (lambda d: d[: -len(_DELIMITER)], "without its sequence delimiter (FFFE,E0DD)"),
        (lambda d: d[:-100], "pixel data item 1 needs"),
        (
            lambda d: d[: -len(_DELIMITER)] + b"\x10\x00\x10\x00" + struct.pack("<I", 0),
            "corrupt encapsulated pixel data: (0010,0010)",
        ),
    ],
    ids=["no_delimiter", "cut_in_item", "stray_tag"],
)
def test_damaged_encapsulated_data_is_found(tmp_path, damage, fragment):
    path = write_jpeg_baseline_dicom(tmp_path / "a.dcm", textured_image(64, 48))
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(DicomReadError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        _locate(path)


def test_no_pixel_data_is_none(tmp_path):
    ds = pydicom.dcmread(write_dicom(tmp_path / "n.dcm", textured_image(8, 4)))
    del ds.PixelData
    ds.save_as(tmp_path / "none.dcm", enforce_file_format=True)
    assert _locate(tmp_path / "none.dcm") == (None, None)
