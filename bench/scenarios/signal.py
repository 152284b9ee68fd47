"""signal: how long a signal takes to make waiting work runnable, and signals per second.

Two kinds of wait, each measured on fresh ones:

- **wait steps**: N flows each wait for a signal (``flow.wait("approve")``)
  before one step. ``app.signal(token, payload)`` verifies the token, resumes
  the wait step (``wait_signal``) and dispatches its child, which is ready and
  hinted when ``signal()`` returns.
- **suspended handlers**: N executions of a task whose handler calls
  ``current_task().wait_for("approval")``; an in-process ``Worker`` runs them
  until each has suspended (``exec_suspend``: leased → waiting), then stops.
  ``app.signal(token, payload)`` (``exec_signal``) stores the payload, makes
  the execution ready and hints its lane before it returns.

So the latency from ``signal()`` being called to the resumed work being
claimable is the duration of the call: measured one at a time (concurrency 1,
p50 / p99; after each call the resumed execution is checked to be in its
lane's ready set), then throughput from 16 client threads. Then, end to end
with a live in-process worker (one at a time): from ``signal()`` being called
to the resumed code running (the child step's handler starting, or the
handler's ``wait_for`` returning the payload), which adds the hint's wake-up,
the claim and the handler's start. Target: p50 at most 3 ms at concurrency 1.
"""

from __future__ import annotations

import json
import os
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import click

from bench.params import BenchError, Params
from bench.scenarios.base import Result, Scenario
from bench.server import Progress, Target, delete_matching
from engine import current_task, signals
from engine.app import App
from engine.router import Command
from engine.worker import Worker
from keys import partition_of

NAME = "signal"
FLOWS = 2000  # waits per measurement (--signals)
END_TO_END = 300  # waits resumed one at a time through a live worker (at most --signals)
THREADS = 16
WORKER_THREADS = 16
HANDLER = "bench.approval"  # suspends in wait_for("approval")
CHILD = "bench.after_approval"  # the step after a wait step
PAYLOAD = {"ok": True}
Waits = list[tuple[str, str]]  # (id of the execution to resume, token)


