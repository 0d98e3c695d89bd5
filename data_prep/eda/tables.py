"""What `detect eda` reads -> one table of images, one of boxes, and the data-quality facts.

Two ways in, one shape out (`EdaTables`):

- `tables_from_label_files(labels, class_info=None, headers=None)`: RSNA's tables alone, no
  image. The labels CSV is required; the class-info CSV (not every copy of the data has it) adds
  the three classes; a DICOM header table (one row per image: PatientAge, PatientSex,
  ViewPosition, PixelSpacing, optionally Rows/Columns) adds age, sex, view and spacing. The
  rules are those `detect prepare` applies (data_prep.rsna): a patient breaking one is reported
  with its reason and left out, never dropped silently.
- `tables_from_records(dataset, records, ...)`: the ImageRecords `detect prepare` made from an
  RSNA or Kermany folder, with what it found (bad files, images without labels, duplicates).

The header table's quirks, as torchxrayvision ships the real one
(kaggle_stage_2_train_images_dicom_headers.csv.gz): an unnamed index column, the id in
`PatientID` (the labels say `patientId`) and in `Filename` (`<id>.dcm`), PatientAge as bare
numbers ('58'; five are impossible, 148 to 155), PixelSpacing as one float written with float
noise ('0.14300000000000002'), PatientOrientation empty on every row, and no Rows/Columns.
Ids are matched as text; ages go through the DICOM reader's own parser (`parse_age_years`).

`images` columns (IMAGE_COLUMNS), one row per image, sorted by image_id:
    image_id, patient_id            text (RSNA: both the patientId)
    target                          int 0/1 (1 = pneumonia: RSNA Lung Opacity, Kermany PNEUMONIA)
    rsna_class, subtype             text, or missing (None / NaN: pandas' missing text) (RSNA class
                                    when known; Kermany subtype)
    sex, view                       text or missing ('M'/'F', 'AP'/'PA')
    age_years, age_valid            float (NaN when missing), bool (False: impossible, kept)
    spacing_row_mm, spacing_col_mm  float, NaN when unknown
    height_px, width_px             float, NaN when unknown (the label tables have no size)
    n_boxes, has_box_labels         int; bool (False for Kermany: no box was ever drawn)
    split, source_split             text or missing (prepared split; Kermany's own folder)
`boxes` columns (BOX_COLUMNS), one row per box, ORIGINAL pixels, (x, y) the top-left corner:
    image_id, x, y, width, height
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from data_prep.dicom import parse_age_years
from data_prep.eda.label_rows import BOX_COLUMNS as XYWH
from data_prep.eda.label_rows import LabelTable, label_table_from_frame, read_label_table
from data_prep.errors import DataFormatError, DetectError
from data_prep.geometry import xywh_to_xyxy, xyxy_to_xywh
from data_prep.records import BadFile, ImageRecord
from data_prep.rsna import (
    LABEL_COLUMNS,
    RSNA_CLASSES,
    RSNA_POSITIVE_CLASS,
    LabelRow,
    label_rows_boxes_xyxy,
    read_class_info,
    read_label_csv,
    read_train_labels,
    rsna_boxes_xyxy,
)

IMAGE_COLUMNS: tuple[str, ...] = (
    "image_id",
    "patient_id",
    "target",
    "rsna_class",
    "subtype",
    "sex",
    "view",
    "age_years",
    "age_valid",
    "spacing_row_mm",
    "spacing_col_mm",
    "height_px",
    "width_px",
    "n_boxes",
    "has_box_labels",
    "split",
    "source_split",
)
BOX_COLUMNS: tuple[str, ...] = ("image_id", "x", "y", "width", "height")
_HEADER_FIELDS: tuple[str, ...] = (
    "sex",
    "view",
    "age_years",
    "age_valid",
    "spacing_row_mm",
    "spacing_col_mm",
    "height_px",
    "width_px",
)
# The id column of a header table, in the order tried; Filename holds '<id>.dcm'.
HEADER_ID_COLUMNS: tuple[str, ...] = ("patientId", "PatientID", "Filename")
_EXAMPLES = 20  # ids / files kept per data-quality check; the count is always the full one
# pandas names a column whose header cell is empty 'Unnamed: <i>' (an exported index): not data.
_UNNAMED_COLUMN = re.compile(r"^Unnamed: \d+$")


@dataclass(frozen=True)
class QualityCheck:
    """One data-quality finding: a human-readable `check`, its `count` (None: could not be checked
    from what was read, `note` says why), up to 20 `examples`, and a `note`."""

    check: str
    count: int | None
    examples: tuple[str, ...] = ()
    note: str = ""


@dataclass(frozen=True)
class MissingValues:
    """Empty cells of one column: `missing` of `rows` rows of `table`; `note` says what counts."""

    table: str
    column: str
    missing: int
    rows: int
    note: str = ""


@dataclass(frozen=True)
class SourceFile:
    """A table that was read: its role ('labels', 'class info', 'DICOM headers'), path and data rows."""

    role: str
    path: str
    rows: int


@dataclass(frozen=True)
class EdaSource:
    """Where the tables came from. `mode` is 'tables' (label tables only) or 'images' (a dataset folder)."""

    mode: str
    dataset: str
    files: tuple[SourceFile, ...] = ()
    data_dir: str | None = None
    prepared_dir: str | None = None
    prepared_now: bool = False  # True when `detect eda` ran `detect prepare` on a raw root
    split_seed: int | None = None


@dataclass(frozen=True)
class EdaTables:
    """The tidy tables `stats.compute_eda` reads (columns in the module docstring)."""

    dataset: str  # 'rsna' | 'kermany'
    images: pd.DataFrame
    boxes: pd.DataFrame
    source: EdaSource
    checks: tuple[QualityCheck, ...]
    missing: tuple[MissingValues, ...]
    has_class_info: bool
    has_headers: bool  # age / sex / view / spacing are known (header table, or DICOM headers)


@dataclass(frozen=True)
class HeaderTable:
    """A DICOM header table read by `read_header_table`: `fields` indexed by image id (first row
    of an id kept), columns sex, view, age_years, age_valid, spacing_row_mm, spacing_col_mm,
    height_px, width_px."""

    path: Path
    fields: pd.DataFrame
    rows: int
    duplicate_ids: int  # rows repeating an id already seen (dropped: the first row is kept)
    missing: tuple[MissingValues, ...]
    unreadable_spacing: int  # PixelSpacing cells present but not one or two positive numbers


def _examples(items: Iterable[Any]) -> tuple[str, ...]:
    return tuple(str(item) for _, item in zip(range(_EXAMPLES), items))


def parse_spacing_mm(text: str) -> tuple[float, float] | None:
    r"""'0.143' -> (0.143, 0.143); '0.139\0.143', '[0.139, 0.143]' -> (0.139, 0.143); else None.

    One value is a square pixel (the RSNA table's form); two are (row, column), as DICOM writes
    them; the list form is how pydicom prints a MultiValue. Non-positive or non-finite -> None.
    """
    parts = [p.strip(" '\"") for p in re.split(r"[\\,]", text.strip().strip("[]()")) if p.strip(" '\"")]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        return None
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or not all(math.isfinite(v) and v > 0 for v in values):
        return None
    return values[0], values[1]


def _header_id_column(path: Path, columns: Sequence[str]) -> str:
    for name in HEADER_ID_COLUMNS:
        if name in columns:
            return name
    raise DataFormatError(
        path, f"no image id column (expected one of {', '.join(HEADER_ID_COLUMNS)}; found {','.join(columns)})"
    )


def read_header_table(path: str | Path) -> HeaderTable:
    """A DICOM header table (CSV, optionally .gz / .zip) -> HeaderTable. Every cell is read as text.

    Columns used when present: PatientSex, ViewPosition, PatientAge (DICOM AS or bare years),
    PixelSpacing (see `parse_spacing_mm`), Rows, Columns; the id from patientId, PatientID or
    Filename (its stem). Raises DataFormatError naming the file when it cannot be read, has no
    id column or no data row.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "file not found")
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise DataFormatError(path, "file is empty (expected a header line with PatientID, PatientAge, ...)") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, EOFError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataFormatError(path, f"not a readable CSV: {first}") from None
    raw.columns = [str(c).strip() for c in raw.columns]
    id_column = _header_id_column(path, list(raw.columns))
    raw = raw.apply(lambda col: col.str.strip())
    if raw.empty:
        raise DataFormatError(path, "no data rows after the header")
    ids = raw[id_column]
    if id_column == "Filename":
        ids = ids.str.replace(r"\.dcm$", "", regex=True, case=False)
    missing = tuple(
        MissingValues("DICOM headers", column, int((raw[column] == "").sum()), len(raw))
        for column in raw.columns
        if not _UNNAMED_COLUMN.match(column)
    )

    def column(name: str) -> pd.Series:
        return raw[name] if name in raw.columns else pd.Series([""] * len(raw), index=raw.index)

    fields = pd.DataFrame({"image_id": ids})
    fields["sex"] = column("PatientSex").str.upper().mask(lambda c: c == "")
    fields["view"] = column("ViewPosition").str.upper().mask(lambda c: c == "")
    ages = {text: parse_age_years(text) for text in column("PatientAge").unique()}  # ~100 distinct values
    fields["age_years"] = column("PatientAge").map(lambda t: ages[t][0]).astype(float)
    fields["age_valid"] = column("PatientAge").map(lambda t: ages[t][1]).astype(bool)
    spacing_text = column("PixelSpacing")
    spacings = {text: parse_spacing_mm(text) for text in spacing_text.unique() if text}
    pairs = spacing_text.map(lambda t: spacings.get(t) or (math.nan, math.nan))
    fields["spacing_row_mm"] = [p[0] for p in pairs]
    fields["spacing_col_mm"] = [p[1] for p in pairs]
    fields["height_px"] = pd.to_numeric(column("Rows"), errors="coerce").astype(float)
    fields["width_px"] = pd.to_numeric(column("Columns"), errors="coerce").astype(float)
    duplicate_ids = int(fields["image_id"].duplicated().sum())
    fields = fields.drop_duplicates("image_id", keep="first").set_index("image_id")
    unreadable = sum(1 for text in spacing_text if text and spacings[text] is None)
    return HeaderTable(path, fields, len(raw), duplicate_ids, missing, unreadable)


