"""SLA and TTL on business time: anchored on data_timestamp, evaluated by the want_deadlines scanner."""

from __future__ import annotations

import time

import pytest

from engine import metrics
from reconciler import Reconciler
from reconciler.scanners import WantCycles, WantDeadlines, WantRetention
from tests.waiting import wait_until
from tests.wanting import ended, events

pytestmark = pytest.mark.server


def breaches() -> float:
    return metrics.REGISTRY.get_sample_value("flowslot_want_sla_breaches_total") or 0.0


def scan(app) -> None:
    Reconciler(app.client, [WantDeadlines()]).run_pass()


def test_a_want_past_its_sla_is_flagged_once_counted_and_its_breach_task_runs(wapp, worker):
    want = wapp.want(["slow/sla"], data_timestamp=time.time() - 100, sla_s=50, ttl_s=3600)
    before = breaches()
    scan(wapp)
    scan(wapp)
    status = wapp.want_status(want)
    assert status["state"] == "building"  # flagged, still trying
    assert int(status["breached_ms"]) > 0
    assert breaches() == before + 1
    flagged = [e for e in events(wapp) if e.get("want") == want and e["detail"] == "sla breached"]
    assert len(flagged) == 1
    worker()
    breach = wapp.handle(status["breach_execution"])
    assert breach.result(timeout=15) == want


def test_a_want_satisfied_in_time_is_never_flagged(wapp, worker):
    worker()
    first = wapp.want(["raw/2026-11-26"])
    wait_until(lambda: ended(wapp, first), what="the slice to be built")
    late_data = wapp.want(["raw/2026-11-26"], data_timestamp=time.time() - 100, sla_s=50)
    before = breaches()
    scan(wapp)
    assert wapp.want_status(late_data)["state"] == "satisfied"
    assert "breached_ms" not in wapp.want_status(late_data)
    assert breaches() == before


def test_the_same_logical_want_has_the_same_deadlines_whenever_it_is_made(wapp):
    data_ts = 1_790_000_000.0
    a = wapp.want(["slow/d1"], data_timestamp=data_ts, sla_s=60, ttl_s=10**9)
    time.sleep(0.05)
    b = wapp.want(["slow/d1"], data_timestamp=data_ts, sla_s=60, ttl_s=10**9)
    due = [(wapp.want_status(w)["sla_due_ms"], wapp.want_status(w)["ttl_due_ms"]) for w in (a, b)]
    assert due[0] == due[1] == (str(int(data_ts * 1000) + 60_000), str(int(data_ts * 1000) + 10**12))


def test_a_want_whose_ttl_had_passed_is_expired_when_made(wapp):
    want = wapp.want(["slow/old"], data_timestamp=time.time() - 100, ttl_s=10)
    status = wapp.want_status(want)
    assert status["state"] == "expired"
    assert wapp.slice("slow/old")["state"] == "missing"  # nothing was built for it


def test_past_its_ttl_a_want_expires_and_the_build_that_spawned_it_fails(wapp, worker):
    worker()  # serves lane default only: manual/ is never built
    want = wapp.want(["above_manual/ttl"], data_timestamp=time.time(), ttl_s=1.0)
    build = wapp.handle(wapp.slice("above_manual/ttl")["build"])
    wait_until(lambda: build.state().value == "waiting", what="the build to find manual/ missing")
    time.sleep(1.1)
    scan(wapp)
    assert wapp.want_status(want)["state"] == "expired"
    wait_until(lambda: build.state().value == "failed", what="the build to fail")
    assert build.info()["error_kind"] == "upstream_failed"


def test_a_quiet_pass_of_the_want_scanners_costs_one_call_per_partition_whatever_is_stored(wapp):
    def quiet_pass():
        scanners = [WantDeadlines(), WantCycles(), WantRetention()]
        return {n: r.commands for n, r in Reconciler(wapp.client, scanners).run_pass().items()}

    empty = quiet_pass()
    for i in range(300):
        wapp.want([f"slow/q{i}"], data_timestamp=time.time(), sla_s=3600, ttl_s=7200)
    assert quiet_pass() == empty == {name: wapp.client.keys.partitions for name in empty}
