"""detect.outputs.uids: derived UIDs are valid 2.25 UIDs, a pure function of their inputs."""

import re

import pytest

from detect.outputs.uids import MAX_UID_CHARS, derived_uid, file_sha256

SHA = "ab" * 32


def test_a_derived_uid_is_a_valid_2_25_uid_and_repeats():
    uid = derived_uid("1.2.3.4", SHA, "sr")
    assert re.fullmatch(r"2\.25\.(0|[1-9][0-9]*)", uid) and len(uid) <= MAX_UID_CHARS
    assert derived_uid("1.2.3.4", SHA, "sr") == uid


@pytest.mark.parametrize(
    "other",
    [("1.2.3.5", SHA, "sr"), ("1.2.3.4", "cd" * 32, "sr"), ("1.2.3.4", SHA, "gsps"), ("1.2.3.4", SHA, "tracking:1")],
)
def test_source_model_and_kind_each_change_the_uid(other):
    assert derived_uid(*other) != derived_uid("1.2.3.4", SHA, "sr")


@pytest.mark.parametrize(
    "args, message",
    [(("", SHA, "sr"), "needs the source's UID"), (("1.2", SHA, "seg"), "unknown derived UID kind 'seg'")],
)
def test_bad_inputs_are_refused(args, message):
    with pytest.raises(ValueError, match=message):
        derived_uid(*args)


def test_file_sha256_is_the_hex_digest(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc")
    assert file_sha256(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
