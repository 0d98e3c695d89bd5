"""The detector: torchvision Faster R-CNN for opacity boxes plus an image-level classification head.

    model = build_model(cfg.model, cfg.data.image_size_px)     # detect.models.build

Input (torchvision's detection contract): `images` a list of float32 [3, H, W] tensors in [0, 1]
(our samples are letterboxed squares, S = data.image_size_px; see detect.data.dataset), `targets`
a list of dicts per image in the sample contract of detect.data.dataset.

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
    pneumonia_prob    float32 [], per `image_probability` (model.image_probability):
                      'head' the image head's sigmoid; 'top_box' the highest box score (0 without
                      a box); 'mean' the mean of the two (`image_probability`, shared with export)
    subtype_probs     float32 [3], softmax, in KERMANY_SUBTYPES order

torchvision's own transform runs inside the model: it normalises with the spec's mean/std and
would resize, but min_size = max_size = S makes the resize the identity for S x S inputs, so
boxes in and out stay in input pixels (tests/detect/models/test_detector.py checks it).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.image_list import ImageList

from detect.config import IMAGE_PROBABILITY_RULES
from detect.models.heads import ImageClassificationHead, image_classification_loss

DETECTOR_LOSS_NAMES: tuple[str, ...] = ("loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg")
IMAGE_LOSS_NAME = "loss_image_classifier"
LOSS_NAMES: tuple[str, ...] = DETECTOR_LOSS_NAMES + (IMAGE_LOSS_NAME,)


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

    def __init__(
        self,
        detector: FasterRCNN,
        *,
        model_name: str,
        image_size_px: int,
        head_hidden_dim: int,
        head_dropout: float,
        classifier_loss_weight: float,
        image_probability: str = "head",
    ) -> None:
        super().__init__()
        if image_probability not in IMAGE_PROBABILITY_RULES:
            raise ValueError(f"image_probability must be one of {IMAGE_PROBABILITY_RULES}, got {image_probability!r}")
        self.image_probability = image_probability
        self.transform = detector.transform
        self.backbone = detector.backbone
        self.rpn = detector.rpn
        self.roi_heads = detector.roi_heads
        self.model_name = model_name
        self.image_size_px = int(image_size_px)
        self.classifier_loss_weight = float(classifier_loss_weight)
        self.image_head = ImageClassificationHead(
            self.backbone.out_channels, count_feature_levels(self.backbone), head_hidden_dim, head_dropout
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
            top_box = top_box_score(detection["scores"])
            detection["pneumonia_prob"] = image_probability(pneumonia_probs[i], top_box, self.image_probability)
            detection["subtype_probs"] = subtype_probs[i]
        return detections

    def _detector_losses(
        self, image_list: ImageList, features: OrderedDict[str, Tensor], targets: list[dict[str, Tensor]]
    ) -> dict[str, Tensor]:
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
            image_list = ImageList(
                image_list.tensors.index_select(0, index), [image_list.image_sizes[i] for i in boxed]
            )
            features = OrderedDict((name, level.index_select(0, index)) for name, level in features.items())
            targets = [targets[i] for i in boxed]
        proposals, proposal_losses = self.rpn(image_list, features, targets)
        _, box_losses = self.roi_heads(features, proposals, image_list.image_sizes, targets)
        return {**box_losses, **proposal_losses}


def top_box_score(scores: Tensor) -> Tensor:
    """The highest of an image's raw box scores (in the model's input, before any clipping to
    the original image), 0 without a box. No data-dependent branch: a traced (ONNX) graph gives
    the same on an image with boxes and one without."""
    return torch.cat([scores.float(), scores.new_zeros(1, dtype=torch.float32)]).max()


def image_probability(head_prob: Tensor, top_box_score: Tensor, rule: str) -> Tensor:
    """An image's pneumonia probability from the head's and the top box score's, per `rule`
    ('head', 'top_box' or 'mean'; IMAGE_PROBABILITY_RULES). Scriptable: the exported detector
    (detect.export.wrapper) applies the same function."""
    if rule == "top_box":
        return top_box_score.to(head_prob.dtype)
    if rule == "mean":
        return 0.5 * (head_prob + top_box_score.to(head_prob.dtype))
    return head_prob


def count_feature_levels(backbone: nn.Module) -> int:
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
