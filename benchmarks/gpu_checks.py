"""The GPU checks in one run (a few minutes on one CUDA GPU; seconds with --smoke on a CPU).

    python benchmarks/gpu_checks.py                 # on a CUDA machine: everything, ~256 synthetic DICOMs
    python benchmarks/gpu_checks.py --smoke         # checks the script: tiny sizes; CUDA-only steps skipped on a CPU
    OUT=/some/folder python benchmarks/gpu_checks.py  # also writes $OUT/gpu_checks.json

Three checks on the same synthetic RSNA DICOMs (1024 px, JPEG Baseline, as on Kaggle):

    train    one epoch of configs/gpu_rsna.yaml (ResNet-50 FPN v2 at 512 px, untrained weights):
             detect's pipeline (preprocessing cache + AMP + channels_last + DataLoader workers)
             against a plain fp32 loop that decodes every DICOM on every access, images/s of each
             (benchmarks/bench_train.py --epoch, in this process)
    infer    the one predictor's forward pass (detect.inference.predictor.Predictor.run) on
             letterboxed inputs prepared beforehand, images/s: eager fp32, AMP (detect.devices.autocast),
             AMP + channels_last (weights and the backbone's input; the first convolution's input and
             output formats are printed, so a silent NCHW fallback shows)
    decode   the encapsulated JPEG frames: libjpeg-turbo on the CPU (what detect reads with,
             data_prep.codestreams.decode_jpeg, one thread), torchvision's CPU decode, and nvJPEG
             (torchvision.io.decode_jpeg(device="cuda") on batches of frames), images/s and the
             largest grey-level difference from the CPU decode

Every CUDA-only step says "no CUDA device: skipped" on a machine without one; there the rest
runs at --smoke size. A check that fails is a FAILED row (traceback printed) and the others
still run; the exit status is then 1. Prints one table at the end; with $OUT set (or --json)
writes the numbers.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
import torch
from pydicom.encaps import get_frame
from torchvision.io import ImageReadMode
from torchvision.io import decode_jpeg as tv_decode_jpeg

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_train  # noqa: E402  (a sibling benchmark script, not a package)

from data_prep.codestreams import decode_jpeg  # noqa: E402
from data_prep.synth import synth_rsna  # noqa: E402
from detect.config import load_config  # noqa: E402
from detect.data.files import load_image  # noqa: E402
from detect.inference.predictor import Predictor  # noqa: E402
from detect.models.build import build_model  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SKIPPED = "no CUDA device: skipped"
SMOKE_MODEL = (
    "model.name=mobilenet_v3_large_fpn",
    "data.image_size_px=64",
    "model.head_hidden_dim=32",
    "model.rpn_pre_nms_top_n_test=50",
    "model.rpn_post_nms_top_n_test=10",
    "model.box_detections_per_img=5",
)


@dataclass
class Row:
    check: str
    arm: str
    images_per_s: float | None
    ratio: float | None = None
    note: str = ""


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    details: dict = field(default_factory=dict)

    def add(
        self, check: str, arm: str, images_per_s: float | None, baseline: float | None = None, note: str = ""
    ) -> None:
        ratio = images_per_s / baseline if images_per_s is not None and baseline else None
        self.rows.append(Row(check, arm, images_per_s, ratio, note))
        rate = f"{images_per_s:.1f} images/s" if images_per_s is not None else note
        print(f"  {check}: {arm}: {rate}" + (f" ({ratio:.2f}x)" if ratio is not None else ""), flush=True)

    def skip(self, check: str, arm: str) -> None:
        self.rows.append(Row(check, arm, None, None, SKIPPED))
        print(f"  {check}: {arm}: {SKIPPED}", flush=True)

    def print_table(self, header: str) -> None:
        print(f"\n{header}")
        print(f"{'check':<7} {'arm':<46} {'images/s':>9} {'ratio':>7}  note")
        for r in self.rows:
            rate = f"{r.images_per_s:9.1f}" if r.images_per_s is not None else f"{'-':>9}"
            ratio = f"{r.ratio:6.2f}x" if r.ratio is not None else f"{'':>7}"
            print(f"{r.check:<7} {r.arm:<46} {rate} {ratio}  {r.note}")


def check_train(report: Report, data_root: Path, args: argparse.Namespace, cuda: bool) -> None:
    argv = ["--epoch", "--images", str(args.images), "--dir", str(data_root), "--workers", str(args.workers)]
    if args.smoke:
        argv = ["--smoke", "--dir", str(data_root)]
    results = bench_train.run(bench_train.parse_args(argv))
    report.details["train"] = results
    report.add(
        "train",
        "plain (fp32, pydicom decode every access)",
        results["plain_images_per_s"],
        results["plain_images_per_s"],
        note=f"{results['model']} {results['image_size_px']} px, one epoch",
    )
    arm = (
        "detect (cache"
        + (" + AMP" if results["amp"] else "")
        + (" + channels_last" if results["channels_last"] else "")
        + ", workers)"
    )
    probe = results["channels_last"]
    note = (
        ""
        if probe is None
        else ("channels_last checked on the first conv" if probe["applied"] else "channels_last NOT applied")
    )
    report.add("train", arm, results["detect_images_per_s"], results["plain_images_per_s"], note=note)
    if not cuda:
        report.skip("train", "the same with AMP + channels_last on CUDA")


def _time_forward(predictor: Predictor, inputs: list, batch_size: int, batches: int, warmup: int) -> float:
    chunks = [inputs[i : i + batch_size] for i in range(0, len(inputs) - batch_size + 1, batch_size)] or [inputs]
    for k in range(warmup):
        predictor.run(chunks[k % len(chunks)])
    if predictor.device.type == "cuda":
        torch.cuda.synchronize(predictor.device)
    started, n = time.perf_counter(), 0
    for k in range(batches):
        chunk = chunks[k % len(chunks)]
        predictor.run(chunk)  # its outputs come back to numpy: the GPU is done when it returns
        n += len(chunk)
    return n / (time.perf_counter() - started)


def check_infer(report: Report, files: list[Path], args: argparse.Namespace, device: torch.device) -> None:
    overrides = ["model.weights=none", *(SMOKE_MODEL if args.smoke else ())]
    cfg = load_config(ROOT / "configs" / "gpu_rsna.yaml", overrides)
    size = cfg.data.image_size_px
    torch.manual_seed(0)
    model = build_model(cfg.model, size)
    plain = Predictor(copy.deepcopy(model), size, device)
    inputs = [plain.prepare(load_image(f).pixels) for f in files]
    batch = min(args.infer_batch_size, len(inputs))
    fp32 = _time_forward(plain, inputs, batch, args.infer_batches, args.warmup)
    note = f"{cfg.model.name} {size} px, batch {batch}"
    report.add("infer", "eager fp32", fp32, fp32, note=note)
    report.details["infer"] = {
        "model": cfg.model.name,
        "image_size_px": size,
        "batch_size": batch,
        "fp32_images_per_s": fp32,
    }
    if device.type != "cuda":
        report.skip("infer", "AMP (fp16 autocast)")
        report.skip("infer", "AMP + channels_last")
        # channels_last itself works on a CPU: this checks that the probe sees it reach the model
        last_model = copy.deepcopy(model)
        probe = bench_train.apply_channels_last(last_model)
        rate = _time_forward(Predictor(last_model, size, device), inputs, batch, max(1, args.infer_batches // 2), 1)
        report.add(
            "infer",
            "fp32 + channels_last (CPU, a check of the probe)",
            rate,
            fp32,
            note="channels_last checked on the first conv" if probe.applied else "channels_last NOT applied",
        )
        report.details["infer"]["channels_last"] = {"applied": probe.applied, "cpu_images_per_s": rate}
        return
    amp = _time_forward(
        Predictor(copy.deepcopy(model), size, device, amp=True), inputs, batch, args.infer_batches, args.warmup
    )
    report.add("infer", "AMP (fp16 autocast)", amp, fp32)
    last_model = copy.deepcopy(model)
    probe = bench_train.apply_channels_last(last_model)
    last = _time_forward(Predictor(last_model, size, device, amp=True), inputs, batch, args.infer_batches, args.warmup)
    report.add(
        "infer",
        "AMP + channels_last",
        last,
        fp32,
        note="channels_last checked on the first conv" if probe.applied else "channels_last NOT applied",
    )
    report.details["infer"].update(
        amp_images_per_s=amp,
        amp_channels_last_images_per_s=last,
        channels_last={"applied": probe.applied, "weights_channels_last": probe.weights_channels_last},
    )


def encapsulated_frames(files: list[Path]) -> list[bytes]:
    """Each DICOM's single JPEG frame, taken out of the encapsulation as data_prep.dicom does."""
    return [bytes(get_frame(pydicom.dcmread(f).PixelData, 0, number_of_frames=1)) for f in files]


