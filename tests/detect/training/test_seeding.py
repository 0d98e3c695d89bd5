"""detect.training.seeding: RNG states survive a checkpoint, so --resume continues the same streams."""

import random

import numpy as np
import torch

from detect.training.seeding import capture_rng_states, restore_rng_states


def test_rng_states_round_trip():
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    states = capture_rng_states()
    expected = (random.random(), np.random.rand(), torch.rand(1).item(), np.random.randn())
    random.seed(99), np.random.seed(99), torch.manual_seed(99)
    restore_rng_states(states)
    assert (random.random(), np.random.rand(), torch.rand(1).item(), np.random.randn()) == expected


def test_rng_states_load_with_weights_only(tmp_path):
    """Checkpoints load with torch.load(weights_only=True): the states must be plain values and tensors."""
    torch.save(capture_rng_states(), tmp_path / "rng.pt")
    states = torch.load(tmp_path / "rng.pt", weights_only=True)
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(5), np.random.seed(5), torch.manual_seed(5)
    restore_rng_states(states)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
