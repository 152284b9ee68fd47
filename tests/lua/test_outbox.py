"""The outbox (engine/outbox.py, outbox_send / outbox_first): messages between partitions are
recorded atomically, applied once, acknowledged; on fakeredis and real Valkey."""

from __future__ import annotations

import json

import pytest

from engine import outbox
from engine.errors import ClusterUnavailable
from engine.promoter import Promoter
from engine.router import Command
from reconciler.scanners import OutboxScanner
from tests import outbox_lib
from tests.conftest import TEST_PARTITIONS

A, B = 1, 9


@pytest.fixture
def client(lua_client):
    outbox_lib.load(lua_client)
    return lua_client


def total(client, partition=B):
    key = outbox_lib.counter(client.keys, partition)
    return int(client.run(Command(("GET", key), key)) or 0)


def pending(client, partition=A):
    key = client.keys.outbox(partition)
    return client.run(Command(("ZRANGE", key, 0, -1), key))


def test_a_sent_message_is_recorded_in_the_senders_outbox_with_kind_target_and_body(client):
    [first, second] = outbox_lib.send(client, A, B, count=2)
    assert first != second and first.startswith(client.keys.tags[A] + ".")
    assert pending(client) == [first, second]
    raw = client.run(outbox.due_call(client.keys, A))
    assert [(i, json.loads(m)) for i, m in raw] == [
        (first, {"kind": "t_incr", "to": B, "body": {"n": 1}}),
        (second, {"kind": "t_incr", "to": B, "body": {"n": 2}})]
    assert total(client) == 0


def test_message_ids_are_unique_across_partitions_and_calls(client):
    ids = outbox_lib.send(client, A, B, 3) + outbox_lib.send(client, B, A, 3) + outbox_lib.send(client, A, B, 1)
    assert len(set(ids)) == 7


def test_a_flush_applies_each_message_once_and_acknowledges_it(client):
    ids = outbox_lib.send(client, A, B, count=3)
    result = outbox.flush(client, A)
    assert result.applied == dict.fromkeys(ids, "applied") and not result.failed
    assert total(client) == 1 + 2 + 3
    assert pending(client) == [] and client.run(outbox.due_call(client.keys, A)) == []
    inbox = client.keys.inbox(B)
    assert sorted(client.run(Command(("ZRANGE", inbox, 0, -1), inbox))) == sorted(ids)
    assert outbox.flush(client, A).applied == {}


def test_a_message_applied_twice_changes_nothing_the_second_time(client):
    [msg] = outbox_lib.send(client, A, B)
    raw = client.run(outbox.due_call(client.keys, A))
    assert outbox.apply(client, A, raw).applied == {msg: "applied"}
    assert outbox.apply(client, A, raw).applied == {msg: "duplicate"}   # a second flusher with the same read
    assert total(client) == 1


def test_a_message_of_an_unknown_kind_stays_in_the_outbox_and_is_reported(client):
    [unknown] = outbox_lib.send(client, A, B, kind="t_nobody")
    [known] = outbox_lib.send(client, A, B)
    result = outbox.flush(client, A)
    assert list(result.applied) == [known]
    assert "no handler" in result.failed[unknown]
    assert pending(client) == [unknown]


def test_a_flush_takes_only_messages_old_enough(client):
    outbox_lib.send(client, A, B)
    assert outbox.flush(client, A, min_age_ms=60_000).applied == {}
    assert total(client) == 0 and len(pending(client)) == 1


def test_acknowledging_unknown_ids_is_harmless(client):
    assert client.run(outbox.ack_call(client.keys, A, ["nope", "never"])) == 0


