"""Kermany "Chest X-Ray Images (Pneumonia)": chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}/*.jpeg -> ImageRecords.

File names carry the subtype and the patient (see docs/data-formats.md):

    PNEUMONIA/person1_bacteria_1.jpeg      -> bacterial, patient 'person1'
    PNEUMONIA/person1_virus_6.jpeg         -> viral,     patient 'person1'
    NORMAL/IM-0115-0001.jpeg               -> normal,    patient '0115'
    NORMAL/NORMAL2-IM-0927-0001.jpeg       -> normal,    patient 'NORMAL2-0927'

Person and IM numbers restart in test/ (different children), so test patient ids are
prefixed 'test/'; train/ and val/ share one numbering, so their ids are not prefixed and a
child with images in both folders is one patient (splits.py keeps it in one split).

The dataset has no boxes: records carry has_box_labels=False and empty boxes, so the
detector never learns "no opacity here" from a Kermany image.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from data_prep.codestreams import DEFAULT_MAX_IMAGE_PIXELS
from data_prep.errors import DataFormatError, DetectError
from data_prep.images import read_image
from data_prep.records import BadFile, ImageRecord

KERMANY_DIR = "chest_xray"
SOURCE_SPLITS: tuple[str, ...] = ("train", "val", "test")
LABEL_FOLDERS: tuple[str, ...] = ("NORMAL", "PNEUMONIA")
IMAGE_SUFFIXES: tuple[str, ...] = (".jpeg", ".jpg", ".png")

_PNEUMONIA_NAME = re.compile(r"^person(?P<number>\d+)_(?P<kind>bacteria|virus)_\d+$", re.IGNORECASE)
# 'IM-0115-0001', 'NORMAL2-IM-0927-0001'; a few real names carry one more '-000n' part.
_NORMAL_NAME = re.compile(r"^(?:(?P<prefix>NORMAL2)-)?IM-(?P<number>\d+)(?:-\d+)+$", re.IGNORECASE)
_SUBTYPE_OF_KIND = {"bacteria": "bacterial", "virus": "viral"}


@dataclass(frozen=True)
class KermanyParseResult:
    """What `parse_kermany` found. Paths are relative to the root given to `parse_kermany`."""

    records: list[ImageRecord]
    bad_files: list[BadFile]
    junk_files: list[str]  # files that are not images (.DS_Store, Thumbs.db, ...): skipped, counted


def parse_kermany_filename(relative_path: str | PurePosixPath) -> tuple[str, str, str]:
    """'train/PNEUMONIA/person1_bacteria_1.jpeg' -> ('PNEUMONIA', 'bacterial', 'person1').

    `relative_path` is relative to the chest_xray/ folder: <split>/<LABEL>/<name>. The label is
    the folder; the subtype and patient come from the name and must agree with the folder.
    Test patients are prefixed 'test/' because numbering restarts there.
    Raises DataFormatError(relative_path, reason) for a name or layout it cannot read.
    """
    parts = PurePosixPath(str(relative_path).replace("\\", "/")).parts
    if len(parts) < 3 or parts[-3] not in SOURCE_SPLITS or parts[-2] not in LABEL_FOLDERS:
        raise DataFormatError(relative_path, f"expected <{'|'.join(SOURCE_SPLITS)}>/<{'|'.join(LABEL_FOLDERS)}>/<file>")
    source_split, label, name = parts[-3], parts[-2], parts[-1]
    stem = PurePosixPath(name).stem
    prefix = "test/" if source_split == "test" else ""
    if label == "PNEUMONIA":
        match = _PNEUMONIA_NAME.match(stem)
        if match is None:
            raise DataFormatError(
                relative_path, "PNEUMONIA file name not of the form person<N>_bacteria_<M> or person<N>_virus_<M>"
            )
        subtype = _SUBTYPE_OF_KIND[match["kind"].lower()]
        return label, subtype, f"{prefix}person{int(match['number'])}"
    match = _NORMAL_NAME.match(stem)
    if match is None:
        raise DataFormatError(
            relative_path, "NORMAL file name not of the form IM-<NNNN>-<MMMM> or NORMAL2-IM-<NNNN>-<MMMM>"
        )
    patient = f"NORMAL2-{match['number']}" if match["prefix"] else match["number"]
    return label, "normal", f"{prefix}{patient}"


def find_kermany_base(root: str | Path) -> Path | None:
    """The folder holding {train,val,test}/{NORMAL,PNEUMONIA}: root/chest_xray, or root itself; None if neither."""
    root = Path(root)
    for candidate in (root / KERMANY_DIR, root):
        if any((candidate / split / label).is_dir() for split in SOURCE_SPLITS for label in LABEL_FOLDERS):
            return candidate
    return None


def _is_image_name(name: str) -> bool:
    # '._x.jpeg' (macOS resource forks) and '.DS_Store' are junk even with an image suffix.
    return not name.startswith(".") and PurePosixPath(name).suffix.lower() in IMAGE_SUFFIXES


def list_kermany_files(base: Path) -> tuple[list[Path], list[Path]]:
    """(image candidates, junk files) under base/{train,val,test}, sorted.

    Junk: anything that is not <split>/<NORMAL|PNEUMONIA>/<name>.{jpeg,jpg,png}, plus loose
    files directly in `base`. Other folders next to the splits (a nested chest_xray/ copy,
    __MACOSX/) are not walked: they are not part of the dataset's layout.
    """
    images: list[Path] = []
    junk: list[Path] = [p for p in sorted(base.iterdir()) if p.is_file()]
    for split in SOURCE_SPLITS:
        split_dir = base / split
        if not split_dir.is_dir():
            continue
        for path in sorted(split_dir.rglob("*")):
            if not path.is_file():
                continue
            rel_parts = path.relative_to(split_dir).parts
            if len(rel_parts) == 2 and rel_parts[0] in LABEL_FOLDERS and _is_image_name(rel_parts[1]):
                images.append(path)
            else:
                junk.append(path)
    return images, junk


def _image_size(
    path: str, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
) -> tuple[str, tuple[int, int] | None, str | None]:
    """Decode one image fully (the only way to know it is not corrupt); return (path, (h, w) or None, reason)."""
    try:
        pixels = read_image(path, max_pixels=max_pixels)
    except DetectError as exc:
        return path, None, getattr(exc, "reason", str(exc))
    return path, (int(pixels.shape[0]), int(pixels.shape[1])), None


def read_image_sizes(
    paths: list[Path], workers: int = 1, *, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
) -> dict[str, tuple[tuple[int, int] | None, str | None]]:
    """{str(path): ((height, width) or None, failure reason or None)}, decoding in `workers` processes;
    images over `max_pixels` are failures, found before decoding."""
    items = [str(p) for p in paths]
    read_one = functools.partial(_image_size, max_pixels=max_pixels)
    # tqdm shows counts and an ETA on a terminal and stays silent otherwise (disable=None).
    progress = dict(total=len(items), desc="kermany: reading images", unit="img", disable=None)
    if workers > 1 and len(items) > 1:
        chunksize = max(1, min(64, len(items) // (4 * workers)))
        with get_context().Pool(workers) as pool:
            results = list(tqdm(pool.imap(read_one, items, chunksize=chunksize), **progress))
    else:
        results = [read_one(p) for p in tqdm(items, **progress)]
    return {path: (size, reason) for path, size, reason in results}


def parse_kermany(
    root: str | Path, *, workers: int = 1, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
) -> KermanyParseResult:
    """Parse a Kermany folder: `root` is the folder holding chest_xray/, or chest_xray/ itself.

    Every image is decoded once (grayscale or RGB JPEG alike, via data_prep.images.read_image)
    to record its size and catch corrupt files, which become BadFiles; unreadable names too.
    image_id = path relative to chest_xray/ without the suffix; path = relative to `root`.
    Records are sorted by image_id. Raises DataFormatError when no Kermany layout is found.
    """
    root = Path(root)
    base = find_kermany_base(root)
    if base is None:
        raise DataFormatError(
            root,
            f"no Kermany layout: expected {KERMANY_DIR}/{{train,val,test}}/{{NORMAL,PNEUMONIA}}/*.jpeg "
            "(or the train/val/test folders directly)",
        )
    candidates, junk = list_kermany_files(base)

    def rel_to_root(path: Path) -> str:
        return path.relative_to(root).as_posix()

    bad_files: list[BadFile] = []
    parsed: list[tuple[Path, str, str, str]] = []
    for path in candidates:
        try:
            label, subtype, patient_id = parse_kermany_filename(path.relative_to(base).as_posix())
        except DataFormatError as exc:
            bad_files.append(BadFile(path=rel_to_root(path), reason=exc.reason))
            continue
        parsed.append((path, label, subtype, patient_id))

    sizes = read_image_sizes([p for p, *_ in parsed], workers=workers, max_pixels=max_pixels)
    records: list[ImageRecord] = []
    seen_ids: dict[str, Path] = {}
    for path, label, subtype, patient_id in parsed:
        size, reason = sizes[str(path)]
        if size is None:
            bad_files.append(BadFile(path=rel_to_root(path), reason=reason or "unreadable image"))
            continue
        relative = path.relative_to(base)
        image_id = relative.with_suffix("").as_posix()
        if image_id in seen_ids:
            # 'x.jpeg' next to 'x.png': one image id cannot name two files.
            bad_files.append(
                BadFile(path=rel_to_root(path), reason=f"same image id as {rel_to_root(seen_ids[image_id])}")
            )
            continue
        seen_ids[image_id] = path
        records.append(
            ImageRecord(
                image_id=image_id,
                dataset="kermany",
                path=rel_to_root(path),
                patient_id=patient_id,
                target=1 if label == "PNEUMONIA" else 0,
                has_box_labels=False,
                subtype=subtype,
                height=size[0],
                width=size[1],
                source_split=relative.parts[0],
            )
        )
    records.sort(key=lambda r: r.image_id)
    return KermanyParseResult(
        records=records,
        bad_files=sorted(bad_files, key=lambda b: b.path),
        junk_files=sorted(rel_to_root(p) for p in junk),
    )
