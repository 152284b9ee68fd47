"""Remote waits on a real 3-primary cluster: a flow waits on an event whose correlation lives
in a partition another primary serves; the registration, the delivery and the unregistration
cross partitions through the outbox."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from engine import events
from engine.replies import event_records
from engine.router import Command
from keys import key_slot, partition_of_key
from reconciler import DeadlineExpiry, OutboxScanner
from tests.conftest import TEST_PARTITIONS
from tests.waiting import wait_until

pytestmark = pytest.mark.server

ORDER = {"order_id": "o-17"}


def partition(corr):
    return partition_of_key(events.correlation(corr).canonical, TEST_PARTITIONS)


def ship_on_another_node(app, but=None):
    """A shipment correlation (not ``but``) whose partition another primary serves than the order's."""
    node = app.client.router.node_for_slot
    order_node = node(key_slot(app.client.keys.prefix(partition(ORDER)).encode()))
    return next(c for c in ({"shipment": f"s-{i}"} for i in range(200))
                if c != but and node(key_slot(app.client.keys.prefix(partition(c)).encode())) != order_node)


def order_flow(app, ship, timeout_s=None, on_timeout="expire"):
    flow = app.flow("order", correlate=ORDER)
    placed = flow.step("place", "flow.echo", "o-17")
    paid = flow.wait("payment", "payment_received", after=[placed])
    shipped = flow.wait("shipped", "shipped", ship, after=[placed], timeout_s=timeout_s, on_timeout=on_timeout)
    flow.step("deliver", "flow.echo", {"paid": paid.ref(), "shipped": shipped.ref()})
    flow.step("notify", "flow.echo", shipped.ref_or_default("no shipment"))
    return flow.submit()


def step_state(run, step):
    return next(s["state"] for s in run.describe()["steps"] if s["step"] == step)


def members(app, ship):
    key = app.client.keys.waits(partition(ship), events.correlation(ship).wait_key("shipped"))
    return app.client.run(Command(("SMEMBERS", key), key))


def test_a_flow_waiting_on_two_correlations_is_resumed_by_both_events_and_its_child_gets_both(
        cluster, namespace, make_app, spawn_worker):
    app = make_app(cluster.url, namespace)
    ship = ship_on_another_node(app)
    spawn_worker(cluster.url, namespace)
    run = order_flow(app, ship)
    wait_until(lambda: step_state(run, "shipped") == "waiting" and members(app, ship), what="the remote wait")
    assert app.deliver("payment_received", ORDER, {"amount": 42}).outcome == "resumed"
    shipped = app.deliver("shipped", ship, {"carrier": "ups"})
    assert shipped.outcome == "resumed" and shipped.resumed == [run.step_execution("shipped")]
    assert run.result("deliver", timeout=15) == {"paid": {"amount": 42}, "shipped": {"carrier": "ups"}}
    assert run.wait(timeout=10).value == "succeeded"
    assert members(app, ship) == []


def test_an_early_event_on_the_other_node_is_taken_when_the_remote_wait_registers(cluster, namespace, make_app,
                                                                                spawn_worker):
    app = make_app(cluster.url, namespace)
    ship = ship_on_another_node(app)
    assert app.deliver("shipped", ship, {"early": True}).outcome == "buffered"
    spawn_worker(cluster.url, namespace)
    run = order_flow(app, ship)
    assert run.result("notify", timeout=15) == {"early": True}
    assert step_state(run, "payment") == "waiting" and members(app, ship) == []


DELIVER_THEN_DIE = """
import sys, time
from engine import events, outbox
from engine.client import Client

def killed_here(*args, **kwargs):
    print("recorded", flush=True)
    time.sleep(60)

outbox.apply = killed_here          # the process dies between event_deliver and applying its messages
client = Client(sys.argv[1], namespace=sys.argv[2], partitions=int(sys.argv[3]))
events.deliver(client, "shipped", {"shipment": sys.argv[4]}, {"carrier": "dhl"}, event_id="psp-1")
"""


