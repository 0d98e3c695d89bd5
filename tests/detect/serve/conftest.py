"""Fixtures of the serve tests: the tiny biased checkpoint (always boxes), a loaded model,
uploads of each kind, a real `detect serve` process on a free loopback port (default settings),
and the comparison of entries predicted in a batch with those predicted alone."""

from __future__ import annotations

import math
import os
import shutil
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Iterator

import cv2
import httpx
import pytest

from detect.inference.api import Detector
from detect.serve.app import create_app
from detect.serve.predict import ServeModel
from detect.serve.settings import ServeSettings
from tests.data_prep.dicom_fixtures import textured_image, write_jpeg_baseline_dicom
from tests.detect.inference.test_batch import save_tiny_checkpoint

REPO_ROOT = Path(__file__).resolve().parents[3]
SECRET_PATIENT_ID = "SECRET-PATIENT-4711"
SECRET_FILE_NAME = "Doe^Jane 1961.dcm"


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> Path:
    return save_tiny_checkpoint(tmp_path_factory.mktemp("serve_ckpt") / "best.pt")


@pytest.fixture(scope="session")
def serve_model(checkpoint) -> Iterator[ServeModel]:
    model = ServeModel(Detector.from_checkpoint(checkpoint, device="cpu"))
    yield model
    model.close()


def make_client(model: ServeModel | None, **settings):
    with warnings.catch_warnings():  # Starlette 1.x would like httpx2; httpx is what FastAPI documents
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    return TestClient(create_app(model, ServeSettings(**settings)), raise_server_exceptions=False)


@pytest.fixture()
def client(serve_model):
    with make_client(serve_model) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def dicom_path(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("serve_uploads")
    return write_jpeg_baseline_dicom(
        folder / SECRET_FILE_NAME,
        textured_image(120, 100, seed=4),
        patient_id=SECRET_PATIENT_ID,
        sex="F",
        age="51",
        view="AP",
    )


@pytest.fixture(scope="session")
def dicom_bytes(dicom_path) -> bytes:
    return dicom_path.read_bytes()


@pytest.fixture(scope="session")
def png_bytes() -> bytes:
    return cv2.imencode(".png", textured_image(60, 150, seed=3))[1].tobytes()


@pytest.fixture(scope="session")
def jpeg_bytes() -> bytes:
    return cv2.imencode(".jpg", textured_image(80, 64, seed=5))[1].tobytes()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveServer:
    """A `detect serve` subprocess on 127.0.0.1:<port>; `log_text()` is what it printed."""

    def __init__(self, checkpoint: Path, log_path: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "DETECT_SERVE_TOKEN": ""}
        command = [
            sys.executable,
            str(REPO_ROOT / "cli.py"),
            "serve",
            "--checkpoint",
            str(checkpoint),
            "--port",
            str(self.port),
            "--device",
            "cpu",
            *args,
        ]
        self._log = open(log_path, "w")
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT)
        self._wait_ready()

    def _wait_ready(self, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"detect serve exited with {self.process.returncode}: {self.log_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"detect serve did not become ready in {timeout_s} s: {self.log_text()[-2000:]}")

    def log_text(self) -> str:
        self._log.flush()
        return self.log_path.read_text()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


@pytest.fixture(scope="session")
def live_server(checkpoint, tmp_path_factory) -> Iterator[LiveServer]:
    server = LiveServer(checkpoint, tmp_path_factory.mktemp("serve_log") / "serve.log")  # the defaults
    yield server
    server.stop()


# boxes.json rounds box coordinates to 2 decimals and probabilities and scores to 6
_ROUNDING_UNIT = {"x": 0.01, "y": 0.01, "width": 0.01, "height": 0.01}


def assert_same_entry(batched: object, alone: object, key: str = "") -> None:
    """Entries equal but for the last written digit of a float.

    A batch runs the convolutions over [B, 3, S, S] instead of [1, 3, S, S], and oneDNN picks its
    kernels (and so the order of each sum) by shape: the float32 outputs may differ by ~1e-7,
    which can move a value written with 6 decimals (or a box edge with 2) by one unit in its
    last digit. Anything more, or any other difference, fails."""
    if isinstance(batched, dict) and isinstance(alone, dict):
        assert batched.keys() == alone.keys(), (key, batched.keys(), alone.keys())
        for name in batched:
            assert_same_entry(batched[name], alone[name], name)
    elif isinstance(batched, list) and isinstance(alone, list):
        assert len(batched) == len(alone), (key, batched, alone)
        for a, b in zip(batched, alone):
            assert_same_entry(a, b, key)
    elif isinstance(batched, float) and isinstance(alone, float):
        unit = _ROUNDING_UNIT.get(key, 1e-6)
        assert math.isclose(batched, alone, rel_tol=0.0, abs_tol=unit * 1.01), (key, batched, alone)
    else:
        assert batched == alone, (key, batched, alone)


def require_tool(available: bool, what: str) -> None:
    """Skip when a test tool is missing on a developer machine; fail in CI (CI=true), where
    .ci/run installs it and its absence is a broken setup."""
    if available:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{what} is missing in CI; .ci/run installs it")
    pytest.skip(f"{what} is not installed (CI installs it; see .ci/run)")


def chromium_path() -> str | None:
    return os.environ.get("DETECT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
