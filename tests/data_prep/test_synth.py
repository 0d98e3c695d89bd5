"""Synthetic datasets: exact Kaggle layouts and quirks, DICOM headers, determinism, and opacities that are really there."""

from __future__ import annotations

import csv
import io
import re
import uuid
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from pydicom.encaps import generate_frames

from data_prep.errors import ConfigError
from data_prep.records import RSNA_CLASSES
from data_prep.synth import (
    MARKER_FILE,
    SynthSummary,
    render_chest_radiograph,
    synth_kermany,
    synth_rsna,
    write_jpeg_baseline_dicom,
)
from data_prep.synth.kermany import JUNK_FILES
from data_prep.synth.rsna import AGE_QUIRKS, PIXEL_SPACINGS_MM, exact_counts

RSNA_FILES = {
    "stage_2_train_labels.csv",
    "stage_2_detailed_class_info.csv",
    "stage_2_sample_submission.csv",
    "stage_2_train_images",
    "stage_2_test_images",
    MARKER_FILE,
}
N_RSNA, N_RSNA_TEST, RSNA_SIZE = 30, 4, 128
N_KERMANY = 60
UID_RE = re.compile(r"^1\.2\.276\.0\.7230010\.3\.1\.(?P<kind>[234])\.8323329\.(?P<n>\d+)\.(?P<t>\d+)\.(?P<m>\d+)$")
PNEUMONIA_RE = re.compile(r"^person(?P<person>\d+)_(?P<kind>bacteria|virus)_(?P<k>\d+)\.jpeg$")
NORMAL_RE = re.compile(r"^(?P<prefix>NORMAL2-)?IM-(?P<patient>\d{4})-(?P<image>\d{4})\.jpeg$")


@pytest.fixture(scope="module")
def rsna(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SynthSummary]:
    out = tmp_path_factory.mktemp("rsna") / "data"
    summary = synth_rsna(out, n_images=N_RSNA, n_test_images=N_RSNA_TEST, size_px=RSNA_SIZE, seed=7)
    return out, summary


@pytest.fixture(scope="module")
def kermany(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SynthSummary]:
    out = tmp_path_factory.mktemp("kermany") / "data"
    summary = synth_kermany(out, n_images=N_KERMANY, seed=3, size_range_px=(96, 160))
    return out, summary


def read_rows(path: Path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))


def all_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ----------------------------------------------------------------------------- RSNA layout and CSVs


def test_rsna_layout_is_exactly_the_kaggle_one(rsna):
    out, summary = rsna
    assert {p.name for p in out.iterdir()} == RSNA_FILES
    train = sorted((out / "stage_2_train_images").iterdir())
    test = sorted((out / "stage_2_test_images").iterdir())
    assert len(train) == N_RSNA and len(test) == N_RSNA_TEST
    for path in train + test:
        assert path.suffix == ".dcm"
        assert uuid.UUID(path.stem).version == 4 and str(uuid.UUID(path.stem)) == path.stem
    assert summary.counts["images"] == N_RSNA and summary.counts["test_images"] == N_RSNA_TEST


def test_rsna_labels_csv_quirks(rsna):
    out, summary = rsna
    text = (out / "stage_2_train_labels.csv").read_text(encoding="utf-8")
    lines = text.split("\n")
    assert lines[0] == "patientId,x,y,width,height,Target"
    assert text.endswith("\n") and "\r" not in text
    rows = read_rows(out / "stage_2_train_labels.csv")[1:]
    negatives = [r for r in rows if r[5] == "0"]
    positives = [r for r in rows if r[5] == "1"]
    assert len(negatives) + len(positives) == len(rows)
    # negatives: exactly one row each, box fields EMPTY in the raw text
    for r in negatives:
        assert f"{r[0]},,,,,0" in lines
    assert len({r[0] for r in negatives}) == len(negatives)
    # positives: one row per box, float text, inside the image, positive size
    for r in positives:
        x, y, w, h = (float(v) for v in r[1:5])
        assert all(re.fullmatch(r"\d+\.\d+", v) for v in r[1:5]), r
        assert x >= 0 and y >= 0 and w > 0 and h > 0 and x + w <= RSNA_SIZE and y + h <= RSNA_SIZE
    n_pos_images = len({r[0] for r in positives})
    assert len(rows) == summary.counts["boxes"] + len(negatives) == summary.counts["label_rows"]
    assert len(positives) == summary.counts["boxes"]
    assert n_pos_images == summary.counts["Lung Opacity"]
    assert len({r[0] for r in rows}) == N_RSNA


