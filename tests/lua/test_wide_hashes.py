"""Hashes that grow large are hash tables from their first write (``hset_wide`` in
lua/00_helpers.lua): a batched submit's steps hash, and the edges and inputs of a
step with more than 512 edges. Only the encoding differs: they hold the same
fields. On a real Valkey (fakeredis has no encodings).
"""

from __future__ import annotations

import json

import pytest

from engine import App
from engine import executions as X
from engine.calls import FCall
from engine.client import Client
from engine.dispatcher import dispatch
from engine.router import Command
from tests.conftest import TEST_PARTITIONS
from tests.lua.test_flows import claim_step


@pytest.fixture
def app(standalone_server, namespace):
    client = Client(standalone_server.url, namespace=namespace, partitions=TEST_PARTITIONS)
    app = App(client=client, namespace=namespace, partitions=TEST_PARTITIONS)
    for name in ("a", "b"):
        app.task(name=f"t.{name}")(lambda *a, **k: None)
    yield app
    client.close()


def _read(app, *command):
    key = command[1] if command[0] != "OBJECT" else command[2]
    return app.client.run(Command(command, key))


def _spec(step, edges, **more):
    return {"step": step, "id": f"e_0000_1700000000000{step:0>8}", "task": "t.a", "lane": "default",
            "payload": "{}", "edges": edges, **more}


def test_a_batched_submit_keeps_its_steps_in_a_hash_table_from_the_first_call(app):
    ks = app.client.keys
    batched, whole = app.flow("batched"), app.flow("whole")
    for flow in (batched, whole):
        for i in range(30):
            flow.step(f"s{i}", "t.a")
    runs = [batched.submit(budget=20), whole.submit()]
    steps = [ks.flow_steps(run.partition, run.id) for run in runs]
    assert [_read(app, "OBJECT", "ENCODING", key) for key in steps] == ["hashtable", "listpack"]
    for run, key in zip(runs, steps, strict=True):
        assert _read(app, "HGETALL", key) == {f"s{i}": run.step_execution(f"s{i}") for i in range(30)}


def test_a_step_with_more_edges_than_a_listpack_holds_gets_its_edges_as_a_hash_table_at_once(app):
    """The join's first call carries 10 of its 600 edges: its in: hash holds those
    10 and is a hash table already; a step with 10 edges in all keeps a listpack."""
    ks = app.client.keys
    fid = "f_0000_1700000000000abcdef"
    parents = [_spec(f"p{i}", []) for i in range(600)]
    wide = _spec("wide", [[f"p{i}", "ref"] for i in range(10)], edge_counts=[600, 0])
    narrow = _spec("narrow", [[f"p{i}", "ref"] for i in range(10)])
    call = FCall("flow_submit", (ks.flow(0, fid),), (fid, "wide", "{}", json.dumps([*parents, wide, narrow]), 0, ""))
    app.client.run(call)
    wide_in, narrow_in = ks.edges_in(0, wide["id"]), ks.edges_in(0, narrow["id"])
    assert _read(app, "OBJECT", "ENCODING", wide_in) == "hashtable"
    assert _read(app, "OBJECT", "ENCODING", narrow_in) == "listpack"
    assert _read(app, "HGETALL", wide_in) == _read(app, "HGETALL", narrow_in) == {
        f"p{i}": "ref|pending" for i in range(10)}


def test_the_first_input_of_a_step_with_more_edges_than_a_listpack_holds_starts_a_hash_table(app):
    flow = app.flow("fan-in", max_steps=700)
    parents = [flow.step(f"p{i}", "t.a") for i in range(600)]
    flow.step("join", "t.b", [p.ref() for p in parents])
    flow.step("small", "t.b", [p.ref() for p in parents[:3]])
    run = flow.submit()
    c = claim_step(app, run, "p0")
    app.client.run(X.complete(app.client.keys, c.execution_id, c.token, json.dumps("r0")))
    dispatch(app.client, [c.execution_id])
    ks = app.client.keys
    join_inputs = ks.inputs(run.partition, run.step_execution("join"))
    small_inputs = ks.inputs(run.partition, run.step_execution("small"))
    assert _read(app, "OBJECT", "ENCODING", join_inputs) == "hashtable"
    assert _read(app, "OBJECT", "ENCODING", small_inputs) == "listpack"
    assert _read(app, "HGETALL", join_inputs) == _read(app, "HGETALL", small_inputs) == {"p0": '"r0"'}
