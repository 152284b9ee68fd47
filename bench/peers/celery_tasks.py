"""The Celery app the workers run: Redis broker and Redis result backend on the bench server.

Started as the Celery docs say: ``celery -A bench.peers.celery_tasks worker``.
The tasks are the same as flowslot's bench tasks (``bench.scenarios.flowkit``):
a no-op, a step that adds ``by`` to its input, a sum, a failure. Signals send
beacons: "ready" when the worker can take work, "done" after each task
(``task_postrun``, after the result is stored), so the driver counts
completions without asking the server.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.signals import task_postrun, worker_ready

from bench.peers.workers import URL_ENV, beacon_send

URL = os.environ.get(URL_ENV, "redis://127.0.0.1:6379/0")
QUEUE = "bench"

app = Celery("bench", broker=URL, backend=URL)
app.conf.update(task_default_queue=QUEUE, worker_hijack_root_logger=False,
                broker_connection_retry_on_startup=True, result_expires=3600)


@app.task(name="bench.noop")
def noop(pad: str = "") -> None:
    return None


@app.task(name="bench.step")
def step(n: int, pad: str = "", by: int = 1) -> int:
    return n + by


@app.task(name="bench.total")
def total(values: list[int], pad: str = "") -> int:
    return sum(values)


@app.task(name="bench.fail")
def fail(pad: str = "") -> None:
    raise ValueError("fails on purpose")


@worker_ready.connect
def _ready(**_: Any) -> None:
    beacon_send("ready")


@task_postrun.connect
def _done(**_: Any) -> None:
    beacon_send("done")
