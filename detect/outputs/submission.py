"""Kaggle RSNA CSVs: write and read submissions, read the training labels.

Submission (`stage_2_sample_submission.csv` format), one row per image:

    patientId,PredictionString
    0004cfab-14fd-4e49-80ba-63a80b6bddd6,0.9500 264.0 152.0 213.0 379.0 0.6100 562.0 152.0 256.0 453.0
    00313ee0-9eaa-42f4-b0ab-c148ed3241cd,

PredictionString is space-joined groups `conf x y width height`: (x, y) the top-left corner,
in ORIGINAL image pixels (the 1024 grid for RSNA), boxes by descending confidence, conf with
4 decimals and coordinates with 1 decimal; an empty string means no boxes.

The training labels (`stage_2_train_labels.csv`) are read by data_prep.rsna.read_label_boxes.

The reader raises LabelFileError('<file>: line N: <problem>') for anything malformed: the line is
the physical line of the file (the header is line 1).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from data_prep.atomic import write_text_atomic
from data_prep.errors import LabelFileError, printable
from data_prep.geometry import xywh_to_xyxy, xyxy_to_xywh
from data_prep.records import empty_boxes
from data_prep.spreadsheet import is_formula_like

SUBMISSION_COLUMNS: tuple[str, ...] = ("patientId", "PredictionString")


@dataclass(frozen=True)
class SubmissionRow:
    """One image's boxes: `boxes_xyxy` float32 [N, 4] in original pixels, `scores` float32 [N]."""

    patient_id: str
    boxes_xyxy: np.ndarray = field(default_factory=empty_boxes)
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))

    def __post_init__(self) -> None:
        boxes = np.asarray(self.boxes_xyxy, dtype=np.float32).reshape(-1, 4)
        scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        if len(boxes) != len(scores):
            raise ValueError(f"{self.patient_id}: {len(boxes)} boxes but {len(scores)} scores")
        object.__setattr__(self, "boxes_xyxy", boxes)
        object.__setattr__(self, "scores", scores)


def format_prediction_string(boxes_xyxy: np.ndarray, scores: np.ndarray) -> str:
    """'conf x y width height ...' by descending confidence; '' when there are no boxes."""
    boxes = np.asarray(boxes_xyxy, dtype=np.float32).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    order = np.argsort(-scores, kind="stable")
    xywh = xyxy_to_xywh(boxes[order])
    groups = [
        f"{float(conf):.4f} {x:.1f} {y:.1f} {w:.1f} {h:.1f}"
        for conf, (x, y, w, h) in zip(scores[order], xywh.astype(np.float64))
    ]
    return " ".join(groups)


def write_submission(path: str | Path, rows: Iterable[SubmissionRow]) -> Path:
    """Write a Kaggle submission CSV, atomically (data_prep.atomic: OutputWriteError, the previous
    file kept). Duplicate patientIds are a ValueError (Kaggle rejects them), and nothing is written."""
    out = Path(path)
    seen: set[str] = set()
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(SUBMISSION_COLUMNS)
    for row in rows:
        if row.patient_id in seen:
            raise ValueError(f"duplicate patientId '{row.patient_id}' in submission {out}")
        seen.add(row.patient_id)
        writer.writerow([row.patient_id, format_prediction_string(row.boxes_xyxy, row.scores)])
    return write_text_atomic(out, buffer.getvalue())


def formula_warnings(rows: Iterable[SubmissionRow]) -> list[str]:
    """One warning per patientId a spreadsheet would read as a formula (data_prep.spreadsheet). The
    Kaggle format needs the exact ID, so the submission keeps it; the warning says not to open the
    file in a spreadsheet."""
    return [
        f"{printable(row.patient_id[:80])}: patientId starts with '{printable(row.patient_id[0])}', which a "
        "spreadsheet would run as a formula; kept as is in the submission (Kaggle needs the exact ID): "
        "do not open that file in a spreadsheet"
        for row in rows
        if is_formula_like(row.patient_id)
    ]


