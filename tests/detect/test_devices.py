"""detect.devices: one device resolver for train.device and --device, one autocast rule."""

import pytest
import torch

from data_prep.errors import ConfigError
from detect.devices import autocast, resolve_device


def test_device_resolution():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    assert resolve_device("auto") == (torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu"))
    with pytest.raises(ConfigError, match=r"^config key 'train\.device' is 'tpu'; use auto, cpu, cuda or cuda:N$"):
        resolve_device("tpu", what="config key 'train.device'")
    with pytest.raises(ConfigError, match=r"^--device is 'gpu'; use auto, cpu, cuda or cuda:N$"):
        resolve_device("gpu", what="--device")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_cuda_names_the_key():
    with pytest.raises(
        ConfigError, match=r"^--device is 'cuda:1' but CUDA is not available on this machine; use auto or cpu$"
    ):
        resolve_device("cuda:1", what="--device")


def test_autocast_is_a_no_op_on_cpu():
    layer = torch.nn.Linear(4, 4)
    with autocast(torch.device("cpu"), enabled=True):
        out = layer(torch.ones(1, 4))
    assert out.dtype == torch.float32
