"""detect.inference.discovery: archives named without extensions, found by content; loops and
unreadable folders reported, never fatal."""

from __future__ import annotations

import os

import cv2
import pytest
from pydicom.uid import ImplicitVRLittleEndian

from data_prep.errors import DetectError
from data_prep.images import read_any_image, sniff_image_kind
from detect.inference import discovery
from detect.inference.discovery import collect_input_files
from tests.data_prep.dicom_fixtures import make_dataset, textured_image, write_jpeg_baseline_dicom


def _pacs_export(root):
    """A PACS-style export: extensionless DICOMs (Part 10, and raw implicit-VR without a preamble),
    an extensionless PNG, a text file and a FIFO, in nested folders."""
    (root / "STUDY1" / "SERIES1").mkdir(parents=True)
    (root / "STUDY2").mkdir()
    write_jpeg_baseline_dicom(root / "STUDY1" / "SERIES1" / "IM0001", textured_image(64, 64, seed=1), patient_id="p1")
    raw = make_dataset(textured_image(48, 48, seed=2))
    raw.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    raw.save_as(root / "STUDY2" / "IM0002", implicit_vr=True, little_endian=True, enforce_file_format=False)
    ok, png = cv2.imencode(".png", textured_image(40, 30, seed=3))
    (root / "STUDY2" / "SNAPSHOT").write_bytes(png.tobytes())
    (root / "STUDY2" / "DICOMDIR.txt").write_text("an index, not an image")
    os.mkfifo(root / "STUDY2" / "pipe")
    return root


def test_extensionless_dicoms_and_images_are_found_by_content_and_read(tmp_path):
    root = _pacs_export(tmp_path / "export")
    listing = collect_input_files([root])
    names = [p.relative_to(root).as_posix() for p in listing.files]
    assert names == ["STUDY1/SERIES1/IM0001", "STUDY2/IM0002", "STUDY2/SNAPSHOT"]  # no text, no FIFO
    assert listing.problems == []
    for path in listing.files:  # what is found is readable, header and all for the DICOMs
        pixels, header = read_any_image(path)
        assert pixels.ndim == 2 and (header is None) == (path.name == "SNAPSHOT")


def test_glob_narrows_the_search(tmp_path):
    root = _pacs_export(tmp_path / "export")
    assert [p.name for p in collect_input_files([root], glob="STUDY1/**").files] == ["IM0001"]
    with pytest.raises(DetectError, match=r"export: no DICOM, PNG or JPEG files matching --glob 'nothing\*' found"):
        collect_input_files([root], glob="nothing*")


def test_a_symlink_loop_is_reported_and_the_rest_found(tmp_path):
    root = _pacs_export(tmp_path / "export")
    (root / "STUDY1" / "SERIES1" / "back").symlink_to(root, target_is_directory=True)
    listing = collect_input_files([root])
    assert [p.name for p in listing.files] == ["IM0001", "IM0002", "SNAPSHOT"]
    assert len(listing.problems) == 1 and "a symlink loop" in listing.problems[0]


def test_an_unreadable_folder_is_reported_not_fatal(tmp_path, monkeypatch):
    """Root reads every folder whatever its mode, so the permission error is injected where
    os.walk reports it: through its onerror callback."""
    root = _pacs_export(tmp_path / "export")
    real_walk = os.walk

    def walk_with_a_locked_folder(top, onerror=None, followlinks=False):
        onerror(PermissionError(13, "Permission denied", str(root / "LOCKED")))
        yield from real_walk(top, onerror=onerror, followlinks=followlinks)

    monkeypatch.setattr(discovery.os, "walk", walk_with_a_locked_folder)
    listing = collect_input_files([root])
    assert len(listing.files) == 3
    assert listing.problems == [f"{root / 'LOCKED'}: cannot read the folder (Permission denied)"]


@pytest.mark.parametrize(
    "head, kind",
    [
        (b"\0" * 128 + b"DICM", "dicom"),
        (b"\x08\x00\x16\x00\x1a\x00\x00\x001.2.840", "dicom"),  # implicit VR (0008,0016), length 26
        (b"\x02\x00\x02\x00UI\x1a\x00", "dicom"),  # explicit VR file meta without a preamble
        (b"\x89PNG\r\n\x1a\n....", "png"),
        (b"\xff\xd8\xff\xe0", "jpeg"),
        (b"\x08\x00\x16\x00\xff\xff\xff\x7f", None),  # an absurd first length
        (b"hello world, not an image", None),
        (b"", None),
    ],
)
def test_sniff_image_kind(head, kind):
    assert sniff_image_kind(head) == kind
