"""Real file-system failures for the write tests: a small tmpfs to fill up, a read-only folder.

Both mount a tmpfs, which needs root: the tests that use them are skipped for other users
(`.ci/run` runs as root, as CI does). Where root is not needed, a portable twin of each test
injects the same OSError instead.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def is_root() -> bool:
    return getattr(os, "geteuid", lambda: -1)() == 0


def _mount_tmpfs(folder: Path, options: str) -> None:
    if not is_root():
        pytest.skip("mounting a tmpfs needs root (CI runs the suite as root)")
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"mount -t tmpfs -o {options} {folder} failed as root: {done.stderr.strip()}")


@contextmanager
def small_filesystem(folder: Path, size_kib: int = 512) -> Iterator[Path]:
    """`folder` as a fresh tmpfs of `size_kib` KiB (unmounted afterwards)."""
    _mount_tmpfs(folder, f"size={size_kib}k")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@contextmanager
def read_only_filesystem(folder: Path) -> Iterator[Path]:
    """`folder` as an empty tmpfs mounted read-only: not writable even for root."""
    _mount_tmpfs(folder, "ro,size=64k")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill_disk(folder: Path) -> Path:
    """Write zeros into `folder`/fill until the file system reports ENOSPC; return the filler."""
    filler = folder / "fill"
    with open(filler, "wb", buffering=0) as handle:
        while True:
            try:
                if handle.write(bytes(4096)) == 0:
                    break
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                break
    return filler
