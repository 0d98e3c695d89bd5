"""detect.explain.gradcam: Grad-CAM of the pneumonia score, in ORIGINAL pixels, tested by a number.

The number: basic_cnn trained for seconds on synthetic images whose only pneumonia sign is a
bright opacity at a random place must put far more of its heat map inside the opacity's box
than the box's share of the image (a map blind to the opacity would put about that share).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from data_prep.errors import DetectError
from data_prep.geometry import letterbox_content_shape
from detect.config import config_from_dict
from detect.data.preprocess import prepare_image
from detect.explain.gradcam import (
    GradCamExplainer,
    box_area_fraction,
    box_mask,
    cam_batch,
    draw_heatmap_overlay,
    energy_inside_box,
    heatmap_to_original,
    is_explainable,
)
from detect.models.build import build_model
from detect.models.classifiers import ImageClassifier
from detect.outputs.overlay import display_size

SIZE_PX = 64


def basic_cnn(task: str = "rsna2", seed: int = 0) -> ImageClassifier:
    """The registry's basic_cnn for `task` at SIZE_PX, freshly initialised (seeded)."""
    cfg = config_from_dict(
        {}, ["model.name=basic_cnn", f"task={task}", f"data.image_size_px={SIZE_PX}", "train.monitor=val_f1"]
    )
    torch.manual_seed(seed)
    return build_model(cfg.model, cfg.data.image_size_px, task=cfg.task)


# --------------------------------------------------------------------------- pure geometry


def test_box_mask_takes_the_pixels_whose_centre_is_inside():
    mask = box_mask((4, 6), [1.0, 0.4, 3.0, 2.6])
    # columns 1, 2 (centres 1.5, 2.5), rows 0, 1, 2 (centres 0.5, 1.5, 2.5)
    assert mask.sum() == 6 and mask[0:3, 1:3].all()
    assert box_area_fraction((4, 6), [1.0, 0.4, 3.0, 2.6]) == 6 / 24


def test_energy_inside_box_by_hand():
    heat = np.ones((10, 10), np.float32)
    assert energy_inside_box(heat, [0, 0, 5, 5]) == 0.25
    heat[:5, :5] = 3.0  # 75 inside of 75 + 75 = 150
    assert energy_inside_box(heat, [0, 0, 5, 5]) == pytest.approx(0.5)
    assert math.isnan(energy_inside_box(np.zeros((4, 4)), [0, 0, 2, 2]))


def test_heatmap_to_original_drops_the_padding_and_resizes():
    # an original 40 x 80 (h x w) image letterboxed to 8: content 4 x 8 at the top-left
    assert letterbox_content_shape(40, 80, 8) == (4, 8)
    cam = np.zeros((8, 8), np.float32)
    cam[4:, :] = 1.0  # padding: must not reach the original image
    cam[0:2, 0:4] = 1.0  # the top-left quarter of the content
    heat = heatmap_to_original(cam, 40, 80)
    assert heat.shape == (40, 80) and heat.dtype == np.float32
    assert heat[:20, :40].mean() > 0.9 and heat[25:, :].max() == 0.0 and heat[:, 45:].max() == 0.0
    assert energy_inside_box(heat, [0, 0, 40, 20]) > 0.9


def test_the_overlay_is_sized_as_overlays_and_hot_where_the_map_is():
    pixels = np.full((100, 160), 128, np.uint8)
    heat = np.zeros((100, 160), np.float32)
    heat[:50, :80] = 1.0
    canvas = draw_heatmap_overlay(pixels, heat, title="Grad-CAM")
    width, height = display_size(100, 160)
    assert canvas.shape[1:] == (width, 3) and canvas.shape[0] > height and canvas.dtype == np.uint8  # title below
    assert draw_heatmap_overlay(pixels, heat).shape == (height, width, 3)  # no title, no strip
    hot, cold = canvas[int(0.3 * height), int(0.3 * width)], canvas[int(0.8 * height), int(0.8 * width)]
    assert hot[2] > hot[0] and cold[0] > cold[2]  # BGR: jet is red at 1, blue at 0
    with pytest.raises(ValueError, match="differ in size"):
        draw_heatmap_overlay(pixels, heat[:50])


# ---------------------------------------------------------------------------- Grad-CAM calls


@pytest.mark.parametrize("task", ["rsna2", "kermany3"])
def test_cam_batch_gives_one_map_per_image_in_unit_range(task):
    model = basic_cnn(task).eval()
    maps = cam_batch(model, torch.rand(3, 3, SIZE_PX, SIZE_PX, generator=torch.Generator().manual_seed(0)))
    assert maps.shape == (3, SIZE_PX, SIZE_PX) and maps.dtype == np.float32
    assert maps.min() >= 0.0 and maps.max() <= 1.0 + 1e-6
    assert not model.training


