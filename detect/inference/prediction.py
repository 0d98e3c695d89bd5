"""`Prediction`: what `Detector.predict` returns for one image, typed, with its boxes.json entry.

    p = detector.predict("scan.dcm")
    p.boxes / p.xyxy        float32 [N, 4] (x_min, y_min, x_max, y_max), ORIGINAL pixels, by score
    p.xywh                  float32 [N, 4] (x_min, y_min, width, height): RSNA's and COCO's order
    p.scores                float32 [N]
    p.decision              Decision: pneumonia, probability, threshold, its source and dataset
    p.class_probabilities   {'Normal': .., 'Lung Opacity': .., 'No Lung Opacity / Not Normal': ..}
    p.subtype_probabilities {'normal': .., 'bacterial': .., 'viral': ..}
    p.header                the DICOM header fields (data_prep.records.DicomHeader), None otherwise
    p.to_dict()             exactly the boxes.json `images[]` entry `detect infer` writes
    p.plot()                the overlay `detect infer --overlay` writes, as a uint8 BGR array

A file that could not be read (in a list or a folder) is a Prediction with `error` set and no
decision: reported in order, never dropped. The arrays are read-only views: a Prediction is
frozen all the way down.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from data_prep.records import DicomHeader
from detect.outputs.boxes_json import prediction_to_json
from detect.outputs.overlay import draw_overlay
from detect.predictions import ImagePrediction


@dataclass(frozen=True)
class Decision:
    """The pneumonia decision `probability >= threshold`; `source` says where the threshold
    came from (e.g. "F1-optimal on rsna val (epoch 5, 72 images)"), `dataset` whose it is."""

    pneumonia: bool
    probability: float
    threshold: float
    source: str
    dataset: str


def _read_only(array: np.ndarray) -> np.ndarray:
    view = array.view()
    view.flags.writeable = False
    return view


@dataclass(frozen=True)
class Prediction:
    """One image's prediction (see the module docstring)."""

    source: str
    error: str | None
    width_px: int | None
    height_px: int | None
    boxes: np.ndarray
    scores: np.ndarray
    decision: Decision | None
    box_outcome: str | None
    class_probabilities: dict[str, float] | None
    subtype_probabilities: dict[str, float] | None
    header: DicomHeader | None = field(default=None, repr=False)
    _record: ImagePrediction | None = field(default=None, repr=False, compare=False)
    _pixels: np.ndarray | None = field(default=None, repr=False, compare=False)

    @classmethod
    def of(
        cls, record: ImagePrediction, *, pixels: np.ndarray | None = None, header: DicomHeader | None = None
    ) -> Prediction:
        """The Prediction of a finalized record; `pixels` (display uint8 [H, W]) are kept for `plot`."""
        point = record.operating_point
        decision = (
            Decision(
                pneumonia=bool(record.pneumonia),
                probability=float(record.pneumonia_probability or 0.0),
                threshold=float(point.threshold),
                source=point.source,
                dataset=point.dataset,
            )
            if point is not None and record.error is None
            else None
        )
        return cls(
            source=record.source,
            error=record.error,
            width_px=record.width_px,
            height_px=record.height_px,
            boxes=_read_only(np.asarray(record.boxes_xyxy, dtype=np.float32).reshape(-1, 4)),
            scores=_read_only(np.asarray(record.scores, dtype=np.float32).reshape(-1)),
            decision=decision,
            box_outcome=record.box_outcome,
            class_probabilities=dict(record.class_probabilities) if record.class_probabilities else None,
            subtype_probabilities=dict(record.subtype_probabilities) if record.subtype_probabilities else None,
            header=header,
            _record=record,
            _pixels=None if pixels is None else _read_only(pixels),
        )

    @property
    def ok(self) -> bool:
        """The image was read and predicted (no `error`)."""
        return self.error is None

    @property
    def pneumonia(self) -> bool | None:
        return self.decision.pneumonia if self.decision is not None else None

    @property
    def pneumonia_probability(self) -> float | None:
        return self.decision.probability if self.decision is not None else None

    @property
    def image(self) -> np.ndarray | None:
        """The display pixels the model saw (uint8 [H, W], read-only), as decoded; None on failure."""
        return self._pixels

    @property
    def xyxy(self) -> np.ndarray:
        """float32 [N, 4]: x_min, y_min, x_max, y_max in ORIGINAL pixels (torchvision's order)."""
        return self.boxes

    @property
    def xywh(self) -> np.ndarray:
        """float32 [N, 4]: x_min, y_min, width, height in ORIGINAL pixels (RSNA's and COCO's order)."""
        out = self.boxes.copy()
        out[:, 2:] -= out[:, :2]
        out.flags.writeable = False
        return out

    def as_record(self) -> ImagePrediction:
        """The record detect.outputs writes (boxes.json, the submission, SR / GSPS, overlays)."""
        if self._record is None:
            raise ValueError("this Prediction was not made by a Detector and has no record")
        return self._record

    def to_dict(self, *, anonymize: bool = False) -> dict:
        """The boxes.json `images[]` entry (`anonymize`: no patient ID), as `detect infer` writes it."""
        return prediction_to_json(self.as_record(), anonymize=anonymize)

    def plot(self) -> np.ndarray:
        """The image with boxes and probabilities drawn (uint8 BGR [H', W', 3]), as `--overlay` writes it."""
        if self._pixels is None:
            raise ValueError(f"{self.source}: no image to draw ({self.error or 'the pixels were not kept'})")
        return draw_overlay(np.asarray(self._pixels), self.as_record())
