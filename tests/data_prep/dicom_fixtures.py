"""Build small DICOM files in a test's tmp_path with pydicom: no downloaded data anywhere.

`write_dicom` writes uncompressed (or pydicom-compressed) grayscale files with any bit depth,
sign, photometric interpretation and extra tags; `write_jpeg_baseline_dicom` writes what every
RSNA file is (one JPEG Baseline 1.2.840.10008.1.2.4.50 frame, 8-bit MONOCHROME2, RSNA's header
fields) through data_prep.synth's writer, so tests read exactly what the synthetic dataset holds.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, get_frame
from pydicom.uid import (
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from data_prep.synth.rsna import write_jpeg_baseline_dicom as write_rsna_style_dicom


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
    attributes last (e.g. RescaleSlope=2, WindowCenter=100, NumberOfFrames=3,
    PresentationLUTShape="INVERSE"). For Explicit VR
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
    photometric: str = "MONOCHROME2",
    **tags: Any,
) -> Path:
    """An RSNA-like file written by the synthetic dataset's own writer, with test defaults.

    Fresh random UIDs per file (pydicom's generate_uid), so files written in one test never
    share a SOP Instance UID. `tags` are set on the written file afterwards, for headers that
    no RSNA file has.
    """
    write_rsna_style_dicom(
        path,
        pixels,
        patient_id=patient_id,
        sex=sex,
        age=age,
        view_position=view,
        pixel_spacing_mm=pixel_spacing,
        sop_instance_uid=generate_uid(),
        study_instance_uid=generate_uid(),
        series_instance_uid=generate_uid(),
        jpeg_quality=quality,
        photometric_interpretation=photometric,
    )
    if tags:
        ds = pydicom.dcmread(path)
        for name, value in tags.items():
            setattr(ds, name, value)
        ds.save_as(path, enforce_file_format=True)
    return Path(path)


def with_jpeg_sof_size(path: Path, height: int, width: int, **tags: Any) -> Path:
    """Rewrite a JPEG Baseline file's SOF to claim height x width (the data stays as it was),
    and set `tags` (e.g. Rows=60000, Columns=60000): hostile headers."""
    ds = pydicom.dcmread(path)
    frame = bytearray(get_frame(ds.PixelData, 0, number_of_frames=1))
    sof = frame.find(b"\xff\xc0")
    frame[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    ds.PixelData = encapsulate([bytes(frame)])
    for name, value in tags.items():
        setattr(ds, name, value)
    ds.save_as(path, enforce_file_format=True)
    return Path(path)


def overwrite_middle(path: Path, n_bytes: int = 64) -> Path:
    """Overwrite `n_bytes` in the middle of the file with 0, 1, 2, ... (a corrupt JPEG)."""
    data = bytearray(Path(path).read_bytes())
    middle = len(data) // 2
    data[middle : middle + n_bytes] = bytes(range(n_bytes))
    Path(path).write_bytes(bytes(data))
    return Path(path)
