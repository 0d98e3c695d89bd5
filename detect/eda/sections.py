"""The report's content: the numbers of `data_prep.eda.compute_eda` -> headings, text, tables, plots.

Every value printed comes from `numbers` (so eda.json holds it); every label is written for a
reader (no internal key such as `positive_rate_by_view` appears). `plots` maps a plot's name to
the PNG file actually written (detect.eda.plots.draw_plots); a missing one is left out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from detect.eda import formatting as fmt
from detect.eda.report import Block, Heading, Paragraph, Plot, Table

TITLES = {
    "rsna": "RSNA Pneumonia Detection (stage 2)",
    "kermany": "Kermany chest X-ray (pneumonia)",
    "custom": "your images (COCO / CSV labels)",
}
_ROLE_NAMES = {"labels": "labels", "class info": "class info", "DICOM headers": "DICOM header table"}


def _plot(plots: Mapping[str, str], name: str, caption: str) -> list[Block]:
    return [Plot(plots[name], caption)] if name in plots else []


def _count_share_rows(rows: list[Mapping[str, Any]], key: str = "group") -> tuple[tuple[str, ...], ...]:
    return tuple((str(r[key]), fmt.count(r["images"]), fmt.share(r["share"])) for r in rows)


def _source(numbers: Mapping[str, Any]) -> list[Block]:
    source = numbers["source"]
    if source["mode"] == "tables":
        files = "; ".join(
            f"{_ROLE_NAMES.get(f['role'], f['role'])} `{f['path']}` ({fmt.count(f['rows'])} rows)"
            for f in source["files"]
        )
        text = f"Data: the label tables only, no image read. {files}."
        if not numbers["has_class_info"]:
            text += " No class-info table: the three RSNA classes are not shown, Target is."
        if not numbers["has_headers"]:
            text += " No DICOM header table: no age, sex, view or pixel spacing."
    else:
        prepared = (
            "prepared now by `detect eda`, as `detect prepare` would" if source["prepared_now"] else "prepared earlier"
        )
        text = (
            f"Data: the folder `{source['data_dir']}`, read through its prepared manifest `{source['prepared_dir']}` "
            f"({prepared}; split seed {source['split_seed']}): every file's header read once by `detect prepare`, "
            "pixels decoded only for the sampled images, into the preprocessing cache."
        )
    return [Paragraph(text)]


def _overview(numbers: Mapping[str, Any]) -> list[Block]:
    o = numbers["overview"]
    rows = [
        ("images", fmt.count(o["images"])),
        ("patients", fmt.count(o["patients"])),
        ("positive images", f"{fmt.count(o['positive_images'])} ({fmt.share(o['positive_share'])})"),
    ]
    if numbers["dataset"] in ("rsna", "custom"):
        positive = o["positive_images"]
        rows.append(("boxes", f"{fmt.count(o['boxes'])} on {fmt.count(positive)} positive images"))
    else:
        rows.append(("boxes", "none: Kermany has image labels only"))
    return [Heading(2, "Overview"), Table(("", "value"), tuple(rows))]


def _univariate(numbers: Mapping[str, Any], plots: Mapping[str, str]) -> list[Block]:
    u = numbers["univariate"]
    n = numbers["overview"]["images"]
    out: list[Block] = [
        Heading(2, "One variable at a time"),
        Heading(3, "Class balance"),
        Table(("target", "images", "share"), _count_share_rows(u["target"])),
    ]
    if u["classes"]:
        out.append(Table(("class", "images", "share"), _count_share_rows(u["classes"])))
    if u["classes_by_source_split"]:
        splits = u["classes_by_source_split"]
        groups = [r["group"] for r in next(iter(splits.values()))]
        rows = tuple(
            (f"{split}/", *(fmt.count(r["images"]) for r in rows), fmt.count(sum(r["images"] for r in rows)))
            for split, rows in splits.items()
        )
        out += [
            Paragraph("Per source folder of the dataset (its own train/val/test folders):"),
            Table(("folder", *groups, "images"), rows),
        ]
    out += _plot(plots, "class_balance", f"Class balance (n = {fmt.count(n)} images).")

    age = u["age_years"]
    if age:
        impossible = ", ".join(fmt.age(a) for a in age["impossible_values"]) or "none"
        out += [
            Heading(3, "Age"),
            Table(
                ("age (years)", "value"),
                (
                    ("images with a valid age", fmt.count(age["n"])),
                    ("median", fmt.number(age["median"])),
                    ("quartiles", f"{fmt.number(age['q1'])}-{fmt.number(age['q3'])}"),
                    ("range", f"{fmt.number(age['min'])}-{fmt.number(age['max'])}"),
                    ("mean", fmt.number(age["mean"], 1)),
                    ("missing", fmt.count(age["missing"])),
                    (
                        f"impossible (over {fmt.age(age['limit_years'])})",
                        f"{fmt.count(age['impossible'])} ({impossible})",
                    ),
                ),
            ),
            Paragraph(
                "Impossible ages are flagged, not dropped: those images count everywhere except in the age "
                "statistics, and form their own age band below."
            ),
        ]
        out += _plot(plots, "age", f"Age histogram, 5-year bins (n = {fmt.count(age['n'])} images with a valid age).")
    if u["sex"]:
        out += [
            Heading(3, "Sex and view"),
            Table(("PatientSex", "images", "share"), _count_share_rows(u["sex"])),
            Table(("ViewPosition", "images", "share"), _count_share_rows(u["view"])),
        ]
        out += _plot(plots, "sex_view", f"Sex and view (n = {fmt.count(n)} images).")
    if u["boxes_per_image"]:
        rows = tuple((str(r["boxes"]), fmt.count(r["images"]), fmt.share(r["share"])) for r in u["boxes_per_image"])
        out += [Heading(3, "Boxes per image"), Table(("boxes", "images", "share"), rows)]
        out += _plot(
            plots,
            "boxes_per_image",
            f"Boxes per image (n = {fmt.count(sum(r['images'] for r in u['boxes_per_image']))} images).",
        )
    if u["box_size"]:
        out += _box_size(u["box_size"], plots)
    out += _image_size(u, n, plots)
    return out


def _box_size(box_size: Mapping[str, Any], plots: Mapping[str, str]) -> list[Block]:
    rows = []
    for key, label, decimals in (
        ("width_px", "width (px)", 0),
        ("height_px", "height (px)", 0),
        ("area_px2", "area (px²)", 0),
        ("aspect_height_over_width", "aspect (height / width)", 2),
    ):
        s = box_size[key]
        rows.append(
            (
                label,
                fmt.count(s["n"]),
                *(fmt.number(s[k], decimals) for k in ("min", "q1", "median", "q3", "max", "mean")),
            )
        )
    return [
        Heading(3, "Box size"),
        Paragraph("In the original image's pixels (RSNA: the 1024 x 1024 grid)."),
        Table(("", "boxes", "min", "q1", "median", "q3", "max", "mean"), tuple(rows)),
    ] + _plot(plots, "box_size", f"Box width, height, area and aspect (n = {fmt.count(box_size['boxes'])} boxes).")


def _image_size(u: Mapping[str, Any], n: int, plots: Mapping[str, str]) -> list[Block]:
    size, spacing = u["image_size"], u["pixel_spacing_mm"]
    out: list[Block] = [Heading(3, "Image size and pixel spacing")]
    if size["known"]:
        if size["distinct"] <= 10:
            out.append(
                Table(
                    ("width x height (px)", "images", "share"), _count_share_rows(size["sizes_width_x_height"], "size")
                )
            )
        if size["distinct"] > 1:
            out.append(
                Paragraph(
                    f"{fmt.count(size['distinct'])} distinct sizes; width {fmt.number(size['width_px']['min'])}-"
                    f"{fmt.number(size['width_px']['max'])} px (median {fmt.number(size['width_px']['median'])}), "
                    f"height {fmt.number(size['height_px']['min'])}-{fmt.number(size['height_px']['max'])} px "
                    f"(median {fmt.number(size['height_px']['median'])})."
                )
            )
    else:
        out.append(
            Paragraph(
                "Image size: not in the tables read (the header table has no Rows/Columns). RSNA's training "
                "images are all 1024 x 1024, and the box heat map below assumes that grid."
            )
        )
    if spacing:
        out.append(
            Table(
                ("PixelSpacing (mm, 4 decimals)", "images", "share"), _count_share_rows(spacing["values"], "spacing_mm")
            )
        )
        note = (
            f"{fmt.count(spacing['missing'])} images without a spacing; {fmt.count(spacing['non_square'])} with non-square "
            f"pixels. {len(spacing['values_6_decimals'])} distinct values at 6 decimals (eda.json lists them)."
        )
        out.append(Paragraph(note))
    if not size["known"] and not spacing:
        return out
    return out + _plot(plots, "image_size_spacing", f"Image size and pixel spacing (n = {fmt.count(n)} images).")


def _rate_table(title: str, rows: list[Mapping[str, Any]]) -> Table:
    return Table(
        (title, "images", "positive", "rate", "95% interval (Wilson)"),
        tuple(
            (
                str(r["group"]),
                fmt.count(r["images"]),
                fmt.count(r["positive"]),
                fmt.share(r["rate"]),
                fmt.interval(r["ci95_low"], r["ci95_high"]),
            )
            for r in rows
        ),
    )


def _bivariate(numbers: Mapping[str, Any], plots: Mapping[str, str]) -> list[Block]:
    b = numbers["bivariate"]
    if not any(b.values()):
        return []
    out: list[Block] = [Heading(2, "Two variables at a time")]
    if b["positive_rate_by_view"]:
        out += [
            Heading(3, "Positive rate by view, sex and age band"),
            _rate_table("view", b["positive_rate_by_view"]),
            _rate_table("sex", b["positive_rate_by_sex"]),
            _rate_table("age band (years)", b["positive_rate_by_age_band"]),
        ]
        out += _plot(
            plots,
            "positive_rate",
            f"Positive rate with 95% Wilson intervals (n = {fmt.count(numbers['overview']['images'])} images).",
        )
    if b["box_size_by_view"]:
        rows = tuple(
            (
                r["group"],
                fmt.count(r["boxes"]),
                *(
                    f"{fmt.number(r[k]['median'])} ({fmt.number(r[k]['q1'])}-{fmt.number(r[k]['q3'])})"
                    for k in ("width_px", "height_px", "area_px2")
                ),
            )
            for r in b["box_size_by_view"]
        )
        out += [
            Heading(3, "Box size by view"),
            Table(("view", "boxes", "width, median (quartiles)", "height", "area (px²)"), rows),
        ]
        out += _plot(
            plots,
            "box_size_by_view",
            f"Box size by view (n = {fmt.count(sum(r['boxes'] for r in b['box_size_by_view']))} boxes).",
        )
    tables = [
        (name, b[key])
        for name, key in (("class", "boxes_per_image_by_class"), ("view", "boxes_per_image_by_view"))
        if b[key]
    ]
    if tables:
        out.append(Heading(3, "Box count by class and view"))
        for name, table in tables:
            header = (name, "images", *(f"{k} box{'es' if k != 1 else ''}" for k in table["box_counts"]), "mean boxes")
            out.append(
                Table(
                    header,
                    tuple(
                        (
                            r["group"],
                            fmt.count(r["images"]),
                            *(fmt.count(c) for c in r["counts"]),
                            fmt.number(r["mean_boxes"], 2),
                        )
                        for r in table["rows"]
                    ),
                )
            )
        n_boxed = tables[0][1]["rows"]
        out += _plot(
            plots,
            "box_counts",
            f"Boxes per image by class and view (n = {fmt.count(sum(r['images'] for r in n_boxed))} images).",
        )
    return out


def _location(numbers: Mapping[str, Any], plots: Mapping[str, str]) -> list[Block]:
    loc = numbers["location"]
    if not loc:
        return []
    assumed = ""
    if loc["boxes_on_assumed_grid"]:
        assumed = (
            f" {fmt.count(loc['boxes_on_assumed_grid'])} boxes belong to images of unknown size and are drawn as if "
            f"the image were {loc['grid_px']} x {loc['grid_px']} (RSNA's size)."
        )
    text = (
        f"Each pixel of the {loc['grid_px']} x {loc['grid_px']} grid counts the boxes covering it (every box mapped by "
        f"its own image's size).{assumed} The most covered pixel lies under {fmt.count(loc['coverage_peak_boxes'])} of the "
        f"{fmt.count(loc['boxes'])} boxes. Mean box "
        f"centre: x {fmt.number(loc['box_centre_mean_px']['x'])} px, y {fmt.number(loc['box_centre_mean_px']['y'])} px. "
        "Radiographs show the patient's right on the image's left; a box belongs to the side its centre is on."
    )
    sides = tuple((r["group"], fmt.count(r["boxes"]), fmt.share(r["share"])) for r in loc["sides_boxes"])
    images = tuple((r["group"], fmt.count(r["images"]), fmt.share(r["share"])) for r in loc["sides_images"])
    return [
        Heading(2, "Where opacities sit"),
        Paragraph(text),
        Table(("side", "boxes", "share"), sides),
        Table(("images with boxes in", "images", "share"), images),
    ] + _plot(
        plots,
        "box_heatmap",
        f"Box coverage and lung side (n = {fmt.count(loc['boxes'])} boxes on {fmt.count(loc['images'])} images).",
    )


def _images(numbers: Mapping[str, Any], plots: Mapping[str, str]) -> list[Block]:
    section = numbers["images_section"]
    if not section:
        return []
    text = (
        f"A seeded sample of up to {section['images_per_class']} images per class (seed {section['seed']}), read from "
        f"the preprocessing cache at {section['cache_size_px']} px: {fmt.count(section['decoded_now'])} decoded now into "
        f"the cache, {fmt.count(section['already_cached'])} already there, {fmt.count(len(section['could_not_decode']))} "
        "could not be decoded. Intensities exclude the letterbox padding."
    )
    rows = tuple(
        (c["group"], fmt.count(c["histogram"]["images"]), fmt.number(c["mean_grey"], 1)) for c in section["classes"]
    )
    return (
        [Heading(2, "Images"), Paragraph(text), Table(("class", "images in the histogram", "mean grey level"), rows)]
        + _plot(
            plots,
            "samples",
            f"Sample images per class{' with their label boxes' if numbers['dataset'] == 'rsna' else ''} "
            f"(n = {fmt.count(sum(len(c['shown_ids']) for c in section['classes']))} images).",
        )
        + _plot(
            plots,
            "intensity",
            f"Intensity histograms per class (n = {fmt.count(sum(r['histogram']['images'] for r in section['classes']))} images).",
        )
    )


def _quality(numbers: Mapping[str, Any]) -> list[Block]:
    q = numbers["quality"]
    checks = []
    for c in q["checks"]:
        detail = "; ".join(c["examples"][:5]) + (" ..." if len(c["examples"]) > 5 else "")
        checks.append(
            (
                c["check"],
                "not checked" if c["count"] is None else fmt.count(c["count"]),
                "; ".join(t for t in (detail, c["note"]) if t),
            )
        )
    missing = tuple(
        (m["table"], m["column"], fmt.count(m["missing"]), fmt.count(m["rows"]), m["note"]) for m in q["missing_values"]
    )
    out: list[Block] = [Heading(2, "Data quality"), Table(("check", "count", "examples / note"), tuple(checks))]
    if missing:
        out += [
            Heading(3, "Missing values per column"),
            Table(("table", "column", "missing", "of rows", "note"), missing),
        ]
    return out


def _splits(numbers: Mapping[str, Any]) -> list[Block]:
    splits = numbers["splits"]
    if not splits:
        return []
    rows = tuple(
        (
            r["split"],
            fmt.count(r["images"]),
            fmt.count(r["patients"]),
            fmt.count(r["positive"]),
            fmt.share(r["positive_share"]),
            ", ".join(f"{k} {fmt.count(v)}" for k, v in r["classes"].items()),
        )
        for r in splits["rows"]
    )
    return [
        Heading(2, "Patients per split"),
        Table(("split", "images", "patients", "positive", "positive share", "per class"), rows),
        Paragraph(
            f"Patients in more than one split: {fmt.count(splits['patients_in_several_splits'])}. "
            f"Images without a split: {fmt.count(splits['unsplit_images'])}."
        ),
    ]


def report_title(numbers: Mapping[str, Any]) -> str:
    return f"Exploratory data analysis: {TITLES.get(numbers['dataset'], numbers['dataset'])}"


def report_blocks(numbers: Mapping[str, Any], plots: Mapping[str, str]) -> list[Block]:
    """The whole report, in reading order."""
    return [
        Heading(1, report_title(numbers)),
        *_source(numbers),
        *_overview(numbers),
        *_univariate(numbers, plots),
        *_bivariate(numbers, plots),
        *_location(numbers, plots),
        *_images(numbers, plots),
        *_quality(numbers),
        *_splits(numbers),
    ]
