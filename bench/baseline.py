"""The raw-Redis baseline: the least a queue needs, with the same sizes as the scenario.

The parent LPUSHes N payloads onto one list (pipelined in chunks); W
processes each loop ``BRPOP`` -> ``SET result:<id>``. A list is one key, so
on a cluster the baseline uses the one node that owns it. Its keys share one
fresh hash tag and are deleted afterwards.
"""

from __future__ import annotations

import os
import time
from typing import Any, cast

import redis

from bench.metrics import client_cpu, per_job, read_counters
from bench.params import Params
from bench.procs import Child, ProcessGroup, elapsed_cpu_s, running
from bench.server import Progress, Target

POP_TIMEOUT_S = 0.1
RESULT = "null"  # what a flowslot no-op records
KEY_BATCH = 1000


def raw_worker(child: Child, node: str, queue_key: str, result_prefix: str) -> dict[str, Any]:
    """One consumer: pop, record, count; until the parent says stop."""
    host, _, port = node.rpartition(":")
    conn = redis.Redis(host=host, port=int(port), socket_timeout=30, decode_responses=True)
    conn.ping()  # connect before the clock starts
    done = 0
    child.ready()
    while not child.stopping():
        item = conn.brpop([queue_key], POP_TIMEOUT_S)
        if item is None:
            continue
        job_id, _, _payload = cast(str, item[1]).partition(":")
        conn.set(result_prefix + job_id, RESULT)
        done += 1
        child.report(done)
    conn.close()
    return {"succeeded": done}


def _push_all(conn: redis.Redis, queue_key: str, params: Params) -> None:
    payload = params.payload()
    for start in range(0, params.tasks, params.chunk):
        pipe = conn.pipeline(transaction=False)
        for i in range(start, min(start + params.chunk, params.tasks)):
            pipe.lpush(queue_key, f"{i}:{payload}")
        pipe.execute()


def _keys(result_prefix: str, tasks: int) -> list[list[str]]:
    return [[f"{result_prefix}{i}" for i in range(start, min(start + KEY_BATCH, tasks))]
            for start in range(0, tasks, KEY_BATCH)]


def _count_results(conn: redis.Redis, result_prefix: str, tasks: int) -> int:
    return sum(int(conn.exists(*batch)) for batch in _keys(result_prefix, tasks))


def _delete(conn: redis.Redis, queue_key: str, result_prefix: str, tasks: int) -> None:
    """UNLINK every key of the run (all in one slot, so multi-key commands are fine)."""
    for batch in _keys(result_prefix, tasks):
        conn.unlink(*batch)
    conn.unlink(queue_key)


def _timed(conn: redis.Redis, group: ProcessGroup, params: Params, target: Target,
           queue_key: str) -> dict[str, Any]:
    before, cpu0, workers0 = read_counters(target), time.process_time(), group.cpu_s()
    started = time.perf_counter()
    _push_all(conn, queue_key, params)
    finished = group.wait_done(params.tasks, params.timeout_s)
    wall_s = time.perf_counter() - started
    parent_cpu_s = time.process_time() - cpu0
    worker_cpu_s = elapsed_cpu_s(workers0, group.cpu_s())
    counters = per_job(read_counters(target).minus(before), params.tasks, wall_s)
    return {
        "ops_per_s": round(params.tasks / wall_s, 1),
        "wall_s": round(wall_s, 3),
        "timed_out": not finished,
        "commands_per_job": counters["commands_per_job"],
        "server_cpu_us_per_job": counters["server_cpu_us_per_job"],
        **client_cpu(parent_cpu_s, worker_cpu_s, params.tasks),
        "by_command": counters["by_command"],
    }


def run_baseline(params: Params, target: Target, progress: Progress) -> dict[str, Any]:
    tag = f"bench-raw-{os.urandom(4).hex()}"
    queue_key, result_prefix = f"{{{tag}}}:queue", f"{{{tag}}}:result:"
    node = target.node_for_key(queue_key)
    conn = target.node_client(node)
    progress(f"baseline: {params.workers} BRPOP/SET processes on {node}")
    try:
        with running(raw_worker, (node, queue_key, result_prefix), params.workers,
                     deadline_s=params.timeout_s + 120) as group:
            group.wait_ready()
            timed = _timed(conn, group, params, target, queue_key)
        completed = _count_results(conn, result_prefix, params.tasks)
    finally:
        _delete(conn, queue_key, result_prefix, params.tasks)
        conn.close()
    progress(f"baseline: {completed}/{params.tasks} in {timed['wall_s']:.2f}s")
    return {"ops_per_s": timed.pop("ops_per_s"), "completed": completed, "node": node, **timed}
