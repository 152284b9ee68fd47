"""flowslot's side of the comparison: the existing scenarios, run at the peers' sizes.

``submit-claim-complete`` (with its raw-Redis baseline), ``chain`` and
``fanout`` are the scenarios in ``bench/scenarios``, called through their
``run`` functions; ``cascade-root`` is the ``cascade`` scenario at shape 2,4.
``cascade`` (the issue's 3-level tree where one leaf fails) is a small flow
built here on the same workers (``flowkit.flow_workers``). Each cell has the
same keys as the peers' cells.

Round trips: the scenarios read ``INFO commandstats`` through
``bench.metrics``; ``round_trips`` wraps their two readers for the duration
of a run so each reading also takes ``total_reads_processed`` and each
per-job summary gains ``round_trips_per_job``. Nothing else changes.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from types import ModuleType
from typing import Any

from bench import baseline, metrics
from bench.params import Params
from bench.peers.base import (
    CASCADE,
    CASCADE_ROOT,
    CHAIN,
    FANOUT,
    LEAF_TREE,
    ROOT_SHAPE,
    S1,
    Cell,
    Sizes,
    error_cell,
    guarded,
)
from bench.peers.measure import TERMINAL, chain_cell, fanout_cell
from bench.scenarios import cascade, chain, fanout, flowkit, submit_claim_complete
from bench.server import Progress, Target

_PATCHED: tuple[ModuleType, ...] = (submit_claim_complete, baseline, flowkit)
_ORIGINAL_READ, _ORIGINAL_PER_JOB = metrics.read_counters, metrics.per_job


@dataclass
class _WithReads(metrics.ServerCounters):
    reads: int = 0

    def minus(self, before: metrics.ServerCounters) -> _WithReads:
        base = super().minus(before)
        return _WithReads(base.calls, base.usec, base.cpu_s,
                          self.reads - getattr(before, "reads", 0))


class _RoundTrips:
    """Readers that add the servers' read counts; ``overhead`` = the readers' own reads."""

    def __init__(self, target: Target) -> None:
        self.target, self.overhead = target, 0
        self.captured: list[dict[str, Any]] = []
        self.conns = {node: target.node_client(node) for node in target.primaries}

    def read_counters(self, target: Target) -> metrics.ServerCounters:
        reads = sum(int(c.info("stats")["total_reads_processed"]) for c in self.conns.values())
        base = _ORIGINAL_READ(target)
        return _WithReads(base.calls, base.usec, base.cpu_s, reads)

    def per_job(self, delta: metrics.ServerCounters, jobs: int, wall_s: float) -> dict[str, Any]:
        out = _ORIGINAL_PER_JOB(delta, jobs, wall_s)
        if isinstance(delta, _WithReads):
            out["round_trips_per_job"] = round(max(delta.reads - self.overhead, 0) / max(jobs, 1), 2)
        self.captured.append(out)
        return out

    def calibrate(self) -> None:
        """Two readings with no client at work: what one reading pair costs in reads."""
        first = self.read_counters(self.target)
        self.overhead = self.read_counters(self.target).minus(first).reads  # type: ignore[attr-defined]

    def close(self) -> None:
        for conn in self.conns.values():
            conn.close()


@contextlib.contextmanager
def round_trips(target: Target) -> Iterator[_RoundTrips]:
    counter = _RoundTrips(target)
    saved = []
    try:
        counter.calibrate()
        for mod in _PATCHED:
            for name, new in (("read_counters", counter.read_counters), ("per_job", counter.per_job)):
                if getattr(mod, name, None) in (_ORIGINAL_READ, _ORIGINAL_PER_JOB):
                    saved.append((mod, name, getattr(mod, name)))
                    setattr(mod, name, new)
        yield counter
    finally:
        for mod, name, old in saved:
            setattr(mod, name, old)
        counter.close()


def _params(sizes: Sizes, workers: int, **extra: Any) -> Params:
    return Params(tasks=sizes.tasks, workers=workers, concurrency=sizes.concurrency,
                  payload_bytes=sizes.payload_bytes, timeout_s=sizes.timeout_s, extra=extra)


COUNTERS = ("commands_per_job", "round_trips_per_job", "server_cpu_us_per_job", "by_command")


def _counters(m: dict[str, Any], scale: float = 1.0) -> dict[str, Any]:
    out: dict[str, Any] = {k: m.get(k) for k in COUNTERS}
    out["scripts_per_job"] = m.get("fcalls_per_job")
    if scale != 1.0:
        for key in ("commands_per_job", "round_trips_per_job", "scripts_per_job",
                    "server_cpu_us_per_job"):
            out[key] = None if out[key] is None else round(out[key] * scale, 2)
        out["by_command"] = {c: round(n * scale, 3) for c, n in (out["by_command"] or {}).items()}
    return out


def _cpu(m: dict[str, Any]) -> dict[str, Any]:
    return {k: m.get(k) for k in ("worker_cpu_us_per_job", "submitter_cpu_us_per_job")}


def _s1(sizes: Sizes, target: Target, progress: Progress, rt: _RoundTrips) -> dict[str, Cell]:
    rt.captured.clear()
    result = submit_claim_complete.run_pair(_params(sizes, sizes.workers), target, progress)
    f, b = result["flowslot"], result["baseline"]
    # The baseline keeps only some of its per-job fields; its summary is the last one made.
    base_rt = rt.captured[-1].get("round_trips_per_job") if rt.captured else None
    flowslot = {"jobs_per_s": f["ops_per_s"], "tasks": sizes.tasks, "completed": f["completed"],
                "wall_s": f["wall_s"], "submit_s": f["submit_s"], "timed_out": f["timed_out"],
                "claim_p50_ms": f["p50_ms"], "claim_p99_ms": f["p99_ms"], **_counters(f),
                **_cpu(f)}
    raw = {"jobs_per_s": b["ops_per_s"], "tasks": sizes.tasks, "completed": b["completed"],
           "wall_s": b["wall_s"], "commands_per_job": b["commands_per_job"],
           "round_trips_per_job": base_rt, "scripts_per_job": 0.0,
           "server_cpu_us_per_job": b["server_cpu_us_per_job"], "by_command": b["by_command"],
           **_cpu(b)}
    return {"flowslot": flowslot, "baseline": raw}


def _chain(sizes: Sizes, target: Target, progress: Progress) -> Cell:
    high = sizes.chain_concurrency
    params = _params(sizes, sizes.chain_workers, concurrencies=[1, high], flows=sizes.chain_flows,
                     flows_c1=sizes.chain_flows_c1, steps=sizes.chain_steps)
    result = chain.run(params, target, progress)
    c1, ch = result["c=1"], result[f"c={high}"]

    def level(m: dict[str, Any], c: int) -> dict[str, Any]:
        return {"flows": m["flows"], "completed": m["completed"], "flows_per_s": m["ops_per_s"],
                "p50_ms": m["p50_ms"], "p99_ms": m["p99_ms"], "concurrency": c}

    return {**chain_cell(level(c1, 1), level(ch, high), _counters(c1), sizes.chain_steps),
            "server_p50_ms_c1": c1["server_p50_ms"], "primitive": "flow, step.ref()"}


def _fanout(sizes: Sizes, target: Target, progress: Progress) -> Cell:
    params = _params(sizes, sizes.chain_workers, width=sizes.fanout_width,
                     repeat=sizes.fanout_repeats)
    result = fanout.run(params, target, progress)  # raises on a wrong join
    flow, independent = result["flow"], result["independent"]
    walls = flow["wall_s_runs"]
    # The scenario's counters are per step, of its median run; a flow has width + 2 steps.
    cell = fanout_cell(walls, len(walls), sizes.fanout_width,
                       _counters(flow, scale=sizes.fanout_width + 2))
    return {**cell, "independent_median_ms": round(independent["wall_s"] * 1000, 2),
            "ratio_to_independent": result["ratio"],
            "primitive": "flow, [m.ref() for m in middles]"}


def _cascade(sizes: Sizes, target: Target, progress: Progress) -> Cell:
    """The leaf-failure tree on flowslot: l0 fails; m0 and top need it through ``ref()``."""
    params = _params(sizes, sizes.chain_workers)
    with flowkit.flow_workers(params, target, progress, sizes.timeout_s + 60) as (app, _group):
        pad, flow = sizes.pad(), app.flow("cascade-leaf")
        steps = {"l0": flow.step("l0", flowkit.FAIL_TASK, pad)}
        for i in (1, 2, 3):
            steps[f"l{i}"] = flow.step(f"l{i}", flowkit.STEP_TASK, i, pad)
        for node in ("m0", "m1", "top"):
            refs = [steps[n].ref() for n in LEAF_TREE[node]]
            steps[node] = flow.step(node, flowkit.SUM_TASK, refs, pad)
        started_at = time.perf_counter()
        run = flow.submit()
        run.wait(timeout=sizes.cascade_wait_s)
        waited = time.perf_counter() - started_at
        states = {s["step"]: s["state"] for s in run.describe(timeline_limit=1)["steps"]}
    pending = sorted(n for n, s in states.items() if s not in TERMINAL)
    return {"states": states, "pending": pending, "raw_states": states,
            "terminal_ms": None if pending else round(waited * 1000, 1),
            "waited_s": round(waited, 2), "primitive": "flow, step.ref()"}


def _cascade_root(sizes: Sizes, target: Target, progress: Progress) -> Cell:
    params = _params(sizes, sizes.chain_workers, shape=list(ROOT_SHAPE))
    m = cascade.run(params, target, progress)["cascade"]
    below = "skipped" if m["all_skipped"] else f"not all skipped: {m['counts']}"
    states = {"root": m["root_state"], **{n: below for n in ("c0", "c1", "g0", "g1", "g2", "g3")}}
    pending = sorted(n for n, s in states.items() if s not in TERMINAL)
    return {"states": states, "pending": pending, "raw_states": states,
            "terminal_ms": None if pending else round(m["client_wall_s"] * 1000, 1),
            "after_root_failed_ms": round(m["wall_s"] * 1000, 1),
            "primitive": "flow, step.ref() (the cascade scenario at shape 2,4)"}


def run(scenarios: list[str], sizes: Sizes, target: Target,
        progress: Progress) -> dict[str, dict[str, Cell]]:
    """{"flowslot": {scenario: cell}, "baseline": {S1: cell}} on one target."""
    out: dict[str, dict[str, Cell]] = {"flowslot": {}, "baseline": {}}
    with round_trips(target) as rt:
        if S1 in scenarios:
            try:
                both = _s1(sizes, target, progress, rt)
                out["flowslot"][S1], out["baseline"][S1] = both["flowslot"], both["baseline"]
            except Exception as e:  # noqa: BLE001 - reported, the other scenarios still run
                out["flowslot"][S1] = error_cell(e)
        flows: dict[str, Callable[[Sizes, Target, Progress], Cell]] = {
            CHAIN: _chain, FANOUT: _fanout, CASCADE: _cascade, CASCADE_ROOT: _cascade_root}
        for name, fn in flows.items():
            if name in scenarios:
                out["flowslot"][name] = guarded(partial(fn, sizes, target, progress))
    return out

