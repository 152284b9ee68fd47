"""Waits on another correlation than their flow's (remote waits), through the outbox; on
fakeredis and real Valkey. Steps are driven by hand; scanners are called directly."""

from __future__ import annotations

import pytest

from engine import events, outbox
from engine.calls import FCall
from engine.dispatcher import dispatch
from engine.router import Command
from keys import partition_of_key
from reconciler.scanners import DeadlineExpiry, OutboxScanner
from tests.conftest import TEST_PARTITIONS
from tests.lua.test_flows import app, finish, inputs, state  # noqa: F401 - the app fixture

ORDER = {"order_id": "o-17"}
ORDER_PARTITION = partition_of_key(events.correlation(ORDER).canonical, TEST_PARTITIONS)
# a shipment correlation that lives in another partition than the order's
SHIP = next(c for c in ({"shipment": f"s-{i}"} for i in range(100))
            if partition_of_key(events.correlation(c).canonical, TEST_PARTITIONS) != ORDER_PARTITION)
SHIP_PARTITION = partition_of_key(events.correlation(SHIP).canonical, TEST_PARTITIONS)


def order_flow(app, timeout_s=None, on_timeout="expire", after_place=True):
    """place → payment (local wait) and shipped (remote wait) → deliver(both payloads)."""
    flow = app.flow("order", correlate=ORDER)
    place = flow.step("place", "t.a")
    after = [place] if after_place else []
    paid = flow.wait("payment", "payment_received", after=after)
    shipped = flow.wait("shipped", "shipped", SHIP, after=after, timeout_s=timeout_s, on_timeout=on_timeout)
    flow.step("deliver", "t.b", paid.ref(), shipped.ref())
    flow.step("notify", "t.c", shipped.ref_or_default("no shipment"))
    return flow.submit()


def members(app, partition=SHIP_PARTITION):
    key = app.client.keys.waits(partition, events.correlation(SHIP).wait_key("shipped"))
    return sorted(app.client.run(Command(("SMEMBERS", key), key)))


def outbox_of(app, partition):
    key = app.client.keys.outbox(partition)
    return app.client.run(Command(("ZRANGE", key, 0, -1), key))


def succeeded_events(app, run, step):
    key = app.client.keys.events(run.partition)
    eid = run.step_execution(step)
    entries = [f if isinstance(f, dict) else dict(zip(f[::2], f[1::2], strict=True))
               for _, f in app.client.run(Command(("XRANGE", key, "-", "+"), key))]
    return sum(1 for f in entries if f.get("id") == eid and f.get("to") == "succeeded")


def test_a_wait_on_another_correlation_lives_in_its_flows_partition_and_registers_in_the_other(app):
    run = order_flow(app)
    assert run.partition == ORDER_PARTITION != SHIP_PARTITION
    assert state(run, "shipped") == "blocked" and members(app) == []
    finish(app, run, "place", "succeeded")
    assert state(run, "shipped") == "waiting" and state(run, "payment") == "waiting"
    eid = run.step_execution("shipped")
    assert members(app) == [f"{eid}#1@{ORDER_PARTITION}"]          # registered at once by the dispatcher
    assert outbox_of(app, ORDER_PARTITION) == []


def test_both_waits_are_resumed_by_their_events_and_the_child_gets_both_payloads(app):
    run = order_flow(app)
    finish(app, run, "place", "succeeded")
    assert app.deliver("payment_received", ORDER, {"amount": 42}).resumed == [run.step_execution("payment")]
    shipped = app.deliver("shipped", SHIP, {"carrier": "ups"}, event_id="ship-1")
    assert shipped == events.Delivery("resumed", [run.step_execution("shipped")], [])
    assert state(run, "shipped") == "succeeded"
    assert state(run, "deliver") == "ready" and state(run, "notify") == "ready"
    assert inputs(run, "deliver") == {"payment": {"amount": 42}, "shipped": {"carrier": "ups"}}
    assert members(app) == [] and outbox_of(app, SHIP_PARTITION) == []
    assert app.deliver("shipped", SHIP, {"carrier": "ups"}, event_id="ship-1").outcome == "duplicate"


