"""`detect infer --dicomweb URL --study UID [--stow]`: a study from a PACS through the same
`run_inference` as local files, and its SR / GSPS stored back.

    fetch (WADO-RS, image series only)  ->  run_inference on the fetched files (boxes.json,
    SR and GSPS written as for local files)  ->  STOW-RS the SR / GSPS to the same server

The SR and GSPS land in the source's study, in series of their own. Their SOP Instance UIDs
are a function of (source SOP Instance UID, checkpoint SHA-256, kind), so running again
stores the same instances: the PACS keeps one copy, nothing is lost or duplicated. Earlier
results in the study (SR / PR series) are not fetched.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data_prep.errors import DetectError
from detect.inference.batch import InferenceResult, run_inference
from detect.inference.settings import InferenceSettings, field_names
from detect.pacs.dicomweb import DicomWebLimits, connect, fetch_study_images, store_instances


@dataclass
class DicomWebResult:
    """What a DICOMweb run did: the local inference result and the transfers."""

    inference: InferenceResult
    url: str
    study_uid: str
    n_fetched: int
    skipped_series: list[str]
    n_stored: int

    def summary(self) -> str:
        skipped = f" (skipped {len(self.skipped_series)} non-image series)" if self.skipped_series else ""
        stored = f"; stored {self.n_stored} SR/GSPS instance(s) to the study with STOW-RS" if self.n_stored else ""
        return (
            f"fetched {self.n_fetched} instance(s) of study {self.study_uid} from {self.url} with WADO-RS"
            f"{skipped}{stored}; {self.inference.summary()}"
        )


def run_dicomweb_inference(
    url: str,
    study_uid: str,
    *,
    out_path: str | Path,
    settings: InferenceSettings | None = None,
    stow: bool = False,
    limits: DicomWebLimits = DicomWebLimits(),
    **run_options: Any,
) -> DicomWebResult:
    """Fetch `study_uid` from the DICOMweb root `url`, infer with `settings`, and with `stow`
    store the SR and GSPS back (written to the settings' dicom_sr_dir / dicom_gsps_dir too when
    given, else to a temporary folder). `limits`: what the server may make this run wait for or
    hold (deadline, answer sizes, instance count, redirects). `run_options` go to
    `run_inference` unchanged (checkpoint, gate_with, logging; or InferenceSettings fields).

    Raises DicomWebError (one line: URL and status) when the server cannot be reached or
    answers an error, DetectError for bad arguments.
    """
    if not study_uid:
        raise DetectError("--dicomweb needs --study UID (the Study Instance UID to fetch)")
    names = set(field_names())
    settings = (settings or InferenceSettings()).replace(
        **{k: run_options.pop(k) for k in list(run_options) if k in names}
    )
    if stow and settings.anonymize:
        raise DetectError(
            "--stow with --anonymize: a result without the patient's ID would be filed as another "
            "patient in the PACS; anonymize only files you take out of it"
        )
    client = connect(url, limits)
    with tempfile.TemporaryDirectory(prefix="detect_dicomweb_") as scratch:
        root = Path(scratch)
        files, skipped = fetch_study_images(client, url, study_uid, root / "images")
        if stow:
            settings = settings.replace(
                dicom_sr_dir=settings.dicom_sr_dir or root / "sr",
                dicom_gsps_dir=settings.dicom_gsps_dir or root / "gsps",
            )
        result = run_inference([root / "images"], out_path=out_path, settings=settings, **run_options)
        n_stored = store_instances(client, url, result.dicom_paths) if stow else 0
    return DicomWebResult(result, url, study_uid, len(files), skipped, n_stored)