def _label_missing(table: LabelTable) -> tuple[MissingValues, ...]:
    """Empty cells per labels column; box cells count on Target=1 rows only (negatives leave them
    empty). A row without its patientId or Target never gets this far (the file is refused)."""
    out = []
    for column in LABEL_COLUMNS:
        if column in XYWH:
            out.append(
                MissingValues(
                    "labels",
                    column,
                    table.missing_box_cells[column],
                    table.n_positive_rows,
                    "rows with Target=1 (a negative row leaves the box cells empty by design)",
                )
            )
        else:
            out.append(MissingValues("labels", column, 0, table.n_label_rows))
    return tuple(out)


def _table_from_strict_reader(path: Path) -> LabelTable:
    """A LabelTable from the strict reader, for a file that reads only that way (its header
    names carry spaces, a cell says 'nan'...): the same rows, one Python object each."""
    frame = read_label_csv(path, LABEL_COLUMNS).replace("", np.nan)  # every cell already checked by it
    frame[list(XYWH) + ["Target"]] = frame[list(XYWH) + ["Target"]].astype(float)
    table = label_table_from_frame(frame)
    assert table is not None
    return table


def _checked_patients(
    path: Path, table: LabelTable, classes: Mapping[str, list[str]] | None, headers: HeaderTable | None
) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """(images, boxes, problems) of the patients that keep the rules (parse_rsna's with class
    info, bounded by the header table's sizes; else the labels file's own). Array checks find
    the patients that may break one; only those go through the per-patient functions, which word
    the reason ('patientId <id>: <reason>', in order of first appearance)."""
    suspect = table.suspect.copy()
    rsna_class = np.full(len(table.patients), None, dtype=object)
    rows = table.rows
    positive_rows = rows[rows["Target"] == 1.0]
    if classes is not None:
        known = set(RSNA_CLASSES)
        for i, patient_id in enumerate(table.patients):
            names = classes.get(patient_id, [])
            if len(names) != 1 or names[0] not in known or (table.target[i] == 1) != (names[0] == RSNA_POSITIVE_CLASS):
                suspect[i] = True
            else:
                rsna_class[i] = names[0]
        x, y = positive_rows["x"].to_numpy(), positive_rows["y"].to_numpy()
        outside = (x < 0) | (y < 0)
        if headers is not None:
            sizes = headers.fields[["height_px", "width_px"]].reindex(table.patients[positive_rows["code"].to_numpy()])
            height, width = sizes["height_px"].to_numpy(), sizes["width_px"].to_numpy()
            with np.errstate(invalid="ignore"):
                known_size = ~(np.isnan(height) | np.isnan(width))
                outside |= known_size & (
                    (x + positive_rows["width"].to_numpy() > width) | (y + positive_rows["height"].to_numpy() > height)
                )
        suspect[np.unique(positive_rows["code"].to_numpy()[outside])] = True
    suspects = np.flatnonzero(suspect)
    kept_slow, problems = _label_boxes(path, table.rows_of(suspects), classes, headers)
    clean = ~suspect
    images = pd.DataFrame(
        {
            "image_id": np.concatenate([table.patients[clean], np.asarray(list(kept_slow), dtype=object)]),
            "target": np.concatenate([table.target[clean], [t for _, t, _ in kept_slow.values()]]).astype(int),
            "rsna_class": np.concatenate(
                [rsna_class[clean], np.asarray([c for c, _, _ in kept_slow.values()], dtype=object)]
            ),
            "n_boxes": np.concatenate([table.n_boxes[clean], [len(b) for _, _, b in kept_slow.values()]]).astype(int),
        }
    )
    images = images.assign(
        patient_id=images["image_id"], subtype=None, has_box_labels=True, split=None, source_split=None
    )
    fast_rows = positive_rows[clean[positive_rows["code"].to_numpy()]]
    xyxy = xywh_to_xyxy(fast_rows[list(XYWH)].to_numpy(np.float32))  # as the per-patient path stores them
    fast = pd.DataFrame(xyxy_to_xywh(xyxy).astype(np.float64), columns=list(XYWH))
    fast.insert(0, "image_id", table.patients[fast_rows["code"].to_numpy()])
    boxes = pd.concat([fast, _box_frame({pid: kept_slow[pid][2] for pid in kept_slow})], ignore_index=True)
    boxes = boxes.sort_values("image_id", kind="stable").reset_index(drop=True)
    return images, boxes, problems


