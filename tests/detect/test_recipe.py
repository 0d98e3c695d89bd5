"""detect.recipe: hostile recipes (an alias bomb, 20,000-deep nesting, a 100 MB file, huge values)
and hostile configs stored in checkpoints end in one ConfigError / CheckpointError line, fast."""

from __future__ import annotations

import time

import pytest
from typer.testing import CliRunner

from cli import app
from data_prep.errors import CheckpointError, ConfigError
from detect.config import config_from_dict, load_config
from detect.models.checkpoint import config_of_checkpoint
from detect.recipe import MAX_NODES, check_config_shape, parse_override, shown

ALIAS_BOMB = (
    "\n".join(
        ["name: bomb", "a: &a [x, x, x, x, x, x, x, x, x]"]
        + [
            f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
            f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
            f"*{chr(97 + i)}]"
            for i in range(8)
        ]
        + ["train:", "  milestones: *i"]
    )
    + "\n"
)


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and len(text) < 400, text[:500]
    return text


def test_an_alias_bomb_is_one_line_without_expanding_it(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(ALIAS_BOMB)
    assert path.stat().st_size < 1200
    started = time.monotonic()
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert time.monotonic() - started < 5
    assert _one_line(caught.value).startswith(f"{path}: the recipe holds more than {MAX_NODES:,} values")


@pytest.mark.parametrize("flow", [True, False])
def test_nesting_20000_deep_is_one_line_not_a_recursion_error(tmp_path, flow):
    path = tmp_path / "deep.yaml"
    depth = 20_000
    if flow:
        path.write_text("name: deep\ntrain:\n  milestones: " + "[" * depth + "]" * depth + "\n")
    else:
        path.write_text("name: deep\nx:\n" + "".join("  " * i + "- \n" for i in range(1, 300)))
    started = time.monotonic()
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert time.monotonic() - started < 5
    assert "nested deeper than 16 levels" in _one_line(caught.value)


def test_a_100_mb_recipe_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "huge.yaml"
    with open(path, "wb") as handle:
        handle.write(b"name: huge\nunknown_key: 1\n")
        handle.truncate(100 << 20)  # sparse: 100 MB of NULs after the keys
    started = time.monotonic()
    with pytest.raises(ConfigError, match=rf"^{path}: larger than 1 MiB; a recipe holds only the keys it changes"):
        load_config(path)
    assert time.monotonic() - started < 2


def test_the_cli_prints_one_line_for_each(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text("name: deep\ntrain:\n  milestones: " + "[" * 20_000 + "]" * 20_000 + "\n")
    result = CliRunner().invoke(app, ["train", "--config", str(path), "--data", str(tmp_path), "--print-config"])
    assert result.exit_code == 2, result.output[-2000:]
    assert result.output.strip().splitlines() == [
        f"error: {path}: line 3: nested deeper than 16 levels; a recipe is a mapping of sections of values"
    ]


@pytest.mark.parametrize(
    "override", ["train.optimizer=" + "x" * 100_000, "x" * 100_000 + "=1", "train.milestones=[" + "1, " * 12_000 + "1]"]
)
def test_every_message_shows_a_bounded_value(override):
    with pytest.raises(ConfigError) as caught:
        config_from_dict({}, [override])
    _one_line(caught.value)


def test_a_deep_set_value_is_one_line():
    with pytest.raises(ConfigError, match=r"^override 'train.milestones=\[\[\[.*nested deeper than 16 levels"):
        config_from_dict({}, ["train.milestones=" + "[" * 20_000 + "]" * 20_000])
    assert parse_override("train.lr=0.01") == ("train.lr", 0.01)


def test_a_checkpoint_whose_stored_config_is_huge_or_deep_is_refused():
    deep: list = []
    for _ in range(20_000):
        deep = [deep]
    shared = ["x"] * 10
    for _ in range(8):
        shared = [shared] * 10  # 10^9 leaves through shared references
    for config in (
        {"name": "x", "train": {"milestones": deep}},
        {"name": "x", "train": {"milestones": shared}},
        {"name": "y" * (2 << 20)},
    ):
        with pytest.raises(CheckpointError) as caught:
            config_of_checkpoint({"config": config}, "best.pt")
        assert _one_line(caught.value).startswith("best.pt: stored config is not valid for this detect version (")


def test_shown_bounds_any_value():
    assert shown("abc") == "'abc'"
    assert len(shown("x" * 10**6)) <= 110
    cyclic: list = []
    cyclic.append(cyclic)
    assert len(shown(cyclic)) < 110
    check_config_shape({"a": [1, 2, {"b": "c"}]})
