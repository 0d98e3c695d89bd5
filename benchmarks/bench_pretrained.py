"""Transfer learning against training from scratch, on radiographs with real anatomy: the two
pretrained CPU recipes, each trained twice in one process, once from the ImageNet weights of the
`pretrained` extra and once from random initialisation (the same network, data, splits, seed and
schedule), then scored on the test split with `detect eval`'s metrics.

    python benchmarks/bench_pretrained.py FILMS_DIR [--out bench_pretrained] [--arms detector,classifier]

FILMS_DIR: a few real frontal chest radiographs (see benchmarks/real_anatomy.py, which draws the
findings and writes the RSNA and Kermany layouts; the films stay outside the project).

Arms (recipe: what is compared):
- detector   configs/rsna_pretrained_cpu.yaml, efficientnet_lite0_fpn: held-out image-level
             ROC-AUC and box mAP@0.5 on the RSNA layout's patient-level test split;
- classifier configs/kermany2_pretrained_cpu.yaml, efficientnet_lite0: test ROC-AUC and accuracy
             on the Kermany layout's test/ folder, drawn from backgrounds train/ never saw.
"From scratch" keeps every key of the recipe but model.weights=none (and, for the classifier,
no frozen first epoch: there is nothing to protect).

Prints one table: arm, weights, test ROC-AUC, mAP@0.5, accuracy, training wall time and the
process's CPU time over it (on a shared machine the CPU seconds compare, the wall clock may not).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without installing

import torch  # noqa: E402

from benchmarks.real_anatomy import load_backgrounds, write_kermany, write_rsna  # noqa: E402
from detect.evaluation.evaluate import evaluate_checkpoint  # noqa: E402
from detect.training.trainer import run_training  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ARMS = {
    "detector": (REPO / "configs" / "rsna_pretrained_cpu.yaml", "rsna"),
    "classifier": (REPO / "configs" / "kermany2_pretrained_cpu.yaml", "kermany"),
}
SCRATCH_OVERRIDES = {
    "detector": ["model.weights=none"],
    "classifier": ["model.weights=none", "train.freeze_backbone_epochs=0"],
}


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def make_data(films: Path, root: Path, rsna_images: int, kermany_images: int, seed: int) -> dict[str, Path]:
    """The two layouts under `root` (kept when already written by the same arguments)."""
    marker = root / "bench_data.json"
    params = {"films": str(films), "rsna_images": rsna_images, "kermany_images": kermany_images, "seed": seed}
    data = {"rsna": root / "rsna", "kermany": root / "kermany" / "chest_xray"}
    if marker.is_file() and json.loads(marker.read_text()) == params:
        return data
    backgrounds = load_backgrounds(films)
    print(f"data: {len(backgrounds)} real backgrounds from {films}", flush=True)
    print("  rsna:", write_rsna(root / "rsna", backgrounds, rsna_images, seed), flush=True)
    print("  kermany:", write_kermany(root / "kermany", backgrounds, kermany_images, seed), flush=True)
    marker.write_text(json.dumps(params))
    return data


def run_arm(arm: str, weights: str, data: Path, out: Path, extra: list[str]) -> dict:
    recipe, _dataset = ARMS[arm]
    overrides = (SCRATCH_OVERRIDES[arm] if weights == "none" else []) + list(extra)
    run_dir = out / "runs" / f"{arm}-{weights}"
    started, cpu_started = time.perf_counter(), cpu_seconds()
    result = run_training(
        recipe,
        [data],
        out_dir=run_dir,
        overrides=overrides,
        log=lambda line: print(f"  [{arm} {weights}] {line}", flush=True),
    )
    train_s, train_cpu_s = time.perf_counter() - started, cpu_seconds() - cpu_started
    outcome = evaluate_checkpoint(
        run_dir / "checkpoints" / "best.pt",
        [data],
        out / "eval" / f"{arm}-{weights}",
        split="test",
        device="cpu",
        workers=1,
    )
    flat = _flatten(outcome.metrics)
    row = {
        "arm": arm,
        "weights": weights,
        "epochs": result.epochs_completed,
        "train_s": round(train_s, 1),
        "train_cpu_s": round(train_cpu_s, 1),
        "roc_auc": _pick(flat, "roc_auc"),
        "map50": _pick(flat, "map50"),
        "accuracy": _pick(flat, "accuracy"),
    }
    print(f"  [{arm} {weights}] {json.dumps(row)}", flush=True)
    return row


def _flatten(tree: object, prefix: str = "") -> dict[str, object]:
    if isinstance(tree, dict):
        out: dict[str, object] = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): tree}


def _pick(flat: dict[str, object], key: str) -> float | None:
    """The first number named `key` (at any depth) in the eval metrics, None when absent or NaN."""
    for name, value in flat.items():
        if name.rsplit(".", 1)[-1] == key and isinstance(value, (int, float)) and value == value:
            return float(value)
    return None


def environment() -> str:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    cpu = (
        next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            platform.processor(),
        )
        if Path("/proc/cpuinfo").is_file()
        else platform.processor()
    )
    return (
        f"{time.strftime('%Y-%m-%d')}, commit {commit or 'unknown'}, {cpu}, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}, Python {platform.python_version()}"
    )


def fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("films", type=Path, help="folder of real frontal chest radiographs (PNG, JPEG, DICOM)")
    parser.add_argument("--out", type=Path, default=Path("bench_pretrained"))
    parser.add_argument("--arms", default="detector,classifier", help="comma-separated: detector, classifier")
    parser.add_argument("--rsna-images", type=int, default=300)
    parser.add_argument("--kermany-images", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        dest="overrides",
        metavar="KEY=VALUE",
        help="a config override for every arm (e.g. train.max_steps_per_epoch=2 for a smoke run)",
    )
    args = parser.parse_args(argv)
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        raise SystemExit(f"--arms: unknown {unknown}; choose from {', '.join(ARMS)}")
    data = make_data(args.films, args.out / "data", args.rsna_images, args.kermany_images, args.seed)
    started = time.perf_counter()
    rows = [
        run_arm(arm, weights, data[ARMS[arm][1]], args.out, args.overrides)
        for arm in arms
        for weights in ("imagenet", "none")
    ]
    print(f"\nbench_pretrained: {environment()}; {time.perf_counter() - started:.0f} s in all")
    print("| arm | weights | epochs | test ROC-AUC | test mAP@0.5 | test accuracy | train wall (s) | train CPU (s) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['arm']} | {r['weights']} | {r['epochs']} | {fmt(r['roc_auc'])} | {fmt(r['map50'])} | "
            f"{fmt(r['accuracy'])} | {r['train_s']:.0f} | {r['train_cpu_s']:.0f} |"
        )
    (args.out / "bench_pretrained.json").write_text(json.dumps({"environment": environment(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
