"""`detect serve` on loopback against the same predictor called in-process, on the same images.

    python benchmarks/bench_serve.py                          # demo recipe, 1024 px synthetic DICOMs, K = 1, 4
    python benchmarks/bench_serve.py --clients 1 2 8 --requests 64 --workers 2

Both arms do one image's whole way: read the DICOM (data.files.load_image), the one Predictor
(predict_raw), the operating point, finalize_prediction and prediction_to_json. The server arm
adds HTTP on 127.0.0.1 (a real `detect serve` subprocess), the upload, sniffing, the header
pre-check, the pool hand-off and JSON encoding; K client threads send requests back to back.

The table: latency percentiles (ms) and requests/s for the in-process baseline (one caller, as
`detect infer --batch-size 1` runs) and for the server at each K, with the overhead ratios
server p50 / in-process p50 and in-process req/s / server req/s. With one inference worker a
request at K > 1 also waits for the K - 1 ahead of it, so latency grows with K while requests/s
should not fall.

The model is the demo recipe's architecture (configs/demo.yaml) with random weights written as a
checkpoint: serving cost does not depend on what the weights learned.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
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
    parser.add_argument("--requests", type=int, default=48, help="requests per arm and K")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4], help="concurrent clients K")
    parser.add_argument("--workers", type=int, default=1, help="the server's inference workers")
    parser.add_argument("--warmup", type=int, default=4, help="untimed requests first")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads in both arms (1: steady numbers on a shared machine)"
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


def percentiles(latencies_s: list[float]) -> tuple[float, float, float]:
    p50, p95, p99 = np.percentile(np.asarray(latencies_s) * 1000.0, [50, 95, 99])
    return float(p50), float(p95), float(p99)


def bench_in_process(checkpoint: Path, paths: list[Path], args: argparse.Namespace) -> tuple[list[float], float]:
    from detect.data.files import load_image
    from detect.inference.batch import ThresholdChoice, finalize_prediction, pick_operating_point
    from detect.inference.predictor import load_predictor
    from detect.outputs.boxes_json import prediction_to_json
    from detect.predictions import PostprocessSettings

    settings = PostprocessSettings()
    loaded = load_predictor(checkpoint, device="cpu", settings=settings)
    choice = ThresholdChoice()

    def one(path: Path) -> dict:
        image = load_image(path)
        raw = loaded.predictor.predict_raw([image.pixels])[0]
        point = pick_operating_point(loaded.operating_points, choice, is_dicom=image.header is not None)
        return prediction_to_json(
            finalize_prediction(raw, source=path.name, header=image.header, settings=settings, point=point)
        )

    for i in range(args.warmup):
        one(paths[i % len(paths)])
    latencies = []
    start = time.perf_counter()
    for i in range(args.requests):
        t0 = time.perf_counter()
        one(paths[i % len(paths)])
        latencies.append(time.perf_counter() - t0)
    return latencies, args.requests / (time.perf_counter() - start)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(checkpoint: Path, args: argparse.Namespace, log_path: Path) -> tuple[subprocess.Popen, str]:
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
        "--workers",
        str(args.workers),
        "--queue-size",
        str(max(args.clients) * 2),
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


def bench_server(url: str, bodies: list[bytes], clients: int, args: argparse.Namespace) -> tuple[list[float], float]:
    import httpx

    with httpx.Client(base_url=url, timeout=120.0) as http:
        for i in range(args.warmup):
            http.post("/v1/predict", content=bodies[i % len(bodies)]).raise_for_status()
    latencies: list[float] = []
    lock = threading.Lock()
    counter = iter(range(args.requests))

    def client() -> None:
        with httpx.Client(base_url=url, timeout=120.0) as http:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                t0 = time.perf_counter()
                response = http.post("/v1/predict", content=bodies[i % len(bodies)])
                elapsed = time.perf_counter() - t0
                response.raise_for_status()
                with lock:
                    latencies.append(elapsed)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, args.requests / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    sys.path.insert(0, str(REPO_ROOT))
    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench_serve_") as tmp:
        folder = Path(tmp)
        checkpoint, paths = write_inputs(folder, args)
        bodies = [p.read_bytes() for p in paths]
        before, before_rps = bench_in_process(checkpoint, paths, args)
        process, url = start_server(checkpoint, args, folder / "serve.log")
        served = []
        try:
            for clients in args.clients:
                served.append((clients, *bench_server(url, bodies, clients, args)))
        finally:
            process.terminate()
            process.wait(timeout=30)
        after, after_rps = bench_in_process(checkpoint, paths, args)  # before and after: the load drifts
        base_p50, base_p95, base_p99 = percentiles(before + after)
        base_rps = (before_rps + after_rps) / 2
        rows = [("in-process (baseline)", "-", base_p50, base_p95, base_p99, base_rps, 1.0, 1.0)]
        for clients, latencies, rps in served:
            p50, p95, p99 = percentiles(latencies)
            rows.append(
                (f"detect serve, K={clients}", str(clients), p50, p95, p99, rps, p50 / base_p50, base_rps / rps)
            )
    print(
        f"{args.requests} requests per row, {args.images} synthetic {args.image_px} px JPEG-Baseline DICOMs, "
        f"model of {Path(args.config).name} (random weights), CPU, {os.cpu_count()} cores, {args.threads} torch thread(s), "
        f"server workers {args.workers}; in-process: {2 * args.requests} calls, before and after the server"
    )
    print("| arm | K | p50 ms | p95 ms | p99 ms | req/s | p50 / in-process | in-process req/s / req/s |")
    print("|---|---|---|---|---|---|---|---|")
    for name, k, p50, p95, p99, rps, latency_ratio, throughput_ratio in rows:
        print(
            f"| {name} | {k} | {p50:.1f} | {p95:.1f} | {p99:.1f} | {rps:.2f} | {latency_ratio:.2f} | {throughput_ratio:.2f} |"
        )


if __name__ == "__main__":
    main()
