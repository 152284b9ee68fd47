"""submit-claim-complete: N no-op tasks through W worker processes, against the raw baseline.

Workers start first; the parent then submits in chunks (``submit_many``) and
the clock runs from the first submit until the workers' shared counters say
all N completions are recorded. Claim latency (``started_ms - ready_ms``,
server clock) is read from the execution hashes afterwards.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from dataclasses import replace
from typing import Any

import click

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
    rows = read_hashes(app.client, keys, ("ready_ms", "created_ms", "started_ms", "state"))
    # submitted ready: no ready_ms stored, it became ready when created
    latencies = [int(s) - int(r or c) for r, c, s, _ in rows if (r or c) and s]
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


def run_pair(params: Params, target: Target, progress: Progress, baseline_first: bool = False) -> Result:
    """One flowslot run and one baseline run at ``params.workers`` worker processes."""
    if baseline_first:
        baseline = run_baseline(params, target, progress)
        flowslot = run_flowslot(params, target, progress)
    else:
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


# Per-job figures summarised over the repeats of one worker count (median, and min..max for ops/s).
SUMMARISED = ("ops_per_s", "p50_ms", "p99_ms", "commands_per_job", "fcalls_per_job",
              "server_cpu_us_per_job", "worker_cpu_us_per_job", "submitter_cpu_us_per_job", "wall_s")


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in SUMMARISED:
        values = [r[key] for r in runs if isinstance(r.get(key), (int, float))]
        out[key] = round(statistics.median(values), 2) if values else None
    ops = [r["ops_per_s"] for r in runs]
    out["ops_range"] = f"{min(ops):,.0f}-{max(ops):,.0f}"
    out["completed"] = min(r["completed"] for r in runs)
    out["runs"] = len(runs)
    return out


def run(params: Params, target: Target, progress: Progress) -> Result:
    """Every worker count of ``--workers``, ``--repeat`` times, flowslot and baseline alternating
    (which of the two goes first alternates too); medians, spread and the ratio per count."""
    counts = params.extra.get("worker_counts") or [params.workers]  # --workers 1,2,4,8
    repeat = params.extra.get("repeat") or 1
    pairs: dict[int, list[Result]] = {w: [] for w in counts}
    for r in range(repeat):
        for n, workers in enumerate(counts):
            progress(f"repeat {r + 1}/{repeat}, {workers} worker process(es)")
            pair = run_pair(replace(params, workers=workers), target, progress,
                            baseline_first=(r + n) % 2 == 1)
            pairs[workers].append(pair)
    result: Result = {"scenario": NAME, "tasks": params.tasks, "workers": counts, "repeat": repeat,
                      "concurrency": params.concurrency, "payload_bytes": params.payload_bytes}
    ratios: dict[str, Any] = {}
    for workers, runs in pairs.items():
        result[f"flowslot w={workers}"] = _summary([p["flowslot"] for p in runs])
        result[f"baseline w={workers}"] = _summary([p["baseline"] for p in runs])
        each = [p["ratio"] for p in runs]
        ratios[str(workers)] = {"median": round(statistics.median(each), 3), "min": min(each),
                                "max": max(each), "each": each}
    result["ratios"] = ratios
    result["runs"] = {str(w): runs for w, runs in pairs.items()}
    result["notes"] = sorted({note for runs in pairs.values() for p in runs for note in p["notes"]})
    return result


SCENARIO = Scenario(
    NAME, "No-op tasks: submit, claim, complete; against a raw LPUSH/BRPOP queue, at each of "
          "--workers (a list), --repeat times, alternating the two.", run,
    options=(
        click.Option(["--repeat"], default=3, show_default=True, type=click.IntRange(1, 50),
                     help="Runs of each system at each worker count; the table shows medians and "
                          "the ops/s range."),
    ),
    worker_counts="1,2,4,8")