def test_rsna_class_info_has_the_label_row_count_with_exact_duplicates(rsna):
    out, summary = rsna
    labels = read_rows(out / "stage_2_train_labels.csv")
    classes = read_rows(out / "stage_2_detailed_class_info.csv")
    assert classes[0] == ["patientId", "class"]
    assert len(classes) == len(labels)
    # same patients in the same order, duplicated once per box
    assert [r[0] for r in classes[1:]] == [r[0] for r in labels[1:]]
    n_duplicates = len(classes) - 1 - len({tuple(r) for r in classes[1:]})
    assert n_duplicates == summary.counts["class_info_duplicate_rows"] > 0  # 2-box images always occur
    class_of = {}
    for pid, cls in classes[1:]:
        assert class_of.setdefault(pid, cls) == cls
        assert cls in RSNA_CLASSES
    target_of = {r[0]: r[5] for r in labels[1:]}
    for pid, cls in class_of.items():
        assert (target_of[pid] == "1") == (cls == "Lung Opacity")
    for cls in RSNA_CLASSES:
        assert sum(c == cls for c in class_of.values()) == summary.counts[cls]
    assert [summary.counts[c] for c in RSNA_CLASSES] == exact_counts(N_RSNA, (0.33, 0.44, 0.23))


def test_rsna_box_counts_include_one_and_two_box_images(rsna):
    out, summary = rsna
    rows = read_rows(out / "stage_2_train_labels.csv")[1:]
    per_image = {}
    for r in rows:
        if r[5] == "1":
            per_image[r[0]] = per_image.get(r[0], 0) + 1
    hist = {k: sum(v == k for v in per_image.values()) for k in (1, 2, 3, 4)}
    assert hist[1] >= 1 and hist[2] >= 1
    assert all(summary.counts[f"positive_images_with_{k}_boxes"] == hist[k] for k in hist)


def test_rsna_sample_submission(rsna):
    out, _ = rsna
    rows = read_rows(out / "stage_2_sample_submission.csv")
    assert rows[0] == ["patientId", "PredictionString"]
    assert [r[1] for r in rows[1:]] == ["0.5 0 0 100 100"] * N_RSNA_TEST
    assert {r[0] for r in rows[1:]} == {p.stem for p in (out / "stage_2_test_images").iterdir()}


# ----------------------------------------------------------------------------- RSNA DICOMs


def test_rsna_dicom_headers_are_rsnas(rsna):
    out, summary = rsna
    paths = sorted((out / "stage_2_train_images").glob("*.dcm")) + sorted((out / "stage_2_test_images").glob("*.dcm"))
    views, ages = [], []
    for path in paths:
        raw = path.read_bytes()
        assert raw[:128] == b"\0" * 128 and raw[128:132] == b"DICM"
        ds = pydicom.dcmread(path)
        meta = ds.file_meta
        assert meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.50"
        assert meta.MediaStorageSOPClassUID == ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"
        assert meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert meta.ImplementationVersionName == "OFFIS_DCMTK_360"
        assert meta.ImplementationClassUID == "1.2.276.0.7230010.3.0.3.6.0"
        assert ds.PhotometricInterpretation == "MONOCHROME2"
        assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation, ds.SamplesPerPixel) == (
            8,
            8,
            7,
            0,
            1,
        )
        assert (ds.Rows, ds.Columns) == (RSNA_SIZE, RSNA_SIZE)
        assert (ds.Modality, ds.BodyPartExamined, ds.ConversionType) == ("CR", "CHEST", "WSD")
        assert ds.ViewPosition in ("AP", "PA") and ds.SeriesDescription == f"view: {ds.ViewPosition}"
        assert ds.PatientID == str(ds.PatientName) == path.stem
        assert ds.PatientSex in ("M", "F")
        assert re.fullmatch(r"\d{1,3}", ds.PatientAge)
        spacing = [float(v) for v in ds.PixelSpacing]
        assert spacing[0] == spacing[1] and spacing[0] in PIXEL_SPACINGS_MM
        assert ds.LossyImageCompression == "01"
        sop, study, series = (UID_RE.match(u) for u in (ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID))
        assert sop and study and series and (sop["kind"], study["kind"], series["kind"]) == ("4", "2", "3")
        assert int(study["m"]) == int(sop["m"]) - 1 and int(series["m"]) == int(sop["m"]) - 2
        assert ds["PixelData"].is_undefined_length  # encapsulated
        if path.parent.name == "stage_2_train_images":
            views.append(ds.ViewPosition)
            ages.append(ds.PatientAge)
    assert views.count("AP") == summary.counts["AP"] and views.count("PA") == summary.counts["PA"]
    assert summary.counts["AP"] > 0 and summary.counts["PA"] > 0
    assert sum(a in AGE_QUIRKS for a in ages) == summary.counts["age_quirks"] >= 1  # n >= 20


