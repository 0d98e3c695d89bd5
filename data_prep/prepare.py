"""`detect prepare`: a dataset folder -> validated records, patient-level splits, the prepared folder.

    result = prepare_dataset("data/rsna")            # detects RSNA or Kermany by its layout
    result = prepare_dataset("my_xrays", labels="my_xrays/labels.csv")   # a folder + COCO JSON / CSV
    print(format_summary(result))                    # the counts it found, as nanoGPT's prepare.py does

Steps: detect the kind -> parse and validate every label and file header (bad ones reported,
never fatal) -> patient-level splits -> optionally the letterbox cache (every image decoded
once; files that fail to decode leave the manifest and join the bad files) -> write the
prepared folder (data_prep.manifest). Deterministic given the seed: a second run writes
byte-identical manifest, splits and summary, and the cache keeps the PNGs it has.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data_prep.atomic import check_writable
from data_prep.cache import CacheResult, build_cache
from data_prep.coco import export_coco
from data_prep.codestreams import DEFAULT_MAX_IMAGE_PIXELS, check_max_pixels
from data_prep.errors import ConfigError, DataFormatError, printable
from data_prep.kermany import KERMANY_DIR, find_kermany_base, parse_kermany
from data_prep.manifest import DEFAULT_PREPARED_DIRNAME, PREPARE_JSON, PreparedDataset, read_manifest, write_manifest
from data_prep.own_labels import (
    DEFAULT_LABEL_FILES,
    PROJECT_LABELS,
    OwnParseResult,
    find_labels_file,
    parse_label_map,
    parse_own_dataset,
    record_label,
)
from data_prep.records import CUSTOM_DATASET, KERMANY_SUBTYPES, RSNA_CLASSES, SPLITS, BadFile, ImageRecord
from data_prep.rsna import LABELS_CSV, TEST_IMAGES_DIR, TRAIN_IMAGES_DIR, parse_rsna
from data_prep.splits import assign_patient_splits, check_fractions

EXPECTED_LAYOUTS = (
    f"an RSNA folder ({LABELS_CSV} + {TRAIN_IMAGES_DIR}/) or a Kermany folder "
    f"({KERMANY_DIR}/{{train,val,test}}/{{NORMAL,PNEUMONIA}}/ or those split folders directly), "
    f"or images with their labels (--labels FILE, a COCO .json or a .csv; found without it as "
    f"{' or '.join(DEFAULT_LABEL_FILES)} in the folder)"
)
CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "rsna": RSNA_CLASSES,
    "kermany": KERMANY_SUBTYPES,
    CUSTOM_DATASET: tuple(PROJECT_LABELS),
}
_LIST_LIMIT = 20  # ids / files printed per list in the summary; the files hold them all


@dataclass(frozen=True)
class PrepareResult:
    """What `prepare_dataset` did. `counts` is exactly what summary.json holds."""

    prepared_dir: Path
    dataset: str
    data_root: Path
    records: list[ImageRecord]
    counts: dict[str, Any]
    bad_files: list[BadFile]
    junk_files: list[str] = field(default_factory=list)
    images_without_labels: list[str] = field(default_factory=list)
    labels_without_images: list[str] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)
    cache: CacheResult | None = None
    own: OwnParseResult | None = None  # a custom dataset's label report (skipped rows, patients, ...)


def detect_dataset_kind(data_dir: str | Path, labels: str | Path | None = None) -> str:
    """'rsna', 'kermany' or 'custom' from the folder's layout; DataFormatError naming the folder otherwise.

    'custom' (data_prep.own_labels) when `labels` is given, or when the folder is neither RSNA
    nor Kermany and holds one annotations.json or labels.csv.
    """
    data_dir = Path(data_dir)
    if not data_dir.exists():
        raise DataFormatError(data_dir, f"no such folder (expected {EXPECTED_LAYOUTS})")
    if not data_dir.is_dir():
        raise DataFormatError(data_dir, f"not a folder (expected {EXPECTED_LAYOUTS})")
    if labels is not None:
        return CUSTOM_DATASET
    has_labels = (data_dir / LABELS_CSV).is_file()
    has_images = (data_dir / TRAIN_IMAGES_DIR).is_dir()
    is_kermany = find_kermany_base(data_dir) is not None
    if has_labels and has_images and is_kermany:
        raise DataFormatError(data_dir, "holds both an RSNA and a Kermany dataset: pass the folder of one of them")
    if has_labels and has_images:
        return "rsna"
    if is_kermany:
        return "kermany"
    if has_labels != has_images:
        missing = f"{TRAIN_IMAGES_DIR}/ folder" if has_labels else LABELS_CSV
        present = LABELS_CSV if has_labels else f"{TRAIN_IMAGES_DIR}/"
        raise DataFormatError(data_dir, f"looks like RSNA ({present} found) but {missing} is missing")
    if find_labels_file(data_dir) is not None:
        return CUSTOM_DATASET
    raise DataFormatError(data_dir, f"unrecognised layout (expected {EXPECTED_LAYOUTS})")


def _class_of(record: ImageRecord) -> str:
    if record.dataset == CUSTOM_DATASET:
        return record_label(record)
    return (record.rsna_class if record.dataset == "rsna" else record.subtype) or "unknown"


def _class_counts(records: Sequence[ImageRecord], class_names: Sequence[str]) -> dict[str, int]:
    counts = Counter(_class_of(r) for r in records)
    return {name: counts.get(name, 0) for name in [*class_names, *sorted(set(counts) - set(class_names))]}


def summarize(
    dataset: str,
    records: Sequence[ImageRecord],
    *,
    bad_files: Sequence[BadFile],
    junk_files: Sequence[str] = (),
    images_without_labels: Sequence[str] = (),
    labels_without_images: Sequence[str] = (),
    duplicate_class_rows: int = 0,
    duplicate_label_rows: int = 0,
    unlabeled_test_images: int = 0,
) -> dict[str, Any]:
    """The counts of a prepared dataset (summary.json): plain ints, floats, strings, lists, dicts."""
    class_names = CLASS_NAMES[dataset]
    splits = {}
    for split in SPLITS:
        in_split = [r for r in records if r.split == split]
        splits[split] = {
            "images": len(in_split),
            "patients": len({r.patient_id for r in in_split}),
            "positive_images": sum(r.target for r in in_split),
            "classes": _class_counts(in_split, class_names),
        }
    views: dict[str, dict[str, int]] = {}
    for record in records:
        view = views.setdefault(record.view_position or "unknown", {"images": 0, "positive_images": 0})
        view["images"] += 1
        view["positive_images"] += record.target

    boxed = [r for r in records if r.has_box_labels]
    boxes_per_image = Counter(len(r.boxes_xyxy) for r in boxed)
    valid_ages = sorted(r.age_years for r in records if r.age_years is not None and r.age_valid)
    invalid_ages = sorted({r.age_years for r in records if r.age_years is not None and not r.age_valid})
    heights = [r.height for r in records if r.height is not None]
    widths = [r.width for r in records if r.width is not None]

    counts: dict[str, Any] = {
        "dataset": dataset,
        "images": len(records),
        "patients": len({r.patient_id for r in records}),
        "positive_images": sum(r.target for r in records),
        "classes": _class_counts(records, class_names),
        "splits": splits,
        "views": dict(sorted(views.items())),
        "images_with_box_labels": len(boxed),
        "boxes": int(sum(boxes_per_image[n] * n for n in boxes_per_image)),
        "boxes_per_image": {str(n): boxes_per_image[n] for n in sorted(boxes_per_image)},
        "age_years": {
            "median": float(statistics.median(valid_ages)) if valid_ages else None,
            "min": float(valid_ages[0]) if valid_ages else None,
            "max": float(valid_ages[-1]) if valid_ages else None,
            "missing": sum(r.age_years is None for r in records),
            "invalid": sum(r.age_years is not None and not r.age_valid for r in records),
            "invalid_values": [float(a) for a in invalid_ages],
        },
        "sex": dict(sorted(Counter(r.sex or "unknown" for r in records).items())),
        "image_size_px": {
            "height_min": min(heights) if heights else None,
            "height_max": max(heights) if heights else None,
            "width_min": min(widths) if widths else None,
            "width_max": max(widths) if widths else None,
        },
        "bad_files": len(bad_files),
        "junk_files": len(junk_files),
        "images_without_labels": len(images_without_labels),
        "images_without_labels_ids": list(images_without_labels),
        "labels_without_images": len(labels_without_images),
        "labels_without_images_ids": list(labels_without_images),
        "duplicate_class_rows": duplicate_class_rows,
        "duplicate_label_rows": duplicate_label_rows,
        "unlabeled_test_images": unlabeled_test_images,
    }
    if dataset == "kermany":
        counts["source_splits"] = {split: sum(r.source_split == split for r in records) for split in SPLITS}
    return counts


def prepare_dataset(
    data_dir: str | Path,
    out_dir: str | Path | None = None,
    cache: bool = False,
    image_size_px: int = 512,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    workers: int = 2,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    labels: str | Path | None = None,
    label_map: str | dict[str, str] | None = None,
    unannotated: str | None = None,
) -> PrepareResult:
    """Prepare the dataset in `data_dir` (RSNA, Kermany, or images + labels: detected) into `out_dir`.

    `labels` (a COCO .json or a .csv), `label_map` ('name=label,...' or a dict) and
    `unannotated` ('normal' or None) describe a folder of the user's own images
    (data_prep.own_labels); without `labels` such a folder's annotations.json / labels.csv is used.

    `out_dir` defaults to <data_dir>/detect_prepared. With `cache`, every image is also
    decoded once into <out_dir>/cache/<image_size_px>/ (see data_prep.cache); images that
    fail to decode are then removed from the manifest and listed as bad files.
    Every header scan proves the file's pixel data complete and consistent; an image over
    `max_pixels` (default 100 megapixels) is a bad file, found before decoding.
    Raises DataFormatError for a missing folder, an unrecognised layout or a malformed label
    file; ConfigError for invalid fractions, size, workers or max_pixels; OutputWriteError,
    before any file is read, when `out_dir` cannot be written.
    """
    check_fractions(val_fraction, test_fraction)
    if image_size_px <= 0:
        raise ConfigError(f"image_size_px: {image_size_px} must be a positive number of pixels")
    if workers < 1:
        raise ConfigError(f"workers: {workers} must be at least 1")
    check_max_pixels(max_pixels)
    data_root = Path(data_dir).expanduser().resolve()
    dataset = detect_dataset_kind(data_root, labels)
    if dataset != CUSTOM_DATASET and (label_map or unannotated):
        raise ConfigError(f"--label-map and --unannotated apply to a folder with --labels; {data_root} is {dataset}")
    mapping = parse_label_map(label_map)
    prepared_dir = Path(out_dir).expanduser().resolve() if out_dir is not None else data_root / DEFAULT_PREPARED_DIRNAME
    check_writable(prepared_dir, expect="folder", what="the prepared folder (--out)")  # before reading any file

    junk_files: list[str] = []
    images_without_labels: list[str] = []
    labels_without_images: list[str] = []
    duplicate_class_rows = duplicate_label_rows = unlabeled_test_images = 0
    own = None
    if dataset == CUSTOM_DATASET:
        own = parse_own_dataset(
            data_root,
            Path(labels).expanduser().resolve() if labels is not None else None,
            label_map=mapping,
            unannotated=unannotated,
            workers=workers,
            max_pixels=max_pixels,
            skip=(prepared_dir,),
        )
        records, bad_files = own.records, list(own.bad_files)
        junk_files = own.junk_files
        images_without_labels = own.images_without_labels
    elif dataset == "rsna":
        parsed_rsna = parse_rsna(data_root, workers=workers, max_pixels=max_pixels)
        records, bad_files = parsed_rsna.records, list(parsed_rsna.bad_files)
        junk_files = parsed_rsna.junk_files
        images_without_labels = parsed_rsna.images_without_labels
        labels_without_images = parsed_rsna.labels_without_images
        duplicate_class_rows = parsed_rsna.duplicate_class_rows
        duplicate_label_rows = parsed_rsna.duplicate_label_rows
        unlabeled_test_images = len(parsed_rsna.test_image_paths)
    else:
        parsed_kermany = parse_kermany(data_root, workers=workers, max_pixels=max_pixels)
        records, bad_files = parsed_kermany.records, list(parsed_kermany.bad_files)
        junk_files = parsed_kermany.junk_files

    records = assign_patient_splits(records, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)

    cache_result = None
    if cache:
        prepared = PreparedDataset(
            dataset=dataset,
            data_root=data_root,
            records=records,
            prepared_dir=prepared_dir,
            cache_size_px=image_size_px,
            seed=seed,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
        )
        cache_result = build_cache(prepared, image_size_px, workers=workers, max_pixels=max_pixels)
        undecodable = {b.path for b in cache_result.bad_files}
        records = [r for r in records if r.path not in undecodable]
        bad_files.extend(cache_result.bad_files)
    bad_files.sort(key=lambda b: (b.path, b.reason))

    counts = summarize(
        dataset,
        records,
        bad_files=bad_files,
        junk_files=junk_files,
        images_without_labels=images_without_labels,
        labels_without_images=labels_without_images,
        duplicate_class_rows=duplicate_class_rows,
        duplicate_label_rows=duplicate_label_rows,
        unlabeled_test_images=unlabeled_test_images,
    )
    if own is not None:
        counts.update(own_counts(own, mapping))
    written = write_manifest(
        prepared_dir,
        records,
        dataset=dataset,
        data_root=data_root,
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        bad_files=bad_files,
        summary=counts,
        cache_size_px=image_size_px if cache else None,
        labels=None
        if own is None
        else {
            "file": str(own.labels_path),
            "format": own.label_format,
            "label_map": dict(sorted(mapping.items())),
            "unannotated": unannotated,
        },
    )
    return PrepareResult(
        prepared_dir=prepared_dir,
        dataset=dataset,
        data_root=data_root,
        records=sorted(records, key=lambda r: r.image_id),
        counts=counts,
        bad_files=bad_files,
        junk_files=list(junk_files),
        images_without_labels=list(images_without_labels),
        labels_without_images=list(labels_without_images),
        written=written,
        cache=cache_result,
        own=own,
    )


def own_counts(own: OwnParseResult, label_map: dict[str, str]) -> dict[str, object]:
    """What summary.json adds for a custom dataset: the labels file, the map, what was skipped, where patients came from."""
    return {
        "labels_file": str(own.labels_path),
        "labels_format": own.label_format,
        "label_map": dict(sorted(label_map.items())),
        "skipped_label_rows": len(own.skipped_rows),
        "unannotated_images": len(own.unannotated),
        "unannotated_ids": list(own.unannotated),
        "patients_from": dict(own.patients_from),
        "declared_splits": own.declared_splits,
    }


def leakage_warning(own: OwnParseResult) -> str | None:
    """The one warning line of a custom dataset whose images have no patient id, else None."""
    without = own.patients_from.get("none", 0)
    if not without:
        return None
    total = sum(own.patients_from.values())
    return (
        f"warning: {without:,} of {total:,} images have no patient id (no patient_id in the labels, no DICOM "
        "PatientID): they are split per image, so one patient's images can fall in both train and test (leakage)"
    )


def export_prepared_coco(prepared_dir: str | Path, out_path: str | Path) -> Path | None:
    """Write the prepared dataset in `prepared_dir` (a folder holding prepare.json, as `detect
    prepare` writes it) as COCO JSON at `out_path`; None when `prepared_dir` is not one."""
    if not (Path(prepared_dir) / PREPARE_JSON).is_file():
        return None
    prepared = read_manifest(prepared_dir)
    return export_coco(
        prepared.records,
        out_path,
        description=f"{prepared.dataset} dataset of {prepared.data_root}, exported by detect prepare",
    )


def _pct(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:5.1f}%" if whole else "    -"


def _first_few(items: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def format_summary(result: PrepareResult) -> str:
    """The human-readable report of a preparation: counts per class, split and view, boxes,
    ages and sexes, every problem found, and where the files went."""
    c = result.counts
    n = c["images"]
    title = {
        "rsna": "RSNA Pneumonia Detection (stage 2)",
        "kermany": "Kermany chest X-ray (pneumonia)",
        CUSTOM_DATASET: f"Own images, labels from {result.own.labels_path if result.own else '?'}",
    }[result.dataset]
    lines = [
        f"{title}: {result.data_root}",
        f"  {n:,} images, {c['patients']:,} patients, {c['positive_images']:,} positive ({_pct(c['positive_images'], n).strip()})",
        "",
        f"  {'class':<32}{'images':>9}{'share':>8}",
    ]
    for name, count in c["classes"].items():
        lines.append(f"  {name:<32}{count:>9,}{_pct(count, n):>8}")

    lines += ["", f"  {'split':<8}{'images':>9}{'patients':>10}{'positive':>10}{'% pos':>8}   per class"]
    for split, s in c["splits"].items():
        per_class = "  ".join(f"{k}: {v:,}" for k, v in s["classes"].items())
        lines.append(
            f"  {split:<8}{s['images']:>9,}{s['patients']:>10,}{s['positive_images']:>10,}"
            f"{_pct(s['positive_images'], s['images']):>8}   {per_class}"
        )
    if "source_splits" in c:
        lines.append("  source folders: " + ", ".join(f"{k}/ {v:,}" for k, v in c["source_splits"].items()))

    if result.dataset == CUSTOM_DATASET:
        histogram = "  ".join(f"{k} box{'es' if k != '1' else ''}: {v:,}" for k, v in c["boxes_per_image"].items())
        lines += ["", f"  boxes: {c['boxes']:,} on {c['images_with_box_labels']:,} images; per image: {histogram}"]
        source = c["patients_from"]
        lines.append(
            f"  patients from: labels {source['labels']:,}, DICOM PatientID {source['dicom']:,}, "
            f"none {source['none']:,} images; declared splits kept: {c['declared_splits']:,} images"
        )
        if result.own is not None and leakage_warning(result.own):
            lines.append(f"  {leakage_warning(result.own)}")
    if result.dataset == "rsna":
        lines += ["", f"  {'view':<8}{'images':>9}{'positive':>10}{'% pos':>8}"]
        for view, v in c["views"].items():
            lines.append(
                f"  {view:<8}{v['images']:>9,}{v['positive_images']:>10,}{_pct(v['positive_images'], v['images']):>8}"
            )
        histogram = "  ".join(f"{k} box{'es' if k != '1' else ''}: {v:,}" for k, v in c["boxes_per_image"].items())
        lines += ["", f"  boxes: {c['boxes']:,} on {c['images_with_box_labels']:,} images; per image: {histogram}"]
        age = c["age_years"]
        if age["median"] is not None:
            age_line = f"  age (years): median {age['median']:g}, range {age['min']:g}-{age['max']:g}"
        else:
            age_line = "  age (years): no valid ages"
        age_line += f"; {age['invalid']:,} impossible"
        if age["invalid_values"]:
            age_line += " (" + ", ".join(f"{a:g}" for a in age["invalid_values"]) + ")"
        age_line += f"; {age['missing']:,} missing"
        lines.append(age_line)
        lines.append("  sex: " + "  ".join(f"{k} {v:,}" for k, v in c["sex"].items()))
        lines.append(f"  duplicate class-info rows collapsed: {c['duplicate_class_rows']:,}")
        if c["duplicate_label_rows"]:
            lines.append(f"  duplicate label rows collapsed: {c['duplicate_label_rows']:,}")
        lines.append(f"  unlabeled test images ({TEST_IMAGES_DIR}/): {c['unlabeled_test_images']:,}")
    sizes = c["image_size_px"]
    if sizes["height_min"] is not None:
        lines.append(
            f"  image size (px): height {sizes['height_min']}-{sizes['height_max']}, "
            f"width {sizes['width_min']}-{sizes['width_max']}"
        )

    lines.append("")
    if result.own is not None:
        lines.append(f"  label rows skipped: {len(result.own.skipped_rows):,}")
        for row in result.own.skipped_rows[:_LIST_LIMIT]:
            lines.append(f"    {printable(row)}")
        if len(result.own.skipped_rows) > _LIST_LIMIT:
            lines.append(f"    ... and {len(result.own.skipped_rows) - _LIST_LIMIT:,} more")
        lines.append(
            f"  images listed without a label (left out; --unannotated normal takes them as normal): "
            f"{len(result.own.unannotated):,}"
        )
        if result.own.unannotated:
            lines.append(f"    {printable(_first_few(result.own.unannotated))}")
        lines.append(f"  images in the folder the labels do not name: {len(result.images_without_labels):,}")
        if result.images_without_labels:
            lines.append(f"    {printable(_first_few(result.images_without_labels))}")
    if result.dataset == "rsna":
        lines.append(f"  images without labels: {len(result.images_without_labels):,}")
        if result.images_without_labels:
            lines.append(f"    {_first_few(result.images_without_labels)}")
        lines.append(f"  labels without images: {len(result.labels_without_images):,}")
        if result.labels_without_images:
            lines.append(f"    {_first_few(result.labels_without_images)}")
    lines.append(f"  bad files (skipped): {len(result.bad_files):,}")
    for bad in result.bad_files[:_LIST_LIMIT]:
        lines.append(f"    {printable(bad.path)}: {printable(bad.reason)}")
    if len(result.bad_files) > _LIST_LIMIT:
        lines.append(f"    ... and {len(result.bad_files) - _LIST_LIMIT:,} more (all in bad_files.csv)")
    lines.append(f"  junk files (not images, skipped): {len(result.junk_files):,}")
    if result.junk_files:
        lines.append(f"    {_first_few(result.junk_files)}")

    lines += ["", f"  written to {result.prepared_dir}: " + ", ".join(p.name for p in result.written)]
    if result.cache is not None:
        cr = result.cache
        lines.append(
            f"  cache {cr.size_px}px: {cr.cache_dir} ({cr.n_written:,} written, {cr.n_skipped:,} already there, "
            f"{len(cr.bad_files):,} failed)"
        )
    return "\n".join(lines)
