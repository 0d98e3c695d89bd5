"""detect.roi_align: the grid_sample RoIAlign gives torchvision's roi_align values and gradients."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import MultiScaleRoIAlign, roi_align

from detect.models.roi_align import GridSampleMultiScaleRoIAlign, grid_roi_align


def _rois(n: int, batch: int, extent: float, seed: int) -> torch.Tensor:
    """Random RoIs in float64, some reaching past every border of a feature map `extent` pixels wide."""
    generator = torch.Generator().manual_seed(seed)
    index = torch.randint(0, batch, (n,), generator=generator).double()
    corner = torch.rand(n, 2, generator=generator, dtype=torch.float64) * (extent * 1.4) - 0.3 * extent
    size = torch.rand(n, 2, generator=generator, dtype=torch.float64) * extent * 0.8
    return torch.cat([index[:, None], corner, corner + size], dim=1)


@pytest.mark.parametrize("sampling_ratio", [1, 2, 3])
@pytest.mark.parametrize("spatial_scale", [1.0, 0.5, 0.125])
def test_values_and_gradients_equal_torchvision(sampling_ratio, spatial_scale):
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(3, 4, 9, 13, generator=generator, dtype=torch.float64, requires_grad=True)
    rois = _rois(40, 3, 13 / spatial_scale, seed=1)
    expected = roi_align(features, rois, (7, 5), spatial_scale, sampling_ratio)
    got = grid_roi_align(features, rois, (7, 5), spatial_scale, sampling_ratio)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
    weights = torch.randn(expected.shape, generator=generator, dtype=torch.float64)
    (grad_expected,) = torch.autograd.grad((expected * weights).sum(), features)
    (grad_got,) = torch.autograd.grad((got * weights).sum(), features)
    torch.testing.assert_close(grad_got, grad_expected, rtol=0, atol=1e-12)


def test_rois_outside_the_map_give_zero_like_torchvision():
    features = torch.ones(1, 2, 8, 8, dtype=torch.float64)
    far_away = torch.tensor([[0.0, 40.0, 40.0, 60.0, 60.0], [0.0, -30.0, -30.0, -12.0, -12.0]], dtype=torch.float64)
    got = grid_roi_align(features, far_away, (2, 2), 1.0, 2)
    assert torch.count_nonzero(got) == 0
    torch.testing.assert_close(got, roi_align(features, far_away, (2, 2), 1.0, 2))


def test_no_rois_and_images_without_rois():
    features = torch.randn(4, 3, 6, 6)
    assert grid_roi_align(features, torch.zeros(0, 5), (7, 7), 1.0, 1).shape == (0, 3, 7, 7)
    only_image_2 = torch.tensor([[2.0, 0.0, 0.0, 5.0, 5.0], [2.0, 1.0, 1.0, 3.0, 4.0]])
    torch.testing.assert_close(
        grid_roi_align(features, only_image_2, (7, 7), 1.0, 1),
        roi_align(features, only_image_2, (7, 7), 1.0, 1),
        rtol=1e-5,
        atol=1e-6,
    )


def test_adaptive_sampling_is_refused():
    with pytest.raises(ValueError, match="sampling_ratio >= 1"):
        grid_roi_align(torch.zeros(1, 1, 4, 4), torch.zeros(1, 5), (2, 2), 1.0, 0)
    with pytest.raises(ValueError, match="roi_sampling_ratio >= 1"):
        GridSampleMultiScaleRoIAlign(["0"], 7, 0)


def test_multiscale_pooler_assigns_levels_like_torchvision():
    generator = torch.Generator().manual_seed(3)
    features = {
        name: torch.randn(2, 4, size, size, generator=generator) for name, size in (("0", 64), ("1", 32), ("2", 16))
    }
    features["pool"] = torch.randn(2, 4, 8, 8, generator=generator)  # the FPN's extra level: not pooled from
    # 512 px inputs, strides 8, 16, 32: small, middle and large boxes map to the three levels
    boxes = [
        torch.tensor([[0.0, 0.0, 20.0, 30.0], [10.0, 10.0, 500.0, 480.0], [5.0, 5.0, 305.0, 305.0]]),
        torch.tensor([[30.0, 40.0, 150.0, 255.0]]),
    ]
    sizes = [(512, 512), (512, 512)]
    reference = MultiScaleRoIAlign(["0", "1", "2"], 7, 2)
    fast = GridSampleMultiScaleRoIAlign(["0", "1", "2"], 7, 2)
    expected = reference(features, boxes, sizes)
    torch.testing.assert_close(fast(features, boxes, sizes), expected, rtol=1e-5, atol=1e-5)
    levels = reference.map_levels(boxes)
    assert set(levels.tolist()) == {0, 1, 2}  # the boxes really spread over the three levels
