"""chain: linear flows of S steps, each step passing its result to the next (``.ref()``).

At each concurrency C, C submitter threads in this process keep C flows in
flight: each loops submit → ``run.wait`` until the level's flows are used
up. Latency per flow is submit → wait returns (client clock) and
``finished_ms - created_ms`` of the flow hash (server clock). Every flow's
last step must return S (step i adds 1 to step i-1's result, the first gets 0).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import click

from bench.metrics import percentile
from bench.params import BenchError, Params
from bench.scenarios.base import Result, Scenario
from bench.scenarios.flowkit import (
    STEP_TASK,
    Meter,
    execution_fields,
    flow_workers,
    int_list,
    ms,
    verdict,
    with_default_workers,
)
from bench.server import Progress, Target, read_hashes
from engine.app import App
from engine.flowrun import FlowRun
from engine.states import FlowState

NAME = "chain"
# Issue 12's targets (an earlier issue asked for 100 flows/s and 20 ms): p50 at concurrency 1,
# and flows/s at concurrency 16 twice the 185-209 measured before it on the reference VM.
TARGET_P50_C1_MS = 5.0
TARGET_FLOWS_PER_S_C16 = 400.0


def submit_chain(app: App, steps: int, pad: str) -> tuple[FlowRun, str]:
    """Submit one chain; returns the run and its last step's execution id."""
    flow = app.flow("chain")
    last = flow.step("s0", STEP_TASK, 0, pad)
    for i in range(1, steps):
        last = flow.step(f"s{i}", STEP_TASK, last.ref(), pad)
    return flow.submit(), last.execution_id


def _submitters(app: App, flows: int, concurrency: int, steps: int, pad: str,
                timeout_s: float) -> list[tuple[FlowRun, str, float, FlowState]]:
    """C threads, each looping submit → wait while flows remain; all stop at the first
    error or when ``timeout_s`` has passed."""
    done: list[tuple[FlowRun, str, float, FlowState]] = []
    errors: list[BaseException] = []
    tickets, lock = iter(range(flows)), threading.Lock()
    deadline = time.monotonic() + timeout_s

    def loop() -> None:
        while not errors and time.monotonic() < deadline:
            with lock:
                if next(tickets, None) is None:
                    return
            try:
                started = time.perf_counter()
                run, last_id = submit_chain(app, steps, pad)
                state = run.wait(timeout=max(deadline - time.monotonic(), 0.001))
                done.append((run, last_id, time.perf_counter() - started, state))
            except BaseException as e:  # noqa: BLE001 - re-raised in the parent below
                errors.append(e)

    threads = [threading.Thread(target=loop, name=f"chain-{n}", daemon=True)
               for n in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=max(deadline - time.monotonic(), 0) + 10)
    if errors:
        raise BenchError(f"a submitter failed: {errors[0]!r}") from errors[0]
    if len(done) < flows:
        raise BenchError(f"only {len(done)}/{flows} flows finished at concurrency {concurrency} "
                         f"within {timeout_s:g}s")
    return done


def _level(app: App, meter: Meter, flows: int, concurrency: int, params: Params) -> dict[str, Any]:
    steps, started = params.extra["steps"], time.perf_counter()
    done = _submitters(app, flows, concurrency, steps, params.payload(), params.timeout_s)
    wall_s = time.perf_counter() - started
    counters = meter.fields(flows, wall_s)
    runs = [run for run, *_ in done]
    spans = read_hashes(app.client, [r.key for r in runs], ("created_ms", "finished_ms"))
    server_ms = [int(f) - int(c) for c, f in spans if c and f]
    finals = execution_fields(app, [last for _, last, *_ in done], ("state", "result"))
    correct = sum(1 for (state, value), (*_, flow_state) in zip(finals, done, strict=False)
                  if state == "succeeded" and value == str(steps)
                  and flow_state is FlowState.SUCCEEDED)
    latencies = [seconds * 1000 for _, _, seconds, _ in done]
    return {"ops_per_s": round(flows / wall_s, 1), "p50_ms": ms(percentile(latencies, 50)),
            "p99_ms": ms(percentile(latencies, 99)),
            "server_p50_ms": ms(percentile(server_ms, 50)),
            "server_p99_ms": ms(percentile(server_ms, 99)), "concurrency": concurrency,
            "flows": flows, "completed": correct, "wall_s": round(wall_s, 3), **counters}


