"""data_prep.atomic: complete-or-untouched writes, one-line errors, no debris, blocked paths found early."""

from __future__ import annotations

import errno
import os
import stat
import threading

import pytest

from data_prep import atomic
from data_prep.atomic import (
    atomic_write,
    check_writable,
    copy_file_atomic,
    is_temp_name,
    remove_stale_temps,
    write_bytes_atomic,
    write_text_atomic,
)
from data_prep.errors import DetectError, OutputWriteError
from data_prep.manifest import write_manifest
from tests.data_prep.fs_fixtures import fill_disk, is_root, read_only_filesystem, small_filesystem
from tests.data_prep.test_manifest import RECORDS


def _names(folder):
    return sorted(p.name for p in folder.iterdir())


def test_write_replaces_the_target_and_leaves_nothing_else(tmp_path):
    target = tmp_path / "sub" / "boxes.json"
    write_text_atomic(target, "first\n")
    write_text_atomic(target, "second\r\nline\n")
    assert target.read_bytes() == b"second\r\nline\n"  # UTF-8, newlines as given
    assert _names(target.parent) == ["boxes.json"]


def test_a_written_file_gets_the_mode_open_would_give_it(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    write_bytes_atomic(tmp_path / "a.png", b"png")
    assert stat.S_IMODE((tmp_path / "a.png").stat().st_mode) == 0o666 & ~umask  # mkstemp alone gives 0600


def test_no_space_left_keeps_the_previous_file_and_says_so_in_one_line(tmp_path, monkeypatch):
    target = tmp_path / "boxes.json"
    target.write_text('{"valid": true}\n')

    def disk_full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic.os, "fsync", disk_full)
    with pytest.raises(OutputWriteError) as excinfo:
        write_text_atomic(target, '{"valid": "but never complete"}\n' * 1000)
    assert str(excinfo.value) == f"{target}: cannot write (No space left on device)"
    assert isinstance(excinfo.value, DetectError)
    assert target.read_text() == '{"valid": true}\n'
    assert _names(tmp_path) == ["boxes.json"]


def test_a_full_file_system_keeps_the_previous_file(tmp_path):
    with small_filesystem(tmp_path / "full", size_kib=256) as full:
        target = full / "boxes.json"
        target.write_text('{"valid": true}\n')
        fill_disk(full)
        with pytest.raises(OutputWriteError, match=r"boxes\.json: cannot write \(No space left on device\)$"):
            write_text_atomic(target, "x" * 100_000)
        assert target.read_text() == '{"valid": true}\n'
        assert _names(full) == ["boxes.json", "fill"]


def test_an_error_of_the_writer_itself_removes_the_temporary_file(tmp_path):
    target = tmp_path / "last.pt"
    target.write_bytes(b"old")
    with pytest.raises(ValueError, match="a bug"):  # not a write failure: it stays what it is
        with atomic_write(target) as handle:
            handle.write(b"half")
            raise ValueError("a bug")
    with pytest.raises(OutputWriteError, match=r"last\.pt: cannot write \(unexpected pos 576 vs 534\)$"):
        with atomic_write(target, catch=(OSError, RuntimeError)) as handle:
            handle.write(b"half")
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")
    assert target.read_bytes() == b"old" and _names(tmp_path) == ["last.pt"]


