"""Each scanner repairs the straggler it exists for, planted on a real cluster."""

from __future__ import annotations

import json
import time

import pytest

from engine import executions as X
from engine import flowcalls
from engine.router import Command
from keys import new_id
from reconciler import (
    DeadlineExpiry,
    DelayedPromoter,
    DependencyScanner,
    FlowRetention,
    HintRepair,
    IndexCheck,
    Reconciler,
    Retention,
    UnsealedFlows,
)
from tests.waiting import wait_until

pytestmark = [pytest.mark.server, pytest.mark.system]




def get(app, *args, key):
    return app.client.run(Command(args, key))


def submit_without_hint(app, task, *args, delay_ms=0, deadline_in_ms=0):
    spec, partition = app.prepare(task, args)
    spec = X.SubmitSpec(spec.execution_id, spec.task, spec.lane, spec.payload, delay_ms=delay_ms,
                        deadline_in_ms=deadline_in_ms)
    app.client.run(X.submit(app.client.keys, spec, partition))
    return spec.execution_id, partition


def state_of(app, eid, partition):
    key = app.client.keys.execution(partition, eid)
    return get(app, "HGET", key, "state", key=key)


def test_hint_repair_finds_ready_work_whose_hint_was_lost(cluster, namespace, make_app, spawn_worker):
    app = make_app(cluster.url, namespace)
    spawn_worker(cluster.url, namespace)  # returns once its start-up sweep is done
    eid, partition = submit_without_hint(app, "basic.add", 2, 2)
    time.sleep(0.5)
    assert state_of(app, eid, partition) == "ready"  # nobody was told
    result = HintRepair(age_s=0.2).run(app.client, range(app.client.keys.partitions))
    assert result.repaired == 1
    wait_until(lambda: state_of(app, eid, partition) == "succeeded", what="the repaired hint")


def test_the_delayed_promoter_runs_a_back_dated_delay(cluster, namespace, make_app, spawn_worker):
    app = make_app(cluster.url, namespace)
    eid, partition = submit_without_hint(app, "basic.add", 1, 1, delay_ms=3_600_000)
    delayed = app.client.keys.delayed(partition)
    get(app, "ZADD", delayed, 1, eid, key=delayed)  # back-date: due long ago
    spawn_worker(cluster.url, namespace)
    assert DelayedPromoter().run(app.client, [partition]).repaired == 1
    wait_until(lambda: state_of(app, eid, partition) == "succeeded", what="promoted work to run")


def test_the_delayed_promoter_leaves_work_the_workers_are_about_to_promote(cluster, namespace, make_app):
    """Due for less than its age: the workers' timer or pass promotes it on time, so the
    daemon neither does nor counts it (a healthy system repairs nothing)."""
    app = make_app(cluster.url, namespace)
    eid, partition = submit_without_hint(app, "basic.add", 1, 1, delay_ms=10)
    time.sleep(0.1)
    assert DelayedPromoter(age_s=2.0).run(app.client, [partition]).repaired == 0
    assert state_of(app, eid, partition) == "delayed"
    assert DelayedPromoter(age_s=0.0).run(app.client, [partition]).repaired == 1
    assert state_of(app, eid, partition) == "ready"


def test_deadlines_expire_work_nobody_started(cluster, namespace, make_app):
    app = make_app(cluster.url, namespace)
    eid, partition = submit_without_hint(app, "basic.add", 1, 1, deadline_in_ms=100)
    time.sleep(0.2)
    assert DeadlineExpiry().run(app.client, [partition]).repaired == 1
    assert state_of(app, eid, partition) == "expired"


def test_a_flow_whose_batched_submit_never_finished_is_canceled(cluster, namespace, make_app):
    app = make_app(cluster.url, namespace)
    flow = app.flow("half")
    flow.step("a", "basic.add", 1, 2)
    partition = 3
    flow_id = new_id("f", partition)
    encoded = [flow.encode_step(flow.steps["a"], partition)]
    app.client.run(flowcalls.submit(app.client.keys, flow_id, "half", "{}", json.dumps(encoded), False))
    run = app.run(flow_id)
    assert run.status()["counts"] == {"blocked": 1}  # held: nothing claimable
    assert UnsealedFlows(age_s=0).run(app.client, [partition]).repaired == 1
    assert run.status()["state"] == "canceled"


