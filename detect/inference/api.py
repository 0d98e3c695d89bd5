"""The Python API: `from detect import Detector, Prediction, DetectError`.

    detector = Detector.from_checkpoint("runs/demo/checkpoints/best.pt")            # settings: defaults
    detector = Detector.from_checkpoint(path, tta=True, pneumonia_threshold=0.4)   # ... or overrides
    p = detector.predict("scan.dcm")             # a Prediction (detect.inference.prediction)
    p.boxes, p.scores, p.decision.pneumonia, p.to_dict(), p.plot()
    detector.predict(["a.dcm", "b.png"])         # a list -> a list; a folder -> a list
    detector.predict(ds)                         # a pydicom.Dataset, a numpy array (uint8 or
                                                 # uint16), a PIL image, a torch tensor
    for p in detector.predict_many(paths):       # streams, in order; a file that cannot be read
        ...                                      # is a Prediction with `error` set
    gated = Detector.from_checkpoint(DET, gate_with=CLS)  # CLS's pneumonia probability gates and decides

One prediction path, three public steps, which `detect infer`, `detect serve` and the API all
take (`detect eval`, `detect compare` and validation use the Predictor's two model steps):

    Detector.prepare(input)       file, array, image, dataset -> Prepared: the pixels read
                                  (detect.inference.inputs) and the model input(s) made
    Detector.run(batch)           Prepared[] -> RawPrediction[]: the model(s), outputs in
                                  ORIGINAL pixels (detect.inference.predictor, .gating)
    Detector.finalize(raw, p)     -> Prediction: the decision at the image's operating point
                                  (detect.inference.thresholds) and post-processing

The settings of every step are one InferenceSettings (detect.inference.settings).
"""

from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from data_prep.errors import DetectError
from data_prep.records import KERMANY_SUBTYPES, RSNA_CLASSES, BadFile, DicomHeader
from detect.data.files import LoadedImage, iter_loaded_batches
from detect.inference.gating import GatedPredictor, GatedPrepared, load_gate
from detect.inference.inputs import expand, is_many, source_name, to_loaded_image
from detect.inference.postprocess import postprocess_prediction
from detect.inference.prediction import Prediction
from detect.inference.predictor import LoadedModel, Predictor, PreparedImage, load_predictor
from detect.inference.settings import InferenceSettings
from detect.inference.thresholds import pick_operating_point
from detect.predictions import ImagePrediction, OperatingPoint, PostprocessSettings, RawPrediction, box_outcome


