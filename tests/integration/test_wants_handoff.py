"""A discovery chain hands each next build to the worker that made it ready, in the same call
(slice_missing, slice_complete), on a real 3-primary cluster."""

from __future__ import annotations

import pytest

from engine import executions, wants
from engine.router import Command
from engine.wants import slice_partition

pytestmark = pytest.mark.server

DATE = "2026-12-01"
WORKER = "handoff-worker"
LEASE_MS = 30_000


def claim_args(count: int) -> tuple[int, int, str, tuple[str, ...]]:
    return count, LEASE_MS, WORKER, ("default",)


def build_of(app, name: str) -> dict[str, str]:
    ks = app.client.keys
    build = app.slice(name)["build"]
    key = ks.execution(slice_partition(ks, name), build)
    return app.client.run(Command(("HGETALL", key), key))


def ready_ids(app, partition: int) -> list[str]:
    key = app.client.keys.ready(partition, "default")
    return app.client.run(Command(("ZRANGE", key, 0, -1), key))


def claim_report(app) -> tuple[str, str]:
    """Want report/DATE and lease its build as a worker's claim would; (id, token)."""
    app.want([f"report/{DATE}"])
    partition = slice_partition(app.client.keys, f"report/{DATE}")
    reply = app.client.run(executions.claim(app.client.keys, partition, "default", 10, LEASE_MS, WORKER))
    (claimed,) = reply.claimed
    return claimed.execution_id, claimed.token


def missing(app, execution_id: str, token: str, name: str, count: int):
    deps = wants.missing_deps(app, [name])
    return app.client.run(wants.missing_call(app.client.keys, execution_id, token, deps, claim_args(count)))


def test_a_build_that_finds_its_input_missing_gets_the_upstream_build_leased_in_the_same_call(wapp):
    report_id, token = claim_report(wapp)
    reply = missing(wapp, report_id, token, f"clean/{DATE}", 4)
    clean = build_of(wapp, f"clean/{DATE}")
    assert [c.execution_id for c in reply.claimed] == [clean["id"]]
    assert reply.claimed_lanes == ["default"]
    assert reply.claimed[0].task == "wanting.clean" and reply.claimed[0].token == clean["epoch"]
    assert (clean["state"], clean["worker"]) == ("leased", WORKER)
    assert reply.ready == []  # nothing to hint: the caller runs it
    assert clean["id"] not in ready_ids(wapp, slice_partition(wapp.client.keys, f"clean/{DATE}"))


def test_without_room_the_upstream_build_is_ready_and_hinted_instead(wapp):
    report_id, token = claim_report(wapp)
    reply = missing(wapp, report_id, token, f"clean/{DATE}", 0)
    clean = build_of(wapp, f"clean/{DATE}")
    assert reply.claimed == [] and clean["state"] == "ready"
    assert [r.id for r in reply.ready] == [clean["id"]]


def test_a_builds_completion_tells_its_wants_and_leases_the_build_it_resumed(wapp):
    report_id, report_token = claim_report(wapp)
    clean = missing(wapp, report_id, report_token, f"clean/{DATE}", 4).claimed[0]
    raw = missing(wapp, clean.execution_id, clean.token, f"raw/{DATE}", 4).claimed[0]
    ks = wapp.client.keys
    done = wapp.client.run(wants.complete_call(ks, raw.execution_id, raw.token, '"raw"', 150, claim_args(4)))
    assert done.outcome == "succeeded" and done.dispatch == []
    assert wapp.slice(f"raw/{DATE}")["state"] == "live"
    resumed = build_of(wapp, f"clean/{DATE}")
    assert [c.execution_id for c in done.claimed] == [clean.execution_id]
    assert (resumed["state"], resumed["worker"], done.claimed[0].token) == ("leased", WORKER, resumed["epoch"])
    partition = slice_partition(ks, f"raw/{DATE}")
    pending = wapp.client.run(Command(("ZRANGE", ks.pending_dispatch(partition), 0, -1),
                                      ks.pending_dispatch(partition)))
    assert raw.execution_id not in pending  # every wait for raw/ was told in the call itself
    # no room this time: the report build it resumes is ready, to hint
    again = wapp.client.run(wants.complete_call(ks, clean.execution_id, done.claimed[0].token, '"clean"', 150,
                                                claim_args(0)))
    report = build_of(wapp, f"report/{DATE}")
    assert again.claimed == [] and report["state"] == "ready"
    assert [r.id for r in again.ready] == [report_id]


def test_a_repeated_build_completion_changes_nothing(wapp):
    report_id, report_token = claim_report(wapp)
    clean = missing(wapp, report_id, report_token, f"clean/{DATE}", 4).claimed[0]
    raw = missing(wapp, clean.execution_id, clean.token, f"raw/{DATE}", 4).claimed[0]
    ks = wapp.client.keys
    call = wants.complete_call(ks, raw.execution_id, raw.token, '"raw"', 150, claim_args(4))
    first = wapp.client.run(call)
    repeat = wapp.client.run(call)
    assert len(first.claimed) == 1
    assert (repeat.outcome, repeat.claimed, repeat.ready, repeat.sent) == ("succeeded", [], [], 0)