def test_the_dependency_scanner_finishes_a_cascade_a_dead_dispatcher_left(cluster, namespace, make_app):
    app = make_app(cluster.url, namespace)
    flow = app.flow("cascade")
    root = flow.step("root", "basic.add", 1, 1)
    for i in range(5):
        flow.step(f"child{i}", "basic.add", root.ref(), 1)
    run = flow.submit()
    ks = app.client.keys
    claimed = app.client.run(X.claim(ks, run.partition, "default", 1, 30_000, "w")).claimed[0]
    # The terminal transition lands, then "the process dies" before dispatching.
    app.client.run(X.fail(ks, claimed.execution_id, claimed.token, "E", "x", False, 0.0))
    assert run.status()["counts"]["blocked"] == 5
    result = DependencyScanner(age_s=0).run(app.client, [run.partition])
    assert result.repaired == 1
    assert run.status()["state"] == "failed"
    assert run.status()["counts"] == {"failed": 1, "skipped": 5}


def test_retention_deletes_finished_executions_and_flows_with_all_their_keys(cluster, namespace, make_app,
                                                                            spawn_worker):
    from tests.conftest import snapshot

    app = make_app(cluster.url, namespace)
    spawn_worker(cluster.url, namespace)
    assert app.submit("basic.add", 1, 2, idempotency_key="once").result(timeout=20) == 3
    flow = app.flow("kept-briefly")
    a = flow.step("a", "basic.add", 1, 1)
    flow.step("b", "basic.add", a.ref(), 1)
    run = flow.submit()
    assert run.wait(timeout=20).value == "succeeded"
    purged = Reconciler(app.client, [Retention(retention_s=0), FlowRetention(retention_s=0)]).run_pass()
    assert (purged["retention"].repaired, purged["flow_retention"].repaired) == (1, 1)
    keys = set(snapshot(app.client))
    parts = ("x:", "done:", "f:", "in:", "out:", "inp:", "idem:")
    entities = [k for k in keys if any(f":{part}" in k for part in parts)]
    assert entities == []


def test_the_index_check_removes_members_that_disagree_with_their_execution(cluster, namespace, make_app,
                                                                           spawn_worker):
    app = make_app(cluster.url, namespace)
    spawn_worker(cluster.url, namespace)
    handle = app.submit("basic.add", 1, 2)
    handle.result(timeout=20)
    partition = X.execution_partition(app.client.keys, handle.id)
    ready = app.client.keys.ready(partition, "default")
    leases = app.client.keys.leases(partition)
    get(app, "ZADD", ready, 1, handle.id, key=ready)  # a succeeded execution listed as ready
    get(app, "ZADD", leases, 1, "e_0000_00000000000deadbeef", key=leases)  # a lease of nothing
    fixed = IndexCheck().run(app.client, [partition])
    assert fixed.repaired == 2
    assert sorted(state for _, _, state in fixed.details) == ["missing", "succeeded"]
    assert IndexCheck().run(app.client, [partition]).repaired == 0


def test_a_quiet_pass_costs_the_same_commands_whatever_is_stored(cluster, namespace, make_app):
    app = make_app(cluster.url, namespace)
    empty = Reconciler(app.client).run_pass()
    handles = app.submit_many("basic.add", [(i, 1) for i in range(3000)])
    ks = app.client.keys
    for partition in range(ks.partitions):  # finish them all by hand, fast
        while True:
            reply = app.client.run(X.claim(ks, partition, "default", 1000, 30_000, "w"))
            if not reply.claimed:
                break
            app.client.run_many([X.complete(ks, c.execution_id, c.token, "1") for c in reply.claimed])
    assert handles[0].state().value == "succeeded"
    stored = Reconciler(app.client).run_pass()
    assert {n: r.commands for n, r in stored.items()} == {n: r.commands for n, r in empty.items()}
    # One call per scanner per partition: the count depends on the partitions only.
    assert all(r.commands == ks.partitions for r in stored.values()), stored
