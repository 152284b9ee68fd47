"""flow_complete_many: several flow steps' successes of one partition in one call, each as
flow_complete records it, a join fed by several of them resolved once."""

from __future__ import annotations

import json

import pytest

from engine import App
from engine import executions as X
from engine.errors import StaleLease
from engine.replies import event_records
from engine.router import Command


@pytest.fixture
def app(lua_client, namespace):
    app = App(client=lua_client, namespace=namespace, partitions=lua_client.keys.partitions)
    for name in ("root", "mid", "join", "other"):
        app.task(name=f"t.{name}")(lambda *a, **k: None)
    return app


def read(app, *command, key):
    return app.client.run(Command(command, key))


def claim_all(app, run):
    """Lease every ready step of the run's partition: step -> claim."""
    reply = app.client.run(X.claim(app.client.keys, run.partition, "default", 50, 30_000, "w"))
    return {c.step: c for c in reply.claimed}


def complete_many(app, run, claims, *, room=1, results=None):
    items = [(c.execution_id, c.token, json.dumps((results or {}).get(c.step, c.step))) for c in claims]
    return app.client.run(X.complete_steps(app.client.keys, run.partition, items, 150, room, 30_000, "w2",
                                           ["default"]))


def fan(app, width=3):
    """root -> mid0..mid<width-1> -> join (the join takes every middle's result); root done."""
    flow = app.flow("fan")
    root = flow.step("root", "t.root")
    middles = [flow.step(f"m{i}", "t.mid", root.ref()) for i in range(width)]
    flow.step("join", "t.join", [m.ref() for m in middles])
    run = flow.submit()
    (root_claim,) = claim_all(app, run).values()
    app.client.run(X.complete_steps(app.client.keys, run.partition,
                                    [(root_claim.execution_id, root_claim.token, "0")], 150, 0, 30_000,
                                    "w", ["default"]))
    return run


def execution(app, run, step, *fields):
    key = app.client.keys.execution(run.partition, run.step_execution(step))
    return read(app, "HMGET", key, *fields, key=key)


def test_a_join_fed_by_every_step_of_the_call_is_ready_and_leased_with_all_their_inputs(app):
    run = fan(app)
    middles = claim_all(app, run)
    assert sorted(middles) == ["m0", "m1", "m2"]
    replies = complete_many(app, run, [middles[s] for s in ("m0", "m1", "m2")])
    assert [(r.state, r.first, r.dispatch) for r in replies] == [("succeeded", True, False)] * 3
    (join,) = replies[0].claimed
    assert (join.step, dict(join.inputs)) == ("join", {"m0": '"m0"', "m1": '"m1"', "m2": '"m2"'})
    assert replies[0].claimed_lanes == ["default"] and replies[0].ready == []
    assert execution(app, run, "join", "state", "req_ok", "req_total") == ["leased", "3", "3"]
    key = app.client.keys.edges_in(run.partition, run.step_execution("join"))
    assert read(app, "HGETALL", key, key=key) == {f"m{i}": "ref|satisfied" for i in range(3)}


def test_a_join_the_call_feeds_only_in_part_keeps_waiting_with_its_counts(app):
    run = fan(app)
    middles = claim_all(app, run)
    replies = complete_many(app, run, [middles["m0"], middles["m2"]])
    assert all(r.claimed == [] and r.ready == [] for r in replies)
    assert execution(app, run, "join", "state", "req_ok") == ["blocked", "2"]
    key = app.client.keys.inputs(run.partition, run.step_execution("join"))
    assert read(app, "HGETALL", key, key=key) == {"m0": '"m0"', "m2": '"m2"'}
    (last,) = complete_many(app, run, [middles["m1"]], room=0)
    assert [r.id for r in last.ready] == [run.step_execution("join")]  # made ready, named for a hint
    assert execution(app, run, "join", "state", "req_ok") == ["ready", "3"]


def test_a_step_the_call_must_refuse_is_refused_alone(app):
    run = fan(app)
    middles = claim_all(app, run)
    stale = middles["m1"]._replace(token="999")
    replies = complete_many(app, run, [middles["m0"], stale, middles["m2"]])
    assert isinstance(replies[1], StaleLease)
    assert [(r.state, r.first) for r in (replies[0], replies[2])] == [("succeeded", True)] * 2
    assert execution(app, run, "m1", "state") == ["leased"]
    assert execution(app, run, "join", "state", "req_ok") == ["blocked", "2"]


def test_a_step_repeated_in_the_call_or_after_it_is_recorded_once(app):
    run = fan(app)
    middles = claim_all(app, run)
    first = complete_many(app, run, [middles["m0"], middles["m0"]], room=0)
    assert [(r.state, r.first) for r in first] == [("succeeded", True), ("succeeded", False)]
    (again,) = complete_many(app, run, [middles["m0"]], room=0)
    assert (again.state, again.first, again.claimed, again.ready) == ("succeeded", False, [], [])
    assert execution(app, run, "join", "req_ok") == ["1"]
    fkey = app.client.keys.flow(run.partition, run.id)
    assert read(app, "HMGET", fkey, "terminal", "c:succeeded", key=fkey) == ["2", "2"]  # root and m0


