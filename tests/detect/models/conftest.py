"""Shared by the model tests: the suite's CPU budget for torch."""

import pytest
import torch


@pytest.fixture(scope="module", autouse=True)
def two_threads():
    """Two intra-op threads for each model test module (the suite's CPU budget), restored afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)