def test_rsna_dicom_is_one_jpeg_frame_decodable_by_pydicom_and_cv2(rsna):
    out, _ = rsna
    path = sorted((out / "stage_2_train_images").glob("*.dcm"))[0]
    ds = pydicom.dcmread(path)
    frames = list(generate_frames(ds.PixelData, number_of_frames=1))
    assert len(frames) == 1 and frames[0][:2] == b"\xff\xd8"  # a JPEG SOI marker
    by_cv2 = cv2.imdecode(np.frombuffer(frames[0], np.uint8), cv2.IMREAD_UNCHANGED)
    by_pydicom = ds.pixel_array
    assert by_pydicom.dtype == np.uint8 and by_pydicom.shape == (RSNA_SIZE, RSNA_SIZE)
    assert by_cv2.shape == (RSNA_SIZE, RSNA_SIZE)
    assert np.abs(by_pydicom.astype(int) - by_cv2.astype(int)).max() <= 2
    assert by_cv2.std() > 20  # an image, not a constant


def test_write_jpeg_baseline_dicom_round_trip_non_square(tmp_path):
    pixels = np.tile(np.linspace(0, 255, 96).astype(np.uint8), (64, 1))
    path = tmp_path / "x.dcm"
    write_jpeg_baseline_dicom(
        path,
        pixels,
        patient_id="p1",
        sex="F",
        age="148",
        view_position="PA",
        pixel_spacing_mm=0.168,
        sop_instance_uid="1.2.276.0.7230010.3.1.4.8323329.100.1517874485.775526",
    )
    ds = pydicom.dcmread(path)
    assert (ds.Rows, ds.Columns) == (64, 96)
    assert ds.PatientAge == "148" and ds.SeriesDescription == "view: PA"
    assert ds.StudyInstanceUID == "1.2.276.0.7230010.3.1.2.8323329.100.1517874485.775525"
    assert ds.SeriesInstanceUID == "1.2.276.0.7230010.3.1.3.8323329.100.1517874485.775524"
    assert np.abs(ds.pixel_array.astype(int) - pixels.astype(int)).max() <= 3


def test_write_jpeg_baseline_dicom_spacing_pair_and_monochrome1(tmp_path):
    pixels = np.tile(np.linspace(0, 255, 64).astype(np.uint8), (48, 1))
    path = tmp_path / "x.dcm"
    write_jpeg_baseline_dicom(
        path,
        pixels,
        patient_id="p1",
        sex="M",
        age="40",
        view_position="AP",
        pixel_spacing_mm=(0.139, 0.143),
        photometric_interpretation="MONOCHROME1",
        sop_instance_uid="1.2.276.0.7230010.3.1.4.8323329.1.2.3",
    )
    ds = pydicom.dcmread(path)
    assert [float(v) for v in ds.PixelSpacing] == [0.139, 0.143]  # (row, column), as given
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    # the frame holds the pixels as given: only the header says how to display them
    assert np.abs(ds.pixel_array.astype(int) - pixels.astype(int)).max() <= 3


def test_write_jpeg_baseline_dicom_one_spacing_means_square_pixels(tmp_path):
    path = tmp_path / "x.dcm"
    write_jpeg_baseline_dicom(
        path,
        np.zeros((8, 8), np.uint8),
        patient_id="p",
        sex="F",
        age="40",
        view_position="PA",
        pixel_spacing_mm=0.168,
        sop_instance_uid="1.2.276.0.7230010.3.1.4.8323329.1.2.3",
    )
    assert [float(v) for v in pydicom.dcmread(path).PixelSpacing] == [0.168, 0.168]


@pytest.mark.parametrize(
    "pixels, kwargs, message",
    [
        (np.zeros((8, 8), np.float32), {}, "pixels_uint8 must be a 2-D uint8 array, got float32 (8, 8)"),
        (np.zeros((8, 8, 3), np.uint8), {}, "pixels_uint8 must be a 2-D uint8 array, got uint8 (8, 8, 3)"),
        (np.zeros((8, 8), np.uint8), {"view_position": "LL"}, "view_position must be 'AP' or 'PA', got 'LL'"),
        (np.zeros((8, 8), np.uint8), {"sop_instance_uid": "1.2.3"}, "sop_instance_uid '1.2.3' is not RSNA-style"),
        (
            np.zeros((8, 8), np.uint8),
            {"photometric_interpretation": "RGB"},
            "photometric_interpretation must be 'MONOCHROME1' or 'MONOCHROME2', got 'RGB'",
        ),
        (
            np.zeros((8, 8), np.uint8),
            {"pixel_spacing_mm": (0.1, 0.2, 0.3)},
            "pixel_spacing_mm must be one float or (row, column), got (0.1, 0.2, 0.3)",
        ),
    ],
)
def test_write_jpeg_baseline_dicom_rejects_bad_input(tmp_path, pixels, kwargs, message):
    args = dict(
        patient_id="p",
        sex="M",
        age="40",
        view_position="AP",
        pixel_spacing_mm=0.143,
        sop_instance_uid="1.2.276.0.7230010.3.1.4.8323329.1.2.3",
    )
    args.update(kwargs)
    with pytest.raises(ValueError, match=re.escape(message)):
        write_jpeg_baseline_dicom(tmp_path / "x.dcm", pixels, **args)
    assert not (tmp_path / "x.dcm").exists()


