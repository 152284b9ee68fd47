"""Flow rules found by a fault run (issue 8): canceled required steps, quorum
bounds, the transition table as a guard, and calls bounded by their work.

Driven by hand through the Lua functions, on fakeredis and real Valkey.
"""

from __future__ import annotations

import json

import pytest

from engine import BadArguments, ContractError
from engine import executions as X
from engine.calls import FCall
from engine.errors import AlreadyExists, InternalError
from engine.flowbatches import plan_batches, step_cost
from engine.router import Command
from keys import new_id
from tests.conftest import snapshot
from tests.lua.test_flows import app, claim_step, finish, state  # noqa: F401 - the app fixture


def test_a_canceled_required_step_fails_its_flow_even_behind_after_any(app):
    flow = app.flow("cancel-one")
    a = flow.step("a", "t.a")
    flow.step("b", "t.b", after_any=[a])
    run = flow.submit()
    claim_step(app, run, "a")
    finish(app, run, "a", "canceled")
    assert state(run, "b") == "ready"  # after_any runs whatever the outcome
    finish(app, run, "b", "succeeded")
    assert run.status()["state"] == "failed"


@pytest.mark.parametrize("outcome", ["canceled", "expired"])  # expired: its deadline passed at claim
def test_an_optional_step_canceled_or_expired_does_not_fail_its_flow(app, outcome):
    flow = app.flow(f"optional-{outcome}")
    a = flow.step("a", "t.a", optional=True)
    flow.step("b", "t.b", after_any=[a])
    run = flow.submit()
    finish(app, run, "a", outcome)
    assert state(run, "a") == outcome
    finish(app, run, "b", "succeeded")
    assert run.status()["state"] == "succeeded"


def test_retrying_a_flow_failed_by_a_canceled_step_can_succeed(app):
    flow = app.flow("cancel-retry")
    a = flow.step("a", "t.a")
    flow.step("b", "t.b", after_any=[a])
    run = flow.submit()
    finish(app, run, "a", "canceled")
    finish(app, run, "b", "succeeded")
    assert run.status()["state"] == "failed"
    run.retry()
    finish(app, run, "a", "succeeded")
    assert run.status()["state"] == "succeeded"


def test_a_quorum_larger_than_the_required_edges_is_refused_when_the_flow_is_built(app):
    flow = app.flow("quorum")
    parents = [flow.step(f"p{i}", "t.a") for i in range(3)]
    with pytest.raises(ContractError, match="'j'.*quorum=4 exceeds its 3 required"):
        flow.step("j", "t.b", after=parents, quorum=4)
    # soft edges do not count towards a quorum
    with pytest.raises(ContractError, match="quorum=2 exceeds its 1 required"):
        flow.step("k", "t.b", after=parents[:1], after_any=parents[1:], quorum=2)


def test_the_lua_library_refuses_a_quorum_larger_than_the_required_edges_and_writes_nothing(app):
    ks = app.client.keys
    fid = f"f_{0:04x}_1700000000000abcdef"
    steps = [
        {"step": "p", "id": f"e_{0:04x}_1700000000000aaaaaa", "task": "t.a", "lane": "default",
         "payload": "{}", "priority": 0, "max_attempts": 1, "backoff_ms": 0, "backoff_max_ms": 0,
         "deadline_in_ms": 0, "optional": False, "policy": "all", "quorum": 0, "edges": []},
        {"step": "j", "id": f"e_{0:04x}_1700000000000bbbbbb", "task": "t.b", "lane": "default",
         "payload": "{}", "priority": 0, "max_attempts": 1, "backoff_ms": 0, "backoff_max_ms": 0,
         "deadline_in_ms": 0, "optional": False, "policy": "quorum", "quorum": 2,
         "edges": [["p", "after"]]},
    ]
    before = snapshot(app.client)
    call = FCall("flow_submit", (ks.flow(0, fid),), (fid, "q", "{}", json.dumps(steps), 1, ""))
    with pytest.raises(BadArguments, match="step j: quorum 2 exceeds its 1 required"):
        app.client.run(call)
    assert snapshot(app.client) == before


