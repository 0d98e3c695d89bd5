"""detect.inference.gating: a second model's pneumonia probability gates and decides.

The gate here is a second tiny detector (any checkpoint whose predictions carry a pneumonia
probability gates): its image head is biased the other way (p ~0.05 against the detector's
~0.95), so where each number comes from is visible in every output.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from data_prep.errors import CheckpointError, DetectError
from detect.config import config_from_dict
from detect.evaluation.evaluate import evaluate_checkpoint
from detect.inference.api import Detector
from detect.inference.batch import run_inference
from detect.inference.gating import GatedPredictor, check_gate, load_gate, with_gate_probability
from detect.inference.predictor import LoadedModel, Predictor, load_predictor
from detect.models.build import build_model
from detect.models.checkpoint import save_checkpoint
from detect.outputs.boxes_json import validate_output
from detect.predictions import OperatingPoint, RawPrediction
from tests.data_prep.dicom_fixtures import textured_image
from tests.detect.inference.pixels import run_pixels
from tests.detect.inference.test_batch import save_tiny_checkpoint, write_images
from tests.detect.train_fixtures import make_rsna

GATE_THRESHOLDS = {"rsna": 0.02, "kermany": 0.03}


def save_classifier_checkpoint(path: Path, *, task: str = "rsna2", thresholds: dict[str, float] | None = None) -> Path:
    """An untrained basic_cnn classifier for `task` at 64 px (seeded), storing `thresholds`
    (default: rsna 0.45) as its val-split operating points."""
    cfg = config_from_dict(
        {}, ["model.name=basic_cnn", f"task={task}", "data.image_size_px=64", "train.monitor=val_f1"]
    )
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.data.image_size_px, task=cfg.task)
    points = {
        name: OperatingPoint(name, t, f"F1-optimal on {name} val at epoch 1 (8 images)").to_dict()
        for name, t in (thresholds or {"rsna": 0.45}).items()
    }
    return save_checkpoint(path, model=model, cfg=cfg, epoch=1, global_step=2, extra={"operating_points": points})


@pytest.fixture(scope="module")
def detector_ckpt(tmp_path_factory) -> Path:
    return save_tiny_checkpoint(tmp_path_factory.mktemp("det") / "best.pt", overrides=("data.test_fraction=0.4",))


@pytest.fixture(scope="module")
def gate_ckpt(tmp_path_factory) -> Path:
    # another input size too: each model letterboxes the original image to its own
    return save_tiny_checkpoint(
        tmp_path_factory.mktemp("gate") / "best.pt",
        thresholds=GATE_THRESHOLDS,
        pneumonia_bias=-3.0,
        overrides=("data.image_size_px=96",),
    )


def _raw(probability: float, width: int = 40, height: int = 30) -> RawPrediction:
    return RawPrediction(
        width_px=width,
        height_px=height,
        boxes_xyxy=np.array([[1, 2, 10, 12]], np.float32),
        scores=np.array([0.9], np.float32),
        class_probabilities=np.array([0.2, 0.3, 0.5]),
        subtype_probabilities=np.array([0.1, 0.6, 0.3]),
        pneumonia_probability=probability,
    )


def test_with_gate_probability_replaces_only_the_pneumonia_probability():
    gated = with_gate_probability(_raw(0.9), _raw(0.25))
    assert gated.pneumonia_probability == 0.25
    np.testing.assert_array_equal(gated.boxes_xyxy, [[1, 2, 10, 12]])
    np.testing.assert_array_equal(gated.class_probabilities, [0.2, 0.3, 0.5])  # the detector's own
    with pytest.raises(ValueError, match="not the same image"):
        with_gate_probability(_raw(0.9), _raw(0.25, width=41))


def test_the_gated_pair_takes_the_gates_probability_and_the_detectors_boxes(detector_ckpt, gate_ckpt):
    detector = load_predictor(detector_ckpt, device="cpu")
    gate = load_gate(gate_ckpt, device="cpu")
    images = [textured_image(96, 96, seed=1), textured_image(60, 150, seed=3)]
    own = run_pixels(detector.predictor, images)
    gates = run_pixels(gate.predictor, images)
    paired = run_pixels(GatedPredictor(detector.predictor, gate.predictor), images)
    for mine, theirs, pair in zip(own, gates, paired):
        assert mine.pneumonia_probability > 0.9 and theirs.pneumonia_probability < 0.1
        assert pair.pneumonia_probability == pytest.approx(theirs.pneumonia_probability)
        np.testing.assert_array_equal(pair.boxes_xyxy, mine.boxes_xyxy)
        np.testing.assert_array_equal(pair.scores, mine.scores)
        assert len(pair.scores) > 0


def test_a_classifier_gates_a_detector_with_its_own_probability_and_threshold(tmp_path, detector_ckpt):
    classifier = save_classifier_checkpoint(tmp_path / "cls.pt", thresholds={"rsna": 0.45})
    pixels = [textured_image(96, 96, seed=1), textured_image(60, 150, seed=3)]
    alone = Detector.from_checkpoint(classifier, device="cpu")
    gated = Detector.from_checkpoint(detector_ckpt, device="cpu", gate_with=classifier)
    for image in pixels:
        own, pair = alone.predict(image).to_dict(), gated.predict(image).to_dict()
        assert own["boxes"] == []  # a classifier draws no boxes
        assert pair["pneumonia_probability"] == own["pneumonia_probability"]
        assert pair["operating_point"] == own["operating_point"] and pair["operating_point"]["threshold"] == 0.45
        assert pair["pneumonia"] == own["pneumonia"]
        assert pair["class_probabilities"] != own["class_probabilities"]  # those stay the detector's


def test_the_gate_decides_at_its_own_operating_points(detector_ckpt, gate_ckpt):
    pixels = textured_image(96, 96, seed=1)
    plain = Detector.from_checkpoint(detector_ckpt, device="cpu").predict(pixels).to_dict()
    gated_detector = Detector.from_checkpoint(detector_ckpt, device="cpu", gate_with=gate_ckpt)
    gated = gated_detector.predict(pixels).to_dict()
    gate_probability = run_pixels(load_gate(gate_ckpt, device="cpu").predictor, [pixels])[0].pneumonia_probability
    assert plain["pneumonia_probability"] > 0.9
    assert gated["pneumonia_probability"] == pytest.approx(gate_probability, abs=1e-6)
    # an array is not a DICOM: the Kermany point, the gate's (0.03), not the detector's (0.6)
    assert gated["operating_point"]["threshold"] == GATE_THRESHOLDS["kermany"]
    assert gated["pneumonia"] is True and gated["box_outcome"] in ("boxes", "no_box_above_score_thresh")
    # box score x the gate's small probability: every box falls below the score threshold
    assert plain["boxes"] and not gated["boxes"]
    assert {p.threshold for p in gated_detector.operating_points} == set(GATE_THRESHOLDS.values())


def test_a_gate_above_its_threshold_gates_boxes_by_its_probability(detector_ckpt, gate_ckpt):
    """--keep-below-threshold off the table: with the gate's probability below an explicit
    threshold, the pair's image is 'not pneumonia' and has no boxes, though the detector says 0.95."""
    gated = Detector.from_checkpoint(detector_ckpt, device="cpu", gate_with=gate_ckpt, pneumonia_threshold=0.5)
    entry = gated.predict(textured_image(96, 96, seed=1)).to_dict()
    assert entry["pneumonia"] is False and entry["box_outcome"] == "not_pneumonia" and entry["boxes"] == []


