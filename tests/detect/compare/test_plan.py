"""detect.compare.plan: the model list, one config and run folder per model, the budget."""

from __future__ import annotations

import pytest

from data_prep.errors import ConfigError
from detect.compare.plan import parse_model_list, plan_compare
from tests.detect.train_fixtures import tiny_config


def test_model_list_keeps_order_and_drops_repeats():
    assert parse_model_list(" resnet18_fpn, mobilenet_v3_large_fpn,resnet18_fpn ") == [
        "resnet18_fpn",
        "mobilenet_v3_large_fpn",
    ]


@pytest.mark.parametrize(
    "text, message",
    [
        ("resnet18_fpn,nope", r"^--models: 'nope' is not a known model; available models: .*resnet18_fpn"),
        (" , ", r"^--models ' , ' names no model"),
    ],
)
def test_bad_model_lists_are_named(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_model_list(text)


def test_every_model_gets_the_same_recipe_and_budget(tmp_path):
    plan = plan_compare(
        ["mobilenet_v3_large_fpn", "resnet18_fpn"],
        tiny_config("model.trainable_backbone_layers=5"),
        tmp_path,
        epochs=3,
        minutes_per_model=1.5,
        overrides=["train.lr=0.005"],
    )
    first, second = plan.models
    assert (first.model, second.model) == ("mobilenet_v3_large_fpn", "resnet18_fpn")
    assert first.run_dir == tmp_path / "runs" / "mobilenet_v3_large_fpn"
    for model in plan.models:
        assert model.config.model.name == model.model
        assert (model.config.train.epochs, model.config.train.max_minutes, model.config.train.lr) == (3, 1.5, 0.005)
        assert model.config.seed == first.config.seed and model.config.data == first.config.data


def test_a_key_that_does_not_fit_a_model_names_it(tmp_path):
    with pytest.raises(ConfigError, match=r"^--models resnet18_fpn: config key 'model.trainable_backbone_layers' is 6"):
        plan_compare(["mobilenet_v3_large_fpn", "resnet18_fpn"], tiny_config(), tmp_path)


@pytest.mark.parametrize(
    "budget, message",
    [({"epochs": 0}, r"--epochs must be >= 1"), ({"minutes_per_model": 0.0}, r"--minutes-per-model must be > 0")],
)
def test_bad_budgets(tmp_path, budget, message):
    with pytest.raises(ConfigError, match=message):
        plan_compare(["resnet18_fpn"], tiny_config("model.trainable_backbone_layers=5"), tmp_path, **budget)


def test_a_classifier_takes_the_recipes_task_or_the_binary_task_of_the_data(tmp_path):
    from tests.detect.train_fixtures import make_kermany

    data = make_kermany(tmp_path / "kermany", n_images=12, prepare=False)
    recipe = tiny_config("model.trainable_backbone_layers=5", "train.monitor=val_f1")
    plan = plan_compare(["basic_cnn", "mobilenet_v3_large_fpn"], recipe, tmp_path / "out", data_dirs=[data])
    assert [m.config.task for m in plan.models] == ["kermany2", "detection"] and plan.task == "detection"
    three = tiny_config(
        "model.name=resnet18", "model.trainable_backbone_layers=5", "task=kermany3", "train.monitor=val_f1"
    )
    plan = plan_compare(["basic_cnn", "mobilenet_v3_large_fpn"], three, tmp_path / "out", data_dirs=[data])
    assert [m.config.task for m in plan.models] == ["kermany3", "detection"] and plan.task == "kermany3"


def test_a_row_may_name_its_starting_weights(tmp_path):
    rows = parse_model_list(
        "efficientnet_lite0:imagenet, efficientnet_lite0:none,basic_cnn,densenet121:xrv:densenet121-res224-all"
    )
    assert rows == [
        "efficientnet_lite0:imagenet",
        "efficientnet_lite0:none",
        "basic_cnn",
        "densenet121:xrv:densenet121-res224-all",
    ]
    recipe = tiny_config(
        "model.name=resnet18",
        "model.trainable_backbone_layers=5",
        "task=kermany2",
        "train.monitor=val_f1",
        "model.weights=none",
    )
    plan = plan_compare(rows[:3], recipe, tmp_path)
    assert [(m.model_name, m.config.model.weights) for m in plan.models] == [
        ("efficientnet_lite0", "imagenet"),
        ("efficientnet_lite0", "none"),
        ("basic_cnn", "none"),
    ]
    assert [m.run_dir.name for m in plan.models] == [
        "efficientnet_lite0-imagenet",
        "efficientnet_lite0-none",
        "basic_cnn",
    ]


@pytest.mark.parametrize(
    "text, message",
    [
        ("efficientnet_lite0:", r"^--models: 'efficientnet_lite0:' has an empty weights choice after ':'"),
        ("nope:imagenet", r"^--models: 'nope' is not a known model"),
    ],
)
def test_bad_weight_rows_are_named(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_model_list(text)


def test_a_weights_choice_the_model_cannot_take_names_the_row(tmp_path):
    with pytest.raises(ConfigError, match=r"^--models basic_cnn:imagenet: .*'basic_cnn' has no ImageNet weights"):
        plan_compare(
            ["basic_cnn:imagenet"],
            tiny_config(
                "model.name=resnet18", "model.trainable_backbone_layers=5", "task=kermany2", "train.monitor=val_f1"
            ),
            tmp_path,
        )
