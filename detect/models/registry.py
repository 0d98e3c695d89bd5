"""The model registry: a plain dict `name -> ModelSpec` (builder + metadata), no import-time magic.

    spec = get_model_spec(cfg.model.name)     # a ConfigError listing MODELS when the name is unknown

Every entry is a torchvision Faster R-CNN builder (detect.models.build turns it into a
PneumoniaDetector with the image-level head). The metadata is what the config checks at load
(detect.config: trainable layers, feature levels) and what a listing shows.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn
from torchvision.models.detection import (
    FasterRCNN,
    fasterrcnn_mobilenet_v3_large_fpn,
    fasterrcnn_resnet50_fpn,
    fasterrcnn_resnet50_fpn_v2,
)

from data_prep.errors import ConfigError
from detect.models.backbones import fasterrcnn_resnet18_fpn, freeze_mobilenet_stages, freeze_resnet_layers

# ImageNet statistics: what the pretrained backbones expect; the grey image is repeated to 3 channels.
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelSpec:
    """One entry of MODELS: a torchvision Faster R-CNN builder and what goes with it.

    `builder` is the torchvision function (called with weights=None: the detector heads always
    start fresh for our 2 classes); `imagenet_weights` the torchvision enum name its backbone
    downloads for model.weights=imagenet; `trainable_layers_max` the range of
    model.trainable_backbone_layers; `feature_levels` the number of feature maps its FPN returns
    (one anchor size per level, model.anchor_sizes_px); `frozen_batchnorm_when_pretrained` whether torchvision
    freezes the backbone's BatchNorm when the backbone is pretrained; `image_mean`/`image_std`
    the per-channel normalisation of the [0, 1] input.
    """

    builder: Callable[..., FasterRCNN]
    description: str
    default_image_size_px: int
    backbone: str
    trainable_layers_max: int
    feature_levels: int
    imagenet_weights: str
    note: str
    frozen_batchnorm_when_pretrained: bool
    freeze_backbone: Callable[[nn.Module, int], None]
    image_mean: tuple[float, float, float] = IMAGENET_MEAN
    image_std: tuple[float, float, float] = IMAGENET_STD


MODELS: dict[str, ModelSpec] = {
    "resnet50_fpn_v2": ModelSpec(
        builder=fasterrcnn_resnet50_fpn_v2,
        description="Faster R-CNN, ResNet-50 FPN v2 (torchvision's improved recipe: BatchNorm in FPN and heads, 4-conv box head)",
        default_image_size_px=512,
        backbone="resnet50",
        trainable_layers_max=5,
        feature_levels=5,
        imagenet_weights="ResNet50_Weights.IMAGENET1K_V1",
        note="GPU default: the most accurate entry",
        frozen_batchnorm_when_pretrained=False,
        freeze_backbone=freeze_resnet_layers,
    ),
    "resnet50_fpn": ModelSpec(
        builder=fasterrcnn_resnet50_fpn,
        description="Faster R-CNN, ResNet-50 FPN (the original torchvision recipe, as in the published RSNA baselines)",
        default_image_size_px=512,
        backbone="resnet50",
        trainable_layers_max=5,
        feature_levels=5,
        imagenet_weights="ResNet50_Weights.IMAGENET1K_V1",
        note="GPU: the classic baseline, lighter box head than v2",
        frozen_batchnorm_when_pretrained=True,
        freeze_backbone=freeze_resnet_layers,
    ),
    "resnet18_fpn": ModelSpec(
        builder=fasterrcnn_resnet18_fpn,
        description="Faster R-CNN, ResNet-18 FPN (128 channels, strides 8-64), built from torchvision's parts",
        default_image_size_px=256,
        backbone="resnet18",
        trainable_layers_max=5,
        feature_levels=4,
        imagenet_weights="ResNet18_Weights.IMAGENET1K_V1",
        note="CPU and demo choice: plain convolutions and BatchNorm learn fastest from random initialisation",
        frozen_batchnorm_when_pretrained=True,
        freeze_backbone=freeze_resnet_layers,
    ),
    "mobilenet_v3_large_fpn": ModelSpec(
        builder=fasterrcnn_mobilenet_v3_large_fpn,
        description="Faster R-CNN, MobileNetV3-Large FPN",
        default_image_size_px=320,
        backbone="mobilenet_v3_large",
        trainable_layers_max=6,
        feature_levels=3,
        imagenet_weights="MobileNet_V3_Large_Weights.IMAGENET1K_V1",
        note="CPU choice: several times faster than the ResNet-50 entries, less accurate",
        frozen_batchnorm_when_pretrained=True,
        freeze_backbone=freeze_mobilenet_stages,
    ),
}


def get_model_spec(name: str) -> ModelSpec:
    """MODELS[name], or a ConfigError listing the available names."""
    try:
        return MODELS[name]
    except KeyError:
        raise ConfigError(
            f"config key 'model.name' is '{name}', which is not a known model; available models: {', '.join(MODELS)}"
        ) from None
