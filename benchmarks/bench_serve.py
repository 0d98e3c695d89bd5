"""`detect serve` on loopback against the in-process Detector, on the same images, in one run.

    python benchmarks/bench_serve.py                        # demo recipe, 1024 px synthetic DICOMs, K = 1, 4, 16
    python benchmarks/bench_serve.py --clients 1 4 16 --requests 48 --max-batch 8

Every arm does one image's whole way: read the DICOM, Detector.prepare, Detector.run,
Detector.finalize and the boxes.json entry (Prediction.to_dict).

    in-process, batch of 1   one caller, one image per run(): `detect infer --batch-size 1`
    in-process, batched      one caller, --max-batch images per run(); a request's latency is
                             its batch's (read, forward pass, finalize)
    detect serve, K          a real `detect serve` subprocess with its default queue and
                             batching (--max-batch, --batch-window-ms), K clients sending
                             requests back to back over 127.0.0.1; adds HTTP, the upload,
                             sniffing, the header check, the queue and the JSON
    detect serve, no batching   the same at the largest K with --max-batch 1

The in-process arms run before and after the server arms (the machine's load drifts) and are
pooled. The table: p50 / p99 latency (ms), requests/s, the server's mean batch size, and each
row's ratios to the in-process batch of 1 (requests/s over its requests/s, p50 over its p50).

The model is the demo recipe's architecture (configs/demo.yaml) with random weights written as a
checkpoint: serving cost does not depend on what the weights learned. `--threads` torch threads
in every arm (OMP_NUM_THREADS for the server): 1 gives steady numbers on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config", default=str(REPO_ROOT / "configs" / "demo.yaml"), help="recipe whose model is served"
    )
    parser.add_argument("--images", type=int, default=8, help="distinct synthetic DICOMs (cycled)")
    parser.add_argument("--image-px", type=int, default=1024, help="synthetic image size (RSNA: 1024)")
    parser.add_argument("--requests", type=int, default=48, help="requests per row")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16], help="concurrent clients K")
    parser.add_argument("--max-batch", type=int, default=8, help="the server's --max-batch and the batched arm's size")
    parser.add_argument("--workers", type=int, default=1, help="the server's inference threads (--threads)")
    parser.add_argument("--warmup", type=int, default=4, help="untimed requests first, per arm")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads in every arm (1: steady numbers on a shared machine)"
    )
    return parser.parse_args(argv)


def write_inputs(folder: Path, args: argparse.Namespace) -> tuple[Path, list[Path]]:
    import torch

    from data_prep.synth import render_chest_radiograph, write_jpeg_baseline_dicom
    from detect.config import load_config
    from detect.models.build import build_model
    from detect.models.checkpoint import save_checkpoint

    cfg = load_config(args.config, ["model.weights=none", "train.device=cpu"])
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.data.image_size_px)
    checkpoint = save_checkpoint(folder / "best.pt", model=model, cfg=cfg, epoch=1, global_step=1)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(args.images):
        pixels, _boxes = render_chest_radiograph(rng, args.image_px, args.image_px, opacities=i % 3)
        path = folder / f"synthetic_{i}.dcm"
        write_jpeg_baseline_dicom(
            path,
            pixels,
            patient_id=f"bench-{i}",
            sex="F",
            age="50",
            view_position="PA",
            pixel_spacing_mm=0.143,
            sop_instance_uid=f"1.2.276.0.7230010.3.1.4.8323329.{i + 1}.1",
        )
        paths.append(path)
    return checkpoint, paths


def percentiles(latencies_s: list[float]) -> tuple[float, float]:
    p50, p99 = np.percentile(np.asarray(latencies_s) * 1000.0, [50, 99])
    return float(p50), float(p99)


def bench_in_process(detector, paths: list[Path], batch: int, args: argparse.Namespace) -> tuple[list[float], float]:
    """Latencies (s) and requests/s of `args.requests` images in runs of `batch`."""

    def one_batch(chunk: list[Path]) -> float:
        started = time.perf_counter()
        prepared = [detector.prepare(path) for path in chunk]
        raws = detector.run(prepared)
        for raw, item in zip(raws, prepared):
            detector.finalize(raw, item).to_dict()
        return time.perf_counter() - started

    order = [paths[i % len(paths)] for i in range(args.requests)]
    one_batch(order[: max(1, min(batch, args.warmup))])
    latencies: list[float] = []
    started = time.perf_counter()
    for i in range(0, len(order), batch):
        chunk = order[i : i + batch]
        latencies += [one_batch(chunk)] * len(chunk)  # each request waits for its whole batch
    return latencies, len(order) / (time.perf_counter() - started)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(
    checkpoint: Path, args: argparse.Namespace, log_path: Path, max_batch: int
) -> tuple[subprocess.Popen, str]:
    import httpx

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        sys.executable,
        str(REPO_ROOT / "cli.py"),
        "serve",
        "--checkpoint",
        str(checkpoint),
        "--port",
        str(port),
        "--device",
        "cpu",
        "--threads",
        str(args.workers),
        "--max-batch",
        str(max_batch),
    ]
    log = open(log_path, "w")
    process = subprocess.Popen(
        command,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": str(args.threads)},
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"detect serve exited: {log_path.read_text()[-2000:]}")
        try:
            if httpx.get(url + "/readyz", timeout=1.0).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.2)
    process.terminate()
    raise SystemExit("detect serve did not become ready")


async def _bench_server(
    url: str, bodies: list[bytes], clients: int, args: argparse.Namespace
) -> tuple[list[float], float, float]:
    import httpx

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=300.0, limits=limits) as http:
        for i in range(args.warmup):
            (await http.post("/v1/predict", content=bodies[i % len(bodies)])).raise_for_status()
        latencies: list[float] = []
        batch_sizes: list[int] = []
        counter = iter(range(args.requests))

        async def client() -> None:  # back to back: the next request once the last is answered
            for i in counter:
                started = time.perf_counter()
                response = await http.post("/v1/predict", content=bodies[i % len(bodies)])
                elapsed = time.perf_counter() - started
                response.raise_for_status()
                latencies.append(elapsed)
                batch_sizes.append(int(response.json()["batch_size"]))

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        rate = args.requests / (time.perf_counter() - started)
    return latencies, rate, float(np.mean(batch_sizes))


def bench_server(
    checkpoint: Path, bodies: list[bytes], clients: list[int], max_batch: int, folder: Path, args: argparse.Namespace
) -> list[tuple[int, list[float], float, float]]:
    process, url = start_server(checkpoint, args, folder / f"serve_batch{max_batch}.log", max_batch)
    try:
        return [(k, *asyncio.run(_bench_server(url, bodies, k, args))) for k in clients]
    finally:
        process.terminate()
        process.wait(timeout=30)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    sys.path.insert(0, str(REPO_ROOT))
    import torch

    from detect.inference.api import Detector

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench_serve_") as tmp:
        folder = Path(tmp)
        checkpoint, paths = write_inputs(folder, args)
        bodies = [p.read_bytes() for p in paths]
        detector = Detector.from_checkpoint(checkpoint, device="cpu")

        def in_process() -> dict[int, tuple[list[float], float]]:
            return {batch: bench_in_process(detector, paths, batch, args) for batch in (1, args.max_batch)}

        before = in_process()
        served = bench_server(checkpoint, bodies, args.clients, args.max_batch, folder, args)
        unbatched = bench_server(checkpoint, bodies, [max(args.clients)], 1, folder, args)
        after = in_process()  # before and after: the load drifts

    rows = []
    for batch, name in ((1, "in-process, batch of 1"), (args.max_batch, f"in-process, batches of {args.max_batch}")):
        latencies = before[batch][0] + after[batch][0]
        rows.append((name, "1", latencies, (before[batch][1] + after[batch][1]) / 2, float(batch)))
    for k, latencies, rate, mean_batch in served:
        rows.append((f"detect serve (--max-batch {args.max_batch})", str(k), latencies, rate, mean_batch))
    for k, latencies, rate, mean_batch in unbatched:
        rows.append(("detect serve, no batching (--max-batch 1)", str(k), latencies, rate, mean_batch))
    base_p50, _ = percentiles(rows[0][2])
    base_rate = rows[0][3]

    print(
        f"{args.requests} requests per row, {args.images} synthetic {args.image_px} px JPEG-Baseline DICOMs, "
        f"model of {Path(args.config).name} (random weights), CPU, {os.cpu_count()} cores, {args.threads} torch "
        f"thread(s) per arm, server --threads {args.workers}; in-process rows: before and after the server, pooled"
    )
    print("| arm | K | p50 ms | p99 ms | req/s | mean batch | req/s vs in-process batch of 1 | p50 vs it |")
    print("|---|---|---|---|---|---|---|---|")
    for name, k, latencies, rate, mean_batch in rows:
        p50, p99 = percentiles(latencies)
        print(
            f"| {name} | {k} | {p50:.1f} | {p99:.1f} | {rate:.2f} | {mean_batch:.1f} | "
            f"{rate / base_rate:.2f} | {p50 / base_p50:.2f} |"
        )


if __name__ == "__main__":
    main()
