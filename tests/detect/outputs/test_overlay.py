"""detect.outputs.overlay: the size rule both overlays (boxes, Grad-CAM) share; the boxes
overlay is drawn at the prediction's ORIGINAL size whatever size was decoded."""

from __future__ import annotations

import numpy as np

from detect.outputs.overlay import display_factor, display_size, draw_overlay
from detect.predictions import ImagePrediction


def test_display_size_brings_the_longest_side_into_512_1024():
    assert display_size(100, 160) == (512, 320)  # small: enlarged, factor 512 / 160 = 3.2
    assert display_size(700, 600) == (600, 700)  # in range: as it is
    assert display_size(2000, 1000) == (512, 1024)  # large: reduced, factor 1024 / 2000
    assert display_factor(2000, 1000) == 1024 / 2000


def test_overlay_of_pixels_decoded_smaller_matches_the_full_size_one():
    full = np.zeros((400, 300), dtype=np.uint8)
    full[100:300, 50:250] = 180
    prediction = ImagePrediction(
        source="a.dcm",
        width_px=300,
        height_px=400,
        pneumonia_probability=0.9,
        pneumonia=True,
        boxes_xyxy=np.array([[50, 100, 250, 300]], dtype=np.float32),
        scores=np.array([0.9], dtype=np.float32),
    )
    from_full = draw_overlay(full, prediction)
    from_reduced = draw_overlay(full[::4, ::4].copy(), prediction)  # a 1/4 DCT-scale decode of it
    assert from_reduced.shape == from_full.shape
    assert from_full.shape[:2][1] == 384 and from_full.shape[0] > 512  # enlarged image, legend strip below
    red = (from_full[..., 2] == 255) & (from_full[..., 1] == 0)
    assert red.any() and np.array_equal(red, (from_reduced[..., 2] == 255) & (from_reduced[..., 1] == 0))


def test_the_legend_sits_below_the_image_and_covers_no_pixel_of_it():
    pixels = np.full((600, 500), 90, dtype=np.uint8)
    prediction = ImagePrediction(
        source="a.png",
        width_px=500,
        height_px=600,
        pneumonia_probability=0.2,
        pneumonia=False,
        class_probabilities={"Normal": 0.7, "No Lung Opacity / Not Normal": 0.2, "Lung Opacity": 0.1},
        boxes_xyxy=np.zeros((0, 4), dtype=np.float32),
        scores=np.zeros(0, dtype=np.float32),
    )
    canvas = draw_overlay(pixels, prediction)
    assert canvas.shape[1] == 500 and canvas.shape[0] > 600
    assert (canvas[:600] == 90).all()  # the radiograph untouched: no text on the lungs
    strip = canvas[600:]
    assert (strip == 0).mean() > 0.5 and (strip[..., 2] == 255).any()  # black, with yellow / white text
