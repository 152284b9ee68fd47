"""Flow semantics through the Lua functions and the dispatcher, on fakeredis and real Valkey.

Steps are driven by hand (claim, complete, fail, cancel) so each cell of the
semantics table is checked exactly; the end-to-end tests with workers are in
tests/integration/test_flows_e2e.py.
"""

from __future__ import annotations

import json

import pytest

from engine import App, ContractError, InvalidState
from engine import executions as X
from engine.dispatcher import dispatch
from engine.router import Command
from tests.conftest import snapshot


@pytest.fixture
def app(lua_client, namespace):
    app = App(client=lua_client, namespace=namespace, partitions=lua_client.keys.partitions)
    for name in ("up", "child", "a", "b", "c", "leaf"):
        app.task(name=f"t.{name}")(lambda *a, **k: None)
    return app


def claim_step(app, run, step, lane="default"):
    """Lease this step; other steps leased on the way are remembered for later calls."""
    eid = run.step_execution(step)
    leases = app.__dict__.setdefault("_test_leases", {})
    while eid not in leases:
        reply = app.client.run(X.claim(app.client.keys, run.partition, lane, 100, 30_000, "w"))
        if not reply.claimed:
            raise AssertionError(f"step {step} was not claimable")
        leases.update({c.execution_id: c for c in reply.claimed})
    return leases.pop(eid)


def finish(app, run, step, outcome, result=None):
    """Drive one step to an outcome the way a worker / operator would, then dispatch."""
    eid = run.step_execution(step)
    ks = app.client.keys
    if outcome == "succeeded":
        c = claim_step(app, run, step)
        app.client.run(X.complete(ks, eid, c.token, json.dumps(result)))
    elif outcome == "failed":
        c = claim_step(app, run, step)
        app.client.run(X.fail(ks, eid, c.token, "ValueError", "bad", False, 0.0))
    elif outcome == "canceled":
        app.client.run(X.cancel(ks, eid))
    elif outcome == "expired":
        # back-date the deadline of a ready step; the next claim expires it
        app.client.run(Command(("HSET", ks.execution(run.partition, eid), "deadline_ms", 1),
                               ks.execution(run.partition, eid)))
        reply = app.client.run(X.claim(ks, run.partition, "default", 10, 30_000, "w"))
        assert eid in reply.expired
    dispatch(app.client, [eid])


def state(run, step):
    return _info(run, step)["state"]


def _info(run, step):
    eid = run.step_execution(step)
    key = run.client.keys.execution(run.partition, eid)
    return run.client.run(Command(("HGETALL", key), key))


def inputs(run, step):
    key = run.client.keys.inputs(run.partition, run.step_execution(step))
    return {k: json.loads(v) for k, v in run.client.run(Command(("HGETALL", key), key)).items()}


def make_upstream(app, flow, outcome):
    """The 'up' step; for 'skipped' it sits behind a root that fails."""
    if outcome == "skipped":
        root = flow.step("root", "t.a")
        return flow.step("up", "t.up", root.ref())
    return flow.step("up", "t.up")


EXPECTED = {
    # (upstream outcome, edge kind) -> (child state, input passed or None)
    **{("succeeded", k): ("ready", 7 if k in ("ref", "ref_or_default") else None)
       for k in ("ref", "ref_or_default", "after", "after_any")},
    **{(o, k): v for o in ("failed", "skipped", "canceled", "expired")
       for k, v in {"ref": ("skipped", None), "ref_or_default": ("ready", "dflt"),
                    "after": ("skipped", None), "after_any": ("ready", None)}.items()},
}


@pytest.mark.parametrize("outcome, kind", sorted(EXPECTED))
def test_every_cell_of_the_edge_semantics_table(app, outcome, kind):
    flow = app.flow("table")
    up = make_upstream(app, flow, outcome)
    if kind == "ref":
        flow.step("child", "t.child", up.ref())
    elif kind == "ref_or_default":
        flow.step("child", "t.child", up.ref_or_default("dflt"))
    else:
        flow.step("child", "t.child", **{kind: [up]})
    run = flow.submit()
    if outcome == "skipped":
        finish(app, run, "root", "failed")
        assert state(run, "up") == "skipped"
    else:
        finish(app, run, "up", outcome, result=7)
    want_state, want_input = EXPECTED[(outcome, kind)]
    assert state(run, "child") == want_state
    if want_input is not None:
        assert inputs(run, "child") == {"up": want_input}
    edge = _edge(run, "child", "up")
    assert edge == ("satisfied" if want_state == "ready" else "impossible")


