"""detect.sweep.observations: the sentences match a small table worked by hand."""

from __future__ import annotations

import math

import pytest

from detect.sweep.observations import (
    interaction_observation,
    key_observations,
    observations,
    paired_differences,
    summarize_key,
)

# a 2 x 2 grid; val_f1 of each run
TABLE = [
    {"params": {"train.lr": "0.01", "train.batch_size": "8"}, "value": 0.50},
    {"params": {"train.lr": "0.02", "train.batch_size": "8"}, "value": 0.60},
    {"params": {"train.lr": "0.01", "train.batch_size": "16"}, "value": 0.55},
    {"params": {"train.lr": "0.02", "train.batch_size": "16"}, "value": 0.59},
]
AXES = [("train.lr", ("0.01", "0.02")), ("train.batch_size", ("8", "16"))]


def test_per_value_means_and_spreads():
    # lr 0.01: (0.50 + 0.55) / 2, std 0.025; lr 0.02: (0.60 + 0.59) / 2, std 0.005
    summary = summarize_key(TABLE, "train.lr", ("0.01", "0.02"))
    assert [s[0] for s in summary] == ["0.01", "0.02"] and [s[3] for s in summary] == [2, 2]
    assert summary[0][1] == pytest.approx(0.525) and summary[0][2] == pytest.approx(0.025)
    assert summary[1][1] == pytest.approx(0.595) and summary[1][2] == pytest.approx(0.005)


def test_paired_differences_hold_the_other_keys_fixed():
    # lr 0.02 - lr 0.01 at batch 8: 0.10, at batch 16: 0.04
    assert paired_differences(TABLE, "train.lr", "0.02", "0.01") == pytest.approx([0.10, 0.04])
    # batch 16 - batch 8 at lr 0.01: +0.05, at lr 0.02: -0.01
    assert paired_differences(TABLE, "train.batch_size", "16", "8") == pytest.approx([0.05, -0.01])


def test_the_sentences_say_what_the_numbers_say():
    lines = observations(TABLE, AXES, "val_f1", "max")
    assert lines == [
        "best run: train.lr=0.02, train.batch_size=8 with val_f1 0.600 (4 of 4 runs finished with a value)",
        "train.lr 0.02 beat 0.01 by 0.070 val_f1 on average (2 of 2 pairs)",  # (0.10 + 0.04) / 2
        "train.batch_size 16 beat 8 by 0.020 val_f1 on average (1 of 2 pairs)",  # (0.05 - 0.01) / 2
        "keys by the spread of their values' mean val_f1, largest first: train.lr (0.070), train.batch_size (0.020)",
        # the best lr is 0.02 at both batch sizes, but the best batch size flips with lr: 16 at lr 0.01 (0.55 - 0.50),
        # 8 at lr 0.02 (0.60 - 0.59)
        "train.batch_size and train.lr interact: the best train.batch_size depends on train.lr: "
        "16 is best with train.lr=0.01 (by 0.050 val_f1); 8 is best with train.lr=0.02 (by 0.010 val_f1)",
    ]


def test_no_interaction_is_reported_when_one_value_wins_under_every_other_value():
    additive = [
        {"params": {"a": a, "b": b}, "value": va + vb}
        for a, va in (("x", 0.0), ("y", 0.1))
        for b, vb in (("p", 0.0), ("q", 0.3))
    ]
    axes = [("a", ("x", "y")), ("b", ("p", "q"))]
    assert interaction_observation(additive, "a", ("x", "y"), "b", ("p", "q"), "m", "max") is None
    assert interaction_observation(additive, "b", ("p", "q"), "a", ("x", "y"), "m", "max") is None
    assert not any("interact" in line for line in observations(additive, axes, "m", "max"))


def test_an_interaction_under_a_loss_metric_and_a_third_key_averaged_over():
    # val_loss (lower is better); key c only adds noise-free offsets, averaged over within each value of b
    rows = [
        {"params": {"a": a, "b": b, "c": c}, "value": base + dc}
        for (a, b, base) in (("x", "p", 0.2), ("y", "p", 0.5), ("x", "q", 0.6), ("y", "q", 0.4))
        for c, dc in (("u", 0.0), ("v", 0.1))
    ]
    # b=p: a=x mean 0.25 vs y 0.55 -> x by 0.300; b=q: y 0.45 vs x 0.65 -> y by 0.200
    assert interaction_observation(rows, "a", ("x", "y"), "b", ("p", "q"), "val_loss", "min") == (
        "a and b interact: the best a depends on b: x is best with b=p (by 0.300 val_loss); y is best with b=q "
        "(by 0.200 val_loss)"
    )
    # a value of b where only one value of a has a number: nothing can be said
    partial = [
        r if not (r["params"]["b"] == "q" and r["params"]["a"] == "x") else {**r, "value": math.nan} for r in rows
    ]
    assert interaction_observation(partial, "a", ("x", "y"), "b", ("p", "q"), "val_loss", "min") is None


def test_lower_is_better_for_a_loss():
    losses = [{**row, "value": 1.0 - row["value"]} for row in TABLE]
    assert key_observations(losses, "train.lr", ("0.01", "0.02"), "val_loss", "min") == [
        "train.lr 0.02 beat 0.01 by 0.070 lower val_loss on average (2 of 2 pairs)"
    ]


def test_failed_runs_drop_out_of_their_pairs():
    table = [dict(row) for row in TABLE]
    table[3] = {**table[3], "value": math.nan}  # lr 0.02, batch 16 diverged
    lines = key_observations(table, "train.lr", ("0.01", "0.02"), "val_f1", "max")
    assert lines == ["train.lr 0.02 beat 0.01 by 0.100 val_f1 on average (1 of 1 pair)"]
    assert observations([{**r, "value": math.nan} for r in TABLE], AXES, "val_f1", "max") == [
        "no run has a finite val_f1"
    ]


def test_equal_values_tie():
    flat = [{**row, "value": 0.5} for row in TABLE]
    assert key_observations(flat, "train.lr", ("0.01", "0.02"), "val_f1", "max") == [
        "train.lr 0.01 and 0.02 tied on val_f1 (2 pairs)"
    ]
