"""detect.serve.sniff: the kind from the content, the declared size from the header alone."""

from __future__ import annotations

import cv2
import pytest

from detect.serve.sniff import BadUpload, UnsupportedUpload, check_declared_pixels, declared_size_px, sniff_kind
from tests.data_prep.dicom_fixtures import textured_image, write_dicom, write_jpeg_baseline_dicom


def test_kinds_by_magic_bytes(tmp_path):
    png = cv2.imencode(".png", textured_image(30, 40))[1].tobytes()
    jpeg = cv2.imencode(".jpg", textured_image(30, 40))[1].tobytes()
    dicom = write_jpeg_baseline_dicom(tmp_path / "a.dcm", textured_image(30, 40)).read_bytes()
    assert [sniff_kind(d) for d in (png, jpeg, dicom)] == ["png", "jpeg", "dicom"]
    assert [declared_size_px(d, k)[:3] for d, k in ((png, "png"), (jpeg, "jpeg"), (dicom, "dicom"))] == [
        (30, 40, 1)
    ] * 3
    for junk in (b"", b"GIF89a", b"BM\x00\x00", bytes(200), b"\x08\x00\x05\x00" + b"\xff" * 8):
        with pytest.raises(UnsupportedUpload, match="not a DICOM, PNG or JPEG file by its content"):
            sniff_kind(junk)


def test_declared_size_of_multiframe_dicom_counts_every_frame(tmp_path):
    data = write_dicom(tmp_path / "f.dcm", textured_image(20, 10), NumberOfFrames=3).read_bytes()
    assert declared_size_px(data, "dicom")[:3] == (20, 10, 3)


def test_truncated_headers_are_bad_uploads():
    with pytest.raises(BadUpload, match="PNG without its IHDR"):
        declared_size_px(b"\x89PNG\r\n\x1a\n\x00\x00", "png")
    with pytest.raises(BadUpload, match="no frame header"):
        declared_size_px(b"\xff\xd8\xff\xe0\x00\x10" + bytes(14) + b"\xff\xda\x00\x02", "jpeg")


def test_the_pixel_cap():
    check_declared_pixels(1024, 1024, 1, 64_000_000)
    with pytest.raises(BadUpload, match=r"declares 9000x9000 = 81.0 megapixels, above the server's limit of 64.0"):
        check_declared_pixels(9000, 9000, 1, 64_000_000)
    with pytest.raises(BadUpload, match=r"declares 5000x5000x3 = 75.0 megapixels"):
        check_declared_pixels(5000, 5000, 3, 64_000_000)
    with pytest.raises(BadUpload, match="empty size 0x10"):
        check_declared_pixels(0, 10, 1, 64_000_000)


def test_a_dicom_whose_jpeg_frame_is_larger_than_its_header_says(tmp_path):
    data = bytearray(write_jpeg_baseline_dicom(tmp_path / "a.dcm", textured_image(30, 40)).read_bytes())
    sof = data.index(b"\xff\xc0", data.rindex(b"\xe0\x7f\x10\x00"))
    data[sof + 5 : sof + 9] = (30000).to_bytes(2, "big") + (20000).to_bytes(2, "big")  # Rows/Columns still 30x40
    assert declared_size_px(bytes(data), "dicom")[:3] == (30000, 20000, 1)


def png_header(height: int, width: int, bit_depth: int, color_type: int) -> bytes:
    """A PNG of only its signature and IHDR (no image data): what the size checks read."""
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))


def test_the_decoded_bytes_cap_refuses_a_16_bit_rgba_png_under_the_pixel_cap():
    data = png_header(7999, 7999, 16, 6)  # 64.0 megapixels, 8 bytes each: 512 MB to decode
    size = declared_size_px(data, "png")
    assert size == (7999, 7999, 1, 4, 16)
    with pytest.raises(
        BadUpload,
        match=r"declares 7999x7999 x 4 channel\(s\) of 16 bits: 512 MB to decode, above the "
        r"server's limit of 128 MB",
    ):
        check_declared_pixels(*size[:3], 64_000_000, components=size.components, bits=size.bits)
    grey16 = declared_size_px(png_header(7999, 7999, 16, 0), "png")  # a 16-bit grey radiograph at the cap is fine
    check_declared_pixels(*grey16[:3], 64_000_000, components=grey16.components, bits=grey16.bits)


def test_the_server_answers_422_for_it(client):
    answer = client.post("/v1/predict", content=png_header(7999, 7999, 16, 6), headers={"content-type": "image/png"})
    assert answer.status_code == 422, answer.text
    assert "512 MB to decode" in answer.json()["error"]