_BAD_SPECS = [
    ({"priority": 256}, "step j priority must be an integer in 0..255, got 256"),
    ({"max_attempts": 0}, "step j max_attempts must be an integer in 1..1000, got 0"),
    ({"deadline_in_ms": -1}, "step j deadline_in_ms must be an integer in 0..10000000000000, got -1"),
    ({"edges": 5}, "step j: edges must be a list"),
    ({"edges": [["p"]]}, "step j: malformed edge"),
    ({"id": 5}, "step j: bad execution id"),
    ({"task": ""}, "step j: bad task"),
    ({"lane": 7}, "step j: bad lane"),
    ({"payload": None}, "step j: bad payload"),
    ({"policy": "most"}, "step j: unknown group policy most"),
    ({"edge_counts": [0, 0]}, "step j required edge count must be an integer in 1..10000000, got 0"),
    ({"step": ""}, "step #2: bad step id"),
]


@pytest.mark.parametrize(("change", "message"), _BAD_SPECS)
def test_a_malformed_step_spec_is_refused_naming_the_step_and_writes_nothing(app, change, message):
    ks = app.client.keys
    fid = f"f_{0:04x}_1700000000000abcdef"
    parent = {"step": "p", "id": f"e_{0:04x}_1700000000000aaaaaa", "task": "t.a", "lane": "default",
              "payload": "{}", "edges": []}
    child = {"step": "j", "id": f"e_{0:04x}_1700000000000bbbbbb", "task": "t.b", "lane": "default",
             "payload": "{}", "edges": [["p", "ref"]], **change}
    before = snapshot(app.client)
    call = FCall("flow_submit", (ks.flow(0, fid),), (fid, "bad", "{}", json.dumps([parent, child]), 1, ""))
    with pytest.raises(BadArguments, match=message):
        app.client.run(call)
    assert snapshot(app.client) == before


def test_a_step_spec_that_is_not_an_object_is_refused_by_its_position(app):
    ks = app.client.keys
    fid = f"f_{0:04x}_1700000000000abcdef"
    call = FCall("flow_submit", (ks.flow(0, fid),), (fid, "bad", "{}", json.dumps([5]), 1, ""))
    with pytest.raises(BadArguments, match="step #1 is not an object"):
        app.client.run(call)


def test_every_spec_of_a_batch_is_checked_before_anything_is_read(app):
    """A batch whose first step names an unknown upstream and whose second is malformed is
    refused for the malformed spec: shapes are checked first, then one read serves the batch."""
    ks = app.client.keys
    fid = f"f_{0:04x}_1700000000000abcdef"
    first = {"step": "a", "id": f"e_{0:04x}_1700000000000aaaaaa", "task": "t.a", "lane": "default",
             "payload": "{}", "edges": [["nowhere", "ref"]]}
    second = {"step": "b", "id": f"e_{0:04x}_1700000000000bbbbbb", "task": "", "lane": "default",
              "payload": "{}", "edges": []}
    before = snapshot(app.client)
    call = FCall("flow_submit", (ks.flow(0, fid),), (fid, "bad", "{}", json.dumps([first, second]), 1, ""))
    with pytest.raises(BadArguments, match="step b: bad task"):
        app.client.run(call)
    assert snapshot(app.client) == before
    call = FCall("flow_submit", (ks.flow(0, fid),), (fid, "bad", "{}", json.dumps([first]), 1, ""))
    with pytest.raises(BadArguments, match="step a references unknown step nowhere"):
        app.client.run(call)
    assert snapshot(app.client) == before


def _spec(step, eid, edges=()):
    return {"step": step, "id": f"e_{0:04x}_1700000000000{eid}", "task": "t.a", "lane": "default",
            "payload": "{}", "edges": [list(e) for e in edges]}


