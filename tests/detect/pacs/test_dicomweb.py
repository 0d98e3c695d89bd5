"""detect.pacs.dicomweb and `detect infer --dicomweb URL --study UID --stow`: a real round trip
through Orthanc (WADO-RS in, STOW-RS back, QIDO-RS to check), idempotent repeats, and one-line
errors for an unreachable server, 404 and 500."""

from __future__ import annotations

import http.server
import json
import threading
from pathlib import Path

import pydicom
import pytest
import requests
from typer.testing import CliRunner

from cli import app
from data_prep.errors import DicomWebError
from detect.outputs.uids import derived_uid, file_sha256
from detect.pacs.dicomweb import connect, find_instances, find_series
from tests.data_prep.dicom_fixtures import textured_image, write_jpeg_baseline_dicom
from tests.detect.inference.test_batch import save_tiny_checkpoint
from tests.detect.pacs.orthanc_server import dicomweb_plugin, free_port, start_orthanc
from tests.dicom_tools import missing_tool, require_tool

STUDY_UID = "1.2.826.0.1.3680043.8.498.10001"
SERIES_UID = "1.2.826.0.1.3680043.8.498.10002"
SR_CLASS, GSPS_CLASS = "1.2.840.10008.5.1.4.1.1.88.34", "1.2.840.10008.5.1.4.1.1.11.1"


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    executable = require_tool("Orthanc")
    plugin = dicomweb_plugin()
    if plugin is None:
        missing_tool("libOrthancDicomWeb.so")
    server = start_orthanc(executable, plugin, tmp_path_factory.mktemp("orthanc"))
    try:
        yield server
    finally:
        server.stop()
        print(f"\n--- Orthanc log (tail) ---\n{server.log()[-2000:]}")


@pytest.fixture(scope="module")
def study(orthanc, tmp_path_factory) -> list[Path]:
    """Two radiographs of one study uploaded to Orthanc (its REST API, not the code under test)."""
    folder = tmp_path_factory.mktemp("study")
    files = []
    for i in range(2):
        path = write_jpeg_baseline_dicom(
            folder / f"scan{i}.dcm",
            textured_image(64, 64, seed=10 + i),
            patient_id="pacs-patient",
            StudyInstanceUID=STUDY_UID,
            SeriesInstanceUID=SERIES_UID,
            InstanceNumber=i + 1,
        )
        answer = requests.post(f"{orthanc.rest_url}/instances", data=path.read_bytes(), timeout=30)
        assert answer.ok, answer.text
        files.append(path)
    return files


def _infer(tmp_path: Path, url: str, checkpoint: Path, *extra: str):
    return CliRunner().invoke(
        app,
        [
            "infer",
            "--dicomweb",
            url,
            "--study",
            STUDY_UID,
            "--checkpoint",
            str(checkpoint),
            "--out",
            str(tmp_path / "boxes.json"),
            "--device",
            "cpu",
            *extra,
        ],
    )


def _series_by_modality(url: str) -> dict[str, list[pydicom.Dataset]]:
    client = connect(url)
    found: dict[str, list[pydicom.Dataset]] = {}
    for series in find_series(client, url, STUDY_UID):
        found.setdefault(series.Modality, []).append(series)
    return found


