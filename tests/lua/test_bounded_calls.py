"""Calls bounded by the work they do (issue 8 item 19), in sizes, never in time.

How long the calls take is measured by ``flowslot bench bounded-calls``; these
tests pin what keeps them short: how a 20,000-way fan-in is cut into
``flow_submit`` calls, and that a claim never carries more than
``CLAIM_INPUTS`` upstream inputs (a wider fan-in's are read in HSCAN pages).
The Lua tests run on fakeredis and on a real Valkey.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from engine import executions as X
from engine.dispatcher import dispatch
from engine.flowbatches import STEP_UNITS, WORK_BUDGET, plan_batches, step_cost
from engine.router import Command
from engine.worker import Worker
from tests.lua.test_flows import app, claim_step, state  # noqa: F401 - the app fixture

CLAIM_INPUTS = 1000  # lua/30_leases.lua


def fan_in_specs(width: int, join_payload: str = "{}") -> list[dict[str, Any]]:
    """Encoded steps (as ``FlowBuilder.encode_step`` makes them) of root → width → join."""
    root = {"step": "root", "id": "e-root", "payload": "{}", "edges": []}
    middles = [{"step": f"m{i}", "id": f"e{i}", "payload": "x" * 150, "edges": [["root", "ref"]]}
               for i in range(width)]
    join = {"step": "join", "id": "e-join", "payload": join_payload,
            "edges": [[f"m{i}", "ref"] for i in range(width)]}
    return [root, *middles, join]


def test_every_call_planned_for_a_20000_way_fan_in_stays_within_the_budget():
    specs = fan_in_specs(20_000, join_payload="r" * 640_000)  # the join's 20,000 references
    batches = plan_batches(specs)
    assert max(sum(step_cost(s) for s in batch) for batch in batches) <= WORK_BUDGET


def test_a_20000_way_fan_in_is_planned_with_every_step_once_and_every_edge_once_in_order():
    specs = fan_in_specs(20_000)
    pieces = [s for batch in plan_batches(specs) for s in batch]
    created = [s["step"] for s in pieces if not s.get("append")]
    assert created == [s["step"] for s in specs]  # each once, in topological order
    join = [s for s in pieces if s["step"] == "join"]
    assert join[0]["edge_counts"] == [20_000, 0] and all(p["append"] == 1 for p in join[1:])
    assert [e for p in join for e in p["edges"]] == specs[-1]["edges"]
    assert Counter(e[0] for p in pieces for e in p["edges"])["root"] == 20_000


def test_a_call_creates_at_most_budget_over_step_units_steps():
    """Creating a step costs STEP_UNITS edges' worth of work, so a call of
    edgeless steps holds WORK_BUDGET // STEP_UNITS of them, not WORK_BUDGET."""
    roots = [{"step": f"r{i}", "id": f"e{i}", "payload": "{}", "edges": []} for i in range(1_000)]
    sizes = [len(batch) for batch in plan_batches(roots)]
    assert sizes[:-1] == [WORK_BUDGET // STEP_UNITS] * (len(sizes) - 1)
    assert sum(sizes) == 1_000


def test_a_piece_of_appended_edges_costs_one_unit_plus_its_edges():
    piece = {"step": "join", "append": 1, "edges": [["m0", "ref"], ["m1", "ref"]]}
    assert step_cost(piece) == 3
    assert step_cost({"step": "s", "payload": "{}", "edges": [["m0", "ref"]]}) == STEP_UNITS + 1


def _joins_of_defaults(app, *widths):  # noqa: F811 - app is the fixture's value
    """root (fails) → middles → one join per width, each taking its middles'
    ref_or_default(i): one failure skips every middle and resolves every soft
    edge, so each join is ready with width inputs."""
    flow = app.flow("wide", max_steps=sum(widths) + len(widths) + 1)
    root = flow.step("root", "t.a")
    for j, width in enumerate(widths):
        middles = [flow.step(f"m{j}-{i}", "t.b", root.ref()) for i in range(width)]
        flow.step(f"join{j}", "t.c", [m.ref_or_default(i) for i, m in enumerate(middles)])
    run = flow.submit()
    c = claim_step(app, run, "root")
    app.client.run(X.fail(app.client.keys, c.execution_id, c.token, "ValueError", "no", False, 0.0))
    dispatch(app.client, [c.execution_id])
    return run


def test_a_claim_leaves_out_the_inputs_of_a_fan_in_wider_than_claim_inputs(app):  # noqa: F811
    run = _joins_of_defaults(app, CLAIM_INPUTS + 1)
    assert state(run, "join0") == "ready"
    claimed = claim_step(app, run, "join0")
    assert claimed.inputs == {} and claimed.inputs_paged == CLAIM_INPUTS + 1
    pages = Worker(app)._paged_inputs(claimed)
    assert {k: json.loads(v) for k, v in pages.items()} == {
        f"m0-{i}": i for i in range(CLAIM_INPUTS + 1)}


def test_a_claim_carries_a_fan_in_of_exactly_claim_inputs_whole(app):  # noqa: F811
    run = _joins_of_defaults(app, CLAIM_INPUTS)
    claimed = claim_step(app, run, "join0")
    assert claimed.inputs_paged == 0 and len(claimed.inputs) == CLAIM_INPUTS


def test_the_claim_inputs_bound_is_shared_by_every_step_one_claim_leases(app):  # noqa: F811
    run = _joins_of_defaults(app, 600, 600)
    reply = app.client.run(X.claim(app.client.keys, run.partition, "default", 10, 30_000, "w"))
    assert sorted(c.step for c in reply.claimed) == ["join0", "join1"]
    assert sorted((len(c.inputs), c.inputs_paged) for c in reply.claimed) == [(0, 600), (600, 0)]


def test_the_inputs_of_a_claim_that_left_them_out_are_read_whole_from_a_key(app):  # noqa: F811
    """Many pages (a 3,000-field hash read 1,000 at a time), each upstream once."""
    ks = app.client.keys
    eid = "e_0001_1700000000000abcdef"
    key = ks.inputs(X.execution_partition(ks, eid), eid)
    pairs = [x for i in range(3_000) for x in (f"m{i}", str(i))]
    app.client.run(Command(("HSET", key, *pairs), key))
    claimed = X.Claimed(eid, "1", "t", "{}", 1, 0, 0, inputs_paged=3_000)
    assert Worker(app)._paged_inputs(claimed) == {f"m{i}": str(i) for i in range(3_000)}
