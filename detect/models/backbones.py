"""Backbone parts torchvision does not ship as one builder: a ResNet-18 FPN Faster R-CNN, and
torchvision's freezing rules applied to a detector initialised from a file.

    fasterrcnn_resnet18_fpn(weights_backbone=..., **FasterRCNN kwargs)   torchvision's builder contract
    freeze_resnet_layers / freeze_mobilenet_stages(body, trainable_layers) torchvision's layer rules
    convert_to_frozen_batchnorm(module)                                   BatchNorm2d -> FrozenBatchNorm2d
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torchvision.models import ResNet18_Weights, resnet18
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool
from torchvision.ops.misc import FrozenBatchNorm2d

NUM_DETECTOR_CLASSES = 2  # background + opacity


# ------------------------------------------------------------------------------ backbone freezing
# torchvision freezes the earliest backbone layers (and uses FrozenBatchNorm2d) only when it
# loads pretrained backbone weights itself. A detector initialised from a file is pretrained
# too, so the same two steps are applied to it here, by the same rules.


def freeze_resnet_layers(body: nn.Module, trainable_layers: int) -> None:
    """torchvision's _resnet_fpn_extractor rule: train the last `trainable_layers` of
    layer4, layer3, layer2, layer1, conv1 (and bn1 with all 5)."""
    layers_to_train = ["layer4", "layer3", "layer2", "layer1", "conv1"][:trainable_layers]
    if trainable_layers == 5:
        layers_to_train.append("bn1")
    for name, parameter in body.named_parameters():
        if not any(name.startswith(layer) for layer in layers_to_train):
            parameter.requires_grad_(False)


def freeze_mobilenet_stages(body: nn.Module, trainable_layers: int) -> None:
    """torchvision's _mobilenet_extractor rule: train the last `trainable_layers` stages
    (a stage starts at a strided block, marked `_is_cn`)."""
    blocks = list(body.children())
    stage_indices = [0] + [i for i, b in enumerate(blocks) if getattr(b, "_is_cn", False)] + [len(blocks) - 1]
    num_stages = len(stage_indices)
    freeze_before = len(blocks) if trainable_layers == 0 else stage_indices[num_stages - trainable_layers]
    for block in blocks[:freeze_before]:
        for parameter in block.parameters():
            parameter.requires_grad_(False)


def convert_to_frozen_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm2d under `module` by a FrozenBatchNorm2d with the same statistics."""
    if isinstance(module, nn.BatchNorm2d):
        frozen = FrozenBatchNorm2d(module.num_features, eps=module.eps)
        with torch.no_grad():
            if module.affine:
                frozen.weight.copy_(module.weight)
                frozen.bias.copy_(module.bias)
            if module.track_running_stats:
                frozen.running_mean.copy_(module.running_mean)
                frozen.running_var.copy_(module.running_var)
        return frozen
    for name, child in module.named_children():
        converted = convert_to_frozen_batchnorm(child)
        if converted is not child:
            setattr(module, name, converted)
    return module


# ------------------------------------------------------------------------------ ResNet-18 FPN
# torchvision ships Faster R-CNN with ResNet-50 and MobileNetV3 backbones only. The small entry
# is assembled from torchvision's own parts (resnet18, BackboneWithFPN, FasterRCNN) in the way
# its builders assemble the others, so weights, freezing and state-dict names follow the same rules.

RESNET18_FPN_CHANNELS = 128  # half torchvision's 256: FPN, RPN and RoI head cost ~1/4 on a CPU
RESNET18_RETURNED_LAYERS: tuple[str, ...] = ("layer2", "layer3", "layer4")  # strides 8, 16, 32 (+ pool: 64)
RESNET18_IN_CHANNELS: tuple[int, ...] = (128, 256, 512)


def fasterrcnn_resnet18_fpn(
    *,
    weights: None = None,
    weights_backbone: ResNet18_Weights | None = None,
    num_classes: int = NUM_DETECTOR_CLASSES,
    trainable_backbone_layers: int | None = None,
    **kwargs: Any,
) -> FasterRCNN:
    """Faster R-CNN with a ResNet-18 FPN backbone (128 channels, strides 8-64), torchvision's
    builder contract: `weights_backbone` ImageNet weights (then FrozenBatchNorm2d and the last
    `trainable_backbone_layers` of 5 train, default 3) or None (plain BatchNorm, everything
    trains); `**kwargs` go to FasterRCNN. Anchors default to 4x each level's stride: 32-256 px."""
    if weights is not None:
        raise ValueError("fasterrcnn_resnet18_fpn has no detection weights; pass weights_backbone")
    is_trained = weights_backbone is not None
    if trainable_backbone_layers is None:
        trainable_backbone_layers = 3 if is_trained else 5
    if not 0 <= trainable_backbone_layers <= 5:
        raise ValueError(f"trainable_backbone_layers must be in 0..5, got {trainable_backbone_layers}")
    norm_layer = FrozenBatchNorm2d if is_trained else nn.BatchNorm2d
    body = resnet18(weights=weights_backbone, progress=True, norm_layer=norm_layer)
    freeze_resnet_layers(body, trainable_backbone_layers)
    backbone = BackboneWithFPN(
        body,
        return_layers={name: str(i) for i, name in enumerate(RESNET18_RETURNED_LAYERS)},
        in_channels_list=list(RESNET18_IN_CHANNELS),
        out_channels=RESNET18_FPN_CHANNELS,
        extra_blocks=LastLevelMaxPool(),
    )
    n_levels = len(RESNET18_RETURNED_LAYERS) + 1
    kwargs.setdefault(
        "rpn_anchor_generator", AnchorGenerator(((32,), (64,), (128,), (256,)), ((0.5, 1.0, 2.0),) * n_levels)
    )
    kwargs.setdefault("box_roi_pool", MultiScaleRoIAlign([str(i) for i in range(len(RESNET18_RETURNED_LAYERS))], 7, 2))
    return FasterRCNN(backbone, num_classes=num_classes, **kwargs)
