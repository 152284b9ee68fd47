"""submit-claim-complete: N no-op tasks through W worker processes, against the raw baseline.

Workers start first; the parent then submits in chunks (``submit_many``) and
the clock runs from the first submit until the workers' shared counters say
all N completions are recorded. Claim latency (``started_ms - ready_ms``,
server clock) is read from the execution hashes afterwards.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

from bench.baseline import run_baseline
from bench.metrics import client_cpu, per_job, percentile, read_counters
from bench.params import Params
from bench.procs import Child, ProcessGroup, elapsed_cpu_s, running, serve_app
from bench.scenarios.base import Result, Scenario
from bench.server import Progress, Target, delete_matching, read_hashes
from engine.app import App
from keys import partition_of

NAME = "submit-claim-complete"
TASK_NAME = "bench.noop"
SETTLE_S = 0.2  # let the workers' hint listeners reach BLMPOP before the clock starts


def noop(payload: str) -> None:
    """The task: no work, so the engine's own cost is all that is measured."""


def make_app(url: str, namespace: str, partitions: int) -> App:
    app = App(url, namespace=namespace, partitions=partitions)
    app.task(name=TASK_NAME)(noop)
    return app


def flowslot_worker(child: Child, url: str, namespace: str, partitions: int,
                    concurrency: int) -> dict[str, Any]:
    """One worker process (see ``bench.procs.serve_app``)."""
    return serve_app(child, make_app(url, namespace, partitions), concurrency)


def _ms(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 2)


def _latencies(app: App, ids: list[str]) -> tuple[list[int], int]:
    """Claim latencies in ms and the number of succeeded executions."""
    ks = app.client.keys
    keys = [ks.execution(partition_of(i, ks.partitions), i) for i in ids]
    rows = read_hashes(app.client, keys, ("ready_ms", "started_ms", "state"))
    latencies = [int(s) - int(r) for r, s, _ in rows if r and s]
    return latencies, sum(1 for *_, state in rows if state == "succeeded")


def _timed(app: App, group: ProcessGroup, params: Params, target: Target) -> dict[str, Any]:
    """Submit everything, wait for every completion; the clock and the counters around it."""
    args = [(params.payload(),)] * params.tasks
    before, cpu0, workers0 = read_counters(target), time.process_time(), group.cpu_s()
    started = time.perf_counter()
    ids = [h.id for start in range(0, params.tasks, params.chunk)
           for h in app.submit_many(TASK_NAME, args[start:start + params.chunk])]
    submit_s = time.perf_counter() - started
    finished = group.wait_done(params.tasks, params.timeout_s)
    wall_s = time.perf_counter() - started
    parent_cpu_s = time.process_time() - cpu0
    worker_cpu_s = elapsed_cpu_s(workers0, group.cpu_s())
    after = read_counters(target)
    return {
        "ids": ids,
        "ops_per_s": round(params.tasks / wall_s, 1),
        **per_job(after.minus(before), params.tasks, wall_s),
        "wall_s": round(wall_s, 3),
        "submit_s": round(submit_s, 3),
        "timed_out": not finished,
        **client_cpu(parent_cpu_s, worker_cpu_s, params.tasks),
    }


def run_flowslot(params: Params, target: Target, progress: Progress) -> dict[str, Any]:
    namespace = f"bench-{os.urandom(4).hex()}"
    app = make_app(target.url, namespace, params.partitions)
    progress(f"flowslot: {params.workers} worker processes x {params.concurrency} threads, "
             f"namespace {namespace}")
    try:
        app.client.check_config()  # connect first: loads the functions, records the partitions
        worker_args = (target.url, namespace, params.partitions, params.concurrency)
        with running(flowslot_worker, worker_args, params.workers,
                     deadline_s=params.timeout_s + 120) as group:
            group.wait_ready()
            time.sleep(SETTLE_S)
            timed = _timed(app, group, params, target)
            workers = group.stop()
        latencies, completed = _latencies(app, timed.pop("ids"))
    finally:
        if not target.embedded:
            delete_matching(target, f"{namespace}:*")
        app.close()
    progress(f"flowslot: {completed}/{params.tasks} in {timed['wall_s']:.2f}s "
             f"(submitting took {timed['submit_s']:.2f}s)")
    return {
        "ops_per_s": timed.pop("ops_per_s"),
        "p50_ms": _ms(percentile(latencies, 50)),
        "p99_ms": _ms(percentile(latencies, 99)),
        "completed": completed,
        **timed,
        "worker_stats": workers,
    }


def run(params: Params, target: Target, progress: Progress) -> Result:
    flowslot = run_flowslot(params, target, progress)
    baseline = run_baseline(params, target, progress)
    notes = []
    if target.mode == "cluster" and len(target.primaries) > 1:
        notes.append(f"baseline uses one node ({baseline['node']}) of {len(target.primaries)}: "
                     "a list is one key")
    return {
        "scenario": NAME,
        "flowslot": flowslot,
        "baseline": baseline,
        "ratio": round(flowslot["ops_per_s"] / baseline["ops_per_s"], 3),
        "tasks": params.tasks,
        "workers": params.workers,
        "concurrency": params.concurrency,
        "payload_bytes": params.payload_bytes,
        "notes": notes,
    }


SCENARIO = Scenario(NAME, "No-op tasks: submit, claim, complete; against a raw LPUSH/BRPOP queue.",
                    run)
