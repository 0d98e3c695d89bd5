"""Box-aware augmentation (torchvision.transforms.v2 with tv_tensors).

A transform is called on one sample as torchvision's detection references do:

    image, box_target = transforms(image, {"boxes": boxes, "labels": labels})

    image       tv_tensors.Image, uint8 or float, [1 or 3, S, S]      -> same type, dtype and shape
    boxes       tv_tensors.BoundingBoxes, XYXY, canvas_size (S, S)    -> moved with the image
    labels      int64 [N]                                             -> kept in step with the boxes

Geometric transforms move image and boxes together; the pipeline ends with ClampBoundingBoxes
(boxes partly pushed out of the image are cut at its border) and SanitizeBoundingBoxes (boxes
left with a side under 1 px, e.g. pushed out entirely, are dropped together with their labels).
An image without boxes ((0, 4)) passes through every step. CLAHE is preprocessing, not
augmentation: see detect.data.preprocess.
"""

from __future__ import annotations

from typing import Callable

from torchvision.transforms import v2

from detect.config import AugmentConfig


def build_train_transforms(aug: AugmentConfig) -> Callable:
    """The training augmentation of `aug`; a step whose strength or probability is 0 is left out.

    RandomHorizontalFlip (RSNA opacities occur in both lungs), RandomAffine applied with
    probability aug.affine_prob (rotation, translation, zoom and shear about the image centre,
    exposed borders filled with black like the letterbox padding), ColorJitter (brightness,
    contrast), then ClampBoundingBoxes + SanitizeBoundingBoxes.
    """
    steps: list[Callable] = []
    if aug.hflip_prob > 0:
        steps.append(v2.RandomHorizontalFlip(p=aug.hflip_prob))
    affine_moves = (
        aug.rotate_degrees > 0
        or aug.shear_degrees > 0
        or aug.translate_fraction > 0
        or aug.scale_min != 1.0
        or aug.scale_max != 1.0
    )
    if aug.affine_prob > 0 and affine_moves:
        affine = v2.RandomAffine(
            degrees=aug.rotate_degrees,
            translate=(aug.translate_fraction, aug.translate_fraction) if aug.translate_fraction > 0 else None,
            scale=(aug.scale_min, aug.scale_max),
            shear=aug.shear_degrees if aug.shear_degrees > 0 else None,
            fill=0,
        )
        steps.append(v2.RandomApply([affine], p=aug.affine_prob))
    if aug.brightness > 0 or aug.contrast > 0:
        steps.append(v2.ColorJitter(brightness=aug.brightness or None, contrast=aug.contrast or None))
    steps.extend(_box_cleanup())
    return v2.Compose(steps)


def build_eval_transforms() -> Callable:
    """No augmentation: only the box clean-up that ends every pipeline (boxes clamped to the
    image, boxes under 1 px dropped with their labels), so a validation loss sees valid boxes."""
    return v2.Compose(_box_cleanup())


def _box_cleanup() -> list[Callable]:
    # labels_getter="default" finds target["labels"] in an (image, target) sample.
    return [v2.ClampBoundingBoxes(), v2.SanitizeBoundingBoxes(min_size=1.0, labels_getter="default")]
