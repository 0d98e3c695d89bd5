"""data_prep.eda.stats: intervals, distributions, coverage and sides, worked by hand."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from data_prep.eda.stats import age_band, compute_eda, describe, intensity_histogram, positive_rates, wilson_interval
from data_prep.eda.tables import IMAGE_COLUMNS, EdaSource, EdaTables


def test_wilson_interval_known_values():
    # 0/10: upper bound z^2 / (n + z^2) = 3.8415 / 13.8415
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(0.27753, abs=1e-5)
    low, high = wilson_interval(5, 10)
    assert (low, high) == (pytest.approx(0.23659, abs=1e-5), pytest.approx(0.76341, abs=1e-5))
    low, high = wilson_interval(4664, 12173)  # RSNA's AP rate
    assert (round(low, 4), round(high, 4)) == (0.3745, 0.3918)
    assert wilson_interval(0, 0) is None
    with pytest.raises(ValueError, match="positive must lie in 0..3, got 4"):
        wilson_interval(4, 3)


def test_describe_and_empty():
    stats = describe([1, 2, 3, 4, float("nan")])
    assert stats["n"] == 4 and stats["median"] == 2.5 and stats["q1"] == 1.75 and stats["max"] == 4.0
    assert describe([]) == {
        "n": 0,
        "mean": None,
        "min": None,
        "p05": None,
        "q1": None,
        "median": None,
        "q3": None,
        "p95": None,
        "max": None,
    }


def test_age_bands_edges():
    assert age_band(0.5, True) == "0-9"
    assert age_band(9.99, True) == "0-9"
    assert age_band(90, True) == "90-120"
    assert age_band(120, True) == "90-120"
    assert age_band(148, False) == "impossible (over 120)"
    assert age_band(float("nan"), True) == "unknown"


def test_positive_rates_order_and_unknown():
    groups = pd.Series(["PA", None, "AP", "AP", "LL"])
    target = pd.Series([0, 1, 1, 0, 1])
    rows = positive_rates(groups, target, ("AP", "PA"))
    assert [(r["group"], r["images"], r["positive"]) for r in rows] == [
        ("AP", 2, 1),
        ("PA", 1, 0),
        ("LL", 1, 1),
        ("unknown", 1, 1),
    ]
    assert rows[0]["rate"] == 0.5 and rows[0]["ci95_low"] == pytest.approx(wilson_interval(1, 2)[0])


def image_rows(rows):
    base = {c: None for c in IMAGE_COLUMNS}
    base.update(
        target=0,
        age_years=math.nan,
        age_valid=True,
        spacing_row_mm=math.nan,
        spacing_col_mm=math.nan,
        height_px=math.nan,
        width_px=math.nan,
        n_boxes=0,
        has_box_labels=True,
    )
    frame = pd.DataFrame([{**base, **r} for r in rows], columns=list(IMAGE_COLUMNS))
    for name in ("age_years", "spacing_row_mm", "spacing_col_mm", "height_px", "width_px"):
        frame[name] = frame[name].astype(float)
    return frame


def tiny_tables(boxes, images):
    return EdaTables(
        dataset="rsna",
        images=image_rows(images),
        boxes=pd.DataFrame(boxes, columns=["image_id", "x", "y", "width", "height"]),
        source=EdaSource(mode="tables", dataset="rsna"),
        checks=(),
        missing=(),
        has_class_info=False,
        has_headers=True,
    )


def test_coverage_sides_and_scaling_by_image_size():
    images = [
        {"image_id": "a", "patient_id": "a", "target": 1, "n_boxes": 2, "view": "AP", "sex": "F", "age_years": 30.0},
        # a 512 x 512 image: its box doubles on the 1024 grid
        {
            "image_id": "b",
            "patient_id": "b",
            "target": 1,
            "n_boxes": 1,
            "view": "PA",
            "sex": "M",
            "age_years": 151.0,
            "age_valid": False,
            "height_px": 512.0,
            "width_px": 512.0,
        },
        {"image_id": "c", "patient_id": "c", "target": 0, "view": "PA", "sex": "M", "age_years": 70.0},
    ]
    boxes = [("a", 0, 0, 16, 16), ("a", 600, 0, 8, 8), ("b", 0, 0, 8, 8)]
    numbers = compute_eda(tiny_tables(boxes, images), cell_px=8)
    loc = numbers["location"]
    cells = np.asarray(loc["coverage_boxes_per_pixel"])
    assert cells.shape == (128, 128)
    assert cells[0, 0] == 2.0 and cells[1, 1] == 2.0  # a's 16 px box and b's box (8 px -> 16 px)
    assert cells[2, 2] == 0.0
    assert cells[0, 75] == 1.0  # x 600..608 -> cell 75
    assert loc["coverage_peak_boxes"] == 2 and loc["boxes_on_assumed_grid"] == 2
    assert [r["boxes"] for r in loc["sides_boxes"]] == [2, 1]  # two centred left (patient's right), one right
    assert [(r["group"], r["images"]) for r in loc["sides_images"]] == [
        ("both lungs", 1),
        ("right lung only (image left)", 1),
        ("left lung only (image right)", 0),
    ]
    age = numbers["univariate"]["age_years"]
    assert (age["n"], age["impossible"], age["impossible_values"]) == (2, 1, [151.0])
    bands = {r["group"]: r["images"] for r in numbers["bivariate"]["positive_rate_by_age_band"]}
    assert bands["30-39"] == 1 and bands["70-79"] == 1 and bands["impossible (over 120)"] == 1
    assert "0-9" not in bands  # a band without images is left out, not shown as an empty rate
    assert numbers["univariate"]["boxes_per_image"] == [
        {"boxes": 0, "images": 1, "share": 1 / 3},
        {"boxes": 1, "images": 1, "share": 1 / 3},
        {"boxes": 2, "images": 1, "share": 1 / 3},
    ]
    by_view = {r["group"]: r["boxes"] for r in numbers["bivariate"]["box_size_by_view"]}
    assert by_view == {"AP": 2, "PA": 1}
    checks = {c["check"]: c for c in numbers["quality"]["checks"]}
    assert checks["impossible ages (flagged, kept)"]["examples"] == ["151"]
    json.dumps(numbers, allow_nan=False)  # plain JSON, no NaN anywhere


def test_no_boxes_no_location_section():
    numbers = compute_eda(tiny_tables([], [{"image_id": "a", "patient_id": "a"}]))
    assert numbers["location"] is None and numbers["univariate"]["box_size"] is None
    assert numbers["overview"]["boxes"] == 0


def test_intensity_histogram_weights_each_image_equally():
    dark = np.zeros((2, 2), np.uint8)
    half = np.array([[0, 255]] * 8, np.uint8)  # 16 pixels, half white
    result = intensity_histogram([dark, half])
    assert result["images"] == 2
    assert result["density"][0] == pytest.approx(0.75) and result["density"][255] == pytest.approx(0.25)
    assert sum(result["density"]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="expected uint8 pixels, got float64"):
        intensity_histogram([np.zeros((2, 2))])