def _edge(run, child, up):
    key = run.client.keys.edges_in(run.partition, run.step_execution(child))
    return run.client.run(Command(("HGET", key, up), key)).split("|")[1]


def test_a_fan_in_child_receives_every_parents_result(app):
    flow = app.flow("fan-in")
    parents = [flow.step(name, f"t.{name}") for name in ("a", "b", "c")]
    flow.step("child", "t.child", [p.ref() for p in parents])
    run = flow.submit()
    for n, name in enumerate(("a", "b", "c")):
        assert state(run, "child") == "blocked"
        finish(app, run, name, "succeeded", result={"n": n})
    assert state(run, "child") == "ready"
    assert inputs(run, "child") == {"a": {"n": 0}, "b": {"n": 1}, "c": {"n": 2}}


def test_a_completion_without_a_result_passes_none(app):
    flow = app.flow("none")
    up = flow.step("up", "t.up")
    flow.step("child", "t.child", up.ref())
    run = flow.submit()
    finish(app, run, "up", "succeeded", result=None)
    assert inputs(run, "child") == {"up": None}


@pytest.mark.parametrize("outcomes, expected", [
    (["succeeded"], "ready"),              # first success satisfies
    (["failed", "failed"], "blocked"),    # one parent still pending
    (["failed", "failed", "failed"], "skipped"),
])
def test_any_of_runs_on_the_first_success_and_skips_when_all_fail(app, outcomes, expected):
    flow = app.flow("any")
    parents = [flow.step(n, f"t.{n}") for n in ("a", "b", "c")]
    flow.step("child", "t.child", after=parents, any_of=True)
    run = flow.submit()
    for name, outcome in zip(("a", "b", "c"), outcomes, strict=False):
        finish(app, run, name, outcome)
    assert state(run, "child") == expected


@pytest.mark.parametrize("outcomes, expected", [
    (["succeeded", "succeeded"], "ready"),
    (["succeeded", "failed"], "blocked"),
    (["failed", "failed"], "skipped"),  # 2 of 3 needed, only 1 can still succeed
])
def test_quorum_needs_n_successes_and_skips_as_soon_as_it_cannot_reach_them(app, outcomes, expected):
    flow = app.flow("quorum")
    parents = [flow.step(n, f"t.{n}") for n in ("a", "b", "c")]
    flow.step("child", "t.child", after=parents, quorum=2)
    run = flow.submit()
    for name, outcome in zip(("a", "b"), outcomes, strict=False):
        finish(app, run, name, outcome)
    assert state(run, "child") == expected


def test_an_optional_step_failing_does_not_fail_the_flow(app):
    flow = app.flow("optional")
    enrich = flow.step("a", "t.a", optional=True)
    flow.step("b", "t.b", enrich.ref_or_default({}))
    run = flow.submit()
    finish(app, run, "a", "failed")
    finish(app, run, "b", "succeeded")
    assert run.status()["state"] == "succeeded"


def test_an_optional_step_skipped_behind_a_failed_optional_upstream_does_not_fail_the_flow(app):
    flow = app.flow("optional-skipped")
    a = flow.step("a", "t.a", optional=True)
    flow.step("b", "t.b", a.ref(), optional=True)
    flow.step("c", "t.c", after_any=[a])
    run = flow.submit()
    finish(app, run, "a", "failed")
    assert state(run, "b") == "skipped"
    finish(app, run, "c", "succeeded")
    assert run.status()["state"] == "succeeded"


def test_a_canceled_flow_with_an_optional_step_succeeds_once_retried(app):
    """flow_cancel counts a canceled optional step as not failing the flow, so a retry that
    re-runs every step can succeed."""
    flow = app.flow("cancel-optional-retry")
    flow.step("a", "t.a", optional=True)
    flow.step("b", "t.b")
    run = flow.submit()
    run.cancel()
    assert run.status()["state"] == "canceled"
    run.retry()
    finish(app, run, "a", "succeeded")
    finish(app, run, "b", "succeeded")
    assert run.status()["state"] == "succeeded"


