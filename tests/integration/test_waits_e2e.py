"""Waits end to end on a real cluster: a worker runs the steps, the shell delivers the event."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from engine.cli import main
from tests.conftest import TEST_PARTITIONS
from tests.waiting import wait_until

pytestmark = pytest.mark.server

ORDER = {"order_id": "o-17"}


def flowslot(url, namespace, *args):
    result = CliRunner().invoke(main, [*args, "--url", url, "--namespace", namespace,
                                       "--partitions", str(TEST_PARTITIONS)])
    assert result.exit_code == 0, result.output
    return result.output


def order_flow(app):
    flow = app.flow("order", correlate=ORDER)
    placed = flow.step("place", "flow.echo", {"order": "o-17"})
    paid = flow.wait("payment", "payment_received", after=[placed], timeout_s=3600)
    flow.step("receipt", "flow.echo", paid.ref())
    return flow.submit()


def test_an_order_flow_waits_for_its_payment_event_from_the_shell_and_runs_on(cluster, namespace, make_app,
                                                                              spawn_worker):
    app = make_app(cluster.url, namespace)
    spawn_worker(cluster.url, namespace)
    run = order_flow(app)
    wait_until(lambda: run.describe()["steps"][1]["state"] == "waiting", what="the wait to start")
    [blocker] = next(s for s in run.describe()["steps"] if s["step"] == "payment")["blockers"]
    assert blocker.startswith('event payment_received {"order_id":"o-17"}, ') and "times out in" in blocker
    listed = json.loads(flowslot(cluster.url, namespace, "waits", "--json"))
    assert [(w["flow"], w["step"], w["wait_event"]) for w in listed] == [(run.id, "payment", "payment_received")]

    out = flowslot(cluster.url, namespace, "event", "payment_received", "--correlate", "order_id=o-17",
                   "--payload", '{"amount": 42}', "--event-id", "psp-991")
    assert out.startswith("resumed: ")
    assert run.result("receipt", timeout=15) == {"amount": 42}
    assert run.wait(timeout=5).value == "succeeded"
    again = flowslot(cluster.url, namespace, "event", "payment_received", "--correlate", "order_id=o-17",
                     "--payload", '{"amount": 42}', "--event-id", "psp-991")
    assert again.strip() == "duplicate"
    assert json.loads(flowslot(cluster.url, namespace, "waits", "--json")) == []


def test_a_webhook_that_beats_its_flow_is_buffered_and_taken_by_the_wait(cluster, namespace, make_app,
                                                                         spawn_worker):
    app = make_app(cluster.url, namespace)
    assert app.deliver("payment_received", ORDER, {"amount": 7}).outcome == "buffered"
    spawn_worker(cluster.url, namespace)
    run = order_flow(app)
    assert run.result("receipt", timeout=15) == {"amount": 7}


def test_a_caller_whose_clock_is_hours_behind_reads_durations_by_the_servers_clock(
        standalone_server, namespace, make_app, monkeypatch):
    """describe() and ``flowslot waits`` count a live step's time to the server's clock, the one
    its times were written by: a caller's skewed clock changes none of it."""
    import time

    app = make_app(standalone_server.url, namespace)
    flow = app.flow("skewed")
    flow.wait("approve", timeout_s=3600)
    flow.step("work", "flow.echo", 1)
    run = flow.submit()
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() - 3 * 3600)
    steps = {s["step"]: s for s in run.describe()["steps"]}
    assert 0 <= steps["work"]["queued_ms"] < 60_000
    [blocker] = steps["approve"]["blockers"]
    assert blocker.endswith(("times out in 59 min", "times out in 1 h"))
    [row] = json.loads(flowslot(standalone_server.url, namespace, "waits", "--json"))
    assert row["step"] == "approve"
    [line] = [line for line in flowslot(standalone_server.url, namespace, "waits").splitlines()
              if line.startswith(run.id)]
    assert line.rstrip().endswith(("59 min", "1 h"))
