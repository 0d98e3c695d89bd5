"""detect.serve.app through FastAPI's TestClient: every endpoint, every refusal, as one-line JSON."""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import stat
import threading
import time

import cv2
import numpy as np
import pydicom
import pytest
from pydicom.uid import ImplicitVRLittleEndian

from detect.inference.api import Detector
from detect.inference.batch import run_inference
from detect.serve.predict import NO_EXPLANATION, ServeModel, Upload
from detect.serve.sniff import BadUpload
from tests.data_prep.dicom_fixtures import make_dataset, textured_image, write_dicom
from tests.detect.inference.test_gate import save_classifier_checkpoint
from tests.detect.serve.conftest import SECRET_FILE_NAME, SECRET_PATIENT_ID, assert_same_entry, make_client

TOKEN = "s3cret-token-0123456789"


def assert_error(response, status: int, fragment: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "status"} and body["status"] == status
    assert "\n" not in body["error"] and fragment in body["error"], body["error"]


# ------------------------------------------------------------------------------ endpoints


def test_health_ready_viewer_and_docs(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["model"] == "mobilenet_v3_large_fpn"
    assert ready["capacity"] == 256 + 8 and ready["queued"] == 0  # the queue cap + one full batch
    page = client.get("/")
    assert page.status_code == 200 and 'id="image"' in page.text and "<script" in page.text
    assert "http" not in page.text.split("<script")[0].lower().replace("http-equiv", "")  # no CDN link in the head
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    spec = client.get("/openapi.json").json()
    assert {"/v1/predict", "/v1/model", "/healthz", "/readyz"} <= set(spec["paths"])
    assert "multipart/form-data" in spec["paths"]["/v1/predict"]["post"]["requestBody"]["content"]
    assert client.get("/docs").status_code == 200


def test_model_card_comes_from_the_checkpoint(client):
    card = client.get("/v1/model").json()
    assert card["model"]["name"] == "mobilenet_v3_large_fpn" and card["input"]["image_size_px"] == 64
    assert card["training_data"]["datasets"] == ["kermany", "rsna"]
    assert [(p["dataset"], p["threshold"]) for p in card["operating_points"]] == [("kermany", 0.6), ("rsna", 0.4)]
    assert card["validation"]["epoch"] == 3 and card["explanations"] == []
    assert card["versions"]["torch"]
    assert card["task"]["name"] == card["model"]["task"] == "detection" and "boxes" in card["task"]["description"]
    assert card["task"]["classes"] == ["Normal", "No Lung Opacity / Not Normal", "Lung Opacity"]


def test_every_classification_task_has_a_card_description():
    from data_prep.tasks import CLASSIFICATION_TASKS
    from detect.serve.model_card import CLASSIFIER_DESCRIPTION

    assert sorted(CLASSIFIER_DESCRIPTION) == sorted(CLASSIFICATION_TASKS)


def test_a_classifiers_card_says_its_task_its_classes_and_no_boxes(tmp_path):
    from detect.serve.model_card import model_card

    checkpoint = save_classifier_checkpoint(tmp_path / "cls.pt", task="kermany3", thresholds={"kermany": 0.5})
    model = ServeModel(Detector.from_checkpoint(checkpoint, device="cpu"))
    try:
        card = model_card(model)
    finally:
        model.close()
    assert card["model"]["name"] == "basic_cnn" and card["task"]["name"] == "kermany3"
    assert card["task"]["classes"] == ["normal", "bacterial", "viral"] and "bacterial" in card["task"]["description"]
    assert card["outputs"]["boxes"].startswith("none")


def test_predict_returns_the_entry_detect_infer_writes(client, checkpoint, dicom_path, tmp_path):
    response = client.post(
        "/v1/predict", files={"file": (dicom_path.name, dicom_path.read_bytes(), "application/dicom")}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    run_inference([dicom_path], out_path=tmp_path / "boxes.json", checkpoint=checkpoint, device="cpu")
    infer = json.loads((tmp_path / "boxes.json").read_text())
    expected = dict(infer["images"][0], source=SECRET_FILE_NAME)  # infer names the path, serve the upload's name
    assert body["prediction"] == expected
    assert body["settings"] == infer["settings"] and body["model"] == infer["model"]
    assert body["prediction"]["box_outcome"] == "boxes" and body["prediction"]["boxes"]
    assert (
        body["header"]["view_position"] == "AP" and body["header"]["sex"] == "F" and body["header"]["age_years"] == 51.0
    )
    assert "patient_name" not in body["header"] and "patient_id" not in body["header"]
    assert set(body["timing_ms"]) == {"receive", "queue", "decode", "model", "explain", "postprocess", "total"}
    assert body["timing_ms"]["total"] >= body["timing_ms"]["model"] > 0 and body["timing_ms"]["explain"] == 0
    assert body["explanation"] is None and body["display_image"] is None and body["batch_size"] == 1


def test_raw_body_png_and_jpeg_are_sniffed_not_named(client, png_bytes, jpeg_bytes):
    # A PNG sent as "application/dicom" with a .dcm name is still read as a PNG.
    as_png = client.post("/v1/predict", files={"file": ("scan.dcm", png_bytes, "application/dicom")}).json()
    assert as_png["prediction"]["image_width_px"] == 150 and as_png["prediction"]["image_height_px"] == 60
    assert as_png["header"] is None and as_png["prediction"]["operating_point"]["dataset"] == "kermany"
    raw_jpeg = client.post("/v1/predict", content=jpeg_bytes).json()
    assert (raw_jpeg["prediction"]["image_width_px"], raw_jpeg["prediction"]["image_height_px"]) == (64, 80)
    assert raw_jpeg["prediction"]["source"] == "upload"


def test_query_options_mirror_detect_infer(client, dicom_bytes):
    high = client.post("/v1/predict?pneumonia_threshold=0.99", content=dicom_bytes).json()["prediction"]
    assert high["pneumonia"] is False and high["box_outcome"] == "not_pneumonia" and high["boxes"] == []
    assert high["operating_point"]["source"] == "command line (--pneumonia-threshold)"
    kermany = client.post("/v1/predict?threshold_from=kermany", content=dicom_bytes).json()["prediction"]
    assert kermany["operating_point"]["threshold"] == 0.6
    strict = client.post("/v1/predict?score_thresh=1.0", content=dicom_bytes).json()
    assert (
        strict["settings"]["score_thresh"] == 1.0 and strict["prediction"]["box_outcome"] == "no_box_above_score_thresh"
    )
    tta = client.post("/v1/predict?tta=true&render=true", content=dicom_bytes).json()
    assert tta["settings"]["tta"] is True and tta["prediction"]["boxes"]
    shown = tta["display_image"]
    assert shown["media_type"] == "image/png" and (shown["width_px"], shown["height_px"]) == (100, 120)


def test_explain_on_a_detector_is_422_saying_what_to_do(client, dicom_bytes):
    refused = client.post("/v1/predict?explain=true", content=dicom_bytes)
    assert_error(refused, 422, "explain=true: model 'mobilenet_v3_large_fpn' is a detector; " + NO_EXPLANATION)
    assert "--gate-with" in refused.json()["error"] and "classifier checkpoint" in refused.json()["error"]


@pytest.fixture(scope="module")
def classifier_model(tmp_path_factory):
    checkpoint = save_classifier_checkpoint(tmp_path_factory.mktemp("cls") / "cls.pt", thresholds={"kermany": 0.5})
    model = ServeModel(Detector.from_checkpoint(checkpoint, device="cpu"))
    yield model
    model.close()


def test_explain_on_a_classifier_returns_the_gradcam_overlay_infer_writes(classifier_model, png_bytes, tmp_path):
    with make_client(classifier_model) as test_client:
        assert test_client.get("/v1/model").json()["explanations"] == ["gradcam"]
        body = test_client.post("/v1/predict?explain=true", content=png_bytes).json()
        plain = test_client.post("/v1/predict", content=png_bytes).json()
    explanation = body["explanation"]
    assert explanation["method"] == "gradcam" and explanation["model"] == "basic_cnn"
    assert explanation["media_type"] == "image/png" and set(explanation) == {
        "method",
        "model",
        "media_type",
        "width_px",
        "height_px",
        "base64",
    }
    png = base64.b64decode(explanation["base64"])
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    overlay = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert overlay.shape[:2] == (explanation["height_px"], explanation["width_px"])
    assert body["timing_ms"]["explain"] > 0 and plain["explanation"] is None
    assert body["prediction"] == plain["prediction"]  # explaining changes no number

    # the same overlay `detect infer --explain` writes for the same file
    path = tmp_path / "scan.png"
    path.write_bytes(png_bytes)
    checkpoint = classifier_model.loaded.checkpoint_path
    run_inference([path], out_path=tmp_path / "boxes.json", checkpoint=checkpoint, device="cpu", explain_dir=tmp_path)
    written = cv2.imread(str(tmp_path / "scan_gradcam.png"), cv2.IMREAD_COLOR)
    assert written.shape == overlay.shape and np.abs(written.astype(int) - overlay.astype(int)).max() <= 1


def test_a_batch_predicts_as_one_at_a_time_and_an_unreadable_upload_fails_alone(
    serve_model, dicom_bytes, png_bytes, jpeg_bytes
):
    plain, tta = serve_model.request_options({}), serve_model.request_options({"tta": "true"})
    strict = serve_model.request_options({"score_thresh": "0.6", "threshold_from": "kermany"})
    uploads = [
        Upload(dicom_bytes, "dicom", "a.dcm", plain),
        Upload(png_bytes, "png", "b.png", tta),
        Upload(jpeg_bytes[:100], "jpeg", "broken.jpg", plain),
        Upload(jpeg_bytes, "jpeg", "c.jpg", strict),
        Upload(png_bytes, "png", "d.png", plain),
        Upload(dicom_bytes, "dicom", "e.dcm", tta),
    ]
    batched = serve_model.predict_uploads(uploads)
    broken = batched[2]
    assert isinstance(broken, BadUpload) and str(broken).startswith("unreadable JPEG: ")
    # one forward pass per TTA flag: the three readable plain uploads, the two TTA ones
    assert [b["batch_size"] for i, b in enumerate(batched) if i != 2] == [3, 2, 3, 3, 2]
    for upload, body in zip(uploads, batched):
        if upload.source == "broken.jpg":
            continue
        alone = serve_model.predict_upload(upload.data, upload.kind, upload.source, upload.options)
        assert alone["batch_size"] == 1 and body["settings"] == alone["settings"]
        assert_same_entry(body["prediction"], alone["prediction"])
    assert batched[3]["settings"]["score_thresh"] == 0.6
    assert batched[3]["prediction"]["operating_point"]["dataset"] == "kermany"


# --------------------------------------------------------------------------------- errors


def test_bad_query_values_are_422_in_one_line(client, dicom_bytes):
    assert_error(
        client.post("/v1/predict?score_thresh=2", content=dicom_bytes),
        422,
        "score_thresh: Input should be less than or equal to 1",
    )
    assert_error(client.post("/v1/predict?threshold_from=mimic", content=dicom_bytes), 422, "threshold_from")
    assert_error(client.post("/v1/predict?tta=maybe", content=dicom_bytes), 422, "tta")


def test_unknown_route_and_method_are_json(client):
    assert_error(client.get("/v2/nothing"), 404, "Not Found")
    assert_error(client.get("/v1/predict"), 405, "Method Not Allowed")


def test_content_sniffing_refuses_other_files_415(client):
    assert_error(
        client.post("/v1/predict", content=b"%PDF-1.7 not an image at all"),
        415,
        "not a DICOM, PNG or JPEG file by its content",
    )
    assert_error(
        client.post("/v1/predict", files={"file": ("x.png", b"GIF89a....", "image/png")}),
        415,
        "unsupported upload (10 bytes)",
    )


def test_empty_or_malformed_uploads_are_400(client):
    assert_error(client.post("/v1/predict", content=b""), 400, "empty upload")
    assert_error(client.post("/v1/predict", files={"other": ("a.png", b"x")}), 400, "without a 'file' field")
    assert_error(
        client.post("/v1/predict", content=b"--x", headers={"content-type": "multipart/form-data"}),
        400,
        "without a boundary",
    )


def test_unreadable_files_are_422(client, jpeg_bytes):
    assert_error(
        client.post("/v1/predict", content=jpeg_bytes[: len(jpeg_bytes) // 2]), 422, "unreadable JPEG: truncated JPEG"
    )
    not_dicom = bytes(128) + b"DICM" + b"\x01" * 64
    assert_error(client.post("/v1/predict", content=not_dicom), 422, "DICOM without an image")


def test_raw_dicom_without_preamble_is_sniffed(client):
    ds = make_dataset(textured_image(40, 48, seed=1), transfer_syntax=ImplicitVRLittleEndian)
    del ds.file_meta  # a legacy raw dataset: no preamble, no 'DICM', no file meta
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, implicit_vr=True, little_endian=True)
    dataset_only = buffer.getvalue()
    assert dataset_only[:2] == b"\x08\x00" and dataset_only[128:132] != b"DICM"
    entry = client.post("/v1/predict", content=dataset_only).json()["prediction"]
    assert (entry["image_width_px"], entry["image_height_px"]) == (48, 40)


def test_upload_size_cap_413_declared_and_streamed(serve_model, png_bytes):
    with make_client(serve_model, max_upload_mb=0.001) as small:  # 1048 bytes
        big = png_bytes + bytes(2000)
        assert_error(small.post("/v1/predict", content=big), 413, "larger than the server's limit of 1048 bytes")
        chunks = (big[i : i + 256] for i in range(0, len(big), 256))  # no Content-Length: chunked
        assert_error(small.post("/v1/predict", content=chunks), 413, "--max-upload-mb")


@pytest.mark.parametrize("kind", ["png", "jpeg", "dicom"])
def test_huge_declared_dimensions_are_refused_before_decoding(
    serve_model, png_bytes, jpeg_bytes, tmp_path, monkeypatch, kind
):
    if kind == "png":
        data = bytearray(png_bytes)
        data[16:24] = (60000).to_bytes(4, "big") + (50000).to_bytes(4, "big")
        claim = "50000x60000"
    elif kind == "jpeg":
        data = bytearray(jpeg_bytes)
        sof = data.index(b"\xff\xc0")
        data[sof + 5 : sof + 9] = (65000).to_bytes(2, "big") + (65000).to_bytes(2, "big")
        claim = "65000x65000"
    else:
        path = write_dicom(tmp_path / "huge.dcm", textured_image(8, 8, seed=1), Rows=40000, Columns=40000)
        data = path.read_bytes()
        claim = "40000x40000"

    def decode_must_not_run(*_args, **_kwargs):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(type(serve_model), "predict_uploads", decode_must_not_run)
    with make_client(serve_model) as test_client:
        assert_error(test_client.post("/v1/predict", content=bytes(data)), 422, f"declares {claim}")


def test_bearer_token_401(serve_model, dicom_bytes):
    with make_client(serve_model, token=TOKEN) as guarded:
        assert_error(guarded.post("/v1/predict", content=dicom_bytes), 401, "bearer token")
        wrong = guarded.get("/v1/model", headers={"Authorization": "Bearer nope"})
        assert_error(wrong, 401, "bearer token")
        assert wrong.headers["www-authenticate"] == "Bearer"
        ok = guarded.post("/v1/predict", content=dicom_bytes, headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200
        assert guarded.get("/healthz").status_code == 200 and guarded.get("/").status_code == 200


def test_cors_is_off_unless_an_origin_is_given(serve_model):
    preflight = {"Origin": "https://viewer.example.org", "Access-Control-Request-Method": "POST"}
    with make_client(serve_model) as closed:
        assert "access-control-allow-origin" not in closed.options("/v1/predict", headers=preflight).headers
        assert (
            "access-control-allow-origin"
            not in closed.get("/healthz", headers={"Origin": "https://viewer.example.org"}).headers
        )
    with make_client(serve_model, cors_origins=("https://viewer.example.org",)) as opened:
        assert (
            opened.options("/v1/predict", headers=preflight).headers["access-control-allow-origin"]
            == "https://viewer.example.org"
        )
        other = opened.get("/healthz", headers={"Origin": "https://evil.example.com"})
        assert "access-control-allow-origin" not in other.headers


@pytest.fixture()
def held_batches(serve_model, monkeypatch):
    """Batches wait for the returned event before they run (so requests stay queued)."""
    release = threading.Event()
    original = type(serve_model).predict_uploads

    def held(self, uploads):
        release.wait(timeout=30)
        return original(self, uploads)

    monkeypatch.setattr(type(serve_model), "predict_uploads", held)
    yield release
    release.set()


def _queue_uploads(pool, serve_model, data: bytes, n: int) -> list:
    """One upload taken into a (held) batch of one, then n - 1 queued behind it."""
    options = serve_model.request_options({})
    held = pool.submit(Upload(data, "dicom", "upload", options), key=False)
    deadline = time.monotonic() + 10
    while pool.queued and time.monotonic() < deadline:
        time.sleep(0.01)
    return [held] + [pool.submit(Upload(data, "dicom", "upload", options), key=False) for _ in range(n - 1)]


def test_a_long_expected_wait_is_503_with_retry_after(serve_model, dicom_bytes, held_batches):
    with make_client(serve_model, max_wait_s=1.0, max_batch=1) as busy:
        pool = busy.app.state.pool
        waiting = _queue_uploads(pool, serve_model, dicom_bytes, 3)
        pool.record(0.75, 1)  # 0.75 s per request measured
        assert pool.queued == 2 and pool.expected_wait_s() == pytest.approx(1.5)
        refused = busy.post("/v1/predict", content=dicom_bytes)
        assert_error(refused, 503, "the expected wait is 1.5 s for 2 queued request(s), over its limit of 1 s")
        assert refused.headers["retry-after"] == "2" and "retry in 2 s" in refused.json()["error"]
        assert busy.get("/healthz").status_code == 200
        assert busy.get("/readyz").json()["expected_wait_s"] == 1.5
        held_batches.set()
        assert all(f.result(timeout=30)["prediction"]["boxes"] for f in waiting)
        assert busy.post("/v1/predict", content=dicom_bytes).status_code == 200


def test_a_full_queue_is_503_whatever_the_estimate(serve_model, dicom_bytes, held_batches):
    with make_client(serve_model, queue_size=1, max_batch=1) as busy:
        pool = busy.app.state.pool
        waiting = _queue_uploads(pool, serve_model, dicom_bytes, 2)
        assert pool.queued == 1 and pool.expected_wait_s() is None  # nothing measured: only the cap applies
        refused = busy.post("/v1/predict", content=dicom_bytes)
        assert_error(refused, 503, "the server is busy: 1 queued request(s), its limit (--queue-size)")
        assert refused.headers["retry-after"] == "1"
        held_batches.set()
        assert [f.result(timeout=30)["batch_size"] for f in waiting] == [1, 1]


def test_not_loaded_model_answers_503():
    with make_client(None) as empty:
        assert_error(empty.get("/readyz"), 503, "not loaded")
        assert_error(empty.post("/v1/predict", content=b"x"), 503, "not loaded")
        assert empty.get("/healthz").status_code == 200


def test_internal_errors_are_500_json_without_details(serve_model, dicom_bytes, monkeypatch):
    def broken(*_args, **_kwargs):
        raise RuntimeError("bug with /secret/path")

    monkeypatch.setattr(type(serve_model), "predict_uploads", broken)
    with make_client(serve_model) as test_client:
        response = test_client.post("/v1/predict", content=dicom_bytes)
    assert_error(response, 500, "internal server error")
    assert "secret" not in response.text


# ------------------------------------------------------------------------ privacy of uploads


def test_no_patient_data_in_logs_and_no_client_named_files(client, serve_model, dicom_bytes, caplog):
    caplog.set_level(logging.DEBUG)
    response = client.post("/v1/predict", files={"file": (f"../../{SECRET_FILE_NAME}", dicom_bytes)})
    assert response.status_code == 200
    assert response.json()["prediction"]["source"] == SECRET_FILE_NAME  # the base name, as a label only
    assert response.json()["prediction"]["patient_id"] == SECRET_PATIENT_ID  # boxes.json holds it...
    assert "predict dicom" in caplog.text
    for secret in (SECRET_PATIENT_ID, "Doe", "Jane"):  # ...the logs never do
        assert secret not in caplog.text
    tmp_dir = serve_model._tmp_dir
    assert stat.S_IMODE(os.stat(tmp_dir).st_mode) == 0o700 and not list(tmp_dir.iterdir())


def test_settings_are_checked():
    from data_prep.errors import ConfigError
    from detect.serve.settings import ServeSettings

    with pytest.raises(ConfigError, match="must have at least 16 characters"):
        ServeSettings(token="short")
    with pytest.raises(ConfigError, match=r"'\*' is refused"):
        ServeSettings(cors_origins=("*",))
    with pytest.raises(ConfigError, match="--max-upload-mb must be > 0"):
        ServeSettings(max_upload_mb=0)
    for bad in (0, -1, float("inf"), float("nan")):
        with pytest.raises(ConfigError, match="--max-wait-s must be a finite number of seconds > 0"):
            ServeSettings(max_wait_s=bad)
    with pytest.raises(ConfigError, match="--max-batch must lie in 1..256"):
        ServeSettings(max_batch=0)
    with pytest.raises(ConfigError, match="--batch-window-ms must lie in 0..1000"):
        ServeSettings(batch_window_ms=-1)
    with pytest.raises(ConfigError, match="--queue-size must be >= 1"):
        ServeSettings(queue_size=0)
    defaults = ServeSettings()
    assert (defaults.max_wait_s, defaults.queue_size, defaults.max_batch, defaults.batch_window_ms) == (10, 256, 8, 5)
    assert ServeSettings().host == "127.0.0.1" and ServeSettings().is_loopback
    assert not ServeSettings(host="0.0.0.0").is_loopback
