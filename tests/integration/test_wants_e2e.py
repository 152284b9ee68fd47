"""Wants end to end on a real 3-primary cluster: discovery, one build per slice, failures, cycles."""

from __future__ import annotations

import time

import pytest

from engine import NotFound, metrics
from engine.router import Command
from engine.wants import slice_partition
from reconciler import Reconciler
from reconciler.cli.daemon import refresh_wants
from reconciler.scanners import DeadlineExpiry, IndexCheck, WantCycles, WantRetention
from tests.waiting import wait_until
from tests.wanting import builds_started, ended

pytestmark = pytest.mark.server

def test_a_three_level_chain_discovers_its_inputs_and_builds_each_slice_once(wapp, worker):
    worker()
    want = wapp.want(["report/2026-11-21"], data_timestamp=time.time(), sla_s=3600, ttl_s=7200)
    wait_until(lambda: ended(wapp, want), what="the want to end")
    status = wapp.want_status(want)
    assert status["state"] == "satisfied", status
    for name in ("raw/2026-11-21", "clean/2026-11-21", "report/2026-11-21"):
        assert wapp.slice(name)["state"] == "live"
    assert builds_started(wapp) == {"raw/2026-11-21": 1, "clean/2026-11-21": 1, "report/2026-11-21": 1}
    ks = wapp.client.keys
    partition = slice_partition(ks, "report/2026-11-21")  # every slice of one key shares it
    assert wapp.client.run(Command(("GET", ks.outbox_seq(partition)), ks.outbox_seq(partition))) is None
    report_build = wapp.slice("report/2026-11-21")["build"]
    handle = wapp.handle(report_build)
    assert handle.state() == "succeeded"
    assert handle.info()["attempts"] == "1"  # the attempt that found clean/ missing did not count


def test_upstream_wants_are_made_by_the_build_and_inherit_the_deadlines(wapp, worker):
    worker()
    data_ts = time.time()
    want = wapp.want(["clean/2026-11-22"], data_timestamp=data_ts, sla_s=3600, ttl_s=7200)
    wait_until(lambda: ended(wapp, want), what="the want to end")
    build = wapp.slice("clean/2026-11-22")["build"]
    ks = wapp.client.keys
    key = ks.missing(slice_partition(ks, "clean/2026-11-22"), build)
    upstream_id, state = wapp.client.run(Command(("HGET", key, "raw/2026-11-22"), key)).split("|")
    assert state == "live"
    upstream = wapp.want_status(upstream_id)
    assert upstream["state"] == "satisfied"
    assert upstream["source"] == f"build of clean/2026-11-22 ({build})"
    mine = wapp.want_status(want)
    assert (upstream["sla_due_ms"], upstream["ttl_due_ms"]) == (mine["sla_due_ms"], mine["ttl_due_ms"])


def test_a_thousand_wants_for_one_slice_start_exactly_one_build(wapp, worker, monkeypatch):
    monkeypatch.setenv("WANTING_SLOW_S", "1")
    ids = [wapp.want(["slow/one"]) for _ in range(1000)]
    worker()
    wait_until(lambda: all(ended(wapp, i) for i in ids[-5:]), what="the last wants to end", timeout_s=60)
    assert {wapp.want_status(i)["state"] for i in ids} == {"satisfied"}
    assert builds_started(wapp) == {"slow/one": 1}


def test_wanting_a_live_slice_is_satisfied_in_the_call_itself(wapp, worker):
    first = worker()
    want = wapp.want(["raw/2026-11-23"])
    wait_until(lambda: ended(wapp, want), what="the first want to end")
    first.stop_and_wait()
    again = wapp.want(["raw/2026-11-23"])
    assert wapp.want_status(again)["state"] == "satisfied"
    assert builds_started(wapp) == {"raw/2026-11-23": 1}


def test_force_and_invalidate_rebuild_a_live_slice(wapp, worker):
    worker()
    for _ in range(2):
        want = wapp.want(["raw/2026-11-24"])
        wait_until(lambda want=want: ended(wapp, want), what="the want to end")
    forced = wapp.want(["raw/2026-11-24"], force=True)
    wait_until(lambda: ended(wapp, forced), what="the forced want to end")
    assert wapp.invalidate("raw/2026-11-24") == "live"
    assert wapp.slice("raw/2026-11-24")["state"] == "missing"
    again = wapp.want(["raw/2026-11-24"])
    wait_until(lambda: ended(wapp, again), what="the want after invalidate to end")
    assert builds_started(wapp) == {"raw/2026-11-24": 3}


def test_a_failing_producer_fails_its_want_and_the_wants_above_it_name_the_slice(wapp, worker):
    worker()
    direct = wapp.want(["broken/2026-11-21"])
    above = wapp.want(["pair/2026-11-21"])
    wait_until(lambda: ended(wapp, direct) and ended(wapp, above), what="both wants to end")
    assert wapp.want_status(direct)["state"] == "failed"
    status = wapp.want_status(above)
    assert status["state"] == "upstream_failed"
    assert status["reason"] == "broken/2026-11-21 failed: ValueError: no data for 2026-11-21"
    assert wapp.slice("pair/2026-11-21")["state"] == "failed"
    assert wapp.slice("pair/2026-11-21")["root"] == "broken/2026-11-21"


