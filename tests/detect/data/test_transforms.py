"""detect.data.transforms (and the Clahe of detect.data.preprocess): image and boxes move together; geometry checked with numbers worked by hand."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from detect.config import AugmentConfig
from detect.data.preprocess import Clahe
from detect.data.transforms import build_eval_transforms, build_train_transforms

NO_AUGMENTATION = AugmentConfig(hflip_prob=0.0, affine_prob=0.0, brightness=0.0, contrast=0.0)


def _sample(boxes, height=100, width=100, labels=None, dtype=torch.uint8, channels=1):
    boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    labels = torch.arange(1, len(boxes) + 1) if labels is None else torch.tensor(labels)
    image = tv_tensors.Image(torch.zeros(channels, height, width, dtype=dtype))
    target = {
        "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(height, width)),
        "labels": labels.to(torch.int64),
    }
    return image, target


def _only(**changes) -> AugmentConfig:
    values = {**NO_AUGMENTATION.__dict__, **changes}
    return AugmentConfig(**values)


def test_horizontal_flip_of_width_400_maps_the_detectron2_box():
    flip = build_train_transforms(_only(hflip_prob=1.0))
    image, target = _sample([[10, 10, 200, 300]], height=300, width=400)
    image[0, 20, 15] = 255  # a marker pixel at x=15 lands at x = 400 - 1 - 15 = 384
    out_image, out_target = flip(image, target)
    torch.testing.assert_close(
        out_target["boxes"].as_subclass(torch.Tensor), torch.tensor([[200.0, 10.0, 390.0, 300.0]])
    )
    assert out_image[0, 20, 384] == 255 and out_image[0, 20, 15] == 0
    assert out_target["labels"].tolist() == [1]


def test_affine_zoom_by_two_about_the_centre_moves_image_and_boxes_together():
    zoom = build_train_transforms(
        _only(
            affine_prob=1.0, rotate_degrees=0.0, shear_degrees=0.0, translate_fraction=0.0, scale_min=2.0, scale_max=2.0
        )
    )
    image, target = _sample([[40, 40, 60, 60], [0, 0, 20, 20], [40, 0, 60, 40]], labels=[1, 2, 3])
    image[0, 45:55, 45:55] = 255  # a 10 px square at the centre grows to 20 px: rows/cols 40..59
    out_image, out_target = zoom(image, target)
    # about the centre (50, 50): x -> 50 + 2 (x - 50). [0, 0, 20, 20] -> [-50, -50, -10, -10] leaves the
    # image and is dropped with its label; [40, 0, 60, 40] -> [30, -50, 70, 30] is clamped to the border.
    torch.testing.assert_close(
        out_target["boxes"].as_subclass(torch.Tensor), torch.tensor([[30.0, 30.0, 70.0, 70.0], [30.0, 0.0, 70.0, 30.0]])
    )
    assert out_target["labels"].tolist() == [1, 3]
    white = (out_image[0] > 127).nonzero()
    assert white[:, 0].min() == 40 and white[:, 0].max() == 59
    assert white[:, 1].min() == 40 and white[:, 1].max() == 59


def test_sanitize_drops_out_of_image_boxes_with_their_labels():
    shift = v2.Compose([v2.RandomAffine(degrees=0, translate=(0.5, 0.5)), *build_eval_transforms().transforms])
    torch.manual_seed(0)
    for _ in range(30):
        image, target = _sample([[0, 0, 10, 10], [45, 45, 55, 55], [90, 90, 100, 100]], labels=[7, 8, 9])
        _, out = shift(image, target)
        boxes = out["boxes"].as_subclass(torch.Tensor)
        assert len(boxes) == len(out["labels"])
        assert (boxes[:, 2:] - boxes[:, :2] >= 1).all()
        assert set(out["labels"].tolist()) <= {7, 8, 9}


@pytest.mark.parametrize("pipeline", ["train", "eval"])
def test_empty_boxes_pass_through(pipeline):
    transforms = build_train_transforms(AugmentConfig()) if pipeline == "train" else build_eval_transforms()
    torch.manual_seed(0)
    for _ in range(10):
        image, target = _sample(np.zeros((0, 4)))
        out_image, out = transforms(image, target)
        assert out["boxes"].shape == (0, 4) and out["labels"].shape == (0,)
        assert out_image.shape == (1, 100, 100)


@pytest.mark.parametrize("dtype,channels", [(torch.uint8, 1), (torch.float32, 1), (torch.uint8, 3), (torch.float32, 3)])
def test_default_augmentation_keeps_type_shape_and_valid_boxes(dtype, channels):
    transforms = build_train_transforms(AugmentConfig())
    torch.manual_seed(0)
    for _ in range(20):
        image, target = _sample([[10, 20, 50, 80], [60, 10, 95, 60]], dtype=dtype, channels=channels)
        image = tv_tensors.Image(
            torch.rand(channels, 100, 100).mul(255).to(dtype)
            if dtype == torch.uint8
            else torch.rand(channels, 100, 100)
        )
        out_image, out = transforms(image, target)
        assert out_image.dtype == dtype and out_image.shape == (channels, 100, 100)
        boxes = out["boxes"].as_subclass(torch.Tensor)
        assert boxes.dtype == torch.float32 and len(boxes) == len(out["labels"])
        assert (boxes >= 0).all() and (boxes <= 100).all() and (boxes[:, 2:] > boxes[:, :2]).all()


def test_zero_strengths_leave_only_the_box_cleanup():
    steps = build_train_transforms(NO_AUGMENTATION).transforms
    assert [type(s) for s in steps] == [v2.ClampBoundingBoxes, v2.SanitizeBoundingBoxes]
    default_steps = [type(s) for s in build_train_transforms(AugmentConfig()).transforms]
    assert default_steps == [
        v2.RandomHorizontalFlip,
        v2.RandomApply,
        v2.ColorJitter,
        v2.ClampBoundingBoxes,
        v2.SanitizeBoundingBoxes,
    ]


def test_eval_transforms_change_nothing_valid():
    image, target = _sample([[10.5, 20, 50, 80]])
    image[0] = torch.randint(0, 256, (100, 100), dtype=torch.uint8)
    out_image, out = build_eval_transforms()(image, target)
    assert torch.equal(out_image, image)
    torch.testing.assert_close(out["boxes"].as_subclass(torch.Tensor), torch.tensor([[10.5, 20.0, 50.0, 80.0]]))


# ---------------------------------------------------------------------------- CLAHE


def _low_contrast(height=64, width=64) -> np.ndarray:
    rng = np.random.default_rng(0)
    return (100 + rng.integers(0, 20, size=(height, width))).astype(np.uint8)


def test_clahe_raises_local_contrast():
    pixels = _low_contrast()
    out = Clahe(clip_limit=2.0)(pixels)
    assert out.dtype == np.uint8 and out.shape == pixels.shape
    assert out.std() > 2 * pixels.std()


def test_clahe_equalises_only_the_letterboxed_content():
    pixels = np.zeros((64, 64), dtype=np.uint8)
    pixels[:40, :] = _low_contrast(40, 64)
    out = Clahe()(pixels, content_hw=(40, 64))
    assert (out[40:] == 0).all(), "the black padding stays black"
    np.testing.assert_array_equal(out[:40], Clahe()(pixels[:40]))


def test_clahe_rejects_other_images_and_pickles_for_workers():
    with pytest.raises(ValueError, match="2-D uint8"):
        Clahe()(np.zeros((8, 8), dtype=np.float32))
    with pytest.raises(ValueError, match="clip_limit must be > 0"):
        Clahe(clip_limit=0)
    clone = pickle.loads(pickle.dumps(Clahe(3.0)))
    np.testing.assert_array_equal(clone(_low_contrast()), Clahe(3.0)(_low_contrast()))
