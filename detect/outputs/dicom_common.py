"""What the DICOM SR and GSPS writers share: the algorithm record, the source image as a
minimal dataset, boxes as closed polylines, the codes, and the one function that writes a file.

    AlgorithmInfo(name, version, model_sha256, ...)      who made the result (IHE AI Results)
    source_dataset(header, anonymize=...)                DicomHeader -> the attributes highdicom copies
    box_polylines(prediction)                            boxes -> [N, 5, 2] closed POLYLINEs, pixels
    write_dicom_file(path, dataset)                      the single place SR/GSPS files are written

Coordinates: DICOM SCOORD and GSPS PIXEL graphic data are (column, row) with 0.0\\0.0 the
top-left corner of the top-left pixel and Columns\\Rows the bottom-right corner of the last
pixel: the same continuous grid as this project's xyxy boxes, so x -> column, y -> row with
no offset. The corners are the ones boxes.json writes (rounded to BOX_DECIMALS), so the two
outputs of one run agree to the digit. The codes are listed and justified in docs/dicom-output.md.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.coding import Code
from pydicom.valuerep import PersonName

from data_prep.atomic import atomic_write
from data_prep.errors import DetectError
from data_prep.records import DicomHeader
from data_prep.safe_paths import is_dicom_uid, shown
from detect.outputs.boxes_json import boxes_to_json
from detect.predictions import ImagePrediction

MANUFACTURER = "detect (open source)"
SR_SERIES_NUMBER = 9001  # high numbers, so viewers list the AI series after the acquired ones
GSPS_SERIES_NUMBER = 9002

# Codes (see docs/dicom-output.md for the reasons).
CODE_OPACITY = Code("112001", "DCM", "Opacity")  # CID 6102 chest findings: what a box marks
CODE_PNEUMONIA = Code("233604007", "SCT", "Pneumonia")  # the image-level finding
CODE_LUNG = Code("39607008", "SCT", "Lung")  # finding site of every box
CODE_IMAGING_FINDING = Code("365853002", "SCT", "Imaging finding")  # finding category
CODE_CERTAINTY = Code("111012", "DCM", "Certainty of Finding")  # box score / image probability
CODE_PRESENT = Code("52101004", "SCT", "Present")
CODE_ABSENT = Code("272519000", "SCT", "Absent")
CODE_WIDTH = Code("103355008", "SCT", "Width")
CODE_HEIGHT = Code("121207", "DCM", "Height")
CODE_PROCEDURE = Code("399208008", "SCT", "Plain chest X-ray")
CODE_DEVICE = Code("121007", "DCM", "Device")  # observer type of an algorithm
UNIT_MM = Code("mm", "UCUM", "millimeter")
UNIT_RATIO = Code("1", "UCUM", "no units")  # a probability in [0, 1]
UTF8_CHARACTER_SET = "ISO_IR 192"


class DicomOutputError(DetectError):
    """A DICOM SR / GSPS cannot be made for one source (no UIDs in its header, ...)."""


@dataclass(frozen=True)
class AlgorithmInfo:
    """The algorithm behind a result, as IHE AI Results and TID 4019 ask: its name and version,
    and the checkpoint's SHA-256 (which, with the source UID, fixes every derived UID)."""

    name: str
    version: str
    model_sha256: str
    parameters: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.name or not self.version or not self.model_sha256:
            raise ValueError("AlgorithmInfo needs a name, a version and the model's SHA-256")


def check_source(header: DicomHeader | None, source: str) -> DicomHeader:
    """The header, when it carries what a derived object needs; else a DicomOutputError."""
    if header is None or header.identity is None:
        raise DicomOutputError(f"{source}: not a DICOM file; DICOM SR / GSPS are written for DICOM inputs only")
    missing = [
        name
        for name, value in (
            ("StudyInstanceUID", header.identity.study_instance_uid),
            ("SeriesInstanceUID", header.identity.series_instance_uid),
            ("SOPInstanceUID", header.sop_instance_uid),
            ("SOPClassUID", header.identity.sop_class_uid),
        )
        if not value
    ]
    if missing:
        raise DicomOutputError(
            f"{source}: no {', '.join(missing)} in the header; cannot reference it from an SR / GSPS"
        )
    for name, value in (
        ("StudyInstanceUID", header.identity.study_instance_uid),
        ("SeriesInstanceUID", header.identity.series_instance_uid),
        ("SOPInstanceUID", header.sop_instance_uid),
        ("SOPClassUID", header.identity.sop_class_uid),
    ):
        if not is_dicom_uid(value):
            # The SOP Instance UID names the result files: a header value never builds a path unchecked.
            raise DicomOutputError(
                f"{source}: {name} '{shown(value)}' is not a valid DICOM UID; no SR / GSPS written for it"
            )
    return header


