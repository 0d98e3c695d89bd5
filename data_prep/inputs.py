"""Opening an input file without trusting it, and saying what its first bytes show it to be.

    handle, size_bytes = open_regular_file(path, DicomReadError)   # or ImageReadError
    kind = content_kind(head_bytes)                                # 'a PNG file', ... or None

Every reader of a user's file (data_prep.dicom, data_prep.images) opens it here, so that:

- only a regular file is read: a FIFO, socket or device would block forever or never end
  (`open()` on a FIFO waits for a writer), and a folder is not a file. The file is opened
  with O_NONBLOCK and checked with fstat on the open descriptor, so even a path swapped for
  a FIFO between a check and the open cannot hang the reader;
- a file whose content is another format than its name says ('scan.dcm' holding a PNG) is
  named by what it is, from its magic bytes.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

from data_prep.errors import DataFormatError

__all__ = ["content_kind", "open_regular_file"]

_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # absent on Windows, where FIFOs are not files anyway

# Magic bytes of the formats a mislabelled radiograph is likely to be, first match wins.
_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\x89PNG\r\n\x1a\n", "a PNG file"),
    (0, b"\xff\xd8\xff", "a JPEG file"),
    (0, b"\x00\x00\x00\x0cjP  \r\n\x87\n", "a JPEG 2000 file"),
    (0, b"\xff\x4f\xff\x51", "a JPEG 2000 codestream"),
    (0, b"GIF8", "a GIF file"),
    (0, b"II*\x00", "a TIFF file"),
    (0, b"MM\x00*", "a TIFF file"),
    (0, b"BM", "a BMP file"),
    (0, b"%PDF", "a PDF file"),
    (0, b"PK\x03\x04", "a ZIP archive"),
    (0, b"\x1f\x8b", "a gzip file"),
    (128, b"DICM", "a DICOM file"),
)


def content_kind(head: bytes) -> str | None:
    """What the first bytes of a file (at least 132 of them, when the file has them) show it
    to be, e.g. 'a PNG file'; None when they match no known format."""
    for offset, magic, kind in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return kind
    return None


def _mode_name(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    return "not a regular file"


def open_regular_file(path: str | Path, error: type[DataFormatError]) -> tuple[BinaryIO, int]:
    """Open `path` for binary reading -> (file object, size in bytes); the caller closes it.

    Raises `error(path, reason)` (one line) when the path is missing or unreadable, is a
    folder, or is a FIFO, socket or device: those are refused at once, never read.
    """
    try:
        fd = os.open(path, os.O_RDONLY | _O_NONBLOCK)
    except IsADirectoryError:
        raise error(path, "is a folder, not a file") from None
    except OSError as exc:
        raise error(path, f"cannot open: {exc.strerror or exc}") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise error(path, "is a folder, not a file")
        if not stat.S_ISREG(mode):
            raise error(path, f"{_mode_name(mode)}, not a regular file: refused (reading it could block forever)")
        if _O_NONBLOCK:
            os.set_blocking(fd, True)
        size_bytes = os.fstat(fd).st_size
        return os.fdopen(fd, "rb"), size_bytes
    except BaseException:
        os.close(fd)
        raise