def test_round_trip_fetch_infer_stow_and_find_the_results_in_the_same_study(orthanc, study, tmp_path):
    checkpoint = save_tiny_checkpoint(tmp_path / "best.pt")
    url = orthanc.dicomweb_url
    result = _infer(tmp_path, url, checkpoint, "--stow")
    print(result.output)
    assert result.exit_code == 0, result.output
    assert (
        f"fetched 2 instance(s) of study {STUDY_UID}" in result.output
        and "stored 4 SR/GSPS instance(s)" in result.output
    )
    boxes = json.loads((tmp_path / "boxes.json").read_text())
    assert {e["study_instance_uid"] for e in boxes["images"]} == {STUDY_UID}
    source_uids = {pydicom.dcmread(p).SOPInstanceUID for p in study}
    assert {e["sop_instance_uid"] for e in boxes["images"]} == source_uids

    series = _series_by_modality(url)  # QIDO-RS
    assert sorted(series) == ["CR", "PR", "SR"] and all(len(v) == 1 for v in series.values())
    client = connect(url)
    model_sha = file_sha256(checkpoint)
    for modality, sop_class, kind in (("SR", SR_CLASS, "sr"), ("PR", GSPS_CLASS, "gsps")):
        series_uid = series[modality][0].SeriesInstanceUID
        assert series_uid != SERIES_UID
        instances = find_instances(client, url, STUDY_UID, series_uid)
        assert {i.SOPInstanceUID for i in instances} == {derived_uid(s, model_sha, kind) for s in source_uids}
        assert {i.SOPClassUID for i in instances} == {sop_class}
        for instance in instances:  # WADO-RS back: each result references its source image
            ds = client.retrieve_instance(STUDY_UID, series_uid, instance.SOPInstanceUID)
            if modality == "SR":
                refs = ds.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence
            else:
                refs = ds.ReferencedSeriesSequence[0].ReferencedImageSequence
            assert refs[0].ReferencedSOPInstanceUID in source_uids
            assert instance.SOPInstanceUID == derived_uid(refs[0].ReferencedSOPInstanceUID, model_sha, kind)

    # A repeat stores the same instances again: nothing lost, nothing duplicated.
    before = requests.get(f"{orthanc.rest_url}/instances", timeout=10).json()
    again = _infer(tmp_path, url, checkpoint, "--stow")
    print(again.output)
    assert again.exit_code == 0, again.output
    assert "skipped 2 non-image series" in again.output  # the earlier SR and PR are not re-read
    after = requests.get(f"{orthanc.rest_url}/instances", timeout=10).json()
    assert sorted(after) == sorted(before) and len(after) == 6  # 2 images + 2 SR + 2 GSPS
    assert {k: len(v) for k, v in _series_by_modality(url).items()} == {"CR": 1, "PR": 1, "SR": 1}


def test_an_unknown_study_is_one_line_naming_the_url(orthanc, tmp_path):
    checkpoint = save_tiny_checkpoint(tmp_path / "best.pt")
    result = CliRunner().invoke(
        app,
        [
            "infer",
            "--dicomweb",
            orthanc.dicomweb_url,
            "--study",
            "1.2.3.4.5",
            "--checkpoint",
            str(checkpoint),
            "--out",
            str(tmp_path / "b.json"),
        ],
    )
    assert result.exit_code == 2
    assert (
        result.output.strip()
        == f"error: {orthanc.dicomweb_url}: study 1.2.3.4.5 not found (QIDO-RS finds no series in it)"
    )


def test_stow_with_anonymize_is_refused():
    result = CliRunner().invoke(
        app,
        [
            "infer",
            "--dicomweb",
            "http://127.0.0.1:1/dicom-web",
            "--study",
            "1.2",
            "--stow",
            "--anonymize",
            "--out",
            "b.json",
        ],
    )
    assert result.exit_code == 2 and "--stow with --anonymize" in result.output


def test_an_unreachable_server_is_one_line_naming_the_url():
    url = f"http://127.0.0.1:{free_port()}/dicom-web"  # nothing listens there
    with pytest.raises(DicomWebError, match=rf"^{url}: cannot connect"):
        find_series(connect(url), url, STUDY_UID)


class _Answer(http.server.BaseHTTPRequestHandler):
    status = 500

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(self.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:  # keep the test output clean
        pass


@pytest.mark.parametrize("status, reason", [(404, "Not Found"), (500, "Internal Server Error")])
def test_an_error_answer_is_one_line_with_the_url_and_the_status(status, reason, tmp_path):
    handler = type("Handler", (_Answer,), {"status": status})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/dicom-web"
        with pytest.raises(DicomWebError, match=rf"^{url}/studies/{STUDY_UID}/series: HTTP {status} {reason}$"):
            find_series(connect(url), url, STUDY_UID)
        result = CliRunner().invoke(
            app, ["infer", "--dicomweb", url, "--study", STUDY_UID, "--out", str(tmp_path / "b.json")]
        )
        assert result.exit_code == 2
        lines = result.output.strip().splitlines()
        assert (
            len(lines) == 1
            and lines[0].startswith(f"error: {url}/studies/")
            and f": HTTP {status} {reason}" in lines[0]
        )
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
