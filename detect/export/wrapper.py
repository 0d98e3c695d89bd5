"""The exportable model: one batch tensor in, fixed-shape tensors out (what ONNX / TorchScript run).

    wrapper = exportable_model(model)             # a detector or a classifier checkpoint's model
    outputs = wrapper(images, scale, orig_size_hw)

The contract (ONNX input / output names are the same words; README "`detect export`"):

    inputs
      images            float32 [B, 3, S, S]  letterboxed in [0, 1], as detect.inference.predictor.
                                              prepare_input makes it (the normalisation is INSIDE)
      scale             float32 [B]           each image's letterbox scale (S / max(H, W))
      orig_size_hw      int64   [B, 2]        each original image's (height, width) in pixels
    outputs
      boxes             float32 [B, D, 4]     xyxy in ORIGINAL pixels, clipped to the image;
                                              padding rows are 0
      scores            float32 [B, D]        descending; -1 marks a padding row
      num_detections    int64   [B]           valid rows per image (they come first)
      rsna_class_probs  float32 [B, 3]        softmax, data_prep.records.RSNA_CLASSES order
      pneumonia_prob    float32 [B]           sigmoid
      subtype_probs     float32 [B, 3]        softmax, data_prep.records.KERMANY_SUBTYPES order

D = model.box_detections_per_img for a detector, 0 for a classifier (ExportableClassifier: no
boxes, the same probabilities). A box that the clip to the original image leaves empty is a
padding row (detect.inference.postprocess.keep_valid_boxes drops it in eager inference too).
With scale = 1 and orig_size_hw = (S, S) the boxes stay in input pixels: that is how the
Predictor's backends call it, so that its one to_raw_prediction step maps every backend's boxes.

Why not the PneumoniaDetector itself: its list-of-images input and list-of-dicts output do not
export; torchvision's GeneralizedRCNNTransform resize is the identity for S x S inputs
(min_size = max_size = S), so the wrapper normalises and pads itself and leaves it out; and
the grid_sample RoIAlign (model.roi_align_backend=grid_sample, a training speed-up) is swapped
for torchvision's MultiScaleRoIAlign, the same numbers (tests/detect/models/test_roi_align.py)
as one roi_align op that TorchScript scripts and ONNX exports.
"""

from __future__ import annotations

import copy
import math
from collections import OrderedDict

import torch
from torch import Tensor, nn
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import MultiScaleRoIAlign

from detect.models.detector import PneumoniaDetector, image_probability, top_box_score
from detect.models.roi_align import GridSampleMultiScaleRoIAlign

INPUT_NAMES: tuple[str, ...] = ("images", "scale", "orig_size_hw")
OUTPUT_NAMES: tuple[str, ...] = (
    "boxes",
    "scores",
    "num_detections",
    "rsna_class_probs",
    "pneumonia_prob",
    "subtype_probs",
)
# torchvision's GeneralizedRCNNTransform pads a batch to a multiple of this
SIZE_DIVISIBLE_PX = 32


def example_inputs(image_size_px: int, batch_size: int = 1) -> tuple[Tensor, Tensor, Tensor]:
    """Inputs of the contract's shapes (for tracing and the export check): a mid-grey image that
    is its own letterbox."""
    images = torch.full((batch_size, 3, image_size_px, image_size_px), 0.5)
    return images, torch.ones(batch_size), torch.full((batch_size, 2), image_size_px, dtype=torch.int64)


def with_torchvision_roi_align(model: PneumoniaDetector) -> PneumoniaDetector:
    """A copy of `model` whose box RoI pool is torchvision's MultiScaleRoIAlign (same featmaps,
    output size and sampling ratio); the model itself is left as it is."""
    model = copy.deepcopy(model).eval()
    pool = model.roi_heads.box_roi_pool
    if isinstance(pool, GridSampleMultiScaleRoIAlign):
        model.roi_heads.box_roi_pool = MultiScaleRoIAlign(
            featmap_names=list(pool.featmap_names), output_size=pool.output_size, sampling_ratio=pool.sampling_ratio
        )
    return model


