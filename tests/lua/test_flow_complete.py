"""flow_complete: a flow step's success, its outgoing edges and the next claim in one call."""

from __future__ import annotations

import json

import pytest

from engine import App
from engine import executions as X
from engine.dispatcher import dispatch
from engine.replies import event_records
from engine.router import Command


@pytest.fixture
def app(lua_client, namespace):
    app = App(client=lua_client, namespace=namespace, partitions=lua_client.keys.partitions)
    for name in ("a", "b", "c"):
        app.task(name=f"t.{name}")(lambda *a, **k: None)
    return app


def read(app, *command, key):
    return app.client.run(Command(command, key))


def lease_root(app, run, step="a"):
    reply = app.client.run(X.claim(app.client.keys, run.partition, "default", 10, 30_000, "w"))
    (claimed,) = [c for c in reply.claimed if c.step == step]
    return claimed


def complete(app, claimed, *, room=1, lanes=("default",), max_edges=150):
    return app.client.run(X.complete_step(app.client.keys, claimed.execution_id, claimed.token,
                                          json.dumps(41), max_edges, room, 30_000, "w2", lanes))


def chain(app, lane="default"):
    flow = app.flow("chain")
    a = flow.step("a", "t.a")
    flow.step("b", "t.b", a.ref(), lane=lane)
    return flow.submit()


def exec_state(app, run, step):
    key = app.client.keys.execution(run.partition, run.step_execution(step))
    return read(app, "HGET", key, "state", key=key)


def pending_dispatch(app, run):
    key = app.client.keys.pending_dispatch(run.partition)
    return read(app, "ZRANGE", key, 0, -1, key=key)


def test_completing_a_chain_step_leases_its_child_in_the_same_reply(app):
    run = chain(app)
    reply = complete(app, lease_root(app, run))
    assert (reply.state, reply.first, reply.dispatch, reply.ready, reply.cascade) == (
        "succeeded", True, False, [], [])
    (child,) = reply.claimed
    assert (child.execution_id, child.step, dict(child.inputs), child.attempt) == (
        run.step_execution("b"), "b", {"a": "41"}, 1)
    assert reply.claimed_lanes == ["default"]
    assert exec_state(app, run, "b") == "leased"
    assert pending_dispatch(app, run) == []  # nothing left for the dispatcher or the reconciler
    key = app.client.keys.leases(run.partition)
    assert read(app, "ZRANGE", key, 0, -1, key=key) == [child.execution_id]
    # the child's lease is a real one: completing it finishes the flow
    app.client.run(X.complete(app.client.keys, child.execution_id, child.token, "1"))
    assert run.state().value == "succeeded"


def test_the_timeline_names_every_transition_of_the_one_call(app):
    run = chain(app)
    complete(app, lease_root(app, run))
    key = app.client.keys.events(run.partition)
    last = event_records(read(app, "XRANGE", key, "-", "+", key=key)[-1][1])
    a, b = run.step_execution("a"), run.step_execution("b")
    assert [(r["id"], r["from"], r["to"]) for r in last] == [
        (a, "leased", "succeeded"), (b, "blocked", "ready"), (b, "ready", "leased")]
    assert [(e.get("id"), e["to"]) for e in run.timeline()][-3:] == [
        (a, "succeeded"), (b, "ready"), (b, "leased")]


def test_without_room_the_child_is_made_ready_and_named_for_a_hint(app):
    run = chain(app)
    reply = complete(app, lease_root(app, run), room=0)
    assert [(r.id, r.lane) for r in reply.ready] == [(run.step_execution("b"), "default")]
    assert reply.claimed == [] and not reply.dispatch
    assert exec_state(app, run, "b") == "ready"
    assert pending_dispatch(app, run) == []


def test_a_child_on_a_lane_the_worker_does_not_serve_is_left_ready(app):
    run = chain(app, lane="other")
    reply = complete(app, lease_root(app, run), lanes=("default",))
    assert [(r.id, r.lane) for r in reply.ready] == [(run.step_execution("b"), "other")]
    assert reply.claimed == []
    assert exec_state(app, run, "b") == "ready"


def test_more_edges_than_the_bound_are_left_whole_to_the_dispatcher(app):
    flow = app.flow("wide")
    a = flow.step("a", "t.a")
    flow.step("b", "t.b", a.ref())
    flow.step("c", "t.c", a.ref())
    run = flow.submit()
    root = lease_root(app, run)
    reply = complete(app, root, max_edges=1)
    assert reply.dispatch and reply.claimed == [] and reply.ready == []
    assert exec_state(app, run, "b") == exec_state(app, run, "c") == "blocked"
    assert pending_dispatch(app, run) == [root.execution_id]  # the intent a crash leaves behind
    dispatch(app.client, [root.execution_id])
    assert exec_state(app, run, "b") == exec_state(app, run, "c") == "ready"
    assert pending_dispatch(app, run) == []


def test_a_repeated_completion_changes_nothing(app):
    run = chain(app)
    root = lease_root(app, run)
    complete(app, root)
    again = complete(app, root)
    assert (again.state, again.first, again.claimed, again.ready) == ("succeeded", False, [], [])
    assert exec_state(app, run, "b") == "leased"


def test_a_remote_wait_the_completion_starts_is_reported_and_registered_by_the_recorders_flush(app):
    from engine.held import HeldLeases
    from engine.recorder import Handoff, Outcome, Recorder, WorkerStats
    from tests.lua.test_remote_waits import ORDER_PARTITION, members, order_flow, outbox_of

    run = order_flow(app)
    root = lease_root(app, run, "place")
    started: list[str] = []
    recorder = Recorder(app.client, HeldLeases(), WorkerStats(), lambda p, d: None, started.extend,
                        handoff=Handoff("w", ["default"], 30_000, lambda n: n, lambda c, lane: None, lambda n: None))
    recorder.record([Outcome(root, "default", True, result="1")])
    eid = run.step_execution("shipped")
    assert exec_state(app, run, "shipped") == "waiting"
    assert members(app) == [f"{eid}#1@{ORDER_PARTITION}"]  # registered at once, not left to a pass
    assert outbox_of(app, ORDER_PARTITION) == []


def test_the_reply_counts_the_outbox_messages_the_call_recorded(app):
    from tests.lua.test_remote_waits import ORDER_PARTITION, order_flow, outbox_of

    run = order_flow(app)
    reply = complete(app, lease_root(app, run, "place"))
    assert reply.sent == 1 and len(outbox_of(app, ORDER_PARTITION)) == 1
