"""The admission queue and batcher of `detect serve`: a request waits while its expected wait is
short, and requests that arrive together share one batch.

    pool = BatchingPool(run_batch, workers=1, max_batch=8, batch_window_s=0.005,
                        max_wait_s=10.0, max_queued=256)
    result = await pool.run(item, key)      # from the event loop; pool.submit(item, key) -> Future
    pool.check_admission()                  # PoolFull now if a request would be refused
    pool.record(seconds, n_requests)        # a measured time (the server's warm-up gives the first)

Admission by expected wait. A new request waits behind the requests queued (not yet in a
batch); its expected wait is

    queued x seconds per request / workers

where seconds per request is a moving average (WaitEstimate: exponentially weighted) of each
batch's measured time divided by its size, so batching's gain is in it. A request is queued
while that wait is at most `max_wait_s`; past it, or with `max_queued` requests already queued
(a cap that bounds the memory the queue holds, whatever the estimate says), it is refused at
once: PoolFull, answered 503 with Retry-After = the expected wait in whole seconds. Until a
time has been measured only the cap applies.

Batching. Each of `workers` threads takes the oldest queued request, then the queued requests
with the same key (a forward pass serves one key: the server's key is the request's TTA flag)
up to `max_batch`, waiting for more until `batch_window_s` after the first one was queued, and
hands them to `run_batch` in one call. `run_batch` returns one result per item, in order; an
item's result that is an Exception is raised to that item's caller alone. Under load the
queue fills batches at once; a lone request waits the window, at most.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Hashable, Sequence, TypeVar

I = TypeVar("I")  # noqa: E741 (an item)
R = TypeVar("R")

EWMA_WEIGHT = 0.2  # the newest batch's share of the moving average


class PoolFull(Exception):
    """A request the server will not queue; `retry_after_s` is when the queue should have drained."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(message)


@dataclass
class WaitEstimate:
    """Seconds per request, a moving average of measured batches, and the wait it predicts.

    Each request of a batch counts as one sample of its batch's seconds per request (a batch of
    n moves the average as n batches of one would): the full batches of a busy server, when the
    estimate decides, outweigh the lone requests of a quiet one."""

    weight: float = EWMA_WEIGHT
    seconds_per_request: float | None = None  # None: nothing measured yet

    def record(self, batch_s: float, n_requests: int) -> None:
        """One batch of `n_requests` took `batch_s` seconds."""
        if n_requests < 1 or not math.isfinite(batch_s) or batch_s < 0:
            return
        sample = batch_s / n_requests
        previous = self.seconds_per_request
        kept = (1 - self.weight) ** n_requests
        self.seconds_per_request = sample if previous is None else kept * previous + (1 - kept) * sample

    def expected_wait_s(self, queued: int, workers: int) -> float | None:
        """The wait of a request behind `queued` others with `workers` threads; None: unmeasured."""
        if self.seconds_per_request is None:
            return None
        return queued * self.seconds_per_request / max(1, workers)


def retry_after_s(wait_s: float | None) -> int:
    """Retry-After in whole seconds: the expected wait rounded up, at least 1."""
    return max(1, math.ceil(wait_s)) if wait_s is not None else 1


@dataclass
class _Job(Generic[I]):
    item: I
    key: Hashable
    queued_at: float
    future: Future = field(default_factory=Future)


