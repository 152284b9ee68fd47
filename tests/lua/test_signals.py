"""Signals to one wait step with signed tokens (issue 10, item 3), on fakeredis and real Valkey.

Steps are driven by hand through the Lua functions, as in test_waits.py;
tokens are checked in Python and their times by wait_signal on the server.
"""

from __future__ import annotations

import base64
import json
from types import SimpleNamespace

import pytest

from engine import BadToken, ContractError, InvalidState, NotFound, TaskContext, signals, signing
from engine.router import Command
from reconciler.scanners import DeadlineExpiry, IndexCheck
from tests.conftest import fake_client
from tests.lua.test_flows import app, finish, inputs, state  # noqa: F401 - the app fixture


def snapshot(client):
    """Every key of the namespace with its type and value, sets too (tests.conftest.snapshot
    reads a set as a string, and a waiting step is a member of its waits set)."""
    out = {}
    readers = {"hash": "hgetall", "stream": "xrange", "string": "get"}
    for node in client.router.primaries():
        r = client.router.client(node)
        for key in r.scan_iter(match=f"{client.keys.namespace}:*", count=1000):
            kind = r.type(key)
            if kind == "set":
                out[key] = (kind, sorted(r.smembers(key)))
            elif kind == "zset":
                out[key] = (kind, r.zrange(key, 0, -1, withscores=True))
            elif kind == "list":
                out[key] = (kind, r.lrange(key, 0, -1))
            else:
                out[key] = (kind, getattr(r, readers[kind])(key))
    return out


def approval_flow(app, timeout_s=None):
    flow = app.flow("approval")
    ask = flow.step("ask", "t.a")
    approved = flow.wait("approve", after=[ask], timeout_s=timeout_s)
    flow.step("ship", "t.b", approved.ref())
    flow.step("audit", "t.c", approved.ref_or_default("no answer"))
    return flow.submit()


def waiting_approval(app):
    run = approval_flow(app)
    finish(app, run, "ask", "succeeded")
    assert state(run, "approve") == "waiting"
    return run


def _secrets(app):
    return app.client.run(Command(("HGETALL", app.client.keys.secrets()), app.client.keys.secrets()))


def _back_date_grace(app, key_id):
    key = app.client.keys.secrets()
    app.client.run(Command(("HSET", key, f"retired:{key_id}", 1), key))


def _refused(app, token, match, payload=None, error=BadToken):
    before = snapshot(app.client)
    with pytest.raises(error, match=match):
        app.signal(token, payload)
    assert snapshot(app.client) == before


def test_a_signal_resumes_its_wait_step_and_its_ref_children_get_the_payload(app):
    run = waiting_approval(app)
    token = run.token("approve")
    assert app.signal(token, {"ok": True}) == run.step_execution("approve")
    assert state(run, "approve") == "succeeded"
    assert state(run, "ship") == "ready" and inputs(run, "ship") == {"approve": {"ok": True}}
    assert inputs(run, "audit") == {"approve": {"ok": True}}
    assert run.result("approve", timeout=1) == {"ok": True}


def test_a_token_is_url_safe_and_names_the_namespace_flow_and_step(app):
    run = approval_flow(app)
    version, key_id, body, mac = run.token("approve").split(".")
    assert (version, key_id) == ("v1", _secrets(app)["current"])
    assert json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))) == [
        app.client.keys.namespace, run.id, "approve", 0]
    assert all(c.isalnum() or c in "-_" for c in body + mac)


def test_a_handler_of_the_flow_gets_the_same_token_as_the_run(app):
    run = approval_flow(app)
    ctx = TaskContext(run.step_execution("ask"), 1, 0, SimpleNamespace(app=app), run.id, "ask")
    assert ctx.token("approve") == run.token("approve")


def test_an_event_wait_takes_a_signal_too_and_no_event_resumes_a_signal_only_wait(app):
    flow = app.flow("order", correlate={"order_id": "o-1"})
    paid = flow.wait("payment", "payment_received")
    flow.step("ship", "t.b", paid.ref())
    run = flow.submit()
    app.signal(run.token("payment"), "paid by hand")
    assert state(run, "payment") == "succeeded" and inputs(run, "ship") == {"payment": "paid by hand"}

    approval = waiting_approval(app)
    for correlate in ({"order_id": "o-1"}, {"x": "y"}):
        assert app.deliver(signals.SIGNAL_EVENT, correlate, 1).outcome == "buffered"
    assert state(approval, "approve") == "waiting"


