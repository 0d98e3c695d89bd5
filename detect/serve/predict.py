"""Uploads -> the boxes.json entries `detect infer` would write for those files, plus timing.

    ServeModel(detector)                      the loaded Detector (detect.inference.api) and a
                                              private temp dir for the readers that take a path
    model.request_options(query, ...)         a request's InferenceSettings (for_request) and
                                              what it asks for besides, checked before it queues
    model.predict_uploads(uploads)            a batch (detect.serve.pool): per upload, read
                                              (data.files.load_image) and Detector.prepare; ONE
                                              Detector.run for the batch; per upload, finalize
                                              with its own settings -> Prediction.to_dict, the
                                              one-image document validated as infer's is
    model.predict_upload(data, kind, ...)     one upload alone (a batch of one)

The response holds that entry unchanged under `prediction`, with the document's `model` and
`settings` beside it, so a client sees exactly what boxes.json would say; `batch_size` says how
many images shared its forward pass. With `explain=true`, a classifier's Grad-CAM overlay
(detect.inference.explaining, as `detect infer --explain` writes it) comes as `explanation`.
"""

from __future__ import annotations

import base64
import dataclasses
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import cv2
import numpy as np

from data_prep.errors import DataFormatError
from data_prep.records import DicomHeader
from detect.data.files import LoadedImage, load_image_bytes
from detect.explain.gradcam import GradCamExplainer
from detect.extras import MissingExtraError
from detect.inference.api import Detector, Prepared
from detect.inference.explaining import EXPLANATION_METHOD, can_explain, explainer_for, explanation_overlays
from detect.inference.prediction import Prediction
from detect.inference.predictor import LoadedModel
from detect.inference.settings import InferenceSettings
from detect.outputs.boxes_json import SCHEMA_VERSION, settings_to_json, validate_output
from detect.serve.sniff import SUFFIX_BY_KIND, BadUpload

# The viewer's copy of the image: the long side at most this many pixels (boxes stay in
# original pixels; the page scales them by image_width_px).
DISPLAY_MAX_SIDE_PX = 1024
NO_EXPLANATION = (
    "Grad-CAM explains classifiers: serve a classifier checkpoint, or for a detector's images run "
    "detect infer --explain DIR --gate-with CLASSIFIER"
)


@dataclass(frozen=True)
class RequestOptions:
    """One request of POST /v1/predict: the InferenceSettings it predicts with (the server's,
    with the request's query fields applied: InferenceSettings.for_request) and what the
    response should carry besides the prediction."""

    settings: InferenceSettings
    render: bool = False
    explain: bool = False


@dataclass(frozen=True)
class Upload:
    """One request's upload as it waits for a batch: the bytes (nothing decoded yet), their kind
    (sniffed), the label for `source`, the options, and when it was queued (perf_counter s)."""

    data: bytes
    kind: str
    source: str
    options: RequestOptions
    queued_at: float = 0.0


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 2)


def header_fields(header: DicomHeader | None) -> dict[str, Any] | None:
    """The DICOM header fields the viewer shows: no names, no IDs (the entry holds PatientID)."""
    if header is None:
        return None
    return {
        "modality": header.modality,
        "view_position": header.view_position,
        "sex": header.sex,
        "age_years": header.age_years,
        "age_valid": header.age_valid,
        "rows": header.rows,
        "columns": header.columns,
        "pixel_spacing_mm": list(header.pixel_spacing_mm) if header.pixel_spacing_mm else None,
        "photometric_interpretation": header.photometric_interpretation,
        "transfer_syntax_uid": header.transfer_syntax_uid,
    }


def png_image(pixels: np.ndarray, max_side_px: int = DISPLAY_MAX_SIDE_PX) -> dict[str, Any]:
    """An image (uint8 [H, W] grey or [H, W, 3] BGR), the long side at most `max_side_px`, as the
    PNG block of a response: media_type, width_px, height_px, base64."""
    height, width = pixels.shape[:2]
    scale = min(1.0, max_side_px / max(height, width))
    small = (
        pixels
        if scale >= 1.0
        else cv2.resize(
            pixels, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA
        )
    )
    ok, png = cv2.imencode(".png", small)
    if not ok:
        raise RuntimeError("OpenCV could not encode a PNG")
    return {
        "media_type": "image/png",
        "width_px": int(small.shape[1]),
        "height_px": int(small.shape[0]),
        "base64": base64.b64encode(png.tobytes()).decode("ascii"),
    }