def _empty_images() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in IMAGE_COLUMNS})


def _image_frame(rows: list[dict[str, Any]] | pd.DataFrame) -> pd.DataFrame:
    """IMAGE_COLUMNS with their dtypes, sorted by image_id. A frame's columns are taken as they
    are, not built into a new frame, which would copy them all at once (1.8 million images from
    the label tables: 300 MiB more at the peak)."""
    if isinstance(rows, pd.DataFrame):
        frame = rows[list(IMAGE_COLUMNS)] if len(rows) else _empty_images()
    else:
        frame = pd.DataFrame(rows, columns=list(IMAGE_COLUMNS)) if rows else _empty_images()
    dtypes = {name: float for name in ("age_years", "spacing_row_mm", "spacing_col_mm", "height_px", "width_px")}
    frame = frame.astype({**dtypes, "target": int, "n_boxes": int, "age_valid": bool, "has_box_labels": bool})
    if not frame["image_id"].is_monotonic_increasing:  # a sort copies every column: only when needed
        frame = frame.sort_values("image_id", kind="stable")
    frame.index = pd.RangeIndex(len(frame))
    return frame


def _box_frame(boxes_by_image: Mapping[str, np.ndarray]) -> pd.DataFrame:
    ids = [image_id for image_id, boxes in boxes_by_image.items() for _ in range(len(boxes))]
    stacked = [b for b in boxes_by_image.values() if len(b)]
    xywh = xyxy_to_xywh(np.concatenate(stacked)) if stacked else np.zeros((0, 4), dtype=np.float32)
    frame = pd.DataFrame(xywh.astype(np.float64), columns=["x", "y", "width", "height"])
    frame.insert(0, "image_id", ids)
    return frame.sort_values("image_id", kind="stable").reset_index(drop=True)


