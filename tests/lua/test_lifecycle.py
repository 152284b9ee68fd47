"""Every execution transition, refusal and error reply, against fakeredis and real Valkey.

The same bodies run on both backends (``lua_client`` is parametrized); where
they disagree, the real server is right.
"""

from __future__ import annotations

import time

import pytest

from engine import executions as X
from engine.calls import FCall
from engine.errors import BadArguments, Canceled, InvalidState, NotFound, StaleLease
from engine.handle import Handle
from engine.replies import event_records
from engine.router import Command
from keys import new_id
from tests.conftest import snapshot

P = 3  # the partition these tests use


def submit(client, *, lane="default", priority=0, delay_ms=0, max_attempts=3, backoff_ms=0,
           deadline_in_ms=0, idem=None, eid=None):
    eid = eid or new_id("e", P)
    spec = X.SubmitSpec(eid, "t.task", lane, '{"args":[1],"kwargs":{}}', priority, delay_ms,
                        max_attempts, backoff_ms, backoff_ms * 10, deadline_in_ms, idem)
    return client.run(X.submit(client.keys, spec, P))


def info(client, eid):
    key = client.keys.execution(P, eid)
    return client.run(Command(("HGETALL", key), key))


def claim(client, n=10, lane="default", lease_ms=30_000):
    return client.run(X.claim(client.keys, P, lane, n, lease_ms, "w-test"))


def counts(client):
    key = client.keys.counts(P)
    return {k: int(v) for k, v in client.run(Command(("HGETALL", key), key)).items() if int(v)}


def events(client):
    key = client.keys.events(P)
    entries = client.run(Command(("XRANGE", key, "-", "+"), key))
    return [(f["from"], f["to"]) for _, flat in entries for f in event_records(flat)]


def test_submit_makes_a_ready_execution_and_counts_it(lua_client):
    eid, state, created = submit(lua_client)
    assert (state, created) == ("ready", True)
    assert info(lua_client, eid)["state"] == "ready"
    assert counts(lua_client) == {"default:ready": 1}
    assert events(lua_client) == [("", "ready")]


def test_submit_with_a_delay_is_delayed(lua_client):
    eid, state, _ = submit(lua_client, delay_ms=60_000)
    assert state == "delayed"
    assert claim(lua_client).claimed == []


def test_resubmitting_the_same_id_creates_nothing(lua_client):
    eid, _, _ = submit(lua_client)
    before = snapshot(lua_client)
    assert submit(lua_client, eid=eid) == (eid, "ready", False)
    assert snapshot(lua_client) == before


def test_an_idempotency_key_returns_the_first_execution(lua_client):
    first, _, created = submit(lua_client, idem="order-1")
    second, _, created_again = submit(lua_client, idem="order-1")
    assert created and not created_again and first == second
    assert counts(lua_client) == {"default:ready": 1}


def test_claim_leases_by_priority_then_age_and_reports_what_remains(lua_client):
    # Age has millisecond resolution (ties within one millisecond are in id order).
    low = submit(lua_client, priority=1)[0]
    time.sleep(0.002)
    high = submit(lua_client, priority=9)[0]
    older_low = low
    submit(lua_client, priority=1)
    reply = claim(lua_client, n=2)
    assert [c.execution_id for c in reply.claimed] == [high, older_low]
    assert reply.remaining == 1
    assert all(c.attempt == 1 and c.token == "1" for c in reply.claimed)
    assert info(lua_client, high)["state"] == "leased"
    assert counts(lua_client) == {"default:leased": 2, "default:ready": 1}


def stream_entries(client):
    key = client.keys.events(P)
    return [event_records(flat) for _, flat in client.run(Command(("XRANGE", key, "-", "+"), key))]


def test_a_claim_of_three_writes_one_event_entry_naming_each_transition(lua_client):
    ids = [submit(lua_client)[0] for _ in range(3)]
    before = len(stream_entries(lua_client))
    claim(lua_client, n=3)
    entries = stream_entries(lua_client)
    assert len(entries) == before + 1
    assert sorted((r["id"], r["from"], r["to"], r["detail"]) for r in entries[-1]) == sorted(
        (eid, "ready", "leased", "w-test") for eid in ids)
    assert counts(lua_client) == {"default:leased": 3}


