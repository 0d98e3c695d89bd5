"""One upload -> the boxes.json entry `detect infer` would write for that file, plus timing.

    ServeModel(detector)                        the loaded Detector (detect.inference.api) and a
                                                private temp dir for the readers that take a path
    ServeModel.predict_upload(data, kind, ...)  read (data.files.load_image) -> the Detector's
                                                three steps with the request's InferenceSettings
                                                (prepare, run, finalize) -> Prediction.to_dict,
                                                the whole one-image document validated as infer's is

The response holds that entry unchanged under `prediction`, with the document's `model` and
`settings` beside it, so a client sees exactly what boxes.json would say.
"""

from __future__ import annotations

import base64
import dataclasses
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import cv2
import numpy as np

from data_prep.errors import DataFormatError
from data_prep.records import DicomHeader
from detect.data.files import LoadedImage, load_image
from detect.inference.api import Detector
from detect.inference.predictor import LoadedModel
from detect.inference.settings import InferenceSettings
from detect.outputs.boxes_json import SCHEMA_VERSION, settings_to_json, validate_output
from detect.serve.sniff import SUFFIX_BY_KIND, BadUpload

# The viewer's copy of the image: the long side at most this many pixels (boxes stay in
# original pixels; the page scales them by image_width_px).
DISPLAY_MAX_SIDE_PX = 1024
NO_EXPLANATION = (
    "detect serve computes no explanation heat maps; Grad-CAM of a classifier checkpoint: detect infer --explain DIR"
)


@dataclass(frozen=True)
class RequestOptions:
    """One request of POST /v1/predict: the InferenceSettings it predicts with (the server's,
    with the request's query fields applied: InferenceSettings.for_request) and what the
    response should carry besides the prediction."""

    settings: InferenceSettings
    render: bool = False


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


def display_image(pixels: np.ndarray) -> dict[str, Any]:
    """The display pixels (DICOM windowed as for the model) as a PNG for the viewer."""
    height, width = pixels.shape
    scale = min(1.0, DISPLAY_MAX_SIDE_PX / max(height, width))
    small = (
        pixels
        if scale >= 1.0
        else cv2.resize(
            pixels, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA
        )
    )
    ok, png = cv2.imencode(".png", small)
    if not ok:
        raise RuntimeError("OpenCV could not encode the display PNG")
    return {
        "media_type": "image/png",
        "width_px": int(small.shape[1]),
        "height_px": int(small.shape[0]),
        "base64": base64.b64encode(png.tobytes()).decode("ascii"),
    }


class ServeModel:
    """The loaded model behind the API. `predict_upload` runs in a pool worker thread."""

    def __init__(self, detector: Detector) -> None:
        self.detector = detector
        # One Detector per TTA flag, sharing the loaded model (Detector.with_settings): a request
        # asking for the other flag reloads nothing.
        self._by_tta = {tta: detector.with_settings(detector.settings.replace(tta=tta)) for tta in (False, True)}
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
        """The explanation methods the server offers for this model (none: Grad-CAM runs in detect infer --explain)."""
        return []

    def close(self) -> None:
        shutil.rmtree(self._tmp_dir, ignore_errors=True)

    def _read(self, data: bytes, kind: str, source: str) -> LoadedImage:
        # The readers take a path: the bytes go to a server-chosen name in the private dir.
        path = self._tmp_dir / f"{uuid.uuid4().hex}{SUFFIX_BY_KIND[kind]}"
        try:
            path.write_bytes(data)
            image = load_image(path)
        except DataFormatError as exc:
            raise BadUpload(f"unreadable {kind.upper()}: {exc.reason}") from None
        finally:
            path.unlink(missing_ok=True)
        return dataclasses.replace(image, source=source)

    def predict_upload(self, data: bytes, kind: str, source: str, options: RequestOptions) -> dict[str, Any]:
        """The response body of POST /v1/predict (see the module docstring). Raises BadUpload
        for an unreadable file and DetectError for bad options."""
        started = time.perf_counter()
        detector = self._by_tta[options.settings.tta].with_settings(options.settings)
        image = self._read(data, kind, source)
        prepared = detector.prepare(image)
        decoded = time.perf_counter()
        (raw,) = detector.run([prepared])
        predicted = time.perf_counter()
        prediction = detector.finalize(raw, prepared)
        document = {
            "schema_version": SCHEMA_VERSION,
            "model": detector.model_info,
            "gate_model": None,  # the server runs one model: no --gate-with
            "settings": settings_to_json(
                options.settings.postprocess, detector.operating_points, detector.threshold_rule()
            ),
            "anonymized": False,
            "images": [prediction.to_dict()],
        }
        validate_output(document)  # the same check `detect infer` makes before writing boxes.json
        finished = time.perf_counter()
        return {
            "schema_version": document["schema_version"],
            "model": document["model"],
            "settings": document["settings"],
            "prediction": document["images"][0],
            "header": header_fields(image.header),
            "explanation": None,
            "display_image": display_image(image.pixels) if options.render else None,
            "timing_ms": {
                "decode": _ms(decoded - started),
                "model": _ms(predicted - decoded),
                "postprocess": _ms(finished - predicted),
            },
        }


def request_options(defaults: InferenceSettings, query: Mapping[str, str], *, render: bool = False) -> RequestOptions:
    """A request's options from its query fields (InferenceSettings.for_request: every request
    field by name); a bad value, or one that can never work, is a DetectError before the upload
    is queued."""
    return RequestOptions(settings=defaults.for_request(query), render=render)
