"""The index check (``rec_audit`` through ``IndexCheck``) repairs what a half-applied
transition can leave, on fakeredis and real Valkey.

Each test builds a healthy state through the normal functions, plants one drift
by hand (as a transition cut short after its event would leave it), runs the
scanner over every partition, and checks the repair, that it was counted and
logged, and that a second pass repairs nothing.
"""

from __future__ import annotations

import json
import logging

from engine import executions as X
from engine.router import Command
from reconciler import IndexCheck
from reconciler.scanners import ScanResult
from tests.lua.test_flows import app, claim_step, finish, state  # noqa: F401 - the app fixture


def run(app, *args, key):
    return app.client.run(Command(args, key))


def check(app, **options) -> ScanResult:
    result = IndexCheck(**options).run(app.client, range(app.client.keys.partitions))
    assert result.errors == 0  # a failing call would look like a quiet one
    return result


def kinds(result: ScanResult) -> list[str]:
    return sorted(kind for kind, _, _ in result.details)


def repaired_once(app, caplog, *expected: str) -> ScanResult:
    """One pass repairs exactly `expected` (kinds, logged one line each); the next repairs nothing."""
    with caplog.at_level(logging.WARNING, logger="flowslot.reconciler"):
        result = check(app)
    assert kinds(result) == sorted(expected)
    assert result.repaired == len(expected)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("index check repaired")]
    assert len(lines) == len(expected)
    for (kind, eid, _), line in zip(result.details, lines, strict=False):
        assert kind in line and eid in line
    assert check(app).repaired == 0
    return result


def submitted(app, **options):
    handle = app.submit("t.a", **options)
    return handle.id, X.execution_partition(app.client.keys, handle.id)


def claimed(app, partition):
    return app.client.run(X.claim(app.client.keys, partition, "default", 1, 30_000, "w")).claimed[0]


def exec_field(app, eid, partition, field):
    key = app.client.keys.execution(partition, eid)
    return run(app, "HGET", key, field, key=key)


def score(app, key, member):
    return run(app, "ZSCORE", key, member, key=key)


def hinted(app, partition, lane="default"):
    key = app.client.keys.hint(lane, app.client.keys.hint_index(partition))
    return str(partition) in run(app, "LRANGE", key, 0, -1, key=key)


def clear_hints(app, partition, lane="default"):
    key = app.client.keys.hint(lane, app.client.keys.hint_index(partition))
    run(app, "DEL", key, key=key)


# -- standalone executions --------------------------------------------------

def test_a_ready_execution_missing_from_its_ready_set_is_put_back_and_hinted(app, caplog):
    eid, p = submitted(app)
    ready = app.client.keys.ready(p, "default")
    run(app, "ZREM", ready, eid, key=ready)
    clear_hints(app, p)
    repaired_once(app, caplog, "ready_set")
    assert score(app, ready, eid) is not None
    assert hinted(app, p)
    assert claimed(app, p).execution_id == eid


def test_a_leased_execution_without_a_lease_entry_gets_one_at_its_lease_expiry(app, caplog):
    eid, p = submitted(app)
    claimed(app, p)
    leases = app.client.keys.leases(p)
    run(app, "ZREM", leases, eid, key=leases)
    repaired_once(app, caplog, "lease_index")
    assert int(float(score(app, leases, eid))) == int(exec_field(app, eid, p, "lease_expiry_ms"))


def test_a_drift_of_one_execution_of_a_batch_claim_is_found_through_its_grouped_event_record(app, caplog):
    """A claim of several executions records its transitions as one 'g' field; the check reads each id."""
    handles = app.submit_many("t.a", [()] * 5)
    p = X.execution_partition(app.client.keys, handles[0].id)
    assert {X.execution_partition(app.client.keys, h.id) for h in handles} == {p}
    got = app.client.run(X.claim(app.client.keys, p, "default", 5, 30_000, "w")).claimed
    assert len(got) == 5
    events = app.client.keys.events(p)
    assert [field for field in run(app, "XRANGE", events, "-", "+", key=events)[-1][1][::2]] == ["g"]
    leases = app.client.keys.leases(p)
    lost = got[3].execution_id
    run(app, "ZREM", leases, lost, key=leases)
    repaired_once(app, caplog, "lease_index")
    assert int(float(score(app, leases, lost))) == int(exec_field(app, lost, p, "lease_expiry_ms"))


