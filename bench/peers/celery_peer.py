"""Celery, driven as its docs say: ``delay`` per task, ``chain`` for chains, a chain into a
group into a task (a chord) for fan-out/fan-in, nested chords for the leaf-failure tree.

Workers: one ``celery worker`` with the prefork pool (its default) and as many
pool processes as flowslot has worker processes. Waiting is ``AsyncResult.get``
(the Redis backend's pub/sub), node states are ``AsyncResult.state``.
"""

from __future__ import annotations

import time
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
    BeaconCompletions,
    chain_cell,
    chain_level,
    fanout_cell,
    throughput,
    watch_states,
)
from bench.peers.workers import Beacon, WorkerProcesses, python, run_phase

NAME = "celery"
DISTRIBUTIONS = ("celery", "kombu")
UNSUPPORTED: dict[str, Cell] = {}
NOTE = ("one `celery worker` (prefork pool, concurrency = flowslot's worker processes), Redis "
        "broker and result backend; `delay` per job; `chain` of signatures; fan-out = "
        "`chain(root, group(100), join)` (Celery turns it into a chord); leaf-failure tree = nested "
        "chords; root-failure tree = a chain into groups of chains. Waits: `AsyncResult.get`.")
STATES = {"SUCCESS": "succeeded", "FAILURE": "failed", "REVOKED": "canceled"}


def _worker(processes: int) -> list[list[str]]:
    return [python("-m", "celery", "-A", "bench.peers.celery_tasks", "worker", "--pool", "prefork",
                   "--concurrency", str(processes), "--loglevel", "WARNING", "-Q", "bench")]


def _s1(meter: ServerMeter, beacon: Beacon, sizes: Sizes, workers: WorkerProcesses) -> Cell:
    from bench.peers.celery_tasks import noop

    pad = sizes.pad()
    noop.delay(pad).get(timeout=30)  # warm: connections, the worker's first task
    beacon.wait("done", 1, 5.0)

    def submit() -> None:
        for _ in range(sizes.tasks):
            noop.delay(pad)

    return throughput(meter, submit, BeaconCompletions(beacon.counts), sizes.tasks,
                      sizes.timeout_s, workers.cpu_s)


def _chain_sig(steps: int, pad: str) -> Any:
    from celery import chain

    from bench.peers.celery_tasks import step

    return chain(step.s(0, pad), *[step.s(pad) for _ in range(steps - 1)])


def _chain(meter: ServerMeter, sizes: Sizes) -> Cell:
    pad, steps = sizes.pad(), sizes.chain_steps

    def one() -> Any:
        return _chain_sig(steps, pad).apply_async().get(timeout=sizes.timeout_s)

    one()
    before = meter.snapshot()
    c1 = chain_level(one, steps, sizes.chain_flows_c1, 1, sizes.timeout_s)
    counters = per_job(before, meter.snapshot(), c1["flows"])
    high = chain_level(one, steps, sizes.chain_flows, sizes.chain_concurrency, sizes.timeout_s)
    return chain_cell(c1, high, counters, steps)


def _fanout(meter: ServerMeter, sizes: Sizes) -> Cell:
    from celery import chain, group

    from bench.peers.celery_tasks import step, total

    pad, width = sizes.pad(), sizes.fanout_width
    expected = sum(1 + i for i in range(width))
    walls, correct = [], 0
    before = meter.snapshot()
    for _ in range(sizes.fanout_repeats):
        t0 = time.perf_counter()
        sig = chain(step.s(0, pad), group(step.s(pad, i) for i in range(width)), total.s(pad))
        value = sig.apply_async().get(timeout=sizes.timeout_s)
        walls.append(time.perf_counter() - t0)
        correct += value == expected
    counters = per_job(before, meter.snapshot(), len(walls))
    return {**fanout_cell(walls, correct, width, counters), "primitive": "chain(root, group, join)"}


def _frozen(sig: Any) -> Any:
    sig.freeze()
    return sig


def _watch(nodes: dict[str, Any], started_at: float, wait_s: float) -> Cell:
    from celery.result import AsyncResult

    from bench.peers.celery_tasks import app

    def read() -> dict[str, str]:
        return {n: STATES.get(AsyncResult(s.id, app=app).state, "pending") for n, s in nodes.items()}

    cell = watch_states(read, started_at, wait_s)
    cell["raw_states"] = {n: AsyncResult(s.id, app=app).state for n, s in nodes.items()}
    return cell


def _cascade(sizes: Sizes) -> Cell:
    """4 leaves -> 2 chords -> 1 chord body; leaf l0 raises."""
    from celery import chord

    from bench.peers.celery_tasks import fail, step, total

    pad = sizes.pad()
    leaves = [_frozen(fail.s(pad))] + [_frozen(step.s(i, pad)) for i in (1, 2, 3)]
    mids = [_frozen(total.s(pad)), _frozen(total.s(pad))]
    top = _frozen(total.s(pad))
    sig = chord([chord(leaves[:2], mids[0]), chord(leaves[2:], mids[1])], top)
    started_at = time.perf_counter()
    sig.apply_async()
    nodes = {**{f"l{i}": s for i, s in enumerate(leaves)}, "m0": mids[0], "m1": mids[1],
             "top": top}
    return {**_watch(nodes, started_at, sizes.cascade_wait_s), "primitive": "nested chord"}


def _cascade_root(sizes: Sizes) -> Cell:
    """root -> 2 -> 4 as chain(root, group(chain(child, group(g, g)), ...)); the root raises."""
    from celery import chain, group

    from bench.peers.celery_tasks import fail, step

    pad = sizes.pad()
    root = _frozen(fail.s(pad))
    children = [_frozen(step.s(pad)) for _ in range(2)]
    grand = [_frozen(step.s(pad)) for _ in range(4)]
    sig = chain(root, group(chain(children[0], group(grand[0], grand[1])),
                            chain(children[1], group(grand[2], grand[3]))))
    started_at = time.perf_counter()
    sig.apply_async()
    nodes = {"root": root, "c0": children[0], "c1": children[1],
             **{f"g{i}": s for i, s in enumerate(grand)}}
    return {**_watch(nodes, started_at, sizes.cascade_wait_s), "primitive": "chain into groups"}


def run(scenarios: list[str], sizes: Sizes, url: str, log_dir: Path,
        out: dict[str, Cell] | None = None) -> dict[str, Cell]:
    out = {} if out is None else out
    meter, beacon = ServerMeter(url), Beacon()
    flows = {CHAIN: lambda: _chain(meter, sizes), FANOUT: lambda: _fanout(meter, sizes),
             CASCADE: lambda: _cascade(sizes), CASCADE_ROOT: lambda: _cascade_root(sizes)}
    wanted = [s for s in flows if s in scenarios]
    try:
        if S1 in scenarios:
            run_phase(out, [S1], _worker(sizes.workers), url, beacon, log_dir / "s1", 1,
                      lambda w: {S1: guarded(lambda: _s1(meter, beacon, sizes, w))})
        if wanted:
            run_phase(out, wanted, _worker(sizes.chain_workers), url, beacon, log_dir / "flows", 1,
                      lambda _: {name: guarded(flows[name]) for name in wanted})
    finally:
        beacon.close()
        meter.close()
    return out
