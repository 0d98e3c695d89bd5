"""A hospital's own labelled radiographs: a COCO JSON or a label CSV + an image folder -> ImageRecords.

    result = parse_own_dataset("my_xrays", labels="my_xrays/labels.csv",
                               label_map={"consolidation": "opacity"}, unannotated=None)

The two label formats are read by data_prep.coco and data_prep.csv_labels into the same
`LabelItem`s (one per CSV row or COCO annotation, one per COCO image without annotation);
everything after that is shared, here:

- labels go through the label map to the project's three labels (PROJECT_LABELS): `opacity`
  (a box, or the whole image when no box is given), `normal`, and `abnormal` (RSNA's "No
  Lung Opacity / Not Normal"). The project's own names need no map (any case). A box on a
  `normal` or `abnormal` label is ignored: those labels describe the whole image.
- an image's labels must agree: all `opacity`, or one of `normal` / `abnormal`.
- the files are found under the data folder by the names the labels give (never outside it)
  and read by content (DICOM, PNG, JPEG), as `detect infer` reads them: a DICOM's header only
  (its size, PatientID, sex, age, view, pixel spacing), a PNG/JPEG decoded once (its size,
  and proof it is not corrupt).
- patients: the labels' patient_id, else the DICOM PatientID, else none (the image is its own
  patient, and the summary warns that the split is then per image).
- a declared split (train/val/test) is kept; a patient declared in two splits is a problem.

Records carry dataset 'custom', the project label's RSNA class in `rsna_class` (so that the
detector's image head, the sampler and `detect eval` treat them as they treat RSNA), target 1
for `opacity`, and has_box_labels False only for an `opacity` image without any box (the
detector then learns nothing about where, as for Kermany).

Problems never stop the preparation. An image whose labels break a rule (unknown label, box
with a negative or zero size, box outside the image, conflicting labels, patient or split), a
file that is missing or unreadable: a BadFile (the image's path and one line naming the labels
file, the line or annotation, and the problem), left out. A row that only repeats another
(a duplicate) or names nothing usable is skipped and listed in `skipped_rows`, one line each.
"""

from __future__ import annotations

import math
import os
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path, PurePosixPath

import numpy as np

from data_prep.codestreams import DEFAULT_MAX_IMAGE_PIXELS
from data_prep.dicom import read_dicom_header, unsupported_reason
from data_prep.errors import ConfigError, DataFormatError, DetectError
from data_prep.geometry import xywh_to_xyxy
from data_prep.images import SNIFF_BYTES, is_dicom_file, read_image, sniff_image_kind
from data_prep.records import (
    CUSTOM_DATASET,
    RSNA_CLASSES,
    SPLITS,
    BadFile,
    DicomHeader,
    ImageRecord,
    empty_boxes,
)

# The project's labels and the RSNA class each one is (the order of the detector's image head).
PROJECT_LABELS: dict[str, str] = {"normal": RSNA_CLASSES[0], "abnormal": RSNA_CLASSES[1], "opacity": RSNA_CLASSES[2]}
LABEL_OF_RSNA_CLASS: dict[str, str] = {cls: label for label, cls in PROJECT_LABELS.items()}
UNANNOTATED_CHOICES: tuple[str, ...] = ("normal",)
# The file names a data folder's labels are found by when --labels is not given.
DEFAULT_LABEL_FILES: tuple[str, ...] = ("annotations.json", "labels.csv")
_SKIPPED_DIRS = ("detect_prepared", "__MACOSX")


@dataclass(frozen=True)
class LabelItem:
    """One label of one image as the labels file gives it, before any check.

    `label` None: the image is listed without any label (a COCO image without annotation).
    `problem`: what is already wrong with the row itself (a box field that is not a number,
    a box given in part); the image is then a bad file with this reason.
    `where`: '<labels file> line 4' or '<labels file> annotation id 7', for the report.
    """

    file_name: str
    where: str
    label: str | None = None
    box_xywh: tuple[float, float, float, float] | None = None
    patient_id: str | None = None
    split: str | None = None
    declared_hw: tuple[int, int] | None = None
    problem: str | None = None


