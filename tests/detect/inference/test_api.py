"""detect.Detector: every input a user holds, a typed Prediction, exactly the entries `detect infer` writes."""

from __future__ import annotations

import json
import threading

import cv2
import numpy as np
import pydicom
import pytest
import torch
from PIL import Image

from data_prep.errors import DetectError
from detect import Detector, InferenceSettings, Prediction
from detect.data.files import load_image
from detect.inference.api import PipelineTimes
from detect.inference.batch import run_inference
from detect.inference.inputs import InputTypeError, stored_values_to_display
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


@pytest.fixture(scope="module")
def detector(checkpoint):
    return Detector.from_checkpoint(checkpoint, device="cpu")


def test_the_public_names_import_from_the_package():
    import detect

    assert {"Detector", "Prediction", "InferenceSettings", "DetectError", "__version__"} <= set(detect.__all__)
    assert detect.DetectError is DetectError and isinstance(detect.__version__, str)


def test_to_dict_equals_what_detect_infer_writes(tmp_path, checkpoint, images, detector):
    run_inference(list(images), out_path=tmp_path / "boxes.json", checkpoint=checkpoint, device="cpu", batch_size=1)
    written = json.loads((tmp_path / "boxes.json").read_text())["images"]
    one = detector.predict(images[0])
    assert isinstance(one, Prediction) and one.to_dict() == written[0]
    assert detector.predict(str(images[1])).to_dict() == written[1]
    many = detector.predict_many(images, batch_size=1)
    assert not isinstance(many, list)  # an iterator: a caller streams through an archive
    assert [p.to_dict() for p in many] == written
    assert written[2]["error"] and written[2]["boxes"] is None
    one_by_one = Detector.from_checkpoint(
        checkpoint, device="cpu", batch_size=1
    )  # batched floats may differ in the last digit
    listed = one_by_one.predict(list(images))  # a list gives a list, the unreadable file in its place
    assert [p.to_dict() for p in listed] == written and listed[2].error and not listed[2].ok


def test_prediction_is_typed_and_frozen(detector, images):
    p = detector.predict(images[0])
    assert p.boxes.dtype == np.float32 and p.boxes.shape == (len(p.scores), 4)
    assert np.array_equal(p.xyxy, p.boxes)
    assert np.allclose(p.xywh[:, :2], p.boxes[:, :2]) and np.allclose(p.xywh[:, 2:], p.boxes[:, 2:] - p.boxes[:, :2])
    entry = p.to_dict()
    written = np.array([[b["x"], b["y"], b["width"], b["height"]] for b in entry["boxes"]], dtype=np.float32)
    assert len(entry["boxes"]) > 0 and np.allclose(p.xywh, written.reshape(-1, 4), atol=0.01)
    assert p.decision.pneumonia == entry["pneumonia"] and p.decision.threshold == entry["operating_point"]["threshold"]
    assert p.decision.source == entry["operating_point"]["source"] and p.decision.dataset == "rsna"
    assert p.header is not None and p.header.patient_id == "pa"
    assert set(p.class_probabilities) == {"Normal", "Lung Opacity", "No Lung Opacity / Not Normal"}
    with pytest.raises(ValueError):
        p.boxes[0, 0] = 1.0  # read-only: the prediction cannot be changed behind its entry
    with pytest.raises(AttributeError):
        p.source = "other"  # type: ignore[misc]
    overlay = p.plot()
    assert overlay.dtype == np.uint8 and overlay.ndim == 3 and overlay.shape[2] == 3


def test_every_input_type_gives_the_same_prediction(detector, images):
    dicom, png, _ = images
    grey = cv2.imread(str(png), cv2.IMREAD_GRAYSCALE)
    from_file = detector.predict(png)
    expected = from_file.pneumonia_probability
    same = {
        "array": detector.predict(grey),
        "rgb array": detector.predict(np.repeat(grey[:, :, None], 3, axis=2)),
        "PIL L": detector.predict(Image.fromarray(grey)),
        "PIL RGB": detector.predict(Image.fromarray(grey).convert("RGB")),
        "uint8 tensor": detector.predict(torch.from_numpy(grey)),
        "CHW float tensor": detector.predict(torch.from_numpy(grey).float().div(255).expand(3, -1, -1)),
    }
    for what, p in same.items():
        assert p.pneumonia_probability == pytest.approx(expected, abs=1e-5), what
        assert np.allclose(p.boxes, from_file.boxes, atol=1e-3), what
    assert same["array"].source == "<array>" and same["array"].decision.dataset == "kermany"  # not DICOM: Kermany point

    dataset = pydicom.dcmread(dicom)
    from_dataset = detector.predict(dataset)
    assert from_dataset.to_dict() == detector.predict(dicom).to_dict()  # the same DICOM pipeline, the same entry

    stored = (grey.astype(np.uint16) * 16 + 100).astype(np.uint16)  # 12-bit stored values, as pixel_array gives
    p16 = detector.predict(stored)
    via_pipeline = detector.predict(stored_values_to_display(stored))
    assert p16.pneumonia_probability == via_pipeline.pneumonia_probability
    assert np.array_equal(stored_values_to_display(stored), grey)  # min..max windowing of a linear map is the image