def test_a_delayed_execution_missing_from_the_delayed_index_is_added_at_its_due_time(app, caplog):
    eid, p = submitted(app, delay_s=3600)
    delayed = app.client.keys.delayed(p)
    run(app, "ZREM", delayed, eid, key=delayed)
    repaired_once(app, caplog, "delayed_index")
    assert int(float(score(app, delayed, eid))) == int(exec_field(app, eid, p, "due_ms"))


def test_a_deadline_missing_from_the_deadline_index_is_added(app, caplog):
    eid, p = submitted(app, deadline_s=3600)
    deadlines = app.client.keys.deadlines(p)
    run(app, "ZREM", deadlines, eid, key=deadlines)
    repaired_once(app, caplog, "deadline_index")
    assert int(float(score(app, deadlines, eid))) == int(exec_field(app, eid, p, "deadline_ms"))


def test_a_watched_terminal_execution_without_done_marker_or_terminal_entry_gets_both(app, caplog):
    handle = app.submit("t.a")
    p = X.execution_partition(app.client.keys, handle.id)
    app.client.run(X.watch(app.client.keys, handle.id))  # a result waiter asked for the marker
    c = claimed(app, p)
    app.client.run(X.complete(app.client.keys, handle.id, c.token, "5"))
    done, terminal = app.client.keys.done(p, handle.id), app.client.keys.terminal(p)
    run(app, "DEL", done, key=done)
    run(app, "ZREM", terminal, handle.id, key=terminal)
    repaired_once(app, caplog, "done_marker", "terminal_index")
    assert handle.result(timeout=1) == 5  # a waiter is woken by the restored marker
    assert int(float(score(app, terminal, handle.id))) == int(exec_field(app, handle.id, p, "finished_ms"))
    assert run(app, "PTTL", done, key=done) > 0


def test_an_unwatched_terminal_execution_gets_no_done_marker(app, caplog):
    handle = app.submit("t.a")
    p = X.execution_partition(app.client.keys, handle.id)
    c = claimed(app, p)
    app.client.run(X.complete(app.client.keys, handle.id, c.token, "5"))
    done = app.client.keys.done(p, handle.id)
    assert check(app).repaired == 0
    assert run(app, "EXISTS", done, key=done) == 0
    assert handle.result(timeout=1) == 5


def test_a_terminal_execution_still_in_live_indexes_leaves_them(app, caplog):
    eid, p = submitted(app, deadline_s=3600)
    c = claimed(app, p)
    app.client.run(X.complete(app.client.keys, eid, c.token, "1"))
    deadlines, ready = app.client.keys.deadlines(p), app.client.keys.ready(p, "default")
    run(app, "ZADD", deadlines, 1, eid, key=deadlines)
    run(app, "ZADD", ready, 1, eid, key=ready)
    result = repaired_once(app, caplog, "left_index", "stale_ready")
    assert score(app, deadlines, eid) is None and score(app, ready, eid) is None
    assert ("stale_ready", eid, "succeeded") in result.details  # found at the head of the ready set


def test_index_heads_lose_members_whose_execution_is_gone(app, caplog):
    p = 3
    leases = app.client.keys.leases(p)
    run(app, "ZADD", leases, 1, "e_0000_00000000000deadbeef", key=leases)
    result = repaired_once(app, caplog, "stale_lease")
    assert result.details == [("stale_lease", "e_0000_00000000000deadbeef", "missing")]


# -- flows -------------------------------------------------------------------

def two_step_flow(app, edge="ref"):
    flow = app.flow("pair")
    a = flow.step("a", "t.a")
    if edge == "ref":
        flow.step("b", "t.b", a.ref())
    else:
        flow.step("b", "t.b", **{edge: [a]})
    return flow.submit()


def complete_without_dispatch(app, run_, step, result=7):
    c = claim_step(app, run_, step)
    app.client.run(X.complete(app.client.keys, c.execution_id, c.token, json.dumps(result)))
    return c.execution_id


def fail_without_dispatch(app, run_, step):
    c = claim_step(app, run_, step)
    app.client.run(X.fail(app.client.keys, c.execution_id, c.token, "E", "x", False, 0.0))
    return c.execution_id


