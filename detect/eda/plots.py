"""The EDA plots, drawn on matplotlib's Agg canvas through `matplotlib.figure.Figure` (no pyplot
state, no display), as detect/outputs/plots.py draws the evaluation's.

Each function takes a section of the numbers `data_prep.eda.compute_eda` returns (the same
values eda.json holds, so a plot never shows a number the JSON lacks) and writes one PNG.
Every title says n: how many images or boxes the panel counts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from detect.eda import formatting as fmt
from detect.outputs.figures import save_figure

_DPI = 110
_BAR = "#4c72b0"
_POSITIVE = "#c44e52"
_SERIES = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860")


def _figure(width_in: float, height_in: float) -> Figure:
    return Figure(figsize=(width_in, height_in), dpi=_DPI, layout="constrained")


def _short(label: str, limit: int = 18) -> str:
    """A tick label: a parenthesis goes to its own line, and each line is cut at `limit` characters."""
    lines = label.replace(" (", "\n(").split("\n")
    return "\n".join(line if len(line) <= limit else line[: limit - 2] + "..." for line in lines)


def _bars(ax: Any, rows: Sequence[Mapping[str, Any]], title: str, value_key: str = "images", color: str = _BAR) -> None:
    """Labelled bars of rows [{'group', value_key, 'share'}], each with its count and share."""
    labels = [_short(str(r["group"])) for r in rows]
    values = [r[value_key] for r in rows]
    bars = ax.bar(range(len(rows)), values, color=color)
    for bar, row in zip(bars, rows):
        ax.annotate(
            f"{fmt.count(row[value_key])}\n{fmt.share(row.get('share'))}",
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
            fontsize=7,
        )
    ax.set_xticks(range(len(rows)), labels, fontsize=8 if len(rows) < 6 else 7)
    ax.set_ylim(0, max(values, default=1) * 1.25 or 1)
    ax.set_title(title, fontsize=9)
    ax.set_ylabel(value_key)


def _hist(ax: Any, histogram: Mapping[str, Sequence[float]], color: str = _BAR) -> None:
    edges = np.asarray(histogram["bin_edges"], dtype=float)
    ax.bar(
        edges[:-1],
        histogram["counts"],
        width=np.diff(edges),
        align="edge",
        color=color,
        edgecolor="white",
        linewidth=0.3,
    )


def plot_class_balance(univariate: Mapping[str, Any], n_images: int, path: Path) -> None:
    """Target (always), the classes when known, and Kermany's classes per source folder."""
    panels = [("target", univariate["target"])]
    if univariate.get("classes"):
        panels.append(("classes", univariate["classes"]))
    by_split = univariate.get("classes_by_source_split")
    fig = _figure(4.0 * (len(panels) + bool(by_split)), 3.6)
    for i, (name, rows) in enumerate(panels, start=1):
        _bars(fig.add_subplot(1, len(panels) + bool(by_split), i), rows, f"{name} (n = {fmt.count(n_images)} images)")
    if by_split:
        ax = fig.add_subplot(1, len(panels) + 1, len(panels) + 1)
        splits = list(by_split)
        groups = [r["group"] for r in by_split[splits[0]]]
        width = 0.8 / len(groups)
        for j, group in enumerate(groups):
            values = [next(r["images"] for r in by_split[s] if r["group"] == group) for s in splits]
            ax.bar(np.arange(len(splits)) + j * width, values, width, label=group, color=_SERIES[j % len(_SERIES)])
        ax.set_xticks(np.arange(len(splits)) + 0.4 - width / 2, [f"{s}/" for s in splits])
        ax.set_title(f"classes per source folder (n = {fmt.count(n_images)} images)", fontsize=9)
        ax.legend(fontsize=7)
    save_figure(fig, path)