def _label_boxes(
    labels_path: Path,
    rows_by_patient: Mapping[str, list[LabelRow]],
    classes: Mapping[str, list[str]] | None,
    headers: HeaderTable | None,
) -> tuple[dict[str, tuple[str | None, int, np.ndarray]], list[str]]:
    """{patientId: (class or None, target, boxes_xyxy)} for the patients that keep every rule, and
    'patientId <id>: <reason>' for the others. With class info the rules are parse_rsna's
    (`rsna_boxes_xyxy`, boxes bounded by the header table's size when it has one); without,
    the labels file's own (`label_rows_boxes_xyxy`)."""
    kept: dict[str, tuple[str | None, int, np.ndarray]] = {}
    problems: list[str] = []
    sizes: dict[str, tuple[int, int]] = {}
    if headers is not None:
        known = headers.fields[["height_px", "width_px"]].dropna().astype(int)
        sizes = {image_id: (h, w) for image_id, h, w in known.itertuples(name=None)}
    for patient_id, rows in rows_by_patient.items():
        try:
            if classes is None:
                target, boxes = label_rows_boxes_xyxy(labels_path, patient_id, rows)
                kept[patient_id] = (None, target, boxes)
                continue
            height, width = sizes.get(patient_id, (None, None))
            rsna_class, target, boxes = rsna_boxes_xyxy(
                str(labels_path), patient_id, rows, classes.get(patient_id, []), height, width
            )
            kept[patient_id] = (rsna_class, target, boxes)
        except DetectError as exc:
            reason = getattr(exc, "reason", str(exc))
            problems.append(reason if reason.startswith("patientId") else f"patientId {patient_id}: {reason}")
    return kept, problems