def test_the_scanner_applies_messages_nobody_acknowledged_and_prunes_the_inbox(client):
    outbox_lib.send(client, A, B, count=2)
    partitions = range(TEST_PARTITIONS)
    assert OutboxScanner().run(client, partitions).repaired == 0      # younger than 30 s: left to the sender
    result = OutboxScanner(age_s=0).run(client, partitions)
    assert result.repaired == 2 and not result.errors
    assert total(client) == 3 and pending(client) == []
    inbox = client.keys.inbox(B)
    assert client.run(Command(("ZCARD", inbox), inbox)) == 2
    assert client.run(outbox.sweep_call(client.keys, B, inbox_age_ms=0)).pruned == 2
    assert client.run(Command(("ZCARD", inbox), inbox)) == 0


def test_a_workers_promotion_pass_applies_due_messages(client, monkeypatch):
    outbox_lib.send(client, A, B)
    Promoter(client).promote(list(range(TEST_PARTITIONS)), outbox=True)
    assert total(client) == 0                                          # younger than a second
    monkeypatch.setattr(outbox, "WORKER_AGE_MS", 0)
    Promoter(client).promote(list(range(TEST_PARTITIONS)), outbox=True)
    assert total(client) == 1 and pending(client) == []


def test_a_workers_promotion_pass_ages_messages_by_the_servers_clock_not_its_own(
        standalone_server, namespace, monkeypatch):
    """A worker whose clock runs five minutes behind still applies a message older than a
    second (on fakeredis the server's clock is the process's, so this needs a real server)."""
    import time

    from engine.client import Client

    client = Client(standalone_server.url, namespace=namespace, partitions=TEST_PARTITIONS)
    outbox_lib.load(client)
    [msg_id] = outbox_lib.send(client, A, B)
    key = client.keys.outbox(A)
    seconds, micros = client.run(Command(("TIME",), key))
    sent_ms = int(seconds) * 1000 + int(micros) // 1000 - 5_000  # sent five seconds ago
    client.run(Command(("ZADD", key, "XX", sent_ms, msg_id), key))
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() - 300)
    Promoter(client).promote(list(range(TEST_PARTITIONS)), outbox=True)
    assert total(client) == 1 and pending(client) == []
    client.close()


def test_a_stuck_message_is_logged_as_an_error_once_and_counted_every_time(client, caplog):
    [unknown] = outbox_lib.send(client, A, B, kind="t_stuck")
    for _ in range(3):
        assert unknown in outbox.flush(client, A).failed
    errors = [r for r in caplog.records if r.levelname == "ERROR" and unknown in r.getMessage()]
    assert len(errors) == 1


def test_a_message_that_cannot_be_applied_goes_behind_the_others_and_holds_none_of_them_up(client):
    [stuck] = outbox_lib.send(client, A, B, kind="t_nobody")
    [fine] = outbox_lib.send(client, A, B)
    assert stuck in outbox.flush(client, A, limit=1).failed              # the oldest first: it fails
    assert outbox.flush(client, A, limit=1).applied == {fine: "applied"}  # then the one behind it
    assert pending(client) == [stuck]


def test_a_flush_right_after_a_call_reports_a_failure_without_raising(client, monkeypatch):
    outbox_lib.send(client, A, B)

    def unavailable(*args, **kwargs):
        raise ClusterUnavailable("node away")

    monkeypatch.setattr(outbox, "flush", unavailable)
    assert outbox.flush_now(client, A) is None
    assert len(pending(client)) == 1


@pytest.mark.parametrize("function", ["outbox_ack", "outbox_defer"])
@pytest.mark.parametrize("bad", ["not json", json.dumps({"id": "x"}), json.dumps([1, 2]),
                                 json.dumps(["m"] * 1001)])
def test_ack_and_defer_refuse_message_ids_that_are_not_a_short_list_of_strings_and_change_nothing(
        client, function, bad):
    from engine.calls import FCall
    from engine.errors import BadArguments

    [sent] = outbox_lib.send(client, A, B)
    keys = ((client.keys.outbox(A), client.keys.outbox_msgs(A)) if function == "outbox_ack"
            else (client.keys.outbox(A),))
    with pytest.raises(BadArguments, match="msg_ids must be"):
        client.run(FCall(function, keys, (bad,)))
    assert pending(client) == [sent]
