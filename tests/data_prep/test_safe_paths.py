"""data_prep.safe_paths: DICOM UID rules and file names that cannot leave their folder."""

from __future__ import annotations

import os

import pytest

from data_prep.safe_paths import UnsafeNameError, check_dicom_uid, child_path, is_dicom_uid


@pytest.mark.parametrize("uid", ["0", "1.2", "1.2.840.10008.5.1.4.1.1.1", "2.25." + "9" * 39, "1.0.3", "1" * 64])
def test_valid_uids(uid):
    assert is_dicom_uid(uid)


@pytest.mark.parametrize(
    "uid",
    [
        "",
        "1" * 65,
        "1.02.3",
        "01.2",
        "1..2",
        ".1",
        "1.",
        "1.2.a",
        "../../x",
        "1.2/3",
        "1.2\x00",
        " 1.2",
        "1,2",
        "١.٢",
        None,
        12,
    ],
)
def test_invalid_uids(uid):
    assert not is_dicom_uid(uid)


def test_check_dicom_uid_strips_padding_and_names_where_the_bad_one_came_from():
    assert check_dicom_uid("1.2.3\x00", "SOPInstanceUID", "x.dcm") == "1.2.3"
    assert check_dicom_uid("1.2.3 ", "SOPInstanceUID", "x.dcm") == "1.2.3"
    with pytest.raises(UnsafeNameError, match=r"^http://pacs/dicom-web: SOPInstanceUID '\.\./\.\./x' is not a valid"):
        check_dicom_uid("../../x", "SOPInstanceUID", "http://pacs/dicom-web")
    with pytest.raises(UnsafeNameError) as caught:
        check_dicom_uid("9" * 100_000, "SOPInstanceUID", "x")
    assert len(str(caught.value)) < 300  # the message shows a bounded part of a huge value


def test_child_path_keeps_a_plain_name_in_its_folder(tmp_path):
    assert child_path(tmp_path, "1.2.3.dcm") == tmp_path / "1.2.3.dcm"
    assert child_path(tmp_path, "..dcm") == tmp_path / "..dcm"  # dots inside a name are fine


@pytest.mark.parametrize(
    "name", ["", ".", "..", "../x.dcm", "a/b.dcm", "..\\x.dcm", "/etc/passwd", "a\nb.dcm", "a\x00b", "x" * 256]
)
def test_child_path_refuses_names_that_leave_or_break_the_folder(tmp_path, name):
    with pytest.raises(UnsafeNameError, match=rf"^{tmp_path}: the file name .* refused$"):
        child_path(tmp_path, name)


def test_child_path_refuses_a_symbolic_link_out_of_the_folder(tmp_path):
    (tmp_path / "inside").mkdir()
    os.symlink(tmp_path / "elsewhere.dcm", tmp_path / "inside" / "1.2.dcm")
    with pytest.raises(UnsafeNameError, match="leads outside the folder"):
        child_path(tmp_path / "inside", "1.2.dcm")
