"""Wait steps and events by correlation (issue 10, first part), on fakeredis and real Valkey.

Steps are driven by hand through the Lua functions; the deadline scanner is
called directly for timeouts.
"""

from __future__ import annotations

import json
import re

import pytest

from engine import ContractError
from engine import executions as X
from engine.router import Command
from reconciler.scanners import DeadlineExpiry
from tests.conftest import snapshot
from tests.lua.test_flows import app, claim_step, finish, inputs, state  # noqa: F401 - the app fixture

ORDER = {"order_id": "o-17"}


def order_flow(app, timeout_s=None, on_timeout="expire"):
    flow = app.flow("order", correlate=ORDER)
    place = flow.step("place", "t.a")
    paid = flow.wait("payment", "payment_received", after=[place], timeout_s=timeout_s,
                     on_timeout=on_timeout)
    flow.step("ship", "t.b", paid.ref())
    flow.step("refund", "t.c", paid.ref_or_default("no payment"))
    return flow.submit()


def test_a_wait_waits_once_its_edges_are_met_and_an_event_resumes_it_with_its_payload(app):
    run = order_flow(app)
    assert state(run, "payment") == "blocked"
    finish(app, run, "place", "succeeded")
    assert state(run, "payment") == "waiting"
    delivery = app.deliver("payment_received", {"order_id": "o-17"}, {"amount": 42})
    assert delivery.outcome == "resumed" and delivery.resumed == [run.step_execution("payment")]
    assert state(run, "payment") == "succeeded"
    assert state(run, "ship") == "ready" and inputs(run, "ship") == {"payment": {"amount": 42}}
    assert run.result("payment", timeout=1) == {"amount": 42}


def test_an_event_for_another_correlation_or_name_does_not_resume_the_wait(app):
    run = order_flow(app)
    finish(app, run, "place", "succeeded")
    assert app.deliver("payment_received", {"order_id": "o-18"}, 1).outcome == "buffered"
    assert app.deliver("payment_refused", ORDER, 1).outcome == "buffered"
    assert app.deliver("payment_received", {"order_id": "o-17", "x": "y"}, 1).outcome == "buffered"
    assert state(run, "payment") == "waiting"


def test_an_event_that_comes_before_its_wait_is_buffered_and_taken_when_the_wait_starts(app):
    run = order_flow(app)
    assert app.deliver("payment_received", ORDER, {"early": True}).outcome == "buffered"
    finish(app, run, "place", "succeeded")
    assert state(run, "payment") == "succeeded"
    assert inputs(run, "ship") == {"payment": {"early": True}}


def test_the_same_event_id_is_applied_once(app):
    first = order_flow(app)
    finish(app, first, "place", "succeeded")
    assert app.deliver("payment_received", ORDER, 1, event_id="evt-1").outcome == "resumed"
    second = order_flow(app)  # a second order flow for the same order waits too
    finish(app, second, "place", "succeeded")
    assert app.deliver("payment_received", ORDER, 2, event_id="evt-1").outcome == "duplicate"
    assert state(second, "payment") == "waiting"
    assert app.deliver("payment_received", ORDER, 2, event_id="evt-2").outcome == "resumed"
    assert state(second, "payment") == "succeeded"


def test_one_event_resumes_every_wait_of_its_correlation(app):
    runs = [order_flow(app) for _ in range(3)]
    for run in runs:
        finish(app, run, "place", "succeeded")
    delivery = app.deliver("payment_received", ORDER, 7)
    assert sorted(delivery.resumed) == sorted(r.step_execution("payment") for r in runs)
    assert {state(r, "payment") for r in runs} == {"succeeded"}


def _time_out(app, run):
    """Back-date the wait's deadline and run the deadline scanner."""
    ks = app.client.keys
    deadlines = ks.deadlines(run.partition)
    app.client.run(Command(("ZADD", deadlines, 1, run.step_execution("payment")), deadlines))
    assert DeadlineExpiry().run(app.client, [run.partition]).repaired == 1


def test_a_wait_that_times_out_expires_its_ref_children_skip_and_defaults_flow(app):
    run = order_flow(app, timeout_s=60)
    finish(app, run, "place", "succeeded")
    _time_out(app, run)
    assert state(run, "payment") == "expired"
    assert state(run, "ship") == "skipped"
    assert state(run, "refund") == "ready" and inputs(run, "refund") == {"payment": "no payment"}
    assert app.deliver("payment_received", ORDER, 1).outcome == "buffered"  # nobody waits now


def test_a_wait_with_on_timeout_fail_fails(app):
    run = order_flow(app, timeout_s=60, on_timeout="fail")
    finish(app, run, "place", "succeeded")
    _time_out(app, run)
    assert state(run, "payment") == "failed"


def test_canceling_a_flow_cancels_its_waits_and_a_later_event_resumes_nothing(app):
    run = order_flow(app)
    finish(app, run, "place", "succeeded")
    run.cancel()
    assert state(run, "payment") == "canceled"
    assert app.deliver("payment_received", ORDER, 1).outcome == "buffered"
    assert state(run, "payment") == "canceled"


