"""detect.engine: predictions go back to ORIGINAL pixels, and the metrics are computed on them."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from data_prep.records import ImageRecord
from detect.engine import evaluate_model, predict_loader

SIZE_PX = 64


class _StubDataset(torch.utils.data.Dataset):
    """Letterboxed samples of known scale; targets carry image_index and scale like ManifestDataset."""

    def __init__(self, records: list[ImageRecord]) -> None:
        self.records = records

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int):
        record = self.records[index]
        scale = SIZE_PX / max(record.height, record.width)
        target = {"image_index": torch.tensor(index), "scale": torch.tensor(scale),
                  "boxes": torch.as_tensor(record.boxes_xyxy * scale), "labels": torch.ones(len(record.boxes_xyxy), dtype=torch.int64)}
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
            outputs.append({"boxes": boxes, "scores": scores, "labels": torch.ones(boxes.shape[0], dtype=torch.int64),
                            "pneumonia_prob": torch.tensor(self.probs[index])})
        return outputs


def _records() -> list[ImageRecord]:
    return [
        # 100 high, 200 wide: scale 64 / 200 = 0.32, the image fills the top of the square.
        ImageRecord(image_id="pos", dataset="rsna", path="pos.dcm", patient_id="pos", target=1, has_box_labels=True,
                    boxes_xyxy=np.array([[20, 10, 120, 90]], np.float32), rsna_class="Lung Opacity", height=100, width=200),
        ImageRecord(image_id="neg", dataset="rsna", path="neg.dcm", patient_id="neg", target=0, has_box_labels=True,
                    rsna_class="Normal", height=128, width=128),
        ImageRecord(image_id="train/PNEUMONIA/person1_virus_1", dataset="kermany", path="k.jpeg", patient_id="person1",
                    target=1, has_box_labels=False, subtype="viral", height=300, width=400),
    ]


def _loader(records):
    return DataLoader(_StubDataset(records), batch_size=2, collate_fn=lambda batch: tuple(zip(*batch)))


def test_predictions_are_mapped_back_to_original_pixels():
    records = _records()
    model = _OracleModel(records, [0.9, 0.1, 0.8], extra_box_input_xyxy=[3.2, 3.2, 6.4, 9.6])
    predictions, probs = predict_loader(model, _loader(records), torch.device("cpu"))
    boxes, scores = predictions["pos"]
    # input box [3.2, 3.2, 6.4, 9.6] / 0.32 = [10, 10, 20, 30] in the original 200 x 100 image
    np.testing.assert_allclose(boxes, [[20, 10, 120, 90], [10, 10, 20, 30]], atol=1e-4)
    np.testing.assert_allclose(scores, [0.9, 0.2])
    assert predictions["neg"][0].shape == (0, 4)
    assert probs == pytest.approx({"pos": 0.9, "neg": 0.1, "train/PNEUMONIA/person1_virus_1": 0.8})


def test_perfect_model_scores_one_and_kermany_is_left_out_of_detection():
    records = _records()
    model = _OracleModel(records, [0.9, 0.1, 0.8])
    result = evaluate_model(model, _loader(records), torch.device("cpu"))
    m = result.metrics
    assert m["map50"] == pytest.approx(1.0) and m["map"] == pytest.approx(1.0)
    # detect infer's boxes are shrunk to 0.875: IoU with the truth 0.766 > 0.75, still a hit at every t
    assert m["rsna_score"] == pytest.approx(1.0)
    # F1-optimal threshold: the highest probability that still calls both positives (0.8)
    assert result.pneumonia_threshold == pytest.approx(0.8)
    assert m["f1"] == pytest.approx(1.0) and m["auc"] == pytest.approx(1.0)
    assert m["n_images"] == 3


def test_false_positive_on_negative_image_lowers_rsna_score_and_given_threshold_is_kept():
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
    result = evaluate_model(model, _loader(records), torch.device("cpu"), pneumonia_threshold=0.5)
    assert result.pneumonia_threshold == 0.5
    assert result.metrics["rsna_score"] == pytest.approx(0.5)  # mean of 1 (pos) and 0 (neg with a box)
    assert result.metrics["specificity"] == pytest.approx(0.0)


def test_no_box_labels_gives_nan_detection_metrics():
    records = [_records()[2]]
    result = evaluate_model(_OracleModel(records, [0.7]), _loader(records), torch.device("cpu"))
    assert math.isnan(result.metrics["map50"]) and math.isnan(result.metrics["rsna_score"])
    assert result.pneumonia_threshold == pytest.approx(0.7)
