"""A bounded pool for inference: `workers` threads and at most `queue_size` jobs waiting.

A job that finds every worker busy and the queue full is refused at once (PoolFull, answered
503 with Retry-After) instead of waiting: under a flood the server answers quickly and stays
healthy, and the clients back off. Threads share the one loaded model (torch releases the GIL
inside its kernels; the model is in eval mode under inference_mode, so calls do not interfere).
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, TypeVar

T = TypeVar("T")

# The first Retry-After guesses this many seconds per job, until one has been timed.
_INITIAL_JOB_SECONDS = 1.0
_EWMA_WEIGHT = 0.2


class PoolFull(Exception):
    """Every worker is busy and the queue is full; `retry_after_s` is a guess at when it is not."""

    def __init__(self, retry_after_s: int) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(
            f"the server is busy (all inference workers and the queue are full); retry in {retry_after_s} s"
        )


class BoundedPool:
    """`submit` runs a job on one of `workers` threads, or raises PoolFull when `workers +
    queue_size` jobs are already admitted."""

    def __init__(self, workers: int, queue_size: int) -> None:
        self.workers = workers
        self.capacity = workers + queue_size
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="detect-infer")
        self._lock = threading.Lock()
        self._admitted = 0
        self._job_seconds = _INITIAL_JOB_SECONDS

    @property
    def admitted(self) -> int:
        """Jobs running or waiting now."""
        return self._admitted

    def retry_after_s(self) -> int:
        """Seconds until the queue has drained, at the recent time per job (at least 1)."""
        return max(1, math.ceil(self._job_seconds * self.capacity / self.workers))

    def _timed(self, job: Callable[[], T]) -> T:
        start = time.perf_counter()
        try:
            return job()
        finally:
            elapsed = time.perf_counter() - start
            with self._lock:
                self._job_seconds += _EWMA_WEIGHT * (elapsed - self._job_seconds)

    def _release(self, _future: Future) -> None:
        with self._lock:
            self._admitted -= 1

    def submit(self, job: Callable[[], T]) -> Future:
        with self._lock:
            if self._admitted >= self.capacity:
                raise PoolFull(self.retry_after_s())
            self._admitted += 1
        try:
            future = self._executor.submit(self._timed, job)
        except RuntimeError:  # shutting down
            self._release(None)  # type: ignore[arg-type]
            raise PoolFull(self.retry_after_s()) from None
        future.add_done_callback(self._release)
        return future

    async def run(self, job: Callable[[], T]) -> T:
        """`submit` from the event loop, awaiting the result without blocking the loop."""
        return await asyncio.wrap_future(self.submit(job))

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