def test_a_want_for_several_slices_is_satisfied_once_all_are_live(wapp, worker):
    worker()
    names = [f"clean/2026-12-{d:02d}" for d in range(1, 9)]  # spread over partitions
    assert len({slice_partition(wapp.client.keys, n) for n in names}) > 1
    want = wapp.want(names)
    wait_until(lambda: ended(wapp, want), what="the want to end")
    status = wapp.want_status(want)
    assert status["state"] == "satisfied"
    assert status["known"] == {n: "live" for n in names}


@pytest.mark.parametrize(("wanted", "cycle"), [
    (["cyc_a/x"], "dependency cycle: cyc_a/x → cyc_b/x → cyc_c/x → cyc_a/x"),
    (["self/x"], "dependency cycle: self/x → self/x"),
])
def test_a_dependency_cycle_ends_every_want_involved_and_never_loops(wapp, worker, wanted, cycle):
    worker()
    want = wapp.want(wanted)
    wait_until(lambda: ended(wapp, want), what="the want to end")
    status = wapp.want_status(want)
    assert status["state"] in ("failed", "upstream_failed")
    assert status["reason"].endswith(cycle), status["reason"]
    assert set(builds_started(wapp).values()) == {1}


def test_two_wants_that_meet_in_a_cycle_both_end_with_the_cycle_named(wapp, worker, monkeypatch):
    monkeypatch.setenv("WANTING_PING_SLEEP_S", "0.3")  # pong's build waits on ping before ping finds pong missing
    worker()
    ping, pong = wapp.want(["ping/k"]), wapp.want(["pong/k"])
    wait_until(lambda: ended(wapp, ping) and ended(wapp, pong), what="both wants to end")
    for want in (ping, pong):
        status = wapp.want_status(want)
        assert status["state"] in ("failed", "upstream_failed"), status
        assert "dependency cycle: " in status["reason"], status["reason"]
    assert set(builds_started(wapp).values()) == {1}


def test_a_canceled_want_ends_and_its_slice_build_goes_on(wapp, worker, monkeypatch):
    monkeypatch.setenv("WANTING_SLOW_S", "1")
    want, other = wapp.want(["slow/c"]), wapp.want(["slow/c"])
    assert wapp.cancel_want(want, "not needed") == "building"
    assert wapp.want_status(want)["state"] == "canceled"
    worker()
    wait_until(lambda: ended(wapp, other), what="the other want to end")
    assert wapp.want_status(other)["state"] == "satisfied"
    assert wapp.want_status(want)["state"] == "canceled"


def test_a_producer_missing_a_slice_nobody_produces_fails_for_good_saying_so(wapp, worker):
    worker()
    want = wapp.want(["asks_nobody/k"])
    wait_until(lambda: ended(wapp, want), what="the want to end")
    status = wapp.want_status(want)
    assert status["state"] == "failed"
    assert "no producer builds slice 'nobody/k'" in status["reason"]
    build = wapp.handle(wapp.slice("asks_nobody/k")["build"])
    assert (build.info()["attempts"], build.info()["error_kind"]) == ("1", "ContractError")


def test_the_index_check_finds_nothing_to_repair_after_wants_ran_their_course(wapp, worker):
    worker()
    ids = [wapp.want([f"report/2026-09-{d:02d}"]) for d in range(1, 6)] + [wapp.want(["pair/2026-09-01"]),
                                                                            wapp.want(["cyc_a/i"])]
    wait_until(lambda: all(ended(wapp, i) for i in ids), what="the wants to end")
    result = Reconciler(wapp.client, [IndexCheck()]).run_pass()["index_check"]
    assert (result.repaired, result.errors) == (0, 0), result.details


def test_the_daemon_counts_wants_per_state(wapp, worker):
    worker()
    done = wapp.want(["raw/2026-09-09"])
    wait_until(lambda: ended(wapp, done), what="the want to end")
    wapp.want(["manual/2026-09-09"])  # lane manual: nobody builds it
    refresh_wants(wapp.client, list(range(wapp.client.keys.partitions)))
    gauge = {state: metrics.REGISTRY.get_sample_value("flowslot_wants", {"state": state})
             for state in ("satisfied", "building", "failed")}
    assert gauge == {"satisfied": 1, "building": 1, "failed": 0}


def test_a_failed_build_retried_by_hand_makes_its_slice_live(wapp, worker, monkeypatch):
    worker()
    first = wapp.want(["flaky/r"])
    wait_until(lambda: ended(wapp, first), what="the want to end")
    assert wapp.want_status(first)["state"] == "failed"
    build = wapp.handle(wapp.slice("flaky/r")["build"])
    monkeypatch.setenv("WANTING_FLAKY_OK", "1")
    build.retry()
    wait_until(lambda: wapp.slice("flaky/r")["state"] == "live", what="the slice to be live")
    assert wapp.want_status(wapp.want(["flaky/r"]))["state"] == "satisfied"
    assert builds_started(wapp) == {"flaky/r": 2}  # the first build, and its retry


