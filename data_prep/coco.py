"""COCO detection JSON, both ways: a folder's labels in (-> LabelItems), any prepared dataset out.

Reading (`read_coco_labels`, checked further in data_prep.own_labels):

    {"images":      [{"id": 1, "file_name": "images/a.dcm", "width": 1024, "height": 1024}, ...],
     "annotations": [{"id": 7, "image_id": 1, "category_id": 2, "bbox": [x, y, width, height]}, ...],
     "categories":  [{"id": 2, "name": "consolidation"}, ...]}

`file_name` is relative to the data folder; `bbox` is in pixels, (x, y) the top-left corner.
An annotation without a bbox is a label of the whole image. Three optional keys of an image,
which tools that do not know them ignore, carry what COCO has no place for: `patient_id`,
`split` (train/val/test) and `label` (the image's label when it has no annotation, e.g.
'normal'). `detect prepare --export-coco` writes them, so that an exported dataset prepares
back to the same manifest.

A file that is not JSON, or not a COCO object (no `images` list), raises LabelFileError.
One bad entry never stops the reading: an image without an id or file_name, an id or a
file_name given twice, an annotation of an image that is not listed, an exact repeat of an
annotation are skipped and listed in `skipped_rows`; an unknown category or a malformed bbox
becomes the annotation's `problem` (its image is left out with this reason).

Writing (`export_coco`): one image per record (file_name = record.path), one `opacity`
annotation per box, categories [opacity]; each image carries its patient_id, split and label
(normal / abnormal / opacity; Kermany: normal or opacity, its subtypes have no place).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from data_prep.atomic import check_writable, write_text_atomic
from data_prep.errors import LabelFileError
from data_prep.geometry import xyxy_to_xywh
from data_prep.own_labels import LABEL_OF_RSNA_CLASS, LabelItem, LabelTable, parse_split
from data_prep.records import ImageRecord

OPACITY_CATEGORY: dict[str, Any] = {"id": 1, "name": "opacity", "supercategory": "lung"}


def _load(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise LabelFileError(path, "file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError:
        raise LabelFileError(path, "not UTF-8 text (a COCO file is JSON)") from None
    except json.JSONDecodeError as exc:
        raise LabelFileError(path, f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise LabelFileError(path, "not a COCO detection file: expected an object with an 'images' list")
    for key in ("annotations", "categories"):
        if key in data and not isinstance(data[key], list):
            raise LabelFileError(path, f"'{key}' must be a list")
    return data


def _key(value: Any) -> Any:
    """An id as a dict key: 3 and 3.0 are the same id; anything unhashable is None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value if isinstance(value, (int, str)) else None


def _bbox(value: Any) -> tuple[tuple[float, float, float, float] | None, str | None]:
    if value is None or (isinstance(value, list) and not value):
        return None, None
    if (
        not isinstance(value, list)
        or len(value) != 4
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    ):
        return None, f"bbox {json.dumps(value)[:60]} is not [x, y, width, height] in pixels"
    return (float(value[0]), float(value[1]), float(value[2]), float(value[3])), None


def _size(entry: dict[str, Any]) -> tuple[int, int] | None:
    height, width = entry.get("height"), entry.get("width")
    if all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (height, width)):
        return int(height), int(width)
    return None


