"""detect.serve.pool: at most workers + queue_size jobs admitted; the next is refused at once."""

from __future__ import annotations

import threading

import pytest

from detect.serve.pool import BoundedPool, PoolFull


def test_admits_up_to_capacity_then_refuses_and_recovers():
    pool = BoundedPool(workers=2, queue_size=1)
    release = threading.Event()
    running = [pool.submit(release.wait) for _ in range(3)]
    assert pool.admitted == 3
    # Nothing timed yet: 1 s per job guessed, 3 admitted jobs over 2 workers = 1.5 s, rounded up.
    with pytest.raises(PoolFull, match=r"the server is busy .*; retry in 2 s") as refused:
        pool.submit(lambda: 1)
    assert refused.value.retry_after_s == 2
    release.set()
    assert all(f.result(timeout=5) for f in running)
    assert pool.submit(lambda: 41 + 1).result(timeout=5) == 42
    pool.shutdown()
    assert pool.admitted == 0


def test_a_failing_job_frees_its_slot():
    pool = BoundedPool(workers=1, queue_size=0)

    def fail():
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        pool.submit(fail).result(timeout=5)
    assert pool.submit(lambda: "ok").result(timeout=5) == "ok"
    pool.shutdown()
