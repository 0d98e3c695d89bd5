"""Kermany parser: file-name parsing, a hand-built folder with junk and corrupt files, synthesized data."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from data_prep.errors import DataFormatError, ImageReadError
from data_prep.images import read_image
from data_prep.kermany import parse_kermany, parse_kermany_filename
from data_prep.records import BadFile
from data_prep.synth import synth_kermany


@pytest.mark.parametrize(
    "relative_path, expected",
    [
        ("train/PNEUMONIA/person1_bacteria_1.jpeg", ("PNEUMONIA", "bacterial", "person1")),
        ("train/PNEUMONIA/person1_virus_6.jpeg", ("PNEUMONIA", "viral", "person1")),
        ("val/PNEUMONIA/person1946_bacteria_4874.jpeg", ("PNEUMONIA", "bacterial", "person1946")),
        ("test/PNEUMONIA/person1_virus_11.jpeg", ("PNEUMONIA", "viral", "test/person1")),
        ("train/NORMAL/IM-0115-0001.jpeg", ("NORMAL", "normal", "0115")),
        ("train/NORMAL/NORMAL2-IM-0927-0001.jpeg", ("NORMAL", "normal", "NORMAL2-0927")),
        ("train/NORMAL/NORMAL2-IM-1345-0001-0002.jpeg", ("NORMAL", "normal", "NORMAL2-1345")),
        ("test/NORMAL/IM-0001-0001.jpeg", ("NORMAL", "normal", "test/0001")),
        ("chest_xray/val/NORMAL/NORMAL2-IM-1427-0001.jpeg", ("NORMAL", "normal", "NORMAL2-1427")),
    ],
)
def test_parse_kermany_filename(relative_path, expected):
    assert parse_kermany_filename(relative_path) == expected


@pytest.mark.parametrize(
    "relative_path, reason",
    [
        (
            "train/PNEUMONIA/IM-0115-0001.jpeg",
            "PNEUMONIA file name not of the form person<N>_bacteria_<M> or person<N>_virus_<M>",
        ),
        (
            "train/NORMAL/person1_bacteria_1.jpeg",
            "NORMAL file name not of the form IM-<NNNN>-<MMMM> or NORMAL2-IM-<NNNN>-<MMMM>",
        ),
        ("train/COVID/x.jpeg", "expected <train|val|test>/<NORMAL|PNEUMONIA>/<file>"),
        ("person1_bacteria_1.jpeg", "expected <train|val|test>/<NORMAL|PNEUMONIA>/<file>"),
    ],
)
def test_parse_kermany_filename_rejects(relative_path, reason):
    with pytest.raises(DataFormatError) as info:
        parse_kermany_filename(relative_path)
    assert str(info.value) == f"{relative_path}: {reason}"


def write_jpeg(path: Path, height: int, width: int, channels: int = 1, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    shape = (height, width) if channels == 1 else (height, width, channels)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), rng.integers(0, 256, size=shape, dtype=np.uint8))
    return path


def build_kermany(root: Path) -> Path:
    """7 good images (one RGB), 2 bad (corrupt, unparsable name), 5 junk files."""
    base = root / "chest_xray"
    write_jpeg(base / "train/NORMAL/IM-0115-0001.jpeg", 100, 80)
    write_jpeg(base / "train/NORMAL/NORMAL2-IM-0927-0001.jpeg", 90, 120, channels=3)
    write_jpeg(base / "train/PNEUMONIA/person1_bacteria_1.jpeg", 70, 110)
    write_jpeg(base / "train/PNEUMONIA/person1_virus_6.jpeg", 64, 64)
    write_jpeg(base / "val/PNEUMONIA/person1946_bacteria_4874.jpeg", 64, 96)
    write_jpeg(base / "test/PNEUMONIA/person1_bacteria_2.jpeg", 96, 64)
    write_jpeg(base / "test/NORMAL/IM-0001-0001.jpeg", 72, 72)
    (base / "train/PNEUMONIA/person2_bacteria_3.jpeg").write_bytes(b"\xff\xd8\xff\xe0 truncated garbage")
    write_jpeg(base / "train/PNEUMONIA/scan_0001.jpeg", 64, 64)
    for junk in (
        ".DS_Store",
        "train/.DS_Store",
        "train/NORMAL/Thumbs.db",
        "train/PNEUMONIA/._person1_bacteria_1.jpeg",
        "train/notes.txt",
    ):
        (base / junk).write_bytes(b"junk")
    (base / "val/NORMAL").mkdir(parents=True)  # an empty label folder is fine
    return root


EXPECTED_IDS = [
    "test/NORMAL/IM-0001-0001",
    "test/PNEUMONIA/person1_bacteria_2",
    "train/NORMAL/IM-0115-0001",
    "train/NORMAL/NORMAL2-IM-0927-0001",
    "train/PNEUMONIA/person1_bacteria_1",
    "train/PNEUMONIA/person1_virus_6",
    "val/PNEUMONIA/person1946_bacteria_4874",
]


def test_parse_hand_built_folder(tmp_path):
    root = build_kermany(tmp_path / "kermany")
    result = parse_kermany(root)
    assert [r.image_id for r in result.records] == EXPECTED_IDS
    by_id = {r.image_id: r for r in result.records}

    rgb = by_id["train/NORMAL/NORMAL2-IM-0927-0001"]
    assert (rgb.height, rgb.width, rgb.patient_id, rgb.subtype, rgb.target) == (90, 120, "NORMAL2-0927", "normal", 0)
    viral = by_id["train/PNEUMONIA/person1_virus_6"]
    assert (viral.patient_id, viral.subtype, viral.target, viral.source_split) == ("person1", "viral", 1, "train")
    assert viral.path == "chest_xray/train/PNEUMONIA/person1_virus_6.jpeg"
    assert by_id["test/PNEUMONIA/person1_bacteria_2"].patient_id == "test/person1"  # numbering restarts in test/
    assert by_id["test/NORMAL/IM-0001-0001"].patient_id == "test/0001"
    for record in result.records:
        assert record.dataset == "kermany" and record.has_box_labels is False
        assert record.boxes_xyxy.shape == (0, 4) and record.rsna_class is None and record.split is None
        assert record.source_split == record.image_id.split("/")[0]
        assert (tmp_path / "kermany" / record.path).is_file()

    assert [b.path for b in result.bad_files] == [
        "chest_xray/train/PNEUMONIA/person2_bacteria_3.jpeg",
        "chest_xray/train/PNEUMONIA/scan_0001.jpeg",
    ]
    # the reason is read_image's own, passed through
    with pytest.raises(ImageReadError) as info:
        read_image(root / "chest_xray/train/PNEUMONIA/person2_bacteria_3.jpeg")
    assert result.bad_files[0].reason == info.value.reason
    assert result.bad_files[1] == BadFile(
        "chest_xray/train/PNEUMONIA/scan_0001.jpeg",
        "PNEUMONIA file name not of the form person<N>_bacteria_<M> or person<N>_virus_<M>",
    )
    assert result.junk_files == [
        "chest_xray/.DS_Store",
        "chest_xray/train/.DS_Store",
        "chest_xray/train/NORMAL/Thumbs.db",
        "chest_xray/train/PNEUMONIA/._person1_bacteria_1.jpeg",
        "chest_xray/train/notes.txt",
    ]


def test_chest_xray_folder_itself_and_workers_give_the_same_records(tmp_path):
    root = build_kermany(tmp_path / "kermany")
    outer = parse_kermany(root)
    inner = parse_kermany(root / "chest_xray", workers=2)
    assert [r.image_id for r in inner.records] == EXPECTED_IDS
    assert [r.path for r in inner.records] == [r.path.removeprefix("chest_xray/") for r in outer.records]
    assert [(r.patient_id, r.height, r.width) for r in inner.records] == [
        (r.patient_id, r.height, r.width) for r in outer.records
    ]
    assert len(inner.bad_files) == 2 and len(inner.junk_files) == 5


def test_same_stem_twice_is_reported(tmp_path):
    base = tmp_path / "chest_xray"
    write_jpeg(base / "train/NORMAL/IM-0001-0001.jpeg", 64, 64)
    write_jpeg(base / "train/NORMAL/IM-0001-0001.png", 64, 64)
    result = parse_kermany(tmp_path)
    assert [r.path for r in result.records] == ["chest_xray/train/NORMAL/IM-0001-0001.jpeg"]
    assert result.bad_files == [
        BadFile(
            "chest_xray/train/NORMAL/IM-0001-0001.png", "same image id as chest_xray/train/NORMAL/IM-0001-0001.jpeg"
        )
    ]


def test_no_layout_is_a_clear_error(tmp_path):
    (tmp_path / "chest_xray" / "train").mkdir(parents=True)
    with pytest.raises(DataFormatError) as info:
        parse_kermany(tmp_path)
    assert str(info.value) == (
        f"{tmp_path}: no Kermany layout: expected chest_xray/{{train,val,test}}/{{NORMAL,PNEUMONIA}}/*.jpeg "
        "(or the train/val/test folders directly)"
    )


# --- synthesized data -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synth_kermany_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth_kermany")
    summary = synth_kermany(root, n_images=48, seed=1, size_range_px=(96, 160))
    return root, summary


def test_parse_synthesized_kermany_counts(synth_kermany_root):
    root, summary = synth_kermany_root
    counts = summary.counts
    result = parse_kermany(root, workers=2)
    assert result.bad_files == []
    assert len(result.records) == counts["images"] == 48
    assert len(result.junk_files) == counts["junk"]
    assert all(Path(j).name == ".DS_Store" for j in result.junk_files)
    assert len({r.patient_id for r in result.records}) == counts["patients"]
    for split in ("train", "val", "test"):
        in_split = [r for r in result.records if r.source_split == split]
        assert len(in_split) == counts[f"{split}/images"]
        assert sum(r.target == 0 for r in in_split) == counts[f"{split}/NORMAL"]
        assert sum(r.subtype == "bacterial" for r in in_split) == counts[f"{split}/bacteria"]
        assert sum(r.subtype == "viral" for r in in_split) == counts[f"{split}/virus"]
        assert len({r.patient_id for r in in_split}) == counts[f"{split}/patients"]
    rgb = 0
    for record in result.records:
        pixels = cv2.imread(str(root / record.path), cv2.IMREAD_UNCHANGED)
        rgb += pixels.ndim == 3
        assert (record.height, record.width) == pixels.shape[:2]
        assert 96 <= max(pixels.shape[:2]) <= 160
        assert record.patient_id.startswith("test/") == (record.source_split == "test")
    assert rgb == counts["rgb"]  # 3-channel files load like the rest
