"""Building the model a config names: `build_model(cfg.model, cfg.data.image_size_px, task=cfg.task)`.

Detectors: the MODELS entry's torchvision builder makes the Faster R-CNN (detector heads always
fresh, for 2 classes); the config's RoI head size, RoIAlign backend and anchors are applied to
it; it is wrapped in a PneumoniaDetector with the image-level head.
Classifiers: the entry's torchvision classification builder with fresh heads for the task,
wrapped in an ImageClassifier (detect.models.classifiers). Starting weights per model.weights.
"""

from __future__ import annotations

from typing import Any

from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.rpn import RPNHead
from torchvision.ops import MultiScaleRoIAlign

from detect.config import ModelConfig
from detect.models.backbones import NUM_DETECTOR_CLASSES
from detect.models.classifiers import DETECTION_TASK, ImageClassifier, build_classifier_network, num_outputs
from detect.models.detector import PneumoniaDetector
from detect.models.registry import AUX_LOGITS_MIN_IMAGE_SIZE_PX, ClassifierSpec, get_model_spec
from detect.models.roi_align import GridSampleMultiScaleRoIAlign
from detect.models.weights import (
    XRV_MEAN,
    XRV_STD,
    build_imagenet_classifier,
    build_with_imagenet_backbone,
    existing_weights_file,
    load_weights,
    load_xrv_weights,
    weights_kind,
)


def build_model(
    model_cfg: ModelConfig, image_size_px: int, task: str = DETECTION_TASK
) -> PneumoniaDetector | ImageClassifier:
    """The model named by model_cfg.name for S x S inputs (S = image_size_px), initialised per
    model_cfg.weights: a classifier for `task` (see `build_classifier`), or a detector.

    weights: 'none'      random initialisation everywhere (BatchNorm trains, all backbone layers train);
             'imagenet'  torchvision's ImageNet backbone (downloaded once into torch's hub cache;
                         offline -> WeightsUnavailableError saying how to provide the file);
                         model.trainable_backbone_layers applies, BatchNorm frozen as torchvision does;
             PATH        a .pt/.pth state dict of the whole detector, or a detect checkpoint (its
                         'model'), see `load_weights`; backbone freezing as for 'imagenet'.
    model_cfg's values were checked when it was built (detect.config); a missing weights file
    is a WeightsUnavailableError before anything is built.
    """
    spec = get_model_spec(model_cfg.name)
    if isinstance(spec, ClassifierSpec):
        return build_classifier(spec, model_cfg, image_size_px, task)
    kind = weights_kind(model_cfg.weights)
    weights_path = existing_weights_file(model_cfg.weights) if kind == "file" else None
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
        detector = build_with_imagenet_backbone(spec, model_cfg.trainable_backbone_layers, kwargs)
    else:
        # weights_backbone=None: torchvision then trains every layer with plain BatchNorm
        # (and warns if trainable_backbone_layers is passed, so it is not).
        detector = spec.builder(weights_backbone=None, trainable_backbone_layers=None, **kwargs)
        if kind == "file":
            if spec.frozen_batchnorm_when_pretrained:
                spec.freeze_batchnorm(detector.backbone.body)
            spec.freeze_backbone(detector.backbone.body, model_cfg.trainable_backbone_layers)
    resize_box_head(detector, model_cfg)
    set_anchors(detector, model_cfg)
    model = PneumoniaDetector(
        detector,
        model_name=model_cfg.name,
        image_size_px=image_size_px,
        head_hidden_dim=model_cfg.head_hidden_dim,
        head_dropout=model_cfg.head_dropout,
        classifier_loss_weight=model_cfg.classifier_loss_weight,
        image_probability=model_cfg.image_probability,
    )
    if weights_path is not None:
        load_weights(model, weights_path)
    return model


def build_classifier(spec: ClassifierSpec, model_cfg: ModelConfig, image_size_px: int, task: str) -> ImageClassifier:
    """The ImageClassifier of `spec` for `task` (detect.config checked the pair and the size).

    weights: 'none' random initialisation; 'imagenet' torchvision's ImageNet network (offline ->
    WeightsUnavailableError, as for detectors); 'xrv:NAME' torchxrayvision's CXR-pretrained
    network (needs the package), with its normalisation; PATH a detect checkpoint, a state dict
    of this classifier, or a plain torchvision classification file. The task's heads start fresh.
    inception_v3 below AUX_LOGITS_MIN_IMAGE_SIZE_PX drops its auxiliary head (it cannot run there).
    """
    kind = weights_kind(model_cfg.weights)
    weights_path = existing_weights_file(model_cfg.weights) if kind == "file" else None
    n_outputs = num_outputs(task)
    kwargs = dict(spec.builder_kwargs)
    if kind == "imagenet":
        network = build_imagenet_classifier(spec, n_outputs, kwargs)
    else:
        network = build_classifier_network(spec.builder, spec.head_paths, n_outputs, extra_kwargs=kwargs)
    head_paths = spec.head_paths
    if getattr(network, "aux_logits", False) and image_size_px < AUX_LOGITS_MIN_IMAGE_SIZE_PX:
        network.aux_logits = False
        network.AuxLogits = None
        head_paths = tuple(p for p in head_paths if not p.startswith("AuxLogits."))
    mean, std = spec.image_mean, spec.image_std
    if kind == "xrv":
        load_xrv_weights(network, spec, model_cfg.weights)
        mean, std = XRV_MEAN, XRV_STD
    model = ImageClassifier(
        network,
        model_name=model_cfg.name,
        image_size_px=image_size_px,
        task=task,
        image_mean=mean,
        image_std=std,
        head_paths=head_paths,
        cam_layer_path=spec.cam_layer_path,
    )
    if weights_path is not None:
        load_weights(model, weights_path)
    return model


def resize_box_head(detector: FasterRCNN, model_cfg: ModelConfig) -> None:
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


def set_anchors(detector: FasterRCNN, model_cfg: ModelConfig) -> None:
    """Apply model.anchor_sizes_px (one size per feature level) and model.anchor_aspect_ratios
    (height / width, every level); an empty key keeps the model's torchvision default.

    torchvision's defaults are sized for ~800 px inputs; at 128-256 px most of them are larger
    than the image, and the RPN learns little from them. The RPN head is rebuilt (fresh, with
    the same depth) when the number of anchors per location changes.
    """
    if not model_cfg.anchor_sizes_px and not model_cfg.anchor_aspect_ratios:
        return
    current = detector.rpn.anchor_generator
    if model_cfg.anchor_sizes_px:  # one per feature level: detect.config checked the count
        sizes = tuple((int(size),) for size in model_cfg.anchor_sizes_px)
    else:
        sizes = tuple(current.sizes)
    if model_cfg.anchor_aspect_ratios:
        ratios = tuple(tuple(float(r) for r in model_cfg.anchor_aspect_ratios) for _ in sizes)
    else:  # every MODELS entry uses one set of ratios on all its levels
        ratios = (tuple(current.aspect_ratios[0]),) * len(sizes)
    generator = AnchorGenerator(sizes, ratios)
    detector.rpn.anchor_generator = generator
    old_head = detector.rpn.head
    n_anchors = generator.num_anchors_per_location()[0]
    if old_head.cls_logits.out_channels != n_anchors:
        detector.rpn.head = RPNHead(detector.backbone.out_channels, n_anchors, conv_depth=len(old_head.conv))
