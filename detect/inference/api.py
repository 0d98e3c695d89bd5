"""The Python API: `from detect import Detector`.

    detector = Detector.from_checkpoint("runs/demo/checkpoints/best.pt")
    entry = detector.predict("scan.dcm")            # one boxes.json `images[]` entry (a dict)
    entry = detector.predict(pixels_uint8)          # an array: uint8 [H, W] (or [H, W, 3], made grey)
    for entry in detector.predict_many(paths):      # an iterator, in order; a file that cannot be
        ...                                         # read gives a failure entry ({"error": ...})
    gated = Detector.from_checkpoint(DET, gate_with=CLS)  # CLS's pneumonia probability gates and decides

`detect infer` (detect.inference.batch), the server and notebooks all predict through this
class, which wraps the one predictor (detect.inference.predictor) with the post-processing and
the per-dataset operating points of `detect infer`. Entries are validated against the shipped
boxes.json schema, exactly as `detect infer` writes them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import numpy as np

from data_prep.codestreams import DEFAULT_MAX_IMAGE_PIXELS
from data_prep.errors import DetectError
from data_prep.records import KERMANY_SUBTYPES, RSNA_CLASSES, BadFile, DicomHeader
from detect.data.files import LoadedImage, iter_loaded_batches, load_or_fail
from detect.inference.gating import GatedPredictor, GatedViews, load_gate
from detect.inference.postprocess import postprocess_prediction
from detect.inference.predictor import LoadedModel, ModelInput, Predictor, load_predictor
from detect.inference.thresholds import ThresholdChoice, pick_operating_point
from detect.outputs.boxes_json import prediction_to_json, validate_entry
from detect.predictions import ImagePrediction, OperatingPoint, PostprocessSettings, RawPrediction, box_outcome

ARRAY_SOURCE = "<array>"


@dataclass
class PipelineTimes:
    """Where the predicting thread's time went in `Detector.iter_predictions` (seconds): blocked on
    the readers for the next batch (they read and letterbox), or in the predictor (model + map
    back to original pixels). What the caller does with each result (writing it) is neither; its
    wall time minus both is that."""

    waiting_for_reads_s: float = 0.0
    predicting_s: float = 0.0
    n_images: int = 0  # read and predicted (failures not counted)

    def share_of(self, wall_s: float) -> tuple[float, float]:
        """(waiting, predicting) as fractions of `wall_s`."""
        wall = max(wall_s, 1e-9)
        return self.waiting_for_reads_s / wall, self.predicting_s / wall


def finalize_prediction(
    raw: RawPrediction, *, source: str, header: DicomHeader | None, settings: PostprocessSettings, point: OperatingPoint
) -> ImagePrediction:
    """Apply gating / score threshold / shrinking at `point` and attach the header fields."""
    boxes, scores = postprocess_prediction(raw, point.threshold, settings)
    pneumonia = bool(raw.pneumonia_probability >= point.threshold)
    return ImagePrediction(
        source=source,
        patient_id=(header.patient_id or None) if header is not None else None,
        sop_instance_uid=(header.sop_instance_uid or None) if header is not None else None,
        view_position=(header.view_position or None) if header is not None else None,
        study_instance_uid=(header.identity.study_instance_uid or None)
        if header is not None and header.identity
        else None,
        series_instance_uid=(header.identity.series_instance_uid or None)
        if header is not None and header.identity
        else None,
        pixel_spacing_mm=header.pixel_spacing_mm if header is not None else None,
        width_px=raw.width_px,
        height_px=raw.height_px,
        class_probabilities={n: float(p) for n, p in zip(RSNA_CLASSES, raw.class_probabilities)},
        subtype_probabilities={n: float(p) for n, p in zip(KERMANY_SUBTYPES, raw.subtype_probabilities)},
        pneumonia_probability=float(raw.pneumonia_probability),
        pneumonia=pneumonia,
        operating_point=point,
        box_outcome=box_outcome(pneumonia, len(scores)),
        boxes_xyxy=boxes,
        scores=scores,
    )


def as_grey_uint8(pixels: np.ndarray) -> np.ndarray:
    """An array a caller hands in -> uint8 [H, W]: grey as is, [H, W, 3] RGB averaged to grey as
    the JPEG reader does; anything else is a DetectError saying what was given."""
    array = np.asarray(pixels)
    if array.dtype != np.uint8:
        raise DetectError(f"the image array must be uint8 (0-255, display orientation), got {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 3:
        return cv2.cvtColor(array, cv2.COLOR_RGB2GRAY)
    if array.ndim != 2 or min(array.shape) < 1:
        raise DetectError(f"the image array must be [H, W] or [H, W, 3], got shape {array.shape}")
    return np.ascontiguousarray(array)


@dataclass
class Detector:
    """A loaded model with the post-processing and decision rules of `detect infer`.

    `gate`: a second model (`--gate-with`, detect.inference.gating) whose pneumonia probability
    replaces the detector's own image head's, and whose stored operating points decide.
    """

    loaded: LoadedModel
    settings: PostprocessSettings = PostprocessSettings()
    choice: ThresholdChoice = ThresholdChoice()
    gate: LoadedModel | None = None

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: str | Path | None = None,
        *,
        device: str = "auto",
        settings: PostprocessSettings = PostprocessSettings(),
        pneumonia_threshold: float | None = None,
        threshold_from: str | None = None,
        runs_dir: str | Path = "runs",
        gate_with: str | Path | None = None,
        backend: str | None = None,
    ) -> Detector:
        """Load `checkpoint` (None: the newest runs/*/checkpoints/best.pt; or a file of `detect
        export`) on `device`, run by `backend` (None: what the file is; see load_predictor), and
        the `gate_with` checkpoint as its gate when given."""
        choice = ThresholdChoice(explicit=pneumonia_threshold, dataset=threshold_from)
        loaded = load_predictor(checkpoint, runs_dir=runs_dir, device=device, settings=settings, backend=backend)
        gate = load_gate(gate_with, device=device, settings=settings) if gate_with is not None else None
        choice.offered((gate or loaded).operating_points)  # a --threshold-from the model cannot serve fails now
        return cls(loaded=loaded, settings=settings, choice=choice, gate=gate)

    @property
    def predictor(self) -> Predictor | GatedPredictor:
        """What turns original images into RawPredictions: the model's predictor, or the gated pair."""
        if self.gate is None:
            return self.loaded.predictor
        return GatedPredictor(self.loaded.predictor, self.gate.predictor)

    @property
    def decision_model(self) -> LoadedModel:
        """The model whose pneumonia probability decides (and whose operating points apply)."""
        return self.gate if self.gate is not None else self.loaded

    @property
    def operating_points(self) -> list[OperatingPoint]:
        """The decision thresholds this detector may apply (what boxes.json's settings list)."""
        return self.choice.offered(self.decision_model.operating_points)

    def finalize(self, raw: RawPrediction, image: LoadedImage) -> ImagePrediction:
        point = pick_operating_point(
            self.decision_model.operating_points, self.choice, is_dicom=image.header is not None
        )
        return finalize_prediction(raw, source=image.source, header=image.header, settings=self.settings, point=point)

    def iter_predictions(
        self,
        files: Sequence[Path],
        *,
        batch_size: int = 8,
        workers: int = 2,
        max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
        times: PipelineTimes | None = None,
    ) -> Iterator[tuple[LoadedImage | BadFile, ImagePrediction]]:
        """(what was read, its prediction or failure) for every file, in order, in batches (the
        next batches are read and letterboxed by `workers` background threads while the model
        runs; 0: in this thread, no overlap). A file over `max_pixels` is a failure, found from its header
        before decoding. `times`, when given, is filled with where this thread's time went."""
        if batch_size < 1:
            raise DetectError(f"batch size must be >= 1, got {batch_size}")
        if workers < 0:
            raise DetectError(f"workers must be >= 0 (0: read in the predicting thread), got {workers}")
        times = times if times is not None else PipelineTimes()
        predictor = self.predictor

        # Decoded for the model's input size, as the cache and the training loader decode them;
        # a gated pair (two models, two sizes) reads each image whole.
        target_size_px = predictor.image_size_px if isinstance(predictor, Predictor) else None

        def read_and_prepare(
            path: Path, limit: int
        ) -> tuple[LoadedImage | BadFile, tuple[ModelInput, ModelInput | None] | GatedViews | None]:
            item = load_or_fail(path, limit) if target_size_px is None else load_or_fail(path, limit, target_size_px)
            if not isinstance(item, LoadedImage):
                return item, None
            if item.decoded_from_hw is None:
                return item, predictor.prepare_views(item.pixels)
            return item, predictor.prepare_views(item.pixels, item.decoded_from_hw)

        batches = iter_loaded_batches(files, batch_size, workers, max_pixels=max_pixels, read=read_and_prepare)
        while True:
            started = time.perf_counter()
            batch = next(batches, None)
            times.waiting_for_reads_s += time.perf_counter() - started
            if batch is None:
                return
            started = time.perf_counter()
            raws = iter(predictor.predict_views([views for _, views in batch if views is not None]))
            times.predicting_s += time.perf_counter() - started
            for item, _ in batch:
                if isinstance(item, BadFile):
                    yield item, ImagePrediction(source=item.path, error=item.reason)
                else:
                    times.n_images += 1
                    yield item, self.finalize(next(raws), item)

    def predict_many(self, paths: Sequence[str | Path], *, batch_size: int = 8, workers: int = 2) -> Iterator[dict]:
        """One boxes.json entry per path, in order (an unreadable file gives its failure entry)."""
        for _, prediction in self.iter_predictions([Path(p) for p in paths], batch_size=batch_size, workers=workers):
            entry = prediction_to_json(prediction)
            validate_entry(entry)
            yield entry

    def predict(self, image: str | Path | np.ndarray) -> dict:
        """One image (a path, or a uint8 array) -> its boxes.json entry. A file that cannot be read
        raises its DetectError here (one image: nothing to skip it for)."""
        if isinstance(image, np.ndarray):
            loaded = LoadedImage(source=ARRAY_SOURCE, pixels=as_grey_uint8(image))
            prediction = self.finalize(self.predictor.predict_raw([loaded.pixels])[0], loaded)
        else:
            ((item, prediction),) = list(self.iter_predictions([Path(image)], batch_size=1, workers=1))
            if isinstance(item, BadFile):
                raise DetectError(f"{item.path}: {item.reason}")
        entry = prediction_to_json(prediction)
        validate_entry(entry)
        return entry
