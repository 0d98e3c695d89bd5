"""data_prep.dicom: decoding, the pixel pipeline (hand-worked values), header fields, errors."""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.pixels import get_decoder
from pydicom.sequence import Sequence
from pydicom.uid import (
    MPEG2MPML,
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    RLELossless,
)

import data_prep.dicom as dicom_module
from data_prep.dicom import (
    jpeg_is_complete,
    parse_age_years,
    read_dicom,
    read_dicom_header,
    scan_dicom_headers,
    to_display_uint8,
    window_to_unit,
)
from data_prep.errors import DicomReadError
from data_prep.records import BadFile, DicomHeader
from tests.data_prep.dicom_fixtures import (
    make_dataset,
    overwrite_middle,
    textured_image,
    with_jpeg_sof_size,
    write_dicom,
    write_jpeg_baseline_dicom,
)


def _assert_one_line_error(excinfo: pytest.ExceptionInfo, path: Path, *fragments: str) -> None:
    message = str(excinfo.value)
    assert message.startswith(f"{path}: "), message
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    assert excinfo.value.__cause__ is None  # raised `from None`: no pydicom traceback attached


def _pixels_of(ds: Dataset, raw: np.ndarray) -> np.ndarray:
    return to_display_uint8(raw, ds)


# ---------------------------------------------------------------------------------------------
# The JPEG Baseline fast path (what every RSNA file is)


@pytest.fixture()
def no_pydicom_decode(monkeypatch):
    """Fail loudly if read_dicom falls back to pydicom's decoder."""

    def refuse(*args, **kwargs):
        raise AssertionError("the fast path should not call pydicom's decoder")

    monkeypatch.setattr(dicom_module, "_decode_with_pydicom", refuse)


def test_fast_path_matches_pydicom_pylibjpeg_within_one_grey_level(tmp_path, no_pydicom_decode):
    image = textured_image(128, 160, seed=3)
    path = write_jpeg_baseline_dicom(tmp_path / "rsna.dcm", image, quality=90)

    pixels, header = read_dicom(path)
    reference = pydicom.pixels.pixel_array(str(path), decoding_plugin="pylibjpeg")

    assert header.transfer_syntax_uid == JPEGBaseline8Bit
    assert pixels.dtype == np.uint8 and pixels.shape == (128, 160) == reference.shape
    assert np.abs(pixels.astype(int) - reference.astype(int)).max() <= 1
    # and it is the image that was encoded (JPEG q90 error on a noisy image, about 3 grey levels
    # on average): not stretched, not inverted
    assert np.abs(pixels.astype(int) - image.astype(int)).mean() < 5.0


def test_fast_path_off_uses_pydicom_exactly(tmp_path):
    image = textured_image(64, 96, seed=4)
    path = write_jpeg_baseline_dicom(tmp_path / "rsna.dcm", image)
    pixels, _ = read_dicom(path, fast_path=False)
    np.testing.assert_array_equal(pixels, pydicom.dcmread(path).pixel_array)


def test_fast_path_needs_no_decoder_plugin_but_pydicom_path_names_the_fix(tmp_path, monkeypatch):
    path = write_jpeg_baseline_dicom(tmp_path / "rsna.dcm", textured_image(64, 64, seed=5))
    monkeypatch.setattr(get_decoder(JPEGBaseline8Bit), "_available", {})  # as if no plugin installed

    pixels, _ = read_dicom(path)
    assert pixels.shape == (64, 64)

    with pytest.raises(DicomReadError) as excinfo:
        read_dicom(path, fast_path=False)
    _assert_one_line_error(
        excinfo,
        path,
        "no decoder installed for JPEG Baseline",
        "pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg",
    )


def test_fast_path_monochrome1_jpeg_is_inverted(tmp_path, no_pydicom_decode):
    image = textured_image(64, 80, seed=6)
    plain = write_jpeg_baseline_dicom(tmp_path / "m2.dcm", image)
    inverted = write_jpeg_baseline_dicom(tmp_path / "m1.dcm", image, photometric="MONOCHROME1")
    np.testing.assert_array_equal(read_dicom(inverted)[0], 255 - read_dicom(plain)[0])


def test_fast_path_presentation_lut_inverse_jpeg_is_inverted(tmp_path, no_pydicom_decode):
    image = textured_image(64, 80, seed=6)
    plain = write_jpeg_baseline_dicom(tmp_path / "m2.dcm", image)
    inverse = write_jpeg_baseline_dicom(tmp_path / "inverse.dcm", image, PresentationLUTShape="INVERSE")
    np.testing.assert_array_equal(read_dicom(inverse)[0], 255 - read_dicom(plain)[0])


def test_non_square_jpeg_keeps_rows_and_columns(tmp_path, no_pydicom_decode):
    image = np.tile(np.linspace(0, 255, 160).astype(np.uint8), (96, 1))  # brightens to the right
    pixels, header = read_dicom(write_jpeg_baseline_dicom(tmp_path / "wide.dcm", image))
    assert pixels.shape == (96, 160) and (header.rows, header.columns) == (96, 160)
    assert pixels[:, :10].mean() < 20 and pixels[:, -10:].mean() > 235  # not transposed


def test_jpeg_frame_without_end_of_image_marker_is_truncated(tmp_path):
    image = textured_image(64, 64, seed=7)
    path = write_jpeg_baseline_dicom(tmp_path / "cut.dcm", image)
    ds = pydicom.dcmread(path)
    ok, jpeg = cv2.imencode(".jpg", image)
    ds.PixelData = encapsulate([jpeg.tobytes()[:-300]])
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(DicomReadError) as excinfo:
        read_dicom(path)
    _assert_one_line_error(excinfo, path, "truncated JPEG", "no end-of-image marker FF D9")


