"""File names built from text the project does not control: a DICOM header, a DICOMweb
server's answer, an upload's name.

    is_dicom_uid(text)                 DICOM UI rules: <= 64 chars, digits and dots, no leading zeros
    check_dicom_uid(text, what, where) the UID, or an UnsafeNameError naming where it came from
    child_path(folder, name)           folder / name, refused unless it stays directly in `folder`

Every path built from such text goes through `child_path`: one component, no separator, no
'..', no control character, and the resolved result still inside the resolved folder (so a
symbolic link named like the file cannot lead out either). A DICOM UID is checked against the
UI value representation (PS3.5 9.1) before it becomes part of a name or a URL.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from data_prep.errors import DetectError, printable

MAX_UID_CHARS = 64  # DICOM PS3.5 6.2, value representation UI
MAX_NAME_BYTES = 255  # NAME_MAX of common file systems
# Components of digits, separated by single dots; a component is "0" or starts with 1-9.
_UID_PATTERN = re.compile(r"(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*))*")


class UnsafeNameError(DetectError):
    """Text from a header, a server or an upload cannot be used as (part of) a file name."""


def shown(text: str, limit: int = 80) -> str:
    """`text` for an error line: one line (escapes), at most `limit` characters, with a note of the rest."""
    text = str(text)
    cut = text[:limit]
    rest = f"... ({len(text)} characters)" if len(text) > limit else ""
    return printable(cut) + rest


def is_dicom_uid(text: object) -> bool:
    """True when `text` is a valid DICOM UID: 1-64 characters, digits in dot-separated
    components, no empty component and no leading zero in one (except the component "0")."""
    return isinstance(text, str) and 0 < len(text) <= MAX_UID_CHARS and _UID_PATTERN.fullmatch(text) is not None


def check_dicom_uid(text: object, what: str, where: str) -> str:
    """`text` (trailing padding, a space or NUL, removed) when it is a valid DICOM UID; else an
    UnsafeNameError: '<where>: <what> '<text>' is not a valid DICOM UID (...)'."""
    value = text.rstrip(" \x00") if isinstance(text, str) else text
    if not is_dicom_uid(value):
        raise UnsafeNameError(
            f"{where}: {what} '{shown(str(text))}' is not a valid DICOM UID "
            f"(at most {MAX_UID_CHARS} characters: digits in dot-separated components, "
            "no leading zeros)"
        )
    assert isinstance(value, str)
    return value


def child_path(folder: str | Path, name: str) -> Path:
    """`folder / name`, when `name` is one plain file name that stays inside `folder`.

    Refused (UnsafeNameError naming the folder and the name): an empty name, '.', '..', a path
    separator (either slash), a NUL or other control character, a name over 255 bytes, or a
    result that resolves outside `folder` (a symbolic link already in `folder`).
    """
    folder = Path(folder)
    problem = None
    if not name or name in (".", ".."):
        problem = "is not a file name"
    elif "/" in name or "\\" in name or (os.sep in name) or (os.altsep and os.altsep in name):
        problem = "holds a path separator"
    elif not name.isprintable():
        problem = "holds a control character"
    elif len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
        problem = f"is longer than {MAX_NAME_BYTES} bytes"
    if problem is None:
        path = folder / name
        root = folder.resolve()
        target = path.resolve()
        if target.parent != root:
            problem = "leads outside the folder"
        else:
            return path
    raise UnsafeNameError(f"{folder}: the file name '{shown(name)}' {problem}; refused")