class ExportableDetector(nn.Module):
    """A PneumoniaDetector (eval mode) behind the fixed tensor contract of the module docstring."""

    def __init__(self, model: PneumoniaDetector) -> None:
        super().__init__()
        model = with_torchvision_roi_align(model)
        self.backbone = model.backbone
        self.rpn = model.rpn
        self.roi_heads = model.roi_heads
        self.image_head = model.image_head
        self.image_probability: str = model.image_probability
        self.image_size_px = int(model.image_size_px)
        self.padded_size_px = int(math.ceil(self.image_size_px / SIZE_DIVISIBLE_PX) * SIZE_DIVISIBLE_PX)
        self.max_detections = int(model.roi_heads.detections_per_img)
        self.register_buffer(
            "image_mean", torch.tensor(model.transform.image_mean, dtype=torch.float32).view(1, 3, 1, 1)
        )
        self.register_buffer("image_std", torch.tensor(model.transform.image_std, dtype=torch.float32).view(1, 3, 1, 1))
        self.eval()

    def forward(
        self, images: Tensor, scale: Tensor, orig_size_hw: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        size = self.image_size_px
        pad = self.padded_size_px - size
        normalised = (images - self.image_mean) / self.image_std
        if pad > 0:  # zeros after normalising, right and bottom: torchvision's batch_images
            normalised = nn.functional.pad(normalised, [0, pad, 0, pad])
        image_sizes = [(size, size) for _ in range(images.shape[0])]
        image_list = ImageList(normalised, image_sizes)
        features = self.backbone(normalised)
        if isinstance(features, Tensor):
            features = OrderedDict([("0", features)])
        logits = self.image_head(features)
        proposals, _ = self.rpn(image_list, features)
        detections, _ = self.roi_heads(features, proposals, image_list.image_sizes)
        # the top raw score, as the eager model takes it (before the boxes are clipped to the original)
        top_box = torch.stack([top_box_score(detection["scores"]) for detection in detections])
        boxes, scores = self._pad_detections(detections, scale, orig_size_hw)
        num_detections = (scores >= 0).sum(dim=1)
        return (
            boxes,
            scores,
            num_detections,
            logits["rsna_class"].float().softmax(dim=1),
            image_probability(logits["pneumonia"].float().sigmoid(), top_box, self.image_probability),
            logits["subtype"].float().softmax(dim=1),
        )

    def _pad_detections(
        self, detections: list[dict[str, Tensor]], scale: Tensor, orig_size_hw: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Per image: to original pixels, clipped; empty boxes and padding scored -1, valid rows first."""
        all_boxes = []
        all_scores = []
        for i, detection in enumerate(detections):
            boxes = detection["boxes"] / scale[i]
            height = orig_size_hw[i, 0].to(boxes.dtype)
            width = orig_size_hw[i, 1].to(boxes.dtype)
            x = torch.minimum(boxes[:, 0::2].clamp(min=0.0), width)
            y = torch.minimum(boxes[:, 1::2].clamp(min=0.0), height)
            boxes = torch.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], dim=1)
            missing = self.max_detections - boxes.shape[0]
            boxes = torch.cat([boxes, boxes.new_zeros((missing, 4))], dim=0)
            scores = torch.cat([detection["scores"], detection["scores"].new_zeros((missing,))], dim=0)
            valid = (scores > 0) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
            scores = torch.where(valid, scores, torch.full_like(scores, -1.0))
            boxes = boxes * valid[:, None].to(boxes.dtype)
            scores, order = scores.sort(descending=True)
            all_boxes.append(boxes[order])
            all_scores.append(scores)
        return torch.stack(all_boxes), torch.stack(all_scores)


class ExportableClassifier(nn.Module):
    """An image classifier (model.kind == "classifier", detect.models.classifiers) behind the
    same contract: D = 0 boxes, its eval-mode probabilities. Traced, not scripted (the
    classifier's training branches and loss settings do not script): one image per call."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = copy.deepcopy(model).eval()
        self.image_size_px = int(model.image_size_px)
        self.max_detections = 0
        self.eval()

    def forward(
        self, images: Tensor, scale: Tensor, orig_size_hw: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        outputs = self.model(list(images.unbind(0)))
        count = images.shape[0]
        return (
            images.new_zeros((count, 0, 4)),
            images.new_zeros((count, 0)),
            # zeros [B], tied to both inputs: a trace keeps B, and the ONNX graph keeps the inputs
            # of the contract (an input no output depends on is dropped from it)
            (scale * 0).to(torch.int64) + orig_size_hw[:, 0] * 0,
            torch.stack([o["rsna_class_probs"].float() for o in outputs]),
            torch.stack([o["pneumonia_prob"].float().reshape(()) for o in outputs]),
            torch.stack([o["subtype_probs"].float() for o in outputs]),
        )


def is_classifier_model(model: nn.Module) -> bool:
    return getattr(model, "kind", "detector") == "classifier"


def exportable_model(model: nn.Module) -> ExportableDetector | ExportableClassifier:
    return ExportableClassifier(model) if is_classifier_model(model) else ExportableDetector(model)
