"""run_server: load the model once, then serve it with uvicorn (one process, `workers` threads).

The checkpoint is loaded and warmed up (two predictions of a blank image, the second timed: the
wait estimate's first measurement, detect.serve.pool) before the port is opened, so a bad
checkpoint is a one-line `error: ...` (exit 2) and a running server is always ready. Binding
anything but loopback prints a warning: the server speaks plain HTTP and belongs behind a TLS
reverse proxy.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import uvicorn

from detect.inference.api import Detector
from detect.serve.app import create_app
from detect.serve.guard import guarded_h11_protocol
from detect.serve.predict import ServeModel
from detect.serve.settings import ServeSettings

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def run_server(
    checkpoint: str | Path | None,
    settings: ServeSettings,
    *,
    runs_dir: str | Path = "runs",
    echo: Callable[[str], None] = print,
) -> None:
    """Serve until interrupted. Raises DetectError (before listening) for a bad checkpoint."""
    detector = Detector.from_checkpoint(checkpoint, settings.inference, runs_dir=runs_dir)
    model = ServeModel(detector)
    loaded = detector.model
    app = create_app(model, settings)
    app.state.pool.record(model.warm_up(), 1)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    if not settings.is_loopback:
        echo(
            f"warning: listening on {settings.host}, reachable from other machines over plain HTTP; "
            "put a TLS reverse proxy in front (docs/security.md) and consider DETECT_SERVE_TOKEN"
        )
    echo(
        f"detect serve: model {loaded.model_info['name']} from {loaded.checkpoint_path} on {loaded.predictor.device}; "
        f"{settings.workers} worker(s), batches of up to {settings.max_batch} ({settings.batch_window_ms:g} ms window), "
        f"queued while the expected wait is <= {settings.max_wait_s:g} s (at most {settings.queue_size}), "
        f"uploads up to {settings.max_upload_mb:g} MiB; "
        f"http://{settings.host}:{settings.port}/"
    )
    # access_log off: our middleware logs /v1/* without query strings; uvicorn's would add them.
    # The guarded h11 protocol closes connections whose headers do not arrive in time and any
    # beyond max_connections (detect/serve/guard.py); limit_concurrency answers 503 past it too.
    protocol = guarded_h11_protocol(
        header_timeout_s=settings.header_timeout_s, max_connections=settings.max_connections
    )
    try:
        uvicorn.run(
            app,
            host=settings.host,
            port=settings.port,
            access_log=False,
            log_level="info",
            timeout_graceful_shutdown=5,
            http=protocol,
            limit_concurrency=settings.max_connections,
            timeout_keep_alive=5,
            h11_max_incomplete_event_size=64 * 1024,
        )
    finally:
        model.close()
