"""`detect eda --labels --headers` on the REAL RSNA tables (torchxrayvision's copy, see conftest.py).

Every expected figure is computed here with plain pandas, straight from the files, and the ones
docs/data-formats.md states are also asserted as numbers.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli import app


@pytest.fixture(scope="module")
def report(rsna_tables, tmp_path_factory):
    labels, headers = rsna_tables
    out = tmp_path_factory.mktemp("eda_real")
    result = CliRunner().invoke(app, ["eda", "--labels", str(labels), "--headers", str(headers), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return (
        json.loads((out / "eda.json").read_text()),
        (out / "report.md").read_text(),
        (out / "report.html").read_text(),
    )


@pytest.fixture(scope="module")
def expected(rsna_tables):
    """The figures, computed independently of data_prep.eda."""
    labels_path, headers_path = rsna_tables
    labels = pd.read_csv(labels_path)
    headers = pd.read_csv(headers_path, dtype={"PatientAge": str, "PatientID": str})
    per_image = labels.groupby("patientId").agg(target=("Target", "max"), boxes=("x", "count")).reset_index()
    boxes = labels.dropna(subset=["x", "y", "width", "height"])
    joined = per_image.merge(headers, left_on="patientId", right_on="PatientID", how="left", validate="one_to_one")
    ages = pd.to_numeric(joined["PatientAge"])
    view = joined.groupby("ViewPosition")["target"].agg(["count", "sum"])
    sex = joined.groupby("PatientSex")["target"].agg(["count", "sum"])
    box_counts = per_image.loc[per_image.target == 1, "boxes"].value_counts()
    return {
        "images": len(per_image),
        "positive": int(per_image.target.sum()),
        "boxes": len(boxes),
        "box_counts": {int(k): int(v) for k, v in box_counts.items()},
        "width_median": float(boxes.width.median()),
        "height_median": float(boxes.height.median()),
        "view": {v: (int(r["count"]), int(r["sum"])) for v, r in view.iterrows()},
        "sex": {s: (int(r["count"]), int(r["sum"])) for s, r in sex.iterrows()},
        "ages_over_100": sorted(float(a) for a in ages[ages > 100]),
        "median_age": float(ages[ages <= 120].median()),
        "centre_x": float((boxes.x + boxes.width / 2).mean()),
        "centre_y": float((boxes.y + boxes.height / 2).mean()),
        "unmatched": int(joined["PatientID"].isna().sum()),
    }


def test_real_counts_match_pandas_and_the_documented_figures(report, expected):
    numbers, _, _ = report
    overview = numbers["overview"]
    assert overview["images"] == expected["images"] == 26_684
    assert overview["positive_images"] == expected["positive"] == 6_012
    assert expected["images"] - expected["positive"] == 20_672
    assert {r["group"]: r["images"] for r in numbers["univariate"]["target"]} == {
        "negative (Target = 0)": 20_672,
        "positive (Target = 1)": 6_012,
    }
    assert overview["boxes"] == expected["boxes"] == 9_555
    per_image = {r["boxes"]: r["images"] for r in numbers["univariate"]["boxes_per_image"] if r["boxes"]}
    assert per_image == expected["box_counts"] == {1: 2_614, 2: 3_266, 3: 119, 4: 13}
    size = numbers["univariate"]["box_size"]
    assert size["width_px"]["median"] == expected["width_median"] == 217
    assert size["height_px"]["median"] == expected["height_median"] == 298
    assert expected["unmatched"] == 0


def test_real_views_sexes_and_ages(report, expected):
    numbers, _, _ = report
    view = {r["group"]: r for r in numbers["bivariate"]["positive_rate_by_view"]}
    assert (
        {v: (r["images"], r["positive"]) for v, r in view.items()}
        == expected["view"]
        == {"AP": (12_173, 4_664), "PA": (14_511, 1_348)}
    )
    assert round(100 * view["AP"]["rate"], 1) == 38.3 and round(100 * view["PA"]["rate"], 1) == 9.3
    for row in view.values():  # the interval holds the rate and is narrow for ten thousand images
        assert row["ci95_low"] < row["rate"] < row["ci95_high"] and row["ci95_high"] - row["ci95_low"] < 0.02
    sex = {r["group"]: (r["images"], r["positive"]) for r in numbers["bivariate"]["positive_rate_by_sex"]}
    assert sex == expected["sex"]
    age = numbers["univariate"]["age_years"]
    assert age["impossible_values"] == expected["ages_over_100"] == [148, 150, 151, 153, 155]
    assert age["impossible"] == 5 and age["median"] == expected["median_age"] == 49
    location = numbers["location"]
    assert location["box_centre_mean_px"]["x"] == pytest.approx(expected["centre_x"])
    assert location["box_centre_mean_px"]["y"] == pytest.approx(expected["centre_y"])
    assert round(expected["centre_x"]) == 503 and round(expected["centre_y"]) == 531
    assert np.asarray(location["coverage_boxes_per_pixel"]).shape == (128, 128)


def test_real_report_text(report):
    _, markdown, page = report
    for text in (
        "| images | 26,684 |",
        "| positive images | 6,012 (22.5%) |",
        "| AP | 12,173 | 4,664 | 38.3% |",
        "| PA | 14,511 | 1,348 | 9.3% |",
        "5 (148, 150, 151, 153, 155)",
        "| 2 | 3,266 |",
    ):
        assert text in markdown, text
    sources = re.findall(r'src="([^"]*)"', page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
