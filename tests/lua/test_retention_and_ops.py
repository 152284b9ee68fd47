"""Retention leaves nothing behind, and multi-call flow operations that a crash
cut short are finished by the reconciler (issue 8, items 7 and 8).

On fakeredis and real Valkey, steps driven by hand through the Lua functions.
"""

from __future__ import annotations

import json
import time

from engine import executions as X
from engine import flowcalls
from engine.dispatcher import dispatch
from engine.flows import add_dynamic_step
from engine.router import Command
from keys import new_id
from reconciler.scanners import FlowOps, FlowRetention, Retention
from tests.conftest import snapshot
from tests.lua.test_flows import app, claim_step, finish, state  # noqa: F401 - the app fixture

DEPLOYMENT_KEYS = {"config"}  # deployment-wide: kept while the namespace is in use


def _run_everything(app):
    """Drive every key-making feature once: the namespace holds one of each kind of key."""
    ks = app.client.keys
    ok = app.submit("t.a", 1, idempotency_key="k-1", deadline_s=600)
    bad = app.submit("t.b", 2, priority=3)
    gone = app.submit("t.a", 3, delay_s=600)
    app.client.run(X.watch(ks, ok.id))  # a result waiter: its end pushes done:<id>
    leased = {}
    for p in {X.execution_partition(ks, h.id) for h in (ok, bad)}:  # both may share a partition
        leased.update((c.execution_id, c) for c in
                      app.client.run(X.claim(ks, p, "default", 10, 30_000, "w")).claimed)
    for handle in (ok, bad):
        c = leased[handle.id]
        if handle is ok:
            app.client.run(X.complete(ks, c.execution_id, c.token, "1"))
        else:
            app.client.run(X.fail(ks, c.execution_id, c.token, "E", "m", False, 0.0))
    gone.cancel()

    flow = app.flow("everything", labels={"k": "v"})
    a = flow.step("a", "t.a", deadline_s=600)
    b = flow.step("b", "t.b", a.ref())
    flow.step("c", "t.c", a.ref(), b.ref_or_default(0), after_any=[b])
    for i in range(6):  # enough roots for a batched submit, held roots and a seal
        flow.step(f"r{i}", "t.leaf")
    run = flow.submit(budget=3)
    run.pause()
    run.resume()
    claimed_a = claim_step(app, run, "a")
    add_dynamic_step(app, run.id, claimed_a.execution_id, "a", "dyn", "t.leaf", [1], None, (), (), {})
    app.client.run(X.complete(ks, claimed_a.execution_id, claimed_a.token, "5"))
    dispatch(app.client, [claimed_a.execution_id])
    finish(app, run, "b", "failed")
    for step in ("c", "dyn", *(f"r{i}" for i in range(6))):
        finish(app, run, step, "succeeded", result=step)
    assert run.status()["state"] == "failed"  # b failed; c ran with its default
    return run


def test_retention_to_zero_leaves_an_empty_namespace(app):
    run = _run_everything(app)
    run.retry()  # writes f:F:retry while it runs
    finish(app, run, "b", "succeeded", result=1)
    assert run.status()["state"] == "succeeded"
    kinds = {key.split("}:", 1)[1].split(":")[0] for key in snapshot(app.client) if "}:" in key}
    assert {"x", "done", "in", "out", "inp", "def", "idem", "f", "counts", "events",
            "terminal", "flows", "flows_done"} <= kinds

    time.sleep(0.01)  # every event strictly older than the cutoff
    partitions = range(app.client.keys.partitions)
    for scanner in (FlowRetention(retention_s=0), Retention(retention_s=0)):
        while scanner.run(app.client, partitions).repaired:
            pass
    left = snapshot(app.client)
    hints = [k for k in left if ":hint:" in k]
    for key in hints:  # wake-ups a worker would have popped
        app.client.run(Command(("DEL", key), key))
    left = {k: v for k, v in left.items() if k not in hints}
    assert {k.split(":", 1)[1] for k in left} <= DEPLOYMENT_KEYS, sorted(left)