@dataclass
class LabelTable:
    """What a labels file holds: its items in file order, and the rows skipped while reading it."""

    path: Path
    items: list[LabelItem]
    skipped_rows: list[str] = field(default_factory=list)
    has_patient_ids: bool = False
    has_splits: bool = False


@dataclass(frozen=True)
class OwnParseResult:
    """What `parse_own_dataset` found. Paths are relative to the data folder."""

    records: list[ImageRecord]
    bad_files: list[BadFile]
    skipped_rows: list[str]
    images_without_labels: list[str]  # image files under the folder that the labels do not name
    unannotated: list[str]  # images the labels list without any label, left out (no --unannotated)
    junk_files: list[str]  # files under the folder that are neither images nor the labels file
    labels_path: Path
    label_format: str  # 'coco' | 'csv'
    patients_from: dict[str, int]  # images whose patient came from 'labels', 'dicom', or 'none'
    declared_splits: int  # images whose split the labels declared


# ------------------------------------------------------------------------------ label names


def parse_label_map(text: str | Mapping[str, str] | None) -> dict[str, str]:
    """'consolidation=opacity,infiltrate=opacity' (or a dict) -> {casefolded name: project label}.

    Raises ConfigError naming the entry for a malformed pair or a target that is not one of
    PROJECT_LABELS.
    """
    if text is None:
        return {}
    if isinstance(text, Mapping):
        pairs = list(text.items())
    else:
        pairs = []
        for entry in (e.strip() for e in text.split(",")):
            if not entry:
                continue
            name, sep, target = entry.partition("=")
            if not sep or not name.strip() or not target.strip():
                raise ConfigError(f"--label-map: {entry!r} is not NAME=LABEL (e.g. consolidation=opacity)")
            pairs.append((name, target))
    mapping: dict[str, str] = {}
    for name, target in pairs:
        target_key = str(target).strip().casefold()
        if target_key not in PROJECT_LABELS:
            raise ConfigError(f"--label-map: {name}={target}: {target!r} is not one of {', '.join(PROJECT_LABELS)}")
        mapping[str(name).strip().casefold()] = target_key
    return mapping


def check_unannotated(value: str | None) -> str | None:
    """None, or 'normal'; ConfigError otherwise."""
    if value is None:
        return None
    if value.strip().casefold() not in UNANNOTATED_CHOICES:
        raise ConfigError(f"--unannotated: {value!r} is not one of {', '.join(UNANNOTATED_CHOICES)}")
    return value.strip().casefold()


def project_label(name: str, label_map: Mapping[str, str]) -> str | None:
    """The project label of a label name through the map (the project's names map to themselves), or None."""
    key = name.strip().casefold()
    if key in label_map:
        return label_map[key]
    return key if key in PROJECT_LABELS else None


def record_label(record: ImageRecord) -> str:
    """The project label of a custom record ('opacity', 'normal', 'abnormal'), 'unknown' without one."""
    return LABEL_OF_RSNA_CLASS.get(record.rsna_class or "", "unknown")


# ------------------------------------------------------------------------------ the folder


def find_labels_file(data_dir: str | Path) -> Path | None:
    """The one annotations.json or labels.csv directly in `data_dir`; None when there is none.

    Raises DataFormatError when there are both (the folder does not say which one to use).
    """
    data_dir = Path(data_dir)
    found = [data_dir / name for name in DEFAULT_LABEL_FILES if (data_dir / name).is_file()]
    if len(found) > 1:
        names = " and ".join(p.name for p in found)
        raise DataFormatError(data_dir, f"holds both {names}: pass the one to use with --labels FILE")
    return found[0] if found else None


def label_format(labels_path: str | Path) -> str:
    """'coco' for a .json file, 'csv' for a .csv file; DataFormatError otherwise."""
    suffix = Path(labels_path).suffix.lower()
    if suffix == ".json":
        return "coco"
    if suffix == ".csv":
        return "csv"
    raise DataFormatError(labels_path, "labels must be a COCO .json or a .csv file")


