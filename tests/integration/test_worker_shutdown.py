"""An embedded worker cleans up after itself when stopped."""

from __future__ import annotations

import pytest

from engine.worker import Worker
from tests.waiting import wait_until

pytestmark = pytest.mark.server


def test_a_stopped_worker_closes_the_event_loop_of_its_async_handlers(cluster, namespace, make_app):
    app = make_app(cluster.url, namespace)
    worker = Worker(app, ["default"], concurrency=2).start()
    try:
        assert app.submit("basic.async_mul", 6, 7).result(timeout=30) == 42
    finally:
        worker.stop_and_wait()
    loop = worker._loop
    assert loop is not None
    wait_until(loop.is_closed, what="the asyncio loop to be closed")