def test_a_paused_flow_still_takes_its_event_and_runs_the_children_on_resume(app):
    run = order_flow(app)
    finish(app, run, "place", "succeeded")
    run.pause()
    assert app.deliver("payment_received", ORDER, 5).outcome == "resumed"
    ks = app.client.keys
    assert app.client.run(X.claim(ks, run.partition, "default", 10, 30_000, "w")).claimed == []
    run.resume()
    assert state(run, "ship") == "ready"


def test_retrying_a_flow_whose_wait_timed_out_waits_again(app):
    run = order_flow(app, timeout_s=60, on_timeout="fail")
    finish(app, run, "place", "succeeded")
    _time_out(app, run)
    finish(app, run, "refund", "succeeded")
    assert run.status()["state"] == "failed"
    run.retry()
    assert state(run, "payment") == "waiting"
    app.deliver("payment_received", ORDER, 3)
    finish(app, run, "ship", "succeeded")
    assert run.status()["state"] == "succeeded"


def _fields(app, run, step):
    key = app.client.keys.execution(run.partition, run.step_execution(step))
    return app.client.run(Command(("HGETALL", key), key))


# What a waiting step's hash holds: no payload, priority, attempts, retry policy or
# lease epoch (no handler runs it), and no field at its default.
WAIT_FIELDS = {"id", "task", "lane", "created_ms", "flow", "step", "state", "wait_event", "wait_key",
               "wait_correlate", "waiting_ms", "req_total", "req_ok"}


def test_a_waiting_steps_hash_holds_only_what_its_readers_need_and_describe_still_reads_it(app):
    run = order_flow(app)
    finish(app, run, "place", "succeeded")
    assert set(_fields(app, run, "payment")) == WAIT_FIELDS
    timed = order_flow(app, timeout_s=3600, on_timeout="fail")
    finish(app, timed, "place", "succeeded")
    fields = _fields(app, timed, "payment")
    assert set(fields) == WAIT_FIELDS | {"timeout_ms", "on_timeout", "deadline_ms"}
    assert fields["timeout_ms"] == "3600000" and fields["on_timeout"] == "fail"
    step = next(s for s in timed.describe()["steps"] if s["step"] == "payment")
    assert step["attempts"] == 0 and step["optional"] is False
    assert re.fullmatch(r'event payment_received \{"order_id":"o-17"\}, \d+ ms, times out in (59 min|1 h)',
                        step["blockers"][0])


def test_a_wait_steps_info_fills_in_the_fields_it_leaves_unstored_at_their_default(app):
    from engine.handle import read_execution

    flow = app.flow("approve")
    flow.wait("approve")
    flow.wait("optional-payment", "payment_received", ORDER, optional=True, timeout_s=60)
    run = flow.submit()
    shown = read_execution(app.client, run.step_execution("approve"))
    assert {k: shown[k] for k in ("optional", "policy", "quorum", "req_total", "soft_done", "deadline_ms",
                                  "timeout_ms", "on_timeout", "wait_correlate")} == {
        "optional": "0", "policy": "all", "quorum": "0", "req_total": "0", "soft_done": "0",
        "deadline_ms": "0", "timeout_ms": "0", "on_timeout": "expire", "wait_correlate": ""}
    stored = read_execution(app.client, run.step_execution("optional-payment"))
    assert (stored["optional"], stored["timeout_ms"], stored["wait_correlate"]) == (
        "1", "60000", '{"order_id":"o-17"}')
    assert int(stored["deadline_ms"]) > int(stored["created_ms"])


def test_a_retried_wait_step_keeps_no_attempts_and_gets_a_fresh_timeout(app):
    run = order_flow(app, timeout_s=60, on_timeout="fail")
    finish(app, run, "place", "succeeded")
    _time_out(app, run)
    finish(app, run, "refund", "succeeded")
    run.retry()
    fields = _fields(app, run, "payment")
    assert fields["state"] == "waiting" and "attempts" not in fields
    ks = app.client.keys
    deadlines = ks.deadlines(run.partition)
    score = app.client.run(Command(("ZSCORE", deadlines, run.step_execution("payment")), deadlines))
    assert int(fields["deadline_ms"]) == int(float(score)) > int(fields["waiting_ms"])


def test_an_optional_wait_that_times_out_does_not_fail_its_flow(app):
    flow = app.flow("order", correlate=ORDER)
    flow.wait("payment", "payment_received", timeout_s=60, optional=True)
    run = flow.submit()
    _time_out(app, run)
    assert state(run, "payment") == "expired"
    assert run.status()["state"] == "succeeded"


def test_a_wait_with_any_of_waits_once_one_upstream_succeeded_and_one_failed(app):
    flow = app.flow("order", correlate=ORDER)
    flow.step("a", "t.a")
    flow.step("b", "t.b")
    flow.wait("payment", "payment_received", after=["a", "b"], any_of=True)
    run = flow.submit()
    finish(app, run, "a", "failed")
    assert state(run, "payment") == "blocked"
    finish(app, run, "b", "succeeded")
    assert state(run, "payment") == "waiting"
    assert _fields(app, run, "payment")["policy"] == "any"


