"""detect.eda.run: the tables-only report agrees with the folder report of the same synthetic data."""

import csv

import pytest

from data_prep.errors import ConfigError, LabelFileError
from data_prep.manifest import read_manifest
from data_prep.rsna import CLASS_INFO_CSV, LABELS_CSV
from detect.eda.folder import run_eda_folder
from detect.eda.run import check_eda_arguments, format_eda_summary, run_eda_tables
from tests.detect.train_fixtures import make_rsna


def write_header_table(prepared, path):
    """The manifest's header fields in torchxrayvision's layout (unnamed index, PatientID, ages as text)."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["", "PatientID", "PatientAge", "PatientSex", "ViewPosition", "PixelSpacing", "Rows", "Columns"]
        )
        for i, r in enumerate(prepared.records):
            writer.writerow(
                [i, r.patient_id, f"{r.age_years:g}", r.sex, r.view_position, r.pixel_spacing_mm[0], r.height, r.width]
            )
    return path


def test_tables_report_matches_the_folder_report(tmp_path):
    root = make_rsna(tmp_path / "rsna", n_images=20, prepare=True)
    headers = write_header_table(read_manifest(root), tmp_path / "headers.csv")
    tables = run_eda_tables(
        tmp_path / "from_tables", root / LABELS_CSV, class_info=root / CLASS_INFO_CSV, headers=headers
    )
    folder = run_eda_folder(tmp_path / "from_folder", root, images_per_class=1, image_size_px=32, workers=1)
    a, b = tables.numbers, folder.numbers
    assert a["overview"] == b["overview"]
    for key in (
        "target",
        "classes",
        "age_years",
        "sex",
        "view",
        "boxes_per_image",
        "box_size",
        "image_size",
        "pixel_spacing_mm",
    ):
        assert a["univariate"][key] == b["univariate"][key], key
    assert a["bivariate"] == b["bivariate"]
    assert a["location"] == b["location"]
    assert a["images_section"] is None and a["splits"] is None
    dup = {c["check"]: c["count"] for c in a["quality"]["checks"]}["duplicate class-info rows collapsed"]
    assert dup == {c["check"]: c["count"] for c in b["quality"]["checks"]}["duplicate class-info rows collapsed"] > 0
    assert set(tables.plots) == set(folder.plots) - {"samples", "intensity"}
    summary = format_eda_summary(tables)
    assert summary.startswith("Exploratory data analysis: RSNA Pneumonia Detection (stage 2): 20 images")


def test_labels_alone_report(tmp_path):
    root = make_rsna(tmp_path / "rsna", n_images=12, prepare=False)
    result = run_eda_tables(tmp_path / "eda", root / LABELS_CSV)
    numbers = result.numbers
    assert numbers["univariate"]["classes"] is None and numbers["univariate"]["age_years"] is None
    assert numbers["bivariate"]["positive_rate_by_view"] is None
    assert numbers["location"]["boxes_on_assumed_grid"] == numbers["overview"]["boxes"]
    markdown = result.paths["report_md"].read_text()
    assert "No class-info table" in markdown and "No DICOM header table" in markdown
    assert set(result.plots) == {"class_balance", "boxes_per_image", "box_size", "box_counts", "box_heatmap"}


def test_argument_checks_and_bad_tables(tmp_path):
    with pytest.raises(ConfigError, match="pass either DATA_DIR"):
        check_eda_arguments(None, None, None, None)
    with pytest.raises(ConfigError, match="pass either DATA_DIR"):
        check_eda_arguments("d", "l.csv", None, None)
    with pytest.raises(ConfigError, match="--class-info and --headers go with --labels"):
        check_eda_arguments("d", None, None, "h.csv")
    with pytest.raises(LabelFileError, match=r"nope\.csv: file not found"):
        run_eda_tables(tmp_path / "eda", tmp_path / "nope.csv")
    (tmp_path / "labels.csv").write_text("patientId,x,y\n")
    with pytest.raises(LabelFileError, match=r"labels\.csv: missing column 'width', 'height', 'Target'"):
        run_eda_tables(tmp_path / "eda", tmp_path / "labels.csv")
    assert not (tmp_path / "eda").exists()  # nothing written before the tables read
