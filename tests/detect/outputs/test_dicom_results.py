"""detect.outputs.dicom_results: the SR / GSPS file names come from the source's SOP Instance UID,
which is header text: a UID that is not a DICOM UID is reported, and nothing lands outside the folders."""

from __future__ import annotations

import warnings

import pydicom

from detect.inference.batch import run_inference
from tests.data_prep.dicom_fixtures import textured_image, write_jpeg_baseline_dicom
from tests.detect.inference.test_batch import save_tiny_checkpoint


def test_a_header_uid_that_is_a_path_gets_no_sr_or_gsps_and_writes_nothing_outside(tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    good = write_jpeg_baseline_dicom(inputs / "good.dcm", textured_image(64, 64, seed=1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the invalid UI value it is asked to write
        write_jpeg_baseline_dicom(
            inputs / "evil.dcm", textured_image(64, 64, seed=2), SOPInstanceUID="../../../escaped"
        )
    out = tmp_path / "run" / "out"
    result = run_inference(
        [inputs],
        out_path=out / "boxes.json",
        checkpoint=save_tiny_checkpoint(tmp_path / "best.pt"),
        device="cpu",
        workers=1,
        dicom_sr_dir=out / "sr",
        dicom_gsps_dir=out / "gsps",
    )
    assert not list(tmp_path.rglob("escaped*"))
    good_uid = pydicom.dcmread(good).SOPInstanceUID
    assert sorted(p.name for p in result.dicom_paths) == [f"{good_uid}_GSPS.dcm", f"{good_uid}_SR.dcm"]
    assert any("evil.dcm: SOPInstanceUID '../../../escaped' is not a valid DICOM UID" in w for w in result.warnings)