def test_a_deliverer_killed_between_record_and_apply_leaves_the_delivery_to_the_scanner_exactly_once(
        cluster, namespace, make_app, spawn_worker):
    app = make_app(cluster.url, namespace)
    ship = ship_on_another_node(app)
    worker = spawn_worker(cluster.url, namespace)
    run = order_flow(app, ship)
    wait_until(lambda: members(app, ship), what="the remote wait to register")
    worker.kill()                                                   # no worker pass: only the scanner applies
    proc = subprocess.Popen([sys.executable, "-c", DELIVER_THEN_DIE, cluster.url, namespace, str(TEST_PARTITIONS),
                             ship["shipment"]], stdout=subprocess.PIPE, text=True, cwd=os.getcwd())
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "recorded"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        proc.stdout.close()
    assert step_state(run, "shipped") == "waiting" and members(app, ship) == []
    scanner = OutboxScanner(age_s=0)
    assert scanner.run(app.client, range(TEST_PARTITIONS)).repaired == 1
    assert scanner.run(app.client, range(TEST_PARTITIONS)).repaired == 0
    assert step_state(run, "shipped") == "succeeded"
    assert app.deliver("shipped", ship, {"carrier": "dhl"}, event_id="psp-1").outcome == "duplicate"
    spawn_worker(cluster.url, namespace)
    assert run.result("notify", timeout=15) == {"carrier": "dhl"}
    transitions = app.client.keys.events(run.partition)
    entries = app.client.run(Command(("XRANGE", transitions, "-", "+"), transitions))
    fields = [f for _, flat in entries for f in event_records(flat)]  # every transition of each call
    assert sum(f.get("id") == run.step_execution("shipped") and f.get("to") == "succeeded" for f in fields) == 1


def test_canceled_and_timed_out_remote_waits_leave_no_registration_and_a_later_event_is_buffered(
        cluster, namespace, make_app, spawn_worker):
    app = make_app(cluster.url, namespace)
    ship = ship_on_another_node(app)
    spawn_worker(cluster.url, namespace)
    canceled = order_flow(app, ship)
    wait_until(lambda: members(app, ship), what="the remote wait to register")
    canceled.cancel()
    assert members(app, ship) == []
    assert app.deliver("shipped", ship, 1).outcome == "buffered"
    assert step_state(canceled, "shipped") == "canceled"

    other = ship_on_another_node(app, but=ship)
    timed_out = order_flow(app, other, timeout_s=1)
    wait_until(lambda: members(app, other), what="the remote wait to register")
    wait_until(lambda: DeadlineExpiry().run(app.client, [timed_out.partition]).repaired, what="the timeout")
    assert step_state(timed_out, "shipped") == "expired" and members(app, other) == []
    assert timed_out.result("notify", timeout=15) == "no shipment"
    assert app.deliver("shipped", other, 2).outcome == "buffered"


def test_a_retried_remote_wait_registers_again_and_an_old_delivery_cannot_wake_it(cluster, namespace, make_app,
                                                                               spawn_worker):
    app = make_app(cluster.url, namespace)
    ship = ship_on_another_node(app)
    spawn_worker(cluster.url, namespace)
    run = order_flow(app, ship, timeout_s=1, on_timeout="fail")
    eid = run.step_execution("shipped")
    wait_until(lambda: members(app, ship), what="the remote wait to register")
    wait_until(lambda: DeadlineExpiry().run(app.client, [run.partition]).repaired, what="the timeout")
    app.deliver("payment_received", ORDER, 1)
    assert run.wait(timeout=15).value == "failed"
    run.retry()
    assert members(app, ship) == [f"{eid}#2@{run.partition}"]
    old = app.client.run(events.wait_resume_call(app.client.keys, run.partition, "replayed-old-delivery",
                                                 {"id": eid, "gen": 1, "payload": "0"}))
    assert old.outcome == "stale" and step_state(run, "shipped") == "waiting"
    assert app.deliver("shipped", ship, {"n": 2}).resumed == [eid]
    assert run.result("deliver", timeout=15) == {"paid": 1, "shipped": {"n": 2}}


def test_a_workers_promotion_pass_applies_a_delivery_nobody_flushed_without_a_daemon(cluster, namespace, make_app,
                                                                                   spawn_worker):
    app = make_app(cluster.url, namespace)
    ship = ship_on_another_node(app)
    spawn_worker(cluster.url, namespace)
    run = order_flow(app, ship)
    wait_until(lambda: members(app, ship), what="the remote wait to register")
    recorded = app.client.run(events.deliver_call(app.client.keys, "shipped", events.correlation(ship),
                                                  '{"by": "worker pass"}', "ev-9", 60_000))
    assert [i for _, i in recorded.sent] == [run.step_execution("shipped")]   # recorded, never flushed here
    assert run.result("notify", timeout=15) == {"by": "worker pass"}           # no daemon runs in this test