class ServeModel:
    """The loaded model behind the API. `predict_uploads` runs in a pool worker thread."""

    def __init__(self, detector: Detector) -> None:
        self.detector = detector
        # One Detector per TTA flag, sharing the loaded model (Detector.with_settings): a request
        # asking for the other flag reloads nothing.
        self._by_tta = {tta: detector.with_settings(detector.settings.replace(tta=tta)) for tta in (False, True)}
        # One forward pass (or Grad-CAM) at a time: a batch is how requests share the model, and
        # Grad-CAM's hooks on the model must not see another thread's forward pass. Worker
        # threads still overlap reading and finalizing one batch with another's forward pass.
        self._model_lock = threading.Lock()
        self._explainer: GradCamExplainer | None = None
        self._explain_refusal: str | None = None
        name = detector.decision_model.model_info["name"]
        if detector.decision_model.predictor.model is None:  # an exported file: no module to take gradients of
            self._explain_refusal = (
                f"explain=true: Grad-CAM needs the training checkpoint of '{name}', not an exported file"
            )
        elif not can_explain(detector):
            self._explain_refusal = f"explain=true: model '{name}' is a detector; {NO_EXPLANATION}"
        else:
            try:
                self._explainer = explainer_for(detector)
            except MissingExtraError as exc:
                self._explain_refusal = f"explain=true: {exc}"
        self._tmp_dir = Path(tempfile.mkdtemp(prefix="detect-serve-"))  # mode 0700: this process only

    @property
    def loaded(self) -> LoadedModel:
        return self.detector.model

    @property
    def settings(self) -> InferenceSettings:
        """The server's defaults (each request may change its request fields)."""
        return self.detector.settings

    @property
    def explanations(self) -> list[str]:
        """The explanation methods `explain=true` returns for this model: Grad-CAM for a classifier."""
        return [EXPLANATION_METHOD] if self._explainer is not None else []

    def close(self) -> None:
        shutil.rmtree(self._tmp_dir, ignore_errors=True)

    def request_options(
        self, query: Mapping[str, str], *, render: bool = False, explain: bool = False
    ) -> RequestOptions:
        """A request's options from its query fields (InferenceSettings.for_request: every request
        field by name). A bad value, one the model cannot serve (a threshold_from it has no
        point for) or an explanation it cannot give is a DetectError before the upload is queued."""
        settings = self.settings.for_request(query)
        self._by_tta[settings.tta].with_settings(settings)  # raises for what this model cannot decide
        if explain and self._explain_refusal is not None:
            raise BadUpload(self._explain_refusal)
        return RequestOptions(settings=settings, render=render, explain=explain)

    def warm_up(self) -> float:
        """Two predictions of a blank image at the model's size; the seconds of the second (the
        first pays one-time costs): the first measured time of the server's wait estimate."""
        size_px = int(self.loaded.model_info["image_size_px"])
        blank = np.full((size_px, size_px), 128, dtype=np.uint8)
        seconds = 0.0
        for _ in range(2):
            started = time.perf_counter()
            prepared = self.detector.prepare(blank)
            with self._model_lock:
                (raw,) = self.detector.run([prepared])
            self.detector.finalize(raw, prepared).to_dict()
            seconds = time.perf_counter() - started
        return seconds

    def _read(self, data: bytes, kind: str, source: str) -> LoadedImage:
        try:  # under a server-chosen name in the private dir, never the client's
            image = load_image_bytes(data, SUFFIX_BY_KIND[kind], self._tmp_dir)
        except DataFormatError as exc:
            raise BadUpload(f"unreadable {kind.upper()}: {exc.reason}") from None
        return dataclasses.replace(image, source=source)

    def predict_upload(self, data: bytes, kind: str, source: str, options: RequestOptions) -> dict[str, Any]:
        """One upload's response body (a batch of one). Raises BadUpload for an unreadable file."""
        (result,) = self.predict_uploads([Upload(data, kind, source, options, queued_at=time.perf_counter())])
        if isinstance(result, Exception):
            raise result
        return result

    def predict_uploads(self, uploads: Sequence[Upload]) -> list[dict[str, Any] | Exception]:
        """The response bodies of a batch of uploads, in order; an upload that fails (unreadable:
        BadUpload) has its exception in its place. Uploads with the same TTA flag share one
        forward pass (the pool's batches have one flag); a model that fails raises for all."""
        results: list[dict[str, Any] | Exception] = [RuntimeError("not predicted")] * len(uploads)
        groups: dict[bool, list[int]] = {}
        for i, upload in enumerate(uploads):
            groups.setdefault(upload.options.settings.tta, []).append(i)
        for tta, indices in groups.items():
            for i, result in zip(indices, self._predict_group(self._by_tta[tta], [uploads[i] for i in indices])):
                results[i] = result
        return results

    def _predict_group(self, detector: Detector, uploads: Sequence[Upload]) -> list[dict[str, Any] | Exception]:
        batch_started = time.perf_counter()
        results: list[dict[str, Any] | Exception] = [RuntimeError("not predicted")] * len(uploads)
        # Each upload is read and prepared here, in the worker, just before its batch's forward
        # pass, not when it arrives: the queue then holds only upload bytes (its memory stays
        # bounded by --queue-size x the upload cap, never by decoded pixels and float inputs),
        # the measured batch time the wait estimate uses is a request's whole cost, and on a
        # CPU a decode running beside the forward pass would take the cores it uses anyway.
        # With --threads 2, one batch is read while the other's forward pass runs.
        prepared: dict[int, Prepared] = {}
        decode_s: dict[int, float] = {}
        for i, upload in enumerate(uploads):
            started = time.perf_counter()
            try:
                prepared[i] = detector.prepare(self._read(upload.data, upload.kind, upload.source))
            except Exception as exc:  # this upload fails alone
                results[i] = exc
            decode_s[i] = time.perf_counter() - started
        ready = sorted(prepared)
        if not ready:
            return results
        started = time.perf_counter()
        with self._model_lock:
            raws = detector.run([prepared[i] for i in ready])  # one forward pass (two with TTA)
        model_s = time.perf_counter() - started

        predictions: dict[int, tuple[Detector, Prediction]] = {}
        post_s: dict[int, float] = {}
        for i, raw in zip(ready, raws):
            started = time.perf_counter()
            try:
                own = detector.with_settings(uploads[i].options.settings)  # finalize with its own settings
                predictions[i] = (own, own.finalize(raw, prepared[i]))
            except Exception as exc:
                results[i] = exc
            post_s[i] = time.perf_counter() - started

        explain = [i for i in predictions if uploads[i].options.explain and self._explainer is not None]
        overlays: dict[int, np.ndarray] = {}
        explain_s = 0.0
        if explain:
            started = time.perf_counter()
            try:
                with self._model_lock:
                    made = explanation_overlays(self._explainer, detector, [predictions[i][1] for i in explain])  # type: ignore[arg-type]
                overlays = dict(zip(explain, made))
            except Exception as exc:  # fails the requests that asked for it, not the batch
                for i in explain:
                    results[i] = exc
                    del predictions[i]
            explain_s = time.perf_counter() - started

        for i, (own, prediction) in predictions.items():
            started = time.perf_counter()
            upload = uploads[i]
            try:
                body = self._response(own, prediction, upload, overlays.get(i), batch_size=len(ready))
            except Exception as exc:
                results[i] = exc
                continue
            body["timing_ms"] = {
                "queue": _ms(max(0.0, batch_started - upload.queued_at)) if upload.queued_at else 0.0,
                "decode": _ms(decode_s[i]),
                "model": _ms(model_s),
                "explain": _ms(explain_s) if i in overlays else 0.0,
                "postprocess": _ms(post_s[i] + time.perf_counter() - started),
            }
            results[i] = body
        return results

    def _response(
        self,
        detector: Detector,
        prediction: Prediction,
        upload: Upload,
        overlay: np.ndarray | None,
        *,
        batch_size: int,
    ) -> dict[str, Any]:
        document = {
            "schema_version": SCHEMA_VERSION,
            "model": detector.model_info,
            "gate_model": None,  # the server runs one model: no --gate-with
            "settings": settings_to_json(
                upload.options.settings.postprocess, detector.operating_points, detector.threshold_rule()
            ),
            "anonymized": False,
            "images": [prediction.to_dict()],
        }
        validate_output(document)  # the same check `detect infer` makes before writing boxes.json
        explanation = (
            {
                "method": EXPLANATION_METHOD,
                "model": detector.decision_model.model_info["name"],
                **png_image(overlay),
            }
            if overlay is not None
            else None
        )
        pixels = prediction.image
        return {
            "schema_version": document["schema_version"],
            "model": document["model"],
            "settings": document["settings"],
            "prediction": document["images"][0],
            "header": header_fields(prediction.header),
            "explanation": explanation,
            "display_image": png_image(np.asarray(pixels))  # DICOM windowed as for the model
            if upload.options.render and pixels is not None
            else None,
            "batch_size": batch_size,
        }