def _best_rate(run, n: int, rounds: int, cuda: bool = False) -> float:
    best = float("inf")
    for _ in range(rounds):
        if cuda:
            torch.cuda.synchronize()
        started = time.perf_counter()
        run()
        if cuda:
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - started)
    return n / best


def check_decode(report: Report, files: list[Path], args: argparse.Namespace, cuda: bool) -> None:
    frames = encapsulated_frames(files)
    reference = [decode_jpeg(f) for f in frames]
    cpu = _best_rate(lambda: [decode_jpeg(f) for f in frames], len(frames), args.rounds)
    height, width = reference[0].shape
    report.add(
        "decode",
        "CPU libjpeg-turbo (detect's, strict, 1 thread)",
        cpu,
        cpu,
        note=f"{len(frames)} frames {width}x{height}",
    )
    tensors = [torch.frombuffer(bytearray(f), dtype=torch.uint8) for f in frames]
    tv_cpu = _best_rate(lambda: tv_decode_jpeg(tensors, mode=ImageReadMode.GRAY), len(frames), args.rounds)
    report.add("decode", "CPU torchvision.io.decode_jpeg (1 thread)", tv_cpu, cpu)
    report.details["decode"] = {"frames": len(frames), "cpu_images_per_s": cpu, "torchvision_cpu_images_per_s": tv_cpu}
    if not cuda:
        report.skip("decode", f"nvJPEG, batches of {args.decode_batch}")
        return
    batches = [tensors[i : i + args.decode_batch] for i in range(0, len(tensors), args.decode_batch)]

    def on_gpu():
        return [image for chunk in batches for image in tv_decode_jpeg(chunk, mode=ImageReadMode.GRAY, device="cuda")]

    decoded = on_gpu()  # warm-up: nvJPEG handles, CUDA context
    gpu = _best_rate(on_gpu, len(frames), args.rounds, cuda=True)
    max_diff = max(
        int(np.abs(d[0].cpu().numpy().astype(np.int16) - r.astype(np.int16)).max()) for d, r in zip(decoded, reference)
    )
    report.add(
        "decode",
        f"nvJPEG, batches of {args.decode_batch} (decoded on the GPU)",
        gpu,
        cpu,
        note=f"max |GPU - CPU| = {max_diff} grey levels",
    )
    report.details["decode"].update(nvjpeg_images_per_s=gpu, nvjpeg_batch=args.decode_batch, max_abs_diff_grey=max_diff)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=256, help="synthetic 1024 px RSNA DICOMs (one epoch of them)")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="DataLoader workers (train)")
    parser.add_argument("--infer-batch-size", type=int, default=16)
    parser.add_argument("--infer-batches", type=int, default=20, help="timed forward passes per inference arm")
    parser.add_argument("--decode-batch", type=int, default=64, help="frames per nvJPEG call")
    parser.add_argument("--rounds", type=int, default=3, help="decode: best of this many passes over the frames")
    parser.add_argument("--warmup", type=int, default=3, help="untimed forward passes per inference arm")
    parser.add_argument("--dir", default=None, help="keep the synthetic data here (default: a temporary folder)")
    parser.add_argument(
        "--json", default=None, help="write the results here (default: $OUT/gpu_checks.json when OUT is set)"
    )
    parser.add_argument(
        "--budget-s",
        type=float,
        default=360.0,
        help="a check that would start later than this many seconds into the run is not started "
        "(the whole run must fit a GPU lease of 8 minutes)",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script in well under a minute")
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    if not cuda and not args.smoke:
        print("no CUDA device: the CUDA-only steps are skipped and the rest runs at --smoke size")
        args.smoke = True
    if args.smoke:
        args.images, args.infer_batch_size, args.infer_batches, args.warmup, args.rounds = 8, 4, 2, 1, 1
        args.decode_batch = 4
        torch.set_num_threads(1)  # a shared 2-core machine: two intra-op threads run many times slower
    device = torch.device("cuda" if cuda else "cpu")
    name = torch.cuda.get_device_name(device) if cuda else f"CPU ({os.cpu_count()} cores), no CUDA device"
    print(f"gpu_checks on {name}: {args.images} synthetic 1024 px RSNA DICOMs" + (" (--smoke)" if args.smoke else ""))
    started = time.perf_counter()
    report = Report()
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="gpu_checks_") as tmp:
        root = Path(args.dir) if args.dir else Path(tmp)
        size_px = 128 if args.smoke else 1024  # bench_train --smoke's DICOMs
        data = root / f"rsna_{args.images}_{size_px}"
        if not (data / "stage_2_train_labels.csv").exists():
            synth_rsna(
                data,
                n_images=args.images,
                size_px=size_px,
                seed=0,
                class_fractions=(0.3, 0.3, 0.4),
                workers=max(1, min(8, os.cpu_count() or 1)),
            )
        files = sorted((data / "stage_2_train_images").glob("*.dcm"))
        for title, check in (
            ("train", lambda: check_train(report, root, args, cuda)),
            ("infer", lambda: check_infer(report, files, args, device)),
            ("decode", lambda: check_decode(report, files, args, cuda)),
        ):
            section = time.perf_counter()
            print(f"\n[{title}]", flush=True)
            if section - started > args.budget_s:
                report.rows.append(Row(title, "not run", None, None, f"past the --budget-s of {args.budget_s:.0f} s"))
                print(f"  past the --budget-s of {args.budget_s:.0f} s: skipped", flush=True)
                continue
            try:
                check()
            except Exception as exc:  # one failed check must not cost the others' numbers on a rented GPU
                traceback.print_exc()
                failures.append(title)
                report.rows.append(
                    Row(title, "FAILED", None, None, " ".join(f"{type(exc).__name__}: {exc}".split())[:160])
                )
            report.details.setdefault("seconds", {})[title] = time.perf_counter() - section
    total_s = time.perf_counter() - started
    report.print_table(
        f"gpu_checks: {name}; {args.images} synthetic {size_px} px RSNA DICOMs; {total_s:.0f} s in all"
        + (" (--smoke: sizes too small for the numbers to mean anything)" if args.smoke else "")
    )
    out = args.json or (str(Path(os.environ["OUT"]) / "gpu_checks.json") if os.environ.get("OUT") else None)
    if out:
        document = {
            "device": name,
            "smoke": args.smoke,
            "seconds": total_s,
            "command": " ".join(sys.argv),
            "failed": failures,
            "rows": [r.__dict__ for r in report.rows],
            "details": report.details,
        }
        Path(out).write_text(json.dumps(document, indent=2))
        print(f"wrote {out}")
    if failures:
        sys.exit(f"gpu_checks: {', '.join(failures)} failed (traceback above)")


if __name__ == "__main__":
    main()
