"""Every file the project writes goes through here: a target is either complete or untouched.

    write_text_atomic(path, text)           CSVs, JSON, YAML, markdown (UTF-8, newlines as given)
    write_bytes_atomic(path, data)          PNGs encoded in memory
    with atomic_write(path) as handle:      writers that stream into a binary file object:
        torch.save(payload, handle)         checkpoints, matplotlib figures
    copy_file_atomic(source, destination)   best.pt from last.pt
    check_writable(path, expect="file")     a blocked output path, found before the work starts
    remove_stale_temps(folder)              the temporary files of a process killed mid-write

How a write happens: the bytes go to a temporary file with a unique name in the target's own
folder (tempfile.mkstemp: two processes writing one target never share a temporary file), are
flushed and fsynced, and the temporary file is then renamed onto the target with os.replace.
The rename is atomic within a file system, so a reader, a second writer or a process killed
mid-write sees the old complete file or the new complete file, never a mix. Any failure on the
way (no space left, a read-only folder, a quota, the writer's own error) removes the temporary
file, leaves the previous target as it was, and raises OutputWriteError: one line naming the
target and the operating system's reason.

A process killed with SIGKILL cannot clean up after itself: its temporary file stays, named
`.<target name>.<8 random characters>.tmp`. `remove_stale_temps` recognises exactly that
pattern; the run folder calls it on resume.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Literal

from data_prep.errors import OutputWriteError

TEMP_SUFFIX = ".tmp"
# mkstemp's random part is 8 characters of [a-z0-9_]; nothing else the project writes looks like this.
_TEMP_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")
_PROBE_PREFIX = ".detect-write-check."
_FULL_BELOW_BYTES = 64 * 1024  # a disk with less free space than this counts as full


def _current_umask() -> int:
    """The process umask, read once at import (os.umask can only be read by setting it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# mkstemp creates its file with mode 0600; the target gets what open() would have given it.
_FILE_MODE = 0o666 & ~_current_umask()


def _is_full(folder: Path) -> bool:
    try:
        usage = os.statvfs(folder)
    except (OSError, AttributeError):  # AttributeError: no statvfs on Windows
        return False
    return usage.f_bavail * usage.f_frsize < _FULL_BELOW_BYTES


def _os_reason(exc: BaseException, folder: Path | None = None) -> str:
    """The operating system's words for a failure, in one line: 'No space left on device'.

    A writer that hides the OSError (torch.save reports a short write on a full disk as
    RuntimeError 'unexpected pos ...') is explained by the state of the disk when it is full."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    if folder is not None and _is_full(folder):
        return os.strerror(errno.ENOSPC)
    text = " ".join(str(exc).split())
    text = re.sub(r"^\[enforce fail at [^\]]*\]\s*\.?\s*", "", text)  # torch's C++ prefix says nothing to a user
    return (text or type(exc).__name__)[:200]


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable; folders cannot be opened for fsync everywhere (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _blocking_file(folder: Path) -> Path | None:
    """The first existing ancestor of `folder` (itself included) when it is not a folder."""
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            return None if candidate.is_dir() else candidate
    return None


@contextmanager
def atomic_write(
    path: str | Path,
    *,
    durable: bool = True,
    catch: tuple[type[BaseException], ...] = (OSError,),
) -> Iterator[BinaryIO]:
    """A binary file object whose content replaces `path` when the block ends without an error.

    Parent folders are created. `durable`: fsync the file and its folder (off only for files
    that can be rebuilt and are checked on reuse, such as the image cache). An exception of a
    type in `catch` (raised by the writing itself or inside the block, e.g. RuntimeError from
    torch.save) becomes an OutputWriteError naming `path`; any other exception propagates as it
    is. Either way the temporary file is removed and `path` keeps its previous content.
    """
    target = Path(path)
    temp: Path | None = None
    try:
        blocker = _blocking_file(target.parent)
        if blocker is not None:
            raise OutputWriteError(target, f"cannot write: {blocker} is a file, not a folder")
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TEMP_SUFFIX, dir=target.parent)
        temp = Path(temp_name)
        with os.fdopen(fd, "wb") as handle:
            if hasattr(os, "fchmod"):
                os.fchmod(handle.fileno(), _FILE_MODE)
            yield handle
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(temp, target)
        temp = None
        if durable:
            _fsync_folder(target.parent)
    except OutputWriteError:
        raise
    except catch as exc:
        raise OutputWriteError(target, f"cannot write ({_os_reason(exc, target.parent)})") from None
    finally:
        if temp is not None:
            try:
                temp.unlink(missing_ok=True)
            except OSError:
                pass  # the folder vanished or turned read-only: nothing left to clean


def write_bytes_atomic(path: str | Path, data: bytes, *, durable: bool = True) -> Path:
    """Replace `path` with `data` (see `atomic_write`). Returns the path."""
    with atomic_write(path, durable=durable) as handle:
        handle.write(data)
    return Path(path)


def write_error(path: str | Path, exc: OSError) -> OutputWriteError:
    """The one-line OutputWriteError of a failed write to `path` by a writer that appends in
    place (a log, a JSON Lines part), so that it reads like an atomic write's."""
    return OutputWriteError(Path(path), f"cannot write ({_os_reason(exc, Path(path).parent)})")


def write_text_atomic(path: str | Path, text: str, *, durable: bool = True) -> Path:
    """Replace `path` with `text` encoded as UTF-8, newlines written as given. Returns the path."""
    return write_bytes_atomic(path, text.encode("utf-8"), durable=durable)


def copy_file_atomic(source: str | Path, destination: str | Path) -> Path:
    """Replace `destination` with a copy of `source` (see `atomic_write`). Returns the destination."""
    with atomic_write(destination) as handle:
        with open(source, "rb") as original:
            shutil.copyfileobj(original, handle, length=1 << 20)
    return Path(destination)


def is_temp_name(name: str) -> bool:
    """True for the name of a temporary file `atomic_write` (or `check_writable`) creates."""
    return bool(_TEMP_NAME.match(name))


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Delete the temporary files a killed process left in `folder` (not recursive); return them.

    Only for a folder no other live process is writing into (a run folder being resumed).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for entry in sorted(folder.iterdir()):
        if is_temp_name(entry.name) and entry.is_file():
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def check_writable(path: str | Path, *, expect: Literal["file", "folder"], what: str = "the output") -> Path:
    """Fail now, before any work, when `path` cannot be written as a `expect` ('file' | 'folder').

    Catches a folder given where a file is expected and the reverse, a device or FIFO as an
    output file, an ancestor that is a file (`--out f/x.json` with `f` a file), and a folder
    that cannot be written (read-only, no permission, read-only file system): the latter by
    creating and deleting a temporary file in the deepest folder that exists, which is the
    only test that is right for root, ACLs and read-only mounts alike. Creates nothing that
    stays. `what` names the option in messages ('--out'). Raises OutputWriteError; returns `path`.
    """
    target = Path(path)
    try:
        if target.exists():
            if expect == "file" and target.is_dir():
                raise OutputWriteError(target, f"{what} must name a file, not a folder")
            if expect == "folder" and not target.is_dir():
                raise OutputWriteError(target, f"{what} must name a folder, but this is a file")
            if expect == "file" and not target.is_file():
                raise OutputWriteError(target, f"{what} is not a regular file (a device, FIFO or socket)")
        folder = target if expect == "folder" else target.parent
        blocker = _blocking_file(folder)
        if blocker is not None:
            raise OutputWriteError(target, f"cannot write: {blocker} is a file, not a folder")
        existing = next(candidate for candidate in (folder, *folder.parents) if candidate.exists())
        try:
            fd, probe = tempfile.mkstemp(prefix=_PROBE_PREFIX, suffix=TEMP_SUFFIX, dir=existing)
        except OSError as exc:
            raise OutputWriteError(target, f"cannot write in {existing} ({_os_reason(exc)})") from None
        os.close(fd)
        os.unlink(probe)
    except OutputWriteError:
        raise
    except OSError as exc:  # an unreadable ancestor, a name too long, ...
        raise OutputWriteError(target, f"cannot write ({_os_reason(exc)})") from None
    return target
