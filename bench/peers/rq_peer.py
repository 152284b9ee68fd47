"""RQ, driven as its docs say: ``enqueue_many`` for plain jobs, ``depends_on`` for every
dependency, ``latest_result(timeout=...)`` to wait, ``get_status`` for node states.

Workers: ``rq worker`` processes with the default ``Worker`` class, which
forks a work horse per job. That makes RQ about an order of magnitude slower
than the others, so it runs fewer jobs and flows (``_smaller``; every cell
shows its counts). A dependent of a failed job stays ``deferred`` (unless
enqueued with ``Dependency(allow_failure=True)``, which would run it).

RQ 3.0 moves a dependent whose dependencies are met to ``ready_to_enqueue``
and enqueues it under a WATCH on the queue's ready registry; when another
completion touches that registry at the same moment, the dependent is left
for the maintenance pass (every 10 minutes by default). Under concurrency
some chains stall that way, so every wait is bounded by ``STALL_S`` and a
chain that does not finish is counted, not waited for.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from pathlib import Path
from typing import Any

from bench.peers.base import (
    CASCADE,
    CASCADE_ROOT,
    CHAIN,
    FANOUT,
    S1,
    Cell,
    Sizes,
    guarded,
)
from bench.peers.counters import ServerMeter, per_job
from bench.peers.measure import (
    PolledCompletions,
    chain_cell,
    chain_level,
    fanout_cell,
    throughput,
    watch_states,
)
from bench.peers.workers import Beacon, WorkerProcesses, python, run_phase

NAME = "rq"
DISTRIBUTIONS = ("rq",)
UNSUPPORTED: dict[str, Cell] = {}
NOTE = ("`rq worker` processes (default `Worker`: a forked work horse per job); "
        "`enqueue_many`; every dependency is `depends_on` (the dependent reads its dependencies' "
        "results through `get_current_job()`); waits: `latest_result(timeout=15)`. Smaller sizes "
        "(at most 2,000 jobs, 30 + 48 chains, 3 fan-outs). RQ 3.0 can leave a dependent in "
        "`ready_to_enqueue` when two completions race (it is then enqueued by the maintenance "
        "pass, every 10 min): such chains count as unfinished.")
QUEUE = "bench"
CHUNK = 500
STALL_S = 15
STATES = {"finished": "succeeded", "failed": "failed", "canceled": "canceled",
          "stopped": "canceled"}


def _smaller(sizes: Sizes) -> Sizes:
    return dataclasses.replace(
        sizes, tasks=min(sizes.tasks, sizes.slow_tasks),
        chain_flows_c1=min(sizes.chain_flows_c1, 30), chain_flows=min(sizes.chain_flows, 48),
        fanout_repeats=min(sizes.fanout_repeats, 3))


def _workers(url: str, count: int) -> list[list[str]]:
    return [python("-m", "rq.cli", "worker", "--url", url, "--logging_level", "WARNING", QUEUE)
            for _ in range(count)]


def _ready(conn: Any, count: int) -> Any:
    from rq import Queue, Worker

    queue = Queue(QUEUE, connection=conn)
    return lambda: Worker.count(connection=conn, queue=queue) >= count


def _s1(meter: ServerMeter, conn: Any, sizes: Sizes, workers: WorkerProcesses) -> Cell:
    from rq import Queue

    from bench.peers.rq_tasks import noop

    queue, pad, tasks = Queue(QUEUE, connection=conn), sizes.pad(), sizes.tasks
    finished = f"rq:finished:{QUEUE}"
    queue.enqueue(noop, pad).latest_result(timeout=30)  # warm
    base = int(conn.zcard(finished))

    def submit() -> None:
        for start in range(0, tasks, CHUNK):
            queue.enqueue_many([Queue.prepare_data(noop, (pad,))
                                for _ in range(start, min(start + CHUNK, tasks))])

    done = PolledCompletions("zcard", lambda: int(conn.zcard(finished)) - base)
    return throughput(meter, submit, done, tasks, sizes.timeout_s, workers.cpu_s)


def _value(job: Any, timeout_s: float = STALL_S) -> Any:
    result = job.latest_result(timeout=max(int(timeout_s), 1))
    return None if result is None else result.return_value


def _chain(meter: ServerMeter, conn: Any, sizes: Sizes) -> Cell:
    from rq import Queue

    from bench.peers.rq_tasks import next_step, step

    queue, pad, steps = Queue(QUEUE, connection=conn), sizes.pad(), sizes.chain_steps

    def one() -> Any:
        job = queue.enqueue(step, 0, pad)
        for _ in range(steps - 1):
            job = queue.enqueue(next_step, pad, depends_on=job)
        return _value(job)

    one()
    before = meter.snapshot()
    c1 = chain_level(one, steps, sizes.chain_flows_c1, 1, sizes.timeout_s)
    counters = per_job(before, meter.snapshot(), c1["flows"])
    high = chain_level(one, steps, sizes.chain_flows, sizes.chain_concurrency, sizes.timeout_s)
    return {**chain_cell(c1, high, counters, steps), "primitive": "depends_on"}


def _fanout(meter: ServerMeter, conn: Any, sizes: Sizes) -> Cell:
    from rq import Queue

    from bench.peers.rq_tasks import next_step, step, total

    queue, pad, width = Queue(QUEUE, connection=conn), sizes.pad(), sizes.fanout_width
    expected = sum(1 + i for i in range(width))
    walls, correct = [], 0
    before = meter.snapshot()
    for _ in range(sizes.fanout_repeats):
        t0 = time.perf_counter()
        root = queue.enqueue(step, 0, pad)
        # Ids chosen here: enqueue_many's returned list can repeat a job whose dependency
        # was met while it was being enqueued, and the join must depend on each middle once.
        ids = [uuid.uuid4().hex for _ in range(width)]
        queue.enqueue_many([Queue.prepare_data(next_step, (pad, i), job_id=ids[i], depends_on=root)
                            for i in range(width)])
        join = queue.enqueue(total, pad, depends_on=ids)
        value = _value(join)
        walls.append(time.perf_counter() - t0)
        correct += value == expected
    counters = per_job(before, meter.snapshot(), len(walls))
    return {**fanout_cell(walls, correct, width, counters),
            "primitive": "depends_on (join depends on a list of jobs)"}


def _watch(nodes: dict[str, Any], started_at: float, wait_s: float) -> Cell:
    raw: dict[str, str] = {}

    def read() -> dict[str, str]:
        for name, job in nodes.items():
            raw[name] = str(job.get_status(refresh=True).value)
        return {n: STATES.get(s, "pending") for n, s in raw.items()}

    return {**watch_states(read, started_at, wait_s), "raw_states": raw,
            "primitive": "depends_on"}


def _cascade(conn: Any, sizes: Sizes) -> Cell:
    from rq import Queue

    from bench.peers.rq_tasks import fail, step, total

    queue, pad = Queue(QUEUE, connection=conn), sizes.pad()
    started_at = time.perf_counter()
    leaves = [queue.enqueue(fail, pad)] + [queue.enqueue(step, i, pad) for i in (1, 2, 3)]
    mids = [queue.enqueue(total, pad, depends_on=leaves[:2]),
            queue.enqueue(total, pad, depends_on=leaves[2:])]
    top = queue.enqueue(total, pad, depends_on=mids)
    nodes = {**{f"l{i}": j for i, j in enumerate(leaves)}, "m0": mids[0], "m1": mids[1],
             "top": top}
    return _watch(nodes, started_at, sizes.cascade_wait_s)


def _cascade_root(conn: Any, sizes: Sizes) -> Cell:
    from rq import Queue

    from bench.peers.rq_tasks import fail, next_step

    queue, pad = Queue(QUEUE, connection=conn), sizes.pad()
    started_at = time.perf_counter()
    root = queue.enqueue(fail, pad)
    children = [queue.enqueue(next_step, pad, depends_on=root) for _ in range(2)]
    grand = [queue.enqueue(next_step, pad, depends_on=children[i // 2]) for i in range(4)]
    nodes = {"root": root, "c0": children[0], "c1": children[1],
             **{f"g{i}": j for i, j in enumerate(grand)}}
    return _watch(nodes, started_at, sizes.cascade_wait_s)


def run(scenarios: list[str], sizes: Sizes, url: str, log_dir: Path,
        out: dict[str, Cell] | None = None) -> dict[str, Cell]:
    from redis import Redis

    out = {} if out is None else out
    sizes = _smaller(sizes)
    # redis-py 8 times reads out after 5 s by default; latest_result blocks longer.
    conn = Redis.from_url(url, socket_timeout=sizes.timeout_s + 30)
    meter, beacon = ServerMeter(url), Beacon()
    try:
        if S1 in scenarios:
            run_phase(out, [S1], _workers(url, sizes.workers), url, beacon, log_dir / "s1",
                      _ready(conn, sizes.workers),
                      lambda w: {S1: guarded(lambda: _s1(meter, conn, sizes, w))})
        flows = {CHAIN: lambda: _chain(meter, conn, sizes),
                 FANOUT: lambda: _fanout(meter, conn, sizes),
                 CASCADE: lambda: _cascade(conn, sizes),
                 CASCADE_ROOT: lambda: _cascade_root(conn, sizes)}
        wanted = [s for s in flows if s in scenarios]
        if wanted:
            run_phase(out, wanted, _workers(url, sizes.chain_workers), url, beacon,
                      log_dir / "flows", _ready(conn, sizes.chain_workers),
                      lambda _: {name: guarded(flows[name]) for name in wanted})
    finally:
        beacon.close()
        meter.close()
        conn.close()
    return out