def test_a_required_step_failing_fails_the_flow_once_every_step_is_terminal(app):
    flow = app.flow("required")
    a = flow.step("a", "t.a")
    flow.step("b", "t.b", after_any=[a])
    run = flow.submit()
    finish(app, run, "a", "failed")
    assert run.status()["state"] == "running"  # b still runs: after_any after a failure
    finish(app, run, "b", "succeeded")
    status = run.status()
    assert status["state"] == "failed"
    assert status["counts"] == {"failed": 1, "succeeded": 1}


def test_a_root_failure_skips_a_thousand_descendants_through_the_cascade(app):
    flow = app.flow("tree")
    root = flow.step("root", "t.a")
    level1 = [flow.step(f"l1-{i}", "t.b", root.ref()) for i in range(10)]
    level2 = [flow.step(f"l2-{i}-{j}", "t.c", p.ref()) for i, p in enumerate(level1) for j in range(10)]
    for n, parent in enumerate(level2):
        for j in range(9):
            flow.step(f"l3-{n}-{j}", "t.leaf", after=[parent])
    assert len(flow.steps) == 1 + 10 + 100 + 900
    run = flow.submit()
    eid = run.step_execution("root")
    c = claim_step(app, run, "root")
    app.client.run(X.fail(app.client.keys, eid, c.token, "E", "x", False, 0.0))
    stats = dispatch(app.client, [eid])
    assert stats.skipped == 1010 and stats.rounds == 3  # leaves have no children: not dispatched
    assert (stats.impossible, stats.satisfied, stats.already_resolved) == (1010, 0, 0)
    again = dispatch(app.client, [eid])  # a repeat resolves nothing twice
    assert (again.edges, again.skipped, again.rounds) == (0, 0, 1)
    status = run.status()
    assert status["state"] == "failed"
    assert status["counts"] == {"failed": 1, "skipped": 1010}
    assert status["terminal"] == status["total"] == 1011
    pending = app.client.keys.pending_dispatch(run.partition)
    assert app.client.run(Command(("ZCARD", pending), pending)) == 0


def test_a_large_flow_is_submitted_in_batches_and_nothing_runs_before_the_last(app):
    flow = app.flow("batched")
    for i in range(25):
        flow.step(f"s{i}", "t.a")
    run = flow.submit(budget=10)
    assert run.status()["counts"] == {"ready": 25}


def test_dynamic_steps_run_after_their_parent_and_a_redelivery_adds_nothing(app):
    from engine.flows import add_dynamic_step

    flow = app.flow("dynamic")
    flow.step("a", "t.a")
    run = flow.submit()
    c = claim_step(app, run, "a")
    add = lambda: add_dynamic_step(app, run.id, c.execution_id, "a", "extra", "t.b", [1], None, (), (), {})  # noqa: E731
    add()
    assert state(run, "extra") == "blocked"
    before = snapshot(app.client)
    add()  # the same handler, redelivered
    assert snapshot(app.client) == before
    assert run.status()["total"] == 2
    app.client.run(X.complete(app.client.keys, c.execution_id, c.token, "1"))
    dispatch(app.client, [c.execution_id])
    assert state(run, "extra") == "ready"


def test_dynamic_steps_are_refused_once_the_flow_is_canceled(app):
    from engine.flows import add_dynamic_step

    flow = app.flow("dynamic-canceled")
    flow.step("a", "t.a")
    run = flow.submit()
    c = claim_step(app, run, "a")
    run.cancel()
    with pytest.raises(InvalidState, match="canceled"):
        add_dynamic_step(app, run.id, c.execution_id, "a", "extra", "t.b", [], None, (), (), {})


def test_cancel_cancels_every_unfinished_step_and_is_idempotent(app):
    flow = app.flow("cancel")
    a = flow.step("a", "t.a")
    flow.step("b", "t.b", a.ref())
    run = flow.submit()
    claim_step(app, run, "a")  # a is leased: canceled too, told at renewal
    assert run.cancel() == "running"
    assert run.cancel() == "canceled"
    status = run.status()
    assert status["state"] == "canceled" and status["counts"] == {"canceled": 2}


