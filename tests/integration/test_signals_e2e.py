"""Signals end to end on a real cluster: a worker runs the steps, the shell signals the approval."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from engine.cli import main
from tests.conftest import TEST_PARTITIONS
from tests.waiting import wait_until

pytestmark = pytest.mark.server


def flowslot(url, namespace, *args):
    result = CliRunner().invoke(main, [*args, "--url", url, "--namespace", namespace,
                                       "--partitions", str(TEST_PARTITIONS)])
    return result.exit_code, result.output


def approval_flow(app):
    flow = app.flow("expense")
    asked = flow.step("ask", "flow.echo", {"amount": 120})
    approved = flow.wait("approve", after=[asked], timeout_s=3600)
    flow.step("pay", "flow.echo", approved.ref())
    return flow.submit()


def test_a_flow_waits_for_an_approval_signalled_from_the_shell_and_its_child_runs_with_the_payload(
        cluster, namespace, make_app, spawn_worker):
    app = make_app(cluster.url, namespace)
    spawn_worker(cluster.url, namespace)
    run = approval_flow(app)
    token = run.token("approve")
    wait_until(lambda: run.describe()["steps"][1]["state"] == "waiting", what="the approval wait to start")

    code, out = flowslot(cluster.url, namespace, "signal", token, "--payload", '{"ok": true}', "--json")
    assert code == 0, out
    assert json.loads(out) == {"outcome": "resumed", "execution_id": run.step_execution("approve")}
    assert run.result("pay", timeout=15) == {"ok": True}
    assert run.wait(timeout=5).value == "succeeded"

    code, out = flowslot(cluster.url, namespace, "signal", token, "--payload", '{"ok": true}')
    assert (code, out.strip()) == (0, f"duplicate: {run.step_execution('approve')}")
    code, out = flowslot(cluster.url, namespace, "signal", token, "--payload", '{"ok": false}')
    assert code == 1 and "succeeded, not waiting" in out


def test_the_shell_refuses_a_tampered_token_and_after_a_rotation_without_grace_the_old_one(
        cluster, namespace, make_app):
    app = make_app(cluster.url, namespace)
    run = approval_flow(app)
    token = run.token("approve")
    code, out = flowslot(cluster.url, namespace, "signal", token[:-1] + ("A" if token[-1] != "A" else "B"))
    assert code == 1 and "forged or altered" in out

    code, out = flowslot(cluster.url, namespace, "secrets", "rotate", "--grace-s", "0", "--json")
    assert code == 0, out
    rotated = json.loads(out)
    assert rotated["previous"] == token.split(".")[1] and rotated["current"] != rotated["previous"]
    code, out = flowslot(cluster.url, namespace, "signal", token)
    assert code == 1 and "rotated out" in out
    assert run.token("approve").split(".")[1] == rotated["current"]
