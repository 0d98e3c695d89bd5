"""detect.inference.jsonl: whole lines only, a torn tail cut off, the run checked, parts merged in order."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from detect.inference.jsonl import (
    InputKey,
    PartWriter,
    ResumeMismatchError,
    check_fingerprint,
    count_entries,
    merge_entries,
    part_path,
    scan_part,
)

FINGERPRINT = {"checkpoint_sha256": "ab12", "settings.score_thresh": 0.3}


def _entry(source: str, error: str | None = None) -> dict:
    return {"source": source, "error": error, "boxes": None if error else []}


def _write(path: Path, sources, errors=()) -> None:
    writer = PartWriter(path, FINGERPRINT)
    for source in sources:
        writer.append(
            _entry(source, "unreadable" if source in errors else None),
            InputKey(f"/abs/{source}", 10, 20),
            f"uid-{source}",
        )
    writer.close()


def test_part_names_sit_next_to_boxes_json():
    assert part_path("out/boxes.json") == Path("out/boxes.jsonl")
    assert part_path("out/boxes.json", 1, 4) == Path("out/boxes.part-001-of-004.jsonl")


def test_a_torn_last_line_is_detected_and_cut_off_before_appending(tmp_path):
    part = tmp_path / "boxes.jsonl"
    _write(part, ["a.dcm", "b.dcm"])
    whole = part.stat().st_size
    with open(part, "a") as handle:
        handle.write('{"kind": "image", "entry": {"source": "c.d')  # killed mid-write
    scan = scan_part(part)
    assert scan.torn and scan.valid_bytes == whole and scan.n_lines == 2
    assert scan.done_keys == {InputKey("/abs/a.dcm", 10, 20), InputKey("/abs/b.dcm", 10, 20)}
    assert scan.fingerprint == FINGERPRINT
    writer = PartWriter(part, FINGERPRINT, truncate_at=scan.valid_bytes)
    writer.append(_entry("c.dcm"), None, None)
    writer.close()
    lines = part.read_text().splitlines()
    assert len(lines) == 4 and all(json.loads(line) for line in lines)  # run line + a, b, c: all whole


def test_failures_are_not_done_so_a_resume_tries_them_again(tmp_path):
    part = tmp_path / "boxes.jsonl"
    _write(part, ["a.dcm", "bad.dcm"], errors={"bad.dcm"})
    scan = scan_part(part)
    assert scan.done_keys == {InputKey("/abs/a.dcm", 10, 20)} and scan.done_uids == {"uid-a.dcm"}


def test_a_different_run_is_refused_naming_every_difference(tmp_path):
    with pytest.raises(
        ResumeMismatchError,
        match=r"boxes\.jsonl: --resume: this run differs from the stopped one at "
        r"settings\.score_thresh \(0\.3 -> 0\.5\); rerun with the same",
    ):
        check_fingerprint(FINGERPRINT, {**FINGERPRINT, "settings.score_thresh": 0.5}, tmp_path / "boxes.jsonl")
    with pytest.raises(ResumeMismatchError, match="does not start with a detect run line"):
        check_fingerprint(None, FINGERPRINT, tmp_path / "boxes.jsonl")
    check_fingerprint(FINGERPRINT, dict(FINGERPRINT), tmp_path / "boxes.jsonl")  # the same run: no error


def test_merge_follows_the_listing_and_the_last_line_of_an_image_wins(tmp_path):
    first, second = tmp_path / "p0.jsonl", tmp_path / "p1.jsonl"
    _write(first, ["c.dcm", "a.dcm", "bad.dcm"], errors={"bad.dcm"})
    _write(second, ["b.dcm", "bad.dcm", "moved.dcm"])  # bad.dcm was mended and predicted again
    order = [Path(p) for p in ("a.dcm", "b.dcm", "bad.dcm", "c.dcm")]
    merged = list(merge_entries([first, second], order))
    assert [e["source"] for e in merged] == ["a.dcm", "b.dcm", "bad.dcm", "c.dcm", "moved.dcm"]
    assert merged[2]["error"] is None
    assert count_entries([first, second]) == (5, 5)
