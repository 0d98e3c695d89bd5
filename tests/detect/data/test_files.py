"""detect.data.files: reading the files a user points at, by content, in batches."""

import cv2
import pytest

from data_prep.errors import DetectError
from data_prep.records import BadFile
from detect.data.files import default_read_workers, iter_loaded_batches, load_image
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


def _recording_reader(monkeypatch, delays_s=None):
    """Replace the per-file reader: record which thread read each file and how many batches were
    read ahead of the consumer; file i takes delays_s[i] seconds (later files faster: order test)."""
    import threading
    import time

    from detect.data import files as files_module

    seen = {"threads": set(), "started": []}
    lock = threading.Lock()

    def fake_load(path, max_pixels):
        with lock:
            seen["threads"].add(threading.current_thread().name)
            seen["started"].append(int(path.stem))
        if delays_s is not None:
            time.sleep(delays_s[int(path.stem)])
        return BadFile(path=str(path), reason=f"read {path.stem}")

    monkeypatch.setattr(files_module, "load_or_fail", fake_load)
    return seen


def test_outputs_keep_input_order_when_later_files_are_read_first(monkeypatch, tmp_path):
    paths = [tmp_path / f"{i}.dcm" for i in range(12)]
    _recording_reader(monkeypatch, delays_s=[0.02 * (12 - i) / 12 for i in range(12)])
    items = [item for batch in iter_loaded_batches(paths, batch_size=3, workers=4) for item in batch]
    assert [item.reason for item in items] == [f"read {i}" for i in range(12)]


def test_read_ahead_is_bounded_to_prefetch_batches(monkeypatch, tmp_path):
    import time

    paths = [tmp_path / f"{i}.dcm" for i in range(20)]
    seen = _recording_reader(monkeypatch)
    batches = iter_loaded_batches(paths, batch_size=2, workers=2, prefetch_batches=2)
    first = next(batches)
    time.sleep(0.2)  # the readers have all the time they want: only the bounded window is read
    assert [item.reason for item in first] == ["read 0", "read 1"]
    assert sorted(seen["started"]) == list(range(6))  # the batch handed out + 2 batches ahead
    batches.close()  # stopping early cancels the read-ahead instead of reading the rest
    assert len(seen["started"]) <= 6


def test_zero_workers_reads_in_the_calling_thread_only_when_asked(monkeypatch, tmp_path):
    import threading

    paths = [tmp_path / f"{i}.dcm" for i in range(5)]
    seen = _recording_reader(monkeypatch)
    batches = iter_loaded_batches(paths, batch_size=2, workers=0)
    assert [item.reason for item in next(batches)] == ["read 0", "read 1"]
    assert seen["started"] == [0, 1]  # nothing read ahead: the serial baseline
    assert [len(b) for b in batches] == [2, 1]
    assert seen["threads"] == {threading.current_thread().name}


@pytest.mark.parametrize(
    ("workers", "prefetch", "message"), [(-1, 2, "workers must be >= 0"), (1, 0, "prefetch_batches must be >= 1")]
)
def test_bad_reader_settings_are_refused(tmp_path, workers, prefetch, message):
    with pytest.raises(ValueError, match=message):
        next(iter_loaded_batches([tmp_path / "a.png"], 1, workers, prefetch_batches=prefetch))


@pytest.mark.parametrize(
    ("device", "cores", "expected"),
    [("cuda", 1, 1), ("cuda", 2, 1), ("cuda", 4, 3), ("cuda", 16, 8), ("cuda", 64, 8), ("cpu", 2, 1), ("cpu", 16, 1)],
)
def test_default_read_workers_leaves_the_cores_to_the_model(device, cores, expected):
    assert default_read_workers(device, cores) == expected
