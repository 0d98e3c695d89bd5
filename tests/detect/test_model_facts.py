"""detect.model_facts (what the config checks, torch-free) agrees with the registry (the builders)."""

from __future__ import annotations

import pytest

from data_prep.errors import ConfigError
from detect.model_facts import LOSSES, MODEL_FACTS, get_model_facts, is_classifier
from detect.models import losses, registry


def test_the_two_tables_name_the_same_models():
    assert set(MODEL_FACTS) == set(registry.MODELS), (
        "detect/model_facts.py and detect/models/registry.py must list the same models: "
        f"only in facts {sorted(set(MODEL_FACTS) - set(registry.MODELS))}, "
        f"only in the registry {sorted(set(registry.MODELS) - set(MODEL_FACTS))}"
    )


@pytest.mark.parametrize("name", sorted(registry.MODELS))
def test_each_models_facts_match_its_registry_spec(name):
    spec, facts = registry.MODELS[name], get_model_facts(name)
    assert facts.kind == spec.kind
    assert facts.min_image_size_px == spec.min_image_size_px
    assert facts.imagenet_weights == bool(spec.imagenet_weights)
    if spec.kind == "detector":
        assert (facts.trainable_layers_max, facts.feature_levels) == (spec.trainable_layers_max, spec.feature_levels)
    else:
        assert facts.xrv_weights == bool(spec.xrv_model)
    assert is_classifier(name) == registry.is_classifier(name)


def test_an_unknown_model_lists_the_known_ones():
    with pytest.raises(ConfigError, match=r"'model.name' is 'resnet7'.*available models: resnet50_fpn_v2, "):
        get_model_facts("resnet7")


def test_the_losses_the_config_accepts_are_the_ones_implemented():
    assert losses.LOSSES is LOSSES
