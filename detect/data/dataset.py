"""Manifest records -> (image, target) samples for the detector; collate; the split datasets.

The sample contract (torchvision's detection contract plus the image-level labels); every
producer and consumer of samples in this project keeps it:

    image   float32 tensor [3, S, S] in [0, 1]: the grey image letterboxed to S = data.image_size_px
            (data_prep.geometry.letterbox_resize: scale = S / max(H, W), placed top-left, black
            padding right / bottom), repeated to 3 channels; the model normalises internally.
    target  dict with fixed keys:
        boxes           float32 [N, 4] xyxy in the S x S input's pixels; (0, 4) when none
        labels          int64 [N], 1 = opacity
        has_box_labels  bool tensor []: False for Kermany, whose images carry no boxes at all;
                        the detector's losses ignore such an image (see detect.models)
        rsna_class      int64 []: index in RSNA_CLASSES, -1 if not an RSNA image
        pneumonia       int64 []: 1 = pneumonia (RSNA Lung Opacity / Kermany PNEUMONIA), 0 = not
        subtype         int64 []: index in KERMANY_SUBTYPES, -1 if not a Kermany image
        image_index     int64 []: index of the image in the dataset's `records`
        scale           float32 []: the letterbox scale; original pixels = input pixels / scale
                        (for boxes: before augmentation, which moves them within the input)
        orig_size       int64 [2]: (height, width) of the ORIGINAL image in pixels; predictions
                        are mapped back and clipped to it (detect.inference.predictor)

One image's way: the cached PNG (already letterboxed to S by `detect prepare --cache`) when it
exists, else the original file (DICOM / PNG / JPEG via data_prep.images.read_any_image_sized:
JPEG data decoded at a 1/2, 1/4 or 1/8 DCT scale when S allows, as the cache and inference
decode it, so every path gives the model the same pixels) read and letterboxed here; optional CLAHE on the uint8 grey pixels; the augmentation
(detect.data.transforms) on image + boxes together; conversion to float [3, S, S]. Without
augmentation this is detect.data.preprocess.prepare_image, the step inference uses.

A file that cannot be read raises its reader's DetectError; with `skip_unreadable` (training)
the item is a BadFile instead, and `collate_detection` leaves it out of the batch and lists it
in `DetectionBatch.skipped`, so the loop can record it (RUN_DIR/bad_files.csv) and go on.
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision import tv_tensors

from data_prep.cache import load_cached_image
from data_prep.errors import ConfigError, DataFormatError, DetectError, ImageReadError
from data_prep.geometry import letterbox_resize, letterbox_scale, scale_boxes
from data_prep.images import SizedImage, read_any_image_sized
from data_prep.manifest import PreparedDataset
from data_prep.records import KERMANY_SUBTYPES, RSNA_CLASSES, SPLITS, BadFile, DicomHeader, ImageRecord
from data_prep.tasks import DETECTION_TASK, TASK_DATASET, records_for_task
from detect.config import Config
from detect.data.preprocess import Clahe, clahe_from_config, content_size, pixels_to_tensor
from detect.data.transforms import build_eval_transforms, build_train_transforms

OPACITY_LABEL = 1  # the detector's only foreground class (0 is torchvision's background)

# path -> (uint8 [H, W], header), or a SizedImage (decoded for the input size, with its original size)
ImageLoader = Callable[[Path], "tuple[np.ndarray, DicomHeader | None] | SizedImage"]
CacheLoader = Callable[[Path], np.ndarray]  # path -> uint8 [S, S]


class ImageCache(Protocol):
    """Where a letterboxed copy of an image lives: data_prep.manifest.PreparedDataset has this."""

    def cached_image_path(self, image_id: str, size_px: int) -> Path: ...


# ------------------------------------------------------------------------------ labels


def class_indices(record: ImageRecord) -> tuple[int, int]:
    """(index in RSNA_CLASSES or -1, index in KERMANY_SUBTYPES or -1) of a record."""
    rsna = RSNA_CLASSES.index(record.rsna_class) if record.rsna_class in RSNA_CLASSES else -1
    subtype = KERMANY_SUBTYPES.index(record.subtype) if record.subtype in KERMANY_SUBTYPES else -1
    return rsna, subtype


# ---------------------------------------------------------------------------------- the dataset


def _per_record(value: Any, n: int, name: str) -> list[Any]:
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"{name}: got {len(value)} entries for {n} records")
        return list(value)
    return [value] * n


class ManifestDataset(Dataset):
    """Map-style dataset over ImageRecords; item i -> (image, target) per the module's sample contract.

    - `data_root`: the folder that record.path is relative to; one for all records, or one per record.
    - `cache`: a PreparedDataset (anything with `cached_image_path(image_id, size_px)`), one per
      record, or None. When the cached PNG at `image_size_px` exists it is read instead of the
      original, so no DICOM is decoded twice.
    - `transforms`: a detect.transforms pipeline (None = no augmentation, boxes as they are).
    - `clahe`: a Clahe, True for Clahe() with default settings, or None/False.
    - `loader` / `cache_loader`: how originals / cached PNGs are read (defaults:
      data_prep.images.read_any_image_sized, data_prep.cache.load_cached_image); injectable for tests.
    A file that cannot be read raises the DetectError of its reader, naming the file; with
    `skip_unreadable` the item is a BadFile (path, reason) instead, which `collate_detection`
    moves out of the batch into `DetectionBatch.skipped`.
    """

    def __init__(
        self,
        records: Sequence[ImageRecord],
        data_root: str | Path | Sequence[str | Path],
        image_size_px: int,
        transforms: Callable | None = None,
        cache: ImageCache | Sequence[ImageCache | None] | None = None,
        clahe: Clahe | bool | None = None,
        loader: ImageLoader | None = None,
        cache_loader: CacheLoader | None = None,
        skip_unreadable: bool = False,
    ) -> None:
        if image_size_px <= 0:
            raise ValueError(f"image_size_px must be positive, got {image_size_px}")
        self.records: list[ImageRecord] = list(records)
        self.image_size_px = int(image_size_px)
        self.transforms = transforms
        self.clahe: Clahe | None = Clahe() if clahe is True else (clahe or None)
        self.loader: ImageLoader = loader or functools.partial(read_any_image_sized, target_size_px=self.image_size_px)
        self.cache_loader: CacheLoader = cache_loader or load_cached_image
        self.skip_unreadable = skip_unreadable
        n = len(self.records)
        self._roots = [Path(r) for r in _per_record(data_root, n, "data_root")]
        self._caches = _per_record(cache, n, "cache")

    def __len__(self) -> int:
        return len(self.records)

    def image_path(self, index: int) -> Path:
        """The original file of record `index`."""
        return self._roots[index] / self.records[index].path

    def letterboxed_pixels(self, index: int) -> tuple[np.ndarray, float, tuple[int, int]]:
        """(uint8 [S, S], letterbox scale, ORIGINAL (height, width)) of record `index`."""
        record, size = self.records[index], self.image_size_px
        cache = self._caches[index]
        if cache is not None and record.height and record.width:
            cached_path = Path(cache.cached_image_path(record.image_id, size))
            if cached_path.is_file():
                pixels = self.cache_loader(cached_path)
                if pixels.shape != (size, size) or pixels.dtype != np.uint8:
                    raise ImageReadError(
                        cached_path,
                        f"cached image is {pixels.dtype} {pixels.shape}, expected uint8 ({size}, {size}): "
                        "delete it and run `detect prepare --cache` again",
                    )
                return pixels, letterbox_scale(record.height, record.width, size), (record.height, record.width)
        path = self.image_path(index)
        loaded = self.loader(path)
        if isinstance(loaded, SizedImage):  # decoded for this size (data_prep.images.read_any_image_sized)
            pixels, original_hw = loaded.pixels, loaded.original_hw
        else:
            pixels, _header = loaded
            original_hw = tuple(getattr(pixels, "shape", ())[:2])
        if not isinstance(pixels, np.ndarray) or pixels.ndim != 2 or pixels.dtype != np.uint8:
            shape = getattr(pixels, "shape", None)
            raise ImageReadError(
                path, f"reader returned {getattr(pixels, 'dtype', type(pixels))} {shape}, expected 2-D uint8"
            )
        if record.height and record.width and original_hw != (record.height, record.width):
            raise DataFormatError(
                path,
                f"decoded size {original_hw[0]}x{original_hw[1]} differs from the manifest's "
                f"{record.height}x{record.width}: the boxes would not fit; rerun `detect prepare`",
            )
        resized, scale = letterbox_resize(pixels, size, original_hw)
        return resized, scale, (int(original_hw[0]), int(original_hw[1]))

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Tensor]] | BadFile:
        record, size = self.records[index], self.image_size_px
        try:
            pixels, scale, (height, width) = self.letterboxed_pixels(index)
        except DetectError as exc:
            if not self.skip_unreadable:
                raise
            return BadFile(
                path=getattr(exc, "path", None) or str(self.image_path(index)),
                reason=getattr(exc, "reason", None) or str(exc),
            )
        if self.clahe is not None:
            pixels = self.clahe(pixels, content_hw=content_size(height, width, size))
        image = tv_tensors.Image(torch.from_numpy(np.ascontiguousarray(pixels)).unsqueeze(0))
        boxes = torch.from_numpy(scale_boxes(record.boxes_xyxy, scale))
        box_target = {
            "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(size, size)),
            "labels": torch.full((boxes.shape[0],), OPACITY_LABEL, dtype=torch.int64),
        }
        if self.transforms is not None:
            image, box_target = self.transforms(image, box_target)
        rsna_class, subtype = class_indices(record)
        target = {
            "boxes": box_target["boxes"].as_subclass(Tensor).to(torch.float32).reshape(-1, 4),
            "labels": box_target["labels"].as_subclass(Tensor).to(torch.int64),
            "has_box_labels": torch.tensor(bool(record.has_box_labels)),
            "rsna_class": torch.tensor(rsna_class, dtype=torch.int64),
            "pneumonia": torch.tensor(int(record.target), dtype=torch.int64),
            "subtype": torch.tensor(subtype, dtype=torch.int64),
            "image_index": torch.tensor(index, dtype=torch.int64),
            "scale": torch.tensor(scale, dtype=torch.float32),
            "orig_size": torch.tensor([height, width], dtype=torch.int64),
        }
        return pixels_to_tensor(image), target


class DetectionBatch(tuple):
    """A collated batch: unpacks as (images, targets), the lists detection models take, and
    carries `skipped`, the BadFiles of the samples that could not be read (left out of it).

    A tuple subclass so that `for images, targets in loader` keeps working; `pin_memory` and
    `__reduce__` keep `skipped` through DataLoader's pinning thread and worker processes.
    """

    skipped: tuple[BadFile, ...]

    def __new__(
        cls, images: list[Tensor], targets: list[dict[str, Tensor]], skipped: Sequence[BadFile] = ()
    ) -> DetectionBatch:
        batch = super().__new__(cls, (images, targets))
        batch.skipped = tuple(skipped)
        return batch

    def __reduce__(self) -> tuple[Any, ...]:
        return DetectionBatch, (self[0], self[1], self.skipped)

    def pin_memory(self) -> DetectionBatch:
        targets = [{k: v.pin_memory() if isinstance(v, Tensor) else v for k, v in t.items()} for t in self[1]]
        return DetectionBatch([image.pin_memory() for image in self[0]], targets, self.skipped)


def collate_detection(batch: Sequence[tuple[Tensor, dict[str, Tensor]] | BadFile]) -> DetectionBatch:
    """[(image, target) or BadFile, ...] -> DetectionBatch(images, targets, skipped)."""
    samples = [item for item in batch if not isinstance(item, BadFile)]
    skipped = [item for item in batch if isinstance(item, BadFile)]
    return DetectionBatch([image for image, _ in samples], [target for _, target in samples], skipped)


# ---------------------------------------------------------------------------------- building


def build_datasets(
    prepared: Sequence[PreparedDataset], cfg: Config, *, skip_unreadable: bool = False
) -> dict[str, ManifestDataset]:
    """'train' / 'val' / 'test' datasets over the records of that split of every prepared dataset
    (data_prep.manifest.PreparedDataset), in the given order; train with the training
    augmentation of cfg.data.augment, val and test without. Every split is present (maybe empty).

    With cfg.data.use_cache the cached PNGs at data.image_size_px are read. A record whose PNG
    is missing from an existing cache folder is one the cache could not decode: it is left out,
    with a warning naming the files, instead of failing in the middle of an epoch. Originals
    are read with cfg.data.max_image_megapixels as the pixel limit; `skip_unreadable` is
    handed to every ManifestDataset (training sets it: see the module docstring).

    A classification task (cfg.task) reads its dataset's records only (data_prep.tasks: the
    kermany tasks Kermany's, the rsna tasks RSNA's); a prepared dataset without any is a
    ConfigError naming its folder.
    """
    size = cfg.data.image_size_px
    task_sources = [check_task_records(source, cfg.task) for source in prepared]
    aug = cfg.data.augment
    clahe = clahe_from_config(aug)
    loader = functools.partial(read_any_image_sized, target_size_px=size, max_pixels=cfg.data.max_image_pixels)
    datasets: dict[str, ManifestDataset] = {}
    for split in SPLITS:
        records: list[ImageRecord] = []
        roots: list[Path] = []
        caches: list[PreparedDataset | None] = []
        for source, task_records in zip(prepared, task_sources):
            split_records = [r for r in task_records if r.split == split]
            cache = None
            if cfg.data.use_cache and Path(source.cached_image_path("probe", size)).parent.is_dir():
                cache = source
                uncached = [r for r in split_records if not Path(source.cached_image_path(r.image_id, size)).is_file()]
                if uncached:
                    shown = ", ".join(r.path for r in uncached[:5]) + (", ..." if len(uncached) > 5 else "")
                    warnings.warn(
                        f"{source.prepared_dir}: {len(uncached)} {split} images have no cached PNG at {size} px "
                        f"(the cache could not read them) and are left out: {shown}",
                        stacklevel=2,
                    )
                    left_out = {id(r) for r in uncached}
                    split_records = [r for r in split_records if id(r) not in left_out]
            records.extend(split_records)
            roots.extend([Path(source.data_root)] * len(split_records))
            caches.extend([cache] * len(split_records))
        transforms = build_train_transforms(aug) if split == "train" else build_eval_transforms()
        datasets[split] = ManifestDataset(
            records,
            roots,
            size,
            transforms=transforms,
            cache=caches,
            clahe=clahe,
            loader=loader,
            skip_unreadable=skip_unreadable,
        )
    return datasets


def check_task_records(source: PreparedDataset, task: str) -> list[ImageRecord]:
    """The records of `source` that `task` reads; a ConfigError naming the folder when there are none."""
    records = records_for_task(source.records, task)
    if task != DETECTION_TASK and not records:
        found = sorted({r.dataset for r in source.records}) or ["no images"]
        raise ConfigError(
            f"--data {source.data_root}: no {TASK_DATASET[task].upper()} images for task '{task}' "
            f"(it holds {', '.join(found)}); pass a {TASK_DATASET[task]} folder or change config key 'task'"
        )
    return records
