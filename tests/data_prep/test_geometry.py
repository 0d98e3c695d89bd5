import numpy as np
import pytest

from data_prep.geometry import letterbox_content_shape, letterbox_resize, scale_boxes, xywh_to_xyxy, xyxy_to_xywh


def test_letterbox_keeps_aspect_and_pads_bottom_right():
    image = np.full((200, 400), 255, dtype=np.uint8)  # height 200, width 400
    out, scale = letterbox_resize(image, 100)
    assert out.shape == (100, 100)
    assert scale == pytest.approx(0.25)
    assert out[:50, :].min() == 255  # 200 * 0.25 = 50 rows of image
    assert out[50:, :].max() == 0  # padding below
    assert letterbox_content_shape(200, 400, 100) == (50, 100)  # the rows that are image, not padding


def test_letterbox_content_shape_rounds_and_keeps_one_pixel():
    assert letterbox_content_shape(1857, 2000, 512) == (475, 512)  # 1857 * 0.256 = 475.4
    assert letterbox_content_shape(1, 5000, 64) == (1, 64)


def test_box_round_trip_through_scale_is_exact():
    boxes = np.array([[10.0, 20.0, 110.0, 220.0]], dtype=np.float32)
    there = scale_boxes(boxes, 0.5)
    np.testing.assert_allclose(there, [[5.0, 10.0, 55.0, 110.0]])
    np.testing.assert_allclose(scale_boxes(there, 1 / 0.5), boxes)


def test_xywh_xyxy_conversions_worked_by_hand():
    xywh = np.array([[264.0, 152.0, 213.0, 379.0]])  # an RSNA-style row: top-left + size
    xyxy = xywh_to_xyxy(xywh)
    np.testing.assert_allclose(xyxy, [[264.0, 152.0, 477.0, 531.0]])
    np.testing.assert_allclose(xyxy_to_xywh(xyxy), xywh)
    assert xywh_to_xyxy(np.zeros((0, 4))).shape == (0, 4)


def test_letterbox_of_a_reduced_decode_uses_the_original_size():
    original = np.zeros((200, 120), dtype=np.uint8)
    original[:, :60] = 200
    reduced = original[::2, ::2].copy()  # what a 1/2 decode of it holds
    expected, scale = letterbox_resize(original, 64)
    got, got_scale = letterbox_resize(reduced, 64, original_hw=(200, 120))
    assert got_scale == scale == pytest.approx(64 / 200)
    assert got.shape == (64, 64) and letterbox_content_shape(200, 120, 64) == (64, 38)
    assert got[:, 38:].max() == 0 and got[:, :19].min() == 200  # the same content area, the same padding
    np.testing.assert_array_equal(got, expected)  # a flat-sided edge: no difference at all
    same, _ = letterbox_resize(reduced[:64, :38].copy(), 64, original_hw=(200, 120))  # already the content size
    np.testing.assert_array_equal(same[:64, :38], reduced[:64, :38])
