"""One upload -> the boxes.json entry `detect infer` would write for that file, plus timing.

    ServeModel(loaded)                          the loaded model, a TTA twin of its Predictor
                                                (the same class and model, flag set), a private
                                                temp dir for the readers that take a path
    ServeModel.predict_upload(data, kind, ...)  read (data.files.load_image) -> the one
                                                predictor (Predictor.predict_raw) ->
                                                thresholds.pick_operating_point + api.finalize_prediction
                                                -> outputs.boxes_json.prediction_to_json, the
                                                whole one-image document validated as infer's is

The response holds that entry unchanged under `prediction`, with the document's `model` and
`settings` beside it, so a client sees exactly what boxes.json would say.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from data_prep.errors import DataFormatError
from data_prep.records import DicomHeader
from detect.data.files import LoadedImage, load_image
from detect.inference.api import finalize_prediction
from detect.inference.predictor import LoadedModel, Predictor
from detect.inference.thresholds import ThresholdChoice, pick_operating_point
from detect.outputs.boxes_json import SCHEMA_VERSION, prediction_to_json, settings_to_json, validate_output
from detect.predictions import PostprocessSettings
from detect.serve.sniff import SUFFIX_BY_KIND, BadUpload

# The viewer's copy of the image: the long side at most this many pixels (boxes stay in
# original pixels; the page scales them by image_width_px).
DISPLAY_MAX_SIDE_PX = 1024
NO_EXPLANATION = (
    "detect serve computes no explanation heat maps; Grad-CAM of a classifier checkpoint: detect infer --explain DIR"
)


@dataclass(frozen=True)
class RequestOptions:
    """The per-request options of POST /v1/predict, mirroring `detect infer`'s flags."""

    tta: bool | None = None  # None: the server's default (--tta/--no-tta)
    score_thresh: float | None = None
    pneumonia_threshold: float | None = None
    threshold_from: str | None = None
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

    def __init__(self, loaded: LoadedModel, postprocess: PostprocessSettings) -> None:
        self.loaded = loaded
        self.postprocess = postprocess
        base = loaded.predictor
        self._predictors: dict[bool, Predictor] = {}
        for tta in (False, True):
            twin = copy.copy(base)  # the same Predictor, same model object: only the TTA flag differs
            twin.tta = tta
            self._predictors[tta] = twin
        self._tmp_dir = Path(tempfile.mkdtemp(prefix="detect-serve-"))  # mode 0700: this process only

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
        settings = dataclasses.replace(
            self.postprocess,
            **({"tta": options.tta} if options.tta is not None else {}),
            **({"score_thresh": options.score_thresh} if options.score_thresh is not None else {}),
        )
        choice = ThresholdChoice(explicit=options.pneumonia_threshold, dataset=options.threshold_from)
        offered = choice.offered(self.loaded.operating_points)
        image = self._read(data, kind, source)
        decoded = time.perf_counter()
        raw = self._predictors[settings.tta].predict_raw([image.pixels])[0]
        predicted = time.perf_counter()
        point = pick_operating_point(self.loaded.operating_points, choice, is_dicom=image.header is not None)
        prediction = finalize_prediction(raw, source=source, header=image.header, settings=settings, point=point)
        document = {
            "schema_version": SCHEMA_VERSION,
            "model": self.loaded.model_info,
            "gate_model": None,  # the server runs one model: no --gate-with
            "settings": settings_to_json(settings, offered, choice.rule()),
            "anonymized": False,
            "images": [prediction_to_json(prediction)],
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


def check_options(options: RequestOptions) -> None:
    """Raise DetectError for options that can never work, before the upload is queued."""
    ThresholdChoice(explicit=options.pneumonia_threshold, dataset=options.threshold_from)
    if options.score_thresh is not None:
        PostprocessSettings(score_thresh=options.score_thresh)
