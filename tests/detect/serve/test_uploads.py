"""detect.serve.uploads: the size cap holds while the body streams; multipart parsed in memory."""

from __future__ import annotations

import asyncio

import pytest

from detect.serve.uploads import BadRequest, PayloadTooLarge, extract_upload, read_capped_body, safe_source_name


class FakeRequest:
    def __init__(self, chunks: list[bytes], headers: dict[str, str] | None = None) -> None:
        self.headers = headers or {}
        self.chunks = chunks
        self.consumed = 0

    async def stream(self):
        for chunk in self.chunks:
            self.consumed += 1
            yield chunk


def test_the_cap_stops_reading_at_the_first_chunk_past_it():
    request = FakeRequest([b"x" * 400] * 100)  # 40 kB offered, no Content-Length
    with pytest.raises(PayloadTooLarge, match="limit of 1000 bytes"):
        asyncio.run(read_capped_body(request, 1000))
    assert request.consumed == 3  # 1200 bytes read, the other 97 chunks never pulled


def test_a_declared_length_above_the_cap_is_refused_before_reading():
    request = FakeRequest([b"x"], headers={"content-length": "5000"})
    with pytest.raises(PayloadTooLarge):
        asyncio.run(read_capped_body(request, 1000))
    assert request.consumed == 0
    assert asyncio.run(read_capped_body(FakeRequest([b"ab", b"cd"]), 4)) == b"abcd"


def test_multipart_file_field_and_raw_body():
    body = (
        b'--XyZ\r\nContent-Disposition: form-data; name="note"\r\n\r\nhello\r\n'
        b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.dcm"\r\n'
        b"Content-Type: application/dicom\r\n\r\n\x00\x01\r\n--\x02\r\n--XyZ--\r\n"
    )
    assert extract_upload(body, "multipart/form-data; boundary=XyZ") == (b"\x00\x01\r\n--\x02", "a.dcm")
    assert extract_upload(b"\x89PNG", "image/png") == (b"\x89PNG", None)
    with pytest.raises(BadRequest, match="without a 'file' field"):
        extract_upload(body.replace(b'name="file"', b'name="upload"'), "multipart/form-data; boundary=XyZ")


@pytest.mark.parametrize(
    "name, label",
    [
        (None, "upload"),
        ("", "upload"),
        ("../../etc/passwd", "passwd"),
        ("C:\\scans\\a.dcm", "a.dcm"),
        ("a\x00b\nc.dcm", "abc.dcm"),
        ("/", "upload"),
        ("x" * 500, "x" * 200),
        ("scan\u202egpj.exe", "scangpj.exe"),
        ("a\u200bb\ufeff.dcm", "ab.dcm"),
        ("\u2028\u2029\u202e", "upload"),
        ("山田\u200d.dcm", "山田.dcm"),
    ],
)
def test_client_names_become_labels_never_paths(name, label):
    assert safe_source_name(name) == label
