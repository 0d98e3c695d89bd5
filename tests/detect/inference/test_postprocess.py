"""Post-processing, with numbers worked by hand."""

import numpy as np
import pytest

from data_prep.errors import ConfigError
from detect.inference.postprocess import (
    gate_scores,
    hflip_boxes,
    keep_valid_boxes,
    merge_tta_boxes,
    nms,
    postprocess_boxes,
    shrink_boxes,
    to_original_coords,
    weighted_boxes_fusion,
)
from detect.predictions import PostprocessSettings


def test_hflip_width_400_worked_by_hand_and_its_own_inverse():
    # detectron2's test: x1' = W - x2 = 400 - 200 = 200, x2' = W - x1 = 400 - 10 = 390.
    there = hflip_boxes(np.array([[10, 10, 200, 300]]), 400)
    np.testing.assert_allclose(there, [[200, 10, 390, 300]])
    np.testing.assert_allclose(hflip_boxes(there, 400), [[10, 10, 200, 300]])
    assert hflip_boxes(np.zeros((0, 4)), 400).shape == (0, 4)


@pytest.mark.parametrize(
    "box, factor, expected",
    [
        # centre (50, 100), half sizes 50*0.5=25 and 100*0.5=50.
        ([0, 0, 100, 200], 0.5, [25, 50, 75, 150]),
        # centre (200, 300), width 200*0.875=175, height 400*0.875=350.
        ([100, 100, 300, 500], 0.875, [112.5, 125, 287.5, 475]),
        ([100, 100, 300, 500], 1.0, [100, 100, 300, 500]),
    ],
)
def test_shrink_about_the_centre(box, factor, expected):
    np.testing.assert_allclose(shrink_boxes(np.array([box]), factor), [expected])


def test_to_original_coords_divides_by_scale_and_clips():
    # A 300 (h) x 200 (w) image letterboxed to 75 px: scale 0.25.
    boxes = to_original_coords(np.array([[10, 20, 60, 80], [60, 0, 75, 10]]), 0.25, width_px=200, height_px=300)
    # [40, 80, 240, 320] clipped to x <= 200, y <= 300; the second lies in the padding (x >= 240).
    np.testing.assert_allclose(boxes, [[40, 80, 200, 300], [200, 0, 200, 40]])
    kept, scores = keep_valid_boxes(boxes, np.array([0.9, 0.8]))
    np.testing.assert_allclose(kept, [[40, 80, 200, 300]])
    np.testing.assert_allclose(scores, [0.9])


def test_gate_multiplies_by_the_image_probability():
    np.testing.assert_allclose(gate_scores(np.array([0.8, 0.5]), 0.6), [0.48, 0.3], rtol=1e-6)


BOXES = np.array([[0, 0, 100, 200], [500, 500, 600, 600]], dtype=np.float32)
SCORES = np.array([0.4, 0.9], dtype=np.float32)


def test_postprocess_defaults_gate_threshold_shrink_worked_by_hand():
    boxes, scores = postprocess_boxes(
        BOXES, SCORES, pneumonia_probability=0.8, pneumonia_threshold=0.5, settings=PostprocessSettings()
    )
    # gated: 0.4*0.8 = 0.32, 0.9*0.8 = 0.72, both >= 0.3; sorted by score; shrunk by 0.875:
    # [500,500,600,600]: centre 550, half 43.75 -> [506.25, 506.25, 593.75, 593.75]
    # [0,0,100,200]: centre (50,100), half (43.75, 87.5) -> [6.25, 12.5, 93.75, 187.5]
    np.testing.assert_allclose(scores, [0.72, 0.32], rtol=1e-6)
    np.testing.assert_allclose(boxes, [[506.25, 506.25, 593.75, 593.75], [6.25, 12.5, 93.75, 187.5]])