def _looks_like_image(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return sniff_image_kind(handle.read(SNIFF_BYTES)) is not None
    except OSError:
        return False


def list_folder_files(root: Path, skip: set[Path]) -> tuple[list[str], list[str]]:
    """(image files, other files) under `root`, as sorted paths relative to it.

    Images are found as `detect infer` finds them: a .dcm / .png / .jpg / .jpeg name, or first
    bytes that look like DICOM, PNG or JPEG. Prepared folders (detect_prepared/, and the
    paths in `skip`), hidden files and macOS metadata are not looked at.
    """
    images: list[str] = []
    others: list[str] = []
    skip_resolved = {p.resolve() for p in skip}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(
            d
            for d in dirnames
            if not d.startswith(".") and d not in _SKIPPED_DIRS and (here / d).resolve() not in skip_resolved
        )
        for name in sorted(filenames):
            path = here / name
            if name.startswith(".") or path.resolve() in skip_resolved or not path.is_file():
                continue
            relative = path.relative_to(root).as_posix()
            if path.suffix.lower() in (".dcm", ".png", ".jpg", ".jpeg") or _looks_like_image(path):
                images.append(relative)
            else:
                others.append(relative)
    return sorted(images), sorted(others)


def _normalised_name(file_name: str) -> str | None:
    """'./a/b.png' -> 'a/b.png'; None for a name that leaves the folder (absolute, '..')."""
    text = file_name.strip().replace("\\", "/")
    if not text or text.startswith("/") or (len(text) > 1 and text[1] == ":"):
        return None
    parts = [p for p in PurePosixPath(text).parts if p not in (".", "")]
    if not parts or ".." in parts:
        return None
    return "/".join(parts)


# ------------------------------------------------------------------------------ reading files


@dataclass(frozen=True)
class _FileInfo:
    height: int
    width: int
    header: DicomHeader | None


def _read_file_info(path: str, max_pixels: int) -> tuple[str, _FileInfo | None, str | None]:
    """One image's size (and DICOM header), or the reason it cannot be used."""
    try:
        if is_dicom_file(path) or Path(path).suffix.lower() == ".dcm":
            header = read_dicom_header(path, max_pixels=max_pixels)
            reason = unsupported_reason(header)
            if reason is not None:
                return path, None, reason
            return path, _FileInfo(header.rows, header.columns, header), None
        pixels = read_image(path, max_pixels=max_pixels)
    except DetectError as exc:
        return path, None, getattr(exc, "reason", str(exc))
    return path, _FileInfo(int(pixels.shape[0]), int(pixels.shape[1]), None), None


def _read_chunk(args: tuple[list[str], int]) -> list[tuple[str, _FileInfo | None, str | None]]:
    paths, max_pixels = args
    return [_read_file_info(p, max_pixels) for p in paths]


def read_file_infos(paths: list[Path], workers: int, max_pixels: int) -> dict[str, tuple[_FileInfo | None, str | None]]:
    """{str(path): (info or None, reason or None)}, in `workers` processes when there are many files."""
    items = [str(p) for p in paths]
    if workers > 1 and len(items) >= 4 * workers:
        size = max(1, min(256, math.ceil(len(items) / (workers * 4))))
        chunks = [(items[i : i + size], max_pixels) for i in range(0, len(items), size)]
        with get_context().Pool(workers) as pool:
            results = [r for chunk in pool.imap(_read_chunk, chunks) for r in chunk]
    else:
        results = _read_chunk((items, max_pixels))
    return {path: (info, reason) for path, info, reason in results}


# ------------------------------------------------------------------------------ checking one image


def _format_box(box: tuple[float, ...]) -> str:
    return "[" + ", ".join(f"{v:g}" for v in box) + "]"


class _ImageProblem(Exception):
    """One image's labels break a rule: the reason, one line."""


def _image_labels(
    items: list[LabelItem], label_map: Mapping[str, str], unannotated: str | None, info: _FileInfo
) -> tuple[str | None, np.ndarray, bool]:
    """(project label or None when unlabelled, boxes_xyxy float32 [N, 4], has_box_labels) of one image.

    Raises _ImageProblem for the first rule broken, in the order: a row's own problem, an
    unknown label, a box with a non-positive size, a box outside the image, labels that disagree,
    a COCO size that is not the file's.
    """
    labelled = [item for item in items if item.label is not None]
    for item in items:
        if item.problem is not None:
            raise _ImageProblem(f"{item.where}: {item.problem}")
    for item in items:
        if item.declared_hw is not None and item.declared_hw != (info.height, info.width):
            h, w = item.declared_hw
            raise _ImageProblem(
                f"{item.where}: the labels give it {w}x{h} pixels, the file is "
                f"{info.width}x{info.height} (boxes would not match the image)"
            )
    if not labelled:
        if unannotated == "normal":
            return "normal", empty_boxes(), True
        return None, empty_boxes(), False
    labels: dict[str, str] = {}
    boxes: list[tuple[float, float, float, float]] = []
    for item in labelled:
        name = project_label(item.label or "", label_map)
        if name is None:
            raise _ImageProblem(
                f"{item.where}: unknown label {item.label!r} (known: {', '.join(PROJECT_LABELS)}"
                f"{', ' + ', '.join(sorted(label_map)) if label_map else ''}; "
                "map others with --label-map NAME=LABEL)"
            )
        labels.setdefault(name, item.where)
        if name != "opacity" or item.box_xywh is None:
            continue
        x, y, w, h = item.box_xywh
        if w <= 0 or h <= 0:
            raise _ImageProblem(
                f"{item.where}: box {_format_box(item.box_xywh)} (x,y,width,height) has a "
                f"{'negative' if min(w, h) < 0 else 'zero'} width or height"
            )
        if x < 0 or y < 0 or x + w > info.width or y + h > info.height:
            raise _ImageProblem(
                f"{item.where}: box {_format_box(item.box_xywh)} (x,y,width,height) extends "
                f"outside the {info.width}x{info.height} image"
            )
        boxes.append(item.box_xywh)
    if len(labels) > 1:
        shown = " and ".join(f"{name} ({where})" for name, where in labels.items())
        raise _ImageProblem(f"conflicting labels: {shown}")
    (label,) = labels
    if label != "opacity":
        return label, empty_boxes(), True
    boxes_xyxy = xywh_to_xyxy(np.asarray(boxes, dtype=np.float32)) if boxes else empty_boxes()
    return label, boxes_xyxy, bool(boxes)


def _one_value(items: list[LabelItem], attribute: str, what: str) -> str | None:
    values = {getattr(i, attribute): i.where for i in items if getattr(i, attribute)}
    if len(values) > 1:
        shown = " and ".join(f"{v!r} ({where})" for v, where in values.items())
        raise _ImageProblem(f"conflicting {what}: {shown}")
    return next(iter(values), None)


# ------------------------------------------------------------------------------ the dataset


def read_label_table(labels_path: Path) -> tuple[LabelTable, str]:
    """The labels file read by its format's reader -> (table, 'coco' | 'csv')."""
    kind = label_format(labels_path)
    if kind == "coco":
        from data_prep.coco import read_coco_labels

        return read_coco_labels(labels_path), kind
    from data_prep.csv_labels import read_csv_labels

    return read_csv_labels(labels_path), kind


def parse_own_dataset(
    root: str | Path,
    labels: str | Path | None = None,
    *,
    label_map: Mapping[str, str] | str | None = None,
    unannotated: str | None = None,
    workers: int = 1,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    skip: tuple[Path, ...] = (),
) -> OwnParseResult:
    """Parse a folder of images and its labels file (see the module docstring).

    `labels`: the COCO .json or .csv; default the folder's one annotations.json or labels.csv.
    Records are sorted by image_id (the path relative to `root`), split None unless declared.
    Raises DataFormatError / LabelFileError when the folder or the labels file as a whole
    cannot be read; ConfigError for a bad label map or --unannotated value.
    """
    root = Path(root)
    mapping = parse_label_map(label_map)
    unannotated = check_unannotated(unannotated)
    labels_path = Path(labels) if labels is not None else find_labels_file(root)
    if labels_path is None:
        raise DataFormatError(
            root,
            f"no labels: pass --labels FILE (a COCO .json or a .csv), or put one "
            f"{' or '.join(DEFAULT_LABEL_FILES)} in the folder",
        )
    if not labels_path.is_file():
        raise DataFormatError(labels_path, "labels file not found")
    table, kind = read_label_table(labels_path)
    skipped_rows = list(table.skipped_rows)

    by_image: dict[str, list[LabelItem]] = defaultdict(list)
    bad_files: list[BadFile] = []
    for item in table.items:
        name = _normalised_name(item.file_name)
        if name is None:
            bad_files.append(BadFile(path=item.file_name, reason=f"{item.where}: the path leaves the data folder"))
            continue
        by_image[name].append(item)

    folder_images, others = list_folder_files(root, {labels_path, *skip})
    junk = [p for p in others if (root / p).resolve() != labels_path.resolve()]
    named = set(by_image)
    images_without_labels = [p for p in folder_images if p not in named]

    present: list[str] = []
    for name, items in by_image.items():
        if (root / name).is_file():
            present.append(name)
        else:
            bad_files.append(BadFile(path=name, reason=f"not found ({items[0].where})"))
    infos = read_file_infos([root / n for n in present], workers, max_pixels)

    candidates: list[tuple[ImageRecord, str | None, str]] = []  # record, declared split, where
    unlabelled: list[str] = []
    patients_from: Counter = Counter()
    for name in present:
        items = by_image[name]
        info, reason = infos[str(root / name)]
        if info is None:
            bad_files.append(BadFile(path=name, reason=reason or "unreadable image"))
            continue
        try:
            label, boxes_xyxy, has_box_labels = _image_labels(items, mapping, unannotated, info)
            patient_id = _one_value(items, "patient_id", "patient ids")
            split = _one_value(items, "split", "splits")
        except _ImageProblem as exc:
            bad_files.append(BadFile(path=name, reason=str(exc)))
            continue
        if label is None:
            unlabelled.append(name)
            continue
        header = info.header
        if patient_id:
            patients_from["labels"] += 1
        elif header is not None and header.patient_id:
            patient_id = header.patient_id
            patients_from["dicom"] += 1
        else:
            patient_id = name
            patients_from["none"] += 1
        record = ImageRecord(
            image_id=name,
            dataset=CUSTOM_DATASET,
            path=name,
            patient_id=patient_id,
            target=int(label == "opacity"),
            has_box_labels=has_box_labels,
            boxes_xyxy=boxes_xyxy,
            rsna_class=PROJECT_LABELS[label],
            split=split,
            height=info.height,
            width=info.width,
            sex=header.sex if header is not None else None,
            age_years=header.age_years if header is not None else None,
            age_valid=header.age_valid if header is not None else True,
            view_position=header.view_position if header is not None else None,
            pixel_spacing_mm=header.pixel_spacing_mm if header is not None else None,
        )
        candidates.append((record, split, items[0].where))

    records, split_problems = _check_patient_splits(candidates)
    bad_files += split_problems
    return OwnParseResult(
        records=sorted(records, key=lambda r: r.image_id),
        bad_files=sorted(bad_files, key=lambda b: (b.path, b.reason)),
        skipped_rows=skipped_rows,
        images_without_labels=images_without_labels,
        unannotated=sorted(unlabelled),
        junk_files=junk,
        labels_path=labels_path,
        label_format=kind,
        patients_from={k: patients_from.get(k, 0) for k in ("labels", "dicom", "none")},
        declared_splits=sum(r.split is not None for r in records),
    )


def _check_patient_splits(
    candidates: list[tuple[ImageRecord, str | None, str]],
) -> tuple[list[ImageRecord], list[BadFile]]:
    """Keep a patient's declared split for all its images; a patient declared in two splits is a problem."""
    declared: dict[str, dict[str, str]] = defaultdict(dict)
    for record, split, _ in candidates:
        if split is not None:
            declared[record.patient_id].setdefault(split, record.path)
    records: list[ImageRecord] = []
    bad: list[BadFile] = []
    for record, _split, _where in candidates:
        splits = declared.get(record.patient_id, {})
        if len(splits) > 1:
            shown = " and ".join(f"{s} ({path})" for s, path in splits.items())
            bad.append(
                BadFile(path=record.path, reason=f"patient {record.patient_id!r} is declared in two splits: {shown}")
            )
            continue
        if splits and record.split is None:
            record = replace(record, split=next(iter(splits)))
        records.append(record)
    return records, bad


def parse_split(text: str) -> str | None:
    """A split cell -> 'train' | 'val' | 'test' | None (empty); ValueError naming the choices otherwise."""
    value = text.strip().casefold()
    if not value:
        return None
    if value not in SPLITS:
        raise ValueError(f"split {text!r} is not one of {', '.join(SPLITS)}")
    return value
