"""ServeSettings: every knob of `detect serve`, checked once at start-up.

The defaults are the safe ones: loopback only, a 32 MiB upload cap, no CORS, one inference
worker whose queue admits a request while its expected wait is at most 10 s (past it, 503 at
once instead of piling up requests), with a hard cap of 256 queued requests for memory.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass, field

from data_prep.errors import ConfigError
from detect.inference.settings import InferenceSettings
from detect.serve.guard import DEFAULT_HEADER_TIMEOUT_S, DEFAULT_MAX_CONNECTIONS

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_MAX_UPLOAD_MB = 32.0
# Declared width x height above this is refused before decoding (422). 64 megapixels is well
# above any chest radiograph (RSNA: 1 MP; a 43 x 43 cm detector at 100 um: ~18.5 MP).
DEFAULT_MAX_IMAGE_MEGAPIXELS = 64.0
DEFAULT_MAX_WAIT_S = 10.0
# Queued requests at most, whatever the wait estimate says: each holds its upload (<= the upload
# cap) until its batch reads it, so this bounds the queue's memory.
DEFAULT_QUEUE_SIZE = 256
DEFAULT_MAX_BATCH = 8
DEFAULT_BATCH_WINDOW_MS = 5.0
TOKEN_ENV_VAR = "DETECT_SERVE_TOKEN"


@dataclass(frozen=True)
class ServeSettings:
    """How `detect serve` runs. `workers` inference threads share the one loaded model, each
    running batches of up to `max_batch` requests that arrived within `batch_window_ms` of the
    first; a request is queued while its expected wait is at most `max_wait_s` and fewer than
    `queue_size` are queued, else 503 (detect.serve.pool). `token`: when set, /v1/* need
    `Authorization: Bearer <token>`. `cors_origins`: empty = no CORS headers at all."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    workers: int = 1
    queue_size: int = DEFAULT_QUEUE_SIZE
    max_wait_s: float = DEFAULT_MAX_WAIT_S
    max_batch: int = DEFAULT_MAX_BATCH
    batch_window_ms: float = DEFAULT_BATCH_WINDOW_MS
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB
    max_image_megapixels: float = DEFAULT_MAX_IMAGE_MEGAPIXELS
    token: str | None = None
    cors_origins: tuple[str, ...] = ()
    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S  # a request's headers must arrive within this
    max_connections: int = DEFAULT_MAX_CONNECTIONS  # open connections; more are closed at once
    inference: InferenceSettings = field(default_factory=InferenceSettings)  # the defaults of every request

    def __post_init__(self) -> None:
        if not self.host.strip():
            raise ConfigError("--host is empty; use 127.0.0.1 (the default) or an address to bind")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port must lie in 0..65535, got {self.port}")
        if self.workers < 1:
            raise ConfigError(f"--threads must be >= 1, got {self.workers}")
        if self.queue_size < 1:
            raise ConfigError(f"--queue-size must be >= 1, got {self.queue_size}")
        if not (isinstance(self.max_wait_s, (int, float)) and math.isfinite(self.max_wait_s) and self.max_wait_s > 0):
            raise ConfigError(f"--max-wait-s must be a finite number of seconds > 0, got {self.max_wait_s}")
        if not 1 <= self.max_batch <= 256:
            raise ConfigError(f"--max-batch must lie in 1..256, got {self.max_batch}")
        if not (math.isfinite(self.batch_window_ms) and 0 <= self.batch_window_ms <= 1000):
            raise ConfigError(f"--batch-window-ms must lie in 0..1000, got {self.batch_window_ms}")
        if not (math.isfinite(self.max_upload_mb) and self.max_upload_mb > 0):
            raise ConfigError(f"--max-upload-mb must be > 0, got {self.max_upload_mb}")
        if not (math.isfinite(self.max_image_megapixels) and self.max_image_megapixels > 0):
            raise ConfigError(f"--max-image-megapixels must be > 0, got {self.max_image_megapixels}")
        if not (math.isfinite(self.header_timeout_s) and self.header_timeout_s > 0):
            raise ConfigError(f"--header-timeout must be > 0 seconds, got {self.header_timeout_s}")
        if self.max_connections < 1:
            raise ConfigError(f"--max-connections must be >= 1, got {self.max_connections}")
        if self.token is not None and len(self.token) < 16:
            raise ConfigError(
                f"the bearer token (--token or ${TOKEN_ENV_VAR}) must have at least 16 characters, got {len(self.token)}"
            )
        for origin in self.cors_origins:
            if origin == "*" or not origin.startswith(("http://", "https://")):
                raise ConfigError(
                    f"--cors-origin {origin!r}: give an exact origin such as https://viewer.example.org ('*' is refused)"
                )

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def max_image_pixels(self) -> int:
        return int(self.max_image_megapixels * 1_000_000)

    @property
    def is_loopback(self) -> bool:
        """True when only this machine can reach the server."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False
