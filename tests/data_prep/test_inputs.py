"""data_prep.inputs: only regular files are opened (never blocking), content named by magic bytes."""

from __future__ import annotations

import os
import threading

import pytest

from data_prep.errors import ImageReadError, printable
from data_prep.inputs import content_kind, open_regular_file


def test_content_kind_from_magic_bytes():
    assert content_kind(b"\x89PNG\r\n\x1a\n....") == "a PNG file"
    assert content_kind(b"\xff\xd8\xff\xe0") == "a JPEG file"
    assert content_kind(bytes(128) + b"DICM") == "a DICOM file"
    assert content_kind(b"patientId,x,y") is None


def test_regular_file_opens_with_its_size(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(b"12345")
    handle, size = open_regular_file(path, ImageReadError)
    with handle:
        assert size == 5 and handle.read() == b"12345"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")
def test_fifo_and_folder_are_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    errors: list[BaseException] = []

    def open_it() -> None:
        try:
            open_regular_file(fifo, ImageReadError)
        except ImageReadError as exc:
            errors.append(exc)

    opener = threading.Thread(target=open_it, daemon=True)
    opener.start()
    opener.join(timeout=5)
    assert not opener.is_alive(), "opening a FIFO blocked"
    assert (
        str(errors[0]) == f"{fifo}: a FIFO (named pipe), not a regular file: refused (reading it could block forever)"
    )
    with pytest.raises(ImageReadError, match="is a folder, not a file"):
        open_regular_file(tmp_path, ImageReadError)
    with pytest.raises(ImageReadError, match="cannot open: No such file or directory"):
        open_regular_file(tmp_path / "nope", ImageReadError)
    with pytest.raises(ImageReadError, match="a character device, not a regular file"):
        open_regular_file("/dev/null", ImageReadError)


def test_printable_escapes_control_characters_only():
    assert printable("scan 1.dcm: ok é") == "scan 1.dcm: ok é"
    assert printable("two\nlines.dcm\r\t") == "two\\nlines.dcm\\r\\t"
    assert printable("\x1b[31mred\u2028") == "\\x1b[31mred\\u2028"
