"""Typed records with fixed keys: the contract between ingestion and everything after it.

Coordinate convention (torchvision's detection contract, used everywhere in this project):
    boxes_xyxy: float32 array of shape [N, 4], (x_min, y_min, x_max, y_max) in pixels of the
    ORIGINAL image grid, x to the right, y down, x_max > x_min, y_max > y_min.
    An image without boxes has shape (0, 4), never None.
RSNA's CSV gives (x, y, width, height) with (x, y) the top-left corner; the RSNA parser
converts to xyxy once, and writers (submission CSV, boxes.json) convert back once.

Pixel convention: readers return a 2-D uint8 array [H, W] in display orientation
(0 = black = air on a chest radiograph, 255 = white = bone), i.e. MONOCHROME2 after the
modality LUT, VOI LUT / window and MONOCHROME1 inversion. See `data_prep.dicom`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# The three RSNA image classes, in the fixed index order used by the model head.
RSNA_CLASSES: tuple[str, ...] = ("Normal", "No Lung Opacity / Not Normal", "Lung Opacity")
RSNA_POSITIVE_CLASS = "Lung Opacity"

# Kermany subtypes, in the fixed index order used by the model head.
KERMANY_SUBTYPES: tuple[str, ...] = ("normal", "bacterial", "viral")

# 'custom': a folder of the user's own images with a COCO JSON or CSV of labels (data_prep.own_labels).
CUSTOM_DATASET = "custom"
DATASETS: tuple[str, ...] = ("rsna", "kermany", CUSTOM_DATASET)
SPLITS: tuple[str, ...] = ("train", "val", "test")

# Ages above this are impossible for a living patient; RSNA has 148, 150, 151, 153, 155.
MAX_PLAUSIBLE_AGE_YEARS = 120.0


def empty_boxes() -> np.ndarray:
    """A [0, 4] float32 box array: the representation of 'no boxes'."""
    return np.zeros((0, 4), dtype=np.float32)


@dataclass(frozen=True)
class DicomIdentity:
    """What a derived object (DICOM SR, presentation state) copies from its source image: the
    study / series / instance identity and the patient and general-study modules, as text
    ("" where the source has none: these are DICOM type-2 attributes, written empty).

    `frame_of_reference_uid` is None for a projection radiograph without one (most CR/DX).
    Read once with the header (data_prep.dicom), so writers never open the file again.
    """

    study_instance_uid: str
    series_instance_uid: str
    sop_class_uid: str
    patient_name: str = ""
    patient_birth_date: str = ""
    patient_sex: str = ""
    study_date: str = ""
    study_time: str = ""
    study_id: str = ""
    accession_number: str = ""
    referring_physician_name: str = ""
    frame_of_reference_uid: str | None = None
    window_center: float | None = None
    window_width: float | None = None
    presentation_lut_shape: str = ""  # IDENTITY, INVERSE or "" (absent): the source's polarity


@dataclass(frozen=True)
class DicomHeader:
    """The header fields of one DICOM file that this project uses.

    `age_years` is the parsed PatientAge (DICOM AS strings like '058Y', '006M', or RSNA's bare
    '58'), None when absent or unparsable; `age_valid` is False when the value is impossible
    (negative or above MAX_PLAUSIBLE_AGE_YEARS): such values are flagged, never dropped.
    `pixel_spacing_mm` is (row spacing, column spacing) from PixelSpacing (or
    ImagerPixelSpacing), None when absent. `identity`: the fields DICOM SR / GSPS outputs copy.
    """

    path: str
    patient_id: str
    sop_instance_uid: str
    sex: str | None
    age_years: float | None
    age_valid: bool
    view_position: str | None
    pixel_spacing_mm: tuple[float, float] | None
    rows: int
    columns: int
    photometric_interpretation: str
    bits_allocated: int
    bits_stored: int
    transfer_syntax_uid: str
    modality: str | None = None
    number_of_frames: int = 1
    samples_per_pixel: int = 1
    identity: DicomIdentity | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ImageRecord:
    """One image of either dataset, as written to the manifest (one row per image).

    - `image_id`: RSNA patientId (which names one image), the Kermany path relative to the
      `chest_xray/` root without extension (e.g. 'train/PNEUMONIA/person1_bacteria_1'), or a
      custom image's path relative to its folder (with its extension).
    - `path`: the file, relative to the dataset root given to `detect prepare`.
    - `rsna_class`: one of RSNA_CLASSES for RSNA images and for custom ones (the RSNA class of
      their project label: opacity, normal, abnormal; see data_prep.own_labels), None for Kermany.
    - `target`: 1 = pneumonia (RSNA 'Lung Opacity' / Kermany PNEUMONIA), 0 = not.
    - `subtype`: one of KERMANY_SUBTYPES for Kermany, None for RSNA.
    - `has_box_labels`: True when the absence of boxes is informative (RSNA: a negative image
      is a true negative for the detector). False for Kermany, which carries no boxes at all:
      the detector must never learn 'no opacity here' from it.
    - `boxes_xyxy`: float32 [N, 4], see the module docstring.
    - `split`: one of SPLITS, or None before splitting.
    - header fields: from the DICOM header (RSNA) or the JPEG itself (Kermany: size only).
    - `pixel_spacing_mm`: (row spacing, column spacing) in mm, DicomHeader's pair unchanged
      (rows and columns can differ on hospital exports), None when the file has none.
    """

    image_id: str
    dataset: str
    path: str
    patient_id: str
    target: int
    has_box_labels: bool
    boxes_xyxy: np.ndarray = field(default_factory=empty_boxes)
    rsna_class: str | None = None
    subtype: str | None = None
    split: str | None = None
    height: int | None = None
    width: int | None = None
    sex: str | None = None
    age_years: float | None = None
    age_valid: bool = True
    view_position: str | None = None
    pixel_spacing_mm: tuple[float, float] | None = None
    source_split: str | None = None  # Kermany: the folder the file came from (train/val/test)

    def __post_init__(self) -> None:
        boxes = np.asarray(self.boxes_xyxy, dtype=np.float32).reshape(-1, 4)
        object.__setattr__(self, "boxes_xyxy", boxes)
        if self.pixel_spacing_mm is not None:
            # A bare float here would be ambiguous (row? both?): only a pair is accepted.
            spacing = self.pixel_spacing_mm
            if not isinstance(spacing, (tuple, list, np.ndarray)) or len(spacing) != 2:
                raise ValueError(f"pixel_spacing_mm must be (row, column) in mm or None, got {spacing!r}")
            object.__setattr__(self, "pixel_spacing_mm", (float(spacing[0]), float(spacing[1])))

    def to_row(self) -> dict[str, Any]:
        r"""A flat dict for the manifest CSV; boxes as a JSON list of [x1, y1, x2, y2], the pixel
        spacing as 'row\column' text (DICOM's multi-value form, e.g. '0.139\0.143'), each
        number the shortest text that reads back to the same float."""
        row = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        row["boxes_xyxy"] = json.dumps([[round(float(v), 3) for v in b] for b in self.boxes_xyxy], allow_nan=False)
        if self.pixel_spacing_mm is not None:
            row["pixel_spacing_mm"] = "\\".join(repr(v) for v in self.pixel_spacing_mm)
        return row


MANIFEST_COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(ImageRecord))


@dataclass(frozen=True)
class BadFile:
    """A file that could not be used, and why: reported in summaries and outputs, never dropped silently."""

    path: str
    reason: str
