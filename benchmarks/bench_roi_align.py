"""RoIAlign backends: torchvision's `roi_align` against detect's `grid_sample` version, in one process.

    python benchmarks/bench_roi_align.py                     # the demo recipe's shapes, on CPU
    python benchmarks/bench_roi_align.py --device cuda --image-size 512 --channels 256 --rois-per-image 512

Two tables, each with the ratio grid_sample / torchvision (both arms compute the same numbers:
tests/detect/test_roi_align.py):

    op     forward + backward of the RoI pooling alone on random FPN-like features and RoIs;
    step   whole training steps (forward, backward, SGD) of the demo recipe's detector
           (configs/demo.yaml, random init, random images with one box each), the two models
           sharing their initial weights.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torchvision.ops import roi_align

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without installing

from detect.config import load_config
from detect.models.build import build_model
from detect.models.roi_align import grid_roi_align


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_op(fn, features: torch.Tensor, repeats: int, device: torch.device) -> float:
    """Milliseconds per forward + backward of `fn(features)`."""
    for _ in range(2):
        fn(features).sum().backward()
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        features.grad = None
        fn(features).sum().backward()
    _sync(device)
    return (time.perf_counter() - start) / repeats * 1000


def bench_op(args: argparse.Namespace, device: torch.device) -> list[tuple[str, float, float]]:
    rows = []
    generator = torch.Generator().manual_seed(0)
    for stride in (8, 16, 32):
        size = args.image_size // stride
        features = (
            torch.randn(args.batch_size, args.channels, size, size, generator=generator).to(device).requires_grad_()
        )
        n = args.batch_size * args.rois_per_image // 3  # the RoIs spread over three levels
        corner = torch.rand(n, 2, generator=generator) * args.image_size * 0.7
        extent = torch.rand(n, 2, generator=generator) * args.image_size * 0.3 + 4
        index = torch.arange(n) % args.batch_size
        rois = torch.cat([index[:, None].float(), corner, corner + extent], dim=1).to(device)
        scale = 1.0 / stride
        reference = time_op(
            lambda f: roi_align(f, rois, (7, 7), scale, args.sampling_ratio), features, args.repeats, device
        )
        fast = time_op(
            lambda f: grid_roi_align(f, rois, (7, 7), scale, args.sampling_ratio), features, args.repeats, device
        )
        rows.append((f"stride {stride}: {n} RoIs on {args.batch_size}x{args.channels}x{size}x{size}", reference, fast))
    return rows


def bench_step(args: argparse.Namespace, device: torch.device) -> tuple[float, float]:
    """Images/s of whole training steps, torchvision backend then grid_sample backend."""
    size_key = f"data.image_size_px={args.image_size}"
    cfg = load_config(args.config, [size_key, "model.roi_align_backend=torchvision"])
    size = cfg.data.image_size_px
    torch.manual_seed(0)
    reference = build_model(cfg.model, size)
    fast_cfg = load_config(args.config, [size_key, "model.roi_align_backend=grid_sample"])
    fast = build_model(fast_cfg.model, size)
    assert type(reference.roi_heads.box_roi_pool) is not type(fast.roi_heads.box_roi_pool)
    fast.load_state_dict(reference.state_dict())
    generator = torch.Generator().manual_seed(1)
    images = [
        torch.rand(1, size, size, generator=generator).expand(3, -1, -1).to(device) for _ in range(args.batch_size)
    ]
    box = torch.tensor([[0.2, 0.25, 0.45, 0.65]]) * size
    targets = [
        {
            "boxes": box.to(device),
            "labels": torch.ones(1, dtype=torch.int64, device=device),
            "has_box_labels": torch.tensor(True),
            "rsna_class": torch.tensor(2, device=device),
            "pneumonia": torch.tensor(1, device=device),
            "subtype": torch.tensor(-1, device=device),
        }
        for _ in range(args.batch_size)
    ]
    results = []
    for model in (reference, fast):
        model.to(device).train()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9)
        for step in range(2 + args.steps):
            if step == 2:
                _sync(device)
                start = time.perf_counter()
            loss = sum(model(images, targets).values())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        _sync(device)
        results.append(args.steps * args.batch_size / (time.perf_counter() - start))
    return results[0], results[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/demo.yaml", help="recipe of the step benchmark's model")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--channels", type=int, default=128, help="FPN channels of the op benchmark")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rois-per-image", type=int, default=32)
    parser.add_argument("--sampling-ratio", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads")

    print(f"\nop: RoIAlign forward + backward, sampling ratio {args.sampling_ratio}")
    print(f"{'shape':<46} {'torchvision ms':>14} {'grid_sample ms':>14} {'speed-up':>9}")
    for name, reference, fast in bench_op(args, device):
        print(f"{name:<46} {reference:>14.2f} {fast:>14.2f} {reference / fast:>8.2f}x")

    reference, fast = bench_step(args, device)
    print(f"\nstep: {args.config} at {args.image_size} px, batch {args.batch_size}, {args.steps} timed steps")
    print(f"{'torchvision img/s':>18} {'grid_sample img/s':>18} {'ratio':>7}")
    print(f"{reference:>18.1f} {fast:>18.1f} {fast / reference:>6.2f}x")


if __name__ == "__main__":
    main()
