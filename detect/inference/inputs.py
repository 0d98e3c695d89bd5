"""Every input a user holds -> the LoadedImage the predictor reads (uint8 [H, W] + DICOM header).

    a path (str or Path) to a DICOM, PNG or JPEG    read by content (detect.data.files.load_image)
    a folder                                         every image below it, sorted (one per file)
    a glob pattern (str), e.g. "scans/**/*.dcm"      the files it matches, sorted
    a list / tuple of any of these                   in order
    a numpy array                                    uint8 [H, W] or [H, W, 3] RGB: display pixels;
                                                     uint16 / int16 / other integer [H, W]: stored
                                                     values, windowed as a DICOM without a window
                                                     is (min..max -> 0..255, data_prep.dicom)
    a PIL image                                      its pixels as the array above (mode I;16: stored values)
    a pydicom.Dataset                                written to a private temporary file and read
                                                     by the project's own DICOM pipeline (checks,
                                                     decoders, modality / VOI LUT, MONOCHROME1)
    a torch tensor                                   [H, W], [1, H, W], [3, H, W] or [H, W, 3];
                                                     uint8 as display pixels, float in [0, 1]
                                                     scaled to 0..255, integer as stored values

Anything else, or a wrong shape or dtype, is an InputTypeError (a DetectError) saying what was
given and what is accepted.
"""

from __future__ import annotations

import glob
import io
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pydicom
import torch
from PIL import Image

from data_prep.codestreams import DEFAULT_MAX_IMAGE_PIXELS
from data_prep.dicom import to_display_uint8
from data_prep.errors import DataFormatError, DetectError, DicomReadError
from detect.data.files import LoadedImage, load_image, load_image_bytes
from detect.inference.discovery import collect_input_files

ARRAY_SOURCE = "<array>"
PIL_SOURCE = "<PIL image>"
TENSOR_SOURCE = "<tensor>"
DATASET_SOURCE = "<pydicom Dataset>"
ACCEPTED = "a path, a folder, a list of them, a numpy array (uint8 or uint16), a PIL image, a pydicom Dataset or a torch tensor"


class InputTypeError(DetectError):
    """An object given to the Python API that is not an image it can read."""


def _is_pattern(item: Any) -> bool:
    """A str with glob characters that is not itself an existing path."""
    return isinstance(item, str) and any(c in item for c in "*?[") and not Path(item).exists()


def is_many(source: Any) -> bool:
    """True for what gives a list of predictions: a list or tuple, a folder, a glob pattern."""
    if isinstance(source, (list, tuple)) or _is_pattern(source):
        return True
    return isinstance(source, (str, Path)) and Path(source).is_dir()


def _matches(pattern: str) -> list[Path]:
    files = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
    if not files:
        raise InputTypeError(f"{pattern}: no file matches this pattern")
    return files


def expand(source: Any) -> list[Any]:
    """`source` -> the single inputs it stands for, in order (a folder -> its image files)."""
    items = list(source) if isinstance(source, (list, tuple)) else [source]
    out: list[Any] = []
    for item in items:
        if isinstance(item, (list, tuple)):
            raise InputTypeError("a list of inputs must be flat: paths, arrays or images, not lists")
        if _is_pattern(item):
            out.extend(_matches(item))
        elif isinstance(item, (str, Path)) and Path(item).is_dir():
            out.extend(collect_input_files([item]).files)
        else:
            out.append(item)
    return out


def stored_values_to_display(values: np.ndarray) -> np.ndarray:
    """Integer stored values [H, W] (what pydicom's pixel_array gives) -> display uint8, by the
    DICOM pipeline's rule for a file with no window: min..max stretched to 0..255."""
    return to_display_uint8(np.ascontiguousarray(values), pydicom.Dataset())


def array_to_pixels(array: np.ndarray, what: str = "the image array") -> np.ndarray:
    """A numpy array -> uint8 [H, W] display pixels (see the module docstring)."""
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[2] in (3, 4) and array.dtype == np.uint8:
        return cv2.cvtColor(np.ascontiguousarray(array[:, :, :3]), cv2.COLOR_RGB2GRAY)
    if array.ndim != 2 or min(array.shape) < 1:
        raise InputTypeError(f"{what} must be [H, W] (or [H, W, 3] uint8 RGB), got shape {tuple(array.shape)}")
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    if array.dtype.kind in "iu":
        return stored_values_to_display(array)
    raise InputTypeError(
        f"{what} must be uint8 display pixels or integer stored values (uint16 as pydicom gives), got {array.dtype}"
    )


