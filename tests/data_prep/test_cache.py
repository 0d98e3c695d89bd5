"""The letterbox PNG cache: exact pixels, reuse of complete files, bad files reported, clear errors."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from data_prep.cache import build_cache, is_complete_png, load_cached_image
from data_prep.codestreams import dct_scale_denominator, decode_jpeg
from data_prep.dicom import read_dicom
from data_prep.errors import ImageReadError
from data_prep.geometry import letterbox_content_shape, letterbox_resize
from data_prep.images import read_image
from data_prep.manifest import PreparedDataset
from data_prep.records import BadFile, ImageRecord
from tests.data_prep.dicom_fixtures import textured_image, write_jpeg_baseline_dicom

SIZE_PX = 48


def kermany_record(image_id: str, height: int, width: int) -> ImageRecord:
    return ImageRecord(
        image_id=image_id,
        dataset="kermany",
        path=f"chest_xray/{image_id}.jpeg",
        patient_id=image_id.split("/")[-1],
        target=0,
        has_box_labels=False,
        subtype="normal",
        height=height,
        width=width,
        source_split="train",
    )


def build_dataset(root: Path, *, with_bad: bool = True) -> PreparedDataset:
    """Five JPEGs (tall, wide, RGB, square, one of 200 px to shrink) + optionally a corrupt one and a size liar."""
    root.mkdir(parents=True, exist_ok=True)
    shapes = {
        "train/NORMAL/IM-0001-0001": (80, 60),
        "train/NORMAL/IM-0002-0001": (50, 100),
        "train/NORMAL/IM-0003-0001": (64, 64, 3),
        "train/NORMAL/IM-0004-0001": (30, 30),
        "train/NORMAL/IM-0005-0001": (200, 150),
    }
    records = []
    for i, (image_id, shape) in enumerate(shapes.items()):
        path = root / "chest_xray" / f"{image_id}.jpeg"
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = textured_image(shape[0], shape[1], seed=i)
        if len(shape) == 3:
            pixels = np.dstack([pixels] * 3)
        cv2.imwrite(str(path), pixels)
        records.append(kermany_record(image_id, shape[0], shape[1]))
    if with_bad:
        (root / "chest_xray/train/NORMAL/IM-0009-0001.jpeg").write_bytes(b"not a jpeg at all")
        records.append(kermany_record("train/NORMAL/IM-0009-0001", 64, 64))
        cv2.imwrite(str(root / "chest_xray/train/NORMAL/IM-0010-0001.jpeg"), textured_image(40, 40))
        records.append(kermany_record("train/NORMAL/IM-0010-0001", 64, 64))  # manifest says 64x64, file is 40x40
    return PreparedDataset(dataset="kermany", data_root=root, records=records, prepared_dir=root / "detect_prepared")


def test_cache_holds_letterboxed_pixels_exactly(tmp_path):
    prepared = build_dataset(tmp_path / "data", with_bad=False)
    result = build_cache(prepared, SIZE_PX)
    assert (result.n_images, result.n_written, result.n_skipped, result.bad_files) == (5, 5, 0, [])
    assert result.cache_dir == tmp_path / "data" / "detect_prepared" / "cache" / str(SIZE_PX)
    reduced = []
    for record in prepared.records:
        cached = load_cached_image(prepared.cached_image_path(record.image_id, SIZE_PX))
        assert cached.shape == (SIZE_PX, SIZE_PX) and cached.dtype == np.uint8
        source = cv2.imread(str(prepared.image_path(record)), cv2.IMREAD_GRAYSCALE)
        content_shape = letterbox_content_shape(*source.shape, SIZE_PX)
        if dct_scale_denominator(*source.shape, content_shape) == 1:
            expected, _ = letterbox_resize(source, SIZE_PX)
        else:  # 50x100 and 200x150 -> 48 px: decoded at 1/2 DCT scale, then area-resized
            reduced.append(record.image_id)
            decoded = decode_jpeg(prepared.image_path(record).read_bytes(), min_shape=content_shape)
            decoded = decoded if decoded.ndim == 2 else cv2.cvtColor(decoded, cv2.COLOR_BGR2GRAY)
            assert decoded.shape == (source.shape[0] // 2, source.shape[1] // 2)
            expected, _ = letterbox_resize(decoded, SIZE_PX, source.shape)
        np.testing.assert_array_equal(cached, expected)  # PNG is lossless
    assert reduced == ["train/NORMAL/IM-0002-0001", "train/NORMAL/IM-0005-0001"]
    # 80x60 (h x w): scale 48/80 = 0.6 -> 48x36 placed top-left, columns 36.. padded black
    tall = load_cached_image(prepared.cached_image_path("train/NORMAL/IM-0001-0001", SIZE_PX))
    assert tall[:, 36:].max() == 0 and tall[:, :36].max() > 0
    # 50x100: scale 0.48 -> 24x48, rows 24.. black
    wide = load_cached_image(prepared.cached_image_path("train/NORMAL/IM-0002-0001", SIZE_PX))
    assert wide[24:, :].max() == 0 and wide[:24, :].max() > 0


@pytest.mark.filterwarnings("ignore:Invalid value for VR AS")
def test_dicom_source_is_cached(tmp_path):
    root = tmp_path / "rsna"
    (root / "stage_2_train_images").mkdir(parents=True)
    pixels = textured_image(96, 96, seed=7)
    write_jpeg_baseline_dicom(root / "stage_2_train_images" / "p1.dcm", pixels, patient_id="p1", quality=100)
    record = ImageRecord(
        image_id="p1",
        dataset="rsna",
        path="stage_2_train_images/p1.dcm",
        patient_id="p1",
        target=0,
        has_box_labels=True,
        rsna_class="Normal",
        height=96,
        width=96,
    )
    prepared = PreparedDataset(dataset="rsna", data_root=root, records=[record], prepared_dir=tmp_path / "prep")
    result = build_cache(prepared, 32)
    assert (result.n_written, result.bad_files) == (1, [])
    cached = load_cached_image(prepared.cached_image_path("p1", 32))
    expected, scale = letterbox_resize(pixels, 32)
    assert scale == pytest.approx(1 / 3)
    # 96 -> 32 px: the frame is decoded at 1/2 DCT scale (48 px), then area-resized
    reduced, header = read_dicom(root / "stage_2_train_images" / "p1.dcm", target_size_px=32)
    assert reduced.shape == (48, 48) and (header.rows, header.columns) == (96, 96)
    np.testing.assert_array_equal(cached, letterbox_resize(reduced, 32, (96, 96))[0])
    # JPEG quality 100 is still lossy, and the DCT-domain average is not the area average of
    # this noisy texture: close on average, a hard edge's step at most.
    difference = np.abs(cached.astype(int) - expected.astype(int))
    assert difference.mean() <= 2.5 and difference.max() <= 16


def test_bad_files_are_reported_not_fatal(tmp_path):
    prepared = build_dataset(tmp_path / "data")
    result = build_cache(prepared, SIZE_PX)
    assert (result.n_written, result.n_skipped) == (5, 0)
    assert [b.path for b in result.bad_files] == [
        "chest_xray/train/NORMAL/IM-0009-0001.jpeg",
        "chest_xray/train/NORMAL/IM-0010-0001.jpeg",
    ]
    with pytest.raises(ImageReadError) as info:
        read_image(prepared.data_root / "chest_xray/train/NORMAL/IM-0009-0001.jpeg")
    assert result.bad_files[0].reason == info.value.reason  # read_image's reason, passed through
    assert result.bad_files[1] == BadFile(
        "chest_xray/train/NORMAL/IM-0010-0001.jpeg", "decoded size 40x40 differs from the header's 64x64"
    )
    assert not prepared.cached_image_path("train/NORMAL/IM-0009-0001", SIZE_PX).exists()


def test_second_build_reuses_complete_files_and_redoes_truncated_ones(tmp_path):
    prepared = build_dataset(tmp_path / "data", with_bad=False)
    build_cache(prepared, SIZE_PX)
    paths = [prepared.cached_image_path(r.image_id, SIZE_PX) for r in prepared.records]
    stamps = {p: p.stat().st_mtime_ns for p in paths}
    again = build_cache(prepared, SIZE_PX)
    assert (again.n_written, again.n_skipped) == (0, 5)
    assert {p: p.stat().st_mtime_ns for p in paths} == stamps  # untouched

    data = paths[0].read_bytes()
    paths[0].write_bytes(data[: len(data) // 2])  # an interrupted write
    third = build_cache(prepared, SIZE_PX)
    assert (third.n_written, third.n_skipped) == (1, 4)
    assert paths[0].read_bytes() == data
    # another size is another folder, built from scratch
    assert build_cache(prepared, 32).n_written == 5
    assert not list(Path(prepared.prepared_dir).rglob("*.tmp"))


def test_process_pool_writes_the_same_bytes(tmp_path):
    one = build_dataset(tmp_path / "one")
    two = build_dataset(tmp_path / "two")
    # 40 more images so that the pool gets several chunks
    for i in range(40):
        image_id = f"train/NORMAL/IM-{100 + i:04d}-0001"
        for prepared in (one, two):
            cv2.imwrite(str(prepared.data_root / "chest_xray" / f"{image_id}.jpeg"), textured_image(40, 56, seed=i))
            prepared.records.append(kermany_record(image_id, 40, 56))
    serial = build_cache(one, SIZE_PX, workers=1)
    pooled = build_cache(two, SIZE_PX, workers=2)
    assert (serial.n_written, len(serial.bad_files)) == (pooled.n_written, len(pooled.bad_files)) == (45, 2)
    assert serial.bad_files == pooled.bad_files
    for record in one.records[:5] + one.records[-40:]:
        a = one.cached_image_path(record.image_id, SIZE_PX).read_bytes()
        b = two.cached_image_path(record.image_id, SIZE_PX).read_bytes()
        assert a == b


def test_is_complete_png(tmp_path):
    path = tmp_path / "x.png"
    cv2.imwrite(str(path), np.zeros((16, 16), np.uint8))
    assert is_complete_png(path, 16)
    assert not is_complete_png(path, 32)
    assert not is_complete_png(tmp_path / "missing.png", 16)
    path.write_bytes(path.read_bytes()[:-4])
    assert not is_complete_png(path, 16)


def test_load_cached_image_errors(tmp_path):
    with pytest.raises(ImageReadError) as info:
        load_cached_image(tmp_path / "nope.png")
    assert str(info.value) == f"{tmp_path / 'nope.png'}: cached image not found: run `detect prepare --cache`"
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(8))
    with pytest.raises(ImageReadError, match="cannot decode the cached PNG: delete it"):
        load_cached_image(garbage)
