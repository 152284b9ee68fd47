"""fanout: one flow root → W steps → join, against W independent tasks on the same workers.

The flow: the root returns 1, middle step i returns root + i, the join gets
all W results in one list (``[m.ref() for m in middles]``) and returns their
sum. Its clock runs from submit until ``run.wait`` returns. Then W
independent executions of the same task go through ``submit_many``, and the
clock runs until the workers' counters say all W are recorded. Both run
``--repeat`` times, alternating; ``ratio`` is the median flow wall over the
median independent wall: what the DAG bookkeeping costs on top.
"""

from __future__ import annotations

import time
from typing import Any

import click

from bench.params import BenchError, Params
from bench.procs import ProcessGroup
from bench.scenarios.base import Result, Scenario
from bench.scenarios.flowkit import (
    STEP_TASK,
    SUM_TASK,
    Meter,
    execution_fields,
    flow_workers,
    verdict,
    with_default_workers,
)
from bench.server import Progress, Target
from engine.app import App

NAME = "fanout"
TARGET_RATIO = 1.2  # issue 12 (an earlier issue asked for 1.5)


def _flow(app: App, meter: Meter, width: int, params: Params) -> dict[str, Any]:
    pad = params.payload()
    started = time.perf_counter()
    flow = app.flow("fanout")
    root = flow.step("root", STEP_TASK, 0, pad)
    middles = [flow.step(f"m{i}", STEP_TASK, root.ref(), pad, i) for i in range(width)]
    flow.step("join", SUM_TASK, [m.ref() for m in middles], pad)
    run = flow.submit()
    submit_s = time.perf_counter() - started
    state = run.wait(timeout=params.timeout_s)
    wall_s = time.perf_counter() - started
    fields = meter.fields(width + 2, wall_s)
    status = run.status()
    joined = run.result("join", timeout=1)
    expected = sum(1 + i for i in range(width))
    return {"ops_per_s": round((width + 2) / wall_s, 1), "wall_s": round(wall_s, 3),
            "server_wall_s": (status["finished_ms"] - status["created_ms"]) / 1000,
            "submit_s": round(submit_s, 3), "state": state.value,
            "completed": status["counts"].get("succeeded", 0) - 2,
            "join_result": joined, "join_expected": expected, **fields}


def _independent(app: App, meter: Meter, group: ProcessGroup, width: int,
                 params: Params) -> dict[str, Any]:
    args, done_before = [(0, params.payload(), i) for i in range(width)], group.done()
    started = time.perf_counter()
    ids = [h.id for start in range(0, width, params.chunk)
           for h in app.submit_many(STEP_TASK, args[start:start + params.chunk])]
    submit_s = time.perf_counter() - started
    finished = group.wait_done(done_before + width, params.timeout_s)
    wall_s = time.perf_counter() - started
    fields = meter.fields(width, wall_s)
    rows = execution_fields(app, ids, ("state", "result"))
    right = sum(1 for i, (state, value) in enumerate(rows) if state == "succeeded" and value == str(i))
    return {"ops_per_s": round(width / wall_s, 1), "wall_s": round(wall_s, 3),
            "submit_s": round(submit_s, 3), "timed_out": not finished, "completed": right, **fields}


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median wall time, plus every run's wall time."""
    ordered = sorted(runs, key=lambda r: r["wall_s"])
    return {**ordered[(len(ordered) - 1) // 2], "wall_s_runs": [r["wall_s"] for r in runs]}


def run(params: Params, target: Target, progress: Progress) -> Result:
    params = with_default_workers(params)
    width, repeat = params.extra["width"], params.extra["repeat"]
    flows, independents = [], []
    with flow_workers(params, target, progress, params.timeout_s * 2 * repeat + 120) as (app, group):
        for n in range(1, repeat + 1):  # alternate, so drifts in the machine hit both alike
            done = group.done()
            flows.append(_flow(app, Meter(target, group), width, params))
            if not group.wait_done(done + width + 2, 10.0):  # the counters catch up
                raise BenchError("the workers' counters did not reach the flow's step count")
            independents.append(_independent(app, Meter(target, group), group, width, params))
            progress(f"run {n}/{repeat}: flow 1 -> {width} -> 1 {flows[-1]['wall_s']:.3f}s, "
                     f"{width} independent tasks {independents[-1]['wall_s']:.3f}s")
        workers = group.stop()
    wrong = [r["join_result"] for r in flows if r["join_result"] != r["join_expected"]]
    if wrong or min(r["completed"] for r in independents) < width:
        raise BenchError(f"wrong results: joins {wrong} (expected {flows[0]['join_expected']}), "
                         f"independent right: {[r['completed'] for r in independents]}")
    flow, independent = _median(flows), _median(independents)
    ratio = round(flow["wall_s"] / independent["wall_s"], 3)
    notes = [(f"flow = root -> {width} -> join (ops/s counts its {width + 2} steps); independent = "
              f"{width} tasks via submit_many; ratio = flow wall_s / independent wall_s, "
              f"medians of {repeat} alternating runs"),
             f"target ratio <= {TARGET_RATIO:g}: {verdict(ratio <= TARGET_RATIO)} ({ratio})"]
    return {"scenario": NAME, "width": width, "repeat": repeat, "flow": flow,
            "independent": independent, "ratio": ratio, "ratio_met": ratio <= TARGET_RATIO,
            "tasks": width, "workers": params.workers, "concurrency": params.concurrency,
            "payload_bytes": params.payload_bytes, "worker_stats": workers, "notes": notes}


SCENARIO = Scenario(
    NAME, "One flow root -> --width steps -> join against as many independent tasks "
          "(--tasks is not used).", run,
    (click.Option(["--width"], default=1000, show_default=True, type=click.IntRange(1, 9_000)),
     click.Option(["--repeat"], default=3, show_default=True, type=click.IntRange(1, 100),
                  help="Alternating runs of each; the medians are reported.")))