def test_an_early_event_is_buffered_in_the_correlations_partition_and_taken_at_registration(app):
    assert app.deliver("shipped", SHIP, {"early": True}).outcome == "buffered"
    run = order_flow(app, after_place=False)                       # the waits start with the submit
    assert state(run, "shipped") == "succeeded"
    assert inputs(run, "notify") == {"shipped": {"early": True}}
    assert members(app) == [] and outbox_of(app, ORDER_PARTITION) == outbox_of(app, SHIP_PARTITION) == []


def test_a_delivery_whose_flush_never_ran_is_finished_by_the_outbox_scanner_exactly_once(app):
    run = order_flow(app)
    finish(app, run, "place", "succeeded")
    corr = events.correlation(SHIP)
    recorded = app.client.run(events.deliver_call(app.client.keys, "shipped", corr, '{"n": 1}', "ev-1", 60_000))
    assert recorded.outcome == "resumed" and [i for _, i in recorded.sent] == [run.step_execution("shipped")]
    assert state(run, "shipped") == "waiting" and members(app) == []       # recorded, not applied
    assert OutboxScanner().run(app.client, range(TEST_PARTITIONS)).repaired == 0   # not 30 s old yet
    assert OutboxScanner(age_s=0).run(app.client, range(TEST_PARTITIONS)).repaired == 1
    assert state(run, "shipped") == "succeeded" and state(run, "notify") == "ready"  # children dispatched
    assert OutboxScanner(age_s=0).run(app.client, range(TEST_PARTITIONS)).repaired == 0
    [(msg_id, _)] = recorded.sent
    again = app.client.run(events.wait_resume_call(app.client.keys, ORDER_PARTITION, msg_id,
                                                   {"id": run.step_execution("shipped"), "gen": 1,
                                                    "payload": '{"n": 2}'}))
    assert again.outcome == "duplicate"
    assert succeeded_events(app, run, "shipped") == 1 and inputs(run, "notify") == {"shipped": {"n": 1}}
    assert app.deliver("shipped", SHIP, {"n": 1}, event_id="ev-1").outcome == "duplicate"


def test_canceling_a_flow_unregisters_its_remote_wait_and_a_later_event_is_buffered(app):
    run = order_flow(app)
    finish(app, run, "place", "succeeded")
    assert len(members(app)) == 1
    run.cancel()
    assert state(run, "shipped") == "canceled" and members(app) == []
    assert app.deliver("shipped", SHIP, 1).outcome == "buffered"
    assert state(run, "shipped") == "canceled"


def test_a_remote_wait_that_times_out_is_unregistered_and_a_later_event_is_buffered(app):
    run = order_flow(app, timeout_s=60)
    finish(app, run, "place", "succeeded")
    _time_out(app, run)
    assert state(run, "shipped") == "expired" and members(app) == []
    assert app.deliver("shipped", SHIP, 1).outcome == "buffered"
    assert inputs(run, "notify") == {"shipped": "no shipment"}


def test_a_signal_to_a_remote_wait_resumes_it_and_unregisters_it(app):
    run = order_flow(app)
    finish(app, run, "place", "succeeded")
    app.signal(run.token("shipped"), {"by": "hand"})
    assert state(run, "shipped") == "succeeded"
    assert len(members(app)) == 1                                   # unregistration recorded, not yet applied
    assert len(outbox.flush(app.client, ORDER_PARTITION).applied) == 1
    assert members(app) == []


def test_a_retried_remote_wait_waits_again_and_an_old_delivery_cannot_wake_it(app):
    run = order_flow(app, timeout_s=60, on_timeout="fail")
    finish(app, run, "place", "succeeded")
    eid = run.step_execution("shipped")
    # The wait times out; its unregistration stays unapplied, so the old registration (gen 1) remains.
    ks = app.client.keys
    app.client.run(Command(("ZADD", ks.deadlines(run.partition), 1, eid), ks.deadlines(run.partition)))
    app.client.run(FCall("exec_expire_deadlines", (ks.deadlines(run.partition),), (10,)))
    dispatch(app.client, [eid])
    assert state(run, "shipped") == "failed" and members(app) == [f"{eid}#1@{ORDER_PARTITION}"]
    app.deliver("payment_received", ORDER, 1)
    finish(app, run, "notify", "succeeded")
    assert run.status()["state"] == "failed"
    run.retry()                                                     # flushes: unregister gen 1, register gen 2
    assert state(run, "shipped") == "waiting" and members(app) == [f"{eid}#2@{ORDER_PARTITION}"]
    stale = app.client.run(events.wait_resume_call(ks, ORDER_PARTITION, "old-delivery",
                                                   {"id": eid, "gen": 1, "payload": "1"}))
    assert stale.outcome == "stale" and state(run, "shipped") == "waiting"
    assert app.deliver("shipped", SHIP, 2).resumed == [eid]
    assert inputs(run, "deliver") == {"payment": 1, "shipped": 2}