def test_jpeg_is_complete():
    ok, jpeg = cv2.imencode(".jpg", textured_image(32, 32))
    data = jpeg.tobytes()
    assert jpeg_is_complete(data)
    assert jpeg_is_complete(data + b"\x00")  # DICOM fragment padding
    assert not jpeg_is_complete(data[:-2])
    assert not jpeg_is_complete(data[: len(data) // 2])
    assert not jpeg_is_complete(b"")


# ---------------------------------------------------------------------------------------------
# The pixel pipeline, with numbers worked by hand


def test_8bit_without_window_passes_through_unchanged(tmp_path):
    raw = np.array([[50, 60], [70, 100]], dtype=np.uint8)  # a narrow range: must NOT be stretched
    pixels, _ = read_dicom(write_dicom(tmp_path / "a.dcm", raw))
    np.testing.assert_array_equal(pixels, raw)
    # an identity rescale is still no rescale
    pixels, _ = read_dicom(write_dicom(tmp_path / "b.dcm", raw, RescaleSlope=1, RescaleIntercept=0))
    np.testing.assert_array_equal(pixels, raw)


def test_monochrome1_8bit_inverted():
    raw = np.array([[0, 10], [200, 255]], dtype=np.uint8)
    ds = make_dataset(raw, photometric="MONOCHROME1")
    np.testing.assert_array_equal(_pixels_of(ds, raw), [[255, 245], [55, 0]])


# raw -> rescaled x = 2 * raw - 1024 -> LINEAR window c=40, w=401: ((x - 39.5) / 400 + 0.5) * 255
#   0 -> -1024 -> 0;  512 -> 0 -> 102.32 -> 102;  532 -> 40 -> 127.82 -> 128;
#   612 -> 200 -> 229.82 -> 230;  1000 -> 976 -> 255;  700 -> 376 -> 255.
# Windowing the raw values first (the wrong order) would give 255 for raw 512.
RESCALE_WINDOW_RAW = np.array([[0, 512, 532], [612, 1000, 700]], dtype=np.uint16)
RESCALE_WINDOW_EXPECTED = np.array([[0, 102, 128], [230, 255, 255]], dtype=np.uint8)
RESCALE_TAGS = dict(RescaleSlope=2, RescaleIntercept=-1024, WindowCenter=40, WindowWidth=401)


def test_16bit_rescale_before_window(tmp_path):
    path = write_dicom(tmp_path / "ct_like.dcm", RESCALE_WINDOW_RAW, **RESCALE_TAGS)
    pixels, header = read_dicom(path)
    assert header.bits_allocated == 16
    np.testing.assert_array_equal(pixels, RESCALE_WINDOW_EXPECTED)


def test_monochrome1_inverted_after_window(tmp_path):
    path = write_dicom(tmp_path / "m1.dcm", RESCALE_WINDOW_RAW, photometric="MONOCHROME1", **RESCALE_TAGS)
    np.testing.assert_array_equal(read_dicom(path)[0], 255 - RESCALE_WINDOW_EXPECTED)


# The same picture stored with the opposite polarity: stored values 4095 - x and the window
# mirrored (c' = 4096 - c, because LINEAR windows around c - 0.5). 12-bit, LINEAR c=2000, w=1001:
#   ((x - 1999.5) / 1000 + 0.5) * 255: 1500 -> 0.1275 -> 0;  1800 -> 76.6275 -> 77;
#   2000 -> 127.6275 -> 128;  2400 -> 229.6275 -> 230;  3000 -> 255;  100 -> 0.
WINDOWED_12BIT = np.array([[1500, 1800, 2000], [2400, 3000, 100]], dtype=np.uint16)
WINDOWED_12BIT_EXPECTED = np.array([[0, 77, 128], [230, 255, 0]], dtype=np.uint8)
PLAIN_8BIT = np.array([[0, 10, 50], [128, 200, 255]], dtype=np.uint8)  # passes through unchanged


def _write_polarity_case(path: Path, case: str, *, inverted: bool = False, **tags) -> Path:
    """PLAIN_8BIT or WINDOWED_12BIT as MONOCHROME2, or (`inverted`) the same picture stored with
    inverted values and, for the window, the mirrored center; `tags` are added."""
    if case == "8bit":
        return write_dicom(path, 255 - PLAIN_8BIT if inverted else PLAIN_8BIT, **tags)
    raw, center = (4095 - WINDOWED_12BIT, 4096 - 2000) if inverted else (WINDOWED_12BIT, 2000)
    return write_dicom(path, raw, bits_stored=12, WindowCenter=center, WindowWidth=1001, **tags)


POLARITY_CASES = pytest.mark.parametrize(
    "case, expected", [("8bit", PLAIN_8BIT), ("window", WINDOWED_12BIT_EXPECTED)], ids=["8bit", "window"]
)


@POLARITY_CASES
def test_presentation_lut_inverse_shows_the_same_picture_as_its_inverted_monochrome2_twin(tmp_path, case, expected):
    plain = _write_polarity_case(tmp_path / "plain.dcm", case)
    inverse = _write_polarity_case(tmp_path / "inverse.dcm", case, inverted=True, PresentationLUTShape="INVERSE")
    assert pydicom.dcmread(inverse).PresentationLUTShape == "INVERSE"
    np.testing.assert_array_equal(read_dicom(plain)[0], expected)
    np.testing.assert_array_equal(read_dicom(inverse)[0], expected)
    np.testing.assert_array_equal(read_dicom(inverse, fast_header=False)[0], expected)


@POLARITY_CASES
def test_presentation_lut_identity_renders_unchanged(tmp_path, case, expected):
    identity = _write_polarity_case(tmp_path / "identity.dcm", case, PresentationLUTShape="IDENTITY")
    np.testing.assert_array_equal(read_dicom(identity)[0], expected)


def test_monochrome1_with_presentation_lut_inverse_is_inverted_once(tmp_path):
    # PS3.3 C.7.6.1 requires INVERSE for MONOCHROME1: one statement, one inversion
    m1 = write_dicom(tmp_path / "m1.dcm", RESCALE_WINDOW_RAW, photometric="MONOCHROME1", **RESCALE_TAGS)
    m1_inverse = write_dicom(
        tmp_path / "m1_inverse.dcm",
        RESCALE_WINDOW_RAW,
        photometric="MONOCHROME1",
        PresentationLUTShape="INVERSE",
        **RESCALE_TAGS,
    )
    np.testing.assert_array_equal(read_dicom(m1)[0], 255 - RESCALE_WINDOW_EXPECTED)
    np.testing.assert_array_equal(read_dicom(m1_inverse)[0], 255 - RESCALE_WINDOW_EXPECTED)


def test_presentation_lut_inverse_applies_after_the_window(tmp_path):
    path = write_dicom(tmp_path / "inverse.dcm", RESCALE_WINDOW_RAW, PresentationLUTShape="INVERSE", **RESCALE_TAGS)
    np.testing.assert_array_equal(read_dicom(path)[0], 255 - RESCALE_WINDOW_EXPECTED)


def test_multi_valued_window_uses_the_first_value(tmp_path):
    tags = dict(RESCALE_TAGS, WindowCenter=[40, 1000], WindowWidth=[401, 10])
    path = write_dicom(tmp_path / "multi.dcm", RESCALE_WINDOW_RAW, **tags)
    np.testing.assert_array_equal(read_dicom(path)[0], RESCALE_WINDOW_EXPECTED)


@pytest.mark.parametrize(
    "function, values, expected",
    [
        # LINEAR_EXACT, c=40, w=400: ((x - 40) / 400 + 0.5) * 255: 0 -> 102.0, 100 -> 165.75
        ("LINEAR_EXACT", [0, 100, -200, 300], [102, 166, 0, 255]),
        # SIGMOID, c=40, w=400: 255 / (1 + exp(-4 (x - 40) / 400)): 140 -> 186.42, -60 -> 68.58
        ("SIGMOID", [140, -60], [186, 69]),
    ],
)
def test_voi_lut_functions(function, values, expected):
    raw = np.array([values], dtype=np.int16)
    ds = make_dataset(raw, WindowCenter=40, WindowWidth=400, VOILUTFunction=function)
    np.testing.assert_array_equal(_pixels_of(ds, raw), [expected])


def test_window_to_unit_linear_formula():
    # PS3.3 C.11.2.1.2.1: c=40, w=401 -> bounds 39.5 -/+ 200
    out = window_to_unit(np.array([-160.5, -160.0, 39.5, 239.5, 240.0]), 40, 401)
    np.testing.assert_allclose(out, [0.0, 0.00125, 0.5, 1.0, 1.0])
    assert window_to_unit(np.array([39.0, 40.0]), 40, 1).tolist() == [0.0, 1.0]  # w = 1: threshold


def test_12bit_without_window_scales_min_max_to_full_range(tmp_path):
    # (x - 100) / 3995 * 255: 1100 -> 63.83 -> 64, 3300 -> 204.26 -> 204
    raw = np.array([[100, 1100], [3300, 4095]], dtype=np.uint16)
    pixels, header = read_dicom(write_dicom(tmp_path / "12bit.dcm", raw, bits_stored=12))
    assert header.bits_stored == 12
    np.testing.assert_array_equal(pixels, [[0, 64], [204, 255]])


def test_signed_16bit_without_window_scales_min_max(tmp_path):
    # (x + 1000) / 4000 * 255: 0 -> 63.75 -> 64, 1200 -> 140.25 -> 140
    raw = np.array([[-1000, 0], [1200, 3000]], dtype=np.int16)
    pixels, _ = read_dicom(write_dicom(tmp_path / "signed.dcm", raw))
    np.testing.assert_array_equal(pixels, [[0, 64], [140, 255]])


def test_8bit_with_rescale_is_scaled_not_passed_through():
    raw = np.array([[10, 20], [30, 40]], dtype=np.uint8)
    ds = make_dataset(raw, RescaleSlope=2, RescaleIntercept=0)
    np.testing.assert_array_equal(_pixels_of(ds, raw), [[0, 85], [170, 255]])


def test_constant_image_without_window_is_black():
    raw = np.full((4, 5), 1234, dtype=np.uint16)
    np.testing.assert_array_equal(_pixels_of(make_dataset(raw), raw), np.zeros((4, 5)))


def test_voi_lut_sequence_scaled_by_the_lut_range(tmp_path):
    # LUT: 4 entries from input 100: <=100 -> 0, 101 -> 1000, 102 -> 3000, >=103 -> 4000.
    # Output / 4000 * 255: 1000 -> 63.75 -> 64, 3000 -> 191.25 -> 191.
    raw = np.array([[50, 100], [101, 102], [103, 4000]], dtype=np.uint16)
    item = Dataset()
    item.add_new(0x00283002, "US", [4, 100, 16])  # LUTDescriptor: entries, first input, bits
    item.add_new(0x00283006, "US", [0, 1000, 3000, 4000])  # LUTData
    path = write_dicom(
        tmp_path / "voilut.dcm",
        raw,
        bits_stored=12,
        VOILUTSequence=Sequence([item]),
        WindowCenter=5000,
        WindowWidth=10,  # present but the LUT wins, as in pydicom
    )
    np.testing.assert_array_equal(read_dicom(path)[0], [[0, 0], [64, 191], [255, 255]])


def test_non_positive_window_width_is_ignored():
    raw = np.array([[100, 1100], [3300, 4095]], dtype=np.uint16)
    ds = make_dataset(raw, bits_stored=12, WindowCenter=100, WindowWidth=0)
    np.testing.assert_array_equal(_pixels_of(ds, raw), [[0, 64], [204, 255]])


def test_to_display_uint8_is_pure_and_checks_its_input():
    raw = np.array([[0, 4095]], dtype=np.uint16)
    ds = make_dataset(raw, bits_stored=12, photometric="MONOCHROME1")
    before = raw.copy()
    out = to_display_uint8(raw, ds)
    np.testing.assert_array_equal(raw, before)
    np.testing.assert_array_equal(out, [[255, 0]])
    with pytest.raises(ValueError, match="2-D"):
        to_display_uint8(np.zeros((2, 3, 4), dtype=np.uint16), ds)


def test_non_square_16bit_shape_and_orientation(tmp_path):
    raw = np.tile(np.arange(130, dtype=np.uint16) * 30, (70, 1))  # brightens to the right
    pixels, header = read_dicom(write_dicom(tmp_path / "wide16.dcm", raw))
    assert pixels.shape == (70, 130) and (header.rows, header.columns) == (70, 130)
    assert pixels[0, 0] == 0 and pixels[-1, -1] == 255
    assert np.all(np.diff(pixels.astype(int), axis=1) >= 0)


# ---------------------------------------------------------------------------------------------
# Other transfer syntaxes go through pydicom and decode to the same pixels


def _reference_12bit(tmp_path: Path) -> tuple[Dataset, np.ndarray]:
    raw = textured_image(64, 80, seed=8, bits=12)
    ds = make_dataset(raw, bits_stored=12, RescaleSlope=1, RescaleIntercept=-1024, WindowCenter=900, WindowWidth=2500)
    expected, _ = read_dicom(
        write_dicom(
            tmp_path / "native.dcm",
            raw,
            bits_stored=12,
            RescaleSlope=1,
            RescaleIntercept=-1024,
            WindowCenter=900,
            WindowWidth=2500,
        )
    )
    return ds, expected


def test_rle_lossless_decodes_like_uncompressed(tmp_path):
    ds, expected = _reference_12bit(tmp_path)
    ds.compress(RLELossless)
    ds.save_as(tmp_path / "rle.dcm", enforce_file_format=True)
    pixels, header = read_dicom(tmp_path / "rle.dcm")
    assert header.transfer_syntax_uid == RLELossless
    np.testing.assert_array_equal(pixels, expected)


def test_jpeg2000_lossless_decodes_like_uncompressed(tmp_path):
    ds, expected = _reference_12bit(tmp_path)
    try:
        ds.compress(JPEG2000Lossless)
    except Exception as exc:  # pydicom's J2K encoder needs pylibjpeg-openjpeg
        pytest.skip(f"cannot encode JPEG 2000 here: {exc}")
    ds.save_as(tmp_path / "j2k.dcm", enforce_file_format=True)
    pixels, header = read_dicom(tmp_path / "j2k.dcm")
    assert header.transfer_syntax_uid == JPEG2000Lossless
    np.testing.assert_array_equal(pixels, expected)


def test_explicit_vr_big_endian_decodes_like_little_endian(tmp_path):
    raw = textured_image(48, 72, seed=9, bits=12)
    expected, _ = read_dicom(write_dicom(tmp_path / "le.dcm", raw, bits_stored=12))
    try:
        path = write_dicom(tmp_path / "be.dcm", raw, bits_stored=12, transfer_syntax=ExplicitVRBigEndian)
    except Exception as exc:
        pytest.skip(f"pydicom cannot write Explicit VR Big Endian here: {exc}")
    pixels, header = read_dicom(path)
    assert header.transfer_syntax_uid == ExplicitVRBigEndian
    assert (header.rows, header.columns) == (48, 72)
    np.testing.assert_array_equal(pixels, expected)


def test_implicit_vr_little_endian(tmp_path):
    raw = textured_image(40, 56, seed=10, bits=12)
    path = write_dicom(tmp_path / "implicit.dcm", raw, bits_stored=12, transfer_syntax=ImplicitVRLittleEndian)
    pixels, header = read_dicom(path)
    assert header.transfer_syntax_uid == ImplicitVRLittleEndian
    assert (header.rows, header.columns, header.bits_stored) == (40, 56, 12)
    np.testing.assert_array_equal(pixels, read_dicom(write_dicom(tmp_path / "e.dcm", raw, bits_stored=12))[0])


def test_raw_dataset_without_preamble_is_read(tmp_path):
    raw = textured_image(32, 48, seed=11)
    ds = make_dataset(raw)
    del ds.file_meta
    path = tmp_path / "legacy.dcm"
    ds.save_as(path, implicit_vr=True, little_endian=True)
    assert path.read_bytes()[128:132] != b"DICM"
    pixels, header = read_dicom(path)
    assert header.transfer_syntax_uid == ImplicitVRLittleEndian
    np.testing.assert_array_equal(pixels, raw)


# ---------------------------------------------------------------------------------------------
# Bad input: exception type and message


def _multi_frame(path: Path) -> Path:
    frames = np.stack([textured_image(32, 32, seed=s, bits=12) for s in range(3)])
    return write_dicom(path, frames, bits_stored=12, NumberOfFrames=3)


def _rgb(path: Path) -> Path:
    return write_dicom(path, np.zeros((32, 32, 3), dtype=np.uint8), photometric="RGB")


def _no_pixel_data(path: Path) -> Path:
    ds = make_dataset(textured_image(32, 32))
    del ds.PixelData
    ds.save_as(path, enforce_file_format=True)
    return path


def _unsupported_syntax(path: Path) -> Path:
    ds = make_dataset(textured_image(32, 32))
    ds.file_meta.TransferSyntaxUID = MPEG2MPML
    ds.PixelData = encapsulate([b"\x00\x00\x01\xb3" + bytes(60)])
    ds.save_as(path, enforce_file_format=True)
    return path


def _text_file(path: Path) -> Path:
    path.write_text("patientId,x,y,width,height,Target\n" * 20)
    return path


def _empty(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def _cut(path: Path, keep_bytes: int) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[:keep_bytes])
    return path


def _jpeg_cut_in_pixel_data(path: Path) -> Path:
    write_jpeg_baseline_dicom(path, textured_image(64, 64, seed=12))
    return _cut(path, path.stat().st_size - 500)


def _native_cut_in_pixel_data(path: Path) -> Path:
    write_dicom(path, textured_image(64, 64, seed=12, bits=12), bits_stored=12)
    return _cut(path, path.stat().st_size - 1000)


def _cut_inside_a_header_value(path: Path) -> Path:
    write_jpeg_baseline_dicom(path, textured_image(64, 64, seed=12), patient_id="cut-here-patient-id")
    return _cut(path, path.read_bytes().index(b"cut-here") + 4)


def _cut_inside_an_element_header(path: Path) -> Path:
    write_dicom(path, textured_image(64, 64, seed=12))
    rows_tag = b"\x28\x00\x10\x00US"  # (0028,0010) Rows, explicit VR little endian
    return _cut(path, path.read_bytes().index(rows_tag) + 3)


@pytest.mark.parametrize(
    "make, fragments",
    [
        (_text_file, ["not a DICOM file", "no 'DICM' marker at byte 128"]),
        (_empty, ["empty file (0 bytes)"]),
        (_jpeg_cut_in_pixel_data, ["truncated file"]),
        (_native_cut_in_pixel_data, ["truncated file", "PixelData"]),
        (_cut_inside_a_header_value, ["truncated file", "PatientName (0010,0010)"]),
        (_cut_inside_an_element_header, ["truncated file", "ends inside the element header"]),
        (_no_pixel_data, ["no pixel data (PixelData tag absent)"]),
        (_rgb, ["RGB/colour DICOM not supported: chest radiographs are grayscale", "SamplesPerPixel 3"]),
        (_multi_frame, ["multi-frame DICOM not supported (NumberOfFrames = 3)"]),
        (_unsupported_syntax, ["unsupported transfer syntax", "1.2.840.10008.1.2.4.100"]),
    ],
    ids=lambda v: getattr(v, "__name__", "")[1:] if callable(v) else "",
)
def test_bad_files_raise_one_line_dicom_read_error(tmp_path, make, fragments):
    path = make(tmp_path / "bad.dcm")
    with pytest.raises(DicomReadError) as excinfo:
        read_dicom(path)
    _assert_one_line_error(excinfo, path, *fragments)
    assert excinfo.value.path == str(path)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.dcm"
    with pytest.raises(DicomReadError) as excinfo:
        read_dicom(path)
    _assert_one_line_error(excinfo, path, "cannot open")


def test_undecodable_jpeg_frame(tmp_path):
    path = write_jpeg_baseline_dicom(tmp_path / "junk.dcm", textured_image(32, 32))
    ds = pydicom.dcmread(path)
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xda" + bytes(range(256)) * 4 + b"\xff\xd9"])
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(DicomReadError) as excinfo:
        read_dicom(path)
    _assert_one_line_error(excinfo, path, "corrupt JPEG frame", "marker FF DA before any frame header (SOF)")


@pytest.mark.parametrize("make", [_jpeg_cut_in_pixel_data, _native_cut_in_pixel_data], ids=["jpeg", "native"])
def test_header_read_proves_the_pixel_data_complete(tmp_path, make):
    path = make(tmp_path / "cut.dcm")
    with pytest.raises(DicomReadError) as excinfo:
        read_dicom_header(path)  # the header itself is intact; the pixel data is not
    _assert_one_line_error(excinfo, path, "truncated file")
    with pytest.raises(DicomReadError, match="truncated file"):
        read_dicom_header(_cut_inside_a_header_value(tmp_path / "cut_header.dcm"))


# ---------------------------------------------------------------------------------------------
# Header fields


def test_rsna_like_header_fields(tmp_path):
    path = write_jpeg_baseline_dicom(
        tmp_path / "p.dcm",
        textured_image(64, 80),
        patient_id="abc-123",
        sex="M",
        age="148",
        view="AP",
        pixel_spacing=(0.139, 0.143),
    )
    header = read_dicom_header(path)
    assert isinstance(header, DicomHeader)
    assert header.path == str(path)
    assert header.patient_id == "abc-123"
    assert header.sop_instance_uid == pydicom.dcmread(path).SOPInstanceUID
    assert header.sex == "M"
    assert header.age_years == 148.0 and header.age_valid is False  # flagged, not dropped
    assert header.view_position == "AP"
    assert header.pixel_spacing_mm == (0.139, 0.143)  # (row, column)
    assert (header.rows, header.columns) == (64, 80)
    assert header.photometric_interpretation == "MONOCHROME2"
    assert (header.bits_allocated, header.bits_stored) == (8, 8)
    assert header.transfer_syntax_uid == JPEGBaseline8Bit
    assert header.modality == "CR"
    assert (header.number_of_frames, header.samples_per_pixel) == (1, 1)
    # read_dicom returns the same header
    assert read_dicom(path)[1] == header


def test_missing_optional_tags_are_none(tmp_path):
    ds = make_dataset(textured_image(32, 40, bits=12), bits_stored=12)
    del ds.PatientID, ds.Modality
    ds.save_as(tmp_path / "bare.dcm", enforce_file_format=True)
    header = read_dicom_header(tmp_path / "bare.dcm")
    assert header.patient_id == ""
    assert header.sex is None and header.age_years is None and header.age_valid is True
    assert header.view_position is None and header.pixel_spacing_mm is None and header.modality is None
    assert header.sop_instance_uid == ds.SOPInstanceUID


def test_header_fallbacks_series_description_and_imager_spacing(tmp_path):
    path = write_dicom(
        tmp_path / "f.dcm",
        textured_image(32, 32),
        SeriesDescription="view: ap",
        ImagerPixelSpacing=["0.2", "0.1"],
        PatientSex="X",
        PatientAge="006M",
    )
    header = read_dicom_header(path)
    assert header.view_position == "AP"
    assert header.pixel_spacing_mm == (0.2, 0.1)
    assert header.sex is None
    assert header.age_years == 0.5 and header.age_valid is True


def test_header_of_non_image_dataset_is_an_error(tmp_path):
    ds = make_dataset(textured_image(32, 32))
    del ds.Rows, ds.PixelData
    ds.save_as(tmp_path / "report.dcm", enforce_file_format=True)
    with pytest.raises(DicomReadError) as excinfo:
        read_dicom_header(tmp_path / "report.dcm")
    _assert_one_line_error(excinfo, tmp_path / "report.dcm", "not an image", "Rows (0028,0010)")


@pytest.mark.parametrize(
    "text, age, valid",
    [
        ("058Y", 58.0, True),
        ("006M", 0.5, True),
        ("010W", 70 / 365.25, True),
        ("003D", 3 / 365.25, True),
        ("58", 58.0, True),
        (" 58 ", 58.0, True),
        ("148", 148.0, False),
        ("120", 120.0, True),
        ("121Y", 121.0, False),
        ("-5", -5.0, False),
        ("", None, True),
        (None, None, True),
        ("abc", None, False),
        ("58Q", None, False),
    ],
)
def test_parse_age_years(text, age, valid):
    parsed, parsed_valid = parse_age_years(text)
    assert parsed_valid is valid
    if age is None:
        assert parsed is None
    else:
        assert math.isclose(parsed, age, rel_tol=1e-12)


# ---------------------------------------------------------------------------------------------
# Header scan of a folder


def _scan_folder(tmp_path: Path) -> list[Path]:
    paths = [
        write_jpeg_baseline_dicom(tmp_path / "a.dcm", textured_image(32, 32, seed=1), patient_id="a"),
        _text_file(tmp_path / "b.dcm"),
        write_jpeg_baseline_dicom(tmp_path / "c.dcm", textured_image(32, 48, seed=2), patient_id="c"),
        _rgb(tmp_path / "d.dcm"),
        _empty(tmp_path / "e.dcm"),
        write_jpeg_baseline_dicom(tmp_path / "f.dcm", textured_image(48, 32, seed=3), patient_id="f"),
    ]
    return paths


@pytest.mark.parametrize("workers", [1, 2])
def test_scan_reports_bad_files_and_returns_the_rest(tmp_path, workers):
    paths = _scan_folder(tmp_path)
    headers, bad = scan_dicom_headers(paths * 3 if workers > 1 else paths, workers=workers)
    expected_ids = ["a", "c", "f"] * (3 if workers > 1 else 1)
    assert [h.patient_id for h in headers] == expected_ids
    assert all(isinstance(b, BadFile) for b in bad)
    first_bad = bad[:3]
    assert [Path(b.path).name for b in first_bad] == ["b.dcm", "d.dcm", "e.dcm"]
    assert "not a DICOM file" in first_bad[0].reason
    assert "RGB/colour DICOM not supported" in first_bad[1].reason
    assert first_bad[2].reason == "empty file (0 bytes)"


def test_scan_without_support_check_keeps_colour_headers(tmp_path):
    headers, bad = scan_dicom_headers(_scan_folder(tmp_path), check_supported=False)
    assert [Path(h.path).name for h in headers] == ["a.dcm", "c.dcm", "d.dcm", "f.dcm"]
    assert headers[2].samples_per_pixel == 3
    assert [Path(b.path).name for b in bad] == ["b.dcm", "e.dcm"]


def test_jpeg_fixture_extra_tags_reach_the_file(tmp_path):
    # The fixture writes through data_prep.synth's writer and sets extra tags afterwards.
    path = write_jpeg_baseline_dicom(tmp_path / "p.dcm", textured_image(32, 32), Modality="DX", WindowCenter=100)
    ds = pydicom.dcmread(path)
    assert (ds.Modality, float(ds.WindowCenter)) == ("DX", 100.0)
    assert ds.file_meta.TransferSyntaxUID == JPEGBaseline8Bit


def test_the_header_carries_the_identity_a_derived_object_copies(tmp_path):
    path = write_dicom(
        tmp_path / "a.dcm",
        textured_image(8, 8),
        StudyInstanceUID="1.2.3",
        SeriesInstanceUID="1.2.3.4",
        PatientName="Doe^Jane",
        PatientBirthDate="19700101",
        StudyDate="20240102",
        AccessionNumber="A7",
        WindowCenter=128,
        WindowWidth=256,
    )
    identity = read_dicom_header(path).identity
    assert (identity.study_instance_uid, identity.series_instance_uid) == ("1.2.3", "1.2.3.4")
    assert identity.sop_class_uid == "1.2.840.10008.5.1.4.1.1.7"
    assert (identity.patient_name, identity.patient_birth_date, identity.accession_number) == (
        "Doe^Jane",
        "19700101",
        "A7",
    )
    assert (identity.window_center, identity.window_width, identity.frame_of_reference_uid) == (128.0, 256.0, None)
    bare = read_dicom_header(write_dicom(tmp_path / "b.dcm", textured_image(8, 8))).identity
    assert (bare.study_instance_uid, bare.patient_name, bare.window_center) == ("", "", None)


# ---------------------------------------------------------------------------------------------
# Verdicts under threads: truncation is proven from the file itself


STRESS_ROUNDS = 60


def test_concurrent_reads_give_every_file_its_own_verdict(tmp_path):
    """Many threads read a mix of cut and complete files, many rounds: every verdict is right.

    Truncation used to be detected by recording pydicom's warnings, which is process-global:
    one thread's 'End of file reached' landed in another thread's record, so complete files
    were rejected (and cut ones accepted) at random, about 5% of reads in a pool of 8.
    """
    complete = {
        "rsna_jpeg": write_jpeg_baseline_dicom(tmp_path / "rsna.dcm", textured_image(96, 80, seed=1)),
        "mono1_jpeg": write_jpeg_baseline_dicom(
            tmp_path / "m1.dcm", textured_image(64, 64, seed=2), photometric="MONOCHROME1"
        ),
        "12bit": write_dicom(tmp_path / "12.dcm", textured_image(80, 64, seed=3, bits=12), bits_stored=12),
        "16bit_mono1": write_dicom(
            tmp_path / "16.dcm", textured_image(64, 48, seed=4, bits=16), photometric="MONOCHROME1"
        ),
    }
    cut = {
        "cut_jpeg": _jpeg_cut_in_pixel_data(tmp_path / "cut_jpeg.dcm"),
        "cut_native": _native_cut_in_pixel_data(tmp_path / "cut_native.dcm"),
    }
    expected = {path: read_dicom(path)[0] for path in complete.values()}
    jobs = [*complete.values(), *cut.values()] * 4
    wrong: list[str] = []

    def verdict(path: Path) -> None:
        try:
            pixels, _ = read_dicom(path)
        except DicomReadError as exc:
            if path not in cut.values() or f"{path}: truncated file" not in str(exc):
                wrong.append(f"{path.name}: {exc}")
            return
        if path in cut.values() or not np.array_equal(pixels, expected[path]):
            wrong.append(f"{path.name}: accepted")

    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(STRESS_ROUNDS):
            list(pool.map(verdict, jobs))
    assert wrong == [], f"{len(wrong)} wrong verdicts of {STRESS_ROUNDS * len(jobs)}, e.g. {wrong[:3]}"


# ---------------------------------------------------------------------------------------------
# Pixel limits and consistency, checked before any decoder runs


def test_huge_sof_under_a_huge_header_is_refused_before_decoding(tmp_path, monkeypatch):
    path = write_jpeg_baseline_dicom(tmp_path / "huge.dcm", textured_image(64, 64))
    with_jpeg_sof_size(path, 60000, 60000, Rows=60000, Columns=60000)  # a hostile header
    monkeypatch.setattr(dicom_module, "decode_jpeg", lambda *a, **k: pytest.fail("decoder called"))
    monkeypatch.setattr(dicom_module, "_decode_with_pydicom", lambda *a, **k: pytest.fail("decoder called"))
    for read in (read_dicom, read_dicom_header):
        with pytest.raises(DicomReadError) as excinfo:
            read(path)
        _assert_one_line_error(
            excinfo,
            path,
            "image size 60000x60000 (3600.0 megapixels) exceeds the limit of 100 megapixels",
            "--max-megapixels",
        )


def test_huge_sof_under_a_normal_header_is_refused_by_the_header_scan_too(tmp_path):
    path = with_jpeg_sof_size(write_jpeg_baseline_dicom(tmp_path / "sof.dcm", textured_image(64, 64)), 30000, 30000)
    for read in (read_dicom, read_dicom_header):
        with pytest.raises(DicomReadError) as excinfo:
            read(path)
        _assert_one_line_error(excinfo, path, "JPEG frame: image size 30000x30000 (900.0 megapixels) exceeds the limit")
    headers, bad = scan_dicom_headers([path])
    assert headers == [] and "exceeds the limit" in bad[0].reason


def test_pixel_limit_is_a_keyword_of_the_readers(tmp_path):
    path = write_jpeg_baseline_dicom(tmp_path / "rsna.dcm", textured_image(64, 48))
    with pytest.raises(
        DicomReadError, match=r"image size 64x48 \(0.0 megapixels\) exceeds the limit of 0.001 megapixels"
    ):
        read_dicom(path, max_pixels=1000)
    assert read_dicom(path, max_pixels=64 * 48)[0].shape == (64, 48)
    assert scan_dicom_headers([path], max_pixels=1000)[1][0].reason.startswith("image size 64x48")


def _edit_jpeg(path: Path, **tags: object) -> Path:
    write_jpeg_baseline_dicom(path, textured_image(64, 64, seed=5))
    ds = pydicom.dcmread(path)
    for name, value in tags.items():
        setattr(ds, name, value)
    ds.save_as(path, enforce_file_format=True)
    return path


def _edit_native(path: Path, cut_pixel_bytes: int = 0, **tags: object) -> Path:
    ds = make_dataset(textured_image(32, 32, seed=6, bits=12), bits_stored=12)
    if cut_pixel_bytes:
        ds.PixelData = ds.PixelData[:-cut_pixel_bytes]
    for name, value in tags.items():
        setattr(ds, name, value)
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.parametrize(
    "make, fragments",
    [
        (lambda p: _edit_jpeg(p, Rows=128), ["JPEG frame is 64x64 but the header says 128x64"]),
        (lambda p: _edit_jpeg(p, Columns=32), ["JPEG frame is 64x64 but the header says 64x32"]),
        (
            lambda p: _edit_jpeg(p, BitsAllocated=16, BitsStored=16),
            ["JPEG frame has 8-bit samples but BitsAllocated is 16"],
        ),
        (lambda p: _edit_jpeg(p, BitsStored=12), ["BitsStored 12 is not within 1..BitsAllocated (8)"]),
        (lambda p: _edit_native(p, BitsStored=17), ["BitsStored 17 is not within 1..BitsAllocated (16)"]),
        (lambda p: _edit_native(p, BitsAllocated=12), ["BitsAllocated 12 is not 1 or a multiple of 8"]),
        (lambda p: _edit_native(p, HighBit=16), ["HighBit 16 is not within 0..BitsAllocated-1 (15)"]),
        (lambda p: _edit_native(p, PixelRepresentation=5), ["PixelRepresentation 5 is not 0 (unsigned) or 1"]),
        (lambda p: _edit_native(p, cut_pixel_bytes=1000), ["PixelData holds 1048 bytes", "needs 2048"]),
        (
            lambda p: _edit_native(p, Rows=64),
            ["PixelData holds 2048 bytes", "64x32 x 1 sample(s) x 16 bits needs 4096"],
        ),
        (lambda p: _edit_native(p, SamplesPerPixel=3), ["PixelData holds 2048 bytes", "needs 6144"]),
    ],
    ids=[
        "rows",
        "columns",
        "bits_allocated_jpeg",
        "bits_stored_jpeg",
        "bits_stored",
        "bits_allocated",
        "high_bit",
        "pixel_representation",
        "short_frame",
        "rows_native",
        "samples_per_pixel",
    ],
)
def test_inconsistent_pixel_description_is_one_line_before_decoding(tmp_path, make, fragments):
    path = make(tmp_path / "bad.dcm")
    for read in (read_dicom, read_dicom_header):
        with pytest.raises(DicomReadError) as excinfo:
            read(path)
        _assert_one_line_error(excinfo, path, *fragments)
        assert "broadcast" not in str(excinfo.value)


def test_photometric_interpretation_missing_is_one_line(tmp_path):
    path = _edit_jpeg(tmp_path / "nophot.dcm")
    ds = pydicom.dcmread(path)
    del ds.PhotometricInterpretation
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(DicomReadError) as excinfo:
        read_dicom(path)
    _assert_one_line_error(excinfo, path, "required tag PhotometricInterpretation (0028,0004) is absent")


# ---------------------------------------------------------------------------------------------
# Corrupt entropy-coded data, mislabelled files, FIFOs


def test_jpeg_with_corrupt_entropy_coded_data_is_refused(tmp_path):
    path = write_jpeg_baseline_dicom(tmp_path / "corrupt.dcm", textured_image(256, 256, seed=7))
    overwrite_middle(path)  # 64 bytes overwritten mid-file
    read_dicom_header(path)  # every header is intact: only decoding can find this
    with pytest.raises(DicomReadError) as excinfo:
        read_dicom(path)
    _assert_one_line_error(excinfo, path, "JPEG Baseline frame: corrupt or undecodable JPEG data: Corrupt JPEG data")


@pytest.mark.parametrize(
    "content, kind",
    [
        (cv2.imencode(".png", np.zeros((8, 8), np.uint8))[1].tobytes(), "a PNG file"),
        (cv2.imencode(".jpg", np.zeros((8, 8), np.uint8))[1].tobytes(), "a JPEG file"),
    ],
    ids=["png", "jpeg"],
)
def test_image_named_dcm_is_reported_as_what_it_is(tmp_path, content, kind):
    path = tmp_path / "scan.dcm"
    path.write_bytes(content)
    with pytest.raises(DicomReadError) as excinfo:
        read_dicom(path)
    _assert_one_line_error(excinfo, path, f"{kind}, not a DICOM (no 'DICM' marker at byte 128)")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")
def test_fifo_is_refused_at_once(tmp_path):
    fifo = tmp_path / "pipe.dcm"
    os.mkfifo(fifo)
    outcome: list[BaseException] = []
    reader = threading.Thread(target=lambda: outcome.extend(_raised(read_dicom, fifo)), daemon=True)
    reader.start()
    reader.join(timeout=5)
    assert not reader.is_alive(), "read_dicom blocked on a FIFO"
    assert isinstance(outcome[0], DicomReadError)
    assert "a FIFO (named pipe), not a regular file: refused" in str(outcome[0])


def _raised(read, path) -> list[BaseException]:
    try:
        read(path)
    except BaseException as exc:  # noqa: BLE001 - the test inspects whatever came out
        return [exc]
    return []