def test_a_detector_is_not_explainable():
    assert is_explainable(basic_cnn())
    assert not is_explainable(nn.Conv2d(3, 3, 1))
    with pytest.raises(DetectError, match="Grad-CAM is for classifiers"):
        GradCamExplainer(nn.Conv2d(3, 3, 1), SIZE_PX, torch.device("cpu"))


# ---------------------------------------------------------------------------- the number test


def synthetic_chest(rng: np.random.Generator, height: int, width: int, with_opacity: bool):
    """uint8 [H, W]: a smooth random background, and with `with_opacity` a bright blurred
    ellipse at a random place -> (pixels, its box xyxy or None)."""
    low = rng.normal(0.0, 1.0, (max(2, height // 16), max(2, width // 16))).astype(np.float32)
    background = 90.0 + 25.0 * cv2.resize(low, (width, height), interpolation=cv2.INTER_CUBIC)
    image = background + rng.normal(0.0, 6.0, (height, width)).astype(np.float32)
    box = None
    if with_opacity:
        rx, ry = rng.uniform(0.08, 0.13) * width, rng.uniform(0.08, 0.13) * height
        cx, cy = rng.uniform(rx + 2, width - rx - 2), rng.uniform(ry + 2, height - ry - 2)
        blob = np.zeros((height, width), np.float32)
        cv2.ellipse(blob, (int(round(cx)), int(round(cy))), (int(round(rx)), int(round(ry))), 0, 0, 360, 1.0, -1)
        image += 90.0 * cv2.GaussianBlur(blob, (0, 0), 1.0)
        box = [cx - rx, cy - ry, cx + rx, cy + ry]
    return np.clip(image, 0, 255).astype(np.uint8), box


def synthetic_set(seed: int, n: int):
    """n images of random non-square sizes, half with an opacity (alternating)."""
    rng = np.random.default_rng(seed)
    images, boxes = [], []
    for i in range(n):
        height, width = int(rng.integers(72, 120)), int(rng.integers(72, 120))
        pixels, box = synthetic_chest(rng, height, width, with_opacity=i % 2 == 0)
        images.append(pixels)
        boxes.append(box)
    return images, boxes


def train_classifier(model: ImageClassifier, images, boxes, *, epochs: int, seed: int = 0) -> ImageClassifier:
    """A short CPU run through the classifier's own training forward (its loss), seeded."""
    torch.manual_seed(seed)
    inputs = [prepare_image(p, SIZE_PX)[0] for p in images]
    targets = [{"pneumonia": torch.tensor(int(b is not None))} for b in boxes]
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for index in torch.randperm(len(inputs), generator=generator).split(16):
            losses = model([inputs[i] for i in index], [targets[i] for i in index])
            optimiser.zero_grad()
            sum(losses.values()).backward()
            optimiser.step()
    return model.eval()


@pytest.fixture(scope="module")
def trained():
    # one thread: a model this small gains nothing from more, and on a loaded machine the
    # threads' contention made the run several times slower (~20 s with one)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        images, boxes = synthetic_set(seed=0, n=160)
        return train_classifier(basic_cnn("rsna2"), images, boxes, epochs=8)
    finally:
        torch.set_num_threads(previous)


def test_the_heat_map_sits_on_the_opacity(trained):
    images, boxes = synthetic_set(seed=1, n=40)  # held out: other images, other places
    with torch.no_grad():
        outputs = trained([prepare_image(p, SIZE_PX)[0] for p in images])
    probabilities = np.array([float(o["pneumonia_prob"]) for o in outputs])
    truth = np.array([b is not None for b in boxes])
    assert ((probabilities >= 0.5) == truth).mean() >= 0.8  # it learned the task at all (0.95-1.0 over 3 seeds)
    explainer = GradCamExplainer(trained, SIZE_PX, torch.device("cpu"))
    positives = [(p, b) for p, b in zip(images, boxes) if b is not None]
    heatmaps = explainer.heatmaps([p for p, _ in positives])
    inside = np.array([energy_inside_box(h, b) for h, (_, b) in zip(heatmaps, positives)])
    area = np.array([box_area_fraction(p.shape, b) for p, b in positives])
    assert all(h.shape == p.shape for h, (p, _) in zip(heatmaps, positives))  # ORIGINAL pixels
    assert np.isfinite(inside).all()
    assert inside.mean() >= 3.0 * area.mean(), (inside.mean(), area.mean())
