"""A handler that suspends on ``wait_for``, end to end: a real worker process on a real cluster."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from engine import signals
from engine.cli import main
from tests.conftest import TEST_PARTITIONS
from tests.waiting import wait_until

pytestmark = pytest.mark.server


def test_suspended_handlers_hold_no_thread_and_a_signal_runs_them_again_to_success(
        cluster, namespace, make_app, spawn_worker):
    app = make_app(cluster.url, namespace)
    spawn_worker(cluster.url, namespace, concurrency=1)
    first, second = app.submit("basic.approval", 10), app.submit("basic.approval", 20)
    # One handler thread: the second can only start once the first has given its thread back.
    wait_until(lambda: first.state() == second.state() == "waiting", what="both handlers to suspend")
    listed = CliRunner().invoke(main, ["waits", "--json", "--url", cluster.url, "--namespace", namespace,
                                       "--partitions", str(TEST_PARTITIONS)])
    assert listed.exit_code == 0, listed.output
    assert sorted((w["id"], w["wait_event"]) for w in json.loads(listed.output)) == sorted(
        [(first.id, "signal approval"), (second.id, "signal approval")])

    for handle, ok in ((first, True), (second, False)):
        token = signals.issue_for_execution(app.client, handle.id, "approval")
        assert app.signal(token, {"ok": ok}) == handle.id
        assert handle.result(timeout=15) == {"amount": 10 if ok else 20, "decision": {"ok": ok},
                                             "token": token}
        assert handle.state() == "succeeded"
