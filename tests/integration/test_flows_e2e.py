"""Flows end to end with real worker processes, on a standalone server and a 3-primary cluster."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from engine import StepFailed, StepSkipped
from engine.dispatcher import dispatch
from engine.errors import FlowCanceled
from engine.router import Command
from tests.conftest import TEST_PARTITIONS
from tests.waiting import wait_until

pytestmark = pytest.mark.server




def test_the_report_flow_passes_data_skips_nothing_and_survives_an_optional_failure(
        server_url, namespace, make_app, spawn_worker):
    app = make_app(server_url, namespace)
    spawn_worker(server_url, namespace)
    flow = app.flow("nightly-report", labels={"team": "bi"})
    raw = flow.step("fetch", "flow.fetch", "s3://bucket/2026-11-21")
    cleaned = flow.step("clean", "flow.clean", raw.ref())
    enriched = flow.step("enrich", "flow.enrich", raw.ref(), optional=True)
    report = flow.step("report", "flow.report", cleaned.ref(), enriched.ref_or_default({"none": True}))
    flow.step("notify", "flow.notify", after_any=[report])
    run = flow.submit()
    assert run.result("report", timeout=30) == {"rows": [1, 2, 3], "extra": {"none": True}}
    assert run.wait(timeout=30).value == "succeeded"
    with pytest.raises(StepFailed) as failure:
        run.result("enrich", timeout=1)
    assert failure.value.kind == "RuntimeError"
    assert run.result("notify", timeout=1) == "sent"
    status = run.status()
    assert status["counts"] == {"succeeded": 4, "failed": 1}
    described = run.describe()
    assert [s["step"] for s in described["steps"]] == ["fetch", "clean", "enrich", "report", "notify"]
    assert all(s["blockers"] == [] for s in described["steps"])
    flow_events = [(e["from"], e["to"]) for e in described["timeline"] if "id" not in e]
    assert flow_events == [("", "running"), ("running", "succeeded")]
    assert len(described["timeline"]) > len(flow_events) + 10  # every step transition is there


def test_references_nested_in_lists_and_dicts_are_substituted(server_url, namespace, make_app, spawn_worker):
    app = make_app(server_url, namespace)
    spawn_worker(server_url, namespace)
    flow = app.flow("nested")
    a = flow.step("a", "flow.echo", 1)
    b = flow.step("b", "flow.echo", "two")
    flow.step("c", "flow.echo", {"list": [a.ref(), {"deep": b.ref()}], "plain": 3})
    run = flow.submit()
    assert run.result("c", timeout=30) == {"list": [1, {"deep": "two"}], "plain": 3}


def test_a_literal_shaped_like_a_reference_marker_reaches_the_handler_intact(
        server_url, namespace, make_app, spawn_worker):
    app = make_app(server_url, namespace)
    spawn_worker(server_url, namespace)
    flow = app.flow("literal")
    a = flow.step("a", "flow.echo", "from a")
    webhook = {"__flowslot_ref__": "a"}  # user data: JSON from outside can look like anything
    flow.step("b", "flow.echo", {"literal": webhook, "ref": a.ref(), "list": [webhook, a.ref()]})
    run = flow.submit()
    assert run.result("b", timeout=30) == {"literal": {"__flowslot_ref__": "a"}, "ref": "from a",
                                           "list": [{"__flowslot_ref__": "a"}, "from a"]}


def test_a_required_failure_skips_the_children_and_result_says_so(server_url, namespace, make_app, spawn_worker):
    app = make_app(server_url, namespace)
    spawn_worker(server_url, namespace)
    flow = app.flow("skip")
    bad = flow.step("bad", "flow.enrich", {})
    flow.step("child", "flow.echo", bad.ref())
    run = flow.submit()
    assert run.wait(timeout=30).value == "failed"
    with pytest.raises(StepSkipped, match="upstream bad failed"):
        run.result("child", timeout=1)


def test_a_step_can_add_steps_and_a_redelivered_add_is_a_no_op(server_url, namespace, make_app,
                                                               spawn_worker, tmp_path):
    app = make_app(server_url, namespace)
    spawn_worker(server_url, namespace)
    flow = app.flow("dynamic")
    flow.step("seed", "flow.echo", "seed value")
    flow.step("spawner", "flow.spawn", str(tmp_path), after=["seed"])
    run = flow.submit()
    assert run.wait(timeout=30).value == "succeeded"
    assert run.result("spawned", timeout=1) == "seed value"
    assert run.status()["total"] == 3  # added once although the handler ran twice


def test_cancel_while_steps_run_in_a_worker_process(server_url, namespace, make_app, spawn_worker):
    app = make_app(server_url, namespace)
    spawn_worker(server_url, namespace, lease_ms=600)
    flow = app.flow("cancel-me")
    slow = flow.step("slow", "basic.sleep", 30)
    flow.step("after", "flow.echo", slow.ref())
    run = flow.submit()
    eid = run.step_execution("slow")
    key = app.client.keys.execution(run.partition, eid)
    wait_until(lambda: app.client.run(Command(("HGET", key, "state"), key)) == "leased", what="lease")
    run.cancel()
    assert run.wait(timeout=5).value == "canceled"
    with pytest.raises(FlowCanceled):
        run.result("after", timeout=1)
    # The running handler is told at its next renewal and returns; its result is refused.
    wait_until(lambda: app.client.run(Command(("HGET", key, "state"), key)) == "canceled", what="cancel")
    assert app.submit("basic.add", 1, 2).result(timeout=10) == 3  # the worker is free again


def test_pause_and_resume_while_a_step_runs_in_a_worker_process(server_url, namespace, make_app, spawn_worker):
    app = make_app(server_url, namespace)
    spawn_worker(server_url, namespace)
    flow = app.flow("pause-me")
    first = flow.step("first", "basic.sleep", 0.5)
    flow.step("second", "flow.echo", "done", after=[first])
    run = flow.submit()
    key = app.client.keys.execution(run.partition, run.step_execution("first"))
    wait_until(lambda: app.client.run(Command(("HGET", key, "state"), key)) == "leased", what="lease")
    assert run.pause() == "pausing"
    wait_until(lambda: run.state().value == "paused", what="paused")
    time.sleep(0.3)
    second = {s["step"]: s for s in run.describe()["steps"]}["second"]
    assert second["state"] == "ready" and second["blockers"] == ["flow is paused"]
    assert run.resume() == "running"
    assert run.result("second", timeout=20) == "done"
    assert run.wait(timeout=10).value == "succeeded"


DISPATCH_SCRIPT = """
import sys
from engine.client import Client
from engine.dispatcher import dispatch
client = Client(sys.argv[1], namespace=sys.argv[2], partitions=int(sys.argv[3]))
print("ready", flush=True)
dispatch(client, [sys.argv[4]], max_count=1)
"""


def test_a_dispatcher_killed_mid_cascade_leaves_a_record_and_a_second_dispatch_finishes(
        server_url, namespace, make_app):
    from engine import executions as X

    app = make_app(server_url, namespace)
    flow = app.flow("cascade")
    root = flow.step("root", "flow.echo", 0)
    mids = [flow.step(f"m{i}", "flow.echo", root.ref()) for i in range(40)]
    for i, mid in enumerate(mids):
        for j in range(20):
            flow.step(f"l{i}-{j}", "flow.echo", mid.ref())
    run = flow.submit()
    ks = app.client.keys
    root_id = run.step_execution("root")
    claimed = app.client.run(X.claim(ks, run.partition, "default", 1, 30_000, "w")).claimed[0]
    assert claimed.execution_id == root_id
    app.client.run(X.fail(ks, root_id, claimed.token, "E", "x", False, 0.0))
    proc = subprocess.Popen([sys.executable, "-c", DISPATCH_SCRIPT, server_url, namespace,
                             str(TEST_PARTITIONS), root_id], stdout=subprocess.PIPE, text=True,
                            cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert proc.stdout.readline().strip() == "ready"
    pending_key = ks.pending_dispatch(run.partition)
    wait_until(lambda: run.status()["counts"].get("skipped", 0) >= 20, what="cascade to start")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    proc.stdout.close()
    status = run.status()
    assert status["state"] == "running" and status["counts"].get("blocked", 0) > 0
    pending = app.client.run(Command(("ZRANGE", pending_key, 0, -1), pending_key))
    assert pending, "the interrupted cascade left no pending_dispatch record"
    dispatch(app.client, pending)
    dispatch(app.client, pending)  # idempotent
    status = run.status()
    assert status["state"] == "failed"
    assert status["counts"] == {"failed": 1, "skipped": 840}
    assert app.client.run(Command(("ZCARD", pending_key), pending_key)) == 0


def test_the_timeline_of_a_flow_on_a_busy_partition_lists_its_events(standalone_server, namespace, make_app):
    """The partition's stream holds about 10,000 entries (other work's, before the flow's):
    describe() and timeline() read on from the flow's creation to its end."""
    from engine import events
    from engine import executions as X

    app = make_app(standalone_server.url, namespace)
    correlate = {"order_id": "busy"}
    partition = events.correlation(correlate).partition(app.client.keys.partitions)
    ks = app.client.keys
    for _ in range(21):
        specs = [app.prepare("basic.add", (1, 2), partition=partition)[0] for _ in range(500)]
        app.client.run_many([X.submit(ks, spec, partition) for spec in specs])
    stream = ks.events(partition)
    assert app.client.run(Command(("XLEN", stream), stream)) > 10_000
    flow = app.flow("late", correlate=correlate)
    flow.step("a", "basic.add", 1, 2)
    run = flow.submit()
    a = run.step_execution("a")
    expected = [(None, "", "running"), (a, "", "blocked"), (a, "blocked", "ready")]
    assert [(e.get("id"), e["from"], e["to"]) for e in run.describe()["timeline"]] == expected
    assert [(e.get("id"), e["from"], e["to"]) for e in run.timeline()] == expected
