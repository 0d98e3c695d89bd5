"""data_prep.codestreams: sizes from stream headers before decoding, the limit, strict JPEG decoding."""

from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest
import simplejpeg

import data_prep.codestreams as codestreams
from data_prep.codestreams import (
    FrameSize,
    StreamError,
    decode_jpeg,
    j2k_frame_size,
    jpeg_frame_size,
    megapixels_to_pixels,
    pixel_limit_problem,
    png_size,
)
from data_prep.errors import ConfigError
from tests.data_prep.dicom_fixtures import textured_image


def _jpeg(height: int = 48, width: int = 64, channels: int = 1) -> bytes:
    image = textured_image(height, width, seed=1)
    if channels == 3:
        image = np.dstack([image, image // 2, 255 - image])
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


def _with_sof(data: bytes, height: int, width: int) -> bytes:
    out = bytearray(data)
    sof = out.find(b"\xff\xc0")
    out[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(out)


def test_jpeg_frame_size_reads_the_sof_and_stops_at_missing_bytes():
    data = _jpeg(48, 64)
    assert jpeg_frame_size(data) == FrameSize(height=48, width=64, components=1, bits=8)
    assert jpeg_frame_size(_jpeg(20, 30, channels=3)).components == 3
    assert jpeg_frame_size(data[: data.find(b"\xff\xc0") + 4]) is None  # cut inside the SOF
    with pytest.raises(StreamError, match="not a JPEG stream"):
        jpeg_frame_size(b"\x89PNG....")
    with pytest.raises(StreamError, match="marker FF DA before any frame header"):
        jpeg_frame_size(b"\xff\xd8\xff\xda\x00\x08")
    with pytest.raises(StreamError, match="claims 0x64"):
        jpeg_frame_size(_with_sof(data, 0, 64))  # height 0: 'defined later by a DNL marker'


def test_pixel_limit_problem_names_size_limit_and_fix():
    assert pixel_limit_problem(10_000, 10_000, 100_000_000) is None
    assert pixel_limit_problem(10_001, 10_000, 100_000_000) == (
        "image size 10001x10000 (100.0 megapixels) exceeds the limit of 100 megapixels "
        "(raise it with --max-megapixels or data.max_image_megapixels)"
    )


def test_megapixels_to_pixels():
    assert megapixels_to_pixels(100) == 100_000_000 and megapixels_to_pixels(0.0001) == 100
    for bad in (0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="--max-megapixels"):
            megapixels_to_pixels(bad)


def test_decode_jpeg_refuses_a_huge_sof_before_the_decoder_runs(monkeypatch):
    monkeypatch.setattr(simplejpeg, "decode_jpeg", lambda *a, **k: pytest.fail("the decoder was called"))
    with pytest.raises(StreamError, match=r"image size 60000x60000 \(3600.0 megapixels\) exceeds the limit"):
        decode_jpeg(_with_sof(_jpeg(), 60000, 60000))


def test_decode_jpeg_is_strict_about_corrupt_entropy_coded_data():
    data = bytearray(_jpeg(256, 256))
    middle = (data.find(b"\xff\xda") + data.rfind(b"\xff\xd9")) // 2
    data[middle : middle + 64] = bytes(range(64))
    assert cv2.imdecode(np.frombuffer(bytes(data), np.uint8), cv2.IMREAD_UNCHANGED) is not None  # OpenCV: "fine"
    with pytest.raises(StreamError, match="corrupt or undecodable JPEG data: Corrupt JPEG data") as excinfo:
        decode_jpeg(bytes(data))
    message = str(excinfo.value)
    assert "\n" not in message and message.count("Corrupt JPEG data") == 1  # libjpeg's message, once


def test_decode_jpeg_grey_and_colour_match_opencv():
    grey = _jpeg(40, 50)
    np.testing.assert_array_equal(decode_jpeg(grey), cv2.imdecode(np.frombuffer(grey, np.uint8), cv2.IMREAD_UNCHANGED))
    colour = _jpeg(40, 50, channels=3)
    decoded = decode_jpeg(colour)
    assert decoded.shape == (40, 50, 3)
    assert np.abs(decoded.astype(int) - cv2.imdecode(np.frombuffer(colour, np.uint8), cv2.IMREAD_COLOR)).max() <= 1
    with pytest.raises(StreamError, match="truncated JPEG"):
        decode_jpeg(grey[:-100])


def test_png_and_j2k_sizes_from_their_headers():
    png = cv2.imencode(".png", textured_image(30, 70))[1].tobytes()
    assert png_size(png) == FrameSize(height=30, width=70, components=1, bits=8)
    assert png_size(png[:20]) is None and png_size(b"junk") is None
    # A hand-built JPEG 2000 codestream header: SOC, SIZ with Xsiz=300, Ysiz=200, one 12-bit component.
    siz = struct.pack(">HHIIIIIIIIH", 41, 0, 300, 200, 0, 0, 300, 200, 0, 0, 1) + bytes([11, 1, 1])
    assert j2k_frame_size(b"\xff\x4f\xff\x51" + siz) == FrameSize(height=200, width=300, components=1, bits=12)
    assert j2k_frame_size(b"\xff\x4f\xff\x51" + siz[:10]) is None
    with pytest.raises(StreamError, match="claims 0x300"):
        j2k_frame_size(
            b"\xff\x4f\xff\x51" + struct.pack(">HHIIIIIIIIH", 41, 0, 300, 0, 0, 0, 1, 1, 0, 0, 1) + b"\x07\x01\x01"
        )
    assert codestreams.DEFAULT_MAX_IMAGE_PIXELS == 100_000_000


# ---------------------------------------------------------------------------------------------
# Reduced (DCT-domain) decoding and its bound against a full decode + area resize


@pytest.mark.parametrize(
    "size, min_shape, expected",
    [
        ((1024, 1024), None, 1),
        ((1024, 1024), (512, 512), 2),
        ((1024, 1024), (256, 256), 4),
        ((1024, 1024), (128, 128), 8),
        ((1024, 1024), (64, 64), 8),
        ((1024, 1024), (384, 384), 2),
        ((1024, 1024), (513, 513), 1),
        ((1000, 872), (128, 112), 4),
        ((777, 1023), (64, 84), 1),
        ((1024, 768), (512, 384), 2),
        ((1024, 768), (512, 385), 1),
    ],
)
def test_dct_scale_denominator_is_the_largest_exact_reduction_that_still_covers(size, min_shape, expected):
    assert codestreams.dct_scale_denominator(*size, min_shape) == expected


def _radiographs() -> list[np.ndarray]:
    from data_prep.synth.phantom import render_chest_radiograph

    images = []
    for seed, (height, width) in enumerate(((1024, 1024), (1000, 872), (1024, 768))):
        pixels, _ = render_chest_radiograph(
            np.random.default_rng(seed), height, width, opacities=1, abnormal_not_opacity=False
        )
        images.append(pixels)
    return images


def _gradients() -> list[np.ndarray]:
    yy, xx = np.mgrid[0:1024, 0:1024].astype(np.float64)
    linear = (xx + yy) / 2046.0 * 255.0
    radial = np.clip(255.0 - np.hypot(xx - 512, yy - 400) / 3.0, 0, 255)
    return [np.rint(linear).astype(np.uint8), np.rint(radial).astype(np.uint8)]


@pytest.mark.parametrize("kind", ["synthetic radiographs", "noise-free gradients"])
def test_reduced_decode_stays_within_the_stated_bound_of_full_decode_plus_area_resize(kind):
    from data_prep.geometry import letterbox_content_shape, letterbox_resize

    images = _radiographs() if kind == "synthetic radiographs" else _gradients()
    worst_max, worst_mean, reductions = 0, 0.0, set()
    for pixels in images:
        for quality in (95, 92, 80):
            data = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()
            full = decode_jpeg(data)
            for size_px in (512, 384, 256, 128, 64):
                min_shape = letterbox_content_shape(*full.shape, size_px)
                reduced = decode_jpeg(data, min_shape=min_shape)
                d = codestreams.dct_scale_denominator(*full.shape, min_shape)
                assert reduced.shape == (full.shape[0] // d, full.shape[1] // d)
                reductions.add(d)
                expected, scale = letterbox_resize(full, size_px)
                got, got_scale = letterbox_resize(reduced, size_px, full.shape)
                assert got_scale == scale
                difference = np.abs(got.astype(np.int16) - expected.astype(np.int16))
                worst_max = max(worst_max, int(difference.max()))
                worst_mean = max(worst_mean, float(difference.mean()))
    assert {2, 4, 8} <= reductions  # every DCT scale was exercised
    assert worst_max <= codestreams.REDUCED_DECODE_MAX_ABS_DIFF
    assert worst_mean <= codestreams.REDUCED_DECODE_MEAN_ABS_DIFF
    if kind == "noise-free gradients":  # nothing but rounding left
        assert worst_max <= 1


def test_reduced_decode_is_strict_and_checks_the_full_size_limit():
    data = bytearray(cv2.imencode(".jpg", textured_image(256, 256), [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
    with pytest.raises(StreamError, match="exceeds the limit"):
        decode_jpeg(bytes(data), min_shape=(32, 32), max_pixels=256 * 255)  # the 32 px output would fit
    scan = bytes(data).index(b"\xff\xda")
    data[scan + 400 : scan + 420] = b"\x00" * 20  # damaged entropy-coded data
    with pytest.raises(StreamError, match="corrupt or undecodable JPEG data"):
        decode_jpeg(bytes(data), min_shape=(32, 32))


def test_pixel_limit_problem_bounds_the_bytes_to_allocate_too():
    # 100 x 100 = the 10,000-pixel limit; the budget is 2 bytes a pixel: 20,000 bytes
    assert codestreams.pixel_limit_problem(100, 100, 10_000, components=1, bits=16) is None  # 16-bit grey fits
    problem = codestreams.pixel_limit_problem(100, 100, 10_000, components=4, bits=16)
    assert problem is not None and problem.startswith("decoding 100x100 x 4 channel(s) x 2 byte(s) needs 0 MB, above")
    assert "--max-megapixels" in problem
    assert codestreams.pixel_limit_problem(100, 100, 10_000, components=3, bits=8) is not None  # RGB: 3 bytes a pixel
    assert codestreams.pixel_limit_problem(100, 100, 10_000, bits=16, frames=2) is not None
    assert codestreams.decoded_bytes(7999, 7999, components=4, bits=16) == 7999 * 7999 * 8


def _png(pixels: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".png", pixels)
    assert ok
    return encoded.tobytes()


def test_every_reader_applies_the_bytes_bound(tmp_path):
    from data_prep.dicom import read_dicom
    from data_prep.errors import DicomReadError, ImageReadError
    from data_prep.images import read_image
    from tests.data_prep.dicom_fixtures import write_dicom

    rgba16 = np.full((100, 100, 4), 30000, np.uint16)
    (tmp_path / "rgba16.png").write_bytes(_png(rgba16))
    with pytest.raises(ImageReadError, match=r"rgba16.png: decoding 100x100 x 4 channel\(s\) x 2 byte\(s\)"):
        read_image(tmp_path / "rgba16.png", max_pixels=10_000)
    (tmp_path / "grey16.png").write_bytes(_png(np.full((100, 100), 30000, np.uint16)))
    assert read_image(tmp_path / "grey16.png", max_pixels=10_000).shape == (100, 100)
    (tmp_path / "palette_free_rgb.png").write_bytes(_png(np.zeros((100, 100, 3), np.uint8)))
    with pytest.raises(ImageReadError, match=r"x 3 channel\(s\) x 1 byte\(s\)"):
        read_image(tmp_path / "palette_free_rgb.png", max_pixels=10_000)
    rgb_jpeg = simplejpeg.encode_jpeg(np.zeros((96, 96, 3), np.uint8), colorspace="RGB")
    with pytest.raises(codestreams.StreamError, match=r"decoding 96x96 x 3 channel\(s\) x 1 byte\(s\)"):
        codestreams.decode_jpeg(rgb_jpeg, max_pixels=96 * 96)
    dicom = write_dicom(tmp_path / "frames.dcm", textured_image(100, 100, bits=12).astype(np.uint16), NumberOfFrames=2)
    with pytest.raises(DicomReadError, match=r"decoding 100x100 x 1 channel\(s\) x 2 byte\(s\) x 2 frames"):
        read_dicom(dicom, max_pixels=10_000)
