"""Every admin command through click's runner, human and --json, including errors."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from engine import TaskFailed
from engine.cli import main
from keys import new_id
from tests.conftest import TEST_PARTITIONS

pytestmark = pytest.mark.server


@pytest.fixture
def cli(cluster, namespace):
    runner = CliRunner()

    def invoke(*args: str, ok: bool = True):
        result = runner.invoke(main, [*args, "--url", cluster.url, "--namespace", namespace,
                                      "--partitions", str(TEST_PARTITIONS)])
        if ok:
            assert result.exit_code == 0, result.output
        return result

    return invoke


@pytest.fixture
def finished_flow(cluster, namespace, make_app):
    """A flow that ran to the end: fetch -> clean, enrich (optional, fails) -> report."""
    from engine.worker import Worker

    app = make_app(cluster.url, namespace)
    worker = Worker(app, ["default"], concurrency=4).start()
    try:
        flow = app.flow("report", labels={"team": "bi"})
        raw = flow.step("fetch", "flow.fetch", "s3://x")
        clean = flow.step("clean", "flow.clean", raw.ref())
        enrich = flow.step("enrich", "flow.enrich", raw.ref(), optional=True)
        flow.step("report", "flow.report", clean.ref(), enrich.ref_or_default({}))
        run = flow.submit()
        run.wait(timeout=30)
        failed = app.submit("basic.boom")
        with pytest.raises(TaskFailed):
            failed.result(timeout=20)
    finally:
        worker.stop_and_wait()
    return run, failed


def test_flow_list_filters_by_state_and_label(cli, finished_flow):
    run, _ = finished_flow
    assert run.id in cli("flow", "list").output
    listed = json.loads(cli("flow", "list", "--json", "--label", "team=bi").output)
    assert [f["id"] for f in listed] == [run.id] and listed[0]["state"] == "succeeded"
    assert json.loads(cli("flow", "list", "--json", "--state", "failed").output) == []
    assert json.loads(cli("flow", "list", "--json", "--label", "team=other").output) == []


def test_flow_list_refuses_a_state_no_flow_can_be_in_naming_the_states(cli):
    refused = cli("flow", "list", "--state", "done", ok=False)
    assert refused.exit_code == 2
    assert "'done' is not one of 'running', 'pausing', 'paused', 'succeeded', 'failed', 'canceled'" in refused.output


def test_flow_show_tree_and_timeline(cli, finished_flow):
    run, _ = finished_flow
    shown = cli("flow", "show", run.id).output
    assert "enrich" in shown and "RuntimeError" in shown
    data = json.loads(cli("flow", "show", run.id, "--json").output)
    assert {s["step"]: s["state"] for s in data["steps"]} == {
        "fetch": "succeeded", "clean": "succeeded", "enrich": "failed", "report": "succeeded"}
    tree = cli("flow", "tree", run.id).output
    assert "├─ clean" in tree and "(also after enrich)" in tree and "(optional)" in tree
    assert json.loads(cli("flow", "tree", run.id, "--json").output)["report"]["upstream"] == {
        "clean": "ref:satisfied", "enrich": "ref_or_default:satisfied"}
    assert "(flow)" in cli("flow", "timeline", run.id).output
    events = json.loads(cli("flow", "timeline", run.id, "--json").output)
    assert events[0]["to"] == "running" and events[-1]["to"] == "succeeded"


def test_flow_control_commands(cli, cluster, namespace, make_app):
    app = make_app(cluster.url, namespace)
    flow = app.flow("control")
    flow.step("a", "basic.add", 1, 2)
    run = flow.submit()
    assert json.loads(cli("flow", "pause", run.id, "--json").output)["state"] == "paused"
    assert "-> running" in cli("flow", "resume", run.id).output
    assert json.loads(cli("flow", "cancel", run.id, "--json").output)["state"] == "canceled"
    assert json.loads(cli("flow", "retry", run.id, "--json").output)["state"] == "running"
    refused = cli("flow", "pause", new_id("f", 1), ok=False)
    assert refused.exit_code != 0 and "no flow" in refused.output


def test_exec_show_cancel_retry(cli, finished_flow, cluster, namespace, make_app):
    _, failed = finished_flow
    assert "PermanentError" in cli("exec", "show", failed.id).output
    assert json.loads(cli("exec", "show", failed.id, "--json").output)["state"] == "failed"
    assert json.loads(cli("exec", "retry", failed.id, "--json").output) == {
        "id": failed.id, "previous_state": "failed", "state": "ready"}
    assert "ready -> canceled" in cli("exec", "cancel", failed.id).output


@pytest.mark.parametrize("command", [["exec", "show"], ["exec", "cancel"], ["exec", "retry"],
                                     ["flow", "show"], ["flow", "tree"], ["flow", "timeline"],
                                     ["flow", "cancel"]])
def test_unknown_and_malformed_ids_are_one_line_errors(cli, command):
    kind = "f" if command[0] == "flow" else "e"
    for bad in (new_id(kind, 2), "not-an-id"):
        result = cli(*command, bad, ok=False)
        assert result.exit_code == 1
        assert result.output.startswith("Error: ") and result.output.count("\n") == 1, result.output


def test_lanes_and_partitions(cli, cluster, namespace, make_app):
    app = make_app(cluster.url, namespace)
    app.submit_many("basic.add", [(i, 1) for i in range(5)])
    app.submit("basic.add", 1, 1, lane="images")
    assert json.loads(cli("lanes", "--json").output) == {"default": {"ready": 5}, "images": {"ready": 1}}
    assert "images" in cli("lanes").output
    view = json.loads(cli("partitions", "--json").output)
    assert len(view) == TEST_PARTITIONS and sum(v["backlog"] for v in view) == 6
    nodes = cli("partitions").output
    assert nodes.count("127.0.0.1:") == 3


def test_reconcile_once_and_functions(cli):
    report = json.loads(cli("reconcile", "--once", "--json").output)
    assert set(report["scanners"]) >= {"dependency", "lease_expiry", "delayed", "retention", "index_check"}
    assert "lease_expiry" in cli("reconcile", "--once", "--scanner", "lease_expiry").output
    status = json.loads(cli("functions", "status", "--json").output)
    assert set(status["nodes"].values()) == {status["expected"]}
    assert "loaded" in cli("functions", "load").output


@pytest.mark.parametrize("args, message", [
    (["--primaries", "0"], "at least 1 primary"),
    (["--replicas", "-1"], "at least 1 primary and >= 0 replicas"),
    (["--standalone", "--replicas", "1"], "standalone mode runs one server"),
])
def test_cluster_up_with_a_shape_it_cannot_start_fails_with_one_line(monkeypatch, tmp_path, args, message):
    monkeypatch.setenv("FLOWSLOT_HOME", str(tmp_path))
    result = CliRunner().invoke(main, ["cluster", "up", *args])
    assert result.exit_code == 1 and result.output.startswith("Error: ") and message in result.output
    assert len(result.output.splitlines()) == 1 and not list(tmp_path.iterdir())  # nothing started


@pytest.mark.parametrize("args, message", [
    (["daemon", "--lease-ttl-s", "-1"], "'--lease-ttl-s': -1.0 is not in the range"),
    (["daemon", "--metrics-port", "70000"], "'--metrics-port': 70000 is not in the range"),
    (["daemon", "--scanner", "dependency=-1"], "an interval is a number of seconds in (0, 86400]"),
    (["daemon", "--scanner", "dependency=nan"], "an interval is a number of seconds in (0, 86400]"),
    (["daemon", "--retention-s", "-5"], "'--retention-s': -5.0 is not in the range"),
    (["daemon", "--metrics-host", "192.0.2.1"], "cannot serve metrics on 192.0.2.1:9464"),  # not this host
    (["worker", "{app}", "--metrics-port", "99999"], "'--metrics-port': 99999 is not in the range"),
    (["worker", "{app}", "--lanes", ","], "lanes must name at least one lane"),
    (["worker", "{app}", "--grace-s", "-1"], "'--grace-s': -1.0 is not in the range"),
])
def test_a_daemon_or_worker_option_it_cannot_use_fails_with_one_error_line(cli, monkeypatch, tmp_path, args,
                                                                        message):
    module = f"audit_app_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{module}.py").write_text("from engine import App\napp = App()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    result = cli(*[arg.replace("{app}", f"{module}:app") for arg in args], ok=False)
    assert result.exit_code in (1, 2) and isinstance(result.exception, SystemExit), result.output
    assert message in result.output and "Traceback" not in result.output


def test_commands_without_a_server_fail_with_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("FLOWSLOT_HOME", str(tmp_path))
    monkeypatch.delenv("FLOWSLOT_URL", raising=False)
    result = CliRunner().invoke(main, ["lanes"])
    assert result.exit_code == 1 and "flowslot cluster up" in result.output
