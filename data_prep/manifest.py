r"""The prepared folder: what `detect prepare` writes and everything after it reads.

    <prepared_dir>/            default <data_dir>/detect_prepared
        manifest.csv           one row per image, columns MANIFEST_COLUMNS, sorted by image_id;
                               boxes_xyxy as JSON text [[x1, y1, x2, y2], ...] (original pixels),
                               pixel_spacing_mm as 'row\column' in mm (see below),
                               empty cell = None, booleans True/False
        splits.csv             patient_id,dataset,split (one row per patient)
        bad_files.csv          path,reason (every file that could not be used, and why)
        summary.json           the counts printed by `detect prepare`
        prepare.json           format_version, dataset, data_root (absolute), seed, fractions,
                               cache_size_px (or null), package versions
        cache/<size_px>/       letterboxed PNGs (data_prep.cache), when built

pixel_spacing_mm is written the way DICOM writes PixelSpacing's two values: row spacing,
a backslash, column spacing, each the shortest text that reads back to the same float
('0.139\0.143'). Manifests written before the pair existed hold one number ('0.143'),
which reads back as square pixels (0.143, 0.143).

Nothing here holds a timestamp and every table is sorted, so preparing twice writes
byte-identical files: a diff of two prepared folders shows real changes only.
Files are written through data_prep.atomic (a unique temporary name in the folder, then a
rename), so an interrupted run, a full disk or a second `detect prepare` of the same folder
never leaves a half-written manifest behind.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from data_prep.atomic import write_text_atomic
from data_prep.errors import DataFormatError
from data_prep.records import DATASETS, MANIFEST_COLUMNS, SPLITS, BadFile, ImageRecord

FORMAT_VERSION = 1
DEFAULT_PREPARED_DIRNAME = "detect_prepared"
MANIFEST_CSV = "manifest.csv"
SPLITS_CSV = "splits.csv"
BAD_FILES_CSV = "bad_files.csv"
SUMMARY_JSON = "summary.json"
PREPARE_JSON = "prepare.json"
CACHE_DIRNAME = "cache"

_VERSIONED_PACKAGES: tuple[str, ...] = (
    "detect",
    "numpy",
    "pandas",
    "scikit-learn",
    "opencv-python-headless",
    "pydicom",
)


def cache_file_name(image_id: str) -> str:
    """'train/NORMAL/IM-0115-0001' -> 'train__NORMAL__IM-0115-0001.png' (one flat folder per size)."""
    return image_id.replace("/", "__") + ".png"


@dataclass(frozen=True)
class PreparedDataset:
    """A prepared dataset as read back from its folder. Image files live at data_root / record.path."""

    dataset: str
    data_root: Path
    records: list[ImageRecord]
    prepared_dir: Path
    cache_size_px: int | None = None
    seed: int = 0
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    bad_files: list[BadFile] = field(default_factory=list)

    def cached_image_path(self, image_id: str, size_px: int) -> Path:
        """Where the cache keeps `image_id` letterboxed to `size_px` (the file may not exist yet)."""
        return self.prepared_dir / CACHE_DIRNAME / str(int(size_px)) / cache_file_name(image_id)

    def image_path(self, record: ImageRecord) -> Path:
        """The original file of `record`."""
        return self.data_root / record.path

    def split_records(self, split: str) -> list[ImageRecord]:
        """The records of one split ('train' | 'val' | 'test'), in manifest order."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        return [r for r in self.records if r.split == split]


def find_prepared(data_dir: str | Path) -> Path | None:
    """data_dir if it holds prepare.json, else data_dir/detect_prepared if that does, else None."""
    data_dir = Path(data_dir)
    for candidate in (data_dir, data_dir / DEFAULT_PREPARED_DIRNAME):
        if (candidate / PREPARE_JSON).is_file():
            return candidate
    return None


def _format_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "True" if value else "False"
    if isinstance(value, (float, np.floating)):
        return repr(float(value))  # shortest text that reads back to the same float
    return str(value)