def tables_from_label_files(
    labels: str | Path, class_info: str | Path | None = None, headers: str | Path | None = None
) -> EdaTables:
    """RSNA's label tables -> EdaTables (mode 'tables'). See the module docstring.

    The images are the patients of the labels file that keep its rules. Raises LabelFileError /
    DataFormatError naming the file when a table is missing or malformed.
    """
    labels_path = Path(labels)
    table = read_label_table(labels_path)
    if table is None:  # a malformed cell: the strict reader names its line (LabelFileError)
        read_train_labels(labels_path)
        table = _table_from_strict_reader(labels_path)
    if not len(table.patients):
        raise DataFormatError(labels_path, "no label rows after the header")
    n_label_rows, duplicate_label_rows = table.n_label_rows, table.duplicates
    files = [SourceFile("labels", str(labels_path), n_label_rows)]
    classes = None
    duplicate_class_rows = 0
    if class_info is not None:
        classes, duplicate_class_rows = read_class_info(class_info)
        files.append(
            SourceFile("class info", str(class_info), sum(len(v) for v in classes.values()) + duplicate_class_rows)
        )
    header_table = read_header_table(headers) if headers is not None else None
    if header_table is not None:
        files.append(SourceFile("DICOM headers", str(header_table.path), header_table.rows))

    images, boxes, problems = _checked_patients(labels_path, table, classes, header_table)
    images = images.sort_values("image_id", kind="stable")  # while the frame is narrow
    if header_table is not None:
        images = images.join(header_table.fields[list(_HEADER_FIELDS)], on="image_id")
        images["age_valid"] = images["age_valid"].fillna(True)  # no header row: nothing to flag
    else:
        images = images.assign(
            sex=None,
            view=None,
            age_years=math.nan,
            age_valid=True,
            spacing_row_mm=math.nan,
            spacing_col_mm=math.nan,
            height_px=math.nan,
            width_px=math.nan,
        )
    images = _image_frame(images)

    checks = [
        QualityCheck("duplicate label rows collapsed", duplicate_label_rows),
        QualityCheck("patients whose label rows break a rule (left out)", len(problems), _examples(problems)),
    ]
    if classes is not None:
        without_labels = sorted(set(classes) - set(table.patients))
        checks += [
            QualityCheck(
                "duplicate class-info rows collapsed",
                duplicate_class_rows,
                note="the class file repeats a patient once per box",
            ),
            QualityCheck("class-info patients without a label row", len(without_labels), _examples(without_labels)),
        ]
    if header_table is not None:
        label_ids = set(table.patients)
        header_ids = set(header_table.fields.index)
        checks += [
            QualityCheck(
                "labels without images (no header row)",
                len(label_ids - header_ids),
                _examples(sorted(label_ids - header_ids)),
                note="the header table lists the images",
            ),
            QualityCheck(
                "images without labels (header row, no label row)",
                len(header_ids - label_ids),
                _examples(sorted(header_ids - label_ids)),
                note="left out",
            ),
            QualityCheck("header rows repeating an image id (first kept)", header_table.duplicate_ids),
            QualityCheck("unreadable PixelSpacing cells", header_table.unreadable_spacing),
        ]
    else:
        checks.append(
            QualityCheck("labels without images", None, note="needs the images or a header table (--headers)")
        )
    checks.append(QualityCheck("files that could not be read", None, note="no image was read: the label tables only"))
    missing = _label_missing(table) + (header_table.missing if header_table else ())
    return EdaTables(
        dataset="rsna",
        images=images,
        boxes=boxes,
        source=EdaSource(mode="tables", dataset="rsna", files=tuple(files)),
        checks=tuple(checks),
        missing=missing,
        has_class_info=classes is not None,
        has_headers=header_table is not None,
    )


