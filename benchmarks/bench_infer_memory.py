"""Memory of `detect infer` over many files: resident set size while an archive is predicted.

    python benchmarks/bench_infer_memory.py --images 20000

Writes N small synthetic PNGs (64 x 48 px, so the run measures the bookkeeping, not the
decoding of big images) and a tiny untrained MobileNetV3 checkpoint at 64 px, then runs
`run_inference` over the folder in this process while a thread samples VmRSS. It prints RSS
after each tenth of the images and the ratio of the last to the first sample: a streaming run
stays near 1.0 whatever N is (each result goes to the JSON Lines part as it is made; boxes.json
is assembled from it at the end, entry by entry).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without installing

from detect.config import config_from_dict
from detect.inference.batch import run_inference
from detect.inference.jsonl import part_path
from detect.models.build import build_model
from detect.models.checkpoint import save_checkpoint

TINY = (
    "model.name=mobilenet_v3_large_fpn",
    "model.weights=none",
    "model.trainable_backbone_layers=6",
    "model.head_hidden_dim=32",
    "data.image_size_px=64",
    "train.device=cpu",
    # few proposals: the run measures the bookkeeping of 20,000 images, not the RoI head
    "model.rpn_pre_nms_top_n_test=100",
    "model.rpn_post_nms_top_n_test=20",
    "model.box_detections_per_img=5",
)


def rss_mib() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def write_images(folder: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        sub = folder / f"{i // 1000:03d}"
        sub.mkdir(exist_ok=True)
        cv2.imwrite(str(sub / f"img{i:06d}.png"), rng.integers(0, 255, (48, 64), dtype=np.uint8))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(2)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        write_images(root / "archive", args.images)
        print(f"wrote {args.images} synthetic PNGs in {time.perf_counter() - started:.1f} s")
        cfg = config_from_dict({}, list(TINY))
        torch.manual_seed(0)
        model = build_model(cfg.model, cfg.data.image_size_px)
        checkpoint = save_checkpoint(root / "best.pt", model=model, cfg=cfg, epoch=1, global_step=1)
        out = root / "boxes.json"
        part = part_path(out)

        samples: list[tuple[float, int, float]] = []  # (seconds, images written, RSS MiB)
        stop = threading.Event()

        def sample() -> None:
            t0 = time.perf_counter()
            while not stop.is_set():
                done = max(0, part.read_bytes().count(b"\n") - 1) if part.is_file() else 0
                samples.append((time.perf_counter() - t0, done, rss_mib()))
                stop.wait(0.5)

        baseline = rss_mib()
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.perf_counter()
        result = run_inference(
            [root / "archive"],
            out_path=out,
            checkpoint=checkpoint,
            device="cpu",
            batch_size=args.batch_size,
            workers=args.workers,
            log_every_images=10**9,
        )
        seconds = time.perf_counter() - started
        stop.set()
        sampler.join()
        end_rss = rss_mib()

    print(
        f"predicted {result.n_predicted} images in {seconds:.1f} s ({result.n_predicted / seconds:.1f} images/s), "
        f"batch {args.batch_size}, {args.workers} reader threads, CPU"
    )
    print(f"RSS before the run (model and torch loaded, no images): {baseline:.0f} MiB")
    print(f"{'images written':>15} {'RSS MiB':>9}")
    marks = [args.images * k // 10 for k in range(1, 11)]
    shown = []
    for mark in marks:
        at = next((s for s in samples if s[1] >= mark), samples[-1] if samples else None)
        if at is not None:
            shown.append(at)
            print(f"{at[1]:>15} {at[2]:>9.0f}")
    print(f"after boxes.json was assembled: {end_rss:.0f} MiB")
    if shown:
        print(f"ratio RSS(last tenth) / RSS(first tenth): {shown[-1][2] / shown[0][2]:.3f}")


if __name__ == "__main__":
    main()
