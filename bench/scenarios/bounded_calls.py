"""bounded-calls: the longest single function call while flows of N steps go through.

For each N of ``--steps`` (several sizes run in turn on the same cluster and
workers), five phases:

- ``fan-in``: root → N parallel steps → one join taking all N results
  (``[m.ref() for m in middles]``); the join's sum is checked, and every
  step must have run exactly once (one attempt each, and the workers'
  counters grew by exactly N + 2).
- ``roots``: N independent steps, held until the flow is sealed (``flow_seal``),
  then run; each result and attempt count is checked.
- ``fan-out``: root → N children, and the root fails for good: the cascade
  skips all N.
- ``cancel-retry``: root (sleeps ``SLOW_ROOT_S``) → N → join; canceled while
  the root runs (every step canceled), then retried until it succeeds with
  the right sum.
- ``retention``: N standalone executions are run (not timed), then the
  retention scanners at retention 0 (``rec_purge``, ``flow_purge`` until
  every flow is gone, ``rec_purge`` until nothing is left) delete them and
  every flow above; each must be gone.

Every primary logs each command that ran at least ``--slowlog-us`` in its
SLOWLOG, reset before each phase and read after it (``bench/slowlog.py``):
per phase and function, the calls logged, those over ``LIMIT_MS`` and the
longest. The servers' ``INFO commandstats`` give each phase's total FCALL
time (the workers' once-a-second promotion calls included), whose share per
step should stay flat as N grows. With ``--server-priority`` (the default)
the embedded servers run ahead of every other process, so that on a small,
busy machine SLOWLOG holds each call's own time rather than the time the
server waited for a core.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import click

from bench.params import BenchError, Params
from bench.procs import Child, ProcessGroup, running, serve_app
from bench.scenarios.base import Result, Scenario
from bench.scenarios.flowkit import (
    FAIL_TASK,
    STEP_TASK,
    SUM_TASK,
    Meter,
    execution_fields,
    int_list,
    make_app,
    verdict,
    with_default_workers,
)
from bench.server import Progress, Target, delete_matching
from bench.slowlog import PhaseLog, SlowLogs
from engine.app import App
from engine.flowrun import FlowRun
from engine.flows import FlowBuilder, Step
from engine.router import Command
from reconciler.scanners import FlowRetention, Retention

NAME = "bounded-calls"
LIMIT_MS = 20.0
SLOW_TASK = "bench.slow"
SLOW_ROOT_S = 1.0
SLOWLOG_MAX_LEN = 100_000
WORKER_NICE = 10  # with --server-priority the workers yield the cores to the servers
SERVER_NICE = -10
PHASES = ("fan-in", "roots", "fan-out", "cancel-retry", "retention")


def slow(n: int, seconds: float) -> int:
    """A root that runs long enough to be canceled while it runs."""
    time.sleep(seconds)
    return n + 1


def _app(url: str, namespace: str, partitions: int) -> App:
    app = make_app(url, namespace, partitions)
    app.task(name=SLOW_TASK)(slow)
    return app


def _worker(child: Child, url: str, namespace: str, partitions: int, concurrency: int,
            nice: int) -> dict[str, Any]:
    os.nice(nice)
    return serve_app(child, _app(url, namespace, partitions), concurrency)


def _raise_server_priority(target: Target) -> str:
    """Give the embedded servers the cores first, when this process may.

    On a small machine the workers (and whatever else runs) preempt a server
    in the middle of a call, and SLOWLOG counts the time it waited against
    that call. Real-time scheduling (``SCHED_FIFO``, priority 1; the kernel
    still keeps 5 % for everything else) or else nice -10 leaves each call's
    own work in the log. Returns what was done.
    """
    if not target.embedded:
        return "priority not changed (a given --url)"
    pids = []
    for node in target.primaries:
        client = target.node_client(node)
        try:
            pids.append(int(client.info("server")["process_id"]))
        finally:
            client.close()
    try:
        for pid in pids:
            os.sched_setscheduler(pid, os.SCHED_FIFO, os.sched_param(1))
        return "SCHED_FIFO 1"
    except (OSError, AttributeError):
        pass
    try:
        for pid in pids:
            os.setpriority(os.PRIO_PROCESS, pid, SERVER_NICE)
        return f"nice {SERVER_NICE}"
    except OSError as e:
        return f"priority not changed ({e.strerror})"


@contextlib.contextmanager
def _workers(params: Params, target: Target, deadline_s: float,
             nice: int) -> Iterator[tuple[App, ProcessGroup]]:
    """A fresh namespace and ready worker processes; both stopped (and cleaned) on the way out."""
    namespace = f"bench-{os.urandom(4).hex()}"
    app = _app(target.url, namespace, params.partitions)
    try:
        app.client.check_config()  # loads the functions, records the partitions
        args = (target.url, namespace, params.partitions, params.concurrency, nice)
        with running(_worker, args, params.workers, deadline_s=deadline_s) as group:
            group.wait_ready()
            yield app, group
    finally:
        if not target.embedded:
            delete_matching(target, f"{namespace}:*")
        app.close()


class Phase:
    """One measured part: slow logs reset before, read after; server counters and wall time."""

    def __init__(self, logs: SlowLogs, target: Target, group: ProcessGroup, jobs: int) -> None:
        self.logs, self.target, self.group, self.jobs = logs, target, group, jobs
        self.wall_s = 0.0
        self.log = PhaseLog()
        self.fields: dict[str, Any] = {}

    def __enter__(self) -> Phase:
        self.logs.reset()
        self.meter = Meter(self.target, self.group)
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall_s = time.perf_counter() - self.started
        self.log = self.logs.read()
        self.fields = self.meter.fields(self.jobs, self.wall_s)
        self.fields.pop("by_command", None)

    def row(self, completed: int, **extra: Any) -> dict[str, Any]:
        calls = {name: {"logged": s.logged, "over_limit": s.over_limit,
                        "max_ms": round(s.max_us / 1000, 2),
                        "logged_ms": round(s.logged_us / 1000, 1)}
                 for name, s in sorted(self.log.calls.items(), key=lambda kv: -kv[1].max_us)}
        fcall_s = self.fields["fcall_us_per_job"] * max(self.jobs, 1) / 1e6
        return {"ops_per_s": round(self.jobs / self.wall_s, 1), "wall_s": round(self.wall_s, 3),
                "completed": completed, "server_fcall_s": round(fcall_s, 3),
                "max_call_ms": round(self.log.max_us() / 1000, 2),
                "calls_over_limit": self.log.over_limit(),
                "slowlog_overflowed": self.log.overflowed, "calls": calls, **self.fields, **extra}


def _fan_in_flow(app: App, name: str, n: int, pad: str, root_task: str,
                 root_args: tuple[Any, ...]) -> tuple[FlowBuilder, list[Step]]:
    flow = app.flow(name, max_steps=n + 2)
    root = flow.step("root", root_task, *root_args)
    middles = [flow.step(f"m{i}", STEP_TASK, root.ref(), pad, i) for i in range(n)]
    join = flow.step("join", SUM_TASK, [m.ref() for m in middles], pad)
    return flow, [root, *middles, join]


def _expected_sum(n: int) -> int:
    return sum(1 + i for i in range(n))  # root returns 1; middle i returns 1 + i


def _check(ok: bool, what: str) -> None:
    if not ok:
        raise BenchError(what)


def fan_in(ctx: Context, n: int) -> dict[str, Any]:
    done_before = ctx.group.done()
    with ctx.phase(n + 2) as phase:
        flow, steps = _fan_in_flow(ctx.app, "fan-in", n, ctx.pad, STEP_TASK, (0, ctx.pad))
        run = flow.submit()
        submit_s = time.perf_counter() - phase.started
        state = run.wait(timeout=ctx.params.timeout_s)
    joined = run.result("join", timeout=1)
    rows = execution_fields(ctx.app, [s.execution_id for s in steps], ("state", "attempts"))
    once = sum(1 for st, attempts in rows if st == "succeeded" and attempts == "1")
    ctx.group.wait_done(done_before + n + 2, 10.0)
    ran = ctx.group.done() - done_before
    right = joined == _expected_sum(n) and once == n + 2 and ran == n + 2
    _check(state.value == "succeeded" and right,
           f"fan-in N={n}: state {state.value}, join {joined} (expected {_expected_sum(n)}), "
           f"{once} of {n + 2} steps succeeded on their first attempt, workers ran {ran}")
    ctx.flows.append(run)
    return phase.row(once, submit_s=round(submit_s, 3), join_result=joined, handler_runs=ran)


def roots(ctx: Context, n: int) -> dict[str, Any]:
    done_before = ctx.group.done()
    with ctx.phase(n) as phase:
        flow = ctx.app.flow("roots", max_steps=n)
        steps = [flow.step(f"r{i}", STEP_TASK, i, ctx.pad) for i in range(n)]
        run = flow.submit()
        state = run.wait(timeout=ctx.params.timeout_s)
    rows = execution_fields(ctx.app, [s.execution_id for s in steps],
                            ("state", "attempts", "result"))
    right = sum(1 for i, (st, attempts, result) in enumerate(rows)
                if st == "succeeded" and attempts == "1" and result == str(i + 1))
    ctx.group.wait_done(done_before + n, 10.0)
    ran = ctx.group.done() - done_before
    _check(state.value == "succeeded" and right == n and ran == n,
           f"roots N={n}: state {state.value}, {right} of {n} steps right on their first attempt, "
           f"workers ran {ran}")
    ctx.flows.append(run)
    return phase.row(right, handler_runs=ran)


def fan_out(ctx: Context, n: int) -> dict[str, Any]:
    with ctx.phase(n + 1) as phase:
        flow = ctx.app.flow("fan-out", max_steps=n + 1)
        root = flow.step("root", FAIL_TASK, ctx.pad)
        for i in range(n):
            flow.step(f"c{i}", STEP_TASK, root.ref(), ctx.pad, i)
        run = flow.submit()
        state = run.wait(timeout=ctx.params.timeout_s)
    status = run.status()
    [(root_finished,)] = execution_fields(ctx.app, [root.execution_id], ("finished_ms",))
    _check(state.value == "failed" and status["counts"] == {"failed": 1, "skipped": n},
           f"fan-out N={n}: state {state.value}, counts {status['counts']}")
    ctx.flows.append(run)
    cascade_s = (status["finished_ms"] - int(root_finished or 0)) / 1000
    return phase.row(status["counts"]["skipped"], cascade_s=cascade_s)


def _wait_leased(run: FlowRun, step: str, timeout_s: float) -> None:
    key = run.client.keys.execution(run.partition, run.step_execution(step))
    deadline = time.monotonic() + timeout_s
    while run.client.run(Command(("HGET", key, "state"), key)) != "leased":
        if time.monotonic() > deadline:
            raise BenchError(f"step {step} was not leased within {timeout_s}s")
        time.sleep(0.01)


def cancel_retry(ctx: Context, n: int) -> dict[str, Any]:
    with ctx.phase(n + 2) as phase:
        flow, _ = _fan_in_flow(ctx.app, "cancel-retry", n, ctx.pad, SLOW_TASK, (0, SLOW_ROOT_S))
        run = flow.submit()
        _wait_leased(run, "root", ctx.params.timeout_s)
        t0 = time.perf_counter()
        run.cancel("bench: cancel while the root runs")
        cancel_s = time.perf_counter() - t0
        canceled = run.status()["counts"].get("canceled", 0)
        t0 = time.perf_counter()
        run.retry()
        retry_s = time.perf_counter() - t0
        state = run.wait(timeout=ctx.params.timeout_s)
    joined = run.result("join", timeout=1)
    succeeded = run.status()["counts"].get("succeeded", 0)
    _check(canceled == n + 2 and state.value == "succeeded" and joined == _expected_sum(n),
           f"cancel-retry N={n}: {canceled} of {n + 2} canceled, then {state.value} with join "
           f"{joined} (expected {_expected_sum(n)})")
    ctx.flows.append(run)
    return phase.row(succeeded, cancel_s=round(cancel_s, 3), retry_call_s=round(retry_s, 3),
                     join_result=joined)


def _standalone(ctx: Context, n: int) -> list[str]:
    """N finished standalone executions for ``rec_purge`` to delete (not timed)."""
    done_before = ctx.group.done()
    args = [(i, ctx.pad) for i in range(n)]
    ids = [h.id for start in range(0, n, ctx.params.chunk)
           for h in ctx.app.submit_many(STEP_TASK, args[start:start + ctx.params.chunk])]
    _check(ctx.group.wait_done(done_before + n, ctx.params.timeout_s),
           f"retention N={n}: the standalone executions did not finish")
    return ids


def retention(ctx: Context, n: int) -> dict[str, Any]:
    """Every flow above and N standalone executions, deleted at retention 0 by the daemon's
    scanners: one ``rec_purge`` pass (it meets the flow steps first in the terminal index and
    leaves them to their flow), ``flow_purge`` until every flow is gone, then ``rec_purge``
    until a pass deletes nothing."""
    client, partitions = ctx.app.client, range(ctx.params.partitions)
    standalone = _standalone(ctx, n)
    steps = sum(run.status()["total"] for run in ctx.flows)
    with ctx.phase(steps + n) as phase:
        purged = Retention(retention_s=0).run(client, partitions).repaired  # meets flow steps first
        flows = FlowRetention(retention_s=0).run(client, partitions, max_rounds=100_000).repaired
        while more := Retention(retention_s=0).run(client, partitions, 100_000).repaired:
            purged += more
    left = [run.id for run in ctx.flows if client.run(Command(("EXISTS", run.key), run.key))]
    kept = sum(1 for (state,) in execution_fields(ctx.app, standalone, ("state",)) if state)
    _check(not left and flows >= len(ctx.flows) and not kept and purged == n,
           f"retention N={n}: flows {left} and {kept} standalone executions are still there "
           f"({purged} of {n} purged)")
    ctx.flows.clear()
    return phase.row(steps + n, flows_purged=flows, standalone_purged=purged)


class Context:
    """What the phases share: the app, the workers, the slow logs, the flows made so far."""

    def __init__(self, app: App, group: ProcessGroup, logs: SlowLogs, target: Target,
                 params: Params) -> None:
        self.app, self.group, self.logs, self.target, self.params = app, group, logs, target, params
        self.pad = params.payload()
        self.flows: list[FlowRun] = []

    def phase(self, jobs: int) -> Phase:
        return Phase(self.logs, self.target, self.group, jobs)


RUNNERS: dict[str, Callable[[Context, int], dict[str, Any]]] = {
    "fan-in": fan_in, "roots": roots, "fan-out": fan_out, "cancel-retry": cancel_retry,
    "retention": retention}


def _call_lines(results: dict[str, dict[str, Any]]) -> list[str]:
    """One aligned line per (size, phase, function): the table of longest calls."""
    lines = [f"{'phase':<22} {'function':<22} {'max ms':>8} {'>' + f'{LIMIT_MS:g} ms':>7} "
             f"{'logged':>7}"]
    for label, row in results.items():
        for name, calls in row["calls"].items():
            lines.append(f"{label:<22} {name:<22} {calls['max_ms']:>8.2f} {calls['over_limit']:>7} "
                         f"{calls['logged']:>7}")
    return lines


def _linearity(results: dict[str, dict[str, Any]], sizes: list[int]) -> list[str]:
    """Server FCALL time per step for each size: flat across sizes when the cost is linear."""
    out = []
    for phase in PHASES:
        per_step = {n: results[f"{phase} N={n}"]["server_fcall_s"] * 1e6 / n for n in sizes}
        out.append(f"{phase}: server FCALL time per step " + ", ".join(
            f"N={n} {us:.1f} us ({results[f'{phase} N={n}']['server_fcall_s']} s in all)"
            for n, us in per_step.items()))
    return out


def run(params: Params, target: Target, progress: Progress) -> Result:
    params = with_default_workers(params)
    sizes: list[int] = params.extra["steps"]
    results: dict[str, dict[str, Any]] = {}
    deadline_s = (params.timeout_s * 3 + 120) * len(sizes)
    favour = params.extra["server_priority"]
    priority = (_raise_server_priority(target) if favour
                else "priority not changed (--no-server-priority)")
    nice = WORKER_NICE if favour else 0
    limit_us = int(LIMIT_MS * 1000)
    with SlowLogs(target, params.extra["slowlog_us"], SLOWLOG_MAX_LEN, limit_us) as logs, \
            _workers(params, target, deadline_s, nice) as (app, group):
        ctx = Context(app, group, logs, target, params)
        for n in sizes:
            for phase in PHASES:
                row = RUNNERS[phase](ctx, n)
                results[f"{phase} N={n}"] = row
                progress(f"N={n} {phase}: {row['wall_s']:.2f}s, "
                         f"longest call {row['max_call_ms']} ms, "
                         f"{row['calls_over_limit']} over {LIMIT_MS:g} ms, "
                         f"server FCALL time {row['server_fcall_s']} s")
        workers = group.stop()
    worst = max(results.values(), key=lambda r: r["max_call_ms"])
    over = sum(r["calls_over_limit"] for r in results.values())
    notes = [f"every call the servers ran for at least {params.extra['slowlog_us']} us is in "
             "the table below (SLOWLOG of every primary, per phase); lower-case names are "
             "functions, upper-case ones single commands (a command a function runs is logged "
             "too, and its time is part of the function's); wall s = the phase's client time; "
             f"ops/s = steps per second; servers: {priority}; workers: nice {nice}",
             *_call_lines(results), *_linearity(results, sizes),
             f"target: no call over {LIMIT_MS:g} ms: {verdict(over == 0)} (longest "
             f"{worst['max_call_ms']} ms, {over} over)"]
    return {"scenario": NAME, "steps": sizes, **results, "server_priority": priority,
            "max_call_ms": worst["max_call_ms"],
            "calls_over_limit": over, "target_met": over == 0, "tasks": min(sizes),
            "workers": params.workers, "concurrency": params.concurrency,
            "payload_bytes": params.payload_bytes, "worker_stats": workers, "notes": notes}


SCENARIO = Scenario(
    NAME, "Flows of --steps steps (fan-in, roots, failing fan-out, cancel and retry, retention): "
          "the longest single function call per phase, from SLOWLOG (--tasks is not used).", run,
    (click.Option(["--steps"], default="20000", show_default=True, callback=int_list,
                  help="Steps per flow; several sizes separated by commas run in turn."),
     click.Option(["--slowlog-us"], default=2000, show_default=True, type=click.IntRange(0),
                  help="Log every command that runs at least this long."),
     click.Option(["--server-priority/--no-server-priority"], default=True, show_default=True,
                  help="Run the embedded servers ahead of other processes (real-time when "
                       "allowed, else nice -10), so SLOWLOG holds each call's own time.")))