def _csv_text(columns: Iterable[str], rows: Iterable[Iterable[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(list(columns))
    for row in rows:
        writer.writerow([_format_cell(v) for v in row])
    return buffer.getvalue()


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that shape the prepared data (for prepare.json)."""
    versions = {}
    for name in _VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def write_prepare_json(
    prepared_dir: str | Path,
    *,
    dataset: str,
    data_root: str | Path,
    seed: int,
    val_fraction: float,
    test_fraction: float,
    cache_size_px: int | None = None,
    labels: Mapping[str, Any] | None = None,
) -> Path:
    """Write prepare.json (the parameters of this preparation; no timestamp). `labels`: a custom
    dataset's labels file, format, label map and --unannotated choice."""
    path = Path(prepared_dir) / PREPARE_JSON
    info = {
        "format_version": FORMAT_VERSION,
        "dataset": dataset,
        "data_root": str(Path(data_root).resolve()),
        "seed": int(seed),
        "val_fraction": float(val_fraction),
        "test_fraction": float(test_fraction),
        "cache_size_px": None if cache_size_px is None else int(cache_size_px),
        "versions": package_versions(),
    }
    if labels is not None:
        info["labels"] = dict(labels)
    write_text_atomic(path, json.dumps(info, indent=2, sort_keys=True, allow_nan=False) + "\n")
    return path


def write_manifest(
    prepared_dir: str | Path,
    records: Iterable[ImageRecord],
    *,
    dataset: str,
    data_root: str | Path,
    seed: int,
    val_fraction: float,
    test_fraction: float,
    bad_files: Iterable[BadFile] = (),
    summary: Mapping[str, Any] | None = None,
    cache_size_px: int | None = None,
    labels: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Write manifest.csv, splits.csv, bad_files.csv, summary.json and prepare.json; return their paths.

    Rows are sorted (records by image_id, patients by (dataset, patient_id), bad files by path)
    so the output depends on the content only. Raises DataFormatError if two records share an
    image_id or a patient is in two splits (both would corrupt training silently).
    """
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {DATASETS}")
    prepared_dir = Path(prepared_dir)
    ordered = sorted(records, key=lambda r: r.image_id)

    split_of: dict[tuple[str, str], str | None] = {}
    previous_id = None
    for record in ordered:
        if record.image_id == previous_id:
            raise DataFormatError(prepared_dir / MANIFEST_CSV, f"image_id {record.image_id!r} appears twice")
        previous_id = record.image_id
        key = (record.dataset, record.patient_id)
        if split_of.setdefault(key, record.split) != record.split:
            raise DataFormatError(
                prepared_dir / SPLITS_CSV,
                f"patient {record.patient_id!r} is in splits {split_of[key]!r} and {record.split!r}",
            )

    manifest_rows = (record.to_row().values() for record in ordered)  # to_row keeps MANIFEST_COLUMNS order
    split_rows = ((pid, ds, split) for (ds, pid), split in sorted(split_of.items()))
    bad_rows = ((b.path, b.reason) for b in sorted(bad_files, key=lambda b: (b.path, b.reason)))

    written = []
    for name, text in (
        (MANIFEST_CSV, _csv_text(MANIFEST_COLUMNS, manifest_rows)),
        (SPLITS_CSV, _csv_text(("patient_id", "dataset", "split"), split_rows)),
        (BAD_FILES_CSV, _csv_text(("path", "reason"), bad_rows)),
        (SUMMARY_JSON, json.dumps(dict(summary or {}), indent=2, sort_keys=True, allow_nan=False) + "\n"),
    ):
        write_text_atomic(prepared_dir / name, text)
        written.append(prepared_dir / name)
    written.append(
        write_prepare_json(
            prepared_dir,
            dataset=dataset,
            data_root=data_root,
            seed=seed,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            cache_size_px=cache_size_px,
            labels=labels,
        )
    )
    return written


def _opt_str(text: str) -> str | None:
    return text if text else None


def _required_str(text: str) -> str:
    if not text:
        raise ValueError("empty")
    return text


def _int(text: str) -> int:
    return int(text)


def _opt_int(text: str) -> int | None:
    return int(text) if text else None


def _opt_float(text: str) -> float | None:
    return float(text) if text else None


def _opt_spacing_pair(text: str) -> tuple[float, float] | None:
    if not text:
        return None
    parts = text.split("\\")
    if len(parts) == 1:  # an older manifest's single value: square pixels
        return float(parts[0]), float(parts[0])
    if len(parts) != 2:
        raise ValueError("expected row\\column spacing in mm, e.g. 0.139\\0.143")
    return float(parts[0]), float(parts[1])


def _bool(text: str) -> bool:
    if text not in ("True", "False"):
        raise ValueError("not True or False")
    return text == "True"


def _boxes(text: str) -> np.ndarray:
    boxes = np.asarray(json.loads(text), dtype=np.float32)
    if boxes.size == 0:
        return np.zeros((0, 4), dtype=np.float32)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"expected a list of [x1, y1, x2, y2], got shape {boxes.shape}")
    return boxes


# How each manifest column reads back; tests check it covers MANIFEST_COLUMNS exactly.
COLUMN_PARSERS: dict[str, Callable[[str], Any]] = {
    "image_id": _required_str,
    "dataset": _required_str,
    "path": _required_str,
    "patient_id": _required_str,
    "target": _int,
    "has_box_labels": _bool,
    "boxes_xyxy": _boxes,
    "rsna_class": _opt_str,
    "subtype": _opt_str,
    "split": _opt_str,
    "height": _opt_int,
    "width": _opt_int,
    "sex": _opt_str,
    "age_years": _opt_float,
    "age_valid": _bool,
    "view_position": _opt_str,
    "pixel_spacing_mm": _opt_spacing_pair,
    "source_split": _opt_str,
}


def _read_text_table(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    if not path.is_file():
        raise DataFormatError(path, "file not found: rerun `detect prepare`")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataFormatError(path, f"not a readable CSV: {first}") from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataFormatError(path, f"missing column {', '.join(map(repr, missing))}: rerun `detect prepare`")
    return frame


def read_records(manifest_path: str | Path) -> list[ImageRecord]:
    """manifest.csv -> ImageRecords, each value back to its type (boxes float32 [N, 4], None, bool)."""
    manifest_path = Path(manifest_path)
    frame = _read_text_table(manifest_path, MANIFEST_COLUMNS)
    records = []
    for index, row in enumerate(frame[list(MANIFEST_COLUMNS)].itertuples(index=False, name=None)):
        values = {}
        for column, text in zip(MANIFEST_COLUMNS, row):
            try:
                values[column] = COLUMN_PARSERS[column](text)
            except (ValueError, json.JSONDecodeError) as exc:
                raise DataFormatError(
                    manifest_path, f"line {index + 2}: column {column!r}: cannot read {text!r} ({exc})"
                ) from None
        records.append(ImageRecord(**values))
    return records


def read_manifest(prepared_dir: str | Path) -> PreparedDataset:
    """Read a prepared folder (or the data folder holding detect_prepared/) back into a PreparedDataset.

    Raises DataFormatError naming the folder when nothing was prepared there, or the file and
    line when a table cannot be read.
    """
    found = find_prepared(prepared_dir)
    if found is None:
        raise DataFormatError(
            prepared_dir,
            f"no {PREPARE_JSON} here or in {DEFAULT_PREPARED_DIRNAME}/: run `detect prepare DATA_DIR` first",
        )
    info_path = found / PREPARE_JSON
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataFormatError(info_path, f"not valid JSON ({exc}): rerun `detect prepare`") from None
    if not isinstance(info, dict) or info.get("format_version") != FORMAT_VERSION:
        version = info.get("format_version") if isinstance(info, dict) else None
        raise DataFormatError(
            info_path, f"format_version {version!r}, this version reads {FORMAT_VERSION}: rerun `detect prepare`"
        )
    for key in ("dataset", "data_root", "seed", "val_fraction", "test_fraction", "cache_size_px"):
        if key not in info:
            raise DataFormatError(info_path, f"missing key {key!r}: rerun `detect prepare`")

    records = read_records(found / MANIFEST_CSV)
    bad_frame = _read_text_table(found / BAD_FILES_CSV, ("path", "reason"))
    bad_files = [BadFile(path=p, reason=r) for p, r in bad_frame[["path", "reason"]].itertuples(index=False, name=None)]
    return PreparedDataset(
        dataset=info["dataset"],
        data_root=Path(info["data_root"]),
        records=records,
        prepared_dir=found,
        cache_size_px=info["cache_size_px"],
        seed=info["seed"],
        val_fraction=info["val_fraction"],
        test_fraction=info["test_fraction"],
        bad_files=bad_files,
    )