def test_every_lease_of_a_claim_ends_when_the_execution_and_the_lease_index_say(lua_client):
    ids = [submit(lua_client)[0] for _ in range(3)]
    reply = claim(lua_client, n=3, lease_ms=45_000)
    assert sorted(c.execution_id for c in reply.claimed) == sorted(ids)
    leases = lua_client.keys.leases(P)
    for c in reply.claimed:
        assert (c.flow, c.step, c.inputs_paged, dict(c.inputs)) == ("", "", 0, {})
        assert c.lease_expiry_ms == int(info(lua_client, c.execution_id)["lease_expiry_ms"])
        assert c.lease_expiry_ms == int(lua_client.run(Command(("ZSCORE", leases, c.execution_id), leases)))


def test_a_call_with_more_than_200_transitions_splits_its_event_into_entries_of_200(lua_client):
    for _ in range(201):
        submit(lua_client)
    before = len(stream_entries(lua_client))
    assert len(claim(lua_client, n=201).claimed) == 201
    entries = stream_entries(lua_client)[before:]
    assert [len(e) for e in entries] == [200, 1]
    assert {r["to"] for e in entries for r in e} == {"leased"}


def test_a_completion_writes_one_event_entry_and_counts_once(lua_client):
    eid = submit(lua_client)[0]
    token = claim(lua_client).claimed[0].token
    lua_client.run(X.complete(lua_client.keys, eid, token, "1"))
    assert [[(r["id"], r["from"], r["to"]) for r in entry] for entry in stream_entries(lua_client)] == [
        [(eid, "", "ready")], [(eid, "ready", "leased")], [(eid, "leased", "succeeded")]]
    assert counts(lua_client) == {"default:succeeded": 1}


def test_claim_is_per_lane(lua_client):
    submit(lua_client, lane="images")
    assert claim(lua_client, lane="default").claimed == []
    assert len(claim(lua_client, lane="images").claimed) == 1


def test_renew_extends_a_live_lease_and_refuses_a_stale_token(lua_client):
    eid = submit(lua_client)[0]
    token = claim(lua_client).claimed[0].token
    expiry = lua_client.run(X.renew(lua_client.keys, eid, token, 60_000))
    assert expiry > time.time() * 1000 + 50_000
    with pytest.raises(StaleLease):
        lua_client.run(X.renew(lua_client.keys, eid, "7", 60_000))


def test_complete_records_the_result_wakes_waiters_and_is_idempotent(lua_client):
    eid = submit(lua_client)[0]
    assert lua_client.run(X.watch(lua_client.keys, eid)) == "ready"
    token = claim(lua_client).claimed[0].token
    assert lua_client.run(X.complete(lua_client.keys, eid, token, "42")) == ("succeeded", True, False)
    assert lua_client.run(X.complete(lua_client.keys, eid, token, "42")) == ("succeeded", False, False)
    fields = info(lua_client, eid)
    assert (fields["state"], fields["result"]) == ("succeeded", "42")
    done = lua_client.keys.done(P, eid)
    assert lua_client.run(Command(("LLEN", done), done)) == 1
    assert counts(lua_client) == {"default:succeeded": 1}
    assert events(lua_client) == [("", "ready"), ("ready", "leased"), ("leased", "succeeded")]


def test_complete_with_a_stale_token_is_refused_and_writes_nothing(lua_client):
    eid = submit(lua_client)[0]
    claim(lua_client)
    before = snapshot(lua_client)
    with pytest.raises(StaleLease):
        lua_client.run(X.complete(lua_client.keys, eid, "99", "1"))
    assert snapshot(lua_client) == before


def test_a_retryable_failure_backs_off_into_delayed(lua_client):
    eid = submit(lua_client, backoff_ms=10_000)[0]
    token = claim(lua_client).claimed[0].token
    state, first, delay_ms, _ = lua_client.run(X.fail(lua_client.keys, eid, token, "IOError", "x", True, 0.5))
    assert (state, first) == ("delayed", True) and 5_000 <= delay_ms <= 10_000
    fields = info(lua_client, eid)
    delay = int(fields["due_ms"]) - int(fields["started_ms"])
    assert 5_000 <= delay <= 10_000  # half the back-off plus jitter
    assert fields["error_kind"] == "IOError"


def test_a_retry_without_back_off_is_ready_at_once(lua_client):
    eid = submit(lua_client, backoff_ms=0)[0]
    token = claim(lua_client).claimed[0].token
    assert lua_client.run(X.fail(lua_client.keys, eid, token, "E", "x", True, 0.0))[0] == "ready"
    again = claim(lua_client).claimed[0]
    assert (again.execution_id, again.attempt, again.token) == (eid, 2, "2")