def forget_dispatch(app, run_, eid, resolved):
    """The dispatcher ran (or never will): no pending record; `resolved` edges passed."""
    ks = app.client.keys
    pending = ks.pending_dispatch(run_.partition)
    run(app, "ZREM", pending, eid, key=pending)
    key = ks.execution(run_.partition, eid)
    run(app, "HSET", key, "dispatch_pos", resolved, key=key)


def test_a_terminal_step_with_unresolved_edges_and_no_dispatch_record_is_dispatched(app, caplog):
    run_ = two_step_flow(app)
    assert check(app).repaired == 0  # the check has seen the flow being built
    a = complete_without_dispatch(app, run_, "a")
    forget_dispatch(app, run_, a, 0)
    result = repaired_once(app, caplog, "pending_dispatch")
    assert result.details[0][1] == a
    assert state(run_, "b") == "ready"
    pending = app.client.keys.pending_dispatch(run_.partition)
    assert score(app, pending, a) is None  # the dispatch finished, its record is gone


def test_a_blocked_step_whose_edges_were_resolved_without_its_gate_is_settled(app, caplog):
    run_ = two_step_flow(app)
    assert check(app).repaired == 0
    a = complete_without_dispatch(app, run_, "a", result=7)
    ks, b = app.client.keys, run_.step_execution("b")
    # flow_resolve cut short after the edge was written, before the gate ran
    run(app, "HSET", ks.edges_in(run_.partition, b), "a", "ref|satisfied", key=ks.edges_in(run_.partition, b))
    run(app, "HSET", ks.inputs(run_.partition, b), "a", "7", key=ks.inputs(run_.partition, b))
    run(app, "HSET", ks.execution(run_.partition, b), "req_ok", 1, key=ks.execution(run_.partition, b))
    forget_dispatch(app, run_, a, 1)
    clear_hints(app, run_.partition)
    repaired_once(app, caplog, "settled")
    assert state(run_, "b") == "ready"
    assert hinted(app, run_.partition)
    assert run_.status()["counts"] == {"succeeded": 1, "ready": 1}


def test_edge_counters_and_inputs_lost_by_a_cut_short_resolve_are_restored(app, caplog):
    run_ = two_step_flow(app)
    a = complete_without_dispatch(app, run_, "a", result={"n": 7})
    ks, b = app.client.keys, run_.step_execution("b")
    run(app, "HSET", ks.edges_in(run_.partition, b), "a", "ref|satisfied", key=ks.edges_in(run_.partition, b))
    forget_dispatch(app, run_, a, 1)
    repaired_once(app, caplog, "edge_counts", "input", "settled")
    assert state(run_, "b") == "ready"
    inputs = run(app, "HGETALL", ks.inputs(run_.partition, b), key=ks.inputs(run_.partition, b))
    assert json.loads(inputs["a"]) == {"n": 7}


def test_a_blocked_step_behind_a_failed_upstream_is_skipped_and_its_flow_fails(app, caplog):
    run_ = two_step_flow(app)
    a = fail_without_dispatch(app, run_, "a")
    ks, b = app.client.keys, run_.step_execution("b")
    run(app, "HSET", ks.edges_in(run_.partition, b), "a", "ref|impossible", key=ks.edges_in(run_.partition, b))
    run(app, "HSET", ks.execution(run_.partition, b), "req_bad", 1, key=ks.execution(run_.partition, b))
    forget_dispatch(app, run_, a, 1)
    repaired_once(app, caplog, "settled")
    assert state(run_, "b") == "skipped"
    assert run_.status()["state"] == "failed"


def test_a_pending_edge_its_upstreams_dispatcher_passed_is_resolved_here(app, caplog):
    run_ = two_step_flow(app, edge="after_any")
    a = fail_without_dispatch(app, run_, "a")
    forget_dispatch(app, run_, a, 1)  # its cursor says done, the edge is still pending
    repaired_once(app, caplog, "edge", "settled")
    assert state(run_, "b") == "ready"  # after_any runs after a failure
    edge_key = app.client.keys.edges_in(run_.partition, run_.step_execution("b"))
    assert run(app, "HGET", edge_key, "a", key=edge_key) == "after_any|satisfied"


