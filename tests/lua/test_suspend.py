"""A handler that suspends on ``wait_for`` (issue 10, item 4), on fakeredis and real Valkey.

The handlers run through a real ``Worker``'s code path (its thread pool, its
recorder) without its claim and hint threads: the test claims by hand, lets
the worker run the handler, and records the outcome the handler produced.
"""

from __future__ import annotations

import base64
import json

import pytest

from engine import BadToken, InvalidState, current_task
from engine import executions as X
from engine.router import Command
from engine.worker import Worker
from keys import partition_of
from reconciler.scanners import DeadlineExpiry, IndexCheck
from tests.lua.test_flows import app  # noqa: F401 - the app fixture
from tests.lua.test_signals import snapshot

RUNS: list[str] = []  # what each run of the handler did, in order


@pytest.fixture
def worker(app):  # noqa: F811 - the app fixture
    RUNS.clear()

    @app.task(name="t.expense")
    def expense(amount, timeout_s=None):
        RUNS.append("before")
        decision = current_task().wait_for("approval", timeout_s=timeout_s)
        RUNS.append("after")
        return {"amount": amount, "ok": decision["ok"], "seen": current_task().signals["approval"]}

    @app.task(name="t.careless")
    def careless():
        try:
            current_task().wait_for("approval")
        except Exception:  # a handler's broad except does not swallow the suspension
            RUNS.append("swallowed")
        return "done"

    w = Worker(app, concurrency=2)
    yield w
    w._pool.shutdown(wait=True)


def run_once(app, worker, handle):  # noqa: F811
    """Claim the execution, let the worker run its handler, record the outcome; the token."""
    p = partition_of(handle.id, app.client.keys.partitions)
    claimed = app.client.run(X.claim(app.client.keys, p, "default", 10, 30_000, "w-test")).claimed
    mine = [c for c in claimed if c.execution_id == handle.id]
    assert len(mine) == 1, claimed
    for other in claimed:  # another submission that landed in the same partition: hand it back
        if other.execution_id != handle.id:
            app.client.run(X.release(app.client.keys, other.execution_id, other.token))
    worker._start(mine[0], "default")
    outcome = worker._recorder._outcomes.get(timeout=10)
    assert worker.running_handlers == 0  # the handler returned: no thread waits for the signal
    worker._recorder.record([outcome])
    return outcome


def token_for(app, handle):  # noqa: F811
    """The token a handler would get from current_task().token("approval")."""
    from engine import signals
    return signals.issue_for_execution(app.client, handle.id, "approval")


def field(app, handle, name):  # noqa: F811
    p = partition_of(handle.id, app.client.keys.partitions)
    key = app.client.keys.execution(p, handle.id)
    return app.client.run(Command(("HGET", key, name), key))


def indexed(app, handle, index):  # noqa: F811
    p = partition_of(handle.id, app.client.keys.partitions)
    key = getattr(app.client.keys, index)(p)
    return app.client.run(Command(("ZSCORE", key, handle.id), key)) is not None


def test_a_handler_suspends_and_a_signal_makes_it_run_again_from_the_top_with_the_payload(app, worker):  # noqa: F811
    handle = app.submit("t.expense", 120)
    outcome = run_once(app, worker, handle)
    assert outcome.suspend == "approval" and RUNS == ["before"]
    assert handle.state() == "waiting" and field(app, handle, "attempts") == "0"
    assert indexed(app, handle, "waiting") and not indexed(app, handle, "leases")
    assert worker.stats.extra == {"suspended": 1}

    assert app.signal(token_for(app, handle), {"ok": True}) == handle.id
    assert handle.state() == "ready" and not indexed(app, handle, "waiting")
    run_once(app, worker, handle)
    assert RUNS == ["before", "before", "after"]
    assert handle.result(timeout=1) == {"amount": 120, "ok": True, "seen": {"ok": True}}
    assert field(app, handle, "attempts") == "1"
    check = IndexCheck().run(app.client, range(app.client.keys.partitions))
    assert check.errors == 0 and check.repaired == 0, check.details


def test_a_signal_that_comes_before_the_wait_is_kept_and_returned_at_once(app, worker):  # noqa: F811
    handle = app.submit("t.expense", 5)
    assert signals_outcome(app, handle, {"ok": False}) == "stored"
    run_once(app, worker, handle)
    assert RUNS == ["before", "after"]
    assert handle.result(timeout=1) == {"amount": 5, "ok": False, "seen": {"ok": False}}


def signals_outcome(app, handle, payload):  # noqa: F811
    from engine import signals
    return signals.signal(app.client, token_for(app, handle), payload).outcome


def test_a_signal_that_comes_between_the_read_and_the_suspension_makes_it_ready_at_once(app, worker):  # noqa: F811
    handle = app.submit("t.expense", 7)
    p = partition_of(handle.id, app.client.keys.partitions)
    claimed = app.client.run(X.claim(app.client.keys, p, "default", 10, 30_000, "w-test")).claimed[0]
    assert signals_outcome(app, handle, {"ok": True}) == "stored"
    reply = app.client.run(X.suspend(app.client.keys, handle.id, claimed.token, "approval", 0))
    assert (reply.state, handle.state(), field(app, handle, "attempts")) == ("ready", "ready", "0")