def test_repeating_the_signal_that_resumed_a_step_answers_again_and_writes_nothing(app):
    run = waiting_approval(app)
    token = run.token("approve")
    eid = app.signal(token, {"ok": True})
    before = snapshot(app.client)
    assert app.signal(token, {"ok": True}) == eid
    assert snapshot(app.client) == before
    _refused(app, token, "succeeded, not waiting", {"ok": False}, InvalidState)


def test_a_signal_to_a_step_that_is_not_waiting_is_refused_and_changes_nothing(app):
    run = approval_flow(app, timeout_s=60)
    token = run.token("approve")
    _refused(app, token, "blocked, not waiting", error=InvalidState)
    finish(app, run, "ask", "succeeded")
    deadlines = app.client.keys.deadlines(run.partition)
    app.client.run(Command(("ZADD", deadlines, 1, run.step_execution("approve")), deadlines))
    assert DeadlineExpiry().run(app.client, [run.partition]).repaired == 1
    _refused(app, token, "expired, not waiting", error=InvalidState)


def test_a_signal_to_a_canceled_flows_wait_is_refused_and_changes_nothing(app):
    run = waiting_approval(app)
    token = run.token("approve")
    run.cancel()
    assert state(run, "approve") == "canceled"
    _refused(app, token, "canceled", error=InvalidState)


def _with_body(token, body):
    version, key_id, _, mac = token.split(".")
    return ".".join((version, key_id, base64.urlsafe_b64encode(json.dumps(body).encode()).decode().rstrip("="),
                     mac))


@pytest.mark.parametrize("forge, match", [
    (lambda app, run, t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"), "forged or altered"),
    (lambda app, run, t: _with_body(t, [app.client.keys.namespace, run.id, "ship", 0]), "forged or altered"),
    (lambda app, run, t: _with_body(t, [app.client.keys.namespace, run.id, "approve", 1]), "forged or altered"),
    (lambda app, run, t: signals.sign(fake_client("other"), run.id, "approve"), "namespace 'other'"),
    (lambda app, run, t: "v1.0123abcd." + t.split(".", 2)[2], "unknown"),
    (lambda app, run, t: signals.sign(app.client, run.id, "approve", expires_ms=1), "expired"),
    (lambda app, run, t: t.replace("v1.", "v2.", 1), "not a flowslot signal token"),
    (lambda app, run, t: t + ".x", "not a flowslot signal token"),
    (lambda app, run, t: t.replace(".", "!", 1), "not a flowslot signal token"),
    (lambda app, run, t: t.rsplit(".", 1)[0] + ".***", "garbled"),
    (lambda app, run, t: "", "a signal token is a string"),
    (lambda app, run, t: "x" * 2000, "a signal token is a string"),
    (lambda app, run, t: None, "a signal token is a string"),
])
def test_forged_tampered_foreign_expired_and_garbage_tokens_are_refused_and_change_nothing(app, forge, match):
    run = waiting_approval(app)
    token = forge(app, run, run.token("approve"))
    _refused(app, token, match)
    assert state(run, "approve") == "waiting"


def test_a_token_that_expires_names_a_server_time_and_works_until_then(app):
    run = waiting_approval(app)
    token = run.token("approve", expires_in_s=3600)
    body = token.split(".")[2]
    expires_ms = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))[3]
    assert 3_590_000 < expires_ms - signing.server_ms(app.client) <= 3_600_000
    app.signal(token, 1)
    assert state(run, "approve") == "succeeded"


def test_after_a_rotation_old_tokens_work_within_the_grace_and_are_refused_after_it(app):
    first, second = waiting_approval(app), waiting_approval(app)
    old_first, old_second = first.token("approve"), second.token("approve")
    old_key = _secrets(app)["current"]
    rotation = signing.rotate(app.client)
    assert (rotation.previous, rotation.dropped) == (old_key, 0)
    assert first.token("approve").split(".")[1] == rotation.current != old_key
    app.signal(old_first, "within the grace")
    assert state(first, "approve") == "succeeded"
    _back_date_grace(app, old_key)
    _refused(app, old_second, "rotated out")
    app.signal(second.token("approve"), "new key")
    assert state(second, "approve") == "succeeded"