def test_flowslot_waits_lists_an_event_wait_with_its_correlation_and_a_signal_wait_with_none(app):
    from engine.cli.events import waiting_steps

    run = order_flow(app)
    finish(app, run, "place", "succeeded")
    flow = app.flow("approval")
    flow.wait("approve")
    approval = flow.submit()
    rows = {r["flow"]: r for r in waiting_steps(app.client)}
    assert (rows[run.id]["wait_event"], rows[run.id]["wait_correlate"]) == ("payment_received", '{"order_id":"o-17"}')
    assert (rows[approval.id]["wait_event"], rows[approval.id]["wait_correlate"]) == ("flowslot.signal", "")
    assert rows[run.id]["deadline_ms"] is None


def test_a_wait_key_is_22_url_safe_characters_one_per_event_and_correlation():
    from engine.events import correlation

    key = correlation({"a": "1", "b": "2"}).wait_key("paid")
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", key)
    assert correlation({"b": "2", "a": "1"}).wait_key("paid") == key
    others = {correlation({"a": "1", "b": "2"}).wait_key("refunded"), correlation({"a": "1"}).wait_key("paid"),
              correlation({"a": "1", "b": "3"}).wait_key("paid"), correlation({"a": "12"}).wait_key("paid")}
    assert len(others) == 4 and key not in others


@pytest.mark.parametrize("call, match", [
    (lambda app: app.deliver("payment received", ORDER), "event name"),
    (lambda app: app.deliver("paid", {"order_id": 17}), "must be a string"),
    (lambda app: app.deliver("paid", {}), "non-empty dict"),
    (lambda app: app.deliver("paid", {f"k{i}": "v" for i in range(17)}), "at most 16"),
    (lambda app: app.deliver("paid", {"order_id": "x" * 300}), "at most 256"),
    (lambda app: app.deliver("paid", {"order id": "x"}), "names must match"),
    (lambda app: app.deliver("paid", ORDER, object()), "serial"),
    (lambda app: app.deliver("paid", ORDER, "x" * (2 * 1024 * 1024)), "larger|over|limit"),
    (lambda app: app.deliver("paid", ORDER, 1, event_id=""), "event_id"),
    (lambda app: app.deliver("paid", ORDER, 1, buffer_ttl_s=float("nan")), "buffer_ttl_s"),
    (lambda app: app.flow("f").wait("w", "paid"), "correlate"),
    (lambda app: app.flow("f", correlate=ORDER).wait("w", "paid", timeout_s=-1), "timeout_s"),
    (lambda app: app.flow("f", correlate=ORDER).wait("w", "paid", on_timeout="retry"), "on_timeout"),
])
def test_bad_events_and_waits_are_refused_and_change_nothing(app, call, match):
    before = snapshot(app.client)
    with pytest.raises(ContractError, match=match):
        call(app)
    assert snapshot(app.client) == before


def test_a_flow_with_waits_lives_in_its_correlations_partition(app):
    from engine.events import correlation

    run = order_flow(app)
    assert run.partition == correlation(ORDER).partition(app.client.keys.partitions)
    key = app.client.keys.execution(run.partition, run.step_execution("payment"))
    fields = app.client.run(Command(("HMGET", key, "wait_event", "wait_correlate"), key))
    assert fields == ["payment_received", json.dumps(ORDER, separators=(",", ":"))]


def test_the_index_check_finds_nothing_to_repair_in_flows_that_wait(app):
    from reconciler.scanners import IndexCheck

    for timeout_s in (600, None):
        finish(app, order_flow(app, timeout_s=timeout_s), "place", "succeeded")
    app.deliver("payment_received", ORDER, 1)  # resumes both
    app.deliver("payment_received", ORDER, 2)  # buffered: nobody waits now
    finish(app, order_flow(app), "place", "succeeded")  # takes the buffered event
    finish(app, order_flow(app, timeout_s=600), "place", "succeeded")  # waits
    partitions = range(app.client.keys.partitions)
    for _ in range(3):
        result = IndexCheck().run(app.client, partitions)
        assert result.errors == 0 and result.repaired == 0, result.details


def _delivery_counts():
    from engine.metrics import REGISTRY

    return {o: REGISTRY.get_sample_value("flowslot_deliveries_total", {"outcome": o}) or 0.0
            for o in ("resumed", "buffered", "duplicate", "refused")}


def test_deliveries_are_counted_by_outcome_and_refused_ones_too(app):
    before = _delivery_counts()
    finish(app, order_flow(app), "place", "succeeded")
    app.deliver("payment_received", ORDER, 1, event_id="e-1")  # resumed
    app.deliver("payment_received", ORDER, 1, event_id="e-1")  # duplicate
    app.deliver("payment_received", ORDER, 2)  # buffered: nobody waits now
    for bad in (lambda: app.deliver("payment received", ORDER), lambda: app.deliver("paid", {"order_id": 17}),
                lambda: app.deliver("paid", ORDER, object())):
        with pytest.raises(ContractError):
            bad()
    after = _delivery_counts()
    assert {o: after[o] - before[o] for o in after} == {"resumed": 1, "buffered": 1, "duplicate": 1, "refused": 3}