# ----------------------------------------------------------------------------- determinism and the output folder


def test_rsna_same_seed_same_bytes_other_seed_other_data(tmp_path):
    kwargs = dict(n_images=6, n_test_images=2, size_px=64)
    synth_rsna(tmp_path / "a", seed=11, **kwargs)
    synth_rsna(tmp_path / "b", seed=11, **kwargs)
    synth_rsna(tmp_path / "c", seed=12, **kwargs)
    a, b, c = (all_files(tmp_path / d) for d in "abc")
    assert a == b  # byte-identical: CSVs, every DICOM, the marker
    assert len(a) == 3 + 6 + 2 + 1
    assert a["stage_2_train_labels.csv"] != c["stage_2_train_labels.csv"]
    assert set(a).isdisjoint(
        set(c)
        - {"stage_2_train_labels.csv", "stage_2_detailed_class_info.csv", "stage_2_sample_submission.csv", MARKER_FILE}
    )


def test_rsna_process_pool_writes_the_same_bytes(tmp_path):
    kwargs = dict(n_images=6, n_test_images=2, size_px=64, seed=5)
    synth_rsna(tmp_path / "serial", **kwargs)
    synth_rsna(tmp_path / "pool", workers=2, **kwargs)
    assert all_files(tmp_path / "serial") == all_files(tmp_path / "pool")
    with pytest.raises(ConfigError, match=r"workers \(--workers\): must be >= 1, got 0"):
        synth_rsna(tmp_path / "none", workers=0, **kwargs)


def test_rerun_replaces_a_previous_synthetic_dataset(tmp_path):
    synth_rsna(tmp_path, n_images=5, size_px=64, seed=1)
    first = {p.name for p in (tmp_path / "stage_2_train_images").iterdir()}
    (tmp_path / "notes.txt").write_text("mine")
    summary = synth_rsna(tmp_path, n_images=3, size_px=64, seed=2)
    second = {p.name for p in (tmp_path / "stage_2_train_images").iterdir()}
    assert len(second) == 3 and not first & second  # no stale image of the first run
    assert (tmp_path / "notes.txt").read_text() == "mine"  # not ours: left alone
    assert summary.counts["images"] == 3


def test_refuses_a_non_empty_folder_it_did_not_write(tmp_path):
    (tmp_path / "stage_2_train_labels.csv").write_text("real data")
    with pytest.raises(ConfigError, match=re.escape(f"{tmp_path}: folder is not empty and has no {MARKER_FILE}")):
        synth_rsna(tmp_path, n_images=2, size_px=64)
    with pytest.raises(ConfigError, match="refusing to overwrite it"):
        synth_kermany(tmp_path, n_images=2)
    assert (tmp_path / "stage_2_train_labels.csv").read_text() == "real data"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stage_2_train_labels.csv"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n_images": 0}, "n_images (--images): must be >= 1, got 0"),
        ({"n_test_images": -1}, "n_test_images (--test-images): must be >= 0, got -1"),
        ({"size_px": 32}, "size_px (--size): must be in 64..4096, got 32"),
        ({"class_fractions": (0.5, 0.5, 0.5)}, "class_fractions: must be 3 non-negative fractions"),
    ],
)
def test_synth_rsna_rejects_bad_arguments(tmp_path, kwargs, message):
    args = {"n_images": 2, "size_px": 64, **kwargs}
    with pytest.raises(ConfigError, match=re.escape(message)):
        synth_rsna(tmp_path / "out", **args)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "n, fractions, expected",
    [
        (10, (0.33, 0.44, 0.23), [3, 5, 2]),  # 3.3, 4.4, 2.3: the one left over goes to the largest remainder
        (100, (0.33, 0.44, 0.23), [33, 44, 23]),
        (2, (0.33, 0.44, 0.23), [1, 1, 0]),  # too few for every class
        (4, (0.9, 0.1, 0.0), [3, 1, 0]),  # 3.6, 0.4, 0 rounds to 4, 0, 0; class 1 then takes one from the largest
        (5, (1.0, 0.0, 0.0), [5, 0, 0]),
    ],
)
def test_exact_counts(n, fractions, expected):
    assert exact_counts(n, fractions) == expected


