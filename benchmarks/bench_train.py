"""Training throughput: detect's pipeline against a plain loop, in one process, on one device.

    python benchmarks/bench_train.py                                  # GPU recipe (r50 FPN v2, 512 px) if CUDA, else CPU
    python benchmarks/bench_train.py --model mobilenet_v3_large_fpn --image-size 256 --steps 10
    python benchmarks/bench_train.py --epoch --images 256            # the GPU check: one epoch per arm
    python benchmarks/bench_train.py --smoke                         # seconds on a CPU: checks the script

Both arms train the same architecture from the same initial weights on the same synthetic
RSNA DICOMs (1024 px, JPEG Baseline, as on Kaggle), with the same batch size and optimizer:

    detect   the preprocessing cache (letterboxed PNGs from `detect prepare --cache`: no DICOM
             decoded twice), DataLoader workers, AMP (autocast + GradScaler) and channels_last
             (weights and the backbone's input, checked on the first convolution) on CUDA
    plain    what torchvision's detection reference does: fp32, and every DICOM decoded on
             every access (`pydicom.dcmread(path).pixel_array`) then resized in the worker

It prints one table: images/s of each arm and the ratio detect/plain. The first `--warmup`
steps of each arm are not timed (cuDNN autotuning, worker start-up, allocator warm-up).
`--epoch`: each arm trains one whole epoch over the images (its first `--warmup` steps untimed)
instead of `--steps` steps: the GPU check of benchmarks/gpu_checks.py.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pydicom
import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without installing

from data_prep.manifest import read_manifest
from data_prep.prepare import prepare_dataset
from data_prep.synth import synth_rsna
from detect.config import load_config
from detect.data.dataset import ManifestDataset, collate_detection
from detect.models.build import build_model


def pydicom_loader(path: Path) -> tuple[np.ndarray, None]:
    """The plain loop's reader: pydicom's own decode (pylibjpeg) on every access."""
    pixels = pydicom.dcmread(path).pixel_array
    return np.ascontiguousarray(pixels, dtype=np.uint8), None


@dataclass
class ChannelsLastProbe:
    """What channels_last really reached: the share of 4-D weights stored channels_last, and the
    memory format of the first convolution's input and output in the last forward pass."""

    weights_channels_last: float = 0.0
    first_conv_input_channels_last: bool | None = None
    first_conv_output_channels_last: bool | None = None

    @property
    def applied(self) -> bool:
        return (
            self.weights_channels_last == 1.0
            and bool(self.first_conv_input_channels_last)
            and bool(self.first_conv_output_channels_last)
        )


def apply_channels_last(model: torch.nn.Module) -> ChannelsLastProbe:
    """Weights to channels_last, and the batched image tensor the backbone receives too (the
    detector's transform batches the images into a new NCHW tensor, so converting the inputs
    before the model would be lost); a hook on the first convolution records what it got."""
    model.to(memory_format=torch.channels_last)
    weights = [p for p in model.parameters() if p.dim() == 4]
    probe = ChannelsLastProbe(
        sum(p.is_contiguous(memory_format=torch.channels_last) for p in weights) / max(len(weights), 1)
    )
    backbone = getattr(model, "backbone", model)
    backbone.register_forward_pre_hook(
        lambda _module, inputs: (inputs[0].contiguous(memory_format=torch.channels_last), *inputs[1:])
    )
    first_conv = next(m for m in backbone.modules() if isinstance(m, torch.nn.Conv2d))

    def record(_module, inputs, output):
        probe.first_conv_input_channels_last = inputs[0].is_contiguous(memory_format=torch.channels_last)
        probe.first_conv_output_channels_last = output.is_contiguous(memory_format=torch.channels_last)

    first_conv.register_forward_hook(record)
    return probe


def time_arm(
    model: torch.nn.Module,
    loader: DataLoader,
    device: torch.device,
    *,
    amp: bool,
    steps: int,
    warmup: int,
    epoch: bool = False,
) -> float:
    """Images per second over `steps` timed steps after `warmup` untimed ones; `epoch`: over one
    pass of `loader`, its first `warmup` steps untimed."""
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.005, momentum=0.9)
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    model.train()
    if epoch:
        warmup, steps = min(warmup, max(len(loader) - 1, 0)), len(loader) - min(warmup, max(len(loader) - 1, 0))
    batches = iter(loader)
    n_images = 0
    started = 0.0
    for step in range(warmup + steps):
        if step == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
            n_images = 0
        try:
            images, targets = next(batches)
        except StopIteration:
            batches = iter(loader)
            images, targets = next(batches)
        images = [im.to(device, non_blocking=True) for im in images]
        targets = [{k: v.to(device) for k, v in t.items()} for t in targets]
        with torch.autocast(device.type, enabled=amp):
            loss = sum(model(images, targets).values())
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        n_images += len(images)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n_images / (time.perf_counter() - started)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(Path(__file__).resolve().parent.parent / "configs" / "gpu_rsna.yaml"))
    parser.add_argument("--model", default=None, help="override model.name")
    parser.add_argument("--image-size", type=int, default=None, help="override data.image_size_px")
    parser.add_argument("--images", type=int, default=64, help="synthetic 1024 px DICOMs to train on")
    parser.add_argument("--size-px", type=int, default=1024, help="size of the synthetic DICOMs")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--epoch", action="store_true", help="one whole epoch per arm instead of --steps")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument(
        "--channels-last",
        choices=("auto", "on", "off"),
        default="auto",
        help="channels_last in the detect arm (auto: on CUDA)",
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dir", default=None, help="reuse/keep the synthetic data here")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="a tiny model on 8 small DICOMs, one epoch, no workers: checks the script in seconds",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.model, args.image_size, args.images, args.size_px = "mobilenet_v3_large_fpn", 64, 8, 128
        args.batch_size, args.epoch, args.warmup, args.workers = 4, True, 1, 0
        torch.set_num_threads(1)  # a loaded 2-core machine: two intra-op threads run many times slower
    return args


