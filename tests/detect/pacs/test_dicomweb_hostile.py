"""detect.pacs.dicomweb against a hostile DICOMweb server on loopback (tests/detect/pacs/hostile_server.py):
UIDs that would build a path out of the scratch folder, an endless body, a trickle, a huge QIDO-RS
answer, too many instances, the wrong content type, a redirect to another host, a malformed answer.
Each ends in one DicomWebError line naming the URL, within the (short) limits the tests set."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app
from data_prep.errors import DicomWebError
from detect.pacs.dicomweb import DicomWebLimits, connect, fetch_study_images
from tests.detect.pacs.hostile_server import STUDY_UID, dicom_bytes, hostile_dicomweb

pytestmark = pytest.mark.filterwarnings("ignore:Invalid value for VR UI")  # pydicom, on the hostile UIDs
FAST = DicomWebLimits(deadline_s=1.5, max_response_bytes=2 << 20, max_query_bytes=256 << 10, max_instances=5)


@pytest.mark.parametrize("bad_uid", ["../../../../escape/pwned", "1.2.3/../../pwned", "..", "1.02.3"])
def test_a_retrieved_instance_whose_uid_is_a_path_writes_nothing_outside_the_folder(tmp_path, bad_uid):
    folder = tmp_path / "scratch" / "images"
    with hostile_dicomweb(instances=[dicom_bytes(bad_uid)]) as url:
        with pytest.raises(
            DicomWebError, match=rf"^{url}: WADO-RS answer: SOPInstanceUID '.*' is not a valid DICOM UID"
        ):
            fetch_study_images(connect(url), url, STUDY_UID, folder)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written == []


def test_detect_infer_dicomweb_with_a_traversal_uid_is_one_line_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr("tempfile.tempdir", None)
    with hostile_dicomweb(instances=[dicom_bytes("../../../pwned")]) as url:
        result = CliRunner().invoke(
            app, ["infer", "--dicomweb", url, "--study", STUDY_UID, "--out", str(tmp_path / "out" / "b.json")]
        )
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "SOPInstanceUID '../../../pwned' is not a valid DICOM UID" in lines[0]
    assert not list(tmp_path.rglob("pwned*"))


def test_a_study_uid_that_is_not_a_uid_is_refused_before_any_request(tmp_path):
    with hostile_dicomweb() as url:
        with pytest.raises(DicomWebError, match=r"^--study: Study Instance UID '1\.2/\.\./x' is not a valid DICOM UID"):
            fetch_study_images(connect(url), url, "1.2/../x", tmp_path)


def test_a_good_instance_is_written_under_its_uid(tmp_path):
    with hostile_dicomweb(instances=[dicom_bytes("1.2.826.0.1.3680043.8.498.20009")]) as url:
        paths, skipped = fetch_study_images(connect(url), url, STUDY_UID, tmp_path)
    assert paths == [tmp_path / "1.2.826.0.1.3680043.8.498.20009.dcm"] and skipped == []
    assert Path(paths[0]).stat().st_size > 0


def _fetch(url: str, folder: Path, limits: DicomWebLimits = FAST) -> float:
    """Fetch the study; the DicomWebError it must raise is the caller's to match. Returns the seconds it took."""
    started = time.monotonic()
    try:
        fetch_study_images(connect(url, limits), url, STUDY_UID, folder)
    finally:
        elapsed = time.monotonic() - started
    return elapsed


def test_an_endless_body_is_too_large_and_stops_at_the_cap(tmp_path):
    with hostile_dicomweb(endless=True) as url:
        started = time.monotonic()
        with pytest.raises(DicomWebError, match=rf"^{url}/studies/{STUDY_UID}/series/.*: answer too large: over 2 MiB"):
            _fetch(url, tmp_path, DicomWebLimits(deadline_s=30, max_response_bytes=2 << 20))
        assert time.monotonic() - started < 10


def test_an_endless_body_under_a_high_cap_times_out_at_the_deadline(tmp_path):
    with hostile_dicomweb(endless=True) as url:
        started = time.monotonic()
        with pytest.raises(DicomWebError, match=r": timed out: no complete answer within 1.5 s$"):
            _fetch(url, tmp_path, DicomWebLimits(deadline_s=1.5, max_response_bytes=1 << 40))
        assert time.monotonic() - started < 4


