"""detect.data.dataset: the sample contract, letterbox box scaling, the cache, prepare_image."""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from data_prep.errors import DataFormatError, ImageReadError
from data_prep.geometry import letterbox_resize
from data_prep.manifest import PreparedDataset
from data_prep.records import BadFile, ImageRecord
from detect.config import AugmentConfig, Config, DataConfig
from detect.data.dataset import ManifestDataset, build_datasets, collate_detection
from detect.data.preprocess import Clahe, prepare_image
from detect.data.transforms import build_train_transforms

SIZE_PX = 64


def _write_png(path: Path, pixels: np.ndarray) -> None:
    """PNG bytes whatever the extension (a '.jpeg' here too): lossless, so tests compare exact pixels."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, encoded = cv2.imencode(".png", pixels)
    assert ok
    path.write_bytes(encoded.tobytes())


def _gradient(height: int, width: int) -> np.ndarray:
    """A non-constant image (so resizing and CLAHE are visible), never black."""
    rows = np.linspace(40, 220, height, dtype=np.float32)[:, None]
    cols = np.linspace(0, 30, width, dtype=np.float32)[None, :]
    return (rows + cols).astype(np.uint8)


def rsna_record(image_id="rsna-1", boxes=((20.0, 40.0, 100.0, 160.0),), rsna_class="Lung Opacity", split="train"):
    return ImageRecord(
        image_id=image_id,
        dataset="rsna",
        path=f"stage_2_train_images/{image_id}.png",
        patient_id=image_id,
        target=int(rsna_class == "Lung Opacity"),
        has_box_labels=True,
        boxes_xyxy=np.array(boxes, dtype=np.float32),
        rsna_class=rsna_class,
        split=split,
        height=200,
        width=200,
    )


def kermany_record(image_id="train/PNEUMONIA/person1_virus_6", subtype="viral", split="train"):
    return ImageRecord(
        image_id=image_id,
        dataset="kermany",
        path=f"chest_xray/{image_id}.jpeg",
        patient_id="person1",
        target=int(subtype != "normal"),
        has_box_labels=False,
        subtype=subtype,
        split=split,
        height=120,
        width=200,
    )


@pytest.fixture
def data_root(tmp_path) -> Path:
    root = tmp_path / "data"
    _write_png(root / "stage_2_train_images" / "rsna-1.png", _gradient(200, 200))
    _write_png(root / "chest_xray" / "train" / "PNEUMONIA" / "person1_virus_6.jpeg", _gradient(120, 200))
    return root


def png_loader(path: Path):
    """Reads the test files whatever their extension (the .jpeg above is a PNG): (uint8 [H, W], None)."""
    pixels = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if pixels is None:
        raise ImageReadError(path, "cannot decode")
    return pixels, None


def failing_loader(path: Path):
    raise AssertionError(f"the original {path} was read although its cached PNG exists")


class FakeCache:
    """What ManifestDataset needs of a PreparedDataset: cached_image_path(image_id, size_px)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def cached_image_path(self, image_id: str, size_px: int) -> Path:
        return self.folder / str(size_px) / (image_id.replace("/", "__") + ".png")


# ---------------------------------------------------------------------------- the sample contract


def test_sample_contract_for_an_rsna_and_a_kermany_image(data_root):
    records = [rsna_record(), kermany_record()]
    dataset = ManifestDataset(records, data_root, SIZE_PX, loader=png_loader)
    assert len(dataset) == 2

    image, target = dataset[0]
    assert image.dtype == torch.float32 and image.shape == (3, SIZE_PX, SIZE_PX)
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    assert torch.equal(image[0], image[1]) and torch.equal(image[0], image[2])
    assert set(target) == {
        "boxes",
        "labels",
        "has_box_labels",
        "rsna_class",
        "pneumonia",
        "subtype",
        "image_index",
        "scale",
        "orig_size",
    }
    # 200 x 200 -> 64 x 64: scale 0.32, [20, 40, 100, 160] -> [6.4, 12.8, 32, 51.2]
    torch.testing.assert_close(target["boxes"], torch.tensor([[6.4, 12.8, 32.0, 51.2]]))
    assert target["boxes"].dtype == torch.float32
    assert target["labels"].tolist() == [1] and target["labels"].dtype == torch.int64
    assert (
        target["has_box_labels"].dtype == torch.bool
        and target["has_box_labels"].shape == ()
        and bool(target["has_box_labels"])
    )
    assert (int(target["rsna_class"]), int(target["pneumonia"]), int(target["subtype"])) == (2, 1, -1)
    assert int(target["image_index"]) == 0 and target["image_index"].dtype == torch.int64
    assert target["scale"].dtype == torch.float32 and float(target["scale"]) == pytest.approx(0.32)

    image, target = dataset[1]
    assert target["boxes"].shape == (0, 4) and target["boxes"].dtype == torch.float32
    assert target["labels"].shape == (0,) and target["labels"].dtype == torch.int64
    assert not bool(target["has_box_labels"])
    assert (int(target["rsna_class"]), int(target["pneumonia"]), int(target["subtype"])) == (-1, 1, 2)
    assert int(target["image_index"]) == 1
    # 120 x 200 -> scale 0.32: the image fills 38 rows (round(38.4)), black padding below
    assert float(target["scale"]) == pytest.approx(0.32)
    assert float(image[:, 38:].abs().max()) == 0.0 and float(image[:, :38].min()) > 0.0
    expected, _ = letterbox_resize(_gradient(120, 200), SIZE_PX)
    torch.testing.assert_close(image[0], torch.from_numpy(expected).float() / 255)


