"""RoIAlign through `grid_sample`: torchvision's `roi_align` (aligned=False), the same numbers,
a faster backward on CPU.

Why: on a CPU, torchvision's `roi_align` backward scatters one bilinear sample at a time on a
single thread; at 128 px it was the largest single cost of a ResNet-18 FPN training step
(~20%; ~40% of a MobileNetV3 step). `F.grid_sample` computes the same bilinear samples with a
vectorised, multi-threaded backward, ~3x faster for the demo's shapes
(benchmarks/bench_train.py measures whole steps). On CUDA both are fast; torchvision's op stays
the default (model.roi_align_backend).

Exactness (tests/detect/models/test_roi_align.py compares values and gradients with torchvision):
torchvision samples bin (ph, pw) of a RoI at
    y = y1 * scale + (ph * s + iy + 0.5) * roi_h / (out_h * s),  iy in 0..s-1 (s = sampling_ratio)
with roi_h = max((y2 - y1) * scale, 1), clamps y into [0, H - 1], returns 0 for a point with
y < -1 or y > H (x alike) and averages the s * s points of a bin. Here the same points are
laid out as an (out_h * s) x (out_w * s) grid per RoI, sampled with border clamping
(align_corners=True maps grid coordinates to pixel centres exactly), masked the same way, and
average-pooled s x s. Adaptive sampling (sampling_ratio <= 0) has a per-RoI point count and is
not supported.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.poolers import _convert_to_roi_format, _filter_input, _setup_scales


def grid_roi_align(
    features: Tensor, rois: Tensor, output_size: tuple[int, int], spatial_scale: float, sampling_ratio: int
) -> Tensor:
    """torchvision.ops.roi_align(features, rois, output_size, spatial_scale, sampling_ratio, aligned=False).

    features [B, C, H, W]; rois [K, 5] rows (batch index, x1, y1, x2, y2) in input pixels.
    Returns [K, C, out_h, out_w].
    """
    if sampling_ratio < 1:
        raise ValueError(f"grid_roi_align needs sampling_ratio >= 1, got {sampling_ratio}")
    out_h, out_w = output_size
    n_rois = rois.shape[0]
    batch, channels, height, width = features.shape
    if n_rois == 0:
        return features.new_zeros((0, channels, out_h, out_w))
    grid_h, grid_w = out_h * sampling_ratio, out_w * sampling_ratio
    rois = rois.to(torch.promote_types(features.dtype, torch.float32))  # coordinates in >= float32

    # sample points in feature-map pixels, [K, grid_h] and [K, grid_w]
    x1, y1 = rois[:, 1] * spatial_scale, rois[:, 2] * spatial_scale
    roi_w = (rois[:, 3] * spatial_scale - x1).clamp(min=1.0)
    roi_h = (rois[:, 4] * spatial_scale - y1).clamp(min=1.0)
    steps_x = (torch.arange(grid_w, device=rois.device, dtype=rois.dtype) + 0.5) / grid_w
    steps_y = (torch.arange(grid_h, device=rois.device, dtype=rois.dtype) + 0.5) / grid_h
    xs = x1[:, None] + steps_x[None, :] * roi_w[:, None]
    ys = y1[:, None] + steps_y[None, :] * roi_h[:, None]
    # torchvision's out-of-range rule: such a point contributes 0 (but still counts in the mean)
    valid = ((ys >= -1.0) & (ys <= height))[:, :, None] & ((xs >= -1.0) & (xs <= width))[:, None, :]

    # align_corners=True: -1 and +1 are the centres of the first and last pixel
    gx = xs * (2.0 / max(width - 1, 1)) - 1.0
    gy = ys * (2.0 / max(height - 1, 1)) - 1.0
    grid = torch.stack(
        [gx[:, None, :].expand(n_rois, grid_h, grid_w), gy[:, :, None].expand(n_rois, grid_h, grid_w)], dim=-1
    )

    # one grid_sample call per level: each image's RoIs stacked along the grid's height, padded
    # to the largest count (grid_sample takes one grid per image)
    image_index = rois[:, 0].long()
    counts = torch.bincount(image_index, minlength=batch)
    per_image = int(counts.max())
    order = torch.argsort(image_index, stable=True)
    sorted_index = image_index[order]
    slot = torch.arange(n_rois, device=rois.device) - (torch.cumsum(counts, 0) - counts)[sorted_index]
    padded = grid.new_zeros((batch, per_image, grid_h, grid_w, 2))
    padded[sorted_index, slot] = grid[order]
    sampled = F.grid_sample(
        features,
        padded.view(batch, per_image * grid_h, grid_w, 2).to(features.dtype),
        mode="bilinear",
        padding_mode="border",
        align_corners=True,
    )  # [B, C, per_image * grid_h, grid_w]
    sampled = sampled.view(batch, channels, per_image, grid_h, grid_w).permute(0, 2, 1, 3, 4)[sorted_index, slot]
    result = torch.empty_like(sampled)
    result[order] = sampled  # back to the caller's RoI order, [K, C, grid_h, grid_w]
    result = result * valid[:, None].to(result.dtype)
    if sampling_ratio > 1:
        result = F.avg_pool2d(result, kernel_size=sampling_ratio)
    return result


class GridSampleMultiScaleRoIAlign(MultiScaleRoIAlign):
    """torchvision's MultiScaleRoIAlign (same level assignment, same output) with `grid_roi_align`."""

    def __init__(self, featmap_names: list[str], output_size: int | tuple[int, int], sampling_ratio: int) -> None:
        if sampling_ratio < 1:
            raise ValueError(
                f"the grid_sample RoIAlign needs roi_sampling_ratio >= 1 (adaptive sampling is per RoI), got {sampling_ratio}"
            )
        super().__init__(featmap_names, output_size, sampling_ratio)

    def forward(self, x: dict[str, Tensor], boxes: list[Tensor], image_shapes: list[tuple[int, int]]) -> Tensor:
        features = _filter_input(x, self.featmap_names)
        if self.scales is None or self.map_levels is None:
            self.scales, self.map_levels = _setup_scales(
                features, image_shapes, self.canonical_scale, self.canonical_level
            )
        rois = _convert_to_roi_format(boxes)
        output_size = tuple(self.output_size)
        if len(features) == 1:
            return grid_roi_align(features[0], rois, output_size, self.scales[0], self.sampling_ratio)
        levels = self.map_levels(boxes)
        result = features[0].new_zeros((rois.shape[0], features[0].shape[1], *output_size))
        for level, (feature, scale) in enumerate(zip(features, self.scales)):
            index = torch.where(levels == level)[0]
            if index.numel():
                result[index] = grid_roi_align(feature, rois[index], output_size, scale, self.sampling_ratio).to(
                    result.dtype
                )
        return result
