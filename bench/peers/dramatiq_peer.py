"""Dramatiq, for plain throughput: ``actor.send`` per message, the ``dramatiq`` worker command.

Workers: one ``dramatiq`` command with as many processes and threads per
process as flowslot's workers. Completion: a message's body leaves the
queue's ``.msgs`` hash when it is acknowledged, so done = N - HLEN. Dramatiq
stores no results unless the Results middleware is added (it is not here, as
in its default setup). Its pipelines and groups could express chains and
fan-outs; this comparison measures it for throughput only, as the issue asks.
"""

from __future__ import annotations

from pathlib import Path

import redis

from bench.peers.base import (
    CASCADE,
    CASCADE_ROOT,
    CHAIN,
    FANOUT,
    NOT_MEASURED,
    S1,
    Cell,
    Sizes,
    guarded,
    status,
)
from bench.peers.counters import ServerMeter
from bench.peers.measure import PolledCompletions, throughput, wait_until
from bench.peers.workers import Beacon, WorkerProcesses, python, run_phase

NAME = "dramatiq"
DISTRIBUTIONS = ("dramatiq",)
_WHY = "throughput-only peer here (pipelines/groups need the Results middleware; not run)"
UNSUPPORTED = {s: status(NOT_MEASURED, _WHY) for s in (CHAIN, FANOUT, CASCADE, CASCADE_ROOT)}
MESSAGES = "dramatiq:bench.msgs"
NOTE = ("one `dramatiq` command with flowslot's processes × threads; `actor.send` per "
        "message; no result backend (its default), so it records no results; throughput only.")


def _s1(meter: ServerMeter, url: str, sizes: Sizes, workers: WorkerProcesses) -> Cell:
    from bench.peers.dramatiq_tasks import noop

    conn, pad = redis.Redis.from_url(url), sizes.pad()
    try:
        noop.send(pad)  # warm
        wait_until(lambda: not conn.hlen(MESSAGES), 30, "the warm-up message")

        def submit() -> None:
            for _ in range(sizes.tasks):
                noop.send(pad)

        done = PolledCompletions("hlen", lambda: sizes.tasks - int(conn.hlen(MESSAGES)))
        return throughput(meter, submit, done, sizes.tasks, sizes.timeout_s, workers.cpu_s)
    finally:
        conn.close()


def run(scenarios: list[str], sizes: Sizes, url: str, log_dir: Path,
        out: dict[str, Cell] | None = None) -> dict[str, Cell]:
    out = {} if out is None else out
    if S1 not in scenarios:
        return out
    meter, beacon = ServerMeter(url), Beacon()
    command = python(
        "-m",
        "dramatiq",
        "bench.peers.dramatiq_tasks",
        "--processes",
        str(sizes.workers),
        "--threads",
        str(sizes.concurrency),
        "--queues",
        "bench",
    )
    try:
        run_phase(out, [S1], [command], url, beacon, log_dir / "s1", sizes.workers,
                  lambda w: {S1: guarded(lambda: _s1(meter, url, sizes, w))})
    finally:
        beacon.close()
        meter.close()
    return out