def run(args: argparse.Namespace) -> dict:
    """Both arms, the table printed; the numbers returned (and written to --json)."""
    device = torch.device(
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else ("cpu" if args.device == "auto" else args.device)
    )
    overrides = []
    if args.model:
        overrides.append(f"model.name={args.model}")
    if args.image_size:
        overrides.append(f"data.image_size_px={args.image_size}")
    if args.batch_size:
        overrides.append(f"train.batch_size={args.batch_size}")
    if args.smoke:
        overrides += [
            "model.head_hidden_dim=32",
            "model.rpn_pre_nms_top_n_train=100",
            "model.rpn_post_nms_top_n_train=20",
            "model.box_batch_size_per_image=16",
        ]
    cfg = load_config(args.config, overrides)
    cfg_model = (
        cfg.model if cfg.model.weights == "none" else type(cfg.model)(**{**cfg.model.__dict__, "weights": "none"})
    )
    size = cfg.data.image_size_px

    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="bench_train_"))
    data_dir = root / f"rsna_{args.images}_{args.size_px}"
    started = time.perf_counter()
    if not (data_dir / "stage_2_train_labels.csv").exists():
        synth_rsna(
            data_dir,
            n_images=args.images,
            size_px=args.size_px,
            seed=0,
            class_fractions=(0.3, 0.3, 0.4),
            workers=max(1, min(8, os.cpu_count() or 1)),
        )
    prepare_dataset(
        data_dir,
        cache=True,
        image_size_px=size,
        val_fraction=0.0,
        test_fraction=0.0,
        seed=0,
        workers=max(1, min(8, os.cpu_count() or 1)),
    )
    setup_s = time.perf_counter() - started
    prepared = read_manifest(data_dir)
    records = prepared.records

    torch.manual_seed(0)
    model_detect = build_model(cfg_model, size).to(device)
    model_plain = copy.deepcopy(model_detect)  # same initial weights in both arms
    channels_last = args.channels_last == "on" or (args.channels_last == "auto" and device.type == "cuda")
    probe = apply_channels_last(model_detect) if channels_last else None

    detect_ds = ManifestDataset(records, prepared.data_root, size, cache=prepared)
    plain_ds = ManifestDataset(records, prepared.data_root, size, cache=None, loader=pydicom_loader)
    common = dict(batch_size=cfg.train.batch_size, shuffle=True, collate_fn=collate_detection, drop_last=True)
    detect_loader = DataLoader(
        detect_ds,
        num_workers=args.workers,
        pin_memory=device.type == "cuda",
        persistent_workers=args.workers > 0,
        **common,
    )
    plain_loader = DataLoader(plain_ds, num_workers=args.workers, **common)

    amp = device.type == "cuda" and cfg.train.amp
    plain_ips = time_arm(
        model_plain, plain_loader, device, amp=False, steps=args.steps, warmup=args.warmup, epoch=args.epoch
    )
    detect_ips = time_arm(
        model_detect, detect_loader, device, amp=amp, steps=args.steps, warmup=args.warmup, epoch=args.epoch
    )

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    timed = (
        f"one epoch ({len(detect_loader)} steps, first {min(args.warmup, len(detect_loader) - 1)} untimed)"
        if args.epoch
        else f"{args.steps} timed steps"
    )
    print(
        f"\ntraining throughput: {cfg_model.name} at {size} px, batch {cfg.train.batch_size}, {timed}, "
        f"{args.workers} workers, {len(records)} synthetic {args.size_px} px DICOMs, device {name}"
    )
    detect_arm = (
        "detect (cache" + (" + AMP" if amp else "") + (" + channels_last" if channels_last else "") + ", workers)"
    )
    print(f"{'arm':<44} {'images/s':>9} {'ratio':>7}")
    print(f"{'plain (fp32, pydicom decode every access)':<44} {plain_ips:9.2f} {1.0:7.2f}")
    print(f"{detect_arm:<44} {detect_ips:9.2f} {detect_ips / plain_ips:7.2f}")
    if probe is not None:
        print(
            f"channels_last: {100 * probe.weights_channels_last:.0f}% of 4-D weights, first conv input "
            f"{probe.first_conv_input_channels_last}, output {probe.first_conv_output_channels_last}"
        )
    results = {
        "device": name,
        "model": cfg_model.name,
        "image_size_px": size,
        "batch_size": cfg.train.batch_size,
        "images": len(records),
        "synthetic_size_px": args.size_px,
        "epoch": bool(args.epoch),
        "steps_per_epoch": len(detect_loader),
        "workers": args.workers,
        "amp": amp,
        "plain_images_per_s": plain_ips,
        "detect_images_per_s": detect_ips,
        "ratio": detect_ips / plain_ips,
        "setup_s": setup_s,
        "channels_last": asdict(probe) | {"applied": probe.applied} if probe else None,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    if not args.dir:
        shutil.rmtree(root, ignore_errors=True)
    return results


def main() -> None:
    run(parse_args())


if __name__ == "__main__":
    main()
