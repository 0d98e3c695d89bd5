"""Training throughput: detect's pipeline against a plain loop, in one process, on one device.

    python benchmarks/bench_train.py                                  # GPU recipe (r50 FPN v2, 512 px) if CUDA, else CPU
    python benchmarks/bench_train.py --model mobilenet_v3_large_fpn --image-size 256 --steps 10

Both arms train the same architecture from the same initial weights on the same synthetic
RSNA DICOMs (1024 px, JPEG Baseline, as on Kaggle), with the same batch size and optimizer:

    detect   the preprocessing cache (letterboxed PNGs from `detect prepare --cache`: no DICOM
             decoded twice), DataLoader workers, AMP (autocast + GradScaler) on CUDA
    plain    what torchvision's detection reference does: fp32, and every DICOM decoded on
             every access (`pydicom.dcmread(path).pixel_array`) then resized in the worker

It prints one table: images/s of each arm and the ratio detect/plain. The first `--warmup`
steps of each arm are not timed (cuDNN autotuning, worker start-up, allocator warm-up).
"""
from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom
import torch
from torch.utils.data import DataLoader

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


def time_arm(model: torch.nn.Module, loader: DataLoader, device: torch.device, *, amp: bool, steps: int, warmup: int) -> float:
    """Images per second over `steps` timed steps after `warmup` untimed ones."""
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.005, momentum=0.9)
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    model.train()
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(Path(__file__).resolve().parent.parent / "configs" / "gpu_rsna.yaml"))
    parser.add_argument("--model", default=None, help="override model.name")
    parser.add_argument("--image-size", type=int, default=None, help="override data.image_size_px")
    parser.add_argument("--images", type=int, default=64, help="synthetic 1024 px DICOMs to train on")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dir", default=None, help="reuse/keep the synthetic data here")
    args = parser.parse_args()

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else ("cpu" if args.device == "auto" else args.device))
    overrides = []
    if args.model:
        overrides.append(f"model.name={args.model}")
    if args.image_size:
        overrides.append(f"data.image_size_px={args.image_size}")
    if args.batch_size:
        overrides.append(f"train.batch_size={args.batch_size}")
    cfg = load_config(args.config, overrides)
    cfg_model = cfg.model if cfg.model.weights == "none" else type(cfg.model)(**{**cfg.model.__dict__, "weights": "none"})
    size = cfg.data.image_size_px

    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="bench_train_"))
    data_dir = root / "rsna"
    if not (data_dir / "stage_2_train_labels.csv").exists():
        synth_rsna(data_dir, n_images=args.images, size_px=1024, seed=0, class_fractions=(0.3, 0.3, 0.4))
    prepare_dataset(data_dir, cache=True, image_size_px=size, val_fraction=0.0, test_fraction=0.0, seed=0, workers=2)
    prepared = read_manifest(data_dir)
    records = prepared.records

    torch.manual_seed(0)
    model_detect = build_model(cfg_model, size).to(device)
    model_plain = copy.deepcopy(model_detect)  # same initial weights in both arms

    detect_ds = ManifestDataset(records, prepared.data_root, size, cache=prepared)
    plain_ds = ManifestDataset(records, prepared.data_root, size, cache=None, loader=pydicom_loader)
    common = dict(batch_size=cfg.train.batch_size, shuffle=True, collate_fn=collate_detection, drop_last=True)
    detect_loader = DataLoader(detect_ds, num_workers=args.workers, pin_memory=device.type == "cuda",
                               persistent_workers=args.workers > 0, **common)
    plain_loader = DataLoader(plain_ds, num_workers=args.workers, **common)

    amp = device.type == "cuda" and cfg.train.amp
    plain_ips = time_arm(model_plain, plain_loader, device, amp=False, steps=args.steps, warmup=args.warmup)
    detect_ips = time_arm(model_detect, detect_loader, device, amp=amp, steps=args.steps, warmup=args.warmup)

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(f"\ntraining throughput: {cfg_model.name} at {size} px, batch {cfg.train.batch_size}, {args.steps} timed steps, "
          f"{args.workers} workers, {len(records)} synthetic 1024 px DICOMs, device {name}")
    print(f"{'arm':<44} {'images/s':>9} {'ratio':>7}")
    print(f"{'plain (fp32, pydicom decode every access)':<44} {plain_ips:9.2f} {1.0:7.2f}")
    print(f"{'detect (cache' + (' + AMP' if amp else '') + ', workers)':<44} {detect_ips:9.2f} {detect_ips / plain_ips:7.2f}")


if __name__ == "__main__":
    main()