def plot_age(age: Mapping[str, Any], path: Path) -> None:
    """Histogram of the valid ages in 5-year bins; the impossible ones named in the title."""
    fig = _figure(6.0, 3.4)
    ax = fig.add_subplot()
    _hist(ax, age["histogram"])
    flagged = ", ".join(fmt.age(a) for a in age["impossible_values"])
    title = f"age at imaging (n = {fmt.count(age['n'])} images with a valid age"
    title += f"; {fmt.count(age['impossible'])} impossible, not shown: {flagged})" if age["impossible"] else ")"
    ax.set_title(title, fontsize=9)
    ax.set(xlabel="age (years)", ylabel="images")
    if age["median"] is not None:
        ax.axvline(age["median"], color="black", linestyle="--", linewidth=0.8)
        ax.annotate(
            f"median {fmt.age(age['median'])}",
            (age["median"], ax.get_ylim()[1] * 0.92),
            fontsize=7,
            xytext=(3, 0),
            textcoords="offset points",
        )
    save_figure(fig, path)


def plot_sex_view(
    sex: Sequence[Mapping[str, Any]], view: Sequence[Mapping[str, Any]], n_images: int, path: Path
) -> None:
    fig = _figure(6.4, 3.2)
    _bars(fig.add_subplot(1, 2, 1), sex, f"PatientSex (n = {fmt.count(n_images)})")
    _bars(fig.add_subplot(1, 2, 2), view, f"ViewPosition (n = {fmt.count(n_images)})")
    save_figure(fig, path)


def plot_boxes_per_image(rows: Sequence[Mapping[str, Any]], path: Path) -> None:
    n = sum(r["images"] for r in rows)
    fig = _figure(4.8, 3.2)
    _bars(
        fig.add_subplot(),
        [{**r, "group": str(r["boxes"])} for r in rows],
        f"boxes per image (n = {fmt.count(n)} images)",
    )
    fig.axes[0].set_xlabel("boxes on the image")
    save_figure(fig, path)


def plot_box_size(box_size: Mapping[str, Any], path: Path) -> None:
    """Width, height, area and aspect histograms of every box, medians marked."""
    panels = (
        ("width_px", "width (px)"),
        ("height_px", "height (px)"),
        ("area_px2", "area (px²)"),
        ("aspect_height_over_width", "aspect (height / width)"),
    )
    fig = _figure(8.0, 5.4)
    fig.suptitle(f"box size (n = {fmt.count(box_size['boxes'])} boxes, original pixels)", fontsize=10)
    for i, (key, label) in enumerate(panels, start=1):
        ax = fig.add_subplot(2, 2, i)
        stats = box_size[key]
        _hist(ax, stats["histogram"])
        ax.axvline(stats["median"], color="black", linestyle="--", linewidth=0.8)
        decimals = 2 if key.startswith("aspect") else 0
        ax.set_title(f"{label}: median {fmt.number(stats['median'], decimals)}", fontsize=9)
        ax.set_ylabel("boxes")
    save_figure(fig, path)


def plot_image_size_spacing(
    image_size: Mapping[str, Any], spacing: Mapping[str, Any] | None, n_images: int, path: Path
) -> None:
    """Bars of the sizes (histograms of width and height when there are more than 10 sizes) and
    of the pixel spacings."""
    panels = []
    if image_size["known"] and image_size["distinct"] <= 10:
        rows = [{"group": r["size"], **r} for r in image_size["sizes_width_x_height"]]
        panels.append(("bars", rows, f"image size, width x height (n = {fmt.count(image_size['known'])})"))
    elif image_size["known"]:
        panels.append(("hist", image_size, f"image size (n = {fmt.count(image_size['known'])}, 100 px bins)"))
    if spacing and spacing["known"]:
        rows = [{"group": r["spacing_mm"], **r} for r in spacing["values"]]
        panels.append(("bars", rows, f"PixelSpacing, mm (n = {fmt.count(spacing['known'])} of {fmt.count(n_images)})"))
    if not panels:
        return
    fig = _figure(5.0 * len(panels), 3.4)
    for i, (kind, content, title) in enumerate(panels, start=1):
        ax = fig.add_subplot(1, len(panels), i)
        if kind == "bars":
            _bars(ax, content, title)
            continue
        for j, (key, label) in enumerate((("width_px", "width"), ("height_px", "height"))):
            edges = np.asarray(content[key]["histogram"]["bin_edges"], dtype=float)
            ax.stairs(content[key]["histogram"]["counts"], edges, label=label, color=_SERIES[j], linewidth=1.5)
        ax.set(xlabel="pixels", ylabel="images")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
    save_figure(fig, path)


