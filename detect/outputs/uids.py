"""Deterministic DICOM UIDs for the objects `detect` derives from a source image.

    derived_uid(source_uid, model_sha256, kind)  -> "2.25.<decimal of a UUID>"

A UID under the 2.25 root is the decimal form of a UUID (DICOM PS3.5 B.2), so no registered
organisation root is needed. Version-5 (name-based) UUIDs make it a pure function of its
inputs: the same source image run through the same checkpoint gives the same SR and GSPS
SOP Instance UIDs (and the same series UIDs for one study), so storing them again to a PACS
replaces nothing and duplicates nothing. A different checkpoint or a different kind of
object gives a different UID.
"""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

# A fixed namespace for this project's name-based UUIDs (itself a uuid5 of the project's name
# under the URL namespace, written out so it never changes with the code around it).
DETECT_UID_NAMESPACE = uuid.UUID("6f1c7c1e-3b0a-5d0e-9a57-0c7a2f4d8b11")
MAX_UID_CHARS = 64  # DICOM UI value representation

# The kinds of derived object, each its own UID space.
UID_KINDS: tuple[str, ...] = ("sr", "gsps", "sr-series", "gsps-series", "device", "tracking")


def derived_uid(source_uid: str, model_sha256: str, kind: str) -> str:
    """The UID of the `kind` object derived from `source_uid` by the model `model_sha256`.

    `source_uid`: the source's SOP Instance UID (Study Instance UID for series kinds); `kind`
    one of UID_KINDS, optionally with a suffix after ':' (e.g. 'tracking:3' for box 3).
    Raises ValueError on an empty source UID or an unknown kind.
    """
    if not source_uid:
        raise ValueError("a derived DICOM UID needs the source's UID, got an empty one")
    if kind.split(":", 1)[0] not in UID_KINDS:
        raise ValueError(f"unknown derived UID kind '{kind}'; choose one of: {', '.join(UID_KINDS)}")
    name = f"{source_uid}|{model_sha256}|{kind}"
    uid = f"2.25.{uuid.uuid5(DETECT_UID_NAMESPACE, name).int}"
    assert len(uid) <= MAX_UID_CHARS  # 2.25. + at most 39 digits
    return uid


def file_sha256(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    """The hex SHA-256 of a file (the checkpoint's identity in derived UIDs), read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_bytes), b""):
            digest.update(chunk)
    return digest.hexdigest()
