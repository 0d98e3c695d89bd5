"""RSNA Pneumonia Detection Challenge (stage 2): the two label CSVs + the DICOM folder -> ImageRecords.

Layout (see docs/data-formats.md):

    stage_2_train_labels.csv          patientId,x,y,width,height,Target   (one row per box;
                                      negatives: one row with empty x,y,width,height, Target=0)
    stage_2_detailed_class_info.csv   patientId,class   (same row count as labels: a patient
                                      with 3 boxes appears 3 times; exact duplicates collapse)
    stage_2_train_images/<patientId>.dcm
    stage_2_test_images/<patientId>.dcm   (unlabeled)

One patientId names one image, so image_id == patient_id. Boxes are converted once, here,
from (x, y, width, height) with (x, y) the top-left corner to float32 xyxy pixels.

The rules one patient's rows of the labels file must follow are checked in one place
(`_check_patient_rows`): all rows agree on Target; a Target=0 row has all four box fields
empty; a Target=1 row has all four; width and height are positive. Both readers apply them:
`read_label_boxes` (the labels file alone, e.g. as ground truth for a submission) and
`parse_rsna` (labels + class info + images, which adds the class and image-bounds rules).

Two kinds of problems, two ways out:
- the CSV itself is broken (missing column, a number that is not a number): LabelFileError
  naming the file, the line and the value; nothing sensible can be built from it.
  `read_label_boxes` treats a patient that breaks a rule the same way.
- in `parse_rsna`, one image's labels are inconsistent (Target disagrees with the class, a
  positive row without a box, a box outside the image, an unknown class): that image becomes
  a BadFile with the reason, is left out of the records, and the rest is parsed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from data_prep.codestreams import DEFAULT_MAX_IMAGE_PIXELS
from data_prep.dicom import scan_dicom_headers
from data_prep.errors import DetectError, LabelFileError
from data_prep.geometry import xywh_to_xyxy
from data_prep.records import (
    RSNA_CLASSES,
    RSNA_POSITIVE_CLASS,
    BadFile,
    DicomHeader,
    ImageRecord,
    empty_boxes,
)

LABELS_CSV = "stage_2_train_labels.csv"
CLASS_INFO_CSV = "stage_2_detailed_class_info.csv"
TRAIN_IMAGES_DIR = "stage_2_train_images"
TEST_IMAGES_DIR = "stage_2_test_images"

LABEL_COLUMNS: tuple[str, ...] = ("patientId", "x", "y", "width", "height", "Target")
CLASS_INFO_COLUMNS: tuple[str, ...] = ("patientId", "class")
_BOX_COLUMNS: tuple[str, ...] = ("x", "y", "width", "height")


@dataclass(frozen=True)
class LabelRow:
    """One row of stage_2_train_labels.csv. `box_xywh` is None when all four box fields are empty."""

    line: int  # 1-based line in the file (the header is line 1)
    patient_id: str
    box_xywh: tuple[float, float, float, float] | None
    target: int
    box_fields_present: int  # how many of x, y, width, height were non-empty (0 or 4 when well-formed)


@dataclass(frozen=True)
class RsnaLabels:
    """Both label CSVs, grouped by patientId (in order of first appearance)."""

    rows_by_patient: dict[str, list[LabelRow]]
    classes_by_patient: dict[str, list[str]]  # distinct class names per patient (one when consistent)
    duplicate_label_rows: int  # exact repeats in stage_2_train_labels.csv, collapsed
    duplicate_class_rows: int  # exact repeats in stage_2_detailed_class_info.csv, collapsed


@dataclass(frozen=True)
class RsnaParseResult:
    """What `parse_rsna` found. `records` hold one ImageRecord per usable image (split=None)."""

    records: list[ImageRecord]
    bad_files: list[BadFile]
    images_without_labels: list[str]  # patientIds with a .dcm but no row in either CSV
    labels_without_images: list[str]  # patientIds with CSV rows but no .dcm
    duplicate_class_rows: int
    test_image_paths: list[str]  # stage_2_test_images/*.dcm relative to the root, unlabeled
    duplicate_label_rows: int = 0
    junk_files: list[str] = field(default_factory=list)  # non-.dcm files in the image folder


def read_label_csv(path: str | Path, required_columns: tuple[str, ...]) -> pd.DataFrame:
    """Read a label CSV as text: every cell a stripped str, empty cells ''.

    Reading everything as str keeps patientIds intact and lets the caller tell an empty box
    field (a negative) from a malformed one. Row i of the frame is line i + 2 of the file
    (blank lines are kept as all-empty rows so that numbering stays right).
    """
    path = Path(path)
    if not path.is_file():
        raise LabelFileError(path, "file not found")
    try:
        frame = pd.read_csv(
            path,
            dtype=str,
            keep_default_na=False,
            skip_blank_lines=False,
            encoding="utf-8-sig",
        )
    except pd.errors.EmptyDataError:
        raise LabelFileError(
            path, "file is empty (expected a header line: " + ",".join(required_columns) + ")"
        ) from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LabelFileError(path, f"not a readable CSV: {first}") from None
    if not isinstance(frame.index, pd.RangeIndex):
        # pandas silently turns the first column into an index when data rows are one field longer.
        raise LabelFileError(path, f"line 2: more fields than the {len(frame.columns)} in the header")
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in required_columns if c not in frame.columns]
    if missing:
        raise LabelFileError(
            path,
            f"missing column {', '.join(repr(c) for c in missing)} "
            f"(expected {','.join(required_columns)}; found {','.join(frame.columns)})",
        )
    # Short rows leave NaN even with keep_default_na=False: make every missing cell ''.
    frame = frame[list(required_columns)].fillna("").apply(lambda col: col.str.strip())
    return frame


def _parse_float(path: Path, line: int, column: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise LabelFileError(path, f"line {line}: column {column!r}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise LabelFileError(path, f"line {line}: column {column!r}: {text!r} is not a finite number")
    return value


def _parse_target(path: Path, line: int, text: str) -> int:
    if text not in ("0", "1"):
        # Tolerate '1.0' / '0.0' (a CSV round-tripped through a float column), nothing else.
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if value not in (0.0, 1.0):
            raise LabelFileError(path, f"line {line}: column 'Target': {text!r} is not 0 or 1")
        return int(value)
    return int(text)


def read_train_labels(path: str | Path) -> tuple[dict[str, list[LabelRow]], int]:
    """stage_2_train_labels.csv -> ({patientId: rows}, number of exact duplicate rows collapsed)."""
    path = Path(path)
    frame = read_label_csv(path, LABEL_COLUMNS)
    rows_by_patient: dict[str, list[LabelRow]] = {}
    seen: set[tuple[str, ...]] = set()
    duplicates = 0
    for index, values in enumerate(frame.itertuples(index=False, name=None)):
        line = index + 2
        if not any(values):
            continue  # a blank line
        patient_id, *box_text, target_text = values
        if not patient_id:
            raise LabelFileError(path, f"line {line}: empty patientId")
        target = _parse_target(path, line, target_text)
        box = [_parse_float(path, line, column, text) if text else None for column, text in zip(_BOX_COLUMNS, box_text)]
        key = (patient_id, *box_text, str(target))
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        present = sum(v is not None for v in box)
        box_xywh = tuple(box) if present == 4 else None
        rows_by_patient.setdefault(patient_id, []).append(
            LabelRow(line=line, patient_id=patient_id, box_xywh=box_xywh, target=target, box_fields_present=present)  # type: ignore[arg-type]
        )
    return rows_by_patient, duplicates


def read_class_info(path: str | Path) -> tuple[dict[str, list[str]], int]:
    """stage_2_detailed_class_info.csv -> ({patientId: distinct classes}, exact duplicate rows collapsed)."""
    path = Path(path)
    frame = read_label_csv(path, CLASS_INFO_COLUMNS)
    classes_by_patient: dict[str, list[str]] = {}
    duplicates = 0
    for index, (patient_id, class_name) in enumerate(frame.itertuples(index=False, name=None)):
        line = index + 2
        if not patient_id and not class_name:
            continue  # a blank line
        if not patient_id:
            raise LabelFileError(path, f"line {line}: empty patientId")
        if not class_name:
            raise LabelFileError(path, f"line {line}: empty class for patientId {patient_id}")
        classes = classes_by_patient.setdefault(patient_id, [])
        if class_name in classes:
            duplicates += 1
        else:
            classes.append(class_name)
    return classes_by_patient, duplicates


def read_rsna_labels(root: str | Path) -> RsnaLabels:
    """Read both CSVs under `root`."""
    root = Path(root)
    rows, dup_labels = read_train_labels(root / LABELS_CSV)
    classes, dup_classes = read_class_info(root / CLASS_INFO_CSV)
    return RsnaLabels(
        rows_by_patient=rows,
        classes_by_patient=classes,
        duplicate_label_rows=dup_labels,
        duplicate_class_rows=dup_classes,
    )


def _format_box(box_xywh: tuple[float, ...]) -> str:
    return "[" + ", ".join(f"{v:g}" for v in box_xywh) + "]"


class _PatientRowsError(Exception):
    """A patient's label rows break a rule: the offending `lines` of the labels file and the `problem`.

    It names no file, so it never leaves this module: each caller turns it into a
    LabelFileError that names the labels file (read_label_boxes) or the image (parse_rsna).
    """

    def __init__(self, lines: list[int], problem: str) -> None:
        super().__init__(problem)
        self.lines = tuple(lines)
        self.problem = problem

    def where(self) -> str:
        """'line 3' or 'lines 3, 4'."""
        if len(self.lines) == 1:
            return f"line {self.lines[0]}"
        return "lines " + ", ".join(str(line) for line in self.lines)


def _check_patient_rows(patient_id: str, rows: list[LabelRow]) -> tuple[int, list[LabelRow]]:
    """Apply the labels file's rules to one patient's rows -> (target, the rows with a box, in line order).

    The rules, checked in this order: all rows agree on Target; a Target=0 row has all of
    x, y, width, height empty; a Target=1 row has all four; width and height are > 0. Boxes
    are not checked against an image size here (the labels file does not know it).
    Raises _PatientRowsError for the first rule broken. `rows` must not be empty.
    """
    if len({row.target for row in rows}) > 1:
        raise _PatientRowsError(
            [row.line for row in rows], f"patientId {patient_id} has both Target=0 and Target=1 rows"
        )
    boxed: list[LabelRow] = []
    for row in rows:
        if row.target == 0:
            if row.box_fields_present:
                raise _PatientRowsError(
                    [row.line], "Target=0 row has box coordinates (expected empty x,y,width,height)"
                )
            continue
        if row.box_xywh is None:
            raise _PatientRowsError([row.line], "Target=1 row needs all of x,y,width,height")
        _, _, w, h = row.box_xywh
        if w <= 0 or h <= 0:
            raise _PatientRowsError([row.line], f"box width and height must be positive, got {w:g}x{h:g}")
        boxed.append(row)
    return rows[0].target, boxed


def _rows_to_boxes_xyxy(boxed: list[LabelRow]) -> np.ndarray:
    if not boxed:
        return empty_boxes()
    return xywh_to_xyxy(np.asarray([row.box_xywh for row in boxed], dtype=np.float32))


def read_label_boxes(path: str | Path) -> dict[str, np.ndarray]:
    """Read stage_2_train_labels.csv alone -> {patientId: boxes_xyxy float32 [N, 4]} in file order.

    Negatives (Target=0, empty coordinates) map to a (0, 4) array. Exact duplicate rows
    collapse (as in `read_train_labels`). Raises LabelFileError('<file>: line N: <problem>'),
    N the physical line (the header is line 1), for a broken cell (see `read_train_labels`),
    for a file without data rows, and for the first patient whose rows break a rule of
    `_check_patient_rows`: rows that disagree on Target ('lines 2, 3: ...'), a Target=1 row
    without all four box fields, a Target=0 row with any, a non-positive width or height.
    Boxes are not checked against an image size.
    """
    path = Path(path)
    rows_by_patient, _duplicates = read_train_labels(path)
    if not rows_by_patient:
        raise LabelFileError(path, "no label rows after the header")
    return {
        patient_id: label_rows_boxes_xyxy(path, patient_id, rows)[1] for patient_id, rows in rows_by_patient.items()
    }


def label_rows_boxes_xyxy(path: str | Path, patient_id: str, rows: list[LabelRow]) -> tuple[int, np.ndarray]:
    """One patient's rows of the labels file `path` -> (target, boxes_xyxy float32 [N, 4]).

    The labels file's rules only (`_check_patient_rows`; no class, no image size): what
    `read_label_boxes` applies to every patient, for a caller that reports a patient breaking
    them and goes on (`detect eda`). Raises LabelFileError('<path>: line N: <problem>').
    """
    try:
        target, boxed = _check_patient_rows(patient_id, rows)
    except _PatientRowsError as exc:
        raise LabelFileError(path, f"{exc.where()}: {exc.problem}") from None
    return target, _rows_to_boxes_xyxy(boxed)


def rsna_boxes_xyxy(
    image_path: str,
    patient_id: str,
    rows: list[LabelRow],
    class_names: list[str],
    height: int | None,
    width: int | None,
) -> tuple[str, int, np.ndarray]:
    """Check one image's label rows and class; return (rsna_class, target, boxes_xyxy float32 [N, 4]).

    Raises LabelFileError(image_path, 'patientId <id>: <reason>') for the first problem, in
    this order: no label row; a rule of the labels file broken (`_check_patient_rows`, reason
    'line N of stage_2_train_labels.csv: <problem>'); no, conflicting or unknown class; Target
    disagreeing with the class; a box outside the image. `height`/`width` (from the DICOM
    header) bound the boxes; when None only non-negative corners are checked.
    """
    who = f"patientId {patient_id}"
    if not rows:
        raise LabelFileError(image_path, f"{who}: no row in {LABELS_CSV}")
    try:
        target, boxed = _check_patient_rows(patient_id, rows)
    except _PatientRowsError as exc:
        raise LabelFileError(image_path, f"{who}: {exc.where()} of {LABELS_CSV}: {exc.problem}") from None
    if not class_names:
        raise LabelFileError(image_path, f"{who}: no row in {CLASS_INFO_CSV}")
    if len(class_names) > 1:
        raise LabelFileError(image_path, f"{who}: conflicting classes in {CLASS_INFO_CSV}: {class_names}")
    rsna_class = class_names[0]
    if rsna_class not in RSNA_CLASSES:
        raise LabelFileError(
            image_path, f"{who}: unknown class {rsna_class!r} (expected one of {', '.join(map(repr, RSNA_CLASSES))})"
        )
    if (target == 1) != (rsna_class == RSNA_POSITIVE_CLASS):
        raise LabelFileError(
            image_path,
            f"{who}: Target={target} but class is {rsna_class!r} (Target=1 exactly when class is {RSNA_POSITIVE_CLASS!r})",
        )
    for row in boxed:
        x, y, w, h = row.box_xywh  # type: ignore[misc]
        outside = x < 0 or y < 0
        if width is not None and height is not None:
            outside = outside or x + w > width or y + h > height
        if outside:
            grid = f"the {width}x{height} image" if width is not None else "the image (negative corner)"
            raise LabelFileError(
                image_path,
                f"{who}: box {_format_box(row.box_xywh)} (x,y,width,height; line {row.line}) extends outside {grid}",  # type: ignore[arg-type]
            )
    return rsna_class, target, _rows_to_boxes_xyxy(boxed)


def _dcm_ids(folder: Path) -> tuple[dict[str, Path], list[Path]]:
    """{stem: path} of the .dcm files directly in `folder`, and every other file (junk)."""
    images: dict[str, Path] = {}
    junk: list[Path] = []
    if not folder.is_dir():
        return images, junk
    for entry in sorted(folder.iterdir()):
        if not entry.is_file():
            continue
        if entry.suffix.lower() == ".dcm" and not entry.name.startswith("."):
            images[entry.stem] = entry
        else:
            junk.append(entry)
    return images, junk


def _record_from_header(
    patient_id: str, path: str, rsna_class: str, target: int, boxes_xyxy: np.ndarray, header: DicomHeader | None
) -> ImageRecord:
    return ImageRecord(
        image_id=patient_id,
        dataset="rsna",
        path=path,
        patient_id=patient_id,
        target=target,
        has_box_labels=True,
        boxes_xyxy=boxes_xyxy,
        rsna_class=rsna_class,
        height=header.rows if header is not None else None,
        width=header.columns if header is not None else None,
        sex=header.sex if header is not None else None,
        age_years=header.age_years if header is not None else None,
        age_valid=header.age_valid if header is not None else True,
        view_position=header.view_position if header is not None else None,
        pixel_spacing_mm=header.pixel_spacing_mm if header is not None else None,
    )


def parse_rsna(
    root: str | Path, *, read_headers: bool = True, workers: int = 1, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
) -> RsnaParseResult:
    """Parse an RSNA stage-2 folder into one ImageRecord per labeled, readable training image.

    `read_headers` scans every labeled DICOM's header (no pixel decoding) for size, sex, age,
    view position and pixel spacing, and reports unreadable files as BadFiles (pixel data cut
    off, inconsistent with the header or over `max_pixels` included); with False the
    records carry no header fields and boxes are checked only for sign and size.
    Paths in records and BadFiles are relative to `root`. Records are sorted by image_id.
    Raises LabelFileError when a CSV is missing or malformed.
    """
    root = Path(root)
    labels = read_rsna_labels(root)
    images, junk = _dcm_ids(root / TRAIN_IMAGES_DIR)
    test_images, _ = _dcm_ids(root / TEST_IMAGES_DIR)

    labeled_ids = set(labels.rows_by_patient) | set(labels.classes_by_patient)
    images_without_labels = sorted(set(images) - labeled_ids)
    labels_without_images = sorted(labeled_ids - set(images))
    matched = sorted(labeled_ids & set(images))

    def rel(patient_id: str) -> str:
        return f"{TRAIN_IMAGES_DIR}/{images[patient_id].name}"

    bad_files: list[BadFile] = []
    headers: dict[str, DicomHeader] = {}
    if read_headers and matched:
        scanned, bad_scans = scan_dicom_headers(
            [images[pid] for pid in matched], workers=workers, max_pixels=max_pixels
        )
        headers = {Path(h.path).stem: h for h in scanned}
        for bad in bad_scans:
            stem = Path(bad.path).stem
            bad_files.append(BadFile(path=rel(stem) if stem in images else bad.path, reason=bad.reason))
    unreadable = {Path(b.path).stem for b in bad_files}

    records: list[ImageRecord] = []
    for patient_id in matched:
        if patient_id in unreadable:
            continue
        header = headers.get(patient_id)
        if read_headers and header is None:
            # The scanner must account for every path; a silent gap would drop an image unseen.
            bad_files.append(BadFile(path=rel(patient_id), reason="header scan returned no result for this file"))
            continue
        try:
            rsna_class, target, boxes = rsna_boxes_xyxy(
                rel(patient_id),
                patient_id,
                labels.rows_by_patient.get(patient_id, []),
                labels.classes_by_patient.get(patient_id, []),
                header.rows if header is not None else None,
                header.columns if header is not None else None,
            )
        except DetectError as exc:
            bad_files.append(BadFile(path=rel(patient_id), reason=getattr(exc, "reason", str(exc))))
            continue
        records.append(_record_from_header(patient_id, rel(patient_id), rsna_class, target, boxes, header))

    return RsnaParseResult(
        records=records,
        bad_files=sorted(bad_files, key=lambda b: b.path),
        images_without_labels=images_without_labels,
        labels_without_images=labels_without_images,
        duplicate_class_rows=labels.duplicate_class_rows,
        test_image_paths=[f"{TEST_IMAGES_DIR}/{p.name}" for p in test_images.values()],
        duplicate_label_rows=labels.duplicate_label_rows,
        junk_files=[f"{TRAIN_IMAGES_DIR}/{p.name}" for p in junk],
    )
