"""The typed records a prediction travels in, from the predictor to every output.

    RawPrediction    the model's view of one image in ORIGINAL pixels, before post-processing
    OperatingPoint   the pneumonia decision threshold of one dataset and where it was chosen
    PostprocessSettings  how boxes are post-processed (gating, score threshold, shrinking, TTA)
    ImagePrediction  one image's final prediction (post-processed boxes, decision), or its failure

Box contract (torchvision's, kept everywhere in this project): `boxes_xyxy` float32 [N, 4]
(x_min, y_min, x_max, y_max) in pixels of the ORIGINAL image, `scores` float32 [N]; no boxes
is shape (0, 4) / (0,), never None. These are plain numpy records: outputs/ serialises them
without knowing the model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from data_prep.errors import ConfigError
from data_prep.records import empty_boxes

# The decision threshold when nothing better is known: no positive image in the validation
# split to choose one on, and no threshold stored in the checkpoint.
DEFAULT_PNEUMONIA_THRESHOLD = 0.5

# ImagePrediction.box_outcome: why an entry has the boxes it has.
BOX_OUTCOMES: tuple[str, ...] = (
    "boxes",  # at least one box cleared the score threshold
    "not_pneumonia",  # the image was decided "no pneumonia" (boxes are dropped with gating)
    "no_box_above_score_thresh",  # decided pneumonia, but no box scored above score_thresh
)


TTA_MERGE_METHODS: tuple[str, ...] = ("wbf", "nms")


@dataclass(frozen=True)
class PostprocessSettings:
    """The post-processing options; the defaults are what `detect infer` and `detect eval` use."""

    score_thresh: float = 0.3  # on the final score (after gating / TTA); boxes below are dropped
    gate: bool = True  # box score x image pneumonia probability
    drop_below_threshold: bool = True  # with gate: no boxes on images below the decision threshold
    shrink_factor: float = 0.875  # width/height scale about the box centre; 1.0 = off
    tta: bool = False  # horizontal-flip test-time augmentation
    tta_merge: str = "wbf"  # how the two views' boxes are merged: wbf | nms
    tta_iou_thresh: float = 0.55  # boxes of the two views overlapping more than this are one box

    def __post_init__(self) -> None:
        if not 0.0 <= self.score_thresh <= 1.0:
            raise ConfigError(f"score threshold must lie in [0, 1], got {self.score_thresh}")
        if not 0.0 < self.shrink_factor <= 1.0:
            raise ConfigError(f"shrink factor must lie in (0, 1] (1.0 = off), got {self.shrink_factor}")
        if self.tta_merge not in TTA_MERGE_METHODS:
            raise ConfigError(
                f"TTA merge method '{self.tta_merge}' is unknown; choose one of: {', '.join(TTA_MERGE_METHODS)}"
            )
        if not 0.0 < self.tta_iou_thresh < 1.0:
            raise ConfigError(f"TTA IoU threshold must lie in (0, 1), got {self.tta_iou_thresh}")

    def to_dict(self) -> dict[str, object]:
        return {
            "score_thresh": self.score_thresh,
            "gate": self.gate,
            "drop_below_threshold": self.drop_below_threshold,
            "shrink_factor": self.shrink_factor,
            "tta": self.tta,
            "tta_merge": self.tta_merge,
            "tta_iou_thresh": self.tta_iou_thresh,
        }


def empty_scores() -> np.ndarray:
    return np.zeros(0, dtype=np.float32)


@dataclass(frozen=True)
class RawPrediction:
    """The model's view of one image, before gating / score threshold / shrinking.

    `boxes_xyxy` in ORIGINAL pixels (mapped back from the letterboxed input, clipped to the
    image, TTA views merged when on) with the detector's `scores`; `class_probabilities`
    float [3] in RSNA_CLASSES order; `subtype_probabilities` float [3] in KERMANY_SUBTYPES
    order; `pneumonia_probability` the image-level probability (mean over TTA views).
    """

    width_px: int
    height_px: int
    boxes_xyxy: np.ndarray
    scores: np.ndarray
    class_probabilities: np.ndarray
    subtype_probabilities: np.ndarray
    pneumonia_probability: float


@dataclass(frozen=True)
class OperatingPoint:
    """The pneumonia decision `probability >= threshold` for images of one dataset.

    `dataset`: 'rsna' or 'kermany' (the population the threshold was chosen on), or 'any' for a
    threshold given on the command line. `source`: where it came from, in words, as boxes.json
    and the eval report print it, e.g. "F1-optimal on rsna val (epoch 5, 72 images)".
    """

    dataset: str
    threshold: float
    source: str

    def __post_init__(self) -> None:
        if not (
            isinstance(self.threshold, (int, float)) and math.isfinite(self.threshold) and 0.0 <= self.threshold <= 1.0
        ):
            raise ValueError(f"pneumonia threshold must lie in [0, 1], got {self.threshold!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "threshold": float(self.threshold), "source": self.source}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> OperatingPoint:
        return cls(dataset=str(values["dataset"]), threshold=float(values["threshold"]), source=str(values["source"]))


@dataclass(frozen=True)
class ImagePrediction:
    """One image's final prediction (after post-processing), or its failure (`error` set).

    `boxes_xyxy` in ORIGINAL pixels by descending `scores`; `pneumonia` is
    `pneumonia_probability >= operating_point.threshold`; `box_outcome` one of BOX_OUTCOMES.
    """

    source: str
    error: str | None = None
    patient_id: str | None = None
    sop_instance_uid: str | None = None
    view_position: str | None = None
    study_instance_uid: str | None = None
    series_instance_uid: str | None = None
    pixel_spacing_mm: tuple[float, float] | None = None  # (row, column), DicomHeader's pair
    width_px: int | None = None
    height_px: int | None = None
    class_probabilities: dict[str, float] | None = None
    subtype_probabilities: dict[str, float] | None = None
    pneumonia_probability: float | None = None
    pneumonia: bool | None = None
    operating_point: OperatingPoint | None = None
    box_outcome: str | None = None
    boxes_xyxy: np.ndarray = field(default_factory=empty_boxes)
    scores: np.ndarray = field(default_factory=empty_scores)

    @property
    def submission_id(self) -> str:
        """The Kaggle patientId: the DICOM PatientID, else the file name without extension."""
        return self.patient_id or Path(self.source).stem


def box_outcome(pneumonia: bool, n_boxes: int) -> str:
    """The BOX_OUTCOMES entry of an image with this decision and this many final boxes."""
    if n_boxes > 0:
        return "boxes"
    return "no_box_above_score_thresh" if pneumonia else "not_pneumonia"