def test_postprocess_drops_every_box_below_the_decision_threshold():
    boxes, scores = postprocess_boxes(
        BOXES, SCORES, pneumonia_probability=0.45, pneumonia_threshold=0.5, settings=PostprocessSettings()
    )
    assert boxes.shape == (0, 4) and scores.shape == (0,)
    # Keeping them: gated 0.4*0.45 = 0.18 (< 0.3, dropped) and 0.9*0.45 = 0.405.
    boxes, scores = postprocess_boxes(
        BOXES,
        SCORES,
        pneumonia_probability=0.45,
        pneumonia_threshold=0.5,
        settings=PostprocessSettings(drop_below_threshold=False, shrink_factor=1.0),
    )
    np.testing.assert_allclose(scores, [0.405], rtol=1e-6)
    np.testing.assert_allclose(boxes, [[500, 500, 600, 600]])


def test_postprocess_without_gate_keeps_raw_scores():
    boxes, scores = postprocess_boxes(
        BOXES,
        SCORES,
        pneumonia_probability=0.01,
        pneumonia_threshold=0.5,
        settings=PostprocessSettings(gate=False, score_thresh=0.5, shrink_factor=1.0),
    )
    np.testing.assert_allclose(scores, [0.9])
    np.testing.assert_allclose(boxes, [[500, 500, 600, 600]])


def test_postprocess_clips_to_the_image_and_handles_no_boxes():
    boxes, _ = postprocess_boxes(
        np.array([[350, 0, 410, 50]]),
        np.array([0.9]),
        pneumonia_probability=1.0,
        pneumonia_threshold=0.5,
        settings=PostprocessSettings(shrink_factor=1.0),
        width_px=400,
        height_px=300,
    )
    np.testing.assert_allclose(boxes, [[350, 0, 400, 50]])
    boxes, scores = postprocess_boxes(
        np.zeros((0, 4)),
        np.zeros(0),
        pneumonia_probability=0.9,
        pneumonia_threshold=0.5,
        settings=PostprocessSettings(),
    )
    assert boxes.shape == (0, 4) and scores.shape == (0,)


def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30]])
    # IoU(A, B) = 9*10 / (100 + 100 - 90) = 0.818 > 0.5: B goes.
    np.testing.assert_array_equal(nms(boxes, np.array([0.9, 0.8, 0.7]), 0.5), [0, 2])
    np.testing.assert_array_equal(nms(boxes, np.array([0.9, 0.8, 0.7]), 0.9), [0, 1, 2])


def test_weighted_box_fusion_worked_by_hand():
    view_a = (np.array([[0, 0, 10, 10], [50, 50, 60, 60]]), np.array([0.8, 0.9]))
    view_b = (np.array([[2, 0, 12, 10]]), np.array([0.4]))
    boxes, scores = weighted_boxes_fusion([view_a, view_b], iou_thresh=0.55)
    # A and B: IoU = 8*10 / (100 + 100 - 80) = 0.667 > 0.55 -> one box, coordinates weighted by
    # score: x1 = (0*0.8 + 2*0.4)/1.2 = 0.6667, x2 = (10*0.8 + 12*0.4)/1.2 = 10.6667;
    # score = mean(0.8, 0.4) * min(2, 2)/2 = 0.6. The lone box: 0.9 * 1/2 = 0.45.
    np.testing.assert_allclose(scores, [0.6, 0.45], rtol=1e-6)
    np.testing.assert_allclose(boxes, [[2 / 3, 0, 10 + 2 / 3, 10], [50, 50, 60, 60]], rtol=1e-5)


def test_merge_tta_nms_concatenates_then_suppresses():
    boxes, scores = merge_tta_boxes(
        np.array([[0, 0, 10, 10]]),
        np.array([0.5]),
        np.array([[1, 0, 11, 10], [20, 20, 30, 30]]),
        np.array([0.7, 0.2]),
        method="nms",
        iou_thresh=0.5,
    )
    np.testing.assert_allclose(boxes, [[1, 0, 11, 10], [20, 20, 30, 30]])
    np.testing.assert_allclose(scores, [0.7, 0.2])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"shrink_factor": 0.0}, "shrink factor must lie in (0, 1] (1.0 = off), got 0.0"),
        ({"score_thresh": 1.5}, "score threshold must lie in [0, 1], got 1.5"),
        ({"tta_merge": "mean"}, "TTA merge method 'mean' is unknown; choose one of: wbf, nms"),
    ],
)
def test_bad_settings_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError) as info:
        PostprocessSettings(**kwargs)
    assert str(info.value) == message