def source_dataset(header: DicomHeader, *, anonymize: bool = False) -> Dataset:
    """A pixel-less dataset of the source image with the attributes highdicom copies into a
    derived object (patient, study, series, instance, image size). With `anonymize`, patient
    ID, name and birth date are written empty (type 2: present, no value)."""
    identity = header.identity
    assert identity is not None  # check_source first
    ds = Dataset()
    ds.SOPClassUID = identity.sop_class_uid
    ds.SOPInstanceUID = header.sop_instance_uid
    ds.StudyInstanceUID = identity.study_instance_uid
    ds.SeriesInstanceUID = identity.series_instance_uid
    ds.PatientID = "" if anonymize else header.patient_id
    ds.PatientName = "" if anonymize else identity.patient_name
    ds.PatientBirthDate = "" if anonymize else identity.patient_birth_date
    ds.PatientSex = identity.patient_sex if identity.patient_sex in ("M", "F", "O") else ""
    ds.StudyDate = identity.study_date
    ds.StudyTime = identity.study_time
    ds.StudyID = identity.study_id
    ds.AccessionNumber = identity.accession_number
    ds.ReferringPhysicianName = identity.referring_physician_name
    ds.Modality = header.modality or "OT"
    ds.Rows = header.rows
    ds.Columns = header.columns
    ds.SamplesPerPixel = header.samples_per_pixel
    ds.PhotometricInterpretation = header.photometric_interpretation
    ds.BitsAllocated = header.bits_allocated
    ds.BitsStored = header.bits_stored
    if header.pixel_spacing_mm is not None:
        ds.PixelSpacing = list(header.pixel_spacing_mm)
    if identity.frame_of_reference_uid:
        ds.FrameOfReferenceUID = identity.frame_of_reference_uid
    return ds


def character_set(source: Dataset) -> str | None:
    """The SpecificCharacterSet of an object derived from `source`: UTF-8 (ISO_IR 192) when any
    text copied from it is not ASCII, else None (the default repertoire, no attribute written).

    The source's names arrive decoded (pydicom reads its own SpecificCharacterSet: ISO_IR 100,
    ISO_IR 144, ISO 2022 IR 87, ...); UTF-8 writes every one of them unchanged, all three
    component groups of a Japanese name included. Without it pydicom would write '?' for each
    character outside ASCII, and that corrupted name would be filed back into the PACS.
    """
    for element in source:
        value = element.value
        texts = value if isinstance(value, (list, tuple)) else [value]
        if any(isinstance(t, (str, PersonName)) and not str(t).isascii() for t in texts):
            return UTF8_CHARACTER_SET
    return None


@contextmanager
def source_names_copied_as_they_are() -> Iterator[None]:
    """Silence highdicom's warning on a one-component PatientName: the source's name is copied
    verbatim (RSNA writes the patient ID there), and dciodvfy already reports it on the source."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*unlikely to represent the intended person name.*")
        yield


def box_polylines(prediction: ImagePrediction) -> tuple[np.ndarray, list[float]]:
    """The prediction's boxes as closed 5-point polylines, float64 [N, 5, 2] of (column, row)
    in the source's pixel grid, (x1,y1) (x2,y1) (x2,y2) (x1,y2) (x1,y1), with their scores:
    the corners and scores boxes.json writes for the same prediction."""
    boxes = boxes_to_json(prediction.boxes_xyxy, prediction.scores)
    lines = np.zeros((len(boxes), 5, 2), dtype=np.float64)
    for i, box in enumerate(boxes):
        x1, y1 = box["x"], box["y"]
        x2, y2 = round(x1 + box["width"], 2), round(y1 + box["height"], 2)
        lines[i] = [[x1, y1], [x2, y1], [x2, y2], [x1, y2], [x1, y1]]
    return lines, [box["score"] for box in boxes]


def decision_text(prediction: ImagePrediction) -> str:
    """One line a reader sees: the decision, the probability and the threshold it was cut at."""
    point = prediction.operating_point
    threshold = f" (threshold {point.threshold:.3f})" if point is not None else ""
    verdict = "pneumonia" if prediction.pneumonia else "no pneumonia"
    return f"{verdict}: p={float(prediction.pneumonia_probability or 0.0):.3f}{threshold}"


def write_dicom_file(path: str | Path, dataset: Dataset) -> Path:
    """Write one SR / GSPS as a DICOM Part 10 file (folders created), atomically
    (data_prep.atomic): the single write function of the DICOM outputs."""
    out = Path(path)
    with atomic_write(out) as handle:
        dataset.save_as(handle, enforce_file_format=True)
    return out