def test_infer_records_the_gate_in_boxes_json(tmp_path, detector_ckpt, gate_ckpt):
    write_images(tmp_path / "in")
    result = run_inference(
        [tmp_path / "in"],
        out_path=tmp_path / "boxes.json",
        checkpoint=detector_ckpt,
        gate_with=gate_ckpt,
        device="cpu",
        workers=1,
    )
    document = json.loads(result.out_path.read_text())
    validate_output(document)
    assert document["gate_model"]["checkpoint"] == str(gate_ckpt) and document["gate_model"]["image_size_px"] == 96
    assert document["model"]["checkpoint"] == str(detector_ckpt)
    assert [p["threshold"] for p in document["settings"]["operating_points"]] == [0.03, 0.02]  # kermany, rsna
    read = [e for e in document["images"] if e["error"] is None]
    assert len(read) == 3 and all(e["pneumonia_probability"] < 0.1 for e in read)
    dicom = next(e for e in read if e["source"].endswith("a.dcm"))
    assert dicom["operating_point"]["threshold"] == GATE_THRESHOLDS["rsna"]
    plain = run_inference(
        [tmp_path / "in"], out_path=tmp_path / "plain.json", checkpoint=detector_ckpt, device="cpu", workers=1
    )
    assert json.loads(plain.out_path.read_text())["gate_model"] is None


