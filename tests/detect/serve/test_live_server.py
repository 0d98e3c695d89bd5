"""A real `detect serve` process on a free loopback port: concurrent uploads all succeed, a flood
beyond the queue is answered 503 with Retry-After, and the server stays healthy throughout."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.detect.serve.conftest import SECRET_FILE_NAME, SECRET_PATIENT_ID

CONCURRENT_UPLOADS = 20  # within the server's 1 worker + 24 queued
FLOOD = 120  # far beyond them


def _post_all(url: str, body: bytes, n: int) -> list[httpx.Response]:
    barrier = threading.Barrier(n)
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    with httpx.Client(base_url=url, timeout=120.0, limits=limits) as http:

        def one(_i: int) -> httpx.Response:
            barrier.wait()  # all requests leave together
            return http.post("/v1/predict", content=body, headers={"Content-Type": "application/dicom"})

        with ThreadPoolExecutor(max_workers=n) as clients:
            return list(clients.map(one, range(n)))


def test_concurrent_uploads_succeed_and_a_flood_gets_503(live_server, dicom_bytes):
    responses = _post_all(live_server.url, dicom_bytes, CONCURRENT_UPLOADS)
    assert [r.status_code for r in responses] == [200] * CONCURRENT_UPLOADS
    entries = [r.json()["prediction"] for r in responses]
    assert all(e == entries[0] for e in entries) and entries[0]["boxes"]

    health: list[int] = []
    stop = threading.Event()

    def probe() -> None:
        with httpx.Client(base_url=live_server.url, timeout=10.0) as http:
            while not stop.is_set():
                health.append(http.get("/healthz").status_code)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        flood = _post_all(live_server.url, dicom_bytes, FLOOD)
    finally:
        stop.set()
        prober.join()
    codes = [r.status_code for r in flood]
    refused = [r for r in flood if r.status_code == 503]
    assert set(codes) <= {200, 503}, codes
    assert refused and codes.count(200) >= 1, codes
    assert all(int(r.headers["retry-after"]) >= 1 and "the server is busy" in r.json()["error"] for r in refused)
    assert health and set(health) == {200}

    with httpx.Client(base_url=live_server.url, timeout=30.0) as http:  # and afterwards it serves again
        assert http.get("/readyz").json()["busy"] == 0
        assert http.post("/v1/predict", content=dicom_bytes).status_code == 200
    log = live_server.log_text()
    assert "predict dicom" in log and "pool full" in log
    assert SECRET_PATIENT_ID not in log and SECRET_FILE_NAME not in log and "Traceback" not in log


def test_the_server_binds_loopback_by_default(live_server):
    assert "http://127.0.0.1:" in live_server.log_text()
    assert "warning: listening on" not in live_server.log_text()
