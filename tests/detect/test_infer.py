"""detect.infer: files -> boxes.json in ORIGINAL pixels, bad files reported, schema-valid output."""
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
from detect.infer import (
    Predictor,
    choose_threshold,
    collect_input_files,
    load_image,
    run_inference,
    validate_output,
)
from detect.metrics import rsna_score
from detect.postprocess import PostprocessSettings
from tests.data_prep.dicom_fixtures import textured_image, write_jpeg_baseline_dicom

SIZE_PX = 64


def save_tiny_checkpoint(path: Path, *, pneumonia_threshold: float | None = 0.4, epoch: int = 3, overrides: tuple[str, ...] = ()) -> Path:
    """A MobileNetV3 detector at 64 px, untrained but biased to be sure: every image gets boxes
    of score ~1 and a pneumonia probability ~0.95, so the box paths are exercised.
    `overrides`: config `key=value`s on top of tests/detect/train_fixtures.tiny_config."""
    from detect.checkpoint import save_checkpoint
    from detect.models import build_model
    from tests.detect.train_fixtures import tiny_config

    cfg = tiny_config(*overrides)
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.data.image_size_px)
    with torch.no_grad():
        model.roi_heads.box_predictor.cls_score.bias.copy_(torch.tensor([-4.0, 4.0]))
        model.image_head.pneumonia.bias.fill_(3.0)
    extra = {} if pneumonia_threshold is None else {"pneumonia_threshold": pneumonia_threshold}
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
    found = collect_input_files([tmp_path / "in"])
    assert [p.relative_to(tmp_path / "in").as_posix() for p in found] == ["a.dcm", "corrupt.dcm", "sub/b.dcm", "wide.png"]
    # A file named explicitly is taken whatever its suffix; the same file twice is read once.
    assert collect_input_files([tmp_path / "in" / "notes.txt", files["a"], files["a"]]) == [tmp_path / "in" / "notes.txt", files["a"]]
    with pytest.raises(DetectError, match=r"empty: no \.dcm, \.png, \.jpg, \.jpeg files found"):
        (tmp_path / "empty").mkdir()
        collect_input_files([tmp_path / "empty"])


class _StubModel(torch.nn.Module):
    """Returns fixed boxes in INPUT pixels; the pneumonia probability differs per call (view)."""

    def __init__(self, boxes_input_xyxy, scores, probs_per_call):
        super().__init__()
        self.boxes, self.scores = torch.tensor(boxes_input_xyxy, dtype=torch.float32), torch.tensor(scores)
        self.probs = list(probs_per_call)
        self.inputs: list[list[torch.Tensor]] = []

    def forward(self, images):
        self.inputs.append(images)
        p = self.probs[len(self.inputs) - 1]
        return [{"boxes": self.boxes.clone(), "scores": self.scores.clone(), "labels": torch.ones(len(self.scores), dtype=torch.int64),
                 "rsna_class_probs": torch.tensor([0.2, 0.3, 0.5]), "pneumonia_prob": torch.tensor(p),
                 "subtype_probs": torch.tensor([0.1, 0.6, 0.3])} for _ in images]


def test_predictor_maps_boxes_back_to_original_pixels():
    # A 100 (h) x 200 (w) image letterboxed to 64 px: scale = 64 / 200 = 0.32.
    # [0, 0, 32, 32] / 0.32 = [0, 0, 100, 100]; [40, 40, 60, 60] / 0.32 = [125, 125, 187.5, 187.5]
    # lies below the image (in the padding): clipped to height 100 it is empty and dropped.
    model = _StubModel([[0, 0, 32, 32], [40, 40, 60, 60]], [0.8, 0.7], [0.7])
    raw = Predictor(model, SIZE_PX, torch.device("cpu")).predict_raw([np.zeros((100, 200), dtype=np.uint8)])[0]
    np.testing.assert_allclose(raw.boxes_xyxy, [[0, 0, 100, 100]], atol=1e-4)
    np.testing.assert_allclose(raw.scores, [0.8])
    assert (raw.width_px, raw.height_px) == (200, 100)
    assert raw.pneumonia_probability == pytest.approx(0.7)
    assert model.inputs[0][0].shape == (3, SIZE_PX, SIZE_PX)


def test_flip_tta_flips_boxes_back_and_averages_probabilities():
    model = _StubModel([[0, 0, 32, 32]], [0.8], [0.7, 0.5])
    image = np.zeros((100, 200), dtype=np.uint8)
    image[:, :10] = 255  # the flipped view must really be flipped
    raw = Predictor(model, SIZE_PX, torch.device("cpu"), tta=True).predict_raw([image])[0]
    # The flipped view's [0, 0, 100, 100] is [200 - 100, 0, 200 - 0, 100] = [100, 0, 200, 100] in
    # the original. The two boxes do not overlap: WBF keeps both at 0.8 * 1/2 = 0.4.
    order = np.argsort(raw.boxes_xyxy[:, 0])
    np.testing.assert_allclose(raw.boxes_xyxy[order], [[0, 0, 100, 100], [100, 0, 200, 100]], atol=1e-4)
    np.testing.assert_allclose(raw.scores, [0.4, 0.4])
    assert raw.pneumonia_probability == pytest.approx(0.6)  # (0.7 + 0.5) / 2
    original, flipped = model.inputs[0][0], model.inputs[1][0]
    assert float(original[0, 0, 0]) == 1.0 and float(flipped[0, 0, 0]) == 0.0
    assert float(flipped[0, 0, 63]) == 1.0  # 200 px wide -> 64 px: the white band is now on the right


