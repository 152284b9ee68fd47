"""Crashes and topology changes: SIGKILL mid-lease, SIGTERM, slot migration mid-run."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine import executions as X
from engine.errors import StaleLease
from engine.handle import read_execution
from engine.router import Command
from keys import partition_of_key, partition_slot
from reconciler import Reconciler
from tests.conftest import TEST_PARTITIONS
from tests.waiting import wait_until

pytestmark = [pytest.mark.server, pytest.mark.system]




def test_a_worker_killed_mid_lease_loses_it_and_another_worker_finishes(
        server_url, namespace, make_app, spawn_worker, tmp_path: Path):
    app = make_app(server_url, namespace)
    first = spawn_worker(server_url, namespace, lease_ms=800)
    handle = app.submit("basic.marker", str(tmp_path), 1.5)
    wait_until(lambda: (tmp_path / f"{first.pid}.started").exists(), what="first attempt to start")
    first.kill()
    old_token = handle.info()["epoch"]

    second = spawn_worker(server_url, namespace, lease_ms=800)
    reconciler = Reconciler(app.client, interval_s=0.2).start()
    try:
        assert handle.result(timeout=30) == second.pid
    finally:
        reconciler.stop()
    info = handle.info()
    assert info["attempts"] == "2"
    assert reconciler.totals["lease_expiry"] >= 1
    # The dead worker's token is fenced off for good.
    with pytest.raises(StaleLease):
        app.client.run(X.complete(app.client.keys, handle.id, old_token, "1"))


def test_sigterm_lets_running_handlers_finish_and_exits_zero(server_url, namespace, make_app, spawn_worker):
    app = make_app(server_url, namespace)
    worker = spawn_worker(server_url, namespace, grace_s=10)
    handle = app.submit("basic.sleep", 1.0)
    wait_until(lambda: handle.state().value == "leased", what="lease")
    assert worker.terminate() == 0
    assert handle.result(timeout=1) == "slept"


def test_sigterm_past_the_grace_period_hands_leases_back(server_url, namespace, make_app, spawn_worker):
    app = make_app(server_url, namespace)
    worker = spawn_worker(server_url, namespace, grace_s=0.2)
    handle = app.submit("basic.sleep", 30)
    wait_until(lambda: handle.state().value == "leased", what="lease")
    assert worker.terminate() == 0
    info = handle.info()
    assert (info["state"], info["attempts"]) == ("ready", "0")
    spawn_worker(server_url, namespace)  # a new worker picks it up from the hint
    wait_until(lambda: handle.state().value == "leased", what="re-claim")


def test_work_continues_while_a_slot_migrates_between_nodes(cluster, namespace, make_app, spawn_worker):
    app = make_app(cluster.url, namespace)
    # Idempotency keys choose the partition: put everything in partition 5.
    keys = [k for k in (f"job-{i}" for i in range(2000)) if partition_of_key(k, TEST_PARTITIONS) == 5][:40]
    slot = partition_slot(5, TEST_PARTITIONS)
    before = [app.submit("basic.add", i, 1, idempotency_key=k) for i, k in enumerate(keys[:20])]
    owner = cluster.slot_owner(slot)
    target = next(n.port for n in cluster.primaries() if n.port != owner)
    cluster.migrate_slot(slot, target)
    assert cluster.slot_owner(slot) == target
    # The app's slot map is now stale: its calls get MOVED, refresh, and retry.
    after = [app.submit("basic.add", i, 1, idempotency_key=k) for i, k in enumerate(keys[20:], 20)]
    spawn_worker(cluster.url, namespace)
    results = [h.result(timeout=30) for h in before + after]
    assert results == [i + 1 for i in range(len(keys))]
    assert app.client.router.node_for_slot(slot).endswith(f":{target}")


def test_a_worker_killed_mid_fan_out_leaves_a_flow_another_worker_finishes_exactly(
        server_url, namespace, make_app, spawn_worker):
    """Middle steps finish together (the recorder may take several in one flow_complete_many)
    while the worker that runs them is killed: the leases it held expire, another worker runs
    those steps again, and the join receives every middle's result once."""
    app = make_app(server_url, namespace)
    first = spawn_worker(server_url, namespace, lease_ms=800, concurrency=8)
    flow = app.flow("fan-crash")
    root = flow.step("root", "flow.echo", 0)
    middles = [flow.step(f"m{i}", "basic.sleep", 0.15, after=[root]) for i in range(40)]
    flow.step("join", "flow.echo", [m.ref() for m in middles])
    run = flow.submit()
    wait_until(lambda: run.status()["counts"].get("succeeded", 0) >= 9, what="some middle steps to finish")
    first.kill()
    spawn_worker(server_url, namespace, lease_ms=800, concurrency=8)
    reconciler = Reconciler(app.client, interval_s=0.2).start()
    try:
        assert run.wait(timeout=60).value == "succeeded"
    finally:
        reconciler.stop()
    assert run.result("join", timeout=5) == ["slept"] * 40
    status = run.status()
    assert status["counts"] == {"succeeded": 42}
    attempts = [read_execution(app.client, run.step_execution(f"m{i}"))["attempts"] for i in range(40)]
    assert "2" in attempts  # the kill took leased middle steps with it; they ran again
    key = app.client.keys.flow(run.partition, run.id)
    assert app.client.run(Command(("HMGET", key, "terminal", "bad", "total"), key)) == ["42", "0", "42"]
