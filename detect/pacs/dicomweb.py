"""A DICOMweb client for `detect infer --dicomweb`: WADO-RS fetch, QIDO-RS query, STOW-RS store.

    client = connect(url)                                  dicomweb-client session, no retries
    fetch_study_images(client, url, study_uid, folder)     the study's image instances -> .dcm files
    store_instances(client, url, paths)                    STOW-RS the SR / GSPS files back
    find_series(client, url, study_uid)                    QIDO-RS: the study's series (dicts by keyword)

Transport only: no model, no torch. It sits beside detect/outputs (which writes the objects it
sends) below detect/inference, whose `detect infer` drives it. Every failure is one
DicomWebError line naming the URL and the HTTP status (or the connection problem, or what the
client library could not read); nothing is retried, so a run fails fast and can simply be run
again: the SOP Instance UIDs are deterministic, and a PACS keeps one copy of an instance it
already has.

The server is not trusted (detect/pacs/bounded.py): each request has a whole-request deadline
(DicomWebLimits.deadline_s) and a body cap counted as it streams (max_response_bytes; QIDO-RS
JSON max_query_bytes), a study at most max_instances instances, redirects stay on the server's
host unless asked for, an answer of the wrong content type is refused, and every UID from the
server is checked against the DICOM UI rules before it builds a URL or a file name.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

import pydicom
import requests
from dicomweb_client.api import DICOMwebClient

from data_prep.errors import DetectError, DicomWebError, printable
from data_prep.safe_paths import UnsafeNameError, check_dicom_uid, child_path, shown
from detect.pacs.bounded import MIB, BoundedSession

# Series of these modalities hold no pixels to infer on (earlier AI results among them).
NON_IMAGE_MODALITIES: frozenset[str] = frozenset({"SR", "PR", "KO", "SEG", "DOC", "REG", "RTSTRUCT"})
T = TypeVar("T")


@dataclass(frozen=True)
class DicomWebLimits:
    """Bounds on what a DICOMweb server may make `detect` wait for, hold or write."""

    deadline_s: float = 300.0  # one request, first byte sent to last byte read
    max_response_bytes: int = 1024 * MIB  # one WADO-RS answer (a series of radiographs: tens of MB)
    max_query_bytes: int = 16 * MIB  # one QIDO-RS JSON answer (a study's series: kilobytes)
    max_instances: int = 1000  # instances of one study (a chest study has one to a few)
    follow_other_hosts: bool = False  # follow a redirect to another scheme, host or port


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
    """Run one DICOMweb request; turn any failure (transport, HTTP status, an answer the client
    library or pydicom cannot read) into one DicomWebError line naming the URL."""
    try:
        return call()
    except DetectError:
        raise
    except requests.RequestException as exc:
        raise _one_line_http_error(url, exc) from None
    except Exception as exc:  # dicomweb-client and pydicom fail in many ways on a malformed answer
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise DicomWebError(f"{url}: unreadable answer ({type(exc).__name__}: {printable(first[:200])})") from None


def _uid(value: object, what: str, where: str) -> str:
    """A UID from the user or the server, checked against the DICOM UI rules (one DicomWebError line)."""
    try:
        return check_dicom_uid(str(value) if value is not None else "", what, where)
    except UnsafeNameError as exc:
        raise DicomWebError(str(exc)) from None


def connect(url: str, limits: DicomWebLimits = DicomWebLimits()) -> DICOMwebClient:
    """A client for the DICOMweb root `url` (e.g. http://host:8042/dicom-web), no retries, every
    request within `limits` (its session is a BoundedSession; `client.limits` keeps them)."""
    if not url.startswith(("http://", "https://")):
        raise DicomWebError(f"{url}: a DICOMweb URL starts with http:// or https://")
    session = BoundedSession(
        deadline_s=limits.deadline_s,
        max_response_bytes=limits.max_response_bytes,
        follow_other_hosts=limits.follow_other_hosts,
    )
    client = DICOMwebClient(url=url.rstrip("/"), session=session)
    client.set_http_retry_params(retry=False)
    client.limits = limits  # type: ignore[attr-defined]
    return client


def _limits(client: DICOMwebClient) -> DicomWebLimits:
    return getattr(client, "limits", DicomWebLimits())


def _query(client: DICOMwebClient, url: str, call: Callable[[], list[dict[str, Any]]]) -> list[pydicom.Dataset]:
    """A QIDO-RS call under the query cap, its items as datasets; more than max_instances is refused."""
    limits = _limits(client)
    session = client._session
    bounded = isinstance(session, BoundedSession)
    with session.limit(max_response_bytes=limits.max_query_bytes) if bounded else contextlib.nullcontext():
        found = _http_errors(url, call)
    if not isinstance(found, list):
        raise DicomWebError(f"{url}: unreadable answer (QIDO-RS JSON is not a list)")
    if len(found) > limits.max_instances:
        raise DicomWebError(f"{url}: too many results: {len(found)} (the limit is {limits.max_instances})")
    return _http_errors(url, lambda: [pydicom.Dataset.from_json(item) for item in found])


def find_series(client: DICOMwebClient, url: str, study_uid: str) -> list[dict[str, Any]]:
    """QIDO-RS: the study's series, each as {keyword: value} (SeriesInstanceUID, Modality, ...)."""
    return _query(
        client,
        url,
        lambda: client.search_for_series(
            study_instance_uid=study_uid, fields=["Modality", "SeriesDescription", "NumberOfSeriesRelatedInstances"]
        ),
    )


def find_instances(client: DICOMwebClient, url: str, study_uid: str, series_uid: str) -> list[pydicom.Dataset]:
    """QIDO-RS: one series' instances (SOPInstanceUID, SOPClassUID, ...)."""
    return _query(
        client, url, lambda: client.search_for_instances(study_instance_uid=study_uid, series_instance_uid=series_uid)
    )


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
            skipped.append(f"{shown(str(item.get('SeriesInstanceUID', '')))} ({shown(modality)})")
            continue
        series_uid = _uid(item.get("SeriesInstanceUID", ""), "SeriesInstanceUID", f"{url}: QIDO-RS answer")
        instances = _http_errors(url, lambda: client.retrieve_series(study_uid, series_uid))
        if len(paths) + len(instances) > _limits(client).max_instances:
            raise DicomWebError(
                f"{url}: study {study_uid} has too many instances: over {_limits(client).max_instances} (the limit)"
            )
        for ds in instances:  # parsed lazily: reading an element can fail on a malformed part too
            paths.append(_http_errors(url, lambda: _save_instance(ds, folder, url)))
    if not paths:
        raise DicomWebError(f"{url}: study {study_uid} has no image series (only {', '.join(skipped)})")
    return paths, skipped


def _save_instance(ds: pydicom.Dataset, folder: Path, url: str) -> Path:
    """Write one retrieved instance as <SOPInstanceUID>.dcm in `folder`, its UID checked first."""
    sop_uid = _uid(ds.get("SOPInstanceUID", ""), "SOPInstanceUID", f"{url}: WADO-RS answer")
    path = child_path(folder, f"{sop_uid}.dcm")
    ds.save_as(path, enforce_file_format=True)
    return path


def store_instances(client: DICOMwebClient, url: str, paths: Sequence[Path]) -> int:
    """STOW-RS the files at `paths` to the server's study resources. Returns how many were sent."""
    datasets = [pydicom.dcmread(p) for p in paths]  # written by detect itself
    if datasets:
        _http_errors(url, lambda: client.store_instances(datasets))
    return len(datasets)