def test_the_last_attempt_fails_for_good(lua_client):
    eid = submit(lua_client, max_attempts=1)[0]
    token = claim(lua_client).claimed[0].token
    assert lua_client.run(X.fail(lua_client.keys, eid, token, "E", "x", True, 0.0)) == ("failed", True, 0, False)
    assert counts(lua_client) == {"default:failed": 1}


def test_a_non_retryable_failure_fails_for_good(lua_client):
    eid = submit(lua_client, max_attempts=5)[0]
    token = claim(lua_client).claimed[0].token
    assert lua_client.run(X.fail(lua_client.keys, eid, token, "E", "x", False, 0.0))[0] == "failed"


def test_cancel_removes_a_ready_execution_from_its_ready_set(lua_client):
    eid = submit(lua_client)[0]
    assert lua_client.run(X.cancel(lua_client.keys, eid)) == ("ready", "default", False)
    assert claim(lua_client).claimed == []
    assert lua_client.run(X.cancel(lua_client.keys, eid))[0] == "canceled"  # idempotent


def test_cancel_of_a_leased_execution_refuses_its_late_result(lua_client):
    eid = submit(lua_client)[0]
    token = claim(lua_client).claimed[0].token
    lua_client.run(X.cancel(lua_client.keys, eid))
    with pytest.raises(Canceled):
        lua_client.run(X.renew(lua_client.keys, eid, token, 1000))
    with pytest.raises(Canceled):
        lua_client.run(X.complete(lua_client.keys, eid, token, "1"))
    assert info(lua_client, eid)["state"] == "canceled"


def test_cancel_of_a_finished_execution_is_refused(lua_client):
    eid = submit(lua_client)[0]
    token = claim(lua_client).claimed[0].token
    lua_client.run(X.complete(lua_client.keys, eid, token, "1"))
    with pytest.raises(InvalidState, match="succeeded, cannot become canceled"):
        lua_client.run(X.cancel(lua_client.keys, eid))


def test_cancel_of_an_unknown_execution_is_not_found(lua_client):
    with pytest.raises(NotFound):
        lua_client.run(X.cancel(lua_client.keys, new_id("e", P)))


def test_canceling_or_retrying_an_unknown_execution_says_no_execution_and_its_id(lua_client):
    eid = new_id("e", P)
    for act in (lambda h: h.cancel(), lambda h: h.retry()):
        with pytest.raises(NotFound) as refused:
            act(Handle(lua_client, eid, created=False))
        assert str(refused.value) == f"no execution {eid}"


def test_promote_moves_due_delayed_executions_to_ready(lua_client):
    eid = submit(lua_client, delay_ms=1)[0]
    time.sleep(0.01)
    assert lua_client.run(X.promote(lua_client.keys, P, 10)) == (1, ["default"])
    assert claim(lua_client).claimed[0].execution_id == eid


def test_promote_with_a_minimum_lateness_leaves_work_that_came_due_more_recently(lua_client):
    """The reconciler's pass (min_late_ms > 0) takes only what the workers' promotion missed."""
    late, recent = submit(lua_client, delay_ms=1)[0], submit(lua_client, delay_ms=1)[0]
    delayed = lua_client.keys.delayed(P)
    now_ms = int(time.time() * 1000)
    lua_client.run(Command(("ZADD", delayed, now_ms - 60_000, late), delayed))  # due a minute ago
    lua_client.run(Command(("ZADD", delayed, now_ms - 50, recent), delayed))  # due just now
    assert lua_client.run(X.promote(lua_client.keys, P, 10, 30_000)) == (1, ["default"])
    assert (info(lua_client, late)["state"], info(lua_client, recent)["state"]) == ("ready", "delayed")
    assert lua_client.run(X.promote(lua_client.keys, P, 10)) == (1, ["default"])
    assert info(lua_client, recent)["state"] == "ready"


def test_promote_called_without_a_minimum_lateness_promotes_every_due_one(lua_client):
    """As a worker from before min_late_ms calls it during an upgrade."""
    eid = submit(lua_client, delay_ms=1)[0]
    time.sleep(0.01)
    old_call = FCall("exec_promote", (lua_client.keys.delayed(P),), (10,))
    assert lua_client.run(old_call) == [1, ["default"]]
    assert info(lua_client, eid)["state"] == "ready"