# ----------------------------------------------------------------------------- Kermany


def kermany_images(root: Path) -> list[Path]:
    return sorted(p for p in (root / "chest_xray").rglob("*.jpeg"))


def test_kermany_layout_and_names(kermany):
    out, summary = kermany
    root = out / "chest_xray"
    assert {p.name for p in out.iterdir()} == {"chest_xray", MARKER_FILE}
    folders = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_dir()}
    assert folders == {"train", "val", "test"} | {
        f"{s}/{c}" for s in ("train", "val", "test") for c in ("NORMAL", "PNEUMONIA")
    }
    counts: dict[str, int] = {}
    patients: dict[str, set[str]] = {"train": set(), "val": set(), "test": set()}
    for path in kermany_images(out):
        split, label, name = path.relative_to(root).parts
        if label == "PNEUMONIA":
            m = PNEUMONIA_RE.match(name)
            assert m, name
            kind = m["kind"]
            patients[split].add(f"person{m['person']}")
        else:
            m = NORMAL_RE.match(name)
            assert m, name
            kind = None
            patients[split].add(f"NORMAL2-{m['patient']}" if m["prefix"] else m["patient"])
        for key in (f"{split}/images", f"{split}/{label}", label) + ((f"{split}/{kind}", kind) if kind else ()):
            counts[key] = counts.get(key, 0) + 1
    for key, value in counts.items():
        assert summary.counts[key] == value, key
    assert summary.counts["images"] == N_KERMANY == len(kermany_images(out))
    for split in patients:
        assert summary.counts[f"{split}/patients"] == len(patients[split])
    assert summary.counts["patients"] == len(patients["train"] | patients["val"]) + len(patients["test"])
    assert summary.counts["patients"] < N_KERMANY  # several images per child


def test_kermany_split_and_class_proportions(kermany):
    _, summary = kermany
    c = summary.counts
    assert c["val/NORMAL"] >= 1 and c["val/PNEUMONIA"] >= 1  # n >= 40
    assert c["test/images"] == round(N_KERMANY * 624 / 5856)
    assert c["train/images"] == N_KERMANY - c["val/images"] - c["test/images"]
    assert 0.2 <= c["train/NORMAL"] / c["train/images"] <= 0.32
    assert c["bacteria"] > c["virus"] > 0


def test_kermany_person_numbers_restart_in_test(kermany):
    out, _ = kermany
    numbers: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for path in kermany_images(out):
        m = PNEUMONIA_RE.match(path.name)
        if m:
            numbers[path.parts[-3]].append(int(m["person"]))
    assert min(numbers["test"]) == 1 and min(numbers["train"]) == 1
    assert min(numbers["val"]) > max(numbers["train"])  # val continues train's numbering


def test_kermany_images_sizes_channels_and_junk(kermany):
    out, summary = kermany
    n_rgb = 0
    for path in kermany_images(out):
        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert img is not None and img.dtype == np.uint8
        h, w = img.shape[:2]
        assert 96 <= h <= 160 and 96 <= w <= 160 and h != w
        if img.ndim == 3:
            assert img.shape[2] == 3
            n_rgb += 1
        else:
            assert img.ndim == 2
    assert n_rgb == summary.counts["rgb"] >= 1
    for junk in JUNK_FILES:
        data = (out / "chest_xray" / junk).read_bytes()
        assert data.startswith(b"\x00\x00\x00\x01Bud1")
    assert (out / "chest_xray" / "train" / "PNEUMONIA" / ".DS_Store").is_file()
    assert summary.counts["junk"] == len(JUNK_FILES) >= 1


def test_kermany_same_seed_same_bytes(tmp_path):
    synth_kermany(tmp_path / "a", n_images=12, seed=5, size_range_px=(64, 96))
    synth_kermany(tmp_path / "b", n_images=12, seed=5, size_range_px=(64, 96))
    synth_kermany(tmp_path / "c", n_images=12, seed=6, size_range_px=(64, 96))
    a, b, c = (all_files(tmp_path / d) for d in "abc")
    assert a == b
    assert a != c


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n_images": 0}, "n_images (--images): must be >= 1, got 0"),
        (
            {"size_range_px": (200, 100)},
            "size_range_px: must be (min, max) with 32 <= min <= max <= 8192, got (200, 100)",
        ),
    ],
)
def test_synth_kermany_rejects_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        synth_kermany(tmp_path / "out", **{"n_images": 4, **kwargs})


