"""The header scan finds the real RSNA header table's fields, by both parsers.

The real DICOMs cannot be downloaded here; their header table can. Files are written with the
header values of real rows (RSNA's layout, data_prep.synth's writer, a small frame) and scanned
by the plain-header parser and by pydicom's: both must give the table's values.
"""

from __future__ import annotations

import csv
import gzip
import warnings

import numpy as np
import pytest

from data_prep.dicom import read_dicom_header, scan_dicom_headers
from data_prep.dicom_header import parse_simple_header
from data_prep.records import MAX_PLAUSIBLE_AGE_YEARS
from data_prep.synth.rsna import write_jpeg_baseline_dicom

N_ROWS = 120


def _rows(headers_path):
    with gzip.open(headers_path, "rt", newline="") as handle:
        rows = list(csv.DictReader(handle))
    rng = np.random.default_rng(0)
    picked = [rows[int(i)] for i in rng.choice(len(rows), size=N_ROWS, replace=False)]
    odd_ages = [r for r in rows if r["PatientAge"] and int(float(r["PatientAge"])) > 100][:5]
    return picked + odd_ages


def test_scan_finds_the_real_header_fields_with_either_parser(tmp_path, rsna_tables):
    rows = _rows(rsna_tables[1])
    pixels = np.full((64, 64), 100, dtype=np.uint8)
    paths = []
    for i, row in enumerate(rows):
        path = tmp_path / row["Filename"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            write_jpeg_baseline_dicom(
                path,
                pixels,
                patient_id=row["PatientID"],
                sex=row["PatientSex"],
                age=row["PatientAge"],
                view_position=row["ViewPosition"],
                pixel_spacing_mm=float(row["PixelSpacing"]),
                sop_instance_uid=f"1.2.276.0.7230010.3.1.4.8323329.{1000 + i}.1517874291.{200000 + i}",
            )
        paths.append(path)
    with open(paths[0], "rb") as handle:
        assert parse_simple_header(handle, paths[0].stat().st_size) is not None  # the plain layout
    fast, fast_bad = scan_dicom_headers(paths)
    slow = [read_dicom_header(p, fast_header=False) for p in paths]
    assert fast_bad == [] and fast == slow
    for header, row in zip(fast, rows):
        assert header.patient_id == row["PatientID"]
        assert header.sex == row["PatientSex"] and header.view_position == row["ViewPosition"]
        assert header.age_years == float(row["PatientAge"]) and header.age_valid == (
            float(row["PatientAge"]) <= MAX_PLAUSIBLE_AGE_YEARS
        )
        assert header.pixel_spacing_mm == pytest.approx((float(row["PixelSpacing"]),) * 2)
        assert header.modality == row["Modality"] and header.samples_per_pixel == int(float(row["SamplesPerPixel"]))
