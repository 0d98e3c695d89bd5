"""detect.inference.batch: files -> boxes.json in ORIGINAL pixels, bad files reported, schema-valid
output, each image decided at its dataset's operating point."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from data_prep.errors import CheckpointError, DetectError
from data_prep.geometry import xywh_to_xyxy
from detect.evaluation.metrics import rsna_score
from detect.evaluation.submission_eval import evaluate_predictions
from detect.inference.batch import run_inference
from detect.inference.discovery import collect_input_files
from detect.inference.thresholds import ThresholdChoice, pick_operating_point
from detect.models.build import build_model
from detect.models.checkpoint import save_checkpoint
from detect.outputs.boxes_json import validate_output
from detect.predictions import OperatingPoint
from tests.data_prep.dicom_fixtures import textured_image, write_jpeg_baseline_dicom
from tests.detect.train_fixtures import tiny_config

SIZE_PX = 64


STORED = {"rsna": 0.4, "kermany": 0.6}


def save_tiny_checkpoint(
    path: Path,
    *,
    thresholds: dict[str, float] | None = None,
    epoch: int = 3,
    overrides: tuple[str, ...] = (),
    pneumonia_bias: float = 3.0,
) -> Path:
    """A MobileNetV3 detector at 64 px, untrained but biased to be sure: every image gets boxes
    of score ~1 and a pneumonia probability ~0.95 (`pneumonia_bias` the image head's logit bias),
    so the box paths are exercised. It stores one operating point per dataset of `thresholds`
    (default STORED). `overrides`: config `key=value`s on top of tests/detect/train_fixtures.tiny_config."""
    cfg = tiny_config(*overrides)
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.data.image_size_px)
    with torch.no_grad():
        model.roi_heads.box_predictor.cls_score.bias.copy_(torch.tensor([-4.0, 4.0]))
        model.image_head.pneumonia.bias.fill_(pneumonia_bias)
    points = {
        name: OperatingPoint(name, t, f"F1-optimal on {name} val at epoch {epoch} (8 images)").to_dict()
        for name, t in (STORED if thresholds is None else thresholds).items()
    }
    extra = {"operating_points": points}
    return save_checkpoint(path, model=model, cfg=cfg, epoch=epoch, global_step=10, extra=extra)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "best.pt")


def write_images(folder: Path) -> dict[str, Path]:
    """Two RSNA-like DICOMs (one in a sub-folder), a non-square PNG, a corrupt .dcm, and junk."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sub").mkdir(exist_ok=True)
    files = {
        "a": write_jpeg_baseline_dicom(folder / "a.dcm", textured_image(96, 96, seed=1), patient_id="pa", view="AP"),
        "b": write_jpeg_baseline_dicom(folder / "sub" / "b.dcm", textured_image(96, 96, seed=2), patient_id="pb"),
        "wide": folder / "wide.png",
        "corrupt": folder / "corrupt.dcm",
    }
    cv2.imwrite(str(files["wide"]), textured_image(60, 150, seed=3))  # height 60, width 150
    files["corrupt"].write_bytes(b"this is not a DICOM file at all")
    (folder / "notes.txt").write_text("ignored: not an image suffix")
    (folder / ".DS_Store").write_bytes(b"\x00\x01junk")
    return files


def test_collect_input_files_recurses_and_keeps_explicit_files(tmp_path):
    files = write_images(tmp_path / "in")
    found = collect_input_files([tmp_path / "in"]).files
    assert [p.relative_to(tmp_path / "in").as_posix() for p in found] == [
        "a.dcm",
        "corrupt.dcm",
        "sub/b.dcm",
        "wide.png",
    ]
    # A file named explicitly is taken whatever its suffix; the same file twice is read once.
    assert collect_input_files([tmp_path / "in" / "notes.txt", files["a"], files["a"]]).files == [
        tmp_path / "in" / "notes.txt",
        files["a"],
    ]
    with pytest.raises(DetectError, match=r"empty: no DICOM, PNG or JPEG files \(by suffix or by content\) found"):
        (tmp_path / "empty").mkdir()
        collect_input_files([tmp_path / "empty"])