def test_promote_refuses_a_negative_minimum_lateness_and_changes_nothing(lua_client):
    eid = submit(lua_client, delay_ms=1)[0]
    time.sleep(0.01)
    before = snapshot(lua_client)
    with pytest.raises(BadArguments, match="min_late_ms"):
        lua_client.run(X.promote(lua_client.keys, P, 10, -1))
    assert snapshot(lua_client) == before
    assert info(lua_client, eid)["state"] == "delayed"


def test_expired_leases_are_retried_or_failed(lua_client):
    retried = submit(lua_client, max_attempts=2)[0]
    claim(lua_client, lease_ms=100)
    time.sleep(0.15)
    assert lua_client.run(X.expire_leases(lua_client.keys, P, 10, 0.0)) == [(retried, "ready", "default", False)]
    claim(lua_client, lease_ms=100)
    time.sleep(0.15)
    assert lua_client.run(X.expire_leases(lua_client.keys, P, 10, 0.0)) == [(retried, "failed", "default", False)]
    assert info(lua_client, retried)["error_kind"] == "lease_lost"


def test_a_deadline_passed_while_ready_expires_at_claim(lua_client):
    eid = submit(lua_client, deadline_in_ms=1)[0]
    time.sleep(0.01)
    reply = claim(lua_client)
    assert (reply.claimed, reply.expired) == ([], [eid])
    assert info(lua_client, eid)["state"] == "expired"


def test_a_claim_that_alternates_leasing_and_expiring_counts_and_records_each_kind(lua_client):
    """Leases (move() with the claim's memo of counter slots) and expiries (without) interleave."""
    kinds = ["leased", "expired", "expired", "leased", "leased", "expired", "leased"]
    ids = []
    for kind in kinds:
        ids.append(submit(lua_client, deadline_in_ms=1 if kind == "expired" else 0)[0])
        time.sleep(0.002)  # claims take them in this order (by age)
    submit(lua_client, lane="other")
    time.sleep(0.01)
    reply = claim(lua_client)
    assert [c.execution_id for c in reply.claimed] == [i for i, k in zip(ids, kinds, strict=True) if k == "leased"]
    assert reply.expired == [i for i, k in zip(ids, kinds, strict=True) if k == "expired"]
    assert counts(lua_client) == {"default:leased": 4, "default:expired": 3, "other:ready": 1}
    assert [(r["id"], r["to"]) for r in stream_entries(lua_client)[-1]] == list(zip(ids, kinds, strict=True))
    claim(lua_client, lane="other")  # the next call starts its counters afresh
    assert counts(lua_client) == {"default:leased": 4, "default:expired": 3, "other:leased": 1}


def test_release_hands_the_execution_back_without_counting_the_attempt(lua_client):
    eid = submit(lua_client)[0]
    token = claim(lua_client).claimed[0].token
    assert lua_client.run(X.release(lua_client.keys, eid, token)) == "default"
    again = claim(lua_client).claimed[0]
    assert again.attempt == 1 and again.token == "2"


@pytest.mark.parametrize("call", [
    lambda ks: X.claim(ks, P, "default", 0, 1000, "w"),
    lambda ks: X.claim(ks, P, "default", 5, 1, "w"),
    lambda ks: X.promote(ks, P, 100_000),
    lambda ks: X.expire_leases(ks, P, 10, 2.0),
    lambda ks: FCall("exec_claim", (ks.delayed(P),), (5, 1000, "w")),  # not a ready set: no lane
    lambda ks: FCall("exec_claim", (ks.ready(P, ""),), (5, 1000, "w")),
])
def test_bad_arguments_are_refused_before_any_write(lua_client, call):
    submit(lua_client)
    before = snapshot(lua_client)
    with pytest.raises(BadArguments):
        lua_client.run(call(lua_client.keys))
    assert snapshot(lua_client) == before


def test_submit_with_bad_numbers_is_refused_and_writes_nothing(lua_client):
    before = snapshot(lua_client)
    spec = X.SubmitSpec(new_id("e", P), "t", "default", "{}", priority=999)
    with pytest.raises(BadArguments, match="priority"):
        lua_client.run(X.submit(lua_client.keys, spec, P))
    assert snapshot(lua_client) == before


def test_submit_stores_no_default_attempts_epoch_or_deadline_and_info_reads_them_as_zero(lua_client):
    eid, _, _ = submit(lua_client)
    stored = info(lua_client, eid)
    assert not {"attempts", "epoch", "deadline_ms"} & set(stored)
    shown = Handle(lua_client, eid, created=False).info()
    assert (shown["attempts"], shown["epoch"], shown["deadline_ms"]) == ("0", "0", "0")
    with pytest.raises(StaleLease, match="is not the current lease 0"):
        lua_client.run(X.complete(lua_client.keys, eid, "5", "x"))
    (c,) = claim(lua_client).claimed
    assert (c.attempt, c.token, c.deadline_ms) == (1, "1", 0)