def tensor_to_pixels(tensor: torch.Tensor) -> np.ndarray:
    """A torch tensor -> uint8 [H, W] display pixels (see the module docstring)."""
    array = tensor.detach().cpu()
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[2] not in (1, 3):
        array = array.permute(1, 2, 0)  # channels first -> last
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.is_floating_point():
        values = array.float()
        if values.numel() and not (torch.isfinite(values).all() and values.min() >= 0.0 and values.max() <= 1.0):
            raise InputTypeError("a float tensor must hold values in [0, 1] (uint8 tensors hold 0..255)")
        array = torch.round(values * 255.0).to(torch.uint8)
    return array_to_pixels(array.numpy(), "the tensor")


def pil_to_pixels(image: Image.Image) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        return array_to_pixels(np.asarray(image), "the PIL image")
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGB")
    return array_to_pixels(np.asarray(image), "the PIL image")


def dataset_to_loaded(dataset: pydicom.Dataset, max_pixels: int, target_size_px: int | None = None) -> LoadedImage:
    """A pydicom Dataset -> LoadedImage, through the same reader as a DICOM file on disk."""
    source = str(dataset.filename) if isinstance(getattr(dataset, "filename", None), str) else DATASET_SOURCE
    buffer = io.BytesIO()
    try:
        dataset.save_as(buffer, enforce_file_format=True)
    except Exception as exc:  # pydicom raises many kinds for a dataset it cannot encode
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise InputTypeError(f"{source}: the pydicom Dataset cannot be written as a DICOM file ({first})") from None
    with tempfile.TemporaryDirectory(prefix="detect-dataset-") as folder:
        try:
            image = load_image_bytes(
                buffer.getvalue(), ".dcm", Path(folder), max_pixels=max_pixels, target_size_px=target_size_px
            )
        except DataFormatError as exc:  # named by the dataset, not by the private file it passed through
            raise DicomReadError(source, exc.reason) from None
    return replace(image, source=source)


def to_loaded_image(
    item: Any, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS, target_size_px: int | None = None
) -> LoadedImage:
    """One input -> its LoadedImage; raises a DetectError (unreadable file, wrong type).
    `target_size_px`: a file is decoded for that model input size, as load_image does (the
    arrays and images a caller hands in are taken as they are)."""
    if isinstance(item, LoadedImage):
        return item
    if isinstance(item, (str, Path)):
        return load_image(Path(item), max_pixels=max_pixels, target_size_px=target_size_px)
    if isinstance(item, np.ndarray):
        pixels, source = array_to_pixels(item), ARRAY_SOURCE
    elif isinstance(item, torch.Tensor):
        pixels, source = tensor_to_pixels(item), TENSOR_SOURCE
    elif isinstance(item, Image.Image):
        pixels, source = pil_to_pixels(item), PIL_SOURCE
    elif isinstance(item, pydicom.Dataset):
        return dataset_to_loaded(item, max_pixels, target_size_px)
    else:
        raise InputTypeError(f"cannot predict a {type(item).__name__}: give {ACCEPTED}")
    if pixels.shape[0] * pixels.shape[1] > max_pixels:
        raise InputTypeError(f"{source}: {pixels.shape[1]}x{pixels.shape[0]} pixels is over the limit of {max_pixels}")
    return LoadedImage(source=source, pixels=pixels)


def source_name(item: Any) -> str:
    """How an input is named in a failure entry."""
    if isinstance(item, (str, Path)):
        return str(Path(item))
    if isinstance(item, LoadedImage):
        return item.source
    if isinstance(item, torch.Tensor):
        return TENSOR_SOURCE
    if isinstance(item, Image.Image):
        return PIL_SOURCE
    if isinstance(item, pydicom.Dataset):
        return DATASET_SOURCE
    return ARRAY_SOURCE if isinstance(item, np.ndarray) else f"<{type(item).__name__}>"
