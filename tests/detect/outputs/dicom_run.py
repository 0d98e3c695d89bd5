"""One `detect infer` run with --dicom-sr / --dicom-gsps on two synthetic RSNA-like DICOMs,
shared by the SR and GSPS tests (the SR / GSPS checked against the same run's boxes.json)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from detect.inference.batch import InferenceResult, run_inference
from tests.data_prep.dicom_fixtures import textured_image, write_jpeg_baseline_dicom
from tests.detect.inference.test_batch import save_tiny_checkpoint

SPACING_MM = (0.139, 0.143)  # (row, column): different, so a swap would show


@dataclass
class DicomRun:
    result: InferenceResult
    boxes: dict
    sr_dir: Path
    gsps_dir: Path
    checkpoint: Path


def infer_with_dicom_outputs(root: Path, *, anonymize: bool = False, checkpoint: Path | None = None) -> DicomRun:
    inputs = root / "in"
    inputs.mkdir(parents=True, exist_ok=True)
    for i in range(2):
        write_jpeg_baseline_dicom(
            inputs / f"scan{i}.dcm",
            textured_image(64, 80, seed=i),
            pixel_spacing=SPACING_MM,
            patient_id=f"patient-{i}",
            PatientName="Doe^Jane",
            PatientBirthDate="19700101",
        )
    checkpoint = checkpoint or save_tiny_checkpoint(root / "best.pt")
    result = run_inference(
        [inputs],
        out_path=root / "boxes.json",
        checkpoint=checkpoint,
        device="cpu",
        workers=1,
        dicom_sr_dir=root / "sr",
        dicom_gsps_dir=root / "gsps",
        anonymize=anonymize,
    )
    return DicomRun(result, json.loads((root / "boxes.json").read_text()), root / "sr", root / "gsps", checkpoint)
