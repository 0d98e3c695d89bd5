"""Synthetic RSNA Pneumonia Detection Challenge (stage 2), written exactly in the Kaggle layout.

    OUT/stage_2_train_labels.csv          patientId,x,y,width,height,Target
    OUT/stage_2_detailed_class_info.csv   patientId,class
    OUT/stage_2_sample_submission.csv     patientId,PredictionString
    OUT/stage_2_train_images/<patientId>.dcm
    OUT/stage_2_test_images/<patientId>.dcm
    OUT/SYNTHETIC_DATASET.json            (ours: provenance and exact counts)

The quirks of the real files are reproduced (see docs/data-formats.md): negatives have one
label row with EMPTY box fields; positives one row per box with float text ('264.0');
the class file has the same row count as the labels file, so a patient with 3 boxes appears
3 times (exact duplicate rows); Target=1 exactly when the class is 'Lung Opacity'.
The DICOMs are JPEG Baseline (one encapsulated frame), Secondary Capture, MONOCHROME2,
8 bits, with RSNA's header (PatientID = PatientName = patientId, bare-number PatientAge with
the real impossible values, DCMTK file meta, RSNA-style UIDs). AP views are positive far
more often than PA views (38% vs 9% in the real data), as in the real set.

Everything is drawn from one seeded generator: the same arguments give byte-identical files.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import cv2
import numpy as np
from pydicom import config as pydicom_config
from pydicom.dataelem import DataElement
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGBaseline8Bit

from data_prep.errors import ConfigError
from data_prep.records import RSNA_CLASSES, RSNA_POSITIVE_CLASS
from data_prep.synth.common import SynthSummary, claim_output_dir, write_marker
from data_prep.synth.phantom import render_chest_radiograph

LABELS_CSV = "stage_2_train_labels.csv"
CLASS_INFO_CSV = "stage_2_detailed_class_info.csv"
SAMPLE_SUBMISSION_CSV = "stage_2_sample_submission.csv"
TRAIN_IMAGES_DIR = "stage_2_train_images"
TEST_IMAGES_DIR = "stage_2_test_images"
SAMPLE_PREDICTION_STRING = "0.5 0 0 100 100"
# JPEG quality of the frames: 95 by default (the files `detect synth` has always written, ~2x
# the real size, mean 327 KB at 1024 px); 87 matches real RSNA files (130-150 KB: measured a
# mean of 138 KB over 12 files, 80-184 KB; 92 still gives 230 KB).
DEFAULT_JPEG_QUALITY = 95
REAL_SIZE_JPEG_QUALITY = 87

SECONDARY_CAPTURE_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.7"
DCMTK_IMPLEMENTATION_CLASS_UID = "1.2.276.0.7230010.3.0.3.6.0"
DCMTK_IMPLEMENTATION_VERSION = "OFFIS_DCMTK_360"
# RSNA's UIDs: <root>.<kind>.8323329.<n>.<t>.<m>, kind 4 = SOP instance, 2 = study, 3 = series;
# the study and series UIDs of a file end in m-1 and m-2.
_UID_ROOT = "1.2.276.0.7230010.3.1"
_UID_ORG = "8323329"

# Boxes per positive image in the real data: 1: 2,614 images, 2: 3,266, 3: 119, 4: 13.
_BOXES_PER_POSITIVE = (1, 2, 3, 4)
_BOXES_PER_POSITIVE_P = np.array([2614, 3266, 119, 13], dtype=np.float64) / 6012
# P(view = AP | positive) and P(AP | negative), from AP 38% / PA 9% positive and 23% positives overall.
_P_AP_GIVEN_POSITIVE = 0.79
_P_AP_GIVEN_NEGATIVE = 0.37
_P_MALE = 0.57
# RSNA's impossible ages, on about 1% of the synthetic images (at least one from 20 images on).
AGE_QUIRKS: tuple[str, ...] = ("148", "150", "151", "153", "155")
# PixelSpacing values (mm). The first five are documented for the real data (0.143 on most
# images); the others are plausible values for CR detectors, standing in for the rest of the
# 18 distinct values the real set has.
PIXEL_SPACINGS_MM: tuple[float, ...] = (
    0.143,
    0.168,
    0.139,
    0.171,
    0.1943,
    0.148,
    0.1,
    0.115,
    0.125,
    0.13,
    0.1394,
    0.144,
    0.15,
    0.16,
    0.175,
    0.18,
    0.2,
    0.1855,
)
_PIXEL_SPACING_P = np.array([60, 12, 8, 6, 4] + [10 / 13] * 13, dtype=np.float64)
_PIXEL_SPACING_P /= _PIXEL_SPACING_P.sum()


@dataclass(frozen=True)
class _ImagePlan:
    """Everything about one synthetic image, drawn before any pixel is rendered."""

    patient_id: str
    rsna_class: str
    n_boxes: int
    view_position: str
    sex: str
    age: str
    pixel_spacing_mm: float
    sop_instance_uid: str
    render_seed: int


def synth_rsna(
    out_dir: str | Path,
    n_images: int,
    n_test_images: int = 0,
    size_px: int = 1024,
    seed: int = 0,
    class_fractions: tuple[float, float, float] = (0.33, 0.44, 0.23),
    workers: int = 1,
    jpeg_quality: int = DEFAULT_JPEG_QUALITY,
) -> SynthSummary:
    """Write a synthetic RSNA dataset to `out_dir` in the exact Kaggle layout; return the counts.

    `workers` > 1 renders in a process pool: every image has its own seed, so the files are the
    same bytes whatever the number of workers.

    `jpeg_quality` (1..100) of the frames: the default 95 gives ~330 KB per 1024 px file,
    about twice a real RSNA file; REAL_SIZE_JPEG_QUALITY (87) gives the real size (~130-150 KB),
    which is what decoding benchmarks should run on (entropy decoding scales with the bytes).

    `n_images` labelled training images (one patient each) and `n_test_images` unlabelled test
    images, `size_px` square, classes in the proportions `class_fractions` = fractions of
    RSNA_CLASSES ('Normal', 'No Lung Opacity / Not Normal', 'Lung Opacity'), rounded to exact
    counts (each class at least once when n_images >= 3 and its fraction > 0).

    `out_dir` must be missing, empty, or a previous synthetic dataset (which is replaced);
    any other folder raises ConfigError and is left untouched.

    Summary counts: images, test_images, boxes, label_rows, class_info_rows,
    class_info_duplicate_rows, one count per class name, positive_images_with_{1..4}_boxes,
    AP, PA, AP_positive, PA_positive, age_quirks, size_px.
    """
    _check_args(n_images, n_test_images, size_px, seed, class_fractions, workers)
    if not 1 <= jpeg_quality <= 100:
        raise ConfigError(f"jpeg_quality (--jpeg-quality): must be in 1..100, got {jpeg_quality}")
    started = time.perf_counter()
    params = {
        "n_images": n_images,
        "n_test_images": n_test_images,
        "size_px": size_px,
        "seed": seed,
        "class_fractions": list(class_fractions),
    }
    if jpeg_quality != DEFAULT_JPEG_QUALITY:  # the default's marker stays as it was
        params["jpeg_quality"] = jpeg_quality
    owned = (LABELS_CSV, CLASS_INFO_CSV, SAMPLE_SUBMISSION_CSV, TRAIN_IMAGES_DIR, TEST_IMAGES_DIR)
    out = claim_output_dir(out_dir, "rsna", owned, params)
    rng = np.random.default_rng(seed)
    train, test = _plan_images(rng, n_images, n_test_images, class_fractions)

    (out / TRAIN_IMAGES_DIR).mkdir()
    (out / TEST_IMAGES_DIR).mkdir()
    label_lines = ["patientId,x,y,width,height,Target"]
    class_lines = ["patientId,class"]
    n_boxes_total = 0
    jobs = [(out / TRAIN_IMAGES_DIR, plan) for plan in train] + [(out / TEST_IMAGES_DIR, plan) for plan in test]
    rendered = _render_all(jobs, size_px, workers, jpeg_quality)
    for plan, boxes_xyxy in zip(train, rendered):
        if plan.rsna_class == RSNA_POSITIVE_CLASS:
            for x0, y0, x1, y1 in boxes_xyxy.tolist():
                label_lines.append(f"{plan.patient_id},{x0!r},{y0!r},{x1 - x0!r},{y1 - y0!r},1")
                class_lines.append(f"{plan.patient_id},{plan.rsna_class}")
            n_boxes_total += len(boxes_xyxy)
        else:
            label_lines.append(f"{plan.patient_id},,,,,0")
            class_lines.append(f"{plan.patient_id},{plan.rsna_class}")
    submission_lines = ["patientId,PredictionString"]
    for plan in test:
        submission_lines.append(f"{plan.patient_id},{SAMPLE_PREDICTION_STRING}")
    _write_lines(out / LABELS_CSV, label_lines)
    _write_lines(out / CLASS_INFO_CSV, class_lines)
    _write_lines(out / SAMPLE_SUBMISSION_CSV, submission_lines)

    counts = _count(train, test, n_boxes_total, len(label_lines) - 1, len(class_lines) - 1, size_px)
    write_marker(out, "rsna", params, counts)
    return SynthSummary(
        dataset="rsna", out_dir=str(out), seed=seed, counts=counts, elapsed_s=time.perf_counter() - started
    )


def _check_args(
    n_images: int,
    n_test_images: int,
    size_px: int,
    seed: int,
    class_fractions: tuple[float, float, float],
    workers: int,
) -> None:
    if n_images < 1:
        raise ConfigError(f"n_images (--images): must be >= 1, got {n_images}")
    if n_test_images < 0:
        raise ConfigError(f"n_test_images (--test-images): must be >= 0, got {n_test_images}")
    if not 64 <= size_px <= 4096:
        raise ConfigError(f"size_px (--size): must be in 64..4096, got {size_px}")
    if seed < 0:
        raise ConfigError(f"seed (--seed): must be >= 0, got {seed}")
    if workers < 1:
        raise ConfigError(f"workers (--workers): must be >= 1, got {workers}")
    fractions = tuple(float(f) for f in class_fractions)
    if len(fractions) != len(RSNA_CLASSES) or min(fractions) < 0 or not abs(sum(fractions) - 1.0) < 1e-6:
        raise ConfigError(
            f"class_fractions: must be {len(RSNA_CLASSES)} non-negative fractions of {RSNA_CLASSES} summing to 1, "
            f"got {class_fractions}"
        )


def exact_counts(n: int, fractions: tuple[float, ...]) -> list[int]:
    """Split n into integer counts proportional to `fractions` (largest remainder), summing to n.

    When n >= len(fractions), every class with a positive fraction gets at least one.
    """
    raw = np.asarray(fractions, dtype=np.float64) * n
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts), kind="stable")[: n - int(counts.sum())]:
        counts[i] += 1
    if n >= len(fractions):
        for i in range(len(fractions)):
            if fractions[i] > 0 and counts[i] == 0:
                counts[int(np.argmax(counts))] -= 1
                counts[i] += 1
    return [int(c) for c in counts]


def _uuid4(rng: np.random.Generator) -> str:
    return str(uuid.UUID(bytes=rng.bytes(16), version=4))


def _plan_images(
    rng: np.random.Generator, n_images: int, n_test_images: int, class_fractions: tuple[float, float, float]
) -> tuple[list[_ImagePlan], list[_ImagePlan]]:
    """Classes, box counts, views, demographics, UIDs and render seeds for all images."""
    plans: list[list[_ImagePlan]] = []
    seen_ids: set[str] = set()
    seen_uids: set[str] = set()
    for n in (n_images, n_test_images):
        classes = [c for c, k in zip(RSNA_CLASSES, exact_counts(n, class_fractions)) for _ in range(k)]
        classes = [classes[i] for i in rng.permutation(n)]
        positive = np.array([c == RSNA_POSITIVE_CLASS for c in classes], dtype=bool)

        n_boxes = np.zeros(n, dtype=int)
        pos_idx = np.flatnonzero(positive)
        n_boxes[pos_idx] = rng.choice(_BOXES_PER_POSITIVE, size=pos_idx.size, p=_BOXES_PER_POSITIVE_P)
        if pos_idx.size >= 2:  # with few positives, still show both common cases
            if not (n_boxes[pos_idx] == 1).any():
                n_boxes[pos_idx[0]] = 1
            if not (n_boxes[pos_idx] == 2).any():
                n_boxes[pos_idx[1]] = 2

        ap = rng.random(n) < np.where(positive, _P_AP_GIVEN_POSITIVE, _P_AP_GIVEN_NEGATIVE)
        if n >= 4 and (ap.all() or not ap.any()):  # both views, whatever the luck
            ap[int(rng.integers(n))] = not ap[0]
        sexes = np.where(rng.random(n) < _P_MALE, "M", "F")
        ages = [str(int(a)) for a in np.clip(np.round(rng.normal(47.0, 16.5, n)), 1, 92)]
        n_quirks = max(1 if n >= 20 else 0, int(round(0.01 * n)))
        for i, q in zip(rng.choice(n, size=n_quirks, replace=False), rng.choice(AGE_QUIRKS, size=n_quirks)):
            ages[int(i)] = str(q)
        spacings = rng.choice(len(PIXEL_SPACINGS_MM), size=n, p=_PIXEL_SPACING_P)

        split_plans = []
        for i in range(n):
            patient_id = _uuid4(rng)
            while patient_id in seen_ids:
                patient_id = _uuid4(rng)
            seen_ids.add(patient_id)
            sop = _sop_instance_uid(rng)
            while sop in seen_uids:
                sop = _sop_instance_uid(rng)
            seen_uids.add(sop)
            split_plans.append(
                _ImagePlan(
                    patient_id=patient_id,
                    rsna_class=classes[i],
                    n_boxes=int(n_boxes[i]),
                    view_position="AP" if ap[i] else "PA",
                    sex=str(sexes[i]),
                    age=ages[i],
                    pixel_spacing_mm=PIXEL_SPACINGS_MM[int(spacings[i])],
                    sop_instance_uid=sop,
                    render_seed=int(rng.integers(0, 2**63 - 1)),
                )
            )
        plans.append(split_plans)
    return plans[0], plans[1]


def _sop_instance_uid(rng: np.random.Generator) -> str:
    """An RSNA-style SOP Instance UID: 1.2.276.0.7230010.3.1.4.8323329.<n>.<t>.<m>."""
    n = int(rng.integers(1000, 32768))
    t = 1517874000 + int(rng.integers(0, 3000))  # February 2018, like the real files
    m = int(rng.integers(100002, 1000000))
    return f"{_UID_ROOT}.4.{_UID_ORG}.{n}.{t}.{m}"


def _related_uid(sop_instance_uid: str, kind: int, minus: int) -> str:
    """The study (kind 2, m-1) or series (kind 3, m-2) UID that goes with an RSNA-style SOP UID."""
    prefix = f"{_UID_ROOT}.4."
    if not sop_instance_uid.startswith(prefix):
        raise ValueError(
            f"sop_instance_uid {sop_instance_uid!r} is not RSNA-style ({prefix}...); pass the study and series UIDs"
        )
    head, last = sop_instance_uid[len(prefix) :].rsplit(".", 1)
    return f"{_UID_ROOT}.{kind}.{head}.{max(int(last) - minus, 1)}"


def _render_all(jobs: list[tuple[Path, _ImagePlan]], size_px: int, workers: int, jpeg_quality: int) -> list[np.ndarray]:
    """Render and write every (folder, plan); the boxes of each, in job order."""
    if workers > 1 and len(jobs) > 1:
        chunksize = max(1, len(jobs) // (4 * workers))
        with get_context().Pool(min(workers, len(jobs))) as pool:
            return pool.starmap(
                _render_and_write, [(folder, plan, size_px, jpeg_quality) for folder, plan in jobs], chunksize=chunksize
            )
    return [_render_and_write(folder, plan, size_px, jpeg_quality) for folder, plan in jobs]


def _render_and_write(folder: Path, plan: _ImagePlan, size_px: int, jpeg_quality: int) -> np.ndarray:
    pixels, boxes_xyxy = render_chest_radiograph(
        np.random.default_rng(plan.render_seed),
        size_px,
        size_px,
        opacities=plan.n_boxes if plan.rsna_class == RSNA_POSITIVE_CLASS else 0,
        abnormal_not_opacity=plan.rsna_class == RSNA_CLASSES[1],
    )
    write_jpeg_baseline_dicom(
        folder / f"{plan.patient_id}.dcm",
        pixels,
        patient_id=plan.patient_id,
        sex=plan.sex,
        age=plan.age,
        view_position=plan.view_position,
        pixel_spacing_mm=plan.pixel_spacing_mm,
        sop_instance_uid=plan.sop_instance_uid,
        jpeg_quality=jpeg_quality,
    )
    return boxes_xyxy


def write_jpeg_baseline_dicom(
    path: str | Path,
    pixels_uint8: np.ndarray,
    *,
    patient_id: str,
    sex: str,
    age: str,
    view_position: str,
    pixel_spacing_mm: float | tuple[float, float],
    sop_instance_uid: str,
    study_instance_uid: str | None = None,
    series_instance_uid: str | None = None,
    jpeg_quality: int = DEFAULT_JPEG_QUALITY,
    photometric_interpretation: str = "MONOCHROME2",
) -> None:
    """Write a 2-D uint8 image as an RSNA-style DICOM file.

    Transfer syntax JPEG Baseline (Process 1), 1.2.840.10008.1.2.4.50: the pixel data is ONE
    encapsulated JPEG frame (empty basic offset table), as in every RSNA file. Secondary Capture
    SOP class, Modality CR, BodyPartExamined CHEST, ConversionType WSD, SeriesDescription
    'view: <view_position>', PatientID = PatientName = patient_id, PatientAge written verbatim
    (RSNA's bare numbers like '58', not DICOM's '058Y'), LossyImageCompression '01', DCMTK file
    meta (OFFIS_DCMTK_360), 128-byte preamble + 'DICM'.
    Study/series UIDs default to the RSNA pattern derived from `sop_instance_uid`.

    `pixel_spacing_mm` is one float (square pixels, PixelSpacing [v, v] as RSNA writes it) or
    (row spacing, column spacing). `photometric_interpretation` is MONOCHROME2 (RSNA) or
    MONOCHROME1; the frame holds `pixels_uint8` as given either way, so a MONOCHROME1 file
    displays inverted. Raises ValueError before writing anything when an argument is invalid.
    """
    pixels = np.asarray(pixels_uint8)
    if pixels.dtype != np.uint8 or pixels.ndim != 2:
        raise ValueError(f"pixels_uint8 must be a 2-D uint8 array, got {pixels.dtype} {pixels.shape}")
    if view_position not in ("AP", "PA"):
        raise ValueError(f"view_position must be 'AP' or 'PA', got {view_position!r}")
    if sex not in ("M", "F", "O", ""):
        raise ValueError(f"sex must be 'M', 'F', 'O' or '', got {sex!r}")
    if photometric_interpretation not in ("MONOCHROME1", "MONOCHROME2"):
        raise ValueError(
            f"photometric_interpretation must be 'MONOCHROME1' or 'MONOCHROME2', got {photometric_interpretation!r}"
        )
    if isinstance(pixel_spacing_mm, (tuple, list)):
        if len(pixel_spacing_mm) != 2:
            raise ValueError(f"pixel_spacing_mm must be one float or (row, column), got {pixel_spacing_mm!r}")
        row_spacing_mm, column_spacing_mm = (float(v) for v in pixel_spacing_mm)
    else:
        row_spacing_mm = column_spacing_mm = float(pixel_spacing_mm)
    ok, jpeg = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
    if not ok:
        raise ValueError(f"cv2 could not JPEG-encode a {pixels.shape} image")
    study = study_instance_uid or _related_uid(sop_instance_uid, 2, 1)
    series = series_instance_uid or _related_uid(sop_instance_uid, 3, 2)

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SECONDARY_CAPTURE_SOP_CLASS
    meta.MediaStorageSOPInstanceUID = sop_instance_uid
    meta.TransferSyntaxUID = JPEGBaseline8Bit
    meta.ImplementationClassUID = DCMTK_IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = DCMTK_IMPLEMENTATION_VERSION
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = SECONDARY_CAPTURE_SOP_CLASS
    ds.SOPInstanceUID = sop_instance_uid
    ds.StudyDate = "19010101"
    ds.StudyTime = "000000.00"
    ds.AccessionNumber = ""
    ds.Modality = "CR"
    ds.ConversionType = "WSD"
    ds.ReferringPhysicianName = ""
    ds.SeriesDescription = f"view: {view_position}"
    ds.PatientName = patient_id
    ds.PatientID = patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = sex
    # RSNA writes bare numbers ('58', '148'), which DICOM's AS VR does not allow: write it as
    # found, without pydicom's validation warning.
    ds.add(DataElement(0x00101010, "AS", age, validation_mode=pydicom_config.IGNORE))
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = view_position
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.StudyID = ""
    ds.SeriesNumber = "1"
    ds.InstanceNumber = "1"
    ds.PatientOrientation = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric_interpretation
    ds.Rows, ds.Columns = int(pixels.shape[0]), int(pixels.shape[1])
    ds.PixelSpacing = [row_spacing_mm, column_spacing_mm]
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionMethod = "ISO_10918_1"
    ds.PixelData = encapsulate([jpeg.tobytes()])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.save_as(str(path), enforce_file_format=True)


def _write_lines(path: Path, lines: list[str]) -> None:
    path.write_bytes(("\n".join(lines) + "\n").encode("utf-8"))


def _count(
    train: list[_ImagePlan], test: list[_ImagePlan], n_boxes: int, label_rows: int, class_rows: int, size_px: int
) -> dict[str, int]:
    positive = [p for p in train if p.rsna_class == RSNA_POSITIVE_CLASS]
    counts = {
        "images": len(train),
        "test_images": len(test),
        "boxes": n_boxes,
        "label_rows": label_rows,
        "class_info_rows": class_rows,
        "class_info_duplicate_rows": class_rows - len(train),
    }
    for c in RSNA_CLASSES:
        counts[c] = sum(p.rsna_class == c for p in train)
    for k in _BOXES_PER_POSITIVE:
        counts[f"positive_images_with_{k}_boxes"] = sum(p.n_boxes == k for p in positive)
    for view in ("AP", "PA"):
        counts[view] = sum(p.view_position == view for p in train)
        counts[f"{view}_positive"] = sum(p.view_position == view for p in positive)
    counts["age_quirks"] = sum(p.age in AGE_QUIRKS for p in train)
    counts["size_px"] = size_px
    return counts
