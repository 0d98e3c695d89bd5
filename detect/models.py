"""The detector: torchvision Faster R-CNN for opacity boxes plus an image-level classification head.

    model = build_model(cfg.model, cfg.data.image_size_px)

Input (torchvision's detection contract): `images` a list of float32 [3, H, W] tensors in [0, 1]
(our samples are letterboxed squares, S = data.image_size_px; see detect.datasets), `targets`
a list of dicts per image in the sample contract of detect.datasets.

Training returns a dict of named scalar losses, which the loop sums:
    loss_classifier, loss_box_reg          torchvision's box head (Fast R-CNN)
    loss_objectness, loss_rpn_box_reg      torchvision's region proposal network
    loss_image_classifier                  the image-level head, times model.classifier_loss_weight
The four detector losses are computed on the images whose `has_box_labels` is True only: a
Kermany image has no boxes at all, and treating it as 'no opacity here' would teach the
detector to miss pneumonia. When no image of a batch has box labels they are zeros that carry
no gradient to the RPN and box head (so the loop's sum still works).

Inference (model.eval()) returns one dict per image:
    boxes             float32 [N, 4] xyxy in the INPUT image's pixels (the letterboxed square)
    scores            float32 [N], descending
    labels            int64 [N], 1 = opacity
    rsna_class_probs  float32 [3], softmax, in RSNA_CLASSES order
    pneumonia_prob    float32 [], sigmoid
    subtype_probs     float32 [3], softmax, in KERMANY_SUBTYPES order

torchvision's own transform runs inside the model: it normalises with the spec's mean/std and
would resize, but min_size = max_size = S makes the resize the identity for S x S inputs, so
boxes in and out stay in input pixels (tests/detect/test_models.py checks it).
"""
from __future__ import annotations

import dataclasses
import os
import socket
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.error import HTTPError, URLError

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import ResNet18_Weights, get_weight, resnet18
from torchvision.models.detection import (
    FasterRCNN,
    fasterrcnn_mobilenet_v3_large_fpn,
    fasterrcnn_resnet50_fpn,
    fasterrcnn_resnet50_fpn_v2,
)
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.rpn import RPNHead
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool
from torchvision.ops.misc import FrozenBatchNorm2d

from data_prep.errors import CheckpointError, ConfigError, WeightsUnavailableError
from data_prep.records import KERMANY_SUBTYPES, RSNA_CLASSES
from detect.config import ModelConfig
from detect.roi_align import GridSampleMultiScaleRoIAlign

# ImageNet statistics: what the pretrained backbones expect; the grey image is repeated to 3 channels.
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

NUM_DETECTOR_CLASSES = 2  # background + opacity
OPACITY_LABEL = 1

DETECTOR_LOSS_NAMES: tuple[str, ...] = ("loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg")
IMAGE_LOSS_NAME = "loss_image_classifier"
LOSS_NAMES: tuple[str, ...] = DETECTOR_LOSS_NAMES + (IMAGE_LOSS_NAME,)


# ------------------------------------------------------------------------------ backbone freezing
# torchvision freezes the earliest backbone layers (and uses FrozenBatchNorm2d) only when it
# loads pretrained backbone weights itself. A detector initialised from a file is pretrained
# too, so the same two steps are applied to it here, by the same rules.


def _freeze_resnet_layers(body: nn.Module, trainable_layers: int) -> None:
    """torchvision's _resnet_fpn_extractor rule: train the last `trainable_layers` of
    layer4, layer3, layer2, layer1, conv1 (and bn1 with all 5)."""
    layers_to_train = ["layer4", "layer3", "layer2", "layer1", "conv1"][:trainable_layers]
    if trainable_layers == 5:
        layers_to_train.append("bn1")
    for name, parameter in body.named_parameters():
        if not any(name.startswith(layer) for layer in layers_to_train):
            parameter.requires_grad_(False)


def _freeze_mobilenet_stages(body: nn.Module, trainable_layers: int) -> None:
    """torchvision's _mobilenet_extractor rule: train the last `trainable_layers` stages
    (a stage starts at a strided block, marked `_is_cn`)."""
    blocks = list(body.children())
    stage_indices = [0] + [i for i, b in enumerate(blocks) if getattr(b, "_is_cn", False)] + [len(blocks) - 1]
    num_stages = len(stage_indices)
    freeze_before = len(blocks) if trainable_layers == 0 else stage_indices[num_stages - trainable_layers]
    for block in blocks[:freeze_before]:
        for parameter in block.parameters():
            parameter.requires_grad_(False)