def submission_rows_from_entries(entries: Iterable[dict[str, Any]]) -> tuple[list[SubmissionRow], list[str]]:
    """The submission rows of boxes.json entries -> (rows, patientIds seen more than once).

    Failed files have no row (they have no prediction). The patientId is the DICOM PatientID,
    else the file name without extension. A patientId seen twice keeps its first row: Kaggle
    rejects duplicates, and the caller warns about each one. Boxes are taken as boxes.json
    holds them (2 decimals), so the CSV says what boxes.json says.
    """
    rows, seen, duplicates = [], set(), []
    for entry in entries:
        if entry.get("error") is not None:
            continue
        sid = entry.get("patient_id") or Path(entry["source"]).stem
        if sid in seen:
            duplicates.append(sid)
            continue
        seen.add(sid)
        boxes = entry.get("boxes") or []
        xywh = np.array([[b["x"], b["y"], b["width"], b["height"]] for b in boxes], dtype=np.float64).reshape(-1, 4)
        rows.append(SubmissionRow(sid, xywh_to_xyxy(xywh), np.array([b["score"] for b in boxes], dtype=np.float32)))
    return rows, duplicates


def _open_csv(path: Path) -> tuple[Any, list[str]]:
    """Open a CSV -> (csv reader positioned after the header, stripped header cells)."""
    if not path.is_file():
        raise LabelFileError(path, "file not found")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise LabelFileError(path, "not a UTF-8 text CSV file") from None
    reader = csv.reader(text.splitlines())
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise LabelFileError(path, "empty file (expected a header line)") from None
    except csv.Error as exc:
        raise LabelFileError(path, f"line 1: not valid CSV ({exc})") from None
    return reader, header


def _rows(path: Path, reader: Any) -> Iterator[tuple[int, list[str]]]:
    """(physical line number, cells) of each non-blank row."""
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise LabelFileError(path, f"line {reader.line_num}: not valid CSV ({exc})") from None
        if not row or all(not cell.strip() for cell in row):
            continue
        yield reader.line_num, row


def parse_prediction_string(text: str, *, path: str | Path = "<string>", line: int = 0) -> SubmissionRow:
    """Parse 'conf x y width height ...' into a SubmissionRow with an empty patient id."""
    tokens = text.split()
    where = f"line {line}: " if line else ""
    if len(tokens) % 5:
        raise LabelFileError(
            path, f"{where}PredictionString has {len(tokens)} numbers, expected groups of 5 (conf x y width height)"
        )
    try:
        values = np.array([float(t) for t in tokens], dtype=np.float64).reshape(-1, 5)
    except ValueError:
        bad = next(t for t in tokens if not _is_float(t))
        raise LabelFileError(path, f"{where}PredictionString has a non-number '{bad}'") from None
    if not np.isfinite(values).all():
        raise LabelFileError(path, f"{where}PredictionString has a non-finite number")
    if (values[:, 3:] < 0).any():
        raise LabelFileError(path, f"{where}PredictionString has a negative box width or height")
    return SubmissionRow("", xywh_to_xyxy(values[:, 1:]), values[:, 0])


def _is_float(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def read_submission(path: str | Path) -> dict[str, SubmissionRow]:
    """Read a Kaggle submission CSV -> {patientId: SubmissionRow} in file order.

    Raises LabelFileError naming the file and line for: a wrong header, a row without exactly
    two fields, an empty patientId, a duplicate patientId, a PredictionString that is not groups
    of 5 finite numbers, a negative width or height.
    """
    p = Path(path)
    reader, header = _open_csv(p)
    if tuple(header) != SUBMISSION_COLUMNS:
        raise LabelFileError(p, f"line 1: header is {','.join(header)!r}, expected 'patientId,PredictionString'")
    out: dict[str, SubmissionRow] = {}
    first_line: dict[str, int] = {}
    for line, row in _rows(p, reader):
        if len(row) != 2:
            raise LabelFileError(p, f"line {line}: expected 2 fields (patientId,PredictionString), got {len(row)}")
        patient_id = row[0].strip()
        if not patient_id:
            raise LabelFileError(p, f"line {line}: empty patientId")
        if patient_id in out:
            raise LabelFileError(
                p, f"line {line}: duplicate patientId '{patient_id}' (first on line {first_line[patient_id]})"
            )
        parsed = parse_prediction_string(row[1], path=p, line=line)
        out[patient_id] = SubmissionRow(patient_id, parsed.boxes_xyxy, parsed.scores)
        first_line[patient_id] = line
    return out