def _record_row(record: ImageRecord) -> dict[str, Any]:
    spacing = record.pixel_spacing_mm or (math.nan, math.nan)
    return {
        "image_id": record.image_id,
        "patient_id": record.patient_id,
        "target": int(record.target),
        "rsna_class": record.rsna_class,
        "subtype": record.subtype,
        "sex": record.sex,
        "view": record.view_position,
        "age_years": math.nan if record.age_years is None else float(record.age_years),
        "age_valid": bool(record.age_valid),
        "spacing_row_mm": spacing[0],
        "spacing_col_mm": spacing[1],
        "height_px": math.nan if record.height is None else float(record.height),
        "width_px": math.nan if record.width is None else float(record.width),
        "n_boxes": len(record.boxes_xyxy),
        "has_box_labels": bool(record.has_box_labels),
        "split": record.split,
        "source_split": record.source_split,
    }


def _record_missing(dataset: str, records: Sequence[ImageRecord]) -> tuple[MissingValues, ...]:
    """Empty fields per record, for the fields the dataset has (Kermany records no sex, age or view)."""
    fields = {"image size": lambda r: r.height is None or r.width is None}
    if dataset in ("rsna", "custom"):  # a custom DICOM has them; a custom PNG / JPEG is missing them
        fields.update(
            {
                "PatientSex": lambda r: r.sex is None,
                "PatientAge": lambda r: r.age_years is None,
                "ViewPosition": lambda r: r.view_position is None,
                "PixelSpacing": lambda r: r.pixel_spacing_mm is None,
            }
        )
    return tuple(
        MissingValues(
            "DICOM headers" if dataset != "kermany" else "images", name, sum(map(test, records)), len(records)
        )
        for name, test in fields.items()
    )


def tables_from_records(
    dataset: str,
    records: Sequence[ImageRecord],
    *,
    source: EdaSource,
    summary: Mapping[str, Any],
    bad_files: Sequence[BadFile] = (),
) -> EdaTables:
    """The records of a prepared dataset -> EdaTables (mode 'images').

    `summary` is what `detect prepare` counted (its summary.json: duplicates, images without
    labels, labels without images, junk files); `bad_files` every file it, or the image cache,
    could not use.
    """
    images = _image_frame([_record_row(r) for r in records])
    boxes = _box_frame({r.image_id: r.boxes_xyxy for r in records if len(r.boxes_xyxy)})
    checks = []
    if dataset == "rsna":
        checks += [
            QualityCheck("duplicate label rows collapsed", int(summary.get("duplicate_label_rows", 0))),
            QualityCheck(
                "duplicate class-info rows collapsed",
                int(summary.get("duplicate_class_rows", 0)),
                note="the class file repeats a patient once per box",
            ),
            QualityCheck(
                "labels without images",
                int(summary.get("labels_without_images", 0)),
                _examples(summary.get("labels_without_images_ids", [])),
            ),
            QualityCheck(
                "images without labels",
                int(summary.get("images_without_labels", 0)),
                _examples(summary.get("images_without_labels_ids", [])),
            ),
        ]
    if dataset == "custom":
        checks += [
            QualityCheck(
                "label rows skipped (duplicates, rows naming no image)", int(summary.get("skipped_label_rows", 0))
            ),
            QualityCheck(
                "images listed without a label (left out)",
                int(summary.get("unannotated_images", 0)),
                _examples(summary.get("unannotated_ids", [])),
            ),
            QualityCheck(
                "images in the folder the labels do not name",
                int(summary.get("images_without_labels", 0)),
                _examples(summary.get("images_without_labels_ids", [])),
            ),
            QualityCheck(
                "images without a patient id (split per image: leakage possible)",
                int((summary.get("patients_from") or {}).get("none", 0)),
            ),
        ]
    checks += [
        QualityCheck(
            "files that could not be used (left out)",
            len(bad_files),
            _examples(f"{b.path}: {b.reason}" for b in bad_files),
            note="unreadable header or pixels, or labels breaking a rule, as `detect prepare` found them",
        ),
        QualityCheck("junk files (not images, skipped)", int(summary.get("junk_files", 0))),
    ]
    return EdaTables(
        dataset=dataset,
        images=images,
        boxes=boxes,
        source=source,
        checks=tuple(checks),
        missing=_record_missing(dataset, records),
        has_class_info=True,  # RSNA records carry their class, Kermany's their subtype
        has_headers=dataset == "rsna"
        or (
            dataset == "custom"
            and any(r.sex is not None or r.age_years is not None or r.view_position is not None for r in records)
        ),
    )
