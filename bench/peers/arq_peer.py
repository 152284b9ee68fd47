"""arq, for plain throughput: ``ArqRedis.enqueue_job`` per job, the ``arq`` worker command.

Workers: as many ``arq`` processes as flowslot's, each with ``max_jobs`` =
flowslot's threads per process. A finished job leaves the ``arq:queue`` sorted
set (its result stays under its own key), so done = N - ZCARD. arq has no
dependency primitive: a job may enqueue others, but nothing waits for a set of
jobs or passes results along, so the flow scenarios are "no primitive".
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import redis

from bench.peers.base import (
    CASCADE,
    CASCADE_ROOT,
    CHAIN,
    FANOUT,
    NO_PRIMITIVE,
    S1,
    Cell,
    Sizes,
    guarded,
    status,
)
from bench.peers.counters import ServerMeter
from bench.peers.measure import PolledCompletions, throughput, wait_until
from bench.peers.workers import Beacon, WorkerProcesses, python, run_phase

NAME = "arq"
DISTRIBUTIONS = ("arq",)
_WHY = "no dependencies between jobs (a job can enqueue others; nothing waits for them)"
UNSUPPORTED = {s: status(NO_PRIMITIVE, _WHY) for s in (CHAIN, FANOUT, CASCADE, CASCADE_ROOT)}
QUEUE_KEY = "arq:queue"
NOTE = ("`arq` worker processes with `max_jobs` = flowslot's threads; `enqueue_job` per job "
        "(100 awaited together); results kept (its default). Installed as arq 0.25.0: arq ≥ 0.26 "
        "pins redis < 6, which conflicts with bullmq (redis ≥ 6.2) and flowslot's redis 8, so pip "
        "resolves the last release without that pin. Throughput only (no dependency primitive).")
IN_FLIGHT = 100  # enqueue_job calls awaited together


async def _submit(url: str, count: int, pad: str) -> None:
    from arq import create_pool
    from arq.connections import RedisSettings

    pool = await create_pool(RedisSettings.from_dsn(url))
    try:
        for start in range(0, count, IN_FLIGHT):
            await asyncio.gather(*(pool.enqueue_job("noop", pad)
                                   for _ in range(start, min(start + IN_FLIGHT, count))))
    finally:
        await pool.aclose()


def _s1(meter: ServerMeter, url: str, sizes: Sizes, workers: WorkerProcesses) -> Cell:
    conn, pad = redis.Redis.from_url(url), sizes.pad()
    try:
        asyncio.run(_submit(url, 1, pad))  # warm
        wait_until(lambda: not conn.zcard(QUEUE_KEY), 30, "the warm-up job")
        done = PolledCompletions("zcard", lambda: sizes.tasks - int(conn.zcard(QUEUE_KEY)))
        return throughput(meter, lambda: asyncio.run(_submit(url, sizes.tasks, pad)), done,
                          sizes.tasks, sizes.timeout_s, workers.cpu_s)
    finally:
        conn.close()


def run(scenarios: list[str], sizes: Sizes, url: str, log_dir: Path,
        out: dict[str, Cell] | None = None) -> dict[str, Cell]:
    out = {} if out is None else out
    if S1 not in scenarios:
        return out
    meter, beacon = ServerMeter(url), Beacon()
    commands = [python("-m", "arq", "bench.peers.arq_tasks.WorkerSettings")
                for _ in range(sizes.workers)]
    env = {"BENCH_ARQ_MAX_JOBS": str(sizes.concurrency)}
    try:
        run_phase(out, [S1], commands, url, beacon, log_dir / "s1", sizes.workers,
                  lambda w: {S1: guarded(lambda: _s1(meter, url, sizes, w))}, extra_env=env)
    finally:
        beacon.close()
        meter.close()
    return out
