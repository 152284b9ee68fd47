"""wants: self-discovering builds against static flows, and many wants for one slice.

Three parts, on one fresh namespace with worker processes serving producers:

1. static: ``--dates`` flows of 3 steps (``bench.step``), all submitted at once;
   time from the first flow's creation to the last one's end (server clock).
2. discovery: ``--dates`` wants for ``report/<date>``; ``report`` raises
   MissingDependencies for ``clean/<date>``, which raises it for
   ``raw/<date>``, so the engine discovers the chain one level at a time.
   Time from the first want's creation until the last of the 3 x dates
   slices is live (server clock). Parts 1 and 2 alternate for ``--rounds``
   rounds (fresh dates each); target: the median discovery time at most
   1.5 x the median static time.
3. one slice: ``--wants`` wants for ``one/k``, whose producer sleeps
   ``--build-s``: how many builds started (must be 1), want -> satisfied
   latency (server clock), and what the servers did per want (INFO
   commandstats; the bench's own polling is taken out).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import time
from collections.abc import Iterator
from typing import Any

import click

from bench.metrics import percentile
from bench.params import BenchError, Params
from bench.procs import Child, ProcessGroup, running, serve_app
from bench.scenarios.base import Result, Scenario
from bench.scenarios.chain import submit_chain
from bench.scenarios.flowkit import SETTLE_S, Meter, make_app, ms, verdict, with_default_workers
from bench.server import Progress, Target, delete_matching, read_hashes
from engine import MissingDependencies
from engine.app import App
from engine.router import Command
from engine.wants import slice_partition, want_partition

NAME = "wants"
TARGET_RATIO = 1.5
ENDED = frozenset({"satisfied", "failed", "upstream_failed", "expired", "canceled"})
POLL_S = 0.01


def make_wants_app(url: str, namespace: str, partitions: int, build_s: float = 0.0) -> App:
    """The flow tasks plus the producers raw -> clean -> report and one (sleeps ``build_s``)."""
    app = make_app(url, namespace, partitions)

    def need(name: str) -> None:
        if app.slice(name)["state"] != "live":
            raise MissingDependencies([name])

    @app.produces("raw/{date}", name="wants.raw")
    def raw(date: str) -> str:
        return date

    @app.produces("clean/{date}", name="wants.clean")
    def clean(date: str) -> str:
        need(f"raw/{date}")
        return date

    @app.produces("report/{date}", name="wants.report")
    def report(date: str) -> str:
        need(f"clean/{date}")
        return date

    @app.produces("one/{key}", name="wants.one")
    def one(key: str) -> str:
        time.sleep(build_s)
        return key

    return app


def wants_worker(child: Child, url: str, namespace: str, partitions: int, concurrency: int,
                 build_s: float) -> dict[str, Any]:
    return serve_app(child, make_wants_app(url, namespace, partitions, build_s), concurrency)


@contextlib.contextmanager
def wants_workers(params: Params, target: Target, progress: Progress) -> Iterator[tuple[App, ProcessGroup]]:
    namespace = f"bench-{os.urandom(4).hex()}"
    build_s = params.extra["build_s"]
    app = make_wants_app(target.url, namespace, params.partitions, build_s)
    progress(f"{params.workers} worker processes x {params.concurrency} threads, namespace {namespace}")
    try:
        app.client.check_config()
        args = (target.url, namespace, params.partitions, params.concurrency, build_s)
        with running(wants_worker, args, params.workers, deadline_s=params.timeout_s * 3 + 120) as group:
            group.wait_ready()
            time.sleep(SETTLE_S)
            submit_chain(app, 3, "")[0].wait(timeout=params.timeout_s)
            _wait_ended(app, [app.want(["report/warm-up"])], params.timeout_s)
            yield app, group
    finally:
        if not target.embedded:
            delete_matching(target, f"{namespace}:*")
        app.close()


def _wait_ended(app: App, want_ids: list[str], timeout_s: float) -> int:
    """Poll the wants (one HGET at a time, oldest unfinished first) until all ended; returns the
    number of polling commands sent, so the per-want counts can leave them out."""
    ks, polls, deadline = app.client.keys, 0, time.monotonic() + timeout_s
    for want_id in want_ids:
        key = ks.want(want_partition(ks, want_id), want_id)
        while True:
            polls += 1
            if app.client.run(Command(("HGET", key, "state"), key)) in ENDED:
                break
            if time.monotonic() > deadline:
                raise BenchError(f"want {want_id} did not end within {timeout_s:g}s")
            time.sleep(POLL_S)
    return polls


def _want_hashes(app: App, want_ids: list[str], fields: tuple[str, ...]) -> list[list[str | None]]:
    ks = app.client.keys
    return read_hashes(app.client, [ks.want(want_partition(ks, w), w) for w in want_ids], fields)


def _static(app: App, dates: int, progress: Progress, timeout_s: float) -> dict[str, Any]:
    runs = [submit_chain(app, 3, "")[0] for _ in range(dates)]
    states = [run.wait(timeout=timeout_s) for run in runs]
    spans = read_hashes(app.client, [r.key for r in runs], ("created_ms", "finished_ms"))
    span_ms = max(int(f or 0) for _, f in spans) - min(int(c or 0) for c, _ in spans)
    ok = sum(1 for s in states if s.value == "succeeded")
    progress(f"static: {dates} flows of 3 steps in {span_ms} ms (server clock)")
    return {"flows": dates, "succeeded": ok, "span_ms": span_ms}


def _median(values: list[int]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return float(ordered[middle]) if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _discovery(app: App, dates: int, progress: Progress, timeout_s: float,
               first_day: int = 0) -> dict[str, Any]:
    day = dt.date(2026, 1, 1)
    names = [(day + dt.timedelta(days=first_day + d)).isoformat() for d in range(dates)]
    want_ids = [app.want([f"report/{d}"]) for d in names]
    _wait_ended(app, want_ids, timeout_s)
    created = [int(c or 0) for (c,) in _want_hashes(app, want_ids, ("created_ms",))]
    ks = app.client.keys
    slices = [f"{level}/{d}" for d in names for level in ("raw", "clean", "report")]
    live = read_hashes(app.client, [ks.slice(slice_partition(ks, s), s) for s in slices], ("state", "live_ms"))
    all_live = sum(1 for state, _ in live if state == "live")
    span_ms = max(int(t or 0) for _, t in live) - min(created)
    states = [s for (s,) in _want_hashes(app, want_ids, ("state",))]
    progress(f"discovery: {dates} report wants, {all_live}/{len(slices)} slices live in {span_ms} ms "
             "(server clock)")
    return {"wants": dates, "satisfied": states.count("satisfied"), "slices_live": all_live,
            "slices": len(slices), "span_ms": span_ms}


def _one_slice(app: App, meter: Meter, count: int, progress: Progress, timeout_s: float) -> dict[str, Any]:
    started = time.perf_counter()
    want_ids = [app.want(["one/k"]) for _ in range(count)]
    polls = _wait_ended(app, want_ids, timeout_s)
    wall_s = time.perf_counter() - started
    counters = meter.fields(count, wall_s)
    counters["commands_per_job"] = round(counters["commands_per_job"] - polls / count, 2)
    by_command = counters["by_command"]
    by_command["hget"] = round(by_command.get("hget", 0) - polls / count, 3)
    rows = _want_hashes(app, want_ids, ("state", "created_ms", "finished_ms"))
    latency = [int(f) - int(c) for _, c, f in rows if c and f]
    ks = app.client.keys
    events = ks.events(slice_partition(ks, "one/k"))
    builds = sum(1 for _, fields in app.client.run(Command(("XRANGE", events, "-", "+"), events))
                 if _field(fields, "slice") == "one/k" and _field(fields, "to") == "building")
    satisfied = sum(1 for s, *_ in rows if s == "satisfied")
    progress(f"one slice: {count} wants, {builds} build(s), {satisfied} satisfied, "
             f"p50 {percentile(latency, 50):.0f} ms, {counters['commands_per_job']} commands per want")
    return {"wants": count, "builds": builds, "satisfied": satisfied,
            "p50_ms": ms(percentile(latency, 50)), "p99_ms": ms(percentile(latency, 99)),
            "max_ms": max(latency) if latency else None, "bench_polls_left_out": polls, **counters}


def _field(fields: Any, name: str) -> str | None:
    if isinstance(fields, dict):
        return fields.get(name)
    pairs = dict(zip(fields[::2], fields[1::2], strict=True))
    return pairs.get(name)


def run(params: Params, target: Target, progress: Progress) -> Result:
    params = with_default_workers(params)
    dates, count, rounds = params.extra["dates"], params.extra["wants"], params.extra["rounds"]
    statics, discoveries = [], []
    with wants_workers(params, target, progress) as (app, group):
        for n in range(rounds):  # alternate, each round on fresh dates: a busy machine hits both alike
            statics.append(_static(app, dates, progress, params.timeout_s))
            discoveries.append(_discovery(app, dates, progress, params.timeout_s, first_day=n * dates))
        one = _one_slice(app, Meter(target, group), count, progress, params.timeout_s)
        workers = group.stop()
    for static, discovery in zip(statics, discoveries, strict=True):
        if static["succeeded"] < dates or discovery["slices_live"] < discovery["slices"]:
            raise BenchError(f"not everything was built: static {static}, discovery {discovery}")
    static = {"flows": dates, "rounds": rounds, "span_ms": _median([s["span_ms"] for s in statics]),
              "spans_ms": [s["span_ms"] for s in statics]}
    discovery = {"wants": dates, "slices": 3 * dates, "rounds": rounds,
                 "span_ms": _median([d["span_ms"] for d in discoveries]),
                 "spans_ms": [d["span_ms"] for d in discoveries]}
    ratio = round(discovery["span_ms"] / max(static["span_ms"], 1), 2)
    notes = [f"discovery / static = {ratio} (medians of {rounds} alternating rounds): target <= "
             f"{TARGET_RATIO:g}: {verdict(ratio <= TARGET_RATIO)}",
             f"{count} wants for one slice started {one['builds']} build(s): "
             f"{verdict(one['builds'] == 1)} (target exactly 1)",
             "spans and latencies on the server clock (created_ms / live_ms / finished_ms)"]
    return {"scenario": NAME, "static": static, "discovery": discovery, "one_slice": one,
            "ratio": ratio, "targets": {"ratio_met": ratio <= TARGET_RATIO, "one_build": one["builds"] == 1},
            "workers": params.workers, "concurrency": params.concurrency, "worker_stats": workers,
            "results": [{"part": "static", "span_ms": static["span_ms"]},
                        {"part": "discovery", "span_ms": discovery["span_ms"], "ratio": ratio},
                        {"part": "one slice", "builds": one["builds"], "p50_ms": one["p50_ms"],
                         "p99_ms": one["p99_ms"], "commands_per_want": one["commands_per_job"]}],
            "notes": notes}


SCENARIO = Scenario(
    NAME, "Self-discovering raw -> clean -> report chains against static 3-step flows, and many wants "
          "for one slice (--tasks is not used).", run,
    (click.Option(["--dates"], default=100, show_default=True, type=click.IntRange(1, 10_000),
                  help="Dates: report wants, and static flows to compare."),
     click.Option(["--wants"], default=1000, show_default=True, type=click.IntRange(1, 100_000),
                  help="Wants for the one slice."),
     click.Option(["--build-s"], default=1.0, show_default=True, type=click.FloatRange(0, 600),
                  help="How long the one slice's build runs."),
     click.Option(["--rounds"], default=3, show_default=True, type=click.IntRange(1, 100),
                  help="Alternating rounds of static flows and discovery (medians compared).")))
