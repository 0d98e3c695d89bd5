"""Inference backends: eager PyTorch, TorchScript and ONNX Runtime, per CPU model, in one process.

    python benchmarks/bench_infer.py                      # every CPU model at its default size
    python benchmarks/bench_infer.py --models resnet18_fpn --repeats 20
    python benchmarks/bench_infer.py --smoke              # a seconds-long run at 64 px (tests/test_benchmarks.py)

For each model: an untrained checkpoint (random weights; a detector's box head biased so that
every image has the full box_detections_per_img boxes, so NMS and the box head work as on a
trained model; a classifier for task kermany3) is
exported with `detect export` (onnx, torchscript), the three are loaded through
load_predictor, and Predictor.run runs batches of letterboxed random images: milliseconds
per image at batch 1 and batch 8, and each backend's ratio to eager (< 1: faster). The ONNX
graph takes one image (detect.export.onnx), so its batch of 8 is 8 runs; so does a classifier's
traced TorchScript file.
Numbers depend on the machine's load and thread count: the header prints both.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without installing

from detect.config import config_from_dict
from detect.export.run import export_checkpoint
from detect.inference.predictor import ModelInput, PreparedImage, load_predictor
from detect.models import registry
from detect.models.build import build_model
from detect.models.checkpoint import save_checkpoint

BACKEND_FORMATS = (("eager", None), ("torchscript", "torchscript"), ("onnxruntime", "onnx"))
DETECTOR_CPU_MODELS = ("resnet18_fpn", "mobilenet_v3_large_fpn")
CLASSIFIER_TASK = "kermany3"  # the three-class head: the largest of the tasks' heads


def cpu_models() -> list[str]:
    """The CPU detectors and every classifier of the registry."""
    return [*DETECTOR_CPU_MODELS, *(name for name in registry.MODELS if registry.is_classifier(name))]


def write_checkpoint(name: str, size_px: int, folder: Path) -> Path:
    overrides = [f"model.name={name}", "model.weights=none", f"data.image_size_px={size_px}"]
    if registry.is_classifier(name):
        overrides += [f"task={CLASSIFIER_TASK}", "train.monitor=val_f1"]
    else:
        overrides += ["model.box_score_thresh=0.0"]
    cfg = config_from_dict({}, overrides)
    torch.manual_seed(0)
    model = build_model(cfg.model, size_px, task=cfg.task)
    box_predictor = getattr(getattr(model, "roi_heads", None), "box_predictor", None)
    if box_predictor is not None:
        with torch.no_grad():
            box_predictor.cls_score.bias.copy_(torch.tensor([-2.0, 2.0]))
    return save_checkpoint(folder / f"{name}.pt", model=model, cfg=cfg, epoch=0, global_step=0)


def time_forward(predictor, size_px: int, batch_size: int, repeats: int) -> float:
    """Median milliseconds per image of Predictor.run on a batch of random letterboxed images."""
    generator = torch.Generator().manual_seed(1)
    inputs = [
        PreparedImage(
            ModelInput(
                torch.rand(1, size_px, size_px, generator=generator).expand(3, -1, -1).contiguous(),
                1.0,
                size_px,
                size_px,
            )
        )
        for _ in range(batch_size)
    ]
    predictor.run(inputs)  # warm-up: first-call allocations, ORT's graph optimisation
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        predictor.run(inputs)
        times.append((time.perf_counter() - start) * 1000 / batch_size)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--models", nargs="*", default=None, help="default: every CPU model (the CPU detectors and the classifiers)"
    )
    parser.add_argument("--batch-sizes", type=int, nargs="*", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per cell (the median is shown)")
    parser.add_argument("--image-size", type=int, default=None, help="default: each model's default_image_size_px")
    parser.add_argument("--smoke", action="store_true", help="one detector at 64 px, batch 1 and 2, one call each")
    args = parser.parse_args()
    models = args.models or cpu_models()
    if args.smoke:
        models, args.batch_sizes, args.repeats, args.image_size = ["mobilenet_v3_large_fpn"], [1, 2], 1, 64
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"CPU, torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores, "
        f"load average {load:.1f}; random weights, random images (synthetic)"
    )
    print(
        f"{'model':<24} {'size':>5} {'batch':>5} "
        + " ".join(f"{b + ' ms/img':>18}" for b, _ in BACKEND_FORMATS)
        + " "
        + " ".join(f"{b + '/eager':>18}" for b, _ in BACKEND_FORMATS[1:])
    )
    with tempfile.TemporaryDirectory() as folder:
        for name in models:
            size_px = args.image_size or registry.get_model_spec(name).default_image_size_px
            checkpoint = write_checkpoint(name, size_px, Path(folder))
            files = {
                backend: checkpoint
                if fmt is None
                else export_checkpoint(checkpoint, fmt, Path(folder) / f"{name}.{fmt}").out_path
                for backend, fmt in BACKEND_FORMATS
            }
            predictors = {backend: load_predictor(path, device="cpu").predictor for backend, path in files.items()}
            for batch_size in args.batch_sizes:
                ms = {backend: time_forward(p, size_px, batch_size, args.repeats) for backend, p in predictors.items()}
                print(
                    f"{name:<24} {size_px:>5} {batch_size:>5} "
                    + " ".join(f"{ms[b]:>18.1f}" for b, _ in BACKEND_FORMATS)
                    + " "
                    + " ".join(f"{ms[b] / ms['eager']:>18.2f}" for b, _ in BACKEND_FORMATS[1:]),
                    flush=True,
                )


if __name__ == "__main__":
    main()
