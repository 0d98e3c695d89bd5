"""The model registry: a plain dict `name -> spec` (builder + metadata), no import-time magic.

    spec = get_model_spec(cfg.model.name)     # a ConfigError listing MODELS when the name is unknown
    is_classifier(name)                       # spec.kind == "classifier"
    count_parameters(name)                    # parameters of the built model (weights=None)

Two kinds of entries, both with `kind`, `default_image_size_px`, `image_mean` / `image_std`:
- detectors (ModelSpec): torchvision Faster R-CNN builders; detect.models.build turns them into
  a PneumoniaDetector with the image-level head;
- classifiers (ClassifierSpec): torchvision classification builders (and basic_cnn); built
  into a detect.models.classifiers.ImageClassifier with a new head for the config's task.
The metadata is what the config checks at load (detect.config: trainable layers, feature
levels, minimum input size) and what a listing shows.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

from torch import nn
from torchvision.models import densenet121, efficientnet_b0, inception_v3, resnet18, resnet50, vgg16_bn
from torchvision.models.detection import (
    FasterRCNN,
    fasterrcnn_mobilenet_v3_large_fpn,
    fasterrcnn_resnet50_fpn,
    fasterrcnn_resnet50_fpn_v2,
)

from data_prep.errors import ConfigError
from detect.models.backbones import (
    NUM_DETECTOR_CLASSES,
    convert_to_frozen_batchnorm,
    fasterrcnn_resnet18_fpn,
    freeze_mobilenet_stages,
    freeze_resnet_layers,
)
from detect.models.classifiers import basic_cnn, build_classifier_network
from detect.models.efficientnet_lite import (
    LITE_VARIANTS,
    TRAINABLE_GROUPS,
    efficientnet_lite0,
    efficientnet_lite1,
    efficientnet_lite2,
    fasterrcnn_efficientnet_lite0_fpn,
    freeze_lite_batchnorm,
    freeze_lite_stages,
)
from detect.recipe import shown

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
    freezes the backbone's BatchNorm when the backbone is pretrained, and `freeze_batchnorm` how
    (a backbone with activations fused into its BatchNorm keeps them); `image_mean`/`image_std`
    the per-channel normalisation of the [0, 1] input. `imagenet_package`: the Python package
    (the `pretrained` extra) whose file holds the backbone's ImageNet weights, read with no
    download; "" = torchvision downloads `imagenet_weights`.
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
    kind: str = "detector"
    min_image_size_px: int = 32  # data.image_size_px is also a multiple of 32 (the FPN's coarsest stride)
    freeze_batchnorm: Callable[[nn.Module], nn.Module] = convert_to_frozen_batchnorm
    imagenet_package: str = ""


@dataclass(frozen=True)
class ClassifierSpec:
    """One classifier entry of MODELS: a torchvision classification builder and what goes with it.

    `builder(weights=None | enum, **builder_kwargs)` makes the network with ImageNet's 1000-class
    head; each nn.Linear at `head_paths` is then replaced by a fresh one for the task's outputs
    (those are what trains while the backbone is frozen: train.freeze_backbone_epochs).
    `imagenet_weights`: the torchvision enum name for model.weights=imagenet ("" = none exist).
    `min_image_size_px`: the smallest input the network takes (torchvision's weights metadata;
    inception_v3's auxiliary head needs more: AUX_LOGITS_MIN_IMAGE_SIZE_PX). `cam_layer_path`:
    the last convolutional block (Grad-CAM). `xrv_model`: the torchxrayvision class whose
    CXR-pretrained weights fit this network (model.weights=xrv:NAME), "" = none.
    `imagenet_package`: as for ModelSpec, the package whose file holds the ImageNet weights
    (no download); `imagenet_weights` then names its pip distribution.
    """

    builder: Callable[..., nn.Module]
    description: str
    default_image_size_px: int
    min_image_size_px: int
    imagenet_weights: str
    head_paths: tuple[str, ...]
    cam_layer_path: str
    note: str
    image_mean: tuple[float, float, float] = IMAGENET_MEAN
    image_std: tuple[float, float, float] = IMAGENET_STD
    builder_kwargs: tuple[tuple[str, object], ...] = ()
    xrv_model: str = ""
    kind: str = "classifier"
    imagenet_package: str = ""

    @property
    def backbone(self) -> str:
        """The network's torchvision name (what a model card shows, as for the detectors' backbone)."""
        return self.builder.__name__


# inception_v3's auxiliary classifier pools Mixed_6e (17 x 17 at 299 px) with a 5 x 5 window,
# stride 3, then a 5 x 5 convolution: below 299 px that map is too small (measured with
# torchvision 0.29). Smaller inputs (down to 75 px) train without the auxiliary head.
AUX_LOGITS_MIN_IMAGE_SIZE_PX = 299

# Google's Inception weights expect inputs in [-1, 1]; torchvision's transform_input=True
# converts ImageNet-normalised input to that. We pass transform_input=False and normalise to
# [-1, 1] ourselves, so a model built with weights=none (a checkpoint rebuilt for inference)
# computes exactly what the one built from ImageNet weights trained with.
INCEPTION_MEAN: tuple[float, float, float] = (0.5, 0.5, 0.5)
INCEPTION_STD: tuple[float, float, float] = (0.5, 0.5, 0.5)

CLASSIFIERS: dict[str, ClassifierSpec] = {
    "basic_cnn": ClassifierSpec(
        builder=basic_cnn,
        description="three conv + pool blocks and a dense head (the Kermany notebooks' baseline)",
        default_image_size_px=128,
        min_image_size_px=8,
        imagenet_weights="",
        head_paths=("classifier.5",),
        cam_layer_path="features.2",
        note="baseline from scratch; no pretrained weights",
        image_mean=(0.5, 0.5, 0.5),
        image_std=(0.5, 0.5, 0.5),
    ),
    "resnet18": ClassifierSpec(
        builder=resnet18,
        description="ResNet-18 (torchvision)",
        default_image_size_px=224,
        min_image_size_px=32,
        imagenet_weights="ResNet18_Weights.IMAGENET1K_V1",
        head_paths=("fc",),
        cam_layer_path="layer4",
        note="CPU choice: plain convolutions and BatchNorm learn fast from scratch",
    ),
    "resnet50": ClassifierSpec(
        builder=resnet50,
        description="ResNet-50 (torchvision)",
        default_image_size_px=224,
        min_image_size_px=32,
        imagenet_weights="ResNet50_Weights.IMAGENET1K_V1",
        head_paths=("fc",),
        cam_layer_path="layer4",
        note="the usual transfer-learning workhorse",
        xrv_model="ResNet",
    ),
    "vgg16_bn": ClassifierSpec(
        builder=vgg16_bn,
        description="VGG-16 with BatchNorm (torchvision)",
        default_image_size_px=224,
        min_image_size_px=32,
        imagenet_weights="VGG16_BN_Weights.IMAGENET1K_V1",
        head_paths=("classifier.6",),
        cam_layer_path="features.42",
        note="Kermany transfer-learning papers' VGG16; heavy (102M of its parameters are dense layers)",
    ),
    "inception_v3": ClassifierSpec(
        builder=inception_v3,
        description="Inception v3 (torchvision), auxiliary logits in training at >= 299 px",
        default_image_size_px=299,
        min_image_size_px=75,
        imagenet_weights="Inception_V3_Weights.IMAGENET1K_V1",
        head_paths=("fc", "AuxLogits.fc"),
        cam_layer_path="Mixed_7c",
        note="Kermany et al. (2018)'s network; 299 px",
        image_mean=INCEPTION_MEAN,
        image_std=INCEPTION_STD,
        builder_kwargs=(("aux_logits", True), ("transform_input", False), ("init_weights", True)),
    ),
    "densenet121": ClassifierSpec(
        builder=densenet121,
        description="DenseNet-121 (torchvision)",
        default_image_size_px=224,
        min_image_size_px=32,
        imagenet_weights="DenseNet121_Weights.IMAGENET1K_V1",
        head_paths=("classifier",),
        cam_layer_path="features",
        note="CheXNet's network; torchxrayvision weights fit it (xrv:densenet121-res224-all)",
        xrv_model="DenseNet",
    ),
    "efficientnet_b0": ClassifierSpec(
        builder=efficientnet_b0,
        description="EfficientNet-B0 (torchvision)",
        default_image_size_px=224,
        min_image_size_px=32,
        imagenet_weights="EfficientNet_B0_Weights.IMAGENET1K_V1",
        head_paths=("classifier.1",),
        cam_layer_path="features",
        note="fewest FLOPs of torchvision's pretrained entries (its weights download at run time)",
    ),
    **{
        name: ClassifierSpec(
            builder=builder,
            description=f"EfficientNet-Lite{name[-1]} (timm's TensorFlow-exact definition)",
            default_image_size_px=LITE_VARIANTS[name].native_image_size_px,
            min_image_size_px=32,
            imagenet_weights=LITE_VARIANTS[name].pip_package,
            imagenet_package=LITE_VARIANTS[name].weights_module,
            head_paths=("classifier",),
            cam_layer_path="bn2",
            note=note,
            image_mean=INCEPTION_MEAN,  # TensorFlow's Lite recipe scales inputs to [-1, 1]
            image_std=INCEPTION_STD,
        )
        for name, builder, note in (
            (
                "efficientnet_lite0",
                efficientnet_lite0,
                "CPU transfer-learning choice: ImageNet weights installed with the pretrained extra, no download",
            ),
            ("efficientnet_lite1", efficientnet_lite1, "ImageNet weights from the pretrained extra; 240 px"),
            ("efficientnet_lite2", efficientnet_lite2, "ImageNet weights from the pretrained extra; 260 px"),
        )
    },
}

DETECTORS: dict[str, ModelSpec] = {
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
    "efficientnet_lite0_fpn": ModelSpec(
        builder=fasterrcnn_efficientnet_lite0_fpn,
        description="Faster R-CNN, EfficientNet-Lite0 FPN (128 channels, strides 8-64), timm's network in torchvision's parts",
        default_image_size_px=256,
        backbone="efficientnet_lite0",
        trainable_layers_max=len(TRAINABLE_GROUPS),
        feature_levels=4,
        imagenet_weights=LITE_VARIANTS["efficientnet_lite0"].pip_package,
        note="CPU transfer-learning choice: ImageNet backbone installed with the pretrained extra, no download",
        frozen_batchnorm_when_pretrained=True,
        freeze_backbone=freeze_lite_stages,
        image_mean=INCEPTION_MEAN,
        image_std=INCEPTION_STD,
        freeze_batchnorm=freeze_lite_batchnorm,
        imagenet_package=LITE_VARIANTS["efficientnet_lite0"].weights_module,
    ),
}
MODELS: dict[str, ModelSpec | ClassifierSpec] = {**DETECTORS, **CLASSIFIERS}


def get_model_spec(name: str) -> ModelSpec | ClassifierSpec:
    """MODELS[name], or a ConfigError listing the available names."""
    try:
        return MODELS[name]
    except KeyError:
        raise ConfigError(
            f"config key 'model.name' is {shown(name)}, which is not a known model; available models: {', '.join(MODELS)}"
        ) from None


def is_classifier(name: str) -> bool:
    """True for a classifier entry of MODELS (a ConfigError for an unknown name)."""
    return get_model_spec(name).kind == "classifier"


@functools.cache
def count_parameters(name: str, num_outputs: int = 1) -> int:
    """Parameters of MODELS[name] as built with weights=None: a classifier with `num_outputs`
    logits (1 = a binary task, 3 = a three-class one; inception_v3 with its auxiliary head),
    a detector as torchvision builds it for our 2 classes (without the image-level head)."""
    spec = get_model_spec(name)
    if isinstance(spec, ClassifierSpec):
        network = build_classifier_network(
            spec.builder, spec.head_paths, num_outputs, extra_kwargs=dict(spec.builder_kwargs)
        )
    else:
        network = spec.builder(weights=None, weights_backbone=None, num_classes=NUM_DETECTOR_CLASSES)
    return sum(p.numel() for p in network.parameters())
