"""detect.config's upper bounds: a 100 KB run name, train.epochs=1e23 and numbers beyond any
real run are one ConfigError line, not a run folder the file system refuses or a run that never ends."""

from __future__ import annotations

import pytest

from data_prep.errors import ConfigError
from detect.config import MAX_NAME_CHARS, config_from_dict


@pytest.mark.parametrize(
    "override, message",
    [
        ("name=" + "r" * 100_000, r"config key 'name' is 100,000 characters long; .* at most 100$"),
        ("train.epochs=100000000000000000000000", r"config key 'train.epochs' is too large \(more than 18 digits\)"),
        ("train.epochs=1000000", r"config key 'train.epochs' is 1000000; expected at most 100,000$"),
        ("train.batch_size=10000000", r"config key 'train.batch_size' is 10000000; expected at most 65,536$"),
        ("train.step_epochs=[8, 1000000]", r"config key 'train.step_epochs' has an epoch over 100,000$"),
        ("train.lr=1" + "0" * 400, r"config key 'train.lr' is too large \(more than 300 digits\)"),
        ("seed=" + "9" * 30, r"config key 'seed' is too large"),
    ],
)
def test_values_beyond_any_real_run_are_refused_in_one_line(override, message):
    with pytest.raises(ConfigError, match=message) as caught:
        config_from_dict({}, [override])
    assert len(str(caught.value)) < 300


def test_the_bounds_leave_real_values_alone():
    cfg = config_from_dict(
        {}, ["name=" + "r" * MAX_NAME_CHARS, "train.epochs=300", "train.batch_size=512", "seed=4294967295"]
    )
    assert cfg.train.epochs == 300 and len(cfg.name) == MAX_NAME_CHARS
