"""detect.data.files: reading the files a user points at, by content, in batches."""
import cv2
import pytest

from data_prep.errors import DetectError
from data_prep.records import BadFile
from detect.data.files import iter_loaded_batches, load_image
from tests.data_prep.dicom_fixtures import textured_image


def test_load_image_reports_a_missing_file(tmp_path):
    with pytest.raises(DetectError, match="gone.png: file not found"):
        load_image(tmp_path / "gone.png")


def test_batches_keep_order_and_turn_bad_files_into_bad_file_entries(tmp_path):
    paths = []
    for i in range(5):
        path = tmp_path / f"{i}.png"
        cv2.imwrite(str(path), textured_image(20 + i, 30, seed=i))
        paths.append(path)
    (tmp_path / "2.png").write_bytes(b"not a png")
    batches = list(iter_loaded_batches(paths, batch_size=2, workers=2))
    assert [len(b) for b in batches] == [2, 2, 1]
    items = [item for batch in batches for item in batch]
    assert isinstance(items[2], BadFile) and items[2].path == str(tmp_path / "2.png")
    assert [item.height_px for i, item in enumerate(items) if i != 2] == [20, 21, 23, 24]


def test_load_image_for_a_model_size_keeps_the_original_size(tmp_path):
    path = tmp_path / "a.jpeg"
    cv2.imwrite(str(path), textured_image(256, 128))
    full = load_image(path)
    reduced = load_image(path, target_size_px=64)
    assert full.decoded_from_hw is None and full.original_hw == (256, 128)
    assert reduced.pixels.shape == (64, 32) and reduced.decoded_from_hw == (256, 128)
    assert (reduced.height_px, reduced.width_px) == (full.height_px, full.width_px) == (256, 128)
    (batch,) = list(iter_loaded_batches([path], 1, 1, target_size_px=64))
    assert batch[0].pixels.shape == (64, 32) and batch[0].decoded_from_hw == (256, 128)