def test_a_blocked_step_no_event_names_is_found_through_its_flow(app, caplog):
    run_ = two_step_flow(app)
    assert check(app).repaired == 0  # b's creation is behind the cursor now
    a = complete_without_dispatch(app, run_, "a")
    ks, b = app.client.keys, run_.step_execution("b")
    run(app, "HSET", ks.edges_in(run_.partition, b), "a", "ref|satisfied", key=ks.edges_in(run_.partition, b))
    run(app, "HSET", ks.inputs(run_.partition, b), "a", "7", key=ks.inputs(run_.partition, b))
    run(app, "HSET", ks.execution(run_.partition, b), "req_ok", 1, key=ks.execution(run_.partition, b))
    forget_dispatch(app, run_, a, 1)
    repaired_once(app, caplog, "settled")
    assert state(run_, "b") == "ready"


def test_flow_counters_that_disagree_with_the_steps_are_recounted(app, caplog):
    run_ = two_step_flow(app)
    key = app.client.keys.flow(run_.partition, run_.id)
    run(app, "HINCRBY", key, "c:ready", 2, key=key)
    run(app, "HINCRBY", key, "c:blocked", -1, key=key)
    run(app, "HSET", key, "bad", 3, key=key)
    result = repaired_once(app, caplog, "flow_counts")
    assert result.details[0] == ("flow_counts", run_.id, "bad 3->0, c:blocked 0->1, c:ready 3->1")
    assert run_.status()["counts"] == {"ready": 1, "blocked": 1}


def test_a_running_flow_whose_steps_are_all_terminal_is_finished(app, caplog):
    flow = app.flow("single")
    flow.step("a", "t.a")
    run_ = flow.submit()
    finish(app, run_, "a", "succeeded")
    ks = app.client.keys
    key, done, flows_done = ks.flow(run_.partition, run_.id), ks.flow_done(run_.partition, run_.id), \
        ks.flows_done(run_.partition)
    # finish() cut short: the step is terminal, the flow did not count it or finish
    run(app, "HSET", key, "state", "running", "terminal", 0, key=key)
    run(app, "DEL", done, key=done)
    run(app, "ZREM", flows_done, run_.id, key=flows_done)
    repaired_once(app, caplog, "flow_counts", "flow_finished")
    assert run_.wait(timeout=1).value == "succeeded"
    assert score(app, flows_done, run_.id) is not None


def test_a_finished_flow_without_done_marker_or_retention_entry_gets_both(app, caplog):
    flow = app.flow("single")
    flow.step("a", "t.a")
    run_ = flow.submit()
    finish(app, run_, "a", "failed")
    ks = app.client.keys
    done, flows_done = ks.flow_done(run_.partition, run_.id), ks.flows_done(run_.partition)
    run(app, "DEL", done, key=done)
    run(app, "ZREM", flows_done, run_.id, key=flows_done)
    repaired_once(app, caplog, "flow_done_marker", "flows_done_index")
    assert run_.wait(timeout=1).value == "failed"


def test_a_pausing_flow_with_nothing_leased_becomes_paused(app, caplog):
    flow = app.flow("pause")
    flow.step("a", "t.a")
    flow.step("b", "t.b")
    run_ = flow.submit()
    c = claimed(app, run_.partition)  # one step leased, the other ready
    assert run_.pause() == "pausing"
    app.client.run(X.complete(app.client.keys, c.execution_id, c.token, "1"))
    key = app.client.keys.flow(run_.partition, run_.id)
    run(app, "HSET", key, "state", "pausing", key=key)  # the last lease left without pausing it
    repaired_once(app, caplog, "flow_paused")
    assert run_.status()["state"] == "paused"


# -- bounds and a healthy system ----------------------------------------------

def test_passes_read_the_stream_in_batches_from_the_cursor_and_find_drift_past_the_first(app, caplog):
    eids = [submitted(app, partition=3)[0] for _ in range(12)]
    last, p = eids[-1], 3
    ready = app.client.keys.ready(p, "default")
    run(app, "ZREM", ready, last, key=ready)
    passes = []
    while not passes or passes[-1].repaired == 0:
        passes.append(check(app, batch=2))
        assert passes[-1].rounds == 1  # one call per partition per pass bounds the cost
        assert len(passes) <= 12, "the cursor does not advance"
    assert len(passes) > 1 and kinds(passes[-1]) == ["ready_set"]
    assert score(app, ready, last) is not None