def test_a_rotation_with_no_grace_refuses_old_tokens_at_once_and_a_later_one_drops_them(app):
    run = waiting_approval(app)
    old = run.token("approve")
    old_key = _secrets(app)["current"]
    signing.rotate(app.client, grace_s=0)
    _refused(app, old, "rotated out")
    assert signing.rotate(app.client).dropped == 1
    assert f"secret:{old_key}" not in _secrets(app)
    _refused(app, old, "unknown")


def test_the_first_token_creates_one_signing_key_and_later_ones_reuse_it(app):
    run = approval_flow(app)
    assert signing.load(app.client) is None
    run.token("approve")
    keys = _secrets(app)
    run.token("approve")
    assert _secrets(app) == keys and len(bytes.fromhex(keys[f"secret:{keys['current']}"])) == 32


@pytest.mark.parametrize("call, match", [
    (lambda app, run: run.token("ask"), "not a wait step"),
    (lambda app, run: run.token("nope"), "no step 'nope'"),
    (lambda app, run: run.token("approve", expires_in_s=0), "expires_in_s"),
    (lambda app, run: app.signal(run.token("approve"), object()), "serial"),
    (lambda app, run: app.signal(run.token("approve"), "x" * (2 * 1024 * 1024)), "over the limit"),
    (lambda app, run: signing.rotate(app.client, grace_s=-1), "grace_s"),
    (lambda app, run: app.flow("f").wait("w", correlate={"a": "b"}), "needs an event"),
    (lambda app, run: app.flow("f", correlate={"a": "b"}).wait("w", "flowslot.signal"), "reserved"),
    (lambda app, run: app.flow("f").wait("w", timeout_s=-1), "timeout_s"),
])
def test_bad_tokens_payloads_and_signal_waits_are_refused_and_change_nothing(app, call, match):
    run = approval_flow(app)
    run.token("approve")  # the signing key exists before the snapshot
    before = snapshot(app.client)
    with pytest.raises(ContractError, match=match):
        call(app, run)
    assert snapshot(app.client) == before


def test_a_signal_to_a_flow_that_is_gone_is_refused(app):
    run = waiting_approval(app)
    token = run.token("approve")
    key = run.key
    app.client.run(Command(("DEL", key), key))
    _refused(app, token, "no flow", error=NotFound)


def test_the_index_check_finds_nothing_to_repair_in_flows_resumed_by_signals(app):
    runs = [waiting_approval(app) for _ in range(2)]
    app.signal(runs[0].token("approve"), 1)
    approval_flow(app, timeout_s=600)  # blocked on its first step
    partitions = range(app.client.keys.partitions)
    for _ in range(3):
        result = IndexCheck().run(app.client, partitions)
        assert result.errors == 0 and result.repaired == 0, result.details


def _signal_counts():
    from engine.metrics import REGISTRY

    return {o: REGISTRY.get_sample_value("flowslot_signals_total", {"outcome": o}) or 0.0
            for o in ("resumed", "stored", "duplicate", "refused")}


def test_signals_are_counted_by_outcome_and_refused_ones_too(app):
    before = _signal_counts()
    run = waiting_approval(app)
    token = run.token("approve")
    app.signal(token, {"ok": True})  # resumed
    app.signal(token, {"ok": True})  # duplicate
    with pytest.raises(InvalidState):
        app.signal(token, {"ok": False})  # refused: another payload for a step that is not waiting
    with pytest.raises(BadToken):
        app.signal("v1.garbage", 1)  # refused: not a token
    with pytest.raises(ContractError):
        app.signal(waiting_approval(app).token("approve"), object())  # refused: not JSON
    handle = app.submit("t.a")
    app.signal(signals.issue_for_execution(app.client, handle.id, "approval"), 1)  # stored: no wait yet
    after = _signal_counts()
    assert {o: after[o] - before[o] for o in after} == {"resumed": 1, "stored": 1, "duplicate": 1, "refused": 3}