@pytest.mark.parametrize("difficulty", [-0.1, 1.5])
def test_synth_kermany_rejects_a_difficulty_outside_0_1(tmp_path, difficulty):
    with pytest.raises(ConfigError, match=re.escape(f"difficulty (--difficulty): must be in 0..1, got {difficulty}")):
        synth_kermany(tmp_path / "out", n_images=4, difficulty=difficulty)


def global_statistics(path: Path) -> list[float]:
    """What a shortcut could use without looking at the lungs: size, brightness, contrast, bytes, JPEG quality."""
    data = path.read_bytes()
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE).astype(np.float32)
    h, w = img.shape
    dqt = data.index(b"\xff\xdb")  # the luminance quantisation table's first entries scale with the quality
    quant = np.frombuffer(data[dqt + 5 : dqt + 5 + 8], np.uint8).astype(np.float32)
    return [
        h,
        w,
        w / h,
        float(img.mean()),
        float(img.std()),
        float(np.percentile(img, 5)),
        float(np.percentile(img, 95)),
        len(data),
        len(data) / (h * w),
        float(quant.mean()),
    ]


def test_hard_kermany_global_statistics_do_not_predict_the_label(tmp_path):
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    synth_kermany(tmp_path / "k", n_images=320, seed=4, size_range_px=(64, 112), difficulty=1.0)
    paths = kermany_images(tmp_path / "k")
    features = np.array([global_statistics(p) for p in paths])
    labels = np.array([p.parent.name == "PNEUMONIA" for p in paths])
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    folds = StratifiedKFold(5, shuffle=True, random_state=0)

    def cv_auc(x: np.ndarray) -> float:
        return roc_auc_score(labels, cross_val_predict(model, x, labels, cv=folds, method="predict_proba")[:, 1])

    # near chance: 320 images give chance AUCs within about +-0.07
    assert cv_auc(features) < 0.65
    # the same regression does find a shortcut when there is one: pneumonia films brighter by
    # twice the film-to-film spread of the mean (expected AUC ~0.92)
    planted = features.copy()
    planted[:, 3] += 2.0 * features[:, 3].std() * labels
    assert cv_auc(planted) > 0.85