def test_a_new_step_whose_execution_id_exists_is_refused_and_writes_nothing(app):
    ks = app.client.keys
    fid = f"f_{0:04x}_1700000000000abcdef"
    taken = ks.execution(0, _spec("x", "cccccc")["id"])
    app.client.run(Command(("HSET", taken, "state", "ready"), taken))
    before = snapshot(app.client)
    steps = [_spec("a", "aaaaaa"), _spec("b", "cccccc", [("a", "ref")])]
    call = FCall("flow_submit", (ks.flow(0, fid),), (fid, "taken", "{}", json.dumps(steps), 1, ""))
    with pytest.raises(AlreadyExists, match="execution e_0000_1700000000000cccccc exists"):
        app.client.run(call)
    assert snapshot(app.client) == before


def test_a_later_batch_naming_a_step_the_flow_has_under_another_id_is_refused(app):
    ks = app.client.keys
    fid = f"f_{0:04x}_1700000000000abcdef"
    first = [_spec("a", "aaaaaa"), _spec("b", "bbbbbb", [("a", "ref")])]
    app.client.run(FCall("flow_submit", (ks.flow(0, fid),), (fid, "f", "{}", json.dumps(first), 0, "")))
    before = snapshot(app.client)
    again = [_spec("c", "cccccc", [("b", "ref")]), _spec("b", "dddddd", [("a", "ref")])]
    call = FCall("flow_submit", (ks.flow(0, fid),), (fid, "f", "{}", json.dumps(again), 1, ""))
    with pytest.raises(AlreadyExists, match="already has a step b"):
        app.client.run(call)
    assert snapshot(app.client) == before
    # the same batch repeated (same ids) adds nothing, and the flow seals with the next
    app.client.run(FCall("flow_submit", (ks.flow(0, fid),), (fid, "f", "{}", json.dumps(first), 0, "")))
    assert snapshot(app.client) == before
    last = [_spec("c", "cccccc", [("b", "ref")])]
    reply = app.client.run(FCall("flow_submit", (ks.flow(0, fid),), (fid, "f", "{}", json.dumps(last), 1, "")))
    assert reply[0] == "running"
    steps = ks.flow_steps(0, fid)
    assert app.client.run(Command(("HLEN", steps), steps)) == 3


def test_a_transition_outside_the_table_is_refused_as_a_bug(app):
    """move() checks the table: a corrupted state can never be moved on silently."""
    handle = app.submit("t.a", deadline_s=60)
    ks = app.client.keys
    partition = X.execution_partition(ks, handle.id)
    key = ks.execution(partition, handle.id)
    app.client.run(Command(("HSET", key, "state", "bogus"), key))
    deadlines = ks.deadlines(partition)
    app.client.run(Command(("ZADD", deadlines, 1, handle.id), deadlines))
    with pytest.raises(InternalError, match="cannot move from bogus to expired"):
        app.client.run(FCall("exec_expire_deadlines", (deadlines,), (10,)))
    assert app.client.run(Command(("HGET", key, "state"), key)) == "bogus"


def test_a_step_with_more_edges_than_one_call_carries_is_split_into_appends():
    parents = [{"step": f"p{i}", "id": f"e{i}", "payload": "{}", "edges": []} for i in range(25)]
    join = {"step": "j", "id": "ej", "payload": "{}",
            "edges": [[f"p{i}", "ref" if i % 2 else "after_any"] for i in range(25)]}
    batches = plan_batches([*parents, join], budget=10)
    assert all(sum(step_cost(s) for s in batch) <= 10 for batch in batches)
    pieces = [s for batch in batches for s in batch if s["step"] == "j"]
    assert pieces[0]["edge_counts"] == [12, 13]
    assert all(p.get("append") == 1 for p in pieces[1:])
    assert [e for p in pieces for e in p["edges"]] == join["edges"]