def test_default_loader_reads_the_original_file(data_root):
    image, target = ManifestDataset([rsna_record()], data_root, SIZE_PX)[0]
    expected, _ = letterbox_resize(_gradient(200, 200), SIZE_PX)
    torch.testing.assert_close(image[0], torch.from_numpy(expected).float() / 255)


def test_collate_and_a_dataloader_keep_lists(data_root):
    dataset = ManifestDataset([rsna_record(), kermany_record()], data_root, SIZE_PX, loader=png_loader)
    images, targets = next(iter(DataLoader(dataset, batch_size=2, collate_fn=collate_detection)))
    assert isinstance(images, list) and isinstance(targets, list) and len(images) == len(targets) == 2
    assert [int(t["image_index"]) for t in targets] == [0, 1]
    assert images[0].shape == (3, SIZE_PX, SIZE_PX)


def test_augmentation_moves_the_boxes_in_input_pixels(data_root):
    flip = build_train_transforms(AugmentConfig(hflip_prob=1.0, affine_prob=0.0, brightness=0.0, contrast=0.0))
    plain = ManifestDataset([rsna_record()], data_root, SIZE_PX, loader=png_loader)
    flipped = ManifestDataset([rsna_record()], data_root, SIZE_PX, transforms=flip, loader=png_loader)
    image, target = flipped[0]
    torch.testing.assert_close(target["boxes"], torch.tensor([[64 - 32.0, 12.8, 64 - 6.4, 51.2]]))
    torch.testing.assert_close(image, plain[0][0].flip(-1))
    assert float(target["scale"]) == pytest.approx(0.32)


def test_clahe_is_applied_to_the_content_only(data_root):
    plain = ManifestDataset([kermany_record()], data_root, SIZE_PX, loader=png_loader)[0][0]
    equalised = ManifestDataset([kermany_record()], data_root, SIZE_PX, clahe=True, loader=png_loader)[0][0]
    assert not torch.equal(plain[:, :38], equalised[:, :38])
    assert float(equalised[:, 38:].abs().max()) == 0.0
    tensor, scale = prepare_image(_gradient(120, 200), SIZE_PX, clahe=Clahe())
    torch.testing.assert_close(tensor, equalised)
    assert scale == pytest.approx(0.32)


# ---------------------------------------------------------------------------- the cache


def test_cached_png_is_used_and_the_original_never_read(tmp_path):
    cache = FakeCache(tmp_path / "cache")
    record = kermany_record()
    cached = np.full((SIZE_PX, SIZE_PX), 77, dtype=np.uint8)
    _write_png(cache.cached_image_path(record.image_id, SIZE_PX), cached)
    dataset = ManifestDataset([record], tmp_path / "no-originals-here", SIZE_PX, cache=cache, loader=failing_loader)
    image, target = dataset[0]
    assert torch.all(image == 77 / 255)
    assert float(target["scale"]) == pytest.approx(0.32)  # from the record's 120 x 200


def test_missing_cached_png_falls_back_to_the_original(data_root, tmp_path):
    dataset = ManifestDataset(
        [rsna_record()], data_root, SIZE_PX, cache=FakeCache(tmp_path / "empty-cache"), loader=png_loader
    )
    expected, _ = letterbox_resize(_gradient(200, 200), SIZE_PX)
    torch.testing.assert_close(dataset[0][0][0], torch.from_numpy(expected).float() / 255)


def test_cached_png_of_the_wrong_size_is_an_error_naming_it(tmp_path):
    cache = FakeCache(tmp_path / "cache")
    record = rsna_record()
    path = cache.cached_image_path(record.image_id, SIZE_PX)
    _write_png(path, np.zeros((32, 32), dtype=np.uint8))
    with pytest.raises(ImageReadError, match=f"{path}: cached image is uint8 \\(32, 32\\)"):
        ManifestDataset([record], tmp_path, SIZE_PX, cache=cache, loader=failing_loader)[0]