def render_pair(seed: int, pattern: str, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    """The same film (same anatomy, nuisance and noise) without and with `pattern`."""
    normal, _ = render_chest_radiograph(np.random.default_rng(seed), 160, 192, child=True, **kwargs)
    sick, _ = render_chest_radiograph(np.random.default_rng(seed), 160, 192, child=True, pattern=pattern, **kwargs)
    return normal.astype(np.float32), sick.astype(np.float32)


@pytest.mark.parametrize("pattern", ["bacterial", "viral"])
def test_subtle_findings_are_fainter_smaller_and_vary_from_film_to_film(pattern):
    clear, subtle = [], []
    for seed in range(12):
        for out, subtlety in ((clear, 0.0), (subtle, 1.0)):
            normal, sick = render_pair(seed, pattern, subtlety=subtlety)
            diff = sick - normal
            out.append((float(diff.mean()), float((diff > 4).mean())))
    clear_signal, clear_area = np.array(clear).T
    subtle_signal, subtle_area = np.array(subtle).T
    assert (subtle_signal > 0).all()  # still there on every film
    assert np.median(subtle_signal) < 0.45 * np.median(clear_signal)
    assert np.median(subtle_area) < 0.6 * np.median(clear_area)  # partial coverage, not the whole lobe
    # each film draws its own strength: a spread of borderline and clearer cases
    assert subtle_signal.max() > 2.0 * subtle_signal.min()


def test_nuisance_is_label_free_and_varies_the_films():
    border = np.ones((160, 192), bool)
    border[16:-16, 16:-16] = False
    for seed in range(6):
        normal, sick = render_pair(seed, "bacterial", subtlety=1.0, nuisance=1.0)
        # shutters, markers, text, exposure outside the thorax: the same whatever the label
        assert np.array_equal(normal[border], sick[border])
    # and the nuisance does change the films: positioning, exposure, annotations
    plain = np.stack([render_pair(seed, "viral")[0] for seed in range(8)])
    varied = np.stack([render_pair(seed, "viral", nuisance=1.0)[0] for seed in range(8)])
    assert all(not np.array_equal(a, b) for a, b in zip(plain, varied))
    spread = lambda films: float(np.std([f.mean() for f in films]))  # noqa: E731
    assert spread(varied) > 1.2 * spread(plain)


def test_kermany_difficulty_0_keeps_the_clear_films(tmp_path):
    clear = synth_kermany(tmp_path / "clear", n_images=12, seed=5, size_range_px=(64, 96), difficulty=0.0)
    hard = synth_kermany(tmp_path / "hard", n_images=12, seed=5, size_range_px=(64, 96))
    assert clear.counts == hard.counts  # same plan: names, sizes, labels
    a, b = all_files(tmp_path / "clear" / "chest_xray"), all_files(tmp_path / "hard" / "chest_xray")
    assert a.keys() == b.keys()
    assert all(a[k] != b[k] for k in a if k.endswith(".jpeg"))  # every film is drawn harder


def test_renderer_without_subtlety_or_nuisance_is_the_former_one():
    # subtlety and nuisance draw from their own streams and only when > 0: RSNA's films and
    # difficulty-0 Kermany stay byte-identical, and with them every earlier test's data
    for pattern in ("none", "bacterial", "viral"):
        a, _ = render_chest_radiograph(np.random.default_rng(9), 96, 128, pattern=pattern, child=True)
        b, _ = render_chest_radiograph(
            np.random.default_rng(9), 96, 128, pattern=pattern, child=True, subtlety=0.0, nuisance=0.0
        )
        c, _ = render_chest_radiograph(np.random.default_rng(9), 96, 128, pattern=pattern, child=True, nuisance=0.5)
        assert np.array_equal(a, b) and not np.array_equal(a, c)
    rng = np.random.default_rng(3)
    render_chest_radiograph(rng, 64, 64, opacities=1, subtlety=1.0, nuisance=1.0)
    after_hard = rng.integers(0, 1000)
    rng = np.random.default_rng(3)
    render_chest_radiograph(rng, 64, 64, opacities=1)
    assert rng.integers(0, 1000) == after_hard  # still exactly one draw from the caller's generator


def test_project_readers_accept_the_synthetic_layouts(rsna, kermany):
    from data_prep.kermany import parse_kermany
    from data_prep.rsna import parse_rsna

    out, summary = rsna
    parsed = parse_rsna(out)
    assert len(parsed.records) == N_RSNA and not parsed.bad_files
    assert sum(len(r.boxes_xyxy) for r in parsed.records) == summary.counts["boxes"]
    out, summary = kermany
    parsed_k = parse_kermany(out)
    assert len(parsed_k.records) == N_KERMANY and not parsed_k.bad_files
    assert len(parsed_k.junk_files) == summary.counts["junk"]


# ----------------------------------------------------------------------------- the renderer


@pytest.mark.parametrize("size", [(128, 128), (96, 160), (256, 256)])
@pytest.mark.parametrize("n_opacities", [0, 1, 2, 4])
def test_render_contract(size, n_opacities):
    pixels, boxes = render_chest_radiograph(np.random.default_rng(n_opacities), *size, opacities=n_opacities)
    assert pixels.dtype == np.uint8 and pixels.shape == size
    assert boxes.dtype == np.float32 and boxes.shape == (n_opacities, 4)
    assert np.array_equal(boxes, np.round(boxes))
    h, w = size
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
    assert (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()


def test_render_consumes_exactly_one_draw_and_is_deterministic():
    rng, twin = np.random.default_rng(3), np.random.default_rng(3)
    a, boxes_a = render_chest_radiograph(rng, 96, 96, opacities=2)
    twin.integers(0, 2**63 - 1, size=5, dtype=np.int64)
    assert rng.bit_generator.state == twin.bit_generator.state
    b, boxes_b = render_chest_radiograph(np.random.default_rng(3), 96, 96, opacities=2)
    assert np.array_equal(a, b) and np.array_equal(boxes_a, boxes_b)
    c, _ = render_chest_radiograph(np.random.default_rng(4), 96, 96, opacities=2)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("seed", range(6))
def test_opacity_boxes_hold_the_brightened_region(seed):
    """Same rng state with and without opacities: same anatomy and noise, so the difference is the opacities."""
    size = 192
    with_op, boxes = render_chest_radiograph(np.random.default_rng(seed), size, size, opacities=1 + seed % 3)
    without, no_boxes = render_chest_radiograph(np.random.default_rng(seed), size, size, opacities=0)
    assert no_boxes.shape == (0, 4)
    diff = with_op.astype(np.int16) - without.astype(np.int16)
    assert diff.min() >= 0  # opacities only add density
    inside = np.zeros(diff.shape, bool)
    for x0, y0, x1, y1 in boxes.astype(int):
        box_diff = diff[y0:y1, x0:x1]
        inside[y0:y1, x0:x1] = True
        assert box_diff.mean() > 4.0, (seed, box_diff.mean())  # visibly brighter, in grey levels
    assert diff[~inside].mean() < 1.0  # and nothing much outside the boxes
    peak = np.unravel_index(np.argmax(diff), diff.shape)
    assert inside[peak]


def test_not_normal_findings_and_patterns_give_no_boxes_but_change_the_image():
    base, _ = render_chest_radiograph(np.random.default_rng(9), 128, 128)
    for kwargs in (
        {"abnormal_not_opacity": True},
        {"pattern": "bacterial", "child": True},
        {"pattern": "viral", "child": True},
    ):
        img, boxes = render_chest_radiograph(np.random.default_rng(9), 128, 128, **kwargs)
        assert boxes.shape == (0, 4)
        assert not np.array_equal(img, base)


def test_consolidation_makes_the_lungs_denser():
    # same child, same seed: bacterial pneumonia adds density inside the lungs only
    normal, _ = render_chest_radiograph(np.random.default_rng(21), 160, 200, child=True)
    sick, _ = render_chest_radiograph(np.random.default_rng(21), 160, 200, child=True, pattern="bacterial")
    diff = sick.astype(np.int16) - normal.astype(np.int16)
    assert diff.max() > 20 and diff.mean() > 0.5


def test_rendered_image_looks_like_a_chest_film():
    """Mediastinum brighter than the lungs; air outside a child's body darker than both."""
    means = {"mediastinum": [], "lungs": [], "air": []}
    for seed in range(4):
        img, _ = render_chest_radiograph(np.random.default_rng(seed), 256, 256)
        means["mediastinum"].append(img[80:150, 122:134].mean())
        means["lungs"].append(np.r_[img[80:150, 60:90].ravel(), img[80:150, 166:196].ravel()].mean())
        child, _ = render_chest_radiograph(np.random.default_rng(seed), 200, 260, child=True)
        means["air"].append(child[150:, :12].mean())
    m = {k: float(np.mean(v)) for k, v in means.items()}
    assert m["mediastinum"] > m["lungs"] + 40
    assert m["lungs"] > m["air"] + 20


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"opacities": 9}, "opacities must be in 0..8, got 9"),
        ({"pattern": "fungal"}, "pattern must be one of ('none', 'bacterial', 'viral'), got 'fungal'"),
        ({"height_px": 8}, "height_px and width_px must be >= 16, got 8x64"),
    ],
)
def test_render_rejects_bad_arguments(kwargs, message):
    args = {"height_px": 64, "width_px": 64, **kwargs}
    with pytest.raises(ValueError, match=re.escape(message)):
        render_chest_radiograph(np.random.default_rng(0), args.pop("height_px"), args.pop("width_px"), **args)


