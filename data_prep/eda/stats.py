"""EdaTables -> the numbers of the report: the dict eda.json holds, every value plain JSON.

    numbers = compute_eda(tables)                 # univariate, bivariate, location, quality, splits

Conventions, the same in every section:
- a group row is {"group": <label a reader understands, e.g. 'AP', 'positive (Target = 1)'>,
  "images": n, ...}; labels are what the report prints, never an internal key;
- a rate carries its count and a 95% Wilson score interval (`wilson_interval`), which stays
  inside [0, 1] and keeps its coverage for small groups and rates near 0 or 1;
- a distribution is `describe`'s n, mean, min, p05, q1, median, q3, p95, max (percentiles with
  numpy's linear interpolation), plus a histogram {"bin_edges", "counts"} where a plot shows one;
- boxes are in ORIGINAL pixels, (x, y) the top-left corner; the location section maps each one
  onto a GRID_PX square (RSNA's 1024 grid) by its own image's size, or assumes the image is
  GRID_PX square when the size is unknown (the label tables carry none) and says how many.

Radiographs are displayed with the patient's right on the image's left (PA and AP alike), so
a box centred left of the midline is in the patient's right lung.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from data_prep.eda.tables import EdaTables
from data_prep.records import KERMANY_SUBTYPES, MAX_PLAUSIBLE_AGE_YEARS, RSNA_CLASSES, SPLITS

FORMAT_VERSION = 1
GRID_PX = 1024  # RSNA's image grid; the coverage heat map is drawn on it
CELL_PX = 8  # the heat map's cell: 128 x 128 cells of 8 x 8 px in eda.json
Z_95 = 1.959963984540054  # the standard normal's 97.5% quantile
AGE_BANDS_YEARS: tuple[tuple[int, int], ...] = tuple((lo, lo + 10) for lo in range(0, 90, 10)) + ((90, 121),)
UNKNOWN = "unknown"


def wilson_interval(positive: int, n: int, z: float = Z_95) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion positive/n (default 95%); None when n == 0."""
    if n <= 0:
        return None
    if not 0 <= positive <= n:
        raise ValueError(f"positive must lie in 0..{n}, got {positive}")
    p = positive / n
    denominator = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def describe(values: Iterable[float]) -> dict[str, Any]:
    """n and the summary of the finite `values`; every statistic None when there are none."""
    array = np.asarray([v for v in values], dtype=np.float64)
    array = array[np.isfinite(array)]
    keys = ("mean", "min", "p05", "q1", "median", "q3", "p95", "max")
    if array.size == 0:
        return {"n": 0, **{k: None for k in keys}}
    p05, q1, median, q3, p95 = np.percentile(array, [5, 25, 50, 75, 95])
    values_out = (array.mean(), array.min(), p05, q1, median, q3, p95, array.max())
    return {"n": int(array.size), **{k: float(v) for k, v in zip(keys, values_out)}}


