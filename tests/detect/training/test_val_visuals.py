"""TensorBoard's val PR / ROC curves and prediction grid, written by a real SummaryWriter and read back."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tensorboard")

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

from data_prep.manifest import read_manifest
from detect.data.dataset import ManifestDataset
from detect.predictions import RawPrediction
from detect.training.engine import ValidationResult
from detect.training.val_visuals import GRID_SIDE_PX, log_validation_visuals
from tests.detect.train_fixtures import make_rsna

pytestmark = pytest.mark.filterwarnings("ignore:Invalid value for VR AS")


def _prediction(record, probability: float) -> RawPrediction:
    return RawPrediction(
        width_px=record.width,
        height_px=record.height,
        boxes_xyxy=np.array([[10, 10, 50, 60]], dtype=np.float32),
        scores=np.array([0.9], dtype=np.float32),
        class_probabilities=np.full(3, 1 / 3),
        subtype_probabilities=np.full(3, 1 / 3),
        pneumonia_probability=probability,
    )


def test_curves_and_grid_reach_tensorboard(tmp_path):
    prepared = read_manifest(make_rsna(tmp_path / "rsna", n_images=12))
    records = prepared.records[:10]
    assert 0 < sum(r.target for r in records) < len(records)
    dataset = ManifestDataset(records, prepared.data_root, 64)
    predictions = [_prediction(r, 0.8 if r.target else 0.2) for r in records]
    result = ValidationResult(metrics={}, operating_points={}, records=list(dataset.records), predictions=predictions)
    writer = SummaryWriter(log_dir=str(tmp_path / "tb"))
    log_validation_visuals(writer, result, dataset, epoch=3)
    writer.close()

    events = EventAccumulator(str(tmp_path / "tb"), size_guidance={"images": 0, "tensors": 0})
    events.Reload()
    tags = events.Tags()
    assert tags["tensors"] == ["val/pr_pneumonia"]
    assert sorted(tags["images"]) == ["val/predictions", "val/roc_pneumonia"]
    (grid,) = events.Images("val/predictions")
    assert grid.step == 3 and grid.height >= GRID_SIDE_PX
    (pr,) = events.Tensors("val/pr_pneumonia")
    assert pr.step == 3
