"""signal: how long a signal takes to make waiting work runnable, and signals per second.

N flows each wait for a signal (``flow.wait("approve")``) before one step.
``app.signal(token, payload)`` verifies the token, resumes the wait step and
dispatches its child (the child is ready, and hinted, when ``signal()``
returns), so the latency from ``signal()`` being called to the resumed work
being claimable is the duration of the call: measured one at a time
(concurrency 1, p50 / p99), then throughput from 16 client threads. Target:
p50 at most 3 ms at concurrency 1.
"""

from __future__ import annotations

import os
import statistics
import threading
import time

from bench.params import Params
from bench.scenarios.base import Result, Scenario
from bench.server import Progress, Target, delete_matching
from engine.app import App

NAME = "signal"
FLOWS = 2000
THREADS = 16


def _flows(app: App, count: int) -> list[str]:
    tokens = []
    for _ in range(count):
        flow = app.flow("signal")
        approve = flow.wait("approve")
        flow.step("pay", "bench.noop", approve.ref())
        tokens.append(flow.submit().token("approve"))
    return tokens


def _latency(app: App, tokens: list[str]) -> dict[str, float]:
    took = []
    for token in tokens:
        started = time.perf_counter()
        app.signal(token, {"ok": True})
        took.append((time.perf_counter() - started) * 1000)
    took.sort()
    return {"signals": len(took), "p50_ms": round(statistics.median(took), 2),
            "p99_ms": round(took[int(len(took) * 0.99) - 1], 2)}


def _throughput(app: App, tokens: list[str], threads: int) -> dict[str, float]:
    def run(n: int) -> None:
        for token in tokens[n::threads]:
            app.signal(token, {"ok": True})

    started = time.perf_counter()
    workers = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    wall = time.perf_counter() - started
    return {"threads": threads, "signals": len(tokens), "wall_s": round(wall, 3),
            "signals_per_s": round(len(tokens) / wall, 1)}


def run(params: Params, target: Target, progress: Progress) -> Result:
    namespace = f"bench-{os.urandom(4).hex()}"
    app = App(target.url, namespace=namespace, partitions=params.partitions)
    try:
        latency = _latency(app, _flows(app, FLOWS))
        progress(f"concurrency 1: {latency}")
        throughput = _throughput(app, _flows(app, FLOWS), THREADS)
        progress(f"concurrency {THREADS}: {throughput}")
    finally:
        app.close()
        if not target.embedded:
            delete_matching(target, f"{namespace}:*")
    return {"scenario": NAME, "concurrency_1": latency, f"concurrency_{THREADS}": throughput,
            "target_p50_ms": 3.0, "meets_target": latency["p50_ms"] <= 3.0}


SCENARIO = Scenario(NAME, "Signal latency (p50 at concurrency 1, target 3 ms) and signals/s at 16 threads.",
                    run)
