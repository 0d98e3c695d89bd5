"""Build small DICOM files in a test's tmp_path with pydicom: no downloaded data anywhere.

`write_dicom` writes uncompressed (or pydicom-compressed) grayscale files with any bit depth,
sign, photometric interpretation and extra tags; `write_jpeg_baseline_dicom` writes what every
RSNA file is: one JPEG Baseline (1.2.840.10008.1.2.4.50) frame, encoded by OpenCV and
encapsulated by pydicom, 8-bit MONOCHROME2, with RSNA's header fields.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    SecondaryCaptureImageStorage,
    generate_uid,
)


def textured_image(height: int, width: int, seed: int = 0, bits: int = 8) -> np.ndarray:
    """A deterministic [height, width] image with gradients, edges and noise, spanning 0..2**bits-1.

    Texture matters: a flat image would hide off-by-one and interpolation errors in a decoder.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    img = 0.5 + 0.3 * np.sin(xx / max(width, 1) * 6.0) * np.cos(yy / max(height, 1) * 4.0)
    img[height // 4 : height // 2, width // 5 : width // 2] += 0.25  # a hard-edged block
    img += rng.normal(0.0, 0.04, size=img.shape)
    img = (img - img.min()) / (img.max() - img.min())
    top = 2**bits - 1
    dtype = np.uint8 if bits <= 8 else np.uint16
    return np.rint(img * top).astype(dtype)


def _base_dataset(
    rows: int,
    columns: int,
    *,
    transfer_syntax: str,
    photometric: str,
    bits_allocated: int,
    bits_stored: int,
    pixel_representation: int,
    samples_per_pixel: int = 1,
) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = transfer_syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientID = "test-patient"
    ds.Modality = "CR"
    ds.Rows = rows
    ds.Columns = columns
    ds.SamplesPerPixel = samples_per_pixel
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = bits_allocated
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = pixel_representation
    if samples_per_pixel > 1:
        ds.PlanarConfiguration = 0
    return ds


def make_dataset(
    pixels: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    transfer_syntax: str = ExplicitVRLittleEndian,
    **tags: Any,
) -> Dataset:
    """An uncompressed dataset holding `pixels` ([H, W] grayscale, [H, W, 3] RGB or [F, H, W] frames).

    BitsAllocated follows the dtype (8 or 16), PixelRepresentation its sign; `tags` are set as
    attributes last (e.g. RescaleSlope=2, WindowCenter=100, NumberOfFrames=3). For Explicit VR
    Big Endian the pixel bytes are written big endian (pydicom writes PixelData bytes verbatim).
    """
    pixels = np.ascontiguousarray(pixels)
    bits_allocated = pixels.dtype.itemsize * 8
    signed = int(pixels.dtype.kind == "i")
    samples = 3 if photometric in ("RGB", "YBR_FULL") else 1
    if samples == 3:
        rows, columns = pixels.shape[-3], pixels.shape[-2]
    else:
        rows, columns = pixels.shape[-2], pixels.shape[-1]
    ds = _base_dataset(
        rows,
        columns,
        transfer_syntax=transfer_syntax,
        photometric=photometric,
        bits_allocated=bits_allocated,
        bits_stored=bits_stored or bits_allocated,
        pixel_representation=signed,
        samples_per_pixel=samples,
    )
    if transfer_syntax == ExplicitVRBigEndian:
        pixels = pixels.astype(pixels.dtype.newbyteorder(">"))  # pydicom writes the bytes as given
    ds.PixelData = pixels.tobytes()
    ds["PixelData"].VR = "OW" if bits_allocated > 8 else "OB"
    for name, value in tags.items():
        setattr(ds, name, value)
    return ds


def write_dicom(path: Path, pixels: np.ndarray, **kwargs: Any) -> Path:
    """Write `make_dataset(pixels, **kwargs)` as a DICOM Part 10 file (preamble + 'DICM')."""
    ds = make_dataset(pixels, **kwargs)
    ds.save_as(path, enforce_file_format=True)
    return Path(path)


def write_jpeg_baseline_dicom(
    path: Path,
    pixels: np.ndarray,
    *,
    quality: int = 90,
    patient_id: str = "0004cfab-14fd-4e49-80ba-63a80b6bddd6",
    sex: str = "F",
    age: str = "51",
    view: str = "PA",
    pixel_spacing: tuple[float, float] = (0.143, 0.143),
    **tags: Any,
) -> Path:
    """An RSNA-like file: 8-bit MONOCHROME2, one JPEG Baseline frame encoded by OpenCV."""
    if pixels.dtype != np.uint8 or pixels.ndim != 2:
        raise ValueError("JPEG Baseline fixtures take a 2-D uint8 image")
    ok, jpeg = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    ds = _base_dataset(
        pixels.shape[0],
        pixels.shape[1],
        transfer_syntax=JPEGBaseline8Bit,
        photometric="MONOCHROME2",
        bits_allocated=8,
        bits_stored=8,
        pixel_representation=0,
    )
    ds.PatientID = patient_id
    ds.PatientName = patient_id
    ds.PatientSex = sex
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # RSNA's bare ages ('51') are not valid DICOM AS values
        ds.PatientAge = age
    ds.ViewPosition = view
    ds.SeriesDescription = f"view: {view}"
    ds.BodyPartExamined = "CHEST"
    ds.ConversionType = "WSD"
    ds.PixelSpacing = [f"{pixel_spacing[0]}", f"{pixel_spacing[1]}"]
    ds.LossyImageCompression = "01"
    ds.PixelData = encapsulate([jpeg.tobytes()])
    ds["PixelData"].VR = "OB"
    for name, value in tags.items():
        setattr(ds, name, value)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.save_as(path, enforce_file_format=True)
    return Path(path)
