"""detect.sweep.grid: --grid parsing with typed values, the config's own checks, combinations, run names."""

from __future__ import annotations

import pytest

from data_prep.errors import ConfigError
from detect.config import Config
from detect.sweep.grid import check_grid, combinations, parse_grid, run_name, split_values


def test_values_are_typed_as_set_types_them():
    axis = parse_grid("train.lr=0.01,0.02")
    assert axis.key == "train.lr" and axis.texts == ("0.01", "0.02") and axis.values == (0.01, 0.02)
    assert parse_grid("train.batch_size=8, 16").values == (8, 16)
    assert parse_grid("train.optimizer=sgd,adamw").values == ("sgd", "adamw")
    assert parse_grid("data.augment.clahe=true,false").values == (True, False)


def test_commas_inside_brackets_stay_with_their_list():
    assert split_values("[16,32,64,128],[32,64,128,256]") == ["[16,32,64,128]", "[32,64,128,256]"]
    axis = parse_grid("model.anchor_sizes_px=[16,32,64,128],[32,64,128,256]")
    assert axis.values == ([16, 32, 64, 128], [32, 64, 128, 256])


@pytest.mark.parametrize(
    "text, message",
    [
        ("train.lr", r"^--grid 'train.lr' must look like key=value1,value2"),
        ("=0.1,0.2", r"^--grid '=0.1,0.2' has an empty key$"),
        ("train.lr=", r"^--grid 'train.lr=' has an empty value"),
        ("train.lr=0.1,,0.2", r"^--grid 'train.lr=0.1,,0.2' has an empty value"),
        ("train.lr=0.1,0.1", r"^--grid 'train.lr=0.1,0.1' repeats a value$"),
    ],
)
def test_malformed_grid_options_are_named(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_grid(text)


def test_unknown_keys_and_bad_values_fail_with_the_configs_own_message():
    with pytest.raises(
        ConfigError,
        match=r"^--grid train.lrate=0.1: unknown config key 'train.lrate' \(did you mean 'train.lr'\?\); valid keys in train: ",
    ):
        check_grid(Config(), [parse_grid("train.lrate=0.1")])
    with pytest.raises(
        ConfigError,
        match=r"^--grid train.optimizer=sgd,adam: config key 'train.optimizer' is 'adam'; choose one of: sgd, adamw$",
    ):
        check_grid(Config(), [parse_grid("train.optimizer=sgd,adam")])
    with pytest.raises(ConfigError, match=r"given twice"):
        check_grid(Config(), [parse_grid("train.lr=0.1"), parse_grid("train.lr=0.2")])


def test_combinations_vary_the_last_axis_fastest_and_name_their_folders():
    axes = [parse_grid("train.lr=0.01,0.02"), parse_grid("train.batch_size=8,16")]
    combos = combinations(axes)
    assert combos == [
        {"train.lr": "0.01", "train.batch_size": "8"},
        {"train.lr": "0.01", "train.batch_size": "16"},
        {"train.lr": "0.02", "train.batch_size": "8"},
        {"train.lr": "0.02", "train.batch_size": "16"},
    ]
    assert run_name(combos[1]) == "train.lr=0.01__train.batch_size=16"
    assert run_name({"model.anchor_sizes_px": "[16, 32]"}) == "model.anchor_sizes_px=16-32"