class Resumed:
    """When each resumed piece of code ran again (``perf_counter``), by execution or flow id."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self.done = threading.Condition()

    def mark(self, key: str) -> None:
        with self.done:
            self.at[key] = time.perf_counter()
            self.done.notify_all()

    def wait(self, key: str, timeout_s: float) -> float:
        with self.done:
            if not self.done.wait_for(lambda: key in self.at, timeout_s):
                raise BenchError(f"{key} did not run again within {timeout_s}s")
            return self.at[key]


def _worker_app(target: Target, namespace: str, partitions: int, resumed: Resumed) -> App:
    app = App(target.url, namespace=namespace, partitions=partitions)

    @app.task(name=HANDLER)
    def approval() -> Any:
        decision = current_task().wait_for("approval")
        resumed.mark(current_task().execution_id)
        return decision

    @app.task(name=CHILD)
    def after_approval(decision: Any) -> Any:
        resumed.mark(current_task().flow_id)
        return decision

    return app


def _wait_steps(app: App, count: int) -> Waits:
    """``count`` flows waiting for a signal; (flow id, token) each."""
    waits = []
    for _ in range(count):
        flow = app.flow("signal")
        approve = flow.wait("approve")
        flow.step("pay", CHILD, approve.ref())
        run = flow.submit()
        waits.append((run.id, run.token("approve")))
    return waits


def _suspended(app: App, worker_app: App, count: int, timeout_s: float) -> Waits:
    """``count`` executions whose handler suspended in ``wait_for``; (execution id, token) each.
    Runs a worker until they all wait, unless one is running already."""
    handles = [app.submit(HANDLER) for _ in range(count)]
    ids = [h.id for h in handles]
    deadline = time.monotonic() + timeout_s
    pending = ids
    while pending:
        if time.monotonic() > deadline:
            raise BenchError(f"{len(pending)} of {count} handlers did not suspend within {timeout_s}s")
        time.sleep(0.05)
        states = app.client.run_many([_state(app, eid) for eid in pending])
        pending = [eid for eid, state in zip(pending, states, strict=True) if state != "waiting"]
    return [(eid, signals.issue_for_execution(app.client, eid, "approval")) for eid in ids]


def _state(app: App, eid: str) -> Command:
    key = app.client.keys.execution(partition_of(eid, app.client.keys.partitions), eid)
    return Command(("HGET", key, "state"), key)


def _latency(app: App, waits: Waits, claimable: Callable[[str], bool]) -> dict[str, Any]:
    took, not_claimable = [], 0
    for key, token in waits:
        started = time.perf_counter()
        app.signal(token, PAYLOAD)
        took.append((time.perf_counter() - started) * 1000)
        not_claimable += not claimable(key)
    if not_claimable:
        raise BenchError(f"{not_claimable} resumed executions were not claimable when signal() returned")
    return {"signals": len(took), **_percentiles(took)}


def _percentiles(took_ms: list[float]) -> dict[str, float]:
    took_ms = sorted(took_ms)
    return {"p50_ms": round(statistics.median(took_ms), 2),
            "p99_ms": round(took_ms[max(int(len(took_ms) * 0.99) - 1, 0)], 2)}


def _throughput(app: App, waits: Waits, threads: int) -> dict[str, float]:
    def run(n: int) -> None:
        for _, token in waits[n::threads]:
            app.signal(token, PAYLOAD)

    started = time.perf_counter()
    workers = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    wall = time.perf_counter() - started
    return {"threads": threads, "signals": len(waits), "wall_s": round(wall, 3),
            "signals_per_s": round(len(waits) / wall, 1)}


def _end_to_end(app: App, waits: Waits, resumed: Resumed, timeout_s: float) -> dict[str, Any]:
    """One at a time with a worker running: ``signal()`` called → the resumed code runs."""
    took = []
    for key, token in waits:
        started = time.perf_counter()
        app.signal(token, PAYLOAD)
        took.append((resumed.wait(key, timeout_s) - started) * 1000)
    return {"signals": len(took), **_percentiles(took)}


def _ready_check(app: App, lane: str, step: str | None) -> Callable[[str], bool]:
    """Whether the resumed execution (or the ``step`` of the resumed flow) is in its ready set."""
    ks = app.client.keys

    def claimable(key: str) -> bool:
        eid = app.run(key).step_execution(step) if step else key
        ready = ks.ready(partition_of(eid, ks.partitions), lane)
        return app.client.run(Command(("ZSCORE", ready, eid), ready)) is not None

    return claimable


def _measure(app: App, worker_app: App, params: Params, progress: Progress,
             resumed: Resumed) -> dict[str, Any]:
    count = params.extra.get("signals", FLOWS)
    out: dict[str, Any] = {}
    kinds: dict[str, tuple[Callable[[int], Waits], Callable[[str], bool]]] = {
        "wait_step": (lambda n: _wait_steps(app, n), _ready_check(app, "default", "pay")),
        "suspended_handler": (lambda n: _suspended(app, worker_app, n, params.timeout_s),
                              _ready_check(app, "default", None)),
    }
    for kind, (make, claimable) in kinds.items():
        worker = Worker(worker_app, concurrency=WORKER_THREADS).start()
        try:  # a live worker suspends the handlers; it stops before the timed part
            waits, more = make(count), make(count)
        finally:
            worker.stop_and_wait()
        out[kind] = {"concurrency_1": _latency(app, waits, claimable)}
        progress(f"{kind}, concurrency 1: {out[kind]['concurrency_1']}")
        out[kind][f"concurrency_{THREADS}"] = _throughput(app, more, THREADS)
        progress(f"{kind}, concurrency {THREADS}: {out[kind][f'concurrency_{THREADS}']}")
        worker = Worker(worker_app, concurrency=WORKER_THREADS).start()
        try:
            for key, _ in waits + more:  # the work resumed above runs first
                resumed.wait(key, params.timeout_s)
            out[kind]["end_to_end_concurrency_1"] = _end_to_end(app, make(min(END_TO_END, count)), resumed,
                                                                params.timeout_s)
        finally:
            worker.stop_and_wait()
        progress(f"{kind}, signal() to the resumed code running: {out[kind]['end_to_end_concurrency_1']}")
        c1, c16 = out[kind]["concurrency_1"], out[kind][f"concurrency_{THREADS}"]
        out[kind].update(ops_per_s=c16["signals_per_s"], p50_ms=c1["p50_ms"], p99_ms=c1["p99_ms"],
                         completed=2 * count + min(END_TO_END, count))  # the table's columns
    return out


def run(params: Params, target: Target, progress: Progress) -> Result:
    namespace = f"bench-{os.urandom(4).hex()}"
    resumed = Resumed()
    app = App(target.url, namespace=namespace, partitions=params.partitions)
    worker_app = _worker_app(target, namespace, params.partitions, resumed)
    try:
        measured = _measure(app, worker_app, params, progress, resumed)
    finally:
        app.close()
        worker_app.close()
        if not target.embedded:
            delete_matching(target, f"{namespace}:*")
    p50s = [m["concurrency_1"]["p50_ms"] for m in measured.values()]
    count = params.extra.get("signals", FLOWS)
    return {"scenario": NAME, **measured, "tasks": 2 * count + min(END_TO_END, count), "workers": 1,
            "concurrency": WORKER_THREADS, "payload_bytes": len(json.dumps(PAYLOAD, separators=(",", ":"))),
            "target_p50_ms": 3.0, "meets_target": max(p50s) <= 3.0,
            "notes": [f"ops/s: signals/s from {THREADS} threads; p50 / p99: the signal() call at "
                      "concurrency 1, the resumed work claimable when it returns (checked)",
                      "end_to_end_concurrency_1: signal() called to the resumed code running in an "
                      f"in-process worker of {WORKER_THREADS} threads"]}


SCENARIO = Scenario(NAME, "Signal latency to wait steps and suspended handlers (p50 at concurrency 1, "
                          "target 3 ms), signals/s at 16 threads, and signal-to-resumed-code.", run,
                    (click.Option(["--signals"], default=FLOWS, show_default=True, type=click.IntRange(1, 100_000),
                                  help="Waits of each kind per measurement."),))
