"""detect.progress.ProgressLog: the progress lines infer, eval and train print without a terminal."""

from __future__ import annotations

import math

import pytest

from detect import progress as progress_module
from detect.progress import ProgressLog


@pytest.fixture
def clock(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: now[0])
    return now


def test_a_line_every_n_items_and_at_the_end(clock):
    lines = []
    shown = ProgressLog(5, lines.append, tty=False, desc="infer", every=2)
    for k in range(5):
        clock[0] += 1.0
        shown.update(failed=(k == 3))
    assert lines == [
        "infer: 2/5 images (40.0%), 1.0 images/s, ETA 00:00:03, 0 failed",
        "infer: 4/5 images (80.0%), 1.0 images/s, ETA 00:00:01, 1 failed",
        "infer: 5/5 images (100.0%), 1.0 images/s, ETA 00:00:00, 1 failed",
    ]


def test_a_line_every_30_seconds_between_counts(clock):
    lines = []
    shown = ProgressLog(100, lines.append, tty=False, desc="epoch 1/3", unit="step", every=50, count_failures=False)
    clock[0] += 31.0
    shown.update(note="loss 0.5000")
    clock[0] += 1.0
    shown.update()
    assert lines == ["epoch 1/3: 1/100 steps (1.0%), 0.0 steps/s, ETA 00:51:09, loss 0.5000"]


def test_no_step_lines_when_turned_off(clock):
    lines = []
    shown = ProgressLog(10, lines.append, tty=False, desc="epoch 1/1", unit="step", every=0, every_seconds=math.inf)
    for _ in range(9):
        clock[0] += 60.0
        shown.update()
    assert lines == []