def test_a_trickle_times_out_at_the_whole_request_deadline(tmp_path):
    with hostile_dicomweb(trickle_s=0.2) as url:  # one byte every 0.2 s: each read is quick, the answer never ends
        started = time.monotonic()
        with pytest.raises(DicomWebError, match=rf"^{url}/studies/.*: timed out: no complete answer within 1.5 s$"):
            _fetch(url, tmp_path)
        assert time.monotonic() - started < 3.5


def test_a_huge_qido_answer_is_too_large(tmp_path):
    with hostile_dicomweb(qido_bytes=50 << 20) as url:
        started = time.monotonic()
        with pytest.raises(
            DicomWebError, match=rf"^{url}/studies/{STUDY_UID}/series.*: answer too large: over 0.25 MiB"
        ):
            _fetch(url, tmp_path)
        assert time.monotonic() - started < 5


def test_too_many_series_or_instances_are_refused(tmp_path):
    with hostile_dicomweb(qido_items=6) as url:
        with pytest.raises(DicomWebError, match=rf"^{url}: too many results: 6 \(the limit is 5\)$"):
            _fetch(url, tmp_path)
    uids = [f"1.2.826.0.1.3680043.8.498.3000{i}" for i in range(6)]
    with hostile_dicomweb(instances=[dicom_bytes(uid) for uid in uids]) as url:
        with pytest.raises(DicomWebError, match=rf"^{url}: study {STUDY_UID} has too many instances: over 5"):
            _fetch(url, tmp_path)
    assert not list(tmp_path.glob("*.dcm"))


@pytest.mark.parametrize("content_type", ["text/html; charset=utf-8", "application/json"])
def test_a_200_of_the_wrong_content_type_is_one_line_naming_the_url(tmp_path, content_type):
    with hostile_dicomweb(wado_type=content_type) as url:
        with pytest.raises(
            DicomWebError,
            match=rf"^{url}/studies/{STUDY_UID}/series/[0-9.]+: answered "
            rf"{content_type.split(';')[0]}, not multipart/related",
        ):
            _fetch(url, tmp_path)


def test_the_cli_says_it_in_one_line(tmp_path):
    with hostile_dicomweb(wado_type="text/html") as url:
        result = CliRunner().invoke(
            app, ["infer", "--dicomweb", url, "--study", STUDY_UID, "--out", str(tmp_path / "b.json")]
        )
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {url}/studies/") and "answered text/html" in lines[0]


def test_a_redirect_to_another_host_is_refused_unless_asked_for(tmp_path):
    with hostile_dicomweb() as target:
        with hostile_dicomweb(redirect_to=target.rsplit("/dicom-web", 1)[0]) as url:
            with pytest.raises(
                DicomWebError,
                match=rf"^{url}/studies/{STUDY_UID}/series: redirected to another host "
                rf"\({target}/studies/.*\); refused",
            ):
                _fetch(url, tmp_path / "refused")
            assert not (tmp_path / "refused").exists() or not list((tmp_path / "refused").iterdir())
            paths, _ = fetch_study_images(
                connect(url, DicomWebLimits(follow_other_hosts=True)), url, STUDY_UID, tmp_path / "followed"
            )
    assert len(paths) == 1


@pytest.mark.parametrize("body", [b"--x\r\n\r\nnot dicom\r\n--x--", b"", b"\x00" * 300])
def test_a_malformed_multipart_answer_is_one_line(tmp_path, body):
    with hostile_dicomweb(wado_raw=body) as url:
        with pytest.raises(DicomWebError, match=rf"^{url}"):
            _fetch(url, tmp_path)


MULTIPART_CRASHES = sorted((Path(__file__).parents[2] / "fuzz" / "crashes" / "multipart").glob("crash-*"))


@pytest.mark.parametrize("crash", MULTIPART_CRASHES, ids=[c.name[:14] for c in MULTIPART_CRASHES])
def test_every_multipart_answer_the_fuzzer_found_is_one_line(tmp_path, crash):
    """tests/fuzz/fuzz_ingest.py multipart: the input's first line is the Content-Type, the rest the body."""
    content_type, _, body = crash.read_bytes().partition(b"\n")
    with hostile_dicomweb(wado_raw=body, wado_raw_type=content_type.decode("latin-1").strip()) as url:
        try:
            _fetch(url, tmp_path)
        except DicomWebError as exc:
            assert "\n" not in str(exc) and str(exc).startswith(url)