def test_a_registration_applied_twice_registers_once_and_takes_no_second_event(app):
    app.deliver("shipped", SHIP, "a")
    app.deliver("shipped", SHIP, "b")
    ks = app.client.keys
    body = {"key": events.correlation(SHIP).wait_key("shipped"), "id": "e_x", "gen": 1, "back": ORDER_PARTITION}
    first = app.client.run(events.wait_register_call(ks, SHIP_PARTITION, "m-1", body))
    again = app.client.run(events.wait_register_call(ks, SHIP_PARTITION, "m-1", body))
    assert (first.outcome, again.outcome) == ("taken", "duplicate")
    buffer = ks.event_buffer(SHIP_PARTITION, body["key"])
    assert app.client.run(Command(("LRANGE", buffer, 0, -1), buffer)) == ['"b"']


def _time_out(app, run):
    ks = app.client.keys
    deadlines = ks.deadlines(run.partition)
    app.client.run(Command(("ZADD", deadlines, 1, run.step_execution("shipped")), deadlines))
    assert DeadlineExpiry().run(app.client, [run.partition]).repaired == 1


@pytest.mark.parametrize("wait", [{"home": 3}, {"home": 3, "here": 3}, {"home": -1, "here": 2}])
def test_a_malformed_remote_wait_spec_is_refused(app, wait):
    import json

    from engine import flowcalls
    from engine.errors import BadArguments
    from keys import new_id

    spec = events.wait_spec("shipped", events.correlation(SHIP), None, "expire")
    step = {"step": "w", "id": new_id("e", 2), "task": "flowslot.wait", "lane": "default", "payload": "{}",
            "priority": 0, "max_attempts": 1, "backoff_ms": 0, "backoff_max_ms": 0, "deadline_in_ms": 0,
            "optional": False, "policy": "all", "quorum": 0, "edges": [], "wait": {**spec, **wait}}
    with pytest.raises(BadArguments):
        app.client.run(flowcalls.submit(app.client.keys, new_id("f", 2), "f", "{}", json.dumps([step]), True))


def test_an_event_that_only_an_ended_waits_registration_took_comes_back_and_is_buffered(app):
    run = order_flow(app, timeout_s=60)
    finish(app, run, "place", "succeeded")
    eid = run.step_execution("shipped")
    ks = app.client.keys
    # The wait times out and its unregistration is not applied yet: its registration still takes the event.
    app.client.run(Command(("ZADD", ks.deadlines(run.partition), 1, eid), ks.deadlines(run.partition)))
    app.client.run(FCall("exec_expire_deadlines", (ks.deadlines(run.partition),), (10,)))
    assert members(app) == [f"{eid}#1@{ORDER_PARTITION}"]
    delivery = app.deliver("shipped", SHIP, {"late": True})
    assert delivery == events.Delivery("forwarded", [], [])
    assert state(run, "shipped") == "expired"
    buffer = ks.event_buffer(SHIP_PARTITION, events.correlation(SHIP).wait_key("shipped"))
    assert app.client.run(Command(("LRANGE", buffer, 0, -1), buffer)) == ['{"late":true}']
    later = order_flow(app, after_place=False)                      # a later wait of the correlation takes it
    assert state(later, "shipped") == "succeeded" and inputs(later, "notify") == {"shipped": {"late": True}}
    assert outbox_of(app, ORDER_PARTITION) == outbox_of(app, SHIP_PARTITION) == []


def test_a_resume_message_for_another_event_name_does_not_resume_the_wait(app):
    run = order_flow(app)
    finish(app, run, "place", "succeeded")
    eid = run.step_execution("shipped")
    other = app.client.run(events.wait_resume_call(app.client.keys, ORDER_PARTITION, "m-other",
                                                   {"id": eid, "gen": 1, "payload": "1", "event": "returned"}))
    assert other.outcome == "stale" and state(run, "shipped") == "waiting"