def test_a_repeated_signal_is_a_duplicate_and_another_payload_is_refused(app, worker):  # noqa: F811
    handle = app.submit("t.expense", 1)
    run_once(app, worker, handle)
    assert signals_outcome(app, handle, {"ok": True}) == "resumed"
    assert signals_outcome(app, handle, {"ok": True}) == "duplicate"
    before = snapshot(app.client)
    with pytest.raises(InvalidState, match="already received signal approval"):
        app.signal(token_for(app, handle), {"ok": False})
    assert snapshot(app.client) == before


def test_a_suspended_handler_that_times_out_expires_and_leaves_the_waiting_index(app, worker):  # noqa: F811
    handle = app.submit("t.expense", 1, 60)
    run_once(app, worker, handle)
    assert handle.state() == "waiting" and indexed(app, handle, "deadlines")
    p = partition_of(handle.id, app.client.keys.partitions)
    deadlines = app.client.keys.deadlines(p)
    app.client.run(Command(("ZADD", deadlines, 1, handle.id), deadlines))
    key = app.client.keys.execution(p, handle.id)
    app.client.run(Command(("HSET", key, "wait_deadline_ms", 1), key))
    assert DeadlineExpiry().run(app.client, [p]).repaired == 1
    assert handle.state() == "expired" and field(app, handle, "error_kind") == "timeout"
    assert "no signal approval" in field(app, handle, "error_msg")
    assert not indexed(app, handle, "waiting") and not indexed(app, handle, "deadlines")
    with pytest.raises(InvalidState, match="expired: it takes no signal"):
        app.signal(token_for(app, handle), {"ok": True})


def test_a_resumed_execution_keeps_its_own_deadline_and_no_wait_timeout(app, worker):  # noqa: F811
    handle = app.submit("t.expense", 1, 60, deadline_s=3600)
    p = partition_of(handle.id, app.client.keys.partitions)
    deadlines = app.client.keys.deadlines(p)
    own = app.client.run(Command(("ZSCORE", deadlines, handle.id), deadlines))
    run_once(app, worker, handle)
    assert app.client.run(Command(("ZSCORE", deadlines, handle.id), deadlines)) < own
    app.signal(token_for(app, handle), {"ok": True})
    assert app.client.run(Command(("ZSCORE", deadlines, handle.id), deadlines)) == own


def test_a_suspended_execution_can_be_canceled_and_leaves_the_waiting_index(app, worker):  # noqa: F811
    handle = app.submit("t.expense", 1, 60)
    run_once(app, worker, handle)
    assert app.cancel(handle.id) == "waiting"
    assert handle.state() == "canceled"
    assert not indexed(app, handle, "waiting") and not indexed(app, handle, "deadlines")
    check = IndexCheck().run(app.client, range(app.client.keys.partitions))
    assert check.errors == 0 and check.repaired == 0, check.details


def test_a_broad_except_in_the_handler_does_not_swallow_the_suspension(app, worker):  # noqa: F811
    handle = app.submit("t.careless")
    run_once(app, worker, handle)
    assert RUNS == [] and handle.state() == "waiting"


def _with_body(token, body):
    version, key_id, _, mac = token.split(".")
    return ".".join((version, key_id, base64.urlsafe_b64encode(json.dumps(body).encode()).decode().rstrip("="),
                     mac))


def test_a_forged_or_altered_execution_token_is_refused_and_changes_nothing(app, worker):  # noqa: F811
    handle = app.submit("t.expense", 1)
    other = app.submit("t.expense", 2)
    run_once(app, worker, handle)
    token = token_for(app, handle)
    ns = app.client.keys.namespace
    for forged in (token[:-2] + ("AA" if not token.endswith("AA") else "BB"),
                   _with_body(token, [ns, "", "approval", 0, other.id]),
                   _with_body(token, [ns, "", "other", 0, handle.id]),
                   _with_body(token, [ns, "x", "approval", 0, handle.id])):
        before = snapshot(app.client)
        with pytest.raises(BadToken):
            app.signal(forged, {"ok": True})
        assert snapshot(app.client) == before
    assert handle.state() == "waiting"


def test_a_handler_token_names_its_own_wait_and_decodes_to_the_execution(app, worker):  # noqa: F811
    handle = app.submit("t.expense", 1)
    body = token_for(app, handle).split(".")[2]
    assert json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))) == [
        app.client.keys.namespace, "", "approval", 0, handle.id]


def test_in_a_flow_step_token_names_the_flows_wait_step_or_else_the_steps_own_wait(app, worker):  # noqa: F811
    from types import SimpleNamespace

    from engine import TaskContext
    flow = app.flow("approval")
    ask = flow.step("ask", "t.a")
    flow.wait("approve", after=[ask])
    run = flow.submit()
    eid = run.step_execution("ask")
    ctx = TaskContext(eid, 1, 0, SimpleNamespace(app=app), run.id, "ask")
    assert ctx.token("approve") == run.token("approve")
    body = ctx.token("approval").split(".")[2]
    assert json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))) == [
        app.client.keys.namespace, "", "approval", 0, eid]
