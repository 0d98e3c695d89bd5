"""`detect prepare` end to end: kind detection, exact counts, idempotence, the cache, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from cli import app
from data_prep.errors import ConfigError, DataFormatError
from data_prep.manifest import read_manifest
from data_prep.prepare import detect_dataset_kind, format_summary, prepare_dataset
from data_prep.records import RSNA_CLASSES
from data_prep.splits import patients_in_several_splits
from data_prep.synth import synth_kermany, synth_rsna
from tests.data_prep.dicom_fixtures import with_jpeg_sof_size
from tests.data_prep.test_kermany import EXPECTED_IDS, build_kermany
from tests.data_prep.test_rsna import CLASS_HEADER, LABEL_HEADER, write_rsna_folder

pytestmark = pytest.mark.filterwarnings("ignore:Invalid value for VR AS")

PREPARED_FILES = ("manifest.csv", "splits.csv", "bad_files.csv", "summary.json", "prepare.json")


def build_rsna(root: Path) -> Path:
    """20 usable images with counts known by construction, plus every kind of problem once.

    Classes: p00-p07 Normal (PA), p08-p14 No Lung Opacity (p08-p11 AP, p12-p14 PA),
    p15-p19 Lung Opacity (AP; p15-p17 one box, p18-p19 two boxes -> 7 boxes, 2 duplicate
    class rows). Ages 30+i except p05 '151' (impossible); sex F for even i, M for odd.
    Problems: 'corrupt' (labeled, not a DICOM), 'disagree' (Target=1, class Normal),
    'stray' (image without labels), 'ghost' (labels without image), a junk file.
    """
    labels, classes, images = [LABEL_HEADER], [CLASS_HEADER], {}
    for i in range(20):
        pid = f"p{i:02d}"
        if i < 8:
            cls, view, n_boxes = "Normal", "PA", 0
        elif i < 15:
            cls, view, n_boxes = "No Lung Opacity / Not Normal", "AP" if i < 12 else "PA", 0
        else:
            cls, view, n_boxes = "Lung Opacity", "AP", 1 if i < 18 else 2
        if n_boxes == 0:
            labels.append(f"{pid},,,,,0\n")
            classes.append(f"{pid},{cls}\n")
        for b in range(n_boxes):
            labels.append(f"{pid},{4 + 20 * b},8,16,40,1\n")
            classes.append(f"{pid},{cls}\n")
        images[pid] = {"view": view, "sex": "F" if i % 2 == 0 else "M", "age": "151" if i == 5 else str(30 + i)}
    labels += ["corrupt,,,,,0\n", "disagree,5,5,10,10,1\n", "ghost,,,,,0\n"]
    classes += ["corrupt,Normal\n", "disagree,Normal\n", "ghost,Normal\n"]
    images["disagree"] = {}
    images["stray"] = {}
    root = write_rsna_folder(root, "".join(labels), "".join(classes), images, test_images=["t1"])
    (root / "stage_2_train_images" / "corrupt.dcm").write_bytes(b"\0" * 50)
    (root / "stage_2_train_images" / "notes.txt").write_text("junk")
    return root


@pytest.fixture()
def rsna_root(tmp_path):
    return build_rsna(tmp_path / "rsna")


def test_detect_dataset_kind(tmp_path, rsna_root):
    assert detect_dataset_kind(rsna_root) == "rsna"
    kermany = build_kermany(tmp_path / "kermany")
    assert detect_dataset_kind(kermany) == "kermany"
    assert detect_dataset_kind(kermany / "chest_xray") == "kermany"


@pytest.mark.parametrize(
    "setup, message",
    [
        (None, "no such folder (expected an RSNA folder"),
        ("file", "not a folder (expected an RSNA folder"),
        (
            "empty",
            "unrecognised layout (expected an RSNA folder (stage_2_train_labels.csv + stage_2_train_images/) "
            "or a Kermany folder (chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}/ or those split folders directly), "
            "or images with their labels (--labels FILE, a COCO .json or a .csv; found without it as "
            "annotations.json or labels.csv in the folder))",
        ),
        ("labels-only", "looks like RSNA (stage_2_train_labels.csv found) but stage_2_train_images/ folder is missing"),
        ("images-only", "looks like RSNA (stage_2_train_images/ found) but stage_2_train_labels.csv is missing"),
    ],
)
def test_unrecognised_folders_are_one_line_errors(tmp_path, setup, message):
    target = tmp_path / "data"
    if setup == "file":
        target.write_text("x")
    elif setup is not None:
        target.mkdir()
        if setup == "labels-only":
            (target / "stage_2_train_labels.csv").write_text(LABEL_HEADER)
        if setup == "images-only":
            (target / "stage_2_train_images").mkdir()
    with pytest.raises(DataFormatError) as info:
        prepare_dataset(target)
    assert str(info.value).startswith(f"{target}: {message}")
    assert "\n" not in str(info.value)


def test_prepare_rsna_counts(rsna_root):
    result = prepare_dataset(rsna_root, workers=1)
    c = result.counts
    assert result.dataset == "rsna"
    assert result.prepared_dir == rsna_root.resolve() / "detect_prepared"
    assert (c["images"], c["patients"], c["positive_images"]) == (20, 20, 5)
    assert c["classes"] == {"Normal": 8, "No Lung Opacity / Not Normal": 7, "Lung Opacity": 5}
    assert {s: v["images"] for s, v in c["splits"].items()} == {"train": 16, "val": 2, "test": 2}
    assert c["views"] == {"AP": {"images": 9, "positive_images": 5}, "PA": {"images": 11, "positive_images": 0}}
    assert (c["boxes"], c["boxes_per_image"]) == (7, {"0": 15, "1": 3, "2": 2})
    assert c["age_years"] == {
        "median": 40.0,
        "min": 30.0,
        "max": 49.0,
        "missing": 0,
        "invalid": 1,
        "invalid_values": [151.0],
    }
    assert c["sex"] == {"F": 10, "M": 10}
    assert (c["duplicate_class_rows"], c["unlabeled_test_images"]) == (2, 1)
    assert (result.images_without_labels, result.labels_without_images) == (["stray"], ["ghost"])
    assert [b.path for b in result.bad_files] == [
        "stage_2_train_images/corrupt.dcm",
        "stage_2_train_images/disagree.dcm",
    ]
    assert result.junk_files == ["stage_2_train_images/notes.txt"]
    assert (c["bad_files"], c["junk_files"]) == (2, 1)

    # what was written is what was returned
    prepared_dir = result.prepared_dir
    assert sorted(p.name for p in prepared_dir.iterdir()) == sorted(PREPARED_FILES)
    assert json.loads((prepared_dir / "summary.json").read_text()) == c
    prepared = read_manifest(rsna_root)
    assert [r.to_row() for r in prepared.records] == [r.to_row() for r in result.records]
    assert prepared.data_root == rsna_root.resolve() and prepared.cache_size_px is None
    assert patients_in_several_splits(prepared.records) == []
    bad = pd.read_csv(prepared_dir / "bad_files.csv")
    assert bad["path"].tolist() == ["stage_2_train_images/corrupt.dcm", "stage_2_train_images/disagree.dcm"]


def test_format_summary_reports_everything(rsna_root):
    text = format_summary(prepare_dataset(rsna_root, workers=1))
    for expected in (
        "20 images, 20 patients, 5 positive (25.0%)",
        "  Lung Opacity                            5   25.0%",
        "  AP              9         5   55.6%",
        "  PA             11         0    0.0%",
        "boxes: 7 on 20 images; per image: 0 boxes: 15  1 box: 3  2 boxes: 2",
        "age (years): median 40, range 30-49; 1 impossible (151); 0 missing",
        "sex: F 10  M 10",
        "duplicate class-info rows collapsed: 2",
        "unlabeled test images (stage_2_test_images/): 1",
        "images without labels: 1\n    stray",
        "labels without images: 1\n    ghost",
        "bad files (skipped): 2",
        "stage_2_train_images/disagree.dcm: patientId disagree: Target=1 but class is 'Normal'",
        "junk files (not images, skipped): 1\n    stage_2_train_images/notes.txt",
        "manifest.csv, splits.csv, bad_files.csv, summary.json, prepare.json",
    ):
        assert expected in text, expected


def test_prepare_twice_is_byte_identical(rsna_root, tmp_path):
    first = prepare_dataset(rsna_root, out_dir=tmp_path / "out", seed=3, workers=2)
    before = {name: (first.prepared_dir / name).read_bytes() for name in PREPARED_FILES}
    second = prepare_dataset(rsna_root, out_dir=tmp_path / "out", seed=3, workers=1)
    assert {name: (second.prepared_dir / name).read_bytes() for name in PREPARED_FILES} == before
    other_seed = prepare_dataset(rsna_root, out_dir=tmp_path / "out2", seed=4, workers=1)
    assert (other_seed.prepared_dir / "manifest.csv").read_bytes() != before["manifest.csv"]


def test_cache_is_built_reused_and_drops_undecodable_images(rsna_root):
    # p03's headers (DICOM and JPEG) are intact but 64 bytes in the middle of its entropy-coded
    # data are overwritten: only a strict decode finds out.
    path = rsna_root / "stage_2_train_images" / "p03.dcm"
    data = bytearray(path.read_bytes())
    middle = (data.find(b"\xff\xda") + data.rfind(b"\xff\xd9")) // 2
    data[middle : middle + 64] = bytes(range(64))
    path.write_bytes(bytes(data))

    first = prepare_dataset(rsna_root, cache=True, image_size_px=32, workers=2)
    assert first.cache is not None
    assert (first.cache.n_images, first.cache.n_written, first.cache.n_skipped) == (20, 19, 0)
    assert [b.path for b in first.cache.bad_files] == ["stage_2_train_images/p03.dcm"]
    assert "corrupt or undecodable JPEG data" in first.cache.bad_files[0].reason
    assert "p03" not in {r.image_id for r in first.records} and first.counts["images"] == 19
    assert "stage_2_train_images/p03.dcm" in {b.path for b in first.bad_files}
    prepared = read_manifest(rsna_root)
    assert prepared.cache_size_px == 32
    for record in prepared.records:
        assert prepared.cached_image_path(record.image_id, 32).is_file()
    before = {name: (first.prepared_dir / name).read_bytes() for name in PREPARED_FILES}

    second = prepare_dataset(rsna_root, cache=True, image_size_px=32, workers=1)
    assert (second.cache.n_written, second.cache.n_skipped, len(second.cache.bad_files)) == (0, 19, 1)
    assert {name: (second.prepared_dir / name).read_bytes() for name in PREPARED_FILES} == before
    assert "cache 32px:" in format_summary(second) and "0 written, 19 already there, 1 failed" in format_summary(second)


def test_prepare_kermany_hand_built(tmp_path):
    root = build_kermany(tmp_path / "kermany")
    result = prepare_dataset(root, val_fraction=0.5, workers=1)
    c = result.counts
    assert result.dataset == "kermany"
    assert [r.image_id for r in result.records] == EXPECTED_IDS
    assert (c["images"], c["bad_files"], c["junk_files"]) == (7, 2, 5)
    assert c["classes"] == {"normal": 3, "bacterial": 3, "viral": 1}
    assert c["source_splits"] == {"train": 4, "val": 1, "test": 2}
    split_of = {r.image_id: r.split for r in result.records}
    assert {i for i, s in split_of.items() if s == "test"} == {i for i in EXPECTED_IDS if i.startswith("test/")}
    assert split_of["val/PNEUMONIA/person1946_bacteria_4874"] == "val"
    # train patients: 0115, NORMAL2-0927, person1 (two images) -> round(0.5 * 3) = 2 carved into val
    assert split_of["train/PNEUMONIA/person1_bacteria_1"] == split_of["train/PNEUMONIA/person1_virus_6"]
    assert c["splits"]["val"]["patients"] == 3 and c["splits"]["train"]["patients"] == 1
    assert "junk files (not images, skipped): 5" in format_summary(result)
    assert read_manifest(root).dataset == "kermany"


def test_invalid_options_are_config_errors(rsna_root):
    with pytest.raises(ConfigError, match="val_fraction: 1.5 is not in"):
        prepare_dataset(rsna_root, val_fraction=1.5)
    with pytest.raises(ConfigError, match="image_size_px: 0 must be a positive"):
        prepare_dataset(rsna_root, cache=True, image_size_px=0)
    with pytest.raises(ConfigError, match="workers: 0 must be at least 1"):
        prepare_dataset(rsna_root, workers=0)


def test_cli_prepare(rsna_root, tmp_path):
    runner = CliRunner()
    ok = runner.invoke(app, ["prepare", str(rsna_root), "--out", str(tmp_path / "out"), "--workers", "1"])
    assert ok.exit_code == 0, ok.output
    assert "20 images, 20 patients, 5 positive" in ok.output
    assert (tmp_path / "out" / "manifest.csv").is_file()
    missing = runner.invoke(app, ["prepare", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2
    assert missing.output.startswith(f"error: {tmp_path / 'nowhere'}: no such folder")
    assert len(missing.output.strip().splitlines()) == 1


# --- synthesized data -------------------------------------------------------------------------


def test_prepare_synthesized_rsna(tmp_path):
    root = tmp_path / "rsna"
    counts = synth_rsna(root, n_images=50, n_test_images=2, size_px=128, seed=11).counts

    result = prepare_dataset(root, cache=True, image_size_px=64, workers=2)
    c = result.counts
    assert result.bad_files == [] and result.junk_files == []
    assert (c["images"], c["patients"], c["unlabeled_test_images"]) == (50, 50, 2)
    assert c["classes"] == {name: counts[name] for name in RSNA_CLASSES}
    assert c["positive_images"] == counts["Lung Opacity"]
    assert c["boxes"] == counts["boxes"]
    assert c["duplicate_class_rows"] == counts["class_info_duplicate_rows"]
    assert c["views"] == {v: {"images": counts[v], "positive_images": counts[f"{v}_positive"]} for v in ("AP", "PA")}
    assert c["age_years"]["invalid"] == counts["age_quirks"]
    assert {s: v["images"] for s, v in c["splits"].items()} == {"train": 40, "val": 5, "test": 5}
    assert (result.cache.n_written, result.cache.bad_files) == (50, [])
    before = {name: (result.prepared_dir / name).read_bytes() for name in PREPARED_FILES}
    again = prepare_dataset(root, cache=True, image_size_px=64, workers=1)
    assert (again.cache.n_written, again.cache.n_skipped) == (0, 50)
    assert {name: (again.prepared_dir / name).read_bytes() for name in PREPARED_FILES} == before


def test_prepare_synthesized_kermany(tmp_path):
    root = tmp_path / "kermany"
    counts = synth_kermany(root, n_images=60, seed=2, size_range_px=(96, 160)).counts

    result = prepare_dataset(root, cache=True, image_size_px=64, workers=2)
    c = result.counts
    assert result.bad_files == [] and len(result.junk_files) == counts["junk"]
    assert (c["images"], c["patients"]) == (counts["images"], counts["patients"])
    assert c["source_splits"] == {s: counts[f"{s}/images"] for s in ("train", "val", "test")}
    assert c["classes"] == {"normal": counts["NORMAL"], "bacterial": counts["bacteria"], "viral": counts["virus"]}
    # test = the test/ folder; val = the val/ folder + round(0.1 * train patients) carved from train
    assert c["splits"]["test"]["images"] == counts["test/images"]
    assert c["splits"]["test"]["patients"] == counts["test/patients"]
    carved = round(0.1 * counts["train/patients"])
    assert c["splits"]["val"]["patients"] == counts["val/patients"] + carved
    assert c["splits"]["train"]["patients"] == counts["train/patients"] - carved
    assert patients_in_several_splits(result.records) == []
    assert (result.cache.n_written, result.cache.bad_files) == (60, [])
    prepared = read_manifest(root)
    for record in prepared.records:
        assert prepared.cached_image_path(record.image_id, 64).is_file()


def test_non_square_pixel_spacing_survives_prepare(tmp_path):
    # DICOM header (0.139 row \ 0.143 column) -> ImageRecord -> manifest.csv -> read back, unchanged.
    labels = LABEL_HEADER + "wide,,,,,0\nsquare,,,,,0\n"
    classes = CLASS_HEADER + "wide,Normal\nsquare,Normal\n"
    root = write_rsna_folder(
        tmp_path / "rsna",
        labels,
        classes,
        {
            "wide": {"pixel_spacing": (0.139, 0.143)},
            "square": {"pixel_spacing": (0.168, 0.168)},
        },
    )
    prepare_dataset(root, workers=1)
    manifest = pd.read_csv(root / "detect_prepared" / "manifest.csv", dtype=str).set_index("image_id")
    assert manifest.loc["wide", "pixel_spacing_mm"] == "0.139\\0.143"
    by_id = {r.image_id: r for r in read_manifest(root).records}
    assert by_id["wide"].pixel_spacing_mm == (0.139, 0.143)
    assert by_id["square"].pixel_spacing_mm == (0.168, 0.168)


def test_header_scan_proves_pixel_data_complete_and_within_limits(rsna_root):
    """Without --cache, prepare reads headers only, and still reports
    a DICOM cut inside its pixel data, a SOF claiming 60000 x 60000 and a 60000 x 60000 header."""
    images = rsna_root / "stage_2_train_images"
    cut = images / "p01.dcm"
    cut.write_bytes(cut.read_bytes()[:-300])
    with_jpeg_sof_size(images / "p02.dcm", 60000, 60000)
    with_jpeg_sof_size(images / "p04.dcm", 60000, 60000, Rows=60000, Columns=60000)
    result = prepare_dataset(rsna_root, workers=1)
    reasons = {b.path: b.reason for b in result.bad_files}
    assert reasons["stage_2_train_images/p01.dcm"].startswith("truncated file (")
    assert reasons["stage_2_train_images/p02.dcm"].startswith("JPEG frame: image size 60000x60000")
    assert reasons["stage_2_train_images/p04.dcm"].startswith("image size 60000x60000 (3600.0 megapixels) exceeds")
    assert result.counts["images"] == 17 and result.counts["image_size_px"]["height_max"] < 60000


def test_max_megapixels_on_the_command_line(rsna_root, tmp_path):
    runner = CliRunner()
    small = runner.invoke(
        app, ["prepare", str(rsna_root), "--out", str(tmp_path / "o"), "--workers", "1", "--max-megapixels", "0.0001"]
    )
    assert small.exit_code == 0, small.output
    assert "exceeds the limit of 0.0001 megapixels" in small.output
    assert "  0 images, 0 patients" in small.output and "bad files (skipped): 22" in small.output
    bad = runner.invoke(app, ["prepare", str(rsna_root), "--max-megapixels", "0"])
    assert (
        bad.exit_code == 2
        and bad.output.strip() == "error: --max-megapixels: 0.0 must be a positive number of megapixels"
    )
    with pytest.raises(ConfigError, match="max pixels: 0 must be a positive number of pixels"):
        prepare_dataset(rsna_root, max_pixels=0)


def test_bad_file_names_print_on_one_line(rsna_root):
    strange = rsna_root / "stage_2_train_images" / "p03.dcm"
    strange.write_bytes(b"not a DICOM")
    result = prepare_dataset(rsna_root, workers=1)
    result.bad_files[0] = type(result.bad_files[0])(path="two\nlines.dcm", reason="bad\rreason")
    text = format_summary(result)
    assert "    two\\nlines.dcm: bad\\rreason" in text.splitlines()