def test_a_fan_in_split_over_many_calls_runs_once_every_parent_succeeded(app):
    flow = app.flow("wide-join")
    parents = [flow.step(f"p{i}", "t.a") for i in range(30)]
    flow.step("j", "t.b", [p.ref() for p in parents], quorum=30)
    run = flow.submit(budget=8)
    for i in range(30):
        assert state(run, "j") == "blocked"
        finish(app, run, f"p{i}", "succeeded", result=i)
    assert state(run, "j") == "ready"
    key = app.client.keys.inputs(run.partition, run.step_execution("j"))
    assert len(app.client.run(Command(("HGETALL", key), key))) == 30


def test_retrying_a_wide_fan_in_in_small_calls_recounts_every_edge(app):
    """flow_retry reads a step's edges a page at a time (HSCAN), so no call holds
    the shard for a whole fan-in; the recount across pages is exact."""
    from engine import flowcalls

    flow = app.flow("wide-retry")
    parents = [flow.step(f"p{i}", "t.a") for i in range(200)]
    flow.step("j", "t.b", [p.ref() for p in parents])
    run = flow.submit()
    for i in range(199):
        finish(app, run, f"p{i}", "succeeded", result=i)
    finish(app, run, "p199", "failed")
    assert state(run, "j") == "skipped" and run.status()["state"] == "failed"
    calls = 0
    while not app.client.run(flowcalls.retry(app.client.keys, run.id, 5))[0]:
        calls += 1
    assert calls > 3
    join = app.client.keys.execution(run.partition, run.step_execution("j"))
    counters = app.client.run(Command(("HMGET", join, "req_ok", "req_bad", "state"), join))
    assert counters == ["199", "0", "blocked"]  # 199 kept their results, p199 runs again
    finish(app, run, "p199", "succeeded", result=199)
    assert state(run, "j") == "ready"
    key = app.client.keys.inputs(run.partition, run.step_execution("j"))
    assert len(app.client.run(Command(("HGETALL", key), key))) == 200


def test_the_lua_library_refuses_a_dynamic_step_on_an_unknown_step_and_writes_nothing(app):
    """Python checks this first; the library must hold on its own (HEXISTS answers 0, not nil)."""
    from engine import flowcalls

    flow = app.flow("dyn-unknown")
    flow.step("a", "t.a")
    run = flow.submit()
    parent = claim_step(app, run, "a")
    spec = {"step": "dyn", "id": new_id("e", run.partition), "task": "t.b", "lane": "default",
            "payload": "{}", "priority": 0, "max_attempts": 1, "backoff_ms": 0, "backoff_max_ms": 0,
            "deadline_in_ms": 0, "optional": False, "policy": "all", "quorum": 0,
            "edges": [["a", "after"], ["nope", "after"]]}
    before = snapshot(app.client)
    with pytest.raises(BadArguments, match="references unknown step nope"):
        app.client.run(flowcalls.submit(app.client.keys, run.id, "", "{}", json.dumps([spec]), True,
                                        parent.execution_id))
    assert snapshot(app.client) == before


def test_a_step_added_by_a_handler_must_fit_one_bounded_call(app):
    from engine.flowbatches import MAX_DYNAMIC_EDGES, STEP_UNITS, WORK_BUDGET
    from engine.flows import add_dynamic_step

    assert MAX_DYNAMIC_EDGES + STEP_UNITS == WORK_BUDGET
    flow = app.flow("wide-dynamic")
    parent = flow.step("a", "t.a")
    for i in range(MAX_DYNAMIC_EDGES):
        flow.step(f"p{i}", "t.a", after=[parent])
    run = flow.submit()
    c = claim_step(app, run, "a")
    before = snapshot(app.client)
    with pytest.raises(ContractError, match=f"at most {MAX_DYNAMIC_EDGES}"):
        add_dynamic_step(app, run.id, c.execution_id, "a", "wide", "t.b", [], None,
                         [f"p{i}" for i in range(MAX_DYNAMIC_EDGES)], (), {})  # + the parent: one too many
    assert snapshot(app.client) == before
