"""exec_complete_many: the successes of one partition recorded in one call, each checked alone,
against fakeredis and real Valkey; and the recorder grouping a mixed batch into it."""

from __future__ import annotations

import pytest

from engine import executions as X
from engine.calls import FCall
from engine.context import TaskContext
from engine.errors import BadArguments, Canceled, ContractError, NotFound, StaleLease
from engine.held import Held, HeldLeases
from engine.recorder import Outcome, Recorder, WorkerStats
from engine.replies import CompleteReply, event_records
from engine.router import Command
from keys import new_id

P = 3  # the partition these tests use


def leased(client, n, lane="default", max_attempts=3):
    """Submit and claim n executions of partition P; return their claims."""
    for _ in range(n):
        spec = X.SubmitSpec(new_id("e", P), "t.task", lane, "{}", max_attempts=max_attempts,
                            backoff_ms=0, backoff_max_ms=0)
        client.run(X.submit(client.keys, spec, P))
    claimed = client.run(X.claim(client.keys, P, lane, n, 30_000, "w-test")).claimed
    assert len(claimed) == n
    return claimed


def run(client, *commands):
    key = commands[0][1]
    return client.run(Command(commands[0], key))


def field(client, eid, name):
    return run(client, ("HGET", client.keys.execution(P, eid), name))


def succeeded_entries(client):
    """The event-stream entries holding successes: each a list of the ids it records."""
    entries = run(client, ("XRANGE", client.keys.events(P), "-", "+"))
    out = []
    for _, flat in entries:
        ids = [r["id"] for r in event_records(flat) if r.get("to") == "succeeded"]
        if ids:
            out.append(ids)
    return out


def triples(claimed, result="42"):
    return [(c.execution_id, c.token, result) for c in claimed]


def test_several_successes_are_recorded_in_one_call_with_one_event_entry(lua_client):
    claimed = leased(lua_client, 4)
    replies = lua_client.run(X.complete_many(lua_client.keys, P, triples(claimed)))
    assert replies == [CompleteReply("succeeded", True, False)] * 4
    ids = [c.execution_id for c in claimed]
    assert [field(lua_client, i, "state") for i in ids] == ["succeeded"] * 4
    assert [field(lua_client, i, "result") for i in ids] == ["42"] * 4
    assert run(lua_client, ("ZCARD", lua_client.keys.leases(P))) == 0
    terminal = run(lua_client, ("ZRANGE", lua_client.keys.terminal(P), 0, -1))
    assert sorted(terminal) == sorted(ids)
    assert [run(lua_client, ("EXISTS", lua_client.keys.done(P, i))) for i in ids] == [0] * 4  # nobody watched
    counts = run(lua_client, ("HGETALL", lua_client.keys.counts(P)))
    assert (int(counts["default:leased"]), int(counts["default:succeeded"])) == (0, 4)
    assert [sorted(e) for e in succeeded_entries(lua_client)] == [sorted(ids)]


def test_a_stale_token_in_a_batch_is_refused_alone_and_the_others_are_recorded(lua_client):
    claimed = leased(lua_client, 3)
    stale = claimed[1]._replace(token=str(int(claimed[1].token) + 1))
    replies = lua_client.run(X.complete_many(lua_client.keys, P, triples([claimed[0], stale, claimed[2]])))
    assert replies[0] == replies[2] == CompleteReply("succeeded", True, False)
    assert isinstance(replies[1], StaleLease)
    assert field(lua_client, claimed[1].execution_id, "state") == "leased"
    leases = run(lua_client, ("ZRANGE", lua_client.keys.leases(P), 0, -1))
    assert leases == [claimed[1].execution_id]


def test_canceled_unknown_repeated_and_doubled_executions_each_get_exec_completes_answer(lua_client):
    claimed = leased(lua_client, 3)
    lua_client.run(X.cancel(lua_client.keys, claimed[0].execution_id))
    lua_client.run(X.complete(lua_client.keys, claimed[1].execution_id, claimed[1].token, "1"))
    unknown = (new_id("e", P), "1", "x")
    replies = lua_client.run(X.complete_many(lua_client.keys, P, [
        *triples(claimed[:2]), unknown, *triples(claimed[2:]), *triples(claimed[2:])]))
    assert isinstance(replies[0], Canceled)
    assert replies[1] == CompleteReply("succeeded", False, False)  # recorded before: a repeat
    assert isinstance(replies[2], NotFound)
    assert replies[3] == CompleteReply("succeeded", True, False)
    assert replies[4] == CompleteReply("succeeded", False, False)  # the same lease twice in one call
    assert field(lua_client, claimed[0].execution_id, "state") == "canceled"
    assert field(lua_client, claimed[1].execution_id, "result") == "1"


def test_more_executions_than_one_call_takes_are_refused_before_anything_is_written(lua_client):
    claimed = leased(lua_client, 1)
    with pytest.raises(ContractError):
        X.complete_many(lua_client.keys, P, triples(claimed) * 101)
    too_many = [v for _ in range(101) for v in triples(claimed)[0]]
    with pytest.raises(BadArguments):
        lua_client.run(FCall("exec_complete_many", (lua_client.keys.leases(P),), too_many))
    with pytest.raises(BadArguments):
        lua_client.run(FCall("exec_complete_many", (lua_client.keys.leases(P),), ("a", "b")))
    assert field(lua_client, claimed[0].execution_id, "state") == "leased"


class Follow:
    def __init__(self) -> None:
        self.scheduled: list[tuple[int, int]] = []
        self.dispatched: list[str] = []

    def schedule(self, partition: int, delay_ms: int) -> None:
        self.scheduled.append((partition, delay_ms))

    def dispatch(self, execution_ids: list[str]) -> None:
        self.dispatched.extend(execution_ids)


def test_the_recorder_records_a_mixed_batch_with_the_successes_of_a_partition_in_one_call(lua_client):
    claimed = leased(lua_client, 5)
    follow, held, stats = Follow(), HeldLeases(), WorkerStats()
    recorder = Recorder(lua_client, held, stats, follow.schedule, follow.dispatch)
    for c in claimed:
        held.add(Held(c, "default", TaskContext(c.execution_id, 1, 0, None)))
    stale = claimed[0]._replace(token=str(int(claimed[0].token) + 1))
    batch = [Outcome(stale, "default", True, result="s"),
             Outcome(claimed[1], "default", False, kind="ValueError", message="bad", retryable=True),
             *[Outcome(c, "default", True, result="ok") for c in claimed[2:]]]
    recorder.record(batch)
    states = [field(lua_client, c.execution_id, "state") for c in claimed]
    assert states == ["leased", "ready", "succeeded", "succeeded", "succeeded"]
    assert (stats.succeeded, stats.retried, stats.failed) == (3, 1, 0)
    assert held.running() == []
    hint = lua_client.keys.hint("default", lua_client.keys.hint_index(P))
    assert run(lua_client, ("LRANGE", hint, 0, -1)) == [str(P)]
    assert [sorted(e) for e in succeeded_entries(lua_client)] == [sorted(c.execution_id for c in claimed[2:])]
