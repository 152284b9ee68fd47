"""A claim's plain handlers go to one handler thread as a batch; a handler that blocks does not
hold the rest of its claim back (``HandlerThreads.spread_due``, called by the claim loop)."""

from __future__ import annotations

import threading

import pytest

from engine.worker import Worker

pytestmark = pytest.mark.server


@pytest.mark.parametrize("concurrency", [4, 8])
def test_the_handlers_of_one_claim_run_together_when_each_waits_for_the_others(
        standalone_server, namespace, make_app, concurrency):
    app = make_app(standalone_server.url, namespace)
    barrier = threading.Barrier(4, timeout=20)

    @app.task(name="batches.meet")
    def meet(n: int) -> int:
        barrier.wait()  # returns only once all four run at the same time
        return n

    # one submit_many puts the four in one partition, so the worker's start-up sweep
    # finds them and claims them with one exec_claim: one batch of four
    handles = app.submit_many(meet, [(n,) for n in range(4)])
    worker = Worker(app, ["default"], concurrency=concurrency).start()
    try:
        assert sorted(h.result(timeout=30) for h in handles) == [0, 1, 2, 3]
    finally:
        worker.stop_and_wait()
    assert worker.stats.claimed == 4


def test_a_stopping_worker_still_spreads_the_handlers_a_blocked_one_holds_back(
        standalone_server, namespace, make_app):
    app = make_app(standalone_server.url, namespace)
    barrier, first = threading.Barrier(4, timeout=20), threading.Event()

    @app.task(name="batches.meet_late")
    def meet(n: int) -> int:
        first.set()
        barrier.wait()
        return n

    handles = app.submit_many(meet, [(n,) for n in range(4)])
    worker = Worker(app, ["default"], concurrency=4, grace_s=30)
    worker._pool.spread_after_s = 1.0  # the stop below comes well before the batch is due
    worker.start()
    try:
        assert first.wait(20)
    finally:
        worker.stop_and_wait()  # the claim loop stops at once; the shutdown's wait spreads
    assert sorted(h.result(timeout=5) for h in handles) == [0, 1, 2, 3]