def test_pause_holds_ready_steps_and_resume_releases_them(app):
    flow = app.flow("pause")
    flow.step("a", "t.a")
    flow.step("b", "t.b")
    run = flow.submit()
    ks = app.client.keys
    running = app.client.run(X.claim(ks, run.partition, "default", 1, 30_000, "w")).claimed[0]
    assert run.pause() == "pausing"  # one step is still running
    reply = app.client.run(X.claim(ks, run.partition, "default", 10, 30_000, "w"))
    assert reply.claimed == []  # the other is held, not leased
    app.client.run(X.complete(ks, running.execution_id, running.token, "1"))
    assert run.status()["state"] == "paused"
    assert run.pause() == "paused"  # idempotent
    assert run.resume() == "running"
    assert run.resume() == "running"  # idempotent
    other = app.client.run(X.claim(ks, run.partition, "default", 10, 30_000, "w")).claimed
    assert len(other) == 1 and other[0].execution_id != running.execution_id


def test_a_step_held_at_claim_by_a_pausing_flow_keeps_its_priority(app):
    flow = app.flow("held-priority")
    flow.step("a", "t.a", priority=200)
    flow.step("b", "t.b", priority=100)
    run = flow.submit()
    ks = app.client.keys
    running = app.client.run(X.claim(ks, run.partition, "default", 1, 30_000, "w")).claimed[0]
    assert running.execution_id == run.step_execution("a")
    assert run.pause() == "pausing"
    assert app.client.run(X.claim(ks, run.partition, "default", 10, 30_000, "w")).claimed == []
    held = ks.flow_held(run.partition, run.id)
    score = app.client.run(Command(("ZSCORE", held, run.step_execution("b")), held))
    assert int(float(score)) // 2**41 == 255 - 100  # the ready score's priority band


def _unchanged(app, build):
    before = snapshot(app.client)
    with pytest.raises(ContractError) as error:
        build()
    assert snapshot(app.client) == before
    return str(error.value)


def test_invalid_flows_are_refused_before_anything_is_written(app):
    def duplicate():
        flow = app.flow("dup")
        flow.step("a", "t.a")
        flow.step("a", "t.a")

    def unknown():
        flow = app.flow("unknown")
        flow.step("a", "t.a", after=["ghost"])
        flow.submit()

    def cycle():
        flow = app.flow("cycle")
        flow.step("a", "t.a", after=["b"])
        flow.step("b", "t.b", after=["a"])
        flow.submit()

    def foreign():
        other = app.flow("other").step("x", "t.a")
        app.flow("mine").step("a", "t.a", other.ref())

    def too_many():
        flow = app.flow("big", max_steps=3)
        for i in range(4):
            flow.step(f"s{i}", "t.a")

    def not_json():
        flow = app.flow("json")
        flow.step("a", "t.a", object())
        flow.submit()

    assert "duplicate step id 'a'" in _unchanged(app, duplicate)
    assert "unknown step 'ghost'" in _unchanged(app, unknown)
    assert "cycle through steps a, b" in _unchanged(app, cycle)
    assert "step 'x' of another flow" in _unchanged(app, foreign)
    assert "more than 3 steps" in _unchanged(app, too_many)
    assert "not JSON-serializable" in _unchanged(app, not_json)


def test_retry_reruns_failed_and_skipped_steps_and_keeps_succeeded_results(app):
    flow = app.flow("retry")
    ok = flow.step("a", "t.a")
    bad = flow.step("b", "t.b")
    flow.step("c", "t.c", ok.ref(), bad.ref())
    run = flow.submit()
    finish(app, run, "a", "succeeded", result=1)
    finish(app, run, "b", "failed")
    assert run.status()["state"] == "failed" and state(run, "c") == "skipped"
    assert run.retry() == "running"
    assert (state(run, "a"), state(run, "b"), state(run, "c")) == ("succeeded", "ready", "blocked")
    assert run.status()["counts"] == {"succeeded": 1, "ready": 1, "blocked": 1}
    finish(app, run, "b", "succeeded", result=2)
    assert state(run, "c") == "ready"
    assert inputs(run, "c") == {"a": 1, "b": 2}
    finish(app, run, "c", "succeeded")
    assert run.status()["state"] == "succeeded"


