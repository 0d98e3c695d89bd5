"""detect.training.engine: validation predicts through the one predictor, maps back to ORIGINAL
pixels, and scores each dataset at its own operating point."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from data_prep.records import ImageRecord
from detect.inference.predictor import Predictor
from detect.training.engine import evaluate, predict_loader

SIZE_PX = 64


class _StubDataset(torch.utils.data.Dataset):
    """Letterboxed samples of known scale; targets carry image_index, scale and orig_size like ManifestDataset."""

    image_size_px = SIZE_PX

    def __init__(self, records: list[ImageRecord]) -> None:
        self.records = records

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int):
        record = self.records[index]
        scale = SIZE_PX / max(record.height, record.width)
        target = {
            "image_index": torch.tensor(index),
            "scale": torch.tensor(scale),
            "orig_size": torch.tensor([record.height, record.width]),
            "boxes": torch.as_tensor(record.boxes_xyxy * scale),
            "labels": torch.ones(len(record.boxes_xyxy), dtype=torch.int64),
        }
        return torch.full((3, SIZE_PX, SIZE_PX), float(index)), target


class _OracleModel(torch.nn.Module):
    """Returns each image's ground truth (in input pixels) with a fixed score, and a fixed probability.

    The image's fill value is its dataset index, which is how the stub finds its record.
    """

    def __init__(self, records: list[ImageRecord], probs: list[float], extra_box_input_xyxy=None) -> None:
        super().__init__()
        self.records, self.probs = records, probs
        self.extra = extra_box_input_xyxy
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def forward(self, images, targets=None):
        outputs = []
        for image in images:
            index = int(image[0, 0, 0])
            record = self.records[index]
            scale = SIZE_PX / max(record.height, record.width)
            boxes = torch.as_tensor(record.boxes_xyxy * scale, dtype=torch.float32).reshape(-1, 4)
            scores = torch.full((boxes.shape[0],), 0.9)
            if self.extra is not None and index == 0:
                boxes = torch.cat([boxes, torch.tensor([self.extra], dtype=torch.float32)])
                scores = torch.cat([scores, torch.tensor([0.2])])
            outputs.append(
                {
                    "boxes": boxes,
                    "scores": scores,
                    "labels": torch.ones(boxes.shape[0], dtype=torch.int64),
                    "pneumonia_prob": torch.tensor(self.probs[index]),
                    "rsna_class_probs": torch.full((3,), 1 / 3),
                    "subtype_probs": torch.full((3,), 1 / 3),
                }
            )
        return outputs


def _records() -> list[ImageRecord]:
    return [
        # 100 high, 200 wide: scale 64 / 200 = 0.32, the image fills the top of the square.
        ImageRecord(
            image_id="pos",
            dataset="rsna",
            path="pos.dcm",
            patient_id="pos",
            target=1,
            has_box_labels=True,
            boxes_xyxy=np.array([[20, 10, 120, 90]], np.float32),
            rsna_class="Lung Opacity",
            height=100,
            width=200,
        ),
        ImageRecord(
            image_id="neg",
            dataset="rsna",
            path="neg.dcm",
            patient_id="neg",
            target=0,
            has_box_labels=True,
            rsna_class="Normal",
            height=128,
            width=128,
        ),
        ImageRecord(
            image_id="train/PNEUMONIA/person1_virus_1",
            dataset="kermany",
            path="k.jpeg",
            patient_id="person1",
            target=1,
            has_box_labels=False,
            subtype="viral",
            height=300,
            width=400,
        ),
    ]


def _loader(records):
    return DataLoader(_StubDataset(records), batch_size=2, collate_fn=lambda batch: tuple(zip(*batch)))


def test_predictions_are_mapped_back_to_original_pixels():
    records = _records()
    model = _OracleModel(records, [0.9, 0.1, 0.8], extra_box_input_xyxy=[3.2, 3.2, 6.4, 9.6])
    seen, predictions = predict_loader(Predictor(model, SIZE_PX, torch.device("cpu")), _loader(records))
    assert [r.image_id for r in seen] == [r.image_id for r in records]
    # input box [3.2, 3.2, 6.4, 9.6] / 0.32 = [10, 10, 20, 30] in the original 200 x 100 image
    np.testing.assert_allclose(predictions[0].boxes_xyxy, [[20, 10, 120, 90], [10, 10, 20, 30]], atol=1e-4)
    np.testing.assert_allclose(predictions[0].scores, [0.9, 0.2])
    assert (predictions[0].width_px, predictions[0].height_px) == (200, 100)
    assert predictions[1].boxes_xyxy.shape == (0, 4)
    assert [p.pneumonia_probability for p in predictions] == pytest.approx([0.9, 0.1, 0.8])


def test_perfect_model_scores_one_and_kermany_is_left_out_of_detection():
    records = _records()
    result = evaluate(_OracleModel(records, [0.9, 0.1, 0.8]), _loader(records), torch.device("cpu"), epoch=3)
    m = result.metrics
    assert m["map50"] == pytest.approx(1.0) and m["map"] == pytest.approx(1.0)
    # detect infer's boxes are shrunk to 0.875: IoU with the truth 0.766 > 0.75, still a hit at every t
    assert m["rsna_score"] == pytest.approx(1.0)
    # each dataset's F1-optimal threshold, on its own images: the highest that still calls its positives
    assert result.operating_points["rsna"].threshold == pytest.approx(0.9)
    assert result.operating_points["kermany"].threshold == pytest.approx(0.8)
    assert result.operating_points["rsna"].source == "F1-optimal on rsna val at epoch 3 (2 images)"
    assert m["threshold_rsna"] == pytest.approx(0.9) and m["threshold_kermany"] == pytest.approx(0.8)
    assert m["f1"] == pytest.approx(1.0) and m["roc_auc"] == pytest.approx(1.0)
    assert m["n_images"] == 3


def test_each_dataset_is_decided_at_its_own_threshold():
    """RSNA calls at 0.9 and Kermany at 0.3: one pooled threshold could not get both right."""
    records = _records() + [
        ImageRecord(
            image_id="train/NORMAL/IM-0001-0001",
            dataset="kermany",
            path="n.jpeg",
            patient_id="IM-0001",
            target=0,
            has_box_labels=False,
            subtype="normal",
            height=300,
            width=400,
        ),
    ]
    # rsna: pos 0.9 > neg 0.85; kermany: pos 0.3 > neg 0.2. Pooled, the Kermany positive (0.3)
    # ranks below the RSNA negative (0.85): no single threshold separates all four.
    result = evaluate(_OracleModel(records, [0.9, 0.85, 0.3, 0.2]), _loader(records), torch.device("cpu"))
    assert result.operating_points["rsna"].threshold == pytest.approx(0.9)
    assert result.operating_points["kermany"].threshold == pytest.approx(0.3)
    assert result.metrics["accuracy"] == pytest.approx(1.0) and result.metrics["f1"] == pytest.approx(1.0)


def test_false_positive_on_negative_image_lowers_rsna_score():
    records = _records()
    model = _OracleModel(records, [0.9, 0.95, 0.8])

    def forward_with_fp(images, targets=None):  # a confident box on the negative image: RSNA scores it 0
        outputs = _OracleModel.forward(model, images)
        for image, out in zip(images, outputs):
            if int(image[0, 0, 0]) == 1:
                out["boxes"] = torch.tensor([[10.0, 10.0, 40.0, 40.0]])
                out["scores"] = torch.tensor([0.9])
        return outputs

    model.forward = forward_with_fp
    result = evaluate(model, _loader(records), torch.device("cpu"))
    # rsna: 0.95 (the negative) ranks above 0.9 (the positive): F1 is best calling both, at 0.9
    assert result.operating_points["rsna"].threshold == pytest.approx(0.9)
    assert result.metrics["rsna_score"] == pytest.approx(0.5)  # mean of 1 (pos) and 0 (neg with a box)
    assert result.metrics["specificity"] == pytest.approx(0.0)


def test_no_box_labels_gives_nan_detection_metrics():
    records = [_records()[2]]
    result = evaluate(_OracleModel(records, [0.7]), _loader(records), torch.device("cpu"))
    assert math.isnan(result.metrics["map50"]) and math.isnan(result.metrics["rsna_score"])
    assert set(result.operating_points) == {"kermany"}
    assert result.operating_points["kermany"].threshold == pytest.approx(0.7)


def test_a_split_without_positives_gets_the_default_operating_point():
    records = [_records()[1]]
    result = evaluate(_OracleModel(records, [0.4]), _loader(records), torch.device("cpu"))
    point = result.operating_points["rsna"]
    assert point.threshold == 0.5 and point.source.startswith("default 0.5 (no positive image in rsna val")
