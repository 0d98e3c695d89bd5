"""detect.training.optim: schedules with hand-worked numbers, no decay on norms and biases."""

from __future__ import annotations

import math

import pytest
import torch

from detect.config import TrainConfig
from detect.training.optim import build_optimizer, build_scheduler, is_improvement, lr_factor_fn


def test_cosine_schedule_with_warmup_hand_numbers():
    factor = lr_factor_fn(TrainConfig(schedule="cosine", epochs=2, warmup_steps=2), steps_per_epoch=5)
    # warm-up 0.001 -> 1 over 2 steps, then a half cosine over the remaining 8 steps
    assert [factor(s) for s in (0, 1, 2)] == pytest.approx([0.001, 0.5005, 1.0])
    assert factor(6) == pytest.approx(0.5)  # halfway through the cosine
    assert factor(10) == pytest.approx(0.0)


def test_step_schedule_hand_numbers():
    factor = lr_factor_fn(
        TrainConfig(schedule="step", epochs=3, warmup_steps=0, step_epochs=(1, 2), gamma=0.1), steps_per_epoch=5
    )
    assert [factor(s) for s in (0, 4, 5, 9, 10, 14)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])


def test_constant_schedule():
    factor = lr_factor_fn(TrainConfig(schedule="constant", warmup_steps=100), steps_per_epoch=5)
    assert {factor(s) for s in (0, 50, 500)} == {1.0}


def test_plateau_schedule_lowers_lr_when_the_metric_stalls():
    optimizer = build_optimizer(torch.nn.Linear(2, 2), TrainConfig(optimizer="sgd", lr=0.1))
    scheduler = build_scheduler(optimizer, TrainConfig(schedule="plateau", plateau_patience=1, gamma=0.5), 10, "max")
    for value in (0.5, 0.6, 0.6):
        scheduler.step(value)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1)  # one stalled evaluation: within patience
    scheduler.step(0.6)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.05, 0.05])


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_no_weight_decay_on_norms_and_biases(name):
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(), torch.nn.LazyLinear(2)
    )
    model(torch.zeros(1, 1, 5, 5))
    optimizer = build_optimizer(model, TrainConfig(optimizer=name, lr=0.1, weight_decay=0.01))
    expected = torch.optim.SGD if name == "sgd" else torch.optim.AdamW
    assert isinstance(optimizer, expected)
    decayed, plain = optimizer.param_groups
    assert decayed["weight_decay"] == 0.01 and plain["weight_decay"] == 0.0
    assert sorted(p.ndim for p in decayed["params"]) == [2, 4]  # conv and linear weights
    assert len(plain["params"]) == 4  # conv bias, batch-norm weight and bias, linear bias


def test_improvement_rules():
    assert is_improvement(0.5, math.nan, "max") and is_improvement(0.5, 0.4, "max")
    assert not is_improvement(0.4, 0.4, "max") and not is_improvement(math.nan, 0.1, "max")
    assert is_improvement(0.3, 0.4, "min") and not is_improvement(None, 0.4, "min")