class BatchingPool(Generic[I, R]):
    """See the module docstring. `clock`: seconds, monotonic (tests may pass their own)."""

    def __init__(
        self,
        run_batch: Callable[[list[I]], Sequence[R | Exception]],
        *,
        workers: int,
        max_batch: int,
        batch_window_s: float,
        max_wait_s: float,
        max_queued: int,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if workers < 1 or max_batch < 1 or max_queued < 1:
            raise ValueError(f"workers, max_batch and max_queued must be >= 1: {workers}, {max_batch}, {max_queued}")
        self._run_batch = run_batch
        self.workers = workers
        self.max_batch = max_batch
        self.batch_window_s = batch_window_s
        self.max_wait_s = max_wait_s
        self.max_queued = max_queued
        self._clock = clock
        self._estimate = WaitEstimate()
        self._queue: deque[_Job[I]] = deque()
        self._running = 0  # requests taken into a batch, not yet answered
        self._closed = False
        self._cond = threading.Condition()
        self._threads = [
            threading.Thread(target=self._work, name=f"detect-batch-{i}", daemon=True) for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    # ------------------------------------------------------------------ what it holds

    @property
    def queued(self) -> int:
        """Requests waiting for a batch."""
        return len(self._queue)

    @property
    def admitted(self) -> int:
        """Requests queued or in a batch being run."""
        with self._cond:
            return len(self._queue) + self._running

    @property
    def capacity(self) -> int:
        """The most requests admitted at once: the queue's cap plus a full batch per worker."""
        return self.max_queued + self.workers * self.max_batch

    @property
    def seconds_per_request(self) -> float | None:
        return self._estimate.seconds_per_request

    def expected_wait_s(self) -> float | None:
        """The expected wait of a request queued now (None until a batch has been timed)."""
        with self._cond:
            return self._estimate.expected_wait_s(len(self._queue), self.workers)

    def record(self, batch_s: float, n_requests: int) -> None:
        """A measured batch time (each batch run here is recorded; the server adds its warm-up)."""
        with self._cond:
            self._estimate.record(batch_s, n_requests)

    # ------------------------------------------------------------------ admission

    def _refusal(self) -> PoolFull | None:
        """Why a request arriving now is refused, or None (call with the lock held)."""
        if self._closed:
            return PoolFull("the server is shutting down; retry in 1 s", 1)
        queued = len(self._queue)
        wait = self._estimate.expected_wait_s(queued, self.workers)
        if queued >= self.max_queued:
            seconds = retry_after_s(wait)
            return PoolFull(
                f"the server is busy: {queued} queued request(s), its limit (--queue-size); retry in {seconds} s",
                seconds,
            )
        if wait is not None and wait > self.max_wait_s:
            seconds = retry_after_s(wait)
            return PoolFull(
                f"the server is busy: the expected wait is {wait:.1f} s for {queued} queued request(s), over its "
                f"limit of {self.max_wait_s:g} s (--max-wait-s); retry in {seconds} s",
                seconds,
            )
        return None

    def check_admission(self) -> None:
        """Raise the PoolFull a request arriving now would get (before its body is read)."""
        with self._cond:
            refusal = self._refusal()
        if refusal is not None:
            raise refusal

    def submit(self, item: I, key: Hashable = None) -> Future:
        """Queue `item` for a batch of items with the same `key`, or raise PoolFull."""
        with self._cond:
            refusal = self._refusal()
            if refusal is not None:
                raise refusal
            job: _Job[I] = _Job(item, key, self._clock())
            self._queue.append(job)
            self._cond.notify_all()
        return job.future

    async def run(self, item: I, key: Hashable = None) -> R:
        """`submit` from the event loop, awaiting the result without blocking the loop."""
        return await asyncio.wrap_future(self.submit(item, key))

    # ------------------------------------------------------------------ the workers

    def _take_same_key(self, batch: list[_Job[I]], key: Hashable) -> None:
        """Move queued jobs with `key` into `batch` (oldest first, up to max_batch); others keep their order."""
        kept: deque[_Job[I]] = deque()
        while self._queue and len(batch) < self.max_batch:
            job = self._queue.popleft()
            if job.key == key:
                batch.append(job)
                self._running += 1
            else:
                kept.append(job)
        kept.extend(self._queue)
        self._queue = kept

    def _next_batch(self) -> list[_Job[I]] | None:
        with self._cond:
            while not self._queue and not self._closed:
                self._cond.wait()
            if not self._queue:
                return None  # closed and drained
            first = self._queue.popleft()
            self._running += 1
            batch = [first]
            deadline = first.queued_at + self.batch_window_s
            while True:
                self._take_same_key(batch, first.key)
                remaining = deadline - self._clock()
                if len(batch) >= self.max_batch or remaining <= 0 or self._closed:
                    return batch
                self._cond.wait(remaining)

    def _work(self) -> None:
        while True:
            taken = self._next_batch()
            if taken is None:
                return
            # A caller that went away (its await cancelled) has cancelled its future: skip it.
            batch = [job for job in taken if job.future.set_running_or_notify_cancel()]
            if len(batch) < len(taken):
                with self._cond:
                    self._running -= len(taken) - len(batch)
            if not batch:
                continue
            started = self._clock()
            try:
                results: Sequence[Any] = self._run_batch([job.item for job in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"run_batch returned {len(results)} results for {len(batch)} items")
            except Exception as exc:  # the whole batch failed: every caller gets the error
                results = [exc] * len(batch)
            elapsed = self._clock() - started
            with self._cond:
                self._running -= len(batch)
                self._estimate.record(elapsed, len(batch))
            for job, result in zip(batch, results):
                if isinstance(result, Exception):
                    job.future.set_exception(result)
                else:
                    job.future.set_result(result)

    def shutdown(self) -> None:
        """Finish the batches being run, refuse what is still queued, stop the threads."""
        with self._cond:
            self._closed = True
            left, self._queue = list(self._queue), deque()
            self._cond.notify_all()
        for job in left:
            job.future.set_exception(PoolFull("the server is shutting down; retry in 1 s", 1))
        for thread in self._threads:
            thread.join(timeout=30)
