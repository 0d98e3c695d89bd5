"""The project's one exception family.

Every error a user can cause (a bad file, a bad CSV, a bad config key, a missing
checkpoint) is a `DetectError`. Its message is one line that names the file or key and
the problem, so the CLI can print `error: <message>` and exit with code 2 without a
traceback. Code that catches errors per file in a batch catches `DetectError` only:
anything else is a bug and must surface.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: str) -> str:
    """`text` on one line: control characters (a newline in a file name, ANSI escapes) and
    Unicode line/paragraph separators written as backslash escapes, everything else as is.

    The one place the CLI's error, warning and note lines (and prepare's list of bad files)
    pass through, so a file named 'a\nb.dcm' cannot split or forge a line of output.
    """
    if text.isprintable():
        return text
    out = []
    for char in text:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif unicodedata.category(char) in ("Cc", "Zl", "Zp"):
            code = ord(char)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(char)
    return "".join(out)


class DetectError(Exception):
    """Base class: a user-facing, one-line error. Exit code 2 in the CLI."""

    exit_code = 2


class DataFormatError(DetectError):
    """A file exists but its content is not what the format promises."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class DicomReadError(DataFormatError):
    """A DICOM file cannot be read: not DICOM, empty, truncated, no pixels, RGB, multi-frame..."""


class ImageReadError(DataFormatError):
    """A PNG/JPEG file cannot be read."""


class LabelFileError(DataFormatError):
    """A label CSV (RSNA labels, class info, a predictions CSV) is malformed."""


class ConfigError(DetectError):
    """A config file or `--set` override is invalid: unknown key, wrong type, bad value."""


class CheckpointError(DetectError):
    """A checkpoint is missing, unreadable or does not match the model."""


class OutputWriteError(DetectError):
    """An output file cannot be written (full disk, read-only folder, a file where a folder
    should be...). The previous file of that name, if any, is left as it was."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class WeightsUnavailableError(DetectError):
    """Pretrained weights were requested but cannot be obtained (offline, missing file)."""


class DicomWebError(DetectError):
    """A DICOMweb server cannot be reached or answers with an error: names the URL and the status."""


class ModelOutputError(DetectError):
    """A model answers with unusable outputs (NaN or infinite scores or boxes): a broken
    checkpoint. Never read as a prediction; the server answers 500 with this message."""

    http_status = 500