def test_a_flow_with_more_steps_than_the_batch_is_not_recounted(app):
    flow = app.flow("wide")
    for i in range(5):
        flow.step(f"s{i}", "t.a")
    run_ = flow.submit()
    key = app.client.keys.flow(run_.partition, run_.id)
    run(app, "HINCRBY", key, "c:ready", 1, key=key)
    assert check(app, batch=4).repaired == 0
    assert run_.status()["counts"] == {"ready": 6}  # left as it is: too big for one call


def test_a_healthy_workload_needs_no_repair(app):
    ks = app.client.keys
    handles = [app.submit("t.a") for _ in range(4)]
    app.submit("t.b", delay_s=3600)
    app.submit("t.c", deadline_s=3600)
    leased = {}
    for p in {X.execution_partition(ks, h.id) for h in handles[:3]}:  # two may share a partition
        for claimed_one in app.client.run(X.claim(ks, p, "default", 10, 30_000, "w")).claimed:
            leased[claimed_one.execution_id] = claimed_one
    for h in handles[:3]:
        c = leased[h.id]
        if h is handles[0]:
            app.client.run(X.fail(ks, c.execution_id, c.token, "E", "x", True, 0.5))  # retried later
        elif h is handles[1]:
            app.client.run(X.fail(ks, c.execution_id, c.token, "E", "x", False, 0.0))
        else:
            app.client.run(X.complete(ks, c.execution_id, c.token, "1"))
    app.client.run(X.cancel(ks, handles[3].id))

    flow = app.flow("healthy")
    a = flow.step("a", "t.a")
    b = flow.step("b", "t.b", a.ref(), optional=True)
    c = flow.step("c", "t.c", a.ref())
    flow.step("d", "t.leaf", b.ref_or_default(0), after=[c])
    run_ = flow.submit()
    finish(app, run_, "a", "succeeded", result=1)
    finish(app, run_, "b", "failed")
    run_.pause()
    assert run_.resume() == "running"
    finish(app, run_, "c", "succeeded", result=2)
    other = app.flow("canceled")
    other.step("x", "t.a")
    other.step("y", "t.b", after=["x"])
    other.submit().cancel()

    result = check(app)
    assert result.repaired == 0, result.details
    finish(app, run_, "d", "succeeded")
    assert run_.status()["state"] == "succeeded"
    assert check(app).repaired == 0


def test_with_a_small_work_bound_every_execution_is_checked_over_more_passes(app, caplog):
    eids = [submitted(app, partition=3)[0] for _ in range(6)]
    p = 3
    ready = app.client.keys.ready(p, "default")
    run(app, "ZREM", ready, eids[-1], key=ready)
    repaired = [check(app, max_work=1).repaired for _ in range(6)]
    assert repaired == [0, 0, 0, 0, 0, 1]  # one execution checked per pass, the last one drifted
    assert check(app, max_work=1).repaired == 0


def test_the_cursor_goes_once_retention_has_removed_the_stream(app):
    eid, p = submitted(app)
    check(app)
    ks = app.client.keys
    assert run(app, "EXISTS", ks.check_cursor(p), key=ks.check_cursor(p)) == 1
    run(app, "DEL", ks.events(p), key=ks.events(p))  # what retention does to an old stream
    assert check(app).repaired == 0
    assert run(app, "EXISTS", ks.check_cursor(p), key=ks.check_cursor(p)) == 0


def test_an_entry_that_names_no_execution_or_flow_moves_the_cursor_past_it(app):
    ks = app.client.keys
    events, cursor = ks.events(3), ks.check_cursor(3)
    first = run(app, "XADD", events, "*", "want", "w-1", "from", "", "to", "waiting", "detail", "", key=events)
    check(app)
    assert run(app, "GET", cursor, key=cursor) == first
    second = run(app, "XADD", events, "*", "slice", "s", "from", "", "to", "building", "detail", "", key=events)
    check(app)
    assert run(app, "GET", cursor, key=cursor) == second
