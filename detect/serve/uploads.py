"""The request body of POST /v1/predict, read under the size cap and parsed in memory.

    read_capped_body(request, max_bytes)     the body, refusing (413) a declared Content-Length
                                             above the cap and, while the chunks arrive, any
                                             body that grows past it
    extract_upload(body, content_type)       (bytes, client file name or None): the `file` field
                                             of a multipart/form-data body, or the raw body

Nothing touches the disk here and the client's file name is only kept as a label (the
boxes.json `source`), never used as a path.
"""

from __future__ import annotations

import re
import unicodedata
from typing import AsyncIterator, Protocol

from python_multipart import MultipartParser
from python_multipart.multipart import parse_options_header

from detect.serve.sniff import UploadError

UPLOAD_FIELD = "file"
_SOURCE_MAX_CHARS = 200
_UNSAFE_SOURCE_CHARS = re.compile(r"[\x00-\x1f\x7f]")
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})  # control, format, surrogate, line/paragraph separator


class PayloadTooLarge(UploadError):
    status = 413


class BadRequest(UploadError):
    status = 400


class _StreamingRequest(Protocol):
    headers: dict[str, str] | object

    def stream(self) -> AsyncIterator[bytes]: ...


def too_large(max_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"upload larger than the server's limit of {max_bytes} bytes (--max-upload-mb {max_bytes / 1024 / 1024:.3g})"
    )


async def read_capped_body(request: _StreamingRequest, max_bytes: int) -> bytes:
    """The whole body, never holding more than `max_bytes` (+ one chunk) of it."""
    declared = request.headers.get("content-length")  # type: ignore[attr-defined]
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise too_large(max_bytes)
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > max_bytes:
            raise too_large(max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)


def safe_source_name(name: str | None) -> str:
    """A label for the entry's `source`: the client's base name without control characters and
    without Unicode format characters (category Cf: a right-to-left override, U+202E, would show
    'gpj.exe' as 'exe.jpg'; zero-width ones hide text) or line separators, or 'upload'. It is
    echoed back to the client, never logged and never used as a path."""
    if not name:
        return "upload"
    base = re.split(r"[\\/]", name)[-1]
    base = "".join(c for c in base if unicodedata.category(c) not in _UNSAFE_CATEGORIES)
    base = _UNSAFE_SOURCE_CHARS.sub("", base).strip()[:_SOURCE_MAX_CHARS]
    return base or "upload"


def _parse_multipart(body: bytes, boundary: bytes) -> tuple[bytes, str | None]:
    parts: list[dict] = []
    state: dict = {}

    def on_part_begin() -> None:
        state.clear()
        state.update(headers={}, data=[], field=b"", value=b"")

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value"] += data[start:end]

    def on_header_end() -> None:
        state["headers"][state["field"].lower()] = state["value"]
        state["field"], state["value"] = b"", b""

    def on_part_data(data: bytes, start: int, end: int) -> None:
        state["data"].append(data[start:end])

    def on_part_end() -> None:
        parts.append(dict(state))

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    try:
        parser.write(body)
        parser.finalize()
    except Exception as exc:  # python-multipart raises its own errors for a malformed body
        raise BadRequest(f"malformed multipart/form-data body: {type(exc).__name__}") from None
    for part in parts:
        _disposition, options = parse_options_header(part["headers"].get(b"content-disposition", b""))
        if options.get(b"name") == UPLOAD_FIELD.encode():
            filename = options.get(b"filename")
            return b"".join(part["data"]), filename.decode("utf-8", "replace") if filename else None
    raise BadRequest(f"multipart/form-data upload without a '{UPLOAD_FIELD}' field")


def extract_upload(body: bytes, content_type: str | None) -> tuple[bytes, str | None]:
    """(file bytes, client file name or None) of a multipart body's `file` field or a raw body."""
    media_type, options = parse_options_header(content_type or "")
    if media_type == b"multipart/form-data":
        boundary = options.get(b"boundary")
        if not boundary:
            raise BadRequest("multipart/form-data without a boundary")
        data, name = _parse_multipart(body, boundary)
    else:
        data, name = body, None
    if not data:
        raise BadRequest("empty upload: send a DICOM, PNG or JPEG file as the body or as the multipart field 'file'")
    return data, name