def test_infer_folder_with_a_corrupt_file_reports_it_and_writes_the_rest(tmp_path, checkpoint):
    files = write_images(tmp_path / "in")
    result = run_inference(
        [tmp_path / "in"],
        out_path=tmp_path / "boxes.json",
        checkpoint=checkpoint,
        submission_path=tmp_path / "sub.csv",
        overlay_dir=tmp_path / "overlays",
        batch_size=2,
        device="cpu",
        score_thresh=0.05,
        shrink_factor=1.0,
    )
    document = json.loads((tmp_path / "boxes.json").read_text())
    validate_output(document)
    assert result.out_path == tmp_path / "boxes.json" and result.n_inputs == 4 and result.n_predicted == 3
    by_source = {Path(e["source"]).name: e for e in document["images"]}
    assert set(by_source) == {"a.dcm", "b.dcm", "wide.png", "corrupt.dcm"}
    corrupt = by_source["corrupt.dcm"]
    assert corrupt["boxes"] is None and str(files["corrupt"]) in result.failures[0].path
    assert corrupt["error"] == result.failures[0].reason and corrupt["error"]
    assert [f.path for f in result.failures] == [str(files["corrupt"])]

    a = by_source["a.dcm"]
    assert (a["patient_id"], a["view_position"], a["image_width_px"], a["image_height_px"]) == ("pa", "AP", 96, 96)
    assert a["sop_instance_uid"]
    wide = by_source["wide.png"]
    assert (wide["patient_id"], wide["image_width_px"], wide["image_height_px"]) == (None, 150, 60)
    assert wide["boxes"], "the biased tiny model predicts boxes on every image"
    for box in wide["boxes"]:  # ORIGINAL pixels of the 150 x 60 image, not the 64 px input
        assert 0 <= box["x"] and box["x"] + box["width"] <= 150 + 1e-6
        assert 0 <= box["y"] and box["y"] + box["height"] <= 60 + 1e-6
    assert max(b["x"] + b["width"] for e in document["images"] if e["boxes"] for b in e["boxes"]) > 64
    assert [(p["dataset"], p["threshold"]) for p in document["settings"]["operating_points"]] == [
        ("kermany", 0.6),
        ("rsna", 0.4),
    ]
    assert document["settings"]["operating_point_rule"].startswith(
        "by input format: DICOM -> rsna, PNG/JPEG -> kermany"
    )
    # a DICOM takes the RSNA threshold, a PNG the Kermany one, each named in its entry
    assert a["operating_point"] == {
        "dataset": "rsna",
        "threshold": 0.4,
        "source": "F1-optimal on rsna val at epoch 3 (8 images)",
    }
    assert wide["operating_point"]["dataset"] == "kermany" and wide["operating_point"]["threshold"] == 0.6
    assert document["model"]["checkpoint"] == str(checkpoint) and document["model"]["checkpoint_epoch"] == 3
    assert document["model"]["name"] == "mobilenet_v3_large_fpn" and document["model"]["image_size_px"] == SIZE_PX
    for entry in document["images"]:
        if entry["error"] is None:
            probs = entry["class_probabilities"]
            assert sum(probs.values()) == pytest.approx(1.0, abs=1e-4)
            assert entry["pneumonia"] == (entry["pneumonia_probability"] >= entry["operating_point"]["threshold"])
            assert entry["box_outcome"] == ("boxes" if entry["boxes"] else "no_box_above_score_thresh")

    rows = list(csv.reader((tmp_path / "sub.csv").read_text().splitlines()))
    assert rows[0] == ["patientId", "PredictionString"]
    assert sorted(r[0] for r in rows[1:]) == ["pa", "pb", "wide"]  # PatientID, else the file stem
    assert (
        sorted(p.name for p in (tmp_path / "overlays").iterdir()) == ["a.png", "b.png", "wide.png"]
        and result.n_overlays == 3
    )
    overlay = cv2.imread(str(tmp_path / "overlays" / "wide.png"))
    # small images are enlarged to 512 px for legible text (60 * 512/150 = 204.8 rows), the legend strip below
    assert overlay.shape[1:] == (512, 3) and overlay.shape[0] > 205
    assert "predicted 3 image(s)" in result.summary() and "1 file(s) unreadable" in result.summary()

    # The submission round-trips through `detect eval --predictions` to the RSNA score computed
    # directly from boxes.json (up to the CSV's 0.1 px rounding).
    (tmp_path / "labels.csv").write_text(
        "patientId,x,y,width,height,Target\npa,10,10,40,50,1\npa,50,20,30,30,1\npb,,,,,0\nwide,20,5,60,40,1\n"
    )
    truth = {
        "pa": xywh_to_xyxy(np.array([[10, 10, 40, 50], [50, 20, 30, 30]])),
        "pb": np.zeros((0, 4)),
        "wide": xywh_to_xyxy(np.array([[20, 5, 60, 40]])),
    }
    predictions = {}
    for entry in document["images"]:
        if entry["error"] is None:
            sid = entry["patient_id"] or Path(entry["source"]).stem
            boxes = np.array([[b["x"], b["y"], b["width"], b["height"]] for b in entry["boxes"]]).reshape(-1, 4)
            predictions[sid] = (xywh_to_xyxy(boxes), np.array([b["score"] for b in entry["boxes"]]))
    outcome = evaluate_predictions(tmp_path / "sub.csv", tmp_path / "labels.csv", tmp_path / "eval")
    assert outcome.metrics["detection"]["rsna_score"] == pytest.approx(rsna_score(predictions, truth), abs=1e-3)


