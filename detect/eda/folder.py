"""`detect eda DATA_DIR`: the report of a dataset folder (an RSNA or Kermany root, or a prepared folder).

    result = run_eda_folder(out_dir, "data/rsna")

Nothing is read twice: the records come from the prepared manifest (a raw root is prepared
first, as `detect prepare` would: one header scan, no pixel decoded), and the images the report
shows are a seeded sample per class read from the preprocessing cache (`data_prep.cache`),
decoding only sampled images not cached yet, into the same cache `detect train` fills and
reads. A second run decodes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from data_prep.cache import CacheResult, build_cache, load_cached_image
from data_prep.eda import compute_eda, intensity_histogram, tables_from_records
from data_prep.eda.tables import EdaSource
from data_prep.errors import ConfigError, DataFormatError
from data_prep.geometry import letterbox_content_shape, letterbox_scale, scale_boxes
from data_prep.manifest import SUMMARY_JSON, PreparedDataset, find_prepared, read_manifest
from data_prep.prepare import detect_dataset_kind, prepare_dataset
from data_prep.records import KERMANY_SUBTYPES, RSNA_CLASSES, ImageRecord
from detect.eda.run import EdaResult, check_out_dir, write_eda

DEFAULT_IMAGE_SIZE_PX = 512  # `detect prepare`'s and the training recipes' default cache size
DEFAULT_IMAGES_PER_CLASS = 48
GRID_COLUMNS = 4  # sample images shown per class


def _prepared(data_dir: Path, workers: int, log: Callable[[str], None]) -> tuple[PreparedDataset, bool]:
    if not data_dir.is_dir():
        raise DataFormatError(data_dir, "no such folder (expected an RSNA or Kermany root, or a prepared folder)")
    if find_prepared(data_dir) is not None:
        return read_manifest(data_dir), False
    detect_dataset_kind(data_dir)  # a clear error for a wrong folder, before anything is written
    log(f"{data_dir}: no manifest yet, preparing it (as `detect prepare` would)")
    result = prepare_dataset(data_dir, workers=workers)
    return read_manifest(result.prepared_dir), True


def _summary(prepared: PreparedDataset) -> dict[str, Any]:
    path = prepared.prepared_dir / SUMMARY_JSON
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataFormatError(path, "file not found: rerun `detect prepare`") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataFormatError(path, f"not valid JSON ({exc}): rerun `detect prepare`") from None
    if not isinstance(summary, dict):
        raise DataFormatError(path, "not a JSON object: rerun `detect prepare`")
    return summary


def _class_of(record: ImageRecord) -> str:
    return (record.rsna_class if record.dataset in ("rsna", "custom") else record.subtype) or "unknown"


def sample_per_class(records: Sequence[ImageRecord], per_class: int, seed: int) -> dict[str, list[ImageRecord]]:
    """Up to `per_class` records of each class, drawn with `seed`, in image_id order: the same
    sample for the same manifest and seed."""
    order = [*RSNA_CLASSES, *KERMANY_SUBTYPES]
    by_class: dict[str, list[ImageRecord]] = {}
    for record in sorted(records, key=lambda r: r.image_id):
        by_class.setdefault(_class_of(record), []).append(record)
    rng = np.random.default_rng(seed)
    sample = {}
    for name in sorted(by_class, key=lambda c: (order.index(c) if c in order else len(order), c)):
        members = by_class[name]
        chosen = rng.choice(len(members), size=min(per_class, len(members)), replace=False) if members else []
        sample[name] = [members[i] for i in sorted(int(i) for i in chosen)]
    return sample


def _content(prepared: PreparedDataset, record: ImageRecord, size_px: int) -> tuple[np.ndarray, float] | None:
    """The cached PNG of `record` without its letterbox padding, and its scale; None if not cached."""
    path = prepared.cached_image_path(record.image_id, size_px)
    if not path.is_file() or not record.height or not record.width:
        return None
    pixels = load_cached_image(path)
    rows, columns = letterbox_content_shape(record.height, record.width, size_px)
    return pixels[:rows, :columns], letterbox_scale(record.height, record.width, size_px)


def _image_section(
    prepared: PreparedDataset,
    sample: Mapping[str, Sequence[ImageRecord]],
    cache: CacheResult,
    per_class: int,
    seed: int,
) -> tuple[dict[str, Any], list[tuple[str, list[dict[str, Any]]]]]:
    """eda.json's images section (sample ids, histograms) and the grid's panels."""
    failed = {b.path for b in cache.bad_files}
    classes, panels = [], []
    for name, members in sample.items():
        loaded = [(r, _content(prepared, r, cache.size_px)) for r in members if r.path not in failed]
        loaded = [(r, c) for r, c in loaded if c is not None]
        histogram = intensity_histogram(pixels for _, (pixels, _) in loaded)
        mean_grey = float(np.dot(np.arange(256), histogram["density"])) if histogram["images"] else None
        shown = loaded[:GRID_COLUMNS]
        classes.append(
            {
                "group": name,
                "sampled_ids": [r.image_id for r in members],
                "shown_ids": [r.image_id for r, _ in shown],
                "histogram": histogram,
                "mean_grey": mean_grey,
            }
        )
        panels.append(
            (
                name,
                [
                    {
                        "image": pixels,
                        "boxes_xyxy": scale_boxes(r.boxes_xyxy, scale),
                        "title": r.image_id.split("/")[-1],
                    }
                    for r, (pixels, scale) in shown
                ],
            )
        )
    section = {
        "images_per_class": per_class,
        "seed": seed,
        "cache_size_px": cache.size_px,
        "cache_dir": str(cache.cache_dir),
        "decoded_now": cache.n_written,
        "already_cached": cache.n_skipped,
        "could_not_decode": [{"path": b.path, "reason": b.reason} for b in cache.bad_files],
        "classes": classes,
    }
    return section, panels


def run_eda_folder(
    out_dir: str | Path,
    data_dir: str | Path,
    *,
    images_per_class: int = DEFAULT_IMAGES_PER_CLASS,
    image_size_px: int | None = None,
    seed: int = 0,
    workers: int = 2,
    log: Callable[[str], None] = lambda _: None,
) -> EdaResult:
    """The report of `data_dir` written into out_dir. The sample is read at `image_size_px`
    (default: the prepared cache's size, else 512). Raises ConfigError for a bad value,
    DataFormatError naming the folder or file that cannot be read."""
    if images_per_class < 1:
        raise ConfigError(f"images_per_class: {images_per_class} must be at least 1")
    if image_size_px is not None and image_size_px < 16:
        raise ConfigError(f"image_size_px: {image_size_px} must be at least 16 pixels")
    if workers < 1:
        raise ConfigError(f"workers: {workers} must be at least 1")
    check_out_dir(out_dir)
    prepared, prepared_now = _prepared(Path(data_dir), workers, log)
    size_px = image_size_px or prepared.cache_size_px or DEFAULT_IMAGE_SIZE_PX
    sample = sample_per_class(prepared.records, images_per_class, seed)
    cache = build_cache(prepared, size_px, workers=workers, records=[r for members in sample.values() for r in members])
    source = EdaSource(
        mode="images",
        dataset=prepared.dataset,
        data_dir=str(prepared.data_root),
        prepared_dir=str(prepared.prepared_dir),
        prepared_now=prepared_now,
        split_seed=prepared.seed,
    )
    tables = tables_from_records(
        prepared.dataset,
        prepared.records,
        source=source,
        summary=_summary(prepared),
        bad_files=[*prepared.bad_files, *cache.bad_files],
    )
    numbers = compute_eda(tables)
    numbers["images_section"], panels = _image_section(prepared, sample, cache, images_per_class, seed)
    return write_eda(out_dir, numbers, panels, notes=[f"{b.path}: {b.reason}" for b in cache.bad_files])
