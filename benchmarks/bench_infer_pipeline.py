"""`detect infer` throughput on a folder: how much of the wall time is spent waiting for decoding.

    python benchmarks/bench_infer_pipeline.py                      # 64 synthetic 1024 px DICOMs, the CPU recipe's model
    python benchmarks/bench_infer_pipeline.py --images 200 --rounds 2
    python benchmarks/bench_infer_pipeline.py --tiny-model         # a model as fast as reading: the GPU case
    python benchmarks/bench_infer_pipeline.py --smoke              # seconds: a tiny model on 4 small DICOMs

Writes N synthetic RSNA DICOMs (JPEG Baseline, as on Kaggle) and an untrained checkpoint of the
CPU recipe's model (configs/cpu_rsna.yaml: MobileNetV3-Large FPN at 320 px, no downloaded
weights), then runs `run_inference` (what `detect infer` runs) over the folder in this process,
once per arm:

    serial              workers=0: each batch decoded in the predicting thread, then the model
                        (no overlap), torch's intra-op threads = all cores (and = cores - readers,
                        to compare with the reduced arm at equal torch threads)
    overlap, all cores  N reader threads decode the next batches while the model runs, torch
    (default)           still on all cores: what `detect infer` does on the CPU
                        (detect.inference.batch.cpu_torch_threads)
    overlap, fewer      the same with torch's threads = cores - readers (a core per reader)

Each arm's torch threads are pinned through OMP_NUM_THREADS, which `detect infer` respects.
For each arm it prints the wall time, the time in the predictor (model + map back), the time
the predicting thread waited for batches to be read (decoded and letterboxed: in the serial arm
it does that itself, so this is the whole read time), that wait as a share of the wall time
(the goal: below 10% with the reader threads) and images/s with its ratio to the serial arm.
The first `--warmup` images are predicted once before timing (allocator, first-call set-up).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without installing

from data_prep.synth import synth_rsna
from detect.config import load_config
from detect.data.files import default_read_workers
from detect.inference.batch import InferenceResult, cpu_torch_threads, run_inference
from detect.models.build import build_model
from detect.models.checkpoint import save_checkpoint

ROOT = Path(__file__).resolve().parent.parent
# --smoke / --tiny-model: a tiny model and few proposals, a forward pass about as long as reading
# the image: what the pipeline sees with a GPU, where reading is what can hold the model up.
SMOKE_OVERRIDES = (
    "model.head_hidden_dim=32",
    "data.image_size_px=64",
    "model.rpn_pre_nms_top_n_test=50",
    "model.rpn_post_nms_top_n_test=10",
    "model.box_detections_per_img=5",
)


@dataclass(frozen=True)
class Arm:
    name: str
    workers: int
    torch_threads: int


@dataclass(frozen=True)
class ArmResult:
    arm: Arm
    wall_s: float
    predicting_s: float
    waiting_s: float
    n_images: int

    @property
    def images_per_s(self) -> float:
        return self.n_images / max(self.wall_s, 1e-9)

    @property
    def decode_share(self) -> float:
        return self.waiting_s / max(self.wall_s, 1e-9)


def make_checkpoint(config: Path, overrides: list[str], path: Path) -> Path:
    cfg = load_config(config, ["model.weights=none", "train.device=cpu", *overrides])
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.data.image_size_px)
    return save_checkpoint(path, model=model, cfg=cfg, epoch=1, global_step=1)


def run_arm(arm: Arm, folder: Path, checkpoint: Path, out_dir: Path, batch_size: int) -> ArmResult:
    previous, previous_env = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    torch.set_num_threads(arm.torch_threads)
    os.environ["OMP_NUM_THREADS"] = str(arm.torch_threads)  # run_inference then keeps this arm's setting
    try:
        result: InferenceResult = run_inference(
            [folder],
            out_path=out_dir / "boxes.json",
            checkpoint=checkpoint,
            device="cpu",
            batch_size=batch_size,
            workers=arm.workers,
            log_every_images=10**9,
            log_every_seconds=1e9,
        )
    finally:
        torch.set_num_threads(previous)
        if previous_env is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = previous_env
    return ArmResult(
        arm, result.wall_s, result.times.predicting_s, result.times.waiting_for_reads_s, result.times.n_images
    )


def arms_for(cores: int, workers: int) -> list[Arm]:
    default = cpu_torch_threads(workers, cores)
    fewer = max(1, cores - workers)
    arms = [Arm("serial (decode, then model)", 0, default)]
    if fewer != default:  # the serial run at the reduced arm's torch threads
        arms.append(Arm("serial, torch on cores - readers", 0, fewer))
    arms.append(Arm("overlap, torch on all cores (default)", workers, default))
    if fewer != default:
        arms.append(Arm("overlap, torch on cores - readers", workers, fewer))
    return arms


def print_table(results: list[ArmResult], header: str) -> None:
    print(f"\n{header}")
    print(
        f"{'arm':<46} {'readers':>7} {'torch':>5} {'wall s':>7} {'model s':>8} {'wait s':>7} "
        f"{'decode %':>8} {'images/s':>9} {'vs serial':>9}"
    )
    serial = results[0].images_per_s
    for r in results:
        print(
            f"{r.arm.name:<46} {r.arm.workers:>7} {r.arm.torch_threads:>5} {r.wall_s:>7.2f} {r.predicting_s:>8.2f} "
            f"{r.waiting_s:>7.2f} {100 * r.decode_share:>7.1f}% {r.images_per_s:>9.2f} {r.images_per_s / serial:>8.2f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "configs" / "cpu_rsna.yaml"), help="the model's recipe")
    parser.add_argument("--images", type=int, default=64, help="synthetic RSNA DICOMs to predict")
    parser.add_argument("--size-px", type=int, default=1024, help="their size (RSNA's is 1024)")
    parser.add_argument("--batch-size", type=int, default=4, help="cpu_rsna's batch size")
    parser.add_argument(
        "--workers", type=int, default=None, help="reader threads of the overlap arms (default: detect's)"
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="run every arm this many times, interleaved; keep the fastest"
    )
    parser.add_argument("--warmup", type=int, default=4, help="images predicted once before timing")
    parser.add_argument("--dir", default=None, help="reuse/keep the synthetic data here")
    parser.add_argument(
        "--tiny-model",
        action="store_true",
        help="MobileNetV3 at 64 px with few proposals instead of the recipe's model: a forward pass "
        "about as fast as a read, as with a GPU",
    )
    parser.add_argument(
        "--smoke", action="store_true", help="4 small DICOMs, a tiny model: checks the script in seconds"
    )
    args = parser.parse_args()
    overrides: list[str] = list(SMOKE_OVERRIDES) if args.tiny_model else []
    if args.smoke:
        args.images, args.size_px, args.warmup, args.rounds, args.batch_size = 4, 128, 1, 1, 2
        overrides = list(SMOKE_OVERRIDES)
    cores = os.cpu_count() or 1
    workers = default_read_workers("cpu") if args.workers is None else args.workers

    with tempfile.TemporaryDirectory(prefix="bench_infer_pipeline_") as tmp:
        root = Path(args.dir) if args.dir else Path(tmp)
        data = root / f"rsna_{args.images}_{args.size_px}"
        if not (data / "stage_2_train_labels.csv").exists():
            started = time.perf_counter()
            synth_rsna(data, n_images=args.images, size_px=args.size_px, seed=0, workers=min(2, cores))
            print(
                f"wrote {args.images} synthetic {args.size_px} px RSNA DICOMs in {time.perf_counter() - started:.1f} s"
            )
        images = data / "stage_2_train_images"
        checkpoint = make_checkpoint(Path(args.config), overrides, Path(tmp) / "best.pt")
        warm = Path(tmp) / "warm"
        warm.mkdir()
        for path in sorted(images.iterdir())[: args.warmup]:
            (warm / path.name).symlink_to(path)
        run_arm(
            Arm("warm-up", 0, cpu_torch_threads(workers, cores)),
            warm,
            checkpoint,
            Path(tmp) / "warm_out",
            args.batch_size,
        )

        arms = arms_for(cores, workers)
        best: dict[str, ArmResult] = {}
        for round_index in range(args.rounds):
            for k, arm in enumerate(arms):
                r = run_arm(arm, images, checkpoint, Path(tmp) / f"out{round_index}_{k}", args.batch_size)
                if arm.name not in best or r.wall_s < best[arm.name].wall_s:
                    best[arm.name] = r
        model_size = load_config(args.config, ["model.weights=none", *overrides])
    print_table(
        [best[a.name] for a in arms],
        f"detect infer over {args.images} synthetic {args.size_px} px RSNA DICOMs (JPEG Baseline): "
        f"{model_size.model.name} at {model_size.data.image_size_px} px (untrained), batch {args.batch_size}, "
        f"CPU, {cores} cores, best of {args.rounds} round(s)",
    )
    print(
        "decode % = time the predicting thread waited for decoded (and letterboxed) batches / wall time (goal with readers: < 10%)"
    )


if __name__ == "__main__":
    main()
