"""reconcile-cost: one full reconciler pass with N terminal executions stored.

Executions are made terminal the cheapest real way (``exec_submit`` then
``exec_cancel``, pipelined), growing the store to each size in turn; after
each size one pass of every scanner runs over every partition, and the
commands it sent (client side) and the server executed (``INFO
commandstats``) are counted. The design claim is that both stay constant in N.
"""

from __future__ import annotations

import random
import time

import click

from bench.metrics import read_counters
from bench.params import Params
from bench.scenarios.base import Result, Scenario
from bench.server import Progress, Target
from engine import executions as X
from engine.client import Client
from keys import new_id
from reconciler import Reconciler

NAME = "reconcile-cost"
FILL_CHUNK = 5000


def _fill(client: Client, count: int) -> None:
    """Store ``count`` more terminal (canceled) executions."""
    ks = client.keys
    done = 0
    while done < count:
        n = min(FILL_CHUNK, count - done)
        ids = [new_id("e", random.randrange(ks.partitions)) for _ in range(n)]
        specs = [X.SubmitSpec(eid, "bench.noop", "default", "{}") for eid in ids]
        client.run_many([X.submit(ks, spec, X.execution_partition(ks, spec.execution_id)) for spec in specs])
        client.run_many([X.cancel(ks, eid, "bench") for eid in ids])
        done += n


def run(params: Params, target: Target, progress: Progress) -> Result:
    sizes = [int(s) for s in str(params.extra.get("sizes") or "10000,100000,1000000").split(",")]
    namespace = f"bench{random.randrange(1 << 30):x}"
    client = Client(target.url, namespace=namespace, partitions=params.partitions)
    results, stored = [], 0
    try:
        for size in sorted(sizes):
            started = time.monotonic()
            _fill(client, size - stored)
            stored = size
            progress(f"stored {stored} terminal executions in {time.monotonic() - started:.1f}s")
            reconciler = Reconciler(client)
            before = read_counters(target)
            t0 = time.perf_counter()
            passes = reconciler.run_pass()
            pass_s = time.perf_counter() - t0
            delta = read_counters(target).minus(before)
            server = sum(delta.calls.values()) - len(target.primaries)  # the INFO call itself
            sent = sum(r.commands for r in passes.values())
            results.append({"stored": stored, "pass_s": round(pass_s, 4), "commands_sent": sent,
                            "server_commands": server,
                            "per_scanner": {n: r.commands for n, r in passes.items()},
                            "repaired": sum(r.repaired for r in passes.values())})
            progress(f"N={stored}: one pass {pass_s * 1000:.0f} ms, {sent} commands sent, "
                     f"{server} executed by the server")
    finally:
        client.close()
        if not target.embedded:
            from bench.server import delete_matching

            delete_matching(target, f"{namespace}:*")
    constant = len({r["commands_sent"] for r in results}) == 1
    return {"scenario": NAME, "partitions": params.partitions, "results": results,
            "commands_constant": constant,
            "notes": ["server_commands counts the commands run inside FCALLs too"]}


SCENARIO = Scenario(
    name=NAME,
    summary="One full reconciler pass with N terminal executions stored; commands must not grow with N.",
    run=run,
    options=(click.Option(["--sizes"], default="10000,100000,1000000", show_default=True,
                          help="Comma-separated store sizes, grown in turn."),),
)