def test_default_checkpoint_is_the_latest_best_under_runs(tmp_path, checkpoint, monkeypatch):
    import os
    import shutil

    older = tmp_path / "runs" / "old" / "checkpoints" / "best.pt"
    newer = tmp_path / "runs" / "new" / "checkpoints" / "best.pt"
    for path in (older, newer):
        path.parent.mkdir(parents=True)
        shutil.copy(checkpoint, path)
    os.utime(older, (1_000_000, 1_000_000))
    image = tmp_path / "x.png"
    cv2.imwrite(str(image), textured_image(50, 40))
    monkeypatch.chdir(tmp_path)
    run_inference([image], out_path=tmp_path / "boxes.json", device="cpu")
    assert json.loads((tmp_path / "boxes.json").read_text())["model"]["checkpoint"] == str(
        Path("runs") / "new" / "checkpoints" / "best.pt"
    )


def _infer(tmp_path, inputs, **kwargs) -> dict:
    """run_inference into tmp_path / 'b.json', and the document it wrote."""
    run_inference(inputs, out_path=tmp_path / "b.json", **kwargs)
    return json.loads((tmp_path / "b.json").read_text())


def test_operating_point_rules():
    stored = {name: OperatingPoint(name, t, f"{name} val") for name, t in STORED.items()}
    by_format = ThresholdChoice()
    assert pick_operating_point(stored, by_format, is_dicom=True) == stored["rsna"]
    assert pick_operating_point(stored, by_format, is_dicom=False) == stored["kermany"]
    # a model trained on one dataset: its threshold for every input
    assert pick_operating_point({"rsna": stored["rsna"]}, by_format, is_dicom=False) == stored["rsna"]
    assert pick_operating_point(stored, ThresholdChoice(dataset="kermany"), is_dicom=True) == stored["kermany"]
    assert pick_operating_point(stored, ThresholdChoice(explicit=0.99), is_dicom=True) == OperatingPoint(
        "any", 0.99, "command line (--pneumonia-threshold)"
    )
    default = pick_operating_point({}, by_format, is_dicom=True)
    assert (default.threshold, default.source) == (0.5, "default 0.5 (the checkpoint stores no threshold)")
    with pytest.raises(DetectError, match=r"pneumonia threshold must lie in \[0, 1\], got 1.5"):
        ThresholdChoice(explicit=1.5)
    with pytest.raises(DetectError, match="--threshold-from 'chexpert' is unknown; choose one of: rsna, kermany"):
        ThresholdChoice(dataset="chexpert")
    with pytest.raises(DetectError, match="the checkpoint stores no kermany threshold \\(it has: rsna\\)"):
        ThresholdChoice(dataset="kermany").offered({"rsna": stored["rsna"]})


def test_an_explicit_threshold_decides_and_gates(tmp_path, checkpoint):
    image = tmp_path / "x.png"
    cv2.imwrite(str(image), textured_image(50, 40))
    doc = _infer(tmp_path, [image], checkpoint=checkpoint, device="cpu", pneumonia_threshold=0.99)
    assert doc["settings"]["operating_points"] == [
        {"dataset": "any", "threshold": 0.99, "source": "command line (--pneumonia-threshold)"}
    ]
    entry = doc["images"][0]
    # The biased model says ~0.95 < 0.99: no pneumonia, and gating drops every box.
    assert entry["pneumonia"] is False and entry["boxes"] == [] and entry["box_outcome"] == "not_pneumonia"
    assert entry["operating_point"]["threshold"] == 0.99


def test_pneumonia_without_a_box_above_the_score_threshold_says_so(tmp_path, checkpoint):
    image = tmp_path / "x.png"
    cv2.imwrite(str(image), textured_image(50, 40))
    # no gated score can reach 1
    entry = _infer(tmp_path, [image], checkpoint=checkpoint, device="cpu", score_thresh=1.0)["images"][0]
    assert entry["pneumonia"] is True and entry["boxes"] == []
    assert entry["box_outcome"] == "no_box_above_score_thresh"


def test_threshold_from_one_dataset_for_every_image(tmp_path, checkpoint):
    dicom = write_jpeg_baseline_dicom(tmp_path / "a.dcm", textured_image(96, 96, seed=1), patient_id="pa")
    doc = _infer(tmp_path, [dicom], checkpoint=checkpoint, device="cpu", threshold_from="kermany")
    assert doc["images"][0]["operating_point"]["dataset"] == "kermany"
    assert doc["settings"]["operating_point_rule"] == "the kermany threshold for every image (--threshold-from)"