def test_two_writers_of_one_file_never_collide(tmp_path):
    """Two prepares of one folder at once do not share a temporary name (a fixed `<name>.tmp` made both fail)."""
    target = tmp_path / "manifest.csv"
    texts = [f"writer {i}\n" * 50_000 for i in range(2)]
    errors = []

    def write_many(text):
        try:
            for _ in range(20):
                write_text_atomic(target, text, durable=False)
        except Exception as exc:  # noqa: BLE001 - any failure of either thread fails the test
            errors.append(exc)

    threads = [threading.Thread(target=write_many, args=(t,)) for t in texts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert target.read_text() in texts
    assert _names(tmp_path) == ["manifest.csv"]


def test_two_prepares_writing_one_manifest_folder_both_succeed(tmp_path):
    def write():
        for _ in range(5):
            write_manifest(
                tmp_path, RECORDS, dataset="rsna", data_root=tmp_path, seed=0, val_fraction=0.1, test_fraction=0.1
            )

    threads = [threading.Thread(target=write) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert _names(tmp_path) == ["bad_files.csv", "manifest.csv", "prepare.json", "splits.csv", "summary.json"]


def test_copy_replaces_the_destination(tmp_path):
    (tmp_path / "last.pt").write_bytes(b"epoch 3" * 1000)
    (tmp_path / "best.pt").write_bytes(b"epoch 1")
    copy_file_atomic(tmp_path / "last.pt", tmp_path / "best.pt")
    assert (tmp_path / "best.pt").read_bytes() == b"epoch 3" * 1000
    assert _names(tmp_path) == ["best.pt", "last.pt"]


def test_a_file_where_a_folder_should_be_is_named(tmp_path):
    (tmp_path / "f").write_text("a file")
    with pytest.raises(OutputWriteError) as excinfo:
        write_text_atomic(tmp_path / "f" / "x.json", "{}")
    assert str(excinfo.value) == f"{tmp_path / 'f' / 'x.json'}: cannot write: {tmp_path / 'f'} is a file, not a folder"


# ------------------------------------------------------------------------- check_writable


@pytest.mark.parametrize(
    "expect, make, message",
    [
        ("file", lambda p: p.mkdir(), "{p}: --out must name a file, not a folder"),
        ("folder", lambda p: p.write_text("x"), "{p}: --out must name a folder, but this is a file"),
        ("file", lambda p: os.mkfifo(p), "{p}: --out is not a regular file (a device, FIFO or socket)"),
    ],
)
def test_check_writable_refuses_the_wrong_kind_of_path(tmp_path, expect, make, message):
    path = tmp_path / "out"
    make(path)
    with pytest.raises(OutputWriteError) as excinfo:
        check_writable(path, expect=expect, what="--out")
    assert str(excinfo.value) == message.format(p=path)


@pytest.mark.parametrize("expect", ["file", "folder"])
def test_check_writable_names_an_ancestor_that_is_a_file(tmp_path, expect):
    (tmp_path / "f").write_text("a file")
    path = tmp_path / "f" / "deeper" / "x.json"
    with pytest.raises(OutputWriteError) as excinfo:
        check_writable(path, expect=expect)
    assert str(excinfo.value) == f"{path}: cannot write: {tmp_path / 'f'} is a file, not a folder"


def test_check_writable_accepts_missing_folders_and_creates_nothing(tmp_path):
    assert check_writable(tmp_path / "a" / "b" / "boxes.json", expect="file") == tmp_path / "a" / "b" / "boxes.json"
    check_writable(tmp_path / "run", expect="folder")
    (tmp_path / "existing.json").write_text("{}")
    check_writable(tmp_path / "existing.json", expect="file")
    assert _names(tmp_path) == ["existing.json"]


def test_check_writable_refuses_a_read_only_file_system(tmp_path):
    with read_only_filesystem(tmp_path / "ro") as ro:
        with pytest.raises(OutputWriteError) as excinfo:
            check_writable(ro / "new" / "boxes.json", expect="file")
        assert str(excinfo.value) == f"{ro / 'new' / 'boxes.json'}: cannot write in {ro} (Read-only file system)"


@pytest.mark.skipif(is_root(), reason="root writes into a mode-555 folder; the read-only mount covers root")
def test_check_writable_refuses_a_folder_without_write_permission(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    try:
        with pytest.raises(OutputWriteError, match=r"cannot write in .*locked \(Permission denied\)$"):
            check_writable(locked / "run", expect="folder")
    finally:
        locked.chmod(0o755)


def test_check_writable_finds_what_mkstemp_refuses(tmp_path, monkeypatch):
    def refused(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(atomic.tempfile, "mkstemp", refused)
    with pytest.raises(OutputWriteError) as excinfo:
        check_writable(tmp_path / "boxes.json", expect="file")
    assert str(excinfo.value) == f"{tmp_path / 'boxes.json'}: cannot write in {tmp_path} (Permission denied)"


# -------------------------------------------------------------------------------- debris


def test_stale_temporary_files_are_recognised_and_only_they_are_removed(tmp_path):
    import tempfile

    fd, left = tempfile.mkstemp(prefix=".last.pt.", suffix=".tmp", dir=tmp_path)  # what a SIGKILL leaves
    os.close(fd)
    keep = ["notes.tmp", ".hidden.tmp", "last.pt", ".last.pt.tmp"]
    for name in keep:
        (tmp_path / name).write_text("keep")
    assert is_temp_name(os.path.basename(left))
    assert remove_stale_temps(tmp_path) == [tmp_path / os.path.basename(left)]
    assert _names(tmp_path) == sorted(keep)
    assert remove_stale_temps(tmp_path / "missing") == []