def test_resume_refuses_another_gate(tmp_path, detector_ckpt, gate_ckpt):
    write_images(tmp_path / "in")
    run_inference(
        [tmp_path / "in"], out_path=tmp_path / "boxes.json", checkpoint=detector_ckpt, device="cpu", workers=1
    )
    with pytest.raises(DetectError, match="gate_checkpoint_sha256"):
        run_inference(
            [tmp_path / "in"],
            out_path=tmp_path / "boxes.json",
            checkpoint=detector_ckpt,
            gate_with=gate_ckpt,
            device="cpu",
            workers=1,
            resume=True,
        )


def test_eval_scores_the_pair_at_the_gates_thresholds(tmp_path, detector_ckpt, gate_ckpt):
    data = make_rsna(tmp_path / "rsna", n_images=16)
    plain = evaluate_checkpoint(detector_ckpt, [data], tmp_path / "plain", device="cpu", workers=1)
    gated = evaluate_checkpoint(detector_ckpt, [data], tmp_path / "gated", device="cpu", workers=1, gate_with=gate_ckpt)
    assert plain.metrics["gate_model"] is None
    assert gated.metrics["gate_model"]["checkpoint"] == str(gate_ckpt)
    assert gated.metrics["operating_points"]["rsna"]["threshold"] == GATE_THRESHOLDS["rsna"]
    assert plain.metrics["operating_points"]["rsna"]["threshold"] == 0.4
    # the raw detector boxes are the same; the gated boxes differ (box score x the gate's ~0.05)
    assert gated.metrics["detection"]["map"] == plain.metrics["detection"]["map"]
    plain_rows = (tmp_path / "plain" / "test_predictions.csv").read_text().splitlines()[1:]
    gated_rows = (tmp_path / "gated" / "test_predictions.csv").read_text().splitlines()[1:]
    assert len(plain_rows) == len(gated_rows) > 0
    assert any(row.split(",")[1] for row in plain_rows) and not any(row.split(",")[1] for row in gated_rows)
    assert (
        json.loads((tmp_path / "gated" / "metrics.json").read_text())["gate_model"]["name"] == "mobilenet_v3_large_fpn"
    )
    assert any(note.startswith("gated by mobilenet_v3_large_fpn") for note in gated.notes)


def test_a_missing_or_corrupt_gate_is_one_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match=r"^.*nope\.pt: --gate-with: checkpoint not found$"):
        load_gate(tmp_path / "nope.pt", device="cpu")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"junk\.pt: --gate-with: not a readable checkpoint file") as info:
        load_gate(tmp_path / "junk.pt", device="cpu")
    assert "\n" not in str(info.value)


class _NoProbability(torch.nn.Module):
    """A model whose eval output lacks pneumonia_prob (what no gate may be)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def forward(self, images, targets=None):
        return [{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0)} for _ in images]


def test_a_gate_without_a_pneumonia_probability_is_refused(detector_ckpt):
    real = load_predictor(detector_ckpt, device="cpu")
    fake = LoadedModel(
        Predictor(_NoProbability(), 32, torch.device("cpu")),
        Path("cls.pt"),
        real.config,
        {**real.model_info, "name": "no_prob", "image_size_px": 32},
    )
    with pytest.raises(
        DetectError, match=r"^cls\.pt: --gate-with: model 'no_prob' at 32 px gives no pneumonia probability"
    ):
        check_gate(fake)
    check_gate(real)  # a detector's image head gates
