"""exec_submit_many: several executions of one partition in one call, each as exec_submit
would make it, on fakeredis and a real server (``lua_client``)."""

from __future__ import annotations

import json

import pytest

from engine import executions as X
from engine.errors import BadArguments, ContractError
from engine.replies import SubmitReply, event_records
from engine.router import Command
from keys import new_id
from tests.conftest import snapshot

P = 3


def spec(lane="default", priority=0, delay_ms=0, deadline_in_ms=0, eid=None):
    return X.SubmitSpec(eid or new_id("e", P), "t.task", lane, '{"args":[1],"kwargs":{}}', priority,
                        delay_ms, 3, 0, 0, deadline_in_ms)


def run(client, *args):
    return client.run(Command(args, args[1]))


def event_entries(client):
    """One list of (id, from, to) per event-stream entry."""
    entries = run(client, "XRANGE", client.keys.events(P), "-", "+")
    return [[(r["id"], r["from"], r["to"]) for r in event_records(flat)] for _, flat in entries]


def test_several_submissions_are_written_in_one_call_with_one_event_entry_and_one_counter_write(lua_client):
    specs = [spec() for _ in range(3)] + [spec(lane="images", priority=5), spec(delay_ms=60_000)]
    replies = lua_client.run(X.submit_many(lua_client.keys, P, specs))
    assert replies == [SubmitReply(s.execution_id, "delayed" if s.delay_ms else "ready", True) for s in specs]
    assert event_entries(lua_client) == [[(s.execution_id, "", "delayed" if s.delay_ms else "ready")
                                          for s in specs]]
    counts = run(lua_client, "HGETALL", lua_client.keys.counts(P))
    assert {k: int(v) for k, v in counts.items()} == {"default:ready": 3, "images:ready": 1, "default:delayed": 1}
    ready = run(lua_client, "ZRANGE", lua_client.keys.ready(P, "default"), 0, -1)
    assert sorted(ready) == sorted(s.execution_id for s in specs[:3])
    assert run(lua_client, "ZRANGE", lua_client.keys.ready(P, "images"), 0, -1) == [specs[3].execution_id]
    assert run(lua_client, "ZRANGE", lua_client.keys.delayed(P), 0, -1) == [specs[4].execution_id]
    claimed = lua_client.run(X.claim(lua_client.keys, P, "default", 10, 30_000, "w")).claimed
    assert sorted(c.execution_id for c in claimed) == sorted(s.execution_id for s in specs[:3])


def test_a_batch_alternating_lanes_and_states_counts_each_kind(lua_client):
    """move() reuses the last creation's counter slots for one of the same lane and state only."""
    specs = [spec(), spec(delay_ms=60_000), spec(delay_ms=60_000), spec(lane="images"), spec(),
             spec(lane="images", delay_ms=60_000), spec()]
    lua_client.run(X.submit_many(lua_client.keys, P, specs))
    counts = run(lua_client, "HGETALL", lua_client.keys.counts(P))
    assert {k: int(v) for k, v in counts.items()} == {"default:ready": 2 + 1, "default:delayed": 2,
                                                      "images:ready": 1, "images:delayed": 1}
    lua_client.run(X.submit_many(lua_client.keys, P, [spec(lane="images")]))  # a new call starts afresh
    counts = run(lua_client, "HGETALL", lua_client.keys.counts(P))
    assert int(counts["images:ready"]) == 2 and int(counts["default:ready"]) == 3


def test_a_batch_stores_what_exec_submit_stores(lua_client):
    one, batched = spec(deadline_in_ms=60_000), spec(deadline_in_ms=60_000)
    lua_client.run(X.submit(lua_client.keys, one, P))
    lua_client.run(X.submit_many(lua_client.keys, P, [batched]))

    def stored(s):
        fields = run(lua_client, "HGETALL", lua_client.keys.execution(P, s.execution_id))
        return sorted(k for k in fields)

    assert stored(batched) == stored(one)
    deadlines = run(lua_client, "ZRANGE", lua_client.keys.deadlines(P), 0, -1)
    assert sorted(deadlines) == sorted([one.execution_id, batched.execution_id])