def _rate_panel(ax: Any, rows: Sequence[Mapping[str, Any]], title: str) -> None:
    x = np.arange(len(rows))
    rate = np.array([np.nan if r["rate"] is None else 100 * r["rate"] for r in rows])
    low = np.array([np.nan if r["ci95_low"] is None else 100 * r["ci95_low"] for r in rows])
    high = np.array([np.nan if r["ci95_high"] is None else 100 * r["ci95_high"] for r in rows])
    ax.errorbar(
        x, rate, yerr=[rate - low, high - rate], fmt="o", color=_POSITIVE, ecolor="grey", capsize=3, markersize=4
    )
    for xi, row, r in zip(x, rows, rate):
        if math.isfinite(r):
            ax.annotate(
                f"{fmt.share(row['rate'])}\nn={fmt.count(row['images'])}",
                (xi, r),
                xytext=(5, 0),
                textcoords="offset points",
                fontsize=6,
                va="center",
            )
    labels = [_short(str(r["group"]), 14) for r in rows]
    ax.set_xticks(x, labels, fontsize=7 if len(rows) <= 4 else 6)
    ax.set_xlim(-0.5, len(rows) - 0.2)
    ax.set_ylim(0, min(100, np.nanmax(high, initial=10) * 1.15))
    ax.set_ylabel("positive images (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(axis="y", alpha=0.3)


def plot_positive_rates(bivariate: Mapping[str, Any], overall_rate: float | None, path: Path) -> None:
    """The positive rate by view, sex and age band, each with its 95% Wilson interval and n."""
    panels = [
        (key, title)
        for key, title in (
            ("positive_rate_by_view", "view"),
            ("positive_rate_by_sex", "sex"),
            ("positive_rate_by_age_band", "age band (years)"),
        )
        if bivariate.get(key)
    ]
    if not panels:
        return
    fig = _figure(3.2 + 3.0 * len(panels), 3.6)
    widths = [1, 1, 2.4][: len(panels)] if len(panels) == 3 else [1] * len(panels)
    grid = fig.add_gridspec(1, len(panels), width_ratios=widths)
    for i, (key, title) in enumerate(panels):
        rows = bivariate[key]
        ax = fig.add_subplot(grid[0, i])
        _rate_panel(ax, rows, f"by {title} (n = {fmt.count(sum(r['images'] for r in rows))})")
        if overall_rate is not None:
            ax.axhline(100 * overall_rate, color="black", linestyle=":", linewidth=0.8)
    fig.suptitle("positive rate with 95% Wilson intervals (dotted: all images)", fontsize=10)
    save_figure(fig, path)


def plot_box_size_by_view(rows: Sequence[Mapping[str, Any]], path: Path) -> None:
    """Box plots (q1-q3, median, whiskers p05-p95) of width, height and area per view."""
    fig = _figure(8.4, 3.4)
    n = sum(r["boxes"] for r in rows)
    fig.suptitle(f"box size by view (n = {fmt.count(n)} boxes; whiskers 5th-95th percentile)", fontsize=10)
    for i, (key, label) in enumerate(
        (("width_px", "width (px)"), ("height_px", "height (px)"), ("area_px2", "area (px²)")), start=1
    ):
        ax = fig.add_subplot(1, 3, i)
        stats = [
            {
                "label": f"{r['group']}\nn={fmt.count(r['boxes'])}",
                "med": r[key]["median"],
                "q1": r[key]["q1"],
                "q3": r[key]["q3"],
                "whislo": r[key]["p05"],
                "whishi": r[key]["p95"],
                "fliers": [],
            }
            for r in rows
        ]
        ax.bxp(stats, showfliers=False)
        ax.set_title(label, fontsize=9)
        ax.tick_params(labelsize=7)
    save_figure(fig, path)


def plot_box_counts(tables: Sequence[tuple[str, Mapping[str, Any]]], path: Path) -> None:
    """Stacked shares of images with 0, 1, 2, ... boxes, one bar per group, one panel per table."""
    fig = _figure(4.6 * len(tables), 3.6)
    for i, (title, table) in enumerate(tables, start=1):
        ax = fig.add_subplot(1, len(tables), i)
        rows = table["rows"]
        bottom = np.zeros(len(rows))
        for k in table["box_counts"]:
            share = np.array([r["counts"][k] / r["images"] if r["images"] else 0 for r in rows]) * 100
            ax.bar(
                range(len(rows)),
                share,
                bottom=bottom,
                label=f"{k} box{'es' if k != 1 else ''}",
                color=_SERIES[k % len(_SERIES)],
            )
            bottom += share
        ax.set_xticks(
            range(len(rows)), [f"{_short(r['group'], 16)}\nn={fmt.count(r['images'])}" for r in rows], fontsize=7
        )
        ax.set_ylabel("images (%)")
        ax.set_title(f"boxes per image by {title} (n = {fmt.count(sum(r['images'] for r in rows))} images)", fontsize=9)
        ax.legend(
            fontsize=6, loc="lower center", bbox_to_anchor=(0.5, 1.08), ncol=len(table["box_counts"]), frameon=False
        )
    save_figure(fig, path)


def plot_box_heatmap(location: Mapping[str, Any], path: Path) -> None:
    """Boxes covering each pixel of the grid, and the right/left lung split of boxes and images."""
    cells = np.asarray(location["coverage_boxes_per_pixel"], dtype=float)
    grid = location["grid_px"]
    fig = _figure(9.0, 4.2)
    spec = fig.add_gridspec(1, 2, width_ratios=[1.25, 1])
    ax = fig.add_subplot(spec[0, 0])
    image = ax.imshow(cells, cmap="inferno", extent=(0, grid, grid, 0), interpolation="nearest")
    fig.colorbar(image, ax=ax, label="boxes covering the pixel", shrink=0.85)
    ax.axvline(grid / 2, color="white", linestyle=":", linewidth=0.8)
    ax.set_title(
        f"box coverage on the {grid} x {grid} grid\n(n = {fmt.count(location['boxes'])} boxes on "
        f"{fmt.count(location['images'])} images)",
        fontsize=9,
    )
    ax.set(xlabel="x (px); image left = patient's right", ylabel="y (px)")
    side = fig.add_subplot(spec[0, 1])
    _bars(side, location["sides_images"], f"lungs with a box (n = {fmt.count(location['images'])} images)")
    save_figure(fig, path)


def plot_sample_grid(
    panels_by_class: Sequence[tuple[str, Sequence[Mapping[str, Any]]]], size_px: int, path: Path
) -> None:
    """One row per class: images (uint8 [H, W], letterbox padding cropped) with their boxes
    (`boxes_xyxy` in that image's pixels) in red."""
    n_cols = max((len(p) for _, p in panels_by_class), default=1) or 1
    fig = _figure(2.3 * n_cols, 2.5 * len(panels_by_class) + 0.3)
    n = sum(len(p) for _, p in panels_by_class)
    boxed = any(len(panel["boxes_xyxy"]) for _, panels in panels_by_class for panel in panels)
    fig.suptitle(
        f"sample images per class (n = {n} shown, {size_px} px cache{'; red = label box' if boxed else ''})",
        fontsize=10,
    )
    for row, (name, panels) in enumerate(panels_by_class):
        for col, panel in enumerate(panels):
            ax = fig.add_subplot(len(panels_by_class), n_cols, row * n_cols + col + 1)
            ax.imshow(panel["image"], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            for box in np.asarray(panel["boxes_xyxy"], dtype=float).reshape(-1, 4):
                ax.add_patch(
                    Rectangle(
                        (box[0], box[1]), box[2] - box[0], box[3] - box[1], fill=False, edgecolor="red", linewidth=1.2
                    )
                )
            title = _short(str(panel["title"]), 22)
            ax.set_title(f"{_short(name, 34)}\n{title}" if col == 0 else title, fontsize=7)
            ax.set_axis_off()
    save_figure(fig, path)


def plot_intensity_histograms(classes: Sequence[Mapping[str, Any]], path: Path) -> None:
    """The mean grey-level distribution per class (each image weighted equally)."""
    fig = _figure(6.0, 3.4)
    ax = fig.add_subplot()
    for i, entry in enumerate(classes):
        histogram = entry["histogram"]
        if histogram["images"]:
            ax.plot(
                np.arange(256),
                100 * np.asarray(histogram["density"]),
                color=_SERIES[i % len(_SERIES)],
                label=f"{entry['group']} (n = {histogram['images']})",
                linewidth=1.2,
            )
    n = sum(e["histogram"]["images"] for e in classes)
    ax.set(xlabel="grey level (0 = black)", ylabel="pixels (%)", xlim=(0, 255))
    ax.set_title(f"intensity histograms per class (n = {n} images, padding excluded)", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    save_figure(fig, path)


def draw_plots(
    numbers: Mapping[str, Any],
    out_dir: Path,
    sample_panels: Sequence[tuple[str, Sequence[Mapping[str, Any]]]] = (),
) -> dict[str, str]:
    """Every plot the numbers allow, into out_dir -> {plot name: PNG file name} of those written.
    `sample_panels` = [(class, [{'image', 'boxes_xyxy', 'title'}])] for the image grid."""
    u, b, n = numbers["univariate"], numbers["bivariate"], numbers["overview"]["images"]
    jobs: list[tuple[str, Any]] = [("class_balance", lambda p: plot_class_balance(u, n, p))]
    if u["age_years"] and u["age_years"]["n"]:
        jobs.append(("age", lambda p: plot_age(u["age_years"], p)))
    if u["sex"]:
        jobs.append(("sex_view", lambda p: plot_sex_view(u["sex"], u["view"], n, p)))
    if u["boxes_per_image"]:
        jobs.append(("boxes_per_image", lambda p: plot_boxes_per_image(u["boxes_per_image"], p)))
    if u["box_size"]:
        jobs.append(("box_size", lambda p: plot_box_size(u["box_size"], p)))
    if u["image_size"]["known"] or (u["pixel_spacing_mm"] and u["pixel_spacing_mm"]["known"]):
        jobs.append(
            ("image_size_spacing", lambda p: plot_image_size_spacing(u["image_size"], u["pixel_spacing_mm"], n, p))
        )
    if b["positive_rate_by_view"]:
        jobs.append(("positive_rate", lambda p: plot_positive_rates(b, numbers["overview"]["positive_share"], p)))
    if b["box_size_by_view"]:
        jobs.append(("box_size_by_view", lambda p: plot_box_size_by_view(b["box_size_by_view"], p)))
    count_tables = [
        (name, b[key])
        for name, key in (("class", "boxes_per_image_by_class"), ("view", "boxes_per_image_by_view"))
        if b[key]
    ]
    if count_tables:
        jobs.append(("box_counts", lambda p: plot_box_counts(count_tables, p)))
    if numbers["location"]:
        jobs.append(("box_heatmap", lambda p: plot_box_heatmap(numbers["location"], p)))
    section = numbers.get("images_section")
    if section and any(panels for _, panels in sample_panels):
        jobs.append(("samples", lambda p: plot_sample_grid(sample_panels, section["cache_size_px"], p)))
    if section and any(c["histogram"]["images"] for c in section["classes"]):
        jobs.append(("intensity", lambda p: plot_intensity_histograms(section["classes"], p)))
    written = {}
    for name, draw in jobs:
        draw(out_dir / f"{name}.png")
        written[name] = f"{name}.png"
    return written
