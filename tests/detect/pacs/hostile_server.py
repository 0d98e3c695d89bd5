"""A hostile DICOMweb server on loopback for the client's bounds: a small http.server in a thread.

    with hostile_dicomweb(behaviour) as url:   # url = http://127.0.0.1:<port>/dicom-web
        ...

The QIDO-RS series query (…/studies/<uid>/series) answers one CR series unless the behaviour
says otherwise; the WADO-RS series retrieve answers the behaviour's body. Behaviours:

    instances=[bytes, ...]   a well-formed multipart/related answer with these DICOM files
    endless=True             a WADO-RS body that never ends (chunked, 64 KiB a chunk)
    trickle_s=0.3            the WADO-RS answer one byte every trickle_s seconds
    qido_bytes=N             a QIDO-RS JSON answer of N bytes (a long array of series)
    qido_items=N             a QIDO-RS answer listing the one series N times
    wado_raw=bytes           a multipart/related answer whose body is these bytes as they are
    wado_raw_type=str        ... with this Content-Type instead
    wado_type="text/html"    a 200 answer of this content type (a login page, a proxy error)
    redirect_to=URL          every request answered 302 to URL + the request's path
"""

from __future__ import annotations

import contextlib
import http.server
import io
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset

STUDY_UID = "1.2.826.0.1.3680043.8.498.20001"
SERIES_UID = "1.2.826.0.1.3680043.8.498.20002"
BOUNDARY = "detect-test-boundary"


def dicom_bytes(sop_instance_uid: str, *, patient_name: str = "Test^Patient") -> bytes:
    """A tiny CR image as a DICOM Part 10 file; the SOP Instance UID written unchecked."""
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4"
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    ds.SOPInstanceUID = sop_instance_uid
    ds.StudyInstanceUID, ds.SeriesInstanceUID = STUDY_UID, SERIES_UID
    ds.PatientName, ds.PatientID, ds.Modality = patient_name, "hostile", "CR"
    pixels = (np.arange(16 * 16, dtype=np.uint16).reshape(16, 16) * 7).astype(np.uint16)
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = 16, 16, 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = pixels.tobytes()
    buffer = io.BytesIO()
    with pydicom.config.disable_value_validation():
        ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def multipart(parts: list[bytes]) -> bytes:
    body = b""
    for part in parts:
        body += f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode() + part + b"\r\n"
    return body + f"--{BOUNDARY}--\r\n".encode()


def series_json(n: int = 1) -> bytes:
    item = {"0020000E": {"vr": "UI", "Value": [SERIES_UID]}, "00080060": {"vr": "CS", "Value": ["CR"]}}
    return json.dumps([item] * n).encode()


class _Handler(http.server.BaseHTTPRequestHandler):
    behaviour: dict[str, Any] = {}
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        b = self.behaviour
        try:
            if "redirect_to" in b:
                self.send_response(302)
                self.send_header("Location", b["redirect_to"] + self.path)
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif self.path.split("?", 1)[0].endswith("/series"):
                self._qido()
            else:
                self._wado()
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _qido(self) -> None:
        b = self.behaviour
        if "qido_bytes" in b:
            item = series_json(1)[1:-1]
            n = max(1, b["qido_bytes"] // (len(item) + 1))
            self.send_response(200)
            self.send_header("Content-Type", "application/dicom+json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b",".join([item] * 1000)
            self._chunk(b"[" + item)
            for _ in range(n // 1000 + 1):
                self._chunk(b"," + chunk)
            self._chunk(b"]")
            self._chunk(b"")
            return
        self._send(200, "application/dicom+json", series_json(b.get("qido_items", 1)))

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")

    def _wado(self) -> None:
        b = self.behaviour
        if "wado_type" in b:
            self._send(200, b["wado_type"], b"<html><body>Please log in</body></html>")
            return
        content_type = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'
        if "wado_raw" in b:
            self._send(
                200, b.get("wado_raw_type", 'multipart/related; type="application/dicom"; boundary=x'), b["wado_raw"]
            )
            return
        if b.get("endless"):
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self._chunk(f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode())
            block = b"\0" * 65536
            while not self.server.stopping:  # type: ignore[attr-defined]
                self._chunk(block)
            return
        body = multipart(b.get("instances") or [dicom_bytes("1.2.826.0.1.3680043.8.498.20003")])
        if b.get("trickle_s"):
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            for i in range(len(body)):
                if self.server.stopping:  # type: ignore[attr-defined]
                    return
                self.wfile.write(body[i : i + 1])
                self.wfile.flush()
                time.sleep(b["trickle_s"])
            return
        self._send(200, content_type, body)


@contextlib.contextmanager
def hostile_dicomweb(**behaviour: Any) -> Iterator[str]:
    """A server with `behaviour` (see the module docstring); yields its DICOMweb root URL."""
    handler = type("Handler", (_Handler,), {"behaviour": behaviour})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    server.stopping = False  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/dicom-web"
    finally:
        server.stopping = True  # type: ignore[attr-defined]
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
