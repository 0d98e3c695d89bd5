"""Classifier training throughput: `detect train`'s loop against a bare step, in one process.

    python benchmarks/bench_classifier_loop.py                 # the compare recipe's three models, 64 px: ~3 min on 2 cores
    python benchmarks/bench_classifier_loop.py --models resnet18 --epochs 2
    python benchmarks/bench_classifier_loop.py --smoke         # seconds: checks the script (tests/test_benchmarks.py)

For each model, the same network from the same recipe (configs/kermany2_compare_cpu.yaml: 64 px,
batch 16, AdamW) trains in two arms on the same device:

    bare   one fixed random batch already in memory: the classifier's forward (the detector
           contract: a list of [3, S, S] images and their targets, the recipe's weighted loss),
           backward and the optimizer's step. No data, no augmentation: the ceiling.
    loop   `run_training` (what `detect train` runs) for --epochs on a synthetic Kermany set
           (`detect synth kermany`, difficulty 0.15): the 64 px cache, the DataLoader,
           augmentation, the scheduler, the logging; its metrics.csv `train_images_per_s` of the
           last epoch (the training pass only: validation and checkpointing are not in it).

It prints images/s of each arm and loop / bare: what the loop costs around the model. The first
--warmup bare steps are not timed; the loop's first epoch is not counted when --epochs > 1.
Every number comes from SYNTHETIC data; on a loaded machine both arms slow down, the ratio less.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without installing

from data_prep.synth import synth_kermany
from data_prep.tasks import TASK_TARGET_KEY
from detect.config import Config, load_config
from detect.models.build import build_model
from detect.models.losses import ClassificationLoss, inverse_frequency_weights
from detect.training.optim import build_optimizer
from detect.training.trainer import run_training

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "configs" / "kermany2_compare_cpu.yaml"
MODELS = ("basic_cnn", "resnet18", "efficientnet_b0")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n", 1)[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated registry names (classifiers)")
    parser.add_argument("--config", type=Path, default=RECIPE)
    parser.add_argument("--images", type=int, default=600, help="synthetic Kermany images over all splits")
    parser.add_argument("--epochs", type=int, default=2, help="loop epochs per model; the last one is measured")
    parser.add_argument("--steps", type=int, default=20, help="timed bare steps per model")
    parser.add_argument("--warmup", type=int, default=3, help="untimed bare steps first")
    parser.add_argument("--smoke", action="store_true", help="tiny set, one epoch of two steps, basic_cnn only")
    return parser.parse_args(argv)


def random_batch(cfg: Config, generator: torch.Generator) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """batch_size images in [0, 1] at the recipe's size, with labels of its task drawn half and half."""
    size, n = cfg.data.image_size_px, cfg.train.batch_size
    images = [torch.rand(3, size, size, generator=generator) for _ in range(n)]
    key = TASK_TARGET_KEY[cfg.task]
    targets = [{key: torch.tensor(i % 2, dtype=torch.int64)} for i in range(n)]
    return images, targets


def bare_images_per_s(cfg: Config, steps: int, warmup: int) -> float:
    """Forward + backward + optimizer step on one fixed batch, timed over `steps` after `warmup`."""
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, cfg.data.image_size_px, task=cfg.task)
    # the recipe's loss; weighted_ce with Kermany's train split ratio (26% normal): the weights' values cost nothing
    weights = inverse_frequency_weights([1341, 3875]) if cfg.train.loss == "weighted_ce" else ()
    model.loss = ClassificationLoss(cfg.train.loss, class_weights=weights, focal_gamma=cfg.train.focal_gamma)
    model.train()
    optimizer = build_optimizer(model, cfg.train)
    images, targets = random_batch(cfg, torch.Generator().manual_seed(cfg.seed))
    started = 0.0
    for step in range(warmup + steps):
        if step == warmup:
            started = time.perf_counter()
        loss = sum(model(images, targets).values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return steps * len(images) / (time.perf_counter() - started)


def loop_images_per_s(run_dir: Path) -> float:
    """The last epoch's `train_images_per_s` in RUN_DIR/metrics.csv."""
    with (run_dir / "metrics.csv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    return float(rows[-1]["train_images_per_s"]) if rows else math.nan


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    models = ["basic_cnn"] if args.smoke else [m.strip() for m in args.models.split(",") if m.strip()]
    epochs, steps, warmup = (1, 2, 1) if args.smoke else (args.epochs, args.steps, args.warmup)
    overrides = [f"train.epochs={epochs}", "data.num_workers=0"]
    if args.smoke:
        overrides += ["train.max_steps_per_epoch=2", "train.batch_size=4"]
    with tempfile.TemporaryDirectory(prefix="bench_classifier_loop_") as tmp:
        data = Path(tmp) / "kermany"
        synth_kermany(
            data, n_images=48 if args.smoke else args.images, seed=0, size_range_px=(128, 160), difficulty=0.15
        )
        rows = []
        for name in models:
            cfg = load_config(args.config, [*overrides, f"model.name={name}"])
            bare = bare_images_per_s(cfg, steps, warmup)
            run_dir = Path(tmp) / "runs" / name
            run_training(cfg, [data], out_dir=run_dir, log=lambda _line: None)
            loop = loop_images_per_s(run_dir)
            rows.append((name, bare, loop))
            print(f"{name}: bare {bare:.1f} images/s, loop {loop:.1f} images/s", flush=True)
    size = cfg.data.image_size_px
    print(
        f"\nclassifier training throughput, {size} px, batch {cfg.train.batch_size}, {torch.get_num_threads()} torch "
        f"threads (SYNTHETIC Kermany, {'smoke' if args.smoke else f'epoch {epochs} of {epochs}'}):"
    )
    print(f"  {'model':<16} {'bare img/s':>10} {'loop img/s':>10} {'loop / bare':>11}")
    for name, bare, loop in rows:
        print(f"  {name:<16} {bare:>10.1f} {loop:>10.1f} {loop / bare:>11.2f}")
    bad = [name for name, bare, loop in rows if not (math.isfinite(bare) and math.isfinite(loop) and bare > 0)]
    if bad:
        print(f"FAIL: no throughput for {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