def test_an_execution_that_exists_or_repeats_in_the_batch_is_not_created_again(lua_client):
    old = spec()
    lua_client.run(X.submit(lua_client.keys, old, P))
    again = spec()
    replies = lua_client.run(X.submit_many(lua_client.keys, P, [old, again, again]))
    assert [r.created for r in replies] == [False, True, False]
    counts = run(lua_client, "HGETALL", lua_client.keys.counts(P))
    assert counts == {"default:ready": "2"}


def test_one_bad_execution_refuses_the_whole_batch_before_anything_is_written_naming_it(lua_client):
    lua_client.run(X.submit(lua_client.keys, spec(), P))
    before = snapshot(lua_client)
    bad = spec(priority=999)
    with pytest.raises(BadArguments, match=f"execution {bad.execution_id} \\(item 2\\): priority"):
        lua_client.run(X.submit_many(lua_client.keys, P, [spec(), bad, spec()]))
    assert snapshot(lua_client) == before


def test_more_executions_than_one_call_takes_or_an_idempotency_key_are_refused_before_sending(lua_client):
    with pytest.raises(ContractError, match="1..100"):
        X.submit_many(lua_client.keys, P, [spec() for _ in range(X.SUBMIT_MANY_MAX + 1)])
    keyed = X.SubmitSpec(new_id("e", P), "t", "default", "{}", idempotency_key="k")
    with pytest.raises(ContractError, match="idempotency"):
        X.submit_many(lua_client.keys, P, [keyed])


# -- through the public API ------------------------------------------------

@pytest.fixture
def app(lua_client, namespace):
    from engine import App
    app = App(client=lua_client, namespace=namespace, partitions=lua_client.keys.partitions)
    app.task(name="t.echo")(lambda x: x)
    return app


def test_submit_many_writes_each_group_of_items_in_one_call_and_returns_handles_in_order(app):
    from engine.app import SUBMIT_GROUP
    handles = app.submit_many("t.echo", [(i,) for i in range(2 * SUBMIT_GROUP + 5)])
    payloads = [json.loads(h.info()["payload"])["args"] for h in handles]
    assert payloads == [[i] for i in range(2 * SUBMIT_GROUP + 5)]
    assert all(h.state() == "ready" for h in handles)
    partitions = [X.execution_partition(app.client.keys, h.id) for h in handles]
    groups = [partitions[i:i + SUBMIT_GROUP] for i in range(0, len(partitions), SUBMIT_GROUP)]
    assert all(len(set(g)) == 1 for g in groups)
    for partition in set(partitions):  # one event entry per call: a partition's items, 100 a call
        key = app.client.keys.events(partition)
        calls = -(-partitions.count(partition) // X.SUBMIT_MANY_MAX)  # (groups may share a partition)
        assert len(app.client.run(Command(("XRANGE", key, "-", "+"), key))) == calls

def test_submit_many_with_a_delay_batches_delayed_executions(app):
    handles = app.submit_many("t.echo", [(1,), (2,), (3,)], delay_s=60)
    assert [h.state() for h in handles] == ["delayed"] * 3
    assert len({X.execution_partition(app.client.keys, h.id) for h in handles}) == 1


def test_submit_many_with_an_idempotency_key_goes_through_exec_submit_and_creates_one(app):
    handles = app.submit_many("t.echo", [(1,), (2,)], idempotency_key="same")
    assert handles[0].id == handles[1].id
    assert json.loads(handles[0].info()["payload"])["args"] == [1]


@pytest.mark.server
def test_a_batch_of_new_executions_checks_their_existence_with_one_exists_for_the_whole_batch(
        standalone_server, namespace):
    import redis

    from engine.client import Client
    from tests.conftest import TEST_PARTITIONS

    client = Client(standalone_server.url, namespace=namespace, partitions=TEST_PARTITIONS)
    raw = redis.Redis.from_url(standalone_server.url)

    def exists_calls() -> int:
        return int(raw.info("commandstats").get("cmdstat_exists", {}).get("calls", 0))

    try:
        client.run(X.submit_many(client.keys, P, [spec()]))  # the library is loaded before counting
        before = exists_calls()
        replies = client.run(X.submit_many(client.keys, P, [spec() for _ in range(20)]))
        assert all(r.created for r in replies)
        assert exists_calls() - before == 2  # the slot probe, and one EXISTS of the twenty keys
    finally:
        client.close()
        raw.close()
