"""detect.serve.pool: the wait estimate, admission by it and by the cap, and batches by key."""

from __future__ import annotations

import threading
import time

import pytest

from detect.serve.pool import BatchingPool, PoolFull, WaitEstimate, retry_after_s


def test_the_estimate_is_a_moving_average_of_seconds_per_request():
    estimate = WaitEstimate(weight=0.5)
    assert estimate.expected_wait_s(queued=10, workers=1) is None  # nothing measured yet
    estimate.record(batch_s=0.8, n_requests=4)  # 0.2 s per request
    assert estimate.seconds_per_request == pytest.approx(0.2)
    estimate.record(batch_s=0.4, n_requests=1)  # 0.4: the average moves halfway
    assert estimate.seconds_per_request == pytest.approx(0.3)
    assert estimate.expected_wait_s(queued=10, workers=1) == pytest.approx(3.0)
    assert estimate.expected_wait_s(queued=10, workers=2) == pytest.approx(1.5)
    assert estimate.expected_wait_s(queued=0, workers=1) == 0.0
    estimate.record(batch_s=float("nan"), n_requests=1)  # not a measurement
    estimate.record(batch_s=1.0, n_requests=0)
    assert estimate.seconds_per_request == pytest.approx(0.3)
    estimate.record(batch_s=0.2, n_requests=2)  # 0.1 s each, two samples: 3/4 of the way
    assert estimate.seconds_per_request == pytest.approx(0.3 / 4 + 0.1 * 3 / 4)


def test_retry_after_rounds_the_wait_up_to_whole_seconds():
    assert [retry_after_s(w) for w in (None, 0.0, 0.2, 1.0, 1.01, 7.5)] == [1, 1, 1, 1, 2, 8]


class Held:
    """A run_batch that records its batches and holds each until `release` is set."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.batches: list[list[str]] = []

    def __call__(self, items: list[str]) -> list[str | Exception]:
        self.batches.append(list(items))
        self.release.wait(timeout=10)
        return [ValueError(f"bad {i}") if i.startswith("bad") else i.upper() for i in items]


def _wait_until(condition, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.002)


def test_admission_follows_the_expected_wait_then_the_cap():
    run = Held()
    pool = BatchingPool(run, workers=2, max_batch=1, batch_window_s=0.0, max_wait_s=1.0, max_queued=6)
    try:
        running = [pool.submit("a"), pool.submit("b")]  # one per worker, held
        _wait_until(lambda: pool.queued == 0)
        queued = [pool.submit(str(i)) for i in range(5)]  # nothing measured: only the cap counts
        pool.record(0.5, 1)  # 0.5 s per request: 5 queued over 2 workers = 1.25 s
        assert pool.expected_wait_s() == pytest.approx(1.25) and pool.admitted == 7
        with pytest.raises(PoolFull, match=r"expected wait is 1\.2 s for 5 queued request\(s\), over its limit of 1 s"):
            pool.submit("x")
        with pytest.raises(PoolFull) as refused:
            pool.check_admission()
        assert refused.value.retry_after_s == 2

        faster = BatchingPool(Held(), workers=1, max_batch=1, batch_window_s=0.0, max_wait_s=100.0, max_queued=2)
        faster.submit("a")
        _wait_until(lambda: faster.queued == 0)
        faster.submit("b"), faster.submit("c")
        faster.record(0.1, 1)  # a short wait, but the cap is reached
        with pytest.raises(PoolFull, match=r"2 queued request\(s\), its limit \(--queue-size\); retry in 1 s"):
            faster.submit("d")
        faster._run_batch.release.set()  # type: ignore[attr-defined]
        faster.shutdown()

        run.release.set()
        assert [f.result(timeout=5) for f in running + queued] == ["A", "B", "0", "1", "2", "3", "4"]
        assert pool.admitted == 0 and pool.submit("y").result(timeout=5) == "Y"
    finally:
        run.release.set()
        pool.shutdown()


def test_requests_queued_together_share_a_batch_of_their_key_in_order():
    run = Held()
    pool = BatchingPool(run, workers=1, max_batch=3, batch_window_s=0.0, max_wait_s=10.0, max_queued=100)
    try:
        first = pool.submit("first", key="a")  # runs alone, held, while the rest queue up
        _wait_until(lambda: pool.queued == 0)
        rest = [
            pool.submit(item, key=key)
            for item, key in [("a1", "a"), ("b1", "b"), ("a2", "a"), ("bad", "a"), ("a3", "a"), ("b2", "b")]
        ]
        run.release.set()
        assert first.result(timeout=5) == "FIRST"
        with pytest.raises(ValueError, match="bad bad"):  # one item's failure is its own
            rest[3].result(timeout=5)
        assert [rest[i].result(timeout=5) for i in (0, 1, 2, 4, 5)] == ["A1", "B1", "A2", "A3", "B2"]
        # oldest first; a batch takes its key only, up to max_batch; the others keep their order
        assert run.batches == [["first"], ["a1", "a2", "bad"], ["b1", "b2"], ["a3"]]
        assert pool.seconds_per_request is not None
    finally:
        run.release.set()
        pool.shutdown()


def test_a_lone_request_waits_the_window_for_company():
    run = Held()
    run.release.set()
    pool = BatchingPool(run, workers=1, max_batch=8, batch_window_s=0.2, max_wait_s=10.0, max_queued=100)
    try:
        first = pool.submit("a")
        time.sleep(0.02)  # well inside the window
        second = pool.submit("b")
        assert [first.result(timeout=5), second.result(timeout=5)] == ["A", "B"]
        assert run.batches == [["a", "b"]]
    finally:
        pool.shutdown()


def test_a_failing_batch_fails_each_of_its_requests_and_frees_the_queue():
    def broken(items):
        raise RuntimeError("model broke")

    pool = BatchingPool(broken, workers=1, max_batch=4, batch_window_s=0.0, max_wait_s=10.0, max_queued=1)
    try:
        with pytest.raises(RuntimeError, match="model broke"):
            pool.submit("a").result(timeout=5)
        with pytest.raises(RuntimeError, match="model broke"):
            pool.submit("b").result(timeout=5)
        assert pool.admitted == 0
    finally:
        pool.shutdown()


def test_shutdown_refuses_what_is_still_queued():
    run = Held()
    pool = BatchingPool(run, workers=1, max_batch=1, batch_window_s=0.0, max_wait_s=10.0, max_queued=10)
    running = pool.submit("a")
    _wait_until(lambda: pool.queued == 0)
    queued = pool.submit("b")
    stopper = threading.Thread(target=pool.shutdown)  # waits for the batch being run
    stopper.start()
    _wait_until(queued.done)
    run.release.set()
    stopper.join(timeout=10)
    assert running.result(timeout=5) == "A"
    with pytest.raises(PoolFull, match="shutting down"):
        queued.result(timeout=5)
    with pytest.raises(PoolFull, match="shutting down"):
        pool.submit("c")