def _levels(params: Params) -> list[tuple[int, int]]:
    """(concurrency, flows) per level."""
    flows, flows_c1 = params.extra["flows"], params.extra["flows_c1"] or params.extra["flows"]
    return [(c, flows_c1 if c == 1 else flows) for c in dict.fromkeys(params.extra["concurrencies"])]


def run(params: Params, target: Target, progress: Progress) -> Result:
    params = with_default_workers(params)
    levels, measured = _levels(params), {}
    with flow_workers(params, target, progress, params.timeout_s * len(levels) + 120) as (app, group):
        for concurrency, flows in levels:
            measured[concurrency] = _level(app, Meter(target, group), flows, concurrency, params)
            m = measured[concurrency]
            progress(f"concurrency {concurrency}: {flows} flows, {m['ops_per_s']} flows/s, "
                     f"p50 {m['p50_ms']} ms, p99 {m['p99_ms']} ms")
        workers = group.stop()
    wrong = {c: m["flows"] - m["completed"] for c, m in measured.items() if m["completed"] < m["flows"]}
    if wrong:
        raise BenchError(f"flows without the right final result, by concurrency: {wrong}")
    return _result(params, levels, measured, workers)


def _result(params: Params, levels: list[tuple[int, int]], measured: dict[int, dict[str, Any]],
            workers: list[dict[str, Any]]) -> Result:
    best = max(m["ops_per_s"] for m in measured.values())
    p50_c1 = measured[1]["p50_ms"] if 1 in measured else None
    at_16 = measured[16]["ops_per_s"] if 16 in measured else None
    notes = [(f"each row: N = {dict(levels)} flows of {params.extra['steps']} steps kept c at a "
             "time in flight; ops/s = flows/s, p50/p99 = submit -> wait per flow, .../job = per flow")]
    if at_16 is not None:
        notes.append(f"target >= {TARGET_FLOWS_PER_S_C16:g} flows/s at concurrency 16: "
                     f"{verdict(at_16 >= TARGET_FLOWS_PER_S_C16)} ({at_16})")
    if p50_c1 is not None:
        notes.append(f"target p50 <= {TARGET_P50_C1_MS:g} ms at concurrency 1: "
                     f"{verdict(p50_c1 <= TARGET_P50_C1_MS)} ({p50_c1} ms)")
    rows = [{"concurrency": c, "flows": m["flows"], "flows_per_s": m["ops_per_s"],
             "p50_ms": m["p50_ms"], "p99_ms": m["p99_ms"], "server_p50_ms": m["server_p50_ms"],
             "wall_s": m["wall_s"], "all_correct": m["completed"] == m["flows"]}
            for c, m in measured.items()]
    return {"scenario": NAME, "results": rows, "steps": params.extra["steps"],
            **{f"c={c}": m for c, m in measured.items()},
            "tasks": min(flows for _, flows in levels), "workers": params.workers,
            "concurrency": params.concurrency, "payload_bytes": params.payload_bytes,
            "targets": {"best_flows_per_s": best, "flows_per_s_c16": at_16,
                        "flows_per_s_c16_met": None if at_16 is None else at_16 >= TARGET_FLOWS_PER_S_C16,
                        "p50_ms_c1": p50_c1,
                        "p50_ms_c1_met": None if p50_c1 is None else p50_c1 <= TARGET_P50_C1_MS},
            "worker_stats": workers, "notes": notes}


SCENARIO = Scenario(
    NAME, "Linear flows of --steps steps passing results along; flows/s and latency per concurrency "
          "(--tasks is not used).", run,
    (click.Option(["--concurrencies"], default="1,4,16", show_default=True, callback=int_list,
                  help="Flows kept in flight, one level per value."),
     click.Option(["--flows"], default=200, show_default=True, type=click.IntRange(1, 1_000_000),
                  help="Flows per concurrency level."),
     click.Option(["--flows-c1"], default=None, type=click.IntRange(1, 1_000_000),
                  help="Flows at concurrency 1 (default: --flows)."),
     click.Option(["--steps"], default=10, show_default=True, type=click.IntRange(1, 500))))
