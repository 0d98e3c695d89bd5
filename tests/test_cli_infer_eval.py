"""`detect infer` and `detect eval` through typer's CliRunner: output, warnings, exit codes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import pytest
from typer.testing import CliRunner

from cli import app
from detect.outputs.boxes_json import validate_output
from tests.data_prep.dicom_fixtures import (
    overwrite_middle,
    textured_image,
    with_jpeg_sof_size,
    write_jpeg_baseline_dicom,
)
from tests.detect.evaluation.test_submission_eval import EXPECTED_RSNA, LABELS_CSV, PREDICTIONS_CSV
from tests.detect.inference.test_batch import save_tiny_checkpoint, write_images


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    # A large test fraction: data prepared on the fly from this config has both classes in 'test'.
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "best.pt", overrides=("data.test_fraction=0.4",))


def _run(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def _stderr(result) -> str:
    return result.stderr


def test_infer_a_batch_with_a_bad_file_writes_everything_and_exits_2_unless_allowed(tmp_path, checkpoint):
    files = write_images(tmp_path / "in")
    args = (
        "infer",
        tmp_path / "in",
        "--checkpoint",
        checkpoint,
        "--out",
        tmp_path / "boxes.json",
        "--submission",
        tmp_path / "sub.csv",
        "--overlay",
        tmp_path / "ov",
        "--device",
        "cpu",
        "--tta",
    )
    strict = _run(*args)
    assert strict.exit_code == 2, strict.output
    assert _stderr(strict).strip().splitlines()[-1] == (
        f"error: 1 of 4 file(s) could not be read (listed in {tmp_path / 'boxes.json'} with their reason); "
        "pass --allow-failures to accept that"
    )
    assert len(json.loads((tmp_path / "boxes.json").read_text())["images"]) == 4  # written all the same
    result = _run(*args, "--allow-failures")
    assert result.exit_code == 0, result.output
    warnings = [line for line in _stderr(result).splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and warnings[0].startswith(f"warning: {files['corrupt']}: ")
    assert "predicted 3 image(s)" in result.stdout
    document = json.loads((tmp_path / "boxes.json").read_text())
    validate_output(document)
    assert document["settings"]["tta"] is True and len(document["images"]) == 4
    assert (tmp_path / "sub.csv").read_text().startswith("patientId,PredictionString\n")
    assert len(list((tmp_path / "ov").glob("*.png"))) == 3


def test_infer_all_files_bad_exits_2(tmp_path, checkpoint):
    (tmp_path / "bad.dcm").write_bytes(b"junk")
    (tmp_path / "bad.png").write_bytes(b"")
    result = _run(
        "infer",
        tmp_path / "bad.dcm",
        tmp_path / "bad.png",
        "--checkpoint",
        checkpoint,
        "--out",
        tmp_path / "b.json",
        "--device",
        "cpu",
    )
    assert result.exit_code == 2
    lines = _stderr(result).strip().splitlines()
    assert lines[-1].startswith("error: none of the 2 input file(s) could be read:")
    assert "Traceback" not in result.output
    assert not (tmp_path / "b.json").exists()


def test_infer_missing_checkpoint_exits_2_with_one_line(tmp_path):
    image = tmp_path / "x.png"
    cv2.imwrite(str(image), textured_image(40, 40))
    result = _run("infer", image, "--checkpoint", tmp_path / "nope.pt", "--out", tmp_path / "b.json")
    assert result.exit_code == 2
    assert _stderr(result).strip() == f"error: {tmp_path / 'nope.pt'}: checkpoint not found"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--shrink", "1.5"], "error: shrink factor must lie in (0, 1] (1.0 = off), got 1.5"),
        (["--batch-size", "0"], "error: --batch-size must be a whole number in 1..4096, got 0"),
        (["--threads", "-1"], "error: --threads must be a whole number in 0..256 (0: read in turn), got -1"),
        (["--submission", "{tmp}"], "error: {tmp}: --submission must name a file, not a folder"),
    ],
)
def test_infer_bad_arguments_exit_2(tmp_path, checkpoint, args, message):
    image = tmp_path / "x.png"
    cv2.imwrite(str(image), textured_image(40, 40))
    args = [a.format(tmp=tmp_path) for a in args]
    result = _run("infer", image, "--checkpoint", checkpoint, "--out", tmp_path / "b.json", *args)
    assert result.exit_code == 2
    assert _stderr(result).strip() == message.format(tmp=tmp_path)


def test_eval_predictions_against_labels_prints_the_hand_worked_score(tmp_path):
    (tmp_path / "sub.csv").write_text(PREDICTIONS_CSV)
    (tmp_path / "labels.csv").write_text(LABELS_CSV)
    result = _run(
        "eval", "--predictions", tmp_path / "sub.csv", "--labels", tmp_path / "labels.csv", "--out", tmp_path / "eval"
    )
    assert result.exit_code == 0, result.output
    assert "RSNA score" in result.stdout and f"{EXPECTED_RSNA:.4f}" in result.stdout
    assert "note: scored the 4 patients" in _stderr(result)
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["detection"]["rsna_score"] == pytest.approx(
        EXPECTED_RSNA
    )


def test_eval_malformed_csv_exits_2_naming_file_and_line(tmp_path):
    (tmp_path / "sub.csv").write_text("patientId,PredictionString\np1,0.9 1 2\n")
    (tmp_path / "labels.csv").write_text(LABELS_CSV)
    result = _run(
        "eval", "--predictions", tmp_path / "sub.csv", "--labels", tmp_path / "labels.csv", "--out", tmp_path / "eval"
    )
    assert result.exit_code == 2
    assert _stderr(result).strip() == (
        f"error: {tmp_path / 'sub.csv'}: line 2: PredictionString has 3 numbers, expected groups of 5 (conf x y width height)"
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--predictions", "sub.csv"],
            "error: use either --predictions CSV|boxes.json --labels FILE, or [--checkpoint CKPT] [--gate-with CKPT] --data DIR",
        ),
        ([], "error: pass --data DIR (with an optional --checkpoint), or --predictions CSV --labels CSV"),
    ],
)
def test_eval_argument_combinations(tmp_path, args, message):
    result = _run("eval", "--out", tmp_path / "eval", *args)
    assert result.exit_code == 2
    assert _stderr(result).strip() == message


def test_eval_with_a_checkpoint_agrees_with_infer_then_eval_predictions(tmp_path, checkpoint):
    """`eval --checkpoint` on the held-out split, and `infer` on the same files followed by
    `eval --predictions`, run the same post-processing at the same operating point (the one the
    checkpoint stores, with no threshold given to either): same RSNA score."""
    from data_prep.manifest import read_manifest
    from tests.detect.train_fixtures import make_rsna

    root = make_rsna(tmp_path / "rsna", n_images=24, prepare=False)  # prepared on the fly
    result = _run("eval", "--checkpoint", checkpoint, "--data", root, "--out", tmp_path / "eval", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "not prepared yet" in _stderr(result)
    assert "RSNA score" in result.stdout
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert set(metrics) >= {"detection", "classification", "operating_points", "counts", "settings", "model"}
    stored = metrics["operating_points"]["rsna"]
    assert (stored["threshold"], stored["applied_to"]) == (0.4, "rsna test")  # the checkpoint's, not re-chosen
    for name in ("metrics.json", "report.md", "confusion_matrix.png", "examples.png", "test_predictions.csv"):
        assert (tmp_path / "eval" / name).is_file(), name

    test_files = [read_manifest(root).image_path(r) for r in read_manifest(root).split_records("test")]
    assert metrics["counts"]["rsna_test_images"] == len(test_files)
    result = _run(
        "infer",
        *test_files,
        "--checkpoint",
        checkpoint,
        "--out",
        tmp_path / "boxes.json",
        "--submission",
        tmp_path / "sub.csv",
        "--device",
        "cpu",
    )
    assert result.exit_code == 0, result.output
    entries = json.loads((tmp_path / "boxes.json").read_text())["images"]
    assert {(e["operating_point"]["threshold"], e["operating_point"]["source"]) for e in entries} == {
        (0.4, stored["source"])
    }
    result = _run(
        "eval",
        "--predictions",
        tmp_path / "sub.csv",
        "--labels",
        root / "stage_2_train_labels.csv",
        "--out",
        tmp_path / "again",
    )
    assert result.exit_code == 0, result.output
    again = json.loads((tmp_path / "again" / "metrics.json").read_text())
    assert again["detection"]["n_images"] == len(test_files)
    assert metrics["counts"]["rsna_test_pneumonia"] > 0 and again["detection"]["n_images_with_boxes"] > 0
    assert again["detection"]["rsna_score"] == pytest.approx(metrics["detection"]["rsna_score"], abs=1e-3)
    assert (tmp_path / "again" / "examples.png").is_file()  # stage_2_train_images/ sits next to the labels


def test_infer_writes_an_sr_and_a_gsps_per_dicom_and_warns_for_the_png(tmp_path, checkpoint):
    files = write_images(tmp_path / "in")
    result = _run(
        "infer",
        tmp_path / "in",
        "--checkpoint",
        checkpoint,
        "--out",
        tmp_path / "boxes.json",
        "--dicom-sr",
        tmp_path / "sr",
        "--dicom-gsps",
        tmp_path / "gsps",
        "--device",
        "cpu",
        "--allow-failures",
    )
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "sr").glob("*_SR.dcm"))) == 2 and len(list((tmp_path / "gsps").glob("*_GSPS.dcm"))) == 2
    png = [f for f in files.values() if str(f).endswith(".png")][0]
    assert f"warning: {png}: not a DICOM file; DICOM SR / GSPS are written for DICOM inputs only" in _stderr(result)
    assert "4 DICOM SR/GSPS file(s)" in result.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (("--study", "1.2"), "--study, --stow and --dicomweb-follow-redirects go with --dicomweb URL"),
        (("--dicomweb", "http://127.0.0.1:1/dicom-web"), "--dicomweb needs --study UID"),
        (
            ("--dicomweb", "ftp://pacs/dicom-web", "--study", "1.2"),
            "ftp://pacs/dicom-web: a DICOMweb URL starts with http://",
        ),
        (("--anonymize", "--submission", "sub.csv", "x.dcm"), "--anonymize and --submission"),
    ],
)
def test_infer_refuses_bad_pacs_options_in_one_line(tmp_path, args, message):
    result = _run("infer", "--out", tmp_path / "boxes.json", *args)
    assert result.exit_code == 2 and message in _stderr(result) and len(_stderr(result).strip().splitlines()) == 1


def test_infer_reports_hostile_files_one_line_each_and_predicts_the_rest(tmp_path, checkpoint):
    """Hostile inputs: a SOF claiming 60000 x 60000, corrupt entropy-coded data, a PNG named .dcm, a
    FIFO and a file name with a newline: each is one warning line, boxes.json is written."""
    folder = tmp_path / "in"
    folder.mkdir()
    good = write_jpeg_baseline_dicom(folder / "good.dcm", textured_image(96, 96, seed=1))
    with_jpeg_sof_size(write_jpeg_baseline_dicom(folder / "huge.dcm", textured_image(96, 96, seed=2)), 60000, 60000)
    overwrite_middle(write_jpeg_baseline_dicom(folder / "corrupt.dcm", textured_image(256, 256, seed=3)))
    png = folder / "png.dcm"
    png.write_bytes(cv2.imencode(".png", textured_image(40, 40))[1].tobytes())
    newline = folder / "two\nlines.dcm"
    newline.write_bytes(b"not a DICOM")
    fifo = tmp_path / "pipe.dcm"
    os.mkfifo(fifo)
    result = _run(
        "infer",
        folder,
        fifo,
        "--checkpoint",
        checkpoint,
        "--out",
        tmp_path / "boxes.json",
        "--device",
        "cpu",
        "--allow-failures",
    )
    assert result.exit_code == 0, result.output
    lines = _stderr(result).strip().splitlines()
    warnings = [line for line in lines if line.startswith("warning: ")]
    assert len(warnings) == 5 and not any(line.startswith("lines.dcm") for line in lines), lines
    by_name = {
        name: next(w for w in warnings if name in w) for name in ("huge", "corrupt", "png.dcm", "two\\nlines", "pipe")
    }
    assert "JPEG frame: image size 60000x60000 (3600.0 megapixels) exceeds the limit" in by_name["huge"]
    assert "corrupt or undecodable JPEG data" in by_name["corrupt"]
    assert "a PNG file, not a DICOM" in by_name["png.dcm"]
    assert f"warning: {str(folder)}/two\\nlines.dcm: not a DICOM file" in by_name["two\\nlines"]
    assert "a FIFO (named pipe), not a regular file: refused" in by_name["pipe"]
    assert "predicted 1 image(s)" in result.stdout
    document = json.loads((tmp_path / "boxes.json").read_text())
    assert [entry.get("error") is None for entry in document["images"]].count(True) == 1
    assert any(entry["source"] == str(good) for entry in document["images"])


def test_infer_max_megapixels_is_an_option(tmp_path, checkpoint):
    image = write_jpeg_baseline_dicom(tmp_path / "a.dcm", textured_image(96, 96, seed=1))
    small = _run(
        "infer",
        image,
        image.parent / "b.png",
        "--checkpoint",
        checkpoint,
        "--out",
        tmp_path / "b.json",
        "--device",
        "cpu",
        "--max-megapixels",
        "0.005",
    )
    assert small.exit_code == 2
    assert "image size 96x96 (0.0 megapixels) exceeds the limit of 0.005 megapixels" in _stderr(small)
    bad = _run("infer", image, "--checkpoint", checkpoint, "--out", tmp_path / "b.json", "--max-megapixels", "-1")
    assert (
        bad.exit_code == 2
        and _stderr(bad).strip() == "error: --max-megapixels: -1.0 must be a positive number of megapixels"
    )


def test_a_formula_like_patient_id_is_kept_in_the_submission_with_a_warning(tmp_path, checkpoint):
    from tests.data_prep.dicom_fixtures import textured_image, write_jpeg_baseline_dicom

    (tmp_path / "in").mkdir()
    patient = '=HYPERLINK("http://evil.example/x","open")'
    write_jpeg_baseline_dicom(tmp_path / "in" / "a.dcm", textured_image(64, 64, seed=1), patient_id=patient)
    result = _run(
        "infer",
        tmp_path / "in",
        "--checkpoint",
        checkpoint,
        "--out",
        tmp_path / "boxes.json",
        "--submission",
        tmp_path / "sub.csv",
        "--device",
        "cpu",
    )
    assert result.exit_code == 0, result.output
    assert "patientId starts with '=', which a spreadsheet would run as a formula" in _stderr(result)
    assert (tmp_path / "sub.csv").read_text().splitlines()[1].startswith('"=HYPERLINK(')  # Kaggle needs the exact ID