def test_an_older_checkpoint_threshold_applies_to_every_image(tmp_path):
    """Checkpoints written before per-dataset operating points stored one pooled threshold."""
    cfg = tiny_config()
    path = save_checkpoint(
        tmp_path / "old.pt",
        model=build_model(cfg.model, cfg.data.image_size_px),
        cfg=cfg,
        epoch=1,
        global_step=1,
        extra={"pneumonia_threshold": 0.37},
    )
    image = tmp_path / "x.png"
    cv2.imwrite(str(image), textured_image(50, 40))
    entry = _infer(tmp_path, [image], checkpoint=path, device="cpu")["images"][0]
    assert entry["operating_point"]["dataset"] == "any" and entry["operating_point"]["threshold"] == 0.37
    assert "older format" in entry["operating_point"]["source"]


def test_nothing_readable_is_an_error_and_writes_nothing(tmp_path, checkpoint):
    (tmp_path / "bad.dcm").write_bytes(b"junk")
    with pytest.raises(
        DetectError, match=r"none of the 2 input file\(s\) could be read: .*bad\.dcm: .*missing\.png: file not found"
    ):
        run_inference(
            [tmp_path / "bad.dcm", tmp_path / "missing.png"],
            out_path=tmp_path / "boxes.json",
            checkpoint=checkpoint,
            device="cpu",
        )
    assert not (tmp_path / "boxes.json").exists()


def test_missing_checkpoint_is_a_checkpoint_error(tmp_path):
    image = tmp_path / "x.png"
    cv2.imwrite(str(image), textured_image(50, 40))
    with pytest.raises(CheckpointError, match="nope.pt: checkpoint not found"):
        run_inference([image], out_path=tmp_path / "b.json", checkpoint=tmp_path / "nope.pt", device="cpu")
    with pytest.raises(CheckpointError, match="no trained model found under"):
        run_inference([image], out_path=tmp_path / "b.json", runs_dir=tmp_path / "runs", device="cpu")


def test_reader_threads_change_nothing_but_the_speed(tmp_path, checkpoint):
    """Serial reads (workers=0) and 3 reader threads with a read-ahead give the same boxes.json,
    entry for entry in input order, the corrupt file reported in its place; the run logs where
    its time went."""
    write_images(tmp_path / "in")
    for i in range(5):  # more batches than the read-ahead window, so the window moves
        cv2.imwrite(str(tmp_path / "in" / f"extra{i}.png"), textured_image(40 + i, 50, seed=10 + i))
    documents, results, logs = [], [], []
    for workers in (0, 3):
        out = tmp_path / f"w{workers}" / "boxes.json"
        lines: list[str] = []
        results.append(
            run_inference(
                [tmp_path / "in"],
                out_path=out,
                checkpoint=checkpoint,
                batch_size=2,
                device="cpu",
                workers=workers,
                log=lines.append,
            )
        )
        documents.append(json.loads(out.read_text()))
        logs.append(lines)
    serial, threaded = documents
    assert [e["source"] for e in threaded["images"]] == [e["source"] for e in serial["images"]]
    assert threaded["images"] == serial["images"]
    assert [Path(f.path).name for f in results[1].failures] == ["corrupt.dcm"]
    for result, lines, workers in zip(results, logs, (0, 3)):
        assert result.workers == workers and result.times.n_images == 8
        assert 0 < result.times.predicting_s <= result.wall_s
        assert 0 <= result.times.waiting_for_reads_s <= result.wall_s
        assert (
            lines[-1] == result.pipeline_line()
            and f"({workers} reader thread(s), --threads; torch threads " in lines[-1]
        )


def test_negative_workers_is_a_user_error(tmp_path, checkpoint):
    with pytest.raises(DetectError, match=r"--threads must be a whole number in 0..256 \(0: read in turn\), got -1"):
        run_inference([tmp_path], out_path=tmp_path / "boxes.json", checkpoint=checkpoint, workers=-1)


def test_cpu_inference_keeps_torch_on_every_core_and_restores_torch_threads(tmp_path, checkpoint, monkeypatch):
    from detect.inference.batch import cpu_torch_threads

    assert [cpu_torch_threads(w, 2) for w in (0, 1, 2, 3)] == [2, 2, 2, 2]
    assert cpu_torch_threads(1, 16) == 16
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("detect.inference.batch.os.cpu_count", lambda: 3)
    write_images(tmp_path / "in")
    before = torch.get_num_threads()
    result = run_inference(
        [tmp_path / "in"], out_path=tmp_path / "boxes.json", checkpoint=checkpoint, device="cpu", workers=2
    )
    assert result.torch_threads == 3 and torch.get_num_threads() == before
    monkeypatch.setenv("OMP_NUM_THREADS", "7")  # the user's own setting is left alone
    result = run_inference(
        [tmp_path / "in"], out_path=tmp_path / "b2.json", checkpoint=checkpoint, device="cpu", workers=2
    )
    assert result.torch_threads == before