def test_exec_retry_runs_a_failed_standalone_execution_again(app):
    from engine.handle import Handle

    handle = app.submit("t.a")
    c = app.client.run(X.claim(app.client.keys, X.execution_partition(app.client.keys, handle.id),
                               "default", 1, 30_000, "w")).claimed[0]
    app.client.run(X.fail(app.client.keys, handle.id, c.token, "E", "x", False, 0.0))
    assert Handle(app.client, handle.id).retry() == "failed"
    info = handle.info()
    assert (info["state"], info["attempts"]) == ("ready", "0") and "error_kind" not in info
    with pytest.raises(InvalidState):
        Handle(app.client, handle.id).retry()  # ready is not retryable


def test_an_expired_step_and_an_expired_execution_retried_run_with_fresh_attempts_and_no_deadline(app):
    from engine.handle import Handle, read_execution

    flow = app.flow("late")
    flow.step("x", "t.a", deadline_s=60)
    run = flow.submit()
    finish(app, run, "x", "expired")
    handle = app.submit("t.a", deadline_s=60)
    partition = X.execution_partition(app.client.keys, handle.id)
    key = app.client.keys.execution(partition, handle.id)
    app.client.run(Command(("HSET", key, "deadline_ms", 1), key))  # its deadline passed
    # (before the flow's retry: a claim of this partition would lease its step when they share it)
    assert handle.id in app.client.run(X.claim(app.client.keys, partition, "default", 10, 30_000, "w")).expired
    assert run.retry() == "running"
    assert Handle(app.client, handle.id).retry() == "expired"
    for eid in (run.step_execution("x"), handle.id):
        info = read_execution(app.client, eid)
        assert (info["state"], info["attempts"], info["deadline_ms"]) == ("ready", "0", "0")
        deadlines = app.client.keys.deadlines(X.execution_partition(app.client.keys, eid))
        assert app.client.run(Command(("ZSCORE", deadlines, eid), deadlines)) is None
    assert claim_step(app, run, "x").attempt == 1  # claimed, not expired again


def test_a_succeeded_flow_has_nothing_to_retry(app):
    flow = app.flow("ok")
    flow.step("x", "t.a")
    run = flow.submit()
    finish(app, run, "x", "succeeded")
    with pytest.raises(InvalidState, match="only failed or canceled flows"):
        run.retry()


def test_a_flow_step_stores_only_fields_off_their_default_and_reads_back_whole(app):
    from engine.handle import read_execution

    flow = app.flow("stored")
    up = flow.step("up", "t.up")
    flow.step("child", "t.child", up.ref(), priority=5, optional=True)
    run = flow.submit()
    key = app.client.keys.execution(run.partition, run.step_execution("child"))
    stored = app.client.run(Command(("HGETALL", key), key))
    assert {"attempts", "epoch", "max_attempts", "policy", "quorum", "req_ok", "soft_total"}.isdisjoint(stored)
    assert (stored["priority"], stored["optional"], stored["req_total"]) == ("5", "1", "1")
    shown = read_execution(app.client, run.step_execution("child"))
    assert {k: shown[k] for k in ("attempts", "epoch", "max_attempts", "policy", "quorum", "req_ok",
                                  "soft_total", "priority", "optional")} == {
        "attempts": "0", "epoch": "0", "max_attempts": "3", "policy": "all", "quorum": "0", "req_ok": "0",
        "soft_total": "0", "priority": "5", "optional": "1"}


def test_a_dynamic_step_on_an_upstream_that_already_finished_has_that_edge_resolved_at_once(app):
    from engine.flows import add_dynamic_step

    flow = app.flow("late-edge")
    flow.step("a", "t.a")
    flow.step("b", "t.b")
    run = flow.submit()
    a = claim_step(app, run, "a")
    app.client.run(X.complete(app.client.keys, a.execution_id, a.token, "1"))
    b = claim_step(app, run, "b")
    add_dynamic_step(app, run.id, b.execution_id, "b", "extra", "t.c", [1], None, ["a"], (), {})
    key = app.client.keys.edges_in(run.partition, run.step_execution("extra"))
    assert app.client.run(Command(("HGETALL", key), key)) == {"a": "after|satisfied", "b": "after|pending"}
    app.client.run(X.complete(app.client.keys, b.execution_id, b.token, "2"))
    dispatch(app.client, [b.execution_id])
    assert state(run, "extra") == "ready"


