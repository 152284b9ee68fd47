"""BullMQ's Python package, driven as its docs say: ``Queue.addBulk`` for jobs,
``FlowProducer`` trees for everything with dependencies, ``QueueEvents`` to wait.

A BullMQ flow is a tree whose children run before their parent, and the
parent reads their results (``getChildrenValues``). So a chain is a tree
nested S deep; the 1 -> N -> 1 fan-out is a root job whose handler adds the
N -> 1 flow (a child has one parent, so N jobs cannot all hang below one
earlier job); the leaf-failure tree is a flow as it stands. The
root-failure tree cannot be written (a job's result cannot feed two
dependents): "no primitive".
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from pathlib import Path
from typing import Any

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
    error_cell,
    guarded,
    status,
)
from bench.peers.counters import ServerMeter, per_job
from bench.peers.measure import (
    PolledCompletions,
    chain_cell,
    chain_level_async,
    fanout_cell,
    throughput,
    wait_until,
    watch_states,
)
from bench.peers.workers import Beacon, WorkerProcesses, python, run_phase

NAME = "bullmq"
DISTRIBUTIONS = ("bullmq",)
UNSUPPORTED = {CASCADE_ROOT: status(NO_PRIMITIVE, "a BullMQ job has at most one parent: one "
                                                  "job's result cannot feed two dependents")}
QUEUE = "bench"
NOTE = ("`python -m bench.peers.bullmq_worker` processes, as many as flowslot's (a `Worker` at "
        "its default concurrency 1, which measured faster here than 16: chain p50 12.6 ms against "
        "59 ms; the package has no worker command); `Queue.addBulk`; chains and trees "
        "as `FlowProducer` flows (children first, parents read `getChildrenValues`); fan-out = a "
        "root job whose handler adds the 100 → 1 flow; waits through `QueueEvents`. The cascade "
        "runs twice: default options, then `failParentOnFailure` on every child.")
CHUNK = 500
# The Worker's default. With 16 (flowslot's threads per process) this package's worker
# was slower here: 10-step chain p50 59 ms instead of 12.6, same throughput and fan-out.
WORKER_CONCURRENCY = 1
STATES = {"completed": "succeeded", "failed": "failed"}


def _workers(count: int) -> list[list[str]]:
    return [python("-m", "bench.peers.bullmq_worker", str(WORKER_CONCURRENCY))
            for _ in range(count)]


def _s1(meter: ServerMeter, url: str, sizes: Sizes, workers: WorkerProcesses) -> Cell:
    from bullmq import Queue

    conn = redis.Redis.from_url(url)
    completed_key = f"bull:{QUEUE}:completed"
    pad = sizes.pad()

    async def submit(count: int) -> None:
        queue = Queue(QUEUE, {"connection": url})
        for start in range(0, count, CHUNK):
            await queue.addBulk([{"name": "noop", "data": {"pad": pad}}
                                 for _ in range(start, min(start + CHUNK, count))])
        await queue.close()

    start = int(conn.zcard(completed_key))
    asyncio.run(submit(1))  # warm
    wait_until(lambda: conn.zcard(completed_key) >= start + 1, 30, "the warm-up job")
    done = PolledCompletions("zcard", lambda: int(conn.zcard(completed_key)) - start - 1)
    try:
        return throughput(meter, lambda: asyncio.run(submit(sizes.tasks)), done, sizes.tasks,
                          sizes.timeout_s, workers.cpu_s)
    finally:
        conn.close()


class Waiters:
    """Futures for job ids, resolved by the queue's ``completed`` / ``failed`` events.
    Ids are chosen before the job is added, so no event can come before its waiter."""

    def __init__(self, events: Any) -> None:
        self.futures: dict[str, asyncio.Future[Any]] = {}
        events.on("completed", self._completed)
        events.on("failed", self._failed)
        events.on("error", self._error)

    def _error(self, error: BaseException) -> None:
        """The events reader stopped: nothing waiting can be resolved any more."""
        for future in self.futures.values():
            if not future.done():
                future.set_exception(RuntimeError(f"QueueEvents stopped: {error!r}"))
        self.futures.clear()

    def expect(self, job_id: str) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.futures[job_id] = future
        return future

    def _completed(self, args: dict[str, Any], _entry: str) -> None:
        future = self.futures.pop(args.get("jobId", ""), None)
        if future and not future.done():
            future.set_result(args.get("returnvalue"))

    def _failed(self, args: dict[str, Any], _entry: str) -> None:
        future = self.futures.pop(args.get("jobId", ""), None)
        if future and not future.done():
            future.set_exception(RuntimeError(f"job failed: {args.get('failedReason')}"))


def _chain_tree(steps: int, pad: str, top_id: str) -> dict[str, Any]:
    node: dict[str, Any] = {"name": "step", "queueName": QUEUE, "data": {"n": 0, "pad": pad}}
    for _ in range(steps - 1):
        node = {"name": "step", "queueName": QUEUE, "data": {"pad": pad}, "children": [node]}
    node["opts"] = {"jobId": top_id}
    return node


async def _chain(meter: ServerMeter, flows: Any, waiters: Waiters, sizes: Sizes) -> Cell:
    pad, steps = sizes.pad(), sizes.chain_steps

    async def one() -> Any:
        top_id = uuid.uuid4().hex
        done = waiters.expect(top_id)
        await flows.add(_chain_tree(steps, pad, top_id))
        return await asyncio.wait_for(done, sizes.timeout_s)

    await one()
    before = meter.snapshot()
    c1 = await chain_level_async(one, steps, sizes.chain_flows_c1, 1, sizes.timeout_s)
    counters = per_job(before, meter.snapshot(), c1["flows"])
    high = await chain_level_async(one, steps, sizes.chain_flows, sizes.chain_concurrency,
                                   sizes.timeout_s)
    return {**chain_cell(c1, high, counters, steps), "primitive": "FlowProducer tree, nested"}


async def _fanout(meter: ServerMeter, queue: Any, waiters: Waiters, sizes: Sizes) -> Cell:
    width, pad = sizes.fanout_width, sizes.pad()
    expected = sum(1 + i for i in range(width))
    walls, correct = [], 0
    before = meter.snapshot()
    for _ in range(sizes.fanout_repeats):
        join_id = uuid.uuid4().hex
        done = waiters.expect(join_id)
        t0 = time.perf_counter()
        await queue.add("fanroot", {"width": width, "pad": pad, "join_id": join_id})
        value = await asyncio.wait_for(done, sizes.timeout_s)
        walls.append(time.perf_counter() - t0)
        correct += value == expected
    counters = per_job(before, meter.snapshot(), len(walls))
    return {**fanout_cell(walls, correct, width, counters),
            "primitive": "root job adds a FlowProducer flow (join with N children)"}


def _leaf_tree(pad: str, ids: dict[str, str], child_opts: dict[str, Any]) -> dict[str, Any]:
    def leaf(name: str, n: int) -> dict[str, Any]:
        job = "fail" if name == "l0" else "step"
        return {"name": job, "queueName": QUEUE, "data": {"n": n, "pad": pad},
                "opts": {"jobId": ids[name], **child_opts}}

    def mid(name: str, leaves: list[dict[str, Any]]) -> dict[str, Any]:
        return {"name": "total", "queueName": QUEUE, "data": {"pad": pad},
                "opts": {"jobId": ids[name], **child_opts}, "children": leaves}

    return {"name": "total", "queueName": QUEUE, "data": {"pad": pad},
            "opts": {"jobId": ids["top"]},
            "children": [mid("m0", [leaf("l0", 0), leaf("l1", 1)]),
                         mid("m1", [leaf("l2", 2), leaf("l3", 3)])]}


async def _cascade_once(flows: Any, queue: Any, sizes: Sizes,
                        child_opts: dict[str, Any]) -> Cell:
    ids = {n: uuid.uuid4().hex for n in ("l0", "l1", "l2", "l3", "m0", "m1", "top")}
    started_at = time.perf_counter()
    await flows.add(_leaf_tree(sizes.pad(), ids, child_opts))
    raw: dict[str, str] = {}
    loop = asyncio.get_running_loop()

    def read() -> dict[str, str]:
        # watch_states is synchronous; the states are read on this loop between polls.
        future = asyncio.run_coroutine_threadsafe(_states(queue, ids, raw), loop)
        return future.result(timeout=10)

    return {**await loop.run_in_executor(None, watch_states, read, started_at,
                                         sizes.cascade_wait_s), "raw_states": raw}


async def _states(queue: Any, ids: dict[str, str], raw: dict[str, str]) -> dict[str, str]:
    for name, job_id in ids.items():
        raw[name] = await queue.getJobState(job_id)
    return {n: STATES.get(s, "pending") for n, s in raw.items()}


async def _cascade(flows: Any, queue: Any, sizes: Sizes) -> Cell:
    default = await _cascade_once(flows, queue, sizes, {})
    failing = await _cascade_once(flows, queue, sizes, {"failParentOnFailure": True})
    return {**default, "primitive": "FlowProducer tree (default options)",
            "variants": {"failParentOnFailure": failing}}


async def _flows(meter: ServerMeter, url: str, scenarios: list[str], sizes: Sizes) -> dict[str, Cell]:
    from bullmq import FlowProducer, Queue, QueueEvents

    flows, queue = FlowProducer({"connection": url}), Queue(QUEUE, {"connection": url})
    events = QueueEvents(QUEUE, {"connection": url})
    waiters, out = Waiters(events), {}
    await asyncio.sleep(0.3)  # the events reader's first XREAD fixes where it starts
    try:
        jobs = {CHAIN: lambda: _chain(meter, flows, waiters, sizes),
                FANOUT: lambda: _fanout(meter, queue, waiters, sizes),
                CASCADE: lambda: _cascade(flows, queue, sizes)}
        for name in [s for s in jobs if s in scenarios]:
            try:
                out[name] = await jobs[name]()
            except Exception as e:  # noqa: BLE001 - reported in the cell
                out[name] = error_cell(e)
    finally:
        for close in (events.close, flows.close, queue.close):
            await _bounded(close())
    return out


async def _bounded(closing: Any, timeout_s: float = 5.0) -> None:
    """Closing a ``QueueEvents`` can hang (its reader does not always unwind on cancel):
    give each close a few seconds, then go on."""
    with contextlib.suppress(Exception, asyncio.TimeoutError):
        await asyncio.wait_for(closing, timeout_s)


def _run_async(coro: Any) -> Any:
    """``asyncio.run`` without its final wait for leftover tasks, which a stuck
    ``QueueEvents`` reader would block forever; the driver process exits right after."""
    loop = asyncio.new_event_loop()
    return loop.run_until_complete(coro)


def run(scenarios: list[str], sizes: Sizes, url: str, log_dir: Path,
        out: dict[str, Cell] | None = None) -> dict[str, Cell]:
    out = {} if out is None else out
    meter, beacon = ServerMeter(url), Beacon()
    try:
        if S1 in scenarios:
            run_phase(out, [S1], _workers(sizes.workers), url, beacon,
                      log_dir / "s1", sizes.workers,
                      lambda w: {S1: guarded(lambda: _s1(meter, url, sizes, w))})
        wanted = [s for s in (CHAIN, FANOUT, CASCADE) if s in scenarios]
        if wanted:
            run_phase(out, wanted, _workers(sizes.chain_workers), url, beacon,
                      log_dir / "flows", sizes.chain_workers,
                      lambda _: _run_async(_flows(meter, url, wanted, sizes)))
    finally:
        beacon.close()
        meter.close()
    return out