def test_infer_folder_with_a_corrupt_file_reports_it_and_writes_the_rest(tmp_path, checkpoint):
    files = write_images(tmp_path / "in")
    result = run_inference(
        [tmp_path / "in"], out_path=tmp_path / "boxes.json", checkpoint=checkpoint,
        submission_path=tmp_path / "sub.csv", overlay_dir=tmp_path / "overlays", batch_size=2, device="cpu",
        settings=PostprocessSettings(score_thresh=0.05, shrink_factor=1.0),
    )
    document = json.loads((tmp_path / "boxes.json").read_text())
    validate_output(document)
    assert document == result.document
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
    assert document["settings"]["pneumonia_threshold"] == 0.4
    assert document["settings"]["pneumonia_threshold_source"] == "checkpoint (F1-optimal on validation)"
    assert document["model"]["checkpoint"] == str(checkpoint) and document["model"]["checkpoint_epoch"] == 3
    assert document["model"]["name"] == "mobilenet_v3_large_fpn" and document["model"]["image_size_px"] == SIZE_PX
    for entry in document["images"]:
        if entry["error"] is None:
            probs = entry["class_probabilities"]
            assert sum(probs.values()) == pytest.approx(1.0, abs=1e-4)
            assert entry["pneumonia"] == (entry["pneumonia_probability"] >= 0.4)

    rows = list(csv.reader((tmp_path / "sub.csv").read_text().splitlines()))
    assert rows[0] == ["patientId", "PredictionString"]
    assert sorted(r[0] for r in rows[1:]) == ["pa", "pb", "wide"]  # PatientID, else the file stem
    assert sorted(p.name for p in result.overlay_paths) == ["a.png", "b.png", "wide.png"]
    overlay = cv2.imread(str(tmp_path / "overlays" / "wide.png"))
    assert overlay.shape == (205, 512, 3)  # small images are enlarged to 512 px for legible text: 60 * 512/150 = 204.8
    assert "predicted 3 image(s)" in result.summary() and "1 file(s) unreadable" in result.summary()

    # The submission round-trips through `detect eval --predictions` to the RSNA score computed
    # directly from boxes.json (up to the CSV's 0.1 px rounding).
    from detect.evaluate import evaluate_predictions

    (tmp_path / "labels.csv").write_text(
        "patientId,x,y,width,height,Target\npa,10,10,40,50,1\npa,50,20,30,30,1\npb,,,,,0\nwide,20,5,60,40,1\n"
    )
    truth = {"pa": xywh_to_xyxy(np.array([[10, 10, 40, 50], [50, 20, 30, 30]])), "pb": np.zeros((0, 4)),
             "wide": xywh_to_xyxy(np.array([[20, 5, 60, 40]]))}
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
    result = run_inference([image], out_path=tmp_path / "boxes.json", device="cpu")
    assert result.document["model"]["checkpoint"] == str(Path("runs") / "new" / "checkpoints" / "best.pt")


def test_threshold_sources():
    assert choose_threshold(None, None) == (0.5, "default 0.5")
    assert choose_threshold(None, 0.42) == (0.42, "checkpoint (F1-optimal on validation)")
    assert choose_threshold(0.99, 0.42) == (0.99, "command line")
    with pytest.raises(DetectError, match=r"pneumonia threshold must lie in \[0, 1\], got 1.5"):
        choose_threshold(1.5, None)


def test_an_explicit_threshold_decides_and_gates(tmp_path, checkpoint):
    image = tmp_path / "x.png"
    cv2.imwrite(str(image), textured_image(50, 40))
    doc = run_inference([image], out_path=tmp_path / "b.json", checkpoint=checkpoint, device="cpu", pneumonia_threshold=0.99).document
    assert (doc["settings"]["pneumonia_threshold"], doc["settings"]["pneumonia_threshold_source"]) == (0.99, "command line")
    # The biased model says ~0.95 < 0.99: no pneumonia, and gating drops every box.
    assert doc["images"][0]["pneumonia"] is False and doc["images"][0]["boxes"] == []


def test_nothing_readable_is_an_error_and_writes_nothing(tmp_path, checkpoint):
    (tmp_path / "bad.dcm").write_bytes(b"junk")
    with pytest.raises(DetectError, match=r"none of the 2 input file\(s\) could be read: .*bad\.dcm: .*missing\.png: file not found"):
        run_inference([tmp_path / "bad.dcm", tmp_path / "missing.png"], out_path=tmp_path / "boxes.json", checkpoint=checkpoint, device="cpu")
    assert not (tmp_path / "boxes.json").exists()


def test_missing_checkpoint_is_a_checkpoint_error(tmp_path):
    image = tmp_path / "x.png"
    cv2.imwrite(str(image), textured_image(50, 40))
    with pytest.raises(CheckpointError, match="nope.pt: checkpoint not found"):
        run_inference([image], out_path=tmp_path / "b.json", checkpoint=tmp_path / "nope.pt", device="cpu")
    with pytest.raises(CheckpointError, match="no trained model found under"):
        run_inference([image], out_path=tmp_path / "b.json", runs_dir=tmp_path / "runs", device="cpu")


def test_load_image_reports_a_missing_file(tmp_path):
    with pytest.raises(DetectError, match="gone.png: file not found"):
        load_image(tmp_path / "gone.png")
