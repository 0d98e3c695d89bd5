"""`detect prepare`: a dataset folder -> validated records, patient-level splits, the prepared folder.

    result = prepare_dataset("data/rsna")            # detects RSNA or Kermany by its layout
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
from data_prep.codestreams import DEFAULT_MAX_IMAGE_PIXELS, check_max_pixels
from data_prep.errors import ConfigError, DataFormatError, printable
from data_prep.kermany import KERMANY_DIR, find_kermany_base, parse_kermany
from data_prep.manifest import DEFAULT_PREPARED_DIRNAME, PreparedDataset, write_manifest
from data_prep.records import KERMANY_SUBTYPES, RSNA_CLASSES, SPLITS, BadFile, ImageRecord
from data_prep.rsna import LABELS_CSV, TEST_IMAGES_DIR, TRAIN_IMAGES_DIR, parse_rsna
from data_prep.splits import assign_patient_splits, check_fractions

EXPECTED_LAYOUTS = (
    f"an RSNA folder ({LABELS_CSV} + {TRAIN_IMAGES_DIR}/) or a Kermany folder "
    f"({KERMANY_DIR}/{{train,val,test}}/{{NORMAL,PNEUMONIA}}/ or those split folders directly)"
)
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


def detect_dataset_kind(data_dir: str | Path) -> str:
    """'rsna' or 'kermany' from the folder's layout; DataFormatError naming the folder otherwise."""
    data_dir = Path(data_dir)
    if not data_dir.exists():
        raise DataFormatError(data_dir, f"no such folder (expected {EXPECTED_LAYOUTS})")
    if not data_dir.is_dir():
        raise DataFormatError(data_dir, f"not a folder (expected {EXPECTED_LAYOUTS})")
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
    raise DataFormatError(data_dir, f"unrecognised layout (expected {EXPECTED_LAYOUTS})")


def _class_of(record: ImageRecord) -> str:
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
    class_names = RSNA_CLASSES if dataset == "rsna" else KERMANY_SUBTYPES
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
        counts["source_splits"] = {
            split: sum(r.source_split == split for r in records) for split in SPLITS
        }
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
) -> PrepareResult:
    """Prepare the dataset in `data_dir` (RSNA or Kermany, detected) into `out_dir`.

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
    dataset = detect_dataset_kind(data_root)
    prepared_dir = Path(out_dir).expanduser().resolve() if out_dir is not None else data_root / DEFAULT_PREPARED_DIRNAME
    check_writable(prepared_dir, expect="folder", what="the prepared folder (--out)")  # before reading any file

    junk_files: list[str] = []
    images_without_labels: list[str] = []
    labels_without_images: list[str] = []
    duplicate_class_rows = duplicate_label_rows = unlabeled_test_images = 0
    if dataset == "rsna":
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
    title = "RSNA Pneumonia Detection (stage 2)" if result.dataset == "rsna" else "Kermany chest X-ray (pneumonia)"
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

    if result.dataset == "rsna":
        lines += ["", f"  {'view':<8}{'images':>9}{'positive':>10}{'% pos':>8}"]
        for view, v in c["views"].items():
            lines.append(f"  {view:<8}{v['images']:>9,}{v['positive_images']:>10,}{_pct(v['positive_images'], v['images']):>8}")
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
