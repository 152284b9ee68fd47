"""memory: bytes per finished execution, standalone and as a step of a 10-step flow.

``MEMORY USAGE`` of every key one execution owns (its hash, and its done
list when a result waiter asked for one: none does here), plus its share
of the partition's shared indexes (the terminal set, the counters, the
event stream: their size divided by the executions they describe).
Target: at most 1 KiB per finished no-payload execution.
"""

from __future__ import annotations

import json
import os

from bench.params import Params
from bench.scenarios.base import Result, Scenario
from bench.server import Progress, Target, delete_matching
from engine import executions as X
from engine.client import Client
from engine.router import Command
from keys import new_id

NAME = "memory"
SAMPLE = 2000  # executions per measurement, so shared structures are amortised realistically


def _usage(client: Client, key: str) -> int:
    return int(client.run(Command(("MEMORY", "USAGE", key, "SAMPLES", "0"), key)) or 0)


def _finish_all(client: Client, partition: int, lane: str = "default") -> None:
    ks = client.keys
    while True:
        reply = client.run(X.claim(ks, partition, lane, 1000, 60_000, "bench"))
        if not reply.claimed:
            return
        client.run_many([X.complete(ks, c.execution_id, c.token, "null") for c in reply.claimed])


def _shared_per_execution(client: Client, partition: int, count: int) -> int:
    ks = client.keys
    shared = sum(_usage(client, k) for k in (ks.terminal(partition), ks.counts(partition), ks.events(partition)))
    return shared // count


def _standalone(client: Client, partition: int) -> dict[str, int]:
    ks = client.keys
    ids = [new_id("e", partition) for _ in range(SAMPLE)]
    client.run_many([X.submit(ks, X.SubmitSpec(eid, "bench.noop", "default", '{"args":[],"kwargs":{}}'),
                              partition) for eid in ids])
    _finish_all(client, partition)
    own = sum(_usage(client, ks.execution(partition, eid)) + _usage(client, ks.done(partition, eid))
              for eid in ids[:200]) // 200
    shared = _shared_per_execution(client, partition, SAMPLE)
    return {"own_bytes": own, "shared_bytes": shared, "per_execution_bytes": own + shared}


def _flow_steps(client: Client, partition: int, flows: int) -> dict[str, int]:
    from engine.app import App

    app = App(client=client, namespace=client.keys.namespace, partitions=client.keys.partitions)
    app._random_partition = lambda: partition  # type: ignore[method-assign]
    runs = []
    for _ in range(flows):
        flow = app.flow("memory")
        previous = flow.step("s0", "bench.noop")
        for i in range(1, 10):
            previous = flow.step(f"s{i}", "bench.noop", previous.ref())
        runs.append(flow.submit())
    ks = client.keys
    from engine.dispatcher import dispatch

    while True:  # run every chain to the end by hand: claim, complete, dispatch
        reply = client.run(X.claim(ks, partition, "default", 1000, 60_000, "bench"))
        if not reply.claimed:
            break
        client.run_many([X.complete(ks, c.execution_id, c.token, "1") for c in reply.claimed])
        dispatch(client, [c.execution_id for c in reply.claimed])
    assert all(r.state().value == "succeeded" for r in runs[:5])
    total = 0
    for run in runs[:20]:
        fkey = ks.flow(partition, run.id)
        steps = client.run(Command(("HGETALL", ks.flow_steps(partition, run.id)), fkey))
        total += sum(_usage(client, k) for k in (fkey, ks.flow_steps(partition, run.id),
                                                 ks.flow_order(partition, run.id), ks.flow_done(partition, run.id)))
        for eid in steps.values():
            total += sum(_usage(client, k) for k in (ks.execution(partition, eid), ks.done(partition, eid),
                                                     ks.edges_in(partition, eid), ks.edges_out(partition, eid),
                                                     ks.inputs(partition, eid)))
    own = total // (20 * 10)
    shared = _shared_per_execution(client, partition, flows * 10)
    return {"own_bytes": own, "shared_bytes": shared, "per_execution_bytes": own + shared,
            "per_flow_bytes": (own + shared) * 10}


def run(params: Params, target: Target, progress: Progress) -> Result:
    namespace = f"bench-{os.urandom(4).hex()}"
    client = Client(target.url, namespace=namespace, partitions=params.partitions)
    try:
        standalone = _standalone(client, 1)
        progress(f"standalone: {json.dumps(standalone)}")
        steps = _flow_steps(client, 2, SAMPLE // 10)
        progress(f"flow steps: {json.dumps(steps)}")
    finally:
        client.close()
        if not target.embedded:
            delete_matching(target, f"{namespace}:*")
    return {"scenario": NAME, "standalone_execution": standalone, "flow_step": steps,
            "target_bytes": 1024, "meets_target": standalone["per_execution_bytes"] <= 1024,
            "notes": ["shared_bytes: the terminal set, the lane counters and the event stream "
                      "(3 entries per execution) divided by the executions they hold"]}


SCENARIO = Scenario(NAME, "Bytes per finished execution, standalone and as a flow step (target 1 KiB).", run)
