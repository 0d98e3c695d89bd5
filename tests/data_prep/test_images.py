"""data_prep.images: PNG/JPEG to grayscale uint8, DICOM sniffing and the dispatch."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from data_prep.errors import DicomReadError, ImageReadError
from data_prep.images import is_dicom_file, read_any_image, read_image
from data_prep.records import DicomHeader
from tests.data_prep.dicom_fixtures import make_dataset, textured_image, write_jpeg_baseline_dicom


def _write(path: Path, image: np.ndarray, *params: int) -> Path:
    ok, encoded = cv2.imencode(path.suffix, image, list(params))
    assert ok
    path.write_bytes(encoded.tobytes())
    return path


def _assert_image_error(excinfo: pytest.ExceptionInfo, path: Path, *fragments: str) -> None:
    message = str(excinfo.value)
    assert message.startswith(f"{path}: ") and "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message


def test_grayscale_png_is_read_exactly(tmp_path):
    image = textured_image(70, 110, seed=1)
    pixels = read_image(_write(tmp_path / "x.png", image))
    assert pixels.dtype == np.uint8 and pixels.shape == (70, 110)
    np.testing.assert_array_equal(pixels, image)


def test_grayscale_jpeg_keeps_shape_and_values(tmp_path):
    image = textured_image(96, 128, seed=2)
    pixels = read_image(_write(tmp_path / "person1_bacteria_1.jpeg", image, cv2.IMWRITE_JPEG_QUALITY, 95))
    assert pixels.shape == (96, 128) and pixels.dtype == np.uint8
    assert np.abs(pixels.astype(int) - image.astype(int)).mean() < 4.0


def test_three_channel_bgr_to_gray_hand_worked(tmp_path):
    # OpenCV order is BGR; BT.601 weights 0.299 R + 0.587 G + 0.114 B:
    # blue 255 -> 29.07 -> 29, green 255 -> 149.69 -> 150, red 255 -> 76.25 -> 76, equal -> same.
    bgr = np.zeros((2, 2, 3), dtype=np.uint8)
    bgr[0, 0] = (255, 0, 0)
    bgr[0, 1] = (0, 255, 0)
    bgr[1, 0] = (0, 0, 255)
    bgr[1, 1] = (120, 120, 120)
    pixels = read_image(_write(tmp_path / "rgb.png", bgr))
    np.testing.assert_array_equal(pixels, [[29, 150], [76, 120]])


def test_rgba_png_ignores_alpha(tmp_path):
    bgra = np.zeros((2, 3, 4), dtype=np.uint8)
    bgra[..., :3] = 90
    bgra[..., 3] = np.array([[0, 128, 255], [255, 255, 0]])
    np.testing.assert_array_equal(read_image(_write(tmp_path / "rgba.png", bgra)), np.full((2, 3), 90))


def test_16bit_png_scaled_min_max_to_uint8(tmp_path):
    # (x - 1000) / 4000 * 255: 2000 -> 63.75 -> 64, 4200 -> 204
    image = np.array([[1000, 2000], [4200, 5000]], dtype=np.uint16)
    pixels = read_image(_write(tmp_path / "deep.png", image))
    assert pixels.dtype == np.uint8
    np.testing.assert_array_equal(pixels, [[0, 64], [204, 255]])


def test_kermany_junk_and_empty_files(tmp_path):
    junk = tmp_path / ".DS_Store"
    junk.write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(200))
    with pytest.raises(ImageReadError) as excinfo:
        read_image(junk)
    _assert_image_error(excinfo, junk, "unknown content, not a PNG/JPEG image")

    empty = tmp_path / "empty.jpeg"
    empty.write_bytes(b"")
    with pytest.raises(ImageReadError) as excinfo:
        read_image(empty)
    _assert_image_error(excinfo, empty, "empty file (0 bytes)")

    missing = tmp_path / "missing.jpeg"
    with pytest.raises(ImageReadError) as excinfo:
        read_image(missing)
    _assert_image_error(excinfo, missing, "cannot open")


def test_truncated_jpeg_and_png(tmp_path):
    image = textured_image(64, 64, seed=3)
    jpeg = _write(tmp_path / "cut.jpeg", image)
    jpeg.write_bytes(jpeg.read_bytes()[:-200])
    with pytest.raises(ImageReadError) as excinfo:
        read_image(jpeg)
    _assert_image_error(excinfo, jpeg, "truncated JPEG", "no end-of-image marker")

    png = _write(tmp_path / "cut.png", image)
    png.write_bytes(png.read_bytes()[: png.stat().st_size // 2])
    with pytest.raises(ImageReadError) as excinfo:
        read_image(png)
    _assert_image_error(excinfo, png, "undecodable PNG", "truncated or corrupt")


def test_is_dicom_file(tmp_path):
    dcm = write_jpeg_baseline_dicom(tmp_path / "no_suffix", textured_image(32, 32))
    assert is_dicom_file(dcm)  # the 'DICM' marker, whatever the name
    raw = make_dataset(textured_image(32, 32))
    del raw.file_meta
    raw.save_as(tmp_path / "legacy.dcm", implicit_vr=True, little_endian=True)
    assert is_dicom_file(tmp_path / "legacy.dcm")  # no preamble, but a .dcm that parses
    png = _write(tmp_path / "x.png", textured_image(16, 16))
    assert not is_dicom_file(png)
    fake = tmp_path / "fake.dcm"
    fake.write_text("not dicom at all")
    assert not is_dicom_file(fake)
    assert not is_dicom_file(tmp_path / "missing.dcm")


def test_read_any_image_dispatches(tmp_path):
    image = textured_image(48, 64, seed=4)
    pixels, header = read_any_image(write_jpeg_baseline_dicom(tmp_path / "p.dcm", image))
    assert isinstance(header, DicomHeader) and pixels.shape == (48, 64)

    pixels, header = read_any_image(_write(tmp_path / "k.png", image))
    assert header is None
    np.testing.assert_array_equal(pixels, image)

    fake = tmp_path / "fake.dcm"
    fake.write_text("not dicom at all")
    with pytest.raises(DicomReadError, match="not a DICOM file"):
        read_any_image(fake)
    junk = tmp_path / "junk.jpeg"
    junk.write_text("not an image")
    with pytest.raises(ImageReadError, match="not a PNG/JPEG image"):
        read_any_image(junk)


# ---------------------------------------------------------------------------------------------
# read_any_image_sized: decoded for a letterbox size, with the original size beside it


def test_sized_read_of_a_dicom_decodes_at_a_dct_scale_and_keeps_the_original_size(tmp_path):
    from data_prep.images import read_any_image_sized

    path = write_jpeg_baseline_dicom(tmp_path / "a.dcm", textured_image(256, 192))
    for size_px, reduction in ((256, 1), (128, 2), (64, 4), (32, 8), (16, 8)):
        image = read_any_image_sized(path, size_px)
        assert image.original_hw == (256, 192) and image.header.rows == 256 and image.header.columns == 192
        assert image.pixels.shape == (256 // reduction, 192 // reduction) and image.reduction == reduction
    full, _ = read_any_image(path)
    np.testing.assert_array_equal(read_any_image_sized(path, 256).pixels, full)


def test_sized_read_of_jpeg_and_png(tmp_path):
    from data_prep.images import read_any_image_sized

    pixels = textured_image(120, 200)
    jpeg = read_any_image_sized(_write(tmp_path / "a.jpeg", pixels), 50)
    # the 50 px letterbox holds 30x50 of it: exactly the 1/4 scale (1/8 would not divide 120 x 200)
    assert jpeg.original_hw == (120, 200) and jpeg.pixels.shape == (30, 50) and jpeg.header is None
    png = read_any_image_sized(_write(tmp_path / "a.png", pixels), 50)
    assert png.original_hw == (120, 200) and png.pixels.shape == (120, 200)  # PNG has no DCT: full size
    with pytest.raises(ValueError, match="target_size_px"):
        read_any_image_sized(tmp_path / "a.png", 0)
