"""What the config checks about each model of the registry, without importing torch.

Reading a recipe (detect.config) must not import torch or torchvision, so the facts the config
checks at load live here as a plain table, one line per registry entry:

    facts = get_model_facts(cfg.model.name)   # a ConfigError listing MODEL_FACTS when unknown
    facts.kind                                # "detector" | "classifier"
    is_classifier(name)

detect.models.registry holds the builders (torch); tests/detect/test_model_facts.py checks that
the two tables name the same models with the same facts. A new registry entry needs one line
here: `detector(trainable_layers_max, feature_levels)` or `classifier(min_image_size_px, ...)`.
"""

from __future__ import annotations

from dataclasses import dataclass

from data_prep.errors import ConfigError

# train.loss values (detect.models.losses implements each)
LOSSES: tuple[str, ...] = ("ce", "weighted_ce", "focal")


@dataclass(frozen=True)
class ModelFacts:
    """`kind`: detector or classifier. `min_image_size_px`: the smallest data.image_size_px the
    network takes. Detectors: `trainable_layers_max` bounds model.trainable_backbone_layers and
    `feature_levels` is the number of FPN maps (one model.anchor_sizes_px entry each).
    `imagenet_weights`: model.weights=imagenet exists; `xrv_weights`: model.weights=xrv:NAME fits."""

    kind: str
    min_image_size_px: int
    imagenet_weights: bool
    trainable_layers_max: int = 0
    feature_levels: int = 0
    xrv_weights: bool = False


def detector(
    trainable_layers_max: int, feature_levels: int, *, imagenet_weights: bool = True, min_image_size_px: int = 32
) -> ModelFacts:
    """A Faster R-CNN entry (data.image_size_px is also a multiple of 32, the FPN's coarsest stride)."""
    return ModelFacts("detector", min_image_size_px, imagenet_weights, trainable_layers_max, feature_levels)


def classifier(min_image_size_px: int, *, imagenet_weights: bool = True, xrv_weights: bool = False) -> ModelFacts:
    """A whole-image classifier entry."""
    return ModelFacts("classifier", min_image_size_px, imagenet_weights, xrv_weights=xrv_weights)


MODEL_FACTS: dict[str, ModelFacts] = {
    # detectors: trainable_layers_max, feature_levels
    "resnet50_fpn_v2": detector(5, 5),
    "resnet50_fpn": detector(5, 5),
    "resnet18_fpn": detector(5, 4),
    "mobilenet_v3_large_fpn": detector(6, 3),
    "efficientnet_lite0_fpn": detector(5, 4),
    # classifiers: min_image_size_px
    "basic_cnn": classifier(8, imagenet_weights=False),
    "resnet18": classifier(32),
    "resnet50": classifier(32, xrv_weights=True),
    "vgg16_bn": classifier(32),
    "inception_v3": classifier(75),
    "densenet121": classifier(32, xrv_weights=True),
    "efficientnet_b0": classifier(32),
    "efficientnet_lite0": classifier(32),
    "efficientnet_lite1": classifier(32),
    "efficientnet_lite2": classifier(32),
}


def get_model_facts(name: str) -> ModelFacts:
    """MODEL_FACTS[name], or a ConfigError listing the available names."""
    try:
        return MODEL_FACTS[name]
    except KeyError:
        raise ConfigError(
            f"config key 'model.name' is '{name}', which is not a known model; available models: {', '.join(MODEL_FACTS)}"
        ) from None


def is_classifier(name: str) -> bool:
    """True for a classifier (a ConfigError for an unknown name)."""
    return get_model_facts(name).kind == "classifier"