def histogram(values: Iterable[float], bin_edges: Sequence[float]) -> dict[str, list]:
    """Counts of the finite `values` in [edge_i, edge_i+1) (the last bin closed), numpy's rule."""
    array = np.asarray(list(values), dtype=np.float64)
    counts, edges = np.histogram(array[np.isfinite(array)], bins=np.asarray(bin_edges, dtype=np.float64))
    return {"bin_edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _counts(labels: pd.Series, order: Sequence[str] = ()) -> list[dict[str, Any]]:
    """[{'group', 'images', 'share'}] in `order`, then any other label sorted, then 'unknown'."""
    filled = labels.fillna(UNKNOWN).astype(str)
    counts = filled.value_counts()
    rest = sorted(set(counts.index) - set(order) - {UNKNOWN})
    groups = list(order) + rest + ([UNKNOWN] if UNKNOWN in counts.index else [])
    total = len(filled)
    return [
        {"group": g, "images": int(counts.get(g, 0)), "share": _share(int(counts.get(g, 0)), total)} for g in groups
    ]


def positive_rates(groups: pd.Series, target: pd.Series, order: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Per group: images, positive, rate and its 95% Wilson interval (None for an empty group)."""
    filled = groups.fillna(UNKNOWN).astype(str)
    present = set(filled)
    labels = [g for g in order if g in present] + sorted(present - set(order) - {UNKNOWN})
    labels += [UNKNOWN] if UNKNOWN in present else []
    rows = []
    for label in labels:
        in_group = target[filled == label]
        n, k = int(in_group.size), int(in_group.sum())
        interval = wilson_interval(k, n)
        rows.append(
            {
                "group": label,
                "images": n,
                "positive": k,
                "rate": _share(k, n),
                "ci95_low": interval[0] if interval else None,
                "ci95_high": interval[1] if interval else None,
            }
        )
    return rows


def age_band(age_years: float, valid: bool) -> str:
    """'0-9', ..., '80-89', '90-120'; 'impossible (over 120)' for a flagged age; 'unknown' when missing."""
    if not math.isfinite(age_years):
        return UNKNOWN
    if not valid:
        return f"impossible (over {MAX_PLAUSIBLE_AGE_YEARS:g})" if age_years > 0 else "impossible (below 0)"
    for lo, hi in AGE_BANDS_YEARS:
        if lo <= age_years < hi:
            return f"{lo}-{hi - 1}"
    return UNKNOWN


def _target_labels(dataset: str) -> tuple[str, str]:
    return ("NORMAL", "PNEUMONIA") if dataset == "kermany" else ("negative (Target = 0)", "positive (Target = 1)")


def _class_column(tables: EdaTables) -> tuple[pd.Series, tuple[str, ...]]:
    """The image class as the report names it: RSNA's three classes when known, Kermany's subtype,
    else the target."""
    images = tables.images
    if tables.dataset == "kermany":
        return images["subtype"], KERMANY_SUBTYPES
    if tables.has_class_info:
        return images["rsna_class"], RSNA_CLASSES
    negative, positive = _target_labels(tables.dataset)
    return images["target"].map({0: negative, 1: positive}), (negative, positive)


def _univariate(tables: EdaTables, class_labels: pd.Series, class_order: Sequence[str]) -> dict[str, Any]:
    images, boxes = tables.images, tables.boxes
    negative, positive = _target_labels(tables.dataset)
    out: dict[str, Any] = {
        "target": _counts(images["target"].map({0: negative, 1: positive}), (negative, positive)),
        "classes": _counts(class_labels, class_order) if tables.has_class_info else None,
        "classes_by_source_split": None,
        "age_years": None,
        "sex": None,
        "view": None,
        "boxes_per_image": None,
        "box_size": None,
    }
    if tables.dataset == "kermany":
        out["classes_by_source_split"] = {
            split: _counts(class_labels[images["source_split"] == split], class_order) for split in SPLITS
        }
    if tables.has_headers:
        ages = images["age_years"]
        valid = ages[images["age_valid"] & ages.notna()]
        impossible = ages[~images["age_valid"] & ages.notna()]
        out["age_years"] = {
            **describe(valid),
            "missing": int(ages.isna().sum()),
            "limit_years": MAX_PLAUSIBLE_AGE_YEARS,
            "impossible": int(impossible.size),
            "impossible_values": sorted(float(a) for a in impossible),
            "histogram": histogram(valid, np.arange(0, 125, 5)),
        }
        out["sex"] = _counts(images["sex"], ("F", "M"))
        out["view"] = _counts(images["view"], ("AP", "PA"))
    boxed = images[images["has_box_labels"]]
    if len(boxed):
        per_image = boxed["n_boxes"].value_counts()
        out["boxes_per_image"] = [
            {"boxes": int(k), "images": int(per_image.get(k, 0)), "share": _share(int(per_image.get(k, 0)), len(boxed))}
            for k in range(int(per_image.index.max()) + 1)
        ]
    if len(boxes):
        out["box_size"] = _box_size(boxes, with_histograms=True)
    out["image_size"] = _image_size(images)
    out["pixel_spacing_mm"] = _pixel_spacing(images) if tables.has_headers else None
    return out


def _box_size(boxes: pd.DataFrame, with_histograms: bool) -> dict[str, Any]:
    width, height = boxes["width"].to_numpy(), boxes["height"].to_numpy()
    quantities = {
        "width_px": width,
        "height_px": height,
        "area_px2": width * height,
        "aspect_height_over_width": height / np.where(width > 0, width, np.nan),
    }
    out: dict[str, Any] = {name: describe(values) for name, values in quantities.items()}
    out["boxes"] = int(len(boxes))
    if with_histograms:
        side_top = max(GRID_PX, float(np.nanmax(np.concatenate([width, height]))))
        side_edges = np.arange(0, math.ceil(side_top / 16) * 16 + 16, 16)
        area_top = max(1.0, float(np.nanmax(quantities["area_px2"])))
        aspect_top = max(4.0, math.ceil(float(np.nanmax(quantities["aspect_height_over_width"])) * 10) / 10)
        edges = {
            "width_px": side_edges,
            "height_px": side_edges,
            "area_px2": np.linspace(0, area_top, 41),
            "aspect_height_over_width": np.arange(0, aspect_top + 0.1, 0.1),
        }
        for name, values in quantities.items():
            out[name]["histogram"] = histogram(values, edges[name])
    return out


def _image_size(images: pd.DataFrame) -> dict[str, Any]:
    known = images[images["height_px"].notna() & images["width_px"].notna()]
    sizes = (
        known["width_px"].astype(int).astype(str) + " x " + known["height_px"].astype(int).astype(str)
    ).value_counts()
    shown = [{"size": s, "images": int(n), "share": _share(int(n), len(images))} for s, n in sizes.head(10).items()]
    if len(sizes) > 10:
        rest = int(sizes.iloc[10:].sum())
        shown.append({"size": f"{len(sizes) - 10} other sizes", "images": rest, "share": _share(rest, len(images))})
    out = {
        "known": int(len(known)),
        "missing": int(len(images) - len(known)),
        "distinct": int(len(sizes)),
        "sizes_width_x_height": shown,
        "width_px": describe(known["width_px"]),
        "height_px": describe(known["height_px"]),
    }
    if len(known):
        # 100 px bins: Kermany's sizes run from a few hundred to ~3000 px, hardly two alike.
        top = math.ceil(max(known["width_px"].max(), known["height_px"].max()) / 100) * 100 + 100
        for name in ("width_px", "height_px"):
            out[name]["histogram"] = histogram(known[name], np.arange(0, top + 1, 100))
    return out


def _pixel_spacing(images: pd.DataFrame) -> dict[str, Any]:
    row, col = images["spacing_row_mm"], images["spacing_col_mm"]
    known = row.notna() & col.notna()
    # Shown at 4 decimals: the real table writes 0.1943 as ten values differing in the 6th
    # decimal (0.194311, 0.194314, ...), one scanner's calibration; eda.json keeps them too.
    shown = row[known].round(4).map(lambda v: f"{v:g}").value_counts()
    exact = row[known].round(6).map(lambda v: f"{v:g}").value_counts()
    return {
        "known": int(known.sum()),
        "missing": int((~known).sum()),
        "non_square": int((known & ((row - col).abs() > 1e-9)).sum()),
        "values": [{"spacing_mm": s, "images": int(n), "share": _share(int(n), len(images))} for s, n in shown.items()],
        "values_6_decimals": [{"spacing_mm": s, "images": int(n)} for s, n in exact.items()],
    }


def _bivariate(tables: EdaTables, class_labels: pd.Series, class_order: Sequence[str]) -> dict[str, Any]:
    images, boxes = tables.images, tables.boxes
    out: dict[str, Any] = {
        k: None
        for k in (
            "positive_rate_by_view",
            "positive_rate_by_sex",
            "positive_rate_by_age_band",
            "box_size_by_view",
            "boxes_per_image_by_class",
            "boxes_per_image_by_view",
        )
    }
    target = images["target"]
    if tables.has_headers:
        out["positive_rate_by_view"] = positive_rates(images["view"], target, ("AP", "PA"))
        out["positive_rate_by_sex"] = positive_rates(images["sex"], target, ("F", "M"))
        bands = [age_band(a, v) for a, v in zip(images["age_years"], images["age_valid"])]
        order = [f"{lo}-{hi - 1}" for lo, hi in AGE_BANDS_YEARS]
        out["positive_rate_by_age_band"] = positive_rates(pd.Series(bands, index=images.index), target, order)
    if len(boxes) and tables.has_headers:
        view_of = images.set_index("image_id")["view"]
        box_views = boxes["image_id"].map(view_of).fillna(UNKNOWN)
        out["box_size_by_view"] = [
            {"group": view, **_box_size(boxes[box_views == view], with_histograms=False)}
            for view in [v for v in ("AP", "PA") if v in set(box_views)] + sorted(set(box_views) - {"AP", "PA"})
        ]
    boxed = images["has_box_labels"]
    if boxed.any() and len(boxes):
        out["boxes_per_image_by_class"] = _box_count_table(
            class_labels[boxed], images.loc[boxed, "n_boxes"], class_order
        )
        if tables.has_headers:
            out["boxes_per_image_by_view"] = _box_count_table(
                images.loc[boxed, "view"], images.loc[boxed, "n_boxes"], ("AP", "PA")
            )
    return out


def _box_count_table(groups: pd.Series, n_boxes: pd.Series, order: Sequence[str]) -> dict[str, Any]:
    """{'box_counts': [0..max], 'rows': [{'group', 'images', 'counts': [...], 'mean_boxes'}]}."""
    filled = groups.fillna(UNKNOWN).astype(str)
    present = set(filled)
    labels = (
        [g for g in order if g in present]
        + sorted(present - set(order) - {UNKNOWN})
        + ([UNKNOWN] if UNKNOWN in present else [])
    )
    top = int(n_boxes.max()) if len(n_boxes) else 0
    rows = []
    for label in labels:
        counts = n_boxes[filled == label].value_counts()
        rows.append(
            {
                "group": label,
                "images": int((filled == label).sum()),
                "counts": [int(counts.get(k, 0)) for k in range(top + 1)],
                "mean_boxes": float(n_boxes[filled == label].mean()),
            }
        )
    return {"box_counts": list(range(top + 1)), "rows": rows}


def _location(images: pd.DataFrame, boxes: pd.DataFrame, grid_px: int, cell_px: int) -> dict[str, Any] | None:
    """Box coverage on the grid, the mean box centre, and the left/right split of boxes and images."""
    if not len(boxes):
        return None
    if grid_px % cell_px:
        raise ValueError(f"grid_px {grid_px} is not a multiple of cell_px {cell_px}")
    size = images.set_index("image_id")[["height_px", "width_px"]]
    heights = boxes["image_id"].map(size["height_px"]).to_numpy(dtype=np.float64)
    widths = boxes["image_id"].map(size["width_px"]).to_numpy(dtype=np.float64)
    assumed = ~(np.isfinite(heights) & np.isfinite(widths))
    sx = np.where(assumed, 1.0, grid_px / np.where(assumed, 1.0, widths))
    sy = np.where(assumed, 1.0, grid_px / np.where(assumed, 1.0, heights))
    x1 = boxes["x"].to_numpy() * sx
    y1 = boxes["y"].to_numpy() * sy
    x2 = (boxes["x"] + boxes["width"]).to_numpy() * sx
    y2 = (boxes["y"] + boxes["height"]).to_numpy() * sy

    # Each box adds 1 to every pixel it covers: four corner updates of a 2-D difference array,
    # then a cumulative sum along both axes (exact, one pass over the boxes).
    def edge(values: np.ndarray, rounding: Any) -> np.ndarray:
        return np.clip(rounding(values), 0, grid_px).astype(np.int64)

    ix1, iy1, ix2, iy2 = edge(x1, np.floor), edge(y1, np.floor), edge(x2, np.ceil), edge(y2, np.ceil)
    diff = np.zeros((grid_px + 1, grid_px + 1), dtype=np.int64)
    np.add.at(diff, (iy1, ix1), 1)
    np.add.at(diff, (iy1, ix2), -1)
    np.add.at(diff, (iy2, ix1), -1)
    np.add.at(diff, (iy2, ix2), 1)
    coverage = diff.cumsum(axis=0).cumsum(axis=1)[:grid_px, :grid_px]
    n_cells = grid_px // cell_px
    cells = coverage.reshape(n_cells, cell_px, n_cells, cell_px).mean(axis=(1, 3))

    centre_x = (x1 + x2) / 2
    on_left = centre_x < grid_px / 2  # image left = the patient's right lung
    n_boxes = len(boxes)
    side = pd.Series(np.where(on_left, "R", "L"), index=boxes.index)
    sides_per_image = side.groupby(boxes["image_id"]).agg(lambda s: "".join(sorted(set(s))))
    n_images = len(sides_per_image)
    image_groups = (("both lungs", "LR"), ("right lung only (image left)", "R"), ("left lung only (image right)", "L"))
    return {
        "grid_px": grid_px,
        "cell_px": cell_px,
        "boxes": n_boxes,
        "images": n_images,
        "boxes_on_assumed_grid": int(assumed.sum()),
        "coverage_boxes_per_pixel": [[round(float(v), 3) for v in row] for row in cells],
        "coverage_peak_boxes": int(coverage.max()),
        "box_centre_mean_px": {"x": float(centre_x.mean()), "y": float(((y1 + y2) / 2).mean())},
        "sides_boxes": [
            {
                "group": "patient's right lung (image left)",
                "boxes": int(on_left.sum()),
                "share": _share(int(on_left.sum()), n_boxes),
            },
            {
                "group": "patient's left lung (image right)",
                "boxes": int((~on_left).sum()),
                "share": _share(int((~on_left).sum()), n_boxes),
            },
        ],
        "sides_images": [
            {
                "group": label,
                "images": int((sides_per_image == key).sum()),
                "share": _share(int((sides_per_image == key).sum()), n_images),
            }
            for label, key in image_groups
        ],
    }


def _splits(images: pd.DataFrame, class_labels: pd.Series, class_order: Sequence[str]) -> dict[str, Any] | None:
    split = images["split"]
    if split.isna().all():
        return None
    rows = []
    for name in [s for s in SPLITS if s in set(split)]:
        in_split = split == name
        classes = _counts(class_labels[in_split], class_order)
        rows.append(
            {
                "split": name,
                "images": int(in_split.sum()),
                "patients": int(images.loc[in_split, "patient_id"].nunique()),
                "positive": int(images.loc[in_split, "target"].sum()),
                "positive_share": _share(int(images.loc[in_split, "target"].sum()), int(in_split.sum())),
                "classes": {c["group"]: c["images"] for c in classes},
            }
        )
    per_patient = images[split.notna()].groupby("patient_id")["split"].nunique()
    return {
        "rows": rows,
        "unsplit_images": int(split.isna().sum()),
        "patients_in_several_splits": int((per_patient > 1).sum()),
    }


def compute_eda(tables: EdaTables, *, grid_px: int = GRID_PX, cell_px: int = CELL_PX) -> dict[str, Any]:
    """Every number of the report, as plain JSON values (see the module docstring for the layout)."""
    images = tables.images
    class_labels, class_order = _class_column(tables)
    n_images = len(images)
    positive = int(images["target"].sum())
    univariate = _univariate(tables, class_labels, class_order)
    checks = [dataclasses.asdict(c) for c in tables.checks]
    if univariate["age_years"] is not None:
        age = univariate["age_years"]
        checks.append(
            {
                "check": "impossible ages (flagged, kept)",
                "count": age["impossible"],
                "examples": [f"{a:g}" for a in age["impossible_values"]][:20],
                "note": f"PatientAge over {MAX_PLAUSIBLE_AGE_YEARS:g} years or below 0",
            }
        )
    numbers = {
        "format_version": FORMAT_VERSION,
        "dataset": tables.dataset,
        "source": dataclasses.asdict(tables.source),
        "has_class_info": tables.has_class_info,
        "has_headers": tables.has_headers,
        "overview": {
            "images": n_images,
            "patients": int(images["patient_id"].nunique()),
            "positive_images": positive,
            "positive_share": _share(positive, n_images),
            "boxes": int(len(tables.boxes)),
            "images_with_box_labels": int(images["has_box_labels"].sum()),
        },
        "univariate": univariate,
        "bivariate": _bivariate(tables, class_labels, class_order),
        "location": _location(images, tables.boxes, grid_px, cell_px),
        "quality": {
            "checks": checks,
            "missing_values": [dataclasses.asdict(m) for m in tables.missing],
        },
        "splits": _splits(images, class_labels, class_order),
        "images_section": None,
    }
    # Through JSON and back: tuples become lists and a NaN fails here, so the dict is exactly
    # what eda.json will hold (a few milliseconds for the real 26,684 images).
    return json.loads(json.dumps(numbers, allow_nan=False))


def intensity_histogram(pixel_arrays: Iterable[np.ndarray]) -> dict[str, Any]:
    """The mean grey-level distribution of uint8 images: 256 shares summing to 1, each image
    weighted equally (its own histogram normalised first). {'images': n, 'density': [256 floats]}."""
    total = np.zeros(256, dtype=np.float64)
    n = 0
    for pixels in pixel_arrays:
        values = np.asarray(pixels)
        if values.dtype != np.uint8:
            raise ValueError(f"expected uint8 pixels, got {values.dtype}")
        if values.size == 0:
            continue
        total += np.bincount(values.reshape(-1), minlength=256) / values.size
        n += 1
    density = total / n if n else total
    return {"images": n, "density": [float(v) for v in density]}