def test_summary_prints_every_count(rsna):
    _, summary = rsna
    text = str(summary)
    assert text.splitlines()[0].startswith("synthetic rsna dataset written to")
    for key, value in summary.counts.items():
        assert re.search(rf"^\s+{re.escape(key)}\s+{value}$", text, re.M), key


def test_cli_synth_commands(tmp_path):
    from typer.testing import CliRunner

    from cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["synth", "rsna", "--out", str(tmp_path / "r"), "--images", "3", "--size", "64"])
    assert result.exit_code == 0, result.output
    assert "images" in result.output and (tmp_path / "r" / "stage_2_train_labels.csv").is_file()
    result = runner.invoke(app, ["synth", "kermany", "--out", str(tmp_path / "k"), "--images", "4"])
    assert result.exit_code == 0, result.output
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "a.txt").write_text("x")
    result = runner.invoke(app, ["synth", "rsna", "--out", str(tmp_path / "x"), "--images", "2", "--size", "64"])
    assert result.exit_code == 2 and "refusing to overwrite" in result.output


def test_rsna_jpeg_quality_sets_the_file_size_and_is_checked(tmp_path):
    from data_prep.synth.rsna import DEFAULT_JPEG_QUALITY, REAL_SIZE_JPEG_QUALITY

    sizes = {}
    for quality in (DEFAULT_JPEG_QUALITY, REAL_SIZE_JPEG_QUALITY):
        out = tmp_path / f"q{quality}"
        synth_rsna(out, n_images=2, size_px=256, seed=3, jpeg_quality=quality)
        sizes[quality] = sum(p.stat().st_size for p in (out / "stage_2_train_images").glob("*.dcm"))
    assert sizes[REAL_SIZE_JPEG_QUALITY] < 0.8 * sizes[DEFAULT_JPEG_QUALITY]
    with pytest.raises(ConfigError, match="jpeg_quality"):
        synth_rsna(tmp_path / "bad", n_images=2, size_px=64, jpeg_quality=0)