def test_a_cycle_of_builds_started_by_wants_of_their_own_is_ended_by_the_want_cycles_scanner(
        wapp, worker, monkeypatch):
    monkeypatch.setenv("WANTING_TRI_SLEEP_S", "0.5")  # all three builds run before any finds its input missing
    worker()
    names = ["tri_a/k", "tri_b/k", "tri_c/k"]
    ids = [wapp.want([n]) for n in names]
    builds = [wapp.handle(wapp.slice(n)["build"]) for n in names]
    wait_until(lambda: all(b.state().value == "waiting" for b in builds), what="the three builds to wait")
    assert not any(ended(wapp, i) for i in ids)  # each waits for the next: nothing it could see
    result = Reconciler(wapp.client, [WantCycles(age_s=0)]).run_pass()["want_cycles"]
    assert result.repaired >= 1
    wait_until(lambda: all(ended(wapp, i) for i in ids), what="the three wants to end")
    for want in ids:
        status = wapp.want_status(want)
        assert status["state"] in ("failed", "upstream_failed"), status
        assert "dependency cycle: tri_" in status["reason"], status["reason"]
    assert builds_started(wapp) == {n: 1 for n in names}


def test_retention_deletes_ended_wants_and_keeps_their_slices(wapp, worker):
    worker()
    done = wapp.want(["raw/2026-09-20"])
    wait_until(lambda: ended(wapp, done), what="the want to end")
    waiting = wapp.want(["manual/2026-09-20"])  # never ends: kept
    result = Reconciler(wapp.client, [WantRetention(retention_s=0)]).run_pass()["want_retention"]
    assert result.repaired == 1
    with pytest.raises(NotFound):
        wapp.want_status(done)
    assert wapp.want_status(waiting)["state"] == "building"
    assert wapp.slice("raw/2026-09-20")["state"] == "live"
    ks = wapp.client.keys
    p = slice_partition(ks, "raw/2026-09-20")
    leftover = [k for k in (ks.want(p, done), ks.want_slices(p, done))
                if wapp.client.run(Command(("EXISTS", k), k))]
    assert leftover == []
    counts = wapp.client.run(Command(("HGETALL", ks.want_counts(p)), ks.want_counts(p)))
    assert "satisfied" not in counts


def test_a_slice_of_another_partition_failing_fails_a_want_for_several(wapp, worker):
    worker()
    names = ["raw/2026-08-01", "broken/2026-08-02"]
    assert len({slice_partition(wapp.client.keys, n) for n in names}) == 2
    want = wapp.want(names)
    wait_until(lambda: ended(wapp, want), what="the want to end")
    status = wapp.want_status(want)
    assert (status["state"], status["reason"]) == ("failed", "broken/2026-08-02 failed: ValueError: no data "
                                                              "for 2026-08-02")
    wait_until(lambda: wapp.slice("raw/2026-08-01")["state"] == "live", what="the other slice to be built")


def test_canceling_an_upstream_want_fails_the_build_that_spawned_it_and_the_wants_above(wapp, worker):
    worker()  # lane default only: manual/ is never built
    want = wapp.want(["above_manual/2026-08-03"])
    build = wapp.handle(wapp.slice("above_manual/2026-08-03")["build"])
    wait_until(lambda: build.state().value == "waiting", what="the build to find manual/ missing")
    ks = wapp.client.keys
    key = ks.missing(slice_partition(ks, "above_manual/2026-08-03"), build.id)
    upstream = wapp.client.run(Command(("HGET", key, "manual/2026-08-03"), key)).split("|")[0]
    assert wapp.cancel_want(upstream, "not today") == "building"
    wait_until(lambda: ended(wapp, want), what="the want to end")
    status = wapp.want_status(want)
    assert status["state"] == "upstream_failed"
    assert status["reason"] == "manual/2026-08-03 failed: canceled: not today"
    assert build.info()["error_kind"] == "upstream_failed"


def test_a_build_past_its_deadline_while_waiting_for_slices_expires_and_fails_its_wants(wapp, worker):
    worker()  # lane default only: manual/ is never built
    want = wapp.want(["hurried/2026-08-04"])
    build = wapp.handle(wapp.slice("hurried/2026-08-04")["build"])
    wait_until(lambda: build.state().value == "waiting", what="the build to find manual/ missing")
    time.sleep(1.1)
    Reconciler(wapp.client, [DeadlineExpiry()]).run_pass()
    wait_until(lambda: ended(wapp, want), what="the want to end")
    assert build.info()["error_msg"] == "deadline passed while waiting for missing slices"
    status = wapp.want_status(want)
    assert status["state"] == "failed"
    assert status["reason"] == "hurried/2026-08-04 failed: deadline: deadline passed while waiting for missing slices"
