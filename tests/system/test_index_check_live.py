"""The index check on a live cluster: while workers run standalone work and flows,
every pass it makes finds nothing to repair (no intermediate state between two
calls looks like drift), and it still repairs drift planted in the middle of it.
"""

from __future__ import annotations

import threading

import pytest

from engine import executions as X
from engine.router import Command
from reconciler import IndexCheck
from tests.waiting import wait_until

pytestmark = [pytest.mark.server, pytest.mark.system]


def submit_flows(app, count):
    runs = []
    for i in range(count):
        flow = app.flow(f"live-{i}")
        raw = flow.step("fetch", "flow.fetch", f"s3://bucket/{i}")
        cleaned = flow.step("clean", "flow.clean", raw.ref())
        enriched = flow.step("enrich", "flow.enrich", raw.ref(), optional=True)
        flow.step("report", "flow.report", cleaned.ref(), enriched.ref_or_default({"none": True}))
        adds = [flow.step(f"add{j}", "basic.add", j, 1) for j in range(8)]
        flow.step("sum", "basic.add", adds[0].ref(), adds[1].ref(), after=adds[2:])
        runs.append(flow.submit())
    return runs


def test_passes_during_a_live_workload_repair_nothing(cluster, namespace, make_app, spawn_worker):
    app = make_app(cluster.url, namespace)
    spawn_worker(cluster.url, namespace)
    spawn_worker(cluster.url, namespace)
    partitions = range(app.client.keys.partitions)
    passes: list[list[object]] = []
    done = threading.Event()

    def check_continuously() -> None:
        while not done.is_set():
            passes.append(IndexCheck(max_work=20).run(app.client, partitions).details)

    checker = threading.Thread(target=check_continuously)
    checker.start()
    try:
        handles = app.submit_many("basic.add", [(i, 1) for i in range(300)])
        handles += [app.submit("basic.flaky") for _ in range(10)]
        runs = submit_flows(app, 10)
        for run in runs:
            assert run.wait(timeout=60).value == "succeeded"
        for h in handles:
            h.result(timeout=60)
        cancel_me = app.submit("basic.sleep", 30)
        wait_until(lambda: cancel_me.state().value == "leased", what="the sleeper to start")
        cancel_me.cancel()
    finally:
        done.set()
        checker.join()
    passes.append(IndexCheck().run(app.client, partitions).details)
    assert len(passes) > 3
    assert [d for details in passes for d in details] == []


def test_drift_planted_during_a_live_workload_is_repaired(cluster, namespace, make_app, spawn_worker):
    app = make_app(cluster.url, namespace)
    ks = app.client.keys
    handle = app.submit("basic.sleep", 0)  # no worker yet: it stays ready
    partition = X.execution_partition(ks, handle.id)
    ready = ks.ready(partition, "default")
    app.client.run(Command(("ZREM", ready, handle.id), ready))  # as a cut-short transition leaves it
    spawn_worker(cluster.url, namespace)
    app.submit_many("basic.add", [(i, 1) for i in range(100)])
    result = IndexCheck().run(app.client, range(ks.partitions))
    assert [(kind, eid) for kind, eid, _ in result.details] == [("ready_set", handle.id)]
    assert handle.result(timeout=30) == "slept"
