"""The renewer keeps running leases alive and cancels a handler whose execution was canceled
or whose lease is gone; the held-lease registry it reads (fakeredis with the real Lua library)."""

from __future__ import annotations

import threading

from engine import executions as X
from engine.context import TaskContext
from engine.held import Held, HeldLeases
from engine.renewer import Renewer
from engine.router import Command
from keys import new_id
from tests.conftest import fake_client

P = 6


def hold(client, held: HeldLeases, lease_ms=30_000) -> Held:
    """Submit and claim one execution, and register the lease as running."""
    eid = new_id("e", P)
    client.run(X.submit(client.keys, X.SubmitSpec(eid, "t", "default", "{}"), P))
    [claimed] = client.run(X.claim(client.keys, P, "default", 1, lease_ms, "w")).claimed
    h = Held(claimed, "default", TaskContext(eid, claimed.attempt, 0, None))
    held.add(h)
    return h


def lease_expiry_ms(client, eid) -> int:
    key = client.keys.execution(P, eid)
    return int(client.run(Command(("HGET", key, "lease_expiry_ms"), key)))


def test_a_live_lease_is_extended_and_its_handler_left_alone(namespace):
    client = fake_client(namespace)
    held = HeldLeases()
    h = hold(client, held, lease_ms=1_000)
    Renewer(client, held, lease_ms=60_000).renew()
    assert lease_expiry_ms(client, h.claimed.execution_id) > h.claimed.lease_expiry_ms + 30_000
    assert not h.context.canceled


def test_a_canceled_execution_cancels_its_handlers_context(namespace):
    client = fake_client(namespace)
    held = HeldLeases()
    h = hold(client, held)
    client.run(X.cancel(client.keys, h.claimed.execution_id, "operator"))
    Renewer(client, held, lease_ms=30_000).renew()
    assert h.context.canceled
    assert h.context.cancel_reason == "canceled"


def test_a_stale_lease_cancels_its_handlers_context_as_lease_lost(namespace):
    client = fake_client(namespace)
    held = HeldLeases()
    h = hold(client, held)
    eid = h.claimed.execution_id
    client.run(X.release(client.keys, eid, h.claimed.token))  # another worker takes it over
    client.run(X.claim(client.keys, P, "default", 1, 30_000, "other"))
    Renewer(client, held, lease_ms=30_000).renew()
    assert h.context.canceled
    assert h.context.cancel_reason.startswith("lease lost: ")
    assert "is not the current lease" in h.context.cancel_reason  # the StaleLease message


def test_each_lease_gets_its_own_answer_in_one_round(namespace):
    client = fake_client(namespace)
    held = HeldLeases()
    live, canceled = hold(client, held), hold(client, held)
    client.run(X.cancel(client.keys, canceled.claimed.execution_id))
    Renewer(client, held, lease_ms=30_000).renew()
    assert (live.context.canceled, canceled.context.canceled) == (False, True)


def test_a_finished_handler_is_not_renewed(namespace):
    client = fake_client(namespace)
    held = HeldLeases()
    h = hold(client, held)
    h.done = True
    client.run(X.cancel(client.keys, h.claimed.execution_id))
    Renewer(client, held, lease_ms=30_000).renew()
    assert not h.context.canceled


def test_run_returns_once_stopped(namespace):
    client = fake_client(namespace)
    stopped = threading.Event()
    stopped.set()
    Renewer(client, HeldLeases(), lease_ms=30_000).run(stopped)  # returns at once instead of renewing


def test_held_leases_lists_only_the_running_ones_and_forgets_on_request(namespace):
    client = fake_client(namespace)
    held = HeldLeases()
    a, b, c = hold(client, held), hold(client, held), hold(client, held)
    b.done = True
    assert [h.claimed.execution_id for h in held.running()] == [a.claimed.execution_id, c.claimed.execution_id]
    held.forget(a.claimed.execution_id)
    held.forget(a.claimed.execution_id)  # forgetting twice is harmless
    assert held.running() == [c]
