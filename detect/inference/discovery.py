"""Finding the images to predict in what a user names: files, folders, whole PACS exports.

    listing = collect_input_files(paths, glob="**/*")     InputListing(files, problems)

A file named on the command line is taken as given, whatever its name (it is read, and
reported if unreadable). A folder is walked recursively, in sorted order, following symlinks:
- a file with a known image suffix (.dcm .png .jpg .jpeg, any case) is taken;
- a file with any other name is taken when its first bytes look like an image
  (`sniff_image_kind`): the DICM marker at byte 128, a plausible implicit-VR DICOM start
  (PACS exports often drop both the preamble and the extension), or the PNG / JPEG signature;
- `glob` (matched against the path relative to the folder) narrows what is considered at all;
- a symlink loop or an unreadable folder is a problem (listed, reported), never fatal.
The same file named twice (a file and its folder, or through two links) is listed once.
"""

from __future__ import annotations

import fnmatch
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from data_prep.errors import DetectError
from data_prep.images import SNIFF_BYTES, sniff_image_kind

IMAGE_SUFFIXES: tuple[str, ...] = (".dcm", ".png", ".jpg", ".jpeg")


@dataclass
class InputListing:
    """The files to read, in order, and what could not be searched (one line each)."""

    files: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _looks_like_image(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return sniff_image_kind(handle.read(SNIFF_BYTES)) is not None
    except OSError:
        return True  # unreadable: taken, so that it is reported with its reason instead of vanishing


def _is_regular_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except OSError:
        return False


def _walk(folder: Path, glob: str | None, listing: InputListing) -> list[Path]:
    """Every candidate image under `folder`, sorted, following symlinks without looping."""
    found: list[Path] = []
    seen_dirs: set[tuple[int, int]] = set()

    def on_error(error: OSError) -> None:
        listing.problems.append(f"{error.filename}: cannot read the folder ({error.strerror or error})")

    for dirpath, dirnames, filenames in os.walk(folder, onerror=on_error, followlinks=True):
        here = Path(dirpath)
        try:
            info = here.stat()
        except OSError as exc:
            listing.problems.append(f"{here}: cannot read the folder ({exc.strerror or exc})")
            dirnames[:] = []
            continue
        if (info.st_dev, info.st_ino) in seen_dirs:
            listing.problems.append(f"{here}: a symlink loop (this folder was already searched); skipped")
            dirnames[:] = []
            continue
        seen_dirs.add((info.st_dev, info.st_ino))
        dirnames.sort()
        for name in sorted(filenames):
            path = here / name
            relative = path.relative_to(folder).as_posix()
            if glob is not None and not fnmatch.fnmatch(relative, glob):
                continue
            if not _is_regular_file(path):
                continue  # a FIFO, socket or device in an archive is not an image; broken links too
            if path.suffix.lower() in IMAGE_SUFFIXES or _looks_like_image(path):
                found.append(path)
    return sorted(found)  # one order for the whole tree: what torchrun shards and resume relies on


def collect_input_files(paths: Sequence[str | Path], glob: str | None = None) -> InputListing:
    """Expand the command line's paths into the files to read (see the module docstring).

    Raises DetectError when `paths` is empty or a folder holds no image at all.
    """
    if not paths:
        raise DetectError("no input given: pass DICOM/PNG/JPEG files or folders")
    listing = InputListing()
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = _walk(path, glob, listing)
            if not found:
                what = f"matching --glob '{glob}'" if glob else "(by suffix or by content)"
                raise DetectError(
                    f"{path}: no DICOM, PNG or JPEG files {what} found (folders are searched recursively)"
                )
            files.extend(found)
        else:
            files.append(path)
    seen: set[Path] = set()
    for f in files:  # the same file named twice (a file and its folder) is predicted once
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            listing.files.append(f)
    return listing