def _ops(app, partition):
    key = app.client.keys.flow_ops(partition)
    return app.client.run(Command(("ZRANGE", key, 0, -1), key))


def _age_ops(app, partition):
    """Pretend the recorded operations started a minute ago (the scanner waits 30 s)."""
    key = app.client.keys.flow_ops(partition)
    for member in _ops(app, partition):
        app.client.run(Command(("ZADD", key, int(time.time() * 1000) - 60_000, member), key))


def test_a_resume_cut_short_by_a_crash_is_finished_by_the_flow_ops_scanner(app):
    flow = app.flow("resume-crash")
    for i in range(5):
        flow.step(f"s{i}", "t.a")
    run = flow.submit()
    run.pause()
    ks = app.client.keys
    assert app.client.run(X.claim(ks, run.partition, "default", 10, 30_000, "w")).claimed == []
    app.client.run(flowcalls.resume(ks, run.id, 2))  # the caller dies after its first call
    assert _ops(app, run.partition) == [f"resume:{run.id}"]
    held = ks.flow_held(run.partition, run.id)
    assert app.client.run(Command(("ZCARD", held), held)) == 3
    _age_ops(app, run.partition)
    assert FlowOps().run(app.client, [run.partition]).repaired == 1
    assert app.client.run(Command(("ZCARD", held), held)) == 0
    assert _ops(app, run.partition) == []
    assert FlowOps().run(app.client, [run.partition]).repaired == 0


def test_a_pause_drops_an_unfinished_resume(app):
    flow = app.flow("resume-then-pause")
    for i in range(3):
        flow.step(f"s{i}", "t.a")
    run = flow.submit()
    run.pause()
    ks = app.client.keys
    app.client.run(X.claim(ks, run.partition, "default", 10, 30_000, "w"))  # all 3 are held
    app.client.run(flowcalls.resume(ks, run.id, 1))
    assert _ops(app, run.partition) == [f"resume:{run.id}"]
    run.pause()
    assert _ops(app, run.partition) == []


def test_a_retry_and_a_cancel_cut_short_are_finished_by_the_flow_ops_scanner(app):
    flow = app.flow("retry-crash")
    root = flow.step("root", "t.a")
    for i in range(4):
        flow.step(f"s{i}", "t.b", root.ref())
    run = flow.submit()
    finish(app, run, "root", "failed")
    assert run.status()["state"] == "failed"
    ks = app.client.keys
    app.client.run(flowcalls.retry(ks, run.id, 2))  # phase "reset", half-way
    assert _ops(app, run.partition) == [f"retry:{run.id}"]
    _age_ops(app, run.partition)
    assert FlowOps().run(app.client, [run.partition]).repaired == 1
    assert state(run, "root") == "ready"
    assert {state(run, f"s{i}") for i in range(4)} == {"blocked"}

    app.client.run(flowcalls.cancel(ks, run.id, 2, "stop"))  # the caller dies after 2 steps
    assert _ops(app, run.partition) == [f"cancel:{run.id}"]
    _age_ops(app, run.partition)
    assert FlowOps().run(app.client, [run.partition]).repaired == 1
    assert run.status()["counts"] == {"canceled": 5}


def test_a_seal_cut_short_is_finished_by_the_flow_ops_scanner(app):
    flow = app.flow("seal-crash")
    for i in range(5):
        flow.step(f"s{i}", "t.a")
    ks = app.client.keys
    plan = [flow.encode_step(step, 0) for step in flow._topological_order()]
    fid = new_id("f", 0)
    for n, chunk in enumerate([plan[:3], plan[3:]]):
        app.client.run(flowcalls.submit(ks, fid, "seal-crash", "{}", json.dumps(chunk), n == 1))
    assert _ops(app, 0) == [f"seal:{fid}"]  # the caller died before flow_seal
    _age_ops(app, 0)
    assert FlowOps().run(app.client, [0]).repaired == 1
    run = app.run(fid)
    assert run.status()["counts"] == {"ready": 5}
    assert _ops(app, 0) == []
