"""The Dramatiq broker and actor the workers run (``dramatiq bench.peers.dramatiq_tasks``).

A middleware sends the "ready" beacon once each worker process has booted.
"""

from __future__ import annotations

import os
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Middleware

from bench.peers.workers import URL_ENV, beacon_send

QUEUE = "bench"


class Ready(Middleware):
    def after_worker_boot(self, broker: Any, worker: Any) -> None:
        beacon_send("ready")


broker = RedisBroker(url=os.environ.get(URL_ENV, "redis://127.0.0.1:6379/0"))
broker.add_middleware(Ready())
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name=QUEUE, max_retries=0)
def noop(pad: str = "") -> None:
    return None