def test_a_folder_gives_a_list_in_sorted_order(detector, images, tmp_path):
    folder = tmp_path / "scans"
    folder.mkdir()
    for source in images[:2]:
        (folder / source.name).write_bytes(source.read_bytes())
    listed = detector.predict(folder)
    assert [p.source for p in listed] == [str(folder / "a.dcm"), str(folder / "wide.png")]
    matched = detector.predict(str(folder / "*.png"))  # a glob pattern, as a str
    assert [p.source for p in matched] == [str(folder / "wide.png")]
    with pytest.raises(InputTypeError, match=r"\*\.jpg: no file matches this pattern"):
        detector.predict(str(folder / "*.jpg"))


def test_bad_input_is_a_one_line_detect_error(detector, images, checkpoint):
    with pytest.raises(DetectError, match=r"bad\.dcm: not a DICOM file"):
        detector.predict(images[2])
    with pytest.raises(InputTypeError, match=r"must be uint8 display pixels or integer stored values .*got float32"):
        detector.predict(np.zeros((8, 8), dtype=np.float32))
    with pytest.raises(InputTypeError, match=r"must be \[H, W\] .*got shape \(8,\)"):
        detector.predict(np.zeros(8, dtype=np.uint8))
    with pytest.raises(InputTypeError, match=r"cannot predict a dict: give a path"):
        detector.predict({"image": 1})
    without_pixels = pydicom.dcmread(images[0], stop_before_pixels=True)
    with pytest.raises(DetectError, match=r"a\.dcm: no pixel data"):  # named by the file it was read from
        detector.predict(without_pixels)
    without_pixels.filename = None
    with pytest.raises(DetectError, match=r"^<pydicom Dataset>: no pixel data"):  # not by the private temporary file
        detector.predict(without_pixels)
    with pytest.raises(InputTypeError, match=r"float tensor must hold values in \[0, 1\]"):
        detector.predict(torch.full((8, 8), 3.0))
    with pytest.raises(DetectError, match="the checkpoint stores no chexpert|'chexpert' is unknown"):
        Detector.from_checkpoint(checkpoint, device="cpu", threshold_from="chexpert")
    with pytest.raises(DetectError, match="unknown inference setting"):
        Detector.from_checkpoint(checkpoint, device="cpu", score_threshold=0.2)
    bad_in_list = detector.predict([images[0], np.zeros((4, 4, 4, 4), dtype=np.uint8)])
    assert bad_in_list[0].ok and bad_in_list[1].error and "shape" in bad_in_list[1].error  # reported, not fatal


def test_the_detector_shows_no_internals(detector):
    text = repr(detector)
    assert text.startswith("Detector(model='mobilenet_v3_large_fpn'") and "LoadedModel" not in text
    assert not hasattr(detector, "loaded") and not hasattr(detector, "choice")
    assert isinstance(detector.settings, InferenceSettings)


@pytest.mark.parametrize("tta", [False, True])
def test_reader_threads_prepare_ahead_and_predict_as_the_three_steps(checkpoint, images, tta):
    """predict_many prepares in the reader threads (not the predicting one) and gives, with and
    without TTA, exactly what prepare -> run -> finalize give for the same file."""
    detector = Detector.from_checkpoint(checkpoint, device="cpu", tta=tta)
    predictor = detector.predictor
    prepared_in: list[str] = []
    original = predictor.prepare

    def recording(pixels, original_hw=None):
        prepared_in.append(threading.current_thread().name)
        return original(pixels, original_hw)

    predictor.prepare = recording
    times = PipelineTimes()
    results = list(detector.predict_many(list(images), batch_size=1, workers=2, times=times))
    assert prepared_in and all(name.startswith("detect-read") for name in prepared_in) and len(prepared_in) == 2
    assert times.n_images == 2 and [p.ok for p in results] == [True, True, False]
    for path, prediction in zip(images[:2], results):
        image = load_image(path, target_size_px=predictor.image_size_px)  # read for the model's size, as infer reads
        prepared = detector.prepare(image)
        (raw,) = detector.run([prepared])
        assert np.array_equal(prediction.scores, detector.finalize(raw, prepared).scores)
        assert prediction.pneumonia_probability == pytest.approx(raw.pneumonia_probability, abs=1e-6)


def test_with_settings_shares_the_loaded_model(detector):
    other = detector.with_settings(detector.settings.replace(tta=True, score_thresh=0.9))
    assert other.model.predictor.backend is detector.model.predictor.backend and other.predictor.tta
    assert not detector.predictor.tta
    with pytest.raises(DetectError, match="device cannot change"):
        detector.with_settings(detector.settings.replace(device="cuda"))


def test_one_large_dicom_is_decoded_for_the_models_size_as_detect_infer_decodes_it(tmp_path, checkpoint, detector):
    """A JPEG DICOM several times the model's input size is decoded at a reduced DCT scale by
    detect infer; predict(path) and predict(Dataset) read it the same way, so their entries match."""
    scan = write_jpeg_baseline_dicom(tmp_path / "big.dcm", textured_image(1024, 1024, seed=4), patient_id="pb")
    run_inference([scan], out_path=tmp_path / "boxes.json", checkpoint=checkpoint, device="cpu", batch_size=1)
    (written,) = json.loads((tmp_path / "boxes.json").read_text())["images"]
    assert detector.predict(scan).to_dict() == written
    assert detector.predict(pydicom.dcmread(scan)).to_dict() == written
    as_infer_reads = load_image(scan, target_size_px=detector.predictor.image_size_px)
    assert as_infer_reads.decoded_from_hw == (1024, 1024)  # the reduced decode applies to this file
    for source in (scan, pydicom.dcmread(scan)):
        image = detector.prepare(source).image
        assert image.decoded_from_hw == (1024, 1024) and np.array_equal(image.pixels, as_infer_reads.pixels)
