"""cascade: a root that fails for good, and a tree of descendants that must all be skipped.

``--shape 10,100,890`` gives the number of steps per level below the root;
the steps of each level hang round-robin under the previous level's (each
takes its parent's result through ``.ref()``), so 1,000 descendants in all.
The root raises ``PermanentError``; the worker that records the failure
dispatches, and the skips cascade breadth-first. The measure is server clock:
the flow's ``finished_ms`` minus the root's ``finished_ms``. The client
observes the same span from the root's ``finished_ms`` to ``run.wait``
returning (same host, so the clocks agree) and submit → wait in all.
"""

from __future__ import annotations

import time
from typing import Any

import click

from bench.params import Params
from bench.scenarios.base import Result, Scenario
from bench.scenarios.flowkit import (
    FAIL_TASK,
    STEP_TASK,
    Meter,
    execution_fields,
    flow_workers,
    int_list,
    verdict,
    with_default_workers,
)
from bench.server import Progress, Target
from engine.app import App
from engine.flowrun import FlowRun
from engine.flows import Step

NAME = "cascade"
TARGET_S = 1.0
TAIL_S = 0.3  # wait before reading the server counters, so they include the cascade's tail


def submit_tree(app: App, shape: list[int], pad: str) -> tuple[FlowRun, Step]:
    flow = app.flow("cascade")
    root = flow.step("root", FAIL_TASK, pad)
    level = [root]
    for depth, count in enumerate(shape, start=1):
        level = [flow.step(f"d{depth}-{j}", STEP_TASK, level[j % len(level)].ref(), pad)
                 for j in range(count)]
    return flow.submit(), root


def _measure(app: App, meter: Meter, shape: list[int], params: Params) -> dict[str, Any]:
    descendants = sum(shape)
    started = time.perf_counter()
    run, root = submit_tree(app, shape, params.payload())
    state = run.wait(timeout=params.timeout_s)
    returned_ms, client_wall_s = time.time() * 1000, time.perf_counter() - started
    time.sleep(TAIL_S)  # the dispatcher still resolves the leaves once the flow is failed
    fields = meter.fields(descendants, client_wall_s)
    status = run.status()
    [(root_state, root_finished)] = execution_fields(app, [root.execution_id],
                                                     ("state", "finished_ms"))
    steps = run.describe(timeline_limit=1)["steps"]
    skipped = sum(1 for s in steps if s["step"] != "root" and s["state"] == "skipped")
    wall_s = (status["finished_ms"] - int(root_finished or 0)) / 1000
    return {"ops_per_s": round(descendants / max(wall_s, 0.001), 1), "wall_s": wall_s,
            "client_after_root_s": round((returned_ms - int(root_finished or 0)) / 1000, 3),
            "client_wall_s": round(client_wall_s, 3), "flow_state": state.value,
            "root_state": root_state, "completed": skipped,
            "all_skipped": skipped == descendants and len(steps) == descendants + 1,
            "counts": status["counts"], **fields}


def run(params: Params, target: Target, progress: Progress) -> Result:
    params = with_default_workers(params)
    shape = params.extra["shape"]
    with flow_workers(params, target, progress, params.timeout_s + 120) as (app, group):
        measured = _measure(app, Meter(target, group), shape, params)
        workers = group.stop()
    progress(f"cascade over {sum(shape)} descendants: {measured['wall_s']:.3f}s after the root "
             f"failed, all skipped: {measured['all_skipped']}")
    met = measured["all_skipped"] and measured["wall_s"] <= TARGET_S
    notes = [(f"tree root -> {' -> '.join(map(str, shape))}; ops/s = skips/s; wall_s = flow "
             "finished_ms - root finished_ms (server clock); .../job = per descendant"),
             (f"target <= {TARGET_S:g} s with every descendant skipped: {verdict(met)} "
             f"({measured['wall_s']} s, all_skipped {measured['all_skipped']})")]
    return {"scenario": NAME, "shape": shape, "descendants": sum(shape), "cascade": measured,
            "wall_s": measured["wall_s"], "all_skipped": measured["all_skipped"],
            "target_met": met, "tasks": sum(shape), "workers": params.workers,
            "concurrency": params.concurrency, "payload_bytes": params.payload_bytes,
            "worker_stats": workers, "notes": notes}


SCENARIO = Scenario(
    NAME, "A failing root skips a tree of descendants; time from its failure until the flow is "
          "failed (--tasks is not used).", run,
    (click.Option(["--shape"], default="10,100,890", show_default=True, callback=int_list,
                  help="Steps per level below the root."),))