def test_original_of_another_size_than_the_manifest_is_an_error(data_root):
    record = dataclasses.replace(rsna_record(), height=1024, width=1024)
    with pytest.raises(DataFormatError, match="decoded size 200x200 differs from the manifest's 1024x1024"):
        ManifestDataset([record], data_root, SIZE_PX, loader=png_loader)[0]


def test_unreadable_original_names_the_file(tmp_path):
    with pytest.raises(ImageReadError, match="rsna-1.png"):
        ManifestDataset([rsna_record()], tmp_path, SIZE_PX)[0]


# ---------------------------------------------------------------------------- build_datasets


def _prepared(dataset, root: Path, prepared_dir: Path, records) -> PreparedDataset:
    return PreparedDataset(dataset=dataset, data_root=root, records=records, prepared_dir=prepared_dir)


def test_build_datasets_splits_and_combines_prepared_datasets(tmp_path):
    rsna_root, kermany_root = tmp_path / "rsna", tmp_path / "kermany"
    rsna_records = [rsna_record(f"r{i}", split=split) for i, split in enumerate(["train", "train", "val", "test"])]
    kermany_records = [
        kermany_record(f"train/NORMAL/k{i}", subtype="normal", split=split) for i, split in enumerate(["train", "val"])
    ]
    for r in rsna_records:
        _write_png(rsna_root / r.path, _gradient(200, 200))
    for r in kermany_records:
        _write_png(kermany_root / r.path, _gradient(120, 200))
    prepared = [
        _prepared("rsna", rsna_root, tmp_path / "p-rsna", rsna_records),
        _prepared("kermany", kermany_root, tmp_path / "p-kermany", kermany_records),
    ]
    cfg = Config(data=DataConfig(image_size_px=SIZE_PX, use_cache=False))
    datasets = build_datasets(prepared, cfg)
    assert set(datasets) == {"train", "val", "test"}
    assert [r.image_id for r in datasets["train"].records] == ["r0", "r1", "train/NORMAL/k0"]
    assert [r.image_id for r in datasets["val"].records] == ["r2", "train/NORMAL/k1"]
    assert [r.image_id for r in datasets["test"].records] == ["r3"]
    assert datasets["val"].image_path(1) == kermany_root / kermany_records[1].path
    image, target = datasets["val"][1]  # read from the Kermany root
    assert image.shape == (3, SIZE_PX, SIZE_PX) and int(target["subtype"]) == 0 and int(target["image_index"]) == 1
    assert "RandomHorizontalFlip" in repr(datasets["train"].transforms)
    assert "RandomHorizontalFlip" not in repr(datasets["val"].transforms)
    # DataLoader workers started with 'spawn' receive the dataset pickled
    clone = pickle.loads(pickle.dumps(datasets["val"]))
    torch.testing.assert_close(clone[1][0], image)


def test_build_datasets_reads_the_cache_and_leaves_out_what_it_could_not_decode(tmp_path):
    records = [rsna_record(f"r{i}") for i in range(3)]
    prepared = _prepared("rsna", tmp_path / "originals-gone", tmp_path / "prepared", records)
    for r in records[:2]:
        _write_png(prepared.cached_image_path(r.image_id, SIZE_PX), np.full((SIZE_PX, SIZE_PX), 9, np.uint8))
    cfg = Config(
        data=DataConfig(
            image_size_px=SIZE_PX, use_cache=True, augment=AugmentConfig(affine_prob=0.0, brightness=0.0, contrast=0.0)
        )
    )
    with pytest.warns(UserWarning, match=r"1 train images have no cached PNG at 64 px .* stage_2_train_images/r2.png"):
        datasets = build_datasets([prepared], cfg)
    train = datasets["train"]
    assert [r.image_id for r in train.records] == ["r0", "r1"]
    assert torch.all(train[1][0] == 9 / 255)


def test_unreadable_samples_are_skipped_and_listed_in_the_batch(data_root):
    """skip_unreadable (training): a missing or corrupt file is a BadFile item, left out of the
    collated batch and listed in its `skipped`, through worker processes and pinning alike."""
    missing = rsna_record(image_id="gone")
    dataset = ManifestDataset([rsna_record(), missing, kermany_record()], data_root, SIZE_PX, skip_unreadable=True)
    assert dataset[1] == BadFile(path=str(data_root / missing.path), reason="cannot open: No such file or directory")
    with pytest.raises(ImageReadError, match="cannot open"):
        ManifestDataset([missing], data_root, SIZE_PX)[0]  # the default: the reader's error

    batch = next(iter(DataLoader(dataset, batch_size=3, collate_fn=collate_detection, num_workers=1)))
    images, targets = batch
    assert [int(t["image_index"]) for t in targets] == [0, 2] and len(images) == 2
    assert batch.skipped == (dataset[1],)
    assert pickle.loads(pickle.dumps(batch)).skipped == batch.skipped
    empty = collate_detection([dataset[1]])
    assert empty == ([], []) and empty.skipped == (dataset[1],)