def test_an_execution_nobody_watches_finishes_without_a_done_list(lua_client):
    eid = submit(lua_client)[0]
    token = claim(lua_client).claimed[0].token
    lua_client.run(X.complete(lua_client.keys, eid, token, "42"))
    done = lua_client.keys.done(P, eid)
    assert lua_client.run(Command(("EXISTS", done), done)) == 0


def test_watch_marks_a_live_execution_and_leaves_a_terminal_one_untouched(lua_client):
    eid = submit(lua_client)[0]
    assert lua_client.run(X.watch(lua_client.keys, eid)) == "ready"
    assert info(lua_client, eid)["watched"] == "1"
    token = claim(lua_client).claimed[0].token
    assert lua_client.run(X.watch(lua_client.keys, eid)) == "leased"
    lua_client.run(X.fail(lua_client.keys, eid, token, "boom", "no", False, 0.5))
    done = lua_client.keys.done(P, eid)
    assert lua_client.run(Command(("LRANGE", done, 0, -1), done)) == ["1"]
    other = submit(lua_client)[0]
    token = claim(lua_client).claimed[0].token
    lua_client.run(X.complete(lua_client.keys, other, token, "1"))
    before = snapshot(lua_client)
    assert lua_client.run(X.watch(lua_client.keys, other)) == "succeeded"
    assert snapshot(lua_client) == before


def test_watch_of_an_unknown_execution_is_refused(lua_client):
    with pytest.raises(NotFound):
        lua_client.run(X.watch(lua_client.keys, new_id("e", P)))


def test_an_event_records_each_transition_in_one_field_and_reads_back_a_detail_with_spaces(lua_client):
    eid = submit(lua_client)[0]
    lua_client.run(X.cancel(lua_client.keys, eid, "stopped by an operator"))
    key = lua_client.keys.events(P)
    entries = lua_client.run(Command(("XRANGE", key, "-", "+"), key))
    assert [flat for _, flat in entries] == [["e", f"{eid}  ready  "],
                                             ["e", f"{eid} ready canceled  stopped by an operator"]]
    assert stream_entries(lua_client)[-1] == [{"id": eid, "from": "ready", "to": "canceled",
                                               "detail": "stopped by an operator"}]


def test_an_id_with_a_space_is_recorded_in_the_long_form(lua_client):
    spaced = "e_0000 with space"
    lua_client.run(X.submit(lua_client.keys, X.SubmitSpec(spaced, "t", "default", "{}"), P))
    key = lua_client.keys.events(P)
    _, flat = lua_client.run(Command(("XRANGE", key, "-", "+"), key))[-1]
    assert flat == ["id", spaced, "from", "", "to", "ready"]
    assert stream_entries(lua_client)[-1] == [{"id": spaced, "from": "", "to": "ready"}]


def test_a_flow_id_with_a_space_is_recorded_in_the_long_form_after_a_plain_flow(lua_client):
    """note_event keeps the flow ids it found free of spaces; one with a space is never taken for one."""
    import json

    from engine.calls import FCall

    ks = lua_client.keys
    for fid, eid in (("f_0003_plain", "e_0003_one"), ("f_0003 spaced", "e_0003_two")):
        spec = {"step": "s", "id": eid, "task": "t", "lane": "default", "payload": "{}", "edges": []}
        lua_client.run(FCall("flow_submit", (ks.flow(P, fid),), (fid, "f", "{}", json.dumps([spec]), 1, "")))
    key = ks.events(P)
    fields = [field for _, flat in lua_client.run(Command(("XRANGE", key, "-", "+"), key)) for field in flat]
    assert "e_0003_one  blocked f_0003_plain " in fields  # the short form
    assert not [f for f in fields if f.startswith("e_0003_two ")]
    assert fields.count("e_0003_two") == 2  # the long form: ``id, e_0003_two, ...`` per transition
    records = [r for entry in stream_entries(lua_client) for r in entry if r.get("id") == "e_0003_two"]
    assert [(r["from"], r["to"], r["flow"]) for r in records] == [("", "blocked", "f_0003 spaced"),
                                                                    ("blocked", "ready", "f_0003 spaced")]
