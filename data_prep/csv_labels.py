"""A label CSV for a folder of the user's own images -> LabelItems (checked in data_prep.own_labels).

    path,label,x,y,width,height,patient_id,split
    images/a.dcm,opacity,120,200,80,140,P001,train     one row per box ...
    images/a.dcm,opacity,400,210,90,150,P001,train
    images/b.png,normal,,,,,P002,                      ... or one row per image (box fields empty)

`path` (relative to the data folder) and `label` are required; the box columns x, y, width,
height (pixels, (x, y) the top-left corner), `patient_id` and `split` (train/val/test) are
optional, as columns and as cells. A row's box is all four fields or none.

Problems of the file as a whole (not a CSV, no header, no `path` or `label` column) raise
LabelFileError naming the file. Problems of one row never stop the reading: a box field that
is not a number, a box given in part, an unknown split become the row's `problem` (its image is
then left out, with this reason); an exact repeat of an earlier row, or a row without a path,
is skipped and listed in `skipped_rows`.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from data_prep.errors import LabelFileError
from data_prep.own_labels import LabelItem, LabelTable, parse_split

REQUIRED_COLUMNS: tuple[str, ...] = ("path", "label")
BOX_COLUMNS: tuple[str, ...] = ("x", "y", "width", "height")
OPTIONAL_COLUMNS: tuple[str, ...] = (*BOX_COLUMNS, "patient_id", "split")


def _read_frame(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skip_blank_lines=False, encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise LabelFileError(
            path, "file is empty (expected a header line: path,label[,x,y,width,height][,patient_id][,split])"
        ) from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LabelFileError(path, f"not a readable CSV: {first}") from None
    if not isinstance(frame.index, pd.RangeIndex):
        raise LabelFileError(path, f"line 2: more fields than the {len(frame.columns)} in the header")
    frame.columns = [str(c).strip().casefold() for c in frame.columns]
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise LabelFileError(
            path,
            f"missing column {', '.join(repr(c) for c in missing)} (expected "
            f"path,label[,x,y,width,height][,patient_id][,split]; found {','.join(frame.columns)})",
        )
    partial = [c for c in BOX_COLUMNS if c in frame.columns]
    if partial and len(partial) != len(BOX_COLUMNS):
        absent = [c for c in BOX_COLUMNS if c not in frame.columns]
        raise LabelFileError(
            path, f"box columns {','.join(partial)} without {','.join(absent)} (a box needs all of x,y,width,height)"
        )
    for column in OPTIONAL_COLUMNS:
        if column not in frame.columns:
            frame[column] = ""
    return frame[list(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)].fillna("").apply(lambda col: col.str.strip())


def _box(cells: tuple[str, ...]) -> tuple[tuple[float, float, float, float] | None, str | None]:
    """(box or None, problem or None) from the four box cells."""
    given = [c for c in cells if c]
    if not given:
        return None, None
    if len(given) != len(BOX_COLUMNS):
        return None, "a box needs all of x,y,width,height (or none of them for an image-level label)"
    values = []
    for column, text in zip(BOX_COLUMNS, cells):
        try:
            value = float(text)
        except ValueError:
            return None, f"column {column!r}: {text!r} is not a number"
        if not math.isfinite(value):
            return None, f"column {column!r}: {text!r} is not a finite number"
        values.append(value)
    return (values[0], values[1], values[2], values[3]), None


def read_csv_labels(path: str | Path) -> LabelTable:
    """Read a label CSV (see the module docstring) into a LabelTable, one LabelItem per kept row."""
    path = Path(path)
    if not path.is_file():
        raise LabelFileError(path, "file not found")
    frame = _read_frame(path)
    name = path.name
    items: list[LabelItem] = []
    skipped: list[str] = []
    first_line: dict[tuple[str, ...], int] = {}
    for index, values in enumerate(frame.itertuples(index=False, name=None)):
        line = index + 2
        if not any(values):
            continue  # a blank line
        file_name, label, *rest = values
        box_cells, patient_id, split_text = tuple(rest[:4]), rest[4], rest[5]
        where = f"{name} line {line}"
        if not file_name:
            skipped.append(f"{where}: no path, skipped")
            continue
        key = tuple(values)
        if key in first_line:
            skipped.append(f"{where}: duplicate of line {first_line[key]}, skipped")
            continue
        first_line[key] = line
        box, problem = _box(box_cells)
        if not label and problem is None:
            problem = "empty label"
        try:
            split = parse_split(split_text)
        except ValueError as exc:
            split, problem = None, problem or str(exc)
        items.append(
            LabelItem(
                file_name=file_name,
                where=where,
                label=label or None,
                box_xywh=box,
                patient_id=patient_id or None,
                split=split,
                problem=problem,
            )
        )
    return LabelTable(
        path=path,
        items=items,
        skipped_rows=skipped,
        has_patient_ids=bool((frame["patient_id"] != "").any()),
        has_splits=bool((frame["split"] != "").any()),
    )
