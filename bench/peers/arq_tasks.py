"""The arq worker settings (``arq bench.peers.arq_tasks.WorkerSettings``).

``on_startup`` sends the "ready" beacon once the worker is connected.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

from arq.connections import RedisSettings

from bench.peers.workers import URL_ENV, beacon_send

URL = os.environ.get(URL_ENV, "redis://127.0.0.1:6379/0")
MAX_JOBS = int(os.environ.get("BENCH_ARQ_MAX_JOBS", "16"))


async def noop(ctx: dict[str, Any], pad: str = "") -> None:
    return None


async def _ready(ctx: dict[str, Any]) -> None:
    beacon_send("ready")


class WorkerSettings:
    functions: ClassVar[list[Any]] = [noop]
    redis_settings = RedisSettings.from_dsn(URL)
    max_jobs = MAX_JOBS
    on_startup = _ready
