"""The JSON Lines parts of a `detect infer` run: one line per image, appended as it is made.

    boxes.jsonl                        one process
    boxes.part-000-of-002.jsonl, ...   under torchrun, one part per rank

Line 1 describes the run (`{"kind": "run", "format": 1, "fingerprint": {...}}`: the checkpoint's
content hash, the model, the post-processing and decision settings); every later line is one
image (`{"kind": "image", "key": {path, size_bytes, mtime_ns}, "sop_instance_uid": ..., "entry":
<the boxes.json entry>}`). Lines are written whole and flushed (and fsync'ed) after every
batch, so a killed run keeps every line written before the kill; a torn last line (no newline,
or not JSON) is detected on resume and cut off. boxes.json is assembled from the parts at the
end (`merge_entries`), in the order of the input listing, the last line of an image winning.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence, TextIO

from data_prep.atomic import write_error, write_text_atomic
from data_prep.errors import DetectError

JSONL_FORMAT = 1


class ResumeMismatchError(DetectError):
    """--resume was asked for a run made with another model or other settings."""


@dataclass(frozen=True)
class InputKey:
    """How a resumed run recognises a file it has predicted: its path, size and modification time."""

    path: str
    size_bytes: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path) -> InputKey | None:
        try:
            info = path.stat()
        except OSError:
            return None
        return cls(str(path.resolve()), int(info.st_size), int(info.st_mtime_ns))

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "size_bytes": self.size_bytes, "mtime_ns": self.mtime_ns}


def part_path(out_path: str | Path, rank: int = 0, world_size: int = 1) -> Path:
    """The JSON Lines file of one process, next to boxes.json."""
    out = Path(out_path)
    if world_size == 1:
        return out.with_suffix(".jsonl")
    return out.with_name(f"{out.stem}.part-{rank:03d}-of-{world_size:03d}.jsonl")


# --------------------------------------------------------------------------------- reading


@dataclass
class PartScan:
    """What a part holds: its run fingerprint, the images already predicted, and where its
    whole lines end (a torn tail starts at `valid_bytes`)."""

    fingerprint: dict[str, Any] | None = None
    done_keys: set[InputKey] = field(default_factory=set)
    done_uids: set[str] = field(default_factory=set)
    n_lines: int = 0
    valid_bytes: int = 0
    torn: bool = False


def _iter_whole_lines(path: Path) -> Iterator[tuple[int, int, dict[str, Any]]]:
    """(byte offset, byte length, parsed line) of every whole JSON line; stops at the first torn one."""
    offset = 0
    with open(path, "rb") as handle:
        for raw in handle:
            if not raw.endswith(b"\n"):
                return
            try:
                line = json.loads(raw)
            except (UnicodeDecodeError, json.JSONDecodeError):
                return
            if not isinstance(line, dict):
                return
            yield offset, len(raw), line
            offset += len(raw)


def scan_part(path: Path) -> PartScan:
    """Read a part's lines without keeping the entries. Successful images count as done; a
    failure is tried again on resume (the file may have been mended)."""
    scan = PartScan()
    if not path.is_file():
        return scan
    for offset, length, line in _iter_whole_lines(path):
        scan.valid_bytes = offset + length
        if line.get("kind") == "run":
            scan.fingerprint = line.get("fingerprint")
        elif line.get("kind") == "image":
            scan.n_lines += 1
            entry = line.get("entry") or {}
            if entry.get("error") is None:
                key = line.get("key")
                if isinstance(key, dict):
                    scan.done_keys.add(InputKey(str(key["path"]), int(key["size_bytes"]), int(key["mtime_ns"])))
                if line.get("sop_instance_uid"):
                    scan.done_uids.add(str(line["sop_instance_uid"]))
    scan.torn = scan.valid_bytes < path.stat().st_size
    return scan


def check_fingerprint(stored: dict[str, Any] | None, current: dict[str, Any], path: Path) -> None:
    """A ResumeMismatchError naming every key where the stored run differs from this one."""
    if stored is None:
        raise ResumeMismatchError(
            f"{path}: --resume: the file does not start with a detect run line; choose a new --out or delete it"
        )
    differing = [
        f"{key} ({stored.get(key)!r} -> {current.get(key)!r})"
        for key in sorted(set(stored) | set(current))
        if stored.get(key) != current.get(key)
    ]
    if differing:
        raise ResumeMismatchError(
            f"{path}: --resume: this run differs from the stopped one at {'; '.join(differing)}; "
            "rerun with the same checkpoint and options, or choose a new --out"
        )


# --------------------------------------------------------------------------------- writing


class PartWriter:
    """Appends image lines to a part; `flush()` makes them durable (called after every batch)."""

    def __init__(self, path: Path, fingerprint: dict[str, Any], *, truncate_at: int | None = None) -> None:
        """`truncate_at`: continue the part (cut to that many bytes first: a torn last line);
        None: start afresh. A fresh part replaces the old one atomically with its run line, so a
        run that cannot write at all (a full disk) leaves the previous part as it was."""
        self.path = path
        try:
            if truncate_at is None:
                write_text_atomic(path, _line({"kind": "run", "format": JSONL_FORMAT, "fingerprint": fingerprint}))
            else:
                with open(path, "r+b") as handle:
                    handle.truncate(truncate_at)  # drop a torn last line before appending
            self._handle: TextIO = open(path, "a", encoding="utf-8")
        except OSError as exc:
            raise write_error(path, exc) from None

    def _write(self, line: dict[str, Any]) -> None:
        try:
            self._handle.write(_line(line))
        except OSError as exc:
            raise write_error(self.path, exc) from None

    def append(self, entry: dict[str, Any], key: InputKey | None, sop_instance_uid: str | None) -> None:
        self._write(
            {
                "kind": "image",
                "key": key.to_dict() if key else None,
                "sop_instance_uid": sop_instance_uid,
                "entry": entry,
            }
        )

    def flush(self) -> None:
        try:
            self._handle.flush()
            os.fsync(self._handle.fileno())
        except OSError as exc:
            raise write_error(self.path, exc) from None

    def close(self) -> None:
        if not self._handle.closed:
            try:
                self.flush()
            finally:
                try:
                    self._handle.close()
                except OSError:
                    pass  # the flush above has reported the failure


def _line(line: dict[str, Any]) -> str:
    return json.dumps(line, separators=(",", ":"), allow_nan=False) + "\n"


# --------------------------------------------------------------------------------- merging


def count_entries(parts: Sequence[Path]) -> tuple[int, int]:
    """(images, readable images) over the parts, one per image (its last line)."""
    latest: dict[str, bool] = {}
    for part in parts:
        if part.is_file():
            for _offset, _length, line in _iter_whole_lines(part):
                if line.get("kind") == "image":
                    latest[str(line["entry"]["source"])] = line["entry"].get("error") is None
    return len(latest), sum(latest.values())


def merge_entries(parts: Sequence[Path], order: Sequence[Path]) -> Iterator[dict[str, Any]]:
    """The entries of every part, one per image (its last line wins), in the order of `order`
    (the input listing); images not in it (found by SOP Instance UID after a move) come last,
    by source. Only offsets are kept in memory, never the entries themselves."""
    position = {str(Path(p)): i for i, p in enumerate(order)}
    latest: dict[str, tuple[int, int]] = {}  # source -> (part index, byte offset)
    for part_index, part in enumerate(parts):
        if not part.is_file():
            continue
        for offset, _length, line in _iter_whole_lines(part):
            if line.get("kind") == "image":
                latest[str(line["entry"]["source"])] = (part_index, offset)
    ordered = sorted(latest, key=lambda s: (s not in position, position.get(s, 0), s))
    handles = [open(p, "rb") if p.is_file() else None for p in parts]
    try:
        for source in ordered:
            part_index, offset = latest[source]
            handle = handles[part_index]
            assert handle is not None
            handle.seek(offset)
            yield json.loads(handle.readline())["entry"]
    finally:
        for handle in handles:
            if handle is not None:
                handle.close()
