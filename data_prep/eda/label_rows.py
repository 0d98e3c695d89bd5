"""The RSNA labels table for `detect eda`, read with explicit dtypes and checked per patient with
array operations, so a hospital export of millions of rows fits in a few hundred MB.

    table = read_label_table(path)    LabelTable, or None when a cell is malformed (the caller
                                      then reads the file the strict way, which names the line)
    table.rows_of(codes)              {patientId: [LabelRow, ...]} for a few patients only

The rules are the labels file's (data_prep.rsna._check_patient_rows): every row of a patient
agrees on Target; a Target=0 row has no box field, a Target=1 row all four; width and height are
positive. They are evaluated here for all rows at once (`suspect` marks each patient breaking
one); only the suspect patients go through the per-patient functions, which word the reason.
Reading every cell as a Python string and every row as an object (the strict reader) took a
2-million-row table to 3.3 GB; here a row costs its floats, a patient its id.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from data_prep.rsna import LABEL_COLUMNS, LabelRow

BOX_COLUMNS: tuple[str, ...] = ("x", "y", "width", "height")
_DTYPES = {"patientId": str, **{c: np.float64 for c in (*BOX_COLUMNS, "Target")}}


@dataclass
class LabelTable:
    """The labels file, blank lines and exact duplicate rows left out.

    `rows`: one row per label row: `code` (the patient's index in `patients`), `line` (1-based
    line of the file), x, y, width, height (float64, NaN when empty), Target (0.0 or 1.0).
    Per patient, in order of first appearance: `patients` (ids), `target` (of its first row),
    `n_boxes` (Target=1 rows) and `suspect` (a rule of the labels file is broken).
    """

    rows: pd.DataFrame
    patients: np.ndarray
    target: np.ndarray
    n_boxes: np.ndarray
    suspect: np.ndarray
    n_label_rows: int  # non-blank rows, duplicates included
    duplicates: int
    missing_box_cells: dict[str, int]  # empty box cells on Target=1 rows (duplicates included)
    n_positive_rows: int

    def rows_of(self, codes: np.ndarray) -> dict[str, list[LabelRow]]:
        """The LabelRows of the patients `codes` (the per-patient functions' input), by patient."""
        picked = self.rows[self.rows["code"].isin(codes)]
        out: dict[str, list[LabelRow]] = {str(self.patients[c]): [] for c in codes}
        for code, line, x, y, w, h, target in picked[["code", "line", *BOX_COLUMNS, "Target"]].itertuples(
            index=False, name=None
        ):
            box = (x, y, w, h)
            present = sum(not np.isnan(v) for v in box)
            out[str(self.patients[code])].append(
                LabelRow(
                    line=int(line),
                    patient_id=str(self.patients[code]),
                    target=int(target),
                    box_fields_present=present,
                    box_xywh=tuple(float(v) for v in box) if present == 4 else None,
                )
            )  # type: ignore[arg-type]
        return out


def read_label_table(path: str | Path) -> LabelTable | None:
    """The labels CSV as a LabelTable; None when it cannot be read this way (a cell that is not a
    number, a Target other than 0 / 1, an empty patientId, a header with other names...): the
    strict reader (data_prep.rsna.read_train_labels) then reports the first problem by line."""
    try:
        frame = pd.read_csv(
            path,
            usecols=list(LABEL_COLUMNS),
            dtype=_DTYPES,
            keep_default_na=False,
            na_values=[""],
            skip_blank_lines=False,
            encoding="utf-8-sig",
        )
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError):
        return None
    if not isinstance(frame.index, pd.RangeIndex):
        return None
    return label_table_from_frame(frame)


def label_table_from_frame(frame: pd.DataFrame) -> LabelTable | None:
    """A LabelTable from the labels frame as read (row i is line i + 2; empty cells NaN, numbers
    float64); None when a row has no patientId, a Target other than 0 / 1 or an infinite number.
    The ids become integer codes first, so every later step works on numbers only."""
    codes, patients = pd.factorize(frame.pop("patientId"), sort=False)  # an empty id: code -1
    spaced = patients.str.startswith((" ", "\t")) | patients.str.endswith((" ", "\t"))  # no new strings
    if spaced.any():  # ' p' and 'p' are one patient, as the strict reader has it
        remap, patients = pd.factorize(patients.str.strip(), sort=False)
        codes = np.where(codes >= 0, remap[codes], -1)
    frame.insert(0, "code", codes.astype(np.int64))
    frame["line"] = np.arange(2, len(frame) + 2, dtype=np.int64)
    numbers = list(BOX_COLUMNS) + ["Target"]
    blank = (frame["code"] < 0).to_numpy() & frame[numbers].isna().all(axis=1).to_numpy()
    if blank.any():  # each filter below copies the frame: only when it removes something
        frame = frame[~blank]
    if (
        (frame["code"] < 0).any()
        or not frame["Target"].isin((0.0, 1.0)).all()
        or np.isinf(frame[list(BOX_COLUMNS)].to_numpy()).any()
    ):
        return None
    positive = (frame["Target"] == 1.0).to_numpy()
    missing = {c: int(frame[c].isna().to_numpy()[positive].sum()) for c in BOX_COLUMNS}
    n_label_rows, n_positive_rows = len(frame), int(positive.sum())
    duplicated = frame.duplicated(subset=["code", *numbers], keep="first").to_numpy()
    rows = (frame[~duplicated] if duplicated.any() else frame).reset_index(drop=True)
    del frame
    used = np.unique(rows["code"].to_numpy())  # every patient has a row left (duplicates keep the first)
    n = len(patients)
    assert len(used) == n
    codes = rows["code"].to_numpy()
    count = np.bincount(codes, minlength=n)
    target = rows["Target"].to_numpy()
    positives = np.bincount(codes, weights=target, minlength=n).astype(np.int64)
    present = rows[list(BOX_COLUMNS)].notna().to_numpy().sum(axis=1)
    width, height = rows["width"].to_numpy(), rows["height"].to_numpy()
    with np.errstate(invalid="ignore"):
        bad_row = np.where(target == 0.0, present > 0, (present < 4) | ~((width > 0) & (height > 0)))
    bad = np.bincount(codes, weights=bad_row, minlength=n) > 0
    mixed = (positives > 0) & (positives < count)
    first_target = np.zeros(n, dtype=np.int8)
    first_row = np.unique(codes, return_index=True)[1]
    first_target[codes[first_row]] = target[first_row].astype(np.int8)
    return LabelTable(
        rows=rows,
        patients=np.asarray(patients, dtype=object),
        target=first_target,
        n_boxes=positives,
        suspect=bad | mixed,
        n_label_rows=n_label_rows,
        duplicates=int(duplicated.sum()),
        missing_box_cells=missing,
        n_positive_rows=n_positive_rows,
    )