def test_a_fan_in_submitted_in_many_calls_has_every_edge_once_and_each_out_list_in_order(app):
    flow = app.flow("wide")
    root = flow.step("root", "t.a")
    middles = [flow.step(f"m{i}", "t.b", root.ref()) for i in range(60)]
    flow.step("join", "t.c", [m.ref() for m in middles])
    run = flow.submit(budget=40)  # many calls; the join's edges are split into appends
    ks, p = app.client.keys, run.partition
    out = ks.edges_out(p, run.step_execution("root"))
    assert app.client.run(Command(("LRANGE", out, 0, -1), out)) == [run.step_execution(f"m{i}") for i in range(60)]
    join = ks.edges_in(p, run.step_execution("join"))
    assert app.client.run(Command(("HGETALL", join), join)) == {f"m{i}": "ref|pending" for i in range(60)}
    for i in range(60):
        m_out = ks.edges_out(p, run.step_execution(f"m{i}"))
        assert app.client.run(Command(("LRANGE", m_out, 0, -1), m_out)) == [run.step_execution("join")]
    assert run.status()["counts"] == {"ready": 1, "blocked": 61}


def test_a_flows_timeline_limit_counts_its_own_events_not_the_entries_of_other_work_before_them(app):
    from engine import events

    correlate = {"order_id": "o-1"}
    partition = events.correlation(correlate).partition(app.client.keys.partitions)
    for _ in range(30):  # thirty calls of other work in the flow's partition, each its own entry
        spec, _ = app.prepare("t.a", partition=partition)
        app.client.run(X.submit(app.client.keys, spec, partition))
    flow = app.flow("late", correlate=correlate)
    flow.step("a", "t.a")
    run = flow.submit()
    assert run.partition == partition
    first = [(e.get("id"), e["from"], e["to"]) for e in run.timeline(limit=3)]
    a = run.step_execution("a")
    assert first == [(None, "", "running"), (a, "", "blocked"), (a, "blocked", "ready")]
    assert len(run.describe(timeline_limit=2)["timeline"]) == 2


def test_describe_says_in_words_how_long_a_lease_and_a_retry_back_off_have_left(app):
    from engine.policy import Retry

    flow = app.flow("blockers")
    flow.step("a", "t.a", retry=Retry(max_attempts=3, backoff_s=600, backoff_max_s=600))
    run = flow.submit()
    claimed = claim_step(app, run, "a")  # leased for 30 s
    [blocker] = next(s for s in run.describe()["steps"] if s["step"] == "a")["blockers"]
    assert blocker in ("running on w, lease ends in 29 s", "running on w, lease ends in 30 s")
    ks, eid = app.client.keys, run.step_execution("a")
    app.client.run(X.fail(ks, eid, claimed.token, "ValueError", "bad", True, 1.0))  # full back-off: 600 s
    [blocker] = next(s for s in run.describe()["steps"] if s["step"] == "a")["blockers"]
    assert blocker in ("retry back-off, due in 9 min (attempt 1 failed: ValueError)",
                       "retry back-off, due in 10 min (attempt 1 failed: ValueError)")


def test_describe_counts_a_step_queued_again_after_a_failed_attempt_from_its_new_ready_time(app):
    from engine.policy import Retry

    flow = app.flow("requeued")
    flow.step("a", "t.a", retry=Retry(max_attempts=3, backoff_s=0))
    run = flow.submit()
    claimed = claim_step(app, run, "a")
    app.client.run(X.fail(app.client.keys, run.step_execution("a"), claimed.token, "ValueError", "bad",
                          True, 0.0))  # no back-off: ready again at once
    step = next(s for s in run.describe()["steps"] if s["step"] == "a")
    assert step["state"] == "ready" and step["attempts"] == 1
    assert step["queued_ms"] is not None and 0 <= step["queued_ms"] < 60_000
