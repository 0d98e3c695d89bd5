"""A DICOMweb client for `detect infer --dicomweb`: WADO-RS fetch, QIDO-RS query, STOW-RS store.

    client = connect(url)                                  dicomweb-client session, no retries
    fetch_study_images(client, url, study_uid, folder)     the study's image instances -> .dcm files
    store_instances(client, url, paths)                    STOW-RS the SR / GSPS files back
    find_series(client, url, study_uid)                    QIDO-RS: the study's series (dicts by keyword)

Transport only: no model, no torch. It sits beside detect/outputs (which writes the objects it
sends) below detect/inference, whose `detect infer` drives it. Every failure is one
DicomWebError line naming the URL and the HTTP status (or the connection problem); nothing is
retried, so a run fails fast and can simply be run again: the SOP Instance UIDs are
deterministic, and a PACS keeps one copy of an instance it already has.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

import pydicom
import requests
from dicomweb_client.api import DICOMwebClient

from data_prep.errors import DicomWebError
from data_prep.safe_paths import UnsafeNameError, check_dicom_uid, child_path

# Series of these modalities hold no pixels to infer on (earlier AI results among them).
NON_IMAGE_MODALITIES: frozenset[str] = frozenset({"SR", "PR", "KO", "SEG", "DOC", "REG", "RTSTRUCT"})
T = TypeVar("T")


def _one_line_http_error(url: str, exc: requests.RequestException) -> DicomWebError:
    response = getattr(exc, "response", None)
    if response is not None:
        where = (response.url or url).split("?", 1)[0]  # the resource; the query only adds noise
        return DicomWebError(f"{where}: HTTP {response.status_code} {response.reason or ''}".rstrip())
    if isinstance(exc, requests.ConnectionError):
        return DicomWebError(f"{url}: cannot connect (is the DICOMweb server running and the URL right?)")
    if isinstance(exc, requests.Timeout):
        return DicomWebError(f"{url}: no answer within the timeout")
    return DicomWebError(f"{url}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")


def _http_errors(url: str, call: Callable[[], T]) -> T:
    """Run one DICOMweb request; turn any transport / HTTP failure into one DicomWebError."""
    try:
        return call()
    except requests.RequestException as exc:
        raise _one_line_http_error(url, exc) from None


def _uid(value: object, what: str, where: str) -> str:
    """A UID from the user or the server, checked against the DICOM UI rules (one DicomWebError line)."""
    try:
        return check_dicom_uid(str(value) if value is not None else "", what, where)
    except UnsafeNameError as exc:
        raise DicomWebError(str(exc)) from None


def connect(url: str, timeout_s: float = 60.0) -> DICOMwebClient:
    """A client for the DICOMweb root `url` (e.g. http://host:8042/dicom-web), no retries."""
    if not url.startswith(("http://", "https://")):
        raise DicomWebError(f"{url}: a DICOMweb URL starts with http:// or https://")
    client = DICOMwebClient(url=url.rstrip("/"), timeout=timeout_s)
    client.set_http_retry_params(retry=False)
    return client


def find_series(client: DICOMwebClient, url: str, study_uid: str) -> list[dict[str, Any]]:
    """QIDO-RS: the study's series, each as {keyword: value} (SeriesInstanceUID, Modality, ...)."""
    found = _http_errors(url, lambda: client.search_for_series(
        study_instance_uid=study_uid, fields=["Modality", "SeriesDescription", "NumberOfSeriesRelatedInstances"]))
    return [pydicom.Dataset.from_json(item) for item in found]


def find_instances(client: DICOMwebClient, url: str, study_uid: str, series_uid: str) -> list[pydicom.Dataset]:
    """QIDO-RS: one series' instances (SOPInstanceUID, SOPClassUID, ...)."""
    found = _http_errors(url, lambda: client.search_for_instances(study_instance_uid=study_uid, series_instance_uid=series_uid))
    return [pydicom.Dataset.from_json(item) for item in found]


def fetch_study_images(client: DICOMwebClient, url: str, study_uid: str, folder: Path) -> tuple[list[Path], list[str]]:
    """WADO-RS: every instance of the study's image series, written to `folder` as
    <SOPInstanceUID>.dcm. Returns the files and the series skipped (non-image modalities).
    Raises DicomWebError when the study has no image series, or when the server answers a UID
    that is not a valid DICOM UID (a UID from the server names a URL and a file: checked first)."""
    study_uid = _uid(study_uid, "Study Instance UID", "--study")
    folder.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    skipped: list[str] = []
    series = find_series(client, url, study_uid)
    if not series:
        raise DicomWebError(f"{url}: study {study_uid} not found (QIDO-RS finds no series in it)")
    for item in series:
        modality = str(item.get("Modality", "") or "")
        if modality in NON_IMAGE_MODALITIES:
            skipped.append(f"{item.SeriesInstanceUID} ({modality})")
            continue
        series_uid = _uid(item.get("SeriesInstanceUID", ""), "SeriesInstanceUID", f"{url}: QIDO-RS answer")
        instances = _http_errors(url, lambda: client.retrieve_series(study_uid, series_uid))
        for ds in instances:
            sop_uid = _uid(ds.get("SOPInstanceUID", ""), "SOPInstanceUID", f"{url}: WADO-RS answer")
            path = child_path(folder, f"{sop_uid}.dcm")
            ds.save_as(path, enforce_file_format=True)
            paths.append(path)
    if not paths:
        raise DicomWebError(f"{url}: study {study_uid} has no image series (only {', '.join(skipped)})")
    return paths, skipped


def store_instances(client: DICOMwebClient, url: str, paths: Sequence[Path]) -> int:
    """STOW-RS the files at `paths` to the server's study resources. Returns how many were sent."""
    datasets = [pydicom.dcmread(p) for p in paths]
    if datasets:
        _http_errors(url, lambda: client.store_instances(datasets))
    return len(datasets)
