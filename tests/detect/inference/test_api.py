"""detect.Detector: the Python API gives exactly the entries `detect infer` writes."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from data_prep.errors import DetectError
from detect import Detector
from detect.inference.batch import run_inference
from tests.data_prep.dicom_fixtures import textured_image, write_jpeg_baseline_dicom
from tests.detect.inference.test_batch import save_tiny_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "best.pt")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("in")
    dicom = write_jpeg_baseline_dicom(folder / "a.dcm", textured_image(96, 96, seed=1), patient_id="pa")
    png = folder / "wide.png"
    cv2.imwrite(str(png), textured_image(60, 150, seed=3))
    bad = folder / "bad.dcm"
    bad.write_bytes(b"not a dicom")
    return dicom, png, bad


def test_predict_and_predict_many_equal_what_detect_infer_writes(tmp_path, checkpoint, images):
    run_inference(list(images), out_path=tmp_path / "boxes.json", checkpoint=checkpoint, device="cpu", batch_size=1)
    written = json.loads((tmp_path / "boxes.json").read_text())["images"]
    detector = Detector.from_checkpoint(checkpoint, device="cpu")
    assert detector.predict(images[0]) == written[0]
    assert detector.predict(str(images[1])) == written[1]
    many = detector.predict_many(images, batch_size=1)
    assert not isinstance(many, list)  # an iterator: a caller streams through an archive
    assert list(many) == written
    assert written[2]["error"] and written[2]["boxes"] is None


def test_predict_an_array(checkpoint, images):
    detector = Detector.from_checkpoint(checkpoint, device="cpu")
    pixels = cv2.imread(str(images[1]), cv2.IMREAD_GRAYSCALE)
    from_array = detector.predict(pixels)
    from_file = detector.predict(images[1])
    assert from_array["source"] == "<array>" and from_array["boxes"] == from_file["boxes"]
    assert from_array["operating_point"]["dataset"] == "kermany"  # not a DICOM: the Kermany point
    rgb = detector.predict(np.repeat(pixels[:, :, None], 3, axis=2))
    assert rgb["pneumonia_probability"] == from_array["pneumonia_probability"]


def test_bad_input_is_a_one_line_error(checkpoint, images):
    detector = Detector.from_checkpoint(checkpoint, device="cpu")
    with pytest.raises(DetectError, match=r"bad\.dcm: not a DICOM file"):
        detector.predict(images[2])
    with pytest.raises(DetectError, match=r"must be uint8 \(0-255, display orientation\), got float32"):
        detector.predict(np.zeros((8, 8), dtype=np.float32))
    with pytest.raises(DetectError, match=r"must be \[H, W\] or \[H, W, 3\], got shape \(8,\)"):
        detector.predict(np.zeros(8, dtype=np.uint8))
    with pytest.raises(DetectError, match="the checkpoint stores no chexpert|'chexpert' is unknown"):
        Detector.from_checkpoint(checkpoint, device="cpu", threshold_from="chexpert")


@pytest.mark.parametrize("tta", [False, True])
def test_reader_threads_letterbox_ahead_and_predict_as_predict_raw(checkpoint, images, tta):
    """iter_predictions letterboxes in the reader threads (not the predicting one) and gives, with
    and without TTA, exactly what the predictor's predict_raw gives for the same pixels."""
    import threading

    from detect.data.files import load_image
    from detect.inference.api import PipelineTimes
    from detect.predictions import PostprocessSettings

    detector = Detector.from_checkpoint(checkpoint, device="cpu", settings=PostprocessSettings(tta=tta))
    predictor = detector.loaded.predictor
    prepared_in: list[str] = []
    original = predictor.prepare_views

    def recording(pixels, original_hw=None):
        prepared_in.append(threading.current_thread().name)
        return original(pixels, original_hw)

    predictor.prepare_views = recording
    times = PipelineTimes()
    results = list(detector.iter_predictions(list(images), batch_size=1, workers=2, times=times))
    assert prepared_in and all(name.startswith("detect-read") for name in prepared_in) and len(prepared_in) == 2
    assert times.n_images == 2 and [type(item).__name__ for item, _ in results] == [
        "LoadedImage",
        "LoadedImage",
        "BadFile",
    ]
    for path, (_, prediction) in zip(images[:2], results):
        image = load_image(path, target_size_px=predictor.image_size_px)  # read for the model's size, as infer reads
        raw = predictor.predict_raw([image.pixels], [image.decoded_from_hw])[0]
        assert np.array_equal(prediction.scores, detector.finalize(raw, image).scores)
        assert prediction.pneumonia_probability == pytest.approx(raw.pneumonia_probability, abs=1e-6)