def _convert_to_frozen_batchnorm(module: nn.Module) -> nn.Module:
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
        converted = _convert_to_frozen_batchnorm(child)
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
    _freeze_resnet_layers(body, trainable_backbone_layers)
    backbone = BackboneWithFPN(
        body,
        return_layers={name: str(i) for i, name in enumerate(RESNET18_RETURNED_LAYERS)},
        in_channels_list=list(RESNET18_IN_CHANNELS),
        out_channels=RESNET18_FPN_CHANNELS,
        extra_blocks=LastLevelMaxPool(),
    )
    n_levels = len(RESNET18_RETURNED_LAYERS) + 1
    kwargs.setdefault("rpn_anchor_generator", AnchorGenerator(((32,), (64,), (128,), (256,)), ((0.5, 1.0, 2.0),) * n_levels))
    kwargs.setdefault("box_roi_pool", MultiScaleRoIAlign([str(i) for i in range(len(RESNET18_RETURNED_LAYERS))], 7, 2))
    return FasterRCNN(backbone, num_classes=num_classes, **kwargs)


# ------------------------------------------------------------------------------------ the specs


@dataclass(frozen=True)
class ModelSpec:
    """One entry of MODELS: a torchvision Faster R-CNN builder and what goes with it.

    `builder` is the torchvision function (called with weights=None: the detector heads always
    start fresh for our 2 classes); `imagenet_weights` the torchvision enum name its backbone
    downloads for model.weights=imagenet; `trainable_layers_max` the range of
    model.trainable_backbone_layers; `frozen_batchnorm_when_pretrained` whether torchvision
    freezes the backbone's BatchNorm when the backbone is pretrained; `image_mean`/`image_std`
    the per-channel normalisation of the [0, 1] input.
    """

    builder: Callable[..., FasterRCNN]
    description: str
    default_image_size_px: int
    backbone: str
    trainable_layers_max: int
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
        imagenet_weights="ResNet50_Weights.IMAGENET1K_V1",
        note="GPU default: the most accurate entry",
        frozen_batchnorm_when_pretrained=False,
        freeze_backbone=_freeze_resnet_layers,
    ),
    "resnet50_fpn": ModelSpec(
        builder=fasterrcnn_resnet50_fpn,
        description="Faster R-CNN, ResNet-50 FPN (the original torchvision recipe, as in the published RSNA baselines)",
        default_image_size_px=512,
        backbone="resnet50",
        trainable_layers_max=5,
        imagenet_weights="ResNet50_Weights.IMAGENET1K_V1",
        note="GPU: the classic baseline, lighter box head than v2",
        frozen_batchnorm_when_pretrained=True,
        freeze_backbone=_freeze_resnet_layers,
    ),
    "resnet18_fpn": ModelSpec(
        builder=fasterrcnn_resnet18_fpn,
        description="Faster R-CNN, ResNet-18 FPN (128 channels, strides 8-64), built from torchvision's parts",
        default_image_size_px=256,
        backbone="resnet18",
        trainable_layers_max=5,
        imagenet_weights="ResNet18_Weights.IMAGENET1K_V1",
        note="CPU and demo choice: plain convolutions and BatchNorm learn fastest from random initialisation",
        frozen_batchnorm_when_pretrained=True,
        freeze_backbone=_freeze_resnet_layers,
    ),
    "mobilenet_v3_large_fpn": ModelSpec(
        builder=fasterrcnn_mobilenet_v3_large_fpn,
        description="Faster R-CNN, MobileNetV3-Large FPN",
        default_image_size_px=320,
        backbone="mobilenet_v3_large",
        trainable_layers_max=6,
        imagenet_weights="MobileNet_V3_Large_Weights.IMAGENET1K_V1",
        note="CPU choice: several times faster than the ResNet-50 entries, less accurate",
        frozen_batchnorm_when_pretrained=True,
        freeze_backbone=_freeze_mobilenet_stages,
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


# ------------------------------------------------------------------------------ the image head


class ImageClassificationHead(nn.Module):
    """FPN features -> image-level logits.

    Each FPN level is pooled to [B, 2C], global average and global max side by side (a focal
    opacity is a small part of the image: the mean dilutes it, the max keeps it, as in chest
    X-ray classifiers that pool with max or GeM); the levels are concatenated to
    [B, 2C * num_levels] (fine and coarse levels keep their own weights), then
    LayerNorm -> Linear -> LayerNorm -> GELU -> Dropout -> three linear outputs.
    Why the norms and GELU: from random initialisation the FPN's outputs have no normalisation
    and their scale drifts while the detector learns. With Linear -> ReLU alone, the demo's SGD
    pushed every hidden unit below zero within a few epochs (all pre-activations negative, a
    constant prediction, ROC-AUC 0.5, and no gradient to recover). Normalising the input and
    the hidden pre-activations keeps about half the units active per image, and GELU still
    passes a gradient to the rest.
    Outputs:
        rsna_class [B, 3] logits (RSNA_CLASSES), pneumonia [B] logit, subtype [B, 3] logits (KERMANY_SUBTYPES).
    """

    def __init__(self, in_channels: int, num_levels: int, hidden_dim: int, dropout: float) -> None:
        super().__init__()
        self.num_levels = num_levels
        self.mlp = nn.Sequential(
            nn.LayerNorm(2 * in_channels * num_levels),
            nn.Linear(2 * in_channels * num_levels, hidden_dim),
            nn.LayerNorm(hidden_dim),
            nn.GELU(),
            nn.Dropout(dropout),
        )
        self.rsna_class = nn.Linear(hidden_dim, len(RSNA_CLASSES))
        self.pneumonia = nn.Linear(hidden_dim, 1)
        self.subtype = nn.Linear(hidden_dim, len(KERMANY_SUBTYPES))

    def forward(self, features: OrderedDict[str, Tensor]) -> dict[str, Tensor]:
        if len(features) != self.num_levels:
            raise ValueError(f"the image head was built for {self.num_levels} feature levels, got {len(features)}")
        pooled = torch.cat(
            [torch.cat([level.mean(dim=(-2, -1)), level.amax(dim=(-2, -1))], dim=1) for level in features.values()], dim=1
        )
        hidden = self.mlp(pooled)
        return {
            "rsna_class": self.rsna_class(hidden),
            "pneumonia": self.pneumonia(hidden).squeeze(-1),
            "subtype": self.subtype(hidden),
        }


def _masked_cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean cross-entropy over the rows with label >= 0; 0 (still in the graph) when there are none."""
    valid = labels >= 0
    per_image = F.cross_entropy(logits.float(), labels.clamp(min=0), reduction="none")
    return (per_image * valid).sum() / valid.sum().clamp(min=1)


def _masked_binary_cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean BCE-with-logits over the entries with label in {0, 1}; 0 (still in the graph) when none."""
    valid = labels >= 0
    per_image = F.binary_cross_entropy_with_logits(logits.float(), labels.clamp(min=0).float(), reduction="none")
    return (per_image * valid).sum() / valid.sum().clamp(min=1)


def image_classification_loss(logits: dict[str, Tensor], targets: list[dict[str, Tensor]]) -> Tensor:
    """CE(rsna_class) over images with rsna_class >= 0 + BCE(pneumonia) over images with
    pneumonia >= 0 + CE(subtype) over images with subtype >= 0, each averaged over its images."""
    device = logits["pneumonia"].device
    columns = {}
    for key in ("rsna_class", "pneumonia", "subtype"):
        try:
            columns[key] = torch.stack([torch.as_tensor(t[key]).reshape(()) for t in targets]).to(device, torch.int64)
        except KeyError:
            raise ValueError(
                f"training targets need '{key}' (and 'rsna_class', 'pneumonia', 'subtype'): see detect.datasets"
            ) from None
    return (
        _masked_cross_entropy(logits["rsna_class"], columns["rsna_class"])
        + _masked_binary_cross_entropy(logits["pneumonia"], columns["pneumonia"])
        + _masked_cross_entropy(logits["subtype"], columns["subtype"])
    )


# ---------------------------------------------------------------------------------- the model


def _fill_missing_batchnorm_counters(module: nn.Module, state_dict: dict[str, Any], prefix: str, *_: Any) -> None:
    """Let a state dict saved with FrozenBatchNorm2d (no num_batches_tracked) load into
    BatchNorm2d: a detector trained from ImageNet weights and rebuilt with weights='none'."""
    for name, sub in module.named_modules():
        if isinstance(sub, nn.modules.batchnorm._BatchNorm) and sub.num_batches_tracked is not None:
            base = f"{prefix}{name}." if name else prefix
            if f"{base}running_mean" in state_dict and f"{base}num_batches_tracked" not in state_dict:
                state_dict[f"{base}num_batches_tracked"] = torch.zeros((), dtype=torch.long)


class PneumoniaDetector(nn.Module):
    """torchvision's Faster R-CNN parts (transform, backbone, rpn, roi_heads: the same attribute
    and state-dict names as torchvision's FasterRCNN) plus `image_head` on the FPN features.
    See the module docstring for the forward contract."""

    def __init__(self, detector: FasterRCNN, *, model_name: str, image_size_px: int, head_hidden_dim: int,
                 head_dropout: float, classifier_loss_weight: float) -> None:
        super().__init__()
        self.transform = detector.transform
        self.backbone = detector.backbone
        self.rpn = detector.rpn
        self.roi_heads = detector.roi_heads
        self.model_name = model_name
        self.image_size_px = int(image_size_px)
        self.classifier_loss_weight = float(classifier_loss_weight)
        self.image_head = ImageClassificationHead(
            self.backbone.out_channels, _count_feature_levels(self.backbone), head_hidden_dim, head_dropout
        )
        self.register_load_state_dict_pre_hook(_fill_missing_batchnorm_counters)

    def forward(
        self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        if self.training:
            _check_targets(images, targets)
        original_image_sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
        image_list, targets = self.transform(images, targets if self.training else None)
        if self.training:
            _check_degenerate_boxes(targets)
        features = self.backbone(image_list.tensors)
        if isinstance(features, Tensor):
            features = OrderedDict([("0", features)])
        image_logits = self.image_head(features)

        if self.training:
            losses = self._detector_losses(image_list, features, targets)
            losses[IMAGE_LOSS_NAME] = image_classification_loss(image_logits, targets) * self.classifier_loss_weight
            return losses

        proposals, _ = self.rpn(image_list, features)
        detections, _ = self.roi_heads(features, proposals, image_list.image_sizes)
        detections = self.transform.postprocess(detections, image_list.image_sizes, original_image_sizes)
        rsna_class_probs = image_logits["rsna_class"].float().softmax(dim=1)
        pneumonia_probs = image_logits["pneumonia"].float().sigmoid()
        subtype_probs = image_logits["subtype"].float().softmax(dim=1)
        for i, detection in enumerate(detections):
            detection["rsna_class_probs"] = rsna_class_probs[i]
            detection["pneumonia_prob"] = pneumonia_probs[i]
            detection["subtype_probs"] = subtype_probs[i]
        return detections

    def _detector_losses(self, image_list: ImageList, features: OrderedDict[str, Tensor],
                         targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        """RPN + box head losses on the images with box labels only (the backbone ran once on all)."""
        boxed = [i for i, t in enumerate(targets) if bool(t.get("has_box_labels", True))]
        if not boxed:
            # Zero, but tied to the graph through the features: the loop's sum and backward
            # work, and neither the RPN nor the box head receives a gradient. Float32 means:
            # a float16 sum under autocast could overflow to inf, and inf * 0 is nan.
            zero = torch.stack([level.float().mean() for level in features.values()]).sum() * 0.0
            return {name: zero for name in DETECTOR_LOSS_NAMES}
        if len(boxed) < len(targets):
            index = torch.as_tensor(boxed, device=image_list.tensors.device)
            image_list = ImageList(image_list.tensors.index_select(0, index), [image_list.image_sizes[i] for i in boxed])
            features = OrderedDict((name, level.index_select(0, index)) for name, level in features.items())
            targets = [targets[i] for i in boxed]
        proposals, proposal_losses = self.rpn(image_list, features, targets)
        _, box_losses = self.roi_heads(features, proposals, image_list.image_sizes, targets)
        return {**box_losses, **proposal_losses}


def _count_feature_levels(backbone: nn.Module) -> int:
    """Number of feature maps the backbone returns (5 for ResNet-50 FPN, 3 for MobileNetV3 FPN)."""
    was_training = backbone.training
    backbone.eval()  # no BatchNorm statistics from this probe
    try:
        with torch.no_grad():
            probe = torch.zeros(1, 3, 64, 64, device=next(backbone.parameters()).device)
            features = backbone(probe)
    finally:
        backbone.train(was_training)
    return 1 if isinstance(features, Tensor) else len(features)


def _check_targets(images: list[Tensor], targets: list[dict[str, Tensor]] | None) -> None:
    if targets is None:
        raise ValueError("targets are required in training mode (call model.eval() to predict)")
    if len(targets) != len(images):
        raise ValueError(f"got {len(images)} images but {len(targets)} targets")
    for index, target in enumerate(targets):
        boxes = target.get("boxes")
        if not isinstance(boxes, Tensor) or boxes.ndim != 2 or boxes.shape[-1] != 4:
            shape = tuple(boxes.shape) if isinstance(boxes, Tensor) else type(boxes).__name__
            raise ValueError(f"target at index {index}: 'boxes' must be a float tensor of shape [N, 4], got {shape}")
        if "labels" not in target:
            raise ValueError(f"target at index {index} has no 'labels'")


def _check_degenerate_boxes(targets: list[dict[str, Tensor]]) -> None:
    for index, target in enumerate(targets):
        boxes = target["boxes"]
        degenerate = (boxes[:, 2:] <= boxes[:, :2]).any(dim=1)
        if degenerate.any():
            bad = boxes[int(torch.where(degenerate)[0][0])].tolist()
            raise ValueError(
                f"All bounding boxes should have positive height and width. Found invalid box {bad} "
                f"for target at index {index}."
            )


# ----------------------------------------------------------------------------------- building


def _validate_model_config(model_cfg: ModelConfig, spec: ModelSpec, image_size_px: int) -> None:
    def fail(key: str, value: Any, expected: str) -> None:
        raise ConfigError(f"config key 'model.{key}' is {value!r}; {expected}")

    if not 0 <= model_cfg.trainable_backbone_layers <= spec.trainable_layers_max:
        fail("trainable_backbone_layers", model_cfg.trainable_backbone_layers,
             f"'{model_cfg.name}' accepts 0 to {spec.trainable_layers_max}")
    if not 0.0 <= model_cfg.box_score_thresh <= 1.0:
        fail("box_score_thresh", model_cfg.box_score_thresh, "expected a value in [0, 1]")
    if not 0.0 < model_cfg.box_nms_thresh <= 1.0:
        fail("box_nms_thresh", model_cfg.box_nms_thresh, "expected a value in (0, 1]")
    if model_cfg.box_detections_per_img < 1:
        fail("box_detections_per_img", model_cfg.box_detections_per_img, "expected at least 1")
    if model_cfg.head_hidden_dim < 1:
        fail("head_hidden_dim", model_cfg.head_hidden_dim, "expected at least 1")
    if not 0.0 <= model_cfg.head_dropout < 1.0:
        fail("head_dropout", model_cfg.head_dropout, "expected a value in [0, 1)")
    if model_cfg.classifier_loss_weight < 0:
        fail("classifier_loss_weight", model_cfg.classifier_loss_weight, "expected a value >= 0")
    if image_size_px < 32:
        raise ConfigError(f"config key 'data.image_size_px' is {image_size_px}; expected at least 32")


def weights_kind(weights: str) -> str:
    """'none', 'imagenet' or 'file' for a model.weights value."""
    lowered = weights.strip().lower()
    if lowered in ("none", "imagenet"):
        return lowered
    return "file"


def build_model(model_cfg: ModelConfig, image_size_px: int) -> PneumoniaDetector:
    """The detector named by model_cfg.name for S x S inputs (S = image_size_px), initialised per model_cfg.weights.

    weights: 'none'      random initialisation everywhere (BatchNorm trains, all backbone layers train);
             'imagenet'  torchvision's ImageNet backbone (downloaded once into torch's hub cache;
                         offline -> WeightsUnavailableError saying how to provide the file);
                         model.trainable_backbone_layers applies, BatchNorm frozen as torchvision does;
             PATH        a .pt/.pth state dict of the whole detector, or a detect checkpoint (its
                         'model'), see `load_weights`; backbone freezing as for 'imagenet'.
    Raises ConfigError for an unknown name or an invalid model key.
    """
    spec = get_model_spec(model_cfg.name)
    _validate_model_config(model_cfg, spec, image_size_px)
    kind = weights_kind(model_cfg.weights)
    weights_path = None
    if kind == "file":  # fail before building anything
        weights_path = _existing_weights_file(model_cfg.weights)
    kwargs: dict[str, Any] = dict(
        weights=None,
        num_classes=NUM_DETECTOR_CLASSES,
        min_size=image_size_px,
        max_size=image_size_px,
        image_mean=list(spec.image_mean),
        image_std=list(spec.image_std),
        box_score_thresh=model_cfg.box_score_thresh,
        box_nms_thresh=model_cfg.box_nms_thresh,
        box_detections_per_img=model_cfg.box_detections_per_img,
        rpn_pre_nms_top_n_train=model_cfg.rpn_pre_nms_top_n_train,
        rpn_post_nms_top_n_train=model_cfg.rpn_post_nms_top_n_train,
        rpn_pre_nms_top_n_test=model_cfg.rpn_pre_nms_top_n_test,
        rpn_post_nms_top_n_test=model_cfg.rpn_post_nms_top_n_test,
        rpn_batch_size_per_image=model_cfg.rpn_batch_size_per_image,
        box_batch_size_per_image=model_cfg.box_batch_size_per_image,
    )
    if kind == "imagenet":
        detector = _build_with_imagenet_backbone(spec, model_cfg.trainable_backbone_layers, kwargs)
    else:
        # weights_backbone=None: torchvision then trains every layer with plain BatchNorm
        # (and warns if trainable_backbone_layers is passed, so it is not).
        detector = spec.builder(weights_backbone=None, trainable_backbone_layers=None, **kwargs)
        if kind == "file":
            if spec.frozen_batchnorm_when_pretrained:
                _convert_to_frozen_batchnorm(detector.backbone.body)
            spec.freeze_backbone(detector.backbone.body, model_cfg.trainable_backbone_layers)
    _resize_box_head(detector, model_cfg)
    _set_anchors(detector, model_cfg)
    model = PneumoniaDetector(
        detector,
        model_name=model_cfg.name,
        image_size_px=image_size_px,
        head_hidden_dim=model_cfg.head_hidden_dim,
        head_dropout=model_cfg.head_dropout,
        classifier_loss_weight=model_cfg.classifier_loss_weight,
    )
    if weights_path is not None:
        load_weights(model, weights_path)
    return model


def _resize_box_head(detector: FasterRCNN, model_cfg: ModelConfig) -> None:
    """Apply model.roi_sampling_ratio, model.roi_align_backend and model.box_head_dim to
    torchvision's RoI box head.

    On a CPU the RoI head dominates a training step (roi_align's backward and the 12544 -> 1024
    MLP: about two thirds of a MobileNet step at 256 px), so the CPU recipes shrink it. The
    defaults (2, 1024) leave torchvision's reference head untouched. ResNet-50 FPN v2 has a
    conv head (FastRCNNConvFCHead) whose width box_head_dim does not change.
    """
    roi_heads = detector.roi_heads
    pool = roi_heads.box_roi_pool
    if model_cfg.roi_align_backend == "grid_sample":
        if model_cfg.roi_sampling_ratio < 1:
            raise ConfigError(
                f"config key 'model.roi_sampling_ratio' is {model_cfg.roi_sampling_ratio}; "
                "model.roi_align_backend=grid_sample needs a fixed ratio >= 1"
            )
        roi_heads.box_roi_pool = GridSampleMultiScaleRoIAlign(
            list(pool.featmap_names), pool.output_size, model_cfg.roi_sampling_ratio
        )
    elif model_cfg.roi_sampling_ratio != pool.sampling_ratio:
        roi_heads.box_roi_pool = MultiScaleRoIAlign(
            featmap_names=pool.featmap_names, output_size=pool.output_size, sampling_ratio=model_cfg.roi_sampling_ratio
        )
    head = roi_heads.box_head
    if isinstance(head, TwoMLPHead) and head.fc7.out_features != model_cfg.box_head_dim:
        roi_heads.box_head = TwoMLPHead(head.fc6.in_features, model_cfg.box_head_dim)
        roi_heads.box_predictor = FastRCNNPredictor(model_cfg.box_head_dim, NUM_DETECTOR_CLASSES)


def _set_anchors(detector: FasterRCNN, model_cfg: ModelConfig) -> None:
    """Apply model.anchor_sizes_px (one size per feature level) and model.anchor_aspect_ratios
    (height / width, every level); an empty key keeps the model's torchvision default.

    torchvision's defaults are sized for ~800 px inputs; at 128-256 px most of them are larger
    than the image, and the RPN learns little from them. The RPN head is rebuilt (fresh, with
    the same depth) when the number of anchors per location changes.
    """
    if not model_cfg.anchor_sizes_px and not model_cfg.anchor_aspect_ratios:
        return
    current = detector.rpn.anchor_generator
    n_levels = _count_feature_levels(detector.backbone)
    if model_cfg.anchor_sizes_px:
        if len(model_cfg.anchor_sizes_px) != n_levels:
            raise ConfigError(
                f"config key 'model.anchor_sizes_px' has {len(model_cfg.anchor_sizes_px)} sizes, but model "
                f"'{model_cfg.name}' has {n_levels} feature levels: give one size per level, small to large"
            )
        if any(size <= 0 for size in model_cfg.anchor_sizes_px):
            raise ConfigError(f"config key 'model.anchor_sizes_px' is {list(model_cfg.anchor_sizes_px)}; sizes must be > 0")
        sizes = tuple((int(size),) for size in model_cfg.anchor_sizes_px)
    else:
        sizes = tuple(current.sizes)
    if model_cfg.anchor_aspect_ratios:
        if any(ratio <= 0 for ratio in model_cfg.anchor_aspect_ratios):
            raise ConfigError(
                f"config key 'model.anchor_aspect_ratios' is {list(model_cfg.anchor_aspect_ratios)}; ratios must be > 0"
            )
        ratios = tuple(tuple(float(r) for r in model_cfg.anchor_aspect_ratios) for _ in sizes)
    else:  # every MODELS entry uses one set of ratios on all its levels
        ratios = (tuple(current.aspect_ratios[0]),) * len(sizes)
    generator = AnchorGenerator(sizes, ratios)
    detector.rpn.anchor_generator = generator
    old_head = detector.rpn.head
    n_anchors = generator.num_anchors_per_location()[0]
    if old_head.cls_logits.out_channels != n_anchors:
        detector.rpn.head = RPNHead(detector.backbone.out_channels, n_anchors, conv_depth=len(old_head.conv))


def _build_with_imagenet_backbone(spec: ModelSpec, trainable_layers: int, kwargs: dict[str, Any]) -> FasterRCNN:
    enum = get_weight(spec.imagenet_weights)
    try:
        return spec.builder(weights_backbone=enum, trainable_backbone_layers=trainable_layers, **kwargs)
    except (OSError, socket.timeout) as exc:  # URLError, HTTPError, ConnectionError are OSErrors
        raise WeightsUnavailableError(_download_failure_message(spec.imagenet_weights, enum.url, exc)) from None
    except RuntimeError as exc:
        if "hash" not in str(exc).lower():
            raise
        file_name = os.path.basename(enum.url)
        cached = Path(torch.hub.get_dir()) / "checkpoints" / file_name
        raise WeightsUnavailableError(
            f"the download of {spec.imagenet_weights} is corrupt (hash mismatch): delete {cached} and run again, "
            f"or set model.weights to a local file or 'none'"
        ) from None


def _download_failure_message(enum_name: str, url: str, exc: BaseException) -> str:
    if isinstance(exc, HTTPError):
        reason = f"HTTP {exc.code} {exc.reason}"
        what = f"could not download {enum_name} from {url} ({reason})"
    else:
        reason = exc.reason if isinstance(exc, URLError) else exc
        what = f"no internet access to download {enum_name} from {url} ({reason})"
    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    message = (
        f"model.weights=imagenet: {what}; either run once online, copy the torchvision cache file "
        f"{os.path.basename(url)} to {checkpoints}/, or set model.weights to a local file or 'none'"
    )
    return " ".join(message.split())


# ------------------------------------------------------------------------------------ weights


def _existing_weights_file(weights: str) -> Path:
    path = Path(weights).expanduser()
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "file not found"
        raise WeightsUnavailableError(
            f"model.weights={weights}: {what}; set model.weights to 'none', 'imagenet' or an existing .pt/.pth file"
        )
    return path


_WRAPPER_PREFIXES: tuple[str, ...] = ("module.", "_orig_mod.")  # DDP / DataParallel, torch.compile


def read_state_dict(path: str | Path) -> tuple[dict[str, Tensor], str | None]:
    """A weights file -> (state dict, the model name stored with it or None).

    Accepts a plain state dict, a detect checkpoint (its 'model'; the name from its 'config'),
    or a {'state_dict': ...} wrapper; strips DDP's 'module.' and torch.compile's '_orig_mod.'
    prefixes. Loads with weights_only=True: a weights file cannot run code.
    """
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, UnpicklingError, EOFError... for bad files
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise CheckpointError(f"{path}: not a readable weights file ({first})") from None
    stored_name = None
    if isinstance(payload, dict) and isinstance(payload.get("config"), dict):
        stored_name = (payload["config"].get("model") or {}).get("name")
    for key in ("model", "state_dict"):
        if isinstance(payload, dict) and isinstance(payload.get(key), dict):
            payload = payload[key]
            break
    if not isinstance(payload, dict) or not payload or not all(isinstance(v, Tensor) for v in payload.values()):
        raise CheckpointError(
            f"{path}: holds no state dict (expected a dict of tensors, a detect checkpoint with 'model', "
            "or a dict with 'state_dict')"
        )
    state: dict[str, Tensor] = {}
    for key, value in payload.items():
        for prefix in _WRAPPER_PREFIXES:
            while key.startswith(prefix):
                key = key[len(prefix):]
        state[key] = value
    return state, stored_name


def load_weights(model: PneumoniaDetector, path: str | Path) -> None:
    """Load a weights file (see `read_state_dict`) into `model`, strictly, naming the file on failure.

    One partial case is accepted, with a warning: a plain torchvision Faster R-CNN state dict
    (e.g. torchvision's COCO-trained file). Its backbone, RPN and box head load; the image head
    (absent from it) and the box predictor (when its class count differs) keep their fresh
    initialisation. Anything else that does not fit -> CheckpointError listing the first problems.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsUnavailableError(
            f"model.weights={path}: file not found; set model.weights to 'none', 'imagenet' or an existing .pt/.pth file"
        )
    state, stored_name = read_state_dict(path)
    own = model.state_dict()

    def countable(key: str) -> bool:  # BatchNorm <-> FrozenBatchNorm2d differ by this buffer only
        return not key.endswith("num_batches_tracked")

    missing = [k for k in own if k not in state and countable(k)]
    unexpected = [k for k in state if k not in own and countable(k)]
    mismatched = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]

    torchvision_file = (
        bool(missing) and not unexpected
        and all(k.startswith("image_head.") for k in missing)
        and all(k.startswith("roi_heads.box_predictor.") for k in mismatched)
    )
    if (missing or unexpected or mismatched) and not torchvision_file:
        problems = []
        if mismatched:
            k = mismatched[0]
            problems.append(f"{len(mismatched)} with other shapes (first: {k} {list(state[k].shape)} in the file, "
                            f"{list(own[k].shape)} in the model)")
        if missing:
            problems.append(f"{len(missing)} missing (first: {missing[0]})")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected (first: {unexpected[0]})")
        hint = ""
        if stored_name and stored_name != model.model_name:
            hint = f"; the file holds a '{stored_name}' model: set model.name={stored_name}"
        raise CheckpointError(
            f"{path}: weights do not fit model '{model.model_name}': {'; '.join(problems)}{hint}"
        )
    if torchvision_file:
        loadable = {k: v for k, v in state.items() if k not in mismatched}
        model.load_state_dict(loadable, strict=False)
        fresh = "the image head" + (f" and the box predictor ({len(mismatched)} tensors of another class count)"
                                    if mismatched else "")
        warnings.warn(f"{path}: a torchvision Faster R-CNN state dict: {len(loadable)} tensors loaded, "
                      f"{fresh} start from random initialisation", stacklevel=2)
        return
    model.load_state_dict(state, strict=True)


def describe_models() -> list[dict[str, Any]]:
    """One plain dict per MODELS entry (name, description, note, sizes, weights): for listings."""
    return [
        {"name": name, **{f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)
                          if f.name not in ("builder", "freeze_backbone")}}
        for name, spec in MODELS.items()
    ]
