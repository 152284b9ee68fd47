"""What a new user meets on the command line: the worker's settings, messages and signals,
global options, readable output, and read-only status commands."""

from __future__ import annotations

import datetime
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from engine import App
from tests.conftest import TEST_PARTITIONS
from tests.waiting import wait_until

pytestmark = pytest.mark.server

ROOT = Path(__file__).resolve().parents[2]


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any FLOWSLOT_* setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWSLOT_")}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


class Worker:
    """``flowslot worker`` in a child process, its output read line by line as it comes."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "engine.cli", "worker", *args], cwd=ROOT,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env or clean_env())
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, text: str, timeout_s: float = 30.0) -> str:
        """The first line (from now on or already read) containing ``text``."""
        for line in self.lines:
            if text in line:
                return line
        while True:
            try:
                line = self._queue.get(timeout=timeout_s)
            except queue.Empty:
                raise AssertionError(f"no line with {text!r}; output so far:\n" + "\n".join(self.lines)) from None
            if line is None:
                raise AssertionError(f"worker exited without {text!r}:\n" + "\n".join(self.lines))
            self.lines.append(line)
            if text in line:
                return line

    def finish(self, timeout_s: float = 30.0) -> tuple[int, str]:
        """Exit code and the whole output, once the process has exited."""
        code = self.proc.wait(timeout=timeout_s)
        while (line := self._queue.get(timeout=timeout_s)) is not None:
            self.lines.append(line)
        return code, "\n".join(self.lines)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._reader.join(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def workers():
    started: list[Worker] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Worker:
        started.append(Worker(*args, env=env))
        return started[-1]

    yield start
    for worker in started:
        worker.stop()


# -- item 1: the App's own namespace and partitions ---------------------------------------

def test_a_worker_serves_the_namespace_and_partitions_its_app_chose(cluster, namespace, workers):
    worker = workers("tests.apps.namespaced:app", "--url", cluster.url,
                     env=clean_env(FLOWSLOT_TEST_APP_NAMESPACE=namespace))
    worker.wait_for("started")
    app = App(cluster.url, namespace=namespace, partitions=TEST_PARTITIONS)
    try:
        assert app.submit("namespaced.echo", 7).result(timeout=30) == 7
    finally:
        app.close()


@pytest.mark.parametrize("before, flag, env, named", [
    ([], ["--namespace", "elsewhere"], {}, ("elsewhere", "NS")),
    (["--namespace", "elsewhere"], [], {}, ("elsewhere", "NS")),
    ([], [], {"FLOWSLOT_NAMESPACE": "elsewhere"}, ("elsewhere", "NS")),
    ([], ["--partitions", "32"], {}, ("32", "16")),
], ids=["flag", "group-flag", "environment", "partitions"])
def test_a_worker_refuses_a_namespace_or_partition_count_its_app_contradicts(cluster, namespace, before,
                                                                             flag, env, named):
    done = subprocess.run(
        [sys.executable, "-m", "engine.cli", *before, "worker", "tests.apps.namespaced:app",
         "--url", cluster.url, *flag], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env=clean_env(FLOWSLOT_TEST_APP_NAMESPACE=namespace, **env))
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), done.stderr
    for value in named:
        assert (namespace if value == "NS" else value) in lines[0]


# -- item 11: the worker's first-run errors and failure log --------------------------------

def run_worker_once(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "engine.cli", "worker", "tests.apps.basic:app", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), done.stderr
    return lines[0]


def test_a_worker_with_no_cluster_recorded_says_so_in_one_line(tmp_path):
    line = one_error_line(run_worker_once(env=clean_env(FLOWSLOT_HOME=str(tmp_path))))
    assert "flowslot cluster up" in line


def test_a_worker_facing_a_refused_connection_or_an_http_url_says_so_in_one_line(tmp_path):
    from engine.localcluster import pick_free_ports

    port = pick_free_ports(1, with_bus=False)[0]
    env = clean_env(FLOWSLOT_HOME=str(tmp_path))
    assert "Connection refused" in one_error_line(run_worker_once("--url", f"redis://127.0.0.1:{port}",
                                                                  env=env))
    assert "redis://" in one_error_line(run_worker_once("--url", "http://127.0.0.1:6379", env=env))


def test_a_worker_on_a_deployment_with_another_partition_count_says_so_in_one_line(cluster, namespace,
                                                                                   make_app):
    _ = make_app(cluster.url, namespace).client  # connecting records 16 partitions for the namespace
    line = one_error_line(run_worker_once("--url", cluster.url, "--namespace", namespace,
                                          "--partitions", "32", env=clean_env()))
    assert "16 partitions" in line and "32" in line


def test_a_worker_logs_one_line_per_failed_attempt_and_unknown_task(cluster, namespace, make_app, workers):
    worker = workers("tests.apps.basic:app", "--url", cluster.url, "--namespace", namespace,
                     "--partitions", str(TEST_PARTITIONS))
    worker.wait_for("started")
    app = make_app(cluster.url, namespace)
    boom, missing = app.submit("basic.boom"), app.submit("nowhere.registered")
    line = worker.wait_for(boom.id)
    assert "WARNING" in line and "basic.boom" in line and "attempt 1" in line
    assert "PermanentError: this input can never work" in line and "(failed)" in line
    line = worker.wait_for(missing.id)
    assert "WARNING" in line and "nowhere.registered" in line and "unknown_task" in line


def test_a_worker_with_log_json_logs_each_failure_as_one_json_object(cluster, namespace, make_app, workers):
    worker = workers("tests.apps.basic:app", "--url", cluster.url, "--namespace", namespace,
                     "--partitions", str(TEST_PARTITIONS), env=clean_env(FLOWSLOT_LOG_JSON="1"))
    worker.wait_for("started")
    boom = make_app(cluster.url, namespace).submit("basic.boom")
    entry = json.loads(worker.wait_for(boom.id))
    assert entry["level"] == "warning" and entry["logger"] == "flowslot.worker"
    assert {k: entry[k] for k in ("task", "id", "attempt", "error_kind", "outcome")} == {
        "task": "basic.boom", "id": boom.id, "attempt": 1, "error_kind": "PermanentError",
        "outcome": "failed"}
    assert all(json.loads(line) for line in worker.lines)


# -- item 12: Ctrl-C on a busy worker --------------------------------------------------------

@pytest.mark.parametrize("first, second", [(signal.SIGINT, signal.SIGINT), (signal.SIGTERM, signal.SIGINT)],
                         ids=["sigint-twice", "sigterm-then-sigint"])
def test_a_second_interrupt_hands_the_running_lease_back_at_once_and_exits(cluster, namespace, make_app,
                                                                           workers, tmp_path, first, second):
    worker = workers("tests.apps.basic:app", "--url", cluster.url, "--namespace", namespace,
                     "--partitions", str(TEST_PARTITIONS), "--grace-s", "600", "--lease-ms", "60000")
    worker.wait_for("started")
    app = make_app(cluster.url, namespace)
    handle = app.submit("basic.marker", str(tmp_path), 600)  # a plain sleep: it ignores cancellation
    wait_until(lambda: list(tmp_path.glob("*.started")), what="the handler to start")

    worker.proc.send_signal(first)
    line = worker.wait_for("waiting for 1 running handler(s)")
    assert "s of grace left" in line and "hands their leases back now" in line
    worker.proc.send_signal(second)
    code, output = worker.finish(timeout_s=30)  # the handler alone would take 600 s

    assert code == 0, output
    assert f"handed back 1 lease(s), their attempts not counted: {handle.id}" in output
    info = handle.info()
    assert (info["state"], int(info["attempts"])) == ("ready", 0)


# -- item 13: global options, readable times, labels as a dict ------------------------------

def invoke(*args: str, env: dict[str, str] | None = None):
    from click.testing import CliRunner

    from engine.cli import main

    return CliRunner().invoke(main, list(args), env=env)


def test_connection_options_and_json_are_accepted_before_the_command(cluster, namespace, make_app):
    make_app(cluster.url, namespace).submit_many("basic.add", [(1, 2), (3, 4)])
    result = invoke("--url", cluster.url, "--namespace", namespace, "--partitions", str(TEST_PARTITIONS),
                    "--json", "lanes")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"default": {"ready": 2}}


def test_a_command_flag_wins_over_the_group_flag_which_wins_over_the_environment(cluster, namespace,
                                                                                 make_app):
    make_app(cluster.url, namespace).submit("basic.add", 1, 2)
    partitions = str(TEST_PARTITIONS)
    after_wins = invoke("--namespace", "elsewhere", "lanes", "--json", "--url", cluster.url,
                        "--namespace", namespace, "--partitions", partitions)
    group_beats_env = invoke("--namespace", namespace, "--partitions", partitions, "lanes", "--json",
                             env={"FLOWSLOT_URL": cluster.url, "FLOWSLOT_NAMESPACE": "elsewhere",
                                  "FLOWSLOT_PARTITIONS": "256"})
    for result in (after_wins, group_beats_env):
        assert result.exit_code == 0, result.output
        assert json.loads(result.output) == {"default": {"ready": 1}}


def test_exec_show_prints_iso_utc_times_and_json_keeps_the_raw_milliseconds(cluster, namespace, make_app):
    handle = make_app(cluster.url, namespace).submit("basic.add", 1, 2, delay_s=3600)
    common = ("--url", cluster.url, "--namespace", namespace, "--partitions", str(TEST_PARTITIONS))
    raw = json.loads(invoke(*common, "exec", "show", handle.id, "--json").output)
    shown = invoke(*common, "exec", "show", handle.id).output
    created = datetime.datetime.fromtimestamp(int(raw["created_ms"]) / 1000, tz=datetime.timezone.utc)
    assert re.search(r"^created +" + re.escape(created.strftime("%Y-%m-%dT%H:%M:%S.")) + r"\d{3}Z$", shown,
                     re.MULTILINE), shown
    assert re.search(r"^due +\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", shown, re.MULTILINE), shown
    assert re.search(r"^deadline +-$", shown, re.MULTILINE), shown
    assert raw["created_ms"].isdigit() and raw["due_ms"].isdigit()
    assert raw["created_ms"] not in shown and "created_ms" not in shown


def test_flow_status_labels_are_a_dict(cluster, namespace, make_app):
    app = make_app(cluster.url, namespace)
    flow = app.flow("labelled", labels={"team": "bi", "tier": "gold"})
    flow.step("a", "basic.add", 1, 2)
    run = flow.submit()
    assert run.status()["labels"] == {"team": "bi", "tier": "gold"}
    shown = invoke("--url", cluster.url, "--namespace", namespace, "--partitions", str(TEST_PARTITIONS),
                   "flow", "show", run.id, "--json")
    assert json.loads(shown.output)["flow"]["labels"] == {"team": "bi", "tier": "gold"}


# -- item 18: a status command only reads ----------------------------------------------------

def test_functions_status_reports_a_node_that_lost_the_library_and_leaves_it_lost(cluster, namespace):
    from engine.client import Client

    client = Client(cluster.url, namespace=namespace, partitions=TEST_PARTITIONS)  # loaded everywhere
    flushed = cluster.primaries()[1]
    node = cluster.client(flushed.port)
    node.execute_command("FUNCTION", "FLUSH")
    try:
        common = ("--url", cluster.url, "--namespace", namespace, "--partitions", str(TEST_PARTITIONS))
        as_json = invoke("functions", "status", "--json", *common)
        shown = invoke("functions", "status", *common)
        assert as_json.exit_code == 1 and shown.exit_code == 1, as_json.output + shown.output
        versions = json.loads(as_json.output)["nodes"]
        name = f"127.0.0.1:{flushed.port}"
        assert versions.pop(name) is None
        assert set(versions.values()) == {json.loads(as_json.output)["expected"]}
        assert re.search(rf"^{re.escape(name)} +missing +MISMATCH$", shown.output, re.MULTILINE), shown.output
        assert node.execute_command("FUNCTION", "LIST") == []
    finally:
        client.ensure_library()
        client.close()