@dataclass
class PipelineTimes:
    """Where the predicting thread's time went in `Detector.predict_many` (seconds): blocked on
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


@dataclass(frozen=True)
class Prepared:
    """One input after `Detector.prepare`: the pixels read (`image`) and the model input(s)."""

    image: LoadedImage
    model_input: PreparedImage | GatedPrepared


class Detector:
    """A loaded model with the settings of a prediction (InferenceSettings): see the module docstring.

    `gate`: a second model (`gate_with`, detect.inference.gating) whose pneumonia probability
    replaces the detector's own image head's, and whose stored operating points decide.
    """

    def __init__(self, model: LoadedModel, settings: InferenceSettings, gate: LoadedModel | None = None) -> None:
        self._model = model
        self._settings = settings
        self._gate = gate
        self._choice = settings.threshold_choice
        self._choice.offered(self.decision_model.operating_points)  # a threshold_from the model cannot serve fails now
        self._predictor: Predictor | GatedPredictor = (
            model.predictor if gate is None else GatedPredictor(model.predictor, gate.predictor)
        )

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: str | Path | None = None,
        settings: InferenceSettings | None = None,
        *,
        runs_dir: str | Path = "runs",
        gate_with: str | Path | None = None,
        **overrides: Any,
    ) -> Detector:
        """Load `checkpoint` (None: the newest runs/*/checkpoints/best.pt; or a file of `detect
        export`) with `settings` (default InferenceSettings()) changed by `overrides` (any
        InferenceSettings field, e.g. tta=True, device="cpu"), and the `gate_with` checkpoint
        as its gate when given."""
        settings = (settings or InferenceSettings()).replace(**overrides)
        post = settings.postprocess
        loaded = load_predictor(
            checkpoint, runs_dir=runs_dir, device=settings.device, settings=post, backend=settings.backend
        )
        gate = load_gate(gate_with, device=settings.device, settings=post) if gate_with is not None else None
        return cls(loaded, settings, gate)

    def __repr__(self) -> str:
        gate = f", gate={self._gate.model_info['name']!r}" if self._gate is not None else ""
        return (
            f"Detector(model={self._model.model_info['name']!r}, checkpoint={str(self._model.checkpoint_path)!r}{gate})"
        )

    # ------------------------------------------------------------------ what it is

    @property
    def settings(self) -> InferenceSettings:
        return self._settings

    @property
    def model(self) -> LoadedModel:
        """The detector (or classifier) checkpoint, loaded."""
        return self._model

    @property
    def gate(self) -> LoadedModel | None:
        """The gating model (`gate_with`), or None."""
        return self._gate

    @property
    def model_info(self) -> dict[str, Any]:
        """boxes.json's `model` block."""
        return self._model.model_info

    @property
    def predictor(self) -> Predictor | GatedPredictor:
        """The model step: the model's predictor, or the gated pair."""
        return self._predictor

    @property
    def decision_model(self) -> LoadedModel:
        """The model whose pneumonia probability decides (and whose operating points apply)."""
        return self._gate if self._gate is not None else self._model

    @property
    def operating_points(self) -> list[OperatingPoint]:
        """The decision thresholds this detector may apply (what boxes.json's settings list)."""
        return self._choice.offered(self.decision_model.operating_points)

    def threshold_rule(self) -> str:
        """How an image gets its threshold, in words (boxes.json's settings)."""
        return self._choice.rule()

    def with_settings(self, settings: InferenceSettings) -> Detector:
        """The same loaded model(s) with other per-prediction settings (a server's per-request
        settings): nothing is reloaded. Backend, device and the reading settings must be this
        detector's own (they decided how the model was loaded)."""
        for name in ("backend", "device"):
            if getattr(settings, name) != getattr(self._settings, name):
                raise DetectError(f"{name} cannot change on a loaded model ({getattr(self._settings, name)!r})")
        if settings.tta == self._settings.tta:
            return Detector(self._model, settings, self._gate)
        gate = _with_tta(self._gate, settings.tta) if self._gate is not None else None
        return Detector(_with_tta(self._model, settings.tta), settings, gate)

    # ------------------------------------------------------------------ the three steps

    def _target_size_px(self) -> int | None:
        # Decoded for the model's input size, as the cache and the training loader decode them;
        # a gated pair (two models, two sizes) reads each image whole.
        return self._predictor.image_size_px if isinstance(self._predictor, Predictor) else None

    def _model_input(self, image: LoadedImage) -> PreparedImage | GatedPrepared:
        if isinstance(self._predictor, Predictor):
            return self._predictor.prepare(image.pixels, image.decoded_from_hw)
        return self._predictor.prepare(image.pixels)

    def prepare(self, item: Any) -> Prepared:
        """Step 1: one input (path, array, PIL image, pydicom Dataset, tensor or LoadedImage) ->
        its pixels and model input(s). Raises a DetectError for what cannot be read."""
        image = to_loaded_image(item, self._settings.max_pixels, self._target_size_px())
        return Prepared(image, self._model_input(image))

    def run(self, batch: list[Prepared]) -> list[RawPrediction]:
        """Step 2: the model(s) on a batch -> RawPredictions in ORIGINAL pixels, in order."""
        return self._predictor.run([p.model_input for p in batch])  # type: ignore[arg-type]

    def finalize(self, raw: RawPrediction, prepared: Prepared | LoadedImage) -> Prediction:
        """Step 3: the decision at the image's operating point, post-processed boxes, header fields."""
        image = prepared.image if isinstance(prepared, Prepared) else prepared
        point = pick_operating_point(
            self.decision_model.operating_points, self._choice, is_dicom=image.header is not None
        )
        record = finalize_prediction(
            raw, source=image.source, header=image.header, settings=self._settings.postprocess, point=point
        )
        return Prediction.of(record, pixels=image.pixels, header=image.header)

    # ------------------------------------------------------------------ whole predictions

    def predict_many(
        self,
        inputs: Iterable[Any],
        *,
        batch_size: int | None = None,
        workers: int | None = None,
        times: PipelineTimes | None = None,
    ) -> Iterator[Prediction]:
        """A Prediction per input, in order, in batches (`batch_size`, default the settings'): the
        next batches are read and prepared by `workers` background threads (default the
        settings', else 2; 0: in this thread) while the model runs. A folder stands for its
        files. An input that cannot be read gives a Prediction with `error` set, in its place.
        `times`, when given, is filled with where this thread's time went."""
        batch_size = batch_size if batch_size is not None else self._settings.batch_size
        workers = (
            workers if workers is not None else (self._settings.workers if self._settings.workers is not None else 2)
        )
        if batch_size < 1:
            raise DetectError(f"batch size must be >= 1, got {batch_size}")
        if workers < 0:
            raise DetectError(f"workers must be >= 0 (0: read in the predicting thread), got {workers}")
        items = expand(list(inputs) if not isinstance(inputs, (str, Path)) else inputs)
        times = times if times is not None else PipelineTimes()

        def read_and_prepare(item: Any, _limit: int) -> Prepared | BadFile:
            try:  # `_limit` is the settings' max_pixels, which prepare applies
                return self.prepare(item)
            except DetectError as exc:
                return BadFile(path=source_name(item), reason=getattr(exc, "reason", None) or str(exc))

        batches = iter_loaded_batches(
            items, batch_size, workers, max_pixels=self._settings.max_pixels, read=read_and_prepare
        )
        while True:
            started = time.perf_counter()
            batch = next(batches, None)
            times.waiting_for_reads_s += time.perf_counter() - started
            if batch is None:
                return
            started = time.perf_counter()
            ready = [p for p in batch if isinstance(p, Prepared)]
            raws = iter(self.run(ready))
            times.predicting_s += time.perf_counter() - started
            for item in batch:
                if isinstance(item, BadFile):
                    yield Prediction.of(ImagePrediction(source=item.path, error=item.reason))
                else:
                    times.n_images += 1
                    yield self.finalize(next(raws), item)

    def predict(self, source: Any) -> Prediction | list[Prediction]:
        """One input -> its Prediction; a list or a folder -> a list of Predictions, in order
        (an unreadable file is a Prediction with `error` set). One input that cannot be read
        raises its DetectError (nothing to skip it for)."""
        if is_many(source):
            return list(self.predict_many(source))
        prepared = self.prepare(source)
        (raw,) = self.run([prepared])
        return self.finalize(raw, prepared)


def _with_tta(model: LoadedModel, tta: bool) -> LoadedModel:
    """`model` with a twin of its Predictor whose TTA flag is `tta`: the same class, backend and
    weights (a shallow copy), so a server answers both kinds of request from one loaded model."""
    twin = copy.copy(model.predictor)
    twin.tta = tta
    return dataclasses.replace(model, predictor=twin)