def test_the_flow_ends_in_the_call_that_records_its_last_steps(app):
    flow = app.flow("leaves")
    flow.step("a", "t.other")
    flow.step("b", "t.other")
    run = flow.submit()
    claims = claim_all(app, run)
    complete_many(app, run, [claims["a"], claims["b"]])
    assert run.state().value == "succeeded"
    fkey = app.client.keys.flow(run.partition, run.id)
    assert read(app, "HMGET", fkey, "terminal", "bad", "total", key=fkey) == ["2", "0", "2"]


def test_the_calls_transitions_are_one_event_entry_in_order(app):
    run = fan(app, width=2)
    middles = claim_all(app, run)
    complete_many(app, run, [middles["m0"], middles["m1"]])
    key = app.client.keys.events(run.partition)
    last = event_records(read(app, "XRANGE", key, "-", "+", key=key)[-1][1])
    m0, m1, join = (run.step_execution(s) for s in ("m0", "m1", "join"))
    assert [(r["id"], r["from"], r["to"]) for r in last] == [
        (m0, "leased", "succeeded"), (m1, "leased", "succeeded"), (join, "blocked", "ready"),
        (join, "ready", "leased")]


def test_the_leases_and_terminal_indexes_follow_the_call(app):
    run = fan(app, width=2)
    middles = claim_all(app, run)
    (first, _) = complete_many(app, run, [middles["m0"], middles["m1"]])
    leases = app.client.keys.leases(run.partition)
    assert read(app, "ZRANGE", leases, 0, -1, key=leases) == [first.claimed[0].execution_id]
    terminal = app.client.keys.terminal(run.partition)
    assert set(read(app, "ZRANGE", terminal, 0, -1, key=terminal)) >= {
        run.step_execution("m0"), run.step_execution("m1")}


def test_more_than_the_bound_is_a_contract_error_naming_it(app):
    from engine.errors import ContractError

    with pytest.raises(ContractError, match="1..100 steps"):
        X.complete_steps(app.client.keys, 0, [("e", "1", "1")] * 101, 150, 0, 30_000, "w", ["default"])


def test_steps_of_two_flows_in_one_partition_are_recorded_together_each_flow_on_its_own(app):
    runs = []
    for name in ("first", "second"):
        flow = app.flow(name, correlate={"order": "same"})  # both in this correlation's partition
        a = flow.step("a", "t.root")
        flow.step("b", "t.join", a.ref())
        runs.append(flow.submit())
    assert runs[0].partition == runs[1].partition
    first, second = runs
    reply = app.client.run(X.claim(app.client.keys, first.partition, "default", 10, 30_000, "w"))
    roots = sorted(reply.claimed, key=lambda c: c.execution_id != first.step_execution("a"))
    items = [(c.execution_id, c.token, json.dumps(n)) for n, c in enumerate(roots, 1)]
    replies = app.client.run(X.complete_steps(app.client.keys, first.partition, items, 150, 2, 30_000, "w2",
                                              ["default"]))
    children = {c.execution_id: dict(c.inputs) for c in replies[0].claimed}
    assert children == {first.step_execution("b"): {"a": "1"}, second.step_execution("b"): {"a": "2"}}
    for run in runs:
        assert run.status()["counts"] == {"succeeded": 1, "leased": 1}
    leased = [(c.execution_id, c.token, "0") for c in replies[0].claimed]
    app.client.run(X.complete_steps(app.client.keys, first.partition, leased, 150, 0, 30_000, "w2", ["default"]))
    assert [run.state().value for run in runs] == ["succeeded", "succeeded"]


def test_a_paused_flow_holds_the_child_its_last_running_steps_made_ready(app):
    flow = app.flow("paused")
    a = flow.step("a", "t.root")
    b = flow.step("b", "t.mid")
    flow.step("c", "t.join", a.ref(), b.ref())
    run = flow.submit()
    claims = claim_all(app, run)
    assert run.pause() == "pausing"  # a and b still run
    replies = complete_many(app, run, [claims["a"], claims["b"]], room=1)
    assert all(r.claimed == [] and r.ready == [] for r in replies)
    assert run.state().value == "paused"
    assert execution(app, run, "c", "state") == ["ready"]
    ready = app.client.keys.ready(run.partition, "default")
    assert run.step_execution("c") not in app.client.run(Command(("ZRANGE", ready, 0, -1), ready))
    run.resume()
    assert run.step_execution("c") in app.client.run(Command(("ZRANGE", ready, 0, -1), ready))
