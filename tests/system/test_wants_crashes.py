"""Wants through crashes: a producer's worker SIGKILLed mid-build, a caller killed between a
slice going live and the builds waiting for it running again. The reconciler finishes each."""

from __future__ import annotations

import pytest

from engine import executions as X
from engine.dispatcher import resolve_call
from engine.wants import slice_partition
from reconciler import Reconciler
from reconciler.scanners import DependencyScanner, LeaseExpiry, OutboxScanner
from tests.waiting import wait_until
from tests.wanting import builds_started, ended

pytestmark = [pytest.mark.server, pytest.mark.system]


def test_a_producer_killed_mid_build_is_retried_and_its_slice_is_built_once(
        cluster, namespace, wapp, spawn_worker, monkeypatch):
    monkeypatch.setenv("WANTING_SLOW_S", "60")
    first = spawn_worker(cluster.url, namespace, target="tests.apps.wanting:app", lease_ms=800)
    want = wapp.want(["slow/killed"])
    build = wapp.handle(wapp.slice("slow/killed")["build"])
    wait_until(lambda: build.state().value == "leased", what="the build to start")
    first.kill()

    monkeypatch.setenv("WANTING_SLOW_S", "0.1")
    spawn_worker(cluster.url, namespace, target="tests.apps.wanting:app", lease_ms=800)
    reconciler = Reconciler(wapp.client, [LeaseExpiry()], interval_s=0.2).start()
    try:
        wait_until(lambda: ended(wapp, want), what="the want to end", timeout_s=30)
    finally:
        reconciler.stop()
    assert wapp.want_status(want)["state"] == "satisfied"
    assert builds_started(wapp) == {"slow/killed": 1}
    assert wapp.slice("slow/killed")["build"] == build.id
    assert build.info()["attempts"] == "2"


def _slice_live_nobody_told(wapp, worker, wanted, needed):
    """A build of ``wanted`` waits for ``needed`` (a manual/ slice: lane 'manual', which the
    worker does not serve); then the manual build is completed by hand, the way a caller that
    dies before dispatching leaves it. Returns (want, the waiting build, the manual build id)."""
    worker()
    want = wapp.want([wanted])
    above = wapp.handle(wapp.slice(wanted)["build"])
    wait_until(lambda: above.state().value == "waiting", what=f"the build to find {needed} missing")
    # In another partition the upstream want (and the build it starts) arrives by a message the
    # worker applies just after the build's call: wait for it too.
    wait_until(lambda: wapp.slice(needed)["state"] == "building", what=f"the build of {needed} to start")
    ks, partition = wapp.client.keys, slice_partition(wapp.client.keys, needed)
    claimed = wapp.client.run(X.claim(ks, partition, "manual", 1, 10_000, "a caller about to die")).claimed
    assert [c.task for c in claimed] == ["wanting.manual"]
    done = wapp.client.run(X.complete(ks, claimed[0].execution_id, claimed[0].token, '"by hand"'))
    assert done.dispatch
    assert wapp.slice(needed)["state"] == "live"
    return want, above, claimed[0].execution_id


def test_a_caller_killed_before_dispatching_a_built_slice_leaves_it_to_the_reconciler(wapp, worker):
    want, above, _ = _slice_live_nobody_told(wapp, worker, "above_manual/2026-11-25", "manual/2026-11-25")
    assert above.state().value == "waiting"  # nobody told the upstream want, nor the build
    assert not ended(wapp, want)
    Reconciler(wapp.client, [DependencyScanner(age_s=0)]).run_pass()
    wait_until(lambda: ended(wapp, want), what="the want to end")
    assert wapp.want_status(want)["state"] == "satisfied"
    assert builds_started(wapp) == {"manual/2026-11-25": 1, "above_manual/2026-11-25": 1}


def test_a_caller_killed_between_telling_the_wants_and_flushing_its_messages_leaves_them_to_the_reconciler(
        wapp, worker):
    ks = wapp.client.keys
    # a date whose two slices live in different partitions, so the news travels as a message
    date = next(d for d in (f"2026-10-{n:02d}" for n in range(1, 29))
                if slice_partition(ks, f"manual/{d}.prev") != slice_partition(ks, f"across/{d}"))
    want, above, build = _slice_live_nobody_told(wapp, worker, f"across/{date}", f"manual/{date}.prev")
    resolved = wapp.client.run(resolve_call(wapp.client, build))  # settles, then the caller dies
    assert resolved.done and resolved.sent
    assert above.state().value == "waiting"
    Reconciler(wapp.client, [OutboxScanner(age_s=0)]).run_pass()
    wait_until(lambda: ended(wapp, want), what="the want to end")
    assert wapp.want_status(want)["state"] == "satisfied"
