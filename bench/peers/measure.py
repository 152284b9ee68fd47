"""The measuring loops every peer driver shares: throughput, chains, fan-outs, cascades.

A peer supplies the parts that speak its API (submit, wait, count, read
states); the clocks, the server counters and the summaries are the same for
every system, so the numbers are comparable.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from bench.metrics import percentile
from bench.params import BenchError
from bench.peers.base import Cell
from bench.peers.counters import ServerMeter, per_job

TERMINAL = frozenset({"succeeded", "failed", "skipped", "canceled", "expired"})


class Completions(Protocol):
    """How many jobs are done; ``own`` = command -> calls this counter sent to the server."""

    own: dict[str, int]

    def count(self) -> int: ...


class BeaconCompletions:
    def __init__(self, counts: Any, kind: str = "done") -> None:
        self.counts, self.kind = counts, kind
        self.own: dict[str, int] = {}
        self.start = counts[kind]

    def count(self) -> int:
        return int(self.counts[self.kind] - self.start)


class PolledCompletions:
    """One command per poll (``command`` names it for the counters); ``read`` returns done."""

    def __init__(self, command: str, read: Callable[[], int]) -> None:
        self.command, self.read, self.own = command, read, {command: 0}

    def count(self) -> int:
        self.own[self.command] += 1
        return self.read()


def wait_until(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll ``check`` every 10 ms; BenchError naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise BenchError(f"{what} did not happen within {timeout_s:g} s")
        time.sleep(0.01)


def ms(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 2)


def throughput(meter: ServerMeter, submit: Callable[[], None], done: Completions, tasks: int,
               timeout_s: float, workers_cpu_s: Callable[[], float | None],
               poll_s: float = 0.01) -> Cell:
    """Clock from the first submit until ``done`` reaches ``tasks``; CPU of the workers and
    of this driver per job next to the server's."""
    before, cpu0, workers0 = meter.snapshot(), time.process_time(), workers_cpu_s()
    started = time.perf_counter()
    submit()
    submit_s = time.perf_counter() - started
    deadline = started + timeout_s
    completed = done.count()
    while completed < tasks and time.perf_counter() < deadline:
        time.sleep(poll_s)
        completed = done.count()
    wall_s = time.perf_counter() - started
    workers1 = workers_cpu_s()
    counters = per_job(before, meter.snapshot(), tasks, done.own)
    return {"jobs_per_s": round(completed / wall_s, 1), "tasks": tasks, "completed": completed,
            "wall_s": round(wall_s, 3), "submit_s": round(submit_s, 3),
            "timed_out": completed < tasks,
            "submitter_cpu_us_per_job": round((time.process_time() - cpu0) * 1e6 / tasks, 1),
            "worker_cpu_us_per_job": None if workers0 is None or workers1 is None
            else round((workers1 - workers0) * 1e6 / tasks, 1),
            **counters}


def _summary(latencies_s: list[float], wall_s: float, flows: int, correct: int) -> Cell:
    latencies = [s * 1000 for s in latencies_s]
    return {"flows": flows, "completed": correct, "flows_per_s": round(correct / wall_s, 1),
            "p50_ms": ms(percentile(latencies, 50)), "p99_ms": ms(percentile(latencies, 99)),
            "wall_s": round(wall_s, 3)}


def chain_level(run_one: Callable[[], Any], expected: Any, flows: int, concurrency: int,
                timeout_s: float) -> Cell:
    """``concurrency`` threads, each looping ``run_one`` (submit and wait for one chain)."""
    latencies: list[float] = []
    errors: list[BaseException] = []
    correct, tickets, lock = [0], iter(range(flows)), threading.Lock()
    deadline = time.monotonic() + timeout_s

    def loop() -> None:
        while not errors and time.monotonic() < deadline:
            with lock:
                if next(tickets, None) is None:
                    return
            try:
                t0 = time.perf_counter()
                value = run_one()
                with lock:
                    latencies.append(time.perf_counter() - t0)
                    correct[0] += value == expected
            except BaseException as e:  # noqa: BLE001 - reported in the cell
                errors.append(e)

    started = time.perf_counter()
    threads = [threading.Thread(target=loop, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=max(deadline - time.monotonic(), 0) + 5)
    cell = _summary(latencies, time.perf_counter() - started, flows, correct[0])
    if errors:
        cell["error"] = repr(errors[0])[:300]
    return {**cell, "concurrency": concurrency}


async def chain_level_async(run_one: Callable[[], Awaitable[Any]], expected: Any, flows: int,
                            concurrency: int, timeout_s: float) -> Cell:
    """The same as ``chain_level`` with ``concurrency`` tasks on one event loop."""
    latencies: list[float] = []
    correct, tickets = [0], iter(range(flows))

    async def loop() -> None:
        while next(tickets, None) is not None:
            t0 = time.perf_counter()
            value = await run_one()
            latencies.append(time.perf_counter() - t0)
            correct[0] += value == expected

    started = time.perf_counter()
    error = None
    try:
        await asyncio.wait_for(asyncio.gather(*(loop() for _ in range(concurrency))), timeout_s)
    except (asyncio.TimeoutError, Exception) as e:  # noqa: BLE001 - reported in the cell
        error = repr(e)[:300]
    cell = _summary(latencies, time.perf_counter() - started, flows, correct[0])
    return {**cell, "concurrency": concurrency, **({"error": error} if error else {})}


def chain_cell(c1: Cell, high: Cell, counters: dict[str, Any], steps: int) -> Cell:
    """One chain answer: latency at concurrency 1, throughput at the high level."""
    return {"p50_ms_c1": c1["p50_ms"], "p99_ms_c1": c1["p99_ms"], "flows_c1": c1["flows"],
            "flows_per_s_c1": c1["flows_per_s"], "flows_per_s": high["flows_per_s"],
            "concurrency": high["concurrency"], "flows": high["flows"], "p50_ms": high["p50_ms"],
            "p99_ms": high["p99_ms"], "steps": steps,
            "all_correct": c1["completed"] == c1["flows"] and high["completed"] == high["flows"],
            "unfinished_or_wrong_c1": c1["flows"] - c1["completed"],
            "unfinished_or_wrong": high["flows"] - high["completed"],
            **{k: v for k, v in (("error", c1.get("error") or high.get("error")),) if v},
            **counters}


def fanout_cell(walls_s: list[float], correct: int, width: int, counters: dict[str, Any]) -> Cell:
    walls = [w * 1000 for w in walls_s]
    return {"median_ms": ms(statistics.median(walls)) if walls else None,
            "min_ms": ms(min(walls)) if walls else None, "max_ms": ms(max(walls)) if walls else None,
            "runs": len(walls), "width": width, "all_correct": correct == len(walls) > 0,
            **counters}


def watch_states(read: Callable[[], dict[str, str]], started: float, wait_s: float) -> Cell:
    """Poll ``read`` (node -> normalized state) until every node is terminal or ``wait_s``
    has passed; the cell lists the final states and the nodes still pending."""
    deadline = started + wait_s
    while True:
        states = read()
        pending = sorted(n for n, s in states.items() if s not in TERMINAL)
        now = time.perf_counter()
        if not pending or now > deadline:
            break
        time.sleep(0.005)
    return {"states": states, "pending": pending,
            "terminal_ms": None if pending else round((now - started) * 1000, 1),
            "waited_s": round(now - started, 2)}
