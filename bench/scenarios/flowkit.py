"""Shared pieces of the flow scenarios (chain, fanout, cascade): tasks, workers, readings.

Not a scenario itself (it has no ``SCENARIO``). Worker processes run the
tasks below on lane ``default``; the parent registers the same tasks so the
steps it submits carry the same retry policies.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from collections.abc import Iterator
from typing import Any

import click
from click.core import ParameterSource

from bench.metrics import ServerCounters, client_cpu, per_job, read_counters
from bench.params import BenchError, Params
from bench.procs import Child, ProcessGroup, elapsed_cpu_s, running, serve_app
from bench.server import Progress, Target, delete_matching, read_hashes
from engine.app import App
from engine.policy import PermanentError
from keys import partition_of

STEP_TASK, SUM_TASK, FAIL_TASK = "bench.step", "bench.sum", "bench.fail"
SETTLE_S = 0.2  # let the workers' hint listeners reach BLMPOP before the clock starts
DEFAULT_WORKERS = 2  # one per core of the reference machine; the shared --workers default is 4


def with_default_workers(params: Params) -> Params:
    """``params`` with ``DEFAULT_WORKERS`` worker processes unless ``--workers`` was given."""
    ctx = click.get_current_context(silent=True)
    if ctx is None or ctx.get_parameter_source("workers") is not ParameterSource.DEFAULT:
        return params
    return dataclasses.replace(params, workers=DEFAULT_WORKERS)


def step(n: int, pad: str = "", by: int = 1) -> int:
    """A step: its input plus ``by`` (``pad`` only sizes the payload)."""
    return n + by


def total(values: list[int], pad: str = "") -> int:
    return sum(values)


def fail(pad: str = "") -> None:
    raise PermanentError("the root fails on purpose")


def make_app(url: str, namespace: str, partitions: int) -> App:
    app = App(url, namespace=namespace, partitions=partitions)
    for name, fn in ((STEP_TASK, step), (SUM_TASK, total), (FAIL_TASK, fail)):
        app.task(name=name)(fn)
    return app


def flow_worker(child: Child, url: str, namespace: str, partitions: int,
                concurrency: int) -> dict[str, Any]:
    """One worker process (see ``bench.procs.serve_app``)."""
    return serve_app(child, make_app(url, namespace, partitions), concurrency)


@contextlib.contextmanager
def flow_workers(params: Params, target: Target, progress: Progress,
                 deadline_s: float) -> Iterator[tuple[App, ProcessGroup]]:
    """A fresh namespace, warmed-up worker processes; both stopped and cleaned on the way out.

    The workers also stop by themselves after ``deadline_s``.
    """
    namespace = f"bench-{os.urandom(4).hex()}"
    app = make_app(target.url, namespace, params.partitions)
    progress(f"{params.workers} worker processes x {params.concurrency} threads, "
             f"namespace {namespace}")
    try:
        app.client.check_config()  # connect first: loads the functions, records the partitions
        args = (target.url, namespace, params.partitions, params.concurrency)
        with running(flow_worker, args, params.workers, deadline_s=deadline_s) as group:
            group.wait_ready()
            time.sleep(SETTLE_S)
            warm = app.flow("warm-up")
            first = warm.step("s0", STEP_TASK, 0)
            warm.step("s2", STEP_TASK, warm.step("s1", STEP_TASK, first.ref()).ref())
            warm.submit().wait(timeout=params.timeout_s)
            if not group.wait_done(3, 10.0):
                raise BenchError("the warm-up flow did not complete")
            yield app, group
    finally:
        if not target.embedded:
            delete_matching(target, f"{namespace}:*")
        app.close()


class Meter:
    """Server counters and CPU around one timed part, as ``per_job`` and ``client_cpu`` fields."""

    def __init__(self, target: Target, group: ProcessGroup) -> None:
        self.target, self.group = target, group
        self.before: ServerCounters = read_counters(target)
        self.cpu0, self.workers0 = time.process_time(), group.cpu_s()

    def fields(self, jobs: int, wall_s: float) -> dict[str, Any]:
        parent_s, workers_s = time.process_time() - self.cpu0, self.group.cpu_s()
        delta = read_counters(self.target).minus(self.before)
        return {**per_job(delta, jobs, wall_s),
                **client_cpu(parent_s, elapsed_cpu_s(self.workers0, workers_s), jobs)}


def execution_fields(app: App, ids: list[str], fields: tuple[str, ...]) -> list[list[str | None]]:
    ks = app.client.keys
    return read_hashes(app.client, [ks.execution(partition_of(i, ks.partitions), i) for i in ids],
                       fields)


def int_list(ctx: click.Context, param: click.Parameter, value: str) -> list[int]:
    """Click callback: "1,4,16" -> [1, 4, 16], each positive."""
    try:
        numbers = [int(n) for n in value.split(",") if n.strip()]
    except ValueError:
        numbers = []
    if not numbers or min(numbers) < 1:
        raise click.BadParameter(f"expected positive integers separated by commas, got {value!r}")
    return numbers


def ms(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 2)


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"