def read_coco_labels(path: str | Path) -> LabelTable:
    """Read a COCO detection file (see the module docstring) into a LabelTable."""
    path = Path(path)
    data = _load(path)
    name = path.name
    skipped: list[str] = []
    categories: dict[Any, str] = {}
    for index, category in enumerate(data.get("categories", [])):
        key = _key(category.get("id")) if isinstance(category, dict) else None
        if key is None or not isinstance(category.get("name"), str):
            skipped.append(f"{name} categories[{index}]: no id or name, skipped")
            continue
        categories.setdefault(key, category["name"])

    items: list[LabelItem] = []
    file_of: dict[Any, str] = {}
    listed_at: dict[str, str] = {}
    has_patients = has_splits = False
    for index, image in enumerate(data["images"]):
        where = f"{name} images[{index}]"
        key = _key(image.get("id")) if isinstance(image, dict) else None
        file_name = image.get("file_name") if isinstance(image, dict) else None
        if key is None or not isinstance(file_name, str) or not file_name.strip():
            skipped.append(f"{where}: no id or file_name, skipped")
            continue
        where = f"{name} images[{index}] (id {key})"
        if key in file_of:
            skipped.append(f"{where}: id {key} already used by {file_of[key]!r}, skipped")
            continue
        if file_name in listed_at:
            skipped.append(f"{where}: {file_name!r} already listed at {listed_at[file_name]}, skipped")
            continue
        file_of[key] = file_name
        listed_at[file_name] = where
        problem = None
        try:
            split = parse_split(str(image.get("split") or ""))
        except ValueError as exc:
            split, problem = None, str(exc)
        patient_id = image.get("patient_id")
        patient_id = str(patient_id).strip() if patient_id not in (None, "") else None
        has_patients |= patient_id is not None
        has_splits |= split is not None
        label = image.get("label")
        items.append(
            LabelItem(
                file_name=file_name,
                where=where,
                label=str(label) if label else None,
                patient_id=patient_id,
                split=split,
                declared_hw=_size(image),
                problem=problem,
            )
        )

    seen: dict[tuple[Any, ...], str] = {}
    for index, annotation in enumerate(data.get("annotations", [])):
        if not isinstance(annotation, dict):
            skipped.append(f"{name} annotations[{index}]: not an object, skipped")
            continue
        ann_id = annotation.get("id", f"#{index}")
        where = f"{name} annotation id {ann_id}"
        image_key = _key(annotation.get("image_id"))
        if image_key not in file_of:
            skipped.append(f"{where}: image_id {annotation.get('image_id')!r} is not in images, skipped")
            continue
        box, problem = _bbox(annotation.get("bbox"))
        category_key = _key(annotation.get("category_id"))
        duplicate_key = (image_key, category_key, box)
        if duplicate_key in seen:
            skipped.append(f"{where}: duplicate of {seen[duplicate_key]}, skipped")
            continue
        seen[duplicate_key] = f"annotation id {ann_id}"
        label = categories.get(category_key)
        if label is None and problem is None:
            problem = f"category_id {annotation.get('category_id')!r} is not in categories"
        items.append(
            LabelItem(file_name=file_of[image_key], where=where, label=label or "?", box_xywh=box, problem=problem)
        )
    return LabelTable(path=path, items=items, skipped_rows=skipped, has_patient_ids=has_patients, has_splits=has_splits)


# ------------------------------------------------------------------------------ export


def _image_label(record: ImageRecord) -> str:
    if record.rsna_class is not None:
        return LABEL_OF_RSNA_CLASS.get(record.rsna_class, "abnormal")
    return "opacity" if record.target else "normal"


def _number(value: float) -> float | int:
    rounded = round(float(value), 3)
    return int(rounded) if rounded.is_integer() else rounded


def coco_dict(records: Iterable[ImageRecord], *, description: str = "") -> dict[str, Any]:
    """The COCO object of `records` (see the module docstring), images in image_id order."""
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for image_number, record in enumerate(sorted(records, key=lambda r: r.image_id), start=1):
        image: dict[str, Any] = {"id": image_number, "file_name": record.path}
        if record.width is not None and record.height is not None:
            image.update(width=int(record.width), height=int(record.height))
        image.update(patient_id=record.patient_id, label=_image_label(record))
        if record.split is not None:
            image["split"] = record.split
        images.append(image)
        for box in xyxy_to_xywh(record.boxes_xyxy) if record.has_box_labels else []:
            bbox = [_number(v) for v in box]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_number,
                    "category_id": OPACITY_CATEGORY["id"],
                    "bbox": bbox,
                    "area": _number(float(box[2]) * float(box[3])),
                    "iscrowd": 0,
                }
            )
    return {
        "info": {"description": description or "exported by detect prepare --export-coco"},
        "images": images,
        "annotations": annotations,
        "categories": [dict(OPACITY_CATEGORY)],
    }


def export_coco(records: Iterable[ImageRecord], out_path: str | Path, *, description: str = "") -> Path:
    """Write `records` as a COCO detection JSON at `out_path` (atomically); return the path.

    Raises OutputWriteError when the file cannot be written.
    """
    out_path = Path(out_path)
    check_writable(out_path, expect="file", what="--export-coco")
    write_text_atomic(out_path, json.dumps(coco_dict(records, description=description), indent=1) + "\n")
    return out_path
